// SPDX-License-Identifier: MIT
//
// 01 - layers: forward and backward side by side, and a hash-grid MLP that learns an image
// =========================================================================================
//
// What this notebook teaches:
//  1. A layer is a view into a named `nn::parameters` collection; its forward and backward are two
//     plain functions next to each other (no autograd tape). The first cell runs a linear layer
//     with a GELU, takes its backward, and puts a few gradient entries beside central finite
//     differences, which is how every backward in membound is tested.
//  2. A multiresolution hash-grid encoding (instant-ngp) in front of a tiny MLP, trained with Adam
//     on random points of a procedural 128 x 128 picture (rings and a disc): the encoding's table
//     and the MLP's weights are learned together; the loss falls by orders of magnitude in a few
//     hundred steps. Writes 01_loss.csv (and 01_loss.png where gnuplot exists) and the target and
//     learned pictures as 01_target.png and 01_learned.png.
//
// Run: build/release/examples/01_layers [steps]     (default 300 steps, about 10 s on one core)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <membound/membound.hpp>

using namespace membound;

namespace {
/// The picture to learn, in [0,1]: concentric rings plus a bright disc, smooth enough for a
/// hash grid of 128 x 128 to fit.
float target(float x, float y) {
  const float r = std::hypot(x - 0.5f, y - 0.5f);
  const float rings = 0.5f + 0.5f * std::cos(40.0f * r);
  const float disc = std::hypot(x - 0.7f, y - 0.3f) < 0.12f ? 1.0f : 0.0f;
  return std::min(1.0f, 0.7f * rings * (r < 0.45f ? 1.0f : 0.2f) + disc);
}

void write_png(const char* path, const std::vector<float>& img, int side) {
  std::vector<unsigned char> px(img.size());
  for (std::size_t i = 0; i < img.size(); ++i)
    px[i] = static_cast<unsigned char>(std::lround(255.0f * std::min(1.0f, std::max(0.0f, img[i]))));
  if (stbi_write_png(path, side, side, 1, px.data(), side) == 0) std::printf("  could not write %s\n", path);
  else std::printf("  wrote %s\n", path);
}
} // namespace

