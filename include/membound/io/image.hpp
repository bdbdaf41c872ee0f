// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief PNG and JPEG decoding to 8-bit RGB (`io::decode_image`, `io::read_image`) and PNG
/// encoding (`io::encode_png`, `io::write_png`) through stb_image / stb_image_write.
///
/// Contract:
/// - Only PNG and JPEG are accepted (checked by signature first); stb's other formats (GIF, BMP,
///   PSD, TGA, HDR, PIC, PNM) are refused, so only two of its decoders face untrusted bytes.
/// - The result is always 8-bit RGB, as PIL's `Image.convert('RGB')`: grey is replicated, the
///   alpha of grey+alpha and RGBA is dropped (not composited), palettes are expanded.
/// - 16-bit PNGs are reduced to 8 bits by stb (the high byte of each sample). PIL differs for
///   16-bit grey (mode I;16, whose convert('RGB') clips at 255 instead); 16-bit RGB(A) agrees.
/// - Bounds: the header is read first (`stbi_info_from_memory`) and an image of more than
///   `image_max_pixels` pixels (or the caller's smaller bound) is refused before any pixel
///   allocation; stb itself refuses sides over 2^24. Peak memory of a decode is O(pixels):
///   the RGB result plus stb's working buffers (at most about 3 bytes per pixel and component
///   more for progressive JPEG).
/// - Structure is checked before stb decodes: a PNG must end its chunk sequence with IEND and a
///   JPEG must reach its EOI marker (stb alone would decode a truncated JPEG into grey rows, as
///   libjpeg does with a warning; PIL refuses it, "image file is truncated"). PNG CRCs are not
///   verified (stb ignores them; PIL checks them). EXIF orientation and gamma are ignored, as by
///   PIL's `Image.open` + `convert('RGB')`.
/// - Every malformed input is a `format_error` naming the input (`what`, or the path) and stb's
///   `stbi_failure_reason()`; a file that cannot be opened is an `io_error` (as the safetensors
///   reader's). stb's failure reason is thread-local in Debian's libstb, so decoding is safe from
///   several threads. stb's process-wide switches (`stbi_set_flip_vertically_on_load`,
///   `stbi_convert_iphone_png_to_rgb`, `stbi_set_unpremultiply_on_load`) are never changed here
///   and must stay at their defaults for the results documented above.
/// Complexity: O(bytes + pixels) time, O(pixels) memory.
///
/// Linking: the stb implementation lives in a library (Debian: libstb-dev, `pkg-config stb`,
/// `-lstb`); this header only declares it and never defines STB_IMAGE_IMPLEMENTATION.

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<stb_image.h>)
#include <stb_image.h>
#include <stb_image_write.h>
#elif __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#else
#error "membound/io/image.hpp needs stb_image.h and stb_image_write.h (Debian: libstb-dev; pkg-config stb)"
#endif

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"
#include "membound/io/detail/mapped_file.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

/// Largest image, in pixels, that `decode_image`, `read_image` and the `image` constructor accept:
/// 2^26 (8192 x 8192), 192 MiB of RGB.
inline constexpr index_t image_max_pixels = index_t{1} << 26;

/// An 8-bit RGB image: `pixels` holds height x width x 3 bytes, row-major HWC (R, G, B of the
/// top-left pixel first), as a PIL RGB image's `tobytes()`.
struct image {
  static constexpr index_t channels = 3;

  index_t height = 0;
  index_t width = 0;
  std::vector<std::uint8_t> pixels; // (H,W,3)

  image() = default;
  /// A black height x width image.
  /// @throws shape_error unless 1 <= height, width and height * width <= image_max_pixels.
  image(index_t h, index_t w) : height(h), width(w) {
    MEMBOUND_EXPECTS(h >= 1 && w >= 1 && h <= image_max_pixels / w, shape_error, "io::image: ", h, " x ", w,
                     " pixels (H x W); expected both >= 1 and at most ", image_max_pixels,
                     " pixels (io::image_max_pixels)");
    pixels.assign(static_cast<std::size_t>(h * w * channels), 0); // (H,W,3)
  }

