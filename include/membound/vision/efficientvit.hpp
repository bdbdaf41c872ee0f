// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `vision::efficientvit`: the EfficientViT-M0..M5 image classifiers (Liu et al., CVPR
/// 2023), numerically as timm's `efficientvit_msra` in eval mode: NCHW f32 images in, logits out.
///
/// Weights come from timm's state dict (safetensors under timm's names; `tools/convert_efficientvit.py`
/// converts a `.pth`) and every BatchNorm is folded at load time (Conv-BN -> conv + bias, the
/// head's BatchNorm1d into its Linear, the attention scale into the Q depthwise conv, each
/// residual depthwise conv's identity into its centre tap). Inference runs channel-major (see
/// detail/channel_major.hpp): every 1x1 convolution of the batch is one product in fixed column
/// blocks (up to 200 columns, e.g. batch 1, through `cpu::packed_gemm` on weights packed at load
/// time; wider through the GEMM entry), depthwise convolutions run per channel over all images,
/// and the attention runs over all windows of all images per head. Threads (OpenMP): over images in the stem, over column
/// blocks, channels and windows in the body; the results are identical for any thread count.
/// Costs: `efficientvit_macs(cfg)` multiply-accumulates per image; workspace ~ 8 C1 (S/16)^2 B
/// floats plus the stem's per-thread planes, allocated on the first call for a batch size and
/// reused. Weights: the folded f32 tensors, and on AVX2 / AVX-512 builds a second, packed copy of
/// every 1x1 convolution's (about the model's parameter bytes again: M5 +50 MB). Not safe for
/// concurrent calls on one object.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "membound/nn/conv2d.hpp"
#include "membound/vision/efficientvit_config.hpp"
#include "membound/vision/local_window_attention.hpp"
#include "membound/vision/state_dict.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

/// The configuration among M0..M5 whose state-dict names and shapes `sd` matches exactly
/// (ignoring tensors outside the layout), or nothing.
inline std::optional<efficientvit_config> efficientvit_detect(const state_dict& sd) {
  for (const auto& cfg : efficientvit_configs()) {
    bool ok = true;
    for (const auto& t : efficientvit_state_spec(cfg)) {
      const auto it = sd.tensors().find(t.name);
      if (it == sd.tensors().end() || static_cast<std::size_t>(it->second.rank()) != t.shape.size()) { ok = false; break; }
      for (std::size_t d = 0; ok && d < t.shape.size(); ++d) ok = it->second.extent(static_cast<int>(d)) == t.shape[d];
      if (!ok) break;
    }
    if (ok) return cfg;
  }
  return std::nullopt;
}

/// A state dict initialised as timm initialises `efficientvit_m*` (for experiments): every
/// Conv2d weight (and the SE convs' biases) U(+-1/sqrt(fan_in)) as PyTorch's default; BatchNorm
/// gamma 1 (0 for the residual branches' last BN: block dw0/dw1, every FFN's pw2, the attention
/// projection), beta 0, running statistics (0, 1); attention biases 0; the head's Linear weight
/// N(0, 0.02) and bias 0. Deterministic in `seed` (std::mt19937_64).
inline state_dict efficientvit_random_init(const efficientvit_config& cfg, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  state_dict sd;
  for (const auto& t : efficientvit_state_spec(cfg)) {
    array<float> a(std::span<const index_t>(t.shape.data(), t.shape.size()), uninitialized); // t.shape
    const auto ends = [&](std::string_view suf) {
      return t.name.size() >= suf.size() && t.name.compare(t.name.size() - suf.size(), suf.size(), suf) == 0;
    };
    float fill = 0.0f;
    switch (t.role) {
    case tensor_role::conv_weight: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(t.size() / t.shape[0]));
      std::uniform_real_distribution<double> u(-bound, bound);
      for (float& v : a.span()) v = static_cast<float>(u(gen));
      sd.set(t.name, std::move(a));
      continue;
    }
    case tensor_role::linear_weight: {
      std::normal_distribution<double> nd(0.0, 0.02);
      for (float& v : a.span()) v = static_cast<float>(std::clamp(nd(gen), -2.0, 2.0));
      sd.set(t.name, std::move(a));
      continue;
    }
    case tensor_role::bias:
      if (t.name.find(".se.") != std::string::npos) { // PyTorch Conv2d bias: U(+-1/sqrt(fan_in))
        // fan_in of the conv this bias belongs to: fc1 reads 4C channels, fc2 reads rd = C.
        const index_t cin = t.name.ends_with("fc1.bias") ? 4 * t.shape[0] : t.shape[0] / 4;
        const index_t fan_in = cin;
        std::uniform_real_distribution<double> u(-1.0 / std::sqrt(static_cast<double>(fan_in)),
                                                 1.0 / std::sqrt(static_cast<double>(fan_in)));
        for (float& v : a.span()) v = static_cast<float>(u(gen));
        sd.set(t.name, std::move(a));
        continue;
      }
      fill = 0.0f;
      break;
    case tensor_role::bn_weight: {
      const bool zero = ends(".dw0.m.bn.weight") || ends(".dw1.m.bn.weight") || ends(".pw2.bn.weight") ||
                        ends(".proj.1.bn.weight");
      fill = zero && t.name.find(".downsample.") == std::string::npos ? 0.0f : 1.0f;
      if (ends(".pw2.bn.weight")) fill = 0.0f;
      break;
    }
    case tensor_role::bn_var: fill = 1.0f; break;
    default: fill = 0.0f; break;
    }
    std::fill(a.data(), a.data() + a.size(), fill);
    sd.set(t.name, std::move(a));
  }
  return sd;
}

