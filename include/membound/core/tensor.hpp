// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The shared tensor vocabulary: `index_t`, the rank bound, the `membound::tensor` concept,
/// and the project-wide dimension letters.
///
/// Dimension letters (every line that makes a tensor ends with a shape comment using them):
/// B batch, H query heads, G KV heads (groups), T query length, S cache length, D head dim,
/// C channels, N points/tokens; M, K, N are also the usual matrix-product letters.
///
/// Layout convention: extents and strides are in elements, outermost first; the default layout
/// is row-major (C order), stride(rank-1) == 1.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {

/// Signed index type for extents, strides and offsets (as std::ptrdiff_t).
using index_t = std::ptrdiff_t;

/// Largest rank a `view` or `array` can have.
inline constexpr int max_rank = 8;

/// Anything that describes a strided block of elements: a `value_type`, `rank()`, `extent(i)`,
/// `stride(i)` (in elements) and `data()`. `array<T>` and `view<T>` model it; so can user types.
template <class X>
concept tensor = requires(const X& x, int i) {
  typename X::value_type;
  { x.rank() } -> std::convertible_to<int>;
  { x.extent(i) } -> std::convertible_to<index_t>;
  { x.stride(i) } -> std::convertible_to<index_t>;
  { x.data() } -> std::convertible_to<const typename X::value_type*>;
};

/// A tensor whose elements have type T (ignoring const).
template <class X, class T>
concept tensor_of = tensor<X> && std::same_as<std::remove_const_t<typename X::value_type>, T>;

/// Number of elements of any tensor (product of extents; 1 for rank 0).
template <tensor X>
constexpr index_t size_of(const X& x) noexcept {
  for (int i = 0; i < x.rank(); ++i)
    if (x.extent(i) == 0) return 0; // before any product: the other extents may multiply past index_t
  index_t n = 1;
  for (int i = 0; i < x.rank(); ++i) n *= x.extent(i);
  return n;
}

/// True when the tensor's elements are dense in row-major order (extent-1 dims ignored).
template <tensor X>
constexpr bool is_contiguous(const X& x) noexcept {
  if (size_of(x) == 0) return true; // no element to address; the extents' product may not fit index_t
  index_t expect = 1;
  for (int i = x.rank() - 1; i >= 0; --i) {
    if (x.extent(i) != 1 && x.stride(i) != expect) return false;
    expect *= x.extent(i);
  }
  return true;
}

} // namespace v0_1
} // namespace membound
