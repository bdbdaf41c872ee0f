// SPDX-License-Identifier: MIT
//
// 51 - A long stream through every memory: needles among distractors
// ===================================================================
//
// What this notebook teaches:
//  1. In a recurrent model the memory is written once per token, in order, and read later. This
//     notebook streams T random key-value pairs through each `memory::module` (one `forward` call
//     over the whole sequence), then reads back the keys of a few "needle" pairs planted at known
//     positions with `read` (no writing) and scores them by their distance s = T - position
//     (s = 1 is the last token written): cosine with the needle's value, and exact match after
//     nearest-value decoding against all T values written (chance is 1/T).
//  2. Linear attention (the dot-product, Hebbian rule M += v k^T) superposes every pair: at the
//     end each read-out is its value plus the crosstalk of all other T - 1 pairs, of norm about
//     sqrt(T / d_k), so without forgetting nothing is retrievable at T = 2048, d_k = 32.
//     Retention alpha < 1 shrinks the crosstalk to the last ~1 / (1 - alpha) tokens and brings the
//     recent needles back.
//  3. The delta rule (DeltaNet, eta = 1 on unit keys) overwrites instead: the newest pair is exact,
//     and each later write removes part of an old pair's component along its own key, so a pair
//     fades after about d_k more writes. Forgetting (Gated DeltaNet, alpha = 0.97) only shortens
//     that horizon. Longhorn's implicit step eta / (1 + eta ||k||^2) = 1/2 at eta = 1 is a
//     smaller delta step: still exact enough on the newest pairs, and it overwrites less, so
//     pairs live longer.
//  4. The deep memories take one SGD step per token and never write a pair exactly: Titans' MLP
//     (H = 128, residual) with momentum holds about as far back as the delta rule; OmegaNet and
//     Atlas (an MLP with H = 32 on degree-2 polynomial features of the key, D = 561, Omega rule
//     over c = 4 tokens; GD vs Muon) are less exact on the newest pairs but keep a measurable
//     cosine trace of older ones, too weak to decode among 2048 values. Their retention gate
//     decays both layers at once, and W = 0 is a fixed point of a two-layer MLP's gradient: at
//     the alpha that helps linear attention (0.97) the weights decay to zero and the memory is
//     gone (row "titans a=0.97", with its weight norm). Deep memories here forget with
//     alpha = 0.999 instead.
//  5. None of these memories is trained in an outer loop here (no learned projections, gates or
//     initial weights): this is the inner loop alone, on keys with no structure to exploit. Past
//     ~128 tokens every one of them is at chance.
//
// Protocol: d_k = d_v = 32; every token's key and value are i.i.d. Gaussian scaled to unit norm
// (needles are ordinary pairs: what is measured is how long one write survives the writes after
// it). Needles: 8 per distance bucket [1,8], [9,16], [17,32], ..., [1025,2048], evenly spaced
// inside it (72 needles, 3.5 % of the tokens), in each of 4 independent streams. Gates are
// constants, gamma = 1: eta = 1 for the matrix memories; titans eta = 0.3, theta = 0.5; omega_net
// eta = 0.3; atlas eta = 0.1, theta = 0 (Muon without momentum: with theta = 0.5 it recalled
// almost nothing). Each memory is read once, after the whole stream.
//
// Writes 51_stream.csv (per memory and distance bucket) and 51_stream.png where gnuplot exists.
//
// Run: build/release/examples/51_memory_stream [T]        (default T = 2048, about 15 s on one core)
//      build/release/examples/51_memory_stream --full     T = 16384, 8 streams (the paper-scale
//                                                          sweep; about 5 minutes, most of it atlas)
//      MEMBOUND_SMOKE=1 ...                                T = 256, one stream (about a second)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <membound/memory/memory.hpp>

using namespace membound;
namespace mem = membound::memory;

