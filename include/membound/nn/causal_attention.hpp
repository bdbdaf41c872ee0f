// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::causal_attention`: causal grouped-query self-attention for training a decoder,
/// forward and backward (FlashAttention-2's recomputation scheme, Dao 2023), with TRIM-KV's
/// retention bias as an optional input (Bui et al. 2025, "Cache What Lasts": the log-bias form of
/// retention-gated attention that its training kernel uses).
///
/// Per sequence b, query head h (KV head g = h / (H/G)), query t and key i <= t:
///     s(t,i) = scale q_t . k_i + (t - i) log beta_i        (log beta (B,G,T) optional, <= 0)
///     o_t    = sum_i softmax_i(s(t,.)) v_i,     lse_t = log sum_{i<=t} exp s(t,i)
/// Backward recomputes P = exp(s - lse) tile by tile from the saved lse, with D_t = dO_t . o_t:
///     dS = P (dO v^T - D);  dq = scale dS k;  dk = scale sum_h dS^T q;  dv = sum_h P^T dO;
///     d log beta_i = sum_{h in g} sum_{t >= i} dS(t,i) (t - i).
/// `ref::causal_attention_*` is the scalar oracle (any element type; the tests check it against
/// central finite differences in double and this kernel against it).
///
/// Shapes: q, o, dq, dO (B,T,H,D); k, v, dk, dv (B,T,G,D); lse (B,H,T); log beta and its gradient
/// (B,G,T). Head vectors must be contiguous (stride 1 in D); any other strides are accepted.
/// Tiling: query rows in blocks of `block`; a block's scores against its keys [0, t1) go into a
/// per-thread (block, T) tile, so memory is O(threads (block + D) T), never (T,T). SIMD backends
/// (the default) run the register-tiled panels of backend/cpu/attention_panels.hpp: K^T, V^T
/// and K, V are packed once per (sequence, KV head) and shared by the group's query heads; the
/// scores leave registers already scaled and biased, in base 2 (log2 e folded into the scale and
/// the bias: the softmax and P take the branch-free `exp2_clamped` of backend/cpu/simd.hpp, whose
/// terms below 2^-126.5 are 0), and in the backward as P = exp(s - lse), masked, and
/// dS = P (dP - D) (one pass over both products on AVX-512). Only keys at or below a row tile's
/// last row are computed. The scalar backend runs the same tiles through the GEMM entry.
/// Cost: forward 2 H T^2 D flops per sequence (causal half of 4 H T^2 D), backward twice that plus
/// the recomputation. Threads: OpenMP over the B G (sequence, KV head) pairs; each pair is computed
/// in a fixed order by one thread (the GEMM entry runs single-threaded inside the parallel region),
/// so results do not depend on the thread count. SIMD and scalar backends differ in rounding (the
/// fast exp2, FMA and summation order: about 1e-6 relative).

#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <utility>

#include "membound/backend/cpu/attention_panels.hpp"
#include "membound/backend/cpu/exp.hpp"
#include "membound/backend/cpu/gemm.hpp"
#include "membound/backend/cpu/reduce.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Causal GQA attention with an optional retention bias; see the file comment. An aggregate of
/// settings; the calls take their workspace from the caller (grown on demand, reused across calls).
struct causal_attention {
  static constexpr index_t max_block = 512;
  float scale = 0.0f;  ///< 0 means 1 / sqrt(D)
  index_t block = 64;  ///< query rows per tile, in [1, max_block]

  /// o (B,T,H,D) and lse (B,H,T), overwritten. @throws shape_error naming the shapes that do not
  /// fit; config_error for a block outside [1, max_block]. `B`: the CPU backend (SIMD: the
  /// register-tiled panels of backend/cpu/attention_panels.hpp; scalar: the GEMM entry on tiles).
  template <class B = backend::best_cpu>
  void forward(view<const float> q, view<const float> k, view<const float> v, view<float> o, view<float> lse,
               array<float>& workspace, view<const float> log_beta = view<const float>()) const {
    cpu::detail::check_cpu_backend<B>();
    const auto s = check(q, k, v, o, lse, log_beta, "forward");
    if constexpr (std::is_same_v<B, backend::scalar>)
      forward_gemm(s, q, k, v, o, lse, workspace, log_beta);
    else
      forward_panels<typename B::arch>(s, q, k, v, o, lse, workspace, log_beta);
  }

