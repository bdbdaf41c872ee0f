// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The ray marcher: volume rendering of opacity, depth and colour through a density field,
/// with an estimator deciding which steps to evaluate (Max 1995; the NeRF quadrature).
///
/// For each ray, t runs over the part inside the field's box, from t_start = max(near, entry):
///   - uniform stepping: step k covers [t_start + k dt, t_start + (k+1) dt), dt = `step`;
///   - cone stepping (cone_angle > 0): s_{k+1} = s_k + clamp(s_k cone_angle, step, max_step), as
///     instant-ngp and nerfacc do for large scenes;
///   and the sample of step k sits at its midpoint t_k with length delta_k. Steps whose midpoint
/// lies past the exit are not taken. The estimator is asked for `window` steps at a time which of
/// them may hold density (estimator.hpp); the field is evaluated at those midpoints in batches of
/// `batch` points, and compositing stops once the transmittance falls below `early_stop`:
///   alpha_k = 1 - exp(-sigma_k delta_k), w_k = T_k alpha_k, T_{k+1} = T_k (1 - alpha_k),
///   opacity = sum w_k, depth = sum w_k t_k (not normalised), rgb = sum w_k c_k.
/// `samples` counts field evaluations (a batch is evaluated whole, so up to batch-1 evaluations
/// past the termination point count too, for every estimator alike).
///
/// Threads: OpenMP over tiles of `tile` rays; every ray is computed by one thread in a fixed
/// order, so the results are identical for any thread count.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/occupancy/dense.hpp"
#include "membound/occupancy/estimator.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// Settings of `march`.
struct march_settings {
  float step = 0.05f;                                   ///< dt (uniform) or minimal step (cone), > 0
  float cone_angle = 0.0f;                              ///< >= 0; 0 = uniform stepping
  float max_step = std::numeric_limits<float>::max();   ///< cone stepping's largest step, >= step
  float near = 0.0f;                                    ///< >= 0
  float early_stop = 1e-4f;                             ///< stop when T < early_stop; in [0,1)
  index_t window = 256;                                 ///< steps per estimator query, >= 1
  index_t batch = 32;                                   ///< points per field call, >= 1
  index_t tile = 32;                                    ///< rays per thread task, >= 1
  index_t max_steps = index_t{1} << 24;                 ///< steps per ray at most (a stated bound)

  /// @throws config_error naming the first bad setting (a zero, negative or NaN step included).
  void validate() const {
    MEMBOUND_EXPECTS(std::isfinite(step) && step > 0, config_error, "march_settings: step ", step, ", expected > 0");
    MEMBOUND_EXPECTS(std::isfinite(cone_angle) && cone_angle >= 0, config_error, "march_settings: cone_angle ",
                     cone_angle, ", expected >= 0");
    MEMBOUND_EXPECTS(!(max_step < step), config_error, "march_settings: max_step ", max_step, " is below step ", step);
    MEMBOUND_EXPECTS(std::isfinite(near) && near >= 0, config_error, "march_settings: near ", near, ", expected >= 0");
    MEMBOUND_EXPECTS(early_stop >= 0 && early_stop < 1, config_error, "march_settings: early_stop ", early_stop,
                     ", expected in [0,1)");
    MEMBOUND_EXPECTS(window >= 1 && batch >= 1 && tile >= 1 && max_steps >= 1, config_error,
                     "march_settings: window ", window, ", batch ", batch, ", tile ", tile, ", max_steps ", max_steps,
                     ", expected >= 1 each");
  }
};

/// Per-ray results of `march`: opacity (N), depth (N), rgb (N,3), field evaluations (N).
struct render_result {
  array<float> opacity, depth, rgb;
  array<std::int32_t> samples;
  double seconds = 0; ///< wall time of the march

  index_t rays() const noexcept { return opacity.size(); }
  double samples_per_ray() const noexcept {
    double s = 0;
    for (auto v : samples.span()) s += v;
    return rays() ? s / static_cast<double>(rays()) : 0.0;
  }
};

/// One evaluated sample of a ray: its step index and rendering weight.
struct traced_sample {
  std::int32_t step = 0;
  float weight = 0;
};
/// Per ray, the samples with weight > 0 in step order (filled by `march` when asked).
using sample_trace = std::vector<std::vector<traced_sample>>;

namespace detail {

template <class Ws>
struct march_scratch {
  Ws est;
  std::vector<span_t> spans;
  std::vector<std::int32_t> k;        // selected step indices of the window
  std::vector<float> mid, delta;      // their midpoints and lengths
  std::vector<float> cone_s;          // cone stepping: window step starts (window + 1)
  array<float> x, sigma, rgb;         // (batch,3), (batch), (batch,3)
};

} // namespace detail

