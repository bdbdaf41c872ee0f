// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::attend_decode`: one decode step of attention over the paged `kv::cache`, with the
/// per-token attention mass that H2O accumulates and TOVA ranks by, computed in the same pass.
///
/// Shapes (DESIGN.md letters): the cache holds B sequences x G KV heads, head (b, g) holding S
/// tokens (S differs between heads); the step has H query heads of dim D, H a multiple of G, and
/// query head h reads KV head h / (H/G) (transformers' repeat_kv layout, as `kv::prefill_inputs`).
/// For every query head h of sequence b:
///
///     out(h, :) = sum_i p(h, i) V(i, :),   p(h, :) = softmax_i(scale q(h, :) . K(i, :)),
///
/// over the S tokens head (b, h / (H/G)) holds, in token order (their positions play no part: RoPE
/// is already in q and K, and decode attends to everything kept).
///
/// Paper context: decode attention streams the whole KV cache once per step while doing about
/// 2 FLOP per element read, so it runs at the memory bandwidth, not the FMA peak
/// (research/kv_eviction.md section 6: about 1 FLOP/byte for MHA, about H/G for GQA). This is why
/// an eviction budget (TRIM-KV, H2O, TOVA, SnapKV, ...) buys decode speed in proportion to the
/// bytes it evicts, and why bf16 storage doubles the tokens per second. The kernel is therefore
/// built around reading each K and V row exactly once per KV head:
/// - GQA: the H/G query heads of a group share one walk over the group's pages. Pages are cut
///   into sub-blocks of at most 32 rows (at most 16 KiB of K, and of V, so they stay in L1); the
///   heads are taken in tiles of up to 4 (their accumulators live in registers) and the first tile
///   brings a sub-block's rows from memory, the others re-read them from L1. So memory traffic is
///   2 S D elements per KV head whatever H/G is.
/// - Online softmax (flash-decoding style, per query head): a running max m and sum l; each
///   sub-block's logits are exponentiated against the new max with the fast exp of
///   `backend/cpu/simd.hpp` (<= 1 ulp), and the float accumulators (the rows of `out`) are rescaled
///   by exp(m_old - m_new) once per sub-block. Everything accumulates in float.
/// - Prefetch: while the logits of a sub-block are computed, its V rows and the next sub-block's
///   K rows (on the next page at a page end) are prefetched; page ids come from the page table,
///   so the walk is sequential inside a page and jumps only between pages.
/// - bf16 K and V are widened in registers (a 16-bit shift: exact), halving the bytes read.
///
/// Mass (optional): mass(g, i) = (1/(H/G)) sum over the group's query heads h of p(h, i), the
/// attention probability of token i averaged over the group. The normaliser is only known after
/// the last page, so the raw logits of the group are kept in caller scratch ((H/G) x S floats, see
/// `attend_scratch_size`) and normalised at the end: O(H S) extra work, no extra K or V traffic.
///
/// Backends: `backend::scalar` is the scalar twin (per query head, per token online softmax with
/// std::exp, left-to-right float dots); the SIMD form reorders sums and uses the fast exp, so they
/// agree to rounding (tests/unit/kv/attend.test.cpp bounds it), not bit for bit.
///
/// Special values: an empty head (S = 0) gives out rows of exactly 0 and a mass row of zeros.
/// IEEE propagation otherwise: a logit of -inf gives its token weight 0; a NaN logit, or a head
/// whose logits are all -inf, gives NaN out rows (as a softmax over nothing does).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/matvec.hpp"
#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/detail/pv.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// The largest group size H/G `attend_decode` accepts (its per-head softmax state lives in a
/// fixed stack array of 2 x 256 floats). MQA with up to 256 query heads fits.
inline constexpr index_t attend_max_group = 256;

