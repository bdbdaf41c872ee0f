// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief xsimd glue shared by the CPU kernels: unaligned and partial (tail) loads and stores,
/// non-temporal stores, gathers, horizontal reductions, bf16/f16 widening and narrowing of one batch, and
/// a fast vector `exp` (and `exp2_clamped`, its branch-free base-2 form for softmax epilogues). Everything is O(1) per batch and templated on an xsimd architecture `A`.
///
/// Fast exp accuracy: Cody-Waite reduction x = n ln2 + r (two-constant ln2), the Cephes degree-7
/// polynomial for exp(r) on |r| <= ln2/2 (Horner with FMA), scaling by 2^n. AVX-512 scales with
/// vscalefps (overflow and gradual underflow built in, no branch); the other architectures build
/// 2^n in the exponent bits, in two halves on a rarely taken path near the ends of the range.
/// Measured maximum error against the correctly rounded exp on a sweep of every 61st float in
/// [-104, 89] (tests/unit/backend/kernels.test.cpp): 1 ulp on sse4, avx2 and avx512; tests allow
/// 2. Special values: exp(-inf) = 0, exp(+inf) = inf, NaN -> NaN, x > 88.72 -> inf, subnormal
/// results rounded, x < -103.97 -> 0.
/// Raw intrinsics appear only where xsimd 8.1 lacks the operation (masked tails, streaming
/// stores, 32 <-> 16 bit narrowing, F16C), each guarded by the architecture so every tag compiles.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include "membound/backend/tags.hpp"
#include "membound/config.hpp"
#include "membound/core/dtype.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {
namespace detail {

template <class A>
using fbatch = xsimd::batch<float, A>;
template <class A>
using ibatch = xsimd::batch<std::int32_t, A>;
template <class A>
using ubatch = xsimd::batch<std::uint32_t, A>;
/// Number of float lanes of architecture A.
template <class A>
inline constexpr std::size_t lanes = fbatch<A>::size;

template <class A>
inline constexpr bool is_avx512 = std::is_base_of_v<xsimd::avx512f, A>;
template <class A>
inline constexpr bool is_avx2 = std::is_base_of_v<xsimd::avx2, A>;
template <class A>
inline constexpr bool is_sse41 = std::is_base_of_v<xsimd::sse4_1, A>;

/// Refuses a backend that is neither scalar nor an xsimd architecture.
template <class B>
constexpr void check_cpu_backend() {
  static_assert(backend::is_cpu_backend<B>, "membound: this kernel needs backend::scalar or backend::simd<Arch>");
}

/// f(integral_constant<int, m>) for the runtime m in [1, M]: a run-time count as a compile-time
/// one, for register tiles whose edge tiles are smaller.
template <int M, class F>
MEMBOUND_ALWAYS_INLINE void with_count(std::ptrdiff_t m, F&& f) {
  if constexpr (M > 1) {
    if (m < M) {
      with_count<M - 1>(m, f);
      return;
    }
  }
  f(std::integral_constant<int, M>{});
}

// ---- fused multiply-add ----------------------------------------------------------------------

/// x * y + z with one rounding. xsimd 8.1 has no AVX-512 fma kernel (it falls back to x * y + z,
/// two instructions and two roundings under -ffp-contract=off), so AVX-512 calls vfmadd directly;
/// fma3<avx2> uses xsimd's vfmadd; sse4 has no FMA and gets a multiply and an add.
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> fma(const fbatch<A>& x, const fbatch<A>& y, const fbatch<A>& z) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) return _mm512_fmadd_ps(x, y, z);
#endif
  return xsimd::fma(x, y, z);
}
/// z - x * y with one rounding (see fma).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> fnma(const fbatch<A>& x, const fbatch<A>& y, const fbatch<A>& z) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) return _mm512_fnmadd_ps(x, y, z);
#endif
  return xsimd::fnma(x, y, z);
}

/// Marks a lambda always-inline (kernels pass their per-batch operation to `transform` as one).
#if defined(__GNUC__) || defined(__clang__)
#define MEMBOUND_INLINE_LAMBDA __attribute__((always_inline))
#else
#define MEMBOUND_INLINE_LAMBDA
#endif

// ---- loads and stores ------------------------------------------------------------------------

