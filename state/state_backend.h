// StateBackend: the RocksDB store behind a job version's state. One column
// family per stateful operator (keys prefixed by the 4-byte big-endian input
// partition) plus a "meta" family for task checkpoints and the job identity.
// Commit() writes every dirty entry, every task's next offset, watermark and
// counters, the epoch and the spec hash in ONE WriteBatch with sync=true, so
// a crash leaves either the whole checkpoint or none of it (DESIGN
// invariant 1). Not thread-safe: owned by the job's driving thread.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/record_counters.h"
#include "engine/base/status.h"
#include "state/keyed_state.h"

namespace kappa {

struct TaskCheckpointData {
  int32_t partition = 0;
  int64_t next_offset = 0;  // next input offset to read
  int64_t max_event_time_ms = std::numeric_limits<int64_t>::min();  // none seen yet
  RecordCounters counters;
  int64_t start_offset = 0;  // first offset this version processed (> 0: history gap)
};

struct JobIdentity {
  std::string job;
  int32_t version = 0;
  std::string spec_hash;
};

struct CommitStats {
  int64_t epoch = 0;
  size_t dirty_entries = 0;
  size_t erased_entries = 0;
  size_t bytes = 0;
  double write_ms = 0;
};

class StateBackend {
 public:
  // Opens (creating if missing) the store at `dir` with a column family per
  // table name. Column families found on disk are opened too, never dropped.
  static Result<std::unique_ptr<StateBackend>> Open(const std::string& dir,
                                                    const std::vector<std::string>& table_names);
  ~StateBackend();

  // First use of a directory records the identity (durably, synced). Later:
  // FailedPrecondition if the job, version or spec hash differ.
  Status CheckIdentity(const JobIdentity& id);
  Result<std::optional<TaskCheckpointData>> ReadTask(int32_t partition);
  std::vector<int32_t> StoredPartitions();
  int64_t last_epoch() const { return last_epoch_; }
  // Loads every stored entry of `partition` into the registry's tables.
  Status Restore(int32_t partition, StateRegistry& registry);

  struct TaskSnapshot {
    const TaskCheckpointData* task;
    StateRegistry* registry;
  };
  // One atomic, synced checkpoint. On success the tables' dirty sets are
  // cleared; on failure nothing is cleared and the previous checkpoint stands.
  Result<CommitStats> Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks);
  const std::string& dir() const { return dir_; }

 private:
  struct Impl;
  explicit StateBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string dir_;
  JobIdentity identity_;
  int64_t last_epoch_ = 0;
};

}  // namespace kappa
