// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `learned_occupancy`: a compact occupancy classifier for empty-space skipping, after
/// LeC2O-NeRF (Mi & Xu, arXiv 2411.11374): an encoding (multiresolution hash grid, or frequency
/// encoding for a grid-free variant) and a tiny MLP classify points as occupied or empty; it is
/// trained self-supervised from density queries with an imbalanced occupancy loss and an explicit
/// density loss, then frozen and used to skip samples.
///
/// The paper's exact losses and constants are not public (../shared/research/occupancy_splatting.md
/// section 1.4); this file implements that note's specification, with every constant a setting:
///   - A hierarchy of H = factors.size() + 1 heads on one MLP, sigmoid of H logits: head 0 judges
///     fine segments of `fine_length` metres, head h segments factors[0] x ... x factors[h-1]
///     times longer. A ray window is cut into segments of the top level; each head is evaluated at
///     the midpoints of its level's segments, and only segments it calls occupied are cut into the
///     next finer level's segments. Steps whose midpoints lie in fine segments called occupied are
///     marched. So in empty space the classifier runs about once per top-level segment, never once
///     per step.
///   - Labels from density queries: a point is occupied at level 0 if sigma * step_size >
///     occ_threshold at the point, at one of the 8 corners of the cube of half side
///     r_0 = fine_length / 2 + step_size around it, or at one of `jitters` uniform points in that
///     cube; at level h >= 1 if it is at level h-1 or if that holds for the cube of half side
///     r_h = (len_h + fine_length) / 2. The cube contains every step midpoint of a segment centred
///     on the point, and any plane that cuts the cube leaves a corner on its solid side, so a
///     segment midpoint's label stands for the whole segment near walls and the ground (thin
///     structures between the corners are found only by the random points).
///   - Loss = the sum of every head's BCE, each with weight `positive_weight` on occupied labels,
///     + lambda_imbalance * L_imb + lambda_density * L_den on the fine head, where
///     L_imb = sum_k f_k P_k / pi_k over k in {occupied, empty} (f_k the hard fraction at the
///     threshold, P_k the mean probability, pi = (1 - target_empty, target_empty): minimal when the
///     predicted ratio is the target) and L_den = mean (1 - p_fine) (1 - exp(-sigma step_size)) (the
///     explicit density loss: calling a point with density empty costs its opacity).
///   - Marching evaluates the classifier fused: for the hash-grid encoding (widths <= 128), each
///     tile of SIMD-lanes points is encoded in registers (`nn::hash_grid::forward_tile`) and run
///     through the MLP with broadcast weights (several outputs at once, so that enough FMA chains
///     run side by side); a batch runs only as many tiles as it has points for. The frequency
///     encoding goes through the GEMM path.
///   - `occupied_batch` (a `batched_estimator`): the marcher hands over the current window of
///     every still-marching ray of a tile, and each level's segments of all of them go through one
///     classifier call. With a window of one top-level segment (`march_settings::window` =
///     length(H-1) / step, notebook 60 and bench_occupancy use 256 x 0.1 m = 25.6 m) a ray's
///     segments past its termination are never classified: on the 16x city about a third of the
///     classifications the whole ray would need.
///   - Training points: a fraction `near_fraction` drawn around earlier coarse-occupied points
///     (a pool of 2^16), the rest uniform in the region. Adam on the table and the MLP.
///   - Memory: the hash table and the MLP weights in f32 (`memory_bytes`).
/// Determinism: training draws every random number from `seed` in one thread, field queries run
/// in parallel on fixed chunks and the hash grid's backward is deterministic (nn/hash_grid.hpp),
/// so a run repeats exactly for a fixed thread count; the MLP's GEMMs (backend/cpu/gemm.hpp) may
/// split K differently for another thread count, so trained weights can differ in the last bits
/// between thread counts. Marching a trained classifier gives the same result for any thread
/// count (each ray is classified by one thread).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/nn/activation.hpp"
#include "membound/nn/frequency_encoding.hpp"
#include "membound/nn/hash_grid.hpp"
#include "membound/nn/linear.hpp"
#include "membound/nn/optim.hpp"
#include "membound/nn/parameters.hpp"
#include "membound/occupancy/estimator.hpp"
#include "membound/occupancy/field.hpp"
#include "membound/occupancy/geometry.hpp"