template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> loadu(const float* p) noexcept {
  return fbatch<A>::load_unaligned(p);
}
template <class A>
MEMBOUND_ALWAYS_INLINE void storeu(float* p, const fbatch<A>& v) noexcept {
  v.store_unaligned(p);
}

/// Loads n < lanes elements, the other lanes set to `fill` (never reads past p + n).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> load_partial(const float* p, std::size_t n, float fill) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
  } else
#endif
  {
    alignas(64) float buf[lanes<A>];
    for (std::size_t i = 0; i < lanes<A>; ++i) buf[i] = i < n ? p[i] : fill;
    return fbatch<A>::load_aligned(buf);
  }
}
/// Stores the first n < lanes lanes (never writes past p + n).
template <class A>
MEMBOUND_ALWAYS_INLINE void store_partial(float* p, std::size_t n, const fbatch<A>& v) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  } else
#endif
  {
    alignas(64) float buf[lanes<A>];
    v.store_aligned(buf);
    for (std::size_t i = 0; i < n; ++i) p[i] = buf[i];
  }
}

/// Non-temporal store of a full batch to an address aligned to the batch size (bypasses the
/// caches: no read-for-ownership, the line goes straight to memory). Call `stream_fence` after.
template <class A>
MEMBOUND_ALWAYS_INLINE void store_stream(float* p, const fbatch<A>& v) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) { _mm512_stream_ps(p, v); return; }
#endif
#if defined(__AVX__)
  if constexpr (lanes<A> == 8 && is_avx2<A>) { _mm256_stream_ps(p, v); return; }
#endif
#if defined(__SSE2__)
  if constexpr (lanes<A> == 4 && is_sse41<A>) { _mm_stream_ps(p, v); return; }
#endif
  v.store_aligned(p);
}
/// Orders the preceding non-temporal stores before any later store.
MEMBOUND_ALWAYS_INLINE void stream_fence() noexcept {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

/// Software prefetch of the cache line holding p (a hint: never faults, so it may point past the
/// end of a buffer): into all cache levels with the default Locality 3, into L2 and below with
/// 2 (prefetcht1). Used where a kernel alternates a memory-bound phase with a compute-bound one
/// (softmax: the compute phase pulls the next block in) or streams weights (packed_gemm).
template <int Locality = 3>
MEMBOUND_ALWAYS_INLINE void prefetch(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, Locality);
#else
  (void)p;
#endif
}

/// Output size (bytes) above which kernels write their output with non-temporal stores: large
/// outputs would only evict the input from the caches, and streaming saves the read-for-ownership.
inline constexpr std::size_t stream_threshold_bytes = std::size_t(8) << 20;

/// y[i] = f(x[i]) batch by batch; with `stream`, full batches are written with non-temporal stores
/// once y is 64-byte aligned. y may alias x exactly (each batch is read before it is written).
template <class A, class F>
MEMBOUND_ALWAYS_INLINE void transform(const float* x, float* y, std::size_t n, bool stream, F f) noexcept {
  constexpr std::size_t L = lanes<A>;
  std::size_t i = 0;
  if (stream && (reinterpret_cast<std::uintptr_t>(y) & 3u) == 0) {
    // Head: reach a 64-byte boundary of y with partial batches.
    std::size_t head = ((64u - (reinterpret_cast<std::uintptr_t>(y) & 63u)) & 63u) / sizeof(float);
    if (head > n) head = n;
    while (i < head) {
      const std::size_t m = head - i < L ? head - i : L;
      if (m == L) storeu<A>(y + i, f(loadu<A>(x + i)));
      else store_partial<A>(y + i, m, f(load_partial<A>(x + i, m, 0.f)));
      i += m;
    }
    for (; i + 2 * L <= n; i += 2 * L) {
      const auto v0 = f(loadu<A>(x + i));
      const auto v1 = f(loadu<A>(x + i + L));
      store_stream<A>(y + i, v0);
      store_stream<A>(y + i + L, v1);
    }
    for (; i + L <= n; i += L) store_stream<A>(y + i, f(loadu<A>(x + i)));
    stream_fence();
  } else {
    for (; i + 2 * L <= n; i += 2 * L) {
      const auto v0 = f(loadu<A>(x + i));
      const auto v1 = f(loadu<A>(x + i + L));
      storeu<A>(y + i, v0);
      storeu<A>(y + i + L, v1);
    }
    for (; i + L <= n; i += L) storeu<A>(y + i, f(loadu<A>(x + i)));
  }
  if (i < n) store_partial<A>(y + i, n - i, f(load_partial<A>(x + i, n - i, 0.f)));
}

