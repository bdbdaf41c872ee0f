// SPDX-License-Identifier: MIT
// bench_pim: how fast the PIM model evaluates, in one process. Single thread, pinned.
// - the event-driven scheduler on one GEMV (6400 x 1600, GPT-2 XL's FFN up-projection) in
//   simulated commands per second, beside the closed form of the same GEMV (its baseline: the
//   ratio says what the command-level detail costs);
// - every weight GEMV of one GPT-2 XL decode step (48 layers: QKV 4800 x 1600, output 1600 x 1600,
//   FFN 6400 x 1600 and 1600 x 6400; LM head 50257 x 1600) through the scheduler: commands per
//   second (target >= 50 M) and simulated steps per second (a step must simulate in well under a
//   second).
// Run: bench_pim --benchmark_min_time=0.3 --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "membound/pim/pim.hpp"
#include "probes.hpp"

using namespace membound;
namespace bm = benchmark;

namespace {

const pim::dram_timing timing = pim::gddr6_2000_1350mv;
const pim::organisation device{}; // 16 channels of AiM-like GDDR6

void schedule_gemv(bm::State& st, pim::gemv_mapping map) {
  double commands = 0;
  for (auto _ : st) {
    const auto r = pim::gemv_schedule(timing, device, map);
    commands = static_cast<double>(r.counts.total());
    bm::DoNotOptimize(r.cycles);
  }
  bench::items(st, "commands/s", commands);
  bench::items(st, "gemvs/s", 1.0);
}

void closed_form_gemv(bm::State& st, pim::gemv_mapping map) {
  for (auto _ : st) {
    const auto r = pim::gemv_cost(timing, device, map);
    bm::DoNotOptimize(r.cycles);
  }
  bench::items(st, "gemvs/s", 1.0);
}

/// The weight GEMVs of one decode step of a GPT-2 XL-shaped model (K-outer where K spans chunks).
std::vector<pim::gemv_mapping> gpt2_xl_step() {
  const index_t d = 1600, ffn = 4 * d, vocab = 50257, layers = 48;
  std::vector<pim::gemv_mapping> ops;
  for (index_t l = 0; l < layers; ++l)
    for (const auto& [m, k] : {std::pair{3 * d, d}, std::pair{d, d}, std::pair{ffn, d}, std::pair{d, ffn}})
      ops.push_back({m, k, pim::loop_order::k_outer});
  ops.push_back({vocab, d, pim::loop_order::k_outer});
  return ops;
}

void schedule_decode(bm::State& st) {
  const auto ops = gpt2_xl_step();
  double commands = 0;
  for (auto _ : st) {
    commands = 0;
    for (const auto& op : ops) {
      const auto r = pim::gemv_schedule(timing, device, op);
      commands += static_cast<double>(r.counts.total());
      bm::DoNotOptimize(r.cycles);
    }
  }
  bench::items(st, "commands/s", commands);
  bench::items(st, "steps/s", 1.0);
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  const pim::gemv_mapping ffn_up{6400, 1600, pim::loop_order::k_outer};
  bm::RegisterBenchmark("schedule_gemv_6400x1600", [ffn_up](bm::State& st) { schedule_gemv(st, ffn_up); })
      ->Unit(bm::kMillisecond)
      ->UseRealTime();
  bm::RegisterBenchmark("closed_form_gemv_6400x1600", [ffn_up](bm::State& st) { closed_form_gemv(st, ffn_up); })
      ->Unit(bm::kMicrosecond)
      ->UseRealTime();
  bm::RegisterBenchmark("schedule_decode_gpt2_xl", schedule_decode)->Unit(bm::kMillisecond)->UseRealTime();
  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"schedule_gemv_6400x1600", "closed_form_gemv_6400x1600", "gemvs/s", 0},
      {"schedule_decode_gpt2_xl", "schedule_gemv_6400x1600", "commands/s", 0},
  };
  bench::print_ratios(rep, table);
  for (const char* name : {"schedule_gemv_6400x1600", "schedule_decode_gpt2_xl"}) {
    const auto it = rep.best.find(name);
    if (it == rep.best.end() || !it->second.count("commands/s")) continue;
    const double cps = it->second.at("commands/s");
    std::printf("%-26s %8.1f M simulated commands/s (best repetition; target >= 50 M): %s\n", name, cps / 1e6,
                cps >= 50e6 ? "yes" : "NO");
  }
  if (const auto it = rep.best.find("schedule_decode_gpt2_xl"); it != rep.best.end() && it->second.count("steps/s"))
    std::printf("one GPT-2 XL decode step (every weight GEMV) simulates in %.3f s\n", 1.0 / it->second.at("steps/s"));
  bm::Shutdown();
  return 0;
}
