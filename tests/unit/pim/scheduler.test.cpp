// SPDX-License-Identifier: MIT
// pim/scheduler.hpp: every timing constraint of the command-level model, checked at its boundary
// with the GDDR6 preset's numbers (hand-derived: the cycle one earlier is rejected with the
// constraint's name, the boundary cycle is accepted, and the scheduler issues the command exactly
// there); both bank-group cases of tRRD, tCCD and tWTR; write-to-read and read-to-write
// turnaround; refresh; protocol errors; bad devices and streams.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "membound/pim/scheduler.hpp"

using namespace membound;
using pim::cmd;

namespace {

pim::organisation one_channel() {
  pim::organisation o;
  o.channels = 1;
  return o;
}

pim::command C(cmd k, std::int32_t bank = 0, std::int32_t row = 0, std::int32_t col = 0) {
  return pim::command{k, 0, bank, row, col};
}

/// `prefix` issued at the given cycles, then `last`: rejected at `boundary - 1` naming `what`,
/// accepted at `boundary`; the scheduler (prefix at its own earliest cycles) agrees when the
/// prefix cycles are themselves the earliest ones.
void expect_boundary(const pim::dram_timing& t, std::vector<pim::timed_command> prefix, pim::command last,
                     std::int64_t boundary, const std::string& what, bool prefix_is_earliest = true) {
  const auto org = one_channel();
  CAPTURE(what);
  auto s = prefix;
  s.push_back({last, boundary - 1});
  CHECK_THROWS_WITH_AS(pim::check_schedule(t, org, s), doctest::Contains(what.c_str()), pim::timing_error);
  s.back().cycle = boundary;
  CHECK_NOTHROW(pim::check_schedule(t, org, s));
  if (prefix_is_earliest) {
    std::vector<pim::command> cmds;
    for (const auto& p : prefix) cmds.push_back(p.c);
    cmds.push_back(last);
    std::vector<pim::timed_command> trace;
    pim::span_stream st(cmds);
    pim::schedule_options opt;
    opt.trace = &trace;
    pim::schedule(t, org, std::span<pim::span_stream>(&st, 1), opt);
    REQUIRE(trace.size() == cmds.size());
    for (std::size_t i = 0; i < prefix.size(); ++i) CHECK(trace[i].cycle == prefix[i].cycle);
    CHECK(trace.back().cycle == boundary);
  }
}

} // namespace

TEST_CASE("pim timing: row commands at their boundaries (GDDR6 2000 1350 mV)") {
  const auto t = pim::gddr6_2000_1350mv; // RCDRD 26, RCDWR 16, RP 26, RAS 53, RC 79, RTP 4, WR 26, CWL 6, BL 8
  // ACT16 -> MAC16: tRCD_RD
  expect_boundary(t, {{C(cmd::act_ab), 0}}, C(cmd::mac_ab), 26, "tRCD_RD");
  // ACT -> RD / WR of the bank: tRCD_RD, tRCD_WR
  expect_boundary(t, {{C(cmd::act, 3), 0}}, C(cmd::rd, 3), 26, "tRCD_RD");
  expect_boundary(t, {{C(cmd::act, 3), 0}}, C(cmd::wr, 3), 16, "tRCD_WR");
  // ACT -> PRE: tRAS
  expect_boundary(t, {{C(cmd::act, 2), 0}}, C(cmd::pre, 2), 53, "tRAS");
  expect_boundary(t, {{C(cmd::act_ab), 0}}, C(cmd::pre_ab), 53, "tRAS");
  // PRE -> ACT: tRP (and tRC = tRAS + tRP here: both bind at 79, tRP is checked first)
  expect_boundary(t, {{C(cmd::act, 1), 0}, {C(cmd::pre, 1), 53}}, C(cmd::act, 1), 79, "tRP");
  // RD -> PRE: tRTP after a read late in the row (26 + 30 + 4 = 60 > tRAS)
  expect_boundary(t, {{C(cmd::act, 0), 0}, {C(cmd::rd, 0), 56}}, C(cmd::pre, 0), 60, "tRTP", false);
  // MAC16 -> PRE16: tRTP
  expect_boundary(t, {{C(cmd::act_ab), 0}, {C(cmd::mac_ab), 60}}, C(cmd::pre_ab), 64, "tRTP", false);
  // WR -> PRE: write data ends at 16 + CWL 6 + BL 8 = 30, then tWR 26 = 56
  expect_boundary(t, {{C(cmd::act, 0), 0}, {C(cmd::wr, 0), 16}}, C(cmd::pre, 0), 56, "tWR");
  // tRC on its own: a timing whose tRC exceeds tRAS + tRP
  auto rc = t;
  rc.rc = 100;
  expect_boundary(rc, {{C(cmd::act, 1), 0}, {C(cmd::pre, 1), 53}}, C(cmd::act, 1), 100, "tRC");
  expect_boundary(rc, {{C(cmd::act_ab), 0}, {C(cmd::pre_ab), 53}}, C(cmd::act_ab), 100, "tRC");
}

