// SPDX-License-Identifier: MIT
// bench_llm: llm::model decode and prefill against the probes of the same binary (ratios only mean
// something within one run on this VM).
//  - decode_{f32,bf16}_T{1,2}: one decode step (batch 1, 64 tokens of context) of a random
//    Llama-shaped model whose matrices exceed the last-level cache (C 2048, 6 layers, 16 heads /
//    8 KV heads of 128, MLP 5632, vocabulary 32000: 348 M parameters, 1.39 GB in f32, 0.70 GB in
//    bf16), the context kept between 64 and 128 tokens; counters tokens/s and the implied weight
//    bytes/s (every matrix read once per token).
//    Baseline: probe_read, one thread summing a 1 GiB buffer. Targets: weight bytes/s >= 0.8 x the
//    probe at 1 thread; 2 threads >= 1.6 x 1 thread (tokens/s).
//  - prefill_f32_T512: one 512-token chunk through a smaller model (C 1024, 4 layers, MLP 2816,
//    vocabulary 32000, 79 M parameters), FLOP/s counting 2 x parameters x tokens plus the causal
//    attention (4 D per visible pair per head). Baseline: probe_fma. Target 0.5.
//  - train_step_T{1,2}: one training step (forward, cross-entropy, backward, gradient clipping and
//    AdamW: llm::trainer::step) of a byte-level Llama at the shape of the embedded default model
//    (C 256, 6 layers, 8 heads / 4 KV heads of 32, MLP 704, vocabulary 257: 4.6 M parameters) on
//    8 sequences of 1024 tokens; counters tokens/s and model FLOP/s (3 x the forward's).
//    train_forward_T1 / train_backward_T1 time the two passes alone, FLOP/s beside probe_fma
//    (forward: 2 x matrix parameters x tokens + 4 D per visible pair per head; backward: twice
//    the forward plus the recomputed scores, 2 D per pair per head).
//    train_attention_{panels,gemm_tiles}: one layer's nn::causal_attention forward + backward at
//    that shape (8 x 1024 tokens), through the SIMD panels and through the scalar backend's path
//    (the GEMM entry on (block, T) tiles, SIMD softmax); FLOP/s = 14 D per visible pair per head.
// The models are written once to a temporary safetensors file and mapped (the first touch of
// their pages is outside the timed loops).
// With MEMBOUND_LLM_MODEL=<Hugging Face folder> set, decode_model_T{1,2} time the same decode step
// on that model (bench/compare/llm_pytorch.py uses it to run PyTorch and membound on one model);
// with MEMBOUND_TRAIN_MODEL=<folder> (and MEMBOUND_TRAIN_BATCH / MEMBOUND_TRAIN_TOKENS, default 8 x
// 1024), train_model_T{1,2} time train_step on that model (bench/compare/train_pytorch.py).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/llm/model.hpp"
#include "membound/llm/random_model.hpp"
#include "membound/llm/corpus.hpp"
#include "membound/llm/trainer.hpp"
#include "probes.hpp"

using namespace membound;
namespace bm = ::benchmark;

namespace {

struct shape {
  index_t C, layers, H, G, D, I, V;
};
constexpr shape big{2048, 6, 16, 8, 128, 5632, 32000};
constexpr shape small{1024, 4, 16, 4, 64, 2816, 32000};

/// A model folder of random weights (llm::write_random_model) in /tmp, stored as `type`.
std::filesystem::path write_model(const shape& s, dtype type, const char* tag) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / (std::string("membound_bench_llm_") + tag);
  llm::random_model_spec spec;
  spec.vocab = s.V;
  spec.hidden = s.C;
  spec.intermediate = s.I;
  spec.layers = s.layers;
  spec.heads = s.H;
  spec.kv_heads = s.G;
  spec.head_dim = s.D;
  spec.type = type;
  llm::write_random_model(dir, spec);
  return dir;
}

