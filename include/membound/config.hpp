// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Configuration macros: host/device annotations, inlining and the precondition macro
/// `MEMBOUND_EXPECTS`, which throws a typed `membound::error` (never aborts, never UB).

#include <sstream>
#include <string>

#include "membound/version.hpp"

#if defined(__CUDACC__)
#define MEMBOUND_HOST_DEVICE __host__ __device__
#else
#define MEMBOUND_HOST_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MEMBOUND_ALWAYS_INLINE inline __attribute__((always_inline))
#define MEMBOUND_NOINLINE __attribute__((noinline))
#define MEMBOUND_RESTRICT __restrict__
#define MEMBOUND_LIKELY(x) __builtin_expect(!!(x), 1)
#define MEMBOUND_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define MEMBOUND_ALWAYS_INLINE inline
#define MEMBOUND_NOINLINE
#define MEMBOUND_RESTRICT
#define MEMBOUND_LIKELY(x) (x)
#define MEMBOUND_UNLIKELY(x) (x)
#endif

#if defined(_OPENMP)
#define MEMBOUND_HAS_OPENMP 1
#else
#define MEMBOUND_HAS_OPENMP 0
#endif

/// Checks a precondition of a public entry point. On failure throws `ErrorType` (a child of
/// `membound::error`) whose message is built from the remaining stream-insertable arguments,
/// e.g. `MEMBOUND_EXPECTS(n == m, shape_error, "dot: x has ", n, " elements, y has ", m);`.
/// The condition is always evaluated (also in release builds): these guard user input.
#define MEMBOUND_EXPECTS(cond, ErrorType, ...)                                                 \
  do {                                                                                         \
    if (MEMBOUND_UNLIKELY(!(cond))) throw ErrorType(::membound::detail::concat(__VA_ARGS__)); \
  } while (0)

namespace membound {
inline namespace v0_1 {
namespace detail {
/// Joins stream-insertable values into one message string (used by MEMBOUND_EXPECTS).
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
} // namespace detail
} // namespace v0_1
} // namespace membound
