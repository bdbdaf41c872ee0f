// SPDX-License-Identifier: MIT
// llm/trainable_model.hpp: the training forward equals llm::model's inference on the saved
// folder; the whole backward (with and without a retention hook) against central finite
// differences; a tiny model overfits a fixed batch; freezing; bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "membound/llm/model.hpp"
#include "membound/llm/trainable_model.hpp"
#include "membound/nn/optim.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

llm::decoder_spec tiny_spec(bool tied) {
  llm::decoder_spec s;
  s.vocab = 13, s.hidden = 12, s.intermediate = 20, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 6;
  s.max_positions = 64, s.tie_embeddings = tied;
  return s;
}

/// Uniform weights in [-a, a] (norm scales in [0.5, 1.5]) so that every gradient is well above
/// float rounding in a finite difference.
void randomize(llm::trainable_model& m, unsigned seed, float a) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-a, a), s(0.5f, 1.5f);
  for (std::size_t i = 0; i < m.parameters().size(); ++i) {
    auto& e = m.parameters()[i];
    for (float& w : e.value.span()) w = e.value.rank() == 1 ? s(gen) : u(gen);
  }
}

std::vector<std::int64_t> random_ids(std::size_t n, index_t vocab, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int64_t> d(0, vocab - 1);
  std::vector<std::int64_t> ids(n);
  for (auto& x : ids) x = d(gen);
  return ids;
}

/// A retention hook with one parameter vector per layer: log beta(b,g,t) = -softplus(w_l . h_t + g),
/// the shape of TRIM-KV's gate (logsigmoid of an affine map) with a 1-unit "MLP".
struct test_hook final : llm::retention_hook {
  index_t heads = 0;
  std::vector<std::vector<double>> w, dw;
  void forward(index_t layer, view<const float> h, view<float> lb) override {
    const auto& wl = w[static_cast<std::size_t>(layer)];
    const index_t B = lb.extent(0), T = lb.extent(2);
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) {
        double z = 0;
        for (index_t c = 0; c < h.extent(1); ++c) z += wl[static_cast<std::size_t>(c)] * h(b * T + t, c);
        for (index_t g = 0; g < heads; ++g) {
          const double a = z + static_cast<double>(g);
          lb(b, g, t) = static_cast<float>(-std::log1p(std::exp(a)));
        }
      }
  }
  void backward(index_t layer, view<const float> h, view<const float> dlb, view<float> dh) override {
    const auto& wl = w[static_cast<std::size_t>(layer)];
    auto& dwl = dw[static_cast<std::size_t>(layer)];
    const index_t B = dlb.extent(0), T = dlb.extent(2);
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) {
        double z = 0;
        for (index_t c = 0; c < h.extent(1); ++c) z += wl[static_cast<std::size_t>(c)] * h(b * T + t, c);
        double dz = 0;
        for (index_t g = 0; g < heads; ++g) dz += -dlb(b, g, t) / (1.0 + std::exp(-(z + static_cast<double>(g))));
        for (index_t c = 0; c < h.extent(1); ++c) {
          dwl[static_cast<std::size_t>(c)] += dz * h(b * T + t, c);
          dh(b * T + t, c) += static_cast<float>(dz * wl[static_cast<std::size_t>(c)]);
        }
      }
  }
};

} // namespace

