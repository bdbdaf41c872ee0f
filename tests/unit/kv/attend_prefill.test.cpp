// SPDX-License-Identifier: MIT
// kv::attend_prefill and kv::attention_column_sums, tiled causal prefill attention: every backend
// (scalar twin and each SIMD tag the build enables) against a naive double-precision causal
// attention, on odd sizes: T in {1, 7, 64, 65, 130}, S = T and S > T (a prefix of cached keys),
// D in {16, 64, 80, 128}, group sizes 1, 2, 4 over G = 2 KV heads; shapes spanning several query
// and key tiles (T = 300, S = 600); K and V given in transformers' (S,G,D) memory order (strided
// views); SIMD against the twin; column sums against the naive matrix (t0 = T/2) and against
// kv::h2o{}.score (kvpress's accumulated attention) on the same inputs; large logits (scale 30)
// stay finite; typed errors naming the shapes. bf16 K and V (D in {40, 64, 128}, groups 1 and 4,
// T = S and T < S, T off the tile multiples, several key tiles): against the naive attention on
// the widened values, against the scalar twin on the same bf16 inputs (SIMD), and bit for bit
// against the f32 overload on the widened values; mixed f32/bf16 K and V do not compile.
//
// Tolerances (u = 2^-24), as tests/unit/kv/attend.test.cpp: each logit z is a float dot of D
// terms and one multiply, |dz| <= eps_z = (D + 2) u scale sum_e |q_e k_e| (max over keys); a
// probability moves by |dp_i| <= p_i (2 eps_z + (2 S + 16) u), so an out row moves by at most
// tol = 2 (2 eps_z + (2 S + 16) u) max|v|; a column sum of R rows by (that relative bound + 2 R u)
// times its value.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "membound/core/dtype.hpp"
#include "membound/kv/attend_prefill.hpp"
#include "membound/kv/observed_attention.hpp"
#include "../backend/backends.hpp"

using namespace membound;

namespace {

constexpr double u = 1.0 / 16777216.0; // 2^-24

/// One prefill: q dense (H,T,D); k and v stored (S,G,D) and viewed as (G,S,D).
struct problem {
  index_t h, g, t, s, d;
  std::vector<float> q, k, v;
  problem(index_t h_, index_t g_, index_t t_, index_t s_, index_t d_, std::uint32_t seed, float lo = -1.0f,
          float hi = 1.0f)
      : h(h_), g(g_), t(t_), s(s_), d(d_) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> val(lo, hi);
    q.resize(static_cast<std::size_t>(h * t * d));
    k.resize(static_cast<std::size_t>(s * g * d));
    v.resize(k.size());
    for (auto& x : q) x = val(gen);
    for (auto& x : k) x = val(gen);
    for (auto& x : v) x = val(gen);
  }
  view<const float> qv() const { return make_view<const float>(q.data(), {h, t, d}); }
  view<const float> kv() const { return make_view<const float>(k.data(), {g, s, d}, {d, g * d, 1}); }
  view<const float> vv() const { return make_view<const float>(v.data(), {g, s, d}, {d, g * d, 1}); }
  double qa(index_t hh, index_t r, index_t e) const { return q[static_cast<std::size_t>((hh * t + r) * d + e)]; }
  double ka(index_t gg, index_t j, index_t e) const { return k[static_cast<std::size_t>((j * g + gg) * d + e)]; }
  double va(index_t gg, index_t j, index_t e) const { return v[static_cast<std::size_t>((j * g + gg) * d + e)]; }
};