namespace {

constexpr index_t d = 32;                  // d_k = d_v
constexpr float alpha_matrix = 0.97f;      // forgetting of the matrix memories (horizon ~33 tokens)
constexpr float alpha_deep = 0.999f;       // forgetting of the deep memories
constexpr index_t needles_per_bucket = 8;

/// Fills a (N,d) array with i.i.d. Gaussian rows scaled to unit norm.
void unit_gaussian_rows(array<float>& a, std::mt19937_64& gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (index_t i = 0; i < a.extent(0); ++i) {
    double sq = 0.0;
    for (index_t j = 0; j < a.extent(1); ++j) {
      a(i, j) = normal(gen);
      sq += static_cast<double>(a(i, j)) * a(i, j);
    }
    const auto inv = static_cast<float>(1.0 / std::sqrt(sq));
    for (index_t j = 0; j < a.extent(1); ++j) a(i, j) *= inv;
  }
}

/// One row of the comparison: a configuration, its constant gates, and how to run it.
struct stream_case {
  std::string name;  ///< row label
  std::string setup; ///< architecture, rule, features, optimiser
  float alpha = 1.0f, eta = 1.0f, theta = 0.0f;
  std::size_t params = 0;
  /// Streams (k, v) through a fresh memory, reads the needle keys q into y; returns the final
  /// Frobenius norm of the weights.
  std::function<double(view<const float> k, view<const float> v, view<const float> q, view<float> y)> run;
};

template <class Make>
stream_case make_case(std::string name, std::string setup, float alpha, float eta, float theta, Make make) {
  stream_case c;
  c.name = std::move(name);
  c.setup = std::move(setup);
  c.alpha = alpha;
  c.eta = eta;
  c.theta = theta;
  const auto probe = make();
  for (const mem::layer_shape& s : probe.layer_shapes()) c.params += static_cast<std::size_t>(s.rows * s.cols);
  c.run = [make, alpha, eta, theta](view<const float> k, view<const float> v, view<const float> q, view<float> y) {
    auto m = make();
    mem::gates g;
    g.alpha = alpha;
    g.eta = eta;
    g.theta = theta;
    array<float> out({k.extent(0), v.extent(1)}, uninitialized); // (T,d_v): the per-token reads, unused here
    m.forward(k, k, v, g, out.view());
    m.read(q, y);
    double sq = 0.0;
    for (std::size_t l = 0; l < m.layer_shapes().size(); ++l)
      for (float w : m.weight(l).span()) sq += static_cast<double>(w) * w;
    return std::sqrt(sq);
  };
  return c;
}

mem::polynomial_features poly(int p) {
  mem::polynomial_features f;
  f.degree = p;
  return f;
}

std::vector<stream_case> cases() {
  using namespace mem;
  std::vector<stream_case> out;
  // Matrix memories (d_v x d_k = 1,024 weights), eta = 1.
  for (float a : {1.0f, alpha_matrix}) {
    const std::string tag = a == 1.0f ? "" : " a=0.97";
    out.push_back(make_case("linear_attention" + tag, "matrix, dot product (Hebbian), GD", a, 1.0f, 0.0f,
                            [] { return linear_attention(d, d); }));
    if (a == 1.0f)
      out.push_back(make_case("delta_net", "matrix, delta, GD", a, 1.0f, 0.0f, [] { return delta_net(d, d); }));
    else
      out.push_back(make_case("gated_delta_net a=0.97", "matrix, delta, GD", a, 1.0f, 0.0f, [] { return gated_delta_net(d, d); }));
    out.push_back(make_case("longhorn" + tag, "matrix, delta, implicit GD", a, 1.0f, 0.0f, [] { return longhorn(d, d); }));
  }
  // Deep memories, a similar number of weights (~8-10 k).
  mlp_memory titans_mlp; // H = 4 d_k = 128, GELU, residual (D = d_v)
  mlp_memory small_mlp;  // on phi(k) with D = C(34, 2) = 561: H = 32, no residual (D != d_v)
  small_mlp.hidden_dim = 32;
  const omega window{4};
  for (float a : {1.0f, alpha_deep, alpha_matrix}) {
    const std::string tag = a == 1.0f ? "" : a == alpha_deep ? " a=0.999" : " a=0.97";
    out.push_back(make_case("titans" + tag, "MLP H=128 + residual, delta, momentum", a, 0.3f, 0.5f,
                            [titans_mlp] { return titans(d, d, titans_mlp); }));
    if (a == alpha_matrix) break; // the collapse is shown once
    out.push_back(make_case("omega_net" + tag, "MLP H=32 on phi_2 (D=561), Omega c=4, GD", a, 0.3f, 0.0f,
                            [small_mlp, window] { return omega_net(d, d, small_mlp, window, poly(2)); }));
    out.push_back(make_case("atlas" + tag, "MLP H=32 on phi_2 (D=561), Omega c=4, Muon", a, 0.1f, 0.0f,
                            [small_mlp, window] { return atlas(d, d, small_mlp, window, poly(2)); }));
  }
  return out;
}

struct bucket {
  index_t lo, hi; // distances, inclusive
};

void plot(const std::string& png, const std::string& csv, const std::vector<stream_case>& cs) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return;
  FILE* gp = popen("gnuplot", "w");
  if (!gp) return;
  std::fprintf(gp, "set terminal png size 1200,560 noenhanced\nset output '%s'\nset datafile separator ','\n", png.c_str());
  std::fprintf(gp, "set logscale x 2\nset xlabel 'distance T - position of the needle (bucket centre, log scale)'\n"
                   "set ylabel 'exact-match recall'\nset yrange [0:1.05]\nset grid\nset key top right\n"
                   "set multiplot layout 1,2\n");
  for (int forget = 0; forget < 2; ++forget) {
    std::fprintf(gp, "set title '%s'\nplot ", forget == 0 ? "without forgetting (alpha = 1)"
                                                          : "with forgetting (alpha = 0.97 matrix, 0.999 deep)");
    bool first = true;
    for (const stream_case& c : cs) {
      if ((c.alpha < 1.0f) != (forget == 1)) continue;
      std::fprintf(gp, "%s'%s' using (strcol(1) eq '%s' ? $5 : 1/0):7 with linespoints pt 7 title '%s'", first ? "" : ", ",
                   csv.c_str(), c.name.c_str(), c.name.c_str());
      first = false;
    }
    std::fprintf(gp, "\n");
  }
  std::fprintf(gp, "unset multiplot\n");
  const int rc = pclose(gp);
  std::printf("  %s\n", rc == 0 ? ("wrote " + png).c_str() : "gnuplot failed; CSV only");
}

} // namespace