  /// dq (B,T,H,D), dk and dv (B,T,G,D) and, when given, d_log_beta (B,G,T), all overwritten, from the
  /// forward's inputs, its o and lse, and dO. @throws shape_error naming the shapes that do not fit.
  template <class B = backend::best_cpu>
  void backward(view<const float> q, view<const float> k, view<const float> v, view<const float> o,
                view<const float> lse, view<const float> dout, view<float> dq, view<float> dk, view<float> dv,
                array<float>& workspace, view<const float> log_beta = view<const float>(),
                view<float> d_log_beta = view<float>()) const {
    cpu::detail::check_cpu_backend<B>();
    const auto s = check(q, k, v, o, lse, log_beta, "backward");
    expect_like(dout, q, "dO", "q");
    expect_like(dq, q, "dq", "q");
    expect_like(dk, k, "dk", "k");
    expect_like(dv, k, "dv", "k");
    MEMBOUND_EXPECTS(d_log_beta.data() == nullptr || log_beta.data() != nullptr, shape_error,
                     "causal_attention::backward: d_log_beta given without log_beta");
    if (d_log_beta.data() != nullptr) expect_like(d_log_beta, log_beta, "d_log_beta", "log_beta");
    if constexpr (std::is_same_v<B, backend::scalar>)
      backward_gemm(s, q, k, v, o, lse, dout, dq, dk, dv, workspace, log_beta, d_log_beta);
    else
      backward_panels<typename B::arch>(s, q, k, v, o, lse, dout, dq, dk, dv, workspace, log_beta, d_log_beta);
  }

private:
  struct sizes {
    index_t b, t, h, g, d, group;
    float scale;
  };

  template <class U, class V>
  static void expect_like(const view<U>& x, const view<V>& ref, const char* xn, const char* rn) {
    bool ok = x.rank() == ref.rank();
    for (int i = 0; ok && i < x.rank(); ++i) ok = x.extent(i) == ref.extent(i);
    if (ok && x.rank() == 4) ok = x.stride(3) == 1;
    MEMBOUND_EXPECTS(ok, shape_error, "causal_attention: ", xn, " has rank ", x.rank(), " and extents (",
                     x.rank() > 0 ? x.extent(0) : 0, ",", x.rank() > 1 ? x.extent(1) : 0, ",", x.rank() > 2 ? x.extent(2) : 0,
                     ",...), expected the shape of ", rn, " (", ref.rank() > 0 ? ref.extent(0) : 0, ",",
                     ref.rank() > 1 ? ref.extent(1) : 0, ",", ref.rank() > 2 ? ref.extent(2) : 0, ",...) with contiguous heads");
  }

