// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::eviction`: which kv/ policy a `llm::state` applies and at what budget, chosen at
/// run time by name (the command line, the evaluation grid) or from a policy value.
///
/// How eviction runs inside the model (model.hpp): after every prefill chunk and every decode
/// step, each layer's cache is cut by `kv::evictor` with the layer's budget: a KV head that holds
/// at least budget + buffer tokens keeps its `budget` best under the policy's decode-mode score.
/// So a prompt prefilled in one chunk is compressed once after its prefill (kvpress's one-shot
/// presses, scored by the decode-mode rules of kv/), and generation keeps every head within
/// budget + buffer - 1 tokens (kvpress's DecodingPress with compression_interval = buffer). What
/// the policies read is produced in the same passes:
///   - h2o: the attention mass of every query, accumulated in state slot 0 (prefill: the chunk's
///     `kv::attention_column_sums`; decode: `kv::attend_decode`'s mass);
///   - tova: the latest query's attention in state slot 1;
///   - snapkv: the post-RoPE queries of the last `window` positions (a `kv::query_window` per layer);
///   - expected_attention: the pre-RoPE queries of the last `window` positions (the RoPE base of
///     the config; a scaled RoPE is approximated by the standard one in its query statistics);
///   - trim_kv: each token's log beta per KV head from its layer's retention gate (TRIM-KV, read
///     from the output of the pre-attention RMSNorm), in state slot 0 when the token is stored.
/// Budgets: `uniform` gives every layer `budget`; `pyramid` gives PyramidKV's per-layer counts
/// (`kv::pyramid_budgets` at a prompt length of `pyramid_length` with the ratio that makes the
/// mean budget `budget`, and no protected window: from about 2 x budget in the first layer down to
/// budget / beta in the last); `adakv` gives each layer G x budget tokens per sequence, split
/// between its KV heads by score (AdaKV, `kv::adakv_allocate`: every head keeps its best
/// max(1, int(alpha budget)) tokens, the rest of the layer's count goes to the highest scores
/// of any head), cut once the layer holds more than G (budget + buffer - 1); `global` gives the
/// whole model L x G x budget tokens per sequence (`kv::global_allocate`, the same per-head
/// floor), cut after the forward pass once the model holds more than L G (budget + buffer - 1).
/// A global split compares scores across layers: meaningful for normalised attention (h2o,
/// tova, snapkv) and learned retention (trim_kv), not for key norms. By name, an allocation
/// follows the policy after '@': "snapkv@pyramid", "h2o@adakv", "trim_kv@global".

#include <algorithm>
#include <filesystem>
#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/kv/budget.hpp"
#include "membound/kv/expected_attention.hpp"
#include "membound/kv/full.hpp"
#include "membound/kv/keydiff.hpp"
#include "membound/kv/knorm.hpp"
#include "membound/kv/observed_attention.hpp"
#include "membound/kv/random.hpp"
#include "membound/kv/snapkv.hpp"
#include "membound/kv/streaming_llm.hpp"
#include "membound/kv/retention_gate.hpp"
#include "membound/kv/tova.hpp"
#include "membound/kv/trim_kv.hpp"
#include "membound/io/hf_config.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// The policies a state can run, one value each.
using policy_value = std::variant<kv::full, kv::streaming_llm, kv::h2o, kv::tova, kv::knorm, kv::keydiff, kv::random,
                                  kv::snapkv, kv::expected_attention, kv::trim_kv>;

/// Names accepted by `eviction::named` that need nothing beyond the model, in this order
/// ("trim_kv" is accepted too, with retention gates).
inline constexpr std::string_view policy_names[] = {"full", "streaming_llm", "h2o", "tova", "knorm",
                                                    "keydiff", "random", "snapkv", "expected_attention"};

