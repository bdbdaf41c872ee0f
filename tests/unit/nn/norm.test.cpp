// SPDX-License-Identifier: MIT
// nn/norm.hpp and nn/embedding.hpp: forward and backward against PyTorch autograd
// (tools/make_nn_layer_fixtures.py), norms' backward against central finite differences, and bad
// input.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/nn/embedding.hpp"
#include "membound/nn/norm.hpp"
#include "fixtures.hpp"

using namespace membound;

using test::check_close;
using test::fill;

namespace {
nlohmann::json fixtures() { return test::layer_fixtures(); }
/// Central differences of L = sum(R * layer(x)) (double accumulation over the float layer).
template <class Layer>
void check_fd(const Layer& layer, nn::parameters& p, array<float>& x, const array<float>& r) {
  array<float> y(x.extents()), dx(x.extents()); // (N,C)
  auto loss = [&] {
    layer.forward(x.cview(), y.view());
    double s = 0;
    for (index_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * r[i];
    return s;
  };
  p.zero_grad();
  layer.backward(x.cview(), r.cview(), dx.view());
  const double h = 1e-2;
  auto check_one = [&](float* v, float g) {
    const float keep = *v;
    *v = keep + static_cast<float>(h);
    const double up = loss();
    *v = keep - static_cast<float>(h);
    const double down = loss();
    *v = keep;
    CHECK(std::abs((up - down) / (2 * h) - g) <= 3e-3 * (1 + std::abs(g)));
  };
  for (index_t i = 0; i < x.size(); ++i) check_one(&x[i], dx[i]);
  for (std::size_t k = 0; k < p.size(); ++k)
    for (index_t i = 0; i < p[k].value.size(); ++i) check_one(&p[k].value[i], p[k].grad[i]);
}
} // namespace

TEST_CASE("layer_norm and rms_norm match PyTorch, forward and backward") {
  const auto fx = fixtures();
  array<float> x({3, 6}), dy({3, 6}), y({3, 6}), dx({3, 6}); // (N,C)
  {
    const auto& f = fx["layer_norm"];
    nn::parameters p;
    auto ln = nn::layer_norm::make(p, "ln", 6);
    fill(ln.weight, f["w"]);
    fill(ln.bias, f["b"]);
    fill(x.view(), f["x"]);
    fill(dy.view(), f["dy"]);
    ln.forward(x.cview(), y.view());
    check_close(y.cview(), f["y"]);
    ln.backward(x.cview(), dy.cview(), dx.view());
    check_close(dx.cview(), f["dx"], 5e-5);
    check_close(ln.grad_weight, f["dw"], 5e-5);
    check_close(ln.grad_bias, f["db"], 5e-5);
  }
  {
    const auto& f = fx["rms_norm"];
    nn::parameters p;
    auto rn = nn::rms_norm::make(p, "norm", 6);
    fill(rn.weight, f["w"]);
    fill(x.view(), f["x"]);
    fill(dy.view(), f["dy"]);
    rn.forward(x.cview(), y.view());
    check_close(y.cview(), f["y"]);
    rn.backward(x.cview(), dy.cview(), dx.view());
    check_close(dx.cview(), f["dx"], 5e-5);
    check_close(rn.grad_weight, f["dw"], 5e-5);
  }
}

TEST_CASE("norm backward equals central finite differences") {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.5f, 2.0f);
  array<float> x({4, 7}), r({4, 7}); // (N,C)
  for (auto& v : x.span()) v = nd(gen);
  for (auto& v : r.span()) v = nd(gen);
  {
    nn::parameters p;
    auto ln = nn::layer_norm::make(p, "ln", 7);
    for (auto& v : ln.weight.span()) v = nd(gen);
    check_fd(ln, p, x, r);
  }
  {
    nn::parameters p;
    auto rn = nn::rms_norm::make(p, "rn", 7);
    for (auto& v : rn.weight.span()) v = nd(gen);
    check_fd(rn, p, x, r);
  }
}

