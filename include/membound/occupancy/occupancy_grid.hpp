// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `occupancy_grid`: multi-level occupancy bitfield cascades with DDA traversal, as in
/// instant-ngp (Mueller et al. 2022) and nerfacc's `OccGridEstimator` (Li et al. 2023).
///
/// State and update (nerfacc's `_update`, instant-ngp's density-grid update):
///   - Level l covers the region box scaled by 2^l about its centre and holds rx*ry*rz cells
///     (cell (i,j,k) has linear index i + rx (j + ry k)). Each cell keeps a float value `occ`
///     (an optical thickness sigma * step) and one bit.
///   - `update(step, field)`: before `warmup_steps`, every cell of every level is selected; later,
///     per level, cells/4 cells drawn uniformly (with repetition) plus cells/4 drawn from the
///     currently occupied ones. For each selected cell, one point uniform in the cell is evaluated
///     and occ <- occ < 0 ? occ : max(decay * occ, sigma(x) * step_size), applied in draw order.
///     Then threshold = min(mean of the occ >= 0, occ_threshold) and bit = occ > threshold.
///     Randomness comes from the seed and the step number only; field queries run in parallel and
///     the results do not depend on the thread count.
///   - The bitfield is the marching state: one bit per cell (`memory_bytes`). nerfacc keeps a
///     float and a bool per cell (`nerfacc_bytes`), 5 bytes instead of 1/8.
///
/// Traversal: the ray is split where it crosses level boxes; each piece is walked with a 3-D DDA
/// (Amanatides & Woo 1987) in the finest level that contains it, visiting exactly the cells the
/// ray passes through with positive length (up to float rounding at cell corners), in order.
/// Occupied runs of cells are returned as intervals. Cost O(cells crossed) per ray.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string_view>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/occupancy/estimator.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// Settings of `occupancy_grid`. Defaults are nerfacc's (resolution 128, one level, decay 0.95,
/// threshold 0.01, 256 warm-up steps).
struct occupancy_grid_config {
  aabb region{{0, 0, 0}, {1, 1, 1}}; ///< level 0's box
  int rx = 128, ry = 128, rz = 128;   ///< cells per axis of every level (1..4096)
  int levels = 1;                     ///< 1..16
  float decay = 0.95f;                ///< in [0,1]
  float occ_threshold = 0.01f;        ///< optical thickness above which a cell is occupied (>= 0)
  int warmup_steps = 256;             ///< updates before which every cell is refreshed (>= 0)
  std::uint32_t seed = 0x0cc;

  /// @throws config_error naming the first bad setting.
  void validate() const {
    check_aabb(region, "occupancy_grid_config");
    MEMBOUND_EXPECTS(rx >= 1 && ry >= 1 && rz >= 1 && rx <= 4096 && ry <= 4096 && rz <= 4096, config_error,
                     "occupancy_grid_config: resolution ", rx, "x", ry, "x", rz, ", expected 1..4096 per axis");
    MEMBOUND_EXPECTS(levels >= 1 && levels <= 16, config_error, "occupancy_grid_config: levels ", levels,
                     ", expected 1..16");
    MEMBOUND_EXPECTS(static_cast<double>(rx) * ry * rz * levels <= 4294967295.0, config_error,
                     "occupancy_grid_config: ", levels, " levels of ", rx, "x", ry, "x", rz,
                     " cells exceed 2^32 cells");
    MEMBOUND_EXPECTS(decay >= 0 && decay <= 1, config_error, "occupancy_grid_config: decay ", decay,
                     ", expected in [0,1]");
    MEMBOUND_EXPECTS(std::isfinite(occ_threshold) && occ_threshold >= 0, config_error,
                     "occupancy_grid_config: occ_threshold ", occ_threshold, ", expected finite and >= 0");
    MEMBOUND_EXPECTS(warmup_steps >= 0, config_error, "occupancy_grid_config: warmup_steps ", warmup_steps,
                     ", expected >= 0");
  }
  /// A config whose cells are as close to cubes as a budget of about `cells` per level allows
  /// (for boxes far from cubic, like a city: 128^3 cells over 1 km x 1 km x 100 m).
  static occupancy_grid_config cubic_cells(const aabb& region, double cells, int levels = 1) {
    check_aabb(region, "occupancy_grid_config::cubic_cells");
    const vec3 e = region.size();
    const double h = std::cbrt(static_cast<double>(e.x) * e.y * e.z / cells);
    occupancy_grid_config c;
    c.region = region;
    c.rx = std::clamp(static_cast<int>(std::lround(e.x / h)), 1, 4096);
    c.ry = std::clamp(static_cast<int>(std::lround(e.y / h)), 1, 4096);
    c.rz = std::clamp(static_cast<int>(std::lround(e.z / h)), 1, 4096);
    c.levels = levels;
    return c;
  }
};

