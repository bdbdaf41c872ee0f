// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Row-wise stable softmax on the GPU: y[r,:] = exp(x[r,:] - max) / sum, one thread block
/// per row. Rows of up to 32768 floats (8192 when rows are not 16-byte aligned) are held in
/// registers: one read and one write per element. Longer rows take three passes (max, sum of
/// exp, write), the last two mostly served by L2.
/// Same semantics as `cpu::softmax`: a NaN or +inf in a row, or a row of all -inf, gives NaN
/// (as PyTorch). Compulsory traffic: read N*C floats, write N*C floats. In-place (y == x) allowed.

#include <cstdint>
#include <algorithm>
#include <type_traits>

#include "membound/backend/cuda/common.cuh"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace cuda {
namespace detail {
template <int Threads>
__global__ void __launch_bounds__(Threads) softmax_rows_kernel(const float* __restrict__ x, float* y, std::int64_t cols,
                                                              std::int64_t ldx, std::int64_t ldy) {
  __shared__ float smem[32];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * ldx;
  float* yr = y + static_cast<std::int64_t>(blockIdx.x) * ldy;
  float m = -__int_as_float(0x7f800000);
  for (std::int64_t j = threadIdx.x; j < cols; j += Threads) m = nan_max(m, xr[j]);
  m = block_reduce<true>(m, smem);
  float s = 0.0f;
  for (std::int64_t j = threadIdx.x; j < cols; j += Threads) s += expf(xr[j] - m);
  s = block_reduce<false>(s, smem);
  const float inv = 1.0f / s;
  for (std::int64_t j = threadIdx.x; j < cols; j += Threads) yr[j] = expf(xr[j] - m) * inv;
}

/// Register-resident row: each thread keeps PerThread elements (Vec4: PerThread float4), strided
/// by the block size so that a warp's loads are coalesced. Needs cols <= blockDim.x * PerThread (*4).
template <int PerThread, bool Vec4>
__global__ void __launch_bounds__(1024) softmax_rows_regs_kernel(const float* __restrict__ x, float* y,
                                                                std::int64_t cols, std::int64_t ldx, std::int64_t ldy) {
  __shared__ float smem[32];
  constexpr int W = Vec4 ? 4 : 1; // floats per register slot
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * ldx;
  float* yr = y + static_cast<std::int64_t>(blockIdx.x) * ldy;
  const float neg_inf = -__int_as_float(0x7f800000);
  const std::int64_t slots = cols / W;
  float v[PerThread * W];
#pragma unroll
  for (int i = 0; i < PerThread; ++i) {
    const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(i) * blockDim.x;
    if constexpr (Vec4) {
      const float4 q = j < slots ? reinterpret_cast<const float4*>(xr)[j] : make_float4(neg_inf, neg_inf, neg_inf, neg_inf);
      v[4 * i] = q.x; v[4 * i + 1] = q.y; v[4 * i + 2] = q.z; v[4 * i + 3] = q.w;
    } else {
      v[i] = j < slots ? xr[j] : neg_inf; // padding: exp(-inf - m) = 0 unless the row is all -inf (NaN anyway)
    }
  }
  float m = neg_inf;
#pragma unroll
  for (int i = 0; i < PerThread * W; ++i) m = nan_max(m, v[i]);
  m = block_reduce<true>(m, smem);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < PerThread * W; ++i) { v[i] = expf(v[i] - m); s += v[i]; }
  s = block_reduce<false>(s, smem);
  const float inv = 1.0f / s;
#pragma unroll
  for (int i = 0; i < PerThread; ++i) {
    const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(i) * blockDim.x;
    if (j >= slots) continue;
    if constexpr (Vec4) {
      reinterpret_cast<float4*>(yr)[j] = make_float4(v[4 * i] * inv, v[4 * i + 1] * inv, v[4 * i + 2] * inv, v[4 * i + 3] * inv);
    } else {
      yr[j] = v[i] * inv;
    }
  }
}

