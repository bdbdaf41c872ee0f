// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief A fused, register-tiled product for weights known ahead of time: y (M, N) = W (M, K)
/// x (K, N) [+ y] [+ bias] [then ReLU], with W repacked once (`packed_matrix`) and x, y row-major
/// with any leading strides. It is the 1x1 convolution of vision/'s channel-major activations
/// (M output channels, K input channels, N tokens), where N is small (16..196 columns at batch 1)
/// and the general GEMM entry (`cpu::gemm`, oneDNN's sgemm) repacks W on every call.
///
/// The tile: `packed_tile<B>::mr` rows of W by `nv` SIMD vectors of columns live in registers
/// (AVX-512: 8 x 48, AVX2: 6 x 16; tails run fewer vectors, a one-vector tail two panels at once
/// where they fit); each step over K broadcasts the weights of the panel and multiplies them into
/// the vectors of x. A whole column panel is read where x lies when its rows are not a multiple of
/// 256 bytes apart (they then spread over the L1 sets); a partial panel, or one with such rows, is
/// first copied into a zero-padded contiguous (kc, nv lanes) panel, so tails in N cost no branches
/// inside the loop. (Copying every panel cost 25% at 48 rows of W, where few tiles share a copy:
/// 48 x 128 x 48 hot, 124 -> 162 GFLOP/s on machine B.) At most 4 columns past the last whole
/// vector (N = 49 is 3 vectors and 1 column) run through a column kernel instead: a panel's mr
/// rows in one vector, one FMA per weight step and column, enough panels at once for about 8
/// chains against the FMA latency (8 panels for one column), K block by K block right after the
/// last tile panel's pass over the block, while its weights are in L2; a single column past a last
/// panel of whole vectors (N = 49) rides in that panel's tiles instead. K runs in blocks of
/// `packed_matrix::kc` (128) columns, so the x panel of a block (24 KiB) stays in L1; y carries
/// each output's chain from block to block.
/// The weights lie in the order the tiles read them, and the stream is prefetched
/// `packed_prefetch_bytes` ahead into L2: at batch 1 each weight serves a few columns only and
/// comes from memory (EfficientViT-M5 reads 50 MB of weights per image).
/// Numerics: every output is one FMA chain over k = 0..K-1 in order, started from y (when
/// accumulating) or 0, then + bias, then ReLU: the same bits for any N, any column split and any
/// thread count, and the same bits as the scalar twin (`backend::scalar`, std::fma) on FMA
/// hardware (AVX2, AVX-512; sse4 multiplies and adds, one extra rounding per step).
/// Complexity: 2 M N K flops; packing W is O(M K) once, packing x O(K N) per call; W is read
/// ceil(N / (nv lanes)) times (from L2 after the first), so wide N (batches) is better served by
/// the GEMM entry, whose blocking reuses W. Memory: the packed W ((M rounded up to mr) x K floats
/// and 16 more); a per-thread x panel of kc x nv lanes floats, allocated on a thread's first call
/// and reused. Single-threaded: callers split the columns.
/// bench_vision's `packed_conv1x1_*` rows time it beside the GEMM entry on EfficientViT's shapes.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

// The AVX-512 tile, rows x vectors (a build may set both): 8 x 3 measured 3-6% faster than 12 x 2
// in EfficientViT-M2..M5 at batch 1 (N = 196 and 49 fill three vectors better: 4 x 48 + 4, 48 + 1).
#ifndef MEMBOUND_PACKED_MR
#define MEMBOUND_PACKED_MR 8
#endif
#ifndef MEMBOUND_PACKED_NV
#define MEMBOUND_PACKED_NV 3
#endif
/// The register tile of `packed_gemm<B>`: mr rows of W by nv vectors of lanes columns.
template <class B>
struct packed_tile {
  static constexpr index_t mr = 6, nv = 1, lanes = 8; // scalar: any mr works; 6 x 8 matches AVX2's panels
};
#if !defined(MEMBOUND_NO_XSIMD)
template <class Arch>
struct packed_tile<backend::simd<Arch>> {
  static constexpr index_t lanes = static_cast<index_t>(detail::lanes<Arch>);
  // 32 registers (AVX-512): 24 accumulators, 3 vectors of x, a broadcast. 16 registers (AVX2,
  // SSE): 12 accumulators, 2 vectors of x, 1 broadcast.
  static constexpr index_t mr = detail::is_avx512<Arch> ? MEMBOUND_PACKED_MR : 6, nv = detail::is_avx512<Arch> ? MEMBOUND_PACKED_NV : 2;
};
#endif

