// SPDX-License-Identifier: MIT
// Tests for vision/preprocess.hpp against PIL 9.4 + torchvision 0.14 (fixtures of
// tools/make_image_fixtures.py): PIL's bicubic resampler bit for bit (the 224 x 224 pipeline
// outputs and two plain resizes), torchvision's size rule and crop offsets, ToTensor + Normalize
// against sampled float32 values, stb's JPEG decoder against PIL's (libjpeg-turbo), bad inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/core/array.hpp"
#include "membound/io/image.hpp"
#include "membound/vision/preprocess.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

const fs::path images = fs::path(MEMBOUND_FIXTURES_DIR) / "vision" / "images";

nlohmann::json meta() {
  std::ifstream f(images / "preprocess.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

struct diff_stats {
  int max = 0;
  double mean = 0;
  std::size_t differing = 0;
};
diff_stats compare(const io::image& a, const io::image& b) {
  REQUIRE(a.height == b.height);
  REQUIRE(a.width == b.width);
  diff_stats d;
  double sum = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) {
    const int e = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    d.max = std::max(d.max, e);
    sum += e;
    d.differing += e != 0;
  }
  d.mean = sum / static_cast<double>(a.pixels.size());
  return d;
}

} // namespace

TEST_CASE("vision::resize_bicubic + center_crop equal PIL + torchvision (uint8, every level)") {
  const auto m = meta();
  const vision::eval_transform t;
  for (const char* name : {"landscape_320x240", "portrait_150x200", "square_256x256", "grey_160x120", "rgba_120x160"}) {
    CAPTURE(name);
    const auto& e = m["pipeline"][name];
    const io::image src = io::read_image(images / (std::string(name) + ".png"));
    const auto [h, w] = t.resized_size(src.height, src.width);
    CHECK(h == e["resized"][0].get<index_t>());
    CHECK(w == e["resized"][1].get<index_t>());
    const io::image ours = t.resize_and_crop(src);
    const io::image ref = io::read_image(images / (std::string(name) + "_ref224.png"));
    const diff_stats d = compare(ours, ref);
    MESSAGE(std::string(name), ": resize ", src.height, "x", src.width, " -> ", h, "x", w, " + crop 224 vs PIL: max |diff| ", d.max,
            " levels, ", d.differing, " samples differ");
    CHECK(d.max == 0); // bit-exact with PIL (the requirement is <= 1 level)
  }
}

TEST_CASE("vision::resize_bicubic: strong downscale and mixed up/down scale equal PIL") {
  const io::image src = io::read_image(images / "landscape_320x240.png");
  for (const auto& hw : {std::pair<index_t, index_t>{53, 77}, {31, 500}}) {
    const index_t h = hw.first, w = hw.second;
    CAPTURE(h);
    CAPTURE(w);
    const io::image ref = io::read_image(images / ("landscape_320x240_resize_" + std::to_string(w) + "x" +
                                                   std::to_string(h) + ".png"));
    CHECK(compare(vision::resize_bicubic(src, h, w), ref).max == 0);
  }
  CHECK(vision::resize_bicubic(src, 240, 320) == src); // unchanged size: a copy, as PIL
  // one axis only: the other is not resampled
  const io::image wide = vision::resize_bicubic(src, 240, 100);
  CHECK(wide.height == 240);
  CHECK(wide.width == 100);
}

TEST_CASE("vision::eval_transform: ToTensor + Normalize equal torchvision's float32 values") {
  const auto m = meta();
  const vision::eval_transform t;
  for (const char* name : {"landscape_320x240", "portrait_150x200"}) {
    CAPTURE(name);
    const auto& e = m["pipeline"][name];
    array<float> out({3, 224, 224}); // (3,224,224)
    vision::load_image(images / (std::string(name) + ".png"), t, out.view());
    double max_err = 0;
    for (const auto& s : e["samples"]) {
      const float got = out.view()(s[0].get<index_t>(), s[1].get<index_t>(), s[2].get<index_t>());
      max_err = std::max(max_err, std::abs(double(got) - s[3].get<double>()));
    }
    MESSAGE(std::string(name), ": max |ours - torchvision| over ", e["samples"].size(), " samples: ", max_err);
    CHECK(max_err == 0.0); // float32 bit for bit
    for (index_t c = 0; c < 3; ++c) {
      double sum = 0;
      for (index_t y = 0; y < 224; ++y)
        for (index_t x = 0; x < 224; ++x) sum += out.view()(c, y, x);
      CHECK(sum / (224.0 * 224.0) == doctest::Approx(e["channel_mean"][static_cast<std::size_t>(c)].get<double>()).epsilon(1e-9));
    }
    // (1, 3, 224, 224) and a strided destination give the same values
    array<float> batch({2, 3, 224, 224}); // (B,3,224,224)
    vision::load_image(images / (std::string(name) + ".png"), t, batch.view().slice(0, 1, 2));
    array<float> wide({3, 224, 448}); // (3,224,448)
    vision::load_image(images / (std::string(name) + ".png"), t, wide.view().slice(2, 100, 324));
    for (index_t c = 0; c < 3; ++c)
      for (index_t y = 0; y < 224; y += 7)
        for (index_t x = 0; x < 224; x += 5) {
          REQUIRE(batch.view()(1, c, y, x) == out.view()(c, y, x));
          REQUIRE(wide.view()(c, y, x + 100) == out.view()(c, y, x));
        }
  }
}

