// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The event-driven, command-level evaluator of the PIM device: per-bank, per-bank-group
/// and per-channel state machines that give the earliest cycle each command may issue at, a
/// scheduler that issues command streams as early as the constraints allow (optionally with
/// refresh), and a checker that rejects any given schedule breaking a constraint.
///
/// The timing rules (all in `dram_timing` cycles; "all-bank" commands touch every bank):
///  - command bus: one command per cycle per channel, issued in stream order;
///  - ACT: bank closed; tRP after its PRE, tRC after its ACT, tRRD_L after an ACT in its bank
///    group, tRRD_S after any ACT of the channel, the fifth ACT of the channel tFAW after the
///    first, tRFC after a refresh. ACT16: every bank closed, tRRD_L after any ACT; it counts as
///    one activation in the tFAW window;
///  - PRE: tRAS after the ACT, tRTP after a read or MAC of the bank, tWR after its write data;
///    PRE16 the same for every open bank;
///  - RD / WR: bank open; tRCD_RD / tRCD_WR after the ACT; tCCD_L after a column command of the
///    bank group (a MAC16 counts in every group), tCCD_S after any; a RD waits tWTR_L / tWTR_S
///    after the end of write data in the group / channel; the data bus carries one access for tBL
///    cycles, from CL (RD) or CWL (WR) after the command, and bursts may not overlap;
///  - MAC16 / EWMUL16: every bank open on one row; tRCD_RD after the ACT, tMAC after the previous
///    MAC16, tCCD_L after a RD/WR, tWTR_L after write data, and after every global-buffer write
///    has landed (CWL_GB + tBL after WR_GB);
///  - WR_GB: tCCD_S after the previous WR_GB; its data burst starts CWL_GB after the command;
///  - RD_MAC: tMAC after the last MAC16 (the result is ready), tCCD_S after the previous RD_MAC,
///    its burst starts CL_REG after the command;
///  - REF: every bank closed, tRP after the last PRE, tRFC after the previous REF.
/// A stream that asks for a protocol error (ACT to an open bank, a column command or MAC16 to a
/// closed bank) raises `pim::timing_error`. A result's `cycles` is the cycle after the last
/// command or the end of the last data burst, whichever is later.

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <limits>
#include <queue>
#include <span>
#include <vector>

#include "membound/pim/command.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// What a schedule took: cycles (the slowest channel), per-channel cycles, commands by kind.
struct schedule_result {
  std::int64_t cycles = 0;
  std::vector<std::int64_t> channel_cycles;
  command_counts counts;
  /// Nanoseconds at the timing's clock.
  double ns(const dram_timing& t) const noexcept { return static_cast<double>(cycles) * t.tck_ns; }
};

/// A source of one channel's commands, in issue order: `next(c)` fills c and returns true, or
/// returns false at the end.
template <class S>
concept command_stream = requires(S s, command& c) {
  { s.next(c) } -> std::same_as<bool>;
};

/// A command_stream over a vector (or any contiguous range) of commands.
class span_stream {
public:
  explicit span_stream(std::span<const command> c) noexcept : c_(c) {}
  bool next(command& c) noexcept {
    if (i_ == c_.size()) return false;
    c = c_[i_++];
    return true;
  }

private:
  std::span<const command> c_;
  std::size_t i_ = 0;
};
static_assert(command_stream<span_stream>);

namespace detail {

inline constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min() / 4;

/// The state machine of one channel: its banks, bank groups, buses and global buffer.
class channel_state {
public:
  channel_state(const dram_timing& t, const organisation& org)
      : t_(t), banks_(org.banks()), bpg_(org.banks_per_group), cols_(org.columns()), rows_(org.rows),
        gb_entries_(org.buffer_entries()), open_(static_cast<std::size_t>(banks_), -1),
        act_(static_cast<std::size_t>(banks_), never), pre_(static_cast<std::size_t>(banks_), never),
        rd_(static_cast<std::size_t>(banks_), never), wr_end_(static_cast<std::size_t>(banks_), never),
        act_bg_(static_cast<std::size_t>(org.bank_groups), never), col_bg_(static_cast<std::size_t>(org.bank_groups), never),
        wr_end_bg_(static_cast<std::size_t>(org.bank_groups), never) {
    faw_.fill(never);
  }

