// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Token selection and the generation loop: `llm::sampler` (greedy, temperature, top-k,
/// top-p, in transformers' order: temperature, then top-k, then top-p over the survivors'
/// softmax) with a seeded generator, and `llm::generate` (prefill a prompt, then decode until a
/// stop token or max_new_tokens, streaming each token to a callback with the cache bytes per layer).
///
/// Reproducibility: one draw per sampled token from std::mt19937_64 seeded with `seed`, turned
/// into a double in [0, 1) from its top 53 bits (not through std::uniform_real_distribution, whose
/// algorithm differs between standard libraries), so a seed gives the same tokens everywhere the
/// logits are the same. Greedy picks the first maximum (the lowest id among ties), as torch.argmax.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/llm/model.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// How the next token is chosen. temperature 0 is greedy (top_k and top_p are then ignored).
struct sampling {
  float temperature = 0.0f; ///< >= 0; logits are divided by it
  index_t top_k = 0;        ///< keep the k most likely tokens (0: all)
  float top_p = 1.0f;       ///< keep the smallest most-likely set whose probability reaches top_p, (0, 1]
  std::uint64_t seed = 0;   ///< seeds the generator

  /// @throws config_error naming the bad setting.
  void validate() const {
    MEMBOUND_EXPECTS(std::isfinite(temperature) && temperature >= 0.0f, config_error, "llm::sampling: temperature ",
                     temperature, ", expected finite >= 0");
    MEMBOUND_EXPECTS(top_k >= 0, config_error, "llm::sampling: top_k ", top_k, ", expected >= 0");
    MEMBOUND_EXPECTS(top_p > 0.0f && top_p <= 1.0f, config_error, "llm::sampling: top_p ", top_p, ", expected in (0, 1]");
  }
};

/// Picks tokens from logits. Keeps its own generator and an O(V) workspace (no allocation
/// after the first call for a vocabulary size).
class sampler {
public:
  /// @throws config_error for invalid settings.
  explicit sampler(sampling s) : s_(s), gen_(s.seed) { s_.validate(); }

  const sampling& settings() const noexcept { return s_; }

  /// The lowest index of the largest logit. @throws shape_error for empty logits.
  static std::int32_t argmax(std::span<const float> logits) {
    MEMBOUND_EXPECTS(!logits.empty(), shape_error, "llm::sampler: empty logits");
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  /// The next token. O(V log V) when sampling with top-k or top-p, O(V) otherwise.
  /// @throws shape_error for empty logits; config_error when a logit is NaN.
  std::int32_t pick(std::span<const float> logits) {
    MEMBOUND_EXPECTS(!logits.empty(), shape_error, "llm::sampler: empty logits");
    for (std::size_t i = 0; i < logits.size(); ++i)
      MEMBOUND_EXPECTS(!std::isnan(logits[i]), config_error, "llm::sampler: logit ", i, " is NaN");
    if (s_.temperature == 0.0f) return argmax(logits);
    const std::size_t V = logits.size();
    idx_.resize(V);
    std::iota(idx_.begin(), idx_.end(), 0);
    // candidates sorted by logit, descending, ties by id (a stable order)
    const auto by_logit = [&](std::int32_t a, std::int32_t b) {
      const float la = logits[static_cast<std::size_t>(a)], lb = logits[static_cast<std::size_t>(b)];
      return la > lb || (la == lb && a < b);
    };
    std::size_t n = V;
    if (s_.top_k > 0 && static_cast<std::size_t>(s_.top_k) < V) {
      n = static_cast<std::size_t>(s_.top_k);
      std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(n), idx_.end(), by_logit);
    } else if (s_.top_p < 1.0f) {
      std::sort(idx_.begin(), idx_.end(), by_logit);
    }
    // softmax of the n candidates at the temperature, in double
    prob_.resize(n);
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[static_cast<std::size_t>(idx_[i])]));
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      total += prob_[i] = std::exp((static_cast<double>(logits[static_cast<std::size_t>(idx_[i])]) - mx) / s_.temperature);
    if (s_.top_p < 1.0f) { // candidates are sorted: keep the shortest prefix reaching top_p
      double cum = 0.0;
      std::size_t keep = 0;
      while (keep < n && cum < static_cast<double>(s_.top_p) * total) cum += prob_[keep++];
      n = std::max<std::size_t>(keep, 1);
      total = std::accumulate(prob_.begin(), prob_.begin() + static_cast<std::ptrdiff_t>(n), 0.0);
    }
    const double u = static_cast<double>(gen_() >> 11) * 0x1.0p-53 * total;
    double cum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      cum += prob_[i];
      if (u < cum) return idx_[i];
    }
    return idx_[n - 1];
  }

