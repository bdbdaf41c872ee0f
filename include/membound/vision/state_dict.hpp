// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `vision::state_dict`: named f32 tensors as a PyTorch `state_dict()` holds them (timm's
/// names), read from or written to safetensors; plus the BatchNorm folds (Conv-BN into a conv
/// with bias, BatchNorm1d + Linear into a Linear) that the vision networks apply at load time.
///
/// Lookups check the shape: a missing tensor or a shape other than the expected one is a
/// `format_error` naming the tensor and both shapes. Integer tensors of a checkpoint
/// (`num_batches_tracked`, timm's older persistent `attention_bias_idxs`) are skipped on reading.

#include <cmath>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "membound/backend/cpu/packed_gemm.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"
#include "membound/io/safetensors.hpp"

namespace membound {
inline namespace v0_1 {
namespace vision {

/// Named f32 tensors (a PyTorch state dict). Copyable; lookups O(log n).
class state_dict {
public:
  /// Adds or replaces a tensor.
  void set(std::string name, array<float> t) { tensors_.insert_or_assign(std::move(name), std::move(t)); }
  bool contains(std::string_view name) const { return tensors_.find(std::string(name)) != tensors_.end(); }
  std::size_t size() const noexcept { return tensors_.size(); }
  const std::map<std::string, array<float>>& tensors() const noexcept { return tensors_; }

  /// The tensor `name`, which must have exactly `shape`.
  /// @throws format_error naming the tensor when it is missing or has another shape.
  const array<float>& get(std::string_view name, std::span<const index_t> shape) const {
    const auto it = tensors_.find(std::string(name));
    MEMBOUND_EXPECTS(it != tensors_.end(), format_error, "state_dict: missing tensor \"", name, "\" (expected shape ",
                     io::detail::shape_string(shape), ")");
    const array<float>& t = it->second;
    bool same = static_cast<std::size_t>(t.rank()) == shape.size();
    for (std::size_t d = 0; same && d < shape.size(); ++d) same = t.extent(static_cast<int>(d)) == shape[d];
    MEMBOUND_EXPECTS(same, format_error, "state_dict: tensor \"", name, "\" has shape ",
                     io::detail::shape_string(t.extents()), ", expected ", io::detail::shape_string(shape));
    return t;
  }
  const array<float>& get(std::string_view name, std::initializer_list<index_t> shape) const {
    return get(name, std::span<const index_t>(shape.begin(), shape.size()));
  }

  /// Every floating-point tensor of a safetensors file (F32, F16, BF16, F64, F8 converted to f32);
  /// integer and boolean tensors are skipped. @throws format_error from the reader.
  static state_dict from_safetensors(const io::safetensors& file) {
    state_dict sd;
    for (const auto& t : file.tensors()) {
      if (!is_float(t.type)) continue;
      sd.set(t.name, file.load<float>(t.name));
    }
    return sd;
  }
  static state_dict load(const std::filesystem::path& path) { return from_safetensors(io::safetensors::open(path)); }

  /// Writes every tensor as F32 safetensors (names sorted).
  void save(const std::filesystem::path& path) const {
    io::safetensors_writer w;
    for (const auto& [name, t] : tensors_) w.add(name, t.cview());
    w.write(path);
  }

private:
  static bool is_float(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::f64 || t == dtype::f8_e4m3 ||
           t == dtype::f8_e5m2;
  }
  std::map<std::string, array<float>> tensors_;
};

/// A convolution (or Linear) with BatchNorm folded in: weight (C_out, per) row-major, bias (C_out).
/// A 1x1 convolution may also carry `packed`, its weight repacked for `cpu::packed_gemm` (see
/// vision::detail::pack_1x1; empty otherwise).
struct folded_conv {
  array<float> weight;        // (C_out, C_in/groups * k * k)
  array<float> bias;          // (C_out)
  cpu::packed_matrix packed;  // weight packed for the backend's register tile, or empty
  index_t out_channels() const noexcept { return bias.size(); }
  index_t in_channels() const noexcept { return bias.size() == 0 ? 0 : weight.size() / bias.size(); }
};

/// Folds `<prefix>.conv.weight` (C_out, cin_g, k, k) and the eval BatchNorm `<prefix>.bn.*`
/// (eps) into one convolution: s = gamma / sqrt(var + eps), w' = w s, b' = beta - mean s
/// (computed in double, rounded once). @throws format_error naming a missing or misshapen tensor.
inline folded_conv fold_conv_bn(const state_dict& sd, const std::string& prefix, index_t cin_g, index_t cout,
                                index_t k, double eps = 1e-5) {
  const array<float>& w = sd.get(prefix + ".conv.weight", {cout, cin_g, k, k});
  const array<float>& g = sd.get(prefix + ".bn.weight", {cout});
  const array<float>& b = sd.get(prefix + ".bn.bias", {cout});
  const array<float>& m = sd.get(prefix + ".bn.running_mean", {cout});
  const array<float>& v = sd.get(prefix + ".bn.running_var", {cout});
  const index_t per = cin_g * k * k;
  folded_conv f{array<float>({cout, per}, uninitialized), array<float>({cout}, uninitialized), {}}; // (C_out, per), (C_out)
  for (index_t o = 0; o < cout; ++o) {
    const double s = static_cast<double>(g.data()[o]) / std::sqrt(static_cast<double>(v.data()[o]) + eps);
    for (index_t i = 0; i < per; ++i) f.weight.data()[o * per + i] = static_cast<float>(w.data()[o * per + i] * s);
    f.bias.data()[o] = static_cast<float>(static_cast<double>(b.data()[o]) - static_cast<double>(m.data()[o]) * s);
  }
  return f;
}

/// Folds an eval BatchNorm1d `<bn>.*` that precedes the Linear `<linear>.{weight,bias}`
/// (C_out, C_in): s = gamma / sqrt(var + eps), W' = W diag(s), b' = b + W (beta - mean s).
inline folded_conv fold_bn_linear(const state_dict& sd, const std::string& bn, const std::string& linear,
                                  index_t cin, index_t cout, double eps = 1e-5) {
  const array<float>& w = sd.get(linear + ".weight", {cout, cin});
  const array<float>& lb = sd.get(linear + ".bias", {cout});
  const array<float>& g = sd.get(bn + ".weight", {cin});
  const array<float>& b = sd.get(bn + ".bias", {cin});
  const array<float>& m = sd.get(bn + ".running_mean", {cin});
  const array<float>& v = sd.get(bn + ".running_var", {cin});
  std::vector<double> s(static_cast<std::size_t>(cin)), t(static_cast<std::size_t>(cin));
  for (index_t i = 0; i < cin; ++i) {
    s[static_cast<std::size_t>(i)] = static_cast<double>(g.data()[i]) / std::sqrt(static_cast<double>(v.data()[i]) + eps);
    t[static_cast<std::size_t>(i)] = static_cast<double>(b.data()[i]) - static_cast<double>(m.data()[i]) * s[static_cast<std::size_t>(i)];
  }
  folded_conv f{array<float>({cout, cin}, uninitialized), array<float>({cout}, uninitialized), {}}; // (C_out, C_in), (C_out)
  for (index_t o = 0; o < cout; ++o) {
    double acc = lb.data()[o];
    for (index_t i = 0; i < cin; ++i) {
      const double wi = w.data()[o * cin + i];
      f.weight.data()[o * cin + i] = static_cast<float>(wi * s[static_cast<std::size_t>(i)]);
      acc += wi * t[static_cast<std::size_t>(i)];
    }
    f.bias.data()[o] = static_cast<float>(acc);
  }
  return f;
}

} // namespace vision
} // namespace v0_1
} // namespace membound
