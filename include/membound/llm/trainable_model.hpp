// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::trainable_model`: the Llama decoder of `llm::model` with f32 parameters and a
/// hand-written backward pass per layer, in the spirit of llm.c (no tape): forward over a batch of
/// B sequences of T tokens keeps every activation the backward needs; backward accumulates the
/// gradients of every parameter that is not frozen. Parameters carry Hugging Face's names, so
/// `save` writes a folder (config.json + model.safetensors) that `llm::model::load` reads unchanged.
///
/// Per layer, for rows x (N = B T, C), as llm/model.hpp:
///     h1 = RMSNorm(x) w_in;  q = h1 Wq^T, k = h1 Wk^T, v = h1 Wv^T;  q, k <- RoPE(position t)
///     a = causal GQA attention (nn::causal_attention, optional TRIM-KV retention bias);
///     x' = x + a Wo^T;  h2 = RMSNorm(x') w_post;  x'' = x' + (silu(h2 Wg^T) * h2 Wu^T) Wd^T
/// then logits = RMSNorm(x) w_final Wlm^T (Wlm = the embedding table when tied).
/// Backward, layer by layer in reverse: dW += dY^T X (formed as X^T dY and added transposed for
/// matrices with more rows than columns) and dX = dY W through the GEMM entry,
/// `nn::rms_norm::backward`, `nn::swiglu_backward`, the inverse RoPE rotation, and
/// `nn::causal_attention::backward`; the embedding scatters in position order.
///
/// Retention gates (TRIM-KV) plug in through `retention_hook`: at each layer the hook reads the
/// pre-attention activations h1 and writes log beta (B,G,T), which biases that layer's attention;
/// in backward it receives d log beta and adds its contribution to dh1 (so gradients reach the
/// gates of earlier layers through the frozen backbone).
///
/// Memory: forward keeps about N (3 C + 3 H D + 2 G D + 3 I) floats per layer plus N (2 C + V);
/// `reserve(B, T)` allocates once. Cost: 2 N P_matrix flops forward (P_matrix = parameters in the
/// matrices, lm_head included) plus attention's 2 B H T^2 D; backward about twice that.
/// Determinism: for a fixed thread count, bit-identical runs. Across thread counts the GEMM entry
/// may split its K sums differently (last-bit differences, backend/cpu/gemm.hpp); attention,
/// norms, SwiGLU and the embedding scatter do not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/hf_config.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/llm/rope.hpp"
#include "membound/nn/causal_attention.hpp"
#include "membound/nn/embedding.hpp"
#include "membound/nn/loss.hpp"
#include "membound/nn/norm.hpp"
#include "membound/nn/parameters.hpp"
#include "membound/nn/swiglu.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// The shape of a trainable Llama decoder (model_type "llama", no biases, default RoPE).
struct decoder_spec {
  index_t vocab = 256, hidden = 256, intermediate = 704, layers = 4, heads = 8, kv_heads = 4, head_dim = 32;
  index_t max_positions = 2048;
  double rope_theta = 10000.0;
  float rms_eps = 1e-5f;
  bool tie_embeddings = false;

