// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Attentional biases and windows of the inner loop (Miras / ATLAS Sec. 3.2): the rule says
/// which loss each token contributes and over how many recent tokens step t optimises.
///
/// Per-token losses (the factor 2 of ||.||^2 is absorbed, as in every paper of the family):
///   l2:  l_i(M) = 1/2 || M(phi(k_i)) - v_i ||^2          dL/dM(phi(k_i)) = M(phi(k_i)) - v_i
///   dot: l_i(M) = - < M(phi(k_i)), v_i >                 dL/dM(phi(k_i)) = - v_i   (Hebbian)
/// Window of step t (tokens numbered from 1, Omega rule, ATLAS Eq. 8-9):
///   L_t(M) = sum_{i = max(1, t-c+1)}^{t} gamma_i^(t) l_i(M),
/// with c = 1 the online rules (delta, Hebbian), c = infinity the global least-squares objective.

#include <concepts>
#include <limits>
#include <string_view>

#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

/// Which per-token loss a rule uses.
enum class attentional_bias { l2, dot };

/// The window length that means "every token so far" (c = infinity).
inline constexpr index_t unbounded_window = std::numeric_limits<index_t>::max();

/// The contract of a rule: a name, its `bias` and its window c >= 1 (`unbounded_window` for all).
template <class R>
concept inner_rule = requires(const R r) {
  { R::name } -> std::convertible_to<std::string_view>;
  { R::bias } -> std::convertible_to<attentional_bias>;
  { r.window() } -> std::same_as<index_t>;
};

/// The dot-product (Hebbian) bias over a window of c tokens: c = 1 is linear attention's
/// M_t = M_{t-1} + eta_t v_t phi(k_t)^T for matrix memory; c > 1 is ATLAS's sliding-window linear
/// attention (SWLA, Eq. 20).
struct dot_product {
  static constexpr std::string_view name = "dot_product";
  static constexpr attentional_bias bias = attentional_bias::dot;
  index_t c = 1;
  index_t window() const { return c; }
};

/// The l2 (delta) bias on the current token only: DeltaNet's one gradient step on ||M k - v||^2.
struct delta {
  static constexpr std::string_view name = "delta";
  static constexpr attentional_bias bias = attentional_bias::l2;
  index_t window() const { return 1; }
};

/// The Omega rule: the l2 bias over the last c tokens, each weighted by its gate gamma_i^(t)
/// (ATLAS Eq. 9). c = 1 equals `delta`.
struct omega {
  static constexpr std::string_view name = "omega";
  static constexpr attentional_bias bias = attentional_bias::l2;
  index_t c = 4;
  index_t window() const { return c; }
};

/// The global objective sum_{i<=t} gamma_i l_i (c = infinity): regularised least squares as in the
/// Mesa layer when optimised to convergence; here one optimiser step per token over all tokens so
/// far, so a step costs O(t) and the module keeps every feature row (O(t D) memory, reported by
/// `state_bytes`).
struct global_least_squares {
  static constexpr std::string_view name = "global";
  static constexpr attentional_bias bias = attentional_bias::l2;
  index_t window() const { return unbounded_window; }
};

static_assert(inner_rule<dot_product>);
static_assert(inner_rule<delta>);
static_assert(inner_rule<omega>);
static_assert(inner_rule<global_least_squares>);

} // namespace memory
} // namespace v0_1
} // namespace membound
