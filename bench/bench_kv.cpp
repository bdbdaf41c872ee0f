// SPDX-License-Identifier: MIT
// bench_kv: decode attention over the paged KV cache (kv::attend_decode) beside the read probe, in
// one process (ratios only mean something within a run on this VM). Single thread, pinned.
// - one KV head (G = 1), D = 128, pages of 64 tokens, S in {1024, 8192, 32768}, f32 and bf16
//   storage, H = 1 (MHA-like: one query head per KV head) and H = 4 (GQA group of 4);
// - bytes/s counts the K and V bytes read (2 S D sizeof(T) per step), tokens/s the cached tokens
//   attended per step; the scalar twin on one shape as a baseline.
// Decode is memory bound (research/kv_eviction.md section 6), so the judge is the read probe:
// target >= 0.8 of it at S >= 8k in f32, and bf16 tokens/s >= 1.7 x f32 tokens/s (half the bytes).
// Each benchmark rotates over enough sequences that the K and V it touches (about 128 MiB, the
// read probe's array size) are not cache-resident from the previous step, as in a real decode
// where every layer's and sequence's KV is visited once per step.
// - eviction cost per decode step, per policy, at budgets {256, 1024, 4096} tokens per head with a
//   64-token buffer (G = 8 KV heads, H = 32 query heads, D = 128, f32): one step = append a token
//   to every head + the policy's state update (H2O adds the step's attention mass, TOVA stores it)
//   + kv::evictor::step (scoring, selection and compaction once the buffer is full, amortised
//   over the 64 steps). Reported beside that step's attention (attend_decode with the mass output
//   over budget + 32 tokens, the mean size) as time(policy step) / time(attention): targets at
//   budget 1024 <= 0.05 for full, streaming_llm, h2o, tova, knorm, random, trim_kv and <= 0.25 for
//   keydiff (it re-reads K), snapkv and expected_attention (they also read a 64-query window,
//   pushed into a kv::query_window every step: snapkv's window attention, expected_attention's
//   query statistics). The append is included, so the figures are upper bounds.
// - prefill attention (kv::attend_prefill), T = S = 2048, D = 128, H = G = 1 and H = 4 over G = 1:
//   compute bound, so FLOP/s (causal FLOPs only, 4 D T (T+1)/2 per head) against the FMA probe,
//   target >= 0.40; kv::attention_column_sums on the same shape, reported as its time relative to
//   the attention pass (the prefills/s ratio attention / column sums). The same attention with bf16
//   K and V (prefill_bf16_*): the same FLOP/s target, and its prefills/s beside f32's (compute
//   bound, so about 1: bf16 saves memory, not time).
// Run: bench_kv --benchmark_min_time=0.2 --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "membound/kv/kv.hpp"
#include "probes.hpp"

using namespace membound;
namespace bm = benchmark;

