// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Matrix-vector product y = W x (or y += W x) with W row-major (M,K) in float, bf16 or
/// f16 and x, y in float. O(M*K); reads W once, so it runs at the memory-read bandwidth for large
/// W, and 16-bit weights halve the bytes (and the time) per row.
///
/// The SIMD form processes 4 rows at a time with 2 accumulators each (8 independent FMA chains,
/// x loaded once per step for 4 rows); 16-bit weights are widened exactly in registers (bf16 by a
/// shift, f16 by vcvtph2ps). Each row's sum is reordered relative to the scalar twin.

#include <cstddef>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/view.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
/// One batch of W's row at p, widened to float.
template <class A, class T>
MEMBOUND_ALWAYS_INLINE fbatch<A> load_w(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>) return loadu<A>(p);
  else if constexpr (std::is_same_v<T, bf16>) return widen_bf16<A>(p);
  else return widen_f16<A>(p);
}
/// The last n < lanes elements of a row, zero-padded (never reads past p + n).
template <class A, class T>
MEMBOUND_ALWAYS_INLINE fbatch<A> load_w_partial(const T* p, std::size_t n) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return load_partial<A>(p, n, 0.f);
  } else {
    alignas(64) T buf[lanes<A>] = {};
    for (std::size_t i = 0; i < n; ++i) buf[i] = p[i];
    return load_w<A, T>(buf);
  }
}

/// How far ahead (bytes) matvec prefetches each row stream of W.
inline constexpr std::size_t matvec_prefetch_bytes = 1024;

template <class A, class T, int R>
MEMBOUND_ALWAYS_INLINE void matvec_rows(const T* w, index_t ld, const float* x, float* y, std::size_t k,
                                        bool accumulate) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  B acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) { acc0[r] = B(0.f); acc1[r] = B(0.f); }
  std::size_t j = 0;
  for (; j + 2 * L <= k; j += 2 * L) {
    const B x0 = loadu<A>(x + j), x1 = loadu<A>(x + j + L);
    // R interleaved streams: prefetch each a fixed distance ahead; near a row's end the stream
    // continues at the start of the same row of the next block (rows r + R), which the next
    // call reads first. (Running on into row r + 1 instead would fetch lines this block already
    // holds and leave the next block's first lines to the hardware prefetcher: a quarter of
    // every 4 KiB row.) Prefetches never fault, so running past W's end is harmless.
    for (int r = 0; r < R; ++r)
      for (std::size_t b = 0; b < 2 * L * sizeof(T); b += 64) {
        const std::size_t ahead = j * sizeof(T) + matvec_prefetch_bytes + b, row_bytes = k * sizeof(T);
        const char* base = reinterpret_cast<const char*>(w + r * ld);
        prefetch(ahead < row_bytes ? base + ahead : base + R * ld * static_cast<index_t>(sizeof(T)) + (ahead - row_bytes));
      }
    for (int r = 0; r < R; ++r) {
      acc0[r] = detail::fma<A>(load_w<A>(w + r * ld + j), x0, acc0[r]);
      acc1[r] = detail::fma<A>(load_w<A>(w + r * ld + j + L), x1, acc1[r]);
    }
  }
  for (; j + L <= k; j += L) {
    const B x0 = loadu<A>(x + j);
    for (int r = 0; r < R; ++r) acc0[r] = detail::fma<A>(load_w<A>(w + r * ld + j), x0, acc0[r]);
  }
  if (j < k) {
    const B x0 = load_partial<A>(x + j, k - j, 0.f);
    for (int r = 0; r < R; ++r) acc1[r] = detail::fma<A>(load_w_partial<A>(w + r * ld + j, k - j), x0, acc1[r]);
  }
  for (int r = 0; r < R; ++r) {
    const float s = hsum<A>(acc0[r] + acc1[r]);
    y[r] = accumulate ? y[r] + s : s;
  }
}

template <class A, class T>
void matvec(view<const T> w, std::span<const float> x, std::span<float> y, bool accumulate) noexcept {
  const index_t m = w.extent(0), ld = w.stride(0);
  const std::size_t k = x.size();
  index_t i = 0;
  for (; i + 4 <= m; i += 4) matvec_rows<A, T, 4>(w.data() + i * ld, ld, x.data(), y.data() + i, k, accumulate);
  for (; i < m; ++i) matvec_rows<A, T, 1>(w.data() + i * ld, ld, x.data(), y.data() + i, k, accumulate);
}

template <class B, class T>
void matvec_entry(view<const T> w, std::span<const float> x, std::span<float> y, bool accumulate) {
  check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::matvec(w, x, y, accumulate);
  } else {
    ::membound::detail::expect_rows(w, "matvec", "W");
    MEMBOUND_EXPECTS(static_cast<std::size_t>(w.extent(1)) == x.size(), shape_error, "matvec: W has ", w.extent(1),
                     " columns, x has ", x.size(), " elements");
    MEMBOUND_EXPECTS(static_cast<std::size_t>(w.extent(0)) == y.size(), shape_error, "matvec: W has ", w.extent(0),
                     " rows, y has ", y.size(), " elements");
    matvec<typename B::arch, T>(w, x, y, accumulate);
  }
}
} // namespace detail

/// y = W x, or y += W x when `accumulate`; W is (M,K) with contiguous rows (any row stride).
/// @pre y does not overlap W or x.
/// @throws shape_error if W is not rank 2 with inner stride 1, or K != x.size(), or M != y.size().
/// Complexity: O(M*K) flops (2MK), reads 4MK bytes of W.
template <class B = backend::best_cpu>
void matvec(view<const float> w /*(M,K)*/, std::span<const float> x /*(K)*/, std::span<float> y /*(M)*/,
            bool accumulate = false) {
  detail::matvec_entry<B, float>(w, x, y, accumulate);
}
/// bf16 weights (widened exactly). Complexity: O(M*K), reads 2MK bytes of W.
template <class B = backend::best_cpu>
void matvec(view<const bf16> w /*(M,K)*/, std::span<const float> x /*(K)*/, std::span<float> y /*(M)*/,
            bool accumulate = false) {
  detail::matvec_entry<B, bf16>(w, x, y, accumulate);
}
/// f16 weights (widened exactly). Complexity: O(M*K), reads 2MK bytes of W.
template <class B = backend::best_cpu>
void matvec(view<const f16> w /*(M,K)*/, std::span<const float> x /*(K)*/, std::span<float> y /*(M)*/,
            bool accumulate = false) {
  detail::matvec_entry<B, f16>(w, x, y, accumulate);
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
