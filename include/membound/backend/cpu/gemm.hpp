// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The one GEMM entry point: C = alpha * A B + beta * C in f32, through oneDNN's `dnnl_sgemm`
/// (`backend::onednn`, the default when the build found oneDNN) or Eigen's product
/// (`backend::eigen`, always available). There is no hand-written general GEMM in membound
/// (`cpu::packed_gemm` is a fused kernel for weights packed once, where vision/ measured it faster).
///
/// Layouts: every operand is a rank-2 view with a unit stride in one of its two dimensions (row-
/// or column-major, e.g. `w.transpose()`), and a leading stride >= its inner extent; other strided
/// views are packed into a contiguous copy first (one allocation, documented cost O(size)).
/// Complexity: 2 M N K flops. Threads: oneDNN uses its OpenMP pool (all cores unless
/// `omp_set_num_threads`/`OMP_NUM_THREADS` says otherwise) and Eigen its own when built with
/// OpenMP; both may split K differently for different thread counts, so results can differ in
/// the last bits between backends and thread counts (each is deterministic for a fixed count).

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
#include <dnnl.h>
#endif

#include "membound/backend/tags.hpp"
#include "membound/core/array.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace cpu {
namespace detail {

/// An operand that BLAS-style code can read: base pointer, leading dimension, transposed flag.
struct blas_operand {
  const float* data;
  index_t ld;
  bool trans; // true: the view (r,c) is stored column-major, i.e. op(X) = X^T of a row-major (c,r)
};

inline bool blas_ready(const view<const float>& x) {
  const index_t r = x.extent(0), c = x.extent(1);
  if (x.stride(1) == 1 && x.stride(0) >= std::max<index_t>(c, 1)) return true;
  if (x.stride(0) == 1 && x.stride(1) >= std::max<index_t>(r, 1)) return true;
  return r <= 1 || c <= 1; // vectors: any layout expressible below
}

inline blas_operand as_blas(const view<const float>& x) {
  const index_t r = x.extent(0), c = x.extent(1);
  if (x.stride(1) == 1 && x.stride(0) >= std::max<index_t>(c, 1)) return {x.data(), x.stride(0), false};
  if (x.stride(0) == 1 && x.stride(1) >= std::max<index_t>(r, 1)) return {x.data(), x.stride(1), true};
  // Single row or column with a non-unit stride only reaches here after packing (see gemm()).
  return {x.data(), std::max<index_t>(c, 1), false};
}

/// Byte range [lo, hi) spanned by a view (conservative bounding range).
inline std::pair<std::uintptr_t, std::uintptr_t> span_of(const float* p, index_t r, index_t c, index_t s0, index_t s1) {
  if (r == 0 || c == 0) return {0, 0};
  const index_t lo = std::min<index_t>(0, (r - 1) * s0) + std::min<index_t>(0, (c - 1) * s1);
  const index_t hi = std::max<index_t>(0, (r - 1) * s0) + std::max<index_t>(0, (c - 1) * s1);
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  return {base + static_cast<std::uintptr_t>(lo * index_t(sizeof(float))),
          base + static_cast<std::uintptr_t>((hi + 1) * index_t(sizeof(float)))};
}

inline void check_gemm(const view<const float>& a, const view<const float>& b, const view<float>& c) {
  MEMBOUND_EXPECTS(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, shape_error, "gemm: operands have ranks ",
                   a.rank(), ", ", b.rank(), ", ", c.rank(), "; expected A (M,K), B (K,N), C (M,N)");
  MEMBOUND_EXPECTS(a.extent(1) == b.extent(0) && c.extent(0) == a.extent(0) && c.extent(1) == b.extent(1),
                   shape_error, "gemm: A (", a.extent(0), ",", a.extent(1), ") x B (", b.extent(0), ",", b.extent(1),
                   ") -> C (", c.extent(0), ",", c.extent(1), ") do not fit (M,K) x (K,N) -> (M,N)");
  const auto rc = span_of(c.data(), c.extent(0), c.extent(1), c.stride(0), c.stride(1));
  for (const view<const float>* x : {&a, &b}) {
    const auto rx = span_of(x->data(), x->extent(0), x->extent(1), x->stride(0), x->stride(1));
    MEMBOUND_EXPECTS(rc.first >= rx.second || rx.first >= rc.second || rc.first == rc.second || rx.first == rx.second,
                     shape_error, "gemm: C overlaps ", (x == &a ? "A" : "B"), " in memory; C must not alias an input");
  }
}

/// C = beta * C for the K == 0 case (beta == 0 writes zeros, ignoring NaN in C).
inline void scale_c(view<float> c, float beta) {
  for (index_t i = 0; i < c.extent(0); ++i)
    for (index_t j = 0; j < c.extent(1); ++j) c(i, j) = beta == 0.0f ? 0.0f : beta * c(i, j);
}

using row_map = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;
using col_map = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;
using out_map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Row-major C (M,N) = alpha op(A) op(B) + beta C through Eigen.
inline void eigen_gemm(index_t m, index_t n, index_t k, float alpha, blas_operand a, blas_operand b, float beta, float* c, index_t ldc) {
  out_map cm(c, m, n, Eigen::OuterStride<>(ldc));
  auto run = [&](const auto& am, const auto& bm) {
    if (beta == 0.0f) cm.noalias() = alpha * (am * bm);
    else {
      if (beta != 1.0f) cm *= beta;
      cm.noalias() += alpha * (am * bm);
    }
  };
  if (!a.trans && !b.trans) run(row_map(a.data, m, k, Eigen::OuterStride<>(a.ld)), row_map(b.data, k, n, Eigen::OuterStride<>(b.ld)));
  else if (!a.trans && b.trans) run(row_map(a.data, m, k, Eigen::OuterStride<>(a.ld)), col_map(b.data, k, n, Eigen::OuterStride<>(b.ld)));
  else if (a.trans && !b.trans) run(col_map(a.data, m, k, Eigen::OuterStride<>(a.ld)), row_map(b.data, k, n, Eigen::OuterStride<>(b.ld)));
  else run(col_map(a.data, m, k, Eigen::OuterStride<>(a.ld)), col_map(b.data, k, n, Eigen::OuterStride<>(b.ld)));
}

#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
inline void onednn_gemm(index_t m, index_t n, index_t k, float alpha, blas_operand a, blas_operand b, float beta, float* c, index_t ldc) {
  const dnnl_status_t st = dnnl_sgemm(a.trans ? 'T' : 'N', b.trans ? 'T' : 'N', m, n, k, alpha, a.data, a.ld, b.data,
                                      b.ld, beta, c, ldc);
  MEMBOUND_EXPECTS(st == dnnl_success, config_error, "gemm: dnnl_sgemm failed with status ", static_cast<int>(st),
                   " for M=", m, " N=", n, " K=", k);
}
#endif

} // namespace detail

