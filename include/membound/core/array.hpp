// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `membound::array<T>`: an owning, contiguous, row-major tensor of rank 0..8 whose storage is
/// 64-byte aligned (one cache line; a full AVX-512 register). Allocation is O(size) and happens only
/// in constructors, copies and `resize`; every other operation is O(rank).

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {

/// Tag to skip zero-filling a new array (its elements are then indeterminate until written).
struct uninitialized_t {
  explicit uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

/// Alignment of every `array` allocation, in bytes.
inline constexpr std::size_t array_alignment = 64;

/// Owning contiguous tensor. Copying copies the elements; moving steals them.
/// @tparam T a trivially copyable element type (float, bf16, f16, integers, ...).
template <class T>
class array {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>, "array<T> needs a trivially copyable T");

public:
  using value_type = T;
  using element_type = T;

  array() noexcept { ext_[0] = 0; rank_ = 1; }
  /// Zero-filled array with the given extents, e.g. `array<float> q({B, H, T, D}); // (B,H,T,D)`.
  explicit array(std::initializer_list<index_t> extents) : array(std::span<const index_t>(extents.begin(), extents.size())) {}
  explicit array(std::span<const index_t> extents) { allocate(extents); if (size_) std::memset(static_cast<void*>(data_.get()), 0, bytes()); }
  /// Array whose elements are not initialised (avoids touching fresh pages twice).
  array(std::initializer_list<index_t> extents, uninitialized_t) { allocate(std::span<const index_t>(extents.begin(), extents.size())); }
  array(std::span<const index_t> extents, uninitialized_t) { allocate(extents); }

  array(const array& o) { copy_from(o); }
  array& operator=(const array& o) { if (this != &o) copy_from(o); return *this; }
  array(array&& o) noexcept { swap(o); }
  array& operator=(array&& o) noexcept { swap(o); return *this; }

  /// Copies the elements of any view of the same element type into a new contiguous array.
  template <class U>
    requires std::is_same_v<std::remove_const_t<U>, T>
  static array from(const view<U>& v) {
    index_t e[max_rank];
    for (int i = 0; i < v.rank(); ++i) e[i] = v.extent(i);
    array a(std::span<const index_t>(e, static_cast<std::size_t>(v.rank())), uninitialized);
    if (v.contiguous()) {
      if (a.size_) std::memcpy(static_cast<void*>(a.data()), v.data(), a.bytes());
    } else {
      index_t idx[max_rank] = {};
      for (index_t n = 0; n < a.size_; ++n) {
        index_t off = 0;
        for (int d = 0; d < v.rank(); ++d) off += idx[d] * v.stride(d);
        a.data()[n] = v.data()[off];
        for (int d = v.rank() - 1; d >= 0; --d) { if (++idx[d] < v.extent(d)) break; idx[d] = 0; }
      }
    }
    return a;
  }

  int rank() const noexcept { return rank_; }
  index_t extent(int i) const noexcept { return ext_[i]; }
  /// Row-major stride of dim i (see detail::contiguous_strides: 0 past an overflow in an empty array).
  index_t stride(int i) const noexcept {
    index_t str[max_rank];
    detail::contiguous_strides(ext_, rank_, str);
    return str[i];
  }
  index_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(size_) * sizeof(T); }
  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  std::span<T> span() noexcept { return {data(), static_cast<std::size_t>(size_)}; }
  std::span<const T> span() const noexcept { return {data(), static_cast<std::size_t>(size_)}; }
  T& operator[](index_t i) noexcept { return data_.get()[i]; }
  const T& operator[](index_t i) const noexcept { return data_.get()[i]; }

  /// Views of the whole array (contiguous, row-major).
  membound::view<T> view() noexcept { return membound::view<T>(data(), extents()); }
  membound::view<const T> view() const noexcept { return membound::view<const T>(data(), extents()); }
  membound::view<const T> cview() const noexcept { return view(); }
  operator membound::view<T>() noexcept { return view(); }
  operator membound::view<const T>() const noexcept { return view(); }

  /// Unchecked element access by indices.
  template <class... I>
  T& operator()(I... idx) noexcept { return view()(idx...); }
  template <class... I>
  const T& operator()(I... idx) const noexcept { return view()(idx...); }

  /// Same data under new extents (see view::reshape). @throws shape_error
  membound::view<T> reshape(std::initializer_list<index_t> e) { return view().reshape(e); }
  membound::view<const T> reshape(std::initializer_list<index_t> e) const { return view().reshape(e); }

  /// Sets every element to `value`.
  void fill(const T& value) noexcept { std::fill_n(data(), size_, value); }

  std::span<const index_t> extents() const noexcept { return {ext_, static_cast<std::size_t>(rank_)}; }

  void swap(array& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(rank_, o.rank_);
    std::swap(ext_, o.ext_);
  }

private:
  struct aligned_delete {
    void operator()(T* p) const noexcept { ::operator delete(static_cast<void*>(p), std::align_val_t{array_alignment}); }
  };
  void allocate(std::span<const index_t> extents) {
    detail::check_rank(extents.size());
    const index_t n = detail::checked_size(extents);
    MEMBOUND_EXPECTS(static_cast<std::size_t>(n) <= std::size_t(-1) / 2 / sizeof(T), shape_error, "array of ", n,
                     " elements is too large");
    rank_ = static_cast<int>(extents.size());
    std::copy(extents.begin(), extents.end(), ext_);
    size_ = n;
    if (n > 0)
      data_.reset(static_cast<T*>(::operator new(static_cast<std::size_t>(n) * sizeof(T), std::align_val_t{array_alignment})));
  }
  void copy_from(const array& o) {
    array tmp(o.extents(), uninitialized);
    if (o.size_) std::memcpy(static_cast<void*>(tmp.data()), o.data(), o.bytes());
    swap(tmp);
  }

  std::unique_ptr<T, aligned_delete> data_;
  index_t size_ = 0;
  int rank_ = 0;
  index_t ext_[max_rank] = {};
};

static_assert(tensor<array<float>>);

} // namespace v0_1
} // namespace membound
