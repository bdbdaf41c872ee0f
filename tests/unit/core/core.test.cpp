// SPDX-License-Identifier: MIT
// Tests for core/: errors, dtypes, view, array, the tensor concept and the Eigen adaptors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "membound/core/core.hpp"
#include "membound/core/eigen.hpp"

using namespace membound;

TEST_CASE("error hierarchy: every typed error is a membound::error and carries its message") {
  try {
    MEMBOUND_EXPECTS(1 == 2, shape_error, "x has ", 7, " elements, expected ", 8);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(std::string(e.what()) == "x has 7 elements, expected 8");
  }
  CHECK_THROWS_AS(throw format_error("f"), error);
  CHECK_THROWS_AS(throw budget_error("b"), error);
  CHECK_THROWS_AS(throw config_error("c"), error);
  CHECK_THROWS_AS(throw dtype_error("d"), error);
  CHECK_THROWS_AS(throw lookup_error("l"), error);
  CHECK_THROWS_AS(throw io_error("i"), error);
}

TEST_CASE("dtype table: sizes, names and parsing") {
  CHECK(dtype_size(dtype::f64) == 8);
  CHECK(dtype_size(dtype::bf16) == 2);
  CHECK(dtype_size(dtype::boolean) == 1);
  CHECK(dtype_size(dtype::f8_e5m2) == 1);
  CHECK(dtype_name(dtype::f8_e4m3) == "F8_E4M3");
  for (int i = 0; i <= static_cast<int>(dtype::f8_e5m2); ++i) {
    const auto t = static_cast<dtype>(i);
    CHECK(parse_dtype(dtype_name(t)) == t);
  }
  CHECK_THROWS_WITH_AS(parse_dtype("F31"), doctest::Contains("F31"), format_error);
  CHECK(dtype_of_v<float> == dtype::f32);
  CHECK(dtype_of_v<const bf16> == dtype::bf16);
}

TEST_CASE("bf16 and f16: hand-derived bit patterns") {
  CHECK(bf16::from_float(1.0f).bits == 0x3f80);
  CHECK(bf16::from_float(-2.0f).bits == 0xc000);
  // 1 + 2^-8 is exactly half-way between bf16 1.0 and 1.0078125: ties to even -> 1.0.
  CHECK(bf16::from_float(1.00390625f).bits == 0x3f80);
  // 1 + 3*2^-8 is half-way between 1.0078125 (odd mantissa) and 1.015625: ties to even -> up.
  CHECK(bf16::from_float(1.01171875f).bits == 0x3f82);
  CHECK(bf16::from_float(std::numeric_limits<float>::infinity()).bits == 0x7f80);
  CHECK(bf16::from_float(3.4028235e38f).bits == 0x7f80); // rounds up to inf
  CHECK(bf16::from_bits(0x3fc0).to_float() == 1.5f);
  const float snan = std::bit_cast<float>(0x7f800001u); // signalling NaN, payload only in low bits
  CHECK((bf16::from_float(snan).bits & 0x7fc0) == 0x7fc0); // stays a quiet NaN, not inf
  CHECK(f16::from_float(1.0f).bits == 0x3c00);
  CHECK(f16::from_float(65504.0f).bits == 0x7bff);
  CHECK(f16::from_float(65519.0f).bits == 0x7bff);
  CHECK(f16::from_float(65520.0f).bits == 0x7c00); // tie rounds to even = inf
  CHECK(f16::from_float(std::ldexp(1.0f, -24)).bits == 0x0001);   // smallest subnormal
  CHECK(f16::from_float(std::ldexp(1.0f, -25)).bits == 0x0000);   // half of it: tie to even 0
  CHECK(f16::from_float(std::ldexp(1.5f, -25)).bits == 0x0001);   // above half
  CHECK(f16::from_float(std::ldexp(3.0f, -25)).bits == 0x0002);   // 1.5 * 2^-24: tie -> even 2
  CHECK(f16::from_bits(0x0001).to_float() == std::ldexp(1.0f, -24));
  CHECK(f16::from_bits(0x03ff).to_float() == std::ldexp(1023.0f, -24));
  CHECK(f16::from_bits(0xfc00).to_float() == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16::from_bits(0x7c01).to_float()));
}

