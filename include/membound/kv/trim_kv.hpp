// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::trim_kv`: TRIM-KV's retention-based eviction ("Cache What Lasts", Bui et al. 2025).
/// Each token carries, per KV head, log beta in (-inf, 0] from a retention gate at the moment it
/// is written (kept in the cache's state slot `slot`); at step t its score is
///   score_i = (t - pos_i + age_offset) * log beta_i,  i.e. log(beta_i^age),
/// and when a head holds budget + buffer tokens its `budget` best survive (see kv::evictor).
/// Age convention (it changes the kept set, because log beta <= 0 makes a constant shift favour
/// old high-beta tokens over young low-beta ones):
///  - `age_offset = 0` (default): the paper's beta^(t - i), the newest token (pos = t) has age 0
///    and is never evicted by its own step (score 0 is the maximum);
///  - `trim_kv::reference_code()`, age_offset = 2: the official TrimKVCache.compress, whose
///    exponent is n_seen + 1 - pos with n_seen = t + 1 tokens seen, so the newest token has age 2.
/// No sinks are hard-coded (they emerge from training). Optional threshold mode (`alpha` > 0):
/// keep exactly the tokens with beta^age >= alpha (the budget is then an outcome, bounded only by
/// the cache's pool). Scoring is O(S) per head, no K/V reads.
///
/// One-shot mode (`score`, after a prefill of S tokens at positions 0 .. S-1, step t = S - 1):
/// the same score from `prefill_inputs::log_beta` (G,S), so a prefill can be cut to a budget
/// before decoding starts.

#include <cmath>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct trim_kv {
  static constexpr std::string_view name = "trim_kv";
  index_t age_offset = 0; ///< 0: the paper's t - i; 2: the reference code's
  double alpha = 0.0;     ///< > 0: threshold mode, keep beta^age >= alpha
  index_t slot = 0;       ///< the cache state slot holding log beta

  /// The reference implementation's age convention (newest token age 2).
  static constexpr trim_kv reference_code() noexcept { return {2, 0.0, 0}; }

  /// out[i] = (t - pos_i + age_offset) * log beta_i for the tokens of head (b, g) at step t.
  /// @throws shape_error if out is shorter than the head; lookup_error for a bad slot.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) const {
    const index_t n = c.size(b, g);
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "trim_kv::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    MEMBOUND_EXPECTS(slot >= 0 && slot < c.state_slots(), lookup_error, "trim_kv: state slot ", slot, " of ",
                     c.state_slots());
    const index_t slots = c.state_slots();
    const double t0 = static_cast<double>(t) + static_cast<double>(age_offset);
    for (const auto& pg : c.pages(b, g)) // page by page: contiguous positions and state
      for (index_t j = 0; j < pg.tokens; ++j)
        out[static_cast<std::size_t>(pg.first + j)] =
            static_cast<float>((t0 - pg.positions[j]) * static_cast<double>(pg.state[j * slots + slot]));
  }
  /// One-shot mode: scores (G,S) = (S - 1 - i + age_offset) * log_beta(g, i).
  /// @throws shape_error when `in.log_beta` is not (G,S) (or the inputs do not fit together).
  void score(const prefill_inputs& in, index_t /*n_kept*/, view<float> scores) const {
    detail::expect_scores(in, scores, "trim_kv::score");
    const index_t g_n = in.kv_heads(), s = in.length();
    MEMBOUND_EXPECTS(in.log_beta.rank() == 2 && in.log_beta.extent(0) == g_n && in.log_beta.extent(1) == s, shape_error,
                     "trim_kv::score: prefill_inputs::log_beta must be (G,S) = (", g_n, ",", s, "); got rank ",
                     in.log_beta.rank(), " (", in.log_beta.extent(0), ",", in.log_beta.rank() == 2 ? in.log_beta.extent(1) : -1,
                     ")");
    const double t0 = static_cast<double>(s - 1) + static_cast<double>(age_offset);
    for (index_t g = 0; g < g_n; ++g)
      for (index_t i = 0; i < s; ++i)
        scores(g, i) = static_cast<float>((t0 - static_cast<double>(i)) * static_cast<double>(in.log_beta(g, i)));
  }
  /// Threshold mode (alpha > 0): kv::evictor keeps exactly the tokens that `passes`, with no budget.
  bool threshold_mode() const noexcept { return alpha > 0.0; }
  /// In threshold mode, whether a score survives: score >= log(alpha).
  bool passes(float score) const noexcept { return alpha > 0.0 && static_cast<double>(score) >= std::log(alpha); }
};
static_assert(prefill_scorer<trim_kv>);

} // namespace kv
} // namespace v0_1
} // namespace membound
