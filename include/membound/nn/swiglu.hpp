// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The SwiGLU gate of Llama-family MLPs (Shazeer 2020), forward and backward:
///     y = silu(g) * u,     dg = dy * u * silu'(g),     du = dy * silu(g)
/// with silu(g) = g sigmoid(g) and silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
/// Float spans go through the SIMD kernels of backend/cpu (`cpu::silu`, `cpu::silu_backward`);
/// any other element type (double, for the finite-difference tests) through plain loops.
/// Complexity: O(n) each; no allocation. y may alias g or u; dg may alias dy; du may alias dy
/// only when dg does not.

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
    if (y.data() == u.data()) { // y aliases u: silu(g) cannot go to y first
      for (std::size_t i = 0; i < g.size(); ++i) y[i] = u[i] * (g[i] / (1.0f + std::exp(-g[i])));
      return;
    }
    cpu::silu(g, y);
    for (std::size_t i = 0; i < g.size(); ++i) y[i] *= u[i];
  } else {
    for (std::size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
  }
}

/// dg = dy * u * silu'(g) and du = dy * silu(g), overwritten. @throws shape_error when the sizes
/// differ.
template <class T>
void swiglu_backward(std::span<const T> g, std::span<const T> u, std::span<const T> dy, std::span<T> dg, std::span<T> du) {
  ::membound::detail::expect_same_size(g.size(), u.size(), "swiglu_backward", "g", "u");
  ::membound::detail::expect_same_size(g.size(), dy.size(), "swiglu_backward", "g", "dy");
  ::membound::detail::expect_same_size(g.size(), dg.size(), "swiglu_backward", "g", "dg");
  ::membound::detail::expect_same_size(g.size(), du.size(), "swiglu_backward", "g", "du");
  const std::size_t n = g.size();
  if constexpr (std::is_same_v<T, float>) {
    if (du.data() != dy.data()) {
      cpu::silu(g, du); // du = silu(g) for now
      for (std::size_t i = 0; i < n; ++i) {
        dg[i] = dy[i] * u[i];
        du[i] *= dy[i];
      }
      cpu::silu_backward(g, std::span<const float>(dg.data(), n), dg); // dz may alias dy exactly
      return;
    }
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
