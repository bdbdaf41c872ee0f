// SPDX-License-Identifier: MIT
// Tests of the CPU kernels (backend/cpu/*.hpp): every SIMD backend the build enables against the
// scalar twin (membound::ref) on sizes 0, 1, 7, 8, 15, 16, 17, 1023, 4097 and unaligned starts,
// special values, hand-derived values, the online softmax, top-k ties and typed errors.
//
// Tolerances (u = 2^-24, the float unit roundoff):
// - axpy, scale, max, top-k/bottom-k, and the per-element arithmetic of the norms: exact.
// - sums and dots of n terms: SIMD and scalar both lie within gamma_n * sum|terms| ~ n u sum|terms|
//   of the exact value, so they differ by at most 2 n u sum|terms|.
// - exp: the fast exp is <= 1 ulp (2 on sse4) from the correctly rounded value and std::exp is
//   <= 1 ulp from it, so twin vs SIMD differ by <= 3 ulp (normal results), and a few subnormal ulps.
//   exp2_clamped (SIMD only) is checked against exp2 in double: <= 2 ulp.
// - softmax: y = e_i / S with each e_i within 3 ulp and S (positive terms) within 2 n u relative:
//   |d| <= (8 + 2n) u |y|.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "membound/backend/cpu/cpu.hpp"
#include "membound/ref/ref.hpp"
#include "backends.hpp"

using namespace membound;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();
constexpr double u = 1.0 / 16777216.0; // 2^-24
constexpr std::size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 1023, 4097};
constexpr std::size_t offsets[] = {0, 1, 3}; // unaligned starts (in elements)

/// Deterministic uniform floats in [lo, hi) (a fixed LCG: identical on every platform).
struct lcg {
  std::uint64_t s;
  explicit lcg(std::uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  float next(float lo = -1.f, float hi = 1.f) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * static_cast<float>(s >> 40) * (1.f / 16777216.f);
  }
};
std::vector<float> random_vec(std::size_t n, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  lcg g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = g.next(lo, hi);
  return v;
}
/// Distance in units in the last place between two floats of the same sign (0 when both NaN).
std::int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<std::int64_t>::max();
  auto key = [](float v) {
    const std::int32_t i = std::bit_cast<std::int32_t>(v);
    return i < 0 ? -static_cast<std::int64_t>(i & 0x7fffffff) : static_cast<std::int64_t>(i);
  };
  return std::abs(key(a) - key(b));
}
bool same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i]) && !(std::isnan(a[i]) && std::isnan(b[i])))
      return false;
  return true;
}
double abs_sum(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += std::fabs(v);
  return s;
}

} // namespace

// ---- the backends under test -------------------------------------------------------------------
using test::simd_tags;
// When no SIMD backend is enabled the suites still run once, on the scalar twin against itself.
using tested_tags = std::conditional_t<std::tuple_size_v<simd_tags> == 0, std::tuple<backend::scalar>, simd_tags>;

