// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Element types: the 16-bit storage types `bf16` and `f16` with exact scalar conversions,
/// and the `dtype` enumeration of every safetensors element type with its size and name.
///
/// Conversion contract (shared by the scalar twin and every SIMD kernel, tested exhaustively):
/// - 16 -> 32 bit is exact (every bf16/f16 value, subnormals included, is a float); a NaN stays a
///   NaN with its payload shifted up and the quiet bit set.
/// - 32 -> 16 bit rounds to nearest, ties to even. Subnormal inputs are rounded, never flushed
///   (so the native AVX-512 BF16 instruction, which flushes them, is not used). Overflow gives
///   +-inf. A NaN becomes a quiet NaN that keeps the sign and the top payload bits.

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {

/// Google brain float: 1 sign, 8 exponent, 7 mantissa bits. Storage only; compute in float.
struct bf16 {
  std::uint16_t bits = 0;

  /// Builds a value from its raw bit pattern.
  static constexpr bf16 from_bits(std::uint16_t b) noexcept { return bf16{b}; }

  /// f32 -> bf16, round to nearest even; NaN -> quiet NaN; subnormals kept (rounded).
  static constexpr bf16 from_float(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<std::uint16_t>((u + rounding) >> 16)};
  }
  /// bf16 -> f32, exact.
  constexpr float to_float() const noexcept {
    const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::bit_cast<float>(u | 0x00400000u);
    return std::bit_cast<float>(u);
  }
  constexpr explicit operator float() const noexcept { return to_float(); }
  friend constexpr bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

/// IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits. Storage only; compute in float.
struct f16 {
  std::uint16_t bits = 0;

  static constexpr f16 from_bits(std::uint16_t b) noexcept { return f16{b}; }

  /// f32 -> f16, round to nearest even (subnormal results rounded, not flushed); overflow -> inf;
  /// NaN -> quiet NaN keeping the top 10 payload bits (what the F16C instruction does).
  static constexpr f16 from_float(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return f16{static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x03ffu))};
    if (a >= 0x477ff000u) return f16{static_cast<std::uint16_t>(sign | 0x7c00u)}; // rounds to >= 65520: inf
    if (a >= 0x38800000u) {                                                        // normal f16 result
      const std::uint32_t rounding = 0x0fffu + ((a >> 13) & 1u);
      return f16{static_cast<std::uint16_t>(sign | ((a - 0x38000000u + rounding) >> 13))};
    }
    // Subnormal (or zero) f16 result: value = m * 2^-24 with m < 1024, round to nearest even.
    const std::uint32_t e = a >> 23;
    if (e < 102) return f16{static_cast<std::uint16_t>(sign)}; // below half the smallest subnormal
    const std::uint32_t mant = (a & 0x007fffffu) | 0x00800000u;  // implicit bit (e >= 102 > 0)
    const std::uint32_t shift = 126u - e;                        // 14 .. 24
    std::uint32_t m = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (m & 1u))) ++m;
    return f16{static_cast<std::uint16_t>(sign | m)};
  }
  /// f16 -> f32, exact (subnormals included); NaN payload shifted up with the quiet bit set.
  constexpr float to_float() const noexcept {
    const std::uint32_t sign = (static_cast<std::uint32_t>(bits) & 0x8000u) << 16;
    const std::uint32_t e = (bits >> 10) & 0x1fu;
    std::uint32_t m = bits & 0x03ffu;
    if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u));
    if (e != 0) return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return std::bit_cast<float>(sign);
    int ex = 113; // normalise the subnormal: value = m * 2^-24
    while ((m & 0x0400u) == 0) { m <<= 1; --ex; }
    return std::bit_cast<float>(sign | (static_cast<std::uint32_t>(ex) << 23) | ((m & 0x03ffu) << 13));
  }
  constexpr explicit operator float() const noexcept { return to_float(); }
  friend constexpr bool operator==(f16 a, f16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2 && std::is_trivially_copyable_v<bf16>);

/// Every element type of the safetensors format (the names are the format's spellings).
enum class dtype : std::uint8_t { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean, f8_e4m3, f8_e5m2 };

/// Size in bytes of one element.
constexpr std::size_t dtype_size(dtype t) noexcept {
  switch (t) {
  case dtype::f64: case dtype::i64: return 8;
  case dtype::f32: case dtype::i32: return 4;
  case dtype::f16: case dtype::bf16: case dtype::i16: return 2;
  default: return 1;
  }
}

/// The safetensors spelling ("F32", "BF16", "BOOL", "F8_E4M3", ...).
constexpr std::string_view dtype_name(dtype t) noexcept {
  constexpr std::string_view names[] = {"F64", "F32", "F16", "BF16", "I64", "I32",
                                        "I16", "I8",  "U8",  "BOOL", "F8_E4M3", "F8_E5M2"};
  return names[static_cast<int>(t)];
}

/// Parses a safetensors dtype spelling. @throws format_error naming the unknown spelling.
inline dtype parse_dtype(std::string_view s) {
  for (int i = 0; i <= static_cast<int>(dtype::f8_e5m2); ++i)
    if (dtype_name(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
  throw format_error(detail::concat("unknown dtype \"", s,
                                    "\" (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2)"));
}

/// Maps a C++ element type to its `dtype` (`dtype_of_v<float> == dtype::f32`). Defined for the
/// types that can be viewed directly: double, float, f16, bf16, the fixed-width integers, bool.
template <class T> struct dtype_of;
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<f16> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of<bf16> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<std::int16_t> { static constexpr dtype value = dtype::i16; };
template <> struct dtype_of<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of<bool> { static constexpr dtype value = dtype::boolean; };
template <class T> struct dtype_of<const T> : dtype_of<T> {};
template <class T> inline constexpr dtype dtype_of_v = dtype_of<T>::value;

/// True for the types listed in `dtype_of`.
template <class T>
concept element_type = requires { dtype_of<T>::value; };

} // namespace v0_1
} // namespace membound
