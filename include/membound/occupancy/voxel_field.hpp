// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `voxel_field`: a dense density (and colour) grid, stored in safetensors, sampled with
/// trilinear interpolation.
///
/// File layout (what `save` writes and `load` accepts):
///   - metadata "format" = "membound.voxel_field", "resolution" = "X Y Z" (integers >= 1),
///     "aabb" = "x0 y0 z0 x1 y1 z1" (the box the voxels tile);
///   - tensor "density", shape (X,Y,Z), any float dtype (converted to f32), finite and >= 0;
///     element [i,j,k] is the density at the centre of voxel (i,j,k);
///   - optional tensor "rgb", shape (X,Y,Z,3), values in [0,1].
/// Sampling: trilinear between voxel centres, clamped to the outermost centres inside the box
/// (constant extrapolation over the outer half voxel), zero outside the box.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"
#include "membound/occupancy/shapes.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// Largest voxel count `voxel_field` accepts (2^31: 8 GiB of f32 density).
inline constexpr index_t voxel_field_max_voxels = index_t{1} << 31;

class voxel_field {
public:
  static constexpr std::string_view name = "voxel";

  /// A grid over `box` with density (X,Y,Z) and optionally rgb (X,Y,Z,3) (empty array: no colour).
  /// @throws config_error for a bad box; shape_error for mismatched arrays; format_error for a
  ///   negative or non-finite density (naming the voxel).
  voxel_field(aabb box, array<float> density, array<float> rgb = {}) : box_(box), density_(std::move(density)), rgb_(std::move(rgb)) {
    check_aabb(box_, "voxel_field");
    MEMBOUND_EXPECTS(density_.rank() == 3 && density_.size() > 0, shape_error, "voxel_field: density has rank ",
                     density_.rank(), " and ", density_.size(), " elements, expected a non-empty (X,Y,Z) array");
    for (int a = 0; a < 3; ++a) n_[a] = static_cast<int>(density_.extent(a));
    if (!rgb_.empty())
      MEMBOUND_EXPECTS(rgb_.rank() == 4 && rgb_.extent(0) == n_[0] && rgb_.extent(1) == n_[1] && rgb_.extent(2) == n_[2] &&
                           rgb_.extent(3) == 3,
                       shape_error, "voxel_field: rgb is not (", n_[0], ",", n_[1], ",", n_[2], ",3)");
    const float* d = density_.data();
    for (index_t i = 0; i < density_.size(); ++i)
      MEMBOUND_EXPECTS(std::isfinite(d[i]) && d[i] >= 0, format_error, "voxel_field: density of voxel ", i, " is ", d[i],
                       ", expected finite and >= 0");
  }

  /// Samples `field` at the voxel centres of an X x Y x Z grid over `box` (colour too when the
  /// field has it). @throws config_error for a bad box or resolution.
  template <density_field F>
  static voxel_field bake(const F& field, aabb box, int nx, int ny, int nz) {
    check_aabb(box, "voxel_field::bake");
    MEMBOUND_EXPECTS(nx >= 1 && ny >= 1 && nz >= 1 &&
                         static_cast<double>(nx) * ny * nz <= static_cast<double>(voxel_field_max_voxels),
                     config_error, "voxel_field::bake: resolution ", nx, "x", ny, "x", nz, ", expected >= 1 per axis and at most 2^31 voxels");
    array<float> density({nx, ny, nz}); // (X,Y,Z)
    array<float> rgb;
    if constexpr (colored_field<F>) rgb = array<float>({nx, ny, nz, 3}); // (X,Y,Z,3)
    const vec3 e = box.size();
    array<float> x({nz, 3}); // (N,3): one z column at a time
    for (int i = 0; i < nx; ++i)
      for (int j = 0; j < ny; ++j) {
        for (int k = 0; k < nz; ++k) {
          float* p = x.data() + 3 * k;
          p[0] = box.lo.x + (static_cast<float>(i) + 0.5f) * e.x / static_cast<float>(nx);
          p[1] = box.lo.y + (static_cast<float>(j) + 0.5f) * e.y / static_cast<float>(ny);
          p[2] = box.lo.z + (static_cast<float>(k) + 0.5f) * e.z / static_cast<float>(nz);
        }
        const index_t off = (index_t{i} * ny + j) * nz;
        auto sig = make_view(density.data() + off, {index_t{nz}}); // (N)
        if constexpr (colored_field<F>)
          field.density_color(x.cview(), sig, make_view(rgb.data() + 3 * off, {index_t{nz}, 3}));
        else
          field.density(x.cview(), sig);
      }
    return voxel_field(box, std::move(density), std::move(rgb));
  }

