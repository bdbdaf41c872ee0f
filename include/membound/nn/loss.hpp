// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Losses with their gradients, forward and backward side by side (no tape): mean squared
/// error, binary cross-entropy with logits, cross-entropy over rows of logits with integer
/// targets, and the KL divergence between two categorical distributions given as logits, with the
/// gradient for both arguments (so KL(p||q) and KL(q||p) both train).
///
/// Every loss is a mean, over elements (mse, bce) or over rows (cross_entropy, kl_categorical), as
/// PyTorch's default `reduction='mean'`. Each returns the loss and writes dLoss/dInput into the
/// gradient views it is given (an empty `view<T>()` means "not wanted"). Element-wise losses take
/// views of rank 1 (N) or 2 (N,C) with any strides. Templated on the element type (float or
/// double) so that tests check every gradient against finite differences in double precision.
/// Complexity: O(N C); no allocation.

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {
namespace detail {

template <class A, class B>
void expect_same_shape(const view<A>& a, const view<B>& b, const char* fn, const char* an, const char* bn) {
  MEMBOUND_EXPECTS(a.rank() == b.rank(), shape_error, fn, ": ", an, " has rank ", a.rank(), " but ", bn, " has rank ",
                   b.rank());
  for (int i = 0; i < a.rank(); ++i)
    MEMBOUND_EXPECTS(a.extent(i) == b.extent(i), shape_error, fn, ": ", an, " and ", bn, " differ in extent ", i, " (",
                     a.extent(i), " vs ", b.extent(i), ")");
}
/// A gradient view is "wanted" when it points somewhere; then it must match the input's shape.
template <class A, class T>
bool wanted(const view<A>& x, const view<T>& g, const char* fn, const char* gn) {
  if (g.data() == nullptr) return false;
  expect_same_shape(x, g, fn, "the input", gn);
  return true;
}
template <class T>
void expect_elementwise(const view<T>& x, const char* fn) {
  MEMBOUND_EXPECTS(x.rank() == 1 || x.rank() == 2, shape_error, fn, ": input has rank ", x.rank(), ", expected 1 (N) or 2 (N,C)");
  MEMBOUND_EXPECTS(x.size() > 0, shape_error, fn, ": empty input has no mean");
}
template <class T>
void expect_rows(const view<T>& z, const char* fn, const char* name) {
  MEMBOUND_EXPECTS(z.rank() == 2, shape_error, fn, ": ", name, " has rank ", z.rank(), ", expected (N,C)");
  MEMBOUND_EXPECTS(z.extent(0) > 0 && z.extent(1) > 0, shape_error, fn, ": ", name, " is (", z.extent(0), ",",
                   z.extent(1), "); an empty batch has no mean");
}
/// Element (i) of a rank-1 or element (i / C, i % C) of a rank-2 view, by flat row-major index.
template <class T>
T& flat(const view<T>& x, index_t i) noexcept {
  if (x.rank() == 1) return x(i);
  const index_t c = x.extent(1);
  return x(i / c, i % c);
}
/// log(sum_j exp(z[r, j])), stable.
template <class T>
T row_logsumexp(const view<const T>& z, index_t r) noexcept {
  T m = -std::numeric_limits<T>::infinity();
  for (index_t j = 0; j < z.extent(1); ++j) m = z(r, j) > m ? z(r, j) : m;
  if (m == -std::numeric_limits<T>::infinity()) return m;
  T s = 0;
  for (index_t j = 0; j < z.extent(1); ++j) s += std::exp(z(r, j) - m);
  return m + std::log(s);
}
} // namespace detail

/// Mean squared error L = mean_i (y_i - t_i)^2. dy = 2 (y - t) / n.
/// @throws shape_error when shapes differ, the rank is not 1 or 2, or the input is empty.
template <class T>
T mse(view<const T> y, view<const T> t, view<T> dy = view<T>()) {
  detail::expect_elementwise(y, "mse");
  detail::expect_same_shape(y, t, "mse", "y", "t");
  const bool grad = detail::wanted(y, dy, "mse", "dy");
  const index_t n = y.size();
  T loss = 0;
  for (index_t i = 0; i < n; ++i) {
    const T d = detail::flat(y, i) - detail::flat(t, i);
    loss += d * d;
    if (grad) detail::flat(dy, i) = T(2) * d / static_cast<T>(n);
  }
  return loss / static_cast<T>(n);
}

/// Binary cross-entropy with logits: L = mean_i [max(z,0) - z t + log(1 + exp(-|z|))] (the
/// stable form of -t log s(z) - (1-t) log(1 - s(z))); targets t in [0,1] (soft labels allowed).
/// dz = (sigmoid(z) - t) / n.
/// @throws shape_error as mse; config_error when a target lies outside [0,1] (names it).
template <class T>
T bce_with_logits(view<const T> z, view<const T> t, view<T> dz = view<T>()) {
  detail::expect_elementwise(z, "bce_with_logits");
  detail::expect_same_shape(z, t, "bce_with_logits", "z", "t");
  const bool grad = detail::wanted(z, dz, "bce_with_logits", "dz");
  const index_t n = z.size();
  T loss = 0;
  for (index_t i = 0; i < n; ++i) {
    const T x = detail::flat(z, i), y = detail::flat(t, i);
    MEMBOUND_EXPECTS(y >= T(0) && y <= T(1), config_error, "bce_with_logits: target ", i, " is ", y, ", expected [0, 1]");
    loss += (x > 0 ? x : T(0)) - x * y + std::log1p(std::exp(-std::abs(x)));
    if (grad) {
      const T s = x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
      detail::flat(dz, i) = (s - y) / static_cast<T>(n);
    }
  }
  return loss / static_cast<T>(n);
}

/// Cross-entropy of rows of logits z (N,C) against class indices (N):
/// L = mean_r [logsumexp(z_r) - z_r[target_r]]; dz = (softmax(z_r) - onehot(target_r)) / N.
/// @throws shape_error (rank, empty batch, N != targets.size()), lookup_error for a target
/// outside [0, C) (names the row and value).
template <class T>
T cross_entropy(view<const T> z, std::span<const std::int64_t> targets, view<T> dz = view<T>()) {
  detail::expect_rows(z, "cross_entropy", "logits");
  MEMBOUND_EXPECTS(static_cast<std::size_t>(z.extent(0)) == targets.size(), shape_error, "cross_entropy: ", z.extent(0),
                   " rows of logits but ", targets.size(), " targets");
  const bool grad = detail::wanted(z, dz, "cross_entropy", "dz");
  const index_t n = z.extent(0), c = z.extent(1);
  T loss = 0;
  for (index_t r = 0; r < n; ++r) {
    const std::int64_t k = targets[static_cast<std::size_t>(r)];
    MEMBOUND_EXPECTS(k >= 0 && k < c, lookup_error, "cross_entropy: target of row ", r, " is ", k, ", expected [0, ", c, ")");
    const T lse = detail::row_logsumexp(z, r);
    loss += lse - z(r, k);
    if (grad)
      for (index_t j = 0; j < c; ++j) dz(r, j) = (std::exp(z(r, j) - lse) - (j == k ? T(1) : T(0))) / static_cast<T>(n);
  }
  return loss / static_cast<T>(n);
}

/// KL divergence between categorical distributions p = softmax(a_r) and q = softmax(b_r), rows of
/// (N,C) logits: L = mean_r sum_j p_j (log p_j - log q_j). Gradients, with d_j = log p_j - log q_j:
/// da = p (d - L_r) / N and db = (q - p) / N. KL(q||p) is `kl_categorical(b, a, ...)`.
/// Terms with p_j = 0 contribute 0 (the 0 log 0 = 0 convention).
/// @throws shape_error (ranks, shapes, empty batch).
template <class T>
T kl_categorical(view<const T> a, view<const T> b, view<T> da = view<T>(), view<T> db = view<T>()) {
  detail::expect_rows(a, "kl_categorical", "a (logits of p)");
  detail::expect_same_shape(a, b, "kl_categorical", "a", "b");
  const bool ga = detail::wanted(a, da, "kl_categorical", "da"), gb = detail::wanted(a, db, "kl_categorical", "db");
  const index_t n = a.extent(0), c = a.extent(1);
  T loss = 0;
  for (index_t r = 0; r < n; ++r) {
    const T la = detail::row_logsumexp(a, r), lb = detail::row_logsumexp(b, r);
    T lr = 0;
    for (index_t j = 0; j < c; ++j) {
      const T lp = a(r, j) - la, lq = b(r, j) - lb, p = std::exp(lp);
      if (p > T(0)) lr += p * (lp - lq);
    }
    loss += lr;
    for (index_t j = 0; j < c; ++j) {
      const T lp = a(r, j) - la, lq = b(r, j) - lb, p = std::exp(lp);
      if (ga) da(r, j) = p > T(0) ? p * ((lp - lq) - lr) / static_cast<T>(n) : T(0);
      if (gb) db(r, j) = (std::exp(lq) - p) / static_cast<T>(n);
    }
  }
  return loss / static_cast<T>(n);
}

} // namespace nn
} // namespace v0_1
} // namespace membound
