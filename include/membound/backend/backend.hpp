// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Floor 2 aggregate for the CPU backend: the backend tags, every SIMD kernel with its
/// scalar twin, and the GEMM entry. (The CUDA kernels are `.cuh` files under backend/cuda/.)

#include "membound/backend/tags.hpp"
#include "membound/backend/cpu/cpu.hpp"
