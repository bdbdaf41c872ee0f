// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::tokenizer`: a Hugging Face `tokenizer.json` byte-level BPE tokenizer (GPT-2, Llama 3,
/// Qwen2/2.5/3, SmolLM2 layouts), encode and decode, id-exact against the Rust `tokenizers` library
/// (0.22) for the files it accepts.
///
/// Encode follows the reference pipeline: (1) added tokens with `normalized: false` are cut out of
/// the raw text, leftmost-longest, honouring `single_word`, `lstrip` and `rstrip` exactly as the
/// library does; (2) the normalizer runs on the remaining pieces; (3) added tokens with `normalized:
/// true` are cut out of those; (4) the pre-tokenizer chain splits each piece (PCRE2 with UTF + UCP,
/// JIT-compiled, iterated with the library's empty-match rule); (5) each pre-token is BPE-merged on
/// its UTF-8 bytes (lowest merge rank first, ties leftmost, with the library's heap and its stale-entry
/// rule; `ignore_merges` first looks the whole pre-token up); (6) the post-processor templates add
/// their special tokens when `add_special_tokens` is true.
///
/// Supported: model `BPE` (type may be absent) with merges as `"a b"` strings or `["a","b"]` pairs,
/// `ignore_merges`, `unk_token` + `fuse_unk`, `dropout` null or 0; pre-tokenizers `ByteLevel`
/// (`add_prefix_space`, `use_regex`), `Split` (Regex or String pattern, all five behaviours, `invert`),
/// `Digits`, `Sequence` of those, ending in exactly one `ByteLevel`; normalizer null, or `NFC` when
/// `tokenizer_options::assume_nfc` is set (no Unicode composition tables here: the text is encoded
/// unchanged, which is exact for text that is already NFC); post-processors `ByteLevel`,
/// `TemplateProcessing` (single template), `Sequence`; decoder `ByteLevel` (alone or as a one-element
/// `Sequence`). Everything else (WordPiece / WordLevel / Unigram models, `Metaspace`, `byte_fallback`,
/// subword prefixes, other normalizers or decoders, `truncation` / `padding`, a version other than
/// "1.0") is a `config_error` naming the key and value.
///
/// Checked at load (each a `config_error` unless noted): vocab ids in [0, 2^31 - 1) and distinct;
/// every merge's parts and their concatenation in the vocab; added-token ids equal to those the
/// library derives (the vocab id of the content, else the next id after the vocab in list order)
/// and not taken by another vocab entry; template tokens known; regexes that PCRE2 compiles (the
/// message names the pattern, PCRE2's message and offset). JSON goes through `io::parse_json`
/// (64 MiB cap, depth cap, no duplicate keys; its errors are `format_error`s).
///
/// Deviations from the library: `encode` rejects invalid UTF-8 with a `format_error` naming the byte
/// offset (the library takes `&str`, so it never sees any); `decode` returns the decoder's raw bytes,
/// where the library's `decode` replaces invalid UTF-8 with U+FFFD (`utf8_lossy` does that
/// replacement exactly); a few files the library loads with a warning or a quirk are rejected
/// (no pre-tokenizer or decoder, added-token ids that disagree with the derived ones, one content
/// listed twice with different flags, an empty content). Regexes run on PCRE2 (10.42: Unicode 14),
/// which agrees with Oniguruma on the Hugging Face patterns (`\p{L}`, `\p{N}`, `\s`, `(?i:)`,
/// `(?!\S)`; checked on the fixtures) but not on every exotic construct (`\h` is a hex digit in
/// Oniguruma, horizontal space in PCRE2; `$` and `.` differ around newlines) nor on code points
/// assigned after Unicode 14; a match that exceeds PCRE2's match limit is a `budget_error`.
/// Link with `-lpcre2-8` (pkg-config `libpcre2-8`). Encode and decode are const and thread-safe.
/// Cost: load O(file size + merges); encode O(n log n) in the pre-token length for BPE plus
/// O(n * L) for the added-token scan (L the longest added token); decode O(output bytes).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <ios>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "membound/core/error.hpp"
#include "membound/io/hf_config.hpp"
#include "membound/io/json.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// Largest tokenizer.json accepted (real ones are up to ~20 MB).
inline constexpr std::uint64_t tokenizer_max_bytes = 64u << 20;

/// Choices the file cannot make for the caller.
struct tokenizer_options {
  /// Accept an `NFC` normalizer (Qwen2/2.5/3) and encode text unchanged. Exact when the text is in
  /// NFC (most text is; normalize decomposed input first, e.g. with ICU); without this flag such a
  /// file is a `config_error`.
  bool assume_nfc = false;
};

namespace detail {

/// Length of the well-formed UTF-8 sequence at `s[i]` (1-4), or 0 if it is not one; `*bad` then
/// receives the length of the maximal ill-formed prefix (>= 1), the unit that Unicode's "U+FFFD
/// substitution of maximal subparts" (and Rust's `from_utf8_lossy`) replaces.
inline std::size_t utf8_seq(std::string_view s, std::size_t i, std::size_t* bad = nullptr) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF)
    need = 1;
  else if (b >= 0xE0 && b <= 0xEF)
    need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
  else if (b >= 0xF0 && b <= 0xF4)
    need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
  std::size_t k = 1;
  if (need > 0) {
    for (; k <= need && i + k < s.size(); ++k) {
      const unsigned char c = at(i + k);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
    }
    if (k == need + 1) return k;
  }
  if (bad) *bad = k;
  return 0;
}

/// GPT-2's byte -> code point table (`bytes_to_unicode`): printable Latin-1 bytes map to themselves,
/// the other 68 bytes in increasing order to U+0100..U+0143.
inline const std::array<char32_t, 256>& byte_chars() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[static_cast<std::size_t>(b)] = keep ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12)); // the table and U+FFFD need at most 3 bytes
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

