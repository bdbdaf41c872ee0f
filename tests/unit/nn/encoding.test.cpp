// SPDX-License-Identifier: MIT
// Tests for nn/frequency_encoding.hpp and nn/hash_grid.hpp: hand-derived values, an independent
// double-precision reference of the hash grid (explicit corners, weights, dense index and hash),
// central finite differences for every backward, determinism and typed errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "membound/core/core.hpp"
#include "membound/nn/frequency_encoding.hpp"
#include "membound/nn/hash_grid.hpp"

using namespace membound;

namespace {

constexpr double pi_d = 3.14159265358979323846;

std::vector<float> uniform(std::size_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = u(g);
  return v;
}

// ---- frequency encoding: double-precision copy of the forward (layout as documented) -----------
std::vector<double> freq_ref(const std::vector<double>& x, index_t n, index_t d, int k, bool inc) {
  const index_t w = d * ((inc ? 1 : 0) + 2 * k);
  std::vector<double> y(static_cast<std::size_t>(n * w));
  for (index_t i = 0; i < n; ++i) {
    double* yr = y.data() + i * w;
    const index_t off = inc ? d : 0;
    for (index_t j = 0; j < d; ++j) {
      const double xv = x[static_cast<std::size_t>(i * d + j)];
      if (inc) yr[j] = xv;
      for (int q = 0; q < k; ++q) {
        yr[off + (j * k + q) * 2] = std::sin(std::ldexp(1.0, q) * pi_d * xv);
        yr[off + (j * k + q) * 2 + 1] = std::cos(std::ldexp(1.0, q) * pi_d * xv);
      }
    }
  }
  return y;
}

// ---- hash grid: slow, obviously-correct double-precision reference -----------------------------
struct grid_ref {
  int dims, levels, feats;
  std::uint32_t tsize;
  std::vector<std::uint32_t> res; // N_l
  std::vector<bool> dense;
  std::vector<double> table; // (L,T,F)

  grid_ref(const nn::hash_grid_config& c, const float* tab) {
    dims = c.input_dims;
    levels = c.levels;
    feats = c.features;
    tsize = 1u << c.log2_table;
    for (int l = 0; l < levels; ++l) {
      const auto r = static_cast<std::uint32_t>(std::floor(static_cast<double>(c.base_resolution) * std::pow(c.growth, l) + 1e-9));
      res.push_back(r);
      double verts = 1;
      for (int d = 0; d < dims; ++d) verts *= r + 1.0;
      dense.push_back(verts <= tsize);
    }
    table.assign(tab, tab + static_cast<std::size_t>(levels) * tsize * feats);
  }

  std::uint32_t index(int l, const std::uint32_t* v) const {
    if (dense[l]) {
      std::uint64_t i = 0, s = 1;
      for (int d = 0; d < dims; ++d) { i += v[d] * s; s *= res[l] + 1u; }
      return static_cast<std::uint32_t>(i);
    }
    const std::uint32_t primes[3] = {1u, 2654435761u, 805459861u};
    std::uint32_t h = 0;
    for (int d = 0; d < dims; ++d) h ^= static_cast<std::uint32_t>(v[d] * primes[d]); // wraps mod 2^32
    return h % tsize;
  }

  // Encoding of one point (dims coordinates) into out (levels*feats).
  void encode(const double* x, double* out) const {
    for (int l = 0; l < levels; ++l) {
      std::uint32_t c[3];
      double t[3];
      for (int d = 0; d < dims; ++d) {
        double v = x[d];
        if (!(v > 0)) v = 0; // NaN -> 0
        if (v > 1) v = 1;
        const double p = v * res[l];
        double fl = std::floor(p);
        if (fl > res[l] - 1.0) fl = res[l] - 1.0;
        c[d] = static_cast<std::uint32_t>(fl);
        t[d] = p - fl;
      }
      for (int f = 0; f < feats; ++f) out[l * feats + f] = 0;
      for (int corner = 0; corner < (1 << dims); ++corner) {
        std::uint32_t v[3];
        double w = 1;
        for (int d = 0; d < dims; ++d) {
          const bool hi = (corner >> d) & 1;
          v[d] = c[d] + (hi ? 1u : 0u);
          w *= hi ? t[d] : 1 - t[d];
        }
        const std::uint32_t i = index(l, v);
        for (int f = 0; f < feats; ++f)
          out[l * feats + f] += w * table[(static_cast<std::size_t>(l) * tsize + i) * feats + f];
      }
    }
  }

