// SPDX-License-Identifier: MIT
// 30_train_tiny_lm: the recipe of membound's embedded default model, a byte-level Llama trained
// here, by membound, on the Python standard library that Debian ships, with long-range retrieval
// tasks mixed in so that retrieval heads form (llm::trainable_model + llm::trainer).
//
//   30_train_tiny_lm [--full] [--out DIR] [--steps N] [--stdlib DIR] [--threads N] [--resume DIR]
//
// What it teaches: how a model for the KV-eviction experiments is made when no model hub is
// reachable; what a training loop is in membound (forward, loss, backward per layer, AdamW,
// cosine schedule, checkpoints that resume bit for bit); and how to tell that a small model has
// learned: held-out bits per byte against a unigram byte model, and exact-match retrieval.
//
// Data (all deterministic for the seed):
//   - text: every .py file under the standard library folder (/usr/lib/python3.N, found
//     automatically, or --stdlib), in sorted path order, without tests (test/, tests/,
//     idle_test/), site-packages, generated tables (encodings/, pydoc_data/); documents are
//     separated by <|endoftext|>. Held out (never trained on): email/, json/, http/,
//     textwrap.py and fractions.py.
//   - tasks: 25% of the training rows hold generated samples instead (llm::make_text_task:
//     passkey, multikey, kv_recall, copy; needles at random depths in training-corpus filler):
//     1, 2 or 4 samples of distinct tasks packed back to back (T + 1 tokens in all), whose answer
//     targets weigh 10 in the loss (llm::weight_source). Without the packing and the weight the
//     answers are ~0.2% of the loss, and a first trial learned no retrieval in 1500 steps.
//   - repeats: 15% of the rows are corpus windows cut into 1, 2 or 4 zones whose second half
//     repeats the first, and 15% the same with random letters and digits: practice in finding an
//     earlier occurrence of the current context and copying what followed it, the mechanism
//     retrieval needs (induction heads, which on natural text alone form only after billions of
//     tokens).
//   - the remaining 45%: corpus windows.
//   - before the schedule, an induction warm-up (--full: 400 steps of 16 x 256 tokens, constant
//     lr) on random letters and digits in repeated halves only. Without it, trials with 20% and 40%
//     of rows holding repeated corpus text still copied nothing after 500 steps (the loss on a
//     repeat equal to the first occurrence's; answer loss at chance, ln 10 per digit); a 200-step
//     warm-up at 8 x 512 began to copy (loss 3.6 -> 2.6) but the copying was gone 250 steps into
//     the mixture.
//   - after the schedule, the retrieval phase (--full): 1000 steps in four stages of 8192 tokens per
//     step, at rows of 128, 256, 512 and 1024 tokens (350, 200, 200, 250 steps). Most rows hold one
//     task sample filling the row (95%, 85%, 70%, 50%; of them 90%, 80%, 70%, 60% passkeys, the
//     rest multikey, kv_recall or copy); the others are corpus text, some with spans copied from
//     random earlier places. lr 1e-3, cosine to 1e-4 in the last stage. Short rows first: a needle
//     is found far more easily among 128 tokens than among 1024, and the heads that find it then
//     stretch to longer rows.
// Model (--full): vocabulary 257 (bytes + <|endoftext|>), C 256, 6 layers, 8 heads / 4 KV heads of
// 32, SwiGLU 704, RoPE theta 10000, context 1024, untied: 4.56 M parameters.
// Training (--full): 1000 steps (--steps) of 8 sequences of 1024 tokens, AdamW (lr 2e-3 -> 2e-4
// cosine, warm-up 100, betas 0.9 / 0.95, weight decay 0.1 on matrices), clip 1.0, seed 0.
// Evaluation every 250 steps and after each retrieval stage: held-out bits per byte (32 windows
// of 1024 from the held-out files) and exact-match retrieval per task at 1024 tokens (16 samples
// each with held-out filler, teacher-forced argmax over the answer, which equals greedy decoding's
// exact match), written to 30_curves.csv; at the
// end the same with 100 samples per task, the figures of the card. Then the folder DIR (default
// ./tiny-py-lm) holds the model in Hugging Face layout (config.json, model.safetensors in BF16
// for the repository's 16 MB limit, tokenizer.json) and a model card README.md with the recipe,
// the figures and the curves (its minutes exclude the warm-up, about 6 on 2 threads);
// DIR/checkpoint holds the f32 weights and optimiser state of the main schedule's end for --resume
// (a resume past the schedule runs the retrieval phase only). The committed models/tiny-py-lm is
// this run on machine B, 2 threads: the main schedule (35 + 6 minutes), then the retrieval phase
// (24 minutes) as a --resume of its checkpoint.
//
// Without --full (and under MEMBOUND_SMOKE=1, the smoke test), a small shape (C 64, 2 layers,
// context 128) trains for 30 steps and a retrieval phase of 2 x 4 steps on a tenth of the corpus:
// the recipe end to end in seconds, figures meaningless.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "membound/io/safetensors.hpp"
#include "membound/llm/corpus.hpp"
#include "membound/llm/generate.hpp"
#include "membound/llm/model.hpp"
#include "membound/llm/synthetic_tasks.hpp"
#include "membound/llm/trainer.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace membound;
namespace fs = std::filesystem;