  /// @throws config_error naming the first invalid size.
  void validate() const {
    MEMBOUND_EXPECTS(vocab >= 1 && hidden >= 1 && intermediate >= 1 && layers >= 1 && max_positions >= 1, config_error,
                     "llm::decoder_spec: vocab ", vocab, ", hidden ", hidden, ", intermediate ", intermediate, ", layers ",
                     layers, ", max_positions ", max_positions, ": expected all >= 1");
    MEMBOUND_EXPECTS(heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0, config_error, "llm::decoder_spec: heads ", heads,
                     " / kv_heads ", kv_heads, ", expected kv_heads >= 1 dividing heads");
    MEMBOUND_EXPECTS(head_dim >= 2 && head_dim % 2 == 0, config_error, "llm::decoder_spec: head_dim ", head_dim,
                     ", expected even >= 2");
    MEMBOUND_EXPECTS(rope_theta > 1.0 && rms_eps > 0.0f, config_error, "llm::decoder_spec: rope_theta ", rope_theta,
                     " and rms_eps ", rms_eps, ", expected > 1 and > 0");
  }
  /// Parameters in all (the LM head counted once when tied).
  index_t parameters() const noexcept {
    const index_t attn = hidden * head_dim * (2 * heads + 2 * kv_heads), mlp = 3 * hidden * intermediate;
    return layers * (attn + mlp + 2 * hidden) + vocab * hidden * (tie_embeddings ? 1 : 2) + hidden;
  }
  /// The shape of a checkpoint's config (llama-compatible: no biases, no q/k norm, default RoPE,
  /// no sliding window). @throws config_error naming the unsupported option.
  static decoder_spec from(const io::model_config& c) {
    MEMBOUND_EXPECTS(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm && !c.sliding_window &&
                         c.rope.type == io::rope_config::kind::standard,
                     config_error, "llm::decoder_spec: the ", c.model_type,
                     " config uses biases, q/k norms, a sliding window or scaled RoPE, which trainable_model does not train");
    decoder_spec s;
    s.vocab = c.vocab_size, s.hidden = c.hidden_size, s.intermediate = c.intermediate_size, s.layers = c.num_layers;
    s.heads = c.num_heads, s.kv_heads = c.num_kv_heads, s.head_dim = c.head_dim, s.max_positions = c.max_position_embeddings;
    s.rope_theta = c.rope.theta, s.rms_eps = static_cast<float>(c.rms_norm_eps), s.tie_embeddings = c.tie_word_embeddings;
    s.validate();
    return s;
  }
  /// config.json of this shape, as transformers' LlamaConfig writes it (f32 weights).
  nlohmann::json config_json() const {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", vocab},
            {"hidden_size", hidden},
            {"intermediate_size", intermediate},
            {"num_hidden_layers", layers},
            {"num_attention_heads", heads},
            {"num_key_value_heads", kv_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_positions},
            {"rms_norm_eps", rms_eps},
            {"rope_theta", rope_theta},
            {"hidden_act", "silu"},
            {"attention_bias", false},
            {"mlp_bias", false},
            {"tie_word_embeddings", tie_embeddings},
            {"torch_dtype", "float32"}};
  }
};

/// What a retention gate plugs into `trainable_model` (see the file comment). h is the layer's
/// pre-attention RMSNorm output (B T, C), log_beta and d_log_beta are (B,G,T); `backward` must add
/// (not write) its d h into dh.
struct retention_hook {
  virtual ~retention_hook() = default;
  virtual void forward(index_t layer, view<const float> h, view<float> log_beta) = 0;
  virtual void backward(index_t layer, view<const float> h, view<const float> d_log_beta, view<float> dh) = 0;
};

/// A Llama decoder with parameters, gradients and a forward/backward pass; see the file comment.
class trainable_model {
public:
  /// A freshly initialised model: matrices and the embedding N(0, 0.02) (transformers'
  /// initializer_range), the residual outputs o_proj and down_proj scaled by 1/sqrt(2 layers) as
  /// GPT-2 and llm.c do, norm scales 1. The normal draws come from a counter-based generator
  /// (splitmix64 + Box-Muller), so the weights are the same on every platform for a seed.
  /// @throws config_error for an invalid spec.
  explicit trainable_model(const decoder_spec& spec, std::uint64_t seed = 0) : spec_(spec) {
    spec_.validate();
    build();
    std::uint64_t counter = seed * 0x9e3779b97f4a7c15ull + 0x1234567ull;
    const float resid = 1.0f / std::sqrt(2.0f * static_cast<float>(spec_.layers));
    for (std::size_t i = 0; i < p_.size(); ++i) {
      auto& e = p_[i];
      if (e.value.rank() != 2) continue; // norm scales stay 1
      const bool residual = e.name.find("o_proj") != std::string::npos || e.name.find("down_proj") != std::string::npos;
      const float stdv = 0.02f * (residual ? resid : 1.0f);
      for (float& w : e.value.span()) w = stdv * normal(counter);
    }
  }

