// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Activation layers, forward and backward: identity, ReLU, GELU (tanh approximation and
/// exact erf form, as PyTorch's `approximate='tanh'|'none'`), SiLU and sigmoid.
///
/// Forward on float spans uses the SIMD kernels of backend/cpu where they exist (SiLU, both
/// GELUs); backward needs the pre-activation z and computes dz = dy * f'(z) element by element.
/// Complexity: O(n) each; no allocation. In-place forward (y aliasing z) is allowed.

#include <algorithm>
#include <cmath>
#include <span>
#include <string_view>

#include "membound/backend/cpu/activation.hpp"
#include "membound/config.hpp"
#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// The activations of the floor.
enum class activation { identity, relu, gelu_tanh, gelu_erf, silu, sigmoid };

/// A printable name ("relu", "gelu_tanh", ...).
constexpr std::string_view activation_name(activation a) noexcept {
  constexpr std::string_view names[] = {"identity", "relu", "gelu_tanh", "gelu_erf", "silu", "sigmoid"};
  return names[static_cast<int>(a)];
}

namespace detail {
/// f'(z) for one element (double precision inside, so the derivative is accurate to float).
inline float activation_derivative(activation a, float zf) noexcept {
  const double z = zf;
  switch (a) {
  case activation::identity: return 1.0f;
  case activation::relu: return zf > 0.0f ? 1.0f : 0.0f; // PyTorch: 0 at z == 0
  case activation::sigmoid: {
    const double s = 1.0 / (1.0 + std::exp(-z));
    return static_cast<float>(s * (1.0 - s));
  }
  case activation::silu: {
    const double s = 1.0 / (1.0 + std::exp(-z));
    return static_cast<float>(s * (1.0 + z * (1.0 - s)));
  }
  case activation::gelu_erf: {
    constexpr double inv_sqrt2 = 0.70710678118654752440, inv_sqrt2pi = 0.39894228040143267794;
    return static_cast<float>(0.5 * (1.0 + std::erf(z * inv_sqrt2)) + z * inv_sqrt2pi * std::exp(-0.5 * z * z));
  }
  case activation::gelu_tanh: {
    constexpr double k = 0.79788456080286535588, c = 0.044715; // sqrt(2/pi)
    const double u = k * (z + c * z * z * z), t = std::tanh(u);
    return static_cast<float>(0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * c * z * z));
  }
  }
  return 1.0f;
}
} // namespace detail

/// y = f(z), element-wise; y may alias z. @throws shape_error if the sizes differ.
template <class B = backend::best_cpu>
void activation_forward(activation a, std::span<const float> z, std::span<float> y) {
  ::membound::detail::expect_same_size(z.size(), y.size(), "activation_forward", "z", "y");
  switch (a) {
  case activation::identity:
    if (y.data() != z.data()) std::copy(z.begin(), z.end(), y.begin());
    return;
  case activation::relu:
    for (std::size_t i = 0; i < z.size(); ++i) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
    return;
  case activation::sigmoid:
    for (std::size_t i = 0; i < z.size(); ++i) y[i] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(z[i]))));
    return;
  case activation::silu: cpu::silu<B>(z, y); return;
  case activation::gelu_tanh: cpu::gelu_tanh<B>(z, y); return;
  case activation::gelu_erf: cpu::gelu_erf<B>(z, y); return;
  }
}

/// dz = dy * f'(z), element-wise; dz may alias dy. @throws shape_error if the sizes differ.
inline void activation_backward(activation a, std::span<const float> z, std::span<const float> dy, std::span<float> dz) {
  ::membound::detail::expect_same_size(z.size(), dy.size(), "activation_backward", "z", "dy");
  ::membound::detail::expect_same_size(z.size(), dz.size(), "activation_backward", "z", "dz");
  if (a == activation::identity) {
    if (dz.data() != dy.data()) std::copy(dy.begin(), dy.end(), dz.begin());
    return;
  }
  for (std::size_t i = 0; i < z.size(); ++i) dz[i] = dy[i] * detail::activation_derivative(a, z[i]);
}

} // namespace nn
} // namespace v0_1
} // namespace membound
