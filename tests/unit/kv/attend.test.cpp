// SPDX-License-Identifier: MIT
// kv::attend_decode, decode attention over the paged cache: every backend (scalar twin and each
// SIMD tag the build enables) against a naive double-precision attention computed from the test's
// own copy of the tokens that survive a random eviction (keep()), on odd sizes: D in {8, 64, 128,
// 80}, group sizes 1, 2, 4, head lengths 0, 1, 3, 17, 200, pages of 4 and 16 tokens, f32 and bf16
// storage; SIMD against the twin; the mass output (sums to 1 per KV head, matches the naive
// group-mean probabilities, zero tail); large logits (scale 30) stay finite; a hand-derived case;
// typed errors naming the values.
//
// Tolerances (u = 2^-24). Both the twin and the SIMD kernel compute each logit z with a float dot
// of D terms and one multiply: |dz| <= eps_z = (D + 2) u scale sum_e |q_e k_e| (max over tokens).
// A softmax probability then moves by |dp_i| <= p_i (2 eps_z + (2 S + 16) u) (logits, exp within
// 3 ulp, float sums of S terms), so out = sum_i p_i v_i moves by at most
// tol = 2 (2 eps_z + (2 S + 16) u) max|v| (the factor 2 for the float accumulation of out), and a
// mass entry by tol_i = 2 (2 eps_z + (2 S + 16) u) mass_i. The naive reference reads exactly what
// the cache stores (bf16-rounded values widen exactly), so storage rounding is not in the budget.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "membound/kv/attend.hpp"
#include "../backend/backends.hpp"

using namespace membound;

namespace {

constexpr double u = 1.0 / 16777216.0; // 2^-24
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

template <class T>
float stored(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return bf16::from_float(x).to_float();
}

/// The test's own copy of one head: the stored K and V rows of its tokens, in token order.
struct head_copy {
  std::vector<std::vector<float>> k, v;
};

/// A cache of B = 2 sequences x G = 2 KV heads; sequence 1 is the one attended, sequence 0 holds
/// decoy tokens (a kernel reading the wrong sequence fails). Head 0 of sequence 1 keeps exactly
/// `s` of s + extra appended tokens, head 1 a random subset of s appended tokens.
template <class T>
struct scenario {
  static constexpr index_t batch = 2, kv_heads = 2, b = 1;
  index_t d, s, page;
  kv::cache<T> cache;
  head_copy heads[kv_heads];

  scenario(index_t d_, index_t s_, index_t page_, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f)
      : d(d_), s(s_), page(page_), cache(config(d_, s_, page_)) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> val(lo, hi);
    auto row = [&] {
      std::vector<float> r(static_cast<std::size_t>(d));
      for (auto& x : r) x = val(gen);
      return r;
    };
    for (index_t g = 0; g < kv_heads; ++g) // decoys in sequence 0
      for (int t = 0; t < 5; ++t) {
        const auto k = row(), v = row();
        cache.append(0, g, k, v, t);
      }
    for (index_t g = 0; g < kv_heads; ++g) {
      const index_t appended = g == 0 ? s + std::uniform_int_distribution<index_t>(0, s / 2 + 3)(gen) : s;
      head_copy all;
      for (index_t t = 0; t < appended; ++t) {
        const auto k = row(), v = row();
        cache.append(b, g, k, v, static_cast<std::int32_t>(t));
        std::vector<float> ks(k.size()), vs(v.size());
        std::transform(k.begin(), k.end(), ks.begin(), stored<T>);
        std::transform(v.begin(), v.end(), vs.begin(), stored<T>);
        all.k.push_back(ks);
        all.v.push_back(vs);
      }
      // Evict: head 0 keeps exactly s tokens, head 1 a random number of them.
      const index_t keep_n = g == 0 ? s : std::uniform_int_distribution<index_t>(0, s)(gen);
      std::vector<std::int32_t> idx(static_cast<std::size_t>(appended));
      std::iota(idx.begin(), idx.end(), 0);
      std::shuffle(idx.begin(), idx.end(), gen);
      idx.resize(static_cast<std::size_t>(keep_n));
      std::sort(idx.begin(), idx.end());
      cache.keep(b, g, idx);
      for (auto i : idx) {
        heads[g].k.push_back(all.k[static_cast<std::size_t>(i)]);
        heads[g].v.push_back(all.v[static_cast<std::size_t>(i)]);
      }
      REQUIRE(cache.size(b, g) == keep_n);
    }
  }
  static kv::cache_config config(index_t d, index_t s, index_t page) {
    kv::cache_config c;
    c.batch = batch;
    c.kv_heads = kv_heads;
    c.head_dim = d;
    c.page_tokens = page;
    c.pages = batch * kv_heads * kv::pages_for(s + s / 2 + 8, page);
    c.state_slots = 1;
    return c;
  }
};

