// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::random`: uniform random scores (kvpress RandomPress), the floor every informed
/// policy must beat. Reproducible: the score of a token depends only on (seed, KV head,
/// position) through a counter-based hash (splitmix64), so it is the same for any thread count,
/// call order or eviction history, in prefill and decode mode alike.

#include <cstdint>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct random {
  static constexpr std::string_view name = "random";
  std::uint64_t seed = 0;

  /// A uniform value in [0, 1) for (head g, position pos).
  float value(index_t g, std::int64_t pos) const noexcept {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(g) * 0x100000001B3ull +
                                                        static_cast<std::uint64_t>(pos) + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * (1.0f / 16777216.0f); // 24 bits: exact in float
  }
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "random::score");
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < in.length(); ++i) scores(g, i) = value(g, i);
  }
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    const index_t n = c.size(b, g);
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "random::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    for (index_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = value(g, c.position(b, g, i));
  }
};
static_assert(prefill_scorer<random>);

} // namespace kv
} // namespace v0_1
} // namespace membound
