// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Normalisation layers over the last dimension, forward and backward: `nn::rms_norm`
/// (y = x / sqrt(mean(x^2) + eps) * w, as Llama's RMSNorm) and `nn::layer_norm`
/// (y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, as torch.nn.LayerNorm).
///
/// Forward runs the SIMD kernels of backend/cpu/norm.hpp. Backward recomputes each row's
/// statistics from x (one extra read of a row that is in cache) instead of caching them, and
/// accumulates the weight gradients in row order (deterministic). Shapes: x, y, dx (N,C); weights
/// (C). Complexity O(N C); no allocation, except `rms_norm::backward`'s N doubles.
/// Threads: `rms_norm` runs rows in parallel (OpenMP, chunks of 64 rows) and sums its weight
/// gradient column by column over the rows in order, so its results do not depend on the thread
/// count.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "membound/backend/cpu/norm.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {
namespace detail {
inline void expect_norm_shapes(const view<const float>& x, const view<const float>& o, index_t c, const char* fn,
                               const char* name) {
  MEMBOUND_EXPECTS(x.rank() == 2 && x.extent(1) == c && x.stride(1) == 1, shape_error, fn, ": x must be (N,", c,
                   ") with contiguous rows; it is rank ", x.rank(), " with ", x.rank() == 2 ? x.extent(1) : 0, " columns");
  MEMBOUND_EXPECTS(o.rank() == 2 && o.extent(0) == x.extent(0) && o.extent(1) == c && o.stride(1) == 1, shape_error, fn,
                   ": ", name, " is (", o.extent(0), ",", o.rank() == 2 ? o.extent(1) : 0, "), expected (", x.extent(0),
                   ",", c, ") with contiguous rows");
}
/// f(r0, r1) over chunks of 64 of n rows, in parallel where OpenMP is on; the chunk bounds do not
/// depend on the thread count. f must not throw.
template <class F>
void for_row_chunks(index_t n, F&& f) {
  constexpr index_t chunk = 64;
  const index_t chunks = (n + chunk - 1) / chunk;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (chunks > 1)
#endif
  for (index_t k = 0; k < chunks; ++k) f(k * chunk, std::min(n, (k + 1) * chunk));
}
} // namespace detail

/// RMSNorm with a learned scale; a view into `parameters` ("<prefix>.weight", initialised to 1).
struct rms_norm {
  view<float> weight, grad_weight; ///< (C)
  float eps = 1e-6f;

  static rms_norm make(parameters& p, const std::string& prefix, index_t c, float eps = 1e-6f) {
    MEMBOUND_EXPECTS(c >= 1, config_error, "rms_norm \"", prefix, "\": C = ", c, ", expected >= 1");
    MEMBOUND_EXPECTS(eps > 0.0f && std::isfinite(eps), config_error, "rms_norm \"", prefix, "\": eps = ", eps, ", expected > 0");
    rms_norm n;
    n.weight = p.add(prefix + ".weight", {c});
    n.grad_weight = p.grad(prefix + ".weight");
    std::fill(n.weight.span().begin(), n.weight.span().end(), 1.0f);
    n.eps = eps;
    return n;
  }
  /// y = rmsnorm(x) * w. @throws shape_error.
  void forward(view<const float> x /*(N,C)*/, view<float> y /*(N,C)*/) const {
    detail::expect_norm_shapes(x, y, weight.extent(0), "rms_norm::forward", "y");
    const std::span<const float> w(weight.span());
    detail::for_row_chunks(x.extent(0), [&](index_t r0, index_t r1) { cpu::rmsnorm(x.slice(0, r0, r1), w, y.slice(0, r0, r1), eps); });
  }
  /// dx = r (w dy) - x r^3 / C * sum_j w_j dy_j x_j, and grad_weight += sum_rows dy x r, with
  /// r = 1 / sqrt(mean(x^2) + eps), all in double: the row sums over j in 8 interleaved partial
  /// sums, the column sums per fixed chunk of 64 rows (rows in order), then over the chunks in
  /// order, so the result does not depend on the thread count. With `accumulate`, dx += (each
  /// value rounded to float first: the same bits as writing it elsewhere and adding), as a
  /// residual branch's gradient joins the stream's. Reads x and dy once; scratch of
  /// ceil(N / 64) C doubles, kept per calling thread and reused. @throws shape_error.
  void backward(view<const float> x, view<const float> dy, view<float> dx, bool accumulate = false) const {
    const index_t c = weight.extent(0), n = x.extent(0);
    detail::expect_norm_shapes(x, dy, c, "rms_norm::backward", "dy");
    detail::expect_norm_shapes(x, dx, c, "rms_norm::backward", "dx");
    constexpr index_t chunk = 64, lanes = 8;
    const index_t chunks = (n + chunk - 1) / chunk;
    static thread_local std::vector<double> partial; // (chunks, C): each chunk's column sums
    partial.assign(static_cast<std::size_t>(chunks * c), 0.0);
    double* const parts = partial.data(); // the calling thread's scratch (workers have their own)
    const std::span<const float> w(weight.span());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (chunks > 1)
#endif
    for (index_t k = 0; k < chunks; ++k) {
      double* part = parts + k * c;
      for (index_t r = k * chunk; r < std::min(n, (k + 1) * chunk); ++r) {
        const float* xr = x.data() + r * x.stride(0);
        const float* gr = dy.data() + r * dy.stride(0);
        float* dr = dx.data() + r * dx.stride(0);
        double ss[lanes] = {}, dot[lanes] = {};
        index_t j = 0;
        for (; j + lanes <= c; j += lanes)
          for (index_t l = 0; l < lanes; ++l) {
            const double xv = xr[j + l];
            ss[l] += xv * xv;
            dot[l] += static_cast<double>(w[static_cast<std::size_t>(j + l)]) * gr[j + l] * xv;
          }
        for (; j < c; ++j) {
          ss[0] += static_cast<double>(xr[j]) * xr[j];
          dot[0] += static_cast<double>(w[static_cast<std::size_t>(j)]) * gr[j] * xr[j];
        }
        double sst = 0.0, dott = 0.0;
        for (index_t l = 0; l < lanes; ++l) {
          sst += ss[l];
          dott += dot[l];
        }
        const double inv = 1.0 / std::sqrt(sst / static_cast<double>(c) + eps);
        const double kk = dott * inv * inv * inv / static_cast<double>(c);
        for (j = 0; j < c; ++j) {
          const double g = gr[j];
          const float v = static_cast<float>(inv * w[static_cast<std::size_t>(j)] * g - xr[j] * kk);
          dr[j] = accumulate ? dr[j] + v : v;
          part[j] += g * xr[j] * inv;
        }
      }
    }
    for (index_t j = 0; j < c; ++j) {
      double acc = 0.0;
      for (index_t k = 0; k < chunks; ++k) acc += parts[k * c + j];
      grad_weight(j) += static_cast<float>(acc);
    }
  }
};

