// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The device a PIM-GPT-style simulation runs on: DRAM timing (`pim::dram_timing`, with
/// the GDDR6 presets of SK hynix's AiM simulator as named constants), the organisation of the
/// PIM chips (`pim::organisation`) and per-command energies (`pim::energy`).
///
/// Units: every timing is a count of command-clock cycles of length `dram_timing::tck_ns`
/// (1 ns for the presets: the AiM fork of Ramulator 2 recomputes tCK from the 2000 MT/s rate).
/// Every assumption of the model, with its source, is listed in `pim/README.md`.

#include <cstdint>
#include <string_view>
#include <utility>

#include "membound/core/error.hpp"
#include "membound/core/tensor.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// A schedule that breaks a timing constraint (raised by `pim::check_schedule` and by the
/// scheduler when a command stream asks for something the device state forbids).
class timing_error : public error {
public:
  using error::error;
};

/// DRAM timing constraints in command-clock cycles (names as in JEDEC GDDR6 / Ramulator 2).
/// `bl` is the data-bus occupancy of one access; `mac` the spacing of consecutive all-bank MACs
/// (the AiM simulator has no explicit MAC-to-MAC constraint: 1 cycle models a 1 GHz processing
/// unit per bank, `ccdl` would pace MACs like reads). `cl_reg`/`cl_gb`, `cwl_reg`/`cwl_gb`: the
/// latencies of reading the MAC registers and writing the global buffer (AiM extras).
struct dram_timing {
  static constexpr std::string_view name = "dram_timing";
  double tck_ns = 1.0;
  std::int64_t bl = 8, cl = 24, rcdrd = 26, rcdwr = 16, rp = 26, ras = 53, rc = 79, wr = 26, rtp = 4, cwl = 6;
  std::int64_t ccds = 4, ccdl = 6, rrds = 7, rrdl = 7, wtrs = 9, wtrl = 11, faw = 28;
  std::int64_t rfc = 210, refi = 3333;
  std::int64_t cl_reg = 0, cl_gb = 1, cwl_reg = 1, cwl_gb = 1;
  std::int64_t mac = 1;

  /// Checks every constraint is non-negative, the clock and the pacing ones positive, and
  /// tRC >= tRAS + tRP is not required (the scheduler applies both). @throws config_error.
  void validate() const {
    MEMBOUND_EXPECTS(tck_ns > 0, config_error, "pim::dram_timing: tCK ", tck_ns, " ns, expected > 0");
    const std::pair<const char*, std::int64_t> all[] = {
        {"BL", bl},     {"CL", cl},       {"RCDRD", rcdrd}, {"RCDWR", rcdwr},   {"RP", rp},         {"RAS", ras},
        {"RC", rc},     {"WR", wr},       {"RTP", rtp},     {"CWL", cwl},       {"CCDS", ccds},     {"CCDL", ccdl},
        {"RRDS", rrds}, {"RRDL", rrdl},   {"WTRS", wtrs},   {"WTRL", wtrl},     {"FAW", faw},       {"RFC", rfc},
        {"REFI", refi}, {"CLREG", cl_reg}, {"CLGB", cl_gb}, {"CWLREG", cwl_reg}, {"CWLGB", cwl_gb}, {"MAC", mac}};
    for (const auto& [n, v] : all)
      MEMBOUND_EXPECTS(v >= 0, config_error, "pim::dram_timing: t", n, " = ", v, " cycles, expected >= 0");
    MEMBOUND_EXPECTS(bl >= 1 && mac >= 1 && ccds >= 1 && ccdl >= 1, config_error,
                     "pim::dram_timing: tBL, tMAC, tCCDS and tCCDL must be >= 1 cycle (got ", bl, ", ", mac, ", ",
                     ccds, ", ", ccdl, ")");
    MEMBOUND_EXPECTS(refi == 0 || refi > rfc, config_error, "pim::dram_timing: tREFI ", refi,
                     " must exceed tRFC ", rfc, " (or be 0: refresh off)");
  }
};

/// GDDR6_2000_1350mV_double of arkhadem/aim_simulator `src/dram/impl/GDDR6.cpp` (Ramulator 2
/// fork), tCK taken as the code computes it (1000 ps).
inline constexpr dram_timing gddr6_2000_1350mv{1.0, 8, 24, 26, 16, 26, 53, 79, 26, 4, 6, 4, 6, 7, 7, 9, 11, 28, 210, 3333,
                                               0, 1, 1, 1, 1};
