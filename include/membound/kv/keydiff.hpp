// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::keydiff`: keep the keys least similar to the mean key direction (Park et al. 2025;
/// kvpress KeyDiffPress): score_i = -cos(k_i, a), a = mean_j k_j / ||k_j||, per KV head.
/// O(G S D); attention-free. Zero keys count as direction 0 (cosine 0).

#include <algorithm>
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
/// -cos(k_i, anchor) for n keys of dimension d read through key(i, e), anchor = mean_j k_j /
/// ||k_j||; out[i] receives the norms first, then the scores. Shared by both modes.
template <class Key>
void keydiff_scores(index_t n, index_t d, Key key, std::span<float> out) {
  std::vector<double> anchor(static_cast<std::size_t>(d), 0.0);
  for (index_t i = 0; i < n; ++i) {
    double n2 = 0.0;
    for (index_t e = 0; e < d; ++e) n2 += key(i, e) * key(i, e);
    const double inv = n2 > 0.0 ? 1.0 / std::sqrt(n2) : 0.0;
    for (index_t e = 0; e < d; ++e) anchor[static_cast<std::size_t>(e)] += key(i, e) * inv / static_cast<double>(n);
    out[static_cast<std::size_t>(i)] = static_cast<float>(std::sqrt(n2));
  }
  double an = 0.0;
  for (double a : anchor) an += a * a;
  an = std::sqrt(an);
  for (index_t i = 0; i < n; ++i) {
    double dot = 0.0;
    for (index_t e = 0; e < d; ++e) dot += key(i, e) * anchor[static_cast<std::size_t>(e)];
    const double den = std::max(static_cast<double>(out[static_cast<std::size_t>(i)]) * an, 1e-8); // as torch cosine_similarity
    out[static_cast<std::size_t>(i)] = static_cast<float>(-dot / den);
  }
}
} // namespace detail

struct keydiff {
  static constexpr std::string_view name = "keydiff";
  /// scores (G,S) = -cos(k_i, anchor). @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "keydiff::score");
    std::vector<float> row(static_cast<std::size_t>(in.length()));
    for (index_t g = 0; g < in.kv_heads(); ++g) {
      detail::keydiff_scores(in.length(), in.dim(), [&](index_t i, index_t e) { return static_cast<double>(in.keys(g, i, e)); }, row);
      for (index_t i = 0; i < in.length(); ++i) scores(g, i) = row[static_cast<std::size_t>(i)];
    }
  }
  /// Decode mode: the same score over the tokens of head (b, g) held by a cache (the anchor is
  /// the mean direction of the cached keys). The keys are gathered into `work` (grown to S D
  /// floats as needed); allocates O(D) more.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out,
                    std::vector<float>& work) const {
    const index_t n = c.size(b, g), d = c.head_dim();
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "keydiff::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    if (work.size() < static_cast<std::size_t>(n * d)) work.resize(static_cast<std::size_t>(n * d));
    detail::gather_keys(c, b, g, work.data());
    const float* k = work.data();
    detail::keydiff_scores(n, d, [k, d](index_t i, index_t e) { return static_cast<double>(k[i * d + e]); }, out);
  }
  /// Decode mode with its own scratch.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    std::vector<float> work;
    score_decode(c, b, g, t, out, work);
  }
};
static_assert(prefill_scorer<keydiff>);

} // namespace kv
} // namespace v0_1
} // namespace membound
