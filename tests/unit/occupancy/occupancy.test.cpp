// SPDX-License-Identifier: MIT
// Tests for occupancy/: ray-box clipping edge cases, the fields, the occupancy grid's update rule
// against hand-computed cell values, DDA against a brute-force cell list, the marcher against
// closed-form volume rendering, every estimator against `dense`, thread-count independence and
// typed errors for bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/occupancy/occupancy.hpp"

using namespace membound;
using namespace membound::occupancy;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();

// The learned estimator without its batched entry: the marcher asks it ray by ray.
struct per_ray {
  const learned_occupancy* l;
  static constexpr std::string_view name = "per_ray";
  using workspace = learned_occupancy::workspace;
  workspace make_workspace() const { return l->make_workspace(); }
  void occupied(const ray& r, float t0, float t1, workspace& ws, std::vector<span_t>& out) const {
    l->occupied(r, t0, t1, ws, out);
  }
  std::size_t memory_bytes() const { return l->memory_bytes(); }
};
static_assert(estimator<per_ray> && !batched_estimator<per_ray>);

array<float> rows(const std::vector<vec3>& v) {
  array<float> a({static_cast<index_t>(v.size()), 3}); // (N,3)
  for (std::size_t i = 0; i < v.size(); ++i) {
    a.data()[3 * i] = v[i].x, a.data()[3 * i + 1] = v[i].y, a.data()[3 * i + 2] = v[i].z;
  }
  return a;
}

// Random rays aimed at points inside `box` from points around it (some from inside).
void random_rays(const aabb& box, int n, std::uint32_t seed, array<float>& o, array<float>& d) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<vec3> os, ds;
  const vec3 e = box.size();
  for (int i = 0; i < n; ++i) {
    const float s = i % 4 == 0 ? 1.0f : 3.0f; // a quarter start inside the box
    const vec3 c = box.center();
    const vec3 from = c + vec3{(u(g) - 0.5f) * s * e.x, (u(g) - 0.5f) * s * e.y, (u(g) - 0.5f) * s * e.z};
    const vec3 to = box.lo + vec3{u(g) * e.x, u(g) * e.y, u(g) * e.z};
    os.push_back(from);
    ds.push_back(to - from);
  }
  o = rows(os);
  d = rows(ds);
}

// Grid with exact hand-checkable contents: a field, a step size, warm-up updates.
template <class F>
occupancy_grid built_grid(const F& f, occupancy_grid_config c, float step, int updates) {
  occupancy_grid g(c);
  g.build(f, step, updates);
  return g;
}

} // namespace

TEST_CASE("clip: rays along an axis, grazing a face, starting inside, missing, behind") {
  const aabb b{{0, 0, 0}, {1, 2, 3}};
  SUBCASE("along +x through the box, inside the y and z slabs") {
    const interval iv = clip(make_ray({-1, 1, 1}, {1, 0, 0}), b);
    REQUIRE(iv.hit);
    CHECK(iv.t0 == 1.0f);
    CHECK(iv.t1 == 2.0f);
  }
  SUBCASE("along +x outside the y slab misses (no 0 * inf NaN)") {
    CHECK_FALSE(clip(make_ray({-1, 2.5f, 1}, {1, 0, 0}), b).hit);
    CHECK_FALSE(clip(make_ray({-1, -0.5f, 1}, {-1, 0, 0}), b).hit);
  }
  SUBCASE("grazing a face: moving within the plane y = 2 (closed box)") {
    const interval iv = clip(make_ray({-1, 2, 1}, {1, 0, 0}), b);
    REQUIRE(iv.hit);
    CHECK(iv.t0 == 1.0f);
    CHECK(iv.t1 == 2.0f);
  }
  SUBCASE("touching only an edge gives a zero-length interval") {
    const interval edge = clip(make_ray({-1, 1, 3}, {1, 0, 1}), aabb{{0, 0, 0}, {1, 2, 4}});
    REQUIRE(edge.hit); // enters at the edge x = 0, z = 4 and leaves at once
    CHECK(edge.t1 - edge.t0 == doctest::Approx(0.0).epsilon(1e-6));
  }
  SUBCASE("starting inside returns t_min") {
    const interval iv = clip(make_ray({0.5f, 1, 1}, {0, 0, 1}), b, 0.25f);
    REQUIRE(iv.hit);
    CHECK(iv.t0 == 0.25f);
    CHECK(iv.t1 == 2.0f);
  }
  SUBCASE("the box behind the ray, or beyond t_max, is missed") {
    CHECK_FALSE(clip(make_ray({2, 1, 1}, {1, 0, 0}), b).hit);
    CHECK_FALSE(clip(make_ray({-5, 1, 1}, {1, 0, 0}), b, 0, 4.0f).hit);
  }
  SUBCASE("a diagonal ray: hand-computed entry and exit") {
    const interval iv = clip(make_ray({-1, -1, -1}, {1, 1, 1}), b);
    REQUIRE(iv.hit);
    CHECK(iv.t0 == doctest::Approx(std::sqrt(3.0)));
    CHECK(iv.t1 == doctest::Approx(2 * std::sqrt(3.0)));
  }
}

