// SPDX-License-Identifier: MIT
// Tests for io/safetensors.hpp and io/safetensors_index.hpp: reading files written by the
// reference implementation (fixtures from tools/make_safetensors_fixtures.py), round trips through
// our writer, and one case per rejection of the reference reader plus the known attacks
// (research/safetensors.md).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "membound/io/io.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(MEMBOUND_FIXTURES_DIR) / "safetensors";

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
  return v;
}

/// An 8-byte little-endian length `n`, then `header`, then `data`.
std::vector<std::byte> file_with_len(std::uint64_t n, std::string_view header, std::string_view data = {}) {
  std::vector<std::byte> v(8);
  for (int i = 0; i < 8; ++i) v[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xffu);
  const auto h = to_bytes(header), d = to_bytes(data);
  v.insert(v.end(), h.begin(), h.end());
  v.insert(v.end(), d.begin(), d.end());
  return v;
}
std::vector<std::byte> file_of(std::string_view header, std::string_view data = {}) {
  return file_with_len(header.size(), header, data);
}

std::vector<std::byte> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> v(c.size());
  if (!c.empty()) std::memcpy(v.data(), c.data(), c.size());
  return v;
}
void write_file(const fs::path& p, std::string_view s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

nlohmann::json expected() {
  std::ifstream f(fixtures / "expected.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

/// A number of the sidecar ("nan", "inf", "-inf" as strings) compared bit-for-bit as floats.
void check_float(float got, const nlohmann::json& want) {
  if (want.is_string()) {
    const std::string s = want.get<std::string>();
    if (s == "nan") CHECK(std::isnan(got));
    else CHECK(got == (s == "inf" ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity());
  } else {
    CHECK(got == want.get<float>());
  }
}

/// A fresh empty directory under the system temp dir, removed at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("membound_io_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Parses `buf` and expects a format_error whose message contains `fragment`.
#define CHECK_MALFORMED(buf, fragment) \
  CHECK_THROWS_WITH_AS(io::safetensors::from_buffer(buf), doctest::Contains(fragment), format_error)

void check_all_dtypes(const io::safetensors& st) {
  const auto exp = expected()["all_dtypes"];
  CHECK(st.metadata() == exp["metadata"].get<std::map<std::string, std::string>>());
  CHECK(st.tensors().size() == exp["tensors"].size());
  // Every tensor: dtype, shape, and its values through the typed view.
  for (const auto& item : exp["tensors"].items()) {
    const std::string name = item.key(); // (clang 14 cannot capture structured bindings)
    const auto& t = item.value();
    CAPTURE(name);
    REQUIRE(st.contains(name));
    const io::tensor_info& info = st.info(name);
    CHECK(dtype_name(info.type) == t["dtype"].get<std::string>());
    CHECK(info.shape == t["shape"].get<std::vector<index_t>>());
    CHECK(info.nbytes() == static_cast<std::size_t>(info.size()) * dtype_size(info.type));
    const auto& values = t["values"];
    auto check_values = [&](auto tag) {
      using T = decltype(tag);
      const view<const T> v = st.get<T>(name);
      REQUIRE(v.size() == static_cast<index_t>(values.size()));
      const auto s = v.span();
      for (std::size_t i = 0; i < s.size(); ++i) CHECK(s[i] == values[i].get<T>());
      const array<T> a = st.load<T>(name);
      CHECK((a.bytes() == 0 || std::memcmp(a.data(), s.data(), a.bytes()) == 0));
    };
    switch (info.type) {
    case dtype::f64: check_values(double{}); break;
    case dtype::f32: check_values(float{}); break;
    case dtype::i64: check_values(std::int64_t{}); break;
    case dtype::i32: check_values(std::int32_t{}); break;
    case dtype::i16: check_values(std::int16_t{}); break;
    case dtype::i8: check_values(std::int8_t{}); break;
    case dtype::u8: check_values(std::uint8_t{}); break;
    case dtype::boolean: check_values(bool{}); break;
    case dtype::f16: {
      const auto s = st.get<f16>(name).span();
      for (std::size_t i = 0; i < s.size(); ++i) CHECK(s[i].bits == values[i].get<std::uint16_t>());
      break;
    }
    case dtype::bf16: {
      const auto s = st.get<bf16>(name).span();
      for (std::size_t i = 0; i < s.size(); ++i) CHECK(s[i].bits == values[i].get<std::uint16_t>());
      break;
    }
    case dtype::f8_e4m3:
    case dtype::f8_e5m2: {
      const auto b = st.bytes(name);
      for (std::size_t i = 0; i < b.size(); ++i) CHECK(static_cast<unsigned>(b[i]) == values[i].get<unsigned>());
      break;
    }
    }
    // The float conversions of load<float>, against values computed by the python script.
    if (t.contains("as_float")) {
      const array<float> f = st.load<float>(name);
      REQUIRE(f.size() == static_cast<index_t>(t["as_float"].size()));
      for (std::size_t i = 0; i < t["as_float"].size(); ++i) check_float(f[static_cast<index_t>(i)], t["as_float"][i]);
    }
  }
}

} // namespace

// ---- reading files written by the reference implementation ----------------------------------

TEST_CASE("safetensors: every dtype of a reference-written file, through each way of opening") {
  const fs::path p = fixtures / "all_dtypes.safetensors";
  SUBCASE("open, memory-mapped") {
    const auto st = io::safetensors::open(p);
    CHECK(st.mapped());
    check_all_dtypes(st);
  }
  SUBCASE("open, read into a buffer") {
    const auto st = io::safetensors::open(p, io::load_mode::read);
    CHECK_FALSE(st.mapped());
    check_all_dtypes(st);
  }
  SUBCASE("from_buffer (borrowed) and from_buffer_copy") {
    const auto buf = read_file(p);
    check_all_dtypes(io::safetensors::from_buffer(buf));
    const auto copy = io::safetensors::from_buffer_copy(buf);
    CHECK(copy.data_section().data() != buf.data() + 8 + copy.header_size());
    check_all_dtypes(copy);
  }
  SUBCASE("from_buffer at an odd address: every multi-byte tensor is misaligned, then copied") {
    const auto file = read_file(p);
    std::vector<std::byte> shifted(file.size() + 1);
    std::memcpy(shifted.data() + 1, file.data(), file.size());
    const auto st = io::safetensors::from_buffer(std::span<const std::byte>(shifted).subspan(1));
    check_all_dtypes(st);
  }
}

TEST_CASE("safetensors: tensors(), info() and metadata() of the reference file") {
  const auto st = io::safetensors::open(fixtures / "all_dtypes.safetensors");
  // tensors() is in data-section order and tiles it.
  std::size_t cursor = 0;
  for (const auto& t : st.tensors()) {
    CHECK(t.begin == cursor);
    cursor = t.end;
  }
  CHECK(cursor == st.data_section().size());
  CHECK(st.header_size() % 8 == 0); // the reference writer pads to 8
  const auto& scalar = st.info("scalar");
  CHECK(scalar.shape.empty());
  CHECK(st.get<float>("scalar").rank() == 0);
  CHECK(st.get<float>("scalar")() == 42.0f);
  CHECK(st.get<float>("empty").size() == 0);
  CHECK(st.get<float>("empty").extent(0) == 0);
  CHECK(st.load<float>("empty").size() == 0);
  CHECK(st.metadata().at("note") == "ünïcode ✓");
}

TEST_CASE("safetensors: aligned tensors are zero-copy views into the mapping") {
  const auto st = io::safetensors::open(fixtures / "all_dtypes.safetensors");
  for (const auto* name : {"f64", "f32", "i64", "i32", "i16"}) {
    CAPTURE(name);
    const auto b = st.bytes(name);
    const void* p = nullptr;
    switch (st.info(name).type) {
    case dtype::f64: p = st.get<double>(name).data(); break;
    case dtype::f32: p = st.get<float>(name).data(); break;
    case dtype::i64: p = st.get<std::int64_t>(name).data(); break;
    case dtype::i32: p = st.get<std::int32_t>(name).data(); break;
    default: p = st.get<std::int16_t>(name).data(); break;
    }
    CHECK(p == static_cast<const void*>(b.data()));
  }
}

TEST_CASE("safetensors: misaligned tensors are copied once into aligned storage") {
  const auto exp = expected()["unaligned"];
  for (auto mode : {io::load_mode::mmap, io::load_mode::read}) {
    const auto st = io::safetensors::open(fixtures / "unaligned.safetensors", mode);
    const auto b = st.get<float>("b");
    CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % alignof(float) == 0);
    CHECK(static_cast<const void*>(b.data()) != static_cast<const void*>(st.bytes("b").data()));
    CHECK(b(0) == exp["b"][0].get<float>());
    CHECK(b(1) == exp["b"][1].get<float>());
    CHECK(st.get<float>("b").data() == b.data()); // the cached copy is returned again
    const auto c = st.get<std::int64_t>("c");
    CHECK(reinterpret_cast<std::uintptr_t>(c.data()) % alignof(std::int64_t) == 0);
    CHECK(c(0) == exp["c"][0].get<std::int64_t>());
    CHECK(st.load<std::int64_t>("c")[0] == exp["c"][0].get<std::int64_t>());
    CHECK(st.load<float>("b")[1] == exp["b"][1].get<float>());
    CHECK(st.get<std::uint8_t>("a")(2) == 3);
  }
  SUBCASE("views survive a move of the reader, and concurrent get() agrees on one copy") {
    auto st = io::safetensors::open(fixtures / "unaligned.safetensors");
    const float* first = st.get<float>("b").data();
    io::safetensors moved = std::move(st);
    CHECK(moved.get<float>("b").data() == first);
    const auto st2 = io::safetensors::open(fixtures / "unaligned.safetensors");
    std::vector<const std::int64_t*> seen(4);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i)
      threads.emplace_back([&, i] { seen[i] = st2.get<std::int64_t>("c").data(); });
    for (auto& t : threads) t.join();
    for (const auto* p : seen) CHECK(p == seen[0]);
  }
}

TEST_CASE("safetensors: a request for a type the caller cannot use is a clear error") {
  const auto st = io::safetensors::open(fixtures / "all_dtypes.safetensors");
  CHECK_THROWS_WITH_AS(st.get<float>("f16"), doctest::Contains("get<F32>(\"f16\"): the tensor is F16"), dtype_error);
  CHECK_THROWS_WITH_AS(st.get<std::uint8_t>("f8_e4m3"), doctest::Contains("the tensor is F8_E4M3"), dtype_error);
  CHECK_THROWS_WITH_AS(st.load<double>("f32"), doctest::Contains("load<F64>(\"f32\")"), dtype_error);
  CHECK_THROWS_WITH_AS(st.load<float>("i32"), doctest::Contains("converts only from F32, F64, F16, BF16"), dtype_error);
  CHECK_THROWS_WITH_AS(st.load<float>("bool"), doctest::Contains("the tensor is BOOL"), dtype_error);
  CHECK_THROWS_WITH_AS(st.get<std::int32_t>("u8"), doctest::Contains("the tensor is U8"), dtype_error);
  CHECK_THROWS_WITH_AS(st.info("nope"), doctest::Contains("no tensor named \"nope\""), lookup_error);
  CHECK_THROWS_AS(st.get<float>("nope"), lookup_error);
  CHECK_THROWS_AS(st.bytes("nope"), lookup_error);
  CHECK_FALSE(st.contains("nope"));
}

// ---- writer ---------------------------------------------------------------------------------

TEST_CASE("safetensors_writer: round trip of every dtype, strided input, metadata and layout") {
  io::safetensors_writer w;
  array<float> a({2, 3}); // (M,K)
  for (index_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) - 2.5f;
  w.add("a", a);
  w.add("a_t", a.view().transpose()); // strided: written row-major as (K,M)
  array<double> d({3});
  d[0] = 1e300; d[1] = -0.0; d[2] = 5e-324;
  w.add("d", d);
  array<f16> h({2});
  h[0] = f16::from_float(1.5f); h[1] = f16::from_float(-65504.0f);
  w.add("h", h);
  array<bf16> bh({1});
  bh[0] = bf16::from_float(3.0f);
  w.add("bh", bh);
  array<std::int64_t> i64({2});
  i64[0] = std::numeric_limits<std::int64_t>::min(); i64[1] = 7;
  w.add("i64", i64);
  array<std::int32_t> i32({1}); i32[0] = -5; w.add("i32", i32);
  array<std::int16_t> i16({1}); i16[0] = -300; w.add("i16", i16);
  array<std::int8_t> i8({1}); i8[0] = -7; w.add("i8", i8);
  array<std::uint8_t> u8({3}); u8[0] = 1; u8[1] = 2; u8[2] = 255; w.add("u8", u8);
  array<bool> bl({2}); bl[0] = true; bl[1] = false; w.add("bool", bl);
  const std::byte e4[] = {std::byte{0x38}, std::byte{0xb8}};
  const index_t e4_shape[] = {2};
  w.add_raw("e4", dtype::f8_e4m3, e4_shape, e4);
  w.add("scalar", array<float>(std::span<const index_t>{}));
  w.add("empty", array<float>({0, 4}));
  w.set_metadata("format", "pt");
  w.set_metadata("format", "membound"); // replaced
  w.set_metadata("k", "v");
  CHECK(w.size() == 14);

  const auto bytes = w.to_bytes();
  const auto st = io::safetensors::from_buffer(bytes);
  CHECK(st.header_size() % 8 == 0);
  CHECK(st.metadata() == std::map<std::string, std::string>{{"format", "membound"}, {"k", "v"}});
  CHECK(st.tensors().size() == 14);
  // Largest element size first, so every tensor is aligned for its type.
  for (const auto& t : st.tensors()) CHECK((8 + st.header_size() + t.begin) % dtype_size(t.type) == 0);
  CHECK(st.get<float>("a")(1, 2) == a(1, 2));
  CHECK(st.info("a_t").shape == std::vector<index_t>{3, 2});
  CHECK(st.get<float>("a_t")(2, 1) == a(1, 2));
  CHECK(st.get<double>("d")(0) == 1e300);
  CHECK(std::signbit(st.get<double>("d")(1)));
  CHECK(st.get<double>("d")(2) == 5e-324);
  CHECK(st.get<f16>("h")(1) == h[1]);
  CHECK(st.get<bf16>("bh")(0) == bh[0]);
  CHECK(st.get<std::int64_t>("i64")(0) == std::numeric_limits<std::int64_t>::min());
  CHECK(st.get<std::int32_t>("i32")(0) == -5);
  CHECK(st.get<std::int16_t>("i16")(0) == -300);
  CHECK(st.get<std::int8_t>("i8")(0) == -7);
  CHECK(st.get<std::uint8_t>("u8")(2) == 255);
  CHECK(st.get<bool>("bool")(0));
  CHECK_FALSE(st.get<bool>("bool")(1));
  CHECK(st.load<float>("e4")[0] == 1.0f);
  CHECK(st.load<float>("e4")[1] == -1.0f);
  CHECK(st.get<float>("scalar").rank() == 0);
  CHECK(st.info("empty").shape == std::vector<index_t>{0, 4});

  SUBCASE("write(path) produces the same bytes, and open() reads them zero-copy") {
    temp_dir tmp;
    w.write(tmp.path / "w.safetensors");
    CHECK(read_file(tmp.path / "w.safetensors") == bytes);
    const auto st2 = io::safetensors::open(tmp.path / "w.safetensors");
    CHECK(static_cast<const void*>(st2.get<double>("d").data()) == static_cast<const void*>(st2.bytes("d").data()));
  }
  SUBCASE("write to a missing directory is an io_error naming the path") {
    CHECK_THROWS_WITH_AS(w.write("/nonexistent-dir/x.safetensors"),
                         doctest::Contains("/nonexistent-dir/x.safetensors: cannot create: No such file"), io_error);
  }
}

TEST_CASE("safetensors_writer: an empty writer gives a valid empty file") {
  const auto bytes = io::safetensors_writer{}.to_bytes();
  CHECK(bytes.size() == 16); // "{}" padded to 8
  const auto st = io::safetensors::from_buffer(bytes);
  CHECK(st.tensors().empty());
  CHECK(st.metadata().empty());
}

TEST_CASE("safetensors_writer: writer output loads in the reference reader (committed, byte-exact)") {
  // Rewrites the reference fixture with our writer. tools/make_safetensors_fixtures.py verifies the
  // committed copy with the reference reader (same tensors and metadata as all_dtypes).
  const auto ref = io::safetensors::open(fixtures / "all_dtypes.safetensors");
  io::safetensors_writer w;
  for (const auto& t : ref.tensors()) w.add_raw(t.name, t.type, t.shape, ref.bytes(t.name));
  for (const auto& [k, v] : ref.metadata()) w.set_metadata(k, v);
  // A unique name (several builds may run the tests at once); kept only when the check fails.
  const auto out = fs::temp_directory_path() / ("written_by_membound." + std::to_string(std::random_device{}()) + ".safetensors");
  w.write(out);
  const fs::path committed = fixtures / "written_by_membound.safetensors";
  INFO("our writer's output is ", out.string(), "; if the change is intended, copy it to ", committed.string(),
       " and run tools/make_safetensors_fixtures.py");
  REQUIRE(fs::exists(committed));
  const bool same = read_file(out) == read_file(committed);
  CHECK(same);
  if (same) fs::remove(out);
  check_all_dtypes(io::safetensors::open(committed));
}

TEST_CASE("safetensors_writer: bad names and sizes are rejected") {
  io::safetensors_writer w;
  array<float> a({2});
  w.add("x", a);
  CHECK_THROWS_WITH_AS(w.add("x", a), doctest::Contains("tensor \"x\" was already added"), config_error);
  CHECK_THROWS_WITH_AS(w.add("__metadata__", a), doctest::Contains("starts with \"__\""), config_error);
  CHECK_THROWS_WITH_AS(w.add("__x", a), doctest::Contains("reserved"), config_error);
  CHECK_THROWS_WITH_AS(w.add("", a), doctest::Contains("empty tensor name"), config_error);
  CHECK_THROWS_WITH_AS(w.add("bad\xff", a), doctest::Contains("not valid UTF-8"), config_error);
  CHECK_THROWS_WITH_AS(w.set_metadata("k", "\xc0\xaf"), doctest::Contains("not valid UTF-8"), config_error);
  CHECK_THROWS_WITH_AS(w.set_metadata("", "v"), doctest::Contains("empty metadata key"), config_error);
  const std::byte three[3] = {};
  const index_t shape1[] = {1};
  CHECK_THROWS_WITH_AS(w.add_raw("y", dtype::f32, shape1, three), doctest::Contains("needs 4 bytes, got 3"), shape_error);
  const index_t negative[] = {-1};
  CHECK_THROWS_AS(w.add_raw("z", dtype::u8, negative, {}), shape_error);
  CHECK(w.size() == 1);
}

// ---- malformed input: one case per rejection of the reference reader, plus known attacks ----

TEST_CASE("safetensors: malformed framing (length prefix, size limits, UTF-8, first byte)") {
  SUBCASE("shorter than 8 bytes") {
    CHECK_MALFORMED(std::vector<std::byte>{}, "buffer of 0 bytes is shorter than the 8-byte header length");
    CHECK_MALFORMED(std::vector<std::byte>(7), "buffer of 7 bytes");
  }
  SUBCASE("header length past the end of the buffer") {
    CHECK_MALFORMED(file_with_len(100, "{}"), "header length 100 runs past the end of the buffer (2 bytes follow");
  }
  SUBCASE("header length near 2^64 (no overflow of 8 + n)") {
    CHECK_MALFORMED(file_with_len(~std::uint64_t{0}, "{}"), "exceeds the limit of 100000000 bytes");
  }
  SUBCASE("header larger than 100 MB, before any allocation") {
    CHECK_MALFORMED(file_with_len(100'000'001, "{}"), "header length 100000001 exceeds the limit");
  }
  SUBCASE("header not valid UTF-8") {
    CHECK_MALFORMED(file_of("{\"\xff\":1}"), "header is not valid UTF-8 (byte 2 of the header is 0xff)");
    CHECK_MALFORMED(file_of("{\"\xc0\xaf\":1}"), "not valid UTF-8");     // overlong '/'
    CHECK_MALFORMED(file_of("{\"\xed\xa0\x80\":1}"), "not valid UTF-8"); // surrogate
    CHECK_MALFORMED(file_of("{\"\xe2\x82\":1}"), "not valid UTF-8");     // truncated sequence
  }
  SUBCASE("header not starting with '{'") {
    CHECK_MALFORMED(file_of(" {}"), "header does not start with '{' (first byte is 0x20)");
    CHECK_MALFORMED(file_of("[]"), "first byte is 0x5b");
    CHECK_MALFORMED(file_of(""), "header is empty");
  }
  SUBCASE("header not valid JSON") {
    CHECK_MALFORMED(file_of("{\"a\":"), "header is not valid JSON");
    CHECK_MALFORMED(file_of("{} x"), "header is not valid JSON");
    CHECK_MALFORMED(file_of(std::string("{}\0\0", 4)), "header is not valid JSON: NUL byte at offset 2");
    CHECK_MALFORMED(file_of(std::string("{}\0garbage", 10)), "NUL byte at offset 2");
    CHECK_MALFORMED(file_of("{/*c*/}"), "header is not valid JSON");
  }
  SUBCASE("accepted: padding spaces, null metadata, no tensors") {
    CHECK(io::safetensors::from_buffer(file_of("{}      ")).tensors().empty());
    CHECK(io::safetensors::from_buffer(file_of("{\"__metadata__\":null}")).metadata().empty());
  }
}

TEST_CASE("safetensors: duplicate JSON keys are rejected (they could alias two tensors)") {
  const std::string e = "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
  CHECK_MALFORMED(file_of("{\"a\":" + e + ",\"a\":" + e + "}", "x"), "duplicate key \"a\"");
  CHECK_MALFORMED(file_of("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
                  "duplicate key \"shape\" in \"a\"");
  CHECK_MALFORMED(file_of("{\"__metadata__\":{},\"__metadata__\":{}}"), "duplicate key \"__metadata__\"");
  CHECK_MALFORMED(file_of("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), "duplicate key \"k\" in \"__metadata__\"");
}

TEST_CASE("safetensors: malformed entries name the tensor and the bad value") {
  auto one = [](std::string_view entry, std::string_view data = "abcd") {
    return file_of("{\"w\":" + std::string(entry) + "}", data);
  };
  SUBCASE("entry not an object") { CHECK_MALFORMED(one("[1,2]"), "tensor \"w\": entry is [1,2], expected an object"); }
  SUBCASE("missing keys") {
    CHECK_MALFORMED(one("{\"shape\":[4],\"data_offsets\":[0,4]}"), "tensor \"w\": missing key \"dtype\"");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"data_offsets\":[0,4]}"), "tensor \"w\": missing key \"shape\"");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4]}"), "tensor \"w\": missing key \"data_offsets\"");
  }
  SUBCASE("extra unknown key (stricter than the reference, which ignores it)") {
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"offset\":0}"),
                    "tensor \"w\": unknown key \"offset\"");
  }
  SUBCASE("wrong key types") {
    CHECK_MALFORMED(one("{\"dtype\":8,\"shape\":[4],\"data_offsets\":[0,4]}"), "tensor \"w\": dtype is 8, expected a string");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}"), "tensor \"w\": shape is 4, expected an array");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}"),
                    "tensor \"w\": shape[0] is \"4\", expected a non-negative integer");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4.0],\"data_offsets\":[0,4]}"), "shape[0] is 4.0");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":{\"a\":0}}"),
                    "tensor \"w\": data_offsets is {\"a\":0}, expected [begin, end]");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4.0]}"),
                    "data_offsets [0,4.0] are not two non-negative integers");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}"), "data_offsets is [0], expected [begin, end]");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,2,4]}"), "expected [begin, end]");
  }
  SUBCASE("unknown dtype (also the reference's U16/U32/U64, which membound does not support)") {
    CHECK_MALFORMED(one("{\"dtype\":\"Q8\",\"shape\":[4],\"data_offsets\":[0,4]}"), "tensor \"w\": unknown dtype \"Q8\"");
    CHECK_MALFORMED(one("{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}"), "unknown dtype \"U16\"");
    CHECK_MALFORMED(one("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), "unknown dtype \"f32\"");
  }
  SUBCASE("negative and out-of-range shape dims") {
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}"),
                    "tensor \"w\": shape[0] is -4, expected a non-negative integer");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}"),
                    "shape[0] is 9223372036854775808, larger than 2^63-1");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}"),
                    "expected a non-negative integer"); // beyond uint64: parsed as a float
  }
  SUBCASE("shape products overflowing 64 bits") {
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]}"),
                    "tensor \"w\": shape [4294967296,4294967296,2] has more than 2^63-1 elements");
    CHECK_MALFORMED(one("{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}"),
                    "shape [4611686018427387904] of F64 needs more than 2^64-1 bytes");
    // As in the reference, an overflowing prefix is rejected even when a later extent is 0.
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}"),
                    "has more than 2^63-1 elements");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[9223372036854775807,2,0],\"data_offsets\":[0,0]}"),
                    "has more than 2^63-1 elements");
  }
  SUBCASE("huge declared shape over a tiny byte range (mlx #3364)") {
    CHECK_MALFORMED(one("{\"dtype\":\"F32\",\"shape\":[1000000,1000000],\"data_offsets\":[0,4]}"),
                    "tensor \"w\": shape [1000000, 1000000] of F32 needs 4000000000000 bytes but data_offsets [0, 4] hold 4");
  }
  SUBCASE("byte range length differs from product(shape) x dtype size") {
    CHECK_MALFORMED(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}"), "needs 8 bytes but data_offsets [0, 4] hold 4");
    CHECK_MALFORMED(one("{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,4]}"), "shape [] of F16 needs 2 bytes");
  }
  SUBCASE("reversed and negative offsets (audio.cpp #138)") {
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}"),
                    "tensor \"w\": data_offsets [4, 0] are reversed (begin > end)");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}"),
                    "data_offsets [-4,0] are not two non-negative integers");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[18446744073709551612,0]}"), "are reversed");
  }
  SUBCASE("offsets past the data section") {
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}"),
                    "tensor \"w\": data_offsets [4, 8] run past the data section of 4 bytes");
    CHECK_MALFORMED(one("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[18446744073709551614,0]}"), "reversed");
  }
}

