// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Optimizers and their helpers: SGD (momentum, dampening, Nesterov, L2 weight decay) and
/// Adam / AdamW with the exact update order of PyTorch 1.13's `torch.optim.SGD`, `Adam` and `AdamW`
/// (single-tensor path); gradient clipping as `torch.nn.utils.clip_grad_norm_` (total L2 norm) and
/// `clip_grad_value_`; learning-rate schedules (constant; linear warm-up then cosine); and Muon
/// (Jordan et al. 2024: momentum, then Newton-Schulz-5 orthogonalisation of the update through
/// `cpu::gemm`). Element-wise updates are O(n) per step; Muon's is O(min(R,C)^2 max(R,C)) flops.
///
/// Conventions. An optimizer is a small aggregate of hyper-parameters with a nested `state` (one per
/// parameter tensor, empty until the first step sizes it) and a `step(param, grad, state&)` that
/// updates `param` in place. Change a setting (e.g. `opt.lr = schedule(t)`) between steps freely.
/// Scalar constants (1 - beta1, bias corrections, step sizes) are computed in double and rounded
/// to float once, as PyTorch does with Python floats; element arithmetic is float, in PyTorch's
/// order. Everything is deterministic and single-threaded (Muon's GEMMs use `cpu::gemm`'s threads,
/// deterministic for a fixed thread count).

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <numbers>
#include <span>
#include <string_view>
#include <utility>

#include "membound/backend/cpu/blas1.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/backend/cpu/reduce.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

namespace detail {
inline void check_lr(float lr, const char* fn) {
  MEMBOUND_EXPECTS(lr >= 0.f && std::isfinite(lr), config_error, fn, ": lr is ", lr, ", expected a finite value >= 0");
}
inline void check_nonneg(float x, const char* fn, const char* what) {
  MEMBOUND_EXPECTS(x >= 0.f && std::isfinite(x), config_error, fn, ": ", what, " is ", x,
                   ", expected a finite value >= 0");
}
inline void check_unit(float x, const char* fn, const char* what) {
  MEMBOUND_EXPECTS(x >= 0.f && x < 1.f, config_error, fn, ": ", what, " is ", x, ", expected 0 <= ", what, " < 1");
}
inline void check_pos(float x, const char* fn, const char* what) {
  MEMBOUND_EXPECTS(x > 0.f && std::isfinite(x), config_error, fn, ": ", what, " is ", x,
                   ", expected a finite value > 0");
}
inline void check_sizes(std::size_t p, std::size_t g, const char* fn) {
  MEMBOUND_EXPECTS(p == g, shape_error, fn, ": param has ", p, " elements, grad has ", g);
}
/// Sizes a state buffer on first use; afterwards it must match the parameter.
inline void bind_buffer(array<float>& buf, std::size_t n, const char* fn) {
  if (buf.empty() && n > 0) {
    buf = array<float>({static_cast<index_t>(n)}); // (N) zeros
    return;
  }
  MEMBOUND_EXPECTS(static_cast<std::size_t>(buf.size()) == n, shape_error, fn, ": state holds ", buf.size(),
                   " elements, param has ", n, " (use one state per parameter tensor)");
}
} // namespace detail

// ------------------------------------------------------------------------------------------------
// Concepts
// ------------------------------------------------------------------------------------------------

/// An element-wise optimizer: a named aggregate with a per-tensor `state`, a `validate()` that throws
/// `config_error` for bad settings, and an in-place `step(param, grad, state&)` on flat spans.
template <class O>
concept elementwise_optimizer =
    std::default_initializable<typename O::state> &&
    requires(const O& o, std::span<float> p, std::span<const float> g, typename O::state& s) {
      { O::name } -> std::convertible_to<std::string_view>;
      { o.validate() } -> std::same_as<void>;
      { o.step(p, g, s) } -> std::same_as<void>;
    };