TEST_CASE("view: extents, strides, slicing, select, transpose, reshape") {
  array<float> a({2, 3, 4}); // (B,T,D)
  std::iota(a.data(), a.data() + a.size(), 0.0f);
  CHECK(a.rank() == 3);
  CHECK(a.size() == 24);
  CHECK(a.stride(0) == 12);
  CHECK(a.stride(1) == 4);
  CHECK(a.stride(2) == 1);
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0);
  view<float> v = a;
  CHECK(v(1, 2, 3) == 23.0f);
  auto s = v.slice(1, 1, 3); // (B,2,D)
  CHECK(s.extent(1) == 2);
  CHECK(s(0, 0, 0) == 4.0f);
  CHECK_FALSE(s.contiguous());
  auto r = v.select(0, 1); // (T,D)
  CHECK(r.rank() == 2);
  CHECK(r(0, 0) == 12.0f);
  auto t = r.transpose(); // (D,T)
  CHECK(t(3, 2) == r(2, 3));
  auto flat = v.reshape({-1}); // (B*T*D)
  CHECK(flat.extent(0) == 24);
  auto m = v.reshape({6, -1}); // (B*T,D)
  CHECK(m.extent(1) == 4);
  CHECK(m(5, 3) == 23.0f);
  CHECK_THROWS_AS((void)s.reshape({-1}), shape_error);
  CHECK_THROWS_AS((void)v.reshape({5, 5}), shape_error);
  CHECK_THROWS_AS((void)v.reshape({-1, -1}), shape_error);
  CHECK_THROWS_AS((void)v.slice(1, 2, 4), lookup_error);
  CHECK_THROWS_AS((void)v.slice(3, 0, 1), shape_error);
  CHECK_THROWS_AS((void)v.select(0, 2), lookup_error);
  CHECK_THROWS_AS((void)v.at(0, 0), shape_error);
  CHECK_THROWS_AS((void)v.at(0, 0, 4), lookup_error);
  CHECK(v.at(1, 0, 1) == 13.0f);
  view<const float> c = v; // const conversion
  CHECK(c(0, 1, 1) == 5.0f);
  CHECK_THROWS_AS((void)s.span(), shape_error);
  CHECK(r.span().size() == 12);
}

TEST_CASE("view/array: bad extents are typed errors") {
  float x[4] = {};
  CHECK_THROWS_AS(make_view(x, {-1, 4}), shape_error);
  CHECK_THROWS_AS(view<float>(x, {1, 1, 1, 1, 1, 1, 1, 1, 1}), shape_error); // rank 9
  const index_t big = index_t(1) << 40;
  CHECK_THROWS_AS(make_view(x, {big, big}), shape_error); // product overflows
  CHECK_THROWS_AS(array<float>({big, big}), shape_error);
  CHECK_THROWS_AS(make_view(x, {2, 2}, {2}), shape_error);
}

TEST_CASE("array: copy is deep, move steals, from() packs strided views") {
  array<float> a({3, 2});
  for (index_t i = 0; i < 6; ++i) a[i] = static_cast<float>(i);
  array<float> b = a;
  b[0] = 42.0f;
  CHECK(a[0] == 0.0f);
  array<float> c = std::move(b);
  CHECK(c[0] == 42.0f);
  auto packed = array<float>::from(a.view().transpose()); // (2,3)
  CHECK(packed.extent(0) == 2);
  CHECK(packed(1, 2) == a(2, 1));
  CHECK(packed.view().contiguous());
  array<bf16> h({5});
  CHECK(h[4].bits == 0); // zero-filled
  array<float> e;
  CHECK(e.empty());
  CHECK(e.view().size() == 0);
}

TEST_CASE("tensor concept") {
  static_assert(tensor<array<bf16>>);
  static_assert(tensor_of<view<const float>, float>);
  static_assert(!tensor<int>);
  CHECK(size_of(array<float>({2, 5})) == 10);
}

