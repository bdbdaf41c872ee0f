// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::write_random_model`: a Llama-shaped Hugging Face folder (config.json +
/// model.safetensors) of random weights, for benchmarks, smoke tests and the notebooks' default
/// model. The weights are not trained: such a model exercises every code path and has real memory
/// traffic, but its text is noise and its retrieval accuracy is chance.
///
/// Matrices are uniform in [-scale, scale) from a 64-bit LCG seeded with `seed` (the same bytes on
/// every platform), norm scales are 1. Cost: O(parameters) time, one pass of writing; the writer
/// holds one copy of the weights until the file is written.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/io/safetensors.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// The shape of a random Llama model (model_type "llama").
struct random_model_spec {
  index_t vocab = 8000, hidden = 256, intermediate = 704, layers = 4, heads = 8, kv_heads = 4, head_dim = 32;
  index_t max_positions = 4096;
  double rope_theta = 10000.0;
  bool tie_embeddings = false;
  dtype type = dtype::f32; ///< f32, bf16 or f16 matrices (norm scales always f32)
  float scale = 0.05f;
  std::uint64_t seed = 0;

  /// Parameters in all (the LM head counted once when tied).
  index_t parameters() const noexcept {
    const index_t attn = hidden * head_dim * (2 * heads + 2 * kv_heads), mlp = 3 * hidden * intermediate;
    return layers * (attn + mlp + 2 * hidden) + vocab * hidden * (tie_embeddings ? 1 : 2) + hidden;
  }
};

/// Writes `dir`/config.json and `dir`/model.safetensors (creating `dir`).
/// @throws config_error for non-positive sizes or an unsupported dtype; io_error when writing fails.
inline void write_random_model(const std::filesystem::path& dir, const random_model_spec& s) {
  MEMBOUND_EXPECTS(s.vocab >= 1 && s.hidden >= 1 && s.intermediate >= 1 && s.layers >= 1 && s.heads >= 1 &&
                       s.kv_heads >= 1 && s.heads % s.kv_heads == 0 && s.head_dim >= 2 && s.head_dim % 2 == 0,
                   config_error, "llm::write_random_model: invalid shape (vocab ", s.vocab, ", hidden ", s.hidden,
                   ", heads ", s.heads, "/", s.kv_heads, ", head_dim ", s.head_dim, ")");
  MEMBOUND_EXPECTS(s.type == dtype::f32 || s.type == dtype::bf16 || s.type == dtype::f16, config_error,
                   "llm::write_random_model: dtype ", dtype_name(s.type), ", expected F32, BF16 or F16");
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"vocab_size", s.vocab},
                        {"hidden_size", s.hidden},
                        {"intermediate_size", s.intermediate},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"num_key_value_heads", s.kv_heads},
                        {"head_dim", s.head_dim},
                        {"max_position_embeddings", s.max_positions},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", s.rope_theta},
                        {"hidden_act", "silu"},
                        {"tie_word_embeddings", s.tie_embeddings},
                        {"torch_dtype", s.type == dtype::f32 ? "float32" : s.type == dtype::bf16 ? "bfloat16" : "float16"}};
  {
    std::ofstream f(dir / "config.json");
    f << cfg.dump(2) << '\n';
    MEMBOUND_EXPECTS(static_cast<bool>(f), io_error, "llm::write_random_model: cannot write ", (dir / "config.json").string());
  }
  std::uint64_t state = s.seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
  const auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (static_cast<float>(state >> 40) * 0x1.0p-24f * 2.0f - 1.0f) * s.scale;
  };
  io::safetensors_writer w;
  const auto mat = [&](const std::string& name, index_t r, index_t c) {
    if (s.type == dtype::f32) {
      array<float> a({r, c}, uninitialized);
      for (float& x : a.span()) x = uniform();
      w.add(name, a.view());
    } else if (s.type == dtype::bf16) {
      array<bf16> a({r, c}, uninitialized);
      for (bf16& x : a.span()) x = bf16::from_float(uniform());
      w.add(name, a.view());
    } else {
      array<f16> a({r, c}, uninitialized);
      for (f16& x : a.span()) x = f16::from_float(uniform());
      w.add(name, a.view());
    }
  };
  const auto ones = [&](const std::string& name, index_t n) {
    array<float> a({n}, uninitialized);
    for (float& x : a.span()) x = 1.0f;
    w.add(name, a.view());
  };
  mat("model.embed_tokens.weight", s.vocab, s.hidden);
  if (!s.tie_embeddings) mat("lm_head.weight", s.vocab, s.hidden);
  ones("model.norm.weight", s.hidden);
  for (index_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    mat(p + "self_attn.q_proj.weight", s.heads * s.head_dim, s.hidden);
    mat(p + "self_attn.k_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    mat(p + "self_attn.v_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    mat(p + "self_attn.o_proj.weight", s.hidden, s.heads * s.head_dim);
    mat(p + "mlp.gate_proj.weight", s.intermediate, s.hidden);
    mat(p + "mlp.up_proj.weight", s.intermediate, s.hidden);
    mat(p + "mlp.down_proj.weight", s.hidden, s.intermediate);
    ones(p + "input_layernorm.weight", s.hidden);
    ones(p + "post_attention_layernorm.weight", s.hidden);
  }
  w.write(dir / "model.safetensors");
}

} // namespace llm
} // namespace v0_1
} // namespace membound
