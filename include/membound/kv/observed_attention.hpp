// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Accumulated-attention scorers of the H2O family for one-shot compression:
/// `kv::observed_attention` (kvpress ObservedAttentionPress: sum over queries of A[q,i] divided
/// by the number of queries that see token i, S - i) and `kv::h2o` (the original H2O
/// accumulation, sum_q A[q,i] unnormalised); both averaged over the query heads of each KV
/// head. They need every query of the prefill (T = S). Cost O(H S^2 D). In decode mode both read
/// the attention the caller accumulates into a cache state slot (kv::record_attention).

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

namespace detail {
inline void accumulated_attention(const prefill_inputs& in, view<float> scores, bool normalise, const char* who) {
  expect_scores(in, scores, who);
  const index_t s = in.length(), t = in.queries.extent(1), grp = in.group();
  MEMBOUND_EXPECTS(t == s, shape_error, who, ": needs the whole prefill's queries (T = S); got T = ", t, ", S = ", s);
  array<double> attn({1, s}); // (1,S)
  std::vector<double> acc(static_cast<std::size_t>(in.kv_heads() * s), 0.0);
  for (index_t h = 0; h < in.heads(); ++h)
    for (index_t r = 0; r < t; ++r) {
      attention_rows(in, h, r, r + 1, attn.view());
      for (index_t i = 0; i < s; ++i) acc[static_cast<std::size_t>((h / grp) * s + i)] += attn(0, i);
    }
  for (index_t g = 0; g < in.kv_heads(); ++g)
    for (index_t i = 0; i < s; ++i) {
      double v = acc[static_cast<std::size_t>(g * s + i)] / static_cast<double>(grp);
      if (normalise) v /= static_cast<double>(s - i);
      scores(g, i) = static_cast<float>(v);
    }
}
} // namespace detail

struct observed_attention {
  static constexpr std::string_view name = "observed_attention";
  index_t slot = 0; ///< decode mode: the state slot holding the accumulated attention

  /// Decode mode: the accumulated attention the caller adds into state slot `slot` after every
  /// kv::attend_decode (as for h2o), divided by the number of steps that saw the token,
  /// t - pos_i + 1 (the prefill form's S - i at t = S - 1). O(S).
  /// @throws shape_error if out is short; lookup_error for a bad slot.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    detail::state_scores(c, b, g, slot, out, [](std::int32_t) { return false; }, "observed_attention::score_decode");
    for (const auto& pg : c.pages(b, g))
      for (index_t j = 0; j < pg.tokens; ++j) {
        float& v = out[static_cast<std::size_t>(pg.first + j)];
        v = static_cast<float>(static_cast<double>(v) / static_cast<double>(t - pg.positions[j] + 1));
      }
  }
  /// scores (G,S) = mean over the group of sum_q A[q,i] / (S - i). @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::accumulated_attention(in, scores, true, "observed_attention::score");
  }
};
static_assert(prefill_scorer<observed_attention>);

struct h2o {
  static constexpr std::string_view name = "h2o";
  index_t recent = 0; ///< decode mode: the newest `recent` positions are always kept
  index_t slot = 0;   ///< decode mode: the state slot holding the accumulated attention

  /// Decode mode (H2O's heavy hitters + recent window): the accumulated attention sum_q A[q,i]
  /// that the caller adds into state slot `slot` after every kv::attend_decode; tokens within the
  /// last `recent` positions (pos > t - recent) score +inf. With budget = heavy + recent this is
  /// H2OKVCache's rule.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    detail::state_scores(c, b, g, slot, out, [&](std::int32_t pos) { return pos > t - recent; }, "h2o::score_decode");
  }
  /// scores (G,S) = mean over the group of sum_q A[q,i]. @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::accumulated_attention(in, scores, false, "h2o::score");
  }
};
static_assert(prefill_scorer<h2o>);

} // namespace kv
} // namespace v0_1
} // namespace membound
