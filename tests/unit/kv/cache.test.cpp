// SPDX-License-Identifier: MIT
// kv::cache, the paged memory-bounded KV cache: hand-derived cases (readback in f32 and bf16,
// page boundaries and layout, keep() compaction and freed pages, page reuse across heads, the
// exhausted pool, bad configs, bad kept lists) and a randomised run of appends, keeps and clears
// checked after every operation against a naive std::vector model of every head.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "membound/kv/kv.hpp"

using namespace membound;

namespace {
template <class T>
float as_float(T x) { return static_cast<float>(x); }
// What T stores for x: x itself in f32, x rounded to nearest even in bf16.
template <class T>
float stored(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return bf16::from_float(x).to_float();
}
kv::cache_config small(index_t pages = 8) {
  kv::cache_config c;
  c.batch = 2;
  c.kv_heads = 2;
  c.head_dim = 3;
  c.page_tokens = 4;
  c.pages = pages;
  c.state_slots = 2;
  return c;
}
// Appends token t of a recognisable pattern: key (t, t + 0.5, -t), value = 10 x key, state (t, -t).
template <class T>
void push(kv::cache<T>& c, index_t b, index_t g, int t) {
  const float x = static_cast<float>(t);
  const std::vector<float> k{x, x + 0.5f, -x}, v{10 * x, 10 * x + 5, -10 * x}, s{x, -x};
  c.append(b, g, k, v, 100 + t, s);
}
template <class T>
void check_token(const kv::cache<T>& c, index_t b, index_t g, index_t i, int t) {
  CAPTURE(i);
  CAPTURE(t);
  const float x = static_cast<float>(t);
  REQUIRE(c.key(b, g, i).size() == 3);
  CHECK(as_float(c.key(b, g, i)[0]) == stored<T>(x));
  CHECK(as_float(c.key(b, g, i)[1]) == stored<T>(x + 0.5f));
  CHECK(as_float(c.key(b, g, i)[2]) == stored<T>(-x));
  CHECK(as_float(c.value(b, g, i)[0]) == stored<T>(10 * x));
  CHECK(as_float(c.value(b, g, i)[1]) == stored<T>(10 * x + 5));
  CHECK(c.position(b, g, i) == 100 + t);
  REQUIRE(c.state(b, g, i).size() == 2);
  CHECK(c.state(b, g, i)[0] == x);
  CHECK(c.state(b, g, i)[1] == -x);
}
} // namespace

TEST_CASE_TEMPLATE("kv::cache: append and read back K, V, position and state", T, float, bf16) {
  kv::cache<T> c(small());
  for (int t = 0; t < 6; ++t) push(c, 1, 0, t);
  push(c, 0, 1, 42);
  CHECK(c.size(1, 0) == 6);
  CHECK(c.size(0, 1) == 1);
  CHECK(c.size(0, 0) == 0);
  CHECK(c.size(1, 1) == 0);
  CHECK(c.tokens() == 7);
  for (int t = 0; t < 6; ++t) check_token(c, 1, 0, t, t);
  check_token(c, 0, 1, 0, 42);
  // no state given: zeros
  const std::vector<float> k{1, 2, 3};
  c.append(1, 1, k, k, 7);
  CHECK(c.state(1, 1, 0)[0] == 0.0f);
  CHECK(c.state(1, 1, 0)[1] == 0.0f);
  CHECK(c.position(1, 1, 0) == 7);
  // state is writable in place
  c.state(1, 1, 0)[1] = 2.5f;
  CHECK(c.state(1, 1, 0)[1] == 2.5f);
}

