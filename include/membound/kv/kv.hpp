// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief kv/: memory-bounded KV caching with eviction (TRIM-KV and the standard baselines).
///  - kv::cache: the paged cache, a pool of fixed-size pages allocated once, per-head page tables,
///    in-place compaction that returns pages to the pool (cache.hpp);
///  - kv::attend_decode: decode attention over the cache, f32 or bf16 K/V, GQA, with the per-token
///    attention mass H2O and TOVA need (attend.hpp);
///  - kv::attend_prefill: tiled causal (flash-style) prefill attention over dense K/V, and
///    kv::attention_column_sums for H2O / SnapKV scores without the T x S matrix (attend_prefill.hpp);
///  - policies, each one header and one aggregate with a `name`, scoring in prefill mode
///    (`score`, one-shot compression, checked against kvpress 0.5.5) and decode mode
///    (`score_decode`, used by kv::evictor): full, random, streaming_llm, knorm, keydiff, tova,
///    h2o / observed_attention, snapkv and expected_attention (their decode mode reads the recent
///    queries from a kv::query_window), trim_kv with its learned kv::retention_gate;
///  - budgets: kept_count (kvpress's int(n(1-r)) and an exact rule), PyramidKV layer budgets,
///    AdaKV head allocation; kv::select_kept and kv::evictor (budget + buffer);
///  - applying budgets to the pool: kv::uniform_mask (uniform / PyramidKV per layer),
///    kv::global_allocate (one budget across layers with a per-head floor), kv::append_kept and
///    kv::keep_masked, which store only kept tokens so the pages are really reclaimed (compress.hpp).

#include "membound/kv/attend.hpp"
#include "membound/kv/attend_prefill.hpp"
#include "membound/kv/budget.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/compress.hpp"
#include "membound/kv/evict.hpp"
#include "membound/kv/expected_attention.hpp"
#include "membound/kv/full.hpp"
#include "membound/kv/keydiff.hpp"
#include "membound/kv/knorm.hpp"
#include "membound/kv/observed_attention.hpp"
#include "membound/kv/policy.hpp"
#include "membound/kv/prefill.hpp"
#include "membound/kv/query_window.hpp"
#include "membound/kv/random.hpp"
#include "membound/kv/retention_gate.hpp"
#include "membound/kv/select.hpp"
#include "membound/kv/snapkv.hpp"
#include "membound/kv/streaming_llm.hpp"
#include "membound/kv/tova.hpp"
#include "membound/kv/trim_kv.hpp"