namespace {

constexpr index_t probe_n = index_t(32) << 20; // 128 MiB
array<float>& probe_buf() {
  static array<float> a({probe_n}); // zero-filled: touched
  return a;
}

constexpr index_t head_dim = 128, page = 64;
constexpr std::size_t footprint = std::size_t(128) << 20; // K + V bytes rotated over

/// A cache of `batch` sequences x 1 KV head of S tokens each, K + V about `footprint` bytes.
/// Built once per (T, S) and kept while consecutive benchmarks use it (the H = 1 and H = 4 runs).
template <class T>
struct fixture {
  index_t s, batch;
  kv::cache<T> cache;
  static index_t batch_for(index_t s) {
    const std::size_t per_seq = 2 * static_cast<std::size_t>(s) * head_dim * sizeof(T);
    return std::max<index_t>(1, static_cast<index_t>(footprint / per_seq));
  }
  static kv::cache_config config(index_t s) {
    kv::cache_config c;
    c.batch = batch_for(s);
    c.kv_heads = 1;
    c.head_dim = head_dim;
    c.page_tokens = page;
    c.pages = c.batch * kv::pages_for(s, page);
    c.state_slots = 0;
    return c;
  }
  explicit fixture(index_t s_) : s(s_), batch(batch_for(s_)), cache(config(s_)) {
    array<float> k({s, head_dim}), v({s, head_dim}); // (S,D) (S,D)
    std::mt19937 gen(1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : k.span()) x = u(gen);
    for (float& x : v.span()) x = u(gen);
    std::vector<std::int32_t> pos(static_cast<std::size_t>(s));
    for (index_t i = 0; i < s; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    for (index_t b = 0; b < batch; ++b) cache.append(b, 0, k.cview(), v.cview(), pos);
  }
};
template <class T>
fixture<T>& get_fixture(index_t s) {
  static std::unique_ptr<fixture<T>> f;
  if (!f || f->s != s) {
    f.reset();
    f = std::make_unique<fixture<T>>(s);
  }
  return *f;
}

template <class B, class T>
void attend(bm::State& st, index_t heads, index_t s) {
  auto& f = get_fixture<T>(s);
  array<float> q({heads, head_dim}), out({heads, head_dim}); // (H,D) (H,D)
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : q.span()) x = u(gen);
  index_t b = 0;
  for (auto _ : st) {
    kv::attend_decode<B>(f.cache, b, q.cview(), out.view());
    bm::DoNotOptimize(out.data());
    bm::ClobberMemory();
    b = b + 1 == f.batch ? 0 : b + 1;
  }
  bench::bytes(st, 2.0 * static_cast<double>(s) * head_dim * sizeof(T));
  bench::items(st, "tokens/s", static_cast<double>(s));
}

// ---- eviction cost per decode step -----------------------------------------------------------
constexpr index_t ev_g = 8, ev_h = 32, ev_buffer = 64, ev_window = 64;

/// A cache of 8 KV heads at `budget` tokens each (room for budget + buffer), state slots
/// (log beta, accumulated attention, last attention) filled with plausible values.
kv::cache<float> eviction_cache(index_t budget, index_t tokens) {
  kv::cache_config cfg;
  cfg.kv_heads = ev_g;
  cfg.head_dim = head_dim;
  cfg.page_tokens = page;
  cfg.pages = ev_g * kv::pages_for(budget + ev_buffer, page);
  cfg.state_slots = 3;
  kv::cache<float> c(cfg);
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), lb(-0.05f, 0.0f), m(0.0f, 0.002f);
  std::vector<float> k(head_dim), v(head_dim);
  for (index_t g = 0; g < ev_g; ++g)
    for (index_t i = 0; i < tokens; ++i) {
      for (auto& x : k) x = u(gen);
      for (auto& x : v) x = u(gen);
      const float st[3] = {lb(gen), m(gen), m(gen)};
      c.append(0, g, k, v, static_cast<std::int32_t>(i), st);
    }
  return c;
}

/// One decode step's attention (with the per-token mass) over budget + 32 tokens per head.
void step_attention(bm::State& st, index_t budget) {
  auto c = eviction_cache(budget, budget + ev_buffer / 2);
  array<float> q({ev_h, head_dim}), out({ev_h, head_dim}), mass({ev_g, budget + ev_buffer}); // (H,D) (H,D) (G,S)
  std::vector<float> scratch(kv::attend_scratch_size(c, 0, ev_h));
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : q.span()) x = u(gen);
  for (auto _ : st) {
    kv::attend_decode(c, 0, q.cview(), out.view(), 0.0f, mass.view(), scratch);
    bm::ClobberMemory();
  }
  bench::items(st, "steps/s", 1.0);
}

