// SPDX-License-Identifier: MIT
// memory/: feature maps, architectures, rules, optimisers and memory::module in both modes, checked
// against (a) PyTorch fixtures with autograd inner gradients (tests/fixtures/memory/memory_fixtures.json,
// written by tools/make_memory_fixtures.py), (b) an independent double-precision token loop written
// here (hand-derived MLP gradients, frozen gradient point per chunk), (c) each named configuration's
// one-line recurrence, (d) central finite differences of the inner loss.
#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/memory/memory.hpp"

using namespace membound;
using Md = Eigen::MatrixXd;
using Vd = Eigen::VectorXd;

namespace {

// ------------------------------------------------------------------------------------------------
// helpers

array<float> randn(index_t r, index_t c, std::mt19937& g, float s = 0.5f) {
  array<float> a({r, c});
  std::normal_distribution<float> nd(0.0f, s);
  for (float& x : a.view().span()) x = nd(g);
  return a;
}
std::vector<float> uniform(index_t n, float lo, float hi, std::mt19937& g) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = u(g);
  return v;
}
/// max|a - b| / max|b| over two equally shaped views.
double rel_err(view<const float> a, const Md& b) {
  double num = 0.0, den = 0.0;
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t j = 0; j < a.extent(1); ++j) {
      num = std::max(num, std::fabs(double(a(i, j)) - b(i, j)));
      den = std::max(den, std::fabs(b(i, j)));
    }
  return num / std::max(den, 1e-30);
}
double rel_err(view<const float> a, view<const float> b) {
  Md m(b.extent(0), b.extent(1));
  for (index_t i = 0; i < b.extent(0); ++i)
    for (index_t j = 0; j < b.extent(1); ++j) m(i, j) = b(i, j);
  return rel_err(a, m);
}
Md to_md(view<const float> a) {
  Md m(a.extent(0), a.extent(1));
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t j = 0; j < a.extent(1); ++j) m(i, j) = a(i, j);
  return m;
}

// ------------------------------------------------------------------------------------------------
// An independent reference: the frozen-gradient token loop in double precision.

double act_f(nn::activation a, double z) {
  switch (a) {
  case nn::activation::silu: return z / (1.0 + std::exp(-z));
  case nn::activation::gelu_erf: return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
  case nn::activation::gelu_tanh: return 0.5 * z * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
  default: return z;
  }
}
double act_d(nn::activation a, double z) {
  const double h = 1e-5; // the derivative by a central difference of the double formula (accurate to ~1e-10)
  return (act_f(a, z + h) - act_f(a, z - h)) / (2 * h);
}

struct ref_config {
  std::string memory = "matrix"; // matrix | mlp | gated_mlp
  int depth = 2;
  nn::activation act = nn::activation::gelu_erf;
  bool residual = false;
  bool l2 = true;
  index_t window = 1; // 0: unbounded
  std::string opt = "gd"; // gd | momentum | muon | implicit
  int ns_steps = 5;
};

struct ref_state {
  std::vector<Md> w, s;
};

/// M(x) for one token, keeping layer inputs and pre-activations.
Vd ref_forward(const ref_config& c, const std::vector<Md>& w, const Vd& x, std::vector<Vd>* in, std::vector<Vd>* pre) {
  if (in) in->clear();
  if (pre) pre->clear();
  Vd y;
  if (c.memory == "matrix") {
    if (in) in->push_back(x);
    y = w[0] * x;
  } else if (c.memory == "mlp") {
    Vd h = x;
    for (int l = 0; l < c.depth; ++l) {
      if (in) in->push_back(h);
      Vd z = w[static_cast<std::size_t>(l)] * h;
      if (pre) pre->push_back(z);
      if (l + 1 < c.depth) {
        h = z;
        for (Eigen::Index j = 0; j < h.size(); ++j) h(j) = act_f(c.act, z(j));
      } else {
        y = z;
      }
    }
  } else { // gated
    Vd za = w[0] * x, zb = w[1] * x, h(za.size());
    for (Eigen::Index j = 0; j < h.size(); ++j) h(j) = act_f(c.act, za(j)) * zb(j);
    if (in) *in = {x, x, h};
    if (pre) *pre = {za, zb};
    y = w[2] * h;
  }
  if (c.residual && y.size() == x.size()) y += x;
  return y;
}

/// Adds gamma * dl/dW for one token to g.
void ref_grad(const ref_config& c, const std::vector<Md>& w, const Vd& x, const Vd& v, double gamma, std::vector<Md>& g) {
  std::vector<Vd> in, pre;
  const Vd y = ref_forward(c, w, x, &in, &pre);
  const Vd e = c.l2 ? Vd(y - v) : Vd(-v);
  if (c.memory == "matrix") {
    g[0] += gamma * e * in[0].transpose();
  } else if (c.memory == "mlp") {
    Vd d = e;
    for (int l = c.depth - 1; l >= 0; --l) {
      const auto L = static_cast<std::size_t>(l);
      g[L] += gamma * d * in[L].transpose();
      if (l > 0) {
        Vd dh = w[L].transpose() * d;
        for (Eigen::Index j = 0; j < dh.size(); ++j) dh(j) *= act_d(c.act, pre[L - 1](j));
        d = dh;
      }
    }
  } else {
    g[2] += gamma * e * in[2].transpose();
    const Vd gh = w[2].transpose() * e;
    Vd da(gh.size()), db(gh.size());
    for (Eigen::Index j = 0; j < gh.size(); ++j) {
      da(j) = gh(j) * pre[1](j) * act_d(c.act, pre[0](j));
      db(j) = gh(j) * act_f(c.act, pre[0](j));
    }
    g[0] += gamma * da * x.transpose();
    g[1] += gamma * db * x.transpose();
  }
}

