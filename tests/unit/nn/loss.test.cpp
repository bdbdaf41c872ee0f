// SPDX-License-Identifier: MIT
// nn/loss.hpp: every loss and gradient against PyTorch (fixtures from tools/make_nn_loss_fixtures.py,
// float64), against central finite differences in double precision, hand-derived values, and
// bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/nn/loss.hpp"

using namespace membound;

namespace {
nlohmann::json fixtures() {
  std::ifstream f(MEMBOUND_FIXTURES_DIR "/nn/loss_fixtures.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}
std::vector<double> vec(const nlohmann::json& j) { return j.get<std::vector<double>>(); }
void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
}
/// Central finite differences of f at x (double), compared with the analytic gradient g.
template <class F>
void check_fd(std::vector<double> x, const std::vector<double>& g, F f) {
  const double h = 1e-6;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    CHECK(std::abs((up - down) / (2 * h) - g[i]) <= 1e-7 * (1 + std::abs(g[i])));
  }
}
view<const double> mat(const std::vector<double>& v, index_t n, index_t c) { return make_view(v.data(), {n, c}); }
} // namespace

TEST_CASE("losses match PyTorch (float64 fixtures)") {
  const auto fx = fixtures();
  const index_t n = fx["N"], c = fx["C"];
  {
    const auto y = vec(fx["mse"]["y"]), t = vec(fx["mse"]["t"]);
    std::vector<double> dy(y.size());
    CHECK(nn::mse(mat(y, n, c), mat(t, n, c), make_view(dy.data(), {n, c})) == doctest::Approx(fx["mse"]["loss"].get<double>()).epsilon(1e-12));
    check_close(dy, vec(fx["mse"]["dy"]), 1e-12);
  }
  {
    const auto z = vec(fx["bce"]["z"]), t = vec(fx["bce"]["t"]);
    std::vector<double> dz(z.size());
    CHECK(nn::bce_with_logits(mat(z, n, c), mat(t, n, c), make_view(dz.data(), {n, c})) ==
          doctest::Approx(fx["bce"]["loss"].get<double>()).epsilon(1e-12));
    check_close(dz, vec(fx["bce"]["dz"]), 1e-12);
  }
  {
    const auto z = vec(fx["ce"]["z"]);
    const auto k = fx["ce"]["targets"].get<std::vector<std::int64_t>>();
    std::vector<double> dz(z.size());
    CHECK(nn::cross_entropy(mat(z, n, c), std::span<const std::int64_t>(k), make_view(dz.data(), {n, c})) ==
          doctest::Approx(fx["ce"]["loss"].get<double>()).epsilon(1e-12));
    check_close(dz, vec(fx["ce"]["dz"]), 1e-12);
  }
  {
    const auto a = vec(fx["kl"]["a"]), b = vec(fx["kl"]["b"]);
    std::vector<double> da(a.size()), db(b.size());
    CHECK(nn::kl_categorical(mat(a, n, c), mat(b, n, c), make_view(da.data(), {n, c}), make_view(db.data(), {n, c})) ==
          doctest::Approx(fx["kl"]["loss"].get<double>()).epsilon(1e-12));
    check_close(da, vec(fx["kl"]["da"]), 1e-12);
    check_close(db, vec(fx["kl"]["db"]), 1e-12);
  }
}