TEST_CASE("bad geometry gives typed errors") {
  CHECK_THROWS_AS(make_ray({0, 0, 0}, {0, 0, 0}), config_error);
  CHECK_THROWS_AS(make_ray({0, 0, 0}, {std::nanf(""), 1, 0}), config_error);
  CHECK_THROWS_AS(make_ray({inf, 0, 0}, {1, 0, 0}), config_error);
  CHECK_THROWS_AS(check_aabb({{0, 0, 0}, {0, 1, 1}}, "t"), config_error);  // empty
  CHECK_THROWS_AS(check_aabb({{0, 2, 0}, {1, 1, 1}}, "t"), config_error);  // inverted
  CHECK_THROWS_AS(analytic_field(aabb{{1, 1, 1}, {0, 0, 0}}, {}), config_error);
  occupancy_grid_config c;
  c.region = {{0, 0, 0}, {1, 1, -1}};
  CHECK_THROWS_AS(occupancy_grid{c}, config_error);
  c.region = {{0, 0, 0}, {1, 1, 1}};
  c.rx = 0;
  CHECK_THROWS_AS(occupancy_grid{c}, config_error);
  CHECK_THROWS_AS(pinhole_camera::look_at(8, 8, 60, {0, 0, 0}, {0, 0, 0}), config_error);
  CHECK_THROWS_AS(pinhole_camera::look_at(8, 8, 60, {0, 0, 0}, {0, 0, 1}), config_error); // up parallel
}

TEST_CASE("march: closed-form opacity and depth through a homogeneous slab") {
  // Slab x in [1, 3] of sigma 0.7 inside a box [0,4]^3; ray along +x from x = 0.
  const analytic_field f({{0, 0, 0}, {4, 4, 4}}, {primitive::make_box({1, 0, 0}, {3, 4, 4}, 0.7f, {1, 0.5f, 0.25f})});
  const array<float> o = rows({{0, 2, 2}}), d = rows({{2, 0, 0}}); // direction not unit: normalised
  march_settings s;
  s.step = 0.25f;
  s.early_stop = 0;
  const render_result r = march(f, dense{}, o.cview(), d.cview(), s);
  // 8 steps of 0.25 inside the slab: T = exp(-0.7 * 2).
  const double T = std::exp(-1.4);
  CHECK(r.opacity[0] == doctest::Approx(1 - T).epsilon(1e-5));
  // depth = sum w_k t_k with t_k = 1.125 + 0.25 k, w_k = exp(-0.175 k)(1 - exp(-0.175))
  double depth = 0;
  for (int k = 0; k < 8; ++k) depth += std::exp(-0.175 * k) * (1 - std::exp(-0.175)) * (1.125 + 0.25 * k);
  CHECK(r.depth[0] == doctest::Approx(depth).epsilon(1e-5));
  CHECK(r.rgb[0] == doctest::Approx(1 - T).epsilon(1e-5));
  CHECK(r.rgb[1] == doctest::Approx(0.5 * (1 - T)).epsilon(1e-5));
  CHECK(r.samples[0] == 16); // every step of the box: [0,4) in 0.25 steps
  // Early termination: a dense slab stops the ray within a batch.
  const analytic_field wall({{0, 0, 0}, {4, 4, 4}}, {primitive::make_box({1, 0, 0}, {3, 4, 4}, 100.0f, {1, 1, 1})});
  s.early_stop = 1e-4f;
  s.batch = 1;
  const render_result w = march(wall, dense{}, o.cview(), d.cview(), s);
  CHECK(w.opacity[0] > 1 - 1e-4f);
  CHECK(w.samples[0] == 5); // 4 empty steps, then one step with alpha = 1 - e^-25
}

