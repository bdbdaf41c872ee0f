// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Readers of a Hugging Face model folder's `config.json` and `generation_config.json`
/// for the Llama family (model_type llama, mistral, qwen2, qwen3; SmolLM2 is llama), into plain
/// structs that any domain can read without including llm/.
///
/// Both spellings of the rotary settings are read: the classic one (`rope_theta` plus an optional
/// `rope_scaling` object, as on the Hub) and transformers 5's `rope_parameters` object (which
/// carries `rope_theta` itself). Missing optional keys take the defaults of transformers' config
/// class for that model_type (written below beside each field). Every rejected file is a
/// `config_error` naming the file, the key and the value (quoted through `detail::short_dump`) and
/// what was expected; the JSON itself goes through `io::parse_json` (size cap, depth cap, no
/// duplicate keys). Unknown keys are ignored, as transformers does.
///
/// Checked consistency: positive sizes; num_attention_heads a multiple of num_key_value_heads;
/// head_dim even; hidden_act "silu"; a known rope type with its required parameters in range;
/// vocab_size and the special token ids within [0, 2^31); finite rms_norm_eps > 0.
/// Cost: O(file size).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/io/json.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

/// Largest config.json / generation_config.json accepted (real ones are a few kB).
inline constexpr std::uint64_t hf_config_max_bytes = 4u << 20;

/// Rotary embedding settings (transformers' modeling_rope_utils). Unused fields keep their
/// defaults for the kinds that do not read them.
struct rope_config {
  enum class kind { standard, linear, llama3, yarn };
  kind type = kind::standard;      ///< "default", "linear", "llama3", "yarn"
  double theta = 10000.0;          ///< rope_theta, the base
  double factor = 1.0;             ///< linear, llama3, yarn: context extension factor (yarn: >= 1, default
                                   ///< max_position_embeddings / original_max_position_embeddings)
  double low_freq_factor = 1.0;    ///< llama3
  double high_freq_factor = 4.0;   ///< llama3 (> low_freq_factor)
  double original_max_position_embeddings = 0; ///< llama3, yarn (default: max_position_embeddings)
  double beta_fast = 32.0, beta_slow = 1.0;    ///< yarn
  double mscale = 0.0, mscale_all_dim = 0.0;   ///< yarn (0: absent)
  std::optional<double> attention_factor;      ///< yarn: scales cos and sin; absent: from factor and mscale
  bool truncate = true;                        ///< yarn: floor/ceil the correction range
};

/// The shape and options of a Llama-family decoder.
struct model_config {
  std::string model_type;            ///< "llama", "mistral", "qwen2", "qwen3"
  std::string architecture;          ///< architectures[0] when present, e.g. "Qwen3ForCausalLM"
  std::int64_t vocab_size = 0;       ///< V
  std::int64_t hidden_size = 0;      ///< C
  std::int64_t intermediate_size = 0; ///< the MLP's inner width
  std::int64_t num_layers = 0;       ///< num_hidden_layers
  std::int64_t num_heads = 0;        ///< H, num_attention_heads
  std::int64_t num_kv_heads = 0;     ///< G, num_key_value_heads (default H)
  std::int64_t head_dim = 0;         ///< D (default C / H; qwen3's class default 128)
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  rope_config rope;
  bool tie_word_embeddings = false;  ///< lm_head shares embed_tokens
  bool qkv_bias = false;             ///< q/k/v projections have biases (qwen2: always; llama, qwen3: attention_bias)
  bool o_bias = false;               ///< o_proj has a bias (llama, qwen3: attention_bias)
  bool mlp_bias = false;             ///< gate/up/down have biases (llama: mlp_bias)
  bool qk_norm = false;              ///< RMSNorm over each q and k head before RoPE (qwen3)
  /// Sliding-window attention when one applies (mistral; qwen2 / qwen3 with use_sliding_window):
  /// a query at position p sees the keys at positions p - window + 1 .. p, in the layers from
  /// `sliding_window_first_layer` on (mistral: 0; qwen: max_window_layers, as transformers).
  std::optional<std::int64_t> sliding_window;
  std::int64_t sliding_window_first_layer = 0;
  dtype weight_dtype = dtype::f32;   ///< torch_dtype / dtype (informational; tensors carry their own)
  std::vector<std::int64_t> bos_token_ids, eos_token_ids;

  index_t group() const noexcept { return num_heads / num_kv_heads; }
};

