// PrefixSortedVectorRepFactory: the memtable of the state tables' column
// families. Like RocksDB's VectorRep it appends each write and sorts once,
// when the memtable is flushed or iterated; it sorts differently.
//
// A checkpoint writes a table's dirty keys and erasures in bulk, and the
// tables are read only on restore, so an append-only memtable is right for
// them (a skiplist pays a search per insert). But VectorRep sorts with
// std::sort over entry pointers and RocksDB's comparator: every comparison
// decodes two varint lengths, calls the user comparator through a virtual
// call and reads two entries scattered across a 64 MiB arena. Profiled, that
// sort was 1.0-2.2 CPU-s per flush of 1.7 M entries (a dedup table's last
// hour of keys, written at one checkpoint and deleted at the next), a core
// taken from the workers, and a process waited 1-2 s at its end for a flush
// under way (bench/results/kafka-path-profile.md).
//
// Here each entry is sorted as its pointer plus the first 16 bytes of its
// user key, big-endian (zero-padded), so that most comparisons are two
// integer compares on a contiguous array; only entries whose first 16 user
// key bytes are equal (the same key's put and delete, or longer keys) fall
// back to RocksDB's comparator. The order is the comparator's own, so this
// is only valid for column families with the default bytewise comparator,
// which every state table uses.
#pragma once

#include <rocksdb/memtablerep.h>

namespace kappa {

class PrefixSortedVectorRepFactory final : public rocksdb::MemTableRepFactory {
 public:
  using rocksdb::MemTableRepFactory::CreateMemTableRep;
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& cmp,
                                          rocksdb::Allocator* allocator, const rocksdb::SliceTransform*,
                                          rocksdb::Logger*) override;
  const char* Name() const override { return "KappaPrefixSortedVectorRepFactory"; }
};

}  // namespace kappa
