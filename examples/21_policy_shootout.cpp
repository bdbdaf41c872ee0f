// SPDX-License-Identifier: MIT
// 21_policy_shootout: every KV-cache eviction policy of kv/ on one model at the same budgets,
// side by side (llm::eval::run_grid).
//
//   21_policy_shootout [--full] [--budgets 64] [--windows N] [--cases N]          (the embedded model)
//   21_policy_shootout MODEL_DIR [--budgets 16,32,64,128] [--length 512] [--context 128]
//
// Without MODEL_DIR it runs on membound's embedded default model (models/tiny-py-lm: a 4.6 M
// parameter byte-level Llama trained by examples/30_train_tiny_lm.cpp on the Python standard
// library, with the TRIM-KV gates of examples/31_trimkv_distill.cpp beside it), on data it never
// saw in training:
//   - text: windows of 1024 bytes of the held-out modules (email/, json/, http/, textwrap.py,
//     fractions.py of /usr/lib/python3.N), the first 128 prefilled, the other 896 decoded one token at
//     a time with eviction after every step: perplexity and top-1 agreement with the full cache;
//   - retrieval: llm::make_text_task's passkey, multi-key, key-value and copy tasks in held-out
//     filler, 1024 tokens each, prefilled in chunks of 128 with eviction after each chunk, then the
//     answer decoded greedily: exact match.
// The default (the tour) runs one budget (64 tokens per KV head), 1 text window and 3 cases per
// task: under 1.5 minutes on 2 threads of machine B (86 s with a build sharing the cores). --full
// runs the budgets 32, 64, 128, 256 and 512, 4 windows and 10 cases per task; the README's results
// table is `--full --windows 2 --cases 5` (about 5 minutes).
//
// With MODEL_DIR (any Hugging Face folder: Llama, SmolLM2, Mistral, Qwen2, Qwen3) the data are
// token-level: a phrase-structured token sequence and RULER-style token tasks (llm::eval::
// make_retrieval) at depths 0.1, 0.5 and 0.9, since a tokenizer-free harness cannot write text for
// an arbitrary vocabulary.
//
// Policies: every name of llm::policy_names, trim_kv where gates exist (retention_gates.safetensors
// in the folder), plus snapkv@pyramid (PyramidKV), snapkv@adakv (AdaKV) and h2o@global (one budget
// across all heads of all layers). Budgets are tokens kept per KV head, in every layer.
// Columns: perplexity, top-1 agreement with the full cache, retrieval exact match (overall and
// per task), the peak cache bytes and the seconds a cell took.
// Writes 21_shootout.csv and, where gnuplot is installed, 21_shootout.png.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "membound/llm/corpus.hpp"
#include "membound/llm/eval.hpp"
#include "membound/llm/synthetic_tasks.hpp"

#if !defined(MEMBOUND_EMBEDDED_MODEL)
#define MEMBOUND_EMBEDDED_MODEL "models/tiny-py-lm"
#endif

using namespace membound;

