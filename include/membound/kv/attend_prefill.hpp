// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::attend_prefill`: flash-style tiled causal attention for prefill over dense K/V, and
/// `kv::attention_column_sums`: the column sums of the normalised causal attention that H2O and
/// SnapKV score tokens by, both without ever materialising the T x S attention matrix. K and V are
/// f32 or bf16 (both the same type); queries, outputs and all arithmetic are f32.
///
/// Shapes (DESIGN.md letters, as `kv::prefill_inputs`): queries (H,T,D), keys and values (G,S,D),
/// H a multiple of G, T <= S; query head h reads KV head h / (H/G) (transformers' repeat_kv
/// layout). Query t sits at position S - T + t and sees keys 0 .. S - T + t (causal; S > T means a
/// prefix of S - T cached keys that every query sees). For every query head h and row t:
///
///     out(h, t, :) = sum_{i <= S-T+t} p(h, t, i) V(g, i, :),  p(h, t, :) = softmax_i(scale q(h, t, :) . K(g, i, :))
///
/// and the column sums, for rows t0 <= t < T:
///
///     colsum(g, i) = (1/(H/G)) sum_{h in group g} sum_{t = t0}^{T-1} p(h, t, i)
///
/// (with t0 = 0 and T = S this is `kv::h2o{}.score`; kvpress's observed_attention further divides
/// column i by S - i, the number of queries that see it).
///
/// Paper context: prefill attention does 4 D FLOP per (query, visible key) pair while reading each
/// K and V row once per query tile, so unlike decode (attend.hpp) it is compute bound and the judge
/// is the FMA peak (bench/bench_kv.cpp). The algorithm is FlashAttention's (Dao et al. 2022),
/// shaped for a CPU core:
/// - K of one KV head is transposed once into caller scratch, Kt (D, S_pad), S_pad = S rounded up
///   to the key tile (pad columns 0), so that a logit tile is an outer-product GEMM micro-kernel:
///   MR query rows (8 on AVX-512, 4 below) x 2 SIMD batches of keys, broadcasting q(r, e) and
///   loading Kt(e, :), MR x 2 accumulators in registers.
/// - Query tiles of `prefill_query_tile` = 64 rows, key tiles of `prefill_key_tile` = 256 columns.
///   For one query tile the key tiles are walked left to right up to the causal diagonal; for each
///   key tile every query head of the group and every MR-row block of the tile takes its turn, so
///   the tile's Kt (D x 256) and V (256 x D) rows (256 KiB at D = 128, L2-resident) are read from
///   memory once and re-read from L2 by the (H/G) x 64 / MR blocks (GQA shares them). Measured on
///   T = S = 2048, D = 128 (bench_kv, AVX-512, noisy shared VM): key tiles of 64 / 128 / 256 gave
///   about 0.45-0.54 / 0.56-0.63 / 0.61-0.73 of the FMA probe (the per-row softmax bookkeeping and
///   the rescale of the output rows are paid once per key tile); query tiles of 32 / 64 / 128 made
///   little difference. Tiles entirely above the diagonal are skipped; in a diagonal tile each row
///   block stops at the last key any of its rows sees and each row masks the keys after its own
///   position.
/// - Online softmax per row: running max m and sum l (in scratch), logits exponentiated against
///   the new max with the fast exp of `backend/cpu/simd.hpp` (<= 1 ulp), and the output row (the
///   accumulator, `out` itself) rescaled by exp(m_old - m_new) as it is read for P V: an MR-row x
///   2-batch register block walks the tile's keys, broadcasting p(r, i) and loading V(i, :).
///   Rows are divided by l at the end. Everything accumulates in float.
/// - Column sums take two passes over K: the first keeps only (m, l) per row (in scratch); the
///   second recomputes each logit tile and adds exp(z - m) / ((H/G) l) down its columns.
/// - bf16 K and V (`membound::bf16`): the transpose into Kt widens K to f32 (exact), and the P V
///   micro-kernel (detail/pv.hpp, shared with decode) widens each V row segment in registers (a
///   16-bit shift: exact). Everything after the widening is the f32 code, so a bf16 call gives
///   bit for bit (NaN payloads aside) what the f32 call gives on the widened K and V (tests check
///   it). The bytes read from the caller's K and V halve; the Kt scratch stays f32. Prefill being
///   compute bound, this buys memory footprint (a bf16 KV cache or bf16 activations), not much
///   time.
///
/// Backends: `backend::scalar` is the scalar twin (per query head and row, a plain online softmax
/// over the visible keys with std::exp and left-to-right float dots, each bf16 element widened to
/// float exactly as it is read; column sums recompute each row's logits in a second pass); the SIMD
/// form reorders sums and uses the fast exp, so they agree to rounding
/// (tests/unit/kv/attend_prefill.test.cpp bounds it), not bit for bit.
///
/// Special values: T = 0 writes nothing (colsum is set to 0). Every row sees key 0, so no row is
/// empty. IEEE propagation otherwise: a logit of -inf gives its key weight 0; a NaN logit gives a
/// NaN row (and NaN column sums).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/kv/detail/pv.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// Query rows per tile (per query head) of the SIMD kernel.
inline constexpr index_t prefill_query_tile = 64;
/// Key columns per tile of the SIMD kernel (also the padding unit of the transposed K in scratch).
inline constexpr index_t prefill_key_tile = 256;

