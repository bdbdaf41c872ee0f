// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Multiresolution hash grid encoding (Mueller et al., "Instant Neural Graphics Primitives
/// with a Multiresolution Hash Encoding", SIGGRAPH 2022): forward (N,D) -> (N,L*F) by (bi/tri)linear
/// interpolation of L per-level feature tables, backward to the table (scatter) and to the inputs.
/// O(N L 2^D F) per pass; no allocation besides the table.
///
/// Semantics (the ones this file commits to):
///   - Inputs x in [0,1]^D, D = 2 or 3. Each coordinate is clamped to [0,1] first (NaN -> 0); the
///     gradient w.r.t. a coordinate outside [0,1] (or NaN) is 0.
///   - Level l in [0,L) has resolution N_l = floor(N_min * b^l) cells per axis (paper eq. 2-3; the
///     floor has a 1e-9 guard so that b = hash_grid_growth(N_min, N_max, L) reaches N_max exactly).
///     Vertices sit at integer positions 0..N_l of p = x * N_l (corners aligned with 0 and 1; tcnn's
///     "x * scale + 0.5" offset is not used). The cell is c = min(floor(p), N_l - 1), so x = 1 lies
///     in the last cell with weight 1 on its upper vertex; t = p - c in [0,1].
///   - Vertex index: a level whose dense grid has (N_l+1)^D <= T vertices is indexed densely,
///     i = v_0 + v_1 (N_l+1) + v_2 (N_l+1)^2 (as instant-ngp does for coarse levels); otherwise
///     i = (v_0 * 1 XOR v_1 * 2654435761 XOR v_2 * 805459861) mod T in uint32 arithmetic (wrapping).
///     Every level owns a full table of T = 2^log2_table entries (instant-ngp shrinks dense levels'
///     tables; here the unused tail of a dense level simply gets no gradient).
///   - Output column l*F + f holds feature f of level l (level-major). The table is (L,T,F) float.
///   - Corner weights: prod_i (bit_i ? t_i : 1 - t_i), corners visited with bit i of the corner
///     number selecting the upper vertex along axis i.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string_view>

#include "membound/backend/cpu/simd.hpp"
#include "membound/backend/tags.hpp"
#include "membound/config.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Settings of a hash grid. Defaults are instant-ngp's NeRF encoding (L=16, F=2, T=2^19, N_min=16)
/// with growth 1.5 (finest resolution floor(16 * 1.5^15) = 7006).
struct hash_grid_config {
  int input_dims = 3;           ///< D: 2 or 3.
  int levels = 16;              ///< L: 1..32.
  int features = 2;             ///< F: 1, 2, 4 or 8.
  int log2_table = 19;          ///< log2 T: 4..24.
  index_t base_resolution = 16; ///< N_min >= 1 (cells per axis of level 0).
  double growth = 1.5;          ///< b >= 1 (per-level scale).
};

/// Growth factor b = exp((ln N_max - ln N_min) / (L - 1)) that makes level L-1 reach `finest`
/// (paper eq. 3); 1 when L == 1. @throws config_error if base < 1, finest < base or levels < 1.
inline double hash_grid_growth(index_t base, index_t finest, int levels) {
  MEMBOUND_EXPECTS(base >= 1, config_error, "hash_grid_growth: base resolution is ", base, ", expected >= 1");
  MEMBOUND_EXPECTS(finest >= base, config_error, "hash_grid_growth: finest resolution ", finest,
                   " is below the base resolution ", base);
  MEMBOUND_EXPECTS(levels >= 1, config_error, "hash_grid_growth: levels is ", levels, ", expected >= 1");
  if (levels == 1) return 1.0;
  return std::exp((std::log(static_cast<double>(finest)) - std::log(static_cast<double>(base))) / (levels - 1));
}

namespace detail {
/// Per-level constants of a hash grid (computed once by the constructor).
struct grid_level {
  float scale = 1.0f;            ///< N_l as float (p = x * scale).
  std::uint32_t res = 1;         ///< N_l.
  std::uint32_t stride1 = 0;     ///< N_l + 1 (dense levels only).
  std::uint32_t stride2 = 0;     ///< (N_l + 1)^2 (dense 3-D levels only).
  bool dense = false;            ///< (N_l + 1)^D <= T.
};
} // namespace detail