TEST_CASE("trainable_model: the saved folder loads in llm::model and gives the training forward's logits") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    llm::trainable_model tm(tiny_spec(tied), 7);
    randomize(tm, tied ? 3 : 4, 0.4f);
    const fs::path dir = fs::temp_directory_path() / (tied ? "membound_train_tied" : "membound_train_untied");
    tm.save(dir);
    const index_t B = 2, T = 17;
    const auto ids = random_ids(static_cast<std::size_t>(B * T), 13, 5);
    const auto logits = tm.forward(ids, B, T); // (B T, V)
    const auto m = llm::model::load(dir);
    for (index_t b = 0; b < B; ++b) {
      llm::state s = m.make_state({.batch = 1, .max_tokens = 32, .page_tokens = 4, .chunk = 5});
      std::vector<std::int32_t> tok(static_cast<std::size_t>(T));
      for (index_t t = 0; t < T; ++t) tok[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(ids[static_cast<std::size_t>(b * T + t)]);
      array<float> want({T, 13}); // (T,V)
      m.prefill(s, 0, tok, want.view());
      double worst = 0, scale = 0;
      for (index_t t = 0; t < T; ++t)
        for (index_t j = 0; j < 13; ++j) {
          worst = std::max(worst, static_cast<double>(std::abs(logits(b * T + t, j) - want(t, j))));
          scale = std::max(scale, static_cast<double>(std::abs(want(t, j))));
        }
      CHECK(worst <= 1e-5 * scale);
    }
    // load() gives back the same parameters.
    auto back = llm::trainable_model::load(dir);
    for (std::size_t i = 0; i < tm.parameters().size(); ++i)
      CHECK(std::equal(tm.parameters()[i].value.span().begin(), tm.parameters()[i].value.span().end(),
                       back.parameters()[i].value.span().begin()));
    fs::remove_all(dir);
  }
}