Md ref_ns(const Md& gin, int steps) {
  const bool tall = gin.rows() > gin.cols();
  Md x = tall ? Md(gin.transpose()) : gin;
  x /= (x.norm() + 1e-7);
  for (int s = 0; s < steps; ++s) {
    const Md a = x * x.transpose();
    const Md b = -4.7750 * a + 2.0315 * a * a;
    x = 3.4445 * x + b * x;
  }
  return tall ? Md(x.transpose()) : x;
}

/// Runs the token loop; chunk 0 = recurrent (gradient at M_{t-1}), else gradient at the chunk start.
/// phi_k, phi_q (T,D) are the features; gamma(t, j) the weight of token t-j in step t.
template <class Gamma>
Md ref_run(const ref_config& c, ref_state& st, const Md& phi_q, const Md& phi_k, const Md& v, const std::vector<double>& alpha,
           const std::vector<double>& eta, const std::vector<double>& theta, Gamma&& gamma, index_t chunk) {
  const index_t T = phi_q.rows();
  Md y(T, v.cols());
  std::vector<Md> frozen = st.w;
  for (index_t t = 0; t < T; ++t) {
    if (chunk == 0 || t % chunk == 0) frozen = st.w;
    std::vector<Md> g;
    for (const Md& m : st.w) g.push_back(Md::Zero(m.rows(), m.cols()));
    const index_t i0 = c.window == 0 ? 0 : std::max<index_t>(0, t - c.window + 1);
    for (index_t i = i0; i <= t; ++i) ref_grad(c, frozen, phi_k.row(i).transpose(), v.row(i).transpose(), gamma(t, t - i), g);
    const auto T_ = static_cast<std::size_t>(t);
    double e = eta[T_];
    if (c.opt == "implicit") e = e / (1.0 + e * phi_k.row(t).squaredNorm());
    for (std::size_t l = 0; l < st.w.size(); ++l) {
      if (c.opt == "gd" || c.opt == "implicit") {
        st.w[l] = alpha[T_] * st.w[l] - e * g[l];
      } else if (c.opt == "momentum") {
        st.s[l] = theta[T_] * st.s[l] - e * g[l];
        st.w[l] = alpha[T_] * st.w[l] + st.s[l];
      } else {
        st.s[l] = theta[T_] * st.s[l] + g[l];
        st.w[l] = alpha[T_] * st.w[l] - e * ref_ns(st.s[l], c.ns_steps);
      }
    }
    y.row(t) = ref_forward(c, st.w, phi_q.row(t).transpose(), nullptr, nullptr).transpose();
  }
  return y;
}

