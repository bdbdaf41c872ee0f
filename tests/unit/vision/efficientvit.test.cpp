// SPDX-License-Identifier: MIT
// vision/: cascaded group attention, local window attention and EfficientViT-M0..M5 against timm
// 1.0.31's own modules (fixtures from tools/make_vision_fixtures.py). Both sides fill every tensor
// from the same counter formula (fnv1a64 of the name, splitmix64 of hash + index), so only the
// reference outputs are committed. Plus: timm's state-dict layout, parameter and MAC counts,
// BatchNorm folding, batch vs single, thread-count independence, weights from a file, bad input,
// and the tile-attention kernel against its scalar twin.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/vision/vision.hpp"

using namespace membound;

namespace {

const std::string fixtures = std::string(MEMBOUND_FIXTURES_DIR) + "/vision/";

// ---- the counter formula (tools/make_vision_fixtures.py) ---------------------------------------
std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
std::uint64_t splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
array<float> counter(const std::string& name, std::vector<index_t> shape, double lo, double hi) {
  array<float> a(std::span<const index_t>(shape.data(), shape.size()), uninitialized);
  const std::uint64_t h = fnv1a64(name);
  for (index_t j = 0; j < a.size(); ++j) {
    const double u = static_cast<double>(splitmix64(h + static_cast<std::uint64_t>(j)) >> 40) / 16777216.0;
    a.data()[j] = static_cast<float>(lo + (hi - lo) * u);
  }
  return a;
}
bool ends(const std::string& s, std::string_view suf) { return s.size() >= suf.size() && s.ends_with(suf); }
std::pair<double, double> range_of(const std::string& n, const std::vector<index_t>& shape) {
  if (ends(n, "running_var")) return {0.5, 1.5};
  if (ends(n, "running_mean")) return {-0.3, 0.3};
  if (ends(n, "bn.weight")) return {0.5, 1.5};
  if (ends(n, "bn.bias")) return {-0.3, 0.3};
  if (ends(n, "attention_biases")) return {-1.0, 1.0};
  if (ends(n, ".weight")) {
    index_t numel = 1;
    for (index_t e : shape) numel *= e;
    const double b = 1.0 / std::sqrt(static_cast<double>(numel / shape[0]));
    return {-b, b};
  }
  return {-0.1, 0.1};
}
// A counter-filled state dict for every float tensor of a timm state-dict listing (JSON).
vision::state_dict counter_state(const nlohmann::json& listing, const std::string& prefix) {
  vision::state_dict sd;
  for (const auto& e : listing) {
    const std::string name = e[0].get<std::string>();
    if (e[2].get<std::string>() != "float32") continue;
    const auto shape = e[1].get<std::vector<index_t>>();
    const auto [lo, hi] = range_of(name, shape);
    sd.set(prefix + name, counter(prefix + name, shape, lo, hi));
  }
  return sd;
}

const nlohmann::json& listing() {
  static const nlohmann::json j = [] {
    std::ifstream f(fixtures + "efficientvit_state_dicts.json");
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
  }();
  return j;
}
const io::safetensors& reference() {
  static const io::safetensors r = io::safetensors::open(fixtures + "efficientvit_reference.safetensors");
  return r;
}

double rel(const float* a, const float* b, index_t n) {
  double num = 0.0, den = 0.0;
  for (index_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / den;
}

vision::efficientvit<> counter_model(const vision::efficientvit_config& cfg) {
  return vision::efficientvit<>::from_state_dict(cfg, counter_state(listing()["models"][cfg.name]["state_dict"], ""));
}
array<float> counter_input() { return counter("input", {2, 3, 224, 224}, -2.0, 2.0); }

} // namespace

TEST_CASE("vision: the counter formula reproduces the fixture script's values bit for bit") {
  for (const auto& e : listing()["counter_examples"]) {
    const std::string name = e["name"].get<std::string>();
    const auto j = e["j"].get<index_t>();
    const array<float> a = counter(name, {j + 1}, e["lo"].get<double>(), e["hi"].get<double>());
    std::uint32_t bits = 0;
    std::memcpy(&bits, a.data() + j, 4);
    CHECK(bits == std::stoul(e["value_bits"].get<std::string>(), nullptr, 16));
  }
}

TEST_CASE("vision: the state-dict layout, parameter and MAC counts equal timm's and the published figures") {
  // Research note (efficientvit.md, Sec. 2.2): unfused / BN-folded parameters, MACs in millions.
  const std::int64_t params[6] = {2349436, 2980560, 4187554, 6900722, 8804228, 12473772};
  const std::int64_t fused[6] = {2334916, 2964256, 4168338, 6875890, 8776340, 12436260};
  const double mmacs[6] = {79.2, 167.1, 201.0, 262.7, 299.3, 521.6};
  int i = 0;
  for (const auto& cfg : vision::efficientvit_configs()) {
    CAPTURE(cfg.name);
    const auto& m = listing()["models"][cfg.name];
    std::vector<std::pair<std::string, std::vector<index_t>>> timm, ours;
    for (const auto& e : m["state_dict"])
      if (e[2].get<std::string>() == "float32") timm.emplace_back(e[0].get<std::string>(), e[1].get<std::vector<index_t>>());
    for (const auto& t : vision::efficientvit_state_spec(cfg)) ours.emplace_back(t.name, t.shape);
    CHECK(ours == timm);
    CHECK(vision::efficientvit_param_count(cfg, false) == m["param_count"].get<std::int64_t>());
    CHECK(vision::efficientvit_param_count(cfg, true) == m["fused_param_count"].get<std::int64_t>());
    CHECK(vision::efficientvit_param_count(cfg, false) == params[i]);
    CHECK(vision::efficientvit_param_count(cfg, true) == fused[i]);
    CHECK(vision::efficientvit_macs(cfg) == m["macs_224"]["total"].get<std::int64_t>());
    CHECK(std::round(vision::efficientvit_macs(cfg) / 1e5) / 10.0 == doctest::Approx(mmacs[i]));
    ++i;
  }
}

TEST_CASE("vision: cascaded_group_attention alone matches timm's CascadedGroupAttention") {
  const vision::state_dict sd = counter_state(listing()["cga"]["state_dict"], "cga.");
  auto op = vision::cascaded_group_attention<>::load({64, 16, 4, 1.0, {5, 5, 5, 5}, 7}, sd, "cga");
  const array<float> x = counter("cga.input", {2, 64, 7, 7}, -1.0, 1.0);
  array<float> y({2, 64, 7, 7});
  op.forward(x.cview(), y.view());
  const array<float> ref = reference().load<float>("cga.out");
  CHECK(rel(y.data(), ref.data(), y.size()) <= 1e-5);
}

TEST_CASE("vision: local_window_attention with padding (10x10 map, 7x7 windows) matches timm") {
  const vision::state_dict sd = counter_state(listing()["pad_attn"]["state_dict"], "pad_attn.");
  auto op = vision::local_window_attention<>::load({48, 16, 3, 1.0, {7, 5, 3}, 7}, 10, 7, sd, "pad_attn");
  CHECK(op.windowed());
  CHECK(op.windows_per_side() == 2);
  const array<float> x = counter("pad_attn.input", {2, 48, 10, 10}, -1.0, 1.0);
  array<float> y({2, 48, 10, 10});
  op.forward(x.cview(), y.view());
  const array<float> ref = reference().load<float>("pad_attn.out");
  CHECK(rel(y.data(), ref.data(), y.size()) <= 1e-5);
}

TEST_CASE("vision: every stage's window attention of M0 and M2 matches timm's on timm's inputs") {
  for (const char* name : {"m0", "m2"}) {
    const auto cfg = vision::efficientvit_by_name(name);
    const vision::state_dict sd = counter_state(listing()["models"][name]["state_dict"], "");
    for (int s = 0; s < 3; ++s) {
      CAPTURE(name);
      CAPTURE(s);
      const index_t c = cfg.embed_dim[s], h = cfg.heads[s];
      vision::cga_config a{c, 16, h, static_cast<double>(c) / (16.0 * h), {cfg.kernels.begin(), cfg.kernels.end()}, 7};
      const std::string p = "stages." + std::to_string(s) + ".blocks.0.mixer.m";
      auto op = vision::local_window_attention<>::load(a, cfg.stage_resolution(s), 7, sd, p);
      const std::string key = std::string(name) + ".stages." + std::to_string(s) + ".blocks.0.mixer.";
      const array<float> x = reference().load<float>(key + "in");
      array<float> y(x.extents());
      op.forward(x.cview(), y.view());
      const array<float> ref = reference().load<float>(key + "out");
      CHECK(rel(y.data(), ref.data(), y.size()) <= 1e-5);
    }
  }
}

TEST_CASE("vision: EfficientViT-M0..M5 logits match timm's (max|d| / max|ref| <= 1e-4)") {
  const array<float> x = counter_input();
  for (const auto& cfg : vision::efficientvit_configs()) {
    CAPTURE(cfg.name);
    auto model = counter_model(cfg);
    array<float> logits({2, 1000});
    model.forward(x.cview(), logits.view());
    const array<float> ref = reference().load<float>(cfg.name + ".logits");
    const double r = rel(logits.data(), ref.data(), logits.size());
    MESSAGE(cfg.name, ": max|d| / max|ref| = ", r);
    CHECK(r <= 1e-4);
    // With these weights the logits depend weakly on the image (per-channel constants from the
    // BatchNorm statistics dominate), so the image-dependent part is checked on its own: the
    // difference between the two images' logits matches timm's to 1e-2 of its size.
    array<float> d_ours({1000}), d_ref({1000});
    for (index_t k = 0; k < 1000; ++k) {
      d_ours.data()[k] = logits.data()[k] - logits.data()[1000 + k];
      d_ref.data()[k] = ref.data()[k] - ref.data()[1000 + k];
    }
    const double rd = rel(d_ours.data(), d_ref.data(), 1000);
    MESSAGE(cfg.name, ": image-difference max|d| / max|ref| = ", rd);
    CHECK(rd <= 1e-2);
  }
}

TEST_CASE("vision: folded Conv-BN equals the convolution followed by the BatchNorm (double reference)") {
  const vision::state_dict sd = counter_state(listing()["models"]["m0"]["state_dict"], "");
  // patch_embed.conv2: 8 -> 16 channels, 3x3, stride 2, pad 1 on a 9x11 input.
  const index_t cin = 8, cout = 16, h = 9, w = 11, ho = 5, wo = 6;
  const vision::folded_conv f = vision::fold_conv_bn(sd, "patch_embed.conv2", cin, cout, 3);
  nn::conv2d conv;
  conv.cfg = nn::conv2d_config{cin, cout, 3, 2, 1, 1, true, nn::activation::identity};
  conv.weight = make_view(const_cast<float*>(f.weight.data()), {cout, cin, 3, 3});
  conv.bias = make_view(const_cast<float*>(f.bias.data()), {cout});
  const array<float> x = counter("fold.input", {1, cin, h, w}, -1.0, 1.0);
  array<float> y({1, cout, ho, wo});
  conv.forward(x.cview(), y.view());
  const float* wt = sd.get("patch_embed.conv2.conv.weight", {cout, cin, 3, 3}).data();
  const float* g = sd.get("patch_embed.conv2.bn.weight", {cout}).data();
  const float* b = sd.get("patch_embed.conv2.bn.bias", {cout}).data();
  const float* m = sd.get("patch_embed.conv2.bn.running_mean", {cout}).data();
  const float* v = sd.get("patch_embed.conv2.bn.running_var", {cout}).data();
  double worst = 0.0;
  for (index_t o = 0; o < cout; ++o)
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox) {
        double acc = 0.0;
        for (index_t c = 0; c < cin; ++c)
          for (index_t ky = 0; ky < 3; ++ky)
            for (index_t kx = 0; kx < 3; ++kx) {
              const index_t iy = 2 * oy + ky - 1, ix = 2 * ox + kx - 1;
              if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                acc += double(wt[((o * cin + c) * 3 + ky) * 3 + kx]) * x.data()[(c * h + iy) * w + ix];
            }
        const double bn = (acc - m[o]) / std::sqrt(double(v[o]) + 1e-5) * g[o] + b[o];
        worst = std::max(worst, std::fabs(bn - y.data()[(o * ho + oy) * wo + ox]));
      }
  CHECK(worst <= 1e-5);
}