/// One decode step's eviction work under policy p (see the file comment).
/// With `qw` (snapkv, expected_attention), each step also pushes its H queries into the window,
/// which holds the queries of the last ev_window steps before the first step.
template <class Policy>
void eviction_step(bm::State& st, const Policy& p, index_t budget, int mass_slot /*0: none*/,
                   kv::query_window* qw = nullptr) {
  auto c = eviction_cache(budget, budget);
  array<float> qs({ev_h, head_dim}); // (H,D) the step's queries
  if (qw != nullptr) {
    std::mt19937 qg(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : qs.span()) x = u(qg);
    qw->clear(0);
    for (index_t i = budget - ev_window; i < budget; ++i) qw->push(0, qs.cview(), static_cast<std::int32_t>(i));
  }
  kv::evictor ev;
  ev.reserve(budget + ev_buffer);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), m(0.0f, 0.002f);
  std::vector<float> k(head_dim), v(head_dim);
  array<float> mass({ev_g, budget + ev_buffer}); // (G,S_max), stands in for attend_decode's mass output
  for (auto& x : k) x = u(gen);
  for (auto& x : v) x = u(gen);
  for (auto& x : mass.span()) x = m(gen);
  std::int32_t t = static_cast<std::int32_t>(budget);
  const index_t cap = c.total_pages() * c.page_tokens() / ev_g;
  for (auto _ : st) {
    for (index_t g = 0; g < ev_g; ++g) {
      if constexpr (requires { Policy::evicts; })
        if (!Policy::evicts && c.size(0, g) + 1 > cap) c.clear(0, g); // never evicts: restart (amortised away)
      const float s0[3] = {-0.01f, 0.0f, 0.0f};
      c.append(0, g, k, v, t, s0);
    }
    if (qw != nullptr) qw->push(0, qs.cview(), t);
    if (mass_slot != 0) // H2O accumulates into slot 1, TOVA keeps the latest in slot 2
      kv::record_attention(c, 0, mass.cview(), mass_slot, mass_slot == 1);
    ev.step(c, 0, p, t, budget, ev_buffer);
    ++t;
    bm::ClobberMemory();
  }
  bench::items(st, "steps/s", 1.0);
}