/// A learning-rate schedule: a named aggregate mapping the step index t >= 0 to a learning rate.
template <class S>
concept lr_schedule = requires(const S& s, index_t t) {
  { S::name } -> std::convertible_to<std::string_view>;
  { s.validate() } -> std::same_as<void>;
  { s(t) } -> std::same_as<float>;
};

// ------------------------------------------------------------------------------------------------
// SGD
// ------------------------------------------------------------------------------------------------

/// Stochastic gradient descent exactly as `torch.optim.SGD` (maximize = false):
///   d = g + weight_decay * p                                   (L2 penalty, coupled)
///   momentum > 0:  buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d;
///                  d = nesterov ? d + momentum * buf : buf
///   p = p - lr * d
struct sgd {
  static constexpr std::string_view name = "sgd";
  float lr = 1e-2f;         ///< step size, >= 0
  float momentum = 0.f;     ///< >= 0; 0 disables the buffer
  float dampening = 0.f;    ///< >= 0; scales the new gradient in the buffer after the first step
  float weight_decay = 0.f; ///< >= 0; L2 penalty added to the gradient
  bool nesterov = false;    ///< needs momentum > 0 and dampening == 0 (as PyTorch)

  /// Per-tensor state: the momentum buffer (empty until the first step with momentum > 0, which
  /// sets it to d).
  struct state {
    array<float> momentum_buffer; // (N)
    std::int64_t steps = 0;       ///< steps taken with this state
  };

  /// @throws config_error naming the bad setting.
  void validate() const {
    detail::check_lr(lr, "sgd");
    detail::check_nonneg(momentum, "sgd", "momentum");
    detail::check_nonneg(dampening, "sgd", "dampening");
    detail::check_nonneg(weight_decay, "sgd", "weight_decay");
    MEMBOUND_EXPECTS(!nesterov || (momentum > 0.f && dampening == 0.f), config_error,
                     "sgd: nesterov needs momentum > 0 and dampening == 0 (momentum is ", momentum,
                     ", dampening is ", dampening, ")");
  }

  /// One update of `param` in place.
  /// @param[in,out] param (N) @param[in] grad (N) @param[in,out] s this tensor's state.
  /// @throws config_error for bad settings; shape_error if param and grad (or the state) differ in size.
  /// Complexity: O(N), no allocation after the first step.
  void step(std::span<float> param, std::span<const float> grad, state& s) const {
    validate();
    detail::check_sizes(param.size(), grad.size(), "sgd");
    const std::size_t n = param.size();
    const float wd = weight_decay, mu = momentum;
    const float one_minus_damp = static_cast<float>(1.0 - static_cast<double>(dampening));
    const float neg_lr = -lr;
    float* buf = nullptr;
    const bool first = s.momentum_buffer.empty(); // PyTorch: "buf is None" -> buf = d
    if (mu != 0.f) {
      detail::bind_buffer(s.momentum_buffer, n, "sgd");
      buf = s.momentum_buffer.data();
    }
    for (std::size_t i = 0; i < n; ++i) {
      float d = grad[i];
      if (wd != 0.f) d = d + wd * param[i];
      if (buf) {
        buf[i] = first ? d : buf[i] * mu + one_minus_damp * d;
        d = nesterov ? d + mu * buf[i] : buf[i];
      }
      param[i] = param[i] + neg_lr * d;
    }
    ++s.steps;
  }
};
static_assert(elementwise_optimizer<sgd>);

// ------------------------------------------------------------------------------------------------
// Adam / AdamW
// ------------------------------------------------------------------------------------------------

/// State shared by `adam` and `adamw`: first and second moments and the step count t.
struct adam_state {
  array<float> exp_avg;    // (N) m
  array<float> exp_avg_sq; // (N) v
  std::int64_t steps = 0;  ///< t, the number of steps taken (bias corrections use it)
};