  /// The earliest cycle `c` may issue at; `why` names the binding constraint.
  /// @throws timing_error for a protocol error, config_error for an address out of range.
  MEMBOUND_ALWAYS_INLINE std::int64_t earliest(const command& c, const char** why) const {
    std::int64_t t = last_cmd_ + 1;
    const char* w = "command bus";
    auto bind = [&](std::int64_t x, const char* name) {
      if (x > t) {
        t = x;
        w = name;
      }
    };
    switch (c.kind) {
    case cmd::act: {
      const auto b = bank(c);
      check_row(c);
      if (MEMBOUND_UNLIKELY(open_[b] >= 0)) reject(c, fault::open);
      bind(std::max(pre_[b], pre_ab_) + t_.rp, "tRP");
      bind(std::max(act_[b], act_ab_) + t_.rc, "tRC");
      bind(std::max(act_bg_[group(b)], act_ab_) + t_.rrdl, "tRRD_L");
      bind(act_ch_ + t_.rrds, "tRRD_S");
      bind(faw_[faw_i_] + t_.faw, "tFAW");
      bind(ref_ + t_.rfc, "tRFC");
      break;
    }
    case cmd::act_ab:
      check_row(c);
      if (MEMBOUND_UNLIKELY(n_open_ != 0)) reject(c, fault::open);
      bind(max_pre_ + t_.rp, "tRP");
      bind(max_act_ + t_.rc, "tRC");
      bind(act_ch_ + t_.rrdl, "tRRD_L");
      bind(faw_[faw_i_] + t_.faw, "tFAW");
      bind(ref_ + t_.rfc, "tRFC");
      break;
    case cmd::pre: {
      const auto b = bank(c);
      if (open_[b] >= 0) {
        bind(std::max(act_[b], act_ab_) + t_.ras, "tRAS");
        bind(std::max(rd_[b], rd_ab_) + t_.rtp, "tRTP");
        bind(wr_end_[b] + t_.wr, "tWR");
      }
      break;
    }
    case cmd::pre_ab: // a closed bank's constraints were met before its own PRE (see the file comment)
      if (n_open_ > 0) {
        bind(max_act_ + t_.ras, "tRAS");
        bind(max_rd_ + t_.rtp, "tRTP");
        bind(max_wr_end_ + t_.wr, "tWR");
      }
      break;
    case cmd::rd:
    case cmd::wr: {
      const auto b = bank(c);
      check_col(c);
      if (MEMBOUND_UNLIKELY(open_[b] < 0)) reject(c, fault::closed);
      const auto g = group(b);
      bind(std::max(act_[b], act_ab_) + (c.kind == cmd::rd ? t_.rcdrd : t_.rcdwr),
           c.kind == cmd::rd ? "tRCD_RD" : "tRCD_WR");
      bind(std::max(col_bg_[g], mac_) + t_.ccdl, "tCCD_L");
      bind(col_ch_ + t_.ccds, "tCCD_S");
      if (c.kind == cmd::rd) {
        bind(wr_end_bg_[g] + t_.wtrl, "tWTR_L");
        bind(wr_end_ch_ + t_.wtrs, "tWTR_S");
        bind(bus_free_ - t_.cl, "data bus");
      } else {
        bind(bus_free_ - t_.cwl, "data bus");
      }
      break;
    }
    case cmd::mac_ab:
    case cmd::ewmul_ab:
      check_col(c);
      if (MEMBOUND_UNLIKELY(n_open_ != banks_ || uniform_row_ < 0)) reject(c, fault::closed);
      bind(max_act_ + t_.rcdrd, "tRCD_RD");
      bind(mac_ + t_.mac, "tMAC");
      bind(col_ch_ + t_.ccdl, "tCCD_L");
      bind(wr_end_ch_ + t_.wtrl, "tWTR_L");
      bind(gb_ready_, "global buffer write");
      break;
    case cmd::wr_gb:
      if (MEMBOUND_UNLIKELY(c.col < 0 || c.col >= gb_entries_)) reject(c, fault::address);
      bind(wr_gb_ + t_.ccds, "tCCD_S");
      bind(bus_free_ - t_.cwl_gb, "data bus");
      break;
    case cmd::rd_mac:
      bind(mac_ + t_.mac, "MAC result");
      bind(rd_mac_ + t_.ccds, "tCCD_S");
      bind(bus_free_ - t_.cl_reg, "data bus");
      break;
    case cmd::ref_ab:
      if (MEMBOUND_UNLIKELY(n_open_ != 0)) reject(c, fault::open);
      bind(max_pre_ + t_.rp, "tRP");
      bind(ref_ + t_.rfc, "tRFC");
      break;
    }
    if (why != nullptr) *why = w;
    return t;
  }