TEST_CASE("kv::cache<bf16>: keys and values are rounded to nearest even; state stays f32") {
  kv::cache_config cfg = small();
  cfg.head_dim = 4;
  kv::cache<bf16> c(cfg);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even gives 1. 1 + 3 2^-8 is halfway
  // between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6. 1 + 2^-8 + 2^-20 is above halfway: 1 + 2^-7.
  const std::vector<float> k{1.00390625f, 1.01171875f, 1.0f + 0x1p-8f + 0x1p-20f, -3.0f};
  const std::vector<float> v{0.1f, -0.1f, 65504.0f, 1e-40f};
  const std::vector<float> s{1.00390625f, 0.1f};
  c.append(0, 0, k, v, 5, s);
  CHECK(c.key(0, 0, 0)[0].to_float() == 1.0f);
  CHECK(c.key(0, 0, 0)[1].to_float() == 1.015625f);
  CHECK(c.key(0, 0, 0)[2].to_float() == 1.0078125f);
  CHECK(c.key(0, 0, 0)[3].to_float() == -3.0f);
  for (std::size_t e = 0; e < 4; ++e) {
    CHECK(c.key(0, 0, 0)[e] == bf16::from_float(k[e]));
    CHECK(c.value(0, 0, 0)[e] == bf16::from_float(v[e]));
  }
  CHECK(c.value(0, 0, 0)[0].bits == 0x3dcd); // 0.1f = 0x3dcccccd rounds up
  CHECK(c.state(0, 0, 0)[0] == 1.00390625f); // not rounded
  CHECK(c.state(0, 0, 0)[1] == 0.1f);
}

TEST_CASE("kv::cache: page layout, page boundaries and footprint") {
  kv::cache_config cfg;
  cfg.head_dim = 20;
  cfg.page_tokens = 4;
  cfg.pages = 5;
  cfg.state_slots = 1;
  kv::cache<float> c(cfg);
  // K 4 x 20 x 4 = 320 B, V 320 B, positions 16 -> 64 B, state 16 -> 64 B
  CHECK(c.page_bytes() == 768);
  CHECK(c.pool_bytes() == 5 * 768);
  CHECK(c.total_pages() == 5);
  CHECK(c.free_pages() == 5);
  CHECK(c.used_bytes() == 0);
  CHECK(c.capacity_tokens() == 20);
  kv::cache<bf16> h(cfg); // K 160 -> 192 B, V 192 B, 64, 64
  CHECK(h.page_bytes() == 512);
  CHECK(h.pool_bytes() == 5 * 512);

  std::vector<float> k(20), v(20);
  for (int t = 0; t < 9; ++t) {
    for (int e = 0; e < 20; ++e) k[static_cast<std::size_t>(e)] = static_cast<float>(100 * t + e), v[static_cast<std::size_t>(e)] = -k[static_cast<std::size_t>(e)];
    c.append(0, 0, k, v, t, std::vector<float>{static_cast<float>(t)});
    CHECK(c.used_pages() == kv::pages_for(t + 1, 4));
  }
  CHECK(c.size(0, 0) == 9);
  CHECK(c.used_pages() == 3);
  CHECK(c.free_pages() == 2);
  CHECK(c.used_bytes() == 3 * 768);
  CHECK(c.page_ids(0, 0).size() == 3);
  CHECK(c.page_ids(0, 0)[0] == 0); // the free list hands out page 0 first
  CHECK(c.page_ids(0, 0)[1] == 1);
  CHECK(c.page_ids(0, 0)[2] == 2);

  const auto pages = std::as_const(c).pages(0, 0);
  REQUIRE(pages.size() == 3);
  const index_t want_tokens[] = {4, 4, 1};
  index_t j = 0, seen = 0;
  for (const kv::page_span<const float> p : pages) {
    CAPTURE(j);
    CHECK(p.tokens == want_tokens[j]);
    CHECK(p.first == 4 * j);
    CHECK(reinterpret_cast<std::uintptr_t>(p.keys) % 64 == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(p.values) % 64 == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(p.positions) % 64 == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(p.state) % 64 == 0);
    for (index_t r = 0; r < p.tokens; ++r) {
      const index_t i = p.first + r;
      CHECK(p.keys + r * 20 == c.key(0, 0, i).data()); // contiguous rows, (page_tokens,D)
      CHECK(p.values + r * 20 == c.value(0, 0, i).data());
      CHECK(p.keys[r * 20 + 7] == static_cast<float>(100 * i + 7));
      CHECK(p.positions[r] == i);
      CHECK(p.state[r] == static_cast<float>(i));
      ++seen;
    }
    ++j;
  }
  CHECK(seen == 9);
  // pages of consecutive ids are page_bytes apart in the pool
  CHECK(reinterpret_cast<const std::byte*>(pages[1].keys) - reinterpret_cast<const std::byte*>(pages[0].keys) == 768);
  // writable walk: a policy updates its state in place
  for (auto p : c.pages(0, 0))
    for (index_t r = 0; r < p.tokens; ++r) p.state[r] += 0.5f;
  CHECK(c.state(0, 0, 8)[0] == 8.5f);
  CHECK(h.pages(0, 0).empty());
  const auto none = h.pages(0, 0);
  CHECK(none.begin() == none.end());
}

