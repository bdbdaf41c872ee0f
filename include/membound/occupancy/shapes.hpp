// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Analytic density fields made of boxes, spheres and capsules: the scenes of the tests and
/// the parts the procedural city is built from.
///
/// Each primitive has a constant density sigma inside, a colour, and a soft shell: with signed
/// distance s(x) to its surface and shell width w, its density is
///   sigma * clamp(0.5 - s(x) / w, 0, 1)          (w > 0; half density on the surface)
///   sigma * [s(x) <= 0]                          (w = 0)
/// The field is the maximum over primitives (the colour is that of the primitive giving the
/// maximum; the first one on ties), zero outside the field's box.

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "membound/core/view.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// One solid: a box [a, b], a sphere (centre a, radius r) or a capsule (segment a-b, radius r).
struct primitive {
  enum class kind : int { box, sphere, capsule };
  kind type = kind::box;
  vec3 a, b;
  float radius = 0;
  float sigma = 0;        ///< density inside (per metre), >= 0
  vec3 rgb{0.5f, 0.5f, 0.5f};

  static primitive make_box(vec3 lo, vec3 hi, float sigma, vec3 rgb) { return {kind::box, lo, hi, 0, sigma, rgb}; }
  static primitive make_sphere(vec3 c, float r, float sigma, vec3 rgb) { return {kind::sphere, c, c, r, sigma, rgb}; }
  static primitive make_capsule(vec3 p, vec3 q, float r, float sigma, vec3 rgb) {
    return {kind::capsule, p, q, r, sigma, rgb};
  }

  /// Signed distance to the surface (negative inside).
  float signed_distance(vec3 p) const noexcept {
    switch (type) {
    case kind::box: {
      const vec3 c = 0.5f * (a + b), h = 0.5f * (b - a);
      const float qx = std::abs(p.x - c.x) - h.x, qy = std::abs(p.y - c.y) - h.y, qz = std::abs(p.z - c.z) - h.z;
      const float ox = std::max(qx, 0.0f), oy = std::max(qy, 0.0f), oz = std::max(qz, 0.0f);
      return std::sqrt(ox * ox + oy * oy + oz * oz) + std::min(std::max(qx, std::max(qy, qz)), 0.0f);
    }
    case kind::sphere: return length(p - a) - radius;
    case kind::capsule: {
      const vec3 ab = b - a, ap = p - a;
      const float l2 = dot(ab, ab);
      const float t = l2 > 0 ? std::clamp(dot(ap, ab) / l2, 0.0f, 1.0f) : 0.0f;
      return length(ap - t * ab) - radius;
    }
    }
    return 0;
  }

  /// Density at p for shell width w.
  float density(vec3 p, float w) const noexcept {
    const float s = signed_distance(p);
    if (w <= 0) return s <= 0 ? sigma : 0.0f;
    return sigma * std::clamp(0.5f - s / w, 0.0f, 1.0f);
  }

  /// The box outside which the density is 0 for shell width w.
  aabb extent(float w) const noexcept {
    const float m = 0.5f * std::max(w, 0.0f);
    switch (type) {
    case kind::box: return {a - vec3{m, m, m}, b + vec3{m, m, m}};
    case kind::sphere: {
      const float r = radius + m;
      return {a - vec3{r, r, r}, a + vec3{r, r, r}};
    }
    case kind::capsule: {
      const float r = radius + m;
      return {vec3{std::min(a.x, b.x) - r, std::min(a.y, b.y) - r, std::min(a.z, b.z) - r},
              vec3{std::max(a.x, b.x) + r, std::max(a.y, b.y) + r, std::max(a.z, b.z) + r}};
    }
    }
    return {};
  }
};

