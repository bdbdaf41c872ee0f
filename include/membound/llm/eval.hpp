// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::eval`: every eviction policy on the same model and budget, side by side.
///  - `score_text`: teacher-forced negative log-likelihood and perplexity of a token sequence
///    under a policy and budget, with eviction active exactly as in generation (the first
///    `context` tokens are prefilled as a prompt in the state's chunks, every later token is fed
///    by a decode step), and the top-1 agreement with the full cache's predictions at the same
///    positions;
///  - `retrieval_case` and `score_retrieval`: exact-match retrieval (greedy decoding of the
///    answer's length after the prompt), and `make_retrieval`: RULER-style synthetic tasks built
///    from token ids (single passkey, multi-key needle, key-value recall) at a context length and
///    needle depth, for any vocabulary (a tokenizer-made text version is for real models);
///  - `run_grid`: policies x budgets -> one row each (perplexity, agreement, retrieval accuracy,
///    peak cache bytes, seconds); `write_csv` and `write_plot` (gnuplot, where installed).
/// A grid cell never throws for a valid configuration: every budget >= 1 is valid for every
/// policy (llm::model::make_state adapts windows and sinks to small budgets).
///
/// Cost: score_text is one prefill of `context` tokens plus one decode step per later token.
/// Results are deterministic (greedy decoding, fixed seeds); they do not depend on the thread
/// count except through prefill GEMMs (model.hpp).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/llm/generate.hpp"
#include "membound/llm/model.hpp"
#include "membound/llm/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {
namespace eval {

/// Teacher-forced scores of one sequence.
struct text_score {
  double nll = 0.0;        ///< mean negative log-likelihood (nats) of tokens [1, n)
  double perplexity = 0.0; ///< exp(nll)
  double agreement = 1.0;  ///< share of positions whose argmax equals the reference's (1 without one)
  index_t predicted = 0;   ///< n - 1 positions scored
  std::size_t peak_cache_bytes = 0; ///< the largest cache footprint seen after a step
  std::vector<std::int32_t> top1;   ///< argmax at each scored position (the reference for agreement)
};

/// Options of score_text.
struct text_options {
  index_t context = 1;    ///< tokens prefilled as a prompt before step-by-step decoding (>= 1)
  state_config state{};   ///< chunk, page size, ... (max_tokens 0: the sequence length)
};

namespace detail {
/// log softmax(logits)[target] in double.
inline double log_prob(std::span<const float> logits, std::int32_t target) {
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double z = 0.0;
  for (float v : logits) z += std::exp(static_cast<double>(v) - mx);
  return static_cast<double>(logits[static_cast<std::size_t>(target)]) - mx - std::log(z);
}
} // namespace detail

/// Scores `tokens` under `ev` (see the file comment). `reference_top1`, when given (the `top1` of
/// a full-cache run on the same tokens and options), yields the agreement.
/// @throws config_error for fewer than 2 tokens, context outside [1, n), or a reference of the wrong
/// length; errors of model::prefill / decode.
inline text_score score_text(const model& m, std::span<const std::int32_t> tokens, const eviction& ev,
                             const text_options& opt = {}, std::span<const std::int32_t> reference_top1 = {}) {
  const index_t n = static_cast<index_t>(tokens.size());
  MEMBOUND_EXPECTS(n >= 2, config_error, "llm::eval::score_text: ", n, " tokens, expected >= 2");
  MEMBOUND_EXPECTS(opt.context >= 1 && opt.context < n, config_error, "llm::eval::score_text: context ", opt.context,
                   ", expected 1..", n - 1);
  MEMBOUND_EXPECTS(reference_top1.empty() || static_cast<index_t>(reference_top1.size()) == n - 1, config_error,
                   "llm::eval::score_text: reference of ", reference_top1.size(), " predictions, expected ", n - 1);
  state_config sc = opt.state;
  sc.batch = 1;
  if (sc.max_tokens == 0) sc.max_tokens = n;
  state s = m.make_state(sc, ev);
  const index_t V = m.config().vocab_size, c = opt.context;
  text_score r;
  r.top1.reserve(static_cast<std::size_t>(n - 1));
  double nll = 0.0;
  index_t agree = 0;
  const auto take = [&](std::span<const float> row, index_t target_index) {
    nll -= detail::log_prob(row, tokens[static_cast<std::size_t>(target_index)]);
    const std::int32_t a = sampler::argmax(row);
    if (!reference_top1.empty() && a == reference_top1[r.top1.size()]) ++agree;
    r.top1.push_back(a);
  };
  {
    array<float> rows({c, V}, uninitialized);
    m.prefill(s, 0, tokens.first(static_cast<std::size_t>(c)), rows.view());
    for (index_t t = 0; t < c; ++t) take(std::span<const float>(rows.data() + t * V, static_cast<std::size_t>(V)), t + 1);
    r.peak_cache_bytes = s.cache_bytes();
  }
  array<float> row({1, V}, uninitialized);
  for (index_t t = c; t + 1 < n; ++t) {
    m.decode(s, tokens.subspan(static_cast<std::size_t>(t), 1), row.view());
    take(row.span(), t + 1);
    r.peak_cache_bytes = std::max(r.peak_cache_bytes, s.cache_bytes());
  }
  r.predicted = n - 1;
  r.nll = nll / static_cast<double>(n - 1);
  r.perplexity = std::exp(r.nll);
  r.agreement = reference_top1.empty() ? 1.0 : static_cast<double>(agree) / static_cast<double>(n - 1);
  return r;
}

/// One retrieval question: the prompt and the tokens a correct answer starts with.
struct retrieval_case {
  std::string task;                ///< "passkey", "multikey", "kv_recall"
  std::vector<std::int32_t> prompt;
  std::vector<std::int32_t> answer;
  double depth = 0.0;              ///< where the needle sits, as a fraction of the haystack
};

/// Greedy-decodes answer.size() tokens after the prompt under `ev`; 1 when they equal the
/// answer (exact match), else 0. @throws as model::prefill / decode, config_error for an empty
/// prompt or answer.
inline bool score_retrieval(const model& m, const retrieval_case& q, const eviction& ev, state_config sc = {}) {
  MEMBOUND_EXPECTS(!q.prompt.empty() && !q.answer.empty(), config_error, "llm::eval::score_retrieval: empty prompt or answer");
  sc.batch = 1;
  if (sc.max_tokens == 0) sc.max_tokens = static_cast<index_t>(q.prompt.size() + q.answer.size());
  state s = m.make_state(sc, ev);
  generate_options opt;
  opt.max_new_tokens = static_cast<index_t>(q.answer.size());
  return generate(m, s, q.prompt, opt) == q.answer;
}

/// Settings of the token-level synthetic tasks (`make_retrieval`).
struct retrieval_config {
  index_t context = 256;     ///< prompt length in tokens (haystack + needles + question)
  double depth = 0.5;        ///< needle position in [0, 1] of the haystack
  index_t key_tokens = 3;    ///< tokens of a key / value
  index_t keys = 4;          ///< multikey: needles in all (one asked); kv_recall: pairs
  std::int32_t first_id = 0, last_id = 0; ///< ids drawn from [first_id, last_id) (last_id 0: the vocabulary)
  std::uint64_t seed = 1;
};

/// A RULER-style case built from token ids, for any vocabulary: the haystack is random filler; a
/// needle is `marker key value` with a fixed 2-token marker, and the question ends with
/// `marker key`, so the answer is `value` (passkey: one needle; multikey: `keys` needles with
/// distinct keys at spread depths, one of them asked; kv_recall: `keys` pairs in a row at
/// `depth`, one asked). A trained model solves such tasks by induction (copying what followed
/// the same prefix); a random model scores near 0, which is why the text form exists.
/// @throws config_error for an unknown task or a context too short for the needles.
inline retrieval_case make_retrieval(std::string_view task, index_t vocab, const retrieval_config& rc) {
  const std::int32_t lo = rc.first_id, hi = rc.last_id > 0 ? rc.last_id : static_cast<std::int32_t>(vocab);
  MEMBOUND_EXPECTS(hi - lo >= 8 && lo >= 0 && hi <= vocab, config_error, "llm::eval::make_retrieval: id range [", lo, ", ",
                   hi, ") in a vocabulary of ", vocab);
  MEMBOUND_EXPECTS(rc.depth >= 0.0 && rc.depth <= 1.0 && rc.key_tokens >= 1 && rc.keys >= 1, config_error,
                   "llm::eval::make_retrieval: depth ", rc.depth, ", key_tokens ", rc.key_tokens, ", keys ", rc.keys);
  std::mt19937_64 gen(rc.seed);
  const auto draw = [&] { return static_cast<std::int32_t>(lo + static_cast<std::int32_t>(gen() % static_cast<std::uint64_t>(hi - lo))); };
  const std::vector<std::int32_t> marker = {lo, lo + 1}; // reserved: filler never uses them
  const auto random_key = [&] {
    std::vector<std::int32_t> k(static_cast<std::size_t>(rc.key_tokens));
    for (auto& x : k) x = std::max(draw(), lo + 2);
    return k;
  };
  const bool multi = task == "multikey", kvr = task == "kv_recall";
  MEMBOUND_EXPECTS(task == "passkey" || multi || kvr, config_error, "llm::eval::make_retrieval: unknown task \"", task,
                   "\"; known: passkey, multikey, kv_recall");
  const index_t needles = task == "passkey" ? 1 : rc.keys;
  const index_t needle_len = 2 + 2 * rc.key_tokens, question = 2 + rc.key_tokens;
  const index_t hay = rc.context - needles * needle_len - question;
  MEMBOUND_EXPECTS(hay >= 1, config_error, "llm::eval::make_retrieval: context ", rc.context, " too short for ", needles,
                   " needles of ", needle_len, " tokens and a question of ", question);
  std::vector<std::vector<std::int32_t>> keys, values;
  for (index_t i = 0; i < needles; ++i) {
    std::vector<std::int32_t> k = random_key();
    while (std::find(keys.begin(), keys.end(), k) != keys.end()) k = random_key();
    keys.push_back(k);
    values.push_back(random_key());
  }
  const index_t asked = static_cast<index_t>(gen() % static_cast<std::uint64_t>(needles));
  // needle insertion points in the haystack
  std::vector<index_t> at(static_cast<std::size_t>(needles));
  for (index_t i = 0; i < needles; ++i) {
    double d = rc.depth;
    if (multi && needles > 1) d = static_cast<double>(i) / static_cast<double>(needles - 1); // spread
    at[static_cast<std::size_t>(i)] = kvr ? static_cast<index_t>(std::lround(rc.depth * static_cast<double>(hay)))
                                          : static_cast<index_t>(std::lround(d * static_cast<double>(hay)));
  }
  if (multi) at[static_cast<std::size_t>(asked)] = static_cast<index_t>(std::lround(rc.depth * static_cast<double>(hay)));
  retrieval_case q;
  q.task = std::string(task);
  q.depth = rc.depth;
  for (index_t h = 0; h <= hay; ++h) {
    for (index_t i = 0; i < needles; ++i)
      if (at[static_cast<std::size_t>(i)] == h) {
        q.prompt.insert(q.prompt.end(), marker.begin(), marker.end());
        q.prompt.insert(q.prompt.end(), keys[static_cast<std::size_t>(i)].begin(), keys[static_cast<std::size_t>(i)].end());
        q.prompt.insert(q.prompt.end(), values[static_cast<std::size_t>(i)].begin(), values[static_cast<std::size_t>(i)].end());
      }
    if (h < hay) q.prompt.push_back(std::max(draw(), lo + 2));
  }
  q.prompt.insert(q.prompt.end(), marker.begin(), marker.end());
  q.prompt.insert(q.prompt.end(), keys[static_cast<std::size_t>(asked)].begin(), keys[static_cast<std::size_t>(asked)].end());
  q.answer = values[static_cast<std::size_t>(asked)];
  return q;
}

/// A policies x budgets grid on one model.
struct grid_config {
  std::vector<std::string> policies{"full", "streaming_llm", "h2o", "tova", "snapkv", "knorm"};
  std::vector<index_t> budgets{64, 128, 256};
  index_t buffer = 1;
  std::vector<std::int32_t> text;             ///< scored teacher-forced (empty: no perplexity)
  text_options text_opt{};                    ///< for the text (context = prompt part)
  std::vector<retrieval_case> retrieval;      ///< scored by exact match (empty: none)
  state_config state{};                       ///< for the retrieval cases
  std::shared_ptr<const retention_gates> gates; ///< enables "trim_kv" in `policies`
};

/// One cell of the grid.
struct grid_row {
  std::string policy;
  index_t budget = 0;
  double perplexity = 0.0, nll = 0.0, agreement = 0.0, retrieval = 0.0;
  std::size_t peak_cache_bytes = 0;
  double seconds = 0.0;
  /// Exact-match accuracy per task name, in the order the tasks first appear in the cases.
  std::vector<std::pair<std::string, double>> retrieval_by_task;
};

/// Runs every policy at every budget (the full policy once, at budget 0 = unbounded, as the
/// reference of the agreement column). Rows in policy-major order.
/// @throws config_error for an unknown policy name (before anything runs).
inline std::vector<grid_row> run_grid(const model& m, const grid_config& g) {
  for (const std::string& p : g.policies) (void)eviction::named(p, 1, 1, g.gates); // validate names first
  std::vector<std::int32_t> ref;
  std::vector<grid_row> rows;
  const auto cell = [&](const std::string& p, index_t budget) {
    const auto t0 = std::chrono::steady_clock::now();
    const eviction ev = eviction::named(p, budget, g.buffer, g.gates);
    grid_row r;
    r.policy = p;
    r.budget = budget;
    if (g.text.size() >= 2) {
      const text_score ts = score_text(m, g.text, ev, g.text_opt, ref);
      r.perplexity = ts.perplexity;
      r.nll = ts.nll;
      r.agreement = ts.agreement;
      r.peak_cache_bytes = ts.peak_cache_bytes;
      if (ref.empty() && budget == 0) ref = ts.top1;
    }
    index_t hits = 0;
    std::vector<index_t> asked;
    for (const retrieval_case& q : g.retrieval) {
      const bool ok = score_retrieval(m, q, ev, g.state);
      hits += ok ? 1 : 0;
      auto it = std::find_if(r.retrieval_by_task.begin(), r.retrieval_by_task.end(), [&](const auto& e) { return e.first == q.task; });
      if (it == r.retrieval_by_task.end()) {
        r.retrieval_by_task.emplace_back(q.task, 0.0);
        asked.push_back(0);
        it = r.retrieval_by_task.end() - 1;
      }
      it->second += ok ? 1.0 : 0.0;
      ++asked[static_cast<std::size_t>(it - r.retrieval_by_task.begin())];
    }
    for (std::size_t k = 0; k < asked.size(); ++k) r.retrieval_by_task[k].second /= static_cast<double>(asked[k]);
    r.retrieval = g.retrieval.empty() ? 0.0 : static_cast<double>(hits) / static_cast<double>(g.retrieval.size());
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(r);
  };
  cell("full", 0);
  if (!rows.empty() && g.text.size() >= 2) rows.back().agreement = 1.0;
  for (const std::string& p : g.policies) {
    if (p == "full") continue;
    for (index_t b : g.budgets) cell(p, b);
  }
  return rows;
}

/// Writes the rows as CSV (header: policy,budget,perplexity,nll,agreement,retrieval,peak_cache_bytes,seconds,
/// then one column retrieval_<task> per task of the first row's `retrieval_by_task`, if any).
/// @throws io_error when the file cannot be written.
inline void write_csv(const std::vector<grid_row>& rows, const std::filesystem::path& path) {
  std::ofstream f(path);
  MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::eval::write_csv: cannot write ", path.string());
  f << "policy,budget,perplexity,nll,agreement,retrieval,peak_cache_bytes,seconds";
  const auto tasks = rows.empty() ? std::vector<std::pair<std::string, double>>{} : rows.front().retrieval_by_task;
  for (const auto& t : tasks) f << ",retrieval_" << t.first;
  f << '\n';
  char buf[256];
  for (const grid_row& r : rows) {
    std::snprintf(buf, sizeof buf, "%s,%lld,%.6g,%.6g,%.6g,%.6g,%zu,%.4g", r.policy.c_str(), static_cast<long long>(r.budget),
                  r.perplexity, r.nll, r.agreement, r.retrieval, r.peak_cache_bytes, r.seconds);
    f << buf;
    for (const auto& t : tasks) {
      const auto it = std::find_if(r.retrieval_by_task.begin(), r.retrieval_by_task.end(), [&](const auto& e) { return e.first == t.first; });
      std::snprintf(buf, sizeof buf, ",%.6g", it == r.retrieval_by_task.end() ? 0.0 : it->second);
      f << buf;
    }
    f << '\n';
  }
  MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::eval::write_csv: writing ", path.string(), " failed");
}

/// Plots perplexity, top-1 agreement and retrieval accuracy against the budget, one line per policy (the full
/// cache as a horizontal line), through gnuplot. Returns false (writing nothing) where gnuplot is
/// not installed. @throws io_error when gnuplot fails.
inline bool write_plot(const std::vector<grid_row>& rows, const std::filesystem::path& png, const std::string& title = "") {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
  const std::filesystem::path data = std::filesystem::path(png).replace_extension(".plot.dat");
  std::vector<std::string> policies;
  for (const grid_row& r : rows)
    if (r.policy != "full" && std::find(policies.begin(), policies.end(), r.policy) == policies.end()) policies.push_back(r.policy);
  double full_ppl = 0, full_ret = 0;
  index_t bmin = 0, bmax = 1;
  for (const grid_row& r : rows) {
    if (r.policy == "full") {
      full_ppl = r.perplexity;
      full_ret = r.retrieval;
    } else {
      bmin = bmin == 0 ? r.budget : std::min(bmin, r.budget);
      bmax = std::max(bmax, r.budget);
    }
  }
  {
    std::ofstream f(data);
    MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::eval::write_plot: cannot write ", data.string());
    for (const std::string& p : policies) { // one gnuplot data block per policy
      f << "# " << p << "\n";
      for (const grid_row& r : rows)
        if (r.policy == p) f << r.budget << ' ' << r.perplexity << ' ' << r.retrieval << ' ' << r.agreement << '\n';
      f << "\n\n";
    }
  }
  FILE* gp = popen("gnuplot", "w");
  MEMBOUND_EXPECTS(gp != nullptr, io_error, "llm::eval::write_plot: cannot start gnuplot");
  std::fprintf(gp, "set terminal pngcairo size 1700,450 noenhanced\nset output '%s'\nset logscale x 2\nset grid\n",
               png.string().c_str());
  std::fprintf(gp, "set xrange [%g:%g]\nset multiplot layout 1,3 title '%s'\n",
               static_cast<double>(bmin) / 1.2, static_cast<double>(bmax) * 1.2, title.c_str());
  const char* labels[3] = {"perplexity", "top-1 agreement with full", "retrieval exact match"};
  const double full_line[3] = {full_ppl, 1.0, full_ret};
  const int column[3] = {2, 4, 3};
  for (int panel = 0; panel < 3; ++panel) {
    // one legend, right of the last panel, so that no curve hides under it
    std::fprintf(gp, "%s\nset xlabel 'budget (tokens per KV head)'\nset ylabel '%s'\n%s\nplot %g title 'full' lw 2 dt 2 lc rgb 'black'",
                 panel == 2 ? "set key outside right top" : "unset key", labels[panel],
                 panel == 0 ? "set autoscale y" : "set yrange [-0.02:1.05]", full_line[panel]);
    for (std::size_t i = 0; i < policies.size(); ++i)
      std::fprintf(gp, ", '%s' index %zu using 1:%d with linespoints lw 2 title '%s'", data.string().c_str(), i,
                   column[panel], policies[i].c_str());
    std::fprintf(gp, "\n");
  }
  std::fprintf(gp, "unset multiplot\n");
  const int rc = pclose(gp);
  MEMBOUND_EXPECTS(rc == 0, io_error, "llm::eval::write_plot: gnuplot exited with ", rc);
  return true;
}

} // namespace eval
} // namespace llm
} // namespace v0_1
} // namespace membound