/// Naive attention in double for the H = G R query heads: out (H,D), mass (G,S_g), and the
/// tolerances of the file comment per query head (out) and per token (mass).
struct naive_result {
  std::vector<std::vector<double>> out;       // (H)(D)
  std::vector<double> tol;                    // (H)
  std::vector<std::vector<double>> mass, mtol; // (G)(S_g)
};
template <class T>
naive_result naive(const scenario<T>& sc, const std::vector<float>& q /*(H,D) dense*/, index_t grp, double scale) {
  const index_t g_n = scenario<T>::kv_heads, h_n = g_n * grp, d = sc.d;
  naive_result r;
  r.out.assign(static_cast<std::size_t>(h_n), std::vector<double>(static_cast<std::size_t>(d), 0.0));
  r.tol.assign(static_cast<std::size_t>(h_n), 0.0);
  r.mass.resize(static_cast<std::size_t>(g_n));
  r.mtol.resize(static_cast<std::size_t>(g_n));
  for (index_t g = 0; g < g_n; ++g) {
    const auto& hc = sc.heads[g];
    const std::size_t s = hc.k.size();
    r.mass[static_cast<std::size_t>(g)].assign(s, 0.0);
    r.mtol[static_cast<std::size_t>(g)].assign(s, 0.0);
    double rel_max = 0.0;
    for (index_t j = 0; j < grp; ++j) {
      const index_t h = g * grp + j;
      std::vector<double> z(s);
      double eps_z = 0.0, vmax = 0.0;
      for (std::size_t i = 0; i < s; ++i) {
        double acc = 0.0, mag = 0.0;
        for (index_t e = 0; e < d; ++e) {
          const double p = static_cast<double>(q[static_cast<std::size_t>(h * d + e)]) * hc.k[i][static_cast<std::size_t>(e)];
          acc += p;
          mag += std::fabs(p);
          vmax = std::max(vmax, std::fabs(static_cast<double>(hc.v[i][static_cast<std::size_t>(e)])));
        }
        z[i] = acc * scale;
        eps_z = std::max(eps_z, static_cast<double>(d + 2) * u * std::fabs(scale) * mag);
      }
      const double mx = s ? *std::max_element(z.begin(), z.end()) : 0.0;
      double sum = 0.0;
      for (auto& x : z) sum += (x = std::exp(x - mx));
      auto& o = r.out[static_cast<std::size_t>(h)];
      for (std::size_t i = 0; i < s; ++i) {
        const double p = z[i] / sum;
        r.mass[static_cast<std::size_t>(g)][i] += p / static_cast<double>(grp);
        for (index_t e = 0; e < d; ++e) o[static_cast<std::size_t>(e)] += p * hc.v[i][static_cast<std::size_t>(e)];
      }
      const double rel = 2.0 * (2.0 * eps_z + (2.0 * static_cast<double>(s) + 16.0) * u);
      r.tol[static_cast<std::size_t>(h)] = rel * vmax + 1e-30;
      rel_max = std::max(rel_max, rel);
    }
    for (std::size_t i = 0; i < s; ++i)
      r.mtol[static_cast<std::size_t>(g)][i] = rel_max * r.mass[static_cast<std::size_t>(g)][i] + 1e-20;
  }
  return r;
}

/// What one backend returned.
struct got {
  std::vector<float> out;  // (H, D + 5) rows with padding
  std::vector<float> mass; // (G, S_max + 3)
  index_t ldo = 0, ldm = 0;
};