/// An EfficientViT classifier with folded weights.
template <class B = backend::best_cpu>
class efficientvit {
public:
  /// Builds the network from timm's state dict. Strict: every tensor of the layout must be
  /// present with its shape, and (when `strict`) no other floating-point tensor may be.
  /// @throws config_error for a bad configuration; format_error naming a missing, misshapen or
  /// unexpected tensor, and, when the shapes fit another configuration, naming that one.
  static efficientvit from_state_dict(const efficientvit_config& cfg, const state_dict& sd, bool strict = true) {
    cfg.check();
    const auto spec = efficientvit_state_spec(cfg);
    std::set<std::string> names;
    for (const auto& t : spec) {
      names.insert(t.name);
      if (!sd.contains(t.name) || !same_shape(sd.tensors().at(t.name), t.shape)) {
        const auto other = efficientvit_detect(sd);
        if (other && other->name != cfg.name)
          throw format_error("efficientvit_" + cfg.name + ": the weights are those of efficientvit_" + other->name +
                             " (tensor \"" + t.name + "\" " + (sd.contains(t.name) ? "has another shape" : "is missing") +
                             "); build that configuration instead");
        (void)sd.get(t.name, std::span<const index_t>(t.shape.data(), t.shape.size())); // throws, naming the tensor
      }
    }
    if (strict)
      for (const auto& [name, t] : sd.tensors())
        MEMBOUND_EXPECTS(names.count(name) != 0 || name.ends_with("attention_bias_idxs") || name.ends_with("num_batches_tracked"),
                         format_error, "efficientvit_", cfg.name, ": unexpected tensor \"", name,
                         "\" in the weights (not part of timm's efficientvit_", cfg.name, " layout)");
    efficientvit m;
    m.build(cfg, sd);
    return m;
  }
  /// From a safetensors file (timm names). @throws format_error (see from_state_dict and the reader).
  static efficientvit load(const efficientvit_config& cfg, const std::filesystem::path& path, bool strict = true) {
    return from_state_dict(cfg, state_dict::load(path), strict);
  }
  /// timm-style random initialisation (see efficientvit_random_init).
  static efficientvit random(const efficientvit_config& cfg, std::uint64_t seed) {
    return from_state_dict(cfg, efficientvit_random_init(cfg, seed));
  }

  const efficientvit_config& config() const noexcept { return cfg_; }

  /// logits (B, num_classes) = model(x (B, in_chans, S, S)), S = img_size.
  /// @throws shape_error naming the expected shapes (timm's models are fixed-size too).
  void forward(view<const float> x, view<float> logits) {
    const index_t s = cfg_.img_size, cin = cfg_.in_chans;
    MEMBOUND_EXPECTS(x.rank() == 4 && x.contiguous() && x.extent(1) == cin && x.extent(2) == s && x.extent(3) == s,
                     shape_error, "efficientvit_", cfg_.name, ": input must be a contiguous (B,", cin, ",", s, ",", s,
                     ") tensor (", cin, " channels at the configured resolution ", s, "); got ",
                     cascaded_group_attention<B>::describe(x));
    const index_t b = x.extent(0);
    MEMBOUND_EXPECTS(logits.rank() == 2 && logits.extent(0) == b && logits.extent(1) == cfg_.num_classes &&
                         logits.stride(1) == 1,
                     shape_error, "efficientvit_", cfg_.name, ": logits must be (", b, ",", cfg_.num_classes,
                     ") with unit inner stride; got ", cascaded_group_attention<B>::describe(view<const float>(logits)));
    if (b == 0) return;
    prepare(b);
    stem(x, b);
    index_t r = cfg_.stage_resolution(0);
    for (int st = 0; st < 3; ++st) {
      if (st > 0) {
        merge_forward(merges_[st - 1], b, r);
        r = cfg_.stage_resolution(st);
      }
      for (auto& blk : blocks_[st]) block_forward(blk, b, r);
    }
    head_forward(b, r, logits);
  }

