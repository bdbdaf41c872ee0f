// SPDX-License-Identifier: MIT
// nn/optim.hpp: SGD, Adam, AdamW, clipping and Muon against PyTorch trajectories
// (tests/fixtures/nn/optim_fixtures.json, written by tools/make_nn_optim_fixtures.py), hand-derived
// single steps, schedule values, the Newton-Schulz singular-value claims and bad settings.
//
// Tolerances (|got - want| <= tol * (1 + |want|)); observed maxima (oneDNN and Eigen GEMM) in brackets:
// - SGD, Adam, AdamW, clipping: 1e-6 [4e-8; 2.4e-7 absolute on a total norm of about 4]. Both
//   sides do the same float operations in the same order; the differences are FMA contraction in
//   PyTorch's vectorised kernels (we build with -ffp-contract=off), the summation order of the norm
//   and the rounding of scalar constants: about one ulp (6e-8) per operation, a few per step, 5 steps.
// - Newton-Schulz output: 5e-6 [1.0e-6]. The GEMMs sum in another order (oneDNN/Eigen vs MKL) and
//   each of the 5 iterations multiplies rounding errors by up to |p'(x)| (|a| + 3|b| + 5|c| ~ 28 at
//   worst, far less near the fixed point).
// - Muon parameters: 1e-6 [7e-8]: W moves by lr * scale * X with lr * scale <= 0.1, which shrinks
//   the Newton-Schulz error accordingly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include "membound/nn/optim.hpp"

using namespace membound;

namespace {

nlohmann::json optim_fixtures() {
  std::ifstream f(MEMBOUND_FIXTURES_DIR "/nn/optim_fixtures.json");
  REQUIRE_MESSAGE(f.good(), "missing " MEMBOUND_FIXTURES_DIR "/nn/optim_fixtures.json");
  return nlohmann::json::parse(f);
}
std::vector<float> fvec(const nlohmann::json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}
/// max_i |got_i - want_i| / (1 + |want_i|)
double max_rel_err(std::span<const float> got, std::span<const float> want) {
  REQUIRE(got.size() == want.size());
  double e = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i)
    e = std::max(e, std::abs(static_cast<double>(got[i]) - want[i]) / (1.0 + std::abs(static_cast<double>(want[i]))));
  return e;
}

/// Runs an element-wise optimizer over the fixture gradients and checks every step.
template <class O>
void check_trajectory(const O& opt, const nlohmann::json& all, const nlohmann::json& c, double tol) {
  std::vector<float> p = fvec(all["param0"]);
  typename O::state s;
  for (std::size_t t = 0; t < all["grads"].size(); ++t) {
    CAPTURE(t);
    const std::vector<float> g = fvec(all["grads"][t]);
    opt.step(std::span<float>(p), std::span<const float>(g), s);
    const std::vector<float> want = fvec(c["params"][t]);
    const double e = max_rel_err(p, want);
    CAPTURE(e);
    CHECK(e <= tol);
  }
}

nn::muon_scale parse_scale(const std::string& s) {
  if (s == "shape") return nn::muon_scale::shape;
  if (s == "match_rms") return nn::muon_scale::match_rms;
  REQUIRE(s == "none");
  return nn::muon_scale::none;
}

using matd = Eigen::MatrixXd;
/// A Haar-ish random orthogonal n x n matrix (Q of the QR of a Gaussian matrix).
matd random_orthogonal(int n, std::mt19937& gen) {
  std::normal_distribution<double> d;
  matd a(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) a(i, j) = d(gen);
  Eigen::HouseholderQR<matd> qr(a);
  return qr.householderQ() * matd::Identity(n, n);
}
/// The scalar map every normalised singular value goes through: p^steps(x), p(x) = a x + b x^3 + c x^5.
double ns_map(double x, int steps) {
  const nn::newton_schulz_coefficients k;
  for (int s = 0; s < steps; ++s) x = k.a * x + k.b * x * x * x + k.c * x * x * x * x * x;
  return x;
}

} // namespace

// ------------------------------------------------------------------------------------------------
// PyTorch fixtures
// ------------------------------------------------------------------------------------------------

