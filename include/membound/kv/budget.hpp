// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Budgets: how many tokens a head keeps. `kept_count` turns a compression ratio (the
/// fraction removed, kvpress's convention) into a count under two documented rules;
/// `pyramid_budgets` gives PyramidKV's per-layer counts (Cai et al. 2024, as kvpress computes
/// them); `adakv_allocate` splits a layer's budget between its KV heads from their scores
/// (Feng et al. 2024, AdaKV, as kvpress's AdaKVPress selects). All O(1) or O(G S log(G S)).

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

/// How a ratio becomes a count.
enum class count_rule {
  /// kvpress: max(1, int(n * (1 - ratio))) evaluated in double: n = 100, ratio = 0.9 keeps 9
  /// (100 * 0.1 is 9.999999999999998). Matches kvpress 0.5's compute_n_kept exactly.
  kvpress,
  /// The hand-computed count: n - ceil(n * ratio) with n * ratio snapped to the nearest integer
  /// when within 1e-9 relative of it (n = 100, ratio = 0.9 keeps 10). Throws budget_error when it
  /// comes to 0.
  exact
};

/// Tokens kept out of n when a fraction `ratio` in [0, 1) is removed.
/// @throws config_error for a ratio outside [0, 1) or n < 0; budget_error when the exact rule
/// keeps nothing of a non-empty sequence.
inline index_t kept_count(index_t n, double ratio, count_rule rule = count_rule::kvpress) {
  MEMBOUND_EXPECTS(ratio >= 0.0 && ratio < 1.0, config_error, "kept_count: compression ratio ", ratio,
                   ", expected in [0, 1) (the fraction of tokens removed)");
  MEMBOUND_EXPECTS(n >= 0, config_error, "kept_count: n = ", n, ", expected >= 0");
  if (n == 0) return 0;
  if (rule == count_rule::kvpress) {
    const auto k = static_cast<index_t>(static_cast<double>(n) * (1.0 - ratio)); // int() truncates
    return std::max<index_t>(1, k);
  }
  const long double removed = static_cast<long double>(n) * static_cast<long double>(ratio);
  const long double near = std::nearbyint(removed);
  const long double r = std::fabs(removed - near) <= 1e-9L * static_cast<long double>(n) ? near : std::ceil(removed);
  const index_t kept = n - static_cast<index_t>(r);
  MEMBOUND_EXPECTS(kept >= 1, budget_error, "kept_count: ratio ", ratio, " of ", n, " tokens keeps none");
  return kept;
}

/// PyramidKV's kept count for each of `layers` layers at prompt length n (kvpress 0.5's
/// PyramidKVPress.get_layer_budget): with B = n (1 - ratio), min = B / beta, max = 2B - min,
/// clamped to max = n - window (min = 2B - max) when larger; budget_l = round(max - l (max -
/// min) / (layers - 1)) (round half to even, as Python); when not n >= max >= min >= window every
/// layer gets max(1, round(n (1 - ratio))). Counts include the protected window.
/// @throws config_error for layers < 1, beta < 1, window < 0 or a ratio outside [0, 1).
inline std::vector<index_t> pyramid_budgets(index_t n, double ratio, index_t layers, index_t window = 64,
                                            double beta = 20.0) {
  MEMBOUND_EXPECTS(layers >= 1 && beta >= 1.0 && window >= 0 && ratio >= 0.0 && ratio < 1.0, config_error,
                   "pyramid_budgets: layers ", layers, ", beta ", beta, ", window ", window, ", ratio ", ratio,
                   "; expected layers >= 1, beta >= 1, window >= 0, ratio in [0, 1)");
  const double w = static_cast<double>(window), nd = static_cast<double>(n);
  const double capacity = w + nd * (1.0 - ratio); // kvpress's max_capacity_prompt, same rounding
  double mn = (capacity - w) / beta, mx = (capacity - w) * 2.0 - mn;
  if (mx >= nd - w) {
    mx = nd - w;
    mn = (capacity - w) * 2.0 - mx;
  }
  std::vector<index_t> out(static_cast<std::size_t>(layers));
  if (!(nd >= mx && mx >= mn && mn >= w)) {
    std::fill(out.begin(), out.end(), std::max<index_t>(1, static_cast<index_t>(std::nearbyint(nd * (1.0 - ratio)))));
    return out;
  }
  const double step = layers > 1 ? (mx - mn) / static_cast<double>(layers - 1) : 0.0;
  for (index_t l = 0; l < layers; ++l)
    out[static_cast<std::size_t>(l)] = static_cast<index_t>(std::nearbyint(mx - static_cast<double>(l) * step));
  return out;
}