  /// The attention probabilities of one token mixer: runs image (1, in_chans, S, S) up to the
  /// mixer of block `block_index` of stage `stage` (0..2) and returns its cascaded group attention's
  /// probabilities in window `window` (row-major over the windows_per_side^2 windows of the
  /// stage's map, zero padded at the bottom/right as the mixer pads), shape (h, N, N), N = R^2
  /// (R = min(window side, stage resolution)): entry (i, n, m) is head i's weight of key token m
  /// for query token n, tokens row-major in the window. See cascaded_group_attention::probabilities.
  /// @throws shape_error for a bad image or window, config_error for a stage or block out of range.
  /// Costs: a forward pass of one image up to that block plus the mixer's attention in double.
  array<float> attention_maps(view<const float> image, int stage, index_t block_index, index_t window = 0) {
    const index_t s = cfg_.img_size, cin = cfg_.in_chans;
    MEMBOUND_EXPECTS(image.rank() == 4 && image.contiguous() && image.extent(0) == 1 && image.extent(1) == cin &&
                         image.extent(2) == s && image.extent(3) == s,
                     shape_error, "efficientvit_", cfg_.name, "::attention_maps: image must be a contiguous (1,", cin,
                     ",", s, ",", s, ") tensor; got ", cascaded_group_attention<B>::describe(image));
    MEMBOUND_EXPECTS(stage >= 0 && stage < 3 && block_index >= 0 && block_index < static_cast<index_t>(blocks_[stage].size()),
                     config_error, "efficientvit_", cfg_.name, "::attention_maps: stage ", stage, " block ", block_index,
                     " does not exist");
    local_window_attention<B>& lwa = blocks_[stage][static_cast<std::size_t>(block_index)].mixer;
    const index_t nw = lwa.windows_per_side();
    MEMBOUND_EXPECTS(window >= 0 && window < nw * nw, shape_error, "efficientvit_", cfg_.name,
                     "::attention_maps: window ", window, " of ", nw * nw);
    prepare(1);
    stem(image, 1);
    index_t r = cfg_.stage_resolution(0);
    for (int st = 0; st <= stage; ++st) {
      if (st > 0) {
        merge_forward(merges_[st - 1], 1, r);
        r = cfg_.stage_resolution(st);
      }
      const index_t last = st < stage ? static_cast<index_t>(blocks_[st].size()) : block_index;
      for (index_t j = 0; j < last; ++j) block_forward(blocks_[st][static_cast<std::size_t>(j)], 1, r);
    }
    block& blk = blocks_[stage][static_cast<std::size_t>(block_index)]; // the mixer's input: after dw0 and ffn0
    const index_t c = blk.dw0.out_channels();
    residual_dw_forward(blk.dw0, c, 1, r);
    ffn_forward(blk.ffn0, r * r);
    const index_t rw = lwa.attn.cfg.resolution, n = rw * rw, wy = window / nw, wx = window % nw;
    array<float> xw({c, n}); // (C, 1, R, R): the window, zero padded
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t ty = 0; ty < rw; ++ty)
        for (index_t tx = 0; tx < rw; ++tx) {
          const index_t yy = wy * rw + ty, xx = wx * rw + tx;
          xw.data()[ch * n + ty * rw + tx] = yy < r && xx < r ? x_.data()[ch * r * r + yy * r + xx] : 0.0f;
        }
    array<float> p({lwa.attn.cfg.heads, n, n}); // (h, N, N)
    lwa.attn.probabilities(xw.data(), 1, 0, p.data());
    return p;
  }

