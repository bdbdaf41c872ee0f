// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The `estimator` concept: the marcher's policy for skipping empty space.
///
/// An estimator is asked, for a ray and a window [t0, t1) of it, for the sub-intervals where it
/// cannot rule out density. The marcher evaluates the field only at the steps whose midpoints fall
/// inside them. Every estimator therefore samples a subset of the `dense` estimator's samples (the
/// same step lattice), which is what makes recall against `dense` well defined.
///
/// To plug in your own estimator, give it:
/// @code
///   static constexpr std::string_view name;
///   struct workspace { ... };                      // per-thread scratch (may be empty)
///   workspace make_workspace() const;
///   // Append to `out`, in increasing order and disjoint, the parts of [t0, t1) that may hold
///   // density. Must be deterministic (same answer on every thread) and may use `ws` freely.
///   void occupied(const ray& r, float t0, float t1, workspace& ws, std::vector<span_t>& out) const;
///   std::size_t memory_bytes() const;              // bytes held while marching (see below)
/// @endcode
/// An estimator whose cost is per call rather than per ray (a network evaluated on SIMD batches of
/// points) may also answer many rays' windows at once (`batched_estimator`):
/// @code
///   // Appends to `out`, query after query, the spans occupied(q[i].r, q[i].t0, q[i].t1, ...)
///   // would append; off gets q.size() + 1 entries, query i's spans being out[off[i]] ..
///   // out[off[i+1]).
///   void occupied_batch(std::span<const ray_window> q, workspace& ws, std::vector<span_t>& out,
///                       std::vector<std::size_t>& off) const;
/// @endcode
/// The marcher then runs a wavefront over each tile of rays (march.hpp).
///
/// Memory (the figure every estimator reports): the bytes an estimator holds while marching. A
/// grid's bitfield counts one bit per cell; a network counts its parameters as f32. Update-time
/// state (a grid's float occupancy values) is reported separately by the estimator itself.

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// A half-open interval [t0, t1) along a ray.
struct span_t {
  float t0 = 0, t1 = 0;
};

/// One ray's window [t0, t1), as a batched estimator is asked for it.
struct ray_window {
  ray r;
  float t0 = 0, t1 = 0;
};

/// What the marcher asks of a skipping policy (see the file comment).
template <class E>
concept estimator = requires(const E& e, const ray& r, float t, typename E::workspace& ws, std::vector<span_t>& out) {
  { E::name } -> std::convertible_to<std::string_view>;
  { e.make_workspace() } -> std::same_as<typename E::workspace>;
  e.occupied(r, t, t, ws, out);
  { e.memory_bytes() } -> std::convertible_to<std::size_t>;
};

/// An estimator that also answers the windows of many rays in one call (see the file comment).
template <class E>
concept batched_estimator = estimator<E> && requires(const E& e, std::span<const ray_window> q, typename E::workspace& ws,
                                                     std::vector<span_t>& out, std::vector<std::size_t>& off) {
  e.occupied_batch(q, ws, out, off);
};

} // namespace occupancy
} // namespace v0_1
} // namespace membound