TEST_CASE("loss gradients equal central finite differences (double)") {
  std::mt19937 gen(7);
  std::normal_distribution<double> nd(0.0, 1.5);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  const index_t n = 3, c = 4;
  std::vector<double> x(n * c), t(n * c), w(n * c), g(n * c), g2(n * c);
  for (auto& v : x) v = nd(gen);
  for (auto& v : t) v = ud(gen);
  for (auto& v : w) v = nd(gen);
  const std::vector<std::int64_t> k = {3, 0, 2};
  nn::mse(mat(x, n, c), mat(t, n, c), make_view(g.data(), {n, c}));
  check_fd(x, g, [&](const std::vector<double>& p) { return nn::mse(mat(p, n, c), mat(t, n, c)); });
  nn::bce_with_logits(mat(x, n, c), mat(t, n, c), make_view(g.data(), {n, c}));
  check_fd(x, g, [&](const std::vector<double>& p) { return nn::bce_with_logits(mat(p, n, c), mat(t, n, c)); });
  nn::cross_entropy(mat(x, n, c), std::span<const std::int64_t>(k), make_view(g.data(), {n, c}));
  check_fd(x, g, [&](const std::vector<double>& p) { return nn::cross_entropy(mat(p, n, c), std::span<const std::int64_t>(k)); });
  nn::kl_categorical(mat(x, n, c), mat(w, n, c), make_view(g.data(), {n, c}), make_view(g2.data(), {n, c}));
  check_fd(x, g, [&](const std::vector<double>& p) { return nn::kl_categorical(mat(p, n, c), mat(w, n, c)); });
  check_fd(w, g2, [&](const std::vector<double>& q) { return nn::kl_categorical(mat(x, n, c), mat(q, n, c)); });
  // The other direction, KL(q||p), is the same function with the arguments swapped.
  nn::kl_categorical(mat(w, n, c), mat(x, n, c), make_view(g.data(), {n, c}), make_view(g2.data(), {n, c}));
  check_fd(x, g2, [&](const std::vector<double>& p) { return nn::kl_categorical(mat(w, n, c), mat(p, n, c)); });
}

TEST_CASE("losses: hand-derived values, float, rank 1 and strided views") {
  const float y[] = {1.f, 2.f, 4.f}, t[] = {1.f, 0.f, 1.f};
  CHECK(nn::mse(make_view(y, {3}), make_view(t, {3})) == doctest::Approx((0.f + 4.f + 9.f) / 3.f));
  const float z0[] = {0.f};
  const float half[] = {0.5f};
  CHECK(nn::bce_with_logits(make_view(z0, {1}), make_view(half, {1})) == doctest::Approx(std::log(2.0)));
  const float logits[] = {0.f, std::log(3.f)}; // softmax = {1/4, 3/4}
  const std::int64_t k1[] = {1};
  CHECK(nn::cross_entropy(make_view(logits, {1, 2}), std::span<const std::int64_t>(k1)) == doctest::Approx(-std::log(0.75)));
  CHECK(nn::kl_categorical(make_view(logits, {1, 2}), make_view(logits, {1, 2})) == doctest::Approx(0.0));
  // A column of a (3,2) buffer: strided rank-1 views work like dense ones.
  const float buf[] = {1.f, 9.f, 2.f, 9.f, 4.f, 9.f};
  CHECK(nn::mse(make_view(buf, {3}, {2}), make_view(t, {3})) == doctest::Approx(13.f / 3.f));
  // Large logits stay finite.
  const float big[] = {1000.f, -1000.f};
  const float tt[] = {1.f, 0.f};
  CHECK(std::isfinite(nn::bce_with_logits(make_view(big, {2}), make_view(tt, {2}))));
  const std::int64_t k0[] = {1};
  CHECK(nn::cross_entropy(make_view(big, {1, 2}), std::span<const std::int64_t>(k0)) == doctest::Approx(2000.f));
}

TEST_CASE("losses: bad input is a typed error naming the values") {
  float a[6] = {}, b[4] = {}, g[4] = {};
  CHECK_THROWS_WITH_AS(nn::mse(make_view<const float>(a, {2, 3}), make_view<const float>(b, {2, 2})),
                       doctest::Contains("extent 1 (3 vs 2)"), shape_error);
  CHECK_THROWS_AS(nn::mse(make_view<const float>(a, {0}), make_view<const float>(b, {0})), shape_error);
  CHECK_THROWS_AS(nn::mse(make_view<const float>(a, {2, 3}), make_view<const float>(a, {2, 3}), make_view(g, {2, 2})), shape_error);
  const float bad_t[] = {1.5f};
  CHECK_THROWS_WITH_AS(nn::bce_with_logits(make_view<const float>(a, {1}), make_view(bad_t, {1})), doctest::Contains("1.5"), config_error);
  const std::int64_t k[] = {0, 3};
  CHECK_THROWS_WITH_AS(nn::cross_entropy(make_view<const float>(a, {2, 3}), std::span<const std::int64_t>(k)),
                       doctest::Contains("row 1 is 3"), lookup_error);
  CHECK_THROWS_AS(nn::cross_entropy(make_view<const float>(a, {2, 3}), std::span<const std::int64_t>(k, 1)), shape_error);
  CHECK_THROWS_AS(nn::kl_categorical(make_view<const float>(a, {0, 3}), make_view<const float>(a, {0, 3})), shape_error);
}