namespace detail {
inline void check_primitive(const primitive& p, std::size_t i, const char* who) {
  MEMBOUND_EXPECTS(std::isfinite(p.sigma) && p.sigma >= 0, config_error, who, ": primitive ", i, " has sigma ", p.sigma,
                   ", expected finite and >= 0");
  MEMBOUND_EXPECTS(finite(p.a) && finite(p.b) && std::isfinite(p.radius), config_error, who, ": primitive ", i,
                   " has a non-finite coordinate");
  if (p.type == primitive::kind::box)
    MEMBOUND_EXPECTS(p.a.x <= p.b.x && p.a.y <= p.b.y && p.a.z <= p.b.z, config_error, who, ": box primitive ", i,
                     " is inverted (lo > hi on an axis)");
  else
    MEMBOUND_EXPECTS(p.radius >= 0, config_error, who, ": primitive ", i, " has radius ", p.radius, ", expected >= 0");
}

template <class T>
void check_out(const view<T>& v, index_t n, index_t cols, const char* who, const char* what) {
  if (cols == 0) {
    MEMBOUND_EXPECTS(v.rank() == 1 && v.extent(0) == n, shape_error, who, ": ", what, " has rank ", v.rank(), " and ",
                     v.size(), " entries, expected (", n, ")");
  } else {
    MEMBOUND_EXPECTS(v.rank() == 2 && v.extent(0) == n && v.extent(1) == cols && v.stride(1) == 1, shape_error, who,
                     ": ", what, " is not a (", n, ",", cols, ") array with contiguous rows");
  }
}
/// The batch form of a point-wise field: checks the shapes, then sigma[i] = at(x_i, &rgb_i) (rgb
/// only when `color`). `at(vec3, vec3*)` returns the density and writes the colour when asked.
template <class At>
void eval_pointwise(const view<const float>& x, const view<float>& sigma, const view<float>& rgb, bool color,
                    const char* who, At&& at) {
  const index_t n = check_points(x, who, "x");
  check_out(sigma, n, 0, who, "sigma");
  if (color) check_out(rgb, n, 3, who, "rgb");
  for (index_t i = 0; i < n; ++i) {
    const float* p = x.data() + i * x.stride(0);
    vec3 c;
    sigma.data()[i * sigma.stride(0)] = at(vec3{p[0], p[1], p[2]}, color ? &c : nullptr);
    if (color) {
      float* o = rgb.data() + i * rgb.stride(0);
      o[0] = c.x, o[1] = c.y, o[2] = c.z;
    }
  }
}
} // namespace detail

/// A field made of a list of primitives, evaluated by brute force (every primitive at every
/// point: O(N P)); meant for small test scenes. `city_field` buckets its primitives instead.
class analytic_field {
public:
  static constexpr std::string_view name = "analytic";

  /// @param box the field's bounds (sigma is 0 outside), @param shell the soft shell width w >= 0.
  /// @throws config_error for an invalid box, a negative or non-finite shell or a bad primitive.
  analytic_field(aabb box, std::vector<primitive> prims, float shell = 0.0f) : box_(box), prims_(std::move(prims)), shell_(shell) {
    check_aabb(box_, "analytic_field");
    MEMBOUND_EXPECTS(std::isfinite(shell) && shell >= 0, config_error, "analytic_field: shell width ", shell,
                     ", expected finite and >= 0");
    for (std::size_t i = 0; i < prims_.size(); ++i) detail::check_primitive(prims_[i], i, "analytic_field");
  }

  aabb bounds() const noexcept { return box_; }
  const std::vector<primitive>& primitives() const noexcept { return prims_; }
  float shell() const noexcept { return shell_; }

  /// sigma (N) at x (N,3). @throws shape_error.
  void density(view<const float> x, view<float> sigma) const { eval(x, sigma, view<float>(), false); }
  /// sigma (N) and rgb (N,3) at x (N,3); rgb is 0 where sigma is 0. @throws shape_error.
  void density_color(view<const float> x, view<float> sigma, view<float> rgb) const { eval(x, sigma, rgb, true); }

  /// Density at one point (the scalar form of `density`).
  float at(vec3 p, const primitive** which = nullptr) const noexcept {
    if (!box_.contains(p)) return 0.0f;
    float best = 0;
    const primitive* arg = nullptr;
    for (const primitive& q : prims_) {
      const float s = q.density(p, shell_);
      if (s > best) best = s, arg = &q;
    }
    if (which) *which = arg;
    return best;
  }

private:
  void eval(const view<const float>& x, const view<float>& sigma, const view<float>& rgb, bool color) const {
    detail::eval_pointwise(x, sigma, rgb, color, color ? "analytic_field::density_color" : "analytic_field::density",
                           [&](vec3 p, vec3* c) {
                             const primitive* q = nullptr;
                             const float d = at(p, &q);
                             if (c) *c = q ? q->rgb : vec3{};
                             return d;
                           });
  }

  aabb box_;
  std::vector<primitive> prims_;
  float shell_ = 0;
};
static_assert(colored_field<analytic_field>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
