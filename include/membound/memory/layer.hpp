// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `memory::layer<Module>`: the ATLAS / Titans memory layer around H memory modules, one per
/// head (ATLAS Sec. 5.1, Titans Sec. 4.4), with its weights loaded from safetensors by name and its
/// state carried across calls (streaming).
///
/// For x (T, d_model), per head h with width d (C = H d):
///   u = x W^T for u in {q, k, v}       W (C, d_model)      "q_proj.weight", "k_proj.weight", "v_proj.weight"
///   u = silu(causal depthwise conv_K(u)) w (C, K), K = 4   "q_conv.weight", ...   (flash-linear-attention's
///                                                            ShortConvolution; omitted when K = 0)
///   q_h, k_h = q_h / ||q_h||, k_h / ||k_h||                (l2 normalisation, eps 1e-6)
///   alpha_t = sigmoid(x_t . w_a + b_a), eta_t = eta_max sigmoid(x_t . w_e + b_e),
///   theta_t = sigmoid(x_t . w_m + b_m) (momentum optimisers), gamma_t = sigmoid(x_t . w_g + b_g) (windows > 1),
///                                       each (H, d_model) + (H)   "alpha_proj.*", "eta_proj.*", "theta_proj.*", "gamma_proj.*"
///   o_h = memory_h(q_h, k_h, v_h; gates)                 the module (module.hpp), learned initial
///                                                          weights "memory.weight<l>" shared by the heads
///   o_h = rmsnorm(o_h) * silu(x W_g,h^T)                  "o_norm.weight" (d), "g_proj.weight" (C, d_model)
///   y = o W_o^T                                           "o_proj.weight" (d_model, C)
/// plus "features.coefficients" (p + 1) for the polynomial feature map (its learnable a_i).
///
/// Threads: heads run in parallel (OpenMP), each head's products single-threaded, and the output
/// projection in fixed blocks of rows, so results are identical for any thread count.
/// State (`state_bytes`): each head's memory state and the last K - 1 projected q, k, v rows.
/// Cost per token: 2 d_model (4 C + gates) flops of projections, 2 C d_model of output
/// projection, plus the modules'.

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/backend/cpu/norm.hpp"
#include "membound/memory/module.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

/// Shape of a memory layer.
struct layer_config {
  index_t d_model = 0;     ///< model width
  index_t heads = 1;       ///< H
  index_t head_dim = 0;    ///< d (keys, queries and values of one head)
  index_t conv_kernel = 4; ///< K of the short causal convolutions; 0 turns them off
  float eta_max = 1.0f;    ///< the learning-rate gate's upper bound
};

/// The memory layer. @tparam Module a memory::module (e.g. memory::atlas).
template <class Module>
class layer {
 public:
  using arch_type = typename Module::arch_type;
  using rule_type = typename Module::rule_type;
  using features_type = typename Module::features_type;
  using optimizer_type = typename Module::optimizer_type;
  static constexpr bool has_poly = std::is_base_of_v<polynomial_features, features_type>;

