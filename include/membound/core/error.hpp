// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief The error hierarchy. Every public entry point reports bad input by throwing a child of
/// `membound::error` whose message names the offending value and what was expected.

#include <stdexcept>
#include <string>

#include "membound/config.hpp"

namespace membound {
inline namespace v0_1 {

/// Root of all membound exceptions; catch this to catch any of them.
class error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Extents, ranks or strides that do not fit together (e.g. `dot` of 7 and 8 elements).
class shape_error : public error {
public:
  using error::error;
};

/// A malformed file or buffer (safetensors header, JSON index, ...).
class format_error : public error {
public:
  using error::error;
};

/// An element type that the caller cannot use here (e.g. asking for `float` from an I64 tensor).
class dtype_error : public error {
public:
  using error::error;
};

/// A setting outside its documented range (k > n in top-k, eps < 0, unknown backend, ...).
class config_error : public error {
public:
  using error::error;
};

/// A memory budget that cannot be honoured (budget 0, pool exhausted, ...).
class budget_error : public error {
public:
  using error::error;
};

/// An index or name that does not exist (slice past the end, unknown tensor name).
class lookup_error : public error {
public:
  using error::error;
};

/// An operating-system level failure (open, stat, mmap) with the path and errno text.
class io_error : public error {
public:
  using error::error;
};

} // namespace v0_1
} // namespace membound
