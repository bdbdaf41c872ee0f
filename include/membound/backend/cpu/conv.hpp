// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Direct 2-D convolution kernels over one image in CHW layout: depthwise k x k (one
/// filter per channel) and dense k x k (every output channel sees every input channel), stride 1
/// or 2, zero padding, the bias added in the same pass. `nn::conv2d` builds on them.
///
/// Methods. Portable SIMD path (any xsimd architecture): each input plane is first copied into a
/// zero-bordered scratch plane split by column phase (stride 2 keeps even and odd padded columns
/// apart), so every filter tap is one unaligned vector load with no bounds test; output rows are
/// computed in register blocks of vectors along x (the last block of a row overlaps the previous
/// one instead of running a scalar tail), several rows (depthwise) or 4 output channels (dense)
/// at a time. AVX-512 paths: depthwise at stride 1 with odd k >= 3 on rows of at least 12
/// outputs runs plane by plane with rolling rows (each input row is loaded once per tap column
/// and feeds the k output rows that read it, k x up to 4 vectors of accumulators in registers;
/// the next plane is prefetched meanwhile and outputs of 8 MiB or more leave from an L1 staging
/// buffer with streaming stores as rows complete); other stride-1 cases run groups of 16
/// channels in a channel-interleaved layout (16 x 16 transposes in and out; aligned loads; each
/// loaded input vector feeds k taps from registers); dense with C_out a multiple of 16
/// vectorises over output channels (packed weights, one broadcast input per position and tap, a
/// window of the k padded input rows per output row).
/// Costs: 2 k^2 flops per output (depthwise), 2 C_in k^2 per output (dense); scratch from
/// `conv_scratch_floats` / `depthwise_scratch_floats`, supplied by the caller (no allocation).
/// Every path sums in the same order per output (bias, then taps in (c_in, k_y, k_x) order) with
/// fused multiply-adds, so on backends with FMA (AVX2 + FMA, AVX-512) the SIMD results equal the
/// scalar twin's bit for bit. SSE4.2 has no FMA instruction: there each tap's product is rounded
/// before the add (about one extra rounding per tap against the twin's std::fma).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "membound/backend/cpu/simd.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

/// The spatial geometry of a convolution: input h x w, square kernel k, stride, zero padding;
/// output ho x wo with ho = (h + 2 pad - k) / stride + 1.
struct conv_geometry {
  index_t h = 0, w = 0, k = 1, stride = 1, pad = 0;
  index_t out_h() const noexcept { return (h + 2 * pad - k) / stride + 1; }
  index_t out_w() const noexcept { return (w + 2 * pad - k) / stride + 1; }
  /// Validates k in 1..7, stride 1 or 2, 0 <= pad < k and an input at least the kernel's size.
  void check(const char* fn) const {
    MEMBOUND_EXPECTS(k >= 1 && k <= 7, config_error, fn, ": kernel ", k, ", supported 1..7");
    MEMBOUND_EXPECTS(stride == 1 || stride == 2, config_error, fn, ": stride ", stride, ", supported 1 or 2");
    MEMBOUND_EXPECTS(pad >= 0 && pad < k, config_error, fn, ": padding ", pad, " with kernel ", k, ", supported 0..k-1");
    MEMBOUND_EXPECTS(h >= 1 && w >= 1 && h + 2 * pad >= k && w + 2 * pad >= k, shape_error, fn, ": input ", h, "x", w,
                     " is smaller than the kernel ", k, " with padding ", pad);
  }
};

namespace detail {

/// Layout of the phase-split, zero-bordered copy of one input plane for vectors of `lanes` floats.
struct padded_plane {
  index_t rows = 0, cols = 0, phases = 1; ///< per phase: rows x cols floats
  index_t wx = 0;                         ///< output columns computed per row (>= wo, >= lanes)
  padded_plane(const conv_geometry& g, index_t lanes) {
    const index_t ho = g.out_h(), wo = g.out_w();
    phases = g.stride;
    rows = (ho - 1) * g.stride + g.k;
    wx = std::max(wo, lanes);
    // Whole vectors per row plus one more, so that a block may load the vector after it (the
    // AVX-512 stride-1 kernel shifts taps across two aligned vectors).
    cols = ((wx + (g.k - 1) / g.stride + lanes - 1) / lanes + 1) * lanes;
  }
  index_t floats() const noexcept { return phases * rows * cols; }
};

/// One padded row of phase `ph`: out[j] = row[s*j + ph - pad], or 0 outside the input row (or
/// everywhere when row is null), for j < cols.
inline void fill_phase_row(const float* MEMBOUND_RESTRICT row, const conv_geometry& g, index_t ph, index_t cols,
                           float* MEMBOUND_RESTRICT out) noexcept {
  if (row == nullptr) {
    std::memset(out, 0, static_cast<std::size_t>(cols) * sizeof(float));
    return;
  }
  const index_t s = g.stride;
  // Columns j with input column ix = s*j + ph - pad inside [0, w).
  const index_t lo = std::min(cols, std::max<index_t>(0, (g.pad - ph + s - 1) / s));
  const index_t last = g.w - 1 + g.pad - ph;
  const index_t hi = last < 0 ? lo : std::max(lo, std::min(cols, last / s + 1));
  std::fill(out, out + lo, 0.0f);
  if (s == 1) std::memcpy(out + lo, row + (lo - g.pad), static_cast<std::size_t>(hi - lo) * sizeof(float));
  else
    for (index_t j = lo; j < hi; ++j) out[j] = row[2 * j + ph - g.pad];
  std::fill(out + hi, out + cols, 0.0f);
}

/// Copies plane x (h,w) into the phase-split padded layout at `dst` (phases * rows * cols floats):
/// padded column q = stride * j + phase holds x[row - pad][q - pad], or 0 outside the input.
inline void fill_padded(const float* MEMBOUND_RESTRICT x, const conv_geometry& g, const padded_plane& p,
                        float* MEMBOUND_RESTRICT dst) noexcept {
  for (index_t r = 0; r < p.rows; ++r) {
    const index_t iy = r - g.pad;
    const float* row = iy >= 0 && iy < g.h ? x + iy * g.w : nullptr;
    for (index_t ph = 0; ph < g.stride; ++ph) fill_phase_row(row, g, ph, p.cols, dst + ph * p.rows * p.cols + r * p.cols);
  }
}

/// Splits an output row of wx >= lanes columns into groups of contiguous vector blocks: calls
/// f(x0, nb) with nb in 1..G (G <= 4) for blocks at x0, x0 + L, ..., x0 + (nb-1) L. The last block
/// ends at wx exactly; when L does not divide wx it overlaps its neighbour (the overlap is
/// recomputed with the same values). Contiguous blocks keep the addresses of one group a constant
/// apart.
template <index_t G = 4, class F>
MEMBOUND_ALWAYS_INLINE void for_row_groups(index_t wx, index_t lanes, F&& f) {
  const index_t nb = (wx + lanes - 1) / lanes; // blocks in the row
  index_t x0 = 0, left = nb;
  while (left > 0) {
    if (left <= G && x0 + left * lanes > wx) { // the tail group would pass wx
      if (left == 1) {
        f(wx - lanes, 1);
        return;
      }
      f(x0, left - 1); // blocks before the last one fit
      f(wx - lanes, 1);
      return;
    }
    const index_t g = std::min<index_t>(G, left);
    f(x0, g);
    x0 += g * lanes;
    left -= g;
  }
}

/// Offsets of the k*k taps inside a padded plane, relative to (row s*oy, column ox):
/// tap (ky,kx) reads phase kx % s, row ky, column kx / s.
inline void tap_offsets(const padded_plane& p, index_t k, index_t s, index_t* off) noexcept {
  for (index_t ky = 0; ky < k; ++ky)
    for (index_t kx = 0; kx < k; ++kx) off[ky * k + kx] = (kx % s) * p.rows * p.cols + ky * p.cols + kx / s;
}

/// NR consecutive output rows of a depthwise plane, NB vector blocks each at columns
/// starts[0..NB): NR*NB independent accumulators hide the FMA latency, one broadcast weight feeds
/// NR*NB FMAs. `row` is the padded row of the first output row; `rstep` floats between rows.
template <class A, int NR, int NB>
MEMBOUND_ALWAYS_INLINE void depthwise_blocks(const float* row, index_t rstep, const index_t* off, index_t taps,
                                             const float* wk, float bias, index_t x0, float* out,
                                             index_t out_stride) noexcept {
  constexpr index_t L = static_cast<index_t>(lanes<A>);
  using V = fbatch<A>;
  V acc[NR][NB];
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = V(bias);
  for (index_t t = 0; t < taps; ++t) {
    const V wv(wk[t]);
    const float* src = row + off[t] + x0;
    for (int r = 0; r < NR; ++r)
      for (int b = 0; b < NB; ++b) acc[r][b] = fma<A>(wv, loadu<A>(src + r * rstep + b * L), acc[r][b]);
  }
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) storeu<A>(out + r * out_stride + x0 + b * L, acc[r][b]);
}

