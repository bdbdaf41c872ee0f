// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::streaming_llm`: attention sinks + the most recent tokens (Xiao et al. 2023; kvpress
/// StreamingLLMPress): with n_kept kept of S, tokens [n_sink, n_sink + S - n_kept) score 0 and
/// the rest 1, so the first `n_sink` and the last n_kept - n_sink survive. Positions are not
/// re-indexed (kvpress's default). O(G S).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>

#include "membound/kv/cache.hpp"
#include "membound/kv/policy.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

struct streaming_llm {
  static constexpr std::string_view name = "streaming_llm";
  index_t n_sink = 4; ///< kept initial tokens

  /// With n_kept < n_sink the sinks alone score 1 and fill the budget among themselves (ties:
  /// select_kept keeps the newer), as kvpress, whose pruned slice then runs to the end.
  /// @throws shape_error; config_error for n_sink < 0.
  void score(const prefill_inputs& in, index_t n_kept, view<float> scores) const {
    detail::expect_scores(in, scores, "streaming_llm::score");
    const index_t s = in.length();
    MEMBOUND_EXPECTS(n_sink >= 0, config_error, "streaming_llm: n_sink = ", n_sink, ", expected >= 0");
    const index_t pruned = std::max<index_t>(0, s - n_kept);
    for (index_t g = 0; g < in.kv_heads(); ++g)
      for (index_t i = 0; i < s; ++i) scores(g, i) = (i >= n_sink && i < n_sink + pruned) ? 0.0f : 1.0f;
  }
  /// Decode mode: the first `n_sink` positions score +inf, every other token its position, so a
  /// cut to a budget keeps the sinks and the most recent tokens.
  template <class T>
  void score_decode(const cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    const index_t n = c.size(b, g);
    MEMBOUND_EXPECTS(static_cast<index_t>(out.size()) >= n, shape_error, "streaming_llm::score_decode: ", out.size(),
                     " scores for ", n, " tokens");
    for (const auto& pg : c.pages(b, g)) // page by page: contiguous positions
      for (index_t j = 0; j < pg.tokens; ++j) {
        const std::int32_t p = pg.positions[j];
        out[static_cast<std::size_t>(pg.first + j)] =
            p < n_sink ? std::numeric_limits<float>::infinity() : static_cast<float>(p);
      }
  }
};
static_assert(prefill_scorer<streaming_llm>);

} // namespace kv
} // namespace v0_1
} // namespace membound