TEST_CASE("safetensors: the byte ranges must tile the data section exactly") {
  auto two = [](std::string_view a, std::string_view b, std::string_view data) {
    return file_of("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":" + std::string(a) +
                       "},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":" + std::string(b) + "}}",
                   data);
  };
  SUBCASE("gap at the start") {
    CHECK_MALFORMED(file_of("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", "ab"),
                    "gap of 1 bytes before tensor \"a\" (data_offsets [1, 2], the previous tensor ends at 0)");
  }
  SUBCASE("gap between tensors") { CHECK_MALFORMED(two("[0,2]", "[3,5]", "abcde"), "gap of 1 bytes before tensor \"b\""); }
  SUBCASE("overlap") {
    CHECK_MALFORMED(two("[0,2]", "[1,3]", "abc"), "tensor \"b\" (data_offsets [1, 3]) overlaps tensor \"a\" (which ends at 2)");
  }
  SUBCASE("two tensors on the same range") { CHECK_MALFORMED(two("[0,2]", "[0,2]", "ab"), "overlaps"); }
  SUBCASE("data not ending at the end of the buffer") {
    CHECK_MALFORMED(two("[0,2]", "[2,4]", "abcdX"),
                    "the tensors cover 4 bytes of the 5-byte data section; the data must end at the end");
    CHECK_MALFORMED(file_of("{}", "X"), "the tensors cover 0 bytes of the 1-byte data section");
  }
  SUBCASE("accepted: zero-size tensors anywhere, out-of-order entries") {
    const auto st = io::safetensors::from_buffer(file_of(
        "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],"
        "\"data_offsets\":[2,4]},\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
        "abcd"));
    REQUIRE(st.tensors().size() == 3);
    CHECK(st.tensors()[0].name == "a");
    CHECK(st.get<float>("z").size() == 0);
  }
}