  // sum_n sum_j dy[n,j] * encode(x_n)[j]
  double loss(const std::vector<double>& x, const std::vector<float>& dy, index_t n) const {
    std::vector<double> y(static_cast<std::size_t>(levels * feats));
    double s = 0;
    for (index_t i = 0; i < n; ++i) {
      encode(x.data() + i * dims, y.data());
      for (std::size_t j = 0; j < y.size(); ++j) s += dy[static_cast<std::size_t>(i) * y.size() + j] * y[j];
    }
    return s;
  }
};

nn::hash_grid make_grid(const nn::hash_grid_config& c, std::uint32_t seed) {
  nn::hash_grid g(c);
  // Larger values than the 1e-4 init so that the comparisons below are not trivially small.
  auto v = uniform(static_cast<std::size_t>(g.parameter_count()), -1.0f, 1.0f, seed);
  std::memcpy(g.table().data(), v.data(), v.size() * sizeof(float));
  return g;
}

// Configs with dense coarse levels and hashed fine levels (checked in the tests).
nn::hash_grid_config cfg3() { return {3, 6, 2, 12, 4, 2.0}; } // N = 4..128, T = 4096: 2 dense (125, 729)
nn::hash_grid_config cfg2() { return {2, 5, 4, 10, 4, 2.0}; } // N = 4..64, T = 1024: 3 dense (25, 81, 289)

// Points with every kind of position: random, exactly 0 and 1, on cell faces of every level,
// outside [0,1] (clamped) and NaN (treated as 0).
std::vector<float> test_points(int dims, index_t& n) {
  std::vector<float> pts;
  const float special[] = {0.0f, 1.0f, 0.25f, 0.5f, 0.125f, 0.75f, 1.0f / 128, 127.0f / 128, -0.3f, 1.7f};
  for (float s : special)
    for (int d = 0; d < dims; ++d) pts.push_back(d == 0 ? s : 0.37f + 0.1f * static_cast<float>(d));
  for (float s : special)
    for (int d = 0; d < dims; ++d) pts.push_back(s); // the diagonal: all coordinates special
  for (int d = 0; d < dims; ++d) pts.push_back(d == dims - 1 ? std::numeric_limits<float>::quiet_NaN() : 0.6f);
  auto r = uniform(static_cast<std::size_t>(40 * dims), 0.0f, 1.0f, 7);
  pts.insert(pts.end(), r.begin(), r.end());
  n = static_cast<index_t>(pts.size()) / dims;
  return pts;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

} // namespace

// =====================================================================================================
TEST_CASE("frequency_encoding: hand-derived values and layout") {
  nn::frequency_encoding enc{.n_frequencies = 2, .include_input = true};
  const float x[] = {0.25f, -0.5f}; // one point, D = 2
  CHECK(enc.output_dims(2) == 10);
  float y[10];
  enc.forward(make_view<const float>(x, {1, 2}), make_view(y, {1, 10})); // (N,D_out)
  const float h = std::sqrt(0.5f);
  // [x0, x1, sin(pi/4), cos(pi/4), sin(pi/2), cos(pi/2), sin(-pi/2), cos(-pi/2), sin(-pi), cos(-pi)]
  const float expect[] = {0.25f, -0.5f, h, h, 1.0f, 0.0f, -1.0f, 0.0f, 0.0f, -1.0f};
  for (int j = 0; j < 10; ++j) CHECK(std::fabs(y[j] - expect[j]) <= 1e-6f);

  nn::frequency_encoding no_in{.n_frequencies = 1, .include_input = false};
  CHECK(no_in.output_dims(2) == 4);
  float z[4];
  no_in.forward(make_view<const float>(x, {1, 2}), make_view(z, {1, 4})); // (N,D_out)
  CHECK(std::fabs(z[0] - h) <= 1e-6f);
  CHECK(std::fabs(z[1] - h) <= 1e-6f);
  CHECK(std::fabs(z[2] + 1.0f) <= 1e-6f);
  CHECK(std::fabs(z[3] - 0.0f) <= 1e-6f);

  // Strided input (a transposed view) gives the same result as contiguous input.
  const float xt[] = {0.25f, 0.1f, -0.5f, 0.2f}; // (D,N) storage of two points
  float y2[20];
  enc.forward(make_view<const float>(xt, {2, 2}).transpose(), make_view(y2, {2, 10})); // (N,D_out)
  for (int j = 0; j < 10; ++j) CHECK(y2[j] == y[j]);
}

TEST_CASE("frequency_encoding: backward matches central finite differences of a double forward") {
  // FD on a double copy of the forward: truncation O(h^2 (2^K pi)^3) ~ 1e-12 * 3e6 and rounding
  // 1e-16 / h, both far below the float analytic error (argument rounding ~ ulp(2^K pi) times the
  // derivative amplitude), bounded here by 1e-5 of the sum of absolute terms.
  for (bool inc : {true, false}) {
    nn::frequency_encoding enc{.n_frequencies = 6, .include_input = inc};
    const index_t n = 9, d = 3, w = enc.output_dims(d);
    auto x = uniform(static_cast<std::size_t>(n * d), -1.0f, 1.0f, 3);
    auto dy = uniform(static_cast<std::size_t>(n * w), -1.0f, 1.0f, 4);
    std::vector<float> dx(static_cast<std::size_t>(n * d));
    enc.backward(make_view<const float>(x.data(), {n, d}), make_view<const float>(dy.data(), {n, w}),
                 make_view(dx.data(), {n, d})); // (N,D)
    const double hstep = 1e-6;
    for (index_t i = 0; i < n * d; ++i) {
      auto xp = to_double(x), xm = to_double(x);
      xp[static_cast<std::size_t>(i)] += hstep;
      xm[static_cast<std::size_t>(i)] -= hstep;
      const auto yp = freq_ref(xp, n, d, 6, inc), ym = freq_ref(xm, n, d, 6, inc);
      double fd = 0;
      for (std::size_t j = 0; j < yp.size(); ++j) fd += dy[j] * (yp[j] - ym[j]);
      fd /= 2 * hstep;
      const index_t row = i / d, col = i % d;
      double scale = inc ? std::fabs(dy[static_cast<std::size_t>(row * w + col)]) : 0.0;
      for (int k = 0; k < 6; ++k)
        for (int s = 0; s < 2; ++s)
          scale += std::ldexp(pi_d, k) *
                   std::fabs(dy[static_cast<std::size_t>(row * w + (inc ? d : 0) + (col * 6 + k) * 2 + s)]);
      CHECK(std::fabs(dx[static_cast<std::size_t>(i)] - fd) <= 1e-5 * scale);
    }
  }
}

TEST_CASE("frequency_encoding: bad settings and shapes throw typed errors naming the value") {
  const float x[] = {0.1f, 0.2f};
  float y[64];
  CHECK_THROWS_WITH_AS((nn::frequency_encoding{.n_frequencies = -1}.output_dims(2)), doctest::Contains("-1"),
                       config_error);
  CHECK_THROWS_WITH_AS((nn::frequency_encoding{.n_frequencies = 25}.output_dims(2)), doctest::Contains("25"),
                       config_error);
  CHECK_THROWS_AS((nn::frequency_encoding{.n_frequencies = 0, .include_input = false}.validate()), config_error);
  nn::frequency_encoding enc{.n_frequencies = 2};
  CHECK_THROWS_WITH_AS(enc.forward(make_view<const float>(x, {1, 2}), make_view(y, {1, 9})), doctest::Contains("9"),
                       shape_error);
  CHECK_THROWS_AS(enc.forward(make_view<const float>(x, {2}), make_view(y, {1, 10})), shape_error);
  float dx[2];
  CHECK_THROWS_AS(enc.backward(make_view<const float>(x, {1, 2}), make_view<const float>(y, {1, 10}),
                               make_view(dx, {2, 1})),
                  shape_error);
}

// =====================================================================================================
TEST_CASE("hash_grid: level resolutions, dense/hashed split, and initialisation") {
  nn::hash_grid g3(cfg3());
  for (int l = 0; l < 6; ++l) CHECK(g3.resolution(l) == (index_t{4} << l));
  CHECK(g3.dense(0));
  CHECK(g3.dense(1));
  CHECK(!g3.dense(2)); // 17^3 = 4913 > 4096
  CHECK(g3.output_dims() == 12);
  CHECK(g3.parameter_count() == 6 * 4096 * 2);
  nn::hash_grid g2(cfg2());
  CHECK(g2.dense(2));  // 17^2 = 289 <= 1024
  CHECK(!g2.dense(3)); // 33^2 = 1089 > 1024

  // Non-integer growth: N_l = floor(3 * 1.7^l); and hash_grid_growth reaches N_max exactly.
  nn::hash_grid g({3, 4, 1, 8, 3, 1.7});
  CHECK(g.resolution(1) == 5);  // 5.1
  CHECK(g.resolution(2) == 8);  // 8.67
  CHECK(g.resolution(3) == 14); // 14.739
  const double b = nn::hash_grid_growth(16, 2048, 8);
  nn::hash_grid gb({3, 8, 2, 19, 16, b});
  CHECK(gb.resolution(7) == 2048);
  CHECK(nn::hash_grid_growth(16, 16, 1) == 1.0);

  // Init: U(-1e-4, 1e-4) from a fixed seed; reproducible, seed-dependent, not degenerate.
  auto t = g3.table();
  float lo = 1, hi = -1;
  for (float v : t.span()) { lo = std::min(lo, v); hi = std::max(hi, v); }
  CHECK(lo >= -1e-4f);
  CHECK(hi <= 1e-4f);
  CHECK(lo < -0.9e-4f);
  CHECK(hi > 0.9e-4f);
  nn::hash_grid again(cfg3());
  CHECK(std::memcmp(again.table().data(), t.data(), t.size() * sizeof(float)) == 0);
  nn::hash_grid other(cfg3(), 42);
  CHECK(std::memcmp(other.table().data(), t.data(), t.size() * sizeof(float)) != 0);
  other.reset(nn::hash_grid::default_seed);
  CHECK(std::memcmp(other.table().data(), t.data(), t.size() * sizeof(float)) == 0);
}

TEST_CASE("hash_grid: forward matches the slow reference (dense and hashed levels, faces, 0, 1, clamping)") {
  for (const auto& cfg : {cfg3(), cfg2(), nn::hash_grid_config{3, 3, 8, 6, 2, 3.0}, nn::hash_grid_config{2, 2, 1, 4, 1, 1.0}}) {
    CAPTURE(cfg.input_dims);
    CAPTURE(cfg.features);
    const auto g = make_grid(cfg, 11);
    const grid_ref ref(cfg, g.table().data());
    index_t n = 0;
    const auto pts = test_points(cfg.input_dims, n);
    const index_t w = g.output_dims();
    std::vector<float> y(static_cast<std::size_t>(n * w));
    g.forward(make_view(pts.data(), {n, cfg.input_dims}), make_view(y.data(), {n, w})); // (N,L*F)
    std::vector<double> r(static_cast<std::size_t>(w));
    const auto xd = to_double(pts);
    for (index_t i = 0; i < n; ++i) {
      ref.encode(xd.data() + i * cfg.input_dims, r.data());
      for (index_t j = 0; j < w; ++j) {
        CAPTURE(i);
        CAPTURE(j);
        // float: 2^D products of weights and entries in [-1,1], summed: a few ulp of 1.
        CHECK(std::fabs(y[static_cast<std::size_t>(i * w + j)] - r[static_cast<std::size_t>(j)]) <= 2e-6);
      }
    }
  }
  // The hashed index is the documented one: vertex (1,1,1) at the finest level of cfg3 lands on
  // (1 ^ 2654435761 ^ 805459861) mod 4096: 0x9e3779b1 ^ 0x30025795 = 0xae352e24, ^ 1 = 0xae352e25,
  // & 0xfff = 0xe25 = 3621.
  {
    auto g = make_grid(cfg3(), 5);
    auto tab = g.table();
    for (float& v : tab.span()) v = 0;
    tab(5, 3621, 1) = 1.0f;
    const float x[] = {1.0f / 128, 1.0f / 128, 1.0f / 128}; // vertex (1,1,1) of level 5 (N = 128)
    float y[12];
    g.forward(make_view(x, {1, 3}), make_view(y, {1, 12})); // (N,L*F)
    CHECK(y[11] == 1.0f);
    CHECK(y[10] == 0.0f);
  }
  // Strided x and y give the same result as contiguous ones.
  {
    const auto g = make_grid(cfg3(), 6);
    index_t n = 0;
    const auto pts = test_points(3, n);
    std::vector<float> xt(pts.size());
    for (index_t i = 0; i < n; ++i)
      for (int d = 0; d < 3; ++d) xt[static_cast<std::size_t>(d * n + i)] = pts[static_cast<std::size_t>(i * 3 + d)];
    std::vector<float> y1(static_cast<std::size_t>(n * 12)), y2(y1.size());
    g.forward(make_view(pts.data(), {n, 3}), make_view(y1.data(), {n, 12}));                        // (N,L*F)
    g.forward(make_view(xt.data(), {3, n}).transpose(), make_view(y2.data(), {12, n}).transpose()); // (N,L*F)
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < 12; ++j) CHECK(y1[static_cast<std::size_t>(i * 12 + j)] == y2[static_cast<std::size_t>(j * n + i)]);
  }
}

