// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `vision::cascaded_group_attention`: EfficientViT's cascaded group attention (Liu et al.,
/// CVPR 2023, Sec. 3.2; timm `CascadedGroupAttention`), on R x R token windows.
///
/// For an input X (C channels, R x R positions) split along channels into h heads X_0..X_{h-1}:
///
///     F_0 = X_0,  F_i = X_i + O_{i-1}                       (the cascade)
///     [q; k; v] = Conv-BN_1x1,i(F_i)                        (kd, kd and d = C / h channels)
///     q = DWConv-BN_{k_i x k_i, i}(q)                       (zero padding k_i / 2 inside the window)
///     O_i = v softmax(kd^-1/2 q^T k + bias_i)^T              (bias_i[n, m] = table_i[|dy| R + |dx|])
///     Y = Conv-BN_1x1(ReLU(concat(O_0, ..., O_{h-1})))
///
/// BatchNorms are folded into the convolutions at load time, the scale kd^-1/2 into the folded Q
/// depthwise convolution, and the bias table is expanded to (R^2, R^2) per head. The heads are
/// sequential (the cascade); the work inside a head runs over all windows of all images at once:
/// one GEMM for the qkv projection, one depthwise pass, then `cpu::tile_attention` per window
/// (threads over windows), and one GEMM for the projection.
/// Costs per window of N = R^2 tokens: sum_i [N (C/h)(2 kd + d) + N kd k_i^2 + N^2 (kd + d)] + N C^2 MACs.
/// Results are identical for any thread count (fixed work partition; see detail/channel_major.hpp).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "membound/backend/cpu/tile_attention.hpp"
#include "membound/core/view.hpp"
#include "membound/vision/detail/channel_major.hpp"
#include "membound/vision/state_dict.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

/// Settings of one cascaded group attention (timm's constructor arguments).
struct cga_config {
  index_t dim = 64;                      ///< C: input and output channels
  index_t key_dim = 16;                  ///< kd: Q and K width per head
  index_t heads = 4;                     ///< h: channel splits (dim % heads == 0)
  double attn_ratio = 1.0;               ///< value width per head d = int(attn_ratio kd); must be C / h (the cascade adds O_i to X_{i+1})
  std::vector<index_t> kernels{5, 5, 5, 5}; ///< Q depthwise kernel of head i (odd, 1..7), at least `heads` entries
  index_t resolution = 7;                ///< R: windows are R x R tokens (R^2 <= 64); the bias table has R^2 entries per head

  index_t value_dim() const noexcept { return static_cast<index_t>(attn_ratio * static_cast<double>(key_dim)); }
  index_t tokens() const noexcept { return resolution * resolution; }
  /// @throws config_error naming the bad setting.
  void check() const {
    MEMBOUND_EXPECTS(dim >= 1 && heads >= 1 && dim % heads == 0, config_error, "cascaded_group_attention: dim ", dim,
                     " is not split evenly into ", heads, " heads");
    MEMBOUND_EXPECTS(key_dim >= 1, config_error, "cascaded_group_attention: key_dim ", key_dim, ", expected >= 1");
    MEMBOUND_EXPECTS(value_dim() == dim / heads, config_error, "cascaded_group_attention: value dim int(attn_ratio ",
                     attn_ratio, " x key_dim ", key_dim, ") = ", value_dim(), " must equal dim / heads = ", dim / heads,
                     " (the cascade adds each head's output to the next head's input split)");
    MEMBOUND_EXPECTS(static_cast<index_t>(kernels.size()) >= heads, config_error, "cascaded_group_attention: ",
                     kernels.size(), " kernel sizes for ", heads, " heads");
    for (index_t i = 0; i < heads; ++i) {
      const index_t k = kernels[static_cast<std::size_t>(i)];
      MEMBOUND_EXPECTS(k >= 1 && k <= 7 && k % 2 == 1, config_error, "cascaded_group_attention: head ", i,
                       " has Q kernel ", k, ", expected odd, 1..7");
    }
    MEMBOUND_EXPECTS(resolution >= 1 && tokens() <= cpu::tile_attention_max_tokens, config_error,
                     "cascaded_group_attention: resolution ", resolution, ", expected 1..8 (at most 64 tokens a window)");
  }
};

