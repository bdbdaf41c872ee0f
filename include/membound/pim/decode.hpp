// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The decode step of a transformer on the PIM device (PIM-GPT's system view): a model
/// shape becomes the operation list of one token; matrix-vector products run on the PIM banks
/// (their cycles from `pim::gemv_cost`, the closed form the scheduler is tested against), the
/// non-linear functions on the ASIC, vectors cross the ASIC <-> PIM link, and the new token's K
/// and V are written into the cache. Attention reads the tokens kept per KV head (a KV budget, as
/// kv/'s allocators produce it), not the whole context. Beside it, GPU and CPU rooflines with a
/// per-kernel overhead term for the same token.
///
/// The phases of one operation run one after another (no overlap of ASIC, link and PIM): an
/// upper bound on a pipelined system, stated with the other assumptions in pim/README.md.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "membound/pim/gemv.hpp"
#include "membound/pim/kv_append.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// A decoder-only transformer's shape. GPT-2/3 style: LayerNorm, GELU, a dense FFN of `ffn`,
/// heads == kv_heads. Llama style: RMSNorm, rotary embeddings, SwiGLU (gate and up projections of
/// `ffn` each), grouped-query attention (kv_heads < heads).
struct model_shape {
  std::string name;
  index_t layers = 0, d_model = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  bool llama = false; ///< RMSNorm + RoPE + SwiGLU (else LayerNorm + GELU MLP)

  /// GPT-2/3 shapes: head_dim d / heads, FFN 4 d, untied LM head counted once.
  static model_shape gpt(std::string n, index_t layers, index_t d, index_t heads, index_t vocab = 50257) {
    return {std::move(n), layers, d, heads, heads, d / heads, 4 * d, vocab, false};
  }
  static model_shape llama_like(std::string n, index_t layers, index_t d, index_t heads, index_t kv_heads,
                                index_t ffn, index_t vocab) {
    return {std::move(n), layers, d, heads, kv_heads, d / heads, ffn, vocab, true};
  }
  /// Parameters read per token (every matrix; embeddings of one token are not read in full).
  double weight_params() const noexcept {
    const double d = static_cast<double>(d_model), hd = static_cast<double>(head_dim);
    const double qkv = d * hd * static_cast<double>(heads + 2 * kv_heads), out = static_cast<double>(heads) * hd * d;
    const double mlp = (llama ? 3.0 : 2.0) * d * static_cast<double>(ffn);
    return static_cast<double>(layers) * (qkv + out + mlp) + static_cast<double>(vocab) * d;
  }
  /// @throws config_error for non-positive sizes or heads that do not group.
  void validate() const {
    MEMBOUND_EXPECTS(layers >= 1 && d_model >= 1 && heads >= 1 && kv_heads >= 1 && head_dim >= 1 && ffn >= 1 &&
                         vocab >= 1,
                     config_error, "pim::model_shape ", name, ": layers ", layers, ", d ", d_model, ", heads ", heads,
                     ", kv heads ", kv_heads, ", head dim ", head_dim, ", ffn ", ffn, ", vocab ", vocab,
                     ", expected all >= 1");
    MEMBOUND_EXPECTS(heads % kv_heads == 0, config_error, "pim::model_shape ", name, ": ", heads,
                     " heads do not group into ", kv_heads, " KV heads");
  }
};

/// The ASIC beside the PIM chips: `lanes` element operations per cycle at `ghz`; each
/// non-linear function costs `*_ops` operations per element (assumptions: pim/README.md).
struct asic_model {
  static constexpr std::string_view name = "asic_model";
  double ghz = 1.0, lanes = 64.0;
  double norm_ops = 5.0, softmax_ops = 4.0, act_ops = 4.0, rope_ops = 4.0, add_ops = 1.0;
};

/// Options of the decode step: context (tokens the model has seen), `kept` tokens per KV head
/// and layer (a KV budget; 0 or >= context keeps all), QKV concatenated into one GEMV or three,
/// the loop order of GEMVs whose K spans chunks, and the V-transposed appends batched over
/// `append_batch` tokens (one row visit per V row per batch).
struct decode_options {
  index_t context = 1024, kept = 0;
  bool concat_qkv = true;
  loop_order order = loop_order::k_outer;
  index_t append_batch = 1;
  index_t attended() const noexcept { return kept > 0 && kept < context ? kept : context; }
};

