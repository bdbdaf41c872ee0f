// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Floor 1 aggregate: errors, element types, the tensor concept, `view` and `array`.
/// (The Eigen adaptors live in `core/eigen.hpp`, included separately so Eigen stays optional.)

#include "membound/config.hpp"
#include "membound/version.hpp"
#include "membound/core/error.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"
#include "membound/core/array.hpp"
