// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::full`: no eviction, the baseline every policy is compared against. As a prefill
/// scorer every token scores 1 (a one-shot cut then keeps the newest n_kept, by the tie rule);
/// in decode mode the evictor never cuts a head (`evicts` is false), so the cache grows until its
/// pool is exhausted (append then throws budget_error).

#include <cstdint>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct full {
  static constexpr std::string_view name = "full";
  static constexpr bool evicts = false;
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "full::score");
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < in.length(); ++i) scores(g, i) = 1.0f;
  }
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    for (index_t i = 0; i < c.size(b, g) && i < static_cast<index_t>(out.size()); ++i) out[static_cast<std::size_t>(i)] = 1.0f;
  }
};
static_assert(prefill_scorer<full>);

} // namespace kv
} // namespace v0_1
} // namespace membound
