// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief A procedural city: the large, irregular, mostly empty scene LeC2O-NeRF targets
/// (arXiv 2411.11374), at a configurable area.
///
/// Layout (every choice drawn from `seed` with std::mt19937, so a configuration always gives the
/// same city on every machine):
///   - a square grid of `blocks` x `blocks` city blocks (`block` metres) separated by streets
///     (`street` metres); blocks = round(blocks_at_1x * sqrt(scale)), so `scale` multiplies the area;
///   - a ground slab (z <= 0), asphalt-coloured on streets and green-grey on blocks;
///   - on each block one, two or four box buildings with insets of 1-4 m and heights
///     6 + (max_height - 6) u^3 (u uniform: mostly low, a few towers), or a park of trees (10%);
///   - along one side of every street row, poles (vertical capsules, `pole_radius`) every
///     `pole_spacing` metres, joined by wires (horizontal capsules, `wire_radius`): the thin
///     structures a coarse grid misses;
///   - trees along the other side: a trunk capsule and a porous crown sphere (`sigma_tree`);
///   - above it all, empty sky up to max_height + 15 m.
/// Densities use `primitive`'s soft shell (shapes.hpp). Evaluation buckets the primitives on an
/// 8 m grid in x-y, so one point costs O(primitives in its bucket), not O(all primitives).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "membound/core/view.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"
#include "membound/occupancy/shapes.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// Settings of `city_field`. Lengths in metres, densities per metre.
struct city_config {
  double scale = 1.0;          ///< area multiplier (1, 4, 16, ...), > 0
  std::uint32_t seed = 1;
  int blocks_at_1x = 6;        ///< blocks per side at scale 1 (>= 1)
  float block = 40.0f;         ///< block side
  float street = 12.0f;        ///< street width
  float max_height = 80.0f;    ///< tallest building (>= 10)
  float sigma_solid = 20.0f;   ///< buildings, ground, poles, wires, trunks
  float sigma_tree = 2.0f;     ///< tree crowns (porous)
  float shell = 0.1f;          ///< soft shell width (shapes.hpp)
  float pole_spacing = 20.0f;
  float pole_height = 8.0f;
  float pole_radius = 0.15f;
  float wire_radius = 0.04f;

  /// @throws config_error naming the first bad setting.
  void validate() const {
    MEMBOUND_EXPECTS(std::isfinite(scale) && scale > 0 && scale <= 1024, config_error, "city_config: scale ", scale,
                     ", expected in (0, 1024]");
    MEMBOUND_EXPECTS(blocks_at_1x >= 1 && blocks_at_1x <= 64, config_error, "city_config: blocks_at_1x ", blocks_at_1x,
                     ", expected 1..64");
    MEMBOUND_EXPECTS(block >= 10 && street >= 4 && max_height >= 10 && pole_spacing >= 2 && pole_height >= 2,
                     config_error, "city_config: block ", block, " (>= 10), street ", street, " (>= 4), max_height ",
                     max_height, " (>= 10), pole_spacing ", pole_spacing, " (>= 2), pole_height ", pole_height, " (>= 2)");
    MEMBOUND_EXPECTS(sigma_solid > 0 && sigma_tree > 0 && shell >= 0 && pole_radius > 0 && wire_radius > 0, config_error,
                     "city_config: densities and radii must be > 0 and the shell >= 0");
  }
  /// Blocks per side for this scale.
  int blocks() const noexcept {
    return std::max(1, static_cast<int>(std::lround(blocks_at_1x * std::sqrt(scale))));
  }
};

/// The procedural city as a `colored_field`. Construction is O(primitives); memory is the
/// primitive list plus the bucket index (about 100 bytes per primitive).
class city_field {
public:
  static constexpr std::string_view name = "city";

  explicit city_field(const city_config& cfg = {}) : cfg_(cfg) {
    cfg_.validate();
    build();
  }

  const city_config& config() const noexcept { return cfg_; }
  aabb bounds() const noexcept { return box_; }
  const std::vector<primitive>& primitives() const noexcept { return prims_; }
  index_t building_count() const noexcept { return buildings_; }
  index_t pole_count() const noexcept { return poles_; }
  index_t tree_count() const noexcept { return trees_; }

