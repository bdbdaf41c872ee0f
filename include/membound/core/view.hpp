// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `membound::view<T>`: a non-owning strided view of rank 0..8 over elements of type T,
/// with slicing, selection, transposition and reshape of contiguous data. O(rank) per operation;
/// element access is O(rank) and unchecked (`at()` is the checked form).

#include <algorithm>
#include <array>
#include <initializer_list>
#include <limits>
#include <span>
#include <type_traits>

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {

namespace detail {
/// Product of extents with overflow and negativity checks. Zero extents are legal: a shape with a
/// zero extent has 0 elements however large its other extents are (their product is never formed).
/// @throws shape_error for a negative extent, or a non-empty shape whose product exceeds index_t.
inline index_t checked_size(std::span<const index_t> ext) {
  bool empty = false;
  for (std::size_t i = 0; i < ext.size(); ++i) {
    MEMBOUND_EXPECTS(ext[i] >= 0, shape_error, "extent ", i, " is ", ext[i], ", expected >= 0");
    empty = empty || ext[i] == 0;
  }
  if (empty) return 0;
  index_t n = 1;
  for (std::size_t i = 0; i < ext.size(); ++i) {
    if (n > std::numeric_limits<index_t>::max() / ext[i])
      throw shape_error(concat("element count overflows index_t at extent ", i, " (", ext[i], ")"));
    n *= ext[i];
  }
  return n;
}
/// Row-major strides of extents that passed `checked_size`: str[i] = prod_{j>i} max(ext[j], 1).
/// For an empty shape that product may not fit in index_t; from the first stride that would
/// overflow outward the strides are 0 (an empty view addresses no element, so any stride is valid,
/// and 0 keeps every offset computed from it in range). Never overflows.
inline void contiguous_strides(const index_t* ext, int rank, index_t* str) noexcept {
  index_t s = 1;
  bool saturated = false;
  for (int i = rank - 1; i >= 0; --i) {
    str[i] = saturated ? 0 : s;
    const index_t e = std::max<index_t>(ext[i], 1);
    if (!saturated && s > std::numeric_limits<index_t>::max() / e) saturated = true;
    else if (!saturated) s *= e;
  }
}
/// Checks that every element offset of a strided view, sum_d i_d * stride_d with 0 <= i_d < ext_d,
/// fits in index_t (O(rank)); empty views address nothing and always pass. @throws shape_error
inline void check_strided_span(std::span<const index_t> ext, std::span<const index_t> str) {
  for (index_t e : ext)
    if (e == 0) return;
  index_t reach = 0; // sum (ext - 1) * |stride| so far, <= max
  constexpr index_t max = std::numeric_limits<index_t>::max();
  for (std::size_t d = 0; d < ext.size(); ++d) {
    MEMBOUND_EXPECTS(str[d] != std::numeric_limits<index_t>::min(), shape_error, "view: stride ", d, " is ", str[d],
                     ", expected a magnitude below 2^63");
    const index_t a = str[d] < 0 ? -str[d] : str[d];
    const index_t m = ext[d] - 1;
    if (a != 0 && m > (max - reach) / a)
      throw shape_error(concat("view: element offsets overflow index_t at dim ", d, " (extent ", ext[d], ", stride ",
                               str[d], ")"));
    reach += m * a;
  }
}
inline void check_rank(std::size_t r) {
  MEMBOUND_EXPECTS(r <= static_cast<std::size_t>(max_rank), shape_error, "rank ", r, " exceeds max_rank ", max_rank);
}
} // namespace detail

/// Non-owning strided view. Cheap to copy; never allocates. `view<T>` converts to `view<const T>`.
/// @tparam T element type, possibly const.
template <class T>
class view {
public:
  using value_type = T;
  using element_type = T;

  /// An empty rank-1 view (extent 0).
  view() noexcept { ext_[0] = 0; str_[0] = 1; rank_ = 1; }

  /// Contiguous row-major view over `p` with the given extents. @throws shape_error
  view(T* p, std::initializer_list<index_t> extents) : view(p, std::span<const index_t>(extents.begin(), extents.size())) {}
  view(T* p, std::span<const index_t> extents) : data_(p) {
    detail::check_rank(extents.size());
    detail::checked_size(extents);
    rank_ = static_cast<int>(extents.size());
    std::copy(extents.begin(), extents.end(), ext_);
    detail::contiguous_strides(ext_, rank_, str_);
  }
  /// Strided view; strides are in elements and may be zero (broadcast) or negative.
  /// @throws shape_error for a bad rank or extent, or when an element offset would overflow index_t.
  view(T* p, std::span<const index_t> extents, std::span<const index_t> strides) : data_(p) {
    detail::check_rank(extents.size());
    MEMBOUND_EXPECTS(extents.size() == strides.size(), shape_error, "view: ", extents.size(), " extents but ",
                     strides.size(), " strides");
    detail::checked_size(extents);
    detail::check_strided_span(extents, strides);
    rank_ = static_cast<int>(extents.size());
    for (int i = 0; i < rank_; ++i) { ext_[i] = extents[i]; str_[i] = strides[i]; }
  }
  /// view<T> -> view<const T>.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  view(const view<U>& o) noexcept : data_(o.data()), rank_(o.rank()) {
    for (int i = 0; i < rank_; ++i) { ext_[i] = o.extent(i); str_[i] = o.stride(i); }
  }

  int rank() const noexcept { return rank_; }
  index_t extent(int i) const noexcept { return ext_[i]; }
  index_t stride(int i) const noexcept { return str_[i]; }
  T* data() const noexcept { return data_; }
  index_t size() const noexcept { return size_of(*this); }
  bool empty() const noexcept { return size() == 0; }
  bool contiguous() const noexcept { return is_contiguous(*this); }

  /// Unchecked element access; the number of indices must equal rank().
  template <class... I>
  T& operator()(I... idx) const noexcept {
    const index_t ix[] = {static_cast<index_t>(idx)..., 0};
    index_t off = 0;
    for (std::size_t d = 0; d < sizeof...(I); ++d) off += ix[d] * str_[d];
    return data_[off];
  }
  /// Checked element access. @throws shape_error on a wrong index count, lookup_error out of range.
  template <class... I>
  T& at(I... idx) const {
    MEMBOUND_EXPECTS(static_cast<int>(sizeof...(I)) == rank_, shape_error, "at: ", sizeof...(I),
                     " indices for a rank-", rank_, " view");
    const index_t ix[] = {static_cast<index_t>(idx)..., 0};
    for (int d = 0; d < rank_; ++d)
      MEMBOUND_EXPECTS(ix[d] >= 0 && ix[d] < ext_[d], lookup_error, "at: index ", ix[d], " on dim ", d,
                       " out of range [0, ", ext_[d], ")");
    return (*this)(idx...);
  }

  /// Elements [begin, end) along `dim`; same rank. @throws shape_error, lookup_error
  view slice(int dim, index_t begin, index_t end) const {
    check_dim(dim, "slice");
    MEMBOUND_EXPECTS(0 <= begin && begin <= end && end <= ext_[dim], lookup_error, "slice: range [", begin, ", ",
                     end, ") on dim ", dim, " of extent ", ext_[dim]);
    view r = *this;
    r.data_ = data_ + begin * str_[dim];
    r.ext_[dim] = end - begin;
    return r;
  }
  /// Index `i` along `dim`, dropping that dimension (rank - 1). @throws shape_error, lookup_error
  view select(int dim, index_t i) const {
    check_dim(dim, "select");
    MEMBOUND_EXPECTS(0 <= i && i < ext_[dim], lookup_error, "select: index ", i, " on dim ", dim, " of extent ",
                     ext_[dim]);
    view r;
    r.data_ = data_ + i * str_[dim];
    r.rank_ = rank_ - 1;
    for (int d = 0, o = 0; d < rank_; ++d)
      if (d != dim) { r.ext_[o] = ext_[d]; r.str_[o] = str_[d]; ++o; }
    return r;
  }
  /// Swaps two dimensions (no data movement). @throws shape_error
  view transpose(int d0 = 0, int d1 = 1) const {
    check_dim(d0, "transpose");
    check_dim(d1, "transpose");
    view r = *this;
    std::swap(r.ext_[d0], r.ext_[d1]);
    std::swap(r.str_[d0], r.str_[d1]);
    return r;
  }
  /// New extents over the same contiguous data; one extent may be -1 (inferred).
  /// @throws shape_error if the view is not contiguous or the element counts differ.
  view reshape(std::initializer_list<index_t> extents) const {
    MEMBOUND_EXPECTS(contiguous(), shape_error, "reshape: view is not contiguous");
    detail::check_rank(extents.size());
    index_t e[max_rank];
    int infer = -1;
    index_t known = 1;
    int r = 0;
    for (index_t x : extents) {
      if (x == -1) {
        MEMBOUND_EXPECTS(infer < 0, shape_error, "reshape: more than one -1 extent");
        infer = r;
        e[r++] = 1;
        continue;
      }
      MEMBOUND_EXPECTS(x >= 0, shape_error, "reshape: extent ", x, " is negative");
      e[r++] = x;
    }
    known = detail::checked_size(std::span<const index_t>(e, static_cast<std::size_t>(r))); // the -1 slot counts 1
    const index_t n = size();
    if (infer >= 0) {
      MEMBOUND_EXPECTS(known != 0 && n % known == 0, shape_error, "reshape: cannot infer -1 for ", n,
                       " elements with known product ", known);
      e[infer] = n / known;
      known = n;
    }
    detail::checked_size(std::span<const index_t>(e, static_cast<std::size_t>(r)));
    MEMBOUND_EXPECTS(known == n, shape_error, "reshape: ", n, " elements cannot take a shape of ", known);
    return view(data_, std::span<const index_t>(e, static_cast<std::size_t>(r)));
  }
  /// The elements as a span. @throws shape_error if the view is not contiguous.
  std::span<T> span() const {
    MEMBOUND_EXPECTS(contiguous(), shape_error, "span: view is not contiguous");
    return {data_, static_cast<std::size_t>(size())};
  }

private:
  void check_dim(int dim, const char* what) const {
    MEMBOUND_EXPECTS(0 <= dim && dim < rank_, shape_error, what, ": dim ", dim, " for a rank-", rank_, " view");
  }
  T* data_ = nullptr;
  int rank_ = 0;
  index_t ext_[max_rank] = {};
  index_t str_[max_rank] = {};
};

static_assert(tensor<view<float>> && tensor<view<const float>>);

/// Contiguous view over raw memory: `make_view(p, {B, T, D})`. @throws shape_error
template <class T>
view<T> make_view(T* p, std::initializer_list<index_t> extents) { return view<T>(p, extents); }
/// Strided view over raw memory with explicit strides (in elements). @throws shape_error
template <class T>
view<T> make_view(T* p, std::initializer_list<index_t> extents, std::initializer_list<index_t> strides) {
  return view<T>(p, std::span<const index_t>(extents.begin(), extents.size()),
                 std::span<const index_t>(strides.begin(), strides.size()));
}
/// Rank-1 view of a span.
template <class T>
view<T> make_view(std::span<T> s) { return view<T>(s.data(), {static_cast<index_t>(s.size())}); }

} // namespace v0_1
} // namespace membound
