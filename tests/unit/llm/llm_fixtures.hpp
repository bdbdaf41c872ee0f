// SPDX-License-Identifier: MIT
// Shared helpers of the llm/ tests: the fixture folder (tests/fixtures/llm, written by
// tools/make_llm_fixtures.py) and its int64 token tensors as int32 ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "membound/io/safetensors.hpp"

namespace llm_test {

inline const std::filesystem::path fixtures = std::filesystem::path(MEMBOUND_FIXTURES_DIR) / "llm";

/// An int64 tensor of reference.safetensors as int32 token ids.
inline std::vector<std::int32_t> ids(const membound::io::safetensors& ref, const char* name) {
  const membound::array<std::int64_t> a = ref.load<std::int64_t>(name);
  return std::vector<std::int32_t>(a.span().begin(), a.span().end());
}

/// The fixed prompt of a fixture model.
inline std::vector<std::int32_t> prompt_of(const char* model) {
  return ids(membound::io::safetensors::open(fixtures / model / "reference.safetensors"), "prompt");
}

} // namespace llm_test