TEST_CASE("hash_grid: the SIMD forward equals the scalar twin bit for bit (odd N, strided x and y, every F)") {
  for (const auto& cfg : {cfg3(), cfg2(), nn::hash_grid_config{3, 3, 8, 6, 2, 3.0}, nn::hash_grid_config{3, 4, 1, 8, 3, 1.7},
                          nn::hash_grid_config{3, 3, 4, 16, 16, 2.0}}) {
    CAPTURE(cfg.input_dims);
    CAPTURE(cfg.features);
    const auto g = make_grid(cfg, 13);
    index_t n = 0;
    auto pts = test_points(cfg.input_dims, n); // 71 or so points: full SIMD tiles and a tail
    const index_t w = g.output_dims(), d = cfg.input_dims;
    // x with a row stride of d + 1 and y transposed (column stride n): any strides are accepted.
    std::vector<float> xs(static_cast<std::size_t>(n * (d + 1)), 0.0f);
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < d; ++k) xs[static_cast<std::size_t>(i * (d + 1) + k)] = pts[static_cast<std::size_t>(i * d + k)];
    const index_t xe[] = {n, d}, xst[] = {d + 1, 1}, ye[] = {n, w}, yst[] = {1, n};
    std::vector<float> y0(static_cast<std::size_t>(n * w)), y1(static_cast<std::size_t>(n * w), -1.0f);
    const view<const float> xv(xs.data(), std::span<const index_t>(xe), std::span<const index_t>(xst));
    g.forward<backend::scalar>(make_view<const float>(pts.data(), {n, d}), make_view(y0.data(), {n, w}));
    g.forward(xv, view<float>(y1.data(), std::span<const index_t>(ye), std::span<const index_t>(yst)));
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < w; ++j) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(y1[static_cast<std::size_t>(j * n + i)] == y0[static_cast<std::size_t>(i * w + j)]);
      }
  }
}

