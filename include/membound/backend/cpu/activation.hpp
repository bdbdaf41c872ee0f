// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Element-wise activations over float spans: `silu`, `gelu_tanh`, `gelu_erf`, and their
/// derivatives times an upstream gradient (`*_backward`). O(n); y may alias x exactly.
///
/// SIMD forms: silu = x / (1 + exp(-x)) with the fast exp; gelu_tanh uses the identity
/// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), which avoids the
/// cancellation of 1 + tanh(u) for negative x (so it is *more* accurate than the scalar twin's
/// literal formula there; the two differ by at most ~1e-7 absolute near x = -4..-10);
/// gelu_erf uses xsimd::erf. Tested against the scalar twin with |d| <= 16 u |y| + 1e-6.

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
inline bool stream_act(std::size_t n) noexcept { return n * sizeof(float) >= stream_threshold_bytes; }
} // namespace detail

/// SiLU (swish): y = x * sigmoid(x). @throws shape_error if sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
void silu(std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::silu(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "silu", "x", "y");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform<A>(x.data(), y.data(), x.size(), detail::stream_act(x.size()),
                         [](const V& v) MEMBOUND_INLINE_LAMBDA { return v / (V(1.f) + detail::exp<A>(-v)); });
  }
}

/// GELU, tanh approximation (GPT-2, "gelu_pytorch_tanh"). @throws shape_error. Complexity: O(n).
template <class B = backend::best_cpu>
void gelu_tanh(std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::gelu_tanh(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "gelu_tanh", "x", "y");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform<A>(x.data(), y.data(), x.size(), detail::stream_act(x.size()), [](const V& v) MEMBOUND_INLINE_LAMBDA {
      const V u = V(0.7978845608028654f) * (v + V(0.044715f) * v * v * v);
      return v / (V(1.f) + detail::exp<A>(V(-2.f) * u));
    });
  }
}

/// GELU, exact erf form (BERT, "gelu"). @throws shape_error. Complexity: O(n).
template <class B = backend::best_cpu>
void gelu_erf(std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::gelu_erf(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "gelu_erf", "x", "y");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform<A>(x.data(), y.data(), x.size(), detail::stream_act(x.size()), [](const V& v) MEMBOUND_INLINE_LAMBDA {
      return V(0.5f) * v * (V(1.f) + xsimd::erf(v * V(0.7071067811865476f)));
    });
  }
}

// ---- derivatives: dz = dy * f'(z) ------------------------------------------------------------
// Written with the logistic s(x) = 1 / (1 + exp(-x)) so that no 1 + tanh cancels for negative z:
//   silu'(z)      = s(z) (1 + z (1 - s(z)))
//   gelu_tanh'(z) = s2 + 2 z s2 (1 - s2) k (1 + 3 c z^2),  s2 = s(2u), u = k (z + c z^3), k = sqrt(2/pi)
//   gelu_erf'(z)  = Phi(z) + z phi(z) = 0.5 (1 + erf(z / sqrt 2)) + z exp(-z^2 / 2) / sqrt(2 pi)
// dz may alias dy exactly. Tested against the scalar twins (ref::) and the double-precision
// derivative of nn/activation.hpp.

/// dz = dy * silu'(z). @throws shape_error if sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
void silu_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::silu_backward(z, dy, dz);
  } else {
    ::membound::detail::expect_same_size(z.size(), dy.size(), "silu_backward", "z", "dy");
    ::membound::detail::expect_same_size(z.size(), dz.size(), "silu_backward", "z", "dz");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform2<A>(z.data(), dy.data(), dz.data(), z.size(), false, [](const V& v, const V& g) MEMBOUND_INLINE_LAMBDA {
      const V s = V(1.f) / (V(1.f) + detail::exp<A>(-v));
      return g * s * (V(1.f) + v * (V(1.f) - s));
    });
  }
}

/// dz = dy * gelu_tanh'(z). @throws shape_error if sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
void gelu_tanh_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::gelu_tanh_backward(z, dy, dz);
  } else {
    ::membound::detail::expect_same_size(z.size(), dy.size(), "gelu_tanh_backward", "z", "dy");
    ::membound::detail::expect_same_size(z.size(), dz.size(), "gelu_tanh_backward", "z", "dz");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform2<A>(z.data(), dy.data(), dz.data(), z.size(), false, [](const V& v, const V& g) MEMBOUND_INLINE_LAMBDA {
      const V k(0.7978845608028654f), c(0.044715f);
      const V v2 = v * v;
      const V s2 = V(1.f) / (V(1.f) + detail::exp<A>(V(-2.f) * k * (v + c * v2 * v)));
      return g * (s2 + V(2.f) * v * s2 * (V(1.f) - s2) * k * (V(1.f) + V(3.f) * c * v2));
    });
  }
}

/// dz = dy * gelu_erf'(z). @throws shape_error if sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
void gelu_erf_backward(std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::gelu_erf_backward(z, dy, dz);
  } else {
    ::membound::detail::expect_same_size(z.size(), dy.size(), "gelu_erf_backward", "z", "dy");
    ::membound::detail::expect_same_size(z.size(), dz.size(), "gelu_erf_backward", "z", "dz");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform2<A>(z.data(), dy.data(), dz.data(), z.size(), false, [](const V& v, const V& g) MEMBOUND_INLINE_LAMBDA {
      const V phi = V(0.3989422804014327f) * detail::exp<A>(V(-0.5f) * v * v);
      return g * (V(0.5f) * (V(1.f) + xsimd::erf(v * V(0.7071067811865476f))) + v * phi);
    });
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