/// Multi-level occupancy bitfield (see the file comment). Satisfies `estimator`.
class occupancy_grid {
public:
  static constexpr std::string_view name = "occupancy_grid";
  struct workspace {};

  explicit occupancy_grid(const occupancy_grid_config& cfg) : cfg_(cfg) {
    cfg_.validate();
    cells_ = static_cast<std::uint64_t>(cfg_.rx) * cfg_.ry * cfg_.rz;
    const std::uint64_t total = cells_ * static_cast<std::uint64_t>(cfg_.levels);
    occ_ = array<float>({static_cast<index_t>(total)});                     // (L*cells)
    bits_.assign(static_cast<std::size_t>((total + 63) / 64), std::uint64_t{0}); // (L*cells/64)
    for (int l = 0; l < cfg_.levels; ++l) boxes_.push_back(cfg_.region.scaled(static_cast<float>(1u << l)));
  }

  const occupancy_grid_config& config() const noexcept { return cfg_; }
  std::uint64_t cells_per_level() const noexcept { return cells_; }
  const aabb& level_box(int l) const noexcept { return boxes_[static_cast<std::size_t>(l)]; }
  /// Bytes of the bitfield (what marching reads): one bit per cell.
  std::size_t memory_bytes() const noexcept { return bits_.size() * sizeof(std::uint64_t); }
  /// Bytes nerfacc holds for the same grid: a float and a bool per cell.
  std::size_t nerfacc_bytes() const noexcept { return static_cast<std::size_t>(cells_ * cfg_.levels * 5); }
  /// Bytes of the update state kept here (the float occ per cell).
  std::size_t update_bytes() const noexcept { return occ_.bytes(); }
  /// The threshold of the last update.
  float threshold() const noexcept { return threshold_; }
  workspace make_workspace() const noexcept { return {}; }

  /// occ of cell (i,j,k) of level l, and its bit.
  float value(int l, int i, int j, int k) const noexcept { return occ_[static_cast<index_t>(index(l, i, j, k))]; }
  bool bit(int l, int i, int j, int k) const noexcept { return test(index(l, i, j, k)); }
  /// Number of set bits.
  std::uint64_t occupied_cells() const noexcept {
    std::uint64_t n = 0;
    for (auto w : bits_) n += static_cast<std::uint64_t>(std::popcount(w));
    return n;
  }

  /// Sets one cell's value (e.g. -1 to mark it never occupied, as nerfacc's invisible cells) and
  /// re-derives the bits with the current threshold rule. @throws config_error for a bad cell.
  void set_value(int l, int i, int j, int k, float v) {
    MEMBOUND_EXPECTS(l >= 0 && l < cfg_.levels && i >= 0 && i < cfg_.rx && j >= 0 && j < cfg_.ry && k >= 0 && k < cfg_.rz,
                     config_error, "occupancy_grid::set_value: cell (", l, ",", i, ",", j, ",", k, ") is outside the grid");
    MEMBOUND_EXPECTS(std::isfinite(v), config_error, "occupancy_grid::set_value: value ", v, " is not finite");
    occ_[static_cast<index_t>(index(l, i, j, k))] = v;
    binarize();
  }

