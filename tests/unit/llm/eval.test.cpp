// SPDX-License-Identifier: MIT
// llm::eval: teacher-forced scores against the transformers logits of the fixtures, the grid
// (every policy at tiny budgets runs without throwing), CSV output and the synthetic tasks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/llm/eval.hpp"
#include "llm_fixtures.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {
using llm_test::fixtures;
using llm_test::ids;

/// -log softmax(row)[target] in double, independently of the library.
double nll_of(const float* row, index_t v, std::int32_t target) {
  double mx = row[0];
  for (index_t i = 1; i < v; ++i) mx = std::max(mx, static_cast<double>(row[i]));
  double z = 0.0;
  for (index_t i = 0; i < v; ++i) z += std::exp(static_cast<double>(row[i]) - mx);
  return -(static_cast<double>(row[target]) - mx - std::log(z));
}
} // namespace

TEST_CASE("llm::eval::score_text equals the NLL of the transformers logits") {
  const llm::model m = llm::model::load(fixtures / "qwen3");
  const io::safetensors ref = io::safetensors::open(fixtures / "qwen3" / "reference.safetensors");
  const std::vector<std::int32_t> prompt = ids(ref, "prompt"), gen = ids(ref, "generated");
  const array<float> pre = ref.load<float>("prefill_logits"), dec = ref.load<float>("decode_logits");
  const index_t V = m.config().vocab_size, T = static_cast<index_t>(prompt.size());
  std::vector<std::int32_t> seq = prompt;
  seq.insert(seq.end(), gen.begin(), gen.end()); // 21 tokens, 20 predictions
  double want = 0.0;
  for (index_t t = 0; t + 1 < T; ++t) want += nll_of(pre.data() + t * V, V, seq[static_cast<std::size_t>(t + 1)]);
  for (index_t i = 0; i < static_cast<index_t>(gen.size()); ++i) want += nll_of(dec.data() + i * V, V, gen[static_cast<std::size_t>(i)]);
  want /= static_cast<double>(seq.size() - 1);

  for (index_t context : {index_t(1), index_t(5), T}) {
    CAPTURE(context);
    llm::eval::text_options opt;
    opt.context = context;
    const llm::eval::text_score s = llm::eval::score_text(m, seq, llm::eviction{}, opt);
    CHECK(s.nll == doctest::Approx(want).epsilon(1e-5));
    CHECK(s.perplexity == doctest::Approx(std::exp(want)).epsilon(1e-5));
    CHECK(s.predicted == 20);
    // the greedy tokens of the reference are the argmax at the generated positions
    for (std::size_t i = 0; i + 1 < gen.size(); ++i) CHECK(s.top1[static_cast<std::size_t>(T) - 1 + i] == gen[i]);
    // agreement with itself is 1; a budget above the length changes nothing
    const llm::eval::text_score same = llm::eval::score_text(m, seq, llm::eviction::named("tova", 64), opt, s.top1);
    CHECK(same.agreement == 1.0);
    CHECK(same.nll == s.nll);
  }
  CHECK_THROWS_AS((void)llm::eval::score_text(m, std::vector<std::int32_t>{1}, llm::eviction{}), config_error);
  llm::eval::text_options bad;
  bad.context = 21;
  CHECK_THROWS_AS((void)llm::eval::score_text(m, seq, llm::eviction{}, bad), config_error);
}