TEST_CASE_TEMPLATE("kv::cache: keep() compacts in place, in order, and frees tail pages", T, float, bf16) {
  kv::cache<T> c(small());
  for (int t = 0; t < 9; ++t) push(c, 0, 1, t);
  for (int t = 0; t < 3; ++t) push(c, 1, 1, 50 + t);
  CHECK(c.used_pages() == 4); // 3 + 1
  const std::vector<std::int32_t> kept{0, 2, 3, 7, 8};
  c.keep(0, 1, kept);
  CHECK(c.size(0, 1) == 5);
  for (index_t i = 0; i < 5; ++i) check_token(c, 0, 1, i, kept[static_cast<std::size_t>(i)]);
  CHECK(c.used_pages() == 3); // 5 tokens on 2 pages: one page back
  CHECK(c.free_pages() == 5);
  CHECK(c.page_ids(0, 1).size() == 2);
  for (int t = 0; t < 3; ++t) check_token(c, 1, 1, t, 50 + t); // other head untouched
  // keeping everything changes nothing
  const std::vector<std::int32_t> all{0, 1, 2, 3, 4};
  c.keep(0, 1, all);
  for (index_t i = 0; i < 5; ++i) check_token(c, 0, 1, i, kept[static_cast<std::size_t>(i)]);
  // the head keeps appending after its survivors
  push(c, 0, 1, 9);
  check_token(c, 0, 1, 5, 9);
  CHECK(c.size(0, 1) == 6);
  // keep one token across pages: it moves from page 1 to slot 0
  const std::vector<std::int32_t> last{5};
  c.keep(0, 1, last);
  check_token(c, 0, 1, 0, 9);
  CHECK(c.page_ids(0, 1).size() == 1);
  // keep nothing: the head is empty and owns no page
  c.keep(0, 1, std::span<const std::int32_t>());
  CHECK(c.size(0, 1) == 0);
  CHECK(c.page_ids(0, 1).empty());
  CHECK(c.used_pages() == 1);
}

TEST_CASE("kv::cache: a page freed by one head is reused by another; exhausted pool throws budget_error") {
  kv::cache_config cfg = small(3);
  cfg.page_tokens = 2;
  kv::cache<float> c(cfg);
  for (int t = 0; t < 6; ++t) push(c, 0, 0, t);
  CHECK(c.free_pages() == 0);
  CHECK(c.used_bytes() == c.pool_bytes());
  // the last page has no room and the pool none left
  CHECK_THROWS_WITH_AS(push(c, 0, 0, 6), doctest::Contains("pool of 3 pages"), budget_error);
  CHECK_THROWS_WITH_AS(push(c, 1, 1, 0), doctest::Contains("pool of 3 pages"), budget_error);
  CHECK(c.size(0, 0) == 6); // nothing changed
  CHECK(c.size(1, 1) == 0);
  CHECK(c.page_ids(1, 1).empty());
  const std::int32_t freed = c.page_ids(0, 0)[2];
  const std::vector<std::int32_t> kept{0, 2, 3, 5};
  c.keep(0, 0, kept);
  CHECK(c.free_pages() == 1);
  push(c, 1, 1, 7);
  REQUIRE(c.page_ids(1, 1).size() == 1);
  CHECK(c.page_ids(1, 1)[0] == freed);
  push(c, 1, 1, 8); // same page, second slot
  CHECK(c.free_pages() == 0);
  CHECK_THROWS_AS(push(c, 1, 1, 9), budget_error);
  CHECK_THROWS_AS(push(c, 0, 0, 9), budget_error); // head 0's 2 pages are full too
  check_token(c, 1, 1, 0, 7);
  check_token(c, 1, 1, 1, 8);
  for (index_t i = 0; i < 4; ++i) check_token(c, 0, 0, i, kept[static_cast<std::size_t>(i)]);
  // clear one head: its pages come back; clear all: everything is free
  c.clear(0, 0);
  CHECK(c.size(0, 0) == 0);
  CHECK(c.free_pages() == 2);
  c.clear();
  CHECK(c.free_pages() == 3);
  CHECK(c.tokens() == 0);
  CHECK(c.used_bytes() == 0);
  for (int t = 0; t < 6; ++t) push(c, 1, 0, t); // the whole pool again, for another head
  for (int t = 0; t < 6; ++t) check_token(c, 1, 0, t, t);
}

