// SPDX-License-Identifier: MIT
// kv/ decode mode: every policy's score_decode through kv::evictor on hand-derived cases (sinks,
// recent windows, protected newest token, norms), decode scores equal to the prefill scores on
// the same keys (knorm, keydiff against the kvpress fixture), reproducible random scores, `full`
// never evicting, and bf16 storage.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
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

// ---------------------------------------------------------------------------------------------
// Query-dependent policies in decode mode: snapkv and expected_attention read the recent queries
// from a kv::query_window; their decode scores must equal the prefill (double-precision
// reference) scores on the same keys, queries and positions.
namespace {
struct window_case {
  index_t g, h, s, d, w;
};
array<float> randn(std::initializer_list<index_t> shape, std::uint32_t seed, float sd = 1.0f) {
  array<float> a(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  for (index_t i = 0; i < a.size(); ++i) a.data()[i] = nd(rng);
  return a;
}
// A cache of storage T holding keys/values (G,S,D) at positions 0..S-1; the keys and values are
// replaced by their T-rounded values so that the prefill reference sees what the cache holds.
template <class T>
kv::cache<T> filled(array<float>& k, array<float>& v, index_t page = 16) {
  const index_t g = k.extent(0), s = k.extent(1), d = k.extent(2);
  kv::cache_config cfg;
  cfg.kv_heads = g;
  cfg.head_dim = d;
  cfg.page_tokens = page;
  cfg.pages = g * kv::pages_for(s, page);
  kv::cache<T> c(cfg);
  std::vector<std::int32_t> pos(static_cast<std::size_t>(s));
  for (index_t i = 0; i < s; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  for (index_t j = 0; j < g; ++j) {
    c.append(0, j, k.cview().select(0, j), v.cview().select(0, j), pos);
    for (index_t i = 0; i < s; ++i)
      for (index_t e = 0; e < d; ++e) {
        k(j, i, e) = static_cast<float>(c.key(0, j, i)[static_cast<std::size_t>(e)]);
        v(j, i, e) = static_cast<float>(c.value(0, j, i)[static_cast<std::size_t>(e)]);
      }
  }
  return c;
}
// Compares a head's decode scores with row g of the prefill scores on the unprotected tokens
// [lo, hi) (relative tolerance) and checks the kept sets of n_kept agree.
void check_same_scores(std::span<const float> dec, view<const float> pre, index_t g, index_t lo, index_t hi,
                       index_t n_kept, float rtol) {
  float scale = 0.0f;
  for (index_t i = lo; i < hi; ++i) scale = std::max(scale, std::fabs(pre(g, i)));
  for (index_t i = lo; i < hi; ++i) REQUIRE(std::fabs(dec[static_cast<std::size_t>(i)] - pre(g, i)) <= rtol * scale);
  const index_t s = pre.extent(1);
  std::vector<float> row(static_cast<std::size_t>(s));
  for (index_t i = 0; i < s; ++i) row[static_cast<std::size_t>(i)] = pre(g, i);
  std::vector<index_t> idx(static_cast<std::size_t>(s));
  std::vector<std::int32_t> a(static_cast<std::size_t>(n_kept)), b(static_cast<std::size_t>(n_kept));
  kv::select_kept_row(row, n_kept, idx, a);
  kv::select_kept_row(dec.first(static_cast<std::size_t>(s)), n_kept, idx, b);
  CHECK(a == b);
}
} // namespace

TEST_CASE("query_window keeps the newest W rows in order as one contiguous view") {
  kv::query_window qw(2, 3, 4, 5); // B 2, H 3, D 4, W 5
  array<float> q({3, 4});
  for (std::int32_t p = 10; p < 18; ++p) {
    for (index_t h = 0; h < 3; ++h)
      for (index_t e = 0; e < 4; ++e) q(h, e) = static_cast<float>(p * 100 + h * 10 + e);
    qw.push(1, q.cview(), p);
    const index_t held = std::min<index_t>(p - 9, 5);
    REQUIRE(qw.size(1) == held);
    REQUIRE(qw.last_position(1) == p);
    for (index_t h = 0; h < 3; ++h) {
      const auto rows = qw.rows(1, h, held);
      for (index_t r = 0; r < held; ++r)
        for (index_t e = 0; e < 4; ++e) REQUIRE(rows(r, e) == static_cast<float>((p - held + 1 + r) * 100 + h * 10 + e));
    }
  }
  CHECK(qw.size(0) == 0);
  CHECK(qw.last_position(0) == -1);
  CHECK_THROWS_AS(qw.push(1, q.cview(), 20), config_error); // not the next position
  CHECK_THROWS_AS(qw.push(2, q.cview(), 18), lookup_error);
  CHECK_THROWS_AS(qw.push(1, array<float>({3, 5}).cview(), 18), shape_error);
  CHECK_THROWS_AS(qw.rows(1, 0, 6), config_error);
  CHECK_THROWS_AS(qw.rows(1, 3, 1), lookup_error);
  CHECK_THROWS_AS(kv::query_window(1, 0, 4, 5), config_error);
  qw.clear(1);
  CHECK(qw.size(1) == 0);
  qw.push(1, q.cview(), 3); // any position after a clear
  CHECK(qw.last_position(1) == 3);
}

TEST_CASE_TEMPLATE("snapkv decode scores equal its prefill scores on the cached keys", T, float, bf16) {
  for (const window_case wc : {window_case{2, 2, 150, 16, 8}, window_case{2, 8, 300, 64, 32}, window_case{1, 4, 97, 40, 64}})
    for (const kv::pooling pool : {kv::pooling::avg, kv::pooling::max}) {
      CAPTURE(wc.h);
      CAPTURE(wc.s);
      auto k = randn({wc.g, wc.s, wc.d}, 11u + static_cast<std::uint32_t>(wc.s));
      auto v = randn({wc.g, wc.s, wc.d}, 12u);
      auto q = randn({wc.h, wc.w, wc.d}, 13u + static_cast<std::uint32_t>(wc.h)); // the window's queries
      auto c = filled<T>(k, v);
      kv::query_window qw(1, wc.h, wc.d, wc.w + 3);
      for (index_t r = 0; r < wc.w; ++r)
        qw.push(0, q.cview().select(1, r), static_cast<std::int32_t>(wc.s - wc.w + r));
      kv::prefill_inputs in;
      in.queries = q.cview();
      in.keys = k.cview();
      in.values = v.cview();
      array<float> pre({wc.g, wc.s});
      const kv::snapkv pol{wc.w, pool == kv::pooling::avg ? 5 : 7, pool, &qw};
      pol.score(in, 0, pre.view());
      std::vector<float> dec(static_cast<std::size_t>(wc.s)), work;
      for (index_t g = 0; g < wc.g; ++g) {
        pol.score_decode(c, 0, g, static_cast<std::int32_t>(wc.s - 1), dec, work);
        check_same_scores(dec, pre.cview(), g, 0, wc.s - wc.w, wc.s / 3, 2e-4f);
        float mx = 0.0f;
        for (index_t i = 0; i < wc.s - wc.w; ++i) mx = std::max(mx, dec[static_cast<std::size_t>(i)]);
        for (index_t i = wc.s - wc.w; i < wc.s; ++i) CHECK(dec[static_cast<std::size_t>(i)] > mx); // window protected
      }
    }
}

TEST_CASE("snapkv decode through the evictor: the window survives, bad setups are rejected") {
  const index_t g = 2, h = 4, d = 16, w = 8, budget = 24, buffer = 6;
  kv::cache_config cfg;
  cfg.kv_heads = g;
  cfg.head_dim = d;
  cfg.page_tokens = 8;
  cfg.pages = g * kv::pages_for(budget + buffer, 8);
  kv::cache<float> c(cfg);
  kv::query_window qw(1, h, d, w);
  const kv::snapkv pol{w, 5, kv::pooling::avg, &qw};
  kv::evictor ev;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> kr(static_cast<std::size_t>(d));
  array<float> q({h, d});
  for (std::int32_t t = 0; t < 200; ++t) {
    for (index_t j = 0; j < g; ++j) {
      for (float& x : kr) x = nd(rng);
      c.append(0, j, kr, kr, t);
    }
    for (index_t i = 0; i < q.size(); ++i) q.data()[i] = nd(rng);
    qw.push(0, q.cview(), t);
    if (c.size(0, 0) > w) ev.step(c, 0, pol, t, budget, buffer);
    for (index_t j = 0; j < g; ++j) {
      REQUIRE(c.size(0, j) <= budget + buffer - 1);
      const index_t n = c.size(0, j);
      for (index_t r = 0; r < std::min<index_t>(w, n); ++r) REQUIRE(c.position(0, j, n - 1 - r) == t - r);
    }
  }
  std::vector<float> out(64);
  CHECK_THROWS_AS(kv::snapkv{}.score_decode(c, 0, 0, 199, out), config_error);           // no query window
  CHECK_THROWS_AS((kv::snapkv{w, 5, kv::pooling::avg, &qw}.score_decode(c, 0, 0, 198, out)), config_error); // stale
  CHECK_THROWS_AS((kv::snapkv{w, 4, kv::pooling::avg, &qw}.score_decode(c, 0, 0, 199, out)), config_error); // even kernel
  CHECK_THROWS_AS((kv::snapkv{w + 1, 5, kv::pooling::avg, &qw}.score_decode(c, 0, 0, 199, out)), config_error);
  std::vector<float> tiny(3);
  CHECK_THROWS_AS(pol.score_decode(c, 0, 0, 199, tiny), shape_error);
}

TEST_CASE_TEMPLATE("expected_attention decode scores equal its prefill scores on the cached keys", T, float, bf16) {
  for (const window_case wc : {window_case{2, 2, 120, 16, 8}, window_case{2, 8, 260, 64, 48}, window_case{1, 4, 90, 32, 130}})
    for (const bool cov : {true, false}) {
      CAPTURE(wc.h);
      CAPTURE(cov);
      const index_t sink = 4;
      auto k = randn({wc.g, wc.s, wc.d}, 21u + static_cast<std::uint32_t>(wc.s));
      auto v = randn({wc.g, wc.s, wc.d}, 22u);
      // Pre-RoPE queries with a non-zero mean; the prefill reference drops its first n_sink rows,
      // which the decode window does not hold.
      auto q = randn({wc.h, sink + wc.w, wc.d}, 23u, 0.7f);
      for (index_t i = 0; i < q.size(); ++i) q.data()[i] += 0.3f * static_cast<float>(i % 7) - 0.6f;
      auto c = filled<T>(k, v);
      kv::query_window qw(1, wc.h, wc.d, wc.w);
      for (index_t r = 0; r < wc.w; ++r)
        qw.push(0, q.cview().select(1, sink + r), static_cast<std::int32_t>(wc.s - wc.w + r));
      kv::prefill_inputs in;
      in.queries = q.cview().slice(1, 0, 1); // unused by expected_attention (the window may exceed S)
      in.keys = k.cview();
      in.values = v.cview();
      in.queries_pre_rope = q.cview();
      kv::expected_attention pol;
      pol.n_future = 64;
      pol.use_covariance = cov;
      pol.epsilon = 1e-2;
      pol.queries = &qw;
      array<float> pre({wc.g, wc.s});
      pol.score(in, 0, pre.view());
      std::vector<float> dec(static_cast<std::size_t>(wc.s)), work;
      for (index_t g = 0; g < wc.g; ++g) {
        pol.score_decode(c, 0, g, static_cast<std::int32_t>(wc.s - 1), dec, work);
        check_same_scores(dec, pre.cview(), g, sink, wc.s, wc.s / 2, 2e-4f);
        for (index_t i = 0; i < sink; ++i) CHECK(dec[static_cast<std::size_t>(i)] > dec[static_cast<std::size_t>(sink)]);
      }
    }
}

TEST_CASE("expected_attention decode: the future positions follow step t; bad setups are rejected") {
  auto k = randn({1, 40, 8}, 31u), v = randn({1, 40, 8}, 32u), q = randn({2, 10, 8}, 33u);
  auto c = filled<float>(k, v);
  kv::query_window qw(1, 2, 8, 10);
  for (index_t r = 0; r < 10; ++r) qw.push(0, q.cview().select(1, r), static_cast<std::int32_t>(30 + r));
  kv::expected_attention pol;
  pol.n_future = 4;
  pol.queries = &qw;
  std::vector<float> a(40), b(40);
  pol.score_decode(c, 0, 0, 39, a);
  // The same queries pushed as if they ended at step 139 see other future phases.
  kv::query_window later(1, 2, 8, 10);
  for (index_t r = 0; r < 10; ++r) later.push(0, q.cview().select(1, r), static_cast<std::int32_t>(130 + r));
  kv::expected_attention pol2 = pol;
  pol2.queries = &later;
  pol2.score_decode(c, 0, 0, 139, b);
  CHECK(a != b);
  std::vector<float> out(40);
  CHECK_THROWS_AS(kv::expected_attention{}.score_decode(c, 0, 0, 39, out), config_error); // no window
  CHECK_THROWS_AS(pol.score_decode(c, 0, 0, 38, out), config_error);                      // stale window
  kv::expected_attention bad = pol;
  bad.n_sink = 40;
  CHECK_THROWS_AS(bad.score_decode(c, 0, 0, 39, out), config_error);
  kv::query_window wrong(1, 3, 8, 4);
  bad = pol;
  bad.queries = &wrong;
  CHECK_THROWS_AS(bad.score_decode(c, 0, 0, 39, out), config_error);
  std::vector<float> tiny(5);
  CHECK_THROWS_AS(pol.score_decode(c, 0, 0, 39, tiny), shape_error);
}

TEST_CASE("trim_kv one-shot scores equal its decode scores at t = S - 1, both age conventions") {
  // 2 heads x 6 tokens, log beta by hand (trim_kv.test.cpp shows the two conventions disagreeing).
  const float lb[2][6] = {{-0.01f, -0.5f, -0.02f, -0.3f, -0.9f, -0.05f}, {-0.2f, -0.2f, -0.01f, -1.0f, -0.4f, -0.6f}};
  auto c = make_cache(2, 2);
  array<float> k({2, 6, 2}), lbv({2, 6}); // (G,S,D) (G,S)
  for (index_t g = 0; g < 2; ++g)
    for (index_t i = 0; i < 6; ++i) {
      const float kr[2] = {1.0f, static_cast<float>(i)};
      const float st[1] = {lb[g][i]};
      c.append(0, g, kr, kr, static_cast<std::int32_t>(i), st);
      k(g, i, 0) = 1.0f;
      k(g, i, 1) = static_cast<float>(i);
      lbv(g, i) = lb[g][i];
    }
  kv::prefill_inputs in;
  in.queries = k.cview();
  in.keys = k.cview();
  in.values = k.cview();
  in.log_beta = lbv.cview();
  for (const kv::trim_kv pol : {kv::trim_kv{}, kv::trim_kv::reference_code()}) {
    array<float> pre({2, 6});
    pol.score(in, 3, pre.view());
    std::vector<float> dec(6);
    for (index_t g = 0; g < 2; ++g) {
      pol.score_decode(c, 0, g, 5, dec);
      for (index_t i = 0; i < 6; ++i) {
        CHECK(pre(g, i) == dec[static_cast<std::size_t>(i)]);
        CHECK(pre(g, i) == doctest::Approx((5.0 - static_cast<double>(i) + static_cast<double>(pol.age_offset)) * lb[g][i]));
      }
    }
  }
  // Paper ages 5..0, 3 kept: head 0 scores -0.05 -2.0 -0.06 -0.6 -0.9 0 keep {0, 2, 5}; head 1
  // scores -1.0 -0.8 -0.03 -2.0 -0.4 0 keep {2, 4, 5}.
  array<std::int32_t> kept({2, 3});
  array<float> pre({2, 6});
  kv::trim_kv{}.score(in, 3, pre.view());
  kv::select_kept(pre.cview(), kept.view());
  CHECK((kept(0, 0) == 0 && kept(0, 1) == 2 && kept(0, 2) == 5));
  CHECK((kept(1, 0) == 2 && kept(1, 1) == 4 && kept(1, 2) == 5));
  kv::prefill_inputs none = in;
  none.log_beta = view<const float>();
  CHECK_THROWS_AS(kv::trim_kv{}.score(none, 3, pre.view()), shape_error);
}

TEST_CASE("decode: observed_attention divides the accumulated attention by the steps that saw each token") {
  // accumulated attention 0.9, 0.8, 0.3, 0.2 at positions 0..3, step t = 3: normalised by 4, 3, 2, 1
  // -> 0.225, 0.267, 0.15, 0.2: keeps positions 0 and 1 with budget 2 (H2O keeps 0, 1 as well), and
  // with accumulations 0.9, 0.5, 0.3, 0.2 observed_attention keeps 0 and 3 (0.225, 0.167, 0.15, 0.2).
  auto c = simple(4, {0.9f, 0.5f, 0.3f, 0.2f});
  std::vector<float> out(4);
  kv::observed_attention{}.score_decode(c, 0, 0, 3, out);
  CHECK(out[0] == doctest::Approx(0.225));
  CHECK(out[1] == doctest::Approx(0.5 / 3.0));
  CHECK(out[2] == doctest::Approx(0.15));
  CHECK(out[3] == doctest::Approx(0.2));
  kv::evictor ev;
  CHECK(ev.step(c, 0, kv::observed_attention{}, 3, 2) == 2);
  CHECK(positions(c) == std::vector<std::int32_t>{0, 3});
  auto c2 = simple(4, {0.9f, 0.5f, 0.3f, 0.2f});
  CHECK(ev.step(c2, 0, kv::h2o{}, 3, 2) == 2);
  CHECK(positions(c2) == std::vector<std::int32_t>{0, 1});
  CHECK_THROWS_AS(kv::observed_attention{1}.score_decode(c, 0, 0, 3, out), lookup_error);
}
