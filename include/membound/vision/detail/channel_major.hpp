// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Internal: the channel-major layout of vision/ and its operators. An activation of B
/// images, C channels and H x W positions is stored (C, B, H, W): channel c's planes of all
/// images are consecutive, so a 1x1 convolution of the whole batch is one GEMM W (C_out, C_in) x
/// X (C_in, B H W), and every channel of every image is still a contiguous H x W plane for the
/// depthwise kernels. Products run in fixed blocks of columns (threads take whole blocks, each
/// block one single-threaded call: `cpu::packed_gemm` on pre-packed weights for a layer of one
/// block, else the GEMM entry), so results do not depend on the thread count.

#include <algorithm>
#include <cstring>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/backend/cpu/conv.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/view.hpp"
#include "membound/vision/state_dict.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {
namespace detail {

/// `for` loops over independent elements of a large activation run on the OpenMP team when the
/// variable `big` in scope is true (memory-bound passes: window copies, cascade adds, pooling).
#if defined(_OPENMP)
#define MEMBOUND_VISION_PARALLEL_FOR _Pragma("omp parallel for schedule(static) if (big)")
#else
#define MEMBOUND_VISION_PARALLEL_FOR
#endif

/// Width of the column blocks of a channel-major GEMM over n columns (tokens). It depends on n
/// only (never on the thread count, so results do not either): one block up to 200 columns (the
/// maps of one image: 196, 49, 16; one call is fastest there, splitting a 256x128x196 product in
/// two costs ~15% on one thread), otherwise an even number of equal blocks of about 256 columns,
/// rounded up to 16, so two threads get equal shares.
constexpr index_t column_block(index_t n) noexcept {
  if (n <= 200) return std::max<index_t>(n, 1);
  index_t blocks = (n + 255) / 256;
  blocks += blocks % 2;
  return ((n + blocks - 1) / blocks + 15) / 16 * 16;
}

/// A per-thread scratch buffer of at least `floats` floats (grown on demand, then reused).
inline float* thread_scratch(index_t floats) {
  thread_local array<float> buf;
  if (buf.size() < floats) buf = array<float>({floats + 64}, uninitialized); // (floats): flat scratch
  return buf.data();
}

/// What follows the product of `cm_conv1x1` on each block while it is in cache.
enum class epilogue { bias, bias_relu };

/// While alive, OpenMP regions opened by this thread (e.g. inside oneDNN) run one thread: a GEMM
/// call that is one cell of a fixed work grid must not split itself by the thread count, and
/// must not open a nested team inside an inactive region.
class single_thread_scope {
public:
#if defined(_OPENMP)
  single_thread_scope() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~single_thread_scope() { omp_set_num_threads(saved_); }
private:
  int saved_;
public:
#else
  single_thread_scope() {} // nothing to pin without OpenMP
#endif
  single_thread_scope(const single_thread_scope&) = delete;
  single_thread_scope& operator=(const single_thread_scope&) = delete;
};

/// Whether backend B runs 1x1 convolutions through `cpu::packed_gemm` (weights packed once at
/// load time): the FMA backends (AVX2, AVX-512). Others (scalar, sse4) call the GEMM entry, whose
/// oneDNN picks the host's widest ISA at run time.
template <class B>
inline constexpr bool packs_1x1 = [] {
#if MEMBOUND_HAS_AVX2
  if constexpr (!std::is_same_v<B, backend::scalar>) return cpu::detail::is_avx2<typename B::arch> || cpu::detail::is_avx512<typename B::arch>;
#endif
  return false;
}();

/// Packs a 1x1 convolution's weight for backend B (`f.packed`), where B uses packed products.
template <class B>
void pack_1x1(folded_conv& f) {
  if constexpr (packs_1x1<B>) f.packed = cpu::pack_weights<B>(f.weight.data(), f.out_channels(), f.in_channels(), f.in_channels());
}

/// Whether a 1x1 convolution over n columns runs through its packed weights: when it is one
/// column block (n <= 200: the maps of one image, or a few at stage 3). There each weight is
/// read once per call, from memory at batch 1, and oneDNN's sgemm would repack W on every call;
/// the packed tile prefetches the weight stream instead (M5 at batch 1: 64 -> 81-89 images/s).
/// Wider layers (batches) keep the GEMM entry, whose cache blocking reuses W across columns
/// (3-12% faster there than the packed tile, measured with bench_vision's b16 rows).
inline bool uses_packed(index_t n) noexcept { return column_block(n) >= n; }

/// One column block [j0, j0 + nc) of `cm_conv1x1`: y (M, .) = W (M, K) x (K, .) + bias [+ y]
/// [then ReLU]. With `packed` and f.packed (see pack_1x1, uses_packed): one
/// `cpu::packed_gemm` call, the epilogue inside the register tile. Otherwise the GEMM entry in a
/// one-thread scope, then the bias (and ReLU) while the block is in cache.
template <class B>
void conv1x1_block(const folded_conv& f, const float* x, index_t ldx, float* y, index_t ldy, index_t j0, index_t nc,
                   epilogue epi, bool accumulate, bool packed) {
  const index_t m = f.out_channels(), k = f.in_channels();
  if constexpr (packs_1x1<B>) {
    if (packed && f.packed.rows() == m) {
      cpu::packed_gemm<B>(f.packed, x + j0, ldx, y + j0, ldy, nc, {f.bias.data(), epi == epilogue::bias_relu, accumulate});
      return;
    }
  }
  {
    const single_thread_scope one;
    cpu::gemm(make_view<const float>(f.weight.data(), {m, k}), make_view<const float>(x + j0, {k, nc}, {ldx, 1}),
              make_view<float>(y + j0, {m, nc}, {ldy, 1}), 1.0f, accumulate ? 1.0f : 0.0f);
  }
  const float* bias = f.bias.data();
  for (index_t r = 0; r < m; ++r) {
    float* yr = y + r * ldy + j0;
    const float b = bias[r];
    if (epi == epilogue::bias_relu)
      for (index_t j = 0; j < nc; ++j) yr[j] = std::max(yr[j] + b, 0.0f);
    else
      for (index_t j = 0; j < nc; ++j) yr[j] += b;
  }
}

/// y (M, N) = W (M, K) x (K, N) + bias [+ y when accumulate] [then ReLU] for the 1x1 convolution
/// f (M = f.out_channels(), K = f.in_channels()), rows of x and y with strides ldx and ldy: on
/// the column blocks of `column_block(N)`, threads taking whole blocks. With f.packed and one
/// block (`uses_packed`) every output is one FMA chain over K in order (`cpu::packed_gemm`);
/// otherwise each block is one single-threaded GEMM call. Either way the bits depend on N only,
/// never on the thread count. With one block no team is opened (an idle team member
/// spinning on a sibling hyperthread slows the worker). Complexity: 2 M N K flops.
template <class B>
void cm_conv1x1(const folded_conv& f, const float* x, index_t ldx, float* y, index_t ldy, index_t n, epilogue epi,
                bool accumulate) {
  const index_t width = column_block(n), blocks = (n + width - 1) / width;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
  for (index_t blk = 0; blk < blocks; ++blk) {
    const index_t j0 = blk * width;
    conv1x1_block<B>(f, x, ldx, y, ldy, j0, std::min(width, n - j0), epi, accumulate, uses_packed(n));
  }
}

/// The residual FFN x += W2 ReLU(W1 x + b1) + b2 of a channel-major x (C, N), hidden width H, fused
/// per column block: both products of a block run back to back on one thread, so the block's
/// hidden activation (H x width floats of `h`, a (H, N) workspace) is still in L2 when the second
/// reads it and the whole FFN is one parallel region. Same blocks and calls as two
/// `cm_conv1x1`s, so the same bits. Complexity: 4 C H N flops.
template <class B>
void cm_ffn(const folded_conv& pw1, const folded_conv& pw2, float* x, index_t n, float* h) {
  const index_t width = column_block(n), blocks = (n + width - 1) / width;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
  for (index_t blk = 0; blk < blocks; ++blk) {
    const index_t j0 = blk * width, nc = std::min(width, n - j0);
    conv1x1_block<B>(pw1, x, n, h, n, j0, nc, epilogue::bias_relu, false, uses_packed(n));
    conv1x1_block<B>(pw2, h, n, x, n, j0, nc, epilogue::bias, true, uses_packed(n));
  }
}

/// Depthwise convolution of a channel-major activation: channel c (filter w[c] (k,k), bias[c])
/// over its `planes` consecutive planes of geometry g; ReLU after when asked. Rows wide enough
/// for the rolling-row kernel (e.g. 14x14 maps) run channel by channel over all planes; small
/// planes (7x7, 4x4, stride 2) run image by image in groups of 16 channels through
/// `cpu::depthwise_conv2d_strided`. Threads over channels or (image, group) units; each output
/// is computed the same way for any thread count. Complexity: 2 k^2 flops per output.
template <class B>
void cm_depthwise(const float* x, index_t channels, index_t planes, const float* w, const float* bias, float* y,
                  const cpu::conv_geometry& g, bool relu) {
  const index_t kk = g.k * g.k, pin = g.h * g.w, pout = g.out_h() * g.out_w();
  const index_t scratch = cpu::depthwise_scratch_floats<B>(g);
  [[maybe_unused]] const bool big = channels * planes * pout >= 4096;
  bool rolling = false;
#if MEMBOUND_HAS_AVX2
  if constexpr (cpu::detail::rolling_depthwise<B>())
    rolling = g.stride == 1 && g.k % 2 == 1 && g.k >= 3 &&
              cpu::detail::rolling_fits(g.out_w(), static_cast<index_t>(cpu::detail::lanes<typename B::arch>));
#endif
  if (rolling) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (big)
#endif
    for (index_t c = 0; c < channels; ++c) {
      float* yc = y + c * planes * pout;
      cpu::depthwise_conv2d_planes<B>(x + c * planes * pin, 1, w + c * kk, bias + c, yc, g, thread_scratch(scratch),
                                      planes);
      if (relu)
        for (index_t i = 0; i < planes * pout; ++i) yc[i] = std::max(yc[i], 0.0f);
    }
    return;
  }
  const index_t groups = (channels + 15) / 16, units = planes * groups;
  // Stride 2 on AVX-512: the channel-interleaved kernel at stride 1 over the whole plane (into
  // scratch), then every second row and column: the kept outputs are the same sums in the same
  // order, and small planes run ~4x faster this way than plane by plane.
  bool subsample = false;
#if MEMBOUND_HAS_AVX512
  if constexpr (cpu::detail::grouped_depthwise<B>()) subsample = g.stride == 2;
#endif
  const cpu::conv_geometry g1{g.h, g.w, g.k, 1, g.pad};
  const index_t p1 = g1.out_h() * g1.out_w();
  const index_t need = subsample ? cpu::depthwise_scratch_floats<B>(g1) + 16 * p1 : scratch;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (big)
#endif
  for (index_t u = 0; u < units; ++u) {
    const index_t img = u / groups, c0 = (u % groups) * 16, nc = std::min<index_t>(16, channels - c0);
    float* yc = y + (c0 * planes + img) * pout;
    float* sc = thread_scratch(need);
    if (subsample) {
      float* full = sc + cpu::depthwise_scratch_floats<B>(g1); // (nc, h1, w1)
      cpu::depthwise_conv2d_strided<B>(x + (c0 * planes + img) * pin, nc, planes * pin, w + c0 * kk, bias + c0, full,
                                       p1, g1, sc);
      const index_t ho = g.out_h(), wo = g.out_w(), w1 = g1.out_w();
      for (index_t c = 0; c < nc; ++c)
        for (index_t oy = 0; oy < ho; ++oy)
          for (index_t ox = 0; ox < wo; ++ox) yc[c * planes * pout + oy * wo + ox] = full[c * p1 + 2 * oy * w1 + 2 * ox];
    } else {
      cpu::depthwise_conv2d_strided<B>(x + (c0 * planes + img) * pin, nc, planes * pin, w + c0 * kk, bias + c0, yc,
                                       planes * pout, g, sc);
    }
    if (relu)
      for (index_t c = 0; c < nc; ++c)
        for (index_t i = 0; i < pout; ++i) yc[c * planes * pout + i] = std::max(yc[c * planes * pout + i], 0.0f);
  }
}

} // namespace detail
} // namespace vision
} // namespace v0_1
} // namespace membound
