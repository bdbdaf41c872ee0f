// SPDX-License-Identifier: MIT
// llm::tokenizer against Hugging Face tokenizers 0.22.2: four trained byte-level BPE tokenizers
// (tests/fixtures/tokenizer, written by tools/make_tokenizer_fixtures.py) with the library's ids for
// held-out text (with and without special tokens), its decodes of random id lists (invalid UTF-8
// included), its ids for two 100 kB one-word lines, and its ids for 122 Split/Digits variants
// (splits.txt); round trips on random UTF-8 of every plane; malformed files as typed errors.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "membound/io/json.hpp"
#include "membound/llm/tokenizer.hpp"

using namespace membound;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path fixtures = fs::path(MEMBOUND_FIXTURES_DIR) / "tokenizer";
const char* const names[] = {"gpt2", "llama3", "qwen2", "options"};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// One JSON value per line, parsed through io::parse_json.
std::vector<json> read_lines(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_file(p));
  std::string line;
  while (std::getline(in, line)) out.push_back(io::parse_json(line, p.string(), 1 << 20));
  return out;
}

std::vector<std::int32_t> ids_of(const json& j) { return j.get<std::vector<std::int32_t>>(); }

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

llm::tokenizer load(const std::string& name) {
  llm::tokenizer_options o;
  o.assume_nfc = name == "qwen2";
  return llm::tokenizer::load(fixtures / name / "tokenizer.json", o);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The fixture script's LCG letter line: pseudo-random chars of `alphabet` up to `n_bytes` bytes.
std::string lcg_text(std::size_t n_bytes, const std::string& alphabet) {
  std::vector<std::string> chars;
  for (std::size_t i = 0; i < alphabet.size();) {
    const std::size_t n = llm::detail::utf8_seq(alphabet, i);
    chars.push_back(alphabet.substr(i, n));
    i += n;
  }
  std::uint64_t x = 12345;
  std::string out;
  for (;;) {
    x = (x * 1103515245u + 12345u) % (1u << 31);
    const std::string& c = chars[(x >> 16) % chars.size()];
    if (out.size() + c.size() > n_bytes) return out;
    out += c;
  }
}

std::uint64_t fnv1a64(const std::vector<std::int32_t>& ids) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const std::int32_t id : ids)
    for (int k = 0; k < 4; ++k) h = (h ^ ((static_cast<std::uint32_t>(id) >> (8 * k)) & 0xFFu)) * 0x100000001B3ull;
  return h;
}

/// Random valid UTF-8: code points of every plane (no surrogates), some ASCII and spaces.
std::string random_utf8(std::mt19937_64& rng, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t c = 0;
    switch (rng() % 6) {
    case 0: c = 0x20 + rng() % 0x5F; break;
    case 1: c = rng() % 0x20; break;
    case 2: c = 0x80 + rng() % 0x780; break;
    case 3: c = 0x800 + rng() % 0xF800; break;
    case 4: c = 0x10000 + rng() % 0x100000; break;
    default: c = " \t\n"[rng() % 3]; break;
    }
    if (c >= 0xD800 && c <= 0xDFFF) c = 'x';
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6)), s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12)), s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18)), s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)), s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return s;
}

/// A small valid tokenizer.json as a JSON value: the 256 byte chars, merges for "Ġt", "he", "Ġthe".
json tiny() {
  json vocab = json::object();
  std::int32_t n = 0;
  for (int b = 0; b < 256; ++b) {
    std::string c;
    llm::detail::append_utf8(c, llm::detail::byte_chars()[static_cast<std::size_t>(b)]);
    vocab[c] = n++;
  }
  for (const char* t : {"Ġt", "he", "Ġthe"}) vocab[t] = n++;
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", json::array({{{"id", n},
                                     {"content", "<|eot|>"},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", json::array({json::array({"Ġ", "t"}), json::array({"h", "e"}), json::array({"Ġt", "he"})})}}}};
  return j;
}

llm::tokenizer parse(const json& j, const llm::tokenizer_options& o = {}) {
  return llm::tokenizer::parse(j.dump(), "tiny.json", o);
}

} // namespace