  /// Sample (y, x, c), unchecked. O(1).
  std::uint8_t& operator()(index_t y, index_t x, index_t c) noexcept {
    return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
  }
  std::uint8_t operator()(index_t y, index_t x, index_t c) const noexcept {
    return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
  }
  /// Sample (y, x, c). @throws lookup_error outside the image.
  std::uint8_t at(index_t y, index_t x, index_t c) const {
    MEMBOUND_EXPECTS(y >= 0 && y < height && x >= 0 && x < width && c >= 0 && c < channels, lookup_error,
                     "io::image::at(", y, ", ", x, ", ", c, "): outside the image of shape (", height, ", ",
                     width, ", 3)");
    return (*this)(y, x, c);
  }
  /// The pixels as a contiguous (H, W, 3) view.
  view<const std::uint8_t> as_view() const { return view<const std::uint8_t>(pixels.data(), {height, width, channels}); } // (H,W,3)
  view<std::uint8_t> as_view() { return view<std::uint8_t>(pixels.data(), {height, width, channels}); } // (H,W,3)

  /// True when the image is non-empty, within image_max_pixels, and `pixels` holds exactly
  /// height x width x 3 bytes (the fields are public; every function taking an image checks this).
  bool valid() const noexcept {
    return height >= 1 && width >= 1 && height <= image_max_pixels / width &&
           pixels.size() == static_cast<std::size_t>(height * width * channels);
  }

  bool operator==(const image&) const = default;
};

namespace detail {

inline constexpr unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

inline bool is_png(std::span<const std::byte> b) noexcept {
  return b.size() >= 8 && std::memcmp(b.data(), png_signature, 8) == 0;
}
inline bool is_jpeg(std::span<const std::byte> b) noexcept {
  return b.size() >= 3 && b[0] == std::byte{0xff} && b[1] == std::byte{0xd8} && b[2] == std::byte{0xff};
}

/// "0x1f" for a byte in a message.
inline std::string hex_byte(unsigned v) {
  static constexpr char digits[] = "0123456789abcdef";
  return std::string{'0', 'x', digits[(v >> 4) & 15u], digits[v & 15u]};
}

inline std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? std::string(r) : std::string("unknown reason");
}

/// Walks the chunks of a PNG (after the signature) to IEND. Empty string when the sequence is
/// complete, else what is wrong. O(number of chunks); reads only within `b`.
inline std::string png_structure_error(std::span<const std::byte> b) {
  const auto u8 = [&](std::size_t i) { return static_cast<std::uint32_t>(b[i]); };
  std::size_t pos = 8;
  while (true) {
    if (b.size() - pos < 12)
      return ::membound::detail::concat("truncated PNG: ", b.size() - pos, " bytes at offset ", pos,
                                        " where a chunk (at least 12 bytes) or IEND was expected");
    const std::uint32_t len = (u8(pos) << 24) | (u8(pos + 1) << 16) | (u8(pos + 2) << 8) | u8(pos + 3);
    const bool iend = std::memcmp(b.data() + pos + 4, "IEND", 4) == 0;
    if (len > 0x7fffffffu)
      return ::membound::detail::concat("bad PNG: chunk at offset ", pos, " claims ", len, " bytes (over 2^31 - 1)");
    if (len > b.size() - pos - 12)
      return ::membound::detail::concat("truncated PNG: chunk at offset ", pos, " claims ", len, " bytes, ",
                                        b.size() - pos - 12, " remain");
    if (iend) return {};
    pos += 12 + static_cast<std::size_t>(len);
  }
}

/// The tables a JPEG has defined so far, as stb's decoder sees them (DQT, DHT), and its frame.
struct jpeg_tables {
  bool quant[4] = {}, dc[4] = {}, ac[4] = {};
  bool frame = false, progressive = false;
  unsigned comp_id[4] = {}, comp_tq[4] = {};
  unsigned comps = 0;
};

