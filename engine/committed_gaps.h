// Exactly-once recovery (DESIGN invariant 6). A crash between a Kafka
// transaction's commit and the RocksDB checkpoint leaves Kafka's committed
// offset (tagged with this spec's EosOffsetTag) ahead of RocksDB's: those
// outputs were delivered, the state was not saved. The records of that gap
// are re-read with the partition's outputs suppressed, which rebuilds
// exactly that state (determinism) without emitting twice; at the gap's end
// the partition emits again. Every source calls BeforeAppend for each record
// it hands a task, so the gap ends in one place. One thread per partition.
#pragma once

#include <cstdint>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "engine/job_spec.h"
#include "engine/task.h"

namespace kappa {

class KafkaSink;
class PartitionConsumer;

class CommittedGaps {
 public:
  explicit CommittedGaps(KafkaSink* sink) : sink_(sink) {}

  // Reads the group's committed offsets; every partition whose tagged
  // offset is ahead of its task starts suppressed.
  Status Find(const JobSpec& spec, PartitionConsumer& consumer, const std::vector<Task*>& tasks,
              const NoteCallback& note);
  // The same from offsets committed elsewhere (a PostgreSQL sink's
  // kappa_offsets): committed[i] is task i's committed next offset (-1:
  // none); `by` names where, for the note.
  void FromCommitted(const JobSpec& spec, const std::vector<Task*>& tasks, const std::vector<int64_t>& committed,
                     const std::string& by, const NoteCallback& note);
  // For tests and for runs without exactly_once: no gaps, `partitions` of them.
  void Reset(size_t partitions) {
    end_.assign(partitions, -1);
    final_.assign(partitions, false);
  }

  // Before task i takes the record at `offset`: at the end of its gap, the
  // gap's last batch is processed (still suppressed) and outputs resume.
  void BeforeAppend(size_t i, Task& task, int64_t offset) {
    if (end_[i] >= 0 && offset >= end_[i]) EndGap(i, task);
  }
  // The offset to commit for task i inside a transaction: a partition still
  // re-reading its gap keeps the committed offset where it was.
  int64_t CommitOffset(size_t i, int64_t next_offset) const {
    return end_[i] > next_offset && !write_outputs_ ? end_[i] : next_offset;
  }
  // The output topic lost what the gaps' transactions wrote (deleted or made
  // again since): their outputs are written again, their dead letters and
  // late records stay suppressed (KafkaSink::WriteSuppressedOutputs). The
  // transactions then commit the offsets re-read so far, not the gaps' ends:
  // a restart after a crash in a gap resumes writing where the rewritten
  // outputs end (the rest of the gap's dead letters are written again then).
  // The caller has committed the offsets the tasks start from.
  void WriteOutputs();
  bool suppressing(size_t i) const { return end_[i] >= 0; }
  // At the end of a bounded run's input, before the final watermark: a gap
  // re-read to its end closes unless the transaction that committed it was
  // a final watermark's (its windows are in the log then). Without this the
  // gap stayed open through the final watermark, whose windows were then
  // suppressed though no run had written them (after a run without
  // --final-watermark committed and crashed before its checkpoint); a
  // PostgreSQL sink's upserts take the same rows again unchanged.
  void AtInputEnd(size_t i, Task& task) {
    if (end_[i] >= 0 && !final_[i]) EndGap(i, task);
  }
  // Records still to re-read with outputs suppressed, over all tasks.
  int64_t remaining(const std::vector<Task*>& tasks) const {
    int64_t n = 0;
    for (size_t i = 0; i < end_.size() && i < tasks.size(); ++i) {
      if (end_[i] > tasks[i]->next_offset()) n += end_[i] - tasks[i]->next_offset();
    }
    return n;
  }

 private:
  void EndGap(size_t i, Task& task);
  void Suppress(const JobSpec& spec, Task& task, size_t i, int64_t committed, const std::string& by,
                const NoteCallback& note);
  KafkaSink* sink_;
  std::vector<int64_t> end_;  // per task: the gap's end (-1: none)
  std::vector<bool> final_;   // per task: committed by a final watermark's transaction
  bool write_outputs_ = false;  // WriteOutputs
};

}  // namespace kappa
