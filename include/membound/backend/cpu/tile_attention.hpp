// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `cpu::tile_attention`: softmax attention of one small token tile in channel-major
/// layout, the inner kernel of cascaded group attention (EfficientViT, CVPR 2023): with N tokens
/// (N <= 64, e.g. a 7 x 7 window), key width kd and value width d,
///
///     P[n, :] = softmax_m( sum_c q[c, n] k[c, m] + bias_t[m, n] ),   o[c, n] = sum_m v[c, m] P[n, m].
///
/// q (kd, N), k (kd, N), v (d, N) and o (d, N) are row-major with their own row strides (rows of
/// a larger channel-major activation); bias_t is the (N keys, N queries) bias, row stride ldb.
/// Any scale (EfficientViT's kd^-1/2) is folded into q by the caller.
///
/// SIMD method: everything is vectorised over the query index n (N rounded up to whole vectors):
/// S^T (N, Np) = bias_t + K^T Q by broadcast-FMA of k[c, m] against q rows, the column softmax
/// over m with the fast exp, then o rows = (sum_m v[c, m] E[m, :]) / sum, so no transposes and no
/// horizontal sums. Both products run register tiles of up to 3 rows x 4 vectors, 12 independent
/// FMA chains (one chain per tile was latency-bound: 2.2-2.5x slower at N = 49 on AVX2). The
/// normalisation is applied to o (one multiply per output) rather than to P.
/// The scalar twin `ref::tile_attention` does the same arithmetic in the same order with std::exp
/// (results differ by the fast exp's <= 1 ulp and, on SSE4.2, the missing FMA).
/// Costs: 2 N^2 (kd + d) flops; scratch `tile_attention_scratch_floats(N, kd)` floats; no allocation.
/// Reads bias_t rows up to Np = N rounded up to the vector width (ldb >= Np, padding finite).

#include <algorithm>
#include <cmath>
#include <limits>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
/// f(rows, vectors, r0, j0) over register tiles of up to 3 rows x 4 vectors covering `rows` x
/// `nv` (both counts as integral_constants): the tiling of both products of `tile_attention`.
template <class F>
MEMBOUND_ALWAYS_INLINE void tiles_3x4(index_t rows, index_t nv, F&& f) {
  for (index_t r0 = 0; r0 < rows; r0 += 3)
    for (index_t j0 = 0; j0 < nv; j0 += 4)
      with_count<3>(std::min<index_t>(3, rows - r0), [&](auto rr) MEMBOUND_INLINE_LAMBDA {
        with_count<4>(std::min<index_t>(4, nv - j0), [&](auto jj) MEMBOUND_INLINE_LAMBDA { f(rr, jj, r0, j0); });
      });
}
} // namespace detail

/// Largest token count of one tile.
inline constexpr index_t tile_attention_max_tokens = 64;

/// Row stride to give the bias table so that every backend's vector reads stay inside it:
/// N rounded up to 16 (the AVX-512 width).
constexpr index_t tile_attention_bias_stride(index_t n) noexcept { return (n + 15) / 16 * 16; }

/// Floats of scratch `tile_attention` needs for N tokens and key width kd (any backend).
constexpr index_t tile_attention_scratch_floats(index_t n, index_t kd) noexcept {
  const index_t np = tile_attention_bias_stride(n);
  return kd * np + n * np + 2 * np;
}