TEST_CASE("an all-empty field gives zero opacity, and a grid of it zero samples") {
  const empty_field f{{{0, 0, 0}, {2, 2, 2}}};
  array<float> o, d;
  random_rays(f.bounds(), 50, 3, o, d);
  march_settings s;
  s.step = 0.01f;
  const render_result r0 = march(f, dense{}, o.cview(), d.cview(), s);
  for (index_t i = 0; i < r0.rays(); ++i) CHECK(r0.opacity[i] == 0.0f);
  CHECK(r0.samples_per_ray() > 10);
  occupancy_grid_config c;
  c.region = f.bounds();
  c.rx = c.ry = c.rz = 16;
  const occupancy_grid g = built_grid(f, c, s.step, 4);
  CHECK(g.occupied_cells() == 0);
  const render_result r1 = march(f, g, o.cview(), d.cview(), s);
  CHECK(r1.samples_per_ray() == 0.0);
}

TEST_CASE("occupancy grid: update rule and threshold against hand-computed cell values") {
  // Unit cube, 4^3 cells; the box x < 0.5 (cells i = 0, 1) has sigma 5 and no shell, so every
  // point of those cells evaluates to 5 whatever the jitter.
  const aabb unit{{0, 0, 0}, {1, 1, 1}};
  const analytic_field half(unit, {primitive::make_box({0, 0, 0}, {0.5f, 1, 1}, 5.0f, {1, 1, 1})});
  const empty_field none{unit};
  occupancy_grid_config c;
  c.region = unit;
  c.rx = c.ry = c.rz = 4;
  c.warmup_steps = 1000;
  occupancy_grid g(c);
  const float dt = 0.01f;
  g.update(0, half, dt); // warm-up: every cell once
  CHECK(g.value(0, 0, 2, 3) == doctest::Approx(0.05));
  CHECK(g.value(0, 1, 0, 0) == doctest::Approx(0.05));
  CHECK(g.value(0, 2, 1, 1) == 0.0f);
  // mean = 0.025 over all cells, so the threshold is min(0.025, 0.01) = 0.01.
  CHECK(g.threshold() == doctest::Approx(0.01));
  CHECK(g.occupied_cells() == 32);
  CHECK(g.bit(0, 1, 3, 3));
  CHECK_FALSE(g.bit(0, 3, 3, 3));
  // A cell marked -1 (never occupied) keeps its value.
  g.set_value(0, 0, 0, 0, -1.0f);
  CHECK_FALSE(g.bit(0, 0, 0, 0));
  // 40 updates with an empty field: occ = 0.05 * 0.95^k (max with 0); the threshold follows the
  // mean of the non-negative cells (31 cells of 0.05 * 0.95^k over 63), so the bits stay set.
  for (int k = 1; k <= 40; ++k) g.update(k, none, dt);
  const double v = 0.05 * std::pow(0.95, 40);
  CHECK(g.value(0, 1, 2, 2) == doctest::Approx(v).epsilon(1e-4));
  CHECK(g.value(0, 0, 0, 0) == -1.0f);
  CHECK(g.threshold() == doctest::Approx(v * 31.0 / 63.0).epsilon(1e-4));
  CHECK(g.occupied_cells() == 31);
  // After warm-up an update refreshes at most cells/4 uniform cells plus cells/4 occupied ones.
  occupancy_grid_config c2 = c;
  c2.warmup_steps = 1;
  occupancy_grid g2(c2);
  g2.update(0, none, dt); // warm-up, all zero, no occupied cells
  const analytic_field full(unit, {primitive::make_box({0, 0, 0}, {1, 1, 1}, 1.0f, {1, 1, 1})});
  g2.update(1, full, dt); // 16 uniform draws (with repetition), no occupied cells to draw from
  int changed = 0;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 4; ++i) changed += g2.value(0, i, j, k) > 0;
  CHECK(changed >= 1);
  CHECK(changed <= 16);
  // The same seed and step give the same cells.
  occupancy_grid g3(c2);
  g3.update(0, none, dt);
  g3.update(1, full, dt);
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 4; ++i) CHECK(g3.value(0, i, j, k) == g2.value(0, i, j, k));
}

