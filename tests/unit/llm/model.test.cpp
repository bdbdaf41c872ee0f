// SPDX-License-Identifier: MIT
// llm::model against Hugging Face transformers: tiny random checkpoints of every supported
// architecture and option (tests/fixtures/llm, written by tools/make_llm_fixtures.py) with the
// reference's prefill logits, batched logits, greedy tokens and per-step decode logits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "membound/io/hf_config.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/llm/model.hpp"
#include "llm_fixtures.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

using llm_test::fixtures;

/// max |a - ref| / max |ref| over all elements.
double rel_err(view<const float> a, view<const float> ref) {
  REQUIRE(a.size() == ref.size());
  double d = 0, m = 0;
  const auto as = a.span();
  const auto rs = ref.span();
  for (std::size_t i = 0; i < as.size(); ++i) {
    d = std::max(d, static_cast<double>(std::abs(as[i] - rs[i])));
    m = std::max(m, static_cast<double>(std::abs(rs[i])));
  }
  return d / m;
}

std::int32_t argmax(const float* p, index_t n) { return static_cast<std::int32_t>(std::max_element(p, p + n) - p); }

} // namespace

TEST_CASE("llm::model matches transformers on every fixture architecture") {
  const char* names[] = {"llama_gqa", "llama_tied_bf16", "llama_rope_linear", "llama_rope_llama3", "llama_rope_yarn",
                         "qwen2",     "qwen3",           "qwen3_bf16",        "mistral",           "llama_f16",
                         "mistral_window"};
  for (const char* name : names) {
    CAPTURE(name);
    const fs::path dir = fixtures / name;
    const llm::model m = llm::model::load(dir);
    const io::safetensors ref = io::safetensors::open(dir / "reference.safetensors");
    const index_t V = m.config().vocab_size;

    // prefill: every row's logits, in one chunk and in chunks of 4 (the cache prefix path)
    const std::vector<std::int32_t> prompt = llm_test::ids(ref, "prompt");
    const array<float> want = ref.load<float>("prefill_logits");
    const index_t T = static_cast<index_t>(prompt.size());
    for (index_t chunk : {index_t(512), index_t(4)}) {
      CAPTURE(chunk);
      llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4, .chunk = chunk});
      array<float> got({T, V});
      m.prefill(s, 0, prompt, got.view());
      CHECK(rel_err(got.view(), want.view()) <= 1e-4);
      CHECK(s.position(0) == T);
    }

    // greedy decode, step by step: logits per step and the tokens themselves
    const std::vector<std::int32_t> gen = llm_test::ids(ref, "generated");
    const array<float> dec = ref.load<float>("decode_logits");
    llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4});
    array<float> row({1, V});
    m.prefill(s, 0, prompt, row.view());
    std::vector<std::int32_t> got_ids;
    double worst = 0;
    for (std::size_t i = 0; i < gen.size(); ++i) {
      worst = std::max(worst, rel_err(row.view(), view<const float>(dec.data() + static_cast<index_t>(i) * V, {1, V})));
      got_ids.push_back(argmax(row.data(), V));
      const std::int32_t next = gen[i]; // teacher-force the reference token so a tie cannot derail the rest
      m.decode(s, std::span<const std::int32_t>(&next, 1), row.view());
    }
    CHECK(worst <= 1e-4);
    CHECK(got_ids == gen);

    // a batch of two independent sequences, prefilled separately, then one decode step together
    const array<std::int64_t> bp = ref.load<std::int64_t>("batch_prompt");
    const array<float> bl = ref.load<float>("batch_logits");
    const index_t B = bp.extent(0), L = bp.extent(1);
    llm::state sb = m.make_state({.batch = B, .max_tokens = 32, .page_tokens = 4, .chunk = 3});
    for (index_t b = 0; b < B; ++b) {
      std::vector<std::int32_t> p(static_cast<std::size_t>(L - 1));
      for (index_t t = 0; t + 1 < L; ++t) p[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(bp(b, t));
      array<float> lg({L - 1, V});
      m.prefill(sb, b, p, lg.view());
      CHECK(rel_err(lg.view(), view<const float>(bl.data() + b * L * V, {L - 1, V})) <= 1e-4);
    }
    std::vector<std::int32_t> last(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) last[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(bp(b, L - 1));
    array<float> lb({B, V});
    m.decode(sb, last, lb.view());
    for (index_t b = 0; b < B; ++b)
      CHECK(rel_err(view<const float>(lb.data() + b * V, {1, V}), view<const float>(bl.data() + (b * L + L - 1) * V, {1, V})) <= 1e-4);
  }
}

TEST_CASE("llm::model decode does not depend on the thread count") {
  // the rows of each matrix are split over threads in fixed blocks: results are bit-identical
  const llm::model m = llm::model::load(fixtures / "qwen3_bf16");
  const io::safetensors ref = io::safetensors::open(fixtures / "qwen3_bf16" / "reference.safetensors");
  const std::vector<std::int32_t> prompt = llm_test::ids(ref, "prompt");
  const index_t V = m.config().vocab_size;
  auto run = [&] {
    llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .chunk = 1});
    array<float> row({1, V});
    m.prefill(s, 0, prompt, row.view());
    return std::vector<float>(row.span().begin(), row.span().end());
  };
  const std::vector<float> a = run();
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> b = run();
  omp_set_num_threads(before);
  CHECK(a == b);
#else
  CHECK(a == run());
