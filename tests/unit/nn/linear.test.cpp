// SPDX-License-Identifier: MIT
// nn/linear.hpp and nn/activation.hpp: forward against PyTorch (tools/make_nn_layer_fixtures.py),
// MLP gradients against PyTorch autograd, every backward against central finite differences
// (double accumulation over the float layer), and bad shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/nn/linear.hpp"
#include "fixtures.hpp"

using namespace membound;

using test::check_close;
using test::fill;

namespace {
nlohmann::json fixtures() { return test::layer_fixtures(); }
const std::pair<const char*, nn::activation> all_acts[] = {
    {"identity", nn::activation::identity}, {"relu", nn::activation::relu},   {"gelu_tanh", nn::activation::gelu_tanh},
    {"gelu_erf", nn::activation::gelu_erf}, {"silu", nn::activation::silu},   {"sigmoid", nn::activation::sigmoid}};
} // namespace

TEST_CASE("linear + activation forward matches PyTorch") {
  const auto fx = fixtures()["linear"];
  std::mt19937 gen(1);
  for (const auto& entry : all_acts) {
    const char* name = entry.first; // (clang 14 cannot capture structured bindings in CAPTURE)
    const nn::activation act = entry.second;
    CAPTURE(name);
    nn::parameters p;
    auto l = nn::linear::make(p, "fc", 5, 3, true, act, gen);
    fill(l.weight, fx["w"]);
    fill(l.bias, fx["b"]);
    array<float> x({4, 5}), z({4, 3}), y({4, 3}); // (N,C_in) (N,C_out) (N,C_out)
    fill(x.view(), fx["x"]);
    l.forward(x.cview(), z.view(), y.view());
    check_close(y.cview(), fx["y"][name]);
  }
}

TEST_CASE("mlp forward and backward match PyTorch autograd") {
  const auto fx = fixtures()["mlp"];
  std::mt19937 gen(2);
  nn::parameters p;
  auto m = nn::mlp::make(p, "mlp", {5, 8, 8, 2}, nn::activation::gelu_tanh, nn::activation::identity, gen);
  for (std::size_t l = 0; l < 3; ++l) {
    fill(m.layers[l].weight, fx["w"][l]);
    fill(m.layers[l].bias, fx["b"][l]);
  }
  array<float> x({4, 5}), out({4, 2}), dout({4, 2}), dx({4, 5}); // (N,C_0) (N,C_n) (N,C_n) (N,C_0)
  fill(x.view(), fx["x"]);
  fill(dout.view(), fx["dout"]);
  m.reserve(4);
  m.forward(x.cview(), out.view());
  check_close(out.cview(), fx["out"]);
  m.backward(x.cview(), dout.cview(), dx.view());
  check_close(dx.cview(), fx["dx"], 5e-5);
  for (std::size_t l = 0; l < 3; ++l) {
    check_close(m.layers[l].grad_weight, fx["dw"][l], 5e-5);
    check_close(m.layers[l].grad_bias, fx["db"][l], 5e-5);
  }
}

TEST_CASE("linear and mlp backward equal central finite differences") {
  // L = sum_ij R_ij out_ij accumulated in double; the float forward limits the step to h = 1e-2
  // (relative error of a difference ~ 1e-7 * |L| / h), so the tolerance is 2e-3 of the gradient
  // scale. Smooth activations only (ReLU's kink makes differences meaningless near 0).
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto act : {nn::activation::identity, nn::activation::gelu_erf, nn::activation::silu, nn::activation::sigmoid}) {
    CAPTURE(nn::activation_name(act));
    nn::parameters p;
    auto m = nn::mlp::make(p, "m", {3, 6, 4}, act, act, gen);
    array<float> x({5, 3}), out({5, 4}), r({5, 4}), dx({5, 3}); // (N,C_0) (N,C_n) (N,C_n) (N,C_0)
    for (auto& v : x.span()) v = nd(gen);
    for (auto& v : r.span()) v = nd(gen);
    auto loss = [&] {
      m.forward(x.cview(), out.view());
      double s = 0;
      for (index_t i = 0; i < out.size(); ++i) s += static_cast<double>(out[i]) * r[i];
      return s;
    };
    p.zero_grad();
    loss();
    m.backward(x.cview(), r.cview(), dx.view());
    const double h = 1e-2;
    auto check_param = [&](float* v, float g) {
      const float keep = *v;
      *v = keep + static_cast<float>(h);
      const double up = loss();
      *v = keep - static_cast<float>(h);
      const double down = loss();
      *v = keep;
      CHECK(std::abs((up - down) / (2 * h) - g) <= 2e-3 * (1 + std::abs(g)));
    };
    for (index_t i = 0; i < x.size(); ++i) check_param(&x[i], dx[i]);
    for (std::size_t k = 0; k < p.size(); ++k)
      for (index_t i = 0; i < p[k].value.size(); ++i) check_param(&p[k].value[i], p[k].grad[i]);
  }
}

TEST_CASE("linear: gradients accumulate; bad shapes are typed errors naming both shapes") {
  std::mt19937 gen(4);
  nn::parameters p;
  auto l = nn::linear::make(p, "fc", 4, 2, false, nn::activation::identity, gen);
  CHECK_FALSE(p.contains("fc.bias"));
  array<float> x({3, 4}), y({3, 2}), dy({3, 2}), dz({3, 2}); // (N,C_in) (N,C_out) ...
  x.fill(1.0f);
  dy.fill(1.0f);
  l.forward(x.cview(), y.view(), y.view());
  l.backward(x.cview(), y.cview(), dy.cview(), view<float>(), dz.view());
  l.backward(x.cview(), y.cview(), dy.cview(), view<float>(), dz.view());
  CHECK(l.grad_weight(1, 3) == 6.0f); // two passes of sum over 3 rows of 1 * 1
  array<float> bad({3, 5}); // (N,5)
  CHECK_THROWS_WITH_AS(l.forward(bad.cview(), y.view(), y.view()), doctest::Contains("expected (N,4)"), shape_error);
  array<float> ybad({2, 2}); // (2,C_out)
  CHECK_THROWS_WITH_AS(l.forward(x.cview(), ybad.view(), ybad.view()), doctest::Contains("expected (3,2)"), shape_error);
  CHECK_THROWS_AS(nn::linear::make(p, "z", 0, 2, true, nn::activation::relu, gen), config_error);
  auto m = nn::mlp::make(p, "m", {4, 2}, nn::activation::relu, nn::activation::identity, gen);
  m.reserve(2);
  CHECK_THROWS_AS(m.forward(x.cview(), y.view()), budget_error); // 3 rows > reserved 2
}