/// GDDR6_2000_1250mV_double of the same file (slower row commands at the lower voltage).
inline constexpr dram_timing gddr6_2000_1250mv{1.0, 8, 24, 30, 19, 30, 60, 89, 30, 4, 6, 4, 6, 11, 11, 9, 11, 42, 210,
                                               3333, 0, 1, 1, 1, 1};

/// The PIM memory system: `channels` channels of `bank_groups` x `banks_per_group` banks, each
/// bank `rows` rows of `row_bytes`; an access (column) is `access_bytes` = `mac_lanes` bf16
/// values; each channel has a global buffer of `global_buffer_bytes` (the broadcast input
/// vector) and each bank `accumulators` MAC result registers. `link_gbps`: the ASIC <-> PIM link
/// in GB/s for the whole device; `asic_ghz`: the ASIC clock. Defaults: 16 channels of AiM-like
/// GDDR6 (2 KiB rows, 16 bf16 lanes, 2 KiB global buffer) as ../shared/research/osd_pim.md 4.2.
struct organisation {
  static constexpr std::string_view name = "organisation";
  index_t channels = 16, bank_groups = 4, banks_per_group = 4;
  index_t rows = index_t(1) << 14, row_bytes = 2048, access_bytes = 32, mac_lanes = 16;
  index_t global_buffer_bytes = 2048, accumulators = 1;
  double link_gbps = 64.0, asic_ghz = 1.0;

  index_t banks() const noexcept { return bank_groups * banks_per_group; }
  /// Accesses (MAC columns) per row.
  index_t columns() const noexcept { return row_bytes / access_bytes; }
  /// bf16 elements per row.
  index_t row_elements() const noexcept { return row_bytes / 2; }
  /// Global-buffer entries (accesses).
  index_t buffer_entries() const noexcept { return global_buffer_bytes / access_bytes; }
  /// Bytes of the whole device.
  double capacity_bytes() const noexcept {
    return static_cast<double>(channels) * static_cast<double>(banks()) * static_cast<double>(rows) *
           static_cast<double>(row_bytes);
  }
  /// @throws config_error for zero counts, a row smaller than one access, an access that is not
  /// `mac_lanes` bf16 values, a global buffer smaller than one access.
  void validate() const {
    MEMBOUND_EXPECTS(channels >= 1 && bank_groups >= 1 && banks_per_group >= 1 && rows >= 1, config_error,
                     "pim::organisation: ", channels, " channels x ", bank_groups, " bank groups x ", banks_per_group,
                     " banks x ", rows, " rows, expected all >= 1");
    MEMBOUND_EXPECTS(access_bytes >= 2 && access_bytes == 2 * mac_lanes, config_error,
                     "pim::organisation: an access of ", access_bytes, " bytes must hold mac_lanes = ", mac_lanes,
                     " bf16 values");
    MEMBOUND_EXPECTS(row_bytes >= access_bytes && row_bytes % access_bytes == 0, config_error,
                     "pim::organisation: a row of ", row_bytes, " bytes must be a positive multiple of the access (",
                     access_bytes, " bytes)");
    MEMBOUND_EXPECTS(global_buffer_bytes >= access_bytes && global_buffer_bytes % access_bytes == 0, config_error,
                     "pim::organisation: a global buffer of ", global_buffer_bytes,
                     " bytes must be a positive multiple of the access (", access_bytes, " bytes)");
    MEMBOUND_EXPECTS(accumulators >= 1, config_error, "pim::organisation: ", accumulators,
                     " accumulators per bank, expected >= 1");
    MEMBOUND_EXPECTS(link_gbps > 0 && asic_ghz > 0, config_error, "pim::organisation: link ", link_gbps,
                     " GB/s and ASIC clock ", asic_ghz, " GHz, expected > 0");
  }
};

/// Energy per command in picojoules (per channel-level command: an all-bank command counts every
/// bank), plus the link per byte and the ASIC per operation. The defaults are assumptions in the
/// range published for GDDR6 and HBM2 PIM (see pim/README.md: none is PIM-GPT's own figure).
struct energy {
  static constexpr std::string_view name = "energy";
  double act_pj = 900.0;      ///< one bank activate + precharge pair (row of 2 KiB)
  double rd_pj = 130.0;       ///< one 32-byte access read inside the bank (column + array)
  double wr_pj = 140.0;       ///< one 32-byte access written
  double mac_pj = 20.0;       ///< one bank's 16-lane bf16 multiply-accumulate (beside the read)
  double io_pj_per_byte = 30.0; ///< off-chip transfer (global-buffer writes, MAC read-out, link)
  double asic_pj_per_op = 1.0;  ///< one ASIC element operation
  double refresh_pj = 50000.0; ///< one all-bank refresh of a channel
};

} // namespace pim
} // namespace v0_1
} // namespace membound
