// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The `density_field` concept: what the marcher and the estimators ask of a scene.
///
/// A density field answers, for a batch of N points, the volume density sigma >= 0 (per metre)
/// at each, and optionally a colour in [0,1]^3. It has a bounding box outside which sigma is 0;
/// the marcher never samples outside it. Fields are read-only during marching and must be safe to
/// call from several threads at once (const members, no shared mutable state).
///
/// To plug in your own field, give it:
/// @code
///   aabb bounds() const;
///   void density(view<const float> x /*(N,3)*/, view<float> sigma /*(N)*/) const;
///   // optional, makes it a colored_field:
///   void density_color(view<const float> x /*(N,3)*/, view<float> sigma /*(N)*/, view<float> rgb /*(N,3)*/) const;
/// @endcode
/// The built-in fields: `empty_field` (below), `analytic_field` (boxes, spheres and capsules:
/// the test scenes), `city_field` (the procedural city) and `voxel_field` (a dense grid from a
/// safetensors file).

#include <concepts>
#include <string_view>

#include "membound/core/view.hpp"
#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// A scene that gives sigma (N) at points (N,3) inside `bounds()`.
template <class F>
concept density_field = requires(const F& f, view<const float> x, view<float> sigma) {
  { f.bounds() } -> std::convertible_to<aabb>;
  f.density(x, sigma);
};

/// A density field that also gives colours (N,3) in [0,1].
template <class F>
concept colored_field = density_field<F> && requires(const F& f, view<const float> x, view<float> sigma, view<float> rgb) {
  f.density_color(x, sigma, rgb);
};

/// A field with sigma = 0 everywhere in its box (the all-empty scene of the tests).
struct empty_field {
  static constexpr std::string_view name = "empty";
  aabb box{{0, 0, 0}, {1, 1, 1}};
  aabb bounds() const noexcept { return box; }
  void density(view<const float> x, view<float> sigma) const {
    const index_t n = detail::check_points(x, "empty_field::density", "x");
    MEMBOUND_EXPECTS(sigma.rank() == 1 && sigma.extent(0) == n, shape_error, "empty_field::density: sigma has ",
                     sigma.size(), " entries, expected ", n);
    for (index_t i = 0; i < n; ++i) sigma.data()[i * sigma.stride(0)] = 0.0f;
  }
};
static_assert(density_field<empty_field>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
