// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Inner optimisers of the memory (ATLAS Sec. 5, Titans Sec. 3.1), applied per weight matrix
/// with the per-token gates alpha_t (retention: 1 keeps everything, ATLAS's convention; Titans'
/// forget gate is 1 - alpha_t), eta_t (learning rate) and theta_t (momentum decay):
///   gd:          M_t = alpha_t M_{t-1} - eta_t g_t
///   momentum:    S_t = theta_t S_{t-1} - eta_t g_t,   M_t = alpha_t M_{t-1} + S_t      (Titans' surprise)
///   muon:        S_t = theta_t S_{t-1} + g_t,         M_t = alpha_t M_{t-1} - eta_t NS_k(S_t)
///   implicit_gd: M_t = alpha_t M_{t-1} - eta'_t g_t,  eta'_t = eta_t / (1 + eta_t ||phi(k_t)||^2)
/// where g_t is the gradient of the rule's window loss (rule.hpp) at the gradient point (M_{t-1},
/// or the chunk-start memory in chunked mode), and S_0 = 0.
/// Muon follows ATLAS Eq. 32-33 (the learning rate outside NS, which normalises its input; the
/// appendix form with eta inside S gives unit-size steps) with the sign of a descent step (the
/// paper's Table 1 row has a double minus). NS_k is nn::newton_schulz: k = 5 quintic steps with
/// (a, b, c) = (3.4445, -4.7750, 2.0315). implicit_gd is Longhorn's closed-form implicit step,
/// defined for matrix memory, the l2 bias and c = 1 only.

#include <concepts>
#include <string_view>

#include "membound/nn/optim.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

/// The contract of an inner optimiser: a name and whether it keeps a momentum matrix per weight.
template <class O>
concept inner_optimizer = requires {
  { O::name } -> std::convertible_to<std::string_view>;
  { O::has_momentum } -> std::convertible_to<bool>;
};

/// Plain gradient descent with retention.
struct gd {
  static constexpr std::string_view name = "gd";
  static constexpr bool has_momentum = false;
};

/// Gradient descent with momentum (Titans' past surprise S_t) and retention.
struct momentum {
  static constexpr std::string_view name = "momentum";
  static constexpr bool has_momentum = true;
};

/// Muon: momentum on the raw gradient, then the Newton-Schulz-orthogonalised momentum as the step.
struct muon {
  static constexpr std::string_view name = "muon";
  static constexpr bool has_momentum = true;
  int steps = 5;                             ///< k, ATLAS's "internal test-time compute"
  nn::newton_schulz_coefficients coefficients = {};
  float eps = 1e-7f;
};

/// Longhorn's implicit (closed-form proximal) step for the delta rule on matrix memory.
struct implicit_gd {
  static constexpr std::string_view name = "implicit_gd";
  static constexpr bool has_momentum = false;
};

static_assert(inner_optimizer<gd>);
static_assert(inner_optimizer<momentum>);
static_assert(inner_optimizer<muon>);
static_assert(inner_optimizer<implicit_gd>);

} // namespace memory
} // namespace v0_1
} // namespace membound