TEST_CASE("safetensors: __metadata__ must be an object of strings") {
  CHECK_MALFORMED(file_of("{\"__metadata__\":{\"k\":1}}"), "__metadata__ value of \"k\" is 1, expected a string");
  CHECK_MALFORMED(file_of("{\"__metadata__\":{\"k\":null}}"), "value of \"k\" is null");
  CHECK_MALFORMED(file_of("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}"), "value of \"k\" is {\"x\":\"y\"}");
  CHECK_MALFORMED(file_of("{\"__metadata__\":[\"k\"]}"), "__metadata__ is [\"k\"], expected an object");
  CHECK_MALFORMED(file_of("{\"__metadata__\":\"k\"}"), "__metadata__ is \"k\", expected an object");
}

TEST_CASE("safetensors: BOOL bytes other than 0 and 1 are a format_error, never read as bool") {
  const auto buf = file_of("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", std::string("\1\0\2", 3));
  const auto st = io::safetensors::from_buffer(buf); // the header is fine
  CHECK_THROWS_WITH_AS(st.get<bool>("m"), doctest::Contains("tensor \"m\": BOOL element 2 is 2, expected 0 or 1"),
                       format_error);
  CHECK_THROWS_AS(st.load<bool>("m"), format_error);
  CHECK_THROWS_AS(st.get<std::uint8_t>("m"), dtype_error);
  CHECK(st.bytes("m").size() == 3);
}

