// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Reader and writer of the safetensors format (huggingface/safetensors): an 8-byte
/// little-endian header length N, N bytes of UTF-8 JSON, then the data section.
///
/// The reader applies every check of the reference reader and a few stricter ones; every
/// malformed input is a `format_error` that names the tensor and the bad value:
/// - buffer shorter than 8 bytes; header length past the end of the buffer; header > 100 MB;
/// - header not valid UTF-8, not starting with '{', not valid JSON;
/// - duplicate keys anywhere in the header (stricter: the reference keeps the last tensor);
/// - an entry that is not an object, lacks or has wrongly typed `dtype` / `shape` /
///   `data_offsets`, or has any other key (stricter: the reference ignores extra keys);
/// - an unknown dtype (the twelve of `membound::dtype` are known; U16/U32/U64/C64/F8_E8M0/F4
///   of recent reference versions are rejected as unknown);
/// - negative, fractional or > 2^63-1 dimensions; element counts over 2^63-1 (at any prefix of
///   the shape); byte counts overflowing 64 bits;
/// - reversed offsets, offsets past the data section, a byte range whose length differs from
///   product(shape) x dtype size, gaps or overlaps between tensors, data not ending at the end;
/// - `__metadata__` that is not an object (null is accepted) or has non-string values.
/// Parsing is O(header size + n log n) for n tensors; no tensor data is read or copied, and no
/// allocation is sized by a number read from the file before it is checked against the buffer.
/// The host must be little-endian (as every platform membound supports).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/config.hpp"
#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"
#include "membound/core/view.hpp"
#include "membound/io/detail/mapped_file.hpp"
#include "membound/io/json.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

static_assert(std::endian::native == std::endian::little, "membound/io assumes a little-endian host");

/// Largest header the reader accepts, in bytes (the reference reader's MAX_HEADER_SIZE).
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

/// One tensor of a safetensors file: its name, element type, shape (outermost first) and byte
/// range [begin, end) relative to the start of the data section.
struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<index_t> shape;
  std::size_t begin = 0;
  std::size_t end = 0;

  /// Number of elements (1 for rank 0). Cannot overflow for a parsed entry: every prefix product
  /// of its shape was checked to fit, and a zero extent ends the product before later extents.
  index_t size() const noexcept {
    index_t n = 1;
    for (index_t e : shape) {
      if (e == 0) return 0;
      n *= e;
    }
    return n;
  }
  /// Number of bytes, end - begin == size() * dtype_size(type).
  std::size_t nbytes() const noexcept { return end - begin; }
};

namespace detail {

/// "[2, 3]" for an error message.
inline std::string shape_string(std::span<const index_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// Offset of the first byte that is not part of valid UTF-8 (as Rust's `str::from_utf8`: no
/// overlong forms, no surrogates, nothing past U+10FFFF), or npos when `s` is valid.
inline std::size_t utf8_error_offset(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) { len = 3; lo = 0xa0; }
    else if (c >= 0xe1 && c <= 0xec) len = 3;
    else if (c == 0xed) { len = 3; hi = 0x9f; }
    else if (c >= 0xee && c <= 0xef) len = 3;
    else if (c == 0xf0) { len = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) { len = 4; hi = 0x8f; }
    else return i;
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// A non-negative JSON integer as uint64 (accepts -0 as serde does); false for anything else.
inline bool json_to_u64(const nlohmann::json& j, std::uint64_t& out) noexcept {
  if (j.is_number_unsigned()) { out = j.get<std::uint64_t>(); return true; }
  if (j.is_number_integer() && j.get<std::int64_t>() == 0) { out = 0; return true; }
  return false;
}

inline std::uint64_t read_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

/// F8_E4M3 (the "fn" variant of the format: no infinities, S.1111.111 is NaN) -> float, exact.
inline float f8_e4m3_to_float(std::uint8_t b) noexcept {
  const bool neg = b & 0x80u;
  const int e = (b >> 3) & 0x0f;
  const int m = b & 0x07;
  float v;
  if (e == 0x0f && m == 0x07) v = std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) v = std::ldexp(static_cast<float>(m), -9);
  else v = std::ldexp(static_cast<float>(8 + m), e - 10);
  return neg ? -v : v;
}
/// F8_E5M2 -> float, exact: the byte is the top half of an IEEE binary16.
inline float f8_e5m2_to_float(std::uint8_t b) noexcept {
  return f16::from_bits(static_cast<std::uint16_t>(b << 8)).to_float();
}

/// Cache of aligned copies made by `safetensors::get` for misaligned tensors.
struct aligned_copies {
  std::mutex mutex;
  std::map<std::size_t, array<std::uint8_t>> by_tensor; // tensor index -> 64-byte aligned bytes
};

} // namespace detail

