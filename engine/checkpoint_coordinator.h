// CheckpointCoordinator: takes a job's checkpoints in the one order that
// makes them safe (DESIGN invariants 1 and 6), readable here and nowhere
// else:
//   1. the sink: at-least-once flushes every output so far (all acks), or
//      where the sink can, closes them and hands the wait for their acks
//      to the state backend's writer, which writes the checkpoint only
//      after it (processing goes on meanwhile);
//      exactly-once commits the epoch's Kafka transaction (or PostgreSQL
//      transaction) together with the input offsets (a partition re-reading
//      a committed gap keeps the offset the sink already has), or where the
//      sink can, hands that commit to the state backend's writer, which
//      runs it before it writes the checkpoint, while processing goes on
//      (the Kafka sink holds the new outputs for the next transaction);
//   2. the state: every task's dirty state, next offset, watermark and
//      counters, the epoch and the spec hash in ONE synced RocksDB write
//      (captured now, made durable in the background, in epoch order);
//   3. the consumer group (informational, at-least-once only): the offsets
//      of the last checkpoint that is durable.
// Before 1, the state directory's free space is checked (a headroom of the
// larger of a minimum and twice the last checkpoint's size): a full disk
// stops the job with a clear error and its last checkpoint intact, before
// RocksDB can fail mid-write.
// A failure in 1 leaves 2 undone, so the job stops with its last checkpoint
// intact. The clock is passed in (checkpoint intervals, stall times).
// Driven by the job's thread while no worker runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "base/test_hooks.h"
#include "engine/committed_gaps.h"
#include "state/state_headroom.h"

namespace kappa {

class PartitionConsumer;
class StateBackend;
class Task;

// What the coordinator needs of the sink.
class OutputBarrier {
 public:
  virtual ~OutputBarrier() = default;
  virtual bool transactional() const = 0;
  // At-least-once: returns once every output so far is acknowledged, or the
  // first delivery failure.
  virtual Status Flush(int timeout_ms) = 0;
  // Exactly-once: commits the epoch's outputs and `offsets` (next offset per
  // input partition) in one transaction and opens the next one. `epoch` is
  // the checkpoint's number (a database sink records it beside the offsets).
  virtual Status CommitEpoch(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets) = 0;
  // At-least-once, instead of Flush where the sink can: closes the outputs
  // so far and returns what waits for their acknowledgements (run by the
  // state backend's writer before it writes the checkpoint, so processing
  // goes on meanwhile). Null: the sink cannot, and Flush is the barrier.
  virtual std::function<Status()> CloseOutputs(int /*timeout_ms*/) { return nullptr; }
  // Exactly-once, instead of CommitEpoch where the sink can: returns what
  // commits the epoch (run by the state backend's writer before it writes
  // the checkpoint; one commit at a time). Null: CommitEpoch is the barrier.
  virtual std::function<Status()> CommitEpochLater(int64_t /*epoch*/,
                                                   const std::vector<std::pair<int32_t, int64_t>>& /*offsets*/) {
    return nullptr;
  }
  // With CommitEpochLater: whether, within timeout_ms, the commit before has
  // ended, which the next CommitEpochLater would otherwise wait for.
  virtual bool AwaitCommitRoom(int /*timeout_ms*/) { return true; }
};

struct CheckpointStats {
  int64_t epochs = 0;          // taken by this run
  double max_ms = 0;           // the longest stall of processing for one checkpoint
  double last_ms = 0;          // the stall of the last one
  double total_ms = 0;
  double flush_total_ms = 0;   // of which: the sink barrier (acks, or the whole transaction commit,
                               // where the processing thread waits for them)
  double writer_wait_total_ms = 0;  // of which: waiting for room behind the state writer's
  double writer_wait_max_ms = 0;    // pending checkpoints (it is behind: slow acks or disk)
  double capture_max_ms = 0;        // the longest copy of the dirty state out of the tables
  double final_durable_ms = 0; // at the end: waiting for the last checkpoint to be durable
};

class CheckpointCoordinator {
 public:
  // `group`: where informational offsets go (null: nowhere, e.g. an
  // archive-only run). `tasks` and every collaborator outlive the coordinator.
  CheckpointCoordinator(std::vector<Task*> tasks, StateBackend& backend, OutputBarrier& barrier,
                        PartitionConsumer* group, std::string topic, const CommittedGaps& gaps,
                        int64_t interval_ms, const Clock& clock = SteadyClock::Instance());

