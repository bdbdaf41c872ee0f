// SPDX-License-Identifier: MIT
// bench_core: the CPU kernels of backend/cpu beside probes of the machine's limits, measured in
// one process so that the results read as ratios (timings drift between processes).
//
// - read probe: sum of a 128 MiB array (8 independent AVX-512 accumulators);
// - copy probe: 128 MiB -> 128 MiB with ordinary stores;
// - FMA probe: 12 independent AVX-512 FMA chains in registers;
// - matvec and GEMM baselines: Eigen (Eigen::Map matrix-vector / matrix product) and oneDNN
//   (dnnl_sgemm, N = 1 for the matrix-vector product).
// Kernels report compulsory bytes/s (each input read once, each output written once) or FLOP/s.
// At the end a table prints every kernel's rate divided by its probe's (median of repetitions).
// Single thread, pinned to one core; buffers are allocated once and touched before timing.
//
// Run: bench_core --benchmark_min_time=0.3 --benchmark_repetitions=7 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Core>
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
#include <dnnl.h>
#endif

#include "membound/backend/cpu/cpu.hpp"
#include "membound/core/array.hpp"
#include "membound/ref/ref.hpp"
#include "probes.hpp"

using namespace membound;
namespace bm = benchmark;

namespace {

constexpr index_t n_big = index_t(32) << 20; // 32 Mi floats = 128 MiB per array (>= 4x a 32 MiB LLC)
constexpr index_t mv_m = 8192, mv_k = 8192; // matvec: 256 MiB of f32 weights, 128 MiB of bf16
constexpr index_t rows = 4096, cols = 8192;  // row-wise softmax / norms: 128 MiB
constexpr index_t gemm_n = 1024;

/// Deterministic fill (also the first touch of every page, outside any timing).
void fill(float* p, index_t n, float lo, float hi, std::uint64_t seed) {
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (index_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = lo + (hi - lo) * static_cast<float>(s >> 40) * (1.f / 16777216.f);
  }
}

struct buffers {
  array<float> x{{n_big}, uninitialized}, y{{n_big}, uninitialized};
  array<bf16> h{{n_big}, uninitialized};
  array<f16> g{{n_big}, uninitialized};
  array<float> w{{mv_m, mv_k}, uninitialized};
  array<bf16> wb{{mv_m, mv_k}, uninitialized};
  array<f16> wh{{mv_m, mv_k}, uninitialized};
  array<float> v{{mv_k}, uninitialized}, out{{mv_m}, uninitialized}, nw{{cols}, uninitialized};
  array<float> ga{{gemm_n, gemm_n}, uninitialized}, gb{{gemm_n, gemm_n}, uninitialized}, gc{{gemm_n, gemm_n}, uninitialized};
  buffers() {
    fill(x.data(), n_big, -10.f, 10.f, 1);
    fill(y.data(), n_big, -1.f, 1.f, 2);
    cpu::convert(std::span<const float>(y.span()), h.span());
    cpu::convert(std::span<const float>(y.span()), g.span());
    fill(w.data(), mv_m * mv_k, -1.f, 1.f, 3);
    cpu::convert(std::span<const float>(w.span()), wb.span());
    cpu::convert(std::span<const float>(w.span()), wh.span());
    fill(v.data(), mv_k, -1.f, 1.f, 4);
    fill(out.data(), mv_m, 0.f, 1.f, 5);
    fill(nw.data(), cols, 0.5f, 1.5f, 6);
    fill(ga.data(), gemm_n * gemm_n, -1.f, 1.f, 7);
    fill(gb.data(), gemm_n * gemm_n, -1.f, 1.f, 8);
    fill(gc.data(), gemm_n * gemm_n, -1.f, 1.f, 9);
  }
};
buffers& buf() {
  static buffers b; // allocated once, touched in the constructor
  return b;
}

using bench::bytes;
using bench::flops;

void probe_read(bm::State& st) { bench::probe_read(st, buf().x.data(), n_big); }
void probe_copy(bm::State& st) { bench::probe_copy(st, buf().x.data(), buf().y.data(), n_big); }
void probe_fma(bm::State& st) { bench::probe_fma(st); }
void rows_per_s(bm::State& st, double per_iter) { bench::items(st, "rows/s", per_iter); }
constexpr double f4 = sizeof(float);

// ---- kernels -------------------------------------------------------------------------------------

template <class B>
void k_dot(bm::State& st) {
  for (auto _ : st) bm::DoNotOptimize(cpu::dot<B>(buf().x.span(), buf().y.span()));
  bytes(st, 2 * f4 * n_big);
}
template <class B>
void k_sum(bm::State& st) {
  for (auto _ : st) bm::DoNotOptimize(cpu::sum<B>(buf().x.span()));
  bytes(st, f4 * n_big);
}
template <class B>
void k_max(bm::State& st) {
  for (auto _ : st) bm::DoNotOptimize(cpu::max<B>(buf().x.span()));
  bytes(st, f4 * n_big);
}
template <class B>
void k_axpy(bm::State& st) {
  for (auto _ : st) {
    cpu::axpy<B>(1e-7f, buf().x.span(), buf().y.span());
    bm::ClobberMemory();
  }
  bytes(st, 3 * f4 * n_big);
}
template <class B>
void k_scale(bm::State& st) {
  for (auto _ : st) {
    cpu::scale<B>(0.5f, buf().x.span(), buf().y.span());
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * n_big);
}
template <class B>
void k_exp(bm::State& st) {
  for (auto _ : st) {
    cpu::exp<B>(buf().x.span(), buf().y.span());
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * n_big);
}
template <class B>
void k_softmax(bm::State& st) {
  for (auto _ : st) {
    cpu::softmax<B>(buf().x.span(), buf().y.span());
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * n_big);
}
template <class B>
void k_softmax_rows(bm::State& st) {
  const auto xv = buf().x.cview().reshape({rows, cols}); // (N,C)
  const auto yv = buf().y.view().reshape({rows, cols});  // (N,C)
  for (auto _ : st) {
    cpu::softmax<B>(xv, yv);
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * rows * cols);
}
template <class B>
void k_rmsnorm_rows(bm::State& st) {
  const auto xv = buf().x.cview().reshape({rows, cols}); // (N,C)
  const auto yv = buf().y.view().reshape({rows, cols});  // (N,C)
  for (auto _ : st) {
    cpu::rmsnorm<B>(xv, buf().nw.span(), yv);
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * rows * cols);
}
template <class B>
void k_layernorm_rows(bm::State& st) {
  const auto xv = buf().x.cview().reshape({rows, cols}); // (N,C)
  const auto yv = buf().y.view().reshape({rows, cols});  // (N,C)
  for (auto _ : st) {
    cpu::layernorm<B>(xv, buf().nw.span(), buf().nw.span(), yv);
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * rows * cols);
}
template <class B>
void k_silu(bm::State& st) {
  for (auto _ : st) {
    cpu::silu<B>(buf().x.span(), buf().y.span());
    bm::ClobberMemory();
  }
  bytes(st, 2 * f4 * n_big);
}
template <class B>
void k_to_bf16(bm::State& st) {
  for (auto _ : st) {
    cpu::convert<B>(std::span<const float>(buf().y.span()), buf().h.span());
    bm::ClobberMemory();
  }
  bytes(st, 6.0 * n_big);
}
template <class B>
void k_from_bf16(bm::State& st) {
  for (auto _ : st) {
    cpu::convert<B>(std::span<const bf16>(buf().h.span()), buf().x.span());
    bm::ClobberMemory();
  }
  bytes(st, 6.0 * n_big);
}
template <class B>
void k_to_f16(bm::State& st) {
  for (auto _ : st) {
    cpu::convert<B>(std::span<const float>(buf().y.span()), buf().g.span());
    bm::ClobberMemory();
  }
  bytes(st, 6.0 * n_big);
}
template <class B>
void k_from_f16(bm::State& st) {
  for (auto _ : st) {
    cpu::convert<B>(std::span<const f16>(buf().g.span()), buf().x.span());
    bm::ClobberMemory();
  }
  bytes(st, 6.0 * n_big);
}
template <class B>
void k_top_k(bm::State& st) {
  std::vector<index_t> out(64);
  for (auto _ : st) cpu::top_k<B>(buf().y.span(), std::span<index_t>(out));
  bytes(st, f4 * n_big);
}
template <class B, class T>
void k_matvec(bm::State& st) {
  const T* w = nullptr;
  if constexpr (std::is_same_v<T, float>) w = buf().w.data();
  else if constexpr (std::is_same_v<T, bf16>) w = buf().wb.data();
  else w = buf().wh.data();
  const auto wv = make_view(w, {mv_m, mv_k}); // (M,K)
  for (auto _ : st) {
    cpu::matvec<B>(view<const T>(wv), buf().v.span(), buf().out.span());
    bm::ClobberMemory();
  }
  bytes(st, static_cast<double>(sizeof(T)) * mv_m * mv_k + f4 * (mv_m + mv_k));
  flops(st, 2.0 * mv_m * mv_k);
  rows_per_s(st, mv_m);
}
void eigen_matvec(bm::State& st) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const Mat> w(buf().w.data(), mv_m, mv_k);
  Eigen::Map<const Eigen::VectorXf> x(buf().v.data(), mv_k);
  Eigen::Map<Eigen::VectorXf> y(buf().out.data(), mv_m);
  for (auto _ : st) {
    y.noalias() = w * x;
    bm::ClobberMemory();
  }
  bytes(st, f4 * mv_m * mv_k + f4 * (mv_m + mv_k));
  flops(st, 2.0 * mv_m * mv_k);
  rows_per_s(st, mv_m);
}
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
void onednn_matvec(bm::State& st) {
  for (auto _ : st) {
    dnnl_sgemm('N', 'N', mv_m, 1, mv_k, 1.f, buf().w.data(), mv_k, buf().v.data(), 1, 0.f, buf().out.data(), 1);
    bm::ClobberMemory();
  }
  bytes(st, f4 * mv_m * mv_k + f4 * (mv_m + mv_k));
  flops(st, 2.0 * mv_m * mv_k);
  rows_per_s(st, mv_m);
}
void onednn_sgemm(bm::State& st) {
  for (auto _ : st) {
    dnnl_sgemm('N', 'N', gemm_n, gemm_n, gemm_n, 1.f, buf().ga.data(), gemm_n, buf().gb.data(), gemm_n, 0.f, buf().gc.data(),
               gemm_n);
    bm::ClobberMemory();
  }
  flops(st, 2.0 * gemm_n * gemm_n * gemm_n);
}
#endif
template <class G>
void k_gemm(bm::State& st) {
  for (auto _ : st) {
    cpu::gemm<G>(buf().ga.cview(), buf().gb.cview(), buf().gc.view());
    bm::ClobberMemory();
  }
  flops(st, 2.0 * gemm_n * gemm_n * gemm_n);
}
void eigen_gemm(bm::State& st) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const Mat> a(buf().ga.data(), gemm_n, gemm_n), b(buf().gb.data(), gemm_n, gemm_n);
  Eigen::Map<Mat> c(buf().gc.data(), gemm_n, gemm_n);
  for (auto _ : st) {
    c.noalias() = a * b;
    bm::ClobberMemory();
  }
  flops(st, 2.0 * gemm_n * gemm_n * gemm_n);
}