TEST_CASE("safetensors: rank above max_rank parses; views refuse it, bytes() works") {
  const auto st = io::safetensors::from_buffer(
      file_of("{\"r\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", "x"));
  CHECK(st.info("r").shape.size() == 9);
  CHECK_THROWS_WITH_AS(st.get<std::uint8_t>("r"), doctest::Contains("has rank 9, more than max_rank 8"), shape_error);
  CHECK_THROWS_AS(st.load<std::uint8_t>("r"), shape_error);
  CHECK(st.bytes("r").size() == 1);
}

TEST_CASE("safetensors: OS failures are io_errors with the path; format errors from open() name the path") {
  CHECK_THROWS_WITH_AS(io::safetensors::open(fixtures / "missing.safetensors"),
                       doctest::Contains("missing.safetensors: cannot open: No such file or directory"), io_error);
  CHECK_THROWS_WITH_AS(io::safetensors::open(fixtures), doctest::Contains("not a regular file"), io_error);
  temp_dir tmp;
  write_file(tmp.path / "bad.safetensors", "short");
  for (auto mode : {io::load_mode::mmap, io::load_mode::read})
    CHECK_THROWS_WITH_AS(io::safetensors::open(tmp.path / "bad.safetensors", mode),
                         doctest::Contains("bad.safetensors: safetensors: buffer of 5 bytes"), format_error);
  write_file(tmp.path / "empty.safetensors", "");
  CHECK_THROWS_WITH_AS(io::safetensors::open(tmp.path / "empty.safetensors"), doctest::Contains("buffer of 0 bytes"),
                       format_error);
}