/// Runs backend B on the scenario with q stored in rows of stride D + 3, out rows of stride D + 5,
/// a mass view three columns wider than needed and scratch of exactly attend_scratch_size floats
/// (followed by guard values that must survive).
template <class B, class T>
got run(const scenario<T>& sc, const std::vector<float>& q, index_t grp, float scale) {
  const index_t h_n = scenario<T>::kv_heads * grp, d = sc.d, ldq = d + 3;
  got r;
  r.ldo = d + 5;
  std::vector<float> qs(static_cast<std::size_t>(h_n * ldq), qnan);
  for (index_t h = 0; h < h_n; ++h)
    std::copy_n(q.begin() + h * d, d, qs.begin() + h * ldq);
  r.out.assign(static_cast<std::size_t>(h_n * r.ldo), qnan);
  index_t smax = 0;
  for (index_t g = 0; g < scenario<T>::kv_heads; ++g) smax = std::max(smax, sc.cache.size(scenario<T>::b, g));
  r.ldm = smax + 3;
  r.mass.assign(static_cast<std::size_t>(scenario<T>::kv_heads * r.ldm), qnan);
  const std::size_t need = kv::attend_scratch_size(sc.cache, scenario<T>::b, h_n);
  CHECK(need == static_cast<std::size_t>(grp * smax));
  std::vector<float> scratch(need + 8, -7.0f);
  kv::attend_decode<B>(sc.cache, scenario<T>::b, make_view<const float>(qs.data(), {h_n, d}, {ldq, 1}),
                       make_view<float>(r.out.data(), {h_n, d}, {r.ldo, 1}), scale,
                       make_view<float>(r.mass.data(), {scenario<T>::kv_heads, r.ldm}),
                       std::span<float>(scratch.data(), need));
  for (std::size_t i = need; i < scratch.size(); ++i) CHECK(scratch[i] == -7.0f);
  return r;
}

/// Checks one backend's result against the naive one (and the mass contract).
template <class T>
void check_against(const scenario<T>& sc, const got& r, const naive_result& nv, index_t grp, double tol_factor = 1.0) {
  const index_t d = sc.d;
  for (index_t h = 0; h < scenario<T>::kv_heads * grp; ++h) {
    CAPTURE(h);
    const bool empty = sc.heads[h / grp].k.empty();
    for (index_t e = 0; e < d; ++e) {
      const float o = r.out[static_cast<std::size_t>(h * r.ldo + e)];
      REQUIRE(std::isfinite(o));
      if (empty) CHECK(o == 0.0f);
      else CHECK(std::fabs(o - nv.out[static_cast<std::size_t>(h)][static_cast<std::size_t>(e)]) <=
                 tol_factor * nv.tol[static_cast<std::size_t>(h)]);
    }
    // the padding between rows is untouched
    for (index_t e = d; e < r.ldo; ++e) CHECK(std::isnan(r.out[static_cast<std::size_t>(h * r.ldo + e)]));
  }
  for (index_t g = 0; g < scenario<T>::kv_heads; ++g) {
    CAPTURE(g);
    const auto& m = nv.mass[static_cast<std::size_t>(g)];
    const std::size_t s = m.size();
    double sum = 0.0;
    for (std::size_t i = 0; i < s; ++i) {
      const float x = r.mass[static_cast<std::size_t>(g * r.ldm) + i];
      REQUIRE(std::isfinite(x));
      CHECK(x >= 0.0f);
      CHECK(std::fabs(x - m[i]) <= tol_factor * nv.mtol[static_cast<std::size_t>(g)][i]);
      sum += x;
    }
    if (s > 0) CHECK(std::fabs(sum - 1.0) <= (4.0 * static_cast<double>(s) + 64.0) * u);
    for (auto i = static_cast<index_t>(s); i < r.ldm; ++i) CHECK(r.mass[static_cast<std::size_t>(g * r.ldm + i)] == 0.0f);
  }
}

std::vector<float> random_q(index_t h, index_t d, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> val(lo, hi);
  std::vector<float> q(static_cast<std::size_t>(h * d));
  for (auto& x : q) x = val(gen);
  return q;
}

/// Every backend on one scenario: each against the naive attention, each SIMD one against the twin.
template <class T>
void check_all_backends(const scenario<T>& sc, index_t grp, float scale, std::uint32_t seed) {
  const index_t h_n = scenario<T>::kv_heads * grp;
  const auto q = random_q(h_n, sc.d, seed);
  const auto nv = naive(sc, q, grp, static_cast<double>(scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(sc.d))));
  const got twin = run<backend::scalar>(sc, q, grp, scale);
  {
    INFO("backend scalar");
    check_against(sc, twin, nv, grp);
  }
  std::apply(
      [&](auto... tag) {
        (
            [&](auto t) {
              using B = decltype(t);
              INFO("backend ", B::name);
              const got simd = run<B>(sc, q, grp, scale);
              check_against(sc, simd, nv, grp);
              // SIMD against the twin: both within tol of the exact value, so within 2 tol of each other.
              for (index_t h = 0; h < h_n; ++h)
                for (index_t e = 0; e < sc.d; ++e)
                  CHECK(std::fabs(simd.out[static_cast<std::size_t>(h * simd.ldo + e)] -
                                  twin.out[static_cast<std::size_t>(h * twin.ldo + e)]) <=
                        2.0 * nv.tol[static_cast<std::size_t>(h)]);
              for (index_t g = 0; g < scenario<T>::kv_heads; ++g)
                for (std::size_t i = 0; i < nv.mass[static_cast<std::size_t>(g)].size(); ++i)
                  CHECK(std::fabs(simd.mass[static_cast<std::size_t>(g * simd.ldm) + i] -
                                  twin.mass[static_cast<std::size_t>(g * twin.ldm) + i]) <=
                        2.0 * nv.mtol[static_cast<std::size_t>(g)][i]);
            }(tag),
            ...);
      },
      test::simd_tags{});
}

} // namespace

