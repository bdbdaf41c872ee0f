// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The scalar oracle of `nn::causal_attention`: causal grouped-query attention with an
/// optional TRIM-KV retention bias, forward and backward, as plain loops templated on the element
/// type (float or double), so that tests check the backward against central finite differences in
/// double precision and the tiled float kernel against this one.
///
/// Per sequence b, query head h (KV head g = h / (H/G)), query t and key i <= t:
///     s(t,i) = scale q_t . k_i + (t - i) log beta_i       (log beta: (B,G,T), 0 when absent)
///     o_t    = sum_i softmax_i(s(t,.)) v_i,    lse_t = log sum_i exp s(t,i)
/// Backward, with P = softmax and D_t = dO_t . o_t: dS = P (dO v^T - D), dq = scale dS k,
/// dk = scale dS^T q, dv = P^T dO, d log beta_i = sum_{h in g, t >= i} dS(t,i) (t - i).
/// Shapes: q, o, dq, dO (B,T,H,D); k, v, dk, dv (B,T,G,D); lse (B,H,T). O(B H T^2 D), no
/// allocation beyond one row of scores.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace ref {

/// o and lse of causal GQA attention (see the file comment). Outputs are overwritten.
template <class T>
void causal_attention_forward(view<const T> q, view<const T> k, view<const T> v, view<T> o, view<T> lse, T scale,
                              view<const T> log_beta = view<const T>()) {
  const index_t nb = q.extent(0), nt = q.extent(1), nh = q.extent(2), nd = q.extent(3), ng = k.extent(2);
  const index_t group = nh / ng;
  std::vector<T> s(static_cast<std::size_t>(nt));
  for (index_t b = 0; b < nb; ++b)
    for (index_t h = 0; h < nh; ++h) {
      const index_t g = h / group;
      for (index_t t = 0; t < nt; ++t) {
        T m = -std::numeric_limits<T>::infinity();
        for (index_t i = 0; i <= t; ++i) {
          T dot = 0;
          for (index_t d = 0; d < nd; ++d) dot += q(b, t, h, d) * k(b, i, g, d);
          T si = scale * dot;
          if (log_beta.data() != nullptr) si += static_cast<T>(t - i) * log_beta(b, g, i);
          s[static_cast<std::size_t>(i)] = si;
          m = std::max(m, si);
        }
        T sum = 0;
        for (index_t i = 0; i <= t; ++i) sum += std::exp(s[static_cast<std::size_t>(i)] - m);
        const T l = m + std::log(sum);
        lse(b, h, t) = l;
        for (index_t d = 0; d < nd; ++d) {
          T acc = 0;
          for (index_t i = 0; i <= t; ++i) acc += std::exp(s[static_cast<std::size_t>(i)] - l) * v(b, i, g, d);
          o(b, t, h, d) = acc;
        }
      }
    }
}

/// dq, dk, dv (and d log beta when `d_log_beta` is given) of the forward above, from its o and lse.
/// Outputs are overwritten.
template <class T>
void causal_attention_backward(view<const T> q, view<const T> k, view<const T> v, view<const T> o, view<const T> lse,
                               view<const T> dout, view<T> dq, view<T> dk, view<T> dv, T scale,
                               view<const T> log_beta = view<const T>(), view<T> d_log_beta = view<T>()) {
  const index_t nb = q.extent(0), nt = q.extent(1), nh = q.extent(2), nd = q.extent(3), ng = k.extent(2);
  const index_t group = nh / ng;
  const bool bias = log_beta.data() != nullptr, want_dlb = d_log_beta.data() != nullptr;
  for (index_t b = 0; b < nb; ++b) {
    for (index_t t = 0; t < nt; ++t)
      for (index_t d = 0; d < nd; ++d) {
        for (index_t h = 0; h < nh; ++h) dq(b, t, h, d) = 0;
        for (index_t g = 0; g < ng; ++g) dk(b, t, g, d) = dv(b, t, g, d) = 0;
      }
    if (want_dlb)
      for (index_t g = 0; g < ng; ++g)
        for (index_t t = 0; t < nt; ++t) d_log_beta(b, g, t) = 0;
    for (index_t h = 0; h < nh; ++h) {
      const index_t g = h / group;
      for (index_t t = 0; t < nt; ++t) {
        T dd = 0;
        for (index_t d = 0; d < nd; ++d) dd += dout(b, t, h, d) * o(b, t, h, d);
        for (index_t i = 0; i <= t; ++i) {
          T dot = 0, dp = 0;
          for (index_t d = 0; d < nd; ++d) {
            dot += q(b, t, h, d) * k(b, i, g, d);
            dp += dout(b, t, h, d) * v(b, i, g, d);
          }
          T si = scale * dot;
          if (bias) si += static_cast<T>(t - i) * log_beta(b, g, i);
          const T p = std::exp(si - lse(b, h, t)), ds = p * (dp - dd);
          if (want_dlb) d_log_beta(b, g, i) += ds * static_cast<T>(t - i);
          for (index_t d = 0; d < nd; ++d) {
            dq(b, t, h, d) += scale * ds * k(b, i, g, d);
            dk(b, i, g, d) += scale * ds * q(b, t, h, d);
            dv(b, i, g, d) += p * dout(b, t, h, d);
          }
        }
      }
    }
  }
}

} // namespace ref
} // namespace v0_1
} // namespace membound
