// SPDX-License-Identifier: MIT
// The GEMM entry against the double-accumulating scalar oracle, for both backends, over row- and
// column-major operands, packed strided views, beta != 0, K == 0 and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/ref/gemm.hpp"

using namespace membound;

namespace {
array<float> random_matrix(index_t r, index_t c, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  array<float> m({r, c}); // (r,c)
  for (auto& x : m.span()) x = u(gen);
  return m;
}
// |got - want| <= tol * (sum_k |a||b| scale), the standard GEMM error bound with a small constant.
void check_close(view<const float> got, view<const float> want, index_t k) {
  const double tol = 4.0 * static_cast<double>(k + 2) * 1.2e-7;
  for (index_t i = 0; i < got.extent(0); ++i)
    for (index_t j = 0; j < got.extent(1); ++j)
      REQUIRE(std::abs(static_cast<double>(got(i, j)) - want(i, j)) <= tol * (1.0 + std::abs(static_cast<double>(want(i, j)))));
}
} // namespace

#if MEMBOUND_HAS_ONEDNN
#define GEMM_BACKENDS backend::eigen, backend::onednn
#else
#define GEMM_BACKENDS backend::eigen
#endif

TEST_CASE_TEMPLATE("gemm matches the oracle on odd shapes and every operand layout", B, GEMM_BACKENDS) {
  for (const auto& mkn : {std::array<index_t, 3>{1, 1, 1}, {7, 5, 3}, {17, 33, 9}, {64, 64, 64}, {3, 129, 1}, {1, 70, 31}}) {
    const index_t m = mkn[0], k = mkn[1], n = mkn[2]; // (clang 14 cannot capture structured bindings in CAPTURE)
    CAPTURE(m); CAPTURE(k); CAPTURE(n);
    auto a = random_matrix(m, k, 1), at = random_matrix(k, m, 2);
    auto b = random_matrix(k, n, 3), bt = random_matrix(n, k, 4);
    for (int layout = 0; layout < 4; ++layout) {
      view<const float> av = (layout & 1) ? at.cview().transpose() : a.cview(); // (M,K)
      view<const float> bv = (layout & 2) ? bt.cview().transpose() : b.cview(); // (K,N)
      array<float> want = random_matrix(m, n, 5), got = want;                    // (M,N)
      ref::gemm(av, bv, want.view(), 0.5f, 0.25f);
      cpu::gemm<B>(av, bv, got.view(), 0.5f, 0.25f);
      check_close(got.cview(), want.cview(), k);
      // Column-major C (a transposed view of an (N,M) buffer) and beta == 0 ignoring NaN.
      array<float> ct({n, m}); // (N,M)
      ct.fill(std::nanf(""));
      ref::gemm(av, bv, want.view(), 1.0f, 0.0f);
      cpu::gemm<B>(av, bv, ct.view().transpose());
      check_close(ct.cview().transpose(), want.cview(), k);
    }
  }
}

TEST_CASE_TEMPLATE("gemm packs views with no unit stride and handles K == 0", B, GEMM_BACKENDS) {
  auto big = random_matrix(12, 10, 7);
  view<const float> as = make_view<const float>(big.data(), {4, 5}, {30, 2}); // (M,K) strided both ways
  auto b = random_matrix(5, 3, 8);
  array<float> got({4, 3}), want({4, 3}); // (M,N)
  cpu::gemm<B>(as, b.cview(), got.view());
  ref::gemm(as, b.cview(), want.view());
  check_close(got.cview(), want.cview(), 5);
  // Strided C with no unit stride.
  array<float> cbuf({8, 6});                                              // (2M,2N)
  view<float> cs = make_view(cbuf.data(), {4, 3}, {12, 2});              // (M,N)
  cpu::gemm<B>(as, b.cview(), cs);
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(cs(i, j) == doctest::Approx(want(i, j)).epsilon(1e-5));
  // K == 0: C = beta * C.
  array<float> e0({4, 0}), e1({0, 3}); // (M,0), (0,N)
  array<float> c({4, 3});              // (M,N)
  c.fill(2.0f);
  cpu::gemm<B>(e0.cview(), e1.cview(), c.view(), 1.0f, 0.5f);
  CHECK(c(3, 2) == 1.0f);
}

TEST_CASE("gemm rejects bad shapes and aliasing with shape_error") {
  array<float> a({3, 4}), b({5, 2}), c({3, 2});
  CHECK_THROWS_WITH_AS(cpu::gemm(a.cview(), b.cview(), c.view()), doctest::Contains("A (3,4) x B (5,2)"), shape_error);
  array<float> b2({4, 2}), c2({2, 2});
  CHECK_THROWS_AS(cpu::gemm(a.cview(), b2.cview(), c2.view()), shape_error);
  CHECK_THROWS_AS(cpu::gemm(a.cview().reshape({-1}), b2.cview(), c.view()), shape_error);
  array<float> sq({4, 4});
  CHECK_THROWS_WITH_AS(cpu::gemm(sq.cview(), sq.cview(), sq.view()), doctest::Contains("overlaps"), shape_error);
}