/// The bytes that a token spelled in the byte table stands for, or nullopt when some char of it is
/// outside the table (BPE never builds such a token from bytes).
inline std::optional<std::string> table_bytes(std::string_view token) {
  static const std::array<int, 0x144> inverse = [] {
    std::array<int, 0x144> inv{};
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[byte_chars()[static_cast<std::size_t>(b)]] = b;
    return inv;
  }();
  std::string out;
  for (std::size_t i = 0; i < token.size();) {
    const std::size_t n = utf8_seq(token, i);
    if (n == 0 || n > 2) return std::nullopt; // the table's chars are below U+0800
    const auto c0 = static_cast<unsigned char>(token[i]);
    const char32_t c = n == 1 ? c0 : ((c0 & 0x1Fu) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu);
    if (c >= inverse.size() || inverse[c] < 0) return std::nullopt;
    out += static_cast<char>(inverse[c]);
    i += n;
  }
  return out;
}

/// The ByteLevel decoder's bytes for one token: each char through the inverse table, or the token's
/// own UTF-8 bytes if any char is outside the table (e.g. an added token holding a space).
inline std::string token_bytes(std::string_view token) {
  std::optional<std::string> b = table_bytes(token);
  return b ? std::move(*b) : std::string(token);
}

/// Transparent string hashing, so maps keyed by std::string answer std::string_view lookups.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using string_map = std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>>;

/// One compiled PCRE2 pattern (UTF + UCP, JIT when available), shared between tokenizer copies
/// (matching is thread-safe on a shared pattern with per-call match data).
class regex {
public:
  regex() = default;
  /// @throws config_error naming `where`, the pattern and PCRE2's message and offset.
  regex(std::string_view pattern, std::uint32_t flags, const std::string& where) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    // \C could end a match inside a character, and every later match relies on char boundaries
    if (!(flags & PCRE2_LITERAL)) flags |= PCRE2_NEVER_BACKSLASH_C;
    pcre2_code_8* c = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(), flags | PCRE2_UTF,
                                      &err, &off, nullptr);
    if (!c)
      throw config_error(::membound::detail::concat(where, ": regex ", io::detail::quoted(pattern),
                                                    " does not compile: ", message(err), " at offset ", off));
    code_.reset(c, pcre2_code_free_8);
    pcre2_jit_compile_8(c, PCRE2_JIT_COMPLETE); // failure (no JIT on this CPU) leaves the interpreter
  }
  explicit operator bool() const noexcept { return code_ != nullptr; }

  /// Matches at or after `start` in `s` (which must be valid UTF-8, `start` on a char boundary);
  /// returns false when there is none. @throws budget_error when PCRE2 hits its match or heap limit.
  bool find(std::string_view s, std::size_t start, pcre2_match_data_8* md, std::size_t& b, std::size_t& e) const {
    const int rc = pcre2_match_8(code_.get(), reinterpret_cast<PCRE2_SPTR8>(s.data()), s.size(), start,
                                 PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0)
      throw budget_error(::membound::detail::concat("tokenizer: regex ", io::detail::quoted(pattern_), " failed on ",
                                                    s.size(), " bytes of text: ", message(rc)));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(md);
    b = ov[0], e = ov[1];
    MEMBOUND_EXPECTS(b <= e && e <= s.size(), config_error, "tokenizer: regex ", io::detail::quoted(pattern_),
                     " gave the match [", b, ", ", e, ") (\\K in a lookaround?)");
    return true;
  }

private:
  static std::string message(int code) {
    PCRE2_UCHAR8 buf[256];
    const int n = pcre2_get_error_message_8(code, buf, sizeof buf);
    return n < 0 ? std::string("unknown PCRE2 error") : std::string(reinterpret_cast<const char*>(buf));
  }
  std::shared_ptr<pcre2_code_8> code_;
  std::string pattern_;
};

/// Byte trie of added-token contents: longest match at a position, the primitive of a
/// leftmost-longest scan.
class token_trie {
public:
  bool empty() const noexcept { return value_.size() == 1; }
  void insert(std::string_view s, std::int32_t v) {
    if (!s.empty()) first_[static_cast<unsigned char>(s[0])] = true;
    std::size_t n = 0;
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (const std::size_t m = child(n, c)) {
        n = m;
        continue;
      }
      next_[n].emplace_back(c, next_.size());
      n = next_.size();
      next_.emplace_back();
      value_.push_back(-1);
    }
    value_[n] = v;
  }
  /// The longest content starting at `s[pos]`: {length, value}, or {0, -1}.
  std::pair<std::size_t, std::int32_t> longest(std::string_view s, std::size_t pos) const {
    std::pair<std::size_t, std::int32_t> best{0, -1};
    if (!first_[static_cast<unsigned char>(s[pos])]) return best;
    std::size_t n = 0;
    for (std::size_t i = pos; i < s.size() && (n = child(n, static_cast<unsigned char>(s[i]))) != 0; ++i)
      if (value_[n] >= 0) best = {i + 1 - pos, value_[n]};
    return best;
  }

private:
  /// The child of node `n` along byte `c`, or 0 (the root is nobody's child).
  std::size_t child(std::size_t n, unsigned char c) const {
    for (const auto& [byte, node] : next_[n])
      if (byte == c) return node;
    return 0;
  }
  std::vector<std::vector<std::pair<unsigned char, std::size_t>>> next_{1};
  std::vector<std::int32_t> value_{-1};
  std::array<bool, 256> first_{}; ///< first bytes of the contents
};

