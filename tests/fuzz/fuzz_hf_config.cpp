// SPDX-License-Identifier: MIT
// libFuzzer target for the Hugging Face config readers (io::parse_model_config and
// io::parse_generation_config over the same bytes). Every input must either parse or throw a
// membound::error; anything else is a bug. For configs that parse it checks the documented
// invariants (positive sizes, GQA divisibility, an even head_dim) and that the rotary frequencies
// built from them (llm::rope_frequencies, every rope kind) are finite and positive.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "membound/io/hf_config.hpp"
#include "membound/llm/rope.hpp"

using namespace membound;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const io::model_config c = io::parse_model_config(text, "config.json");
    check(c.vocab_size >= 1 && c.hidden_size >= 1 && c.intermediate_size >= 1 && c.num_layers >= 1);
    check(c.num_heads >= 1 && c.num_kv_heads >= 1 && c.num_heads % c.num_kv_heads == 0);
    check(c.head_dim >= 2 && c.head_dim % 2 == 0 && c.rms_norm_eps > 0);
    if (c.head_dim <= 4096) {
      const llm::rope_frequencies f = llm::rope_frequencies::make(c.rope, c.head_dim);
      check(static_cast<index_t>(f.inv_freq.size()) == c.head_dim / 2);
      for (float v : f.inv_freq) check(std::isfinite(v) && v >= 0.0f);
      check(std::isfinite(f.attention_factor));
    }
  } catch (const membound::error&) {
  }
  try {
    const io::generation_config g = io::parse_generation_config(text, "generation_config.json");
    check(g.top_p >= 0.0 && g.top_p <= 1.0 && g.temperature >= 0.0 && g.top_k >= 0);
  } catch (const membound::error&) {
  }
  return 0;
}
