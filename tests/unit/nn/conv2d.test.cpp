// SPDX-License-Identifier: MIT
// nn/conv2d.hpp: dense (incl. pointwise and 7x7), depthwise (3x3, 5x5 stride 2, input narrower
// than the kernel) against torch.nn.functional.conv2d with bias and activation, BatchNorm folding
// against conv + BatchNorm2d in eval mode (tools/make_nn_layer_fixtures.py), and bad settings.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/nn/conv2d.hpp"
#include "fixtures.hpp"

using namespace membound;

using test::check_close;
using test::fill;

namespace {
nlohmann::json fixtures() { return test::layer_fixtures(); }
nn::activation act_of(const std::string& s) {
  for (auto a : {nn::activation::identity, nn::activation::relu, nn::activation::gelu_tanh, nn::activation::gelu_erf,
                 nn::activation::silu, nn::activation::sigmoid})
    if (nn::activation_name(a) == s) return a;
  FAIL("unknown activation " << s);
  return nn::activation::identity;
}

/// The SIMD conv kernels sum the taps in the scalar twin's order with fused multiply-adds, so where
/// the backend has FMA (AVX2 + FMA, AVX-512) they equal the twin bit for bit. SSE4.2 has no FMA:
/// each multiply-add rounds twice there, and the two agree within 1e-4 + 1e-5 |twin| (a wrong tap
/// or row is off by O(1) on these N(0,1) inputs).
bool equals_twin(const float* twin, const float* simd, std::size_t n) {
#if defined(__FMA__)
  return std::memcmp(twin, simd, n * sizeof(float)) == 0;
#else
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(twin[i]) && std::isnan(simd[i])) continue;
    if (!(std::fabs(twin[i] - simd[i]) <= 1e-4f + 1e-5f * std::fabs(twin[i]))) return false;
  }
  return true;
#endif
}
} // namespace

TEST_CASE("conv2d matches PyTorch: dense, pointwise, depthwise, strides, padding, activations") {
  std::mt19937 gen(1);
  const auto all = fixtures(); // keep the document alive for the loop
  REQUIRE(all["conv2d"].size() == 6);
  for (const auto& c : all["conv2d"]) {
    nn::conv2d_config cfg;
    cfg.in_channels = c["cin"];
    cfg.out_channels = c["cout"];
    cfg.kernel = c["k"];
    cfg.stride = c["stride"];
    cfg.padding = c["pad"];
    cfg.groups = c["groups"];
    cfg.act = act_of(c["act"]);
    CAPTURE(cfg.kernel);
    CAPTURE(cfg.groups);
    nn::parameters p;
    auto conv = nn::conv2d::make(p, "conv", cfg, gen);
    fill(conv.weight, c["w"]);
    fill(conv.bias, c["b"]);
    const auto xs = c["x_shape"].get<std::vector<index_t>>(), ys = c["y_shape"].get<std::vector<index_t>>();
    array<float> x(xs), y(ys); // (B,C_in,H,W) (B,C_out,Ho,Wo)
    fill(x.view(), c["x"]);
    CHECK(conv.out_extent(xs[2]) == ys[2]);
    CHECK(conv.out_extent(xs[3]) == ys[3]);
    for (auto algo : {nn::conv2d_algorithm::automatic, nn::conv2d_algorithm::direct, nn::conv2d_algorithm::im2col}) {
      CAPTURE(static_cast<int>(algo));
      conv.cfg.algorithm = algo;
      conv.forward(x.cview(), y.view());
      check_close(y.cview(), c["y"]);
      conv.forward<backend::scalar>(x.cview(), y.view());
      check_close(y.cview(), c["y"]);
    }
  }
}