/// Open-addressing map (a, b) -> (rank, id of a+b), linear probing at load factor <= 1/2: the BPE
/// inner loop is one lookup per candidate pair.
class merge_table {
public:
  struct value {
    std::uint32_t rank;
    std::int32_t id;
  };
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    shift_ = 60;
    while (cap < 2 * n) cap <<= 1, --shift_;
    slots_.assign(cap, {empty, {0, 0}});
  }
  void insert_or_assign(std::uint64_t key, value v) {
    for (std::size_t i = slot(key);; i = (i + 1) & (slots_.size() - 1))
      if (slots_[i].first == empty || slots_[i].first == key) return void(slots_[i] = {key, v});
  }
  const value* find(std::uint64_t key) const noexcept {
    for (std::size_t i = slot(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].first == key) return &slots_[i].second;
      if (slots_[i].first == empty) return nullptr;
    }
  }

private:
  static constexpr std::uint64_t empty = ~std::uint64_t(0); // ids are < 2^31 - 1: never a key
  std::size_t slot(std::uint64_t key) const noexcept {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  std::vector<std::pair<std::uint64_t, value>> slots_ =
      std::vector<std::pair<std::uint64_t, value>>(16, {empty, {0, 0}});
  int shift_ = 60; // 64 - log2(capacity)
};

enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// One step of the pre-tokenizer chain: a Split (Digits is a Split on \p{N}) or the final ByteLevel.
struct pre_step {
  bool byte_level = false;
  regex re; ///< Split's pattern (ByteLevel: the GPT-2 regex, if used)
  split_behavior behavior = split_behavior::isolated;
  bool invert = false;
  bool add_prefix_space = false; ///< ByteLevel
};

/// A template piece: the sequence ($A) or a special token's ids.
struct template_piece {
  bool sequence = false;
  std::vector<std::int32_t> ids;
};

struct added_token {
  std::string content;
  std::int32_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

/// Per-call buffers of `encode` (the tokenizer itself stays immutable and thread-safe).
struct encode_scratch {
  struct symbol {
    std::int32_t id, prev, next;
    bool alive;
  };
  struct merge {
    std::uint32_t rank, pos;
    std::int32_t id;
  };
  std::unique_ptr<pcre2_match_data_8, void (*)(pcre2_match_data_8*)> md{pcre2_match_data_create_8(1, nullptr),
                                                                        pcre2_match_data_free_8};
  std::vector<symbol> symbols;
  std::vector<merge> heap;
};

} // namespace detail

/// Replaces each maximal ill-formed subsequence of `bytes` with U+FFFD, exactly as Rust's
/// `String::from_utf8_lossy` and Python's `bytes.decode("utf-8", "replace")` do: applied to
/// `tokenizer::decode`'s bytes it gives the library's `decode` string. Complexity: O(size).
inline std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    std::size_t bad = 0;
    const std::size_t n = detail::utf8_seq(bytes, i, &bad);
    if (n) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      detail::append_utf8(out, 0xFFFD);
      i += bad;
    }
  }
  return out;
}

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (see the file comment for
/// what is supported). Immutable after loading; copies share the compiled regexes; `encode` and
/// `decode` are const and thread-safe.
class tokenizer {
public:
  /// Reads and parses `tokenizer_json`. @throws io_error (open/read), format_error (not strict JSON,
  /// over `tokenizer_max_bytes`), config_error (unsupported or inconsistent content).
  static tokenizer load(const std::filesystem::path& tokenizer_json, const tokenizer_options& options = {}) {
    return from_json(io::load_json(tokenizer_json, tokenizer_max_bytes), tokenizer_json.string(), options);
  }
  /// Parses a tokenizer.json text; `where` names it in messages. @throws as `load`.
  static tokenizer parse(std::string_view json_text, const std::string& where, const tokenizer_options& options = {}) {
    return from_json(io::parse_json(json_text, where, tokenizer_max_bytes), where, options);
  }

  /// Token ids of `text` (the library's `encode(text, add_special_tokens).ids`). Empty text gives
  /// only the template's tokens (none when `add_special_tokens` is false).
  /// @throws format_error naming the byte offset of the first invalid UTF-8 sequence (overlong forms,
  ///   surrogates and code points past U+10FFFF are invalid); budget_error if PCRE2 exceeds its match
  ///   limit on a pathological pattern.
  /// Complexity: O(n log n) per pre-token of n bytes (heap-driven merges, no cache), O(n * L) for the
  /// added-token scan.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true) const {
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = detail::utf8_seq(text, i);
      MEMBOUND_EXPECTS(n != 0, format_error, where_, ": encode: invalid UTF-8 at byte offset ", i, " (byte 0x",
                       std::hex, static_cast<int>(static_cast<unsigned char>(text[i])), ")");
      i += n;
    }
    detail::encode_scratch sc;
    if (!sc.md) throw std::bad_alloc();
    std::vector<std::int32_t> ids;
    split_added(text, raw_trie_, sc, ids, [&](std::string_view piece) {
      // the normalizer would run here: null, or NFC on text the caller vouches is NFC
      split_added(piece, normalized_trie_, sc, ids, [&](std::string_view p) { pre_tokenize(0, p, sc, ids); });
    });
    for (const auto& tmpl : templates_) {
      std::vector<std::int32_t> out;
      for (const detail::template_piece& piece : tmpl) {
        if (piece.sequence)
          out.insert(out.end(), ids.begin(), ids.end());
        else if (add_special_tokens)
          out.insert(out.end(), piece.ids.begin(), piece.ids.end());
      }
      ids = std::move(out);
    }
    return ids;
  }

  /// The ByteLevel decoder's bytes for `ids`, concatenated: NOT repaired to valid UTF-8 (a character
  /// split across ids decodes whole once all its ids are present; pass the result to `utf8_lossy` for
  /// the library's `decode` string). Unknown (also negative) ids are skipped, as the library does;
  /// with `skip_special_tokens`, added tokens marked special are skipped too (non-special added
  /// tokens stay). Complexity: O(ids + output bytes).
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
    std::string out;
    for (const std::int32_t id : ids) {
      const auto it = index_.find(id);
      if (it == index_.end()) continue;
      const entry& e = entries_[it->second];
      if (!(skip_special_tokens && e.special)) out += e.bytes;
    }
    return out;
  }

  /// One past the largest id of the vocab and the added tokens (the embedding rows needed).
  std::int32_t vocab_size() const noexcept { return vocab_size_; }
  /// The id of a token string as written in the file (vocab spelling, e.g. "Ġthe"), or of an added
  /// token's content.
  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    const auto it = token_ids_.find(token);
    return it == token_ids_.end() ? std::nullopt : std::optional<std::int32_t>(it->second);
  }
  /// The token string of `id` as written in the file. @throws lookup_error for an unknown id.
  std::string_view id_to_token(std::int32_t id) const {
    const auto it = index_.find(id);
    MEMBOUND_EXPECTS(it != index_.end(), lookup_error, where_, ": no token has id ", id);
    return entries_[it->second].token;
  }
  /// Whether `id` is an added token marked special (false for unknown ids).
  bool is_special(std::int32_t id) const noexcept {
    const auto it = index_.find(id);
    return it != index_.end() && entries_[it->second].special;
  }

