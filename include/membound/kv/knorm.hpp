// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::knorm`: keep the keys of smallest L2 norm (Devoto et al. 2024; kvpress
/// KnormPress): score_i = -||k_i||. O(G S D); attention-free.

#include <cstdint>
#include <limits>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct knorm {
  static constexpr std::string_view name = "knorm";
  /// scores (G,S) = -||k||_2 per KV head and token. @throws shape_error.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "knorm::score");
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < in.length(); ++i) {
        double s = 0.0;
        for (index_t e = 0; e < in.dim(); ++e) s += static_cast<double>(in.keys(g, i, e)) * in.keys(g, i, e);
        scores(g, i) = static_cast<float>(-std::sqrt(s));
      }
  }
  /// Decode mode: the same score for the tokens of head (b, g) held by a cache.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    const index_t n = c.size(b, g);
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "knorm::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    for (index_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (const T& k : c.key(b, g, i)) s += static_cast<double>(static_cast<float>(k)) * static_cast<float>(k);
      out[static_cast<std::size_t>(i)] = static_cast<float>(-std::sqrt(s));
    }
  }
};
static_assert(prefill_scorer<knorm>);

} // namespace kv
} // namespace v0_1
} // namespace membound
