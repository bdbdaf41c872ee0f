// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief TRIM-KV gate distillation (Bui et al. 2025, "Cache What Lasts", section 1.6 of the
/// research note): the backbone frozen, one `kv::retention_gate` per layer trained jointly so that
/// the model with retention-gated attention (logit(t, i) += (t - i) log beta_i per KV head) stays
/// close to the full model while the soft cache stays under a capacity M:
///     L = KL(p_full || p_gated) + CE(p_gated, next token) + lambda_cap L_cap,
///     L_cap = mean over (layer, sequence, KV head) of (1/T) sum_{t=1..T} (1/t) max(0, S_t - M),
///     S_t = sum_{i <= t} beta_i^(t - i)      (the "soft cache size" at step t, positions 1-based)
/// (the paper's form of the hinge; forward KL from the frozen teacher, i.e. the same model run
/// without gates, as `base_loss = fwkl`).
///  - `llm::trainable_gates`: the gates of every layer as a `retention_hook` for
///    `trainable_model`, their parameters under the official names
///    (model.layers.<l>.self_attn.retention_gate.{linear1.weight, linear1.bias, linear2.weight,
///    bias}) that `kv::retention_gate` and `llm::eviction` read; the capacity loss is added in
///    the hook (forward: its value; backward: its gradient joins d log beta from attention).
///  - `llm::capacity_loss`: L_cap of one (B,G,T) log beta and its gradient, any element type
///    (double for the finite-difference test).
///  - `llm::gate_distiller`: one optimiser step (teacher forward, gated forward, the three
///    losses, backward through the frozen model into the gates, AdamW on the gates).
/// Cost of a step: two forwards and one backward of the model (no weight gradients: frozen) plus
/// the gates' 2 N (C I + I G) flops three times and the capacity sums' O(B G T^2) per layer.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "membound/backend/cpu/exp.hpp"
#include "membound/core/error.hpp"
#include "membound/kv/retention_gate.hpp"
#include "membound/llm/trainable_model.hpp"
#include "membound/nn/loss.hpp"
#include "membound/nn/optim.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// L_cap of log beta (B,G,T) (see the file comment) averaged over the B G rows; when `grad` is not
/// empty, adds `weight` dL_cap / d log beta into it (same shape). Float rows use the SIMD exp; any
/// other type plain loops. O(B G T^2). @throws shape_error for mismatched shapes, config_error for
/// M < 0.
template <class T>
T capacity_loss(view<const T> log_beta, T capacity, view<T> grad = view<T>(), T weight = T(1)) {
  MEMBOUND_EXPECTS(log_beta.rank() == 3, shape_error, "llm::capacity_loss: log_beta has rank ", log_beta.rank(),
                   ", expected (B,G,T)");
  MEMBOUND_EXPECTS(capacity >= 0, config_error, "llm::capacity_loss: M = ", capacity, ", expected >= 0");
  const index_t B = log_beta.extent(0), G = log_beta.extent(1), nt = log_beta.extent(2);
  const bool want = grad.data() != nullptr;
  MEMBOUND_EXPECTS(!want || (grad.rank() == 3 && grad.extent(0) == B && grad.extent(1) == G && grad.extent(2) == nt),
                   shape_error, "llm::capacity_loss: grad must be (", B, ",", G, ",", nt, ")");
  if (B * G * nt == 0) return T(0);
  std::vector<T> e(static_cast<std::size_t>(nt));
  const T rows = static_cast<T>(B * G), tt = static_cast<T>(nt);
  T total = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t g = 0; g < G; ++g) {
      T row = 0;
      for (index_t t = 0; t < nt; ++t) {
        for (index_t i = 0; i <= t; ++i) e[static_cast<std::size_t>(i)] = static_cast<T>(t - i) * log_beta(b, g, i);
        const std::span<T> es(e.data(), static_cast<std::size_t>(t + 1));
        T s = 0;
        if constexpr (std::is_same_v<T, float>) {
          cpu::exp(std::span<const float>(es), es);
          s = cpu::sum(std::span<const float>(es));
        } else {
          for (auto& x : es) s += (x = std::exp(x));
        }
        if (s <= capacity) continue;
        const T w = T(1) / (static_cast<T>(t + 1) * tt * rows); // 1/t (1-based), 1/T, mean over rows
        row += w * (s - capacity);
        if (want)
          for (index_t i = 0; i < t; ++i) grad(b, g, i) += weight * w * static_cast<T>(t - i) * es[static_cast<std::size_t>(i)];
      }
      total += row;
    }
  return total;
}