/// A parsed safetensors file or buffer. Move-only.
///
/// Storage: `open` maps the file (or reads it, see `load_mode`), `from_buffer_copy` owns a
/// 64-byte aligned copy, `from_buffer` borrows the caller's bytes. Views returned by `get` and
/// spans returned by `bytes` stay valid while this object lives (moving it keeps them valid).
///
/// Thread safety: all member functions are const and may be called concurrently; `get` takes a
/// mutex only when it must make an aligned copy.
class safetensors {
public:
  /// Opens and parses a file.
  /// @param mode `load_mode::mmap` (default) maps the file read-only, falling back to reading it
  ///   when the mapping fails; `load_mode::read` reads it into an aligned buffer.
  /// @throws io_error (path and OS reason) if the file cannot be opened or read;
  ///   format_error (prefixed with the path) if it is malformed.
  /// Complexity: O(1) I/O when mapped plus O(header) parsing; O(file size) when read.
  static safetensors open(const std::filesystem::path& path, load_mode mode = load_mode::mmap) {
    safetensors s;
    s.owner_ = detail::mapped_file::open(path, mode);
    try {
      s.parse(s.owner_.bytes());
    } catch (const format_error& e) {
      throw format_error(::membound::detail::concat(path.string(), ": ", e.what()));
    }
    return s;
  }

  /// Parses a buffer without copying it.
  /// @pre the caller keeps `buf` alive and unchanged for the lifetime of the returned object
  ///   (and of every view or span obtained from it).
  /// @throws format_error if it is malformed. Complexity: O(header + n log n).
  static safetensors from_buffer(std::span<const std::byte> buf) {
    safetensors s;
    s.parse(buf);
    return s;
  }

  /// Copies a buffer into an owned 64-byte aligned one and parses it.
  /// @throws format_error if it is malformed. Complexity: O(buffer size).
  static safetensors from_buffer_copy(std::span<const std::byte> buf) {
    safetensors s;
    s.owner_ = detail::mapped_file::copy_of(buf);
    s.parse(s.owner_.bytes());
    return s;
  }

  safetensors(safetensors&&) noexcept = default;
  safetensors& operator=(safetensors&&) noexcept = default;
  safetensors(const safetensors&) = delete;
  safetensors& operator=(const safetensors&) = delete;
  ~safetensors() = default;

  /// Every tensor, in data-section order (by `begin`).
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  /// The string pairs of `__metadata__` (empty when absent or null).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// True when a tensor of that name exists. Complexity: O(log n).
  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
  /// The tensor of that name. @throws lookup_error naming it. Complexity: O(log n).
  const tensor_info& info(std::string_view name) const {
    const auto it = index_.find(name);
    if (it == index_.end())
      throw lookup_error(::membound::detail::concat("safetensors: no tensor named ", detail::quoted(name)));
    return tensors_[it->second];
  }
  /// The raw little-endian bytes of a tensor, any dtype (F8 tensors are read this way or through
  /// `load<float>`). @throws lookup_error. Complexity: O(log n), no copy.
  std::span<const std::byte> bytes(std::string_view name) const {
    const tensor_info& t = info(name);
    return data_.subspan(t.begin, t.nbytes());
  }
  /// The whole data section (the bytes after the header).
  std::span<const std::byte> data_section() const noexcept { return data_; }
  /// Length of the JSON header in bytes (the data section starts at 8 + header_size()).
  std::size_t header_size() const noexcept { return header_size_; }
  /// True when the bytes are a memory mapping of the file.
  bool mapped() const noexcept { return owner_.mapped(); }

