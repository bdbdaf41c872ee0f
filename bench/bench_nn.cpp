// SPDX-License-Identifier: MIT
// bench_nn: the nn/ layers beside the probes and the GEMM entry on the same shapes, in one process
// (ratios only mean something within a run on this VM). Single thread, pinned.
// - linear and pointwise conv at EfficientViT shapes vs cpu::gemm on the same (M,K,N);
// - depthwise 3x3 / 5x5 / 7x7 in compulsory bytes/s vs the copy probe (5x5, 7x7 also vs FMA peak);
// - the 3x3 stride-2 stem convolutions at 224x224 input (EfficientViT's patch embedding) vs FMA peak;
// - MLP 32 -> 64 -> 64 -> 2 on 4096 points, forward and backward, vs FMA peak;
// - hash-grid encode and backward in points/s (no target).
// Run: bench_nn --benchmark_min_time=0.3 --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "membound/nn/nn.hpp"
#include "probes.hpp"

using namespace membound;
namespace bm = benchmark;

namespace {

constexpr index_t probe_n = index_t(32) << 20; // 128 MiB per probe array
array<float>& probe_buf(int i) {
  static array<float> a[2] = {array<float>({probe_n}), array<float>({probe_n})}; // zero-filled: touched
  return a[i];
}

void fill_random(view<float> v, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : v.span()) x = u(gen);
}

// ---- linear and pointwise conv vs the GEMM entry ------------------------------------------------
struct shape { index_t tokens, cin, cout; };
constexpr shape shapes[] = {{3136, 64, 128}, {784, 128, 256}, {196, 384, 384}};

void gemm_entry(bm::State& st, shape s) {
  array<float> x({s.tokens, s.cin}), w({s.cout, s.cin}), y({s.tokens, s.cout}); // (N,C_in) (C_out,C_in) (N,C_out)
  fill_random(x.view(), 1);
  fill_random(w.view(), 2);
  for (auto _ : st) {
    cpu::gemm(x.cview(), w.cview().transpose(), y.view());
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * s.tokens * s.cin * s.cout);
}
void linear_layer(bm::State& st, shape s) {
  nn::parameters p;
  std::mt19937 gen(3);
  auto l = nn::linear::make(p, "fc", s.cin, s.cout, true, nn::activation::identity, gen);
  array<float> x({s.tokens, s.cin}), y({s.tokens, s.cout}); // (N,C_in) (N,C_out)
  fill_random(x.view(), 1);
  for (auto _ : st) {
    l.forward(x.cview(), y.view(), y.view());
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * s.tokens * s.cin * s.cout);
}
void pointwise_conv(bm::State& st, shape s) {
  nn::parameters p;
  std::mt19937 gen(4);
  nn::conv2d_config c;
  c.in_channels = s.cin;
  c.out_channels = s.cout;
  auto conv = nn::conv2d::make(p, "pw", c, gen);
  const index_t side = static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(s.tokens))));
  array<float> x({1, s.cin, side, side}), y({1, s.cout, side, side}); // (B,C_in,H,W) (B,C_out,H,W)
  fill_random(x.view(), 1);
  for (auto _ : st) {
    conv.forward(x.cview(), y.view());
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * s.tokens * s.cin * s.cout);
}

// ---- depthwise: compulsory bytes (read x, write y) ------------------------------------------------
void depthwise(bm::State& st, index_t k) {
  nn::parameters p;
  std::mt19937 gen(5);
  nn::conv2d_config c;
  c.in_channels = c.out_channels = c.groups = 128;
  c.kernel = k;
  c.padding = k / 2;
  auto conv = nn::conv2d::make(p, "dw", c, gen);
  const index_t b = 16, h = 56; // 16 x 128 x 56 x 56 floats = 25 MiB in, 25 MiB out
  array<float> x({b, 128, h, h}), y({b, 128, h, h}); // (B,C,H,W)
  fill_random(x.view(), 1);
  for (auto _ : st) {
    conv.forward(x.cview(), y.view());
    bm::ClobberMemory();
  }
  bench::bytes(st, 8.0 * static_cast<double>(x.size()));
  bench::flops(st, 2.0 * static_cast<double>(y.size()) * k * k);
}

// ---- stem: 3x3 stride 2 convolutions of EfficientViT's patch embedding at 224 x 224 ---------------
void stem(bm::State& st, index_t cin, index_t cout, index_t h, nn::conv2d_algorithm algo) {
  nn::parameters p;
  std::mt19937 gen(6);
  nn::conv2d_config c;
  c.in_channels = cin;
  c.out_channels = cout;
  c.kernel = 3;
  c.stride = 2;
  c.padding = 1;
  c.algorithm = algo;
  auto conv = nn::conv2d::make(p, "stem", c, gen);
  array<float> x({1, cin, h, h}), y({1, cout, h / 2, h / 2}); // (B,C_in,H,W) (B,C_out,H/2,W/2)
  fill_random(x.view(), 1);
  for (auto _ : st) {
    conv.forward(x.cview(), y.view());
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * cout * cin * 9 * (h / 2) * (h / 2));
}

