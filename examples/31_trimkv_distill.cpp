// SPDX-License-Identifier: MIT
// 31_trimkv_distill: TRIM-KV's retention gates trained on a frozen model (llm::gate_distiller),
// then used by the trim_kv eviction policy inside llm::model.
//
//   31_trimkv_distill [MODEL_DIR] [--full] [--steps N] [--capacity M] [--stdlib DIR] [--out FILE]
//
// What it teaches: how TRIM-KV learns which tokens to keep. Each layer gets a small gate (an MLP
// on the token's pre-attention hidden state, C -> 512 -> KV heads, logsigmoid) that gives every
// token a retention beta in (0, 1); in training, attention sees token i at step t with the logit
// bias (t - i) log beta_i, so a token with small beta fades. The backbone is frozen; the gates
// are trained on three terms, printed as training goes:
//   kl   forward KL from the model without gates (the teacher) to the gated model,
//   ntp  the gated model's next-token cross-entropy,
//   cap  the capacity hinge: how far the soft cache size S_t = sum_i beta_i^(t-i) exceeds M,
// total = kl + ntp + cap (lambda_cap = 1, as the paper). At inference the gates only rank tokens:
// the policy keeps the M tokens with the largest (age) log beta per KV head.
//
// MODEL_DIR: a Hugging Face folder of a llama-compatible model small enough to train on. Without
// it: the embedded default model (models/tiny-py-lm, made by examples/30_train_tiny_lm.cpp; under
// MEMBOUND_SMOKE=1 a small random model instead, whose gates mean nothing). Data: windows of the
// Python standard library (notebook 30's training split).
// Full run (--full): 400 steps of 4 x 1024 tokens, M = 128, AdamW lr 1e-3 (gates only), gates of
// width 512 (about 11 minutes on 2 threads of machine B). The committed gates of the embedded
// model are a shorter run of it, 150 steps in 4.0 minutes (31_trimkv_distill --full --steps 150
// --out models/tiny-py-lm/retention_gates.safetensors). Without --full: 12 steps of 2 x 128 tokens.
// Writes FILE (default: retention_gates.safetensors next to a model given as MODEL_DIR, else
// ./31_retention_gates.safetensors, so that the embedded model's committed gates are not
// overwritten) under the official tensor names, then compares full, trim_kv, streaming_llm and
// h2o on one held-out window at budget M (perplexity and top-1 agreement with the full cache,
// through llm::eval).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "membound/llm/corpus.hpp"
#include "membound/llm/eval.hpp"
#include "membound/llm/gate_distillation.hpp"
#include "membound/llm/model.hpp"

