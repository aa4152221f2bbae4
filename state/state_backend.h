// StateBackend: the RocksDB store behind a job version's state. One column
// family per stateful operator (keys prefixed by the 4-byte big-endian input
// partition) plus a "meta" family for task checkpoints and the job identity.
// A checkpoint writes every dirty entry, every task's next offset, watermark
// and counters, the epoch and the spec hash in ONE WriteBatch with
// sync=true, so a crash leaves either the whole checkpoint or none of it
// (DESIGN invariant 1).
//
// Checkpoints are written in the background: BeginCommit captures the
// checkpoint on the caller's thread (the only stall: one copy of each dirty
// entry, no hashing, no RocksDB) and hands it to the backend's writer
// thread, which writes the captures one by one, in epoch order, each as its
// own synced WriteBatch. The tables can be changed again as soon as
// BeginCommit returns; those changes belong to the next checkpoint.
// WaitForCommits waits until everything begun is durable. Commit is
// BeginCommit + WaitForCommits.
//
// Threads: the public methods are for one driving thread (the job's), as
// before; the writer thread is internal. Reads (ReadTask, StoredPartitions,
// Restore) and CheckIdentity first wait for pending commits, so they never
// race a write and always see the last begun checkpoint.
//
// Only the runtime includes this header; operators see
// state/keyed_state.h, and no RocksDB header leaks through here.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/record_counters.h"
#include "base/status.h"
#include "state/keyed_state.h"

namespace kappa {

// No watermark yet (TaskSnapshot::expiry_watermark_ms).
inline constexpr int64_t kNoWatermark = std::numeric_limits<int64_t>::min();

// What a task's checkpoint records for its input partition.
struct TaskCheckpointData {
  int32_t partition = 0;
  int64_t next_offset = 0;                                          // next input offset to read
  int64_t max_event_time_ms = std::numeric_limits<int64_t>::min();  // none seen yet
  RecordCounters counters;
  int64_t start_offset = 0;  // first offset this version processed (> 0: history gap)
  // The last record consumed (the last of its batch): its offset (-1: none
  // recorded) and RecordFingerprint, which a restore holds against the log.
  int64_t last_offset = -1;
  uint64_t last_fingerprint = 0;
};

struct JobIdentity {
  std::string job;
  int32_t version = 0;
  std::string spec_hash;
};

// What BeginCommit captured, and how long the caller was held up.
struct SnapshotStats {
  int64_t epoch = 0;
  size_t dirty_entries = 0;   // state entries to put
  size_t erased_entries = 0;  // state entries to delete
  size_t bytes = 0;           // captured key and value bytes
  double wait_ms = 0;         // waiting for room behind earlier pending commits
  double capture_ms = 0;      // copying the changes out: the processing stall
};

// A durable checkpoint.
struct CommitStats {
  int64_t epoch = 0;
  size_t dirty_entries = 0;   // state entries put
  size_t erased_entries = 0;  // state entries deleted
  size_t bytes = 0;           // size of the WriteBatch
  double write_ms = 0;        // building and writing the batch, fsync included (writer thread)
  double capture_ms = 0;      // the BeginCommit stall of this checkpoint
  double total_ms = 0;        // from BeginCommit to durable
};

// kappa's own marker next to RocksDB's files: the epoch of the last durable
// checkpoint, rewritten atomically (temp file, fsync, rename, fsync of the
// directory) by the writer thread after each checkpoint is durable. It lives
// outside RocksDB so that a store that lost data (a truncated MANIFEST, a
// deleted WAL, an older copy) cannot pass for an earlier, valid one: Open
// refuses a store whose last epoch is below it.
inline constexpr char kEpochMarkerFile[] = "KAPPA_EPOCH";
// The marker's epoch; nullopt if there is none. Corruption if unreadable.
Result<std::optional<int64_t>> ReadEpochMarker(const std::string& dir);

// Whether `name` (a file name in a state directory) is one kappa writes
// there: RocksDB's files, the epoch marker, the default metrics file. The
// one list Reset and retirement delete from.
bool IsStateFile(const std::string& name);

// What StateBackend::Reset did: the files it deleted and the entries it left
// (not kappa's), by name, sorted.
struct StateResetReport {
  std::vector<std::string> removed;
  std::vector<std::string> kept;
};

class StateBackend {
 public:
  // Opens (creating if missing) the store at `dir` with a column family per
  // table name. Column families found on disk are opened too, never dropped.
  // "default" and "meta" are reserved. A directory holding kappa's files
  // that cannot be opened consistently is never taken for a fresh one:
  // Corruption, naming the directory, what is wrong (CURRENT missing, a
  // MANIFEST RocksDB cannot read, the meta family gone, a last epoch below
  // the KAPPA_EPOCH marker, a garbled marker) and how to start over
  // (--reset-state). Other errors: Unavailable if the directory is locked by
  // another open StateBackend (this or another process), Corruption if the
  // stored job record fails verification, IOError else.
  //
  // `max_total_wal_bytes`: past it, RocksDB flushes the families that hold
  // the oldest write-ahead log, so it can be deleted. The meta family takes
  // a small write per checkpoint and rarely fills its memtable: without a
  // bound, a long run kept every WAL since the meta family's last flush
  // (148 MB of logs beside under 1 MB of state after 15 minutes, a soak
  // test; RocksDB's default bound is 4x all write buffers, gigabytes here).
  static constexpr uint64_t kDefaultMaxTotalWalBytes = uint64_t{128} << 20;
  static constexpr uint64_t kFlushAtCloseBytes = uint64_t{16} << 20;
  static Result<std::unique_ptr<StateBackend>> Open(const std::string& dir,
                                                    const std::vector<std::string>& table_names,
                                                    uint64_t max_total_wal_bytes = kDefaultMaxTotalWalBytes);
  // Starts over: deletes the files kappa created in `dir` (RocksDB's files,
  // the KAPPA_EPOCH marker, the default metrics.json) and nothing else; the
  // directory itself stays. A missing directory is nothing to do.
  // Unavailable if the store is open (this or another process).
  static Result<StateResetReport> Reset(const std::string& dir);
  // The job and version whose checkpoints `dir` holds, read without opening
  // the store for writing (nothing is changed); nullopt when there is no
  // store there, or no job recorded, or the store cannot be read (damaged).
  static std::optional<JobIdentity> StoredIdentity(const std::string& dir);
  // Whether a store open in this or another process holds `dir` (its
  // RocksDB LOCK): what must not be deleted.
  static bool InUse(const std::string& dir);
  // Bytes of RocksDB write-ahead log in `dir` (its *.log files): what an
  // Open replays before anything else, at some seconds per 100 MB. A clean
  // close leaves little (see ~StateBackend); a crash up to
  // max_total_wal_bytes and more.
  static uint64_t WriteAheadLogBytes(const std::string& dir);
  // Finishes the pending commits (each is a valid checkpoint) before
  // closing; call WaitForCommits first to learn whether they succeeded.
  // Memtables holding more than kFlushAtCloseBytes are flushed first, so
  // that the next Open does not replay their write-ahead log: after a
  // clean stop of a job with a large state, the log was 90-95% of the
  // state directory, and the next start replayed it for 4-7 s before it
  // could say anything (a bug bash).
  ~StateBackend();
  StateBackend(const StateBackend&) = delete;
  StateBackend& operator=(const StateBackend&) = delete;

