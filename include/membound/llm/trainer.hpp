// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::trainer`: next-token training of an `llm::trainable_model` with nn/'s optimisers:
/// AdamW for every trainable parameter, or Muon (Jordan et al. 2024) for the layers' hidden
/// matrices and AdamW for the embedding, the head and the norm scales; global gradient-norm
/// clipping; linear warm-up then cosine decay. Frozen parameters (`trainable_model::freeze`) are
/// neither differentiated nor updated.
///
/// Data: a `batch_source` fills row r of step s with T + 1 tokens (inputs are the first T, targets
/// the last T; a negative target is ignored) as a pure function of (s, r), e.g. `byte_corpus::sample`
/// keyed by (seed, s, r). The batch of a step therefore never depends on what ran before it, and a
/// run resumed from a checkpoint replays exactly the batches it would have seen.
///
/// Checkpoints (`save`, `resume`): a Hugging Face folder that `llm::model::load` reads unchanged
/// (config.json, model.safetensors in F32), plus `trainer_state.safetensors` with the optimiser
/// moments and the step count. A resumed run is bit-identical to an uninterrupted one at the same
/// thread count (tested). The progress line (every `log_every` steps) shows step, loss, learning
/// rate, gradient norm, tokens/s and the ETA.
///
/// Determinism: for a seed and a thread count, bit-identical runs. The thread count enters only
/// through the GEMM entry's K splits (backend/cpu/gemm.hpp): attention, norms, the loss and every
/// optimiser reduction run in a fixed order.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/llm/trainable_model.hpp"
#include "membound/nn/optim.hpp"