/// Multiresolution hash grid encoding with its own parameter table (L,T,F).
/// Thread-safety: const members may run concurrently; results never depend on the thread count.
class hash_grid {
public:
  static constexpr std::string_view name = "hash_grid";
  /// Largest per-level resolution: float positions x * N_l keep a fractional part up to 2^24.
  static constexpr index_t max_resolution = index_t{1} << 24;
  /// Seed of the default table initialisation.
  static constexpr std::uint32_t default_seed = 1337;
  /// Half-width of the uniform initialisation range (instant-ngp: U(-1e-4, 1e-4)).
  static constexpr float init_scale = 1e-4f;

  /// Validates `cfg`, allocates the (L,T,F) table and fills it by `reset(seed)`.
  /// @throws config_error naming the first bad setting (D, F, log2 T, L, N_min, b, or a level
  /// resolution above max_resolution).
  /// Complexity: O(L T F) time and memory.
  explicit hash_grid(const hash_grid_config& cfg, std::uint32_t seed = default_seed) : cfg_(cfg) {
    validate(cfg);
    const index_t t = table_size();
    for (int l = 0; l < cfg.levels; ++l) {
      const double r = std::floor(static_cast<double>(cfg.base_resolution) * std::pow(cfg.growth, l) + 1e-9);
      MEMBOUND_EXPECTS(r <= static_cast<double>(max_resolution), config_error, "hash_grid: level ", l,
                       " has resolution ", r, " (base ", cfg.base_resolution, ", growth ", cfg.growth,
                       "), expected <= ", max_resolution);
      detail::grid_level& lv = levels_[l];
      lv.res = static_cast<std::uint32_t>(r);
      lv.scale = static_cast<float>(lv.res);
      // Dense when (N+1)^D <= T, computed without overflow.
      index_t verts = 1;
      bool fits = true;
      for (int d = 0; d < cfg.input_dims && fits; ++d) {
        if (verts > t / (static_cast<index_t>(lv.res) + 1)) fits = false;
        else verts *= static_cast<index_t>(lv.res) + 1;
      }
      lv.dense = fits;
      if (fits) {
        lv.stride1 = lv.res + 1;
        lv.stride2 = lv.stride1 * lv.stride1; // <= T when D == 3; unused (may wrap harmlessly) when D == 2
      }
    }
    table_ = array<float>({cfg.levels, t, cfg.features}, uninitialized); // (L,T,F)
    reset(seed);
  }

  /// Refills the table with U(-1e-4, 1e-4) from std::mt19937(seed): each value is
  /// (2 u - 1) * 1e-4 with u = (mt() >> 8) * 2^-24, in table order (portable across standard
  /// libraries, unlike std::uniform_real_distribution). Complexity: O(L T F).
  void reset(std::uint32_t seed = default_seed) {
    std::mt19937 gen(seed);
    float* p = table_.data();
    for (index_t i = 0, n = table_.size(); i < n; ++i) {
      const float u = static_cast<float>(gen() >> 8) * 0x1p-24f; // [0,1), exact
      p[i] = (2.0f * u - 1.0f) * init_scale;
    }
  }

  /// Checks a configuration without building a grid. @throws config_error naming the bad value.
  static void validate(const hash_grid_config& c) {
    MEMBOUND_EXPECTS(c.input_dims == 2 || c.input_dims == 3, config_error, "hash_grid: input_dims is ",
                     c.input_dims, ", expected 2 or 3");
    MEMBOUND_EXPECTS(c.features == 1 || c.features == 2 || c.features == 4 || c.features == 8, config_error,
                     "hash_grid: features is ", c.features, ", expected 1, 2, 4 or 8");
    MEMBOUND_EXPECTS(c.log2_table >= 4 && c.log2_table <= 24, config_error, "hash_grid: log2_table is ",
                     c.log2_table, ", expected in [4, 24]");
    MEMBOUND_EXPECTS(c.levels >= 1 && c.levels <= max_levels, config_error, "hash_grid: levels is ", c.levels,
                     ", expected in [1, ", max_levels, "]");
    MEMBOUND_EXPECTS(c.base_resolution >= 1, config_error, "hash_grid: base_resolution is ", c.base_resolution,
                     ", expected >= 1");
    MEMBOUND_EXPECTS(c.growth >= 1.0, config_error, "hash_grid: growth is ", c.growth,
                     ", expected >= 1 (and not NaN)");
  }

