// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::expected_attention`: the attention future queries are expected to pay (kvpress
/// ExpectedAttentionPress, 0.5). The pre-RoPE queries of the prefill (sinks excluded) give a
/// mean mu and covariance Sigma per query head (divisor T - n_sink); the RoPE rotation averaged
/// over the next `n_future` positions, R = mean_p R_p (p = S .. S + n_future - 1), moves them to
/// mu' = R mu, Sigma' = R Sigma R^T; for each non-sink token z_i = mu'.k_i / sqrt(D) +
/// k_i^T Sigma' k_i / (2 D) (log E[exp(q.k / sqrt(D))] for Gaussian q), softmax over the non-sink
/// tokens, mean over the group, then (score + epsilon) * ||v_i||; the first n_sink tokens are
/// protected (max + 1). Needs `prefill_inputs::queries_pre_rope` and the standard RoPE base.
///
/// Prefill mode (`score`): the reference form, in double precision (Sigma' formed, R applied as
/// its 2 x 2 rotations), O(H T D^2 + H S D^2).
///
/// Decode mode (`score_decode`, kv::evictor): the statistics come from the last queries the
/// caller pushed (pre-RoPE) into a `kv::query_window` that `queries` points at (all rows it holds:
/// recent decode queries carry no sink outliers to drop; kvpress's DecodingPress instead drops the
/// first n_sink buffered rows), the rotation is averaged over the true next positions t + 1 ..
/// t + n_future (kvpress's DecodingPress starts them at the buffer length), and the head's first
/// n_sink cached tokens are protected. It is computed in float without forming Sigma: R is
/// block-diagonal with 2 x 2 rotations, so mu' = R mu and the rotated centred queries u_r =
/// R (q_r - mu) cost O(W D), and k^T Sigma' k = (1/W) sum_r (u_r . k)^2, so one GEMM
/// (S x D by D x (H/G)(W + 1), the library's GEMM entry) gives every logit of a KV head:
/// O((H/G) W S D) per KV head. The GEMM may split its sums differently for different thread
/// counts, so decode scores can differ in the last bits between thread counts.

#include <cmath>
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

namespace detail {
/// The RoPE rotation (rotate_half form, base theta, dim d) averaged over positions first ..
/// first + count - 1: R = diag(cbar) + diag(sbar) P with P[i + d/2][i] = 1, P[i][i + d/2] = -1.
/// The sums over positions use the closed form sum_{k<N} cos(a + k w) = sin(N w / 2) /
/// sin(w / 2) cos(a + (N - 1) w / 2) (and likewise for sin), exact in exact arithmetic; w =
/// theta^(-2i/d) lies in (0, 1], so sin(w / 2) is far from 0. O(D).
inline void averaged_rope(double theta, index_t d, index_t first, index_t count, std::vector<double>& cbar,
                          std::vector<double>& sbar) {
  const auto ud = static_cast<std::size_t>(d), half = ud / 2;
  cbar.assign(ud, 0.0);
  sbar.assign(ud, 0.0);
  const double nf = static_cast<double>(count);
  for (std::size_t i = 0; i < ud; ++i) {
    const double w = std::pow(theta, -2.0 * static_cast<double>(i % half) / static_cast<double>(d));
    const double mid = (static_cast<double>(first) + (nf - 1.0) / 2.0) * w; // a + (N - 1) w / 2
    const double ratio = std::sin(nf * w / 2.0) / std::sin(w / 2.0) / nf;
    cbar[i] = ratio * std::cos(mid);
    sbar[i] = ratio * std::sin(mid);
  }
}
/// sum_e x_e^2 in float, 16 independent partial sums (vectorised, the same order on every
/// machine), then summed left to right. bf16 widened exactly. O(D).
template <class T>
float squared_norm(const T* x, index_t d) {
  float part[16] = {};
  index_t e = 0;
  for (; e + 16 <= d; e += 16)
    for (int l = 0; l < 16; ++l) {
      const float v = static_cast<float>(x[e + l]);
      part[l] += v * v;
    }
  for (int l = 0; e < d; ++e, ++l) {
    const float v = static_cast<float>(x[e]);
    part[l] += v * v;
  }
  float sum = 0.0f;
  for (float p : part) sum += p;
  return sum;
}

/// y = R x for the averaged rotation above (O(D)).
template <class X, class Y>
void apply_averaged_rope(const std::vector<double>& cbar, const std::vector<double>& sbar, const X* x, Y* y) {
  const std::size_t ud = cbar.size(), half = ud / 2;
  for (std::size_t i = 0; i < ud; ++i)
    y[i] = static_cast<Y>(i < half ? cbar[i] * x[i] - sbar[i] * x[i + half] : cbar[i] * x[i] + sbar[i] * x[i - half]);
}
} // namespace detail