TEST_CASE("llm::tokenizer encodes held-out text exactly as tokenizers 0.22.2") {
  for (const std::string name : names) {
    CAPTURE(name);
    const llm::tokenizer tok = load(name);
    const std::vector<json> cases = read_lines(fixtures / name / "cases.txt");
    REQUIRE(cases.size() > 400);
    std::size_t bad = 0, bytes = 0;
    double t = 0;
    for (const json& c : cases) {
      const std::string text = c.at("text").get<std::string>();
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<std::int32_t> ids = tok.encode(text);
      t += seconds_since(t0);
      bytes += text.size();
      const std::vector<std::int32_t> plain = tok.encode(text, false);
      const bool ok = ids == ids_of(c.at("ids")) &&
                      plain == ids_of(c.contains("ids_no_special") ? c.at("ids_no_special") : c.at("ids"));
      if (!ok && ++bad <= 3) {
        CAPTURE(c.dump());
        CHECK(ids == ids_of(c.at("ids")));
      }
    }
    CHECK(bad == 0);
    MESSAGE(name << ": " << cases.size() << " lines, " << bytes << " bytes, encode " << bytes / t / 1e6 << " MB/s");
  }
}

TEST_CASE("llm::tokenizer decodes to the library's bytes, and utf8_lossy to its string") {
  for (const std::string name : names) {
    CAPTURE(name);
    const llm::tokenizer tok = load(name);
    const std::vector<json> cases = read_lines(fixtures / name / "decode.txt");
    REQUIRE(cases.size() == 300);
    for (const json& c : cases) {
      CAPTURE(c.dump());
      const std::vector<std::int32_t> ids = ids_of(c.at("ids"));
      const std::string raw = tok.decode(ids), raw_skip = tok.decode(ids, true);
      CHECK(raw == unhex(c.at("hex").get<std::string>()));
      CHECK(raw_skip == unhex(c.at("hex_skip").get<std::string>()));
      CHECK(llm::utf8_lossy(raw) == c.at("text").get<std::string>());
      CHECK(llm::utf8_lossy(raw_skip) == c.at("text_skip").get<std::string>());
    }
  }
}