TEST_CASE("conv2d kernels: SIMD equals the scalar twin bit for bit (same summation order)") {
  // Widths around the vector length (block overlap, rows narrower than a vector), every kernel
  // size, both strides, all paddings, several channel counts (output-channel blocks of 4 + rest).
  std::mt19937 gen(7);
  std::normal_distribution<float> nd;
  for (index_t k = 1; k <= 7; ++k)
    for (index_t s : std::initializer_list<index_t>{1, 2})
      for (index_t pad = 0; pad < k; pad += (k > 3 ? 2 : 1))
        for (index_t w : std::initializer_list<index_t>{k, 5, 16, 17, 22, 23, 26, 34, 40, 57}) {
          if (w + 2 * pad < k) continue;
          const index_t h = 9, cin = 1 + (w % 3), cout = w % 2 == 0 ? 16 * (1 + (w / 2) % 5) : 1 + (w % 6);
          const cpu::conv_geometry g{h, w, k, s, pad};
          CAPTURE(k);
          CAPTURE(s);
          CAPTURE(pad);
          CAPTURE(w);
          const index_t ho = g.out_h(), wo = g.out_w();
          std::vector<float> x(static_cast<std::size_t>(cin * h * w)), wt(static_cast<std::size_t>(cout * cin * k * k)),
              bias(static_cast<std::size_t>(cout));
          for (auto* v : {&x, &wt, &bias})
            for (float& e : *v) e = nd(gen);
          std::vector<float> scratch(static_cast<std::size_t>(std::max(cpu::conv_scratch_floats<>(g, cin, cout), cpu::depthwise_scratch_floats<>(g))), std::nanf(""));
          std::vector<float> y0(static_cast<std::size_t>(cout * ho * wo)), y1(y0.size(), std::nanf(""));
          cpu::conv2d_direct<backend::scalar>(x.data(), cin, wt.data(), bias.data(), y0.data(), cout, g, nullptr);
          cpu::conv2d_direct<>(x.data(), cin, wt.data(), bias.data(), y1.data(), cout, g, scratch.data());
          CHECK(equals_twin(y0.data(), y1.data(), y0.size()));
          // depthwise: channel 0's plane with the first filter
          std::vector<float> d0(static_cast<std::size_t>(ho * wo)), d1(d0.size(), std::nanf(""));
          cpu::depthwise_conv2d<backend::scalar>(x.data(), wt.data(), bias[0], d0.data(), g, nullptr);
          cpu::depthwise_conv2d<>(x.data(), wt.data(), bias[0], d1.data(), g, scratch.data());
          CHECK(equals_twin(d0.data(), d1.data(), d0.size()));
          // depthwise over many channels (AVX-512 stride 1: groups of 16 interleaved channels + rest)
          const index_t nch = 16 + (w % 3) * 9 + (w % 2) * 16; // 16 .. 50
          std::vector<float> xc(static_cast<std::size_t>(nch * h * w)), wc(static_cast<std::size_t>(nch * k * k)),
              bc(static_cast<std::size_t>(nch));
          for (auto* v : {&xc, &wc, &bc})
            for (float& e : *v) e = nd(gen);
          std::vector<float> dscr(static_cast<std::size_t>(cpu::depthwise_scratch_floats<>(g)), std::nanf(""));
          std::vector<float> e0(static_cast<std::size_t>(nch * ho * wo)), e1(e0.size(), std::nanf(""));
          cpu::depthwise_conv2d_planes<backend::scalar>(xc.data(), nch, wc.data(), bc.data(), e0.data(), g, nullptr);
          cpu::depthwise_conv2d_planes<>(xc.data(), nch, wc.data(), bc.data(), e1.data(), g, dscr.data());
          CHECK(equals_twin(e0.data(), e1.data(), e0.size()));
        }
  {
    // An output of 8 MiB takes the streaming-store path of the grouped depthwise kernel.
    const cpu::conv_geometry g{256, 256, 3, 1, 1};
    const index_t ch = 32;
    array<float> x({ch, 256, 256}), w({ch, 3, 3}), b({ch}), y0({ch, 256, 256}), y1({ch, 256, 256}); // (C,H,W) (C,k,k) (C)
    for (auto* v : {&x, &w, &b})
      for (float& e : v->view().span()) e = nd(gen);
    array<float> scratch({cpu::depthwise_scratch_floats<>(g)}); // (n)
    cpu::depthwise_conv2d_planes<backend::scalar>(x.data(), ch, w.data(), b.data(), y0.data(), g, nullptr);
    cpu::depthwise_conv2d_planes<>(x.data(), ch, w.data(), b.data(), y1.data(), g, scratch.data());
    CHECK(equals_twin(y0.data(), y1.data(), static_cast<std::size_t>(y0.size())));
  }
  {
    // Batches (the filters repeat per image) through both AVX-512 stride-1 kernels: rows of 56
    // and 28 run the rolling-row kernel (one pass of 4 or 2 vectors), rows of 7 the interleaved
    // one; 7x7 planes of 6 MiB in all stay cached, 56x56 x 6 x 128 (9.6 MB) streams through the
    // staging buffer, whole lines at a time.
    struct batch_case {
      index_t b, ch, side, k;
    };
    // Rows of 8 and 9 (7x7) run AVX2's two filter-row bands over fewer output rows than a band.
    for (const batch_case bc : {batch_case{3, 20, 28, 5}, batch_case{2, 35, 7, 7}, batch_case{6, 128, 56, 7},
                                batch_case{4, 17, 30, 3}, batch_case{2, 9, 8, 7}, batch_case{1, 3, 9, 7}}) {
      const cpu::conv_geometry g{bc.side, bc.side, bc.k, 1, bc.k / 2};
      CAPTURE(bc.b);
      CAPTURE(bc.ch);
      CAPTURE(bc.side);
      CAPTURE(bc.k);
      array<float> x({bc.b, bc.ch, bc.side, bc.side}), w({bc.ch, bc.k, bc.k}), b({bc.ch}); // (B,C,H,W) (C,k,k) (C)
      array<float> y0({bc.b, bc.ch, bc.side, bc.side}), y1({bc.b, bc.ch, bc.side, bc.side}); // (B,C,H,W)
      for (auto* v : {&x, &w, &b})
        for (float& e : v->view().span()) e = nd(gen);
      std::fill_n(y1.data(), y1.size(), std::nanf(""));
      array<float> scratch({cpu::depthwise_scratch_floats<>(g)}); // (n)
      cpu::depthwise_conv2d_planes<backend::scalar>(x.data(), bc.ch, w.data(), b.data(), y0.data(), g, nullptr, bc.b);
      cpu::depthwise_conv2d_planes<>(x.data(), bc.ch, w.data(), b.data(), y1.data(), g, scratch.data(), bc.b);
      CHECK(equals_twin(y0.data(), y1.data(), static_cast<std::size_t>(y0.size())));
      // and image by image, through the one-image call
      const index_t img_in = bc.ch * bc.side * bc.side;
      for (index_t n = 0; n < bc.b; ++n)
        cpu::depthwise_conv2d_planes<>(x.data() + n * img_in, bc.ch, w.data(), b.data(), y1.data() + n * img_in, g,
                                       scratch.data());
      CHECK(equals_twin(y0.data(), y1.data(), static_cast<std::size_t>(y0.size())));
    }
  }
  {
    // Zero padding contributes w * 0 on every path: signed zeros (bias -0, negative weights, zero
    // input) and NaNs (an infinite weight against the padding) come out as in the scalar twin.
    // 7x7 covers the second filter-row band of AVX2 (a NaN in its rows, padding rows in both).
    // 4x4 and 5x5 take AVX2's 8-channel interleaved kernel.
    for (const auto& sk : {std::pair<index_t, index_t>{7, 5}, {28, 5}, {28, 7}, {9, 7}, {4, 3}, {5, 5}}) {
      const index_t side = sk.first, k = sk.second;
      CAPTURE(side);
      CAPTURE(k);
      const index_t kk = k * k, pad = k / 2;
      const cpu::conv_geometry g{side, side, k, 1, pad};
      const index_t ch = 16;
      std::vector<float> x(static_cast<std::size_t>(ch * side * side), 0.0f), w(static_cast<std::size_t>(ch * kk)),
          b(static_cast<std::size_t>(ch), -0.0f);
      for (index_t c = 0; c < ch; ++c)
        for (index_t t = 0; t < kk; ++t) {
          const index_t ky = t / k;
          float v = c % 2 == 0 ? -0.25f : (t % 3 == 0 ? 0.5f : -0.25f); // even channels: negative only
          if (c == 1) v = ky >= pad ? -0.25f : 0.5f; // output row 0: positive taps on the padding rows only
          w[static_cast<std::size_t>(c * kk + t)] = v;
        }
      w[kk * 3 + 7] = std::numeric_limits<float>::infinity();      // channel 3, filter row 1
      w[kk * 5 + kk - 2] = std::numeric_limits<float>::infinity(); // channel 5, the last filter row
      x[static_cast<std::size_t>(5 * side * side + side + 1)] = 2.0f; // channel 5: one nonzero
      std::vector<float> y0(x.size()), y1(x.size(), 1.0f), scratch(static_cast<std::size_t>(cpu::depthwise_scratch_floats<>(g)));
      cpu::depthwise_conv2d_planes<backend::scalar>(x.data(), ch, w.data(), b.data(), y0.data(), g, nullptr);
      cpu::depthwise_conv2d_planes<>(x.data(), ch, w.data(), b.data(), y1.data(), g, scratch.data());
      int nans = 0, neg_zeros = 0;
      for (std::size_t i = 0; i < y0.size(); ++i) {
        if (std::isnan(y0[i])) {
          ++nans;
          CHECK(std::isnan(y1[i]));
        } else {
          CHECK(std::bit_cast<std::uint32_t>(y0[i]) == std::bit_cast<std::uint32_t>(y1[i]));
        }
        neg_zeros += y0[i] == 0.0f && std::signbit(y0[i]) ? 1 : 0;
      }
      CHECK(nans > 0);      // inf * 0 (channel 3)
      CHECK(neg_zeros > 0); // even channels: -0 + (-0.25) * 0 + ... stays -0
      // channel 1, output (0,0): -0 + 0.5 * 0 (a padding row's tap) = +0, and the other taps keep it +0
      const float corner = y1[static_cast<std::size_t>(side * side)];
      CHECK(corner == 0.0f);
      CHECK_FALSE(std::signbit(corner));
    }
  }
  const cpu::conv_geometry bad{4, 4, 3, 3, 1};
  float dummy = 0;
  CHECK_THROWS_WITH_AS(cpu::depthwise_conv2d<>(&dummy, &dummy, 0.0f, &dummy, bad, &dummy), doctest::Contains("stride 3"),
                       config_error);
}

