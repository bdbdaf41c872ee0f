// SPDX-License-Identifier: MIT
//
// 60 - Skipping empty space in a city: occupancy grids against a learned occupancy network
// ======================================================================================
//
// What this notebook teaches:
//  1. A radiance-field renderer marches every ray in small steps and asks the scene for its
//     density at each. In a city most of those steps are in empty air: the `dense` estimator
//     (occupancy::dense, no skipping) shows what that costs, and it is the ground truth of every
//     metric below (same step lattice, early termination at transmittance 1e-4).
//  2. An occupancy grid (occupancy::occupancy_grid, instant-ngp / nerfacc) stores one bit per
//     cell and lets the marcher walk cells with a 3-D DDA, sampling only in occupied ones. The
//     LeC2O-NeRF baseline is a fixed 128^3 grid: on a city of 1 km x 1 km x 95 m its cells are
//     10 m x 10 m x 0.74 m, so every ray near a building samples several metres of air, and a
//     random point per cell can miss a pole or a wire.
//  3. A learned occupancy (occupancy::learned_occupancy, after LeC2O-NeRF): a hash-grid encoding
//     and a tiny MLP classify points as occupied or empty, trained self-supervised from density
//     queries with an imbalanced occupancy loss and an explicit density loss. At the same memory
//     as the 128^3 bitfield (256 KiB) it is evaluated coarse-then-fine along each ray.
//  4. The metrics, per city scale (1x, 4x, 16x area) and estimator: memory (nerfacc's float+bool
//     per cell beside our bit per cell), build or training time, samples per ray, recall of the
//     weight-carrying samples (weight > 1e-4 under dense), opacity / depth / colour error against
//     dense, and rays/s with the speed-up over dense.
//
// The scene: occupancy::city_field, blocks of box buildings (mostly low, a few towers), poles
// joined by wires along the streets, trees, a ground slab and empty sky. Two cameras per scale:
// an aerial view over a corner of the city and a street-level view down the first street.
//
// Writes into --out (default: the working directory):
//   60_occupancy_city.csv             one row per scale x estimator (the table printed)
//   60_occupancy_<camera>.png         16x city (the largest scale run): rows of tiles, left to right
//                                     dense colour, dense depth; samples per ray (heat map, log
//                                     scale) of grid128, multi-level grid, learned; where each
//                                     estimator misses weight-carrying samples (red = missed weight)
//
// Run: build/release/examples/60_occupancy_city [--full] [--out dir]
//      default: small images and a short training run, under a minute on one core;
//      --full: 320 x 200 per camera and the real training schedule (minutes);
//      MEMBOUND_SMOKE=1: the 1x city only, tiny images (a few seconds).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "membound/io/image.hpp"
#include "membound/occupancy/occupancy.hpp"

using namespace membound;
using namespace membound::occupancy;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct row {
  std::string estimator;
  double bytes = 0, nerfacc_bytes = 0, build_s = 0, spr = 0, recall = 0, opacity_mae = 0, depth_mae = 0, rgb_mae = 0,
         rays_per_s = 0, speedup = 0;
  index_t missed = 0, carrying = 0;
};

struct camera_set {
  std::vector<std::string> names;
  std::vector<pinhole_camera> cams;
  array<float> o, d; // (N,3) all cameras' rays, camera-major
};

camera_set cameras(const city_field& city, int w, int h) {
  const aabb b = city.bounds();
  const city_config& c = city.config();
  const float side = b.size().x;
  camera_set s;
  s.names = {"aerial", "street"};
  s.cams.push_back(pinhole_camera::look_at(w, h, 70, {-0.04f * side, -0.04f * side, 1.3f * c.max_height},
                                           {0.5f * side, 0.5f * side, 0}));
  const float y = (c.block + c.street) + 0.5f * c.street;
  s.cams.push_back(pinhole_camera::look_at(w, h, 80, {3.0f, y, 1.7f}, {side, y, 6.0f}));
  const index_t per = index_t{w} * h, n = per * static_cast<index_t>(s.cams.size());
  s.o = array<float>({n, 3}); // (N,3)
  s.d = array<float>({n, 3}); // (N,3)
  for (std::size_t k = 0; k < s.cams.size(); ++k) {
    array<float> o, d;
    s.cams[k].rays(o, d);
    std::copy_n(o.data(), 3 * per, s.o.data() + 3 * per * static_cast<index_t>(k));
    std::copy_n(d.data(), 3 * per, s.d.data() + 3 * per * static_cast<index_t>(k));
  }
  return s;
}

