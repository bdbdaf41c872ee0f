// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Helpers of the decode-mode scorers: scores read from a cache state slot, with protected
/// tokens at +inf (h2o, tova), a head's keys gathered into dense float rows and kvpress's
/// protection of one head's scores (snapkv, expected_attention). Not part of the public API.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "membound/kv/cache.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {
namespace detail {

/// out[i] = +inf where protect(position_i) holds, else state slot `slot` of token i of head
/// (b, g); page by page. @throws shape_error if out is short; lookup_error for a bad slot.
template <class T, class Protect>
void state_scores(const cache<T>& c, index_t b, index_t g, index_t slot, std::span<float> out, Protect protect,
                  const char* who) {
  const index_t n = c.size(b, g);
  MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, who, ": ", out.size(), " scores for ", n,
                   " tokens");
  MEMBOUND_EXPECTS(slot >= 0 && slot < c.state_slots(), lookup_error, who, ": state slot ", slot, " of ",
                   c.state_slots());
  const index_t slots = c.state_slots();
  for (const auto& pg : c.pages(b, g)) // contiguous positions and state within a page
    for (index_t j = 0; j < pg.tokens; ++j)
      out[static_cast<std::size_t>(pg.first + j)] =
          protect(pg.positions[j]) ? std::numeric_limits<float>::infinity() : pg.state[j * slots + slot];
}

/// Copies the K rows of head (b, g) into dst (S,D) as float (bf16 widened exactly). O(S D).
template <class T>
void gather_keys(const cache<T>& c, index_t b, index_t g, float* dst) {
  const index_t d = c.head_dim();
  for (const auto& pg : c.pages(b, g)) // a page's rows are contiguous
    std::transform(pg.keys, pg.keys + pg.tokens * d, dst + pg.first * d, [](T x) { return static_cast<float>(x); });
}

/// kvpress's protection on one head's decode scores: out[i] for i in [lo, hi) becomes the maximum
/// of out over the rest of [0, size) plus 1 (1 when the rest is empty or its maximum not finite),
/// as detail::protect does for a (G,S) prefill. O(size).
inline void protect_range(std::span<float> out, index_t size, index_t lo, index_t hi) noexcept {
  float mx = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < size; ++i)
    if (i < lo || i >= hi) mx = std::max(mx, out[static_cast<std::size_t>(i)]);
  const float v = std::isfinite(mx) ? mx + 1.0f : 1.0f;
  for (index_t i = lo; i < hi; ++i) out[static_cast<std::size_t>(i)] = v;
}
} // namespace detail
} // namespace kv
} // namespace v0_1
} // namespace membound