  /// Loads the f32, bf16 or f16 tensors of an HF folder written by `save` (or any llama-compatible
  /// checkpoint small enough to train; tensors it does not train, such as old `inv_freq` buffers,
  /// are ignored). @throws config_error for an unsupported config; lookup_error naming a missing
  /// tensor; shape_error naming a tensor of another shape; format_error or io_error for unreadable
  /// files.
  static trainable_model load(const std::filesystem::path& dir) {
    const io::model_config cfg = io::load_model_config(dir / "config.json");
    trainable_model m(decoder_spec::from(cfg), 0);
    m.p_.load(dir / "model.safetensors", /*strict=*/false);
    return m;
  }

  /// Writes `dir`/config.json and `dir`/model.safetensors (F32), creating `dir`.
  /// @throws io_error when a file cannot be written.
  void save(const std::filesystem::path& dir) const {
    std::filesystem::create_directories(dir);
    {
      std::ofstream f(dir / "config.json");
      f << spec_.config_json().dump(2) << '\n';
      MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::trainable_model::save: cannot write ", (dir / "config.json").string());
    }
    p_.save(dir / "model.safetensors", {{"format", "pt"}});
  }

  const decoder_spec& spec() const noexcept { return spec_; }
  nn::parameters& parameters() noexcept { return p_; }
  const nn::parameters& parameters() const noexcept { return p_; }