  /// Reads a voxel file (layout above).
  /// @throws io_error / format_error from the reader; format_error when the metadata is missing or
  ///   malformed, or when a tensor's shape does not match the header's resolution (naming both).
  static voxel_field load(const std::filesystem::path& path) { return from_file(io::safetensors::open(path)); }
  /// The same from bytes in memory (the fuzz target's entry).
  static voxel_field from_bytes(std::span<const std::byte> bytes) { return from_file(io::safetensors::from_buffer_copy(bytes)); }

  /// The file's bytes (layout above), density and rgb as f32.
  std::vector<std::byte> to_bytes() const { return writer().to_bytes(); }
  void save(const std::filesystem::path& path) const { writer().write(path); }

  aabb bounds() const noexcept { return box_; }
  int resolution(int axis) const noexcept { return n_[axis]; }
  bool has_color() const noexcept { return !rgb_.empty(); }
  const array<float>& density_grid() const noexcept { return density_; }
  std::size_t memory_bytes() const noexcept { return density_.bytes() + rgb_.bytes(); }

  void density(view<const float> x, view<float> sigma) const { eval(x, sigma, view<float>(), false); }
  /// rgb is 0 when the grid has no colour.
  void density_color(view<const float> x, view<float> sigma, view<float> rgb) const { eval(x, sigma, rgb, true); }

private:
  static voxel_field from_file(const io::safetensors& f) {
    const auto& md = f.metadata();
    auto get = [&](const char* key) -> const std::string& {
      const auto it = md.find(key);
      MEMBOUND_EXPECTS(it != md.end(), format_error, "voxel file: metadata \"", key, "\" is missing");
      return it->second;
    };
    MEMBOUND_EXPECTS(get("format") == "membound.voxel_field", format_error, "voxel file: format is \"", get("format"),
                     "\", expected \"membound.voxel_field\"");
    std::istringstream rs(get("resolution"));
    long long r[3] = {0, 0, 0};
    rs >> r[0] >> r[1] >> r[2];
    MEMBOUND_EXPECTS(!rs.fail() && r[0] >= 1 && r[1] >= 1 && r[2] >= 1 &&
                         static_cast<double>(r[0]) * static_cast<double>(r[1]) * static_cast<double>(r[2]) <=
                             static_cast<double>(voxel_field_max_voxels),
                     format_error, "voxel file: resolution \"", get("resolution"),
                     "\", expected three integers >= 1 with at most 2^31 voxels");
    std::istringstream as(get("aabb"));
    aabb box;
    as >> box.lo.x >> box.lo.y >> box.lo.z >> box.hi.x >> box.hi.y >> box.hi.z;
    MEMBOUND_EXPECTS(!as.fail(), format_error, "voxel file: aabb \"", get("aabb"), "\", expected six numbers");
    MEMBOUND_EXPECTS(finite(box.lo) && finite(box.hi) && box.lo.x < box.hi.x && box.lo.y < box.hi.y && box.lo.z < box.hi.z,
                     format_error, "voxel file: aabb \"", get("aabb"), "\" is empty, inverted or not finite");
    auto check_shape = [&](const char* t, int rank) {
      const auto& sh = f.info(t).shape;
      const bool ok = static_cast<int>(sh.size()) == rank && sh[0] == r[0] && sh[1] == r[1] && sh[2] == r[2] &&
                      (rank == 3 || sh[3] == 3);
      if (ok) return;
      std::ostringstream got;
      for (std::size_t i = 0; i < sh.size(); ++i) got << (i ? "," : "") << sh[i];
      MEMBOUND_EXPECTS(ok, format_error, "voxel file: tensor \"", t, "\" has shape (", got.str(),
                       ") but the header's resolution is ", r[0], " ", r[1], " ", r[2],
                       rank == 3 ? " (expected (X,Y,Z))" : " (expected (X,Y,Z,3))");
    };
    MEMBOUND_EXPECTS(f.contains("density"), format_error, "voxel file: tensor \"density\" is missing");
    check_shape("density", 3);
    array<float> density = f.load<float>("density");
    array<float> rgb;
    if (f.contains("rgb")) {
      check_shape("rgb", 4);
      rgb = f.load<float>("rgb");
      for (float c : rgb.span())
        MEMBOUND_EXPECTS(c >= 0 && c <= 1, format_error, "voxel file: an rgb value is ", c, ", expected in [0,1]");
    }
    return voxel_field(box, std::move(density), std::move(rgb)); // checks every density (format_error)
  }