// ---- sharded checkpoints --------------------------------------------------------------------

TEST_CASE("sharded_safetensors: routes every tensor of the index to its shard") {
  const auto exp = expected()["sharded"];
  for (auto mode : {io::load_mode::mmap, io::load_mode::read}) {
    const auto sh = io::sharded_safetensors::open(fixtures / "sharded" / "model.safetensors.index.json", mode);
    CHECK(sh.size() == 4);
    CHECK(sh.shard_paths().size() == 2);
    CHECK(sh.metadata().at("total_size") == std::to_string(exp["total_size"].get<std::size_t>()));
    CHECK(sh.metadata().at("format") == "pt");
    for (const auto& item : exp["as_float"].items()) {
      const std::string name = item.key();
      const auto& values = item.value();
      CAPTURE(name);
      REQUIRE(sh.contains(name));
      CHECK(sh.shard_of(name).info(name).name == name);
      const array<float> a = sh.load<float>(name);
      REQUIRE(a.size() == static_cast<index_t>(values.size()));
      for (std::size_t i = 0; i < values.size(); ++i) CHECK(a[static_cast<index_t>(i)] == values[i].get<float>());
    }
    CHECK(sh.get<float>("lm_head.weight")(1, 0) == 2.0f);
    CHECK(sh.info("model.layers.0.weight").type == dtype::bf16);
    CHECK(sh.bytes("model.layers.1.weight").size() == 6);
    CHECK_THROWS_WITH_AS(sh.info("nope"), doctest::Contains("no tensor named \"nope\""), lookup_error);
    CHECK_THROWS_AS(sh.get<float>("model.layers.0.weight"), dtype_error);
  }
}

