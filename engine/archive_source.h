// ArchiveSource: replays partitions from the log archive (archive/), in
// rounds on `parallelism` worker threads: in a round the workers take
// partitions off a shared index and process up to a budget of each (in
// proportion to what each has left, unless a rate cap sets it), so a
// partition is only ever processed by one thread at a time, in offset order,
// and the output equals a single-threaded run; between rounds (all workers
// idle) the runner checkpoints and reports; with several workers, whoever
// finishes an archive block serves the sink's delivery reports (left to the
// runner between rounds, they kept the other workers waiting). An uncapped round ends after
// about kRoundMs: its slices are large (a task's state is warm in the
// core's cache for the whole slice) and stop at the next archive block once
// the round's time is up, so the workers reach the barrier together and the
// partitions a round did not reach have the most left, and go first, in
// the next. Payloads stay in the reader's aligned block buffer (no copy).
// When every partition has reached the end listed at open, the ends are
// read again (an archiver may have added more) up to a few passes; then the
// source is exhausted. Read() is called by one thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "base/progress.h"
#include "base/worker_pool.h"
#include "engine/committed_gaps.h"
#include "engine/job_spec.h"
#include "engine/source.h"
#include "engine/start_position.h"

namespace kappa {

class KafkaSink;

class ArchiveSource final : public Source {
 public:
  ArchiveSource(const JobSpec& spec, std::string dir, int parallelism, KafkaSink* sink, CommittedGaps& gaps,
                HistoryGapRule& gap_rule);
  ~ArchiveSource() override;

  // The archived partitions; they must be 0..n-1 (an archive-only job has
  // no Kafka topic to ask). A partition whose newest segment ends in an
  // incomplete block no writer is finishing is warned of through `on_note`
  // (SetOnNote): the replay ends where the archive's whole blocks do.
  Result<int32_t> Partitions() override;
  void SetOnNote(NoteCallback on_note) { on_note_ = std::move(on_note); }
  // Archive only: every task's start must be in the archive (the gap rule
  // applies below its first offset); a start time is looked up in it.
  Status Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) override;
  Status Read(int64_t budget, int64_t* records) override;
  bool exhausted() const override { return exhausted_; }
  int64_t LogEnd(size_t i) const override { return std::max<int64_t>(end_[i], 0); }
  int64_t EndAtOpen(size_t i) const override { return std::max<int64_t>(end_[i], 0); }
  int64_t archive_records() const override { return records_; }
  std::string Describe() const override;

  // For the hybrid source: what the archive holds of each partition (read
  // once), and serving task i from `offset` (inside the archive) to its end.
  Status ReadRanges();
  const ArchiveRange& Range(size_t i) const { return ranges_[i]; }
  bool Holds(size_t i, int64_t offset) const {
    return ranges_[i].records > 0 && offset >= ranges_[i].first_offset && offset < ranges_[i].end_offset;
  }
  void Attach(const std::vector<Task*>& tasks);
  // The first archived offset in [from, until) of partition `partition`
  // whose record's timestamp is at or after `ms` (Kafka's offsets-for-times,
  // answered from the archive by reading it from `from`); -1 if none.
  Result<int64_t> OffsetForTime(int32_t partition, int64_t ms, int64_t from, int64_t until);
  Status Serve(size_t i);
  bool serving(size_t i) const { return readers_[i] != nullptr; }

  // Scale-out (the runner serves the partitions the group gives it): task i
  // replaced (a partition handed over gets a fresh task), served no more,
  // and one round over the served tasks not yet at their end (none:
  // *records 0), never reading the ends again: a partition switches to
  // Kafka at the end the archive had when it was served.
  void SetTask(size_t i, Task* task) { tasks_[i] = task; }
  void Unserve(size_t i);
  Status ReadServed(int64_t budget, int64_t* records);
  bool has_pending() const { return !pending_.empty(); }
  // Whether task i is served and has reached its end (its switch to Kafka is due).
  bool Done(size_t i) const;

  // Records per pending partition planned for an uncapped round (shared out
  // in proportion to what each has left); tests make it small. A slice of a
  // partition is that large (about 0.1 s of the stateful replay) because
  // switching a core to another task costs reloading the task's state into
  // its cache: at 65,536 records a slice, that was 8% of the replay.
  static constexpr int64_t kRoundRecords = 1 << 19;
  // An uncapped round's time: the slices stop at their next archive block
  // after it (the runner checkpoints, reports and sees a stop request
  // between rounds).
  static constexpr int kRoundMs = 250;
  // Records a batch of the chain takes at most. An archive block holds
  // thousands (up to 1 MiB): a batch that large streams its ~100-byte
  // InputRecords through every operator from beyond the core's L2 (the
  // task's state competes for it); 1,024 keep them close (3-5% of the
  // stateful replay). Results never depend on batch boundaries.
  static constexpr size_t kBatchRecords = 1024;
  void SetRoundRecordsForTesting(int64_t records) { round_records_ = records; }
  void SetRoundMsForTesting(int ms) { round_ms_ = ms; }

 private:
  // What ReadRanges read, as the ranges of partitions 0..n-1.
  void TakeRanges(const std::vector<ArchiveRange>& ranges);
  // `until`: where an uncapped round's time ends (time_point::max(): none).
  Status Slice(size_t i, int64_t budget, std::chrono::steady_clock::time_point until,
               std::vector<ArchiveRecord>* block, int64_t* done);
  Status Round(int64_t budget, int64_t* records);
  Status NextPass();

  const JobSpec& spec_;
  std::string dir_;
  NoteCallback on_note_;
  int parallelism_;
  KafkaSink* sink_;
  CommittedGaps& gaps_;
  HistoryGapRule& gap_rule_;
  std::vector<ArchiveRange> ranges_;  // by partition
  std::vector<Task*> tasks_;
  std::vector<std::unique_ptr<ArchiveReader>> readers_;  // null: not served from the archive
  std::vector<int64_t> end_;                             // per task: the end it reads to (-1: none)
  std::vector<size_t> pending_;
  size_t first_ = 0;  // where in pending_ the next capped round starts (they take turns)
  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::vector<ArchiveRecord>> blocks_;
  int passes_ = 0;
  bool exhausted_ = false;
  int64_t records_ = 0;
  int64_t round_records_ = kRoundRecords;
  int round_ms_ = kRoundMs;
};

}  // namespace kappa