  /// One update step (see the file comment). `step_size` converts density to optical thickness
  /// (nerfacc's occ_eval_fn = density * render_step_size). O(selected cells) field queries, made
  /// in batches of 4096 points, in parallel (OpenMP) over batches; the point of the q-th selected
  /// cell is drawn from a counter-based generator keyed by (seed, step, q), so the result does not
  /// depend on the thread count.
  /// @throws config_error for a negative step number or a non-positive step size.
  template <density_field F>
  void update(index_t step, const F& field, float step_size) {
    MEMBOUND_EXPECTS(step >= 0, config_error, "occupancy_grid::update: step ", step, ", expected >= 0");
    MEMBOUND_EXPECTS(std::isfinite(step_size) && step_size > 0, config_error, "occupancy_grid::update: step_size ",
                     step_size, ", expected > 0");
    const std::uint64_t key = mix(static_cast<std::uint64_t>(cfg_.seed) ^ mix(static_cast<std::uint64_t>(step) + 1));
    const std::uint64_t total = cells_ * static_cast<std::uint64_t>(cfg_.levels);
    const bool warm = step < cfg_.warmup_steps;
    std::vector<std::uint64_t> sel; // post-warm-up draws (cell indices, level-major), in draw order
    if (!warm) {
      std::mt19937_64 gen(key);
      for (int l = 0; l < cfg_.levels; ++l) {
        const std::uint64_t base = cells_ * static_cast<std::uint64_t>(l);
        const std::uint64_t quarter = std::max<std::uint64_t>(1, cells_ / 4);
        std::uniform_int_distribution<std::uint64_t> any(0, cells_ - 1);
        for (std::uint64_t q = 0; q < quarter; ++q) sel.push_back(base + any(gen));
        std::vector<std::uint64_t> occupied;
        for (std::uint64_t c = 0; c < cells_; ++c)
          if (test(base + c)) occupied.push_back(base + c);
        if (!occupied.empty()) {
          std::uniform_int_distribution<std::size_t> pick(0, occupied.size() - 1);
          for (std::uint64_t q = 0; q < quarter; ++q) sel.push_back(occupied[pick(gen)]);
        }
      }
    }
    const std::uint64_t count = warm ? total : sel.size();
    auto cell_at = [&](std::uint64_t q) { return warm ? q : sel[static_cast<std::size_t>(q)]; };
    constexpr std::uint64_t batch = 4096;
    const std::int64_t batches = static_cast<std::int64_t>((count + batch - 1) / batch);
    std::vector<float> value(warm ? 0 : static_cast<std::size_t>(count)); // post-warm-up: applied in draw order
#if defined(_OPENMP)
#pragma omp parallel
#endif
    {
      array<float> x({static_cast<index_t>(batch), 3}); // (N,3)
      array<float> sigma({static_cast<index_t>(batch)}); // (N)
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (std::int64_t b = 0; b < batches; ++b) {
        const std::uint64_t q0 = static_cast<std::uint64_t>(b) * batch, n = std::min(batch, count - q0);
        if (warm) { // cells q0.. in order: decode once, then step (i, j, k, l) without divisions
          std::uint64_t c = q0;
          const int l0 = static_cast<int>(c / cells_);
          std::uint64_t rem = c % cells_;
          int cl = l0, ci = static_cast<int>(rem % static_cast<std::uint64_t>(cfg_.rx));
          rem /= static_cast<std::uint64_t>(cfg_.rx);
          int cj = static_cast<int>(rem % static_cast<std::uint64_t>(cfg_.ry)), ck = static_cast<int>(rem / static_cast<std::uint64_t>(cfg_.ry));
          for (std::uint64_t i = 0; i < n; ++i) {
            const std::uint64_t r = mix(key + 0x9e3779b97f4a7c15ull * (q0 + i + 1));
            const vec3 p = cell_point(cl, ci, cj, ck, unit(r), unit(r >> 21), unit(r >> 42));
            x.data()[3 * i] = p.x, x.data()[3 * i + 1] = p.y, x.data()[3 * i + 2] = p.z;
            if (++ci == cfg_.rx) {
              ci = 0;
              if (++cj == cfg_.ry) {
                cj = 0;
                if (++ck == cfg_.rz) ck = 0, ++cl;
              }
            }
          }
        } else {
          for (std::uint64_t i = 0; i < n; ++i) {
            const std::uint64_t q = q0 + i;
            const std::uint64_t r = mix(key + 0x9e3779b97f4a7c15ull * (q + 1));
            const vec3 p = cell_point(cell_at(q), unit(r), unit(r >> 21), unit(r >> 42));
            x.data()[3 * i] = p.x, x.data()[3 * i + 1] = p.y, x.data()[3 * i + 2] = p.z;
          }
        }
        field.density(x.cview().slice(0, 0, static_cast<index_t>(n)), sigma.view().slice(0, 0, static_cast<index_t>(n)));
        for (std::uint64_t i = 0; i < n; ++i) {
          const float v = sigma.data()[i] * step_size;
          if (warm) {
            float& o = occ_.data()[q0 + i];
            if (o >= 0) o = std::max(cfg_.decay * o, v);
          } else {
            value[static_cast<std::size_t>(q0 + i)] = v;
          }
        }
      }
    }
    for (std::uint64_t q = 0; q < (warm ? 0 : count); ++q) {
      float& o = occ_.data()[sel[static_cast<std::size_t>(q)]];
      if (o >= 0) o = std::max(cfg_.decay * o, value[static_cast<std::size_t>(q)]);
    }
    binarize();
  }

  /// Runs `steps` updates (steps 0..steps-1): how a grid is built for a known, static field.
  template <density_field F>
  void build(const F& field, float step_size, index_t steps) {
    for (index_t s = 0; s < steps; ++s) update(s, field, step_size);
  }

