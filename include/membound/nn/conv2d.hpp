// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::conv2d`: 2-D convolution over NCHW tensors as torch.nn.Conv2d, forward with a
/// fused bias and activation, for the cases EfficientViT needs: dense k x k (groups = 1; k = 1 is
/// the pointwise convolution) and depthwise k x k (groups = C_in = C_out), k up to 7, stride 1 or
/// 2, zero padding; plus `fold_batchnorm`, which folds an eval-mode BatchNorm that follows the
/// convolution into its weight and bias.
///
/// Algorithms: pointwise = one GEMM per image (W (C_out,C_in) x X (C_in,H*W)); dense k x k =
/// im2col into a workspace (C_in*k*k, Ho*Wo) then one GEMM per image; depthwise = direct loops
/// (the inner loop runs along a row of the output). Costs: 2 B C_out C_in k^2 Ho Wo flops (dense),
/// 2 B C k^2 Ho Wo (depthwise). The only allocation is the im2col workspace, sized on first use.

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/nn/activation.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Settings of a convolution (PyTorch's names).
struct conv2d_config {
  index_t in_channels = 1, out_channels = 1, kernel = 1, stride = 1, padding = 0, groups = 1;
  bool bias = true;
  activation act = activation::identity;
};

/// A convolution layer; its weight (C_out, C_in/groups, k, k) and bias (C_out) live in `parameters`.
struct conv2d {
  conv2d_config cfg;
  view<float> weight, bias;
  array<float> workspace; ///< im2col buffer for dense k > 1 (grown on demand)

  /// Validates the settings and registers "<prefix>.weight" / "<prefix>.bias", initialised as
  /// torch.nn.Conv2d (uniform +-1/sqrt(fan_in)). @throws config_error naming the bad setting.
  static conv2d make(parameters& p, const std::string& prefix, const conv2d_config& c, std::mt19937& gen) {
    MEMBOUND_EXPECTS(c.in_channels >= 1 && c.out_channels >= 1, config_error, "conv2d \"", prefix, "\": channels ",
                     c.in_channels, " -> ", c.out_channels, ", expected >= 1");
    MEMBOUND_EXPECTS(c.kernel >= 1 && c.kernel <= 7, config_error, "conv2d \"", prefix, "\": kernel ", c.kernel,
                     ", supported 1..7");
    MEMBOUND_EXPECTS(c.stride == 1 || c.stride == 2, config_error, "conv2d \"", prefix, "\": stride ", c.stride,
                     ", supported 1 or 2");
    MEMBOUND_EXPECTS(c.padding >= 0 && c.padding < c.kernel, config_error, "conv2d \"", prefix, "\": padding ",
                     c.padding, " with kernel ", c.kernel, ", supported 0 .. kernel-1");
    const bool dense = c.groups == 1, depthwise = c.groups == c.in_channels && c.in_channels == c.out_channels;
    MEMBOUND_EXPECTS(dense || depthwise, config_error, "conv2d \"", prefix, "\": groups ", c.groups, " with channels ",
                     c.in_channels, " -> ", c.out_channels, "; supported: groups 1 (dense) or groups = C_in = C_out (depthwise)");
    conv2d l;
    l.cfg = c;
    const index_t cin_g = c.in_channels / c.groups;
    l.weight = p.add(prefix + ".weight", {c.out_channels, cin_g, c.kernel, c.kernel});
    const float bound = 1.0f / std::sqrt(static_cast<float>(cin_g * c.kernel * c.kernel));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (float& w : l.weight.span()) w = u(gen);
    if (c.bias) {
      l.bias = p.add(prefix + ".bias", {c.out_channels});
      for (float& b : l.bias.span()) b = u(gen);
    }
    return l;
  }

  /// Output extent of a spatial input extent: (n + 2 padding - kernel) / stride + 1.
  index_t out_extent(index_t n) const noexcept { return (n + 2 * cfg.padding - cfg.kernel) / cfg.stride + 1; }

  /// y = act(conv(x) + b). @throws shape_error naming both shapes.
  void forward(view<const float> x /*(B,C_in,H,W)*/, view<float> y /*(B,C_out,Ho,Wo)*/) {
    MEMBOUND_EXPECTS(x.rank() == 4 && x.extent(1) == cfg.in_channels && x.contiguous(), shape_error,
                     "conv2d::forward: x must be a contiguous (B,", cfg.in_channels, ",H,W) tensor; it has rank ", x.rank(),
                     " and ", x.rank() == 4 ? x.extent(1) : 0, " channels");
    const index_t b = x.extent(0), h = x.extent(2), w = x.extent(3);
    MEMBOUND_EXPECTS(h + 2 * cfg.padding >= cfg.kernel && w + 2 * cfg.padding >= cfg.kernel, shape_error,
                     "conv2d::forward: input ", h, "x", w, " is smaller than the kernel ", cfg.kernel, " with padding ",
                     cfg.padding);
    const index_t ho = out_extent(h), wo = out_extent(w);
    MEMBOUND_EXPECTS(y.rank() == 4 && y.extent(0) == b && y.extent(1) == cfg.out_channels && y.extent(2) == ho &&
                         y.extent(3) == wo && y.contiguous(),
                     shape_error, "conv2d::forward: y must be a contiguous (", b, ",", cfg.out_channels, ",", ho, ",", wo,
                     ") tensor");
    if (b == 0) return;
    if (cfg.groups == 1) dense(x, y, h, w, ho, wo);
    else depthwise(x, y, h, w, ho, wo);
    const index_t plane = ho * wo;
    for (index_t n = 0; n < b; ++n)
      for (index_t c = 0; c < cfg.out_channels; ++c) {
        float* out = y.data() + (n * cfg.out_channels + c) * plane;
        if (bias.data() != nullptr) {
          const float bc = bias(c);
          for (index_t i = 0; i < plane; ++i) out[i] += bc;
        }
        activation_forward(cfg.act, std::span<const float>(out, static_cast<std::size_t>(plane)),
                           std::span<float>(out, static_cast<std::size_t>(plane)));
      }
  }

private:
  void dense(const view<const float>& x, const view<float>& y, index_t h, index_t w, index_t ho, index_t wo) {
    const index_t cin = cfg.in_channels, cout = cfg.out_channels, k = cfg.kernel, plane = ho * wo;
    const auto wmat = make_view<const float>(weight.data(), {cout, cin * k * k}); // (C_out, C_in k k)
    for (index_t n = 0; n < x.extent(0); ++n) {
      const float* xn = x.data() + n * cin * h * w;
      auto yn = make_view(y.data() + n * cout * plane, {cout, plane}); // (C_out, Ho Wo)
      if (k == 1 && cfg.stride == 1 && cfg.padding == 0) {
        cpu::gemm(wmat, make_view(xn, {cin, plane}), yn); // pointwise: no im2col
        continue;
      }
      if (workspace.size() < cin * k * k * plane) workspace = array<float>({cin * k * k, plane}, uninitialized);
      float* col = workspace.data();
      for (index_t c = 0; c < cin; ++c)
        for (index_t ky = 0; ky < k; ++ky)
          for (index_t kx = 0; kx < k; ++kx) {
            float* dst = col + ((c * k + ky) * k + kx) * plane;
            for (index_t oy = 0; oy < ho; ++oy) {
              const index_t iy = oy * cfg.stride + ky - cfg.padding;
              for (index_t ox = 0; ox < wo; ++ox) {
                const index_t ix = ox * cfg.stride + kx - cfg.padding;
                dst[oy * wo + ox] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xn[(c * h + iy) * w + ix] : 0.0f;
              }
            }
          }
      cpu::gemm(wmat, make_view<const float>(col, {cin * k * k, plane}), yn);
    }
  }
  void depthwise(const view<const float>& x, const view<float>& y, index_t h, index_t w, index_t ho, index_t wo) const {
    const index_t ch = cfg.in_channels, k = cfg.kernel, s = cfg.stride, pad = cfg.padding;
    for (index_t n = 0; n < x.extent(0); ++n)
      for (index_t c = 0; c < ch; ++c) {
        const float* xc = x.data() + (n * ch + c) * h * w;
        float* yc = y.data() + (n * ch + c) * ho * wo;
        const float* wc = weight.data() + c * k * k;
        for (index_t oy = 0; oy < ho; ++oy) {
          float* MEMBOUND_RESTRICT yr = yc + oy * wo;
          for (index_t i = 0; i < wo; ++i) yr[i] = 0.0f;
          for (index_t ky = 0; ky < k; ++ky) {
            const index_t iy = oy * s + ky - pad;
            if (iy < 0 || iy >= h) continue;
            const float* MEMBOUND_RESTRICT xr = xc + iy * w;
            for (index_t kx = 0; kx < k; ++kx) {
              const float wv = wc[ky * k + kx];
              // Output columns whose input column ox*s + kx - pad lies inside [0, w).
              const index_t lo = std::max<index_t>(0, (pad - kx + s - 1) / s);
              const index_t last = w - 1 + pad - kx; // floor division below needs last >= 0
              const index_t hi = last < 0 ? 0 : std::min<index_t>(wo, last / s + 1);
              if (s == 1) { // contiguous input run starting at column lo + kx - pad >= 0
                const float* MEMBOUND_RESTRICT src = xr + (lo + kx - pad);
                float* MEMBOUND_RESTRICT dst = yr + lo;
                for (index_t i = 0; i < hi - lo; ++i) dst[i] += wv * src[i];
              } else {
                for (index_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * s + kx - pad];
              }
            }
          }
        }
      }
  }
};

/// Folds an eval-mode BatchNorm2d that follows `conv` into its weight and bias:
/// w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta. The conv
/// must have a bias (zero-initialise one if the original had none). The activation, if any, must
/// come after the BatchNorm (it is applied after the folded bias).
/// @throws shape_error if a statistic's length differs from C_out; config_error without a bias
/// or with eps <= 0.
inline void fold_batchnorm(conv2d& conv, std::span<const float> gamma, std::span<const float> beta,
                           std::span<const float> mean, std::span<const float> var, float eps = 1e-5f) {
  const auto c = static_cast<std::size_t>(conv.cfg.out_channels);
  MEMBOUND_EXPECTS(gamma.size() == c && beta.size() == c && mean.size() == c && var.size() == c, shape_error,
                   "fold_batchnorm: statistics of lengths ", gamma.size(), ", ", beta.size(), ", ", mean.size(), ", ",
                   var.size(), " for ", c, " output channels");
  MEMBOUND_EXPECTS(conv.bias.data() != nullptr, config_error, "fold_batchnorm: the convolution has no bias to fold into");
  MEMBOUND_EXPECTS(eps > 0.0f, config_error, "fold_batchnorm: eps = ", eps, ", expected > 0");
  const index_t per = conv.weight.size() / conv.cfg.out_channels;
  for (std::size_t o = 0; o < c; ++o) {
    const double scale = static_cast<double>(gamma[o]) / std::sqrt(static_cast<double>(var[o]) + eps);
    float* wo = conv.weight.data() + static_cast<index_t>(o) * per;
    for (index_t i = 0; i < per; ++i) wo[i] = static_cast<float>(wo[i] * scale);
    conv.bias(static_cast<index_t>(o)) = static_cast<float>((conv.bias(static_cast<index_t>(o)) - mean[o]) * scale + beta[o]);
  }
}

} // namespace nn
} // namespace v0_1
} // namespace membound