/// Cascaded group attention with folded weights. Not safe for concurrent calls on one object
/// (it owns its workspace); separate objects are independent.
template <class B = backend::best_cpu>
class cascaded_group_attention {
public:
  cga_config cfg;
  std::vector<folded_conv> qkv;     ///< head i: (2 kd + d, C / h), rows [q; k; v]
  std::vector<folded_conv> dw;      ///< head i: (kd, k_i^2), scaled by kd^-1/2
  std::vector<array<float>> bias_t; ///< head i: (R^2 keys, ldb) expanded bias, zero padded
  folded_conv proj;                 ///< (C, d h)

  /// Builds the operator from timm's tensors under `prefix` (e.g.
  /// "stages.0.blocks.0.mixer.m.attn"): qkvs.i, dws.i, proj.1 (Conv-BN each) and
  /// attention_biases (h, R^2). @throws config_error (settings), format_error naming a missing
  /// or misshapen tensor.
  static cascaded_group_attention load(const cga_config& c, const state_dict& sd, const std::string& prefix) {
    c.check();
    cascaded_group_attention a;
    a.cfg = c;
    const index_t h = c.heads, d = c.value_dim(), kd = c.key_dim, n = c.tokens(), r = c.resolution;
    const float scale = static_cast<float>(std::pow(static_cast<double>(kd), -0.5));
    for (index_t i = 0; i < h; ++i) {
      const std::string hi = std::to_string(i);
      a.qkv.push_back(fold_conv_bn(sd, prefix + ".qkvs." + hi, c.dim / h, 2 * kd + d, 1));
      detail::pack_1x1<B>(a.qkv.back());
      const index_t k = c.kernels[static_cast<std::size_t>(i)];
      folded_conv f = fold_conv_bn(sd, prefix + ".dws." + hi, 1, kd, k);
      for (float& w : f.weight.span()) w *= scale;
      for (float& b : f.bias.span()) b *= scale;
      a.dw.push_back(std::move(f));
    }
    a.proj = fold_conv_bn(sd, prefix + ".proj.1", d * h, c.dim, 1);
    detail::pack_1x1<B>(a.proj);
    const array<float>& table = sd.get(prefix + ".attention_biases", {h, r * r});
    const index_t ldb = cpu::tile_attention_bias_stride(n);
    for (index_t i = 0; i < h; ++i) {
      array<float> bt({n, ldb}); // zero padded
      for (index_t m = 0; m < n; ++m)
        for (index_t q = 0; q < n; ++q) {
          const index_t dy = std::abs(m / r - q / r), dx = std::abs(m % r - q % r);
          bt.data()[m * ldb + q] = table.data()[i * r * r + dy * r + dx];
        }
      a.bias_t.push_back(std::move(bt));
    }
    return a;
  }

  /// Channels of the concatenated head outputs (d h = C).
  index_t value_channels() const noexcept { return cfg.value_dim() * cfg.heads; }

  /// The heads on channel-major windows: x (C, W, R, R) for W windows (tokens row-major within a
  /// window) -> o (d h, W, R, R) = ReLU(concat_i O_i), the input of the projection.
  void heads_forward(const float* x, index_t windows, float* o) {
    const index_t h = cfg.heads, d = cfg.value_dim(), kd = cfg.key_dim, ch = cfg.dim / h;
    const index_t n = cfg.tokens(), t = windows * n, r = cfg.resolution;
    const index_t rows = 2 * kd + d;
    reserve(f_, ch * t);
    reserve(qkv_, rows * t);
    reserve(qd_, kd * t);
    const index_t ldb = cpu::tile_attention_bias_stride(n);
    const index_t scratch = cpu::tile_attention_scratch_floats(n, kd);
    for (index_t i = 0; i < h; ++i) {
      const float* in = x + i * ch * t; // (C/h, T): X_i
      if (i > 0) {                       // F_i = X_i + O_{i-1}
        const float* prev = o + (i - 1) * d * t;
        float* f = f_.data();
        [[maybe_unused]] const bool big = ch * t >= 32768;
        MEMBOUND_VISION_PARALLEL_FOR
        for (index_t j = 0; j < ch * t; ++j) f[j] = in[j] + prev[j];
        in = f;
      }
      detail::cm_conv1x1<B>(qkv[i], in, t, qkv_.data(), t, t, detail::epilogue::bias, false);
      const index_t k = cfg.kernels[static_cast<std::size_t>(i)];
      detail::cm_depthwise<B>(qkv_.data(), kd, windows, dw[i].weight.data(), dw[i].bias.data(), qd_.data(),
                              cpu::conv_geometry{r, r, k, 1, k / 2}, false);
      const float* kp = qkv_.data() + kd * t;
      const float* vp = qkv_.data() + 2 * kd * t;
      float* oi = o + i * d * t;
      const float* bt = bias_t[static_cast<std::size_t>(i)].data();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (windows > 1)
#endif
      for (index_t w = 0; w < windows; ++w)
        cpu::tile_attention<B>(n, kd, d, qd_.data() + w * n, t, kp + w * n, t, vp + w * n, t, bt, ldb, oi + w * n, t,
                               detail::thread_scratch(scratch));
    }
    [[maybe_unused]] const bool big = h * d * t >= 32768;
    MEMBOUND_VISION_PARALLEL_FOR
    for (index_t j = 0; j < h * d * t; ++j) o[j] = std::max(o[j], 0.0f);
  }