private:
  struct entry {
    std::string token, bytes; ///< the file's spelling; the decoder's bytes
    bool special = false;
  };

  // ---- encode ---------------------------------------------------------------------------------

  /// The library's AddedVocabulary::find_matches: leftmost-longest raw matches, filtered and
  /// extended by the token's flags; `gap` gets the non-empty text between tokens, in order.
  template <class Gap>
  void split_added(std::string_view s, const detail::token_trie& trie, detail::encode_scratch& sc,
                   std::vector<std::int32_t>& ids, Gap&& gap) const {
    if (s.empty()) return;
    if (trie.empty()) return gap(s);
    std::size_t start_offset = 0;
    for (std::size_t pos = 0; pos < s.size();) {
      const auto [len, index] = trie.longest(s, pos);
      if (len == 0) {
        ++pos;
        continue;
      }
      std::size_t start = pos, stop = pos + len;
      pos = stop; // the raw scan continues after the raw match, whatever the flags do
      const detail::added_token& t = added_[static_cast<std::size_t>(index)];
      if (t.single_word && ((start > 0 && is_class_at(word_re_, s, char_before(s, start), sc)) ||
                            (stop < s.size() && is_class_at(word_re_, s, stop, sc))))
        continue;
      if (t.lstrip) {
        std::size_t b = start;
        while (b > 0 && is_class_at(space_re_, s, char_before(s, b), sc)) b = char_before(s, b);
        start = std::max(b, start_offset);
      }
      if (t.rstrip)
        while (stop < s.size() && is_class_at(space_re_, s, stop, sc)) stop += detail::utf8_seq(s, stop);
      if (start_offset < start) gap(s.substr(start_offset, start - start_offset));
      ids.push_back(t.id);
      start_offset = stop;
    }
    if (start_offset < s.size()) gap(s.substr(start_offset));
  }

  static std::size_t char_before(std::string_view s, std::size_t i) {
    do --i;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
    return i;
  }
  /// Whether the char at `s[i]` is in the one-char class `re` (compiled anchored).
  static bool is_class_at(const detail::regex& re, std::string_view s, std::size_t i, detail::encode_scratch& sc) {
    std::size_t b = 0, e = 0;
    return re.find(s, i, sc.md.get(), b, e);
  }

  /// Applies pre-tokenizer steps `step..` to `piece`, then BPE to each resulting pre-token.
  void pre_tokenize(std::size_t step, std::string_view piece, detail::encode_scratch& sc,
                    std::vector<std::int32_t>& ids) const {
    if (piece.empty()) return;
    if (step == steps_.size()) return bpe(piece, sc, ids);
    const detail::pre_step& ps = steps_[step];
    std::string prefixed;
    if (ps.byte_level) {
      if (ps.add_prefix_space && piece.front() != ' ') {
        prefixed.reserve(piece.size() + 1);
        prefixed.assign(1, ' ').append(piece);
        piece = prefixed;
      }
      if (!ps.re) return pre_tokenize(step + 1, piece, sc, ids);
    }
    for (const auto& [b, e] : split(ps, piece, sc))
      if (e > b) pre_tokenize(step + 1, piece.substr(b, e - b), sc, ids);
  }

  /// NormalizedString::split: the pattern's matches and gaps tiling `s` (onig's find_iter: an
  /// empty match right after the previous match is skipped), folded by the behaviour.
  static std::vector<std::pair<std::size_t, std::size_t>> split(const detail::pre_step& ps, std::string_view s,
                                                                detail::encode_scratch& sc) {
    struct seg {
      std::size_t b, e;
      bool match;
    };
    std::vector<seg> segs;
    std::size_t prev = 0, last_end = 0, b = 0, e = 0;
    std::optional<std::size_t> last_match_end;
    while (last_end <= s.size() && ps.re.find(s, last_end, sc.md.get(), b, e)) {
      if (b == e && last_match_end == e) {
        last_end += last_end < s.size() ? detail::utf8_seq(s, last_end) : 1;
        continue;
      }
      last_end = last_match_end.emplace(e);
      if (prev != b) segs.push_back({prev, b, ps.invert});
      segs.push_back({b, e, !ps.invert});
      prev = e;
    }
    if (prev != s.size()) segs.push_back({prev, s.size(), ps.invert});
    using sb = detail::split_behavior;
    std::vector<std::pair<std::size_t, std::size_t>> out;
    bool previous_match = false;
    if (ps.behavior == sb::merged_with_next) std::reverse(segs.begin(), segs.end());
    for (const seg& g : segs) {
      // Contiguous joins a segment to an equal neighbour; MergedWith* join a match to a non-match
      const bool join = ps.behavior == sb::contiguous ? g.match == previous_match
                                                      : ps.behavior != sb::isolated && g.match && !previous_match;
      if (ps.behavior == sb::removed) {
        if (!g.match) out.emplace_back(g.b, g.e);
      } else if (join && !out.empty()) {
        (ps.behavior == sb::merged_with_next ? out.back().first : out.back().second) =
            ps.behavior == sb::merged_with_next ? g.b : g.e;
      } else {
        out.emplace_back(g.b, g.e);
      }
      previous_match = g.match;
    }
    if (ps.behavior == sb::merged_with_next) std::reverse(out.begin(), out.end());
    return out;
  }

  /// BPE on one pre-token's bytes: the library's Word::merge_all, merges popped by (rank, position),
  /// an entry skipped once its left symbol is gone or its pair no longer yields its token.
  void bpe(std::string_view w, detail::encode_scratch& sc, std::vector<std::int32_t>& ids) const {
    if (ignore_merges_)
      if (const auto it = byte_tokens_.find(w); it != byte_tokens_.end()) return ids.push_back(it->second);
    auto& sym = sc.symbols;
    sym.clear();
    const auto add = [&](std::int32_t id) {
      const auto n = static_cast<std::int32_t>(sym.size());
      sym.push_back({id, n - 1, -1, true});
      if (n > 0) sym[static_cast<std::size_t>(n - 1)].next = n;
    };
    bool pending_unk = false; // an unknown byte waiting to become <unk> (fused with the next ones)
    for (const char ch : w) {
      const std::int32_t id = byte_ids_[static_cast<unsigned char>(ch)];
      if (id >= 0) {
        if (pending_unk) add(unk_id_);
        pending_unk = false;
        add(id);
      } else if (unk_id_ >= 0) {
        if (pending_unk && !fuse_unk_) add(unk_id_);
        pending_unk = true;
      } // no unk_token: the byte is dropped, as in the library
    }
    if (pending_unk) add(unk_id_);
    if (sym.empty()) return;
    const auto lookup = [&](std::size_t l, std::size_t r) { return merges_.find(pair_key(sym[l].id, sym[r].id)); };
    const auto lower = [](const detail::encode_scratch::merge& a, const detail::encode_scratch::merge& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; // max-heap on priority = min (rank, pos)
    };
    auto& heap = sc.heap;
    heap.clear();
    const auto push = [&](std::size_t l) {
      if (const auto* m = lookup(l, static_cast<std::size_t>(sym[l].next))) {
        heap.push_back({m->rank, static_cast<std::uint32_t>(l), m->id});
        std::push_heap(heap.begin(), heap.end(), lower);
      }
    };
    for (std::size_t i = 0; i + 1 < sym.size(); ++i)
      if (const auto* m = lookup(i, i + 1)) heap.push_back({m->rank, static_cast<std::uint32_t>(i), m->id});
    std::make_heap(heap.begin(), heap.end(), lower);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), lower);
      const auto top = heap.back();
      heap.pop_back();
      auto& left = sym[top.pos];
      if (!left.alive || left.next < 0) continue;
      const auto r = static_cast<std::size_t>(left.next);
      if (const auto* m = lookup(top.pos, r); !m || m->id != top.id) continue;
      left.id = top.id;
      left.next = sym[r].next;
      sym[r].alive = false;
      if (left.next >= 0) sym[static_cast<std::size_t>(left.next)].prev = static_cast<std::int32_t>(top.pos);
      if (left.prev >= 0) push(static_cast<std::size_t>(left.prev));
      if (sym[top.pos].next >= 0) push(top.pos);
    }
    for (std::int32_t i = 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next)
      ids.push_back(sym[static_cast<std::size_t>(i)].id);
  }

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  // ---- loading --------------------------------------------------------------------------------

  using json = nlohmann::json;
  using fields = io::detail::json_fields;

  static tokenizer from_json(const json& root, const std::string& where, const tokenizer_options& options);
  void read_model(const json& model, const std::string& where);
  void read_added(const json& list, const std::string& where);
  void read_pre_tokenizer(const json& p, const std::string& where, int depth);
  void read_post_processor(const json& p, const std::string& where);

  /// The "type" of a component object. @throws config_error when it is not an object with one.
  static std::string type_of(const json& j, const std::string& where) {
    if (!j.is_object())
      throw config_error(::membound::detail::concat(where, " is ", io::detail::short_dump(j), ", expected an object"));
    const std::optional<std::string> t = fields(j, where).string("type");
    if (!t) fields(j, where).missing("type", "a component type");
    return *t;
  }
  /// Adds (or, for an added token already in the vocab, marks) the entry for `id`.
  entry& add_entry(std::int32_t id, const std::string& token) {
    const auto [it, fresh] = index_.try_emplace(id, static_cast<std::uint32_t>(entries_.size()));
    if (fresh) entries_.push_back({token, detail::token_bytes(token), false});
    token_ids_.try_emplace(token, id);
    vocab_size_ = std::max(vocab_size_, id + 1);
    return entries_[it->second];
  }

  std::string where_;
  std::vector<entry> entries_;
  std::unordered_map<std::int32_t, std::uint32_t> index_; ///< id -> entries_ index
  detail::string_map token_ids_;                          ///< file spelling -> id
  detail::string_map byte_tokens_;                        ///< model vocab: decoded bytes -> id
  detail::merge_table merges_;                            ///< (a, b) -> (rank, a+b)
  std::array<std::int32_t, 256> byte_ids_{};              ///< initial symbol of each byte, or -1
  std::int32_t unk_id_ = -1, vocab_size_ = 0;
  bool ignore_merges_ = false, fuse_unk_ = false;
  std::vector<detail::added_token> added_;
  detail::token_trie raw_trie_, normalized_trie_;
  detail::regex word_re_, space_re_; ///< Rust regex's \w and \s, one char
  std::vector<detail::pre_step> steps_;
  std::vector<std::vector<detail::template_piece>> templates_;
};

