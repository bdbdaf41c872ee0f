// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Writing new tokens' K and V into the PIM-resident KV cache, command by command. Keys
/// are stored by rows (a token's key is a row segment of head_dim values, consecutive tokens side
/// by side), values transposed (row j of a KV head holds dimension j of every token), so a token
/// writes one segment into a K row and one element into each of head_dim V rows: the scattered
/// write PIM-GPT's mapping must batch. With `batch` tokens per append, one visit per row writes
/// the batch's elements (K: batch x head_dim values; V: batch values per row).
///
/// Each row visit is a single-bank ACT, its WRs, a PRE. A channel's visits go to its banks in
/// turn (bank groups alternating) and issue in waves of one visit per bank (every ACT of the
/// wave, then their WRs, then their PREs), so the banks' row cycles overlap under tRRD and tFAW.
/// Visits are spread over the channels round robin. The event-driven scheduler gives the cycles
/// (O(commands): 2 + writes per visit).

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "membound/pim/scheduler.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// One append of `batch` tokens to `kv_heads` KV heads of `head_dim` (one layer), from DRAM row
/// `first_row` of the banks it touches.
struct kv_append_mapping {
  static constexpr std::string_view name = "kv_append";
  index_t kv_heads = 0, head_dim = 0, batch = 1;
  index_t first_row = 0;

  /// Row visits of one append: per KV head one K row and head_dim V rows.
  index_t visits() const noexcept { return kv_heads * (1 + head_dim); }
  /// WR commands of visit v (K rows first): the batch's bytes over whole accesses.
  index_t writes(const organisation& org, index_t v) const noexcept {
    const index_t bytes = (v % (1 + head_dim) == 0 ? head_dim : 1) * batch * 2;
    return (bytes + org.access_bytes - 1) / org.access_bytes;
  }
  /// Visits of channel c (round robin).
  index_t channel_visits(const organisation& org, index_t c) const noexcept {
    return visits() / org.channels + (c < visits() % org.channels ? 1 : 0);
  }
  /// @throws config_error (sizes < 1, a batch that does not fit one row), budget_error (rows).
  void validate(const organisation& org) const {
    org.validate();
    MEMBOUND_EXPECTS(kv_heads >= 1 && head_dim >= 1 && batch >= 1 && first_row >= 0, config_error,
                     "pim::kv_append_mapping: ", kv_heads, " KV heads of ", head_dim, ", batch ", batch, ", first row ",
                     first_row, ", expected >= 1 (first row >= 0)");
    MEMBOUND_EXPECTS(batch * head_dim * 2 <= org.row_bytes, config_error, "pim::kv_append_mapping: a batch of ", batch,
                     " keys of ", head_dim, " bf16 values does not fit a row of ", org.row_bytes, " bytes");
    const index_t per_bank = (channel_visits(org, 0) + org.banks() - 1) / org.banks();
    MEMBOUND_EXPECTS(first_row + per_bank <= org.rows, budget_error, "pim::kv_append_mapping: ", per_bank,
                     " rows per bank from row ", first_row, ", a bank has ", org.rows);
  }
};

/// One channel's commands of a kv_append_mapping (a command_stream).
class kv_append_stream {
public:
  kv_append_stream(const kv_append_mapping& map, const organisation& org, index_t channel)
      : map_(map), org_(org), ch_(static_cast<std::int32_t>(channel)), n_(map.channel_visits(org, channel)) {
    map.validate(org);
    MEMBOUND_EXPECTS(channel >= 0 && channel < org.channels, config_error, "pim::kv_append_stream: channel ", channel,
                     ", the device has ", org.channels);
    start_wave();
  }

  bool next(command& c) {
    if (wave_start_ >= n_) return false;
    c = command{};
    c.channel = ch_;
    c.bank = static_cast<std::int32_t>(bank(i_));
    switch (phase_) {
    case phase::act:
      c.kind = cmd::act;
      c.row = static_cast<std::int32_t>(map_.first_row + wave_start_ / org_.banks());
      if (++i_ == wave_) {
        i_ = 0;
        w_ = 0;
        phase_ = phase::wr;
      }
      return true;
    case phase::wr:
      c.kind = cmd::wr;
      c.col = static_cast<std::int32_t>(w_);
      if (++w_ == map_.writes(org_, global(i_))) {
        w_ = 0;
        if (++i_ == wave_) {
          i_ = 0;
          phase_ = phase::pre;
        }
      }
      return true;
    case phase::pre:
      c.kind = cmd::pre;
      if (++i_ == wave_) {
        wave_start_ += wave_;
        start_wave();
      }
      return true;
    }
    return false;
  }

private:
  enum class phase : std::uint8_t { act, wr, pre };
  /// The bank of a wave's i-th visit: bank groups in turn, so neighbours in the wave differ in
  /// group (tRRD_S and tCCD_S apply instead of the _L ones).
  index_t bank(index_t i) const noexcept {
    return (i % org_.bank_groups) * org_.banks_per_group + i / org_.bank_groups;
  }
  /// The mapping-wide index of this channel's visit wave_start_ + i.
  index_t global(index_t i) const noexcept { return (wave_start_ + i) * org_.channels + ch_; }
  void start_wave() {
    i_ = 0;
    w_ = 0;
    wave_ = std::min(org_.banks(), n_ - wave_start_);
    phase_ = phase::act;
  }
  kv_append_mapping map_;
  organisation org_;
  std::int32_t ch_;
  index_t n_, wave_start_ = 0, wave_ = 0, i_ = 0, w_ = 0;
  phase phase_ = phase::act;
};
static_assert(command_stream<kv_append_stream>);

/// Runs a kv_append_mapping through the event-driven scheduler.
inline schedule_result kv_append_schedule(const dram_timing& t, const organisation& org, const kv_append_mapping& map,
                                          const schedule_options& opt = {}) {
  return schedule_mapping<kv_append_stream>(t, org, map, opt);
}

} // namespace pim
} // namespace v0_1
} // namespace membound