  /// A read-only view of a tensor whose dtype is exactly T's.
  /// Zero-copy when the data is aligned for T; otherwise the bytes are copied once into an
  /// internal 64-byte aligned buffer, kept until this object is destroyed, and later calls return
  /// the same view (a misaligned pointer is never formed).
  /// @tparam T double, float, f16, bf16, int64/32/16/8_t, uint8_t or bool.
  /// @throws lookup_error for an unknown name; dtype_error when the tensor's dtype is not T's;
  ///   shape_error when its rank exceeds `max_rank`; format_error for a BOOL byte other than 0 or 1.
  /// Complexity: O(log n) when aligned (O(size) for bool, which is validated), O(size) the first
  ///   time for a misaligned tensor.
  template <element_type T>
  view<const T> get(std::string_view name) const {
    const tensor_info& t = info(name);
    check_exact<T>(t, "get");
    check_view_rank(t);
    std::span<const std::byte> src = data_.subspan(t.begin, t.nbytes());
    if constexpr (std::is_same_v<T, bool>) check_bool(t, src);
    const std::byte* p = src.data();
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
      const std::size_t idx = index_.find(name)->second;
      std::lock_guard<std::mutex> lock(cache_->mutex);
      auto it = cache_->by_tensor.find(idx);
      if (it == cache_->by_tensor.end()) {
        array<std::uint8_t> copy({static_cast<index_t>(src.size())}, uninitialized);
        if (!src.empty()) std::memcpy(copy.data(), src.data(), src.size());
        it = cache_->by_tensor.emplace(idx, std::move(copy)).first;
      }
      p = reinterpret_cast<const std::byte*>(it->second.data());
    }
    return view<const T>(reinterpret_cast<const T*>(p), std::span<const index_t>(t.shape));
  }

  /// A contiguous copy of a tensor as an `array<T>`.
  /// Conversions: none for T != float (the dtype must be T's); for T = float, from F32, F64
  /// (rounded to nearest), F16, BF16, F8_E4M3 and F8_E5M2 (all exact).
  /// @throws lookup_error, dtype_error (naming the tensor, its dtype and the request),
  ///   shape_error (rank > max_rank), format_error (BOOL byte other than 0 or 1).
  /// Complexity: O(size).
  template <element_type T>
  array<T> load(std::string_view name) const {
    const tensor_info& t = info(name);
    check_view_rank(t);
    std::span<const std::byte> src = data_.subspan(t.begin, t.nbytes());
    array<T> out(std::span<const index_t>(t.shape), uninitialized);
    if constexpr (std::is_same_v<T, float>) {
      if (t.type != dtype::f32) {
        convert_to_float(t, src, out.data());
        return out;
      }
    }
    check_exact<T>(t, "load");
    if constexpr (std::is_same_v<T, bool>) check_bool(t, src);
    if (!src.empty()) std::memcpy(static_cast<void*>(out.data()), src.data(), src.size());
    return out;
  }

