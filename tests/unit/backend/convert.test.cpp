// SPDX-License-Identifier: MIT
// Tests of backend/cpu/convert.hpp: every enabled backend against the scalar twin
// (bf16/f16::from_float / to_float) bit for bit: all 65,536 16-bit patterns -> f32; for f32 ->
// 16-bit a strided sample of the 2^32 patterns always, and all 2^32 when MEMBOUND_EXHAUSTIVE is 1
// (the scalar twin computed once per chunk of 2^16 patterns, then every backend compared with it).
#include <doctest/doctest.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "membound/backend/cpu/convert.hpp"
#include "membound/ref/ref.hpp"
#include "backends.hpp"

using namespace membound;

namespace {
using test::all_tags;

template <class T>
std::uint16_t bits16(T v) { return v.bits; }
std::uint32_t bits32(float v) { return std::bit_cast<std::uint32_t>(v); }

/// Compares cpu::convert<B> with the scalar twin on the float patterns in `src` (offset 0 and 1).
template <class B>
void check_narrow(const std::vector<float>& src) {
  std::vector<bf16> b(src.size() + 1), bw(src.size());
  std::vector<f16> h(src.size() + 1), hw(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) { bw[i] = bf16::from_float(src[i]); hw[i] = f16::from_float(src[i]); }
  for (std::size_t off : {0, 1}) {
    CAPTURE(off);
    cpu::convert<B>(src, std::span<bf16>(b.data() + off, src.size()));
    cpu::convert<B>(src, std::span<f16>(h.data() + off, src.size()));
    std::size_t bad_b = 0, bad_h = 0;
    for (std::size_t i = 0; i < src.size(); ++i) {
      bad_b += b[i + off].bits != bw[i].bits;
      bad_h += h[i + off].bits != hw[i].bits;
    }
    CHECK(bad_b == 0);
    CHECK(bad_h == 0);
  }
}
} // namespace

TEST_CASE_TEMPLATE_DEFINE("16 -> 32 bit: all 65,536 patterns match the scalar twin bit for bit", B, widen_id) {
  std::vector<bf16> b(65537);
  std::vector<f16> h(65537);
  for (std::uint32_t i = 0; i < 65536; ++i) { b[i + 1].bits = static_cast<std::uint16_t>(i); h[i + 1].bits = static_cast<std::uint16_t>(i); }
  std::vector<float> y(65537);
  for (std::size_t off : {0, 1}) { // off 1: unaligned source and destination
    CAPTURE(off);
    std::size_t bad_b = 0, bad_h = 0;
    cpu::convert<B>(std::span<const bf16>(b.data() + 1, 65536), std::span<float>(y.data() + off, 65536));
    for (std::uint32_t i = 0; i < 65536; ++i) bad_b += bits32(y[i + off]) != bits32(b[i + 1].to_float());
    cpu::convert<B>(std::span<const f16>(h.data() + 1, 65536), std::span<float>(y.data() + off, 65536));
    for (std::uint32_t i = 0; i < 65536; ++i) bad_h += bits32(y[i + off]) != bits32(h[i + 1].to_float());
    CHECK(bad_b == 0);
    CHECK(bad_h == 0);
  }
  SUBCASE("round trip 16 -> 32 -> 16 is the identity (NaN payloads quieted)") {
    std::vector<float> f(65536);
    std::vector<bf16> b2(65536);
    std::vector<f16> h2(65536);
    cpu::convert<B>(std::span<const bf16>(b.data() + 1, 65536), std::span<float>(f));
    cpu::convert<B>(std::span<const float>(f), std::span<bf16>(b2));
    std::size_t bad = 0;
    for (std::uint32_t i = 0; i < 65536; ++i) {
      const bool nan = (i & 0x7fffu) > 0x7f80u;
      bad += b2[i].bits != (nan ? (i | 0x40u) : i);
    }
    CHECK(bad == 0);
    cpu::convert<B>(std::span<const f16>(h.data() + 1, 65536), std::span<float>(f));
    cpu::convert<B>(std::span<const float>(f), std::span<f16>(h2));
    bad = 0;
    for (std::uint32_t i = 0; i < 65536; ++i) {
      const bool nan = (i & 0x7fffu) > 0x7c00u;
      bad += h2[i].bits != (nan ? (i | 0x200u) : i);
    }
    CHECK(bad == 0);
  }
}
TEST_CASE_TEMPLATE_APPLY(widen_id, all_tags);

TEST_CASE_TEMPLATE_DEFINE("32 -> 16 bit: a strided sample of all patterns matches the scalar twin", B, narrow_id) {
  std::vector<float> src;
  for (std::uint64_t p = 0; p < (1ull << 32); p += 65521) src.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(p)));
  // Every boundary of interest: around 0, subnormals, the f16 range ends, inf and NaN, each +-.
  for (std::uint32_t base : {0x00000000u, 0x00800000u, 0x33000000u, 0x33800000u, 0x38800000u, 0x387fe000u, 0x477fe000u,
                             0x477ff000u, 0x7f7fffffu, 0x7f800000u, 0x7fc00000u, 0x3f808000u})
    for (std::uint32_t d = 0; d < 4096; ++d) {
      src.push_back(std::bit_cast<float>(base + d - 2048u));
      src.push_back(std::bit_cast<float>((base + d - 2048u) | 0x80000000u));
    }
  check_narrow<B>(src);
}
TEST_CASE_TEMPLATE_APPLY(narrow_id, all_tags);