template <class M>
ref_state ref_state_of(const M& m) {
  ref_state s;
  for (std::size_t l = 0; l < m.layer_shapes().size(); ++l) {
    s.w.push_back(to_md(m.weight(l)));
    s.s.push_back(Md::Zero(s.w.back().rows(), s.w.back().cols()));
  }
  return s;
}
template <class M>
Md features_of(M& m, view<const float> x) {
  array<float> out({x.extent(0), m.feature_dim()});
  m.features().apply(x, out.view());
  return to_md(out.cview());
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

/// Compares module M in the given mode with the double token loop on random data.
template <class M>
void check_against_reference(M& m, const ref_config& rc, index_t T, index_t chunk, bool band, std::uint32_t seed,
                             double tol = 1e-4) {
  std::mt19937 g(seed);
  const index_t dk = m.key_dim(), dv = m.value_dim();
  array<float> q = randn(T, dk, g), k = randn(T, dk, g), v = randn(T, dv, g), y({T, dv});
  const auto alpha = uniform(T, 0.9f, 1.0f, g), eta = uniform(T, 0.02f, 0.2f, g), theta = uniform(T, 0.5f, 0.9f, g);
  const index_t c = rc.window == 0 ? 1 : rc.window;
  array<float> gb({T, c});
  std::uniform_real_distribution<float> u(0.3f, 1.0f);
  for (float& x : gb.view().span()) x = u(g);
  memory::gates gt;
  gt.alpha = alpha;
  gt.eta = eta;
  gt.theta = theta;
  if (band) gt.gamma = gb.cview();
  m.reset();
  ref_state st = ref_state_of(m);
  m.options().mode = chunk == 0 ? memory::execution::recurrent : memory::execution::chunked;
  if (chunk > 0) m.options().chunk = chunk;
  m.forward(q.cview(), k.cview(), v.cview(), gt, y.view());
  const Md yr = ref_run(rc, st, features_of(m, q.cview()), features_of(m, k.cview()), to_md(v.cview()), widen(alpha),
                        widen(eta), widen(theta), [&](index_t t, index_t j) { return band ? double(gb(t, j)) : 1.0; }, chunk);
  CAPTURE(chunk);
  CHECK(rel_err(y.cview(), yr) <= tol);
  for (std::size_t l = 0; l < st.w.size(); ++l) CHECK(rel_err(m.weight(l), st.w[l]) <= tol);
  if constexpr (M::has_momentum)
    for (std::size_t l = 0; l < st.s.size(); ++l) CHECK(rel_err(m.momentum_state(l), st.s[l]) <= tol);
}

// ------------------------------------------------------------------------------------------------
// fixtures

nlohmann::json memory_fixtures() {
  std::ifstream f(MEMBOUND_FIXTURES_DIR "/memory/memory_fixtures.json");
  REQUIRE_MESSAGE(f.good(), "missing " MEMBOUND_FIXTURES_DIR "/memory/memory_fixtures.json");
  return nlohmann::json::parse(f);
}
std::vector<float> fvec(const nlohmann::json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(x.get<float>());
  return v;
}
array<float> fmat(const nlohmann::json& j, index_t r, index_t c) {
  array<float> a({r, c});
  const std::vector<float> v = fvec(j);
  REQUIRE(static_cast<index_t>(v.size()) == r * c);
  std::copy(v.begin(), v.end(), a.data());
  return a;
}
nn::activation act_of(const std::string& s) {
  if (s == "silu") return nn::activation::silu;
  if (s == "gelu_tanh") return nn::activation::gelu_tanh;
  return nn::activation::gelu_erf;
}

template <class M>
void check_fixture_case(M& m, const nlohmann::json& c) {
  const index_t T = c["T"], dk = c["d_k"], dv = c["d_v"], window = c["window"];
  const array<float> q = fmat(c["q"], T, dk), k = fmat(c["k"], T, dk), v = fmat(c["v"], T, dv);
  const std::vector<float> alpha = fvec(c["alpha"]), eta = fvec(c["eta"]), theta = fvec(c["theta"]);
  const array<float> band = fmat(c["gamma"], T, window);
  REQUIRE(m.layer_shapes().size() == c["weights0"].size());
  for (std::size_t l = 0; l < m.layer_shapes().size(); ++l) {
    const array<float> w0 = fmat(c["weights0"][l], m.layer_shapes()[l].rows, m.layer_shapes()[l].cols);
    std::copy_n(w0.data(), w0.size(), m.weight(l).data());
  }
  m.set_initial();
  memory::gates g;
  g.alpha = alpha;
  g.eta = eta;
  g.theta = theta;
  if (c["gamma_mode"] == "band") g.gamma = band.cview();
  for (const char* mode : {"recurrent", "chunked"}) {
    CAPTURE(mode);
    m.reset();
    m.options().mode = std::string(mode) == "recurrent" ? memory::execution::recurrent : memory::execution::chunked;
    m.options().chunk = c["chunk_size"];
    array<float> y({T, dv});
    m.forward(q.cview(), k.cview(), v.cview(), g, y.view());
    const nlohmann::json& ref = c[mode];
    CHECK(rel_err(y.cview(), fmat(ref["y"], T, dv).cview()) <= 1e-4);
    for (std::size_t l = 0; l < m.layer_shapes().size(); ++l) {
      const array<float> w = fmat(ref["weights"][l], m.layer_shapes()[l].rows, m.layer_shapes()[l].cols);
      CHECK(rel_err(m.weight(l), w.cview()) <= 1e-4);
      if constexpr (M::has_momentum) {
        const array<float> s = fmat(ref["momentum"][l], m.layer_shapes()[l].rows, m.layer_shapes()[l].cols);
        CHECK(rel_err(m.momentum_state(l), s.cview()) <= 1e-4);
      }
    }
  }
}

} // namespace

// ================================================================================================