/// Floats of `scratch` that `attend_prefill` needs for H query heads over G KV heads of S keys of
/// dim D: D x S_pad for the transposed K of one KV head (S_pad = S rounded up to
/// prefill_key_tile) plus 2 x (H/G) x prefill_query_tile for the per-row (m, l). O(1).
inline std::size_t attend_prefill_scratch_floats(index_t heads, index_t kv_heads, index_t s, index_t d) noexcept {
  const index_t grp = kv_heads > 0 ? heads / kv_heads : 0;
  const index_t spad = (std::max<index_t>(s, 0) + prefill_key_tile - 1) / prefill_key_tile * prefill_key_tile;
  return static_cast<std::size_t>(std::max<index_t>(d, 0)) * static_cast<std::size_t>(spad) +
         2 * static_cast<std::size_t>(std::max<index_t>(grp, 0)) * static_cast<std::size_t>(prefill_query_tile);
}

/// Floats of `scratch` that `attention_column_sums` needs for H query heads over G KV heads, T
/// queries and S keys of dim D: D x S_pad for the transposed K plus 2 x (H/G) x T for the (m, l)
/// of every row of one group. O(1).
inline std::size_t attention_column_sums_scratch_floats(index_t heads, index_t kv_heads, index_t t, index_t s,
                                                       index_t d) noexcept {
  const index_t grp = kv_heads > 0 ? heads / kv_heads : 0;
  const index_t spad = (std::max<index_t>(s, 0) + prefill_key_tile - 1) / prefill_key_tile * prefill_key_tile;
  return static_cast<std::size_t>(std::max<index_t>(d, 0)) * static_cast<std::size_t>(spad) +
         2 * static_cast<std::size_t>(std::max<index_t>(grp, 0)) * static_cast<std::size_t>(std::max<index_t>(t, 0));
}

namespace detail {

/// The K/V element types prefill attention reads: f32 and bf16.
template <class T>
concept prefill_element = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

/// Checks q, k (and v, out when given) and scale; returns nothing. @throws shape_error, config_error.
template <class T>
void prefill_check(const char* who, const view<const float>& q, const view<const T>& k, const view<const T>* v,
                   const view<float>* out, float scale) {
  MEMBOUND_EXPECTS(q.rank() == 3 && k.rank() == 3, shape_error, who,
                   ": q must be (H,T,D) and k (G,S,D), rank 3; got ranks ", q.rank(), " and ", k.rank());
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), g = k.extent(0), s = k.extent(1);
  MEMBOUND_EXPECTS(k.extent(2) == d && d >= 1, shape_error, who, ": q (", h, ",", t, ",", d, ") and k (", g, ",", s,
                   ",", k.extent(2), ") need the same head dim D >= 1");
  MEMBOUND_EXPECTS(g >= 1 && h >= 1 && h % g == 0, shape_error, who, ": q (", h, ",", t, ",", d, ") has H = ", h,
                   " query heads, expected a positive multiple of G = ", g, " of k (", g, ",", s, ",", d, ")");
  MEMBOUND_EXPECTS(t <= s, shape_error, who, ": q (", h, ",", t, ",", d, ") has T = ", t, " queries over k (", g, ",",
                   s, ",", d, ") with S = ", s, " keys, expected T <= S");
  MEMBOUND_EXPECTS(q.stride(2) == 1 || d == 1, shape_error, who, ": q needs contiguous rows (inner stride 1); got ",
                   q.stride(2));
  if (v) {
    MEMBOUND_EXPECTS(v->rank() == 3 && v->extent(0) == g && v->extent(1) == s && v->extent(2) == d, shape_error, who,
                     ": v must be (G,S,D) = (", g, ",", s, ",", d, ") like k; got rank ", v->rank(), " (",
                     v->extent(0), ",", v->rank() >= 2 ? v->extent(1) : -1, ",", v->rank() >= 3 ? v->extent(2) : -1,
                     ")");
    MEMBOUND_EXPECTS(v->stride(2) == 1 || d == 1, shape_error, who,
                     ": v needs contiguous rows (inner stride 1); got ", v->stride(2));
  }
  if (out) {
    MEMBOUND_EXPECTS(out->rank() == 3 && out->extent(0) == h && out->extent(1) == t && out->extent(2) == d,
                     shape_error, who, ": out must be (H,T,D) = (", h, ",", t, ",", d, ") like q; got rank ",
                     out->rank(), " (", out->extent(0), ",", out->rank() >= 2 ? out->extent(1) : -1, ",",
                     out->rank() >= 3 ? out->extent(2) : -1, ")");
    MEMBOUND_EXPECTS(out->stride(2) == 1 || d == 1, shape_error, who,
                     ": out needs contiguous rows (inner stride 1); got ", out->stride(2));
  }
  MEMBOUND_EXPECTS(std::isfinite(scale), config_error, who, ": scale = ", scale,
                   ", expected a finite value (0 for 1/sqrt(D))");
}