/// Settings of gate distillation. An aggregate.
struct distill_config {
  float capacity = 128.0f;    ///< M, the soft cache budget per KV head (tokens)
  float lambda_cap = 1.0f;    ///< weight of L_cap (the paper's retention_weight)
  bool kl = true;             ///< forward KL to the teacher
  bool ntp = true;            ///< next-token cross-entropy
  index_t intermediate = 512; ///< the gates' hidden width
  float bias_init = 10.0f;    ///< the head bias at start (beta = sigmoid(10) ~ 1: no forgetting)
  float lr = 2e-4f, weight_decay = 0.01f, beta1 = 0.9f, beta2 = 0.999f; ///< AdamW on the gates (paper p17)
  float clip = 1.0f;          ///< gradient-norm clip of the gates (0: none)

  /// @throws config_error naming the bad setting.
  void validate() const {
    MEMBOUND_EXPECTS(capacity >= 0 && lambda_cap >= 0 && intermediate >= 1 && lr >= 0 && clip >= 0, config_error,
                     "llm::distill_config: capacity ", capacity, ", lambda_cap ", lambda_cap, ", intermediate ", intermediate,
                     ", lr ", lr, ", clip ", clip, ": expected >= 0 (intermediate >= 1)");
    MEMBOUND_EXPECTS(kl || ntp || lambda_cap > 0, config_error, "llm::distill_config: every loss term is off");
  }
};

/// Every layer's retention gate as a hook of `trainable_model`; see the file comment.
class trainable_gates final : public retention_hook {
public:
  /// Gates for a model of shape `spec`, initialised as kv::retention_gate::make (seed l for layer l
  /// offset by `seed`). @throws config_error.
  trainable_gates(const decoder_spec& spec, const distill_config& cfg, unsigned seed = 0) : cfg_(cfg) {
    cfg_.validate();
    for (index_t l = 0; l < spec.layers; ++l)
      gates_.push_back(kv::retention_gate::make(p_, prefix(l), spec.hidden, spec.kv_heads, cfg.intermediate,
                                                nn::activation::silu, cfg.bias_init, seed + static_cast<unsigned>(l)));
    layers_.resize(gates_.size());
  }

  static std::string prefix(index_t layer) { return "model.layers." + std::to_string(layer) + ".self_attn.retention_gate"; }
  nn::parameters& parameters() noexcept { return p_; }
  const nn::parameters& parameters() const noexcept { return p_; }
  index_t layers() const noexcept { return static_cast<index_t>(gates_.size()); }
  /// Writes the gates (F32, official names) to a safetensors file that `llm::eviction` /
  /// `kv::retention_gate` load. @throws io_error.
  void save(const std::filesystem::path& file) const { p_.save(file, {{"format", "pt"}, {"trim_kv", "retention_gate rg"}}); }
  /// Loads gates saved by `save`. @throws lookup_error / shape_error naming a tensor that does not fit.
  void load(const std::filesystem::path& file) { p_.load(file, /*strict=*/true); }

  /// Whether the hook adds the capacity loss (on by default; off for a plain gated forward).
  bool with_capacity = true;
  /// The capacity loss of the last forward, summed over layers (already weighted by 1 / layers).
  double last_capacity_loss() const noexcept {
    double s = 0;
    for (const auto& L : layers_) s += L.cap;
    return s;
  }
  /// log beta (B,G,T) of layer l from the last forward.
  view<const float> log_beta(index_t l) const {
    const auto& L = layers_.at(static_cast<std::size_t>(l));
    return view<const float>(L.lb.data(), {L.b, L.g, L.t});
  }