TEST_CASE("sgd matches torch.optim.SGD over 5 steps") {
  const nlohmann::json all = optim_fixtures();
  for (const auto& c : all["sgd"]) {
    CAPTURE(c["name"].get<std::string>());
    const nn::sgd opt{.lr = c["lr"].get<float>(), .momentum = c["momentum"].get<float>(),
                      .dampening = c["dampening"].get<float>(), .weight_decay = c["weight_decay"].get<float>(),
                      .nesterov = c["nesterov"].get<bool>()};
    check_trajectory(opt, all, c, 1e-6);
  }
}

TEST_CASE("adam and adamw match torch.optim.Adam / AdamW over 5 steps") {
  const nlohmann::json all = optim_fixtures();
  for (const auto& c : all["adam"]) {
    CAPTURE(c["name"].get<std::string>());
    const nn::adam opt{.lr = c["lr"].get<float>(), .beta1 = c["beta1"].get<float>(), .beta2 = c["beta2"].get<float>(),
                       .eps = c["eps"].get<float>(), .weight_decay = c["weight_decay"].get<float>()};
    check_trajectory(opt, all, c, 1e-6);
  }
  for (const auto& c : all["adamw"]) {
    CAPTURE(c["name"].get<std::string>());
    const nn::adamw opt{.lr = c["lr"].get<float>(), .beta1 = c["beta1"].get<float>(), .beta2 = c["beta2"].get<float>(),
                        .eps = c["eps"].get<float>(), .weight_decay = c["weight_decay"].get<float>()};
    check_trajectory(opt, all, c, 1e-6);
  }
}

TEST_CASE_TEMPLATE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_", B, backend::scalar, backend::best_cpu) {
  const nlohmann::json all = optim_fixtures();
  for (const auto& c : all["clip_grad_norm"]) {
    const float max_norm = c["max_norm"].get<float>();
    CAPTURE(max_norm);
    std::vector<std::vector<float>> g;
    for (const auto& x : c["grads"]) g.push_back(fvec(x));
    std::vector<std::span<float>> spans(g.begin(), g.end());
    const float total = nn::clip_grad_norm<B>(spans, max_norm);
    const double want_total = c["total_norm"].get<double>();
    CHECK(std::abs(total - want_total) <= 1e-6 * (1.0 + want_total));
    for (std::size_t k = 0; k < g.size(); ++k) CHECK(max_rel_err(g[k], fvec(c["clipped"][k])) <= 1e-6);
    // after clipping the total norm is max_norm (up to eps), before it was above
    if (want_total > max_norm) {
      double sq = 0;
      for (const auto& v : g)
        for (float x : v) sq += static_cast<double>(x) * x;
      CHECK(std::sqrt(sq) == doctest::Approx(max_norm).epsilon(1e-5));
    }
  }
}

#if MEMBOUND_HAS_ONEDNN
#define OPTIM_GEMM_BACKENDS backend::eigen, backend::onednn
#else
#define OPTIM_GEMM_BACKENDS backend::eigen
#endif

