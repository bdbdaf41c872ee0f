// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief kv/: KV-cache eviction. This first slice holds the one-shot (post-prefill) scorers of
/// the standard policies, checked against kvpress 0.5.5's own code, the budget rules (kvpress's
/// kept count beside an exact one, PyramidKV per-layer budgets, AdaKV head-wise allocation) and
/// the kept-set selection, and the paged memory-bounded cache (kv::cache). Decode-time
/// eviction, TRIM-KV and kv::attend follow.

#include "membound/kv/budget.hpp"
#include "membound/kv/cache.hpp"
#include "membound/kv/expected_attention.hpp"
#include "membound/kv/keydiff.hpp"
#include "membound/kv/knorm.hpp"
#include "membound/kv/observed_attention.hpp"
#include "membound/kv/policy.hpp"
#include "membound/kv/prefill.hpp"
#include "membound/kv/select.hpp"
#include "membound/kv/snapkv.hpp"
#include "membound/kv/streaming_llm.hpp"
#include "membound/kv/tova.hpp"
