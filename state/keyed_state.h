// KeyedState<V>: one operator's state for one task (input partition), held in
// memory as a write-back cache over RocksDB. Operators hold it as a handle
// and see only Find/Upsert/Erase/ForEach (and EraseIf, Prefetch); the change
// capture and restore (TakeChanges, Load) are reachable only through the
// StateTable view (KeyedTable<V>) that the StateRegistry hands to the state
// backend, which persists the dirty entries and erasures at each checkpoint
// (StateBackend::BeginCommit) and reloads them on restore. All calls are
// inline and non-virtual; only the backend's per-table calls are virtual. Keys are the operator's own keys; the backend
// prefixes them with the partition. Not thread-safe: owned by one task's
// thread.
//
// Layout (the hot path of every stateful operator): entries live in a slab of
// slots that never move (geometrically growing chunks, so a slot's address is
// fixed from insertion to erasure), each holding the key's hash, the key
// inline when it has at most kInlineKeyBytes bytes (txn ids, "<user>|<start>"
// window keys) or on the heap otherwise, the value and its position in the
// dirty set. An absl::flat_hash_set of slot numbers, each with 32 more bits
// of its key's hash (SwissTable: SIMD probing of one control byte per slot),
// finds a key's slot; lookups take a
// std::string_view and never build a std::string. The dirty set is a bitmap
// over the slot numbers (one bit a slot), so marking an entry dirty or clean
// touches one word that stays in L1 beside a task's table, never another
// slot; the checkpoint capture is O(dirty entries + slots / 64).
#pragma once

#include <absl/container/flat_hash_set.h>
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>
#include <absl/hash/hash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/status.h"

