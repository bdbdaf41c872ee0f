// SPDX-License-Identifier: MIT
// pim/decode.hpp: the decode step on the PIM model and the roofline baselines. Per-token latency
// follows the bytes per token at small context; attention grows linearly with the context and
// follows the KV budget, not the context; the step's parts add up and its GEMVs are the closed
// forms (so the scheduler's cycles); the roofline without overhead is bytes / bandwidth, so the
// PIM/GPU ratio is the ratio of effective bandwidths; typed errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "membound/pim/decode.hpp"

using namespace membound;

namespace {
const pim::dram_timing T = pim::gddr6_2000_1350mv;
std::vector<pim::model_shape> gpt_shapes() {
  return {pim::model_shape::gpt("GPT-2 small", 12, 768, 12), pim::model_shape::gpt("GPT-2 medium", 24, 1024, 16),
          pim::model_shape::gpt("GPT-2 large", 36, 1280, 20), pim::model_shape::gpt("GPT-2 XL", 48, 1600, 25),
          pim::model_shape::gpt("GPT-3 large", 24, 1536, 16), pim::model_shape::gpt("GPT-3 XL", 24, 2048, 16)};
}
} // namespace

TEST_CASE("pim decode: latency follows bytes per token, attention follows context and budget") {
  const pim::organisation org;
  // parameter counts of the public checkpoints (GPT-2 small 124 M, XL 1558 M with the tied
  // embedding counted once as the LM head)
  CHECK(std::abs(pim::model_shape::gpt("s", 12, 768, 12).weight_params() / 1e6 - 123.5) < 1.0);
  CHECK(std::abs(pim::model_shape::gpt("xl", 48, 1600, 25).weight_params() / 1e6 - 1555.0) < 3.0);
  // small context: latency / weight bytes stays within 25 % across the GPT shapes
  pim::decode_options shortctx;
  shortctx.context = 16;
  const auto base = pim::decode_step(gpt_shapes()[0], T, org, shortctx);
  const double per_byte0 = base.total_ns() / base.weight_bytes;
  for (const auto& m : gpt_shapes()) {
    CAPTURE(m.name);
    const auto c = pim::decode_step(m, T, org, shortctx);
    CHECK(c.weight_bytes == doctest::Approx(2.0 * m.weight_params()).epsilon(1e-12));
    CHECK(c.total_ns() / c.weight_bytes == doctest::Approx(per_byte0).epsilon(0.25));
    CHECK(c.attention_ns < 0.1 * c.total_ns());
  }
  // attention time is affine in the context: each doubling from 1024 adds twice the last step
  // (within 2 %: how the heads' rows fall on channels, and so the buffer reloads, shifts a little)
  const auto small = gpt_shapes()[0];
  std::vector<double> att;
  for (index_t ctx : {1024, 2048, 4096, 8192}) {
    pim::decode_options o;
    o.context = ctx;
    att.push_back(pim::decode_step(small, T, org, o).attention_ns);
  }
  CHECK(att[2] - att[1] == doctest::Approx(2.0 * (att[1] - att[0])).epsilon(0.02));
  CHECK(att[3] - att[2] == doctest::Approx(2.0 * (att[2] - att[1])).epsilon(0.02));
  // keeping M tokens per KV head costs what a context of M costs
  pim::decode_options budget, shortm;
  budget.context = 8192;
  budget.kept = 512;
  shortm.context = 512;
  const auto b = pim::decode_step(small, T, org, budget), s = pim::decode_step(small, T, org, shortm);
  CHECK(b.attention_ns == s.attention_ns);
  CHECK(b.kv_bytes == s.kv_bytes);
  CHECK(b.total_ns() == s.total_ns());
  // the parts add up; energy is positive in every part
  CHECK(b.total_ns() == doctest::Approx(b.gemv_ns + b.attention_ns + b.kv_write_ns + b.asic_ns + b.link_ns));
  CHECK(b.pim_pj > 0);
  CHECK(b.asic_pj > 0);
  CHECK(b.link_pj > 0);
  // the GEMV part is the closed form of each matrix: one layer's FFN up-projection alone
  const auto one = pim::gemv_cost(T, org, {3072, 768, pim::loop_order::k_outer});
  CHECK(one.cycles == pim::gemv_schedule(T, org, {3072, 768, pim::loop_order::k_outer}).cycles);
  // concatenating Q, K and V saves the separate GEMVs' row and load overheads
  pim::decode_options split = shortctx;
  split.concat_qkv = false;
  CHECK(pim::decode_step(small, T, org, shortctx).gemv_ns < pim::decode_step(small, T, org, split).gemv_ns);
  // batched V-transposed appends cut the write cost
  pim::decode_options batched = shortctx;
  batched.append_batch = 16;
  CHECK(pim::decode_step(small, T, org, batched).kv_write_ns < base.kv_write_ns);
  // Llama-style: grouped KV heads read fewer KV bytes than as many full heads
  const auto llama = pim::model_shape::llama_like("llama-1b", 16, 2048, 32, 8, 8192, 32000);
  const auto mha = pim::model_shape::llama_like("mha-1b", 16, 2048, 32, 32, 8192, 32000);
  pim::decode_options longctx;
  longctx.context = 4096;
  CHECK(pim::decode_step(llama, T, org, longctx).kv_write_ns < pim::decode_step(mha, T, org, longctx).kv_write_ns);
}