/// Decoding defaults of `generation_config.json` (only the keys membound uses).
struct generation_config {
  std::vector<std::int64_t> bos_token_ids, eos_token_ids;
  std::optional<std::int64_t> pad_token_id;
  bool do_sample = false;
  double temperature = 1.0, top_p = 1.0;
  std::int64_t top_k = 50;
  std::optional<std::int64_t> max_new_tokens;
};

namespace detail {

/// Reads typed values out of one JSON object, naming the file and key in every error.
class json_fields {
public:
  json_fields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

  const nlohmann::json* find(std::string_view key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void fail(std::string_view key, const nlohmann::json& v, std::string_view expected) const {
    throw config_error(::membound::detail::concat(where_, ": \"", key, "\" is ", short_dump(v), ", expected ", expected));
  }
  [[noreturn]] void missing(std::string_view key, std::string_view expected) const {
    throw config_error(::membound::detail::concat(where_, ": \"", key, "\" is missing, expected ", expected));
  }
  std::int64_t integer(std::string_view key, std::int64_t lo, std::int64_t hi, std::optional<std::int64_t> def) const {
    const nlohmann::json* v = find(key);
    const std::string range = ::membound::detail::concat("an integer in [", lo, ", ", hi, "]");
    if (!v) {
      if (!def) missing(key, range);
      return *def;
    }
    if (!v->is_number_integer()) fail(key, *v, range);
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) fail(key, *v, range);
    const std::int64_t x = v->get<std::int64_t>();
    if (x < lo || x > hi) fail(key, *v, range);
    return x;
  }
  double number(std::string_view key, double lo, double hi, std::optional<double> def, bool open_lo = false) const {
    const nlohmann::json* v = find(key);
    const std::string range = ::membound::detail::concat("a number in ", open_lo ? "(" : "[", lo, ", ", hi, "]");
    if (!v) {
      if (!def) missing(key, range);
      return *def;
    }
    if (!v->is_number()) fail(key, *v, range);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (open_lo && x == lo)) fail(key, *v, range);
    return x;
  }
  bool boolean(std::string_view key, bool def) const {
    const nlohmann::json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(key, *v, "true or false");
    return v->get<bool>();
  }
  std::optional<std::string> string(std::string_view key) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, *v, "a string");
    return v->get<std::string>();
  }
  /// An integer or a list of integers (token ids: bos_token_id, eos_token_id), each in [0, 2^31).
  std::vector<std::int64_t> ids(std::string_view key) const {
    const nlohmann::json* v = find(key);
    std::vector<std::int64_t> out;
    if (!v) return out;
    const auto one = [&](const nlohmann::json& e) {
      if (!e.is_number_integer() || e.get<std::int64_t>() < 0 || e.get<std::int64_t>() > INT32_MAX)
        fail(key, *v, "a token id in [0, 2^31) or a list of them");
      out.push_back(e.get<std::int64_t>());
    };
    if (v->is_array()) {
      for (const auto& e : *v) one(e);
    } else {
      one(*v);
    }
    return out;
  }
  const std::string& where() const noexcept { return where_; }

private:
  const nlohmann::json& j_;
  std::string where_;
};

inline dtype torch_dtype_of(const json_fields& f) {
  std::optional<std::string> s = f.string("dtype");
  const char* key = "dtype";
  if (!s) {
    s = f.string("torch_dtype");
    key = "torch_dtype";
  }
  if (!s || *s == "float32") return dtype::f32;
  if (*s == "bfloat16") return dtype::bf16;
  if (*s == "float16") return dtype::f16;
  f.fail(key, nlohmann::json(*s), "\"float32\", \"bfloat16\" or \"float16\"");
}

