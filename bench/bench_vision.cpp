// SPDX-License-Identifier: MIT
// bench_vision: EfficientViT-M0..M5 (vision/) beside the FMA-peak probe and the GEMM entry, in one
// process. Rows `efficientvit_m{i}_b{B}_t{T}`: batch B of 224x224 images on T threads (CPUs
// 0..T-1), counters images/s and FLOP/s (2 x the exact MAC count of efficientvit_macs per image).
// `gemm_384x384x3136`: the GEMM entry on a shape the batch-16 FFNs run (its GFLOP/s is the
// practical ceiling of the 1x1 convolutions). bench/compare/vision_pytorch.py runs timm's models
// in PyTorch in the same run and prints the ratios.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "membound/vision/vision.hpp"
#include "probes.hpp"

namespace bm = ::benchmark;
using namespace membound;

namespace {

void efficientvit(bm::State& st, const vision::efficientvit_config& cfg, index_t batch, int threads) {
  bench::use_cpus(threads);
  auto model = vision::efficientvit<>::random(cfg, 1);
  array<float> x({batch, 3, 224, 224}), logits({batch, 1000});
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : x.span()) v = nd(gen);
  model.forward(x.cview(), logits.view()); // warm-up: workspaces, first touch
  for (auto _ : st) {
    model.forward(x.cview(), logits.view());
    bm::ClobberMemory();
  }
  bench::items(st, "images/s", double(batch));
  bench::flops(st, 2.0 * double(vision::efficientvit_macs(cfg)) * double(batch));
  bench::use_cpus(1);
}

void gemm_entry(bm::State& st) {
  const index_t m = 384, k = 384, n = 3136;
  array<float> a({m, k}), b({k, n}), c({m, n});
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : a.span()) v = u(gen);
  for (float& v : b.span()) v = u(gen);
  cpu::gemm(a.cview(), b.cview(), c.view());
  for (auto _ : st) {
    cpu::gemm(a.cview(), b.cview(), c.view());
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * double(m) * double(n) * double(k));
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMillisecond)->UseRealTime();
  };
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000)->Unit(bm::kMicrosecond);
  reg("gemm_384x384x3136", gemm_entry);
  for (const auto& cfg : vision::efficientvit_configs())
    for (index_t batch : {1, 16})
      for (int threads : {1, 2})
        reg("efficientvit_" + cfg.name + "_b" + std::to_string(batch) + "_t" + std::to_string(threads),
            [=](bm::State& st) { efficientvit(st, cfg, batch, threads); });

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"gemm_384x384x3136", "probe_fma", "FLOP/s", 0.9},
      {"efficientvit_m3_b16_t1", "probe_fma", "FLOP/s", 0.6},
      {"efficientvit_m4_b16_t1", "probe_fma", "FLOP/s", 0.6},
      {"efficientvit_m5_b16_t1", "probe_fma", "FLOP/s", 0.6},
      {"efficientvit_m0_b16_t2", "efficientvit_m0_b16_t1", "images/s", 1.7},
      {"efficientvit_m4_b16_t2", "efficientvit_m4_b16_t1", "images/s", 1.7},
      {"efficientvit_m5_b16_t2", "efficientvit_m5_b16_t1", "images/s", 1.7},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
