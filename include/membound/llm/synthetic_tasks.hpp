// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `llm::make_text_task`: long-range retrieval and copying tasks as text in the byte
/// vocabulary, embedded in filler drawn from a `byte_corpus`, for training (mixed into batches so
/// that retrieval heads form) and for evaluation (`to_retrieval` turns a sample into an
/// `eval::retrieval_case`: the prompt is everything before the answer, scored by exact match).
///
/// Tasks (the needle and question lines are Python comments, so they read like the corpus):
///  - "passkey": `# The pass key is 48213. Remember it. 48213 is the pass key.` at a depth of the
///    filler; the text ends with `# What is the pass key? The pass key is 48213` (answer: the digits).
///  - "multikey": four needles `# key qwxz: 48213` at spread depths, one asked at the end with
///    `# key qwxz: ` (answer: its digits).
///  - "kv_recall": a row `# table: abcd=12345, efgh=67890, ...` of six pairs at one depth, then
///    `# table[efgh] = ` (answer: 67890).
///  - "copy": `s = "<24 random letters and digits>"`, then at the end `# copy of s: "` (answer: the
///    24 characters).
/// Everything (filler window, depth, keys, digits) comes from a counter-based hash of (seed, index),
/// so a sample is reproducible on every platform. A sample has exactly `length` tokens and ends with
/// its answer.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "membound/core/error.hpp"
#include "membound/llm/corpus.hpp"
#include "membound/llm/eval.hpp"

namespace membound {
inline namespace v0_1 {
namespace llm {

/// One generated sample: byte tokens, and where its answer lies ([answer_begin, answer_end) =
/// the last tokens).
struct task_sample {
  std::string task;
  std::vector<std::int32_t> tokens;
  index_t answer_begin = 0, answer_end = 0;
  double depth = 0.0; ///< where the (asked) needle sits in the filler, in [0, 1]
};

/// The task names `make_text_task` knows.
inline constexpr std::string_view text_tasks[] = {"passkey", "multikey", "kv_recall", "copy"};

/// Builds a sample of `task` with exactly `length` tokens; `depth` in [0, 1] places the asked
/// needle, a negative depth draws it. @throws config_error for an unknown task or a length too short
/// for the needles (names both), or a filler corpus shorter than the sample.
inline task_sample make_text_task(std::string_view task, index_t length, const byte_corpus& filler, std::uint64_t seed,
                                  std::uint64_t index, double depth = -1.0) {
  std::uint64_t ctr = 0;
  const auto next = [&] { return detail::draw64(seed, index, 0x7a5c, ctr++); };
  const auto digits = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + next() % 10));
    if (s[0] == '0') s[0] = static_cast<char>('1' + next() % 9);
    return s;
  };
  const auto word = [&](int n, std::string_view alphabet) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(alphabet[next() % alphabet.size()]);
    return s;
  };
  constexpr std::string_view letters = "abcdefghijklmnopqrstuvwxyz", alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
  const auto distinct_keys = [&](int n) {
    std::vector<std::string> keys;
    while (static_cast<int>(keys.size()) < n) {
      std::string k = word(4, letters);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    return keys;
  };
  if (depth < 0.0) depth = static_cast<double>(next() % 1001) / 1000.0;
  MEMBOUND_EXPECTS(depth <= 1.0, config_error, "llm::make_text_task: depth ", depth, ", expected <= 1 (or < 0 to draw it)");

  std::vector<std::string> needles; // inserted at `at`
  std::vector<double> at;
  std::string question, answer;
  if (task == "passkey") {
    const std::string key = digits(5);
    needles.push_back("\n# The pass key is " + key + ". Remember it. " + key + " is the pass key.\n");
    at.push_back(depth);
    question = "\n# What is the pass key? The pass key is ";
    answer = key;
  } else if (task == "multikey") {
    const int n = 4;
    const std::vector<std::string> keys = distinct_keys(n);
    const int asked = static_cast<int>(next() % n);
    for (int i = 0; i < n; ++i) {
      const std::string v = digits(5);
      needles.push_back("\n# key " + keys[static_cast<std::size_t>(i)] + ": " + v + "\n");
      at.push_back(i == asked ? depth : static_cast<double>(next() % 1001) / 1000.0);
      if (i == asked) answer = v;
    }
    question = "\n# key " + keys[static_cast<std::size_t>(asked)] + ": ";
  } else if (task == "kv_recall") {
    const int n = 6;
    const std::vector<std::string> keys = distinct_keys(n);
    const int asked = static_cast<int>(next() % n);
    std::string row = "\n# table: ";
    for (int i = 0; i < n; ++i) {
      const std::string v = digits(5);
      row += keys[static_cast<std::size_t>(i)] + "=" + v + (i + 1 < n ? ", " : "\n");
      if (i == asked) answer = v;
    }
    needles.push_back(row);
    at.push_back(depth);
    question = "\n# table[" + keys[static_cast<std::size_t>(asked)] + "] = ";
  } else if (task == "copy") {
    const std::string s = word(24, alnum);
    needles.push_back("\ns = \"" + s + "\"\n");
    at.push_back(depth);
    question = "\n# copy of s: \"";
    answer = s;
  } else {
    MEMBOUND_EXPECTS(false, config_error, "llm::make_text_task: unknown task \"", task, "\"; known: passkey, multikey, kv_recall, copy");
  }
  index_t fixed = static_cast<index_t>(question.size() + answer.size());
  for (const auto& n : needles) fixed += static_cast<index_t>(n.size());
  const index_t hay = length - fixed;
  MEMBOUND_EXPECTS(hay >= 1, config_error, "llm::make_text_task: ", length, " tokens are too few for a ", task, " sample (",
                   fixed, " tokens of needles, question and answer)");
  std::vector<std::int64_t> fill(static_cast<std::size_t>(hay));
  filler.sample(seed, index, 0x5eed, fill);

  // Needles in order of their insertion points.
  std::vector<std::size_t> order(needles.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return at[a] < at[b]; });
  task_sample out;
  out.task = std::string(task);
  out.depth = depth;
  out.tokens.reserve(static_cast<std::size_t>(length));
  index_t h = 0;
  const auto put = [&](std::string_view s) {
    for (const char c : s) out.tokens.push_back(static_cast<unsigned char>(c));
  };
  for (const std::size_t i : order) {
    const index_t pos = static_cast<index_t>(std::lround(at[i] * static_cast<double>(hay)));
    for (; h < pos; ++h) out.tokens.push_back(static_cast<std::int32_t>(fill[static_cast<std::size_t>(h)]));
    put(needles[i]);
  }
  for (; h < hay; ++h) out.tokens.push_back(static_cast<std::int32_t>(fill[static_cast<std::size_t>(h)]));
  put(question);
  out.answer_begin = static_cast<index_t>(out.tokens.size());
  put(answer);
  out.answer_end = static_cast<index_t>(out.tokens.size());
  return out;
}

/// The sample as a retrieval question: the prompt is every token before the answer.
inline eval::retrieval_case to_retrieval(const task_sample& s) {
  eval::retrieval_case q;
  q.task = s.task;
  q.prompt.assign(s.tokens.begin(), s.tokens.begin() + s.answer_begin);
  q.answer.assign(s.tokens.begin() + s.answer_begin, s.tokens.begin() + s.answer_end);
  q.depth = s.depth;
  return q;
}

} // namespace llm
} // namespace v0_1
} // namespace membound
