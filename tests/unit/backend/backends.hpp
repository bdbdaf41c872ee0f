// SPDX-License-Identifier: MIT
// The CPU backends under test, shared by the backend test files: doctest names for each tag, the
// SIMD tags this build enables, and those plus the scalar twin.
#pragma once

#include <doctest/doctest.h>

#include <tuple>
#include <type_traits>

#include "membound/backend/tags.hpp"

#if MEMBOUND_HAS_SSE4
TYPE_TO_STRING_AS("sse4", membound::backend::sse4);
#endif
#if MEMBOUND_HAS_AVX2
TYPE_TO_STRING_AS("avx2", membound::backend::avx2);
#endif
#if MEMBOUND_HAS_AVX512
TYPE_TO_STRING_AS("avx512", membound::backend::avx512);
#endif
TYPE_TO_STRING_AS("scalar", membound::backend::scalar);

namespace membound::test {
/// The SIMD tags the compiler flags enable (possibly none).
using simd_tags = decltype(std::tuple_cat(
#if MEMBOUND_HAS_SSE4
    std::tuple<backend::sse4>{},
#endif
#if MEMBOUND_HAS_AVX2
    std::tuple<backend::avx2>{},
#endif
#if MEMBOUND_HAS_AVX512
    std::tuple<backend::avx512>{},
#endif
    std::tuple<>{}));
/// The scalar twin and every enabled SIMD tag.
using all_tags = decltype(std::tuple_cat(std::tuple<backend::scalar>{}, simd_tags{}));
} // namespace membound::test
