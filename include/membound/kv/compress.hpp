// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Applying a budget to the paged cache so the memory is really reclaimed. Every
/// allocator here produces one form, a (G,S) 0/1 "kept" mask per layer, and two functions turn
/// masks into pages:
///  - `kv::uniform_mask`: the same count for every head of a layer (uniform per head; PyramidKV,
///    Cai et al. 2024, is uniform within a layer with `pyramid_budgets`' per-layer count);
///  - `kv::adakv_allocate` (budget.hpp): AdaKV's head-wise split inside one layer (Feng et al.
///    2024);
///  - `kv::global_allocate` (budget.hpp): one budget shared by all heads of all layers, with a
///    per-head floor (AdaKV's safeguard carried across layers; TRIM-KV's `fixed_budget` global
///    mode with its `floor_budget_ratio`);
///  - `kv::append_kept`: writes only the kept rows of a prefill into the cache, so an evicted
///    token never occupies the pool (heads that keep fewer tokens own fewer pages);
///  - `kv::keep_masked`: compacts a cache that already holds the prefill to the kept rows with
///    `cache::keep`, returning the freed pages to the pool for any other head to use.
///
/// kvpress emulates head-wise budgets by masking: every head stores max_g kept_g tokens and the
/// surplus is hidden from attention, so AdaKV saves no memory there. Here a head of the cache
/// owns exactly pages_for(kept_g, page_tokens) pages, and with one model-wide cache (kv_heads =
/// layers x G, head index layer * G + g; see cache.hpp) what one layer gives up another can use.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/kv/budget.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/select.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

namespace detail {

/// Checks that `mask` is a rank-2 0/1 tensor and returns its total of ones. O(G S).
/// @throws shape_error for another rank; config_error naming the first entry that is not 0 or 1.
inline index_t check_mask(view<const std::int32_t> mask, const char* who) {
  MEMBOUND_EXPECTS(mask.rank() == 2, shape_error, who, ": mask must be (G,S); got rank ", mask.rank());
  index_t ones = 0;
  for (index_t g = 0; g < mask.extent(0); ++g)
    for (index_t i = 0; i < mask.extent(1); ++i) {
      const std::int32_t m = mask(g, i);
      MEMBOUND_EXPECTS(m == 0 || m == 1, config_error, who, ": mask(", g, ", ", i, ") = ", m,
                       ", expected 0 (evict) or 1 (keep)");
      ones += m;
    }
  return ones;
}

/// Ones in row g of a checked mask. O(S).
inline index_t mask_row_count(view<const std::int32_t> mask, index_t g) noexcept {
  index_t n = 0;
  for (index_t i = 0; i < mask.extent(1); ++i) n += mask(g, i);
  return n;
}

} // namespace detail

/// Pages an empty cache needs to hold the kept tokens of `mask` (G,S), one head per row:
/// sum over g of pages_for(kept_g, page_tokens). Size a pool with it (sum it over layers for a
/// model-wide cache). O(G S).
/// @throws shape_error, config_error (an entry not 0/1; see append_kept), and config_error from
/// pages_for for page_tokens < 1.
inline index_t pages_for_mask(view<const std::int32_t> mask /*(G,S)*/, index_t page_tokens) {
  detail::check_mask(mask, "kv::pages_for_mask");
  index_t pages = 0;
  for (index_t g = 0; g < mask.extent(0); ++g) pages += pages_for(detail::mask_row_count(mask, g), page_tokens);
  return pages;
}

/// The uniform allocation in mask form: every head (row) of `scores` (G,S) keeps its own n_kept
/// highest scores, mask (G,S) = 1 there and 0 elsewhere. Ties keep the newer token and NaN
/// scores are evicted first, as `select_kept` (and as `adakv_allocate` within a head). PyramidKV
/// (Cai et al. 2024) is this with layer l's count from `pyramid_budgets`. Allocates scratch of
/// G n_kept int32 plus select_kept's S floats and S index_t. O(G S) expected.
/// @throws shape_error when mask is not the shape of scores; budget_error for n_kept < 1 or > S.
inline void uniform_mask(view<const float> scores /*(G,S)*/, index_t n_kept, view<std::int32_t> mask /*(G,S)*/) {
  MEMBOUND_EXPECTS(scores.rank() == 2 && mask.rank() == 2 && mask.extent(0) == scores.extent(0) &&
                       mask.extent(1) == scores.extent(1),
                   shape_error, "kv::uniform_mask: mask (", mask.extent(0), ",", mask.rank() == 2 ? mask.extent(1) : -1,
                   ") must have the shape of scores (", scores.extent(0), ",",
                   scores.rank() == 2 ? scores.extent(1) : -1, ")");
  const index_t g_n = scores.extent(0), s = scores.extent(1);
  MEMBOUND_EXPECTS(n_kept >= 1 && n_kept <= s, budget_error, "kv::uniform_mask: n_kept = ", n_kept, " of ", s,
                   " tokens; expected 1 <= n_kept <= S");
  array<std::int32_t> kept({g_n, n_kept}); // (G,n_kept)
  select_kept(scores, kept.view());
  for (index_t g = 0; g < g_n; ++g) {
    for (index_t i = 0; i < s; ++i) mask(g, i) = 0;
    for (index_t j = 0; j < n_kept; ++j) mask(g, kept(g, j)) = 1;
  }
}