TEST_CASE("sharded_safetensors: malformed index files") {
  temp_dir tmp;
  for (const char* s : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    fs::copy_file(fixtures / "sharded" / s, tmp.path / s);
  const auto idx = tmp.path / "model.safetensors.index.json";
  auto with = [&](std::string_view text) {
    write_file(idx, text);
    return idx;
  };
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":")), doctest::Contains("index is not valid JSON"),
                       format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("[]")), doctest::Contains("index is [], expected a JSON object"),
                       format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"metadata\":{}}")),
                       doctest::Contains("missing key \"weight_map\""), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":[]}")),
                       doctest::Contains("\"weight_map\" is [], expected an object"), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":{\"a\":1}}")),
                       doctest::Contains("weight_map value of \"a\" is 1, expected a shard file name"), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"metadata\":3,\"weight_map\":{}}")),
                       doctest::Contains("\"metadata\" is 3, expected an object"), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with(
                           "{\"weight_map\":{\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
                           "\"lm_head.weight\":\"model-00001-of-00002.safetensors\"}}")),
                       doctest::Contains("duplicate key \"lm_head.weight\" in \"weight_map\""), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":{\"a\":\"../x.safetensors\"}}")),
                       doctest::Contains("expected a relative path inside the index folder"), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":{\"a\":\"/etc/x.safetensors\"}}")),
                       doctest::Contains("expected a relative path"), format_error);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":{\"a\":\"model-00003-of-00002.safetensors\"}}")),
                       doctest::Contains("model-00003-of-00002.safetensors: cannot open"), io_error);
  CHECK_THROWS_WITH_AS(
      io::sharded_safetensors::open(with("{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\"}}")),
      doctest::Contains("maps tensor \"lm_head.weight\" to model-00001-of-00002.safetensors, which has no such tensor"),
      format_error);
  CHECK_THROWS_AS(io::sharded_safetensors::open(tmp.path / "missing.index.json"), io_error);
  // A malformed shard is reported with its path.
  write_file(tmp.path / "broken.safetensors", "12345678{}");
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::open(with("{\"weight_map\":{\"a\":\"broken.safetensors\"}}")),
                       doctest::Contains("broken.safetensors: safetensors: header length"), format_error);
  // A valid index with an empty weight_map is an empty checkpoint.
  CHECK(io::sharded_safetensors::open(with("{\"weight_map\":{}}")).size() == 0);
}

