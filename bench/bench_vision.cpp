// SPDX-License-Identifier: MIT
// bench_vision: EfficientViT-M0..M5 (vision/) beside the FMA-peak probe and the GEMM entry, in one
// process. Rows `efficientvit_m{i}_b{B}_t{T}`: batch B of 224x224 images on T threads (CPUs
// 0..T-1), counters images/s and FLOP/s (2 x the exact MAC count of efficientvit_macs per image).
// `gemm_384x384x3136`: the GEMM entry on a shape the batch-16 FFNs run (its GFLOP/s is the
// practical ceiling of the 1x1 convolutions). `packed_conv1x1_MxKxN` / `sgemm_conv1x1_MxKxN`: one
// 1x1 convolution through cpu::packed_gemm and through the GEMM entry (hot weights).
// `tile_attention_N{n}_d{d}` / `tile_attention_scalar_N{n}_d{d}`: one head of cascaded group
// attention on one window (n tokens, key width 16, value width d) through the SIMD kernel and its
// scalar twin; FLOP/s = 2 n^2 (16 + d), the softmax not counted.
// bench/compare/vision_pytorch.py runs timm's models in PyTorch in the same run and prints the ratios.
#include <benchmark/benchmark.h>

#include <array>
#include <random>
#include <vector>
#include <string>

#include "membound/backend/cpu/packed_gemm.hpp"
#include "membound/backend/cpu/tile_attention.hpp"
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

// One 1x1 convolution of EfficientViT, W (m, k) x X (k, n) + bias: `packed` = cpu::packed_gemm with W
// packed once (what vision/ runs), `sgemm` = the GEMM entry then the bias pass (what it ran before).
void conv1x1(bm::State& st, index_t m, index_t k, index_t n, bool packed) {
  array<float> w({m, k}), x({k, n}), y({m, n}), bias({m});
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : w.span()) v = u(gen);
  for (float& v : x.span()) v = u(gen);
  const cpu::packed_matrix pw = cpu::pack_weights(w.data(), m, k, k);
  const auto run = [&] {
    if (packed) {
      cpu::packed_gemm(pw, x.data(), n, y.data(), n, n, {bias.data(), true, false});
    } else {
      cpu::gemm(w.cview(), x.cview(), y.view());
      for (index_t r = 0; r < m; ++r)
        for (index_t j = 0; j < n; ++j) y.data()[r * n + j] = std::max(y.data()[r * n + j] + bias.data()[r], 0.0f);
    }
  };
  run();
  for (auto _ : st) {
    run();
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * double(m) * double(n) * double(k));
}

// One attention tile of cascaded group attention (a 7 x 7 window has n = 49), hot in L1.
template <class B>
void tile_attention(bm::State& st, index_t n, index_t d) {
  const index_t kd = 16, ldb = cpu::tile_attention_bias_stride(n);
  std::vector<float> q(static_cast<std::size_t>(kd * n)), k(q.size()), v(static_cast<std::size_t>(d * n)),
      bias(static_cast<std::size_t>(n * ldb), 0.0f), o(v.size()),
      scratch(static_cast<std::size_t>(cpu::tile_attention_scratch_floats(n, kd)));
  std::mt19937 gen(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto* a : {&q, &k, &v})
    for (float& x : *a) x = nd(gen);
  for (index_t m = 0; m < n; ++m)
    for (index_t j = 0; j < n; ++j) bias[static_cast<std::size_t>(m * ldb + j)] = nd(gen);
  const auto run = [&] {
    cpu::tile_attention<B>(n, kd, d, q.data(), n, k.data(), n, v.data(), n, bias.data(), ldb, o.data(), n, scratch.data());
  };
  run();
  for (auto _ : st) {
    run();
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * double(n) * double(n) * double(kd + d));
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMillisecond)->UseRealTime();
  };
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000)->Unit(bm::kMicrosecond);
  reg("gemm_384x384x3136", gemm_entry);
  // M5 at batch 1: stage-1/2/3 FFNs (C -> 2C -> C at 196, 49, 16 tokens), the downsample's
  // expansion (C -> 4C) and contraction (4C -> C'), and M4's batch-16 stage-1 FFN (3136 tokens).
  for (const auto& [m, k, n] : std::vector<std::array<index_t, 3>>{{384, 192, 196}, {192, 384, 196}, {576, 288, 49},
                                                                  {288, 576, 49}, {768, 384, 16}, {384, 768, 16},
                                                                  {768, 192, 196}, {288, 768, 49}, {256, 128, 3136}})
    for (bool packed : {true, false})
      reg(std::string(packed ? "packed" : "sgemm") + "_conv1x1_" + std::to_string(m) + "x" + std::to_string(k) + "x" +
              std::to_string(n),
          [=](bm::State& st) { conv1x1(st, m, k, n, packed); })
          ->Unit(bm::kMicrosecond);
  for (const auto& [n, d] : std::vector<std::array<index_t, 2>>{{49, 64}, {16, 64}}) {
    const std::string shape = "_N" + std::to_string(n) + "_d" + std::to_string(d);
    reg("tile_attention" + shape, [=](bm::State& st) { tile_attention<backend::best_cpu>(st, n, d); })->Unit(bm::kMicrosecond);
    reg("tile_attention_scalar" + shape, [=](bm::State& st) { tile_attention<backend::scalar>(st, n, d); })
        ->Unit(bm::kMicrosecond);
  }
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
      {"packed_conv1x1_384x192x196", "sgemm_conv1x1_384x192x196", "FLOP/s", 1.0},
      {"packed_conv1x1_288x576x49", "sgemm_conv1x1_288x576x49", "FLOP/s", 1.0},
      {"packed_conv1x1_768x384x16", "sgemm_conv1x1_768x384x16", "FLOP/s", 1.0},
      {"tile_attention_N49_d64", "tile_attention_scalar_N49_d64", "FLOP/s", 0.0},
      {"tile_attention_N16_d64", "tile_attention_scalar_N16_d64", "FLOP/s", 0.0},
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
