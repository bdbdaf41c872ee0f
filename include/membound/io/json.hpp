// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The one strict JSON entry of membound: every JSON text the library reads (safetensors
/// headers, sharded indices, and Hugging Face config / tokenizer files) goes through
/// `io::parse_json`, which bounds what a hostile file can make it do:
/// - a size cap (the caller's, checked before any parsing; `load_json` checks it before reading);
/// - a nesting cap: a value nested `json_depth_limit` (128) arrays/objects deep is rejected, 127 is
///   accepted (serde_json's default recursion limit, as used by the reference safetensors reader);
/// - no raw NUL byte (nlohmann's lexer would take it for the end of input), no duplicate key in any
///   object (nlohmann silently keeps the last), no comments, nothing after the value;
/// - error messages quote values through `detail::short_dump`, which writes at most 64 characters
///   of any value, however deep or long, without recursing past what it writes.
/// Nesting is capped inside nlohmann's callback parser (its DOM builder keeps an explicit stack),
/// and nlohmann (>= 3.10) destroys values iteratively, so no step recurses once per level.
/// Cost: O(text size) time; memory O(text size) for the parsed value.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/config.hpp"
#include "membound/core/error.hpp"
#include "membound/io/detail/mapped_file.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

/// Nesting depth at which `parse_json` rejects a text: 127 nested arrays/objects parse, 128 do not.
inline constexpr int json_depth_limit = 128;

namespace detail {

/// Quotes `s` for an error message, truncated to 96 bytes.
inline std::string quoted(std::string_view s) {
  constexpr std::size_t cap = 96;
  std::string r = "\"";
  r.append(s.substr(0, cap));
  if (s.size() > cap) r += "...";
  r += '"';
  return r;
}

/// Appends compact JSON for `j` to `out` until `out` holds more than `cap` characters. Each level
/// of recursion writes at least one character first, so the recursion depth is at most `cap + 1`
/// whatever the nesting of `j`; a long string or a long array costs O(cap), not O(size).
template <class Json>
void bounded_dump(const Json& j, std::string& out, std::size_t cap) {
  if (out.size() > cap) return;
  if (j.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& e : j) {
      if (out.size() > cap) return;
      if (!first) out += ',';
      first = false;
      bounded_dump(e, out, cap);
    }
    if (out.size() <= cap) out += ']';
  } else if (j.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (out.size() > cap) return;
      if (!first) out += ',';
      first = false;
      bounded_dump(Json(it.key().substr(0, cap + 1)), out, cap);
      if (out.size() > cap) return;
      out += ':';
      bounded_dump(it.value(), out, cap);
    }
    if (out.size() <= cap) out += '}';
  } else if (j.is_string()) {
    // Serialise a prefix only: escaping can at most sextuple a character, so cap + 1 characters of
    // the string are enough to fill the message.
    const auto& s = j.template get_ref<const typename Json::string_t&>();
    const Json head(s.substr(0, cap + 1));
    std::string d = head.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (s.size() > cap + 1) d.pop_back(); // the prefix is not the whole string: no closing quote
    out += d;
  } else {
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

/// A JSON value for an error message: at most 64 characters of its compact form, then "...".
template <class Json>
std::string short_dump(const Json& j) {
  constexpr std::size_t cap = 64;
  std::string s;
  bounded_dump(j, s, cap);
  if (s.size() > cap) {
    s.resize(cap);
    s += "...";
  }
  return s;
}

} // namespace detail

/// Parses `text` as one strict JSON value (see the file comment for every rule).
/// @param what      names the text in messages ("model.safetensors: header", a path).
/// @param max_bytes the size cap: a longer text is rejected before parsing.
/// @throws format_error for a text over `max_bytes`, nested `json_depth_limit` deep, with a NUL
///   byte, a duplicate key (named, with its parent key), or invalid JSON (nlohmann's message,
///   which gives the byte offset).
/// Complexity: O(text size).
inline nlohmann::json parse_json(std::string_view text, std::string_view what, std::uint64_t max_bytes) {
  using ::membound::detail::concat;
  if (text.size() > max_bytes)
    throw format_error(concat(what, ": ", text.size(), " bytes of JSON exceed the limit of ", max_bytes, " bytes"));
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw format_error(concat(what, " is not valid JSON: NUL byte at offset ", nul));
  // One set of seen keys per open object; the parent key names the object in messages.
  struct frame {
    std::set<std::string, std::less<>> keys;
    std::string parent;
  };
  std::vector<frame> objects;
  std::string last_key;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    using ev_t = nlohmann::json::parse_event_t;
    // `depth` counts the containers enclosing this one, so depth + 1 is its nesting level.
    if ((ev == ev_t::object_start || ev == ev_t::array_start) && depth + 1 >= json_depth_limit)
      throw format_error(concat(what, " is not valid JSON: nesting reaches ", json_depth_limit,
                                " levels (the limit; at most ", json_depth_limit - 1, " are accepted)"));
    if (ev == ev_t::object_start) {
      objects.push_back(frame{{}, objects.empty() ? std::string() : last_key});
    } else if (ev == ev_t::object_end) {
      if (!objects.empty()) objects.pop_back();
    } else if (ev == ev_t::key && !objects.empty()) {
      std::string key = parsed.get<std::string>();
      if (!objects.back().keys.insert(key).second) {
        if (objects.size() == 1) throw format_error(concat(what, ": duplicate key ", detail::quoted(key)));
        throw format_error(concat(what, ": duplicate key ", detail::quoted(key), " in ",
                                  detail::quoted(objects.back().parent)));
      }
      last_key = std::move(key);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(concat(what, " is not valid JSON: ", e.what()));
  }
}

/// Reads and parses a JSON file (config.json, tokenizer.json, an index) through `parse_json`.
/// The file's size is checked against `max_bytes` before anything is read or allocated.
/// @throws io_error when the file cannot be opened (path and OS reason); format_error as
///   `parse_json`, naming the path.
inline nlohmann::json load_json(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string where = path.string();
  const detail::mapped_file file = detail::mapped_file::open(path, load_mode::mmap);
  const auto raw = file.bytes();
  if (raw.size() > max_bytes)
    throw format_error(::membound::detail::concat(where, ": ", raw.size(), " bytes exceed the limit of ", max_bytes,
                                                  " bytes"));
  return parse_json(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()), where, max_bytes);
}

} // namespace io
} // namespace v0_1
} // namespace membound
