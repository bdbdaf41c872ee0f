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
///
/// Prefill mode (`score`): needs S > window; O(H window S D) in double precision (the reference
/// form) plus O(H S kernel).
///
/// Decode mode (`score_decode`, kv::evictor): the observation window is the last `window` decode
/// queries (post-RoPE), which the caller pushes into a `kv::query_window` each step and points
/// `queries` at, as kvpress's DecodingPress buffers the recent hidden states. The head's window
/// tokens (its newest `window` entries, which must be exactly the positions of those queries:
/// SnapKV itself protects them) are protected, and the older cached tokens are scored as above,
/// pooled along the cache order (evicted gaps are skipped). Softmax scale 1/sqrt(D). Computed in
/// float: the head's keys are gathered into scratch, the (H/G) window x S logits of the group come
/// from one GEMM (the library's GEMM entry; the window is short, so the logits, 64 x 4 x 1088
/// floats at the bench shape, fit in L2) and each row gets the SIMD softmax of its visible prefix:
/// O((H/G) window S D) per KV head, scratch O(S D + (H/G) window S). The GEMM may split its sums
/// differently for different thread counts, so scores can differ in the last bits between them.

#include <cstdint>
#include <span>
#include <vector>

#include "membound/backend/cpu/exp.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/detail/state_scores.hpp"
#include "membound/kv/policy.hpp"
#include "membound/kv/query_window.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// Pooling of SnapKV-style scores along the sequence.
enum class pooling { avg, max };

namespace detail {
/// Adds pool(mean)[i] / group to acc[i] for i < n (SnapKV's smoothing: stride 1, padding kernel / 2;
/// avg counts the zero padding, max ignores it).
template <class V, class A>
void snapkv_pool_add(const V* mean, index_t n, index_t kernel, pooling pool, double group, A* acc) {
  const index_t half = kernel / 2;
  for (index_t i = 0; i < n; ++i) {
    double v = pool == pooling::avg ? 0.0 : -std::numeric_limits<double>::infinity();
    for (index_t j = std::max<index_t>(0, i - half); j <= std::min<index_t>(n - 1, i + half); ++j)
      v = pool == pooling::avg ? v + static_cast<double>(mean[j]) : std::max(v, static_cast<double>(mean[j]));
    if (pool == pooling::avg) v /= static_cast<double>(kernel);
    acc[i] += static_cast<A>(v / group);
  }
}

} // namespace detail

struct snapkv {
  static constexpr std::string_view name = "snapkv";
  index_t window = 64, kernel = 5;
  pooling pool = pooling::avg;
  /// Decode mode only: the recent post-RoPE queries (not owned; must outlive the calls).
  const query_window* queries = nullptr;

  /// The paper's LongBench configuration: window 32, kernel 7, max pooling.
  static constexpr snapkv paper() noexcept { return {32, 7, pooling::max, nullptr}; }

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
      detail::snapkv_pool_add(mean.data(), n, kernel, pool, static_cast<double>(grp),
                              acc.data() + (h / grp) * n);
    }
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < n; ++i) scores(g, i) = static_cast<float>(acc[static_cast<std::size_t>(g * n + i)]);
    detail::protect(scores, [n](index_t, index_t i) { return i >= n; });
  }

  /// Decode mode: scores of the S tokens head (b, g) of `c` holds at step t (see the file
  /// comment); `work` is scratch the call grows as needed (kv::evictor passes its own, so
  /// steady-state steps do not allocate).
  /// @throws config_error when `queries` is null, holds fewer than `window` rows, its newest row
  /// is not at position t, its heads are not a multiple of G, S <= window, the head's newest
  /// `window` tokens are not at the window's positions, or the kernel is even; shape_error for a
  /// short `out`.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out,
                    std::vector<float>& work) const {
    MEMBOUND_EXPECTS(queries != nullptr, config_error,
                     "snapkv::score_decode: decode mode needs the recent queries; set .queries to a kv::query_window");
    const query_window& qw = *queries;
    const index_t s = c.size(b, g), d = c.head_dim(), w = window;
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= s, shape_error, "snapkv::score_decode: ", out.size(),
                     " scores for ", s, " tokens");
    MEMBOUND_EXPECTS(kernel >= 1 && kernel % 2 == 1, config_error, "snapkv: kernel ", kernel, ", expected odd >= 1");
    MEMBOUND_EXPECTS(qw.dim() == d && qw.heads() % c.kv_heads() == 0, config_error, "snapkv::score_decode: query window of ",
                     qw.heads(), " heads of dim ", qw.dim(), " over ", c.kv_heads(), " KV heads of dim ", d);
    MEMBOUND_EXPECTS(w >= 1 && qw.size(b) >= w && qw.last_position(b) == t && s > w, config_error,
                     "snapkv::score_decode: window ", w, " needs that many queries ending at step ", t, " (held ",
                     qw.size(b), ", newest at ", qw.last_position(b), ") and more than ", w, " cached tokens (", s, ")");
    MEMBOUND_EXPECTS(c.position(b, g, s - w) == t - w + 1 && c.position(b, g, s - 1) == t, config_error,
                     "snapkv::score_decode: the newest ", w, " tokens of head ", g, " sit at positions ",
                     c.position(b, g, s - w), "..", c.position(b, g, s - 1), ", expected the window's ", t - w + 1, "..", t);
    const index_t grp = qw.heads() / c.kv_heads(), n = s - w, rows = grp * w;
    const auto us = [](index_t x) { return static_cast<std::size_t>(x); };
    const std::size_t need = us(s * d) + us(rows * d) + us(rows * s) + us(2 * n);
    if (work.size() < need) work.resize(need);
    float* keys = work.data();    // (S,D)
    float* qs = keys + s * d;     // (H/G W,D) the group's window queries
    float* z = qs + rows * d;     // (H/G W,S) logits, then probabilities
    float* colsum = z + rows * s; // (S - W)
    float* acc = colsum + n;      // (S - W) group mean of the pooled votes
    detail::gather_keys(c, b, g, keys);
    for (index_t j = 0; j < grp; ++j) {
      const view<const float> q = qw.rows(b, g * grp + j, w);
      std::copy_n(q.data(), w * d, qs + j * w * d);
    }
    cpu::gemm(view<const float>(qs, {rows, d}), view<const float>(keys, {s, d}).transpose(), view<float>(z, {rows, s}),
              1.0f / std::sqrt(static_cast<float>(d)));
    std::fill(acc, acc + n, 0.0f);
    for (index_t j = 0; j < grp; ++j) {
      std::fill(colsum, colsum + n, 0.0f);
      for (index_t r = 0; r < w; ++r) { // window query r sees the n + r + 1 oldest tokens
        const std::span<float> row(z + (j * w + r) * s, us(n + r + 1));
        cpu::softmax(std::span<const float>(row), row);
        for (index_t i = 0; i < n; ++i) colsum[i] += row[us(i)];
      }
      for (index_t i = 0; i < n; ++i) colsum[i] /= static_cast<float>(w);
      detail::snapkv_pool_add(colsum, n, kernel, pool, static_cast<double>(grp), acc);
    }
    for (index_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = acc[i];
    detail::protect_range(out, s, n, s);
  }
  /// Decode mode with its own scratch (allocates O(S D)).
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    std::vector<float> work;
    score_decode(c, b, g, t, out, work);
  }
};
static_assert(prefill_scorer<snapkv>);

} // namespace kv
} // namespace v0_1
} // namespace membound
