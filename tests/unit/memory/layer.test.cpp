// SPDX-License-Identifier: MIT
// memory::layer: the wiring (projections, short causal convolutions, l2 normalisation, gates,
// per-head modules, output norm and gate, output projection) against the same equations written
// here in double precision; streaming; thread-count independence; weights by name; state bytes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/memory/memory.hpp"

using namespace membound;

namespace {

array<float> randn(index_t r, index_t c, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  array<float> a({r, c});
  for (float& x : a.view().span()) x = nd(g);
  return a;
}
double rel(view<const float> a, view<const float> b) {
  double num = 0.0, den = 0.0;
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t j = 0; j < a.extent(1); ++j) {
      num = std::max(num, std::fabs(double(a(i, j)) - b(i, j)));
      den = std::max(den, std::fabs(double(b(i, j))));
    }
  return num / den;
}
double sig(double z) { return 1.0 / (1.0 + std::exp(-z)); }

using titans_layer = memory::layer<memory::titans>;
using atlas_layer = memory::layer<memory::atlas>;

} // namespace

TEST_CASE("memory layer follows its documented equations") {
  memory::layer_config cfg{8, 2, 4, 4, 0.5f};
  memory::mlp_memory a;
  a.hidden_dim = 6;
  titans_layer L(cfg, a, {}, {}, {}, {}, 7);
  const index_t T = 11, d = 8, H = 2, dh = 4, C = 8, K = 4;
  const array<float> x = randn(T, d, 3);
  array<float> y({T, d});
  L.forward(x.cview(), y.view());
  const nn::parameters& p = L.parameters();
  // q, k, v: projection, causal conv with zero history, silu, l2 norm of q and k per head
  std::vector<array<float>> u;
  const char* proj[3] = {"q_proj.weight", "k_proj.weight", "v_proj.weight"};
  const char* conv[3] = {"q_conv.weight", "k_conv.weight", "v_conv.weight"};
  for (int s = 0; s < 3; ++s) {
    const view<const float> w = p.value(proj[s]), cw = p.value(conv[s]);
    std::vector<double> pr(static_cast<std::size_t>(T * C));
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < C; ++c) {
        double z = 0.0;
        for (index_t j = 0; j < d; ++j) z += double(w(c, j)) * x(t, j);
        pr[static_cast<std::size_t>(t * C + c)] = z;
      }
    array<float> out({T, C});
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < C; ++c) {
        double z = 0.0;
        for (index_t i = 0; i < K; ++i) {
          const index_t src = t - (K - 1) + i;
          if (src >= 0) z += double(cw(c, i)) * pr[static_cast<std::size_t>(src * C + c)];
        }
        out(t, c) = static_cast<float>(z * sig(z));
      }
    if (s < 2)
      for (index_t t = 0; t < T; ++t)
        for (index_t h = 0; h < H; ++h) {
          double ss = 0.0;
          for (index_t j = 0; j < dh; ++j) ss += double(out(t, h * dh + j)) * out(t, h * dh + j);
          for (index_t j = 0; j < dh; ++j) out(t, h * dh + j) = static_cast<float>(out(t, h * dh + j) / std::sqrt(ss + 1e-6));
        }
    u.push_back(std::move(out));
  }
  // per head: gates, a fresh module from the layer's initial memory weights, norm and gate
  array<float> o({T, C});
  for (index_t h = 0; h < H; ++h) {
    std::vector<float> ga[3];
    const char* gn[3] = {"alpha_proj", "eta_proj", "theta_proj"};
    const float scale[3] = {1.0f, 0.5f, 1.0f};
    for (int gi = 0; gi < 3; ++gi) {
      const view<const float> w = p.value(std::string(gn[gi]) + ".weight"), b = p.value(std::string(gn[gi]) + ".bias");
      for (index_t t = 0; t < T; ++t) {
        double z = b(h);
        for (index_t j = 0; j < d; ++j) z += double(w(h, j)) * x(t, j);
        ga[gi].push_back(static_cast<float>(scale[gi] * sig(z)));
      }
    }
    memory::titans m(dh, dh, a);
    for (std::size_t l = 0; l < 2; ++l) {
      const view<const float> w = p.value("memory.weight" + std::to_string(l));
      std::copy_n(w.data(), w.size(), m.weight(l).data());
    }
    memory::gates g;
    g.alpha = ga[0];
    g.eta = ga[1];
    g.theta = ga[2];
    view<float> oh = o.view().slice(1, h * dh, (h + 1) * dh);
    m.forward(u[0].cview().slice(1, h * dh, (h + 1) * dh), u[1].cview().slice(1, h * dh, (h + 1) * dh),
              u[2].cview().slice(1, h * dh, (h + 1) * dh), g, oh);
    const view<const float> gw = p.value("g_proj.weight"), nw = p.value("o_norm.weight");
    for (index_t t = 0; t < T; ++t) {
      double ss = 0.0;
      for (index_t j = 0; j < dh; ++j) ss += double(oh(t, j)) * oh(t, j);
      for (index_t j = 0; j < dh; ++j) {
        double z = 0.0;
        for (index_t i = 0; i < d; ++i) z += double(gw(h * dh + j, i)) * x(t, i);
        oh(t, j) = static_cast<float>(oh(t, j) / std::sqrt(ss / dh + 1e-6) * nw(j) * z * sig(z));
      }
    }
  }
  array<float> yr({T, d});
  const view<const float> wo = p.value("o_proj.weight");
  for (index_t t = 0; t < T; ++t)
    for (index_t i = 0; i < d; ++i) {
      double z = 0.0;
      for (index_t c = 0; c < C; ++c) z += double(wo(i, c)) * o(t, c);
      yr(t, i) = static_cast<float>(z);
    }
  CHECK(rel(y.cview(), yr.cview()) <= 1e-4);
  // state: two heads' memories (W0 6x4, W1 4x6 and momenta) and 3 rows of q, k, v projections
  CHECK(L.state_bytes() == static_cast<std::size_t>(2 * 4 * 24 + 3 * 3 * C) * sizeof(float));
}