TEST_CASE("memory feature maps: polynomial dimension, order, scaling and kernel") {
  for (index_t d : {1, 3, 4, 16, 64})
    for (int p : {0, 1, 2, 3}) {
      memory::polynomial_features f;
      f.degree = p;
      double binom = 1.0;
      for (int i = 1; i <= p; ++i) binom = binom * double(d + i) / i;
      CHECK(f.dim(d) == static_cast<index_t>(std::llround(binom)));
    }
  memory::polynomial_features p3;
  p3.degree = 3;
  CHECK(p3.dim(64) == 47905);
  // Ordering and scaling against the PyTorch fixture (itertools.combinations_with_replacement).
  const nlohmann::json all = memory_fixtures();
  for (const auto& c : all["poly_features"]) {
    memory::polynomial_features f;
    f.degree = c["degree"];
    f.coefficients = fvec(c["coeffs"]);
    const index_t d = c["d_k"];
    f.prepare(d);
    const std::vector<float> x = fvec(c["x"]), phi = fvec(c["phi"]);
    array<float> out({1, f.dim(d)});
    f.apply(view<const float>(x.data(), {1, d}), out.view());
    REQUIRE(static_cast<index_t>(phi.size()) == out.size());
    for (std::size_t i = 0; i < phi.size(); ++i) CHECK(out.data()[i] == doctest::Approx(phi[i]).epsilon(1e-6));
  }
  // The kernel identity phi(q) . phi(k) = sum_i a_i (q.k)^i with learnable (non-default) a_i.
  std::mt19937 g(3);
  memory::polynomial_features f;
  f.degree = 3;
  f.coefficients = {0.5f, 2.0f, 0.25f, 1.5f};
  f.prepare(5);
  const array<float> x = randn(2, 5, g);
  array<float> phi({2, f.dim(5)});
  f.apply(x.cview(), phi.view());
  double qk = 0.0, dot = 0.0;
  for (index_t j = 0; j < 5; ++j) qk += double(x(0, j)) * x(1, j);
  for (index_t j = 0; j < f.dim(5); ++j) dot += double(phi(0, j)) * phi(1, j);
  CHECK(dot == doctest::Approx(0.5 + 2.0 * qk + 0.25 * qk * qk + 1.5 * qk * qk * qk).epsilon(1e-5));
  // exp_taylor is the truncated exponential kernel.
  memory::exp_taylor_features e;
  e.prepare(5);
  f.apply(x.cview(), phi.view()); // reuse shapes: exp_taylor has degree 2
  array<float> pe({2, e.dim(5)});
  e.apply(x.cview(), pe.view());
  dot = 0.0;
  for (index_t j = 0; j < e.dim(5); ++j) dot += double(pe(0, j)) * pe(1, j);
  CHECK(dot == doctest::Approx(1.0 + qk + qk * qk / 2.0).epsilon(1e-5));
  // elu + 1
  memory::elu_plus_one el;
  el.prepare(2);
  const float xin[2] = {0.5f, -1.0f};
  float yout[2];
  el.apply(view<const float>(xin, {1, 2}), view<float>(yout, {1, 2}));
  CHECK(yout[0] == doctest::Approx(1.5));
  CHECK(yout[1] == doctest::Approx(std::exp(-1.0)));
}

TEST_CASE("memory module matches the PyTorch reference (autograd inner gradients) in both modes") {
  const nlohmann::json all = memory_fixtures();
  int seen = 0;
  for (const auto& c : all["cases"]) {
    const std::string name = c["name"];
    CAPTURE(name);
    const index_t dk = c["d_k"], dv = c["d_v"];
    memory::mlp_memory mlp;
    mlp.depth = c["depth"];
    mlp.hidden_dim = c["hidden"];
    mlp.act = act_of(c["activation"]);
    mlp.residual = c["residual"];
    memory::polynomial_features poly;
    poly.degree = c["poly_degree"];
    poly.coefficients = fvec(c["poly_coeffs"]);
    memory::muon mu;
    mu.steps = c["ns_steps"];
    if (name == "titans" || name == "titans_residual") {
      memory::titans m(dk, dv, mlp);
      check_fixture_case(m, c);
    } else if (name == "atlas") {
      memory::atlas m(dk, dv, mlp, memory::omega{c["window"]}, poly, mu);
      check_fixture_case(m, c);
    } else if (name == "atlas_deep") {
      memory::module<memory::mlp_memory, memory::omega, memory::identity_features, memory::muon> m(
          dk, dv, mlp, memory::omega{c["window"]}, {}, mu);
      check_fixture_case(m, c);
    } else if (name == "omega_matrix") {
      memory::module<memory::matrix_memory, memory::omega, memory::polynomial_features, memory::gd> m(
          dk, dv, {}, memory::omega{c["window"]}, poly);
      check_fixture_case(m, c);
    } else if (name == "gated_dot") {
      memory::gated_mlp_memory gm;
      gm.hidden_dim = c["hidden"];
      gm.act = act_of(c["activation"]);
      gm.residual = c["residual"];
      memory::module<memory::gated_mlp_memory, memory::dot_product, memory::elu_plus_one, memory::gd> m(
          dk, dv, gm, memory::dot_product{c["window"]});
      check_fixture_case(m, c);
    } else {
      FAIL("unknown fixture case " << name);
    }
    ++seen;
  }
  CHECK(seen == 6);
}

