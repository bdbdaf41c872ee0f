// SPDX-License-Identifier: MIT
// libFuzzer target for the sharded-checkpoint index reader
// (io::sharded_safetensors::from_index_text, the parser behind sharded_safetensors::open).
// The input is the text of a model.safetensors.index.json; the shards it may name are written once
// at start-up into a private temporary folder: a.safetensors (tensors "x", "y"),
// b.safetensors ("z", with metadata) and bad.safetensors (not a safetensors file). Every input must
// either open or throw a membound::error (io_error for a shard that does not exist); for inputs
// that open, every routed tensor must be reachable through its shard and agree with it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "membound/io/safetensors_index.hpp"

using namespace membound;
namespace fs = std::filesystem;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

fs::path shard_dir;

void write_shards() {
  shard_dir = fs::temp_directory_path() / ("membound_fuzz_index_" + std::to_string(::getpid()));
  fs::create_directories(shard_dir);
  const float xs[6] = {1, 2, 3, 4, 5, 6};
  const float ys[2] = {7, 8};
  const std::int32_t zs[3] = {1, -2, 3};
  io::safetensors_writer a;
  a.add("x", make_view(xs, {2, 3}));
  a.add("y", make_view(ys, {2}));
  a.write(shard_dir / "a.safetensors");
  io::safetensors_writer b;
  b.add("z", make_view(zs, {3}));
  b.set_metadata("format", "pt");
  b.write(shard_dir / "b.safetensors");
  std::ofstream(shard_dir / "bad.safetensors") << "not a safetensors file";
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  write_shards();
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(shard_dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const io::sharded_safetensors s = io::sharded_safetensors::from_index_text(text, shard_dir);
    check(s.size() == s.names().size());
    check(s.shards().size() == s.shard_paths().size());
    for (const std::string& name : s.names()) {
      check(s.contains(name));
      const io::tensor_info& t = s.info(name);
      check(t.name == name);
      const auto b = s.bytes(name);
      check(b.size() == t.nbytes());
      check(&s.shard_of(name).info(name) == &t);
      if (t.type == dtype::f32) check(s.get<float>(name).size() == t.size());
      (void)s.load<float>(name); // every shard tensor here converts to float
    }
  } catch (const membound::error&) {
  }
  return 0;
}
