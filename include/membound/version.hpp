// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Version of the membound headers (semantic versioning) and the ABI namespace tag.

#define MEMBOUND_VERSION_MAJOR 0
#define MEMBOUND_VERSION_MINOR 1
#define MEMBOUND_VERSION_PATCH 0
/// Single integer for `#if` comparisons: major * 10000 + minor * 100 + patch.
#define MEMBOUND_VERSION (MEMBOUND_VERSION_MAJOR * 10000 + MEMBOUND_VERSION_MINOR * 100 + MEMBOUND_VERSION_PATCH)
#define MEMBOUND_VERSION_STRING "0.1.0"

namespace membound {
inline namespace v0_1 {
/// The version as a string, for logs and benchmark contexts.
inline constexpr const char* version_string = MEMBOUND_VERSION_STRING;
} // namespace v0_1
} // namespace membound
