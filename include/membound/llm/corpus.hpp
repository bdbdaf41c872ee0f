// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::byte_corpus`: training text as byte-level token ids (id = byte value, documents
/// separated by `byte_eot`), read from files in a fixed order, with windows drawn by a counter-based
/// hash of (seed, step, row) so that a batch is a pure function of its step (which is what makes
/// training resumable bit for bit), and `write_byte_tokenizer`: the matching tokenizer.json.
///
/// The byte vocabulary has 257 ids: the 256 byte values and `<|endoftext|>` (256). Its
/// tokenizer.json is a byte-level BPE with no merges (transformers' `ByteLevel` pre-tokenizer
/// without the GPT-2 regex and the `ByteLevel` decoder), which llm::tokenizer and Hugging Face's
/// tokenizers both read; it maps text to its UTF-8 bytes one token each.
///
/// Memory: one byte per token plus the document offsets. Reading is O(total bytes).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

inline constexpr std::int32_t byte_eot = 256;  ///< `<|endoftext|>`: separates documents
inline constexpr index_t byte_vocab_size = 257; ///< bytes 0..255 and byte_eot

namespace detail {
/// splitmix64: the counter-based hash behind every draw of the training data.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/// A 64-bit hash of (seed, a, b, c).
constexpr std::uint64_t draw64(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c = 0) noexcept {
  return mix64(mix64(mix64(seed ^ mix64(a)) ^ b) ^ mix64(c + 0x51ed27ull));
}
} // namespace detail

/// Documents as byte tokens, concatenated with byte_eot after each.
class byte_corpus {
public:
  /// Reads the files in the order given. @throws io_error naming a file that cannot be read;
  /// config_error when the files hold no byte at all.
  static byte_corpus from_files(std::span<const std::filesystem::path> files) {
    byte_corpus c;
    for (const auto& f : files) c.add_file(f);
    MEMBOUND_EXPECTS(c.bytes_ > 0, config_error, "llm::byte_corpus: the ", files.size(), " files hold no text");
    return c;
  }
  /// Every regular file under `root` whose name ends with `extension` and for which `keep(path
  /// relative to root, as a generic string)` is true, in sorted path order (the same on every file
  /// system). @throws io_error when root is not a readable directory; config_error when nothing
  /// matches.
  static byte_corpus from_directory(const std::filesystem::path& root, std::string_view extension,
                                    const std::function<bool(const std::string&)>& keep = {}) {
    std::error_code ec;
    MEMBOUND_EXPECTS(std::filesystem::is_directory(root, ec), io_error, "llm::byte_corpus: ", root.string(),
                     " is not a readable directory");
    std::vector<std::filesystem::path> files;
    for (auto it = std::filesystem::recursive_directory_iterator(root, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      const std::string name = it->path().filename().string();
      if (name.size() < extension.size() || name.compare(name.size() - extension.size(), extension.size(), extension) != 0) continue;
      const std::string rel = std::filesystem::relative(it->path(), root, ec).generic_string();
      if (!keep || keep(rel)) files.push_back(it->path());
    }
    MEMBOUND_EXPECTS(!ec, io_error, "llm::byte_corpus: cannot list ", root.string(), ": ", ec.message());
    std::sort(files.begin(), files.end(), [&](const auto& a, const auto& b) { return a.generic_string() < b.generic_string(); });
    MEMBOUND_EXPECTS(!files.empty(), config_error, "llm::byte_corpus: no file ending in \"", extension, "\" selected under ",
                     root.string());
    return from_files(files);
  }
  /// A corpus of one in-memory document (tests, examples).
  static byte_corpus from_text(std::string_view text) {
    byte_corpus c;
    c.add_document(text, "text");
    MEMBOUND_EXPECTS(c.bytes_ > 0, config_error, "llm::byte_corpus: empty text");
    return c;
  }

  /// Tokens in all (bytes plus one byte_eot per document).
  index_t size() const noexcept { return static_cast<index_t>(tokens_.size()); }
  /// Text bytes (without the separators).
  index_t bytes() const noexcept { return bytes_; }
  index_t documents() const noexcept { return static_cast<index_t>(names_.size()); }
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// Token t (0..256).
  std::int32_t operator[](index_t t) const { return tokens_[static_cast<std::size_t>(t)] == 0xFFFF ? byte_eot : tokens_[static_cast<std::size_t>(t)]; }

  /// out[i] = token (offset + i). @throws lookup_error when the window passes the end.
  void window(index_t offset, std::span<std::int64_t> out) const {
    MEMBOUND_EXPECTS(offset >= 0 && offset + static_cast<index_t>(out.size()) <= size(), lookup_error, "llm::byte_corpus: window [",
                     offset, ", ", offset + static_cast<index_t>(out.size()), ") outside [0, ", size(), ")");
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = (*this)[offset + static_cast<index_t>(i)];
  }
  /// A window of out.size() tokens at an offset drawn uniformly from hash(seed, step, row).
  /// @throws config_error when the corpus is shorter than the window.
  void sample(std::uint64_t seed, std::uint64_t step, std::uint64_t row, std::span<std::int64_t> out) const {
    const index_t len = static_cast<index_t>(out.size());
    MEMBOUND_EXPECTS(len <= size(), config_error, "llm::byte_corpus: a window of ", len, " tokens in a corpus of ", size());
    const std::uint64_t span = static_cast<std::uint64_t>(size() - len + 1);
    window(static_cast<index_t>(detail::draw64(seed, step, row) % span), out);
  }

private:
  void add_file(const std::filesystem::path& f) {
    std::ifstream in(f, std::ios::binary);
    MEMBOUND_EXPECTS(in.good(), io_error, "llm::byte_corpus: cannot read ", f.string());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    MEMBOUND_EXPECTS(!in.bad(), io_error, "llm::byte_corpus: error reading ", f.string());
    add_document(text, f.string());
  }
  void add_document(std::string_view text, std::string name) {
    if (text.empty()) return;
    tokens_.reserve(tokens_.size() + text.size() + 1);
    for (const char ch : text) tokens_.push_back(static_cast<unsigned char>(ch));
    tokens_.push_back(0xFFFF);
    bytes_ += static_cast<index_t>(text.size());
    names_.push_back(std::move(name));
  }

  std::vector<std::uint16_t> tokens_; // bytes, 0xFFFF for byte_eot
  std::vector<std::string> names_;
  index_t bytes_ = 0;
};

/// The newest /usr/lib/python3.N folder holding os.py (Debian's libpython3.N-stdlib), or an
/// empty path when there is none.
inline std::filesystem::path find_python_stdlib() {
  std::filesystem::path best;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib", ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("python3.", 0) == 0 && std::filesystem::exists(e.path() / "os.py", ec) && e.path() > best) best = e.path();
  }
  return best;
}

