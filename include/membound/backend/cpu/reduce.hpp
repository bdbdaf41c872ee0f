// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Reductions over float spans: `dot`, `sum`, `max`. O(n) time, O(1) memory; read-only,
/// so they run at the memory-read bandwidth for arrays beyond the caches.
///
/// The SIMD forms keep 4 batches of partial results (4 x lanes independent chains) and add them
/// at the end, so they round differently from the left-to-right scalar twin; both are within the
/// recursive-summation bound gamma_n * sum|terms| of the exact result.

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
template <class A>
float dot(const float* x, const float* y, std::size_t n) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  std::size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 = detail::fma<A>(loadu<A>(x + i), loadu<A>(y + i), a0);
    a1 = detail::fma<A>(loadu<A>(x + i + L), loadu<A>(y + i + L), a1);
    a2 = detail::fma<A>(loadu<A>(x + i + 2 * L), loadu<A>(y + i + 2 * L), a2);
    a3 = detail::fma<A>(loadu<A>(x + i + 3 * L), loadu<A>(y + i + 3 * L), a3);
  }
  for (; i + L <= n; i += L) a0 = detail::fma<A>(loadu<A>(x + i), loadu<A>(y + i), a0);
  if (i < n) a1 = detail::fma<A>(load_partial<A>(x + i, n - i, 0.f), load_partial<A>(y + i, n - i, 0.f), a1);
  return hsum<A>((a0 + a1) + (a2 + a3));
}
template <class A>
float sum(const float* x, std::size_t n) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  std::size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 += loadu<A>(x + i);
    a1 += loadu<A>(x + i + L);
    a2 += loadu<A>(x + i + 2 * L);
    a3 += loadu<A>(x + i + 3 * L);
  }
  for (; i + L <= n; i += L) a0 += loadu<A>(x + i);
  if (i < n) a1 += load_partial<A>(x + i, n - i, 0.f);
  return hsum<A>((a0 + a1) + (a2 + a3));
}
/// Largest element, -inf when empty, quiet NaN when any element is NaN.
/// NaN detection costs one add per element: a lane-wise running sum is NaN iff the data holds a
/// NaN or both infinities; only then is the data scanned again for a NaN (the rare path).
template <class A>
float max(const float* x, std::size_t n) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  const B ninf(-std::numeric_limits<float>::infinity());
  B m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  B s0(0.f), s1(0.f);
  std::size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    const B v0 = loadu<A>(x + i), v1 = loadu<A>(x + i + L), v2 = loadu<A>(x + i + 2 * L), v3 = loadu<A>(x + i + 3 * L);
    m0 = xsimd::max(m0, v0);
    m1 = xsimd::max(m1, v1);
    m2 = xsimd::max(m2, v2);
    m3 = xsimd::max(m3, v3);
    s0 += v0 + v1;
    s1 += v2 + v3;
  }
  for (; i + L <= n; i += L) {
    const B v = loadu<A>(x + i);
    m0 = xsimd::max(m0, v);
    s0 += v;
  }
  if (i < n) {
    const B v = load_partial<A>(x + i, n - i, 0.f);
    s1 += v;
    m1 = xsimd::max(m1, load_partial<A>(x + i, n - i, -std::numeric_limits<float>::infinity()));
  }
  if (xsimd::any(xsimd::isnan(s0 + s1))) {
    for (std::size_t j = 0; j < n; ++j)
      if (std::isnan(x[j])) return std::numeric_limits<float>::quiet_NaN();
  }
  return hmax<A>(xsimd::max(xsimd::max(m0, m1), xsimd::max(m2, m3)));
}
} // namespace detail

/// Dot product sum_i x_i y_i.
/// @tparam B backend tag (`backend::scalar` calls `ref::dot`).
/// @throws shape_error if x and y differ in size (the message names both sizes).
/// Complexity: O(n); reads 8n bytes.
template <class B = backend::best_cpu>
float dot(std::span<const float> x, std::span<const float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    return ref::dot(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "dot", "x", "y");
    return detail::dot<typename B::arch>(x.data(), y.data(), x.size());
  }
}

/// Sum of the elements (0 for an empty span). Complexity: O(n); reads 4n bytes.
template <class B = backend::best_cpu>
float sum(std::span<const float> x) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) return ref::sum(x);
  else return detail::sum<typename B::arch>(x.data(), x.size());
}

/// Largest element: -inf for an empty span, NaN if any element is NaN (the SIMD form returns the
/// default quiet NaN, the scalar twin the first NaN met). Complexity: O(n); reads 4n bytes.
template <class B = backend::best_cpu>
float max(std::span<const float> x) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) return ref::max(x);
  else return detail::max<typename B::arch>(x.data(), x.size());
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
