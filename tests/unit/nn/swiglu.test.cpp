// SPDX-License-Identifier: MIT
// nn/swiglu.hpp: the double backward against central finite differences, the float (SIMD) path
// (the fused cpu::swiglu kernels) against the double one, aliasing, and mismatched sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "membound/nn/swiglu.hpp"

using namespace membound;

TEST_CASE("swiglu: backward equals central finite differences in double; float equals double") {
  std::mt19937 gen(9);
  std::uniform_real_distribution<double> u01(-6.0, 6.0);
  const std::size_t n = 37; // odd: SIMD bodies and tails
  std::vector<double> g(n), u(n), r(n), y(n), dg(n), du(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = u01(gen), u[i] = u01(gen) / 3, r[i] = u01(gen) / 6;
  auto loss = [&] {
    nn::swiglu_forward<double>(g, u, y);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += y[i] * r[i];
    return s;
  };
  nn::swiglu_backward<double>(g, u, r, dg, du);
  const double h = 1e-6;
  for (std::vector<double>* x : {&g, &u})
    for (std::size_t i = 0; i < n; ++i) {
      const double keep = (*x)[i];
      (*x)[i] = keep + h;
      const double up = loss();
      (*x)[i] = keep - h;
      const double down = loss();
      (*x)[i] = keep;
      const double want = x == &g ? dg[i] : du[i];
      CHECK(std::abs((up - down) / (2 * h) - want) <= 1e-8 * (1 + std::abs(want)));
    }
  // The float path (cpu::silu / cpu::silu_backward) against the double one.
  std::vector<float> gf(g.begin(), g.end()), uf(u.begin(), u.end()), rf(r.begin(), r.end()), yf(n), dgf(n), duf(n);
  loss();
  nn::swiglu_forward<float>(gf, uf, yf);
  nn::swiglu_backward<float>(gf, uf, rf, dgf, duf);
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(std::abs(yf[i] - y[i]) <= 2e-6 * (1 + std::abs(y[i])));
    CHECK(std::abs(dgf[i] - dg[i]) <= 2e-6 * (1 + std::abs(dg[i])));
    CHECK(std::abs(duf[i] - du[i]) <= 2e-6 * (1 + std::abs(du[i])));
  }
  // y aliasing u, and du aliasing dy, give the same values.
  std::vector<float> ya = uf, dya = rf, dga(n);
  nn::swiglu_forward<float>(gf, ya, ya);
  nn::swiglu_backward<float>(gf, uf, dya, dga, dya);
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(ya[i] == doctest::Approx(yf[i]).epsilon(1e-6));
    CHECK(dga[i] == doctest::Approx(dgf[i]).epsilon(1e-5));
    CHECK(dya[i] == doctest::Approx(duf[i]).epsilon(1e-6));
  }
  std::vector<float> short_(n - 1);
  CHECK_THROWS_AS(nn::swiglu_forward<float>(gf, uf, short_), shape_error);
  CHECK_THROWS_AS(nn::swiglu_backward<float>(gf, uf, rf, dgf, short_), shape_error);
  CHECK_THROWS_AS(nn::swiglu_backward<float>(gf, uf, dya, dya, dya), shape_error); // both outputs on dy
}
