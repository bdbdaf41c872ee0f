// SPDX-License-Identifier: MIT
// 21_policy_shootout: every KV-cache eviction policy of kv/ on one model at the same budgets,
// side by side (llm::eval::run_grid).
//
//   21_policy_shootout [MODEL_DIR] [--budgets 16,32,64,128] [--length 512] [--context 128]
//
// MODEL_DIR is a Hugging Face model folder (config.json + safetensors; Llama, SmolLM2, Mistral,
// Qwen2, Qwen3). Without one the notebook writes ./21_random_model, a Llama-shaped model of
// RANDOM weights (7.3 M parameters): its perplexities and retrieval scores are those of noise and
// say nothing about the policies' quality; it shows the harness end to end. Point it at a
// trained model for real numbers.
//
// Policies: every name of llm::policy_names, plus snapkv@pyramid (PyramidKV), snapkv@adakv (AdaKV)
// and h2o@global (one budget across all heads of all layers).
// For each policy x budget (tokens kept per KV head, every layer), teacher-forced on one token
// sequence of --length tokens (the first --context prefilled as a prompt, the rest decoded one
// token at a time with eviction after every step, exactly as generation):
//   - perplexity, and top-1 agreement with the full cache's predictions;
//   - exact-match retrieval on RULER-style token-level tasks (passkey, multi-key needle, key-value
//     recall) at needle depths 0.1, 0.5 and 0.9;
//   - the peak cache bytes and the seconds the cell took.
// Writes 21_shootout.csv and, where gnuplot is installed, 21_shootout.png.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "membound/llm/eval.hpp"
#include "membound/llm/random_model.hpp"

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

} // namespace

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  std::filesystem::path dir;
  std::vector<index_t> budgets = smoke ? std::vector<index_t>{8, 16} : std::vector<index_t>{16, 32, 64, 128};
  index_t length = smoke ? 64 : 512, context = smoke ? 16 : 128;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--budgets" && i + 1 < argc) budgets = parse_list(argv[++i]);
    else if (a == "--length" && i + 1 < argc) length = std::stoll(argv[++i]);
    else if (a == "--context" && i + 1 < argc) context = std::stoll(argv[++i]);
    else if (!a.empty() && a[0] != '-') dir = a;
    else {
      std::fprintf(stderr, "usage: %s [MODEL_DIR] [--budgets 16,32,64,128] [--length 512] [--context 128]\n", argv[0]);
      return 2;
    }
  }
  if (dir.empty()) {
    dir = "21_random_model";
    llm::random_model_spec spec; // 7.3 M parameters
    std::printf("No model folder given: writing %s, a Llama-shaped model of RANDOM weights (%.1f M parameters).\n"
                "Its numbers show the harness, not the policies' quality. Pass a Hugging Face folder for real ones.\n\n",
                dir.c_str(), static_cast<double>(spec.parameters()) / 1e6);
    llm::write_random_model(dir, spec);
  }
  const llm::model m = llm::model::load(dir);
  const io::model_config& c = m.config();
  std::printf("model: %s (%s), %lld layers, %lld query / %lld KV heads of %lld, vocabulary %lld\n", dir.c_str(),
              c.model_type.c_str(), static_cast<long long>(c.num_layers), static_cast<long long>(c.num_heads),
              static_cast<long long>(c.num_kv_heads), static_cast<long long>(c.head_dim), static_cast<long long>(c.vocab_size));

  llm::eval::grid_config g;
  g.policies.assign(std::begin(llm::policy_names), std::end(llm::policy_names));
  // the budget allocators: PyramidKV's per-layer counts, AdaKV's per-head split inside a layer,
  // and one budget shared by every head of every layer (same mean tokens per head as the rest)
  for (const char* p : {"snapkv@pyramid", "snapkv@adakv", "h2o@global"}) g.policies.emplace_back(p);
  g.budgets = budgets;
  g.text = phrase_text(length, c.vocab_size, 7);
  g.text_opt.context = context;
  g.text_opt.state.page_tokens = 4; // small pages: the cache bytes follow the budget closely
  g.state.page_tokens = 4;
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
  std::printf("text: %lld tokens (%lld prefilled); %zu retrieval cases of %lld tokens; budgets:", static_cast<long long>(length),
              static_cast<long long>(context), g.retrieval.size(), static_cast<long long>(rc.context));
  for (index_t b : budgets) std::printf(" %lld", static_cast<long long>(b));
  std::printf(" tokens per KV head\n\n");

  const std::vector<llm::eval::grid_row> rows = llm::eval::run_grid(m, g);
  std::printf("%-20s %7s %11s %10s %10s %12s %8s\n", "policy", "budget", "perplexity", "agreement", "retrieval",
              "peak KiB", "seconds");
  for (const auto& r : rows)
    std::printf("%-20s %7lld %11.3f %10.3f %10.3f %12.1f %8.2f\n", r.policy.c_str(), static_cast<long long>(r.budget),
                r.perplexity, r.agreement, r.retrieval, static_cast<double>(r.peak_cache_bytes) / 1024.0, r.seconds);
  llm::eval::write_csv(rows, "21_shootout.csv");
  const bool png = llm::eval::write_plot(rows, "21_shootout.png", "KV-cache policies on " + dir.filename().string());
  std::printf("\nwrote 21_shootout.csv%s\n", png ? " and 21_shootout.png" : " (no gnuplot: no plot)");
  return 0;
}
