// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Memory architectures M: R^D -> R^{d_v} (ATLAS Sec. 5 and App. E; Titans Sec. 3): the
/// matrix memory, the deep MLP memory and the gated MLP memory of Atlas++. Each one gives an
/// explicit forward pass and the parameter gradient of a loss on its output, with no tape.
///
/// Weights are listed in the order they are applied (W0 first). Every weight gradient the inner
/// loop needs is a sum of per-token rank-1 terms, dL/dW_l = sum_n delta_l[n] a_l[n]^T, so
/// `backward` returns the factors delta_l (N,rows_l) and a_l (N,cols_l) instead of the summed
/// matrices: the module sums them with whatever per-token weights (window gates, learning-rate
/// products) its optimiser and execution mode need.
///
/// `forward` takes the linear map of each layer as a callable `lin(l, in (N,cols_l), out (N,rows_l))`,
/// so the same code runs with one weight set (a GEMM) or with per-token weights (the chunk-
/// parallel read-out of the module). Costs: forward 2 N sum_l rows_l cols_l flops, backward the
/// same again (one product with W_l per layer but the first).

#include <concepts>
#include <span>
#include <string_view>
#include <vector>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/memory/detail/activation.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

/// Extents of one weight matrix, (rows, cols) = (out, in).
struct layer_shape {
  index_t rows = 0, cols = 0;
};

/// Intermediate results of a forward pass over N tokens, kept for `backward` (and reused across
/// calls: buffers grow to the largest N seen and are then only sliced).
struct arch_cache {
  std::vector<array<float>> in;    ///< per layer: its input a_l (N,cols_l)
  std::vector<array<float>> pre;   ///< per layer: its output before any activation (N,rows_l)
  std::vector<array<float>> delta; ///< per layer: dL/d(pre_l) (N,rows_l), written by backward
  array<float> tmp;                ///< scratch (N,H)
  index_t n = 0;                   ///< tokens of the last forward

  /// Sizes the buffers for N tokens and the given layers (no allocation when they already fit).
  void fit(index_t N, const std::vector<layer_shape>& layers, index_t hidden) {
    auto grow = [N](array<float>& a, index_t w) {
      if (a.rank() != 2 || a.extent(0) < N || a.extent(1) != w) a = array<float>({std::max<index_t>(N, 1), w}, uninitialized);
    };
    in.resize(layers.size());
    pre.resize(layers.size());
    delta.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      grow(in[l], layers[l].cols);
      grow(pre[l], layers[l].rows);
      grow(delta[l], layers[l].rows);
    }
    grow(tmp, std::max<index_t>(hidden, 1));
    n = N;
  }
  view<float> in_v(std::size_t l) { return in[l].view().slice(0, 0, n); }
  view<float> pre_v(std::size_t l) { return pre[l].view().slice(0, 0, n); }
  view<float> delta_v(std::size_t l) { return delta[l].view().slice(0, 0, n); }
};

/// The contract of a memory architecture: a name, its weight shapes for (D, d_v), a validity check,
/// `forward(lin, x, cache, y)` and `backward(weights, cache, dy)` (which fills cache.delta).
template <class A>
concept memory_architecture = requires(const A a, index_t d, std::vector<layer_shape> ls) {
  { A::name } -> std::convertible_to<std::string_view>;
  { a.layers(d, d) } -> std::same_as<std::vector<layer_shape>>;
  { a.hidden(d) } -> std::same_as<index_t>;
  a.validate(d, d);
};

namespace detail {
/// y (N,R) = x (N,C) W^T with W (R,C): the plain linear map of one weight set.
inline void apply_weights(view<const float> w, view<const float> x, view<float> y) {
  cpu::gemm(x, w.transpose(), y);
}
/// The settings both MLP memories share: hidden width, activation, residual.
struct hidden_layer_settings {
  float width = 4.0f;      ///< H = width x D when hidden_dim is 0 (ATLAS: 4)
  index_t hidden_dim = 0;  ///< H when > 0
  nn::activation act = nn::activation::gelu_erf;
  bool residual = true;    ///< add x when D == d_v