  /// Freezes every parameter whose name contains `part` ("" freezes all): backward skips their
  /// weight gradients (the GEMMs too) and leaves their grad untouched. Returns how many matched.
  std::size_t freeze(std::string_view part, bool frozen = true) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < p_.size(); ++i)
      if (p_[i].name.find(part) != std::string::npos) {
        frozen_[i] = frozen;
        ++n;
      }
    return n;
  }
  /// Whether a parameter is frozen. @throws lookup_error naming an unknown parameter.
  bool frozen(std::string_view name) const {
    std::size_t i = 0;
    while (i < p_.size() && p_[i].name != name) ++i;
    MEMBOUND_EXPECTS(i < p_.size(), lookup_error, "llm::trainable_model: no parameter named \"", name, "\"");
    return frozen_[i];
  }

  /// Allocates activations for batches of up to B sequences of up to T tokens.
  /// @throws config_error when T exceeds max_positions.
  void reserve(index_t batch, index_t tokens) {
    MEMBOUND_EXPECTS(batch >= 1 && tokens >= 1 && tokens <= spec_.max_positions, config_error,
                     "llm::trainable_model::reserve: batch ", batch, " x ", tokens, " tokens, expected >= 1 and tokens <= ",
                     spec_.max_positions);
    if (batch * tokens <= cap_rows_ && tokens <= cap_t_ && batch <= cap_b_) return;
    cap_b_ = std::max(cap_b_, batch), cap_t_ = std::max(cap_t_, tokens), cap_rows_ = cap_b_ * cap_t_;
    const index_t n = cap_rows_, C = spec_.hidden, HD = spec_.heads * spec_.head_dim, GD = spec_.kv_heads * spec_.head_dim,
                  I = spec_.intermediate, V = spec_.vocab;
    acts_.assign(static_cast<std::size_t>(spec_.layers), {});
    for (auto& a : acts_) {
      a.x = array<float>({n, C}, uninitialized);    // (N,C)
      a.h1 = array<float>({n, C}, uninitialized);   // (N,C)
      a.q = array<float>({n, HD}, uninitialized);   // (N,H D)
      a.k = array<float>({n, GD}, uninitialized);   // (N,G D)
      a.v = array<float>({n, GD}, uninitialized);   // (N,G D)
      a.att = array<float>({n, HD}, uninitialized); // (N,H D)
      a.lse = array<float>({n * spec_.heads}, uninitialized); // (B,H,T)
      a.lb = array<float>({n * spec_.kv_heads}, uninitialized); // (B,G,T)
      a.xm = array<float>({n, C}, uninitialized);   // (N,C)
      a.h2 = array<float>({n, C}, uninitialized);   // (N,C)
      a.g = array<float>({n, I}, uninitialized);    // (N,I)
      a.u = array<float>({n, I}, uninitialized);    // (N,I)
      a.m = array<float>({n, I}, uninitialized);    // (N,I)
    }
    x_out_ = array<float>({n, C}, uninitialized);   // (N,C)
    hf_ = array<float>({n, C}, uninitialized);      // (N,C)
    logits_ = array<float>({n, V}, uninitialized);  // (N,V)
    dx_ = array<float>({n, C}, uninitialized);      // (N,C)
    dh_ = array<float>({n, C}, uninitialized);      // (N,C)
    dq_ = array<float>({n, HD}, uninitialized);     // (N,H D)
    datt_ = array<float>({n, HD}, uninitialized);   // (N,H D)
    dk_ = array<float>({n, GD}, uninitialized);     // (N,G D)
    dv_ = array<float>({n, GD}, uninitialized);     // (N,G D)
    dg_ = array<float>({n, I}, uninitialized);      // (N,I)
    du_ = array<float>({n, I}, uninitialized);      // (N,I)
    dm_ = array<float>({n, I}, uninitialized);      // (N,I)
    dlb_ = array<float>({n * spec_.kv_heads}, uninitialized); // (B,G,T)
  }

  /// Forward over B sequences of T token ids (row-major (B,T)); returns the logits (B T, V), valid
  /// until the next forward. With a hook, every layer's attention carries the retention bias.
  /// @throws shape_error when ids.size() != B T; lookup_error for an id outside [0, V);
  /// config_error for T > max_positions.
  view<const float> forward(std::span<const std::int64_t> ids, index_t batch, index_t tokens, retention_hook* hook = nullptr) {
    MEMBOUND_EXPECTS(batch >= 1 && tokens >= 1 && static_cast<index_t>(ids.size()) == batch * tokens, shape_error,
                     "llm::trainable_model::forward: ", ids.size(), " ids for a batch of ", batch, " x ", tokens);
    reserve(batch, tokens);
    b_ = batch, t_ = tokens, hook_ = hook;
    ids_.assign(ids.begin(), ids.end());
    const index_t n = batch * tokens, H = spec_.heads, G = spec_.kv_heads;
    make_rope(tokens);
    embed_.forward(ids, rows(acts_[0].x, n));
    for (index_t l = 0; l < spec_.layers; ++l) {
      auto& a = acts_[static_cast<std::size_t>(l)];
      const auto& L = layers_[static_cast<std::size_t>(l)];
      const auto x = rows(a.x, n), h1 = rows(a.h1, n), q = rows(a.q, n), k = rows(a.k, n), v = rows(a.v, n);
      L.in.forward(x, h1);
      cpu::gemm(view<const float>(h1), view<const float>(L.wq).transpose(), q); // (N,H D)
      cpu::gemm(view<const float>(h1), view<const float>(L.wk).transpose(), k); // (N,G D)
      cpu::gemm(view<const float>(h1), view<const float>(L.wv).transpose(), v); // (N,G D)
      rotate(q, H, false);
      rotate(k, G, false);
      const view<float> lb = hook != nullptr ? heads_view(a.lb, G) : view<float>();
      if (hook != nullptr) hook->forward(l, h1, lb);
      attention_.forward(as4(q, H), as4(k, G), as4(v, G), as4(rows(a.att, n), H), heads_view(a.lse, H), att_ws_,
                         view<const float>(lb));
      const auto xm = rows(a.xm, n);
      copy_rows(x, xm);
      cpu::gemm(view<const float>(rows(a.att, n)), view<const float>(L.wo).transpose(), xm, 1.0f, 1.0f); // (N,C)
      const auto h2 = rows(a.h2, n), g = rows(a.g, n), u = rows(a.u, n), m = rows(a.m, n);
      L.post.forward(xm, h2);
      cpu::gemm(view<const float>(h2), view<const float>(L.wg).transpose(), g); // (N,I)
      cpu::gemm(view<const float>(h2), view<const float>(L.wu).transpose(), u); // (N,I)
      nn::detail::for_row_chunks(n, [&](index_t r0, index_t r1) {
        nn::swiglu_forward<float>(g.slice(0, r0, r1).span(), u.slice(0, r0, r1).span(), m.slice(0, r0, r1).span());
      });
      const auto next = l + 1 < spec_.layers ? rows(acts_[static_cast<std::size_t>(l + 1)].x, n) : rows(x_out_, n);
      copy_rows(xm, next);
      cpu::gemm(view<const float>(m), view<const float>(L.wd).transpose(), next, 1.0f, 1.0f); // (N,C)
    }
    final_.forward(rows(x_out_, n), rows(hf_, n));
    cpu::gemm(view<const float>(rows(hf_, n)), view<const float>(lm_head_).transpose(), rows(logits_, n)); // (N,V)
    return rows(logits_, n);
  }

  /// Mean cross-entropy of the last forward's logits against `targets` (B T ids; a negative target
  /// is ignored, as PyTorch's ignore_index), and its gradient into the model's dlogits buffer, ready
  /// for `backward(dlogits())`. With `weights` (B T values >= 0, or empty for all ones) the mean is
  /// weighted: sum_r w_r l_r / sum_r w_r over the counted targets (e.g. answer tokens of a retrieval
  /// task weighted up). @throws shape_error (also when every target is ignored or weighted 0),
  /// lookup_error (as nn::cross_entropy), config_error for a negative or non-finite weight.
  float cross_entropy(std::span<const std::int64_t> targets, std::span<const float> weights = {}) {
    const index_t n = b_ * t_, V = spec_.vocab;
    MEMBOUND_EXPECTS(static_cast<index_t>(targets.size()) == n, shape_error, "llm::trainable_model::cross_entropy: ",
                     targets.size(), " targets for ", n, " rows");
    MEMBOUND_EXPECTS(weights.empty() || static_cast<index_t>(weights.size()) == n, shape_error,
                     "llm::trainable_model::cross_entropy: ", weights.size(), " weights for ", n, " rows");
    dlogits_.resize(static_cast<std::size_t>(n * V));
    double total = 0.0; // sum of the counted targets' weights, in row order
    for (std::size_t r = 0; r < targets.size(); ++r) {
      const std::int64_t y = targets[r];
      MEMBOUND_EXPECTS(y < V, lookup_error, "llm::trainable_model::cross_entropy: target ", y, " outside [0, ", V, ")");
      const float w = weights.empty() ? 1.0f : weights[r];
      MEMBOUND_EXPECTS(std::isfinite(w) && w >= 0.0f, config_error, "llm::trainable_model::cross_entropy: weight ", w,
                       " of row ", r, ", expected a finite value >= 0");
      if (y >= 0) total += static_cast<double>(w);
    }
    MEMBOUND_EXPECTS(total > 0.0, shape_error, "llm::trainable_model::cross_entropy: every target is ignored or weighted 0");
    row_loss_.resize(static_cast<std::size_t>(n));
    nn::detail::for_row_chunks(n, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const std::int64_t y = targets[static_cast<std::size_t>(r)];
        float* d = dlogits_.data() + r * V;
        row_loss_[static_cast<std::size_t>(r)] = 0.0;
        if (y < 0) {
          std::fill(d, d + V, 0.0f);
          continue;
        }
        // one row of nn::cross_entropy (targets checked above: it cannot throw here), scaled by w / total
        const double w = weights.empty() ? 1.0 : static_cast<double>(weights[static_cast<std::size_t>(r)]);
        const view<const float> z(logits_.data() + r * V, {1, V});
        row_loss_[static_cast<std::size_t>(r)] =
            w * static_cast<double>(nn::cross_entropy<float>(z, std::span<const std::int64_t>(&y, 1), view<float>(d, {1, V})));
        const float scale = static_cast<float>(w / total);
        for (index_t j = 0; j < V; ++j) d[j] *= scale;
      }
    });
    double loss = 0.0;
    for (const double l : row_loss_) loss += l; // in row order: the same for any thread count
    return static_cast<float>(loss / total);
  }
  /// The logits (B T, V) of the last forward.
  view<const float> logits() const { return view<const float>(logits_.data(), {b_ * t_, spec_.vocab}); }
  /// dL/dlogits (B T, V) written by `cross_entropy`; a caller may also fill it itself (e.g. a KL
  /// loss against a teacher) before `backward`.
  view<float> dlogits() {
    dlogits_.resize(static_cast<std::size_t>(b_ * t_ * spec_.vocab));
    return view<float>(dlogits_.data(), {b_ * t_, spec_.vocab});
  }

  /// Backward of the last forward from dL/dlogits (B T, V): gradients accumulate (+=) into every
  /// parameter that is not frozen. @throws shape_error for dlogits of another shape.
  void backward(view<const float> dlogits) {
    const index_t n = b_ * t_, H = spec_.heads, G = spec_.kv_heads;
    MEMBOUND_EXPECTS(n > 0 && dlogits.rank() == 2 && dlogits.extent(0) == n && dlogits.extent(1) == spec_.vocab &&
                         dlogits.stride(1) == 1,
                     shape_error, "llm::trainable_model::backward: dlogits must be (", n, ",", spec_.vocab,
                     ") with contiguous rows, after a forward");
    const auto dx = rows(dx_, n), dh = rows(dh_, n);
    weight_grad(lm_index_, dlogits, view<const float>(rows(hf_, n)), lm_grad_); // (V,C)
    cpu::gemm(dlogits, view<const float>(lm_head_), dh);                                                           // (N,C)
    final_.backward(rows(x_out_, n), dh, dx);
    for (index_t l = spec_.layers - 1; l >= 0; --l) {
      auto& a = acts_[static_cast<std::size_t>(l)];
      const auto& L = layers_[static_cast<std::size_t>(l)];
      const auto xm = rows(a.xm, n), h2 = rows(a.h2, n), g = rows(a.g, n), u = rows(a.u, n), m = rows(a.m, n);
      const auto dg = rows(dg_, n), du = rows(du_, n), dm = rows(dm_, n);
      // MLP: x'' = x' + m Wd^T, m = swiglu(h2 Wg^T, h2 Wu^T)
      weight_grad(L.iwd, dx, m, L.gwd);
      cpu::gemm(view<const float>(dx), view<const float>(L.wd), dm); // (N,I)
      nn::detail::for_row_chunks(n, [&](index_t r0, index_t r1) {
        nn::swiglu_backward<float>(g.slice(0, r0, r1).span(), u.slice(0, r0, r1).span(), dm.slice(0, r0, r1).span(),
                                   dg.slice(0, r0, r1).span(), du.slice(0, r0, r1).span());
      });
      weight_grad(L.iwg, dg, h2, L.gwg);
      weight_grad(L.iwu, du, h2, L.gwu);
      cpu::gemm(view<const float>(dg), view<const float>(L.wg), dh);             // (N,C)
      cpu::gemm(view<const float>(du), view<const float>(L.wu), dh, 1.0f, 1.0f); // (N,C)
      L.post.backward(xm, dh, dx, /*accumulate=*/true); // dx = dL/dx'
      // attention: x' = x + att Wo^T
      const auto att = rows(a.att, n), datt = rows(datt_, n), dq = rows(dq_, n), dk = rows(dk_, n), dv = rows(dv_, n);
      weight_grad(L.iwo, dx, att, L.gwo);
      cpu::gemm(view<const float>(dx), view<const float>(L.wo), datt); // (N,H D)
      const view<const float> lb = hook_ != nullptr ? view<const float>(heads_view(a.lb, G)) : view<const float>();
      const view<float> dlb = hook_ != nullptr ? heads_view(dlb_, G) : view<float>();
      attention_.backward(as4(rows(a.q, n), H), as4(rows(a.k, n), G), as4(rows(a.v, n), G), as4(att, H),
                          heads_view(a.lse, H), as4(datt, H), as4(dq, H), as4(dk, G), as4(dv, G), att_ws_, lb, dlb);
      rotate(dq, H, true);
      rotate(dk, G, true);
      const auto h1 = rows(a.h1, n);
      weight_grad(L.iwq, dq, h1, L.gwq);
      weight_grad(L.iwk, dk, h1, L.gwk);
      weight_grad(L.iwv, dv, h1, L.gwv);
      cpu::gemm(view<const float>(dq), view<const float>(L.wq), dh);             // (N,C)
      cpu::gemm(view<const float>(dk), view<const float>(L.wk), dh, 1.0f, 1.0f); // (N,C)
      cpu::gemm(view<const float>(dv), view<const float>(L.wv), dh, 1.0f, 1.0f); // (N,C)
      if (hook_ != nullptr) hook_->backward(l, h1, view<const float>(dlb), dh);
      L.in.backward(rows(a.x, n), dh, dx, /*accumulate=*/true); // dx = dL/dx
    }
    if (!frozen_[embed_index_]) embed_.backward(ids_, dx);
  }

  /// The last forward's pre-attention activations of layer l (B T, C) (what a retention gate reads).
  view<const float> attention_input(index_t l) const {
    MEMBOUND_EXPECTS(l >= 0 && l < spec_.layers, lookup_error, "llm::trainable_model: layer ", l, " outside [0, ", spec_.layers, ")");
    return view<const float>(acts_[static_cast<std::size_t>(l)].h1.data(), {b_ * t_, spec_.hidden});
  }