TEST_CASE("rms_norm backward over many row chunks: equals the double formula, for any thread count") {
  // 300 rows: five chunks of 64 rows, the last partial, each a parallel task; C = 37 leaves a tail
  // after the 8 interleaved row sums.
  constexpr index_t n = 300, c = 37;
  std::mt19937 gen(31);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  array<float> x({n, c}), dy({n, c}), w({c});
  for (auto* a : {&x, &dy, &w})
    for (auto& v : a->span()) v = nd(gen);
  std::vector<double> want_dx(static_cast<std::size_t>(n * c)), want_dw(static_cast<std::size_t>(c), 0.5);
  for (index_t r = 0; r < n; ++r) {
    double ss = 0, dot = 0;
    for (index_t j = 0; j < c; ++j) {
      ss += double(x(r, j)) * x(r, j);
      dot += double(w(j)) * dy(r, j) * x(r, j);
    }
    const double inv = 1.0 / std::sqrt(ss / c + 1e-6);
    for (index_t j = 0; j < c; ++j) {
      want_dx[static_cast<std::size_t>(r * c + j)] = inv * w(j) * dy(r, j) - x(r, j) * dot * inv * inv * inv / c;
      want_dw[static_cast<std::size_t>(j)] += double(dy(r, j)) * x(r, j) * inv;
    }
  }
  // dx starts from `start` and is accumulated onto when given, else written.
  const auto run = [&](int threads, const array<float>* start = nullptr) {
    (void)threads;
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#endif
    nn::parameters p;
    auto rn = nn::rms_norm::make(p, "rn", c);
    std::copy(w.span().begin(), w.span().end(), rn.weight.span().begin());
    std::fill(rn.grad_weight.span().begin(), rn.grad_weight.span().end(), 0.5f); // accumulates onto it
    array<float> dx = start != nullptr ? *start : array<float>({n, c});
    rn.backward(x.cview(), dy.cview(), dx.view(), /*accumulate=*/start != nullptr);
    std::vector<float> out(dx.span().begin(), dx.span().end());
    out.insert(out.end(), rn.grad_weight.span().begin(), rn.grad_weight.span().end());
    return out;
  };
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
#endif
  const auto one = run(1), two = run(2);
  // accumulate: dx += the same values (each rounded to float, then added), on 1 and 2 threads.
  array<float> start({n, c});
  for (index_t i = 0; i < start.size(); ++i) start.data()[i] = static_cast<float>(i % 13) * 0.25f - 1.0f;
  const auto acc1 = run(1, &start), acc2 = run(2, &start);
#if defined(_OPENMP)
  omp_set_num_threads(saved);
#endif
  CHECK(one == two);
  for (const auto* acc : {&acc1, &acc2}) {
    bool same = true;
    for (index_t i = 0; i < start.size(); ++i)
      same = same && (*acc)[static_cast<std::size_t>(i)] == start.data()[i] + one[static_cast<std::size_t>(i)];
    CHECK(same);
  }
  double worst = 0;
  for (std::size_t i = 0; i < want_dx.size(); ++i) worst = std::max(worst, std::abs(one[i] - want_dx[i]) / (1 + std::abs(want_dx[i])));
  for (std::size_t j = 0; j < want_dw.size(); ++j)
    worst = std::max(worst, std::abs(one[want_dx.size() + j] - want_dw[j]) / (1 + std::abs(want_dw[j])));
  CHECK(worst < 1e-6);
}

TEST_CASE("embedding matches PyTorch; repeated ids accumulate") {
  const auto f = fixtures()["embedding"];
  std::mt19937 gen(6);
  nn::parameters p;
  auto e = nn::embedding::make(p, "tok", 5, 3, gen);
  fill(e.weight, f["table"]);
  const auto ids = f["ids"].get<std::vector<std::int64_t>>();
  array<float> y({4, 3}), dy({4, 3}); // (N,D)
  fill(dy.view(), f["dy"]);
  e.forward(ids, y.view());
  check_close(y.cview(), f["y"], 0);
  e.backward(ids, dy.cview());
  check_close(e.grad_weight, f["dtable"], 1e-6);
}

TEST_CASE("norms and embedding: bad input is a typed error") {
  std::mt19937 gen(7);
  nn::parameters p;
  auto ln = nn::layer_norm::make(p, "ln", 4);
  array<float> x({2, 5}), y({2, 4}); // (N,5) (N,C)
  CHECK_THROWS_WITH_AS(ln.forward(x.cview(), y.view()), doctest::Contains("(N,4)"), shape_error);
  CHECK_THROWS_AS(nn::rms_norm::make(p, "rn", 4, -1.0f), config_error);
  CHECK_THROWS_AS(nn::layer_norm::make(p, "l0", 0), config_error);
  auto e = nn::embedding::make(p, "emb", 3, 4, gen);
  const std::int64_t bad[] = {0, 3};
  array<float> ye({2, 4}); // (N,D)
  CHECK_THROWS_WITH_AS(e.forward(bad, ye.view()), doctest::Contains("id 3 at position 1"), lookup_error);
  const std::int64_t one[] = {1};
  CHECK_THROWS_AS(e.forward(one, ye.view()), shape_error);
}