  void density(view<const float> x, view<float> sigma) const { eval(x, sigma, view<float>(), false); }
  void density_color(view<const float> x, view<float> sigma, view<float> rgb) const { eval(x, sigma, rgb, true); }

  /// Density (and colour) at one point.
  float at(vec3 p, vec3* rgb = nullptr) const noexcept {
    if (!box_.contains(p)) {
      if (rgb) *rgb = {};
      return 0.0f;
    }
    // Ground: signed distance z to the plane z = 0.
    float best = ground(p.z);
    vec3 col = best > 0 ? ground_color(p) : vec3{};
    const int bx = std::clamp(static_cast<int>((p.x - box_.lo.x) * inv_bucket_), 0, nb_ - 1);
    const int by = std::clamp(static_cast<int>((p.y - box_.lo.y) * inv_bucket_), 0, nb_ - 1);
    const std::size_t b = static_cast<std::size_t>(by) * nb_ + bx;
    for (std::uint32_t k = start_[b]; k < start_[b + 1]; ++k) {
      const primitive& q = prims_[items_[k]];
      const float s = q.density(p, cfg_.shell);
      if (s > best) best = s, col = q.rgb;
    }
    if (rgb) *rgb = col;
    return best;
  }

private:
  float ground(float z) const noexcept {
    if (cfg_.shell <= 0) return z <= 0 ? cfg_.sigma_solid : 0.0f;
    return cfg_.sigma_solid * std::clamp(0.5f - z / cfg_.shell, 0.0f, 1.0f);
  }
  vec3 ground_color(vec3 p) const noexcept {
    const float period = cfg_.block + cfg_.street;
    const float u = std::fmod(p.x - box_.lo.x, period), v = std::fmod(p.y - box_.lo.y, period);
    const bool street = u < cfg_.street || v < cfg_.street;
    return street ? vec3{0.30f, 0.30f, 0.32f} : vec3{0.42f, 0.50f, 0.36f};
  }

  void eval(const view<const float>& x, const view<float>& sigma, const view<float>& rgb, bool color) const {
    detail::eval_pointwise(x, sigma, rgb, color, color ? "city_field::density_color" : "city_field::density",
                           [&](vec3 p, vec3* c) { return at(p, c); });
  }