// ---- prefill attention (compute bound: judged against the FMA probe) --------------------------
/// kv::attend_prefill (or kv::attention_column_sums over all rows) on T = S = `t`, D = 128, H query
/// heads over G KV heads; FLOP/s counts only the causal work, 4 D T (T+1) / 2 per query head (QK^T
/// and PV; the column sums do the QK^T twice instead, the same count), prefills/s one per call.
/// T is the K/V element type (float or bf16; K and V are drawn in f32 and rounded).
template <class T = float>
void prefill(bm::State& st, index_t heads, index_t groups, index_t t, bool colsum) {
  array<float> q({heads, t, head_dim}), k({groups, t, head_dim}), v({groups, t, head_dim}); // (H,T,D) (G,S,D) (G,S,D)
  array<float> out({heads, t, head_dim}), cs({groups, t});                                   // (H,T,D) (G,S)
  std::mt19937 gen(6);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : q.span()) x = u(gen);
  for (float& x : k.span()) x = u(gen);
  for (float& x : v.span()) x = u(gen);
  array<T> kt({groups, t, head_dim}), vt({groups, t, head_dim}); // (G,S,D) (G,S,D) in the element type T
  auto to_t = [](float x) {
    if constexpr (std::is_same_v<T, bf16>) return bf16::from_float(x);
    else return x;
  };
  std::transform(k.span().begin(), k.span().end(), kt.span().begin(), to_t);
  std::transform(v.span().begin(), v.span().end(), vt.span().begin(), to_t);
  std::vector<float> scratch(colsum ? kv::attention_column_sums_scratch_floats(heads, groups, t, t, head_dim)
                                    : kv::attend_prefill_scratch_floats(heads, groups, t, head_dim));
  for (auto _ : st) {
    if (colsum) kv::attention_column_sums(q.cview(), kt.cview(), 0, cs.view(), 0.0f, scratch);
    else kv::attend_prefill(q.cview(), kt.cview(), vt.cview(), out.view(), 0.0f, scratch);
    bm::ClobberMemory();
  }
  const double td = static_cast<double>(t);
  bench::flops(st, 4.0 * head_dim * td * (td + 1.0) / 2.0 * static_cast<double>(heads));
  bench::items(st, "prefills/s", 1.0);
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMicrosecond)->UseRealTime();
  };
  reg("probe_read", [](bm::State& st) { bench::probe_read(st, probe_buf().data(), probe_n); })->Unit(bm::kMillisecond);
  for (index_t s : {1024, 8192, 32768})
    for (index_t h : {1, 4}) {
      const std::string tag = "_H" + std::to_string(h) + "_S" + std::to_string(s);
      reg("attend_f32" + tag, [h, s](bm::State& st) { attend<backend::best_cpu, float>(st, h, s); });
      reg("attend_bf16" + tag, [h, s](bm::State& st) { attend<backend::best_cpu, bf16>(st, h, s); });
    }
  reg("attend_scalar_f32_H4_S8192", [](bm::State& st) { attend<backend::scalar, float>(st, 4, 8192); });
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000);
  reg("prefill_f32_H1_T2048", [](bm::State& st) { prefill(st, 1, 1, 2048, false); })->Unit(bm::kMillisecond);
  reg("prefill_f32_H4G1_T2048", [](bm::State& st) { prefill(st, 4, 1, 2048, false); })->Unit(bm::kMillisecond);
  reg("prefill_bf16_H1_T2048", [](bm::State& st) { prefill<bf16>(st, 1, 1, 2048, false); })->Unit(bm::kMillisecond);
  reg("prefill_bf16_H4G1_T2048", [](bm::State& st) { prefill<bf16>(st, 4, 1, 2048, false); })->Unit(bm::kMillisecond);
  reg("prefill_colsum_H1_T2048", [](bm::State& st) { prefill(st, 1, 1, 2048, true); })->Unit(bm::kMillisecond);
  kv::h2o h2o;
  h2o.recent = 64;
  h2o.slot = 1;
  kv::tova tova;
  tova.slot = 2;
  for (index_t budget : {256, 1024, 4096}) {
    const std::string b = "_B" + std::to_string(budget);
    reg("step_attention" + b, [budget](bm::State& st) { step_attention(st, budget); });
    reg("evict_full" + b, [budget](bm::State& st) { eviction_step(st, kv::full{}, budget, 0); });
    reg("evict_streaming_llm" + b, [budget](bm::State& st) { eviction_step(st, kv::streaming_llm{4}, budget, 0); });
    reg("evict_h2o" + b, [budget, h2o](bm::State& st) { eviction_step(st, h2o, budget, 1); });
    reg("evict_tova" + b, [budget, tova](bm::State& st) { eviction_step(st, tova, budget, 2); });
    reg("evict_knorm" + b, [budget](bm::State& st) { eviction_step(st, kv::knorm{}, budget, 0); });
    reg("evict_keydiff" + b, [budget](bm::State& st) { eviction_step(st, kv::keydiff{}, budget, 0); });
    reg("evict_random" + b, [budget](bm::State& st) { eviction_step(st, kv::random{1}, budget, 0); });
    reg("evict_trim_kv" + b, [budget](bm::State& st) { eviction_step(st, kv::trim_kv{}, budget, 0); });
    reg("evict_snapkv" + b, [budget](bm::State& st) {
      kv::query_window qw(1, ev_h, head_dim, ev_window);
      eviction_step(st, kv::snapkv{ev_window, 5, kv::pooling::avg, &qw}, budget, 0, &qw);
    });
    reg("evict_expected_attention" + b, [budget](bm::State& st) {
      kv::query_window qw(1, ev_h, head_dim, ev_window);
      kv::expected_attention ea;
      ea.queries = &qw;
      eviction_step(st, ea, budget, 0, &qw);
    });
  }

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"attend_f32_H1_S1024", "probe_read", "bytes_per_second", 0},
      {"attend_f32_H1_S8192", "probe_read", "bytes_per_second", 0.8},
      {"attend_f32_H1_S32768", "probe_read", "bytes_per_second", 0.8},
      {"attend_f32_H4_S1024", "probe_read", "bytes_per_second", 0},
      {"attend_f32_H4_S8192", "probe_read", "bytes_per_second", 0.8},
      {"attend_f32_H4_S32768", "probe_read", "bytes_per_second", 0.8},
      {"attend_bf16_H1_S1024", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H1_S8192", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H1_S32768", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H4_S1024", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H4_S8192", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H4_S32768", "probe_read", "bytes_per_second", 0},
      {"attend_bf16_H1_S1024", "attend_f32_H1_S1024", "tokens/s", 0},
      {"attend_bf16_H1_S8192", "attend_f32_H1_S8192", "tokens/s", 1.7},
      {"attend_bf16_H1_S32768", "attend_f32_H1_S32768", "tokens/s", 1.7},
      {"attend_bf16_H4_S1024", "attend_f32_H4_S1024", "tokens/s", 0},
      {"attend_bf16_H4_S8192", "attend_f32_H4_S8192", "tokens/s", 1.7},
      {"attend_bf16_H4_S32768", "attend_f32_H4_S32768", "tokens/s", 1.7},
      {"attend_f32_H4_S8192", "attend_scalar_f32_H4_S8192", "tokens/s", 0},
      // prefill (causal FLOPs only) against the FMA peak; column sums' time / attention's time
      {"prefill_f32_H1_T2048", "probe_fma", "FLOP/s", 0.40},
      {"prefill_f32_H4G1_T2048", "probe_fma", "FLOP/s", 0.40},
      {"prefill_bf16_H1_T2048", "probe_fma", "FLOP/s", 0.40},
      {"prefill_bf16_H4G1_T2048", "probe_fma", "FLOP/s", 0.40},
      {"prefill_bf16_H1_T2048", "prefill_f32_H1_T2048", "prefills/s", 0},
      {"prefill_bf16_H4G1_T2048", "prefill_f32_H4G1_T2048", "prefills/s", 0},
      {"prefill_colsum_H1_T2048", "probe_fma", "FLOP/s", 0},
      {"prefill_f32_H1_T2048", "prefill_colsum_H1_T2048", "prefills/s", 0},
      // eviction cost / attention time per step (the rate ratio attention / eviction)
      {"step_attention_B256", "evict_full_B256", "steps/s", 0},
      {"step_attention_B256", "evict_streaming_llm_B256", "steps/s", 0},
      {"step_attention_B256", "evict_h2o_B256", "steps/s", 0},
      {"step_attention_B256", "evict_tova_B256", "steps/s", 0},
      {"step_attention_B256", "evict_knorm_B256", "steps/s", 0},
      {"step_attention_B256", "evict_keydiff_B256", "steps/s", 0},
      {"step_attention_B256", "evict_random_B256", "steps/s", 0},
      {"step_attention_B256", "evict_trim_kv_B256", "steps/s", 0},
      {"step_attention_B256", "evict_snapkv_B256", "steps/s", 0},
      {"step_attention_B256", "evict_expected_attention_B256", "steps/s", 0},
      {"step_attention_B1024", "evict_full_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_streaming_llm_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_h2o_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_tova_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_knorm_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_keydiff_B1024", "steps/s", -0.25},
      {"step_attention_B1024", "evict_random_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_trim_kv_B1024", "steps/s", -0.05},
      {"step_attention_B1024", "evict_snapkv_B1024", "steps/s", -0.25},
      {"step_attention_B1024", "evict_expected_attention_B1024", "steps/s", -0.25},
      {"step_attention_B4096", "evict_full_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_streaming_llm_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_h2o_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_tova_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_knorm_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_keydiff_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_random_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_trim_kv_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_snapkv_B4096", "steps/s", 0},
      {"step_attention_B4096", "evict_expected_attention_B4096", "steps/s", 0},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
