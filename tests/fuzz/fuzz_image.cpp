// SPDX-License-Identifier: MIT
// libFuzzer target for the image decoder (io::decode_image: PNG and JPEG through stb_image).
// Every input must either decode or throw a membound::error; anything else (a crash, a sanitizer
// report, another exception type such as std::bad_alloc) is a bug. The pixel bound is lowered to
// 2^20 so that a small input claiming a large image (stb fills what is missing) stays fast; the
// bound itself is checked from the header before decoding, as with the default 2^26.
// For inputs that decode it checks the result's size and, for small images, that a PNG round
// trip (io::encode_png, then decode_image) gives the same pixels, and runs the resampler on it.
// Note: stb's implementation comes from the linked libstb, which is not instrumented: libFuzzer
// gets no coverage inside stb and ASan checks only the allocations, not stb's own reads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "membound/io/image.hpp"
#include "membound/vision/preprocess.hpp"

using namespace membound;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  try {
    const io::image img = io::decode_image(in, "fuzz input", index_t{1} << 20);
    check(img.height >= 1 && img.width >= 1 && img.height * img.width <= (index_t{1} << 20));
    check(img.pixels.size() == static_cast<std::size_t>(img.height * img.width * 3));
    if (img.height * img.width <= 4096) {
      check(io::decode_image(io::encode_png(img), "round trip") == img);
      const io::image r = vision::resize_bicubic(img, 1 + img.height % 7, 1 + img.width % 11);
      check(r.pixels.size() == static_cast<std::size_t>(r.height * r.width * 3));
    }
  } catch (const membound::error&) {
  }
  return 0;
}