  /// Applies `c` issued at cycle t (t >= earliest(c); not checked here).
  void issue(const command& c, std::int64_t t) {
    switch (c.kind) {
    case cmd::act: {
      const auto b = bank(c);
      open_[b] = c.row;
      act_[b] = t;
      act_bg_[group(b)] = t;
      note_act(t);
      ++n_open_;
      uniform_row_ = n_open_ == banks_ ? common_row() : -1;
      break;
    }
    case cmd::act_ab:
      std::fill(open_.begin(), open_.end(), c.row);
      act_ab_ = t;
      note_act(t);
      n_open_ = banks_;
      uniform_row_ = c.row;
      break;
    case cmd::pre: {
      const auto b = bank(c);
      if (open_[b] >= 0) --n_open_;
      open_[b] = -1;
      pre_[b] = t;
      max_pre_ = t;
      uniform_row_ = -1;
      break;
    }
    case cmd::pre_ab:
      std::fill(open_.begin(), open_.end(), -1);
      pre_ab_ = t;
      max_pre_ = t;
      n_open_ = 0;
      uniform_row_ = -1;
      break;
    case cmd::rd: {
      const auto b = bank(c);
      rd_[b] = t;
      max_rd_ = t;
      col_bg_[group(b)] = t;
      col_ch_ = t;
      bus_free_ = t + t_.cl + t_.bl;
      break;
    }
    case cmd::wr: {
      const auto b = bank(c);
      const std::int64_t end = t + t_.cwl + t_.bl;
      wr_end_[b] = wr_end_bg_[group(b)] = wr_end_ch_ = end;
      max_wr_end_ = end;
      col_bg_[group(b)] = t;
      col_ch_ = t;
      bus_free_ = end;
      break;
    }
    case cmd::mac_ab:
    case cmd::ewmul_ab:
      mac_ = t;
      rd_ab_ = t;
      max_rd_ = t;
      break;
    case cmd::wr_gb:
      wr_gb_ = t;
      bus_free_ = gb_ready_ = t + t_.cwl_gb + t_.bl;
      break;
    case cmd::rd_mac:
      rd_mac_ = t;
      bus_free_ = t + t_.cl_reg + t_.bl;
      break;
    case cmd::ref_ab:
      ref_ = t;
      break;
    }
    last_cmd_ = t;
    ++counts_[c.kind];
    end_ = std::max({end_, t + 1, bus_free_});
  }