/// Naive causal attention in double: out (H,T,D), per-(h,t) tolerance, column sums (G,S) for rows
/// [t0, T) and their tolerances.
struct naive_result {
  std::vector<double> out, tol, cs, cstol;
};
naive_result naive(const problem& p, double scale, index_t t0) {
  naive_result r;
  const index_t grp = p.h / p.g;
  r.out.assign(static_cast<std::size_t>(p.h * p.t * p.d), 0.0);
  r.tol.assign(static_cast<std::size_t>(p.h * p.t), 0.0);
  r.cs.assign(static_cast<std::size_t>(p.g * p.s), 0.0);
  r.cstol.assign(r.cs.size(), 0.0);
  std::vector<double> rel_g(static_cast<std::size_t>(p.g), 0.0);
  for (index_t hh = 0; hh < p.h; ++hh) {
    const index_t g = hh / grp;
    for (index_t row = 0; row < p.t; ++row) {
      const index_t last = p.s - p.t + row;
      std::vector<double> z(static_cast<std::size_t>(last + 1));
      double eps_z = 0.0, vmax = 0.0;
      for (index_t j = 0; j <= last; ++j) {
        double acc = 0.0, mag = 0.0;
        for (index_t e = 0; e < p.d; ++e) {
          const double x = p.qa(hh, row, e) * p.ka(g, j, e);
          acc += x;
          mag += std::fabs(x);
          vmax = std::max(vmax, std::fabs(p.va(g, j, e)));
        }
        z[static_cast<std::size_t>(j)] = acc * scale;
        eps_z = std::max(eps_z, static_cast<double>(p.d + 2) * u * std::fabs(scale) * mag);
      }
      const double mx = *std::max_element(z.begin(), z.end());
      double sum = 0.0;
      for (auto& x : z) sum += (x = std::exp(x - mx));
      for (index_t j = 0; j <= last; ++j) {
        const double pr = z[static_cast<std::size_t>(j)] / sum;
        if (row >= t0) r.cs[static_cast<std::size_t>(g * p.s + j)] += pr / static_cast<double>(grp);
        for (index_t e = 0; e < p.d; ++e) r.out[static_cast<std::size_t>((hh * p.t + row) * p.d + e)] += pr * p.va(g, j, e);
      }
      const double rel = 2.0 * (2.0 * eps_z + (2.0 * static_cast<double>(last + 1) + 16.0) * u);
      r.tol[static_cast<std::size_t>(hh * p.t + row)] = rel * vmax + 1e-30;
      rel_g[static_cast<std::size_t>(g)] = std::max(rel_g[static_cast<std::size_t>(g)], rel);
    }
  }
  for (index_t g = 0; g < p.g; ++g)
    for (index_t j = 0; j < p.s; ++j) {
      const auto i = static_cast<std::size_t>(g * p.s + j);
      r.cstol[i] = (rel_g[static_cast<std::size_t>(g)] + 2.0 * static_cast<double>(p.t - t0 + 2) * u) * r.cs[i] + 1e-20;
    }
  return r;
}

/// attend_prefill on p's queries over K/V views k, v (f32 or bf16, p's shapes).
template <class B, class KV>
std::vector<float> run_attend_on(const problem& p, const KV& k, const KV& v, float scale) {
  std::vector<float> out(static_cast<std::size_t>(p.h * p.t * p.d), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> scratch(kv::attend_prefill_scratch_floats(p.h, p.g, p.s, p.d));
  kv::attend_prefill<B>(p.qv(), k, v, make_view<float>(out.data(), {p.h, p.t, p.d}), scale, scratch);
  return out;
}

/// attention_column_sums of p's queries over keys k (f32 or bf16).
template <class B, class KV>
std::vector<float> run_colsum_on(const problem& p, const KV& k, index_t t0, float scale) {
  std::vector<float> cs(static_cast<std::size_t>(p.g * p.s), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> scratch(kv::attention_column_sums_scratch_floats(p.h, p.g, p.t, p.s, p.d));
  kv::attention_column_sums<B>(p.qv(), k, t0, make_view<float>(cs.data(), {p.g, p.s}), scale, scratch);
  return cs;
}

template <class B>
std::vector<float> run_attend(const problem& p, float scale) {
  return run_attend_on<B>(p, p.kv(), p.vv(), scale);
}

template <class B>
std::vector<float> run_colsum(const problem& p, index_t t0, float scale) {
  return run_colsum_on<B>(p, p.kv(), t0, scale);
}

/// Elements where the SIMD output and the scalar twin's differ by more than twice the naive
/// tolerance of their row (0 expected).
[[maybe_unused]] std::size_t outside_twice_tol(const problem& p, const std::vector<float>& out, const std::vector<float>& tw,
                              const naive_result& ref) {
  std::size_t bad = 0;
  for (index_t i = 0; i < p.h * p.t; ++i)
    for (index_t e = 0; e < p.d; ++e) {
      const auto k = static_cast<std::size_t>(i * p.d + e);
      if (!(std::fabs(out[k] - tw[k]) <= 2.0 * ref.tol[static_cast<std::size_t>(i)])) ++bad;
    }
  return bad;
}

/// Checks out against the naive result; returns the number of failing elements (0 expected).
std::size_t bad_out(const problem& p, const std::vector<float>& out, const naive_result& ref) {
  std::size_t bad = 0;
  for (index_t i = 0; i < p.h * p.t; ++i)
    for (index_t e = 0; e < p.d; ++e) {
      const auto k = static_cast<std::size_t>(i * p.d + e);
      if (!(std::fabs(static_cast<double>(out[k]) - ref.out[k]) <= ref.tol[static_cast<std::size_t>(i)])) ++bad;
    }
  return bad;
}
std::size_t bad_cs(const std::vector<float>& cs, const naive_result& ref) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!(std::fabs(static_cast<double>(cs[i]) - ref.cs[i]) <= ref.cstol[i])) ++bad;
  return bad;
}

