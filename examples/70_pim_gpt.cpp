// SPDX-License-Identifier: MIT
//
// 70 - PIM-GPT: GPT decode on processing-in-memory DRAM, against a GPU and this CPU
// ==================================================================================
//
// What this notebook teaches:
//  1. Token-by-token decode reads every weight once per token and does 2 FLOPs per weight: it is
//     bound by memory bandwidth. PIM puts a 16-lane bf16 MAC unit in every DRAM bank, so the
//     weights never cross the chip's pins: 16 channels x 16 banks x 32 bytes per ns is 8 TB/s of
//     internal bandwidth against a T4's 320 GB/s.
//  2. What the banks really deliver is less: each row visit (ACT16, 64 MAC16s, PRE16) pays tRCD and
//     tRP, the input vector must be written into every channel's global buffer, and results leave
//     through the channel's data bus. `pim::gemv_cost` counts all of it (it equals the event-driven
//     command scheduler cycle for cycle); `pim::decode_step` adds attention over the kept KV
//     tokens, the K/V appends, the ASIC (norms, softmax, GELU, residuals, partial sums) and the
//     link, for every layer of the model.
//  3. The baselines are rooflines with a per-kernel overhead: a T4 (320 GB/s, 8 us per kernel, 12
//     kernels per layer as eager PyTorch launches them) and one core of this machine, its read
//     bandwidth and FLOP rate measured here with membound's own kernels. The table puts the eight
//     GPT shapes of the paper through all three; the sweeps show what channels, context, DRAM row
//     size and a KV budget do to the PIM's per-token latency.
//  4. The reproduced speedups are compared with the published 41-137x over the GPU and 631-1074x
//     over the CPU at the end, with the reasons they differ.
//
// Every device number is an assumption listed with its source in include/membound/pim/README.md.
// Writes 70_models.csv, 70_channels.csv, 70_context.csv, 70_rows.csv, 70_budget.csv (and PNGs
// where gnuplot exists).
//
// Run: build/release/examples/70_pim_gpt        (well under a second)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <membound/membound.hpp>

using namespace membound;

