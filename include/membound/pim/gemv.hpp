// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Row-partitioned GEMV on the PIM device (PIM-GPT's mapping): y (M) = W (M,K) x (K),
/// W in bf16. Output rows go 16 at a time (one per bank) to the channels in turn; each weight row
/// is cut into K-chunks of one DRAM row (or one global buffer, if smaller), and each chunk of a
/// group of 16 rows is one row visit: ACT16, one MAC16 per access of the chunk, PRE16. The input
/// chunk is broadcast into the channel's global buffer by WR_GB commands; MAC results leave by
/// RD_MAC (the ASIC reduces partial sums of a row's chunks). Two loop orders:
///  - `rows_outer`: per group of 16 rows, every chunk in turn (the buffer is reloaded for every
///    chunk when K needs more than one; the bank's accumulator carries the row over its chunks,
///    one RD_MAC per group);
///  - `k_outer`: per chunk, every group (the buffer is loaded once per chunk; one RD_MAC per
///    group and chunk, partial sums reduced on the ASIC).
/// With one chunk both orders are the same schedule. With `packed` (K within one chunk), a DRAM
/// row holds several matrix rows side by side (PIM-GPT's layout of the key cache: one key per
/// row segment): a visit MACs each segment and drains it (RD_MAC) before the next, so one ACT16
/// serves `pack` rows per bank. `gemv_stream` yields a channel's commands for the event-driven
/// scheduler; `gemv_cost` is the closed form of the same schedule.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string_view>
#include <utility>
#include <vector>

#include "membound/pim/scheduler.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// Loop order of a chunked GEMV (see the file comment).
enum class loop_order : std::uint8_t { rows_outer, k_outer };

/// The row-partitioned GEMV mapping of y (m) = W (m,k) x (k), the matrix stored from DRAM row
/// `first_row` of every bank. A policy: `pim::gemv_stream` and `pim::gemv_cost` read it.
struct gemv_mapping {
  static constexpr std::string_view name = "row_partitioned_gemv";
  index_t m = 0, k = 0;
  loop_order order = loop_order::rows_outer;
  index_t first_row = 0;
  bool packed = false; ///< several matrix rows per DRAM row (needs K within one chunk)
  /// Distinct input vectors: input i serves rows [i m / inputs, (i + 1) m / inputs) (attention:
  /// one per head). A visit loads the inputs its rows need unless the channel's previous visit
  /// of the same chunk needed the same ones (rows-outer with several chunks loads every visit).
  index_t inputs = 1;

  /// bf16 elements per K-chunk: a DRAM row, or the global buffer if that is smaller.
  index_t chunk_elements(const organisation& org) const noexcept {
    return std::min(org.row_elements(), org.buffer_entries() * org.mac_lanes);
  }
  index_t chunks(const organisation& org) const noexcept { return (k + chunk_elements(org) - 1) / chunk_elements(org); }
  /// Accesses (MAC16 commands) of chunk j.
  index_t chunk_columns(const organisation& org, index_t j) const noexcept {
    const index_t e = chunk_elements(org), len = std::min(e, k - j * e);
    return (len + org.mac_lanes - 1) / org.mac_lanes;
  }
  /// Matrix rows per DRAM row and bank: 1, or as many K-long segments as a row holds when packed.
  index_t pack(const organisation& org) const noexcept {
    return packed && k <= chunk_elements(org) ? chunk_elements(org) / (chunk_columns(org, 0) * org.mac_lanes) : 1;
  }
  /// Groups of org.banks() x pack output rows in all (the last one padded), and those of
  /// channel c (round robin).
  index_t groups(const organisation& org) const noexcept {
    return (m + org.banks() * pack(org) - 1) / (org.banks() * pack(org));
  }
  index_t channel_groups(const organisation& org, index_t c) const noexcept {
    const index_t g = groups(org);
    return g / org.channels + (c < g % org.channels ? 1 : 0);
  }
  /// The inputs [first, last] that group g (numbered over the whole device) needs.
  std::pair<index_t, index_t> group_inputs(const organisation& org, index_t g) const noexcept {
    const index_t per = m / inputs, rows = org.banks() * pack(org);
    return {g * rows / per, (std::min(m, (g + 1) * rows) - 1) / per};
  }
  /// Global-buffer accesses loaded before channel c's visit of its i-th group and chunk j.
  index_t visit_loads(const organisation& org, index_t c, index_t i, index_t j) const noexcept {
    const index_t cols = chunk_columns(org, j);
    const auto [first, last] = group_inputs(org, c + i * org.channels);
    const index_t need = (last - first + 1) * cols;
    if (order == loop_order::rows_outer && chunks(org) > 1) return need; // every visit reloads
    if (i == 0) return need;
    return group_inputs(org, c + (i - 1) * org.channels) == std::pair{first, last} ? 0 : need;
  }
  /// DRAM rows each bank needs.
  index_t rows_per_bank(const organisation& org) const noexcept { return channel_groups(org, 0) * chunks(org); }

