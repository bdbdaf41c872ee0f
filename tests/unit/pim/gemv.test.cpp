// SPDX-License-Identifier: MIT
// pim/gemv.hpp: the closed form of the row-partitioned GEMV equals the event-driven scheduler
// (cycles of every channel and every command count) over shapes, loop orders, chunkings and
// devices; the counts against hand-derived ones; doubling the channels halves the MAC phase;
// the scheduler's own schedule passes the checker and a command moved one cycle early does not;
// results do not depend on the scheduler's quantum; a matrix too large for the device is refused.
#include <doctest/doctest.h>

#include <vector>

#include "membound/pim/gemv.hpp"

using namespace membound;
using pim::cmd;

TEST_CASE("pim gemv: the closed form equals the event-driven scheduler") {
  struct shape {
    index_t m, k;
  };
  const shape shapes[] = {{16, 16},    {1, 1},       {100, 300},   {768, 768},  {2304, 768},
                          {3072, 768}, {768, 3072},  {1000, 2500}, {4096, 1040}, {50257, 64},
                          {17, 1025},  {4096, 128},  {300, 100}};
  pim::organisation small;
  small.channels = 4;
  small.row_bytes = 1024;
  pim::organisation narrow_gb; // a global buffer of half a row: chunks of 512 elements
  narrow_gb.global_buffer_bytes = 1024;
  pim::organisation one;
  one.channels = 1;
  one.rows = index_t(1) << 18;
  auto slow_mac = pim::gddr6_2000_1250mv;
  slow_mac.mac = 2;
  for (const auto& org : {pim::organisation{}, small, narrow_gb, one})
    for (const auto& t : {pim::gddr6_2000_1350mv, pim::gddr6_2000_1250mv, slow_mac})
      for (const auto order : {pim::loop_order::rows_outer, pim::loop_order::k_outer})
        for (const bool packed : {false, true})
          for (const auto& sh : shapes) {
            if (packed && sh.k > pim::gemv_mapping{sh.m, sh.k}.chunk_elements(org)) continue;
            CAPTURE(org.channels);
            CAPTURE(org.row_bytes);
            CAPTURE(org.global_buffer_bytes);
            CAPTURE(t.rp);
            CAPTURE(t.mac);
            CAPTURE(static_cast<int>(order));
            CAPTURE(sh.m);
            CAPTURE(sh.k);
            CAPTURE(packed);
            const pim::gemv_mapping map{sh.m, sh.k, order, 0, packed};
            const auto cf = pim::gemv_cost(t, org, map);
            const auto ev = pim::gemv_schedule(t, org, map);
            CHECK(cf.cycles == ev.cycles);
            CHECK(cf.channel_cycles == ev.channel_cycles);
            CHECK(cf.counts == ev.counts);
          }
}

TEST_CASE("pim gemv: several input vectors (attention's heads), closed form against the scheduler") {
  struct shape {
    index_t m, k, inputs;
    bool packed;
  };
  // scores: heads x kept keys of head_dim, packed; context: heads x head_dim rows over the kept
  // tokens; kept counts that are and are not multiples of a group (16 banks x 16 keys)
  const shape shapes[] = {{12 * 1024, 64, 12, true}, {25 * 1000, 64, 25, true}, {8 * 300, 128, 8, true},
                          {12 * 64, 1024, 12, false}, {25 * 64, 2500, 25, false}, {8 * 128, 700, 8, false},
                          {6 * 48, 100, 6, false}};
  pim::organisation four;
  four.channels = 4;
  for (const auto& org : {pim::organisation{}, four})
    for (const auto order : {pim::loop_order::rows_outer, pim::loop_order::k_outer})
      for (const auto& sh : shapes) {
        CAPTURE(org.channels);
        CAPTURE(static_cast<int>(order));
        CAPTURE(sh.m);
        CAPTURE(sh.k);
        pim::gemv_mapping map{sh.m, sh.k, order, 0, sh.packed};
        map.inputs = sh.inputs;
        const auto cf = pim::gemv_cost(pim::gddr6_2000_1350mv, org, map);
        const auto ev = pim::gemv_schedule(pim::gddr6_2000_1350mv, org, map);
        CHECK(cf.cycles == ev.cycles);
        CHECK(cf.channel_cycles == ev.channel_cycles);
        CHECK(cf.counts == ev.counts);
        map.inputs = 1; // one shared input loads less
        CHECK(pim::gemv_cost(pim::gddr6_2000_1350mv, org, map).counts[cmd::wr_gb] <= cf.counts[cmd::wr_gb]);
      }
  // By hand: 2 inputs of 16 rows each, K = 64 (4 accesses), one channel: two visits, each loads
  // its own input (4 WR_GB); with one input only the first visit loads.
  pim::organisation one;
  one.channels = 1;
  pim::gemv_mapping two{32, 64};
  two.inputs = 2;
  CHECK(pim::gemv_cost(pim::gddr6_2000_1350mv, one, two).counts[cmd::wr_gb] == 8);
  two.inputs = 1;
  CHECK(pim::gemv_cost(pim::gddr6_2000_1350mv, one, two).counts[cmd::wr_gb] == 4);
  two.inputs = 3;
  CHECK_THROWS_WITH_AS(pim::gemv_cost(pim::gddr6_2000_1350mv, one, two), doctest::Contains("3 input vectors for 32 rows"),
                       config_error);
  pim::gemv_mapping wide{64 * 2, 1024}; // inputs of 64 rows straddled by no group, but 2 KiB each
  wide.inputs = 64;                      // 2 rows per input: a group of 16 rows needs 8 inputs of 64 accesses
  CHECK_THROWS_WITH_AS(pim::gemv_cost(pim::gddr6_2000_1350mv, one, wide), doctest::Contains("global buffer holds 64"),
                       config_error);
}