TEST_CASE("vision: torchvision's size rule and crop offsets") {
  const vision::eval_transform t;
  CHECK(t.resized_size(240, 320) == std::array<index_t, 2>{256, 341}); // int(256 * 320 / 240) = 341
  CHECK(t.resized_size(200, 150) == std::array<index_t, 2>{341, 256});
  CHECK(t.resized_size(256, 256) == std::array<index_t, 2>{256, 256});
  CHECK(t.resized_size(100, 100) == std::array<index_t, 2>{256, 256});
  CHECK(t.resized_size(375, 500) == std::array<index_t, 2>{256, 341});
  CHECK(t.resized_size(3, 1000) == std::array<index_t, 2>{256, 85333});
  // crop offsets: round((H - h) / 2) with ties to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
  io::image img(8, 231); // (8,231,3): channel 0 holds x, channel 1 holds y
  for (index_t y = 0; y < 8; ++y)
    for (index_t x = 0; x < 231; ++x) {
      img(y, x, 0) = static_cast<std::uint8_t>(x);
      img(y, x, 1) = static_cast<std::uint8_t>(y);
    }
  const auto top_left = [&](index_t h, index_t w) {
    const io::image c = vision::center_crop(img, h, w);
    REQUIRE(c.height == h);
    REQUIRE(c.width == w);
    return std::array<int, 2>{c(0, 0, 1), c(0, 0, 0)};
  };
  CHECK(top_left(7, 230) == std::array<int, 2>{0, 0}); // round(0.5) = 0
  CHECK(top_left(5, 228) == std::array<int, 2>{2, 2}); // round(1.5) = 2
  CHECK(top_left(3, 226) == std::array<int, 2>{2, 2}); // round(2.5) = 2
  CHECK(top_left(1, 224) == std::array<int, 2>{4, 4}); // round(3.5) = 4
  CHECK(top_left(4, 227) == std::array<int, 2>{2, 2}); // exact halves
  CHECK(top_left(8, 1) == std::array<int, 2>{0, 115});
  CHECK(vision::center_crop(img, 8, 231) == img);
}

TEST_CASE("io::decode_image: stb's JPEG decoder against PIL's (libjpeg-turbo)") {
  // Measured on these fixtures (Debian's libstb 0.0~git20220908, stb_image 2.27, x86-64 SSE2
  // paths; PIL 9.4 with libjpeg-turbo 2.1), printed by the MESSAGE below:
  //   4:2:0 (PIL's default): max 3 levels, mean 0.091, 7% of the samples differ;
  //   4:4:4:                 max 2 levels, mean 0.013, 1.2% of the samples differ;
  // after resize + crop the same maxima. The differences come from stb's own IDCT rounding,
  // chroma upsampling and YCbCr conversion. Bound: max 4 levels, mean 0.25 (one level of room for
  // stb's scalar or NEON paths on other machines).
  const vision::eval_transform t;
  for (const char* name : {"landscape_320x240_q90", "landscape_320x240_q90_444"}) {
    CAPTURE(name);
    const io::image stb = io::read_image(images / (std::string(name) + ".jpg"));
    const io::image pil = io::read_image(images / (std::string(name) + "_pil.png"));
    const diff_stats d = compare(stb, pil);
    const diff_stats p = compare(t.resize_and_crop(stb), t.resize_and_crop(pil));
    MESSAGE(std::string(name), ": stb vs PIL decode: max |diff| ", d.max, " levels, mean ", d.mean, ", ", d.differing, " of ",
            stb.pixels.size(), " samples differ; after resize + crop: max ", p.max, ", mean ", p.mean);
    CHECK(d.max <= 4);
    CHECK(d.mean <= 0.25);
  }
}

TEST_CASE("vision: bad inputs") {
  const io::image small(100, 150); // (100,150,3)
  CHECK_THROWS_WITH_AS(vision::center_crop(small, 224, 224), doctest::Contains("crop 224 x 224 (H x W) does not fit the image of 100 x 150"),
                       shape_error);
  CHECK_THROWS_AS(vision::center_crop(small, 0, 10), shape_error);
  CHECK_THROWS_AS(vision::resize_bicubic(small, 0, 5), shape_error);
  CHECK_THROWS_AS(vision::resize_bicubic(io::image{}, 5, 5), shape_error);
  CHECK_THROWS_AS(vision::resize_bicubic(small, io::image_max_pixels, 2), shape_error);

  io::image broken = small;
  broken.pixels.resize(10);
  CHECK_THROWS_WITH_AS(vision::center_crop(broken, 5, 5), doctest::Contains("with 10 bytes"), shape_error);
  CHECK_THROWS_AS(vision::resize_bicubic(broken, 5, 5), shape_error);

  const vision::eval_transform t;
  CHECK_THROWS_AS((void)t.resize_and_crop(broken), shape_error);
  const io::image img(240, 320); // (240,320,3)
  array<float> bad({3, 224, 223}); // (3,224,223)
  CHECK_THROWS_WITH_AS(t(img, bad.view()), doctest::Contains("output view of shape (3, 224, 223); expected (3, 224, 224) or (1, 3, 224, 224)"),
                       shape_error);
  array<float> batch2({2, 3, 224, 224}); // (2,3,224,224)
  CHECK_THROWS_AS(t(img, batch2.view()), shape_error);
  CHECK_THROWS_AS(t.normalize(img, array<float>({3, 224, 224}).view()), shape_error); // not cropped

  vision::eval_transform bad_t;
  bad_t.crop = 300;
  CHECK_THROWS_WITH_AS(bad_t.validate(), doctest::Contains("resize 256, crop 300"), config_error);
  bad_t = {};
  bad_t.std[1] = 0.0f;
  CHECK_THROWS_WITH_AS(bad_t.validate(), doctest::Contains("channel 1"), config_error);
  CHECK_THROWS_AS(vision::load_image(images / "missing.png", t, array<float>({3, 224, 224}).view()), io_error);
}