// ---- reductions and BLAS-1 --------------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("reductions and blas1 agree with the scalar twin", B, reductions_id) {
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      const auto xs = random_vec(n + off, 11 * n + off), ys = random_vec(n + off, 13 * n + off + 1);
      std::span<const float> x(xs.data() + off, n), y(ys.data() + off, n);
      std::vector<float> prod(n);
      for (std::size_t i = 0; i < n; ++i) prod[i] = x[i] * y[i];
      CHECK(std::fabs(cpu::dot<B>(x, y) - ref::dot(x, y)) <= 2 * n * u * abs_sum(prod) + 1e-30);
      CHECK(std::fabs(cpu::sum<B>(x) - ref::sum(x)) <= 2 * n * u * abs_sum(x) + 1e-30);
      CHECK(cpu::max<B>(x) == ref::max(x));

      std::vector<float> a(ys.begin() + static_cast<std::ptrdiff_t>(off), ys.end()), b = a;
      cpu::axpy<B>(0.75f, x, a);
      ref::axpy(0.75f, x, b);
      CHECK(same_bits(a, b));
      cpu::scale<B>(-1.5f, x, a);
      ref::scale(-1.5f, x, b);
      CHECK(same_bits(a, b));
      cpu::scale<B>(3.f, a); // in place
      ref::scale(3.f, b, b);
      CHECK(same_bits(a, b));
    }
  SUBCASE("max propagates NaN and handles infinities") {
    for (std::size_t n : {1, 17, 100}) {
      for (std::size_t pos : {std::size_t(0), n / 2, n - 1}) {
        auto v = random_vec(n, n + pos);
        v[pos] = qnan;
        CHECK(std::isnan(cpu::max<B>(v)));
        v[pos] = inf;
        CHECK(cpu::max<B>(v) == inf);
        std::fill(v.begin(), v.end(), -inf);
        CHECK(cpu::max<B>(v) == -inf);
      }
    }
    CHECK(cpu::max<B>(std::span<const float>()) == -inf);
  }
  SUBCASE("max: both infinities or overflowing sums (the NaN check's rare path) are not NaN") {
    // The SIMD max detects NaN through a lane-wise running sum; +inf + -inf and overflowing sums
    // make that sum NaN or inf without any NaN in the data: the answer must still be the max.
    for (std::size_t n : {3, 33, 1000}) {
      std::vector<float> v(n, 3e38f);
      for (std::size_t i = 0; i < n; i += 2) v[i] = -3e38f;
      v[0] = -inf;
      v[n / 2] = inf;
      CHECK(cpu::max<B>(v) == inf);
      v[n / 2] = 3e38f;
      CHECK(cpu::max<B>(v) == 3e38f);
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(reductions_id, tested_tags);

// ---- exp ---------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("exp agrees with std::exp within its ulp bound", B, exp_id) {
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      auto xs = random_vec(n + off, 7 * n + off, -90.f, 90.f);
      std::span<const float> x(xs.data() + off, n);
      std::vector<float> a(n), b(n);
      cpu::exp<B>(x, a);
      ref::exp(x, b);
      for (std::size_t i = 0; i < n; ++i) {
        CAPTURE(x[i]);
        CHECK(ulp_distance(a[i], b[i]) <= 3);
      }
      cpu::exp<B>(std::span<const float>(xs.data() + off, n), std::span<float>(xs.data() + off, n)); // in place
      CHECK(same_bits(std::span<const float>(xs.data() + off, n), a));
    }
  SUBCASE("special values and the ends of the range") {
    const std::vector<float> x = {0.f, -0.f, 1.f, -1.f, inf, -inf, qnan, 88.7f, 88.8f, 89.f, 1e30f, -87.5f, -100.f, -103.9f,
                                  -104.f, -1e30f, 87.f, -87.f, 1e-30f, -1e-30f};
    std::vector<float> a(x.size()), b(x.size());
    cpu::exp<B>(x, a);
    ref::exp(x, b);
    for (std::size_t i = 0; i < x.size(); ++i) {
      CAPTURE(x[i]);
      CHECK(ulp_distance(a[i], b[i]) <= 3);
    }
    CHECK(a[0] == 1.f);
    CHECK(a[4] == inf);
    CHECK(a[5] == 0.f);
    CHECK(std::isnan(a[6]));
  }
  SUBCASE("maximum error over a sweep of [-104, 89] against the correctly rounded exp") {
    // Every 61st float bit pattern in the range (about 2.6e7 values), rounded from double exp.
    std::vector<float> x;
    for (std::uint32_t bits = 0; bits < 0x80000000u; bits += 61) {
      const float v = std::bit_cast<float>(bits);
      if (v <= 89.f) x.push_back(v);
      const float w = -v;
      if (w >= -104.f) x.push_back(w);
    }
    std::vector<float> a(x.size());
    cpu::exp<B>(x, a);
    std::int64_t worst = 0;
    float worst_x = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float want = static_cast<float>(std::exp(static_cast<double>(x[i])));
      const auto d = ulp_distance(a[i], want);
      if (d > worst) { worst = d; worst_x = x[i]; }
    }
    MESSAGE("max error of ", B::name, " exp: ", worst, " ulp at x = ", worst_x);
    CHECK(worst <= (std::is_same_v<B, backend::scalar> ? 1 : 2));
  }
}
TEST_CASE_TEMPLATE_APPLY(exp_id, tested_tags);

// exp2_clamped (the attention epilogues' branch-free 2^y): a sweep of every 61st float in
// [-126, 127] against exp2 in double rounded to float, and the clamped ends.
TEST_CASE_TEMPLATE_DEFINE("exp2_clamped is within 2 ulp of exp2 and clamps its ends", B, exp2_id) {
  if constexpr (!std::is_same_v<B, backend::scalar>) {
    using A = typename B::arch;
    using V = cpu::detail::fbatch<A>;
    constexpr std::size_t L = cpu::detail::lanes<A>;
    const auto run = [](const std::vector<float>& y) {
      std::vector<float> out(y.size() + L);
      std::vector<float> in(y);
      in.resize(y.size() + L, 0.f);
      for (std::size_t i = 0; i < y.size(); i += L) cpu::detail::exp2_clamped<A>(V::load_unaligned(in.data() + i)).store_unaligned(out.data() + i);
      out.resize(y.size());
      return out;
    };
    std::vector<float> y;
    for (std::uint32_t bits = 0; bits < 0x80000000u; bits += 61) {
      const float v = std::bit_cast<float>(bits);
      if (v <= 127.f) y.push_back(v);
      if (-v >= -126.f) y.push_back(-v);
    }
    const std::vector<float> got = run(y);
    std::int64_t worst = 0;
    float worst_y = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const auto d = ulp_distance(got[i], static_cast<float>(std::exp2(static_cast<double>(y[i]))));
      if (d > worst) { worst = d; worst_y = y[i]; }
    }
    MESSAGE("max error of ", B::name, " exp2_clamped: ", worst, " ulp at y = ", worst_y);
    CHECK(worst <= 2);
    const std::vector<float> ends = run({0.f, -0.f, 1.f, -1.f, 127.f, 128.f, 1e30f, inf, -127.6f, -130.f, -1e30f, -inf, qnan});
    CHECK(ends[0] == 1.f);
    CHECK(ends[1] == 1.f);
    CHECK(ends[2] == 2.f);
    CHECK(ends[3] == 0.5f);
    for (std::size_t i = 4; i < 8; ++i) CHECK(ends[i] == std::ldexp(1.f, 127)); // clamped to 2^127, not inf
    for (std::size_t i = 8; i < 12; ++i) {
      CAPTURE(i);
      CHECK(ends[i] >= 0.f);
      CHECK(ends[i] < std::ldexp(1.f, -126)); // 0, or on AVX-512 the subnormal 2^-127 p
    }
    CHECK(std::isnan(ends[12]));
  }
}
TEST_CASE_TEMPLATE_APPLY(exp2_id, tested_tags);

