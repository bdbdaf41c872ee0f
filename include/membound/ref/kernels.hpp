// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Scalar oracles ("scalar twins") of every CPU kernel: plain loops in float arithmetic
/// using `std::exp`, `std::tanh`, `std::erf` and the exact conversions of `core/dtype.hpp`.
///
/// These are what `cpu::f<backend::scalar>(...)` calls, the baseline of the benchmarks and the
/// oracle of the tests. Reductions accumulate left to right in one float (error bound
/// gamma_n * sum|terms|). Every function is O(n) in its input size (matvec O(M*K), top-k
/// O(n log k)) and validates its arguments like the SIMD entry points do.
///
/// Special values (shared by the SIMD kernels, which are tested against these):
/// - `max` of an empty span is -inf; a NaN anywhere makes `max` NaN.
/// - `softmax` computes exp(x - max) / sum with IEEE semantics: a NaN or +inf input makes the
///   whole row NaN; -inf entries give exactly 0 unless every entry is -inf (then NaN, as PyTorch).
/// - `logsumexp` of an empty span or of all -inf is -inf; +inf gives +inf; NaN gives NaN.
/// - top-k / bottom-k order: -inf < ... < -0 == +0 < ... < +inf < NaN (every NaN equal); ties go
///   to the lower index. So NaN ranks first in top-k and last in bottom-k.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "membound/config.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {

/// State of an online (streaming) softmax over a sequence seen in chunks: the running maximum
/// and the sum of exp(x - max) so far. The empty state is {-inf, 0}. States of disjoint chunks
/// combine with `merge` in any grouping (up to rounding).
struct softmax_state {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0.f;
  /// log(sum_i exp(x_i)) of everything seen: max + log(sum); -inf for the empty state.
  float logsumexp() const noexcept {
    if (max == -std::numeric_limits<float>::infinity()) return max;
    return max + std::log(sum);
  }
};

/// Combines the states of two disjoint chunks. O(1).
inline softmax_state merge(softmax_state a, softmax_state b) noexcept {
  const float m = std::max(a.max, b.max);
  if (std::isnan(a.max) || std::isnan(b.max)) return {std::numeric_limits<float>::quiet_NaN(), a.sum + b.sum};
  if (m == -std::numeric_limits<float>::infinity()) return {m, 0.f};
  const float sa = a.sum == 0.f ? 0.f : a.sum * std::exp(a.max - m);
  const float sb = b.sum == 0.f ? 0.f : b.sum * std::exp(b.max - m);
  return {m, sa + sb};
}

namespace detail {
/// Checks that `v` is a rank-2 view whose rows are contiguous (stride(1) == 1). @throws shape_error
template <class T>
void expect_rows(const view<T>& v, const char* fn, const char* what) {
  MEMBOUND_EXPECTS(v.rank() == 2, shape_error, fn, ": ", what, " has rank ", v.rank(), ", expected 2 (rows, cols)");
  MEMBOUND_EXPECTS(v.extent(1) <= 1 || v.stride(1) == 1, shape_error, fn, ": ", what, " has inner stride ",
                   v.stride(1), ", expected 1 (contiguous rows)");
}
template <class T, class U>
void expect_same_shape(const view<T>& x, const view<U>& y, const char* fn) {
  MEMBOUND_EXPECTS(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1), shape_error, fn, ": x is (",
                   x.extent(0), ",", x.extent(1), ") but y is (", y.extent(0), ",", y.extent(1), ")");
}
inline void expect_same_size(std::size_t n, std::size_t m, const char* fn, const char* a, const char* b) {
  MEMBOUND_EXPECTS(n == m, shape_error, fn, ": ", a, " has ", n, " elements, ", b, " has ", m);
}
inline void expect_eps(float eps, const char* fn) {
  MEMBOUND_EXPECTS(eps >= 0.f && std::isfinite(eps), config_error, fn, ": eps is ", eps,
                   ", expected a finite value >= 0");
}
inline void expect_weight(std::size_t w, std::size_t n, const char* fn, const char* name) {
  MEMBOUND_EXPECTS(w == 0 || w == n, shape_error, fn, ": ", name, " has ", w, " elements, expected 0 or ", n);
}
/// Total-order key of the top-k contract: monotone in the value, -0 == +0, every NaN above +inf.
inline std::int32_t order_key(float v) noexcept {
  if (std::isnan(v)) return std::numeric_limits<std::int32_t>::max();
  if (v == 0.f) v = 0.f;
  const std::int32_t i = std::bit_cast<std::int32_t>(v);
  return i >= 0 ? i : static_cast<std::int32_t>(i ^ 0x7fffffff);
}
inline void expect_k(index_t k, std::size_t n, const char* fn) {
  MEMBOUND_EXPECTS(k >= 0 && static_cast<std::size_t>(k) <= n, config_error, fn, ": k is ", k, ", expected 0 <= k <= n = ",
                   n);
}
} // namespace detail

