// SPDX-License-Identifier: MIT
// Shared by the nn/ tests: reading tests/fixtures/nn/layer_fixtures.json (written by
// tools/make_nn_layer_fixtures.py), filling a view from a fixture array, and comparing a float
// result with a float64 reference at |got - want| <= tol (1 + |want|).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/core/view.hpp"

namespace membound::test {
inline nlohmann::json layer_fixtures() {
  std::ifstream f(MEMBOUND_FIXTURES_DIR "/nn/layer_fixtures.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}
inline void fill(view<float> v, const nlohmann::json& j) {
  const auto d = j.get<std::vector<double>>();
  REQUIRE(static_cast<index_t>(d.size()) == v.size());
  for (std::size_t i = 0; i < d.size(); ++i) v.span()[i] = static_cast<float>(d[i]);
}
inline void check_close(view<const float> got, const nlohmann::json& want, double tol = 2e-5) {
  const auto w = want.get<std::vector<double>>();
  REQUIRE(static_cast<index_t>(w.size()) == got.size());
  for (std::size_t i = 0; i < w.size(); ++i) CHECK(std::abs(got.span()[i] - w[i]) <= tol * (1 + std::abs(w[i])));
}
} // namespace membound::test