TEST_CASE("memory named configurations follow their one-line recurrences (matrix memory)") {
  std::mt19937 g(11);
  const index_t T = 17, d = 6;
  array<float> q = randn(T, d, g), k = randn(T, d, g), v = randn(T, d, g), y({T, d});
  const auto alpha = uniform(T, 0.8f, 1.0f, g), eta = uniform(T, 0.05f, 0.5f, g);
  auto vec = [](view<const float> a, index_t t) { return Vd(to_md(a.slice(0, t, t + 1)).transpose()); };
  auto run = [&](auto& m, auto&& step, bool with_alpha) {
    memory::gates gt;
    gt.eta = eta;
    if (with_alpha) gt.alpha = alpha;
    m.forward(q.cview(), k.cview(), v.cview(), gt, y.view());
    Md M = Md::Zero(d, d), yr(T, d);
    for (index_t t = 0; t < T; ++t) {
      const Vd kt = vec(k.cview(), t), vt = vec(v.cview(), t), qt = vec(q.cview(), t);
      const double a = with_alpha ? alpha[static_cast<std::size_t>(t)] : 1.0, e = eta[static_cast<std::size_t>(t)];
      M = step(M, kt, vt, a, e);
      yr.row(t) = (M * qt).transpose();
    }
    CHECK(rel_err(y.cview(), yr) <= 1e-5);
  };
  SUBCASE("linear_attention: M = alpha M + eta v k^T") {
    memory::linear_attention m(d, d);
    run(m, [](const Md& M, const Vd& kt, const Vd& vt, double a, double e) -> Md { return a * M + e * vt * kt.transpose(); }, true);
  }
  SUBCASE("delta_net: M = M (I - eta k k^T) + eta v k^T") {
    memory::delta_net m(d, d);
    run(m, [&](const Md& M, const Vd& kt, const Vd& vt, double, double e) -> Md {
      return M * (Md::Identity(d, d) - e * kt * kt.transpose()) + e * vt * kt.transpose(); }, false);
  }
  SUBCASE("gated_delta_net (ATLAS framing): M = M (alpha I - eta k k^T) + eta v k^T") {
    memory::gated_delta_net m(d, d);
    run(m, [&](const Md& M, const Vd& kt, const Vd& vt, double a, double e) -> Md {
      return M * (a * Md::Identity(d, d) - e * kt * kt.transpose()) + e * vt * kt.transpose(); }, true);
  }
  SUBCASE("longhorn: M = M (I - dt k k^T) + dt v k^T, dt = eta / (1 + eta k.k)") {
    memory::longhorn m(d, d);
    run(m, [&](const Md& M, const Vd& kt, const Vd& vt, double, double e) -> Md {
      const double dt = e / (1.0 + e * kt.squaredNorm());
      return M * (Md::Identity(d, d) - dt * kt * kt.transpose()) + dt * vt * kt.transpose(); }, false);
  }
  SUBCASE("omega c = 1 equals delta") {
    memory::module<memory::matrix_memory, memory::omega> om(d, d, {}, memory::omega{1});
    memory::delta_net dn(d, d);
    memory::gates gt;
    gt.eta = eta;
    gt.alpha = alpha;
    array<float> y2({T, d});
    om.forward(q.cview(), k.cview(), v.cview(), gt, y.view());
    dn.forward(q.cview(), k.cview(), v.cview(), gt, y2.view());
    CHECK(rel_err(y.cview(), y2.cview()) == 0.0);
  }
  SUBCASE("omega_net on matrix memory: M = M (alpha I - eta sum gamma phi phi^T) + eta sum gamma v phi^T") {
    const index_t c = 3;
    memory::module<memory::matrix_memory, memory::omega, memory::polynomial_features> m(d, d, {}, memory::omega{c});
    std::vector<float> gam = uniform(T, 0.2f, 1.0f, g);
    memory::gates gt;
    gt.eta = eta;
    gt.alpha = alpha;
    gt.gamma = gam;
    m.forward(q.cview(), k.cview(), v.cview(), gt, y.view());
    const Md pk = features_of(m, k.cview()), pq = features_of(m, q.cview());
    const index_t D = m.feature_dim();
    Md M = Md::Zero(d, D), yr(T, d);
    for (index_t t = 0; t < T; ++t) {
      Md A = alpha[static_cast<std::size_t>(t)] * Md::Identity(D, D), B = Md::Zero(d, D);
      for (index_t i = std::max<index_t>(0, t - c + 1); i <= t; ++i) {
        const double gi = gam[static_cast<std::size_t>(i)] * eta[static_cast<std::size_t>(t)];
        A -= gi * pk.row(i).transpose() * pk.row(i);
        B += gi * vec(v.cview(), i) * pk.row(i);
      }
      M = M * A + B;
      yr.row(t) = (M * pq.row(t).transpose()).transpose();
    }
    CHECK(rel_err(y.cview(), yr) <= 1e-5);
  }
  SUBCASE("deep_transformer on matrix memory is unnormalised attention with a truncated exp") {
    memory::module<memory::matrix_memory, memory::dot_product, memory::exp_taylor_features> m(d, d);
    array<float> qs({T, d}), ks({T, d});
    for (index_t i = 0; i < T * d; ++i) { qs.data()[i] = 0.3f * q.data()[i]; ks.data()[i] = 0.3f * k.data()[i]; }
    m.forward(qs.cview(), ks.cview(), v.cview(), {}, y.view());
    Md yr = Md::Zero(T, d);
    for (index_t t = 0; t < T; ++t)
      for (index_t i = 0; i <= t; ++i) {
        const double s = vec(qs.cview(), t).dot(vec(ks.cview(), i));
        yr.row(t) += (1.0 + s + s * s / 2.0) * vec(v.cview(), i).transpose();
      }
    CHECK(rel_err(y.cview(), yr) <= 1e-5);
  }
}

