// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Floor 3 aggregate: the shared layer floor (DESIGN.md) — named parameters, layers with
/// forward and backward (linear/MLP, activations, SwiGLU, norms, embedding, causal GQA attention
/// with a retention bias), convolutions with BatchNorm folding, rotary embedding, small dense
/// attention, encodings (frequency, multiresolution hash
/// grid), losses and optimizers (SGD, Adam, AdamW, Muon, clipping, schedules).

#include "membound/nn/parameters.hpp"
#include "membound/nn/activation.hpp"
#include "membound/nn/linear.hpp"
#include "membound/nn/norm.hpp"
#include "membound/nn/embedding.hpp"
#include "membound/nn/conv2d.hpp"
#include "membound/nn/rope.hpp"
#include "membound/nn/attention.hpp"
#include "membound/nn/causal_attention.hpp"
#include "membound/nn/swiglu.hpp"
#include "membound/nn/frequency_encoding.hpp"
#include "membound/nn/hash_grid.hpp"
#include "membound/nn/loss.hpp"
#include "membound/nn/optim.hpp"