/// Launches one register-resident variant; `variant` selects (block size, per-thread count).
inline bool launch_regs(const float* x, float* y, index_t rows, index_t cols, index_t ldx, index_t ldy, int threads,
                        int per_thread, bool vec4, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(rows);
  const auto t = static_cast<unsigned>(threads);
#define MEMBOUND_SOFTMAX_CASE(P, V)                                                                           \
  if (per_thread == P && vec4 == V) {                                                                         \
    softmax_rows_regs_kernel<P, V><<<grid, t, 0, stream>>>(x, y, cols, ldx, ldy);                           \
    return true;                                                                                              \
  }
  MEMBOUND_SOFTMAX_CASE(1, false) MEMBOUND_SOFTMAX_CASE(2, false) MEMBOUND_SOFTMAX_CASE(4, false)
  MEMBOUND_SOFTMAX_CASE(8, false) MEMBOUND_SOFTMAX_CASE(1, true) MEMBOUND_SOFTMAX_CASE(2, true)
  MEMBOUND_SOFTMAX_CASE(4, true) MEMBOUND_SOFTMAX_CASE(8, true)
#undef MEMBOUND_SOFTMAX_CASE
  return false;
}
} // namespace detail

/// Softmax over each row of x (N,C) into y (N,C), both in device memory with unit column stride.
/// @param stream the CUDA stream to launch on (asynchronous; errors of the launch are checked).
/// @throws shape_error when extents differ, rank != 2, a column stride is not 1, or N >= 2^31.
/// @throws cuda_error when the launch fails. Complexity: O(N C), one thread block (64..1024 threads) per row.
/// In place: y may equal x (each block reads its row before writing it); other overlaps are not allowed.
inline void softmax_rows(view<const float> x, view<float> y, cudaStream_t stream = nullptr) {
  MEMBOUND_EXPECTS(x.rank() == 2 && y.rank() == 2, shape_error, "cuda::softmax_rows: ranks ", x.rank(), " and ",
                   y.rank(), ", expected 2 (N,C)");
  MEMBOUND_EXPECTS(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1), shape_error, "cuda::softmax_rows: x (",
                   x.extent(0), ",", x.extent(1), ") but y (", y.extent(0), ",", y.extent(1), ")");
  MEMBOUND_EXPECTS((x.stride(1) == 1 || x.extent(1) <= 1) && (y.stride(1) == 1 || y.extent(1) <= 1), shape_error,
                   "cuda::softmax_rows: column strides ", x.stride(1), " and ", y.stride(1), ", expected 1");
  MEMBOUND_EXPECTS(x.extent(0) < (index_t(1) << 31), shape_error, "cuda::softmax_rows: ", x.extent(0),
                   " rows exceed the grid limit 2^31-1");
  if (x.extent(0) == 0 || x.extent(1) == 0) return;
  const index_t c = x.extent(1);
  // Rows of up to 1024 * 8 * 4 floats live in registers: float4 slots when rows are 16-byte aligned
  // (pointers and row strides), else scalar slots; the block size is the smallest multiple of 32
  // that covers the row with the chosen per-thread count. Longer rows take the three-pass kernel.
  const bool vec4 = c % 4 == 0 && x.stride(0) % 4 == 0 && y.stride(0) % 4 == 0 &&
                    reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0 && reinterpret_cast<std::uintptr_t>(y.data()) % 16 == 0;
  const index_t slots = vec4 ? c / 4 : c;
  bool launched = false;
  if (slots <= index_t(1024) * 8) {
    // Prefer many registers per thread with a block of 128..1024 threads (measured on an H200 at
    // 8192 columns: 256 x 8 float4 reaches 97% of a device copy, 1024 x 2 94%, scalar slots 60%).
    int per_thread = 1;
    for (int p : {8, 4, 2}) {
      const index_t need = (slots + p - 1) / p;
      if (need >= 128 && need <= 1024) { per_thread = p; break; }
    }
    const index_t need = (slots + per_thread - 1) / per_thread;
    const int threads = static_cast<int>(std::max<index_t>(32, (need + 31) / 32 * 32));
    launched = detail::launch_regs(x.data(), y.data(), x.extent(0), c, x.stride(0), y.stride(0), threads, per_thread,
                                   vec4, stream);
  }
  if (!launched) {
    constexpr int threads = 256;
    detail::softmax_rows_kernel<threads><<<static_cast<unsigned>(x.extent(0)), threads, 0, stream>>>(
        x.data(), y.data(), c, x.stride(0), y.stride(0));
  }
  detail::check(cudaGetLastError(), "cuda::softmax_rows launch");
}

} // namespace cuda
} // namespace v0_1
} // namespace membound