// ---- loading, out of line -------------------------------------------------------------------

inline tokenizer tokenizer::from_json(const json& root, const std::string& where, const tokenizer_options& options) {
  using ::membound::detail::concat;
  if (!root.is_object())
    throw config_error(concat(where, ": expected a JSON object, got ", io::detail::short_dump(root)));
  const fields f(root, where);
  tokenizer t;
  t.where_ = where;
  if (const auto v = f.string("version"); v && *v != "1.0") f.fail("version", json(*v), "\"1.0\"");
  for (const char* key : {"truncation", "padding"})
    if (const json* v = f.find(key)) f.fail(key, *v, "null (truncation and padding change the ids; not supported)");
  const json* model = f.find("model");
  if (!model) f.missing("model", "a BPE model object");
  t.read_model(*model, where + ": model");

  // normalizer: null, or NFC (alone or in a Sequence) under assume_nfc
  if (const json* n = f.find("normalizer")) {
    const std::string w = where + ": normalizer";
    const auto nfc = [&](const json& x, const std::string& wx) {
      const std::string type = type_of(x, wx);
      if (type != "NFC") fields(x, wx).fail("type", json(type), "\"NFC\" (the only normalizer supported)");
      if (!options.assume_nfc)
        throw config_error(concat(wx, ": NFC needs Unicode composition tables, which membound does not carry; set "
                                      "tokenizer_options::assume_nfc to encode NFC text unchanged"));
    };
    if (type_of(*n, w) == "Sequence") {
      const json* list = fields(*n, w).find("normalizers");
      if (!list || !list->is_array()) fields(*n, w).fail("normalizers", list ? *list : json(), "a list");
      for (std::size_t i = 0; i < list->size(); ++i) nfc((*list)[i], concat(w, ".normalizers[", i, "]"));
    } else {
      nfc(*n, w);
    }
  }

  t.read_added(f.find("added_tokens") ? *f.find("added_tokens") : json::array(), where + ": added_tokens");

  const json* pre = f.find("pre_tokenizer");
  if (!pre) f.missing("pre_tokenizer", "a chain ending in ByteLevel (byte-level BPE)");
  t.read_pre_tokenizer(*pre, where + ": pre_tokenizer", 0);
  if (t.steps_.empty() || !t.steps_.back().byte_level)
    f.fail("pre_tokenizer", *pre, "a chain ending in ByteLevel (byte-level BPE)");

  if (const json* p = f.find("post_processor")) t.read_post_processor(*p, where + ": post_processor");

  const json* dec = f.find("decoder");
  if (!dec) f.missing("decoder", "ByteLevel");
  const json* one = dec;
  if (type_of(*dec, where + ": decoder") == "Sequence") {
    const json* list = fields(*dec, where + ": decoder").find("decoders");
    if (list && list->is_array() && list->size() == 1) one = &(*list)[0];
  }
  if (type_of(*one, where + ": decoder") != "ByteLevel") f.fail("decoder", *dec, "ByteLevel");
  return t;
}