// ---- MLP 32 -> 64 -> 64 -> 2 on 4096 points --------------------------------------------------------
constexpr index_t mlp_n = 4096;
constexpr double mlp_flops = 2.0 * mlp_n * (32 * 64 + 64 * 64 + 64 * 2);
void mlp_bench(bm::State& st, bool with_backward) {
  nn::parameters p;
  std::mt19937 gen(7);
  auto m = nn::mlp::make(p, "mlp", {32, 64, 64, 2}, nn::activation::relu, nn::activation::identity, gen);
  m.reserve(mlp_n);
  array<float> x({mlp_n, 32}), out({mlp_n, 2}), dout({mlp_n, 2}); // (N,32) (N,2) (N,2)
  fill_random(x.view(), 1);
  fill_random(dout.view(), 2);
  for (auto _ : st) {
    m.forward(x.cview(), out.view());
    if (with_backward) m.backward(x.cview(), dout.cview());
    bm::ClobberMemory();
  }
  bench::flops(st, with_backward ? 3.0 * mlp_flops : mlp_flops); // backward: dW and dX products, ~2x forward
}

// ---- hash grid -----------------------------------------------------------------------------------
constexpr index_t grid_n = 1 << 16;
void hash_grid_bench(bm::State& st, bool backward) {
  nn::hash_grid_config cfg; // instant-ngp's NeRF defaults: L 16, F 2, T 2^19, N_min 16
  nn::hash_grid g(cfg);
  array<float> x({grid_n, 3}), y({grid_n, g.output_dims()}), dtab(std::initializer_list<index_t>{g.levels(), g.table_size(), g.features()}); // (N,3) (N,L*F) (L,T,F)
  std::mt19937 gen(8);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : x.span()) v = u(gen);
  fill_random(y.view(), 3);
  for (auto _ : st) {
    if (backward) g.backward_table(x.cview(), y.cview(), dtab.view());
    else g.forward(x.cview(), y.view());
    bm::ClobberMemory();
  }
  bench::items(st, "points/s", static_cast<double>(grid_n));
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMicrosecond)->UseRealTime();
  };
  reg("probe_copy", [](bm::State& st) { bench::probe_copy(st, probe_buf(0).data(), probe_buf(1).data(), probe_n); })
      ->Unit(bm::kMillisecond);
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000);
  for (const auto& s : shapes) {
    const std::string tag = std::to_string(s.tokens) + "x" + std::to_string(s.cin) + "x" + std::to_string(s.cout);
    reg("gemm_entry_" + tag, [s](bm::State& st) { gemm_entry(st, s); });
    reg("linear_" + tag, [s](bm::State& st) { linear_layer(st, s); });
    reg("pointwise_" + tag, [s](bm::State& st) { pointwise_conv(st, s); });
  }
  for (index_t k : {3, 5, 7}) reg("depthwise_" + std::to_string(k) + "x" + std::to_string(k), [k](bm::State& st) { depthwise(st, k); });
  for (auto [algo, tag] : {std::pair{nn::conv2d_algorithm::automatic, ""}, std::pair{nn::conv2d_algorithm::direct, "_direct"},
                           std::pair{nn::conv2d_algorithm::im2col, "_im2col"}}) {
    const auto a = algo; // (clang 14 cannot capture structured bindings)
    reg(std::string("stem_3to16_224") + tag, [a](bm::State& st) { stem(st, 3, 16, 224, a); });
    reg(std::string("stem_16to32_112") + tag, [a](bm::State& st) { stem(st, 16, 32, 112, a); });
    reg(std::string("stem_32to64_56") + tag, [a](bm::State& st) { stem(st, 32, 64, 56, a); });
  }
  reg("mlp_forward", [](bm::State& st) { mlp_bench(st, false); });
  reg("mlp_forward_backward", [](bm::State& st) { mlp_bench(st, true); });
  reg("hash_grid_forward", [](bm::State& st) { hash_grid_bench(st, false); });
  reg("hash_grid_backward", [](bm::State& st) { hash_grid_bench(st, true); });

  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"linear_3136x64x128", "gemm_entry_3136x64x128", "FLOP/s", 0.8},
      {"linear_784x128x256", "gemm_entry_784x128x256", "FLOP/s", 0.8},
      {"linear_196x384x384", "gemm_entry_196x384x384", "FLOP/s", 0.8},
      {"pointwise_3136x64x128", "gemm_entry_3136x64x128", "FLOP/s", 0.8},
      {"pointwise_784x128x256", "gemm_entry_784x128x256", "FLOP/s", 0.8},
      {"pointwise_196x384x384", "gemm_entry_196x384x384", "FLOP/s", 0.8},
      {"gemm_entry_3136x64x128", "probe_fma", "FLOP/s", 0},
      {"gemm_entry_784x128x256", "probe_fma", "FLOP/s", 0},
      {"gemm_entry_196x384x384", "probe_fma", "FLOP/s", 0},
      {"depthwise_3x3", "probe_copy", "bytes_per_second", 0.6},
      {"depthwise_5x5", "probe_copy", "bytes_per_second", 0.6},
      {"depthwise_7x7", "probe_copy", "bytes_per_second", 0.6},
      // 2 k^2 FLOPs per output: where the bandwidth target asks for more than the FMA peak allows
      // (7x7 with 256-bit FMAs), the figure is read against the FMA probe instead (bench/README.md)
      {"depthwise_5x5", "probe_fma", "FLOP/s", 0},
      {"depthwise_7x7", "probe_fma", "FLOP/s", 0},
      {"stem_3to16_224", "probe_fma", "FLOP/s", 0.5},
      {"stem_16to32_112", "probe_fma", "FLOP/s", 0.5},
      {"stem_32to64_56", "probe_fma", "FLOP/s", 0.5},
      {"mlp_forward", "probe_fma", "FLOP/s", 0.35},
      {"mlp_forward_backward", "probe_fma", "FLOP/s", 0},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
