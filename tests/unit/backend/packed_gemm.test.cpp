// SPDX-License-Identifier: MIT
// cpu::packed_gemm (vision/'s 1x1 convolutions with weights packed once): every backend against a
// double-precision reference on ragged shapes (rows around the tile height, columns around one
// and two vectors, K = 0 and beyond any blocking, column tails over groups of 8, 4, 2 and 1
// panels, a single tail column inside the last tile), strided x and y, each epilogue; the SIMD
// FMA tiles equal the scalar twin bit for bit; independence of how the columns are split; bad
// input.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "backends.hpp"
#include "membound/backend/cpu/packed_gemm.hpp"

using namespace membound;

namespace {
std::vector<float> random_vector(index_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = u(gen);
  return v;
}

struct problem {
  index_t m, k, n, ldx, ldy;
  std::vector<float> w, x, y0, bias;
  problem(index_t m_, index_t k_, index_t n_, index_t pad, std::uint32_t seed)
      : m(m_), k(k_), n(n_), ldx(n_ + pad), ldy(n_ + 2 * pad), w(random_vector(m_ * k_, seed)),
        x(random_vector(k_ * (n_ + pad), seed + 1)), y0(random_vector(m_ * (n_ + 2 * pad), seed + 2)),
        bias(random_vector(m_, seed + 3)) {}
  // Double-precision reference of one epilogue.
  double ref(index_t i, index_t j, const cpu::packed_epilogue& e) const {
    double acc = e.accumulate ? static_cast<double>(y0[static_cast<std::size_t>(i * ldy + j)]) : 0.0;
    for (index_t c = 0; c < k; ++c)
      acc += static_cast<double>(w[static_cast<std::size_t>(i * k + c)]) * static_cast<double>(x[static_cast<std::size_t>(c * ldx + j)]);
    if (e.bias) acc += static_cast<double>(e.bias[i]);
    if (e.relu) acc = std::max(acc, 0.0);
    return acc;
  }
};

template <class B>
std::vector<float> run(const problem& p, const cpu::packed_epilogue& e, index_t split = 0) {
  const cpu::packed_matrix pw = cpu::pack_weights<B>(p.w.data(), p.m, p.k, p.k);
  std::vector<float> y = p.y0;
  if (split <= 0) {
    cpu::packed_gemm<B>(pw, p.x.data(), p.ldx, y.data(), p.ldy, p.n, e);
  } else { // the columns in pieces of `split`, as vision/'s column blocks and threads call it
    for (index_t j0 = 0; j0 < p.n; j0 += split)
      cpu::packed_gemm<B>(pw, p.x.data() + j0, p.ldx, y.data() + j0, p.ldy, std::min(split, p.n - j0), e);
  }
  return y;
}
} // namespace

TEST_CASE_TEMPLATE_DEFINE("packed_gemm matches a double reference on ragged shapes, strides and every epilogue", B,
                          packed_reference) {
  const std::array<index_t, 3> shapes[] = {{1, 1, 1},   {5, 3, 7},    {11, 16, 15}, {12, 9, 16},  {13, 33, 17},
                                           {25, 64, 31}, {24, 20, 32}, {36, 7, 33},  {96, 48, 49}, {40, 300, 196},
                                           {7, 0, 9},    {30, 600, 16}, {14, 21, 3},  {27, 40, 18},
                                           {13, 50, 35}, {12, 12, 20}, {5, 9, 36},  {65, 300, 17},
                                           {65, 130, 18}, {65, 40, 3},  {65, 130, 1}};
  for (const auto& s : shapes) {
    const index_t m = s[0], k = s[1], n = s[2];
    CAPTURE(m); CAPTURE(k); CAPTURE(n);
    const problem p(m, k, n, 3, static_cast<std::uint32_t>(m * 1000 + k * 10 + n));
    for (int variant = 0; variant < 4; ++variant) {
      CAPTURE(variant);
      const cpu::packed_epilogue e{variant >= 1 ? p.bias.data() : nullptr, variant == 2 || variant == 3, variant == 3};
      const std::vector<float> y = run<B>(p, e);
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < p.ldy; ++j) {
          const float got = y[static_cast<std::size_t>(i * p.ldy + j)];
          if (j >= n) { // padding between rows is never written
            REQUIRE(got == p.y0[static_cast<std::size_t>(i * p.ldy + j)]);
            continue;
          }
          const double want = p.ref(i, j, e);
          // Error bound of a K-term float sum of products of |.| <= 1 (plus the start value).
          REQUIRE(std::abs(static_cast<double>(got) - want) <= 2.0 * static_cast<double>(k + 3) * 6e-8 * (1.0 + std::abs(want)));
        }
    }
  }
}