/// The split of the Python standard library the embedded default model uses (paths relative to
/// the library folder, '/'-separated): code files are every .py outside tests (test/, tests/,
/// idle_test/), site-packages, dist-packages and generated tables (encodings/, pydoc_data/);
/// held out are email/, json/, http/, textwrap.py and fractions.py.
struct python_stdlib_split {
  static bool code(const std::string& rel) {
    for (const char* part : {"test/", "tests/", "idle_test/", "site-packages/", "dist-packages/", "encodings/", "pydoc_data/"})
      if (rel.rfind(part, 0) == 0 || rel.find(std::string("/") + part) != std::string::npos) return false;
    return true;
  }
  static bool held_out(const std::string& rel) {
    for (const char* p : {"email/", "json/", "http/"})
      if (rel.rfind(p, 0) == 0) return true;
    return rel == "textwrap.py" || rel == "fractions.py";
  }
  static bool train(const std::string& rel) { return code(rel) && !held_out(rel); }
  static bool test(const std::string& rel) { return code(rel) && held_out(rel); }
};

/// Writes the byte vocabulary's tokenizer.json (see the file comment) to `path`.
/// @throws io_error when it cannot be written.
inline void write_byte_tokenizer(const std::filesystem::path& path) {
  // GPT-2's byte-to-unicode map: printable Latin-1 bytes map to themselves, the others to U+0100 on.
  nlohmann::json vocab = nlohmann::json::object();
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + extra++);
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = b;
  }
  vocab["<|endoftext|>"] = byte_eot;
  const nlohmann::json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", byte_eot}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", false}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}}};
  std::ofstream f(path);
  f << tok.dump(1) << '\n';
  MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::write_byte_tokenizer: cannot write ", path.string());
}

} // namespace llm
} // namespace v0_1
} // namespace membound