// ---- hostile files (issue 17): bounded nesting, bounded messages, zero extents ----------------

namespace {
std::string nest(std::size_t depth, std::string_view inner, bool objects) {
  std::string s;
  s.reserve(depth * 6 + inner.size());
  for (std::size_t i = 0; i < depth; ++i) s += objects ? "{\"a\":" : "[";
  s += inner;
  s.append(depth, objects ? '}' : ']');
  return s;
}

/// Parses `buf` through all four entry modes (from_buffer, from_buffer_copy, open read, open mmap)
/// and expects a format_error containing `fragment` from each.
void check_malformed_everywhere(const std::vector<std::byte>& buf, const char* fragment) {
  CHECK_THROWS_WITH_AS(io::safetensors::from_buffer(buf), doctest::Contains(fragment), format_error);
  CHECK_THROWS_WITH_AS(io::safetensors::from_buffer_copy(buf), doctest::Contains(fragment), format_error);
  temp_dir tmp;
  const auto p = tmp.path / "hostile.safetensors";
  write_file(p, std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
  for (auto mode : {io::load_mode::read, io::load_mode::mmap})
    CHECK_THROWS_WITH_AS(io::safetensors::open(p, mode), doctest::Contains(fragment), format_error);
}
} // namespace

TEST_CASE("json: 10^5 nested arrays or objects are a format_error in every entry mode, never a crash") {
  // Before the depth cap these crashed (stack overflow while dumping the value for the message).
  constexpr std::size_t deep = 100'000;
  const std::string entry = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
  for (bool objects : {false, true}) {
    CAPTURE(objects);
    check_malformed_everywhere(file_of("{\"w\":" + nest(deep, "1", objects) + "}"), "nesting reaches 128 levels");
    check_malformed_everywhere(file_of("{\"__metadata__\":" + nest(deep, "\"v\"", objects) + "}"),
                               "nesting reaches 128 levels");
    check_malformed_everywhere(file_of("{\"__metadata__\":{\"k\":" + nest(deep, "\"v\"", objects) + "}}"),
                               "nesting reaches 128 levels");
  }
  check_malformed_everywhere(
      file_of("{\"w\":{\"dtype\":\"F32\",\"shape\":" + nest(deep, "1", false) + ",\"data_offsets\":[0,4]}}", "abcd"),
      "nesting reaches 128 levels");
}

TEST_CASE("json: the nesting limit is the reference's (127 levels parse, 128 do not)") {
  CHECK_NOTHROW(io::parse_json(nest(127, "1", false), "t", 1000));
  CHECK_NOTHROW(io::parse_json(nest(127, "1", true), "t", 1000));
  CHECK_THROWS_WITH_AS(io::parse_json(nest(128, "1", false), "t", 1000), doctest::Contains("t is not valid JSON: nesting"),
                       format_error);
  CHECK_THROWS_AS(io::parse_json(nest(128, "1", true), "t", 1000), format_error);
  // At depth 127 (126 inside the header object and its key) the value parses and the message
  // that quotes it stays short.
  const std::string meta = "{\"__metadata__\":{\"k\":" + nest(125, "\"v\"", false) + "}}";
  try {
    (void)io::safetensors::from_buffer(file_of(meta));
    FAIL("expected a format_error");
  } catch (const format_error& e) {
    const std::string m = e.what();
    CHECK(m.find("__metadata__ value of \"k\" is [[[[") != std::string::npos);
    CHECK(m.size() < 200);
  }
  // Size cap, before parsing.
  CHECK_THROWS_WITH_AS(io::parse_json("[1, 2]", "cfg", 5), doctest::Contains("cfg: 6 bytes of JSON exceed the limit of 5"),
                       format_error);
}

TEST_CASE("json: short_dump writes at most 64 characters of any value without recursing past them") {
  // A value nested 1,000,000 deep, built in memory (a file cannot carry it past the parser).
  nlohmann::json j = 1;
  for (int i = 0; i < 1'000'000; ++i) j = nlohmann::json::array({std::move(j)});
  const std::string s = io::detail::short_dump(j);
  CHECK(s.size() == 67);
  CHECK(s == std::string(64, '[') + "...");
  // Long strings and arrays cost O(64), and short values are exact.
  CHECK(io::detail::short_dump(nlohmann::json(std::string(10'000'000, 'x'))) == "\"" + std::string(63, 'x') + "...");
  CHECK(io::detail::short_dump(nlohmann::json::parse("{\"a\":[1,2,{\"b\":null}]}")) == "{\"a\":[1,2,{\"b\":null}]}");
  CHECK(io::detail::short_dump(nlohmann::json("q\"\n")) == "\"q\\\"\\n\"");
  nlohmann::json wide = nlohmann::json::array();
  for (int i = 0; i < 1'000'000; ++i) wide.push_back(i);
  CHECK(io::detail::short_dump(wide).size() == 67);
}

TEST_CASE("json: load_json checks the size before reading, and names the path") {
  temp_dir tmp;
  write_file(tmp.path / "config.json", "{\"hidden_size\": 64, \"layers\": [1, 2]}");
  const auto j = io::load_json(tmp.path / "config.json", 1 << 20);
  CHECK(j["hidden_size"] == 64);
  CHECK_THROWS_WITH_AS(io::load_json(tmp.path / "config.json", 10), doctest::Contains("config.json: 37 bytes exceed"),
                       format_error);
  write_file(tmp.path / "deep.json", nest(200, "0", true));
  CHECK_THROWS_WITH_AS(io::load_json(tmp.path / "deep.json", 1 << 20), doctest::Contains("deep.json is not valid JSON: nesting"),
                       format_error);
  CHECK_THROWS_AS(io::load_json(tmp.path / "missing.json", 1 << 20), io_error);
}

TEST_CASE("safetensors: a zero extent before huge ones is a valid empty tensor (no overflow in views)") {
  // [0, 2^40, 2^40, 2^40] with 0 bytes: the reference reader accepts it; the view's strides used
  // to multiply 2^40 * 2^40 in index_t (UB, caught by UBSan).
  const std::string h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,1099511627776,1099511627776,1099511627776],"
                        "\"data_offsets\":[0,0]}}";
  const auto buf = file_of(h);
  for (int m = 0; m < 2; ++m) {
    const auto st = m == 0 ? io::safetensors::from_buffer(buf) : io::safetensors::from_buffer_copy(buf);
    const io::tensor_info& t = st.info("w");
    CHECK(t.size() == 0);
    const view<const float> v = st.get<float>("w");
    CHECK(v.rank() == 4);
    CHECK(v.size() == 0);
    CHECK(v.extent(3) == index_t(1) << 40);
    CHECK(v.contiguous());
    CHECK(v.span().empty());
    const array<float> a = st.load<float>("w");
    CHECK(a.size() == 0);
    CHECK(a.rank() == 4);
  }
  // A zero after an overflowing prefix is rejected as the reference does (it stops at the overflow).
  CHECK_MALFORMED(file_of("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,1099511627776,0],"
                          "\"data_offsets\":[0,0]}}"),
                  "has more than 2^63-1 elements");
}

