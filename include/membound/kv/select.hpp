// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::select_kept`: the kept token indices of each head from its scores: the n_kept
/// highest, returned in ascending (temporal) order. Ties keep the newer token; NaN scores are
/// evicted first. O(S log S) per head.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// kept (G,n_kept) = ascending indices of each row's n_kept best scores (G,S).
/// @throws shape_error when kept is not (G, n_kept); budget_error for n_kept < 1 or > S.
inline void select_kept(view<const float> scores /*(G,S)*/, view<std::int32_t> kept /*(G,n_kept)*/) {
  MEMBOUND_EXPECTS(scores.rank() == 2 && kept.rank() == 2 && kept.extent(0) == scores.extent(0), shape_error,
                   "select_kept: kept must be (G, n_kept) with G = ", scores.rank() == 2 ? scores.extent(0) : 0);
  const index_t s = scores.extent(1), n = kept.extent(1);
  MEMBOUND_EXPECTS(n >= 1 && n <= s, budget_error, "select_kept: n_kept = ", n, " of ", s,
                   " tokens; expected 1 <= n_kept <= S");
  std::vector<index_t> idx(static_cast<std::size_t>(s));
  for (index_t g = 0; g < scores.extent(0); ++g) {
    std::iota(idx.begin(), idx.end(), index_t{0});
    auto better = [&](index_t a, index_t b) {
      const float x = scores(g, a), y = scores(g, b);
      const bool xn = std::isnan(x), yn = std::isnan(y);
      if (xn != yn) return yn;
      if (!xn && x != y) return x > y;
      return a > b; // tie: the newer token first
    };
    std::nth_element(idx.begin(), idx.begin() + (n - 1), idx.end(), better);
    std::sort(idx.begin(), idx.begin() + n);
    for (index_t j = 0; j < n; ++j) kept(g, j) = static_cast<std::int32_t>(idx[static_cast<std::size_t>(j)]);
  }
}

} // namespace kv
} // namespace v0_1
} // namespace membound