TEST_CASE("hash_grid: d_table matches central finite differences of the double reference") {
  // The encoding is linear in the table, so the central difference of the double reference is exact
  // up to rounding (~1e-16 |L| / h with h = 1e-3); the float scatter accumulates a few products of
  // magnitude <= 1: tolerance 1e-5 (1 + |fd|).
  for (const auto& cfg : {cfg3(), cfg2()}) {
    auto g = make_grid(cfg, 21);
    index_t n = 0;
    const auto pts = test_points(cfg.input_dims, n);
    const index_t w = g.output_dims();
    const auto dy = uniform(static_cast<std::size_t>(n * w), -1.0f, 1.0f, 22);
    array<float> dtab({cfg.levels, index_t{1} << cfg.log2_table, cfg.features}); // (L,T,F)
    g.backward_table(make_view(pts.data(), {n, cfg.input_dims}), make_view(dy.data(), {n, w}), dtab.view());
    grid_ref ref(cfg, g.table().data());
    const auto xd = to_double(pts);
    // Every touched entry, plus a sample of the others (which must have zero gradient).
    std::vector<std::size_t> entries;
    for (std::size_t e = 0; e < static_cast<std::size_t>(dtab.size()); ++e)
      if (dtab[static_cast<index_t>(e)] != 0.0f || e % 97 == 0) entries.push_back(e);
    CHECK(entries.size() > 200);
    int nonzero = 0;
    for (std::size_t e : entries) {
      const double h = 1e-3, t0 = ref.table[e];
      ref.table[e] = t0 + h;
      const double lp = ref.loss(xd, dy, n);
      ref.table[e] = t0 - h;
      const double lm = ref.loss(xd, dy, n);
      ref.table[e] = t0;
      const double fd = (lp - lm) / (2 * h);
      nonzero += fd != 0.0;
      CAPTURE(e);
      CHECK(std::fabs(dtab[static_cast<index_t>(e)] - fd) <= 1e-5 * (1 + std::fabs(fd)));
    }
    CHECK(nonzero > 100);
    // Accumulation: a second call adds the same gradient again.
    array<float> twice = dtab; // (L,T,F)
    g.backward_table(make_view(pts.data(), {n, cfg.input_dims}), make_view(dy.data(), {n, w}), twice.view());
    for (index_t e = 0; e < dtab.size(); e += 7) CHECK(twice[e] == doctest::Approx(2 * dtab[e]).epsilon(1e-6));
  }
}