inline void prefill_check_scratch(const char* who, std::span<float> scratch, std::size_t need, const char* helper) {
  MEMBOUND_EXPECTS(scratch.size() >= need, shape_error, who, ": scratch has ", scratch.size(), " floats, needs ", need,
                   " (", helper, ")");
}

/// Row pointer of a rank-3 view.
template <class T>
MEMBOUND_ALWAYS_INLINE T* row3(const view<T>& x, index_t a, index_t b) noexcept {
  return x.data() + a * x.stride(0) + b * x.stride(1);
}

// ---- scalar twin ------------------------------------------------------------------------------

/// Logit of q row qr against key j of KV head g: left-to-right float dot (bf16 keys widened
/// exactly), then scale.
template <class T>
float prefill_logit_scalar(const float* qr, const view<const T>& k, index_t g, index_t j, index_t d,
                           float scale) noexcept {
  const T* kr = row3(k, g, j);
  const index_t ks = k.stride(2);
  float z = 0.0f;
  for (index_t e = 0; e < d; ++e) z += qr[e] * static_cast<float>(kr[e * ks]);
  return z * scale;
}

/// The scalar twin of attend_prefill: per query head and row, a per-key online softmax.
template <class T>
void attend_prefill_scalar(const view<const float>& q, const view<const T>& k, const view<const T>& v,
                           const view<float>& out, float scale) noexcept {
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), s = k.extent(1), grp = h / k.extent(0);
  for (index_t hh = 0; hh < h; ++hh) {
    const index_t g = hh / grp;
    for (index_t r = 0; r < t; ++r) {
      const float* qr = row3(q, hh, r);
      float* orow = row3(out, hh, r);
      std::fill_n(orow, d, 0.0f);
      float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
      const index_t last = s - t + r;
      for (index_t j = 0; j <= last; ++j) {
        online_softmax_step(orow, row3(v, g, j), d, prefill_logit_scalar(qr, k, g, j, d, scale), m, l);
      }
      for (index_t e = 0; e < d; ++e) orow[e] /= l;
    }
  }
}

/// The scalar twin of attention_column_sums: per query head and row, an online pass for (m, l)
/// and a second pass adding exp(z - m) / ((H/G) l) to the row's visible columns.
template <class T>
void column_sums_scalar(const view<const float>& q, const view<const T>& k, index_t t0, const view<float>& colsum,
                        float scale) noexcept {
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), s = k.extent(1), grp = h / k.extent(0);
  const float inv_grp = 1.0f / static_cast<float>(grp);
  for (index_t hh = 0; hh < h; ++hh) {
    const index_t g = hh / grp;
    float* cs = colsum.data() + g * colsum.stride(0);
    for (index_t r = t0; r < t; ++r) {
      const float* qr = row3(q, hh, r);
      const index_t last = s - t + r;
      float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
      for (index_t j = 0; j <= last; ++j) {
        const float z = prefill_logit_scalar(qr, k, g, j, d, scale);
        if (z > m) { l *= std::exp(m - z); m = z; }
        l += std::exp(z - m);
      }
      const float w = inv_grp / l;
      for (index_t j = 0; j <= last; ++j) cs[j] += std::exp(prefill_logit_scalar(qr, k, g, j, d, scale) - m) * w;
    }
  }
}

// ---- SIMD -------------------------------------------------------------------------------------

/// Query rows of one register block: 8 on AVX-512 (8 x 2 accumulators of 32 registers), 4 below.
template <class A>
inline constexpr int prefill_mr = cpu::detail::lanes<A> >= 16 ? 8 : 4;

