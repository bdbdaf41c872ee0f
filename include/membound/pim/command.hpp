// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The command set of the PIM device (AiM-style all-bank commands beside ordinary DRAM
/// commands), command counts, and the energy of a count under `pim::energy`.

#include <array>
#include <cstdint>
#include <string_view>

#include "membound/pim/device.hpp"

namespace membound {
inline namespace v0_1 {
namespace pim {

/// Command kinds. Single-bank: act, pre, rd, wr. All-bank (every bank of the channel at once,
/// AiM's ACT16 / PRE16 / MAC_ABK / EWMUL): act_ab, pre_ab, mac_ab, ewmul_ab. Channel-level:
/// wr_gb (one access into the global buffer), rd_mac (read the banks' MAC registers out),
/// ref_ab (all-bank refresh).
enum class cmd : std::uint8_t { act, pre, rd, wr, act_ab, pre_ab, mac_ab, ewmul_ab, wr_gb, rd_mac, ref_ab };
inline constexpr int cmd_kinds = 11;

/// The command's mnemonic (AiM names for the all-bank ones).
constexpr std::string_view to_string(cmd c) noexcept {
  constexpr std::string_view names[cmd_kinds] = {"ACT",     "PRE",   "RD",     "WR",     "ACT16", "PRE16",
                                                 "MAC16",   "EWMUL16", "WR_GB", "RD_MAC", "REF"};
  return names[static_cast<int>(c)];
}

/// Whether `c` acts on every bank of its channel.
constexpr bool all_bank(cmd c) noexcept {
  return c == cmd::act_ab || c == cmd::pre_ab || c == cmd::mac_ab || c == cmd::ewmul_ab || c == cmd::ref_ab;
}

/// One command for one channel. `bank` matters for single-bank commands, `row` for activates,
/// `col` for column commands and global-buffer writes (the entry).
struct command {
  cmd kind = cmd::act;
  std::int32_t channel = 0, bank = 0, row = 0, col = 0;
};

/// A command with the cycle it issues at.
struct timed_command {
  command c;
  std::int64_t cycle = 0;
};

/// Commands by kind, over any set of channels.
struct command_counts {
  std::array<std::int64_t, cmd_kinds> n{};
  std::int64_t& operator[](cmd c) noexcept { return n[static_cast<std::size_t>(c)]; }
  std::int64_t operator[](cmd c) const noexcept { return n[static_cast<std::size_t>(c)]; }
  std::int64_t total() const noexcept {
    std::int64_t s = 0;
    for (auto v : n) s += v;
    return s;
  }
  command_counts& operator+=(const command_counts& o) noexcept {
    for (std::size_t i = 0; i < n.size(); ++i) n[i] += o.n[i];
    return *this;
  }
  friend bool operator==(const command_counts&, const command_counts&) = default;
};

/// Energy (picojoules) of the commands in `n` on `org` under `e`: an all-bank command costs its
/// bank-level energy once per bank; WR_GB moves one access and RD_MAC one bf16 result per bank
/// over the chip's I/O. (ASIC and link energy are added by the decode-step model.)
inline double command_energy_pj(const command_counts& n, const organisation& org, const energy& e) noexcept {
  const double banks = static_cast<double>(org.banks()), access = static_cast<double>(org.access_bytes);
  auto c = [&](cmd k) { return static_cast<double>(n[k]); };
  return (c(cmd::act) + banks * c(cmd::act_ab)) * e.act_pj + c(cmd::rd) * (e.rd_pj + e.io_pj_per_byte * access) +
         c(cmd::wr) * (e.wr_pj + e.io_pj_per_byte * access) +
         banks * (c(cmd::mac_ab) + c(cmd::ewmul_ab)) * (e.rd_pj + e.mac_pj) +
         c(cmd::wr_gb) * e.io_pj_per_byte * access + c(cmd::rd_mac) * e.io_pj_per_byte * 2.0 * banks +
         c(cmd::ref_ab) * e.refresh_pj;
}

} // namespace pim
} // namespace v0_1
} // namespace membound
