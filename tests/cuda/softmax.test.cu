// SPDX-License-Identifier: MIT
// cuda::softmax_rows against a double-precision host reference (odd row lengths, large magnitudes,
// NaN/-inf rows, in-place, strided rows) and its input validation. Prints the kernel's bandwidth
// beside a device-to-device copy probe (information, not an assertion). Exits 77 without a GPU.
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <vector>

#include "membound/backend/cuda/softmax.cuh"

using namespace membound;

namespace {
int failures = 0;
#define EXPECT(cond, ...)                        \
  do {                                           \
    if (!(cond)) {                               \
      ++failures;                                \
      std::printf("FAILED %s: ", #cond);         \
      std::printf(__VA_ARGS__);                  \
      std::printf("\n");                         \
    }                                            \
  } while (0)

// Three-pass reference in double: max (NaN-propagating), sum of exp, normalise.
std::vector<float> host_softmax(const std::vector<float>& x, index_t rows, index_t cols) {
  std::vector<float> y(x.size());
  for (index_t r = 0; r < rows; ++r) {
    double m = -INFINITY;
    for (index_t j = 0; j < cols; ++j) { const double v = x[r * cols + j]; m = (v > m || v != v) ? v : m; }
    double s = 0;
    for (index_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(x[r * cols + j]) - m);
    for (index_t j = 0; j < cols; ++j) y[r * cols + j] = static_cast<float>(std::exp(static_cast<double>(x[r * cols + j]) - m) / s);
  }
  return y;
}

void run_case(index_t rows, index_t cols, float scale, bool in_place, index_t offset = 0) {
  std::mt19937 gen(static_cast<unsigned>(rows * 131 + cols));
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (auto& v : x) v = nd(gen);
  if (rows > 2 && cols > 3) {
    x[1 * cols + 2] = NAN;                                           // row 1: NaN -> all NaN
    for (index_t j = 0; j < cols; ++j) x[2 * cols + j] = -INFINITY;  // row 2: all -inf -> NaN
  }
  const auto want = host_softmax(x, rows, cols);
  float *dx = nullptr, *dy = nullptr;
  const std::size_t bytes = x.size() * sizeof(float);
  MEMBOUND_CUDA_CHECK(cudaMalloc(&dx, bytes + 4));
  MEMBOUND_CUDA_CHECK(cudaMalloc(&dy, bytes + 4));
  float* px = dx + offset; // offset 1: rows not 16-byte aligned -> scalar register slots
  MEMBOUND_CUDA_CHECK(cudaMemcpy(px, x.data(), bytes, cudaMemcpyHostToDevice));
  float* out = in_place ? px : dy + offset;
  cuda::softmax_rows(make_view<const float>(px, {rows, cols}), make_view(out, {rows, cols})); // (N,C)
  std::vector<float> got(x.size());
  MEMBOUND_CUDA_CHECK(cudaMemcpy(got.data(), out, bytes, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) { EXPECT(std::isnan(got[i]), "row %zu: expected NaN, got %g", i / cols, got[i]); continue; }
    const double err = std::abs(static_cast<double>(got[i]) - want[i]) / (std::abs(static_cast<double>(want[i])) + 1e-30);
    if (want[i] > 1e-30f) worst = std::max(worst, err);
  }
  // expf is within 2 ulp; a sum of C terms adds at most C * eps / sqrt-ish: bound 1e-5 relative.
  EXPECT(worst < 1e-5, "rows=%ld cols=%ld scale=%g: max relative error %g", static_cast<long>(rows), static_cast<long>(cols), scale, worst);
  MEMBOUND_CUDA_CHECK(cudaFree(dx));
  MEMBOUND_CUDA_CHECK(cudaFree(dy));
}

void bandwidth() {
  const index_t rows = 8192, cols = 8192; // 256 MiB in, 256 MiB out
  float *dx = nullptr, *dy = nullptr;
  const std::size_t bytes = static_cast<std::size_t>(rows * cols) * sizeof(float);
  MEMBOUND_CUDA_CHECK(cudaMalloc(&dx, bytes));
  MEMBOUND_CUDA_CHECK(cudaMalloc(&dy, bytes));
  MEMBOUND_CUDA_CHECK(cudaMemset(dx, 0, bytes));
  cudaEvent_t t0, t1;
  MEMBOUND_CUDA_CHECK(cudaEventCreate(&t0));
  MEMBOUND_CUDA_CHECK(cudaEventCreate(&t1));
  auto time = [&](auto&& f) {
    f();
    MEMBOUND_CUDA_CHECK(cudaEventRecord(t0));
    for (int i = 0; i < 20; ++i) f();
    MEMBOUND_CUDA_CHECK(cudaEventRecord(t1));
    MEMBOUND_CUDA_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    MEMBOUND_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    return 2.0 * static_cast<double>(bytes) * 20 / (ms * 1e-3) / 1e9; // read + write, GB/s
  };
  const double copy = time([&] { MEMBOUND_CUDA_CHECK(cudaMemcpyAsync(dy, dx, bytes, cudaMemcpyDeviceToDevice)); });
  const double sm = time([&] { cuda::softmax_rows(make_view<const float>(dx, {rows, cols}), make_view(dy, {rows, cols})); });
  // The register-resident variants at this row length (information for tuning the dispatch).
  for (auto [threads, per, vec] : {std::tuple{256, 8, true}, {512, 4, true}, {1024, 2, true}, {1024, 8, false}}) {
    const double v = time([&] {
      cuda::detail::launch_regs(dx, dy, rows, cols, cols, cols, threads, per, vec, nullptr);
    });
    std::printf("  variant threads=%d per_thread=%d float4=%d: %.0f GB/s\n", threads, per, vec ? 1 : 0, v);
  }
  cudaDeviceProp prop{};
  MEMBOUND_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bandwidth on %s: copy probe %.0f GB/s, softmax_rows (8192x8192 f32) %.0f GB/s = %.0f%% of copy\n",
              prop.name, copy, sm, 100.0 * sm / copy);
  MEMBOUND_CUDA_CHECK(cudaFree(dx));
  MEMBOUND_CUDA_CHECK(cudaFree(dy));
}
} // namespace

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device: skipping (exit 77)\n");
    return 77;
  }
  try {
    for (index_t cols : {1, 7, 31, 32, 33, 257, 1000, 4097, 8192, 8193, 20000})
      for (index_t rows : {1, 5, 64}) run_case(rows, cols, 3.0f, false);
    run_case(16, 2048, 1e4f, false); // large magnitudes
    run_case(16, 777, 1.0f, true);   // in place, register path
    run_case(4, 9000, 1.0f, true);   // in place, float4 register path
    run_case(3, 40000, 1.0f, true);  // in place, three-pass path (10000 float4 slots > 8192)
    run_case(3, 8999, 1.0f, false);  // three-pass path (8999 scalar slots)
    for (index_t cols : {5, 64, 1024, 4096}) run_case(9, cols, 2.0f, false, 1); // unaligned rows
    // Validation: mismatched shapes and non-unit column strides are typed errors before any launch.
    float* d = nullptr;
    MEMBOUND_CUDA_CHECK(cudaMalloc(&d, 64 * sizeof(float)));
    bool threw = false;
    try { cuda::softmax_rows(make_view<const float>(d, {4, 8}), make_view(d, {8, 4})); } catch (const shape_error&) { threw = true; }
    EXPECT(threw, "mismatched extents must throw shape_error");
    threw = false;
    try { cuda::softmax_rows(make_view<const float>(d, {4, 4}, {16, 2}), make_view(d, {4, 4})); } catch (const shape_error&) { threw = true; }
    EXPECT(threw, "column stride 2 must throw shape_error");
    MEMBOUND_CUDA_CHECK(cudaFree(d));
    bandwidth();
  } catch (const std::exception& e) {
    std::printf("exception: %s\n", e.what());
    return 1;
  }
  std::printf("%s: %d failures\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
