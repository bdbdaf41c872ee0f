// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Named points of the design space, as aliases of `memory::module`. Each recurrence is
/// written in this library's convention (M (d_v,D) read as y = M phi(q); alpha retention, eta
/// learning rate, theta momentum decay, gamma window gates; rule.hpp and optimizer.hpp) for
/// matrix memory; the deep variants replace M k by the MLP and the outer product by its gradient.
/// The gates are the caller's (constants, or per token: the layer computes them as
/// sigmoid(w . x_t + b)); the read is after the update unless the module's options say otherwise.
///
///  - linear_attention (Katharopoulos et al. 2020; with alpha: RetNet / Mamba2-style decay):
///      M_t = alpha_t M_{t-1} + eta_t v_t k_t^T,  y_t = M_t q_t.
///  - delta_net (Schlag et al. 2021, Yang et al. 2024): M_t = M_{t-1} (I - eta_t k_t k_t^T) + eta_t v_t k_t^T.
///  - gated_delta_net, in the ATLAS framing (gradient at M_{t-1}, ATLAS Eq. 12 with c = 1):
///      M_t = M_{t-1} (alpha_t I - eta_t k_t k_t^T) + eta_t v_t k_t^T.
///    The Gated DeltaNet paper (Yang et al. 2025) decays first: M_t = alpha_t M_{t-1} (I - eta_t k_t k_t^T)
///    + eta_t v_t k_t^T. The two agree for alpha = 1 and differ otherwise; membound follows ATLAS.
///  - longhorn (Liu et al. 2024): M_t = M_{t-1} (I - d_t k_t k_t^T) + d_t v_t k_t^T,
///      d_t = eta_t / (1 + eta_t k_t^T k_t)   (the implicit step; optimizer implicit_gd).
///  - titans (Titans' neural memory, LMM): MLP memory, delta bias, momentum:
///      S_t = theta_t S_{t-1} - eta_t grad 1/2||M_{t-1}(k_t) - v_t||^2,  M_t = alpha_t M_{t-1} + S_t
///    (Titans writes the forget gate as 1 - alpha_t and swaps the names of eta and theta).
///    Retention decays every weight of a deep memory, and W = 0 is a fixed point of its gradient
///    (both layers' gradients vanish there): a constant alpha well below 1 (0.97 in
///    examples/51_memory_stream.cpp) collapses the memory to zero; keep alpha near 1 or data-dependent.
///  - omega_net (ATLAS Eq. 10-11): MLP memory, Omega rule over c tokens, polynomial features, GD:
///      M_t = alpha_t M_{t-1} - eta_t grad sum_{i=t-c+1}^{t} gamma_i^(t) 1/2||M_{t-1}(phi(k_i)) - v_i||^2;
///    for matrix memory M_t = M_{t-1}(alpha_t I - eta_t sum_i gamma_i phi_i phi_i^T) + eta_t sum_i gamma_i v_i phi_i^T
///    (the corrected form of the printed Eq. 11).
///  - atlas (ATLAS Eq. 32-33): omega_net's loss with Muon:
///      S_t = theta_t S_{t-1} + grad sum_i gamma_i^(t) 1/2||M_{t-1}(phi(k_i)) - v_i||^2,
///      M_t = alpha_t M_{t-1} - eta_t NS_5(S_t);   atlas_pp: the same on the gated MLP memory (Eq. 43).
///  - deep_transformer (ATLAS Eq. 25-26): MLP memory, dot-product bias, exp kernel truncated at
///    degree p (exp_taylor_features, default p = 2), GD: M_t = M_{t-1} - eta_t grad <M_{t-1}(phi(k_t)), v_t>;
///    for matrix memory and M_0 = 0, eta = 1: y_t = sum_{i<=t} v_i sum_{j<=p} (q_t . k_i)^j / j!,
///    unnormalised softmax attention with a truncated exponential.
///  - dot (Deep Omega Transformer, ATLAS Eq. 27-31): the Omega rule's l2 bias on the truncated exp
///    kernel: M_t = alpha_t M_{t-1} - eta_t grad sum_i gamma_i^(t) 1/2||M_{t-1}(phi(k_i)) - v_i||^2.

#include "membound/memory/module.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

using linear_attention = module<matrix_memory, dot_product, identity_features, gd>;
using delta_net = module<matrix_memory, delta, identity_features, gd>;
using gated_delta_net = module<matrix_memory, delta, identity_features, gd>;
using longhorn = module<matrix_memory, delta, identity_features, implicit_gd>;
using titans = module<mlp_memory, delta, identity_features, momentum>;
using omega_net = module<mlp_memory, omega, polynomial_features, gd>;
using atlas = module<mlp_memory, omega, polynomial_features, muon>;
using atlas_pp = module<gated_mlp_memory, omega, polynomial_features, muon>;
using deep_transformer = module<mlp_memory, dot_product, exp_taylor_features, gd>;
using dot = module<mlp_memory, omega, exp_taylor_features, gd>;

} // namespace memory
} // namespace v0_1
} // namespace membound