TEST_CASE("hash_grid: d_input matches central finite differences of the double reference") {
  // Inside a cell the encoding is linear in each coordinate, so the central difference of the
  // double reference is exact up to rounding (~1e-16 |L| / h = 1e-9 with h = 1e-7). Points are
  // multiples of 2^-20 kept >= 2^-14 away from every cell face, so x * N_l (N_l powers of two) is
  // exact in float too and the float analytic result differs only by accumulation rounding:
  // tolerance 1e-5 times S = sum_l N_l * sum_f |dy| * max|table| (the scale of the terms).
  for (const auto& cfg : {cfg3(), cfg2()}) {
    auto g = make_grid(cfg, 31);
    const int dims = cfg.input_dims;
    const index_t w = g.output_dims();
    std::mt19937 gen(32);
    std::vector<float> pts;
    while (pts.size() < static_cast<std::size_t>(30 * dims)) {
      const float v = static_cast<float>(gen() >> 12) * 0x1p-20f; // multiple of 2^-20 in [0,1)
      const float face = std::round(v * 128.0f) / 128.0f;          // faces of the finest level (N = 128 or 64)
      if (std::fabs(v - face) >= 0x1p-14f) pts.push_back(v);
    }
    // Boundaries with one-sided derivatives: x = 0 (right), x = 1 (left), x = 0.25 on a face of
    // every level (right, the cell floor selects).
    const float edge[] = {0.0f, 1.0f, 0.25f};
    for (float e : edge)
      for (int d = 0; d < dims; ++d) pts.push_back(d == 0 ? e : 0.3f + 0x1p-10f);
    // Outside [0,1] and NaN: derivative 0 along that axis.
    const float outside[] = {-0.5f, 1.5f, std::numeric_limits<float>::quiet_NaN()};
    for (float e : outside)
      for (int d = 0; d < dims; ++d) pts.push_back(d == 0 ? e : 0.3f + 0x1p-10f);
    const index_t n = static_cast<index_t>(pts.size()) / dims;
    const index_t n_inner = 30;
    const auto dy = uniform(static_cast<std::size_t>(n * w), -1.0f, 1.0f, 33);
    std::vector<float> dx(static_cast<std::size_t>(n * dims));
    g.backward_input(make_view(pts.data(), {n, dims}), make_view(dy.data(), {n, w}), make_view(dx.data(), {n, dims}));
    const grid_ref ref(cfg, g.table().data());
    double tmax = 0;
    for (double v : ref.table) tmax = std::max(tmax, std::fabs(v));
    for (index_t i = 0; i < n; ++i) {
      std::vector<double> x1(pts.begin() + i * dims, pts.begin() + (i + 1) * dims);
      const std::vector<float> dy1(dy.begin() + i * w, dy.begin() + (i + 1) * w);
      double s = 0;
      for (int l = 0; l < cfg.levels; ++l)
        for (int f = 0; f < cfg.features; ++f) s += static_cast<double>(ref.res[static_cast<std::size_t>(l)]) * std::fabs(dy1[static_cast<std::size_t>(l * cfg.features + f)]) * tmax;
      for (int d = 0; d < dims; ++d) {
        CAPTURE(i);
        CAPTURE(d);
        const float got = dx[static_cast<std::size_t>(i * dims + d)];
        if (i >= n_inner + 3) { // outside / NaN along axis 0
          if (d == 0) CHECK(got == 0.0f);
          continue;
        }
        const double h = 1e-7, x0 = x1[static_cast<std::size_t>(d)];
        double fd;
        const bool at0 = x0 == 0.0, at1 = x0 == 1.0, at_face = i >= n_inner && d == 0 && x0 == 0.25;
        if (at1) { // left difference
          x1[static_cast<std::size_t>(d)] = x0 - h;
          const double lm = ref.loss(x1, dy1, 1);
          x1[static_cast<std::size_t>(d)] = x0;
          fd = (ref.loss(x1, dy1, 1) - lm) / h;
        } else if (at0 || at_face) { // right difference
          x1[static_cast<std::size_t>(d)] = x0 + h;
          const double lp = ref.loss(x1, dy1, 1);
          x1[static_cast<std::size_t>(d)] = x0;
          fd = (lp - ref.loss(x1, dy1, 1)) / h;
        } else {
          x1[static_cast<std::size_t>(d)] = x0 + h;
          const double lp = ref.loss(x1, dy1, 1);
          x1[static_cast<std::size_t>(d)] = x0 - h;
          const double lm = ref.loss(x1, dy1, 1);
          x1[static_cast<std::size_t>(d)] = x0;
          fd = (lp - lm) / (2 * h);
        }
        CHECK(std::fabs(got - fd) <= 1e-5 * s);
        CHECK(s > 1.0);
      }
    }
  }
}