  const hash_grid_config& config() const noexcept { return cfg_; }
  int input_dims() const noexcept { return cfg_.input_dims; }          ///< D
  int levels() const noexcept { return cfg_.levels; }                  ///< L
  int features() const noexcept { return cfg_.features; }              ///< F
  index_t table_size() const noexcept { return index_t{1} << cfg_.log2_table; } ///< T
  index_t output_dims() const noexcept { return index_t{cfg_.levels} * cfg_.features; } ///< L*F
  index_t parameter_count() const noexcept { return table_.size(); }   ///< L*T*F
  /// N_l of level l. @pre 0 <= l < L
  index_t resolution(int l) const noexcept { return levels_[l].res; }
  /// Whether level l is indexed densely. @pre 0 <= l < L
  bool dense(int l) const noexcept { return levels_[l].dense; }

  /// The parameters, (L,T,F) contiguous.
  view<float> table() noexcept { return table_.view(); }
  view<const float> table() const noexcept { return table_.view(); }

  /// y = encode(x).
  /// @tparam B backend::scalar (one point at a time: the twin) or a SIMD backend (the default):
  ///   W = lanes points at a time, vertex indices computed in vector registers and table entries
  ///   fetched with gathers (with F = 2 on AVX2 / AVX-512 both features of a vertex in one
  ///   64-bit element per lane: half the gathered elements, about 7% faster on machine B). Both
  ///   do the same float operations in the same order (weights as products over dimensions in
  ///   order, corners in order, separate multiply and add), so their outputs are identical bit
  ///   for bit.
  /// @param[in] x (N,D) points (clamped to [0,1]), any strides.
  /// @param[out] y (N,L*F), any strides; every element is written.
  /// @pre y does not overlap x or the table.
  /// @throws shape_error on mismatched ranks or extents.
  /// Complexity: O(N L 2^D F) table reads; no allocation.
  template <class B = backend::best_cpu>
  void forward(view<const float> x, view<float> y) const {
    check_points(x, "forward");
    check_nl(y, x.extent(0), "forward", "y");
    dispatch([&](auto dc, auto fc) { forward_impl<decltype(dc)::value, decltype(fc)::value, B>(x, y); });
  }

  /// The encoding of one tile of lanes<A> points held in registers: x[D] coordinates (clamped
  /// to [0,1] here, NaN -> 0), y[L*F] outputs, column l*F + f in y[l*F + f]. Bit-identical to
  /// `forward` (for fused kernels that keep features in registers, e.g. occupancy's classifier).
  template <class A>
  void forward_tile(const xsimd::batch<float, A>* x, xsimd::batch<float, A>* y) const {
    dispatch([&](auto dc, auto fc) { forward_tile_impl<decltype(dc)::value, decltype(fc)::value, A>(x, y); });
  }

  /// Adds (d encode / d table)^T dy to dtable: parameter gradients accumulate; zero dtable first
  /// for a fresh gradient. Deterministic for any thread count: each level's slice is written by
  /// one thread, in point order, corner order (0..2^D-1), feature order. With OpenMP the levels
  /// run in parallel (disjoint slices).
  /// @param[in] x (N,D) the points given to forward.
  /// @param[in] dy (N,L*F) gradient w.r.t. the encoding.
  /// @param[in,out] dtable (L,T,F) contiguous.
  /// @throws shape_error on mismatched ranks, extents, or a non-contiguous dtable.
  /// Complexity: O(N L 2^D F) scattered adds; no allocation.
  void backward_table(view<const float> x, view<const float> dy, view<float> dtable) const {
    check_points(x, "backward_table");
    check_nl(dy, x.extent(0), "backward_table", "dy");
    MEMBOUND_EXPECTS(dtable.rank() == 3 && dtable.extent(0) == cfg_.levels && dtable.extent(1) == table_size() &&
                         dtable.extent(2) == cfg_.features,
                     shape_error, "hash_grid::backward_table: dtable has rank ", dtable.rank(), " and extents (",
                     dtable.extent(0), ",", dtable.rank() > 1 ? dtable.extent(1) : 0, ",",
                     dtable.rank() > 2 ? dtable.extent(2) : 0, "), expected (", cfg_.levels, ",", table_size(), ",",
                     cfg_.features, ")");
    MEMBOUND_EXPECTS(dtable.contiguous(), shape_error, "hash_grid::backward_table: dtable is not contiguous");
    dispatch([&](auto dc, auto fc) { backward_table_impl<decltype(dc)::value, decltype(fc)::value>(x, dy, dtable); });
  }