namespace detail {
/// The Adam core of PyTorch 1.13 `_single_tensor_adam` after any weight decay has been applied:
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g
///   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// `l2` > 0 adds l2 * p to g first (Adam's coupled weight decay).
inline void adam_update(std::span<float> param, std::span<const float> grad, adam_state& s, float lr, float beta1,
                        float beta2, float eps, float l2, const char* fn) {
  const std::size_t n = param.size();
  bind_buffer(s.exp_avg, n, fn);
  bind_buffer(s.exp_avg_sq, n, fn);
  const std::int64_t t = ++s.steps;
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t));
  const float neg_step = static_cast<float>(-(static_cast<double>(lr) / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float c1 = static_cast<float>(1.0 - static_cast<double>(beta1));
  const float c2 = static_cast<float>(1.0 - static_cast<double>(beta2));
  float* m = s.exp_avg.data();
  float* v = s.exp_avg_sq.data();
  for (std::size_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (l2 != 0.f) g = g + l2 * param[i];
    m[i] = m[i] * beta1 + c1 * g;
    v[i] = v[i] * beta2 + c2 * g * g;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    param[i] = param[i] + neg_step * m[i] / denom;
  }
}
inline void check_adam(float lr, float beta1, float beta2, float eps, float wd, const char* fn) {
  check_lr(lr, fn);
  check_unit(beta1, fn, "beta1");
  check_unit(beta2, fn, "beta2");
  check_pos(eps, fn, "eps");
  check_nonneg(wd, fn, "weight_decay");
}
} // namespace detail

/// Adam (Kingma & Ba 2015) exactly as `torch.optim.Adam` (amsgrad = false, maximize = false):
/// bias-corrected moments, eps added after the square root of the bias-corrected second moment,
/// `weight_decay` as an L2 term added to the gradient (coupled; see `adamw` for decoupled).
struct adam {
  static constexpr std::string_view name = "adam";
  float lr = 1e-3f;         ///< >= 0
  float beta1 = 0.9f;       ///< in [0, 1)
  float beta2 = 0.999f;     ///< in [0, 1)
  float eps = 1e-8f;        ///< > 0
  float weight_decay = 0.f; ///< >= 0, coupled L2
  using state = adam_state;

  /// @throws config_error naming the bad setting.
  void validate() const { detail::check_adam(lr, beta1, beta2, eps, weight_decay, "adam"); }
  /// One update of `param` in place. @param[in,out] param (N) @param[in] grad (N)
  /// @throws config_error, shape_error (param/grad/state sizes). Complexity: O(N).
  void step(std::span<float> param, std::span<const float> grad, state& s) const {
    validate();
    detail::check_sizes(param.size(), grad.size(), "adam");
    detail::adam_update(param, grad, s, lr, beta1, beta2, eps, weight_decay, "adam");
  }
};
static_assert(elementwise_optimizer<adam>);

/// AdamW (Loshchilov & Hutter 2019) exactly as `torch.optim.AdamW`: first p *= 1 - lr * weight_decay
/// (decoupled decay), then the Adam update without any L2 term.
struct adamw {
  static constexpr std::string_view name = "adamw";
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f; ///< >= 0, decoupled (PyTorch's default 1e-2)
  using state = adam_state;

  /// @throws config_error naming the bad setting.
  void validate() const { detail::check_adam(lr, beta1, beta2, eps, weight_decay, "adamw"); }
  /// One update of `param` in place. @param[in,out] param (N) @param[in] grad (N)
  /// @throws config_error, shape_error (param/grad/state sizes). Complexity: O(N).
  void step(std::span<float> param, std::span<const float> grad, state& s) const {
    validate();
    detail::check_sizes(param.size(), grad.size(), "adamw");
    const float keep = static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay));
    if (weight_decay != 0.f)
      for (float& p : param) p = p * keep;
    detail::adam_update(param, grad, s, lr, beta1, beta2, eps, 0.f, "adamw");
  }
};
static_assert(elementwise_optimizer<adamw>);

// ------------------------------------------------------------------------------------------------
// Gradient clipping
// ------------------------------------------------------------------------------------------------

