// SPDX-License-Identifier: MIT
// bench_occupancy: empty-space skipping (occupancy/) with its baselines in the same binary:
//   - march_<scale>x_<estimator>: rays/s and samples/ray of dense, the 128^3 grid and the learned
//     occupancy on the procedural city at 1x, 4x and 16x area (aerial + street cameras, 64 x 40
//     rays each, step 0.1 m); the ratio table at the end divides each by dense's rays/s on the
//     same scale;
//   - classifier_mlp/<hidden>: the learned occupancy's MLP alone (fused SIMD kernel, batches of
//     4096 encoded points stored feature-major), FLOP/s = 2 x MACs per point, beside probe_fma (the FMA peak);
//   - hash_grid_encode/L16_T19: the encoding (16 levels x 2^19 x 2 features: 64 MiB of table,
//     far beyond L2) on 65536 random points, reads/s = 8 corners x 16 levels per point, beside
//     probe_gather (the same number of independent random reads from a table of the same size);
//   - grid_update/<res>: one occupancy_grid update pass of every cell with a free field (constant
//     density), cells/s and bytes/s (the float per cell read and written, the bitfield written)
//     beside probe_read (a sequential sum of a 256 MiB array).
// Run: build/release/bench/bench_occupancy [--benchmark_filter=...]; single thread (pinned).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "membound/occupancy/occupancy.hpp"
#include "probes.hpp"

namespace bm = ::benchmark;
using namespace membound;
using namespace membound::occupancy;

namespace {

constexpr float step = 0.1f;

/// A field of constant density (the grid-update benchmark's free field).
struct constant_field {
  aabb box;
  float sigma = 1;
  aabb bounds() const noexcept { return box; }
  void density(view<const float> x, view<float> s) const {
    for (index_t i = 0; i < x.extent(0); ++i) s.data()[i * s.stride(0)] = sigma;
  }
};

struct scene {
  std::unique_ptr<city_field> city;
  std::unique_ptr<occupancy_grid> grid;
  std::unique_ptr<learned_occupancy> learned;
  array<float> o, d; // (N,3)
};

scene& city_scene(double scale) {
  static std::map<double, scene> cache;
  auto it = cache.find(scale);
  if (it != cache.end()) return it->second;
  scene s;
  city_config cc;
  cc.scale = scale;
  s.city = std::make_unique<city_field>(cc);
  const aabb b = s.city->bounds();
  const float side = b.size().x, y = (cc.block + cc.street) + 0.5f * cc.street;
  const pinhole_camera cams[] = {
      pinhole_camera::look_at(64, 40, 70, {-0.04f * side, -0.04f * side, 1.3f * cc.max_height}, {0.5f * side, 0.5f * side, 0}),
      pinhole_camera::look_at(64, 40, 80, {3.0f, y, 1.7f}, {side, y, 6.0f})};
  s.o = array<float>({2 * 64 * 40, 3}); // (N,3)
  s.d = array<float>({2 * 64 * 40, 3}); // (N,3)
  for (int k = 0; k < 2; ++k) {
    array<float> o, d;
    cams[k].rays(o, d);
    std::copy_n(o.data(), o.size(), s.o.data() + k * o.size());
    std::copy_n(d.data(), d.size(), s.d.data() + k * d.size());
  }
  occupancy_grid_config gc;
  gc.region = b;
  s.grid = std::make_unique<occupancy_grid>(gc);
  s.grid->build(*s.city, step, 8);
  learned_occupancy_config lc;
  lc.region = b;
  lc.step_size = step;
  lc.fine_length = 4 * step;
  lc.grid.growth = nn::hash_grid_growth(16, 2048, 8);
  lc.steps = 500;
  lc.threshold = lc.coarse_threshold = 0.3f;
  s.learned = std::make_unique<learned_occupancy>(lc);
  s.learned->train(*s.city);
  return cache.emplace(scale, std::move(s)).first->second;
}

template <class E>
void march_bench(bm::State& st, double scale, const E& (*pick)(scene&)) {
  scene& s = city_scene(scale);
  const E& est = pick(s);
  march_settings ms;
  ms.step = step;
  ms.window = 256; // the learned classifier's top segment (25.6 m): see notebook 60
  render_result r = march(*s.city, est, s.o.cview(), s.d.cview(), ms); // warm-up
  for (auto _ : st) {
    r = march(*s.city, est, s.o.cview(), s.d.cview(), ms);
    bm::ClobberMemory();
  }
  bench::items(st, "rays/s", static_cast<double>(s.o.extent(0)));
  st.counters["samples/ray"] = r.samples_per_ray();
  st.counters["KiB"] = static_cast<double>(est.memory_bytes()) / 1024.0;
}

const dense& pick_dense(scene&) {
  static const dense d;
  return d;
}
const occupancy_grid& pick_grid(scene& s) { return *s.grid; }
const learned_occupancy& pick_learned(scene& s) { return *s.learned; }

void classifier_mlp(bm::State& st, index_t hidden) {
  learned_occupancy_config lc;
  lc.hidden = {hidden};
  learned_occupancy l(lc);
  const index_t n = 4096;
  array<float> x({n, 3}), encm({l.enc_dims(), n}), logits({n, static_cast<index_t>(l.heads())}); // (N,3) (E,N) (N,H)
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : x.span()) v = u(gen);
  auto ws = l.make_workspace();
  const auto enc = encm.view().transpose(); // (N,E) feature-major, as the fused kernel holds it
  l.encode_points(x.cview(), enc, ws);
  l.mlp_forward(view<const float>(enc), logits.view(), ws);
  for (auto _ : st) {
    l.mlp_forward(view<const float>(enc), logits.view(), ws);
    bm::ClobberMemory();
  }
  bench::flops(st, 2.0 * static_cast<double>(l.mlp_macs()) * static_cast<double>(n));
  bench::items(st, "points/s", static_cast<double>(n));
}