TEST_CASE("fold_batchnorm: conv + BatchNorm2d (eval) equals the folded conv") {
  const auto f = fixtures()["bn_fold"];
  std::mt19937 gen(2);
  nn::conv2d_config cfg;
  cfg.in_channels = 3;
  cfg.out_channels = 4;
  cfg.kernel = 3;
  cfg.padding = 1;
  nn::parameters p;
  auto conv = nn::conv2d::make(p, "conv", cfg, gen);
  fill(conv.weight, f["w"]);
  fill(conv.bias, f["b"]);
  auto stat = [&](const char* k) {
    std::vector<float> v;
    for (double d : f[k].get<std::vector<double>>()) v.push_back(static_cast<float>(d));
    return v;
  };
  const auto g = stat("gamma"), b = stat("beta"), m = stat("mean"), v = stat("var");
  nn::fold_batchnorm(conv, g, b, m, v, f["eps"].get<float>());
  array<float> x({1, 3, 5, 5}), y({1, 4, 5, 5}); // (B,C_in,H,W) (B,C_out,H,W)
  fill(x.view(), f["x"]);
  conv.forward(x.cview(), y.view());
  check_close(y.cview(), f["y"], 5e-5);
  CHECK_THROWS_AS(nn::fold_batchnorm(conv, std::span<const float>(g).first(3), b, m, v), shape_error);
}

