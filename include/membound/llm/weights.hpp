// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::weights`: the tensors of a Llama-family checkpoint in Hugging Face layout
/// (`model.safetensors`, or shards named by `model.safetensors.index.json`), checked against the
/// config and kept in their stored type (f32, bf16 or f16) as zero-copy views of the mapped files.
///
/// Names (transformers' LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM /
/// Qwen3ForCausalLM): `model.embed_tokens.weight` (V,C); per layer i under `model.layers.i.`:
/// `input_layernorm.weight` (C), `self_attn.{q,k,v,o}_proj.weight` ((H D,C), (G D,C), (G D,C),
/// (C,H D)) with `.bias` where the config says so, `self_attn.{q,k}_norm.weight` (D, qwen3),
/// `post_attention_layernorm.weight` (C), `mlp.{gate,up}_proj.weight` (I,C), `mlp.down_proj.weight`
/// (C,I); `model.norm.weight` (C); `lm_head.weight` (V,C) unless the embeddings are tied.
/// A missing tensor, a wrong shape or an unsupported dtype is a `format_error` naming the tensor,
/// its shape or dtype and what was expected. Norm weights and biases (small) are widened to f32
/// copies; the matrices are not copied (a misaligned tensor is copied once by io::safetensors).

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"
#include "membound/io/hf_config.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/io/safetensors_index.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// A (rows, cols) row-major weight matrix in its stored type, viewing checkpoint memory.
struct matrix {
  dtype type = dtype::f32; ///< f32, bf16 or f16
  const void* data = nullptr;
  index_t rows = 0, cols = 0;

  template <class T>
  view<const T> as() const {
    return view<const T>(static_cast<const T*>(data), {rows, cols});
  }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(rows * cols) * dtype_size(type); }
};

/// The weights of one decoder layer. Empty arrays mean "absent" (no bias, no q/k norm).
struct layer_weights {
  matrix q, k, v, o, gate, up, down;
  array<float> q_bias, k_bias, v_bias, o_bias, gate_bias, up_bias, down_bias;
  array<float> input_norm, post_norm, q_norm, k_norm;
};

/// Every tensor of a checkpoint plus the files that hold them. Move-only (views point into the
/// mapped files it owns).
class weights {
public:
  /// Opens `dir/model.safetensors`, or `dir/model.safetensors.index.json` and its shards, and
  /// checks every tensor the config needs.
  /// @throws io_error when neither file exists or one cannot be read; format_error naming a
  /// missing, misshapen or unsupported tensor (or a malformed file).
  static weights open(const std::filesystem::path& dir, const io::model_config& cfg) {
    weights w;
    const std::filesystem::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index)) {
      w.sharded_.emplace(io::sharded_safetensors::open(index));
    } else if (std::filesystem::exists(single)) {
      w.single_.emplace(io::safetensors::open(single));
    } else {
      throw io_error(::membound::detail::concat(dir.string(), ": neither model.safetensors nor model.safetensors.index.json exists"));
    }
    w.bind(cfg);
    return w;
  }

  /// From one safetensors object already open (tests, embedded models). @throws format_error
  static weights from(io::safetensors file, const io::model_config& cfg) {
    weights w;
    w.single_.emplace(std::move(file));
    w.bind(cfg);
    return w;
  }

  weights(weights&&) noexcept = default;
  weights& operator=(weights&&) noexcept = default;

  const matrix& embed() const noexcept { return embed_; }
  const matrix& lm_head() const noexcept { return lm_head_; } ///< the embedding when tied
  const array<float>& final_norm() const noexcept { return norm_; }
  const std::vector<layer_weights>& layers() const noexcept { return layers_; }
  /// Bytes of every matrix a decode step reads (embedding row aside): the layers and lm_head.
  std::size_t matrix_bytes() const noexcept {
    std::size_t n = lm_head_.bytes();
    for (const layer_weights& l : layers_)
      for (const matrix* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) n += m->bytes();
    return n;
  }