/// Reads one DQT, DHT, SOF or SOS payload [p, e) into `t`; for SOS, checks that every table the
/// scan will read is defined. stb allocates its decoder state without clearing it, so a scan that
/// names a Huffman table no DHT defined reads uninitialised lookup tables (a wild read, found by
/// fuzzing), and an undefined quantisation table gives undefined pixels. Malformed payloads are
/// left to stb, which refuses them. Empty string when fine, else what is wrong.
inline std::string jpeg_segment_error(unsigned m, std::span<const std::byte> b, std::size_t p, std::size_t e,
                                      jpeg_tables& t) {
  const auto u8 = [&](std::size_t i) { return static_cast<unsigned>(b[i]); };
  if (m == 0xdb) { // DQT: (precision << 4 | id), then 64 values of 1 or 2 bytes
    while (p < e) {
      const unsigned pq = u8(p) >> 4, tq = u8(p) & 15;
      const std::size_t size = 1 + 64 * (pq == 0 ? 1 : 2);
      if (pq > 1 || tq > 3 || size > e - p) break;
      t.quant[tq] = true;
      p += size;
    }
  } else if (m == 0xc4) { // DHT: (class << 4 | id), 16 counts, the symbols
    while (e - p >= 17) {
      const unsigned tc = u8(p) >> 4, th = u8(p) & 15;
      std::size_t symbols = 0;
      for (std::size_t i = 1; i <= 16; ++i) symbols += u8(p + i);
      if (tc > 1 || th > 3 || symbols > e - p - 17) break;
      (tc == 0 ? t.dc : t.ac)[th] = true;
      p += 17 + symbols;
    }
  } else if (m >= 0xc0 && m <= 0xc2) { // SOF0..2: precision, height, width, components (id, sampling, tq)
    if (e - p < 6) return {};
    t.frame = true;
    t.progressive = m == 0xc2;
    t.comps = std::min(u8(p + 5), 4u);
    for (unsigned c = 0; c < t.comps && p + 6 + 3 * c + 2 < e; ++c) {
      t.comp_id[c] = u8(p + 6 + 3 * c);
      t.comp_tq[c] = u8(p + 6 + 3 * c + 2) & 3;
    }
  } else if (m == 0xda) { // SOS: components (id, dc << 4 | ac), Ss, Se, Ah << 4 | Al
    if (!t.frame || e - p < 1) return {};
    const unsigned ns = u8(p);
    if (e - p < 1 + 2 * static_cast<std::size_t>(ns) + 3) return {};
    const unsigned ss = u8(p + 1 + 2 * ns);
    for (unsigned i = 0; i < ns; ++i) {
      const unsigned id = u8(p + 1 + 2 * i), td = u8(p + 2 + 2 * i) >> 4, ta = u8(p + 2 + 2 * i) & 15;
      if (td > 3 || ta > 3) return {}; // stb refuses it
      for (unsigned c = 0; c < t.comps; ++c) {
        if (t.comp_id[c] != id) continue;
        if (!t.quant[t.comp_tq[c]])
          return ::membound::detail::concat("bad JPEG: component ", id, " uses quantisation table ", t.comp_tq[c],
                                            ", which no DQT defines before its scan");
        const bool needs_dc = !t.progressive || ss == 0, needs_ac = !t.progressive || ss > 0;
        if (needs_dc && !t.dc[td])
          return ::membound::detail::concat("bad JPEG: a scan reads DC Huffman table ", td, ", which no DHT defines");
        if (needs_ac && !t.ac[ta])
          return ::membound::detail::concat("bad JPEG: a scan reads AC Huffman table ", ta, ", which no DHT defines");
      }
    }
  }
  return {};
}