inline void tokenizer::read_model(const json& model, const std::string& where) {
  using ::membound::detail::concat;
  if (!model.is_object())
    throw config_error(concat(where, " is ", io::detail::short_dump(model), ", expected an object"));
  const fields f(model, where);
  if (const auto type = f.string("type"); type && *type != "BPE")
    f.fail("type", json(*type), "\"BPE\" (WordPiece, WordLevel and Unigram are not supported)");
  const json* vocab = f.find("vocab");
  if (!vocab || !vocab->is_object())
    vocab ? f.fail("vocab", *vocab, "an object token -> id") : f.missing("vocab", "an object token -> id");
  const json* merges = f.find("merges");
  if (!merges || !merges->is_array()) merges ? f.fail("merges", *merges, "a list") : f.missing("merges", "a list");
  if (const json* d = f.find("dropout"); d && !(d->is_number() && d->get<double>() == 0.0))
    f.fail("dropout", *d, "null or 0 (dropout makes encoding random)");
  if (f.boolean("byte_fallback", false))
    f.fail("byte_fallback", json(true), "false (byte-level BPE needs no fallback)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const auto s = f.string(key); s && !s->empty())
      f.fail(key, json(*s), "null (WordPiece-style BPE is not supported)");
  ignore_merges_ = f.boolean("ignore_merges", false);
  fuse_unk_ = f.boolean("fuse_unk", false);

  // vocab: distinct ids in [0, 2^31 - 1)
  detail::string_map vocab_ids;
  entries_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const json& v = it.value();
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() >= INT32_MAX ||
        (v.is_number_unsigned() && v.get<std::uint64_t>() >= INT32_MAX))
      throw config_error(concat(where, ".vocab[", io::detail::quoted(it.key()), "] is ", io::detail::short_dump(v),
                                ", expected an id in [0, 2^31 - 1)"));
    const auto id = v.get<std::int32_t>();
    if (index_.count(id))
      throw config_error(concat(where, ".vocab: id ", id, " is given to both ",
                                io::detail::quoted(entries_[index_[id]].token), " and ", io::detail::quoted(it.key())));
    add_entry(id, it.key());
    vocab_ids.emplace(it.key(), id);
    if (std::optional<std::string> bytes = detail::table_bytes(it.key())) byte_tokens_.emplace(std::move(*bytes), id);
  }
  byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string c;
    detail::append_utf8(c, detail::byte_chars()[static_cast<std::size_t>(b)]);
    if (const auto it = vocab_ids.find(c); it != vocab_ids.end()) byte_ids_[static_cast<std::size_t>(b)] = it->second;
  }
  if (const auto unk = f.string("unk_token")) {
    const auto it = vocab_ids.find(*unk);
    if (it == vocab_ids.end()) f.fail("unk_token", json(*unk), "a token of the vocab");
    unk_id_ = it->second;
  }

  // merges: "a b" strings (lines starting "#version" skipped) or ["a", "b"] pairs, not mixed
  const bool legacy = !merges->empty() && (*merges)[0].is_string();
  std::uint32_t rank = 0;
  merges_.reserve(merges->size());
  for (std::size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    std::string a, b;
    if (legacy && m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      if (s.rfind("#version", 0) == 0) continue;
      const std::size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw config_error(concat(where, ".merges[", i, "] is ", io::detail::quoted(s),
                                  ", expected two tokens separated by one space"));
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (!legacy && m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    } else {
      throw config_error(concat(where, ".merges[", i, "] is ", io::detail::short_dump(m), ", expected ",
                                legacy ? "a string \"a b\" like merges[0]" : "a pair [\"a\", \"b\"] like merges[0]"));
    }
    const auto id_of = [&](const std::string& s) {
      const auto it = vocab_ids.find(s);
      if (it == vocab_ids.end())
        throw config_error(concat(where, ".merges[", i, "]: ", io::detail::quoted(s), " is not in the vocab"));
      return it->second;
    };
    const std::int32_t ia = id_of(a), ib = id_of(b), iab = id_of(a + b);
    merges_.insert_or_assign(pair_key(ia, ib), {rank++, iab}); // a repeated pair: the last one wins, as in the library
  }
}