#endif
}

TEST_CASE("io::parse_model_config reads both rope spellings and names bad fields") {
  const std::string base = R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2)";
  // classic: rope_theta + rope_scaling
  io::model_config c = io::parse_model_config(
      base + R"(, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})",
      "config.json");
  CHECK(c.rope.type == io::rope_config::kind::llama3);
  CHECK(c.rope.theta == 500000.0);
  CHECK(c.rope.original_max_position_embeddings == 8192);
  CHECK(c.head_dim == 16);
  CHECK(c.group() == 2);
  // transformers 5: rope_parameters with rope_theta inside
  c = io::parse_model_config(base + R"(, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
      "original_max_position_embeddings": 32768}})",
                             "config.json");
  CHECK(c.rope.type == io::rope_config::kind::yarn);
  CHECK(c.rope.theta == 1e6);
  CHECK(c.rope.factor == 4.0);
  // qwen3's class defaults: head_dim 128, q/k norm
  c = io::parse_model_config(R"({"model_type": "qwen3", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2})",
                             "config.json");
  CHECK(c.head_dim == 128);
  CHECK(c.qk_norm);
  CHECK(c.num_kv_heads == 2);

  const auto fails = [&](const std::string& text, const char* needle) {
    CAPTURE(text);
    try {
      (void)io::parse_model_config(text, "config.json");
      FAIL("no error");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  const std::string shape = R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4)";
  fails(R"({"model_type": "gpt2", "vocab_size": 1})", "model_type");
  fails(R"({"model_type": "llama", "hidden_size": 64})", "vocab_size");
  fails(shape + R"(, "num_key_value_heads": 3})", "num_key_value_heads 3");
  fails(shape + R"(, "hidden_act": "gelu"})", "hidden_act");
  fails(shape + R"(, "head_dim": 15})", "head_dim");
  fails(shape + R"(, "rms_norm_eps": 0})", "rms_norm_eps");
  fails(R"({"model_type": "mistral", "vocab_size": -1, "hidden_size": 64})", "vocab_size");
  fails(shape + R"(, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})", "rope_type");
  fails(shape + R"(, "rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0}})", "factor");
  fails(shape + R"(, "rope_scaling": {"rope_type": "linear", "factor": "2"}})", "factor");
  fails(shape + R"(, "architectures": ["LlamaModel"]})", "architectures");
  fails(shape + R"(, "eos_token_id": [2, -1]})", "eos_token_id");
  CHECK_THROWS_AS((void)io::parse_model_config("{\"model_type\": ", "config.json"), format_error);
  CHECK_THROWS_AS((void)io::parse_model_config(shape + R"(, "hidden_size": 32})", "config.json"), format_error); // duplicate key
}

TEST_CASE("llm::model: missing or misshapen tensors and bad input are typed errors") {
  const fs::path src = fixtures / "llama_gqa";
  const io::model_config cfg = io::load_model_config(src / "config.json");
  const io::safetensors full = io::safetensors::open(src / "model.safetensors");
  // a checkpoint without one tensor, and one with a transposed matrix
  const auto rewrite = [&](const std::string& drop, bool transpose) {
    io::safetensors_writer w;
    for (const io::tensor_info& t : full.tensors()) {
      if (t.name == drop && !transpose) continue;
      std::vector<index_t> shape(t.shape.begin(), t.shape.end());
      if (t.name == drop) std::reverse(shape.begin(), shape.end());
      w.add_raw(t.name, t.type, shape, full.bytes(t.name));
    }
    return io::safetensors::from_buffer_copy(w.to_bytes());
  };
  const auto message = [&](io::safetensors f) -> std::string {
    try {
      (void)llm::weights::from(std::move(f), cfg);
    } catch (const format_error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(message(rewrite("model.layers.1.mlp.up_proj.weight", false)).find("\"model.layers.1.mlp.up_proj.weight\" is missing") !=
        std::string::npos);
  CHECK(message(rewrite("model.layers.0.self_attn.k_proj.weight", true)).find("[64, 32]") != std::string::npos);
  CHECK_THROWS_AS((void)llm::model::load(fixtures / "no_such_model"), io_error);

  const llm::model m = llm::model::load(src);
  llm::state s = m.make_state({.batch = 1, .max_tokens = 8});
  const std::vector<std::int32_t> bad = {1, 2, static_cast<std::int32_t>(cfg.vocab_size)};
  CHECK_THROWS_AS(m.prefill(s, 0, bad), lookup_error);
  CHECK(s.position(0) == 0);
  const std::vector<std::int32_t> long_prompt(9, 1);
  CHECK_THROWS_AS(m.prefill(s, 0, long_prompt), config_error);
  CHECK_THROWS_AS(m.prefill(s, 1, std::vector<std::int32_t>{1}), lookup_error);
  array<float> wrong({2, cfg.vocab_size});
  CHECK_THROWS_AS(m.prefill(s, 0, std::vector<std::int32_t>{1, 2, 3}, wrong.view()), shape_error);
  CHECK_THROWS_AS((void)m.make_state({.batch = 1, .max_tokens = cfg.max_position_embeddings + 1}), config_error);
  m.prefill(s, 0, std::vector<std::int32_t>(8, 3));
  array<float> row({1, cfg.vocab_size});
  const std::int32_t one = 1;
  CHECK_THROWS_AS(m.decode(s, std::span<const std::int32_t>(&one, 1), row.view()), config_error);
}
