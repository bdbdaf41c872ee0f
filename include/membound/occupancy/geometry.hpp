// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief occupancy/ geometry: 3-vectors, axis-aligned boxes, rays, ray-box clipping (the slab
/// test) and pinhole cameras that generate batches of rays.
///
/// Conventions (every file of occupancy/ uses them):
///   - World units are metres; z is up. A ray is x(t) = o + t d with d of unit length, so t is a
///     distance; `make_ray` normalises and validates.
///   - Batches of points are (N,3) float rows; batches of rays are an (N,3) origin and an (N,3)
///     direction array.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "membound/config.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// A 3-vector of floats (x, y, z).
struct vec3 {
  float x = 0, y = 0, z = 0;
  constexpr float operator[](int i) const noexcept { return i == 0 ? x : (i == 1 ? y : z); }
  friend constexpr vec3 operator+(vec3 a, vec3 b) noexcept { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
  friend constexpr vec3 operator-(vec3 a, vec3 b) noexcept { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
  friend constexpr vec3 operator*(float s, vec3 a) noexcept { return {s * a.x, s * a.y, s * a.z}; }
  friend constexpr vec3 operator*(vec3 a, float s) noexcept { return {s * a.x, s * a.y, s * a.z}; }
  friend constexpr bool operator==(vec3 a, vec3 b) noexcept = default;
};

constexpr float dot(vec3 a, vec3 b) noexcept { return a.x * b.x + a.y * b.y + a.z * b.z; }
constexpr vec3 cross(vec3 a, vec3 b) noexcept {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
inline float length(vec3 a) noexcept { return std::sqrt(dot(a, a)); }
inline bool finite(vec3 a) noexcept { return std::isfinite(a.x) && std::isfinite(a.y) && std::isfinite(a.z); }

/// An axis-aligned box [lo, hi]. Valid when every coordinate is finite and lo < hi on each axis
/// (`check_aabb`); a box may be degenerate only where a function says so.
struct aabb {
  vec3 lo, hi;
  vec3 size() const noexcept { return hi - lo; }
  vec3 center() const noexcept { return 0.5f * (lo + hi); }
  bool contains(vec3 p) const noexcept {
    return p.x >= lo.x && p.x <= hi.x && p.y >= lo.y && p.y <= hi.y && p.z >= lo.z && p.z <= hi.z;
  }
  /// The box scaled by `s` about its centre (nerfacc's level boxes use s = 2^level).
  aabb scaled(float s) const noexcept {
    const vec3 c = center(), h = 0.5f * s * size();
    return {c - h, c + h};
  }
  double volume() const noexcept {
    const vec3 e = size();
    return static_cast<double>(e.x) * e.y * e.z;
  }
};

/// @throws config_error naming the box when a coordinate is not finite or lo >= hi on an axis
/// (an empty or inverted box).
inline void check_aabb(const aabb& b, const char* who) {
  MEMBOUND_EXPECTS(finite(b.lo) && finite(b.hi), config_error, who, ": the box (", b.lo.x, ",", b.lo.y, ",", b.lo.z,
                   ")-(", b.hi.x, ",", b.hi.y, ",", b.hi.z, ") has a non-finite coordinate");
  MEMBOUND_EXPECTS(b.lo.x < b.hi.x && b.lo.y < b.hi.y && b.lo.z < b.hi.z, config_error, who, ": the box (", b.lo.x, ",",
                   b.lo.y, ",", b.lo.z, ")-(", b.hi.x, ",", b.hi.y, ",", b.hi.z,
                   ") is empty or inverted, expected lo < hi on every axis");
}

/// A ray o + t d with unit d, and 1/d per axis (+-inf on axes d does not move along).
struct ray {
  vec3 o, d, inv_d;
  vec3 at(float t) const noexcept { return o + t * d; }
};

/// Builds a ray from an origin and a direction of any non-zero length (normalised here).
/// @throws config_error for a non-finite origin or direction, or a direction of zero length.
inline ray make_ray(vec3 o, vec3 d) {
  MEMBOUND_EXPECTS(finite(o), config_error, "make_ray: origin (", o.x, ",", o.y, ",", o.z, ") is not finite");
  MEMBOUND_EXPECTS(finite(d), config_error, "make_ray: direction (", d.x, ",", d.y, ",", d.z, ") is not finite");
  const float n = length(d);
  MEMBOUND_EXPECTS(n > 0 && std::isfinite(n), config_error, "make_ray: direction (", d.x, ",", d.y, ",", d.z,
                   ") has length ", n, ", expected > 0");
  const vec3 u = (1.0f / n) * d;
  constexpr float inf = std::numeric_limits<float>::infinity();
  auto inv = [](float c) { return c == 0.0f ? (std::signbit(c) ? -inf : inf) : 1.0f / c; };
  return {o, u, {inv(u.x), inv(u.y), inv(u.z)}};
}

/// The part [t0, t1] of a ray inside a box; `hit` is false when the ray misses it or only the
/// part behind t_min would be inside.
struct interval {
  float t0 = 0, t1 = 0;
  bool hit = false;
};

/// Slab test of a ray against a closed box, clipped to [t_min, t_max].
///  - A ray along an axis (d component 0) is inside that slab iff lo <= o <= hi on that axis; the
///    0 * inf = NaN case of the textbook formula is handled explicitly.
///  - A ray grazing a face (o on the face plane, moving within it) counts as inside (closed box);
///    the returned interval may then have t0 == t1 for a ray touching only an edge or corner.
///  - A ray starting inside returns t0 = t_min.
/// O(1), no allocation. The box must be valid (`check_aabb`).
inline interval clip(const ray& r, const aabb& b, float t_min = 0.0f,
                     float t_max = std::numeric_limits<float>::infinity()) noexcept {
  float t0 = t_min, t1 = t_max;
  for (int a = 0; a < 3; ++a) {
    const float o = r.o[a], lo = b.lo[a], hi = b.hi[a];
    if (r.d[a] == 0.0f) {
      if (o < lo || o > hi) return {};
      continue;
    }
    const float inv = r.inv_d[a];
    float ta = (lo - o) * inv, tb = (hi - o) * inv;
    if (ta > tb) std::swap(ta, tb);
    t0 = std::max(t0, ta);
    t1 = std::min(t1, tb);
  }
  if (!(t0 <= t1)) return {};
  return {t0, t1, true};
}

/// A pinhole camera: `width` x `height` pixels, focal lengths and principal point in pixels,
/// looking from `eye` towards `target` with `up` (default +z) fixing the roll. Pixel (u, v) has
/// its ray through the pixel centre (u + 0.5, v + 0.5); v grows downwards in the image.
struct pinhole_camera {
  int width = 0, height = 0;
  float fx = 0, fy = 0, cx = 0, cy = 0;
  vec3 eye, forward, right, down; ///< orthonormal camera frame (world)

  /// A camera with a horizontal field of view in degrees (0 < fov < 180).
  /// @throws config_error for a non-positive image size, a bad field of view, a non-finite eye or
  /// target, target == eye, or `up` parallel to the viewing direction.
  static pinhole_camera look_at(int width, int height, float fov_x_degrees, vec3 eye, vec3 target,
                                vec3 up = {0, 0, 1}) {
    MEMBOUND_EXPECTS(width > 0 && height > 0, config_error, "pinhole_camera: image is ", width, "x", height,
                     ", expected positive sizes");
    MEMBOUND_EXPECTS(fov_x_degrees > 0 && fov_x_degrees < 180, config_error, "pinhole_camera: field of view ",
                     fov_x_degrees, " degrees, expected in (0, 180)");
    MEMBOUND_EXPECTS(finite(eye) && finite(target) && finite(up), config_error,
                     "pinhole_camera: eye, target and up must be finite");
    const vec3 f = target - eye;
    const float fl = length(f);
    MEMBOUND_EXPECTS(fl > 0, config_error, "pinhole_camera: target equals eye (", eye.x, ",", eye.y, ",", eye.z, ")");
    pinhole_camera c;
    c.width = width;
    c.height = height;
    c.forward = (1.0f / fl) * f;
    vec3 rt = cross(c.forward, up);
    const float rl = length(rt);
    MEMBOUND_EXPECTS(rl > 1e-6f, config_error, "pinhole_camera: up (", up.x, ",", up.y, ",", up.z,
                     ") is parallel to the viewing direction");
    c.right = (1.0f / rl) * rt;
    c.down = cross(c.forward, c.right);
    c.eye = eye;
    const double pi = 3.14159265358979323846;
    c.fx = c.fy = static_cast<float>(0.5 * width / std::tan(0.5 * fov_x_degrees * pi / 180.0));
    c.cx = 0.5f * static_cast<float>(width);
    c.cy = 0.5f * static_cast<float>(height);
    return c;
  }

  /// The unit ray through pixel (u, v).
  ray pixel_ray(int u, int v) const {
    const float x = (static_cast<float>(u) + 0.5f - cx) / fx, y = (static_cast<float>(v) + 0.5f - cy) / fy;
    return make_ray(eye, forward + x * right + y * down);
  }

  /// All rays, row-major (v, u): origins and directions (width*height, 3) each.
  void rays(array<float>& origins /*(N,3)*/, array<float>& directions /*(N,3)*/) const {
    const index_t n = index_t{width} * height;
    origins = array<float>({n, 3});    // (N,3)
    directions = array<float>({n, 3}); // (N,3)
    for (int v = 0; v < height; ++v)
      for (int u = 0; u < width; ++u) {
        const ray r = pixel_ray(u, v);
        const index_t i = index_t{v} * width + u;
        float* o = origins.data() + 3 * i;
        float* d = directions.data() + 3 * i;
        o[0] = r.o.x, o[1] = r.o.y, o[2] = r.o.z;
        d[0] = r.d.x, d[1] = r.d.y, d[2] = r.d.z;
      }
  }
};

namespace detail {
/// Checks an (N,3) float batch with contiguous rows; returns N.
template <class T>
index_t check_points(const view<T>& x, const char* who, const char* what) {
  MEMBOUND_EXPECTS(x.rank() == 2 && x.extent(1) == 3, shape_error, who, ": ", what, " has rank ", x.rank(),
                   " and extents (", x.rank() > 0 ? x.extent(0) : 0, ",", x.rank() > 1 ? x.extent(1) : 0,
                   "), expected (N,3)");
  MEMBOUND_EXPECTS(x.stride(1) == 1, shape_error, who, ": ", what, " rows must be contiguous");
  return x.extent(0);
}
} // namespace detail

} // namespace occupancy
} // namespace v0_1
} // namespace membound