#ifndef MEMBOUND_PACKED_KC
#define MEMBOUND_PACKED_KC 128
#endif

/// W (M, K) repacked for `packed_gemm`: K in blocks of `kc` columns; within a block, panels of
/// `mr` rows (the last one zero-padded), each stored k-major (the mr weights of column k
/// consecutive). Blocks, and panels within a block, lie in the order the product reads them, so
/// the weight stream is sequential. O(M K) floats, built once.
class packed_matrix {
public:
  /// Columns of W per block: the x panel of one block (kc x 48 floats, 24 KiB) stays in L1
  /// beside the weights (a build may set MEMBOUND_PACKED_KC; 128 to 2048 measured within noise).
  static constexpr index_t kc = MEMBOUND_PACKED_KC;
  /// Floats allocated past the last panel (read, never used, by the column kernel).
  static constexpr index_t packed_slack = 16;

  packed_matrix() = default;
  /// Packs the row-major w (m, k) with leading stride ldw (>= k) into panels of mr rows.
  /// @throws shape_error for negative extents, mr < 1 or ldw < k.
  packed_matrix(const float* w, index_t m, index_t k, index_t ldw, index_t mr) : m_(m), k_(k), mr_(mr) {
    MEMBOUND_EXPECTS(m >= 0 && k >= 0 && mr >= 1 && ldw >= k, shape_error, "packed_matrix: need m, k >= 0, mr >= 1 and ",
                     "ldw >= k; got m=", m, " k=", k, " mr=", mr, " ldw=", ldw);
    // Zero-filled (padded rows stay 0), plus one vector of slack: the column kernel loads a whole
    // vector at a panel's last step, of which it uses mr lanes.
    data_ = array<float>({panels() * mr * k + packed_slack});
    for (index_t i = 0; i < m; ++i)
      for (index_t c = 0; c < k; ++c) data_.data()[offset(i, c)] = w[i * ldw + c];
  }
  index_t rows() const noexcept { return m_; }
  index_t cols() const noexcept { return k_; }
  index_t mr() const noexcept { return mr_; }
  /// Number of row panels, ceil(M / mr).
  index_t panels() const noexcept { return (m_ + mr_ - 1) / mr_; }
  /// Columns in block b (kc, or fewer in the last block).
  index_t block_cols(index_t b) const noexcept { return std::min(kc, k_ - b * kc); }
  /// Panel p of block b: (block_cols(b), mr) floats; row r is row p mr + r of W, column c is
  /// column b kc + c.
  const float* tile(index_t b, index_t p) const noexcept { return data_.data() + b * kc * panels() * mr_ + p * mr_ * block_cols(b); }
  /// W[i, c] as packed.
  float at(index_t i, index_t c) const noexcept { return data_.data()[offset(i, c)]; }
  /// Bytes held.
  index_t bytes() const noexcept { return m_ == 0 ? 0 : data_.size() * static_cast<index_t>(sizeof(float)); }

private:
  index_t offset(index_t i, index_t c) const noexcept {
    const index_t b = c / kc;
    return b * kc * panels() * mr_ + (i / mr_) * mr_ * block_cols(b) + (c - b * kc) * mr_ + i % mr_;
  }
  index_t m_ = 0, k_ = 0, mr_ = 1;
  array<float> data_;
};

/// W (m, k), leading stride ldw, packed for `packed_gemm<B>`.
template <class B = backend::best_cpu>
packed_matrix pack_weights(const float* w, index_t m, index_t k, index_t ldw) {
  return packed_matrix(w, m, k, ldw, packed_tile<B>::mr);
}