TEST_CASE_TEMPLATE("kv::attend_decode equals naive attention over the kept tokens, every backend", T, float, bf16) {
  std::uint32_t seed = 1;
  for (index_t d : {8, 64, 128, 80})
    for (index_t grp : {1, 2, 4})
      for (index_t s : {0, 1, 3, 17, 200})
        for (index_t page : {4, 16}) {
          CAPTURE(d);
          CAPTURE(grp);
          CAPTURE(s);
          CAPTURE(page);
          const scenario<T> sc(d, s, page, ++seed);
          check_all_backends(sc, grp, 0.0f, 1000 + seed);
        }
}

TEST_CASE_TEMPLATE("kv::attend_decode: large logits (scale 30) stay finite and correct", T, float, bf16) {
  for (index_t grp : {1, 4})
    for (index_t page : {4, 16}) {
      CAPTURE(grp);
      CAPTURE(page);
      // Logits up to about 30 x 64 x 9 / 4 ~ 4000: exp without the max shift would overflow.
      const scenario<T> sc(64, 200, page, 77 + static_cast<std::uint32_t>(grp), -3.0f, 3.0f);
      check_all_backends(sc, grp, 30.0f, 99);
    }
}

TEST_CASE_TEMPLATE("kv::attend_decode: hand-derived softmax weights 1/4, 3/4", B, backend::scalar, backend::best_cpu) {
  // One head, D = 2, scale 1: q = (ln 3, 0), k0 = (0, 0), k1 = (1, 0) give logits 0, ln 3, so
  // p = (1/4, 3/4) and out = 1/4 v0 + 3/4 v1 with v0 = (1, 0), v1 = (0, 1).
  kv::cache_config cfg;
  cfg.head_dim = 2;
  cfg.page_tokens = 1; // one token per page: the walk crosses a page boundary
  cfg.pages = 2;
  kv::cache<float> c(cfg);
  const std::vector<float> k0{0, 0}, k1{1, 0}, v0{1, 0}, v1{0, 1};
  c.append(0, 0, k0, v0, 0);
  c.append(0, 0, k1, v1, 1);
  const float q[2] = {std::log(3.0f), 0.0f};
  float out[2] = {qnan, qnan}, mass[2] = {qnan, qnan}, scratch[2];
  kv::attend_decode<B>(c, 0, make_view<const float>(q, {1, 2}), make_view<float>(out, {1, 2}), 1.0f,
                       make_view<float>(mass, {1, 2}), scratch);
  CHECK(out[0] == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(0.75).epsilon(1e-6));
  CHECK(mass[0] == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(mass[1] == doctest::Approx(0.75).epsilon(1e-6));
  // scale 0 means 1/sqrt(D), and no mass is needed
  kv::attend_decode<B>(c, 0, make_view<const float>(q, {1, 2}), make_view<float>(out, {1, 2}));
  const double a = std::exp(std::log(3.0) / std::sqrt(2.0)), w1 = a / (1.0 + a); // logits 0, ln 3 / sqrt 2
  CHECK(out[1] == doctest::Approx(w1).epsilon(1e-6));
  CHECK(out[0] == doctest::Approx(1.0 - w1).epsilon(1e-6));
  // an empty head gives zeros
  c.clear(0, 0);
  kv::attend_decode<B>(c, 0, make_view<const float>(q, {1, 2}), make_view<float>(out, {1, 2}), 1.0f,
                       make_view<float>(mass, {1, 2}), scratch);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == 0.0f);
  CHECK(mass[0] == 0.0f);
  CHECK(mass[1] == 0.0f);
}

