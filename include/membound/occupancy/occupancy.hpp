// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief occupancy/: empty-space skipping for radiance-field ray marching.
///  - geometry: vectors, boxes, rays, ray-box clipping, pinhole cameras (geometry.hpp);
///  - fields: the `density_field` concept (field.hpp), analytic shapes (shapes.hpp), the procedural
///    city (city.hpp), dense voxel grids from safetensors (voxel_field.hpp);
///  - estimators, the marcher's skipping policy (estimator.hpp): `dense` (dense.hpp),
///    `occupancy_grid` (occupancy_grid.hpp: instant-ngp / nerfacc bitfield cascades),
///    `learned_occupancy` (learned_occupancy.hpp: LeC2O-style classifier, hash grid + tiny MLP);
///  - the marcher and its metrics (march.hpp).

#include "membound/occupancy/city.hpp"
#include "membound/occupancy/dense.hpp"
#include "membound/occupancy/estimator.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"
#include "membound/occupancy/learned_occupancy.hpp"
#include "membound/occupancy/march.hpp"
#include "membound/occupancy/occupancy_grid.hpp"
#include "membound/occupancy/shapes.hpp"
#include "membound/occupancy/voxel_field.hpp"
