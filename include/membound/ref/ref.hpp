// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Aggregate of the scalar oracles (`membound::ref`), the scalar twins of every CPU kernel.

#include "membound/ref/causal_attention.hpp"
#include "membound/ref/gemm.hpp"
#include "membound/ref/kernels.hpp"