/// LayerNorm with gamma ("<prefix>.weight", 1) and beta ("<prefix>.bias", 0).
struct layer_norm {
  view<float> weight, bias, grad_weight, grad_bias; ///< (C)
  float eps = 1e-5f;

  static layer_norm make(parameters& p, const std::string& prefix, index_t c, float eps = 1e-5f) {
    MEMBOUND_EXPECTS(c >= 1, config_error, "layer_norm \"", prefix, "\": C = ", c, ", expected >= 1");
    MEMBOUND_EXPECTS(eps > 0.0f && std::isfinite(eps), config_error, "layer_norm \"", prefix, "\": eps = ", eps, ", expected > 0");
    layer_norm n;
    n.weight = p.add(prefix + ".weight", {c});
    n.bias = p.add(prefix + ".bias", {c});
    n.grad_weight = p.grad(prefix + ".weight");
    n.grad_bias = p.grad(prefix + ".bias");
    std::fill(n.weight.span().begin(), n.weight.span().end(), 1.0f);
    n.eps = eps;
    return n;
  }
  /// y = (x - mean) / sqrt(var + eps) * gamma + beta. @throws shape_error.
  void forward(view<const float> x /*(N,C)*/, view<float> y /*(N,C)*/) const {
    detail::expect_norm_shapes(x, y, weight.extent(0), "layer_norm::forward", "y");
    cpu::layernorm(x, std::span<const float>(weight.span()), std::span<const float>(bias.span()), y, eps);
  }
  /// With xh = (x - mean) r and g = gamma dy: dx = r (g - mean(g) - xh mean(g xh));
  /// grad_weight += sum_rows dy xh, grad_bias += sum_rows dy. @throws shape_error.
  void backward(view<const float> x, view<const float> dy, view<float> dx) const {
    const index_t c = weight.extent(0);
    detail::expect_norm_shapes(x, dy, c, "layer_norm::backward", "dy");
    detail::expect_norm_shapes(x, dx, c, "layer_norm::backward", "dx");
    const double n = static_cast<double>(c);
    for (index_t r = 0; r < x.extent(0); ++r) {
      const float* xr = x.data() + r * x.stride(0);
      const float* gr = dy.data() + r * dy.stride(0);
      float* dr = dx.data() + r * dx.stride(0);
      double mean = 0.0, var = 0.0;
      for (index_t j = 0; j < c; ++j) mean += xr[j];
      mean /= n;
      for (index_t j = 0; j < c; ++j) var += (xr[j] - mean) * (xr[j] - mean);
      const double inv = 1.0 / std::sqrt(var / n + eps);
      double mg = 0.0, mgx = 0.0;
      for (index_t j = 0; j < c; ++j) {
        const double xh = (xr[j] - mean) * inv, g = static_cast<double>(weight(j)) * gr[j];
        mg += g;
        mgx += g * xh;
        grad_weight(j) += static_cast<float>(gr[j] * xh);
        grad_bias(j) += gr[j];
      }
      mg /= n;
      mgx /= n;
      for (index_t j = 0; j < c; ++j) {
        const double xh = (xr[j] - mean) * inv;
        dr[j] = static_cast<float>(inv * (static_cast<double>(weight(j)) * gr[j] - mg - xh * mgx));
      }
    }
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
