// SPDX-License-Identifier: MIT
//
// 40 - EfficientViT: a memory-efficient vision transformer, looked at from the inside
// ===================================================================================
//
// What this notebook teaches:
//  1. `vision::efficientvit<>` is timm's `efficientvit_msra` M0..M5 (Liu et al., CVPR 2023) in
//     eval mode: a 16x-downsampling conv stem, three stages of "sandwich" blocks (depthwise conv,
//     FFN, *one* attention, depthwise conv, FFN) and two patch-merging steps. The configurations
//     differ only in widths, depths and heads; the notebook builds M0 (2.3 M parameters, 79 M
//     MACs) and M4 (8.8 M, 299 M) and prints what each costs.
//  2. The attention is cascaded group attention (CGA): the C channels are split into h heads, head
//     i attends on its own split plus the previous head's output (X_i + O_{i-1}), inside 7 x 7
//     windows, with a learned relative-position bias per head. `efficientvit::attention_maps`
//     runs an image up to one block's mixer and returns every head's 49 x 49 softmax matrix for
//     one window; the notebook draws, for the query token at each window's centre, what every
//     head looks at (stage 0 block 0: a 14 x 14 map, four windows) and how spread out that is
//     (entropy in bits; a uniform spread over 49 tokens is log2 49 = 5.61 bits).
//  3. Classification: with `--weights file.safetensors` (timm names; tools/convert_efficientvit.py
//     converts a .pth) the model classifies the image and prints the top-5 ImageNet class
//     indices with their softmax probabilities (no label file ships offline, so indices only).
//     Without weights the network is timm-style random: the classes and the maps mean nothing
//     beyond showing the machinery, and the output says so in capitals.
//  4. Throughput on one core: images/s and effective GFLOP/s (2 x MACs per image / time) of M0 and
//     M4 at batch 1 and 16, beside an FMA peak probe (independent fused multiply-adds in registers,
//     the most this core can do). EfficientViT's point is that its MACs are cheap in memory
//     traffic, yet at these sizes (7 x 7 windows, 16-wide keys, many small depthwise convs) a CPU
//     still reaches only a fraction of its FMA peak: the gap is the price of small operators.
//
// Input: the 320 x 240 landscape test image tests/fixtures/vision/images/landscape_320x240.png
// (path compiled in as MEMBOUND_EXAMPLE_IMAGE); if that file is missing, a procedural image
// (gradient sky, disc sun, striped ground) is used instead and the output says so. The image goes
// through timm's eval transform (bicubic resize to 256, centre crop 224, ImageNet normalisation).
//
// Writes into --out (default: the working directory):
//   40_efficientvit_input.png      the 224 x 224 crop the model sees, window grid and query tokens marked
//   40_efficientvit_attention.png  rows = windows, columns = heads: each head's attention of the
//                                  window-centre query over the 7 x 7 window (heat map, each tile
//                                  stretched from its smallest to its largest probability)
//   40_efficientvit_entropy.csv    window, head, entropy of the centre query, mean entropy, max p
//   40_efficientvit_throughput.csv model, batch, images/s, GFLOP/s, fraction of FMA peak
//
// Run: build/release/examples/40_efficientvit [--model m0|..|m5] [--weights f.safetensors]
//                                             [--image f.png|jpg] [--out dir]
//      about 5 s on one core; MEMBOUND_SMOKE=1 times batch 1 only, once each (under a second).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <membound/backend/cpu/simd.hpp>
#include <membound/io/image.hpp>
#include <membound/vision/preprocess.hpp>
#include <membound/vision/vision.hpp>

