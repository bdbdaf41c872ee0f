// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Adaptors between membound views and Eigen: `as_eigen` maps a rank-2 view (any strides)
/// as an `Eigen::Map` without copying; `as_eigen_vector` maps a rank-1 view; `from_eigen` views any
/// Eigen object with direct access (Matrix, Map, Block of those). All O(1), no allocation.

#include <type_traits>

#include <Eigen/Core>

#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {

/// Eigen map type for a rank-2 view of T (row-major, arbitrary strides).
template <class T>
using eigen_matrix_map =
    Eigen::Map<std::conditional_t<std::is_const_v<T>,
                                  const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                                  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>,
               Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

/// Eigen map type for a rank-1 view of T (arbitrary stride).
template <class T>
using eigen_vector_map =
    Eigen::Map<std::conditional_t<std::is_const_v<T>, const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                  Eigen::Matrix<T, Eigen::Dynamic, 1>>,
               Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>;

/// Maps a rank-2 view (M,N) as an Eigen matrix. @throws shape_error if rank != 2.
template <class T>
eigen_matrix_map<T> as_eigen(const view<T>& v) {
  MEMBOUND_EXPECTS(v.rank() == 2, shape_error, "as_eigen: rank-", v.rank(), " view, expected rank 2");
  return eigen_matrix_map<T>(v.data(), v.extent(0), v.extent(1), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(v.stride(0), v.stride(1)));
}

/// Maps a rank-1 view (N) as an Eigen column vector. @throws shape_error if rank != 1.
template <class T>
eigen_vector_map<T> as_eigen_vector(const view<T>& v) {
  MEMBOUND_EXPECTS(v.rank() == 1, shape_error, "as_eigen_vector: rank-", v.rank(), " view, expected rank 1");
  return eigen_vector_map<T>(v.data(), v.extent(0), Eigen::InnerStride<Eigen::Dynamic>(v.stride(0)));
}

/// Views an Eigen object with direct access as a rank-2 view (rows, cols) with its strides.
template <class E>
  requires requires(E& e) { e.data(); e.rowStride(); e.colStride(); e.rows(); e.cols(); }
auto from_eigen(E& e) {
  using T = std::remove_pointer_t<decltype(e.data())>;
  const index_t ext[] = {static_cast<index_t>(e.rows()), static_cast<index_t>(e.cols())};
  const index_t str[] = {static_cast<index_t>(e.rowStride()), static_cast<index_t>(e.colStride())};
  return view<T>(e.data(), ext, str);
}

} // namespace v0_1
} // namespace membound
