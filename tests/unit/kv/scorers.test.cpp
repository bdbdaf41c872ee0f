// SPDX-License-Identifier: MIT
// kv/ one-shot scorers, budgets and selection against fixtures made from kvpress 0.5.5's own
// press code (tools/make_kv_fixtures.py; snapkv_paper and h2o are PyTorch re-implementations of
// the published formulas there), plus hand-derived cases: ties, sinks, windows, GQA averaging,
// budget larger than the length, budget 0, bad shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/io/safetensors.hpp"
#include "membound/kv/kv.hpp"

using namespace membound;

namespace {
const io::safetensors& fx() {
  static const io::safetensors f = io::safetensors::open(MEMBOUND_FIXTURES_DIR "/kv/scorers.safetensors");
  return f;
}
nlohmann::json meta() {
  std::ifstream f(MEMBOUND_FIXTURES_DIR "/kv/scorers.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}
kv::prefill_inputs inputs(const std::string& prefix = "") {
  kv::prefill_inputs in;
  in.queries = fx().get<float>(prefix + "queries");
  in.keys = fx().get<float>(prefix + "keys");
  in.values = prefix.empty() ? fx().get<float>("values") : view<const float>();
  if (prefix.empty()) in.queries_pre_rope = fx().get<float>("queries_pre_rope");
  return in;
}
// scores within tol relative to the largest magnitude of the reference row set
void check_scores(view<const float> got, view<const float> want, double tol) {
  REQUIRE(got.extent(0) == want.extent(0));
  REQUIRE(got.extent(1) == want.extent(1));
  double scale = 0.0;
  for (index_t g = 0; g < want.extent(0); ++g)
    for (index_t i = 0; i < want.extent(1); ++i) scale = std::max(scale, std::abs(static_cast<double>(want(g, i))));
  for (index_t g = 0; g < want.extent(0); ++g)
    for (index_t i = 0; i < want.extent(1); ++i) {
      CAPTURE(g);
      CAPTURE(i);
      CHECK(std::abs(static_cast<double>(got(g, i)) - want(g, i)) <= tol * scale);
    }
}
template <class Policy>
void check_policy(const Policy& p, const std::string& fname, const std::string& prefix = "", double tol = 1e-5) {
  CAPTURE(fname);
  auto in = inputs(prefix);
  if (prefix == "long.") in.values = in.keys; // the long case stores no values; no long scorer reads them
  array<float> scores({in.kv_heads(), in.length()}); // (G,S)
  const nlohmann::json m = meta();
  const bool long_case = prefix == "long.";
  for (const char* r : {"r50", "r90"}) {
    CAPTURE(r);
    const index_t n_kept = long_case ? m["long_case"]["n_kept"][r].get<index_t>() : m["n_kept"][r].get<index_t>();
    p.score(in, n_kept, scores.view());
    std::string sname = prefix + "score." + fname;
    if (fname == "streaming_llm" && std::string(r) == "r90") sname += ".r90";
    if (fx().contains(sname)) check_scores(scores.cview(), fx().get<float>(sname), tol);
    const std::string kname = prefix + "kept." + fname + "." + r;
    if (!fx().contains(kname)) continue;
    const auto want = fx().get<std::int32_t>(kname);
    array<std::int32_t> kept({in.kv_heads(), n_kept}); // (G,n_kept)
    kv::select_kept(scores.cview(), kept.view());
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t j = 0; j < n_kept; ++j) {
        CAPTURE(g);
        CAPTURE(j);
        CHECK(kept(g, j) == want(g, j));
      }
  }
}
} // namespace

TEST_CASE("kept_count: kvpress's int(n (1 - r)) in double beside the exact count") {
  CHECK(kv::kept_count(100, 0.9) == 9); // 100 * 0.1 = 9.999999999999998
  CHECK(kv::kept_count(100, 0.9, kv::count_rule::exact) == 10);
  CHECK(kv::kept_count(100, 0.5) == 50);
  CHECK(kv::kept_count(700, 0.9) == 69);
  CHECK(kv::kept_count(700, 0.9, kv::count_rule::exact) == 70);
  CHECK(kv::kept_count(3, 0.99) == 1); // kvpress clamps to 1
  CHECK(kv::kept_count(10, 0.0) == 10);
  CHECK(kv::kept_count(0, 0.5) == 0);
  CHECK(kv::kept_count(7, 1.0 / 3.0, kv::count_rule::exact) == 4); // 7 - ceil(2.333)
  CHECK_THROWS_WITH_AS(kv::kept_count(3, 0.99, kv::count_rule::exact), doctest::Contains("keeps none"), budget_error);
  CHECK_THROWS_WITH_AS(kv::kept_count(10, 1.0), doctest::Contains("[0, 1)"), config_error);
  CHECK_THROWS_AS(kv::kept_count(10, -0.1), config_error);
}

TEST_CASE("scorers match kvpress 0.5.5 (scores and kept sets)") {
  check_policy(kv::knorm{}, "knorm");
  check_policy(kv::keydiff{}, "keydiff");
  check_policy(kv::streaming_llm{}, "streaming_llm");
  check_policy(kv::observed_attention{}, "observed_attention");
  check_policy(kv::tova{}, "tova");
  check_policy(kv::expected_attention{}, "expected_attention", "", 2e-5);
  // n = 100: kept sets of snapkv are decided by torch.topk among tied protected tokens (see
  // scorers.json "tied_at_cut"); the fixture fills them by "keep the newer", our tie rule.
  check_policy(kv::snapkv{}, "snapkv");
  check_policy(kv::snapkv::paper(), "snapkv_paper");
  check_policy(kv::snapkv{}, "snapkv", "long.");
  check_policy(kv::snapkv::paper(), "snapkv_paper", "long.");
  check_policy(kv::knorm{}, "knorm", "long.");
}

TEST_CASE("h2o accumulation equals the original H2O sum; observed_attention is it over (S - i)") {
  const auto in = inputs();
  array<float> a({2, 100}), b({2, 100}); // (G,S)
  kv::h2o{}.score(in, 50, a.view());
  check_scores(a.cview(), fx().get<float>("h2o_accum"), 1e-5);
  kv::observed_attention{}.score(in, 50, b.view());
  for (index_t i = 0; i < 100; ++i) CHECK(b(0, i) == doctest::Approx(a(0, i) / static_cast<float>(100 - i)).epsilon(1e-5));
}

TEST_CASE("AdaKV head-wise allocation matches kvpress's AdaKVPress masks") {
  for (const char* r : {"r50", "r90"})
    for (const char* inner : {"snapkv", "knorm"}) {
      CAPTURE(r);
      CAPTURE(inner);
      const nlohmann::json m = meta();
      const index_t n_kept = m["long_case"]["n_kept"][r].get<index_t>();
      const auto want = fx().get<std::int32_t>(std::string("long.keptmask.adakv_") + inner + "." + r);
      const auto scores = fx().get<float>(std::string("long.score.") + inner);
      array<std::int32_t> keep({2, 700}); // (G,S)
      kv::adakv_allocate(scores, n_kept, 0.2, keep.view());
      index_t total = 0, h1 = 0;
      for (index_t g = 0; g < 2; ++g)
        for (index_t i = 0; i < 700; ++i) {
          CHECK(keep(g, i) == want(g, i));
          total += keep(g, i);
          h1 += g == 1 ? keep(g, i) : 0;
        }
      CHECK(total == 2 * n_kept); // the layer keeps G n_kept; heads differ
      if (std::string(inner) == "knorm") CHECK(h1 != n_kept);
    }
  // the short case: AdaKV over the snapkv scores, cut among tied window tokens (rule-filled)
  const auto want = fx().get<std::int32_t>("keptmask.adakv_snapkv.r50");
  array<std::int32_t> keep({2, 100}); // (G,S)
  kv::adakv_allocate(fx().get<float>("score.snapkv"), 50, 0.2, keep.view());
  for (index_t i = 0; i < 200; ++i) CHECK(keep.cview().span()[static_cast<std::size_t>(i)] == want.span()[static_cast<std::size_t>(i)]);
}

TEST_CASE("PyramidKV per-layer budgets match kvpress's get_layer_budget") {
  for (index_t n : {100, 1000, 16384})
    for (auto [rk, r] : {std::pair{"r50", 0.5}, std::pair{"r90", 0.9}}) {
      const auto want = fx().get<std::int32_t>("pyramid.n" + std::to_string(n) + "." + rk);
      const auto got = kv::pyramid_budgets(n, r, 8, 64, 20.0);
      REQUIRE(got.size() == 8u);
      for (index_t l = 0; l < 8; ++l) CHECK(got[static_cast<std::size_t>(l)] == want(l));
    }
  // The mean over layers is the uniform budget when the pyramid applies (kvpress's own test).
  const auto b = kv::pyramid_budgets(16384, 0.5, 8);
  double mean = 0;
  for (auto v : b) mean += static_cast<double>(v) / 8.0;
  CHECK(std::abs(mean - 8192.0) <= 1.0);
  CHECK(b.front() > b.back());
  CHECK_THROWS_AS(kv::pyramid_budgets(100, 0.5, 0), config_error);
}

TEST_CASE("hand-derived selections: ties, sinks, windows, GQA averaging, budgets") {
  // ties keep the newer token; NaN is evicted first; output ascending
  array<float> s({1, 6}); // (G,S)
  const float v[] = {1.0f, 3.0f, 1.0f, std::nanf(""), 3.0f, 1.0f};
  for (index_t i = 0; i < 6; ++i) s(0, i) = v[i];
  array<std::int32_t> k3({1, 3}); // (G,n_kept)
  kv::select_kept(s.cview(), k3.view());
  CHECK(k3(0, 0) == 1);
  CHECK(k3(0, 1) == 4);
  CHECK(k3(0, 2) == 5); // of the three 1.0 ties, the newest
  array<std::int32_t> k6({1, 6}); // budget = length keeps everything
  kv::select_kept(s.cview(), k6.view());
  for (index_t i = 0; i < 6; ++i) CHECK(k6(0, i) == i);
  array<std::int32_t> k7({1, 7}), k0({1, 0}); // budget larger than the length, and budget 0
  CHECK_THROWS_WITH_AS(kv::select_kept(s.cview(), k7.view()), doctest::Contains("n_kept = 7 of 6"), budget_error);
  CHECK_THROWS_AS(kv::select_kept(s.cview(), k0.view()), budget_error);

  // streaming_llm: 2 sinks + the last 3 of 10
  array<float> keys({1, 10, 2}), q({2, 10, 2}), sc({1, 10}); // (G,S,D) (H,T,D) (G,S)
  for (float& e : keys.view().span()) e = 1.0f;
  for (float& e : q.view().span()) e = 0.0f;
  kv::prefill_inputs in;
  in.queries = q.cview();
  in.keys = in.values = keys.cview();
  kv::streaming_llm{2}.score(in, 5, sc.view());
  array<std::int32_t> kept({1, 5}); // (G,n_kept)
  kv::select_kept(sc.cview(), kept.view());
  const int want[] = {0, 1, 7, 8, 9};
  for (index_t j = 0; j < 5; ++j) CHECK(kept(0, j) == want[j]);
  // fewer kept than sinks (kvpress: the pruned slice runs to the end): the tied sinks fill the
  // budget, the newer ones first, and nothing throws
  kv::streaming_llm{4}.score(in, 3, sc.view());
  for (index_t i = 0; i < 10; ++i) CHECK(sc(0, i) == (i < 4 ? 1.0f : 0.0f));
  array<std::int32_t> kept3({1, 3});
  kv::select_kept(sc.cview(), kept3.view());
  const int want3[] = {1, 2, 3};
  for (index_t j = 0; j < 3; ++j) CHECK(kept3(0, j) == want3[j]);
  CHECK_THROWS_AS(kv::streaming_llm{-1}.score(in, 3, sc.view()), config_error);

  // GQA: two query heads over one KV head; tova averages over all heads. Keys e0, e1 alternate;
  // head 0's last query points at e0, head 1's (3x stronger) at e1.
  for (index_t i = 0; i < 10; ++i) {
    keys(0, i, 0) = i % 2 == 0 ? 1.0f : 0.0f;
    keys(0, i, 1) = i % 2 == 0 ? 0.0f : 1.0f;
  }
  q(0, 9, 0) = 2.0f;
  q(1, 9, 1) = 6.0f;
  kv::tova{}.score(in, 5, sc.view());
  CHECK(sc(0, 9) > sc(0, 1)); // last token protected
  CHECK(sc(0, 1) > sc(0, 0)); // odd tokens (e1) win on the head average
  // snapkv needs S > window
  CHECK_THROWS_WITH_AS(kv::snapkv{}.score(in, 5, sc.view()), doctest::Contains("window 64"), config_error);
  // bad shapes name them
  array<float> bad({3, 10, 2}); // (H,T,D): 3 query heads cannot share 2 KV heads
  array<float> keys2({2, 10, 2}); // (G,S,D)
  kv::prefill_inputs in2;
  in2.queries = bad.cview();
  in2.keys = in2.values = keys2.cview();
  array<float> sc2({2, 10}); // (G,S)
  CHECK_THROWS_WITH_AS(kv::knorm{}.score(in2, 5, sc2.view()), doctest::Contains("3 query heads over 2 KV heads"), shape_error);
  CHECK_THROWS_AS(kv::knorm{}.score(in, 5, sc2.view()), shape_error);
}