/// TRIM-KV's retention gates of every layer (kv::retention_gate), loaded from their own
/// safetensors file (as released beside a model) under the official names
/// "model.layers.<l>.self_attn.retention_gate.{linear1.weight, linear1.bias, linear2.weight, bias}".
/// The hidden width I is read from linear1's shape; the activation is SiLU (the Llama / Qwen MLP's).
/// Immutable once loaded; states copy the gate views with their own workspace.
class retention_gates {
public:
  /// @throws io_error, format_error for the file; lookup_error naming a missing gate tensor;
  /// shape_error naming a tensor of another shape than the model's (C, G) implies.
  static std::shared_ptr<const retention_gates> load(const std::filesystem::path& file, const io::model_config& cfg) {
    return from(io::safetensors::open(file), cfg);
  }
  /// As `load`, from a parsed file. @throws as load
  static std::shared_ptr<const retention_gates> from(const io::safetensors& f, const io::model_config& cfg) {
    auto g = std::shared_ptr<retention_gates>(new retention_gates());
    const std::string first = "model.layers.0.self_attn.retention_gate.linear1.weight";
    MEMBOUND_EXPECTS(f.contains(first), lookup_error, "llm::retention_gates: the file has no tensor \"", first, "\"");
    const io::tensor_info& t = f.info(first);
    MEMBOUND_EXPECTS(t.shape.size() == 2 && t.shape[1] == cfg.hidden_size && t.shape[0] >= 1, shape_error,
                     "llm::retention_gates: \"", first, "\" is ", io::detail::shape_string(t.shape), ", expected (I, ",
                     cfg.hidden_size, ")");
    for (index_t l = 0; l < cfg.num_layers; ++l)
      g->gates_.push_back(kv::retention_gate::make(g->params_, ::membound::detail::concat("model.layers.", l, ".self_attn.retention_gate"),
                                                   cfg.hidden_size, cfg.num_kv_heads, t.shape[0]));
    g->params_.load(f, false);
    return g;
  }
  index_t layers() const noexcept { return static_cast<index_t>(gates_.size()); }
  const std::vector<kv::retention_gate>& gates() const noexcept { return gates_; }

private:
  retention_gates() = default;
  nn::parameters params_;
  std::vector<kv::retention_gate> gates_;
};

/// Eviction settings of a state. An aggregate; `eviction::named("h2o", 256)` builds one by name.
struct eviction {
  /// How the budget is spread: the same per head (uniform), per layer (pyramid), per head by
  /// score inside a layer (adakv), or per head by score across the whole model (global).
  enum class allocation { uniform, pyramid, adakv, global };
  policy_value policy = kv::full{};
  index_t budget = 0;           ///< tokens kept per KV head (mean over layers for pyramid); 0: no eviction
  index_t buffer = 1;           ///< a head is cut once it holds budget + buffer tokens
  allocation alloc = allocation::uniform;
  index_t pyramid_length = 0;   ///< pyramid: the prompt length the layer budgets are computed for (0: 4 x budget)
  double pyramid_beta = 20.0;   ///< pyramid: kvpress's beta
  double alpha = 0.2;           ///< adakv, global: each head's floor is max(1, int(alpha budget)) (kvpress's alpha_safeguard)
  index_t window = 64;          ///< snapkv's observation window and expected_attention's query window
  std::shared_ptr<const retention_gates> gates; ///< trim_kv: the model's retention gates

