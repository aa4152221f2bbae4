// PostgresSink: a job's feature rows into PostgreSQL (`sink.postgres`),
// exactly once without two-phase commit (DESIGN invariant 6, the database
// as the sink):
//  - Rows wait in memory for the epoch, the latest per output key (the key
//    is deterministic, so a later row of the same key in the epoch is its
//    revision).
//  - At each checkpoint, ONE database transaction holds the epoch: COPY of
//    its rows into a temporary table, one INSERT ... ON CONFLICT (kappa_key)
//    DO UPDATE into <table>_v<N>, and one kappa_offsets row per input
//    partition (the next offset to read). The RocksDB checkpoint follows.
//  - On start the job reads kappa_offsets: where the database is ahead of
//    RocksDB (a crash between the two commits) the gap is re-read with
//    outputs suppressed to rebuild the state (engine/committed_gaps.h); the
//    database can never be behind RocksDB after a crash, so a state ahead of
//    the database (the database restored from a backup, the rows deleted)
//    stops the job with an error saying how to rebuild.
// DLQ and late records still go to their Kafka topics through the job's
// KafkaSink, flushed before the database commits (at least once: a crash
// between the two may repeat a DLQ or late record, never a row).
// The database going away mid-run does not stop the job: the checkpoint
// waits, retrying with backoff and saying so, and nothing is read meanwhile.
// A row the database refuses (a constraint, a value out of a column's range)
// goes to the DLQ with the database's message; the others commit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/progress.h"
#include "base/status.h"
#include "base/stop_token.h"
#include "base/test_hooks.h"
#include "engine/job_spec.h"
#include "operators/operator.h"

namespace kappa {

class KafkaSink;
class PgClient;
struct PgRows;

class PostgresSink final : public OutputCollector {
 public:
  // Connects (Unavailable when the database cannot be reached: the job does
  // not start), creates kappa_offsets and the version's table if missing,
  // and checks that an existing table has this spec's columns and types (a
  // table made beforehand may add constraints, indexes and columns with
  // defaults). `kafka` carries DLQ and late records and the suppression of
  // re-read gaps; it outlives this sink.
  static Result<std::unique_ptr<PostgresSink>> Create(const JobSpec& spec, KafkaSink* kafka, NoteCallback on_note);
  ~PostgresSink() override;

  // The next offset this version committed for each of `partitions`
  // partitions (-1: none). FailedPrecondition when they were committed by
  // another spec under the same version.
  Result<std::vector<int64_t>> CommittedOffsets(int32_t partitions);
  // Whether kappa_offsets says no row was ever committed to the version's
  // table (read by CommittedOffsets): its `written` counts are all 0. False
  // when any is unknown (rows of a kappa from before the column).
  bool CommittedNoRow() const { return committed_no_row_; }
  // Whether the version's table holds no row at all.
  Result<bool> TableEmpty();
  // A stop request ends the retries of an unreachable database.
  void SetStopToken(StopToken stop) { stop_ = stop; }
  // Called every ~50 ms while CommitEpoch waits between attempts (on the
  // thread that called it): the job keeps its status line and metrics.
  void SetWhileWaiting(std::function<void()> hook) { while_waiting_ = std::move(hook); }
  // Since when (wall clock ms) CommitEpoch has been retrying the epoch it
  // holds; 0 when it is not. WaitingReason: what the last attempt met
  // ("unreachable", "waiting for a lock on ... held by ...").
  int64_t WaitingSinceMs() const { return waiting_since_ms_; }
  const std::string& WaitingReason() const { return waiting_reason_; }