namespace ref {

// ---- reductions ----------------------------------------------------------------------------

/// sum_i x_i y_i, accumulated left to right. @throws shape_error if the sizes differ. O(n).
inline float dot(std::span<const float> x, std::span<const float> y) {
  detail::expect_same_size(x.size(), y.size(), "dot", "x", "y");
  float s = 0.f;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}
/// sum_i x_i, left to right (0 for empty). O(n).
inline float sum(std::span<const float> x) noexcept {
  float s = 0.f;
  for (float v : x) s += v;
  return s;
}
/// Largest element; -inf for empty; NaN if any element is NaN. O(n).
inline float max(std::span<const float> x) noexcept {
  float m = -std::numeric_limits<float>::infinity();
  for (float v : x) {
    if (std::isnan(v)) return v;
    m = v > m ? v : m;
  }
  return m;
}

// ---- BLAS-1 ----------------------------------------------------------------------------------

/// y += a * x (one multiply, one add, no FMA). @throws shape_error. O(n).
inline void axpy(float a, std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "axpy", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = y[i] + a * x[i];
}
/// y = a * x; y may alias x exactly. @throws shape_error. O(n).
inline void scale(float a, std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "scale", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = a * x[i];
}

// ---- exp, softmax, logsumexp --------------------------------------------------------------

/// y = exp(x) element-wise with std::exp; y may alias x exactly. @throws shape_error. O(n).
inline void exp(std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "exp", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = std::exp(x[i]);
}
/// y = exp(x - shift); returns the sum of y, accumulated left to right. y may alias x. O(n).
inline float exp_shifted(std::span<const float> x, float shift, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "exp_shifted", "x", "y");
  float s = 0.f;
  for (std::size_t i = 0; i < x.size(); ++i) s += (y[i] = std::exp(x[i] - shift));
  return s;
}
/// Folds a chunk into an online-softmax state (two passes over the chunk). O(n).
inline void softmax_update(softmax_state& s, std::span<const float> x) noexcept {
  const float m = max(x);
  if (m == -std::numeric_limits<float>::infinity()) return; // empty or all -inf: contributes nothing
  float sum = 0.f;
  for (float v : x) sum += std::exp(v - m);
  s = merge(s, softmax_state{m, sum});
}
/// y = exp(x - s.max) / s.sum: the softmax of x once `s` has seen all of it. y may alias x.
/// @throws shape_error. O(n).
inline void softmax_finish(const softmax_state& s, std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "softmax_finish", "x", "y");
  const float inv = 1.f / s.sum;
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = std::exp(x[i] - s.max) * inv;
}
/// Numerically stable softmax y = exp(x - max x) / sum; y may alias x. @throws shape_error. O(n).
inline void softmax(std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "softmax", "x", "y");
  softmax_state s;
  softmax_update(s, x);
  softmax_finish(s, x, y);
}
/// Row-wise softmax of a (rows, cols) view with contiguous rows; y may alias x.
/// @throws shape_error. O(rows * cols).
inline void softmax(view<const float> x /*(N,C)*/, view<float> y /*(N,C)*/) {
  detail::expect_rows(x, "softmax", "x");
  detail::expect_rows(y, "softmax", "y");
  detail::expect_same_shape(x, y, "softmax");
  const auto c = static_cast<std::size_t>(x.extent(1));
  for (index_t r = 0; r < x.extent(0); ++r)
    softmax(std::span<const float>(x.data() + r * x.stride(0), c), std::span<float>(y.data() + r * y.stride(0), c));
}
/// log(sum exp(x)), stable (max shifted). O(n).
inline float logsumexp(std::span<const float> x) noexcept {
  softmax_state s;
  softmax_update(s, x);
  if (s.max == std::numeric_limits<float>::infinity()) return s.max;
  return s.logsumexp();
}