namespace {

/// A stage of the retrieval phase (after the main schedule): `steps` steps of `batch` x `tokens`,
/// AdamW from a fresh state, lr `lr` -> `min_lr` cosine after a 20-step warm-up. Row shares: `tasks`
/// one generated task sample filling the row (a passkey with probability `passkey`, else one of the
/// other tasks; answers weigh `answer_weight`), `spans` corpus text with spans copied from random
/// earlier positions, the rest corpus text.
struct stage {
  const char* name;
  index_t tokens, batch, steps;
  float lr, min_lr;
  double tasks, passkey, spans;
};

struct recipe {
  llm::decoder_spec spec;
  llm::trainer_config train;
  double tasks = 0.25;         // share of training rows that hold generated task samples
  float answer_weight = 10.0f; // loss weight of a task answer's targets
  double repeats = 0.15;       // share of training rows with repeated halves of corpus text
  double random_repeats = 0.15; // share of training rows with repeated halves of random letters and digits
  float repeat_weight = 1.0f;  // loss weight of a repeated half's targets
  index_t warm_steps = 400;    // induction warm-up steps before the schedule (random repeated halves)
  index_t eval_every = 250, eval_windows = 32, eval_tasks = 16, final_tasks = 100;
  double corpus_share = 1.0; // share of the training files read (smoke: a tenth)
  std::vector<stage> retrieval; // the retrieval phase, run after the main schedule
};

recipe full_recipe() {
  recipe r;
  r.spec.vocab = llm::byte_vocab_size, r.spec.hidden = 256, r.spec.intermediate = 704, r.spec.layers = 6;
  r.spec.heads = 8, r.spec.kv_heads = 4, r.spec.head_dim = 32, r.spec.max_positions = 1024;
  r.train.batch = 8, r.train.tokens = 1024, r.train.steps = 1000, r.train.warmup = 100;
  r.train.lr = 2e-3f, r.train.min_lr = 2e-4f, r.train.log_every = 25;
  r.retrieval = {{"tasks at 128", 128, 64, 350, 1e-3f, 1e-3f, 0.95, 0.9, 0.0},
                 {"tasks at 256", 256, 32, 200, 1e-3f, 1e-3f, 0.85, 0.8, 0.05},
                 {"tasks at 512", 512, 16, 200, 1e-3f, 1e-3f, 0.7, 0.7, 0.1},
                 {"tasks at 1024", 1024, 8, 250, 1e-3f, 1e-4f, 0.5, 0.6, 0.1}};
  return r;
}
recipe small_recipe() {
  recipe r;
  r.spec.vocab = llm::byte_vocab_size, r.spec.hidden = 64, r.spec.intermediate = 160, r.spec.layers = 2;
  r.spec.heads = 4, r.spec.kv_heads = 2, r.spec.head_dim = 16, r.spec.max_positions = 128;
  r.train.batch = 4, r.train.tokens = 128, r.train.steps = 30, r.train.warmup = 5, r.train.log_every = 10;
  r.train.lr = 3e-3f, r.train.min_lr = 3e-4f;
  r.warm_steps = 5, r.eval_every = 15, r.eval_windows = 8, r.eval_tasks = 4, r.final_tasks = 4, r.corpus_share = 0.1;
  r.retrieval = {{"tasks at 128", 128, 4, 4, 1e-3f, 1e-3f, 0.7, 0.6, 0.1}, {"tasks at 128", 128, 4, 4, 1e-3f, 1e-4f, 0.4, 0.5, 0.2}};
  return r;
}

/// Unigram bits per byte of `test` under byte frequencies of `train` (add-one smoothing).
double unigram_bpb(const llm::byte_corpus& train, const llm::byte_corpus& test) {
  std::vector<double> count(llm::byte_vocab_size, 1.0);
  for (index_t i = 0; i < train.size(); ++i) count[static_cast<std::size_t>(train[i])] += 1.0;
  double total = 0;
  for (double c : count) total += c;
  double bits = 0;
  for (index_t i = 0; i < test.size(); ++i) bits -= std::log2(count[static_cast<std::size_t>(test[i])] / total);
  return bits / static_cast<double>(test.size());
}

/// Teacher-forced exact match of `samples` task samples (all answer tokens argmax-correct).
double task_accuracy(llm::trainable_model& m, const std::string& task, const llm::byte_corpus& filler, index_t tokens,
                     index_t samples, std::uint64_t seed) {
  index_t hits = 0;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(tokens));
  for (index_t s = 0; s < samples; ++s) {
    const auto t = llm::make_text_task(task, tokens + 1, filler, seed, static_cast<std::uint64_t>(s));
    for (index_t i = 0; i < tokens; ++i) ids[static_cast<std::size_t>(i)] = t.tokens[static_cast<std::size_t>(i)];
    const auto logits = m.forward(ids, 1, tokens); // (T,V)
    bool ok = true;
    for (index_t p = t.answer_begin; p < t.answer_end && ok; ++p) {
      const float* row = logits.data() + (p - 1) * logits.stride(0);
      const index_t arg = std::max_element(row, row + logits.extent(1)) - row;
      ok = arg == t.tokens[static_cast<std::size_t>(p)];
    }
    hits += ok;
  }
  return static_cast<double>(hits) / static_cast<double>(samples);
}

} // namespace

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  bool full = false;
  fs::path out = "tiny-py-lm", stdlib, resume;
  index_t steps = 0;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "30_train_tiny_lm: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--full") full = true;
    else if (a == "--out") out = next();
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--stdlib") stdlib = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--resume") resume = next();
    else {
      std::fprintf(stderr, "usage: 30_train_tiny_lm [--full] [--out DIR] [--steps N] [--stdlib DIR] [--threads N] [--resume DIR]\n");
      return 2;
    }
  }