private:
  struct ffn_layer {
    folded_conv pw1, pw2;
  };
  struct block {
    folded_conv dw0, dw1; // identity folded into the centre tap
    ffn_layer ffn0, ffn1;
    local_window_attention<B> mixer;
  };
  struct merge {
    folded_conv pre_dw, post_dw;
    ffn_layer pre_ffn, post_ffn;
    folded_conv conv1, conv2, conv3;
    folded_conv fc1, fc2; // squeeze-excite: (rd, 4C), (4C, rd) with biases
  };
  struct stem_thread {
    std::array<nn::conv2d, 4> conv;
    array<float> a, b; // ping-pong planes of one image
  };

  static bool same_shape(const array<float>& a, const std::vector<index_t>& shape) {
    if (static_cast<std::size_t>(a.rank()) != shape.size()) return false;
    for (std::size_t d = 0; d < shape.size(); ++d)
      if (a.extent(static_cast<int>(d)) != shape[d]) return false;
    return true;
  }
  static folded_conv residual_dw(const state_dict& sd, const std::string& p, index_t c) {
    folded_conv f = fold_conv_bn(sd, p, 1, c, 3);
    for (index_t ch = 0; ch < c; ++ch) f.weight.data()[ch * 9 + 4] += 1.0f; // x + dw(x)
    return f;
  }
  static ffn_layer make_ffn(const state_dict& sd, const std::string& p, index_t c) {
    ffn_layer f{fold_conv_bn(sd, p + ".pw1", c, 2 * c, 1), fold_conv_bn(sd, p + ".pw2", 2 * c, c, 1)};
    detail::pack_1x1<B>(f.pw1);
    detail::pack_1x1<B>(f.pw2);
    return f;
  }
  static array<float> copy_of(const array<float>& a) { return a; }

  void build(const efficientvit_config& cfg, const state_dict& sd) {
    cfg_ = cfg;
    const index_t c1 = cfg.embed_dim[0];
    const index_t widths[5] = {cfg.in_chans, c1 / 8, c1 / 4, c1 / 2, c1};
    for (int i = 0; i < 4; ++i)
      stem_w_[i] = fold_conv_bn(sd, "patch_embed.conv" + std::to_string(i + 1), widths[i], widths[i + 1], 3);
    for (int s = 0; s < 3; ++s) {
      const std::string st = "stages." + std::to_string(s);
      const index_t c = cfg.embed_dim[s], r = cfg.stage_resolution(s);
      if (s > 0) {
        const index_t cp = cfg.embed_dim[s - 1], hid = 4 * cp, rd = (hid / 4 + 4) / 8 * 8;
        merge& m = merges_[s - 1];
        const std::string pm = st + ".downsample.patchmerge";
        m.pre_dw = residual_dw(sd, st + ".downsample.res1.0.m", cp);
        m.pre_ffn = make_ffn(sd, st + ".downsample.res1.1.m", cp);
        m.conv1 = fold_conv_bn(sd, pm + ".conv1", cp, hid, 1);
        detail::pack_1x1<B>(m.conv1);
        m.conv2 = fold_conv_bn(sd, pm + ".conv2", 1, hid, 3);
        m.fc1 = {copy_of(sd.get(pm + ".se.fc1.weight", {rd, hid, 1, 1})), copy_of(sd.get(pm + ".se.fc1.bias", {rd})), {}};
        m.fc2 = {copy_of(sd.get(pm + ".se.fc2.weight", {hid, rd, 1, 1})), copy_of(sd.get(pm + ".se.fc2.bias", {hid})), {}};
        detail::pack_1x1<B>(m.fc1); // one column per image: the column kernel, at read bandwidth
        detail::pack_1x1<B>(m.fc2);
        m.conv3 = fold_conv_bn(sd, pm + ".conv3", hid, c, 1);
        detail::pack_1x1<B>(m.conv3);
        m.post_dw = residual_dw(sd, st + ".downsample.res2.0.m", c);
        m.post_ffn = make_ffn(sd, st + ".downsample.res2.1.m", c);
      }
      cga_config a;
      a.dim = c;
      a.key_dim = cfg.key_dim;
      a.heads = cfg.heads[s];
      a.attn_ratio = static_cast<double>(c) / static_cast<double>(cfg.key_dim * cfg.heads[s]);
      a.kernels.assign(cfg.kernels.begin(), cfg.kernels.end());
      for (index_t j = 0; j < cfg.depth[s]; ++j) {
        const std::string p = st + ".blocks." + std::to_string(j);
        block blk;
        blk.dw0 = residual_dw(sd, p + ".dw0.m", c);
        blk.ffn0 = make_ffn(sd, p + ".ffn0.m", c);
        blk.mixer = local_window_attention<B>::load(a, r, cfg.window, sd, p + ".mixer.m");
        blk.dw1 = residual_dw(sd, p + ".dw1.m", c);
        blk.ffn1 = make_ffn(sd, p + ".ffn1.m", c);
        blocks_[s].push_back(std::move(blk));
      }
    }
    head_ = fold_bn_linear(sd, "head.bn", "head.linear", cfg.embed_dim[2], cfg.num_classes);
  }

  // Buffers for a batch of b images (allocated once per batch size).
  void prepare(index_t b) {
    if (b == batch_) return;
    const index_t r0 = cfg_.stage_resolution(0), t0 = b * r0 * r0;
    index_t big = 0;
    for (int s = 0; s < 3; ++s) {
      const index_t r = cfg_.stage_resolution(s), t = b * r * r;
      big = std::max(big, 2 * cfg_.embed_dim[s] * t);
      if (s > 0) big = std::max(big, 4 * cfg_.embed_dim[s - 1] * b * cfg_.stage_resolution(s - 1) * cfg_.stage_resolution(s - 1));
    }
    x_ = array<float>({std::max(big, cfg_.embed_dim[0] * t0)}, uninitialized); // (C, B, H, W) of any stage
    y_ = array<float>({x_.size()}, uninitialized); // (C, B, H, W): depthwise outputs
    h_ = array<float>({big}, uninitialized); // (2C or 4C, B, H, W): FFN and merge hidden
    batch_ = b;
  }

  void stem(view<const float> x, index_t b) {
    const index_t s = cfg_.img_size, c1 = cfg_.embed_dim[0], r0 = cfg_.stage_resolution(0), p0 = r0 * r0;
    const index_t widths[5] = {cfg_.in_chans, c1 / 8, c1 / 4, c1 / 2, c1};
    int nthreads = 1;
#if defined(_OPENMP)
    nthreads = omp_get_max_threads();
#endif
    if (static_cast<int>(stem_ws_.size()) < nthreads) stem_ws_.resize(static_cast<std::size_t>(nthreads));
    float* out = x_.data();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (b > 1)
#endif
    for (index_t img = 0; img < b; ++img) {
      int tid = 0;
#if defined(_OPENMP)
      tid = omp_get_thread_num();
#endif
      stem_thread& ws = stem_ws_[static_cast<std::size_t>(tid)];
      const index_t half = (s - 1) / 2 + 1;
      if (ws.a.size() == 0) {
        ws.a = array<float>({widths[1] * half * half}, uninitialized); // (C1/8, S/2, S/2), later (C1/2, S/8, S/8)
        ws.b = array<float>({widths[2] * ((half - 1) / 2 + 1) * ((half - 1) / 2 + 1) + widths[4] * p0}, // (C1/4, S/4, S/4),
                            uninitialized);                                                       // later (C1, S/16, S/16)
        for (int i = 0; i < 4; ++i) {
          nn::conv2d& c = ws.conv[static_cast<std::size_t>(i)];
          c.cfg = nn::conv2d_config{widths[i], widths[i + 1], 3, 2, 1, 1, true,
                                    i < 3 ? nn::activation::relu : nn::activation::identity};
          c.weight = make_view(stem_w_[i].weight.data(), {widths[i + 1], widths[i], 3, 3});
          c.bias = make_view(stem_w_[i].bias.data(), {widths[i + 1]});
        }
      }
      index_t side = s;
      const float* in = x.data() + img * cfg_.in_chans * s * s;
      float* bufs[2] = {ws.a.data(), ws.b.data()};
      const detail::single_thread_scope one; // the im2col GEMMs: one thread per image, as in cm_conv1x1
      for (int i = 0; i < 4; ++i) {
        const index_t next = (side - 1) / 2 + 1;
        float* o = bufs[i % 2];
        ws.conv[static_cast<std::size_t>(i)].template forward<B>(make_view(in, {1, widths[i], side, side}),
                                                                 make_view(o, {1, widths[i + 1], next, next}));
        in = o;
        side = next;
      }
      for (index_t c = 0; c < c1; ++c) std::copy_n(in + c * p0, p0, out + (c * b + img) * p0);
    }
  }

  // x_ (C, B, r, r) -> x_ with x += DW(x) (identity in the centre tap): via y_, then swap.
  void residual_dw_forward(const folded_conv& f, index_t c, index_t b, index_t r) {
    detail::cm_depthwise<B>(x_.data(), c, b, f.weight.data(), f.bias.data(), y_.data(), cpu::conv_geometry{r, r, 3, 1, 1},
                            false);
    std::swap(x_, y_);
  }
  void ffn_forward(const ffn_layer& f, index_t t) {
    detail::cm_ffn<B>(f.pw1, f.pw2, x_.data(), t, h_.data());
  }
  void block_forward(block& blk, index_t b, index_t r) {
    const index_t c = blk.dw0.out_channels(), t = b * r * r;
    residual_dw_forward(blk.dw0, c, b, r);
    ffn_forward(blk.ffn0, t);
    blk.mixer.forward_channel_major(x_.data(), x_.data(), b, true);
    residual_dw_forward(blk.dw1, c, b, r);
    ffn_forward(blk.ffn1, t);
  }
  void merge_forward(const merge& m, index_t b, index_t r) {
    const index_t cp = m.pre_dw.out_channels(), hid = m.conv1.out_channels(), cn = m.conv3.out_channels();
    const index_t rd = m.fc1.out_channels(), t = b * r * r, rn = (r - 1) / 2 + 1, pn = rn * rn, tn = b * pn;
    residual_dw_forward(m.pre_dw, cp, b, r);
    ffn_forward(m.pre_ffn, t);
    detail::cm_conv1x1<B>(m.conv1, x_.data(), t, h_.data(), t, t, detail::epilogue::bias_relu, false);
    float* g = y_.data(); // (hid, B, rn, rn)
    detail::cm_depthwise<B>(h_.data(), hid, b, m.conv2.weight.data(), m.conv2.bias.data(), g,
                            cpu::conv_geometry{r, r, 3, 2, 1}, true);
    // Squeeze-excite: per image and channel, the plane mean -> fc1, ReLU -> fc2, sigmoid -> scale.
    std::vector<float> pooled(static_cast<std::size_t>(hid * b)), z1(static_cast<std::size_t>(rd * b)),
        z2(static_cast<std::size_t>(hid * b));
    [[maybe_unused]] const bool big = hid * b * pn >= 32768;
    MEMBOUND_VISION_PARALLEL_FOR
    for (index_t i = 0; i < hid * b; ++i) {
      float acc = 0.0f;
      for (index_t p = 0; p < pn; ++p) acc += g[i * pn + p];
      pooled[static_cast<std::size_t>(i)] = acc / static_cast<float>(pn);
    }
    detail::cm_conv1x1<B>(m.fc1, pooled.data(), b, z1.data(), b, b, detail::epilogue::bias_relu, false);
    detail::cm_conv1x1<B>(m.fc2, z1.data(), b, z2.data(), b, b, detail::epilogue::bias, false);
    MEMBOUND_VISION_PARALLEL_FOR
    for (index_t i = 0; i < hid * b; ++i) {
      const float sc = 1.0f / (1.0f + std::exp(-z2[static_cast<std::size_t>(i)]));
      for (index_t p = 0; p < pn; ++p) g[i * pn + p] *= sc;
    }
    detail::cm_conv1x1<B>(m.conv3, g, tn, x_.data(), tn, tn, detail::epilogue::bias, false);
    residual_dw_forward(m.post_dw, cn, b, rn);
    ffn_forward(m.post_ffn, tn);
  }
  void head_forward(index_t b, index_t r, view<float> logits) {
    const index_t c = cfg_.embed_dim[2], p = r * r, nc = cfg_.num_classes;
    array<float> pooled({b, c}, uninitialized); // (B, C)
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t img = 0; img < b; ++img) {
        float acc = 0.0f;
        const float* src = x_.data() + (ch * b + img) * p;
        for (index_t i = 0; i < p; ++i) acc += src[i];
        pooled.data()[img * c + ch] = acc / static_cast<float>(p);
      }
    // One (1, C) x (C, classes) product per image, so an image's logits do not depend on the batch.
    for (index_t img = 0; img < b; ++img)
      cpu::gemm(make_view<const float>(pooled.data() + img * c, {1, c}),
                make_view<const float>(head_.weight.data(), {c, nc}, {1, c}),
                make_view<float>(&logits(img, 0), {1, nc}, {logits.stride(0), 1}));
    for (index_t img = 0; img < b; ++img)
      for (index_t k = 0; k < nc; ++k) logits(img, k) += head_.bias.data()[k];
  }

  efficientvit_config cfg_;
  folded_conv stem_w_[4];
  std::vector<block> blocks_[3];
  merge merges_[2];
  folded_conv head_;
  index_t batch_ = -1;
  array<float> x_, y_, h_;
  std::vector<stem_thread> stem_ws_;
};

} // namespace vision
} // namespace v0_1
} // namespace membound
