// SPDX-License-Identifier: MIT
// Probes of the machine's limits shared by the benchmark binaries, so every kernel's rate can be
// read as a ratio to a limit measured in the same process:
// - read probe: sum of a large array with 8 independent accumulators;
// - copy probe: one array into another with ordinary (not streaming) stores;
// - FMA probe: 12 independent FMA chains in registers (2 FLOP per lane per FMA);
// and the counter helpers (compulsory bytes/s, FLOP/s, items/s) and a single-thread pin.
#pragma once

#include <benchmark/benchmark.h>

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
#include <dnnl.h>
#endif

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/view.hpp"

namespace membound::bench {
namespace bm = ::benchmark;

inline void bytes(bm::State& st, double per_iter) {
  st.counters["bytes_per_second"] = bm::Counter(per_iter, bm::Counter::kIsIterationInvariantRate, bm::Counter::kIs1024);
}
inline void flops(bm::State& st, double per_iter) {
  st.counters["FLOP/s"] = bm::Counter(per_iter, bm::Counter::kIsIterationInvariantRate, bm::Counter::kIs1000);
}
inline void items(bm::State& st, const char* name, double per_iter) {
  st.counters[name] = bm::Counter(per_iter, bm::Counter::kIsIterationInvariantRate, bm::Counter::kIs1000);
}

using probe_arch = backend::best_cpu::arch;
using probe_batch = xsimd::batch<float, probe_arch>;
inline constexpr std::size_t probe_lanes = probe_batch::size;

/// Sum of p[0, n) (n a multiple of 8 lanes, p 64-byte aligned), counted as 4n bytes read.
inline void probe_read(bm::State& st, const float* p, index_t n) {
  using V = probe_batch;
  constexpr std::size_t L = probe_lanes;
  for (auto _ : st) {
    V a[8];
    for (auto& r : a) r = V(0.f);
    for (index_t i = 0; i < n; i += 8 * L)
      for (int j = 0; j < 8; ++j) a[j] += V::load_aligned(p + i + j * L);
    V s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    bm::DoNotOptimize(xsimd::hadd(s));
  }
  bytes(st, 4.0 * static_cast<double>(n));
}

/// q[0, n) = p[0, n) with ordinary stores, counted as 8n bytes (read + write).
inline void probe_copy(bm::State& st, const float* p, float* q, index_t n) {
  using V = probe_batch;
  constexpr std::size_t L = probe_lanes;
  for (auto _ : st) {
    for (index_t i = 0; i < n; i += 4 * L)
      for (int j = 0; j < 4; ++j) V::load_aligned(p + i + j * L).store_aligned(q + i + j * L);
    bm::ClobberMemory();
  }
  bytes(st, 8.0 * static_cast<double>(n));
}

/// 12 independent FMA chains (4-cycle latency x 2 ports needs >= 8) in registers.
inline void probe_fma(bm::State& st) {
  using V = probe_batch;
  using A = probe_arch;
  constexpr int steps = 1 << 14;
  float m0 = 0.9999999f, c0 = 1e-7f;
  bm::DoNotOptimize(m0); // opaque to the compiler: no constant folding of the chains
  bm::DoNotOptimize(c0);
  const V m(m0), c(c0);
  // FTZ + DAZ while the chains run: in runs with other benchmarks interleaved, single repetitions
  // of this probe ran 240x slower (CPU time, not wall: microcode assists), which FTZ/DAZ removed
  // in every later run. The chains' values stay near 1, so the flags change no result.
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);
  for (auto _ : st) {
    V a0(m0), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c, a6 = a5 + c, a7 = a6 + c, a8 = a7 + c,
        a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
    for (int s = 0; s < steps; ++s) {
      a0 = cpu::detail::fma<A>(a0, m, c); a1 = cpu::detail::fma<A>(a1, m, c); a2 = cpu::detail::fma<A>(a2, m, c);
      a3 = cpu::detail::fma<A>(a3, m, c); a4 = cpu::detail::fma<A>(a4, m, c); a5 = cpu::detail::fma<A>(a5, m, c);
      a6 = cpu::detail::fma<A>(a6, m, c); a7 = cpu::detail::fma<A>(a7, m, c); a8 = cpu::detail::fma<A>(a8, m, c);
      a9 = cpu::detail::fma<A>(a9, m, c); a10 = cpu::detail::fma<A>(a10, m, c); a11 = cpu::detail::fma<A>(a11, m, c);
    }
    bm::DoNotOptimize(xsimd::hadd(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11))));
  }
  _mm_setcsr(csr);
  flops(st, 2.0 * probe_lanes * 12 * steps);
}

