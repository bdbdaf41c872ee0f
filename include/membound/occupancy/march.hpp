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
/// An estimator with `occupied_batch` (estimator.hpp) is asked for the windows of all rays of a
/// tile that are still marching at once, window by window (a wavefront), so that a network
/// estimator fills its SIMD batches and never classifies past a ray's termination; others are
/// asked ray by ray. Either way each ray's windows, samples and sums are the same.
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
  std::vector<std::size_t> offsets;   // batched estimators: where each ray's spans begin
  std::vector<ray_window> queries;    // batched estimators: the live rays' windows
  std::vector<std::int32_t> k;        // selected step indices of the window
  std::vector<float> mid, delta;      // their midpoints and lengths
  std::vector<std::vector<float>> cone_s; // cone stepping: per ray of a tile, the window's step starts
  std::vector<index_t> live;          // batched estimators: rays of the tile still marching
  array<float> x, sigma, rgb;         // (batch,3), (batch), (batch,3)
};

/// One ray's progress through the marcher: its lattice, its current window and what it has
/// composited so far.
struct ray_march {
  ray r;
  double t_start = 0, t_end = 0; // the part inside the box
  index_t steps = 0;             // uniform stepping: steps of the ray
  index_t k = 0;                 // first step of the next window
  double sk = 0;                 // cone stepping: start of step k
  index_t k_next = 0;            // first step after the current window
  double x_next = 0;             // cone stepping: start of step k_next
  float t0 = 0, t1 = 0;          // the current window as the estimator sees it
  float T = 1, opacity = 0, depth = 0, cr = 0, cg = 0, cb = 0;
  std::int32_t evaluated = 0;
  std::vector<traced_sample>* trace = nullptr;
};

/// Sets up ray r's march over [iv.t0, iv.t1); false when it has nothing to march.
inline bool march_begin(ray_march& m, const ray& r, const interval& iv, const march_settings& s,
                        std::vector<traced_sample>* tr) {
  m = ray_march{};
  m.r = r;
  m.trace = tr;
  if (!(iv.hit && iv.t1 > iv.t0)) return false;
  m.t_start = iv.t0, m.t_end = iv.t1, m.sk = iv.t0;
  if (s.cone_angle == 0.0f) {
    const double len = static_cast<double>(iv.t1) - iv.t0;
    m.steps = std::min<index_t>(s.max_steps,
                                std::max<index_t>(0, static_cast<index_t>(std::ceil(len / static_cast<double>(s.step) - 0.5))));
    return m.steps > 0;
  }
  return true;
}

/// Lays out ray m's next window of at most `window` steps (cone stepping: its step starts in st);
/// false when the ray has no steps left.
inline bool march_window(ray_march& m, const march_settings& s, std::vector<float>& st) {
  if (s.cone_angle == 0.0f) {
    if (m.k >= m.steps) return false;
    const double dt = s.step;
    m.k_next = std::min(m.steps, m.k + s.window);
    m.t0 = static_cast<float>(m.t_start + static_cast<double>(m.k) * dt);
    m.t1 = static_cast<float>(m.t_start + static_cast<double>(m.k_next) * dt);
    return true;
  }
  st.clear();
  index_t kk = m.k;
  double x = m.sk;
  while (kk < m.k + s.window && kk < s.max_steps) {
    const double dtk = std::clamp(x * s.cone_angle, static_cast<double>(s.step), static_cast<double>(s.max_step));
    if (x + 0.5 * dtk >= m.t_end) break;
    st.push_back(static_cast<float>(x));
    x += dtk;
    ++kk;
  }
  if (st.empty()) return false;
  m.k_next = kk, m.x_next = x;
  m.t0 = st.front(), m.t1 = static_cast<float>(x);
  return true;
}