  void forward(index_t layer, view<const float> h, view<float> lb) override {
    auto& g = gates_.at(static_cast<std::size_t>(layer));
    auto& L = layers_[static_cast<std::size_t>(layer)];
    const index_t n = h.extent(0), I = g.linear1.out_features(), G = g.kv_heads();
    L.b = lb.extent(0), L.g = lb.extent(1), L.t = lb.extent(2);
    MEMBOUND_EXPECTS(L.g == G && L.b * L.t == n, shape_error, "llm::trainable_gates: log_beta (", L.b, ",", L.g, ",", L.t,
                     ") for ", n, " rows and ", G, " KV heads");
    grow(L.z1, n * I), grow(L.h1, n * I), grow(L.z2, n * G), grow(L.lb, n * G), grow(L.dcap, n * G);
    const auto z1 = make(L.z1, n, I), h1 = make(L.h1, n, I), z2 = make(L.z2, n, G);
    g.linear1.forward(h, z1, h1);
    g.linear2.forward(view<const float>(h1), z2, z2);
    for (index_t r = 0; r < n; ++r) {
      const index_t b = r / L.t, t = r % L.t;
      for (index_t k = 0; k < G; ++k) {
        const double v = static_cast<double>(z2(r, k)) + g.bias(k);
        const float y = static_cast<float>(std::min(v, 0.0) - std::log1p(std::exp(-std::abs(v)))); // logsigmoid
        lb(b, k, t) = y;
        L.lb[static_cast<std::size_t>((b * G + k) * L.t + t)] = y;
      }
    }
    L.cap = 0;
    std::fill(L.dcap.begin(), L.dcap.begin() + n * G, 0.0f);
    if (with_capacity && cfg_.lambda_cap > 0) {
      const float per_layer = 1.0f / static_cast<float>(gates_.size());
      L.cap = static_cast<double>(per_layer) *
              static_cast<double>(capacity_loss<float>(log_beta(layer), cfg_.capacity, make3(L.dcap, L.b, G, L.t), per_layer));
    }
  }

  void backward(index_t layer, view<const float> h, view<const float> dlb, view<float> dh) override {
    auto& g = gates_.at(static_cast<std::size_t>(layer));
    auto& L = layers_[static_cast<std::size_t>(layer)];
    const index_t n = h.extent(0), I = g.linear1.out_features(), G = g.kv_heads();
    grow(L.dz2, n * G), grow(L.dh1, n * I), grow(L.dz1, n * I), grow(L.dx, n * h.extent(1));
    const auto z2 = make(L.z2, n, G), dz2 = make(L.dz2, n, G);
    const float lam = cfg_.lambda_cap;
    for (index_t r = 0; r < n; ++r) {
      const index_t b = r / L.t, t = r % L.t;
      for (index_t k = 0; k < G; ++k) {
        const float d = dlb(b, k, t) + lam * L.dcap[static_cast<std::size_t>((b * G + k) * L.t + t)];
        const double v = static_cast<double>(z2(r, k)) + g.bias(k);
        const float s = static_cast<float>(1.0 / (1.0 + std::exp(v))); // d logsigmoid(v) / dv = sigmoid(-v)
        dz2(r, k) = d * s;
      }
    }
    view<float> gb = p_.grad(prefix(layer) + ".bias");
    for (index_t r = 0; r < n; ++r)
      for (index_t k = 0; k < G; ++k) gb(k) += dz2(r, k);
    const auto h1 = make(L.h1, n, I), z1 = make(L.z1, n, I), dh1 = make(L.dh1, n, I), dz1 = make(L.dz1, n, I);
    const auto dx = make(L.dx, n, h.extent(1));
    g.linear2.backward(view<const float>(h1), view<const float>(z2), view<const float>(dz2), dh1, dz2);
    g.linear1.backward(h, view<const float>(z1), view<const float>(dh1), dx, dz1);
    for (index_t r = 0; r < n; ++r)
      for (index_t c = 0; c < h.extent(1); ++c) dh(r, c) += dx(r, c);
  }

private:
  struct layer_state {
    index_t b = 0, g = 0, t = 0;
    std::vector<float> z1, h1, z2, lb, dcap, dz2, dh1, dz1, dx;
    double cap = 0;
  };
  static void grow(std::vector<float>& v, index_t n) {
    if (static_cast<index_t>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
  }
  static view<float> make(std::vector<float>& v, index_t r, index_t c) { return view<float>(v.data(), {r, c}); }
  static view<float> make3(std::vector<float>& v, index_t a, index_t b, index_t c) { return view<float>(v.data(), {a, b, c}); }

  distill_config cfg_;
  nn::parameters p_;
  std::vector<kv::retention_gate> gates_;
  std::vector<layer_state> layers_;
};

/// The loss terms of one distillation step.
struct distill_record {
  index_t step = 0;
  float kl = 0, ntp = 0, capacity = 0, total = 0; ///< total = kl + ntp + lambda_cap capacity (terms off count 0)
  float grad_norm = 0;
};

/// Trains `gates` on a frozen `model`; see the file comment.
class gate_distiller {
public:
  /// Freezes every parameter of `model`. @throws config_error for bad settings.
  gate_distiller(trainable_model& model, trainable_gates& gates, const distill_config& cfg)
      : m_(model), gates_(gates), cfg_(cfg) {
    cfg_.validate();
    m_.freeze("");
    adam_.resize(gates_.parameters().size());
  }

