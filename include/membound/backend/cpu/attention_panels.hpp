// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `cpu::panel`: the register-tiled products inside tiled causal attention for training
/// (`nn::causal_attention`, FlashAttention-2's tiling, Dao 2023), where one side of every product
/// is the head size D (32 in the embedded model) and a general GEMM spends more on packing and
/// on its C tile than on the arithmetic.
///
/// Three kernels, each with its operands already in the layouts it streams:
/// - `nt`: c[r, j] = epi(r, j, sum_k x[r, k] y[j, k]) for tiles of query rows against key chunks:
///   x (m, kd) row-major, broadcast one element at a time; y^T in chunk panels (`pack_panels`: K^T
///   or V^T, packed once per KV head and reused by every query head and block). The accumulators
///   (6 rows x 4 vectors on AVX-512, 6 x 2 on AVX2 and SSE) stay in registers until the epilogue,
///   which gets each vector of 1 row x `lanes` keys and stores it (the caller's scale, retention
///   bias, mask, exp, ...).
/// - `nt2`: two such products over the same rows and keys at once (the backward's S and dP), so
///   that the epilogue sees both (6 x 2 x 2 accumulators on AVX-512).
/// - `bc`: out[i, :] = (accumulate ? out[i, :] : 0) + alpha s_i sum_k a[i sai + k sak] y[k, :],
///   a row-vector combination: with (sai, sak) = (lda, 1) it is A Y (P V, dS K); with (1, lda) it
///   is A^T Y (P^T dO, dS^T Q). y rows are `n` floats, n a multiple of the vector width (callers
///   pad D); column groups of up to 4 vectors, as many rows per tile as the accumulators allow.
/// All take the range of keys (or of k) per tile from a callback, which is how causal masking skips
/// the blocks above the diagonal. Cost: 2 m kd cols and 2 m n k flops; no allocation, no threads.
/// The scalar oracle is `ref::causal_attention_*` (the tests check the attention built on these
/// panels against it in double, on every ISA level of tools/isa_matrix.sh).

#include <algorithm>
#include <type_traits>
#include <utility>