namespace detail {

/// Query heads whose accumulators one SIMD tile keeps in registers.
inline constexpr int attend_tile = 4;
/// Rows of one sub-block (bounds the on-stack logits of a tile: 4 x 32 floats).
inline constexpr index_t attend_max_block = 32;
/// K (and V) bytes of one sub-block: rows = clamp(this / row bytes, 4, 32), so a sub-block's K and
/// V stay in L1 while the tiles of a large group re-read them.
inline constexpr std::size_t attend_block_bytes = std::size_t(16) << 10;

/// Checks everything and returns the group size H/G. @throws lookup_error, shape_error, config_error.
template <class T>
index_t attend_check(const cache<T>& c, index_t b, const view<const float>& q, const view<float>& out, float scale,
                     const view<float>& mass, std::span<float> scratch) {
  const char* who = "kv::attend_decode";
  MEMBOUND_EXPECTS(b >= 0 && b < c.batch(), lookup_error, who, ": sequence b = ", b, " out of range [0, ", c.batch(),
                   ")");
  const index_t d = c.head_dim(), g = c.kv_heads();
  MEMBOUND_EXPECTS(q.rank() == 2 && q.extent(1) == d, shape_error, who, ": q must be (H,D) with D = ", d,
                   "; got rank ", q.rank(), " with ", q.rank() == 2 ? q.extent(1) : q.extent(0),
                   q.rank() == 2 ? " columns" : " elements in dim 0");
  const index_t h = q.extent(0);
  MEMBOUND_EXPECTS(h >= 1 && h % g == 0, shape_error, who, ": q has H = ", h,
                   " query heads, expected a positive multiple of G = ", g, " KV heads");
  MEMBOUND_EXPECTS(h / g <= attend_max_group, shape_error, who, ": H/G = ", h / g,
                   " query heads per KV head exceeds attend_max_group = ", attend_max_group);
  MEMBOUND_EXPECTS(out.rank() == 2 && out.extent(0) == h && out.extent(1) == d, shape_error, who,
                   ": out must be (H,D) = (", h, ",", d, "); got rank ", out.rank(), " (", out.extent(0), ",",
                   out.rank() == 2 ? out.extent(1) : -1, ")");
  MEMBOUND_EXPECTS(d <= 1 || (q.stride(1) == 1 && out.stride(1) == 1), shape_error, who,
                   ": q and out need contiguous rows (inner stride 1); got ", q.stride(1), " and ", out.stride(1));
  MEMBOUND_EXPECTS(std::isfinite(scale), config_error, who, ": scale = ", scale, ", expected a finite value (0 for 1/sqrt(D))");
  if (mass.size() != 0) {
    index_t smax = 0;
    for (index_t j = 0; j < g; ++j) smax = std::max(smax, c.size(b, j));
    MEMBOUND_EXPECTS(mass.rank() == 2 && mass.extent(0) == g && mass.extent(1) >= smax, shape_error, who,
                     ": mass must be (G,S_max) with G = ", g, " and S_max >= ", smax,
                     " (the longest head of sequence ", b, "); got rank ", mass.rank(), " (", mass.extent(0), ",",
                     mass.rank() == 2 ? mass.extent(1) : -1, ")");
    MEMBOUND_EXPECTS(mass.extent(1) <= 1 || mass.stride(1) == 1, shape_error, who,
                     ": mass needs contiguous rows (inner stride 1); got ", mass.stride(1));
    const auto need = static_cast<std::size_t>(h / g) * static_cast<std::size_t>(smax);
    MEMBOUND_EXPECTS(scratch.size() >= need, shape_error, who, ": scratch has ", scratch.size(),
                     " floats, mass needs (H/G) x S_max = ", h / g, " x ", smax, " = ", need,
                     " (kv::attend_scratch_size)");
  }
  return h / g;
}

/// Zeros the out rows of a group and the tail [S, S_max) of its mass row.
inline void attend_zero(float* o, index_t ldo, index_t heads, index_t d, float* mass_row, index_t s, index_t smax) noexcept {
  for (index_t r = 0; r < heads; ++r) std::fill_n(o + r * ldo, d, 0.0f);
  if (mass_row) std::fill(mass_row + s, mass_row + smax, 0.0f);
}

// ---- scalar twin ------------------------------------------------------------------------------

/// One KV head, the scalar twin: each query head walks the pages on its own with a per-token
/// online softmax (rescaling its accumulator whenever the max grows) and std::exp.
template <class T>
void attend_group_scalar(const page_range<const T>& pages, index_t s, const float* q, index_t ldq, float* o,
                         index_t ldo, index_t heads, index_t d, float scale, float* logits, float* mass_row) noexcept {
  float m[attend_max_group], l[attend_max_group];
  for (index_t r = 0; r < heads; ++r) {
    const float* qr = q + r * ldq;
    float* orow = o + r * ldo;
    float mr = -std::numeric_limits<float>::infinity(), lr = 0.0f;
    for (const auto pg : pages)
      for (index_t t = 0; t < pg.tokens; ++t) {
        const T* k = pg.keys + t * d;
        const T* v = pg.values + t * d;
        float z = 0.0f;
        for (index_t e = 0; e < d; ++e) z += qr[e] * static_cast<float>(k[e]);
        z *= scale;
        if (logits) logits[r * s + pg.first + t] = z;
        online_softmax_step(orow, v, d, z, mr, lr);
      }
    if (s > 0)
      for (index_t e = 0; e < d; ++e) orow[e] /= lr;
    m[r] = mr;
    l[r] = lr;
  }
  if (mass_row) {
    const float inv_heads = 1.0f / static_cast<float>(heads);
    for (index_t t = 0; t < s; ++t) {
      float acc = 0.0f;
      for (index_t r = 0; r < heads; ++r) acc += std::exp(logits[r * s + t] - m[r]) / l[r];
      mass_row[t] = acc * inv_heads;
    }
  }
}

// ---- SIMD -------------------------------------------------------------------------------------

/// Prefetches the `rows` rows of `row_bytes` bytes at p (all cache levels).
MEMBOUND_ALWAYS_INLINE void attend_prefetch_row(const void* p, std::size_t row_bytes) noexcept {
  const char* c = static_cast<const char*>(p);
  for (std::size_t off = 0; off < row_bytes; off += 64) cpu::detail::prefetch(c + off);
}

/// The horizontal sums of four batches at once (a transposing add tree on AVX-512 and AVX2:
/// about half the instructions of four separate reductions).
template <class A>
MEMBOUND_ALWAYS_INLINE void attend_hsum4(const cpu::detail::fbatch<A>& v0, const cpu::detail::fbatch<A>& v1,
                                         const cpu::detail::fbatch<A>& v2, const cpu::detail::fbatch<A>& v3,
                                         float* out) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (cpu::detail::is_avx512<A>) {
    auto half = [](__m512 v) MEMBOUND_INLINE_LAMBDA {
      return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    };
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half(v0), half(v1)), _mm256_hadd_ps(half(v2), half(v3)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (cpu::detail::lanes<A> == 8 && cpu::detail::is_avx2<A>) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    return;
  }
#endif
  out[0] = cpu::detail::hsum<A>(v0);
  out[1] = cpu::detail::hsum<A>(v1);
  out[2] = cpu::detail::hsum<A>(v2);
  out[3] = cpu::detail::hsum<A>(v3);
}

