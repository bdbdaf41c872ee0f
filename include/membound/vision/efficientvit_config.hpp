// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The EfficientViT-M0..M5 configurations (Liu et al., "EfficientViT: Memory Efficient
/// Vision Transformer with Cascaded Group Attention", CVPR 2023; microsoft/Cream build.py and
/// timm's `efficientvit_msra`, which register the same numbers), the timm state-dict layout
/// they imply (names and shapes of every tensor, as timm's `state_dict()` writes them), and exact
/// parameter and multiply-accumulate counts.
///
/// Structure (timm names): `patch_embed.conv1..conv4` (3x3 stride-2 Conv-BN, ReLU between, 16x
/// down); `stages.0` = depth[0] blocks; `stages.{1,2}` = a downsample unit (`res1`: residual
/// depthwise 3x3 + residual FFN at the old width, `patchmerge`: 1x1 -> depthwise 3x3 stride 2 ->
/// squeeze-excite -> 1x1, `res2`: residual depthwise + FFN at the new width) then depth[s] blocks;
/// a block is dw0, ffn0, mixer (local window attention), dw1, ffn1, each residual; `head` =
/// BatchNorm1d + Linear. Every Conv-BN is `<name>.conv.weight` + `<name>.bn.{weight, bias,
/// running_mean, running_var}` (timm also saves `num_batches_tracked`, which loaders ignore).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

/// One EfficientViT-M configuration. key_dim, window and the FFN ratio (2) are shared by all six.
struct efficientvit_config {
  std::string name = "m0";
  std::array<index_t, 3> embed_dim{64, 128, 192}; ///< C1, C2, C3
  std::array<index_t, 3> depth{1, 2, 3};          ///< blocks per stage
  std::array<index_t, 3> heads{4, 4, 4};          ///< attention heads per stage
  std::array<index_t, 4> kernels{5, 5, 5, 5};     ///< the Q depthwise kernel of head i (all stages)
  index_t key_dim = 16;                           ///< Q and K width per head
  index_t window = 7;                             ///< local attention window side
  index_t img_size = 224;                         ///< input side (square, a multiple of 16)
  index_t in_chans = 3;
  index_t num_classes = 1000;

  /// Side of the feature map of stage s (0..2): img_size / 16, then (r - 1) / 2 + 1 per merge.
  index_t stage_resolution(int s) const noexcept {
    index_t r = img_size / 16;
    for (int i = 0; i < s; ++i) r = (r - 1) / 2 + 1;
    return r;
  }
  /// Validates the configuration. @throws config_error naming the bad field and value.
  void check() const {
    MEMBOUND_EXPECTS(img_size >= 16 && img_size % 16 == 0, config_error, "efficientvit ", name, ": img_size ", img_size,
                     ", expected a positive multiple of 16 (the stem halves the side four times and timm's "
                     "window plan takes img_size / 16 as the first stage's side)");
    MEMBOUND_EXPECTS(key_dim >= 1 && window >= 1 && window <= 8, config_error, "efficientvit ", name, ": key_dim ",
                     key_dim, " / window ", window, ", expected key_dim >= 1 and window in 1..8 (<= 64 tokens)");
    MEMBOUND_EXPECTS(in_chans >= 1 && num_classes >= 1, config_error, "efficientvit ", name, ": in_chans ", in_chans,
                     ", num_classes ", num_classes, ", expected >= 1");
    for (int s = 0; s < 3; ++s) {
      MEMBOUND_EXPECTS(heads[s] >= 1 && heads[s] <= 4 && embed_dim[s] % heads[s] == 0 && embed_dim[s] >= 8,
                       config_error, "efficientvit ", name, ": stage ", s, " has embed_dim ", embed_dim[s], " and ",
                       heads[s], " heads; expected 1..4 heads dividing embed_dim (>= 8)");
      MEMBOUND_EXPECTS(depth[s] >= 1, config_error, "efficientvit ", name, ": depth[", s, "] = ", depth[s],
                       ", expected >= 1");
    }
    MEMBOUND_EXPECTS(embed_dim[0] % 8 == 0, config_error, "efficientvit ", name, ": embed_dim[0] = ", embed_dim[0],
                     ", expected a multiple of 8 (the stem widths are C1/8, C1/4, C1/2)");
    for (index_t k : kernels)
      MEMBOUND_EXPECTS(k >= 1 && k <= 7 && k % 2 == 1, config_error, "efficientvit ", name, ": Q kernel ", k,
                       ", expected odd, 1..7");
  }
};

