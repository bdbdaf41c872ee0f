// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Scalar oracle for matrix products: C = alpha * A B + beta * C with double accumulation,
/// over views of any strides. O(M N K); for tests and examples only.

#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace ref {

/// C (M,N) = alpha * A (M,K) * B (K,N) + beta * C, accumulating in double. beta == 0 ignores C's
/// old contents (as BLAS does: NaN in C does not propagate). @throws shape_error
inline void gemm(view<const float> a, view<const float> b, view<float> c, float alpha = 1.0f, float beta = 0.0f) {
  MEMBOUND_EXPECTS(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, shape_error, "ref::gemm: ranks ", a.rank(), ", ",
                   b.rank(), ", ", c.rank(), ", expected 2, 2, 2");
  const index_t m = a.extent(0), k = a.extent(1), n = b.extent(1);
  MEMBOUND_EXPECTS(b.extent(0) == k && c.extent(0) == m && c.extent(1) == n, shape_error, "ref::gemm: A (", m, ",", k,
                   ") B (", b.extent(0), ",", n, ") C (", c.extent(0), ",", c.extent(1), ")");
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (index_t p = 0; p < k; ++p) acc += static_cast<double>(a(i, p)) * static_cast<double>(b(p, j));
      const double old = beta == 0.0f ? 0.0 : static_cast<double>(beta) * static_cast<double>(c(i, j));
      c(i, j) = static_cast<float>(static_cast<double>(alpha) * acc + old);
    }
}

} // namespace ref
} // namespace v0_1
} // namespace membound
