// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::embedding`: rows of a (V,D) table selected by token id, as torch.nn.Embedding,
/// forward (a gather) and backward (a scatter-add into the table's gradient in position order, so
/// repeated ids accumulate deterministically). O(N D); no allocation.

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>

#include "membound/nn/parameters.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Token embedding: a table (V,D) ("<prefix>.weight", N(0,1) init as torch.nn.Embedding).
struct embedding {
  view<float> weight, grad_weight; ///< (V,D)

  static embedding make(parameters& p, const std::string& prefix, index_t vocab, index_t dim, std::mt19937& gen) {
    MEMBOUND_EXPECTS(vocab >= 1 && dim >= 1, config_error, "embedding \"", prefix, "\": V = ", vocab, ", D = ", dim,
                     ", expected >= 1");
    embedding e;
    e.weight = p.add(prefix + ".weight", {vocab, dim});
    e.grad_weight = p.grad(prefix + ".weight");
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float& w : e.weight.span()) w = nd(gen);
    return e;
  }
  /// y[i] = weight[ids[i]]. @throws lookup_error naming an id outside [0, V); shape_error.
  void forward(std::span<const std::int64_t> ids, view<float> y /*(N,D)*/) const {
    const index_t v = weight.extent(0), d = weight.extent(1);
    MEMBOUND_EXPECTS(y.rank() == 2 && y.extent(0) == static_cast<index_t>(ids.size()) && y.extent(1) == d && y.stride(1) == 1,
                     shape_error, "embedding::forward: y is (", y.extent(0), ",", y.rank() == 2 ? y.extent(1) : 0,
                     "), expected (", ids.size(), ",", d, ")");
    for (std::size_t i = 0; i < ids.size(); ++i) {
      MEMBOUND_EXPECTS(ids[i] >= 0 && ids[i] < v, lookup_error, "embedding: id ", ids[i], " at position ", i,
                       " outside [0, ", v, ")");
      std::copy_n(weight.data() + ids[i] * weight.stride(0), d, y.data() + static_cast<index_t>(i) * y.stride(0));
    }
  }
  /// grad_weight[ids[i]] += dy[i], in position order (deterministic; repeated ids accumulate).
  void backward(std::span<const std::int64_t> ids, view<const float> dy /*(N,D)*/) const {
    const index_t v = weight.extent(0), d = weight.extent(1);
    MEMBOUND_EXPECTS(dy.rank() == 2 && dy.extent(0) == static_cast<index_t>(ids.size()) && dy.extent(1) == d &&
                         dy.stride(1) == 1,
                     shape_error, "embedding::backward: dy is (", dy.extent(0), ",", dy.rank() == 2 ? dy.extent(1) : 0,
                     "), expected (", ids.size(), ",", d, ")");
    for (std::size_t i = 0; i < ids.size(); ++i) {
      MEMBOUND_EXPECTS(ids[i] >= 0 && ids[i] < v, lookup_error, "embedding: id ", ids[i], " at position ", i,
                       " outside [0, ", v, ")");
      float* g = grad_weight.data() + ids[i] * grad_weight.stride(0);
      const float* s = dy.data() + static_cast<index_t>(i) * dy.stride(0);
      for (index_t j = 0; j < d; ++j) g[j] += s[j];
    }
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