#if defined(_OPENMP)
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  recipe r = full && !smoke ? full_recipe() : small_recipe();
  if (steps > 0) r.train.steps = steps, r.train.warmup = std::min(r.train.warmup, steps);
  if (stdlib.empty()) stdlib = llm::find_python_stdlib();
  if (stdlib.empty()) {
    std::fprintf(stderr, "30_train_tiny_lm: no /usr/lib/python3.N with os.py here; pass --stdlib DIR\n");
    return 1;
  }

  // ---- data ---------------------------------------------------------------------------------
  index_t picked = 0;
  const index_t every = static_cast<index_t>(std::lround(1.0 / r.corpus_share));
  const auto train_text = llm::byte_corpus::from_directory(stdlib, ".py", [&](const std::string& rel) {
    return llm::python_stdlib_split::train(rel) && (picked++ % every == 0);
  });
  const auto heldout = llm::byte_corpus::from_directory(stdlib, ".py", llm::python_stdlib_split::test);
  std::printf("30_train_tiny_lm: %s\n", full && !smoke ? "the full recipe" : "the small recipe (figures meaningless; --full for the real one)");
  std::printf("corpus: %s, %lld training files (%.2f MB), %lld held-out files (%.2f MB)\n", stdlib.string().c_str(),
              static_cast<long long>(train_text.documents()), static_cast<double>(train_text.bytes()) / 1e6,
              static_cast<long long>(heldout.documents()), static_cast<double>(heldout.bytes()) / 1e6);
  const double unigram = unigram_bpb(train_text, heldout);
  std::printf("unigram byte model on the held-out files: %.3f bits per byte\n", unigram);

  constexpr std::uint64_t seed = 0;
  const index_t T = r.train.tokens;
  // Repeated halves: 1, 2 or 4 zones (drawn from `h`), each zone's second half a copy of its first
  // (corpus text already in `w`, or random letters and digits when `random`).
  const auto repeat_halves = [&](std::uint64_t h, std::span<std::int64_t> w, std::span<float> weights, bool random) {
    const index_t n = static_cast<index_t>(w.size());
    const index_t zones = std::min<index_t>(std::clamp<index_t>(n / 256, 1, 4), index_t{1} << ((h >> 20) % 3)), Z = n / zones;
    constexpr std::string_view alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (index_t z = 0; z < zones; ++z) {
      const index_t a = z * Z, half = Z / 2;
      if (random)
        for (index_t i = a; i < a + half; ++i)
          w[static_cast<std::size_t>(i)] = alnum[llm::detail::draw64(h, static_cast<std::uint64_t>(i), 0x1d0, 0) % alnum.size()];
      std::copy(w.begin() + a, w.begin() + a + half, w.begin() + a + half);
      if (!weights.empty())
        for (index_t p = a + half + 1; p < a + 2 * half; ++p) weights[static_cast<std::size_t>(p - 1)] = r.repeat_weight;
    }
  };
  // A `task` sample of `len` tokens written into w[at, at + len), its answer targets weighted
  // `answer_weight`.
  const auto put_task = [&](std::string_view task, std::span<std::int64_t> w, std::span<float> weights, index_t at, index_t len,
                            std::uint64_t task_seed, std::uint64_t index) {
    const auto s = llm::make_text_task(task, len, train_text, task_seed, index);
    std::copy(s.tokens.begin(), s.tokens.end(), w.begin() + at);
    if (!weights.empty())
      for (index_t p = s.answer_begin; p < s.answer_end; ++p) weights[static_cast<std::size_t>(at + p - 1)] = r.answer_weight;
  };
  // Spans of span_min..span_max tokens copied from random earlier positions of `w` (one per zone of
  // `zone` tokens, a copy's place and source drawn from `h`), so that only matching by content
  // finds them; the copied targets after a span's first two tokens weigh `weight`.
  const auto copy_spans = [&](std::uint64_t h, std::span<std::int64_t> w, std::span<float> weights, index_t span_min,
                              index_t span_max, index_t zone, float weight) {
    const index_t n = static_cast<index_t>(w.size()), zones = std::max<index_t>(1, n / zone), Z = n / zones;
    for (index_t z = 0; z < zones; ++z) {
      const std::uint64_t g = llm::detail::draw64(h, static_cast<std::uint64_t>(z), 0x2b, 1);
      const index_t L = span_min + static_cast<index_t>(g % static_cast<std::uint64_t>(span_max - span_min + 1));
      if (Z <= L) continue;
      const index_t d = z * Z + static_cast<index_t>((g >> 8) % static_cast<std::uint64_t>(Z - L));
      if (d < L + 1) continue;
      const index_t from = static_cast<index_t>((g >> 24) % static_cast<std::uint64_t>(d - L));
      std::copy(w.begin() + from, w.begin() + from + L, w.begin() + d);
      if (!weights.empty())
        for (index_t p = d + 2; p < d + L; ++p) weights[static_cast<std::size_t>(p - 1)] = weight;
    }
  };
  // Row `row` of step `step`: corpus text (a share of it with repeated halves), or (a share `tasks`
  // of rows) 1, 2 or 4 task samples of distinct tasks packed back to back (parts of at least 256
  // tokens), whose answer targets weigh `answer_weight` in the loss. The batch and the weight
  // callbacks both rebuild the row: they are pure functions of (step, row).
  const auto make_row = [&](std::uint64_t step, index_t row, std::span<std::int64_t> w, std::span<float> weights) {
    std::fill(weights.begin(), weights.end(), 1.0f);
    const std::uint64_t h = llm::detail::draw64(seed, step, static_cast<std::uint64_t>(row), 0x7a5);
    const double u = static_cast<double>(h % 10000) / 10000.0;
    if (u >= r.tasks) {
      train_text.sample(seed, step, static_cast<std::uint64_t>(row), w);
      if (u < r.tasks + r.repeats) repeat_halves(h, w, weights, false);
      else if (u < r.tasks + r.repeats + r.random_repeats) repeat_halves(h, w, weights, true);
      return;
    }
    const index_t n = static_cast<index_t>(w.size());
    const index_t most = std::clamp<index_t>(n / 256, 1, 4), parts = std::min<index_t>(most, index_t{1} << ((h >> 20) % 3));
    const std::size_t first = (h >> 24) % std::size(llm::text_tasks);
    index_t at = 0;
    for (index_t j = 0; j < parts; ++j) {
      const index_t len = j + 1 < parts ? n / parts : n - at;
      put_task(llm::text_tasks[(first + static_cast<std::size_t>(j)) % std::size(llm::text_tasks)], w, weights, at, len, seed + 1,
               (step * 4096 + static_cast<std::uint64_t>(row)) * 4 + static_cast<std::uint64_t>(j));
      at += len;
    }
  };
  // Row `row` of step `step` of retrieval-phase stage `k`: one task sample (answer weighted), corpus
  // text with copied spans of 8-48 (weighing 2), or corpus text, in the stage's shares.
  const auto phase_row = [&](std::size_t k, std::uint64_t step, index_t row, std::span<std::int64_t> w, std::span<float> weights) {
    const stage& sg = r.retrieval[k];
    std::fill(weights.begin(), weights.end(), 1.0f);
    const std::uint64_t h = llm::detail::draw64(seed + 2 + k, step, static_cast<std::uint64_t>(row), 0x9e0);
    const double u = static_cast<double>(h % 10000) / 10000.0, v = static_cast<double>((h >> 14) % 10000) / 10000.0;
    if (u < sg.tasks) {
      const std::string_view task = v < sg.passkey ? llm::text_tasks[0] : llm::text_tasks[1 + (h >> 28) % 3];
      return put_task(task, w, weights, 0, static_cast<index_t>(w.size()), seed + 10 + k, step * 4096 + static_cast<std::uint64_t>(row));
    }
    train_text.sample(seed + 2 + k, step, static_cast<std::uint64_t>(row), w);
    if (u < sg.tasks + sg.spans) copy_spans(h, w, weights, 8, 48, 128, 2.0f);
  };
  const llm::batch_source source = [&](std::uint64_t step, index_t row, std::span<std::int64_t> w) { make_row(step, row, w, {}); };
  std::vector<std::int64_t> scratch(static_cast<std::size_t>(T + 1));
  const llm::weight_source weights = [&](std::uint64_t step, index_t row, std::span<float> dst) { make_row(step, row, scratch, dst); };
  // the induction warm-up: every row random letters and digits in repeated halves
  const llm::batch_source warm_source = [&](std::uint64_t step, index_t row, std::span<std::int64_t> w) {
    repeat_halves(llm::detail::draw64(seed, step, static_cast<std::uint64_t>(row), 0x3a1), w, {}, true);
  };
  const llm::batch_source heldout_source = [&](std::uint64_t, index_t row, std::span<std::int64_t> w) {
    heldout.sample(seed + 7, 0, static_cast<std::uint64_t>(row), w);
  };

  // ---- model and trainer ---------------------------------------------------------------------
  llm::trainable_model m(r.spec, seed);
  std::printf("model: C %lld, %lld layers, %lld/%lld heads of %lld, MLP %lld, vocabulary %lld, context %lld: %.2f M parameters\n",
              static_cast<long long>(r.spec.hidden), static_cast<long long>(r.spec.layers), static_cast<long long>(r.spec.heads),
              static_cast<long long>(r.spec.kv_heads), static_cast<long long>(r.spec.head_dim),
              static_cast<long long>(r.spec.intermediate), static_cast<long long>(r.spec.vocab),
              static_cast<long long>(r.spec.max_positions), static_cast<double>(r.spec.parameters()) / 1e6);
  std::printf("training: %lld steps of %lld x %lld tokens, AdamW lr %.1e -> %.1e, %.0f%% task rows (answers weigh %.0f), "
              "%.0f%% + %.0f%% corpus / random repeat rows (weigh %.0f), %d threads\n\n",
              static_cast<long long>(r.train.steps), static_cast<long long>(r.train.batch), static_cast<long long>(T),
              static_cast<double>(r.train.lr), static_cast<double>(r.train.min_lr), 100 * r.tasks,
              static_cast<double>(r.answer_weight), 100 * r.repeats, 100 * r.random_repeats, static_cast<double>(r.repeat_weight), threads);
  r.train.progress = stdout;
  if (resume.empty() && r.warm_steps > 0) {
    llm::trainer_config wc = r.train;
    wc.batch = 2 * r.train.batch, wc.tokens = std::min<index_t>(256, T), wc.steps = r.warm_steps, wc.warmup = std::min<index_t>(20, r.warm_steps);
    wc.min_lr = wc.lr, wc.log_every = std::max<index_t>(1, r.warm_steps / 4);
    std::printf("induction warm-up: %lld steps of %lld x %lld tokens of random letters and digits in repeated halves\n",
                static_cast<long long>(wc.steps), static_cast<long long>(wc.batch), static_cast<long long>(wc.tokens));
    llm::trainer warm(m, warm_source, wc);
    warm.run(wc.steps);
    std::printf("\n");
  }
  llm::trainer tr(m, source, r.train, weights);
  if (!resume.empty()) {
    tr.resume(resume);
    std::printf("resumed from %s at step %lld\n", resume.string().c_str(), static_cast<long long>(tr.steps_done()));
  }

  // On a resume the curves go on in ./30_curves.csv (its rows up to the resumed step kept), and the
  // clock from the last kept row.
  double t_offset = 0;
  std::string kept = "step,train_loss_weighted,heldout_bpb,passkey,multikey,kv_recall,copy,seconds\n";
  if (tr.steps_done() > 0) {
    std::ifstream old("30_curves.csv");
    std::string line;
    std::getline(old, line); // header
    while (std::getline(old, line))
      if (line.find(',') != std::string::npos && std::stoll(line) <= tr.steps_done())
        kept += line + '\n', t_offset = std::stod(line.substr(line.rfind(',') + 1));
  }
  std::ofstream curves("30_curves.csv", std::ios::trunc);
  curves << kept;
  const auto t_start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return t_offset + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
  double train_loss = 0;
  index_t loss_n = 0;
  std::vector<double> last_acc(std::size(llm::text_tasks));
  double last_bpb = 0;
  // Held-out bits per byte and retrieval after `step` steps (the main schedule's, then the retrieval
  // phase's), printed and appended to the curves.
  const auto evaluate = [&](index_t step, index_t samples) {
    last_bpb = tr.evaluate(heldout_source, r.eval_windows) / std::log(2.0);
    std::printf("  eval @ %lld: held-out %.3f bits/byte (unigram %.3f);", static_cast<long long>(step), last_bpb, unigram);
    for (std::size_t k = 0; k < std::size(llm::text_tasks); ++k) {
      last_acc[k] = task_accuracy(m, std::string(llm::text_tasks[k]), heldout, T, samples, 99);
      std::printf(" %s %.2f", std::string(llm::text_tasks[k]).c_str(), last_acc[k]);
    }
    std::printf("\n");
    curves << step << ',' << (loss_n ? train_loss / static_cast<double>(loss_n) : 0.0) << ',' << last_bpb;
    for (double a : last_acc) curves << ',' << a;
    curves << ',' << elapsed() << '\n' << std::flush;
    train_loss = 0, loss_n = 0;
  };
  const fs::path ckpt = out / "checkpoint";
  const bool main_left = tr.steps_done() < r.train.steps;
  while (tr.steps_done() < r.train.steps) {
    const auto rec = tr.step();
    train_loss += rec.loss, ++loss_n;
    if (tr.steps_done() % r.eval_every == 0 && tr.steps_done() < r.train.steps) {
      evaluate(tr.steps_done(), r.eval_tasks);
      tr.save(ckpt);
    }
  }
  tr.save(ckpt);
  if (main_left) evaluate(tr.steps_done(), r.retrieval.empty() ? r.final_tasks : r.eval_tasks);

  // ---- the retrieval phase: task samples at growing context ------------------------------------
  // At 1024 tokens the gradient that would teach a head to find the needle is spread over a
  // thousand positions, and 1000 steps with task rows mixed in learned nothing. In a 128-token row
  // the needle has few rivals: a probe on the checkpoint of the main schedule, with every row a
  // passkey sample of 128 tokens, went from 0 to 94% exact match between steps 200 and 300. Each
  // stage then lengthens the rows. Each stage is a fresh AdamW; the phase is not resumable part way
  // (it reruns whole from the main schedule's checkpoint with --resume DIR/checkpoint).
  index_t done = tr.steps_done();
  for (std::size_t k = 0; k < r.retrieval.size(); ++k) {
    const stage& sg = r.retrieval[k];
    std::vector<std::int64_t> phase_scratch(static_cast<std::size_t>(sg.tokens + 1));
    const llm::batch_source src = [&, k](std::uint64_t step, index_t row, std::span<std::int64_t> w) { phase_row(k, step, row, w, {}); };
    const llm::weight_source wsrc = [&, k](std::uint64_t step, index_t row, std::span<float> dst) {
      phase_row(k, step, row, phase_scratch, dst);
    };
    llm::trainer_config c = r.train;
    c.batch = sg.batch, c.tokens = sg.tokens, c.steps = sg.steps, c.warmup = std::min<index_t>(20, sg.steps);
    c.lr = sg.lr, c.min_lr = sg.min_lr, c.log_every = std::max<index_t>(1, std::min<index_t>(r.train.log_every, sg.steps / 4));
    std::printf("\nretrieval phase, stage %zu (%s): %lld steps of %lld x %lld tokens, lr %.1e -> %.1e; rows: %.0f%% tasks, "
                "%.0f%% of them passkeys, %.0f%% corpus with copied spans, the rest corpus\n",
                k + 1, sg.name, static_cast<long long>(sg.steps), static_cast<long long>(sg.batch), static_cast<long long>(sg.tokens),
                static_cast<double>(sg.lr), static_cast<double>(sg.min_lr), 100 * sg.tasks, 100 * sg.passkey, 100 * sg.spans);
    llm::trainer st(m, src, c, wsrc);
    st.run(sg.steps, [&](const llm::step_record& rec) { train_loss += rec.loss, ++loss_n; });
    done += sg.steps;
    evaluate(done, k + 1 == r.retrieval.size() ? r.final_tasks : r.eval_tasks);
  }
  const double minutes = elapsed() / 60.0;
  curves.close();

  // ---- the model folder: BF16 weights, tokenizer, card -----------------------------------------
  fs::create_directories(out);
  {
    std::ofstream f(out / "config.json");
    auto cfg = r.spec.config_json();
    cfg["torch_dtype"] = "bfloat16";
    cfg["bos_token_id"] = llm::byte_eot;
    cfg["eos_token_id"] = llm::byte_eot;
    f << cfg.dump(2) << '\n';
  }
  io::safetensors_writer w;
  w.set_metadata("format", "pt");
  std::vector<array<bf16>> keep;
  for (std::size_t i = 0; i < m.parameters().size(); ++i) {
    keep.push_back(m.parameters().stored<bf16>(m.parameters()[i].name));
    w.add(m.parameters()[i].name, keep.back().cview());
  }
  w.write(out / "model.safetensors");
  llm::write_byte_tokenizer(out / "tokenizer.json");
  {
    std::ofstream card(out / "README.md");
    card << "# tiny-py-lm\n\nA byte-level Llama trained by membound (examples/30_train_tiny_lm.cpp"
         << (full && !smoke ? " --full" : "") << ") on the Python standard library (" << stdlib.filename().string()
         << ") with generated retrieval tasks mixed in.\n\n"
         << "| | |\n|---|---|\n"
         << "| parameters | " << r.spec.parameters() << " |\n"
         << "| shape | C " << r.spec.hidden << ", " << r.spec.layers << " layers, " << r.spec.heads << "/" << r.spec.kv_heads
         << " heads of " << r.spec.head_dim << ", SwiGLU " << r.spec.intermediate << ", vocabulary " << r.spec.vocab
         << ", context " << r.spec.max_positions << " |\n"
         << "| training | " << tr.steps_done() << " steps of " << r.train.batch << " x " << T << " tokens, then the retrieval phase:";
    for (std::size_t k = 0; k < r.retrieval.size(); ++k)
      card << (k ? ", " : " ") << r.retrieval[k].name << " (" << r.retrieval[k].steps << " steps of " << r.retrieval[k].batch << " x "
           << r.retrieval[k].tokens << ")";
    card << "; seed " << seed << ", " << threads << " threads, " << minutes << " minutes |\n"
         << "| training data | " << train_text.documents() << " files, " << train_text.bytes() << " bytes; " << 100 * r.tasks
         << "% of rows generated tasks (answers weigh " << r.answer_weight << "), " << 100 * r.repeats << "% corpus and " << 100 * r.random_repeats << "% random rows with a repeated half, after " << r.warm_steps << " warm-up steps of random repeats |\n"
         << "| held-out data | email/, json/, http/, textwrap.py, fractions.py: " << heldout.bytes() << " bytes |\n"
         << "| held-out bits per byte | " << last_bpb << " (unigram byte model: " << unigram << ") |\n";
    for (std::size_t k = 0; k < std::size(llm::text_tasks); ++k)
      card << "| " << llm::text_tasks[k] << " exact match (context " << T << ", held-out filler) | " << last_acc[k] << " |\n";
    card << "\nRetrieval is teacher-forced exact match of the whole answer on the f32 training copy, at the\n"
         << "end on " << r.final_tasks << " samples per task (" << r.eval_tasks << " during training), needles at\n"
         << "random depths. Weights are stored in BF16 (rounded from the f32 training copy).\n\n"
         << "## Curves (30_curves.csv; steps after " << r.train.steps << " are the retrieval phase's)\n\n"
         << "| step | train loss (weighted) | held-out bits/byte | passkey | multikey | kv_recall | copy | minutes |\n"
         << "|---|---|---|---|---|---|---|---|\n";
    std::ifstream csv("30_curves.csv");
    std::string line;
    std::getline(csv, line); // header
    while (std::getline(csv, line)) {
      std::vector<std::string> f;
      for (std::size_t a = 0, b; a <= line.size(); a = b + 1) {
        b = std::min(line.find(',', a), line.size());
        f.push_back(line.substr(a, b - a));
      }
      if (f.size() != 8) continue;
      char row[256];
      std::snprintf(row, sizeof row, "| %s | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %.0f |", f[0].c_str(), std::stod(f[1]),
                    std::stod(f[2]), std::stod(f[3]), std::stod(f[4]), std::stod(f[5]), std::stod(f[6]), std::stod(f[7]) / 60.0);
      card << row << '\n';
    }
  }
  std::printf("\nwrote %s (config.json, model.safetensors BF16, tokenizer.json, README.md) after %.1f minutes\n",
              out.string().c_str(), minutes);

  // ---- the folder as llm::model sees it: greedy bytes after a prompt ---------------------------
  const llm::model lm = llm::model::load(out);
  const std::string prompt = "import os\n\n\ndef ";
  const std::vector<std::int32_t> ids(prompt.begin(), prompt.end());
  const index_t new_tokens = std::min<index_t>(120, r.spec.max_positions - static_cast<index_t>(ids.size()));
  llm::state st = lm.make_state({.batch = 1, .max_tokens = static_cast<index_t>(ids.size()) + new_tokens});
  llm::generate_options go;
  go.max_new_tokens = new_tokens;
  const auto gen = llm::generate(lm, st, ids, go);
  std::string text = prompt;
  for (const auto t : gen) text += t == llm::byte_eot ? std::string("<|endoftext|>") : std::string(1, static_cast<char>(t));
  std::printf("\nllm::model on %s, greedy:\n----\n%s\n----\n", out.string().c_str(), text.c_str());
  return 0;
}
