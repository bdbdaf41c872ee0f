// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief llm/: the host that makes kv/ real: a Llama-family decoder over Hugging Face checkpoints.
///  - llm::model, llm::state: the decoder (Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3), chunked
///    prefill through kv::attend_prefill and decode through kv::attend_decode over one kv::cache
///    per layer (model.hpp);
///  - llm::sampler, llm::generate: greedy / temperature / top-k / top-p with a seeded generator,
///    stop tokens and a streaming callback that sees the cache bytes per layer (generate.hpp);
///  - llm::eviction: any kv/ policy by name at a budget (uniform or PyramidKV per layer), applied
///    after every prefill chunk and decode step (policy.hpp);
///  - llm::eval: teacher-forced perplexity and top-1 agreement, RULER-style retrieval, the
///    policy x budget grid with CSV and plot (eval.hpp);
///  - llm::weights: the checkpoint's tensors in their stored type (weights.hpp);
///  - llm::write_random_model: a Llama-shaped folder of random weights (random_model.hpp);
///  - llm::rope_frequencies: RoPE with the default, linear, llama3 and YaRN scalings (rope.hpp);
///  - training (issue 15): llm::trainable_model, the decoder with f32 parameters and a backward pass
///    per layer (trainable_model.hpp); llm::trainer, AdamW / Muon with clipping, a cosine schedule
///    and bit-identical resume from Hugging Face checkpoints (trainer.hpp); llm::byte_corpus and the
///    byte tokenizer (corpus.hpp); llm::make_text_task, retrieval and copy tasks as text
///    (synthetic_tasks.hpp); TRIM-KV gate distillation, llm::trainable_gates and
///    llm::gate_distiller (gate_distillation.hpp).
///  - llm::tokenizer: Hugging Face tokenizer.json byte-level BPE (tokenizer.hpp) is NOT included
///    here: its regexes run on PCRE2, so include "membound/llm/tokenizer.hpp" yourself and link
///    libpcre2-8 (Debian libpcre2-dev; pkg-config libpcre2-8).
/// The config readers live in io/ (io/hf_config.hpp) so that other domains can read model shapes.

#include "membound/llm/eval.hpp"
#include "membound/llm/generate.hpp"
#include "membound/llm/model.hpp"
#include "membound/llm/policy.hpp"
#include "membound/llm/random_model.hpp"
#include "membound/llm/rope.hpp"
#include "membound/llm/corpus.hpp"
#include "membound/llm/gate_distillation.hpp"
#include "membound/llm/synthetic_tasks.hpp"
#include "membound/llm/trainable_model.hpp"
#include "membound/llm/trainer.hpp"
#include "membound/llm/weights.hpp"