  std::int64_t end() const noexcept { return end_; }
  std::int64_t last_cmd() const noexcept { return last_cmd_; }
  const command_counts& counts() const noexcept { return counts_; }
  index_t open_banks() const noexcept { return n_open_; }
  std::int32_t uniform_row() const noexcept { return uniform_row_; }
  std::int32_t open_row(index_t b) const noexcept { return open_[static_cast<std::size_t>(b)]; }
  index_t banks() const noexcept { return banks_; }

private:
  enum class fault : std::uint8_t { address, open, closed };
  // The checks inline to a compare and a branch; the messages are built out of line.
  std::size_t bank(const command& c) const {
    if (MEMBOUND_UNLIKELY(c.bank < 0 || c.bank >= banks_)) reject(c, fault::address);
    return static_cast<std::size_t>(c.bank);
  }
  std::size_t group(std::size_t b) const noexcept { return b / static_cast<std::size_t>(bpg_); }
  void check_row(const command& c) const {
    if (MEMBOUND_UNLIKELY(c.row < 0 || c.row >= rows_)) reject(c, fault::address);
  }
  void check_col(const command& c) const {
    if (MEMBOUND_UNLIKELY(c.col < 0 || c.col >= cols_)) reject(c, fault::address);
  }
  /// Throws the error `c` runs into: config_error for an address out of range, timing_error for
  /// a protocol error (a bank open or closed when it must not be).
  [[noreturn]] MEMBOUND_NOINLINE void reject(const command& c, fault f) const {
    const auto k = to_string(c.kind);
    if (f == fault::address) {
      MEMBOUND_EXPECTS(c.bank >= 0 && c.bank < banks_, config_error, "pim: bank ", c.bank, " on channel ", c.channel,
                       ", the channel has ", banks_);
      MEMBOUND_EXPECTS(c.kind != cmd::wr_gb, config_error, "pim: WR_GB entry ", c.col, " on channel ", c.channel,
                       ", the global buffer holds ", gb_entries_);
      MEMBOUND_EXPECTS((c.kind != cmd::act && c.kind != cmd::act_ab) || (c.row >= 0 && c.row < rows_), config_error,
                       "pim: row ", c.row, " on channel ", c.channel, ", a bank has ", rows_);
      throw config_error(::membound::detail::concat("pim: column ", c.col, " on channel ", c.channel, ", a row has ",
                                                    cols_));
    }
    if (f == fault::open) {
      if (c.kind == cmd::act)
        throw timing_error(::membound::detail::concat("pim: ACT to bank ", c.bank, " of channel ", c.channel,
                                                      ", which has row ", open_[static_cast<std::size_t>(c.bank)],
                                                      " open"));
      throw timing_error(::membound::detail::concat("pim: ", k, " on channel ", c.channel, " with ", n_open_,
                                                    " banks still open"));
    }
    if (all_bank(c.kind))
      throw timing_error(::membound::detail::concat("pim: ", k, " on channel ", c.channel,
                                                    " needs every bank open on one row (", n_open_, " of ", banks_,
                                                    " open)"));
    throw timing_error(::membound::detail::concat("pim: ", k, " to closed bank ", c.bank, " of channel ", c.channel));
  }
  void note_act(std::int64_t t) noexcept {
    act_ch_ = t;
    max_act_ = t;
    faw_[faw_i_] = t;
    faw_i_ = (faw_i_ + 1) % 4;
  }
  std::int32_t common_row() const noexcept {
    for (auto r : open_)
      if (r != open_[0]) return -1;
    return open_[0];
  }

