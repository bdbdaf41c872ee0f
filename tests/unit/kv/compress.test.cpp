// SPDX-License-Identifier: MIT
// kv/compress.hpp, budgets applied to the paged cache: AdaKV masks whose heads keep different
// counts fit a pool of exactly sum_g pages_for(kept_g) pages (and not one page fewer, with the
// cache unchanged); append_kept stores exactly the kept rows (f32 and bf16, strided inputs,
// state, runs longer than the internal chunk); keep_masked frees pages that another layer's head
// of a model-wide cache then uses; global_allocate on a hand-derived two-layer case (floors,
// ties, NaN), against a sort-based oracle on random cases and against adakv_allocate for one
// layer; uniform_mask; PyramidKV end to end; typed errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "membound/kv/kv.hpp"

using namespace membound;

namespace {
// What T stores for x: x itself in f32, x rounded to nearest even in bf16.
template <class T>
float stored(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return bf16::from_float(x).to_float();
}
// A recognisable K or V: x(g, i, e) = base + 100 g + i + 0.3 e + 0.01 (not bf16-exact).
array<float> pattern(index_t g, index_t s, index_t d, float base) {
  array<float> x({g, s, d}); // (G,S,D)
  for (index_t a = 0; a < g; ++a)
    for (index_t i = 0; i < s; ++i)
      for (index_t e = 0; e < d; ++e)
        x(a, i, e) = base + 100.0f * static_cast<float>(a) + static_cast<float>(i) + 0.3f * static_cast<float>(e) + 0.01f;
  return x;
}
array<std::int32_t> mask_of(std::initializer_list<std::initializer_list<int>> rows) {
  const auto g = static_cast<index_t>(rows.size());
  const auto s = static_cast<index_t>(rows.begin()->size());
  array<std::int32_t> m({g, s}); // (G,S)
  index_t a = 0;
  for (const auto& r : rows) {
    REQUIRE(static_cast<index_t>(r.size()) == s);
    index_t i = 0;
    for (int v : r) m(a, i++) = v;
    ++a;
  }
  return m;
}
void check_mask(const array<std::int32_t>& got, const array<std::int32_t>& want) {
  REQUIRE(got.extent(0) == want.extent(0));
  REQUIRE(got.extent(1) == want.extent(1));
  for (index_t g = 0; g < want.extent(0); ++g)
    for (index_t i = 0; i < want.extent(1); ++i) {
      CAPTURE(g);
      CAPTURE(i);
      CHECK(got(g, i) == want(g, i));
    }
}
index_t ones(const array<std::int32_t>& m) {
  index_t n = 0;
  for (const std::int32_t v : m.span()) n += v;
  return n;
}
// Head (b, h) of c holds exactly rows `idx` of keys/values (G,S,D) head g, positions first + idx.
template <class T>
void check_head(const kv::cache<T>& c, index_t b, index_t h, const array<float>& k, const array<float>& v, index_t g,
                const std::vector<index_t>& idx, std::int32_t first, const array<float>* st = nullptr) {
  REQUIRE(c.size(b, h) == static_cast<index_t>(idx.size()));
  for (std::size_t j = 0; j < idx.size(); ++j) {
    const index_t i = idx[j];
    CAPTURE(h);
    CAPTURE(j);
    CHECK(c.position(b, h, static_cast<index_t>(j)) == first + i);
    for (index_t e = 0; e < c.head_dim(); ++e) {
      CHECK(static_cast<float>(c.key(b, h, static_cast<index_t>(j))[static_cast<std::size_t>(e)]) == stored<T>(k(g, i, e)));
      CHECK(static_cast<float>(c.value(b, h, static_cast<index_t>(j))[static_cast<std::size_t>(e)]) == stored<T>(v(g, i, e)));
    }
    for (index_t e = 0; e < c.state_slots(); ++e)
      CHECK(c.state(b, h, static_cast<index_t>(j))[static_cast<std::size_t>(e)] == (st ? (*st)(g, i, e) : 0.0f));
  }
}
kv::cache_config config(index_t heads, index_t dim, index_t page_tokens, index_t pages, index_t slots = 0) {
  kv::cache_config c;
  c.batch = 1;
  c.kv_heads = heads;
  c.head_dim = dim;
  c.page_tokens = page_tokens;
  c.pages = pages;
  c.state_slots = slots;
  return c;
}
} // namespace

