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
/// either the direct kernel `cpu::conv2d_direct` (register-blocked, no im2col; chosen when
/// C_in k^2 <= 144, the first stem layers) or im2col into a workspace (C_in*k*k, Ho*Wo) and one GEMM per
/// image (wider inputs), selectable with `conv2d_config::algorithm`; depthwise =
/// `cpu::depthwise_conv2d_planes`, over the whole batch in one call when there is no activation
/// (so its prefetch crosses images and a large output streams past the caches), else image by
/// image. The bias is added inside the kernels (im2col: after the GEMM) and the activation runs on
/// each image's output while it is in cache. Costs: 2 B C_out C_in k^2 Ho Wo
/// flops (dense), 2 B C k^2 Ho Wo (depthwise). The only allocation is the workspace, sized on
/// first use and reused.

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "membound/backend/cpu/conv.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/nn/activation.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// How a dense k x k (k > 1 or strided) convolution is computed.
enum class conv2d_algorithm {
  automatic, ///< direct when C_in k^2 <= 144 (the first stems), else im2col + GEMM (bench_nn compares them)
  direct,    ///< cpu::conv2d_direct
  im2col     ///< im2col workspace + the GEMM entry
};

/// Settings of a convolution (PyTorch's names, plus the algorithm choice for dense k x k).
struct conv2d_config {
  index_t in_channels = 1, out_channels = 1, kernel = 1, stride = 1, padding = 0, groups = 1;
  bool bias = true;
  activation act = activation::identity;
  conv2d_algorithm algorithm = conv2d_algorithm::automatic;
};

/// A convolution layer; its weight (C_out, C_in/groups, k, k) and bias (C_out) live in `parameters`.
struct conv2d {
  conv2d_config cfg;
  view<float> weight, bias;
  array<float> workspace; ///< im2col or padded-plane scratch (grown on demand, then reused)

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

  /// y = act(conv(x) + b) on backend B (the scalar twin or a SIMD backend; the GEMM of the
  /// pointwise and im2col paths always uses the default GEMM entry).
  /// @throws shape_error naming both shapes.
  template <class B = backend::best_cpu>
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
    const cpu::conv_geometry g{h, w, cfg.kernel, cfg.stride, cfg.padding};
    const index_t plane = ho * wo;
    const float* bptr = bias.data();
    if (cfg.groups != 1 && cfg.act == activation::identity) {
      // Depthwise without an activation: the whole batch in one call, so the prefetch runs across
      // images and a large output leaves with streaming stores. (With an activation, image by image
      // below, so each image's output is still in L2 when the activation passes over it.)
      reserve(cpu::depthwise_scratch_floats<B>(g));
      cpu::depthwise_conv2d_planes<B>(x.data(), cfg.out_channels, weight.data(), bptr, y.data(), g, workspace.data(), b);
      return;
    }
    for (index_t n = 0; n < b; ++n) {
      const float* xn = x.data() + n * cfg.in_channels * h * w;
      float* yn = y.data() + n * cfg.out_channels * plane;
      bool bias_done = true;
      if (cfg.groups != 1) {
        reserve(cpu::depthwise_scratch_floats<B>(g));
        cpu::depthwise_conv2d_planes<B>(xn, cfg.out_channels, weight.data(), bptr, yn, g, workspace.data());
      } else if (cfg.kernel == 1 && cfg.stride == 1 && cfg.padding == 0) {
        cpu::gemm(make_view<const float>(weight.data(), {cfg.out_channels, cfg.in_channels}),
                  make_view(xn, {cfg.in_channels, plane}), make_view(yn, {cfg.out_channels, plane})); // pointwise
        bias_done = false;
      } else if (uses_direct()) {
        reserve(cpu::conv_scratch_floats<B>(g, cfg.in_channels, cfg.out_channels));
        cpu::conv2d_direct<B>(xn, cfg.in_channels, weight.data(), bptr, yn, cfg.out_channels, g, workspace.data());
      } else {
        im2col<B>(xn, yn, g);
        bias_done = false;
      }
      for (index_t c = 0; c < cfg.out_channels; ++c) {
        const std::span<float> out(yn + c * plane, static_cast<std::size_t>(plane));
        if (!bias_done && bptr != nullptr)
          for (float& v : out) v += bptr[c];
        if (cfg.act != activation::identity) activation_forward<B>(cfg.act, out, out);
      }
    }
  }

  /// Whether a dense k x k convolution runs the direct kernel (else im2col + GEMM).
  bool uses_direct() const noexcept {
    if (cfg.algorithm == conv2d_algorithm::automatic) return cfg.in_channels * cfg.kernel * cfg.kernel <= 144;
    return cfg.algorithm == conv2d_algorithm::direct;
  }

private:
  void reserve(index_t floats) {
    if (workspace.size() < floats) workspace = array<float>({floats}, uninitialized);
  }
  template <class B>
  void im2col(const float* xn, float* yn, const cpu::conv_geometry& g) {
    // Each input channel is first copied into the zero-bordered, phase-split plane of the direct
    // kernels; a row of the (C_in k k, Ho Wo) column matrix is then Ho contiguous copies.
    const index_t cin = cfg.in_channels, cout = cfg.out_channels, k = cfg.kernel, s = cfg.stride;
    const index_t ho = g.out_h(), wo = g.out_w(), plane = ho * wo;
    const cpu::detail::padded_plane pp(g, 1);
    reserve(cin * k * k * plane + pp.floats());
    float* col = workspace.data();
    float* pad = col + cin * k * k * plane;
    for (index_t c = 0; c < cin; ++c) {
      cpu::detail::fill_padded(xn + c * g.h * g.w, g, pp, pad);
      for (index_t ky = 0; ky < k; ++ky)
        for (index_t kx = 0; kx < k; ++kx) {
          float* dst = col + ((c * k + ky) * k + kx) * plane;
          const float* src = pad + (kx % s) * pp.rows * pp.cols + ky * pp.cols + kx / s;
          for (index_t oy = 0; oy < ho; ++oy) std::copy_n(src + oy * s * pp.cols, wo, dst + oy * wo);
        }
    }
    const auto wmat = make_view<const float>(weight.data(), {cout, cin * k * k}); // (C_out, C_in k k)
    cpu::gemm(wmat, make_view<const float>(col, {cin * k * k, plane}), make_view(yn, {cout, plane}));
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