TEST_CASE("trainable_model: backward equals central finite differences of the loss") {
  // L = mean cross-entropy (float forward, double sum of rows): with weights of size ~0.3 the
  // gradients are 1e-3..1e-1 and a central difference with h = 2e-3 resolves them to ~1e-4.
  for (bool with_hook : {false, true}) {
    for (bool tied : {false, true}) {
      CAPTURE(with_hook);
      CAPTURE(tied);
      llm::trainable_model m(tiny_spec(tied), 1);
      randomize(m, 11 + tied, 0.35f);
      const index_t B = 2, T = 9;
      const auto ids = random_ids(static_cast<std::size_t>(B * T), 13, 12);
      auto targets = random_ids(static_cast<std::size_t>(B * T), 13, 13);
      targets[3] = -1; // ignored
      test_hook hook;
      hook.heads = 2;
      std::mt19937 gen(2);
      std::uniform_real_distribution<double> u(-0.3, 0.3);
      hook.w.assign(2, std::vector<double>(12));
      hook.dw.assign(2, std::vector<double>(12, 0.0));
      for (auto& wl : hook.w)
        for (auto& x : wl) x = u(gen);
      llm::retention_hook* hp = with_hook ? &hook : nullptr;
      auto loss = [&] {
        m.forward(ids, B, T, hp);
        return static_cast<double>(m.cross_entropy(targets));
      };
      m.parameters().zero_grad();
      loss();
      m.backward(m.dlogits());
      const double h = 2e-3;
      int checked = 0, bad = 0;
      auto check_one = [&](float* v, double g) {
        const float keep = *v;
        *v = keep + static_cast<float>(h);
        const double up = loss();
        *v = keep - static_cast<float>(h);
        const double down = loss();
        *v = keep;
        const double fd = (up - down) / (2 * h);
        ++checked;
        if (std::abs(fd - g) > 3e-4 + 2e-2 * std::abs(g)) {
          ++bad;
          MESSAGE("fd ", fd, " analytic ", g);
        }
      };
      // Every parameter tensor, a strided sample of its entries.
      for (std::size_t k = 0; k < m.parameters().size(); ++k) {
        auto& e = m.parameters()[k];
        CAPTURE(e.name);
        for (index_t i = 0; i < e.value.size(); i += 7) check_one(&e.value[i], e.grad[i]);
      }
      if (with_hook)
        for (std::size_t l = 0; l < 2; ++l)
          for (std::size_t c = 0; c < 12; c += 2) {
            double& w = hook.w[l][c];
            const double keep = w;
            w = keep + h;
            const double up = loss();
            w = keep - h;
            const double down = loss();
            w = keep;
            const double fd = (up - down) / (2 * h), g = hook.dw[l][c];
            ++checked;
            if (std::abs(fd - g) > 3e-4 + 2e-2 * std::abs(g)) {
              ++bad;
              MESSAGE("hook layer ", l, " fd ", fd, " analytic ", g);
            }
          }
      CHECK(checked > 100);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("trainable_model: a tiny model overfits a fixed batch; frozen parameters keep their gradients untouched") {
  llm::decoder_spec s;
  s.vocab = 16, s.hidden = 32, s.intermediate = 64, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 8, s.max_positions = 32;
  llm::trainable_model m(s, 3);
  const index_t B = 4, T = 24;
  const auto ids = random_ids(static_cast<std::size_t>(B * T), 16, 21);
  std::vector<std::int64_t> targets(ids.begin() + 1, ids.end());
  targets.push_back(0);
  const nn::adamw opt{.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.0f};
  std::vector<nn::adamw::state> st(m.parameters().size());
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    m.parameters().zero_grad();
    m.forward(ids, B, T);
    last = m.cross_entropy(targets);
    if (step == 0) first = last;
    m.backward(m.dlogits());
    for (std::size_t k = 0; k < m.parameters().size(); ++k)
      opt.step(m.parameters()[k].value.span(), m.parameters()[k].grad.span(), st[k]);
  }
  MESSAGE("overfit: loss ", first, " -> ", last);
  CHECK(first > 2.5f); // about log 16 = 2.77 at init
  CHECK(last < 0.05f);

  // Freezing: frozen gradients stay zero, the others equal those of the unfrozen model.
  m.parameters().zero_grad();
  m.forward(ids, B, T);
  m.cross_entropy(targets);
  m.backward(m.dlogits());
  std::vector<std::vector<float>> full;
  for (std::size_t k = 0; k < m.parameters().size(); ++k)
    full.emplace_back(m.parameters()[k].grad.span().begin(), m.parameters()[k].grad.span().end());
  CHECK(m.freeze("mlp.") == 6);
  CHECK(m.freeze("lm_head") == 1);
  CHECK(m.frozen("model.layers.1.mlp.up_proj.weight"));
  CHECK_FALSE(m.frozen("model.layers.1.self_attn.q_proj.weight"));
  m.parameters().zero_grad();
  m.forward(ids, B, T);
  m.cross_entropy(targets);
  m.backward(m.dlogits());
  for (std::size_t k = 0; k < m.parameters().size(); ++k) {
    const auto& e = m.parameters()[k];
    CAPTURE(e.name);
    const bool frozen = m.frozen(e.name);
    const auto g = e.grad.span();
    if (frozen) CHECK(std::all_of(g.begin(), g.end(), [](float x) { return x == 0.0f; }));
    else CHECK(std::equal(g.begin(), g.end(), full[k].begin()));
  }
  CHECK_THROWS_AS(m.frozen("nope"), lookup_error);
}

TEST_CASE("trainable_model: bad input is a typed error") {
  llm::trainable_model m(tiny_spec(false), 0);
  const std::vector<std::int64_t> ids = {1, 2, 3, 4};
  CHECK_THROWS_AS(m.forward(ids, 1, 5), shape_error);
  const std::vector<std::int64_t> bad = {1, 2, 13, 4};
  CHECK_THROWS_WITH_AS(m.forward(bad, 1, 4), doctest::Contains("id 13"), lookup_error);
  const std::vector<std::int64_t> long_ids(65, 1);
  CHECK_THROWS_AS(m.forward(long_ids, 1, 65), config_error);
  m.forward(ids, 2, 2);
  const std::vector<std::int64_t> ignored(4, -1);
  CHECK_THROWS_WITH_AS(m.cross_entropy(ignored), doctest::Contains("every target is ignored"), shape_error);
  const std::vector<std::int64_t> past_vocab = {1, 13, 2, 3};
  CHECK_THROWS_WITH_AS(m.cross_entropy(past_vocab), doctest::Contains("target 13"), lookup_error);
  array<float> wrong({4, 12}); // (N,C) instead of (N,V)
  CHECK_THROWS_AS(m.backward(wrong.cview()), shape_error);
  llm::decoder_spec s = tiny_spec(false);
  s.heads = 3;
  CHECK_THROWS_WITH_AS(llm::trainable_model(s, 0), doctest::Contains("kv_heads"), config_error);
  // A checkpoint of another shape names the tensor.
  const fs::path dir = fs::temp_directory_path() / "membound_train_mismatch";
  m.save(dir);
  llm::decoder_spec wider = tiny_spec(false);
  wider.intermediate = 24;
  {
    std::ofstream f(dir / "config.json");
    f << wider.config_json().dump();
  }
  CHECK_THROWS_WITH_AS(llm::trainable_model::load(dir), doctest::Contains("mlp.gate_proj.weight"), shape_error);
  fs::remove_all(dir);
  CHECK_THROWS_AS(llm::trainable_model::load(dir), io_error);
}

TEST_CASE("trainable_model: weighted cross-entropy is the weighted mean; weight 0 ignores a target") {
  llm::trainable_model m(tiny_spec(false), 3);
  randomize(m, 4, 0.3f);
  const std::size_t n = 12;
  const auto ids = random_ids(n, 13, 5), targets = random_ids(n, 13, 6);
  m.forward(ids, 2, 6);
  // hand reference: per-row losses from the logits, in double
  std::vector<double> row(n);
  for (std::size_t r = 0; r < n; ++r) {
    const auto z = m.logits();
    double mx = -1e300, s = 0;
    for (index_t j = 0; j < 13; ++j) mx = std::max(mx, static_cast<double>(z(static_cast<index_t>(r), j)));
    for (index_t j = 0; j < 13; ++j) s += std::exp(static_cast<double>(z(static_cast<index_t>(r), j)) - mx);
    row[r] = mx + std::log(s) - static_cast<double>(z(static_cast<index_t>(r), targets[r]));
  }
  std::vector<float> w(n);
  double num = 0, den = 0;
  for (std::size_t r = 0; r < n; ++r) {
    w[r] = r % 3 == 0 ? 0.0f : static_cast<float>(1 + r % 4);
    num += w[r] * row[r], den += w[r];
  }
  const float weighted = m.cross_entropy(targets, w);
  CHECK(weighted == doctest::Approx(num / den).epsilon(1e-5));
  const std::vector<float> d_weighted(m.dlogits().data(), m.dlogits().data() + n * 13);
  // weight 0 == ignored target; the same weight everywhere == the plain mean
  auto masked = targets;
  for (std::size_t r = 0; r < n; r += 3) masked[r] = -1;
  std::vector<float> w2(w);
  for (std::size_t r = 0; r < n; r += 3) w2[r] = 5.0f; // ignored targets' weights do not count
  CHECK(m.cross_entropy(masked, w2) == doctest::Approx(num / den).epsilon(1e-5));
  for (std::size_t i = 0; i < d_weighted.size(); ++i) CHECK(m.dlogits().data()[i] == doctest::Approx(d_weighted[i]).epsilon(1e-5));
  const float plain = m.cross_entropy(targets);
  const std::vector<float> twos(n, 2.0f);
  CHECK(m.cross_entropy(targets, twos) == doctest::Approx(plain).epsilon(1e-6));
  // bad weights
  std::vector<float> neg(n, 1.0f);
  neg[4] = -1.0f;
  CHECK_THROWS_WITH_AS(m.cross_entropy(targets, neg), doctest::Contains("weight -1"), config_error);
  neg[4] = std::nanf("");
  CHECK_THROWS_AS(m.cross_entropy(targets, neg), config_error);
  CHECK_THROWS_WITH_AS(m.cross_entropy(targets, std::vector<float>(n, 0.0f)), doctest::Contains("weighted 0"), shape_error);
  CHECK_THROWS_WITH_AS(m.cross_entropy(targets, std::vector<float>(5, 1.0f)), doctest::Contains("5 weights"), shape_error);
}

// ------------------------------------------------------------------------------------------------
// Corpus, byte tokenizer, synthetic tasks, trainer
// ------------------------------------------------------------------------------------------------

#include "membound/llm/corpus.hpp"
#include "membound/llm/synthetic_tasks.hpp"
#include "membound/llm/tokenizer.hpp"
#include "membound/llm/trainer.hpp"

TEST_CASE("byte tokenizer: every byte is one token, and decoding gives the bytes back") {
  const fs::path path = fs::temp_directory_path() / "membound_byte_tokenizer.json";
  llm::write_byte_tokenizer(path);
  const auto tok = llm::tokenizer::load(path);
  std::string all;
  for (int b = 1; b < 128; ++b) all.push_back(static_cast<char>(b)); // tokenizers take valid UTF-8 text
  all += "def f(x):\n    return x  # d\xc3\xa9j\xc3\xa0 vu \xe2\x9c\x93 \xf0\x9f\x90\x8d\n";
  const auto ids = tok.encode(all, false);
  REQUIRE(ids.size() == all.size());
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(ids[i] == static_cast<unsigned char>(all[i]));
  CHECK(tok.decode(ids) == all);
  CHECK(tok.token_to_id("<|endoftext|>") == llm::byte_eot);
  fs::remove(path);
}

TEST_CASE("byte_corpus: files in sorted order, separators, held-out selection, windows by hash, errors") {
  const fs::path root = fs::temp_directory_path() / "membound_corpus_test";
  fs::remove_all(root);
  fs::create_directories(root / "pkg");
  auto write = [&](const fs::path& p, const std::string& s) { std::ofstream(root / p) << s; };
  write("b.py", "bb");
  write("a.py", "a");
  write("pkg/c.py", "ccc");
  write("notes.txt", "ignored");
  const auto all = llm::byte_corpus::from_directory(root, ".py");
  CHECK(all.documents() == 3);
  CHECK(all.bytes() == 6);
  REQUIRE(all.size() == 9);
  const std::int32_t want[] = {'a', llm::byte_eot, 'b', 'b', llm::byte_eot, 'c', 'c', 'c', llm::byte_eot};
  for (index_t i = 0; i < 9; ++i) CHECK(all[i] == want[i]);
  const auto held = llm::byte_corpus::from_directory(root, ".py", [](const std::string& rel) { return rel.rfind("pkg/", 0) == 0; });
  CHECK(held.documents() == 1);
  std::vector<std::int64_t> w(4), w2(4);
  all.sample(7, 3, 1, w);
  all.sample(7, 3, 1, w2);
  CHECK(w == w2);
  CHECK_THROWS_AS(all.window(7, w), lookup_error);
  std::vector<std::int64_t> too_long(10);
  CHECK_THROWS_AS(all.sample(1, 1, 1, too_long), config_error);
  CHECK_THROWS_WITH_AS(llm::byte_corpus::from_directory(root / "missing", ".py"), doctest::Contains("missing"), io_error);
  CHECK_THROWS_AS(llm::byte_corpus::from_directory(root, ".rs"), config_error);
  const fs::path gone = root / "gone.py";
  CHECK_THROWS_WITH_AS(llm::byte_corpus::from_files(std::span<const fs::path>(&gone, 1)), doctest::Contains("gone.py"), io_error);
  fs::remove_all(root);
  // The embedded model's split of the Python standard library.
  using split = llm::python_stdlib_split;
  CHECK(split::train("os.py"));
  CHECK(split::train("asyncio/tasks.py"));
  CHECK(split::test("json/decoder.py"));
  CHECK(split::test("textwrap.py"));
  CHECK_FALSE(split::train("json/decoder.py"));
  CHECK_FALSE(split::code("test/test_os.py"));
  CHECK_FALSE(split::code("lib2to3/tests/data/x.py"));
  CHECK_FALSE(split::code("encodings/cp1252.py"));
}

TEST_CASE("make_text_task: exact lengths, the answer stated in the needle, reproducible, typed errors") {
  std::string filler;
  for (int i = 0; i < 400; ++i) filler += "x = " + std::to_string(i * 7919 % 1000) + "\n";
  const auto corpus = llm::byte_corpus::from_text(filler);
  for (const std::string_view task : llm::text_tasks) {
    CAPTURE(task);
    const auto s = llm::make_text_task(task, 300, corpus, 5, 11);
    CHECK(static_cast<index_t>(s.tokens.size()) == 300);
    CHECK(s.answer_end == 300);
    REQUIRE(s.answer_begin < s.answer_end);
    const std::string text(s.tokens.begin(), s.tokens.end());
    const std::string answer = text.substr(static_cast<std::size_t>(s.answer_begin));
    CHECK(text.find(answer) < static_cast<std::size_t>(s.answer_begin)); // stated earlier
    const auto again = llm::make_text_task(task, 300, corpus, 5, 11);
    CHECK(again.tokens == s.tokens);
    CHECK(llm::make_text_task(task, 300, corpus, 5, 12).tokens != s.tokens);
    const auto q = llm::to_retrieval(s);
    CHECK(q.prompt.size() + q.answer.size() == 300);
  }
  const auto p = llm::make_text_task("passkey", 200, corpus, 1, 1, 0.0);
  CHECK(std::string(p.tokens.begin(), p.tokens.begin() + 19) == "\n# The pass key is ");
  CHECK_THROWS_WITH_AS(llm::make_text_task("sudoku", 300, corpus, 1, 1), doctest::Contains("unknown task"), config_error);
  CHECK_THROWS_WITH_AS(llm::make_text_task("multikey", 60, corpus, 1, 1), doctest::Contains("too few"), config_error);
}

TEST_CASE("trainer: a resumed run is bit-identical to an uninterrupted one; the loss falls") {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "def f" + std::to_string(i % 17) + "(x):\n    return x * " + std::to_string(i % 5) + "\n";
  const auto corpus = llm::byte_corpus::from_text(text);
  llm::decoder_spec s;
  s.vocab = llm::byte_vocab_size, s.hidden = 32, s.intermediate = 48, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 8;
  s.max_positions = 64;
  const llm::batch_source src = [&](std::uint64_t step, index_t row, std::span<std::int64_t> out) {
    corpus.sample(42, step, static_cast<std::uint64_t>(row), out);
  };
  for (bool muon : {false, true}) {
    CAPTURE(muon);
    llm::trainer_config cfg;
    cfg.batch = 3, cfg.tokens = 32, cfg.steps = 40, cfg.warmup = 4, cfg.lr = 3e-3f, cfg.min_lr = 3e-4f, cfg.muon = muon;
    cfg.progress = nullptr;
    llm::trainable_model a(s, 9);
    llm::trainer ta(a, src, cfg);
    ta.run(6);
    llm::trainable_model b(s, 9);
    llm::trainer tb(b, src, cfg);
    tb.run(3);
    const fs::path dir = fs::temp_directory_path() / "membound_trainer_ckpt";
    tb.save(dir);
    llm::trainable_model c(s, 123); // other weights: resume must overwrite them
    llm::trainer tc(c, src, cfg);
    tc.resume(dir);
    CHECK(tc.steps_done() == 3);
    tc.run(6);
    for (std::size_t i = 0; i < a.parameters().size(); ++i) {
      CAPTURE(a.parameters()[i].name);
      const auto x = a.parameters()[i].value.span(), y = c.parameters()[i].value.span();
      CHECK(std::equal(x.begin(), x.end(), y.begin()));
    }
    CHECK(ta.history().back().loss == tc.history().back().loss);
    // The checkpoint folder is a model llm::model loads.
    CHECK_NOTHROW(llm::model::load(dir));
    // Another optimiser's checkpoint is refused.
    cfg.muon = !muon;
    llm::trainable_model d(s, 1);
    llm::trainer td(d, src, cfg);
    CHECK_THROWS_AS(td.resume(dir), config_error);
    fs::remove_all(dir);
    // Training on: the loss falls well below the uniform log 257 = 5.55.
    ta.run(40);
    double head = 0, tail = 0;
    for (int i = 0; i < 5; ++i) head += ta.history()[static_cast<std::size_t>(i)].loss, tail += ta.history()[static_cast<std::size_t>(35 + i)].loss;
    MESSAGE("trainer (muon ", muon, "): loss ", head / 5, " -> ", tail / 5);
    CHECK(tail < 0.6 * head);
    CHECK(ta.evaluate(src, 4, 999) < 0.6 * head / 5);
  }
  {
    // a weight source: all ones gives the unweighted run bit for bit; other weights change it
    llm::trainer_config cfg;
    cfg.batch = 2, cfg.tokens = 32, cfg.steps = 4, cfg.warmup = 1, cfg.progress = nullptr;
    const llm::weight_source ones = [](std::uint64_t, index_t, std::span<float> w) { std::fill(w.begin(), w.end(), 1.0f); };
    const llm::weight_source tail = [](std::uint64_t, index_t, std::span<float> w) {
      for (std::size_t j = 0; j < w.size(); ++j) w[j] = j + 8 >= w.size() ? 10.0f : 1.0f;
    };
    llm::trainable_model a(s, 2), b(s, 2), c(s, 2);
    llm::trainer ta(a, src, cfg), tb(b, src, cfg, ones), tc(c, src, cfg, tail);
    ta.run(4), tb.run(4), tc.run(4);
    for (std::size_t i = 0; i < 4; ++i) CHECK(ta.history()[i].loss == tb.history()[i].loss);
    CHECK(ta.history()[0].loss != tc.history()[0].loss);
    const auto x = a.parameters()[0].value.span(), y = b.parameters()[0].value.span();
    CHECK(std::equal(x.begin(), x.end(), y.begin()));
  }
  llm::trainable_model m(s, 0);
  llm::trainer_config bad;
  bad.warmup = 2000;
  CHECK_THROWS_AS(llm::trainer(m, src, bad), config_error);
}

// ------------------------------------------------------------------------------------------------
// TRIM-KV gate distillation
// ------------------------------------------------------------------------------------------------

#include "membound/llm/gate_distillation.hpp"

TEST_CASE("capacity_loss: hand-computed value and central finite differences in double") {
  // One row, T = 3, log beta = (a, b, c): S_1 = 1, S_2 = e^a + 1, S_3 = e^{2a} + e^b + 1.
  const double a = -0.1, b = -0.5, c = -2.0, M = 1.5;
  const double lbd[] = {a, b, c};
  const view<const double> lb(lbd, {1, 1, 3});
  const double s2 = std::exp(a) + 1, s3 = std::exp(2 * a) + std::exp(b) + 1;
  const double want = ((s2 > M ? (s2 - M) / 2 : 0) + (s3 > M ? (s3 - M) / 3 : 0)) / 3;
  CHECK(llm::capacity_loss<double>(lb, M) == doctest::Approx(want).epsilon(1e-14));
  // Gradients on random rows.
  std::mt19937 gen(4);
  std::uniform_real_distribution<double> u(-0.6, -0.001);
  array<double> x({2, 3, 17}), g({2, 3, 17}); // (B,G,T)
  for (auto& v : x.span()) v = u(gen);
  g.fill(0.0);
  const double M2 = 3.0;
  llm::capacity_loss<double>(x.cview(), M2, g.view(), 2.0);
  const double h = 1e-6;
  for (index_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = llm::capacity_loss<double>(x.cview(), M2);
    x[i] = keep - h;
    const double down = llm::capacity_loss<double>(x.cview(), M2);
    x[i] = keep;
    CHECK(std::abs(2.0 * (up - down) / (2 * h) - g[i]) <= 1e-7 * (1 + std::abs(g[i])));
  }
  // The float (SIMD exp) path agrees.
  array<float> xf({2, 3, 17}), gf({2, 3, 17});
  for (index_t i = 0; i < x.size(); ++i) xf[i] = static_cast<float>(x[i]);
  gf.fill(0.0f);
  CHECK(llm::capacity_loss<float>(xf.cview(), 3.0f, gf.view(), 2.0f) ==
        doctest::Approx(llm::capacity_loss<double>(x.cview(), M2)).epsilon(1e-5));
  for (index_t i = 0; i < x.size(); ++i) CHECK(gf[i] == doctest::Approx(g[i]).epsilon(1e-4).scale(1e-3));
  CHECK_THROWS_AS(llm::capacity_loss<double>(x.cview(), -1.0), config_error);
}

TEST_CASE("gate distillation: gate gradients equal finite differences; training lowers the loss; gates load in kv/") {
  llm::decoder_spec s = tiny_spec(false);
  llm::trainable_model m(s, 2);
  randomize(m, 17, 0.35f);
  const index_t B = 2, T = 24;
  const auto ids = random_ids(static_cast<std::size_t>(B * T), 13, 31);
  std::vector<std::int64_t> targets(ids.begin() + 1, ids.end());
  targets.push_back(-1);
  llm::distill_config cfg;
  cfg.capacity = 4.0f, cfg.intermediate = 16, cfg.bias_init = 2.0f, cfg.lr = 1e-2f, cfg.weight_decay = 0.0f;
  llm::trainable_gates gates(s, cfg, 5);
  for (std::size_t k = 0; k < gates.parameters().size(); ++k) // weights large enough for visible gradients
    if (gates.parameters()[k].value.rank() == 2)
      for (float& w : gates.parameters()[k].value.span()) w *= 10.0f;
  // The distillation loss as a function of the gates, and its gradient through the frozen model.
  m.freeze("");
  std::vector<float> teacher;
  auto loss = [&](bool backward) {
    const auto t = m.forward(ids, B, T);
    teacher.assign(t.data(), t.data() + t.size());
    gates.parameters().zero_grad();
    m.forward(ids, B, T, &gates);
    double l = m.cross_entropy(targets);
    std::vector<float> dq(teacher.size());
    const index_t V = s.vocab;
    l += nn::kl_categorical<float>(view<const float>(teacher.data(), {B * T, V}), m.logits(), view<float>(), view<float>(dq.data(), {B * T, V}));
    l += gates.last_capacity_loss();
    if (backward) {
      auto d = m.dlogits();
      for (std::size_t i = 0; i < dq.size(); ++i) d.data()[i] += dq[i];
      m.backward(d);
    }
    return l;
  };
  loss(true);
  std::vector<std::vector<float>> grad;
  for (std::size_t k = 0; k < gates.parameters().size(); ++k)
    grad.emplace_back(gates.parameters()[k].grad.span().begin(), gates.parameters()[k].grad.span().end());
  const double h = 2e-3;
  int bad = 0, checked = 0;
  for (std::size_t k = 0; k < gates.parameters().size(); ++k) {
    auto& e = gates.parameters()[k];
    for (index_t i = 0; i < e.value.size(); i += 5) {
      const float keep = e.value[i];
      e.value[i] = keep + static_cast<float>(h);
      const double up = loss(false);
      e.value[i] = keep - static_cast<float>(h);
      const double down = loss(false);
      e.value[i] = keep;
      const double fd = (up - down) / (2 * h), g = grad[k][static_cast<std::size_t>(i)];
      ++checked;
      if (std::abs(fd - g) > 3e-4 + 2e-2 * std::abs(g)) {
        ++bad;
        MESSAGE(e.name, "[", i, "] fd ", fd, " analytic ", g);
      }
    }
  }
  CHECK(checked > 50);
  CHECK(bad == 0);

  // Training: the total loss falls.
  llm::gate_distiller dist(m, gates, cfg);
  const auto first = dist.step(ids, targets, B, T);
  llm::distill_record last;
  for (int i = 0; i < 60; ++i) last = dist.step(ids, targets, B, T);
  MESSAGE("distillation: total ", first.total, " (kl ", first.kl, ", ntp ", first.ntp, ", cap ", first.capacity, ") -> ", last.total,
          " (kl ", last.kl, ", ntp ", last.ntp, ", cap ", last.capacity, ")");
  CHECK(first.capacity > 0.1f);
  CHECK(last.total < 0.9f * first.total);
  CHECK(last.capacity < 0.2f * first.capacity);
  CHECK(m.frozen("model.embed_tokens.weight"));
  // The saved gates load under kv::retention_gate's names and give the same log beta.
  const fs::path file = fs::temp_directory_path() / "membound_distilled_gates.safetensors";
  gates.save(file);
  nn::parameters p;
  auto g0 = kv::retention_gate::make(p, llm::trainable_gates::prefix(0), s.hidden, s.kv_heads, cfg.intermediate);
  auto g1 = kv::retention_gate::make(p, llm::trainable_gates::prefix(1), s.hidden, s.kv_heads, cfg.intermediate);
  (void)g1;
  p.load(file, true);
  gates.with_capacity = false;
  m.forward(ids, B, T, &gates);
  array<float> lb({B * T, s.kv_heads}); // (N,G)
  g0.forward(m.attention_input(0), lb.view());
  const auto mine = gates.log_beta(0); // (B,G,T)
  for (index_t r = 0; r < B * T; ++r)
    for (index_t k = 0; k < s.kv_heads; ++k) CHECK(lb(r, k) == doctest::Approx(mine(r / T, k, r % T)).epsilon(1e-5));
  // ... and through llm::retention_gates, what llm::eviction's trim_kv reads.
  const fs::path dir = fs::temp_directory_path() / "membound_distilled_model";
  m.save(dir);
  CHECK_NOTHROW(llm::retention_gates::load(file, io::load_model_config(dir / "config.json")));
  fs::remove_all(dir);
  fs::remove(file);
}