TEST_CASE("AdaKV masks: the pool holds exactly sum_g pages_for(kept_g) pages, one fewer throws and changes nothing") {
  // 3 heads x 8 tokens; head 0 scores 10..17, head 1 5..8.5, head 2 0..0.7. n_kept = 4, alpha =
  // 0.25: each head protects its best one (17, 8.5, 0.7); the other 12 - 3 = 9 go to the highest
  // of the rest: head 0's seven (10..16 > 8.0) and head 1's 8.0, 7.5. Kept counts 8, 3, 1.
  array<float> sc({3, 8}); // (G,S)
  for (index_t i = 0; i < 8; ++i) {
    sc(0, i) = 10.0f + static_cast<float>(i);
    sc(1, i) = 5.0f + 0.5f * static_cast<float>(i);
    sc(2, i) = 0.1f * static_cast<float>(i);
  }
  array<std::int32_t> mask({3, 8}); // (G,S)
  kv::adakv_allocate(sc.cview(), 4, 0.25, mask.view());
  check_mask(mask, mask_of({{1, 1, 1, 1, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 1}}));

  // page_tokens 2: pages 4 + 2 + 1 = 7. A pool uniform per head sized for the largest head (what
  // kvpress's masking stores) needs 3 x pages_for(8, 2) = 12.
  CHECK(kv::pages_for_mask(mask.cview(), 2) == 7);
  CHECK(3 * kv::pages_for(8, 2) == 12);
  const auto keys = pattern(3, 8, 4, 0.0f), values = pattern(3, 8, 4, -1000.0f);
  {
    kv::cache<float> c(config(3, 4, 2, 7));
    kv::append_kept(c, 0, 0, keys.cview(), values.cview(), mask.cview());
    CHECK(c.free_pages() == 0);
    CHECK(c.used_pages() == 7);
    CHECK(c.used_bytes() == 7 * c.page_bytes());
    CHECK(c.size(0, 0) == 8);
    CHECK(c.size(0, 1) == 3);
    CHECK(c.size(0, 2) == 1);
    CHECK(c.page_ids(0, 0).size() == 4);
    CHECK(c.page_ids(0, 1).size() == 2);
    CHECK(c.page_ids(0, 2).size() == 1);
    check_head(c, 0, 1, keys, values, 1, {5, 6, 7}, 0);
    check_head(c, 0, 2, keys, values, 2, {7}, 0);
  }
  // A fourth head already holds one token: 6 pages are free, 7 are needed. Nothing is written.
  kv::cache<float> c(config(4, 4, 2, 7));
  const std::vector<float> row{1, 2, 3, 4};
  c.append(0, 3, row, row, 42);
  CHECK(c.free_pages() == 6);
  CHECK_THROWS_WITH_AS(kv::append_kept(c, 0, 0, keys.cview(), values.cview(), mask.cview()),
                       doctest::Contains("need 7 more pages"), budget_error);
  CHECK_THROWS_WITH_AS(kv::append_kept(c, 0, 0, keys.cview(), values.cview(), mask.cview()),
                       doctest::Contains("has 6 free"), budget_error);
  CHECK(c.free_pages() == 6);
  CHECK(c.size(0, 0) == 0);
  CHECK(c.size(0, 1) == 0);
  CHECK(c.size(0, 2) == 0);
  CHECK(c.size(0, 3) == 1);
  CHECK(c.position(0, 3, 0) == 42);
  CHECK(c.key(0, 3, 0)[3] == 4.0f);
  CHECK(c.tokens() == 1);
  // with that page back it fits exactly
  c.clear(0, 3);
  kv::append_kept(c, 0, 0, keys.cview(), values.cview(), mask.cview());
  CHECK(c.free_pages() == 0);
  CHECK(c.tokens() == 12);
}