// ---- the ratio table -------------------------------------------------------------------------------

void print_ratios(bench::recording_reporter& rep) {
  const bench::ratio_row table[] = {
      {"dot", "probe_read", "bytes_per_second", 0.8},
      {"sum", "probe_read", "bytes_per_second", 0.8},
      {"max", "probe_read", "bytes_per_second", 0.8},
      {"matvec_bf16", "probe_read", "bytes_per_second", 0.8},
      {"matvec_f16", "probe_read", "bytes_per_second", 0},
      {"matvec_f32", "probe_read", "bytes_per_second", 0},
      {"top_k64", "probe_read", "bytes_per_second", 0},
      {"softmax", "probe_copy", "bytes_per_second", 0.8},
      {"softmax_rows", "probe_copy", "bytes_per_second", 0.8},
      {"rmsnorm_rows", "probe_copy", "bytes_per_second", 0.8},
      {"layernorm_rows", "probe_copy", "bytes_per_second", 0},
      {"convert_f32_to_bf16", "probe_copy", "bytes_per_second", 0.8},
      {"convert_bf16_to_f32", "probe_copy", "bytes_per_second", 0.8},
      {"convert_f32_to_f16", "probe_copy", "bytes_per_second", 0.8},
      {"convert_f16_to_f32", "probe_copy", "bytes_per_second", 0.8},
      {"axpy", "probe_copy", "bytes_per_second", 0.8},
      {"scale", "probe_copy", "bytes_per_second", 0},
      {"exp", "probe_copy", "bytes_per_second", 0},
      {"silu", "probe_copy", "bytes_per_second", 0},
      {"matvec_f32", "eigen_matvec_f32", "rows/s", 0.9},
      {"matvec_bf16", "eigen_matvec_f32", "rows/s", 1.6},
      {"onednn_matvec_f32", "eigen_matvec_f32", "rows/s", 0},
      {"gemm_onednn", "probe_fma", "FLOP/s", 0.85},
      {"gemm_eigen", "probe_fma", "FLOP/s", 0},
      {"onednn_sgemm", "probe_fma", "FLOP/s", 0},
      {"eigen_gemm", "probe_fma", "FLOP/s", 0},
      {"dot_scalar", "dot", "bytes_per_second", 0},
      {"softmax_scalar", "softmax", "bytes_per_second", 0},
  };
  bench::print_ratios(rep, table);
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  bm::AddCustomContext("compiler", __VERSION__);
  bm::AddCustomContext("working_set", "128 MiB per array; matvec 8192x8192 (256 MiB f32, 128 MiB bf16/f16)");

  using best = backend::best_cpu;
  auto reg = [](const char* name, auto fn) { return bm::RegisterBenchmark(name, fn)->Unit(bm::kMillisecond)->UseRealTime(); };
  reg("probe_read", probe_read);
  reg("probe_copy", probe_copy);
  // A fixed iteration count (about 0.2 s): the automatic estimate was seen to explode for this
  // microsecond-scale probe when interleaved with the GEMM benchmarks.
  reg("probe_fma", probe_fma)->Unit(bm::kMicrosecond)->Iterations(5000);
  reg("dot", k_dot<best>);
  reg("sum", k_sum<best>);
  reg("max", k_max<best>);
  reg("axpy", k_axpy<best>);
  reg("scale", k_scale<best>);
  reg("exp", k_exp<best>);
  reg("softmax", k_softmax<best>);
  reg("softmax_rows", k_softmax_rows<best>);
  reg("rmsnorm_rows", k_rmsnorm_rows<best>);
  reg("layernorm_rows", k_layernorm_rows<best>);
  reg("silu", k_silu<best>);
  reg("convert_f32_to_bf16", k_to_bf16<best>);
  reg("convert_bf16_to_f32", k_from_bf16<best>);
  reg("convert_f32_to_f16", k_to_f16<best>);
  reg("convert_f16_to_f32", k_from_f16<best>);
  reg("top_k64", k_top_k<best>);
  reg("matvec_f32", k_matvec<best, float>);
  reg("matvec_bf16", k_matvec<best, bf16>);
  reg("matvec_f16", k_matvec<best, f16>);
  reg("eigen_matvec_f32", eigen_matvec);
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
  reg("onednn_matvec_f32", onednn_matvec);
  reg("gemm_onednn", k_gemm<backend::onednn>);
  reg("onednn_sgemm", onednn_sgemm);
#endif
  reg("gemm_eigen", k_gemm<backend::eigen>);
  reg("eigen_gemm", eigen_gemm);
  reg("dot_scalar", k_dot<backend::scalar>);
  reg("softmax_scalar", k_softmax<backend::scalar>);

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  (void)buf(); // allocate and touch everything before the first timing
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  print_ratios(rep);
  bm::Shutdown();
  return 0;
}
