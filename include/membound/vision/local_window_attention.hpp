// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `vision::local_window_attention`: EfficientViT's token mixer (timm
/// `LocalWindowAttention`): cascaded group attention inside non-overlapping window x window
/// windows of a resolution x resolution map.
///
/// Exactly as the reference: when the map fits one window (resolution <= window) the attention
/// runs on the whole map with R = resolution. Otherwise the map is zero padded at the bottom and
/// right to a multiple of the window (padding *before* the qkv projection, so padded tokens carry
/// the projection's bias and take part in attention unmasked, and the Q depthwise convolution
/// sees them), cut into windows (row-major; tokens row-major inside), attended with R = window,
/// and the outputs at padded positions are dropped. The projection is position-wise, so it runs
/// after cropping. Costs: those of `cascaded_group_attention` per window, plus two copies.

#include <algorithm>
#include <string>

#include "membound/vision/cascaded_group_attention.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

/// Local window attention with folded weights. Not safe for concurrent calls on one object.
template <class B = backend::best_cpu>
class local_window_attention {
public:
  cascaded_group_attention<B> attn; ///< built with resolution min(window, resolution)
  index_t resolution = 14;          ///< side of the (square) input map
  index_t window = 7;               ///< window side

  /// From timm's tensors under `prefix` (e.g. "stages.0.blocks.0.mixer.m"; the attention is
  /// `<prefix>.attn`). `c.resolution` is ignored: the attention's R is min(window, resolution).
  /// @throws config_error, format_error (see cascaded_group_attention::load).
  static local_window_attention load(cga_config c, index_t resolution, index_t window, const state_dict& sd,
                                     const std::string& prefix) {
    MEMBOUND_EXPECTS(resolution >= 1 && window >= 1, config_error, "local_window_attention: resolution ", resolution,
                     " and window ", window, " must be >= 1");
    c.resolution = std::min(window, resolution);
    local_window_attention l;
    l.attn = cascaded_group_attention<B>::load(c, sd, prefix + ".attn");
    l.resolution = resolution;
    l.window = window;
    return l;
  }

  /// Whether the map is cut into windows (else one window covers it).
  bool windowed() const noexcept { return resolution > window; }
  /// Windows per side.
  index_t windows_per_side() const noexcept { return windowed() ? (resolution + window - 1) / window : 1; }

  /// Channel-major x, y (C, B, H, W), H = W = resolution: y = LWA(x), or y += LWA(x) when
  /// `accumulate` (the block's residual: y may then be x itself).
  void forward_channel_major(const float* x, float* y, index_t b, bool accumulate) {
    const index_t c = attn.cfg.dim, hw = resolution * resolution, t = b * hw, dv = attn.value_channels();
    reserve(o_, dv * t);
    if (!windowed()) {
      attn.heads_forward(x, b, o_.data());
    } else {
      const index_t nw = windows_per_side(), ws = window, n = ws * ws, windows = b * nw * nw, tw = windows * n;
      reserve(xw_, c * tw);
      reserve(ow_, dv * tw);
      // (C, B, H, W) -> (C, B, nw, nw, ws, ws), zero padded
      [[maybe_unused]] const bool big = c * tw >= 32768;
      MEMBOUND_VISION_PARALLEL_FOR
      for (index_t ch = 0; ch < c; ++ch)
        for (index_t img = 0; img < b; ++img) {
          const float* src = x + (ch * b + img) * hw;
          float* dst = xw_.data() + (ch * b + img) * nw * nw * n;
          for (index_t wy = 0; wy < nw; ++wy)
            for (index_t wx = 0; wx < nw; ++wx)
              for (index_t ty = 0; ty < ws; ++ty) {
                float* out = dst + ((wy * nw + wx) * ws + ty) * ws;
                const index_t yy = wy * ws + ty, x0 = wx * ws;
                const index_t cnt = yy < resolution ? std::min(ws, resolution - x0) : 0; // in-map part of the row
                if (cnt > 0) std::copy_n(src + yy * resolution + x0, cnt, out);
                std::fill(out + cnt, out + ws, 0.0f);
              }
        }
      attn.heads_forward(xw_.data(), windows, ow_.data());
      // (dv, B, nw, nw, ws, ws) -> (dv, B, H, W), cropped
      MEMBOUND_VISION_PARALLEL_FOR
      for (index_t ch = 0; ch < dv; ++ch)
        for (index_t img = 0; img < b; ++img) {
          const float* src = ow_.data() + (ch * b + img) * nw * nw * n;
          float* dst = o_.data() + (ch * b + img) * hw;
          for (index_t wy = 0; wy < nw; ++wy)
            for (index_t ty = 0; ty < ws && wy * ws + ty < resolution; ++ty)
              for (index_t wx = 0; wx < nw; ++wx) {
                const index_t yy = wy * ws + ty, x0 = wx * ws;
                std::copy_n(src + ((wy * nw + wx) * ws + ty) * ws, std::min(ws, resolution - x0), dst + yy * resolution + x0);
              }
        }
    }
    detail::cm_conv1x1<B>(attn.proj, o_.data(), t, y, t, t, detail::epilogue::bias, accumulate);
  }

  /// y (B, C, H, W) = LWA(x (B, C, H, W)), NCHW, H = W = resolution (no residual).
  /// @throws shape_error naming the expected shape (timm asserts the same fixed size).
  void forward(view<const float> x, view<float> y) {
    const index_t c = attn.cfg.dim, r = resolution;
    MEMBOUND_EXPECTS(x.rank() == 4 && x.contiguous() && x.extent(1) == c && x.extent(2) == r && x.extent(3) == r,
                     shape_error, "local_window_attention: x must be a contiguous (B,", c, ",", r, ",", r,
                     ") tensor (the resolution it was built for); got ", cascaded_group_attention<B>::describe(x));
    const index_t b = x.extent(0), hw = r * r;
    MEMBOUND_EXPECTS(y.rank() == 4 && y.contiguous() && y.extent(0) == b && y.extent(1) == c && y.extent(2) == r &&
                         y.extent(3) == r,
                     shape_error, "local_window_attention: y must be a contiguous (", b, ",", c, ",", r, ",", r,
                     ") tensor; got ", cascaded_group_attention<B>::describe(view<const float>(y)));
    array<float> xc({c, b * hw}, uninitialized); // (C, B, H, W)
    array<float> yc({c, b * hw}, uninitialized); // (C, B, H, W)
    cascaded_group_attention<B>::to_channel_major(x.data(), b, c, hw, xc.data());
    forward_channel_major(xc.data(), yc.data(), b, false);
    cascaded_group_attention<B>::from_channel_major(yc.data(), b, c, hw, y.data());
  }

private:
  static void reserve(array<float>& a, index_t floats) {
    if (a.size() < floats) a = array<float>({floats}, uninitialized); // (floats): flat workspace
  }
  array<float> xw_, ow_, o_;
};

} // namespace vision
} // namespace v0_1
} // namespace membound
