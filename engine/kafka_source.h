// KafkaSource: reads the job's source topic from exact offsets through one
// PartitionConsumer (manually assigned, no rebalancing, no automatic offset
// reset), routes each message to its partition's task in offset order and
// runs the touched tasks' chains once per batch, on `parallelism` worker
// threads when there is more than one (each task on one thread at a time:
// its outputs are those of a single-threaded run; the sink is then
// concurrent). Records below a task's next
// offset (already covered by its checkpoint) are dropped here. A position
// below Kafka's log start goes through the history-gap rule; a position
// past the log end means the state belongs to another log and is refused,
// and so does a restored position whose last record differs from the one
// checkpointed (engine/log_identity.h).
// Driven by one thread.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "base/worker_pool.h"
#include "engine/committed_gaps.h"
#include "engine/job_spec.h"
#include "engine/source.h"
#include "engine/start_position.h"
#include "kafka/partition_consumer.h"

namespace kappa {

class KafkaSink;

class KafkaSource final : public Source {
 public:
  KafkaSource(const JobSpec& spec, PartitionConsumer& consumer, CommittedGaps& gaps, HistoryGapRule& gap_rule,
              NoteCallback note, int parallelism = 1, KafkaSink* sink = nullptr, const KafkaConfig* config = nullptr);
  ~KafkaSource() override;

  Result<int32_t> Partitions() override;
  Status Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) override;
  Status Read(int64_t budget, int64_t* records) override;
  bool exhausted() const override { return false; }
  int64_t LogEnd(size_t i) const override;
  int64_t UnreachableSinceMs() const override { return consumer_.UnreachableSinceMs(); }
  std::string UnreachableReason() const override { return consumer_.UnreachableReason(); }
  int64_t EndAtOpen(size_t i) const override { return end_at_open_[i]; }
  int64_t ReadPast(size_t i) const override;
  std::string Describe() const override;

  // For the hybrid source. Reads every partition's log start and end now
  // (the ends become EndAtOpen).
  Result<std::vector<Watermarks>> ReadWatermarks(size_t partitions);
  // The offset a task wants by the spec's start rule on this topic.
  Result<int64_t> Wanted(const Task& task, bool restored, const Watermarks& marks);
  // Whether the job has run before (some partition restored from its
  // checkpoint): a partition without a checkpoint then was added to the
  // topic since, and is read from its beginning whatever `start` says
  // (`latest` means where the job started, not where a new partition is).
  bool ran_before() const { return ran_before_; }
  void Note(NoteLevel level, const std::string& text) const {
    if (note_) note_(level, text);
  }
  void SetRanBefore(const std::vector<bool>& restored) {
    ran_before_ = std::find(restored.begin(), restored.end(), true) != restored.end();
  }
  // The restore's identity check (engine/log_identity.h) for the tasks with
  // check[i]: the record each checkpoint follows is still the one in Kafka.
  // Skipped without a KafkaConfig (a source made without one, in tests).
  Status VerifyRestored(const std::vector<Task*>& tasks, const std::vector<Watermarks>& marks,
                        const std::vector<bool>& check);
  // Starts reading every task at its next offset (the switch from the
  // archive, for tasks with after_archive[i]). Applies the gap rule against
  // the log start as it is now.
  Status Continue(const std::vector<Task*>& tasks, const std::vector<bool>& after_archive);

  // Scale-out (the consumer joined its group; the runner positions tasks as
  // the group assigns them): `tasks` has one task per partition, and only
  // those marked 1 in *owned (outliving the source) get records; a record of
  // another partition (fetched before a revoke, or of a partition still
  // read from the archive: 2) is dropped. Reads every
  // partition's log end for EndAtOpen.
  Status OpenForGroup(const std::vector<Task*>& tasks, const std::vector<uint8_t>* owned);
  // Replaces task i (a partition handed back gets a fresh task).
  void SetTask(size_t i, Task* task) { tasks_[i] = task; }
  // Where task `t`, just assigned, starts reading: its checkpoint (restored)
  // or the spec's start, through the gap rule and the past-the-end check.
  Status PositionAssigned(Task& t, bool restored);
  // VerifyRestored for restored tasks just assigned that read on in Kafka.
  Status VerifyAssigned(const std::vector<Task*>& tasks);
  // Partition p's log start and end now (its end also becomes EndAtOpen).
  Result<Watermarks> WatermarksOf(int32_t p);
  // Applies the gap rule and the past-the-end check to task t against `w`
  // (after_archive: it comes from the archive, which ended at its offset).
  Status PositionOne(Task& t, const Watermarks& w, bool after_archive, bool fresh);

 private:
  // `fresh[i]`: task i starts here (a skipped gap moves its start offset too).
  Status Assign(const std::vector<Task*>& tasks, const std::vector<Watermarks>& marks,
                const std::vector<bool>& after_archive, const std::vector<bool>& fresh);

  const JobSpec& spec_;
  const KafkaConfig* config_;
  PartitionConsumer& consumer_;
  CommittedGaps& gaps_;
  HistoryGapRule& gap_rule_;
  NoteCallback note_;
  std::vector<Task*> tasks_;
  const std::vector<uint8_t>* owned_ = nullptr;
  std::vector<int64_t> end_at_open_;
  std::vector<Task*> touched_;
  std::vector<uint8_t> listed_;  // by partition: in touched_ (each task once, whatever BeforeAppend processed)
  MessageBatch batch_;
  int parallelism_;
  KafkaSink* sink_;
  std::unique_ptr<WorkerPool> pool_;  // made on the first batch that touches two tasks
  bool ran_before_ = false;
};

}  // namespace kappa
