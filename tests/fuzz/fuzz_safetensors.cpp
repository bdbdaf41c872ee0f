// SPDX-License-Identifier: MIT
// libFuzzer target for the safetensors BUFFER reader (io::safetensors::from_buffer).
// Every input must either parse or throw a membound::error; anything else (a crash, a sanitizer
// report, another exception type such as std::bad_alloc or a leaked nlohmann exception) is a bug.
// For inputs that parse, it exercises every accessor and checks two properties:
//  - each tensor's byte range lies inside the input and the ranges tile the data section;
//  - rewriting the tensors with io::safetensors_writer and reading them back gives the same
//    names, dtypes, shapes, bytes and metadata (the writer accepts everything the reader accepts,
//    except the names it reserves).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "membound/io/safetensors.hpp"

using namespace membound;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

template <class T>
void touch(const io::safetensors& st, const io::tensor_info& t) {
  try {
    const view<const T> v = st.get<T>(t.name);
    check(v.size() == t.size());
    check(reinterpret_cast<std::uintptr_t>(v.data()) % alignof(T) == 0);
    if (v.size() > 0) check(std::memcmp(v.data(), st.bytes(t.name).data(), t.nbytes()) == 0);
    const array<T> a = st.load<T>(t.name);
    check(a.size() == t.size());
  } catch (const shape_error&) { // rank > max_rank
  } catch (const format_error&) { // BOOL byte other than 0/1
  }
}

void exercise(const io::safetensors& st, std::span<const std::byte> in) {
  std::size_t cursor = 0;
  for (const io::tensor_info& t : st.tensors()) {
    check(t.begin == cursor && t.end >= t.begin);
    cursor = t.end;
    const auto b = st.bytes(t.name);
    check(b.data() >= in.data() && b.data() + b.size() <= in.data() + in.size());
    check(&st.info(t.name) == &t);
    switch (t.type) {
    case dtype::f64: touch<double>(st, t); break;
    case dtype::f32: touch<float>(st, t); break;
    case dtype::f16: touch<f16>(st, t); break;
    case dtype::bf16: touch<bf16>(st, t); break;
    case dtype::i64: touch<std::int64_t>(st, t); break;
    case dtype::i32: touch<std::int32_t>(st, t); break;
    case dtype::i16: touch<std::int16_t>(st, t); break;
    case dtype::i8: touch<std::int8_t>(st, t); break;
    case dtype::u8: touch<std::uint8_t>(st, t); break;
    case dtype::boolean: touch<bool>(st, t); break;
    default: break;
    }
    try {
      (void)st.load<float>(t.name);
    } catch (const dtype_error&) {
    } catch (const shape_error&) {
    }
  }
  check(cursor == st.data_section().size());

  // Round trip through the writer.
  io::safetensors_writer w;
  for (const io::tensor_info& t : st.tensors()) {
    if (t.name.empty() || t.name.rfind("__", 0) == 0) return; // names the writer reserves
    w.add_raw(t.name, t.type, t.shape, st.bytes(t.name));
  }
  for (const auto& [k, v] : st.metadata()) {
    if (k.empty()) return;
    w.set_metadata(k, v);
  }
  const std::vector<std::byte> out = w.to_bytes();
  const io::safetensors back = io::safetensors::from_buffer(out);
  check(back.tensors().size() == st.tensors().size());
  check(back.metadata() == st.metadata());
  for (const io::tensor_info& t : st.tensors()) {
    const io::tensor_info& u = back.info(t.name);
    check(u.type == t.type && u.shape == t.shape && u.nbytes() == t.nbytes());
    if (t.nbytes()) check(std::memcmp(back.bytes(t.name).data(), st.bytes(t.name).data(), t.nbytes()) == 0);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  try {
    const io::safetensors st = io::safetensors::from_buffer(in);
    exercise(st, in);
  } catch (const membound::error&) {
  }
  return 0;
}