inline void tokenizer::read_added(const json& list, const std::string& where) {
  using ::membound::detail::concat;
  if (!list.is_array()) throw config_error(concat(where, " is ", io::detail::short_dump(list), ", expected a list"));
  const std::size_t vocab_count = entries_.size();
  std::int64_t next_id = static_cast<std::int64_t>(vocab_count); // the library's next id for new contents
  detail::string_map added_index;                                // content -> index in added_
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string w = concat(where, "[", i, "]");
    if (!list[i].is_object())
      throw config_error(concat(w, " is ", io::detail::short_dump(list[i]), ", expected an object"));
    const fields f(list[i], w);
    detail::added_token t;
    const auto content = f.string("content");
    if (!content || content->empty()) f.fail("content", list[i], "a non-empty string");
    t.content = *content;
    t.id = static_cast<std::int32_t>(f.integer("id", 0, INT32_MAX - 1, std::nullopt));
    t.single_word = f.boolean("single_word", false), t.lstrip = f.boolean("lstrip", false);
    t.rstrip = f.boolean("rstrip", false), t.normalized = f.boolean("normalized", true);
    t.special = f.boolean("special", false);
    std::int64_t expected = 0;
    const auto in_vocab = token_ids_.find(t.content);
    if (const auto seen = added_index.find(t.content); seen != added_index.end()) {
      const detail::added_token& first = added_[static_cast<std::size_t>(seen->second)];
      if (std::tie(first.single_word, first.lstrip, first.rstrip, first.normalized, first.special) !=
          std::tie(t.single_word, t.lstrip, t.rstrip, t.normalized, t.special))
        throw config_error(concat(w, ": ", io::detail::quoted(t.content), " is listed twice with different flags"));
      expected = first.id; // an exact repeat, which the library ignores
    } else if (in_vocab != token_ids_.end()) {
      expected = in_vocab->second;
    } else {
      expected = next_id++;
      if (index_.count(static_cast<std::int32_t>(t.id)))
        throw config_error(concat(w, ": id ", t.id, " of ", io::detail::quoted(t.content), " is taken by the vocab's ",
                                  io::detail::quoted(entries_[index_[t.id]].token)));
    }
    if (t.id != expected)
      throw config_error(concat(w, ": ", io::detail::quoted(t.content), " has id ", t.id,
                                ", but the tokenizers library gives it ", expected,
                                " (its vocab id, or the next id after the ", vocab_count, " vocab entries)"));
    if (!added_index.try_emplace(t.content, static_cast<std::int32_t>(added_.size())).second) continue;
    entry& e = add_entry(t.id, t.content);
    e.special = e.special || t.special;
    if (t.single_word && !word_re_)
      word_re_ = detail::regex("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", PCRE2_UCP | PCRE2_ANCHORED, w);
    if ((t.lstrip || t.rstrip) && !space_re_)
      space_re_ = detail::regex("\\p{White_Space}", PCRE2_UCP | PCRE2_ANCHORED, w);
    (t.normalized ? normalized_trie_ : raw_trie_).insert(t.content, static_cast<std::int32_t>(added_.size()));
    added_.push_back(std::move(t));
  }
}