TEST_CASE("pim gemv: command counts by hand, loop orders, channel scaling") {
  const auto t = pim::gddr6_2000_1350mv;
  pim::organisation org; // 16 channels x 16 banks, rows of 1024 bf16 = 64 accesses
  // 768 x 3072 (an FFN down-projection of GPT-2 small): 48 groups of 16 rows, 3 per channel;
  // 3 chunks of 64 accesses.
  {
    const pim::gemv_mapping map{768, 3072, pim::loop_order::rows_outer};
    const auto r = pim::gemv_cost(t, org, map);
    CHECK(r.counts[cmd::act_ab] == 48 * 3);
    CHECK(r.counts[cmd::pre_ab] == 48 * 3);
    CHECK(r.counts[cmd::mac_ab] == 48 * 3 * 64);
    CHECK(r.counts[cmd::wr_gb] == 48 * 3 * 64); // the buffer holds one chunk: reloaded per visit
    CHECK(r.counts[cmd::rd_mac] == 48);         // the accumulator carries a row over its chunks
    const auto k = pim::gemv_cost(t, org, {768, 3072, pim::loop_order::k_outer});
    CHECK(k.counts[cmd::wr_gb] == 16 * 3 * 64); // each chunk loaded once per channel
    CHECK(k.counts[cmd::rd_mac] == 48 * 3);     // partial sums leave per chunk
    CHECK(k.counts[cmd::mac_ab] == r.counts[cmd::mac_ab]);
    CHECK(k.cycles < r.cycles); // K-outer saves the reloads here
  }
  // One visit by hand: WR_GB x 4 at 0, 8, 16, 24 (the data bus, BL 8); the buffer is ready at
  // 24 + CWL_GB 1 + BL 8 = 33; ACT16 at 25; MAC16 x 4 at max(25 + 26, 33) = 51 .. 54; RD_MAC at 55,
  // its burst ends at 55 + CL_REG 0 + 8 = 63; PRE16 at max(56, 25 + tRAS 53, 54 + tRTP 4) = 78.
  // The channel ends at max(79, 63) = 79.
  {
    pim::organisation o1 = org;
    o1.channels = 1;
    const auto r = pim::gemv_cost(t, o1, {16, 64});
    CHECK(r.cycles == 79);
    const auto e = pim::gemv_schedule(t, o1, {16, 64});
    CHECK(e.cycles == 79);
    // A second group: ACT16 at max(78 + tRP 26, 25 + tRC 79) = 104, so every later one 79 apart.
    const auto r2 = pim::gemv_cost(t, o1, {32, 64});
    CHECK(r2.cycles == 79 + 79);
  }
  // Packed rows (the key-cache layout): 768 keys of 64 values, 16 to a DRAM row: 3 visits of 16
  // segments (4 MAC16 and one RD_MAC each) per bank.
  {
    pim::organisation o1 = org;
    o1.channels = 1;
    const pim::gemv_mapping keys{768, 64, pim::loop_order::rows_outer, 0, true};
    CHECK(keys.pack(o1) == 16);
    const auto r = pim::gemv_cost(t, o1, keys);
    CHECK(r.counts[cmd::act_ab] == 3);
    CHECK(r.counts[cmd::mac_ab] == 3 * 16 * 4);
    CHECK(r.counts[cmd::rd_mac] == 3 * 16);
    CHECK(r.counts[cmd::wr_gb] == 4);
    // the RD_MAC bursts (tBL 8) pace the segments: 8 cycles per key instead of a row visit each
    const auto unpacked = pim::gemv_cost(t, o1, {768, 64});
    CHECK(unpacked.counts[cmd::act_ab] == 48);
    CHECK(r.cycles * 4 < unpacked.cycles);
    pim::gemv_mapping too_long = keys;
    too_long.k = 1025;
    CHECK_THROWS_WITH_AS(pim::gemv_cost(t, o1, too_long), doctest::Contains("packed rows of K = 1025"), config_error);
  }
  // Doubling the channels halves the MAC phase: with g groups per channel, cycles = c0 + g P, so
  // C -> 2C removes g/2 periods and 2C -> 4C g/4.
  {
    const pim::gemv_mapping map{16 * 64 * 8, 1024};
    pim::organisation c1 = org, c2 = org, c4 = org;
    c1.channels = 16;
    c2.channels = 32;
    c4.channels = 64;
    const auto a = pim::gemv_schedule(t, c1, map), b = pim::gemv_schedule(t, c2, map), c = pim::gemv_schedule(t, c4, map);
    CHECK(a.cycles - b.cycles == 2 * (b.cycles - c.cycles));
    CHECK(b.cycles - c.cycles > 0);
    CHECK(a.counts[cmd::mac_ab] == b.counts[cmd::mac_ab]);
    CHECK(a.channel_cycles.size() == 16);
  }
}