/// Scales all gradients together so that their total L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (norm_type 2): total = sqrt(sum_k ||g_k||^2),
/// coef = max_norm / (total + eps); if coef < 1 every element is multiplied by coef.
/// A non-finite total (NaN/inf in a gradient) is returned as is and, as in PyTorch's default
/// (`error_if_nonfinite = False`), the gradients are then multiplied by a NaN coefficient.
/// @tparam B backend of the `cpu::dot` / `cpu::scale` kernels used per tensor.
/// @param[in,out] grads the gradient tensors (any number, any sizes, empty allowed).
/// @return the total norm before clipping.
/// @throws config_error if max_norm < 0 or eps < 0 (or either is not finite).
/// Complexity: O(sum of sizes); two passes over the data when clipping, one otherwise.
template <class B = backend::best_cpu>
float clip_grad_norm(std::span<const std::span<float>> grads, float max_norm, float eps = 1e-6f) {
  detail::check_nonneg(max_norm, "clip_grad_norm", "max_norm");
  detail::check_nonneg(eps, "clip_grad_norm", "eps");
  double sq = 0.0; // per-tensor partial sums (float, SIMD) are added in double
  for (std::span<float> g : grads) sq += static_cast<double>(cpu::dot<B>(g, g));
  const float total = static_cast<float>(std::sqrt(sq));
  const float coef = max_norm / (total + eps);
  if (!(coef >= 1.f)) // also true for NaN, as in PyTorch
    for (std::span<float> g : grads) cpu::scale<B>(coef, g);
  return total;
}
/// Overload for a brace list: `clip_grad_norm({gw, gb}, 1.0f)`.
template <class B = backend::best_cpu>
float clip_grad_norm(std::initializer_list<std::span<float>> grads, float max_norm, float eps = 1e-6f) {
  return clip_grad_norm<B>(std::span<const std::span<float>>(grads.begin(), grads.size()), max_norm, eps);
}

/// Clamps every gradient element to [-clip_value, clip_value] as `torch.nn.utils.clip_grad_value_`
/// (NaN stays NaN). @throws config_error if clip_value < 0 or not finite. Complexity: O(sum of sizes).
inline void clip_grad_value(std::span<const std::span<float>> grads, float clip_value) {
  detail::check_nonneg(clip_value, "clip_grad_value", "clip_value");
  for (std::span<float> g : grads)
    for (float& x : g) x = x < -clip_value ? -clip_value : (x > clip_value ? clip_value : x);
}
/// Overload for a brace list.
inline void clip_grad_value(std::initializer_list<std::span<float>> grads, float clip_value) {
  clip_grad_value(std::span<const std::span<float>>(grads.begin(), grads.size()), clip_value);
}

// ------------------------------------------------------------------------------------------------
// Learning-rate schedules
// ------------------------------------------------------------------------------------------------

/// lr(t) = lr for every step t >= 0.
struct constant_lr {
  static constexpr std::string_view name = "constant";
  float lr = 1e-3f;
  /// @throws config_error if lr < 0.
  void validate() const { detail::check_lr(lr, "constant_lr"); }
  /// @throws config_error if t < 0. Complexity O(1).
  float operator()(index_t t) const {
    validate();
    MEMBOUND_EXPECTS(t >= 0, config_error, "constant_lr: step t is ", t, ", expected t >= 0");
    return lr;
  }
};
static_assert(lr_schedule<constant_lr>);

/// Linear warm-up then cosine decay (the schedule of Hugging Face's
/// `get_cosine_schedule_with_warmup`, with a floor `min_lr`), for steps t = 0, 1, ...:
///   t <  warmup:          lr(t) = base_lr * t / warmup          (so lr(0) = 0 when warmup > 0)
///   warmup <= t < total:  lr(t) = min_lr + 0.5 (base_lr - min_lr)(1 + cos(pi (t - warmup) / (total - warmup)))
///   t >= total:           lr(t) = min_lr
/// Evaluated in double, returned as float.
struct cosine_lr {
  static constexpr std::string_view name = "cosine";
  float base_lr = 1e-3f; ///< peak, reached at t = warmup; >= 0
  float min_lr = 0.f;    ///< floor, in [0, base_lr]
  index_t warmup = 0;    ///< warm-up steps, in [0, total]
  index_t total = 1;     ///< total steps, > 0