TEST_CASE("DDA visits exactly the cells a brute-force clip of every cell finds") {
  occupancy_grid_config c;
  c.region = {{-1, 0, 2}, {2, 1, 4}};
  c.rx = 7, c.ry = 5, c.rz = 6;
  const occupancy_grid g(c);
  array<float> o, d;
  random_rays(c.region, 300, 11, o, d);
  const vec3 e = c.region.size();
  const float h = std::min({e.x / 7, e.y / 5, e.z / 6});
  const float tol = 1e-4f * h;
  int checked = 0;
  for (index_t q = 0; q < o.extent(0); ++q) {
    ray r = make_ray({o.data()[3 * q], o.data()[3 * q + 1], o.data()[3 * q + 2]},
                     {d.data()[3 * q], d.data()[3 * q + 1], d.data()[3 * q + 2]});
    if (q % 10 == 1) r = make_ray(r.o, {0, 0, 1});    // along an axis
    if (q % 10 == 2) r = make_ray(r.o, {1, -1, 0});   // in a plane
    const interval iv = clip(r, c.region);
    if (!iv.hit) continue;
    std::set<std::tuple<int, int, int>> brute, walked;
    for (int k = 0; k < 6; ++k)
      for (int j = 0; j < 5; ++j)
        for (int i = 0; i < 7; ++i) {
          const aabb cell{c.region.lo + vec3{i * e.x / 7, j * e.y / 5, k * e.z / 6},
                          c.region.lo + vec3{(i + 1) * e.x / 7, (j + 1) * e.y / 5, (k + 1) * e.z / 6}};
          const interval ci = clip(r, cell, iv.t0, iv.t1);
          if (ci.hit && ci.t1 - ci.t0 > tol) brute.insert({i, j, k});
        }
    float last = iv.t0, total = 0;
    bool ordered = true;
    g.traverse(r, iv.t0, iv.t1, [&](int, int i, int j, int k, bool, float a, float b) {
      ordered = ordered && a >= last - tol && b >= a;
      last = b;
      total += b - a;
      if (b - a > tol) walked.insert({i, j, k});
    });
    CHECK(ordered);
    CHECK(total == doctest::Approx(iv.t1 - iv.t0).epsilon(1e-4));
    // Cells crossed for less than tol may appear on one side only.
    for (const auto& cell : brute) CHECK(walked.count(cell) == 1);
    for (const auto& cell : walked) CHECK(brute.count(cell) == 1);
    ++checked;
  }
  CHECK(checked > 100);
}

TEST_CASE("multi-level grid: each piece is walked in the finest level containing it") {
  occupancy_grid_config c;
  c.region = {{0, 0, 0}, {1, 1, 1}};
  c.rx = c.ry = c.rz = 8;
  c.levels = 3;
  const occupancy_grid g(c);
  array<float> o, d;
  random_rays(g.level_box(2), 100, 5, o, d);
  for (index_t q = 0; q < o.extent(0); ++q) {
    const ray r = make_ray({o.data()[3 * q], o.data()[3 * q + 1], o.data()[3 * q + 2]},
                           {d.data()[3 * q], d.data()[3 * q + 1], d.data()[3 * q + 2]});
    const interval iv = clip(r, g.level_box(2));
    if (!iv.hit) continue;
    float total = 0;
    bool finest = true;
    g.traverse(r, iv.t0, iv.t1, [&](int l, int, int, int, bool, float a, float b) {
      total += b - a;
      const vec3 m = r.at(0.5f * (a + b));
      for (int f = 0; f < l; ++f) finest = finest && !g.level_box(f).contains(m);
      finest = finest && g.level_box(l).contains(m);
    });
    CHECK(finest);
    CHECK(total == doctest::Approx(iv.t1 - iv.t0).epsilon(1e-4));
  }
}

