// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Backend tags, the defaulted first template parameter of every kernel entry point.
///
/// `backend::scalar` always compiles and is the oracle (the scalar twin). `backend::simd<Arch>`
/// wraps an xsimd architecture; the aliases `sse4`, `avx2`, `avx512` exist only when the compiler
/// flags enable them (`MEMBOUND_HAS_AVX2`, `MEMBOUND_HAS_AVX512`). `best_cpu` is the widest one
/// enabled, chosen at compile time (a header-only library cannot dispatch at run time without
/// per-architecture translation units). `eigen` and `onednn` select the GEMM backend; `cuda` tags
/// the CUDA specialisations in `.cuh` headers.

#include <string_view>
#include <type_traits>

#if !defined(MEMBOUND_NO_XSIMD)
#include <xsimd/xsimd.hpp>
#endif

namespace membound {
inline namespace v0_1 {
namespace backend {

/// Portable scalar code, one element at a time; the reference every SIMD kernel is tested against.
struct scalar {
  static constexpr std::string_view name = "scalar";
};

#if !defined(MEMBOUND_NO_XSIMD)
/// SIMD code over the xsimd architecture `Arch` (e.g. `xsimd::avx512bw`).
template <class Arch>
struct simd {
  using arch = Arch;
  using batch = xsimd::batch<float, Arch>;
  static constexpr std::string_view name = Arch::name();
  static constexpr std::size_t lanes = batch::size;
};
#endif

#if !defined(MEMBOUND_NO_XSIMD) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define MEMBOUND_HAS_AVX512 1
using avx512 = simd<xsimd::avx512bw>;
#else
#define MEMBOUND_HAS_AVX512 0
#endif
#if !defined(MEMBOUND_NO_XSIMD) && defined(__AVX2__) && defined(__FMA__)
#define MEMBOUND_HAS_AVX2 1
using avx2 = simd<xsimd::fma3<xsimd::avx2>>;
#else
#define MEMBOUND_HAS_AVX2 0
#endif
#if !defined(MEMBOUND_NO_XSIMD) && defined(__SSE4_2__)
#define MEMBOUND_HAS_SSE4 1
using sse4 = simd<xsimd::sse4_2>;
#else
#define MEMBOUND_HAS_SSE4 0
#endif

/// The widest CPU backend the compiler flags enable (scalar when none is).
#if MEMBOUND_HAS_AVX512
using best_cpu = avx512;
#elif MEMBOUND_HAS_AVX2
using best_cpu = avx2;
#elif MEMBOUND_HAS_SSE4
using best_cpu = sse4;
#else
using best_cpu = scalar;
#endif

/// GEMM through Eigen's matrix product (always available).
struct eigen {
  static constexpr std::string_view name = "eigen";
};
/// GEMM through oneDNN's `dnnl_sgemm` (available when MEMBOUND_HAS_ONEDNN is 1).
struct onednn {
  static constexpr std::string_view name = "onednn";
};
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
/// The GEMM backend used when none is named: oneDNN when the build found it, else Eigen.
using default_gemm = onednn;
#else
using default_gemm = eigen;
#endif

/// CUDA specialisations (only in `.cuh` headers, compiled by nvcc).
struct cuda {
  static constexpr std::string_view name = "cuda";
};

/// True for the tags usable with the CPU element-wise / reduction kernels.
template <class B>
inline constexpr bool is_cpu_backend = std::is_same_v<B, scalar>
#if !defined(MEMBOUND_NO_XSIMD)
                                       || requires { typename B::arch; }
#endif
    ;

} // namespace backend
} // namespace v0_1
} // namespace membound