private:
  struct layer {
    nn::rms_norm in, post;
    view<float> wq, wk, wv, wo, wg, wu, wd;
    view<float> gwq, gwk, gwv, gwo, gwg, gwu, gwd;
    std::size_t iwq = 0, iwk = 0, iwv = 0, iwo = 0, iwg = 0, iwu = 0, iwd = 0; // parameter indices
  };
  struct activations {
    array<float> x, h1, q, k, v, att, lse, lb, xm, h2, g, u, m;
  };

  static float normal(std::uint64_t& counter) noexcept {
    const auto next = [&] {
      std::uint64_t z = (counter += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    const double u1 = (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53, u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

  void build() {
    const index_t C = spec_.hidden, V = spec_.vocab, HD = spec_.heads * spec_.head_dim, GD = spec_.kv_heads * spec_.head_dim,
                  I = spec_.intermediate;
    const auto mat = [&](const std::string& name, index_t r, index_t c, view<float>& w, view<float>& g, std::size_t& idx) {
      idx = p_.size();
      w = p_.add(name, {r, c});
      g = p_.grad(name);
    };
    const auto norm = [&](const std::string& name) {
      nn::rms_norm r;
      r.weight = p_.add(name, {C});
      r.grad_weight = p_.grad(name);
      std::fill(r.weight.span().begin(), r.weight.span().end(), 1.0f);
      r.eps = spec_.rms_eps;
      return r;
    };
    mat("model.embed_tokens.weight", V, C, embed_.weight, embed_.grad_weight, embed_index_);
    layers_.resize(static_cast<std::size_t>(spec_.layers));
    for (index_t l = 0; l < spec_.layers; ++l) {
      auto& L = layers_[static_cast<std::size_t>(l)];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      L.in = norm(p + "input_layernorm.weight");
      mat(p + "self_attn.q_proj.weight", HD, C, L.wq, L.gwq, L.iwq);
      mat(p + "self_attn.k_proj.weight", GD, C, L.wk, L.gwk, L.iwk);
      mat(p + "self_attn.v_proj.weight", GD, C, L.wv, L.gwv, L.iwv);
      mat(p + "self_attn.o_proj.weight", C, HD, L.wo, L.gwo, L.iwo);
      L.post = norm(p + "post_attention_layernorm.weight");
      mat(p + "mlp.gate_proj.weight", I, C, L.wg, L.gwg, L.iwg);
      mat(p + "mlp.up_proj.weight", I, C, L.wu, L.gwu, L.iwu);
      mat(p + "mlp.down_proj.weight", C, I, L.wd, L.gwd, L.iwd);
    }
    final_ = norm("model.norm.weight");
    if (spec_.tie_embeddings) {
      lm_head_ = embed_.weight, lm_grad_ = embed_.grad_weight, lm_index_ = embed_index_;
    } else {
      mat("lm_head.weight", V, C, lm_head_, lm_grad_, lm_index_);
    }
    frozen_.assign(p_.size(), false);
    attention_.scale = 1.0f / std::sqrt(static_cast<float>(spec_.head_dim));
  }

  /// gw (out,in) += dY^T X. oneDNN's sgemm runs these long-K products about 10% faster with the
  /// wider side as its columns (704 x 256 x 8192: 110 against 122 GFLOP/s on machine B), so a
  /// matrix with more rows than columns is formed as X^T dY (in,out) and added transposed.
  void weight_grad(std::size_t idx, view<const float> dy, view<const float> x, view<float> gw) {
    if (frozen_[idx]) return;
    const index_t out = gw.extent(0), in = gw.extent(1);
    if (out <= in) {
      cpu::gemm(dy.transpose(), x, gw, 1.0f, 1.0f);
      return;
    }
    if (wt_.size() < out * in) wt_ = array<float>({out * in}, uninitialized); // (in,out) scratch
    const view<float> t(wt_.data(), {in, out});
    cpu::gemm(x.transpose(), dy, t); // (in,out) = X^T dY
    nn::detail::for_row_chunks(out, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r)
        for (index_t c = 0; c < in; ++c) gw(r, c) += t(c, r);
    });
  }
  static void copy_rows(view<float> x, view<float> y) {
    const index_t c = x.extent(1);
    nn::detail::for_row_chunks(x.extent(0), [&](index_t r0, index_t r1) { std::copy_n(x.data() + r0 * c, (r1 - r0) * c, y.data() + r0 * c); });
  }
  static view<float> rows(array<float>& a, index_t n) { return view<float>(a.data(), {n, a.extent(1)}); }
  view<float> as4(view<float> x, index_t heads) const { return view<float>(x.data(), {b_, t_, heads, spec_.head_dim}); }
  view<float> heads_view(array<float>& a, index_t heads) const { return view<float>(a.data(), {b_, heads, t_}); }

  void make_rope(index_t tokens) {
    if (rope_t_ == tokens) return;
    io::rope_config rc;
    rc.theta = spec_.rope_theta;
    const auto f = rope_frequencies::make(rc, spec_.head_dim);
    const index_t half = spec_.head_dim / 2;
    cos_ = array<float>({tokens, half}, uninitialized);  // (T,D/2)
    sin_ = array<float>({tokens, half}, uninitialized);  // (T,D/2)
    nsin_ = array<float>({tokens, half}, uninitialized); // (T,D/2)
    std::vector<std::int32_t> pos(static_cast<std::size_t>(tokens));
    for (index_t t = 0; t < tokens; ++t) pos[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t);
    f.table(pos, cos_.view(), sin_.view());
    for (index_t i = 0; i < sin_.size(); ++i) nsin_[i] = -sin_[i];
    rope_t_ = tokens;
  }
  /// RoPE on rows (B T, heads D), sequence by sequence; `inverse` rotates back (the backward).
  void rotate(view<float> x, index_t heads, bool inverse) const {
    const index_t ld = x.stride(0);
    const auto c = cos_.cview();
    const auto s = inverse ? nsin_.cview() : sin_.cview();
    nn::detail::for_row_chunks(b_ * t_, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1;) { // runs of rows inside one sequence
        const index_t t = r % t_, len = std::min(r1 - r, t_ - t);
        apply_rope(x.data() + r * ld, len, heads, ld, c.slice(0, t, t + len), s.slice(0, t, t + len));
        r += len;
      }
    });
  }

  decoder_spec spec_;
  nn::parameters p_;
  std::vector<bool> frozen_;
  nn::embedding embed_;
  std::size_t embed_index_ = 0, lm_index_ = 0;
  std::vector<layer> layers_;
  nn::rms_norm final_;
  view<float> lm_head_, lm_grad_;
  nn::causal_attention attention_;
  array<float> att_ws_, cos_, sin_, nsin_, wt_;
  index_t rope_t_ = 0;

  index_t cap_b_ = 0, cap_t_ = 0, cap_rows_ = 0, b_ = 0, t_ = 0;
  retention_hook* hook_ = nullptr;
  std::vector<std::int64_t> ids_;
  std::vector<activations> acts_;
  array<float> x_out_, hf_, logits_, dx_, dh_, dq_, datt_, dk_, dv_, dg_, du_, dm_, dlb_;
  std::vector<float> dlogits_;
  std::vector<double> row_loss_;
};

} // namespace llm
} // namespace v0_1
} // namespace membound