TEST_CASE("estimators render what dense renders on analytic scenes") {
  march_settings s;
  s.step = 1.0f / 128;
  SUBCASE("boxes on cell boundaries: the grid is exact, bit for bit, with fewer samples") {
    const aabb box{{0, 0, 0}, {2, 2, 2}};
    const analytic_field f(box, {primitive::make_box({0.5f, 0.25f, 0}, {1.0f, 1.5f, 0.75f}, 8.0f, {1, 0, 0}),
                                 primitive::make_box({1.25f, 1.0f, 1.0f}, {1.75f, 1.25f, 2.0f}, 2.0f, {0, 1, 0})});
    occupancy_grid_config c;
    c.region = box;
    c.rx = c.ry = c.rz = 16; // cells of 1/8: every face lies on a cell boundary
    const occupancy_grid g = built_grid(f, c, s.step, 1);
    array<float> o, d;
    random_rays(box, 400, 7, o, d);
    const render_result rd = march(f, dense{}, o.cview(), d.cview(), s);
    const render_result rg = march(f, g, o.cview(), d.cview(), s);
    int hits = 0;
    for (index_t i = 0; i < rd.rays(); ++i) {
      CHECK(rg.opacity[i] == rd.opacity[i]);
      CHECK(rg.depth[i] == rd.depth[i]);
      CHECK(rg.rgb[3 * i] == rd.rgb[3 * i]);
      hits += rd.opacity[i] > 0.01f;
    }
    CHECK(hits > 40);
    CHECK(rg.samples_per_ray() < 0.5 * rd.samples_per_ray());
  }
  SUBCASE("spheres and capsules with a soft shell: within 1e-3 mean, recall >= 0.99") {
    // Cells that a surface only clips are occupied by a sliver; 16 updates of one random point
    // each can miss it (nerfacc's rule), so the grid is not exact here: 0.994 measured.
    const aabb box{{-1, -1, -1}, {1, 1, 1}};
    const analytic_field f(box,
                           {primitive::make_sphere({0.2f, -0.1f, 0}, 0.4f, 6.0f, {1, 1, 0}),
                            primitive::make_capsule({-0.8f, 0.6f, -0.5f}, {0.7f, 0.5f, 0.6f}, 0.05f, 20.0f, {0, 0, 1})},
                           0.02f);
    occupancy_grid_config c;
    c.region = box;
    c.rx = c.ry = c.rz = 32;
    const occupancy_grid g = built_grid(f, c, s.step, 16);
    array<float> o, d;
    random_rays(box, 400, 9, o, d);
    sample_trace td, tg;
    const render_result rd = march(f, dense{}, o.cview(), d.cview(), s, &td);
    const render_result rg = march(f, g, o.cview(), d.cview(), s, &tg);
    double err = 0;
    for (index_t i = 0; i < rd.rays(); ++i) err += std::abs(rg.opacity[i] - rd.opacity[i]);
    CHECK(err / static_cast<double>(rd.rays()) < 1e-3);
    index_t kept = 0, total = 0;
    CHECK(weight_recall(td, tg, &kept, &total) >= 0.99);
    CHECK(total > 1000);
    CHECK(rg.samples_per_ray() < 0.3 * rd.samples_per_ray());
  }
}