namespace {

/// One core's read bandwidth (GB/s, cpu::sum over 64 MiB) and FLOP rate (GFLOP/s, cpu::dot on
/// 4096 floats that stay in L1: a lower bound of the FMA peak, ample for a memory-bound decode),
/// best of a few runs. Not the probes of bench_core, but membound's kernels on this machine.
std::pair<double, double> measure_cpu(bool smoke) {
  const index_t n = index_t(16) << 20; // 64 MiB of floats
  array<float> x({n});                 // (N)
  for (index_t i = 0; i < n; ++i) x.data()[i] = 1.0f / static_cast<float>(1 + i % 7);
  double best_read = 1e30;
  for (int r = 0; r < (smoke ? 2 : 5); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile float s = cpu::sum(std::span<const float>(x.data(), static_cast<std::size_t>(n)));
    (void)s;
    best_read = std::min(best_read, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const std::span<const float> v(x.data(), 4096);
  const int reps = 20000;
  double best_dot = 1e30;
  for (int r = 0; r < (smoke ? 2 : 5); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    float acc = 0.0f;
    for (int i = 0; i < reps; ++i) acc += cpu::dot(v, v);
    volatile float keep = acc;
    (void)keep;
    best_dot = std::min(best_dot, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return {4.0 * static_cast<double>(n) / best_read / 1e9, 2.0 * 4096.0 * reps / best_dot / 1e9};
}

void plot(const std::string& png, const std::string& xlabel, const std::string& ylabel,
          const std::string& series, bool logx) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return;
  const std::string cmd = "gnuplot -e \"set terminal png size 800,500; set output '" + png +
                          "'; set datafile separator ','; set key top left; set xlabel '" + xlabel + "'; set ylabel '" +
                          ylabel + "';" + (logx ? " set logscale x 2;" : "") + " plot " + series + "\"";
  std::printf("  %s\n", std::system(cmd.c_str()) == 0 ? ("wrote " + png).c_str() : "gnuplot failed; CSV only");
}

} // namespace

int main() {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  const pim::dram_timing timing = pim::gddr6_2000_1350mv;
  const pim::organisation device; // 16 channels x 16 banks of AiM-like GDDR6, 2 KiB rows
  const std::vector<pim::model_shape> models = {
      pim::model_shape::gpt("GPT-2 small", 12, 768, 12),   pim::model_shape::gpt("GPT-2 medium", 24, 1024, 16),
      pim::model_shape::gpt("GPT-2 large", 36, 1280, 20),  pim::model_shape::gpt("GPT-2 XL", 48, 1600, 25),
      pim::model_shape::gpt("GPT-3 small", 12, 768, 12),   pim::model_shape::gpt("GPT-3 medium", 24, 1024, 16),
      pim::model_shape::gpt("GPT-3 large", 24, 1536, 16),  pim::model_shape::gpt("GPT-3 XL", 24, 2048, 16)};
  pim::decode_options opt;
  opt.context = 1024;

  const auto [read_gbps, gflops] = measure_cpu(smoke);
  const pim::roofline gpu;                                 // T4 with 8 us per kernel
  const pim::roofline cpu = pim::cpu_roofline(read_gbps, gflops);
  std::printf("This CPU, one core: %.1f GB/s read, %.0f GFLOP/s (cpu::sum over 64 MiB, cpu::dot in L1)\n",
              read_gbps, gflops);
  std::printf("(GPT-3 small and medium have the shapes of GPT-2 small and medium; the paper's eight models\n"
              "differ there only in their training and context length.)\n\n");

  // ---- 1. the eight GPT shapes --------------------------------------------------------------------
  std::printf("Per-token decode at context %ld (us), PIM breakdown, speedups and energy ratios\n", static_cast<long>(opt.context));
  std::printf("%-13s %7s | %8s %7s %7s %6s %6s %6s | %8s %9s | %7s %7s | %7s %7s\n", "model", "params", "PIM", "GEMV",
              "attn", "KVwr", "ASIC", "link", "T4", "CPU", "xT4", "xCPU", "E xT4", "E xCPU");
  std::ofstream mcsv("70_models.csv");
  mcsv << "model,params_m,pim_us,gemv_us,attention_us,kv_write_us,asic_us,link_us,gpu_us,cpu_us,speedup_gpu,speedup_cpu,"
          "energy_ratio_gpu,energy_ratio_cpu\n";
  double min_gpu = 1e30, max_gpu = 0, min_cpu = 1e30, max_cpu = 0;
  for (const auto& m : models) {
    const auto p = pim::decode_step(m, timing, device, opt);
    const auto g = pim::decode_step(m, gpu, opt);
    const auto c = pim::decode_step(m, cpu, opt);
    const double us = p.total_ns() / 1e3, xg = g.ns / p.total_ns(), xc = c.ns / p.total_ns();
    min_gpu = std::min(min_gpu, xg), max_gpu = std::max(max_gpu, xg);
    min_cpu = std::min(min_cpu, xc), max_cpu = std::max(max_cpu, xc);
    std::printf("%-13s %6.0fM | %8.1f %7.1f %7.1f %6.1f %6.1f %6.1f | %8.1f %9.1f | %6.1fx %6.0fx | %6.0fx %6.0fx\n",
                m.name.c_str(), m.weight_params() / 1e6, us, p.gemv_ns / 1e3, p.attention_ns / 1e3,
                p.kv_write_ns / 1e3, p.asic_ns / 1e3, p.link_ns / 1e3, g.ns / 1e3, c.ns / 1e3, xg, xc,
                g.pj / p.total_pj(), c.pj / p.total_pj());
    mcsv << m.name << ',' << m.weight_params() / 1e6 << ',' << us << ',' << p.gemv_ns / 1e3 << ',' << p.attention_ns / 1e3
         << ',' << p.kv_write_ns / 1e3 << ',' << p.asic_ns / 1e3 << ',' << p.link_ns / 1e3 << ',' << g.ns / 1e3 << ','
         << c.ns / 1e3 << ',' << xg << ',' << xc << ',' << g.pj / p.total_pj() << ',' << c.pj / p.total_pj() << '\n';
  }
  mcsv.close();
  const auto& xl = models[3];
  const auto xl_pim = pim::decode_step(xl, timing, device, opt);
  const double internal = static_cast<double>(device.channels * device.banks() * device.access_bytes); // bytes/ns
  std::printf("\nGPT-2 XL: the GEMVs read %.2f GB of weights in %.0f us: %.2f TB/s of the %.1f TB/s the banks\n"
              "could stream (%.0f %%); row activations, buffer loads and read-outs take the rest.\n",
              xl_pim.weight_bytes / 1e9, xl_pim.gemv_ns / 1e3, xl_pim.weight_bytes / xl_pim.gemv_ns / 1e3,
              internal / 1e3, 100.0 * xl_pim.weight_bytes / xl_pim.gemv_ns / internal);

  // ---- 2. sweeps ----------------------------------------------------------------------------------
  std::printf("\nGPT-2 XL per-token latency (us) against the number of channels\n");
  std::ofstream ccsv("70_channels.csv");
  ccsv << "channels,pim_us,speedup_gpu\n";
  for (index_t ch : {4, 8, 16, 32, 64}) {
    pim::organisation o = device;
    o.channels = ch;
    const auto p = pim::decode_step(xl, timing, o, opt);
    const double xg = pim::decode_step(xl, gpu, opt).ns / p.total_ns();
    std::printf("  %3ld channels: %8.1f us  (%5.1fx the T4)\n", static_cast<long>(ch), p.total_ns() / 1e3, xg);
    ccsv << ch << ',' << p.total_ns() / 1e3 << ',' << xg << '\n';
  }
  ccsv.close();
  std::printf("\nGPT-2 XL per-token latency (us) and attention share against the context (all tokens kept)\n");
  std::ofstream xcsv("70_context.csv");
  xcsv << "context,pim_us,attention_us,attention_share\n";
  for (index_t ctx : {128, 256, 512, 1024, 2048, 4096, 8192}) {
    pim::decode_options o = opt;
    o.context = ctx;
    const auto p = pim::decode_step(xl, timing, device, o);
    std::printf("  context %5ld: %8.1f us, attention %7.1f us (%4.1f %%)\n", static_cast<long>(ctx), p.total_ns() / 1e3,
                p.attention_ns / 1e3, 100.0 * p.attention_ns / p.total_ns());
    xcsv << ctx << ',' << p.total_ns() / 1e3 << ',' << p.attention_ns / 1e3 << ',' << p.attention_ns / p.total_ns() << '\n';
  }
  xcsv.close();
  std::printf("\nGPT-2 XL per-token latency (us) against the DRAM row size (same capacity per bank)\n");
  std::ofstream rcsv("70_rows.csv");
  rcsv << "row_bytes,pim_us\n";
  for (index_t rb : {1024, 2048, 4096, 8192}) {
    pim::organisation o = device;
    o.row_bytes = rb;
    o.global_buffer_bytes = rb;
    o.rows = device.rows * device.row_bytes / rb;
    const auto p = pim::decode_step(xl, timing, o, opt);
    std::printf("  rows of %4ld bytes: %8.1f us\n", static_cast<long>(rb), p.total_ns() / 1e3);
    rcsv << rb << ',' << p.total_ns() / 1e3 << '\n';
  }
  rcsv.close();
  std::printf("\nGPT-2 XL at context 8192: a KV budget (tokens kept per KV head and layer)\n");
  std::ofstream bcsv("70_budget.csv");
  bcsv << "kept,pim_us,attention_us\n";
  for (index_t kept : {256, 512, 1024, 2048, 4096, 8192}) {
    pim::decode_options o = opt;
    o.context = 8192;
    o.kept = kept;
    const auto p = pim::decode_step(xl, timing, device, o);
    std::printf("  keep %5ld: %8.1f us, attention %7.1f us\n", static_cast<long>(kept), p.total_ns() / 1e3,
                p.attention_ns / 1e3);
    bcsv << kept << ',' << p.total_ns() / 1e3 << ',' << p.attention_ns / 1e3 << '\n';
  }
  bcsv.close();
  std::printf("  wrote 70_models.csv 70_channels.csv 70_context.csv 70_rows.csv 70_budget.csv\n");
  plot("70_models.png", "parameters (M)", "speedup over the T4 roofline",
       "'70_models.csv' using 2:11 title 'PIM / T4' with points pt 7 ps 1.5", false);
  plot("70_context.png", "context (tokens)", "per-token latency (us)",
       "'70_context.csv' using 1:2 title 'total' with linespoints pt 7, '' using 1:3 title 'attention' with linespoints pt 5",
       true);
  plot("70_budget.png", "tokens kept per KV head (context 8192)", "per-token latency (us)",
       "'70_budget.csv' using 1:2 title 'total' with linespoints pt 7, '' using 1:3 title 'attention' with linespoints pt 5",
       true);

  // ---- 3. against the paper -----------------------------------------------------------------------
  std::printf("\nReproduced: %.0f-%.0fx over the T4 roofline and %.0f-%.0fx over one core of this CPU;\n"
              "published: 41-137x over a T4 and 631-1074x over a CPU (energy: 123-383x and 320-602x).\n",
              min_gpu, max_gpu, min_cpu, max_cpu);
  std::printf(
      "The direction holds: the speedup is largest for the smallest models, where the GPU's fixed\n"
      "per-kernel cost dominates. The size is smaller, for reasons the model states: (1) the preset's\n"
      "data bus moves 32 bytes per 8 ns, so loading the input vector into every channel's buffer and\n"
      "reading results out is slow next to the 1 ns MACs; (2) a row visit of 64 MACs takes 119 cycles:\n"
      "tRCD, tRTP and tRP add 55; (3) ASIC and link time are added, not overlapped; (4) the GPU\n"
      "roofline runs at its full 320 GB/s plus 8 us per kernel, while a real eager decode on a T4\n"
      "is slower still, which is what the paper measured. Change the timing's tBL, the overhead or\n"
      "the organisation and rerun: each is one field.\n");
  return 0;
}