TEST_CASE("hash_grid: backward is deterministic (identical bits on repeat)") {
  auto g = make_grid(cfg3(), 41);
  const index_t n = 3000; // several blocks, many hash collisions per level
  const auto pts = uniform(static_cast<std::size_t>(n * 3), -0.1f, 1.1f, 42);
  const auto dy = uniform(static_cast<std::size_t>(n * 12), -1.0f, 1.0f, 43);
  array<float> d1({6, 4096, 2}), d2({6, 4096, 2}); // (L,T,F)
  g.backward_table(make_view(pts.data(), {n, 3}), make_view(dy.data(), {n, 12}), d1.view());
  g.backward_table(make_view(pts.data(), {n, 3}), make_view(dy.data(), {n, 12}), d2.view());
  CHECK(std::memcmp(d1.data(), d2.data(), d1.bytes()) == 0);
  std::vector<float> x1(static_cast<std::size_t>(n * 3)), x2(x1.size()), y1(static_cast<std::size_t>(n * 12)), y2(y1.size());
  g.backward_input(make_view(pts.data(), {n, 3}), make_view(dy.data(), {n, 12}), make_view(x1.data(), {n, 3}));
  g.backward_input(make_view(pts.data(), {n, 3}), make_view(dy.data(), {n, 12}), make_view(x2.data(), {n, 3}));
  CHECK(std::memcmp(x1.data(), x2.data(), x1.size() * sizeof(float)) == 0);
  g.forward(make_view(pts.data(), {n, 3}), make_view(y1.data(), {n, 12}));
  g.forward(make_view(pts.data(), {n, 3}), make_view(y2.data(), {n, 12}));
  CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
}