/// kt (D, ldk) = K(g)^T (bf16 widened to f32, exact) with columns [S, ldk) set to 0; 16-column
/// blocks keep the writes local.
template <class T>
void prefill_transpose(const view<const T>& k, index_t g, float* kt, index_t ldk) noexcept {
  const index_t s = k.extent(1), d = k.extent(2), ks = k.stride(2);
  for (index_t j0 = 0; j0 < s; j0 += 16) {
    const index_t j1 = std::min(s, j0 + 16);
    for (index_t e = 0; e < d; ++e) {
      float* dst = kt + e * ldk;
      for (index_t j = j0; j < j1; ++j) dst[j] = static_cast<float>(row3(k, g, j)[e * ks]);
    }
  }
  for (index_t e = 0; e < d; ++e) std::fill(kt + e * ldk + s, kt + e * ldk + ldk, 0.0f);
}

/// Logits of NR query rows over the key columns [0, ncols) of kt (ncols a multiple of 2 lanes, the
/// columns readable): s[r][c] = scale sum_e q_r(e) kt(e, c). An NR x 2-batch register block.
template <class A, int NR>
MEMBOUND_ALWAYS_INLINE void prefill_logits(const float* const* q, const float* kt, index_t ldk, index_t d,
                                           float scale, float (*s)[prefill_key_tile], index_t ncols) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  const V sc(scale);
  for (index_t c = 0; c < ncols; c += 2 * L) {
    V a0[NR], a1[NR];
    for (int r = 0; r < NR; ++r) { a0[r] = V(0.0f); a1[r] = V(0.0f); }
    const float* kc = kt + c;
    for (index_t e = 0; e < d; ++e) {
      const V k0 = cpu::detail::loadu<A>(kc + e * ldk), k1 = cpu::detail::loadu<A>(kc + e * ldk + L);
      for (int r = 0; r < NR; ++r) {
        const V qb(q[r][e]);
        a0[r] = cpu::detail::fma<A>(qb, k0, a0[r]);
        a1[r] = cpu::detail::fma<A>(qb, k1, a1[r]);
      }
    }
    for (int r = 0; r < NR; ++r) {
      cpu::detail::storeu<A>(s[r] + c, a0[r] * sc);
      cpu::detail::storeu<A>(s[r] + c + L, a1[r] * sc);
    }
  }
}

/// x[0, n) becomes exp(x - m_new) for the first `vis` entries and 0 after them (causal mask);
/// m and l are the row's running max and sum. Returns alpha = exp(m_old - m_new). vis >= 1.
template <class A>
MEMBOUND_ALWAYS_INLINE float prefill_softmax_step(float* x, index_t n, index_t vis, float& m, float& l) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  V mx(m);
  index_t t = 0;
  for (; t + L <= vis; t += L) mx = xsimd::max(mx, cpu::detail::loadu<A>(x + t));
  if (t < vis) mx = xsimd::max(mx, cpu::detail::load_partial<A>(x + t, static_cast<std::size_t>(vis - t), ninf));
  const float mn = cpu::detail::hmax<A>(mx);
  const V b(mn);
  V sum(0.0f);
  t = 0;
  for (; t + L <= vis; t += L) {
    const V p = cpu::detail::exp<A>(cpu::detail::loadu<A>(x + t) - b);
    sum += p;
    cpu::detail::storeu<A>(x + t, p);
  }
  if (t < vis) { // the row's last visible batch: lanes past vis become exp(-inf) = 0
    const V p = cpu::detail::exp<A>(cpu::detail::load_partial<A>(x + t, static_cast<std::size_t>(vis - t), ninf) - b);
    sum += p;
    cpu::detail::storeu<A>(x + t, p); // x has room for whole batches up to the tile width
    t += L;
  }
  for (; t < n; t += L) cpu::detail::storeu<A>(x + t, V(0.0f));
  const float alpha = std::exp(m - mn); // 0 on the first tile (m = -inf)
  l = l * alpha + cpu::detail::hsum<A>(sum);
  m = mn;
  return alpha;
}