#if MEMBOUND_HAS_AVX512
/// acc += sum_{kx < K} w[kx] * (the 16 floats starting kx into the pair v0:v1), kx ascending.
template <int K, int... KX>
MEMBOUND_ALWAYS_INLINE __m512 shifted_taps(__m512 acc, const __m512* w, __m512 v0, __m512 v1,
                                           std::integer_sequence<int, KX...>) noexcept {
  [[maybe_unused]] const __m512i lo = _mm512_castps_si512(v0), hi = _mm512_castps_si512(v1);
  acc = _mm512_fmadd_ps(w[0], v0, acc);
  ((acc = _mm512_fmadd_ps(w[KX + 1], _mm512_castsi512_ps(_mm512_alignr_epi32(hi, lo, KX + 1)), acc)), ...);
  return acc;
}

/// The stride-1 depthwise block on AVX-512 for a K x K filter: per filter row, two loads cover a
/// block and its successor and the K taps are the K shifts of that pair (valignd), so aligned
/// blocks never load across a cache line. Same summation order as depthwise_blocks.
template <int K, int NR, int NB>
MEMBOUND_ALWAYS_INLINE void depthwise_blocks_s1_avx512(const float* row, index_t rstep, const float* wk, float bias,
                                                       index_t x0, float* out, index_t out_stride) noexcept {
  __m512 acc[NR][NB];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_set1_ps(bias);
  for (int ky = 0; ky < K; ++ky) {
    __m512 w[K];
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) w[kx] = _mm512_set1_ps(wk[ky * K + kx]);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const float* src = row + (r + ky) * rstep + x0;
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b)
        acc[r][b] = shifted_taps<K>(acc[r][b], w, _mm512_loadu_ps(src + b * 16), _mm512_loadu_ps(src + b * 16 + 16),
                                    std::make_integer_sequence<int, K - 1>{});
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) _mm512_storeu_ps(out + r * out_stride + x0 + b * 16, acc[r][b]);
}

template <int K, int NR>
void depthwise_rows_s1_avx512(const float* row, index_t rstep, const float* wk, float bias, index_t wx, float* out,
                              index_t out_stride) noexcept {
  for_row_groups(wx, 16, [&](index_t x0, index_t nb) MEMBOUND_INLINE_LAMBDA {
    switch (nb) {
    case 4: depthwise_blocks_s1_avx512<K, NR, 4>(row, rstep, wk, bias, x0, out, out_stride); break;
    case 3: depthwise_blocks_s1_avx512<K, NR, 3>(row, rstep, wk, bias, x0, out, out_stride); break;
    case 2: depthwise_blocks_s1_avx512<K, NR, 2>(row, rstep, wk, bias, x0, out, out_stride); break;
    default: depthwise_blocks_s1_avx512<K, NR, 1>(row, rstep, wk, bias, x0, out, out_stride); break;
    }
  });
}

/// Rows of a stride-1 plane with NR rows per pass, dispatched on the kernel size.
template <int NR>
void depthwise_s1_avx512(index_t k, const float* row, index_t rstep, const float* wk, float bias, index_t wx,
                         float* out, index_t out_stride) noexcept {
  switch (k) {
  case 1: depthwise_rows_s1_avx512<1, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  case 2: depthwise_rows_s1_avx512<2, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  case 3: depthwise_rows_s1_avx512<3, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  case 4: depthwise_rows_s1_avx512<4, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  case 5: depthwise_rows_s1_avx512<5, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  case 6: depthwise_rows_s1_avx512<6, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  default: depthwise_rows_s1_avx512<7, NR>(row, rstep, wk, bias, wx, out, out_stride); break;
  }
}
#endif

template <class A, int NR>
MEMBOUND_ALWAYS_INLINE void depthwise_rows(const float* row, index_t rstep, const index_t* off, index_t k, index_t s,
                                           const float* wk, float bias, index_t wx, float* out,
                                           index_t out_stride) noexcept {
  const index_t taps = k * k;
  for_row_groups(wx, static_cast<index_t>(lanes<A>), [&](index_t x0, index_t nb) MEMBOUND_INLINE_LAMBDA {
    (void)s;
    switch (nb) {
    case 4: depthwise_blocks<A, NR, 4>(row, rstep, off, taps, wk, bias, x0, out, out_stride); break;
    case 3: depthwise_blocks<A, NR, 3>(row, rstep, off, taps, wk, bias, x0, out, out_stride); break;
    case 2: depthwise_blocks<A, NR, 2>(row, rstep, off, taps, wk, bias, x0, out, out_stride); break;
    default: depthwise_blocks<A, NR, 1>(row, rstep, off, taps, wk, bias, x0, out, out_stride); break;
    }
  });
}

/// One output row of the dense kernel for CB output channels and NB vector blocks; `row` points
/// at input channel 0's padded row s*oy, `w` at the first output channel's filters (stride
/// `wstride` between output channels).
template <class A, int CB, int NB>
MEMBOUND_ALWAYS_INLINE void dense_blocks(const float* row, index_t plane_floats, index_t cin, const index_t* off,
                                         index_t taps, const float* w, index_t wstride, const float* bias,
                                         index_t x0, float* out, index_t out_stride) noexcept {
  using V = fbatch<A>;
  constexpr index_t L = static_cast<index_t>(lanes<A>);
  V acc[CB][NB];
#pragma GCC unroll 4
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) acc[c][b] = V(bias != nullptr ? bias[c] : 0.0f);
  for (index_t ci = 0; ci < cin; ++ci) {
    const float* rc = row + ci * plane_floats;
    const float* wc = w + ci * taps;
    for (index_t t = 0; t < taps; ++t) {
      const float* src = rc + off[t] + x0;
      V xv[NB];
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) xv[b] = loadu<A>(src + b * L);
#pragma GCC unroll 4
      for (int c = 0; c < CB; ++c) {
        const V wv(wc[c * wstride + t]);
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) acc[c][b] = fma<A>(wv, xv[b], acc[c][b]);
      }
    }
  }
#pragma GCC unroll 4
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) storeu<A>(out + c * out_stride + x0 + b * L, acc[c][b]);
}

template <class A, int CB>
MEMBOUND_ALWAYS_INLINE void dense_row(const float* row, const padded_plane& p, index_t cin, const index_t* off,
                                      index_t taps, const float* w, index_t wstride, const float* bias, float* out,
                                      index_t out_stride) noexcept {
  const index_t pf = p.floats();
  // CB x 4 accumulators, 4 inputs and a weight fill AVX-512's 32 registers; with 16 (AVX2, SSE)
  // groups of 3 blocks keep CB = 4 from spilling (3 -> 16 channels at stride 2, machine D:
  // 44 -> 60 GFLOP/s).
  for_row_groups<is_avx512<A> ? 4 : 3>(p.wx, static_cast<index_t>(lanes<A>), [&](index_t x0, index_t nb) MEMBOUND_INLINE_LAMBDA {
    switch (nb) {
    case 4: dense_blocks<A, CB, 4>(row, pf, cin, off, taps, w, wstride, bias, x0, out, out_stride); break;
    case 3: dense_blocks<A, CB, 3>(row, pf, cin, off, taps, w, wstride, bias, x0, out, out_stride); break;
    case 2: dense_blocks<A, CB, 2>(row, pf, cin, off, taps, w, wstride, bias, x0, out, out_stride); break;
    default: dense_blocks<A, CB, 1>(row, pf, cin, off, taps, w, wstride, bias, x0, out, out_stride); break;
    }
  });
}

/// Row stride (floats) of the zero-bordered plane copies the rolling-row kernel reads: whole vectors
/// of output columns plus the k - 1 columns the taps reach past them, rounded up to whole 64-byte
/// lines (so a row's line boundaries sit at the same columns in every row).
inline index_t rolling_stride(const conv_geometry& g) noexcept {
  return ((g.out_w() + 15) / 16 * 16 + g.k - 1 + 15) / 16 * 16;
}
/// Floats of scratch the rolling-row kernel uses: alignment, the plane copy, an output plane.
inline index_t rolling_scratch_floats(const conv_geometry& g) noexcept {
  return 16 + g.h * rolling_stride(g) + g.out_h() * g.out_w();
}

template <class B>
constexpr index_t conv_lanes() noexcept {
  if constexpr (std::is_same_v<B, backend::scalar>) return 1;
  else return static_cast<index_t>(lanes<typename B::arch>);
}

} // namespace detail

/// Floats of scratch that `depthwise_conv2d<B>` and `conv2d_direct<B>` need for `channels` input
/// planes (depthwise needs one plane's worth: pass channels = 1) and `out_channels` output
/// channels (conv2d_direct; 0 for depthwise).
template <class B = backend::best_cpu>
index_t conv_scratch_floats(const conv_geometry& g, index_t channels, index_t out_channels = 0) {
  const detail::padded_plane p(g, detail::conv_lanes<B>());
  const index_t window = channels * g.stride * g.k * (g.out_w() + (g.k - 1) / g.stride); // dense16 row window
  const index_t packed = out_channels * channels * g.k * g.k + g.out_w() * out_channels + 16 * 4 + window;
  return channels * p.floats() + std::max(p.wx * 4, packed); // planes + row buffers / packed weights
}