/// What `packed_gemm` adds after the product.
struct packed_epilogue {
  const float* bias = nullptr; ///< M values added per row, or nullptr
  bool relu = false;           ///< max(., 0) last
  bool accumulate = false;     ///< start from y's contents (y += W x) instead of 0
};

namespace detail {

template <int... I, class F>
MEMBOUND_ALWAYS_INLINE void unroll_seq(std::integer_sequence<int, I...>, F&& f) {
  (f(std::integral_constant<int, I>{}), ...);
}
/// f(integral_constant<int, 0>) ... f(integral_constant<int, N-1>), unrolled at compile time.
template <int N, class F>
MEMBOUND_ALWAYS_INLINE void unroll(F&& f) {
  unroll_seq(std::make_integer_sequence<int, N>{}, f);
}

#ifndef MEMBOUND_PACKED_PREFETCH
#define MEMBOUND_PACKED_PREFETCH 4096
#endif
/// How far ahead (bytes) of the tile being computed the weight stream is prefetched into L2
/// (a build may set MEMBOUND_PACKED_PREFETCH; 1 KiB measured 10% slower in EfficientViT-M4 at
/// batch 1, 16 KiB the same as 4 KiB).
inline constexpr index_t packed_prefetch_bytes = MEMBOUND_PACKED_PREFETCH;

/// One register tile: y[0..rows, 0..cols) (leading stride ldy) op= W x xp (k, NV L), W the PP
/// consecutive panels at wp (pstride floats apart, (k, MR) each: PP MR rows), prefetching the
/// weight stream `packed_prefetch_bytes` ahead: at batch 1 each weight is read once per forward
/// pass and comes from memory, not from cache, and the panels lie in the order the tiles read
/// them.
/// With TAIL (one panel, MR <= lanes): also the single column xt[c ldx] (c < k) into yt[r ldy],
/// the panel's rows in one more vector that takes each weight step's MR weights as a vector, the
/// column kernel's arithmetic fused into the tile's K loop while the weights are in L1.
template <class A, int MR, int NV, int PP = 1, bool TAIL = false>
MEMBOUND_ALWAYS_INLINE void packed_tile_kernel(const float* MEMBOUND_RESTRICT wp, index_t pstride,
                                               const float* MEMBOUND_RESTRICT xp, index_t k, index_t ldxp, float* y,
                                               index_t ldy, index_t rows, index_t cols, bool load_y, const float* bias,
                                               bool relu, const float* xt = nullptr, index_t ldxt = 0,
                                               float* yt = nullptr) {
  static_assert(!TAIL || (PP == 1 && MR <= static_cast<int>(lanes<A>)), "packed_tile_kernel: a tail column needs one panel in one vector");
  constexpr index_t L = static_cast<index_t>(lanes<A>);
  constexpr int R = PP * MR;
  fbatch<A> acc[R][NV];
  [[maybe_unused]] alignas(64) float tbuf[L] = {};
  [[maybe_unused]] fbatch<A> tacc;
  if constexpr (TAIL) {
    if (load_y)
      for (index_t r = 0; r < rows; ++r) tbuf[r] = yt[r * ldy];
    tacc = fbatch<A>::load_aligned(tbuf);
  }
  const auto col_n = [&](int v) { return std::clamp<index_t>(cols - v * L, 0, L); };
  unroll<R>([&](auto r) MEMBOUND_INLINE_LAMBDA {
    unroll<NV>([&](auto v) MEMBOUND_INLINE_LAMBDA {
      const index_t n = col_n(v);
      if (load_y && r < rows && n > 0)
        acc[r][v] = n == L ? loadu<A>(y + r * ldy + v * L) : load_partial<A>(y + r * ldy + v * L, static_cast<std::size_t>(n), 0.f);
      else
        acc[r][v] = fbatch<A>(0.f);
    });
  });
  const char* pf = reinterpret_cast<const char*>(wp) + packed_prefetch_bytes;
  for (index_t c = 0; c < k; ++c) {
    unroll<PP>([&](auto q) MEMBOUND_INLINE_LAMBDA {
      prefetch<2>(pf + (q * pstride + c * MR) * static_cast<index_t>(sizeof(float)));
    });
    fbatch<A> xv[NV];
    unroll<NV>([&](auto v) MEMBOUND_INLINE_LAMBDA { xv[v] = loadu<A>(xp + c * ldxp + v * L); });
    unroll<R>([&](auto r) MEMBOUND_INLINE_LAMBDA {
      const fbatch<A> w(wp[(r / MR) * pstride + c * MR + r % MR]);
      unroll<NV>([&](auto v) MEMBOUND_INLINE_LAMBDA { acc[r][v] = fma<A>(w, xv[v], acc[r][v]); });
    });
    if constexpr (TAIL) tacc = fma<A>(loadu<A>(wp + c * MR), fbatch<A>(xt[c * ldxt]), tacc);
  }
  if constexpr (TAIL) {
    tacc.store_aligned(tbuf);
    for (index_t r = 0; r < rows; ++r) {
      float o = tbuf[r];
      if (bias) o += bias[r];
      if (relu) o = o > 0.f ? o : 0.f; // as vmaxps(o, 0): NaN -> 0
      yt[r * ldy] = o;
    }
  }
  unroll<R>([&](auto r) MEMBOUND_INLINE_LAMBDA {
    if (r >= rows) return;
    const fbatch<A> b(bias ? bias[r] : 0.f);
    unroll<NV>([&](auto v) MEMBOUND_INLINE_LAMBDA {
      const index_t n = col_n(v);
      if (n == 0) return;
      fbatch<A> o = acc[r][v];
      if (bias) o = o + b;
      if (relu) o = xsimd::max(o, fbatch<A>(0.f));
      if (n == L) storeu<A>(y + r * ldy + v * L, o);
      else store_partial<A>(y + r * ldy + v * L, static_cast<std::size_t>(n), o);
    });
  });
}

/// At most this many columns left after the last whole vector run through the column kernel
/// (one FMA per weight step and column) instead of a zero-padded vector tile (mr FMAs per step):
/// N = 49 (a 7 x 7 map) is 3 vectors and 1 column, N = 196 is 12 vectors and 4 columns.
inline constexpr index_t packed_column_tail = 4;

/// Panels of W the column kernel runs at once for TC columns: its chains are one per (panel,
/// column), each one FMA per step, so it takes panels until about 8 chains cover the FMA latency
/// (a single column with 2 panels ran at 11 GFLOP/s on AVX2: M = 576, K = 288, N = 49 took 205 us
/// against 176 us for N = 48).
template <class A, int TC>
inline constexpr int packed_column_panels = std::max(is_avx512<A> ? 4 : 2, 8 / TC);

/// K block b of TC columns j of the PG panels p0.. of W: y[r, j] op= sum_{k in block b} W[r, k]
/// x[k, j] for the panels' rows (`last_rows` in the last one, which may be partial), x at the
/// block's first row, each panel's MR rows in one vector (MR <= lanes; the lanes past MR read the
/// next step's weights and are dropped). y carries the chain from block to block (load_y), as
/// for the tiles: the same FMA chain per output as the tiles and the scalar twin.
template <class A, int MR, int PG, int TC>
MEMBOUND_ALWAYS_INLINE void packed_column_kernel(const packed_matrix& w, index_t b, index_t p0, const float* x, index_t ldx,
                                                 float* y, index_t ldy, index_t last_rows, bool load_y, const float* bias,
                                                 bool relu) {
  static_assert(MR <= static_cast<int>(lanes<A>), "packed_column_kernel: the panel's rows must fit one vector");
  constexpr index_t L = static_cast<index_t>(lanes<A>);
  const auto rows_of = [&](int g) { return g + 1 == PG ? last_rows : index_t{MR}; };
  alignas(64) float buf[PG][TC][L] = {};
  if (load_y)
    for (int g = 0; g < PG; ++g)
      for (index_t r = 0; r < rows_of(g); ++r)
        for (int c = 0; c < TC; ++c) buf[g][c][r] = y[(g * MR + r) * ldy + c];
  fbatch<A> acc[PG][TC];
  unroll<PG>([&](auto g) MEMBOUND_INLINE_LAMBDA {
    unroll<TC>([&](auto c) MEMBOUND_INLINE_LAMBDA { acc[g][c] = fbatch<A>::load_aligned(buf[g][c]); });
  });
  const index_t kb = w.cols() == 0 ? 0 : w.block_cols(b);
  if (kb > 0) {
    const float* wp[PG];
    unroll<PG>([&](auto g) MEMBOUND_INLINE_LAMBDA { wp[g] = w.tile(b, p0 + g); });
    const char* pf = reinterpret_cast<const char*>(wp[0]) + packed_prefetch_bytes;
    for (index_t i = 0; i < kb; ++i) {
      prefetch<2>(pf + i * PG * MR * static_cast<index_t>(sizeof(float)));
      fbatch<A> xv[TC];
      unroll<TC>([&](auto c) MEMBOUND_INLINE_LAMBDA { xv[c] = fbatch<A>(x[i * ldx + c]); });
      unroll<PG>([&](auto g) MEMBOUND_INLINE_LAMBDA {
        const fbatch<A> wv = loadu<A>(wp[g] + i * MR);
        unroll<TC>([&](auto c) MEMBOUND_INLINE_LAMBDA { acc[g][c] = fma<A>(wv, xv[c], acc[g][c]); });
      });
    }
  }
  unroll<PG>([&](auto g) MEMBOUND_INLINE_LAMBDA {
    unroll<TC>([&](auto c) MEMBOUND_INLINE_LAMBDA { acc[g][c].store_aligned(buf[g][c]); });
  });
  for (int g = 0; g < PG; ++g)
    for (index_t r = 0; r < rows_of(g); ++r)
      for (int c = 0; c < TC; ++c) {
        float o = buf[g][c][r];
        if (bias) o += bias[g * MR + r];
        if (relu) o = o > 0.f ? o : 0.f; // as vmaxps(o, 0): NaN -> 0
        y[(g * MR + r) * ldy + c] = o;
      }
}

/// K block b of the column kernel for TC columns over every panel: groups of
/// packed_column_panels<A, TC>, then pairs, then single panels.
template <class A, int MR, int TC>
void packed_columns_of(const packed_matrix& w, index_t b, const float* x, index_t ldx, float* y, index_t ldy, bool load_y,
                       const float* bias, bool relu) {
  constexpr int PG = packed_column_panels<A, TC>;
  const index_t m = w.rows(), panels = w.panels();
  const auto run = [&](auto pg, index_t p) {
    constexpr int G = decltype(pg)::value;
    const index_t r0 = p * MR;
    packed_column_kernel<A, MR, G, TC>(w, b, p, x, ldx, y + r0 * ldy, ldy, std::min<index_t>(MR, m - (p + G - 1) * MR),
                                       load_y, bias ? bias + r0 : nullptr, relu);
  };
  index_t p = 0;
  for (; p + PG <= panels; p += PG) run(std::integral_constant<int, PG>{}, p);
  if constexpr (PG > 2)
    for (; p + 2 <= panels; p += 2) run(std::integral_constant<int, 2>{}, p);
  for (; p < panels; ++p) run(std::integral_constant<int, 1>{}, p);
}

/// K block b of the column kernel over every panel for `cols` (1..packed_column_tail) columns.
template <class A, int MR>
void packed_columns(const packed_matrix& w, index_t b, const float* x, index_t ldx, float* y, index_t ldy, index_t cols,
                    bool load_y, const float* bias, bool relu) {
  switch (cols) {
  case 1: packed_columns_of<A, MR, 1>(w, b, x, ldx, y, ldy, load_y, bias, relu); break;
  case 2: packed_columns_of<A, MR, 2>(w, b, x, ldx, y, ldy, load_y, bias, relu); break;
  case 3: packed_columns_of<A, MR, 3>(w, b, x, ldx, y, ldy, load_y, bias, relu); break;
  default: packed_columns_of<A, MR, 4>(w, b, x, ldx, y, ldy, load_y, bias, relu); break;
  }
}

/// The per-thread x panel of packed_gemm: at least `floats` floats, grown on demand and reused.
inline float* packed_x_panel(index_t floats) {
  thread_local array<float> buf;
  if (buf.size() < floats) buf = array<float>({floats}, uninitialized); // (floats): flat scratch
  return buf.data();
}

template <class A>
void packed_gemm_simd(const packed_matrix& w, const float* x, index_t ldx, float* y, index_t ldy, index_t n,
                      const packed_epilogue& epi) {
  constexpr index_t L = static_cast<index_t>(lanes<A>);
  constexpr int MR = static_cast<int>(packed_tile<backend::simd<A>>::mr), NV = static_cast<int>(packed_tile<backend::simd<A>>::nv);
  constexpr index_t NR = NV * L;
  const index_t m = w.rows(), k = w.cols(), panels = (m + MR - 1) / MR;
  const index_t blocks = (k + packed_matrix::kc - 1) / packed_matrix::kc;
  float* xp = packed_x_panel(packed_matrix::kc * NR);
  // Whole vectors through the tiles (the last one zero-padded unless the column kernel takes the
  // few columns past it).
  constexpr bool columns = MR <= L; // the column kernel holds a panel's rows in one vector (not on sse4)
  const index_t whole = n / L * L, rest = n - whole;
  const index_t tiled = columns && rest > 0 && rest <= packed_column_tail ? whole : n;
  // The columns past `tiled` run block by block right after the last tile panel's pass over the
  // same K block, while its weights are still in L2 (not in a pass of their own over all of W).
  const auto column_tail = [&](index_t b, bool load_y, const float* bias, bool relu) {
    if constexpr (columns)
      packed_columns<A, MR>(w, b, x + b * packed_matrix::kc * ldx + tiled, ldx, y + tiled, ldy, n - tiled, load_y, bias, relu);
  };
  // A single column past a last panel of NV whole vectors (N = 49 on AVX2 and AVX-512, 17) rides
  // in that panel's tiles instead, one more chain per tile, with the weights in L1.
  const index_t last_panel = tiled > 0 ? (tiled - 1) / NR * NR : 0;
  const bool fused_tail = columns && n - tiled == 1 && tiled - last_panel == NR;
  for (index_t j0 = 0; j0 < tiled; j0 += NR) {
    const index_t nc = std::min(NR, tiled - j0);
    const index_t vecs = (nc + L - 1) / L; // a tail panel runs only the vectors it needs
    const index_t width = vecs * L;
    for (index_t b = 0; b < std::max<index_t>(blocks, 1); ++b) {
      const index_t k0 = b * packed_matrix::kc, kb = blocks == 0 ? 0 : w.block_cols(b);
      // A whole panel whose rows are not 256-byte multiples apart is read in place (its kb x
      // width floats spread over every L1 set, so the tiles of all panels find it there); a
      // partial panel, or rows that would crowd a few L1 sets, is copied first.
      const bool direct = nc == width && ldx % 64 != 0;
      const float* xs = direct ? x + k0 * ldx + j0 : xp;
      const index_t ldxs = direct ? ldx : width;
      for (index_t c = 0; c < (direct ? 0 : kb); ++c) { // the x panel (kb, width), zero-padded columns
        const float* src = x + (k0 + c) * ldx + j0;
        float* dst = xp + c * width;
        std::memcpy(dst, src, static_cast<std::size_t>(nc) * sizeof(float));
        if (nc < width) std::memset(dst + nc, 0, static_cast<std::size_t>(width - nc) * sizeof(float));
      }
      // The chain of each output runs on through the blocks: y holds it between them.
      const bool load_y = b > 0 || epi.accumulate, last = b + 1 >= blocks;
      const float* bias = last ? epi.bias : nullptr;
      const bool relu = last && epi.relu;
      // A one-vector tail runs two panels at a time where they fit the registers (twice the
      // chains against the FMA latency, one x load for both).
      constexpr int pair = MR <= 8 ? 2 : 1;
      for (index_t p = 0; p < panels;) {
        const int pp = vecs == 1 && p + pair <= panels ? pair : 1;
        const index_t r0 = p * MR, rows = std::min<index_t>(pp * MR, m - r0);
        const float* wp = blocks == 0 ? nullptr : w.tile(b, p);
        float* yt = y + r0 * ldy + j0;
        const float* bp = bias ? bias + r0 : nullptr;
        if (pp == 2)
          packed_tile_kernel<A, MR, 1, pair>(wp, MR * kb, xs, kb, ldxs, yt, ldy, rows, nc, load_y, bp, relu);
        else if (vecs == 1)
          packed_tile_kernel<A, MR, 1>(wp, 0, xs, kb, ldxs, yt, ldy, rows, nc, load_y, bp, relu);
        else if (vecs == NV && fused_tail && j0 == last_panel) {
          if constexpr (columns)
            packed_tile_kernel<A, MR, NV, 1, true>(wp, 0, xs, kb, ldxs, yt, ldy, rows, nc, load_y, bp, relu,
                                                   x + k0 * ldx + tiled, ldx, y + r0 * ldy + tiled);
        } else if (vecs == NV)
          packed_tile_kernel<A, MR, NV>(wp, 0, xs, kb, ldxs, yt, ldy, rows, nc, load_y, bp, relu);
        else // two vectors of a three-vector tile
          packed_tile_kernel<A, MR, 2>(wp, 0, xs, kb, ldxs, yt, ldy, rows, nc, load_y, bp, relu);
        p += pp;
      }
      if (tiled < n && !fused_tail && j0 + NR >= tiled) column_tail(b, load_y, bias, relu);
    }
  }
  if (tiled == 0 && n > 0) // fewer columns than one vector: the column kernel alone
    for (index_t b = 0; b < std::max<index_t>(blocks, 1); ++b) {
      const bool last = b + 1 >= blocks;
      column_tail(b, b > 0 || epi.accumulate, last ? epi.bias : nullptr, last && epi.relu);
    }
}

} // namespace detail