// ---- softmax, online softmax, logsumexp ---------------------------------------------------------

namespace {
void check_softmax_close(std::span<const float> got, std::span<const float> want, std::size_t n) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    if (std::isnan(want[i])) {
      CHECK(std::isnan(got[i]));
    } else {
      CHECK(std::fabs(got[i] - want[i]) <= (8 + 2 * n) * u * std::fabs(want[i]) + 1e-44);
    }
  }
}
} // namespace

TEST_CASE_TEMPLATE_DEFINE("softmax and logsumexp agree with the scalar twin", B, softmax_id) {
  for (float scale : {1.f, 30.f, 1e4f})
    for (std::size_t n : sizes)
      for (std::size_t off : offsets) {
        CAPTURE(scale);
        CAPTURE(n);
        CAPTURE(off);
        const auto xs = random_vec(n + off, 3 * n + off, -scale, scale);
        std::span<const float> x(xs.data() + off, n);
        std::vector<float> a(n), b(n);
        cpu::softmax<B>(x, a);
        ref::softmax(x, b);
        check_softmax_close(a, b, n);
        const float la = cpu::logsumexp<B>(x), lb = ref::logsumexp(x);
        if (n == 0) CHECK((la == -inf && lb == -inf));
        else CHECK(std::fabs(la - lb) <= (8 + 2 * n) * u * (1 + std::fabs(lb)));
        // In place.
        std::vector<float> c(x.begin(), x.end());
        cpu::softmax<B>(c, c);
        check_softmax_close(c, b, n);
      }
  SUBCASE("NaN, infinities and large magnitudes") {
    for (std::size_t n : {1, 7, 17, 4097}) {
      CAPTURE(n);
      auto x = random_vec(n, 99 + n, -100.f, 100.f);
      std::vector<float> a(n), b(n);
      x[n / 2] = -inf; // masked entry: exactly 0 (unless alone)
      cpu::softmax<B>(x, a);
      ref::softmax(x, b);
      check_softmax_close(a, b, n);
      if (n > 1) CHECK(a[n / 2] == 0.f);
      x[n - 1] = 1e30f; // dominates: one-hot
      cpu::softmax<B>(x, a);
      ref::softmax(x, b);
      check_softmax_close(a, b, n);
      CHECK(a[n - 1] == 1.f);
      x[0] = qnan;
      cpu::softmax<B>(x, a);
      CHECK(std::all_of(a.begin(), a.end(), [](float v) { return std::isnan(v); }));
      CHECK(std::isnan(cpu::logsumexp<B>(x)));
      x[0] = inf;
      cpu::softmax<B>(x, a);
      ref::softmax(x, b);
      CHECK(std::all_of(a.begin(), a.end(), [](float v) { return std::isnan(v); }));
      CHECK(std::all_of(b.begin(), b.end(), [](float v) { return std::isnan(v); }));
      CHECK(cpu::logsumexp<B>(x) == inf);
      CHECK(ref::logsumexp(x) == inf);
      std::fill(x.begin(), x.end(), -inf);
      cpu::softmax<B>(x, a);
      CHECK(std::all_of(a.begin(), a.end(), [](float v) { return std::isnan(v); }));
      CHECK(cpu::logsumexp<B>(x) == -inf);
      CHECK(ref::logsumexp(x) == -inf);
    }
  }
  SUBCASE("rows of a rank-2 view, with a padded row stride") {
    const index_t rows = 5, cols = 17, ld = 20;
    auto xs = random_vec(static_cast<std::size_t>(rows * ld), 5, -8.f, 8.f);
    std::vector<float> a(xs.size(), -1.f), b(xs.size(), -1.f);
    auto xv = make_view<const float>(xs.data(), {rows, cols}, {ld, 1});
    cpu::softmax<B>(xv, make_view<float>(a.data(), {rows, cols}, {ld, 1}));
    ref::softmax(xv, make_view<float>(b.data(), {rows, cols}, {ld, 1}));
    for (index_t r = 0; r < rows; ++r) {
      check_softmax_close(std::span<const float>(a.data() + r * ld, cols), std::span<const float>(b.data() + r * ld, cols), cols);
      CHECK(a[static_cast<std::size_t>(r * ld + cols)] == -1.f); // padding untouched
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(softmax_id, tested_tags);

TEST_CASE_TEMPLATE_DEFINE("online softmax merged from chunks equals the one-shot softmax", B, online_id) {
  for (std::size_t n : {std::size_t(1), std::size_t(17), std::size_t(4097), std::size_t(10000)}) {
    CAPTURE(n);
    const auto x = random_vec(n, 1000 + n, -20.f, 20.f);
    std::vector<float> want(n), got(n);
    cpu::softmax<B>(x, want);
    for (std::size_t chunk : {std::size_t(1), std::size_t(7), std::size_t(1000), std::size_t(3000)}) {
      CAPTURE(chunk);
      // One state per chunk, merged pairwise in reverse order (merge is order-free up to rounding).
      std::vector<softmax_state> states;
      for (std::size_t b = 0; b < n; b += chunk)
        cpu::softmax_update<B>(states.emplace_back(), std::span<const float>(x).subspan(b, std::min(chunk, n - b)));
      softmax_state s;
      for (auto it = states.rbegin(); it != states.rend(); ++it) s = merge(*it, s);
      // And one state updated chunk by chunk.
      softmax_state t;
      for (std::size_t b = 0; b < n; b += chunk) cpu::softmax_update<B>(t, std::span<const float>(x).subspan(b, std::min(chunk, n - b)));
      CHECK(s.max == t.max);
      CHECK(std::fabs(s.sum - t.sum) <= 4 * n * u * t.sum);
      for (std::size_t b = 0; b < n; b += chunk)
        cpu::softmax_finish<B>(s, std::span<const float>(x).subspan(b, std::min(chunk, n - b)),
                               std::span<float>(got).subspan(b, std::min(chunk, n - b)));
      check_softmax_close(got, want, 2 * n);
      CHECK(std::fabs(s.logsumexp() - cpu::logsumexp<B>(x)) <= 4 * n * u * (1 + std::fabs(s.logsumexp())));
    }
  }
  SUBCASE("merge with the empty state is the identity") {
    const softmax_state a{2.f, 3.f};
    CHECK(merge(a, softmax_state{}).max == 2.f);
    CHECK(merge(softmax_state{}, a).sum == 3.f);
    CHECK(merge(softmax_state{}, softmax_state{}).max == -inf);
  }
}
TEST_CASE_TEMPLATE_APPLY(online_id, tested_tags);

// ---- normalisation ---------------------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("rmsnorm and layernorm agree with the scalar twin", B, norm_id) {
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      const auto xs = random_vec(n + off, 17 * n + off, -3.f, 3.f);
      const auto ws = random_vec(n + off, 19 * n + off, 0.5f, 1.5f);
      const auto bs = random_vec(n + off, 23 * n + off);
      std::span<const float> x(xs.data() + off, n), w(ws.data() + off, n), bias(bs.data() + off, n);
      std::vector<float> a(n), b(n);
      // The row statistic is a sum of n terms (2 n u relative); the normalised value is O(1).
      const double tol = (2.0 * n + 16) * u;
      for (bool weighted : {false, true}) {
        CAPTURE(weighted);
        cpu::rmsnorm<B>(x, weighted ? w : std::span<const float>(), a, 1e-6f);
        ref::rmsnorm(x, weighted ? w : std::span<const float>(), b, 1e-6f);
        for (std::size_t i = 0; i < n; ++i) CHECK(std::fabs(a[i] - b[i]) <= tol * (std::fabs(b[i]) + 1));
        cpu::layernorm<B>(x, weighted ? w : std::span<const float>(), weighted ? bias : std::span<const float>(), a, 1e-5f);
        ref::layernorm(x, weighted ? w : std::span<const float>(), weighted ? bias : std::span<const float>(), b, 1e-5f);
        for (std::size_t i = 0; i < n; ++i) CHECK(std::fabs(a[i] - b[i]) <= tol * (std::fabs(b[i]) + 4));
      }
    }
  SUBCASE("rows of a rank-2 view, in place") {
    const index_t rows = 6, cols = 33;
    auto xs = random_vec(static_cast<std::size_t>(rows * cols), 77, -2.f, 2.f);
    const auto w = random_vec(static_cast<std::size_t>(cols), 78, 0.5f, 1.5f);
    auto a = xs, b = xs;
    cpu::rmsnorm<B>(make_view<const float>(a.data(), {rows, cols}), w, make_view<float>(a.data(), {rows, cols}));
    ref::rmsnorm(make_view<const float>(b.data(), {rows, cols}), w, make_view<float>(b.data(), {rows, cols}));
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::fabs(a[i] - b[i]) <= (2.0 * cols + 16) * u * (std::fabs(b[i]) + 1));
    a = xs;
    b = xs;
    cpu::layernorm<B>(make_view<const float>(a.data(), {rows, cols}), w, w, make_view<float>(a.data(), {rows, cols}));
    ref::layernorm(make_view<const float>(b.data(), {rows, cols}), w, w, make_view<float>(b.data(), {rows, cols}));
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::fabs(a[i] - b[i]) <= (2.0 * cols + 16) * u * (std::fabs(b[i]) + 4));
  }
}
TEST_CASE_TEMPLATE_APPLY(norm_id, tested_tags);