int main(int argc, char** argv) {
  try {
    // The smoke tests set MEMBOUND_SMOKE=1 (fewer steps: sanitizer builds are slow).
    const int steps = argc > 1 ? std::max(1, std::atoi(argv[1])) : (std::getenv("MEMBOUND_SMOKE") ? 40 : 300);
    std::mt19937 gen(2026);

    // ---- 1. one layer's forward and backward beside finite differences -----------------------
    std::printf("== 1. linear + GELU: analytic gradient beside central finite differences\n");
    nn::parameters p;
    auto fc = nn::linear::make(p, "fc", 4, 3, true, nn::activation::gelu_erf, gen);
    array<float> x({2, 4}), z({2, 3}), y({2, 3}), dy({2, 3}), dz({2, 3}), dx({2, 4}); // (N,C_in) (N,C_out) ...
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x.span()) v = nd(gen);
    dy.fill(1.0f); // L = sum(y)
    fc.forward(x.cview(), z.view(), y.view());
    fc.backward(x.cview(), z.cview(), dy.cview(), dx.view(), dz.view());
    auto loss = [&] {
      fc.forward(x.cview(), z.view(), y.view());
      double s = 0;
      for (float v : y.span()) s += v;
      return s;
    };
    std::printf("  %-16s %12s %12s\n", "entry", "backward", "finite diff");
    const double h = 1e-2;
    for (auto [name, ptr, grad] : {std::tuple{"W[0,0]", &fc.weight(0, 0), fc.grad_weight(0, 0)},
                                   std::tuple{"W[2,3]", &fc.weight(2, 3), fc.grad_weight(2, 3)},
                                   std::tuple{"b[1]", &fc.bias(1), fc.grad_bias(1)}, std::tuple{"x[1,2]", &x(1, 2), dx(1, 2)}}) {
      const float keep = *ptr;
      *ptr = keep + static_cast<float>(h);
      const double up = loss();
      *ptr = keep - static_cast<float>(h);
      const double down = loss();
      *ptr = keep;
      std::printf("  %-16s %12.6f %12.6f\n", name, static_cast<double>(grad), (up - down) / (2 * h));
    }

    // ---- 2. hash grid + MLP learns a picture ---------------------------------------------------
    std::printf("\n== 2. hash grid (L=8, F=2, T=2^14) + MLP 16 -> 64 -> 64 -> 1, Adam, %d steps of 4096 points\n", steps);
    nn::hash_grid_config gc;
    gc.input_dims = 2;
    gc.levels = 8;
    gc.features = 2;
    gc.log2_table = 14;
    gc.base_resolution = 8;
    gc.growth = nn::hash_grid_growth(8, 256, 8);
    nn::hash_grid grid(gc);
    nn::parameters mp;
    auto mlp = nn::mlp::make(mp, "mlp", {grid.output_dims(), 64, 64, 1}, nn::activation::relu, nn::activation::identity, gen);
    constexpr index_t batch = 4096;
    mlp.reserve(batch);
    array<float> pts({batch, 2}), enc({batch, grid.output_dims()}), out({batch, 1}), tgt({batch, 1}); // (N,2) (N,L*F) (N,1) (N,1)
    array<float> dout({batch, 1}), denc({batch, grid.output_dims()});                                   // (N,1) (N,L*F)
    array<float> dtable(std::initializer_list<index_t>{grid.levels(), grid.table_size(), grid.features()}); // (L,T,F)
    const nn::adam opt{1e-2f, 0.9f, 0.99f, 1e-15f, 0.0f};
    std::vector<nn::adam::state> states(mp.size());
    nn::adam::state grid_state;
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::ofstream csv("01_loss.csv");
    csv << "step,mse\n";
    for (int s = 1; s <= steps; ++s) {
      for (index_t i = 0; i < batch; ++i) {
        pts(i, 0) = u(gen);
        pts(i, 1) = u(gen);
        tgt(i, 0) = target(pts(i, 0), pts(i, 1));
      }
      grid.forward(pts.cview(), enc.view());
      mlp.forward(enc.cview(), out.view());
      const float mse = nn::mse(out.cview(), tgt.cview(), dout.view());
      mp.zero_grad();
      dtable.fill(0.0f);
      mlp.backward(enc.cview(), dout.cview(), denc.view());
      grid.backward_table(pts.cview(), denc.cview(), dtable.view());
      for (std::size_t k = 0; k < mp.size(); ++k) opt.step(mp[k].value.span(), mp[k].grad.cview().span(), states[k]);
      opt.step(grid.table().span(), dtable.cview().span(), grid_state);
      csv << s << ',' << mse << '\n';
      if (s == 1 || s % 50 == 0 || s == steps) std::printf("  step %4d  mse %.6f\n", s, static_cast<double>(mse));
    }
    csv.close();

    constexpr int side = 128;
    std::vector<float> want(side * side), got(side * side);
    array<float> row({side, 2}), row_enc({side, grid.output_dims()}), row_out({side, 1}); // (W,2) (W,L*F) (W,1)
    double err = 0;
    for (int yy = 0; yy < side; ++yy) {
      for (int xx = 0; xx < side; ++xx) {
        row(xx, 0) = (static_cast<float>(xx) + 0.5f) / side;
        row(xx, 1) = (static_cast<float>(yy) + 0.5f) / side;
        want[static_cast<std::size_t>(yy * side + xx)] = target(row(xx, 0), row(xx, 1));
      }
      grid.forward(row.cview(), row_enc.view());
      mlp.forward(row_enc.cview(), row_out.view());
      for (int xx = 0; xx < side; ++xx) {
        got[static_cast<std::size_t>(yy * side + xx)] = row_out(xx, 0);
        const double d = row_out(xx, 0) - want[static_cast<std::size_t>(yy * side + xx)];
        err += d * d;
      }
    }
    std::printf("  mean squared error over the 128 x 128 picture: %.6f (PSNR %.1f dB)\n", err / (side * side),
                10.0 * std::log10(1.0 / (err / (side * side))));
    write_png("01_target.png", want, side);
    write_png("01_learned.png", got, side);
    std::printf("  wrote 01_loss.csv\n");
    if (std::system("command -v gnuplot >/dev/null 2>&1") == 0 &&
        std::system("gnuplot -e \"set terminal png size 800,500; set output '01_loss.png'; set datafile separator ',';"
                    " set logscale y; set xlabel 'step'; set ylabel 'MSE'; plot '01_loss.csv' using 1:2 with lines"
                    " title 'training loss'\" 2>/dev/null") == 0)
      std::printf("  wrote 01_loss.png\n");
    return 0;
  } catch (const membound::error& e) {
    std::fprintf(stderr, "membound error: %s\n", e.what());
    return 1;
  }
}
