// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Helpers of the decode-mode scorers: scores read from a cache state slot, with protected
/// tokens at +inf (h2o, tova), and a head's keys gathered into dense float rows (snapkv,
/// expected_attention). Not part of the public API.

#include <algorithm>
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
} // namespace detail
} // namespace kv
} // namespace v0_1
} // namespace membound
