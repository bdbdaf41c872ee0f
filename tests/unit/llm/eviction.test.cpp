// SPDX-License-Identifier: MIT
// Eviction inside llm::model: every kv/ policy by name, at budgets that keep everything (the result
// must equal the full cache) and at budgets that cut (heads stay within budget + buffer - 1, the
// pool is sized from the budget, the prefill's attention mass equals the decode path's).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/kv/retention_gate.hpp"
#include "membound/llm/generate.hpp"
#include "llm_fixtures.hpp"
#include "membound/nn/parameters.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {
using llm_test::fixtures;
using llm_test::prompt_of;

/// Prefill in chunks, then `steps` teacher-forced decode steps (token = step index); returns every
/// step's logits, and checks after each call that no head holds more than budget + buffer - 1.
std::vector<float> run(const llm::model& m, llm::state& s, const std::vector<std::int32_t>& prompt, int steps) {
  const index_t V = m.config().vocab_size;
  array<float> row({1, V});
  std::vector<float> all;
  m.prefill(s, 0, prompt, row.view());
  const auto check_sizes = [&] {
    const llm::eviction& ev = s.eviction();
    if (ev.keeps_all()) return;
    const index_t G = m.config().num_kv_heads;
    index_t model_total = 0;
    for (index_t l = 0; l < s.layers(); ++l) {
      index_t layer_total = 0;
      for (index_t g = 0; g < G; ++g) {
        layer_total += s.cache(l).size(0, g);
        if (!ev.by_score()) CHECK(s.cache(l).size(0, g) <= s.budget(l) + ev.buffer - 1);
        else CHECK(s.cache(l).size(0, g) >= std::min<index_t>(ev.head_floor(), s.position(0)));
      }
      if (ev.alloc == llm::eviction::allocation::adakv) CHECK(layer_total <= G * (s.budget(l) + ev.buffer - 1));
      model_total += layer_total;
    }
    if (ev.alloc == llm::eviction::allocation::global) CHECK(model_total <= s.layers() * G * (ev.budget + ev.buffer - 1));
  };
  check_sizes();
  all.insert(all.end(), row.span().begin(), row.span().end());
  for (int i = 0; i < steps; ++i) {
    const std::int32_t tok = 3 + i;
    m.decode(s, std::span<const std::int32_t>(&tok, 1), row.view());
    check_sizes();
    all.insert(all.end(), row.span().begin(), row.span().end());
  }
  return all;
}
} // namespace

TEST_CASE("llm eviction: with a budget >= the sequence every policy equals the full cache") {
  for (const char* model : {"llama_gqa", "qwen3"}) {
    CAPTURE(model);
    const llm::model m = llm::model::load(fixtures / model);
    const std::vector<std::int32_t> prompt = prompt_of(model);
    llm::state ref_state = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 5});
    const std::vector<float> want = run(m, ref_state, prompt, 8);
    std::vector<std::string> names(std::begin(llm::policy_names), std::end(llm::policy_names));
    for (const char* a : {"h2o@adakv", "snapkv@global", "tova@global", "keydiff@adakv"}) names.emplace_back(a);
    for (const std::string& name : names) {
      CAPTURE(name);
      llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 5}, llm::eviction::named(name, 32));
      CHECK(run(m, s, prompt, 8) == want);
      CHECK(s.cache_bytes() == ref_state.cache_bytes());
    }
  }
}

TEST_CASE("llm eviction: small budgets cut every head, size the pool from the budget, and change the result") {
  const llm::model m = llm::model::load(fixtures / "qwen2");
  const std::vector<std::int32_t> prompt = prompt_of("qwen2");
  const index_t G = m.config().num_kv_heads, L = m.config().num_layers;
  llm::state full = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 4});
  const std::vector<float> want = run(m, full, prompt, 10);
  for (std::string_view name : llm::policy_names) {
    if (name == "full") continue;
    CAPTURE(name);
    for (index_t buffer : {index_t(1), index_t(3)}) {
      CAPTURE(buffer);
      llm::eviction ev = llm::eviction::named(name, 6, buffer);
      llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 4}, ev);
      const std::vector<float> got = run(m, s, prompt, 10);
      CHECK(got != want);
      // the pool holds budget + buffer - 1 + chunk tokens per head, not max_tokens
      for (index_t l = 0; l < L; ++l)
        CHECK(s.cache(l).total_pages() == G * kv::pages_for(6 + buffer - 1 + 4, 4));
      CHECK(s.cache_bytes() < full.cache_bytes());
    }
  }
  // streaming_llm keeps the 4 sinks and the newest tokens
  llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 4}, llm::eviction::named("streaming_llm", 6));
  (void)run(m, s, prompt, 10); // positions 0 .. 22
  for (index_t l = 0; l < L; ++l)
    for (index_t g = 0; g < G; ++g) {
      std::vector<std::int32_t> pos;
      for (index_t i = 0; i < s.cache(l).size(0, g); ++i) pos.push_back(s.cache(l).position(0, g, i));
      CHECK(pos == std::vector<std::int32_t>{0, 1, 2, 3, 21, 22});
    }
  CHECK_THROWS_AS(llm::eviction::named("h2o_typo", 8), config_error);
  CHECK_THROWS_AS(llm::eviction::named("h2o", -1), config_error);
}