template <class B>
void check_shape(index_t t, index_t s, index_t d, index_t grp, float scale, std::uint32_t seed, float lo = -1.0f,
                 float hi = 1.0f) {
  CAPTURE(t);
  CAPTURE(s);
  CAPTURE(d);
  CAPTURE(grp);
  const problem p(2 * grp, 2, t, s, d, seed, lo, hi);
  const double sc = scale != 0.0f ? scale : 1.0 / std::sqrt(static_cast<double>(static_cast<float>(d)));
  const float scf = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(d));
  const index_t t0 = t / 2;
  const naive_result ref = naive(p, static_cast<double>(scf), t0);
  (void)sc;
  const auto out = run_attend<B>(p, scale);
  CHECK(bad_out(p, out, ref) == 0);
  const auto cs = run_colsum<B>(p, t0, scale);
  CHECK(bad_cs(cs, ref) == 0);
  if constexpr (!std::is_same_v<B, backend::scalar>) { // SIMD against the twin: within both bounds
    const auto tw = run_attend<backend::scalar>(p, scale);
    CHECK(outside_twice_tol(p, out, tw, ref) == 0);
  }
}

/// A problem with bf16 K and V: k and v hold the bf16 values in the (S,G,D) layout of `problem`,
/// and p.k, p.v are replaced by their exact widening, so that the f32 overloads (and the naive
/// attention) on p see the very numbers the bf16 overloads see.
struct bf16_problem {
  problem p;
  std::vector<bf16> k, v;
  bf16_problem(index_t h, index_t g, index_t t, index_t s, index_t d, std::uint32_t seed) : p(h, g, t, s, d, seed) {
    auto round = [](std::vector<float>& x, std::vector<bf16>& y) {
      y.resize(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        y[i] = bf16::from_float(x[i]);
        x[i] = y[i].to_float();
      }
    };
    round(p.k, k);
    round(p.v, v);
  }
  view<const bf16> kv() const { return make_view<const bf16>(k.data(), {p.g, p.s, p.d}, {p.d, p.g * p.d, 1}); }
  view<const bf16> vv() const { return make_view<const bf16>(v.data(), {p.g, p.s, p.d}, {p.d, p.g * p.d, 1}); }
};

template <class B>
std::vector<float> run_attend_bf16(const bf16_problem& b, float scale) {
  return run_attend_on<B>(b.p, b.kv(), b.vv(), scale);
}

template <class B>
std::vector<float> run_colsum_bf16(const bf16_problem& b, index_t t0, float scale) {
  return run_colsum_on<B>(b.p, b.kv(), t0, scale);
}

/// Bitwise equality of two float vectors (no NaN is expected in either).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// bf16 K and V on one shape (see the file comment): naive, f32 overload, scalar twin.
template <class B>
void check_bf16(index_t t, index_t s, index_t d, index_t grp, std::uint32_t seed) {
  CAPTURE(t);
  CAPTURE(s);
  CAPTURE(d);
  CAPTURE(grp);
  const bf16_problem b(2 * grp, 2, t, s, d, seed);
  const problem& p = b.p;
  const index_t t0 = t / 2;
  const naive_result ref = naive(p, 1.0 / std::sqrt(static_cast<double>(static_cast<float>(d))), t0);
  const auto out = run_attend_bf16<B>(b, 0.0f);
  CHECK(bad_out(p, out, ref) == 0);
  CHECK(same_bits(out, run_attend<B>(p, 0.0f))); // the f32 path on the widened K and V
  const auto cs = run_colsum_bf16<B>(b, t0, 0.0f);
  CHECK(bad_cs(cs, ref) == 0);
  CHECK(same_bits(cs, run_colsum<B>(p, t0, 0.0f)));
  if constexpr (!std::is_same_v<B, backend::scalar>) { // SIMD against the twin on the same bf16 inputs
    const auto tw = run_attend_bf16<backend::scalar>(b, 0.0f);
    CHECK(outside_twice_tol(p, out, tw, ref) == 0);
    const auto cstw = run_colsum_bf16<backend::scalar>(b, t0, 0.0f);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (!(std::fabs(static_cast<double>(cs[i]) - cstw[i]) <= 2.0 * ref.cstol[i])) ++bad;
    CHECK(bad == 0);
  }
}

