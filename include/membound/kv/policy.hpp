// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The contract of a one-shot (post-prefill) eviction scorer: a small aggregate with a
/// `static constexpr std::string_view name` and a const `score(inputs, n_kept, scores)` that
/// writes one score per (KV head, token), higher = keep. `n_kept` is the count that will be kept
/// per head (positional policies such as StreamingLLM need it; the others ignore it).

#include <concepts>
#include <string_view>

#include "membound/kv/prefill.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// A policy that scores the tokens of a prefilled cache for one-shot compression.
template <class P>
concept prefill_scorer = requires(const P& p, const prefill_inputs& in, index_t n_kept, view<float> out) {
  { P::name } -> std::convertible_to<std::string_view>;
  p.score(in, n_kept, out);
};

} // namespace kv
} // namespace v0_1
} // namespace membound