TEST_CASE("llm eviction: prefill's attention mass (column sums) equals the decode path's") {
  // budget 5, buffer 8: the first cut comes when a head reaches 13 tokens, the prompt's length,
  // both when the prompt is one chunk (mass from kv::attention_column_sums) and when it is fed a
  // token at a time (mass from kv::attend_decode), so both cut on the same accumulated scores.
  const llm::model m = llm::model::load(fixtures / "llama_gqa");
  const std::vector<std::int32_t> prompt = prompt_of("llama_gqa");
  REQUIRE(prompt.size() == 13);
  for (const char* name : {"h2o", "tova", "snapkv", "expected_attention", "knorm", "keydiff"}) {
    CAPTURE(name);
    const auto kept = [&](index_t chunk) {
      llm::eviction ev = llm::eviction::named(name, 5, 8);
      llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = chunk}, ev);
      m.prefill(s, 0, prompt);
      std::vector<std::int32_t> pos;
      for (index_t l = 0; l < s.layers(); ++l)
        for (index_t g = 0; g < m.config().num_kv_heads; ++g)
          for (index_t i = 0; i < s.cache(l).size(0, g); ++i) pos.push_back(s.cache(l).position(0, g, i));
      return pos;
    };
    const std::vector<std::int32_t> one = kept(13), each = kept(1);
    CHECK(one.size() == static_cast<std::size_t>(5 * m.config().num_layers * m.config().num_kv_heads));
    CHECK(one == each);
  }
}

TEST_CASE("llm eviction: adakv and global split the budget between heads by score, as kv/'s allocators do") {
  // One chunk: every layer's keys are the full cache's when the cut comes, so the kept tokens
  // must be kv::adakv_allocate's (per layer) and kv::global_allocate's (all layers) on the
  // knorm scores of the full cache.
  const llm::model m = llm::model::load(fixtures / "llama_gqa");
  const std::vector<std::int32_t> prompt = prompt_of("llama_gqa");
  const index_t G = m.config().num_kv_heads, L = m.config().num_layers, T = static_cast<index_t>(prompt.size());
  REQUIRE(G >= 2);
  const index_t budget = 5;
  llm::state full = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = T});
  m.prefill(full, 0, prompt);
  std::vector<array<float>> scores;
  std::vector<array<std::int32_t>> want_ada, want_glob;
  for (index_t l = 0; l < L; ++l) {
    array<float> sc({G, T});
    for (index_t g = 0; g < G; ++g)
      kv::knorm{}.score_decode(full.cache(l), 0, g, static_cast<std::int32_t>(T - 1),
                               std::span<float>(&sc(g, 0), static_cast<std::size_t>(T)));
    array<std::int32_t> keep({G, T});
    kv::adakv_allocate(sc.cview(), budget, 0.2, keep.view());
    want_ada.push_back(std::move(keep));
    want_glob.emplace_back(std::initializer_list<index_t>{G, T});
    scores.push_back(std::move(sc));
  }
  std::vector<view<const float>> sv;
  std::vector<view<std::int32_t>> mv;
  for (index_t l = 0; l < L; ++l) {
    sv.push_back(scores[static_cast<std::size_t>(l)].cview());
    mv.push_back(want_glob[static_cast<std::size_t>(l)].view());
  }
  kv::global_allocate(sv, L * G * budget, 1, mv);

  for (const char* name : {"knorm@adakv", "knorm@global"}) {
    CAPTURE(name);
    const bool ada = std::string_view(name).ends_with("adakv");
    llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = T}, llm::eviction::named(name, budget));
    m.prefill(s, 0, prompt);
    bool uneven = false;
    index_t total = 0;
    for (index_t l = 0; l < L; ++l) {
      const array<std::int32_t>& want = (ada ? want_ada : want_glob)[static_cast<std::size_t>(l)];
      for (index_t g = 0; g < G; ++g) {
        std::vector<std::int32_t> got, expect;
        for (index_t i = 0; i < s.cache(l).size(0, g); ++i) got.push_back(s.cache(l).position(0, g, i));
        for (index_t i = 0; i < T; ++i)
          if (want(g, i) != 0) expect.push_back(static_cast<std::int32_t>(i));
        CHECK(got == expect);
        uneven = uneven || s.cache(l).size(0, g) != budget;
        total += s.cache(l).size(0, g);
      }
    }
    CHECK(uneven); // heads keep different counts
    CHECK(total == L * G * budget);
    // decoding keeps the count exact (buffer 1) and the pages within the budget's
    llm::state d = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 4}, llm::eviction::named(name, budget));
    (void)run(m, d, prompt, 12);
    index_t held = 0;
    for (index_t l = 0; l < L; ++l)
      for (index_t g = 0; g < G; ++g) held += d.cache(l).size(0, g);
    CHECK(held == L * G * budget);
    CHECK(d.cache_bytes() <= static_cast<std::size_t>(L * (kv::pages_for(L * G * budget, 4) + G)) * d.cache(0).page_bytes());
  }
  CHECK_THROWS_AS(llm::eviction::named("knorm@everywhere", 8), config_error);
  llm::eviction thr;
  thr.policy = kv::trim_kv{0, 0.5, 0}; // threshold mode: keeps what passes, no budget to split
  thr.budget = 8;
  thr.alloc = llm::eviction::allocation::adakv;
  std::string what;
  try {
    (void)m.make_state({.batch = 1, .max_tokens = 64}, thr);
  } catch (const config_error& e) {
    what = e.what();
  }
  CHECK(what.find("threshold mode") != std::string::npos);
}