  /// dx = (d encode / d x)^T dy. Overwrites dx (input gradients are not accumulated). At a point on
  /// a cell face the derivative is that of the cell min(floor(x N_l), N_l - 1) (one-sided: the
  /// encoding is only continuous there); outside [0,1] it is 0 (derivative of the clamp).
  /// @param[in] x (N,D) the points given to forward.
  /// @param[in] dy (N,L*F) gradient w.r.t. the encoding.
  /// @param[out] dx (N,D), any strides.
  /// @pre dx overlaps neither x, dy nor the table.
  /// @throws shape_error on mismatched ranks or extents.
  /// Complexity: O(N L 2^D F); no allocation.
  void backward_input(view<const float> x, view<const float> dy, view<float> dx) const {
    check_points(x, "backward_input");
    check_nl(dy, x.extent(0), "backward_input", "dy");
    MEMBOUND_EXPECTS(dx.rank() == 2 && dx.extent(0) == x.extent(0) && dx.extent(1) == cfg_.input_dims, shape_error,
                     "hash_grid::backward_input: dx has rank ", dx.rank(), " and extents (", dx.extent(0), ",",
                     dx.rank() > 1 ? dx.extent(1) : 0, "), expected (", x.extent(0), ",", cfg_.input_dims, ")");
    dispatch([&](auto dc, auto fc) { backward_input_impl<decltype(dc)::value, decltype(fc)::value>(x, dy, dx); });
  }

private:
  static constexpr int max_levels = 32;
  /// Points per block: a block's outputs (block * L * F floats) stay in L1/L2 across levels.
  static constexpr index_t block = 128;
  static constexpr std::uint32_t prime1 = 2654435761u;
  static constexpr std::uint32_t prime2 = 805459861u;

  template <int V>
  struct int_c {
    static constexpr int value = V;
  };

  /// Calls f(int_c<D>, int_c<F>) for the configured D and F.
  template <class Fn>
  void dispatch(Fn&& f) const {
    const auto with_f = [&](auto dc) {
      switch (cfg_.features) {
      case 1: f(dc, int_c<1>{}); break;
      case 2: f(dc, int_c<2>{}); break;
      case 4: f(dc, int_c<4>{}); break;
      default: f(dc, int_c<8>{}); break;
      }
    };
    if (cfg_.input_dims == 2) with_f(int_c<2>{});
    else with_f(int_c<3>{});
  }

  void check_points(const view<const float>& x, const char* fn) const {
    MEMBOUND_EXPECTS(x.rank() == 2 && x.extent(1) == cfg_.input_dims, shape_error, "hash_grid::", fn,
                     ": x has rank ", x.rank(), " and ", x.rank() > 1 ? x.extent(1) : x.extent(0),
                     " columns, expected (N,", cfg_.input_dims, ")");
  }
  void check_nl(const view<const float>& y, index_t n, const char* fn, const char* yname) const {
    MEMBOUND_EXPECTS(y.rank() == 2 && y.extent(0) == n && y.extent(1) == output_dims(), shape_error, "hash_grid::",
                     fn, ": ", yname, " has rank ", y.rank(), " and extents (", y.extent(0), ",",
                     y.rank() > 1 ? y.extent(1) : 0, "), expected (", n, ",", output_dims(), ")");
  }

  /// Clamps one point to [0,1]^D (NaN -> 0) and finds its cell c and local coordinates t.
  template <int D>
  static MEMBOUND_ALWAYS_INLINE void locate(const detail::grid_level& lv, const float* xp, index_t xs1,
                                                std::uint32_t* c, float* t) noexcept {
    for (int i = 0; i < D; ++i) {
      const float raw = xp[i * xs1];
      float v = raw > 0.0f ? raw : 0.0f; // NaN -> 0
      v = v < 1.0f ? v : 1.0f;
      const float p = v * lv.scale;
      const std::uint32_t ci = std::min(static_cast<std::uint32_t>(p), lv.res - 1);
      c[i] = ci;
      t[i] = p - static_cast<float>(ci); // exact: the fraction of a float is representable
    }
  }

