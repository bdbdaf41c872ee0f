// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `io::sharded_safetensors`: a checkpoint split over several safetensors files and
/// described by a Hugging Face `model.safetensors.index.json`
/// (`{"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}`).
/// Opening parses the index and every shard header (O(index + total header size)); no tensor data
/// is read. Lookups are O(log n).

#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/config.hpp"
#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/detail/mapped_file.hpp"
#include "membound/io/json.hpp"
#include "membound/io/safetensors.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

/// Largest index file the reader accepts, in bytes (the same bound as a safetensors header).
inline constexpr std::uint64_t safetensors_max_index = safetensors_max_header;

/// A sharded safetensors checkpoint. Move-only; all member functions are const and thread-safe.
///
/// Shards are opened eagerly: `open` maps (or reads, see `load_mode`) every shard named in the
/// weight_map and parses its header, so every inconsistency is reported at once and later
/// lookups need no lock. Validation:
/// - the index is a JSON object without duplicate keys, at most 100 MB; `weight_map` is required
///   and is an object of string -> string; `metadata`, when present, is an object (its
///   non-string values, e.g. `total_size`, are kept as their compact JSON text); other top-level
///   keys are ignored;
/// - a shard name is a relative path inside the index's folder (no absolute path, no "..");
///   each shard file exists and is a valid safetensors file;
/// - every tensor of the weight_map is present in the shard it is mapped to. Tensors present in
///   a shard but absent from the weight_map are ignored (not reachable by name).
class sharded_safetensors {
public:
  /// Opens an index file and every shard it names (shard paths are relative to its folder).
  /// @throws io_error when the index or a shard cannot be opened (path and OS reason);
  ///   format_error (naming the file, key or tensor) for a malformed index, a malformed shard, or
  ///   a tensor that is not in its shard.
  /// Complexity: O(index size + sum of shard header sizes), plus O(shard size) per shard in
  ///   `load_mode::read`.
  static sharded_safetensors open(const std::filesystem::path& index_path, load_mode mode = load_mode::mmap) {
    const std::string where = index_path.string();
    const detail::mapped_file file = detail::mapped_file::open(index_path, load_mode::mmap); // no allocation before the size check
    const std::span<const std::byte> raw = file.bytes();
    MEMBOUND_EXPECTS(raw.size() <= safetensors_max_index, format_error, where, ": index of ", raw.size(),
                     " bytes exceeds the limit of ", safetensors_max_index, " bytes");
    const std::string_view text(reinterpret_cast<const char*>(raw.data()), raw.size());
    return from_index_text(text, index_path.parent_path(), mode, where);
  }