TEST_CASE("cone stepping: grid samples are a subset of dense's lattice, opacity equal on aligned boxes") {
  const aabb box{{0, 0, 0}, {8, 8, 8}};
  const analytic_field f(box, {primitive::make_box({2, 2, 0}, {4, 6, 3}, 3.0f, {1, 1, 1})});
  occupancy_grid_config c;
  c.region = box;
  c.rx = c.ry = c.rz = 8;
  const occupancy_grid g = built_grid(f, c, 0.01f, 1);
  march_settings s;
  s.step = 0.01f;
  s.cone_angle = 1.0f / 256;
  s.max_step = 0.5f;
  array<float> o, d;
  random_rays(box, 200, 13, o, d);
  const render_result rd = march(f, dense{}, o.cview(), d.cview(), s);
  const render_result rg = march(f, g, o.cview(), d.cview(), s);
  for (index_t i = 0; i < rd.rays(); ++i) CHECK(rg.opacity[i] == rd.opacity[i]);
  CHECK(rg.samples_per_ray() < rd.samples_per_ray());
}

TEST_CASE("march gives identical results for any thread count") {
  const city_field city(city_config{});
  const aabb b = city.bounds();
  const pinhole_camera cam =
      pinhole_camera::look_at(24, 16, 70, {b.lo.x - 20, b.lo.y - 20, 60}, {b.center().x, b.center().y, 0});
  array<float> o, d;
  cam.rays(o, d);
  occupancy_grid_config c = occupancy_grid_config::cubic_cells(b, 32.0 * 32 * 32);
  const occupancy_grid g = built_grid(city, c, 0.1f, 2);
  march_settings s;
  s.step = 0.1f;
  s.tile = 7;
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  const render_result r1 = march(city, g, o.cview(), d.cview(), s);
#if defined(_OPENMP)
  omp_set_num_threads(3);
#endif
  const render_result r3 = march(city, g, o.cview(), d.cview(), s);
#if defined(_OPENMP)
  omp_set_num_threads(saved);
#endif
  int hit = 0;
  for (index_t i = 0; i < r1.rays(); ++i) {
    CHECK(r1.opacity[i] == r3.opacity[i]);
    CHECK(r1.depth[i] == r3.depth[i]);
    CHECK(r1.samples[i] == r3.samples[i]);
    hit += r1.opacity[i] > 0.5f;
  }
  CHECK(hit > 100);
}

TEST_CASE("city: deterministic layout, ground, sky and thin structures") {
  city_config cfg;
  const city_field a(cfg), b(cfg);
  CHECK(a.primitives().size() == b.primitives().size());
  CHECK(a.building_count() > 50);
  CHECK(a.pole_count() > 50);
  cfg.scale = 4;
  const city_field big(cfg);
  CHECK(big.bounds().size().x == doctest::Approx(2 * a.bounds().size().x - cfg.street).epsilon(0.02));
  CHECK(big.building_count() > 3 * a.building_count());
  CHECK(a.at({5, 5, -0.5f}) == cfg.sigma_solid);  // inside the ground
  CHECK(a.at({5, 5, 90.0f}) == 0.0f);             // sky
  CHECK(a.at({-5, 5, 1}) == 0.0f);                // outside the bounds
  // A pole at x = 2, y = 1 (first row): solid on its axis.
  CHECK(a.at({2, 1, 4}) == cfg.sigma_solid);
  CHECK(a.at({2.5f, 1, 4}) == 0.0f);
  // A wire between the first two poles, 0.5 m below their tops.
  CHECK(a.at({12, 1, cfg.pole_height - 0.5f}) > 0.5f * cfg.sigma_solid);
  CHECK(a.at({12, 1, cfg.pole_height}) == 0.0f);
  CHECK_THROWS_AS(city_field(city_config{.scale = 0}), config_error);
}