  dram_timing t_;
  index_t banks_, bpg_, cols_, rows_, gb_entries_;
  std::vector<std::int32_t> open_;
  std::vector<std::int64_t> act_, pre_, rd_, wr_end_, act_bg_, col_bg_, wr_end_bg_;
  std::array<std::int64_t, 4> faw_;
  std::size_t faw_i_ = 0;
  index_t n_open_ = 0;
  std::int32_t uniform_row_ = -1;
  // channel-level times (an *_ab_ value applies to every bank)
  std::int64_t act_ab_ = never, pre_ab_ = never, rd_ab_ = never, act_ch_ = never, max_act_ = never,
               max_pre_ = never, max_rd_ = never, max_wr_end_ = never, col_ch_ = never, wr_end_ch_ = never,
               mac_ = never, wr_gb_ = never, gb_ready_ = never, rd_mac_ = never, ref_ = never, bus_free_ = never;
  std::int64_t last_cmd_ = -1, end_ = 0;
  command_counts counts_;
};

/// The result the channels' states add up to.
inline schedule_result result_of(const std::vector<channel_state>& st) {
  schedule_result r;
  r.channel_cycles.resize(st.size());
  for (std::size_t c = 0; c < st.size(); ++c) {
    r.channel_cycles[c] = st[c].end();
    r.cycles = std::max(r.cycles, st[c].end());
    r.counts += st[c].counts();
  }
  return r;
}

} // namespace detail

/// Options of `pim::schedule`. `refresh`: issue an all-bank refresh every tREFI cycles per
/// channel (closing open rows first and reopening them after). `trace`: if set, receives every
/// issued command (refreshes included) sorted by (cycle, channel). `quantum`: how many cycles a
/// channel may run ahead of the earliest pending channel before the queue switches (channels
/// share no resource, so results are the same for any quantum; it only trades queue operations
/// for locality).
struct schedule_options {
  bool refresh = false;
  std::vector<timed_command>* trace = nullptr;
  std::int64_t quantum = 4096;
};

/// Issues one command stream per channel as early as the timing allows: a priority queue orders
/// the channels by the cycle of their next command; each channel's state machine gives that
/// cycle. Complexity: O(commands + channel switches x log channels).
/// @throws config_error (device, stream count), timing_error (a protocol error in a stream).
template <command_stream S>
schedule_result schedule(const dram_timing& tm, const organisation& org, std::span<S> streams,
                         const schedule_options& opt = {}) {
  tm.validate();
  org.validate();
  MEMBOUND_EXPECTS(static_cast<index_t>(streams.size()) == org.channels, config_error, "pim::schedule: ",
                   streams.size(), " command streams for ", org.channels, " channels");
  MEMBOUND_EXPECTS(opt.quantum >= 1, config_error, "pim::schedule: quantum ", opt.quantum, ", expected >= 1");
  MEMBOUND_EXPECTS(!opt.refresh || tm.refi > 0, config_error, "pim::schedule: refresh on with tREFI 0");
  const auto nc = streams.size();
  std::vector<detail::channel_state> st;
  st.reserve(nc);
  for (std::size_t c = 0; c < nc; ++c) st.emplace_back(tm, org);
  std::vector<command> pending(nc);
  std::vector<std::int64_t> next_ref(nc, tm.refi);
  using entry = std::pair<std::int64_t, std::size_t>; // (cycle, channel)
  std::priority_queue<entry, std::vector<entry>, std::greater<>> q;
  auto issue = [&](std::size_t c, const command& cm, std::int64_t t) {
    st[c].issue(cm, t);
    if (opt.trace != nullptr) opt.trace->push_back({cm, t});
  };
  // Refresh before the pending command when it would issue at or past the due cycle.
  auto refresh_if_due = [&](std::size_t c, std::int64_t t) {
    if (!opt.refresh || t < next_ref[c]) return;
    auto& s = st[c];
    const auto ch = static_cast<std::int32_t>(c);
    std::vector<std::int32_t> rows(static_cast<std::size_t>(s.banks()));
    for (index_t b = 0; b < s.banks(); ++b) rows[static_cast<std::size_t>(b)] = s.open_row(b);
    const std::int32_t uniform = s.open_banks() == s.banks() ? s.uniform_row() : -1;
    const bool any_open = s.open_banks() > 0;
    auto now = [&](const command& cm) {
      issue(c, cm, s.earliest(cm, nullptr));
    };
    if (any_open) now(command{cmd::pre_ab, ch});
    now(command{cmd::ref_ab, ch});
    if (uniform >= 0) {
      now(command{cmd::act_ab, ch, 0, uniform});
    } else {
      for (index_t b = 0; b < s.banks(); ++b)
        if (rows[static_cast<std::size_t>(b)] >= 0)
          now(command{cmd::act, ch, static_cast<std::int32_t>(b), rows[static_cast<std::size_t>(b)]});
    }
    next_ref[c] += tm.refi;
  };
  auto ready_at = [&](std::size_t c) {
    std::int64_t t = st[c].earliest(pending[c], nullptr);
    if (opt.refresh && t >= next_ref[c]) {
      refresh_if_due(c, t);
      t = st[c].earliest(pending[c], nullptr);
    }
    return t;
  };
  for (std::size_t c = 0; c < nc; ++c) {
    pending[c].channel = static_cast<std::int32_t>(c);
    if (streams[c].next(pending[c])) {
      pending[c].channel = static_cast<std::int32_t>(c);
      q.push({ready_at(c), c});
    }
  }
  while (!q.empty()) {
    auto [t, c] = q.top();
    q.pop();
    const std::int64_t horizon = q.empty() ? std::numeric_limits<std::int64_t>::max() : q.top().first + opt.quantum;
    for (;;) {
      issue(c, pending[c], t);
      if (!streams[c].next(pending[c])) break;
      pending[c].channel = static_cast<std::int32_t>(c);
      t = ready_at(c);
      if (t > horizon) {
        q.push({t, c});
        break;
      }
    }
  }
  schedule_result r = detail::result_of(st);
  if (opt.trace != nullptr)
    std::stable_sort(opt.trace->begin(), opt.trace->end(), [](const timed_command& a, const timed_command& b) {
      return a.cycle != b.cycle ? a.cycle < b.cycle : a.c.channel < b.c.channel;
    });
  return r;
}