/// Logits of NR query heads over the n rows at k: s[r][t] = scale q_r . k_t. When `pf_v` is set
/// (the first tile of a sub-block), row t's turn also prefetches V row t of this sub-block and,
/// for t < pf_k_rows, K row t of the next sub-block.
template <class A, class T, int NR>
MEMBOUND_ALWAYS_INLINE void attend_logits(const T* k, index_t n, std::size_t d, const float* const* q, float scale,
                                          float (*s)[attend_max_block], const T* pf_v, const T* pf_k,
                                          index_t pf_k_rows) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr std::size_t L = cpu::detail::lanes<A>;
  const std::size_t row_bytes = d * sizeof(T);
  for (index_t t = 0; t < n; ++t) {
    const T* row = k + static_cast<std::size_t>(t) * d;
    if (pf_v) {
      attend_prefetch_row(pf_v + static_cast<std::size_t>(t) * d, row_bytes);
      if (t < pf_k_rows) attend_prefetch_row(pf_k + static_cast<std::size_t>(t) * d, row_bytes);
    }
    V a0[NR], a1[NR];
    for (int r = 0; r < NR; ++r) { a0[r] = V(0.0f); a1[r] = V(0.0f); }
    std::size_t e = 0;
    for (; e + 2 * L <= d; e += 2 * L) {
      const V k0 = cpu::detail::load_w<A>(row + e), k1 = cpu::detail::load_w<A>(row + e + L);
      for (int r = 0; r < NR; ++r) {
        a0[r] = cpu::detail::fma<A>(cpu::detail::loadu<A>(q[r] + e), k0, a0[r]);
        a1[r] = cpu::detail::fma<A>(cpu::detail::loadu<A>(q[r] + e + L), k1, a1[r]);
      }
    }
    if (e + L <= d) {
      const V k0 = cpu::detail::load_w<A>(row + e);
      for (int r = 0; r < NR; ++r) a0[r] = cpu::detail::fma<A>(cpu::detail::loadu<A>(q[r] + e), k0, a0[r]);
      e += L;
    }
    if (e < d) {
      const V k0 = cpu::detail::load_w_partial<A>(row + e, d - e);
      for (int r = 0; r < NR; ++r)
        a1[r] = cpu::detail::fma<A>(cpu::detail::load_partial<A>(q[r] + e, d - e, 0.0f), k0, a1[r]);
    }
    if constexpr (NR == 1) {
      s[0][t] = cpu::detail::hsum<A>(a0[0] + a1[0]) * scale;
    } else {
      V v[4] = {V(0.0f), V(0.0f), V(0.0f), V(0.0f)};
      for (int r = 0; r < NR; ++r) v[r] = a0[r] + a1[r];
      float h[4];
      attend_hsum4<A>(v[0], v[1], v[2], v[3], h);
      for (int r = 0; r < NR; ++r) s[r][t] = h[r] * scale;
    }
  }
}