  void build() {
    std::mt19937 gen(cfg_.seed);
    std::uniform_real_distribution<float> u01(0.0f, 1.0f);
    const int nblocks = cfg_.blocks();
    const float period = cfg_.block + cfg_.street, side = nblocks * period + cfg_.street;
    box_ = {{0, 0, -1.0f}, {side, side, cfg_.max_height + 15.0f}};
    const float ss = cfg_.sigma_solid;
    auto building = [&](float x0, float y0, float x1, float y1) {
      const float ins = 1.0f + 3.0f * u01(gen);
      const float u = u01(gen), h = 6.0f + (cfg_.max_height - 6.0f) * u * u * u;
      const float g = 0.45f + 0.35f * u01(gen);
      prims_.push_back(primitive::make_box({x0 + ins, y0 + ins, 0}, {x1 - ins, y1 - ins, h}, ss,
                                           {g, g * (0.9f + 0.1f * u01(gen)), g * (0.85f + 0.2f * u01(gen))}));
      ++buildings_;
    };
    auto tree = [&](float x, float y) {
      const float h = 3.0f + 2.0f * u01(gen), r = 1.5f + 1.5f * u01(gen);
      prims_.push_back(primitive::make_capsule({x, y, 0}, {x, y, h}, 0.2f, ss, {0.35f, 0.25f, 0.15f}));
      prims_.push_back(primitive::make_sphere({x, y, h + 0.7f * r}, r, cfg_.sigma_tree,
                                              {0.15f, 0.40f + 0.2f * u01(gen), 0.12f}));
      ++trees_;
    };
    for (int by = 0; by < nblocks; ++by)
      for (int bx = 0; bx < nblocks; ++bx) {
        const float x0 = cfg_.street + bx * period, y0 = cfg_.street + by * period, x1 = x0 + cfg_.block,
                    y1 = y0 + cfg_.block;
        const float pick = u01(gen);
        if (pick < 0.10f) { // park
          for (int k = 0; k < 6; ++k) tree(x0 + 4 + (cfg_.block - 8) * u01(gen), y0 + 4 + (cfg_.block - 8) * u01(gen));
        } else if (pick < 0.32f) {
          building(x0, y0, x1, y1);
        } else if (pick < 0.60f) {
          const float xm = x0 + cfg_.block * (0.35f + 0.3f * u01(gen));
          building(x0, y0, xm, y1);
          building(xm, y0, x1, y1);
        } else {
          const float xm = x0 + cfg_.block * (0.35f + 0.3f * u01(gen)), ym = y0 + cfg_.block * (0.35f + 0.3f * u01(gen));
          building(x0, y0, xm, ym);
          building(xm, y0, x1, ym);
          building(x0, ym, xm, y1);
          building(xm, ym, x1, y1);
        }
      }
    // Street rows: poles and wires on the south side, trees on the north side of each row street.
    const vec3 pole_rgb{0.55f, 0.55f, 0.58f}, wire_rgb{0.08f, 0.08f, 0.08f};
    for (int row = 0; row <= nblocks; ++row) {
      const float y = row * period;
      const float yp = y + 1.0f, yt = y + cfg_.street - 1.5f;
      vec3 prev{};
      bool have_prev = false;
      for (float x = 2.0f; x < side - 1.0f; x += cfg_.pole_spacing) {
        const vec3 top{x, yp, cfg_.pole_height};
        prims_.push_back(primitive::make_capsule({x, yp, 0}, top, cfg_.pole_radius, ss, pole_rgb));
        ++poles_;
        const vec3 hook{x, yp, cfg_.pole_height - 0.5f};
        if (have_prev) prims_.push_back(primitive::make_capsule(prev, hook, cfg_.wire_radius, ss, wire_rgb));
        prev = hook;
        have_prev = true;
      }
      for (float x = 6.0f; x < side - 3.0f; x += 15.0f)
        if (u01(gen) < 0.6f) tree(x, yt);
    }
    index_buckets();
  }

  void index_buckets() {
    const float bucket = 8.0f;
    const vec3 e = box_.size();
    nb_ = std::max(1, static_cast<int>(std::ceil(std::max(e.x, e.y) / bucket)));
    inv_bucket_ = 1.0f / bucket;
    const std::size_t nb2 = static_cast<std::size_t>(nb_) * nb_;
    std::vector<std::uint32_t> count(nb2 + 1, 0);
    auto range = [&](const primitive& q, int& x0, int& x1, int& y0, int& y1) {
      const aabb b = q.extent(cfg_.shell);
      x0 = std::clamp(static_cast<int>(std::floor((b.lo.x - box_.lo.x) * inv_bucket_)), 0, nb_ - 1);
      x1 = std::clamp(static_cast<int>(std::floor((b.hi.x - box_.lo.x) * inv_bucket_)), 0, nb_ - 1);
      y0 = std::clamp(static_cast<int>(std::floor((b.lo.y - box_.lo.y) * inv_bucket_)), 0, nb_ - 1);
      y1 = std::clamp(static_cast<int>(std::floor((b.hi.y - box_.lo.y) * inv_bucket_)), 0, nb_ - 1);
    };
    for (const primitive& q : prims_) {
      int x0, x1, y0, y1;
      range(q, x0, x1, y0, y1);
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) ++count[static_cast<std::size_t>(y) * nb_ + x + 1];
    }
    for (std::size_t i = 1; i <= nb2; ++i) count[i] += count[i - 1];
    start_ = count;
    items_.assign(count[nb2], 0);
    for (std::uint32_t i = 0; i < prims_.size(); ++i) {
      int x0, x1, y0, y1;
      range(prims_[i], x0, x1, y0, y1);
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) items_[count[static_cast<std::size_t>(y) * nb_ + x]++] = i;
    }
  }

  city_config cfg_;
  aabb box_;
  std::vector<primitive> prims_;
  std::vector<std::uint32_t> start_, items_;
  int nb_ = 1;
  float inv_bucket_ = 1;
  index_t buildings_ = 0, poles_ = 0, trees_ = 0;
};
static_assert(colored_field<city_field>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