  /// A policy by name ("full", "streaming_llm", "h2o", "tova", "knorm", "keydiff", "random",
  /// "snapkv", "expected_attention") with the library's defaults: 4 sinks; h2o keeping the newest
  /// budget / 2 positions (heavy hitters + recent, as the paper's equal split); random seeded 0;
  /// "trim_kv" (the paper's age convention, top-budget mode) with the given retention gates.
  /// An allocation may follow after '@': "uniform" (the default), "pyramid" (pyramid_length 0:
  /// 4 x budget), "adakv" or "global" (alpha 0.2); "snapkv@pyramid" is PyramidKV.
  /// @throws config_error naming an unknown policy or allocation (and listing the known ones),
  /// budget < 0, or trim_kv without gates.
  static eviction named(std::string_view name, index_t budget, index_t buffer = 1,
                        std::shared_ptr<const retention_gates> gates = nullptr) {
    MEMBOUND_EXPECTS(budget >= 0, config_error, "llm::eviction: budget ", budget, ", expected >= 0");
    MEMBOUND_EXPECTS(buffer >= 1, config_error, "llm::eviction: buffer ", buffer, ", expected >= 1");
    eviction e;
    e.budget = budget;
    e.buffer = buffer;
    if (const std::size_t at = name.find('@'); at != std::string_view::npos) {
      const std::string_view a = name.substr(at + 1);
      if (a == "uniform") e.alloc = allocation::uniform;
      else if (a == "pyramid") e.alloc = allocation::pyramid;
      else if (a == "adakv") e.alloc = allocation::adakv;
      else if (a == "global") e.alloc = allocation::global;
      else
        throw config_error(::membound::detail::concat("llm::eviction: unknown allocation \"", a, "\" in \"", name,
                                                      "\"; known: uniform, pyramid, adakv, global"));
      name = name.substr(0, at);
    }
    if (name == "full") e.policy = kv::full{};
    else if (name == "streaming_llm") e.policy = kv::streaming_llm{4};
    else if (name == "h2o") {
      kv::h2o h;
      h.recent = budget / 2;
      h.slot = 0;
      e.policy = h;
    } else if (name == "tova") {
      kv::tova t;
      t.slot = 1;
      e.policy = t;
    } else if (name == "knorm") e.policy = kv::knorm{};
    else if (name == "keydiff") e.policy = kv::keydiff{};
    else if (name == "random") e.policy = kv::random{0};
    else if (name == "snapkv") e.policy = kv::snapkv{};
    else if (name == "expected_attention") e.policy = kv::expected_attention{};
    else if (name == "trim_kv") {
      MEMBOUND_EXPECTS(gates != nullptr, config_error,
                       "llm::eviction: trim_kv needs the model's retention gates (llm::retention_gates::load)");
      e.policy = kv::trim_kv{};
      e.gates = std::move(gates);
    } else {
      std::string known;
      for (std::string_view n : policy_names) known += (known.empty() ? "" : ", ") + std::string(n);
      known += ", trim_kv (with gates)";
      throw config_error(::membound::detail::concat("llm::eviction: unknown policy \"", name, "\"; known: ", known));
    }
    return e;
  }

  /// Whether the budget is split between heads by score (adakv or global).
  bool by_score() const noexcept { return alloc == allocation::adakv || alloc == allocation::global; }
  /// The floor each head keeps under adakv and global: max(1, int(alpha budget)), 0 for alpha 0.
  index_t head_floor() const noexcept {
    return alpha > 0.0 ? std::max<index_t>(1, static_cast<index_t>(alpha * static_cast<double>(budget))) : 0;
  }

  std::string_view name() const {
    return std::visit([](const auto& p) -> std::string_view { return std::decay_t<decltype(p)>::name; }, policy);
  }
  /// True when the policy never cuts (kv::full) or no budget is set.
  bool keeps_all() const noexcept { return budget == 0 || std::holds_alternative<kv::full>(policy); }
  bool needs_mass() const noexcept {
    return std::holds_alternative<kv::h2o>(policy) || std::holds_alternative<kv::tova>(policy);
  }
  bool needs_queries() const noexcept {
    return std::holds_alternative<kv::snapkv>(policy) || std::holds_alternative<kv::expected_attention>(policy);
  }
  bool pre_rope_queries() const noexcept { return std::holds_alternative<kv::expected_attention>(policy); }
  bool needs_gates() const noexcept { return std::holds_alternative<kv::trim_kv>(policy); }

  /// Per-layer budgets. @throws config_error for an invalid setting.
  std::vector<index_t> layer_budgets(index_t layers) const {
    MEMBOUND_EXPECTS(budget >= 0 && buffer >= 1, config_error, "llm::eviction: budget ", budget, " and buffer ", buffer,
                     ", expected >= 0 and >= 1");
    MEMBOUND_EXPECTS(alpha >= 0.0 && alpha <= 1.0, config_error, "llm::eviction: alpha ", alpha, ", expected in [0, 1]");
    if (alloc != allocation::pyramid || budget == 0) return std::vector<index_t>(static_cast<std::size_t>(layers), budget);
    const index_t n = pyramid_length > 0 ? pyramid_length : 4 * budget;
    MEMBOUND_EXPECTS(n >= budget, config_error, "llm::eviction: pyramid_length ", n, " below the budget ", budget);
    const double ratio = 1.0 - static_cast<double>(budget) / static_cast<double>(n);
    // no protected window: a head's count is all the policy's to fill (kvpress protects SnapKV's
    // observation window inside the count; with it every budget below beta x window falls back
    // to uniform)
    std::vector<index_t> b = kv::pyramid_budgets(n, ratio, layers, 0, pyramid_beta);
    for (index_t& x : b) x = std::max<index_t>(x, 1);
    return b;
  }
};

} // namespace llm
} // namespace v0_1
} // namespace membound