  /// Whether the point lies in an occupied cell of the finest level containing it (false outside
  /// every level).
  bool occupied_at(vec3 p) const noexcept {
    for (int l = 0; l < cfg_.levels; ++l) {
      const aabb& b = boxes_[static_cast<std::size_t>(l)];
      if (!b.contains(p)) continue;
      int c[3];
      cell_of(l, p, c);
      return test(index(l, c[0], c[1], c[2]));
    }
    return false;
  }

  /// Walks the cells the ray crosses in [t0, t1): fn(level, i, j, k, occupied, t_enter, t_exit)
  /// for each, in order (see the file comment).
  template <class Fn>
  void traverse(const ray& r, float t0, float t1, Fn&& fn) const {
    if (!(t1 > t0)) return;
    // Break points: where the ray enters or leaves each level box.
    float cuts[2 * 16 + 2];
    int nc = 0;
    cuts[nc++] = t0;
    for (int l = 0; l < cfg_.levels; ++l) {
      const interval iv = clip(r, boxes_[static_cast<std::size_t>(l)], t0, t1);
      if (!iv.hit) continue;
      cuts[nc++] = iv.t0;
      cuts[nc++] = iv.t1;
    }
    cuts[nc++] = t1;
    std::sort(cuts, cuts + nc);
    for (int s = 0; s + 1 < nc; ++s) {
      const float a = cuts[s], b = cuts[s + 1];
      if (!(b > a)) continue;
      const vec3 mid = r.at(0.5f * (a + b));
      for (int l = 0; l < cfg_.levels; ++l)
        if (boxes_[static_cast<std::size_t>(l)].contains(mid)) {
          walk(l, r, a, b, fn);
          break;
        }
    }
  }

  /// The estimator entry: occupied runs of cells in [t0, t1), merged.
  void occupied(const ray& r, float t0, float t1, workspace&, std::vector<span_t>& out) const {
    traverse(r, t0, t1, [&](int, int, int, int, bool occ, float a, float b) {
      if (!occ) return;
      if (!out.empty() && out.back().t1 >= a) out.back().t1 = std::max(out.back().t1, b);
      else out.push_back({a, b});
    });
  }

private:
  std::uint64_t index(int l, int i, int j, int k) const noexcept {
    return cells_ * static_cast<std::uint64_t>(l) + static_cast<std::uint64_t>(i) +
           static_cast<std::uint64_t>(cfg_.rx) * (static_cast<std::uint64_t>(j) + static_cast<std::uint64_t>(cfg_.ry) * k);
  }
  bool test(std::uint64_t c) const noexcept { return (bits_[c >> 6] >> (c & 63)) & 1u; }

  static std::uint64_t mix(std::uint64_t z) noexcept { // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static float unit(std::uint64_t r) noexcept { // 21 random bits -> [0, 1)
    return static_cast<float>(r & 0x1fffffu) * 0x1p-21f;
  }

  // threshold = min(mean of occ >= 0, occ_threshold), bit = occ > threshold. The mean is summed in
  // fixed blocks of 64 cells in order (the same double for any thread count).
  void binarize() {
    const float* o = occ_.data();
    const std::int64_t words = static_cast<std::int64_t>(bits_.size());
    const std::uint64_t total = cells_ * static_cast<std::uint64_t>(cfg_.levels);
    std::vector<double> part(static_cast<std::size_t>(words));
    std::vector<std::uint64_t> cnt(static_cast<std::size_t>(words));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (std::int64_t w = 0; w < words; ++w) {
      double sum = 0;
      std::uint64_t n = 0;
      const std::uint64_t c1 = std::min(total, static_cast<std::uint64_t>(w + 1) * 64);
      for (std::uint64_t c = static_cast<std::uint64_t>(w) * 64; c < c1; ++c)
        if (o[c] >= 0) sum += o[c], ++n;
      part[static_cast<std::size_t>(w)] = sum;
      cnt[static_cast<std::size_t>(w)] = n;
    }
    double sum = 0;
    std::uint64_t n = 0;
    for (std::size_t w = 0; w < part.size(); ++w) sum += part[w], n += cnt[w];
    const float mean = n ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
    threshold_ = std::min(mean, cfg_.occ_threshold);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (std::int64_t w = 0; w < words; ++w) {
      std::uint64_t bits = 0;
      const std::uint64_t c0 = static_cast<std::uint64_t>(w) * 64, c1 = std::min(total, c0 + 64);
      for (std::uint64_t c = c0; c < c1; ++c)
        if (o[c] > threshold_) bits |= std::uint64_t{1} << (c - c0);
      bits_[static_cast<std::size_t>(w)] = bits;
    }
  }