  /// Table row of the vertex c + corner bits.
  template <int D, bool Dense>
  static MEMBOUND_ALWAYS_INLINE std::uint32_t vertex(const detail::grid_level& lv, const std::uint32_t* c, int corner,
                                                     std::uint32_t mask) noexcept {
    const std::uint32_t v0 = c[0] + (static_cast<std::uint32_t>(corner) & 1u);
    const std::uint32_t v1 = c[1] + ((static_cast<std::uint32_t>(corner) >> 1) & 1u);
    if constexpr (Dense) {
      std::uint32_t i = v0 + v1 * lv.stride1;
      if constexpr (D == 3) i += (c[2] + ((static_cast<std::uint32_t>(corner) >> 2) & 1u)) * lv.stride2;
      return i;
    } else {
      std::uint32_t h = v0 ^ (v1 * prime1);
      if constexpr (D == 3) h ^= (c[2] + ((static_cast<std::uint32_t>(corner) >> 2) & 1u)) * prime2;
      return h & mask;
    }
  }

  /// Interpolation weight of a corner: prod_i (bit_i ? t_i : 1 - t_i).
  template <int D>
  static MEMBOUND_ALWAYS_INLINE float weight(const float* t, int corner) noexcept {
    float w = 1.0f;
    for (int i = 0; i < D; ++i) w *= ((corner >> i) & 1) ? t[i] : 1.0f - t[i];
    return w;
  }