// ---- normalisation ---------------------------------------------------------------------------

/// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w (w empty means 1). y may alias x.
/// @throws shape_error on sizes, config_error on eps < 0 or non-finite. O(n).
inline void rmsnorm(std::span<const float> x, std::span<const float> w, std::span<float> y, float eps = 1e-6f) {
  detail::expect_same_size(x.size(), y.size(), "rmsnorm", "x", "y");
  detail::expect_weight(w.size(), x.size(), "rmsnorm", "weight");
  detail::expect_eps(eps, "rmsnorm");
  if (x.empty()) return;
  float ss = 0.f;
  for (float v : x) ss += v * v;
  const float r = 1.f / std::sqrt(ss / static_cast<float>(x.size()) + eps);
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = w.empty() ? x[i] * r : x[i] * r * w[i];
}
/// LayerNorm: y = (x - mean) / sqrt(var + eps) * g + b (two-pass variance; g, b empty mean 1, 0).
/// y may alias x. @throws shape_error, config_error. O(n).
inline void layernorm(std::span<const float> x, std::span<const float> g, std::span<const float> b, std::span<float> y,
                      float eps = 1e-5f) {
  detail::expect_same_size(x.size(), y.size(), "layernorm", "x", "y");
  detail::expect_weight(g.size(), x.size(), "layernorm", "gamma");
  detail::expect_weight(b.size(), x.size(), "layernorm", "beta");
  detail::expect_eps(eps, "layernorm");
  if (x.empty()) return;
  const float n = static_cast<float>(x.size());
  const float mean = sum(x) / n;
  float var = 0.f;
  for (float v : x) var += (v - mean) * (v - mean);
  const float r = 1.f / std::sqrt(var / n + eps);
  for (std::size_t i = 0; i < x.size(); ++i) {
    float v = (x[i] - mean) * r;
    if (!g.empty()) v = v * g[i];
    if (!b.empty()) v = v + b[i];
    y[i] = v;
  }
}
/// RMSNorm of every row of a (rows, cols) view. @throws shape_error, config_error. O(rows*cols).
inline void rmsnorm(view<const float> x /*(N,C)*/, std::span<const float> w, view<float> y /*(N,C)*/, float eps = 1e-6f) {
  detail::expect_rows(x, "rmsnorm", "x");
  detail::expect_rows(y, "rmsnorm", "y");
  detail::expect_same_shape(x, y, "rmsnorm");
  const auto c = static_cast<std::size_t>(x.extent(1));
  detail::expect_weight(w.size(), c, "rmsnorm", "weight");
  detail::expect_eps(eps, "rmsnorm");
  for (index_t r = 0; r < x.extent(0); ++r)
    rmsnorm(std::span<const float>(x.data() + r * x.stride(0), c), w, std::span<float>(y.data() + r * y.stride(0), c), eps);
}
/// LayerNorm of every row of a (rows, cols) view. @throws shape_error, config_error. O(rows*cols).
inline void layernorm(view<const float> x /*(N,C)*/, std::span<const float> g, std::span<const float> b,
                      view<float> y /*(N,C)*/, float eps = 1e-5f) {
  detail::expect_rows(x, "layernorm", "x");
  detail::expect_rows(y, "layernorm", "y");
  detail::expect_same_shape(x, y, "layernorm");
  const auto c = static_cast<std::size_t>(x.extent(1));
  detail::expect_weight(g.size(), c, "layernorm", "gamma");
  detail::expect_weight(b.size(), c, "layernorm", "beta");
  detail::expect_eps(eps, "layernorm");
  for (index_t r = 0; r < x.extent(0); ++r)
    layernorm(std::span<const float>(x.data() + r * x.stride(0), c), g, b,
              std::span<float>(y.data() + r * y.stride(0), c), eps);
}

