// SPDX-License-Identifier: MIT
// libFuzzer target for the tokenizer.json reader (llm::tokenizer::parse, tried with and without
// tokenizer_options::assume_nfc). Every input must either parse or throw a membound::error; anything
// else is a bug. For files that parse it encodes a fixed multilingual string, that string with the
// file's first added tokens around it, and a fragment of the input itself (invalid UTF-8 must be a
// format_error), and checks: every id is a known token below vocab_size(); decode never throws, also
// on ids derived from the input bytes; decode(encode(x)) == x whenever the file is lossless by
// construction (every byte has a vocab entry, no Removed split, no prefix space, no lstrip/rstrip,
// added tokens that decode to their own text, a template with one $A).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/llm/tokenizer.hpp"

using namespace membound;
using json = nlohmann::json;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}

/// Whether `p` (a pre_tokenizer, post_processor or one of their Sequences) keeps all text and adds
/// none; `a_count` multiplies the $A counts of the templates met.
bool lossless_component(const json& p, int& a_count) {
  if (!p.is_object()) return true;
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    for (const char* key : {"pretokenizers", "processors"})
      if (p.contains(key))
        for (const json& q : p[key])
          if (!lossless_component(q, a_count)) return false;
    return true;
  }
  if (type == "Split") return p.value("behavior", std::string()) != "Removed";
  if (type == "ByteLevel") return p.contains("add_prefix_space") && p["add_prefix_space"] == false;
  if (type == "TemplateProcessing") {
    int a = 0;
    for (const json& piece : p["single"]) a += piece.contains("Sequence");
    a_count *= a;
  }
  return true;
}

bool lossless(const json& j) {
  const json& vocab = j["model"]["vocab"];
  for (int b = 0; b < 256; ++b) {
    std::string c;
    llm::detail::append_utf8(c, llm::detail::byte_chars()[static_cast<std::size_t>(b)]);
    if (!vocab.contains(c)) return false;
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const json& t : j["added_tokens"]) {
      if (t.value("lstrip", false) || t.value("rstrip", false)) return false;
      const std::string content = t["content"].get<std::string>();
      if (llm::detail::token_bytes(content) != content) return false;
    }
  int a_count = 1;
  return lossless_component(j["pre_tokenizer"], a_count) &&
         (!j.contains("post_processor") || lossless_component(j["post_processor"], a_count)) && a_count == 1;
}

void exercise(const llm::tokenizer& tok, std::string_view input, bool roundtrip, const std::string& specials) {
  const auto valid = [&](const std::vector<std::int32_t>& ids) {
    for (const std::int32_t id : ids) {
      check(id >= 0 && id < tok.vocab_size());
      try {
        (void)tok.id_to_token(id);
      } catch (const lookup_error&) {
        std::abort(); // encode gave an id that names no token
      }
    }
  };
  const std::string fixed =
      "Hello, world! It's 2024: naïve café, Привет мир, 你好世界, 😀👍🏽  \n\t x\u00a0y 12345";
  for (const std::string& x : {fixed, specials + fixed + specials, std::string()}) {
    const std::vector<std::int32_t> ids = tok.encode(x), plain = tok.encode(x, false);
    valid(ids);
    valid(plain);
    (void)tok.decode(ids, true);
    if (roundtrip && x != specials + fixed + specials) check(tok.decode(plain) == x);
  }
  const std::string_view fragment = input.substr(input.size() / 3, 512);
  bool utf8 = true;
  for (std::size_t i = 0; i < fragment.size() && utf8;) {
    const std::size_t n = llm::detail::utf8_seq(fragment, i);
    utf8 = n != 0;
    i += n;
  }
  try {
    const std::vector<std::int32_t> ids = tok.encode(fragment, false);
    check(utf8);
    valid(ids);
    if (roundtrip) check(tok.decode(ids) == fragment);
  } catch (const format_error&) {
    check(!utf8);
  } catch (const budget_error&) { // a pathological regex: PCRE2's match limit, reported
  }
  std::vector<std::int32_t> raw;
  for (std::size_t i = 0; i + 3 < input.size() && raw.size() < 64; i += 4)
    raw.push_back(
        static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<unsigned char>(input[i])) |
                                  static_cast<std::uint32_t>(static_cast<unsigned char>(input[i + 1])) << 8 |
                                  static_cast<std::uint32_t>(static_cast<unsigned char>(input[i + 2])) << 16 |
                                  static_cast<std::uint32_t>(static_cast<unsigned char>(input[i + 3])) << 24) %
        (static_cast<std::uint32_t>(tok.vocab_size()) + 8u));
  (void)llm::utf8_lossy(tok.decode(raw));
  (void)tok.decode(raw, true);
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const bool nfc : {false, true}) {
    llm::tokenizer_options o;
    o.assume_nfc = nfc;
    try {
      const llm::tokenizer tok = llm::tokenizer::parse(text, "tokenizer.json", o);
      const json j = json::parse(text); // it parsed strictly above, so it parses here
      std::string specials;
      if (j.contains("added_tokens") && j["added_tokens"].is_array())
        for (std::size_t i = 0; i < j["added_tokens"].size() && i < 3; ++i)
          specials += j["added_tokens"][i]["content"].get<std::string>();
      exercise(tok, text, lossless(j), specials);
    } catch (const membound::error&) {
    }
  }
  return 0;
}