TEST_CASE("llm::tokenizer round trips decode(encode(x)) == x byte for byte") {
  std::mt19937_64 rng(20260701);
  std::vector<std::string> texts;
  for (int i = 0; i < 2000; ++i) texts.push_back(random_utf8(rng, rng() % 40));
  texts.push_back(random_utf8(rng, 20000));
  for (const std::string name : {"gpt2", "llama3", "qwen2"}) { // "options" strips, removes and adds text
    CAPTURE(name);
    const llm::tokenizer tok = load(name);
    std::vector<std::string> all = texts;
    for (const json& c : read_lines(fixtures / name / "cases.txt")) all.push_back(c.at("text").get<std::string>());
    const std::string prefix = tok.decode(tok.encode("")); // the template's tokens: "<|begin_of_text|>" or ""
    std::size_t bad = 0;
    for (const std::string& x : all) {
      const std::string plain = tok.decode(tok.encode(x, false)), full = tok.decode(tok.encode(x, true));
      if ((plain != x || full != prefix + x) && ++bad <= 3) {
        CHECK(plain == x);
        CHECK(full == prefix + x);
      }
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("llm::tokenizer encodes 100 kB one-word lines like the library, in well under a second") {
  const std::pair<const char*, std::string> lines[] = {
      {"ascii", lcg_text(100000, "abcdefghijklmnopqrstuvwxyz")},
      {"mixed",
       lcg_text(100000, "aeiouxyz\xc3\xa9\xc3\xbc\xc3\x9f\xd0\xb6\xd1\x89\xd1\x8f\xce\xbb\xcf\x80\xe4\xb8\xad\xe6\x96"
                        "\x87\xe5\xad\x97\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xed\x95\x9c\xea\xb5\xad\xd8\xa7")}};
  for (const std::string name : names) {
    const llm::tokenizer tok = load(name);
    const json expected = io::parse_json(read_file(fixtures / name / "long.json"), "long.json", 1 << 16);
    for (const auto& [key, text] : lines) {
      const std::string what = name + " " + key;
      CAPTURE(what);
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<std::int32_t> ids = tok.encode(text);
      const double t = seconds_since(t0);
      const json& e = expected.at(key);
      REQUIRE(ids.size() == e.at("n").get<std::size_t>());
      CHECK(std::vector<std::int32_t>(ids.begin(), ids.begin() + 16) == ids_of(e.at("head")));
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(ids)));
      CHECK(std::string(hex) == e.at("fnv1a64").get<std::string>());
      if (std::string(name) != "options") CHECK(tok.decode(ids, true) == text);
      CHECK(t < 1.0);
      MESSAGE(what << ": " << text.size() << " bytes -> " << ids.size() << " ids in " << t * 1e3 << " ms");
    }
  }
}

TEST_CASE("llm::tokenizer edge cases: empty text, only special tokens, unknown ids, lookups") {
  const llm::tokenizer gpt2 = load("gpt2"), llama3 = load("llama3"), qwen2 = load("qwen2");
  CHECK(gpt2.encode("").empty());
  const std::int32_t bos = *llama3.token_to_id("<|begin_of_text|>");
  CHECK(llama3.encode("") == std::vector<std::int32_t>{bos});
  CHECK(llama3.encode("", false).empty());
  CHECK(llama3.encode("<|begin_of_text|><|eot_id|>") ==
        std::vector<std::int32_t>{bos, bos, *llama3.token_to_id("<|eot_id|>")});
  CHECK(llama3.decode(llama3.encode("<|begin_of_text|>hi<|eot_id|>"), true) == "hi");
  CHECK(llama3.is_special(bos));
  CHECK(llama3.vocab_size() == *llama3.token_to_id("<|python_tag|>") + 1);
  // Qwen2's non-special added token survives skip_special_tokens
  const std::vector<std::int32_t> q = qwen2.encode("<|im_start|><tool_call>x</tool_call><|im_end|>");
  CHECK(q.size() == 5);
  CHECK(qwen2.decode(q, true) == "<tool_call>x</tool_call>");
  CHECK_FALSE(qwen2.is_special(*qwen2.token_to_id("<tool_call>")));
  // unknown and negative ids are skipped, as the library skips unknown ids
  const std::vector<std::int32_t> odd = {-1, 1 << 30, gpt2.vocab_size(), *gpt2.token_to_id("a")};
  CHECK(gpt2.decode(odd) == "a");
  CHECK(gpt2.id_to_token(*gpt2.token_to_id("Ġthe")) == "Ġthe");
  CHECK_THROWS_AS((void)gpt2.id_to_token(-5), lookup_error);
  CHECK_FALSE(gpt2.is_special(-5));
  CHECK_FALSE(gpt2.token_to_id("no such token").has_value());
  // invalid UTF-8 is rejected with its byte offset
  for (const std::string& bad : {std::string("ab\xff"), std::string("\xc0\x80"), std::string("x\xed\xa0\x80"),
                                 std::string("\xf4\x90\x80\x80"), std::string("abc\xe2\x82")}) {
    CAPTURE(bad);
    CHECK_THROWS_AS((void)gpt2.encode(bad), format_error);
  }
  CHECK_THROWS_WITH_AS((void)gpt2.encode("abc\xe2\x82"), doctest::Contains("byte offset 3"), format_error);
  // U+FFFD per maximal ill-formed subpart (Unicode / WHATWG, Rust from_utf8_lossy)
  CHECK(llm::utf8_lossy("\xe6\x97"
                        "a\xff\xfe") == "\xef\xbf\xbd"
                                        "a\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(llm::utf8_lossy("\xf0\x9f\x98") == "\xef\xbf\xbd");
  CHECK(llm::utf8_lossy("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(llm::utf8_lossy("ok \xe2\x82\xac") == "ok \xe2\x82\xac");
  // copies share the compiled regexes and encode alike
  const llm::tokenizer copy = llama3;
  CHECK(copy.encode("Hello world 12345") == llama3.encode("Hello world 12345"));
}

TEST_CASE("llm::tokenizer splits like the library: every Split behaviour, invert, empty matches, Digits") {
  // splits.txt: ids of a merge-free tokenizer (id = byte value) whose pre-tokenizer is
  // Sequence[P, ByteLevel(add_prefix_space)]: the space put before each piece shows where P split
  json j = tiny();
  j["model"]["merges"] = json::array();
  j["added_tokens"] = json::array();
  j["model"]["vocab"] = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    llm::detail::append_utf8(ch, llm::detail::byte_chars()[static_cast<std::size_t>(b)]);
    j["model"]["vocab"][ch] = b;
  }
  std::map<std::string, llm::tokenizer> made; // one tokenizer per pre-tokenizer
  std::size_t n = 0;
  for (const json& c : read_lines(fixtures / "splits.txt")) {
    CAPTURE(c.dump());
    const std::string key = c.at("pre_tokenizer").dump();
    if (!made.count(key)) {
      j["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {c.at("pre_tokenizer"),
            {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", false}}}}};
      made.emplace(key, parse(j));
    }
    CHECK(made.at(key).encode(c.at("text").get<std::string>()) == ids_of(c.at("ids")));
    ++n;
  }
  CHECK(made.size() == 122);
  CHECK(n == 122 * 12);
}

TEST_CASE("llm::tokenizer reports a regex that exhausts PCRE2's match limit as budget_error") {
  json j = tiny();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(\\w+\\s?)+$"}}}, {"behavior", "Isolated"}, {"invert", false}},
        j["pre_tokenizer"]}}};
  const llm::tokenizer t = parse(j);
  CHECK(t.encode("short words here").size() > 0);
  CHECK_THROWS_AS((void)t.encode(std::string(40, 'a') + " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"), budget_error);
}

TEST_CASE("llm::tokenizer reads both merges formats and ignore_merges on a hand-made file") {
  json j = tiny();
  const llm::tokenizer a = parse(j);
  const std::int32_t the = *a.token_to_id("Ġthe");
  CHECK(a.encode(" the") == std::vector<std::int32_t>{the});
  CHECK(a.encode(" the<|eot|>") == std::vector<std::int32_t>{the, *a.token_to_id("<|eot|>")});
  json legacy = j;
  legacy["model"]["merges"] = {"#version: 0.2", "Ġ t", "h e", "Ġt he"};
  CHECK(parse(legacy).encode(" the the") == a.encode(" the the"));
  // ignore_merges: a vocab entry that merges do not reach is one id only with the flag
  j["model"]["vocab"]["Ġtx"] = 259;
  j["added_tokens"][0]["id"] = 260;
  CHECK(parse(j).encode(" tx").size() == 2);
  j["model"]["ignore_merges"] = true;
  CHECK(parse(j).encode(" tx") == std::vector<std::int32_t>{259});
}

TEST_CASE("llm::tokenizer rejects malformed or unsupported tokenizer.json with typed errors") {
  CHECK_NOTHROW(parse(tiny()));
  const std::string text = tiny().dump();
  for (std::size_t cut : {std::size_t(0), std::size_t(1), text.size() / 3, text.size() - 1})
    CHECK_THROWS_AS((void)llm::tokenizer::parse(text.substr(0, cut), "cut.json"), format_error);
  const std::string real = read_file(fixtures / "llama3" / "tokenizer.json");
  CHECK_THROWS_AS((void)llm::tokenizer::parse(real.substr(0, real.size() / 2), "half.json"), format_error);
  CHECK_THROWS_AS((void)llm::tokenizer::load(fixtures / "no_such_dir" / "tokenizer.json"), io_error);

  struct bad_case {
    const char* what;
    json (*edit)(json);
    const char* message;
  };
  const bad_case bad[] = {
      {"not an object", [](json) { return json::array(); }, "expected a JSON object"},
      {"missing model",
       [](json j) {
         j.erase("model");
         return j;
       },
       "\"model\" is missing"},
      {"unknown model type",
       [](json j) {
         j["model"]["type"] = "WordPiece";
         return j;
       },
       "WordPiece"},
      {"vocab not an object",
       [](json j) {
         j["model"]["vocab"] = json::array({1, 2});
         return j;
       },
       "\"vocab\""},
      {"id out of range",
       [](json j) {
         j["model"]["vocab"]["Ġthe"] = -3;
         return j;
       },
       "expected an id"},
      {"id too large",
       [](json j) {
         j["model"]["vocab"]["Ġthe"] = 4294967296ll;
         return j;
       },
       "expected an id"},
      {"id not an integer",
       [](json j) {
         j["model"]["vocab"]["Ġthe"] = "7";
         return j;
       },
       "expected an id"},
      {"duplicate id",
       [](json j) {
         j["model"]["vocab"]["Ġthe"] = 5;
         return j;
       },
       "id 5 is given to both"},
      {"merge of an unknown token",
       [](json j) {
         j["model"]["merges"][1] = {"h", "zz"};
         return j;
       },
       "\"zz\" is not in the vocab"},
      {"merge result unknown",
       [](json j) {
         j["model"]["merges"][1] = {"h", "h"};
         return j;
       },
       "\"hh\" is not in the vocab"},
      {"malformed merge",
       [](json j) {
         j["model"]["merges"][1] = {"h"};
         return j;
       },
       "merges[1]"},
      {"legacy merge with two spaces",
       [](json j) {
         j["model"]["merges"] = {"Ġ t", "h e x"};
         return j;
       },
       "one space"},
      {"mixed merge formats",
       [](json j) {
         j["model"]["merges"][0] = "Ġ t";
         return j;
       },
       "merges[1]"},
      {"missing merges",
       [](json j) {
         j["model"].erase("merges");
         return j;
       },
       "\"merges\" is missing"},
      {"byte_fallback",
       [](json j) {
         j["model"]["byte_fallback"] = true;
         return j;
       },
       "byte_fallback"},
      {"dropout",
       [](json j) {
         j["model"]["dropout"] = 0.1;
         return j;
       },
       "dropout"},
      {"unknown unk_token",
       [](json j) {
         j["model"]["unk_token"] = "<unk>";
         return j;
       },
       "unk_token"},
      {"version",
       [](json j) {
         j["version"] = "2.0";
         return j;
       },
       "\"version\""},
      {"truncation",
       [](json j) {
         j["truncation"] = {{"max_length", 8}};
         return j;
       },
       "truncation"},
      {"bad regex",
       [](json j) {
         j["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"Regex", "(\\p{L}+"}}}, {"behavior", "Isolated"}, {"invert", false}};
         return j;
       },
       "(\\p{L}+"},
      {"Split without ByteLevel",
       [](json j) {
         j["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}, {"invert", false}};
         return j;
       },
       "ending in ByteLevel"},
      {"bad behavior",
       [](json j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}, {"invert", false}},
               j["pre_tokenizer"]}}};
         return j;
       },
       "Sideways"},
      {"ByteLevel not last",
       [](json j) {
         j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {j["pre_tokenizer"], {{"type", "Digits"}}}}};
         return j;
       },
       "after ByteLevel"},
      {"Metaspace",
       [](json j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
         return j;
       },
       "Metaspace"},
      {"no pre_tokenizer",
       [](json j) {
         j["pre_tokenizer"] = nullptr;
         return j;
       },
       "pre_tokenizer"},
      {"NFC without assume_nfc",
       [](json j) {
         j["normalizer"] = {{"type", "NFC"}};
         return j;
       },
       "assume_nfc"},
      {"NFKC",
       [](json j) {
         j["normalizer"] = {{"type", "NFKC"}};
         return j;
       },
       "NFKC"},
      {"no decoder",
       [](json j) {
         j["decoder"] = nullptr;
         return j;
       },
       "decoder"},
      {"WordPiece decoder",
       [](json j) {
         j["decoder"] = {{"type", "WordPiece"}};
         return j;
       },
       "decoder"},
      {"added id mismatch",
       [](json j) {
         j["added_tokens"][0]["id"] = 400;
         return j;
       },
       "gives it 259"},
      {"added id of a vocab token",
       [](json j) {
         j["added_tokens"][0]["content"] = "he";
         return j;
       },
       "gives it 257"},
      {"added token twice with different flags",
       [](json j) {
         j["added_tokens"].push_back(j["added_tokens"][0]);
         j["added_tokens"][1]["special"] = false;
         return j;
       },
       "listed twice with different flags"},
      {"empty added token",
       [](json j) {
         j["added_tokens"][0]["content"] = "";
         return j;
       },
       "content"},
      {"template with unknown token",
       [](json j) {
         j["post_processor"] = {
             {"type", "TemplateProcessing"},
             {"single",
              {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
             {"special_tokens", json::object()}};
         return j;
       },
       "<s>"},
      {"Bert post-processor",
       [](json j) {
         j["post_processor"] = {{"type", "BertProcessing"}};
         return j;
       },
       "BertProcessing"},
  };
  for (const bad_case& b : bad) {
    CAPTURE(b.what);
    CHECK_THROWS_WITH_AS(parse(b.edit(tiny())), doctest::Contains(b.message), config_error);
  }
  json repeat = tiny(); // an exact repeat of an added token is ignored, as the library does
  repeat["added_tokens"].push_back(repeat["added_tokens"][0]);
  CHECK(parse(repeat).encode("<|eot|>") == std::vector<std::int32_t>{259});
  llm::tokenizer_options nfc;
  nfc.assume_nfc = true;
  json n = tiny();
  n["normalizer"] = {{"type", "NFC"}};
  CHECK(parse(n, nfc).encode(" the") == parse(tiny()).encode(" the"));
}
