// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Rotary position embedding (RoPE, Su et al. 2021) with the standard base, in the
/// "rotate half" layout of Hugging Face's Llama: for a head vector x of even size D and position
/// t, pairs (x_i, x_{i+D/2}) rotate by angle t * base^(-2i/D):
///   y_i = x_i cos - x_{i+D/2} sin,   y_{i+D/2} = x_{i+D/2} cos + x_i sin.
/// The scaled variants (NTK, YaRN, Llama 3) arrive with the LLM work. Backward is the rotation by
/// the opposite angle. Cost O(T H D) plus a (T, D/2) table of cos/sin computed in double.

#include <cmath>
#include <cstdint>
#include <span>

#include "membound/core/array.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Precomputed cos/sin for positions and a head size; apply to (T,H,D) tensors in place.
struct rope {
  index_t head_dim = 0;
  double base = 10000.0;
  array<float> cos_, sin_; ///< (P, D/2) for positions 0..P-1

  /// Builds tables for positions [0, max_positions). @throws config_error for an odd or
  /// non-positive head size, base <= 1 or max_positions < 1.
  static rope make(index_t head_dim, index_t max_positions, double base = 10000.0) {
    MEMBOUND_EXPECTS(head_dim >= 2 && head_dim % 2 == 0, config_error, "rope: head_dim ", head_dim, ", expected even >= 2");
    MEMBOUND_EXPECTS(base > 1.0, config_error, "rope: base ", base, ", expected > 1");
    MEMBOUND_EXPECTS(max_positions >= 1, config_error, "rope: max_positions ", max_positions, ", expected >= 1");
    rope r;
    r.head_dim = head_dim;
    r.base = base;
    const index_t half = head_dim / 2;
    r.cos_ = array<float>({max_positions, half}, uninitialized); // (P,D/2)
    r.sin_ = array<float>({max_positions, half}, uninitialized); // (P,D/2)
    for (index_t t = 0; t < max_positions; ++t)
      for (index_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        const double a = static_cast<double>(t) * inv_freq;
        r.cos_(t, i) = static_cast<float>(std::cos(a));
        r.sin_(t, i) = static_cast<float>(std::sin(a));
      }
    return r;
  }

  /// Rotates x (T,H,D) in place; row t uses position positions[t]. `inverse` rotates back (the
  /// backward pass of the rotation). @throws shape_error, lookup_error for a position past the table.
  void apply(view<float> x /*(T,H,D)*/, std::span<const std::int64_t> positions, bool inverse = false) const {
    MEMBOUND_EXPECTS(x.rank() == 3 && x.extent(2) == head_dim && x.stride(2) == 1, shape_error, "rope::apply: x must be (T,H,",
                     head_dim, ") with contiguous heads; it has rank ", x.rank());
    MEMBOUND_EXPECTS(static_cast<index_t>(positions.size()) == x.extent(0), shape_error, "rope::apply: ", x.extent(0),
                     " rows but ", positions.size(), " positions");
    const index_t half = head_dim / 2;
    const float sign = inverse ? -1.0f : 1.0f;
    for (index_t t = 0; t < x.extent(0); ++t) {
      const std::int64_t pos = positions[static_cast<std::size_t>(t)];
      MEMBOUND_EXPECTS(pos >= 0 && pos < cos_.extent(0), lookup_error, "rope::apply: position ", pos, " at row ", t,
                       " outside the table [0, ", cos_.extent(0), ")");
      const float* c = cos_.data() + pos * half;
      const float* s = sin_.data() + pos * half;
      for (index_t h = 0; h < x.extent(1); ++h) {
        float* v = x.data() + t * x.stride(0) + h * x.stride(1);
        for (index_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half], sn = sign * s[i];
          v[i] = a * c[i] - b * sn;
          v[i + half] = b * c[i] + a * sn;
        }
      }
    }
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