struct expected_attention {
  static constexpr std::string_view name = "expected_attention";
  index_t n_future = 512, n_sink = 4;
  bool use_covariance = true, use_vnorm = true;
  double epsilon = 0.0;
  /// Decode mode only: the recent pre-RoPE queries (not owned) and the RoPE base they will get.
  const query_window* queries = nullptr;
  double rope_theta = 10000.0;

  /// @throws shape_error (missing or misshaped pre-RoPE queries); config_error when S <= n_sink.
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "expected_attention::score");
    const auto& q = in.queries_pre_rope;
    const index_t s = in.length(), d = in.dim(), hq = in.heads(), grp = in.group();
    MEMBOUND_EXPECTS(q.rank() == 3 && q.extent(0) == hq && q.extent(2) == d, shape_error,
                     "expected_attention: queries_pre_rope must be (H,T,D) = (", hq, ",T,", d, ")");
    const index_t t = q.extent(1);
    MEMBOUND_EXPECTS(s > n_sink && t > n_sink && n_sink >= 0 && n_future >= 1 && d % 2 == 0, config_error,
                     "expected_attention: S = ", s, ", T = ", t, ", n_sink = ", n_sink, ", n_future = ", n_future,
                     ", D = ", d, "; needs S, T > n_sink >= 0, n_future >= 1 and an even D");
    const auto ud = static_cast<std::size_t>(d);
    std::vector<double> cbar, sbar; // the averaged rotation R, applied in O(D) per vector
    detail::averaged_rope(in.rope_theta, d, s, n_future, cbar, sbar);
    const index_t m = s - n_sink;
    std::vector<double> acc(static_cast<std::size_t>(in.kv_heads() * m), 0.0), z(static_cast<std::size_t>(m));
    std::vector<double> mu(ud), cov(ud * ud), mu2(ud), tmp(ud * ud), tr(ud * ud), cov2(ud * ud);
    for (index_t h = 0; h < hq; ++h) {
      const double cnt = static_cast<double>(t - n_sink);
      std::fill(mu.begin(), mu.end(), 0.0);
      for (index_t r = n_sink; r < t; ++r)
        for (std::size_t e = 0; e < ud; ++e) mu[e] += q(h, r, static_cast<index_t>(e)) / cnt;
      detail::apply_averaged_rope(cbar, sbar, mu.data(), mu2.data()); // mu' = R mu
      if (use_covariance) {
        std::fill(cov.begin(), cov.end(), 0.0);
        for (index_t r = n_sink; r < t; ++r)
          for (std::size_t a = 0; a < ud; ++a)
            for (std::size_t b = 0; b < ud; ++b)
              cov[a * ud + b] += (q(h, r, static_cast<index_t>(a)) - mu[a]) * (q(h, r, static_cast<index_t>(b)) - mu[b]) / cnt;
        // Sigma' = R Sigma R^T: rotate the rows of Sigma (Sigma R^T), then the rows of its
        // transpose (R Sigma R^T is symmetric). O(D^2).
        for (std::size_t a = 0; a < ud; ++a) detail::apply_averaged_rope(cbar, sbar, &cov[a * ud], &tmp[a * ud]);
        for (std::size_t a = 0; a < ud; ++a)
          for (std::size_t b = 0; b < ud; ++b) tr[b * ud + a] = tmp[a * ud + b];
        for (std::size_t b = 0; b < ud; ++b) detail::apply_averaged_rope(cbar, sbar, &tr[b * ud], &cov2[b * ud]);
      }
      const index_t g = h / grp;
      double mx = -std::numeric_limits<double>::infinity();
      for (index_t i = 0; i < m; ++i) {
        double lin = 0.0, quad = 0.0;
        for (std::size_t a = 0; a < ud; ++a) {
          const double ka = in.keys(g, n_sink + i, static_cast<index_t>(a));
          lin += mu2[a] * ka;
          if (use_covariance)
            for (std::size_t b = 0; b < ud; ++b) quad += ka * cov2[a * ud + b] * in.keys(g, n_sink + i, static_cast<index_t>(b));
        }
        z[static_cast<std::size_t>(i)] = lin / std::sqrt(static_cast<double>(d)) + quad / static_cast<double>(d) / 2.0;
        mx = std::max(mx, z[static_cast<std::size_t>(i)]);
      }
      double sum = 0.0;
      for (double& v : z) sum += (v = std::exp(v - mx));
      for (index_t i = 0; i < m; ++i) acc[static_cast<std::size_t>(g * m + i)] += z[static_cast<std::size_t>(i)] / sum / static_cast<double>(grp);
    }
    for (index_t g = 0; g < in.kv_heads(); ++g) {
      for (index_t i = 0; i < m; ++i) {
        double v = acc[static_cast<std::size_t>(g * m + i)];
        if (use_vnorm) {
          double n2 = 0.0;
          for (index_t e = 0; e < d; ++e) n2 += static_cast<double>(in.values(g, n_sink + i, e)) * in.values(g, n_sink + i, e);
          v = (v + epsilon) * std::sqrt(n2);
        }
        scores(g, n_sink + i) = static_cast<float>(v);
      }
    }
    detail::protect(scores, [this](index_t, index_t i) { return i < n_sink; });
  }

  /// Decode mode: scores of the S tokens head (b, g) of `c` holds at step t (see the file
  /// comment); `work` is scratch the call grows as needed (kv::evictor passes its own).
  /// @throws config_error when `queries` is null or empty, its newest row is not at position t,
  /// its heads are not a multiple of G or its dim is not D, S <= n_sink, n_future < 1 or D is
  /// odd; shape_error for a short `out`.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out,
                    std::vector<float>& work) const {
    MEMBOUND_EXPECTS(queries != nullptr, config_error,
                     "expected_attention::score_decode: decode mode needs the recent pre-RoPE queries; set .queries to a "
                     "kv::query_window");
    const query_window& qw = *queries;
    const index_t s = c.size(b, g), d = c.head_dim();
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= s, shape_error, "expected_attention::score_decode: ", out.size(),
                     " scores for ", s, " tokens");
    MEMBOUND_EXPECTS(qw.dim() == d && qw.heads() % c.kv_heads() == 0, config_error,
                     "expected_attention::score_decode: query window of ", qw.heads(), " heads of dim ", qw.dim(), " over ",
                     c.kv_heads(), " KV heads of dim ", d);
    MEMBOUND_EXPECTS(qw.size(b) >= 1 && qw.last_position(b) == t, config_error,
                     "expected_attention::score_decode: the query window holds ", qw.size(b), " rows, newest at ",
                     qw.last_position(b), "; expected at least one ending at step ", t);
    MEMBOUND_EXPECTS(s > n_sink && n_sink >= 0 && n_future >= 1 && d % 2 == 0, config_error,
                     "expected_attention::score_decode: S = ", s, ", n_sink = ", n_sink, ", n_future = ", n_future, ", D = ",
                     d, "; needs S > n_sink >= 0, n_future >= 1 and an even D");
    const index_t m = qw.size(b), grp = qw.heads() / c.kv_heads(), ns = s - n_sink;
    const index_t rows = 1 + (use_covariance ? m : 0), cols = grp * rows; // per head: mu' then u_1..u_W
    const auto us = [](index_t x) { return static_cast<std::size_t>(x); };
    const std::size_t need = us(s * d) + us(cols * d) + us(ns * cols) + us(ns) * 2 + us(d);
    if (work.size() < need) work.resize(need);
    float* keys = work.data();              // (S,D)
    float* a = keys + s * d;                // (cols,D)
    float* y = a + cols * d;                // (S - n_sink, cols)
    float* z = y + ns * cols;               // (S - n_sink)
    float* acc = z + ns;                    // (S - n_sink)
    float* cq = acc + ns;                   // (D)
    std::vector<double> cbar, sbar, mu(us(d));
    detail::averaged_rope(rope_theta, d, static_cast<index_t>(t) + 1, n_future, cbar, sbar);
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d));
    for (index_t j = 0; j < grp; ++j) {
      const view<const float> q = qw.rows(b, g * grp + j, m); // (W,D) pre-RoPE
      std::fill(mu.begin(), mu.end(), 0.0);
      for (index_t r = 0; r < m; ++r)
        for (index_t e = 0; e < d; ++e) mu[us(e)] += q(r, e);
      for (double& v : mu) v /= static_cast<double>(m);
      float* arow = a + j * rows * d;
      detail::apply_averaged_rope(cbar, sbar, mu.data(), arow);
      for (index_t e = 0; e < d; ++e) arow[e] *= inv_sqrt_d;
      if (use_covariance)
        for (index_t r = 0; r < m; ++r) {
          for (index_t e = 0; e < d; ++e) cq[e] = static_cast<float>(q(r, e) - mu[us(e)]);
          detail::apply_averaged_rope(cbar, sbar, cq, arow + (1 + r) * d);
        }
    }
    detail::gather_keys(c, b, g, keys);
    // y (cols, S - n_sink): row j rows + 0 holds mu'.k_i / sqrt(D), rows j rows + r the u_r . k_i,
    // so the sums below run along tokens (vectorised, no horizontal reductions).
    cpu::gemm(view<const float>(a, {cols, d}), view<const float>(keys + n_sink * d, {ns, d}).transpose(),
              view<float>(y, {cols, ns}));
    std::fill(acc, acc + ns, 0.0f);
    const float quad = 1.0f / (2.0f * static_cast<float>(d) * static_cast<float>(m));
    for (index_t j = 0; j < grp; ++j) {
      const float* y0 = y + j * rows * ns;
      std::fill(z, z + ns, 0.0f);
      for (index_t r = 1; r < rows; ++r) {
        const float* yr = y0 + r * ns;
        for (index_t i = 0; i < ns; ++i) z[i] += yr[i] * yr[i];
      }
      for (index_t i = 0; i < ns; ++i) z[i] = y0[i] + z[i] * quad;
      const std::span<float> zs(z, us(ns));
      cpu::softmax(std::span<const float>(zs), zs);
      const float inv = 1.0f / static_cast<float>(grp);
      for (index_t i = 0; i < ns; ++i) acc[i] += z[i] * inv;
    }
    for (index_t i = 0; i < ns; ++i) out[us(n_sink + i)] = acc[i];
    if (use_vnorm) {
      const float eps = static_cast<float>(epsilon);
      for (const auto& pg : c.pages(b, g))
        for (index_t jj = 0; jj < pg.tokens; ++jj) {
          const index_t i = pg.first + jj;
          if (i < n_sink) continue;
          out[us(i)] = (out[us(i)] + eps) * std::sqrt(detail::squared_norm(pg.values + jj * d, d));
        }
    }
    detail::protect_range(out, s, 0, n_sink);
  }
  /// Decode mode with its own scratch (allocates O(S D)).
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    std::vector<float> work;
    score_decode(c, b, g, t, out, work);
  }
};
static_assert(prefill_scorer<expected_attention>);

} // namespace kv
} // namespace v0_1
} // namespace membound