TEST_CASE("pim gemv: checker, quantum, bad shapes") {
  const auto t = pim::gddr6_2000_1350mv;
  pim::organisation org;
  org.channels = 4;
  const pim::gemv_mapping map{300, 2100, pim::loop_order::k_outer};
  std::vector<pim::timed_command> trace;
  pim::schedule_options opt;
  opt.trace = &trace;
  const auto r = pim::gemv_schedule(t, org, map, opt);
  CHECK(static_cast<std::int64_t>(trace.size()) == r.counts.total());
  const auto c = pim::check_schedule(t, org, trace);
  CHECK(c.cycles == r.cycles);
  CHECK(c.counts == r.counts);
  // every command issued as early as allowed: each one cycle earlier is refused (sample a few)
  for (std::size_t i : {std::size_t(1), std::size_t(5), trace.size() / 2, trace.size() - 1}) {
    CAPTURE(i);
    auto bad = trace;
    bad[i].cycle -= 1;
    CHECK_THROWS_AS(pim::check_schedule(t, org, bad), pim::timing_error);
  }
  // the quantum changes how often the queue switches channels, never the result
  for (std::int64_t q : {1, 7, 100000}) {
    pim::schedule_options o2;
    o2.quantum = q;
    const auto rq = pim::gemv_schedule(t, org, map, o2);
    CHECK(rq.cycles == r.cycles);
    CHECK(rq.channel_cycles == r.channel_cycles);
    CHECK(rq.counts == r.counts);
  }
  // shapes that do not fit, or make no sense
  pim::organisation tiny;
  tiny.channels = 1;
  tiny.rows = 8;
  CHECK_THROWS_WITH_AS(pim::gemv_cost(t, tiny, {16 * 9, 16}), doctest::Contains("needs 9 rows per bank"), budget_error);
  CHECK_THROWS_WITH_AS(pim::gemv_cost(t, tiny, {16 * 5, 1025}), doctest::Contains("needs 10 rows per bank"),
                       budget_error); // 5 groups x 2 chunks
  CHECK_NOTHROW(pim::gemv_cost(t, tiny, {16 * 8, 16}));
  CHECK_THROWS_WITH_AS(pim::gemv_cost(t, tiny, {0, 16}), doctest::Contains("shape 0 x 16"), config_error);
  CHECK_THROWS_WITH_AS(pim::gemv_stream(pim::gemv_mapping{16, 16}, tiny, 1), doctest::Contains("channel 1"),
                       config_error);
  auto faw = t;
  faw.faw = 4 * t.rc + 1;
  CHECK_THROWS_WITH_AS(pim::gemv_cost(faw, tiny, {16, 16}), doctest::Contains("4 tRC >= tFAW"), config_error);
}