/// Writes the kept tokens of a prefill into the cache, and only them: for each head g of keys
/// and values (G,S,D), the rows i with mask(g, i) = 1, in ascending i, are appended to cache
/// head first_head + g of sequence b with original position first_position + i (and state row
/// state(g, i, :) when a (G,S,state_slots) state is given, else zeros). An evicted token never
/// occupies the pool: head g takes exactly pages_for(size + kept_g) - its pages more pages, so
/// with AdaKV masks (`adakv_allocate`) or a global budget (`global_allocate`) each head owns
/// pages for its own count, not for the largest one (kvpress's masking). For a model-wide cache
/// (kv_heads = layers x G) layer l is first_head = l G. Heads that already hold tokens continue
/// after them.
///
/// All or nothing: the pages every head needs are summed and checked against free_pages()
/// before anything is written. Built on cache::append of N rows (one call per run of
/// consecutive kept rows, at most 256 rows each); no heap allocation. Views may be strided.
/// O(kept (D + state_slots)) plus O(G S) to read the mask.
/// @throws shape_error (keys/values not (G,S,D) with the cache's D, mask not (G,S), state not
/// (G,S,state_slots) or empty); config_error for a mask entry other than 0/1 or positions past
/// INT32_MAX; lookup_error for b out of range or heads [first_head, first_head + G) outside the
/// cache; budget_error naming the pages needed and free when the pool cannot hold the kept
/// tokens (nothing is written).
template <class T>
void append_kept(cache<T>& c, index_t b, index_t first_head, view<const float> keys /*(G,S,D)*/,
                 view<const float> values /*(G,S,D)*/, view<const std::int32_t> mask /*(G,S)*/,
                 std::int32_t first_position = 0, view<const float> state = {} /*(G,S,state_slots) or empty*/) {
  MEMBOUND_EXPECTS(keys.rank() == 3 && values.rank() == 3 && mask.rank() == 2, shape_error,
                   "kv::append_kept: keys and values must be (G,S,D) and mask (G,S); got ranks ", keys.rank(), ", ",
                   values.rank(), ", ", mask.rank());
  const index_t g_n = keys.extent(0), s = keys.extent(1);
  MEMBOUND_EXPECTS(values.extent(0) == g_n && values.extent(1) == s && values.extent(2) == keys.extent(2) &&
                       keys.extent(2) == c.head_dim() && mask.extent(0) == g_n && mask.extent(1) == s,
                   shape_error, "kv::append_kept: keys (", g_n, ",", s, ",", keys.extent(2), "), values (",
                   values.extent(0), ",", values.extent(1), ",", values.extent(2), ") and mask (", mask.extent(0), ",",
                   mask.extent(1), ") must be (G,S,D), (G,S,D), (G,S) with the cache's D = ", c.head_dim());
  const bool has_state = state.size() != 0;
  MEMBOUND_EXPECTS(!has_state || (state.rank() == 3 && state.extent(0) == g_n && state.extent(1) == s &&
                                  state.extent(2) == c.state_slots()),
                   shape_error, "kv::append_kept: state must be (G,S,state_slots) = (", g_n, ",", s, ",",
                   c.state_slots(), ") or empty");
  MEMBOUND_EXPECTS(b >= 0 && b < c.batch(), lookup_error, "kv::append_kept: sequence b = ", b, " out of range [0, ",
                   c.batch(), ")");
  MEMBOUND_EXPECTS(first_head >= 0 && first_head <= c.kv_heads() - g_n, lookup_error,
                   "kv::append_kept: heads [", first_head, ", ", first_head + g_n, ") outside the cache's ",
                   c.kv_heads(), " KV heads");
  MEMBOUND_EXPECTS(s == 0 || first_position <= std::numeric_limits<std::int32_t>::max() - (s - 1), config_error,
                   "kv::append_kept: positions ", first_position, " + [0, ", s, ") pass INT32_MAX");
  detail::check_mask(mask, "kv::append_kept");
  index_t need = 0;
  for (index_t g = 0; g < g_n; ++g) {
    const index_t h = first_head + g, have = c.size(b, h);
    need += pages_for(have + detail::mask_row_count(mask, g), c.page_tokens()) -
            static_cast<index_t>(c.page_ids(b, h).size());
  }
  MEMBOUND_EXPECTS(need <= c.free_pages(), budget_error, "kv::append_kept: heads [", first_head, ", ",
                   first_head + g_n, ") of sequence b = ", b, " need ", need,
                   " more pages for their kept tokens; the pool of ", c.total_pages(), " pages has ", c.free_pages(),
                   " free");

  // Runs of consecutive kept rows go in one cache::append each; positions come from a small
  // stack buffer, so a run longer than it is cut into pieces.
  constexpr index_t chunk = 256;
  std::array<std::int32_t, chunk> pos{};
  for (index_t g = 0; g < g_n; ++g) {
    const view<const float> kg = keys.select(0, g), vg = values.select(0, g); // (S,D) (S,D)
    const view<const float> sg = has_state ? state.select(0, g) : view<const float>(); // (S,state_slots) or empty
    index_t i = 0;
    while (i < s) {
      if (mask(g, i) == 0) {
        ++i;
        continue;
      }
      index_t end = i + 1;
      while (end < s && end - i < chunk && mask(g, end) != 0) ++end;
      const index_t n = end - i;
      for (index_t j = 0; j < n; ++j)
        pos[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(first_position + static_cast<std::int32_t>(i + j));
      c.append(b, first_head + g, kg.slice(0, i, end), vg.slice(0, i, end),
               std::span<const std::int32_t>(pos.data(), static_cast<std::size_t>(n)),
               has_state ? sg.slice(0, i, end) : view<const float>());
      i = end;
    }
  }
}

/// Compacts a cache that already holds a prefill to the kept tokens of `mask` (G,S): head g of
/// the mask is cache head first_head + g of sequence b, which must hold exactly S tokens; its
/// rows with mask(g, i) = 0 are evicted by cache::keep (survivors keep their order, positions
/// and state), and its now-unused tail pages go back to the pool, where any head (another
/// layer's, in a model-wide cache) can take them. This is the reclaiming form for a prefill
/// that had to be in the cache first (e.g. attention read it from there); `append_kept` avoids
/// the peak. Every head is validated before any is compacted (all or nothing). Allocates one
/// scratch of S int32 for the kept indices. O(G S + kept (D + state_slots)).
/// @returns the number of tokens evicted, sum over g of (S - kept_g).
/// @throws shape_error (mask not (G,S), or a head holding other than S tokens, naming it);
/// config_error for a mask entry other than 0/1; lookup_error for b or the heads out of range.
template <class T>
index_t keep_masked(cache<T>& c, index_t b, index_t first_head, view<const std::int32_t> mask /*(G,S)*/) {
  detail::check_mask(mask, "kv::keep_masked");
  const index_t g_n = mask.extent(0), s = mask.extent(1);
  MEMBOUND_EXPECTS(b >= 0 && b < c.batch(), lookup_error, "kv::keep_masked: sequence b = ", b, " out of range [0, ",
                   c.batch(), ")");
  MEMBOUND_EXPECTS(first_head >= 0 && first_head <= c.kv_heads() - g_n, lookup_error, "kv::keep_masked: heads [",
                   first_head, ", ", first_head + g_n, ") outside the cache's ", c.kv_heads(), " KV heads");
  for (index_t g = 0; g < g_n; ++g)
    MEMBOUND_EXPECTS(c.size(b, first_head + g) == s, shape_error, "kv::keep_masked: cache head ", first_head + g,
                     " of sequence b = ", b, " holds ", c.size(b, first_head + g), " tokens; the mask has S = ", s);
  std::vector<std::int32_t> kept;
  kept.reserve(static_cast<std::size_t>(s));
  index_t evicted = 0;
  for (index_t g = 0; g < g_n; ++g) {
    kept.clear();
    for (index_t i = 0; i < s; ++i)
      if (mask(g, i) != 0) kept.push_back(static_cast<std::int32_t>(i));
    evicted += s - static_cast<index_t>(kept.size());
    c.keep(b, first_head + g, kept);
  }
  return evicted;
}

} // namespace kv
} // namespace v0_1
} // namespace membound