/// Evaluates and composites the steps of ray m's current window that lie in spans [sp0, sp1);
/// false once the ray has terminated (transmittance below early_stop).
template <density_field F, class Ws>
bool march_composite(const F& field, ray_march& m, const span_t* sp0, const span_t* sp1, const march_settings& s,
                     const std::vector<float>& st, march_scratch<Ws>& w) {
  w.k.clear(), w.mid.clear(), w.delta.clear();
  if (s.cone_angle == 0.0f) {
    const double dt = s.step;
    const index_t k0 = m.k, k1 = m.k_next;
    for (const span_t* sp = sp0; sp != sp1; ++sp) {
      // steps whose midpoint t_start + (k + 0.5) dt lies in [sp.t0, sp.t1)
      const index_t ka = std::max(k0, static_cast<index_t>(std::ceil((sp->t0 - m.t_start) / dt - 0.5)));
      const index_t kb = std::min(k1, static_cast<index_t>(std::ceil((sp->t1 - m.t_start) / dt - 0.5)));
      for (index_t k = std::max(ka, w.k.empty() ? k0 : index_t{w.k.back()} + 1); k < kb; ++k) {
        w.k.push_back(static_cast<std::int32_t>(k));
        w.mid.push_back(static_cast<float>(m.t_start + (static_cast<double>(k) + 0.5) * dt));
        w.delta.push_back(s.step);
      }
    }
  } else {
    const span_t* sp = sp0;
    for (std::size_t q = 0; q < st.size(); ++q) {
      const double a = st[q], b = q + 1 < st.size() ? static_cast<double>(st[q + 1]) : m.x_next;
      const float mm = static_cast<float>(0.5 * (a + b));
      while (sp != sp1 && sp->t1 <= mm) ++sp;
      if (sp != sp1 && sp->t0 <= mm) {
        w.k.push_back(static_cast<std::int32_t>(m.k + static_cast<index_t>(q)));
        w.mid.push_back(mm);
        w.delta.push_back(static_cast<float>(b - a));
      }
    }
  }
  m.k = m.k_next, m.sk = m.x_next;
  const std::size_t q1 = w.k.size();
  for (std::size_t b0 = 0; b0 < q1; b0 += static_cast<std::size_t>(s.batch)) {
    const std::size_t b1 = std::min(q1, b0 + static_cast<std::size_t>(s.batch));
    const index_t n = static_cast<index_t>(b1 - b0);
    for (std::size_t q = b0; q < b1; ++q) {
      const vec3 p = m.r.at(w.mid[q]);
      float* xp = w.x.data() + 3 * (q - b0);
      xp[0] = p.x, xp[1] = p.y, xp[2] = p.z;
    }
    const auto xs = w.x.cview().slice(0, 0, n);
    if constexpr (colored_field<F>)
      field.density_color(xs, w.sigma.view().slice(0, 0, n), w.rgb.view().slice(0, 0, n));
    else
      field.density(xs, w.sigma.view().slice(0, 0, n));
    m.evaluated += static_cast<std::int32_t>(n);
    for (std::size_t q = b0; q < b1; ++q) {
      const float sg = std::max(0.0f, w.sigma.data()[q - b0]);
      const float alpha = 1.0f - std::exp(-sg * w.delta[q]);
      const float wt = m.T * alpha;
      if (wt > 0) {
        m.opacity += wt;
        m.depth += wt * w.mid[q];
        if constexpr (colored_field<F>) {
          const float* c = w.rgb.data() + 3 * (q - b0);
          m.cr += wt * c[0], m.cg += wt * c[1], m.cb += wt * c[2];
        }
        if (m.trace) m.trace->push_back({w.k[q], wt});
      }
      m.T *= 1.0f - alpha;
      if (m.T < s.early_stop) return false;
    }
  }
  return true;
}

} // namespace detail

/// Renders rays (origins (N,3), unit or non-unit directions (N,3)) through `field`, skipping what
/// `est` rules out. `trace`, when given, receives every sample with weight > 0. A
/// `batched_estimator` is asked tile by tile (the wavefront of the file comment), any other ray by
/// ray; both give the same result.
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
    detail::march_scratch<typename E::workspace> w{est.make_workspace(), {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    w.x = array<float>({s.batch, 3});     // (batch,3)
    w.sigma = array<float>({s.batch});    // (batch)
    w.rgb = array<float>({s.batch, 3});   // (batch,3)
    w.cone_s.resize(static_cast<std::size_t>(batched_estimator<E> ? s.tile : 1));
    std::vector<detail::ray_march> rm(static_cast<std::size_t>(batched_estimator<E> ? s.tile : 1));
    auto finish = [&](const detail::ray_march& m, index_t i) {
      res.opacity.data()[i] = m.opacity;
      res.depth.data()[i] = m.depth;
      res.rgb.data()[3 * i] = m.cr, res.rgb.data()[3 * i + 1] = m.cg, res.rgb.data()[3 * i + 2] = m.cb;
      res.samples.data()[i] = m.evaluated;
    };
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t tile = 0; tile < tiles; ++tile) {
      const index_t i0 = tile * s.tile, i1 = std::min(n, (tile + 1) * s.tile);
      auto begin = [&](detail::ray_march& m, index_t i) {
        const ray& r = rays[static_cast<std::size_t>(i)];
        return detail::march_begin(m, r, clip(r, box, s.near), s, trace ? &(*trace)[static_cast<std::size_t>(i)] : nullptr);
      };
      if constexpr (batched_estimator<E>) {
        // A wavefront over the tile: every live ray's next window in one estimator call.
        w.live.clear();
        for (index_t i = i0; i < i1; ++i)
          if (begin(rm[static_cast<std::size_t>(i - i0)], i)) w.live.push_back(i);
        while (!w.live.empty()) {
          std::size_t kept = 0;
          w.queries.clear();
          for (index_t i : w.live) {
            detail::ray_march& m = rm[static_cast<std::size_t>(i - i0)];
            if (!detail::march_window(m, s, w.cone_s[static_cast<std::size_t>(i - i0)])) continue;
            w.live[kept++] = i;
            w.queries.push_back({m.r, m.t0, m.t1});
          }
          w.live.resize(kept);
          w.spans.clear();
          est.occupied_batch(std::span<const ray_window>(w.queries), w.est, w.spans, w.offsets);
          kept = 0;
          for (std::size_t q = 0; q < w.live.size(); ++q) {
            const index_t i = w.live[q];
            const span_t* sp = w.spans.data();
            if (detail::march_composite(field, rm[static_cast<std::size_t>(i - i0)], sp + w.offsets[q], sp + w.offsets[q + 1], s,
                                        w.cone_s[static_cast<std::size_t>(i - i0)], w))
              w.live[kept++] = i;
          }
          w.live.resize(kept);
        }
        for (index_t i = i0; i < i1; ++i) finish(rm[static_cast<std::size_t>(i - i0)], i);
      } else {
        for (index_t i = i0; i < i1; ++i) {
          detail::ray_march& m = rm[0];
          if (begin(m, i))
            while (detail::march_window(m, s, w.cone_s[0])) {
              w.spans.clear();
              est.occupied(m.r, m.t0, m.t1, w.est, w.spans);
              if (!detail::march_composite(field, m, w.spans.data(), w.spans.data() + w.spans.size(), s, w.cone_s[0], w))
                break;
            }
          finish(m, i);
        }
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