/// The six published configurations (microsoft/Cream build.py, timm `efficientvit_m0..m5`).
inline efficientvit_config efficientvit_m0() { return {"m0", {64, 128, 192}, {1, 2, 3}, {4, 4, 4}, {5, 5, 5, 5}}; }
inline efficientvit_config efficientvit_m1() { return {"m1", {128, 144, 192}, {1, 2, 3}, {2, 3, 3}, {7, 5, 3, 3}}; }
inline efficientvit_config efficientvit_m2() { return {"m2", {128, 192, 224}, {1, 2, 3}, {4, 3, 2}, {7, 5, 3, 3}}; }
inline efficientvit_config efficientvit_m3() { return {"m3", {128, 240, 320}, {1, 2, 3}, {4, 3, 4}, {5, 5, 5, 5}}; }
inline efficientvit_config efficientvit_m4() { return {"m4", {128, 256, 384}, {1, 2, 3}, {4, 4, 4}, {7, 5, 3, 3}}; }
inline efficientvit_config efficientvit_m5() { return {"m5", {192, 288, 384}, {1, 3, 4}, {3, 3, 4}, {7, 5, 3, 3}}; }

/// All six, M0 first.
inline std::array<efficientvit_config, 6> efficientvit_configs() {
  return {efficientvit_m0(), efficientvit_m1(), efficientvit_m2(), efficientvit_m3(), efficientvit_m4(), efficientvit_m5()};
}

/// A configuration by name: "m0".."m5" or timm's "efficientvit_m0".."efficientvit_m5".
/// @throws config_error naming the unknown name.
inline efficientvit_config efficientvit_by_name(std::string_view name) {
  std::string_view n = name;
  if (n.rfind("efficientvit_", 0) == 0) n.remove_prefix(13);
  for (const auto& c : efficientvit_configs())
    if (c.name == n) return c;
  throw config_error("efficientvit: unknown model \"" + std::string(name) + "\", expected m0..m5 or efficientvit_m0..m5");
}

/// What a state-dict tensor is (decides how it is initialised and whether it is trainable).
enum class tensor_role { conv_weight, bn_weight, bn_bias, bn_mean, bn_var, bias, attention_bias, linear_weight };

/// One tensor of the timm state dict: name, shape (outermost first), role.
struct tensor_spec {
  std::string name;
  std::vector<index_t> shape;
  tensor_role role;
  index_t size() const noexcept {
    index_t n = 1;
    for (index_t e : shape) n *= e;
    return n;
  }
  /// Trainable parameter (not a BatchNorm running statistic).
  bool trainable() const noexcept { return role != tensor_role::bn_mean && role != tensor_role::bn_var; }
};