/// Whether attend_prefill / attention_column_sums accept K of type K and V of type V.
template <class K, class V>
concept prefill_accepts = requires(view<const float> q, K k, V v, view<float> o) {
  kv::attend_prefill<backend::scalar>(q, k, v, o);
};
template <class K>
concept colsum_accepts = requires(view<const float> q, K k, view<float> c) {
  kv::attention_column_sums<backend::scalar>(q, k, 0, c);
};

} // namespace

// f32 and bf16 K/V, const or not, are accepted; mixing the two (or another element type) is not.
static_assert(prefill_accepts<view<const float>, view<const float>>);
static_assert(prefill_accepts<view<float>, view<float>>);
static_assert(prefill_accepts<view<const bf16>, view<const bf16>>);
static_assert(prefill_accepts<view<bf16>, view<bf16>>);
static_assert(!prefill_accepts<view<const float>, view<const bf16>>);
static_assert(!prefill_accepts<view<const bf16>, view<const float>>);
static_assert(!prefill_accepts<view<const f16>, view<const f16>>);
static_assert(colsum_accepts<view<const float>> && colsum_accepts<view<bf16>>);
static_assert(!colsum_accepts<view<const f16>>);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill and column sums equal naive causal attention", B, prefill_naive_id) {
  std::uint32_t seed = 1;
  for (index_t t : {1, 7, 64, 65, 130})
    for (index_t extra : {0, 37})
      for (index_t d : {16, 64, 80, 128})
        for (index_t grp : {1, 2, 4}) check_shape<B>(t, t + extra, d, grp, 0.0f, seed++);
}
TEST_CASE_TEMPLATE_APPLY(prefill_naive_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill: odd head dims and long prefixes", B, prefill_odd_id) {
  check_shape<B>(3, 200, 7, 2, 0.0f, 7);
  check_shape<B>(33, 33, 1, 1, 0.0f, 8);
  check_shape<B>(70, 129, 33, 4, 0.0f, 9);
  // several key tiles (prefill_key_tile = 256) and query tiles (64): the online rescale across tiles
  check_shape<B>(300, 300, 64, 2, 0.0f, 10);
  check_shape<B>(130, 600, 80, 1, 0.0f, 11);
  check_shape<B>(65, 520, 16, 4, 0.0f, 12);
}
TEST_CASE_TEMPLATE_APPLY(prefill_odd_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill: large logits (scale 30) stay finite and correct", B, prefill_large_id) {
  for (index_t d : {16, 128}) check_shape<B>(65, 100, d, 2, 30.0f, 42, -2.0f, 2.0f);
  const problem p(2, 1, 40, 40, 64, 5, -3.0f, 3.0f);
  const auto out = run_attend<B>(p, 50.0f);
  CHECK(std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }));
}
TEST_CASE_TEMPLATE_APPLY(prefill_large_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attention_column_sums equals kv::h2o{}.score and sums to the row count", B,
                          prefill_h2o_id) {
  for (index_t grp : {1, 2, 4}) {
    CAPTURE(grp);
    const problem p(2 * grp, 2, 77, 77, 80, static_cast<std::uint32_t>(11 + grp));
    const auto cs = run_colsum<B>(p, 0, 0.0f);
    std::vector<float> h2o(cs.size());
    kv::prefill_inputs in;
    in.queries = p.qv();
    in.keys = p.kv();
    in.values = p.vv();
    kv::h2o{}.score(in, 0, make_view<float>(h2o.data(), {p.g, p.s}));
    const naive_result ref = naive(p, 1.0 / std::sqrt(80.0), 0);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (!(std::fabs(static_cast<double>(cs[i]) - h2o[i]) <= ref.cstol[i] + 2.0 * u * std::fabs(h2o[i]))) ++bad;
    CHECK(bad == 0);
    for (index_t g = 0; g < p.g; ++g) {
      double sum = 0.0;
      for (index_t j = 0; j < p.s; ++j) sum += cs[static_cast<std::size_t>(g * p.s + j)];
      CHECK(sum == doctest::Approx(77.0).epsilon(1e-5));
    }
    // t0 = T counts no row: all zeros
    const auto z = run_colsum<B>(p, p.t, 0.0f);
    CHECK(std::all_of(z.begin(), z.end(), [](float x) { return x == 0.0f; }));
  }
}
TEST_CASE_TEMPLATE_APPLY(prefill_h2o_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill: bad input throws typed errors naming the shapes", B, prefill_bad_id) {
  const problem p(4, 2, 5, 8, 4, 3);
  std::vector<float> out(4 * 5 * 4), cs(2 * 8), big(4096);
  const auto q = p.qv(), k = p.kv(), v = p.vv();
  const auto o = make_view<float>(out.data(), {4, 5, 4});
  std::vector<float> scratch(kv::attend_prefill_scratch_floats(4, 2, 8, 4));
  CHECK_NOTHROW(kv::attend_prefill<B>(q, k, v, o, 0.0f, scratch));
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(make_view<const float>(p.q.data(), {3, 5, 4}), k, v,
                                             make_view<float>(out.data(), {3, 5, 4}), 0.0f, scratch),
                       "kv::attend_prefill: q (3,5,4) has H = 3 query heads, expected a positive multiple of G = 2 "
                       "of k (2,8,4)",
                       shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(make_view<const float>(p.q.data(), {2, 5, 8}), k, v, o, 0.0f, scratch),
                       "kv::attend_prefill: q (2,5,8) and k (2,8,4) need the same head dim D >= 1", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(make_view<const float>(big.data(), {4, 9, 4}), k, v,
                                             make_view<float>(big.data() + 1024, {4, 9, 4}), 0.0f, scratch),
                       "kv::attend_prefill: q (4,9,4) has T = 9 queries over k (2,8,4) with S = 8 keys, expected T <= S",
                       shape_error);
  CHECK_THROWS_AS(kv::attend_prefill<B>(make_view<const float>(p.q.data(), {80}), k, v, o, 0.0f, scratch), shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, make_view<const float>(p.v.data(), {2, 7, 4}), o, 0.0f, scratch),
                       "kv::attend_prefill: v must be (G,S,D) = (2,8,4) like k; got rank 3 (2,7,4)", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, v, make_view<float>(out.data(), {4, 4, 4}), 0.0f, scratch),
                       "kv::attend_prefill: out must be (H,T,D) = (4,5,4) like q; got rank 3 (4,4,4)", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, v, make_view<float>(big.data(), {4, 5, 4}, {40, 8, 2}), 0.0f, scratch),
                       "kv::attend_prefill: out needs contiguous rows (inner stride 1); got 2", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(make_view<const float>(big.data(), {4, 5, 4}, {40, 8, 2}), k, v, o, 0.0f,
                                             scratch),
                       "kv::attend_prefill: q needs contiguous rows (inner stride 1); got 2", shape_error);
  CHECK_THROWS_AS(kv::attend_prefill<B>(q, k, v, o, std::numeric_limits<float>::infinity(), scratch), config_error);
  CHECK_THROWS_AS(kv::attend_prefill<B>(q, k, v, o, std::numeric_limits<float>::quiet_NaN(), scratch), config_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, v, o, 0.0f, std::span<float>(scratch).first(scratch.size() - 1)),
                       doctest::Contains("kv::attend_prefill: scratch has"), shape_error);
  // column sums
  const auto c = make_view<float>(cs.data(), {2, 8});
  std::vector<float> cscratch(kv::attention_column_sums_scratch_floats(4, 2, 5, 8, 4));
  CHECK_NOTHROW(kv::attention_column_sums<B>(q, k, 0, c, 0.0f, cscratch));
  CHECK_THROWS_WITH_AS(kv::attention_column_sums<B>(q, k, 6, c, 0.0f, cscratch),
                       "kv::attention_column_sums: t0 = 6 out of range [0, T = 5] for q (4,5,4)", shape_error);
  CHECK_THROWS_AS(kv::attention_column_sums<B>(q, k, -1, c, 0.0f, cscratch), shape_error);
  CHECK_THROWS_WITH_AS(kv::attention_column_sums<B>(q, k, 0, make_view<float>(cs.data(), {2, 7}), 0.0f, cscratch),
                       "kv::attention_column_sums: colsum must be (G,S) = (2,8) for k (2,8,4); got rank 2 (2,7)",
                       shape_error);
  CHECK_THROWS_AS(kv::attention_column_sums<B>(q, k, 0, c, 0.0f, std::span<float>(cscratch).first(3)), shape_error);
  CHECK_THROWS_AS(kv::attention_column_sums<B>(q, k, 0, c, -std::numeric_limits<float>::infinity(), cscratch),
                  config_error);
}
TEST_CASE_TEMPLATE_APPLY(prefill_bad_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill and column sums with bf16 K and V", B, prefill_bf16_id) {
  std::uint32_t seed = 100;
  for (index_t d : {40, 64, 128})
    for (index_t grp : {1, 4}) {
      check_bf16<B>(65, 65, d, grp, seed++);   // T = S, T not a multiple of the query tile
      check_bf16<B>(130, 167, d, grp, seed++); // T < S
      check_bf16<B>(1, 9, d, grp, seed++);
    }
  // several query and key tiles (the online rescale across key tiles), odd head dims
  check_bf16<B>(300, 600, 64, 4, seed++);
  check_bf16<B>(260, 260, 128, 1, seed++);
  check_bf16<B>(70, 129, 7, 2, seed++);
  check_bf16<B>(33, 33, 1, 1, seed++);
}
TEST_CASE_TEMPLATE_APPLY(prefill_bf16_id, test::all_tags);