/// Online-softmax step of one head over n logits x (in place: x becomes exp(x - m_new)).
/// Returns alpha = exp(m_old - m_new), the factor the head's accumulator must be rescaled by.
template <class A>
MEMBOUND_ALWAYS_INLINE float attend_softmax_step(float* x, index_t n, float& m, float& l) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  float mn = m; // n <= 32 logits: a scalar max (a NaN logit still reaches l through its exp)
  for (index_t t = 0; t < n; ++t) mn = x[t] > mn ? x[t] : mn;
  const V b(mn);
  V sum(0.0f);
  index_t t = 0;
  for (; t + L <= n; t += L) {
    const V p = cpu::detail::exp<A>(cpu::detail::loadu<A>(x + t) - b);
    sum += p;
    cpu::detail::storeu<A>(x + t, p);
  }
  if (t < n) {
    const auto rest = static_cast<std::size_t>(n - t);
    const V p = cpu::detail::exp<A>(cpu::detail::load_partial<A>(x + t, rest, ninf) - b); // pad lanes: 0
    sum += p;
    cpu::detail::store_partial<A>(x + t, rest, p);
  }
  const float alpha = std::exp(m - mn); // 0 on the first sub-block (m = -inf)
  l = l * alpha + cpu::detail::hsum<A>(sum);
  m = mn;
  return alpha;
}

