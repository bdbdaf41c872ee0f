// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::retention_gate`: TRIM-KV's learned retention gate ("Cache What Lasts", Bui et al.
/// 2025, variant `rg` of the released checkpoints). One gate per decoder layer reads a token's
/// hidden state at that layer -- the output of the pre-attention RMSNorm, (N,C) -- and gives one
/// log-retention per KV head:
///   log beta = logsigmoid(W2 act(W1 x + b1) + b),   W1 (I,C) with bias, W2 (G,I) without, b (G).
/// I = 512 in the paper's checkpoints, act the model's MLP activation (SiLU for Llama / Qwen3).
/// Parameters are registered in an `nn::parameters` under the official tensor names
/// "<prefix>.linear1.weight", "<prefix>.linear1.bias", "<prefix>.linear2.weight" and
/// "<prefix>.bias", prefix e.g. "model.layers.3.self_attn.retention_gate", so a checkpoint loads by
/// name (`parameters::load(file, false)`). Cost 2 N (C I + I G) flops through the GEMM entry.

#include <cmath>
#include <random>
#include <string>

#include "membound/nn/linear.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct retention_gate {
  nn::linear linear1, linear2; ///< C -> I (act fused), I -> G
  view<float> bias;            ///< (G), the per-head bias
  array<float> hidden, logits; ///< workspace (N,I), (N,G), grown on demand

  /// Registers the gate's parameters under `prefix`. Initialised as the reference code does:
  /// weights N(0, 0.02), b1 = 0, head bias = `bias_init` (10 in the reference code; the paper
  /// uses 18), so beta starts near 1.
  /// @throws config_error for non-positive sizes.
  static retention_gate make(nn::parameters& p, const std::string& prefix, index_t hidden_size, index_t kv_heads,
                             index_t intermediate = 512, nn::activation act = nn::activation::silu,
                             float bias_init = 10.0f, unsigned seed = 0) {
    MEMBOUND_EXPECTS(hidden_size >= 1 && kv_heads >= 1 && intermediate >= 1, config_error, "retention_gate \"", prefix,
                     "\": hidden ", hidden_size, ", kv_heads ", kv_heads, ", intermediate ", intermediate,
                     "; expected >= 1");
    std::mt19937 gen(seed);
    retention_gate g;
    g.linear1 = nn::linear::make(p, prefix + ".linear1", hidden_size, intermediate, true, act, gen);
    g.linear2 = nn::linear::make(p, prefix + ".linear2", intermediate, kv_heads, false, nn::activation::identity, gen);
    g.bias = p.add(prefix + ".bias", {kv_heads});
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (float& w : g.linear1.weight.span()) w = nd(gen);
    for (float& b : g.linear1.bias.span()) b = 0.0f;
    for (float& w : g.linear2.weight.span()) w = nd(gen);
    for (float& b : g.bias.span()) b = bias_init;
    return g;
  }

  index_t kv_heads() const noexcept { return bias.extent(0); }

  /// log_beta (N,G) = logsigmoid(W2 act(W1 x + b1) + b) for x (N,C), computed stably
  /// (min(z, 0) - log1p(exp(-|z|))). @throws shape_error naming both shapes.
  void forward(view<const float> x /*(N,C)*/, view<float> log_beta /*(N,G)*/) {
    const index_t n = x.extent(0);
    MEMBOUND_EXPECTS(log_beta.rank() == 2 && log_beta.extent(0) == n && log_beta.extent(1) == kv_heads(), shape_error,
                     "retention_gate::forward: log_beta is (", log_beta.extent(0), ",",
                     log_beta.rank() == 2 ? log_beta.extent(1) : 0, "), expected (", n, ",", kv_heads(), ")");
    if (hidden.size() < n * linear1.out_features()) {
      hidden = array<float>({n, linear1.out_features()}); // (N,I)
      logits = array<float>({n, kv_heads()});             // (N,G)
    }
    auto h = make_view(hidden.data(), {n, linear1.out_features()}); // (N,I)
    auto z = make_view(logits.data(), {n, kv_heads()});            // (N,G)
    linear1.forward(x, h, h);
    linear2.forward(h, z, z);
    for (index_t r = 0; r < n; ++r)
      for (index_t g = 0; g < kv_heads(); ++g) {
        const double v = static_cast<double>(z(r, g)) + bias(g);
        log_beta(r, g) = static_cast<float>(std::min(v, 0.0) - std::log1p(std::exp(-std::abs(v))));
      }
  }
};

} // namespace kv
} // namespace v0_1
} // namespace membound