TEST_CASE_TEMPLATE("append_kept stores exactly the kept rows, positions and state", T, float, bf16) {
  // strided inputs: K and V are the two halves of one (G,S,2D) tensor
  const index_t g_n = 2, s = 11, d = 3;
  array<float> kv2({g_n, s, 2 * d}); // (G,S,2D)
  const auto k = pattern(g_n, s, d, 0.0f), v = pattern(g_n, s, d, 5000.0f);
  for (index_t g = 0; g < g_n; ++g)
    for (index_t i = 0; i < s; ++i)
      for (index_t e = 0; e < d; ++e) kv2(g, i, e) = k(g, i, e), kv2(g, i, d + e) = v(g, i, e);
  array<float> st({g_n, s, 2}); // (G,S,state_slots)
  for (index_t g = 0; g < g_n; ++g)
    for (index_t i = 0; i < s; ++i) st(g, i, 0) = static_cast<float>(g * 1000 + i) + 0.5f, st(g, i, 1) = -st(g, i, 0);
  const auto mask = mask_of({{1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}});
  kv::cache<T> c(config(3, d, 4, 5, 2));
  kv::append_kept(c, 0, 1, kv2.cview().slice(2, 0, d), kv2.cview().slice(2, d, 2 * d), mask.cview(), 100, st.cview());
  CHECK(c.size(0, 0) == 0);
  check_head(c, 0, 1, k, v, 0, {0, 1, 4, 6, 7, 8, 10}, 100, &st);
  check_head(c, 0, 2, k, v, 1, {10}, 100, &st);
  CHECK(c.used_pages() == 3); // pages_for(7, 4) + pages_for(1, 4)
  // a second call continues after the held tokens; no state gives zeros
  const auto one = mask_of({{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}});
  kv::append_kept(c, 0, 1, k.cview(), v.cview(), one.cview(), 111);
  REQUIRE(c.size(0, 1) == 8);
  CHECK(c.position(0, 1, 7) == 120);
  CHECK(static_cast<float>(c.key(0, 1, 7)[2]) == stored<T>(k(0, 9, 2)));
  CHECK(c.state(0, 1, 7)[0] == 0.0f);
  REQUIRE(c.size(0, 2) == 12);
  CHECK(c.position(0, 2, 0) == 110);
  CHECK(c.position(0, 2, 11) == 121);
  CHECK(static_cast<float>(c.value(0, 2, 11)[0]) == stored<T>(v(1, 10, 0)));
  CHECK(c.used_pages() == 5); // pages_for(8, 4) + pages_for(12, 4)
  CHECK(c.free_pages() == 0);

  // runs longer than the 256-row chunk of positions: 600 consecutive rows, and an alternating head
  const index_t n = 600;
  const auto kl = pattern(2, n, 2, 0.0f), vl = pattern(2, n, 2, 1.0f);
  array<std::int32_t> ml({2, n}); // (G,S)
  for (index_t i = 0; i < n; ++i) ml(0, i) = 1, ml(1, i) = i % 2;
  kv::cache<T> big(config(2, 2, 64, kv::pages_for(600, 64) + kv::pages_for(300, 64)));
  kv::append_kept(big, 0, 0, kl.cview(), vl.cview(), ml.cview(), 7);
  CHECK(big.free_pages() == 0);
  std::vector<index_t> all(600), odd;
  std::iota(all.begin(), all.end(), index_t{0});
  for (index_t i = 1; i < n; i += 2) odd.push_back(i);
  check_head(big, 0, 0, kl, vl, 0, all, 7);
  check_head(big, 0, 1, kl, vl, 1, odd, 7);
}

TEST_CASE("append_kept: bad shapes, heads, masks and positions throw typed errors and write nothing") {
  const auto k = pattern(2, 4, 3, 0.0f);
  const auto m = mask_of({{1, 0, 1, 0}, {1, 1, 1, 1}});
  kv::cache<float> c(config(3, 3, 2, 8));
  CHECK_THROWS_AS(kv::append_kept(c, 0, 0, k.cview(), k.cview().slice(1, 0, 3), m.cview()), shape_error);
  CHECK_THROWS_AS(kv::append_kept(c, 0, 0, k.cview(), k.cview(), m.cview().slice(1, 0, 3)), shape_error);
  CHECK_THROWS_AS(kv::append_kept(c, 0, 0, k.cview().slice(2, 0, 2), k.cview().slice(2, 0, 2), m.cview()), shape_error);
  CHECK_THROWS_AS(kv::append_kept(c, 0, 0, k.cview(), k.cview(), m.cview(), 0, k.cview()), shape_error); // state_slots 0
  CHECK_THROWS_WITH_AS(kv::append_kept(c, 0, 2, k.cview(), k.cview(), m.cview()), doctest::Contains("heads [2, 4)"),
                       lookup_error);
  CHECK_THROWS_AS(kv::append_kept(c, 1, 0, k.cview(), k.cview(), m.cview()), lookup_error);
  auto bad = m;
  bad(1, 2) = 2;
  CHECK_THROWS_WITH_AS(kv::append_kept(c, 0, 0, k.cview(), k.cview(), bad.cview()), doctest::Contains("mask(1, 2) = 2"),
                       config_error);
  CHECK_THROWS_AS(kv::append_kept(c, 0, 0, k.cview(), k.cview(), m.cview(), std::numeric_limits<std::int32_t>::max() - 2),
                  config_error);
  CHECK(c.tokens() == 0);
  CHECK(c.free_pages() == 8);
  kv::append_kept(c, 0, 0, k.cview(), k.cview(), m.cview(), std::numeric_limits<std::int32_t>::max() - 3);
  CHECK(c.position(0, 1, 3) == std::numeric_limits<std::int32_t>::max());
  CHECK_THROWS_AS(kv::pages_for_mask(bad.cview(), 2), config_error);
}