  /// @throws config_error (m or k < 1, bad device), budget_error (the matrix does not fit the banks' rows).
  void validate(const organisation& org) const {
    org.validate();
    MEMBOUND_EXPECTS(m >= 1 && k >= 1, config_error, "pim::gemv_mapping: shape ", m, " x ", k, ", expected >= 1 x 1");
    MEMBOUND_EXPECTS(first_row >= 0, config_error, "pim::gemv_mapping: first_row ", first_row, ", expected >= 0");
    MEMBOUND_EXPECTS(!packed || k <= chunk_elements(org), config_error, "pim::gemv_mapping: packed rows of K = ", k,
                     " do not fit one chunk of ", chunk_elements(org), " elements");
    MEMBOUND_EXPECTS(inputs >= 1 && m % inputs == 0, config_error, "pim::gemv_mapping: ", inputs,
                     " input vectors for ", m, " rows, expected a divisor of the rows");
    const index_t per = m / inputs, rows = org.banks() * pack(org);
    // Inputs one group can touch: groups start at multiples of `rows`, so at offsets within an
    // input that are multiples of gcd(rows, per); the last such offset straddles the most.
    const index_t span = std::min(inputs, (per - std::gcd(rows, per) + rows - 1) / per + 1);
    MEMBOUND_EXPECTS(span * chunk_columns(org, 0) <= org.buffer_entries(), config_error, "pim::gemv_mapping: a group of ",
                     rows, " rows can need ", span, " inputs of ", chunk_columns(org, 0),
                     " accesses, the global buffer holds ", org.buffer_entries());
    MEMBOUND_EXPECTS(first_row + rows_per_bank(org) <= org.rows, budget_error, "pim::gemv_mapping: a ", m, " x ", k,
                     " bf16 matrix needs ", rows_per_bank(org), " rows per bank from row ", first_row, ", a bank has ",
                     org.rows, " (", org.capacity_bytes() / 1e9, " GB device)");
  }
};

/// One channel's commands of a gemv_mapping, generated on the fly (a command_stream).
class gemv_stream {
public:
  gemv_stream(const gemv_mapping& map, const organisation& org, index_t channel)
      : map_(map), org_(org), ch_(static_cast<std::int32_t>(channel)), groups_(map.channel_groups(org, channel)),
        chunks_(map.chunks(org)), pack_(map.pack(org)) {
    map.validate(org);
    MEMBOUND_EXPECTS(channel >= 0 && channel < org.channels, config_error, "pim::gemv_stream: channel ", channel,
                     ", the device has ", org.channels);
    start_visit();
  }