// ---- activations -------------------------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("activations agree with the scalar twin", B, act_id) {
  // |d| <= 8 ulp(y) + 1e-6: the fast exp (<= 3 ulp apart from std::exp) enters through one add and
  // one divide; the tanh form differs from the twin's literal formula by <= ~1e-7 absolute where
  // 1 + tanh(u) cancels (x in about [-10, -4]); xsimd::erf is within a few ulp.
  auto close = [](float a, float b) {
    if (std::isnan(b)) return std::isnan(a);
    return std::fabs(a - b) <= 8 * u * 2 * std::fabs(b) + 1e-6;
  };
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      auto xs = random_vec(n + off, 29 * n + off, -12.f, 12.f);
      if (n > 3) { xs[off] = 1e20f; xs[off + 1] = -1e20f; xs[off + 2] = qnan; }
      std::span<const float> x(xs.data() + off, n);
      std::vector<float> a(n), b(n);
      cpu::silu<B>(x, a);
      ref::silu(x, b);
      for (std::size_t i = 0; i < n; ++i) { CAPTURE(x[i]); CHECK(close(a[i], b[i])); }
      cpu::gelu_tanh<B>(x, a);
      ref::gelu_tanh(x, b);
      for (std::size_t i = 0; i < n; ++i) { CAPTURE(x[i]); CHECK(close(a[i], b[i])); }
      cpu::gelu_erf<B>(x, a);
      ref::gelu_erf(x, b);
      for (std::size_t i = 0; i < n; ++i) { CAPTURE(x[i]); CHECK(close(a[i], b[i])); }
    }
}
TEST_CASE_TEMPLATE_APPLY(act_id, tested_tags);