TEST_CASE("hand-derived conversions") {
  CHECK(bf16::from_float(1.f).bits == 0x3f80);
  CHECK(bf16::from_float(std::bit_cast<float>(0x3f808000u)).bits == 0x3f80); // tie -> even
  CHECK(bf16::from_float(std::bit_cast<float>(0x3f818000u)).bits == 0x3f82); // tie -> even (up)
  CHECK(bf16::from_float(std::bit_cast<float>(0x00012345u)).bits == 0x0001); // subnormal kept, not flushed
  CHECK(bf16::from_float(std::bit_cast<float>(0x7f800001u)).bits == 0x7fc0); // signalling NaN -> quiet
  CHECK(f16::from_float(65519.f).bits == 0x7bff);
  CHECK(f16::from_float(65520.f).bits == 0x7c00);                    // overflow -> inf
  CHECK(f16::from_float(std::ldexp(1.f, -24)).bits == 0x0001);       // smallest subnormal
  CHECK(f16::from_float(std::ldexp(1.f, -25)).bits == 0x0000);       // tie -> even (0)
  CHECK(f16::from_float(std::ldexp(1.5f, -25)).bits == 0x0001);
  // The same through every backend.
  const std::vector<float> x = {1.f, std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x00012345u), 65520.f,
                                std::ldexp(1.f, -24), std::ldexp(1.f, -25), std::numeric_limits<float>::quiet_NaN()};
  check_narrow<backend::best_cpu>(x);
}

#if MEMBOUND_EXHAUSTIVE
TEST_CASE("32 -> 16 bit: all 2^32 patterns match the scalar twin (default backend; others on 1/8)") {
  // Chunks of 2^16 patterns: the scalar twin once per chunk, then every SIMD backend compared with
  // it by memcmp. To stay within a few seconds single-threaded, the branchy scalar f16 twin runs on
  // the 2^31 non-negative patterns only and the negative half expects the same bits | 0x8000
  // (from_float treats the sign bit separately); that symmetry itself is checked on every 16th
  // negative chunk. The bf16 twin is cheap and runs on all 2^32 patterns.
  const auto t0 = std::chrono::steady_clock::now();
  constexpr std::size_t chunk = 1u << 16;
  std::vector<float> src(chunk);
  std::vector<std::uint16_t> want_b(chunk), want_h(chunk), pos_h(chunk);
  std::vector<bf16> got_b(chunk);
  std::vector<f16> got_h(chunk);
  std::size_t bad = 0, bad_symmetry = 0;
  std::uint32_t c = 0;
  auto compare = [&](auto tag) {
    using B = decltype(tag);
    // The default backend on every pattern; the narrower ones on every 8th chunk (and on the
    // strided sample and boundary ranges above), to keep the sweep within a few seconds.
    if constexpr (!std::is_same_v<B, backend::scalar>) {
      if (!std::is_same_v<B, backend::best_cpu> && c % 8 != 0) return;
      cpu::convert<B>(std::span<const float>(src), std::span<bf16>(got_b));
      cpu::convert<B>(std::span<const float>(src), std::span<f16>(got_h));
      bad += std::memcmp(got_b.data(), want_b.data(), chunk * 2) != 0;
      bad += std::memcmp(got_h.data(), want_h.data(), chunk * 2) != 0;
    }
  };
  for (c = 0; c < (1u << 15); ++c) {
    for (std::uint32_t sign : {0u, 0x80000000u}) {
      const std::uint32_t base = sign | (c << 16);
      for (std::size_t i = 0; i < chunk; ++i) {
        src[i] = std::bit_cast<float>(base + static_cast<std::uint32_t>(i));
        want_b[i] = bf16::from_float(src[i]).bits;
      }
      if (sign == 0) {
        for (std::size_t i = 0; i < chunk; ++i) pos_h[i] = want_h[i] = f16::from_float(src[i]).bits;
      } else {
        for (std::size_t i = 0; i < chunk; ++i) want_h[i] = static_cast<std::uint16_t>(pos_h[i] | 0x8000u);
        if (c % 16 == 0)
          for (std::size_t i = 0; i < chunk; ++i) bad_symmetry += f16::from_float(src[i]).bits != want_h[i];
      }
      std::apply([&](auto... tags) { (compare(tags), ...); }, all_tags{});
    }
  }
  CHECK(bad == 0);
  CHECK(bad_symmetry == 0);
  MESSAGE("exhaustive 2^32 sweep: ", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
}
#endif
