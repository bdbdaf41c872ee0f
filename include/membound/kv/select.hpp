// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::select_kept`: the kept token indices of each head from its scores: the n_kept
/// highest, returned in ascending (temporal) order. Ties keep the newer token; NaN scores are
/// evicted first. O(S) expected per head (a selection, then the kept indices in order).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// kept[0..n) = ascending indices of the n best of `scores` (ties: newer first; NaN last).
/// `idx` is scratch of at least scores.size() entries. O(S) expected (nth_element plus a scan).
/// @throws budget_error for n < 1 or n > S.
inline void select_kept_row(std::span<const float> scores, index_t n, std::span<index_t> idx,
                            std::span<std::int32_t> kept) {
  const auto s = static_cast<index_t>(scores.size());
  MEMBOUND_EXPECTS(n >= 1 && n <= s, budget_error, "select_kept: n_kept = ", n, " of ", s,
                   " tokens; expected 1 <= n_kept <= S");
  MEMBOUND_EXPECTS(static_cast<index_t>(idx.size()) >= s && static_cast<index_t>(kept.size()) >= n, shape_error,
                   "select_kept: scratch of ", idx.size(), " / output of ", kept.size(), " for ", s, " tokens, ", n,
                   " kept");
  const auto first = idx.begin(), last = idx.begin() + s;
  std::iota(first, last, index_t{0});
  auto better = [&](index_t a, index_t b) {
    const float x = scores[static_cast<std::size_t>(a)], y = scores[static_cast<std::size_t>(b)];
    const bool xn = std::isnan(x), yn = std::isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a > b; // tie: the newer token first
  };
  std::nth_element(first, first + (n - 1), last, better);
  // Ascending order without a sort: flag each kept token p in a spare high bit of idx[p] (idx is a
  // permutation of [0, S), so its low bits stay intact), then scan the flags in order. O(S).
  constexpr index_t flag = index_t{1} << 62, low = flag - 1;
  for (index_t j = 0; j < n; ++j) idx[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)] & low)] |= flag;
  index_t m = 0;
  for (index_t p = 0; p < s; ++p)
    if (idx[static_cast<std::size_t>(p)] & flag) kept[static_cast<std::size_t>(m++)] = static_cast<std::int32_t>(p);
}

/// kept (G,n_kept) = ascending indices of each row's n_kept best scores (G,S).
/// @throws shape_error when kept is not (G, n_kept); budget_error for n_kept < 1 or > S.
inline void select_kept(view<const float> scores /*(G,S)*/, view<std::int32_t> kept /*(G,n_kept)*/) {
  MEMBOUND_EXPECTS(scores.rank() == 2 && kept.rank() == 2 && kept.extent(0) == scores.extent(0), shape_error,
                   "select_kept: kept must be (G, n_kept) with G = ", scores.rank() == 2 ? scores.extent(0) : 0);
  const index_t s = scores.extent(1), n = kept.extent(1);
  MEMBOUND_EXPECTS(n >= 1 && n <= s, budget_error, "select_kept: n_kept = ", n, " of ", s,
                   " tokens; expected 1 <= n_kept <= S");
  std::vector<index_t> idx(static_cast<std::size_t>(s));
  std::vector<float> row(static_cast<std::size_t>(s));
  std::vector<std::int32_t> out(static_cast<std::size_t>(n));
  for (index_t g = 0; g < scores.extent(0); ++g) {
    for (index_t i = 0; i < s; ++i) row[static_cast<std::size_t>(i)] = scores(g, i);
    select_kept_row(row, n, idx, out);
    for (index_t j = 0; j < n; ++j) kept(g, j) = out[static_cast<std::size_t>(j)];
  }
}

} // namespace kv
} // namespace v0_1
} // namespace membound