template <class E>
row measure(const char* name, const city_field& city, const E& est, const camera_set& cs, const march_settings& ms,
            const render_result& ref, const sample_trace& ref_trace, render_result& out, sample_trace& trace) {
  out = march(city, est, cs.o.cview(), cs.d.cview(), ms, &trace);
  row r;
  r.estimator = name;
  r.bytes = static_cast<double>(est.memory_bytes());
  r.spr = out.samples_per_ray();
  index_t kept = 0, total = 0;
  r.recall = weight_recall(ref_trace, trace, &kept, &total);
  r.carrying = total;
  r.missed = total - kept;
  double eo = 0, ed = 0, ec = 0;
  const index_t n = ref.rays();
  for (index_t i = 0; i < n; ++i) {
    eo += std::abs(out.opacity[i] - ref.opacity[i]);
    ed += std::abs(out.depth[i] - ref.depth[i]);
    for (int c = 0; c < 3; ++c) ec += std::abs(out.rgb[3 * i + c] - ref.rgb[3 * i + c]);
  }
  r.opacity_mae = eo / static_cast<double>(n);
  r.depth_mae = ed / static_cast<double>(n);
  r.rgb_mae = ec / (3.0 * static_cast<double>(n));
  r.rays_per_s = static_cast<double>(n) / out.seconds;
  r.speedup = ref.seconds / out.seconds;
  return r;
}

// Heat colour for v in [0,1].
void heat(float v, std::uint8_t* p) {
  v = std::clamp(v, 0.0f, 1.0f);
  p[0] = static_cast<std::uint8_t>(255 * std::min(1.0f, 3 * v));
  p[1] = static_cast<std::uint8_t>(255 * std::clamp(3 * v - 1, 0.0f, 1.0f));
  p[2] = static_cast<std::uint8_t>(255 * std::clamp(3 * v - 2, 0.0f, 1.0f));
}

} // namespace