  void Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) override;
  void EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) override;
  void EmitLate(int32_t partition, const InputRecord& record) override;

  // The checkpoint barrier: flushes the DLQ and late records, then commits
  // the epoch's rows and `offsets` (next offset per input partition) in one
  // database transaction. Waits out a database that is away (until a stop
  // is requested: then an error, the last checkpoint intact). An error
  // leaves nothing of this epoch committed.
  Status CommitEpoch(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets);

  int64_t rows_written() const { return rows_written_; }
  // Rows the database refused (into the DLQ as SinkRejected) and committed
  // past: this run's.
  int64_t rows_rejected() const { return rows_rejected_; }
  // Since the version began, out of `partitions`' inputs: counted in
  // kappa_offsets in the transaction that moves the offsets past them, so
  // they survive restarts and a takeover of the partition. Any thread.
  int64_t RejectedSinceStart(const std::vector<int32_t>& partitions) const;

 private:
  struct Row {
    std::string line;  // COPY text, newline-terminated
    std::string key;
    int32_t partition = 0;
    int64_t offset = 0;  // the input record that closed the row
  };
  PostgresSink(const JobSpec& spec, KafkaSink* kafka, NoteCallback on_note);
  // A new connection; with the temporary table once the version's table exists.
  // `retried`: a reconnect within the checkpoint's retries (not a start).
  Status Connect(bool with_temp_table, bool retried = false);
  // `st` (a statement that failed with `sqlstate`) with, for a lock
  // timeout (55P03), the sessions holding the lock and what to do.
  // `retried`: within the checkpoint's retries (not at a start).
  Status NameLockHolders(const Status& st, const std::string& sqlstate, bool retried = false);
  // The sessions holding locks on the version's table (DescribeLockHolders).
  std::string LockHolders();
  // The version's writer lock on the new connection (see the .cc).
  Status TakeWriterLock();
  std::string failed_sqlstate_;  // of the last Attempt's failed statement
  Status PrepareTables();
  // While no epoch has rows: the session checked, and made again if lost.
  Status KeepSession();
  // Ends the waiting state (WaitingSinceMs, WaitingReason) when it leaves.
  struct WaitingScope {
    PostgresSink& sink;
    ~WaitingScope() {
      sink.waiting_since_ms_ = 0;
      sink.waiting_reason_.clear();
    }
  };
  Stopwatch idle_check_;
  // The version table's columns (name, type, nullable, has a default) and,
  // of them, one NOT NULL without a default that kappa does not write ("":
  // none), which refuses every row.
  Result<PgRows> TableColumns();
  std::string UnwritableColumn(const std::vector<std::vector<std::string>>& columns) const;
  // One try at the epoch's transaction; *rejected counts refused rows.
  Status Attempt(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets);
  // After the set-based insert was refused for a row: row by row under
  // savepoints, the refused ones to the DLQ.
  Status InsertRowByRow();
  Status UpsertOffsets(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets);
  void Note(NoteLevel level, const std::string& text) const {
    if (on_note_) on_note_(level, text);
  }

  const JobSpec& spec_;
  KafkaSink* kafka_;
  NoteCallback on_note_;
  StopToken stop_;
  std::function<void()> while_waiting_;
  int64_t waiting_since_ms_ = 0;
  std::string waiting_reason_;
  std::unique_ptr<PgClient> client_;
  std::string table_;      // quoted, qualified
  std::string offsets_;    // quoted, qualified kappa_offsets
  std::vector<std::string> columns_;
  std::string upsert_sql_;
  std::string version_text_;
  std::vector<Row> rows_;
  std::unordered_map<std::string, size_t> index_;  // output key -> rows_
  std::mutex mutex_;
  std::vector<std::pair<int32_t, int64_t>> committed_;  // the last offsets committed
  int64_t rows_written_ = 0;
  int64_t rows_rejected_ = 0;
  // The refused rows of the epoch being attempted, by input partition.
  std::map<int32_t, int64_t> attempt_rejected_;
  mutable std::mutex rejected_mutex_;
  std::map<int32_t, int64_t> rejected_by_partition_;  // committed, since the version began
  bool committed_no_row_ = false;                      // see CommittedNoRow
  std::string connect_sqlstate_;  // of the statement that failed Connect (temporary table)
  // "pg-before-commit": inside the database transaction, rows and offsets
  // written, before COMMIT (test builds only).
  KAPPA_KILL_SWITCH(kill_switch_);
};

}  // namespace kappa
