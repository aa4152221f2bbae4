#include "state/memtable_rep.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace kappa {
namespace {

using rocksdb::KeyHandle;
using rocksdb::MemTableRep;
using rocksdb::Slice;

// Bytes [from, from + 8) of s as a big-endian integer, zero-padded: comparing
// two such integers orders like memcmp of the padded bytes.
uint64_t BigEndianWord(const Slice& s, size_t from) {
  unsigned char b[8] = {};
  if (from < s.size()) std::memcpy(b, s.data() + from, std::min<size_t>(8, s.size() - from));
  uint64_t w = 0;
  for (unsigned char c : b) w = (w << 8) | c;
  return w;
}

class PrefixSortedVectorRep final : public MemTableRep {
 public:
  PrefixSortedVectorRep(const KeyComparator& cmp, rocksdb::Allocator* allocator)
      : MemTableRep(allocator), cmp_(cmp) {}
  ~PrefixSortedVectorRep() override;

  // RocksDB inserts from one thread at a time (this rep does not offer
  // concurrent inserts) and asks ApproximateMemoryUsage after every insert;
  // readers (Contains, an iterator over a memtable still written to) are
  // rare. So the lock is a plain mutex and the size an atomic: a
  // checkpoint's writer inserts millions of entries, and a reader-writer
  // lock taken twice per entry was a fifth of its CPU.
  void Insert(KeyHandle handle) override {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.push_back(static_cast<const char*>(handle));
    capacity_.store(entries_.capacity(), std::memory_order_relaxed);
  }

  bool Contains(const char* key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const char* e : entries_) {
      if (cmp_(e, key) == 0) return true;
    }
    return false;
  }

  void MarkReadOnly() override {
    std::lock_guard<std::mutex> lock(mu_);
    read_only_ = true;
  }

  size_t ApproximateMemoryUsage() override {
    return sizeof(*this) + capacity_.load(std::memory_order_relaxed) * sizeof(const char*);
  }

  Iterator* GetIterator(rocksdb::Arena* arena) override;
  // RocksDB's MemTableRep::Get (which this rep, like VectorRep, would
  // otherwise need RocksDB's internal LookupKey to replace) takes its
  // iterator from here and never deletes it; pooled iterators make that
  // safe either way (see Pooled). A Get therefore sorts a copy of a
  // memtable still written to and keeps it until the memtable is dropped:
  // fine for the state tables, which are read only through iterators.
  Iterator* GetDynamicPrefixIterator(rocksdb::Arena* arena) override { return GetIterator(arena); }

  // Sorts `v` in the comparator's order (the header says how).
  void Sort(std::vector<const char*>* v) const {
    struct Keyed {
      uint64_t k0, k1;
      const char* entry;
    };
    std::vector<Keyed> keyed;
    keyed.reserve(v->size());
    for (const char* e : *v) {
      const Slice internal = cmp_.decode_key(e);
      // The internal key is the user key and an 8-byte sequence/type trailer.
      const Slice user(internal.data(), internal.size() >= 8 ? internal.size() - 8 : 0);
      keyed.push_back(Keyed{BigEndianWord(user, 0), BigEndianWord(user, 8), e});
    }
    std::sort(keyed.begin(), keyed.end(), [this](const Keyed& a, const Keyed& b) {
      if (a.k0 != b.k0) return a.k0 < b.k0;
      if (a.k1 != b.k1) return a.k1 < b.k1;
      return cmp_(a.entry, b.entry) < 0;
    });
    for (size_t i = 0; i < keyed.size(); ++i) (*v)[i] = keyed[i].entry;
  }

 private:
  class Iter;

  const KeyComparator& cmp_;
  mutable std::mutex mu_;
  std::vector<const char*> entries_;  // insertion order until sorted_
  std::atomic<size_t> capacity_{0};   // entries_.capacity(), read without mu_
  bool read_only_ = false;
  bool sorted_ = false;               // read-only and sorted in place
  // Every iterator handed out lives in memory this memtable owns (an
  // iterator holds its memtable alive, so it never outlives it). Callers
  // differ in how they end one: with an arena RocksDB only runs the
  // destructor (the arena would own the bytes, and RocksDB's Arena is not in
  // its public headers); without one it deletes it (the class's operator
  // delete then leaves the bytes here); RocksDB's MemTableRep::Get does
  // neither. Whatever was not destroyed is destroyed with the memtable.
  struct Pooled {
    void* memory = nullptr;
    bool destroyed = false;
  };
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Pooled>> pool_;
};