  // Must be called once before the first (Begin)Commit. On a fresh directory it
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
  // Epoch of the last DURABLE checkpoint (stored or written by this
  // process); 0 if none. A begun commit counts once it is durable.
  int64_t last_epoch() const;
  // Loads every stored entry of `partition` into the registry's tables (by
  // table name == column family) through StateTable::Load; entries stay
  // clean. InvalidArgument if a table has no column family (neither named
  // to Open nor found on disk).
  //
  // With `expiry_watermark_ms` (the restored task's watermark, as
  // Task::expiry_watermark_ms gives it, like TaskSnapshot's), a table that
  // forgets expired entries (StateTable::forgets_expired) does not load
  // those expired at it: they read as unseen, the first purge would drop
  // them unrecorded, and the compaction filter drops their stored copies by
  // the same rule. kNoWatermark: everything is loaded. `expired_skipped`,
  // when given, counts the entries left out.
  // `every`, when given, is called after each 65,536 entries loaded with
  // the count so far; an error it returns ends the restore with it (a stop
  // request, a progress line between).
  Status Restore(int32_t partition, StateRegistry& registry, int64_t expiry_watermark_ms = kNoWatermark,
                 size_t* expired_skipped = nullptr, const std::function<Status(int64_t loaded)>& every = nullptr);

  // Every stored entry of `partition`, table by table (key without the
  // partition prefix): what a changelog is seeded with when a task's state
  // was never in it. InvalidArgument for an unknown table name.
  Status ForEachEntry(int32_t partition, const std::vector<std::string>& tables,
                      const std::function<Status(const std::string& table, std::string_view key,
                                                 std::string_view value)>& fn);
  // One state entry of a partition, for ReplacePartition.
  struct Entry {
    std::string table;
    std::string key;    // without the partition prefix
    std::string value;
  };
  // Replaces everything stored for `partition` (every table's entries and
  // its task checkpoint) with `entries` and `task` in one synced write, as
  // if a checkpoint of exactly that had been taken: the state of a task
  // restored from elsewhere (the changelog) becomes this store's. Waits
  // for pending commits first; the epoch stays.
  Status ReplacePartition(int32_t partition, const std::vector<Entry>& entries, const TaskCheckpointData& task);
  // Standbys (engine/standby.h): applies one changelog marker's worth of
  // changes to `partition` (`puts`, then `erased` deleted) with `task` as
  // its checkpoint, in one synced write, leaving the partition's other
  // entries alone (ReplacePartition wipes them); with `clear_first` the
  // partition's stored entries go first, in the same write (a copy that
  // starts over from the beginning of the changelog). Waits for pending
  // commits only with `clear_first`: the caller must not be checkpointing
  // `partition` (a partition this process does not run).
  Status ApplyToPartition(int32_t partition, const std::vector<Entry>& puts,
                          const std::vector<std::pair<std::string, std::string>>& erased,
                          const TaskCheckpointData& task, bool clear_first);