TEST_CASE_TEMPLATE("newton_schulz and muon match the PyTorch re-implementation (6x4 and 4x6)", G, OPTIM_GEMM_BACKENDS) {
  const nlohmann::json all = optim_fixtures();
  for (const auto& c : all["newton_schulz"]) {
    const index_t r = c["rows"].get<index_t>(), k = c["cols"].get<index_t>();
    CAPTURE(r); CAPTURE(k);
    std::vector<float> u = fvec(c["u"]), out(u.size());
    nn::newton_schulz<G>(view<const float>(u.data(), {r, k}), view<float>(out.data(), {r, k}));
    CHECK(max_rel_err(out, fvec(c["out"])) <= 5e-6);
    // in place (out aliases u) gives the same bits
    nn::newton_schulz<G>(view<const float>(u.data(), {r, k}), view<float>(u.data(), {r, k}));
    CHECK(u == out);
  }
  for (const auto& c : all["muon"]) {
    CAPTURE(c["name"].get<std::string>());
    const index_t r = c["rows"].get<index_t>(), k = c["cols"].get<index_t>();
    const nn::muon opt{.lr = c["lr"].get<float>(), .momentum = c["momentum"].get<float>(),
                       .nesterov = c["nesterov"].get<bool>(), .weight_decay = c["weight_decay"].get<float>(),
                       .scale = parse_scale(c["scale"].get<std::string>())};
    std::vector<float> w = fvec(c["param0"]);
    nn::muon::state s;
    for (std::size_t t = 0; t < c["grads"].size(); ++t) {
      CAPTURE(t);
      const std::vector<float> g = fvec(c["grads"][t]);
      opt.step<G>(view<float>(w.data(), {r, k}), view<const float>(g.data(), {r, k}), s);
      CHECK(max_rel_err(w, fvec(c["params"][t])) <= 1e-6);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Hand-derived values
// ------------------------------------------------------------------------------------------------

TEST_CASE("sgd: hand-derived steps") {
  SUBCASE("weight decay and momentum, first step (buffer = d)") {
    // d = g + 0.1 p = (0.6, 0.05); buf = d; p -= 0.1 d
    std::vector<float> p{1.0f, -2.0f};
    const std::vector<float> g{0.5f, 0.25f};
    nn::sgd::state s;
    nn::sgd{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f}.step(p, g, s);
    CHECK(p[0] == doctest::Approx(0.94).epsilon(1e-6));
    CHECK(p[1] == doctest::Approx(-2.005).epsilon(1e-6));
    CHECK(s.momentum_buffer[0] == doctest::Approx(0.6).epsilon(1e-6));
  }
  SUBCASE("nesterov, first step: p -= lr (d + mu d)") {
    std::vector<float> p{1.0f, -2.0f};
    const std::vector<float> g{0.5f, 0.25f};
    nn::sgd::state s;
    nn::sgd{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f, .nesterov = true}.step(p, g, s);
    CHECK(p[0] == doctest::Approx(1.0 - 0.1 * 1.9 * 0.6).epsilon(1e-6));
    CHECK(p[1] == doctest::Approx(-2.0 - 0.1 * 1.9 * 0.05).epsilon(1e-6));
  }
  SUBCASE("momentum accumulates: g = 1 twice, lr = 1 -> buf 1 then 1.9, p = -1 then -2.9") {
    std::vector<float> p{0.0f};
    const std::vector<float> g{1.0f};
    nn::sgd::state s;
    const nn::sgd opt{.lr = 1.0f, .momentum = 0.9f};
    opt.step(p, g, s);
    CHECK(p[0] == -1.0f);
    opt.step(p, g, s);
    CHECK(p[0] == doctest::Approx(-2.9).epsilon(1e-7));
    CHECK(s.steps == 2);
  }
  SUBCASE("plain SGD keeps no buffer") {
    std::vector<float> p{3.0f};
    const std::vector<float> g{2.0f};
    nn::sgd::state s;
    nn::sgd{.lr = 0.5f}.step(p, g, s);
    CHECK(p[0] == 2.0f);
    CHECK(s.momentum_buffer.empty());
  }
}

TEST_CASE("adam / adamw: hand-derived steps") {
  SUBCASE("first step moves by lr * g / (|g| + eps) (bias corrections cancel)") {
    std::vector<float> p{1.0f, -1.0f, 0.5f};
    const std::vector<float> g{0.5f, -2.0f, 0.0f};
    nn::adam::state s;
    nn::adam{.lr = 0.1f, .eps = 1e-3f}.step(p, g, s);
    CHECK(p[0] == doctest::Approx(1.0 - 0.1 * 0.5 / 0.501).epsilon(1e-6));
    CHECK(p[1] == doctest::Approx(-1.0 + 0.1 * 2.0 / 2.001).epsilon(1e-6));
    CHECK(p[2] == 0.5f); // zero gradient: 0 / (0 + eps)
    CHECK(s.exp_avg[0] == doctest::Approx(0.05).epsilon(1e-6));       // (1 - beta1) g
    CHECK(s.exp_avg_sq[1] == doctest::Approx(0.004).epsilon(1e-6));   // (1 - beta2) g^2
  }
  SUBCASE("constant gradient: every step moves by lr * g / (|g| + eps)") {
    // m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2, so the bias-corrected moments are g and g^2.
    std::vector<float> p{0.0f};
    const std::vector<float> g{2.0f};
    nn::adam::state s;
    const nn::adam opt{.lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.9f, .eps = 1e-3f};
    for (int t = 0; t < 3; ++t) opt.step(p, g, s);
    CHECK(p[0] == doctest::Approx(-3 * 0.01 * 2.0 / 2.001).epsilon(1e-5));
    CHECK(s.steps == 3);
  }
  SUBCASE("adam weight decay is L2 on the gradient; adamw decays p first") {
    std::vector<float> p{2.0f}, q{2.0f};
    const std::vector<float> g{0.0f};
    nn::adam::state sa, sw;
    nn::adam{.lr = 0.1f, .eps = 1e-8f, .weight_decay = 0.5f}.step(p, g, sa); // g' = 1: p -= 0.1
    CHECK(p[0] == doctest::Approx(1.9).epsilon(1e-6));
    nn::adamw{.lr = 0.1f, .eps = 1e-8f, .weight_decay = 0.5f}.step(q, g, sw); // p *= 0.95, then g = 0
    CHECK(q[0] == doctest::Approx(1.9).epsilon(1e-6));
    std::vector<float> r{2.0f};
    const std::vector<float> g1{1.0f};
    nn::adam::state sr;
    nn::adamw{.lr = 0.1f, .eps = 1e-8f, .weight_decay = 0.5f}.step(r, g1, sr); // 1.9 - 0.1
    CHECK(r[0] == doctest::Approx(1.8).epsilon(1e-6));
  }
}

TEST_CASE("clip_grad_norm and clip_grad_value: hand-derived") {
  std::vector<float> a{3.0f, 0.0f}, b{4.0f};
  CHECK(nn::clip_grad_norm({std::span<float>(a), std::span<float>(b)}, 1.0f) == 5.0f);
  CHECK(a[0] == doctest::Approx(0.6).epsilon(1e-6));
  CHECK(b[0] == doctest::Approx(0.8).epsilon(1e-6));
  std::vector<float> c{3.0f, 4.0f};
  CHECK(nn::clip_grad_norm({std::span<float>(c)}, 10.0f) == 5.0f); // below max_norm: untouched
  CHECK(c == std::vector<float>{3.0f, 4.0f});
  CHECK(nn::clip_grad_norm(std::span<const std::span<float>>(), 1.0f) == 0.0f);
  std::vector<float> d{-3.0f, 0.5f, 2.0f, std::numeric_limits<float>::quiet_NaN()};
  nn::clip_grad_value({std::span<float>(d)}, 1.0f);
  CHECK(d[0] == -1.0f);
  CHECK(d[1] == 0.5f);
  CHECK(d[2] == 1.0f);
  CHECK(std::isnan(d[3]));
}

TEST_CASE("learning-rate schedules") {
  CHECK(nn::constant_lr{.lr = 0.3f}(0) == 0.3f);
  CHECK(nn::constant_lr{.lr = 0.3f}(1000000) == 0.3f);
  const nn::cosine_lr s{.base_lr = 1.0f, .min_lr = 0.1f, .warmup = 10, .total = 110};
  CHECK(s(0) == 0.0f);                                  // warm-up start
  CHECK(s(5) == doctest::Approx(0.5).epsilon(1e-7));    // half-way up
  CHECK(s(10) == 1.0f);                                 // end of warm-up = peak
  CHECK(s(60) == doctest::Approx(0.55).epsilon(1e-7));  // middle of the cosine: min + (base - min) / 2
  CHECK(s(35) == doctest::Approx(0.1 + 0.45 * (1.0 + std::cos(std::numbers::pi / 4))).epsilon(1e-7));
  CHECK(s(109) == doctest::Approx(0.1 + 0.45 * (1.0 + std::cos(std::numbers::pi * 0.99))).epsilon(1e-7));
  CHECK(s(110) == 0.1f);                                // end
  CHECK(s(500) == 0.1f);                                // past the end
  for (index_t t = 11; t < 110; ++t) CHECK(s(t) <= s(t - 1)); // monotone decay
  const nn::cosine_lr no_warmup{.base_lr = 2.0f, .warmup = 0, .total = 4};
  CHECK(no_warmup(0) == 2.0f);
  CHECK(no_warmup(2) == doctest::Approx(1.0).epsilon(1e-7));
  const nn::cosine_lr all_warmup{.base_lr = 2.0f, .min_lr = 0.5f, .warmup = 4, .total = 4};
  CHECK(all_warmup(3) == 1.5f);
  CHECK(all_warmup(4) == 0.5f);
}

// ------------------------------------------------------------------------------------------------
// Newton-Schulz: the documented singular-value claims
// ------------------------------------------------------------------------------------------------

TEST_CASE("newton_schulz: normalised singular values in [3e-3, 1] come out in about [0.68, 1.2]") {
  std::mt19937 gen(7);
  for (const auto& rc : {std::array<int, 2>{24, 40}, std::array<int, 2>{40, 24}, std::array<int, 2>{16, 16}}) {
    const int rows = rc[0], cols = rc[1], m = std::min(rows, cols);
    CAPTURE(rows); CAPTURE(cols);
    // Normalised singular values x (sum x^2 = 1): m - 1 geometric from 3e-3 to 0.25, plus the rest.
    std::vector<double> x(static_cast<std::size_t>(m));
    double sq = 0;
    for (int i = 1; i < m; ++i) {
      x[static_cast<std::size_t>(i)] = 3e-3 * std::pow(0.25 / 3e-3, (i - 1) / double(m - 2));
      sq += x[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(i)];
    }
    x[0] = std::sqrt(1.0 - sq);
    REQUIRE(x[0] > 0.25);
    const matd u = random_orthogonal(rows, gen), v = random_orthogonal(cols, gen);
    matd sig = matd::Zero(rows, cols), sig_out = matd::Zero(rows, cols);
    for (int i = 0; i < m; ++i) {
      sig(i, i) = 7.5 * x[static_cast<std::size_t>(i)]; // any scale: the Frobenius norm removes it
      sig_out(i, i) = ns_map(x[static_cast<std::size_t>(i)], 5);
    }
    const matd g = u * sig * v.transpose();          // (rows,cols), singular values 7.5 x
    const matd want = u * sig_out * v.transpose();   // same singular vectors, values p^5(x)
    array<float> gf({rows, cols}), out({rows, cols}); // (rows,cols)
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) gf(i, j) = static_cast<float>(g(i, j));
    nn::newton_schulz(gf.cview(), out.view());
    // singular values of the output: square roots of the eigenvalues of X X^T (or X^T X), in double
    matd xo(rows, cols);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) xo(i, j) = out(i, j);
    const matd gram = rows <= cols ? matd(xo * xo.transpose()) : matd(xo.transpose() * xo); // (m,m)
    Eigen::SelfAdjointEigenSolver<matd> es(gram);
    for (int i = 0; i < m; ++i) {
      const double s = std::sqrt(std::max(0.0, es.eigenvalues()(i)));
      CAPTURE(i); CAPTURE(s);
      CHECK(s >= 0.68);
      CHECK(s <= 1.21);
    }
    // and exactly what the scalar map predicts, singular vectors included
    std::vector<double> pred;
    for (double xi : x) pred.push_back(ns_map(xi, 5));
    std::sort(pred.begin(), pred.end());
    for (int i = 0; i < m; ++i) CHECK(std::sqrt(std::max(0.0, es.eigenvalues()(i))) == doctest::Approx(pred[static_cast<std::size_t>(i)]).epsilon(1e-3));
    CHECK((xo - want).cwiseAbs().maxCoeff() <= 1e-3);
    // not an exact orthogonalisation: the spread is real
    CHECK(pred.back() - pred.front() > 0.3);
  }
}

TEST_CASE("newton_schulz and muon: a zero matrix stays zero (no NaN)") {
  array<float> z({5, 3}), out({5, 3}); // (5,3)
  out.fill(42.0f);
  nn::newton_schulz(z.cview(), out.view());
  for (float v : out.span()) CHECK(v == 0.0f);
  array<float> w({3, 5}), g({3, 5}); // (3,5)
  w.fill(0.25f);
  nn::muon::state s;
  const nn::muon opt{.lr = 0.1f};
  for (int t = 0; t < 3; ++t) opt.step(w.view(), g.cview(), s);
  for (float v : w.span()) CHECK(v == 0.25f);
  for (float v : s.momentum_buffer.span()) CHECK(v == 0.0f);
}

TEST_CASE("muon: scale settings, weight decay and strided views") {
  std::mt19937 gen(3);
  std::normal_distribution<float> d;
  array<float> g({8, 2}); // (8,2) tall: shape scale = sqrt(4) = 2
  for (float& x : g.span()) x = d(gen);
  array<float> x({8, 2});
  nn::newton_schulz(g.cview(), x.view());
  for (auto sc : {nn::muon_scale::none, nn::muon_scale::shape, nn::muon_scale::match_rms}) {
    const double f = sc == nn::muon_scale::none ? 1.0 : sc == nn::muon_scale::shape ? 2.0 : 0.2 * std::sqrt(8.0);
    CAPTURE(f);
    const nn::muon opt{.lr = 0.1f, .weight_decay = 0.5f, .scale = sc};
    CHECK(opt.scale_factor(8, 2) == doctest::Approx(f));
    array<float> w({8, 2}); // (8,2)
    w.fill(1.0f);
    nn::muon::state s;
    opt.step(w.view(), g.cview(), s); // first step: B = G, U = G + mu G, NS is scale-invariant
    for (index_t i = 0; i < 8; ++i)
      for (index_t j = 0; j < 2; ++j) CHECK(w(i, j) == doctest::Approx(0.95 - 0.1 * f * x(i, j)).epsilon(1e-5));
  }
  // a transposed (column-major) view of W and G gives the same result as the contiguous copy
  array<float> wt({2, 8}), gt({2, 8}), w({8, 2}); // (2,8) storage of (8,2) views
  for (index_t i = 0; i < 8; ++i)
    for (index_t j = 0; j < 2; ++j) { gt(j, i) = g(i, j); wt(j, i) = 1.0f; w(i, j) = 1.0f; }
  nn::muon::state s1, s2;
  const nn::muon opt{.lr = 0.1f};
  opt.step(wt.view().transpose(), gt.cview().transpose(), s1);
  opt.step(w.view(), g.cview(), s2);
  for (index_t i = 0; i < 8; ++i)
    for (index_t j = 0; j < 2; ++j) CHECK(wt(j, i) == w(i, j));
}

// ------------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------------

TEST_CASE("optimizers reject bad settings and mismatched shapes with typed errors") {
  std::vector<float> p(4), g(4), g5(5);
  SUBCASE("sizes") {
    nn::adam::state s;
    CHECK_THROWS_WITH_AS(nn::adam{}.step(p, g5, s), doctest::Contains("param has 4 elements, grad has 5"), shape_error);
    nn::sgd::state ss;
    CHECK_THROWS_WITH_AS(nn::sgd{}.step(p, g5, ss), doctest::Contains("param has 4 elements, grad has 5"), shape_error);
    nn::adam{}.step(p, g, s);
    std::vector<float> p5(5);
    CHECK_THROWS_WITH_AS(nn::adamw{}.step(p5, g5, s), doctest::Contains("state holds 4 elements, param has 5"), shape_error);
    nn::sgd::state sm;
    nn::sgd{.momentum = 0.9f}.step(p, g, sm);
    CHECK_THROWS_AS(nn::sgd{.momentum = 0.9f}.step(p5, g5, sm), shape_error);
  }
  SUBCASE("settings") {
    nn::adam::state s;
    CHECK_THROWS_WITH_AS(nn::adam{.lr = -0.1f}.step(p, g, s), doctest::Contains("lr is -0.1"), config_error);
    CHECK_THROWS_WITH_AS(nn::adam{.beta1 = 1.0f}.step(p, g, s), doctest::Contains("beta1 is 1"), config_error);
    CHECK_THROWS_WITH_AS(nn::adamw{.beta2 = -0.5f}.step(p, g, s), doctest::Contains("beta2 is -0.5"), config_error);
    CHECK_THROWS_WITH_AS(nn::adam{.eps = 0.0f}.step(p, g, s), doctest::Contains("eps is 0"), config_error);
    CHECK_THROWS_WITH_AS(nn::adamw{.weight_decay = -1.0f}.step(p, g, s), doctest::Contains("weight_decay is -1"), config_error);
    CHECK_THROWS_AS(nn::adam{.lr = std::numeric_limits<float>::quiet_NaN()}.validate(), config_error);
    nn::sgd::state ss;
    CHECK_THROWS_WITH_AS(nn::sgd{.lr = -1.0f}.step(p, g, ss), doctest::Contains("sgd: lr is -1"), config_error);
    CHECK_THROWS_WITH_AS(nn::sgd{.momentum = -0.1f}.validate(), doctest::Contains("momentum is -0.1"), config_error);
    CHECK_THROWS_WITH_AS(nn::sgd{.nesterov = true}.validate(), doctest::Contains("nesterov"), config_error);
    CHECK_THROWS_AS((nn::sgd{.momentum = 0.9f, .dampening = 0.1f, .nesterov = true}.validate()), config_error);
    CHECK(s.steps == 0); // nothing happened
    CHECK(s.exp_avg.empty());
  }
  SUBCASE("clipping") {
    CHECK_THROWS_WITH_AS(nn::clip_grad_norm({std::span<float>(p)}, -1.0f), doctest::Contains("max_norm is -1"), config_error);
    CHECK_THROWS_WITH_AS(nn::clip_grad_value({std::span<float>(p)}, -2.0f), doctest::Contains("clip_value is -2"), config_error);
  }
  SUBCASE("schedules") {
    CHECK_THROWS_WITH_AS((nn::cosine_lr{.warmup = 20, .total = 10}(0)), doctest::Contains("warmup is 20"), config_error);
    CHECK_THROWS_WITH_AS((nn::cosine_lr{.total = 0}(0)), doctest::Contains("total is 0"), config_error);
    CHECK_THROWS_WITH_AS((nn::cosine_lr{.base_lr = 0.1f, .min_lr = 0.2f}(0)), doctest::Contains("min_lr is 0.2"), config_error);
    CHECK_THROWS_WITH_AS((nn::cosine_lr{.base_lr = -1.0f}(0)), doctest::Contains("lr is -1"), config_error);
    CHECK_THROWS_WITH_AS((nn::cosine_lr{.total = 10}(-1)), doctest::Contains("step t is -1"), config_error);
    CHECK_THROWS_WITH_AS((nn::constant_lr{.lr = -1.0f}(0)), doctest::Contains("lr is -1"), config_error);
  }
  SUBCASE("muon and newton_schulz") {
    array<float> w({3, 4}), gm({3, 4}), g43({4, 3}), v1({12}); // (3,4) (4,3) (12)
    nn::muon::state s;
    CHECK_THROWS_WITH_AS(nn::muon{}.step(w.view(), g43.cview(), s), doctest::Contains("param is (3,4), grad is (4,3)"), shape_error);
    CHECK_THROWS_WITH_AS(nn::muon{}.step(v1.view(), v1.cview(), s), doctest::Contains("rank"), shape_error);
    CHECK_THROWS_WITH_AS(nn::muon{.momentum = 1.0f}.step(w.view(), gm.cview(), s), doctest::Contains("momentum is 1"), config_error);
    CHECK_THROWS_WITH_AS(nn::muon{.ns_steps = -1}.step(w.view(), gm.cview(), s), doctest::Contains("ns_steps is -1"), config_error);
    CHECK_THROWS_WITH_AS(nn::muon{.ns_eps = 0.0f}.step(w.view(), gm.cview(), s), doctest::Contains("ns_eps is 0"), config_error);
    nn::muon{}.step(w.view(), gm.cview(), s);
    array<float> w2({4, 3}); // (4,3)
    CHECK_THROWS_WITH_AS(nn::muon{}.step(w2.view(), g43.cview(), s), doctest::Contains("state holds (3,4), param is (4,3)"), shape_error);
    CHECK_THROWS_WITH_AS(nn::newton_schulz(w.cview(), w2.view()), doctest::Contains("u is (3,4), out is (4,3)"), shape_error);
    CHECK_THROWS_WITH_AS(nn::newton_schulz(w.cview(), w.view(), -2), doctest::Contains("steps is -2"), config_error);
  }
}