  /// One step on B sequences of T ids (row-major) and their targets (negative: ignored).
  distill_record step(std::span<const std::int64_t> ids, std::span<const std::int64_t> targets, index_t batch, index_t tokens) {
    const index_t n = batch * tokens, V = m_.spec().vocab;
    // Teacher: the same model without gates.
    const auto t_logits = m_.forward(ids, batch, tokens);
    teacher_.assign(t_logits.data(), t_logits.data() + n * V);
    gates_.parameters().zero_grad();
    gates_.with_capacity = cfg_.lambda_cap > 0;
    m_.forward(ids, batch, tokens, &gates_);
    distill_record r;
    r.step = steps_;
    const auto dlog = m_.dlogits(); // (N,V)
    if (cfg_.ntp) {
      r.ntp = m_.cross_entropy(targets); // writes dlogits
    } else {
      std::fill(dlog.data(), dlog.data() + n * V, 0.0f);
    }
    if (cfg_.kl) {
      kl_grad_.resize(static_cast<std::size_t>(n * V));
      const view<float> dq(kl_grad_.data(), {n, V});
      r.kl = nn::kl_categorical<float>(view<const float>(teacher_.data(), {n, V}), m_.logits(), view<float>(), dq);
      for (index_t i = 0; i < n * V; ++i) dlog.data()[i] += kl_grad_[static_cast<std::size_t>(i)];
    }
    r.capacity = static_cast<float>(gates_.last_capacity_loss());
    r.total = r.kl + r.ntp + cfg_.lambda_cap * r.capacity;
    m_.backward(dlog); // the hook of the last forward (the gates) runs inside
    std::vector<std::span<float>> grads;
    for (std::size_t i = 0; i < gates_.parameters().size(); ++i) grads.push_back(gates_.parameters()[i].grad.span());
    r.grad_norm = nn::clip_grad_norm(std::span<const std::span<float>>(grads), cfg_.clip > 0 ? cfg_.clip : 1e30f);
    const nn::adamw mat{.lr = cfg_.lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = 1e-8f, .weight_decay = cfg_.weight_decay};
    const nn::adamw vec{.lr = cfg_.lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = 1e-8f, .weight_decay = 0.0f};
    for (std::size_t i = 0; i < gates_.parameters().size(); ++i) {
      auto& e = gates_.parameters()[i];
      (e.value.rank() >= 2 ? mat : vec).step(e.value.span(), e.grad.span(), adam_[i]);
    }
    ++steps_;
    return r;
  }

private:
  trainable_model& m_;
  trainable_gates& gates_;
  distill_config cfg_;
  std::vector<nn::adamw::state> adam_;
  std::vector<float> teacher_, kl_grad_;
  index_t steps_ = 0;
};

} // namespace llm
} // namespace v0_1
} // namespace membound