#if !defined(MEMBOUND_EMBEDDED_MODEL)
#define MEMBOUND_EMBEDDED_MODEL "models/tiny-py-lm"
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace membound;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  fs::path model_dir, stdlib, out;
  bool full = false;
  index_t steps = 0;
  float capacity = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "31_trimkv_distill: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--full") full = true;
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--capacity") capacity = std::stof(next());
    else if (a == "--stdlib") stdlib = next();
    else if (a == "--out") out = next();
    else if (!a.empty() && a[0] != '-' && model_dir.empty()) model_dir = a;
    else {
      std::fprintf(stderr, "usage: 31_trimkv_distill [MODEL_DIR] [--full] [--steps N] [--capacity M] [--stdlib DIR] [--out FILE]\n");
      return 2;
    }
  }
  full = full && !smoke;
  const bool embedded = model_dir.empty() && !smoke && fs::exists(fs::path(MEMBOUND_EMBEDDED_MODEL) / "config.json");
  if (embedded) model_dir = MEMBOUND_EMBEDDED_MODEL;
  if (stdlib.empty()) stdlib = llm::find_python_stdlib();
  if (stdlib.empty()) {
    std::fprintf(stderr, "31_trimkv_distill: no /usr/lib/python3.N with os.py here; pass --stdlib DIR\n");
    return 1;
  }
  index_t picked = 0;
  const index_t every = full ? 1 : 10;
  const auto text = llm::byte_corpus::from_directory(
      stdlib, ".py", [&](const std::string& rel) { return llm::python_stdlib_split::train(rel) && picked++ % every == 0; });
  const auto heldout = llm::byte_corpus::from_directory(stdlib, ".py", llm::python_stdlib_split::test);

  // The frozen model.
  llm::decoder_spec spec;
  std::unique_ptr<llm::trainable_model> m;
  if (!model_dir.empty()) {
    m = std::make_unique<llm::trainable_model>(llm::trainable_model::load(model_dir));
    spec = m->spec();
    std::printf("model: %s (%.2f M parameters)\n", model_dir.string().c_str(), static_cast<double>(spec.parameters()) / 1e6);
  } else {
    spec.vocab = llm::byte_vocab_size, spec.hidden = 64, spec.intermediate = 160, spec.layers = 2, spec.heads = 4;
    spec.kv_heads = 2, spec.head_dim = 16, spec.max_positions = 256;
    m = std::make_unique<llm::trainable_model>(spec, 0);
    model_dir = "31_random_model";
    m->save(model_dir);
    std::printf("model: none given; a RANDOM byte-level model (%.2f M parameters) in %s: the gates learn nothing useful\n",
                static_cast<double>(spec.parameters()) / 1e6, model_dir.string().c_str());
  }
  const index_t B = full ? 4 : 2, T = std::min<index_t>(full ? 1024 : 128, spec.max_positions);
  if (steps <= 0) steps = full ? 400 : 12;
  llm::distill_config cfg;
  cfg.capacity = capacity >= 0 ? capacity : (full ? 128.0f : 16.0f);
  cfg.lr = 1e-3f;
  cfg.intermediate = full ? 512 : 64;
  // beside the model, except for the embedded one and the random one (whose gates stay in ./)
  if (out.empty())
    out = embedded || model_dir == "31_random_model" ? fs::path("31_retention_gates.safetensors") : model_dir / "retention_gates.safetensors";
  llm::trainable_gates gates(spec, cfg, 0);
  llm::gate_distiller dist(*m, gates, cfg);
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  std::printf("distilling %lld gates (%.2f M parameters, width %lld) for %lld steps of %lld x %lld tokens, M = %.0f, %d threads\n\n",
              static_cast<long long>(spec.layers), static_cast<double>(gates.parameters().count()) / 1e6,
              static_cast<long long>(cfg.intermediate), static_cast<long long>(steps), static_cast<long long>(B),
              static_cast<long long>(T), static_cast<double>(cfg.capacity), threads);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(B * T)), targets(ids.size()), w(static_cast<std::size_t>(T + 1));
  const auto t0 = std::chrono::steady_clock::now();
  for (index_t s = 0; s < steps; ++s) {
    for (index_t r = 0; r < B; ++r) {
      text.sample(11, static_cast<std::uint64_t>(s), static_cast<std::uint64_t>(r), w);
      std::copy_n(w.begin(), T, ids.begin() + r * T);
      std::copy_n(w.begin() + 1, T, targets.begin() + r * T);
    }
    const auto rec = dist.step(ids, targets, B, T);
    if (s % (full ? 20 : 4) == 0 || s + 1 == steps) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = secs / static_cast<double>(s + 1) * static_cast<double>(steps - s - 1);
      std::printf("step %5lld/%lld  total %.4f  kl %.4f  ntp %.4f  cap %.4f  |g| %.3f  %6.0f tok/s  ETA %dm%02ds\n",
                  static_cast<long long>(s + 1), static_cast<long long>(steps), static_cast<double>(rec.total),
                  static_cast<double>(rec.kl), static_cast<double>(rec.ntp), static_cast<double>(rec.capacity),
                  static_cast<double>(rec.grad_norm), static_cast<double>((s + 1) * B * T) / secs, static_cast<int>(eta / 60),
                  static_cast<int>(eta) % 60);
      std::fflush(stdout);
    }
  }
  gates.save(out);
  std::printf("\nwrote %s after %.1f minutes\n", out.string().c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60.0);

  // The gates inside llm::model: trim_kv beside other policies at budget M on a held-out window.
  const llm::model lm = llm::model::load(model_dir);
  const auto rg = llm::retention_gates::load(out, lm.config());
  const index_t len = std::min<index_t>(full ? 1024 : 192, spec.max_positions);
  std::vector<std::int64_t> win(static_cast<std::size_t>(len));
  heldout.sample(5, 0, 0, win);
  llm::eval::grid_config g;
  g.text.assign(win.begin(), win.end());
  g.text_opt.context = len / 4;
  g.policies = {"full", "trim_kv", "streaming_llm", "h2o"};
  g.budgets = {static_cast<index_t>(cfg.capacity)};
  g.gates = rg;
  const auto rows = llm::eval::run_grid(lm, g);
  std::printf("\n%-14s %7s %11s %10s %12s\n", "policy", "budget", "perplexity", "agreement", "peak KiB");
  for (const auto& r : rows)
    std::printf("%-14s %7lld %11.3f %10.3f %12.1f\n", r.policy.c_str(), static_cast<long long>(r.budget), r.perplexity,
                r.agreement, static_cast<double>(r.peak_cache_bytes) / 1024.0);
  return 0;
}