/// One register block of NR query rows against one key tile of n <= prefill_key_tile keys (row r
/// sees the first vis[r] of them, vis[r] in [0, n]): logits, masked online softmax, P V into o
/// (V rows of T = float or bf16, ldv elements apart, widened in registers).
template <class A, class T, int NR>
void prefill_block(const float* const* q, const float* kt, index_t ldk, const T* v, index_t ldv, index_t n,
                   const index_t* vis, index_t d, float scale, float* const* o, float* m, float* l) noexcept {
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  alignas(64) float s[NR][prefill_key_tile];
  const index_t ncols = (n + 2 * L - 1) / (2 * L) * (2 * L);
  prefill_logits<A, NR>(q, kt, ldk, d, scale, s, ncols);
  float alpha[NR];
  for (int r = 0; r < NR; ++r) {
    if (vis[r] > 0) {
      alpha[r] = prefill_softmax_step<A>(s[r], n, vis[r], m[r], l[r]);
    } else { // the row's position is before this tile: weight 0, accumulator untouched
      alpha[r] = 1.0f;
      std::fill_n(s[r], n, 0.0f);
    }
  }
  index_t e = 0;
  for (; e + 2 * L <= d; e += 2 * L) pv_block<A, T, NR, 2>(v, static_cast<std::size_t>(ldv), n, static_cast<std::size_t>(e), s, alpha, o);
  if (e + L <= d) { pv_block<A, T, NR, 1>(v, static_cast<std::size_t>(ldv), n, static_cast<std::size_t>(e), s, alpha, o); e += L; }
  if (e < d) pv_tail<A, T, NR>(v, static_cast<std::size_t>(ldv), n, static_cast<std::size_t>(e), static_cast<std::size_t>(d - e), s, alpha, o);
}

/// One register block of NR rows against one key tile for the column sums. Pass 1 (cs == nullptr):
/// update each row's (m, l). Pass 2: add exp(z - m_r) w_r down the visible columns into cs[0, n).
template <class A, int NR>
void column_block(const float* const* q, const float* kt, index_t ldk, index_t n, const index_t* vis, index_t d,
                  float scale, float* m, float* l, const float* w, float* cs) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  alignas(64) float s[NR][prefill_key_tile];
  const index_t ncols = (n + 2 * L - 1) / (2 * L) * (2 * L);
  prefill_logits<A, NR>(q, kt, ldk, d, scale, s, ncols);
  if (!cs) {
    for (int r = 0; r < NR; ++r)
      if (vis[r] > 0) prefill_softmax_step<A>(s[r], n, vis[r], m[r], l[r]);
    return;
  }
  for (index_t c = 0; c < n; c += L) {
    V acc(0.0f);
    for (int r = 0; r < NR; ++r) {
      const index_t left = vis[r] - c; // visible columns of row r from c on
      if (left <= 0) continue;
      const V z = left >= L ? cpu::detail::loadu<A>(s[r] + c)
                            : cpu::detail::load_partial<A>(s[r] + c, static_cast<std::size_t>(left), ninf);
      acc = cpu::detail::fma<A>(cpu::detail::exp<A>(z - V(m[r])), V(w[r]), acc);
    }
    if (c + L <= n) cpu::detail::storeu<A>(cs + c, cpu::detail::loadu<A>(cs + c) + acc);
    else {
      const auto rest = static_cast<std::size_t>(n - c);
      cpu::detail::store_partial<A>(cs + c, rest, cpu::detail::load_partial<A>(cs + c, rest, 0.0f) + acc);
    }
  }
}

/// Calls f.template operator()<NR>() for the runtime nr in [1, MR].
template <class A, class F>
MEMBOUND_ALWAYS_INLINE void prefill_dispatch(int nr, F&& f) {
  if constexpr (prefill_mr<A> == 8) {
    switch (nr) {
      case 1: f.template operator()<1>(); break;
      case 2: f.template operator()<2>(); break;
      case 3: f.template operator()<3>(); break;
      case 4: f.template operator()<4>(); break;
      case 5: f.template operator()<5>(); break;
      case 6: f.template operator()<6>(); break;
      case 7: f.template operator()<7>(); break;
      default: f.template operator()<8>(); break;
    }
  } else {
    switch (nr) {
      case 1: f.template operator()<1>(); break;
      case 2: f.template operator()<2>(); break;
      case 3: f.template operator()<3>(); break;
      default: f.template operator()<4>(); break;
    }
  }
}

