// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief BLAS-1 updates over float spans: `axpy` (y += a x) and `scale` (y = a x). O(n).
///
/// Both use a separate multiply and add (no FMA), exactly like the scalar twin, so every backend
/// gives the same bits.

#include <cstddef>
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
void axpy(float a, const float* x, float* y, std::size_t n) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  const B va(a);
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    storeu<A>(y + i, loadu<A>(y + i) + va * loadu<A>(x + i));
    storeu<A>(y + i + L, loadu<A>(y + i + L) + va * loadu<A>(x + i + L));
  }
  for (; i + L <= n; i += L) storeu<A>(y + i, loadu<A>(y + i) + va * loadu<A>(x + i));
  if (i < n) store_partial<A>(y + i, n - i, load_partial<A>(y + i, n - i, 0.f) + va * load_partial<A>(x + i, n - i, 0.f));
}

} // namespace detail

/// y += a * x, element-wise.
/// @pre y does not partially overlap x. @throws shape_error if the sizes differ.
/// Complexity: O(n); reads 8n bytes, writes 4n.
template <class B = backend::best_cpu>
void axpy(float a, std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::axpy(a, x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "axpy", "x", "y");
    detail::axpy<typename B::arch>(a, x.data(), y.data(), x.size());
  }
}

/// y = a * x, element-wise; y may alias x exactly (in place).
/// @throws shape_error if the sizes differ. Complexity: O(n); reads 4n bytes, writes 4n.
template <class B = backend::best_cpu>
void scale(float a, std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::scale(a, x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "scale", "x", "y");
    using A = typename B::arch;
    const detail::fbatch<A> va(a);
    detail::transform<A>(x.data(), y.data(), x.size(), x.size() * sizeof(float) >= detail::stream_threshold_bytes,
                         [va](const detail::fbatch<A>& v) { return va * v; });
  }
}
/// In-place form: x *= a.
template <class B = backend::best_cpu>
void scale(float a, std::span<float> x) {
  scale<B>(a, std::span<const float>(x), x);
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
