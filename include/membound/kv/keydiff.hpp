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
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct keydiff {
  static constexpr std::string_view name = "keydiff";
  /// scores (G,S) = -cos(k_i, anchor). @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "keydiff::score");
    const index_t s = in.length(), d = in.dim();
    std::vector<double> anchor(static_cast<std::size_t>(d)), norm(static_cast<std::size_t>(s));
    for (index_t g = 0; g < in.kv_heads(); ++g) {
      std::fill(anchor.begin(), anchor.end(), 0.0);
      for (index_t i = 0; i < s; ++i) {
        double n2 = 0.0;
        for (index_t e = 0; e < d; ++e) n2 += static_cast<double>(in.keys(g, i, e)) * in.keys(g, i, e);
        norm[static_cast<std::size_t>(i)] = std::sqrt(n2);
        const double inv = n2 > 0.0 ? 1.0 / std::sqrt(n2) : 0.0;
        for (index_t e = 0; e < d; ++e) anchor[static_cast<std::size_t>(e)] += in.keys(g, i, e) * inv / static_cast<double>(s);
      }
      double an = 0.0;
      for (double a : anchor) an += a * a;
      an = std::sqrt(an);
      for (index_t i = 0; i < s; ++i) {
        double dot = 0.0;
        for (index_t e = 0; e < d; ++e) dot += in.keys(g, i, e) * anchor[static_cast<std::size_t>(e)];
        const double den = std::max(norm[static_cast<std::size_t>(i)] * an, 1e-8); // as torch cosine_similarity
        scores(g, i) = static_cast<float>(-dot / den);
      }
    }
  }
  /// Decode mode: the same score over the tokens of head (b, g) held by a cache (the anchor is
  /// the mean direction of the cached keys). Allocates O(D) scratch.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    const index_t n = c.size(b, g), d = c.head_dim();
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "keydiff::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    std::vector<double> anchor(static_cast<std::size_t>(d), 0.0);
    for (index_t i = 0; i < n; ++i) {
      const auto k = c.key(b, g, i);
      double n2 = 0.0;
      for (const T& e : k) n2 += static_cast<double>(static_cast<float>(e)) * static_cast<float>(e);
      const double inv = n2 > 0.0 ? 1.0 / std::sqrt(n2) : 0.0;
      for (index_t e = 0; e < d; ++e) anchor[static_cast<std::size_t>(e)] += static_cast<float>(k[static_cast<std::size_t>(e)]) * inv / static_cast<double>(n);
      out[static_cast<std::size_t>(i)] = static_cast<float>(std::sqrt(n2)); // the norm, for below
    }
    double an = 0.0;
    for (double a : anchor) an += a * a;
    an = std::sqrt(an);
    for (index_t i = 0; i < n; ++i) {
      const auto k = c.key(b, g, i);
      double dot = 0.0;
      for (index_t e = 0; e < d; ++e) dot += static_cast<float>(k[static_cast<std::size_t>(e)]) * anchor[static_cast<std::size_t>(e)];
      const double den = std::max(static_cast<double>(out[static_cast<std::size_t>(i)]) * an, 1e-8);
      out[static_cast<std::size_t>(i)] = static_cast<float>(-dot / den);
    }
  }
};
static_assert(prefill_scorer<keydiff>);

} // namespace kv
} // namespace v0_1
} // namespace membound
