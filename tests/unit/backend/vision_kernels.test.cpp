// SPDX-License-Identifier: MIT
// The kernels vision/ added to backend/: cpu::tile_attention (cascaded group attention's inner
// product-softmax-product on a token tile) and cpu::depthwise_conv2d_strided (depthwise planes
// at any channel stride), each against its scalar twin on odd sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "membound/backend/cpu/conv.hpp"
#include "membound/backend/cpu/tile_attention.hpp"

using namespace membound;

TEST_CASE("backend: tile_attention equals its scalar twin on odd sizes") {
  std::mt19937 gen(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (index_t n : {1, 5, 16, 17, 49, 64})
    for (index_t d : {1, 7, 32}) {
      const index_t kd = 16, ld = n + 3, ldb = cpu::tile_attention_bias_stride(n);
      std::vector<float> q(kd * ld), k(kd * ld), v(d * ld), bias(n * ldb, 0.0f), o1(d * ld, 0.0f), o2(d * ld, 0.0f);
      for (auto* a : {&q, &k, &v})
        for (float& x : *a) x = nd(gen);
      for (index_t m = 0; m < n; ++m)
        for (index_t j = 0; j < n; ++j) bias[m * ldb + j] = nd(gen);
      std::vector<float> scratch(cpu::tile_attention_scratch_floats(n, kd));
      cpu::tile_attention(n, kd, d, q.data(), ld, k.data(), ld, v.data(), ld, bias.data(), ldb, o1.data(), ld,
                          scratch.data());
      cpu::tile_attention<backend::scalar>(n, kd, d, q.data(), ld, k.data(), ld, v.data(), ld, bias.data(), ldb,
                                           o2.data(), ld, nullptr);
      double worst = 0.0;
      for (index_t c = 0; c < d; ++c)
        for (index_t j = 0; j < ld; ++j) {
          if (j >= n) CHECK(o1[c * ld + j] == 0.0f); // nothing written past N
          worst = std::max(worst, double(std::fabs(o1[c * ld + j] - o2[c * ld + j])));
        }
      CAPTURE(n);
      CAPTURE(d);
      CHECK(worst <= 1e-5);
    }
  std::vector<float> big(16 * 80 * 4, 1.0f), scratch(cpu::tile_attention_scratch_floats(64, 16));
  CHECK_THROWS_AS(cpu::tile_attention(65, 16, 4, big.data(), 80, big.data(), 80, big.data(), 80, big.data(), 80,
                                      big.data() + 16 * 80 * 3, 80, scratch.data()),
                  shape_error);
}

TEST_CASE("backend: depthwise_conv2d_strided equals the scalar twin at any channel stride") {
  // Channel counts of 8 or more run the channel-interleaved kernels on AVX2 (8 at a time, any
  // kernel size, padding and stride) and AVX-512 (16 at a time, stride 1); the rest plane by plane.
  std::mt19937 gen(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (index_t channels : {1, 8, 16, 21, 35})
    for (index_t side : {1, 4, 7, 9, 14})
      for (index_t k : {1, 2, 3, 4, 5, 7})
        for (index_t pad = 0; pad < k; pad += std::max<index_t>(1, k / 2)) // 0, about k/2, k-1
        for (index_t stride : {1, 2}) {
          if (side + 2 * pad < k) continue;
          const cpu::conv_geometry g{side, side + 1, k, stride, pad};
          const index_t pin = g.h * g.w, pout = g.out_h() * g.out_w(), xs = 3 * pin + 5, ys = 2 * pout + 3;
          std::vector<float> x(channels * xs), w(channels * k * k), b(channels), y1(channels * ys, -7.0f),
              y2(channels * ys, -7.0f);
          for (float& v : x) v = nd(gen);
          for (float& v : w) v = nd(gen);
          for (float& v : b) v = nd(gen);
          std::vector<float> scratch(cpu::depthwise_scratch_floats(g));
          cpu::depthwise_conv2d_strided(x.data(), channels, xs, w.data(), b.data(), y1.data(), ys, g, scratch.data());
          cpu::depthwise_conv2d_strided<backend::scalar>(x.data(), channels, xs, w.data(), b.data(), y2.data(), ys, g,
                                                         nullptr);
          CAPTURE(channels);
          CAPTURE(side);
          CAPTURE(k);
          CAPTURE(pad);
          CAPTURE(stride);
          double worst = 0.0;
          for (std::size_t i = 0; i < y1.size(); ++i) worst = std::max(worst, double(std::fabs(y1[i] - y2[i])));
#if MEMBOUND_HAS_AVX2
          CHECK(worst == 0.0); // same sum order with FMA: bit for bit
#else
          CHECK(worst <= 1e-4);
#endif
        }
  std::vector<float> x(64), y(64), w(9);
  CHECK_THROWS_AS(cpu::depthwise_conv2d_strided(x.data(), 2, 10, w.data(), nullptr, y.data(), 16, {4, 4, 3, 1, 1}, nullptr),
                  shape_error);
}