/// The causal tile walk shared by the attention and the column sums, for KV head g: for each query
/// tile of rows [i0, i1) within [r_begin, T), each key tile up to the diagonal, each query head of
/// the group and each register block of rows, calls blk(nr, hh, r0, j0, n, vis).
template <class A, class Blk>
void prefill_walk(index_t t, index_t s, index_t grp, index_t r_begin, Blk&& blk) {
  constexpr int MR = prefill_mr<A>;
  const index_t off = s - t; // query row r sits at position off + r
  for (index_t i0 = r_begin; i0 < t; i0 += prefill_query_tile) {
    const index_t i1 = std::min(t, i0 + prefill_query_tile);
    const index_t pos_hi = off + i1 - 1;
    for (index_t j0 = 0; j0 <= pos_hi; j0 += prefill_key_tile) {
      const index_t nj = std::min(prefill_key_tile, s - j0);
      for (index_t hh = 0; hh < grp; ++hh)
        for (index_t r0 = i0; r0 < i1; r0 += MR) {
          const auto nr = static_cast<int>(std::min<index_t>(MR, i1 - r0));
          const index_t p_last = off + r0 + nr - 1;
          if (p_last < j0) continue; // the block's rows are all before this tile
          const index_t n = std::min(nj, p_last - j0 + 1);
          index_t vis[8];
          for (int r = 0; r < nr; ++r) vis[r] = std::clamp<index_t>(off + r0 + r - j0 + 1, 0, n);
          blk(nr, hh, r0, j0, n, vis);
        }
    }
  }
}

template <class A, class T>
void attend_prefill_simd(const view<const float>& q, const view<const T>& k, const view<const T>& v,
                         const view<float>& out, float scale, std::span<float> scratch) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr auto L = static_cast<index_t>(cpu::detail::lanes<A>);
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), g_n = k.extent(0), s = k.extent(1), grp = h / g_n;
  const index_t ldk = (s + prefill_key_tile - 1) / prefill_key_tile * prefill_key_tile;
  float* kt = scratch.data();
  float* m = kt + d * ldk; // (H/G, query tile)
  float* l = m + grp * prefill_query_tile;
  const index_t off = s - t;
  for (index_t g = 0; g < g_n; ++g) {
    if (t == 0) break;
    prefill_transpose(k, g, kt, ldk);
    const T* vg = v.data() + g * v.stride(0);
    const index_t ldv = v.stride(1);
    for (index_t i0 = 0; i0 < t; i0 += prefill_query_tile) {
      const index_t i1 = std::min(t, i0 + prefill_query_tile);
      std::fill_n(m, grp * prefill_query_tile, -std::numeric_limits<float>::infinity());
      std::fill_n(l, grp * prefill_query_tile, 0.0f);
      for (index_t hh = 0; hh < grp; ++hh)
        for (index_t r = i0; r < i1; ++r) std::fill_n(row3(out, g * grp + hh, r), d, 0.0f);
      // one query tile: reuse the walk with r_begin = i0 and t clipped to i1 (positions keep off)
      const index_t pos_hi = off + i1 - 1;
      constexpr int MR = prefill_mr<A>;
      for (index_t j0 = 0; j0 <= pos_hi; j0 += prefill_key_tile) {
        const index_t nj = std::min(prefill_key_tile, s - j0);
        const T* vt = vg + j0 * ldv;
        for (index_t hh = 0; hh < grp; ++hh) {
          const index_t hq = g * grp + hh;
          for (index_t r0 = i0; r0 < i1; r0 += MR) {
            const auto nr = static_cast<int>(std::min<index_t>(MR, i1 - r0));
            const index_t p_last = off + r0 + nr - 1;
            if (p_last < j0) continue;
            const index_t n = std::min(nj, p_last - j0 + 1);
            index_t vis[8];
            const float* qs[8];
            float* os[8];
            for (int r = 0; r < nr; ++r) {
              vis[r] = std::clamp<index_t>(off + r0 + r - j0 + 1, 0, n);
              qs[r] = row3(q, hq, r0 + r);
              os[r] = row3(out, hq, r0 + r);
            }
            float* mr = m + hh * prefill_query_tile + (r0 - i0);
            float* lr = l + hh * prefill_query_tile + (r0 - i0);
            prefill_dispatch<A>(nr, [&]<int NR>() {
              prefill_block<A, T, NR>(qs, kt + j0, ldk, vt, ldv, n, vis, d, scale, os, mr, lr);
            });
          }
        }
      }
      for (index_t hh = 0; hh < grp; ++hh)
        for (index_t r = i0; r < i1; ++r) {
          float* orow = row3(out, g * grp + hh, r);
          const V inv(1.0f / l[hh * prefill_query_tile + (r - i0)]);
          index_t e = 0;
          for (; e + L <= d; e += L) cpu::detail::storeu<A>(orow + e, cpu::detail::loadu<A>(orow + e) * inv);
          if (e < d) {
            const auto rest = static_cast<std::size_t>(d - e);
            cpu::detail::store_partial<A>(orow + e, rest, cpu::detail::load_partial<A>(orow + e, rest, 0.0f) * inv);
          }
        }
    }
  }
}

