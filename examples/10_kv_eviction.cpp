// SPDX-License-Identifier: MIT
//
// 10 - KV eviction: one synthetic stream through every decode-time policy
// ==========================================================================
//
// What this notebook teaches:
//  1. A memory-bounded KV cache (`kv::cache`) is a pool of fixed-size pages allocated once; each
//     KV head owns a list of pages, and eviction compacts a head in place and gives pages back.
//     Its footprint is the pool, whatever the policy: the table prints it.
//  2. A decode step is append -> attend -> evict. `kv::attend_decode` returns, in the same pass
//     over K and V, the attention mass each cached token received; H2O accumulates it into a state
//     slot, TOVA ranks by the latest one. TRIM-KV instead reads a retention score written once,
//     when the token arrived. `kv::evictor` cuts a head back to its budget once it holds
//     budget + buffer tokens.
//  3. Which policy keeps what: a synthetic stream has four planted "needle" tokens (keys along one
//     hidden direction per head) among random tokens; after the stream, a query along that
//     direction asks for them. Each policy's kept positions are drawn per head (one character per
//     8 positions, '#' = something kept there, '^' marks a needle), with which needles survived
//     and how much attention the final query puts on them.
//  4. A new policy is one small struct with a `name` and a `score_decode`: `value_norm` below keeps
//     the tokens whose values are largest, and it plugs into the same evictor.
//
// The retention scores of trim_kv here are synthetic (needles decay slowly, everything else
// faster), standing in for a trained kv::retention_gate; the point is the mechanics, not a claim
// about any model. The stream has no RoPE, so expected_attention's averaged rotation of the
// query statistics (it takes the window's queries as pre-RoPE) is a small mismatch here. Writes 10_kept.csv (policy, head, kept position).
//
// Run: build/release/examples/10_kv_eviction [tokens]      (default 768 tokens, well under a second)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <membound/membound.hpp>

using namespace membound;