int main(int argc, char** argv) try {
  bool full = false;
  fs::path out_dir = ".";
  std::vector<double> only_scale;
  long long steps_arg = -1, updates_arg = -1;
  float thr = 0.3f, cthr = 0.3f, posw = 4.0f, tempty = 0.9f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) throw config_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--full") full = true;
    else if (a == "--out") out_dir = next();
    else if (a == "--scale") only_scale.push_back(std::atof(next()));
    else if (a == "--steps") steps_arg = std::atoll(next());
    else if (a == "--updates") updates_arg = std::atoll(next());
    else if (a == "--threshold") thr = static_cast<float>(std::atof(next()));
    else if (a == "--coarse-threshold") cthr = static_cast<float>(std::atof(next()));
    else if (a == "--positive-weight") posw = static_cast<float>(std::atof(next()));
    else if (a == "--target-empty") tempty = static_cast<float>(std::atof(next()));
    else {
      std::fprintf(stderr, "usage: %s [--full] [--out dir] [--scale s]... [--steps n] [--updates n] [--threshold p] "
                           "[--coarse-threshold p] [--positive-weight w] [--target-empty r]\n", argv[0]);
      return 2;
    }
  }
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  fs::create_directories(out_dir);
  const int w = smoke ? 24 : (full ? 320 : 80), h = smoke ? 16 : (full ? 200 : 50);
  const std::vector<double> scales =
      smoke ? std::vector<double>{1} : (only_scale.empty() ? std::vector<double>{1, 4, 16} : only_scale);

  march_settings ms;
  ms.step = 0.1f;      // the dense reference's step: 10 cm
  ms.window = 256;     // 25.6 m of ray per estimator query: the learned classifier's top segment, so
                       // a ray's later segments are never classified once it has terminated
  std::printf("60 - empty-space skipping in a procedural city (%s run: %d x %d rays per camera, step %.2f m)\n",
              smoke ? "smoke" : (full ? "--full" : "default"), w, h, static_cast<double>(ms.step));

  std::ofstream csv(out_dir / "60_occupancy_city.csv");
  csv << "scale,estimator,bytes,nerfacc_bytes,build_s,samples_per_ray,recall,opacity_mae,depth_mae_m,rgb_mae,rays_per_s,"
         "speedup_vs_dense\n";
  for (double scale : scales) {
    city_config cc;
    cc.scale = scale;
    const city_field city(cc);
    const aabb box = city.bounds();
    const camera_set cs = cameras(city, w, h);
    std::printf("\n== city %gx: %.0f m x %.0f m x %.0f m, %lld buildings, %lld poles, %lld trees, %lld rays\n", scale,
                static_cast<double>(box.size().x), static_cast<double>(box.size().y), static_cast<double>(box.size().z),
                static_cast<long long>(city.building_count()), static_cast<long long>(city.pole_count()),
                static_cast<long long>(city.tree_count()), static_cast<long long>(cs.o.extent(0)));
    std::vector<row> rows;
    // dense
    sample_trace ref_trace;
    const render_result ref = march(city, dense{}, cs.o.cview(), cs.d.cview(), ms, &ref_trace);
    {
      row r;
      r.estimator = "dense";
      r.spr = ref.samples_per_ray();
      r.recall = weight_recall(ref_trace, ref_trace, nullptr, &r.carrying);
      r.rays_per_s = static_cast<double>(ref.rays()) / ref.seconds;
      r.speedup = 1;
      rows.push_back(r);
    }
    // 128^3 grid over the city's box (nerfacc's default resolution; the LeC2O baseline)
    occupancy_grid_config gc;
    gc.region = box;
    const int updates = updates_arg >= 0 ? static_cast<int>(updates_arg) : (smoke ? 1 : (full ? 32 : 8));
    double t0 = now();
    occupancy_grid grid(gc);
    grid.build(city, ms.step, updates);
    const double grid_s = now() - t0;
    // two-level grid with cubic cells at the same bit budget (2 x 2^20 cells)
    occupancy_grid_config mc = occupancy_grid_config::cubic_cells(box.scaled(0.5f), double(1 << 20), 2);
    t0 = now();
    occupancy_grid multi(mc);
    multi.build(city, ms.step, updates);
    const double multi_s = now() - t0;
    // learned occupancy at about the same memory: 8 levels x 2^12 x 2 features + MLP 16-32-2
    learned_occupancy_config lc;
    lc.region = box;
    lc.step_size = ms.step;
    lc.fine_length = 4 * ms.step;
    lc.grid.growth = nn::hash_grid_growth(16, 2048, 8);
    lc.steps = steps_arg >= 0 ? steps_arg : (smoke ? 40 : (full ? 4000 : 500));
    lc.threshold = thr;
    lc.coarse_threshold = cthr;
    lc.positive_weight = posw;
    lc.target_empty = tempty;
    lc.batch = full ? 8192 : 4096;
    learned_occupancy learned(lc);
    const index_t every = std::max<index_t>(1, lc.steps / 5);
    const learned_occupancy_report rep = learned.train(city, [&](index_t s, float loss, double pps) {
      std::printf("   training: step %5lld / %lld  loss %.4f  %.2f M points/s\n", static_cast<long long>(s),
                  static_cast<long long>(lc.steps), static_cast<double>(loss), pps * 1e-6);
      std::fflush(stdout);
    }, every);
    std::printf("   learned occupancy (%lld parameters, %d heads): held-out recall per head", static_cast<long long>(learned.parameter_count()), learned.heads());
    for (double rc : rep.recall) std::printf(" %.4f", rc);
    std::printf(", head-0 accuracy %.4f, empty %.3f predicted / %.3f labelled\n", rep.fine_accuracy, rep.predicted_empty,
                rep.label_empty);

    std::vector<render_result> results(3);
    std::vector<sample_trace> traces(3);
    rows.push_back(measure("grid128", city, grid, cs, ms, ref, ref_trace, results[0], traces[0]));
    rows.back().build_s = grid_s;
    rows.back().nerfacc_bytes = static_cast<double>(grid.nerfacc_bytes());
    rows.push_back(measure("multigrid", city, multi, cs, ms, ref, ref_trace, results[1], traces[1]));
    rows.back().build_s = multi_s;
    rows.back().nerfacc_bytes = static_cast<double>(multi.nerfacc_bytes());
    rows.push_back(measure("learned", city, learned, cs, ms, ref, ref_trace, results[2], traces[2]));
    rows.back().build_s = rep.seconds;

    std::printf("   %-10s %10s %10s %8s %9s %9s %9s %8s %8s %10s %8s\n", "estimator", "KiB", "nerfacc", "build s",
                "smp/ray", "recall", "opac MAE", "depth m", "rgb MAE", "rays/s", "speedup");
    for (const row& r : rows) {
      std::printf("   %-10s %10.1f %10.1f %8.2f %9.1f %9.5f %9.5f %8.3f %8.5f %10.0f %8.1f\n", r.estimator.c_str(),
                  r.bytes / 1024, r.nerfacc_bytes / 1024, r.build_s, r.spr, r.recall, r.opacity_mae, r.depth_mae,
                  r.rgb_mae, r.rays_per_s, r.speedup);
      csv << scale << ',' << r.estimator << ',' << r.bytes << ',' << r.nerfacc_bytes << ',' << r.build_s << ',' << r.spr
          << ',' << r.recall << ',' << r.opacity_mae << ',' << r.depth_mae << ',' << r.rgb_mae << ',' << r.rays_per_s
          << ',' << r.speedup << '\n';
    }
    const double g = rows[1].spr, l = rows[3].spr;
    std::printf("   learned vs grid128: recall %.4f (target >= 0.995), samples/ray %.2fx of the grid's (target <= 0.5)\n",
                rows[3].recall, l / g);

    if (scale != scales.back()) continue;
    // Images of the largest scale: per camera, 2 rows x 4 tiles.
    const index_t per = index_t{w} * h;
    for (std::size_t k = 0; k < cs.cams.size(); ++k) {
      io::image img(2 * h, 4 * w);
      const index_t base = per * static_cast<index_t>(k);
      float dmax = 1;
      for (index_t i = 0; i < per; ++i) dmax = std::max(dmax, ref.opacity[base + i] > 0 ? ref.depth[base + i] / ref.opacity[base + i] : 0.0f);
      double smax = 1;
      for (index_t i = 0; i < per; ++i) smax = std::max(smax, static_cast<double>(ref.samples[base + i]));
      for (int v = 0; v < h; ++v)
        for (int u = 0; u < w; ++u) {
          const index_t i = base + index_t{v} * w + u;
          std::uint8_t* p = &img(v, u, 0);
          for (int c = 0; c < 3; ++c)
            p[c] = static_cast<std::uint8_t>(255 * std::clamp(ref.rgb[3 * i + c] + (1 - ref.opacity[i]) * (c == 2 ? 0.9f : 0.7f), 0.0f, 1.0f));
          const float dep = ref.opacity[i] > 0 ? ref.depth[i] / ref.opacity[i] : dmax;
          heat(1 - std::sqrt(dep / dmax), &img(v, w + u, 0));
          for (int e = 0; e < 3; ++e) {
            const double s = results[static_cast<std::size_t>(e)].samples[i];
            const float level = static_cast<float>(std::log1p(s) / std::log1p(smax));
            if (e == 0) heat(level, &img(v, 2 * w + u, 0));
            if (e == 1) heat(level, &img(h + v, u, 0));
            if (e == 2) heat(level, &img(v, 3 * w + u, 0));
          }
          // misses: weight of the dense samples the estimator skipped
          for (int e = 0; e < 3; ++e) {
            const auto& rt = ref_trace[static_cast<std::size_t>(i)];
            const auto& ct = traces[static_cast<std::size_t>(e)][static_cast<std::size_t>(i)];
            float missed = 0;
            std::size_t j = 0;
            for (const traced_sample& s : rt) {
              while (j < ct.size() && ct[j].step < s.step) ++j;
              if (!(j < ct.size() && ct[j].step == s.step)) missed += s.weight;
            }
            std::uint8_t* q = &img(h + v, (1 + e) * w + u, 0);
            const std::uint8_t gray = static_cast<std::uint8_t>(60 * ref.opacity[i]);
            q[0] = static_cast<std::uint8_t>(std::min(255.0f, gray + 255 * std::min(1.0f, 4 * missed)));
            q[1] = q[2] = gray;
          }
        }
      const fs::path png = out_dir / ("60_occupancy_" + cs.names[k] + ".png");
      io::write_png(png, img);
      std::printf("   wrote %s (top: colour, depth, samples of grid128 / learned; bottom: samples of the multi-level "
                  "grid, misses of grid128 / multigrid / learned)\n",
                  png.string().c_str());
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "60_occupancy_city: %s\n", e.what());
  return 1;
}