TEST_CASE_TEMPLATE_DEFINE("activation derivatives agree with the scalar twin and the double formula", B, act_bwd_id) {
  // SIMD vs twin: the same tolerance as the forward kernels (the tanh derivative is written with
  // the logistic in SIMD and literally in the twin). Twin vs the derivative evaluated in double:
  // |d| <= 64 ulp + 1e-6 (float exp / erf / tanh inside).
  auto close = [](float a, float b, float ulps) {
    if (std::isnan(b)) return std::isnan(a);
    return std::fabs(a - b) <= ulps * u * 2 * std::fabs(b) + 1e-6;
  };
  auto exact = [](int f, double z) {
    if (f == 0) { const double s = 1.0 / (1.0 + std::exp(-z)); return s * (1.0 + z * (1.0 - s)); }
    if (f == 1) {
      const double k = 0.7978845608028654, c = 0.044715, t = std::tanh(k * (z + c * z * z * z));
      return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * c * z * z);
    }
    return 0.5 * (1.0 + std::erf(z / std::sqrt(2.0))) + z * std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
  };
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      auto zs = random_vec(n + off, 31 * n + off, -12.f, 12.f);
      const auto gs = random_vec(n + off, 37 * n + off, -2.f, 2.f);
      if (n > 3) zs[off + 2] = qnan;
      std::span<const float> z(zs.data() + off, n), g(gs.data() + off, n);
      std::vector<float> a(n), b(n), inplace(g.begin(), g.end());
      for (int f = 0; f < 3; ++f) {
        CAPTURE(f);
        if (f == 0) { cpu::silu_backward<B>(z, g, a); ref::silu_backward(z, g, b); cpu::silu_backward<B>(z, inplace, inplace); }
        if (f == 1) { cpu::gelu_tanh_backward<B>(z, g, a); ref::gelu_tanh_backward(z, g, b); cpu::gelu_tanh_backward<B>(z, inplace, inplace); }
        if (f == 2) { cpu::gelu_erf_backward<B>(z, g, a); ref::gelu_erf_backward(z, g, b); cpu::gelu_erf_backward<B>(z, inplace, inplace); }
        for (std::size_t i = 0; i < n; ++i) {
          CAPTURE(z[i]);
          CHECK(close(a[i], b[i], 16));
          CHECK((std::isnan(a[i]) ? std::isnan(inplace[i]) : inplace[i] == a[i]));
          if (!std::isnan(z[i])) CHECK(close(b[i], static_cast<float>(g[i] * exact(f, z[i])), 64));
          inplace[i] = g[i];
        }
      }
    }
  std::vector<float> x3(3), x4(4);
  CHECK_THROWS_AS(cpu::silu_backward<B>(x3, x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::gelu_erf_backward<B>(x3, x4, x3), shape_error);
}
TEST_CASE_TEMPLATE_APPLY(act_bwd_id, tested_tags);