template <class A, class T>
void column_sums_simd(const view<const float>& q, const view<const T>& k, index_t t0, const view<float>& colsum,
                      float scale, std::span<float> scratch) noexcept {
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), g_n = k.extent(0), s = k.extent(1), grp = h / g_n;
  const index_t ldk = (s + prefill_key_tile - 1) / prefill_key_tile * prefill_key_tile;
  float* kt = scratch.data();
  float* m = kt + d * ldk; // (H/G, T)
  float* l = m + grp * t;
  float* w = l; // pass 2 overwrites l with the column weight 1 / ((H/G) l)
  const float inv_grp = 1.0f / static_cast<float>(grp);
  for (index_t g = 0; g < g_n; ++g) {
    if (t0 >= t) break;
    prefill_transpose(k, g, kt, ldk);
    std::fill_n(m, grp * t, -std::numeric_limits<float>::infinity());
    std::fill_n(l, grp * t, 0.0f);
    float* cs = colsum.data() + g * colsum.stride(0);
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1)
        for (index_t i = 0; i < grp * t; ++i) w[i] = inv_grp / l[i];
      prefill_walk<A>(t, s, grp, t0, [&](int nr, index_t hh, index_t r0, index_t j0, index_t n, const index_t* vis) {
        const float* qs[8];
        for (int r = 0; r < nr; ++r) qs[r] = row3(q, g * grp + hh, r0 + r);
        float* mr = m + hh * t + r0;
        float* lr = l + hh * t + r0;
        prefill_dispatch<A>(nr, [&]<int NR>() {
          column_block<A, NR>(qs, kt + j0, ldk, n, vis, d, scale, mr, lr, lr, pass == 0 ? nullptr : cs + j0);
        });
      });
    }
  }
}

/// attend_prefill for K/V elements T (float or bf16): validation, then the backend's kernel.
template <class B, prefill_element T>
void attend_prefill_run(const view<const float>& q, const view<const T>& k, const view<const T>& v,
                        const view<float>& out, float scale, std::span<float> scratch) {
  cpu::detail::check_cpu_backend<B>();
  const char* who = "kv::attend_prefill";
  prefill_check(who, q, k, &v, &out, scale);
  prefill_check_scratch(who, scratch, attend_prefill_scratch_floats(q.extent(0), k.extent(0), k.extent(1), k.extent(2)),
                        "kv::attend_prefill_scratch_floats");
  if (scale == 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(q.extent(2)));
  if constexpr (std::is_same_v<B, backend::scalar>) attend_prefill_scalar(q, k, v, out, scale);
  else attend_prefill_simd<typename B::arch>(q, k, v, out, scale, scratch);
}

/// attention_column_sums for K elements T (float or bf16): validation, then the backend's kernel.
template <class B, prefill_element T>
void column_sums_run(const view<const float>& q, const view<const T>& k, index_t t0, const view<float>& colsum,
                     float scale, std::span<float> scratch) {
  cpu::detail::check_cpu_backend<B>();
  const char* who = "kv::attention_column_sums";
  prefill_check<T>(who, q, k, nullptr, nullptr, scale);
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), g = k.extent(0), s = k.extent(1);
  MEMBOUND_EXPECTS(t0 >= 0 && t0 <= t, shape_error, who, ": t0 = ", t0, " out of range [0, T = ", t, "] for q (", h,
                   ",", t, ",", d, ")");
  MEMBOUND_EXPECTS(colsum.rank() == 2 && colsum.extent(0) == g && colsum.extent(1) == s, shape_error, who,
                   ": colsum must be (G,S) = (", g, ",", s, ") for k (", g, ",", s, ",", d, "); got rank ",
                   colsum.rank(), " (", colsum.extent(0), ",", colsum.rank() == 2 ? colsum.extent(1) : -1, ")");
  MEMBOUND_EXPECTS(colsum.stride(1) == 1 || s <= 1, shape_error, who,
                   ": colsum needs contiguous rows (inner stride 1); got ", colsum.stride(1));
  prefill_check_scratch(who, scratch, attention_column_sums_scratch_floats(h, g, t, s, d),
                        "kv::attention_column_sums_scratch_floats");
  if (scale == 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (index_t j = 0; j < g; ++j) std::fill_n(colsum.data() + j * colsum.stride(0), s, 0.0f);
  if constexpr (std::is_same_v<B, backend::scalar>) column_sums_scalar(q, k, t0, colsum, scale);
  else column_sums_simd<typename B::arch>(q, k, t0, colsum, scale, scratch);
}

} // namespace detail

