// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::snapkv`: observation-window scoring (Li et al. 2024, SnapKV). For each query head,
/// the softmax attention of the last `window` queries over all S keys (causal) is averaged over
/// those queries for the S - window older tokens, pooled along the sequence (kernel `kernel`,
/// stride 1, padding kernel/2: `avg` divides by the kernel with zero padding counted, `max` pads
/// with -inf), then averaged over the query heads of each KV head; the window tokens themselves
/// are protected (kvpress's max + 1). Defaults are kvpress's (window 64, kernel 5, avg);
/// `snapkv::paper()` gives the paper's experiment settings (window 32, kernel 7, max).
/// Needs S > window. Cost O(H window S D) for the window attention plus O(H S kernel).

#include <vector>

#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// Pooling of SnapKV-style scores along the sequence.
enum class pooling { avg, max };

struct snapkv {
  static constexpr std::string_view name = "snapkv";
  index_t window = 64, kernel = 5;
  pooling pool = pooling::avg;

  /// The paper's LongBench configuration: window 32, kernel 7, max pooling.
  static constexpr snapkv paper() noexcept { return {32, 7, pooling::max}; }

  /// @throws shape_error; config_error when S <= window, or kernel is even or < 1.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "snapkv::score");
    const index_t s = in.length(), t = in.queries.extent(1), n = s - window, grp = in.group();
    MEMBOUND_EXPECTS(window >= 1 && window <= t && s > window, config_error, "snapkv: window ", window, " with ", t,
                     " queries over ", s, " tokens; needs 1 <= window <= T and S > window");
    MEMBOUND_EXPECTS(kernel >= 1 && kernel % 2 == 1, config_error, "snapkv: kernel ", kernel, ", expected odd >= 1");
    array<double> attn({window, s}); // (window,S)
    std::vector<double> mean(static_cast<std::size_t>(n));
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < s; ++i) scores(g, i) = 0.0f;
    std::vector<double> acc(static_cast<std::size_t>(in.kv_heads() * n), 0.0);
    for (index_t h = 0; h < in.heads(); ++h) {
      detail::attention_rows(in, h, t - window, t, attn.view());
      for (index_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (index_t r = 0; r < window; ++r) sum += attn(r, i);
        mean[static_cast<std::size_t>(i)] = sum / static_cast<double>(window);
      }
      const index_t half = kernel / 2, g = h / grp;
      for (index_t i = 0; i < n; ++i) {
        double v = pool == pooling::avg ? 0.0 : -std::numeric_limits<double>::infinity();
        for (index_t j = i - half; j <= i + half; ++j) {
          const bool inside = j >= 0 && j < n;
          if (pool == pooling::avg) v += inside ? mean[static_cast<std::size_t>(j)] : 0.0;
          else if (inside) v = std::max(v, mean[static_cast<std::size_t>(j)]);
        }
        if (pool == pooling::avg) v /= static_cast<double>(kernel);
        acc[static_cast<std::size_t>(g * n + i)] += v / static_cast<double>(grp);
      }
    }
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < n; ++i) scores(g, i) = static_cast<float>(acc[static_cast<std::size_t>(g * n + i)]);
    detail::protect(scores, [n](index_t, index_t i) { return i >= n; });
  }
};
static_assert(prefill_scorer<snapkv>);

} // namespace kv
} // namespace v0_1
} // namespace membound