TEST_CASE("keep_masked frees pages that a head of another layer then uses (model-wide cache)") {
  // 2 layers x 2 KV heads = 4 cache heads (layer * 2 + g), 8 tokens each, page_tokens 2, pool 11.
  const index_t g_n = 2, s = 8;
  const auto k0 = pattern(g_n, s, 2, 0.0f), v0 = pattern(g_n, s, 2, 300.0f);
  const auto k1 = pattern(g_n, s, 2, 600.0f), v1 = pattern(g_n, s, 2, 900.0f);
  array<float> st({g_n, s, 1}); // (G,S,state_slots)
  for (index_t i = 0; i < g_n * s; ++i) st.span()[static_cast<std::size_t>(i)] = static_cast<float>(i) + 0.25f;
  kv::cache<bf16> c(config(4, 2, 2, 11, 1));
  array<std::int32_t> full({g_n, s}); // (G,S)
  for (std::int32_t& x : full.span()) x = 1;
  kv::append_kept(c, 0, 0, k0.cview(), v0.cview(), full.cview(), 0, st.cview()); // layer 0's whole prefill
  CHECK(c.used_pages() == 8);
  CHECK(c.free_pages() == 3);
  // layer 1 keeps 6 and 4 tokens: 3 + 2 = 5 pages, only 3 free
  const auto m1 = mask_of({{0, 1, 1, 1, 0, 1, 1, 1}, {1, 0, 0, 1, 0, 0, 1, 1}});
  CHECK(kv::pages_for_mask(m1.cview(), 2) == 5);
  CHECK_THROWS_WITH_AS(kv::append_kept(c, 0, 2, k1.cview(), v1.cview(), m1.cview()), doctest::Contains("need 5 more pages"),
                       budget_error);
  CHECK(c.size(0, 2) == 0);
  CHECK(c.size(0, 3) == 0);
  CHECK(c.free_pages() == 3);

  const auto before0 = c.page_ids(0, 0), before1 = c.page_ids(0, 1);
  std::set<std::int32_t> layer0(before0.begin(), before0.end());
  layer0.insert(before1.begin(), before1.end());
  // layer 0 keeps {2, 5, 7} and {4}: 2 + 1 pages of its 8; 5 + 7 = 12 tokens evicted
  const auto m0 = mask_of({{0, 0, 1, 0, 0, 1, 0, 1}, {0, 0, 0, 0, 1, 0, 0, 0}});
  CHECK(kv::keep_masked(c, 0, 0, m0.cview()) == 12);
  CHECK(c.free_pages() == 8);
  CHECK(c.used_pages() == 3);
  check_head(c, 0, 0, k0, v0, 0, {2, 5, 7}, 0, &st);
  check_head(c, 0, 1, k0, v0, 1, {4}, 0, &st);
  std::set<std::int32_t> freed = layer0;
  for (const auto id : c.page_ids(0, 0)) freed.erase(id);
  for (const auto id : c.page_ids(0, 1)) freed.erase(id);
  CHECK(freed.size() == 5);

  // now layer 1 fits, and at least 5 - 3 of its pages are ones layer 0 gave back
  kv::append_kept(c, 0, 2, k1.cview(), v1.cview(), m1.cview());
  CHECK(c.free_pages() == 3);
  check_head(c, 0, 2, k1, v1, 0, {1, 2, 3, 5, 6, 7}, 0);
  check_head(c, 0, 3, k1, v1, 1, {0, 3, 6, 7}, 0);
  index_t reused = 0;
  std::set<std::int32_t> owned;
  for (index_t h = 0; h < 4; ++h)
    for (const auto id : c.page_ids(0, h)) {
      owned.insert(id);
      if (h >= 2 && freed.count(id)) ++reused;
    }
  CHECK(reused >= 2);
  CHECK(owned.size() == 8); // no page owned twice
  check_head(c, 0, 0, k0, v0, 0, {2, 5, 7}, 0, &st); // layer 0 untouched

  // errors: the head sizes must match the mask's S; the mask must be 0/1; nothing changes
  CHECK_THROWS_WITH_AS(kv::keep_masked(c, 0, 0, m0.cview()), doctest::Contains("holds 3 tokens; the mask has S = 8"),
                       shape_error);
  auto bad = mask_of({{1, 0, 1}, {1, 1, -1}});
  CHECK_THROWS_AS(kv::keep_masked(c, 0, 0, bad.cview()), config_error);
  CHECK_THROWS_AS(kv::keep_masked(c, 0, 3, mask_of({{1, 0, 1}, {1, 0, 0}}).cview()), lookup_error);
  CHECK(c.size(0, 0) == 3);
  CHECK(c.free_pages() == 3);
  // a keep-all mask evicts nothing
  CHECK(kv::keep_masked(c, 0, 0, mask_of({{1, 1, 1}}).cview()) == 0);
  CHECK(c.size(0, 0) == 3);
}

