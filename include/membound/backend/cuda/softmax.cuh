// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Row-wise stable softmax on the GPU: y[r,:] = exp(x[r,:] - max) / sum, one thread block
/// per row. Rows of up to 8192 floats are held in registers (one read, one write); longer rows
/// take three passes (max, sum of exp, write), the last two mostly served by L2.
/// Same semantics as `cpu::softmax`: a NaN or +inf in a row, or a row of all -inf, gives NaN
/// (as PyTorch). Compulsory traffic: read N*C floats, write N*C floats. In-place (y == x) allowed.

#include <cstdint>
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

/// Register-resident row: each thread keeps PerThread elements (coalesced: j = tid + i*Threads).
template <int Threads, int PerThread>
__global__ void __launch_bounds__(Threads) softmax_rows_regs_kernel(const float* __restrict__ x, float* y,
                                                                   std::int64_t cols, std::int64_t ldx, std::int64_t ldy) {
  __shared__ float smem[32];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * ldx;
  float* yr = y + static_cast<std::int64_t>(blockIdx.x) * ldy;
  const float neg_inf = -__int_as_float(0x7f800000);
  float v[PerThread];
#pragma unroll
  for (int i = 0; i < PerThread; ++i) {
    const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(i) * Threads;
    v[i] = j < cols ? xr[j] : neg_inf; // padding: exp(-inf - m) = 0 unless the whole row is -inf (NaN anyway)
  }
  float m = neg_inf;
#pragma unroll
  for (int i = 0; i < PerThread; ++i) m = nan_max(m, v[i]);
  m = block_reduce<true>(m, smem);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < PerThread; ++i) { v[i] = expf(v[i] - m); s += v[i]; }
  s = block_reduce<false>(s, smem);
  const float inv = 1.0f / s;
#pragma unroll
  for (int i = 0; i < PerThread; ++i) {
    const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(i) * Threads;
    if (j < cols) yr[j] = v[i] * inv;
  }
}
} // namespace detail

/// Softmax over each row of x (N,C) into y (N,C), both in device memory with unit column stride.
/// @param stream the CUDA stream to launch on (asynchronous; errors of the launch are checked).
/// @throws shape_error when extents differ, rank != 2, a column stride is not 1, or N >= 2^31.
/// @throws cuda_error when the launch fails. Complexity: O(N C), one block of 256 threads per row.
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
  constexpr int threads = 256;
  const auto grid = static_cast<unsigned>(x.extent(0));
  const index_t c = x.extent(1);
  auto regs = [&](auto per_thread) {
    detail::softmax_rows_regs_kernel<threads, decltype(per_thread)::value>
        <<<grid, threads, 0, stream>>>(x.data(), y.data(), c, x.stride(0), y.stride(0));
  };
  if (c <= threads * 1) regs(std::integral_constant<int, 1>{});
  else if (c <= threads * 4) regs(std::integral_constant<int, 4>{});
  else if (c <= threads * 8) regs(std::integral_constant<int, 8>{});
  else if (c <= threads * 16) regs(std::integral_constant<int, 16>{});
  else if (c <= threads * 32) regs(std::integral_constant<int, 32>{});
  else detail::softmax_rows_kernel<threads><<<grid, threads, 0, stream>>>(x.data(), y.data(), c, x.stride(0), y.stride(0));
  detail::check(cudaGetLastError(), "cuda::softmax_rows launch");
}

} // namespace cuda
} // namespace v0_1
} // namespace membound