/// Batches per V chunk for NR heads: the largest power of two C <= 8 with NR x C accumulators + C
/// row batches + 4 within the register file (32 registers on AVX-512, 16 below).
template <class A, int NR>
inline constexpr int attend_chunk = [] {
  const int regs = cpu::detail::lanes<A> >= 16 ? 32 : 16;
  int c = 8;
  while (c > 1 && (NR + 1) * c + 4 > regs) c /= 2;
  return c;
}();

/// One tile of NR query heads over one sub-block of n rows: logits, softmax step, V accumulation.
template <class A, class T, int NR>
void attend_tile_block(const T* k, const T* v, index_t n, std::size_t d, const float* const* q, float* const* o,
                       float scale, float* m, float* l, float* logits, index_t ld_logits, const T* pf_v,
                       const T* pf_k, index_t pf_k_rows) noexcept {
  constexpr std::size_t L = cpu::detail::lanes<A>;
  constexpr int C = attend_chunk<A, NR>;
  alignas(64) float s[NR][attend_max_block];
  attend_logits<A, T, NR>(k, n, d, q, scale, s, pf_v, pf_k, pf_k_rows);
  float alpha[NR];
  for (int r = 0; r < NR; ++r) {
    if (logits) std::copy_n(s[r], n, logits + r * ld_logits);
    alpha[r] = attend_softmax_step<A>(s[r], n, m[r], l[r]);
  }
  std::size_t e = 0;
  for (; e + C * L <= d; e += C * L) pv_block<A, T, NR, C>(v, d, n, e, s, alpha, o);
  // the rest of the full batches in halving chunks (D = 80 on AVX-512: 4 + 1)
  if constexpr (C > 4) if (e + 4 * L <= d) { pv_block<A, T, NR, 4>(v, d, n, e, s, alpha, o); e += 4 * L; }
  if constexpr (C > 2) if (e + 2 * L <= d) { pv_block<A, T, NR, 2>(v, d, n, e, s, alpha, o); e += 2 * L; }
  if constexpr (C > 1) if (e + L <= d) { pv_block<A, T, NR, 1>(v, d, n, e, s, alpha, o); e += L; }
  if (e < d) pv_tail<A, T, NR>(v, d, n, e, d - e, s, alpha, o);
}

