// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The SwiGLU gate of Llama-family MLPs (Shazeer 2020), forward and backward:
///     y = silu(g) * u,     dg = dy * u * silu'(g),     du = dy * silu(g)
/// with silu(g) = g sigmoid(g) and silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
/// Float spans go through the fused SIMD kernels of backend/cpu (`cpu::swiglu`,
/// `cpu::swiglu_backward`: one pass over the operands each); any other element type (double, for
/// the finite-difference tests) through plain loops.
/// Complexity: O(n) each; no allocation. y may alias g or u; one of dg, du may alias dy.

#include <cmath>
#include <span>

#include "membound/backend/cpu/activation.hpp"
#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// y = silu(g) * u. @throws shape_error when the sizes differ.
template <class T>
void swiglu_forward(std::span<const T> g, std::span<const T> u, std::span<T> y) {
  ::membound::detail::expect_same_size(g.size(), u.size(), "swiglu_forward", "g", "u");
  ::membound::detail::expect_same_size(g.size(), y.size(), "swiglu_forward", "g", "y");
  if constexpr (std::is_same_v<T, float>) {
    cpu::swiglu(g, u, y);
  } else {
    for (std::size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
  }
}

/// dg = dy * u * silu'(g) and du = dy * silu(g), overwritten. @throws shape_error when the sizes
/// differ or when dg and du both alias dy.
template <class T>
void swiglu_backward(std::span<const T> g, std::span<const T> u, std::span<const T> dy, std::span<T> dg, std::span<T> du) {
  ::membound::detail::expect_same_size(g.size(), u.size(), "swiglu_backward", "g", "u");
  ::membound::detail::expect_same_size(g.size(), dy.size(), "swiglu_backward", "g", "dy");
  ::membound::detail::expect_same_size(g.size(), dg.size(), "swiglu_backward", "g", "dg");
  ::membound::detail::expect_same_size(g.size(), du.size(), "swiglu_backward", "g", "du");
  MEMBOUND_EXPECTS(!(dg.data() == dy.data() && du.data() == dy.data()) || g.empty(), shape_error,
                   "swiglu_backward: dg and du both alias dy; at most one of them may");
  const std::size_t n = g.size();
  if constexpr (std::is_same_v<T, float>) {
    cpu::swiglu_backward(g, u, dy, dg, du);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-g[i])), d = dy[i];
    dg[i] = d * u[i] * s * (T(1) + g[i] * (T(1) - s));
    du[i] = d * g[i] * s;
  }
}

} // namespace nn
} // namespace v0_1
} // namespace membound
