// SPDX-License-Identifier: MIT
// llm::sampler against hand-derived distributions, and llm::generate against the transformers
// greedy continuation of the fixtures.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/llm/generate.hpp"
#include "llm_fixtures.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {
using llm_test::fixtures;
using llm_test::ids;

/// Frequencies of n draws.
std::vector<double> histogram(llm::sampler& s, std::span<const float> logits, int n) {
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) f[static_cast<std::size_t>(s.pick(logits))] += 1.0 / n;
  return f;
}
} // namespace

TEST_CASE("llm::sampler: greedy, temperature, top-k and top-p follow their definitions") {
  // probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1
  const std::array<float, 4> logits = {std::log(4.0f), std::log(2.0f), 0.0f, 0.0f};
  CHECK(llm::sampler::argmax(logits) == 0);
  const std::array<float, 3> tie = {1.0f, 3.0f, 3.0f};
  CHECK(llm::sampler::argmax(tie) == 1); // the first maximum, as torch.argmax

  constexpr int n = 40000; // binomial standard error <= 0.0025
  llm::sampler plain({.temperature = 1.0f, .seed = 1});
  std::vector<double> f = histogram(plain, logits, n);
  CHECK(f[0] == doctest::Approx(0.5).epsilon(0.02));
  CHECK(f[1] == doctest::Approx(0.25).epsilon(0.04));
  CHECK(f[2] + f[3] == doctest::Approx(0.25).epsilon(0.04));

  // temperature 2: probabilities proportional to sqrt(4), sqrt(2), 1, 1
  llm::sampler warm({.temperature = 2.0f, .seed = 2});
  f = histogram(warm, logits, n);
  const double z = 2.0 + std::sqrt(2.0) + 2.0;
  CHECK(f[0] == doctest::Approx(2.0 / z).epsilon(0.03));
  CHECK(f[1] == doctest::Approx(std::sqrt(2.0) / z).epsilon(0.04));

  // top-k 2: 0.5 and 0.25 renormalised to 2/3 and 1/3; tokens 2 and 3 never
  llm::sampler k2({.temperature = 1.0f, .top_k = 2, .seed = 3});
  f = histogram(k2, logits, n);
  CHECK(f[0] == doctest::Approx(2.0 / 3.0).epsilon(0.02));
  CHECK(f[2] + f[3] == 0.0);

  // top-p 0.7: the prefix 0.5 + 0.25 = 0.75 is the shortest reaching 0.7 -> the same as top-k 2
  llm::sampler p7({.temperature = 1.0f, .top_p = 0.7f, .seed = 4});
  f = histogram(p7, logits, n);
  CHECK(f[0] == doctest::Approx(2.0 / 3.0).epsilon(0.02));
  CHECK(f[2] + f[3] == 0.0);
  // top-p 0.5 keeps only the first token; top-k 1 is greedy
  llm::sampler p5({.temperature = 1.0f, .top_p = 0.5f, .seed = 5});
  llm::sampler k1({.temperature = 0.7f, .top_k = 1, .seed = 6});
  for (int i = 0; i < 100; ++i) {
    CHECK(p5.pick(logits) == 0);
    CHECK(k1.pick(logits) == 0);
  }

  // the same seed gives the same stream
  llm::sampler a({.temperature = 1.0f, .seed = 9}), b({.temperature = 1.0f, .seed = 9});
  for (int i = 0; i < 50; ++i) CHECK(a.pick(logits) == b.pick(logits));

  CHECK_THROWS_AS(llm::sampler({.temperature = -1.0f}), config_error);
  CHECK_THROWS_AS(llm::sampler({.temperature = 1.0f, .top_p = 0.0f}), config_error);
  CHECK_THROWS_AS(llm::sampler({.top_k = -2}), config_error);
  const std::array<float, 2> nan = {0.0f, std::nanf("")};
  CHECK_THROWS_AS(plain.pick(nan), config_error);
}

TEST_CASE("llm::generate: greedy equals transformers, streams tokens and cache bytes, stops on a stop token") {
  for (const char* name : {"llama_gqa", "qwen3_bf16", "llama_rope_yarn"}) {
    CAPTURE(name);
    const llm::model m = llm::model::load(fixtures / name);
    const io::safetensors ref = io::safetensors::open(fixtures / name / "reference.safetensors");
    const std::vector<std::int32_t> prompt = ids(ref, "prompt"), want = ids(ref, "generated");
    llm::state s = m.make_state({.batch = 1, .max_tokens = 64, .page_tokens = 4});
    std::vector<std::int32_t> streamed;
    std::vector<std::size_t> bytes;
    llm::generate_options opt;
    opt.max_new_tokens = static_cast<index_t>(want.size());
    opt.on_token = [&](const llm::step_info& st) {
      streamed.push_back(st.token);
      bytes.push_back(st.cache_bytes);
      CHECK(st.layer_bytes.size() == static_cast<std::size_t>(m.config().num_layers));
      return true;
    };
    const std::vector<std::int32_t> got = llm::generate(m, s, prompt, opt);
    CHECK(got == want);
    CHECK(streamed == want);
    // the cache holds prompt + step tokens: bytes grow by whole pages, per layer G heads
    const auto& c = s.cache(0);
    const std::size_t per_token_pages = static_cast<std::size_t>(m.config().num_kv_heads) * c.page_bytes() *
                                        static_cast<std::size_t>(m.config().num_layers);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const index_t held = static_cast<index_t>(prompt.size() + i);
      CHECK(bytes[i] == per_token_pages * static_cast<std::size_t>(kv::pages_for(held, 4)));
    }
    // a stop token ends generation after emitting it
    llm::state s2 = m.make_state({.batch = 1, .max_tokens = 64});
    llm::generate_options stop;
    stop.max_new_tokens = 8;
    stop.stop_tokens = {want[2]};
    const std::vector<std::int32_t> cut = llm::generate(m, s2, prompt, stop);
    const auto first = std::find(want.begin(), want.end(), want[2]);
    CHECK(cut == std::vector<std::int32_t>(want.begin(), first + 1));
  }
  // sampling is reproducible through generate
  const llm::model m = llm::model::load(fixtures / "qwen2");
  const io::safetensors ref = io::safetensors::open(fixtures / "qwen2" / "reference.safetensors");
  const std::vector<std::int32_t> prompt = ids(ref, "prompt");
  auto sample = [&](std::uint64_t seed) {
    llm::state s = m.make_state({.batch = 1, .max_tokens = 64});
    llm::generate_options opt;
    opt.max_new_tokens = 12;
    opt.sample = {.temperature = 1.5f, .top_p = 0.95f, .seed = seed};
    return llm::generate(m, s, prompt, opt);
  };
  CHECK(sample(11) == sample(11));
  CHECK(sample(11) != sample(12));
  llm::state full = m.make_state({.batch = 1, .max_tokens = 16});
  llm::generate_options eight;
  eight.max_new_tokens = 8;
  CHECK_THROWS_AS(llm::generate(m, full, prompt, eight), config_error); // 13 + 7 > 16
}