TEST_CASE_TEMPLATE("kv::attend_decode: bad input throws typed errors naming the values", B, backend::scalar,
                   backend::best_cpu) {
  kv::cache_config cfg;
  cfg.batch = 2;
  cfg.kv_heads = 2;
  cfg.head_dim = 4;
  cfg.page_tokens = 4;
  cfg.pages = 8;
  kv::cache<bf16> c(cfg);
  const std::vector<float> k{1, 2, 3, 4};
  for (int t = 0; t < 5; ++t) c.append(1, 0, k, k, t);
  std::vector<float> q(4 * 4, 0.5f), out(4 * 4, qnan), mass(2 * 8), scratch(16);
  const auto qv = make_view<const float>(q.data(), {4, 4});
  const auto ov = make_view<float>(out.data(), {4, 4});

  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 2, qv, ov), "kv::attend_decode: sequence b = 2 out of range [0, 2)",
                       lookup_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, -1, qv, ov), lookup_error);
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 1, make_view<const float>(q.data(), {3, 4}), ov),
                       "kv::attend_decode: q has H = 3 query heads, expected a positive multiple of G = 2 KV heads",
                       shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 1, make_view<const float>(q.data(), {5, 3}), ov),
                       "kv::attend_decode: q must be (H,D) with D = 4; got rank 2 with 3 columns", shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, make_view<const float>(q.data(), {16}), ov), shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, make_view<const float>(q.data(), {0, 4}), ov), shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, make_view<const float>(q.data(), {4, 4}, {1, 4}), ov), shape_error);
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 1, qv, make_view<float>(out.data(), {2, 4})),
                       "kv::attend_decode: out must be (H,D) = (4,4); got rank 2 (2,4)", shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, make_view<float>(out.data(), {4, 3})), shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, make_view<float>(out.data(), {16})), shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, ov, std::numeric_limits<float>::infinity()), config_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, ov, qnan), config_error);
  // mass: wrong G, too short for the longest head (5 tokens), non-contiguous rows
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 1, qv, ov, 0.0f, make_view<float>(mass.data(), {2, 4}), scratch),
                       "kv::attend_decode: mass must be (G,S_max) with G = 2 and S_max >= 5 (the longest head of "
                       "sequence 1); got rank 2 (2,4)",
                       shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, ov, 0.0f, make_view<float>(mass.data(), {1, 8}), scratch), shape_error);
  CHECK_THROWS_AS(kv::attend_decode<B>(c, 1, qv, ov, 0.0f, make_view<float>(mass.data(), {2, 6}, {1, 2}), scratch),
                  shape_error);
  // scratch: (H/G) x S_max = 2 x 5 = 10 floats needed
  CHECK(kv::attend_scratch_size(c, 1, 4) == 10);
  CHECK(kv::attend_scratch_size(c, 0, 4) == 0);
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c, 1, qv, ov, 0.0f, make_view<float>(mass.data(), {2, 8}),
                                            std::span<float>(scratch.data(), 9)),
                       "kv::attend_decode: scratch has 9 floats, mass needs (H/G) x S_max = 2 x 5 = 10 "
                       "(kv::attend_scratch_size)",
                       shape_error);
  CHECK_THROWS_AS(kv::attend_scratch_size(c, 2, 4), lookup_error);
  CHECK_THROWS_AS(kv::attend_scratch_size(c, 0, 3), shape_error);
  // nothing was written by the throwing calls
  for (float x : out) CHECK(std::isnan(x));
  // the group bound
  kv::cache_config one = cfg;
  one.kv_heads = 1;
  one.head_dim = 1;
  kv::cache<float> c1(one);
  std::vector<float> q1(static_cast<std::size_t>(kv::attend_max_group + 1)), o1(q1.size());
  const auto h1 = static_cast<index_t>(q1.size());
  CHECK_THROWS_WITH_AS(kv::attend_decode<B>(c1, 0, make_view<const float>(q1.data(), {h1, 1}), make_view<float>(o1.data(), {h1, 1})),
                       "kv::attend_decode: H/G = 257 query heads per KV head exceeds attend_max_group = 256",
                       shape_error);
  // and the largest group works (an empty head: zeros)
  kv::attend_decode<B>(c1, 0, make_view<const float>(q1.data(), {h1 - 1, 1}), make_view<float>(o1.data(), {h1 - 1, 1}));
  CHECK(o1[0] == 0.0f);
}
