// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief NeRF-style frequency (Fourier feature) encoding, forward and backward: each input
/// coordinate x_d becomes sin(2^k pi x_d), cos(2^k pi x_d) for k in [0, n_frequencies), optionally
/// preceded by the raw input. (N,D) -> (N,D_out), O(N D n_frequencies).
/// Mildenhall et al., "NeRF", ECCV 2020 (positional encoding); the pi factor and the per-dim
/// layout follow tiny-cuda-nn's `Frequency` encoding.
///
/// Output layout (row n, D input dims, K = n_frequencies, I = include_input ? 1 : 0):
///   - columns [0, I*D): the raw input x_d (only when include_input);
///   - column I*D + (d*K + k)*2     : sin(2^k pi x_d),
///   - column I*D + (d*K + k)*2 + 1 : cos(2^k pi x_d).
/// so D_out = D * (I + 2K). The argument is computed in float as (pi x_d) * 2^k (the scaling by
/// 2^k is exact), then std::sin / std::cos in float.

#include <cmath>
#include <cstdint>
#include <string_view>

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Frequency encoding settings and its forward / backward passes. A small aggregate with no
/// parameters and no allocation: `nn::frequency_encoding enc{.n_frequencies = 10};`.
struct frequency_encoding {
  static constexpr std::string_view name = "frequency";
  /// Largest accepted `n_frequencies`: beyond 2^23 pi a float argument has no fractional bits.
  static constexpr int max_frequencies = 24;

  int n_frequencies = 6;    ///< K, number of octaves; 0 <= K <= max_frequencies.
  bool include_input = true; ///< Prepend the raw input (D columns) to the Fourier features.

  /// Output width D_out = D * (include_input + 2 K) for `d` input dims. @throws config_error
  index_t output_dims(index_t d) const {
    validate();
    MEMBOUND_EXPECTS(d >= 1, shape_error, "frequency_encoding: input dims is ", d, ", expected >= 1");
    return d * ((include_input ? 1 : 0) + 2 * static_cast<index_t>(n_frequencies));
  }

  /// Checks the settings. @throws config_error naming the bad value.
  void validate() const {
    MEMBOUND_EXPECTS(n_frequencies >= 0 && n_frequencies <= max_frequencies, config_error,
                     "frequency_encoding: n_frequencies is ", n_frequencies, ", expected in [0, ", max_frequencies, "]");
    MEMBOUND_EXPECTS(n_frequencies > 0 || include_input, config_error,
                     "frequency_encoding: n_frequencies is 0 and include_input is false: the output would be empty");
  }

  /// y = encode(x).
  /// @param[in] x (N,D) points, any strides.
  /// @param[out] y (N,D_out), any strides; every element is written.
  /// @pre y does not overlap x.
  /// @throws config_error on bad settings, shape_error on mismatched ranks or extents.
  /// Complexity: O(N D K) sin/cos pairs; no allocation.
  void forward(view<const float> x, view<float> y) const {
    const index_t dout = check_shapes(x, y, "forward", "y");
    (void)dout;
    const index_t n = x.extent(0), d = x.extent(1);
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), ys0 = y.stride(0), ys1 = y.stride(1);
    const index_t off = include_input ? d : 0;
    const int kk = n_frequencies;
    for (index_t i = 0; i < n; ++i) {
      const float* xr = x.data() + i * xs0;
      float* yr = y.data() + i * ys0;
      for (index_t j = 0; j < d; ++j) {
        const float xv = xr[j * xs1];
        if (include_input) yr[j * ys1] = xv;
        const float base = pi_f * xv;
        float* yd = yr + (off + j * 2 * kk) * ys1;
        for (int k = 0; k < kk; ++k) {
          const float a = std::ldexp(base, k); // exact scaling by 2^k
          yd[(2 * k) * ys1] = std::sin(a);
          yd[(2 * k + 1) * ys1] = std::cos(a);
        }
      }
    }
  }

  /// dx = (d encode / d x)^T dy, i.e. dx_d = [dy_raw_d] + sum_k 2^k pi (cos_k dy_sin_k - sin_k dy_cos_k).
  /// Overwrites dx (input gradients are not accumulated).
  /// @param[in] x (N,D) the points given to forward.
  /// @param[in] dy (N,D_out) gradient of the loss w.r.t. the encoding.
  /// @param[out] dx (N,D) gradient w.r.t. x.
  /// @pre dx overlaps neither x nor dy.
  /// @throws config_error, shape_error as forward.
  /// Complexity: O(N D K) sin/cos pairs; no allocation.
  void backward(view<const float> x, view<const float> dy, view<float> dx) const {
    check_shapes(x, dy, "backward", "dy");
    MEMBOUND_EXPECTS(dx.rank() == 2 && dx.extent(0) == x.extent(0) && dx.extent(1) == x.extent(1), shape_error,
                     "frequency_encoding::backward: dx has rank ", dx.rank(), " and extents (", dx.extent(0), ",",
                     dx.rank() > 1 ? dx.extent(1) : 0, "), expected (", x.extent(0), ",", x.extent(1), ")");
    const index_t n = x.extent(0), d = x.extent(1);
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), gs0 = dy.stride(0), gs1 = dy.stride(1);
    const index_t os0 = dx.stride(0), os1 = dx.stride(1);
    const index_t off = include_input ? d : 0;
    const int kk = n_frequencies;
    for (index_t i = 0; i < n; ++i) {
      const float* xr = x.data() + i * xs0;
      const float* gr = dy.data() + i * gs0;
      for (index_t j = 0; j < d; ++j) {
        const float base = pi_f * xr[j * xs1];
        const float* gd = gr + (off + j * 2 * kk) * gs1;
        float acc = 0.0f;
        for (int k = 0; k < kk; ++k) {
          const float a = std::ldexp(base, k);
          const float s = std::sin(a), c = std::cos(a);
          acc += std::ldexp(pi_f, k) * (c * gd[(2 * k) * gs1] - s * gd[(2 * k + 1) * gs1]);
        }
        if (include_input) acc += gr[j * gs1];
        dx.data()[i * os0 + j * os1] = acc;
      }
    }
  }

private:
  static constexpr float pi_f = 3.14159265358979323846f;

  /// Validates settings and the (N,D) / (N,D_out) pair; returns D_out.
  index_t check_shapes(const view<const float>& x, const view<const float>& y, const char* fn, const char* yname) const {
    validate();
    MEMBOUND_EXPECTS(x.rank() == 2, shape_error, "frequency_encoding::", fn, ": x has rank ", x.rank(),
                     ", expected 2 (N,D)");
    MEMBOUND_EXPECTS(x.extent(1) >= 1, shape_error, "frequency_encoding::", fn, ": x has ", x.extent(1),
                     " input dims, expected >= 1");
    const index_t dout = output_dims(x.extent(1));
    MEMBOUND_EXPECTS(y.rank() == 2 && y.extent(0) == x.extent(0) && y.extent(1) == dout, shape_error,
                     "frequency_encoding::", fn, ": ", yname, " has rank ", y.rank(), " and extents (", y.extent(0),
                     ",", y.rank() > 1 ? y.extent(1) : 0, "), expected (", x.extent(0), ",", dout, ")");
    return dout;
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