/// y[i] = f(x[i], w[i]): `transform` with a second input read at the same offsets.
template <class A, class F>
MEMBOUND_ALWAYS_INLINE void transform2(const float* x, const float* w, float* y, std::size_t n, bool stream, F f) noexcept {
  constexpr std::size_t L = lanes<A>;
  std::size_t i = 0;
  if (stream && (reinterpret_cast<std::uintptr_t>(y) & 3u) == 0) {
    std::size_t head = ((64u - (reinterpret_cast<std::uintptr_t>(y) & 63u)) & 63u) / sizeof(float);
    if (head > n) head = n;
    while (i < head) {
      const std::size_t m = head - i < L ? head - i : L;
      store_partial<A>(y + i, m, f(load_partial<A>(x + i, m, 0.f), load_partial<A>(w + i, m, 0.f)));
      i += m;
    }
    for (; i + L <= n; i += L) store_stream<A>(y + i, f(loadu<A>(x + i), loadu<A>(w + i)));
    stream_fence();
  } else {
    for (; i + L <= n; i += L) storeu<A>(y + i, f(loadu<A>(x + i), loadu<A>(w + i)));
  }
  if (i < n) store_partial<A>(y + i, n - i, f(load_partial<A>(x + i, n - i, 0.f), load_partial<A>(w + i, n - i, 0.f)));
}

// ---- gathers ----------------------------------------------------------------------------------

/// base[idx[k]] for every lane k (idx >= 0, in bounds). AVX-512 and AVX2 use vgatherdps (xsimd
/// 8.1's batch::gather does not reach it here); other architectures load lane by lane.
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> gather(const float* base, const ibatch<A>& idx) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) return _mm512_i32gather_ps(idx, base, 4);
#endif
#if defined(__AVX2__)
  if constexpr (is_avx2<A>) return _mm256_i32gather_ps(base, idx, 4);
#endif
  alignas(64) std::int32_t i[lanes<A>];
  alignas(64) float v[lanes<A>];
  idx.store_aligned(i);
  for (std::size_t k = 0; k < lanes<A>; ++k) v[k] = base[i[k]];
  return fbatch<A>::load_aligned(v);
}

/// Two adjacent floats per lane: a[k] = base[idx[k]], b[k] = base[idx[k] + 1] (idx >= 0, in
/// bounds, base + idx 8-byte aligned for the wide paths). AVX-512 and AVX2 fetch each pair as one
/// 64-bit element (vgatherdpd: half the gathered elements of two float gathers) and split the
/// pairs in registers; other architectures make two `gather`s.
template <class A>
MEMBOUND_ALWAYS_INLINE void gather_pairs(const float* base, const ibatch<A>& idx, fbatch<A>& a, fbatch<A>& b) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    const __m512i ix = idx;
    const double* bd = reinterpret_cast<const double*>(base);
    // The masked forms with a zero source: GCC 12 warns that the unmasked ones read an
    // uninitialised register.
    const __m512d z = _mm512_setzero_pd();
    const __m512 lo = _mm512_castpd_ps(_mm512_mask_i32gather_pd(z, 0xff, _mm512_castsi512_si256(ix), bd, 4));    // lanes 0..7
    const __m512 hi = _mm512_castpd_ps(_mm512_mask_i32gather_pd(z, 0xff, _mm512_extracti64x4_epi64(ix, 1), bd, 4)); // lanes 8..15
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    a = _mm512_permutex2var_ps(lo, even, hi);
    b = _mm512_permutex2var_ps(lo, odd, hi);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (is_avx2<A>) {
    const __m256i ix = idx;
    const double* bd = reinterpret_cast<const double*>(base);
    const __m256d z = _mm256_setzero_pd(), all = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    const __m256 lo = _mm256_castpd_ps(_mm256_mask_i32gather_pd(z, bd, _mm256_castsi256_si128(ix), all, 4));      // lanes 0..3
    const __m256 hi = _mm256_castpd_ps(_mm256_mask_i32gather_pd(z, bd, _mm256_extracti128_si256(ix, 1), all, 4)); // lanes 4..7
    // shuffle_ps gives lanes (0 1 4 5 | 2 3 6 7); the 64-bit permute restores 0..7.
    a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
    b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
    return;
  }