  /// @throws config_error naming the bad setting (warmup > total, min_lr > base_lr, ...).
  void validate() const {
    detail::check_lr(base_lr, "cosine_lr");
    MEMBOUND_EXPECTS(min_lr >= 0.f && min_lr <= base_lr, config_error, "cosine_lr: min_lr is ", min_lr,
                     ", expected 0 <= min_lr <= base_lr = ", base_lr);
    MEMBOUND_EXPECTS(total > 0, config_error, "cosine_lr: total is ", total, ", expected total > 0");
    MEMBOUND_EXPECTS(warmup >= 0 && warmup <= total, config_error, "cosine_lr: warmup is ", warmup,
                     ", expected 0 <= warmup <= total = ", total);
  }
  /// @throws config_error for bad settings or t < 0. Complexity O(1).
  float operator()(index_t t) const {
    validate();
    MEMBOUND_EXPECTS(t >= 0, config_error, "cosine_lr: step t is ", t, ", expected t >= 0");
    const double base = base_lr, lo = min_lr;
    if (t < warmup) return static_cast<float>(base * static_cast<double>(t) / static_cast<double>(warmup));
    if (t >= total) return min_lr;
    const double progress = static_cast<double>(t - warmup) / static_cast<double>(total - warmup);
    return static_cast<float>(lo + 0.5 * (base - lo) * (1.0 + std::cos(std::numbers::pi * progress)));
  }
};
static_assert(lr_schedule<cosine_lr>);

// ------------------------------------------------------------------------------------------------
// Newton-Schulz orthogonalisation and Muon
// ------------------------------------------------------------------------------------------------

/// Coefficients of the quintic Newton-Schulz iteration X <- a X + (b A + c A^2) X, A = X X^T
/// (Jordan et al. 2024, "Muon"; tuned for speed, not exact orthogonality).
struct newton_schulz_coefficients {
  float a = 3.4445f;
  float b = -4.7750f;
  float c = 2.0315f;
};

/// Scratch matrices of `newton_schulz`, reused across calls (resized when the shape changes).
struct newton_schulz_workspace {
  array<float> x, xn; // (m,n) with m = min(R,C), n = max(R,C)
  array<float> a, b;  // (m,m)
};

