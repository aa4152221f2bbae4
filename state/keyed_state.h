// KeyedState<V>: one operator's state for one task (input partition), held in
// memory as a write-back cache over RocksDB. Operators read and update it on
// the hot path without touching RocksDB; the runtime persists the dirty
// entries and erasures at each checkpoint (StateBackend::Commit) and reloads
// them on restore. Keys are the operator's own keys; the backend prefixes
// them with the partition. Not thread-safe: owned by one task's thread.
#pragma once

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "engine/base/status.h"

namespace kappa {

// Type-erased view the state backend uses to persist and restore a table.
class StateTable {
 public:
  explicit StateTable(std::string name) : name_(std::move(name)) {}
  virtual ~StateTable() = default;
  // Column family name; one per stateful operator kind.
  const std::string& name() const { return name_; }
  // Entries changed since the last ClearDirty(), as raw value bytes.
  virtual void ForEachDirty(const std::function<void(std::string_view key, std::string_view value)>& fn) const = 0;
  // Keys erased since the last ClearDirty(). The backend applies these
  // deletions before the dirty puts of the same commit.
  virtual void ForEachErased(const std::function<void(std::string_view key)>& fn) const = 0;
  virtual size_t DirtyCount() const = 0;
  virtual void ClearDirty() = 0;
  // Restore one stored entry; Corruption if the value has the wrong size.
  virtual Status Load(std::string_view key, std::string_view value) = 0;
  virtual size_t size() const = 0;

 private:
  std::string name_;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// V must be trivially copyable: it is stored as its raw bytes (little-endian
// x86-64 layout; a state directory is not portable across architectures).
template <typename V>
class KeyedState final : public StateTable {
  static_assert(std::is_trivially_copyable_v<V>, "state values are stored as raw bytes");

 public:
  explicit KeyedState(std::string name) : StateTable(std::move(name)) {}

  // The value for key, or nullptr. Does not mark it dirty.
  const V* Find(std::string_view key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  // The value for key, inserting `initial` if absent; marks it dirty.
  // *inserted (if given) says whether it was absent.
  V& Upsert(std::string_view key, const V& initial, bool* inserted = nullptr) {
    auto it = map_.find(key);
    bool is_new = it == map_.end();
    if (is_new) it = map_.emplace(std::string(key), Entry{initial, false}).first;
    if (!it->second.dirty) {
      it->second.dirty = true;
      ++dirty_count_;
    }
    if (inserted) *inserted = is_new;
    return it->second.value;
  }
  void Erase(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    if (it->second.dirty) --dirty_count_;
    erased_.push_back(it->first);
    map_.erase(it);
  }
  // fn(std::string_view key, const V& value) for every entry, unordered.
  template <typename F>
  void ForEach(F&& fn) const {
    for (const auto& [k, e] : map_) fn(std::string_view(k), e.value);
  }
  // Erases every entry for which pred(key, value) is true.
  template <typename F>
  size_t EraseIf(F&& pred) {
    size_t n = 0;
    for (auto it = map_.begin(); it != map_.end();) {
      if (pred(std::string_view(it->first), it->second.value)) {
        if (it->second.dirty) --dirty_count_;
        erased_.push_back(it->first);
        it = map_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

  void ForEachDirty(const std::function<void(std::string_view, std::string_view)>& fn) const override {
    if (dirty_count_ == 0) return;
    for (const auto& [k, e] : map_) {
      if (e.dirty) fn(k, std::string_view(reinterpret_cast<const char*>(&e.value), sizeof(V)));
    }
  }
  void ForEachErased(const std::function<void(std::string_view)>& fn) const override {
    for (const auto& k : erased_) fn(k);
  }
  size_t DirtyCount() const override { return dirty_count_; }
  void ClearDirty() override {
    if (dirty_count_ > 0) {
      for (auto& [k, e] : map_) e.dirty = false;
    }
    dirty_count_ = 0;
    erased_.clear();
  }
  Status Load(std::string_view key, std::string_view value) override {
    if (value.size() != sizeof(V)) {
      return Status::Corruption("state table '" + name() + "': stored value has " +
                                std::to_string(value.size()) + " bytes, expected " +
                                std::to_string(sizeof(V)));
    }
    V v;
    std::memcpy(&v, value.data(), sizeof(V));
    map_.insert_or_assign(std::string(key), Entry{v, false});
    return Status::OK();
  }
  size_t size() const override { return map_.size(); }

 private:
  struct Entry {
    V value;
    bool dirty;
  };
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> map_;
  // Erased since the last commit; may repeat or be re-inserted later, which
  // is fine because the backend writes deletions before puts.
  std::vector<std::string> erased_;
  size_t dirty_count_ = 0;
};

// The state tables of one task. Operators register their tables when they
// are built; the runtime hands the registry to the backend to commit/restore.
class StateRegistry {
 public:
  template <typename V>
  KeyedState<V>* Register(std::string name) {
    auto table = std::make_unique<KeyedState<V>>(std::move(name));
    auto* raw = table.get();
    tables_.push_back(std::move(table));
    return raw;
  }
  const std::vector<std::unique_ptr<StateTable>>& tables() const { return tables_; }

 private:
  std::vector<std::unique_ptr<StateTable>> tables_;
};

}  // namespace kappa