TEST_CASE("pim timing: activates across banks and bank groups (tRRD_S, tRRD_L, tFAW)") {
  auto t = pim::gddr6_2000_1350mv; // RRDS = RRDL = 7, FAW 28
  t.rrdl = 10;                     // tell the bank-group cases apart
  // banks 0 and 1 share bank group 0; bank 4 is in group 1 (4 banks per group)
  expect_boundary(t, {{C(cmd::act, 0), 0}}, C(cmd::act, 4), 7, "tRRD_S");
  expect_boundary(t, {{C(cmd::act, 0), 0}}, C(cmd::act, 1), 10, "tRRD_L");
  // an ACT16 touches every group: the next ACT16 (after PRE16) and any ACT wait tRRD_L
  expect_boundary(t, {{C(cmd::act_ab), 0}, {C(cmd::pre_ab), 53}}, C(cmd::act_ab), 79, "tRP");
  // five activates in four groups: the fifth waits tFAW after the first (7 x 4 = 28 = tFAW: raise it)
  t.faw = 40;
  expect_boundary(t, {{C(cmd::act, 0), 0}, {C(cmd::act, 4), 7}, {C(cmd::act, 8), 14}, {C(cmd::act, 12), 21}},
                  C(cmd::act, 1), 40, "tFAW");
}

TEST_CASE("pim timing: column commands (tCCD_S, tCCD_L, data bus, tWTR, read-to-write turnaround)") {
  auto t = pim::gddr6_2000_1350mv;
  t.bl = 2; // a short burst so the column spacing binds before the data bus
  const std::vector<pim::timed_command> open = {{C(cmd::act, 0), 0}, {C(cmd::act, 1), 7}, {C(cmd::act, 4), 14}};
  auto with = [&](std::initializer_list<pim::timed_command> more) {
    auto v = open;
    v.insert(v.end(), more);
    return v;
  };
  // RD bank 0 at 40, RD bank 4 (other group): tCCD_S 4; RD bank 1 (same group): tCCD_L 6
  expect_boundary(t, with({{C(cmd::rd, 0), 40}}), C(cmd::rd, 4), 44, "tCCD_S", false);
  expect_boundary(t, with({{C(cmd::rd, 0), 40}}), C(cmd::rd, 1), 46, "tCCD_L", false);
  // write-to-read: write data ends at 40 + CWL 6 + BL 2 = 48; other group + tWTR_S 9, same group + tWTR_L 11
  expect_boundary(t, with({{C(cmd::wr, 0), 40}}), C(cmd::rd, 4), 57, "tWTR_S", false);
  expect_boundary(t, with({{C(cmd::wr, 0), 40}}), C(cmd::rd, 1), 59, "tWTR_L", false);
  // read-to-write: read data occupies [40 + CL 24, 66); a write's data starts CWL 6 after it
  expect_boundary(t, with({{C(cmd::rd, 0), 40}}), C(cmd::wr, 4), 60, "data bus", false);
  // with the preset's burst of 8 the data bus spaces reads by 8, more than tCCD_L
  const auto p = pim::gddr6_2000_1350mv;
  expect_boundary(p, with({{C(cmd::rd, 0), 40}}), C(cmd::rd, 4), 48, "data bus", false);
}

TEST_CASE("pim timing: all-bank MAC, global buffer, MAC read-out, refresh") {
  auto t = pim::gddr6_2000_1350mv;
  // MAC16 -> MAC16: tMAC (1 on the preset: the command bus; 3 here)
  t.mac = 3;
  expect_boundary(t, {{C(cmd::act_ab), 0}, {C(cmd::mac_ab), 26}}, C(cmd::mac_ab, 0, 0, 1), 29, "tMAC");
  // WR_GB -> WR_GB: the data bus (BL 8 > tCCD_S 4); WR_GB -> MAC16: CWL_GB 1 + BL 8 after the write
  const auto p = pim::gddr6_2000_1350mv;
  expect_boundary(p, {{C(cmd::wr_gb), 0}}, C(cmd::wr_gb, 0, 0, 1), 8, "data bus");
  expect_boundary(p, {{C(cmd::act_ab), 0}, {C(cmd::wr_gb), 30}}, C(cmd::mac_ab), 39, "global buffer write", false);
  // MAC16 -> RD_MAC: the result is ready tMAC after the last MAC16
  expect_boundary(t, {{C(cmd::act_ab), 0}, {C(cmd::mac_ab), 26}}, C(cmd::rd_mac), 29, "MAC result");
  // write to a bank, then MAC16: tWTR_L after the write data (16 + 6 + 8 = 30, + 11)
  pim::organisation o = one_channel();
  std::vector<pim::timed_command> s = {{C(cmd::act_ab), 0}, {C(cmd::wr, 5), 16}, {C(cmd::mac_ab), 40}};
  CHECK_THROWS_WITH_AS(pim::check_schedule(p, o, s), doctest::Contains("tWTR_L"), pim::timing_error);
  s.back().cycle = 41;
  CHECK_NOTHROW(pim::check_schedule(p, o, s));
  // REF: every bank closed, tRP after the PRE16; the next ACT tRFC 210 after the REF
  expect_boundary(p, {{C(cmd::act_ab), 0}, {C(cmd::pre_ab), 53}}, C(cmd::ref_ab), 79, "tRP");
  expect_boundary(p, {{C(cmd::ref_ab), 0}}, C(cmd::act_ab), 210, "tRFC");
}