inline void tokenizer::read_pre_tokenizer(const json& p, const std::string& where, int depth) {
  using ::membound::detail::concat;
  const std::string type = type_of(p, where);
  const fields f(p, where);
  MEMBOUND_EXPECTS(steps_.size() < 64 && depth < 16, config_error, where,
                   ": more than 64 pre-tokenizer steps or 16 nested Sequences");
  if (!steps_.empty() && steps_.back().byte_level)
    throw config_error(concat(where, ": ", type, " after ByteLevel (ByteLevel must be the last step)"));
  detail::pre_step s;
  if (type == "Sequence") {
    const json* list = f.find("pretokenizers");
    if (!list || !list->is_array())
      list ? f.fail("pretokenizers", *list, "a list") : f.missing("pretokenizers", "a list");
    for (std::size_t i = 0; i < list->size(); ++i)
      read_pre_tokenizer((*list)[i], concat(where, ".pretokenizers[", i, "]"), depth + 1);
    return;
  } else if (type == "ByteLevel") {
    s.byte_level = true;
    s.add_prefix_space = f.boolean("add_prefix_space", true);
    if (f.boolean("use_regex", true))
      s.re = detail::regex("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                           PCRE2_UCP, where);
  } else if (type == "Split") {
    const json* pat = f.find("pattern");
    const auto pattern_error = [&] {
      f.fail("pattern", pat ? *pat : json(), "{\"Regex\": \"...\"} or {\"String\": \"...\"}");
    };
    if (!pat || !pat->is_object() || pat->size() != 1) pattern_error();
    const auto it = pat->begin();
    if (!it.value().is_string() || (it.key() != "Regex" && it.key() != "String")) pattern_error();
    s.re =
        detail::regex(it.value().get_ref<const std::string&>(), it.key() == "Regex" ? PCRE2_UCP : PCRE2_LITERAL, where);
    const auto behavior = f.string("behavior");
    using sb = detail::split_behavior;
    static const std::pair<const char*, sb> names[] = {{"Removed", sb::removed},
                                                       {"Isolated", sb::isolated},
                                                       {"MergedWithPrevious", sb::merged_with_previous},
                                                       {"MergedWithNext", sb::merged_with_next},
                                                       {"Contiguous", sb::contiguous}};
    const auto b = std::find_if(std::begin(names), std::end(names),
                                [&](const auto& n) { return behavior && *behavior == n.first; });
    if (b == std::end(names))
      f.fail("behavior", behavior ? json(*behavior) : json(),
             "\"Removed\", \"Isolated\", \"MergedWithPrevious\", \"MergedWithNext\" or \"Contiguous\"");
    s.behavior = b->second;
    s.invert = f.boolean("invert", false);
  } else if (type == "Digits") {
    // char::is_numeric is \p{N}; individual digits isolate each, otherwise runs are contiguous
    s.re = detail::regex(f.boolean("individual_digits", false) ? "\\p{N}" : "\\p{N}+", PCRE2_UCP, where);
  } else {
    f.fail("type", json(type),
           "\"ByteLevel\", \"Split\", \"Digits\" or \"Sequence\" (Metaspace and word-level "
           "pre-tokenizers are not supported)");
  }
  steps_.push_back(std::move(s));
}

inline void tokenizer::read_post_processor(const json& p, const std::string& where) {
  using ::membound::detail::concat;
  const std::string type = type_of(p, where);
  const fields f(p, where);
  if (type == "ByteLevel") return; // offsets only
  if (type == "Sequence") {
    const json* list = f.find("processors");
    if (!list || !list->is_array()) list ? f.fail("processors", *list, "a list") : f.missing("processors", "a list");
    MEMBOUND_EXPECTS(list->size() <= 16, config_error, where, ": more than 16 processors");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const std::string w = concat(where, ".processors[", i, "]");
      if (type_of((*list)[i], w) == "Sequence")
        throw config_error(w + ": nested Sequence post-processors are not supported");
      read_post_processor((*list)[i], w);
    }
    return;
  }
  if (type != "TemplateProcessing")
    f.fail("type", json(type),
           "\"TemplateProcessing\", \"ByteLevel\" or \"Sequence\" (Bert/Roberta processors are not supported)");
  const json* specials = f.find("special_tokens");
  if (specials && !specials->is_object()) f.fail("special_tokens", *specials, "an object name -> {id, ids, tokens}");
  const auto pieces = [&](const char* key) {
    std::vector<detail::template_piece> out;
    const json* list = f.find(key);
    if (!list || !list->is_array()) list ? f.fail(key, *list, "a list of pieces") : f.missing(key, "a list of pieces");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const json& pc = (*list)[i];
      const std::string w = concat(where, ".", key, "[", i, "]");
      const auto bad = [&] {
        throw config_error(concat(w, " is ", io::detail::short_dump(pc),
                                  ", expected {\"Sequence\": {\"id\": \"A\"|\"B\"}} or "
                                  "{\"SpecialToken\": {\"id\": name}}"));
      };
      if (!pc.is_object() || pc.size() != 1 || !pc.begin().value().is_object()) bad();
      const json& body = pc.begin().value();
      const auto id = fields(body, w).string("id");
      if (!id) bad();
      detail::template_piece piece;
      if (pc.begin().key() == "Sequence") {
        if (*id != "A" && *id != "B") bad();
        if (*id == "B" && std::string_view(key) == "single")
          throw config_error(w + ": $B in the single-sequence template");
        piece.sequence = true;
      } else if (pc.begin().key() == "SpecialToken") {
        const json* tok = specials ? fields(*specials, where).find(*id) : nullptr;
        if (!tok || !tok->is_object())
          throw config_error(concat(w, ": special token ", io::detail::quoted(*id), " is not in special_tokens"));
        const json* ids = fields(*tok, w).find("ids");
        if (!ids || !ids->is_array()) fields(*tok, w).fail("ids", ids ? *ids : json(), "a list of token ids");
        for (const json& x : *ids) {
          if (!x.is_number_integer() || x.get<std::int64_t>() < 0 || x.get<std::int64_t>() >= INT32_MAX ||
              !index_.count(x.get<std::int32_t>()))
            fields(*tok, w).fail("ids", *ids, "ids of tokens in the vocab or added tokens");
          piece.ids.push_back(x.get<std::int32_t>());
        }
      } else {
        bad();
      }
      out.push_back(std::move(piece));
    }
    return out;
  };
  templates_.push_back(pieces("single"));
  if (f.find("pair")) (void)pieces("pair"); // validated only: membound encodes single sequences
}

} // namespace llm
} // namespace v0_1
} // namespace membound
