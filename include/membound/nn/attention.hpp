// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::attention`: small dense scaled-dot-product attention for short sequences (vision
/// windows, memory read-outs): o = softmax(q k^T * scale + bias [+ causal mask]) v per head.
/// The KV-cache attention for long sequences belongs to kv/ and is tiled; this one materialises
/// the (T,S) score matrix per head in a caller-visible workspace, so it is for T, S up to a few
/// thousand. Shapes: q (H,T,D), k (H,S,D), v (H,S,Dv), o (H,T,Dv), optional additive bias
/// (H,T,S) (EfficientViT's attention biases). Cost: 2 H T S (D + Dv) flops through the GEMM entry.

#include <cmath>
#include <limits>

#include "membound/backend/cpu/exp.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/core/array.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Settings: scale (0 means 1/sqrt(D)) and a causal mask (query t sees keys s <= t + S - T,
/// i.e. the last T of S positions, as in decoding with a prefix).
struct attention_config {
  float scale = 0.0f;
  bool causal = false;
};

/// o = softmax(q k^T * scale + bias) v for every head. `scores` is a workspace grown to (T,S).
/// @throws shape_error naming the shapes that do not fit.
inline void attention(view<const float> q /*(H,T,D)*/, view<const float> k /*(H,S,D)*/, view<const float> v /*(H,S,Dv)*/,
                      view<float> o /*(H,T,Dv)*/, array<float>& scores, const attention_config& cfg = {},
                      view<const float> bias = view<const float>() /*(H,T,S) or empty*/) {
  MEMBOUND_EXPECTS(q.rank() == 3 && k.rank() == 3 && v.rank() == 3 && o.rank() == 3, shape_error,
                   "attention: q, k, v, o must be rank 3 (H,T,D), (H,S,D), (H,S,Dv), (H,T,Dv)");
  const index_t h = q.extent(0), t = q.extent(1), d = q.extent(2), s = k.extent(1), dv = v.extent(2);
  MEMBOUND_EXPECTS(k.extent(0) == h && k.extent(2) == d && v.extent(0) == h && v.extent(1) == s && o.extent(0) == h &&
                       o.extent(1) == t && o.extent(2) == dv,
                   shape_error, "attention: q (", h, ",", t, ",", d, ") k (", k.extent(0), ",", s, ",", k.extent(2),
                   ") v (", v.extent(0), ",", v.extent(1), ",", dv, ") o (", o.extent(0), ",", o.extent(1), ",",
                   o.extent(2), ") do not fit");
  const bool has_bias = bias.data() != nullptr;
  MEMBOUND_EXPECTS(!has_bias || (bias.rank() == 3 && bias.extent(0) == h && bias.extent(1) == t && bias.extent(2) == s),
                   shape_error, "attention: bias must be (", h, ",", t, ",", s, ")");
  MEMBOUND_EXPECTS(!cfg.causal || t <= s, shape_error, "attention: causal with T = ", t, " > S = ", s);
  if (h == 0 || t == 0) return;
  if (scores.rank() != 2 || scores.extent(0) < t || scores.extent(1) != s) scores = array<float>({t, s}, uninitialized);
  const float scale = cfg.scale != 0.0f ? cfg.scale : 1.0f / std::sqrt(static_cast<float>(d));
  auto sc = scores.view().slice(0, 0, t); // (T,S)
  for (index_t hh = 0; hh < h; ++hh) {
    cpu::gemm(q.select(0, hh), k.select(0, hh).transpose(), sc, scale, 0.0f); // (T,S)
    for (index_t i = 0; i < t; ++i) {
      float* row = sc.data() + i * sc.stride(0);
      if (has_bias)
        for (index_t j = 0; j < s; ++j) row[j] += bias(hh, i, j);
      if (cfg.causal)
        for (index_t j = i + s - t + 1; j < s; ++j) row[j] = -std::numeric_limits<float>::infinity();
    }
    cpu::softmax(view<const float>(sc), sc);
    cpu::gemm(view<const float>(sc), v.select(0, hh), o.select(0, hh)); // (T,Dv)
  }
}

} // namespace nn
} // namespace v0_1
} // namespace membound