/// One KV head, SIMD: one walk over its pages for all `heads` query heads of the group.
template <class A, class T>
void attend_group_simd(const page_range<const T>& pages, index_t s, const float* q, index_t ldq, float* o, index_t ldo,
                       index_t heads, index_t d, float scale, float* logits, float* mass_row) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  const auto du = static_cast<std::size_t>(d);
  const index_t blk = std::clamp<index_t>(static_cast<index_t>(attend_block_bytes / (du * sizeof(T))), 4, attend_max_block);
  float m[attend_max_group], l[attend_max_group];
  std::fill_n(m, heads, -std::numeric_limits<float>::infinity());
  std::fill_n(l, heads, 0.0f);
  const index_t np = pages.size();
  for (index_t j = 0; j < np; ++j) {
    const auto pg = pages[j];
    for (index_t t0 = 0; t0 < pg.tokens; t0 += blk) {
      const index_t n = std::min(blk, pg.tokens - t0);
      const T* k = pg.keys + static_cast<std::size_t>(t0) * du;
      const T* v = pg.values + static_cast<std::size_t>(t0) * du;
      // The next sub-block's K rows: later in this page, else the start of the next page.
      const T* pf_k = nullptr;
      index_t pf_rows = 0;
      if (t0 + blk < pg.tokens) {
        pf_k = k + static_cast<std::size_t>(blk) * du;
        pf_rows = std::min(blk, pg.tokens - t0 - blk);
      } else if (j + 1 < np) {
        const auto next = pages[j + 1];
        pf_k = next.keys;
        pf_rows = std::min(blk, next.tokens);
      }
      for (index_t r0 = 0; r0 < heads; r0 += attend_tile) {
        const auto nr = static_cast<int>(std::min<index_t>(attend_tile, heads - r0));
        const float* qs[attend_tile];
        float* os[attend_tile];
        for (int r = 0; r < nr; ++r) { qs[r] = q + (r0 + r) * ldq; os[r] = o + (r0 + r) * ldo; }
        float* lg = logits ? logits + r0 * s + pg.first + t0 : nullptr;
        const T* pv = r0 == 0 ? v : nullptr; // the first tile brings the rows in and prefetches
        switch (nr) {
          case 1: attend_tile_block<A, T, 1>(k, v, n, du, qs, os, scale, m + r0, l + r0, lg, s, pv, pf_k, pf_rows); break;
          case 2: attend_tile_block<A, T, 2>(k, v, n, du, qs, os, scale, m + r0, l + r0, lg, s, pv, pf_k, pf_rows); break;
          case 3: attend_tile_block<A, T, 3>(k, v, n, du, qs, os, scale, m + r0, l + r0, lg, s, pv, pf_k, pf_rows); break;
          default: attend_tile_block<A, T, 4>(k, v, n, du, qs, os, scale, m + r0, l + r0, lg, s, pv, pf_k, pf_rows); break;
        }
      }
    }
  }
  if (s == 0) return; // out rows stay 0
  for (index_t r = 0; r < heads; ++r) {
    float* orow = o + r * ldo;
    const V inv(1.0f / l[r]);
    index_t e = 0;
    for (; e + L <= d; e += L) cpu::detail::storeu<A>(orow + e, cpu::detail::loadu<A>(orow + e) * inv);
    if (e < d) {
      const auto rest = static_cast<std::size_t>(d - e);
      cpu::detail::store_partial<A>(orow + e, rest, cpu::detail::load_partial<A>(orow + e, rest, 0.0f) * inv);
    }
  }
  if (mass_row) {
    // mass(t) = sum_r exp(logit(r, t) - m_r) / (heads l_r)
    float w[attend_max_group];
    for (index_t r = 0; r < heads; ++r) w[r] = 1.0f / (static_cast<float>(heads) * l[r]);
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    index_t t = 0;
    for (; t + L <= s; t += L) {
      V acc(0.0f);
      for (index_t r = 0; r < heads; ++r)
        acc = cpu::detail::fma<A>(cpu::detail::exp<A>(cpu::detail::loadu<A>(logits + r * s + t) - V(m[r])), V(w[r]), acc);
      cpu::detail::storeu<A>(mass_row + t, acc);
    }
    if (t < s) {
      const auto rest = static_cast<std::size_t>(s - t);
      V acc(0.0f);
      for (index_t r = 0; r < heads; ++r)
        acc = cpu::detail::fma<A>(
            cpu::detail::exp<A>(cpu::detail::load_partial<A>(logits + r * s + t, rest, ninf) - V(m[r])), V(w[r]), acc);
      cpu::detail::store_partial<A>(mass_row + t, rest, acc);
    }
  }
}

} // namespace detail

/// Floats of `scratch` that `attend_decode` needs to write `mass` for sequence b with `heads` query
/// heads: (H/G) x S_max, S_max the longest head of sequence b now (0 scratch is needed without
/// mass). A bound that holds for any state of the cache: (H/G) x total_pages() x page_tokens().
/// O(G). @throws lookup_error for b out of range; shape_error when heads is not a positive
/// multiple of G.
template <class T>
std::size_t attend_scratch_size(const cache<T>& c, index_t b, index_t heads) {
  MEMBOUND_EXPECTS(b >= 0 && b < c.batch(), lookup_error, "kv::attend_scratch_size: sequence b = ", b,
                   " out of range [0, ", c.batch(), ")");
  MEMBOUND_EXPECTS(heads >= 1 && heads % c.kv_heads() == 0, shape_error, "kv::attend_scratch_size: H = ", heads,
                   " query heads, expected a positive multiple of G = ", c.kv_heads(), " KV heads");
  index_t smax = 0;
  for (index_t g = 0; g < c.kv_heads(); ++g) smax = std::max(smax, c.size(b, g));
  return static_cast<std::size_t>(heads / c.kv_heads()) * static_cast<std::size_t>(smax);
}