namespace {
const float nan_f = std::numeric_limits<float>::quiet_NaN();
// The hand-derived two-layer case: 2 layers x 2 heads x 5 tokens.
struct two_layers {
  array<float> l0 = array<float>({2, 5}), l1 = array<float>({2, 5});                         // (G,S) each
  array<std::int32_t> m0 = array<std::int32_t>({2, 5}), m1 = array<std::int32_t>({2, 5}); // (G,S) each
  two_layers() {
    const float a[2][5] = {{0.9f, 0.1f, 0.5f, 0.5f, 0.3f}, {0.05f, 0.04f, 0.03f, 0.02f, 0.01f}};
    const float b[2][5] = {{0.3f, nan_f, 0.8f, 0.3f, 0.6f}, {0.7f, 0.3f, 0.0f, 0.4f, 0.3f}};
    for (index_t g = 0; g < 2; ++g)
      for (index_t i = 0; i < 5; ++i) l0(g, i) = a[g][i], l1(g, i) = b[g][i];
  }
  void run(index_t n, index_t floor) {
    const std::vector<view<const float>> sc{l0.cview(), l1.cview()};
    const std::vector<view<std::int32_t>> ms{m0.view(), m1.view()};
    kv::global_allocate(sc, n, floor, ms);
  }
};

// Oracle: full sorts of tuples. Keep order: valid scores before NaN, higher score, newer token,
// lower head over all layers.
void oracle(const std::vector<array<float>>& sc, index_t n, index_t floor, std::vector<array<std::int32_t>>& out) {
  using key = std::tuple<int, float, index_t, index_t>; // (is-not-nan, score, pos, -head): larger = keep first
  struct ent { key k; std::size_t l; index_t g, i; };
  std::vector<ent> rest;
  index_t head = 0, floors = 0;
  for (std::size_t l = 0; l < sc.size(); ++l) {
    out[l] = array<std::int32_t>({sc[l].extent(0), sc[l].extent(1)}); // (G,S)
    for (index_t g = 0; g < sc[l].extent(0); ++g, ++head) {
      std::vector<ent> row;
      for (index_t i = 0; i < sc[l].extent(1); ++i) {
        const float x = sc[l](g, i);
        row.push_back({key{std::isnan(x) ? 0 : 1, std::isnan(x) ? 0.0f : x, i, -head}, l, g, i});
      }
      std::sort(row.begin(), row.end(), [](const ent& a, const ent& b) { return a.k > b.k; });
      for (std::size_t j = 0; j < row.size(); ++j) {
        if (static_cast<index_t>(j) < floor) out[l](g, row[j].i) = 1, ++floors;
        else rest.push_back(row[j]);
      }
    }
  }
  std::sort(rest.begin(), rest.end(), [](const ent& a, const ent& b) { return a.k > b.k; });
  for (index_t j = 0; j < n - floors; ++j) out[rest[static_cast<std::size_t>(j)].l](rest[static_cast<std::size_t>(j)].g, rest[static_cast<std::size_t>(j)].i) = 1;
}
} // namespace