TEST_CASE("voxel_field: bake, save, load, trilinear sampling and malformed files") {
  const aabb box{{0, 0, 0}, {1, 2, 1}};
  const analytic_field f(box, {primitive::make_box({0, 0, 0}, {0.5f, 2, 1}, 4.0f, {0.5f, 0.25f, 1})});
  const voxel_field v = voxel_field::bake(f, box, 4, 8, 2);
  const auto bytes = v.to_bytes();
  const voxel_field w = voxel_field::from_bytes(bytes);
  CHECK(w.resolution(0) == 4);
  CHECK(w.resolution(1) == 8);
  CHECK(w.has_color());
  // Voxel centres x = 0.125, 0.375 (inside: 4) and 0.625, 0.875 (outside: 0); trilinear between
  // 0.375 and 0.625 at x = 0.45: 4 * (1 - 0.3).
  const array<float> x = rows({{0.45f, 1, 0.5f}, {0.1f, 0.3f, 0.2f}, {0.95f, 1.9f, 0.9f}, {2, 1, 0.5f}});
  array<float> sg({4}), rgb({4, 3});
  w.density_color(x.cview(), sg.view(), rgb.view());
  CHECK(sg[0] == doctest::Approx(4 * 0.7));
  CHECK(sg[1] == doctest::Approx(4.0));
  CHECK(sg[2] == doctest::Approx(0.0));
  CHECK(sg[3] == 0.0f); // outside
  CHECK(rgb[3] == doctest::Approx(0.5));  // the box's colour at full weight
  CHECK(rgb[4] == doctest::Approx(0.25));
  // A header whose resolution does not match the tensor's shape.
  io::safetensors_writer bad;
  bad.add("density", array<float>({4, 8, 3}));
  bad.set_metadata("format", "membound.voxel_field");
  bad.set_metadata("resolution", "4 8 2");
  bad.set_metadata("aabb", "0 0 0 1 2 1");
  CHECK_THROWS_AS(voxel_field::from_bytes(bad.to_bytes()), format_error);
  io::safetensors_writer inverted;
  inverted.add("density", array<float>({4, 8, 2}));
  inverted.set_metadata("format", "membound.voxel_field");
  inverted.set_metadata("resolution", "4 8 2");
  inverted.set_metadata("aabb", "0 0 0 1 -2 1");
  CHECK_THROWS_AS(voxel_field::from_bytes(inverted.to_bytes()), format_error);
  io::safetensors_writer missing;
  missing.add("density", array<float>({4, 8, 2}));
  CHECK_THROWS_AS(voxel_field::from_bytes(missing.to_bytes()), format_error);
  array<float> neg({2, 2, 2});
  neg[3] = -1;
  CHECK_THROWS_AS(voxel_field(box, std::move(neg)), format_error);
}

TEST_CASE("march rejects bad rays and settings with typed errors") {
  const empty_field f{};
  const array<float> o = rows({{0, 0, 0}}), zero = rows({{0, 0, 0}}), nan = rows({{std::nanf(""), 1, 0}});
  const array<float> d = rows({{1, 0, 0}});
  march_settings s;
  CHECK_THROWS_AS(march(f, dense{}, o.cview(), zero.cview(), s), config_error);
  CHECK_THROWS_AS(march(f, dense{}, o.cview(), nan.cview(), s), config_error);
  s.step = 0;
  CHECK_THROWS_AS(march(f, dense{}, o.cview(), d.cview(), s), config_error);
  s.step = -0.1f;
  CHECK_THROWS_AS(march(f, dense{}, o.cview(), d.cview(), s), config_error);
  s.step = 0.1f;
  const array<float> two = rows({{0, 0, 0}, {0, 0, 0}});
  CHECK_THROWS_AS(march(f, dense{}, o.cview(), two.cview(), s), shape_error);
}

