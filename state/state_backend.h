// StateBackend: the RocksDB store behind a job version's state. One column
// family per stateful operator (keys prefixed by the 4-byte big-endian input
// partition) plus a "meta" family for task checkpoints and the job identity.
// Commit() writes every dirty entry, every task's next offset, watermark and
// counters, the epoch and the spec hash in ONE WriteBatch with sync=true, so
// a crash leaves either the whole checkpoint or none of it (DESIGN
// invariant 1). Not thread-safe: owned by the job's driving thread. Only the
// runtime includes this header; operators see state/keyed_state.h, and no
// RocksDB header leaks through here.
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

// What a task's checkpoint records for its input partition.
struct TaskCheckpointData {
  int32_t partition = 0;
  int64_t next_offset = 0;                                          // next input offset to read
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
  size_t dirty_entries = 0;   // state entries put
  size_t erased_entries = 0;  // state entries deleted
  size_t bytes = 0;           // size of the WriteBatch
  double write_ms = 0;        // building and writing the batch, fsync included
};

class StateBackend {
 public:
  // Opens (creating if missing) the store at `dir` with a column family per
  // table name. Column families found on disk are opened too, never dropped.
  // "default" and "meta" are reserved. Errors: Unavailable if the directory
  // is locked by another open StateBackend (this or another process),
  // Corruption if the stored job record fails verification, IOError else.
  static Result<std::unique_ptr<StateBackend>> Open(const std::string& dir,
                                                    const std::vector<std::string>& table_names);
  ~StateBackend();
  StateBackend(const StateBackend&) = delete;
  StateBackend& operator=(const StateBackend&) = delete;

  // Must be called once before the first Commit. On a fresh directory it
  // records `id` at once, in its own synced write, so a crash before the
  // first checkpoint still leaves the directory owned by this spec. Later:
  // FailedPrecondition, naming both sides, if the job, version or spec hash
  // differ from the stored ones.
  Status CheckIdentity(const JobIdentity& id);
  // The stored checkpoint of `partition`, or nullopt if it has none.
  // Corruption if the record fails FlatBuffers verification.
  Result<std::optional<TaskCheckpointData>> ReadTask(int32_t partition);
  // Partitions that have a task checkpoint, in key order (0, 1, ... then
  // negative ones). Stops early, silently, on a read error.
  std::vector<int32_t> StoredPartitions();
  // Epoch of the last successful Commit (stored or in this process); 0 if none.
  int64_t last_epoch() const { return last_epoch_; }
  // Loads every stored entry of `partition` into the registry's tables (by
  // table name == column family) through StateTable::Load; entries stay
  // clean. InvalidArgument if a table has no column family (neither named
  // to Open nor found on disk).
  Status Restore(int32_t partition, StateRegistry& registry);

  struct TaskSnapshot {
    const TaskCheckpointData* task;
    StateRegistry* registry;
  };
  // One atomic, synced checkpoint of every task: per table its erasures
  // (Delete) then its dirty entries (Put), each task's checkpoint record,
  // and the job record (identity, epoch, wall-clock commit time). On success
  // every table's dirty set is cleared and last_epoch() becomes `epoch`. On
  // failure nothing is cleared and the previous checkpoint stands:
  // IOError if RocksDB could not write, FailedPrecondition before
  // CheckIdentity, InvalidArgument for a caller bug (epoch not above
  // last_epoch(), a null pointer, a partition twice, an unknown table).
  Result<CommitStats> Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks);
  const std::string& dir() const { return dir_; }

 private:
  struct Impl;
  StateBackend(std::string dir, std::unique_ptr<Impl> impl);
  Status LoadIdentity();

  std::string dir_;
  std::unique_ptr<Impl> impl_;
  std::optional<JobIdentity> identity_;  // set once stored or checked
  int64_t last_epoch_ = 0;
};

}  // namespace kappa