TEST_CASE("global_allocate: hand-derived two-layer budget with floors, ties and NaN") {
  two_layers t;
  // floor 1: the heads' own bests are L0h0 p0 (0.9), L0h1 p0 (0.05), L1h0 p2 (0.8), L1h1 p0 (0.7).
  // The rest, best first: 0.6 L1h0 p4; 0.5 L0h0 p3 then p2 (tie: the newer kept first); 0.4 L1h1
  // p3; 0.3 at p4 in L0h0 (head 0) then L1h1 (head 3) (same position: the lower head kept first),
  // then L1h0 p3, L1h1 p1, L1h0 p0; 0.1; 0.04 .. 0.01; 0.0 L1h1 p2; NaN L1h0 p1 last.
  t.run(4, 1);
  check_mask(t.m0, mask_of({{1, 0, 0, 0, 0}, {1, 0, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 0}, {1, 0, 0, 0, 0}}));
  t.run(6, 1);
  check_mask(t.m0, mask_of({{1, 0, 0, 1, 0}, {1, 0, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 1}, {1, 0, 0, 0, 0}}));
  t.run(9, 1);
  check_mask(t.m0, mask_of({{1, 0, 1, 1, 1}, {1, 0, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 1}, {1, 0, 0, 1, 0}}));
  t.run(10, 1);
  check_mask(t.m0, mask_of({{1, 0, 1, 1, 1}, {1, 0, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 1}, {1, 0, 0, 1, 1}}));
  CHECK(ones(t.m0) + ones(t.m1) == 10);
  t.run(18, 1); // all but the NaN and the 0.0
  check_mask(t.m0, mask_of({{1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}}));
  check_mask(t.m1, mask_of({{1, 0, 1, 1, 1}, {1, 1, 0, 1, 1}}));
  t.run(19, 1); // all but the NaN
  check_mask(t.m1, mask_of({{1, 0, 1, 1, 1}, {1, 1, 1, 1, 1}}));
  t.run(20, 1);
  CHECK(ones(t.m0) + ones(t.m1) == 20);
  // without a floor layer 0's head 1 (all scores below 0.06) gets nothing at N = 9
  t.run(9, 0);
  check_mask(t.m0, mask_of({{1, 0, 1, 1, 1}, {0, 0, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 1}, {1, 0, 0, 1, 1}}));
  t.run(0, 0);
  CHECK(ones(t.m0) + ones(t.m1) == 0);
  // floor 2 with N = the total floor: each head's best two
  t.run(8, 2);
  check_mask(t.m0, mask_of({{1, 0, 0, 1, 0}, {1, 1, 0, 0, 0}}));
  check_mask(t.m1, mask_of({{0, 0, 1, 0, 1}, {1, 0, 0, 1, 0}}));
  t.run(20, 5); // floor = S keeps everything
  CHECK(ones(t.m0) + ones(t.m1) == 20);

  // NaN inside a floor: an all-NaN head keeps its newest token; the extra goes to a real score
  array<float> s({2, 3}); // (G,S)
  s(0, 0) = s(0, 1) = s(0, 2) = nan_f;
  s(1, 0) = 1.0f, s(1, 1) = 2.0f, s(1, 2) = 3.0f;
  array<std::int32_t> m({2, 3}); // (G,S)
  const std::vector<view<const float>> sc{s.cview()};
  const std::vector<view<std::int32_t>> ms{m.view()};
  kv::global_allocate(sc, 3, 1, ms);
  check_mask(m, mask_of({{0, 0, 1}, {0, 1, 1}}));
}

TEST_CASE("global_allocate: bad inputs throw typed errors naming the values, masks untouched") {
  two_layers t;
  for (std::int32_t& x : t.m0.span()) x = 7;
  CHECK_THROWS_WITH_AS(t.run(3, 1), doctest::Contains("n_total = 3"), budget_error);
  CHECK_THROWS_WITH_AS(t.run(3, 1), doctest::Contains("total floor 4"), budget_error);
  CHECK_THROWS_WITH_AS(t.run(21, 1), doctest::Contains("the 20 tokens"), budget_error);
  CHECK_THROWS_WITH_AS(t.run(20, 6), doctest::Contains("floor = 6 exceeds the 5 tokens of layer 0"), budget_error);
  CHECK_THROWS_WITH_AS(t.run(5, -1), doctest::Contains("floor = -1"), budget_error);
  CHECK(t.m0(1, 3) == 7);
  const std::vector<view<const float>> sc{t.l0.cview(), t.l1.cview()};
  const std::vector<view<std::int32_t>> one{t.m0.view()};
  CHECK_THROWS_WITH_AS(kv::global_allocate(sc, 5, 1, one), doctest::Contains("2 score matrices but 1 masks"), shape_error);
  array<std::int32_t> wrong({2, 4}); // (G,S-1)
  const std::vector<view<std::int32_t>> two{t.m0.view(), wrong.view()};
  CHECK_THROWS_WITH_AS(kv::global_allocate(sc, 5, 1, two), doctest::Contains("layer 1: mask (2,4)"), shape_error);
  CHECK(t.m0(0, 0) == 7);
}

