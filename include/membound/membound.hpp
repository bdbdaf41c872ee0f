// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Umbrella header: every CPU-side part of membound (core, backend kernels and GEMM entry,
/// io, ref oracles, the nn/ layer floor, kv/, llm/, memory/, occupancy/, pim/, vision/ without its stb-based image preprocessing). CUDA code lives only in `.cuh` headers and is never included from here.

#include "membound/core/core.hpp"
#include "membound/core/eigen.hpp"
#include "membound/backend/backend.hpp"
#include "membound/io/io.hpp"
#include "membound/ref/ref.hpp"
#include "membound/nn/nn.hpp"
#include "membound/kv/kv.hpp"
#include "membound/llm/llm.hpp"
#include "membound/memory/memory.hpp"
#include "membound/pim/pim.hpp"
#include "membound/vision/vision.hpp"
#include "membound/occupancy/occupancy.hpp"
