// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::prefill_inputs`, what a one-shot (post-prefill) eviction scorer sees, and the
/// shared pieces of the attention-based scorers: causal attention rows of chosen queries, the
/// GQA group mean, and kvpress's protection of tokens (their score becomes the maximum
/// unprotected score over all KV heads + 1, finite, as kvpress 0.5 does).
///
/// Shapes (DESIGN.md letters): queries (H,T,D) post-RoPE, keys and values (G,S,D) post-RoPE,
/// H a multiple of G; query head h reads KV head h / (H/G) (transformers' repeat_kv layout).
/// Query t sits at position S - T + t, so it sees keys 0 .. S - T + t (causal).

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// The tensors of one prefill (batch 1) that scorers read. `scale` multiplies q.k (1/sqrt(D)
/// when 0 is given).
struct prefill_inputs {
  view<const float> queries; ///< (H,T,D)
  view<const float> keys;    ///< (G,S,D)
  view<const float> values;  ///< (G,S,D)
  float scale = 0.0f;
  /// Optional, for scorers that model future queries (expected_attention): the queries before
  /// RoPE (H,T,D) and the RoPE base of the standard (rotate_half, unscaled) embedding.
  view<const float> queries_pre_rope;
  double rope_theta = 10000.0;
  /// Optional, for kv::trim_kv: each token's retention log beta (G,S), from its retention gate.
  view<const float> log_beta;

  index_t heads() const noexcept { return queries.extent(0); }
  index_t kv_heads() const noexcept { return keys.extent(0); }
  index_t group() const noexcept { return heads() / kv_heads(); }
  index_t length() const noexcept { return keys.extent(1); }
  index_t dim() const noexcept { return keys.extent(2); }
  float softmax_scale() const noexcept { return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(dim())); }

  /// @throws shape_error naming the shapes when they do not fit together.
  void check(const char* who) const {
    MEMBOUND_EXPECTS(keys.rank() == 3 && values.rank() == 3 && queries.rank() == 3, shape_error, who,
                     ": queries (H,T,D), keys and values (G,S,D) must be rank 3; got ranks ", queries.rank(), ", ",
                     keys.rank(), ", ", values.rank());
    MEMBOUND_EXPECTS(values.extent(0) == keys.extent(0) && values.extent(1) == keys.extent(1) &&
                         values.extent(2) == keys.extent(2),
                     shape_error, who, ": values (", values.extent(0), ",", values.extent(1), ",", values.extent(2),
                     ") differ from keys (", keys.extent(0), ",", keys.extent(1), ",", keys.extent(2), ")");
    MEMBOUND_EXPECTS(keys.extent(0) >= 1 && queries.extent(0) % keys.extent(0) == 0, shape_error, who, ": ",
                     queries.extent(0), " query heads over ", keys.extent(0), " KV heads, expected a multiple");
    MEMBOUND_EXPECTS(queries.extent(2) == keys.extent(2), shape_error, who, ": query dim ", queries.extent(2),
                     " differs from key dim ", keys.extent(2));
    MEMBOUND_EXPECTS(queries.extent(1) <= keys.extent(1), shape_error, who, ": ", queries.extent(1),
                     " queries over ", keys.extent(1), " keys, expected T <= S");
  }
};

namespace detail {

/// Softmax attention of query rows [t0, t1) of head h over all S keys, causal (masked keys get 0),
/// accumulated in double: out (t1 - t0, S).
inline void attention_rows(const prefill_inputs& in, index_t h, index_t t0, index_t t1, view<double> out) {
  const index_t s = in.length(), t = in.queries.extent(1), d = in.dim(), g = h / in.group();
  const double scale = in.softmax_scale();
  for (index_t r = t0; r < t1; ++r) {
    const index_t last = s - t + r; // last visible key
    double mx = -std::numeric_limits<double>::infinity();
    for (index_t j = 0; j < s; ++j) {
      double z = 0.0;
      if (j <= last) {
        for (index_t e = 0; e < d; ++e)
          z += static_cast<double>(in.queries(h, r, e)) * static_cast<double>(in.keys(g, j, e));
        z *= scale;
        mx = std::max(mx, z);
      }
      out(r - t0, j) = z;
    }
    double sum = 0.0;
    for (index_t j = 0; j <= last; ++j) sum += (out(r - t0, j) = std::exp(out(r - t0, j) - mx));
    for (index_t j = 0; j < s; ++j) out(r - t0, j) = j <= last ? out(r - t0, j) / sum : 0.0;
  }
}

/// Sets the scores of the tokens where `is_protected(g, i)` holds to (max of the others over all
/// heads) + 1, kvpress's convention. If every token is protected they get 1.
template <class Pred>
void protect(view<float> scores /*(G,S)*/, Pred is_protected) {
  float mx = -std::numeric_limits<float>::infinity();
  for (index_t g = 0; g < scores.extent(0); ++g)
    for (index_t i = 0; i < scores.extent(1); ++i)
      if (!is_protected(g, i)) mx = std::max(mx, scores(g, i));
  const float v = std::isfinite(mx) ? mx + 1.0f : 1.0f;
  for (index_t g = 0; g < scores.extent(0); ++g)
    for (index_t i = 0; i < scores.extent(1); ++i)
      if (is_protected(g, i)) scores(g, i) = v;
}

inline void expect_scores(const prefill_inputs& in, const view<float>& out, const char* who) {
  in.check(who);
  MEMBOUND_EXPECTS(out.rank() == 2 && out.extent(0) == in.kv_heads() && out.extent(1) == in.length(), shape_error, who,
                   ": scores must be (G,S) = (", in.kv_heads(), ",", in.length(), "); got rank ", out.rank());
}

} // namespace detail
} // namespace kv
} // namespace v0_1
} // namespace membound