#endif
  a = gather<A>(base, idx);
  b = gather<A>(base + 1, idx);
}

// ---- horizontal reductions -------------------------------------------------------------------

template <class A>
MEMBOUND_ALWAYS_INLINE float hsum(const fbatch<A>& v) noexcept {
  return xsimd::hadd(v);
}
/// Largest lane (NaN lanes must be handled by the caller).
template <class A>
MEMBOUND_ALWAYS_INLINE float hmax(const fbatch<A>& v) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) return _mm512_reduce_max_ps(v);
#endif
  alignas(64) float buf[lanes<A>];
  v.store_aligned(buf);
  float m = buf[0];
  for (std::size_t i = 1; i < lanes<A>; ++i) m = buf[i] > m ? buf[i] : m;
  return m;
}

// ---- fast exp --------------------------------------------------------------------------------

/// c0 x^n + c1 x^(n-1) + ... + cn by Horner's rule with FMA (the highest coefficient first).
template <class A, class... C>
MEMBOUND_ALWAYS_INLINE fbatch<A> horner(const fbatch<A>& x, float c0, C... cs) noexcept {
  fbatch<A> p(c0);
  ((p = detail::fma<A>(p, x, fbatch<A>(static_cast<float>(cs)))), ...);
  return p;
}

template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> exp_poly(const fbatch<A>& r) noexcept {
  // Cephes expf: exp(r) ~ 1 + r + r^2 P(r) on |r| <= ln2/2.
  const fbatch<A> p = horner<A>(r, 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f,
                                1.6666665459e-1f, 5.0000001201e-1f);
  return detail::fma<A>(p, r * r, r + fbatch<A>(1.f));
}

/// exp(x) for every lane; <= 1 ulp (measured) from the correctly rounded result (see the file
/// comment); handles +-inf, NaN, overflow and underflow like std::exp. O(1).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> exp(const fbatch<A>& x) noexcept {
  using B = fbatch<A>;
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    // AVX-512: clamp (vminps/vmaxps return their second operand for NaN, so NaN passes through),
    // round with vrndscaleps, scale with vscalefps (exact 2^n scaling with one rounding, overflow
    // to inf and gradual underflow to 0 built in): no special-case branch, 14 operations.
    const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-104.f), _mm512_min_ps(_mm512_set1_ps(89.f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_scalef_ps(p, n);
  }
#endif
  const B log2e(1.44269504088896341f), shifter(12582912.f); // 1.5 * 2^23: rounds to an integer
  const B ln2_hi(0.693359375f), ln2_lo(-2.12194440e-4f);
  if (MEMBOUND_LIKELY(xsimd::all(xsimd::abs(x) <= B(87.f)))) {
    const B t = detail::fma<A>(x, log2e, shifter); // low mantissa bits of t hold n = round(x log2 e)
    const B n = t - shifter;
    B r = detail::fnma<A>(n, ln2_hi, x);
    r = detail::fnma<A>(n, ln2_lo, r);
    const auto e = (xsimd::bitwise_cast<ibatch<A>>(t) + ibatch<A>(127)) << 23; // 2^n, n in [-126, 126]
    return exp_poly<A>(r) * xsimd::bitwise_cast<B>(e);
  }
  // Slow path (rare): clamp, scale by 2^n in two halves so that n in [-159, 144] stays exact.
  const B xc = xsimd::min(xsimd::max(x, B(-110.f)), B(100.f)); // NaN lanes are fixed below
  const B t = detail::fma<A>(xc, log2e, shifter);
  const B n = t - shifter;
  B r = detail::fnma<A>(n, ln2_hi, xc);
  r = detail::fnma<A>(n, ln2_lo, r);
  const ibatch<A> ni = xsimd::bitwise_cast<ibatch<A>>(t) - xsimd::bitwise_cast<ibatch<A>>(shifter);
  const ibatch<A> n1 = ni >> 1; // arithmetic shift: floor(n / 2)
  const ibatch<A> n2 = ni - n1;
  const B s1 = xsimd::bitwise_cast<B>((n1 + ibatch<A>(127)) << 23);
  const B s2 = xsimd::bitwise_cast<B>((n2 + ibatch<A>(127)) << 23);
  const B y = (exp_poly<A>(r) * s1) * s2;
  return xsimd::select(xsimd::isnan(x), x + x, y);
}

