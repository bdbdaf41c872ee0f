// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Exponential family over float spans: element-wise `exp`, numerically stable `softmax`
/// (one row or the rows of a rank-2 view), the online/streaming softmax (`softmax_update`,
/// `softmax_finish`, with `merge` of states from `ref/kernels.hpp`) and `logsumexp`. All O(n).
///
/// The SIMD forms use the fast exp of `simd.hpp` (measured <= 1 ulp from the correctly rounded
/// exp); the scalar twin uses std::exp. Softmax over a span reads x
/// twice: pass 1 folds 2048-element blocks (8 KiB, kept in L1) into a {max, sum} state, each block
/// read once for its maximum and once more from L1 for sum exp(x - block max); pass 2 writes
/// y = exp(x - max) / sum, with non-temporal stores once the output exceeds
/// `detail::stream_threshold_bytes` (8 MiB). So a softmax beyond the caches moves 12 bytes per
/// element from/to memory, as much as a copy with ordinary stores (read, read-for-ownership, write).
/// Special values are those of `ref/kernels.hpp` (NaN or +inf input -> all NaN; all -inf -> NaN).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>

#include "membound/backend/cpu/reduce.hpp"
#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/ref/kernels.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {

namespace detail {
/// Elements per block of the softmax pass 1 (8 KiB of floats: stays in L1 between its two reads).
inline constexpr std::size_t softmax_block = 2048;

/// sum_i exp(x_i - m) for finite m. While it computes (from L1) it prefetches the `pf_n`
/// elements at `pf` (the next block of the stream), so memory and exp overlap.
template <class A>
float sum_exp_shifted(const float* x, std::size_t n, float m, const float* pf, std::size_t pf_n) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  const B vm(m);
  B a0(0.f), a1(0.f);
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    if (i < pf_n) { prefetch(pf + i); prefetch(pf + i + L); }
    a0 += detail::exp<A>(loadu<A>(x + i) - vm);
    a1 += detail::exp<A>(loadu<A>(x + i + L) - vm);
  }
  for (; i + L <= n; i += L) a0 += detail::exp<A>(loadu<A>(x + i) - vm);
  if (i < n) a1 += detail::exp<A>(load_partial<A>(x + i, n - i, -std::numeric_limits<float>::infinity()) - vm);
  return hsum<A>(a0 + a1);
}

/// Folds x[0, n) into s block by block. Each block's exp pass prefetches the next block, and the
/// last block prefetches `next` (`next_n` elements: e.g. the next row of a softmax over rows).
template <class A>
void softmax_update(softmax_state& s, const float* x, std::size_t n, const float* next = nullptr,
                    std::size_t next_n = 0) noexcept {
  for (std::size_t b = 0; b < n; b += softmax_block) {
    const std::size_t len = n - b < softmax_block ? n - b : softmax_block;
    const float m = detail::max<A>(x + b, len);
    if (m == -std::numeric_limits<float>::infinity()) continue; // contributes nothing
    if (std::isnan(m) || m == std::numeric_limits<float>::infinity()) {
      // exp(inf - inf) is NaN in the twin as well: the state becomes NaN for good.
      s = merge(s, softmax_state{m, std::numeric_limits<float>::quiet_NaN()});
      return;
    }
    const std::size_t nb = b + len;
    const float* pf = nb < n ? x + nb : next;
    const std::size_t pf_n = nb < n ? std::min(softmax_block, n - nb) : next_n;
    s = merge(s, softmax_state{m, sum_exp_shifted<A>(x + b, len, m, pf, std::min(pf_n, len))});
  }
}

template <class A>
void softmax_finish(const softmax_state& s, const float* x, float* y, std::size_t n, bool stream) noexcept {
  using B = fbatch<A>;
  const B vm(s.max), inv(1.f / s.sum);
  transform<A>(x, y, n, stream, [vm, inv](const B& v) MEMBOUND_INLINE_LAMBDA { return detail::exp<A>(v - vm) * inv; });
}

/// y[i] = f(x[i] - shift) and their sum, for an exponential f: two vector accumulators, then a
/// horizontal sum; y may alias x exactly. Padding lanes of the tail load -inf, which f maps to 0
/// (`exp2_clamped` on AVX-512: 2^-127, under 2^-122 for all lanes, against a sum of at least 1 when
/// shift is the maximum). O(n).
template <class A, class F>
MEMBOUND_ALWAYS_INLINE float exp_sum_shifted(const float* x, float shift, float* y, std::size_t n, F f) noexcept {
  using B = fbatch<A>;
  constexpr std::size_t L = lanes<A>;
  const B vs(shift);
  B a0(0.f), a1(0.f);
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const B e0 = f(loadu<A>(x + i) - vs), e1 = f(loadu<A>(x + i + L) - vs);
    e0.store_unaligned(y + i);
    e1.store_unaligned(y + i + L);
    a0 += e0;
    a1 += e1;
  }
  for (; i + L <= n; i += L) {
    const B e = f(loadu<A>(x + i) - vs);
    e.store_unaligned(y + i);
    a0 += e;
  }
  if (i < n) {
    const B e = f(load_partial<A>(x + i, n - i, -std::numeric_limits<float>::infinity()) - vs);
    store_partial<A>(y + i, n - i, e);
    a1 += e;
  }
  return hsum<A>(a0 + a1);
}