private:
  safetensors() : cache_(std::make_unique<detail::aligned_copies>()) {}

  template <class T>
  static void check_exact(const tensor_info& t, const char* fn) {
    if (t.type == dtype_of_v<T>) return;
    throw dtype_error(::membound::detail::concat(
        "safetensors: ", fn, "<", dtype_name(dtype_of_v<T>), ">(", detail::quoted(t.name), "): the tensor is ",
        dtype_name(t.type), std::is_same_v<T, float> ? "; load<float> converts only from F32, F64, F16, BF16, F8_E4M3, F8_E5M2"
                                                     : "; request its own type or read bytes()"));
  }
  static void check_view_rank(const tensor_info& t) {
    MEMBOUND_EXPECTS(t.shape.size() <= static_cast<std::size_t>(max_rank), shape_error, "safetensors: tensor ",
                     detail::quoted(t.name), " has rank ", t.shape.size(), ", more than max_rank ", max_rank,
                     " (read it with bytes())");
  }
  static void check_bool(const tensor_info& t, std::span<const std::byte> src) {
    for (std::size_t i = 0; i < src.size(); ++i)
      if (static_cast<unsigned>(src[i]) > 1u)
        throw format_error(::membound::detail::concat("safetensors: tensor ", detail::quoted(t.name), ": BOOL element ",
                                                      i, " is ", static_cast<unsigned>(src[i]), ", expected 0 or 1"));
  }
  static void convert_to_float(const tensor_info& t, std::span<const std::byte> src, float* dst) {
    const std::size_t n = static_cast<std::size_t>(t.size());
    const std::byte* s = src.data();
    switch (t.type) {
    case dtype::f64:
      for (std::size_t i = 0; i < n; ++i) { double d; std::memcpy(&d, s + 8 * i, 8); dst[i] = static_cast<float>(d); }
      return;
    case dtype::f16:
      for (std::size_t i = 0; i < n; ++i) { std::uint16_t b; std::memcpy(&b, s + 2 * i, 2); dst[i] = f16::from_bits(b).to_float(); }
      return;
    case dtype::bf16:
      for (std::size_t i = 0; i < n; ++i) { std::uint16_t b; std::memcpy(&b, s + 2 * i, 2); dst[i] = bf16::from_bits(b).to_float(); }
      return;
    case dtype::f8_e4m3:
      for (std::size_t i = 0; i < n; ++i) dst[i] = detail::f8_e4m3_to_float(static_cast<std::uint8_t>(s[i]));
      return;
    case dtype::f8_e5m2:
      for (std::size_t i = 0; i < n; ++i) dst[i] = detail::f8_e5m2_to_float(static_cast<std::uint8_t>(s[i]));
      return;
    default:
      check_exact<float>(t, "load"); // throws dtype_error
    }
  }

  [[noreturn]] static void fail(const std::string& msg) { throw format_error("safetensors: " + msg); }

  /// Validates one tensor entry of the header; fills `t` except `name`.
  static void parse_entry(const std::string& name, const nlohmann::json& e, std::size_t data_size, tensor_info& t) {
    using ::membound::detail::concat;
    const std::string q = detail::quoted(name);
    if (!e.is_object()) fail(concat("tensor ", q, ": entry is ", detail::short_dump(e), ", expected an object"));
    for (const auto& [k, v] : e.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        fail(concat("tensor ", q, ": unknown key ", detail::quoted(k), " (expected only dtype, shape, data_offsets)"));
    }
    for (const char* k : {"dtype", "shape", "data_offsets"})
      if (!e.contains(k)) fail(concat("tensor ", q, ": missing key \"", k, "\""));

    const auto& jd = e["dtype"];
    if (!jd.is_string()) fail(concat("tensor ", q, ": dtype is ", detail::short_dump(jd), ", expected a string"));
    try {
      t.type = parse_dtype(jd.get_ref<const std::string&>());
    } catch (const format_error& err) {
      fail(concat("tensor ", q, ": ", err.what()));
    }

    const auto& js = e["shape"];
    if (!js.is_array()) fail(concat("tensor ", q, ": shape is ", detail::short_dump(js), ", expected an array"));
    // Every prefix product must fit in index_t (as the reference, which stops at the first
    // overflow even when a later extent is 0). After a zero extent the count stays 0, so later
    // extents are only checked to be <= 2^63-1; views of such a shape get overflow-free strides
    // (see detail::contiguous_strides).
    constexpr auto max_count = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    std::uint64_t count = 1;
    t.shape.clear();
    t.shape.reserve(js.size()); // bounded by the header size
    for (std::size_t i = 0; i < js.size(); ++i) {
      std::uint64_t d = 0;
      if (!detail::json_to_u64(js[i], d))
        fail(concat("tensor ", q, ": shape[", i, "] is ", detail::short_dump(js[i]), ", expected a non-negative integer"));
      if (d > max_count) fail(concat("tensor ", q, ": shape[", i, "] is ", d, ", larger than 2^63-1"));
      t.shape.push_back(static_cast<index_t>(d));
      if (d != 0 && count > max_count / d)
        fail(concat("tensor ", q, ": shape ", detail::short_dump(js), " has more than 2^63-1 elements"));
      count *= d;
    }
    const std::uint64_t esize = dtype_size(t.type);
    if (count > std::numeric_limits<std::uint64_t>::max() / esize)
      fail(concat("tensor ", q, ": shape ", detail::shape_string(t.shape), " of ", dtype_name(t.type),
                  " needs more than 2^64-1 bytes"));
    const std::uint64_t need = count * esize;

    const auto& jo = e["data_offsets"];
    if (!jo.is_array() || jo.size() != 2)
      fail(concat("tensor ", q, ": data_offsets is ", detail::short_dump(jo), ", expected [begin, end]"));
    std::uint64_t b = 0, en = 0;
    if (!detail::json_to_u64(jo[0], b) || !detail::json_to_u64(jo[1], en))
      fail(concat("tensor ", q, ": data_offsets ", detail::short_dump(jo), " are not two non-negative integers"));
    if (b > en) fail(concat("tensor ", q, ": data_offsets [", b, ", ", en, "] are reversed (begin > end)"));
    if (en > data_size)
      fail(concat("tensor ", q, ": data_offsets [", b, ", ", en, "] run past the data section of ", data_size, " bytes"));
    if (en - b != need)
      fail(concat("tensor ", q, ": shape ", detail::shape_string(t.shape), " of ", dtype_name(t.type), " needs ", need,
                  " bytes but data_offsets [", b, ", ", en, "] hold ", en - b));
    t.begin = static_cast<std::size_t>(b);
    t.end = static_cast<std::size_t>(en);
  }

  void parse(std::span<const std::byte> buf) {
    using ::membound::detail::concat;
    if (buf.size() < 8) fail(concat("buffer of ", buf.size(), " bytes is shorter than the 8-byte header length"));
    const std::uint64_t n = detail::read_u64_le(buf.data());
    if (n > safetensors_max_header)
      fail(concat("header length ", n, " exceeds the limit of ", safetensors_max_header, " bytes"));
    if (n > buf.size() - 8)
      fail(concat("header length ", n, " runs past the end of the buffer (", buf.size() - 8, " bytes follow the length)"));
    const std::string_view text(reinterpret_cast<const char*>(buf.data() + 8), static_cast<std::size_t>(n));
    if (const std::size_t bad = detail::utf8_error_offset(text); bad != std::string_view::npos)
      fail(concat("header is not valid UTF-8 (byte ", bad, " of the header is 0x", hex_byte(text[bad]), ")"));
    if (text.empty() || text.front() != '{')
      fail(text.empty() ? std::string("header is empty, expected a JSON object")
                        : concat("header does not start with '{' (first byte is 0x", hex_byte(text.front()), ")"));
    const nlohmann::json root = parse_json(text, "safetensors: header", safetensors_max_header);
    if (!root.is_object()) fail("header is not a JSON object"); // unreachable after '{', kept as a guard

    const std::size_t header_end = 8 + static_cast<std::size_t>(n);
    const std::span<const std::byte> data = buf.subspan(header_end);
    std::vector<tensor_info> ts;
    ts.reserve(root.size()); // bounded by the header size
    std::map<std::string, std::string> meta;
    for (const auto& [key, value] : root.items()) {
      if (key == "__metadata__") {
        if (value.is_null()) continue;
        if (!value.is_object()) fail(concat("__metadata__ is ", detail::short_dump(value), ", expected an object"));
        for (const auto& [mk, mv] : value.items()) {
          if (!mv.is_string())
            fail(concat("__metadata__ value of ", detail::quoted(mk), " is ", detail::short_dump(mv), ", expected a string"));
          meta.emplace(mk, mv.get<std::string>());
        }
        continue;
      }
      tensor_info t;
      parse_entry(key, value, data.size(), t);
      t.name = key;
      ts.push_back(std::move(t));
    }
    // The byte ranges, in order, must tile the data section exactly.
    std::sort(ts.begin(), ts.end(), [](const tensor_info& a, const tensor_info& b) {
      return a.begin != b.begin ? a.begin < b.begin : (a.end != b.end ? a.end < b.end : a.name < b.name);
    });
    std::size_t cursor = 0;
    const tensor_info* prev = nullptr;
    for (const tensor_info& t : ts) {
      if (t.begin > cursor)
        fail(concat("gap of ", t.begin - cursor, " bytes before tensor ", detail::quoted(t.name), " (data_offsets [",
                    t.begin, ", ", t.end, "], the previous tensor ends at ", cursor, ")"));
      if (t.begin < cursor)
        fail(concat("tensor ", detail::quoted(t.name), " (data_offsets [", t.begin, ", ", t.end, "]) overlaps tensor ",
                    detail::quoted(prev ? prev->name : std::string()), " (which ends at ", cursor, ")"));
      cursor = t.end;
      prev = &t;
    }
    if (cursor != data.size())
      fail(concat("the tensors cover ", cursor, " bytes of the ", data.size(),
                  "-byte data section; the data must end at the end of the buffer (incomplete metadata)"));

    std::map<std::string, std::size_t, std::less<>> index;
    for (std::size_t i = 0; i < ts.size(); ++i) index.emplace(ts[i].name, i);
    tensors_ = std::move(ts);
    index_ = std::move(index);
    metadata_ = std::move(meta);
    data_ = data;
    header_size_ = static_cast<std::size_t>(n);
  }

  static std::string hex_byte(char c) {
    constexpr char digits[] = "0123456789abcdef";
    const auto u = static_cast<unsigned char>(c);
    return std::string{digits[u >> 4], digits[u & 15]};
  }

  detail::mapped_file owner_;
  std::span<const std::byte> data_;
  std::size_t header_size_ = 0;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
  std::unique_ptr<detail::aligned_copies> cache_;
};

