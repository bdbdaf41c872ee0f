// SPDX-License-Identifier: MIT
// nn/parameters.hpp: registration, safetensors round trips by name (and dtype conversion on load),
// strict loading errors, 16-bit storage copies.
#include <doctest/doctest.h>

#include "membound/io/safetensors.hpp"
#include "membound/nn/parameters.hpp"

using namespace membound;

TEST_CASE("parameters: register, save, load by name") {
  nn::parameters p;
  auto w = p.add("layer.weight", {3, 4}); // (C_out,C_in)
  auto b = p.add("layer.bias", {3});      // (C_out)
  for (index_t i = 0; i < 12; ++i) w.span()[static_cast<std::size_t>(i)] = 0.5f * static_cast<float>(i) - 2.0f;
  b(1) = 7.0f;
  CHECK(p.size() == 2);
  CHECK(p.count() == 15);
  CHECK(p.grad("layer.weight").extent(1) == 4);
  const auto bytes = p.to_bytes({{"format", "pt"}});
  const auto file = io::safetensors::from_buffer(bytes);
  CHECK(file.metadata().at("format") == "pt");

  nn::parameters q;
  auto w2 = q.add("layer.weight", {3, 4});
  auto b2 = q.add("layer.bias", {3});
  q.load(file);
  CHECK(w2(2, 3) == w(2, 3));
  CHECK(b2(1) == 7.0f);

  p.grad("layer.bias")(0) = 3.0f;
  p.zero_grad();
  CHECK(p.grad("layer.bias")(0) == 0.0f);
}

TEST_CASE("parameters: load converts bf16 checkpoints and reports mismatches by name") {
  array<bf16> wb({2, 2}); // (C_out,C_in)
  wb[3] = bf16::from_float(1.5f);
  io::safetensors_writer wr;
  wr.add("w", wb.cview());
  const auto bytes = wr.to_bytes();
  const auto file = io::safetensors::from_buffer(bytes);
  {
    nn::parameters p;
    auto w = p.add("w", {2, 2});
    p.load(file);
    CHECK(w(1, 1) == 1.5f);
  }
  {
    nn::parameters p;
    p.add("w", {4});
    CHECK_THROWS_WITH_AS(p.load(file), doctest::Contains("(2,2) in the checkpoint but (4) here"), shape_error);
  }
  {
    nn::parameters p;
    p.add("w", {2, 2});
    p.add("missing", {1});
    CHECK_THROWS_WITH_AS(p.load(file), doctest::Contains("\"missing\""), lookup_error);
  }
  {
    nn::parameters p;
    CHECK_THROWS_WITH_AS(p.load(file), doctest::Contains("unexpected tensor \"w\""), lookup_error);
    CHECK_NOTHROW(p.load(file, false));
  }
}

TEST_CASE("parameters: 16-bit storage copies and bad names") {
  nn::parameters p;
  auto w = p.add("w", {5});
  w(0) = 1.00390625f; // ties to even in bf16 -> 1.0
  w(4) = 70000.0f;    // overflows f16 -> inf
  const auto h = p.stored<bf16>("w");
  CHECK(h[0].bits == 0x3f80);
  const auto g = p.stored<f16>("w");
  CHECK(g[4].bits == 0x7c00);
  CHECK_THROWS_AS(p.add("w", {1}), config_error);
  CHECK_THROWS_AS(p.add("", {1}), config_error);
  CHECK_THROWS_WITH_AS((void)p.value("nope"), doctest::Contains("\"nope\""), lookup_error);
}