/// 2^f on |f| <= 1/2: the degree-6 relative-error minimax polynomial of `exp2_clamped` (Horner
/// with FMA).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> exp2_poly(const fbatch<A>& f) noexcept {
  return horner<A>(f, 1.5345810971e-04f, 1.3399930904e-03f, 9.6184890717e-03f, 5.5503286421e-02f, 2.4022646248e-01f,
                   6.9314718246e-01f, 1.f);
}

/// 2^y for every lane, without a branch, for the attention epilogues that fold log2(e) into their
/// scale (softmax terms exp(x - m) = 2^((x - m) log2 e)). y is clamped to [-127, 127] first: 2^y
/// below about 2^-126.5 gives 0 (AVX-512: the subnormal 2^-127 p) instead of a subnormal, above
/// 2^127 gives 2^127 p instead of inf; NaN stays NaN. n = round(y), f = y - n in [-1/2, 1/2], a
/// degree-6 polynomial for 2^f (a relative-error minimax fit made for this function; 1.9e-9 in
/// exact arithmetic, 1.3 ulp after float Horner with FMA), scaled by 2^n in the exponent bits
/// (vscalefps on AVX-512). Measured against exp2 in double (tests/unit/backend/kernels.test.cpp).
/// 13 operations on AVX2 (the branchy `exp` above takes 19 on its fast path). O(1).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> exp2_clamped(const fbatch<A>& y) noexcept {
  using B = fbatch<A>;
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    // vminps / vmaxps return their second operand when either is NaN: y's NaN survives both.
    const __m512 yc = _mm512_max_ps(_mm512_set1_ps(-127.f), _mm512_min_ps(_mm512_set1_ps(127.f), y));
    const __m512 n = _mm512_roundscale_ps(yc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_scalef_ps(exp2_poly<A>(_mm512_sub_ps(yc, n)), n);
  }
#endif
  B yc;
#if defined(__AVX__)
  if constexpr (lanes<A> == 8)
    yc = _mm256_max_ps(_mm256_set1_ps(-127.f), _mm256_min_ps(_mm256_set1_ps(127.f), y));
  else
#endif
  if constexpr (lanes<A> == 4)
    yc = _mm_max_ps(_mm_set1_ps(-127.f), _mm_min_ps(_mm_set1_ps(127.f), y));
  else
    yc = xsimd::select(xsimd::isnan(y), y, xsimd::min(xsimd::max(y, B(-127.f)), B(127.f)));
  const B shifter(12582912.f); // 1.5 * 2^23: adding it rounds to an integer, held in the low bits
  const B t = yc + shifter;
  // n in [-127, 127]: n = -127 gives the bit pattern of +0.
  const auto e = (xsimd::bitwise_cast<ibatch<A>>(t) + ibatch<A>(127)) << 23;
  return exp2_poly<A>(yc - (t - shifter)) * xsimd::bitwise_cast<B>(e);
}

// ---- 16-bit widening and narrowing (one batch of lanes<A> elements) --------------------------

/// bf16 bits -> f32 by a 16-bit shift (exact; NaN payloads are not quieted: for arithmetic).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> widen_bf16(const bf16* p) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
#endif
#if defined(__AVX2__)
  if constexpr (lanes<A> == 8 && is_avx2<A>) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
#endif
#if defined(__SSE4_1__)
  if constexpr (lanes<A> == 4 && is_sse41<A>) {
    const __m128i w = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm_castsi128_ps(_mm_slli_epi32(w, 16));
  }
#endif
  alignas(64) std::uint32_t buf[lanes<A>];
  for (std::size_t i = 0; i < lanes<A>; ++i) buf[i] = static_cast<std::uint32_t>(p[i].bits) << 16;
  return xsimd::bitwise_cast<fbatch<A>>(ubatch<A>::load_aligned(buf));
}