/// Latency (ns) and energy (pJ) of one decode step, by where the time goes.
struct step_cost {
  double gemv_ns = 0, attention_ns = 0, kv_write_ns = 0, asic_ns = 0, link_ns = 0;
  double pim_pj = 0, asic_pj = 0, link_pj = 0;
  double weight_bytes = 0, kv_bytes = 0; ///< bytes the PIM banks read for weights and attention
  command_counts counts; ///< of the GEMVs (an append's commands are shared by its batch)
  double total_ns() const noexcept { return gemv_ns + attention_ns + kv_write_ns + asic_ns + link_ns; }
  double total_pj() const noexcept { return pim_pj + asic_pj + link_pj; }
};

/// One decode step of `m` on the device. Complexity: O(layers x K-chunks) closed-form GEMVs.
/// @throws config_error (shape, options, device), budget_error (a matrix does not fit the device).
inline step_cost decode_step(const model_shape& m, const dram_timing& t, const organisation& org,
                             const decode_options& opt = {}, const asic_model& asic = {}, const energy& e = {}) {
  m.validate();
  t.validate();
  org.validate();
  MEMBOUND_EXPECTS(opt.context >= 1 && opt.kept >= 0 && opt.append_batch >= 1, config_error,
                   "pim::decode_step: context ", opt.context, ", kept ", opt.kept, ", append batch ", opt.append_batch,
                   ", expected context >= 1, kept >= 0, batch >= 1");
  MEMBOUND_EXPECTS(asic.ghz > 0 && asic.lanes > 0, config_error, "pim::decode_step: ASIC at ", asic.ghz, " GHz with ",
                   asic.lanes, " lanes, expected > 0");
  step_cost c;
  const double tck = t.tck_ns, link_ns_per_byte = 1.0 / org.link_gbps;
  const index_t d = m.d_model, hd = m.head_dim, M = opt.attended();
  auto asic_ops = [&](double ops) {
    c.asic_ns += ops / (asic.lanes * asic.ghz);
    c.asic_pj += ops * e.asic_pj_per_op;
  };
  auto link = [&](double bytes) {
    c.link_ns += bytes * link_ns_per_byte;
    c.link_pj += bytes * e.io_pj_per_byte;
  };
  // A GEMV on the banks: its `inputs` input vectors (attention: one per head) cross the link once
  // each (broadcast), the outputs (and partial sums of K-outer chunks, reduced on the ASIC) come back.
  auto gemv = [&](index_t rows, index_t k, bool attention, bool packed = false, index_t inputs = 1) {
    gemv_mapping map{rows, k, packed ? loop_order::rows_outer : opt.order, 0, packed};
    map.inputs = inputs;
    const auto r = gemv_cost(t, org, map);
    (attention ? c.attention_ns : c.gemv_ns) += static_cast<double>(r.cycles) * tck;
    c.pim_pj += command_energy_pj(r.counts, org, e);
    c.counts += r.counts;
    (attention ? c.kv_bytes : c.weight_bytes) += 2.0 * static_cast<double>(rows) * static_cast<double>(k);
    const index_t partials = map.order == loop_order::k_outer ? map.chunks(org) : 1;
    link(2.0 * static_cast<double>(k * inputs) + 2.0 * static_cast<double>(rows * partials));
    if (partials > 1) asic_ops(static_cast<double>(rows * (partials - 1)));
  };
  // The new token's K and V: one append of `append_batch` tokens per layer, scheduled command by
  // command (kv_append.hpp; the same for every layer, so scheduled once), its cost shared by the
  // batch's tokens.
  const auto append = kv_append_schedule(t, org, {m.kv_heads, m.head_dim, opt.append_batch});
  const double per_token = 1.0 / static_cast<double>(opt.append_batch);
  auto kv_append = [&]() {
    c.kv_write_ns += static_cast<double>(append.cycles) * tck * per_token;
    c.pim_pj += command_energy_pj(append.counts, org, e) * per_token;
    link(2.0 * 2.0 * static_cast<double>(m.kv_heads * hd));
  };
  const double norm = m.llama ? asic.norm_ops - 1.0 : asic.norm_ops; // RMSNorm skips the mean
  for (index_t l = 0; l < m.layers; ++l) {
    asic_ops(norm * static_cast<double>(d));
    const index_t q = m.heads * hd, kv = m.kv_heads * hd;
    if (opt.concat_qkv) {
      gemv(q + 2 * kv, d, false);
    } else {
      gemv(q, d, false);
      gemv(kv, d, false);
      gemv(kv, d, false);
    }
    if (m.llama) asic_ops(asic.rope_ops * static_cast<double>(q + kv));
    kv_append();
    // q . K^T for every query head over its KV head's kept keys (packed rows; with grouped
    // heads the keys are read once per query head: one accumulator, no reuse), softmax on the
    // ASIC, then the probabilities against V transposed (rows of head_dim, K over the tokens).
    gemv(m.heads * M, hd, true, true, m.heads);
    asic_ops(asic.softmax_ops * static_cast<double>(m.heads * M));
    gemv(m.heads * hd, M, true, false, m.heads);
    gemv(d, q, false);
    asic_ops(asic.add_ops * static_cast<double>(d) + norm * static_cast<double>(d));
    if (m.llama) {
      gemv(2 * m.ffn, d, false); // gate and up, concatenated
      asic_ops((asic.act_ops + 1.0) * static_cast<double>(m.ffn));
    } else {
      gemv(m.ffn, d, false);
      asic_ops(asic.act_ops * static_cast<double>(m.ffn));
    }
    gemv(d, m.ffn, false);
    asic_ops(asic.add_ops * static_cast<double>(d));
  }
  asic_ops(norm * static_cast<double>(d));
  gemv(m.vocab, d, false);
  asic_ops(static_cast<double>(m.vocab)); // the arg-max
  return c;
}

