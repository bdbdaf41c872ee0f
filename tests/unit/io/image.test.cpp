// SPDX-License-Identifier: MIT
// Tests for io/image.hpp: decoding the fixtures of tools/make_image_fixtures.py (PNG RGB, grey,
// grey+alpha, RGBA; JPEG), the conversions to RGB against PIL's convert('RGB'), one typed error
// per kind of bad input (each naming the input), the pixel bound checked from the header before
// decoding, and PNG round trips through io::encode_png / io::write_png.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "membound/io/image.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

const fs::path images = fs::path(MEMBOUND_FIXTURES_DIR) / "vision" / "images";

std::vector<std::byte> file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> v(c.size());
  if (!c.empty()) std::memcpy(v.data(), c.data(), c.size());
  return v;
}
void write_bytes(const fs::path& p, std::span<const std::byte> b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// A per-test temporary folder, removed at the end.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& name) {
    path = fs::temp_directory_path() / ("membound_image_test_" + name + "_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// A PNG signature and an IHDR chunk claiming w x h 8-bit RGB, then an empty IDAT and IEND
/// (CRCs zero: stb does not check them).
std::vector<std::byte> png_header_only(std::uint32_t w, std::uint32_t h) {
  std::vector<unsigned char> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
  for (unsigned char c : {8, 2, 0, 0, 0}) b.push_back(c); // depth 8, RGB, deflate, filter 0, no interlace
  for (int i = 0; i < 4; ++i) b.push_back(0);              // CRC
  for (char c : {'\0', '\0', '\0', '\0', 'I', 'D', 'A', 'T', '\0', '\0', '\0', '\0', '\0', '\0', '\0', '\0', 'I', 'E', 'N', 'D',
                 '\0', '\0', '\0', '\0'})
    b.push_back(static_cast<unsigned char>(c));
  std::vector<std::byte> v(b.size());
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

} // namespace

TEST_CASE("io::decode_image: every fixture decodes to 8-bit RGB of the right size") {
  struct item {
    const char* name;
    index_t h, w;
  };
  for (const item& it : {item{"landscape_320x240.png", 240, 320}, item{"portrait_150x200.png", 200, 150},
                         item{"square_256x256.png", 256, 256}, item{"grey_160x120.png", 120, 160},
                         item{"rgba_120x160.png", 160, 120}, item{"la_16x12.png", 12, 16},
                         item{"landscape_320x240_q90.jpg", 240, 320}, item{"landscape_320x240_q90_444.jpg", 240, 320},
                         item{"landscape_320x240_ref224.png", 224, 224}}) {
    CAPTURE(it.name);
    const io::image img = io::read_image(images / it.name);
    CHECK(img.height == it.h);
    CHECK(img.width == it.w);
    CHECK(img.pixels.size() == static_cast<std::size_t>(it.h * it.w * 3));
    // the in-memory entry gives the same pixels
    CHECK(io::decode_image(file_bytes(images / it.name), it.name) == img);
  }
}

TEST_CASE("io::decode_image: grey, grey+alpha and RGBA convert as PIL's convert('RGB')") {
  for (const char* name : {"grey_160x120", "rgba_120x160", "la_16x12"}) {
    CAPTURE(name);
    const io::image img = io::read_image(images / (std::string(name) + ".png"));
    const io::image ref = io::read_image(images / (std::string(name) + "_rgb.png")); // PIL's conversion, RGB PNG
    CHECK(img == ref);
    if (std::string(name) != "rgba_120x160")
      for (index_t y = 0; y < img.height; ++y)
        for (index_t x = 0; x < img.width; ++x) {
          REQUIRE(img(y, x, 0) == img(y, x, 1));
          REQUIRE(img(y, x, 0) == img(y, x, 2));
        }
  }
}

TEST_CASE("io::decode_image: the fuzz seeds (palette + tRNS, 16-bit grey, progressive JPEG)") {
  const fs::path seeds = fs::path(MEMBOUND_FIXTURES_DIR) / ".." / "fuzz" / "corpus_image";
  for (const char* name : {"rgb_8x6.png", "palette_trns_5x4.png", "grey16_6x4.png", "q90_16x16.jpg", "progressive_16x8.jpg"}) {
    CAPTURE(name);
    const io::image img = io::read_image(seeds / name);
    CHECK(img.width >= 5);
  }
  // 16 bits are reduced to their high byte (PIL's I;16 -> RGB would clip at 255 instead)
  const io::image g = io::read_image(seeds / "grey16_6x4.png");
  REQUIRE(g.height == 4);
  REQUIRE(g.width == 6);
  for (index_t y = 0; y < 4; ++y)
    for (index_t x = 0; x < 6; ++x)
      for (index_t c = 0; c < 3; ++c) CHECK(g(y, x, c) == (((y * 6 + x) * 2731) >> 8));
}

TEST_CASE("io::image: construction, accessors, view") {
  io::image img(2, 3); // (2,3,3)
  CHECK(img.pixels.size() == 18);
  img(1, 2, 0) = 7;
  CHECK(img.at(1, 2, 0) == 7);
  CHECK(img.pixels[(1 * 3 + 2) * 3] == 7);
  const auto v = std::as_const(img).as_view(); // (2,3,3)
  CHECK(v.rank() == 3);
  CHECK(v.extent(0) == 2);
  CHECK(v.extent(1) == 3);
  CHECK(v.extent(2) == 3);
  CHECK(v(1, 2, 0) == 7);
  CHECK_THROWS_AS((void)img.at(2, 0, 0), lookup_error);
  CHECK_THROWS_AS((void)img.at(0, 0, 3), lookup_error);
  CHECK_THROWS_WITH_AS(io::image(0, 4), doctest::Contains("0 x 4"), shape_error);
  CHECK_THROWS_AS(io::image(io::image_max_pixels, 2), shape_error);
}

TEST_CASE("io::decode_image: bad inputs are format_errors naming the input") {
  const auto png = file_bytes(images / "landscape_320x240.png");
  const auto jpg = file_bytes(images / "landscape_320x240_q90.jpg");

  SUBCASE("empty") {
    CHECK_THROWS_WITH_AS(io::decode_image({}, "empty.png"), doctest::Contains("empty.png: empty input"), format_error);
  }
  SUBCASE("garbage") {
    std::vector<std::byte> g(1000);
    std::mt19937 rng(5);
    for (auto& b : g) b = static_cast<std::byte>(rng() & 0xffu);
    g[0] = std::byte{'G'};
    CHECK_THROWS_WITH_AS(io::decode_image(g, "garbage.bin"),
                         doctest::Contains("garbage.bin: unsupported format (first bytes 0x47"), format_error);
    // a PNG signature followed by garbage: stb's reason is part of the message
    std::memcpy(g.data(), png.data(), 8);
    CHECK_THROWS_WITH_AS(io::decode_image(g, "garbage.png"), doctest::Contains("garbage.png: cannot read the PNG header: "),
                         format_error);
    // a GIF is a format stb knows but membound refuses
    const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    std::vector<std::byte> gb(sizeof gif - 1);
    std::memcpy(gb.data(), gif, gb.size());
    CHECK_THROWS_WITH_AS(io::decode_image(gb, "x.gif"), doctest::Contains("expected a PNG or JPEG"), format_error);
  }
  SUBCASE("truncated PNG, from memory and from a file") {
    const std::span<const std::byte> half(png.data(), png.size() / 2);
    CHECK_THROWS_WITH_AS(io::decode_image(half, "half.png"), doctest::Contains("half.png: truncated PNG"), format_error);
    temp_dir dir("trunc");
    const fs::path p = dir.path / "half.png";
    write_bytes(p, half);
    CHECK_THROWS_WITH_AS(io::read_image(p), doctest::Contains((p.string() + ": truncated PNG").c_str()), format_error);
    // every shorter prefix is refused too (no prefix is a complete PNG)
    for (std::size_t n = 1; n < png.size(); n += 97) {
      CAPTURE(n);
      CHECK_THROWS_AS(io::decode_image(std::span<const std::byte>(png.data(), n), "prefix"), format_error);
    }
  }
  SUBCASE("truncated JPEG") {
    CHECK_THROWS_WITH_AS(io::decode_image(std::span<const std::byte>(jpg.data(), jpg.size() / 2), "half.jpg"),
                         doctest::Contains("half.jpg: truncated JPEG"), format_error);
    // without its EOI marker (stb alone would decode this)
    CHECK_THROWS_WITH_AS(io::decode_image(std::span<const std::byte>(jpg.data(), jpg.size() - 2), "noeoi.jpg"),
                         doctest::Contains("noeoi.jpg: truncated JPEG"), format_error);
    for (std::size_t n = 1; n < jpg.size(); n += 89) {
      CAPTURE(n);
      CHECK_THROWS_AS(io::decode_image(std::span<const std::byte>(jpg.data(), n), "prefix"), format_error);
    }
  }
  SUBCASE("JPEG scans that read undefined tables (stb would read uninitialised memory)") {
    // turn the first segment with `marker` whose first payload byte passes `pick` into an APP4 segment
    const auto hide = [&](unsigned marker, auto pick) {
      auto bad = jpg;
      for (std::size_t pos = 2; pos + 4 < bad.size();) {
        REQUIRE(std::to_integer<unsigned>(bad[pos]) == 0xff);
        const unsigned m = std::to_integer<unsigned>(bad[pos + 1]);
        const std::size_t len = (std::to_integer<std::size_t>(bad[pos + 2]) << 8) | std::to_integer<std::size_t>(bad[pos + 3]);
        if (m == marker && pick(std::to_integer<unsigned>(bad[pos + 4]))) {
          bad[pos + 1] = std::byte{0xe4};
          return bad;
        }
        REQUIRE(m != 0xda); // the tables come before the first scan
        pos += 2 + len;
      }
      FAIL("no such segment");
      return bad;
    };
    const auto ac = hide(0xc4, [](unsigned tc_th) { return (tc_th >> 4) == 1; });
    CHECK_THROWS_WITH_AS(io::decode_image(ac, "noac.jpg"), doctest::Contains("noac.jpg: bad JPEG: a scan reads AC Huffman table"),
                         format_error);
    const auto dc = hide(0xc4, [](unsigned tc_th) { return (tc_th >> 4) == 0; });
    CHECK_THROWS_WITH_AS(io::decode_image(dc, "nodc.jpg"), doctest::Contains("nodc.jpg: bad JPEG: a scan reads DC Huffman table"),
                         format_error);
    const auto dq = hide(0xdb, [](unsigned) { return true; });
    CHECK_THROWS_WITH_AS(io::decode_image(dq, "nodqt.jpg"), doctest::Contains("nodqt.jpg: bad JPEG: component"), format_error);
  }
  SUBCASE("corrupt compressed data: stb's reason") {
    auto bad = png;
    // the first IDAT's zlib header
    std::size_t pos = 8;
    while (std::memcmp(bad.data() + pos + 4, "IDAT", 4) != 0) {
      const auto len = (std::to_integer<std::size_t>(bad[pos]) << 24) | (std::to_integer<std::size_t>(bad[pos + 1]) << 16) |
                       (std::to_integer<std::size_t>(bad[pos + 2]) << 8) | std::to_integer<std::size_t>(bad[pos + 3]);
      pos += 12 + len;
    }
    bad[pos + 8] = std::byte{0xff};
    bad[pos + 9] = std::byte{0xff};
    CHECK_THROWS_WITH_AS(io::decode_image(bad, "zlib.png"), doctest::Contains("zlib.png: cannot decode the PNG: "),
                         format_error);
  }
  SUBCASE("missing file: io_error as the safetensors reader") {
    const fs::path p = images / "no_such_image.png";
    CHECK_THROWS_WITH_AS(io::read_image(p), doctest::Contains(p.string().c_str()), io_error);
    CHECK_THROWS_AS(io::read_image(images), io_error); // a directory
  }
}

TEST_CASE("io::decode_image: the pixel bound is checked from the header, before decoding") {
  const auto huge = png_header_only(100000, 100000);
  CHECK_THROWS_WITH_AS(io::decode_image(huge, "huge.png"),
                       doctest::Contains("huge.png: 100000 x 100000 pixels (W x H) exceeds the bound of 67108864"),
                       format_error);
  // under stb's own 2^30-byte limit, so stb's header reader reports the size and ours refuses it
  CHECK_THROWS_WITH_AS(io::decode_image(png_header_only(10000, 10000), "big.png"),
                       doctest::Contains("big.png: 10000 x 10000 pixels (W x H) exceeds the bound"), format_error);
  // a JPEG frame header (SOF0) claiming 60000 x 60000, 3 components
  const unsigned char sof[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0xea, 0x60, 0xea, 0x60, 0x03, 0x01, 0x22,
                               0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xd9};
  std::vector<std::byte> jpeg(sizeof sof);
  std::memcpy(jpeg.data(), sof, sizeof sof);
  CHECK_THROWS_WITH_AS(io::decode_image(jpeg, "huge.jpg"), doctest::Contains("huge.jpg: 60000 x 60000 pixels (W x H) exceeds the bound"),
                       format_error);
  // the same header at 8 x 8 passes the bound and fails later, on the empty IDAT
  CHECK_THROWS_WITH_AS(io::decode_image(png_header_only(8, 8), "small.png"), doctest::Contains("cannot decode the PNG"),
                       format_error);
  // a caller's smaller bound
  const auto png = file_bytes(images / "landscape_320x240.png");
  CHECK_THROWS_WITH_AS(io::decode_image(png, "land.png", 320 * 240 - 1), doctest::Contains("exceeds the bound of 76799"),
                       format_error);
  CHECK(io::decode_image(png, "land.png", 320 * 240).width == 320);
  CHECK_THROWS_AS(io::decode_image(png, "land.png", 0), config_error);
  CHECK_THROWS_AS(io::decode_image(png, "land.png", io::image_max_pixels + 1), config_error);
}

TEST_CASE("io::encode_png / io::write_png: round trips") {
  io::image img(37, 53); // (37,53,3)
  std::mt19937 rng(3);
  for (auto& p : img.pixels) p = static_cast<std::uint8_t>(rng() & 0xffu);
  CHECK(io::decode_image(io::encode_png(img), "encoded") == img);

  const io::image fixture = io::read_image(images / "portrait_150x200.png");
  temp_dir dir("write");
  const fs::path p = dir.path / "out.png";
  io::write_png(p, fixture);
  CHECK(io::read_image(p) == fixture);
  io::write_png(p, img); // replaces
  CHECK(io::read_image(p) == img);

  CHECK_THROWS_WITH_AS(io::write_png(dir.path / "no_dir" / "x.png", img), doctest::Contains("no_dir"), io_error);
  io::image broken = img;
  broken.pixels.pop_back();
  CHECK_THROWS_AS((void)io::encode_png(broken), shape_error);
  CHECK_THROWS_AS((void)io::encode_png(io::image{}), shape_error);
}