  struct TaskSnapshot {
    const TaskCheckpointData* task;
    StateRegistry* registry;
    // For a registry that forgets expired entries (StateRegistry::
    // ForgetExpiredEntries): the task's watermark as this checkpoint
    // restores it. Once the checkpoint is durable, the store drops (in its
    // flushes and compactions) the partition's expiring entries that are
    // expired at it. kNoWatermark: none.
    int64_t expiry_watermark_ms = kNoWatermark;
  };
  // At most this many begun commits wait to be written (one being written,
  // one queued); BeginCommit waits for room before capturing.
  static constexpr size_t kMaxPendingCommits = 2;

  // Begins one atomic, synced checkpoint of every task: per table its
  // erasures (Delete) then its dirty entries (Put), each task's checkpoint
  // record, and the job record (identity, epoch, wall-clock capture time).
  // Captures all of it now, clears every table's dirty set, and queues the
  // write for the writer thread; returns without waiting for the disk. The
  // caller must have made the outputs of the inputs this checkpoint covers
  // durable first (at-least-once: flush the sink BEFORE BeginCommit), or
  // pass `ready`: the writer calls it before writing this checkpoint (at
  // most one at a time, in epoch order) and writes only if it returns OK;
  // its error becomes the backend's sticky error, the checkpoint unwritten.
  // Refusals change nothing (no capture, dirty sets kept): FailedPrecondition
  // before CheckIdentity, InvalidArgument for a caller bug (epoch not above
  // the last begun one, a null pointer, a partition twice, an unknown
  // table). If an earlier background write failed, returns that error.
  Result<SnapshotStats> BeginCommit(int64_t epoch, const std::vector<TaskSnapshot>& tasks,
                                    std::function<Status()> ready = nullptr);
  // Has the writer thread make a capture ready in the background: buffers
  // of `scale` times each table's changes so far, faulted in, so that the
  // next BeginCommit copies into them instead of paying a page fault per
  // 4 KiB of fresh memory inside its stall (the first checkpoint's; later
  // ones reuse the buffers the writer readies after each write). Cheap and
  // never waits: nothing while a recycled capture is at hand, a commit is
  // pending, a preparation runs, or the changes are under 1 MiB.
  void PrepareCapture(const std::vector<TaskSnapshot>& tasks, double scale);
  // Waits until every begun commit is durable (or failed). Returns the
  // stats of the last durable one, or the first write error. A write error
  // is sticky: the failed checkpoint's changes have left the tables' dirty
  // sets, so no later checkpoint may claim to include them; every later
  // BeginCommit, WaitForCommits and Commit returns the error (IOError), and
  // the job must stop and restart from the last durable checkpoint (the
  // store itself holds the whole previous checkpoint, never a mix).
  Result<CommitStats> WaitForCommits();
  // Whether, within timeout_ms, the writer has room for another BeginCommit
  // (WaitForRoom) or has made every begun commit durable (WaitIdleFor); true
  // at once after a write error (which BeginCommit/WaitForCommits return).
  bool WaitForRoom(int timeout_ms);
  bool WaitIdleFor(int timeout_ms);
  // The sticky write error, if a background write failed by now (OK
  // otherwise); never waits for the writer.
  Status WriteError() const;
  // BeginCommit + WaitForCommits: returns once `epoch` is durable.
  Result<CommitStats> Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks);
  const std::string& dir() const { return dir_; }
  // Tests only: the writer thread fails the next checkpoint write with
  // IOError(`message`) instead of writing it, as a disk error would (a real
  // WAL error may instead abort the process inside Debian's RocksDB, whose
  // debug assertions are on).
  void FailNextWriteForTesting(std::string message);
  // Bytes captured by the last BeginCommit (0 before the first): what the
  // next checkpoint's free-space headroom is measured against.
  size_t last_checkpoint_bytes() const { return last_checkpoint_bytes_; }
  // The state's size on disk and in memory as RocksDB estimates it (live
  // SST files plus memtables, every table): the metrics' state size.
  uint64_t ApproximateBytes() const;
  // Tests only: waits for pending commits, then flushes and compacts every
  // state table into one level, as RocksDB's background compactions
  // eventually would.
  Status CompactForTesting();

 private:
  struct Impl;
  StateBackend(std::string dir, std::unique_ptr<Impl> impl);
  Status LoadIdentity();
  // Waits for pending commits; their error (if any) is left for the callers
  // of BeginCommit/WaitForCommits.
  void WaitIdle();

  std::string dir_;
  std::unique_ptr<Impl> impl_;
  std::optional<JobIdentity> identity_;  // set once stored or checked
  int64_t last_begun_epoch_ = 0;         // stored, or the last BeginCommit
  size_t last_checkpoint_bytes_ = 0;
};

}  // namespace kappa
