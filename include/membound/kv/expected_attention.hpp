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
/// Cost O(H T D^2 + H S D^2).

#include <vector>

#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct expected_attention {
  static constexpr std::string_view name = "expected_attention";
  index_t n_future = 512, n_sink = 4;
  bool use_covariance = true, use_vnorm = true;
  double epsilon = 0.0;

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
    const auto ud = static_cast<std::size_t>(d), half = ud / 2;
    // Averaged rotation R (D,D): R_p = diag(cos) + diag(sin) P with P[i+D/2][i] = 1, P[i][i+D/2] = -1.
    std::vector<double> rbar(ud * ud, 0.0);
    for (index_t p = s; p < s + n_future; ++p)
      for (std::size_t i = 0; i < ud; ++i) {
        const double inv = std::pow(in.rope_theta, -2.0 * static_cast<double>(i % half) / static_cast<double>(d));
        const double a = static_cast<double>(p) * inv;
        rbar[i * ud + i] += std::cos(a) / static_cast<double>(n_future);
        if (i < half) rbar[i * ud + i + half] -= std::sin(a) / static_cast<double>(n_future);
        else rbar[i * ud + i - half] += std::sin(a) / static_cast<double>(n_future);
      }
    const index_t m = s - n_sink;
    std::vector<double> acc(static_cast<std::size_t>(in.kv_heads() * m), 0.0), z(static_cast<std::size_t>(m));
    std::vector<double> mu(ud), cov(ud * ud), mu2(ud), tmp(ud * ud), cov2(ud * ud);
    for (index_t h = 0; h < hq; ++h) {
      const double cnt = static_cast<double>(t - n_sink);
      std::fill(mu.begin(), mu.end(), 0.0);
      for (index_t r = n_sink; r < t; ++r)
        for (std::size_t e = 0; e < ud; ++e) mu[e] += q(h, r, static_cast<index_t>(e)) / cnt;
      std::fill(cov.begin(), cov.end(), 0.0);
      if (use_covariance)
        for (index_t r = n_sink; r < t; ++r)
          for (std::size_t a = 0; a < ud; ++a)
            for (std::size_t b = 0; b < ud; ++b)
              cov[a * ud + b] += (q(h, r, static_cast<index_t>(a)) - mu[a]) * (q(h, r, static_cast<index_t>(b)) - mu[b]) / cnt;
      for (std::size_t a = 0; a < ud; ++a) { // mu' = R mu, Sigma' = R Sigma R^T
        mu2[a] = 0.0;
        for (std::size_t b = 0; b < ud; ++b) mu2[a] += rbar[a * ud + b] * mu[b];
      }
      for (std::size_t a = 0; a < ud; ++a)
        for (std::size_t b = 0; b < ud; ++b) {
          double v = 0.0;
          for (std::size_t c = 0; c < ud; ++c) v += cov[a * ud + c] * rbar[b * ud + c];
          tmp[a * ud + b] = v;
        }
      for (std::size_t a = 0; a < ud; ++a)
        for (std::size_t b = 0; b < ud; ++b) {
          double v = 0.0;
          for (std::size_t c = 0; c < ud; ++c) v += rbar[a * ud + c] * tmp[c * ud + b];
          cov2[a * ud + b] = v;
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
};
static_assert(prefill_scorer<expected_attention>);

} // namespace kv
} // namespace v0_1
} // namespace membound