TEST_CASE("learned occupancy: accuracy on an analytic field, fused = GEMM path, opacity against dense") {
  const aabb box{{0, 0, 0}, {1, 1, 1}};
  const analytic_field f(box,
                         {primitive::make_sphere({0.5f, 0.55f, 0.5f}, 0.22f, 30.0f, {1, 0, 0}),
                          primitive::make_box({0, 0, 0}, {1, 1, 0.08f}, 30.0f, {0, 1, 0})},
                         0.01f);
  march_settings s;
  s.step = 1.0f / 128;
  learned_occupancy_config c;
  c.region = box;
  c.grid = {3, 6, 2, 12, 8, nn::hash_grid_growth(8, 128, 6)};
  c.hidden = {32};
  c.step_size = s.step;
  c.fine_length = 4 * s.step;
  c.factors = {4, 4};
  c.steps = 250;
  c.batch = 1024;
  c.threshold = c.coarse_threshold = 0.3f;
  learned_occupancy l(c);
  CHECK(l.heads() == 3);
  CHECK(l.fused());
  CHECK(l.parameter_count() == 6 * 4096 * 2 + (12 * 32 + 32) + (32 * 3 + 3));
  const learned_occupancy_report rep = l.train(f);
  CAPTURE(rep.fine_accuracy);
  CHECK(rep.fine_accuracy >= 0.95);
  REQUIRE(rep.recall.size() == 3);
  for (double r : rep.recall) CHECK(r >= 0.95);
  // The fused SIMD classifier and the GEMM path agree.
  array<float> o, d;
  random_rays(box, 300, 21, o, d);
  auto ws = l.make_workspace();
  array<float> pf({o.extent(0), 3}), pg({o.extent(0), 3});
  l.classify(o.cview(), pf.view(), ws);
  l.classify<backend::scalar>(o.cview(), pg.view(), ws);
  for (index_t i = 0; i < pf.size(); ++i) CHECK(pf[i] == doctest::Approx(pg[i]).epsilon(1e-5).scale(1));
  // Rendering: the learned estimator's opacity stays close to dense with far fewer samples.
  sample_trace td, tl;
  const render_result rd = march(f, dense{}, o.cview(), d.cview(), s, &td);
  const render_result rl = march(f, l, o.cview(), d.cview(), s, &tl);
  double err = 0;
  for (index_t i = 0; i < rd.rays(); ++i) err += std::abs(rl.opacity[i] - rd.opacity[i]);
  CAPTURE(err / static_cast<double>(rd.rays()));
  CHECK(err / static_cast<double>(rd.rays()) < 0.02);
  CHECK(weight_recall(td, tl) >= 0.9);
  CHECK(rl.samples_per_ray() < 0.5 * rd.samples_per_ray());
  // The wavefront (occupied_batch over a tile's live rays) renders exactly what the ray-by-ray
  // path (occupied alone) renders, for uniform and cone stepping, any window, tile and thread
  // count; a window cut at segment boundaries or not.
  struct wavefront_case {
    index_t window, tile;
    float cone;
  };
  for (const wavefront_case& wc : {wavefront_case{64, 32, 0.0f}, {37, 5, 0.0f}, {512, 64, 0.0f}, {40, 9, 0.02f}}) {
    const index_t window = wc.window;
    const float cone = wc.cone;
    march_settings sw = s;
    sw.window = window, sw.tile = wc.tile, sw.cone_angle = cone, sw.max_step = 4 * s.step;
    sample_trace ta, tb;
    const render_result a = march(f, per_ray{&l}, o.cview(), d.cview(), sw, &ta);
#if defined(_OPENMP)
    const int saved = omp_get_max_threads();
    omp_set_num_threads(3);
#endif
    const render_result b = march(f, l, o.cview(), d.cview(), sw, &tb);
#if defined(_OPENMP)
    omp_set_num_threads(saved);
#endif
    CAPTURE(window);
    CAPTURE(cone);
    index_t same = 0;
    for (index_t i = 0; i < a.rays(); ++i)
      same += a.opacity[i] == b.opacity[i] && a.depth[i] == b.depth[i] && a.samples[i] == b.samples[i] &&
              a.rgb(i, index_t{0}) == b.rgb(i, index_t{0}) && ta[static_cast<std::size_t>(i)].size() == tb[static_cast<std::size_t>(i)].size();
    CHECK(same == a.rays());
    CHECK(a.samples_per_ray() > 0);
  }
  // Bad settings.
  learned_occupancy_config bad = c;
  bad.factors = {1};
  CHECK_THROWS_AS(learned_occupancy{bad}, config_error);
  bad = c;
  bad.threshold = 1.0f;
  CHECK_THROWS_AS(learned_occupancy{bad}, config_error);
  bad = c;
  bad.region = {{0, 0, 0}, {0, 1, 1}};
  CHECK_THROWS_AS(learned_occupancy{bad}, config_error);
}