void hash_grid_encode(bm::State& st) {
  nn::hash_grid g({3, 16, 2, 19, 16, nn::hash_grid_growth(16, 4096, 16)});
  const index_t n = 65536;
  array<float> x({n, 3}), y({n, g.output_dims()}); // (N,3) (N,L*F)
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : x.span()) v = u(gen);
  g.forward(x.cview(), y.view());
  for (auto _ : st) {
    g.forward(x.cview(), y.view());
    bm::ClobberMemory();
  }
  bench::items(st, "reads/s", static_cast<double>(n) * 16 * 8);
  st.counters["MiB"] = static_cast<double>(g.parameter_count()) * 4.0 / (1024.0 * 1024.0);
}

// Independent reads of random cache lines: 16 x 2^19 x 2 floats (64 MiB), the same number of
// reads as the encoding, each from a random 64-byte line chosen by an in-register xorshift hash (no
// index stream), summed with gathers of probe_lanes lanes into 8 independent accumulators: the
// hash grid's access pattern without its interpolation arithmetic.
void probe_gather(bm::State& st) {
  using A = bench::probe_arch;
  using fb = xsimd::batch<float, A>;
  using ub = xsimd::batch<std::uint32_t, A>;
  using ib = xsimd::batch<std::int32_t, A>;
  const index_t table = index_t{16} << 20, reads = index_t{65536} * 16 * 8;
  array<float> t({table});
  for (float& v : t.span()) v = 1.0f;
  constexpr index_t W = static_cast<index_t>(fb::size);
  alignas(64) std::uint32_t lane[W];
  for (index_t k = 0; k < W; ++k) lane[k] = static_cast<std::uint32_t>(2654435761u * (k + 1));
  const ub lines(static_cast<std::uint32_t>(table / 16 - 1));
  ub h = ub::load_aligned(lane);
  fb acc[8];
  for (auto& a : acc) a = fb(0.0f);
  for (auto _ : st) {
    for (index_t i = 0; i < reads; i += 8 * W) {
      for (int a = 0; a < 8; ++a) {
        h = h ^ (h << 13);
        h = h ^ (h >> 17);
        h = h ^ (h << 5);
        const ib idx = xsimd::bitwise_cast<ib>((h & lines) << 4);
        acc[a] = acc[a] + cpu::detail::gather<A>(t.data(), idx);
      }
    }
    for (auto& a : acc) bm::DoNotOptimize(a);
  }
  bench::items(st, "reads/s", static_cast<double>(reads));
}

