// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief pim/: a PIM-GPT-style processing-in-memory model (Wu, Wang, Lu, arXiv 2310.09385):
/// DRAM chips with a multiply-accumulate unit in every bank (SK hynix AiM-like GDDR6) beside an
/// ASIC. Device description (device.hpp: timing presets, organisation, energy), the command set
/// (command.hpp), the event-driven command-level scheduler and schedule checker (scheduler.hpp),
/// the row-partitioned GEMV mapping with its closed-form cost (gemv.hpp), K/V appends to the
/// PIM-resident cache (kv_append.hpp), and the decode step of
/// a transformer with GPU and CPU roofline baselines (decode.hpp). The model's
/// assumptions and their sources are listed in include/membound/pim/README.md.

#include "membound/pim/command.hpp"
#include "membound/pim/decode.hpp"
#include "membound/pim/device.hpp"
#include "membound/pim/gemv.hpp"
#include "membound/pim/kv_append.hpp"
#include "membound/pim/scheduler.hpp"