#if MEMBOUND_HAS_AVX512
namespace detail {

/// In-register transpose of a 16 x 16 float block (r[i] = row i on entry, column i on exit).
MEMBOUND_ALWAYS_INLINE void transpose16(__m512 (&r)[16]) noexcept {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

/// Channel-interleaved padded input of 16 planes, rows [r0, r1): element (row, col, c) at
/// (row * cols + col) * 16 + c.
inline void fill_interleaved(const float* x, index_t plane_stride, const conv_geometry& g, index_t r0, index_t r1,
                             index_t cols, float* dst) noexcept {
  const __m512 zero = _mm512_setzero_ps();
  for (index_t r = r0; r < r1; ++r) {
    float* out = dst + r * cols * 16;
    const index_t iy = r - g.pad;
    if (iy < 0 || iy >= g.h) {
      for (index_t c = 0; c < cols; ++c) _mm512_storeu_ps(out + c * 16, zero);
      continue;
    }
    for (index_t c = 0; c < g.pad; ++c) _mm512_storeu_ps(out + c * 16, zero);
    for (index_t c = g.pad + g.w; c < cols; ++c) _mm512_storeu_ps(out + c * 16, zero);
    for (index_t ix = 0; ix < g.w; ix += 16) {
      const index_t n = std::min<index_t>(16, g.w - ix);
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
      __m512 v[16];
      for (int ch = 0; ch < 16; ++ch) v[ch] = _mm512_maskz_loadu_ps(m, x + ch * plane_stride + iy * g.w + ix);
      transpose16(v);
      for (index_t j = 0; j < n; ++j) _mm512_storeu_ps(out + (g.pad + ix + j) * 16, v[j]);
    }
  }
}

/// One output row of 16 interleaved channels: NP positions from ox0, taps in (ky, kx) order.
template <int K, int NP>
MEMBOUND_ALWAYS_INLINE void depthwise16_positions(const float* in, index_t cols, const float* w16, __m512 bias,
                                                  index_t ox0, float* out) noexcept {
  __m512 acc[NP];
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) acc[j] = bias;
  for (int ky = 0; ky < K; ++ky) {
    const float* row = in + (ky * cols + ox0) * 16;
    __m512 v[NP + K - 1];
#pragma GCC unroll 16
    for (int j = 0; j < NP + K - 1; ++j) v[j] = _mm512_loadu_ps(row + j * 16);
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      const __m512 wv = _mm512_loadu_ps(w16 + (ky * K + kx) * 16);
#pragma GCC unroll 16
      for (int j = 0; j < NP; ++j) acc[j] = _mm512_fmadd_ps(wv, v[j + kx], acc[j]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) _mm512_storeu_ps(out + (ox0 + j) * 16, acc[j]);
}

/// The last n < 12 positions of a row, as one register block.
template <int K>
MEMBOUND_ALWAYS_INLINE void depthwise16_tail(index_t n, const float* in, index_t cols, const float* w16, __m512 bias,
                                             index_t ox0, float* out) noexcept {
  switch (n) {
  case 0: break;
  case 1: depthwise16_positions<K, 1>(in, cols, w16, bias, ox0, out); break;
  case 2: depthwise16_positions<K, 2>(in, cols, w16, bias, ox0, out); break;
  case 3: depthwise16_positions<K, 3>(in, cols, w16, bias, ox0, out); break;
  case 4: depthwise16_positions<K, 4>(in, cols, w16, bias, ox0, out); break;
  case 5: depthwise16_positions<K, 5>(in, cols, w16, bias, ox0, out); break;
  case 6: depthwise16_positions<K, 6>(in, cols, w16, bias, ox0, out); break;
  case 7: depthwise16_positions<K, 7>(in, cols, w16, bias, ox0, out); break;
  case 8: depthwise16_positions<K, 8>(in, cols, w16, bias, ox0, out); break;
  case 9: depthwise16_positions<K, 9>(in, cols, w16, bias, ox0, out); break;
  case 10: depthwise16_positions<K, 10>(in, cols, w16, bias, ox0, out); break;
  default: depthwise16_positions<K, 11>(in, cols, w16, bias, ox0, out); break;
  }
}

/// Stride-1 depthwise convolution of 16 consecutive planes (plane stride `plane_in` / `plane_out`
/// floats) through the interleaved layout. `w` (16,k,k) filters, `bias` 16 values or null.
/// scratch: rows*cols*16 + k*k*16 + ho*wo*16 + 16 floats. `stream`: non-temporal output stores.
/// `next` (or null): the following group's 16 input planes, prefetched while this group computes.
template <int K>
void depthwise16_s1(const float* x, index_t plane_in, const float* w, const float* bias, float* y, index_t plane_out,
                    const conv_geometry& g, float* scratch, const float* next, bool stream) noexcept {
  const index_t ho = g.out_h(), wo = g.out_w(), rows = ho + K - 1, cols = wo + K - 1;
  float* in = scratch;
  float* w16 = in + rows * cols * 16;
  float* rowb = w16 + K * K * 16;
  for (int t = 0; t < K * K; ++t)
    for (int c = 0; c < 16; ++c) w16[t * 16 + c] = w[c * K * K + t];
  alignas(64) float b16[16];
  for (int c = 0; c < 16; ++c) b16[c] = bias != nullptr ? bias[c] : 0.0f;
  const __m512 bv = _mm512_load_ps(b16);
  constexpr int NP = K <= 3 ? 12 : (K <= 5 ? 10 : 8); // accumulators + NP+K-1 inputs + 1 weight <= 32
  const index_t lines = next != nullptr ? (16 * plane_in * 4 + 63) / 64 : 0, per_row = (lines + ho - 1) / ho;
  // Back to planes, 16 consecutive positions x 16 channels at a time, as soon as an output row
  // completes them (still in L1), so the stores overlap the next rows' FMAs; each plane is
  // written front to back, with streaming stores when asked and the destination is aligned.
  const index_t n_out = ho * wo;
  const bool nt = stream && plane_out % 16 == 0 && (reinterpret_cast<std::uintptr_t>(y) % 64) == 0;
  index_t p0 = 0; // positions before p0 are written out
  auto flush = [&](index_t upto) MEMBOUND_INLINE_LAMBDA {
    for (; p0 < upto; p0 += 16) {
      const index_t n = std::min<index_t>(16, upto - p0);
      __m512 v[16];
      for (index_t j = 0; j < 16; ++j) v[j] = j < n ? _mm512_loadu_ps(rowb + (p0 + j) * 16) : _mm512_setzero_ps();
      transpose16(v);
      if (nt && n == 16)
        for (int c = 0; c < 16; ++c) _mm512_stream_ps(y + c * plane_out + p0, v[c]);
      else {
        const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
        for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(y + c * plane_out + p0, m, v[c]);
      }
    }
  };
  // The interleaved input is filled row by row just before the first output row that reads it.
  fill_interleaved(x, plane_in, g, 0, K - 1, cols, in);
  for (index_t oy = 0; oy < ho; ++oy) {
    fill_interleaved(x, plane_in, g, oy + K - 1, oy + K, cols, in);
    for (index_t l = oy * per_row; l < std::min(lines, (oy + 1) * per_row); ++l)
      __builtin_prefetch(reinterpret_cast<const char*>(next) + l * 64, 0, 2); // into L2: a group is 16 planes
    const float* inr = in + oy * cols * 16;
    float* orow = rowb + oy * wo * 16; // the group's output, interleaved (ho*wo, 16)
    index_t ox = 0;
    for (; ox + NP <= wo; ox += NP) depthwise16_positions<K, NP>(inr, cols, w16, bv, ox, orow);
    depthwise16_tail<K>(wo - ox, inr, cols, w16, bv, ox, orow);
    flush(oy + 1 < ho ? (oy + 1) * wo / 16 * 16 : n_out); // whole blocks of 16, then the rest
  }
  if (nt) _mm_sfence();
}

/// depthwise16_s1 for the run-time kernel size g.k (1..7).
inline void depthwise16_s1_k(const float* x, index_t plane_in, const float* w, const float* bias, float* y,
                             index_t plane_out, const conv_geometry& g, float* scratch, const float* next,
                             bool stream) noexcept {
  switch (g.k) {
  case 1: depthwise16_s1<1>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  case 2: depthwise16_s1<2>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  case 3: depthwise16_s1<3>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  case 4: depthwise16_s1<4>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  case 5: depthwise16_s1<5>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  case 6: depthwise16_s1<6>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  default: depthwise16_s1<7>(x, plane_in, w, bias, y, plane_out, g, scratch, next, stream); break;
  }
}

/// Dense convolution vectorised over output channels: NV vectors of 16 output channels times P
/// consecutive output positions in registers; per tap one weight vector per 16 channels and one
/// broadcast input per position. `pads` are the phase-split padded input planes, `wpk` the
/// weights packed as (C_out/16, C_in, k*k, 16), `out` a row buffer (wo, C_out).
template <int NV, int P>
MEMBOUND_ALWAYS_INLINE void dense16_block(const float* pads, index_t plane_floats, index_t cin, const index_t* off,
                                          index_t taps, const float* wpk, index_t wblock, const float* bias16,
                                          index_t ox0, float* out, index_t cout) noexcept {
  __m512 acc[NV][P];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const __m512 b = _mm512_loadu_ps(bias16 + v * 16);
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) acc[v][j] = b;
  }
  for (index_t ci = 0; ci < cin; ++ci) {
    const float* pc = pads + ci * plane_floats + ox0;
    const float* wc = wpk + ci * taps * 16;
    for (index_t t = 0; t < taps; ++t) {
      const float* src = pc + off[t];
      __m512 wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wc + v * wblock + t * 16);
#pragma GCC unroll 16
      for (int j = 0; j < P; ++j) {
        const __m512 xb = _mm512_set1_ps(src[j]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[v][j] = _mm512_fmadd_ps(wv[v], xb, acc[v][j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < P; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + (ox0 + j) * cout + v * 16, acc[v][j]);
}

template <int NV, int P>
void dense16_row_p(const float* pads, index_t plane_floats, index_t cin, const index_t* off, index_t taps,
                   const float* wpk, index_t wblock, const float* bias16, index_t wo, float* out, index_t cout) noexcept {
  // Blocks of P positions; the last one is moved back to end at wo (it overlaps, same values).
  for (index_t ox0 = 0; ox0 < wo; ox0 += P)
    dense16_block<NV, P>(pads, plane_floats, cin, off, taps, wpk, wblock, bias16, std::min<index_t>(ox0, wo - P), out, cout);
}

/// The register block is NV vectors of channels times P positions with NV*P <= 28, P chosen so the
/// row splits into equal blocks (little overlap): blocks = ceil(wo / Pmax), P = ceil(wo / blocks).
template <int NV, int Pmax, int P = Pmax>
void dense16_dispatch(index_t p, const float* pads, index_t plane_floats, index_t cin, const index_t* off, index_t taps,
                      const float* wpk, index_t wblock, const float* bias16, index_t wo, float* out, index_t cout) noexcept {
  if constexpr (P > Pmax / 2 + 1) {
    if (p < P) {
      dense16_dispatch<NV, Pmax, P - 1>(p, pads, plane_floats, cin, off, taps, wpk, wblock, bias16, wo, out, cout);
      return;
    }
  }
  dense16_row_p<NV, P>(pads, plane_floats, cin, off, taps, wpk, wblock, bias16, wo, out, cout);
}

template <int NV>
void dense16_row(const float* pads, index_t plane_floats, index_t cin, const index_t* off, index_t taps,
                 const float* wpk, index_t wblock, const float* bias16, index_t wo, float* out, index_t cout) noexcept {
  constexpr int Pmax = NV == 1 ? 16 : (NV == 2 ? 14 : (NV == 3 ? 8 : 6));
  const index_t blocks = (wo + Pmax - 1) / Pmax, p = (wo + blocks - 1) / blocks;
  dense16_dispatch<NV, Pmax>(p, pads, plane_floats, cin, off, taps, wpk, wblock, bias16, wo, out, cout);
}

/// Positions per register block of dense16_row for NV vectors of output channels.
constexpr index_t dense16_positions(index_t nv) noexcept { return nv == 1 ? 16 : (nv == 2 ? 14 : (nv == 3 ? 8 : 6)); }

} // namespace detail
#endif

#if MEMBOUND_HAS_AVX2
namespace detail {

/// In-register transpose of an 8 x 8 float block (r[i] = row i on entry, column i on exit).
MEMBOUND_ALWAYS_INLINE void transpose8(__m256 (&r)[8]) noexcept {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

/// Lanes [0, n) set, for _mm256_maskload_ps / _mm256_maskstore_ps.
MEMBOUND_ALWAYS_INLINE __m256i lane_mask8(index_t n) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Whether the 8-channel interleaved kernel serves g: output rows at most 16 wide (where a
/// plane-by-plane kernel leaves most lanes idle) and at most 64 of them (bounded scratch). Callers
/// give the rolling-row kernel the stride-1 cases it takes first.
inline bool interleaved8_fits(const conv_geometry& g) noexcept { return g.out_w() <= 16 && g.out_h() <= 64; }

/// Columns of depthwise8's interleaved input rows: those the outputs reach, and at least those a
/// block of 8 positions reads (rows narrower than a block compute one whole block).
inline index_t interleaved8_cols(const conv_geometry& g) noexcept {
  return std::max((g.out_w() - 1) * g.stride + g.k, 7 * g.stride + g.k);
}

/// Floats of scratch `depthwise8` needs: the interleaved padded input, the filters, the output
/// and one block.
inline index_t interleaved8_scratch_floats(const conv_geometry& g) noexcept {
  const index_t ho = g.out_h(), wo = g.out_w();
  return ((ho - 1) * g.stride + g.k) * interleaved8_cols(g) * 8 + g.k * g.k * 8 + ho * wo * 8 + 64;
}

/// 8 output positions of one row of 8 interleaved channels from ox0: bias, then the k x k taps in
/// (ky, kx) order by FMA (the scalar twin's order), inputs read from L1 by each FMA. The kernel
/// size is a run-time loop bound (one instantiation per stride keeps the compile time small).
template <int S>
MEMBOUND_ALWAYS_INLINE void depthwise8_block(const float* in, index_t cols, const float* w8, index_t k, __m256 bias,
                                             index_t ox0, float* out) noexcept {
  __m256 acc[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) acc[j] = bias;
  for (index_t ky = 0; ky < k; ++ky) {
    const float* row = in + (ky * cols + ox0 * S) * 8;
    for (index_t kx = 0; kx < k; ++kx) {
      const __m256 wv = _mm256_loadu_ps(w8 + (ky * k + kx) * 8);
      const float* src = row + kx * 8;
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src + j * S * 8), acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + j * 8, acc[j]);
}

/// Depthwise convolution of 8 consecutive planes (plane strides plane_in / plane_out floats) at
/// stride S through a channel-interleaved copy: every lane is busy on the small maps of vision
/// networks (7x7, 4x4, stride 2), where a plane row fills half a vector or less. `w` (8,k,k), bias
/// 8 values or null. Rows go in blocks of 8 positions, the last one moved back to end at the row's
/// end (the overlap is recomputed with the same values). Same sums in the same order as the scalar
/// twin (bit for bit, the zero padding included). scratch: interleaved8_scratch_floats(g).
template <int S>
void depthwise8(const float* x, index_t plane_in, const float* w, const float* bias, float* y, index_t plane_out,
                const conv_geometry& g, float* scratch) noexcept {
  const index_t k = g.k, ho = g.out_h(), wo = g.out_w(), rows = (ho - 1) * S + k, cols = interleaved8_cols(g);
  float* in = scratch;              // (rows, cols, 8)
  float* w8 = in + rows * cols * 8; // (k k, 8)
  float* outb = w8 + k * k * 8;     // (ho wo, 8)
  float* block = outb + ho * wo * 8; // (8, 8): one block of a row narrower than 8
  for (index_t t = 0; t < k * k; ++t)
    for (index_t c = 0; c < 8; ++c) w8[t * 8 + c] = w[c * k * k + t];
  alignas(32) float b8[8];
  for (int c = 0; c < 8; ++c) b8[c] = bias != nullptr ? bias[c] : 0.0f;
  const __m256 bv = _mm256_load_ps(b8), zero = _mm256_setzero_ps();
  // Interleave the input rows the outputs reach (zero outside the plane), 8 columns x 8 planes
  // per transpose.
  const index_t wcopy = std::max<index_t>(0, std::min(g.w, cols - g.pad));
  for (index_t r = 0; r < rows; ++r) {
    float* dst = in + r * cols * 8;
    const index_t iy = r - g.pad;
    if (iy < 0 || iy >= g.h) {
      for (index_t c = 0; c < cols; ++c) _mm256_storeu_ps(dst + c * 8, zero);
      continue;
    }
    for (index_t c = 0; c < g.pad; ++c) _mm256_storeu_ps(dst + c * 8, zero);
    for (index_t c = g.pad + wcopy; c < cols; ++c) _mm256_storeu_ps(dst + c * 8, zero);
    for (index_t ix = 0; ix < wcopy; ix += 8) {
      const index_t n = std::min<index_t>(8, wcopy - ix);
      const __m256i m = lane_mask8(n);
      __m256 v[8];
      for (int ch = 0; ch < 8; ++ch) v[ch] = _mm256_maskload_ps(x + ch * plane_in + iy * g.w + ix, m);
      transpose8(v);
      for (index_t j = 0; j < n; ++j) _mm256_storeu_ps(dst + (g.pad + ix + j) * 8, v[j]);
    }
  }
  for (index_t oy = 0; oy < ho; ++oy) {
    const float* inr = in + oy * S * cols * 8;
    float* orow = outb + oy * wo * 8;
    if (wo < 8) {
      depthwise8_block<S>(inr, cols, w8, k, bv, 0, block);
      std::copy_n(block, wo * 8, orow);
      continue;
    }
    for (index_t ox = 0; ox < wo; ox += 8) {
      const index_t o = std::min(ox, wo - 8);
      depthwise8_block<S>(inr, cols, w8, k, bv, o, orow + o * 8);
    }
  }
  // Back to planes, 8 positions x 8 planes per transpose.
  const index_t n_out = ho * wo;
  for (index_t p0 = 0; p0 < n_out; p0 += 8) {
    const index_t n = std::min<index_t>(8, n_out - p0);
    __m256 v[8];
    for (index_t j = 0; j < 8; ++j) v[j] = j < n ? _mm256_loadu_ps(outb + (p0 + j) * 8) : zero;
    transpose8(v);
    if (n == 8)
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(y + c * plane_out + p0, v[c]);
    else {
      const __m256i m = lane_mask8(n);
      for (int c = 0; c < 8; ++c) _mm256_maskstore_ps(y + c * plane_out + p0, m, v[c]);
    }
  }
}

/// depthwise8 for the run-time stride (1 or 2).
inline void depthwise8_any(const float* x, index_t plane_in, const float* w, const float* bias, float* y,
                           index_t plane_out, const conv_geometry& g, float* scratch) noexcept {
  if (g.stride == 1) depthwise8<1>(x, plane_in, w, bias, y, plane_out, g, scratch);
  else depthwise8<2>(x, plane_in, w, bias, y, plane_out, g, scratch);
}

/// Whether B runs the 8-channel interleaved kernel: AVX2 without AVX-512 (which has its own
/// 16-channel one).
template <class B>
constexpr bool interleaved8_depthwise() noexcept {
  if constexpr (std::is_same_v<B, backend::scalar>) return false;
  else return is_avx2<typename B::arch> && !is_avx512<typename B::arch>;
}

/// The vector operations of the rolling-row depthwise kernel, one traits struct per ISA: `L`
/// lanes; `nv_max(K)` vectors of output columns per strip and `band_split(K)`, the filter row
/// that starts a second band (K: one band), chosen so that R x NV accumulators (R filter rows in
/// the band), NV loaded vectors and a broadcast fit the register file (32 zmm on AVX-512, 16 ymm
/// on AVX2). Two bands cost one more store and load of each output vector but, on AVX2, keep a
/// 7x7 filter's 7 x 2 accumulators from spilling into the FMA chains (0.74 -> 0.81 of the FMA
/// peak on a plane in L1, machine A).
#if MEMBOUND_HAS_AVX512
struct rolling_avx512 {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr index_t L = 16;
  static constexpr int nv_max(int) noexcept { return 4; }
  static constexpr int band_split(int k) noexcept { return k; }
  static MEMBOUND_ALWAYS_INLINE reg loadu(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static MEMBOUND_ALWAYS_INLINE reg load_masked(const float* p, mask m) noexcept { return _mm512_maskz_loadu_ps(m, p); }
  static MEMBOUND_ALWAYS_INLINE reg set1(float v) noexcept { return _mm512_set1_ps(v); }
  static MEMBOUND_ALWAYS_INLINE reg fma(reg a, reg b, reg c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static MEMBOUND_ALWAYS_INLINE reg add(reg a, reg b) noexcept { return _mm512_add_ps(a, b); }
  static MEMBOUND_ALWAYS_INLINE mask make_mask(index_t n) noexcept { return static_cast<mask>((1u << n) - 1u); }
  static MEMBOUND_ALWAYS_INLINE void store(float* p, reg v, mask m) noexcept { _mm512_mask_storeu_ps(p, m, v); }
  static MEMBOUND_ALWAYS_INLINE void storeu(float* p, reg v) noexcept { _mm512_storeu_ps(p, v); }
  /// One 64-byte line (16 floats) from L1 to `dst` (64-byte aligned) with a non-temporal store.
  static MEMBOUND_ALWAYS_INLINE void stream_line(float* dst, const float* src) noexcept {
    _mm512_stream_ps(dst, _mm512_loadu_ps(src));
  }
  /// w floats from src to dst by masked vectors. (fill_phase_row, which rewrites the borders and
  /// goes through memcpy per row, measured 3x3 at 0.64-1.02 of the copy probe against 1.09-1.59.)
  static void copy_row(const float* src, float* dst, index_t w) noexcept {
    for (index_t j = 0; j < w; j += 16) {
      const __mmask16 m = static_cast<__mmask16>((1u << std::min<index_t>(16, w - j)) - 1u);
      _mm512_mask_storeu_ps(dst + j, m, _mm512_maskz_loadu_ps(m, src + j));
    }
  }
};
#endif
struct rolling_avx2 {
  using reg = __m256;
  using mask = __m256i;
  static constexpr index_t L = 8;
  static constexpr int nv_max(int k) noexcept { return k <= 3 ? 3 : (k == 5 ? 2 : 3); }
  static constexpr int band_split(int k) noexcept { return k == 7 ? 4 : k; }
  static MEMBOUND_ALWAYS_INLINE reg loadu(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static MEMBOUND_ALWAYS_INLINE reg load_masked(const float* p, mask m) noexcept { return _mm256_maskload_ps(p, m); }
  static MEMBOUND_ALWAYS_INLINE reg set1(float v) noexcept { return _mm256_set1_ps(v); }
  static MEMBOUND_ALWAYS_INLINE reg fma(reg a, reg b, reg c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static MEMBOUND_ALWAYS_INLINE reg add(reg a, reg b) noexcept { return _mm256_add_ps(a, b); }
  static MEMBOUND_ALWAYS_INLINE mask make_mask(index_t n) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static MEMBOUND_ALWAYS_INLINE void store(float* p, reg v, mask m) noexcept { _mm256_maskstore_ps(p, m, v); }
  static MEMBOUND_ALWAYS_INLINE void storeu(float* p, reg v) noexcept { _mm256_storeu_ps(p, v); }
  static MEMBOUND_ALWAYS_INLINE void stream_line(float* dst, const float* src) noexcept {
    _mm256_stream_ps(dst, _mm256_loadu_ps(src));
    _mm256_stream_ps(dst + 8, _mm256_loadu_ps(src + 8));
  }
  static void copy_row(const float* src, float* dst, index_t w) noexcept {
    std::memcpy(dst, src, static_cast<std::size_t>(w) * sizeof(float));
  }
};

/// The rolling-row traits of an xsimd arch: AVX-512, else AVX2 + FMA (the caller checks `A`).
template <class A>
using rolling_traits_of =
#if MEMBOUND_HAS_AVX512
    std::conditional_t<is_avx512<A>, rolling_avx512, rolling_avx2>;
#else
    rolling_avx2;
#endif

/// Whether the rolling-row kernel suits output rows of wo columns with L-lane vectors: its vectors
/// run along a row, so at least 3/4 of their lanes must be used (AVX-512: wo >= 12, and
/// 16 < wo < 24 and the like fail). Narrower rows go through the channel-interleaved kernel on
/// AVX-512 and the row kernel elsewhere.
inline bool rolling_fits(index_t wo, index_t L) noexcept { return 4 * wo >= 3 * L * ((wo + L - 1) / L); }

/// Memory traffic of the rolling-row kernel, spread over the rows of its passes so it overlaps
/// the FMAs: the next plane's input is prefetched (into L2) during the first pass, and during the
/// last pass each output row, once complete, leaves the L1 staging buffer in whole 64-byte lines
/// with non-temporal stores.
struct rolling_traffic {
  const char* prefetch = nullptr; ///< the next plane's input, or null
  index_t prefetch_lines = 0;
  float* out = nullptr; ///< the plane's destination when staged (64-byte aligned, ho*wo a multiple of 16), or null
};

/// One pass of the rolling-row depthwise kernel (stride 1, K x K) over NV vectors of V::L output
/// columns from x0, for the filter rows [KY0, KY1) (a band: see depthwise_strip). `P` holds the
/// input rows with `pad` zero columns on the left, row stride S, 64-byte aligned (so loads of
/// vectors that start on a line boundary never split); padded rows above and below the input are
/// not stored. Each input row is read once: per tap column kx one (unaligned) load
/// per vector, which feeds the R = KY1 - KY0 output rows that read this input row through the band
/// (R x NV accumulators stay in registers), so a vector of outputs costs K loads, K R broadcasts
/// and K R FMAs per band, and no shuffles. The first band starts each output row from the bias,
/// later bands from the partial sum the band before stored in y, so every output still sees bias,
/// then its taps in (ky, kx) order. A zero-padding row adds `zk[ky]`, the sum of its K products
/// w * 0 in order, to the accumulators that read it (bit for bit the same as adding them one by
/// one: every product is a signed zero or a NaN). `last`: this pass completes the output rows
/// (streams them out when t.out is set); `first`: it prefetches.
template <class V, int K, int KY0, int KY1, int NV>
void depthwise_rolling(const float* P, index_t S, const conv_geometry& g, const float* wk, const float* zk,
                       float bias, float* y, index_t x0, const rolling_traffic& t, bool first, bool last) noexcept {
  using reg = typename V::reg;
  constexpr index_t L = V::L;
  constexpr int R = KY1 - KY0;
  const index_t ho = g.out_h(), wo = g.out_w(), r_end = ho + KY1 - 1;
  const char* pf = first ? t.prefetch : nullptr;
  const char* const pf_end = pf + (first ? 64 * t.prefetch_lines : 0);
  float* const out = last ? t.out : nullptr;
  index_t streamed = 0; // output floats streamed out so far (whole lines)
  // Before padded input row r: acc[j] holds output row r - KY1 + 1 + j, which reads row r with
  // ky = KY1 - 1 - j (acc[0] completes at row r, acc[R - 1] starts there).
  reg acc[R][NV];
  typename V::mask sm[NV]; // store masks of the NV output vectors
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) sm[v] = V::make_mask(std::clamp<index_t>(wo - x0 - L * v, 0, L));
  const reg bv = V::set1(bias);
  // One padded input row r. Checked: some output rows r - ky fall outside [0, ho) (the first
  // and last rows of the band). The loop body stays one row long: the accumulators rotate by
  // register moves (a ring unrolled R-fold measured no faster and is R times the code).
  auto step = [&]<bool Checked>(index_t r) MEMBOUND_INLINE_LAMBDA {
    const index_t start = r - KY0; // the output row acc[R - 1] starts
    if (KY0 == 0 || (Checked && start >= ho)) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[R - 1][v] = bv;
    } else { // the band before stored this row's partial sum (only the lanes inside the row)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const float* p = y + start * wo + x0 + L * v;
        acc[R - 1][v] = v + 1 < NV ? V::loadu(p) : V::load_masked(p, sm[v]);
      }
    }
    const index_t iy = r - g.pad;
    if (iy >= 0 && iy < g.h) {
      const float* src = P + iy * S + x0;
      const float* wr = wk;
      asm("" : "+r"(wr)); // the K R broadcasts stay in the row (hoisted, they would be spilled)
#pragma GCC unroll 8
      for (int kx = 0; kx < K; ++kx) {
        reg sh[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) sh[v] = V::loadu(src + L * v + kx);
#pragma GCC unroll 8
        for (int j = 0; j < R; ++j) {
          const int ky = KY1 - 1 - j;
          if (Checked && (r - ky < 0 || r - ky >= ho)) continue;
          const reg wv = V::set1(wr[ky * K + kx]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[j][v] = V::fma(wv, sh[v], acc[j][v]);
        }
      }
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < R; ++j) {
        const int ky = KY1 - 1 - j;
        if (r - ky < 0 || r - ky >= ho) continue;
        const reg z = V::set1(zk[ky]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[j][v] = V::add(acc[j][v], z);
      }
    }
    const index_t done = r - (KY1 - 1); // output row acc[0] is complete (for this band)
    if (!Checked || (done >= 0 && done < ho)) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) { // only a strip's last vector can be partial
        float* p = y + done * wo + x0 + L * v;
        if (v + 1 < NV) V::storeu(p, acc[0][v]);
        else V::store(p, acc[0][v], sm[v]);
      }
      if (out != nullptr) // the whole lines now complete leave while in L1
        for (const index_t ready = (done + 1) * wo / 16 * 16; streamed < ready; streamed += 16)
          V::stream_line(out + streamed, y + streamed);
    }
#pragma GCC unroll 8
    for (int j = 0; j + 1 < R; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[j][v] = acc[j + 1][v];
    for (int l = 0; l < 4 && pf < pf_end; ++l, pf += 64) __builtin_prefetch(pf, 0, 2); // 4 lines a row
  };
  for (index_t r = KY0; r < r_end; ++r) { // rows [KY1 - 1, ho + KY0) need no checks
    if (r >= KY1 - 1 && r < ho + KY0) step.template operator()<false>(r);
    else step.template operator()<true>(r);
  }
  for (; pf < pf_end; pf += 64) __builtin_prefetch(pf, 0, 2);
}

/// The passes of one column strip of NV vectors: the filter rows in V::bands(K) bands, each
/// band a full sweep over the rows (see depthwise_rolling).
template <class V, int K, int NV>
void depthwise_strip(const float* P, index_t S, const conv_geometry& g, const float* wk, const float* zk,
                     float bias, float* y, index_t x0, const rolling_traffic& t, bool first, bool last) noexcept {
  constexpr int split = V::band_split(K); // first row of the second band, or K for one band
  if constexpr (split >= K) {
    depthwise_rolling<V, K, 0, K, NV>(P, S, g, wk, zk, bias, y, x0, t, first, last);
  } else {
    depthwise_rolling<V, K, 0, split, NV>(P, S, g, wk, zk, bias, y, x0, t, first, false);
    depthwise_rolling<V, K, split, K, NV>(P, S, g, wk, zk, bias, y, x0, t, false, last);
  }
}

/// Stride-1 depthwise convolution of one plane x (h,w) -> y (ho,wo) by rolling rows (see
/// depthwise_rolling). The plane is copied into `P` (g.h rows of rolling_stride(g) floats whose
/// borders are already zero, 64-byte aligned), then the output columns run in strips of at most
/// V::nv_max(K) vectors, split evenly. With t.out set, y is an L1 staging buffer and the plane streams out to
/// t.out as its rows complete.
template <class V, int K>
void depthwise_plane_rolling(const float* x, const float* wk, float bias, float* y, const conv_geometry& g,
                             float* P, const rolling_traffic& t) noexcept {
  constexpr index_t L = V::L;
  constexpr int NVmax = V::nv_max(K);
  const index_t S = rolling_stride(g), wo = g.out_w();
  // The plane's rows into the interior of P (the borders were zeroed once per call).
  for (index_t r = 0; r < g.h; ++r) V::copy_row(x + r * g.w, P + g.pad + r * S, g.w);
  float zk[K]; // per filter row: the K products w * 0 summed in order
  for (int ky = 0; ky < K; ++ky) {
    float z = wk[ky * K] * 0.0f;
    for (int kx = 1; kx < K; ++kx) z = z + wk[ky * K + kx] * 0.0f;
    zk[ky] = z;
  }
  const index_t nvec = (wo + L - 1) / L, passes = (nvec + NVmax - 1) / NVmax;
  index_t x0 = 0;
  for (index_t p = 0; p < passes; ++p) {
    const index_t nv = nvec / passes + (p < nvec % passes ? 1 : 0);
    const bool first = p == 0, last = p + 1 == passes;
    switch (nv) { // nv <= NVmax: the std::min only keeps NV > NVmax from being instantiated
    case 1: depthwise_strip<V, K, 1>(P, S, g, wk, zk, bias, y, x0, t, first, last); break;
    case 2: depthwise_strip<V, K, std::min(2, NVmax)>(P, S, g, wk, zk, bias, y, x0, t, first, last); break;
    case 3: depthwise_strip<V, K, std::min(3, NVmax)>(P, S, g, wk, zk, bias, y, x0, t, first, last); break;
    default: depthwise_strip<V, K, std::min(4, NVmax)>(P, S, g, wk, zk, bias, y, x0, t, first, last); break;
    }
    x0 += L * nv;
  }
}

/// All `planes` planes (plane n uses filter n % channels) by rolling rows, with the next plane
/// prefetched and, when `stream`, each plane staged in L1 and streamed out (see rolling_traffic).
template <class V>
void depthwise_planes_rolling(const float* x, index_t channels, index_t planes, const float* w, const float* bias,
                              float* y, const conv_geometry& g, float* scratch, bool stream) noexcept {
  const index_t kk = g.k * g.k, plane_in = g.h * g.w, plane_out = g.out_h() * g.out_w();
  const index_t S = rolling_stride(g);
  // scratch (rolling_scratch_floats): up to 15 floats to a 64-byte boundary, the plane copy P,
  // the staging buffer.
  float* P = scratch + (16 - reinterpret_cast<std::uintptr_t>(scratch) / sizeof(float) % 16) % 16;
  float* stage = P + g.h * S;
  std::fill(P, stage, 0.0f); // the borders stay zero; each plane fills the interior
  const bool nt = stream && plane_out % 16 == 0 && reinterpret_cast<std::uintptr_t>(y) % 64 == 0;
  for (index_t n = 0; n < planes; ++n) {
    const index_t c = n % channels;
    const float* xc = x + n * plane_in;
    const float bc = bias != nullptr ? bias[c] : 0.0f;
    rolling_traffic t;
    if (n + 1 < planes) {
      t.prefetch = reinterpret_cast<const char*>(xc + plane_in);
      t.prefetch_lines = (plane_in * 4 + 63) / 64;
    }
    float* yc = y + n * plane_out;
    if (nt) {
      t.out = yc;
      yc = stage;
    }
    switch (g.k) {
    case 7: depthwise_plane_rolling<V, 7>(xc, w + c * kk, bc, yc, g, P, t); break;
    case 5: depthwise_plane_rolling<V, 5>(xc, w + c * kk, bc, yc, g, P, t); break;
    default: depthwise_plane_rolling<V, 3>(xc, w + c * kk, bc, yc, g, P, t); break;
    }
  }
  if (nt) _mm_sfence();
}

} // namespace detail
#endif

namespace detail {
template <class B>
constexpr bool grouped_depthwise() noexcept {
  if constexpr (std::is_same_v<B, backend::scalar>) return false;
  else return is_avx512<typename B::arch>;
}
/// Whether B runs the rolling-row depthwise kernel (AVX-512, or AVX2 with FMA).
template <class B>
constexpr bool rolling_depthwise() noexcept {
  if constexpr (std::is_same_v<B, backend::scalar>) return false;
  else return is_avx512<typename B::arch> || is_avx2<typename B::arch>;
}
} // namespace detail

/// Floats of scratch `depthwise_conv2d_planes<B>` needs.
template <class B = backend::best_cpu>
index_t depthwise_scratch_floats(const conv_geometry& g) {
  const index_t ho = g.out_h(), wo = g.out_w();
  const index_t grouped = (ho + g.k - 1) * (wo + g.k - 1) * 16 + g.k * g.k * 16 + ho * wo * 16 + 16;
  index_t interleaved8 = 0;
#if MEMBOUND_HAS_AVX2
  interleaved8 = detail::interleaved8_scratch_floats(g);
#endif
  return std::max({grouped, interleaved8, detail::rolling_scratch_floats(g), conv_scratch_floats<B>(g, 1)});
}

/// Depthwise convolution of `batch` images of `channels` consecutive planes, x (batch,C,h,w) -> y (batch,C,ho,wo),
/// with filters w (C,k,k) and bias (C) or null. At stride 1 with odd k >= 3, rows that use 3/4 of their vectors'
/// lanes (e.g. 12-16 outputs on AVX-512, 6-8 on AVX2) run plane by plane through the rolling-row kernel (AVX2 runs
/// a 7x7 filter in two bands of filter rows); on AVX-512 the other stride-1 cases go in groups of 16 channels
/// through the channel-interleaved kernel; either prefetches the next plane or group, across image boundaries too.
/// On AVX2 (without AVX-512), outputs at most 16 wide and 64 high that the rolling-row kernel does not take (4x4
/// maps, stride 2) go in groups of 8 channels through an 8-channel interleaved kernel. Other cases run
/// `depthwise_conv2d` plane by plane. Outputs of 8 MiB or more in all leave with streaming stores. Per output the
/// sum is bias, then taps in (ky, kx) order, on every path (results equal the scalar twin's bit for bit, signed
/// zeros and NaNs from the padding included). scratch: depthwise_scratch_floats<B>(g) floats. Complexity: 2 k^2
/// flops per output.
template <class B = backend::best_cpu>
void depthwise_conv2d_planes(const float* x, index_t channels, const float* w, const float* bias, float* y,
                             const conv_geometry& g, float* scratch, index_t batch = 1);

/// Depthwise convolution of one plane: y (ho,wo) = bias + sum_{ky,kx} wk[ky,kx] x[s oy + ky - pad,
/// s ox + kx - pad] with zeros outside x (h,w); wk is the (k,k) filter. `scratch` holds at least
/// conv_scratch_floats<B>(g, 1) floats. @throws config_error / shape_error for a bad geometry.
template <class B = backend::best_cpu>
void depthwise_conv2d(const float* x, const float* wk, float bias, float* y, const conv_geometry& g, float* scratch) {
  detail::check_cpu_backend<B>();
  g.check("depthwise_conv2d");
  const index_t ho = g.out_h(), wo = g.out_w(), k = g.k, s = g.stride;
  if constexpr (std::is_same_v<B, backend::scalar>) {
    (void)scratch;
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox) {
        float acc = bias;
        for (index_t ky = 0; ky < k; ++ky) {
          const index_t iy = oy * s + ky - g.pad;
          for (index_t kx = 0; kx < k; ++kx) {
            const index_t ix = ox * s + kx - g.pad;
            const float v = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[iy * g.w + ix] : 0.0f;
            acc = std::fma(wk[ky * k + kx], v, acc);
          }
        }
        y[oy * wo + ox] = acc;
      }
  } else {
    using A = typename B::arch;
    const index_t L = detail::conv_lanes<B>();
    const detail::padded_plane p(g, L);
    float* pad = scratch;
    float* rowbuf = scratch + p.floats();
    detail::fill_padded(x, g, p, pad);
    const bool direct = wo >= L; // else compute a full vector into rowbuf and copy wo < L values
    index_t off[49];
    detail::tap_offsets(p, k, s, off);
    const index_t rstep = s * p.cols;
    index_t oy = 0;
#if MEMBOUND_HAS_AVX512
    constexpr bool wide = detail::is_avx512<A>;
#endif
    if (direct)
      for (; oy + 4 <= ho; oy += 4) {
#if MEMBOUND_HAS_AVX512
        if (wide && s == 1) {
          detail::depthwise_s1_avx512<4>(k, pad + oy * rstep, rstep, wk, bias, p.wx, y + oy * wo, wo);
          continue;
        }
#endif
        detail::depthwise_rows<A, 4>(pad + oy * rstep, rstep, off, k, s, wk, bias, p.wx, y + oy * wo, wo);
      }
    for (; oy < ho; ++oy) {
      float* out = direct ? y + oy * wo : rowbuf;
#if MEMBOUND_HAS_AVX512
      if (wide && s == 1) detail::depthwise_s1_avx512<1>(k, pad + oy * rstep, rstep, wk, bias, p.wx, out, wo);
      else
#endif
        detail::depthwise_rows<A, 1>(pad + oy * rstep, rstep, off, k, s, wk, bias, p.wx, out, wo);
      if (!direct) std::copy_n(rowbuf, wo, y + oy * wo);
    }
  }
}

template <class B>
void depthwise_conv2d_planes(const float* x, index_t channels, const float* w, const float* bias, float* y,
                             const conv_geometry& g, float* scratch, index_t batch) {
  g.check("depthwise_conv2d");
  MEMBOUND_EXPECTS(batch >= 0 && channels >= 0, shape_error, "depthwise_conv2d_planes: batch ", batch, " and channels ",
                   channels, " must be non-negative");
  const index_t kk = g.k * g.k, plane_in = g.h * g.w, plane_out = g.out_h() * g.out_w();
  // Outputs of 8 MiB or more in all bypass the caches (as the other streaming kernels do).
  [[maybe_unused]] const bool stream =
      static_cast<double>(batch) * static_cast<double>(channels * plane_out) * 4.0 >=
      static_cast<double>(detail::stream_threshold_bytes);
#if MEMBOUND_HAS_AVX2
  if constexpr (detail::rolling_depthwise<B>()) {
    using V = detail::rolling_traits_of<typename B::arch>;
    if (g.stride == 1 && g.k % 2 == 1 && g.k >= 3 && detail::rolling_fits(g.out_w(), V::L)) {
      detail::depthwise_planes_rolling<V>(x, channels, batch * channels, w, bias, y, g, scratch, stream);
      return;
    }
  }
#endif
  for (index_t n = 0; n < batch; ++n, x += channels * plane_in, y += channels * plane_out) {
  index_t c = 0;
#if MEMBOUND_HAS_AVX512
  if constexpr (detail::grouped_depthwise<B>())
    if (g.stride == 1)
      for (; c + 16 <= channels; c += 16) {
        const float* xc = x + c * plane_in;
        const float* wc = w + c * kk;
        const float* bc = bias != nullptr ? bias + c : nullptr;
        float* yc = y + c * plane_out;
        // The next group to run: the next 16 planes of this image, else the next image's first 16.
        const float* nx = c + 32 <= channels ? xc + 16 * plane_in
                          : n + 1 < batch && channels >= 16 ? x + channels * plane_in
                                                            : nullptr;
        detail::depthwise16_s1_k(xc, plane_in, wc, bc, yc, plane_out, g, scratch, nx, stream);
      }
#endif
#if MEMBOUND_HAS_AVX2
  if constexpr (detail::interleaved8_depthwise<B>())
    if (detail::interleaved8_fits(g))
      for (; c + 8 <= channels; c += 8)
        detail::depthwise8_any(x + c * plane_in, plane_in, w + c * kk, bias != nullptr ? bias + c : nullptr,
                               y + c * plane_out, plane_out, g, scratch);
#endif
  for (; c < channels; ++c)
    depthwise_conv2d<B>(x + c * plane_in, w + c * kk, bias != nullptr ? bias[c] : 0.0f, y + c * plane_out, g, scratch);
  }
}

/// Depthwise convolution of one image whose channel planes lie `x_stride` floats apart (e.g. a channel-major (C, B,
/// h, w) activation: stride B h w), into planes `y_stride` apart; filters w (C,k,k), bias (C) or null. On AVX-512
/// at stride 1, groups of 16 channels run through the channel-interleaved kernel (the small planes of vision
/// networks: 7x7, 4x4); on AVX2 (without AVX-512), groups of 8 through the 8-channel one for outputs at most 16
/// wide and 64 high (any stride); everything else runs `depthwise_conv2d` plane by plane. Per output the sum is
/// bias, then taps in (ky, kx) order (equal to the scalar twin bit for bit). scratch:
/// depthwise_scratch_floats<B>(g). Complexity: 2 k^2 flops per output.
template <class B = backend::best_cpu>
void depthwise_conv2d_strided(const float* x, index_t channels, index_t x_stride, const float* w, const float* bias,
                              float* y, index_t y_stride, const conv_geometry& g, float* scratch) {
  g.check("depthwise_conv2d_strided");
  const index_t kk = g.k * g.k;
  MEMBOUND_EXPECTS(channels >= 0 && x_stride >= g.h * g.w && y_stride >= g.out_h() * g.out_w(), shape_error,
                   "depthwise_conv2d_strided: ", channels, " channels with plane strides ", x_stride, " / ", y_stride,
                   ", expected strides >= the plane sizes ", g.h * g.w, " / ", g.out_h() * g.out_w());
  index_t c = 0;
#if MEMBOUND_HAS_AVX512
  if constexpr (detail::grouped_depthwise<B>())
    if (g.stride == 1)
      for (; c + 16 <= channels; c += 16) {
        const float* xc = x + c * x_stride;
        const float* wc = w + c * kk;
        const float* bc = bias != nullptr ? bias + c : nullptr;
        float* yc = y + c * y_stride;
        detail::depthwise16_s1_k(xc, x_stride, wc, bc, yc, y_stride, g, scratch, nullptr, false);
      }
#endif
#if MEMBOUND_HAS_AVX2
  if constexpr (detail::interleaved8_depthwise<B>())
    if (detail::interleaved8_fits(g))
      for (; c + 8 <= channels; c += 8)
        detail::depthwise8_any(x + c * x_stride, x_stride, w + c * kk, bias != nullptr ? bias + c : nullptr,
                               y + c * y_stride, y_stride, g, scratch);
#endif
  for (; c < channels; ++c)
    depthwise_conv2d<B>(x + c * x_stride, w + c * kk, bias != nullptr ? bias[c] : 0.0f, y + c * y_stride, g, scratch);
}

/// Dense direct convolution of one image: y (C_out,ho,wo) = bias + W (C_out,C_in,k,k) * x
/// (C_in,h,w), zero padding; `bias` may be null. `scratch` holds at least
/// conv_scratch_floats<B>(g, C_in, C_out) floats. Best where C_in k^2 is small (the stem
/// layers); for wide inputs im2col + GEMM is faster (see nn::conv2d). @throws config_error /
/// shape_error.
template <class B = backend::best_cpu>
void conv2d_direct(const float* x, index_t cin, const float* w, const float* bias, float* y, index_t cout,
                   const conv_geometry& g, float* scratch) {
  detail::check_cpu_backend<B>();
  g.check("conv2d_direct");
  MEMBOUND_EXPECTS(cin >= 1 && cout >= 1, config_error, "conv2d_direct: channels ", cin, " -> ", cout, ", expected >= 1");
  const index_t ho = g.out_h(), wo = g.out_w(), k = g.k, s = g.stride, kk = k * k;
  if constexpr (std::is_same_v<B, backend::scalar>) {
    (void)scratch;
    for (index_t co = 0; co < cout; ++co)
      for (index_t oy = 0; oy < ho; ++oy)
        for (index_t ox = 0; ox < wo; ++ox) {
          float acc = bias != nullptr ? bias[co] : 0.0f;
          for (index_t ci = 0; ci < cin; ++ci)
            for (index_t ky = 0; ky < k; ++ky) {
              const index_t iy = oy * s + ky - g.pad;
              for (index_t kx = 0; kx < k; ++kx) {
                const index_t ix = ox * s + kx - g.pad;
                const float v = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[(ci * g.h + iy) * g.w + ix] : 0.0f;
                acc = std::fma(w[(co * cin + ci) * kk + ky * k + kx], v, acc);
              }
            }
          y[(co * ho + oy) * wo + ox] = acc;
        }
  } else {
    using A = typename B::arch;
    const index_t L = detail::conv_lanes<B>();
    const detail::padded_plane p(g, L);
    float* pads = scratch;
    float* rowbuf = scratch + cin * p.floats(); // (4, wx) when wo < L
#if MEMBOUND_HAS_AVX512
    if constexpr (detail::is_avx512<A>)
      if (cout % 16 == 0 && cin * kk > 32 && wo >= detail::dense16_positions(std::min<index_t>(4, cout / 16))) {
        // Vectorised over output channels: packed weights (C_out/16, C_in, k*k, 16), a window of
        // the k padded input rows each output row reads (C_in, stride, k, cols), a row buffer
        // (wo, C_out), then 16 x 16 transposes back to planes.
        float* wpk = rowbuf;
        float* rowb = wpk + cout * cin * kk;
        float* b16 = rowb + wo * cout;
        float* win = b16 + 16 * 4;
        const index_t wblock = cin * kk * 16, wcols = wo + (k - 1) / s, wplane = s * k * wcols;
        for (index_t co = 0; co < cout; ++co)
          for (index_t ci = 0; ci < cin; ++ci)
            for (index_t t = 0; t < kk; ++t) wpk[(co / 16) * wblock + (ci * kk + t) * 16 + co % 16] = w[(co * cin + ci) * kk + t];
        index_t off[49];
        for (index_t ky = 0; ky < k; ++ky)
          for (index_t kx = 0; kx < k; ++kx) off[ky * k + kx] = (kx % s) * k * wcols + ky * wcols + kx / s;
        const index_t plane_out = ho * wo;
        for (index_t oy = 0; oy < ho; ++oy) {
          for (index_t ci = 0; ci < cin; ++ci)
            for (index_t ky = 0; ky < k; ++ky) {
              const index_t iy = oy * s + ky - g.pad;
              const float* row = iy >= 0 && iy < g.h ? x + (ci * g.h + iy) * g.w : nullptr;
              for (index_t ph = 0; ph < s; ++ph)
                detail::fill_phase_row(row, g, ph, wcols, win + ci * wplane + ph * k * wcols + ky * wcols);
            }
          const float* prow = win;
          for (index_t cb = 0; cb < cout / 16;) {
            const index_t nv = std::min<index_t>(4, cout / 16 - cb);
            for (index_t c = 0; c < nv * 16; ++c) b16[c] = bias != nullptr ? bias[cb * 16 + c] : 0.0f;
            const float* wcb = wpk + cb * wblock;
            float* ob = rowb + cb * 16;
            switch (nv) {
            case 4: detail::dense16_row<4>(prow, wplane, cin, off, kk, wcb, wblock, b16, wo, ob, cout); break;
            case 3: detail::dense16_row<3>(prow, wplane, cin, off, kk, wcb, wblock, b16, wo, ob, cout); break;
            case 2: detail::dense16_row<2>(prow, wplane, cin, off, kk, wcb, wblock, b16, wo, ob, cout); break;
            default: detail::dense16_row<1>(prow, wplane, cin, off, kk, wcb, wblock, b16, wo, ob, cout); break;
            }
            cb += nv;
          }
          for (index_t cb = 0; cb < cout / 16; ++cb)
            for (index_t x0 = 0; x0 < wo; x0 += 16) {
              const index_t n = std::min<index_t>(16, wo - x0);
              __m512 v[16];
              for (index_t j = 0; j < 16; ++j)
                v[j] = j < n ? _mm512_loadu_ps(rowb + (x0 + j) * cout + cb * 16) : _mm512_setzero_ps();
              detail::transpose16(v);
              const auto m = static_cast<__mmask16>((1u << n) - 1u);
              for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(y + (cb * 16 + c) * plane_out + oy * wo + x0, m, v[c]);
            }
        }
        return;
      }
#endif
    // Stride 2: a window of the k padded rows each output row reads (C_in, 2, k, cols), refilled
    // per output row (each input row is copied k/2 times; the working set stays in L1). Stride 1:
    // the whole padded planes, once.
    const bool window = s == 2;
    detail::padded_plane pw = p;
    if (window) pw.rows = k;
    else
      for (index_t ci = 0; ci < cin; ++ci) detail::fill_padded(x + ci * g.h * g.w, g, p, pads + ci * p.floats());
    const bool direct = wo >= L; // else compute full vectors into rowbuf and copy wo < L values
    const index_t plane_out = ho * wo, wstride = cin * kk;
    index_t off[49];
    detail::tap_offsets(pw, k, s, off);
    for (index_t oy = 0; oy < ho; ++oy) {
      if (window)
        for (index_t ci = 0; ci < cin; ++ci)
          for (index_t ky = 0; ky < k; ++ky) {
            const index_t iy = oy * s + ky - g.pad;
            const float* src = iy >= 0 && iy < g.h ? x + (ci * g.h + iy) * g.w : nullptr;
            for (index_t ph = 0; ph < s; ++ph)
              detail::fill_phase_row(src, g, ph, pw.cols, pads + ci * pw.floats() + ph * k * pw.cols + ky * pw.cols);
          }
      const float* row = window ? pads : pads + oy * s * p.cols;
      for (index_t co = 0; co < cout; co += 4) {
        const index_t cb = std::min<index_t>(4, cout - co);
        float* out = direct ? y + co * plane_out + oy * wo : rowbuf;
        const index_t ostride = direct ? plane_out : p.wx;
        const float* wco = w + co * wstride;
        const float* bco = bias != nullptr ? bias + co : nullptr;
        switch (cb) {
        case 4: detail::dense_row<A, 4>(row, pw, cin, off, kk, wco, wstride, bco, out, ostride); break;
        case 3: detail::dense_row<A, 3>(row, pw, cin, off, kk, wco, wstride, bco, out, ostride); break;
        case 2: detail::dense_row<A, 2>(row, pw, cin, off, kk, wco, wstride, bco, out, ostride); break;
        default: detail::dense_row<A, 1>(row, pw, cin, off, kk, wco, wstride, bco, out, ostride); break;
        }
        if (!direct)
          for (index_t c = 0; c < cb; ++c) std::copy_n(rowbuf + c * p.wx, wo, y + (co + c) * plane_out + oy * wo);
      }
    }
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