using namespace membound;
namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// One core's FMA peak (GFLOP/s): 16 independent vector accumulators, each updated a <- a x + y
/// with one fused multiply-add, so that every FMA port is busy every cycle (latency 4 x 2 ports
/// needs 8 chains). Best of a few runs. Returns {GFLOP/s, lanes}; {0, 0} without an FMA backend.
std::pair<double, int> fma_peak_gflops(bool smoke) {
#if MEMBOUND_HAS_AVX2 || MEMBOUND_HAS_AVX512
  using A = backend::best_cpu::arch;
  using V = cpu::detail::fbatch<A>;
  constexpr int chains = 16;
  const long iters = smoke ? 200000 : 4000000;
  double best = 1e30;
  float sink = 0.0f;
  for (int rep = 0; rep < 3; ++rep) {
    V acc[chains];
    for (int j = 0; j < chains; ++j) acc[j] = V(1.0f + 0.001f * static_cast<float>(j));
    const V a(0.9999999f), b(1e-7f);
    const auto t0 = clock_type::now();
    for (long i = 0; i < iters; ++i)
      for (int j = 0; j < chains; ++j) acc[j] = cpu::detail::fma<A>(acc[j], a, b);
    best = std::min(best, seconds_since(t0));
    alignas(64) float lane[64];
    for (int j = 0; j < chains; ++j) {
      acc[j].store_unaligned(lane);
      sink += lane[0];
    }
  }
  volatile float keep = sink;
  (void)keep;
  constexpr int lanes = static_cast<int>(cpu::detail::lanes<A>);
  return {2.0 * lanes * chains * static_cast<double>(iters) / best / 1e9, lanes};
#else
  (void)smoke;
  return {0.0, 0}; // no FMA backend compiled in
#endif
}

/// A 320 x 240 procedural landscape (used only when the test image is not found).
io::image procedural_image() {
  io::image img(240, 320);
  for (index_t y = 0; y < 240; ++y)
    for (index_t x = 0; x < 320; ++x) {
      const double dx = x - 230.0, dy = y - 60.0;
      std::uint8_t r, g, b;
      if (y < 150) { // sky with a sun
        const bool sun = dx * dx + dy * dy < 30.0 * 30.0;
        r = static_cast<std::uint8_t>(sun ? 250 : 90 + y / 3);
        g = static_cast<std::uint8_t>(sun ? 220 : 140 + y / 3);
        b = static_cast<std::uint8_t>(sun ? 80 : 230);
      } else { // striped ground
        const bool stripe = ((x + 2 * y) / 12) % 2 == 0;
        r = stripe ? 60 : 90, g = stripe ? 140 : 110, b = 40;
      }
      img(y, x, 0) = r, img(y, x, 1) = g, img(y, x, 2) = b;
    }
  return img;
}

/// Heat colour map: black -> red -> yellow -> white for t in [0, 1].
void heat(double t, std::uint8_t* rgb) {
  t = std::clamp(t, 0.0, 1.0);
  rgb[0] = static_cast<std::uint8_t>(255.0 * std::min(1.0, 3.0 * t));
  rgb[1] = static_cast<std::uint8_t>(255.0 * std::clamp(3.0 * t - 1.0, 0.0, 1.0));
  rgb[2] = static_cast<std::uint8_t>(255.0 * std::clamp(3.0 * t - 2.0, 0.0, 1.0));
}

/// Draws a 1-pixel rectangle outline.
void outline(io::image& img, index_t y0, index_t x0, index_t h, index_t w, std::uint8_t r, std::uint8_t g,
             std::uint8_t b) {
  for (index_t y = y0; y < y0 + h; ++y)
    for (index_t x = x0; x < x0 + w; ++x)
      if ((y == y0 || y == y0 + h - 1 || x == x0 || x == x0 + w - 1) && y >= 0 && y < img.height && x >= 0 &&
          x < img.width)
        img(y, x, 0) = r, img(y, x, 1) = g, img(y, x, 2) = b;
}

/// Entropy in bits of a probability vector.
double entropy_bits(const float* p, index_t n) {
  double h = 0.0;
  for (index_t m = 0; m < n; ++m)
    if (p[m] > 0.0f) h -= p[m] * std::log2(static_cast<double>(p[m]));
  return h;
}

struct timing {
  double images_per_s = 0.0, gflops = 0.0;
};

/// Forward passes of `model` at batch b: one warm-up (allocates the workspace), then repeats until
/// `budget_s` has passed (at least `min_iters` times). Mean time per call.
timing time_forward(vision::efficientvit<>& model, index_t b, const array<float>& one, double budget_s, int min_iters) {
  const index_t s = model.config().img_size, per = 3 * s * s;
  array<float> x({b, 3, s, s}, uninitialized); // (B,3,S,S): the image repeated
  for (index_t i = 0; i < b; ++i) std::copy_n(one.data(), per, x.data() + i * per);
  array<float> logits({b, model.config().num_classes});
  model.forward(x.cview(), logits.view());
  int iters = 0;
  const auto t0 = clock_type::now();
  while (iters < min_iters || seconds_since(t0) < budget_s) {
    model.forward(x.cview(), logits.view());
    ++iters;
  }
  const double per_call = seconds_since(t0) / iters;
  const double macs = static_cast<double>(vision::efficientvit_macs(model.config()));
  return {static_cast<double>(b) / per_call, 2.0 * macs * static_cast<double>(b) / per_call / 1e9};
}

} // namespace

