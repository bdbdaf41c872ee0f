// SPDX-License-Identifier: MIT
// nn/rope.hpp and nn/attention.hpp against PyTorch re-implementations of Hugging Face Llama's
// rotate_half RoPE and softmax(q k^T / sqrt(d) + bias) v with and without a causal mask
// (tools/make_nn_layer_fixtures.py); RoPE's inverse undoes it; bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/nn/attention.hpp"
#include "membound/nn/rope.hpp"
#include "fixtures.hpp"

using namespace membound;

using test::check_close;
using test::fill;

namespace {
nlohmann::json fixtures() { return test::layer_fixtures(); }
} // namespace

TEST_CASE("rope matches Hugging Face's rotate_half and its inverse undoes it") {
  const auto f = fixtures()["rope"];
  const index_t t = f["T"], h = f["H"], d = f["D"];
  const auto pos = f["pos"].get<std::vector<std::int64_t>>();
  auto r = nn::rope::make(d, 16);
  array<float> x({t, h, d}), x0({t, h, d}); // (T,H,D)
  fill(x.view(), f["x"]);
  x0 = x;
  r.apply(x.view(), pos);
  check_close(x.cview(), f["y"]);
  r.apply(x.view(), pos, true);
  for (index_t i = 0; i < x.size(); ++i) CHECK(x[i] == doctest::Approx(x0[i]).epsilon(1e-5));
  CHECK_THROWS_AS(nn::rope::make(7, 4), config_error);
  const std::vector<std::int64_t> far = {0, 1, 2, 3, 16};
  CHECK_THROWS_WITH_AS(r.apply(x.view(), far), doctest::Contains("position 16"), lookup_error);
}

TEST_CASE("dense attention matches PyTorch: plain, with bias, causal") {
  const auto f = fixtures()["attention"];
  const auto sh = f["shape"].get<std::vector<index_t>>();
  const index_t h = sh[0], t = sh[1], s = sh[2], d = sh[3], dv = sh[4];
  array<float> q({h, t, d}), k({h, s, d}), v({h, s, dv}), bias({h, t, s}), o({h, t, dv}), scores; // (H,T,D) ...
  fill(q.view(), f["q"]);
  fill(k.view(), f["k"]);
  fill(v.view(), f["v"]);
  fill(bias.view(), f["bias"]);
  nn::attention(q.cview(), k.cview(), v.cview(), o.view(), scores);
  check_close(o.cview(), f["plain"]);
  nn::attention(q.cview(), k.cview(), v.cview(), o.view(), scores, {}, bias.cview());
  check_close(o.cview(), f["biased"]);
  nn::attention_config causal;
  causal.causal = true;
  nn::attention(q.cview(), k.cview(), v.cview(), o.view(), scores, causal);
  check_close(o.cview(), f["causal"]);
  array<float> obad({h, t, d}); // wrong Dv
  CHECK_THROWS_WITH_AS(nn::attention(q.cview(), k.cview(), v.cview(), obad.view(), scores), doctest::Contains("do not fit"),
                       shape_error);
}
