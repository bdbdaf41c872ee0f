// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::streaming_llm`: attention sinks + the most recent tokens (Xiao et al. 2023; kvpress
/// StreamingLLMPress): with n_kept kept of S, tokens [n_sink, n_sink + S - n_kept) score 0 and
/// the rest 1, so the first `n_sink` and the last n_kept - n_sink survive. Positions are not
/// re-indexed (kvpress's default). O(G S).

#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct streaming_llm {
  static constexpr std::string_view name = "streaming_llm";
  index_t n_sink = 4; ///< kept initial tokens

  /// @throws shape_error; config_error if n_kept < n_sink (the sinks would not fit).
  void score(const prefill_inputs& in, index_t n_kept, view<float> scores) const {
    detail::expect_scores(in, scores, "streaming_llm::score");
    const index_t s = in.length();
    MEMBOUND_EXPECTS(n_sink >= 0 && n_kept >= std::min(n_sink, s), config_error, "streaming_llm: keeping ", n_kept,
                     " tokens cannot hold n_sink = ", n_sink, " sinks");
    const index_t pruned = std::max<index_t>(0, s - n_kept);
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < s; ++i) scores(g, i) = (i >= n_sink && i < n_sink + pruned) ? 0.0f : 1.0f;
  }
};
static_assert(prefill_scorer<streaming_llm>);

} // namespace kv
} // namespace v0_1
} // namespace membound