  bool next(command& c) {
    if (group_ >= groups_ || chunk_ >= chunks_) return false;
    c = command{};
    c.channel = ch_;
    const index_t cols = cols_;
    switch (phase_) {
    case phase::load:
      c.kind = cmd::wr_gb;
      c.col = static_cast<std::int32_t>(i_);
      if (++i_ == loads_) phase_ = phase::act;
      return true;
    case phase::act:
      c.kind = cmd::act_ab;
      c.row = static_cast<std::int32_t>(map_.first_row + group_ * chunks_ + chunk_);
      phase_ = phase::mac;
      i_ = 0;
      return true;
    case phase::mac:
      c.kind = cmd::mac_ab;
      c.col = static_cast<std::int32_t>(seg_ * cols + i_);
      if (++i_ == cols) phase_ = drains() ? phase::drain : phase::pre;
      return true;
    case phase::drain:
      c.kind = cmd::rd_mac;
      i_ = 0;
      phase_ = ++seg_ < pack_ ? phase::mac : phase::pre;
      return true;
    case phase::pre:
      c.kind = cmd::pre_ab;
      advance();
      return true;
    }
    return false;
  }

private:
  enum class phase : std::uint8_t { load, act, mac, drain, pre };
  bool drains() const noexcept { return map_.order == loop_order::k_outer || chunk_ + 1 == chunks_; }
  void start_visit() {
    i_ = 0;
    seg_ = 0;
    cols_ = map_.chunk_columns(org_, chunk_);
    loads_ = map_.visit_loads(org_, ch_, group_, chunk_);
    phase_ = loads_ > 0 ? phase::load : phase::act;
  }
  void advance() {
    const bool k_outer = map_.order == loop_order::k_outer && chunks_ > 1;
    if (k_outer) {
      if (++group_ == groups_) {
        group_ = 0;
        ++chunk_;
      }
    } else if (++chunk_ == chunks_) {
      chunk_ = 0;
      ++group_;
    }
    if (group_ < groups_ && chunk_ < chunks_) start_visit();
  }

  gemv_mapping map_;
  organisation org_;
  std::int32_t ch_;
  index_t groups_, chunks_, pack_, group_ = 0, chunk_ = 0, i_ = 0, cols_ = 0, seg_ = 0, loads_ = 0;
  phase phase_ = phase::load;
};
static_assert(command_stream<gemv_stream>);

namespace detail {

/// A row visit's shape: global-buffer loads before it, MAC16s per segment, whether each segment
/// drains, and the segments (matrix rows per bank) it serves.
struct visit {
  index_t loads = 0, macs = 0;
  bool drain = false;
  index_t segments = 1;
  friend bool operator==(const visit&, const visit&) = default;
};

/// What the visits so far leave behind, relative to the latest ACT16: the cycles of the latest
/// PRE16, RD_MAC, MAC16 and WR_GB (or `never`), and the end of the latest data burst.
struct visit_state {
  std::int64_t pre = never, drain = never, mac = never, wr_gb = never, bus_end = never;
  bool first = true; // nothing issued yet
  friend bool operator==(const visit_state&, const visit_state&) = default;
};

/// The closed form of one row visit after a visit that left `s` (times relative to the previous
/// ACT16, which is at 0): returns the new ACT16's cycle (relative to the previous one; for the
/// first visit, absolute) and updates `s` to be relative to the new ACT16. On a visit sequence
/// like gemv_stream's the scheduler's constraints reduce to these maxima; the only older
/// command that is not carried in `s`, the ACT16 four back, cannot bind when 4 tRC >= tFAW.
inline std::int64_t visit_step(const dram_timing& t, const visit& v, visit_state& s) {
  std::int64_t last = s.first ? -1 : s.pre; // the previous command on the bus
  std::int64_t gb_ready = never, bus = s.bus_end, wl = s.wr_gb;
  if (v.loads > 0) {
    const std::int64_t w0 = std::max({last + 1, bus - t.cwl_gb, s.wr_gb + t.ccds});
    wl = w0 + (v.loads - 1) * std::max<std::int64_t>({t.ccds, t.bl, 1});
    gb_ready = wl + t.cwl_gb + t.bl;
    bus = gb_ready;
    last = wl;
  }
  std::int64_t a = last + 1;
  if (!s.first) a = std::max({a, s.pre + t.rp, t.rc, t.rrdl});
  last = a;
  std::int64_t ml = s.mac, d = s.drain;
  for (index_t seg = 0; seg < v.segments; ++seg) {
    const std::int64_t m0 = std::max({a + t.rcdrd, last + 1, gb_ready, ml + t.mac});
    ml = m0 + (v.macs - 1) * t.mac;
    last = ml;
    if (v.drain) {
      d = std::max({ml + t.mac, ml + 1, bus - t.cl_reg, d + t.ccds});
      bus = d + t.cl_reg + t.bl;
      last = d;
    }
  }
  const std::int64_t p = std::max({last + 1, a + t.ras, ml + t.rtp});
  auto rel = [a](std::int64_t x) { return x <= never / 2 ? never : x - a; };
  s.first = false;
  s.pre = p - a;
  s.drain = rel(d);
  s.mac = ml - a;
  s.wr_gb = rel(wl);
  s.bus_end = rel(bus);
  return a;
}

/// Sums `count` visits v after state s: visits are stepped one by one until the state repeats,
/// then the rest add the same ACT-to-ACT period each. Returns the sum of the ACT16 offsets.
inline std::int64_t visit_run(const dram_timing& t, const visit& v, index_t count, visit_state& s) {
  std::int64_t sum = 0;
  for (index_t i = 0; i < count; ++i) {
    const visit_state before = s;
    const std::int64_t a = visit_step(t, v, s);
    sum += a;
    if (s == before) return sum + a * (count - 1 - i); // steady: every later visit repeats this one
  }
  return sum;
}

} // namespace detail

