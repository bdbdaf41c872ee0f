// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Aggregate of the CPU kernels (`membound::cpu`): reductions, BLAS-1, exp/softmax,
/// normalisations, activations, matrix-vector, conversions, selection and the GEMM entry.
/// Each kernel takes the backend tag as its defaulted first template parameter.

#include "membound/backend/cpu/activation.hpp"
#include "membound/backend/cpu/blas1.hpp"
#include "membound/backend/cpu/convert.hpp"
#include "membound/backend/cpu/exp.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/backend/cpu/matvec.hpp"
#include "membound/backend/cpu/norm.hpp"
#include "membound/backend/cpu/reduce.hpp"
#include "membound/backend/cpu/select.hpp"
#include "membound/backend/cpu/simd.hpp"