/// bf16 -> f32 exactly as `bf16::to_float` (NaN gets its quiet bit).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> widen_bf16_exact(const bf16* p) noexcept {
  // Signed compares only (the magnitudes are < 2^31): unsigned ones are emulated on sse4/avx2.
  const ibatch<A> u = xsimd::bitwise_cast<ibatch<A>>(widen_bf16<A>(p));
  const auto nan = (u & ibatch<A>(0x7fffffff)) > ibatch<A>(0x7f800000);
  return xsimd::bitwise_cast<fbatch<A>>(xsimd::select(nan, u | ibatch<A>(0x00400000), u));
}

/// Narrows lanes<A> 32-bit values, each < 2^16, to 16 bits and stores them at p.
template <class A>
MEMBOUND_ALWAYS_INLINE void store_u16(std::uint16_t* p, const ubatch<A>& v) noexcept {
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (lanes<A> == 8 && is_avx2<A>) {
    const __m256i packed = _mm256_packus_epi32(v, v); // per 128-bit half: a0..3 a0..3 | b0..3 b0..3
    const __m256i ordered = _mm256_permute4x64_epi64(packed, 0x08); // a, b in the low 128 bits
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(ordered));
    return;
  }
#endif
#if defined(__SSE4_1__)
  if constexpr (lanes<A> == 4 && is_sse41<A>) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(v, v));
    return;
  }
#endif
  alignas(64) std::uint32_t buf[lanes<A>];
  v.store_aligned(buf);
  for (std::size_t i = 0; i < lanes<A>; ++i) p[i] = static_cast<std::uint16_t>(buf[i]);
}

/// f32 -> bf16 bit patterns exactly as `bf16::from_float` (round to nearest even, quiet NaN,
/// subnormals rounded, never flushed), computed with integer operations.
template <class A>
MEMBOUND_ALWAYS_INLINE ubatch<A> bf16_bits(const fbatch<A>& x) noexcept {
  using I = ibatch<A>; // signed compares and wrapping adds; the final mask makes the shifts logical
  const I u = xsimd::bitwise_cast<I>(x);
  const auto nan = (u & I(0x7fffffff)) > I(0x7f800000);
  const I rounded = ((u + (I(0x7fff) + ((u >> 16) & I(1)))) >> 16) & I(0xffff);
  return xsimd::bitwise_cast<ubatch<A>>(xsimd::select(nan, ((u >> 16) & I(0xffff)) | I(0x0040), rounded));
}

#if defined(__F16C__)
/// True when the F16C / AVX-512F half conversions can serve architecture A.
template <class A>
inline constexpr bool has_f16c = is_avx512<A> || (lanes<A> == 8 && is_avx2<A>) || (lanes<A> == 4 && is_sse41<A>);
#else
template <class A>
inline constexpr bool has_f16c = false;
#endif

/// f16 -> f32 exactly as `f16::to_float` (vcvtph2ps: exact, subnormals kept, NaN quieted).
template <class A>
MEMBOUND_ALWAYS_INLINE fbatch<A> widen_f16(const f16* p) noexcept {
#if defined(__F16C__)
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#endif
  if constexpr (lanes<A> == 8 && is_avx2<A>) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if constexpr (lanes<A> == 4 && is_sse41<A>) return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#endif
  alignas(64) float buf[lanes<A>];
  for (std::size_t i = 0; i < lanes<A>; ++i) buf[i] = p[i].to_float();
  return fbatch<A>::load_aligned(buf);
}

/// f32 -> f16 exactly as `f16::from_float` (vcvtps2ph, round to nearest even: subnormal results
/// are rounded, not flushed; overflow -> inf; NaN -> quiet NaN with the top payload bits).
template <class A>
MEMBOUND_ALWAYS_INLINE void narrow_f16(f16* p, const fbatch<A>& x) noexcept {
#if defined(__F16C__)
#if MEMBOUND_HAS_AVX512
  if constexpr (is_avx512<A>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    return;
  }
#endif
  if constexpr (lanes<A> == 8 && is_avx2<A>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    return;
  }
  if constexpr (lanes<A> == 4 && is_sse41<A>) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    return;
  }
#endif
  alignas(64) float buf[lanes<A>];
  x.store_aligned(buf);
  for (std::size_t i = 0; i < lanes<A>; ++i) p[i] = f16::from_float(buf[i]);
}

} // namespace detail
} // namespace cpu
} // namespace v0_1
} // namespace membound