namespace {

std::vector<index_t> parse_list(const std::string& s) {
  std::vector<index_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  return out;
}

/// A token sequence with structure a model can use: phrases of 4-12 tokens drawn from a pool of
/// 64, repeated in a Zipf-like order (an induction-capable model predicts a phrase's rest).
std::vector<std::int32_t> phrase_text(index_t n, index_t vocab, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<std::vector<std::int32_t>> pool(64);
  for (auto& p : pool) {
    p.resize(4 + gen() % 9);
    for (auto& t : p) t = static_cast<std::int32_t>(2 + gen() % static_cast<std::uint64_t>(vocab - 2));
  }
  std::vector<std::int32_t> out;
  while (static_cast<index_t>(out.size()) < n) {
    const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
    const auto& p = pool[static_cast<std::size_t>(63.999 * u * u * u)]; // low indices more often
    out.insert(out.end(), p.begin(), p.end());
  }
  out.resize(static_cast<std::size_t>(n));
  return out;
}

/// Rows of several text windows merged: mean NLL (perplexity from it), mean agreement, the largest
/// peak, summed seconds; retrieval from the first grid (the only one given cases).
void merge_rows(std::vector<llm::eval::grid_row>& acc, const std::vector<llm::eval::grid_row>& more) {
  for (std::size_t i = 0; i < acc.size(); ++i) {
    acc[i].nll += more[i].nll;
    acc[i].agreement += more[i].agreement;
    acc[i].peak_cache_bytes = std::max(acc[i].peak_cache_bytes, more[i].peak_cache_bytes);
    acc[i].seconds += more[i].seconds;
  }
}

} // namespace

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  std::filesystem::path dir;
  bool full = false;
  std::vector<index_t> budgets;
  index_t length = 0, context = 0, windows = 0, cases = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--budgets" && i + 1 < argc) budgets = parse_list(argv[++i]);
    else if (a == "--length" && i + 1 < argc) length = std::stoll(argv[++i]);
    else if (a == "--context" && i + 1 < argc) context = std::stoll(argv[++i]);
    else if (a == "--windows" && i + 1 < argc) windows = std::stoll(argv[++i]);
    else if (a == "--cases" && i + 1 < argc) cases = std::stoll(argv[++i]);
    else if (a == "--full") full = true;
    else if (!a.empty() && a[0] != '-') dir = a;
    else {
      std::fprintf(stderr, "usage: %s [MODEL_DIR] [--full] [--budgets 64] [--windows N] [--cases N] [--length N] [--context N]\n", argv[0]);
      return 2;
    }
  }
  full = full && !smoke;
  const bool embedded = dir.empty();
  if (embedded) dir = MEMBOUND_EMBEDDED_MODEL;
  if (!std::filesystem::exists(dir / "config.json")) {
    std::fprintf(stderr, "21_policy_shootout: no model folder at %s\n", dir.string().c_str());
    return 1;
  }
  const llm::model m = llm::model::load(dir);
  const io::model_config& c = m.config();
  std::printf("model: %s (%s), %lld layers, %lld query / %lld KV heads of %lld, vocabulary %lld\n", dir.string().c_str(),
              c.model_type.c_str(), static_cast<long long>(c.num_layers), static_cast<long long>(c.num_heads),
              static_cast<long long>(c.num_kv_heads), static_cast<long long>(c.head_dim), static_cast<long long>(c.vocab_size));

  llm::eval::grid_config g;
  g.policies.assign(std::begin(llm::policy_names), std::end(llm::policy_names));
  if (std::filesystem::exists(dir / "retention_gates.safetensors")) {
    g.gates = llm::retention_gates::load(dir / "retention_gates.safetensors", c);
    g.policies.emplace_back("trim_kv");
  }
  // the budget allocators: PyramidKV's per-layer counts, AdaKV's per-head split inside a layer,
  // and one budget shared by every head of every layer (same mean tokens per head as the rest)
  for (const char* p : {"snapkv@pyramid", "snapkv@adakv", "h2o@global"}) g.policies.emplace_back(p);
  g.text_opt.state.page_tokens = 4; // small pages: the cache bytes follow the budget closely
  g.state.page_tokens = 4;
  std::vector<std::vector<std::int32_t>> texts;

  if (embedded) {
    if (budgets.empty()) budgets = smoke ? std::vector<index_t>{16} : full ? std::vector<index_t>{32, 64, 128, 256, 512} : std::vector<index_t>{64};
    if (length == 0) length = smoke ? 160 : std::min<index_t>(1024, c.max_position_embeddings);
    if (context == 0) context = smoke ? 32 : 128;
    if (windows == 0) windows = full ? 4 : 1;
    if (cases == 0) cases = smoke ? 1 : full ? 10 : 3;
    const auto stdlib = llm::find_python_stdlib();
    if (stdlib.empty()) {
      std::fprintf(stderr, "21_policy_shootout: the held-out data come from the Python standard library (Debian's\n"
                           "libpython3-stdlib, in tools/deps.sh); no /usr/lib/python3.N with os.py here\n");
      return 1;
    }
    const auto heldout = llm::byte_corpus::from_directory(stdlib, ".py", llm::python_stdlib_split::test);
    for (index_t w = 0; w < windows; ++w) {
      std::vector<std::int64_t> win(static_cast<std::size_t>(length));
      heldout.sample(5, 0, static_cast<std::uint64_t>(w), win);
      texts.emplace_back(win.begin(), win.end());
    }
    g.text_opt.state.chunk = context;
    g.state.chunk = 128;
    for (const std::string_view task : llm::text_tasks)
      for (index_t k = 0; k < cases; ++k) // depths spread over (0, 1): 0.05, 0.15, ... for 10 cases
        g.retrieval.push_back(llm::to_retrieval(llm::make_text_task(task, length, heldout, 77, static_cast<std::uint64_t>(k),
                                                                    (static_cast<double>(k) + 0.5) / static_cast<double>(cases))));
    std::printf("data: %lld held-out windows of %lld bytes (%lld prefilled); %zu retrieval cases of %lld bytes "
                "(passkey, multikey, kv_recall, copy)\n",
                static_cast<long long>(windows), static_cast<long long>(length), static_cast<long long>(context), g.retrieval.size(),
                static_cast<long long>(length));
  } else {
    if (budgets.empty()) budgets = smoke ? std::vector<index_t>{8, 16} : std::vector<index_t>{16, 32, 64, 128};
    if (length == 0) length = smoke ? 64 : 512;
    if (context == 0) context = smoke ? 16 : 128;
    texts.push_back(phrase_text(length, c.vocab_size, 7));
    llm::eval::retrieval_config rc;
    rc.context = smoke ? 40 : 256;
    rc.key_tokens = 3;
    rc.keys = 4;
    std::uint64_t seed = 1;
    for (const char* task : {"passkey", "multikey", "kv_recall"})
      for (double depth : {0.1, 0.5, 0.9}) {
        rc.depth = depth;
        rc.seed = seed++;
        g.retrieval.push_back(llm::eval::make_retrieval(task, c.vocab_size, rc));
      }
    std::printf("data: %lld tokens (%lld prefilled); %zu retrieval cases of %lld tokens\n", static_cast<long long>(length),
                static_cast<long long>(context), g.retrieval.size(), static_cast<long long>(rc.context));
  }
  g.budgets = budgets;
  g.text_opt.context = context;
  std::printf("budgets:");
  for (index_t b : budgets) std::printf(" %lld", static_cast<long long>(b));
  std::printf(" tokens per KV head; %zu policies\n\n", g.policies.size());

  g.text = texts[0];
  std::vector<llm::eval::grid_row> rows = llm::eval::run_grid(m, g);
  if (texts.size() > 1) {
    llm::eval::grid_config more = g;
    more.retrieval.clear();
    for (std::size_t w = 1; w < texts.size(); ++w) {
      more.text = texts[w];
      merge_rows(rows, llm::eval::run_grid(m, more));
    }
    const double n = static_cast<double>(texts.size());
    for (auto& r : rows) r.nll /= n, r.agreement /= n, r.perplexity = std::exp(r.nll);
  }
  std::printf("%-20s %7s %11s %10s %10s", "policy", "budget", "perplexity", "agreement", "retrieval");
  for (const auto& t : rows.front().retrieval_by_task) std::printf(" %10s", t.first.c_str());
  std::printf(" %12s %8s\n", "peak KiB", "seconds");
  for (const auto& r : rows) {
    std::printf("%-20s %7lld %11.3f %10.3f %10.3f", r.policy.c_str(), static_cast<long long>(r.budget), r.perplexity, r.agreement,
                r.retrieval);
    for (const auto& t : r.retrieval_by_task) std::printf(" %10.2f", t.second);
    std::printf(" %12.1f %8.2f\n", static_cast<double>(r.peak_cache_bytes) / 1024.0, r.seconds);
  }
  llm::eval::write_csv(rows, "21_shootout.csv");
  const bool png = llm::eval::write_plot(rows, "21_shootout.png", "KV-cache policies on " + dir.filename().string());
  std::printf("\nwrote 21_shootout.csv%s\n", png ? " and 21_shootout.png" : " (no gnuplot: no plot)");
  return 0;
}