/// Runs a mapping through `schedule` with one `Stream(map, org, channel)` per channel (the
/// mappings' streams: gemv_stream, kv_append_stream).
template <command_stream Stream, class Mapping>
schedule_result schedule_mapping(const dram_timing& tm, const organisation& org, const Mapping& map,
                                 const schedule_options& opt = {}) {
  std::vector<Stream> s;
  s.reserve(static_cast<std::size_t>(org.channels));
  for (index_t c = 0; c < org.channels; ++c) s.emplace_back(map, org, c);
  return schedule(tm, org, std::span<Stream>(s), opt);
}

/// Checks a schedule someone else made (any order across channels; within a channel the cycles
/// must increase): every command must issue no earlier than the constraints allow.
/// @throws timing_error naming the command, its cycle, the broken constraint and the earliest legal cycle.
inline schedule_result check_schedule(const dram_timing& tm, const organisation& org,
                                      std::span<const timed_command> cmds) {
  tm.validate();
  org.validate();
  std::vector<detail::channel_state> st;
  st.reserve(static_cast<std::size_t>(org.channels));
  for (index_t c = 0; c < org.channels; ++c) st.emplace_back(tm, org);
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    const auto& tc = cmds[i];
    MEMBOUND_EXPECTS(tc.c.channel >= 0 && tc.c.channel < org.channels, config_error, "pim::check_schedule: command ",
                     i, " on channel ", tc.c.channel, ", the device has ", org.channels);
    auto& s = st[static_cast<std::size_t>(tc.c.channel)];
    const char* why = nullptr;
    const std::int64_t e = s.earliest(tc.c, &why);
    MEMBOUND_EXPECTS(tc.cycle >= e, timing_error, "pim::check_schedule: command ", i, " (", to_string(tc.c.kind),
                     " on channel ", tc.c.channel, ", bank ", tc.c.bank, ") at cycle ", tc.cycle, " breaks ", why,
                     ": the earliest legal cycle is ", e);
    s.issue(tc.c, tc.cycle);
  }
  return detail::result_of(st);
}

} // namespace pim
} // namespace v0_1
} // namespace membound
