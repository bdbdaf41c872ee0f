// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::linear` (y = f(x W^T + b), as torch.nn.Linear followed by an activation) and
/// `nn::mlp` (a stack of them), forward and backward side by side in the spirit of llm.c.
///
/// Shapes: x (N,C_in), W (C_out,C_in), b (C_out), y (N,C_out). The matrix products go through the
/// one GEMM entry (`cpu::gemm`): forward x W^T, backward dW += dZ^T x and dX = dZ W. Forward costs
/// 2 N C_in C_out flops, backward twice that. Parameters live in an `nn::parameters` collection
/// (so they load and save by name); gradients accumulate into it. No allocation in forward or
/// backward: the caller passes the outputs and the pre-activation cache, or `mlp` keeps a
/// workspace sized once by `reserve(N)`.

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "membound/backend/cpu/blas1.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/nn/activation.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// A fully connected layer with a fused bias and activation; a view into `parameters`.
struct linear {
  view<float> weight, bias;           ///< (C_out,C_in), (C_out) or empty (no bias)
  view<float> grad_weight, grad_bias; ///< same shapes
  activation act = activation::identity;

  index_t in_features() const noexcept { return weight.extent(1); }
  index_t out_features() const noexcept { return weight.extent(0); }

  /// Registers "<prefix>.weight" (and "<prefix>.bias") in `p`, initialised as torch.nn.Linear:
  /// uniform in [-1/sqrt(C_in), 1/sqrt(C_in)] from `gen`. @throws config_error for C_in or C_out < 1.
  static linear make(parameters& p, const std::string& prefix, index_t in, index_t out, bool with_bias, activation a,
                     std::mt19937& gen) {
    MEMBOUND_EXPECTS(in >= 1 && out >= 1, config_error, "linear \"", prefix, "\": C_in = ", in, ", C_out = ", out,
                     ", expected >= 1");
    linear l;
    l.weight = p.add(prefix + ".weight", {out, in});
    l.grad_weight = p.grad(prefix + ".weight");
    if (with_bias) {
      l.bias = p.add(prefix + ".bias", {out});
      l.grad_bias = p.grad(prefix + ".bias");
    }
    l.act = a;
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (float& w : l.weight.span()) w = u(gen);
    if (with_bias)
      for (float& b : l.bias.span()) b = u(gen);
    return l;
  }

  /// z = x W^T + b and y = f(z). z is the cache backward needs; y may be z (then z holds f(z) and
  /// backward cannot run unless the activation is the identity).
  /// @throws shape_error naming both shapes when they do not fit.
  void forward(view<const float> x /*(N,C_in)*/, view<float> z /*(N,C_out)*/, view<float> y /*(N,C_out)*/) const {
    check(x, z, "forward", "z");
    check(x, y, "forward", "y");
    // Row blocks of about 128 KiB of output: the bias and activation pass then reads z from L2
    // right after the GEMM wrote it, instead of a second trip through memory.
    const index_t n = x.extent(0), c = out_features(), block = std::max<index_t>(16, (32 * 1024) / c);
    const auto wt = view<const float>(weight).transpose(); // (C_in,C_out)
    const bool flat = z.contiguous() && y.contiguous(); // a row block is one span: one activation call
    const index_t zs = z.stride(0), ys = y.stride(0); // rows are contiguous (check)
    float* const zp = z.data();
    for (index_t r0 = 0; r0 < n; r0 += block) {
      const index_t r1 = std::min(n, r0 + block);
      cpu::gemm(x.slice(0, r0, r1), wt, z.slice(0, r0, r1)); // (rows,C_out)
      if (const float* b = bias.data(); b != nullptr)
        for (index_t r = r0; r < r1; ++r)
          for (index_t j = 0; j < c; ++j) zp[r * zs + j] += b[j]; // = axpy(1, b, z row): 1 * b is exact
      if (act == activation::identity && y.data() == z.data()) continue;
      if (flat) {
        const std::size_t len = static_cast<std::size_t>((r1 - r0) * c);
        activation_forward(act, std::span<const float>(zp + r0 * c, len), std::span<float>(y.data() + r0 * c, len));
      } else {
        for (index_t r = r0; r < r1; ++r)
          activation_forward(act, std::span<const float>(zp + r * zs, static_cast<std::size_t>(c)),
                             std::span<float>(y.data() + r * ys, static_cast<std::size_t>(c)));
      }
    }
  }