/// Causal attention of a whole prefill (see the file comment for the formula, GQA mapping,
/// algorithm and special values). Two overloads, one kernel: K and V both f32, or both bf16
/// (`membound::bf16`, widened exactly to f32 as they are read); q, out and the arithmetic are f32.
///
/// @tparam B backend tag: `backend::scalar` runs the scalar twin, a SIMD tag the tiled kernel.
/// @param q      (H,T,D) queries (post-RoPE), contiguous rows, any other strides; H a multiple of G.
/// @param k      (G,S,D) keys (post-RoPE), f32 or bf16, any strides; S >= T.
/// @param v      (G,S,D) values, the element type of k, contiguous rows, any other strides.
/// @param out    (H,T,D) output, contiguous rows; must not overlap q, k, v or scratch.
/// @param scale  multiplies q.k before the softmax; 0 means 1/sqrt(D). Must be finite.
/// @param scratch at least `attend_prefill_scratch_floats(H, G, S, D)` floats (both backends, both
///               element types: the transposed K is always f32).
/// @throws shape_error for shapes that do not fit (the message names both) or short scratch;
/// config_error for a non-finite scale. Nothing is written when it throws.
///
/// Complexity: 4 D FLOP per visible (query, key) pair, 4 D H (T (T+1)/2 + T (S - T)) in all; K is
/// read once, transposed (and widened, for bf16) into the f32 scratch Kt per KV head (O(G S D)), then
/// Kt and V are read once per query tile of 64 rows: K and V bytes read from the caller's arrays
/// halve in bf16 (V: G S D elements per query tile, 4 bytes each in f32 and 2 in bf16), Kt reads do
/// not. No allocation; O(1) stack. Single thread.
template <class B = backend::best_cpu>
void attend_prefill(view<const float> q /*(H,T,D)*/, view<const float> k /*(G,S,D)*/,
                    view<const float> v /*(G,S,D)*/, view<float> out /*(H,T,D)*/, float scale = 0.0f,
                    std::span<float> scratch = {}) {
  detail::attend_prefill_run<B, float>(q, k, v, out, scale, scratch);
}

/// bf16 K and V: as the f32 overload above, with K and V widened exactly to f32 as they are read,
/// so the result equals the f32 overload's on the widened K and V bit for bit.
template <class B = backend::best_cpu>
void attend_prefill(view<const float> q /*(H,T,D)*/, view<const bf16> k /*(G,S,D)*/,
                    view<const bf16> v /*(G,S,D)*/, view<float> out /*(H,T,D)*/, float scale = 0.0f,
                    std::span<float> scratch = {}) {
  detail::attend_prefill_run<B, bf16>(q, k, v, out, scale, scratch);
}

/// Column sums of the normalised causal attention of query rows [t0, T), averaged over the query
/// heads of each KV head (see the file comment): H2O's accumulated attention (t0 = 0, T = S) and
/// SnapKV's observation-window vote (t0 = T - window, before its pooling). Two overloads, one
/// kernel: K f32 or bf16 (widened exactly to f32 as it is read).
///
/// @param q, k   as `attend_prefill` (k f32 or bf16).
/// @param t0     first query row counted, 0 <= t0 <= T.
/// @param colsum (G,S), contiguous rows; overwritten. Columns no counted row sees are 0.
/// @param scale  as `attend_prefill`.
/// @param scratch at least `attention_column_sums_scratch_floats(H, G, T, S, D)` floats (either
///               element type).
/// @throws shape_error (t0 out of range, colsum not (G,S), short scratch, or as attend_prefill);
/// config_error for a non-finite scale. Nothing is written when it throws.
///
/// Complexity: two passes of 2 D FLOP per visible (query, key) pair of rows [t0, T) (logits) plus
/// one exp per pair in each pass: about the cost of `attend_prefill` on the same rows. K is read
/// (and widened, for bf16) once per KV head into the f32 transpose: G S D elements. No
/// allocation. Single thread.
template <class B = backend::best_cpu>
void attention_column_sums(view<const float> q /*(H,T,D)*/, view<const float> k /*(G,S,D)*/, index_t t0,
                           view<float> colsum /*(G,S)*/, float scale = 0.0f, std::span<float> scratch = {}) {
  detail::column_sums_run<B, float>(q, k, t0, colsum, scale, scratch);
}

/// bf16 K: as the f32 overload above, with K widened exactly to f32 (the same result as the f32
/// overload on the widened K, bit for bit).
template <class B = backend::best_cpu>
void attention_column_sums(view<const float> q /*(H,T,D)*/, view<const bf16> k /*(G,S,D)*/, index_t t0,
                           view<float> colsum /*(G,S)*/, float scale = 0.0f, std::span<float> scratch = {}) {
  detail::column_sums_run<B, bf16>(q, k, t0, colsum, scale, scratch);
}

} // namespace kv
} // namespace v0_1
} // namespace membound