namespace membound {
inline namespace v0_1 {
namespace llm {

/// Fills `out` (T + 1 tokens) with row `row` of step `step`; must be a pure function of both.
using batch_source = std::function<void(std::uint64_t step, index_t row, std::span<std::int64_t> out)>;

/// Fills `out` (T values >= 0) with the loss weights of row `row`'s targets at step `step` (target j
/// predicts token j + 1 of the window); must be a pure function of both. Training steps then
/// minimise the weighted mean (`trainable_model::cross_entropy`); `evaluate` stays unweighted.
using weight_source = std::function<void(std::uint64_t step, index_t row, std::span<float> out)>;

/// Settings of a training run. An aggregate.
struct trainer_config {
  index_t batch = 8;           ///< B sequences per step
  index_t tokens = 1024;       ///< T tokens per sequence (<= the model's max_positions)
  index_t steps = 1000;        ///< total steps of the schedule
  float lr = 2e-3f;            ///< AdamW peak learning rate
  float min_lr = 2e-4f;        ///< cosine floor
  index_t warmup = 100;        ///< linear warm-up steps
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;   ///< decoupled, on matrices only (not norm scales)
  float clip = 1.0f;           ///< global gradient-norm clip (0: none)
  bool muon = false;           ///< Muon for the layers' hidden matrices
  float muon_lr = 0.02f;       ///< Muon's peak learning rate (same schedule shape)
  index_t log_every = 10;      ///< progress line period in steps (0: none)
  std::FILE* progress = stderr; ///< where the progress line goes (nullptr: nowhere)

  /// @throws config_error naming the bad setting.
  void validate() const {
    MEMBOUND_EXPECTS(batch >= 1 && tokens >= 1 && steps >= 1, config_error, "llm::trainer_config: batch ", batch,
                     ", tokens ", tokens, ", steps ", steps, ", expected all >= 1");
    MEMBOUND_EXPECTS(warmup >= 0 && warmup <= steps, config_error, "llm::trainer_config: warmup ", warmup,
                     ", expected 0 <= warmup <= steps = ", steps);
    MEMBOUND_EXPECTS(lr >= 0 && min_lr >= 0 && min_lr <= lr && clip >= 0 && muon_lr >= 0 && weight_decay >= 0, config_error,
                     "llm::trainer_config: lr ", lr, ", min_lr ", min_lr, ", clip ", clip, ", muon_lr ", muon_lr,
                     ", weight_decay ", weight_decay, ": expected 0 <= min_lr <= lr and the others >= 0");
  }
};

/// What one step did.
struct step_record {
  index_t step = 0;        ///< 0-based index of the step
  float loss = 0;          ///< mean cross-entropy of its batch (nats per token; weighted with a weight_source)
  float lr = 0;            ///< AdamW learning rate used
  float grad_norm = 0;     ///< global gradient norm before clipping
  double seconds = 0;      ///< wall time of the step
};

/// A training loop over one model; see the file comment.
class trainer {
public:
  /// `weights` (optional) weights the training targets, e.g. the answers of generated retrieval
  /// tasks. @throws config_error for bad settings or T > the model's max_positions.
  trainer(trainable_model& model, batch_source source, trainer_config cfg, weight_source weights = {})
      : m_(model), src_(std::move(source)), weights_(std::move(weights)), cfg_(cfg) {
    cfg_.validate();
    MEMBOUND_EXPECTS(static_cast<bool>(src_), config_error, "llm::trainer: empty batch source");
    m_.reserve(cfg_.batch, cfg_.tokens);
    const auto& p = m_.parameters();
    adam_.resize(p.size());
    muon_.resize(p.size());
    kind_.resize(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      const std::string& n = p[i].name;
      const bool hidden = n.find("model.layers.") == 0 && p[i].value.rank() == 2;
      kind_[i] = cfg_.muon && hidden ? use::muon : use::adamw;
    }
    ids_.resize(static_cast<std::size_t>(cfg_.batch * cfg_.tokens));
    targets_.resize(ids_.size());
    if (weights_) target_weights_.resize(ids_.size());
  }

  const trainer_config& config() const noexcept { return cfg_; }
  index_t steps_done() const noexcept { return step_; }
  const std::vector<step_record>& history() const noexcept { return history_; }

  /// The AdamW learning rate of step s (0-based): warm-up to `lr` over `warmup` steps, then cosine
  /// to `min_lr` at `steps`.
  float lr_at(index_t s) const {
    return nn::cosine_lr{.base_lr = cfg_.lr, .min_lr = cfg_.min_lr, .warmup = cfg_.warmup, .total = cfg_.steps}(s + 1);
  }

  /// One optimiser step on the batch of step `steps_done()`.
  step_record step() {
    const auto t0 = std::chrono::steady_clock::now();
    fill_rows(src_, static_cast<std::uint64_t>(step_), 0, cfg_.batch);
    if (weights_)
      for (index_t row = 0; row < cfg_.batch; ++row)
        weights_(static_cast<std::uint64_t>(step_), row,
                 std::span<float>(target_weights_.data() + row * cfg_.tokens, static_cast<std::size_t>(cfg_.tokens)));
    auto& p = m_.parameters();
    p.zero_grad();
    m_.forward(ids_, cfg_.batch, cfg_.tokens);
    step_record r;
    r.step = step_;
    r.loss = m_.cross_entropy(targets_, target_weights_);
    m_.backward(m_.dlogits());
    std::vector<std::span<float>> grads;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (!m_.frozen(p[i].name)) grads.push_back(p[i].grad.span());
    r.grad_norm = nn::clip_grad_norm(std::span<const std::span<float>>(grads), cfg_.clip > 0 ? cfg_.clip : 1e30f);
    r.lr = lr_at(step_);
    const float scale = cfg_.lr > 0 ? r.lr / cfg_.lr : 0.0f;
    const nn::adamw mat{.lr = r.lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.eps, .weight_decay = cfg_.weight_decay};
    const nn::adamw vec{.lr = r.lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.eps, .weight_decay = 0.0f};
    nn::muon mu;
    mu.lr = cfg_.muon_lr * scale;
    mu.weight_decay = cfg_.weight_decay;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (m_.frozen(p[i].name)) continue;
      if (kind_[i] == use::muon) mu.step(p[i].value.view(), p[i].grad.cview(), muon_[i]);
      else (p[i].value.rank() >= 2 ? mat : vec).step(p[i].value.span(), p[i].grad.span(), adam_[i]);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history_.push_back(r);
    ++step_;
    report(r);
    return r;
  }

  /// Steps until `until` steps are done (at most cfg.steps); `on_step` sees every record.
  void run(index_t until, const std::function<void(const step_record&)>& on_step = {}) {
    until = std::min(until, cfg_.steps);
    while (step_ < until) {
      const step_record r = step();
      if (on_step) on_step(r);
    }
  }

  /// Mean cross-entropy (nats per token) of `windows` batches-rows from `source` (rows 0..windows-1
  /// of pseudo-step `key`), forward only; the gradients are untouched.
  double evaluate(const batch_source& source, index_t windows, std::uint64_t key = 0) {
    double sum = 0.0;
    index_t done = 0;
    while (done < windows) {
      const index_t rows = std::min(cfg_.batch, windows - done);
      fill_rows(source, key, done, rows);
      m_.forward(std::span<const std::int64_t>(ids_.data(), static_cast<std::size_t>(rows * cfg_.tokens)), rows, cfg_.tokens);
      sum += static_cast<double>(m_.cross_entropy(std::span<const std::int64_t>(targets_.data(), static_cast<std::size_t>(rows * cfg_.tokens)))) *
             static_cast<double>(rows);
      done += rows;
    }
    return sum / static_cast<double>(windows);
  }

  /// Writes the model folder and trainer_state.safetensors into `dir`. @throws io_error.
  void save(const std::filesystem::path& dir) const {
    m_.save(dir);
    io::safetensors_writer w;
    w.set_metadata("step", std::to_string(step_));
    w.set_metadata("optimizer", cfg_.muon ? "muon+adamw" : "adamw");
    const auto& p = m_.parameters();
    std::vector<array<float>> steps_held;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (kind_[i] == use::muon) {
        if (!muon_[i].momentum_buffer.empty()) w.add("muon." + p[i].name, muon_[i].momentum_buffer.cview());
      } else if (!adam_[i].exp_avg.empty()) {
        w.add("exp_avg." + p[i].name, adam_[i].exp_avg.cview());
        w.add("exp_avg_sq." + p[i].name, adam_[i].exp_avg_sq.cview());
        w.set_metadata("adam_steps." + p[i].name, std::to_string(adam_[i].steps));
      }
      if (kind_[i] == use::muon) w.set_metadata("muon_steps." + p[i].name, std::to_string(muon_[i].steps));
    }
    w.write(dir / "trainer_state.safetensors");
  }

  /// Loads the parameters and the optimiser state that `save` wrote, so that the next step is
  /// step `steps_done()` of the saved run. @throws io_error, format_error for unreadable files;
  /// lookup_error / shape_error naming a tensor that does not fit this model; config_error when the
  /// checkpoint's optimiser is not this trainer's.
  void resume(const std::filesystem::path& dir) {
    auto& p = m_.parameters();
    p.load(dir / "model.safetensors", /*strict=*/false);
    const auto st = io::safetensors::open(dir / "trainer_state.safetensors");
    const auto& md = st.metadata();
    const auto get = [&](const std::string& k) -> std::string {
      const auto it = md.find(k);
      MEMBOUND_EXPECTS(it != md.end(), format_error, "llm::trainer::resume: ", (dir / "trainer_state.safetensors").string(),
                       " has no metadata \"", k, "\"");
      return it->second;
    };
    MEMBOUND_EXPECTS(get("optimizer") == (cfg_.muon ? "muon+adamw" : "adamw"), config_error, "llm::trainer::resume: the checkpoint used ",
                     get("optimizer"), ", this trainer ", cfg_.muon ? "muon+adamw" : "adamw");
    step_ = static_cast<index_t>(std::stoll(get("step")));
    for (std::size_t i = 0; i < p.size(); ++i) {
      const std::string& n = p[i].name;
      if (kind_[i] == use::muon) {
        muon_[i] = {};
        if (st.contains("muon." + n)) {
          muon_[i].momentum_buffer = st.load<float>("muon." + n);
          muon_[i].update = array<float>(p[i].value.extents());
          expect_shape(muon_[i].momentum_buffer, p[i].value, "muon." + n);
        }
        muon_[i].steps = std::stoll(get("muon_steps." + n));
      } else {
        adam_[i] = {};
        if (st.contains("exp_avg." + n)) {
          adam_[i].exp_avg = st.load<float>("exp_avg." + n);
          adam_[i].exp_avg_sq = st.load<float>("exp_avg_sq." + n);
          expect_shape(adam_[i].exp_avg, p[i].value, "exp_avg." + n);
          expect_shape(adam_[i].exp_avg_sq, p[i].value, "exp_avg_sq." + n);
          adam_[i].steps = std::stoll(get("adam_steps." + n));
          // adam_update binds flat (N) buffers
          adam_[i].exp_avg = flat(std::move(adam_[i].exp_avg));
          adam_[i].exp_avg_sq = flat(std::move(adam_[i].exp_avg_sq));
        }
      }
    }
    history_.clear();
  }

private:
  enum class use { adamw, muon };

  static array<float> flat(array<float> a) {
    array<float> out({a.size()}, uninitialized); // (N)
    std::copy_n(a.data(), a.size(), out.data());
    return out;
  }
  static void expect_shape(const array<float>& a, const array<float>& want, const std::string& name) {
    MEMBOUND_EXPECTS(a.size() == want.size(), shape_error, "llm::trainer::resume: ", name, " holds ", a.size(),
                     " values, the parameter ", want.size());
  }

  /// Rows first..first+rows-1 of `key` from `src` into ids_ / targets_ (inputs, then the inputs
  /// shifted by one).
  void fill_rows(const batch_source& src, std::uint64_t key, index_t first, index_t rows) {
    window_.resize(static_cast<std::size_t>(cfg_.tokens + 1));
    for (index_t r = 0; r < rows; ++r) {
      src(key, first + r, std::span<std::int64_t>(window_.data(), window_.size()));
      std::copy_n(window_.begin(), cfg_.tokens, ids_.begin() + r * cfg_.tokens);
      std::copy_n(window_.begin() + 1, cfg_.tokens, targets_.begin() + r * cfg_.tokens);
    }
  }

  void report(const step_record& r) {
    if (cfg_.progress == nullptr || cfg_.log_every <= 0) return;
    window_time_ += r.seconds;
    ++window_steps_;
    if (r.step % cfg_.log_every != 0 && r.step + 1 != cfg_.steps) return;
    const double per = window_time_ / static_cast<double>(window_steps_);
    const double tps = static_cast<double>(cfg_.batch * cfg_.tokens) / per;
    const double eta = per * static_cast<double>(cfg_.steps - r.step - 1);
    std::fprintf(cfg_.progress, "step %6lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %7.0f tok/s  ETA %dh%02dm%02ds\n",
                 static_cast<long long>(r.step + 1), static_cast<long long>(cfg_.steps), static_cast<double>(r.loss),
                 static_cast<double>(r.lr), static_cast<double>(r.grad_norm), tps, static_cast<int>(eta / 3600),
                 static_cast<int>(eta / 60) % 60, static_cast<int>(eta) % 60);
    std::fflush(cfg_.progress);
    window_time_ = 0;
    window_steps_ = 0;
  }

  trainable_model& m_;
  batch_source src_;
  weight_source weights_;
  trainer_config cfg_;
  std::vector<nn::adamw::state> adam_;
  std::vector<nn::muon::state> muon_;
  std::vector<use> kind_;
  std::vector<std::int64_t> ids_, targets_, window_;
  std::vector<float> target_weights_; // (B T) when a weight_source is given, else empty
  std::vector<step_record> history_;
  index_t step_ = 0;
  double window_time_ = 0;
  index_t window_steps_ = 0;
};

} // namespace llm
} // namespace v0_1
} // namespace membound
