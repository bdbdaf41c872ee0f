// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief timm's eval pipeline for EfficientViT on 8-bit RGB images: `resize_bicubic` (PIL's
/// `Image.resize(size, Image.BICUBIC)`), `center_crop` (torchvision's CenterCrop), and
/// `eval_transform` (Resize(256, BICUBIC) + CenterCrop(224) + ToTensor + Normalize into a
/// (3, 224, 224) float view); `load_image` reads a file through it.
///
/// Fidelity: `resize_bicubic` reproduces PIL 9.x's 8-bit resampler (src/libImaging/Resample.c)
/// bit for bit: separable, horizontal pass first, coefficients of the a = -0.5 cubic with its
/// support of 2 scaled by the downscale factor, normalised by their sum and rounded to 22-bit
/// fixed point, each pass rounded and clipped to uint8 (no `reducing_gap`). That holds when the
/// coefficients are computed without FMA contraction (membound's builds use -ffp-contract=off;
/// GCC's default -ffp-contract=fast on an FMA target can move a rare pixel by one level). The
/// normalisation is float32 as torchvision's: (v / 255 - mean) / std, each step rounded.
/// Complexity: resize O(out_h in_w k_h + out_h out_w k_w) per channel (k = taps, 5 for upscaling,
/// 4 x the factor + 1 when shrinking), crop and normalise O(output).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"
#include "membound/io/image.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