TEST_CASE("conv2d: unsupported settings and bad shapes are typed errors naming them") {
  std::mt19937 gen(3);
  nn::parameters p;
  nn::conv2d_config cfg;
  cfg.in_channels = 4;
  cfg.out_channels = 8;
  cfg.kernel = 9;
  CHECK_THROWS_WITH_AS(nn::conv2d::make(p, "a", cfg, gen), doctest::Contains("kernel 9"), config_error);
  cfg.kernel = 3;
  cfg.stride = 3;
  CHECK_THROWS_WITH_AS(nn::conv2d::make(p, "b", cfg, gen), doctest::Contains("stride 3"), config_error);
  cfg.stride = 1;
  cfg.groups = 2;
  CHECK_THROWS_WITH_AS(nn::conv2d::make(p, "c", cfg, gen), doctest::Contains("groups 2"), config_error);
  cfg.groups = 1;
  cfg.padding = 3;
  CHECK_THROWS_WITH_AS(nn::conv2d::make(p, "d", cfg, gen), doctest::Contains("padding 3"), config_error);
  cfg.padding = 1;
  auto conv = nn::conv2d::make(p, "e", cfg, gen);
  array<float> x({1, 3, 5, 5}), y({1, 8, 5, 5}); // wrong C_in
  CHECK_THROWS_WITH_AS(conv.forward(x.cview(), y.view()), doctest::Contains("(B,4,H,W)"), shape_error);
  array<float> x4({1, 4, 5, 5}), ybad({1, 8, 4, 5});
  CHECK_THROWS_WITH_AS(conv.forward(x4.cview(), ybad.view()), doctest::Contains("(1,8,5,5)"), shape_error);
}