/// One attention tile (see the file comment). q, k: (kd, N) with row strides ldq, ldk; v: (d, N)
/// stride ldv; bias_t: (N, ldb) with ldb >= tile_attention_bias_stride(N) (null: no bias); o:
/// (d, N) stride ldo, must not overlap the inputs. @throws shape_error for N outside 1..64 or a
/// short ldb. Complexity: 2 N^2 (kd + d) flops.
template <class B = backend::best_cpu>
void tile_attention(index_t n, index_t kd, index_t d, const float* q, index_t ldq, const float* k, index_t ldk,
                    const float* v, index_t ldv, const float* bias_t, index_t ldb, float* o, index_t ldo,
                    float* scratch) {
  detail::check_cpu_backend<B>();
  MEMBOUND_EXPECTS(n >= 1 && n <= tile_attention_max_tokens, shape_error, "tile_attention: ", n,
                   " tokens, supported 1..", tile_attention_max_tokens);
  MEMBOUND_EXPECTS(bias_t == nullptr || ldb >= tile_attention_bias_stride(n), shape_error,
                   "tile_attention: bias row stride ", ldb, ", expected >= ", tile_attention_bias_stride(n));
  if constexpr (std::is_same_v<B, backend::scalar>) {
    (void)scratch;
    ref::tile_attention(n, kd, d, q, ldq, k, ldk, v, ldv, bias_t, ldb, o, ldo);
  } else {
    using A = typename B::arch;
    using V = detail::fbatch<A>;
    constexpr index_t L = static_cast<index_t>(V::size);
    const index_t nv = (n + L - 1) / L, np = nv * L;
    float* qs = scratch;           // (kd, np): q rows, zero padded
    float* st = qs + kd * np;      // (N, np): S^T, then exp(S^T - max)
    float* inv = st + n * np;      // (np): 1 / column sums
    float* tail = inv + np;        // (np): the last partial output vector
    for (index_t c = 0; c < kd; ++c) {
      std::copy_n(q + c * ldq, n, qs + c * np);
      std::fill(qs + c * np + n, qs + (c + 1) * np, 0.0f);
    }
    // S^T[m, :] = bias_t[m, :] + sum_c k[c, m] q[c, :], in tiles of up to 3 keys x 4 vectors
    // (12 independent chains against the FMA latency; each output still one chain over c).
    const V zero(0.0f);
    detail::tiles_3x4(n, nv, [&](auto mm, auto jj, index_t m0, index_t j0) MEMBOUND_INLINE_LAMBDA {
      constexpr int MM = decltype(mm)::value, JJ = decltype(jj)::value;
      V acc[MM][JJ];
      for (int i = 0; i < MM; ++i)
        for (int j = 0; j < JJ; ++j)
          acc[i][j] = bias_t != nullptr ? V::load_unaligned(bias_t + (m0 + i) * ldb + (j0 + j) * L) : zero;
      for (index_t c = 0; c < kd; ++c) {
        V qv[JJ];
        for (int j = 0; j < JJ; ++j) qv[j] = V::load_unaligned(qs + c * np + (j0 + j) * L);
        for (int i = 0; i < MM; ++i) {
          const V kb(k[c * ldk + m0 + i]);
          for (int j = 0; j < JJ; ++j) acc[i][j] = detail::fma(kb, qv[j], acc[i][j]);
        }
      }
      for (int i = 0; i < MM; ++i)
        for (int j = 0; j < JJ; ++j) acc[i][j].store_unaligned(st + (m0 + i) * np + (j0 + j) * L);
    });
    // Column softmax over m: max, exp(x - max) in place, 1 / sum.
    for (index_t j = 0; j < nv; ++j) {
      V mx(-std::numeric_limits<float>::infinity());
      for (index_t m = 0; m < n; ++m) mx = xsimd::max(mx, V::load_unaligned(st + m * np + j * L));
      V sum = zero;
      for (index_t m = 0; m < n; ++m) {
        const V e = detail::exp<A>(V::load_unaligned(st + m * np + j * L) - mx);
        e.store_unaligned(st + m * np + j * L);
        sum += e;
      }
      (V(1.0f) / sum).store_unaligned(inv + j * L);
    }
    // o[c, :] = (sum_m v[c, m] E[m, :]) * inv, in tiles of up to 3 channels x 4 vectors.
    detail::tiles_3x4(d, nv, [&](auto cc, auto jj, index_t c0, index_t j0) MEMBOUND_INLINE_LAMBDA {
      constexpr int CC = decltype(cc)::value, JJ = decltype(jj)::value;
      V acc[CC][JJ];
      for (int i = 0; i < CC; ++i)
        for (int j = 0; j < JJ; ++j) acc[i][j] = zero;
      for (index_t m = 0; m < n; ++m) {
        V e[JJ];
        for (int j = 0; j < JJ; ++j) e[j] = V::load_unaligned(st + m * np + (j0 + j) * L);
        for (int i = 0; i < CC; ++i) {
          const V vb(v[(c0 + i) * ldv + m]);
          for (int j = 0; j < JJ; ++j) acc[i][j] = detail::fma(vb, e[j], acc[i][j]);
        }
      }
      for (int i = 0; i < CC; ++i) {
        float* oc = o + (c0 + i) * ldo;
        for (int j = 0; j < JJ; ++j) {
          const index_t at = (j0 + j) * L;
          const V r = acc[i][j] * V::load_unaligned(inv + at);
          if (at + L <= n) r.store_unaligned(oc + at);
          else {
            r.store_unaligned(tail);
            std::copy_n(tail, n - at, oc + at);
          }
        }
      }
    });
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
