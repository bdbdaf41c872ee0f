// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `io::detail::mapped_file`: the read-only bytes of a file, memory-mapped (POSIX `mmap`)
/// or read into a 64-byte aligned buffer (the fallback, and the only mode where `mmap` is not
/// available), or a 64-byte aligned copy of a caller's buffer. RAII: the mapping or buffer is
/// released by the destructor. Opening is O(1) when mapped and O(file size) when read.
/// Private to `membound/io`; users include `membound/io/safetensors.hpp`.

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#if __has_include(<sys/mman.h>) && __has_include(<unistd.h>) && __has_include(<fcntl.h>)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define MEMBOUND_IO_HAS_MMAP 1
#else
#define MEMBOUND_IO_HAS_MMAP 0
#endif

#include "membound/config.hpp"
#include "membound/core/array.hpp"
#include "membound/core/error.hpp"

namespace membound {
inline namespace v0_1 {
namespace io {

/// How a file reader gets at the bytes of a file.
enum class load_mode : std::uint8_t {
  mmap, ///< map the file read-only (falls back to `read` where mapping fails or is unavailable)
  read  ///< read the whole file into a 64-byte aligned heap buffer
};

namespace detail {

/// `path: what: strerror(err)` for io_error messages.
inline std::string os_message(const std::filesystem::path& path, const char* what, int err) {
  return ::membound::detail::concat(path.string(), ": ", what, ": ", std::strerror(err));
}

/// Read-only bytes of a file (mapped or read) or an owned copy of a buffer. Move-only.
/// The address of `bytes()` is stable for the object's lifetime, moves included.
/// A mapped file must not be truncated by another process while mapped (reads past the new end
/// raise SIGBUS, as with every mmap reader).
class mapped_file {
public:
  mapped_file() noexcept = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    mapped_file tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~mapped_file() { unmap(); }

  /// Opens `path` read-only and maps it (or reads it, see `load_mode`).
  /// @throws io_error naming the path and the OS reason (missing file, permission, a directory or
  ///   other non-regular file, a failed read). Complexity: O(1) mapped, O(file size) read.
  static mapped_file open(const std::filesystem::path& path, load_mode mode = load_mode::mmap) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec) throw io_error(os_message(path, "cannot open", ec.value()));
    if (!std::filesystem::is_regular_file(status))
      throw io_error(::membound::detail::concat(path.string(), ": cannot open: not a regular file"));
#if MEMBOUND_IO_HAS_MMAP
    if (mode == load_mode::mmap) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw io_error(os_message(path, "cannot open", errno));
      struct ::stat st {};
      if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw io_error(os_message(path, "cannot stat", err));
      }
      const auto size = static_cast<std::size_t>(st.st_size);
      if (S_ISREG(st.st_mode) && size > 0) {
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd); // the mapping keeps its own reference to the file
        if (p != MAP_FAILED) {
          mapped_file f;
          f.map_ = p;
          f.map_size_ = size;
          return f;
        }
        // fall through to the read path (e.g. a file system without mmap support)
      } else {
        ::close(fd);
      }
    }
#endif
    return read_all(path);
  }

  /// An owned, 64-byte aligned copy of `src`. Complexity: O(src.size()).
  static mapped_file copy_of(std::span<const std::byte> src) {
    mapped_file f;
    f.buf_ = array<std::uint8_t>({static_cast<index_t>(src.size())}, uninitialized);
    if (!src.empty()) std::memcpy(f.buf_.data(), src.data(), src.size());
    return f;
  }

  /// The bytes (empty for an empty file).
  std::span<const std::byte> bytes() const noexcept {
    if (map_) return {static_cast<const std::byte*>(map_), map_size_};
    return {reinterpret_cast<const std::byte*>(buf_.data()), buf_.bytes()};
  }
  /// True when the bytes are a memory mapping (false for a read buffer or a copy).
  bool mapped() const noexcept { return map_ != nullptr; }

  void swap(mapped_file& o) noexcept {
    std::swap(map_, o.map_);
    std::swap(map_size_, o.map_size_);
    buf_.swap(o.buf_);
  }

private:
  static mapped_file read_all(const std::filesystem::path& path) {
    std::error_code ec;
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw io_error(os_message(path, "cannot stat", ec.value()));
    std::FILE* fp = std::fopen(path.string().c_str(), "rb");
    if (!fp) throw io_error(os_message(path, "cannot open", errno));
    mapped_file f;
    try {
      f.buf_ = array<std::uint8_t>({static_cast<index_t>(size)}, uninitialized);
    } catch (...) {
      std::fclose(fp);
      throw;
    }
    const std::size_t got = size ? std::fread(f.buf_.data(), 1, static_cast<std::size_t>(size), fp) : 0;
    const int err = std::ferror(fp) ? errno : 0;
    const bool more = std::fgetc(fp) != EOF; // the file grew since it was sized
    std::fclose(fp);
    if (err) throw io_error(os_message(path, "read failed", err));
    if (got != size || more)
      throw io_error(::membound::detail::concat(path.string(), ": read failed: file changed size while reading (expected ",
                                                size, " bytes)"));
    return f;
  }
  void unmap() noexcept {
#if MEMBOUND_IO_HAS_MMAP
    if (map_) ::munmap(map_, map_size_);
#endif
    map_ = nullptr;
    map_size_ = 0;
  }

  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  array<std::uint8_t> buf_; // read buffer or copy (64-byte aligned)
};

} // namespace detail
} // namespace io
} // namespace v0_1
} // namespace membound