inline rope_config parse_rope(const json_fields& f, std::int64_t max_positions) {
  rope_config r;
  // transformers 5 writes rope_parameters (with rope_theta inside); the Hub's files rope_theta + rope_scaling.
  const nlohmann::json* params = f.find("rope_parameters");
  const char* obj_key = "rope_parameters";
  if (!params) {
    params = f.find("rope_scaling");
    obj_key = "rope_scaling";
  }
  r.theta = f.number("rope_theta", 1.0, 1e12, 10000.0, true);
  if (!params) return r;
  if (!params->is_object()) f.fail(obj_key, *params, "an object");
  const json_fields p(*params, ::membound::detail::concat(f.where(), ": ", obj_key));
  if (std::string_view(obj_key) == "rope_parameters") r.theta = p.number("rope_theta", 1.0, 1e12, r.theta, true);
  std::optional<std::string> type = p.string("rope_type");
  if (!type) type = p.string("type"); // the older spelling
  const std::string t = type.value_or("default");
  const double big = 1e9;
  if (t == "default") {
    r.type = rope_config::kind::standard;
  } else if (t == "linear") {
    r.type = rope_config::kind::linear;
    r.factor = p.number("factor", 0.0, big, std::nullopt, true);
  } else if (t == "llama3") {
    r.type = rope_config::kind::llama3;
    r.factor = p.number("factor", 0.0, big, std::nullopt, true);
    r.low_freq_factor = p.number("low_freq_factor", 0.0, big, std::nullopt, true);
    r.high_freq_factor = p.number("high_freq_factor", 0.0, big, std::nullopt, true);
    r.original_max_position_embeddings =
        static_cast<double>(p.integer("original_max_position_embeddings", 1, INT32_MAX, max_positions));
    if (!(r.high_freq_factor > r.low_freq_factor))
      p.fail("high_freq_factor", nlohmann::json(r.high_freq_factor),
             ::membound::detail::concat("a number > low_freq_factor (", r.low_freq_factor, ")"));
  } else if (t == "yarn") {
    r.type = rope_config::kind::yarn;
    r.original_max_position_embeddings =
        static_cast<double>(p.integer("original_max_position_embeddings", 1, INT32_MAX, max_positions));
    // transformers: without a factor, the ratio of the two context lengths
    r.factor = p.number("factor", 1.0, big, static_cast<double>(max_positions) / r.original_max_position_embeddings);
    r.beta_fast = p.number("beta_fast", 0.0, big, 32.0, true);
    r.beta_slow = p.number("beta_slow", 0.0, big, 1.0, true);
    r.mscale = p.number("mscale", 0.0, big, 0.0);
    r.mscale_all_dim = p.number("mscale_all_dim", 0.0, big, 0.0);
    if (p.find("attention_factor")) r.attention_factor = p.number("attention_factor", 0.0, big, std::nullopt, true);
    r.truncate = p.boolean("truncate", true);
  } else {
    p.fail("rope_type", nlohmann::json(t), "\"default\", \"linear\", \"llama3\" or \"yarn\"");
  }
  return r;
}

} // namespace detail