/// The x86-64 ISA level these flags compile for (psABI levels: v2 = SSE4.2 + POPCNT, v3 = AVX2 +
/// FMA + F16C + BMI, v4 = AVX-512 F/BW/DQ/VL/CD).
inline const char* compiled_isa_level() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512CD__)
  return "x86-64-v4";
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__BMI2__)
  return "x86-64-v3";
#elif defined(__SSE4_2__) && defined(__POPCNT__)
  return "x86-64-v2";
#else
  return "x86-64";
#endif
}

/// The CPU model and the highest x86-64 level its flags support, from /proc/cpuinfo (Linux).
struct host_cpu {
  std::string model = "unknown", level = "unknown", family_model;
};
inline host_cpu describe_host() {
  host_cpu h;
  std::ifstream f("/proc/cpuinfo");
  std::string line, flags, family, model;
  auto value = [](const std::string& l) {
    const auto c = l.find(':');
    return c == std::string::npos ? std::string() : l.substr(std::min(l.size(), c + 2));
  };
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0 && h.model == "unknown") h.model = value(line);
    else if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value(line);
    else if (line.rfind("model", 0) == 0 && line.rfind("model name", 0) != 0 && model.empty()) model = value(line);
    else if (line.rfind("flags", 0) == 0 && flags.empty()) flags = " " + value(line) + " ";
  }
  h.family_model = "family " + family + " model " + model;
  if (flags.empty()) return h;
  auto has = [&](std::initializer_list<const char*> fs) {
    for (const char* x : fs)
      if (flags.find(std::string(" ") + x + " ") == std::string::npos) return false;
    return true;
  };
  h.level = "x86-64";
  if (has({"sse4_2", "popcnt", "ssse3", "cx16"})) h.level = "x86-64-v2";
  if (h.level == "x86-64-v2" && has({"avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "abm"})) h.level = "x86-64-v3";
  if (h.level == "x86-64-v3" && has({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"})) h.level = "x86-64-v4";
  return h;
}

/// One line naming the machine and the ISA levels, printed with every table of figures.
inline std::string machine_line() {
  const host_cpu h = describe_host();
  return h.model + " (" + h.family_model + "); compiled for " + compiled_isa_level() + ", backend " +
         std::string(backend::best_cpu::name) + "; host supports " + h.level;
}

/// oneDNN picks its kernels at run time from the host's ISA; a binary compiled for a lower level
/// than the host's (an AVX2 build on an AVX-512 machine) caps oneDNN at that level too, so every
/// kernel and baseline of the run uses the same vector width. Returns the cap, for the context.
inline const char* cap_onednn_isa() {
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
  const std::string level = compiled_isa_level();
  if (level == "x86-64-v4") return "host";
  const dnnl_cpu_isa_t cap = level == "x86-64-v3" ? dnnl_cpu_isa_avx2 : dnnl_cpu_isa_sse41;
  if (dnnl_set_max_cpu_isa(cap) != dnnl_success) return "host (cap refused)";
  return level == "x86-64-v3" ? "avx2" : "sse41";
#else
  return "no oneDNN";
#endif
}

/// Runs the calling thread (and the OpenMP threads it starts later) on CPUs 0 .. n-1 with an
/// OpenMP team of n. @return whether the affinity was set.
inline bool use_cpus(int n) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c = 0; c < n; ++c) CPU_SET(c, &set);
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

/// Single-thread figures: oneDNN's OpenMP pool to one thread, the process pinned to CPU 0.
/// Also records the machine (CPU model, ISA level compiled for and detected) in the context and
/// caps oneDNN at the compiled level (cap_onednn_isa). Call before any oneDNN use.
inline void pin_single_thread() {
  const char* onednn_isa = cap_onednn_isa();
  const bool pinned = use_cpus(1);
  const host_cpu h = describe_host();
  bm::AddCustomContext("cpu_model", h.model + " (" + h.family_model + ")");
  bm::AddCustomContext("isa_compiled_for", compiled_isa_level());
  bm::AddCustomContext("isa_host_supports", h.level);
  bm::AddCustomContext("onednn_max_isa", onednn_isa);
  bm::AddCustomContext("membound_cpu_backend", std::string(backend::best_cpu::name));
  bm::AddCustomContext("pinned_to_cpu0", pinned ? "yes" : "no");
  bm::AddCustomContext("threads", "1");
}

/// One line of the ratio table: kernel / baseline on a counter, with an optional target.
struct ratio_row {
  const char* kernel;
  const char* base;
  const char* counter;
  double target; // 0: no target, reported only; > 0: met when ratio >= target; < 0: met when ratio <= -target
};

/// Console output as usual, plus two values of each counter by benchmark name: the median of the
/// repetitions and the best repetition (highest rate). This VM is shared and noisy (5-15 % spread
/// within a run), so the table judges the targets on best-of-N for kernel and baseline alike and
/// prints the median ratio beside it. Run with repetitions and without --benchmark_report_aggregates_only
/// so that the individual repetitions reach this reporter.
class recording_reporter : public bm::ConsoleReporter {
public:
  std::map<std::string, std::map<std::string, double>> median, best;
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.function_name;
      if (r.run_type == Run::RT_Aggregate) {
        if (r.aggregate_name == "median")
          for (const auto& [k, c] : r.counters) median[name][k] = c.value;
        continue;
      }
      for (const auto& [k, c] : r.counters) {
        auto& b = best[name][k];
        b = std::max(b, static_cast<double>(c.value));
        if (!median[name].count(k)) median[name][k] = c.value; // single run: its value
      }
    }
  }
};

/// Prints kernel / baseline ratios for the rows whose counters were recorded.
template <std::size_t N>
void print_ratios(const recording_reporter& rep, const ratio_row (&table)[N]) {
  std::printf("\nmachine: %s\n", machine_line().c_str());
  std::printf("%-22s %-18s %-9s %10s %10s %7s %7s %7s %s\n", "kernel", "baseline", "unit", "kernel", "baseline",
              "best", "median", "target", "met (best)");
  auto get = [](const auto& m, const char* name, const char* counter) -> double {
    const auto it = m.find(name);
    if (it == m.end()) return 0.0;
    const auto c = it->second.find(counter);
    return c == it->second.end() ? 0.0 : c->second;
  };
  for (const auto& r : table) {
    const double kb = get(rep.best, r.kernel, r.counter), bb = get(rep.best, r.base, r.counter);
    const double km = get(rep.median, r.kernel, r.counter), bmed = get(rep.median, r.base, r.counter);
    if (kb == 0.0 || bb == 0.0) continue;
    const double ratio = kb / bb, ratio_med = bmed > 0 ? km / bmed : 0.0;
    const std::string counter = r.counter;
    const bool gb = counter == "bytes_per_second";
    const double scale = gb ? 1.0 / (1 << 30) : 1e-9;
    std::printf("%-22s %-18s %-9s %10.4g %10.4g %7.3f %7.3f %7s %s\n", r.kernel, r.base,
                (gb ? std::string("GiB/s") : counter == "FLOP/s" ? std::string("GFLOP/s") : "G " + counter).c_str(),
                kb * scale, bb * scale, ratio, ratio_med,
                r.target > 0   ? std::to_string(r.target).substr(0, 4).c_str()
                : r.target < 0 ? ("<=" + std::to_string(-r.target).substr(0, 4)).c_str()
                               : "-",
                r.target > 0 ? (ratio >= r.target ? "yes" : "NO") : r.target < 0 ? (ratio <= -r.target ? "yes" : "NO") : "");
  }
}


} // namespace membound::bench
