// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Row normalisations: `rmsnorm` (as in LLaMA) and `layernorm`, for one row (span) or for
/// every row of a rank-2 view with contiguous rows. O(n) per row.
///
/// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w. LayerNorm: y = (x - mean) / sqrt(var + eps) * g + b
/// with the two-pass (centred) variance. An empty weight/bias span means 1 / 0. The per-element
/// arithmetic is the scalar twin's (same order of operations); only the row sums are reordered by
/// the SIMD reduction. Outputs beyond 8 MiB are written with non-temporal stores.

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/reduce.hpp"
#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
template <class A>
void rmsnorm(const float* x, const float* w, float* y, std::size_t n, float eps, bool stream) noexcept {
  if (n == 0) return;
  using B = fbatch<A>;
  const float ss = dot<A>(x, x, n);
  const B r(1.f / std::sqrt(ss / static_cast<float>(n) + eps));
  if (w == nullptr) {
    transform<A>(x, y, n, stream, [r](const B& v) MEMBOUND_INLINE_LAMBDA { return v * r; });
  } else {
    transform2<A>(x, w, y, n, stream, [r](const B& v, const B& g) MEMBOUND_INLINE_LAMBDA { return (v * r) * g; });
  }
}

template <class A>
void layernorm(const float* x, const float* g, const float* b, float* y, std::size_t n, float eps) noexcept {
  if (n == 0) return;
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  const float fn = static_cast<float>(n);
  const float mean = sum<A>(x, n) / fn;
  const B vm(mean);
  B a0(0.f), a1(0.f);
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const B d0 = loadu<A>(x + i) - vm, d1 = loadu<A>(x + i + L) - vm;
    a0 = detail::fma<A>(d0, d0, a0);
    a1 = detail::fma<A>(d1, d1, a1);
  }
  for (; i + L <= n; i += L) {
    const B d = loadu<A>(x + i) - vm;
    a0 = detail::fma<A>(d, d, a0);
  }
  if (i < n) {
    const B d = load_partial<A>(x + i, n - i, mean) - vm; // padded lanes give d = 0
    a1 = detail::fma<A>(d, d, a1);
  }
  const float var = hsum<A>(a0 + a1);
  const B r(1.f / std::sqrt(var / fn + eps));
  auto one = [&](const B& xv, const float* gp, const float* bp, std::size_t m) {
    B v = (xv - vm) * r;
    if (g != nullptr) v = v * (m == L ? loadu<A>(gp) : load_partial<A>(gp, m, 0.f));
    if (b != nullptr) v = v + (m == L ? loadu<A>(bp) : load_partial<A>(bp, m, 0.f));
    return v;
  };
  for (i = 0; i + L <= n; i += L) storeu<A>(y + i, one(loadu<A>(x + i), g + i * (g != nullptr), b + i * (b != nullptr), L));
  if (i < n)
    store_partial<A>(y + i, n - i, one(load_partial<A>(x + i, n - i, 0.f), g + i * (g != nullptr), b + i * (b != nullptr), n - i));
}

inline const float* or_null(std::span<const float> s) noexcept { return s.empty() ? nullptr : s.data(); }
} // namespace detail

/// RMSNorm of one row: y = x / sqrt(mean(x^2) + eps) * w (w empty means all ones). y may alias x.
/// @throws shape_error if y's size differs from x's or w is neither empty nor of x's size;
/// config_error if eps is negative or not finite. Complexity: O(n), two passes over x.
template <class B = backend::best_cpu>
void rmsnorm(std::span<const float> x, std::span<const float> w, std::span<float> y, float eps = 1e-6f) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::rmsnorm(x, w, y, eps);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "rmsnorm", "x", "y");
    ::membound::detail::expect_weight(w.size(), x.size(), "rmsnorm", "weight");
    ::membound::detail::expect_eps(eps, "rmsnorm");
    detail::rmsnorm<typename B::arch>(x.data(), detail::or_null(w), y.data(), x.size(), eps,
                                      x.size() * sizeof(float) >= detail::stream_threshold_bytes);
  }
}

/// RMSNorm of every row of a (rows, cols) view (contiguous rows); w has cols elements or none.
/// @throws shape_error, config_error as above. Complexity: O(rows*cols); each row is read once
/// from memory (the second pass hits the cache), outputs beyond 8 MiB are streamed.
template <class B = backend::best_cpu>
void rmsnorm(view<const float> x /*(N,C)*/, std::span<const float> w, view<float> y /*(N,C)*/, float eps = 1e-6f) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::rmsnorm(x, w, y, eps);
  } else {
    ::membound::detail::expect_rows(x, "rmsnorm", "x");
    ::membound::detail::expect_rows(y, "rmsnorm", "y");
    ::membound::detail::expect_same_shape(x, y, "rmsnorm");
    const auto c = static_cast<std::size_t>(x.extent(1));
    ::membound::detail::expect_weight(w.size(), c, "rmsnorm", "weight");
    ::membound::detail::expect_eps(eps, "rmsnorm");
    const bool stream = c * static_cast<std::size_t>(x.extent(0)) * sizeof(float) >= detail::stream_threshold_bytes;
    for (index_t r = 0; r < x.extent(0); ++r)
      detail::rmsnorm<typename B::arch>(x.data() + r * x.stride(0), detail::or_null(w), y.data() + r * y.stride(0), c, eps,
                                        stream);
  }
}

/// LayerNorm of one row: y = (x - mean) / sqrt(var + eps) * g + b (g, b empty mean 1, 0). y may
/// alias x. @throws shape_error, config_error (eps). Complexity: O(n), three passes over x.
template <class B = backend::best_cpu>
void layernorm(std::span<const float> x, std::span<const float> g, std::span<const float> b, std::span<float> y,
               float eps = 1e-5f) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::layernorm(x, g, b, y, eps);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "layernorm", "x", "y");
    ::membound::detail::expect_weight(g.size(), x.size(), "layernorm", "gamma");
    ::membound::detail::expect_weight(b.size(), x.size(), "layernorm", "beta");
    ::membound::detail::expect_eps(eps, "layernorm");
    detail::layernorm<typename B::arch>(x.data(), detail::or_null(g), detail::or_null(b), y.data(), x.size(), eps);
  }
}

/// LayerNorm of every row of a (rows, cols) view (contiguous rows). @throws shape_error,
/// config_error. Complexity: O(rows*cols).
template <class B = backend::best_cpu>
void layernorm(view<const float> x /*(N,C)*/, std::span<const float> g, std::span<const float> b, view<float> y /*(N,C)*/,
               float eps = 1e-5f) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::layernorm(x, g, b, y, eps);
  } else {
    ::membound::detail::expect_rows(x, "layernorm", "x");
    ::membound::detail::expect_rows(y, "layernorm", "y");
    ::membound::detail::expect_same_shape(x, y, "layernorm");
    const auto c = static_cast<std::size_t>(x.extent(1));
    ::membound::detail::expect_weight(g.size(), c, "layernorm", "gamma");
    ::membound::detail::expect_weight(b.size(), c, "layernorm", "beta");
    ::membound::detail::expect_eps(eps, "layernorm");
    for (index_t r = 0; r < x.extent(0); ++r)
      detail::layernorm<typename B::arch>(x.data() + r * x.stride(0), detail::or_null(g), detail::or_null(b),
                                          y.data() + r * y.stride(0), c, eps);
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