/// Parses a config.json text; `where` names it in messages.
/// @throws config_error naming the key and value (see the file comment); format_error from
/// parse_json for text that is not strict JSON or exceeds `hf_config_max_bytes`.
inline model_config parse_model_config(std::string_view text, const std::string& where) {
  const nlohmann::json root = parse_json(text, where, hf_config_max_bytes);
  if (!root.is_object()) throw config_error(::membound::detail::concat(where, ": expected a JSON object, got ", detail::short_dump(root)));
  const detail::json_fields f(root, where);
  model_config c;
  const std::optional<std::string> mt = f.string("model_type");
  if (!mt) f.missing("model_type", "\"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  c.model_type = *mt;
  const bool llama = c.model_type == "llama", mistral = c.model_type == "mistral", qwen2 = c.model_type == "qwen2",
             qwen3 = c.model_type == "qwen3";
  if (!(llama || mistral || qwen2 || qwen3)) f.fail("model_type", nlohmann::json(c.model_type), "\"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  if (const nlohmann::json* a = f.find("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string()) f.fail("architectures", *a, "a list of class names");
    c.architecture = (*a)[0].get<std::string>();
    if (c.architecture.size() < 11 || c.architecture.compare(c.architecture.size() - 11, 11, "ForCausalLM") != 0)
      f.fail("architectures", *a, "a ...ForCausalLM class (a decoder with its language-model head)");
  }
  constexpr std::int64_t big = std::int64_t(1) << 31;
  c.vocab_size = f.integer("vocab_size", 1, big - 1, std::nullopt);
  c.hidden_size = f.integer("hidden_size", 1, big - 1, std::nullopt);
  c.intermediate_size = f.integer("intermediate_size", 1, big - 1, std::nullopt);
  c.num_layers = f.integer("num_hidden_layers", 1, 1 << 16, std::nullopt);
  c.num_heads = f.integer("num_attention_heads", 1, 1 << 16, std::nullopt);
  c.num_kv_heads = f.integer("num_key_value_heads", 1, 1 << 16, c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    throw config_error(::membound::detail::concat(where, ": num_attention_heads ", c.num_heads,
                                                  " is not a multiple of num_key_value_heads ", c.num_kv_heads));
  const std::optional<std::int64_t> def_head =
      qwen3 ? std::optional<std::int64_t>(128)
            : (c.hidden_size % c.num_heads == 0 ? std::optional<std::int64_t>(c.hidden_size / c.num_heads) : std::nullopt);
  c.head_dim = f.integer("head_dim", 2, 1 << 16, def_head);
  if (c.head_dim % 2 != 0) f.fail("head_dim", nlohmann::json(c.head_dim), "an even number (RoPE rotates pairs)");
  c.max_position_embeddings = f.integer("max_position_embeddings", 1, big - 1, llama ? 2048 : (mistral ? 4096 * 32 : 32768));
  c.rms_norm_eps = f.number("rms_norm_eps", 0.0, 1.0, 1e-6, true);
  c.rope = detail::parse_rope(f, c.max_position_embeddings);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  if (const std::optional<std::string> act = f.string("hidden_act"); act && *act != "silu")
    f.fail("hidden_act", nlohmann::json(*act), "\"silu\" (SwiGLU)");
  if (llama || qwen3) {
    c.qkv_bias = c.o_bias = f.boolean("attention_bias", false);
  } else if (qwen2) {
    c.qkv_bias = true;
  }
  if (llama) c.mlp_bias = f.boolean("mlp_bias", false);
  c.qk_norm = qwen3;
  if (mistral) {
    if (f.find("sliding_window")) c.sliding_window = f.integer("sliding_window", 1, big - 1, std::nullopt);
  } else if ((qwen2 || qwen3) && f.boolean("use_sliding_window", false)) {
    c.sliding_window = f.integer("sliding_window", 1, big - 1, 4096);
    c.sliding_window_first_layer = f.integer("max_window_layers", 0, 1 << 16, 28);
  }
  c.weight_dtype = detail::torch_dtype_of(f);
  c.bos_token_ids = f.ids("bos_token_id");
  c.eos_token_ids = f.ids("eos_token_id");
  return c;
}

namespace detail {
/// Maps a config file and hands its text to `parse` (size checked before anything is read).
template <class Parse>
auto with_config_text(const std::filesystem::path& path, Parse parse) {
  const mapped_file file = mapped_file::open(path, load_mode::mmap);
  const auto raw = file.bytes();
  MEMBOUND_EXPECTS(raw.size() <= hf_config_max_bytes, config_error, path.string(), ": ", raw.size(),
                   " bytes, expected at most ", hf_config_max_bytes);
  return parse(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()), path.string());
}
} // namespace detail

/// Reads `path` (a config.json) and parses it. @throws io_error, format_error, config_error.
inline model_config load_model_config(const std::filesystem::path& path) {
  return detail::with_config_text(path, [](std::string_view text, const std::string& where) {
    return parse_model_config(text, where);
  });
}

/// Parses a generation_config.json text. @throws config_error, format_error.
inline generation_config parse_generation_config(std::string_view text, const std::string& where) {
  const nlohmann::json root = parse_json(text, where, hf_config_max_bytes);
  if (!root.is_object()) throw config_error(::membound::detail::concat(where, ": expected a JSON object, got ", detail::short_dump(root)));
  const detail::json_fields f(root, where);
  generation_config g;
  g.bos_token_ids = f.ids("bos_token_id");
  g.eos_token_ids = f.ids("eos_token_id");
  if (f.find("pad_token_id")) {
    const std::vector<std::int64_t> pad = f.ids("pad_token_id");
    if (pad.size() != 1) f.fail("pad_token_id", *f.find("pad_token_id"), "one token id");
    g.pad_token_id = pad[0];
  }
  g.do_sample = f.boolean("do_sample", false);
  g.temperature = f.number("temperature", 0.0, 1e6, 1.0);
  g.top_p = f.number("top_p", 0.0, 1.0, 1.0);
  g.top_k = f.integer("top_k", 0, std::int64_t(1) << 31, 50);
  if (f.find("max_new_tokens")) g.max_new_tokens = f.integer("max_new_tokens", 0, std::int64_t(1) << 31, std::nullopt);
  return g;
}

/// Reads and parses a generation_config.json. @throws io_error, format_error, config_error.
inline generation_config load_generation_config(const std::filesystem::path& path) {
  return detail::with_config_text(path, [](std::string_view text, const std::string& where) {
    return parse_generation_config(text, where);
  });
}

} // namespace io
} // namespace v0_1
} // namespace membound
