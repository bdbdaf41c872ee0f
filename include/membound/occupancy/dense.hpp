// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `dense`: the estimator that skips nothing, the reference of every metric.
///
/// Definitions used everywhere in occupancy/:
///   - The `dense` reference marches with the same step lattice as every other estimator
///     (`march_settings::step`, cone stepping included) and evaluates the field once at every step
///     midpoint inside the field's box until the transmittance falls below
///     `march_settings::early_stop`. Its field cost is therefore one density (and colour) query per
///     such step.
///   - A weight-carrying sample is a step whose rendering weight under `dense` exceeds 1e-4
///     (`weight_carrying`); an estimator's recall is the fraction of those it also evaluates.

#include "membound/occupancy/estimator.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// The rendering weight above which a `dense` sample counts as weight-carrying.
inline constexpr float weight_carrying = 1e-4f;

/// No skipping: the whole window may hold density. The ground truth every other estimator is
/// compared with; it holds no memory.
struct dense {
  static constexpr std::string_view name = "dense";
  struct workspace {};
  workspace make_workspace() const noexcept { return {}; }
  void occupied(const ray&, float t0, float t1, workspace&, std::vector<span_t>& out) const {
    if (t1 > t0) out.push_back({t0, t1});
  }
  std::size_t memory_bytes() const noexcept { return 0; }
};
static_assert(estimator<dense>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