  io::safetensors_writer writer() const {
    io::safetensors_writer w;
    w.add("density", density_);
    if (!rgb_.empty()) w.add("rgb", rgb_);
    w.set_metadata("format", "membound.voxel_field");
    w.set_metadata("resolution", std::to_string(n_[0]) + " " + std::to_string(n_[1]) + " " + std::to_string(n_[2]));
    std::ostringstream a;
    a.precision(9);
    a << box_.lo.x << ' ' << box_.lo.y << ' ' << box_.lo.z << ' ' << box_.hi.x << ' ' << box_.hi.y << ' ' << box_.hi.z;
    w.set_metadata("aabb", a.str());
    return w;
  }

  void eval(const view<const float>& x, const view<float>& sigma, const view<float>& rgb, bool color) const {
    const index_t n = detail::check_points(x, "voxel_field::density", "x");
    detail::check_out(sigma, n, 0, "voxel_field::density", "sigma");
    if (color) detail::check_out(rgb, n, 3, "voxel_field::density_color", "rgb");
    const vec3 e = box_.size();
    for (index_t q = 0; q < n; ++q) {
      const float* p = x.data() + q * x.stride(0);
      float* c = color ? rgb.data() + q * rgb.stride(0) : nullptr;
      if (c) c[0] = c[1] = c[2] = 0;
      const vec3 pt{p[0], p[1], p[2]};
      if (!box_.contains(pt)) {
        sigma.data()[q * sigma.stride(0)] = 0;
        continue;
      }
      int i0[3];
      float f[3];
      for (int a = 0; a < 3; ++a) {
        const float u = std::clamp((pt[a] - box_.lo[a]) / e[a] * static_cast<float>(n_[a]) - 0.5f, 0.0f,
                                   static_cast<float>(n_[a] - 1));
        i0[a] = std::min(static_cast<int>(u), std::max(0, n_[a] - 2));
        f[a] = n_[a] == 1 ? 0.0f : u - static_cast<float>(i0[a]);
      }
      float s = 0, cr = 0, cg = 0, cb = 0;
      for (int corner = 0; corner < 8; ++corner) {
        int id[3];
        float wt = 1;
        for (int a = 0; a < 3; ++a) {
          const int bit = (corner >> a) & 1;
          id[a] = std::min(i0[a] + bit, n_[a] - 1);
          wt *= bit ? f[a] : 1.0f - f[a];
        }
        const index_t v = (index_t{id[0]} * n_[1] + id[1]) * n_[2] + id[2];
        s += wt * density_.data()[v];
        if (c && !rgb_.empty()) {
          const float* col = rgb_.data() + 3 * v;
          cr += wt * col[0], cg += wt * col[1], cb += wt * col[2];
        }
      }
      sigma.data()[q * sigma.stride(0)] = s;
      if (c) c[0] = cr, c[1] = cg, c[2] = cb;
    }
  }

  aabb box_;
  array<float> density_, rgb_;
  int n_[3] = {1, 1, 1};
};
static_assert(colored_field<voxel_field>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