TEST_CASE_TEMPLATE_DEFINE("kv::attend_prefill with bf16 K and V: bad input throws typed errors", B, prefill_bf16_bad_id) {
  const bf16_problem b(4, 2, 5, 8, 4, 3);
  const problem& p = b.p;
  std::vector<float> out(4 * 5 * 4), cs(2 * 8);
  const auto q = p.qv();
  const auto k = b.kv(), v = b.vv();
  const auto o = make_view<float>(out.data(), {4, 5, 4});
  std::vector<float> scratch(kv::attend_prefill_scratch_floats(4, 2, 8, 4));
  CHECK_NOTHROW(kv::attend_prefill<B>(q, k, v, o, 0.0f, scratch));
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, make_view<const bf16>(b.v.data(), {2, 7, 4}), o, 0.0f, scratch),
                       "kv::attend_prefill: v must be (G,S,D) = (2,8,4) like k; got rank 3 (2,7,4)", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(make_view<const float>(p.q.data(), {2, 5, 8}), k, v, o, 0.0f, scratch),
                       "kv::attend_prefill: q (2,5,8) and k (2,8,4) need the same head dim D >= 1", shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_prefill<B>(q, k, v, o, 0.0f, std::span<float>(scratch).first(scratch.size() - 1)),
                       doctest::Contains("kv::attend_prefill: scratch has"), shape_error);
  CHECK_THROWS_AS(kv::attend_prefill<B>(q, k, v, o, std::numeric_limits<float>::infinity(), scratch), config_error);
  const auto c = make_view<float>(cs.data(), {2, 8});
  std::vector<float> cscratch(kv::attention_column_sums_scratch_floats(4, 2, 5, 8, 4));
  CHECK_NOTHROW(kv::attention_column_sums<B>(q, k, 0, c, 0.0f, cscratch));
  CHECK_THROWS_WITH_AS(kv::attention_column_sums<B>(q, k, 6, c, 0.0f, cscratch),
                       "kv::attention_column_sums: t0 = 6 out of range [0, T = 5] for q (4,5,4)", shape_error);
  CHECK_THROWS_AS(kv::attention_column_sums<B>(q, k, 0, c, 0.0f, std::span<float>(cscratch).first(3)), shape_error);
}
TEST_CASE_TEMPLATE_APPLY(prefill_bf16_bad_id, test::all_tags);