TEST_CASE("pim scheduler: protocol errors, refresh, bad devices") {
  const auto t = pim::gddr6_2000_1350mv;
  const auto o = one_channel();
  auto run = [&](std::vector<pim::command> cmds, pim::schedule_options opt = {}) {
    pim::span_stream s(cmds);
    return pim::schedule(t, o, std::span<pim::span_stream>(&s, 1), opt);
  };
  CHECK_THROWS_WITH_AS(run({C(cmd::act, 2), C(cmd::act, 2, 5)}), doctest::Contains("row 0 open"), pim::timing_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::rd, 2)}), doctest::Contains("closed bank 2"), pim::timing_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::act, 0), C(cmd::mac_ab)}), doctest::Contains("1 of 16 open"), pim::timing_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::act_ab), C(cmd::act_ab)}), doctest::Contains("16 banks still open"),
                       pim::timing_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::act, 16)}), doctest::Contains("bank 16"), config_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::act_ab, 0, 1 << 14)}), doctest::Contains("row 16384"), config_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::act_ab), C(cmd::mac_ab, 0, 0, 64)}), doctest::Contains("column 64"), config_error);
  CHECK_THROWS_WITH_AS(run({C(cmd::wr_gb, 0, 0, 64)}), doctest::Contains("entry 64"), config_error);
  // two streams for one channel
  std::vector<pim::command> none;
  pim::span_stream two[2] = {pim::span_stream(none), pim::span_stream(none)};
  CHECK_THROWS_WITH_AS(pim::schedule(t, o, std::span<pim::span_stream>(two, 2)), doctest::Contains("2 command streams"),
                       config_error);
  // cycles must increase within a channel (the command bus), and a channel must exist
  std::vector<pim::timed_command> same = {{C(cmd::wr_gb), 0}, {C(cmd::act, 4), 0}};
  CHECK_THROWS_WITH_AS(pim::check_schedule(t, o, same), doctest::Contains("command bus"), pim::timing_error);
  std::vector<pim::timed_command> far = {{pim::command{cmd::act, 3}, 0}};
  CHECK_THROWS_WITH_AS(pim::check_schedule(t, o, far), doctest::Contains("channel 3"), config_error);

  // Refresh: a long run of row visits gets one REF per tREFI, each closing and reopening the row,
  // and the schedule it makes passes the checker.
  std::vector<pim::command> cmds;
  for (int r = 0; r < 200; ++r) {
    cmds.push_back(C(cmd::act_ab, 0, r));
    for (int c = 0; c < 64; ++c) cmds.push_back(C(cmd::mac_ab, 0, 0, c));
    cmds.push_back(C(cmd::pre_ab));
  }
  const auto off = run(cmds);
  std::vector<pim::timed_command> trace;
  pim::schedule_options opt;
  opt.refresh = true;
  opt.trace = &trace;
  const auto on = run(cmds, opt);
  CHECK(off.counts[cmd::ref_ab] == 0);
  CHECK(on.counts[cmd::ref_ab] >= off.cycles / t.refi);
  CHECK(on.counts[cmd::ref_ab] <= on.cycles / t.refi);
  CHECK(on.cycles > off.cycles + on.counts[cmd::ref_ab] * t.rfc);
  CHECK(on.counts[cmd::mac_ab] == off.counts[cmd::mac_ab]);
  const auto checked = pim::check_schedule(t, o, trace);
  CHECK(checked.cycles == on.cycles);
  CHECK(checked.counts == on.counts);

  // Devices and timings out of range.
  pim::organisation bad = o;
  bad.banks_per_group = 0;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("0 banks"), config_error);
  bad = o;
  bad.row_bytes = 16;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("a row of 16 bytes"), config_error);
  bad = o;
  bad.access_bytes = 64;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("mac_lanes = 16"), config_error);
  auto neg = t;
  neg.rp = -1;
  CHECK_THROWS_WITH_AS(neg.validate(), doctest::Contains("tRP = -1"), config_error);
  neg = t;
  neg.mac = 0;
  CHECK_THROWS_WITH_AS(neg.validate(), doctest::Contains("tMAC"), config_error);
  CHECK_THROWS_WITH_AS(run(cmds, [] {
                         pim::schedule_options q;
                         q.quantum = 0;
                         return q;
                       }()),
                       doctest::Contains("quantum 0"), config_error);
}