/// The closed-form cycles and command counts of a gemv_mapping: the per-visit maxima of
/// detail::visit_step summed over each channel's visits in stream order: an integer step per
/// visit to find runs of identical visits, and the maxima evaluated only until a run's state
/// repeats (so a few times per run, not per visit); counts add every channel. Equals
/// `pim::schedule` of the gemv_streams cycle for cycle when refresh is off and 4 tRC >= tFAW
/// (the ACT16 four back cannot bind). @throws config_error otherwise (use the scheduler then).
inline schedule_result gemv_cost(const dram_timing& t, const organisation& org, const gemv_mapping& map) {
  t.validate();
  map.validate(org);
  MEMBOUND_EXPECTS(4 * t.rc >= t.faw, config_error, "pim::gemv_cost: the closed form assumes 4 tRC >= tFAW (tRC ",
                   t.rc, ", tFAW ", t.faw, ")");
  const index_t nk = map.chunks(org), pack = map.pack(org);
  std::vector<index_t> cols(static_cast<std::size_t>(nk));
  index_t cols_sum = 0;
  for (index_t j = 0; j < nk; ++j) cols_sum += cols[static_cast<std::size_t>(j)] = map.chunk_columns(org, j);
  std::int64_t loads = 0; // WR_GB of every channel's walk
  auto channel_cycles = [&](index_t ch, index_t g) -> std::int64_t {
    if (g == 0) return 0;
    detail::visit_state s;
    std::int64_t a = 0; // cycle of the latest ACT16
    // Every visit in stream order; a run of identical visits without loads is summed at once
    // (detail::visit_run steps it only until the state repeats).
    detail::visit cur;
    index_t run = 0;
    const bool k_major = map.order == loop_order::k_outer || nk == 1;
    for (index_t x = 0; x < g * nk; ++x) {
      const index_t i = k_major ? x % g : x / nk, j = k_major ? x / g : x % nk;
      const detail::visit v{map.visit_loads(org, ch, i, j), cols[static_cast<std::size_t>(j)],
                            map.order == loop_order::k_outer || j + 1 == nk, pack};
      loads += v.loads;
      if (run > 0 && v == cur && v.loads == 0) {
        ++run;
        continue;
      }
      if (run > 0) a += detail::visit_run(t, cur, run, s);
      cur = v;
      run = 1;
    }
    a += detail::visit_run(t, cur, run, s);
    return std::max(a + s.pre + 1, a + s.bus_end);
  };
  schedule_result r;
  r.channel_cycles.resize(static_cast<std::size_t>(org.channels));
  for (index_t c = 0; c < org.channels; ++c) {
    const index_t g = map.channel_groups(org, c);
    r.channel_cycles[static_cast<std::size_t>(c)] = channel_cycles(c, g);
    r.cycles = std::max(r.cycles, r.channel_cycles[static_cast<std::size_t>(c)]);
    if (g == 0) continue;
    r.counts[cmd::act_ab] += g * nk;
    r.counts[cmd::pre_ab] += g * nk;
    r.counts[cmd::mac_ab] += g * cols_sum * pack;
    r.counts[cmd::rd_mac] += map.order == loop_order::k_outer && nk > 1 ? g * nk : g * pack;
  }
  r.counts[cmd::wr_gb] = loads;
  return r;
}

/// Runs a gemv_mapping through the event-driven scheduler (one gemv_stream per channel).
inline schedule_result gemv_schedule(const dram_timing& t, const organisation& org, const gemv_mapping& map,
                                     const schedule_options& opt = {}) {
  return schedule_mapping<gemv_stream>(t, org, map, opt);
}

} // namespace pim
} // namespace v0_1
} // namespace membound