  /// As `open`, from the index's text already in memory; shard names are relative to `dir` and
  /// `where` names the index in messages. @throws as `open`
  static sharded_safetensors from_index_text(std::string_view text, const std::filesystem::path& dir,
                                             load_mode mode = load_mode::mmap, const std::string& where = "index") {
    using ::membound::detail::concat;
    const nlohmann::json root = parse_json(text, where + ": index", safetensors_max_index);
    MEMBOUND_EXPECTS(root.is_object(), format_error, where, ": index is ", detail::short_dump(root),
                     ", expected a JSON object");

    sharded_safetensors s;
    if (const auto it = root.find("metadata"); it != root.end() && !it->is_null()) {
      MEMBOUND_EXPECTS(it->is_object(), format_error, where, ": \"metadata\" is ", detail::short_dump(*it),
                       ", expected an object");
      for (const auto& [k, v] : it->items()) s.metadata_.emplace(k, v.is_string() ? v.get<std::string>() : v.dump());
    }
    const auto wm = root.find("weight_map");
    MEMBOUND_EXPECTS(wm != root.end(), format_error, where, ": missing key \"weight_map\"");
    MEMBOUND_EXPECTS(wm->is_object(), format_error, where, ": \"weight_map\" is ", detail::short_dump(*wm),
                     ", expected an object");

    std::map<std::string, std::size_t, std::less<>> shard_of_file; // shard file name -> index
    for (const auto& [name, v] : wm->items()) {
      MEMBOUND_EXPECTS(v.is_string(), format_error, where, ": weight_map value of ", detail::quoted(name), " is ",
                       detail::short_dump(v), ", expected a shard file name");
      const std::string& file_name = v.get_ref<const std::string&>();
      auto it = shard_of_file.find(file_name);
      if (it == shard_of_file.end()) {
        const std::filesystem::path rel(file_name);
        bool escapes = file_name.empty() || rel.is_absolute() || rel.has_root_name() || rel.has_root_directory();
        for (const auto& part : rel) escapes = escapes || part == "..";
        MEMBOUND_EXPECTS(!escapes, format_error, where, ": weight_map value of ", detail::quoted(name), " is ",
                         detail::quoted(file_name), ", expected a relative path inside the index folder");
        it = shard_of_file.emplace(file_name, s.paths_.size()).first;
        s.paths_.push_back(dir / rel);
      }
      s.route_.emplace(name, it->second);
    }
    s.shards_.reserve(s.paths_.size());
    for (const auto& p : s.paths_) s.shards_.push_back(safetensors::open(p, mode));
    for (const auto& [name, shard] : s.route_)
      MEMBOUND_EXPECTS(s.shards_[shard].contains(name), format_error, where, ": weight_map maps tensor ",
                       detail::quoted(name), " to ", s.paths_[shard].filename().string(), ", which has no such tensor");
    return s;
  }

  sharded_safetensors(sharded_safetensors&&) noexcept = default;
  sharded_safetensors& operator=(sharded_safetensors&&) noexcept = default;

  /// The index's "metadata" (empty when absent).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// Every tensor name of the weight_map, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> r;
    r.reserve(route_.size());
    for (const auto& kv : route_) r.push_back(kv.first);
    return r;
  }
  /// Number of tensors in the weight_map.
  std::size_t size() const noexcept { return route_.size(); }
  /// The shard files, in order of first appearance in the weight_map.
  const std::vector<std::filesystem::path>& shard_paths() const noexcept { return paths_; }
  /// The parsed shards, in the order of `shard_paths()`.
  const std::vector<safetensors>& shards() const noexcept { return shards_; }

  /// True when the weight_map has that tensor. Complexity: O(log n).
  bool contains(std::string_view name) const { return route_.find(name) != route_.end(); }
  /// The shard holding a tensor. @throws lookup_error naming it.
  const safetensors& shard_of(std::string_view name) const {
    const auto it = route_.find(name);
    if (it == route_.end())
      throw lookup_error(::membound::detail::concat("sharded_safetensors: no tensor named ", detail::quoted(name)));
    return shards_[it->second];
  }
  /// As `safetensors::info`, routed through the weight_map. @throws lookup_error
  const tensor_info& info(std::string_view name) const { return shard_of(name).info(name); }
  /// As `safetensors::bytes`. @throws lookup_error
  std::span<const std::byte> bytes(std::string_view name) const { return shard_of(name).bytes(name); }
  /// As `safetensors::get` (zero-copy when aligned, else one cached aligned copy).
  /// @throws lookup_error, dtype_error, shape_error, format_error
  template <element_type T>
  view<const T> get(std::string_view name) const { return shard_of(name).template get<T>(name); }
  /// As `safetensors::load` (always a copy; T = float converts from the float dtypes).
  /// @throws lookup_error, dtype_error, shape_error, format_error
  template <element_type T>
  array<T> load(std::string_view name) const { return shard_of(name).template load<T>(name); }

private:
  sharded_safetensors() = default;

  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::size_t, std::less<>> route_; // tensor name -> shard index
  std::vector<std::filesystem::path> paths_;
  std::vector<safetensors> shards_;
};

} // namespace io
} // namespace v0_1
} // namespace membound