  // The epoch of the last checkpoint begun (the stored one at start).
  int64_t epoch() const { return epoch_; }
  bool Due() const { return clock_.NowMs() - last_ms_ >= interval_ms_; }
  // The free space each checkpoint needs first (default: 64 MiB or twice
  // the last checkpoint), and how it is measured (tests inject one).
  void SetHeadroom(HeadroomPolicy policy, FreeSpaceFn free_space = StatvfsFreeBytes) {
    headroom_ = policy;
    free_space_ = std::move(free_space);
  }
  // Scale-out: only the tasks whose partition is marked in *owned take part
  // (offsets, state, group commits); the rest belong to other processes.
  // Null: every task. The vector outlives the coordinator.
  void SetOwned(const std::vector<uint8_t>* owned) { owned_ = owned; }
  // Replaces task i (scale-out: a partition handed over gets a fresh task).
  void SetTask(size_t i, Task* task) { tasks_[i] = task; }
  // Called with the taking part tasks and the new epoch before step 1 (the
  // changelog's entries and markers, which the barrier then makes durable).
  using BeforeBarrier = std::function<Status(const std::vector<Task*>& tasks, int64_t epoch)>;
  void SetBeforeBarrier(BeforeBarrier hook) { before_barrier_ = std::move(hook); }
  // Called about every 200 ms while a checkpoint waits for the state's
  // writer (which waits for the sink's acks or commit of the checkpoints
  // before: a broker away can hold it for minutes), so that the job's
  // status line and metrics go on saying what it waits for.
  void SetWhileWaiting(std::function<void()> hook) { while_waiting_ = std::move(hook); }
  // Halfway to the first checkpoint (and to any other that would find no
  // ready capture), asks the state's writer to ready one of about the
  // interval's size (StateBackend::PrepareCapture). Cheap: the job calls
  // it as it goes, beside Due().
  void PrepareCapture();
  // Takes one checkpoint now.
  Status Checkpoint();
  // The final checkpoint of a clean stop, durable before it returns.
  Status Finish();
  const CheckpointStats& stats() const { return stats_; }
  // Step 3: at-least-once with a group, the informational commit of the
  // last begun checkpoint's offsets once it is durable (once). Cheap: the
  // job calls it as it goes, so the commit follows durability closely.
  void CommitDurableOffsets();

 private:
  Status CheckpointNow();
  // The tasks taking part (SetOwned).
  std::vector<Task*> ActiveTasks() const;
  // Step 1; *acked: set when the sink hands over the wait for its acks (CloseOutputs).
  Status SinkBarrier(const std::vector<Task*>& tasks, std::function<Status()>* acked);
  void CommitGroupOffsets();
  // Waits until the writer has room for another checkpoint (or, `idle`,
  // has made every begun one durable), calling while_waiting_ meanwhile;
  // the milliseconds waited.
  double AwaitWriter(bool idle);

  std::vector<Task*> tasks_;
  const std::vector<uint8_t>* owned_ = nullptr;
  BeforeBarrier before_barrier_;
  std::function<void()> while_waiting_;
  StateBackend& backend_;
  OutputBarrier& barrier_;
  PartitionConsumer* group_;
  std::string topic_;
  const CommittedGaps& gaps_;
  int64_t interval_ms_;
  const Clock& clock_;
  int64_t epoch_ = 0;
  int64_t last_ms_ = 0;
  bool prepared_ = false;  // PrepareCapture asked the backend in this interval
  // The offsets of the last begun checkpoint, committed to the group once
  // that checkpoint is durable.
  int64_t pending_group_epoch_ = 0;
  std::vector<std::pair<int32_t, int64_t>> pending_group_offsets_;
  CheckpointStats stats_;
  HeadroomPolicy headroom_;
  FreeSpaceFn free_space_ = StatvfsFreeBytes;
  KAPPA_KILL_SWITCH(kill_switch_);
};

}  // namespace kappa