/// C (M,N) = alpha * A (M,K) * B (K,N) + beta * C, f32.
/// @tparam B `backend::onednn` (needs MEMBOUND_HAS_ONEDNN) or `backend::eigen`; default
///         `backend::default_gemm` (oneDNN when found).
/// @param a (M,K), @param b (K,N): any strides (non-BLAS layouts are packed first).
/// @param c (M,N), any strides (one unit stride avoids a packed copy); must not overlap A or B. beta == 0 ignores
///        C's old contents (NaN in C does not propagate), as in BLAS.
/// @throws shape_error for mismatched extents, ranks other than 2, or C aliasing an input.
/// Complexity: 2 M N K flops; no allocation unless an input needs packing.
template <class B = backend::default_gemm>
void gemm(view<const float> a, view<const float> b, view<float> c, float alpha = 1.0f, float beta = 0.0f) {
  static_assert(std::is_same_v<B, backend::eigen> || std::is_same_v<B, backend::onednn>,
                "gemm: the backend must be backend::eigen or backend::onednn");
#if !(defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN)
  static_assert(!std::is_same_v<B, backend::onednn>,
                "gemm<backend::onednn> needs oneDNN: link DNNL::dnnl and define MEMBOUND_HAS_ONEDNN=1");
#endif
  detail::check_gemm(a, b, c);
  const index_t m = a.extent(0), k = a.extent(1), n = b.extent(1);
  if (m == 0 || n == 0) return;
  if (k == 0) { detail::scale_c(c, beta); return; }
  // Pack operands that BLAS cannot address (e.g. both strides > 1).
  array<float> pa, pb;
  if (!detail::blas_ready(a) || (a.stride(0) != 1 && a.stride(1) != 1)) { pa = array<float>::from(a); a = pa.view(); }
  if (!detail::blas_ready(b) || (b.stride(0) != 1 && b.stride(1) != 1)) { pb = array<float>::from(b); b = pb.view(); }
  const detail::blas_operand oa = detail::as_blas(a), ob = detail::as_blas(b);
  const bool c_row = c.stride(1) == 1 && c.stride(0) >= std::max<index_t>(n, 1);
  const bool c_col = c.stride(0) == 1 && c.stride(1) >= std::max<index_t>(m, 1);
  auto run = [&](index_t mm, index_t nn, detail::blas_operand x, detail::blas_operand y, float* out, index_t ldc) {
    if constexpr (std::is_same_v<B, backend::eigen>) {
      detail::eigen_gemm(mm, nn, k, alpha, x, y, beta, out, ldc);
    } else {
#if defined(MEMBOUND_HAS_ONEDNN) && MEMBOUND_HAS_ONEDNN
      detail::onednn_gemm(mm, nn, k, alpha, x, y, beta, out, ldc);
#endif
    }
  };
  if (c_row) {
    run(m, n, oa, ob, c.data(), c.stride(0));
  } else if (c_col) { // C^T (N,M) = B^T A^T, row-major
    run(n, m, detail::blas_operand{ob.data, ob.ld, !ob.trans}, detail::blas_operand{oa.data, oa.ld, !oa.trans}, c.data(),
        c.stride(1));
  } else { // C with no unit stride: compute in a packed copy, then scatter back
    array<float> pc = array<float>::from(view<const float>(c));
    run(m, n, oa, ob, pc.data(), n);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) c(i, j) = pc(i, j);
  }
}

} // namespace cpu
} // namespace v0_1
} // namespace membound