int run(int argc, char** argv) {
  const auto t_start = clock_type::now();
  const bool smoke = std::getenv("MEMBOUND_SMOKE") != nullptr;
  std::string model_name = "m0", weights, image_path;
  fs::path out = ".";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--model" && has) model_name = argv[++i];
    else if (a == "--weights" && has) weights = argv[++i];
    else if (a == "--image" && has) image_path = argv[++i];
    else if (a == "--out" && has) out = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--model m0|..|m5] [--weights file.safetensors] [--image file.png|jpg] [--out dir]\n",
                   argv[0]);
      return 2;
    }
  }
  const vision::efficientvit_config cfg = vision::efficientvit_by_name(model_name);
  fs::create_directories(out);
#if defined(_OPENMP)
  omp_set_num_threads(1); // one core throughout: the throughput table compares with a one-core probe
#endif

  // ---- 0. the image -------------------------------------------------------------------------------
  io::image raw;
  std::string source;
  if (!image_path.empty()) {
    raw = io::read_image(image_path);
    source = image_path;
  } else {
#if defined(MEMBOUND_EXAMPLE_IMAGE)
    if (fs::exists(MEMBOUND_EXAMPLE_IMAGE)) {
      raw = io::read_image(MEMBOUND_EXAMPLE_IMAGE);
      source = fs::path(MEMBOUND_EXAMPLE_IMAGE).filename().string() + " (tests/fixtures/vision/images)";
    }
#endif
    if (raw.pixels.empty()) {
      raw = procedural_image();
      source = "procedural 320x240 landscape (test image not found)";
    }
  }
  const vision::eval_transform tf; // Resize(256, bicubic), CenterCrop(224), ImageNet mean/std
  io::image crop = tf.resize_and_crop(raw);
  array<float> x({1, 3, tf.crop, tf.crop}); // (1,3,224,224)
  tf.normalize(crop, x.view());
  std::printf("Image: %s, %ld x %ld -> resize 256 (bicubic), centre crop 224, ImageNet normalisation\n\n",
              source.c_str(), static_cast<long>(raw.width), static_cast<long>(raw.height));

  // ---- 1. M0 and M4 -------------------------------------------------------------------------------
  std::printf("The configurations (timm efficientvit_m0..m5; MACs per 224 x 224 image)\n");
  std::printf("%-5s %-15s %-9s %-9s %10s %10s\n", "model", "widths", "depths", "heads", "params", "MMACs");
  for (const auto& c : vision::efficientvit_configs()) {
    const std::string w = std::to_string(c.embed_dim[0]) + "/" + std::to_string(c.embed_dim[1]) + "/" +
                          std::to_string(c.embed_dim[2]);
    const std::string d = std::to_string(c.depth[0]) + "/" + std::to_string(c.depth[1]) + "/" + std::to_string(c.depth[2]);
    const std::string h = std::to_string(c.heads[0]) + "/" + std::to_string(c.heads[1]) + "/" + std::to_string(c.heads[2]);
    std::printf("%-5s %-15s %-9s %-9s %9.2fM %10.1f\n", c.name.c_str(), w.c_str(), d.c_str(), h.c_str(),
                vision::efficientvit_param_count(c, false) / 1e6, vision::efficientvit_macs(c) / 1e6);
  }
  auto t0 = clock_type::now();
  auto m0 = vision::efficientvit<>::random(vision::efficientvit_m0(), 0);
  auto m4 = vision::efficientvit<>::random(vision::efficientvit_m4(), 0);
  std::printf("built M0 and M4 (timm-style random init, BatchNorms folded) in %.2f s\n\n", seconds_since(t0));

  // ---- 2. classification ----------------------------------------------------------------------------
  const bool random_weights = weights.empty();
  vision::efficientvit<> model = random_weights ? vision::efficientvit<>::random(cfg, 0)
                                                : vision::efficientvit<>::load(cfg, weights);
  if (random_weights)
    std::printf("RANDOM WEIGHTS: the classes mean nothing (pass --weights file.safetensors for real ones)\n");
  else
    std::printf("Weights: %s\n", weights.c_str());
  array<float> logits({1, cfg.num_classes});
  model.forward(x.cview(), logits.view());
  std::vector<double> prob(static_cast<std::size_t>(cfg.num_classes));
  const float mx = *std::max_element(logits.data(), logits.data() + cfg.num_classes);
  double z = 0.0;
  for (index_t k = 0; k < cfg.num_classes; ++k) z += prob[static_cast<std::size_t>(k)] = std::exp(logits.data()[k] - mx);
  for (double& p : prob) p /= z;
  std::vector<index_t> order(static_cast<std::size_t>(cfg.num_classes));
  std::iota(order.begin(), order.end(), index_t{0});
  std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                    [&](index_t a, index_t b) { return prob[static_cast<std::size_t>(a)] > prob[static_cast<std::size_t>(b)]; });
  std::printf("efficientvit_%s top-5 (ImageNet-1k class indices; no label file offline, look them up in any\n"
              "ImageNet class list):\n", cfg.name.c_str());
  for (int i = 0; i < 5; ++i)
    std::printf("  #%d  class %4ld  p = %.4f\n", i + 1, static_cast<long>(order[static_cast<std::size_t>(i)]),
                prob[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]);
  if (random_weights) std::printf("  (uniform would be p = %.4f: random weights barely prefer any class)\n", 1.0 / cfg.num_classes);
  std::printf("\n");

  // ---- 3. attention maps of stage 0, block 0 --------------------------------------------------------
  const index_t r0 = cfg.stage_resolution(0), win = std::min(cfg.window, r0), nw = (r0 + win - 1) / win;
  const index_t n = win * win, heads = cfg.heads[0], centre = (win / 2) * win + win / 2;
  const index_t tile = 16 * win, gap = 4, px = cfg.img_size / r0; // pixels per stage-0 token (16)
  io::image maps(nw * nw * (tile + gap) + gap, heads * (tile + gap) + gap);
  std::fill(maps.pixels.begin(), maps.pixels.end(), std::uint8_t{255});
  std::ofstream ecsv(out / "40_efficientvit_entropy.csv");
  ecsv << "window,head,centre_query_entropy_bits,mean_entropy_bits,centre_query_max_p\n";
  std::printf("Cascaded group attention, stage 0 block 0 of efficientvit_%s%s: %ld x %ld map, %ld windows of %ld x %ld,\n"
              "%ld heads. Per head: Hc = entropy (bits) of the window-centre query's attention, Hm = mean entropy\n"
              "over all %ld queries, pmax = the centre query's largest probability (uniform over %ld tokens:\n"
              "%.2f bits, pmax %.4f; lower entropy = more focused).\n",
              cfg.name.c_str(), random_weights ? " (RANDOM WEIGHTS)" : "", static_cast<long>(r0), static_cast<long>(r0),
              static_cast<long>(nw * nw), static_cast<long>(win), static_cast<long>(win), static_cast<long>(heads),
              static_cast<long>(n), static_cast<long>(n), std::log2(static_cast<double>(n)), 1.0 / static_cast<double>(n));
  std::printf("%-7s", "");
  for (index_t i = 0; i < heads; ++i) std::printf("  %18s", ("---- head " + std::to_string(i) + " ----").c_str());
  std::printf("\n%-7s", "window");
  for (index_t i = 0; i < heads; ++i) std::printf("  %5s %5s %6s", "Hc", "Hm", "pmax");
  std::printf("\n");
  for (index_t w = 0; w < nw * nw; ++w) {
    const array<float> p = model.attention_maps(x.cview(), 0, 0, w); // (h, N, N)
    std::printf("%-7ld", static_cast<long>(w));
    for (index_t i = 0; i < heads; ++i) {
      const float* row = p.data() + (i * n + centre) * n;
      double mean = 0.0;
      for (index_t q = 0; q < n; ++q) mean += entropy_bits(p.data() + (i * n + q) * n, n) / static_cast<double>(n);
      const double hc = entropy_bits(row, n);
      const float top = *std::max_element(row, row + n), bottom = *std::min_element(row, row + n);
      const float span = top > bottom ? top - bottom : 1.0f;
      std::printf("  %5.2f %5.2f %6.4f", hc, mean, static_cast<double>(top));
      ecsv << w << ',' << i << ',' << hc << ',' << mean << ',' << top << '\n';
      // the tile: the centre query's attention over the window, nearest-upscaled, stretched from
      // its smallest to its largest probability (black to white)
      const index_t y0 = gap + w * (tile + gap), x0 = gap + i * (tile + gap);
      for (index_t y = 0; y < tile; ++y)
        for (index_t xx = 0; xx < tile; ++xx)
          heat((row[(y / 16) * win + xx / 16] - bottom) / span, &maps(y0 + y, x0 + xx, 0));
      outline(maps, y0 + (win / 2) * 16, x0 + (win / 2) * 16, 16, 16, 0, 200, 255); // the query token
    }
    std::printf("\n");
    // on the input crop: the window and its centre query token
    const index_t wy = w / nw, wx = w % nw;
    outline(crop, wy * win * px, wx * win * px, win * px, win * px, 255, 255, 255);
    outline(crop, (wy * win + win / 2) * px, (wx * win + win / 2) * px, px, px, 0, 200, 255);
  }
  ecsv.close();
  io::write_png(out / "40_efficientvit_input.png", crop);
  io::write_png(out / "40_efficientvit_attention.png", maps);
  std::printf("wrote %s (rows: windows, columns: heads; cyan box: the query) and %s\n",
              (out / "40_efficientvit_attention.png").string().c_str(), (out / "40_efficientvit_input.png").string().c_str());
  if (random_weights)
    std::printf("(random weights: PyTorch's default conv init shrinks the activations layer by layer and untrained\n"
                " BatchNorms (mean 0, var 1) do not rescale them, the position biases are zero, so q . k ~ 0 and\n"
                " every head attends almost uniformly; the PNG stretches each tile from its min to its max, which\n"
                " shows only which tokens happen to look alike. Trained heads are far sharper and mostly local.)\n");
  std::printf("\n");

  // ---- 4. throughput on one core -----------------------------------------------------------------
  const auto [peak, lanes] = fma_peak_gflops(smoke);
  std::printf("Throughput, one thread (forward pass incl. stem and head; random weights, timing does not depend on them)\n");
  if (lanes > 0)
    std::printf("FMA peak probe: %.1f GFLOP/s (%d-lane float vectors, 16 independent FMA chains)\n", peak, lanes);
  else
    std::printf("FMA peak probe: not available (built without AVX2/AVX-512)\n");
  std::printf("%-6s %6s %11s %10s %10s %9s\n", "model", "batch", "images/s", "ms/image", "GFLOP/s", "of peak");
  std::ofstream tcsv(out / "40_efficientvit_throughput.csv");
  tcsv << "model,batch,images_per_s,gflops,fma_peak_gflops,fraction_of_peak\n";
  const std::vector<index_t> batches = smoke ? std::vector<index_t>{1} : std::vector<index_t>{1, 16};
  for (auto* m : {&m0, &m4})
    for (index_t b : batches) {
      const timing t = time_forward(*m, b, x, smoke ? 0.0 : 1.0, smoke ? 1 : 3);
      std::printf("%-6s %6ld %11.1f %10.2f %10.1f %8.1f%%\n", m->config().name.c_str(), static_cast<long>(b),
                  t.images_per_s, 1e3 / t.images_per_s, t.gflops, peak > 0 ? 100.0 * t.gflops / peak : 0.0);
      tcsv << m->config().name << ',' << b << ',' << t.images_per_s << ',' << t.gflops << ',' << peak << ','
           << (peak > 0 ? t.gflops / peak : 0.0) << '\n';
    }
  tcsv.close();
  std::printf("(GFLOP/s = 2 x efficientvit_macs per image / time: the paper's count, attention products included)\n");
  std::printf("\nwrote 40_efficientvit_{input,attention}.png, 40_efficientvit_{entropy,throughput}.csv into %s; total %.1f s\n",
              out.string().c_str(), seconds_since(t_start));
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) { // a bad --model, an unreadable image, weights of another model...
    std::fprintf(stderr, "40_efficientvit: %s\n", e.what());
    return 1;
  }
}