/// One decode step of attention for sequence b over everything the cache holds (see the file
/// comment for the formula, GQA mapping, algorithm and special values).
///
/// @tparam B backend tag: `backend::scalar` runs the scalar twin, a SIMD tag the streaming kernel.
/// @param c      the cache, f32 or bf16 storage (read only; concurrent calls on one cache are safe).
/// @param b      the sequence, 0 <= b < B.
/// @param q      (H,D) query rows (post-RoPE), contiguous rows, any row stride; H a multiple of G,
///               H/G <= attend_max_group; query head h reads KV head h / (H/G).
/// @param out    (H,D) output rows, contiguous rows, any row stride. Must not overlap q, mass or
///               scratch. Rows of an empty head (S = 0) are set to 0.
/// @param scale  multiplies q.k before the softmax; 0 means 1/sqrt(D). Must be finite.
/// @param mass   empty (not wanted) or (G,S_max) with S_max >= the longest head of sequence b and
///               contiguous rows: mass(g, i) = the attention probability of token i of KV head g
///               averaged over the group's H/G query heads (each row of a non-empty head sums to 1;
///               entries i >= S of head g are set to 0). Add it to a state slot for H2O, rank by it
///               for TOVA.
/// @param scratch with mass: at least `attend_scratch_size(c, b, H)` floats ((H/G) x S_max), holds
///               the raw logits; unused (may be empty) without mass.
/// @throws lookup_error for b out of range; shape_error for q, out, mass or scratch of the wrong
/// shape (the message names both) or H/G over attend_max_group; config_error for a non-finite scale.
/// Nothing is written when it throws.
///
/// Complexity: O(H S D) flops (4 per query head, token and dim) and reads 2 S D elements of
/// storage per KV head (K and V once each, whatever H/G is: 8 S D bytes in f32, 4 S D in bf16),
/// plus O(H S) for the mass. No allocation; O(H/G) stack.
template <class B = backend::best_cpu, class T>
void attend_decode(const cache<T>& c, index_t b, view<const float> q /*(H,D)*/, view<float> out /*(H,D)*/,
                   float scale = 0.0f, view<float> mass = {} /*(G,S_max) or empty*/,
                   std::span<float> scratch = {} /*((H/G) x S_max) with mass*/) {
  cpu::detail::check_cpu_backend<B>();
  const index_t grp = detail::attend_check(c, b, q, out, scale, mass, scratch);
  const index_t d = c.head_dim(), smax_mass = mass.size() != 0 ? mass.extent(1) : 0;
  if (scale == 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (index_t g = 0; g < c.kv_heads(); ++g) {
    const auto pages = c.pages(b, g);
    const index_t s = c.size(b, g);
    const float* qg = q.data() + g * grp * q.stride(0);
    float* og = out.data() + g * grp * out.stride(0);
    float* mass_row = mass.size() != 0 ? mass.data() + g * mass.stride(0) : nullptr;
    float* logits = mass_row ? scratch.data() : nullptr;
    detail::attend_zero(og, out.stride(0), grp, d, mass_row, s, smax_mass);
    if constexpr (std::is_same_v<B, backend::scalar>)
      detail::attend_group_scalar<T>(pages, s, qg, q.stride(0), og, out.stride(0), grp, d, scale, logits, mass_row);
    else
      detail::attend_group_simd<typename B::arch, T>(pages, s, qg, q.stride(0), og, out.stride(0), grp, d, scale,
                                                     logits, mass_row);
  }
}

} // namespace kv
} // namespace v0_1
} // namespace membound
