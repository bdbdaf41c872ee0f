// SPDX-License-Identifier: MIT
// What every consumer test builds: a small program using the tensor types, a SIMD kernel beside
// its scalar twin, the GEMM entry and a safetensors round trip in memory. Exit 0 = it works.
#include <cstdio>

#include <membound/membound.hpp>

int main() {
  using namespace membound;
  array<float> a({4, 8}), b({8, 3}), c({4, 3}); // (M,K) (K,N) (M,N)
  for (index_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i % 7);
  for (index_t i = 0; i < b.size(); ++i) b[i] = 0.5f - 0.125f * static_cast<float>(i % 5);
  cpu::gemm(a.cview(), b.cview(), c.view());
  const float simd = cpu::dot(a.span(), a.span());
  const float twin = cpu::dot<backend::scalar>(a.span(), a.span());
  io::safetensors_writer w;
  w.add("c", c.cview());
  const auto bytes = w.to_bytes();
  const auto f = io::safetensors::from_buffer(bytes);
  const auto back = f.load<float>("c");
  const bool ok = back.size() == 12 && back[5] == c[5] && simd == twin;
  std::printf("membound %s consumer: %s (backend %s, gemm %s)\n", version_string, ok ? "ok" : "FAILED",
              std::string(backend::best_cpu::name).c_str(), std::string(backend::default_gemm::name).c_str());
  return ok ? 0 : 1;
}
