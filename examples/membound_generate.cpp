// SPDX-License-Identifier: MIT
// membound-generate: stream text from a Hugging Face model folder under any KV-cache policy.
//
//   membound-generate MODEL_DIR [--prompt TEXT | --ids 1,2,3] [--policy NAME] [--budget N] [--buffer N]
//                     [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                     [--chunk N] [--threads N] [--gates FILE] [--raw]
//
// MODEL_DIR holds config.json, model.safetensors (or shards + index), tokenizer.json and, when
// present, generation_config.json (its eos ids stop the generation; its sampling settings are the
// defaults the flags override). Architectures: Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3.
// Policies: full (default), streaming_llm, h2o, tova, knorm, keydiff, random, snapkv,
// expected_attention, and trim_kv with --gates (TRIM-KV's retention gates for this model, a
// safetensors file under the official names); --budget is the tokens kept per KV head in every layer (0: no eviction),
// --buffer how far a head may grow past it before it is cut. The prompt goes in as given
// (add_special_tokens: the tokenizer's template, e.g. Llama 3's <|begin_of_text|>); no chat
// template is applied (--raw skips the special tokens too). Text is streamed as each token is chosen;
// a summary on stderr gives the prefill and decode speeds and the cache bytes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "membound/io/hf_config.hpp"
#include "membound/llm/generate.hpp"
#include "membound/llm/tokenizer.hpp"

using namespace membound;

namespace {
[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s MODEL_DIR [--prompt TEXT | --ids 1,2,3] [--policy NAME] [--budget N] [--buffer N]\n"
               "       [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--chunk N]\n"
               "       [--threads N] [--gates FILE] [--raw]\n"
               "  NAME: a policy, optionally @uniform, @pyramid, @adakv or @global (e.g. snapkv@adakv)\n",
               argv0);
  std::exit(2);
}
} // namespace

int main(int argc, char** argv) try {
  if (argc < 2) usage(argv[0]);
  const std::filesystem::path dir = argv[1];
  std::string prompt = "The capital of France is", ids_arg, policy = "full", gates_file;
  index_t budget = 0, buffer = 1, max_new = 64, chunk = 512;
  bool raw = false, have_temperature = false, have_top_p = false, have_top_k = false;
  llm::sampling samp;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--prompt") prompt = next();
    else if (a == "--ids") ids_arg = next();
    else if (a == "--policy") policy = next();
    else if (a == "--budget") budget = std::stoll(next());
    else if (a == "--buffer") buffer = std::stoll(next());
    else if (a == "--max-new-tokens") max_new = std::stoll(next());
    else if (a == "--temperature") { samp.temperature = std::stof(next()); have_temperature = true; }
    else if (a == "--top-k") { samp.top_k = std::stoll(next()); have_top_k = true; }
    else if (a == "--top-p") { samp.top_p = std::stof(next()); have_top_p = true; }
    else if (a == "--seed") samp.seed = std::stoull(next());
    else if (a == "--chunk") chunk = std::stoll(next());
    else if (a == "--threads") {
      const int t = std::stoi(next());
#if defined(_OPENMP)
      omp_set_num_threads(t);
#else
      (void)t;
#endif
    } else if (a == "--gates") gates_file = next();
    else if (a == "--raw") raw = true;
    else usage(argv[0]);
  }

  const llm::model m = llm::model::load(dir);
  const bool have_tok = std::filesystem::exists(dir / "tokenizer.json");
  std::optional<llm::tokenizer> tok;
  if (have_tok) tok.emplace(llm::tokenizer::load(dir / "tokenizer.json"));
  std::vector<std::int32_t> ids;
  if (!ids_arg.empty()) {
    std::stringstream ss(ids_arg);
    for (std::string x; std::getline(ss, x, ',');) ids.push_back(static_cast<std::int32_t>(std::stol(x)));
  } else {
    if (!tok) {
      std::fprintf(stderr, "%s has no tokenizer.json: give the prompt as --ids\n", dir.c_str());
      return 2;
    }
    ids = tok->encode(prompt, !raw);
  }

  llm::generate_options opt;
  opt.max_new_tokens = max_new;
  std::vector<std::int64_t> eos = m.config().eos_token_ids;
  if (std::filesystem::exists(dir / "generation_config.json")) {
    const io::generation_config gc = io::load_generation_config(dir / "generation_config.json");
    if (!gc.eos_token_ids.empty()) eos = gc.eos_token_ids;
    if (gc.do_sample) { // the model's defaults, unless flags say otherwise
      if (!have_temperature) samp.temperature = static_cast<float>(gc.temperature);
      if (!have_top_p) samp.top_p = static_cast<float>(gc.top_p);
      if (!have_top_k) samp.top_k = gc.top_k;
    }
  }
  for (std::int64_t e : eos) opt.stop_tokens.push_back(static_cast<std::int32_t>(e));
  opt.sample = samp;
  std::size_t last_bytes = 0;
  opt.on_token = [&](const llm::step_info& st) {
    if (tok) {
      const std::int32_t one = st.token;
      const std::string piece = tok->decode(std::span<const std::int32_t>(&one, 1), true);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
    } else {
      std::printf("%d ", st.token);
    }
    std::fflush(stdout);
    last_bytes = st.cache_bytes;
    return true;
  };

  llm::state s = m.make_state({.batch = 1, .max_tokens = std::min<index_t>(m.config().max_position_embeddings,
                                                                           static_cast<index_t>(ids.size()) + max_new),
                               .chunk = chunk},
                              llm::eviction::named(policy, budget, buffer,
                                                   gates_file.empty() ? nullptr : llm::retention_gates::load(gates_file, m.config())));
  if (tok) {
    const std::string shown = tok->decode(ids, true);
    std::fwrite(shown.data(), 1, shown.size(), stdout);
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point t1;
  bool first = true;
  const auto stream = opt.on_token;
  opt.on_token = [&](const llm::step_info& st) {
    if (first) {
      t1 = std::chrono::steady_clock::now();
      first = false;
    }
    return stream(st);
  };
  const std::vector<std::int32_t> out = llm::generate(m, s, ids, opt);
  const auto t2 = std::chrono::steady_clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf("\n");
  std::fprintf(stderr, "[%zu prompt tokens in %.3f s (%.1f tok/s); %zu new tokens, %.1f tok/s; policy %s, budget %lld; "
                       "KV cache %.1f KiB]\n",
               ids.size(), prefill_s, static_cast<double>(ids.size()) / prefill_s, out.size(),
               out.size() > 1 ? static_cast<double>(out.size() - 1) / decode_s : 0.0, policy.c_str(),
               static_cast<long long>(budget), static_cast<double>(last_bytes) / 1024.0);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "membound-generate: %s\n", e.what());
  return 1;
}
