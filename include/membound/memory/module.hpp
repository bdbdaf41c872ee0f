// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `memory::module<Arch, Rule, FeatureMap, Optimizer>`: a test-time-learned associative
/// memory (Titans, Miras, ATLAS arXiv 2505.23735) as one point of the design space
/// architecture x attentional bias and window x feature map x inner optimiser.
///
/// For each token t of a sequence (q_t, k_t, v_t) and gates (alpha_t, eta_t, theta_t, gamma^(t)):
///   g_t = grad_M sum_{i in window(t)} gamma_i^(t) l_i(M)  at the gradient point      (rule.hpp)
///   M_t = optimiser step from M_{t-1} with g_t                                          (optimizer.hpp)
///   y_t = M_t(phi(q_t))          (or M_{t-1}(phi(q_t)) with read_order::before_update)
/// Two execution modes, different algorithms for chunk > 1:
///  - `recurrent`: the gradient point of step t is M_{t-1} (the exact online rule).
///  - `chunked` with chunk size b: every step of a chunk takes its gradient at M_{t0}, the memory
///    after the previous chunk (ATLAS Sec. 3.3, Titans Eq. 16-18). Defined as that token loop with
///    a frozen gradient point; computed chunk-parallel: one batched forward/backward of the chunk
///    (plus the c - 1 tokens before it) at M_{t0}, per-token gradients kept as rank-1 factors,
///    the decay/momentum recurrences as b x b coefficient matrices combined with the banded window
///    gate matrix, and the reads as masked matrix products (no per-token weight copies); Muon
///    computes every S_t of the chunk first and runs Newton-Schulz on all of them in parallel.
///    b = 1 equals the recurrent mode to float round-off.
/// The memory state (weights, momentum, the last c - 1 tokens of the window) is carried across
/// `forward` calls, so a long sequence can be streamed in pieces; each call starts a new chunk.
///
/// Threads: none of its own; products use `cpu::gemm` (see its note on thread counts). The Muon
/// chunk path runs Newton-Schulz over the chunk's tokens with OpenMP, each token independently, so
/// its results do not depend on the thread count. Allocation: buffers grow to the largest chunk
/// or window seen and are then reused.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "membound/backend/cpu/gemm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/memory/architecture.hpp"
#include "membound/memory/feature_map.hpp"
#include "membound/memory/optimizer.hpp"
#include "membound/memory/rule.hpp"
#include "membound/nn/optim.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace membound {
inline namespace v0_1 {
namespace memory {

/// A per-token scalar gate: one constant, or one value per token of the `forward` call. It refers
/// to the caller's values (a span), which must outlive the call; binding a temporary vector is
/// refused at compile time.
struct gate {
  float value = 1.0f;
  std::span<const float> per_token; ///< (T) when not empty
  gate() = default;
  gate(float v) : value(v) {}                                    // NOLINT: implicit by design
  gate(std::span<const float> s) : per_token(s) {}               // NOLINT
  gate(const std::vector<float>& s) : per_token(s) {}            // NOLINT
  gate(std::vector<float>&&) = delete; ///< a gate only refers to its values: keep the vector alive
  float at(index_t t) const { return per_token.empty() ? value : per_token[static_cast<std::size_t>(t)]; }
};

/// The window gates gamma_i^(t) of the Omega rule: a constant; one value per token i, the same for
/// every step t that sees token i (`per_token`, (T)); or a band (T,c) with band(t, j) =
/// gamma_{t-j}^(t), j = 0 the current token (each token needs c gates, ATLAS Sec. 3.2).
/// Per-token values of earlier calls are kept with the window; a band needs a finite window.
struct window_gate {
  float value = 1.0f;
  std::span<const float> per_token;
  view<const float> band;
  window_gate() = default;
  window_gate(float v) : value(v) {}                          // NOLINT
  window_gate(std::span<const float> s) : per_token(s) {}     // NOLINT
  window_gate(const std::vector<float>& s) : per_token(s) {}  // NOLINT
  window_gate(std::vector<float>&&) = delete;
  window_gate(view<const float> b) : band(b) {}               // NOLINT
};

/// The gates of one `forward` call. Ranges (checked, config_error otherwise): alpha in [0,1],
/// eta >= 0, theta in [0,1], gamma in [0,1], all finite. Defaults: no decay, unit step, no momentum.
struct gates {
  gate alpha = 1.0f; ///< retention (1 keeps the memory)
  gate eta = 1.0f;   ///< inner learning rate
  gate theta = 0.0f; ///< momentum decay (momentum and muon only)
  window_gate gamma; ///< window gates
};

/// When the read y_t sees the memory: after token t's update (ATLAS, the baseline of
/// ../research baselines) or before it (Titans' retrieval "without update").
enum class read_order { after_update, before_update };

/// Which algorithm `forward` runs (see the file comment).
enum class execution { recurrent, chunked };

/// Settings of a module besides its four policies.
struct module_options {
  execution mode = execution::recurrent;
  index_t chunk = 64;       ///< b, for execution::chunked
  read_order read = read_order::after_update;
  std::uint64_t seed = 0;   ///< initial weights of deep memories (matrix memory starts at zero)
};

namespace detail {
template <class A> inline constexpr bool is_matrix_memory = std::is_same_v<A, matrix_memory>;

inline void check_finite(view<const float> x, const char* what) {
  for (index_t t = 0; t < x.extent(0); ++t) {
    bool bad = false; // a vectorisable scan first, the exact location only on failure
    if (x.stride(1) == 1) {
      const float* r = &x(t, 0);
      for (index_t j = 0; j < x.extent(1); ++j) bad |= !(std::fabs(r[j]) <= std::numeric_limits<float>::max());
    } else {
      for (index_t j = 0; j < x.extent(1); ++j) bad |= !std::isfinite(x(t, j));
    }
    if (!bad) continue;
    for (index_t j = 0; j < x.extent(1); ++j)
      MEMBOUND_EXPECTS(std::isfinite(x(t, j)), config_error, "memory::module: ", what, "(", t, ",", j, ") is ", x(t, j),
                       ", expected a finite value");
  }
}
inline void check_gate(float g, float lo, float hi, const char* what, index_t t) {
  MEMBOUND_EXPECTS(std::isfinite(g) && g >= lo && g <= hi, config_error, "memory::module::forward: gate ", what,
                   " at token ", t, " is ", g, ", expected a finite value in [", lo, ",", hi, "]");
}
} // namespace detail

/// A test-time-learned memory. See the file comment for the recurrence and the two modes.
/// @tparam Arch matrix_memory, mlp_memory or gated_mlp_memory (architecture.hpp)
/// @tparam Rule dot_product, delta, omega or global_least_squares (rule.hpp)
/// @tparam Features identity_features, elu_plus_one, polynomial_features, exp_taylor_features
/// @tparam Opt gd, momentum, muon or implicit_gd (optimizer.hpp)
/// Shapes: q, k (T,d_k), v, y (T,d_v); phi maps d_k to D = `feature_dim()`.
/// Cost per token: recurrent O(c F) with F the forward flops of one token (2 sum rows x cols);
/// chunked O((b + c) F) per chunk for the gradients plus O(b (b + c) (D + H + d_v)) for the
/// masked reads; Muon adds one Newton-Schulz per token and weight matrix.
template <memory_architecture Arch, inner_rule Rule, feature_map Features = identity_features,
          inner_optimizer Opt = gd>
class module {
 public:
  using arch_type = Arch;
  using rule_type = Rule;
  using features_type = Features;
  using optimizer_type = Opt;
  static constexpr bool has_momentum = Opt::has_momentum;
  static constexpr bool is_muon = std::is_same_v<Opt, muon>;
  static constexpr bool is_implicit = std::is_same_v<Opt, implicit_gd>;
  static_assert(!is_implicit || (detail::is_matrix_memory<Arch> && Rule::bias == attentional_bias::l2),
                "implicit_gd (Longhorn) is defined for matrix memory with the l2 bias only");

  /// @throws config_error for d_k, d_v < 1, an architecture that does not fit (D, d_v), a feature
  /// map past its bound, a window < 1, chunk < 1, or implicit_gd with a window other than 1.
  module(index_t d_k, index_t d_v, Arch arch = {}, Rule rule = {}, Features phi = {}, Opt opt = {},
         module_options options = {})
      : arch_(arch), rule_(rule), phi_(std::move(phi)), opt_(opt), opt_s_(options), dk_(d_k), dv_(d_v) {
    MEMBOUND_EXPECTS(d_k >= 1 && d_v >= 1, config_error, "memory::module: d_k = ", d_k, ", d_v = ", d_v, ", expected >= 1");
    MEMBOUND_EXPECTS(rule_.window() >= 1, config_error, "memory::module: window c is ", rule_.window(), ", expected >= 1");
    MEMBOUND_EXPECTS(opt_s_.chunk >= 1, config_error, "memory::module: chunk is ", opt_s_.chunk, ", expected >= 1");
    MEMBOUND_EXPECTS(!is_implicit || rule_.window() == 1, config_error,
                     "memory::module: implicit_gd needs window 1, got ", rule_.window());
    if constexpr (is_muon) {
      MEMBOUND_EXPECTS(opt_.steps >= 0, config_error, "memory::module: muon steps is ", opt_.steps, ", expected >= 0");
      MEMBOUND_EXPECTS(opt_.eps > 0.0f, config_error, "memory::module: muon eps is ", opt_.eps, ", expected > 0");
    }
    D_ = phi_.dim(d_k);
    phi_.prepare(d_k);
    arch_.validate(D_, d_v);
    shapes_ = arch_.layers(D_, d_v);
    for (const layer_shape& s : shapes_) {
      w_.emplace_back(array<float>({s.rows, s.cols}));
      if constexpr (has_momentum) s_.emplace_back(array<float>({s.rows, s.cols}));
    }
    if constexpr (!detail::is_matrix_memory<Arch>) init_random(options.seed);
    w0_ = w_;
  }

  index_t key_dim() const noexcept { return dk_; }
  index_t value_dim() const noexcept { return dv_; }
  index_t feature_dim() const noexcept { return D_; }
  const std::vector<layer_shape>& layer_shapes() const noexcept { return shapes_; }
  const Arch& architecture() const noexcept { return arch_; }
  const Rule& rule() const noexcept { return rule_; }
  const Features& features() const noexcept { return phi_; }
  const Opt& optimizer() const noexcept { return opt_; }
  module_options& options() noexcept { return opt_s_; }

  /// The current weight matrix l (rows_l, cols_l); writable (e.g. to load learned initial weights,
  /// then call `set_initial()`).
  view<float> weight(std::size_t l) { return w_.at(l).view(); }
  view<const float> weight(std::size_t l) const { return w_.at(l).cview(); }
  /// The momentum matrix S of layer l (zero-size view for optimisers without momentum).
  view<const float> momentum_state(std::size_t l) const {
    if constexpr (has_momentum) return s_.at(l).cview();
    else return {};
  }

  /// Weights drawn as torch.nn.Linear's default: uniform in +-1/sqrt(cols) (std::mt19937_64 seeded
  /// by `seed`), and recorded as the initial state.
  void init_random(std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    for (std::size_t l = 0; l < w_.size(); ++l) {
      const float b = 1.0f / std::sqrt(static_cast<float>(shapes_[l].cols));
      std::uniform_real_distribution<float> u(-b, b);
      for (float& x : w_[l].view().span()) x = u(gen);
    }
    w0_ = w_;
  }
  /// The current weights become the state `reset()` returns to.
  void set_initial() { w0_ = w_; }
  /// Back to the initial weights, zero momentum, empty window history.
  void reset() {
    w_ = w0_;
    for (auto& s : s_) std::fill_n(s.data(), s.size(), 0.0f);
    hist_n_ = 0;
  }

  /// Bytes of the state carried between calls: weights, momentum, and the window history (features,
  /// values and per-token gates of the last c - 1 tokens; every token so far for the global rule).
  std::size_t state_bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& w : w_) b += w.size() * sizeof(float);
    for (const auto& s : s_) b += s.size() * sizeof(float);
    b += static_cast<std::size_t>(hist_n_) * static_cast<std::size_t>(D_ + dv_ + 1) * sizeof(float);
    return b;
  }

  /// Processes T tokens: writes y_t for each and advances the state.
  /// @param q (T,d_k), @param k (T,d_k), @param v (T,d_v), @param y (T,d_v); any strides.
  /// @throws shape_error on mismatched extents; config_error for a non-finite input, a gate out of
  /// range or of the wrong length, or a gamma band with a window of the wrong width.
  void forward(view<const float> q, view<const float> k, view<const float> v, const gates& g, view<float> y) {
    check_inputs(q, k, v, g, y);
    const index_t T = q.extent(0);
    const index_t block = opt_s_.mode == execution::chunked ? opt_s_.chunk : std::max<index_t>(opt_s_.chunk, 1);
    for (index_t b0 = 0; b0 < T; b0 += block) {
      const index_t nb = std::min(block, T - b0);
      load_block(q, k, v, g, b0, nb);
      if (opt_s_.mode == execution::recurrent) recurrent_block(g, b0, nb, y);
      else if constexpr (is_muon) chunked_muon_block(g, b0, nb, y);
      else chunked_linear_block(g, b0, nb, y);
      keep_history(nb);
    }
  }

  /// y_n = M(phi(q_n)) at the current state, without writing anything (a pure read-out).
  /// @param q (N,d_k), @param y (N,d_v). @throws shape_error on mismatched extents, config_error
  /// for a non-finite query. Cost: N forward passes of one token, batched (2 N sum rows x cols flops).
  void read(view<const float> q, view<float> y) {
    MEMBOUND_EXPECTS(q.rank() == 2 && y.rank() == 2 && q.extent(1) == dk_ && y.extent(1) == dv_ && y.extent(0) == q.extent(0),
                     shape_error, "memory::module::read: q is (", q.extent(0), ",", q.rank() == 2 ? q.extent(1) : -1,
                     "), y is (", y.extent(0), ",", y.rank() == 2 ? y.extent(1) : -1, "), expected (N,", dk_, ") and (N,",
                     dv_, ")");
    detail::check_finite(q, "q");
    const index_t N = q.extent(0);
    if (N == 0) return;
    fit_rows(qphi_, N, D_, false);
    fit_rows(ybuf_, N, dv_, false);
    phi_.apply(q, qphi_.view().slice(0, 0, N));
    rcache_.fit(N, shapes_, arch_.hidden(D_));
    arch_.forward(plain_lin(), qphi_.cview().slice(0, 0, N), rcache_, ybuf_.view().slice(0, 0, N));
    detail::copy_rows(ybuf_.cview().slice(0, 0, N), y);
  }

 private:
  // ---------------------------------------------------------------- checks and buffers
  void check_inputs(const view<const float>& q, const view<const float>& k, const view<const float>& v, const gates& g,
                    const view<float>& y) const {
    MEMBOUND_EXPECTS(q.rank() == 2 && k.rank() == 2 && v.rank() == 2 && y.rank() == 2, shape_error,
                     "memory::module::forward: q, k, v, y must be rank 2 (T,d)");
    const index_t T = q.extent(0);
    MEMBOUND_EXPECTS(q.extent(1) == dk_ && k.extent(1) == dk_ && k.extent(0) == T, shape_error,
                     "memory::module::forward: q is (", T, ",", q.extent(1), "), k is (", k.extent(0), ",", k.extent(1),
                     "), expected both (T,", dk_, ")");
    MEMBOUND_EXPECTS(v.extent(0) == T && v.extent(1) == dv_ && y.extent(0) == T && y.extent(1) == dv_, shape_error,
                     "memory::module::forward: v is (", v.extent(0), ",", v.extent(1), "), y is (", y.extent(0), ",",
                     y.extent(1), "), expected both (", T, ",", dv_, ")");
    detail::check_finite(q, "q");
    detail::check_finite(k, "k");
    detail::check_finite(v, "v");
    auto check = [&](const gate& x, float lo, float hi, const char* what) {
      MEMBOUND_EXPECTS(x.per_token.empty() || static_cast<index_t>(x.per_token.size()) == T, config_error,
                       "memory::module::forward: gate ", what, " has ", x.per_token.size(), " values, expected ", T);
      for (index_t t = 0; t < (x.per_token.empty() ? 1 : T); ++t) detail::check_gate(x.at(t), lo, hi, what, t);
    };
    check(g.alpha, 0.0f, 1.0f, "alpha");
    check(g.eta, 0.0f, std::numeric_limits<float>::max(), "eta");
    check(g.theta, 0.0f, 1.0f, "theta");
    const window_gate& gm = g.gamma;
    if (gm.band.rank() == 2) {
      MEMBOUND_EXPECTS(rule_.window() != unbounded_window, config_error,
                       "memory::module::forward: a gamma band needs a finite window; use per-token gammas");
      MEMBOUND_EXPECTS(gm.band.rank() == 2 && gm.band.extent(0) == T && gm.band.extent(1) == rule_.window(), config_error,
                       "memory::module::forward: gamma band is (", gm.band.extent(0), ",",
                       gm.band.rank() == 2 ? gm.band.extent(1) : -1, "), expected (", T, ",", rule_.window(), ")");
      for (index_t t = 0; t < T; ++t)
        for (index_t j = 0; j < gm.band.extent(1); ++j) detail::check_gate(gm.band(t, j), 0.0f, 1.0f, "gamma", t);
    } else if (!gm.per_token.empty()) {
      MEMBOUND_EXPECTS(static_cast<index_t>(gm.per_token.size()) == T, config_error, "memory::module::forward: gate gamma has ",
                       gm.per_token.size(), " values, expected ", T);
      for (index_t t = 0; t < T; ++t) detail::check_gate(gm.per_token[static_cast<std::size_t>(t)], 0.0f, 1.0f, "gamma", t);
    } else {
      detail::check_gate(gm.value, 0.0f, 1.0f, "gamma", 0);
    }
  }

  /// At least `rows` rows of at least `cols` columns; returns the (rows, cols) corner.
  static view<float> fit_wide(array<float>& a, index_t rows, index_t cols) {
    if (a.rank() != 2 || a.extent(0) < rows || a.extent(1) < cols)
      a = array<float>({std::max<index_t>(rows, a.rank() == 2 ? a.extent(0) : 1), std::max<index_t>(cols, a.rank() == 2 ? a.extent(1) : 1)},
                       uninitialized);
    return a.view().slice(0, 0, rows).slice(1, 0, cols);
  }
  /// At least `rows` rows of exactly `cols` columns (contiguous rows); keeps the contents when asked.
  static void fit_rows(array<float>& a, index_t rows, index_t cols, bool keep) {
    if (a.rank() == 2 && a.extent(0) >= rows && a.extent(1) == cols) return;
    array<float> n({std::max<index_t>(rows, 2 * (a.rank() == 2 ? a.extent(0) : 0)), cols}, uninitialized);
    if (keep && a.rank() == 2 && a.extent(1) == cols) std::copy_n(a.data(), a.size(), n.data());
    a = std::move(n);
  }

  /// ext rows [0, hist_n_) hold the window history; appends the block's features, values and
  /// per-token gammas after it, and the block's query features into qphi_.
  void load_block(const view<const float>& q, const view<const float>& k, const view<const float>& v, const gates& g,
                  index_t b0, index_t nb) {
    const index_t rows = hist_n_ + nb;
    fit_rows(ext_phi_, rows, D_, true);
    fit_rows(ext_v_, rows, dv_, true);
    ext_g_.resize(static_cast<std::size_t>(std::max<index_t>(rows, static_cast<index_t>(ext_g_.size()))));
    fit_rows(qphi_, nb, D_, false);
    fit_rows(ybuf_, nb, dv_, false);
    phi_.apply(k.slice(0, b0, b0 + nb), ext_phi_.view().slice(0, hist_n_, rows));
    phi_.apply(q.slice(0, b0, b0 + nb), qphi_.view().slice(0, 0, nb));
    detail::copy_rows(v.slice(0, b0, b0 + nb), ext_v_.view().slice(0, hist_n_, rows));
    for (index_t n = 0; n < nb; ++n) {
      const window_gate& gm = g.gamma;
      ext_g_[static_cast<std::size_t>(hist_n_ + n)] =
          gm.per_token.empty() ? gm.value : gm.per_token[static_cast<std::size_t>(b0 + n)];
    }
  }

  /// Keeps the last c - 1 rows (all rows for the global rule) at the front of the ext buffers.
  void keep_history(index_t nb) {
    const index_t rows = hist_n_ + nb;
    const index_t c = rule_.window();
    const index_t keep = c == unbounded_window ? rows : std::min<index_t>(c - 1, rows);
    const index_t from = rows - keep;
    if (from > 0 && keep > 0) {
      std::copy_n(ext_phi_.data() + from * D_, keep * D_, ext_phi_.data());
      std::copy_n(ext_v_.data() + from * dv_, keep * dv_, ext_v_.data());
      std::copy_n(ext_g_.begin() + from, keep, ext_g_.begin());
    }
    hist_n_ = keep;
  }

  /// gamma_i^(t) for block token n (global index b0 + n) and ext row i.
  float gamma_of(const gates& g, index_t b0, index_t n, index_t i) const {
    const window_gate& gm = g.gamma;
    if (gm.band.rank() == 2) return gm.band(b0 + n, hist_n_ + n - i);
    return ext_g_[static_cast<std::size_t>(i)];
  }
  /// First ext row of the window of block token n.
  index_t window_begin(index_t n) const {
    const index_t r = hist_n_ + n, c = rule_.window();
    return c == unbounded_window ? 0 : std::max<index_t>(0, r - c + 1);
  }

  auto plain_lin() {
    return [this](int l, view<const float> x, view<float> out) { detail::apply_weights(w_[static_cast<std::size_t>(l)].cview(), x, out); };
  }
  auto weights_fn() const {
    return [this](int l) { return w_[static_cast<std::size_t>(l)].cview(); };
  }

  /// Forward and backward at the current weights over ext rows [i0, i1); delta_l and a_l land in
  /// gcache_. The output gradient is unscaled: e_i = y_i - v_i (l2) or -v_i (dot); rows are scaled
  /// by `scale` when given.
  void gradient_pass(index_t i0, index_t i1, const float* scale) {
    const index_t n = i1 - i0;
    gcache_.fit(n, shapes_, arch_.hidden(D_));
    fit_rows(e_, n, dv_, false);
    view<float> e = e_.view().slice(0, 0, n);
    arch_.forward(plain_lin(), ext_phi_.cview().slice(0, i0, i1), gcache_, e);
    for (index_t r = 0; r < n; ++r) {
      const float s = scale ? scale[r] : 1.0f;
      float* er = &e(r, 0);
      const float* tr = &ext_v_(i0 + r, 0);
      for (index_t j = 0; j < dv_; ++j) er[j] = Rule::bias == attentional_bias::l2 ? s * (er[j] - tr[j]) : -s * tr[j];
    }
    arch_.backward(weights_fn(), gcache_, view<const float>(e));
  }

  /// G_l (rows,cols) = delta_l^T a_l over the rows of the last gradient pass.
  void gradient_matrices() {
    fit_grads();
    for (std::size_t l = 0; l < shapes_.size(); ++l)
      cpu::gemm(view<const float>(gcache_.delta_v(l)).transpose(), view<const float>(gcache_.in_v(l)), g_[l].view());
  }
  void fit_grads() {
    if (g_.size() == shapes_.size()) return;
    g_.clear();
    for (const layer_shape& s : shapes_) g_.emplace_back(array<float>({s.rows, s.cols}, uninitialized));
  }

  float eta_at(const gates& g, index_t t, index_t ext_row) const {
    float eta = g.eta.at(t);
    if constexpr (is_implicit) {
      double sq = 0.0;
      const float* pr = &ext_phi_(ext_row, 0);
      for (index_t j = 0; j < D_; ++j) sq += double(pr[j]) * double(pr[j]);
      eta = static_cast<float>(eta / (1.0 + eta * sq));
    }
    return eta;
  }

  /// One optimiser step with the gradients in g_.
  void apply_step(float alpha, float eta, float theta) {
    if constexpr (is_muon)
      if (ns_out_.size() != shapes_.size())
        for (const layer_shape& sh : shapes_) ns_out_.emplace_back(array<float>({sh.rows, sh.cols}, uninitialized));
    for (std::size_t l = 0; l < shapes_.size(); ++l) {
      float* w = w_[l].data();
      const float* gr = g_[l].data();
      const std::size_t n = w_[l].size();
      if constexpr (is_muon) {
        float* s = s_[l].data();
        for (std::size_t i = 0; i < n; ++i) s[i] = theta * s[i] + gr[i];
        nn::newton_schulz(s_[l].cview(), ns_out_[l].view(), opt_.steps, opt_.eps, opt_.coefficients, &ns_ws_);
        const float* o = ns_out_[l].data();
        for (std::size_t i = 0; i < n; ++i) w[i] = alpha * w[i] - eta * o[i];
      } else if constexpr (has_momentum) {
        float* s = s_[l].data();
        for (std::size_t i = 0; i < n; ++i) {
          s[i] = theta * s[i] - eta * gr[i];
          w[i] = alpha * w[i] + s[i];
        }
      } else {
        for (std::size_t i = 0; i < n; ++i) w[i] = alpha * w[i] - eta * gr[i];
      }
    }
  }

  /// y (block row n) = M(phi(q_n)) at the current weights.
  void read_one(index_t n, index_t b0, view<float> y) {
    rcache_.fit(1, shapes_, arch_.hidden(D_));
    arch_.forward(plain_lin(), qphi_.cview().slice(0, n, n + 1), rcache_, ybuf_.view().slice(0, n, n + 1));
    detail::copy_rows(ybuf_.cview().slice(0, n, n + 1), y.slice(0, b0 + n, b0 + n + 1));
  }

  // ---------------------------------------------------------------- recurrent
  void recurrent_block(const gates& g, index_t b0, index_t nb, view<float> y) {
    std::vector<float>& sc = scale_;
    for (index_t n = 0; n < nb; ++n) {
      const index_t t = b0 + n, r = hist_n_ + n, i0 = window_begin(n);
      if (opt_s_.read == read_order::before_update) read_one(n, b0, y);
      sc.resize(static_cast<std::size_t>(r - i0 + 1));
      for (index_t i = i0; i <= r; ++i) sc[static_cast<std::size_t>(i - i0)] = gamma_of(g, b0, n, i);
      gradient_pass(i0, r + 1, sc.data());
      gradient_matrices();
      apply_step(g.alpha.at(t), eta_at(g, t, r), g.theta.at(t));
      if (opt_s_.read == read_order::after_update) read_one(n, b0, y);
    }
  }

  // ---------------------------------------------------------------- chunked, GD / momentum
  /// Coefficients of a chunk of nb tokens over n_ext ext rows (see the file comment):
  ///   M_n = A_n M0 + P_n S0 - sum_i K[n][i] delta_i a_i^T,  S_n = Th_n S0 - sum_i Ks[n][i] delta_i a_i^T.
  void chunk_coefficients(const gates& g, index_t b0, index_t nb, index_t n_ext) {
    cm_.assign(static_cast<std::size_t>(nb * nb), 0.0f); // c[n][m]
    sm_.assign(static_cast<std::size_t>(nb * nb), 0.0f); // s[n][m]
    A_.assign(static_cast<std::size_t>(nb), 0.0f);
    P_.assign(static_cast<std::size_t>(nb), 0.0f);
    Th_.assign(static_cast<std::size_t>(nb), 0.0f);
    double a_prev = 1.0, p_prev = 0.0, th_prev = 1.0;
    for (index_t n = 0; n < nb; ++n) {
      const index_t t = b0 + n;
      const float alpha = g.alpha.at(t), theta = g.theta.at(t), eta = eta_at(g, t, hist_n_ + n);
      const auto N = static_cast<std::size_t>(n), B = static_cast<std::size_t>(nb);
      for (index_t m = 0; m < n; ++m) {
        const auto M = static_cast<std::size_t>(m);
        if constexpr (has_momentum) {
          sm_[N * B + M] = theta * sm_[(N - 1) * B + M];
          cm_[N * B + M] = alpha * cm_[(N - 1) * B + M] + sm_[N * B + M];
        } else {
          cm_[N * B + M] = alpha * cm_[(N - 1) * B + M];
        }
      }
      sm_[N * B + N] = eta;
      cm_[N * B + N] = eta;
      if constexpr (has_momentum) {
        th_prev = theta * th_prev;
        p_prev = alpha * p_prev + th_prev;
      }
      a_prev = alpha * a_prev;
      A_[N] = static_cast<float>(a_prev);
      P_[N] = static_cast<float>(p_prev);
      Th_[N] = static_cast<float>(th_prev);
    }
    // K = c Gamma and Ks = s Gamma (nb, n_ext): Gamma[m][i] = gamma_i^(m) for i in window(m).
    K_.assign(static_cast<std::size_t>(nb * n_ext), 0.0f);
    if constexpr (has_momentum) Ks_.assign(static_cast<std::size_t>(n_ext), 0.0f);
    for (index_t m = 0; m < nb; ++m) {
      const index_t i0 = window_begin(m), i1 = hist_n_ + m;
      for (index_t i = i0; i <= i1; ++i) {
        const float gm = gamma_of(g, b0, m, i);
        if (gm == 0.0f) continue;
        for (index_t n = m; n < nb; ++n)
          K_[static_cast<std::size_t>(n * n_ext + i)] += cm_[static_cast<std::size_t>(n * nb + m)] * gm;
        if constexpr (has_momentum) Ks_[static_cast<std::size_t>(i)] += sm_[static_cast<std::size_t>((nb - 1) * nb + m)] * gm;
      }
    }
  }

  void chunked_linear_block(const gates& g, index_t b0, index_t nb, view<float> y) {
    const index_t n_ext = hist_n_ + nb;
    gradient_pass(0, n_ext, nullptr);
    chunk_coefficients(g, b0, nb, n_ext);
    // Read coefficients: row n reads M_n (after) or M_{n-1} (before; M_{-1} = M0).
    const bool after = opt_s_.read == read_order::after_update;
    view<float> rk = fit_wide(rk_, nb, n_ext);
    ra_.resize(static_cast<std::size_t>(nb));
    rp_.resize(static_cast<std::size_t>(nb));
    for (index_t n = 0; n < nb; ++n) {
      const index_t src = after ? n : n - 1;
      ra_[static_cast<std::size_t>(n)] = src < 0 ? 1.0f : A_[static_cast<std::size_t>(src)];
      rp_[static_cast<std::size_t>(n)] = src < 0 ? 0.0f : P_[static_cast<std::size_t>(src)];
      float* rr = &rk(n, 0);
      if (src < 0) std::fill_n(rr, n_ext, 0.0f);
      else std::copy_n(K_.data() + src * n_ext, n_ext, rr);
    }
    view<float> zfull = fit_wide(z_, nb, n_ext);
    view<float> tfull = fit_wide(tmp_, nb, maxdim());
    auto lin = [&](int l, view<const float> x, view<float> out) {
      const auto L = static_cast<std::size_t>(l);
      const index_t rows = out.extent(1);
      cpu::gemm(x, w_[L].cview().transpose(), out); // A_n W0 x_n (row-scaled below)
      for (index_t n = 0; n < nb; ++n) {
        const float a = ra_[static_cast<std::size_t>(n)];
        float* o = &out(n, 0);
        if (a != 1.0f)
          for (index_t j = 0; j < rows; ++j) o[j] *= a;
      }
      if constexpr (has_momentum) {
        view<float> t = tfull.slice(1, 0, rows);
        cpu::gemm(x, s_[L].cview().transpose(), t);
        for (index_t n = 0; n < nb; ++n) {
          const float p = rp_[static_cast<std::size_t>(n)];
          float* o = &out(n, 0);
          const float* tr = &t(n, 0);
          for (index_t j = 0; j < rows; ++j) o[j] += p * tr[j];
        }
      }
      view<float> z = zfull;
      cpu::gemm(x, view<const float>(gcache_.in_v(L)).transpose(), z); // (nb, n_ext) = x a^T
      for (index_t n = 0; n < nb; ++n) {
        float* zr = &z(n, 0);
        const float* kr = &rk(n, 0);
        for (index_t i = 0; i < n_ext; ++i) zr[i] *= kr[i];
      }
      cpu::gemm(view<const float>(z), view<const float>(gcache_.delta_v(L)), out, -1.0f, 1.0f);
    };
    rcache_.fit(nb, shapes_, arch_.hidden(D_));
    arch_.forward(lin, qphi_.cview().slice(0, 0, nb), rcache_, ybuf_.view().slice(0, 0, nb));
    detail::copy_rows(ybuf_.cview().slice(0, 0, nb), y.slice(0, b0, b0 + nb));
    // End state: W = A_b W + P_b S - Delta^T diag(K_last) a; S = Th_b S - Delta^T diag(Ks) a.
    const auto last = static_cast<std::size_t>(nb - 1);
    for (std::size_t l = 0; l < shapes_.size(); ++l) {
      const index_t rows = shapes_[l].rows;
      view<float> sd = fit_wide(sd_, n_ext, rows);
      view<const float> dl = gcache_.delta_v(l);
      for (index_t i = 0; i < n_ext; ++i) {
        const float kk = K_[last * static_cast<std::size_t>(n_ext) + static_cast<std::size_t>(i)];
        float* sr = &sd(i, 0);
        const float* dr = &dl(i, 0);
        for (index_t j = 0; j < rows; ++j) sr[j] = kk * dr[j];
      }
      float* w = w_[l].data();
      const std::size_t sz = w_[l].size();
      if constexpr (has_momentum) {
        const float* s = s_[l].data();
        for (std::size_t e = 0; e < sz; ++e) w[e] = A_[last] * w[e] + P_[last] * s[e];
        cpu::gemm(view<const float>(sd).transpose(), view<const float>(gcache_.in_v(l)), w_[l].view(), -1.0f, 1.0f);
        for (index_t i = 0; i < n_ext; ++i) {
          const float kk = Ks_[static_cast<std::size_t>(i)];
          float* sr = &sd(i, 0);
          const float* dr = &dl(i, 0);
          for (index_t j = 0; j < rows; ++j) sr[j] = kk * dr[j];
        }
        cpu::gemm(view<const float>(sd).transpose(), view<const float>(gcache_.in_v(l)), s_[l].view(), -1.0f, Th_[last]);
      } else {
        cpu::gemm(view<const float>(sd).transpose(), view<const float>(gcache_.in_v(l)), w_[l].view(), -1.0f, A_[last]);
      }
    }
  }
  index_t maxdim() const {
    index_t m = 0;
    for (const layer_shape& s : shapes_) m = std::max(m, s.rows);
    return m;
  }

  // ---------------------------------------------------------------- chunked, Muon
  /// Tokens whose S_n are orthogonalised together: enough to keep every thread busy, few enough
  /// that the group's matrices stay in cache. Scheduling only: results do not depend on it.
  static index_t muon_group() {
#if defined(_OPENMP)
    return std::max<index_t>(4, 2 * static_cast<index_t>(omp_get_max_threads()));
#else
    return 4;
#endif
  }

  void chunked_muon_block(const gates& g, index_t b0, index_t nb, view<float> y) {
    const index_t n_ext = hist_n_ + nb;
    gradient_pass(0, n_ext, nullptr);
    const std::size_t L = shapes_.size();
    const index_t G = std::min(nb, muon_group());
    if (chunk_s_.size() != L) chunk_s_.resize(L);
    for (std::size_t l = 0; l < L; ++l) fit_rows(chunk_s_[l], G * shapes_[l].rows, shapes_[l].cols, false);
    for (index_t g0 = 0; g0 < nb; g0 += G) {
      const index_t g1 = std::min(nb, g0 + G);
      // S_n = theta_n S_{n-1} + sum_{i in window(n)} gamma_i^(n) delta_i a_i^T from the frozen-point
      // factors; s_ carries the running (un-orthogonalised) momentum from group to group.
      for (index_t n = g0; n < g1; ++n) {
        const index_t i0 = window_begin(n), i1 = hist_n_ + n + 1, nw = i1 - i0;
        const float theta = g.theta.at(b0 + n);
        for (std::size_t l = 0; l < L; ++l) {
          const index_t rows = shapes_[l].rows, cols = shapes_[l].cols;
          view<float> sd = fit_wide(sd_, nw, rows);
          for (index_t i = i0; i < i1; ++i) {
            const float gm = gamma_of(g, b0, n, i);
            float* sr = &sd(i - i0, 0);
            const float* dr = &gcache_.delta[l](i, 0);
            for (index_t j = 0; j < rows; ++j) sr[j] = gm * dr[j];
          }
          view<float> sn = chunk_s_[l].view().slice(0, (n - g0) * rows, (n - g0 + 1) * rows);
          float* run = s_[l].data();
          for (index_t e = 0; e < rows * cols; ++e) run[e] *= theta;
          cpu::gemm(view<const float>(sd).transpose(), view<const float>(gcache_.in_v(l)).slice(0, i0, i1), s_[l].view(), 1.0f, 1.0f);
          std::copy_n(run, rows * cols, sn.data());
        }
      }
      // Newton-Schulz on the group's S_n, in place, tokens in parallel (each independent).
      for (std::size_t l = 0; l < L; ++l) {
        const index_t rows = shapes_[l].rows;
        array<float>& cs = chunk_s_[l];
        const muon o = opt_;
#if defined(_OPENMP)
#pragma omp parallel
#endif
        {
          nn::newton_schulz_workspace ws;
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
          for (index_t n = 0; n < g1 - g0; ++n) {
            view<float> sn = cs.view().slice(0, n * rows, (n + 1) * rows);
            nn::newton_schulz(view<const float>(sn), sn, o.steps, o.eps, o.coefficients, &ws);
          }
        }
      }
      // Sequential: M_n = alpha_n M_{n-1} - eta_n NS(S_n), reads per token.
      for (index_t n = g0; n < g1; ++n) {
        const index_t t = b0 + n;
        if (opt_s_.read == read_order::before_update) read_one(n, b0, y);
        const float alpha = g.alpha.at(t), eta = g.eta.at(t);
        for (std::size_t l = 0; l < L; ++l) {
          float* w = w_[l].data();
          const float* o = chunk_s_[l].data() + (n - g0) * shapes_[l].rows * shapes_[l].cols;
          for (index_t e = 0; e < w_[l].size(); ++e) w[e] = alpha * w[e] - eta * o[e];
        }
        if (opt_s_.read == read_order::after_update) read_one(n, b0, y);
      }
    }
  }

  Arch arch_;
  Rule rule_;
  Features phi_;
  Opt opt_;
  module_options opt_s_;
  index_t dk_, dv_, D_ = 0;
  std::vector<layer_shape> shapes_;
  std::vector<array<float>> w_, s_, w0_, g_, ns_out_, chunk_s_;
  nn::newton_schulz_workspace ns_ws_;
  // window history + current block: rows [0, hist_n_) are earlier tokens
  array<float> ext_phi_, ext_v_, qphi_, ybuf_, e_, rk_, z_, tmp_, sd_;
  std::vector<float> ext_g_, scale_, cm_, sm_, A_, P_, Th_, K_, Ks_, ra_, rp_;
  index_t hist_n_ = 0;
  arch_cache gcache_, rcache_;
};

} // namespace memory
} // namespace v0_1
} // namespace membound