/// Walks the markers of a JPEG (after SOI) to EOI, skipping segments by their length and
/// entropy-coded data by its byte stuffing, and checks that every scan's tables are defined
/// (`jpeg_segment_error`). Empty string when EOI is reached, else what is wrong. O(bytes); reads
/// only within `b`.
inline std::string jpeg_structure_error(std::span<const std::byte> b) {
  const std::size_t n = b.size();
  const auto u8 = [&](std::size_t i) { return static_cast<unsigned>(b[i]); };
  jpeg_tables tables;
  std::size_t pos = 2;
  while (true) {
    while (pos < n && u8(pos) != 0xff) ++pos; // stray bytes: left to stb to judge
    while (pos < n && u8(pos) == 0xff) ++pos; // fill bytes
    if (pos >= n) return "truncated JPEG: the data ends before the EOI marker";
    const unsigned m = u8(pos++);
    if (m == 0xd9) return {};                                  // EOI
    if (m == 0x01 || (m >= 0xd0 && m <= 0xd7) || m == 0x00) continue; // TEM, RSTn: no length
    if (n - pos < 2) return "truncated JPEG: the data ends inside a marker segment";
    const std::size_t len = (u8(pos) << 8) | u8(pos + 1);
    if (len < 2) return ::membound::detail::concat("bad JPEG: marker ", hex_byte(m), " has length ", len);
    if (len > n - pos) return "truncated JPEG: the data ends inside a marker segment";
    if (std::string err = jpeg_segment_error(m, b, pos + 2, pos + len, tables); !err.empty()) return err;
    pos += len;
    if (m == 0xda) { // SOS: entropy-coded data up to the next marker other than RSTn
      while (pos + 1 < n) {
        if (u8(pos) == 0xff) {
          const unsigned nb = u8(pos + 1);
          if (nb == 0x00 || (nb >= 0xd0 && nb <= 0xd7)) { pos += 2; continue; }
          if (nb != 0xff) break;
        }
        ++pos;
      }
      if (pos + 1 >= n) return "truncated JPEG: the data ends inside a scan, before the EOI marker";
    }
  }
}

struct stbi_deleter {
  void operator()(stbi_uc* p) const noexcept { stbi_image_free(p); }
};

} // namespace detail

/// Decodes a PNG or JPEG held in memory into 8-bit RGB (see the file comment for the rules).
/// @param what names the input in error messages (a file name, "request 3", ...).
/// @param max_pixels the largest width x height accepted (at most image_max_pixels).
/// @throws format_error naming `what` for an empty, truncated, malformed or unsupported input,
///   and for an image over `max_pixels` (refused after reading the header, before decoding);
///   config_error if `max_pixels` is outside [1, image_max_pixels].
/// Complexity: O(bytes + pixels).
inline image decode_image(std::span<const std::byte> bytes, std::string_view what = "image",
                          index_t max_pixels = image_max_pixels) {
  MEMBOUND_EXPECTS(max_pixels >= 1 && max_pixels <= image_max_pixels, config_error, "io::decode_image: max_pixels ",
                   max_pixels, " is outside [1, ", image_max_pixels, "] (io::image_max_pixels)");
  MEMBOUND_EXPECTS(!bytes.empty(), format_error, what, ": empty input (0 bytes); expected a PNG or JPEG file");
  MEMBOUND_EXPECTS(bytes.size() <= static_cast<std::size_t>(INT_MAX), format_error, what, ": ", bytes.size(),
                   " bytes; stb decodes at most ", INT_MAX, " bytes");
  const bool png = detail::is_png(bytes);
  if (!png && !detail::is_jpeg(bytes)) {
    std::string head;
    for (std::size_t i = 0; i < bytes.size() && i < 4; ++i)
      head += ::membound::detail::concat(i ? " " : "", detail::hex_byte(static_cast<unsigned>(bytes[i])));
    throw format_error(::membound::detail::concat(what, ": unsupported format (first bytes ", head,
                                                  "); expected a PNG or JPEG file"));
  }
  if (png && bytes.size() >= 24 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0) {
    // The bound, from the IHDR chunk itself: stb's header reader refuses images over 2^30 bytes
    // with a vaguer "unknown image type".
    const auto be32 = [&](std::size_t i) {
      return (std::to_integer<index_t>(bytes[i]) << 24) | (std::to_integer<index_t>(bytes[i + 1]) << 16) |
             (std::to_integer<index_t>(bytes[i + 2]) << 8) | std::to_integer<index_t>(bytes[i + 3]);
    };
    const index_t iw = be32(16), ih = be32(20);
    MEMBOUND_EXPECTS(iw == 0 || ih <= max_pixels / iw, format_error, what, ": ", iw, " x ", ih,
                     " pixels (W x H) exceeds the bound of ", max_pixels, " pixels");
  }
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw format_error(::membound::detail::concat(what, ": cannot read the ", png ? "PNG" : "JPEG",
                                                  " header: ", detail::stb_reason()));
  MEMBOUND_EXPECTS(w >= 1 && h >= 1 && static_cast<index_t>(h) <= max_pixels / static_cast<index_t>(w), format_error,
                   what, ": ", w, " x ", h, " pixels (W x H) exceeds the bound of ", max_pixels, " pixels");
  if (const std::string err = png ? detail::png_structure_error(bytes) : detail::jpeg_structure_error(bytes);
      !err.empty())
    throw format_error(::membound::detail::concat(what, ": ", err));
  int dw = 0, dh = 0, dn = 0;
  std::unique_ptr<stbi_uc, detail::stbi_deleter> px(stbi_load_from_memory(data, len, &dw, &dh, &dn, 3));
  if (!px)
    throw format_error(::membound::detail::concat(what, ": cannot decode the ", png ? "PNG" : "JPEG", ": ",
                                                  detail::stb_reason()));
  MEMBOUND_EXPECTS(dw == w && dh == h, format_error, what, ": the header says ", w, " x ", h, " but stb decoded ",
                   dw, " x ", dh);
  image img;
  img.height = h;
  img.width = w;
  img.pixels.assign(px.get(), px.get() + static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * 3); // (H,W,3)
  return img;
}

