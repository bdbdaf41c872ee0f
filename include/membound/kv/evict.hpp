// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Decode-time eviction over a `kv::cache`: `kv::evictor` applies a decode scorer to every
/// KV head of a sequence after a step. A head holding at least budget + buffer tokens is cut to
/// its `budget` best (buffer = 1: exact per-step eviction; a larger buffer amortises the cut, the
/// head then oscillates between budget and budget + buffer - 1 tokens). Survivors keep their
/// temporal order; ties keep the newer token. The evictor owns its scratch (sized by `reserve`,
/// grown on first use), so steady-state steps do not allocate. Cost per evicting head: scoring
/// plus an O(S) selection plus the in-place compaction of the cache.

#include <cstdint>
#include <span>
#include <vector>

#include "membound/kv/cache.hpp"
#include "membound/kv/select.hpp"
#include "membound/kv/trim_kv.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// A policy that scores a head's cached tokens at decode step t from the cache (and, for snapkv
/// and expected_attention, the recent queries it points at). A policy may also offer
/// `score_decode(c, b, g, t, out, std::vector<float>& work)`, taking scratch it grows as needed;
/// kv::evictor then passes its own, so steady-state steps do not allocate.
template <class P, class T>
concept decode_scorer = requires(const P& p, const cache<T>& c, index_t b, index_t g, std::int32_t t, std::span<float> out) {
  { P::name } -> std::convertible_to<std::string_view>;
  p.score_decode(c, b, g, t, out);
};
static_assert(decode_scorer<trim_kv, float>);
static_assert(decode_scorer<trim_kv, bf16>);

/// Stores one decode step's attention mass (kv::attend_decode's `mass` output, (G,S_max)) into
/// state slot `slot` of every token of sequence b: added to it (`accumulate`, H2O's running sum)
/// or written over it (TOVA's latest attention). Walks the pages, O(G S).
/// @throws shape_error when mass is not (G, >= the longest head); lookup_error for a bad slot.
template <class T>
void record_attention(cache<T>& c, index_t b, view<const float> mass /*(G,S_max)*/, index_t slot, bool accumulate) {
  MEMBOUND_EXPECTS(slot >= 0 && slot < c.state_slots(), lookup_error, "record_attention: state slot ", slot, " of ",
                   c.state_slots());
  MEMBOUND_EXPECTS(mass.rank() == 2 && mass.extent(0) == c.kv_heads(), shape_error, "record_attention: mass must be (G,S) with G = ",
                   c.kv_heads());
  const index_t slots = c.state_slots();
  for (index_t g = 0; g < c.kv_heads(); ++g) {
    MEMBOUND_EXPECTS(mass.extent(1) >= c.size(b, g), shape_error, "record_attention: mass has ", mass.extent(1),
                     " columns, head ", g, " holds ", c.size(b, g), " tokens");
    const float* row = &mass(g, 0);
    const index_t stride = mass.stride(1);
    for (const auto& pg : c.pages(b, g)) {
      float* st = pg.state + slot;
      const float* m = row + pg.first * stride;
      if (accumulate)
        for (index_t j = 0; j < pg.tokens; ++j) st[j * slots] += m[j * stride];
      else
        for (index_t j = 0; j < pg.tokens; ++j) st[j * slots] = m[j * stride];
    }
  }
}

struct evictor {
  std::vector<float> scores;
  std::vector<index_t> idx;
  std::vector<std::int32_t> kept;
  std::vector<float> work; ///< scratch lent to policies that take it (grown on first use)

  /// Sizes the scratch for heads of up to n tokens.
  void reserve(index_t n) {
    if (static_cast<index_t>(scores.size()) >= n) return;
    scores.resize(static_cast<std::size_t>(n));
    idx.resize(static_cast<std::size_t>(n));
    kept.resize(static_cast<std::size_t>(n));
  }

  /// After step t of sequence b: every KV head holding >= budget + buffer tokens keeps its
  /// `budget` best under policy p (or, for trim_kv in threshold mode, every head keeps exactly the
  /// tokens that pass). Returns the number of tokens evicted.
  /// @throws budget_error for budget < 1 or buffer < 1.
  template <class P, class T>
    requires decode_scorer<P, T>
  index_t step(cache<T>& c, index_t b, const P& p, std::int32_t t, index_t budget, index_t buffer = 1) {
    MEMBOUND_EXPECTS(budget >= 1 && buffer >= 1, budget_error, "evictor::step: budget ", budget, ", buffer ", buffer,
                     "; expected >= 1 each");
    index_t evicted = 0;
    for (index_t g = 0; g < c.kv_heads(); ++g) {
      const index_t n = c.size(b, g);
      // Optional policy hooks: `evicts` (false: never cut, kv::full) and `threshold_mode()` with
      // `passes(score)` (keep exactly the passing tokens, kv::trim_kv with alpha > 0).
      if constexpr (requires { P::evicts; })
        if (!P::evicts) continue;
      bool threshold = false;
      if constexpr (requires { p.threshold_mode(); }) threshold = p.threshold_mode();
      if (!threshold && n < budget + buffer) continue;
      reserve(n);
      const std::span<float> sc(scores.data(), static_cast<std::size_t>(n));
      if constexpr (requires { p.score_decode(c, b, g, t, sc, work); }) p.score_decode(c, b, g, t, sc, work);
      else p.score_decode(c, b, g, t, sc);
      index_t m = 0;
      if (threshold) {
        if constexpr (requires { p.passes(0.0f); })
          for (index_t i = 0; i < n; ++i)
            if (p.passes(sc[static_cast<std::size_t>(i)])) kept[static_cast<std::size_t>(m++)] = static_cast<std::int32_t>(i);
        if (m == n) continue;
      } else {
        m = budget;
        select_kept_row(sc, m, idx, kept);
      }
      c.keep(b, g, std::span<const std::int32_t>(kept.data(), static_cast<std::size_t>(m)));
      evicted += n - m;
    }
    return evicted;
  }
};

} // namespace kv
} // namespace v0_1
} // namespace membound
