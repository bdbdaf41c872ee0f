// SPDX-License-Identifier: MIT
// bench_memory: memory/ (test-time-learned memory) beside the FMA-peak probe, in one process.
// - pytorch_config_*: the configuration of ../research baselines section 4, which
//   bench/compare/memory_pytorch.py runs in PyTorch in the same run: 2-layer MLP memory
//   W1 silu(W0 x), d = 64, hidden 256, no biases, no residual, l2 loss, SGD lr 0.01, read after
//   each token's update, T = 2048, batch 1; chunk 64 (chunk-parallel) and the recurrent loop.
//   FLOP/s counts the chunk's matrix products only (see pytorch_config_flops).
// - <configuration>_d<d>_{recurrent,chunk64}: every named configuration at d = 64 and 128,
//   T = 4096. d is the memory's input width D: d_k = d_v = d for identity features; for the
//   polynomial and truncated-exp maps (degree 2) d_k is chosen so that D = C(d_k + 2, 2) is
//   closest to d (66 for d = 64, 136 for d = 128). Deep memories have hidden width 4 d.
// - layer_heads_d128_t{1,2}: memory::layer with 4 heads of titans memory at d = 128 (one head
//   per thread), 1 and 2 threads: the 2-thread speed-up.
// Single-threaded unless the name says otherwise (_t2: CPUs 0 and 1); pinned to CPU 0.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>

#include <membound/memory/memory.hpp>


#include "probes.hpp"

namespace bm = benchmark;
using namespace membound;