#include "membound/backend/cpu/simd.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {
namespace panel {

/// Register blocking per architecture: 24 accumulators of 32 registers on AVX-512, 12 of 16 below.
/// `nt` runs nt_rows x nt_vectors tiles over chunks of `chunk` keys; `nt2` (two products) runs
/// nt2_rows x (nt_vectors / 2) tiles over half chunks; `bc` runs column groups of 4, 2 or 1
/// vectors with accumulators / vectors rows (at most 12) per tile.
template <class A>
struct blocking {
  static constexpr bool wide = cpu::detail::is_avx512<A>;
  static constexpr index_t lanes = static_cast<index_t>(cpu::detail::lanes<A>);
  static constexpr index_t nt_vectors = wide ? 4 : 2;
  static constexpr index_t nt_rows = 6;
  static constexpr index_t nt2_rows = wide ? 6 : 3;
  /// Keys per `nt` tile; callers round key extents up to it (or to half of it for `nt2`).
  static constexpr index_t chunk = nt_vectors * lanes;
  static constexpr index_t accumulators = wide ? 24 : 12;
};

namespace detail {

using cpu::detail::with_count;

template <class A, int MR, class Epi>
MEMBOUND_ALWAYS_INLINE void nt_tile(index_t kd, const float* x, index_t ldx, const float* yt, index_t r0, index_t j0,
                                    Epi& epi) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr int NV = static_cast<int>(blocking<A>::nt_vectors);
  constexpr index_t L = blocking<A>::lanes;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V(0.0f);
  const float* xr = x + r0 * ldx;
  constexpr index_t C = blocking<A>::chunk;
  const float* yc = yt + j0 * kd; // the chunk's (kd, C) panel
  for (index_t k = 0; k < kd; ++k) {
    V y[NV];
    for (int v = 0; v < NV; ++v) y[v] = V::load_unaligned(yc + k * C + v * L);
    for (int r = 0; r < MR; ++r) {
      const V b(xr[r * ldx + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = cpu::detail::fma<A>(b, y[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) epi(r0 + r, j0 + v * L, acc[r][v]);
}

/// Two products at once over half a chunk: acc1 = x1 y1^T and acc2 = x2 y2^T for MR rows and
/// nt_vectors / 2 vectors of keys starting at j0 (a multiple of chunk / 2).
template <class A, int MR, class Epi>
MEMBOUND_ALWAYS_INLINE void nt2_tile(index_t kd, const float* x1, index_t ldx1, const float* y1t, const float* x2,
                                     index_t ldx2, const float* y2t, index_t r0, index_t j0, Epi& epi) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr int NV = static_cast<int>(blocking<A>::nt_vectors) / 2;
  constexpr index_t L = blocking<A>::lanes, C = blocking<A>::chunk;
  V a1[MR][NV], a2[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) a1[r][v] = a2[r][v] = V(0.0f);
  const index_t off = (j0 / C) * C * kd + j0 % C;
  const float *y1 = y1t + off, *y2 = y2t + off;
  const float *xr1 = x1 + r0 * ldx1, *xr2 = x2 + r0 * ldx2;
  for (index_t k = 0; k < kd; ++k) {
    V u[NV], w[NV];
    for (int v = 0; v < NV; ++v) {
      u[v] = V::load_unaligned(y1 + k * C + v * L);
      w[v] = V::load_unaligned(y2 + k * C + v * L);
    }
    for (int r = 0; r < MR; ++r) {
      const V b1(xr1[r * ldx1 + k]), b2(xr2[r * ldx2 + k]);
      for (int v = 0; v < NV; ++v) {
        a1[r][v] = cpu::detail::fma<A>(b1, u[v], a1[r][v]);
        a2[r][v] = cpu::detail::fma<A>(b2, w[v], a2[r][v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) epi(r0 + r, j0 + v * L, a1[r][v], a2[r][v]);
}

template <class A, int MI, int NV>
MEMBOUND_ALWAYS_INLINE void bc_tile(index_t k0, index_t k1, const float* a, index_t sai, index_t sak, const float* y,
                                    index_t ldy, float* out, index_t ldo, index_t i0, index_t c0, float alpha,
                                    const float* row_scale, bool accumulate) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr index_t L = blocking<A>::lanes;
  V acc[MI][NV];
  for (int i = 0; i < MI; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V(0.0f);
  const float* ai = a + i0 * sai;
  for (index_t k = k0; k < k1; ++k) {
    V yv[NV];
    for (int v = 0; v < NV; ++v) yv[v] = V::load_unaligned(y + k * ldy + c0 + v * L);
    const float* ak = ai + k * sak;
    if (sai == 1) { // a column panel: its rows are far apart, fetch a few ahead
      cpu::detail::prefetch(ak + 6 * sak);
      cpu::detail::prefetch(ak + 6 * sak + MI - 1);
    }
    for (int i = 0; i < MI; ++i) {
      const V b(ak[i * sai]);
      for (int v = 0; v < NV; ++v) acc[i][v] = cpu::detail::fma<A>(b, yv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MI; ++i) {
    const V s(row_scale != nullptr ? alpha * row_scale[i0 + i] : alpha);
    float* o = out + (i0 + i) * ldo + c0;
    for (int v = 0; v < NV; ++v) {
      V r = acc[i][v] * s;
      if (accumulate) r += V::load_unaligned(o + v * L);
      r.store_unaligned(o + v * L);
    }
  }
}

/// One column group of NV vectors at c0 over all m rows, in tiles of as many rows as the
/// accumulators allow (at most 12): a column panel of `a` is read once per group.
template <class A, int NV, class KRange>
MEMBOUND_ALWAYS_INLINE void bc_group(index_t m, index_t c0, const float* a, index_t sai, index_t sak, const float* y, index_t ldy, float* out,
              index_t ldo, float alpha, const float* row_scale, bool accumulate, KRange& krange) {
  constexpr index_t MI = std::min<index_t>(12, blocking<A>::accumulators / NV);
  for (index_t i0 = 0; i0 < m; i0 += MI) {
    const index_t mi = std::min(MI, m - i0);
    const std::pair<index_t, index_t> kr = krange(i0, i0 + mi);
    with_count<static_cast<int>(MI)>(mi, [&](auto rows) MEMBOUND_INLINE_LAMBDA {
      bc_tile<A, decltype(rows)::value, NV>(kr.first, kr.second, a, sai, sak, y, ldy, out, ldo, i0, c0, alpha, row_scale, accumulate);
    });
  }
}

/// The loop nest of `nt` and `nt2`: up to G row tiles of at most MR rows at a time, key steps
/// outermost, so that a key panel stays in L1 while the tiles that need it pass over it;
/// f(integral_constant rows, r0, j0) for each tile and key step below its cols(r0, r1).
template <int MR, class Cols, class F>
void for_tiles(index_t m, index_t step, Cols& cols, F&& f) {
  constexpr index_t G = 16;
  for (index_t g0 = 0; g0 < m; g0 += G * MR) {
    const index_t g1 = std::min(m, g0 + G * MR);
    index_t end[G], last = 0;
    for (index_t r0 = g0, i = 0; r0 < g1; r0 += MR, ++i) last = std::max(last, end[i] = cols(r0, std::min(g1, r0 + MR)));
    for (index_t j0 = 0; j0 < last; j0 += step)
      for (index_t r0 = g0, i = 0; r0 < g1; r0 += MR, ++i)
        if (j0 < end[i]) with_count<MR>(std::min<index_t>(MR, g1 - r0), [&](auto rows) MEMBOUND_INLINE_LAMBDA { f(rows, r0, j0); });
  }
}

} // namespace detail

/// For every tile of up to `nt_rows` rows [r0, r1) of x (m rows, kd columns, row stride ldx) and
/// every key chunk j0 = 0, chunk, ... below `cols(r0, r1)` (a multiple of `chunk`):
/// epi(r, j, acc) with acc = sum_k x[r, k] y[j .. j + lanes, k] for each row r of the tile and
/// each vector of the chunk. yt holds y^T in chunk panels (`pack_panels`): chunk c is a contiguous
/// (kd, chunk) block at yt + c chunk kd, so a tile streams 4 KiB-aliasing-free from L1. O(m kd cols).
template <class A, class Cols, class Epi>
void nt(index_t m, index_t kd, const float* x, index_t ldx, const float* yt, Cols&& cols, Epi&& epi) {
  detail::for_tiles<static_cast<int>(blocking<A>::nt_rows)>(m, blocking<A>::chunk, cols, [&](auto rows, index_t r0, index_t j0) {
    detail::nt_tile<A, decltype(rows)::value>(kd, x, ldx, yt, r0, j0, epi);
  });
}

/// `nt` of two operand pairs sharing rows and keys (the backward's S = q k^T and dP = dO v^T):
/// epi(r, j, acc1, acc2) for half-chunk steps of keys below cols(r0, r1) (a multiple of chunk / 2);
/// y1t and y2t in the chunk panels of `pack_panels`. O(2 m kd cols).
template <class A, class Cols, class Epi>
void nt2(index_t m, index_t kd, const float* x1, index_t ldx1, const float* y1t, const float* x2, index_t ldx2,
         const float* y2t, Cols&& cols, Epi&& epi) {
  detail::for_tiles<static_cast<int>(blocking<A>::nt2_rows)>(m, blocking<A>::chunk / 2, cols, [&](auto rows, index_t r0, index_t j0) {
    detail::nt2_tile<A, decltype(rows)::value>(kd, x1, ldx1, y1t, x2, ldx2, y2t, r0, j0, epi);
  });
}

/// Packs y (t rows of kd floats, row stride ld) transposed into the chunk panels `nt` reads:
/// yt[(j / chunk) chunk kd + k chunk + j % chunk] = y[j, k] for j < tp (tp a multiple of chunk),
/// zero for j >= t.
template <class A>
void pack_panels(const float* y, index_t ld, index_t t, index_t kd, index_t tp, float* yt) {
  constexpr index_t C = blocking<A>::chunk;
  for (index_t j = 0; j < tp; ++j) {
    float* col = yt + (j / C) * C * kd + j % C;
    if (j < t)
      for (index_t k = 0; k < kd; ++k) col[k * C] = y[j * ld + k];
    else
      for (index_t k = 0; k < kd; ++k) col[k * C] = 0.0f;
  }
}

/// out[i, 0:n) = (accumulate ? out[i, 0:n) : 0) + alpha s_i sum_{k in krange(i0, i1)} a[i sai + k sak] y[k, 0:n)
/// for i in [0, m), in tiles [i0, i1) (see `blocking`); krange returns {k0, k1}. s_i = row_scale[i]
/// (1 when null). n must be a multiple of `lanes`; y and out have row strides ldy and ldo. Column
/// groups have at most `MaxVectors` vectors: 4 suits a y that stays in L1 (fewer rows per tile,
/// the panel of `a` read once), 2 a y streamed from L2. O(m n k).
template <class A, int MaxVectors = 2, class KRange>
void bc(index_t m, index_t n, const float* a, index_t sai, index_t sak, const float* y, index_t ldy, float* out,
        index_t ldo, float alpha, const float* row_scale, bool accumulate, KRange&& krange) {
  static_assert(MaxVectors == 2 || MaxVectors == 4, "bc: column groups of at most 2 or 4 vectors");
  constexpr index_t L = blocking<A>::lanes;
  index_t c0 = 0;
  if constexpr (MaxVectors == 4)
    for (; n - c0 >= 4 * L; c0 += 4 * L) detail::bc_group<A, 4>(m, c0, a, sai, sak, y, ldy, out, ldo, alpha, row_scale, accumulate, krange);
  for (; n - c0 >= 2 * L; c0 += 2 * L) detail::bc_group<A, 2>(m, c0, a, sai, sak, y, ldy, out, ldo, alpha, row_scale, accumulate, krange);
  for (; c0 < n; c0 += L) detail::bc_group<A, 1>(m, c0, a, sai, sak, y, ldy, out, ldo, alpha, row_scale, accumulate, krange);
}

} // namespace panel
} // namespace cpu
} // namespace v0_1
} // namespace membound
