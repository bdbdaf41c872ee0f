// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief `kv::cache<T>`: the memory-bounded paged KV cache. One pool of fixed-size pages is
/// allocated at construction; every (sequence b, KV head g) owns an ordered list of pages (its
/// page table, vLLM's "block table"), so heads hold different numbers of tokens. A page holds
/// `page_tokens` tokens: their K rows, V rows, original positions (int32) and `state_slots`
/// floats of per-policy state each (accumulated attention, TRIM-KV's log beta, ...).
///
/// Shapes (DESIGN.md letters): B sequences, G KV heads, S tokens of one head (it differs between
/// heads), D head dim. Query heads (H) are the attention's business, not the cache's.
///
/// One budget across layers: make ONE cache whose "KV heads" span the layers (kv_heads =
/// layers x G, head index layer * G + g); its pool is then the model-wide budget, and a page a
/// head of layer 3 frees can be reused by a head of layer 17.
///
/// Memory guarantees: the pool (`pool_bytes()`) and all bookkeeping (page tables, free list:
/// 20 bytes per page plus 32 per head) are allocated in the constructor and never again (nor by
/// any other member but copy construction/assignment): appending past the pool throws
/// `budget_error` instead of growing it. Page memory is not zero-filled (the OS commits it on
/// first touch); slots are read only after they are written.
///
/// Not thread-safe for mutation, not even of distinct heads (the free list is shared);
/// concurrent reads are safe.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "membound/core/array.hpp"
#include "membound/core/dtype.hpp"
#include "membound/core/error.hpp"
#include "membound/core/view.hpp"