TEST_CASE("kv::cache: bulk append equals single appends and is all or nothing") {
  kv::cache_config cfg = small(5);
  kv::cache<float> a(cfg), b(cfg);
  array<float> keys({12, 3}), values({12, 3}), state({12, 2}); // (N,D) (N,D) (N,state_slots)
  std::vector<std::int32_t> pos(12);
  for (index_t t = 0; t < 12; ++t) {
    for (index_t e = 0; e < 3; ++e) keys(t, e) = static_cast<float>(t * 3 + e), values(t, e) = -keys(t, e);
    state(t, 0) = static_cast<float>(t), state(t, 1) = 1.0f;
    pos[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t * 2);
  }
  a.append(0, 1, keys.cview(), values.cview(), pos, state.cview());
  for (index_t t = 0; t < 12; ++t)
    b.append(0, 1, std::span<const float>(&keys(t, 0), 3), std::span<const float>(&values(t, 0), 3),
             pos[static_cast<std::size_t>(t)], std::span<const float>(&state(t, 0), 2));
  REQUIRE(a.size(0, 1) == 12);
  CHECK(a.used_pages() == 3);
  for (index_t i = 0; i < 12; ++i) {
    for (std::size_t e = 0; e < 3; ++e) {
      CHECK(a.key(0, 1, i)[e] == b.key(0, 1, i)[e]);
      CHECK(a.value(0, 1, i)[e] == b.value(0, 1, i)[e]);
    }
    CHECK(a.position(0, 1, i) == b.position(0, 1, i));
    CHECK(a.state(0, 1, i)[0] == b.state(0, 1, i)[0]);
  }
  // strided input (every other row) and no state
  a.append(1, 0, keys.view().reshape({6, 6}).slice(1, 0, 3), values.view().reshape({6, 6}).slice(1, 3, 6),
           std::span<const std::int32_t>(pos.data(), 6));
  CHECK(a.size(1, 0) == 6);
  CHECK(a.key(1, 0, 2)[1] == keys(4, 1));
  CHECK(a.value(1, 0, 2)[1] == values(5, 1));
  CHECK(a.state(1, 0, 5)[1] == 0.0f);
  CHECK(a.free_pages() == 0);
  // 2 more tokens on (1, 0) fit its last page; 3 do not, and nothing is written
  CHECK_THROWS_AS(a.append(1, 0, keys.view().slice(0, 0, 3), values.view().slice(0, 0, 3),
                           std::span<const std::int32_t>(pos.data(), 3)),
                  budget_error);
  CHECK(a.size(1, 0) == 6);
  a.append(1, 0, keys.view().slice(0, 0, 2), values.view().slice(0, 0, 2), std::span<const std::int32_t>(pos.data(), 2));
  CHECK(a.size(1, 0) == 8);
  // shapes
  CHECK_THROWS_AS(a.append(0, 0, keys.cview(), values.view().slice(0, 0, 5), pos), shape_error);
  CHECK_THROWS_AS(a.append(0, 0, keys.cview(), values.cview(), std::span<const std::int32_t>(pos.data(), 3)), shape_error);
  CHECK_THROWS_AS(a.append(0, 0, keys.cview(), values.cview(), pos, keys.cview()), shape_error);
  CHECK_THROWS_AS(a.append(0, 0, state.cview(), state.cview(), pos), shape_error);
  a.append(0, 0, keys.view().slice(0, 0, 0), values.view().slice(0, 0, 0), std::span<const std::int32_t>()); // N = 0
  CHECK(a.size(0, 0) == 0);
}

