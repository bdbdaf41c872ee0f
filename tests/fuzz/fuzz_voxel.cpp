// SPDX-License-Identifier: MIT
// libFuzzer target for the voxel-grid reader (occupancy::voxel_field::from_bytes: safetensors with
// "density" (X,Y,Z), optional "rgb" (X,Y,Z,3) and the header's resolution and box). Every input
// must either load or throw a membound::error; anything else is a bug. For inputs that load it
// samples the field at the box corners, its centre and outside it, and checks that the densities
// are finite and >= 0 and the colours in [0,1] (interpolation stays inside the grid).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "membound/occupancy/voxel_field.hpp"

using namespace membound;
using namespace membound::occupancy;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  try {
    const voxel_field v = voxel_field::from_bytes(in);
    const aabb b = v.bounds();
    array<float> x({6, 3}), s({6}), rgb({6, 3}); // (N,3) (N) (N,3)
    const vec3 pts[6] = {b.lo, b.hi, b.center(), {b.lo.x, b.hi.y, b.center().z}, b.hi + vec3{1, 1, 1}, b.lo - vec3{1, 0, 0}};
    for (int i = 0; i < 6; ++i) x(i, 0) = pts[i].x, x(i, 1) = pts[i].y, x(i, 2) = pts[i].z;
    v.density_color(x.cview(), s.view(), rgb.view());
    for (int i = 0; i < 6; ++i) check(std::isfinite(s[i]) && s[i] >= 0);
    for (float c : rgb.span()) check(c >= 0 && c <= 1.0001f);
  } catch (const membound::error&) {
  }
  return 0;
}
