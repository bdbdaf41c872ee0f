// SPDX-License-Identifier: MIT
// 20_generate: one prompt, several KV-cache policies, the text each produces and the cache it holds.
//
//   20_generate [MODEL_DIR] [--prompt TEXT] [--budget 64] [--max-new-tokens 48]
//
// Without MODEL_DIR it runs membound's embedded default model (models/tiny-py-lm, a 4.6 M parameter
// byte-level Llama trained by examples/30_train_tiny_lm.cpp on the Python standard library, with
// TRIM-KV gates from examples/31_trimkv_distill.cpp). Its default prompt is Python source with a
// pass key stated near the top and asked for at the end, about 800 bytes later: a model that
// retrieves copies the key under the full cache and loses it under a policy that evicted it. The
// embedded model retrieves pass keys (100 of 100 held-out samples, models/tiny-py-lm/README.md):
// here it writes 73914 under the full cache (then repeats a digit, having learned nothing about
// what follows an answer), and at 64 tokens per head trim_kv keeps the first three digits while
// streaming_llm and h2o keep none.
// MODEL_DIR is any Hugging Face model folder (Llama, SmolLM2, Mistral, Qwen2, Qwen3; with
// tokenizer.json the prompt is text and the output is printed as text, without it token ids).
//
// Each policy generates greedily from the same prompt:
//   - full: every token stays (the cache grows by one token per layer and KV head per step);
//   - streaming_llm at --budget tokens per KV head: 4 attention sinks + the most recent tokens;
//   - h2o at --budget: the tokens with the most accumulated attention + the most recent half;
//   - trim_kv at --budget (when the folder has retention_gates.safetensors): the tokens whose
//     learned retention, decayed by their age, is largest.
// It prints the continuation, the cache bytes after the prompt and at the end, and the first step
// at which each policy's tokens depart from the full cache's.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "membound/llm/generate.hpp"
#include "membound/llm/tokenizer.hpp"

#if !defined(MEMBOUND_EMBEDDED_MODEL)
#define MEMBOUND_EMBEDDED_MODEL "models/tiny-py-lm"
#endif

using namespace membound;

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  std::filesystem::path dir;
  // Python source the model never saw (written for this notebook), a pass key near the top
  std::string prompt_text = R"(# The pass key is 73914. Remember it. 73914 is the pass key.
"""Small helpers for reading configuration files."""

import os
import re


class ConfigError(Exception):
    """Raised when a configuration line cannot be parsed."""


def parse_line(line, lineno):
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if "=" not in line:
        raise ConfigError("line %d: expected key = value, got %r" % (lineno, line))
    key, value = line.split("=", 1)
    return key.strip(), value.strip()


def read_config(path):
    result = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            item = parse_line(line, lineno)
            if item is not None:
                key, value = item
                result[key] = value
    return result

# What is the pass key? The pass key is )";
  index_t budget = 64, max_new = smoke ? 12 : 48;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--prompt" && i + 1 < argc) prompt_text = argv[++i];
    else if (a == "--budget" && i + 1 < argc) budget = std::stoll(argv[++i]);
    else if (a == "--max-new-tokens" && i + 1 < argc) max_new = std::stoll(argv[++i]);
    else if (!a.empty() && a[0] != '-') dir = a;
    else {
      std::fprintf(stderr, "usage: %s [MODEL_DIR] [--prompt TEXT] [--budget 64] [--max-new-tokens 48]\n", argv[0]);
      return 2;
    }
  }
  if (dir.empty()) dir = MEMBOUND_EMBEDDED_MODEL;
  if (!std::filesystem::exists(dir / "config.json")) {
    std::fprintf(stderr, "20_generate: no model folder at %s\n", dir.string().c_str());
    return 1;
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

  std::shared_ptr<const llm::retention_gates> gates;
  std::vector<std::string> policies = {"full", "streaming_llm", "h2o"};
  if (std::filesystem::exists(dir / "retention_gates.safetensors")) {
    gates = llm::retention_gates::load(dir / "retention_gates.safetensors", m.config());
    policies.emplace_back("trim_kv");
  }
  std::vector<std::int32_t> reference;
  for (const std::string& policy : policies) {
    const bool full = policy == "full";
    llm::state s = m.make_state({.batch = 1, .max_tokens = static_cast<index_t>(prompt.size()) + max_new, .page_tokens = 16},
                                llm::eviction::named(policy, full ? 0 : budget, 1, gates));
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
    std::printf("== %s%s\n", policy.c_str(), full ? "" : (" (budget " + std::to_string(budget) + " tokens per KV head)").c_str());
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