namespace {

struct inputs {
  array<float> q, k, v, y;
};
inputs make_inputs(index_t T, index_t dk, index_t dv, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  inputs in{array<float>({T, dk}), array<float>({T, dk}), array<float>({T, dv}), array<float>({T, dv})};
  for (float& x : in.v.view().span()) x = nd(g);
  for (array<float>* a : {&in.q, &in.k}) // unit-norm rows, as the layer's normalisation gives them
    for (index_t t = 0; t < T; ++t) {
      double s = 0.0;
      for (index_t j = 0; j < dk; ++j) s += double((*a)(t, j) = nd(g)) * (*a)(t, j);
      for (index_t j = 0; j < dk; ++j) (*a)(t, j) = static_cast<float>((*a)(t, j) / std::sqrt(s));
    }
  return in;
}

/// FLOPs of the matrix products of one chunk of b tokens of the pytorch configuration (d, hidden H,
/// no window history): gradient forward (2 layers), backward through W1, the masked reads of both
/// layers (x W^T, x a^T, (K .* x a^T) delta) and the end-of-chunk weight updates.
double pytorch_config_flops(double b, double d, double H) {
  const double grad = 2 * b * (d * H + H * d) + 2 * b * d * H;
  const double reads = 2 * b * (d * H + b * d + b * H) + 2 * b * (H * d + b * H + b * d);
  const double update = 2 * b * (H * d + d * H);
  return grad + reads + update;
}

void pytorch_config(bm::State& st, bool chunked) {
  const index_t T = 2048, d = 64, H = 256, b = 64;
  memory::mlp_memory a;
  a.hidden_dim = H;
  a.act = nn::activation::silu;
  a.residual = false;
  memory::module_options o;
  o.mode = chunked ? memory::execution::chunked : memory::execution::recurrent;
  o.chunk = b;
  memory::module<memory::mlp_memory, memory::delta, memory::identity_features, memory::gd> m(d, d, a, {}, {}, {}, o);
  inputs in = make_inputs(T, d, d, 1);
  memory::gates g;
  g.eta = 0.01f;
  m.forward(in.q.cview(), in.k.cview(), in.v.cview(), g, in.y.view()); // warm-up: buffers sized
  for (auto _ : st) {
    m.reset();
    m.forward(in.q.cview(), in.k.cview(), in.v.cview(), g, in.y.view());
    bm::ClobberMemory();
  }
  bench::items(st, "tokens/s", double(T));
  if (chunked) bench::flops(st, double(T / b) * pytorch_config_flops(double(b), double(d), double(H)));
}

/// d_k whose degree-2 feature dimension C(d_k + 2, 2) is closest to d.
index_t poly_dk(index_t d) {
  index_t best = 1;
  for (index_t k = 1; k < d; ++k)
    if (std::llabs((k + 2) * (k + 1) / 2 - d) < std::llabs((best + 2) * (best + 1) / 2 - d)) best = k;
  return best;
}

template <class M>
void run_config(bm::State& st, M& m, index_t T) {
  inputs in = make_inputs(T, m.key_dim(), m.value_dim(), 2);
  memory::gates g;
  g.eta = 0.05f;
  g.alpha = 0.999f;
  g.theta = 0.9f;
  m.forward(in.q.cview().slice(0, 0, 128), in.k.cview().slice(0, 0, 128), in.v.cview().slice(0, 0, 128), g,
            in.y.view().slice(0, 0, 128)); // warm-up
  for (auto _ : st) {
    m.reset();
    m.forward(in.q.cview(), in.k.cview(), in.v.cview(), g, in.y.view());
    bm::ClobberMemory();
  }
  bench::items(st, "tokens/s", double(T));
}

template <class M, class Arch, class Rule, class Feat>
void named(bm::State& st, index_t d, bool chunked, Arch arch, Rule rule, Feat feat, bool poly) {
  memory::module_options o;
  o.mode = chunked ? memory::execution::chunked : memory::execution::recurrent;
  o.chunk = 64;
  const index_t dk = poly ? poly_dk(d) : d;
  if constexpr (!std::is_same_v<Arch, memory::matrix_memory>) arch.hidden_dim = 4 * d;
  M m(dk, d, arch, rule, feat, {}, o);
  run_config(st, m, 4096);
}

/// memory::layer with 4 heads of titans memory (d = 128, hidden 512), d_model 512, chunk 64,
/// T = 2048, on `threads` threads (CPUs 0 .. threads-1).
void layer_heads(bm::State& st, int threads) {
  bench::use_cpus(threads);
  const index_t T = 2048;
  memory::module_options o;
  o.mode = memory::execution::chunked;
  o.chunk = 64;
  memory::layer<memory::titans> L(memory::layer_config{512, 4, 128, 4, 0.1f}, memory::mlp_memory{}, {}, {}, {}, o, 1);
  inputs in = make_inputs(T, 512, 512, 3);
  L.forward(in.q.cview().slice(0, 0, 128), in.y.view().slice(0, 0, 128)); // warm-up
  for (auto _ : st) {
    L.reset();
    L.forward(in.q.cview(), in.y.view());
    bm::ClobberMemory();
  }
  bench::items(st, "tokens/s", double(T));
  bench::use_cpus(1);
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMillisecond)->UseRealTime();
  };
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000)->Unit(bm::kMicrosecond);
  reg("pytorch_config_chunk64", [](bm::State& st) { pytorch_config(st, true); });
  reg("pytorch_config_recurrent", [](bm::State& st) { pytorch_config(st, false); });
  reg("layer_heads_d128_t1", [](bm::State& st) { layer_heads(st, 1); });
  reg("layer_heads_d128_t2", [](bm::State& st) { layer_heads(st, 2); });
  for (index_t d : {64, 128})
    for (bool ch : {false, true}) {
      const std::string tag = "_d" + std::to_string(d) + (ch ? "_chunk64" : "_recurrent");
      using namespace memory;
      reg("linear_attention" + tag, [=](bm::State& st) { named<linear_attention>(st, d, ch, matrix_memory{}, dot_product{}, identity_features{}, false); });
      reg("delta_net" + tag, [=](bm::State& st) { named<delta_net>(st, d, ch, matrix_memory{}, delta{}, identity_features{}, false); });
      reg("longhorn" + tag, [=](bm::State& st) { named<longhorn>(st, d, ch, matrix_memory{}, delta{}, identity_features{}, false); });
      reg("titans" + tag, [=](bm::State& st) { named<titans>(st, d, ch, mlp_memory{}, delta{}, identity_features{}, false); });
      reg("omega_net" + tag, [=](bm::State& st) { named<omega_net>(st, d, ch, mlp_memory{}, omega{4}, polynomial_features{}, true); });
      reg("atlas" + tag, [=](bm::State& st) { named<atlas>(st, d, ch, mlp_memory{}, omega{4}, polynomial_features{}, true); })->Iterations(1);
      reg("deep_transformer" + tag, [=](bm::State& st) { named<deep_transformer>(st, d, ch, mlp_memory{}, dot_product{}, exp_taylor_features{}, true); });
      reg("dot" + tag, [=](bm::State& st) { named<dot>(st, d, ch, mlp_memory{}, omega{4}, exp_taylor_features{}, true); });
    }

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"pytorch_config_chunk64", "probe_fma", "FLOP/s", 0.4},
      {"layer_heads_d128_t2", "layer_heads_d128_t1", "tokens/s", 1.7},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