namespace membound {
inline namespace v0_1 {
namespace occupancy {

/// Settings of `learned_occupancy` (lengths in metres). Defaults are this library's choices.
struct learned_occupancy_config {
  enum class encoding_kind { hash_grid, frequency };
  aabb region{{0, 0, 0}, {1, 1, 1}};
  encoding_kind encoding = encoding_kind::hash_grid;
  nn::hash_grid_config grid{3, 8, 2, 12, 16, 1.6}; ///< D 3, L 8, F 2, T 2^12, N_min 16, growth 1.6
  int frequencies = 8;                           ///< frequency encoding's octaves
  std::vector<index_t> hidden{32};               ///< hidden widths (ReLU)
  float fine_length = 0.4f;                      ///< fine segment (e.g. 4 steps of 0.1)
  std::vector<int> factors{8, 8};                ///< segments of level h per segment of level h+1
  float threshold = 0.5f;                        ///< head 0: occupied iff p >= threshold
  float coarse_threshold = 0.5f;                 ///< heads >= 1: occupied iff p >= this
  // training
  float step_size = 0.1f;        ///< march step: optical thickness = sigma * step_size
  float occ_threshold = 0.01f;   ///< optical thickness that makes a label occupied
  index_t steps = 1500;          ///< optimiser steps
  index_t batch = 4096;          ///< points per step
  int jitters = 2;               ///< random neighbourhood points per label and head (beside 8 corners)
  float lr = 1e-2f;              ///< Adam learning rate
  float positive_weight = 4.0f;  ///< BCE weight of occupied labels (recall over precision)
  float target_empty = 0.9f;     ///< pi_empty of the imbalanced loss, in (0,1)
  float lambda_imbalance = 0.05f;
  float lambda_density = 1.0f;
  float near_fraction = 0.5f;    ///< share of points drawn near known occupied points, [0,1]
  std::uint32_t seed = 7;

  /// Number of heads H = factors.size() + 1.
  int heads() const noexcept { return static_cast<int>(factors.size()) + 1; }
  /// Segment length of level h (h = 0: fine_length).
  float length(int h) const noexcept {
    float l = fine_length;
    for (int i = 0; i < h; ++i) l *= static_cast<float>(factors[static_cast<std::size_t>(i)]);
    return l;
  }

  /// @throws config_error naming the first bad setting.
  void validate() const {
    check_aabb(region, "learned_occupancy_config");
    if (encoding == encoding_kind::hash_grid) {
      MEMBOUND_EXPECTS(grid.input_dims == 3, config_error, "learned_occupancy_config: the hash grid has ",
                       grid.input_dims, " input dims, expected 3");
      nn::hash_grid::validate(grid);
    } else {
      MEMBOUND_EXPECTS(frequencies >= 1 && frequencies <= 16, config_error, "learned_occupancy_config: frequencies ",
                       frequencies, ", expected 1..16");
    }
    for (index_t h : hidden)
      MEMBOUND_EXPECTS(h >= 1 && h <= 4096, config_error, "learned_occupancy_config: hidden width ", h,
                       ", expected 1..4096");
    MEMBOUND_EXPECTS(std::isfinite(fine_length) && fine_length > 0, config_error, "learned_occupancy_config: fine_length ",
                     fine_length, ", expected > 0");
    MEMBOUND_EXPECTS(factors.size() <= 6, config_error, "learned_occupancy_config: ", factors.size(),
                     " factors, expected at most 6 (7 heads)");
    for (int f : factors)
      MEMBOUND_EXPECTS(f >= 2 && f <= 1024, config_error, "learned_occupancy_config: factor ", f, ", expected 2..1024");
    MEMBOUND_EXPECTS(threshold > 0 && threshold < 1 && coarse_threshold > 0 && coarse_threshold < 1, config_error,
                     "learned_occupancy_config: thresholds ", threshold, ", ", coarse_threshold, ", expected in (0,1)");
    MEMBOUND_EXPECTS(std::isfinite(step_size) && step_size > 0 && occ_threshold >= 0, config_error,
                     "learned_occupancy_config: step_size ", step_size, " (> 0), occ_threshold ", occ_threshold, " (>= 0)");
    MEMBOUND_EXPECTS(steps >= 0 && batch >= 1 && batch <= (index_t{1} << 24) && jitters >= 0 && jitters <= 64,
                     config_error, "learned_occupancy_config: steps ", steps, ", batch ", batch, ", jitters ", jitters);
    MEMBOUND_EXPECTS(lr > 0 && positive_weight > 0 && target_empty > 0 && target_empty < 1 && lambda_imbalance >= 0 &&
                         lambda_density >= 0 && near_fraction >= 0 && near_fraction <= 1,
                     config_error, "learned_occupancy_config: lr ", lr, ", positive_weight ", positive_weight,
                     ", target_empty ", target_empty, ", lambda_imbalance ", lambda_imbalance, ", lambda_density ",
                     lambda_density, ", near_fraction ", near_fraction, " out of range");
  }
};

/// What `learned_occupancy::train` measured, on a held-out batch drawn like the training points.
struct learned_occupancy_report {
  double seconds = 0;
  float final_loss = 0;
  std::vector<double> recall;   ///< per head: occupied labels called occupied
  double fine_accuracy = 0;     ///< head 0's labels matched
  double predicted_empty = 0;   ///< fraction of uniform points the fine head calls empty
  double label_empty = 0;       ///< fraction of uniform points labelled fine-empty
};

/// Progress callback of `train`: (step, loss, points per second).
using occupancy_progress = std::function<void(index_t, float, double)>;

/// The learned occupancy estimator (see the file comment). Satisfies `estimator` once trained.
class learned_occupancy {
public:
  static constexpr std::string_view name = "learned_occupancy";

  /// Per-thread scratch of `occupied` / `classify`.
  struct segment {
    std::uint32_t query; // which ray window
    float t;             // start along the ray
  };
  struct workspace {
    array<float> xn, enc, p;                 // (N,3), (N,E), (N,H)
    std::vector<array<float>> act;           // per layer (N,C_l)
    std::vector<segment> seg, next;          // segments of the current / next level
    std::vector<vec3> pts;                   // their midpoints
    std::vector<unsigned char> called;       // one head's verdict at `pts`: 1 occupied, 0 empty
    std::vector<std::size_t> count, offsets; // spans per query; `occupied`'s offsets
    index_t capacity = 0;
  };

  explicit learned_occupancy(const learned_occupancy_config& cfg) : cfg_(cfg) {
    cfg_.validate();
    const vec3 e = cfg_.region.size();
    inv_extent_ = 1.0f / std::max(e.x, std::max(e.y, e.z));
    index_t in = 0;
    if (cfg_.encoding == learned_occupancy_config::encoding_kind::hash_grid) {
      grid_ = std::make_unique<nn::hash_grid>(cfg_.grid, cfg_.seed);
      in = grid_->output_dims();
    } else {
      freq_.n_frequencies = cfg_.frequencies;
      freq_.include_input = true;
      in = freq_.output_dims(3);
    }
    std::mt19937 gen(cfg_.seed + 1);
    std::vector<index_t> widths{in};
    widths.insert(widths.end(), cfg_.hidden.begin(), cfg_.hidden.end());
    widths.push_back(cfg_.heads());
    net_ = nn::mlp::make(params_, "occ", widths, nn::activation::relu, nn::activation::identity, gen);
    fused_ = grid_ != nullptr;
    for (index_t w : widths) fused_ = fused_ && w <= max_fused_width;
  }

  const learned_occupancy_config& config() const noexcept { return cfg_; }
  int heads() const noexcept { return cfg_.heads(); }
  /// Parameters (hash table + MLP).
  index_t parameter_count() const noexcept { return (grid_ ? grid_->parameter_count() : 0) + params_.count(); }
  /// Bytes held while marching: every parameter in f32.
  std::size_t memory_bytes() const noexcept { return static_cast<std::size_t>(parameter_count()) * sizeof(float); }
  /// Multiply-adds of the MLP per point (the FLOP count of the benchmark is twice this).
  index_t mlp_macs() const noexcept {
    index_t m = 0;
    for (const auto& l : net_.layers) m += l.in_features() * l.out_features();
    return m;
  }
  /// Whether `classify` and marching use the fused SIMD kernel (hash grid, widths <= 128).
  bool fused() const noexcept { return fused_; }

  workspace make_workspace() const { return {}; }

  /// p (N,H): every head's probability at points x (N,3); points outside the region get 0.
  /// @tparam B backend::scalar (the GEMM path, also the training path) or a SIMD backend (fused
  ///   when `fused()`, else the GEMM path). The two agree to float rounding (about 1e-6).
  /// @throws shape_error.
  template <class B = backend::best_cpu>
  void classify(view<const float> x, view<float> p, workspace& ws) const {
    const index_t n = detail::check_points(x, "learned_occupancy::classify", "x");
    const index_t h = heads();
    MEMBOUND_EXPECTS(p.rank() == 2 && p.extent(0) == n && p.extent(1) == h && p.stride(1) == 1, shape_error,
                     "learned_occupancy::classify: p is not (", n, ",", h, ") with contiguous rows");
    for (index_t b0 = 0; b0 < n; b0 += chunk) {
      const index_t m = std::min(chunk, n - b0);
      reserve(ws, m);
      for (index_t i = 0; i < m; ++i) {
        const float* q = x.data() + (b0 + i) * x.stride(0);
        normalise({q[0], q[1], q[2]}, ws.xn.data() + 3 * i);
      }
      logits<B>(ws, m);
      for (index_t i = 0; i < m; ++i) {
        const float* q = x.data() + (b0 + i) * x.stride(0);
        const bool inside = cfg_.region.contains({q[0], q[1], q[2]});
        float* o = p.data() + (b0 + i) * p.stride(0);
        for (index_t k = 0; k < h; ++k) o[k] = inside ? sigmoid(ws.p.data()[h * i + k]) : 0.0f;
      }
    }
  }

  /// The estimator entry: top-down classification of [t0, t1) (file comment).
  void occupied(const ray& r, float t0, float t1, workspace& ws, std::vector<span_t>& out) const {
    const ray_window q{r, t0, t1};
    occupied_batch(std::span<const ray_window>(&q, 1), ws, out, ws.offsets);
  }

  /// The batched entry (estimator.hpp): every query's window classified top-down as `occupied`
  /// does, each level's segments of all queries in one classifier call, so that the SIMD tiles
  /// are full however few segments one ray has.
  void occupied_batch(std::span<const ray_window> q, workspace& ws, std::vector<span_t>& out,
                      std::vector<std::size_t>& off) const {
    const int top = heads() - 1;
    const float ltop = cfg_.length(top);
    ws.seg.clear();
    for (std::size_t i = 0; i < q.size(); ++i) {
      std::size_t cut = 0;
      for (float a = q[i].t0; a < q[i].t1; a += ltop) {
        ws.seg.push_back({static_cast<std::uint32_t>(i), a});
        if (++cut > (std::size_t{1} << 24)) break; // a stated bound on one window
      }
    }
    ws.count.assign(q.size(), 0);
    const std::size_t first = out.size();
    for (int h = top; h >= 0 && !ws.seg.empty(); --h) {
      const float len = cfg_.length(h);
      ws.pts.resize(ws.seg.size());
      for (std::size_t i = 0; i < ws.seg.size(); ++i) {
        const ray_window& w = q[ws.seg[i].query];
        ws.pts[i] = w.r.at(0.5f * (ws.seg[i].t + std::min(w.t1, ws.seg[i].t + len)));
      }
      eval_head(h, ws);
      ws.next.clear();
      for (std::size_t i = 0; i < ws.seg.size(); ++i) {
        if (!ws.called[i]) continue;
        const std::uint32_t qi = ws.seg[i].query;
        const float a = ws.seg[i].t, t1 = q[qi].t1;
        if (h == 0) {
          const float b = std::min(t1, a + len);
          // Segments come in query order, then in order along the ray: merge with the last span
          // when it is this query's and touches this one.
          if (ws.count[qi] > 0 && out.back().t1 >= a) out.back().t1 = std::max(out.back().t1, b);
          else out.push_back({a, b}), ++ws.count[qi];
        } else {
          const float child = cfg_.length(h - 1);
          for (int f = 0; f < cfg_.factors[static_cast<std::size_t>(h - 1)]; ++f) {
            const float s0 = a + static_cast<float>(f) * child;
            if (s0 >= t1) break;
            ws.next.push_back({qi, s0});
          }
        }
      }
      ws.seg.swap(ws.next);
    }
    off.resize(q.size() + 1);
    off[0] = first;
    for (std::size_t i = 0; i < q.size(); ++i) off[i + 1] = off[i] + ws.count[i];
  }

  /// Trains the classifier on `field` (file comment). `progress`, when set, is called every
  /// `progress_every` steps. @returns the held-out report.
  template <density_field F>
  learned_occupancy_report train(const F& field, const occupancy_progress& progress = {}, index_t progress_every = 100) {
    const auto t_begin = std::chrono::steady_clock::now();
    const index_t n = cfg_.batch;
    const int H = heads(), J = cfg_.jitters;
    std::mt19937_64 gen(cfg_.seed);
    std::uniform_real_distribution<float> u01(0.0f, 1.0f);
    std::vector<float> half(static_cast<std::size_t>(H)); // jitter cube half sides per head
    for (int h = 0; h < H; ++h)
      half[static_cast<std::size_t>(h)] = h == 0 ? 0.5f * cfg_.fine_length + cfg_.step_size
                                                 : 0.5f * (cfg_.length(h) + cfg_.fine_length);
    const float near = half[static_cast<std::size_t>(H - 1)];
    const int Q = 8 + J;                                      // queries per head: corners, then random
    const index_t per = 1 + static_cast<index_t>(H) * Q;      // field queries per point
    array<float> pts({n, 3}), queries({n * per, 3}), sigma({n * per}); // (N,3) (N*Q,3) (N*Q)
    array<float> labels({n, static_cast<index_t>(H)}), sig0({n});      // (N,H) labels, density at the point
    std::vector<vec3> pool;
    std::size_t pool_next = 0;
    constexpr std::size_t pool_max = std::size_t{1} << 16;
    const vec3 e = cfg_.region.size();

    auto draw = [&](bool uniform_only) {
      for (index_t i = 0; i < n; ++i) {
        vec3 p;
        if (!uniform_only && !pool.empty() && u01(gen) < cfg_.near_fraction) {
          const vec3 c = pool[static_cast<std::size_t>(gen() % pool.size())];
          p = c + vec3{(2 * u01(gen) - 1) * near, (2 * u01(gen) - 1) * near, (2 * u01(gen) - 1) * near};
          p = {std::clamp(p.x, cfg_.region.lo.x, cfg_.region.hi.x), std::clamp(p.y, cfg_.region.lo.y, cfg_.region.hi.y),
               std::clamp(p.z, cfg_.region.lo.z, cfg_.region.hi.z)};
        } else {
          p = cfg_.region.lo + vec3{u01(gen) * e.x, u01(gen) * e.y, u01(gen) * e.z};
        }
        pts.data()[3 * i] = p.x, pts.data()[3 * i + 1] = p.y, pts.data()[3 * i + 2] = p.z;
        float* q = queries.data() + 3 * i * per;
        q[0] = p.x, q[1] = p.y, q[2] = p.z;
        for (index_t j = 0; j + 1 < per; ++j) {
          const float hs = half[static_cast<std::size_t>(j / Q)];
          const int k = static_cast<int>(j % Q);
          float* qj = q + 3 * (1 + j);
          if (k < 8) {
            qj[0] = p.x + ((k & 1) ? hs : -hs);
            qj[1] = p.y + ((k & 2) ? hs : -hs);
            qj[2] = p.z + ((k & 4) ? hs : -hs);
          } else {
            qj[0] = p.x + (2 * u01(gen) - 1) * hs;
            qj[1] = p.y + (2 * u01(gen) - 1) * hs;
            qj[2] = p.z + (2 * u01(gen) - 1) * hs;
          }
        }
      }
      query(field, queries, sigma);
      const float tau = cfg_.occ_threshold;
      for (index_t i = 0; i < n; ++i) {
        const float* sg = sigma.data() + i * per;
        bool occ = sg[0] * cfg_.step_size > tau;
        for (int h = 0; h < H; ++h) {
          for (int j = 0; j < Q; ++j) occ = occ || sg[1 + h * Q + j] * cfg_.step_size > tau;
          labels.data()[i * H + h] = occ ? 1.0f : 0.0f; // occupied at level h implies at h+1
        }
        sig0.data()[i] = sg[0];
        if (occ && !uniform_only) {
          const vec3 p{pts.data()[3 * i], pts.data()[3 * i + 1], pts.data()[3 * i + 2]};
          if (pool.size() < pool_max) pool.push_back(p);
          else pool[pool_next++ % pool_max] = p;
        }
      }
    };

    workspace ws;
    reserve(ws, n);
    nn::mlp& net = net_;
    array<float> dlogit({n, static_cast<index_t>(H)}), denc({n, enc_dims()}); // (N,H) (N,E)
    array<float> dtable;
    if (grid_) dtable = array<float>(std::initializer_list<index_t>{grid_->levels(), grid_->table_size(), grid_->features()});
    const nn::adam opt{cfg_.lr, 0.9f, 0.99f, 1e-15f, 0.0f};
    std::vector<nn::adam::state> states(params_.size());
    nn::adam::state grid_state;
    net.reserve(n);
    float loss = 0;
    const float lt = logit(cfg_.threshold);
    const float inv_n = 1.0f / static_cast<float>(n);
    for (index_t step = 1; step <= cfg_.steps; ++step) {
      draw(false);
      for (index_t i = 0; i < n; ++i) normalise({pts.data()[3 * i], pts.data()[3 * i + 1], pts.data()[3 * i + 2]}, ws.xn.data() + 3 * i);
      const auto xn = ws.xn.cview().slice(0, 0, n);
      auto enc = ws.enc.view().slice(0, 0, n);
      encode(xn, enc);
      auto out = ws.p.view().slice(0, 0, n);
      net.forward(enc, out);
      // The imbalanced occupancy loss on head 0: hard and soft occupied fractions.
      index_t hard_occ = 0;
      double soft_occ = 0;
      for (index_t i = 0; i < n; ++i) {
        hard_occ += out.data()[H * i] >= lt;
        soft_occ += sigmoid(out.data()[H * i]);
      }
      const float f_occ = static_cast<float>(hard_occ) * inv_n, f_emp = 1.0f - f_occ;
      const float pi_emp = cfg_.target_empty, pi_occ = 1.0f - pi_emp;
      const float P_occ = static_cast<float>(soft_occ) * inv_n;
      double l = cfg_.lambda_imbalance * (f_occ * P_occ / pi_occ + f_emp * (1 - P_occ) / pi_emp);
      const float dimb = cfg_.lambda_imbalance * (f_occ / pi_occ - f_emp / pi_emp) * inv_n; // dL/dp_0
      for (index_t i = 0; i < n; ++i) {
        for (int h = 0; h < H; ++h) {
          const float z = out.data()[H * i + h], p = sigmoid(z);
          const bool y = labels.data()[i * H + h] > 0;
          const float w = y ? cfg_.positive_weight : 1.0f;
          l -= w * (y ? std::log(std::max(p, 1e-12f)) : std::log(std::max(1 - p, 1e-12f))) * inv_n;
          float dz = (y ? -w * (1 - p) : p) * inv_n;
          if (h == 0) {
            const float opac = 1.0f - std::exp(-sig0.data()[i] * cfg_.step_size);
            l += cfg_.lambda_density * (1 - p) * opac * inv_n;
            dz += (dimb - cfg_.lambda_density * opac * inv_n) * p * (1 - p);
          }
          dlogit.data()[H * i + h] = dz;
        }
      }
      loss = static_cast<float>(l);
      params_.zero_grad();
      if (grid_) {
        net.backward(enc, dlogit.cview(), denc.view());
        dtable.fill(0.0f);
        grid_->backward_table(xn, denc.cview(), dtable.view());
        opt.step(grid_->table().span(), dtable.cview().span(), grid_state);
      } else {
        net.backward(enc, dlogit.cview());
      }
      for (std::size_t k = 0; k < params_.size(); ++k) opt.step(params_[k].value.span(), params_[k].grad.cview().span(), states[k]);
      if (progress && (step % progress_every == 0 || step == cfg_.steps)) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
        progress(step, loss, static_cast<double>(step * n) / std::max(secs, 1e-9));
      }
    }
    // Held-out report: a batch drawn like the training points, and a uniform batch.
    learned_occupancy_report rep;
    rep.final_loss = loss;
    array<float> pr({n, static_cast<index_t>(H)}); // (N,H)
    std::vector<index_t> pos(static_cast<std::size_t>(H), 0), hit(static_cast<std::size_t>(H), 0);
    index_t match = 0;
    draw(false);
    classify(pts.cview(), pr.view(), ws);
    for (index_t i = 0; i < n; ++i) {
      for (int h = 0; h < H; ++h) {
        const bool called = pr.data()[H * i + h] >= (h == 0 ? cfg_.threshold : cfg_.coarse_threshold);
        const bool y = labels.data()[i * H + h] > 0;
        pos[static_cast<std::size_t>(h)] += y;
        hit[static_cast<std::size_t>(h)] += y && called;
        if (h == 0) match += y == called;
      }
    }
    for (int h = 0; h < H; ++h)
      rep.recall.push_back(pos[static_cast<std::size_t>(h)]
                               ? static_cast<double>(hit[static_cast<std::size_t>(h)]) / static_cast<double>(pos[static_cast<std::size_t>(h)])
                               : 1.0);
    rep.fine_accuracy = static_cast<double>(match) / static_cast<double>(n);
    draw(true);
    classify(pts.cview(), pr.view(), ws);
    index_t pe = 0, le = 0;
    for (index_t i = 0; i < n; ++i) pe += pr.data()[H * i] < cfg_.threshold, le += labels.data()[i * H] == 0;
    rep.predicted_empty = static_cast<double>(pe) / static_cast<double>(n);
    rep.label_empty = static_cast<double>(le) / static_cast<double>(n);
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
    return rep;
  }

  /// The MLP alone on encoded inputs enc (N,E) (any strides; feature-major, stride (1,N), loads
  /// fastest) -> logits (N,H) (contiguous rows): the GEMM path for backend::scalar, the fused
  /// kernel's MLP for a SIMD backend when `fused()` (what the benchmark's MLP FLOP/s measures:
  /// 2 x mlp_macs() per point). @throws shape_error.
  template <class B = backend::best_cpu>
  void mlp_forward(view<const float> enc, view<float> logits_out, workspace& ws) const {
    MEMBOUND_EXPECTS(enc.rank() == 2 && enc.extent(1) == enc_dims() && logits_out.rank() == 2 &&
                         logits_out.extent(0) == enc.extent(0) && logits_out.extent(1) == heads() &&
                         logits_out.stride(1) == 1 && logits_out.stride(0) == heads(),
                     shape_error, "learned_occupancy::mlp_forward: enc must be (N,", enc_dims(),
                     ") and logits a contiguous (N,", heads(), ")");
    if constexpr (!std::is_same_v<B, backend::scalar>) {
      if (fused_) {
        fused_mlp<typename B::arch>(enc, logits_out.data(), enc.extent(0));
        return;
      }
    }
    reserve(ws, enc.extent(0));
    run_mlp(enc, logits_out, ws, enc.extent(0));
  }
  /// The encoding alone: x (N,3) in metres -> enc (N,E).
  void encode_points(view<const float> x, view<float> enc, workspace& ws) const {
    const index_t n = detail::check_points(x, "learned_occupancy::encode_points", "x");
    reserve(ws, n);
    for (index_t i = 0; i < n; ++i) {
      const float* q = x.data() + i * x.stride(0);
      normalise({q[0], q[1], q[2]}, ws.xn.data() + 3 * i);
    }
    encode(ws.xn.cview().slice(0, 0, n), enc);
  }
  index_t enc_dims() const noexcept { return grid_ ? grid_->output_dims() : freq_.output_dims(3); }
  /// The hash grid (null for the frequency encoding).
  const nn::hash_grid* hash_encoding() const noexcept { return grid_.get(); }

private:
  static constexpr index_t chunk = 1024;          // points per classifier call while marching
  static constexpr index_t max_fused_width = 128; // widest layer the fused kernel keeps in registers

  static float sigmoid(float z) noexcept { return 1.0f / (1.0f + std::exp(-z)); }
  static float logit(float p) noexcept { return std::log(p / (1.0f - p)); }

  void normalise(vec3 p, float* o) const noexcept {
    o[0] = std::clamp((p.x - cfg_.region.lo.x) * inv_extent_, 0.0f, 1.0f);
    o[1] = std::clamp((p.y - cfg_.region.lo.y) * inv_extent_, 0.0f, 1.0f);
    o[2] = std::clamp((p.z - cfg_.region.lo.z) * inv_extent_, 0.0f, 1.0f);
  }

  void encode(view<const float> xn, view<float> enc) const {
    if (grid_) grid_->forward(xn, enc);
    else freq_.forward(xn, enc);
  }

  void reserve(workspace& ws, index_t m) const {
    if (ws.capacity >= m) return;
    const index_t c = std::max(m, chunk);
    ws.xn = array<float>({c, 3});                        // (N,3)
    ws.enc = array<float>({c, enc_dims()});              // (N,E)
    ws.p = array<float>({c, static_cast<index_t>(heads())}); // (N,H)
    ws.act.clear();
    for (const auto& l : net_.layers) ws.act.emplace_back(std::initializer_list<index_t>{c, l.out_features()}); // (N,C_l)
    ws.capacity = c;
  }

  void run_mlp(view<const float> in, view<float> out, workspace& ws, index_t m) const {
    view<const float> x = in;
    for (std::size_t l = 0; l < net_.layers.size(); ++l) {
      auto a = ws.act[l].view().slice(0, 0, m); // (N,C_l)
      net_.layers[l].forward(x, a, a);
      x = a;
    }
    for (index_t i = 0; i < m; ++i)
      for (index_t k = 0; k < out.extent(1); ++k) out.data()[i * out.stride(0) + k] = x.data()[i * x.stride(0) + k];
  }

  // The MLP on T tiles held in batches (tile t's input i at buf0[i * T + t]) -> returns the batch
  // array holding the H logits the same way (buf0 or buf1). Each weight is broadcast once for the
  // T tiles: T independent accumulation chains per output.
  template <class A, int T>
  xsimd::batch<float, A>* mlp_tile(xsimd::batch<float, A>* buf0, xsimd::batch<float, A>* buf1) const {
    using fb = xsimd::batch<float, A>;
    fb* in = buf0;
    fb* outb = buf1;
    for (std::size_t l = 0; l < net_.layers.size(); ++l) {
      const nn::linear& layer = net_.layers[l];
      const index_t ci = layer.in_features(), co = layer.out_features();
      const float* wt = layer.weight.data();
      const float* bias = layer.bias.data();
      const bool relu = layer.act == nn::activation::relu;
      const index_t ws0 = layer.weight.stride(0);
      // J outputs at once, so that J x T chains (8) hide the FMA latency however few tiles run;
      // each output's chain is the same (bias, then inputs in order) as one at a time.
      constexpr int J = T >= 4 ? 2 : 8 / T;
      index_t j = 0;
      const auto outputs = [&](auto jn, index_t j0) MEMBOUND_INLINE_LAMBDA {
        constexpr int N = decltype(jn)::value;
        fb acc[N][T];
        for (int u = 0; u < N; ++u)
          for (int t = 0; t < T; ++t) acc[u][t] = fb(bias ? bias[j0 + u] : 0.0f);
        for (index_t i = 0; i < ci; ++i) {
          fb x[T];
          for (int t = 0; t < T; ++t) x[t] = in[i * T + t];
          for (int u = 0; u < N; ++u) {
            const fb w(wt[(j0 + u) * ws0 + i]);
            for (int t = 0; t < T; ++t) acc[u][t] = cpu::detail::fma<A>(w, x[t], acc[u][t]);
          }
        }
        for (int u = 0; u < N; ++u)
          for (int t = 0; t < T; ++t) outb[(j0 + u) * T + t] = relu ? xsimd::max(acc[u][t], fb(0.0f)) : acc[u][t];
      };
      for (; j + J <= co; j += J) outputs(std::integral_constant<int, J>{}, j);
      for (; j < co; ++j) outputs(std::integral_constant<int, 1>{}, j);
      std::swap(in, outb);
    }
    return in;
  }

  // Stores the logits of T tiles (tile t's head h at lg[h * T + t]) into rows [n0, n0 + k1) of out.
  template <class A, int T>
  void store_logits(const xsimd::batch<float, A>* lg, float* out, index_t n0, index_t k1) const {
    constexpr index_t W = static_cast<index_t>(xsimd::batch<float, A>::size);
    const index_t H = heads();
    alignas(64) float ot[8][T * W];
    for (index_t h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) lg[h * T + t].store_aligned(ot[h] + t * W);
    for (index_t k = 0; k < k1; ++k)
      for (index_t h = 0; h < H; ++h) out[H * (n0 + k) + h] = ot[h][k];
  }

  static constexpr int tiles = 4; // tiles of SIMD lanes per fused MLP pass

  // The fused kernel on T tiles of W points (rows [n0, n0 + k1) of ws.xn, k1 <= T W; lanes past
  // k1 repeat the last point), encoded in registers (hash grid), then the MLP.
  template <class A, int T>
  void fused_pass(workspace& ws, index_t n0, index_t k1, index_t m) const {
    using fb = xsimd::batch<float, A>;
    constexpr index_t W = static_cast<index_t>(fb::size);
    alignas(64) float xt[3][W];
    fb buf0[max_fused_width * T], buf1[max_fused_width * T], feat[max_fused_width];
    const index_t E = enc_dims();
    for (int t = 0; t < T; ++t) {
      for (index_t k = 0; k < W; ++k) {
        const index_t q = std::min(n0 + t * W + k, m - 1);
        for (int i = 0; i < 3; ++i) xt[i][k] = ws.xn.data()[3 * q + i];
      }
      fb xv[3] = {fb::load_aligned(xt[0]), fb::load_aligned(xt[1]), fb::load_aligned(xt[2])};
      grid_->forward_tile<A>(xv, feat);
      for (index_t i = 0; i < E; ++i) buf0[i * T + t] = feat[i];
    }
    store_logits<A, T>(mlp_tile<A, T>(buf0, buf1), ws.p.data(), n0, k1);
  }

  // The fused kernel over rows [0, m): passes of `tiles` x W points, the last one only as many
  // tiles as it needs (a batch of a few segments costs one tile, not four).
  template <class A>
  void fused_logits(workspace& ws, index_t m) const {
    constexpr index_t W = static_cast<index_t>(xsimd::batch<float, A>::size), P = tiles * W;
    for (index_t n0 = 0; n0 < m; n0 += P) {
      const index_t k1 = std::min(P, m - n0);
      static_assert(tiles == 4, "fused_logits dispatches 1..4 tiles");
      switch ((k1 + W - 1) / W) {
      case 1: fused_pass<A, 1>(ws, n0, k1, m); break;
      case 2: fused_pass<A, 2>(ws, n0, k1, m); break;
      case 3: fused_pass<A, 3>(ws, n0, k1, m); break;
      default: fused_pass<A, 4>(ws, n0, k1, m); break;
      }
    }
  }

  // The MLP alone, fused, from encoded rows enc (N,E) (tiles transposed into batches).
  template <class A>
  void fused_mlp(const view<const float>& enc, float* out, index_t m) const {
    using fb = xsimd::batch<float, A>;
    constexpr index_t W = static_cast<index_t>(fb::size), P = tiles * W;
    const index_t E = enc_dims();
    alignas(64) float et[max_fused_width][W];
    fb buf0[max_fused_width * tiles], buf1[max_fused_width * tiles];
    for (index_t n0 = 0; n0 < m; n0 += P) {
      const index_t k1 = std::min(P, m - n0);
      if (enc.stride(0) == 1 && k1 == P) { // feature-major input: the batches load directly
        for (index_t i = 0; i < E; ++i)
          for (int t = 0; t < tiles; ++t) buf0[i * tiles + t] = fb::load_unaligned(enc.data() + i * enc.stride(1) + n0 + t * W);
      } else {
        for (int t = 0; t < tiles; ++t) {
          for (index_t k = 0; k < W; ++k) {
            const float* row = enc.data() + std::min(n0 + t * W + k, m - 1) * enc.stride(0);
            for (index_t i = 0; i < E; ++i) et[i][k] = row[i * enc.stride(1)];
          }
          for (index_t i = 0; i < E; ++i) buf0[i * tiles + t] = fb::load_aligned(et[i]);
        }
      }
      store_logits<A, tiles>(mlp_tile<A, tiles>(buf0, buf1), out, n0, k1);
    }
  }

  // ws.xn rows [0, m) -> ws.p rows [0, m) (logits).
  template <class B>
  void logits(workspace& ws, index_t m) const {
    if constexpr (!std::is_same_v<B, backend::scalar>) {
      if (fused_) {
        fused_logits<typename B::arch>(ws, m);
        return;
      }
    }
    auto enc = ws.enc.view().slice(0, 0, m);
    encode(ws.xn.cview().slice(0, 0, m), enc);
    run_mlp(enc, ws.p.view().slice(0, 0, m), ws, m);
  }

  // Head h at the points ws.pts: ws.called[i] = 1 where called occupied (and inside), else 0.
  void eval_head(int h, workspace& ws) const {
    const float lt = logit(h == 0 ? cfg_.threshold : cfg_.coarse_threshold);
    const index_t n = static_cast<index_t>(ws.pts.size()), H = heads();
    ws.called.assign(ws.pts.size(), 0);
    for (index_t b0 = 0; b0 < n; b0 += chunk) {
      const index_t m = std::min(chunk, n - b0);
      reserve(ws, m);
      for (index_t i = 0; i < m; ++i) normalise(ws.pts[static_cast<std::size_t>(b0 + i)], ws.xn.data() + 3 * i);
      logits<backend::best_cpu>(ws, m);
      for (index_t i = 0; i < m; ++i) {
        const bool inside = cfg_.region.contains(ws.pts[static_cast<std::size_t>(b0 + i)]);
        ws.called[static_cast<std::size_t>(b0 + i)] = inside && ws.p.data()[H * i + h] >= lt ? 1 : 0;
      }
    }
  }

  template <density_field F>
  static void query(const F& field, const array<float>& q, array<float>& sigma) {
    const index_t n = q.extent(0);
    constexpr index_t block = 2048;
    const index_t blocks = (n + block - 1) / block;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (index_t b = 0; b < blocks; ++b) {
      const index_t i0 = b * block, i1 = std::min(n, i0 + block);
      field.density(q.cview().slice(0, i0, i1), sigma.view().slice(0, i0, i1));
    }
  }

  learned_occupancy_config cfg_;
  float inv_extent_ = 1;
  std::unique_ptr<nn::hash_grid> grid_;
  nn::frequency_encoding freq_;
  nn::parameters params_;
  nn::mlp net_;
  bool fused_ = false;
};
static_assert(batched_estimator<learned_occupancy>);

} // namespace occupancy
} // namespace v0_1
} // namespace membound