// Over a sorted vector: the read-only memtable's own (shared), or a sorted
// copy of a memtable still written to (owned).
class PrefixSortedVectorRep::Iter final : public MemTableRep::Iterator {
 public:
  Iter(const KeyComparator& cmp, const std::vector<const char*>* shared, std::vector<const char*> owned,
       Pooled* pooled)
      : cmp_(cmp), owned_(std::move(owned)), v_(shared ? shared : &owned_), pos_(v_->size()), pooled_(pooled) {}
  ~Iter() override { pooled_->destroyed = true; }
  // `delete` of an iterator: the bytes stay in the pool (see Pooled).
  static void operator delete(void*) {}

  bool Valid() const override { return pos_ < v_->size(); }
  const char* key() const override { return (*v_)[pos_]; }
  void Next() override { ++pos_; }
  void Prev() override { pos_ = pos_ == 0 ? v_->size() : pos_ - 1; }
  void Seek(const Slice& internal_key, const char* memtable_key) override {
    pos_ = static_cast<size_t>(std::lower_bound(v_->begin(), v_->end(), nullptr,
                                                [&](const char* e, std::nullptr_t) {
                                                  return Compare(e, internal_key, memtable_key) < 0;
                                                }) -
                               v_->begin());
  }
  void SeekForPrev(const Slice& internal_key, const char* memtable_key) override {
    // The last entry <= target: one before the first entry > target.
    const size_t first_after = static_cast<size_t>(
        std::upper_bound(v_->begin(), v_->end(), nullptr,
                         [&](std::nullptr_t, const char* e) { return Compare(e, internal_key, memtable_key) > 0; }) -
        v_->begin());
    pos_ = first_after == 0 ? v_->size() : first_after - 1;
  }
  void SeekToFirst() override { pos_ = 0; }
  void SeekToLast() override { pos_ = v_->empty() ? 0 : v_->size() - 1; }

 private:
  int Compare(const char* entry, const Slice& internal_key, const char* memtable_key) const {
    return memtable_key != nullptr ? cmp_(entry, memtable_key) : cmp_(entry, internal_key);
  }

  const KeyComparator& cmp_;
  std::vector<const char*> owned_;
  const std::vector<const char*>* v_;
  size_t pos_;
  Pooled* pooled_;
};

PrefixSortedVectorRep::~PrefixSortedVectorRep() {
  for (const auto& p : pool_) {
    if (!p->destroyed) static_cast<Iter*>(p->memory)->~Iter();
    ::operator delete(p->memory);
  }
}

MemTableRep::Iterator* PrefixSortedVectorRep::GetIterator(rocksdb::Arena* arena) {
  const std::vector<const char*>* shared = nullptr;
  std::vector<const char*> owned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (read_only_) {
      // Sorted once, in place; later iterators (the flush's, a restore's)
      // share it. Nothing is inserted any more.
      if (!sorted_) {
        Sort(&entries_);
        sorted_ = true;
      }
      shared = &entries_;
    } else {
      owned = entries_;  // still written to: a sorted copy
    }
  }
  if (shared == nullptr) Sort(&owned);
  (void)arena;  // pooled whatever the caller (see Pooled)
  auto pooled = std::make_unique<Pooled>();
  pooled->memory = ::operator new(sizeof(Iter));
  Iter* it = new (pooled->memory) Iter(cmp_, shared, std::move(owned), pooled.get());
  std::lock_guard<std::mutex> lock(pool_mu_);
  // Iterators already ended give their bytes back now.
  std::erase_if(pool_, [](const std::unique_ptr<Pooled>& p) {
    if (p->destroyed) ::operator delete(p->memory);
    return p->destroyed;
  });
  pool_.push_back(std::move(pooled));
  return it;
}

}  // namespace

rocksdb::MemTableRep* PrefixSortedVectorRepFactory::CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& cmp,
                                                                      rocksdb::Allocator* allocator,
                                                                      const rocksdb::SliceTransform*,
                                                                      rocksdb::Logger*) {
  return new PrefixSortedVectorRep(cmp, allocator);
}

}  // namespace kappa