namespace detail {
struct spec_builder {
  std::vector<tensor_spec> out;
  void bn(const std::string& p, index_t c) {
    out.push_back({p + ".weight", {c}, tensor_role::bn_weight});
    out.push_back({p + ".bias", {c}, tensor_role::bn_bias});
    out.push_back({p + ".running_mean", {c}, tensor_role::bn_mean});
    out.push_back({p + ".running_var", {c}, tensor_role::bn_var});
  }
  void conv_norm(const std::string& p, index_t cin, index_t cout, index_t k, bool depthwise) {
    out.push_back({p + ".conv.weight", {cout, depthwise ? 1 : cin, k, k}, tensor_role::conv_weight});
    bn(p + ".bn", cout);
  }
  void ffn(const std::string& p, index_t c) {
    conv_norm(p + ".pw1", c, 2 * c, 1, false);
    conv_norm(p + ".pw2", 2 * c, c, 1, false);
  }
  void attention(const std::string& p, const efficientvit_config& cfg, int s) {
    const index_t c = cfg.embed_dim[s], h = cfg.heads[s], d = c / h, kd = cfg.key_dim;
    const index_t r = std::min(cfg.window, cfg.stage_resolution(s));
    out.push_back({p + ".attention_biases", {h, r * r}, tensor_role::attention_bias});
    for (index_t i = 0; i < h; ++i) conv_norm(p + ".qkvs." + std::to_string(i), d, 2 * kd + d, 1, false);
    for (index_t i = 0; i < h; ++i)
      conv_norm(p + ".dws." + std::to_string(i), kd, kd, cfg.kernels[static_cast<std::size_t>(i)], true);
    conv_norm(p + ".proj.1", d * h, c, 1, false);
  }
  void block(const std::string& p, const efficientvit_config& cfg, int s) {
    const index_t c = cfg.embed_dim[s];
    conv_norm(p + ".dw0.m", c, c, 3, true);
    ffn(p + ".ffn0.m", c);
    attention(p + ".mixer.m.attn", cfg, s);
    conv_norm(p + ".dw1.m", c, c, 3, true);
    ffn(p + ".ffn1.m", c);
  }
};
} // namespace detail

/// Every tensor timm's `efficientvit_m*` state dict holds for `cfg`, in state_dict() order,
/// except `num_batches_tracked` and the `attention_bias_idxs` buffers (derived, ignored).
inline std::vector<tensor_spec> efficientvit_state_spec(const efficientvit_config& cfg) {
  cfg.check();
  detail::spec_builder b;
  const index_t c1 = cfg.embed_dim[0];
  const index_t stem[5] = {cfg.in_chans, c1 / 8, c1 / 4, c1 / 2, c1};
  for (int i = 0; i < 4; ++i) b.conv_norm("patch_embed.conv" + std::to_string(i + 1), stem[i], stem[i + 1], 3, false);
  for (int s = 0; s < 3; ++s) {
    const std::string st = "stages." + std::to_string(s);
    if (s > 0) {
      const index_t cp = cfg.embed_dim[s - 1], cn = cfg.embed_dim[s];
      b.conv_norm(st + ".downsample.res1.0.m", cp, cp, 3, true);
      b.ffn(st + ".downsample.res1.1.m", cp);
      const std::string pm = st + ".downsample.patchmerge";
      b.conv_norm(pm + ".conv1", cp, 4 * cp, 1, false);
      b.conv_norm(pm + ".conv2", 4 * cp, 4 * cp, 3, true);
      const index_t rd = (4 * cp / 4 + 4) / 8 * 8; // timm make_divisible(4 cp * 0.25, 8): cp for every config
      b.out.push_back({pm + ".se.fc1.weight", {rd, 4 * cp, 1, 1}, tensor_role::conv_weight});
      b.out.push_back({pm + ".se.fc1.bias", {rd}, tensor_role::bias});
      b.out.push_back({pm + ".se.fc2.weight", {4 * cp, rd, 1, 1}, tensor_role::conv_weight});
      b.out.push_back({pm + ".se.fc2.bias", {4 * cp}, tensor_role::bias});
      b.conv_norm(pm + ".conv3", 4 * cp, cn, 1, false);
      b.conv_norm(st + ".downsample.res2.0.m", cn, cn, 3, true);
      b.ffn(st + ".downsample.res2.1.m", cn);
    }
    for (index_t j = 0; j < cfg.depth[static_cast<std::size_t>(s)]; ++j)
      b.block(st + ".blocks." + std::to_string(j), cfg, s);
  }
  b.bn("head.bn", cfg.embed_dim[2]);
  b.out.push_back({"head.linear.weight", {cfg.num_classes, cfg.embed_dim[2]}, tensor_role::linear_weight});
  b.out.push_back({"head.linear.bias", {cfg.num_classes}, tensor_role::bias});
  return b.out;
}

