// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief CUDA glue shared by every `.cuh` kernel: the nvcc-only guard, `MEMBOUND_CUDA_CHECK`
/// (turns a cudaError_t into a typed `membound::cuda_error`) and warp/block reductions.
/// Never included by `membound/membound.hpp`; include it from .cu files compiled by nvcc.

#if !defined(__CUDACC__)
#error "membound/backend/cuda/*.cuh need nvcc (compile this translation unit as CUDA)"
#endif

#include <cuda_runtime.h>

#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {

/// A failed CUDA runtime call or kernel launch; the message holds the call and cudaGetErrorString.
class cuda_error : public error {
public:
  using error::error;
};

namespace cuda {
namespace detail {
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw cuda_error(membound::detail::concat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

/// NaN-propagating max (fmaxf drops NaN; softmax must not).
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/// Block-wide reduction through shared memory (blockDim.x a multiple of 32, <= 1024).
template <bool IsMax>
__device__ __forceinline__ float block_reduce(float v, float* smem /* 32 floats */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = IsMax ? warp_max(v) : warp_sum(v);
  __syncthreads(); // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < nwarps ? smem[lane] : (IsMax ? -__int_as_float(0x7f800000) : 0.0f);
  return IsMax ? warp_max(v) : warp_sum(v);
}
} // namespace detail
} // namespace cuda
} // namespace v0_1
} // namespace membound

/// Checks a CUDA runtime call: `MEMBOUND_CUDA_CHECK(cudaMalloc(&p, n));` @throws membound::cuda_error
#define MEMBOUND_CUDA_CHECK(call) ::membound::cuda::detail::check((call), #call)