TEST_CASE("kv::cache: config_error names the bad field; pages_for") {
  CHECK(kv::pages_for(0, 64) == 0);
  CHECK(kv::pages_for(1, 64) == 1);
  CHECK(kv::pages_for(64, 64) == 1);
  CHECK(kv::pages_for(65, 64) == 2);
  CHECK(kv::pages_for(9, 4) == 3);
  CHECK_THROWS_WITH_AS(kv::pages_for(10, 0), doctest::Contains("page_tokens = 0"), config_error);
  CHECK_THROWS_WITH_AS(kv::pages_for(-1, 4), doctest::Contains("tokens_per_head = -1"), config_error);

  auto bad = [](auto edit, const char* text) {
    kv::cache_config c = small();
    edit(c);
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(kv::cache<float>{c}, doctest::Contains(text), config_error);
  };
  bad([](kv::cache_config& c) { c.batch = 0; }, "batch = 0");
  bad([](kv::cache_config& c) { c.kv_heads = -2; }, "kv_heads = -2");
  bad([](kv::cache_config& c) { c.head_dim = 0; }, "head_dim = 0");
  bad([](kv::cache_config& c) { c.page_tokens = 0; }, "page_tokens = 0");
  bad([](kv::cache_config& c) { c.pages = 0; }, "pages = 0");
  bad([](kv::cache_config& c) { c.state_slots = -1; }, "state_slots = -1");
  bad([](kv::cache_config& c) { c.pages = index_t{1} << 30; c.page_tokens = 4; }, "pages = 1073741824");
  bad([](kv::cache_config& c) { c.head_dim = index_t{1} << 40; }, "head_dim = 1099511627776");
  CHECK_THROWS_AS(kv::cache<float>{kv::cache_config{}}, config_error); // the default has pages = 0
  kv::cache_config ok;
  ok.pages = 1;
  ok.state_slots = 0;
  kv::cache<bf16> c(ok); // defaults D = 128, page_tokens = 64: K, V 16384 B, positions 256 B, no state
  CHECK(c.page_bytes() == 2 * 16384 + 256);
  const std::vector<float> k(128, 1.0f);
  c.append(0, 0, k, k, 0);
  CHECK(c.state(0, 0, 0).empty());
}

TEST_CASE("kv::cache: bad kept lists, indices and spans throw typed errors and change nothing") {
  kv::cache<float> c(small());
  for (int t = 0; t < 6; ++t) push(c, 1, 1, t);
  using list = std::vector<std::int32_t>;
  CHECK_THROWS_WITH_AS(c.keep(1, 1, list{0, 6}), doctest::Contains("kept[1] = 6 out of range [0, 6)"), lookup_error);
  CHECK_THROWS_WITH_AS(c.keep(1, 1, list{-1, 2}), doctest::Contains("kept[0] = -1"), lookup_error);
  CHECK_THROWS_WITH_AS(c.keep(1, 1, list{1, 3, 3}), doctest::Contains("kept[2] = 3 after kept[1] = 3"), config_error);
  CHECK_THROWS_WITH_AS(c.keep(1, 1, list{4, 2}), doctest::Contains("kept[1] = 2 after kept[0] = 4"), config_error);
  // validation happens before any move: a bad tail leaves the head intact
  CHECK_THROWS_AS(c.keep(1, 1, list{1, 2, 5, 5}), config_error);
  CHECK(c.size(1, 1) == 6);
  CHECK(c.used_pages() == 2);
  for (int t = 0; t < 6; ++t) check_token(c, 1, 1, t, t);
  CHECK_THROWS_AS(c.keep(0, 0, list{0}), lookup_error); // empty head

  const std::vector<float> k3{1, 2, 3}, k2{1, 2};
  CHECK_THROWS_WITH_AS(c.append(2, 0, k3, k3, 0), doctest::Contains("sequence b = 2"), lookup_error);
  CHECK_THROWS_WITH_AS(c.append(0, -1, k3, k3, 0), doctest::Contains("KV head g = -1"), lookup_error);
  CHECK_THROWS_WITH_AS(c.append(0, 0, k2, k3, 0), doctest::Contains("expected D = 3"), shape_error);
  CHECK_THROWS_AS(c.append(0, 0, k3, k2, 0), shape_error);
  CHECK_THROWS_WITH_AS(c.append(0, 0, k3, k3, 0, k3), doctest::Contains("state_slots = 2"), shape_error);
  CHECK(c.size(0, 0) == 0);
  CHECK_THROWS_WITH_AS((void)c.key(1, 1, 6), doctest::Contains("token i = 6 out of range [0, 6)"), lookup_error);
  CHECK_THROWS_AS((void)c.value(1, 1, -1), lookup_error);
  CHECK_THROWS_AS((void)c.position(0, 0, 0), lookup_error);
  CHECK_THROWS_AS((void)c.state(1, 2, 0), lookup_error);
  CHECK_THROWS_AS((void)c.size(-1, 0), lookup_error);
  CHECK_THROWS_AS((void)c.pages(0, 2), lookup_error);
  CHECK_THROWS_AS(c.clear(0, 5), lookup_error);
}