/// AdaKV's head-wise allocation inside one layer, as kvpress's AdaKVPress: every head first
/// protects its own top max(1, int(n_kept * alpha)) tokens, then the G (S - n_kept) lowest of all
/// remaining scores across the layer's heads are evicted, so the layer keeps G n_kept tokens but
/// heads keep different counts. Writes keep (G,S) as 1/0. Ties: the older token is evicted first,
/// then the higher head (the rule of the fixtures). NaN scores are evicted first.
/// @throws shape_error; budget_error for n_kept < 1 or > S; config_error for alpha outside [0, 1].
inline void adakv_allocate(view<const float> scores /*(G,S)*/, index_t n_kept, double alpha, view<std::int32_t> keep /*(G,S)*/) {
  MEMBOUND_EXPECTS(scores.rank() == 2 && keep.rank() == 2 && keep.extent(0) == scores.extent(0) &&
                       keep.extent(1) == scores.extent(1),
                   shape_error, "adakv_allocate: keep must have the shape of scores (G,S)");
  const index_t g = scores.extent(0), s = scores.extent(1);
  MEMBOUND_EXPECTS(n_kept >= 1 && n_kept <= s, budget_error, "adakv_allocate: n_kept = ", n_kept, " with ", s,
                   " tokens; expected 1 <= n_kept <= S");
  MEMBOUND_EXPECTS(alpha >= 0.0 && alpha <= 1.0, config_error, "adakv_allocate: alpha_safeguard ", alpha,
                   ", expected in [0, 1]");
  const index_t safe = alpha > 0.0 ? std::max<index_t>(1, static_cast<index_t>(static_cast<double>(n_kept) * alpha)) : 0;
  struct entry { float score; index_t head, pos; bool safe; };
  std::vector<entry> all;
  all.reserve(static_cast<std::size_t>(g * s));
  auto lower = [](const entry& a, const entry& b) { // a is evicted before b
    const bool an = std::isnan(a.score), bn = std::isnan(b.score);
    if (an != bn) return an;
    if (!an && a.score != b.score) return a.score < b.score;
    if (a.pos != b.pos) return a.pos < b.pos;
    return a.head > b.head;
  };
  std::vector<entry> row(static_cast<std::size_t>(s));
  for (index_t h = 0; h < g; ++h) {
    for (index_t i = 0; i < s; ++i) row[static_cast<std::size_t>(i)] = {scores(h, i), h, i, false};
    std::sort(row.begin(), row.end(), lower);
    for (index_t j = 0; j < s; ++j) {
      entry e = row[static_cast<std::size_t>(j)];
      e.safe = j >= s - safe;
      all.push_back(e);
    }
  }
  std::sort(all.begin(), all.end(), [&](const entry& a, const entry& b) {
    if (a.safe != b.safe) return !a.safe; // protected entries rank above everything
    return lower(a, b);
  });
  const index_t pruned = g * (s - n_kept);
  for (index_t j = 0; j < g * s; ++j) keep(all[static_cast<std::size_t>(j)].head, all[static_cast<std::size_t>(j)].pos) = j < pruned ? 0 : 1;
}

} // namespace kv
} // namespace v0_1
} // namespace membound
