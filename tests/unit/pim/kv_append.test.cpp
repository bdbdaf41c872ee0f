// SPDX-License-Identifier: MIT
// pim/kv_append.hpp: appending K and V to the PIM-resident cache command by command. A hand-derived
// wave of four write visits; the scheduler's schedule passes the checker; batching the appends
// divides the per-token cost; commands by hand; typed errors.
#include <doctest/doctest.h>

#include <vector>

#include "membound/pim/kv_append.hpp"

using namespace membound;
using pim::cmd;

TEST_CASE("pim kv append: a wave by hand, checker, batching, errors") {
  const auto t = pim::gddr6_2000_1350mv;
  pim::organisation one;
  one.channels = 1;
  // One KV head of head_dim 3: a K row and 3 V rows, one WR each, in banks 0, 4, 8, 12 (one per
  // bank group). ACTs at 0, 7, 14, 21 (tRRD_S); WRs at 22 (in order after the ACTs), then every
  // 8 cycles on the data bus: 30, 38, 46; PREs after write recovery: WR + CWL 6 + BL 8 + tWR 26,
  // so 62, 70, 78, 86. The channel ends at 87.
  std::vector<pim::timed_command> trace;
  pim::schedule_options opt;
  opt.trace = &trace;
  const auto r = pim::kv_append_schedule(t, one, {1, 3, 1}, opt);
  CHECK(r.cycles == 87);
  CHECK(r.counts[cmd::act] == 4);
  CHECK(r.counts[cmd::wr] == 4);
  CHECK(r.counts[cmd::pre] == 4);
  REQUIRE(trace.size() == 12);
  const std::int64_t expect[12] = {0, 7, 14, 21, 22, 30, 38, 46, 62, 70, 78, 86};
  const std::int32_t banks[4] = {0, 4, 8, 12};
  for (std::size_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(trace[i].cycle == expect[i]);
    CHECK(trace[i].c.bank == banks[i % 4]);
  }
  // A layer of GPT-2 XL (25 KV heads of 64): 1625 row visits over 16 channels; legal, and the
  // K rows take 4 writes (64 bf16 = 128 bytes), the V rows one.
  pim::organisation dev;
  std::vector<pim::timed_command> big;
  pim::schedule_options o2;
  o2.trace = &big;
  const auto xl = pim::kv_append_schedule(t, dev, {25, 64, 1}, o2);
  CHECK(xl.counts[cmd::act] == 25 * 65);
  CHECK(xl.counts[cmd::wr] == 25 * (4 + 64));
  const auto checked = pim::check_schedule(t, dev, big);
  CHECK(checked.cycles == xl.cycles);
  CHECK(checked.counts == xl.counts);
  // Batching 16 tokens: the same visits write 16 times the data (K rows 64 writes, V rows still
  // one), so each token's share of the append falls below a quarter of a single token's append.
  const auto b16 = pim::kv_append_schedule(t, dev, {25, 64, 16});
  CHECK(b16.counts[cmd::act] == xl.counts[cmd::act]);
  CHECK(b16.counts[cmd::wr] == 25 * (64 + 64));
  CHECK(static_cast<double>(b16.cycles) / 16.0 < 0.25 * static_cast<double>(xl.cycles));
  // errors
  CHECK_THROWS_WITH_AS(pim::kv_append_schedule(t, dev, {25, 64, 17}), doctest::Contains("a batch of 17 keys"),
                       config_error);
  CHECK_THROWS_WITH_AS(pim::kv_append_schedule(t, dev, {0, 64, 1}), doctest::Contains("0 KV heads"), config_error);
  pim::organisation tiny = one;
  tiny.rows = 2;
  CHECK_THROWS_WITH_AS(pim::kv_append_schedule(t, tiny, {8, 64, 1}), doctest::Contains("rows per bank"), budget_error);
}
