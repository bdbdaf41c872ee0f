// SPDX-License-Identifier: MIT
// nn/causal_attention.hpp: the scalar oracle (ref/causal_attention.hpp) against central finite
// differences in double precision, with and without the retention bias; the tiled float kernel
// against the oracle on odd sizes and partial tiles, for the SIMD panels and the scalar backend's GEMM tiles; a hand-derived two-token case; thread-count
// independence; bad shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "membound/nn/causal_attention.hpp"
#include "membound/ref/causal_attention.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace membound;

namespace {

template <class T>
array<T> random_array(std::initializer_list<index_t> shape, std::mt19937& gen, double lo, double hi) {
  array<T> a(shape);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& x : a.span()) x = static_cast<T>(u(gen));
  return a;
}

template <class T, class U>
array<T> cast(const array<U>& a) {
  array<T> out(a.extents());
  for (index_t i = 0; i < a.size(); ++i) out[i] = static_cast<T>(a[i]);
  return out;
}

template <class T>
double max_abs(const array<T>& a) {
  double m = 0;
  for (index_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

/// max |got - want| <= tol * max |want|.
void check_rel(const array<float>& got, const array<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (index_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
  CHECK(worst <= tol * std::max(1e-30, max_abs(want)));
}

} // namespace

TEST_CASE("ref causal attention: backward equals central finite differences in double") {
  const index_t nb = 2, nt = 6, nh = 4, ng = 2, nd = 3;
  for (bool bias : {false, true}) {
    CAPTURE(bias);
    std::mt19937 gen(bias ? 11 : 12);
    auto q = random_array<double>({nb, nt, nh, nd}, gen, -1.5, 1.5); // (B,T,H,D)
    auto k = random_array<double>({nb, nt, ng, nd}, gen, -1.5, 1.5); // (B,T,G,D)
    auto v = random_array<double>({nb, nt, ng, nd}, gen, -1.0, 1.0); // (B,T,G,D)
    auto lb = random_array<double>({nb, ng, nt}, gen, -0.8, -0.01);  // (B,G,T)
    auto r = random_array<double>({nb, nt, nh, nd}, gen, -1.0, 1.0); // (B,T,H,D) dL/do
    array<double> o({nb, nt, nh, nd}), lse({nb, nh, nt});            // (B,T,H,D) (B,H,T)
    array<double> dq({nb, nt, nh, nd}), dk({nb, nt, ng, nd}), dv({nb, nt, ng, nd}), dlb({nb, ng, nt});
    const double scale = 0.7;
    const view<const double> lbv = bias ? lb.cview() : view<const double>();
    auto loss = [&] {
      ref::causal_attention_forward<double>(q.cview(), k.cview(), v.cview(), o.view(), lse.view(), scale, lbv);
      double s = 0;
      for (index_t i = 0; i < o.size(); ++i) s += o[i] * r[i];
      return s;
    };
    loss();
    ref::causal_attention_backward<double>(q.cview(), k.cview(), v.cview(), o.cview(), lse.cview(), r.cview(), dq.view(),
                                           dk.view(), dv.view(), scale, lbv, bias ? dlb.view() : view<double>());
    const double h = 1e-6;
    auto check_all = [&](array<double>& x, const array<double>& g) {
      for (index_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = loss();
        x[i] = keep - h;
        const double down = loss();
        x[i] = keep;
        CHECK(std::abs((up - down) / (2 * h) - g[i]) <= 1e-7 * (1 + std::abs(g[i])));
      }
    };
    check_all(q, dq);
    check_all(k, dk);
    check_all(v, dv);
    if (bias) check_all(lb, dlb);
  }
}

TEST_CASE("ref causal attention: two tokens by hand") {
  // One head, D = 1: q = (0.5, 2), k = (1, -1), v = (3, 5), log beta = (-0.25, x), scale 1.
  // Row 0 sees key 0 only: o_0 = 3, lse_0 = 0.5. Row 1: s = (2 * 1 - 0.25, 2 * -1) = (1.75, -2),
  // o_1 = (3 e^1.75 + 5 e^-2) / (e^1.75 + e^-2).
  const double qd[] = {0.5, 2}, kd[] = {1, -1}, vd[] = {3, 5}, lbd[] = {-0.25, -3};
  view<const double> q(qd, {1, 2, 1, 1}), k(kd, {1, 2, 1, 1}), v(vd, {1, 2, 1, 1}), lb(lbd, {1, 1, 2});
  array<double> o({1, 2, 1, 1}), lse({1, 1, 2}); // (B,T,H,D) (B,H,T)
  ref::causal_attention_forward<double>(q, k, v, o.view(), lse.view(), 1.0, lb);
  CHECK(o[0] == doctest::Approx(3.0).epsilon(1e-15));
  CHECK(lse[0] == doctest::Approx(0.5).epsilon(1e-15));
  const double a = std::exp(1.75), b = std::exp(-2.0);
  CHECK(o[1] == doctest::Approx((3 * a + 5 * b) / (a + b)).epsilon(1e-14));
  CHECK(lse[1] == doctest::Approx(std::log(a + b)).epsilon(1e-14));
  // The float kernel gives the same (block 1: every row its own tile).
  const float qf[] = {0.5f, 2}, kf[] = {1, -1}, vf[] = {3, 5}, lbf[] = {-0.25f, -3};
  array<float> of({1, 2, 1, 1}), lf({1, 1, 2}), ws; // (B,T,H,D) (B,H,T)
  nn::causal_attention{.scale = 1.0f, .block = 1}.forward(view<const float>(qf, {1, 2, 1, 1}), view<const float>(kf, {1, 2, 1, 1}),
                                                        view<const float>(vf, {1, 2, 1, 1}), of.view(), lf.view(), ws,
                                                        view<const float>(lbf, {1, 1, 2}));
  CHECK(of[1] == doctest::Approx(o[1]).epsilon(1e-6));
}

namespace {

/// The kernel of backend B against the double oracle on one shape, with and without the bias.
template <class B>
void check_against_oracle() {
  struct shape {
    index_t b, t, h, g, d, block;
  };
  // Odd sizes and partial tiles; T past several key chunks (64 on AVX-512) with blocks that do and
  // do not divide it; D of one, several and an odd number of vectors and not a multiple of any.
  for (const shape s : {shape{2, 37, 6, 2, 8, 16}, shape{1, 5, 2, 2, 4, 64}, shape{3, 33, 4, 1, 5, 7}, shape{1, 70, 2, 1, 16, 32},
                        shape{1, 203, 4, 2, 32, 64}, shape{2, 130, 2, 2, 48, 50}, shape{1, 77, 3, 1, 37, 512}}) {
    for (bool bias : {false, true}) {
      CAPTURE(B::name);
      CAPTURE(s.t);
      CAPTURE(s.d);
      CAPTURE(s.block);
      CAPTURE(bias);
      std::mt19937 gen(static_cast<unsigned>(s.t * 7 + bias));
      auto q = random_array<float>({s.b, s.t, s.h, s.d}, gen, -1.5, 1.5); // (B,T,H,D)
      auto k = random_array<float>({s.b, s.t, s.g, s.d}, gen, -1.5, 1.5); // (B,T,G,D)
      auto v = random_array<float>({s.b, s.t, s.g, s.d}, gen, -1.0, 1.0); // (B,T,G,D)
      auto lb = random_array<float>({s.b, s.g, s.t}, gen, -0.3, 0.0);     // (B,G,T)
      auto dout = random_array<float>({s.b, s.t, s.h, s.d}, gen, -1.0, 1.0);
      array<float> o({s.b, s.t, s.h, s.d}), lse({s.b, s.h, s.t}), ws; // (B,T,H,D) (B,H,T)
      array<float> dq({s.b, s.t, s.h, s.d}), dk({s.b, s.t, s.g, s.d}), dv({s.b, s.t, s.g, s.d}), dlb({s.b, s.g, s.t});
      const nn::causal_attention att{.scale = 0.0f, .block = s.block};
      const view<const float> lbv = bias ? lb.cview() : view<const float>();
      att.forward<B>(q.cview(), k.cview(), v.cview(), o.view(), lse.view(), ws, lbv);
      att.backward<B>(q.cview(), k.cview(), v.cview(), o.cview(), lse.cview(), dout.cview(), dq.view(), dk.view(), dv.view(), ws,
                      lbv, bias ? dlb.view() : view<float>());

      const auto qd = cast<double>(q), kd = cast<double>(k), vd = cast<double>(v), lbd = cast<double>(lb), dod = cast<double>(dout);
      array<double> od({s.b, s.t, s.h, s.d}), lsed({s.b, s.h, s.t});
      array<double> dqd({s.b, s.t, s.h, s.d}), dkd({s.b, s.t, s.g, s.d}), dvd({s.b, s.t, s.g, s.d}), dlbd({s.b, s.g, s.t});
      const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
      const view<const double> lbdv = bias ? lbd.cview() : view<const double>();
      ref::causal_attention_forward<double>(qd.cview(), kd.cview(), vd.cview(), od.view(), lsed.view(), scale, lbdv);
      ref::causal_attention_backward<double>(qd.cview(), kd.cview(), vd.cview(), od.cview(), lsed.cview(), dod.cview(),
                                             dqd.view(), dkd.view(), dvd.view(), scale, lbdv,
                                             bias ? dlbd.view() : view<double>());
      check_rel(o, od, 2e-6);
      check_rel(lse, lsed, 2e-6);
      check_rel(dq, dqd, 2e-5);
      check_rel(dk, dkd, 2e-5);
      check_rel(dv, dvd, 2e-5);
      if (bias) check_rel(dlb, dlbd, 5e-5);
    }
  }
}

} // namespace

TEST_CASE("causal_attention: the tiled float kernel equals the double oracle") {
  check_against_oracle<backend::best_cpu>(); // the register-tiled panels on SIMD builds
  check_against_oracle<backend::scalar>();   // the GEMM entry on (block, T) tiles
}

TEST_CASE("causal_attention: results do not depend on the thread count") {
  std::mt19937 gen(21);
  const index_t nb = 3, nt = 45, nh = 4, ng = 2, nd = 8;
  auto q = random_array<float>({nb, nt, nh, nd}, gen, -1, 1), dout = random_array<float>({nb, nt, nh, nd}, gen, -1, 1);
  auto k = random_array<float>({nb, nt, ng, nd}, gen, -1, 1), v = random_array<float>({nb, nt, ng, nd}, gen, -1, 1);
  auto lb = random_array<float>({nb, ng, nt}, gen, -0.2, 0);
  const nn::causal_attention att{.scale = 0.0f, .block = 16};
  auto run = [&] {
    array<float> o({nb, nt, nh, nd}), lse({nb, nh, nt}), ws, dq({nb, nt, nh, nd}), dk({nb, nt, ng, nd}), dv({nb, nt, ng, nd}),
        dlb({nb, ng, nt});
    att.forward(q.cview(), k.cview(), v.cview(), o.view(), lse.view(), ws, lb.cview());
    att.backward(q.cview(), k.cview(), v.cview(), o.cview(), lse.cview(), dout.cview(), dq.view(), dk.view(), dv.view(), ws,
                 lb.cview(), dlb.view());
    std::vector<float> all;
    for (const array<float>* a : {&o, &lse, &dq, &dk, &dv, &dlb}) all.insert(all.end(), a->span().begin(), a->span().end());
    return all;
  };
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run();
  omp_set_num_threads(3);
  const auto three = run();
  omp_set_num_threads(saved);
  CHECK(one == three);
#else
  CHECK(run() == run());
#endif
}

TEST_CASE("causal_attention: bad shapes are typed errors") {
  array<float> q({1, 4, 3, 2}), k({1, 4, 2, 2}), o({1, 4, 3, 2}), lse({1, 3, 4}), ws; // H = 3 not a multiple of G = 2
  const nn::causal_attention att{};
  CHECK_THROWS_WITH_AS(att.forward(q.cview(), k.cview(), k.cview(), o.view(), lse.view(), ws),
                       doctest::Contains("multiple of G"), shape_error);
  array<float> q2({1, 4, 4, 2}), o2({1, 4, 4, 2}), lse2({1, 4, 4}), lse_bad({1, 4, 5}), lb_bad({1, 2, 3});
  CHECK_THROWS_WITH_AS(att.forward(q2.cview(), k.cview(), k.cview(), o2.view(), lse_bad.view(), ws),
                       doctest::Contains("lse must be (1,4,4)"), shape_error);
  CHECK_THROWS_WITH_AS(att.forward(q2.cview(), k.cview(), k.cview(), o2.view(), lse2.view(), ws, lb_bad.cview()),
                       doctest::Contains("log_beta must be (1,2,4)"), shape_error);
  CHECK_THROWS_AS((nn::causal_attention{.scale = 0.0f, .block = 0}.forward(q2.cview(), k.cview(), k.cview(), o2.view(), lse2.view(), ws)),
                  config_error);
  array<float> dq({1, 4, 4, 2}), dk({1, 4, 2, 2}), dv({1, 4, 2, 2}), dlb({1, 2, 4});
  CHECK_THROWS_WITH_AS(att.backward(q2.cview(), k.cview(), k.cview(), o2.cview(), lse2.cview(), o2.cview(), dq.view(), dk.view(),
                                    dv.view(), ws, view<const float>(), dlb.view()),
                       doctest::Contains("without log_beta"), shape_error);
}