/// Approximate orthogonalisation ("zeroth power") of U (R,C):
///   X = U / (||U||_F + eps), transposed first if R > C so that X is (m,n) with m <= n;
///   `steps` times: A = X X^T, X = a X + (b A + c A A) X   (three `cpu::gemm` calls per step);
///   out = X (transposed back).
/// Accuracy: it does NOT give exact singular values 1. A singular value s of U becomes p^steps(x)
/// with x = s / (||U||_F + eps) and p(x) = a x + b x^3 + c x^5; for 5 steps, normalised singular
/// values x from about 3e-3 to 1 come out in about [0.68, 1.2], not exactly 1 (smaller x are
/// lifted less: 1e-3 -> 0.47), and a zero matrix stays zero (no NaN). Singular vectors are kept.
/// @param[in] u (R,C), any strides. @param[out] out (R,C), any strides; may be `u` itself.
/// @param steps >= 0 (0 returns the normalised U). @param eps > 0.
/// @param ws optional reusable scratch (else allocated per call).
/// @throws shape_error if u or out is not rank 2 or their extents differ; config_error for
/// steps < 0 or eps <= 0.
/// Complexity: per step 4 m^2 n + 2 m^3 flops (m = min(R,C), n = max(R,C)); memory 2 m n + 2 m^2 floats.
template <class G = backend::default_gemm>
void newton_schulz(view<const float> u, view<float> out, int steps = 5, float eps = 1e-7f,
                   newton_schulz_coefficients k = {}, newton_schulz_workspace* ws = nullptr) {
  MEMBOUND_EXPECTS(u.rank() == 2 && out.rank() == 2, shape_error, "newton_schulz: u has rank ", u.rank(),
                   ", out has rank ", out.rank(), "; expected two rank-2 views (R,C)");
  MEMBOUND_EXPECTS(u.extent(0) == out.extent(0) && u.extent(1) == out.extent(1), shape_error,
                   "newton_schulz: u is (", u.extent(0), ",", u.extent(1), "), out is (", out.extent(0), ",",
                   out.extent(1), "); expected the same extents");
  MEMBOUND_EXPECTS(steps >= 0, config_error, "newton_schulz: steps is ", steps, ", expected steps >= 0");
  detail::check_pos(eps, "newton_schulz", "eps");
  const index_t rows = u.extent(0), cols = u.extent(1);
  if (rows == 0 || cols == 0) return;
  const bool tall = rows > cols;
  const index_t m = tall ? cols : rows, n = tall ? rows : cols;
  newton_schulz_workspace local;
  newton_schulz_workspace& w = ws ? *ws : local;
  auto fit = [](array<float>& x, index_t r, index_t c) {
    if (x.rank() != 2 || x.extent(0) != r || x.extent(1) != c) x = array<float>({r, c}, uninitialized);
  };
  fit(w.x, m, n);  // (m,n)
  fit(w.xn, m, n); // (m,n)
  fit(w.a, m, m);  // (m,m)
  fit(w.b, m, m);  // (m,m)
  // X = U (or U^T) / (||U||_F + eps); the norm is accumulated in double.
  double sq = 0.0;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) sq += static_cast<double>(u(i, j)) * static_cast<double>(u(i, j));
  const float denom = static_cast<float>(std::sqrt(sq)) + eps;
  float* xd = w.x.data(); // (m,n) contiguous: X(a,b) = xd[a n + b]
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) xd[tall ? j * n + i : i * n + j] = u(i, j) / denom;
  for (int s = 0; s < steps; ++s) {
    view<const float> x = w.x.cview();
    cpu::gemm<G>(x, x.transpose(), w.a.view());         // A = X X^T            (m,m)
    std::copy_n(w.a.data(), w.a.size(), w.b.data());    // B = A
    cpu::gemm<G>(w.a.cview(), w.a.cview(), w.b.view(), k.c, k.b); // B = c A A + b A  (m,m)
    std::copy_n(w.x.data(), w.x.size(), w.xn.data());   // Xn = X
    cpu::gemm<G>(w.b.cview(), x, w.xn.view(), 1.0f, k.a); // Xn = B X + a X      (m,n)
    w.x.swap(w.xn);
  }
  const float* xr = w.x.data();
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) out(i, j) = xr[tall ? j * n + i : i * n + j];
}

/// How Muon scales the orthogonalised update of a (R,C) matrix.
enum class muon_scale {
  none,     ///< 1
  shape,    ///< sqrt(max(1, R / C)) (Keller Jordan's reference implementation)
  match_rms ///< 0.2 sqrt(max(R, C)) (Moonshot's "Muon is scalable", to reuse AdamW learning rates)
};

/// Muon (Jordan et al. 2024) for one rank-2 weight W (R,C) with gradient G (R,C):
///   B = momentum B + G                          (B starts at zero, so B = G after the first step)
///   U = nesterov ? G + momentum B : B
///   X = newton_schulz(U, ns_steps, ns_eps)      (Frobenius-normalised, transposed if R > C, NS-5)
///   W = W (1 - lr weight_decay)                 (decoupled decay, before the update)
///   W = W - lr scale X                          (scale per `muon_scale`)
/// Muon is meant for 2-D hidden weights; use `adamw` for embeddings, heads, biases and gains.
struct muon {
  static constexpr std::string_view name = "muon";
  float lr = 0.02f;                        ///< >= 0
  float momentum = 0.95f;                  ///< in [0, 1)
  bool nesterov = true;
  int ns_steps = 5;                        ///< >= 0
  float ns_eps = 1e-7f;                    ///< > 0, added to ||U||_F
  float weight_decay = 0.f;                ///< >= 0, decoupled
  muon_scale scale = muon_scale::shape;
  newton_schulz_coefficients coefficients = {};