/// Reads and decodes a PNG or JPEG file (see `decode_image`).
/// @throws io_error (path and OS reason) if the file cannot be opened or read; format_error
///   prefixed with the path if it is not a valid PNG or JPEG. Complexity: O(file size + pixels).
inline image read_image(const std::filesystem::path& path, index_t max_pixels = image_max_pixels) {
  const auto file = detail::mapped_file::open(path, load_mode::read);
  return decode_image(file.bytes(), path.string(), max_pixels);
}

/// Encodes an image as PNG (8-bit RGB, zlib level 8 as stb's default, stb's filter choice).
/// @throws shape_error for an empty image or one whose `pixels` size is not height x width x 3;
///   io_error if stb fails (out of memory). Complexity: O(pixels).
inline std::vector<std::byte> encode_png(const image& img) {
  MEMBOUND_EXPECTS(img.valid(), shape_error, "io::encode_png: image of ", img.height, " x ", img.width, " pixels with ",
                   img.pixels.size(), " bytes; expected >= 1 x 1, at most ", image_max_pixels,
                   " pixels, and height x width x 3 bytes");
  std::vector<std::byte> out;
  auto append = [](void* ctx, void* p, int size) {
    auto* v = static_cast<std::vector<std::byte>*>(ctx);
    const auto* b = static_cast<const std::byte*>(p);
    v->insert(v->end(), b, b + size);
  };
  const int ok = stbi_write_png_to_func(append, &out, static_cast<int>(img.width), static_cast<int>(img.height), 3,
                                        img.pixels.data(), static_cast<int>(img.width * 3));
  MEMBOUND_EXPECTS(ok != 0, io_error, "io::encode_png: stb_image_write failed for a ", img.height, " x ", img.width,
                   " image");
  return out;
}

/// Writes an image as a PNG file (see `encode_png`), replacing any file at `path`.
/// @throws shape_error as encode_png; io_error naming the path and the OS reason if the file
///   cannot be written. Complexity: O(pixels).
inline void write_png(const std::filesystem::path& path, const image& img) {
  const std::vector<std::byte> png = encode_png(img);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) throw io_error(detail::os_message(path, "cannot create", errno));
  if (std::fwrite(png.data(), 1, png.size(), f.get()) != png.size())
    throw io_error(detail::os_message(path, "cannot write", errno));
  if (std::fclose(f.release()) != 0) throw io_error(detail::os_message(path, "cannot write", errno));
}

} // namespace io
} // namespace v0_1
} // namespace membound