  sizes check(const view<const float>& q, const view<const float>& k, const view<const float>& v, const view<const float>& o,
              const view<const float>& lse, const view<const float>& log_beta, const char* fn) const {
    MEMBOUND_EXPECTS(block >= 1 && block <= max_block, config_error, "causal_attention: block = ", block, ", expected 1..",
                     max_block);
    MEMBOUND_EXPECTS(q.rank() == 4 && k.rank() == 4 && q.stride(3) == 1 && k.stride(3) == 1, shape_error, "causal_attention::",
                     fn, ": q must be (B,T,H,D) and k (B,T,G,D) with contiguous heads; ranks ", q.rank(), " and ", k.rank());
    sizes s{q.extent(0), q.extent(1), q.extent(2), k.extent(2), q.extent(3), 1, 0.0f};
    MEMBOUND_EXPECTS(k.extent(0) == s.b && k.extent(1) == s.t && k.extent(3) == s.d && s.g >= 1 && s.h % s.g == 0, shape_error,
                     "causal_attention::", fn, ": q is (", s.b, ",", s.t, ",", s.h, ",", s.d, ") and k (", k.extent(0), ",",
                     k.extent(1), ",", s.g, ",", k.extent(3), "): expected (B,T,G,D) with H = ", s.h, " a multiple of G");
    expect_like(v, k, "v", "k");
    expect_like(o, q, "o", "q");
    MEMBOUND_EXPECTS(lse.rank() == 3 && lse.extent(0) == s.b && lse.extent(1) == s.h && lse.extent(2) == s.t, shape_error,
                     "causal_attention::", fn, ": lse must be (", s.b, ",", s.h, ",", s.t, ")");
    MEMBOUND_EXPECTS(log_beta.data() == nullptr || (log_beta.rank() == 3 && log_beta.extent(0) == s.b &&
                                                    log_beta.extent(1) == s.g && log_beta.extent(2) == s.t),
                     shape_error, "causal_attention::", fn, ": log_beta must be (", s.b, ",", s.g, ",", s.t, ")");
    s.group = s.h / s.g;
    s.scale = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(s.d));
    return s;
  }

  // ---- SIMD backends: register-tiled panels (backend/cpu/attention_panels.hpp) ----
  //
  // Per (sequence, KV head) pair, K^T (and for the backward V^T) in the chunk panels of
  // cpu::panel::pack_panels and V (for the backward K) as (Tp, Dp) rows are packed once, zero padded
  // to Tp = T rounded up to the panel chunk and Dp = D rounded up to the vector width, and reused by
  // every query head of the group and every block. A block's scores
  // (rows, Tp) go from registers through the epilogue (scale, retention bias; in the backward
  // also exp(s - lse) and the causal mask, then dS = P (dP - D)) into a per-thread tile; the row
  // products read only the keys at or below each tile's last row.

  static constexpr index_t round_up(index_t x, index_t m) noexcept { return (x + m - 1) / m * m; }
  static constexpr float log2e = 1.44269504088896341f, ln2 = 0.693147180559945309f;

  /// Lane offsets 0, 1, ... as floats (for the retention bias and the causal mask).
  template <class A>
  static cpu::detail::fbatch<A> lane_offsets() noexcept {
    alignas(64) static constexpr float iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return cpu::detail::fbatch<A>::load_aligned(iota);
  }

  /// The per-thread scratch of the panel path; offsets in floats, each a multiple of 16.
  struct panel_layout {
    index_t tp, ld, dp, kt, vt, kp, vp, lb, s, ds, xq, xdo, ob, dk, dv, rowv, total;
    panel_layout(const sizes& s_, index_t block, index_t chunk, index_t lanes, bool backward) {
      tp = round_up(std::max<index_t>(s_.t, 1), chunk);
      ld = tp % 256 == 0 ? tp + 16 : tp; // score tile rows 4 KiB apart would share L1 sets
      dp = round_up(s_.d, lanes);
      index_t at = 0;
      const auto take = [&](index_t n) {
        const index_t o = at;
        at += round_up(n, 16);
        return o;
      };
      kt = take(s_.d * tp);
      vt = backward ? take(s_.d * tp) : at;
      kp = backward ? take(tp * dp) : at;
      vp = backward ? at : take(tp * dp);
      lb = take(tp);
      s = take(block * ld);
      ds = backward ? take(block * ld) : at;
      xq = backward ? take(block * dp) : at;
      xdo = backward ? take(block * dp) : at;
      ob = take(block * dp);
      dk = backward ? take(tp * dp) : at;
      dv = backward ? take(tp * dp) : at;
      rowv = take(2 * block);
      total = at;
    }
  };

  /// log beta of (sequence b, KV head g) into lbp (tp), zero padded; false when there is none.
  static bool pack_log_beta(const view<const float>& log_beta, index_t b, index_t g, index_t tp, float* lbp) {
    if (log_beta.data() == nullptr) return false;
    const float* lb = log_beta.data() + b * log_beta.stride(0) + g * log_beta.stride(1);
    for (index_t i = 0; i < tp; ++i) lbp[i] = i < log_beta.extent(2) ? lb[i * log_beta.stride(2)] : 0.0f;
    return true;
  }

  /// Copies the pair's (T, D) rows at `src` (row stride ld) into yr (tp, dp), zero padded.
  static void pack_rows(const float* src, index_t ld, index_t t, index_t d, index_t tp, index_t dp, float* yr) {
    for (index_t i = 0; i < tp; ++i)
      for (index_t c = 0; c < dp; ++c) yr[i * dp + c] = i < t && c < d ? src[i * ld + c] : 0.0f;
  }

  template <class A>
  void forward_panels(const sizes& s, view<const float> q, view<const float> k, view<const float> v, view<float> o,
                      view<float> lse, array<float>& workspace, view<const float> log_beta) const {
    using V = cpu::detail::fbatch<A>;
    using P = cpu::panel::blocking<A>;
    constexpr index_t C = P::chunk;
    const panel_layout lay(s, block, C, P::lanes, false);
    const index_t tp = lay.tp, ld = lay.ld, dp = lay.dp;
    const index_t per = prepare(workspace, lay.total);
    run_pairs(s, workspace.data(), per, [&](index_t b, index_t g, float* ws) {
      float *kt = ws + lay.kt, *vp = ws + lay.vp, *lbp = ws + lay.lb, *sc = ws + lay.s, *ob = ws + lay.ob;
      float* inv = ws + lay.rowv;
      cpu::panel::pack_panels<A>(k.data() + b * k.stride(0) + g * k.stride(2), k.stride(1), s.t, s.d, tp, kt);
      pack_rows(v.data() + b * v.stride(0) + g * v.stride(2), v.stride(1), s.t, s.d, tp, dp, vp);
      // The scores go to the tile in base 2 (times log2 e, folded into the scale and the packed
      // log beta), so that the softmax takes one branch-free exp2 per score.
      const bool bias = pack_log_beta(log_beta, b, g, tp, lbp);
      if (bias)
        for (index_t i = 0; i < tp; ++i) lbp[i] *= log2e;
      const V vscale2(s.scale * log2e), iota = lane_offsets<A>();
      for (index_t h = g * s.group; h < (g + 1) * s.group; ++h) {
        const float* qh = q.data() + b * q.stride(0) + h * q.stride(2);
        float* oh = o.data() + b * o.stride(0) + h * o.stride(2);
        float* lh = lse.data() + b * lse.stride(0) + h * lse.stride(1);
        for (index_t t0 = 0; t0 < s.t; t0 += block) {
          const index_t t1 = std::min(s.t, t0 + block), rows = t1 - t0;
          cpu::panel::nt<A>(
              rows, s.d, qh + t0 * q.stride(1), q.stride(1), kt, [&](index_t, index_t r1) { return round_up(t0 + r1, C); },
              [&](index_t r, index_t j, V acc) MEMBOUND_INLINE_LAMBDA {
                V y = acc * vscale2;
                if (bias) y = cpu::detail::fma<A>(V(static_cast<float>(t0 + r - j)) - iota, V::load_unaligned(lbp + j), y);
                y.store_unaligned(sc + r * ld + j);
              });
          softmax_rows_base2<A>(sc, ld, t0, t1, lh, lse.stride(2), inv);
          cpu::panel::bc<A>(rows, dp, sc, ld, 1, vp, dp, ob, dp, 1.0f, inv, false,
                            [&](index_t, index_t i1) { return std::pair<index_t, index_t>(0, t0 + i1); });
          for (index_t r = 0; r < rows; ++r) std::copy_n(ob + r * dp, s.d, oh + (t0 + r) * o.stride(1));
        }
      }
    });
  }

  template <class A>
  void backward_panels(const sizes& s, view<const float> q, view<const float> k, view<const float> v, view<const float> o,
                       view<const float> lse, view<const float> dout, view<float> dq, view<float> dk, view<float> dv,
                       array<float>& workspace, view<const float> log_beta, view<float> d_log_beta) const {
    using V = cpu::detail::fbatch<A>;
    using P = cpu::panel::blocking<A>;
    constexpr index_t C = P::chunk, L = P::lanes;
    const panel_layout lay(s, block, C, L, true);
    const index_t tp = lay.tp, ld = lay.ld, dp = lay.dp;
    const index_t per = prepare(workspace, lay.total);
    run_pairs(s, workspace.data(), per, [&](index_t b, index_t g, float* ws) {
      float *kt = ws + lay.kt, *vt = ws + lay.vt, *kp = ws + lay.kp, *lbp = ws + lay.lb;
      float *pt = ws + lay.s, *dst = ws + lay.ds, *xq = ws + lay.xq, *xdo = ws + lay.xdo, *ob = ws + lay.ob;
      float *dka = ws + lay.dk, *dva = ws + lay.dv, *delta = ws + lay.rowv, *lrow = delta + block;
      const float *kg = k.data() + b * k.stride(0) + g * k.stride(2), *vg = v.data() + b * v.stride(0) + g * v.stride(2);
      cpu::panel::pack_panels<A>(kg, k.stride(1), s.t, s.d, tp, kt);
      cpu::panel::pack_panels<A>(vg, v.stride(1), s.t, s.d, tp, vt);
      pack_rows(kg, k.stride(1), s.t, s.d, tp, dp, kp);
      std::fill(dka, dka + s.t * dp, 0.0f);
      std::fill(dva, dva + s.t * dp, 0.0f);
      const bool bias = pack_log_beta(log_beta, b, g, tp, lbp);
      if (bias)
        for (index_t i = 0; i < tp; ++i) lbp[i] *= log2e;
      float* dlb = d_log_beta.data() != nullptr ? d_log_beta.data() + b * d_log_beta.stride(0) + g * d_log_beta.stride(1) : nullptr;
      const index_t dlbs = dlb != nullptr ? d_log_beta.stride(2) : 0;
      if (dlb != nullptr)
        for (index_t t = 0; t < s.t; ++t) dlb[t * dlbs] = 0.0f;
      const V vscale2(s.scale * log2e), iota = lane_offsets<A>(), zero(0.0f);
      for (index_t h = g * s.group; h < (g + 1) * s.group; ++h) {
        const float* qh = q.data() + b * q.stride(0) + h * q.stride(2);
        const float* oh = o.data() + b * o.stride(0) + h * o.stride(2);
        const float* doh = dout.data() + b * dout.stride(0) + h * dout.stride(2);
        float* dqh = dq.data() + b * dq.stride(0) + h * dq.stride(2);
        const float* lh = lse.data() + b * lse.stride(0) + h * lse.stride(1);
        for (index_t t0 = 0; t0 < s.t; t0 += block) {
          const index_t t1 = std::min(s.t, t0 + block), rows = t1 - t0;
          pack_rows(qh + t0 * q.stride(1), q.stride(1), rows, s.d, rows, dp, xq);
          pack_rows(doh + t0 * dout.stride(1), dout.stride(1), rows, s.d, rows, dp, xdo);
          for (index_t r = 0; r < rows; ++r) {
            const float* orow = oh + (t0 + r) * o.stride(1);
            float dd = 0.0f;
            for (index_t c = 0; c < s.d; ++c) dd += xdo[r * dp + c] * orow[c];
            delta[r] = dd;
            lrow[r] = -log2e * lh[(t0 + r) * lse.stride(2)];
          }
          // Keys of a row tile: up to its last row, rounded to the tile's key step; the rest of
          // [0, t1) is zero.
          const auto cols = [&](index_t r0, index_t r1) {
            const index_t end = round_up(t0 + r1, P::wide ? C / 2 : C);
            if (end < t1)
              for (index_t r = r0; r < r1; ++r) {
                std::fill(pt + r * ld + end, pt + r * ld + t1, 0.0f);
                std::fill(dst + r * ld + end, dst + r * ld + t1, 0.0f);
              }
            return end;
          };
          // P = exp(scale q k^T + bias - lse), zero above the diagonal, and dS = P (dO v^T - D),
          // both from registers: one pass over both products where 32 registers hold the two
          // tiles (AVX-512), else two passes (dS reading P back).
          // In base 2: y = (scale s + bias - lse) log2 e, with log2 e folded into the scale, the
          // packed log beta and lrow, so that the exponential is one branch-free exp2_clamped.
          const auto prob = [&](index_t r, index_t j, V sa) MEMBOUND_INLINE_LAMBDA {
            const index_t t = t0 + r;
            if (j > t) return zero;
            V y = cpu::detail::fma<A>(sa, vscale2, V(lrow[r]));
            if (bias) y = cpu::detail::fma<A>(V(static_cast<float>(t - j)) - iota, V::load_unaligned(lbp + j), y);
            const V e = cpu::detail::exp2_clamped<A>(y);
            return j + L - 1 > t ? xsimd::select(iota > V(static_cast<float>(t - j)), zero, e) : e;
          };
          if constexpr (P::wide) {
            cpu::panel::nt2<A>(rows, s.d, xq, dp, kt, xdo, dp, vt, cols, [&](index_t r, index_t j, V sa, V dpa) MEMBOUND_INLINE_LAMBDA {
              const V e = prob(r, j, sa);
              e.store_unaligned(pt + r * ld + j);
              (e * (dpa - V(delta[r]))).store_unaligned(dst + r * ld + j);
            });
          } else {
            cpu::panel::nt<A>(rows, s.d, xq, dp, kt, cols, [&](index_t r, index_t j, V sa) MEMBOUND_INLINE_LAMBDA {
              prob(r, j, sa).store_unaligned(pt + r * ld + j);
            });
            cpu::panel::nt<A>(rows, s.d, xdo, dp, vt, cols, [&](index_t r, index_t j, V dpa) MEMBOUND_INLINE_LAMBDA {
              (V::load_unaligned(pt + r * ld + j) * (dpa - V(delta[r]))).store_unaligned(dst + r * ld + j);
            });
          }
          if (dlb != nullptr)
            for (index_t r = 0; r < rows; ++r) {
              const index_t t = t0 + r;
              const float* dr = dst + r * ld;
              for (index_t i = 0; i <= t; ++i) dlb[i * dlbs] += dr[i] * static_cast<float>(t - i);
            }
          // dv[j] += sum_r P[r, j] dO_r and dk[j] += scale sum_r dS[r, j] q_r over keys j < t1 and the
          // rows at or below each key; dq block = scale dS K.
          const auto rows_of_keys = [&](index_t i0, index_t) { return std::pair<index_t, index_t>(std::max<index_t>(0, i0 - t0), rows); };
          cpu::panel::bc<A, 4>(t1, dp, pt, 1, ld, xdo, dp, dva, dp, 1.0f, nullptr, true, rows_of_keys);
          cpu::panel::bc<A, 4>(t1, dp, dst, 1, ld, xq, dp, dka, dp, s.scale, nullptr, true, rows_of_keys);
          cpu::panel::bc<A>(rows, dp, dst, ld, 1, kp, dp, ob, dp, s.scale, nullptr, false,
                            [&](index_t, index_t i1) { return std::pair<index_t, index_t>(0, t0 + i1); });
          for (index_t r = 0; r < rows; ++r) std::copy_n(ob + r * dp, s.d, dqh + (t0 + r) * dq.stride(1));
        }
      }
      for (index_t t = 0; t < s.t; ++t) {
        std::copy_n(dka + t * dp, s.d, dk.data() + b * dk.stride(0) + t * dk.stride(1) + g * dk.stride(2));
        std::copy_n(dva + t * dp, s.d, dv.data() + b * dv.stride(0) + t * dv.stride(1) + g * dv.stride(2));
      }
    });
  }

  // ---- scalar backend: the GEMM entry on (block, T) tiles ----

  void forward_gemm(const sizes& s, view<const float> q, view<const float> k, view<const float> v, view<float> o,
                    view<float> lse, array<float>& workspace, view<const float> log_beta) const {
    const index_t per = prepare(workspace, block * std::max<index_t>(s.t, 1));
    run_pairs(s, workspace.data(), per, [&](index_t b, index_t g, float* ws) {
      const auto kg = k.select(0, b).select(1, g), vg = v.select(0, b).select(1, g); // (T,D)
      const float* lb = log_beta.data() != nullptr ? log_beta.data() + b * log_beta.stride(0) + g * log_beta.stride(1) : nullptr;
      const index_t lbs = log_beta.data() != nullptr ? log_beta.stride(2) : 0;
      for (index_t h = g * s.group; h < (g + 1) * s.group; ++h) {
        const auto qh = q.select(0, b).select(1, h);   // (T,D)
        const auto oh = o.select(0, b).select(1, h);   // (T,D)
        float* lh = lse.data() + b * lse.stride(0) + h * lse.stride(1);
        for (index_t t0 = 0; t0 < s.t; t0 += block) {
          const index_t t1 = std::min(s.t, t0 + block), rows = t1 - t0;
          const view<float> sc = tile(ws, rows, t1, s.t); // (rows,t1)
          scores(qh, kg, sc, t0, t1, s.scale, lb, lbs);
          float inv[max_block];
          softmax_rows(sc.data(), s.t, t0, t1, lh, lse.stride(2), inv);
          const auto ob = oh.slice(0, t0, t1); // (rows,D)
          cpu::gemm(view<const float>(sc), vg.slice(0, 0, t1), ob);
          for (index_t r = 0; r < rows; ++r)
            for (index_t d = 0; d < s.d; ++d) ob(r, d) *= inv[r];
        }
      }
    });
  }

  void backward_gemm(const sizes& s, view<const float> q, view<const float> k, view<const float> v, view<const float> o,
                     view<const float> lse, view<const float> dout, view<float> dq, view<float> dk, view<float> dv,
                     array<float>& workspace, view<const float> log_beta, view<float> d_log_beta) const {
    const bool want_dlb = d_log_beta.data() != nullptr;
    const index_t per = prepare(workspace, 2 * block * std::max<index_t>(s.t, 1));
    run_pairs(s, workspace.data(), per, [&](index_t b, index_t g, float* ws) {
      const auto kg = k.select(0, b).select(1, g), vg = v.select(0, b).select(1, g);     // (T,D)
      const auto dkg = dk.select(0, b).select(1, g), dvg = dv.select(0, b).select(1, g); // (T,D)
      for (index_t t = 0; t < s.t; ++t)
        for (index_t d = 0; d < s.d; ++d) dkg(t, d) = dvg(t, d) = 0.0f;
      const float* lb = log_beta.data() != nullptr ? log_beta.data() + b * log_beta.stride(0) + g * log_beta.stride(1) : nullptr;
      const index_t lbs = log_beta.data() != nullptr ? log_beta.stride(2) : 0;
      float* dlb = want_dlb ? d_log_beta.data() + b * d_log_beta.stride(0) + g * d_log_beta.stride(1) : nullptr;
      const index_t dlbs = want_dlb ? d_log_beta.stride(2) : 0;
      if (want_dlb)
        for (index_t t = 0; t < s.t; ++t) dlb[t * dlbs] = 0.0f;
      for (index_t h = g * s.group; h < (g + 1) * s.group; ++h) {
        const auto qh = q.select(0, b).select(1, h), oh = o.select(0, b).select(1, h);     // (T,D)
        const auto doh = dout.select(0, b).select(1, h);                                   // (T,D)
        const auto dqh = dq.select(0, b).select(1, h);                                     // (T,D)
        const float* lh = lse.data() + b * lse.stride(0) + h * lse.stride(1);
        for (index_t t0 = 0; t0 < s.t; t0 += block) {
          const index_t t1 = std::min(s.t, t0 + block), rows = t1 - t0;
          const view<float> p = tile(ws, rows, t1, s.t);                     // (rows,t1)
          const view<float> ds = tile(ws + block * s.t, rows, t1, s.t);      // (rows,t1)
          scores(qh, kg, p, t0, t1, s.scale, lb, lbs);
          cpu::gemm(doh.slice(0, t0, t1), vg.slice(0, 0, t1).transpose(), ds); // dP (rows,t1)
          for (index_t r = 0; r < rows; ++r) {
            const index_t t = t0 + r, len = t + 1;
            float* pr = p.data() + r * s.t;
            float* dr = ds.data() + r * s.t;
            const std::span<float> ps(pr, static_cast<std::size_t>(len));
            cpu::exp_shifted(std::span<const float>(ps), lh[t * lse.stride(2)], ps); // P = exp(s - lse)
            float dd = 0.0f;
            for (index_t d = 0; d < s.d; ++d) dd += doh(t, d) * oh(t, d);
            if (dlb == nullptr) {
              for (index_t i = 0; i < len; ++i) dr[i] = pr[i] * (dr[i] - dd);
            } else if (dlbs == 1) {
              for (index_t i = 0; i < len; ++i) {
                dr[i] = pr[i] * (dr[i] - dd);
                dlb[i] += dr[i] * static_cast<float>(t - i);
              }
            } else {
              for (index_t i = 0; i < len; ++i) {
                dr[i] = pr[i] * (dr[i] - dd);
                dlb[i * dlbs] += dr[i] * static_cast<float>(t - i);
              }
            }
            std::fill(pr + len, pr + t1, 0.0f);
            std::fill(dr + len, dr + t1, 0.0f);
          }
          cpu::gemm(view<const float>(p).transpose(), doh.slice(0, t0, t1), dvg.slice(0, 0, t1), 1.0f, 1.0f); // (t1,D)
          cpu::gemm(view<const float>(ds), kg.slice(0, 0, t1), dqh.slice(0, t0, t1), s.scale, 0.0f);          // (rows,D)
          cpu::gemm(view<const float>(ds).transpose(), qh.slice(0, t0, t1), dkg.slice(0, 0, t1), s.scale, 1.0f); // (t1,D)
        }
      }
    });
  }

  /// Rows t0..t1-1 of a score tile (row stride ld, row t holding keys 0..t): in place, the
  /// unnormalised softmax E = exp(s - max) with zeros up to key t1; lse_t into lse_row (stride
  /// lse_stride) and 1 / sum into inv (the normalisation moves to the output rows after E V, as in
  /// FlashAttention).
  static void softmax_rows(float* tile, index_t ld, index_t t0, index_t t1, float* lse_row, index_t lse_stride, float* inv) {
    for (index_t r = 0; r < t1 - t0; ++r) {
      float* row = tile + r * ld;
      const std::size_t len = static_cast<std::size_t>(t0 + r + 1);
      const float m = cpu::max(std::span<const float>(row, len));
      const float sum = cpu::exp_shifted(std::span<const float>(row, len), m, std::span<float>(row, len));
      lse_row[(t0 + r) * lse_stride] = m + std::log(sum);
      inv[r] = 1.0f / sum;
      std::fill(row + len, row + t1, 0.0f);
    }
  }

  /// softmax_rows for a tile of base-2 scores y = x log2 e (the panel forward): each row's
  /// exp(x - max) = 2^(y - max y) by exp2_clamped, lse = max y ln 2 + log(sum).
  template <class A>
  static void softmax_rows_base2(float* tile, index_t ld, index_t t0, index_t t1, float* lse_row, index_t lse_stride, float* inv) {
    for (index_t r = 0; r < t1 - t0; ++r) {
      float* row = tile + r * ld;
      const std::size_t len = static_cast<std::size_t>(t0 + r + 1);
      const float m = cpu::detail::max<A>(row, len);
      const float sum = cpu::detail::exp2_shifted<A>(row, len, m);
      lse_row[(t0 + r) * lse_stride] = m * ln2 + std::log(sum);
      inv[r] = 1.0f / sum;
      std::fill(row + len, row + t1, 0.0f);
    }
  }

  static index_t threads() noexcept {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  /// Grows the workspace to `per` floats per thread; returns `per`.
  static index_t prepare(array<float>& ws, index_t per) {
    const index_t need = per * threads();
    if (ws.size() < need) ws = array<float>({need}, uninitialized); // (threads, per)
    return per;
  }

  static view<float> tile(float* p, index_t rows, index_t cols, index_t ld) {
    const index_t ext[2] = {rows, cols}, str[2] = {ld, 1};
    return view<float>(p, std::span<const index_t>(ext, 2), std::span<const index_t>(str, 2));
  }

  /// sc (rows,t1) = scale q[t0,t1) k[0,t1)^T + (t - i) log beta_i over i <= t (entries past the
  /// diagonal are left as the GEMM wrote them; callers use only [0, t] of row t).
  static void scores(const view<const float>& qh, const view<const float>& kg, const view<float>& sc, index_t t0,
                     index_t t1, float scale, const float* lb, index_t lbs) {
    cpu::gemm(qh.slice(0, t0, t1), kg.slice(0, 0, t1).transpose(), sc, scale, 0.0f);
    if (lb == nullptr) return;
    for (index_t r = 0; r < t1 - t0; ++r) {
      float* row = sc.data() + r * sc.stride(0);
      const index_t t = t0 + r;
      for (index_t i = 0; i <= t; ++i) row[i] += static_cast<float>(t - i) * lb[i * lbs];
    }
  }

  /// f(b, g, thread workspace) for every (sequence, KV head) pair, one pair per task.
  template <class F>
  static void run_pairs(const sizes& s, float* ws, index_t per, F&& f) {
    const index_t pairs = s.b * s.g;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t p = 0; p < pairs; ++p) f(p / s.g, p % s.g, ws + omp_get_thread_num() * per);
#else
    (void)per;
    for (index_t p = 0; p < pairs; ++p) f(p / s.g, p % s.g, ws);
#endif
  }
};

} // namespace nn
} // namespace v0_1
} // namespace membound