namespace detail {

/// PIL's bicubic_filter (a = -0.5), written as in Resample.c so the doubles match.
inline double pil_bicubic(double x) noexcept {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

inline constexpr int pil_precision_bits = 32 - 8 - 2;

/// Taps of one axis: output i reads inputs [first[i], first[i] + count[i]) with weights
/// k[i * ksize + j] in 22-bit fixed point.
struct pil_taps {
  index_t ksize = 0;
  std::vector<index_t> first, count;
  std::vector<std::int32_t> k;
};

/// PIL's precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size) and the bicubic filter.
inline pil_taps pil_coeffs(index_t in_size, index_t out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  pil_taps t;
  t.ksize = static_cast<index_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<std::size_t>(out_size)); // (N)
  t.count.resize(static_cast<std::size_t>(out_size)); // (N)
  t.k.assign(static_cast<std::size_t>(out_size * t.ksize), 0); // (N,K)
  std::vector<double> w(static_cast<std::size_t>(t.ksize)); // (K)
  for (index_t xx = 0; xx < out_size; ++xx) {
    const double center = 0.0 + (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    index_t xmin = static_cast<index_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    index_t xmax = static_cast<index_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (index_t x = 0; x < xmax; ++x) {
      const double v = pil_bicubic((static_cast<double>(x + xmin) - center + 0.5) * ss);
      w[static_cast<std::size_t>(x)] = v;
      ww += v;
    }
    for (index_t x = 0; x < xmax; ++x) {
      double v = w[static_cast<std::size_t>(x)];
      if (ww != 0.0) v /= ww;
      const double f = v * static_cast<double>(1 << pil_precision_bits);
      t.k[static_cast<std::size_t>(xx * t.ksize + x)] = static_cast<std::int32_t>(v < 0 ? -0.5 + f : 0.5 + f);
    }
    t.first[static_cast<std::size_t>(xx)] = xmin;
    t.count[static_cast<std::size_t>(xx)] = xmax;
  }
  return t;
}

/// PIL's clip8: the fixed-point sum (with its rounding half already added) to uint8.
inline std::uint8_t pil_clip8(std::int32_t ss) noexcept {
  const std::int32_t v = ss >> pil_precision_bits; // arithmetic shift, as PIL's int
  return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/// @throws shape_error naming `who` unless `img.valid()`.
inline void check_image(const io::image& img, const char* who) {
  MEMBOUND_EXPECTS(img.valid(), shape_error, who, ": image of ", img.height, " x ", img.width, " pixels with ",
                   img.pixels.size(), " bytes; expected a non-empty H x W x 3 image of at most ", io::image_max_pixels,
                   " pixels");
}

/// "(3, 224, 224)" for messages.
inline std::string shape_of(const view<float>& v) {
  std::string s = "(";
  for (int d = 0; d < v.rank(); ++d) s += ::membound::detail::concat(d ? ", " : "", v.extent(d));
  return s + ")";
}

} // namespace detail

/// Resizes an RGB image to out_h x out_w as PIL 9.x's `Image.resize((out_w, out_h),
/// Image.BICUBIC)` (no box, no reducing_gap), bit for bit (see the file comment). An axis whose
/// size does not change is not resampled, and an unchanged size returns a copy, as in PIL.
/// @throws shape_error for an input that is not `valid()` or an output size with a side < 1 or
///   more than io::image_max_pixels pixels. Complexity: see the file comment.
inline io::image resize_bicubic(const io::image& in, index_t out_h, index_t out_w) {
  detail::check_image(in, "vision::resize_bicubic");
  MEMBOUND_EXPECTS(out_h >= 1 && out_w >= 1 && out_h <= io::image_max_pixels / out_w, shape_error,
                   "vision::resize_bicubic: output size ", out_h, " x ", out_w, " (H x W); expected both >= 1 and at most ",
                   io::image_max_pixels, " pixels");
  const bool horizontal = out_w != in.width;
  const bool vertical = out_h != in.height;
  if (!horizontal && !vertical) return in;

  const detail::pil_taps tv = detail::pil_coeffs(in.height, out_h);
  // Rows of the input the vertical pass reads (PIL's ybox_first, ybox_last).
  const index_t y_first = tv.first.front();
  const index_t y_last = tv.first.back() + tv.count.back();
  constexpr std::int32_t half = std::int32_t{1} << (detail::pil_precision_bits - 1);

  // Horizontal pass over rows [y_first, y_last) (all rows when there is no vertical pass).
  const io::image* src = &in;
  index_t row0 = 0;
  io::image tmp;
  if (horizontal) {
    const index_t r0 = vertical ? y_first : 0, r1 = vertical ? y_last : in.height;
    const detail::pil_taps th = detail::pil_coeffs(in.width, out_w);
    tmp.height = r1 - r0;
    tmp.width = out_w;
    tmp.pixels.resize(static_cast<std::size_t>(tmp.height * out_w * 3)); // (rows,W_out,3)
    for (index_t y = 0; y < tmp.height; ++y) {
      const std::uint8_t* row = in.pixels.data() + (y + r0) * in.width * 3;
      std::uint8_t* out = tmp.pixels.data() + y * out_w * 3;
      for (index_t xx = 0; xx < out_w; ++xx) {
        const std::int32_t* k = th.k.data() + xx * th.ksize;
        const std::uint8_t* p = row + th.first[static_cast<std::size_t>(xx)] * 3;
        std::int32_t s0 = half, s1 = half, s2 = half;
        for (index_t x = 0, n = th.count[static_cast<std::size_t>(xx)]; x < n; ++x) {
          s0 += static_cast<std::int32_t>(p[3 * x + 0]) * k[x];
          s1 += static_cast<std::int32_t>(p[3 * x + 1]) * k[x];
          s2 += static_cast<std::int32_t>(p[3 * x + 2]) * k[x];
        }
        out[3 * xx + 0] = detail::pil_clip8(s0);
        out[3 * xx + 1] = detail::pil_clip8(s1);
        out[3 * xx + 2] = detail::pil_clip8(s2);
      }
    }
    src = &tmp;
    row0 = r0;
  }
  if (!vertical) return tmp;

  // Vertical pass: output row yy reads source rows first[yy] - row0 ...
  io::image out;
  out.height = out_h;
  out.width = src->width;
  out.pixels.resize(static_cast<std::size_t>(out_h * out.width * 3)); // (H_out,W_out,3)
  const index_t stride = src->width * 3;
  for (index_t yy = 0; yy < out_h; ++yy) {
    const std::int32_t* k = tv.k.data() + yy * tv.ksize;
    const std::uint8_t* base = src->pixels.data() + (tv.first[static_cast<std::size_t>(yy)] - row0) * stride;
    const index_t n = tv.count[static_cast<std::size_t>(yy)];
    std::uint8_t* o = out.pixels.data() + yy * stride;
    for (index_t i = 0; i < stride; ++i) {
      std::int32_t s = half;
      for (index_t y = 0; y < n; ++y) s += static_cast<std::int32_t>(base[y * stride + i]) * k[y];
      o[i] = detail::pil_clip8(s);
    }
  }
  return out;
}

/// The centre h x w crop, as torchvision's CenterCrop on an image at least that large:
/// top = round((H - h) / 2), left = round((W - w) / 2), Python's round (half to even).
/// @throws shape_error naming both sizes if h > H or w > W (torchvision pads with zeros
///   instead; membound refuses), or if h or w < 1. Complexity: O(h w).
inline io::image center_crop(const io::image& in, index_t h, index_t w) {
  detail::check_image(in, "vision::center_crop");
  MEMBOUND_EXPECTS(h >= 1 && w >= 1 && h <= in.height && w <= in.width, shape_error, "vision::center_crop: crop ", h,
                   " x ", w, " (H x W) does not fit the image of ", in.height, " x ", in.width,
                   " (torchvision would pad with zeros; membound expects 1 <= crop <= image size)");
  const auto half_even = [](index_t d) { // round(d / 2.0) with ties to even
    index_t k = d / 2;
    if (d % 2 == 1 && k % 2 == 1) ++k;
    return k;
  };
  const index_t top = half_even(in.height - h), left = half_even(in.width - w);
  io::image out(h, w); // (h,w,3)
  for (index_t y = 0; y < h; ++y) {
    const std::uint8_t* s = in.pixels.data() + ((y + top) * in.width + left) * 3;
    std::copy(s, s + w * 3, out.pixels.data() + y * w * 3);
  }
  return out;
}

/// timm's eval transform for ImageNet models (EfficientViT: bicubic, crop_pct 0.875):
/// Resize(resize, BICUBIC) on the shorter side, CenterCrop(crop), ToTensor, Normalize(mean, std).
struct eval_transform {
  index_t resize = 256; ///< shorter side after resizing
  index_t crop = 224;   ///< side of the square centre crop
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};

  /// @throws config_error unless 1 <= crop <= resize <= 2^16, mean finite and std finite and > 0.
  void validate() const {
    MEMBOUND_EXPECTS(crop >= 1 && resize >= crop && resize <= (index_t{1} << 16), config_error,
                     "vision::eval_transform: resize ", resize, ", crop ", crop,
                     "; expected 1 <= crop <= resize <= 65536");
    for (int c = 0; c < 3; ++c)
      MEMBOUND_EXPECTS(std::isfinite(mean[static_cast<std::size_t>(c)]) &&
                           std::isfinite(this->std[static_cast<std::size_t>(c)]) &&
                           this->std[static_cast<std::size_t>(c)] > 0.0f,
                       config_error, "vision::eval_transform: channel ", c, " has mean ",
                       mean[static_cast<std::size_t>(c)], ", std ", this->std[static_cast<std::size_t>(c)],
                       "; expected finite values and std > 0");
  }

  /// {H, W} after Resize(resize) of an h x w image, as torchvision 0.14's
  /// _compute_resized_output_size: the shorter side becomes `resize`, the longer
  /// int(resize * long / short) (truncated; square images stay square).
  /// @throws shape_error if h or w < 1 or the result exceeds io::image_max_pixels.
  std::array<index_t, 2> resized_size(index_t h, index_t w) const {
    validate();
    MEMBOUND_EXPECTS(h >= 1 && w >= 1 && h <= io::image_max_pixels && w <= io::image_max_pixels, shape_error,
                     "vision::eval_transform: image of ", h, " x ", w, "; expected a non-empty image");
    const index_t s = std::min(h, w), l = std::max(h, w);
    const double nl = static_cast<double>(resize * l) / static_cast<double>(s); // exact product (< 2^43)
    MEMBOUND_EXPECTS(nl <= static_cast<double>(io::image_max_pixels / resize), shape_error,
                     "vision::eval_transform: resizing ", h, " x ", w, " to shorter side ", resize,
                     " gives more than io::image_max_pixels (", io::image_max_pixels, ") pixels");
    const index_t long_side = static_cast<index_t>(nl);
    return w <= h ? std::array<index_t, 2>{long_side, resize} : std::array<index_t, 2>{resize, long_side};
  }

  /// Resize + centre crop: the (crop, crop) uint8 image torchvision hands to ToTensor. As
  /// torchvision, an image whose size already equals the resize target is not resampled.
  io::image resize_and_crop(const io::image& img) const {
    detail::check_image(img, "vision::eval_transform");
    const auto [h, w] = resized_size(img.height, img.width);
    if (h == img.height && w == img.width) return center_crop(img, crop, crop);
    return center_crop(resize_bicubic(img, h, w), crop, crop);
  }

  /// Writes ToTensor + Normalize of an already cropped (crop, crop) image into `out`:
  /// out(c, y, x) = (float(v) / 255 - mean[c]) / std[c] in float32.
  /// @throws shape_error if `img` is not crop x crop or `out` is not (3, crop, crop) or
  ///   (1, 3, crop, crop); `out` may be strided.
  void normalize(const io::image& img, view<float> out) const {
    validate();
    detail::check_image(img, "vision::eval_transform::normalize");
    MEMBOUND_EXPECTS(img.height == crop && img.width == crop, shape_error, "vision::eval_transform::normalize: image of ",
                     img.height, " x ", img.width, "; expected ", crop, " x ", crop);
    const bool r3 = out.rank() == 3 && out.extent(0) == 3 && out.extent(1) == crop && out.extent(2) == crop;
    const bool r4 = out.rank() == 4 && out.extent(0) == 1 && out.extent(1) == 3 && out.extent(2) == crop &&
                    out.extent(3) == crop;
    MEMBOUND_EXPECTS(r3 || r4, shape_error, "vision::eval_transform: output view of shape ", detail::shape_of(out),
                     "; expected (3, ", crop, ", ", crop, ") or (1, 3, ", crop, ", ", crop, ")");
    const view<float> o = r4 ? out.select(0, 0) : out; // (3,crop,crop)
    for (index_t c = 0; c < 3; ++c) {
      const float m = mean[static_cast<std::size_t>(c)], sd = this->std[static_cast<std::size_t>(c)];
      for (index_t y = 0; y < crop; ++y)
        for (index_t x = 0; x < crop; ++x) o(c, y, x) = (static_cast<float>(img(y, x, c)) / 255.0f - m) / sd;
    }
  }

  /// The whole pipeline: resize_and_crop then normalize into `out`, (3, crop, crop) or
  /// (1, 3, crop, crop). @throws config_error, shape_error as above.
  void operator()(const io::image& img, view<float> out) const { normalize(resize_and_crop(img), out); }
};

/// Reads a PNG or JPEG file and writes it through `t` into `out` ((3, crop, crop) or
/// (1, 3, crop, crop)). @throws io_error, format_error (see io::read_image), config_error,
/// shape_error (see eval_transform).
inline void load_image(const std::filesystem::path& path, const eval_transform& t, view<float> out) {
  t(io::read_image(path), out);
}

} // namespace vision
} // namespace v0_1
} // namespace membound