// ---- activations -----------------------------------------------------------------------------

/// SiLU: y = x / (1 + exp(-x)); y may alias x. @throws shape_error. O(n).
inline void silu(std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "silu", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] / (1.f + std::exp(-x[i]));
}
/// SwiGLU: y = silu(g) u; y may alias g or u. @throws shape_error. O(n).
inline void swiglu(std::span<const float> g, std::span<const float> u, std::span<float> y) {
  detail::expect_same_size(g.size(), u.size(), "swiglu", "g", "u");
  detail::expect_same_size(g.size(), y.size(), "swiglu", "g", "y");
  for (std::size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}
/// SwiGLU backward: dg = dy u s (1 + g (1 - s)), du = dy silu(g) with s = 1 / (1 + exp(-g)); one
/// of dg, du may alias dy. @throws shape_error. O(n).
inline void swiglu_backward(std::span<const float> g, std::span<const float> u, std::span<const float> dy,
                            std::span<float> dg, std::span<float> du) {
  detail::expect_same_size(g.size(), u.size(), "swiglu_backward", "g", "u");
  detail::expect_same_size(g.size(), dy.size(), "swiglu_backward", "g", "dy");
  detail::expect_same_size(g.size(), dg.size(), "swiglu_backward", "g", "dg");
  detail::expect_same_size(g.size(), du.size(), "swiglu_backward", "g", "du");
  for (std::size_t i = 0; i < g.size(); ++i) {
    const float e1 = 1.f + std::exp(-g[i]), s = 1.f / e1, d = dy[i];
    dg[i] = d * u[i] * s * (1.f + g[i] * (1.f - s));
    du[i] = g[i] / e1 * d;
  }
}
/// GELU, tanh form: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); y may alias x. O(n).
inline void gelu_tanh(std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "gelu_tanh", "x", "y");
  constexpr float c = 0.7978845608028654f; // sqrt(2/pi)
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }
}
/// GELU, exact form: y = 0.5 x (1 + erf(x / sqrt 2)); y may alias x. O(n).
inline void gelu_erf(std::span<const float> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "gelu_erf", "x", "y");
  constexpr float r = 0.7071067811865476f; // 1/sqrt(2)
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * r));
}
/// dz = dy * silu'(z), silu'(z) = s (1 + z (1 - s)), s = 1 / (1 + exp(-z)); dz may alias dy. O(n).
inline void silu_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::expect_same_size(z.size(), dy.size(), "silu_backward", "z", "dy");
  detail::expect_same_size(z.size(), dz.size(), "silu_backward", "z", "dz");
  for (std::size_t i = 0; i < z.size(); ++i) {
    const float s = 1.f / (1.f + std::exp(-z[i]));
    dz[i] = dy[i] * s * (1.f + z[i] * (1.f - s));
  }
}
/// dz = dy * gelu_tanh'(z) = dy (0.5 (1 + t) + 0.5 z (1 - t^2) k (1 + 3 c z^2)), t = tanh(k (z + c z^3)),
/// the literal formula; dz may alias dy. O(n).
inline void gelu_tanh_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::expect_same_size(z.size(), dy.size(), "gelu_tanh_backward", "z", "dy");
  detail::expect_same_size(z.size(), dz.size(), "gelu_tanh_backward", "z", "dz");
  constexpr float k = 0.7978845608028654f, c = 0.044715f;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const float v = z[i], t = std::tanh(k * (v + c * v * v * v));
    dz[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * k * (1.f + 3.f * c * v * v));
  }
}
/// dz = dy * gelu_erf'(z) = dy (0.5 (1 + erf(z / sqrt 2)) + z exp(-z^2 / 2) / sqrt(2 pi)); dz may alias dy. O(n).
inline void gelu_erf_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::expect_same_size(z.size(), dy.size(), "gelu_erf_backward", "z", "dy");
  detail::expect_same_size(z.size(), dz.size(), "gelu_erf_backward", "z", "dz");
  for (std::size_t i = 0; i < z.size(); ++i) {
    const float v = z[i];
    dz[i] = dy[i] * (0.5f * (1.f + std::erf(v * 0.7071067811865476f)) + v * 0.3989422804014327f * std::exp(-0.5f * v * v));
  }
}

