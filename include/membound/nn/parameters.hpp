// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `nn::parameters`: a named collection of f32 master tensors (the values a layer trains),
/// with their gradients, saved to and loaded from safetensors by name, and converted to bf16 or
/// f16 storage copies for inference.
///
/// Names follow the Hugging Face convention ("layers.0.mlp.up.weight"). Each parameter owns its
/// value and its gradient (same shape, zero-initialised); views handed out stay valid for the
/// lifetime of the collection (entries are never moved). Lookups are O(log P) for P parameters.

#include <filesystem>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "membound/backend/cpu/convert.hpp"
#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/io/safetensors.hpp"

namespace membound {
inline namespace v0_1 {
namespace nn {

/// Named f32 parameters with gradients. Not copyable (layers hold views into it); movable.
class parameters {
public:
  struct entry {
    std::string name;
    array<float> value; ///< the f32 master copy
    array<float> grad;  ///< same shape, accumulated by backward passes
  };

  parameters() = default;
  parameters(parameters&&) noexcept = default;
  parameters& operator=(parameters&&) noexcept = default;
  parameters(const parameters&) = delete;
  parameters& operator=(const parameters&) = delete;

  /// Registers a zero-initialised parameter and returns a view of its value.
  /// @throws config_error for an empty or duplicate name; shape_error for bad extents.
  view<float> add(std::string name, std::initializer_list<index_t> shape) {
    return add(std::move(name), std::span<const index_t>(shape.begin(), shape.size()));
  }
  view<float> add(std::string name, std::span<const index_t> shape) {
    MEMBOUND_EXPECTS(!name.empty(), config_error, "parameters::add: empty name");
    MEMBOUND_EXPECTS(!by_name_.count(name), config_error, "parameters::add: \"", name, "\" is already registered");
    auto e = std::make_unique<entry>();
    e->name = name;
    e->value = array<float>(shape);
    e->grad = array<float>(shape);
    view<float> v = e->value.view();
    by_name_.emplace(std::move(name), entries_.size());
    entries_.push_back(std::move(e));
    return v;
  }

  bool contains(std::string_view name) const { return by_name_.find(std::string(name)) != by_name_.end(); }
  std::size_t size() const noexcept { return entries_.size(); }
  /// Total number of scalar parameters.
  index_t count() const noexcept {
    index_t n = 0;
    for (const auto& e : entries_) n += e->value.size();
    return n;
  }
  /// Entries in registration order.
  const entry& operator[](std::size_t i) const { return *entries_.at(i); }
  entry& operator[](std::size_t i) { return *entries_.at(i); }

  /// The value / gradient of a parameter. @throws lookup_error naming an unknown parameter.
  view<float> value(std::string_view name) { return find(name).value.view(); }
  view<const float> value(std::string_view name) const { return find(name).value.view(); }
  view<float> grad(std::string_view name) { return find(name).grad.view(); }
  view<const float> grad(std::string_view name) const { return find(name).grad.view(); }

  /// Sets every gradient to zero.
  void zero_grad() noexcept {
    for (auto& e : entries_) e->grad.fill(0.0f);
  }

  /// A 16-bit storage copy of a parameter for inference (bf16 or f16, round to nearest even).
  template <class T>
    requires(std::is_same_v<T, bf16> || std::is_same_v<T, f16>)
  array<T> stored(std::string_view name) const {
    const entry& e = find(name);
    array<T> out(e.value.extents(), uninitialized);
    cpu::convert(e.value.span(), out.span());
    return out;
  }

  /// Writes every value (not the gradients) as F32 tensors, plus the given metadata.
  void save(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata = {}) const {
    writer(metadata).write(path);
  }
  /// The same as a safetensors byte buffer.
  std::vector<std::byte> to_bytes(const std::map<std::string, std::string>& metadata = {}) const {
    return writer(metadata).to_bytes();
  }

  /// Loads every registered parameter by name from a checkpoint (F32, F64, F16, BF16 and F8
  /// tensors are converted to f32). Strict: every registered name must be present with the same
  /// shape, and the checkpoint must hold no other tensor.
  /// @throws lookup_error naming a missing or an unexpected tensor; shape_error naming both shapes.
  void load(const io::safetensors& file, bool strict = true) {
    for (auto& e : entries_) {
      MEMBOUND_EXPECTS(file.contains(e->name), lookup_error, "parameters::load: the checkpoint has no tensor \"",
                       e->name, "\"");
      const auto& info = file.info(e->name);
      bool same = static_cast<int>(info.shape.size()) == e->value.rank();
      for (int d = 0; same && d < e->value.rank(); ++d) same = info.shape[static_cast<std::size_t>(d)] == e->value.extent(d);
      MEMBOUND_EXPECTS(same, shape_error, "parameters::load: \"", e->name, "\" is ", shape_string(info.shape),
                       " in the checkpoint but ", shape_string(e->value.extents()), " here");
      array<float> v = file.load<float>(e->name);
      std::copy(v.data(), v.data() + v.size(), e->value.data());
    }
    if (strict)
      for (const auto& t : file.tensors())
        MEMBOUND_EXPECTS(contains(t.name), lookup_error, "parameters::load: unexpected tensor \"", t.name,
                         "\" in the checkpoint (load with strict = false to ignore it)");
  }
  void load(const std::filesystem::path& path, bool strict = true) { load(io::safetensors::open(path), strict); }

private:
  template <class R>
  static std::string shape_string(const R& shape) {
    std::string s = "(";
    bool first = true;
    for (auto e : shape) {
      if (!first) s += ',';
      s += std::to_string(e);
      first = false;
    }
    return s + ")";
  }
  const entry& find(std::string_view name) const {
    const auto it = by_name_.find(std::string(name));
    MEMBOUND_EXPECTS(it != by_name_.end(), lookup_error, "parameters: no parameter named \"", name, "\"");
    return *entries_[it->second];
  }
  entry& find(std::string_view name) { return const_cast<entry&>(std::as_const(*this).find(name)); }
  io::safetensors_writer writer(const std::map<std::string, std::string>& metadata) const {
    io::safetensors_writer w;
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);
    for (const auto& e : entries_) w.add(e->name, e->value.cview());
    return w;
  }

  std::vector<std::unique_ptr<entry>> entries_;
  std::map<std::string, std::size_t> by_name_;
};

} // namespace nn
} // namespace v0_1
} // namespace membound
