// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Top-k and bottom-k selection of indices over a float span, deterministic:
/// ties go to the lower index, and the order is the total order
/// -inf < ... < -0 == +0 < ... < +inf < NaN (all NaNs equal), so NaN ranks first in top-k and
/// last in bottom-k. Output indices are sorted best first.
///
/// The SIMD form keeps a heap of the k best seen so far and scans x batch by batch, comparing
/// integer order keys against the current k-th best; a batch with no candidate costs a few
/// vector operations, so for k << n the scan runs near the read bandwidth.
/// Complexity O(n + c log k) with c the number of heap replacements (about k ln(n/k) for random
/// input, n in the worst case); allocates O(k).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
/// The order keys of ::membound::detail::order_key for one batch (negated for bottom-k, so that
/// "larger key is better" in both cases; -INT_MAX-1 cannot occur, so negation is safe).
template <class A, bool Top>
MEMBOUND_ALWAYS_INLINE ibatch<A> order_keys(const fbatch<A>& v) noexcept {
  using I = ibatch<A>;
  // -0 -> +0; every NaN -> the pattern 0x7fffffff, whose key is INT_MAX (above +inf).
  fbatch<A> z = xsimd::select(v == fbatch<A>(0.f), fbatch<A>(0.f), v);
  z = xsimd::select(xsimd::isnan(v), xsimd::bitwise_cast<fbatch<A>>(I(std::numeric_limits<std::int32_t>::max())), z);
  const I i = xsimd::bitwise_cast<I>(z);
  const I k = xsimd::select(i < I(0), i ^ I(0x7fffffff), i);
  if constexpr (Top) return k;
  else return -k;
}

template <class A, bool Top>
void select_k(const float* x, std::size_t n, std::span<index_t> out) {
  const std::size_t k = out.size();
  if (k == 0) return;
  using entry = std::pair<std::int32_t, index_t>; // (key, index); larger key is better
  auto key = [](float v) {
    const std::int32_t kk = ::membound::detail::order_key(v);
    return Top ? kk : -kk;
  };
  // better(a, b): a ranks before b. As the heap's "less", it keeps the worst entry at the front.
  auto better = [](const entry& a, const entry& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; };
  std::vector<entry> heap;
  heap.reserve(k);
  for (std::size_t i = 0; i < k; ++i) heap.emplace_back(key(x[i]), static_cast<index_t>(i));
  std::make_heap(heap.begin(), heap.end(), better);
  // Later elements have larger indices, so they replace the worst only with a strictly larger key.
  constexpr std::size_t L = lanes<A>;
  std::size_t i = k;
  auto offer = [&](std::size_t j) {
    const std::int32_t kj = key(x[j]);
    if (kj > heap.front().first) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = entry(kj, static_cast<index_t>(j));
      std::push_heap(heap.begin(), heap.end(), better);
    }
  };
  for (; i + L <= n; i += L) {
    const ibatch<A> kb = order_keys<A, Top>(loadu<A>(x + i));
    if (MEMBOUND_LIKELY(!xsimd::any(kb > ibatch<A>(heap.front().first)))) continue;
    for (std::size_t j = i; j < i + L; ++j) offer(j);
  }
  for (; i < n; ++i) offer(i);
  std::sort_heap(heap.begin(), heap.end(), better);
  for (std::size_t j = 0; j < k; ++j) out[j] = heap[j].second;
}
} // namespace detail

/// Indices of the k = out.size() largest elements of x, best first (ties: lower index first; NaN
/// above +inf). @pre out does not overlap x. @throws config_error if k > x.size().
/// Complexity: O(n + c log k), see the file comment; allocates O(k).
template <class B = backend::best_cpu>
void top_k(std::span<const float> x, std::span<index_t> out) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::top_k(x, out);
  } else {
    ::membound::detail::expect_k(static_cast<index_t>(out.size()), x.size(), "top_k");
    detail::select_k<typename B::arch, true>(x.data(), x.size(), out);
  }
}
/// Indices of the k = out.size() smallest elements, smallest first (ties: lower index first; NaN
/// last). @throws config_error if k > x.size(). Complexity as top_k.
template <class B = backend::best_cpu>
void bottom_k(std::span<const float> x, std::span<index_t> out) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::bottom_k(x, out);
  } else {
    ::membound::detail::expect_k(static_cast<index_t>(out.size()), x.size(), "bottom_k");
    detail::select_k<typename B::arch, false>(x.data(), x.size(), out);
  }
}
/// Convenience form returning k indices. @throws config_error if k < 0 or k > x.size().
template <class B = backend::best_cpu>
std::vector<index_t> top_k(std::span<const float> x, index_t k) {
  ::membound::detail::expect_k(k, x.size(), "top_k");
  std::vector<index_t> out(static_cast<std::size_t>(k));
  top_k<B>(x, std::span<index_t>(out));
  return out;
}
/// Convenience form returning k indices. @throws config_error if k < 0 or k > x.size().
template <class B = backend::best_cpu>
std::vector<index_t> bottom_k(std::span<const float> x, index_t k) {
  ::membound::detail::expect_k(k, x.size(), "bottom_k");
  std::vector<index_t> out(static_cast<std::size_t>(k));
  bottom_k<B>(x, std::span<index_t>(out));
  return out;
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