/// Builds a safetensors file in memory and writes it.
///
/// `add` and `add_raw` copy the data at once, so the caller's tensors may die before `write`;
/// the writer holds one copy of every tensor until it is destroyed. The output follows the
/// reference writer: `__metadata__` first (only when set), tensors sorted by element size
/// (largest first) then by name, laid out contiguously in that order, the header padded with
/// spaces to a multiple of 8 bytes. Every tensor is therefore aligned for its type relative to
/// the file start, so a mapped file yields zero-copy views.
class safetensors_writer {
public:
  /// Adds a tensor, copying its elements in row-major order (any strides).
  /// @tparam X a `membound::tensor` whose element type is an `element_type`.
  /// @throws config_error for an empty name, a name starting with "__" (reserved, e.g.
  ///   `__metadata__`), a name that is not valid UTF-8, or a name already added.
  /// Complexity: O(size).
  template <tensor X>
    requires element_type<std::remove_const_t<typename X::value_type>>
  void add(std::string name, const X& x) {
    using T = std::remove_const_t<typename X::value_type>;
    index_t ext[max_rank], str[max_rank];
    const int r = x.rank();
    ::membound::detail::check_rank(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) { ext[i] = x.extent(i); str[i] = x.stride(i); }
    const view<const T> v(static_cast<const T*>(x.data()), std::span<const index_t>(ext, static_cast<std::size_t>(r)),
                          std::span<const index_t>(str, static_cast<std::size_t>(r)));
    const array<T> a = array<T>::from(v);
    add_raw(std::move(name), dtype_of_v<T>, std::span<const index_t>(ext, static_cast<std::size_t>(r)),
            std::as_bytes(a.span()));
  }