int main(int argc, char** argv) {
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  const bool full = argc > 1 && std::string(argv[1]) == "--full";
  index_t T = smoke ? 256 : full ? 16384 : 2048;
  if (argc > 1 && !full) T = std::max<index_t>(16, std::atol(argv[1]));
  const int streams = smoke ? 1 : full ? 8 : 4;

  std::vector<bucket> buckets; // [1,8], [9,16], [17,32], ... up to T
  for (index_t lo = 1, hi = 8; lo <= T; lo = hi + 1, hi *= 2) buckets.push_back({lo, std::min(hi, T)});
  // Needle distances: 8 per bucket, evenly spaced (all of them when the bucket is that small).
  std::vector<index_t> dist;
  std::vector<std::size_t> bucket_of;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const index_t lo = buckets[b].lo, hi = buckets[b].hi, n = std::min<index_t>(needles_per_bucket, hi - lo + 1);
    for (index_t i = 0; i < n; ++i) {
      dist.push_back(n == 1 ? lo : lo + (i * (hi - lo)) / (n - 1));
      bucket_of.push_back(b);
    }
  }
  const auto n_needles = static_cast<index_t>(dist.size());

  std::vector<stream_case> cs = cases();
  std::printf("Needles among distractors: T = %ld tokens of random unit pairs (d_k = d_v = %ld), %d stream%s,\n"
              "%ld needles per stream at known distances, read back after the whole stream. Exact match =\n"
              "the read-out's nearest value among all %ld values written is the needle's own.\n\n",
              static_cast<long>(T), static_cast<long>(d), streams, streams == 1 ? "" : "s", static_cast<long>(n_needles),
              static_cast<long>(T));

  // exact[c][b], cosine[c][b], counts[b]
  std::vector<std::vector<double>> exact(cs.size(), std::vector<double>(buckets.size(), 0.0)),
      cosine(cs.size(), std::vector<double>(buckets.size(), 0.0));
  std::vector<double> counts(buckets.size(), 0.0), seconds(cs.size(), 0.0), wnorm(cs.size(), 0.0);
  std::vector<bool> diverged(cs.size(), false);
  const auto t_start = std::chrono::steady_clock::now();
  for (int s = 0; s < streams; ++s) {
    std::mt19937_64 gen(1234u + static_cast<std::uint64_t>(s));
    array<float> k({T, d}, uninitialized), v({T, d}, uninitialized); // (T,d) each
    unit_gaussian_rows(k, gen);
    unit_gaussian_rows(v, gen);
    array<float> q({n_needles, d}, uninitialized), y({n_needles, d}); // the needles' keys, their reads
    for (index_t i = 0; i < n_needles; ++i)
      for (index_t j = 0; j < d; ++j) q(i, j) = k(T - dist[static_cast<std::size_t>(i)], j);
    for (index_t i = 0; i < n_needles; ++i) counts[bucket_of[static_cast<std::size_t>(i)]] += 1.0;
    for (std::size_t c = 0; c < cs.size(); ++c) {
      const auto t0 = std::chrono::steady_clock::now();
      wnorm[c] += cs[c].run(k.cview(), v.cview(), q.cview(), y.view()) / streams;
      seconds[c] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      array<float> sim({n_needles, T}, uninitialized); // (needles, T) = y v^T
      cpu::gemm(y.cview(), v.cview().transpose(), sim.view());
      for (index_t i = 0; i < n_needles; ++i) {
        const std::size_t b = bucket_of[static_cast<std::size_t>(i)];
        const index_t own = T - dist[static_cast<std::size_t>(i)];
        double sq = 0.0;
        for (index_t j = 0; j < d; ++j) sq += static_cast<double>(y(i, j)) * y(i, j);
        if (!std::isfinite(sq)) diverged[c] = true;
        if (!std::isfinite(sq) || sq == 0.0) continue; // a miss with cosine 0
        cosine[c][b] += sim(i, own) / std::sqrt(sq);
        index_t best = 0;
        for (index_t t = 1; t < T; ++t)
          if (sim(i, t) > sim(i, best)) best = t;
        exact[c][b] += best == own ? 1.0 : 0.0;
      }
    }
  }

  std::ofstream csv("51_stream.csv");
  csv << "memory,alpha,distance_lo,distance_hi,distance_centre,needles,exact_match,mean_cosine\n";
  for (std::size_t c = 0; c < cs.size(); ++c)
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      exact[c][b] /= counts[b];
      cosine[c][b] /= counts[b];
      csv << cs[c].name << ',' << cs[c].alpha << ',' << buckets[b].lo << ',' << buckets[b].hi << ','
          << std::sqrt(static_cast<double>(buckets[b].lo * buckets[b].hi)) << ',' << counts[b] << ',' << exact[c][b] << ','
          << cosine[c][b] << '\n';
    }
  csv.close();

  std::printf("%-24s %-42s %5s %4s %5s %6s %7s %7s\n", "memory", "setup", "alpha", "eta", "theta", "params", "end |W|",
              "write s");
  for (std::size_t c = 0; c < cs.size(); ++c)
    std::printf("%-24s %-42s %5.3g %4.2g %5.2g %6zu %7.2g %7.2f%s\n", cs[c].name.c_str(), cs[c].setup.c_str(),
                static_cast<double>(cs[c].alpha), static_cast<double>(cs[c].eta), static_cast<double>(cs[c].theta),
                cs[c].params, wnorm[c], seconds[c], diverged[c] ? "  diverged" : "");
  for (int table = 0; table < 2; ++table) {
    std::printf("\n%s by needle distance s = T - position (%.0f needles per bucket;\n"
                "bucket = distances above the previous column's, up to this one)\n",
                table == 0 ? "Exact-match recall" : "Mean cosine(read, needle value)", counts[0]);
    std::printf("%-24s |", "memory \\ s up to");
    for (const bucket& b : buckets) std::printf(" %6ld", static_cast<long>(b.hi));
    std::printf("\n");
    for (std::size_t c = 0; c < cs.size(); ++c) {
      std::printf("%-24s |", cs[c].name.c_str());
      for (std::size_t b = 0; b < buckets.size(); ++b) std::printf(" %6.2f", table == 0 ? exact[c][b] : cosine[c][b]);
      std::printf("\n");
    }
  }

  // ---- what the numbers say -------------------------------------------------------------------
  auto row = [&](const std::string& name) -> std::size_t {
    for (std::size_t c = 0; c < cs.size(); ++c)
      if (cs[c].name == name) return c;
    return 0;
  };
  auto horizon = [&](std::size_t c) { // the last bucket, from the nearest, with >= 50 % exact match
    std::string h = "none";
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      if (exact[c][b] < 0.5) break;
      h = std::to_string(buckets[b].hi);
    }
    return h;
  };
  const std::size_t la = row("linear_attention"), la_f = row("linear_attention a=0.97"), dn = row("delta_net"),
                    gdn = row("gated_delta_net a=0.97"), lh = row("longhorn"), ti = row("titans"),
                    ti_c = row("titans a=0.97"), om = row("omega_net"), at = row("atlas");
  // Mean over the buckets whose distances lie in [lo, hi].
  auto band = [&](const std::vector<std::vector<double>>& x, std::size_t c, index_t lo, index_t hi) {
    double s = 0.0, n = 0.0;
    for (std::size_t b = 0; b < buckets.size(); ++b)
      if (buckets[b].lo >= lo && buckets[b].hi <= hi) s += x[c][b], n += 1.0;
    return n > 0 ? s / n : 0.0;
  };
  std::printf("\nReading the tables (\"holds to s\" = exact match >= 50 %% in every bucket up to distance s):\n");
  std::printf(" - linear attention: %.2f on the nearest 8 needles without forgetting (the crosstalk of all %ld\n"
              "   pairs), %.2f with alpha = 0.97; holds to %s vs %s.\n",
              exact[la][0], static_cast<long>(T), exact[la_f][0], horizon(la).c_str(), horizon(la_f).c_str());
  std::printf(" - delta rule: %.2f on the nearest 8, holds to %s; gated (alpha = 0.97) %.2f, holds to %s: forgetting\n"
              "   %s the delta rule, whose overwriting already bounds its horizon near d_k = %ld.\n",
              exact[dn][0], horizon(dn).c_str(), exact[gdn][0], horizon(gdn).c_str(),
              band(exact, gdn, 9, 64) + 0.05 < band(exact, dn, 9, 64) ? "costs" : "does not help", static_cast<long>(d));
  std::printf(" - longhorn (step 1/2 on unit keys): %.2f on the nearest 8, mean %.2f over distances 9-64 vs the\n"
              "   delta rule's %.2f: %s\n",
              exact[lh][0], band(exact, lh, 9, 64), band(exact, dn, 9, 64),
              band(exact, lh, 9, 64) > band(exact, dn, 9, 64) + 0.05
                  ? "the smaller implicit step overwrites less, so pairs live longer."
                  : "the smaller implicit step does not make pairs live longer here.");
  std::printf(" - titans: %.2f on the nearest 8, holds to %s; with alpha = 0.97 its weights end at |W| = %.2g\n"
              "   (vs %.2g): %s\n",
              exact[ti][0], horizon(ti).c_str(), wnorm[ti_c], wnorm[ti],
              wnorm[ti_c] < 1e-2 * wnorm[ti] ? "collapsed to zero - retention decays both layers, and W = 0 is a fixed\n"
                                               "   point of the MLP's gradient, so the memory cannot write itself back."
                                             : "no collapse at this alpha.");
  const index_t mid = std::min<index_t>(512, T);
  std::printf(" - omega_net / atlas (polynomial features, Omega c = 4): %.2f / %.2f on the nearest 8 (delta rule\n"
              "   %.2f: one small step never writes a pair exactly); mean cosine %.2f / %.2f over distances\n"
              "   33-%ld against %.2f for the delta rule and %.2f for titans: %s\n",
              exact[om][0], exact[at][0], exact[dn][0], band(cosine, om, 33, mid), band(cosine, at, 33, mid),
              static_cast<long>(mid), band(cosine, dn, 33, mid), band(cosine, ti, 33, mid),
              std::min(band(cosine, om, 33, mid), band(cosine, at, 33, mid)) > band(cosine, dn, 33, mid) + 0.05
                  ? "the bigger feature space keeps\n   a trace of older pairs, real but mostly too weak to decode among all values written."
                  : "no longer trace than the delta rule.");
  double far = 0.0; // best exact match past distance 128
  for (std::size_t c = 0; c < cs.size(); ++c) far = std::max(far, band(exact, c, 129, T));
  std::printf(" - past distance 128, exact match averaged over those buckets is at most %.2f for any memory%s\n", far,
              far < 0.1 ? ":\n   with d_k = 32, random keys and no outer loop, no inner rule keeps one write alive through\n"
                          "   hundreds of later ones."
                        : ".");
  std::printf("  wrote 51_stream.csv; total %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  plot("51_stream.png", "51_stream.csv", cs);
  return 0;
}