TEST_CASE("memory deep configurations match the double-precision token loop, recurrent and chunked") {
  const std::vector<index_t> chunks = {0, 1, 4, 5, 64};
  SUBCASE("titans (mlp, delta, momentum), with residual") {
    memory::mlp_memory a;
    a.hidden_dim = 12;
    ref_config rc{"mlp", 2, nn::activation::gelu_erf, true, true, 1, "momentum"};
    memory::titans m(6, 6, a);
    for (index_t ch : chunks) check_against_reference(m, rc, 23, ch, false, 5);
  }
  SUBCASE("omega_net (mlp depth 3, omega c = 4 with a gamma band, polynomial p = 2, gd)") {
    memory::mlp_memory a;
    a.depth = 3;
    a.hidden_dim = 10;
    a.act = nn::activation::silu;
    ref_config rc{"mlp", 3, nn::activation::silu, true, true, 4, "gd"};
    memory::omega_net m(3, 4, a, memory::omega{4});
    for (index_t ch : chunks) check_against_reference(m, rc, 23, ch, true, 6);
  }
  SUBCASE("atlas (mlp, omega c = 3, polynomial, muon)") {
    memory::mlp_memory a;
    a.hidden_dim = 8;
    ref_config rc{"mlp", 2, nn::activation::gelu_erf, true, true, 3, "muon"};
    memory::atlas m(3, 5, a, memory::omega{3});
    for (index_t ch : chunks) check_against_reference(m, rc, 19, ch, true, 7, 3e-4);
  }
  SUBCASE("atlas_pp (gated mlp, muon)") {
    memory::gated_mlp_memory a;
    a.hidden_dim = 7;
    ref_config rc{"gated_mlp", 2, nn::activation::gelu_erf, true, true, 2, "muon"};
    memory::atlas_pp m(3, 4, a, memory::omega{2});
    for (index_t ch : chunks) check_against_reference(m, rc, 15, ch, true, 8, 3e-4);
  }
  SUBCASE("deep_transformer (mlp, dot product, exp kernel) and dot (mlp, omega, exp kernel)") {
    memory::mlp_memory a;
    a.hidden_dim = 6;
    memory::deep_transformer m(4, 4, a);
    ref_config rc{"mlp", 2, nn::activation::gelu_erf, false, false, 1, "gd"};
    for (index_t ch : chunks) check_against_reference(m, rc, 17, ch, false, 9);
    memory::dot m2(4, 4, a, memory::omega{3});
    ref_config rc2{"mlp", 2, nn::activation::gelu_erf, false, true, 3, "gd"};
    for (index_t ch : chunks) check_against_reference(m2, rc2, 17, ch, true, 10);
  }
  SUBCASE("global rule (c = infinity) on matrix memory, and sliding-window linear attention") {
    memory::module<memory::matrix_memory, memory::global_least_squares> m(4, 3);
    ref_config rc{"matrix", 1, nn::activation::identity, false, true, 0, "gd"};
    for (index_t ch : chunks) check_against_reference(m, rc, 21, ch, false, 12);
    memory::module<memory::matrix_memory, memory::dot_product, memory::identity_features, memory::momentum> sw(
        4, 3, {}, memory::dot_product{3});
    ref_config rc2{"matrix", 1, nn::activation::identity, false, false, 3, "momentum"};
    for (index_t ch : chunks) check_against_reference(sw, rc2, 21, ch, true, 13);
  }
}

TEST_CASE("memory chunk size 1 equals the recurrent mode; streaming in pieces equals one call") {
  std::mt19937 g(21);
  const index_t T = 40, d = 5;
  array<float> q = randn(T, d, g), k = randn(T, d, g), v = randn(T, d, g), y1({T, d}), y2({T, d});
  memory::gates gt;
  gt.eta = 0.1f;
  gt.alpha = 0.97f;
  gt.theta = 0.6f;
  memory::mlp_memory a;
  a.hidden_dim = 9;
  memory::module<memory::mlp_memory, memory::omega, memory::identity_features, memory::momentum> m(d, d, a, memory::omega{5});
  m.forward(q.cview(), k.cview(), v.cview(), gt, y1.view());
  m.reset();
  m.options().mode = memory::execution::chunked;
  m.options().chunk = 1;
  m.forward(q.cview(), k.cview(), v.cview(), gt, y2.view());
  CHECK(rel_err(y2.cview(), y1.cview()) <= 1e-5);
  // chunk > 1 is a different algorithm: its outputs differ from the recurrent ones by far more than round-off
  m.reset();
  m.options().mode = memory::execution::recurrent;
  m.forward(q.cview(), k.cview(), v.cview(), gt, y1.view());
  m.reset();
  m.options().mode = memory::execution::chunked;
  m.options().chunk = 8;
  m.forward(q.cview(), k.cview(), v.cview(), gt, y2.view());
  CHECK(rel_err(y2.cview(), y1.cview()) > 1e-3);
  // Streaming: chunk 8, calls of 16 + 24 tokens (chunk boundaries line up) equal one call of 40;
  // the window history (c - 1 = 4 tokens) crosses the call boundary.
  m.reset();
  m.options().chunk = 8;
  m.forward(q.cview(), k.cview(), v.cview(), gt, y1.view());
  const std::size_t bytes = m.state_bytes();
  m.reset();
  m.forward(q.cview().slice(0, 0, 16), k.cview().slice(0, 0, 16), v.cview().slice(0, 0, 16), gt, y2.view().slice(0, 0, 16));
  m.forward(q.cview().slice(0, 16, T), k.cview().slice(0, 16, T), v.cview().slice(0, 16, T), gt, y2.view().slice(0, 16, T));
  CHECK(rel_err(y2.cview(), y1.cview()) == 0.0);
  // state: W0 (9,5), W1 (5,9), their momenta, and 4 history rows of (phi 5 + v 5 + gamma 1) floats
  CHECK(bytes == (2 * (45 + 45) + 4 * 11) * sizeof(float));
  CHECK(m.state_bytes() == bytes);
}

