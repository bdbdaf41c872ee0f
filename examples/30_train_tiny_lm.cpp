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
// Model (--full): vocabulary 257 (bytes + <|endoftext|>), C 256, 6 layers, 8 heads / 4 KV heads of
// 32, SwiGLU 704, RoPE theta 10000, context 1024, untied: 4.56 M parameters.
// Training (--full): 1000 steps (--steps) of 8 sequences of 1024 tokens, AdamW (lr 2e-3 -> 2e-4
// cosine, warm-up 100, betas 0.9 / 0.95, weight decay 0.1 on matrices), clip 1.0, seed 0.
// Evaluation every 250 steps: held-out bits per byte (32 windows of 1024 from the held-out files)
// and exact-match retrieval per task (16 samples each with held-out filler, teacher-forced argmax
// over the answer, which equals greedy decoding's exact match), written to 30_curves.csv; at the
// end the same with 100 samples per task, the figures of the card. Then the folder DIR (default
// ./tiny-py-lm) holds the model in Hugging Face layout (config.json, model.safetensors in BF16
// for the repository's 16 MB limit, tokenizer.json) and a model card README.md with the recipe,
// the figures and the curves (its minutes exclude the warm-up, about 6 on 2 threads);
// DIR/checkpoint holds the f32 weights and optimiser state for --resume. The committed
// models/tiny-py-lm is this run (35 + 6 minutes on machine B, 2 threads).
//
// Without --full (and under MEMBOUND_SMOKE=1, the smoke test), a small shape (C 64, 2 layers,
// context 128) trains for 30 steps on a tenth of the corpus: the recipe end to end in seconds,
// figures meaningless.
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
};