TEST_CASE_TEMPLATE_DEFINE("the fused swiglu and its backward agree with the scalar twin", B, swiglu_id) {
  // The same tolerances as silu and silu_backward against the twin (one more multiply each); the
  // same bits as the unfused passes; every aliasing the contract allows gives the same bits as
  // separate outputs.
  auto close = [](float a, float b, float ulps) {
    if (std::isnan(b)) return std::isnan(a);
    return std::fabs(a - b) <= ulps * u * 2 * std::fabs(b) + 1e-6;
  };
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      auto gs = random_vec(n + off, 41 * n + off, -12.f, 12.f);
      const auto us = random_vec(n + off, 43 * n + off, -3.f, 3.f), dys = random_vec(n + off, 47 * n + off, -2.f, 2.f);
      if (n > 3) { gs[off] = 1e20f; gs[off + 1] = -1e20f; gs[off + 2] = qnan; }
      std::span<const float> g(gs.data() + off, n), uu(us.data() + off, n), dy(dys.data() + off, n);
      std::vector<float> a(n), b(n), dga(n), dgb(n), dua(n), dub(n);
      cpu::swiglu<B>(g, uu, a);
      ref::swiglu(g, uu, b);
      cpu::swiglu_backward<B>(g, uu, dy, dga, dua);
      ref::swiglu_backward(g, uu, dy, dgb, dub);
      for (std::size_t i = 0; i < n; ++i) {
        CAPTURE(g[i]);
        CHECK(close(a[i], b[i], 8));
        CHECK(close(dga[i], dgb[i], 16));
        CHECK(close(dua[i], dub[i], 8));
      }
      const auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
        for (std::size_t i = 0; i < x.size(); ++i)
          if (!(std::isnan(x[i]) ? std::isnan(y[i]) : x[i] == y[i])) return false;
        return true;
      };
      // The fused passes give the same bits as the separate ones they replace (silu, then the
      // products; silu_backward of dy u).
      std::vector<float> sa(n), sg(n);
      cpu::silu<B>(g, sa);
      for (std::size_t i = 0; i < n; ++i) sg[i] = dy[i] * uu[i];
      cpu::silu_backward<B>(g, std::span<const float>(sg), sg);
      std::vector<float> sy(n), su(n);
      for (std::size_t i = 0; i < n; ++i) sy[i] = sa[i] * uu[i], su[i] = sa[i] * dy[i];
      CHECK(same(a, sy));
      CHECK(same(dga, sg));
      CHECK(same(dua, su));
      std::vector<float> yu(uu.begin(), uu.end()), yg(g.begin(), g.end()), d1(dy.begin(), dy.end()), d2(dy.begin(), dy.end()), o(n);
      cpu::swiglu<B>(g, yu, yu); // y aliases u
      cpu::swiglu<B>(yg, uu, yg); // y aliases g
      cpu::swiglu_backward<B>(g, uu, d1, d1, o); // dg aliases dy
      CHECK(same(o, dua));
      cpu::swiglu_backward<B>(g, uu, d2, o, d2); // du aliases dy
      CHECK(same(yu, a));
      CHECK(same(yg, a));
      CHECK(same(d1, dga));
      CHECK(same(d2, dua));
    }
  std::vector<float> x3(3), x4(4);
  CHECK_THROWS_AS(cpu::swiglu<B>(x3, x4, x3), shape_error);
  CHECK_THROWS_AS(cpu::swiglu_backward<B>(x3, x3, x3, x3, x4), shape_error);
}
TEST_CASE_TEMPLATE_APPLY(swiglu_id, tested_tags);

// ---- matvec -----------------------------------------------------------------------------------

namespace {
template <class B, class T>
void check_matvec(index_t m, index_t k, index_t ld, std::uint64_t seed) {
  CAPTURE(m);
  CAPTURE(k);
  CAPTURE(ld);
  const auto wf = random_vec(static_cast<std::size_t>(m * ld), seed);
  std::vector<T> w(wf.size());
  std::vector<float> wexact(wf.size()); // the weights as the kernels see them
  for (std::size_t i = 0; i < wf.size(); ++i) {
    if constexpr (std::is_same_v<T, float>) w[i] = wf[i];
    else w[i] = T::from_float(wf[i]);
    wexact[i] = ref::detail::widen(w[i]);
  }
  const auto x = random_vec(static_cast<std::size_t>(k), seed + 1);
  const auto wv = make_view<const T>(w.data(), {m, k}, {ld, 1});
  for (bool acc : {false, true}) {
    CAPTURE(acc);
    auto a = random_vec(static_cast<std::size_t>(m), seed + 2), b = a;
    cpu::matvec<B>(wv, x, a, acc);
    ref::matvec(wv, x, b, acc);
    for (index_t i = 0; i < m; ++i) {
      double terms = 0;
      for (index_t j = 0; j < k; ++j) terms += std::fabs(wexact[static_cast<std::size_t>(i * ld + j)] * x[static_cast<std::size_t>(j)]);
      CHECK(std::fabs(a[static_cast<std::size_t>(i)] - b[static_cast<std::size_t>(i)]) <=
            (2.0 * k + 4) * u * (terms + std::fabs(b[static_cast<std::size_t>(i)])) + 1e-30);
    }
  }
}
} // namespace