  vec3 cell_point(std::uint64_t c, float u, float v, float w) const noexcept {
    const int l = static_cast<int>(c / cells_);
    const std::uint64_t r = c % cells_;
    const int i = static_cast<int>(r % static_cast<std::uint64_t>(cfg_.rx));
    const int j = static_cast<int>((r / static_cast<std::uint64_t>(cfg_.rx)) % static_cast<std::uint64_t>(cfg_.ry));
    const int k = static_cast<int>(r / (static_cast<std::uint64_t>(cfg_.rx) * cfg_.ry));
    return cell_point(l, i, j, k, u, v, w);
  }
  vec3 cell_point(int l, int i, int j, int k, float u, float v, float w) const noexcept {
    const aabb& b = boxes_[static_cast<std::size_t>(l)];
    const vec3 e = b.size();
    return {b.lo.x + (static_cast<float>(i) + u) * e.x / static_cast<float>(cfg_.rx),
            b.lo.y + (static_cast<float>(j) + v) * e.y / static_cast<float>(cfg_.ry),
            b.lo.z + (static_cast<float>(k) + w) * e.z / static_cast<float>(cfg_.rz)};
  }

  int res(int a) const noexcept { return a == 0 ? cfg_.rx : (a == 1 ? cfg_.ry : cfg_.rz); }

  void cell_of(int l, vec3 p, int* c) const noexcept {
    const aabb& b = boxes_[static_cast<std::size_t>(l)];
    for (int a = 0; a < 3; ++a) {
      const float f = (p[a] - b.lo[a]) / (b.hi[a] - b.lo[a]) * static_cast<float>(res(a));
      c[a] = std::clamp(static_cast<int>(std::floor(f)), 0, res(a) - 1);
    }
  }

  // 3-D DDA over level l for t in [a, b) (the piece lies inside the level box). Cell boundaries
  // are recomputed from integer indices at every step (no accumulated increments).
  template <class Fn>
  void walk(int l, const ray& r, float a, float b, Fn& fn) const {
    const aabb& box = boxes_[static_cast<std::size_t>(l)];
    // The cell of the start point. If rounding put it one cell behind (a start on a boundary),
    // that cell's exit lies at or before a: the loop emits nothing for it and moves on.
    int c[3];
    cell_of(l, r.at(a), c);
    int step[3];
    float h[3];
    for (int ax = 0; ax < 3; ++ax) {
      h[ax] = (box.hi[ax] - box.lo[ax]) / static_cast<float>(res(ax));
      step[ax] = r.d[ax] > 0 ? 1 : (r.d[ax] < 0 ? -1 : 0);
    }
    auto boundary = [&](int ax) {
      if (step[ax] == 0) return std::numeric_limits<float>::infinity();
      const int edge = step[ax] > 0 ? c[ax] + 1 : c[ax];
      const float x = edge == res(ax) ? box.hi[ax] : box.lo[ax] + static_cast<float>(edge) * h[ax];
      return (x - r.o[ax]) * r.inv_d[ax];
    };
    float bs[3] = {boundary(0), boundary(1), boundary(2)};
    std::uint64_t lin = index(l, c[0], c[1], c[2]);
    const std::int64_t dl[3] = {step[0], step[1] * static_cast<std::int64_t>(cfg_.rx),
                                step[2] * static_cast<std::int64_t>(cfg_.rx) * cfg_.ry};
    float t = a;
    for (;;) {
      const float tn = std::min(bs[0], std::min(bs[1], bs[2]));
      const float te = std::min(tn, b);
      if (te > t) fn(l, c[0], c[1], c[2], test(lin), t, te);
      if (tn >= b) return;
      t = std::max(t, tn);
      // Advance every axis whose boundary is reached at tn (corners: several at once); only
      // those axes' boundaries are recomputed.
      for (int ax = 0; ax < 3; ++ax)
        if (bs[ax] <= tn) {
          c[ax] += step[ax];
          if (c[ax] < 0 || c[ax] >= res(ax)) return;
          lin = static_cast<std::uint64_t>(static_cast<std::int64_t>(lin) + dl[ax]);
          bs[ax] = boundary(ax);
        }
    }
  }

  occupancy_grid_config cfg_;
  std::uint64_t cells_ = 0;
  array<float> occ_;
  std::vector<std::uint64_t> bits_;
  std::vector<aabb> boxes_;
  float threshold_ = 0;
};
static_assert(estimator<occupancy_grid>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