TEST_CASE("sharded_safetensors: hostile index texts (deep nesting, from_index_text)") {
  temp_dir tmp;
  for (const char* s : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    fs::copy_file(fixtures / "sharded" / s, tmp.path / s);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::from_index_text("{\"metadata\":" + nest(100'000, "1", true) +
                                                                    ",\"weight_map\":{}}",
                                                                tmp.path),
                       doctest::Contains("index is not valid JSON: nesting reaches 128"), format_error);
  CHECK_THROWS_AS(io::sharded_safetensors::from_index_text("{\"weight_map\":{\"a\":" + nest(100'000, "\"x\"", false) + "}}",
                                                           tmp.path),
                  format_error);
  // Nesting under the limit in metadata is kept as compact JSON text; its message path stays short.
  const auto s = io::sharded_safetensors::from_index_text(
      "{\"metadata\":{\"m\":" + nest(100, "1", false) + "},\"weight_map\":{\"lm_head.weight\":"
      "\"model-00002-of-00002.safetensors\"}}", tmp.path);
  CHECK(s.metadata().at("m") == nest(100, "1", false));
  CHECK(s.size() == 1);
  CHECK_THROWS_WITH_AS(io::sharded_safetensors::from_index_text("{\"weight_map\":" + nest(120, "1", false) + "}", tmp.path),
                       doctest::Contains("\"weight_map\" is [[[["), format_error);
}