TEST_CASE_TEMPLATE_DEFINE("matvec agrees with the scalar twin for f32, bf16 and f16 weights", B, matvec_id) {
  for (index_t m : {1, 3, 4, 5, 9})
    for (std::size_t k : sizes) {
      const auto kk = static_cast<index_t>(k);
      check_matvec<B, float>(m, kk, kk + 3, 31 * m + kk);
      check_matvec<B, bf16>(m, kk, kk + 1, 37 * m + kk);
      check_matvec<B, f16>(m, kk, kk, 41 * m + kk);
    }
}
TEST_CASE_TEMPLATE_APPLY(matvec_id, tested_tags);

// ---- selection ---------------------------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("top-k and bottom-k match the scalar twin exactly, ties included", B, select_id) {
  for (std::size_t n : sizes)
    for (std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      auto xs = random_vec(n + off, 43 * n + off);
      for (auto& v : xs) v = std::round(v * 4.f) / 4.f; // 9 levels: many ties, and -0 / +0
      if (n > 6) { xs[off + 1] = qnan; xs[off + 2] = inf; xs[off + 3] = -inf; xs[off + n - 1] = qnan; xs[off + 4] = -0.f; }
      std::span<const float> x(xs.data() + off, n);
      for (std::size_t k : {std::size_t(0), std::size_t(1), std::size_t(5), n / 2, n}) {
        if (k > n) continue;
        CAPTURE(k);
        CHECK(cpu::top_k<B>(x, static_cast<index_t>(k)) == ref::top_k(x, static_cast<index_t>(k)));
        CHECK(cpu::bottom_k<B>(x, static_cast<index_t>(k)) == ref::bottom_k(x, static_cast<index_t>(k)));
      }
    }
}
TEST_CASE_TEMPLATE_APPLY(select_id, tested_tags);

// ---- hand-derived values (scalar twin and the best backend) ----------------------------------

