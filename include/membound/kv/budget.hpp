// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Budgets: how many tokens a head keeps. `kept_count` turns a compression ratio (the
/// fraction removed, kvpress's convention) into a count under two documented rules;
/// `pyramid_budgets` gives PyramidKV's per-layer counts (Cai et al. 2024, as kvpress computes
/// them); `adakv_allocate` splits a layer's budget between its KV heads from their scores
/// (Feng et al. 2024, AdaKV, as kvpress's AdaKVPress selects) as the one-layer case of
/// `global_allocate`, one budget across the heads of all layers. All O(1) or O(G S) expected.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
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

namespace detail {
/// One score of `global_allocate`, with its place. `head` is the head's index over all layers
/// (sum of the earlier layers' G + g), so the tie rule reads the same across layers.
struct scored_token {
  float score;
  std::int32_t layer, g, pos;
  index_t head;
};

/// "a is evicted before b": NaN first, then the lower score, then the older token, then the
/// higher head. A strict total order over distinct (head, pos), so any selection is determined.
inline bool evicted_before(const scored_token& a, const scored_token& b) noexcept {
  const bool an = std::isnan(a.score), bn = std::isnan(b.score);
  if (an != bn) return an;
  if (!an && a.score != b.score) return a.score < b.score;
  if (a.pos != b.pos) return a.pos < b.pos;
  return a.head > b.head;
}

} // namespace detail

/// One budget across layers. Layer l has scores[l] (G_l,S_l) (G and S may differ between
/// layers); every head first keeps its own `floor` best tokens (AdaKV's safeguard, Feng et al.
/// 2024, applied per head across the whole model), then the remaining n_total - sum_l G_l floor
/// tokens go to the highest of all other scores of all heads of all layers. Writes masks[l]
/// (G_l,S_l) = 1 for kept and 0 for evicted tokens; exactly n_total ones in all.
///
/// Ties and NaN follow `adakv_allocate`: NaN scores are evicted first, then the lower score,
/// then the older token (smaller index), then the higher head, heads being numbered over all
/// layers (layer 0's heads first). With one layer, floor = max(1, int(n_kept alpha)) and
/// n_total = G n_kept this is exactly `adakv_allocate`.
///
/// Scores must be comparable across layers (e.g. normalised attention probabilities, or a
/// learned retention such as TRIM-KV's log beta): raw key norms or unnormalised logits of
/// different layers are not, and the split would follow their scales. This is the caller's
/// responsibility; nothing is normalised here.
///
/// Allocates one 24-byte entry per token of all layers (outside the floors) plus one row.
/// O(T) expected with T = sum_l G_l S_l tokens (nth_element selections, no full sort).
/// @throws shape_error when masks and scores differ in count or a mask is not its layer's
/// (G_l,S_l) (naming the layer); budget_error for floor < 0, floor > S_l of a layer with heads,
/// n_total < the total floor or n_total > T (naming the values). Nothing is written on a throw.
inline void global_allocate(std::span<const view<const float>> scores /*L x (G_l,S_l)*/, index_t n_total,
                            index_t floor, std::span<const view<std::int32_t>> masks /*L x (G_l,S_l)*/) {
  MEMBOUND_EXPECTS(scores.size() == masks.size(), shape_error, "kv::global_allocate: ", scores.size(),
                   " score matrices but ", masks.size(), " masks; expected one (G_l,S_l) mask per layer");
  MEMBOUND_EXPECTS(floor >= 0, budget_error, "kv::global_allocate: floor = ", floor, ", expected >= 0");
  index_t total = 0, floors = 0;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    const auto& sc = scores[l];
    const auto& m = masks[l];
    MEMBOUND_EXPECTS(sc.rank() == 2 && m.rank() == 2 && m.extent(0) == sc.extent(0) && m.extent(1) == sc.extent(1),
                     shape_error, "kv::global_allocate: layer ", l, ": mask (", m.extent(0), ",",
                     m.rank() == 2 ? m.extent(1) : -1, ") must have the shape of its scores (", sc.extent(0), ",",
                     sc.rank() == 2 ? sc.extent(1) : -1, ")");
    MEMBOUND_EXPECTS(sc.extent(0) == 0 || floor <= sc.extent(1), budget_error, "kv::global_allocate: floor = ", floor,
                     " exceeds the ", sc.extent(1), " tokens of layer ", l);
    total += sc.extent(0) * sc.extent(1);
    floors += sc.extent(0) * floor;
  }
  MEMBOUND_EXPECTS(n_total >= floors && n_total <= total, budget_error, "kv::global_allocate: n_total = ", n_total,
                   " tokens; expected between the total floor ", floors, " (floor ", floor,
                   " x heads) and the ", total, " tokens of all layers");
  MEMBOUND_EXPECTS(total <= std::numeric_limits<std::int32_t>::max(), budget_error, "kv::global_allocate: ", total,
                   " tokens over all layers; at most ", std::numeric_limits<std::int32_t>::max());

  std::vector<detail::scored_token> rest; // every token outside the floors
  rest.reserve(static_cast<std::size_t>(total - floors));
  std::vector<detail::scored_token> row;
  index_t head = 0;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    const auto& sc = scores[l];
    const auto& m = masks[l];
    const index_t s = sc.extent(1);
    row.resize(static_cast<std::size_t>(s));
    for (index_t g = 0; g < sc.extent(0); ++g, ++head) {
      for (index_t i = 0; i < s; ++i)
        row[static_cast<std::size_t>(i)] = {sc(g, i), static_cast<std::int32_t>(l), static_cast<std::int32_t>(g),
                                            static_cast<std::int32_t>(i), head};
      // the head's `floor` best go to the back of row, in no particular order
      const auto cut = row.begin() + (s - floor);
      if (floor > 0 && floor < s) std::nth_element(row.begin(), cut, row.end(), detail::evicted_before);
      for (auto it = row.begin(); it != cut; ++it) {
        m(g, it->pos) = 0;
        rest.push_back(*it);
      }
      for (auto it = cut; it != row.end(); ++it) m(g, it->pos) = 1;
    }
  }
  // the n_total - floors best of the rest are kept: they go to the back
  const auto extra = static_cast<std::ptrdiff_t>(n_total - floors);
  if (extra == 0) return;
  const auto cut = rest.end() - extra;
  if (cut != rest.begin()) std::nth_element(rest.begin(), cut, rest.end(), detail::evicted_before);
  for (auto it = cut; it != rest.end(); ++it) masks[static_cast<std::size_t>(it->layer)](it->g, it->pos) = 1;
}

/// AdaKV's head-wise allocation inside one layer, as kvpress's AdaKVPress: every head first
/// protects its own top max(1, int(n_kept * alpha)) tokens, then the G (S - n_kept) lowest of all
/// remaining scores across the layer's heads are evicted, so the layer keeps G n_kept tokens but
/// heads keep different counts. Writes keep (G,S) as 1/0. Ties: the older token is evicted first,
/// then the higher head (the rule of the fixtures). NaN scores are evicted first. This is
/// `global_allocate` over one layer with floor max(1, int(n_kept alpha)) (0 for alpha = 0) and
/// n_total = G n_kept. O(G S) expected.
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
  const view<std::int32_t> masks[1] = {keep};
  global_allocate(std::span<const view<const float>>(&scores, 1), g * n_kept, safe, masks);
}

} // namespace kv
} // namespace v0_1
} // namespace membound