private:
  sampling s_;
  std::mt19937_64 gen_;
  std::vector<std::int32_t> idx_;
  std::vector<double> prob_;
};

/// What the streaming callback sees after each generated token.
struct step_info {
  std::int32_t token = 0;                  ///< the token just chosen
  index_t step = 0;                        ///< 0 for the first new token
  std::span<const float> logits;           ///< the logits it was chosen from (V)
  std::span<const std::size_t> layer_bytes; ///< cache bytes in use per layer after the step's forward
  std::size_t cache_bytes = 0;             ///< their sum
};

/// Options of `generate`.
struct generate_options {
  index_t max_new_tokens = 64;
  sampling sample{};
  std::vector<std::int32_t> stop_tokens;              ///< generation ends after emitting one of these
  std::function<bool(const step_info&)> on_token;     ///< streaming; return false to stop early
};

/// Prefills `prompt` into sequence 0 of a batch-1 state (which may already hold earlier turns)
/// and generates up to max_new_tokens tokens, returning them (a stop token is included). The
/// last returned token is not fed to the model (its logits would go unused): a follow-up turn's
/// prompt starts with it.
/// @throws config_error (settings, a state with batch != 1, context exhausted), lookup_error,
/// budget_error as model::prefill / decode.
inline std::vector<std::int32_t> generate(const model& m, state& s, std::span<const std::int32_t> prompt,
                                          const generate_options& opt) {
  MEMBOUND_EXPECTS(s.batch() == 1, config_error, "llm::generate: the state has batch ", s.batch(), ", expected 1");
  MEMBOUND_EXPECTS(opt.max_new_tokens >= 0, config_error, "llm::generate: max_new_tokens ", opt.max_new_tokens,
                   ", expected >= 0");
  MEMBOUND_EXPECTS(!prompt.empty() || s.position(0) > 0, config_error, "llm::generate: empty prompt and empty state");
  sampler pick(opt.sample);
  const index_t V = m.config().vocab_size;
  array<float> logits({1, V}, uninitialized);
  std::vector<std::size_t> bytes(static_cast<std::size_t>(s.layers()));
  std::vector<std::int32_t> out;
  if (opt.max_new_tokens == 0) {
    m.prefill(s, 0, prompt);
    return out;
  }
  MEMBOUND_EXPECTS(!prompt.empty(), config_error, "llm::generate: empty prompt (the last token's logits are needed)");
  m.prefill(s, 0, prompt, logits.view());
  for (index_t step = 0; step < opt.max_new_tokens; ++step) {
    const std::int32_t tok = pick.pick(logits.span());
    out.push_back(tok);
    std::size_t total = 0;
    for (index_t l = 0; l < s.layers(); ++l) total += bytes[static_cast<std::size_t>(l)] = s.cache(l).used_bytes();
    const step_info info{tok, step, logits.span(), bytes, total};
    const bool stop = std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), tok) != opt.stop_tokens.end();
    if (opt.on_token && !opt.on_token(info)) break;
    if (stop || step + 1 == opt.max_new_tokens) break;
    m.decode(s, std::span<const std::int32_t>(&tok, 1), logits.view());
  }
  return out;
}

} // namespace llm
} // namespace v0_1
} // namespace membound
