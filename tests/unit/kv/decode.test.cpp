// SPDX-License-Identifier: MIT
// kv/ decode mode: every policy's score_decode through kv::evictor on hand-derived cases (sinks,
// recent windows, protected newest token, norms), decode scores equal to the prefill scores on
// the same keys (knorm, keydiff against the kvpress fixture), reproducible random scores, `full`
// never evicting, and bf16 storage.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/kv/kv.hpp"

using namespace membound;

namespace {
template <class T = float>
kv::cache<T> make_cache(index_t kv_heads, index_t d, index_t slots = 1) {
  kv::cache_config cfg;
  cfg.kv_heads = kv_heads;
  cfg.head_dim = d;
  cfg.page_tokens = 8;
  cfg.pages = 64;
  cfg.state_slots = slots;
  return kv::cache<T>(cfg);
}
template <class T>
std::vector<std::int32_t> positions(const kv::cache<T>& c, index_t g = 0) {
  std::vector<std::int32_t> p;
  for (index_t i = 0; i < c.size(0, g); ++i) p.push_back(c.position(0, g, i));
  return p;
}
// n tokens at positions 0..n-1, key row i = (i, 1), state = st[i]
kv::cache<float> simple(index_t n, const std::vector<float>& st = {}) {
  auto c = make_cache(1, 2);
  for (index_t i = 0; i < n; ++i) {
    const float k[2] = {static_cast<float>(i), 1.0f};
    const float s[1] = {st.empty() ? 0.0f : st[static_cast<std::size_t>(i)]};
    c.append(0, 0, k, k, static_cast<std::int32_t>(i), s);
  }
  return c;
}
} // namespace

TEST_CASE("decode: streaming_llm keeps the sinks and the most recent tokens") {
  auto c = simple(10);
  kv::evictor ev;
  CHECK(ev.step(c, 0, kv::streaming_llm{2}, 9, 5) == 5);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 1, 7, 8, 9});
}

TEST_CASE("decode: knorm keeps the smallest keys; full never evicts") {
  auto c = simple(6); // norms grow with i
  kv::evictor ev;
  CHECK(ev.step(c, 0, kv::full{}, 5, 2) == 0);
  CHECK(c.size(0, 0) == 6);
  CHECK(ev.step(c, 0, kv::knorm{}, 5, 2) == 4);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 1});
}

TEST_CASE("decode: tova protects the newest token and evicts the least attended") {
  auto c = simple(5, {0.30f, 0.05f, 0.40f, 0.20f, 0.0f}); // state = last step's attention
  kv::evictor ev;
  CHECK(ev.step(c, 0, kv::tova{}, 4, 4) == 1); // one token per step
  CHECK(positions(c) == std::vector<std::int32_t>{0, 2, 3, 4});
  CHECK(ev.step(c, 0, kv::tova{}, 4, 3) == 1);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 2, 4});
}

TEST_CASE("decode: h2o keeps heavy hitters plus the recent window") {
  // accumulated attention; the last 2 positions (8, 9) are recent and kept whatever they hold
  auto c = simple(10, {0.9f, 0.1f, 0.8f, 0.2f, 0.05f, 0.7f, 0.3f, 0.1f, 0.0f, 0.0f});
  kv::evictor ev;
  kv::h2o pol;
  pol.recent = 2;
  CHECK(ev.step(c, 0, pol, 9, 5) == 5);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 2, 5, 8, 9});
}

TEST_CASE("decode scores equal the prefill scores on the same keys (knorm, keydiff vs kvpress)") {
  const auto f = io::safetensors::open(MEMBOUND_FIXTURES_DIR "/kv/scorers.safetensors");
  const auto keys = f.get<float>("keys"); // (G,S,D)
  auto c = make_cache(2, 16);
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < 100; ++i)
      c.append(0, g, keys.select(0, g).select(0, i).span(), keys.select(0, g).select(0, i).span(), static_cast<std::int32_t>(i));
  std::vector<float> sc(100);
  for (const char* name : {"knorm", "keydiff"}) {
    const auto want = f.get<float>(std::string("score.") + name);
    for (index_t g = 0; g < 2; ++g) {
      if (std::string(name) == "knorm") kv::knorm{}.score_decode(c, 0, g, 99, sc);
      else kv::keydiff{}.score_decode(c, 0, g, 99, sc);
      for (index_t i = 0; i < 100; ++i) CHECK(sc[static_cast<std::size_t>(i)] == doctest::Approx(want(g, i)).epsilon(1e-5));
    }
  }
}