// ---- conversion ------------------------------------------------------------------------------

/// f32 -> bf16 (round to nearest even, NaN quiet, subnormals kept). @throws shape_error. O(n).
inline void convert(std::span<const float> x, std::span<bf16> y) {
  detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = bf16::from_float(x[i]);
}
/// bf16 -> f32 (exact). @throws shape_error. O(n).
inline void convert(std::span<const bf16> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i].to_float();
}
/// f32 -> f16 (round to nearest even, subnormals kept, overflow to inf). @throws shape_error. O(n).
inline void convert(std::span<const float> x, std::span<f16> y) {
  detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = f16::from_float(x[i]);
}
/// f16 -> f32 (exact). @throws shape_error. O(n).
inline void convert(std::span<const f16> x, std::span<float> y) {
  detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i].to_float();
}

// ---- matrix-vector ---------------------------------------------------------------------------

namespace detail {
inline float widen(float v) noexcept { return v; }
inline float widen(bf16 v) noexcept { return v.to_float(); }
inline float widen(f16 v) noexcept { return v.to_float(); }
template <class T>
void matvec(view<const T> w /*(M,K)*/, std::span<const float> x /*(K)*/, std::span<float> y /*(M)*/, bool accumulate) {
  ::membound::detail::expect_rows(w, "matvec", "W");
  MEMBOUND_EXPECTS(static_cast<std::size_t>(w.extent(1)) == x.size(), shape_error, "matvec: W has ", w.extent(1),
                   " columns, x has ", x.size(), " elements");
  MEMBOUND_EXPECTS(static_cast<std::size_t>(w.extent(0)) == y.size(), shape_error, "matvec: W has ", w.extent(0),
                   " rows, y has ", y.size(), " elements");
  for (index_t i = 0; i < w.extent(0); ++i) {
    const T* row = w.data() + i * w.stride(0);
    float s = 0.f;
    for (std::size_t k = 0; k < x.size(); ++k) s += widen(row[k]) * x[k];
    y[static_cast<std::size_t>(i)] = accumulate ? y[static_cast<std::size_t>(i)] + s : s;
  }
}
} // namespace detail

/// y = W x (or y += W x when `accumulate`), W row-major (M,K) with contiguous rows.
/// @pre y does not overlap W or x. @throws shape_error. O(M*K).
inline void matvec(view<const float> w, std::span<const float> x, std::span<float> y, bool accumulate = false) {
  detail::matvec(w, x, y, accumulate);
}
/// bf16 weights, widened exactly to float. @throws shape_error. O(M*K).
inline void matvec(view<const bf16> w, std::span<const float> x, std::span<float> y, bool accumulate = false) {
  detail::matvec(w, x, y, accumulate);
}
/// f16 weights, widened exactly to float. @throws shape_error. O(M*K).
inline void matvec(view<const f16> w, std::span<const float> x, std::span<float> y, bool accumulate = false) {
  detail::matvec(w, x, y, accumulate);
}