TEST_CASE_TEMPLATE_APPLY(packed_reference, test::all_tags);

#if MEMBOUND_HAS_AVX2
namespace {
using fma_tags = decltype(std::tuple_cat(std::tuple<backend::avx2>{},
#if MEMBOUND_HAS_AVX512
                                         std::tuple<backend::avx512>{},
#endif
                                         std::tuple<>{}));
} // namespace
TEST_CASE_TEMPLATE_DEFINE("packed_gemm's FMA tiles equal the scalar twin bit for bit, however the columns are split", B,
                          packed_twin) {
  for (const auto& s : {std::array<index_t, 3>{13, 33, 17}, {96, 48, 49}, {40, 300, 196}, {30, 600, 16}, {8, 5, 3},
                        {27, 40, 18}, {13, 50, 35}, {65, 300, 17}, {65, 130, 18}, {65, 40, 3}, {65, 130, 1}}) {
    const index_t m = s[0], k = s[1], n = s[2];
    CAPTURE(m); CAPTURE(k); CAPTURE(n);
    const problem p(m, k, n, 1, static_cast<std::uint32_t>(7 * m + n));
    const cpu::packed_epilogue e{p.bias.data(), true, true};
    const std::vector<float> twin = run<backend::scalar>(p, e);
    for (index_t split : {index_t{0}, index_t{1}, index_t{5}, index_t{16}, index_t{40}}) {
      CAPTURE(split);
      const std::vector<float> y = run<B>(p, e, split);
      for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == twin[i]);
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(packed_twin, fma_tags);
#endif

TEST_CASE("packed_gemm: NaN in y is ignored unless accumulating; ReLU maps NaN to 0 as vmaxps does") {
  const problem p(13, 4, 17, 0, 11);
  const cpu::packed_matrix pw = cpu::pack_weights(p.w.data(), p.m, p.k, p.k);
  std::vector<float> y(p.y0.size(), std::numeric_limits<float>::quiet_NaN());
  cpu::packed_gemm(pw, p.x.data(), p.ldx, y.data(), p.ldy, p.n, {p.bias.data(), false, false});
  for (float v : y) REQUIRE(std::isfinite(v));
  std::fill(y.begin(), y.end(), std::numeric_limits<float>::quiet_NaN());
  cpu::packed_gemm(pw, p.x.data(), p.ldx, y.data(), p.ldy, p.n, {nullptr, true, true});
  for (float v : y) REQUIRE(v == 0.0f);
}

TEST_CASE("packed_gemm: weights packed for another tile, bad strides and bad extents are shape_errors") {
  const std::vector<float> w = random_vector(20 * 8, 1), x = random_vector(8 * 10, 2);
  std::vector<float> y(20 * 10);
  const cpu::packed_matrix odd(w.data(), 20, 8, 8, 5);
#if MEMBOUND_HAS_AVX2
  CHECK_THROWS_AS(cpu::packed_gemm<backend::avx2>(odd, x.data(), 10, y.data(), 10, 10), shape_error);
#endif
  CHECK_NOTHROW(cpu::packed_gemm<backend::scalar>(odd, x.data(), 10, y.data(), 10, 10)); // the twin reads any panel height
  const cpu::packed_matrix pw = cpu::pack_weights(w.data(), 20, 8, 8);
  CHECK_THROWS_AS(cpu::packed_gemm(pw, x.data(), 9, y.data(), 10, 10), shape_error);
  CHECK_THROWS_AS(cpu::packed_gemm(pw, x.data(), 10, y.data(), 9, 10), shape_error);
  CHECK_THROWS_AS(cpu::packed_gemm(pw, x.data(), 10, y.data(), 10, -1), shape_error);
  CHECK_THROWS_AS(cpu::packed_matrix(w.data(), 20, 8, 7, 12), shape_error);
  CHECK_THROWS_AS(cpu::packed_matrix(w.data(), -1, 8, 8, 12), shape_error);
  CHECK_THROWS_AS(cpu::packed_matrix(w.data(), 20, 8, 8, 0), shape_error);
  CHECK(pw.rows() == 20);
  CHECK(pw.cols() == 8);
  CHECK(pw.bytes() == ((20 + pw.mr() - 1) / pw.mr() * pw.mr() * 8 + cpu::packed_matrix::packed_slack) * 4);
}