  /// Given dL/dy, accumulates dL/dW and dL/db into the gradients and writes dL/dx (skipped when dx
  /// is empty). `dz` (N,C_out) is scratch; it may alias dy.
  /// @throws shape_error naming both shapes when they do not fit.
  void backward(view<const float> x /*(N,C_in)*/, view<const float> z /*(N,C_out)*/, view<const float> dy /*(N,C_out)*/,
                view<float> dx /*(N,C_in) or empty*/, view<float> dz /*(N,C_out)*/) const {
    check(x, z, "backward", "z");
    check(x, dy, "backward", "dy");
    check(x, dz, "backward", "dz");
    for (index_t r = 0; r < z.extent(0); ++r) activation_backward(act, z.select(0, r).span(), dy.select(0, r).span(), dz.select(0, r).span());
    cpu::gemm(view<const float>(dz).transpose(), x, grad_weight, 1.0f, 1.0f); // (C_out,C_in) += dz^T x
    if (grad_bias.data() != nullptr)
      for (index_t r = 0; r < dz.extent(0); ++r) cpu::axpy(1.0f, std::span<const float>(dz.select(0, r).span()), grad_bias.span());
    if (dx.data() != nullptr) {
      MEMBOUND_EXPECTS(dx.rank() == 2 && dx.extent(0) == x.extent(0) && dx.extent(1) == x.extent(1), shape_error,
                       "linear::backward: dx is (", dx.extent(0), ",", dx.rank() > 1 ? dx.extent(1) : 0, "), x is (",
                       x.extent(0), ",", x.extent(1), ")");
      cpu::gemm(view<const float>(dz), view<const float>(weight), dx); // (N,C_in) = dz W
    }
  }

private:
  template <class T>
  void check(const view<const float>& x, const view<T>& o, const char* fn, const char* name) const {
    MEMBOUND_EXPECTS(x.rank() == 2 && x.extent(1) == in_features(), shape_error, "linear::", fn, ": x is rank ", x.rank(),
                     " with ", x.rank() == 2 ? x.extent(1) : 0, " features, expected (N,", in_features(), ")");
    MEMBOUND_EXPECTS(o.rank() == 2 && o.extent(0) == x.extent(0) && o.extent(1) == out_features(), shape_error,
                     "linear::", fn, ": ", name, " is (", o.extent(0), ",", o.rank() == 2 ? o.extent(1) : 0,
                     "), expected (", x.extent(0), ",", out_features(), ")");
    MEMBOUND_EXPECTS(o.stride(1) == 1 && o.stride(0) >= out_features(), shape_error, "linear::", fn, ": ", name,
                     " must have contiguous rows");
  }
};

/// A multilayer perceptron: widths {C_0, C_1, ..., C_n}, n linear layers, `hidden` after every
/// layer but the last, `output` after the last. Keeps the activations of the last forward for
/// backward in a workspace sized by `reserve(N)` (the only allocation).
struct mlp {
  std::vector<linear> layers;
  std::vector<array<float>> z, y; ///< per layer: pre-activation and output (N,C_l)
  array<float> g0, g1;            ///< backward scratch (N, max width)

  /// Registers "<prefix>.<l>.weight/bias" for each layer, initialised as torch.nn.Linear.
  static mlp make(parameters& p, const std::string& prefix, const std::vector<index_t>& widths, activation hidden,
                  activation output, std::mt19937& gen, bool with_bias = true) {
    MEMBOUND_EXPECTS(widths.size() >= 2, config_error, "mlp \"", prefix, "\": ", widths.size(),
                     " widths, expected at least 2 (input and output)");
    mlp m;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l)
      m.layers.push_back(linear::make(p, prefix + "." + std::to_string(l), widths[l], widths[l + 1], with_bias,
                                      l + 2 == widths.size() ? output : hidden, gen));
    return m;
  }

  /// Sizes the workspace for batches of up to n rows (allocates once).
  void reserve(index_t n) {
    if (!z.empty() && z.front().extent(0) >= n) return;
    z.clear();
    y.clear();
    index_t widest = layers.front().in_features();
    for (const auto& l : layers) {
      z.emplace_back(std::initializer_list<index_t>{n, l.out_features()}); // (N,C_l)
      y.emplace_back(std::initializer_list<index_t>{n, l.out_features()}); // (N,C_l)
      widest = std::max(widest, l.out_features());
    }
    g0 = array<float>({n, widest}); // (N,C_max)
    g1 = array<float>({n, widest}); // (N,C_max)
  }

  /// out = mlp(x). @throws shape_error; budget_error if N exceeds the reserved batch.
  void forward(view<const float> x /*(N,C_0)*/, view<float> out /*(N,C_n)*/) {
    const index_t n = x.extent(0);
    if (z.empty()) reserve(n);
    MEMBOUND_EXPECTS(n <= z.front().extent(0), budget_error, "mlp::forward: batch of ", n, " rows but the workspace holds ",
                     z.front().extent(0), " (call reserve)");
    view<const float> in = x;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      auto zl = z[l].view().slice(0, 0, n), yl = y[l].view().slice(0, 0, n); // (N,C_l)
      layers[l].forward(in, zl, yl);
      in = yl;
    }
    auto last = y.back().cview().slice(0, 0, n); // (N,C_n)
    MEMBOUND_EXPECTS(out.rank() == 2 && out.extent(0) == n && out.extent(1) == last.extent(1), shape_error,
                     "mlp::forward: out is (", out.extent(0), ",", out.rank() == 2 ? out.extent(1) : 0, "), expected (", n,
                     ",", last.extent(1), ")");
    for (index_t r = 0; r < n; ++r) std::copy_n(last.select(0, r).data(), last.extent(1), out.select(0, r).data());
  }

  /// Backward of the last forward on the same x: accumulates every layer's gradients and writes
  /// dL/dx when dx is not empty. @throws shape_error.
  void backward(view<const float> x /*(N,C_0)*/, view<const float> dout /*(N,C_n)*/, view<float> dx = view<float>()) {
    const index_t n = x.extent(0);
    view<const float> dy = dout;
    for (std::size_t l = layers.size(); l-- > 0;) {
      const index_t cin = layers[l].in_features(), cout = layers[l].out_features();
      view<const float> in = l == 0 ? x : y[l - 1].cview().slice(0, 0, n);
      auto dz = make_view(g0.data(), {n, cout}); // (N,C_l)
      view<float> dxl = l == 0 ? dx : make_view(g1.data(), {n, cin}); // (N,C_{l-1})
      layers[l].backward(in, z[l].cview().slice(0, 0, n), dy, dxl, dz);
      if (l > 0) {
        std::swap(g0, g1);
        dy = make_view<const float>(g0.data(), {n, cin});
      }
    }
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