TEST_CASE("llm::eval::run_grid: every policy at every budget, down to 1, runs; CSV has one row per cell") {
  const llm::model m = llm::model::load(fixtures / "llama_gqa");
  llm::eval::grid_config g;
  g.policies.assign(std::begin(llm::policy_names), std::end(llm::policy_names));
  g.budgets = {1, 2, 5, 64};
  for (int i = 0; i < 30; ++i) g.text.push_back(static_cast<std::int32_t>((i * 37 + 11) % 160));
  g.text_opt.context = 10;
  g.text_opt.state.chunk = 4;
  g.text_opt.state.page_tokens = 4;
  llm::eval::retrieval_config rc;
  rc.context = 30;
  rc.key_tokens = 2;
  rc.keys = 2;
  g.retrieval = {llm::eval::make_retrieval("passkey", 160, rc), llm::eval::make_retrieval("kv_recall", 160, rc)};
  g.state.page_tokens = 4;
  const std::vector<llm::eval::grid_row> rows = llm::eval::run_grid(m, g);
  REQUIRE(rows.size() == 1 + (g.policies.size() - 1) * g.budgets.size());
  CHECK(rows[0].policy == "full");
  CHECK(rows[0].agreement == 1.0);
  for (const auto& r : rows) {
    CAPTURE(r.policy);
    CAPTURE(r.budget);
    CHECK(std::isfinite(r.perplexity));
    if (r.budget == 64) { // above the sequence: identical to the full cache
      CHECK(r.perplexity == rows[0].perplexity);
      CHECK(r.agreement == 1.0);
      CHECK(r.retrieval == rows[0].retrieval);
    }
    if (r.budget == 1) CHECK(r.peak_cache_bytes < rows[0].peak_cache_bytes);
    // one case per task: the per-task figures are 0 or 1 and average to the overall one
    REQUIRE(r.retrieval_by_task.size() == 2);
    CHECK(r.retrieval_by_task[0].first == "passkey");
    CHECK(r.retrieval_by_task[1].first == "kv_recall");
    CHECK((r.retrieval_by_task[0].second + r.retrieval_by_task[1].second) / 2 == r.retrieval);
  }
  const fs::path csv = fs::temp_directory_path() / "membound_grid_test.csv";
  llm::eval::write_csv(rows, csv);
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  CHECK(line == "policy,budget,perplexity,nll,agreement,retrieval,peak_cache_bytes,seconds,retrieval_passkey,retrieval_kv_recall");
  index_t n = 0;
  while (std::getline(f, line)) ++n;
  CHECK(n == static_cast<index_t>(rows.size()));
  fs::remove(csv);
  g.policies.push_back("no_such_policy");
  CHECK_THROWS_AS((void)llm::eval::run_grid(m, g), config_error);
}

TEST_CASE("llm::eval::make_retrieval builds the tasks as specified; score_retrieval is exact match") {
  llm::eval::retrieval_config rc;
  rc.context = 100;
  rc.key_tokens = 3;
  rc.first_id = 10;
  rc.last_id = 150;
  for (double depth : {0.0, 0.5, 1.0}) {
    rc.depth = depth;
    for (const char* task : {"passkey", "multikey", "kv_recall"}) {
      CAPTURE(task);
      CAPTURE(depth);
      const llm::eval::retrieval_case q = llm::eval::make_retrieval(task, 160, rc);
      CHECK(static_cast<index_t>(q.prompt.size()) == rc.context);
      CHECK(q.answer.size() == 3);
      for (std::int32_t t : q.prompt) CHECK((t >= 10 && t < 150));
      // the question is marker + key; the same marker + key + answer occurs once in the haystack
      const std::vector<std::int32_t> key(q.prompt.end() - 5, q.prompt.end());
      CHECK(key[0] == 10);
      CHECK(key[1] == 11);
      std::vector<std::int32_t> needle = key;
      needle.insert(needle.end(), q.answer.begin(), q.answer.end());
      const auto hit = std::search(q.prompt.begin(), q.prompt.end() - 5, needle.begin(), needle.end());
      REQUIRE(hit != q.prompt.end() - 5);
      const double where = static_cast<double>(hit - q.prompt.begin()) / static_cast<double>(q.prompt.size());
      if (std::string(task) != "kv_recall") CHECK(std::abs(where - depth) < 0.2);
    }
  }
  CHECK_THROWS_AS((void)llm::eval::make_retrieval("ruler", 160, rc), config_error);
  rc.context = 8;
  CHECK_THROWS_AS((void)llm::eval::make_retrieval("multikey", 160, rc), config_error);

  // exact match: the model's own greedy continuation scores 1, anything else 0
  const llm::model m = llm::model::load(fixtures / "qwen2");
  const io::safetensors ref = io::safetensors::open(fixtures / "qwen2" / "reference.safetensors");
  llm::eval::retrieval_case q{"own", ids(ref, "prompt"), ids(ref, "generated"), 0.0};
  q.answer.resize(4);
  CHECK(llm::eval::score_retrieval(m, q, llm::eviction{}));
  q.answer[3] = (q.answer[3] + 1) % 160;
  CHECK_FALSE(llm::eval::score_retrieval(m, q, llm::eviction{}));
}