/// Trainable parameters: unfused as timm counts them (`sum(p.numel() for p in model.parameters())`),
/// or after folding every BatchNorm into the convolution or Linear next to it (a Conv-BN of C
/// outputs keeps its weight and gains a bias of C; BN1d + Linear keeps the Linear).
inline std::int64_t efficientvit_param_count(const efficientvit_config& cfg, bool fused) {
  std::int64_t n = 0;
  for (const auto& t : efficientvit_state_spec(cfg)) {
    if (!t.trainable()) continue;
    // Folding: a Conv-BN's gamma goes into the weight and its beta becomes the conv's bias (same
    // count); the head's BatchNorm1d goes entirely into the Linear.
    if (fused && (t.role == tensor_role::bn_weight || (t.role == tensor_role::bn_bias && t.name.rfind("head.", 0) == 0)))
      continue;
    n += t.size();
  }
  return n;
}

/// Multiply-accumulates of one image at cfg.img_size: every convolution and Linear (SE and head
/// included) plus both attention products (Q^T K and P V) over every window, as the paper counts
/// its "FLOPs". Padded window tokens count (they are computed).
inline std::int64_t efficientvit_macs(const efficientvit_config& cfg) {
  cfg.check();
  std::int64_t m = 0;
  const index_t c1 = cfg.embed_dim[0];
  const index_t stem[5] = {cfg.in_chans, c1 / 8, c1 / 4, c1 / 2, c1};
  index_t side = cfg.img_size;
  for (int i = 0; i < 4; ++i) {
    side = (side - 1) / 2 + 1;
    m += stem[i] * stem[i + 1] * 9 * side * side;
  }
  auto dw = [](index_t c, index_t k, index_t r) { return static_cast<std::int64_t>(c) * k * k * r * r; };
  auto ffn = [](index_t c, index_t r) { return static_cast<std::int64_t>(4) * c * c * r * r; };
  for (int s = 0; s < 3; ++s) {
    const index_t c = cfg.embed_dim[s], r = cfg.stage_resolution(s);
    if (s > 0) {
      const index_t cp = cfg.embed_dim[s - 1], rp = cfg.stage_resolution(s - 1);
      m += dw(cp, 3, rp) + ffn(cp, rp);
      m += static_cast<std::int64_t>(cp) * 4 * cp * rp * rp; // conv1
      m += dw(4 * cp, 3, r);                                   // conv2 (stride 2)
      m += static_cast<std::int64_t>(2) * 4 * cp * cp;         // SE fc1 + fc2 (rd = cp)
      m += static_cast<std::int64_t>(4) * cp * c * r * r;      // conv3
      m += dw(c, 3, r) + ffn(c, r);
    }
    const index_t h = cfg.heads[s], d = c / h, kd = cfg.key_dim;
    const index_t win = std::min(cfg.window, r), nw = (r + win - 1) / win, tokens = nw * nw * win * win;
    std::int64_t attn = 0;
    for (index_t i = 0; i < h; ++i) {
      const index_t k = cfg.kernels[static_cast<std::size_t>(i)];
      attn += static_cast<std::int64_t>(d) * (2 * kd + d) * tokens; // qkv
      attn += static_cast<std::int64_t>(kd) * k * k * tokens;       // Q depthwise
      attn += static_cast<std::int64_t>(nw) * nw * win * win * win * win * (kd + d); // Q^T K, P V
    }
    attn += static_cast<std::int64_t>(c) * c * tokens; // proj (timm runs it per window, padding included)
    m += cfg.depth[static_cast<std::size_t>(s)] * (2 * dw(c, 3, r) + 2 * ffn(c, r) + attn);
  }
  m += static_cast<std::int64_t>(cfg.embed_dim[2]) * cfg.num_classes;
  return m;
}

} // namespace vision
} // namespace v0_1
} // namespace membound
