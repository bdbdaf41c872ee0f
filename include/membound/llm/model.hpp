// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::model`: a Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3) over a
/// Hugging Face checkpoint, and `llm::state`: the per-run KV caches (one `kv::cache` per layer) and
/// workspace of a batch of independent sequences.
///
/// Per layer (transformers' modeling_llama / modeling_qwen3), for rows x (T,C):
///     h = RMSNorm(x) w_in;  q = h Wq^T + bq, k = h Wk^T + bk, v = h Wv^T + bv
///     q, k <- RMSNorm per head (qwen3), then RoPE at each token's position
///     a = causal softmax(q k^T / sqrt(D)) v over the cached tokens and the new ones (GQA: query
///         head h reads KV head h / (H/G))
///     x += a Wo^T + bo;  h = RMSNorm(x) w_post;  x += (silu(h Wg^T) * (h Wu^T)) Wd^T
/// then logits = RMSNorm(x) w_final Wlm^T. All arithmetic is f32; weight matrices stay in their
/// stored type (f32, bf16, f16) and are widened inside the kernels: decode rows go through the
/// streaming matrix-vector product (`cpu::matvec`, threads split the rows), several rows (prefill
/// chunks, batched decode) through the GEMM entry (bf16/f16 weights widened a block of rows at a
/// time into a workspace). Prefill runs in chunks of `state_config::chunk` tokens through
/// `kv::attend_prefill` over the head's cached tokens followed by the chunk; decode runs
/// `kv::attend_decode` over the cache.
///
/// Sliding-window attention (Mistral's `sliding_window`, Qwen's `use_sliding_window` from layer
/// `max_window_layers` on): a query at position p sees keys at positions p - W + 1 .. p. The cache
/// works as a rolling window: before a decode step or a prefill chunk, a windowed layer's heads drop
/// the keys no coming query can see (their pages return to the pool, so the pool holds at most
/// W - 1 + chunk tokens per head); inside a chunk, the rows whose window starts past the oldest
/// held key attend one at a time over their own key range (and so do their H2O / TOVA masses).
///
/// Determinism: decode results do not depend on the thread count (each output row is computed by
/// one thread with a fixed summation order); prefill GEMMs run on oneDNN's (or Eigen's) threads,
/// which may split K differently for another thread count (last-bit differences, see
/// backend/cpu/gemm.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "membound/backend/cpu/activation.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/backend/cpu/matvec.hpp"
#include "membound/backend/cpu/norm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/hf_config.hpp"
#include "membound/kv/attend.hpp"
#include "membound/kv/attend_prefill.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/evict.hpp"
#include "membound/kv/query_window.hpp"
#include "membound/llm/policy.hpp"
#include "membound/llm/rope.hpp"
#include "membound/llm/weights.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace membound {
inline namespace v0_1 {
namespace llm {

/// Sizes of an `llm::state`. An aggregate: `llm::state_config{.batch = 1, .max_tokens = 2048}`.
struct state_config {
  index_t batch = 1;        ///< B independent sequences
  index_t max_tokens = 0;   ///< tokens each KV head can hold (pool: B G pages_for(max_tokens) pages per layer)
  index_t page_tokens = 16; ///< tokens per cache page
  index_t chunk = 512;      ///< prefill chunk (rows per forward pass)
};

namespace detail {

/// Rows [r0, r1) of W (M,K) widened to float in `out` ((r1 - r0) x K), exactly (bf16: a shift;
/// f16: the exact conversion). A plain loop the compiler vectorises; it runs once per 64 weight
/// rows of a multi-row product and once per embedding row.
inline void widen_rows(const matrix& w, index_t r0, index_t r1, float* out) {
  const std::size_t n = static_cast<std::size_t>((r1 - r0) * w.cols);
  const std::size_t off = static_cast<std::size_t>(r0 * w.cols);
  switch (w.type) {
  case dtype::bf16: {
    const bf16* p = static_cast<const bf16*>(w.data) + off;
    for (std::size_t i = 0; i < n; ++i) out[i] = p[i].to_float();
    break;
  }
  case dtype::f16: {
    const f16* p = static_cast<const f16*>(w.data) + off;
    for (std::size_t i = 0; i < n; ++i) out[i] = p[i].to_float();
    break;
  }
  default: std::copy_n(static_cast<const float*>(w.data) + off, n, out); break;
  }
}

/// y (1,M) = x (1,K) W^T, the rows of W split into one contiguous run per thread (boundaries on
/// multiples of 16 rows). Each row is one fixed-order sum whatever run it falls in, so the result
/// does not depend on the thread count.
inline void matvec_rows(const matrix& w, const float* x, float* y) {
  const index_t m = w.rows, k = w.cols;
  const auto run = [&](index_t r0, index_t r1) {
    if (r1 <= r0) return;
    const std::span<const float> xs(x, static_cast<std::size_t>(k));
    const std::span<float> ys(y + r0, static_cast<std::size_t>(r1 - r0));
    switch (w.type) {
    case dtype::bf16: cpu::matvec(view<const bf16>(static_cast<const bf16*>(w.data) + r0 * k, {r1 - r0, k}), xs, ys); break;
    case dtype::f16: cpu::matvec(view<const f16>(static_cast<const f16*>(w.data) + r0 * k, {r1 - r0, k}), xs, ys); break;
    default: cpu::matvec(view<const float>(static_cast<const float*>(w.data) + r0 * k, {r1 - r0, k}), xs, ys); break;
    }
  };
#if defined(_OPENMP)
  const index_t threads = std::min<index_t>(omp_get_max_threads(), m / 64);
  if (threads > 1) {
    const index_t per = (m + threads - 1) / threads, step = (per + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
    for (index_t t = 0; t < threads; ++t) run(t * step, std::min(m, (t + 1) * step));
    return;
  }
#endif
  run(0, m);
}

} // namespace detail

class model;

/// KV caches and workspace for B sequences of one model. Sequences advance independently:
/// `position(b)` is the number of tokens sequence b has consumed (the next token's position).
class state {
public:
  const state_config& config() const noexcept { return cfg_; }
  index_t batch() const noexcept { return cfg_.batch; }
  /// Tokens sequence b has consumed so far (its next position). @throws lookup_error
  index_t position(index_t b) const {
    MEMBOUND_EXPECTS(b >= 0 && b < cfg_.batch, lookup_error, "llm::state: sequence ", b, " outside [0, ", cfg_.batch, ")");
    return pos_[static_cast<std::size_t>(b)];
  }
  /// The cache of layer l. @throws lookup_error
  kv::cache<float>& cache(index_t l) {
    MEMBOUND_EXPECTS(l >= 0 && l < static_cast<index_t>(caches_.size()), lookup_error, "llm::state: layer ", l,
                     " outside [0, ", caches_.size(), ")");
    return caches_[static_cast<std::size_t>(l)];
  }
  const kv::cache<float>& cache(index_t l) const { return const_cast<state*>(this)->cache(l); }
  index_t layers() const noexcept { return static_cast<index_t>(caches_.size()); }
  /// The eviction this state applies.
  const llm::eviction& eviction() const noexcept { return ev_; }
  /// The budget of layer l (0: no eviction).
  index_t budget(index_t l) const { return budgets_.at(static_cast<std::size_t>(l)); }
  /// Bytes of the cache pages in use, per layer summed (what a budget bounds).
  std::size_t cache_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& c : caches_) n += c.used_bytes();
    return n;
  }
  /// Forgets sequence b (its cache pages return to the pools, its position goes back to 0).
  void reset(index_t b) {
    (void)position(b);
    for (auto& c : caches_)
      for (index_t g = 0; g < c.kv_heads(); ++g) c.clear(b, g);
    for (auto& w : windows_) w.clear(b);
    pos_[static_cast<std::size_t>(b)] = 0;
  }

private:
  friend class model;
  state_config cfg_;
  std::vector<kv::cache<float>> caches_;
  std::vector<index_t> pos_;
  // workspace, sized once for `rows` = max(chunk, batch) rows
  index_t rows_ = 0;
  array<float> x_, h_, q_, k_, v_, att_, gate_, up_, cos_, sin_, wblock_, kd_, vd_, scratch_, qh_, oh_;
  std::vector<std::int32_t> positions_;
  // eviction
  llm::eviction ev_;
  std::vector<index_t> budgets_;
  std::vector<kv::query_window> windows_; // per layer, for snapkv / expected_attention
  kv::evictor evictor_;
  array<float> mass_, colsum_, alloc_scores_; // alloc_scores_, alloc_masks_: adakv / global
  std::vector<std::int32_t> alloc_masks_;
  std::vector<std::int32_t> key_pos_; // sliding window: the positions of a head's keys in a prefill chunk
  std::vector<index_t> row_lo_;       // sliding window: each windowed row's first visible key
  std::vector<index_t> alloc_smax_;   // adakv / global: each layer's longest head
  std::vector<view<const float>> alloc_sv_;
  std::vector<view<std::int32_t>> alloc_mv_;
  std::vector<float> mass_scratch_;
  std::vector<kv::retention_gate> gates_; // trim_kv: views of the shared gates, own workspace
  array<float> log_beta_, token_state_;   // (rows, G), (rows, 2)
};

/// A Llama-family decoder. Immutable after loading: one model may serve several states, also
/// from several threads (each with its own state).
class model {
public:
  /// Loads a Hugging Face model folder: config.json and the safetensors weights (see weights.hpp).
  /// @throws io_error, format_error, config_error naming the file, key or tensor.
  static model load(const std::filesystem::path& dir) {
    io::model_config cfg = io::load_model_config(dir / "config.json");
    llm::weights w = llm::weights::open(dir, cfg);
    return model(std::move(cfg), std::move(w));
  }

  model(io::model_config cfg, llm::weights w) : cfg_(std::move(cfg)), w_(std::move(w)) {
    rope_ = rope_frequencies::make(cfg_.rope, cfg_.head_dim);
  }

  const io::model_config& config() const noexcept { return cfg_; }
  const llm::weights& weights() const noexcept { return w_; }

  /// A state for this model under an eviction policy (default: none). max_tokens defaults to
  /// max_position_embeddings when 0. Each layer's pool holds B G heads of
  /// min(max_tokens, budget_l + buffer - 1 + chunk) tokens when the policy evicts (a head is cut
  /// back to budget_l after every chunk and step), else of max_tokens. Under adakv a layer's pool holds
  /// the same G (budget_l + buffer - 1 + chunk) tokens per sequence, shared by its heads, plus a
  /// partial page per head; under global L times that (one layer may take most of the model's
  /// count), while the pages in use (cache_bytes) stay within the model's budget. Their cuts
  /// allocate O(tokens scored) scratch each. Policies that read recent
  /// queries get a window of min(window, budget - 1) rows per layer (at least 1); expected_attention
  /// keeps min(4, budget - 1) sinks, so that every budget >= 1 is a valid configuration.
  /// @throws config_error for batch, page_tokens or chunk < 1, max_tokens past
  /// max_position_embeddings, or an invalid eviction setting.
  state make_state(state_config sc, llm::eviction ev = {}) const {
    if (sc.max_tokens == 0) sc.max_tokens = cfg_.max_position_embeddings;
    MEMBOUND_EXPECTS(sc.batch >= 1, config_error, "llm::state_config: batch ", sc.batch, ", expected >= 1");
    MEMBOUND_EXPECTS(sc.chunk >= 1, config_error, "llm::state_config: chunk ", sc.chunk, ", expected >= 1");
    MEMBOUND_EXPECTS(sc.max_tokens >= 1 && sc.max_tokens <= cfg_.max_position_embeddings, config_error,
                     "llm::state_config: max_tokens ", sc.max_tokens, ", expected 1..max_position_embeddings (",
                     cfg_.max_position_embeddings, ")");
    state s;
    s.cfg_ = sc;
    const index_t G = cfg_.num_kv_heads, D = cfg_.head_dim;
    s.budgets_ = ev.layer_budgets(cfg_.num_layers);
    const index_t H = cfg_.num_heads;
    index_t min_budget = 0;
    if (!ev.keeps_all()) {
      min_budget = *std::min_element(s.budgets_.begin(), s.budgets_.end());
      const index_t w = std::clamp<index_t>(std::min(ev.window, min_budget - 1), 1, std::max<index_t>(1, ev.window));
      if (auto* snap = std::get_if<kv::snapkv>(&ev.policy)) snap->window = w;
      if (auto* ea = std::get_if<kv::expected_attention>(&ev.policy)) {
        ea->n_sink = std::min<index_t>(ea->n_sink, min_budget - 1);
        ea->rope_theta = cfg_.rope.theta;
      }
      if (ev.needs_queries())
        for (index_t l = 0; l < cfg_.num_layers; ++l) s.windows_.emplace_back(sc.batch, H, D, w);
    }
    if (!ev.keeps_all() && ev.by_score())
      if (const auto* tk = std::get_if<kv::trim_kv>(&ev.policy))
        MEMBOUND_EXPECTS(!tk->threshold_mode(), config_error,
                         "llm::eviction: trim_kv in threshold mode (alpha > 0) keeps what passes, not a budget; the adakv "
                         "and global allocations need its top-budget mode");
    s.caches_.reserve(static_cast<std::size_t>(cfg_.num_layers));
    const index_t L = cfg_.num_layers;
    for (index_t l = 0; l < L; ++l) {
      const index_t per_head = s.budgets_[static_cast<std::size_t>(l)] + ev.buffer - 1 + sc.chunk;
      // a head of a sliding-window layer holds at most window - 1 tokens before a chunk's
      const index_t mt = windowed(l) ? std::min<index_t>(sc.max_tokens, *cfg_.sliding_window - 1 + sc.chunk) : sc.max_tokens;
      index_t pages = 0;
      if (ev.keeps_all()) pages = G * kv::pages_for(mt, sc.page_tokens);
      else if (!ev.by_score()) pages = G * kv::pages_for(std::min(mt, per_head), sc.page_tokens);
      else { // a layer's heads hold at most G per_head tokens in all (L G per_head for global), each head at most mt
        const index_t layer_cap = std::min(mt, (ev.alloc == llm::eviction::allocation::global ? L : 1) * per_head);
        pages = std::min(G * kv::pages_for(mt, sc.page_tokens), kv::pages_for(G * layer_cap, sc.page_tokens) + G);
      }
      pages *= sc.batch;
      s.caches_.emplace_back(kv::cache_config{.batch = sc.batch, .kv_heads = G, .head_dim = D,
                                              .page_tokens = sc.page_tokens, .pages = pages, .state_slots = 2});
    }
    if (ev.needs_gates()) {
      MEMBOUND_EXPECTS(ev.gates != nullptr && ev.gates->layers() == cfg_.num_layers, config_error,
                       "llm::model::make_state: trim_kv needs retention gates for ", cfg_.num_layers, " layers");
      s.gates_ = ev.gates->gates();
    }
    s.ev_ = std::move(ev);
    s.pos_.assign(static_cast<std::size_t>(sc.batch), 0);
    const index_t R = std::max(sc.chunk, sc.batch);
    s.rows_ = R;
    const index_t C = cfg_.hidden_size, I = cfg_.intermediate_size;
    s.x_ = array<float>({R, C}, uninitialized);
    s.h_ = array<float>({R, C}, uninitialized);
    s.q_ = array<float>({R, H * D}, uninitialized);
    s.k_ = array<float>({R, G * D}, uninitialized);
    s.v_ = array<float>({R, G * D}, uninitialized);
    s.att_ = array<float>({R, H * D}, uninitialized);
    s.gate_ = array<float>({R, I}, uninitialized);
    s.up_ = array<float>({R, I}, uninitialized);
    s.cos_ = array<float>({R, D / 2}, uninitialized);
    s.sin_ = array<float>({R, D / 2}, uninitialized);
    s.positions_.resize(static_cast<std::size_t>(R));
    s.log_beta_ = array<float>({R, G});
    s.token_state_ = array<float>({R, 2});
    // widened weight blocks for multi-row products with 16-bit weights: 64 rows of the widest matrix
    const index_t kmax = std::max({C, H * D, I});
    s.wblock_ = array<float>({wblock_rows * kmax}, uninitialized);
    return s;
  }

  /// Feeds `tokens` to sequence b (a prompt, or a continuation of it) in chunks and writes the
  /// logits of the last token (logits (1,V)) or of every token (logits (T,V)); an empty view writes
  /// none. @throws lookup_error for b or a token id out of range; config_error when the sequence
  /// would pass state_config::max_tokens; shape_error for logits of another shape; budget_error
  /// when the cache pool is full. On a throw after the first chunk, the chunks before it stay fed.
  void prefill(state& s, index_t b, std::span<const std::int32_t> tokens, view<float> logits = {}) const {
    const index_t T = static_cast<index_t>(tokens.size());
    const index_t V = cfg_.vocab_size;
    check_tokens(tokens, "prefill");
    const index_t pos0 = s.position(b);
    MEMBOUND_EXPECTS(pos0 + T <= s.cfg_.max_tokens, config_error, "llm::model::prefill: ", T, " tokens at position ", pos0,
                     " exceed the state's max_tokens ", s.cfg_.max_tokens);
    const bool all_rows = logits.size() != 0 && logits.rank() == 2 && logits.extent(0) == T && T != 1;
    MEMBOUND_EXPECTS(logits.size() == 0 || (logits.rank() == 2 && logits.extent(1) == V && (logits.extent(0) == 1 || all_rows)),
                     shape_error, "llm::model::prefill: logits must be (1,", V, ") or (", T, ",", V, ")");
    for (index_t t0 = 0; t0 < T; t0 += s.cfg_.chunk) {
      const index_t n = std::min(s.cfg_.chunk, T - t0);
      forward_chunk(s, b, tokens.subspan(static_cast<std::size_t>(t0), static_cast<std::size_t>(n)));
      if (all_rows) {
        head(s, 0, n, logits.slice(0, t0, t0 + n));
      } else if (logits.size() != 0 && t0 + n == T) {
        head(s, n - 1, n, logits);
      }
    }
  }

  /// One decode step of every sequence: token tokens[b] is appended to sequence b and logits
  /// (B,V) receive the next-token logits. @throws lookup_error, config_error, shape_error,
  /// budget_error as `prefill`.
  void decode(state& s, std::span<const std::int32_t> tokens, view<float> logits) const {
    const index_t B = s.batch(), V = cfg_.vocab_size;
    MEMBOUND_EXPECTS(static_cast<index_t>(tokens.size()) == B, shape_error, "llm::model::decode: ", tokens.size(),
                     " tokens for ", B, " sequences");
    MEMBOUND_EXPECTS(logits.rank() == 2 && logits.extent(0) == B && logits.extent(1) == V && logits.stride(1) == 1,
                     shape_error, "llm::model::decode: logits must be (", B, ",", V, ") with contiguous rows");
    check_tokens(tokens, "decode");
    for (index_t b = 0; b < B; ++b)
      MEMBOUND_EXPECTS(s.pos_[static_cast<std::size_t>(b)] + 1 <= s.cfg_.max_tokens, config_error,
                       "llm::model::decode: sequence ", b, " is at the state's max_tokens ", s.cfg_.max_tokens);
    forward_decode(s, tokens);
    head(s, 0, B, logits);
  }

private:
  static constexpr index_t wblock_rows = 64;

  void check_tokens(std::span<const std::int32_t> tokens, const char* who) const {
    for (std::size_t i = 0; i < tokens.size(); ++i)
      MEMBOUND_EXPECTS(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, lookup_error, "llm::model::", who, ": token ",
                       tokens[i], " at index ", i, " outside the vocabulary [0, ", cfg_.vocab_size, ")");
  }

  /// y (n, M) = x (n, K) W^T (+ bias), x and y with contiguous rows (leading dims ldx, ldy).
  void linear(state& s, const matrix& w, const array<float>& bias, const float* x, index_t ldx, float* y, index_t ldy,
              index_t n) const {
    const index_t M = w.rows, K = w.cols;
    if (n == 1) {
      detail::matvec_rows(w, x, y);
    } else if (w.type == dtype::f32) {
      const view<const float> xv(x, std::initializer_list<index_t>{n, K}, std::initializer_list<index_t>{ldx, 1});
      const view<float> yv(y, std::initializer_list<index_t>{n, M}, std::initializer_list<index_t>{ldy, 1});
      cpu::gemm(xv, w.as<float>().transpose(), yv);
    } else {
      const view<const float> xv(x, std::initializer_list<index_t>{n, K}, std::initializer_list<index_t>{ldx, 1});
      for (index_t r0 = 0; r0 < M; r0 += wblock_rows) {
        const index_t r1 = std::min(M, r0 + wblock_rows);
        detail::widen_rows(w, r0, r1, s.wblock_.data());
        const view<const float> wb(s.wblock_.data(), {r1 - r0, K});
        const view<float> yv(y + r0, std::initializer_list<index_t>{n, r1 - r0}, std::initializer_list<index_t>{ldy, 1});
        cpu::gemm(xv, wb.transpose(), yv);
      }
    }
    if (bias.size() != 0)
      for (index_t r = 0; r < n; ++r)
        for (index_t j = 0; j < M; ++j) y[r * ldy + j] += bias[j];
  }

  void embed(state& s, std::span<const std::int32_t> tokens) const {
    const index_t C = cfg_.hidden_size;
    for (std::size_t i = 0; i < tokens.size(); ++i)
      detail::widen_rows(w_.embed(), tokens[i], tokens[i] + 1, s.x_.data() + static_cast<index_t>(i) * C);
  }

  /// Attention input half of layer l for rows [0, n) of s.x_: q, k, v with norms and RoPE. Row r
  /// is at position s.positions_[r] of sequence seq(r); the query window of layer l (snapkv,
  /// expected_attention) receives each row's queries, before or after RoPE as its policy reads them.
  template <class Seq>
  void qkv(state& s, index_t l, const layer_weights& L, index_t n, Seq seq) const {
    const index_t C = cfg_.hidden_size, H = cfg_.num_heads, G = cfg_.num_kv_heads, D = cfg_.head_dim;
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    cpu::rmsnorm(view<const float>(s.x_.data(), {n, C}), L.input_norm.span(), view<float>(s.h_.data(), {n, C}), eps);
    if (!s.gates_.empty()) // TRIM-KV: each new token's retention from the normalised hidden state
      s.gates_[static_cast<std::size_t>(l)].forward(view<const float>(s.h_.data(), {n, C}), view<float>(s.log_beta_.data(), {n, G}));
    linear(s, L.q, L.q_bias, s.h_.data(), C, s.q_.data(), H * D, n);
    linear(s, L.k, L.k_bias, s.h_.data(), C, s.k_.data(), G * D, n);
    linear(s, L.v, L.v_bias, s.h_.data(), C, s.v_.data(), G * D, n);
    if (L.q_norm.size() != 0) {
      cpu::rmsnorm(view<const float>(s.q_.data(), {n * H, D}), L.q_norm.span(), view<float>(s.q_.data(), {n * H, D}), eps);
      cpu::rmsnorm(view<const float>(s.k_.data(), {n * G, D}), L.k_norm.span(), view<float>(s.k_.data(), {n * G, D}), eps);
    }
    const auto push = [&] {
      kv::query_window& w = s.windows_[static_cast<std::size_t>(l)];
      for (index_t r = 0; r < n; ++r)
        w.push(seq(r), view<const float>(s.q_.data() + r * H * D, {H, D}), s.positions_[static_cast<std::size_t>(r)]);
    };
    const bool window = !s.windows_.empty();
    if (window && s.ev_.pre_rope_queries()) push();
    const view<const float> cs(s.cos_.data(), {n, D / 2}), sn(s.sin_.data(), {n, D / 2});
    apply_rope(s.q_.data(), n, H, H * D, cs, sn);
    apply_rope(s.k_.data(), n, G, G * D, cs, sn);
    if (window && !s.ev_.pre_rope_queries()) push();
  }

  /// Cuts every head of sequence b in layer l to the layer's budget (see policy.hpp); t is the
  /// position of the newest token.
  void evict(state& s, index_t l, index_t b, std::int32_t t) const {
    if (s.ev_.keeps_all() || s.ev_.alloc == llm::eviction::allocation::global) return;
    if (s.ev_.alloc == llm::eviction::allocation::adakv) return evict_by_score(s, l, l + 1, b, t);
    kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
    const index_t budget = s.budgets_[static_cast<std::size_t>(l)];
    std::visit(
        [&](auto p) {
          if constexpr (requires { p.queries; }) p.queries = &s.windows_[static_cast<std::size_t>(l)];
          s.evictor_.step(c, b, p, t, budget, s.ev_.buffer);
        },
        s.ev_.policy);
  }

  /// Whether layer l attends through a sliding window (config.json's sliding_window).
  bool windowed(index_t l) const noexcept { return cfg_.sliding_window && l >= cfg_.sliding_window_first_layer; }

  /// Removes the tokens of head (b, g) at positions below `first` (they are held in position order).
  static void drop_before(state& s, kv::cache<float>& c, index_t b, index_t g, std::int32_t first) {
    const index_t n = c.size(b, g);
    index_t i = 0;
    while (i < n && c.position(b, g, i) < first) ++i;
    if (i == 0) return;
    std::vector<std::int32_t>& kept = s.evictor_.kept;
    if (kept.size() < static_cast<std::size_t>(n - i)) kept.resize(static_cast<std::size_t>(n - i));
    for (index_t j = i; j < n; ++j) kept[static_cast<std::size_t>(j - i)] = static_cast<std::int32_t>(j);
    c.keep(b, g, std::span<const std::int32_t>(kept.data(), static_cast<std::size_t>(n - i)));
  }

  /// The global allocation's cut, after a forward pass of sequence b.
  void evict_global(state& s, index_t b, std::int32_t t) const {
    if (!s.ev_.keeps_all() && s.ev_.alloc == llm::eviction::allocation::global) evict_by_score(s, 0, cfg_.num_layers, b, t);
  }

  /// adakv (one layer) and global (all layers): once layers [l0, l1) of sequence b hold more than
  /// sum_l G (budget_l + buffer - 1) tokens, every head's tokens are scored by the policy and
  /// kv::global_allocate keeps sum_l G budget_l of them, each head at least its floor. Heads of a
  /// layer may hold different counts: the score matrix of a layer is (G, longest head), padded
  /// with NaN (evicted first, so never kept while real tokens remain).
  void evict_by_score(state& s, index_t l0, index_t l1, index_t b, std::int32_t t) const {
    const index_t G = cfg_.num_kv_heads;
    index_t held = 0, limit = 0, n_total = 0, cells = 0;
    s.alloc_smax_.assign(static_cast<std::size_t>(l1 - l0), 0);
    for (index_t l = l0; l < l1; ++l) {
      const kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
      index_t& smax = s.alloc_smax_[static_cast<std::size_t>(l - l0)];
      for (index_t g = 0; g < G; ++g) {
        held += c.size(b, g);
        smax = std::max(smax, c.size(b, g));
      }
      const index_t budget = s.budgets_[static_cast<std::size_t>(l)];
      limit += G * (budget + s.ev_.buffer - 1);
      n_total += G * budget;
      cells += G * smax;
    }
    if (held <= limit) return;
    float* scores = grow(s.alloc_scores_, static_cast<std::size_t>(cells));
    s.alloc_masks_.resize(static_cast<std::size_t>(cells));
    std::vector<view<const float>>& sv = s.alloc_sv_;
    std::vector<view<std::int32_t>>& mv = s.alloc_mv_;
    sv.clear();
    mv.clear();
    index_t off = 0;
    std::visit(
        [&](auto p) {
          for (index_t l = l0; l < l1; ++l) {
            kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
            if constexpr (requires { p.queries; }) p.queries = &s.windows_[static_cast<std::size_t>(l)];
            const index_t smax = s.alloc_smax_[static_cast<std::size_t>(l - l0)];
            for (index_t g = 0; g < G; ++g) {
              const index_t n = c.size(b, g);
              float* row = scores + off + g * smax;
              const std::span<float> sc(row, static_cast<std::size_t>(n));
              if constexpr (requires { p.score_decode(c, b, g, t, sc, s.evictor_.work); }) p.score_decode(c, b, g, t, sc, s.evictor_.work);
              else p.score_decode(c, b, g, t, sc);
              std::fill(row + n, row + smax, std::numeric_limits<float>::quiet_NaN());
            }
            sv.emplace_back(scores + off, std::initializer_list<index_t>{G, smax});
            mv.emplace_back(s.alloc_masks_.data() + off, std::initializer_list<index_t>{G, smax});
            off += G * smax;
          }
        },
        s.ev_.policy);
    kv::global_allocate(sv, n_total, s.ev_.head_floor(), mv);
    std::vector<std::int32_t>& kept = s.evictor_.kept;
    for (index_t l = l0; l < l1; ++l) {
      kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
      const view<std::int32_t>& m = mv[static_cast<std::size_t>(l - l0)];
      for (index_t g = 0; g < G; ++g) {
        const index_t n = c.size(b, g);
        if (kept.size() < static_cast<std::size_t>(n)) kept.resize(static_cast<std::size_t>(n));
        std::size_t k = 0;
        for (index_t i = 0; i < n; ++i)
          if (m(g, i) != 0) kept[k++] = static_cast<std::int32_t>(i);
        if (k < static_cast<std::size_t>(n)) c.keep(b, g, std::span<const std::int32_t>(kept.data(), k));
      }
    }
  }

  /// Adds (slot 0, accumulate) or writes (slot 1) one KV head's attention mass over its tokens.
  static void store_mass(kv::cache<float>& c, index_t b, index_t g, const float* mass, index_t slot, bool accumulate) {
    const index_t slots = c.state_slots();
    for (const auto& pg : c.pages(b, g)) {
      float* st = pg.state + slot;
      const float* m = mass + pg.first;
      for (index_t j = 0; j < pg.tokens; ++j) {
        if (accumulate) st[j * slots] += m[j];
        else st[j * slots] = m[j];
      }
    }
  }

  /// Output projection and MLP of layer l for rows [0, n): x += attn Wo^T; x += MLP(norm(x)).
  void finish_layer(state& s, const layer_weights& L, index_t n) const {
    const index_t C = cfg_.hidden_size, H = cfg_.num_heads, D = cfg_.head_dim, I = cfg_.intermediate_size;
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    linear(s, L.o, L.o_bias, s.att_.data(), H * D, s.h_.data(), C, n);
    for (index_t i = 0; i < n * C; ++i) s.x_[i] += s.h_[i];
    cpu::rmsnorm(view<const float>(s.x_.data(), {n, C}), L.post_norm.span(), view<float>(s.h_.data(), {n, C}), eps);
    linear(s, L.gate, L.gate_bias, s.h_.data(), C, s.gate_.data(), I, n);
    linear(s, L.up, L.up_bias, s.h_.data(), C, s.up_.data(), I, n);
    const std::span<float> g(s.gate_.data(), static_cast<std::size_t>(n * I));
    cpu::swiglu(std::span<const float>(g), std::span<const float>(s.up_.data(), g.size()), g);
    linear(s, L.down, L.down_bias, s.gate_.data(), I, s.h_.data(), C, n);
    for (index_t i = 0; i < n * C; ++i) s.x_[i] += s.h_[i];
  }

  /// Grows a workspace array to at least n floats.
  static float* grow(array<float>& a, std::size_t n) {
    if (static_cast<std::size_t>(a.size()) < n) a = array<float>({static_cast<index_t>(n)}, uninitialized);
    return a.data();
  }

  /// Rows [0, n) of a forward pass sit at s.positions_[0, n): builds
  /// the RoPE table for them and embeds the tokens into s.x_. Returns whether the policy reads
  /// the attention mass (h2o: every query's; tova: the newest query's).
  struct mass_needs {
    bool h2o = false, tova = false;
  };
  mass_needs begin_forward(state& s, std::span<const std::int32_t> tokens, index_t n) const {
    const index_t D = cfg_.head_dim;
    rope_.table(std::span<const std::int32_t>(s.positions_.data(), static_cast<std::size_t>(n)),
                view<float>(s.cos_.data(), {n, D / 2}), view<float>(s.sin_.data(), {n, D / 2}));
    embed(s, tokens);
    const bool cuts = !s.ev_.keeps_all();
    return {cuts && std::holds_alternative<kv::h2o>(s.ev_.policy), cuts && std::holds_alternative<kv::tova>(s.ev_.policy)};
  }

  void forward_chunk(state& s, index_t b, std::span<const std::int32_t> tokens) const {
    const index_t n = static_cast<index_t>(tokens.size());
    const index_t H = cfg_.num_heads, G = cfg_.num_kv_heads, D = cfg_.head_dim, grp = H / G;
    const index_t pos0 = s.pos_[static_cast<std::size_t>(b)];
    for (index_t t = 0; t < n; ++t) s.positions_[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(pos0 + t);
    const auto [h2o, tova] = begin_forward(s, tokens, n);
    for (index_t l = 0; l < cfg_.num_layers; ++l) {
      const layer_weights& L = w_.layers()[static_cast<std::size_t>(l)];
      kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
      const bool win = windowed(l);
      const index_t W = win ? *cfg_.sliding_window : 0;
      qkv(s, l, L, n, [b](index_t) { return b; });
      for (index_t g = 0; g < G; ++g) {
        // append the chunk's keys and values, then attend over everything head (b, g) holds
        const view<const float> kr(s.k_.data() + g * D, std::initializer_list<index_t>{n, D},
                                   std::initializer_list<index_t>{G * D, 1});
        const view<const float> vr(s.v_.data() + g * D, std::initializer_list<index_t>{n, D},
                                   std::initializer_list<index_t>{G * D, 1});
        view<const float> st;
        if (!s.gates_.empty()) { // state slot 0: the token's log beta for this KV head
          for (index_t t = 0; t < n; ++t) {
            s.token_state_(t, 0) = s.log_beta_(t, g);
            s.token_state_(t, 1) = 0.0f;
          }
          st = view<const float>(s.token_state_.data(), {n, 2});
        }
        if (win) drop_before(s, c, b, g, static_cast<std::int32_t>(pos0 - W + 1)); // no row of the chunk sees them
        c.append(b, g, kr, vr, std::span<const std::int32_t>(s.positions_.data(), static_cast<std::size_t>(n)), st);
        const index_t S = c.size(b, g);
        float* kd = grow(s.kd_, static_cast<std::size_t>(S * D));
        float* vd = grow(s.vd_, static_cast<std::size_t>(S * D));
        if (win) s.key_pos_.resize(static_cast<std::size_t>(S));
        index_t row = 0;
        for (const auto& pg : c.pages(b, g)) {
          std::copy_n(pg.keys, pg.tokens * D, kd + row * D);
          std::copy_n(pg.values, pg.tokens * D, vd + row * D);
          if (win) std::copy_n(pg.positions, pg.tokens, s.key_pos_.data() + row);
          row += pg.tokens;
        }
        // rows [0, n0) see every key held; a later row r (sliding window) sees keys [lo_r, S - n + r]
        const index_t n0 = win ? std::clamp<index_t>(s.key_pos_[0] + W - pos0, 0, n) : n;
        const auto rows = [&](float* base, index_t r0, index_t nr) {
          return view<float>(base + r0 * H * D + g * grp * D, std::initializer_list<index_t>{grp, nr, D},
                             std::initializer_list<index_t>{D, H * D, 1});
        };
        const auto attend = [&](index_t r0, index_t nr, index_t lo, index_t hi /*exclusive*/) {
          const index_t sk = hi - lo;
          const std::size_t need = kv::attend_prefill_scratch_floats(grp, 1, sk, D);
          float* scr = grow(s.scratch_, need);
          kv::attend_prefill(view<const float>(rows(s.q_.data(), r0, nr)), view<const float>(kd + lo * D, {1, sk, D}),
                             view<const float>(vd + lo * D, {1, sk, D}), rows(s.att_.data(), r0, nr), 0.0f,
                             std::span<float>(scr, need));
        };
        // first key of each windowed row (positions ascend, so the start only moves forward)
        s.row_lo_.resize(static_cast<std::size_t>(n - n0));
        for (index_t r = n0, lo = 0; r < n; ++r) {
          while (s.key_pos_[static_cast<std::size_t>(lo)] < pos0 + r - W + 1) ++lo;
          s.row_lo_[static_cast<std::size_t>(r - n0)] = lo;
        }
        const auto lo_of = [&](index_t r) { return s.row_lo_[static_cast<std::size_t>(r - n0)]; };
        if (n0 > 0) attend(0, n0, 0, S - (n - n0));
        for (index_t r = n0; r < n; ++r) attend(r, 1, lo_of(r), S - n + r + 1);
        if (h2o || tova) { // H2O: every query's attention; TOVA: the newest query's
          const std::size_t need = kv::attention_column_sums_scratch_floats(grp, 1, n, S, D);
          float* cs = grow(s.colsum_, 2 * static_cast<std::size_t>(S) + need);
          float* part = cs + S;
          float* scr = part + S;
          const auto sums = [&](index_t r0, index_t nr, index_t t0, index_t lo_k, index_t hi_k, float* out) {
            kv::attention_column_sums(view<const float>(rows(s.q_.data(), r0, nr)),
                                      view<const float>(kd + lo_k * D, {1, hi_k - lo_k, D}), t0,
                                      view<float>(out, {1, hi_k - lo_k}), 0.0f, std::span<float>(scr, need));
          };
          std::fill_n(cs, S, 0.0f);
          if (n0 > 0 && (h2o || n0 == n)) sums(0, n0, h2o ? 0 : n0 - 1, 0, S - (n - n0), cs);
          for (index_t r = h2o ? n0 : std::max(n0, n - 1); r < n; ++r) {
            const index_t lo = lo_of(r), hi = S - n + r + 1;
            sums(r, 1, 0, lo, hi, part);
            for (index_t j = lo; j < hi; ++j) cs[j] += part[j - lo];
          }
          store_mass(c, b, g, cs, h2o ? 0 : 1, h2o);
        }
      }
      evict(s, l, b, static_cast<std::int32_t>(pos0 + n - 1));
      finish_layer(s, L, n);
    }
    evict_global(s, b, static_cast<std::int32_t>(pos0 + n - 1));
    s.pos_[static_cast<std::size_t>(b)] = pos0 + n;
  }

  void forward_decode(state& s, std::span<const std::int32_t> tokens) const {
    const index_t B = s.batch();
    const index_t H = cfg_.num_heads, G = cfg_.num_kv_heads, D = cfg_.head_dim;
    for (index_t b = 0; b < B; ++b) s.positions_[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(s.pos_[static_cast<std::size_t>(b)]);
    const auto [h2o, tova] = begin_forward(s, tokens, B);
    for (index_t l = 0; l < cfg_.num_layers; ++l) {
      const layer_weights& L = w_.layers()[static_cast<std::size_t>(l)];
      kv::cache<float>& c = s.caches_[static_cast<std::size_t>(l)];
      qkv(s, l, L, B, [](index_t r) { return r; });
      for (index_t b = 0; b < B; ++b) {
        const std::int32_t t = s.positions_[static_cast<std::size_t>(b)];
        if (windowed(l)) // the keys the newest query cannot see leave the cache (a rolling window)
          for (index_t g = 0; g < G; ++g) drop_before(s, c, b, g, static_cast<std::int32_t>(t - *cfg_.sliding_window + 1));
        for (index_t g = 0; g < G; ++g) {
          const float st[2] = {s.gates_.empty() ? 0.0f : s.log_beta_(b, g), 0.0f};
          c.append(b, g, std::span<const float>(s.k_.data() + b * G * D + g * D, static_cast<std::size_t>(D)),
                   std::span<const float>(s.v_.data() + b * G * D + g * D, static_cast<std::size_t>(D)), t, st);
        }
        const view<const float> q(s.q_.data() + b * H * D, {H, D});
        const view<float> o(s.att_.data() + b * H * D, {H, D});
        if (h2o || tova) {
          index_t smax = 0;
          for (index_t g = 0; g < G; ++g) smax = std::max(smax, c.size(b, g));
          float* m = grow(s.mass_, static_cast<std::size_t>(G * smax));
          const std::size_t need = kv::attend_scratch_size(c, b, H);
          if (s.mass_scratch_.size() < need) s.mass_scratch_.resize(need);
          const view<float> mv(m, {G, smax});
          kv::attend_decode(c, b, q, o, 0.0f, mv, std::span<float>(s.mass_scratch_.data(), need));
          kv::record_attention(c, b, view<const float>(mv), h2o ? 0 : 1, h2o);
        } else {
          kv::attend_decode(c, b, q, o);
        }
        evict(s, l, b, t);
      }
      finish_layer(s, L, B);
    }
    for (index_t b = 0; b < B; ++b) evict_global(s, b, s.positions_[static_cast<std::size_t>(b)]);
    for (index_t b = 0; b < B; ++b) ++s.pos_[static_cast<std::size_t>(b)];
  }

  /// logits (r1 - r0, V) from rows [r0, r1) of s.x_: final norm and the language-model head.
  void head(state& s, index_t r0, index_t r1, view<float> logits) const {
    const index_t C = cfg_.hidden_size, n = r1 - r0;
    MEMBOUND_EXPECTS(logits.stride(1) == 1, shape_error, "llm::model: logits need contiguous rows");
    cpu::rmsnorm(view<const float>(s.x_.data() + r0 * C, {n, C}), w_.final_norm().span(),
                 view<float>(s.h_.data(), {n, C}), static_cast<float>(cfg_.rms_norm_eps));
    linear(s, w_.lm_head(), array<float>(), s.h_.data(), C, logits.data(), logits.stride(0), n);
  }

  io::model_config cfg_;
  llm::weights w_;
  rope_frequencies rope_;
};

} // namespace llm
} // namespace v0_1
} // namespace membound