namespace membound {
inline namespace v0_1 {
namespace kv {

/// The shape of a cache and the size of its pool. An aggregate:
/// `kv::cache_config{.batch = 1, .kv_heads = 8, .head_dim = 128, .page_tokens = 64, .pages = 256}`.
struct cache_config {
  index_t batch = 1;       ///< B, sequences
  index_t kv_heads = 1;    ///< G, KV heads per sequence (layers x G for a model-wide budget)
  index_t head_dim = 128;  ///< D
  index_t page_tokens = 64; ///< tokens per page
  index_t pages = 0;       ///< total pages in the pool (size it with kv::pages_for); must be >= 1
  index_t state_slots = 1; ///< floats of per-policy state per token (0 allowed)
};

/// Pages one head needs to hold `tokens_per_head` tokens: ceil(tokens_per_head / page_tokens).
/// A pool for B G heads of n tokens each is `B * G * pages_for(n, page_tokens)` pages. O(1).
/// @throws config_error for tokens_per_head < 0 or page_tokens < 1.
inline index_t pages_for(index_t tokens_per_head, index_t page_tokens) {
  MEMBOUND_EXPECTS(page_tokens >= 1, config_error, "kv::pages_for: page_tokens = ", page_tokens, ", expected >= 1");
  MEMBOUND_EXPECTS(tokens_per_head >= 0, config_error, "kv::pages_for: tokens_per_head = ", tokens_per_head,
                   ", expected >= 0");
  return tokens_per_head / page_tokens + (tokens_per_head % page_tokens != 0 ? 1 : 0);
}

template <class T>
class cache;

namespace detail {
/// `To` with the constness of `From`.
template <class From, class To>
using copy_const_t = std::conditional_t<std::is_const_v<From>, const To, To>;

/// Byte offsets inside one page; every block starts on a 64-byte boundary.
struct page_layout {
  index_t page_tokens = 0, dim = 0, slots = 0;
  std::size_t stride = 0, keys = 0, values = 0, positions = 0, state = 0; // bytes
};
} // namespace detail

/// One page of one head, as `cache::pages` yields it. Rows [0, tokens) of each block are valid;
/// rows are contiguous and each block starts 64-byte aligned. `T` is the storage type, const for
/// a read-only walk.
template <class T>
struct page_span {
  T* keys;                                             ///< (page_tokens,D) row-major
  T* values;                                           ///< (page_tokens,D) row-major
  detail::copy_const_t<T, std::int32_t>* positions;    ///< (page_tokens) original positions
  detail::copy_const_t<T, float>* state;               ///< (page_tokens,state_slots) row-major
  index_t tokens;                                      ///< valid tokens in this page, 1..page_tokens
  index_t first;                                       ///< head index of this page's first token
};

/// The pages of one head in token order (a forward range of `page_span<T>`, O(1) per step).
/// It refers to the cache: an append, keep or clear invalidates it.
template <class T>
class page_range {
  using byte_t = detail::copy_const_t<T, std::byte>;

public:
  class iterator {
  public:
    using value_type = page_span<T>;
    using reference = page_span<T>;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;
    iterator() = default;
    page_span<T> operator*() const noexcept { return (*r_)[j_]; }
    iterator& operator++() noexcept { ++j_; return *this; }
    iterator operator++(int) noexcept { iterator t = *this; ++j_; return t; }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.j_ == b.j_ && a.r_ == b.r_; }

  private:
    friend class page_range;
    iterator(const page_range* r, index_t j) noexcept : r_(r), j_(j) {}
    const page_range* r_ = nullptr;
    index_t j_ = 0;
  };

  /// Number of pages (ceil(S / page_tokens)).
  index_t size() const noexcept { return static_cast<index_t>(ids_.size()); }
  bool empty() const noexcept { return ids_.empty(); }
  /// Page j of the head (unchecked; 0 <= j < size()).
  page_span<T> operator[](index_t j) const noexcept {
    byte_t* p = base_ + static_cast<std::size_t>(ids_[static_cast<std::size_t>(j)]) * lay_.stride;
    const index_t first = j * lay_.page_tokens;
    return {reinterpret_cast<T*>(p + lay_.keys), reinterpret_cast<T*>(p + lay_.values),
            reinterpret_cast<detail::copy_const_t<T, std::int32_t>*>(p + lay_.positions),
            reinterpret_cast<detail::copy_const_t<T, float>*>(p + lay_.state),
            std::min(lay_.page_tokens, tokens_ - first), first};
  }
  iterator begin() const noexcept { return {this, 0}; }
  iterator end() const noexcept { return {this, size()}; }

private:
  template <class>
  friend class cache;
  page_range(byte_t* base, std::span<const std::int32_t> ids, index_t tokens, const detail::page_layout& lay) noexcept
      : base_(base), ids_(ids), tokens_(tokens), lay_(lay) {}
  byte_t* base_;
  std::span<const std::int32_t> ids_;
  index_t tokens_;
  detail::page_layout lay_;
};

/// The paged, memory-bounded KV cache of B sequences x G KV heads (see the file comment).
/// @tparam T storage type of keys and values: `float` or `membound::bf16`. Inputs are float and
/// are rounded to T with `bf16::from_float` (nearest even) on append; readers get T.
template <class T>
class cache {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "kv::cache<T>: T must be float or bf16");

public:
  using value_type = T;

  /// Allocates the pool (cfg.pages pages) and all bookkeeping. O(pages + B G) plus the allocation.
  /// @throws config_error naming the field when batch, kv_heads, head_dim, page_tokens or pages
  /// is < 1, state_slots < 0, pages x page_tokens exceeds INT32_MAX (token indices are int32) or
  /// the pool's byte size overflows.
  explicit cache(const cache_config& cfg) : cfg_(cfg) {
    auto positive = [](index_t v, const char* field) {
      MEMBOUND_EXPECTS(v >= 1, config_error, "kv::cache_config: ", field, " = ", v, ", expected >= 1");
    };
    positive(cfg.batch, "batch");
    positive(cfg.kv_heads, "kv_heads");
    positive(cfg.head_dim, "head_dim");
    positive(cfg.page_tokens, "page_tokens");
    positive(cfg.pages, "pages");
    MEMBOUND_EXPECTS(cfg.state_slots >= 0, config_error, "kv::cache_config: state_slots = ", cfg.state_slots,
                     ", expected >= 0");
    constexpr index_t i32max = std::numeric_limits<std::int32_t>::max();
    MEMBOUND_EXPECTS(cfg.pages <= i32max / cfg.page_tokens, config_error, "kv::cache_config: pages = ", cfg.pages,
                     " x page_tokens = ", cfg.page_tokens, " exceeds ", i32max, " tokens (indices are int32)");
    MEMBOUND_EXPECTS(cfg.batch <= i32max / cfg.kv_heads, config_error, "kv::cache_config: batch = ", cfg.batch,
                     " x kv_heads = ", cfg.kv_heads, " heads is too many");
    MEMBOUND_EXPECTS(cfg.head_dim <= (i32max / 2) / cfg.page_tokens && cfg.state_slots <= i32max / cfg.page_tokens,
                     config_error, "kv::cache_config: head_dim = ", cfg.head_dim, ", state_slots = ",
                     cfg.state_slots, " with page_tokens = ", cfg.page_tokens, " make a page too large");
    auto round64 = [](std::size_t n) { return (n + 63) / 64 * 64; };
    const auto pt = static_cast<std::size_t>(cfg.page_tokens);
    lay_.page_tokens = cfg.page_tokens;
    lay_.dim = cfg.head_dim;
    lay_.slots = cfg.state_slots;
    const std::size_t kv_bytes = round64(pt * static_cast<std::size_t>(cfg.head_dim) * sizeof(T));
    lay_.keys = 0;
    lay_.values = kv_bytes;
    lay_.positions = 2 * kv_bytes;
    lay_.state = lay_.positions + round64(pt * sizeof(std::int32_t));
    lay_.stride = lay_.state + round64(pt * static_cast<std::size_t>(cfg.state_slots) * sizeof(float));
    MEMBOUND_EXPECTS(static_cast<std::size_t>(cfg.pages) <= (std::numeric_limits<std::size_t>::max() / 4) / lay_.stride,
                     config_error, "kv::cache_config: pages = ", cfg.pages, " of ", lay_.stride,
                     " bytes overflow the address space");
    pool_ = array<std::byte>({cfg.pages, static_cast<index_t>(lay_.stride)}, uninitialized); // (pages, page bytes)
    const auto p = static_cast<std::size_t>(cfg.pages);
    heads_.resize(static_cast<std::size_t>(cfg.batch * cfg.kv_heads)); // (B*G)
    table_.resize(2 * p); // (2 pages): the heads' page tables, segments with slack
    spare_.resize(2 * p); // (2 pages): target of compact()
    free_.resize(p);      // (pages): free-page stack
    reset_free();
  }

  // --- shape and footprint -------------------------------------------------------------------

  const cache_config& config() const noexcept { return cfg_; }
  index_t batch() const noexcept { return cfg_.batch; }
  index_t kv_heads() const noexcept { return cfg_.kv_heads; }
  index_t head_dim() const noexcept { return cfg_.head_dim; }
  index_t state_slots() const noexcept { return cfg_.state_slots; }
  index_t page_tokens() const noexcept { return cfg_.page_tokens; }
  index_t total_pages() const noexcept { return cfg_.pages; }
  /// Pages on the free list (owned by no head). free_pages() + used_pages() == total_pages().
  index_t free_pages() const noexcept { return nfree_; }
  index_t used_pages() const noexcept { return cfg_.pages - nfree_; }
  /// Bytes of one page: K block, V block, positions and state, each padded to 64 bytes.
  std::size_t page_bytes() const noexcept { return lay_.stride; }
  /// Exact bytes of the pool allocation: total_pages() x page_bytes().
  std::size_t pool_bytes() const noexcept { return pool_.bytes(); }
  /// Bytes of the pages heads own now: used_pages() x page_bytes() <= pool_bytes().
  std::size_t used_bytes() const noexcept { return static_cast<std::size_t>(used_pages()) * lay_.stride; }
  /// Tokens one pool can hold in all: total_pages() x page_tokens().
  index_t capacity_tokens() const noexcept { return cfg_.pages * cfg_.page_tokens; }
  /// Tokens held by all heads together. O(B G).
  index_t tokens() const noexcept {
    index_t n = 0;
    for (const auto& h : heads_) n += h.size;
    return n;
  }

  // --- per-head access (all O(1), checked) ---------------------------------------------------

  /// S of head (b, g). @throws lookup_error for b or g out of range.
  index_t size(index_t b, index_t g) const { return heads_[head(b, g, "size")].size; }

  /// Key row i of head (b, g): D elements of T. @throws lookup_error (b, g or i out of range).
  std::span<T> key(index_t b, index_t g, index_t i) { return {row(b, g, i, lay_.keys, "key"), dim()}; }
  std::span<const T> key(index_t b, index_t g, index_t i) const { return {row(b, g, i, lay_.keys, "key"), dim()}; }
  /// Value row i of head (b, g): D elements of T. @throws lookup_error.
  std::span<T> value(index_t b, index_t g, index_t i) { return {row(b, g, i, lay_.values, "value"), dim()}; }
  std::span<const T> value(index_t b, index_t g, index_t i) const {
    return {row(b, g, i, lay_.values, "value"), dim()};
  }
  /// Original position of token i of head (b, g). @throws lookup_error.
  std::int32_t position(index_t b, index_t g, index_t i) const {
    return *reinterpret_cast<const std::int32_t*>(slot(b, g, i, "position") + lay_.positions +
                                                  token_row(i) * sizeof(std::int32_t));
  }
  /// Policy state of token i of head (b, g): state_slots floats, writable. @throws lookup_error.
  std::span<float> state(index_t b, index_t g, index_t i) {
    return {reinterpret_cast<float*>(slot(b, g, i, "state") + state_offset(i)), slots()};
  }
  std::span<const float> state(index_t b, index_t g, index_t i) const {
    return {reinterpret_cast<const float*>(slot(b, g, i, "state") + state_offset(i)), slots()};
  }

  /// The pages of head (b, g) in token order, for streaming K and V page by page (attention)
  /// or updating state in place. Invalidated by append, keep and clear. @throws lookup_error.
  page_range<T> pages(index_t b, index_t g) {
    const auto& h = heads_[head(b, g, "pages")];
    return {pool_.data(), ids(h), h.size, lay_};
  }
  page_range<const T> pages(index_t b, index_t g) const {
    const auto& h = heads_[head(b, g, "pages")];
    return {pool_.data(), ids(h), h.size, lay_};
  }
  /// The page ids of head (b, g) in token order (its block table); page p starts at byte
  /// p x page_bytes() of the pool. Invalidated by append, keep and clear. @throws lookup_error.
  std::span<const std::int32_t> page_ids(index_t b, index_t g) const { return ids(heads_[head(b, g, "page_ids")]); }

  // --- mutation ------------------------------------------------------------------------------

  /// Appends one token to head (b, g): key and value (D floats each, rounded to T), its
  /// original position and its state (state_slots floats, or empty for zeros). Takes a page
  /// from the free list when the head's last page is full. O(D + state_slots), plus now and then
  /// an O(pages + B G) repacking of the page tables (never of page data); never allocates.
  /// Strong guarantee: on a throw nothing changed.
  /// @throws lookup_error for b or g out of range; shape_error for wrong span sizes;
  /// budget_error when a page is needed and the pool has none free.
  void append(index_t b, index_t g, std::span<const float> key, std::span<const float> value, std::int32_t position,
              std::span<const float> state = {}) {
    auto& h = heads_[head(b, g, "append")];
    check_row(key.size(), value.size(), state.size(), "append");
    if (h.size == h.npages * lay_.page_tokens) need_pages(h, 1, b, g, "append");
    write(h, key.data(), 1, value.data(), 1, position, state.empty() ? nullptr : state.data(), 1);
  }

  /// Appends N tokens to head (b, g) in order (a prefill): keys (N,D), values (N,D), positions
  /// (N), state (N,state_slots) or an empty view for zeros; views may be strided. All or nothing:
  /// the pages are checked before anything is written. O(N (D + state_slots)).
  /// @throws lookup_error, shape_error, budget_error (the pool cannot hold the N tokens).
  void append(index_t b, index_t g, view<const float> keys, view<const float> values,
              std::span<const std::int32_t> positions, view<const float> state = {}) {
    auto& h = heads_[head(b, g, "append")];
    MEMBOUND_EXPECTS(keys.rank() == 2 && values.rank() == 2 && keys.extent(1) == cfg_.head_dim &&
                         values.extent(1) == cfg_.head_dim && values.extent(0) == keys.extent(0) &&
                         static_cast<index_t>(positions.size()) == keys.extent(0),
                     shape_error, "kv::cache::append: keys and values must be (N,D) with D = ", cfg_.head_dim,
                     " and positions (N); got keys of rank ", keys.rank(), " (N = ", keys.extent(0), "), values (",
                     values.extent(0), ",", values.rank() == 2 ? values.extent(1) : -1, "), ", positions.size(),
                     " positions");
    const index_t n = keys.extent(0);
    const bool has_state = state.size() != 0;
    MEMBOUND_EXPECTS(!has_state || (state.rank() == 2 && state.extent(0) == n && state.extent(1) == cfg_.state_slots),
                     shape_error, "kv::cache::append: state must be (N,state_slots) = (", n, ",", cfg_.state_slots,
                     ") or empty");
    const index_t more = pages_for(h.size + n, lay_.page_tokens) - h.npages;
    if (more > 0) need_pages(h, more, b, g, "append");
    for (index_t t = 0; t < n; ++t)
      write(h, &keys(t, 0), keys.stride(1), &values(t, 0), values.stride(1), positions[static_cast<std::size_t>(t)],
            has_state ? &state(t, 0) : nullptr, has_state ? state.stride(1) : 1);
  }

  /// Keeps only tokens `kept` (ascending, unique indices into head (b, g)) and compacts the head
  /// in place: survivors move down to indices 0 .. |kept| - 1 in their order (K, V, position and
  /// state together); the now-unused tail pages go back to the free list. Tokens before the
  /// first evicted one do not move. O(|kept| (D + state_slots)) plus O(freed pages); never
  /// allocates. Strong guarantee: kept is validated before anything moves.
  /// @throws lookup_error for b, g or an index out of [0, S); config_error when kept is not
  /// strictly ascending (a duplicate or a step back), naming the position and value.
  void keep(index_t b, index_t g, std::span<const std::int32_t> kept) {
    auto& h = heads_[head(b, g, "keep")];
    for (std::size_t j = 0; j < kept.size(); ++j) {
      MEMBOUND_EXPECTS(kept[j] >= 0 && kept[j] < h.size, lookup_error, "kv::cache::keep: kept[", j, "] = ", kept[j],
                       " out of range [0, ", h.size, ") of head (b = ", b, ", g = ", g, ")");
      MEMBOUND_EXPECTS(j == 0 || kept[j] > kept[j - 1], config_error, "kv::cache::keep: kept[", j, "] = ", kept[j],
                       " after kept[", j - 1, "] = ", kept[j - 1], "; expected strictly ascending indices");
    }
    const auto row_kv = static_cast<std::size_t>(cfg_.head_dim) * sizeof(T);
    const auto row_state = static_cast<std::size_t>(cfg_.state_slots) * sizeof(float);
    for (std::size_t j = 0; j < kept.size(); ++j) {
      const auto src = static_cast<index_t>(kept[j]), dst = static_cast<index_t>(j);
      if (src == dst) continue;
      std::byte* s = page_of(h, src);
      std::byte* d = page_of(h, dst);
      const std::size_t rs = token_row(src), rd = token_row(dst);
      std::memcpy(d + lay_.keys + rd * row_kv, s + lay_.keys + rs * row_kv, row_kv);
      std::memcpy(d + lay_.values + rd * row_kv, s + lay_.values + rs * row_kv, row_kv);
      std::memcpy(d + lay_.positions + rd * sizeof(std::int32_t), s + lay_.positions + rs * sizeof(std::int32_t),
                  sizeof(std::int32_t));
      if (row_state) std::memcpy(d + lay_.state + rd * row_state, s + lay_.state + rs * row_state, row_state);
    }
    h.size = static_cast<index_t>(kept.size());
    release_tail(h, pages_for(h.size, lay_.page_tokens));
  }

  /// Empties head (b, g), returning all its pages to the free list. O(its pages).
  /// @throws lookup_error.
  void clear(index_t b, index_t g) {
    auto& h = heads_[head(b, g, "clear")];
    h.size = 0;
    release_tail(h, 0);
  }
  /// Empties every head; all pages become free. O(pages + B G).
  void clear() noexcept {
    for (auto& h : heads_) h = head_rec{};
    top_ = 0;
    reset_free();
  }

private:
  struct head_rec {
    index_t size = 0;   // tokens
    index_t npages = 0; // pages owned
    index_t off = 0;    // start of its page-table segment in table_
    index_t cap = 0;    // length of that segment
  };

  std::size_t dim() const noexcept { return static_cast<std::size_t>(cfg_.head_dim); }
  std::size_t slots() const noexcept { return static_cast<std::size_t>(cfg_.state_slots); }
  std::size_t token_row(index_t i) const noexcept { return static_cast<std::size_t>(i % lay_.page_tokens); }
  std::size_t state_offset(index_t i) const noexcept { return lay_.state + token_row(i) * slots() * sizeof(float); }

  std::size_t head(index_t b, index_t g, const char* who) const {
    MEMBOUND_EXPECTS(b >= 0 && b < cfg_.batch, lookup_error, "kv::cache::", who, ": sequence b = ", b,
                     " out of range [0, ", cfg_.batch, ")");
    MEMBOUND_EXPECTS(g >= 0 && g < cfg_.kv_heads, lookup_error, "kv::cache::", who, ": KV head g = ", g,
                     " out of range [0, ", cfg_.kv_heads, ")");
    return static_cast<std::size_t>(b * cfg_.kv_heads + g);
  }
  std::span<const std::int32_t> ids(const head_rec& h) const noexcept {
    return {table_.data() + h.off, static_cast<std::size_t>(h.npages)};
  }
  std::byte* page_of(const head_rec& h, index_t i) noexcept {
    const auto id = table_[static_cast<std::size_t>(h.off + i / lay_.page_tokens)];
    return pool_.data() + static_cast<std::size_t>(id) * lay_.stride;
  }
  const std::byte* page_of(const head_rec& h, index_t i) const noexcept {
    const auto id = table_[static_cast<std::size_t>(h.off + i / lay_.page_tokens)];
    return pool_.data() + static_cast<std::size_t>(id) * lay_.stride;
  }
  const std::byte* slot(index_t b, index_t g, index_t i, const char* who) const {
    const auto& h = heads_[head(b, g, who)];
    MEMBOUND_EXPECTS(i >= 0 && i < h.size, lookup_error, "kv::cache::", who, ": token i = ", i, " out of range [0, ",
                     h.size, ") of head (b = ", b, ", g = ", g, ")");
    return page_of(h, i);
  }
  std::byte* slot(index_t b, index_t g, index_t i, const char* who) {
    return const_cast<std::byte*>(std::as_const(*this).slot(b, g, i, who));
  }
  T* row(index_t b, index_t g, index_t i, std::size_t block, const char* who) {
    return reinterpret_cast<T*>(slot(b, g, i, who) + block + token_row(i) * dim() * sizeof(T));
  }
  const T* row(index_t b, index_t g, index_t i, std::size_t block, const char* who) const {
    return reinterpret_cast<const T*>(slot(b, g, i, who) + block + token_row(i) * dim() * sizeof(T));
  }

  void check_row(std::size_t k, std::size_t v, std::size_t s, const char* who) const {
    MEMBOUND_EXPECTS(k == dim() && v == dim(), shape_error, "kv::cache::", who, ": key has ", k, " and value ", v,
                     " elements, expected D = ", cfg_.head_dim);
    MEMBOUND_EXPECTS(s == 0 || s == slots(), shape_error, "kv::cache::", who, ": state has ", s,
                     " elements, expected state_slots = ", cfg_.state_slots, " or none");
  }
  // Throws unless `more` pages are free, so that a following write() cannot fail.
  void need_pages(const head_rec& h, index_t more, index_t b, index_t g, const char* who) const {
    MEMBOUND_EXPECTS(more <= nfree_, budget_error, "kv::cache::", who, ": pool of ", cfg_.pages, " pages (",
                     pool_bytes(), " bytes) has ", nfree_, " free, head (b = ", b, ", g = ", g, ") holding ", h.size,
                     " tokens needs ", more, " more");
  }

  static T to_storage(float x) noexcept {
    if constexpr (std::is_same_v<T, float>) return x;
    else return bf16::from_float(x);
  }
  // Writes token h.size (taking a page when needed; the caller checked there is one).
  void write(head_rec& h, const float* k, index_t ks, const float* v, index_t vs, std::int32_t pos, const float* st,
             index_t ss) noexcept {
    if (h.size == h.npages * lay_.page_tokens) push_page(h, free_[static_cast<std::size_t>(--nfree_)]);
    std::byte* p = page_of(h, h.size);
    const std::size_t r = token_row(h.size), d = dim(), ns = slots();
    T* kd = reinterpret_cast<T*>(p + lay_.keys) + r * d;
    T* vd = reinterpret_cast<T*>(p + lay_.values) + r * d;
    for (std::size_t e = 0; e < d; ++e) {
      kd[e] = to_storage(k[static_cast<index_t>(e) * ks]);
      vd[e] = to_storage(v[static_cast<index_t>(e) * vs]);
    }
    reinterpret_cast<std::int32_t*>(p + lay_.positions)[r] = pos;
    float* sd = reinterpret_cast<float*>(p + lay_.state) + r * ns;
    for (std::size_t e = 0; e < ns; ++e) sd[e] = st ? st[static_cast<index_t>(e) * ss] : 0.0f;
    ++h.size;
  }

  // --- page tables: one segment of table_ per head; a full segment moves to the top with twice
  // the room, and when the top is reached all segments are packed (into spare_) first. table_
  // holds 2 x pages entries and heads own < pages when they need one more, so a segment of up to
  // `pages` entries always fits after packing. Amortised O(1) per page taken.
  void push_page(head_rec& h, std::int32_t id) noexcept {
    if (h.npages == h.cap) {
      const index_t want = std::min(std::max<index_t>(2 * h.cap, 4), cfg_.pages);
      if (top_ + want > static_cast<index_t>(table_.size())) compact();
      std::copy_n(table_.data() + h.off, h.npages, table_.data() + top_);
      h.off = top_;
      h.cap = want;
      top_ += want;
    }
    table_[static_cast<std::size_t>(h.off + h.npages++)] = id;
  }
  void compact() noexcept {
    index_t at = 0;
    for (auto& h : heads_) {
      std::copy_n(table_.data() + h.off, h.npages, spare_.data() + at);
      h.off = at;
      h.cap = h.npages;
      at += h.npages;
    }
    table_.swap(spare_);
    top_ = at;
  }
  void release_tail(head_rec& h, index_t keep_pages) noexcept {
    while (h.npages > keep_pages) free_[static_cast<std::size_t>(nfree_++)] = table_[static_cast<std::size_t>(h.off + --h.npages)];
  }
  void reset_free() noexcept {
    nfree_ = cfg_.pages; // page 0 is taken first
    for (index_t i = 0; i < cfg_.pages; ++i) free_[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(cfg_.pages - 1 - i);
  }

  cache_config cfg_;
  detail::page_layout lay_;
  array<std::byte> pool_;          // (pages, page bytes)
  std::vector<head_rec> heads_;    // (B*G)
  std::vector<std::int32_t> table_, spare_; // (2 pages) each
  std::vector<std::int32_t> free_; // (pages), stack of free page ids; [0, nfree_) valid
  index_t nfree_ = 0, top_ = 0;
};

static_assert(std::ranges::forward_range<page_range<float>> && std::ranges::forward_range<page_range<const bf16>>);

} // namespace kv
} // namespace v0_1
} // namespace membound