  bool has_residual(index_t D, index_t d_v) const { return residual && D == d_v; }
  index_t hidden(index_t D) const {
    return hidden_dim > 0 ? hidden_dim : std::max<index_t>(1, static_cast<index_t>(width * static_cast<float>(D) + 0.5f));
  }
};
/// a (N,C) += b (N,C)
inline void add_into(view<float> a, view<const float> b) {
  for (index_t n = 0; n < a.extent(0); ++n)
    for (index_t j = 0; j < a.extent(1); ++j) a(n, j) += b(n, j);
}
} // namespace detail

/// M(x) = W0 x with W0 (d_v,D): linear (matrix) memory, the state of linear attention, DeltaNet
/// and their relatives. Forward 2 N d_v D flops.
struct matrix_memory {
  static constexpr std::string_view name = "matrix";
  std::vector<layer_shape> layers(index_t D, index_t d_v) const { return {{d_v, D}}; }
  index_t hidden(index_t) const { return 0; }
  void validate(index_t D, index_t d_v) const {
    MEMBOUND_EXPECTS(D >= 1 && d_v >= 1, config_error, "matrix_memory: D = ", D, ", d_v = ", d_v, ", expected >= 1");
  }
  template <class Lin>
  void forward(Lin&& lin, view<const float> x, arch_cache& c, view<float> y) const {
    detail::copy_rows(x, c.in_v(0));
    lin(0, c.in_v(0), y);
  }
  template <class Weights>
  void backward(Weights&&, arch_cache& c, view<const float> dy) const {
    detail::copy_rows(dy, c.delta_v(0));
  }
};

/// The deep memory of Titans / ATLAS: an MLP of `depth` >= 2 layers, hidden width H =
/// `hidden_dim` (or `width` x D when hidden_dim is 0; ATLAS uses 4), activation `act` between
/// layers (GELU in the papers), and the residual x when `residual` and D == d_v:
///   W0 (H,D), W1..W_{L-2} (H,H), W_{L-1} (d_v,H);  z_1 = W0 x, h_1 = act(z_1), ...,
///   M(x) = W_{L-1} h_{L-1} (+ x).
/// With a feature map that changes the width (D != d_v) the residual does not type-check; ATLAS
/// leaves that case open, and membound then has no residual (`has_residual` says which).
struct mlp_memory : detail::hidden_layer_settings {
  static constexpr std::string_view name = "mlp";
  int depth = 2;

  std::vector<layer_shape> layers(index_t D, index_t d_v) const {
    const index_t H = hidden(D);
    std::vector<layer_shape> ls;
    for (int l = 0; l < depth; ++l) ls.push_back({l == depth - 1 ? d_v : H, l == 0 ? D : H});
    return ls;
  }
  void validate(index_t D, index_t d_v) const {
    MEMBOUND_EXPECTS(depth >= 2, config_error, "mlp_memory: depth is ", depth, ", expected >= 2 (use matrix_memory for 1)");
    MEMBOUND_EXPECTS(hidden_dim > 0 || width > 0.0f, config_error, "mlp_memory: width is ", width, ", expected > 0");
    MEMBOUND_EXPECTS(D >= 1 && d_v >= 1, config_error, "mlp_memory: D = ", D, ", d_v = ", d_v, ", expected >= 1");
  }
  template <class Lin>
  void forward(Lin&& lin, view<const float> x, arch_cache& c, view<float> y) const {
    detail::copy_rows(x, c.in_v(0));
    for (std::size_t l = 0; l < static_cast<std::size_t>(depth); ++l) {
      const bool last = l + 1 == static_cast<std::size_t>(depth);
      view<float> out = last ? y : c.pre_v(l);
      lin(static_cast<int>(l), c.in_v(l), out);
      if (!last) detail::activate(act, c.pre_v(l), c.in_v(l + 1));
    }
    if (residual && x.extent(1) == y.extent(1)) detail::add_into(y, x);
  }
  template <class Weights>
  void backward(Weights&& w, arch_cache& c, view<const float> dy) const {
    const auto L = static_cast<std::size_t>(depth);
    detail::copy_rows(dy, c.delta_v(L - 1));
    for (std::size_t l = L - 1; l > 0; --l) {
      // dL/dh_l = delta_l W_l, then times act'(z_l)
      cpu::gemm(view<const float>(c.delta_v(l)), w(static_cast<int>(l)), c.delta_v(l - 1));
      detail::activate_backward(act, c.pre_v(l - 1), c.delta_v(l - 1));
    }
  }
};

