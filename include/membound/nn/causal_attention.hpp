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
/// Tiling: query rows in blocks of `block`; a block's scores against its keys [0, t1) go through the
/// GEMM entry into a per-thread (block, T) tile, so memory is O(threads block T), never (T,T).
/// Cost: forward 2 H T^2 D flops per sequence (causal half of 4 H T^2 D), backward twice that plus
/// the recomputation. Threads: OpenMP over the B G (sequence, KV head) pairs; each pair is computed
/// in a fixed order by one thread (the GEMM entry runs single-threaded inside the parallel region),
/// so results do not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <span>

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
  /// fit; config_error for a block outside [1, max_block].
  void forward(view<const float> q, view<const float> k, view<const float> v, view<float> o, view<float> lse,
               array<float>& workspace, view<const float> log_beta = view<const float>()) const {
    const auto s = check(q, k, v, o, lse, log_beta, "forward");
    const index_t per = prepare(workspace, s.t, 1);
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
          // Unnormalised softmax (E = exp(s - max)) in one pass per row; the 1 / sum moves to the
          // output rows after E v, as in FlashAttention.
          float inv[max_block];
          for (index_t r = 0; r < rows; ++r) {
            float* row = sc.data() + r * s.t;
            const std::size_t len = static_cast<std::size_t>(t0 + r + 1);
            const float m = cpu::max(std::span<const float>(row, len));
            const float sum = cpu::exp_shifted(std::span<const float>(row, len), m, std::span<float>(row, len));
            lh[(t0 + r) * lse.stride(2)] = m + std::log(sum);
            inv[r] = 1.0f / sum;
            std::fill(row + len, row + t1, 0.0f);
          }
          const auto ob = oh.slice(0, t0, t1); // (rows,D)
          cpu::gemm(view<const float>(sc), vg.slice(0, 0, t1), ob);
          for (index_t r = 0; r < rows; ++r)
            for (index_t d = 0; d < s.d; ++d) ob(r, d) *= inv[r];
        }
      }
    });
  }

  /// dq (B,T,H,D), dk and dv (B,T,G,D) and, when given, d_log_beta (B,G,T), all overwritten, from the
  /// forward's inputs, its o and lse, and dO. @throws shape_error naming the shapes that do not fit.
  void backward(view<const float> q, view<const float> k, view<const float> v, view<const float> o,
                view<const float> lse, view<const float> dout, view<float> dq, view<float> dk, view<float> dv,
                array<float>& workspace, view<const float> log_beta = view<const float>(),
                view<float> d_log_beta = view<float>()) const {
    const auto s = check(q, k, v, o, lse, log_beta, "backward");
    expect_like(dout, q, "dO", "q");
    expect_like(dq, q, "dq", "q");
    expect_like(dk, k, "dk", "k");
    expect_like(dv, k, "dv", "k");
    const bool want_dlb = d_log_beta.data() != nullptr;
    MEMBOUND_EXPECTS(!want_dlb || log_beta.data() != nullptr, shape_error,
                     "causal_attention::backward: d_log_beta given without log_beta");
    if (want_dlb) expect_like(d_log_beta, log_beta, "d_log_beta", "log_beta");
    const index_t per = prepare(workspace, s.t, 2);
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

  static index_t threads() noexcept {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  /// Grows the workspace to `tiles` (block,T) tiles per thread; returns the floats per thread.
  index_t prepare(array<float>& ws, index_t t, index_t tiles) const {
    const index_t per = tiles * block * std::max<index_t>(t, 1), need = per * threads();
    if (ws.size() < need) ws = array<float>({need}, uninitialized); // (threads tiles block T)
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