TEST_CASE("llm eviction: a batch evicts each sequence on its own; pyramid budgets per layer") {
  const llm::model m = llm::model::load(fixtures / "mistral");
  llm::eviction ev = llm::eviction::named("knorm", 6);
  llm::state s = m.make_state({.batch = 2, .max_tokens = 64, .page_tokens = 4, .chunk = 4}, ev);
  const std::vector<std::int32_t> a = prompt_of("mistral");
  const std::vector<std::int32_t> b(a.begin(), a.begin() + 4);
  m.prefill(s, 0, a);
  m.prefill(s, 1, b);
  for (index_t g = 0; g < m.config().num_kv_heads; ++g) {
    CHECK(s.cache(0).size(0, g) == 6);
    CHECK(s.cache(0).size(1, g) == 4);
  }
  llm::eviction pyr = llm::eviction::named("snapkv", 8);
  pyr.alloc = llm::eviction::allocation::pyramid;
  pyr.pyramid_length = 32;
  const std::vector<index_t> budgets = pyr.layer_budgets(2);
  CHECK(budgets[0] > budgets[1]); // PyramidKV: more in the lower layers
  CHECK(budgets[0] == 16); // round(2 x 8 - 8 / 20)
  CHECK(budgets[1] == 1);  // max(1, round(8 / 20))
  llm::state p = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 4}, pyr);
  (void)run(m, p, a, 12);
  CHECK(p.budget(0) == budgets[0]);
}