TEST_CASE("global_allocate equals a sort-based oracle on random layers, and adakv_allocate on one layer") {
  std::mt19937 rng(20260101u);
  auto pick = [&](int n) { return static_cast<index_t>(rng() % static_cast<std::uint32_t>(n)); };
  for (int trial = 0; trial < 200; ++trial) {
    CAPTURE(trial);
    const index_t layers = 1 + pick(4);
    std::vector<array<float>> sc;
    index_t total = 0, heads = 0, min_s = 1000;
    for (index_t l = 0; l < layers; ++l) {
      const index_t g = 1 + pick(3), s = 1 + pick(9);
      array<float> x({g, s}); // (G,S)
      for (float& v : x.span()) v = pick(10) == 0 ? nan_f : static_cast<float>(pick(6)) * 0.25f; // many ties
      sc.push_back(std::move(x));
      total += g * s;
      heads += g;
      min_s = std::min(min_s, s);
    }
    const index_t floor = pick(static_cast<int>(min_s) + 1);
    const index_t n = floor * heads + pick(static_cast<int>(total - floor * heads) + 1);
    std::vector<array<std::int32_t>> want(sc.size()), got;
    oracle(sc, n, floor, want);
    std::vector<view<const float>> sv;
    std::vector<view<std::int32_t>> mv;
    for (auto& x : sc) {
      got.emplace_back(std::initializer_list<index_t>{x.extent(0), x.extent(1)});
      sv.push_back(x.cview());
    }
    for (auto& m : got) mv.push_back(m.view());
    kv::global_allocate(sv, n, floor, mv);
    index_t kept = 0;
    for (std::size_t l = 0; l < sc.size(); ++l) {
      check_mask(got[l], want[l]);
      kept += ones(got[l]);
    }
    CHECK(kept == n);
  }
  // one layer: floor = max(1, int(n_kept alpha)) and N = G n_kept is AdaKV
  for (int trial = 0; trial < 100; ++trial) {
    CAPTURE(trial);
    const index_t g = 1 + pick(4), s = 2 + pick(30), n_kept = 1 + pick(static_cast<int>(s));
    const double alpha = trial % 3 == 0 ? 0.0 : 0.2 * static_cast<double>(1 + pick(5));
    const index_t safe = alpha > 0.0 ? std::max<index_t>(1, static_cast<index_t>(static_cast<double>(n_kept) * alpha)) : 0;
    array<float> x({g, s}); // (G,S)
    for (float& v : x.span()) v = pick(12) == 0 ? nan_f : static_cast<float>(pick(8));
    array<std::int32_t> a({g, s}), b({g, s}); // (G,S) (G,S)
    kv::adakv_allocate(x.cview(), n_kept, alpha, a.view());
    const std::vector<view<const float>> sv{x.cview()};
    const std::vector<view<std::int32_t>> mv{b.view()};
    kv::global_allocate(sv, g * n_kept, safe, mv);
    check_mask(b, a);
  }
}

TEST_CASE("uniform_mask: every head keeps its own n best (ties newer, NaN first out)") {
  array<float> s({2, 6}); // (G,S)
  const float r0[] = {1.0f, 3.0f, 1.0f, nan_f, 3.0f, 1.0f};
  const float r1[] = {nan_f, nan_f, nan_f, -1.0f, nan_f, nan_f};
  for (index_t i = 0; i < 6; ++i) s(0, i) = r0[i], s(1, i) = r1[i];
  array<std::int32_t> m({2, 6}); // (G,S)
  for (std::int32_t& x : m.span()) x = 9;
  kv::uniform_mask(s.cview(), 3, m.view());
  check_mask(m, mask_of({{0, 1, 0, 0, 1, 1}, {0, 0, 0, 1, 1, 1}}));
  kv::uniform_mask(s.cview(), 6, m.view());
  CHECK(ones(m) == 12);
  CHECK_THROWS_WITH_AS(kv::uniform_mask(s.cview(), 7, m.view()), doctest::Contains("n_kept = 7 of 6"), budget_error);
  CHECK_THROWS_AS(kv::uniform_mask(s.cview(), 0, m.view()), budget_error);
  array<std::int32_t> wrong({2, 5}); // (G,S-1)
  CHECK_THROWS_AS(kv::uniform_mask(s.cview(), 3, wrong.view()), shape_error);
}