/// Atlas++'s gated MLP memory (ATLAS Eq. 43): W0 (H,D), W1 (H,D), W2 (d_v,H),
///   M(x) = W2 (act(W0 x) * (W1 x)) (+ x when `residual` and D == d_v, as for mlp_memory).
struct gated_mlp_memory : detail::hidden_layer_settings {
  static constexpr std::string_view name = "gated_mlp";

  std::vector<layer_shape> layers(index_t D, index_t d_v) const {
    const index_t H = hidden(D);
    return {{H, D}, {H, D}, {d_v, H}};
  }
  void validate(index_t D, index_t d_v) const {
    MEMBOUND_EXPECTS(hidden_dim > 0 || width > 0.0f, config_error, "gated_mlp_memory: width is ", width, ", expected > 0");
    MEMBOUND_EXPECTS(D >= 1 && d_v >= 1, config_error, "gated_mlp_memory: D = ", D, ", d_v = ", d_v, ", expected >= 1");
  }
  template <class Lin>
  void forward(Lin&& lin, view<const float> x, arch_cache& c, view<float> y) const {
    detail::copy_rows(x, c.in_v(0));
    detail::copy_rows(x, c.in_v(1));
    lin(0, c.in_v(0), c.pre_v(0)); // z_a
    lin(1, c.in_v(1), c.pre_v(1)); // z_b
    view<float> h = c.in_v(2);
    detail::activate(act, c.pre_v(0), h);
    for (index_t n = 0; n < h.extent(0); ++n) {
      float* hr = &h(n, 0);
      const float* zb = &c.pre[1](n, 0);
      for (index_t j = 0; j < h.extent(1); ++j) hr[j] *= zb[j];
    }
    lin(2, h, y);
    if (residual && x.extent(1) == y.extent(1)) detail::add_into(y, x);
  }
  template <class Weights>
  void backward(Weights&& w, arch_cache& c, view<const float> dy) const {
    detail::copy_rows(dy, c.delta_v(2));
    view<float> gh = c.delta_v(1); // dL/dh, then delta of W1 = gh * act(z_a)
    cpu::gemm(view<const float>(c.delta_v(2)), w(2), gh);
    view<float> d0 = c.delta_v(0);
    for (index_t n = 0; n < gh.extent(0); ++n) { // dL/dz_a before act'
      float* dr = &d0(n, 0);
      const float *gr = &gh(n, 0), *zb = &c.pre[1](n, 0);
      for (index_t j = 0; j < gh.extent(1); ++j) dr[j] = gr[j] * zb[j];
    }
    detail::activate_backward(act, c.pre_v(0), d0);
    // act(z_a) = h / z_b is not safe at z_b = 0: recompute it into tmp.
    view<float> az = c.tmp.view().slice(0, 0, c.n);
    detail::activate(act, c.pre_v(0), az);
    for (index_t n = 0; n < gh.extent(0); ++n) {
      float* gr = &gh(n, 0);
      const float* ar = &az(n, 0);
      for (index_t j = 0; j < gh.extent(1); ++j) gr[j] *= ar[j];
    }
  }
};

static_assert(memory_architecture<matrix_memory>);
static_assert(memory_architecture<mlp_memory>);
static_assert(memory_architecture<gated_mlp_memory>);

} // namespace memory
} // namespace v0_1
} // namespace membound