namespace {

constexpr index_t G = 2, H = 4, D = 32;      // KV heads, query heads (GQA: 2 per KV head), head dim
constexpr index_t budget = 64, buffer = 16;   // tokens kept per head, amortising buffer
constexpr index_t slot_beta = 0, slot_acc = 1, slot_last = 2; // cache state slots per token

// ---- a new policy in one header's worth of code -------------------------------------------------
/// Keep the tokens whose value vectors are largest (a crude "information content" heuristic).
struct value_norm {
  static constexpr std::string_view name = "value_norm";
  template <class T>
  void score_decode(const kv::cache<T>& c, index_t b, index_t g, std::int32_t /*t*/, std::span<float> out) const {
    for (index_t i = 0; i < c.size(b, g); ++i) {
      double s = 0.0;
      for (const T& v : c.value(b, g, i)) s += static_cast<double>(static_cast<float>(v)) * static_cast<float>(v);
      out[static_cast<std::size_t>(i)] = static_cast<float>(s);
    }
  }
};
static_assert(kv::decode_scorer<value_norm, float>);

/// The synthetic stream: token t has key/value rows per KV head, a log-retention per KV head and a
/// query per query head. Needles: keys along a hidden direction u_g, larger values, slow decay.
struct stream {
  index_t n;
  std::vector<index_t> needles;
  std::vector<float> keys, values, log_beta, queries, u; // (T,G,D) (T,G,D) (T,G) (T,H,D) (G,D)
  explicit stream(index_t tokens) : n(tokens) {
    std::mt19937 gen(10);
    std::normal_distribution<float> nd;
    needles = {n / 16, n / 3, n / 2 + 7, (3 * n) / 4};
    keys.resize(static_cast<std::size_t>(n * G * D));
    values.resize(keys.size());
    log_beta.resize(static_cast<std::size_t>(n * G));
    queries.resize(static_cast<std::size_t>(n * H * D));
    u.resize(static_cast<std::size_t>(G * D));
    for (index_t g = 0; g < G; ++g) {
      double norm = 0.0;
      for (index_t e = 0; e < D; ++e) norm += std::pow(u[static_cast<std::size_t>(g * D + e)] = nd(gen), 2.0);
      for (index_t e = 0; e < D; ++e) u[static_cast<std::size_t>(g * D + e)] /= static_cast<float>(std::sqrt(norm));
    }
    std::uniform_real_distribution<float> decay(0.01f, 0.06f);
    for (index_t t = 0; t < n; ++t) {
      const bool needle = std::find(needles.begin(), needles.end(), t) != needles.end();
      for (index_t g = 0; g < G; ++g) {
        for (index_t e = 0; e < D; ++e) {
          const auto i = static_cast<std::size_t>((t * G + g) * D + e);
          keys[i] = needle ? 6.0f * u[static_cast<std::size_t>(g * D + e)] + 0.1f * nd(gen) : 0.6f * nd(gen);
          values[i] = nd(gen);
        }
        log_beta[static_cast<std::size_t>(t * G + g)] = needle ? -1e-4f : -decay(gen);
      }
      for (index_t h = 0; h < H; ++h)
        for (index_t e = 0; e < D; ++e) queries[static_cast<std::size_t>((t * H + h) * D + e)] = 0.6f * nd(gen);
    }
  }
};

struct outcome {
  std::string name;
  std::vector<std::vector<std::int32_t>> kept; // per head
  std::size_t pool_bytes = 0, used_bytes = 0;
  double needle_mass = 0.0; // final probe's attention on needles, averaged over heads
  index_t evicted = 0;
};

/// Runs the stream through one policy: append, attend (mass into the state slots), evict.
/// Policies that read recent queries (snapkv, expected_attention: they have a `queries` member)
/// get a kv::query_window of the last `window` steps' queries, pushed every step.
template <class Policy>
outcome run(const stream& s, Policy policy, std::string_view name) {
  constexpr index_t window = 16;
  kv::query_window recent(1, H, D, window);
  if constexpr (requires { policy.queries; }) policy.queries = &recent;
  kv::cache_config cfg;
  cfg.kv_heads = G;
  cfg.head_dim = D;
  cfg.page_tokens = 16;
  bool grows = false; // a policy that never evicts (kv::full) needs a pool for the whole stream
  if constexpr (requires { Policy::evicts; }) grows = !Policy::evicts;
  cfg.pages = G * kv::pages_for(grows ? s.n : budget + buffer, cfg.page_tokens);
  cfg.state_slots = 3;
  kv::cache<bf16> c(cfg); // bf16 K/V storage: half the bytes of f32
  kv::evictor ev;
  array<float> out({H, D}), mass({G, s.n}); // (H,D) (G,S_max)
  std::vector<float> scratch(static_cast<std::size_t>((H / G) * s.n));
  outcome r;
  r.name = std::string(name);
  for (index_t t = 0; t < s.n; ++t) {
    for (index_t g = 0; g < G; ++g) {
      const auto row = static_cast<std::size_t>((t * G + g) * D);
      const float st[3] = {s.log_beta[static_cast<std::size_t>(t * G + g)], 0.0f, 0.0f};
      c.append(0, g, std::span<const float>(&s.keys[row], D), std::span<const float>(&s.values[row], D),
               static_cast<std::int32_t>(t), st);
    }
    const auto q = make_view<const float>(&s.queries[static_cast<std::size_t>(t * H * D)], {H, D}); // (H,D)
    kv::attend_decode(c, 0, q, out.view(), 0.0f, mass.view(), scratch);
    if constexpr (requires { policy.queries; }) recent.push(0, q, static_cast<std::int32_t>(t));
    kv::record_attention(c, 0, mass.cview(), slot_acc, true);   // H2O: running sum
    kv::record_attention(c, 0, mass.cview(), slot_last, false); // TOVA: the latest step
    r.evicted += ev.step(c, 0, policy, static_cast<std::int32_t>(t), budget, buffer);
  }
  // the probe: every query head asks along its KV head's needle direction
  array<float> probe({H, D}); // (H,D)
  for (index_t h = 0; h < H; ++h)
    for (index_t e = 0; e < D; ++e) probe(h, e) = s.u[static_cast<std::size_t>((h / (H / G)) * D + e)];
  kv::attend_decode(c, 0, probe.cview(), out.view(), 1.0f, mass.view(), scratch);
  r.kept.resize(G);
  for (index_t g = 0; g < G; ++g)
    for (index_t i = 0; i < c.size(0, g); ++i) {
      const std::int32_t p = c.position(0, g, i);
      r.kept[static_cast<std::size_t>(g)].push_back(p);
      if (std::find(s.needles.begin(), s.needles.end(), p) != s.needles.end()) r.needle_mass += mass(g, i) / G;
    }
  r.pool_bytes = c.pool_bytes();
  r.used_bytes = c.used_bytes();
  return r;
}

std::string picture(const std::vector<std::int32_t>& kept, index_t n) {
  const index_t bins = (n + 7) / 8;
  std::string line(static_cast<std::size_t>(bins), '.');
  for (std::int32_t p : kept) line[static_cast<std::size_t>(p / 8)] = '#';
  return line;
}

} // namespace