TEST_CASE("llm eviction: trim_kv reads its retention gates from their own file and keeps the longest-lasting tokens") {
  const llm::model m = llm::model::load(fixtures / "llama_gqa");
  const io::model_config& cfg = m.config();
  const index_t C = cfg.hidden_size, G = cfg.num_kv_heads;
  // random gates under the official names, scaled so that betas differ between tokens
  nn::parameters p;
  for (index_t l = 0; l < cfg.num_layers; ++l)
    (void)kv::retention_gate::make(p, "model.layers." + std::to_string(l) + ".self_attn.retention_gate", C, G, 16,
                                   nn::activation::silu, 1.0f, static_cast<unsigned>(l + 1));
  for (std::size_t i = 0; i < p.size(); ++i)
    for (float& v : p[i].value.span()) v *= 40.0f;
  const fs::path file = fs::temp_directory_path() / "membound_test_gates.safetensors";
  p.save(file);
  const auto gates = llm::retention_gates::load(file, cfg);
  fs::remove(file);
  CHECK(gates->layers() == cfg.num_layers);
  CHECK_THROWS_AS(llm::eviction::named("trim_kv", 8), config_error); // no gates

  const std::vector<std::int32_t> prompt = prompt_of("llama_gqa");
  const index_t T = static_cast<index_t>(prompt.size());
  // layer 0's log beta, independently: the gate on RMSNorm(embedding) * w (double precision norm)
  kv::retention_gate g0 = gates->gates()[0];
  array<float> h({T, C}), lb({T, G});
  const view<const float> emb = m.weights().embed().as<float>();
  const array<float>& w = m.weights().layers()[0].input_norm;
  for (index_t t = 0; t < T; ++t) {
    double ss = 0.0;
    for (index_t c = 0; c < C; ++c) ss += static_cast<double>(emb(prompt[static_cast<std::size_t>(t)], c)) * emb(prompt[static_cast<std::size_t>(t)], c);
    const double r = 1.0 / std::sqrt(ss / static_cast<double>(C) + cfg.rms_norm_eps);
    for (index_t c = 0; c < C; ++c) h(t, c) = static_cast<float>(emb(prompt[static_cast<std::size_t>(t)], c) * r * w[c]);
  }
  g0.forward(h.cview(), lb.view());

  // no cut (budget above the length): the stored log betas are the gate's, the logits the full cache's
  llm::state all = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4}, llm::eviction::named("trim_kv", 64, 1, gates));
  llm::state ref = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4});
  CHECK(run(m, all, prompt, 4) == run(m, ref, prompt, 4));
  for (index_t g = 0; g < G; ++g)
    for (index_t t = 0; t < T; ++t) CHECK(all.cache(0).state(0, g, t)[0] == doctest::Approx(lb(t, g)).epsilon(1e-4));

  // one cut after the prompt (one chunk): layer 0 keeps the 6 largest (T - 1 - i) log beta_i
  llm::state cut = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4}, llm::eviction::named("trim_kv", 6, 1, gates));
  m.prefill(cut, 0, prompt);
  for (index_t g = 0; g < G; ++g) {
    std::vector<std::pair<double, index_t>> score;
    for (index_t i = 0; i < T; ++i) score.emplace_back(static_cast<double>(T - 1 - i) * lb(i, g), i);
    std::sort(score.begin(), score.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second > b.second); });
    std::vector<std::int32_t> want;
    for (int k = 0; k < 6; ++k) want.push_back(static_cast<std::int32_t>(score[static_cast<std::size_t>(k)].second));
    std::sort(want.begin(), want.end());
    std::vector<std::int32_t> got;
    for (index_t i = 0; i < cut.cache(0).size(0, g); ++i) got.push_back(cut.cache(0).position(0, g, i));
    CHECK(got == want);
  }

  // trim_kv@global: the model's L G 6 tokens go to the largest retention scores of all layers; the
  // newest token of every head holds its floor (age 0: score 0, the largest a log beta allows)
  llm::state glob = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4}, llm::eviction::named("trim_kv@global", 6, 1, gates));
  (void)run(m, glob, prompt, 3);
  index_t held = 0;
  bool uneven = false;
  for (index_t l = 0; l < cfg.num_layers; ++l)
    for (index_t g = 0; g < G; ++g) {
      const index_t n = glob.cache(l).size(0, g);
      held += n;
      uneven = uneven || n != 6;
      CHECK(glob.cache(l).position(0, g, n - 1) == static_cast<std::int32_t>(T + 2));
    }
  CHECK(held == cfg.num_layers * G * 6);
  CHECK(uneven);
}

TEST_CASE("llm eviction: under a sliding window a chunk's attention mass equals the token-by-token one") {
  // mistral_window attends over 5 positions. One 13-token chunk (rows past the window attend one at
  // a time over their own keys) and 13 chunks of one token (the cache rolls) give every token still
  // visible to the last query the same H2O mass (the sum of its attention over the queries that saw
  // it) and the same TOVA attention; the rolled cache holds just the window.
  const llm::model m = llm::model::load(fixtures / "mistral_window");
  REQUIRE(m.config().sliding_window == 5);
  const std::vector<std::int32_t> prompt = prompt_of("mistral_window");
  const index_t T = static_cast<index_t>(prompt.size()), G = m.config().num_kv_heads, W = 5;
  for (const char* name : {"h2o", "tova"}) {
    CAPTURE(name);
    const index_t slot = std::string_view(name) == "h2o" ? 0 : 1;
    llm::state one = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = T}, llm::eviction::named(name, 64));
    llm::state each = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = 1}, llm::eviction::named(name, 64));
    m.prefill(one, 0, prompt);
    m.prefill(each, 0, prompt);
    for (index_t l = 0; l < m.config().num_layers; ++l) {
      CHECK(each.cache(l).total_pages() == G * kv::pages_for(W, 4)); // window - 1 + chunk tokens per head
      for (index_t g = 0; g < G; ++g) {
        REQUIRE(each.cache(l).size(0, g) == W);
        REQUIRE(one.cache(l).size(0, g) == T);
        for (index_t i = 0; i < W; ++i) {
          CHECK(each.cache(l).position(0, g, i) == one.cache(l).position(0, g, T - W + i));
          CHECK(each.cache(l).state(0, g, i)[static_cast<std::size_t>(slot)] ==
                doctest::Approx(one.cache(l).state(0, g, T - W + i)[static_cast<std::size_t>(slot)]).epsilon(1e-5));
        }
      }
    }
  }
}
