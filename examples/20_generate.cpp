// SPDX-License-Identifier: MIT
// 20_generate: one prompt, three KV-cache policies, the text each produces and the cache it holds.
//
//   20_generate [MODEL_DIR] [--prompt TEXT] [--budget 32] [--max-new-tokens 48]
//
// MODEL_DIR is a Hugging Face model folder (Llama, SmolLM2, Mistral, Qwen2, Qwen3; with
// tokenizer.json the prompt is text and the output is printed as text, without it token ids).
// Without one the notebook writes ./20_random_model, a Llama-shaped model of RANDOM weights and no
// tokenizer: its "text" is noise, shown as token ids. It demonstrates the mechanics (generation,
// eviction, cache bytes), not language. Point it at a downloaded model (e.g. SmolLM2-135M) for text.
//
// Each policy generates greedily from the same prompt:
//   - full: every token stays (the cache grows by one token per layer and KV head per step);
//   - streaming_llm at --budget tokens per KV head: 4 attention sinks + the most recent tokens;
//   - h2o at --budget: the tokens with the most accumulated attention + the most recent half.
// It prints the continuation, the cache bytes after the prompt and at the end, and the first step
// at which each policy's tokens depart from the full cache's.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "membound/llm/generate.hpp"
#include "membound/llm/random_model.hpp"
#include "membound/llm/tokenizer.hpp"

using namespace membound;

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  std::filesystem::path dir;
  std::string prompt_text =
      "Memory is the bottleneck of long-context inference: every generated token reads the whole key-value cache. "
      "Eviction policies keep a budget of tokens per head and drop the rest. The question is which ones to keep, and";
  index_t budget = 32, max_new = smoke ? 12 : 48;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--prompt" && i + 1 < argc) prompt_text = argv[++i];
    else if (a == "--budget" && i + 1 < argc) budget = std::stoll(argv[++i]);
    else if (a == "--max-new-tokens" && i + 1 < argc) max_new = std::stoll(argv[++i]);
    else if (!a.empty() && a[0] != '-') dir = a;
    else {
      std::fprintf(stderr, "usage: %s [MODEL_DIR] [--prompt TEXT] [--budget 32] [--max-new-tokens 48]\n", argv[0]);
      return 2;
    }
  }
  if (dir.empty()) {
    dir = "20_random_model";
    llm::random_model_spec spec;
    std::printf("No model folder given: writing %s, a Llama-shaped model of RANDOM weights (%.1f M parameters) and no\n"
                "tokenizer. Its output is noise, printed as token ids: this run shows the mechanics, not language.\n\n",
                dir.c_str(), static_cast<double>(spec.parameters()) / 1e6);
    llm::write_random_model(dir, spec);
  }
  const llm::model m = llm::model::load(dir);
  std::optional<llm::tokenizer> tok;
  if (std::filesystem::exists(dir / "tokenizer.json")) tok.emplace(llm::tokenizer::load(dir / "tokenizer.json"));
  std::vector<std::int32_t> prompt;
  if (tok) {
    prompt = tok->encode(prompt_text);
  } else { // no tokenizer: a fixed pseudo-prompt of ids
    for (index_t i = 0; i < 96; ++i) prompt.push_back(static_cast<std::int32_t>((i * 131 + 7) % m.config().vocab_size));
  }
  const auto show = [&](const std::vector<std::int32_t>& ids) {
    if (tok) {
      const std::string s = tok->decode(ids, true);
      std::printf("%s", s.c_str());
    } else {
      for (std::int32_t t : ids) std::printf("%d ", t);
    }
  };
  std::printf("prompt (%zu tokens): ", prompt.size());
  show(prompt);
  std::printf("\n\n");

  std::vector<std::int32_t> reference;
  for (const char* policy : {"full", "streaming_llm", "h2o"}) {
    const bool full = std::string(policy) == "full";
    llm::state s = m.make_state({.batch = 1, .max_tokens = static_cast<index_t>(prompt.size()) + max_new, .page_tokens = 16},
                                llm::eviction::named(policy, full ? 0 : budget));
    std::size_t first_bytes = 0, last_bytes = 0;
    llm::generate_options opt;
    opt.max_new_tokens = max_new;
    opt.on_token = [&](const llm::step_info& st) {
      if (st.step == 0) first_bytes = st.cache_bytes;
      last_bytes = st.cache_bytes;
      return true;
    };
    const std::vector<std::int32_t> out = llm::generate(m, s, prompt, opt);
    if (full) reference = out;
    std::size_t departs = out.size();
    for (std::size_t i = 0; i < out.size() && i < reference.size(); ++i)
      if (out[i] != reference[i]) {
        departs = i;
        break;
      }
    std::printf("== %s%s\n", policy, full ? "" : (" (budget " + std::to_string(budget) + " tokens per KV head)").c_str());
    show(out);
    std::printf("\ncache: %.1f KiB after the prompt, %.1f KiB at the end", static_cast<double>(first_bytes) / 1024.0,
                static_cast<double>(last_bytes) / 1024.0);
    if (!full) {
      if (departs == out.size()) std::printf("; the same tokens as the full cache\n\n");
      else std::printf("; departs from the full cache at new token %zu\n\n", departs);
    } else {
      std::printf("\n\n");
    }
  }
  return 0;
}