  /// The attention probabilities of every head in one window: x is the channel-major input of
  /// heads_forward, (C, W, R, R) for W windows; writes p (h, N, N), N = R^2, with
  /// p[i, n, m] = softmax_m(q_i[:, n] . k_i[:, m] + bias_i[n, m]) for window `window_index`
  /// (row n: query token n, row-major in the window; each row sums to 1). Plain double-precision
  /// loops over the folded weights (qkv, dw, bias_t), independent of `cpu::tile_attention`; the
  /// cascade is followed, so head i sees X_i + O_{i-1} with O_{i-1} computed here too, and the Q
  /// depthwise convolution is zero padded inside the window. For inspection, not speed.
  /// @throws shape_error unless 0 <= window_index < windows. Costs: per head
  /// N (C/h)(2 kd + d) + N kd k_i^2 + N^2 (kd + d) MACs; O(h N^2 + C N) memory; allocates.
  void probabilities(const float* x, index_t windows, index_t window_index, float* p) const {
    MEMBOUND_EXPECTS(windows >= 1 && window_index >= 0 && window_index < windows, shape_error,
                     "cascaded_group_attention::probabilities: window ", window_index, " of ", windows);
    const index_t h = cfg.heads, d = cfg.value_dim(), kd = cfg.key_dim, ch = cfg.dim / h;
    const index_t n = cfg.tokens(), t = windows * n, r = cfg.resolution, rows = 2 * kd + d;
    const index_t ldb = cpu::tile_attention_bias_stride(n);
    std::vector<double> f(static_cast<std::size_t>(ch * n)), prev(static_cast<std::size_t>(d * n), 0.0),
        qkvw(static_cast<std::size_t>(rows * n)), q(static_cast<std::size_t>(kd * n)), row(static_cast<std::size_t>(n));
    for (index_t i = 0; i < h; ++i) {
      // F_i = X_i + O_{i-1}, (C/h, N) of this window (d = C/h, checked by cfg.check()).
      for (index_t c = 0; c < ch; ++c)
        for (index_t j = 0; j < n; ++j)
          f[static_cast<std::size_t>(c * n + j)] =
              static_cast<double>(x[(i * ch + c) * t + window_index * n + j]) + (i > 0 ? prev[static_cast<std::size_t>(c * n + j)] : 0.0);
      const float* w = qkv[static_cast<std::size_t>(i)].weight.data(); // (rows, C/h)
      const float* b = qkv[static_cast<std::size_t>(i)].bias.data();
      for (index_t o = 0; o < rows; ++o)
        for (index_t j = 0; j < n; ++j) {
          double acc = b[o];
          for (index_t c = 0; c < ch; ++c) acc += static_cast<double>(w[o * ch + c]) * f[static_cast<std::size_t>(c * n + j)];
          qkvw[static_cast<std::size_t>(o * n + j)] = acc;
        }
      const index_t k = cfg.kernels[static_cast<std::size_t>(i)], half = k / 2;
      const float* dwt = dw[static_cast<std::size_t>(i)].weight.data(); // (kd, k^2), scale folded in
      const float* dwb = dw[static_cast<std::size_t>(i)].bias.data();
      for (index_t c = 0; c < kd; ++c)
        for (index_t y = 0; y < r; ++y)
          for (index_t xx = 0; xx < r; ++xx) {
            double acc = dwb[c];
            for (index_t a = 0; a < k; ++a)
              for (index_t e = 0; e < k; ++e) {
                const index_t yy = y + a - half, xe = xx + e - half;
                if (yy >= 0 && yy < r && xe >= 0 && xe < r)
                  acc += static_cast<double>(dwt[c * k * k + a * k + e]) * qkvw[static_cast<std::size_t>(c * n + yy * r + xe)];
              }
            q[static_cast<std::size_t>(c * n + y * r + xx)] = acc;
          }
      const float* bt = bias_t[static_cast<std::size_t>(i)].data(); // (keys, ldb)
      for (index_t j = 0; j < n; ++j) {
        double mx = -1e300;
        for (index_t m = 0; m < n; ++m) {
          double s = bt[m * ldb + j];
          for (index_t c = 0; c < kd; ++c) s += q[static_cast<std::size_t>(c * n + j)] * qkvw[static_cast<std::size_t>((kd + c) * n + m)];
          row[static_cast<std::size_t>(m)] = s;
          mx = std::max(mx, s);
        }
        double sum = 0.0;
        for (double& s : row) sum += (s = std::exp(s - mx));
        for (index_t m = 0; m < n; ++m) row[static_cast<std::size_t>(m)] /= sum;
        for (index_t m = 0; m < n; ++m) p[(i * n + j) * n + m] = static_cast<float>(row[static_cast<std::size_t>(m)]);
        for (index_t c = 0; c < d; ++c) { // O_i[c, j] = sum_m v[c, m] P[j, m], the next head's cascade input
          double acc = 0.0;
          for (index_t m = 0; m < n; ++m) acc += qkvw[static_cast<std::size_t>((2 * kd + c) * n + m)] * row[static_cast<std::size_t>(m)];
          prev[static_cast<std::size_t>(c * n + j)] = acc;
        }
      }
    }
  }

