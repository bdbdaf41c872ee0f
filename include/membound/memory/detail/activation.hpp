// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief memory/ internals: activations and their derivatives on rank-2 row-contiguous views.

#include <algorithm>

#include "membound/backend/cpu/activation.hpp"
#include "membound/core/view.hpp"
#include "membound/nn/activation.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {
namespace detail {

/// dst = src for two (N,C) views of any strides (rows copied with memcpy when both have unit
/// inner stride).
inline void copy_rows(view<const float> src, view<float> dst) {
  const index_t N = src.extent(0), C = src.extent(1);
  if (src.stride(1) == 1 && dst.stride(1) == 1) {
    for (index_t n = 0; n < N; ++n) std::copy_n(&src(n, 0), C, &dst(n, 0));
    return;
  }
  for (index_t n = 0; n < N; ++n)
    for (index_t j = 0; j < C; ++j) dst(n, j) = src(n, j);
}

/// out = act(z), element-wise; both (N,C) with contiguous rows of the same width.
inline void activate(nn::activation a, view<const float> z, view<float> out) {
  for (index_t n = 0; n < z.extent(0); ++n)
    nn::activation_forward(a, std::span<const float>(&z(n, 0), static_cast<std::size_t>(z.extent(1))),
                           std::span<float>(&out(n, 0), static_cast<std::size_t>(out.extent(1))));
}

/// d *= act'(z), element-wise (the SIMD derivative kernels of backend/cpu/activation.hpp for
/// SiLU and GELU; nn::activation_backward's double-precision formula for the others).
inline void activate_backward(nn::activation a, view<const float> z, view<float> d) {
  for (index_t n = 0; n < z.extent(0); ++n) {
    const std::span<const float> zr(&z(n, 0), static_cast<std::size_t>(z.extent(1)));
    const std::span<float> dr(&d(n, 0), static_cast<std::size_t>(d.extent(1)));
    switch (a) {
    case nn::activation::silu: cpu::silu_backward(zr, dr, dr); break;
    case nn::activation::gelu_tanh: cpu::gelu_tanh_backward(zr, dr, dr); break;
    case nn::activation::gelu_erf: cpu::gelu_erf_backward(zr, dr, dr); break;
    default: nn::activation_backward(a, zr, dr, dr); break;
    }
  }
}

} // namespace detail
} // namespace memory
} // namespace v0_1
} // namespace membound
