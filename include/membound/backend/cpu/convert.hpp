// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Conversions between float and the 16-bit storage types over spans:
/// `convert(span<const float>, span<bf16>)`, `convert(span<const bf16>, span<float>)` and the same
/// for f16. O(n). Every backend gives exactly the bits of `bf16::from_float` / `to_float` and
/// `f16::from_float` / `to_float` (tested exhaustively: all 65,536 16-bit patterns, and all 2^32
/// float patterns when MEMBOUND_EXHAUSTIVE is 1).
///
/// Contract (from core/dtype.hpp): 16 -> 32 is exact (NaN gets its quiet bit); 32 -> 16 rounds
/// to nearest even, overflow gives +-inf, NaN stays a quiet NaN with sign and top payload bits,
/// subnormals are rounded, never flushed. Hence f32 -> bf16 uses integer operations, not the
/// AVX-512 BF16 instruction vcvtneps2bf16 (which flushes subnormal inputs to zero); f16 uses the
/// F16C / AVX-512F instructions vcvtps2ph (imm = round to nearest) and vcvtph2ps, which match the
/// contract bit for bit and ignore MXCSR's DAZ/FTZ. Float outputs beyond 8 MiB are streamed.

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/dtype.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
static_assert(sizeof(bf16) == sizeof(std::uint16_t) && sizeof(f16) == sizeof(std::uint16_t));

template <class A>
void to_bf16(const float* x, bf16* y, std::size_t n) noexcept {
  constexpr std::size_t L = lanes<A>;
  std::size_t i = 0;
  auto* out = reinterpret_cast<std::uint16_t*>(y);
  for (; i + 2 * L <= n; i += 2 * L) {
    store_u16<A>(out + i, bf16_bits<A>(loadu<A>(x + i)));
    store_u16<A>(out + i + L, bf16_bits<A>(loadu<A>(x + i + L)));
  }
  for (; i + L <= n; i += L) store_u16<A>(out + i, bf16_bits<A>(loadu<A>(x + i)));
  for (; i < n; ++i) y[i] = bf16::from_float(x[i]);
}

template <class A>
void to_f16(const float* x, f16* y, std::size_t n) noexcept {
  constexpr std::size_t L = lanes<A>;
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    narrow_f16<A>(y + i, loadu<A>(x + i));
    narrow_f16<A>(y + i + L, loadu<A>(x + i + L));
  }
  for (; i + L <= n; i += L) narrow_f16<A>(y + i, loadu<A>(x + i));
  for (; i < n; ++i) y[i] = f16::from_float(x[i]);
}

/// 16 -> 32 bit: `widen(p)` loads one batch; full batches streamed when `stream` and y aligned.
template <class A, class T, class W>
void from_16(const T* x, float* y, std::size_t n, bool stream, W widen) noexcept {
  constexpr std::size_t L = lanes<A>;
  std::size_t i = 0;
  if (stream && (reinterpret_cast<std::uintptr_t>(y) & 3u) == 0) {
    for (; i < n && (reinterpret_cast<std::uintptr_t>(y + i) & 63u) != 0; ++i) y[i] = x[i].to_float();
    for (; i + L <= n; i += L) store_stream<A>(y + i, widen(x + i));
    stream_fence();
  } else {
    for (; i + 2 * L <= n; i += 2 * L) {
      storeu<A>(y + i, widen(x + i));
      storeu<A>(y + i + L, widen(x + i + L));
    }
    for (; i + L <= n; i += L) storeu<A>(y + i, widen(x + i));
  }
  for (; i < n; ++i) y[i] = x[i].to_float();
}

inline bool stream_f32(std::size_t n) noexcept { return n * sizeof(float) >= stream_threshold_bytes; }

/// f32 -> T (bf16 or f16) for backend B: the scalar twin, or the SIMD loop of that type.
template <class B, class T>
void narrow_entry(std::span<const float> x, std::span<T> y) {
  check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::convert(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
    if constexpr (std::is_same_v<T, bf16>) to_bf16<typename B::arch>(x.data(), y.data(), x.size());
    else to_f16<typename B::arch>(x.data(), y.data(), x.size());
  }
}

/// T (bf16 or f16) -> f32 for backend B.
template <class B, class T>
void widen_entry(std::span<const T> x, std::span<float> y) {
  check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::convert(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "convert", "x", "y");
    using A = typename B::arch;
    from_16<A>(x.data(), y.data(), x.size(), stream_f32(x.size()), [](const T* p) {
      if constexpr (std::is_same_v<T, bf16>) return widen_bf16_exact<A>(p);
      else return widen_f16<A>(p);
    });
  }
}
} // namespace detail

/// f32 -> bf16, round to nearest even (see the file comment for NaN and subnormals).
/// @pre y does not overlap x. @throws shape_error if the sizes differ.
/// Complexity: O(n); reads 4n bytes, writes 2n.
template <class B = backend::best_cpu>
void convert(std::span<const float> x, std::span<bf16> y) { detail::narrow_entry<B>(x, y); }
/// bf16 -> f32, exact. @pre y does not overlap x. @throws shape_error. Complexity: O(n).
template <class B = backend::best_cpu>
void convert(std::span<const bf16> x, std::span<float> y) { detail::widen_entry<B>(x, y); }
/// f32 -> f16, round to nearest even, overflow to inf. @pre no overlap. @throws shape_error. O(n).
template <class B = backend::best_cpu>
void convert(std::span<const float> x, std::span<f16> y) { detail::narrow_entry<B>(x, y); }
/// f16 -> f32, exact. @pre no overlap. @throws shape_error. Complexity: O(n).
template <class B = backend::best_cpu>
void convert(std::span<const f16> x, std::span<float> y) { detail::widen_entry<B>(x, y); }

} // namespace cpu
} // namespace v0_1
} // namespace membound