  /// Registers every weight (zero), then draws them as torch.nn.Linear would (uniform +-1/sqrt(fan_in),
  /// seeded), with gate biases set so that alpha ~ 0.99, eta ~ 0.1 eta_max, theta ~ 0.9, gamma ~ 1
  /// at x = 0, RMSNorm weights 1 and conv weights of a depthwise identity-plus-noise kernel.
  /// @throws config_error for non-positive sizes or anything the modules reject.
  layer(layer_config cfg, arch_type arch = {}, rule_type rule = {}, features_type phi = {}, optimizer_type opt = {},
        module_options options = {}, std::uint64_t seed = 0)
      : cfg_(cfg), arch_(arch), rule_(rule), phi_(std::move(phi)), opt_(opt), mopt_(options) {
    MEMBOUND_EXPECTS(cfg.d_model >= 1 && cfg.heads >= 1 && cfg.head_dim >= 1 && cfg.conv_kernel >= 0, config_error,
                     "memory::layer: d_model = ", cfg.d_model, ", heads = ", cfg.heads, ", head_dim = ", cfg.head_dim,
                     ", conv_kernel = ", cfg.conv_kernel, "; expected positive sizes and K >= 0");
    MEMBOUND_EXPECTS(std::isfinite(cfg.eta_max) && cfg.eta_max > 0.0f, config_error, "memory::layer: eta_max = ", cfg.eta_max,
                     ", expected > 0");
    const index_t C = channels(), d = cfg.d_model, H = cfg.heads;
    for (const char* n : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "g_proj.weight"}) p_.add(n, {C, d});
    if (cfg.conv_kernel > 0)
      for (const char* n : {"q_conv.weight", "k_conv.weight", "v_conv.weight"}) p_.add(n, {C, cfg.conv_kernel});
    for (const std::string& g : gate_names()) {
      p_.add(g + "_proj.weight", {H, d});
      p_.add(g + "_proj.bias", {H});
    }
    p_.add("o_norm.weight", {cfg.head_dim});
    p_.add("o_proj.weight", {d, C});
    if constexpr (has_poly) p_.add("features.coefficients", {static_cast<index_t>(phi_.effective_coefficients().size())});
    // One module gives the memory's weight shapes and its seeded initial weights.
    Module probe(cfg.head_dim, cfg.head_dim, arch_, rule_, phi_, opt_, mopt_);
    if constexpr (!std::is_same_v<arch_type, matrix_memory>) probe.init_random(seed ^ 0x9e3779b97f4a7c15ull);
    for (std::size_t l = 0; l < probe.layer_shapes().size(); ++l) {
      view<float> w = p_.add("memory.weight" + std::to_string(l), {probe.layer_shapes()[l].rows, probe.layer_shapes()[l].cols});
      std::copy_n(probe.weight(l).data(), w.size(), w.data());
    }
    init(seed);
  }

  index_t channels() const noexcept { return cfg_.heads * cfg_.head_dim; }
  const layer_config& config() const noexcept { return cfg_; }
  /// The weights by name (write them, then call `rebuild()`; or `load`).
  nn::parameters& parameters() noexcept { return p_; }
  const nn::parameters& parameters() const noexcept { return p_; }
  /// Head h's memory module.
  Module& head(index_t h) { return heads_.at(static_cast<std::size_t>(h)); }

  /// Loads every weight by name (strict: a missing, misshapen or unexpected tensor throws
  /// lookup_error / shape_error naming it), then rebuilds the heads (state reset).
  void load(const io::safetensors& file) {
    p_.load(file, true);
    rebuild();
  }
  void load(const std::filesystem::path& path) { load(io::safetensors::open(path)); }

  /// Re-creates the heads from the current weights (feature coefficients, initial memory
  /// weights) and clears all state.
  void rebuild() {
    features_type phi = phi_;
    if constexpr (has_poly) {
      const view<const float> a = p_.value("features.coefficients");
      phi.coefficients.assign(a.data(), a.data() + a.size());
    }
    heads_.clear();
    for (index_t h = 0; h < cfg_.heads; ++h) {
      heads_.emplace_back(cfg_.head_dim, cfg_.head_dim, arch_, rule_, phi, opt_, mopt_);
      Module& m = heads_.back();
      for (std::size_t l = 0; l < m.layer_shapes().size(); ++l) {
        const view<const float> w = p_.value("memory.weight" + std::to_string(l));
        std::copy_n(w.data(), w.size(), m.weight(l).data());
      }
      m.set_initial();
    }
    clear_conv();
  }

  /// Clears every head's memory and the convolution history.
  void reset() {
    for (Module& m : heads_) m.reset();
    clear_conv();
  }

  /// Bytes of the state carried between calls.
  std::size_t state_bytes() const noexcept {
    std::size_t b = 0;
    for (const Module& m : heads_) b += m.state_bytes();
    return b + static_cast<std::size_t>(3 * conv_n_ * channels()) * sizeof(float);
  }

  /// y (T, d_model) for x (T, d_model), continuing from the state of earlier calls.
  /// @throws shape_error on wrong extents; config_error for non-finite x.
  void forward(view<const float> x, view<float> y) {
    MEMBOUND_EXPECTS(x.rank() == 2 && y.rank() == 2 && x.extent(1) == cfg_.d_model && y.extent(1) == cfg_.d_model &&
                         y.extent(0) == x.extent(0),
                     shape_error, "memory::layer::forward: x is (", x.extent(0), ",", x.rank() == 2 ? x.extent(1) : -1,
                     "), y is (", y.extent(0), ",", y.rank() == 2 ? y.extent(1) : -1, "), expected both (T,", cfg_.d_model, ")");
    detail::check_finite(x, "x");
    const index_t T = x.extent(0), C = channels(), H = cfg_.heads, K = cfg_.conv_kernel;
    if (T == 0) return;
    const index_t hist = K > 0 ? K - 1 : 0;
    // Per-call buffers: (hist + T, C) for q, k, v (rows [0, hist) hold the previous call's last
    // projections, zeros at the start), the conv outputs, gates (4, H, T), the head outputs.
    for (array<float>* a : {&u_[0], &u_[1], &u_[2]})
      if (a->rank() != 2 || a->extent(0) != hist + T || a->extent(1) != C) {
        array<float> n({hist + T, C});
        if (a->rank() == 2 && a->extent(1) == C && hist > 0) std::copy_n(a->data(), hist * C, n.data()); // history rows lead
        *a = std::move(n);
      }
    for (array<float>* a : {&c_[0], &c_[1], &c_[2], &o_})
      if (a->rank() != 2 || a->extent(0) != T || a->extent(1) != C) *a = array<float>({T, C}, uninitialized);
    if (gates_.rank() != 3 || gates_.extent(2) != T) gates_ = array<float>({4, H, T}, uninitialized);
    const view<const float> xs = x;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (index_t h = 0; h < H; ++h) run_head(h, xs, T);
    conv_n_ = std::min<index_t>(hist, conv_n_ + T);
    // Keep the last `hist` projections at the front for the next call.
    if (hist > 0)
      for (array<float>* a : {&u_[0], &u_[1], &u_[2]}) std::copy_n(a->data() + T * C, hist * C, a->data());
    // y = o W_o^T in fixed blocks of rows (the same products for any thread count).
    const view<const float> wo = p_.value("o_proj.weight");
    const index_t blocks = (T + out_block - 1) / out_block;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (index_t b = 0; b < blocks; ++b) {
      const index_t r0 = b * out_block, r1 = std::min(T, r0 + out_block);
      cpu::gemm(o_.cview().slice(0, r0, r1), wo.transpose(), y.slice(0, r0, r1));
    }
  }

 private:
  static constexpr index_t out_block = 64;

  void clear_conv() {
    for (array<float>& a : u_) a.fill(0.0f);
    conv_n_ = 0;
  }

  std::vector<std::string> gate_names() const {
    std::vector<std::string> g = {"alpha", "eta"};
    if (optimizer_type::has_momentum) g.push_back("theta");
    if (rule_.window() > 1) g.push_back("gamma");
    return g;
  }

  void init(std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    auto fill = [&](const std::string& name, float bound) {
      std::uniform_real_distribution<float> u(-bound, bound);
      for (float& v : p_.value(name).span()) v = u(gen);
    };
    const float inv_d = 1.0f / std::sqrt(static_cast<float>(cfg_.d_model));
    for (const char* n : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "g_proj.weight"}) fill(n, inv_d);
    fill("o_proj.weight", 1.0f / std::sqrt(static_cast<float>(channels())));
    if (cfg_.conv_kernel > 0)
      for (const char* n : {"q_conv.weight", "k_conv.weight", "v_conv.weight"}) {
        fill(n, 0.1f);
        view<float> w = p_.value(n);
        for (index_t c = 0; c < w.extent(0); ++c) w(c, cfg_.conv_kernel - 1) += 1.0f; // near the identity
      }
    // Gate biases: sigmoid(b) = 0.99 (alpha), 0.1 (eta), 0.9 (theta), 1 - 1e-3 (gamma).
    const std::vector<std::pair<std::string, float>> bias = {{"alpha", 4.6f}, {"eta", -2.2f}, {"theta", 2.2f}, {"gamma", 6.9f}};
    for (const auto& [g, b] : bias) {
      if (!p_.contains(g + "_proj.weight")) continue;
      fill(g + "_proj.weight", 0.1f * inv_d);
      for (float& v : p_.value(g + "_proj.bias").span()) v = b;
    }
    for (float& v : p_.value("o_norm.weight").span()) v = 1.0f;
    if constexpr (has_poly) {
      const std::vector<float> a = phi_.effective_coefficients();
      std::copy(a.begin(), a.end(), p_.value("features.coefficients").data());
    }
    rebuild();
  }

  /// Everything of head h: its projections, convolutions, normalisation, gates, memory, output
  /// norm and gate, into o_ columns [h d, (h+1) d).
  void run_head(index_t h, const view<const float>& x, index_t T) {
    const index_t dh = cfg_.head_dim, K = cfg_.conv_kernel, hist = K > 0 ? K - 1 : 0, c0 = h * dh, c1 = c0 + dh;
    const char* proj[3] = {"q_proj.weight", "k_proj.weight", "v_proj.weight"};
    const char* conv[3] = {"q_conv.weight", "k_conv.weight", "v_conv.weight"};
    for (int s = 0; s < 3; ++s) {
      const view<const float> w = p_.value(proj[s]).slice(0, c0, c1); // (d, d_model)
      view<float> u = u_[s].view().slice(0, hist, hist + T).slice(1, c0, c1);
      cpu::gemm(x, w.transpose(), u);
      view<float> c = c_[s].view().slice(1, c0, c1);
      if (K > 0) {
        const view<const float> cw = p_.value(conv[s]);
        const view<const float> ua = u_[s].cview().slice(1, c0, c1); // rows [0, hist + T)
        for (index_t t = 0; t < T; ++t)
          for (index_t j = 0; j < dh; ++j) {
            float acc = 0.0f;
            for (index_t i = 0; i < K; ++i) acc += cw(c0 + j, i) * ua(t + i, j);
            c(t, j) = acc;
          }
        for (index_t t = 0; t < T; ++t)
          cpu::silu(std::span<const float>(&c(t, 0), static_cast<std::size_t>(dh)), std::span<float>(&c(t, 0), static_cast<std::size_t>(dh)));
      } else {
        detail::copy_rows(view<const float>(u), c);
      }
      if (s < 2) // l2-normalise q and k per head
        for (index_t t = 0; t < T; ++t) {
          double ss = 0.0;
          for (index_t j = 0; j < dh; ++j) ss += double(c(t, j)) * c(t, j);
          const float inv = static_cast<float>(1.0 / std::sqrt(ss + 1e-6));
          for (index_t j = 0; j < dh; ++j) c(t, j) *= inv;
        }
    }
    // Gates (token order), sigmoid of a per-head linear function of x.
    auto gate_of = [&](const std::string& g, int slot, float scale) -> std::span<const float> {
      const view<const float> w = p_.value(g + "_proj.weight"), b = p_.value(g + "_proj.bias");
      float* out = &gates_(slot, h, 0);
      for (index_t t = 0; t < T; ++t) {
        double z = b(h);
        for (index_t j = 0; j < cfg_.d_model; ++j) z += double(w(h, j)) * x(t, j);
        out[t] = static_cast<float>(scale / (1.0 + std::exp(-z)));
      }
      return {out, static_cast<std::size_t>(T)};
    };
    gates g;
    g.alpha = gate_of("alpha", 0, 1.0f);
    g.eta = gate_of("eta", 1, cfg_.eta_max);
    if constexpr (optimizer_type::has_momentum) g.theta = gate_of("theta", 2, 1.0f);
    if (rule_.window() > 1) g.gamma = gate_of("gamma", 3, 1.0f);
    view<float> o = o_.view().slice(1, c0, c1);
    heads_[static_cast<std::size_t>(h)].forward(c_[0].cview().slice(1, c0, c1), c_[1].cview().slice(1, c0, c1),
                                                c_[2].cview().slice(1, c0, c1), g, o);
    // o = rmsnorm(o) * silu(x W_g^T)
    const view<const float> nw = p_.value("o_norm.weight");
    view<float> gx = c_[0].view().slice(1, c0, c1); // q is no longer needed: reuse it for the gate
    cpu::gemm(x, p_.value("g_proj.weight").slice(0, c0, c1).transpose(), gx);
    for (index_t t = 0; t < T; ++t) {
      double ss = 0.0;
      for (index_t j = 0; j < dh; ++j) ss += double(o(t, j)) * o(t, j);
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / double(dh) + 1e-6));
      for (index_t j = 0; j < dh; ++j) {
        const float gv = gx(t, j);
        o(t, j) = o(t, j) * inv * nw(j) * (gv / (1.0f + std::exp(-gv)));
      }
    }
  }

  layer_config cfg_;
  arch_type arch_;
  rule_type rule_;
  features_type phi_;
  optimizer_type opt_;
  module_options mopt_;
  nn::parameters p_;
  std::vector<Module> heads_;
  array<float> u_[3], c_[3], o_, gates_;
  index_t conv_n_ = 0; ///< rows of real history in u_ (< K - 1 only at the start)
};

} // namespace memory
} // namespace v0_1
} // namespace membound
