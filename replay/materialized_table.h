// MaterializedTable: a local RocksDB table of a job version's output topic,
// upserted by key (the idempotent-sink pattern: a re-emitted duplicate simply
// overwrites itself). CatchUp() reads from the offsets it stored last time to
// the topic's current end and commits values and offsets in one write, so it
// is incremental and crash-safe. Backs `kappa get`. Not thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "kafka/kafka_config.h"
#include "state/state_headroom.h"

namespace rocksdb {
class Status;
}

namespace kappa {

class MaterializedTable {
 public:
  // Another `kappa get` holding the table (RocksDB's LOCK) is waited for,
  // up to `wait_ms`: two lookups at once failed with the lock's I/O error.
  // A table RocksDB finds damaged is moved aside (<dir>.damaged-<ms>) and
  // an empty one made in its place, for CatchUp to build from the topic:
  // it is a copy of the topic, and it was left to be removed by hand (a
  // bug bash); *note (if given) says where the damaged one went.
  // A directory with less than kMinFreeBytes free is refused before RocksDB
  // writes there: Debian's RocksDB aborted the process on a full disk (its
  // debug assertions), and CatchUp checks again before each write.
  static constexpr int64_t kMinFreeBytes = int64_t{16} << 20;
  static Result<std::unique_ptr<MaterializedTable>> Open(const std::string& dir, const std::string& topic,
                                                         int wait_ms = 30000, std::string* note = nullptr,
                                                         FreeSpaceFn free_space = StatvfsFreeBytes);
  ~MaterializedTable();
  // Applies every record added to the topic since the last call; returns how
  // many. A table built from another log (other bootstrap servers, or a
  // topic deleted and made again: the record it applied last in a partition
  // is not the one there now, or the partition ends before it) is cleared
  // and read again from the start, and *note (if given) says so. A table
  // that has read from the topic while the topic is gone (deleted) is
  // FailedPrecondition: its rows were answered as if caught up (a bug bash).
  Result<int64_t> CatchUp(const KafkaConfig& config, std::string* note = nullptr);
  // A table that CatchUp or Get found damaged (Corruption: a block's
  // checksum) is closed by the caller and set aside with this, as Open
  // does, then opened again: moved to <dir>.damaged-<ms>, an empty one made.
  static Status SetAside(const std::string& dir, const std::string& why, std::string* note);
  Result<std::optional<std::string>> Get(const std::string& key);

 private:
  Status Failed(const char* what, const rocksdb::Status& s) const;
  Result<bool> SameLog(const KafkaConfig& config, const std::vector<int64_t>& from);
  Status Clear();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kappa
