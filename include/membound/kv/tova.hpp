// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::tova`: token omission via attention (Oren et al. 2024; kvpress TOVAPress): the last
/// query's attention to each earlier token, averaged over ALL query heads of the layer, the same
/// score for every KV head (so all heads keep the same tokens); the last token is protected
/// (kvpress's max + 1). Cost O(H S D).

#include <vector>

#include <cstdint>
#include <limits>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/detail/state_scores.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct tova {
  static constexpr std::string_view name = "tova";
  /// @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "tova::score");
    const index_t s = in.length(), t = in.queries.extent(1);
    MEMBOUND_EXPECTS(t >= 1, shape_error, "tova::score: needs at least one query");
    array<double> attn({1, s}); // (1,S)
    std::vector<double> acc(static_cast<std::size_t>(s), 0.0);
    for (index_t h = 0; h < in.heads(); ++h) {
      detail::attention_rows(in, h, t - 1, t, attn.view());
      for (index_t i = 0; i < s; ++i) acc[static_cast<std::size_t>(i)] += attn(0, i) / static_cast<double>(in.heads());
    }
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < s; ++i) scores(g, i) = static_cast<float>(acc[static_cast<std::size_t>(i)]);
    detail::protect(scores, [s](index_t, index_t i) { return i == s - 1; });
  }
  /// Decode mode: the attention the current query paid to each cached token, which the caller
  /// stores in state slot `slot` after each kv::attend_decode (its per-token mass output); the
  /// newest token (position t) is protected. TOVA evicts one token per step (buffer 1).
  index_t slot = 0;
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    detail::state_scores(c, b, g, slot, out, [t](std::int32_t pos) { return pos == t; }, "tova::score_decode");
  }
};
static_assert(prefill_scorer<tova>);

} // namespace kv
} // namespace v0_1
} // namespace membound