int main(int argc, char** argv) {
  try {
    const index_t n = argc > 1 ? std::max<index_t>(budget + buffer, std::atol(argv[1])) : 768;
    const stream s(n);
    std::printf("== a stream of %ld tokens, %ld KV heads (%ld query heads), D = %ld, bf16 K/V\n", static_cast<long>(n),
                static_cast<long>(G), static_cast<long>(H), static_cast<long>(D));
    std::printf("   budget %ld tokens per head, buffer %ld; needles at positions", static_cast<long>(budget),
                static_cast<long>(buffer));
    for (index_t p : s.needles) std::printf(" %ld", static_cast<long>(p));
    std::printf("\n\n");

    kv::h2o h2o;
    h2o.slot = slot_acc;
    h2o.recent = 16;
    kv::tova tova;
    tova.slot = slot_last;
    std::vector<outcome> all;
    all.push_back(run(s, kv::full{}, "full"));
    all.push_back(run(s, kv::streaming_llm{4}, "streaming_llm"));
    all.push_back(run(s, h2o, "h2o"));
    all.push_back(run(s, tova, "tova"));
    all.push_back(run(s, kv::knorm{}, "knorm"));
    all.push_back(run(s, kv::keydiff{}, "keydiff"));
    all.push_back(run(s, kv::random{1}, "random"));
    kv::trim_kv trim;
    trim.slot = slot_beta; // log beta, written when each token arrives
    all.push_back(run(s, trim, "trim_kv"));
    kv::snapkv snap; // observation window: the last 16 queries (kv::query_window inside run)
    snap.window = 16;
    all.push_back(run(s, snap, "snapkv"));
    kv::expected_attention ea; // query statistics from the same window of 16
    ea.n_sink = 4;
    ea.n_future = 64;
    all.push_back(run(s, ea, "expected_attn"));
    all.push_back(run(s, value_norm{}, "value_norm (new)"));

    // the needle marker line
    std::string marks(static_cast<std::size_t>((n + 7) / 8), ' ');
    for (index_t p : s.needles) marks[static_cast<std::size_t>(p / 8)] = '^';

    std::printf("%-17s %-6s %-8s %-10s %-10s %s\n", "policy", "kept", "needles", "pool B", "in use B",
                "attention on needles (final probe)");
    for (const auto& r : all) {
      index_t kept = 0, found = 0;
      for (const auto& h : r.kept) {
        kept += static_cast<index_t>(h.size());
        for (index_t p : s.needles) found += std::find(h.begin(), h.end(), p) != h.end();
      }
      std::printf("%-17s %-6ld %ld/%-6ld %-10zu %-10zu %.3f\n", r.name.c_str(), static_cast<long>(kept),
                  static_cast<long>(found), static_cast<long>(G * static_cast<index_t>(s.needles.size())), r.pool_bytes,
                  r.used_bytes, r.needle_mass);
    }
    std::printf("\nkept positions, one character per 8 positions ('#' kept, '^' needle):\n");
    for (const auto& r : all) {
      std::printf("%-17s\n", r.name.c_str());
      for (index_t g = 0; g < G; ++g) std::printf("  head %ld |%s|\n", static_cast<long>(g), picture(r.kept[static_cast<std::size_t>(g)], n).c_str());
      std::printf("         |%s|\n", marks.c_str());
    }

    std::ofstream csv("10_kept.csv");
    csv << "policy,head,position\n";
    for (const auto& r : all)
      for (index_t g = 0; g < G; ++g)
        for (std::int32_t p : r.kept[static_cast<std::size_t>(g)]) csv << r.name << ',' << g << ',' << p << '\n';
    std::printf("\nwrote 10_kept.csv\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
