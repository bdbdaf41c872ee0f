// SPDX-License-Identifier: MIT
// kv/ TRIM-KV: the retention gate against a PyTorch re-implementation of the reference module
// under the official tensor names (tools/make_kv_gate_fixtures.py), both age conventions on a case
// where they keep different tokens (hand-derived), per-step and buffered decode eviction, and the
// threshold mode.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/kv/kv.hpp"

using namespace membound;

namespace {
// A one-head cache with D = 2 whose tokens carry the given log betas at positions 0, 1, ...
kv::cache<float> head_with(const std::vector<float>& log_beta, index_t page_tokens = 4) {
  kv::cache_config cfg;
  cfg.kv_heads = 1;
  cfg.head_dim = 2;
  cfg.page_tokens = page_tokens;
  cfg.pages = 8;
  kv::cache<float> c(cfg);
  for (std::size_t i = 0; i < log_beta.size(); ++i) {
    const float kvv[2] = {static_cast<float>(i), -static_cast<float>(i)};
    const float st[1] = {log_beta[i]};
    c.append(0, 0, kvv, kvv, static_cast<std::int32_t>(i), st);
  }
  return c;
}
std::vector<std::int32_t> positions(const kv::cache<float>& c) {
  std::vector<std::int32_t> p;
  for (index_t i = 0; i < c.size(0, 0); ++i) p.push_back(c.position(0, 0, i));
  return p;
}
} // namespace

TEST_CASE("retention gate matches the reference module, loaded by the official tensor names") {
  const auto f = io::safetensors::open(MEMBOUND_FIXTURES_DIR "/kv/retention_gate.safetensors");
  nn::parameters p;
  auto gate = kv::retention_gate::make(p, "model.layers.0.self_attn.retention_gate", 48, 3);
  CHECK(p.size() == 4u);
  p.load(f, false); // the file also holds the test input and output
  const auto x = f.get<float>("x"), want = f.get<float>("log_beta");
  array<float> got({7, 3}); // (N,G)
  gate.forward(x, got.view());
  for (index_t r = 0; r < 7; ++r)
    for (index_t g = 0; g < 3; ++g) {
      CAPTURE(r);
      CAPTURE(g);
      CHECK(got(r, g) <= 0.0f);
      CHECK(std::abs(got(r, g) - want(r, g)) <= 1e-5 * std::abs(want(r, g)) + 1e-6);
    }
  array<float> bad({7, 2}); // (N,G) with the wrong G
  CHECK_THROWS_WITH_AS(gate.forward(x, bad.view()), doctest::Contains("expected (7,3)"), shape_error);
  // a fresh gate starts near "no forgetting": bias 10 -> log beta ~ -4.5e-5
  nn::parameters q;
  auto fresh = kv::retention_gate::make(q, "g", 48, 3);
  fresh.forward(x, got.view());
  for (index_t r = 0; r < 7; ++r) CHECK(got(r, 0) > -1e-3f);
}

TEST_CASE("trim_kv: the two age conventions keep different tokens") {
  // Token 0: old, slow decay (log beta -0.1). Token 1: newest at t = 10, fast decay (log beta -2).
  // Paper (age t - i): token 0 scores 10 * -0.1 = -1.0, token 1 scores 0 * -2 = 0 -> keep token 1.
  // Reference code (age + 2): token 0 -> 12 * -0.1 = -1.2, token 1 -> 2 * -2 = -4 -> keep token 0.
  kv::cache_config cfg;
  cfg.kv_heads = 1;
  cfg.head_dim = 2;
  cfg.page_tokens = 4;
  cfg.pages = 4;
  for (const bool paper : {true, false}) {
    kv::cache<float> c(cfg);
    const float k[2] = {0, 0};
    const float s0[1] = {-0.1f}, s1[1] = {-2.0f};
    c.append(0, 0, k, k, 0, s0);
    c.append(0, 0, k, k, 10, s1);
    std::vector<float> sc(2);
    const kv::trim_kv pol = paper ? kv::trim_kv{} : kv::trim_kv::reference_code();
    pol.score_decode(c, 0, 0, 10, sc);
    CHECK(sc[0] == doctest::Approx(paper ? -1.0 : -1.2));
    CHECK(sc[1] == doctest::Approx(paper ? 0.0 : -4.0));
    kv::evictor ev;
    CHECK(ev.step(c, 0, pol, 10, 1, 1) == 1);
    REQUIRE(c.size(0, 0) == 1);
    CHECK(c.position(0, 0, 0) == (paper ? 10 : 0));
  }
}

