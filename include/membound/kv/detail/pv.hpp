// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The P V micro-kernel shared by decode (attend.hpp) and prefill (attend_prefill.hpp)
/// attention: o_r(e ..) = alpha_r o_r(e ..) + sum_{i < n} p[r][i] v_i(e ..) for NR output rows,
/// C vector batches of the head dim in registers, each V row segment loaded (and widened from
/// bf16) once for the NR rows. Not part of the public API.

#include <cmath>
#include <cstddef>

#include "membound/backend/cpu/matvec.hpp"
#include "membound/backend/cpu/simd.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {
namespace detail {

/// C full batches from column e. `p` indexes as p[r][i] (rows of probabilities); V rows are
/// `ldv` elements apart.
template <class A, class T, int NR, int C, class P>
MEMBOUND_ALWAYS_INLINE void pv_block(const T* v, std::size_t ldv, index_t n, std::size_t e, const P& p,
                                     const float* alpha, float* const* o) noexcept {
  using V = cpu::detail::fbatch<A>;
  constexpr std::size_t L = cpu::detail::lanes<A>;
  V acc[NR][C];
  for (int r = 0; r < NR; ++r) {
    const V a(alpha[r]);
    for (int c = 0; c < C; ++c) acc[r][c] = cpu::detail::loadu<A>(o[r] + e + c * L) * a;
  }
  for (index_t i = 0; i < n; ++i) {
    const T* row = v + static_cast<std::size_t>(i) * ldv + e;
    V x[C];
    for (int c = 0; c < C; ++c) x[c] = cpu::detail::load_w<A>(row + c * L);
    for (int r = 0; r < NR; ++r) {
      const V pr(p[r][i]);
      for (int c = 0; c < C; ++c) acc[r][c] = cpu::detail::fma<A>(pr, x[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < C; ++c) cpu::detail::storeu<A>(o[r] + e + c * L, acc[r][c]);
}

/// The last, partial batch (rest < lanes elements) from column e.
template <class A, class T, int NR, class P>
MEMBOUND_ALWAYS_INLINE void pv_tail(const T* v, std::size_t ldv, index_t n, std::size_t e, std::size_t rest, const P& p,
                                    const float* alpha, float* const* o) noexcept {
  using V = cpu::detail::fbatch<A>;
  V acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = cpu::detail::load_partial<A>(o[r] + e, rest, 0.0f) * V(alpha[r]);
  for (index_t i = 0; i < n; ++i) {
    const V x = cpu::detail::load_w_partial<A>(v + static_cast<std::size_t>(i) * ldv + e, rest);
    for (int r = 0; r < NR; ++r) acc[r] = cpu::detail::fma<A>(V(p[r][i]), x, acc[r]);
  }
  for (int r = 0; r < NR; ++r) cpu::detail::store_partial<A>(o[r] + e, rest, acc[r]);
}

/// One step of the scalar online softmax (the scalar twins of both kernels): with logit z and
/// value row v, rescale the running output row o, sum l and max m when z raises the max, then
/// add exp(z - m) v. Starts from m = -inf, l = 0, o = 0.
template <class T>
inline void online_softmax_step(float* o, const T* v, index_t d, float z, float& m, float& l) noexcept {
  if (z > m) {
    const float alpha = std::exp(m - z); // 0 for the first token (m = -inf)
    for (index_t e = 0; e < d; ++e) o[e] *= alpha;
    l *= alpha;
    m = z;
  }
  const float p = std::exp(z - m);
  l += p;
  for (index_t e = 0; e < d; ++e) o[e] += p * static_cast<float>(v[e]);
}

} // namespace detail
} // namespace kv
} // namespace v0_1
} // namespace membound
