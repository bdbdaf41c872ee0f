// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Feature maps phi: R^{d_k} -> R^D applied to keys and queries before the memory
/// (ATLAS, arXiv 2505.23735, Sec. 3.1 and 4.2): identity, elu + 1, the polynomial map of degree p
/// with learnable coefficients a_i (initialised to 1/i!), and DeepTransformers' exponential kernel
/// truncated at degree p. Values are never mapped.
///
/// A feature map is a small aggregate modelling `memory::feature_map`: `name`, `dim(d_k)` and
/// `apply(x (N,d_k), out (N,D))`. `apply` is O(N D) and allocates nothing once the map has been
/// `prepare`d for a d_k (the polynomial map builds its monomial table there, O(D)).

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/memory/detail/activation.hpp"

namespace membound {
inline namespace v0_1 {
namespace memory {

/// The contract of a feature map: a name, its output dimension D for a key dimension d_k (throws
/// config_error when D would pass the map's stated bound), `prepare(d_k)` and
/// `apply(x (N,d_k), out (N,D))`.
template <class F>
concept feature_map = requires(F f, const F cf, index_t d, view<const float> x, view<float> out) {
  { F::name } -> std::convertible_to<std::string_view>;
  { cf.dim(d) } -> std::same_as<index_t>;
  f.prepare(d);
  cf.apply(x, out);
};

namespace detail {
inline void check_feature_io(const view<const float>& x, const view<float>& out, index_t d_k, index_t D, const char* who) {
  MEMBOUND_EXPECTS(x.rank() == 2 && x.extent(1) == d_k, shape_error, who, "::apply: x has rank ", x.rank(),
                   " and width ", x.rank() == 2 ? x.extent(1) : -1, ", expected (N,", d_k, ")");
  MEMBOUND_EXPECTS(out.rank() == 2 && out.extent(0) == x.extent(0) && out.extent(1) == D, shape_error, who,
                   "::apply: out is (", out.rank() == 2 ? out.extent(0) : -1, ",", out.rank() == 2 ? out.extent(1) : -1,
                   "), expected (", x.extent(0), ",", D, ")");
}
} // namespace detail

/// phi(x) = x; D = d_k.
struct identity_features {
  static constexpr std::string_view name = "identity";
  index_t dim(index_t d_k) const { return d_k; }
  void prepare(index_t d_k) { d_ = d_k; }
  void apply(view<const float> x, view<float> out) const {
    detail::check_feature_io(x, out, d_, d_, "identity_features");
    detail::copy_rows(x, out);
  }

 private:
  index_t d_ = 0;
};

/// phi(x)_j = elu(x_j) + 1 = (x_j > 0 ? x_j + 1 : exp(x_j)), a positive map of linear attention
/// (Katharopoulos et al. 2020); D = d_k.
struct elu_plus_one {
  static constexpr std::string_view name = "elu_plus_one";
  index_t dim(index_t d_k) const { return d_k; }
  void prepare(index_t d_k) { d_ = d_k; }
  void apply(view<const float> x, view<float> out) const {
    detail::check_feature_io(x, out, d_, d_, "elu_plus_one");
    detail::copy_rows(x, out);
    for (index_t n = 0; n < x.extent(0); ++n)
      for (index_t j = 0; j < d_; ++j) {
        float& v = out(n, j);
        v = v > 0.0f ? v + 1.0f : std::exp(v);
      }
  }

 private:
  index_t d_ = 0;
};

/// The polynomial feature map of ATLAS Eq. 4-5 in symmetric-monomial form:
///   phi(q) . phi(k) = sum_{i=0}^{p} a_i (q . k)^i,   D = C(d_k + p, p).
/// Features come in degree blocks i = 0..p; inside block i, one feature per multiset of indices
/// j_1 <= ... <= j_i in lexicographic order (Python's combinations_with_replacement), with value
///   sqrt(a_i * i! / prod_m count_m!) * x_{j_1} ... x_{j_i}.
/// The coefficients are learnable parameters of the layer (`coefficients`, size p + 1, each >= 0
/// so that phi is real; default 1/i!, the truncated Taylor series of exp). `max_dim` bounds D
/// (default 2^20 features: a 64-wide value memory over it is 256 MiB); a degree past it is a
/// config_error naming D. d_k = 64, p = 3 gives D = 47,905.
struct polynomial_features {
  static constexpr std::string_view name = "polynomial";
  int degree = 2;
  std::vector<float> coefficients; ///< a_0..a_p; empty means 1/i!
  index_t max_dim = index_t{1} << 20;

  polynomial_features() = default;
  /// Degree p with coefficients a_0..a_p (empty: 1/i!).
  explicit polynomial_features(int p, std::vector<float> a = {}) : degree(p), coefficients(std::move(a)) {}

  /// C(d_k + p, p), or config_error when it passes max_dim (or p is outside [0, 16]).
  index_t dim(index_t d_k) const {
    MEMBOUND_EXPECTS(degree >= 0 && degree <= 16, config_error, "polynomial_features: degree is ", degree,
                     ", expected 0..16");
    MEMBOUND_EXPECTS(d_k >= 1, config_error, "polynomial_features: d_k is ", d_k, ", expected >= 1");
    // C(d+p, p) built up as prod_{i=1}^{p} (d + i) / i, stopping once it passes max_dim.
    double c = 1.0;
    for (int i = 1; i <= degree; ++i) {
      c = c * static_cast<double>(d_k + i) / i;
      MEMBOUND_EXPECTS(c <= static_cast<double>(max_dim), config_error, "polynomial_features: degree ", degree,
                       " on d_k = ", d_k, " gives more than ", max_dim, " features (max_dim); lower the degree or d_k");
    }
    return static_cast<index_t>(std::llround(c));
  }

  /// a_i for i = 0..p (the defaults when `coefficients` is empty).
  std::vector<float> effective_coefficients() const {
    if (!coefficients.empty()) return coefficients;
    std::vector<float> a(static_cast<std::size_t>(degree) + 1);
    double f = 1.0;
    for (int i = 0; i <= degree; ++i) {
      if (i > 0) f *= i;
      a[static_cast<std::size_t>(i)] = static_cast<float>(1.0 / f);
    }
    return a;
  }

  /// Builds the monomial table for d_k: each feature is its parent (one degree lower) times one
  /// x_j, then scaled. @throws config_error for a bad degree, D past max_dim or a_i < 0 / NaN.
  void prepare(index_t d_k) {
    const index_t D = dim(d_k);
    const std::vector<float> a = effective_coefficients();
    MEMBOUND_EXPECTS(a.size() == static_cast<std::size_t>(degree) + 1, config_error,
                     "polynomial_features: ", a.size(), " coefficients for degree ", degree, ", expected ", degree + 1);
    for (std::size_t i = 0; i < a.size(); ++i)
      MEMBOUND_EXPECTS(a[i] >= 0.0f, config_error, "polynomial_features: coefficient a_", i, " is ", a[i],
                       ", expected >= 0 (the feature map scales by sqrt(a_i))");
    d_ = d_k;
    parent_.assign(static_cast<std::size_t>(D), -1);
    factor_.assign(static_cast<std::size_t>(D), -1);
    scale_.assign(static_cast<std::size_t>(D), 0.0f);
    last_.assign(static_cast<std::size_t>(D), 0);
    std::vector<double> logmult(static_cast<std::size_t>(D), 0.0); // log(i! / prod count!) built incrementally
    std::vector<int> run(static_cast<std::size_t>(D), 0);          // multiplicity of the last index
    scale_[0] = std::sqrt(a[0]);
    index_t prev_begin = 0, prev_end = 1, next = 1;
    for (int i = 1; i <= degree; ++i) {
      for (index_t f = prev_begin; f < prev_end; ++f) {
        const index_t j0 = i == 1 ? 0 : last_[static_cast<std::size_t>(f)];
        for (index_t j = j0; j < d_k; ++j) {
          const auto s = static_cast<std::size_t>(next);
          parent_[s] = f;
          factor_[s] = j;
          last_[s] = j;
          // multinomial i!/prod c! from (i-1)!/prod c'!: times i / (new multiplicity of j)
          run[s] = (i > 1 && j == last_[static_cast<std::size_t>(f)]) ? run[static_cast<std::size_t>(f)] + 1 : 1;
          logmult[s] = logmult[static_cast<std::size_t>(f)] + std::log(static_cast<double>(i)) - std::log(static_cast<double>(run[s]));
          scale_[s] = static_cast<float>(std::sqrt(static_cast<double>(a[static_cast<std::size_t>(i)]) * std::exp(logmult[s])));
          ++next;
        }
      }
      prev_begin = prev_end;
      prev_end = next;
    }
  }

  void apply(view<const float> x, view<float> out) const {
    const auto D = static_cast<index_t>(parent_.size());
    MEMBOUND_EXPECTS(D > 0, config_error, "polynomial_features::apply: call prepare(d_k) first");
    detail::check_feature_io(x, out, d_, D, "polynomial_features");
    thread_local std::vector<float> raw, xr;
    raw.resize(static_cast<std::size_t>(D));
    xr.resize(static_cast<std::size_t>(d_));
    const index_t* par = parent_.data();
    const index_t* fac = factor_.data();
    const float* sc = scale_.data();
    for (index_t n = 0; n < x.extent(0); ++n) {
      for (index_t j = 0; j < d_; ++j) xr[static_cast<std::size_t>(j)] = x(n, j);
      float* r = raw.data();
      r[0] = 1.0f;
      for (index_t f = 1; f < D; ++f) r[f] = r[par[f]] * xr[static_cast<std::size_t>(fac[f])];
      if (out.stride(1) == 1) {
        float* o = &out(n, 0);
        for (index_t f = 0; f < D; ++f) o[f] = r[f] * sc[f];
      } else {
        for (index_t f = 0; f < D; ++f) out(n, f) = r[f] * sc[f];
      }
    }
  }

 private:
  index_t d_ = 0;
  std::vector<index_t> parent_, factor_, last_;
  std::vector<float> scale_;
};

/// DeepTransformers' exponential kernel exp(q . k) (ATLAS Eq. 22-23) truncated at degree p
/// (default 2): the polynomial map with fixed a_i = 1/i!, so phi(q) . phi(k) = sum_{i<=p} (q.k)^i / i!.
struct exp_taylor_features : polynomial_features {
  static constexpr std::string_view name = "exp_taylor";
  exp_taylor_features() : polynomial_features(2) {}
  explicit exp_taylor_features(int p) : polynomial_features(p) {}
};

static_assert(feature_map<identity_features>);
static_assert(feature_map<elu_plus_one>);
static_assert(feature_map<polynomial_features>);
static_assert(feature_map<exp_taylor_features>);

} // namespace memory
} // namespace v0_1
} // namespace membound