  /// Adds a tensor of any dtype from its raw little-endian bytes (copied).
  /// @throws config_error (names, as `add`); shape_error for a negative extent or when
  ///   `bytes.size()` differs from product(shape) x dtype_size(type).
  /// Complexity: O(bytes.size()).
  void add_raw(std::string name, dtype type, std::span<const index_t> shape, std::span<const std::byte> bytes) {
    using ::membound::detail::concat;
    check_name(name, "tensor name");
    MEMBOUND_EXPECTS(names_.find(name) == names_.end(), config_error, "safetensors_writer: tensor ",
                     detail::quoted(name), " was already added");
    MEMBOUND_EXPECTS(static_cast<std::size_t>(type) <= static_cast<std::size_t>(dtype::f8_e5m2), config_error,
                     "safetensors_writer: tensor ", detail::quoted(name), ": invalid dtype value ",
                     static_cast<int>(type));
    const index_t count = ::membound::detail::checked_size(shape);
    const std::size_t esize = dtype_size(type);
    MEMBOUND_EXPECTS(static_cast<std::size_t>(count) <= std::numeric_limits<std::size_t>::max() / esize, shape_error,
                     "safetensors_writer: tensor ", detail::quoted(name), " is too large");
    MEMBOUND_EXPECTS(static_cast<std::size_t>(count) * esize == bytes.size(), shape_error, "safetensors_writer: tensor ",
                     detail::quoted(name), ": shape ", detail::shape_string(shape), " of ", dtype_name(type), " needs ",
                     static_cast<std::size_t>(count) * esize, " bytes, got ", bytes.size());
    entry e;
    e.name = name;
    e.type = type;
    e.shape.assign(shape.begin(), shape.end());
    e.data.assign(bytes.begin(), bytes.end());
    entries_.push_back(std::move(e));
    names_.insert(std::move(name));
  }