TEST_CASE("memory layer: streaming, thread counts, weights by name") {
  memory::layer_config cfg{12, 3, 4, 4, 0.3f};
  memory::mlp_memory a;
  a.hidden_dim = 8;
  memory::module_options o;
  o.mode = memory::execution::chunked;
  o.chunk = 8;
  atlas_layer L(cfg, a, memory::omega{3}, {}, {}, o, 11);
  const index_t T = 24;
  const array<float> x = randn(T, 12, 5);
  array<float> y1({T, 12}), y2({T, 12});
  L.forward(x.cview(), y1.view());
  L.reset();
  L.forward(x.cview().slice(0, 0, 8), y2.view().slice(0, 0, 8));
  L.forward(x.cview().slice(0, 8, T), y2.view().slice(0, 8, T));
  CHECK(rel(y2.cview(), y1.cview()) <= 1e-6);
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  for (int th : {1, 2, 3}) {
    omp_set_num_threads(th);
    L.reset();
    L.forward(x.cview(), y2.view());
    CAPTURE(th);
    CHECK(rel(y2.cview(), y1.cview()) == 0.0);
  }
  omp_set_num_threads(before);
#endif
  // Save by name, load into a layer with other random weights: the same outputs.
  const std::vector<std::byte> bytes = L.parameters().to_bytes();
  atlas_layer L2(cfg, a, memory::omega{3}, {}, {}, o, 99);
  L2.load(io::safetensors::from_buffer(bytes));
  L2.forward(x.cview(), y2.view());
  CHECK(rel(y2.cview(), y1.cview()) == 0.0);
  // A checkpoint of another shape names the tensor; one without a tensor this layer needs too.
  atlas_layer L3(memory::layer_config{12, 2, 4, 4, 0.3f}, a, memory::omega{3}, {}, {}, o);
  CHECK_THROWS_WITH_AS(L3.load(io::safetensors::from_buffer(bytes)), doctest::Contains("q_proj.weight"), shape_error);
  memory::layer<memory::module<memory::mlp_memory, memory::omega, memory::polynomial_features, memory::gd>> L4(
      cfg, a, memory::omega{3}, {}, {}, o);
  CHECK_THROWS_WITH_AS(L4.load(io::safetensors::from_buffer(bytes)), doctest::Contains("theta_proj"), lookup_error);
  // Bad input
  array<float> bad({4, 11});
  CHECK_THROWS_AS(L.forward(bad.cview(), y1.view().slice(0, 0, 4)), shape_error);
  array<float> nanx = randn(4, 12, 1);
  nanx(1, 2) = NAN;
  CHECK_THROWS_AS(L.forward(nanx.cview(), y1.view().slice(0, 0, 4)), config_error);
  CHECK_THROWS_AS((titans_layer(memory::layer_config{0, 1, 4}, {})), config_error);
}