TEST_CASE("memory inner gradient equals central finite differences of the window loss") {
  // One GD step with alpha = 1, eta = 1 from known weights: W_1 - W_0 = -grad L_1 (recurrent mode).
  std::mt19937 g(31);
  const index_t d = 3, T = 1;
  memory::gated_mlp_memory a;
  a.hidden_dim = 4;
  a.act = nn::activation::gelu_tanh;
  memory::module<memory::gated_mlp_memory, memory::delta, memory::elu_plus_one, memory::gd> m(d, d, a);
  const array<float> q = randn(T, d, g), k = randn(T, d, g), v = randn(T, d, g);
  array<float> y({T, d});
  const Md pk = features_of(m, k.cview());
  std::vector<Md> w0;
  for (std::size_t l = 0; l < 3; ++l) w0.push_back(to_md(m.weight(l)));
  m.forward(q.cview(), k.cview(), v.cview(), {}, y.view());
  ref_config rc{"gated_mlp", 2, nn::activation::gelu_tanh, true, true, 1, "gd"};
  auto loss = [&](const std::vector<Md>& w) {
    const Vd out = ref_forward(rc, w, pk.row(0).transpose(), nullptr, nullptr);
    return 0.5 * (out - to_md(v.cview()).row(0).transpose()).squaredNorm();
  };
  for (std::size_t l = 0; l < 3; ++l)
    for (Eigen::Index i = 0; i < w0[l].rows(); ++i)
      for (Eigen::Index j = 0; j < w0[l].cols(); ++j) {
        std::vector<Md> wp = w0, wm = w0;
        const double h = 1e-6;
        wp[l](i, j) += h;
        wm[l](i, j) -= h;
        const double fd = (loss(wp) - loss(wm)) / (2 * h);
        const double step = double(m.weight(l)(i, j)) - w0[l](i, j);
        CHECK(-step == doctest::Approx(fd).epsilon(1e-3).scale(1e-4));
      }
}

TEST_CASE("memory Newton-Schulz: singular values after 5 steps, zero stays zero") {
  std::mt19937 g(41);
  for (auto [r, c] : {std::pair<index_t, index_t>{16, 40}, {40, 16}, {8, 8}}) {
    array<float> u = randn(r, c, g, 1.0f), out({r, c});
    nn::newton_schulz(u.cview(), out.view());
    const Eigen::JacobiSVD<Md> in_svd(to_md(u.cview())), out_svd(to_md(out.cview()));
    const double fro = to_md(u.cview()).norm();
    const Vd si = in_svd.singularValues(), so = out_svd.singularValues();
    for (Eigen::Index i = 0; i < si.size(); ++i) {
      if (si(i) / fro < 3e-3) continue;
      CHECK(so(i) >= 0.68);
      CHECK(so(i) <= 1.2);
    }
  }
  array<float> z({4, 6}), out({4, 6});
  nn::newton_schulz(z.cview(), out.view());
  for (float x : out.view().span()) CHECK(x == 0.0f);
}