TEST_CASE("vision: an image gives the same logits alone as in a batch, and for 1, 2 and 3 threads") {
  auto model = counter_model(vision::efficientvit_m0());
  const array<float> x = counter_input();
  array<float> both({2, 1000}), one({1, 1000});
  model.forward(x.cview(), both.view());
  model.forward(make_view<const float>(x.data() + 3 * 224 * 224, {1, 3, 224, 224}), one.view());
  // Equal to rounding: the GEMM library's blocking depends on the column count (B H W), so the
  // last bits may differ between batch compositions (never between thread counts, below).
  CHECK(rel(one.data(), both.data() + 1000, 1000) <= 1e-6);
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  array<float> x4({4, 3, 224, 224});
  for (index_t i = 0; i < x4.size(); ++i) x4.data()[i] = x.data()[i % x.size()] * (i < x.size() ? 1.0f : -0.5f);
  array<float> ref({4, 1000}), got({4, 1000});
  omp_set_num_threads(1);
  model.forward(x4.cview(), ref.view());
  for (int t : {2, 3}) {
    omp_set_num_threads(t);
    model.forward(x4.cview(), got.view());
    CAPTURE(t);
    CHECK(std::memcmp(ref.data(), got.data(), sizeof(float) * 4000) == 0);
  }
  omp_set_num_threads(saved);
#endif
}