// ---- selection -------------------------------------------------------------------------------

namespace detail {
template <bool Top>
void select_k(std::span<const float> x, std::span<index_t> out, const char* fn) {
  ::membound::detail::expect_k(static_cast<index_t>(out.size()), x.size(), fn);
  std::vector<index_t> idx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) idx[i] = static_cast<index_t>(i);
  auto better = [&](index_t a, index_t b) {
    const auto ka = ::membound::detail::order_key(x[static_cast<std::size_t>(a)]);
    const auto kb = ::membound::detail::order_key(x[static_cast<std::size_t>(b)]);
    if (ka != kb) return Top ? ka > kb : ka < kb;
    return a < b;
  };
  std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(out.size()), idx.end(), better);
  std::copy_n(idx.begin(), out.size(), out.begin());
}
} // namespace detail

/// Indices of the k = out.size() largest elements, best first; ties: lower index first; NaN ranks
/// above +inf. @throws config_error if k > n. O(n log k) (allocates n indices).
inline void top_k(std::span<const float> x, std::span<index_t> out) { detail::select_k<true>(x, out, "top_k"); }
/// Indices of the k = out.size() smallest elements, best (smallest) first; ties: lower index first;
/// NaN ranks last. @throws config_error if k > n. O(n log k).
inline void bottom_k(std::span<const float> x, std::span<index_t> out) { detail::select_k<false>(x, out, "bottom_k"); }
/// Convenience forms returning a new vector of k indices. @throws config_error if k < 0 or k > n.
inline std::vector<index_t> top_k(std::span<const float> x, index_t k) {
  ::membound::detail::expect_k(k, x.size(), "top_k");
  std::vector<index_t> out(static_cast<std::size_t>(k));
  top_k(x, out);
  return out;
}
inline std::vector<index_t> bottom_k(std::span<const float> x, index_t k) {
  ::membound::detail::expect_k(k, x.size(), "bottom_k");
  std::vector<index_t> out(static_cast<std::size_t>(k));
  bottom_k(x, out);
  return out;
}

// ---- tile attention (cascaded group attention's inner kernel) --------------------------------

/// Scalar twin of `cpu::tile_attention`: P[n, :] = softmax_m(sum_c q[c, n] k[c, m] + bias_t[m, n]),
/// o[c, n] = (sum_m v[c, m] exp(S[n, m] - max)) / sum, in the SIMD kernel's order (FMA over c,
/// then over m) with std::exp. bias_t may be null. No allocation (N <= 64). O(N^2 (kd + d)).
inline void tile_attention(index_t n, index_t kd, index_t d, const float* q, index_t ldq, const float* k,
                           index_t ldk, const float* v, index_t ldv, const float* bias_t, index_t ldb, float* o,
                           index_t ldo) {
  float e[64 * 64]; // (m, n): exp(S^T - max)
  float inv[64];
  for (index_t j = 0; j < n; ++j) {
    float mx = -std::numeric_limits<float>::infinity();
    for (index_t m = 0; m < n; ++m) {
      float acc = bias_t != nullptr ? bias_t[m * ldb + j] : 0.0f;
      for (index_t c = 0; c < kd; ++c) acc = std::fma(k[c * ldk + m], q[c * ldq + j], acc);
      e[m * 64 + j] = acc;
      mx = std::max(mx, acc);
    }
    float sum = 0.0f;
    for (index_t m = 0; m < n; ++m) {
      e[m * 64 + j] = std::exp(e[m * 64 + j] - mx);
      sum += e[m * 64 + j];
    }
    inv[j] = 1.0f / sum;
  }
  for (index_t c = 0; c < d; ++c)
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (index_t m = 0; m < n; ++m) acc = std::fma(v[c * ldv + m], e[m * 64 + j], acc);
      o[c * ldo + j] = acc * inv[j];
    }
}

} // namespace ref
} // namespace v0_1
} // namespace membound