TEST_CASE("hash_grid: bad settings and shapes throw typed errors naming the value") {
  using c = nn::hash_grid_config;
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{4, 8, 2, 12, 4, 2.0}), doctest::Contains("input_dims is 4"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{1, 8, 2, 12, 4, 2.0}), doctest::Contains("input_dims is 1"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 3, 12, 4, 2.0}), doctest::Contains("features is 3"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 16, 12, 4, 2.0}), doctest::Contains("features is 16"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 2, 3, 4, 2.0}), doctest::Contains("log2_table is 3"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 2, 25, 4, 2.0}), doctest::Contains("log2_table is 25"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 0, 2, 12, 4, 2.0}), doctest::Contains("levels is 0"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 33, 2, 12, 4, 2.0}), doctest::Contains("levels is 33"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 2, 12, 0, 2.0}), doctest::Contains("base_resolution is 0"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 8, 2, 12, 4, 0.5}), doctest::Contains("growth is 0.5"), config_error);
  CHECK_THROWS_AS(nn::hash_grid(c{3, 8, 2, 12, 4, std::nan("")}), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid(c{3, 32, 2, 12, 16, 2.0}), doctest::Contains("resolution"), config_error);
  CHECK_THROWS_WITH_AS(nn::hash_grid_growth(0, 16, 4), doctest::Contains("0"), config_error);
  CHECK_THROWS_AS(nn::hash_grid_growth(32, 16, 4), config_error);

  const nn::hash_grid g(cfg3());
  std::vector<float> x(12), y(48), dx(12);
  CHECK_THROWS_WITH_AS(g.forward(make_view(x.data(), {6, 2}), make_view(y.data(), {6, 12})),
                       doctest::Contains("2 columns"), shape_error);
  CHECK_THROWS_WITH_AS(g.forward(make_view(x.data(), {4, 3}), make_view(y.data(), {4, 11})),
                       doctest::Contains("11"), shape_error);
  CHECK_THROWS_AS(g.forward(make_view(x.data(), {4, 3}), make_view(y.data(), {3, 12})), shape_error);
  array<float> bad({6, 2048, 2}); // (L,T/2,F)
  CHECK_THROWS_WITH_AS(g.backward_table(make_view(x.data(), {4, 3}), make_view(y.data(), {4, 12}), bad.view()),
                       doctest::Contains("2048"), shape_error);
  CHECK_THROWS_AS(g.backward_input(make_view(x.data(), {4, 3}), make_view(y.data(), {4, 12}), make_view(dx.data(), {3, 4})),
                  shape_error);
}