TEST_CASE("vision: weights load from safetensors under timm's names; bad weights are format_errors naming the tensor") {
  const auto cfg = vision::efficientvit_m0();
  vision::state_dict sd = counter_state(listing()["models"]["m0"]["state_dict"], "");
  const auto path = std::filesystem::temp_directory_path() / "membound_evit_m0.safetensors";
  sd.save(path);
  auto from_file = vision::efficientvit<>::load(cfg, path);
  auto from_sd = vision::efficientvit<>::from_state_dict(cfg, sd);
  const array<float> x = counter_input();
  array<float> a({2, 1000}), b({2, 1000});
  from_file.forward(x.cview(), a.view());
  from_sd.forward(x.cview(), b.view());
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * 2000) == 0);
  std::filesystem::remove(path);

  auto message = [&](const vision::state_dict& s, const vision::efficientvit_config& c) {
    try {
      (void)vision::efficientvit<>::from_state_dict(c, s);
    } catch (const format_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  { // missing
    vision::state_dict s;
    for (const auto& [n, t] : sd.tensors())
      if (n != "stages.1.blocks.0.ffn0.m.pw1.bn.running_var") s.set(n, t);
    CHECK(message(s, cfg).find("stages.1.blocks.0.ffn0.m.pw1.bn.running_var") != std::string::npos);
  }
  { // misshapen
    vision::state_dict s = sd;
    s.set("head.linear.weight", array<float>({999, 192}));
    const std::string m = message(s, cfg);
    CHECK(m.find("head.linear.weight") != std::string::npos);
    CHECK(m.find("[1000, 192]") != std::string::npos);
  }
  { // extra (an integer buffer such as attention_bias_idxs is skipped when reading a file)
    vision::state_dict s = sd;
    s.set("stages.0.blocks.0.extra", array<float>({3}));
    CHECK(message(s, cfg).find("stages.0.blocks.0.extra") != std::string::npos);
  }
  { // another configuration's weights name that configuration
    const vision::state_dict m2 = counter_state(listing()["models"]["m2"]["state_dict"], "");
    const std::string m = message(m2, vision::efficientvit_m4());
    CHECK(m.find("efficientvit_m2") != std::string::npos);
    CHECK(vision::efficientvit_detect(m2)->name == "m2");
  }
}

TEST_CASE("vision: bad input is a typed error naming what was expected") {
  auto model = vision::efficientvit<>::random(vision::efficientvit_m0(), 7);
  array<float> logits({1, 1000});
  array<float> small({1, 3, 192, 192}), gray({1, 1, 224, 224});
  CHECK_THROWS_WITH_AS(model.forward(small.cview(), logits.view()), doctest::Contains("(B,3,224,224)"), shape_error);
  CHECK_THROWS_WITH_AS(model.forward(gray.cview(), logits.view()), doctest::Contains("3 channels"), shape_error);
  array<float> x({1, 3, 224, 224}), wrong({1, 10});
  CHECK_THROWS_AS(model.forward(x.cview(), wrong.view()), shape_error);
  auto cfg = vision::efficientvit_m0();
  cfg.img_size = 200;
  CHECK_THROWS_WITH_AS((void)vision::efficientvit<>::random(cfg, 1), doctest::Contains("img_size 200"), config_error);
  CHECK_THROWS_WITH_AS((void)vision::efficientvit_by_name("m9"), doctest::Contains("m9"), config_error);
  CHECK_THROWS_AS(vision::cga_config({64, 16, 4, 0.5, {5, 5, 5, 5}, 7}).check(), config_error);
  CHECK_THROWS_AS(vision::cga_config({64, 16, 4, 1.0, {5, 4, 5, 5}, 7}).check(), config_error);
  CHECK_THROWS_AS(vision::cga_config({64, 16, 4, 1.0, {5, 5, 5, 5}, 9}).check(), config_error);
}

TEST_CASE("vision: a random timm-style initialisation runs at another resolution (256: 16x16, 8x8, 4x4 maps)") {
  auto cfg = vision::efficientvit_m1();
  cfg.img_size = 256;
  auto model = vision::efficientvit<>::random(cfg, 3);
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  array<float> x({1, 3, 256, 256}), logits({1, 1000});
  for (float& v : x.span()) v = nd(gen);
  model.forward(x.cview(), logits.view());
  bool finite = true;
  for (float v : logits.span()) finite = finite && std::isfinite(v);
  CHECK(finite);
}

TEST_CASE("vision: attention probabilities rebuild timm's CGA output and efficientvit::attention_maps finds its mixer") {
  // 1. The standalone operator: rows of P sum to 1, and O_i = v_i P_i^T with the cascade, ReLU and
  //    the projection (recomputed here in double from the folded weights) gives timm's output.
  const vision::state_dict sd = counter_state(listing()["cga"]["state_dict"], "cga.");
  auto op = vision::cascaded_group_attention<>::load({64, 16, 4, 1.0, {5, 5, 5, 5}, 7}, sd, "cga");
  const array<float> x = counter("cga.input", {2, 64, 7, 7}, -1.0, 1.0);
  const array<float> ref = reference().load<float>("cga.out");
  const index_t c = 64, h = 4, d = 16, kd = 16, n = 49;
  array<float> xc({c, 2 * n}); // (C, B, R, R)
  vision::cascaded_group_attention<>::to_channel_major(x.data(), 2, c, n, xc.data());
  for (index_t img = 0; img < 2; ++img) {
    CAPTURE(img);
    array<float> p({h, n, n});
    op.probabilities(xc.data(), 2, img, p.data());
    double worst_sum = 0.0;
    for (index_t r = 0; r < h * n; ++r) {
      double s = 0.0;
      for (index_t m = 0; m < n; ++m) {
        CHECK(p.data()[r * n + m] >= 0.0f);
        s += p.data()[r * n + m];
      }
      worst_sum = std::max(worst_sum, std::fabs(s - 1.0));
    }
    CHECK(worst_sum <= 1e-5);
    std::vector<double> o(static_cast<std::size_t>(h * d * n), 0.0); // concat O_i, (d h, N), pre-ReLU
    for (index_t i = 0; i < h; ++i)
      for (index_t cv = 0; cv < d; ++cv) {
        std::vector<double> v(static_cast<std::size_t>(n));
        for (index_t m = 0; m < n; ++m) { // v_i[cv, m] = W_v F_i + b_v, F_i = X_i + O_{i-1}
          double acc = op.qkv[static_cast<std::size_t>(i)].bias.data()[2 * kd + cv];
          for (index_t e = 0; e < d; ++e) {
            const double f = x.data()[(img * c + i * d + e) * n + m] + (i > 0 ? o[static_cast<std::size_t>(((i - 1) * d + e) * n + m)] : 0.0);
            acc += static_cast<double>(op.qkv[static_cast<std::size_t>(i)].weight.data()[(2 * kd + cv) * d + e]) * f;
          }
          v[static_cast<std::size_t>(m)] = acc;
        }
        for (index_t q = 0; q < n; ++q) {
          double acc = 0.0;
          for (index_t m = 0; m < n; ++m) acc += v[static_cast<std::size_t>(m)] * p.data()[(i * n + q) * n + m];
          o[static_cast<std::size_t>((i * d + cv) * n + q)] = acc;
        }
      }
    array<float> y({c, n});
    for (index_t co = 0; co < c; ++co)
      for (index_t q = 0; q < n; ++q) {
        double acc = op.proj.bias.data()[co];
        for (index_t e = 0; e < h * d; ++e)
          acc += static_cast<double>(op.proj.weight.data()[co * h * d + e]) * std::max(o[static_cast<std::size_t>(e * n + q)], 0.0);
        y.data()[co * n + q] = static_cast<float>(acc);
      }
    CHECK(rel(y.data(), ref.data() + img * c * n, c * n) <= 1e-5);
  }

  // 2. The whole model: M0's stage 0 block 0 mixer (14 x 14 map, four 7 x 7 windows) sees timm's
  //    mixer input, so attention_maps equals probabilities() on that recorded input.
  const auto cfg = vision::efficientvit_m0();
  auto model = counter_model(cfg);
  const array<float> img = counter_input();
  const array<float> in = reference().load<float>("m0.stages.0.blocks.0.mixer.in"); // (2, 64, 14, 14)
  for (index_t w : {0, 3}) {
    CAPTURE(w);
    const array<float> got = model.attention_maps(make_view<const float>(img.data(), {1, 3, 224, 224}), 0, 0, w);
    REQUIRE(got.rank() == 3);
    CHECK(got.extent(0) == 4);
    CHECK(got.extent(1) == 49);
    CHECK(got.extent(2) == 49);
    array<float> xw({c, n}); // window w of image 0, channel-major
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t t = 0; t < n; ++t)
        xw.data()[ch * n + t] = in.data()[ch * 196 + ((w / 2) * 7 + t / 7) * 14 + (w % 2) * 7 + t % 7];
    auto lwa = vision::local_window_attention<>::load({c, 16, 4, 1.0, {5, 5, 5, 5}, 7}, 14, 7,
                                                      counter_state(listing()["models"]["m0"]["state_dict"], ""),
                                                      "stages.0.blocks.0.mixer.m");
    array<float> want({4, n, n});
    lwa.attn.probabilities(xw.data(), 1, 0, want.data());
    double worst = 0.0;
    for (index_t i = 0; i < want.size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(got.data()[i]) - want.data()[i]));
    CHECK(worst <= 1e-4);
  }
  CHECK_THROWS_AS(model.attention_maps(make_view<const float>(img.data(), {1, 3, 224, 224}), 0, 0, 4), shape_error);
  CHECK_THROWS_AS(model.attention_maps(make_view<const float>(img.data(), {1, 3, 224, 224}), 3, 0), config_error);
}