private:
  weights() = default;

  bool has(const std::string& name) const { return single_ ? single_->contains(name) : sharded_->contains(name); }
  const io::tensor_info& info(const std::string& name) const {
    if (!has(name)) throw format_error(::membound::detail::concat("llm::weights: tensor \"", name, "\" is missing"));
    return single_ ? single_->info(name) : sharded_->info(name);
  }
  template <class T>
  view<const T> get(const std::string& name) const {
    return single_ ? single_->template get<T>(name) : sharded_->template get<T>(name);
  }
  template <class T>
  array<T> load(const std::string& name) const {
    return single_ ? single_->template load<T>(name) : sharded_->template load<T>(name);
  }

  void expect_shape(const std::string& name, const io::tensor_info& t, std::initializer_list<index_t> shape) const {
    const bool ok = t.shape.size() == shape.size() && std::equal(t.shape.begin(), t.shape.end(), shape.begin());
    if (!ok)
      throw format_error(::membound::detail::concat("llm::weights: tensor \"", name, "\" has shape ",
                                                    io::detail::shape_string(t.shape), ", expected ",
                                                    io::detail::shape_string(std::span<const index_t>(shape.begin(), shape.size()))));
  }

  matrix mat(const std::string& name, index_t rows, index_t cols) const {
    const io::tensor_info& t = info(name);
    expect_shape(name, t, {rows, cols});
    matrix m;
    m.type = t.type;
    m.rows = rows;
    m.cols = cols;
    switch (t.type) {
    case dtype::f32: m.data = get<float>(name).data(); break;
    case dtype::bf16: m.data = get<bf16>(name).data(); break;
    case dtype::f16: m.data = get<f16>(name).data(); break;
    default:
      throw format_error(::membound::detail::concat("llm::weights: tensor \"", name, "\" has dtype ", dtype_name(t.type),
                                                    ", expected F32, BF16 or F16"));
    }
    return m;
  }
  array<float> vec(const std::string& name, index_t n) const {
    const io::tensor_info& t = info(name);
    expect_shape(name, t, {n});
    if (t.type != dtype::f32 && t.type != dtype::bf16 && t.type != dtype::f16)
      throw format_error(::membound::detail::concat("llm::weights: tensor \"", name, "\" has dtype ", dtype_name(t.type),
                                                    ", expected F32, BF16 or F16"));
    return load<float>(name);
  }
  array<float> opt_vec(bool present, const std::string& name, index_t n) const { return present ? vec(name, n) : array<float>(); }

  void bind(const io::model_config& c) {
    const index_t C = c.hidden_size, V = c.vocab_size, D = c.head_dim, H = c.num_heads, G = c.num_kv_heads,
                  I = c.intermediate_size;
    embed_ = mat("model.embed_tokens.weight", V, C);
    lm_head_ = c.tie_word_embeddings ? embed_ : mat("lm_head.weight", V, C);
    norm_ = vec("model.norm.weight", C);
    layers_.resize(static_cast<std::size_t>(c.num_layers));
    for (index_t i = 0; i < c.num_layers; ++i) {
      const std::string p = ::membound::detail::concat("model.layers.", i, ".");
      layer_weights& l = layers_[static_cast<std::size_t>(i)];
      l.q = mat(p + "self_attn.q_proj.weight", H * D, C);
      l.k = mat(p + "self_attn.k_proj.weight", G * D, C);
      l.v = mat(p + "self_attn.v_proj.weight", G * D, C);
      l.o = mat(p + "self_attn.o_proj.weight", C, H * D);
      l.q_bias = opt_vec(c.qkv_bias, p + "self_attn.q_proj.bias", H * D);
      l.k_bias = opt_vec(c.qkv_bias, p + "self_attn.k_proj.bias", G * D);
      l.v_bias = opt_vec(c.qkv_bias, p + "self_attn.v_proj.bias", G * D);
      l.o_bias = opt_vec(c.o_bias, p + "self_attn.o_proj.bias", C);
      l.q_norm = opt_vec(c.qk_norm, p + "self_attn.q_norm.weight", D);
      l.k_norm = opt_vec(c.qk_norm, p + "self_attn.k_norm.weight", D);
      l.gate = mat(p + "mlp.gate_proj.weight", I, C);
      l.up = mat(p + "mlp.up_proj.weight", I, C);
      l.down = mat(p + "mlp.down_proj.weight", C, I);
      l.gate_bias = opt_vec(c.mlp_bias, p + "mlp.gate_proj.bias", I);
      l.up_bias = opt_vec(c.mlp_bias, p + "mlp.up_proj.bias", I);
      l.down_bias = opt_vec(c.mlp_bias, p + "mlp.down_proj.bias", C);
      l.input_norm = vec(p + "input_layernorm.weight", C);
      l.post_norm = vec(p + "post_attention_layernorm.weight", C);
    }
  }

  std::optional<io::safetensors> single_;
  std::optional<io::sharded_safetensors> sharded_;
  matrix embed_, lm_head_;
  array<float> norm_;
  std::vector<layer_weights> layers_;
};

} // namespace llm
} // namespace v0_1
} // namespace membound