  /// y (B, C, R, R) = CGA(x (B, C, R, R)), NCHW. @throws shape_error naming the expected shape.
  void forward(view<const float> x, view<float> y) {
    const index_t c = cfg.dim, r = cfg.resolution;
    MEMBOUND_EXPECTS(x.rank() == 4 && x.contiguous() && x.extent(1) == c && x.extent(2) == r && x.extent(3) == r,
                     shape_error, "cascaded_group_attention: x must be a contiguous (B,", c, ",", r, ",", r,
                     ") tensor; got ", describe(x));
    const index_t b = x.extent(0), n = r * r;
    MEMBOUND_EXPECTS(y.rank() == 4 && y.contiguous() && y.extent(0) == b && y.extent(1) == c && y.extent(2) == r &&
                         y.extent(3) == r,
                     shape_error, "cascaded_group_attention: y must be a contiguous (", b, ",", c, ",", r, ",", r,
                     ") tensor; got ", describe(view<const float>(y)));
    array<float> xc({c, b * n}, uninitialized);                   // (C, B, R, R)
    array<float> oc({value_channels(), b * n}, uninitialized);    // (d h, B, R, R)
    array<float> yc({c, b * n}, uninitialized);                   // (C, B, R, R)
    to_channel_major(x.data(), b, c, n, xc.data());
    heads_forward(xc.data(), b, oc.data());
    detail::cm_conv1x1<B>(proj, oc.data(), b * n, yc.data(), b * n, b * n, detail::epilogue::bias, false);
    from_channel_major(yc.data(), b, c, n, y.data());
  }

  /// (B, C, P) -> (C, B, P) and back.
  static void to_channel_major(const float* x, index_t b, index_t c, index_t p, float* y) {
    for (index_t i = 0; i < b; ++i)
      for (index_t ch = 0; ch < c; ++ch) std::copy_n(x + (i * c + ch) * p, p, y + (ch * b + i) * p);
  }
  static void from_channel_major(const float* x, index_t b, index_t c, index_t p, float* y) {
    for (index_t i = 0; i < b; ++i)
      for (index_t ch = 0; ch < c; ++ch) std::copy_n(x + (ch * b + i) * p, p, y + (i * c + ch) * p);
  }
  static std::string describe(view<const float> x) {
    std::string s = "(";
    for (int i = 0; i < x.rank(); ++i) {
      if (i > 0) s += ',';
      s += std::to_string(x.extent(i));
    }
    s += x.contiguous() ? ")" : ") non-contiguous";
    return s;
  }

private:
  static void reserve(array<float>& a, index_t floats) {
    if (a.size() < floats) a = array<float>({floats}, uninitialized); // (floats): flat workspace
  }
  array<float> f_, qkv_, qd_;
};

} // namespace vision
} // namespace v0_1
} // namespace membound