/// Loaded once per process, weights paged in.
const llm::model& model_of(bool bf) {
  static std::unique_ptr<llm::model> f32, b16;
  std::unique_ptr<llm::model>& m = bf ? b16 : f32;
  if (!m) {
    m = std::make_unique<llm::model>(llm::model::load(bf ? write_model(big, dtype::bf16, "bf16") : write_model(big, dtype::f32, "f32")));
    llm::state s = m->make_state({.batch = 1, .max_tokens = 8, .chunk = 1});
    const std::int32_t t = 1;
    m->prefill(s, 0, std::span<const std::int32_t>(&t, 1)); // touches every page
  }
  return *m;
}

void decode_on(bm::State& st, const llm::model& m, int threads);

void decode(bm::State& st, bool bf, int threads) { decode_on(st, model_of(bf), threads); }

void decode_on(bm::State& st, const llm::model& m, int threads) {
  bench::use_cpus(threads);
  llm::state s = m.make_state({.batch = 1, .max_tokens = 128});
  std::vector<std::int32_t> prompt(64);
  for (std::size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<std::int32_t>(i * 37 % static_cast<std::size_t>(m.config().vocab_size));
  array<float> logits({1, m.config().vocab_size});
  m.prefill(s, 0, prompt, logits.view());
  std::int32_t tok = 5;
  m.decode(s, std::span<const std::int32_t>(&tok, 1), logits.view()); // warm
  for (auto _ : st) {
    if (s.position(0) + 1 >= 128) { // keep the context (64..128 tokens) and its attention traffic small
      st.PauseTiming();
      s.reset(0);
      m.prefill(s, 0, prompt);
      st.ResumeTiming();
    }
    m.decode(s, std::span<const std::int32_t>(&tok, 1), logits.view());
    bm::DoNotOptimize(logits.data());
  }
  bench::use_cpus(1);
  bench::items(st, "tokens/s", 1.0);
  bench::bytes(st, static_cast<double>(m.weights().matrix_bytes()));
}

void prefill(bm::State& st) {
  static const llm::model m = llm::model::load(write_model(small, dtype::f32, "small_f32"));
  constexpr index_t T = 512;
  llm::state s = m.make_state({.batch = 1, .max_tokens = T, .chunk = T});
  std::vector<std::int32_t> prompt(T);
  for (index_t i = 0; i < T; ++i) prompt[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i * 131 % 32000);
  array<float> logits({1, m.config().vocab_size});
  m.prefill(s, 0, prompt, logits.view()); // warm
  for (auto _ : st) {
    s.reset(0);
    m.prefill(s, 0, prompt, logits.view());
    bm::DoNotOptimize(logits.data());
  }
  const double C = static_cast<double>(small.C), I = static_cast<double>(small.I), D = static_cast<double>(small.D);
  const double per_layer = C * (static_cast<double>(small.H + 2 * small.G) * D) + C * static_cast<double>(small.H) * D + 3 * C * I;
  // matrices for every token (the LM head only for the last), plus causal attention
  const double flop = 2.0 * T * per_layer * static_cast<double>(small.layers) + 2.0 * C * static_cast<double>(small.V) +
                      4.0 * D * static_cast<double>(small.H) * (T * (T + 1) / 2.0) * static_cast<double>(small.layers);
  bench::flops(st, flop);
  bench::items(st, "tokens/s", T);
}

/// The embedded default model's shape (models/tiny-py-lm).
llm::decoder_spec train_shape() {
  llm::decoder_spec s;
  s.vocab = 257, s.hidden = 256, s.intermediate = 704, s.layers = 6, s.heads = 8, s.kv_heads = 4, s.head_dim = 32;
  s.max_positions = 1024;
  return s;
}

/// Forward flops of one batch: every matrix once per token (the embedding lookup is free), plus
/// the causal attention's two products (4 D per visible pair per head).
double train_forward_flops(const llm::decoder_spec& s, index_t B, index_t T) {
  const double matrices = static_cast<double>(s.parameters() - s.vocab * s.hidden * (s.tie_embeddings ? 0 : 1) -
                                              s.layers * 2 * s.hidden - s.hidden);
  const double pairs = static_cast<double>(T) * static_cast<double>(T + 1) / 2.0;
  return 2.0 * matrices * static_cast<double>(B * T) +
         4.0 * static_cast<double>(s.head_dim * s.heads * s.layers) * pairs * static_cast<double>(B);
}

/// Tokens of a fixed pseudo-random byte stream (the data does not change the work).
llm::batch_source random_bytes() {
  return [](std::uint64_t step, index_t row, std::span<std::int64_t> out) {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<std::int64_t>(llm::detail::draw64(3, step, static_cast<std::uint64_t>(row), i) % 256);
  };
}

void train_step_on(bm::State& st, llm::trainable_model& m, int threads, index_t B, index_t T) {
  bench::use_cpus(threads);
  llm::trainer_config cfg;
  cfg.batch = B, cfg.tokens = T, cfg.steps = 1 << 30, cfg.warmup = 10, cfg.progress = nullptr;
  llm::trainer tr(m, random_bytes(), cfg);
  tr.step(); // warm: activations, optimiser state, GEMM packing
  for (auto _ : st) bm::DoNotOptimize(tr.step().loss);
  bench::use_cpus(1);
  bench::items(st, "tokens/s", static_cast<double>(B * T));
  bench::flops(st, 3.0 * train_forward_flops(m.spec(), B, T));
}

void train_step(bm::State& st, int threads) {
  llm::trainable_model m(train_shape(), 1);
  train_step_on(st, m, threads, 8, 1024);
}

/// forward = true: forward + cross-entropy; false: backward alone (the forward untimed).
void train_pass(bm::State& st, bool forward) {
  constexpr index_t B = 8, T = 1024;
  llm::trainable_model m(train_shape(), 1);
  std::vector<std::int64_t> ids(B * T), targets(B * T);
  random_bytes()(0, 0, ids);
  random_bytes()(1, 0, targets);
  m.forward(ids, B, T);
  m.cross_entropy(targets);
  m.backward(m.dlogits()); // warm
  for (auto _ : st) {
    if (!forward) st.PauseTiming();
    m.forward(ids, B, T);
    bm::DoNotOptimize(m.cross_entropy(targets));
    if (!forward) {
      st.ResumeTiming();
      m.backward(m.dlogits());
    }
  }
  const auto& s = m.spec();
  const double recompute = 2.0 * static_cast<double>(s.head_dim * s.heads * s.layers) * (T * (T + 1) / 2.0) * B;
  bench::flops(st, forward ? train_forward_flops(s, B, T) : 2.0 * train_forward_flops(s, B, T) + recompute);
}

/// One layer's causal attention of the embedded model's shape (8 x 1024 tokens, 8 query / 4 KV
/// heads of 32), forward then backward, through backend B: the SIMD panels or the scalar
/// backend's GEMM-entry tiles. FLOP/s: 4 D per visible pair per head forward, 10 D backward.
template <class B>
void train_attention(bm::State& st) {
  constexpr index_t Bn = 8, T = 1024, H = 8, G = 4, D = 32;
  array<float> q({Bn, T, H, D}), k({Bn, T, G, D}), v({Bn, T, G, D}), o({Bn, T, H, D}), lse({Bn, H, T}), d_o({Bn, T, H, D});
  array<float> dq({Bn, T, H, D}), dk({Bn, T, G, D}), dv({Bn, T, G, D}), ws;
  std::vector<std::int64_t> bytes(static_cast<std::size_t>(q.size()));
  random_bytes()(0, 0, bytes);
  for (array<float>* a : {&q, &k, &v, &d_o})
    for (index_t i = 0; i < a->size(); ++i) a->data()[i] = static_cast<float>(bytes[static_cast<std::size_t>(i)] - 128) / 64.0f;
  const nn::causal_attention att{};
  const auto pass = [&] {
    att.forward<B>(q.cview(), k.cview(), v.cview(), o.view(), lse.view(), ws);
    att.backward<B>(q.cview(), k.cview(), v.cview(), o.cview(), lse.cview(), d_o.cview(), dq.view(), dk.view(), dv.view(), ws);
  };
  pass(); // warm: workspace
  for (auto _ : st) {
    pass();
    bm::DoNotOptimize(dq.data());
  }
  bench::flops(st, 14.0 * D * H * Bn * (T * (T + 1) / 2.0));
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  constexpr index_t probe_n = index_t(1) << 28; // 1 GiB of floats, well past the last-level cache
  static array<float> probe({probe_n}); // zero-filled: touched
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMillisecond)->UseRealTime();
  };
  reg("probe_read", [](bm::State& st) { bench::probe_read(st, probe.data(), probe_n); })->Iterations(8);
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000)->Unit(bm::kMicrosecond);
  reg("decode_f32_T1", [](bm::State& st) { decode(st, false, 1); })->Iterations(12);
  reg("decode_f32_T2", [](bm::State& st) { decode(st, false, 2); })->Iterations(12);
  reg("decode_bf16_T1", [](bm::State& st) { decode(st, true, 1); })->Iterations(12);
  reg("decode_bf16_T2", [](bm::State& st) { decode(st, true, 2); })->Iterations(12);
  reg("prefill_f32_T512", [](bm::State& st) { prefill(st); })->Iterations(2);
  reg("train_forward_T1", [](bm::State& st) { train_pass(st, true); })->Iterations(3);
  reg("train_backward_T1", [](bm::State& st) { train_pass(st, false); })->Iterations(3);
  reg("train_attention_gemm_tiles", [](bm::State& st) { train_attention<backend::scalar>(st); })->Iterations(5);
  reg("train_attention_panels", [](bm::State& st) { train_attention<backend::best_cpu>(st); })->Iterations(5);
  reg("train_step_T1", [](bm::State& st) { train_step(st, 1); })->Iterations(3);
  reg("train_step_T2", [](bm::State& st) { train_step(st, 2); })->Iterations(3);
  if (const char* dir = std::getenv("MEMBOUND_TRAIN_MODEL")) {
    static llm::trainable_model folder = llm::trainable_model::load(dir);
    static const index_t batch = std::getenv("MEMBOUND_TRAIN_BATCH") ? std::atoll(std::getenv("MEMBOUND_TRAIN_BATCH")) : 8;
    static const index_t tokens = std::getenv("MEMBOUND_TRAIN_TOKENS") ? std::atoll(std::getenv("MEMBOUND_TRAIN_TOKENS")) : 1024;
    reg("train_model_T1", [](bm::State& st) { train_step_on(st, folder, 1, batch, tokens); })->MinTime(2.0);
    reg("train_model_T2", [](bm::State& st) { train_step_on(st, folder, 2, batch, tokens); })->MinTime(2.0);
  }
  if (const char* dir = std::getenv("MEMBOUND_LLM_MODEL")) {
    static const llm::model folder = llm::model::load(dir);
    reg("decode_model_T1", [](bm::State& st) { decode_on(st, folder, 1); })->MinTime(1.0);
    reg("decode_model_T2", [](bm::State& st) { decode_on(st, folder, 2); })->MinTime(1.0);
  }

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"decode_f32_T1", "probe_read", "bytes_per_second", 0.8},
      {"decode_bf16_T1", "probe_read", "bytes_per_second", 0.8},
      {"decode_f32_T2", "decode_f32_T1", "tokens/s", 1.6},
      {"decode_bf16_T2", "decode_bf16_T1", "tokens/s", 1.6},
      {"decode_bf16_T1", "decode_f32_T1", "tokens/s", 0},
      {"prefill_f32_T512", "probe_fma", "FLOP/s", 0.5},
      {"train_forward_T1", "probe_fma", "FLOP/s", 0},
      {"train_backward_T1", "probe_fma", "FLOP/s", 0},
      {"train_attention_panels", "probe_fma", "FLOP/s", 0},
      {"train_attention_panels", "train_attention_gemm_tiles", "FLOP/s", 0},
      {"train_step_T1", "probe_fma", "FLOP/s", 0},
      {"train_step_T2", "train_step_T1", "tokens/s", 0},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