TEST_CASE("pim decode: roofline baselines") {
  const auto m = gpt_shapes()[3];
  pim::decode_options o;
  o.context = 16;
  pim::roofline gpu; // T4
  gpu.kernel_overhead_us = 0;
  const auto g = pim::decode_step(m, gpu, o);
  // memory bound: bytes / bandwidth exactly
  CHECK(g.ns == doctest::Approx(g.bytes / gpu.bandwidth_gbps).epsilon(1e-12));
  const double kv = 2.0 * 48 * 1600 * 16;
  CHECK(g.bytes == doctest::Approx(2.0 * (m.weight_params() + kv)));
  // so the PIM/GPU speed ratio is the ratio of the bandwidths each achieves on these bytes
  const auto p = pim::decode_step(m, T, pim::organisation{}, o);
  const double pim_bw = g.bytes / p.total_ns();
  CHECK(g.ns / p.total_ns() == doctest::Approx(pim_bw / gpu.bandwidth_gbps).epsilon(1e-12));
  // the overhead term adds kernels x overhead
  pim::roofline eager = gpu;
  eager.kernel_overhead_us = 8;
  CHECK(pim::decode_step(m, eager, o).ns - g.ns == doctest::Approx((48 * 12 + 2) * 8e3));
  // a compute-bound device: FLOPs / peak
  pim::roofline slow = gpu;
  slow.peak_tflops = 1e-3;
  CHECK(pim::decode_step(m, slow, o).ns == doctest::Approx(2.0 * (m.weight_params() + kv) / 1.0).epsilon(1e-12));
  const auto cpu = pim::cpu_roofline(14.0, 160.0);
  CHECK(pim::decode_step(m, cpu, o).ns > pim::decode_step(m, gpu, o).ns);
}

TEST_CASE("pim decode: bad input") {
  const pim::organisation org;
  auto bad = pim::model_shape::gpt("bad", 0, 768, 12);
  CHECK_THROWS_WITH_AS(pim::decode_step(bad, T, org), doctest::Contains("layers 0"), config_error);
  auto grouped = pim::model_shape::llama_like("g", 2, 256, 8, 3, 512, 100);
  CHECK_THROWS_WITH_AS(pim::decode_step(grouped, T, org), doctest::Contains("8 heads do not group into 3"),
                       config_error);
  pim::decode_options o;
  o.context = 0;
  CHECK_THROWS_WITH_AS(pim::decode_step(gpt_shapes()[0], T, org, o), doctest::Contains("context 0"), config_error);
  pim::organisation tiny = org;
  tiny.rows = 64;
  CHECK_THROWS_AS(pim::decode_step(gpt_shapes()[3], T, tiny), budget_error);
  pim::roofline r;
  r.bandwidth_gbps = -1;
  CHECK_THROWS_WITH_AS(pim::decode_step(gpt_shapes()[0], r), doctest::Contains("bandwidth -1"), config_error);
}
