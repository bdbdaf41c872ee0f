// SPDX-License-Identifier: MIT
//
// 00 - tensors, dtypes, a kernel and its scalar twin, and a safetensors file
// ===========================================================================
//
// What this notebook teaches:
//  1. `array<T>` owns 64-byte-aligned, row-major memory; `view<T>` looks at any strided block of it
//     without copying: slice, select, transpose, reshape. Every tensor line carries a shape comment
//     with the project's dimension letters (B batch, T tokens, D head dim, ...).
//  2. `bf16` and `f16` are storage types: f32 -> 16 bits rounds to nearest even. The cell writes the
//     relative rounding error of both across 80 binades to 00_rounding.csv (and a PNG via gnuplot
//     when it is installed): bf16 keeps f32's range with 8 bits of precision, f16 has 11 bits but
//     overflows past 65504 and loses precision below 6e-5 (subnormals).
//  3. Every SIMD kernel has a scalar twin, selected by the backend tag that is each kernel's first
//     template parameter: `cpu::softmax<backend::scalar>` is the oracle for `cpu::softmax<>`.
//  4. safetensors: write a small checkpoint (f32 and bf16 tensors, metadata), memory-map it back,
//     view an f32 tensor without copying and load a bf16 tensor converted to f32.
//     Pass a path to any .safetensors file as the first argument to list its tensors instead.
//
// Run: build/release/examples/00_tensors [file.safetensors]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <random>
#include <string>

#include <membound/membound.hpp>

using namespace membound;