  template <int D, int F, bool Dense>
  void forward_level(int l, const view<const float>& x, const view<float>& y, index_t n0, index_t n1) const {
    const detail::grid_level& lv = levels_[l];
    const std::uint32_t mask = static_cast<std::uint32_t>(table_size() - 1);
    const float* tab = table_.data() + static_cast<index_t>(l) * table_size() * F;
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), ys0 = y.stride(0), ys1 = y.stride(1);
    float* yl = y.data() + static_cast<index_t>(l) * F * ys1;
    for (index_t n = n0; n < n1; ++n) {
      std::uint32_t c[D];
      float t[D];
      locate<D>(lv, x.data() + n * xs0, xs1, c, t);
      float acc[F] = {};
      for (int corner = 0; corner < (1 << D); ++corner) {
        const float w = weight<D>(t, corner);
        const float* e = tab + static_cast<index_t>(vertex<D, Dense>(lv, c, corner, mask)) * F;
        for (int f = 0; f < F; ++f) acc[f] += w * e[f];
      }
      for (int f = 0; f < F; ++f) yl[n * ys0 + f * ys1] = acc[f];
    }
  }

  // One level for one tile of W points held in registers: x[D] coordinates (as given, clamped
  // here), acc[F] outputs. The same operations as forward_level, lane-wise.
  template <int D, int F, bool Dense, class A>
  MEMBOUND_ALWAYS_INLINE void tile_level(int l, const xsimd::batch<float, A>* x, xsimd::batch<float, A>* acc) const {
    using fb = xsimd::batch<float, A>;
    using ub = xsimd::batch<std::uint32_t, A>;
    using ib = xsimd::batch<std::int32_t, A>;
    const detail::grid_level& lv = levels_[l];
    const float* tab = table_.data() + static_cast<index_t>(l) * table_size() * F;
    const fb zero(0.0f), one(1.0f), scale(lv.scale);
    const ub res_m1(lv.res - 1);
    ub c[D];
    fb t[D], omt[D];
    for (int i = 0; i < D; ++i) {
      fb v = xsimd::select(x[i] > zero, x[i], zero); // NaN -> 0
      v = xsimd::select(v < one, v, one);
      const fb p = v * scale;
      // p is in [0, res]: the float -> int32 conversion truncates like the scalar cast.
      const ub ci = xsimd::min(xsimd::bitwise_cast<ub>(xsimd::batch_cast<std::int32_t>(p)), res_m1);
      c[i] = ci;
      t[i] = p - xsimd::batch_cast<float>(xsimd::bitwise_cast<ib>(ci));
      omt[i] = one - t[i];
    }
    for (int f = 0; f < F; ++f) acc[f] = zero;
    for (int corner = 0; corner < (1 << D); ++corner) {
      fb w = one;
      for (int i = 0; i < D; ++i) w = w * (((corner >> i) & 1) ? t[i] : omt[i]);
      const ub v0 = c[0] + ub(static_cast<std::uint32_t>(corner) & 1u);
      const ub v1 = c[1] + ub((static_cast<std::uint32_t>(corner) >> 1) & 1u);
      ub idx;
      if constexpr (Dense) {
        idx = v0 + v1 * ub(lv.stride1);
        if constexpr (D == 3) idx = idx + (c[2] + ub((static_cast<std::uint32_t>(corner) >> 2) & 1u)) * ub(lv.stride2);
      } else {
        idx = v0 ^ (v1 * ub(prime1));
        if constexpr (D == 3) idx = idx ^ ((c[2] + ub((static_cast<std::uint32_t>(corner) >> 2) & 1u)) * ub(prime2));
        idx = idx & ub(static_cast<std::uint32_t>(table_size() - 1));
      }
      const ib row = xsimd::bitwise_cast<ib>(idx) * ib(F);
      if constexpr (F == 2) { // both features of a corner in one 64-bit gather per lane
        fb g0, g1;
        cpu::detail::gather_pairs<A>(tab, row, g0, g1);
        acc[0] = acc[0] + w * g0;
        acc[1] = acc[1] + w * g1;
      } else {
        for (int f = 0; f < F; ++f) acc[f] = acc[f] + w * cpu::detail::gather<A>(tab + f, row);
      }
    }
  }

  template <int D, int F, class A>
  void forward_tile_impl(const xsimd::batch<float, A>* x, xsimd::batch<float, A>* y) const {
    for (int l = 0; l < cfg_.levels; ++l) {
      if (levels_[l].dense) tile_level<D, F, true, A>(l, x, y + l * F);
      else tile_level<D, F, false, A>(l, x, y + l * F);
    }
  }

  // W points at a time through tile_level; coordinates and outputs go through small stack tiles
  // (any strides). Returns the first point not done (the scalar path finishes the tail).
  template <int D, int F, bool Dense, class A>
  index_t forward_level_simd(int l, const view<const float>& x, const view<float>& y, index_t n0, index_t n1) const {
    using fb = xsimd::batch<float, A>;
    constexpr index_t W = static_cast<index_t>(fb::size);
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), ys0 = y.stride(0), ys1 = y.stride(1);
    float* yl = y.data() + static_cast<index_t>(l) * F * ys1;
    alignas(64) float xt[D][W];
    alignas(64) float out[F][W];
    index_t n = n0;
    for (; n + W <= n1; n += W) {
      for (index_t k = 0; k < W; ++k)
        for (int i = 0; i < D; ++i) xt[i][k] = x.data()[(n + k) * xs0 + i * xs1];
      fb xv[D], acc[F];
      for (int i = 0; i < D; ++i) xv[i] = fb::load_aligned(xt[i]);
      tile_level<D, F, Dense, A>(l, xv, acc);
      for (int f = 0; f < F; ++f) acc[f].store_aligned(out[f]);
      for (index_t k = 0; k < W; ++k)
        for (int f = 0; f < F; ++f) yl[(n + k) * ys0 + f * ys1] = out[f][k];
    }
    return n;
  }

  template <int D, int F, class B>
  void forward_impl(const view<const float>& x, const view<float>& y) const {
    const index_t n = x.extent(0);
    const index_t nblocks = (n + block - 1) / block;
#if MEMBOUND_HAS_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (index_t b = 0; b < nblocks; ++b) {
      const index_t n0 = b * block, n1 = std::min(n, n0 + block);
      for (int l = 0; l < cfg_.levels; ++l) {
        index_t done = n0;
        if constexpr (!std::is_same_v<B, backend::scalar>) {
          if (levels_[l].dense) done = forward_level_simd<D, F, true, typename B::arch>(l, x, y, n0, n1);
          else done = forward_level_simd<D, F, false, typename B::arch>(l, x, y, n0, n1);
        }
        if (levels_[l].dense) forward_level<D, F, true>(l, x, y, done, n1);
        else forward_level<D, F, false>(l, x, y, done, n1);
      }
    }
  }

  template <int D, int F, bool Dense>
  void backward_table_level(int l, const view<const float>& x, const view<const float>& dy, float* dtab) const {
    const detail::grid_level& lv = levels_[l];
    const std::uint32_t mask = static_cast<std::uint32_t>(table_size() - 1);
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), gs0 = dy.stride(0), gs1 = dy.stride(1);
    const float* gl = dy.data() + static_cast<index_t>(l) * F * gs1;
    for (index_t n = 0, nn = x.extent(0); n < nn; ++n) {
      std::uint32_t c[D];
      float t[D];
      locate<D>(lv, x.data() + n * xs0, xs1, c, t);
      float g[F];
      for (int f = 0; f < F; ++f) g[f] = gl[n * gs0 + f * gs1];
      for (int corner = 0; corner < (1 << D); ++corner) {
        const float w = weight<D>(t, corner);
        float* e = dtab + static_cast<index_t>(vertex<D, Dense>(lv, c, corner, mask)) * F;
        for (int f = 0; f < F; ++f) e[f] += w * g[f];
      }
    }
  }

  template <int D, int F>
  void backward_table_impl(const view<const float>& x, const view<const float>& dy, const view<float>& dtable) const {
    const int nl = cfg_.levels;
#if MEMBOUND_HAS_OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (int l = 0; l < nl; ++l) {
      float* dtab = dtable.data() + static_cast<index_t>(l) * table_size() * F;
      if (levels_[l].dense) backward_table_level<D, F, true>(l, x, dy, dtab);
      else backward_table_level<D, F, false>(l, x, dy, dtab);
    }
  }

  /// Adds level l's contribution to acc[(n - n0) * D + i] for points [n0, n1).
  template <int D, int F, bool Dense>
  void backward_input_level(int l, const view<const float>& x, const view<const float>& dy, index_t n0, index_t n1,
                            float* acc) const {
    const detail::grid_level& lv = levels_[l];
    const std::uint32_t mask = static_cast<std::uint32_t>(table_size() - 1);
    const float* tab = table_.data() + static_cast<index_t>(l) * table_size() * F;
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), gs0 = dy.stride(0), gs1 = dy.stride(1);
    const float* gl = dy.data() + static_cast<index_t>(l) * F * gs1;
    for (index_t n = n0; n < n1; ++n) {
      std::uint32_t c[D];
      float t[D];
      locate<D>(lv, x.data() + n * xs0, xs1, c, t);
      float g[F];
      for (int f = 0; f < F; ++f) g[f] = gl[n * gs0 + f * gs1];
      float d[D] = {};
      for (int corner = 0; corner < (1 << D); ++corner) {
        const float* e = tab + static_cast<index_t>(vertex<D, Dense>(lv, c, corner, mask)) * F;
        float ge = 0.0f; // dy . table row
        for (int f = 0; f < F; ++f) ge += g[f] * e[f];
        // d w / d t_i = (bit_i ? 1 : -1) * prod_{j != i} f_j with f_j = bit_j ? t_j : 1 - t_j
        float fj[D];
        for (int j = 0; j < D; ++j) fj[j] = ((corner >> j) & 1) ? t[j] : 1.0f - t[j];
        const float g0 = ((corner & 1) ? ge : -ge);
        const float g1 = ((corner & 2) ? ge : -ge);
        if constexpr (D == 2) {
          d[0] += g0 * fj[1];
          d[1] += g1 * fj[0];
        } else {
          const float g2 = ((corner & 4) ? ge : -ge);
          d[0] += g0 * (fj[1] * fj[2]);
          d[1] += g1 * (fj[0] * fj[2]);
          d[2] += g2 * (fj[0] * fj[1]);
        }
      }
      float* a = acc + (n - n0) * D;
      for (int i = 0; i < D; ++i) a[i] += lv.scale * d[i];
    }
  }

  template <int D, int F>
  void backward_input_impl(const view<const float>& x, const view<const float>& dy, const view<float>& dx) const {
    const index_t n = x.extent(0);
    const index_t nblocks = (n + block - 1) / block;
    const index_t xs0 = x.stride(0), xs1 = x.stride(1), os0 = dx.stride(0), os1 = dx.stride(1);
#if MEMBOUND_HAS_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (index_t b = 0; b < nblocks; ++b) {
      const index_t n0 = b * block, n1 = std::min(n, n0 + block);
      float acc[block * D] = {}; // (block,D) per-point sums over levels, on the stack
      for (int l = 0; l < cfg_.levels; ++l) {
        if (levels_[l].dense) backward_input_level<D, F, true>(l, x, dy, n0, n1, acc);
        else backward_input_level<D, F, false>(l, x, dy, n0, n1, acc);
      }
      for (index_t p = n0; p < n1; ++p) {
        for (int i = 0; i < D; ++i) {
          const float raw = x.data()[p * xs0 + i * xs1];
          const bool inside = raw >= 0.0f && raw <= 1.0f;
          dx.data()[p * os0 + i * os1] = inside ? acc[(p - n0) * D + i] : 0.0f;
        }
      }
    }
  }

  hash_grid_config cfg_;
  detail::grid_level levels_[max_levels];
  array<float> table_; // (L,T,F)
};

} // namespace nn
} // namespace v0_1
} // namespace membound