recipe full_recipe() {
  recipe r;
  r.spec.vocab = llm::byte_vocab_size, r.spec.hidden = 256, r.spec.intermediate = 704, r.spec.layers = 6;
  r.spec.heads = 8, r.spec.kv_heads = 4, r.spec.head_dim = 32, r.spec.max_positions = 1024;
  r.train.batch = 8, r.train.tokens = 1024, r.train.steps = 1000, r.train.warmup = 100;
  r.train.lr = 2e-3f, r.train.min_lr = 2e-4f, r.train.log_every = 25;
  return r;
}
recipe small_recipe() {
  recipe r;
  r.spec.vocab = llm::byte_vocab_size, r.spec.hidden = 64, r.spec.intermediate = 160, r.spec.layers = 2;
  r.spec.heads = 4, r.spec.kv_heads = 2, r.spec.head_dim = 16, r.spec.max_positions = 128;
  r.train.batch = 4, r.train.tokens = 128, r.train.steps = 30, r.train.warmup = 5, r.train.log_every = 10;
  r.train.lr = 3e-3f, r.train.min_lr = 3e-4f;
  r.warm_steps = 5, r.eval_every = 15, r.eval_windows = 8, r.eval_tasks = 4, r.final_tasks = 4, r.corpus_share = 0.1;
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
  // Row `row` of step `step`: corpus text (a share of it with repeated halves), or (a share `tasks`
  // of rows) 1, 2 or 4 task samples of distinct tasks packed back to back (parts of at least 256
  // tokens), whose answer targets weigh `answer_weight` in the loss. The batch and the weight
  // callbacks both rebuild the row: they are pure functions of (step, row).
  const auto make_row = [&](std::uint64_t step, index_t row, std::span<std::int64_t> w, std::span<float> weights) {
    std::fill(weights.begin(), weights.end(), 1.0f);
    const std::uint64_t h = llm::detail::draw64(seed, step, static_cast<std::uint64_t>(row), 0x7a5);
    const double u = static_cast<double>(h % 10000) / 10000.0;
    const index_t n = static_cast<index_t>(w.size());
    if (u >= r.tasks) {
      train_text.sample(seed, step, static_cast<std::uint64_t>(row), w);
      if (u < r.tasks + r.repeats) repeat_halves(h, w, weights, false);
      else if (u < r.tasks + r.repeats + r.random_repeats) repeat_halves(h, w, weights, true);
      return;
    }
    const index_t most = std::clamp<index_t>(n / 256, 1, 4), parts = std::min<index_t>(most, index_t{1} << ((h >> 20) % 3));
    const std::size_t first = (h >> 24) % std::size(llm::text_tasks);
    index_t at = 0;
    for (index_t j = 0; j < parts; ++j) {
      const index_t len = j + 1 < parts ? n / parts : n - at;
      const auto s = llm::make_text_task(llm::text_tasks[(first + static_cast<std::size_t>(j)) % std::size(llm::text_tasks)], len,
                                         train_text, seed + 1, (step * 4096 + static_cast<std::uint64_t>(row)) * 4 + static_cast<std::uint64_t>(j));
      std::copy(s.tokens.begin(), s.tokens.end(), w.begin() + at);
      if (!weights.empty())
        for (index_t p = s.answer_begin; p < s.answer_end; ++p) weights[static_cast<std::size_t>(at + p - 1)] = r.answer_weight;
      at += len;
    }
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

  std::ofstream curves("30_curves.csv", tr.steps_done() == 0 ? std::ios::trunc : std::ios::app);
  if (tr.steps_done() == 0) curves << "step,train_loss_weighted,heldout_bpb,passkey,multikey,kv_recall,copy,seconds\n";
  const auto t_start = std::chrono::steady_clock::now();
  double train_loss = 0;
  index_t loss_n = 0;
  std::vector<double> last_acc(std::size(llm::text_tasks));
  double last_bpb = 0;
  std::vector<std::string> eval_rows; // the card's curve table, one markdown row per evaluation
  const auto evaluate = [&](index_t samples) {
    last_bpb = tr.evaluate(heldout_source, r.eval_windows) / std::log(2.0);
    std::printf("  eval @ %lld: held-out %.3f bits/byte (unigram %.3f);", static_cast<long long>(tr.steps_done()), last_bpb, unigram);
    for (std::size_t k = 0; k < std::size(llm::text_tasks); ++k) {
      last_acc[k] = task_accuracy(m, std::string(llm::text_tasks[k]), heldout, T, samples, 99);
      std::printf(" %s %.2f", std::string(llm::text_tasks[k]).c_str(), last_acc[k]);
    }
    std::printf("\n");
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    curves << tr.steps_done() << ',' << (loss_n ? train_loss / static_cast<double>(loss_n) : 0.0) << ',' << last_bpb;
    for (double a : last_acc) curves << ',' << a;
    curves << ',' << secs << '\n' << std::flush;
    char row[256];
    std::snprintf(row, sizeof row, "| %lld | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %.0f |", static_cast<long long>(tr.steps_done()),
                  loss_n ? train_loss / static_cast<double>(loss_n) : 0.0, last_bpb, last_acc[0], last_acc[1], last_acc[2], last_acc[3],
                  secs / 60.0);
    eval_rows.emplace_back(row);
    train_loss = 0, loss_n = 0;
  };
  const fs::path ckpt = out / "checkpoint";
  while (tr.steps_done() < r.train.steps) {
    const auto rec = tr.step();
    train_loss += rec.loss, ++loss_n;
    if (tr.steps_done() % r.eval_every == 0 && tr.steps_done() < r.train.steps) {
      evaluate(r.eval_tasks);
      tr.save(ckpt);
    }
  }
  tr.save(ckpt);
  evaluate(r.final_tasks);
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 60.0;

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
         << "| training | " << tr.steps_done() << " steps of " << r.train.batch << " x " << T << " tokens, seed " << seed
         << ", " << threads << " threads, " << minutes << " minutes |\n"
         << "| training data | " << train_text.documents() << " files, " << train_text.bytes() << " bytes; " << 100 * r.tasks
         << "% of rows generated tasks (answers weigh " << r.answer_weight << "), " << 100 * r.repeats << "% corpus and " << 100 * r.random_repeats << "% random rows with a repeated half, after " << r.warm_steps << " warm-up steps of random repeats |\n"
         << "| held-out data | email/, json/, http/, textwrap.py, fractions.py: " << heldout.bytes() << " bytes |\n"
         << "| held-out bits per byte | " << last_bpb << " (unigram byte model: " << unigram << ") |\n";
    for (std::size_t k = 0; k < std::size(llm::text_tasks); ++k)
      card << "| " << llm::text_tasks[k] << " exact match (context " << T << ", held-out filler) | " << last_acc[k] << " |\n";
    card << "\nRetrieval is teacher-forced exact match of the whole answer on the f32 training copy, at the\n"
         << "end on " << r.final_tasks << " samples per task (" << r.eval_tasks << " during training), needles at\n"
         << "random depths. Weights are stored in BF16 (rounded from the f32 training copy).\n\n"
         << "## Curves (this run" << (resume.empty() ? "" : ", since the resume") << "; also 30_curves.csv)\n\n"
         << "| step | train loss (weighted) | held-out bits/byte | passkey | multikey | kv_recall | copy | minutes |\n"
         << "|---|---|---|---|---|---|---|---|\n";
    for (const auto& row : eval_rows) card << row << '\n';
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