void grid_update(bm::State& st, int res) {
  occupancy_grid_config gc;
  gc.region = {{0, 0, 0}, {1, 1, 1}};
  gc.rx = gc.ry = gc.rz = res;
  occupancy_grid g(gc);
  const constant_field f{gc.region, 1.0f};
  g.update(0, f, 0.01f);
  for (auto _ : st) {
    g.update(0, f, 0.01f);
    bm::ClobberMemory();
  }
  const double cells = std::pow(static_cast<double>(res), 3);
  bench::items(st, "cells/s", cells);
  bench::bytes(st, cells * 8.0 + cells / 8.0); // occ read + written, bits written
}

} // namespace

int main(int argc, char** argv) {
  bench::pin_single_thread();
  auto reg = [](const std::string& name, auto fn) {
    return bm::RegisterBenchmark(name.c_str(), fn)->Unit(bm::kMillisecond)->UseRealTime();
  };
  reg("probe_fma", [](bm::State& st) { bench::probe_fma(st); })->Iterations(5000)->Unit(bm::kMicrosecond);
  for (index_t h : {32, 64})
    reg("classifier_mlp/" + std::to_string(h), [h](bm::State& st) { classifier_mlp(st, h); })->Unit(bm::kMicrosecond);
  reg("probe_gather", probe_gather);
  reg("hash_grid_encode/L16_T19", hash_grid_encode);
  static array<float> big({index_t{64} << 20}); // 256 MiB for the read probe
  reg("probe_read", [](bm::State& st) { bench::probe_read(st, big.data(), big.size()); });
  for (int res : {64, 128}) reg("grid_update/" + std::to_string(res), [res](bm::State& st) { grid_update(st, res); });
  for (double scale : {1.0, 4.0, 16.0}) {
    const std::string p = "march_" + std::to_string(static_cast<int>(scale)) + "x_";
    reg(p + "dense", [scale](bm::State& st) { march_bench<dense>(st, scale, pick_dense); })->Iterations(2);
    reg(p + "grid128", [scale](bm::State& st) { march_bench<occupancy_grid>(st, scale, pick_grid); });
    reg(p + "learned", [scale](bm::State& st) { march_bench<learned_occupancy>(st, scale, pick_learned); });
  }
  bm::Initialize(&argc, argv);
  if (bm::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::recording_reporter rep;
  bm::RunSpecifiedBenchmarks(&rep);
  const bench::ratio_row table[] = {
      {"classifier_mlp/32", "probe_fma", "FLOP/s", 0.4},
      {"classifier_mlp/64", "probe_fma", "FLOP/s", 0.4},
      {"hash_grid_encode/L16_T19", "probe_gather", "reads/s", 0.6},
      {"grid_update/128", "probe_read", "bytes_per_second", 0},
      {"march_1x_grid128", "march_1x_dense", "rays/s", 10},
      {"march_4x_grid128", "march_4x_dense", "rays/s", 10},
      {"march_16x_grid128", "march_16x_dense", "rays/s", 10},
      {"march_1x_learned", "march_1x_dense", "rays/s", 10},
      {"march_4x_learned", "march_4x_dense", "rays/s", 10},
      {"march_16x_learned", "march_16x_dense", "rays/s", 10},
  };
  bench::print_ratios(rep, table);
  bm::Shutdown();
  return 0;
}