namespace kappa {

// A growable byte buffer that neither zero-fills nor shrinks: cleared and
// refilled checkpoint after checkpoint, it keeps its (already faulted-in)
// memory.
class ByteBuffer {
 public:
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  // Grows by n bytes (uninitialised) and returns where they start.
  char* Extend(size_t n) {
    if (n > capacity_ - size_) Grow(size_ + n);
    char* p = data_.get() + size_;
    size_ += n;
    return p;
  }
  // Ensures capacity for n bytes and touches every page of it, so that
  // filling it later takes no page faults. Keeps the contents.
  void Prefault(size_t n) {
    if (n <= capacity_) return;
    Grow(n);
    std::memset(data_.get() + size_, 0, capacity_ - size_);
  }
  void swap(ByteBuffer& o) noexcept {
    data_.swap(o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

 private:
  void Grow(size_t need) {
    size_t cap = std::max<size_t>({need, capacity_ * 2, 256});
    auto fresh = std::make_unique_for_overwrite<char[]>(cap);
    if (size_ > 0) std::memcpy(fresh.get(), data_.get(), size_);
    data_ = std::move(fresh);
    capacity_ = cap;
  }
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// One table's changes since the previous capture, copied out of the table
// (StateTable::TakeChanges) so that the table can be changed again at once
// while these bytes are written elsewhere. Immutable once captured.
struct TableChanges {
  size_t value_size = 0;
  size_t erased_count = 0;
  size_t put_count = 0;
  ByteBuffer erased;  // per erased key: uint32_t length, key bytes
  ByteBuffer puts;    // per dirty entry: uint32_t key length, key bytes, value_size value bytes

  void clear() {
    erased_count = put_count = 0;
    erased.clear();
    puts.clear();
  }
  // fn(std::string_view key), in erasure order; keys may repeat.
  template <typename F>
  void ForEachErased(F&& fn) const {
    const char* p = erased.data();
    for (size_t i = 0; i < erased_count; ++i) {
      uint32_t n;
      std::memcpy(&n, p, sizeof(n));
      fn(std::string_view(p + sizeof(n), n));
      p += sizeof(n) + n;
    }
  }
  // fn(std::string_view key, std::string_view value), unordered.
  template <typename F>
  void ForEachPut(F&& fn) const {
    const char* p = puts.data();
    for (size_t i = 0; i < put_count; ++i) {
      uint32_t n;
      std::memcpy(&n, p, sizeof(n));
      fn(std::string_view(p + sizeof(n), n), std::string_view(p + sizeof(n) + n, value_size));
      p += sizeof(n) + n + value_size;
    }
  }
};

// Type-erased view the state backend uses to persist and restore a table.
// Only the backend (and tests) reach it: StateRegistry::tables() is private.
class StateTable {
 public:
  explicit StateTable(std::string name) : name_(std::move(name)) {}
  virtual ~StateTable() = default;
  // Column family name; one per stateful operator kind.
  const std::string& name() const { return name_; }
  // Entries changed since the last ClearDirty(), as raw value bytes.
  virtual void ForEachDirty(const std::function<void(std::string_view key, std::string_view value)>& fn) const = 0;
  // Keys erased since the last ClearDirty() that the store may hold (loaded,
  // or handed to an earlier checkpoint); an entry inserted and erased between
  // two checkpoints is not listed. The backend applies these
  // deletions before the dirty puts of the same commit.
  virtual void ForEachErased(const std::function<void(std::string_view key)>& fn) const = 0;
  virtual size_t DirtyCount() const = 0;
  // The bytes the next TakeChanges would copy into TableChanges::puts.
  virtual size_t DirtyBytes() const = 0;
  virtual void ClearDirty() = 0;
  // The checkpoint capture: replaces *out (whose buffers are reused) with
  // the erased keys and a copy of every dirty entry, then clears the dirty
  // set as ClearDirty() does. O(dirty + erased), one memcpy per entry.
  virtual void TakeChanges(TableChanges* out) = 0;
  // Restore one stored entry; Corruption if the value has the wrong size.
  virtual Status Load(std::string_view key, std::string_view value) = 0;
  virtual size_t size() const = 0;
  // An expiring table (StateRegistry::RegisterExpiring):
  // each value starts with the int64_t event time its entry's TTL counts
  // from, and the entry is expired once the task's watermark passes that
  // time + expiry_ttl_ms(). 0: the table does not expire.
  virtual int64_t expiry_ttl_ms() const = 0;
  // Whether ExpireIf forgets entries without recording their erasure (only
  // an expiring table, and only after ForgetExpiredEntries): the
  // store then drops them by itself (StateBackend's compaction filter,
  // against the watermark of the partition's last durable checkpoint).
  virtual bool forgets_expired() const = 0;

 private:
  friend class StateRegistry;
  // StateRegistry::ForgetExpiredEntries; nothing for a table without expiry.
  virtual void ForgetExpired() = 0;

  std::string name_;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

namespace state_internal {

inline constexpr size_t kInlineKeyBytes = 24;
inline constexpr uint32_t kFreeSlot = std::numeric_limits<uint32_t>::max();  // Slot::key_size
inline constexpr uint32_t kFirstChunkShift = 4;                              // 16 slots
inline constexpr size_t kMaxChunks = 28;  // 16 * (2^28 - 1) slots: the uint32_t slot numbers

// The top bit of a slot's stored hash says whether the entry exists in
// RocksDB (loaded, or handed to a checkpoint): only then does erasing it
// need a Delete. Key hashes never have it set.
inline constexpr size_t kStoredBit = size_t{1} << 63;
// XXH3 (libxxhash, inlined): this build's absl::Hash of a string calls
// std::_Hash_bytes out of line, which profiled at ~5% of a replay.
inline size_t HashKey(std::string_view key) { return XXH3_64bits(key.data(), key.size()) & ~kStoredBit; }

// A lookup key with its hash computed once (absl's table and our slots use
// the same value).
struct HashedKey {
  std::string_view key;
  size_t hash;
};

}  // namespace state_internal

// V must be trivially copyable: it is stored as its raw bytes (little-endian
// x86-64 layout; a state directory is not portable across architectures).
//
// Pointer stability: an entry's value (the V& from Upsert, the const V* from
// Find) and its key (the string_view ForEach/EraseIf pass) stay where they
// are until that entry is erased, whatever else is inserted or erased.
template <typename V>
class KeyedTable;

template <typename V>
class KeyedState final {
  static_assert(std::is_trivially_copyable_v<V>, "state values are stored as raw bytes");
  using HashedKey = state_internal::HashedKey;

 public:
  static constexpr size_t kInlineKeyBytes = state_internal::kInlineKeyBytes;

  explicit KeyedState(std::string name) : name_(std::move(name)), index_(0, SlotHash{this}, SlotEq{this}) {}
  ~KeyedState() {
    ForEachSlot([](uint32_t, Slot& s) { FreeKey(s); });
    for (size_t c = 0; c < kMaxChunks; ++c) {
      if (chunks_[c]) ::operator delete(chunks_[c], std::align_val_t{alignof(Slot)});
    }
  }
  KeyedState(const KeyedState&) = delete;
  KeyedState& operator=(const KeyedState&) = delete;

  // Starts loading the memory a lookup of `key` will touch (a hint; no
  // effect on contents). Operators call it a few records ahead, so that the
  // cache misses of a large table overlap instead of following each other.
  void Prefetch(std::string_view key) const { Prefetch(key, HashOf(key)); }
  // The same with the key's hash computed once (HashOf) for the prefetch
  // and the Upsert that follows.
  static size_t HashOf(std::string_view key) { return state_internal::HashKey(key); }
  void Prefetch(std::string_view key, size_t hash) const { index_.prefetch(HashedKey{key, hash}); }
  // The value for key, or nullptr. Does not mark it dirty.
  const V* Find(std::string_view key) const {
    auto it = index_.find(HashedKey{key, state_internal::HashKey(key)});
    return it == index_.end() ? nullptr : &At(SlotOf(*it)).value;
  }
  // The value for key, inserting `initial` if absent; marks it dirty.
  // *inserted (if given) says whether it was absent.
  V& Upsert(std::string_view key, const V& initial, bool* inserted = nullptr) {
    return Upsert(key, HashOf(key), initial, inserted);
  }
  // Upsert with `hash` == HashOf(key).
  V& Upsert(std::string_view key, size_t hash, const V& initial, bool* inserted = nullptr) {
    const HashedKey hk{key, hash};
    bool is_new = false;
    auto it = index_.lazy_emplace(hk, [&](const auto& construct) {
      is_new = true;
      construct(Element(NewSlot(hk, initial), hk.hash));
    });
    const uint32_t i = SlotOf(*it);
    Slot& s = At(i);
    if (!IsDirty(i)) MarkDirty(i, s);
    if (inserted) *inserted = is_new;
    return s.value;
  }
  void Erase(std::string_view key) {
    auto it = index_.find(HashedKey{key, state_internal::HashKey(key)});
    if (it == index_.end()) return;
    const uint32_t i = SlotOf(*it);
    index_.erase(it);
    Release(i);
  }
  // fn(std::string_view key, const V& value) for every entry, unordered.
  template <typename F>
  void ForEach(F&& fn) const {
    const_cast<KeyedState*>(this)->ForEachSlot([&](uint32_t, Slot& s) { fn(s.key(), s.value); });
  }
  // Erases every entry for which pred(key, value) is true.
  template <typename F>
  size_t EraseIf(F&& pred) {
    return EraseWhere(pred, /*record=*/true);
  }
  // The same for entries pred finds EXPIRED under the table's TTL rule
  // (StateTable::expiry_ttl_ms): where the registry lets expired entries
  // be forgotten, their erasures are not recorded, so no checkpoint writes
  // a delete for them; a stored copy left behind reads as expired to
  // whoever loads it, and the store drops it at its next compaction.
  template <typename F>
  size_t ExpireIf(F&& pred) {
    return EraseWhere(pred, /*record=*/!forget_expired_);
  }

  size_t size() const { return index_.size(); }
  const std::string& name() const { return name_; }
  int64_t expiry_ttl_ms() const { return expiry_ttl_ms_; }

 private:
  // Two passes: a sequential scan picks the victims (slot number and hash),
  // then their index entries are erased by slot number, looking a few ahead,
  // so the random probes of a large table overlap and never load a slot (a
  // replay's dedup purge erases most of its entries).
  //
  // A table purged in bulk keeps its index under half full (kPurgedSpread):
  // absl leaves a tombstone for an erasure wherever the probe group had been
  // full, and once tombstones use up the growth left it rehashes the table
  // in place (drop_deletes_without_resize: 0.9% of the archive replay's
  // worker, and its inserts took 2.3% against 1.6% now). Under half full,
  // most erasures find a group that never filled and leave an empty slot.
  // The index (9 bytes per capacity slot) then takes two to three times
  // what absl's own load gives, some 10-40% more memory per entry with its
  // slot (48 bytes and more); the replay's peak RSS did not move beyond
  // its noise.
  static constexpr size_t kPurgedSpread = 2;
  template <typename F>
  size_t EraseWhere(F& pred, bool record) {
    if (index_.capacity() < kPurgedSpread * index_.size()) index_.reserve(kPurgedSpread * index_.size());
    victims_.clear();
    ForEachSlot([&](uint32_t i, Slot& s) {
      if (pred(s.key(), static_cast<const V&>(s.value))) {
        victims_.push_back(SlotKey{i, s.key_hash()});
      }
    });
    constexpr size_t kAhead = 8;
    const size_t n = victims_.size();
    for (size_t j = 0; j < std::min(kAhead, n); ++j) index_.prefetch(victims_[j]);
    for (size_t j = 0; j < n; ++j) {
      if (j + kAhead < n) index_.prefetch(victims_[j + kAhead]);
      index_.erase(victims_[j]);
      Release(victims_[j].slot, record);
    }
    return n;
  }

  // The change capture and restore: for KeyedTable (the backend's view) only.
  friend class KeyedTable<V>;
  friend struct StateRegistryTestAccess;  // tests/state/state_test_access.h
  void ForEachDirty(const std::function<void(std::string_view, std::string_view)>& fn) const {
    ForEachDirtySlot([&](uint32_t i) {
      const Slot& s = At(i);
      fn(s.key(), std::string_view(reinterpret_cast<const char*>(&s.value), sizeof(V)));
    });
  }
  void ForEachErased(const std::function<void(std::string_view)>& fn) const {
    erased_.ForEachErased(fn);
  }
  size_t DirtyCount() const { return dirty_count_; }
  size_t DirtyBytes() const { return dirty_count_ * (sizeof(uint32_t) + sizeof(V)) + dirty_key_bytes_; }
  void ClearDirty() {
    ForEachDirtySlot([&](uint32_t i) { At(i).hash |= state_internal::kStoredBit; });
    ClearDirtyBits();
    erased_.clear();
  }
  void TakeChanges(TableChanges* out) {
    out->clear();
    out->value_size = sizeof(V);
    // The erasures change hands whole; the table keeps out's old buffer.
    out->erased.swap(erased_.erased);
    out->erased_count = erased_.erased_count;
    erased_.clear();
    // One exact-size reservation, then per entry one copy of length, key
    // and value, in slot order (ascending addresses within each chunk).
    const size_t n = dirty_count_;
    char* p = out->puts.Extend(DirtyBytes());
    ForEachDirtySlot([&](uint32_t i) {
      Slot& s = At(i);
      const uint32_t len = s.key_size;
      std::memcpy(p, &len, sizeof(len));
      std::memcpy(p + sizeof(len), s.key_data(), len);
      std::memcpy(p + sizeof(len) + len, &s.value, sizeof(V));
      p += sizeof(len) + len + sizeof(V);
      s.hash |= state_internal::kStoredBit;
    });
    out->put_count = n;
    ClearDirtyBits();
  }
  Status Load(std::string_view key, std::string_view value) {
    if (value.size() != sizeof(V)) {
      return Status::Corruption("state table '" + name() + "': stored value has " +
                                std::to_string(value.size()) + " bytes, expected " +
                                std::to_string(sizeof(V)));
    }
    V v;
    std::memcpy(&v, value.data(), sizeof(V));
    const HashedKey hk{key, state_internal::HashKey(key)};
    auto it = index_.lazy_emplace(hk, [&](const auto& construct) { construct(Element(NewSlot(hk, v), hk.hash)); });
    const uint32_t i = SlotOf(*it);
    Slot& s = At(i);
    s.value = v;  // insert or assign; a loaded entry is clean
    s.hash |= state_internal::kStoredBit;
    if (IsDirty(i)) Undirty(i, s);
    return Status::OK();
  }

  struct Slot {
    size_t hash;
    uint32_t key_size;  // kFreeSlot: unused
    union {
      char inline_key[kInlineKeyBytes];
      char* heap_key;
    } k;
    V value;

    const char* key_data() const { return key_size <= kInlineKeyBytes ? k.inline_key : k.heap_key; }
    std::string_view key() const { return std::string_view(key_data(), key_size); }
    // The key's hash (HashKey), without the stored bit.
    size_t key_hash() const { return hash & ~state_internal::kStoredBit; }
  };
  static constexpr size_t kMaxChunks = state_internal::kMaxChunks;
  static constexpr uint32_t kShift = state_internal::kFirstChunkShift;

  // Chunk c holds 2^(c + kShift) slots, numbered from 2^kShift * (2^c - 1).
  static size_t ChunkOf(uint32_t i) { return std::bit_width((i >> kShift) + 1) - 1; }
  static uint32_t ChunkStart(size_t c) { return ((uint32_t{1} << c) - 1) << kShift; }
  Slot& At(uint32_t i) const {
    const size_t c = ChunkOf(i);
    return chunks_[c][i - ChunkStart(c)];
  }

  // absl's table holds one 64-bit element per entry: the slot number in the
  // low half and the key hash's top 32 bits in the high half. absl places
  // and filters by the hash's low bits (position and a 7-bit tag), so about
  // one probe in ten meets a tag that matches by chance; the stored bits
  // reject nearly all of those without loading the slot, which in a large
  // table (a replay's dedup set) is a cache miss.
  using Elem = uint64_t;
  static Elem Element(uint32_t slot, size_t hash) { return (hash >> 32 << 32) | slot; }
  static uint32_t SlotOf(Elem e) { return static_cast<uint32_t>(e); }
  static bool SameHigh(Elem e, size_t hash) { return (e >> 32) == (hash >> 32); }
  // An entry known by its slot number and hash (EraseIf): found without
  // loading the slot.
  struct SlotKey {
    uint32_t slot;
    size_t hash;
  };
  // The hash and equality absl's table sees, with lookups by HashedKey or
  // SlotKey (heterogeneous lookup, no key is ever built).
  struct SlotHash {
    using is_transparent = void;
    const KeyedState* table;
    size_t operator()(Elem e) const { return table->At(SlotOf(e)).key_hash(); }
    size_t operator()(const HashedKey& k) const { return k.hash; }
    size_t operator()(const SlotKey& k) const { return k.hash; }
  };
  struct SlotEq {
    using is_transparent = void;
    const KeyedState* table;
    bool operator()(Elem a, Elem b) const { return a == b; }
    bool operator()(Elem e, const HashedKey& k) const { return SameHigh(e, k.hash) && Matches(table->At(SlotOf(e)), k); }
    bool operator()(const HashedKey& k, Elem e) const { return (*this)(e, k); }
    bool operator()(Elem e, const SlotKey& k) const { return SlotOf(e) == k.slot; }
    bool operator()(const SlotKey& k, Elem e) const { return (*this)(e, k); }
    static bool Matches(const Slot& s, const HashedKey& k) {
      return s.key_hash() == k.hash && s.key_size == k.key.size() &&
             (k.key.empty() || std::memcmp(s.key_data(), k.key.data(), k.key.size()) == 0);
    }
  };

  static void FreeKey(Slot& s) {
    if (s.key_size > kInlineKeyBytes) delete[] s.k.heap_key;
  }
  template <typename F>
  void ForEachSlot(F&& fn) {
    for (size_t c = 0; c < kMaxChunks && ChunkStart(c) < next_slot_; ++c) {
      const uint32_t start = ChunkStart(c);
      const uint32_t end = std::min(next_slot_, ChunkStart(c + 1));
      Slot* chunk = chunks_[c];
      for (uint32_t i = start; i < end; ++i) {
        Slot& s = chunk[i - start];
        if (s.key_size != state_internal::kFreeSlot) fn(i, s);
      }
    }
  }
  uint32_t NewSlot(const HashedKey& hk, const V& initial) {
    uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      i = next_slot_++;
      const size_t c = ChunkOf(i);
      if (chunks_[c] == nullptr) {
        const size_t n = size_t{1} << (c + kShift);
        chunks_[c] = static_cast<Slot*>(::operator new(n * sizeof(Slot), std::align_val_t{alignof(Slot)}));
        const size_t words = (size_t{ChunkStart(c + 1)} + 63) / 64;  // dirty bits for every slot so far
        if (dirty_bits_.size() < words) dirty_bits_.resize(words, 0);
      }
    }
    Slot* s = new (&At(i)) Slot{hk.hash, static_cast<uint32_t>(hk.key.size()), {}, initial};
    char* dst = s->k.inline_key;
    if (hk.key.size() > kInlineKeyBytes) dst = s->k.heap_key = new char[hk.key.size()];
    if (!hk.key.empty()) std::memcpy(dst, hk.key.data(), hk.key.size());
    return i;
  }
  bool IsDirty(uint32_t i) const { return (dirty_bits_[i >> 6] >> (i & 63)) & 1; }
  void MarkDirty(uint32_t i, const Slot& s) {
    dirty_bits_[i >> 6] |= uint64_t{1} << (i & 63);
    ++dirty_count_;
    dirty_key_bytes_ += s.key_size;
  }
  void Undirty(uint32_t i, const Slot& s) {
    dirty_bits_[i >> 6] &= ~(uint64_t{1} << (i & 63));
    --dirty_count_;
    dirty_key_bytes_ -= s.key_size;
  }
  // fn(uint32_t slot) for every dirty slot, in slot order; fn must not
  // change the dirty set.
  template <typename F>
  void ForEachDirtySlot(F&& fn) const {
    if (dirty_count_ == 0) return;
    for (size_t w = 0; w < dirty_bits_.size(); ++w) {
      for (uint64_t bits = dirty_bits_[w]; bits != 0; bits &= bits - 1) {
        fn(static_cast<uint32_t>(w * 64 + std::countr_zero(bits)));
      }
    }
  }
  void ClearDirtyBits() {
    if (dirty_count_ > 0) std::fill(dirty_bits_.begin(), dirty_bits_.end(), 0);
    dirty_count_ = 0;
    dirty_key_bytes_ = 0;
  }
  // Frees slot i (already out of index_), recording its key as erased if
  // RocksDB has it (and `record`). An entry born and erased between two
  // checkpoints (most dedup keys during a replay) costs the store nothing.
  void Release(uint32_t i, bool record = true) {
    Slot& s = At(i);
    const uint32_t len = s.key_size;
    if (record && (s.hash & state_internal::kStoredBit)) {
      char* p = erased_.erased.Extend(sizeof(len) + len);
      std::memcpy(p, &len, sizeof(len));
      std::memcpy(p + sizeof(len), s.key_data(), len);
      ++erased_.erased_count;
    }
    if (IsDirty(i)) Undirty(i, s);
    FreeKey(s);
    s.key_size = state_internal::kFreeSlot;
    free_.push_back(i);
  }

  std::string name_;
  int64_t expiry_ttl_ms_ = 0;    // StateRegistry::RegisterExpiring
  bool forget_expired_ = false;  // StateRegistry::ForgetExpiredEntries
  absl::flat_hash_set<Elem, SlotHash, SlotEq> index_;
  std::array<Slot*, kMaxChunks> chunks_{};
  uint32_t next_slot_ = 0;       // slots ever handed out
  std::vector<uint32_t> free_;   // erased slots, reused first
  std::vector<SlotKey> victims_;  // EraseIf's scratch
  std::vector<uint64_t> dirty_bits_;  // bit i: slot i is dirty; covers every allocated chunk
  size_t dirty_count_ = 0;            // bits set in dirty_bits_
  size_t dirty_key_bytes_ = 0;        // total key length of the dirty slots
  // Erased since the last commit (only its erased buffer and count are
  // used); may repeat or be re-inserted later, which is fine because the
  // backend writes deletions before puts.
  TableChanges erased_;
};

// The backend's view of one KeyedState: the StateTable interface over the
// handle's change capture. Owned by a StateRegistry.
template <typename V>
class KeyedTable final : public StateTable {
 public:
  explicit KeyedTable(std::string name) : StateTable(name), state_(std::move(name)) {}
  KeyedState<V>& state() { return state_; }
  const KeyedState<V>& state() const { return state_; }

  void ForEachDirty(const std::function<void(std::string_view, std::string_view)>& fn) const override {
    state_.ForEachDirty(fn);
  }
  void ForEachErased(const std::function<void(std::string_view)>& fn) const override { state_.ForEachErased(fn); }
  size_t DirtyCount() const override { return state_.DirtyCount(); }
  size_t DirtyBytes() const override { return state_.DirtyBytes(); }
  void ClearDirty() override { state_.ClearDirty(); }
  void TakeChanges(TableChanges* out) override { state_.TakeChanges(out); }
  Status Load(std::string_view key, std::string_view value) override { return state_.Load(key, value); }
  size_t size() const override { return state_.size(); }
  int64_t expiry_ttl_ms() const override { return state_.expiry_ttl_ms_; }
  bool forgets_expired() const override { return state_.forget_expired_; }
  void SetExpiry(int64_t ttl_ms) { state_.expiry_ttl_ms_ = ttl_ms; }

 private:
  void ForgetExpired() override { state_.forget_expired_ = state_.expiry_ttl_ms_ > 0; }

 public:

 private:
  KeyedState<V> state_;
};

class StateBackend;

// The state tables of one task. Operators register their tables when they
// are built and keep the KeyedState handle; the runtime hands the registry
// to the backend, the only code that reaches the tables' change capture.
class StateRegistry {
 public:
  template <typename V>
  KeyedState<V>* Register(std::string name) {
    return Add(std::make_unique<KeyedTable<V>>(std::move(name)));
  }
  // An expiring table (StateTable::expiry_ttl_ms, ttl_ms > 0): V starts
  // with the int64_t event time its entry's TTL counts from, and the
  // operator drops entries through ExpireIf with exactly that rule
  // (expired once the watermark passes that time + ttl_ms).
  template <typename V>
  KeyedState<V>* RegisterExpiring(std::string name, int64_t ttl_ms) {
    static_assert(sizeof(V) >= sizeof(int64_t), "an expiring table's value starts with an int64_t event time");
    auto table = std::make_unique<KeyedTable<V>>(std::move(name));
    table->SetExpiry(ttl_ms);
    return Add(std::move(table));
  }
  // From now on the expiring tables' ExpireIf records no erasures (those
  // registered later too). Only for a task whose restored watermark is the
  // one its checkpoint had (a first stage, not a repartitioned one) and
  // whose store is its only copy (no changelog: a compacted changelog
  // topic needs the deletes).
  void ForgetExpiredEntries() {
    forget_expired_ = true;
    for (const auto& t : tables_) t->ForgetExpired();
  }
  bool forgets_expired_entries() const { return forget_expired_; }
  size_t table_count() const { return tables_.size(); }
  // Each table, read only: its change capture (ForEachDirty, ForEachErased)
  // is what the changelog (engine/changelog.h) sends.
  void ForEachTable(const std::function<void(const StateTable&)>& fn) const {
    for (const auto& t : tables_) fn(*t);
  }
  std::vector<std::string> table_names() const {
    std::vector<std::string> names;
    for (const auto& t : tables_) names.push_back(t->name());
    return names;
  }

 private:
  friend class StateBackend;
  // Defined by tests that play the backend's part (tests/support).
  friend struct StateRegistryTestAccess;
  const std::vector<std::unique_ptr<StateTable>>& tables() const { return tables_; }

  template <typename V>
  KeyedState<V>* Add(std::unique_ptr<KeyedTable<V>> table) {
    if (forget_expired_) static_cast<StateTable*>(table.get())->ForgetExpired();
    auto* state = &table->state();
    tables_.push_back(std::move(table));
    return state;
  }

  std::vector<std::unique_ptr<StateTable>> tables_;
  bool forget_expired_ = false;
};

}  // namespace kappa