/// y (M, N) = W x [+ y] [+ bias] [ReLU] with W packed by `pack_weights<B>` (rows() = M,
/// cols() = K), x (K, N) and y (M, N) row-major with leading strides ldx >= N and ldy >= N; y must
/// not overlap x. K == 0 gives y = [y] + bias. See the file comment for the tile and the numerics.
/// @throws shape_error when W was packed for another tile than B's, or for bad strides.
template <class B = backend::best_cpu>
void packed_gemm(const packed_matrix& w, const float* x, index_t ldx, float* y, index_t ldy, index_t n,
                 const packed_epilogue& epi = {}) {
  detail::check_cpu_backend<B>();
  constexpr bool any_tile = std::is_same_v<B, backend::scalar>; // the twin reads any panel height
  MEMBOUND_EXPECTS(w.mr() == packed_tile<B>::mr || any_tile, shape_error,
                   "packed_gemm<", B::name, ">: the weights were packed in panels of ", w.mr(), " rows, this backend's tile has ",
                   packed_tile<B>::mr, " (pack them with pack_weights<", B::name, ">)");
  MEMBOUND_EXPECTS(n >= 0 && ldx >= n && ldy >= n, shape_error, "packed_gemm: need n >= 0, ldx >= n and ldy >= n; got n=",
                   n, " ldx=", ldx, " ldy=", ldy);
  if (n == 0 || w.rows() == 0) return;
  if constexpr (std::is_same_v<B, backend::scalar>) {
    const index_t m = w.rows(), k = w.cols();
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < n; ++j) {
        float acc = epi.accumulate ? y[i * ldy + j] : 0.f;
        for (index_t c = 0; c < k; ++c) acc = std::fma(w.at(i, c), x[c * ldx + j], acc);
        if (epi.bias) acc += epi.bias[i];
        if (epi.relu) acc = acc > 0.f ? acc : 0.f; // as vmaxps(acc, 0): NaN -> 0
        y[i * ldy + j] = acc;
      }
    }
  } else {
    detail::packed_gemm_simd<typename B::arch>(w, x, ldx, y, ldy, n, epi);
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