TEST_CASE("PyramidKV end to end: per-layer counts applied with uniform_mask into one model-wide cache") {
  // n = 200, ratio 0.5, 4 layers, window 16, beta 20: B = 100, min = 5, max = 195 >= n - window
  // = 184, so max = 184 and min = 2 B - 184 = 16 (>= window: the pyramid applies); step (184 -
  // 16) / 3 = 56: counts 184, 128, 72, 16 (mean 100 = the uniform count).
  const index_t layers = 4, g_n = 2, s = 200, d = 4, pt = 16;
  const auto budget = kv::pyramid_budgets(s, 0.5, layers, 16, 20.0);
  REQUIRE(budget == std::vector<index_t>{184, 128, 72, 16});
  // pages per head 12, 8, 5, 1; x 2 heads = 52. Uniform 100 per head: 8 heads x 7 = 56.
  std::mt19937 rng(11u);
  std::vector<array<float>> scores, keys;
  std::vector<array<std::int32_t>> masks;
  index_t pool = 0;
  for (index_t l = 0; l < layers; ++l) {
    array<float> sc({g_n, s}); // (G,S)
    for (index_t g = 0; g < g_n; ++g) {
      std::vector<index_t> perm(static_cast<std::size_t>(s));
      std::iota(perm.begin(), perm.end(), index_t{0});
      std::shuffle(perm.begin(), perm.end(), rng);
      for (index_t i = 0; i < s; ++i) sc(g, i) = static_cast<float>(perm[static_cast<std::size_t>(i)]) / 200.0f; // distinct
    }
    array<std::int32_t> m({g_n, s}); // (G,S)
    kv::uniform_mask(sc.cview(), budget[static_cast<std::size_t>(l)], m.view());
    pool += kv::pages_for_mask(m.cview(), pt);
    scores.push_back(std::move(sc));
    masks.push_back(std::move(m));
    keys.push_back(pattern(g_n, s, d, 1000.0f * static_cast<float>(l)));
  }
  CHECK(pool == 52);
  CHECK(layers * g_n * kv::pages_for(100, pt) == 56);

  kv::cache<float> c(config(layers * g_n, d, pt, pool));
  for (index_t l = 0; l < layers; ++l) {
    const auto& k = keys[static_cast<std::size_t>(l)];
    kv::append_kept(c, 0, l * g_n, k.cview(), k.cview(), masks[static_cast<std::size_t>(l)].cview());
  }
  CHECK(c.used_pages() == 52);
  CHECK(c.free_pages() == 0);
  CHECK(c.tokens() == 2 * (184 + 128 + 72 + 16));
  for (index_t l = 0; l < layers; ++l)
    for (index_t g = 0; g < g_n; ++g) {
      CAPTURE(l);
      CAPTURE(g);
      const index_t h = l * g_n + g, n = budget[static_cast<std::size_t>(l)];
      REQUIRE(c.size(0, h) == n);
      CHECK(static_cast<index_t>(c.page_ids(0, h).size()) == kv::pages_for(n, pt));
      // the kept tokens are the head's n best: every kept score is above every evicted one
      const auto& sc = scores[static_cast<std::size_t>(l)];
      std::vector<char> in(static_cast<std::size_t>(s), 0);
      for (index_t j = 0; j < n; ++j) {
        const std::int32_t p = c.position(0, h, j);
        if (j > 0) CHECK(p > c.position(0, h, j - 1));
        in[static_cast<std::size_t>(p)] = 1;
        CHECK(c.key(0, h, j)[1] == keys[static_cast<std::size_t>(l)](g, p, 1));
      }
      float lo = 1e9f, hi = -1e9f;
      for (index_t i = 0; i < s; ++i) {
        if (in[static_cast<std::size_t>(i)]) lo = std::min(lo, sc(g, i));
        else hi = std::max(hi, sc(g, i));
      }
      CHECK(lo > hi);
      CHECK(lo == static_cast<float>(s - n) / 200.0f); // the n best of a permutation of 0..199
    }
  // one page short: the last layer (2 pages) does not fit; the others are in, it is not
  kv::cache<float> short_pool(config(layers * g_n, d, pt, pool - 1));
  for (index_t l = 0; l + 1 < layers; ++l)
    kv::append_kept(short_pool, 0, l * g_n, keys[static_cast<std::size_t>(l)].cview(), keys[static_cast<std::size_t>(l)].cview(),
                    masks[static_cast<std::size_t>(l)].cview());
  CHECK(short_pool.free_pages() == 1);
  CHECK_THROWS_AS(kv::append_kept(short_pool, 0, 6, keys[3].cview(), keys[3].cview(), masks[3].cview()), budget_error);
  CHECK(short_pool.size(0, 6) == 0);
  CHECK(short_pool.size(0, 7) == 0);
  CHECK(short_pool.free_pages() == 1);
}
