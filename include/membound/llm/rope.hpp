// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The rotary embedding of the Llama family with the `rope_scaling` kinds of Llama 3 and
/// Qwen (transformers' modeling_rope_utils): default, linear (positions divided by `factor`),
/// llama3 (low frequencies divided by `factor`, high ones kept, a smooth ramp between) and YaRN
/// (NTK-by-parts interpolation, Peng et al. 2023, plus an attention factor that scales cos and
/// sin). Layout "rotate half": pairs (x_i, x_{i + D/2}) rotate by angle t * inv_freq_i.
///
/// Rounding follows transformers: inv_freq is computed in double and stored in float, the angle
/// is the float product float(t) * inv_freq_i, and cos and sin of that float angle are rounded to
/// float, then multiplied by the attention factor. Tables are built per forward call for the
/// positions in it (O(T D)), so no table of max_position_embeddings rows is ever allocated.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/hf_config.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// Inverse frequencies (D/2) and the cos/sin attention factor of a rope_config for head size D.
struct rope_frequencies {
  std::vector<float> inv_freq;
  float attention_factor = 1.0f;

  /// @throws config_error for an odd or non-positive head_dim.
  static rope_frequencies make(const io::rope_config& r, index_t head_dim) {
    MEMBOUND_EXPECTS(head_dim >= 2 && head_dim % 2 == 0, config_error, "llm::rope: head_dim ", head_dim,
                     ", expected even >= 2");
    const index_t half = head_dim / 2;
    const double dim = static_cast<double>(head_dim);
    rope_frequencies f;
    std::vector<double> inv(static_cast<std::size_t>(half));
    for (index_t i = 0; i < half; ++i) {
      // transformers rounds the exponent's float arange / dim and the power to float.
      const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
      inv[static_cast<std::size_t>(i)] = 1.0 / static_cast<double>(static_cast<float>(std::pow(r.theta, static_cast<double>(e))));
    }
    switch (r.type) {
    case io::rope_config::kind::standard: break;
    case io::rope_config::kind::linear:
      for (double& v : inv) v /= r.factor;
      break;
    case io::rope_config::kind::llama3: {
      const double old_ctx = r.original_max_position_embeddings;
      const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
      for (double& v : inv) {
        const double wavelen = 2.0 * std::numbers::pi / v;
        if (wavelen > low_wavelen) {
          v /= r.factor;
        } else if (!(wavelen < high_wavelen)) { // medium band: interpolate
          const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          v = (1.0 - smooth) * v / r.factor + smooth * v;
        }
      }
      break;
    }
    case io::rope_config::kind::yarn: {
      const auto mscale_of = [](double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
      if (r.attention_factor) {
        f.attention_factor = static_cast<float>(*r.attention_factor);
      } else if (r.mscale != 0.0 && r.mscale_all_dim != 0.0) {
        f.attention_factor = static_cast<float>(mscale_of(r.factor, r.mscale) / mscale_of(r.factor, r.mscale_all_dim));
      } else {
        f.attention_factor = static_cast<float>(mscale_of(r.factor, 1.0));
      }
      const auto correction_dim = [&](double rotations) {
        return dim * std::log(r.original_max_position_embeddings / (rotations * 2.0 * std::numbers::pi)) /
               (2.0 * std::log(r.theta));
      };
      double lo = correction_dim(r.beta_fast), hi = correction_dim(r.beta_slow);
      if (r.truncate) {
        lo = std::floor(lo);
        hi = std::ceil(hi);
      }
      lo = std::max(lo, 0.0);
      hi = std::min(hi, dim - 1.0);
      if (lo == hi) hi += 0.001;
      for (index_t i = 0; i < half; ++i) {
        double& v = inv[static_cast<std::size_t>(i)];
        // the ramp is evaluated in float by transformers
        const float ramp = std::clamp(static_cast<float>((static_cast<double>(i) - lo) / (hi - lo)), 0.0f, 1.0f);
        const double extrapolation = 1.0 - static_cast<double>(ramp);
        v = (v / r.factor) * (1.0 - extrapolation) + v * extrapolation;
      }
      break;
    }
    }
    f.inv_freq.resize(inv.size());
    for (std::size_t i = 0; i < inv.size(); ++i) f.inv_freq[i] = static_cast<float>(inv[i]);
    return f;
  }

  /// cos and sin (T, D/2) for positions[t], scaled by the attention factor. O(T D).
  void table(std::span<const std::int32_t> positions, view<float> cos_out, view<float> sin_out) const {
    const index_t half = static_cast<index_t>(inv_freq.size());
    for (std::size_t t = 0; t < positions.size(); ++t) {
      const float p = static_cast<float>(positions[t]);
      float* c = cos_out.data() + static_cast<index_t>(t) * cos_out.stride(0);
      float* s = sin_out.data() + static_cast<index_t>(t) * sin_out.stride(0);
      for (index_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(p * inv_freq[static_cast<std::size_t>(i)]);
        c[i] = static_cast<float>(std::cos(a)) * attention_factor;
        s[i] = static_cast<float>(std::sin(a)) * attention_factor;
      }
    }
  }
};

/// Rotates rows of `heads` vectors of size D = 2 x cos.extent(1): row t of x is `heads` vectors
/// at x + t * ld, each of D floats, rotated with cos/sin row t. O(T heads D).
inline void apply_rope(float* x, index_t rows, index_t heads, index_t ld, const view<const float>& cos,
                       const view<const float>& sin) noexcept {
  const index_t half = cos.extent(1);
  for (index_t t = 0; t < rows; ++t) {
    const float* c = cos.data() + t * cos.stride(0);
    const float* s = sin.data() + t * sin.stride(0);
    for (index_t h = 0; h < heads; ++h) {
      float* v = x + t * ld + h * 2 * half;
      for (index_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

} // namespace llm
} // namespace v0_1
} // namespace membound