TEST_CASE("Eigen adaptors: map without copies, both directions") {
  array<float> a({2, 3});
  for (index_t i = 0; i < 6; ++i) a[i] = static_cast<float>(i);
  auto m = as_eigen(a.view()); // (2,3)
  CHECK(m(1, 2) == 5.0f);
  m(0, 1) = 9.0f;
  CHECK(a(0, 1) == 9.0f);
  auto mt = as_eigen(a.cview().transpose()); // (3,2)
  CHECK(mt(2, 1) == 5.0f);
  Eigen::MatrixXf e(3, 4); // column-major
  e.setZero();
  e(2, 1) = 7.0f;
  auto v = from_eigen(e); // (3,4)
  CHECK(v.extent(0) == 3);
  CHECK(v.stride(0) == 1);
  CHECK(v(2, 1) == 7.0f);
  auto col = as_eigen_vector(v.select(1, 1)); // (3)
  CHECK(col(2) == 7.0f);
  CHECK_THROWS_AS((void)as_eigen(v.select(0, 0)), shape_error);
}

TEST_CASE("view/array: hostile extents and strides never overflow index_t (issue 17)") {
  float x[4] = {};
  const index_t big = index_t(1) << 40;
  const index_t max = std::numeric_limits<index_t>::max();
  SUBCASE("contiguous view constructor: a zero extent makes any other extents legal") {
    for (auto ext : {std::vector<index_t>{0, big, big, big}, std::vector<index_t>{big, big, big, 0},
                     std::vector<index_t>{big, 0, max, max}, std::vector<index_t>{max, max, max, max, max, max, max, 0}}) {
      const view<float> v(x, std::span<const index_t>(ext));
      CHECK(v.size() == 0);
      CHECK(v.empty());
      CHECK(v.contiguous());
      CHECK(v.span().empty());
      CHECK(size_of(v) == 0);
      CHECK(v.stride(v.rank() - 1) == 1);
      const view<float> s = v.slice(0, 0, 0);
      CHECK(s.size() == 0);
    }
    const view<float> v(x, {0, big, big, big});
    CHECK(v.stride(2) == big); // fits: 2^40
    CHECK(v.stride(1) == 0);   // 2^80 does not: saturated to 0 in an empty view
    CHECK(v.stride(0) == 0);
    CHECK_THROWS_AS(view<float>(x, {big, big, big}), shape_error); // non-empty: overflow is an error
    CHECK_THROWS_AS(view<float>(x, {-1, 0}), shape_error);
  }
  SUBCASE("array constructor") {
    array<float> a({0, big, big, big});
    CHECK(a.size() == 0);
    CHECK(a.bytes() == 0);
    CHECK(a.stride(3) == 1);
    CHECK(a.stride(0) == 0);
    CHECK(a.view().size() == 0);
    array<float> b({big, big, big, 0}, uninitialized);
    CHECK(b.size() == 0);
    array<float> c = b; // copy of an empty array with huge extents
    CHECK(c.extent(0) == big);
    CHECK_THROWS_AS(array<float>({big, big, big}), shape_error);
    CHECK_THROWS_AS(array<float>({max, 2}), shape_error);
    CHECK_THROWS_AS(array<double>({max / 4}), shape_error); // bytes overflow size_t / 2
  }
  SUBCASE("strided view constructor: every element offset must fit") {
    CHECK_THROWS_AS(make_view(x, {2, 2}, {index_t(1) << 62, index_t(1) << 62}), shape_error);
    CHECK_THROWS_AS(make_view(x, {3}, {max}), shape_error);
    CHECK_THROWS_AS(make_view(x, {2}, {std::numeric_limits<index_t>::min()}), shape_error);
    CHECK_NOTHROW(make_view(x, {2}, {max}));                 // offsets 0 and max
    CHECK_NOTHROW(make_view(x, {2, 2}, {-(max / 2), max / 2})); // |offset| <= max
    CHECK_NOTHROW(make_view(x, {0, 5}, {max, max}));         // empty: addresses nothing
    CHECK_NOTHROW(make_view(x, {1, 1}, {max, max}));         // only offset 0
  }
  SUBCASE("reshape with hostile extents") {
    const view<float> v(x, {4});
    CHECK_THROWS_AS((void)v.reshape({big, big, big}), shape_error); // product overflows: no UB
    CHECK_THROWS_AS((void)v.reshape({-1, big, big, big}), shape_error);
    const view<float> e(x, {0, 3});
    CHECK(e.reshape({big, big, 0}).size() == 0);
    CHECK_THROWS_AS((void)e.reshape({-1, 0}), shape_error); // -1 cannot be inferred from 0 elements
  }
}
