// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::query_window`: the last W query vectors of every query head of B sequences, which
/// the query-dependent policies read in decode mode (`kv::snapkv`'s observation window takes the
/// post-RoPE queries, `kv::expected_attention`'s query statistics the pre-RoPE ones). kvpress's
/// DecodingPress buffers hidden states for the same purpose and recomputes the queries from them;
/// buffering the queries themselves saves that projection.
///
/// Storage is allocated once, B x H x 2W x D floats: every row is written twice (at slot j and
/// j + W of a ring of W), so the window of a head is always one contiguous (W,D) block, oldest
/// row first, and `rows` hands it out as a view without copying. push is O(H D).

#include <cstdint>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

class query_window {
public:
  /// A window of `window` queries of H = `heads` heads of dim D = `dim`, for `batch` sequences.
  /// @throws config_error naming the field when any is < 1.
  query_window(index_t batch, index_t heads, index_t dim, index_t window)
      : b_(batch), h_(heads), d_(dim), w_(window) {
    MEMBOUND_EXPECTS(batch >= 1 && heads >= 1 && dim >= 1 && window >= 1, config_error, "kv::query_window: batch ", batch,
                     ", heads ", heads, ", dim ", dim, ", window ", window, "; expected each >= 1");
    data_ = array<float>({batch, heads, 2 * window, dim});
    count_.assign(static_cast<std::size_t>(batch), 0);
    last_.assign(static_cast<std::size_t>(batch), -1);
  }

  index_t batch() const noexcept { return b_; }
  index_t heads() const noexcept { return h_; }
  index_t dim() const noexcept { return d_; }
  /// W, the capacity.
  index_t window() const noexcept { return w_; }

  /// Records the queries q (H,D) of sequence b at `position`, which must follow the previous
  /// push of b (position = last + 1) unless b is empty. The oldest row drops out once W are held.
  /// @throws lookup_error for b; shape_error for q not (H,D); config_error for a position that
  /// does not follow.
  void push(index_t b, view<const float> q /*(H,D)*/, std::int32_t position) {
    check_b(b, "push");
    MEMBOUND_EXPECTS(q.rank() == 2 && q.extent(0) == h_ && q.extent(1) == d_, shape_error,
                     "kv::query_window::push: q must be (H,D) = (", h_, ",", d_, "); got rank ", q.rank(), " (",
                     q.extent(0), ",", q.rank() == 2 ? q.extent(1) : -1, ")");
    const auto ub = static_cast<std::size_t>(b);
    MEMBOUND_EXPECTS(count_[ub] == 0 || position == last_[ub] + 1, config_error, "kv::query_window::push: position ",
                     position, " after ", last_[ub], "; expected consecutive positions (clear() to restart)");
    const index_t slot = count_[ub] % w_;
    for (index_t h = 0; h < h_; ++h) {
      float* lo = &data_(b, h, slot, 0);
      float* hi = &data_(b, h, slot + w_, 0);
      for (index_t e = 0; e < d_; ++e) lo[e] = hi[e] = q(h, e);
    }
    ++count_[ub];
    last_[ub] = position;
  }

  /// Rows held for sequence b: min(pushes since clear, W).
  index_t size(index_t b) const {
    check_b(b, "size");
    return std::min<index_t>(count_[static_cast<std::size_t>(b)], w_);
  }
  /// Position of the newest row of b (-1 when empty).
  std::int32_t last_position(index_t b) const {
    check_b(b, "last_position");
    return last_[static_cast<std::size_t>(b)];
  }

  /// The newest n rows of head h of sequence b, oldest first: (n,D), contiguous rows, valid until
  /// the next push to b. Row r sits at position last_position(b) - n + 1 + r.
  /// @throws lookup_error for b, h; config_error for n < 1 or n > size(b).
  view<const float> rows(index_t b, index_t h, index_t n) const {
    check_b(b, "rows");
    MEMBOUND_EXPECTS(h >= 0 && h < h_, lookup_error, "kv::query_window::rows: head ", h, " of ", h_);
    MEMBOUND_EXPECTS(n >= 1 && n <= size(b), config_error, "kv::query_window::rows: ", n, " rows asked, ", size(b),
                     " held for sequence ", b);
    const index_t end = count_[static_cast<std::size_t>(b)] % w_ + w_; // one past the newest, in [W, 2W)
    const float* p = &data_(b, h, end - n, 0);
    return view<const float>(p, {n, d_});
  }

  /// Forgets every row of sequence b (a new sequence starts).
  void clear(index_t b) {
    check_b(b, "clear");
    count_[static_cast<std::size_t>(b)] = 0;
    last_[static_cast<std::size_t>(b)] = -1;
  }

private:
  void check_b(index_t b, const char* who) const {
    MEMBOUND_EXPECTS(b >= 0 && b < b_, lookup_error, "kv::query_window::", who, ": sequence ", b, " of ", b_);
  }
  index_t b_, h_, d_, w_;
  array<float> data_; // (B,H,2W,D)
  std::vector<index_t> count_;
  std::vector<std::int32_t> last_;
};

} // namespace kv
} // namespace v0_1
} // namespace membound