namespace {
struct ref_token {
  std::vector<float> k, v, s; // as stored (rounded for bf16)
  std::int32_t pos;
};

template <class T>
void check_invariants(const kv::cache<T>& c, const std::vector<std::vector<ref_token>>& ref) {
  const index_t G = c.kv_heads();
  REQUIRE(c.used_pages() <= c.total_pages());
  REQUIRE(c.free_pages() >= 0);
  REQUIRE(c.free_pages() + c.used_pages() == c.total_pages());
  REQUIRE(c.used_bytes() <= c.pool_bytes());
  REQUIRE(c.used_bytes() == static_cast<std::size_t>(c.used_pages()) * c.page_bytes());
  std::set<std::int32_t> ids;
  index_t owned = 0;
  for (index_t b = 0; b < c.batch(); ++b)
    for (index_t g = 0; g < G; ++g) {
      CAPTURE(b);
      CAPTURE(g);
      const auto& h = ref[static_cast<std::size_t>(b * G + g)];
      const auto n = static_cast<index_t>(h.size());
      REQUIRE(c.size(b, g) == n);
      const auto pid = c.page_ids(b, g);
      REQUIRE(static_cast<index_t>(pid.size()) == kv::pages_for(n, c.page_tokens())); // no page kept idle
      for (const std::int32_t p : pid) {
        REQUIRE(p >= 0);
        REQUIRE(p < c.total_pages());
        REQUIRE(ids.insert(p).second); // no page owned twice
      }
      owned += static_cast<index_t>(pid.size());
      for (index_t i = 0; i < n; ++i) {
        const ref_token& r = h[static_cast<std::size_t>(i)];
        REQUIRE(c.position(b, g, i) == r.pos);
        for (std::size_t e = 0; e < r.k.size(); ++e) {
          REQUIRE(as_float(c.key(b, g, i)[e]) == r.k[e]);
          REQUIRE(as_float(c.value(b, g, i)[e]) == r.v[e]);
        }
        for (std::size_t e = 0; e < r.s.size(); ++e) REQUIRE(c.state(b, g, i)[e] == r.s[e]);
      }
      index_t walked = 0;
      for (const auto p : c.pages(b, g)) {
        REQUIRE(p.first == walked);
        for (index_t r = 0; r < p.tokens; ++r) {
          REQUIRE(p.positions[r] == h[static_cast<std::size_t>(walked)].pos);
          REQUIRE(p.keys + r * c.head_dim() == c.key(b, g, walked).data());
          REQUIRE(p.values + r * c.head_dim() == c.value(b, g, walked).data());
          ++walked;
        }
      }
      REQUIRE(walked == n);
    }
  REQUIRE(owned == c.used_pages());
}

template <class T>
void random_run(std::uint32_t seed, int ops) {
  kv::cache_config cfg;
  cfg.batch = 2;
  cfg.kv_heads = 3;
  cfg.head_dim = 5;
  cfg.page_tokens = 3;
  cfg.pages = 14;
  cfg.state_slots = 2;
  kv::cache<T> c(cfg);
  const index_t heads = cfg.batch * cfg.kv_heads;
  std::vector<std::vector<ref_token>> ref(static_cast<std::size_t>(heads));
  std::vector<std::int32_t> next_pos(static_cast<std::size_t>(heads), 0);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> val(-4.0f, 4.0f);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint32_t>(n)); };
  auto make = [&](std::size_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = val(rng);
    return x;
  };
  int appended = 0, refused = 0, kept_ops = 0, bulk = 0;
  for (int op = 0; op < ops; ++op) {
    CAPTURE(op);
    const int kind = pick(100);
    const index_t h = pick(static_cast<int>(heads)), b = h / cfg.kv_heads, g = h % cfg.kv_heads;
    auto& hr = ref[static_cast<std::size_t>(h)];
    const auto n = static_cast<index_t>(hr.size());
    if (kind < 55) { // one token
      const auto k = make(5), v = make(5), s = make(2);
      const std::int32_t pos = next_pos[static_cast<std::size_t>(h)] + pick(3);
      const bool fits = n % cfg.page_tokens != 0 || c.free_pages() > 0;
      if (fits) {
        c.append(b, g, k, v, pos, s);
        ref_token t{{}, {}, s, pos};
        for (float x : k) t.k.push_back(stored<T>(x));
        for (float x : v) t.v.push_back(stored<T>(x));
        hr.push_back(t);
        next_pos[static_cast<std::size_t>(h)] = pos + 1;
        ++appended;
      } else {
        REQUIRE_THROWS_AS(c.append(b, g, k, v, pos, s), budget_error);
        ++refused;
      }
    } else if (kind < 62) { // a prefill-sized block, no state
      const index_t m = pick(8);
      array<float> kk({m, 5}), vv({m, 5}); // (N,D) (N,D)
      std::vector<std::int32_t> pos(static_cast<std::size_t>(m));
      for (index_t t = 0; t < m; ++t) {
        for (index_t e = 0; e < 5; ++e) kk(t, e) = val(rng), vv(t, e) = val(rng);
        pos[static_cast<std::size_t>(t)] = next_pos[static_cast<std::size_t>(h)] + static_cast<std::int32_t>(t);
      }
      if (kv::pages_for(n + m, cfg.page_tokens) - kv::pages_for(n, cfg.page_tokens) <= c.free_pages()) {
        c.append(b, g, kk.cview(), vv.cview(), pos);
        for (index_t t = 0; t < m; ++t) {
          ref_token tok{{}, {}, {0.0f, 0.0f}, pos[static_cast<std::size_t>(t)]};
          for (index_t e = 0; e < 5; ++e) tok.k.push_back(stored<T>(kk(t, e))), tok.v.push_back(stored<T>(vv(t, e)));
          hr.push_back(tok);
        }
        next_pos[static_cast<std::size_t>(h)] += static_cast<std::int32_t>(m);
        ++bulk;
      } else {
        REQUIRE_THROWS_AS(c.append(b, g, kk.cview(), vv.cview(), pos), budget_error);
        ++refused;
      }
    } else if (kind < 95) { // keep a random ascending subset
      std::vector<std::int32_t> kept;
      const int density = pick(101);
      for (index_t i = 0; i < n; ++i)
        if (pick(100) < density) kept.push_back(static_cast<std::int32_t>(i));
      c.keep(b, g, kept);
      std::vector<ref_token> next;
      for (std::int32_t i : kept) next.push_back(hr[static_cast<std::size_t>(i)]);
      hr = next;
      ++kept_ops;
    } else if (kind < 99) {
      c.clear(b, g);
      hr.clear();
    } else {
      c.clear();
      for (auto& r : ref) r.clear();
    }
    check_invariants(c, ref);
  }
  // the run reached every regime
  CHECK(appended > ops / 4);
  CHECK(refused > 0);
  CHECK(kept_ops > ops / 10);
  CHECK(bulk > 0);
}
} // namespace

TEST_CASE_TEMPLATE("kv::cache: random appends, keeps and clears match a naive model after every operation", T, float,
                   bf16) {
  random_run<T>(20240917u, 4000);
  random_run<T>(7u, 2000);
}