  /// Sets (or replaces) a `__metadata__` string pair.
  /// @throws config_error when the key or value is not valid UTF-8 or the key is empty.
  void set_metadata(std::string key, std::string value) {
    MEMBOUND_EXPECTS(!key.empty(), config_error, "safetensors_writer: empty metadata key");
    MEMBOUND_EXPECTS(detail::utf8_error_offset(key) == std::string_view::npos, config_error,
                     "safetensors_writer: metadata key ", detail::quoted(key), " is not valid UTF-8");
    MEMBOUND_EXPECTS(detail::utf8_error_offset(value) == std::string_view::npos, config_error,
                     "safetensors_writer: metadata value of ", detail::quoted(key), " is not valid UTF-8");
    metadata_[std::move(key)] = std::move(value);
  }

  /// Number of tensors added so far.
  std::size_t size() const noexcept { return entries_.size(); }

  /// The complete file (header length, padded header, data). Complexity: O(total size).
  std::vector<std::byte> to_bytes() const {
    const std::vector<const entry*> order = layout();
    const std::string header = header_json(order);
    std::vector<std::byte> out(8 + header.size());
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xffu);
    std::memcpy(out.data() + 8, header.data(), header.size());
    for (const entry* e : order) out.insert(out.end(), e->data.begin(), e->data.end());
    return out;
  }

  /// Writes the file (created or truncated).
  /// @throws io_error naming the path and the OS reason. Complexity: O(total size).
  void write(const std::filesystem::path& path) const {
    const std::vector<const entry*> order = layout();
    const std::string header = header_json(order);
    unsigned char len[8];
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xffu);
    std::FILE* fp = std::fopen(path.string().c_str(), "wb");
    if (!fp) throw io_error(detail::os_message(path, "cannot create", errno));
    bool ok = std::fwrite(len, 1, 8, fp) == 8 && std::fwrite(header.data(), 1, header.size(), fp) == header.size();
    for (const entry* e : order)
      if (ok && !e->data.empty()) ok = std::fwrite(e->data.data(), 1, e->data.size(), fp) == e->data.size();
    const int err = ok ? 0 : errno;
    const bool closed = std::fclose(fp) == 0;
    if (!ok || !closed) throw io_error(detail::os_message(path, "write failed", err ? err : errno));
  }

private:
  struct entry {
    std::string name;
    dtype type = dtype::f32;
    std::vector<index_t> shape;
    std::vector<std::byte> data;
  };

  static void check_name(const std::string& name, const char* what) {
    MEMBOUND_EXPECTS(!name.empty(), config_error, "safetensors_writer: empty ", what);
    MEMBOUND_EXPECTS(name.rfind("__", 0) != 0, config_error, "safetensors_writer: ", what, " ", detail::quoted(name),
                     " starts with \"__\" (reserved for keys such as __metadata__)");
    MEMBOUND_EXPECTS(detail::utf8_error_offset(name) == std::string_view::npos, config_error, "safetensors_writer: ",
                     what, " ", detail::quoted(name), " is not valid UTF-8");
  }

  std::vector<const entry*> layout() const {
    std::vector<const entry*> order;
    order.reserve(entries_.size());
    for (const entry& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const entry* a, const entry* b) {
      const std::size_t sa = dtype_size(a->type), sb = dtype_size(b->type);
      return sa != sb ? sa > sb : a->name < b->name;
    });
    return order;
  }

  std::string header_json(const std::vector<const entry*>& order) const {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata_) m[k] = v;
      j["__metadata__"] = std::move(m);
    }
    std::size_t offset = 0;
    for (const entry* e : order) {
      nlohmann::ordered_json t = nlohmann::ordered_json::object();
      t["dtype"] = std::string(dtype_name(e->type));
      t["shape"] = e->shape;
      t["data_offsets"] = {offset, offset + e->data.size()};
      offset += e->data.size();
      j[e->name] = std::move(t);
    }
    std::string s = j.dump();
    s.append((8 - s.size() % 8) % 8, ' ');
    return s;
  }

  std::vector<entry> entries_;
  std::set<std::string, std::less<>> names_;
  std::map<std::string, std::string> metadata_;
};

} // namespace io
} // namespace v0_1
} // namespace membound