TEST_CASE("memory bad input: typed errors naming the value") {
  std::mt19937 g(51);
  const index_t T = 4, d = 3;
  array<float> q = randn(T, d, g), k = randn(T, d, g), v = randn(T, d, g), y({T, d});
  memory::delta_net m(d, d);
  // mismatched dimensions
  array<float> k2 = randn(T, d + 1, g), v2 = randn(T + 1, d, g);
  CHECK_THROWS_AS(m.forward(q.cview(), k2.cview(), v.cview(), {}, y.view()), shape_error);
  CHECK_THROWS_AS(m.forward(q.cview(), k.cview(), v2.cview(), {}, y.view()), shape_error);
  // configuration
  memory::module_options o;
  o.chunk = 0;
  CHECK_THROWS_AS((memory::delta_net(d, d, {}, {}, {}, {}, o)), config_error);
  CHECK_THROWS_AS((memory::module<memory::matrix_memory, memory::omega>(d, d, {}, memory::omega{0})), config_error);
  CHECK_THROWS_AS((memory::delta_net(0, d)), config_error);
  memory::polynomial_features big;
  big.degree = 5; // C(69, 5) = 11,238,513 features > 2^20
  CHECK_THROWS_WITH_AS((memory::module<memory::matrix_memory, memory::delta, memory::polynomial_features>(64, 4, {}, {}, big)),
                       doctest::Contains("max_dim"), config_error);
  memory::polynomial_features neg;
  neg.coefficients = {1.0f, -1.0f, 0.5f};
  CHECK_THROWS_AS((memory::module<memory::matrix_memory, memory::delta, memory::polynomial_features>(4, 4, {}, {}, neg)), config_error);
  memory::mlp_memory shallow;
  shallow.depth = 1;
  CHECK_THROWS_AS((memory::titans(d, d, shallow)), config_error);
  CHECK_THROWS_AS((memory::longhorn(d, d, {}, {}, {}, {}, [] { memory::module_options x; x.chunk = -1; return x; }())), config_error);
  // NaN / Inf in inputs and gates
  array<float> qn = q;
  qn(2, 1) = std::nanf("");
  CHECK_THROWS_WITH_AS(m.forward(qn.cview(), k.cview(), v.cview(), {}, y.view()), doctest::Contains("q(2,1)"), config_error);
  array<float> vn = v;
  vn(0, 0) = INFINITY;
  CHECK_THROWS_AS(m.forward(q.cview(), k.cview(), vn.cview(), {}, y.view()), config_error);
  std::vector<float> bad_eta = {0.1f, NAN, 0.1f, 0.1f};
  memory::gates gt;
  gt.eta = bad_eta;
  CHECK_THROWS_WITH_AS(m.forward(q.cview(), k.cview(), v.cview(), gt, y.view()), doctest::Contains("eta at token 1"), config_error);
  gt = {};
  gt.alpha = 1.5f;
  CHECK_THROWS_AS(m.forward(q.cview(), k.cview(), v.cview(), gt, y.view()), config_error);
  gt = {};
  std::vector<float> short_gate = {0.5f};
  gt.theta = short_gate;
  CHECK_THROWS_AS(m.forward(q.cview(), k.cview(), v.cview(), gt, y.view()), config_error);
  // a gamma band of the wrong width, and a band on the global rule
  memory::module<memory::matrix_memory, memory::omega> om(d, d, {}, memory::omega{2});
  array<float> band({T, 3});
  gt = {};
  gt.gamma = band.cview();
  CHECK_THROWS_AS(om.forward(q.cview(), k.cview(), v.cview(), gt, y.view()), config_error);
  memory::module<memory::matrix_memory, memory::global_least_squares> gl(d, d);
  CHECK_THROWS_AS(gl.forward(q.cview(), k.cview(), v.cview(), gt, y.view()), config_error);
  // nothing was written by the failed calls
  for (float x : m.weight(0).span()) CHECK(x == 0.0f);
}

TEST_CASE("memory read order: before_update reads M_{t-1}, in both modes; read() writes nothing") {
  std::mt19937 g(61);
  const index_t T = 19, d = 4;
  array<float> q = randn(T, d, g), k = randn(T, d, g), v = randn(T, d, g), y_before({T, d}), y_after({T, d});
  array<float> q_next({T, d}); // q'_t = q_{t+1}: after-update reads of q' are the before-update reads of q, one token later
  for (index_t t = 0; t + 1 < T; ++t)
    for (index_t j = 0; j < d; ++j) q_next(t, j) = q(t + 1, j);
  memory::gates gt;
  gt.eta = 0.2f;
  gt.alpha = 0.95f;
  gt.theta = 0.5f;
  memory::mlp_memory a;
  a.hidden_dim = 5;
  for (auto mode : {memory::execution::recurrent, memory::execution::chunked}) {
    memory::module_options o;
    o.mode = mode;
    o.chunk = 4;
    o.read = memory::read_order::before_update;
    memory::titans before(d, d, a, {}, {}, {}, o);
    o.read = memory::read_order::after_update;
    memory::titans after(d, d, a, {}, {}, {}, o);
    array<float> y0({1, d});
    before.read(q.cview().slice(0, 0, 1), y0.view()); // M_0(q_0)
    before.forward(q.cview(), k.cview(), v.cview(), gt, y_before.view());
    after.forward(q_next.cview(), k.cview(), v.cview(), gt, y_after.view());
    CHECK(rel_err(y_before.cview().slice(0, 0, 1), y0.cview()) == 0.0);
    CHECK(rel_err(y_before.cview().slice(0, 1, T), y_after.cview().slice(0, 0, T - 1)) <= 1e-5);
    // read() leaves the state alone: reading then continuing equals continuing
    array<float> w0 = array<float>::from(after.weight(0));
    before.read(q.cview(), y_after.view());
    after.read(q.cview(), y_after.view());
    CHECK(rel_err(after.weight(0), w0.cview()) == 0.0);
  }
}

// A gate refers to the caller's values: binding a temporary vector is refused at compile time.
static_assert(!std::is_constructible_v<memory::gate, std::vector<float>&&>);
static_assert(std::is_constructible_v<memory::gate, const std::vector<float>&>);
static_assert(!std::is_constructible_v<memory::window_gate, std::vector<float>&&>);