/// A roofline accelerator or CPU running the same token with batch 1: each kernel takes
/// max(bytes / bandwidth, FLOPs / peak) plus a fixed overhead (launch, framework, synchronisation).
/// Defaults: NVIDIA T4 (320 GB/s, 65 TFLOP/s fp16, 70 W), 12 kernels per layer and 8 us each
/// (an eager PyTorch decode; assumptions, pim/README.md).
struct roofline {
  std::string name = "T4";
  double bandwidth_gbps = 320.0, peak_tflops = 65.0, watts = 70.0;
  double kernel_overhead_us = 8.0;
  index_t kernels_per_layer = 12;
  double bytes_per_param = 2.0;
  /// @throws config_error for non-positive rates or negative overheads.
  void validate() const {
    MEMBOUND_EXPECTS(bandwidth_gbps > 0 && peak_tflops > 0 && watts >= 0 && kernel_overhead_us >= 0 &&
                         kernels_per_layer >= 0 && bytes_per_param > 0,
                     config_error, "pim::roofline ", name, ": bandwidth ", bandwidth_gbps, " GB/s, peak ",
                     peak_tflops, " TFLOP/s, ", watts, " W, overhead ", kernel_overhead_us, " us x ",
                     kernels_per_layer, " kernels per layer");
  }
};

/// A CPU roofline from one core's read bandwidth and FMA peak (the defaults are machine A's
/// probes in bench/README.md: about 14 GB/s and 160 GFLOP/s; pass your own measurements), bf16
/// weights like the PIM, 1 us per kernel, 15 W for the core (an assumption).
inline roofline cpu_roofline(double read_gbps = 14.0, double gflops = 160.0, double watts = 15.0) {
  return {"CPU (1 core)", read_gbps, gflops / 1000.0, watts, 1.0, 12, 2.0};
}

/// Latency (ns) and energy (pJ) of one decode token on a roofline device: weights and the kept
/// K/V read once, 2 FLOPs per weight, plus kernels x overhead.
struct roofline_cost {
  double ns = 0, pj = 0, bytes = 0;
};
inline roofline_cost decode_step(const model_shape& m, const roofline& r, const decode_options& opt = {}) {
  m.validate();
  r.validate();
  const double params = m.weight_params();
  const double kv = 2.0 * static_cast<double>(m.layers) * static_cast<double>(m.kv_heads * m.head_dim) *
                    static_cast<double>(opt.attended());
  roofline_cost c;
  c.bytes = (params + kv) * r.bytes_per_param;
  const double flops = 2.0 * (params + kv * static_cast<double>(m.heads / m.kv_heads));
  const double kernels = static_cast<double>(m.layers * r.kernels_per_layer + 2);
  c.ns = std::max(c.bytes / r.bandwidth_gbps, flops / (r.peak_tflops * 1e3)) + kernels * r.kernel_overhead_us * 1e3;
  c.pj = c.ns * r.watts * 1e3; // W x ns = nJ; x 1e3 = pJ
  return c;
}

} // namespace pim
} // namespace v0_1
} // namespace membound