/// Renders rays (origins (N,3), unit or non-unit directions (N,3)) through `field`, skipping what
/// `est` rules out. `trace`, when given, receives every sample with weight > 0.
/// @throws shape_error for mismatched arrays; config_error for bad settings or a ray whose origin
///   or direction is not finite or whose direction has zero length (naming the ray).
/// Complexity: O(steps the estimator keeps + estimator cost) per ray; allocation O(N + window).
template <density_field F, estimator E>
render_result march(const F& field, const E& est, view<const float> origins, view<const float> directions,
                    const march_settings& s, sample_trace* trace = nullptr) {
  s.validate();
  const index_t n = detail::check_points(origins, "march", "origins");
  MEMBOUND_EXPECTS(detail::check_points(directions, "march", "directions") == n, shape_error, "march: ",
                   directions.extent(0), " directions for ", n, " origins");
  const aabb box = field.bounds();
  check_aabb(box, "march: the field's bounds");
  // Validate every ray up front (typed errors before any work).
  std::vector<ray> rays(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const float* o = origins.data() + i * origins.stride(0);
    const float* d = directions.data() + i * directions.stride(0);
    const vec3 ov{o[0], o[1], o[2]}, dv{d[0], d[1], d[2]};
    MEMBOUND_EXPECTS(finite(ov) && finite(dv) && length(dv) > 0, config_error, "march: ray ", i, " has origin (", ov.x,
                     ",", ov.y, ",", ov.z, ") and direction (", dv.x, ",", dv.y, ",", dv.z,
                     "), expected finite values and a non-zero direction");
    rays[static_cast<std::size_t>(i)] = make_ray(ov, dv);
  }
  render_result res;
  res.opacity = array<float>({n});    // (N)
  res.depth = array<float>({n});      // (N)
  res.rgb = array<float>({n, 3});     // (N,3)
  res.samples = array<std::int32_t>({n}); // (N)
  if (trace) trace->assign(static_cast<std::size_t>(n), {});
  const index_t tiles = (n + s.tile - 1) / s.tile;
  const auto t_begin = std::chrono::steady_clock::now();

#if defined(_OPENMP)
#pragma omp parallel
#endif
  {
    detail::march_scratch<typename E::workspace> w{est.make_workspace(), {}, {}, {}, {}, {}, {}, {}, {}};
    w.x = array<float>({s.batch, 3});     // (batch,3)
    w.sigma = array<float>({s.batch});    // (batch)
    w.rgb = array<float>({s.batch, 3});   // (batch,3)
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t tile = 0; tile < tiles; ++tile) {
      const index_t i1 = std::min(n, (tile + 1) * s.tile);
      for (index_t i = tile * s.tile; i < i1; ++i) {
        const ray& r = rays[static_cast<std::size_t>(i)];
        float opacity = 0, depth = 0, cr = 0, cg = 0, cb = 0;
        std::int32_t evaluated = 0;
        std::vector<traced_sample>* tr = trace ? &(*trace)[static_cast<std::size_t>(i)] : nullptr;
        const interval iv = clip(r, box, s.near);
        if (iv.hit && iv.t1 > iv.t0) {
          const double t_start = iv.t0, len = static_cast<double>(iv.t1) - iv.t0;
          float T = 1.0f;
          // Composites the selected samples [q0, q1) of the window; returns false once terminated.
          auto composite = [&](std::size_t q0, std::size_t q1) {
            for (std::size_t b0 = q0; b0 < q1; b0 += static_cast<std::size_t>(s.batch)) {
              const std::size_t b1 = std::min(q1, b0 + static_cast<std::size_t>(s.batch));
              const index_t m = static_cast<index_t>(b1 - b0);
              for (std::size_t q = b0; q < b1; ++q) {
                const vec3 p = r.at(w.mid[q]);
                float* xp = w.x.data() + 3 * (q - b0);
                xp[0] = p.x, xp[1] = p.y, xp[2] = p.z;
              }
              const auto xs = w.x.cview().slice(0, 0, m);
              if constexpr (colored_field<F>)
                field.density_color(xs, w.sigma.view().slice(0, 0, m), w.rgb.view().slice(0, 0, m));
              else
                field.density(xs, w.sigma.view().slice(0, 0, m));
              evaluated += static_cast<std::int32_t>(m);
              for (std::size_t q = b0; q < b1; ++q) {
                const float sg = std::max(0.0f, w.sigma.data()[q - b0]);
                const float alpha = 1.0f - std::exp(-sg * w.delta[q]);
                const float wt = T * alpha;
                if (wt > 0) {
                  opacity += wt;
                  depth += wt * w.mid[q];
                  if constexpr (colored_field<F>) {
                    const float* c = w.rgb.data() + 3 * (q - b0);
                    cr += wt * c[0], cg += wt * c[1], cb += wt * c[2];
                  }
                  if (tr) tr->push_back({w.k[q], wt});
                }
                T *= 1.0f - alpha;
                if (T < s.early_stop) return false;
              }
            }
            return true;
          };
          if (s.cone_angle == 0.0f) {
            const double dt = s.step;
            const index_t steps = std::min<index_t>(
                s.max_steps, std::max<index_t>(0, static_cast<index_t>(std::ceil(len / dt - 0.5))));
            for (index_t k0 = 0; k0 < steps; k0 += s.window) {
              const index_t k1 = std::min(steps, k0 + s.window);
              w.spans.clear();
              est.occupied(r, static_cast<float>(t_start + k0 * dt), static_cast<float>(t_start + k1 * dt), w.est, w.spans);
              w.k.clear(), w.mid.clear(), w.delta.clear();
              for (const span_t& sp : w.spans) {
                // steps whose midpoint t_start + (k + 0.5) dt lies in [sp.t0, sp.t1)
                const index_t ka = std::max(k0, static_cast<index_t>(std::ceil((sp.t0 - t_start) / dt - 0.5)));
                const index_t kb = std::min(k1, static_cast<index_t>(std::ceil((sp.t1 - t_start) / dt - 0.5)));
                for (index_t k = std::max(ka, w.k.empty() ? k0 : index_t{w.k.back()} + 1); k < kb; ++k) {
                  w.k.push_back(static_cast<std::int32_t>(k));
                  w.mid.push_back(static_cast<float>(t_start + (static_cast<double>(k) + 0.5) * dt));
                  w.delta.push_back(s.step);
                }
              }
              if (!composite(0, w.k.size())) break;
            }
          } else {
            double sk = t_start;
            const double t_end = iv.t1;
            index_t k = 0;
            while (k < s.max_steps) {
              // The window's steps [k, k + window): starts, midpoints, lengths.
              w.cone_s.clear();
              index_t kk = k;
              double x = sk;
              std::vector<float>& st = w.cone_s;
              while (kk < k + s.window && kk < s.max_steps) {
                const double dtk = std::clamp(x * s.cone_angle, static_cast<double>(s.step), static_cast<double>(s.max_step));
                if (x + 0.5 * dtk >= t_end) break;
                st.push_back(static_cast<float>(x));
                x += dtk;
                ++kk;
              }
              if (st.empty()) break;
              w.spans.clear();
              est.occupied(r, st.front(), static_cast<float>(x), w.est, w.spans);
              w.k.clear(), w.mid.clear(), w.delta.clear();
              std::size_t sp = 0;
              for (std::size_t q = 0; q < st.size(); ++q) {
                const double a = st[q], b = q + 1 < st.size() ? static_cast<double>(st[q + 1]) : x;
                const float m = static_cast<float>(0.5 * (a + b));
                while (sp < w.spans.size() && w.spans[sp].t1 <= m) ++sp;
                if (sp < w.spans.size() && w.spans[sp].t0 <= m) {
                  w.k.push_back(static_cast<std::int32_t>(k + static_cast<index_t>(q)));
                  w.mid.push_back(m);
                  w.delta.push_back(static_cast<float>(b - a));
                }
              }
              if (!composite(0, w.k.size())) break;
              k = kk;
              sk = x;
            }
          }
        }
        res.opacity.data()[i] = opacity;
        res.depth.data()[i] = depth;
        res.rgb.data()[3 * i] = cr, res.rgb.data()[3 * i + 1] = cg, res.rgb.data()[3 * i + 2] = cb;
        res.samples.data()[i] = evaluated;
      }
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
  return res;
}

/// Recall of weight-carrying samples: the fraction of `reference`'s samples with weight >
/// `weight_carrying` (a trace of `dense`) that `candidate` also evaluated (a trace of any
/// estimator on the same rays and settings). 1 when the reference has none.
/// @throws shape_error when the traces cover different numbers of rays.
inline double weight_recall(const sample_trace& reference, const sample_trace& candidate, index_t* kept = nullptr,
                            index_t* total = nullptr) {
  MEMBOUND_EXPECTS(reference.size() == candidate.size(), shape_error, "weight_recall: traces of ", reference.size(),
                   " and ", candidate.size(), " rays");
  index_t all = 0, hit = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const auto& c = candidate[i];
    std::size_t j = 0;
    for (const traced_sample& s : reference[i]) {
      if (!(s.weight > weight_carrying)) continue;
      ++all;
      while (j < c.size() && c[j].step < s.step) ++j;
      if (j < c.size() && c[j].step == s.step) ++hit;
    }
  }
  if (kept) *kept = hit;
  if (total) *total = all;
  return all ? static_cast<double>(hit) / static_cast<double>(all) : 1.0;
}

} // namespace occupancy
} // namespace v0_1
} // namespace membound