  /// Per-matrix state: the momentum buffer and the scratch of the orthogonalisation.
  struct state {
    array<float> momentum_buffer; // (R,C)
    array<float> update;          // (R,C) U, then X
    newton_schulz_workspace ws;
    std::int64_t steps = 0;
  };

  /// @throws config_error naming the bad setting.
  void validate() const {
    detail::check_lr(lr, "muon");
    detail::check_unit(momentum, "muon", "momentum");
    MEMBOUND_EXPECTS(ns_steps >= 0, config_error, "muon: ns_steps is ", ns_steps, ", expected ns_steps >= 0");
    detail::check_pos(ns_eps, "muon", "ns_eps");
    detail::check_nonneg(weight_decay, "muon", "weight_decay");
  }

  /// The factor `scale` stands for, for a (R,C) matrix.
  double scale_factor(index_t rows, index_t cols) const noexcept {
    switch (scale) {
    case muon_scale::shape:
      return std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(std::max<index_t>(cols, 1))));
    case muon_scale::match_rms: return 0.2 * std::sqrt(static_cast<double>(std::max(rows, cols)));
    default: return 1.0;
    }
  }

  /// One update of W in place.
  /// @tparam G the GEMM backend of the orthogonalisation.
  /// @param[in,out] w (R,C), any strides. @param[in] g (R,C), any strides.
  /// @throws config_error for bad settings; shape_error if w or g is not rank 2, their extents
  /// differ, or the state was sized for another shape.
  /// Complexity: O(R C) plus `newton_schulz`; allocates only on the first step.
  template <class G = backend::default_gemm>
  void step(view<float> w, view<const float> g, state& s) const {
    validate();
    MEMBOUND_EXPECTS(w.rank() == 2 && g.rank() == 2, shape_error, "muon: param has rank ", w.rank(),
                     ", grad has rank ", g.rank(), "; expected rank-2 (R,C) matrices");
    MEMBOUND_EXPECTS(w.extent(0) == g.extent(0) && w.extent(1) == g.extent(1), shape_error, "muon: param is (",
                     w.extent(0), ",", w.extent(1), "), grad is (", g.extent(0), ",", g.extent(1), ")");
    const index_t rows = w.extent(0), cols = w.extent(1);
    if (s.momentum_buffer.empty() && rows * cols > 0) {
      s.momentum_buffer = array<float>({rows, cols}); // (R,C) zeros
      s.update = array<float>({rows, cols});          // (R,C)
    }
    MEMBOUND_EXPECTS(s.momentum_buffer.size() == rows * cols &&
                         (rows * cols == 0 || (s.momentum_buffer.extent(0) == rows && s.momentum_buffer.extent(1) == cols)),
                     shape_error, "muon: state holds (", s.momentum_buffer.rank() == 2 ? s.momentum_buffer.extent(0) : 0,
                     ",", s.momentum_buffer.rank() == 2 ? s.momentum_buffer.extent(1) : 0, "), param is (", rows, ",",
                     cols, ") (use one state per parameter matrix)");
    ++s.steps;
    if (rows * cols == 0) return;
    const float mu = momentum;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) {
        float& b = s.momentum_buffer(i, j);
        b = b * mu + g(i, j);
        s.update(i, j) = nesterov ? g(i, j) + mu * b : b;
      }
    newton_schulz<G>(s.update.cview(), s.update.view(), ns_steps, ns_eps, coefficients, &s.ws);
    const float keep = static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay));
    const float neg_step = static_cast<float>(-static_cast<double>(lr) * scale_factor(rows, cols));
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) {
        float& p = w(i, j);
        if (weight_decay != 0.f) p = p * keep;
        p = p + neg_step * s.update(i, j);
      }
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