/// x[i] = 2^(x[i] - shift) in place by `exp2_clamped` (simd.hpp), returning their sum: the
/// base-2 form of `exp_shifted` for softmax rows whose scores already carry log2 e (the attention
/// forward's panels). O(n).
template <class A>
float exp2_shifted(float* x, std::size_t n, float shift) noexcept {
  return exp_sum_shifted<A>(x, shift, x, n, [](const fbatch<A>& v) MEMBOUND_INLINE_LAMBDA { return exp2_clamped<A>(v); });
}

inline bool stream_output(std::size_t elements) noexcept {
  return elements * sizeof(float) >= stream_threshold_bytes;
}
} // namespace detail

/// y = exp(x), element-wise; y may alias x exactly.
/// @throws shape_error if the sizes differ. Complexity: O(n); reads 4n bytes, writes 4n.
template <class B = backend::best_cpu>
void exp(std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::exp(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "exp", "x", "y");
    using A = typename B::arch;
    detail::transform<A>(x.data(), y.data(), x.size(), detail::stream_output(x.size()),
                         [](const detail::fbatch<A>& v) MEMBOUND_INLINE_LAMBDA { return detail::exp<A>(v); });
  }
}

/// y = exp(x - shift), element-wise, and the sum of y (one pass: the unnormalised softmax of
/// flash attention, whose normalisation moves to the output rows). y may alias x exactly.
/// The SIMD sum is two vector accumulators then a horizontal sum (deterministic for an ISA; the
/// scalar twin sums left to right). @throws shape_error if the sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
float exp_shifted(std::span<const float> x, float shift, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    return ref::exp_shifted(x, shift, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "exp_shifted", "x", "y");
    using A = typename B::arch;
    return detail::exp_sum_shifted<A>(x.data(), shift, y.data(), x.size(),
                                      [](const detail::fbatch<A>& v) MEMBOUND_INLINE_LAMBDA { return detail::exp<A>(v); });
  }
}

/// Folds a chunk into an online-softmax state: afterwards `s` describes everything it saw before
/// plus `x`. Chunks may come in any order; states of separate streams combine with `merge`.
/// Complexity: O(n); reads x once from memory (blocks are re-read from L1).
template <class B = backend::best_cpu>
void softmax_update(softmax_state& s, std::span<const float> x) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) ref::softmax_update(s, x);
  else detail::softmax_update<typename B::arch>(s, x.data(), x.size());
}

/// y = exp(x - s.max) / s.sum: the softmax of a chunk x once `s` has seen the whole sequence.
/// y may alias x exactly. @throws shape_error if the sizes differ. Complexity: O(n).
template <class B = backend::best_cpu>
void softmax_finish(const softmax_state& s, std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::softmax_finish(s, x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "softmax_finish", "x", "y");
    detail::softmax_finish<typename B::arch>(s, x.data(), y.data(), x.size(), detail::stream_output(x.size()));
  }
}

/// Numerically stable softmax y_i = exp(x_i - max x) / sum_j exp(x_j - max x); y may alias x.
/// @throws shape_error if the sizes differ.
/// Complexity: O(n); two passes over x (12 bytes per element from/to memory beyond the caches).
template <class B = backend::best_cpu>
void softmax(std::span<const float> x, std::span<float> y) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::softmax(x, y);
  } else {
    ::membound::detail::expect_same_size(x.size(), y.size(), "softmax", "x", "y");
    using A = typename B::arch;
    softmax_state s;
    detail::softmax_update<A>(s, x.data(), x.size());
    detail::softmax_finish<A>(s, x.data(), y.data(), x.size(), detail::stream_output(x.size()));
  }
}

/// Softmax of every row of a (rows, cols) view with contiguous rows (the attention use); y may
/// alias x. Rows are short enough to stay in cache between the two passes, so each element is
/// read once from memory. @throws shape_error (rank, inner stride, shapes). Complexity: O(rows*cols).
template <class B = backend::best_cpu>
void softmax(view<const float> x /*(N,C)*/, view<float> y /*(N,C)*/) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    ref::softmax(x, y);
  } else {
    ::membound::detail::expect_rows(x, "softmax", "x");
    ::membound::detail::expect_rows(y, "softmax", "y");
    ::membound::detail::expect_same_shape(x, y, "softmax");
    using A = typename B::arch;
    const auto c = static_cast<std::size_t>(x.extent(1));
    const bool stream = detail::stream_output(c * static_cast<std::size_t>(x.extent(0)));
    for (index_t r = 0; r < x.extent(0); ++r) {
      const float* xr = x.data() + r * x.stride(0);
      float* yr = y.data() + r * y.stride(0);
      softmax_state s;
      const bool last = r + 1 == x.extent(0);
      detail::softmax_update<A>(s, xr, c, last ? nullptr : xr + x.stride(0), last ? 0 : c);
      detail::softmax_finish<A>(s, xr, yr, c, stream);
    }
  }
}

/// log(sum_i exp(x_i)) computed stably; -inf for an empty span or all -inf, +inf if any +inf,
/// NaN if any NaN. Complexity: O(n); reads 4n bytes.
template <class B = backend::best_cpu>
float logsumexp(std::span<const float> x) {
  detail::check_cpu_backend<B>();
  if constexpr (std::is_same_v<B, backend::scalar>) {
    return ref::logsumexp(x);
  } else {
    softmax_state s;
    detail::softmax_update<typename B::arch>(s, x.data(), x.size());
    if (s.max == std::numeric_limits<float>::infinity()) return s.max;
    return s.logsumexp();
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
