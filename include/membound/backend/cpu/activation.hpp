// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Element-wise activations over float spans: `silu`, `gelu_tanh`, `gelu_erf`, and their
/// derivatives times an upstream gradient (`*_backward`); the fused SwiGLU gate `swiglu` and its
/// backward. O(n); y may alias x exactly.
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

/// SwiGLU (Llama's MLP gate): y = silu(g) u in one pass (the same bits as `silu` then a product;
/// plain stores: y is read again soon). y may alias g or u exactly.
/// @throws shape_error if sizes differ. Complexity: O(n); reads 8n bytes, writes 4n.
template <class B = backend::best_cpu>
void swiglu(std::span<const float> g, std::span<const float> u, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::swiglu(g, u, y);
  } else {
    ::membound::detail::expect_same_size(g.size(), u.size(), "swiglu", "g", "u");
    ::membound::detail::expect_same_size(g.size(), y.size(), "swiglu", "g", "y");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    detail::transform2<A>(g.data(), u.data(), y.data(), g.size(), false, [](const V& v, const V& w) MEMBOUND_INLINE_LAMBDA {
      return v / (V(1.f) + detail::exp<A>(-v)) * w;
    });
  }
}

/// SwiGLU backward in one pass: dg = dy u silu'(g), du = dy silu(g), silu'(g) = s (1 + g (1 - s)),
/// s = sigmoid(g); the same bits as `silu` times dy and `silu_backward` of dy u. One of dg, du may
/// alias dy exactly (each vector of dy is read before either output is stored).
/// @throws shape_error if sizes differ. Complexity: O(n); reads 12n bytes, writes 8n.
template <class B = backend::best_cpu>
void swiglu_backward(std::span<const float> g, std::span<const float> u, std::span<const float> dy, std::span<float> dg,
                     std::span<float> du) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::swiglu_backward(g, u, dy, dg, du);
  } else {
    ::membound::detail::expect_same_size(g.size(), u.size(), "swiglu_backward", "g", "u");
    ::membound::detail::expect_same_size(g.size(), dy.size(), "swiglu_backward", "g", "dy");
    ::membound::detail::expect_same_size(g.size(), dg.size(), "swiglu_backward", "g", "dg");
    ::membound::detail::expect_same_size(g.size(), du.size(), "swiglu_backward", "g", "du");
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    constexpr std::size_t L = detail::lanes<A>;
    const std::size_t n = g.size();
    // The same operations, in the same order, as silu(g) * dy and silu_backward(g, dy * u): the
    // same bits as those two passes.
    const auto step = [](const V& z, const V& w, const V& d, V& vg, V& vu) MEMBOUND_INLINE_LAMBDA {
      const V e1 = V(1.f) + detail::exp<A>(-z), s = V(1.f) / e1;
      vg = d * w * s * (V(1.f) + z * (V(1.f) - s));
      vu = z / e1 * d;
    };
    std::size_t i = 0;
    V vg, vu;
    for (; i + L <= n; i += L) {
      step(detail::loadu<A>(g.data() + i), detail::loadu<A>(u.data() + i), detail::loadu<A>(dy.data() + i), vg, vu);
      detail::storeu<A>(dg.data() + i, vg);
      detail::storeu<A>(du.data() + i, vu);
    }
    if (i < n) {
      const std::size_t m = n - i;
      step(detail::load_partial<A>(g.data() + i, m, 0.f), detail::load_partial<A>(u.data() + i, m, 0.f),
           detail::load_partial<A>(dy.data() + i, m, 0.f), vg, vu);
      detail::store_partial<A>(dg.data() + i, m, vg);
      detail::store_partial<A>(du.data() + i, m, vu);
    }
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