TEST_CASE("decode: random scores depend only on (seed, head, position)") {
  auto a = simple(12), b = simple(12);
  kv::evictor ev;
  const kv::random r1{7}, r2{8};
  std::vector<float> s(12);
  r1.score_decode(a, 0, 0, 11, s);
  for (index_t i = 0; i < 12; ++i) {
    CHECK(s[static_cast<std::size_t>(i)] >= 0.0f);
    CHECK(s[static_cast<std::size_t>(i)] < 1.0f);
    CHECK(s[static_cast<std::size_t>(i)] == r1.value(0, i));
  }
  ev.step(a, 0, r1, 11, 6);
  ev.step(b, 0, r1, 11, 6);
  CHECK(positions(a) == positions(b)); // same seed, same kept set
  // the survivors keep their scores after compaction (history does not matter)
  r1.score_decode(a, 0, 0, 11, s);
  for (index_t i = 0; i < a.size(0, 0); ++i) CHECK(s[static_cast<std::size_t>(i)] == r1.value(0, a.position(0, 0, i)));
  auto d = simple(12);
  ev.step(d, 0, r2, 11, 6);
  CHECK(positions(d) != positions(a)); // another seed, another set (for these seeds)
}

TEST_CASE("decode on bf16 storage: trim_kv and knorm") {
  auto c = make_cache<bf16>(2, 4);
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < 9; ++i) {
      const float k[4] = {static_cast<float>(i) * (g == 0 ? 1.0f : -1.0f), 0.5f, 0.25f, 0.0f};
      const float s[1] = {-0.1f * static_cast<float>((i * 7 + g) % 5)};
      c.append(0, g, k, k, static_cast<std::int32_t>(i), s);
    }
  kv::evictor ev;
  CHECK(ev.step(c, 0, kv::trim_kv{}, 8, 4, 2) == 10);
  CHECK(c.size(0, 0) == 4);
  CHECK(c.size(0, 1) == 4);
  CHECK(ev.step(c, 0, kv::knorm{}, 8, 2) == 4);
  for (index_t g = 0; g < 2; ++g) CHECK(c.size(0, g) == 2);
}

TEST_CASE("record_attention adds (H2O) or stores (TOVA) a step's mass in a state slot") {
  auto c = make_cache(2, 2, 3); // 8-token pages: 11 tokens span two pages
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < 11 - g; ++i) {
      const float k[2] = {0, 0};
      c.append(0, g, k, k, static_cast<std::int32_t>(i));
    }
  array<float> mass({2, 12}); // (G,S_max)
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < 12; ++i) mass(g, i) = static_cast<float>(g * 100 + i);
  kv::record_attention(c, 0, mass.cview(), 1, true);
  kv::record_attention(c, 0, mass.cview(), 1, true);
  kv::record_attention(c, 0, mass.cview(), 2, false);
  kv::record_attention(c, 0, mass.cview(), 2, false);
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < c.size(0, g); ++i) {
      CHECK(c.state(0, g, i)[0] == 0.0f);
      CHECK(c.state(0, g, i)[1] == 2.0f * mass(g, i));
      CHECK(c.state(0, g, i)[2] == mass(g, i));
    }
  array<float> narrow({2, 5}); // (G,S) too short for the heads
  CHECK_THROWS_AS(kv::record_attention(c, 0, narrow.cview(), 1, true), shape_error);
  CHECK_THROWS_AS(kv::record_attention(c, 0, mass.cview(), 3, true), lookup_error);
}