TEST_CASE("trim_kv decode eviction: per step (buffer 1) and amortised (buffer 4)") {
  // log betas by position; decode positions continue from the prompt.
  const std::vector<float> lb = {-0.01f, -1.0f, -0.02f, -0.5f, -0.03f, -3.0f, -0.04f, -0.001f};
  {
    auto c = head_with(lb);
    kv::evictor ev;
    // t = 7 (the newest is position 7), budget 4, buffer 1: scores (7 - i) * lb_i:
    // 0: -0.07, 1: -6, 2: -0.10, 3: -2, 4: -0.09, 5: -6, 6: -0.04, 7: 0 -> keep 0, 4, 6, 7... and 2
    // ranks: 7 (0), 6 (-0.04), 0 (-0.07), 4 (-0.09), 2 (-0.10): the best four are 0, 4, 6, 7.
    CHECK(ev.step(c, 0, kv::trim_kv{}, 7, 4, 1) == 4);
    CHECK(positions(c) == std::vector<std::int32_t>{0, 4, 6, 7});
    CHECK(ev.step(c, 0, kv::trim_kv{}, 7, 4, 1) == 0); // at budget: 4 < 4 + 1
    CHECK(c.free_pages() == 7);                        // 4 tokens fit one page of 4
  }
  {
    auto c = head_with({-0.01f, -1.0f});
    kv::evictor ev;
    const kv::trim_kv pol;
    std::int32_t t = 1;
    std::vector<index_t> sizes;
    for (int step = 0; step < 12; ++step) {
      ++t;
      const float k[2] = {0, 0};
      const float st[1] = {step % 3 == 0 ? -0.001f : -0.7f};
      c.append(0, 0, k, k, t, st);
      ev.step(c, 0, pol, t, 3, 4);
      sizes.push_back(c.size(0, 0));
      CHECK(c.size(0, 0) <= 3 + 4 - 1);
      CHECK(c.size(0, 0) >= 3);
    }
    // the head fills to budget + buffer = 7, is cut to 3, refills: 3,4,5,6 -> 3 ...
    CHECK(sizes == std::vector<index_t>{3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6});
  }
  auto c = head_with(lb);
  kv::evictor ev;
  CHECK_THROWS_AS(ev.step(c, 0, kv::trim_kv{}, 7, 0, 1), budget_error);
  CHECK_THROWS_AS(ev.step(c, 0, kv::trim_kv{}, 7, 4, 0), budget_error);
}

TEST_CASE("trim_kv threshold mode keeps exactly beta^age >= alpha") {
  const std::vector<float> lb = {-0.01f, -1.0f, -0.02f, -0.5f};
  auto c = head_with(lb);
  kv::evictor ev;
  kv::trim_kv pol;
  pol.alpha = 0.5; // log 0.5 = -0.693; at t = 3 scores: 0: -0.03, 1: -2, 2: -0.02, 3: 0
  CHECK(ev.step(c, 0, pol, 3, 1, 1) == 1);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 2, 3});
  CHECK(ev.step(c, 0, pol, 3, 1, 1) == 0);
  CHECK(ev.step(c, 0, pol, 100, 1, 1) == 3); // at t = 100: -1.0, -1.96, -48.5: all below log 0.5
  CHECK(c.size(0, 0) == 0);
  CHECK(c.free_pages() == c.total_pages());
}