TEST_CASE_TEMPLATE("hand-derived values", B, backend::scalar, backend::best_cpu) {
  SUBCASE("softmax of {0, ln 3} is {1/4, 3/4}") {
    const std::vector<float> x = {0.f, std::log(3.f)};
    std::vector<float> y(2);
    cpu::softmax<B>(x, y);
    CHECK(y[0] == doctest::Approx(0.25).epsilon(1e-6));
    CHECK(y[1] == doctest::Approx(0.75).epsilon(1e-6));
    CHECK(cpu::logsumexp<B>(x) == doctest::Approx(std::log(4.0)).epsilon(1e-6));
  }
  SUBCASE("softmax of one element is 1, of equal elements uniform") {
    std::vector<float> x = {-123.f}, y(1);
    cpu::softmax<B>(x, y);
    CHECK(y[0] == 1.f);
    x.assign(8, 5.f);
    y.resize(8);
    cpu::softmax<B>(x, y);
    for (float v : y) CHECK(v == 0.125f);
  }
  SUBCASE("dot, sum, max") {
    const std::vector<float> x = {1, 2, 3}, y = {4, 5, 6};
    CHECK(cpu::dot<B>(x, y) == 32.f);
    CHECK(cpu::sum<B>(x) == 6.f);
    CHECK(cpu::max<B>(y) == 6.f);
  }
  SUBCASE("rmsnorm of {3, 4} and layernorm of {1, 3}") {
    const std::vector<float> x = {3.f, 4.f};
    std::vector<float> y(2);
    cpu::rmsnorm<B>(x, {}, y, 0.f); // rms = sqrt(12.5)
    CHECK(y[0] == doctest::Approx(3 / std::sqrt(12.5)).epsilon(1e-6));
    CHECK(y[1] == doctest::Approx(4 / std::sqrt(12.5)).epsilon(1e-6));
    const std::vector<float> z = {1.f, 3.f}, g = {2.f, 2.f}, b = {1.f, 1.f};
    cpu::layernorm<B>(z, g, b, y, 0.f); // mean 2, var 1: {-1, 1} * 2 + 1
    CHECK(y[0] == doctest::Approx(-1.0).epsilon(1e-6));
    CHECK(y[1] == doctest::Approx(3.0).epsilon(1e-6));
  }
  SUBCASE("activations at 0 and 1") {
    const std::vector<float> x = {0.f, 1.f};
    std::vector<float> y(2);
    cpu::silu<B>(x, y);
    CHECK(y[0] == 0.f);
    CHECK(y[1] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
    cpu::gelu_erf<B>(x, y);
    CHECK(y[0] == 0.f);
    CHECK(y[1] == doctest::Approx(0.8413447460685429).epsilon(1e-6));
    cpu::gelu_tanh<B>(x, y);
    CHECK(y[0] == 0.f);
    CHECK(y[1] == doctest::Approx(0.8411919906082768).epsilon(1e-6));
  }
  SUBCASE("matvec of a 2x3 matrix") {
    const std::vector<float> w = {1, 2, 3, 4, 5, 6}, x = {1, 0, -1};
    std::vector<float> y = {10, 20};
    cpu::matvec<B>(make_view<const float>(w.data(), {2, 3}), x, y);
    CHECK(y == std::vector<float>{-2, -2});
    cpu::matvec<B>(make_view<const float>(w.data(), {2, 3}), x, y, true);
    CHECK(y == std::vector<float>{-4, -4});
  }
  SUBCASE("top-k ties go to the lower index; NaN ranks above +inf") {
    const std::vector<float> x = {1.f, 3.f, 3.f, 2.f, 3.f};
    CHECK(cpu::top_k<B>(x, 2) == std::vector<index_t>{1, 2});
    CHECK(cpu::top_k<B>(x, 4) == std::vector<index_t>{1, 2, 4, 3});
    CHECK(cpu::bottom_k<B>(x, 2) == std::vector<index_t>{0, 3});
    const std::vector<float> z = {0.f, -0.f, qnan, inf, -inf};
    CHECK(cpu::top_k<B>(z, 5) == std::vector<index_t>{2, 3, 0, 1, 4});
    CHECK(cpu::bottom_k<B>(z, 5) == std::vector<index_t>{4, 0, 1, 3, 2});
  }
  SUBCASE("exp of 0, 1 and ln 2") {
    const std::vector<float> x = {0.f, 1.f, std::log(2.f)};
    std::vector<float> y(3);
    cpu::exp<B>(x, y);
    CHECK(y[0] == 1.f);
    CHECK(ulp_distance(y[1], 2.7182817f) <= 1);
    CHECK(ulp_distance(y[2], 2.f) <= 1);
  }
}

// ---- typed errors ---------------------------------------------------------------------------

TEST_CASE_TEMPLATE("bad input throws typed errors naming the values", B, backend::scalar, backend::best_cpu) {
  std::vector<float> x3(3), x4(4);
  CHECK_THROWS_WITH_AS(cpu::dot<B>(x3, x4), "dot: x has 3 elements, y has 4", shape_error);
  CHECK_THROWS_AS(cpu::axpy<B>(1.f, x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::scale<B>(1.f, x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::exp<B>(x3, x4), shape_error);
  CHECK_THROWS_WITH_AS(cpu::softmax<B>(x3, x4), "softmax: x has 3 elements, y has 4", shape_error);
  CHECK_THROWS_AS(cpu::softmax_finish<B>(softmax_state{}, x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::silu<B>(x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::gelu_tanh<B>(x3, x4), shape_error);
  CHECK_THROWS_AS(cpu::gelu_erf<B>(x3, x4), shape_error);
  CHECK_THROWS_WITH_AS(cpu::rmsnorm<B>(x3, x4, x3), "rmsnorm: weight has 4 elements, expected 0 or 3", shape_error);
  CHECK_THROWS_WITH_AS(cpu::rmsnorm<B>(x3, {}, x3, -1.f), "rmsnorm: eps is -1, expected a finite value >= 0", config_error);
  CHECK_THROWS_AS(cpu::layernorm<B>(x3, {}, {}, x3, -1.f), config_error);
  CHECK_THROWS_AS(cpu::layernorm<B>(x3, {}, x4, x3), shape_error);
  CHECK_THROWS_WITH_AS((void)cpu::top_k<B>(x3, 4), "top_k: k is 4, expected 0 <= k <= n = 3", config_error);
  CHECK_THROWS_AS((void)cpu::bottom_k<B>(x3, -1), config_error);
  std::vector<index_t> out(5);
  CHECK_THROWS_AS(cpu::top_k<B>(x3, out), config_error);
  std::vector<float> w(12);
  const auto wv = make_view<const float>(w.data(), {3, 4});
  CHECK_THROWS_WITH_AS(cpu::matvec<B>(wv, x3, x3), "matvec: W has 4 columns, x has 3 elements", shape_error);
  CHECK_THROWS_WITH_AS(cpu::matvec<B>(wv, x4, x4), "matvec: W has 3 rows, y has 4 elements", shape_error);
  CHECK_THROWS_AS(cpu::matvec<B>(make_view<const float>(w.data(), {12}), x4, x3), shape_error);
  CHECK_THROWS_WITH_AS(cpu::matvec<B>(make_view<const float>(w.data(), {3, 4}, {1, 3}), x4, x3),
                       "matvec: W has inner stride 3, expected 1 (contiguous rows)", shape_error);
  CHECK_THROWS_AS(cpu::softmax<B>(make_view<const float>(w.data(), {12}), make_view<float>(w.data(), {12})), shape_error);
  CHECK_THROWS_WITH_AS(cpu::softmax<B>(make_view<const float>(w.data(), {3, 4}), make_view<float>(w.data(), {4, 3})),
                       "softmax: x is (3,4) but y is (4,3)", shape_error);
  std::vector<bf16> b4(4);
  CHECK_THROWS_AS(cpu::convert<B>(x3, std::span<bf16>(b4)), shape_error);
}