namespace {
void print_matrix(const char* title, view<const float> m) {
  std::printf("%s (%td x %td, strides %td,%td):\n", title, m.extent(0), m.extent(1), m.stride(0), m.stride(1));
  for (index_t i = 0; i < m.extent(0); ++i) {
    std::printf("   ");
    for (index_t j = 0; j < m.extent(1); ++j) std::printf(" %6.1f", static_cast<double>(m(i, j)));
    std::printf("\n");
  }
}

void list_file(const char* path) {
  const auto f = io::safetensors::open(path);
  std::printf("%s: %zu tensors, header %zu bytes, %s\n", path, f.tensors().size(), f.header_size(),
              f.mapped() ? "memory-mapped" : "read into memory");
  for (const auto& t : f.tensors()) {
    std::printf("  %-40s %-8s [", t.name.c_str(), std::string(dtype_name(t.type)).c_str());
    for (std::size_t i = 0; i < t.shape.size(); ++i) std::printf("%s%td", i ? ", " : "", t.shape[i]);
    std::printf("]  %zu bytes\n", t.nbytes());
  }
}
} // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1) {
      list_file(argv[1]);
      return 0;
    }
    std::printf("membound %s, CPU backend: %s, GEMM backend: %s\n\n", version_string,
                std::string(backend::best_cpu::name).c_str(), std::string(backend::default_gemm::name).c_str());

    // ---- 1. arrays and views ---------------------------------------------------------------
    std::printf("== 1. arrays and views\n");
    array<float> x({2, 3, 4}); // (B,T,D)
    std::iota(x.data(), x.data() + x.size(), 0.0f);
    print_matrix("x[1] = x.select(0, 1)", x.cview().select(0, 1));             // (T,D)
    print_matrix("x[1][:, 1:3] (a strided slice)", x.cview().select(0, 1).slice(1, 1, 3)); // (T,2)
    print_matrix("x[1] transposed (no copy)", x.cview().select(0, 1).transpose()); // (D,T)
    auto flat = x.cview().reshape({6, -1}); // (B*T,D)
    std::printf("reshape({6, -1}) -> (%td, %td); aligned to 64 bytes: %s\n", flat.extent(0), flat.extent(1),
                reinterpret_cast<std::uintptr_t>(x.data()) % 64 == 0 ? "yes" : "no");
    try {
      (void)x.cview().slice(1, 1, 3).reshape({-1});
    } catch (const shape_error& e) {
      std::printf("reshape of a strided slice throws shape_error: \"%s\"\n", e.what());
    }
    auto m = as_eigen(x.cview().select(0, 0)); // Eigen::Map over (T,D), no copy
    std::printf("Eigen sees x[0] with row sums: %.0f %.0f %.0f\n\n", static_cast<double>(m.row(0).sum()),
                static_cast<double>(m.row(1).sum()), static_cast<double>(m.row(2).sum()));

    // ---- 2. 16-bit storage types -------------------------------------------------------------
    std::printf("== 2. bf16 and f16 rounding (round to nearest even)\n");
    std::printf("  %-12s %-14s %-14s\n", "value", "bf16", "f16");
    for (float v : {1.0f, 3.14159265f, 1000.1f, 65504.0f, 70000.0f, 1e-6f, 1e-30f}) {
      std::printf("  %-12g %-14.8g %-14.8g\n", static_cast<double>(v), static_cast<double>(bf16::from_float(v).to_float()),
                  static_cast<double>(f16::from_float(v).to_float()));
    }
    {
      std::ofstream csv("00_rounding.csv");
      csv << "value,bf16_rel_error,f16_rel_error\n";
      std::mt19937 gen(0);
      std::uniform_real_distribution<float> mant(1.0f, 2.0f);
      for (int e = -40; e < 40; ++e)
        for (int i = 0; i < 16; ++i) {
          const float v = std::ldexp(mant(gen), e);
          const auto rel = [v](float r) { return std::abs(static_cast<double>(r) - v) / v; };
          csv << v << ',' << rel(bf16::from_float(v).to_float()) << ',' << rel(f16::from_float(v).to_float()) << '\n';
        }
    }
    std::printf("  wrote 00_rounding.csv (relative error over 2^-40 .. 2^40)\n");
    if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
      const int rc = std::system(
          "gnuplot -e \"set terminal png size 800,500; set output '00_rounding.png'; set datafile separator ',';"
          " set logscale xy; set key top left; set xlabel 'value'; set ylabel 'relative rounding error';"
          " plot '00_rounding.csv' using 1:2 title 'bf16' with points pt 7 ps 0.4,"
          " '' using 1:3 title 'f16' with points pt 7 ps 0.4\" 2>/dev/null");
      std::printf("  %s\n", rc == 0 ? "wrote 00_rounding.png" : "gnuplot failed; CSV only");
    }
    std::printf("\n");

    // ---- 3. a kernel and its scalar twin ------------------------------------------------------
    std::printf("== 3. softmax: SIMD (%s) beside its scalar twin\n", std::string(backend::best_cpu::name).c_str());
    array<float> logits({1000}), p_simd({1000}), p_twin({1000}); // (C)
    std::mt19937 gen(42);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (auto& v : logits.span()) v = nd(gen);
    cpu::softmax(logits.span(), p_simd.span());
    cpu::softmax<backend::scalar>(logits.span(), p_twin.span());
    double worst = 0.0;
    for (index_t i = 0; i < 1000; ++i)
      worst = std::max(worst, std::abs(static_cast<double>(p_simd[i]) - p_twin[i]) / static_cast<double>(p_twin[i]));
    std::printf("  sum of probabilities: %.7f (SIMD), %.7f (scalar)\n", static_cast<double>(cpu::sum(p_simd.span())),
                static_cast<double>(cpu::sum<backend::scalar>(p_twin.span())));
    std::printf("  largest relative difference between the two: %.2e\n", worst);
    std::printf("  log-sum-exp: %.6f; max logit: %.6f\n\n", static_cast<double>(cpu::logsumexp(logits.span())),
                static_cast<double>(cpu::max(logits.span())));

    // ---- 4. safetensors -----------------------------------------------------------------------
    std::printf("== 4. safetensors round trip\n");
    array<float> w({4, 8}); // (C,D)
    for (index_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i) - 1.0f;
    array<bf16> wb({4, 8}); // (C,D)
    for (index_t i = 0; i < w.size(); ++i) wb[i] = bf16::from_float(w[i]);
    io::safetensors_writer writer;
    writer.add("layer.weight", w.cview());
    writer.add("layer.weight_bf16", wb.cview());
    writer.set_metadata("format", "pt");
    writer.write("00_tensors.safetensors");
    list_file("00_tensors.safetensors");
    const auto file = io::safetensors::open("00_tensors.safetensors");
    const view<const float> wv = file.get<float>("layer.weight"); // (C,D), zero-copy when aligned
    const array<float> wf = file.load<float>("layer.weight_bf16"); // (C,D), converted from bf16
    std::printf("  get<float>: zero-copy view into the mapping: %s; w[3,7] = %g\n",
                (wv.data() >= static_cast<const void*>(file.data_section().data()) &&
                 wv.data() < static_cast<const void*>(file.data_section().data() + file.data_section().size()))
                    ? "yes"
                    : "no (misaligned: copied once)",
                static_cast<double>(wv(3, 7)));
    std::printf("  load<float> of the bf16 copy: w[3,7] = %g (bf16 rounding of %g)\n", static_cast<double>(wf(3, 7)),
                static_cast<double>(w(3, 7)));
    try {
      (void)file.get<float>("layer.weight_bf16");
    } catch (const dtype_error& e) {
      std::printf("  get<float> of a BF16 tensor throws dtype_error: \"%s\"\n", e.what());
    }
    return 0;
  } catch (const membound::error& e) {
    std::fprintf(stderr, "membound error: %s\n", e.what());
    return 1;
  }
}
