#include "engine/log_identity.h"

#include <librdkafka/rdkafka.h>

#include <chrono>

#include "engine/record_fingerprint.h"
#include "engine/task.h"

namespace kappa {
namespace {

std::string Where(const JobSpec& spec, int32_t partition) {
  return spec.source_topic + "[" + std::to_string(partition) + "]";
}

// What to do when the log under the checkpoint is another one: its state
// cannot go on, and it is not edited in place.
std::string Advice(const JobSpec& spec) {
  return "to process the new topic, run it as a new version (bump `version:`, with its own state directory) or "
         "start over with --reset-state; to go on with the old log, restore it under this name. The state in " +
         spec.state_dir + " belongs to the old log";
}

}  // namespace

Status VerifyResumedLog(const KafkaConfig& config, const JobSpec& spec, const std::vector<Task*>& tasks,
                        const std::vector<Watermarks>& marks, const std::vector<bool>& check,
                        const NoteCallback& note, int wait_ms) {
  // Index by partition: the tasks still waiting for their record.
  std::vector<Task*> pending(tasks.size(), nullptr);
  size_t open = 0;
  PartitionList assignment;
  for (size_t i = 0; i < tasks.size() && i < marks.size() && i < check.size(); ++i) {
    const TaskCheckpointData& c = tasks[i]->checkpoint();
    // Below the log start: retention's case (the gap rule). At or past the
    // end: the past-the-end check's.
    if (!check[i] || c.last_offset < 0 || c.last_offset < marks[i].low || c.last_offset >= marks[i].high) continue;
    pending[static_cast<size_t>(tasks[i]->partition())] = tasks[i];
    assignment.Add(spec.source_topic, tasks[i]->partition(), c.last_offset);
    ++open;
  }
  if (open == 0) return Status::OK();

  PartitionConsumerOptions options;
  options.group = spec.ConsumerGroup();
  options.hold_deleted = true;  // retention ran past a record: no verdict for it
  options.queued_min_messages = 1;
  options.queued_max_kbytes = 1024;
  auto consumer = PartitionConsumer::Create(config, std::move(options));
  if (!consumer.ok()) return consumer.status();
  KAPPA_RETURN_IF_ERROR((*consumer)->Assign(assignment));

  MessageBatch batch;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    Status polled = (*consumer)->Poll(1024, 100, &batch);
    if (!polled.ok()) {
      if (note) {
        note(NoteLevel::kWarning, spec.source_topic + ": cannot read back the records the checkpoint follows (" +
                                      polled.message() + "); resuming without checking that the log is the same");
      }
      return Status::OK();
    }
    for (const DeletedRange& d : (*consumer)->TakeDeleted()) {
      if (d.partition >= 0 && static_cast<size_t>(d.partition) < pending.size() && pending[d.partition]) {
        pending[d.partition] = nullptr;
        --open;
      }
    }
    for (size_t k = 0; k < batch.size(); ++k) {
      const rd_kafka_message_t* m = batch[k];
      if (m->partition < 0 || static_cast<size_t>(m->partition) >= pending.size()) continue;
      Task* task = pending[m->partition];
      if (!task) continue;
      pending[m->partition] = nullptr;
      --open;
      const TaskCheckpointData& c = task->checkpoint();
      // A higher offset: compaction (or an aborted transaction) removed the
      // record, so there is nothing to compare.
      if (m->offset != c.last_offset) continue;
      const uint64_t now = RecordFingerprint(m->key, static_cast<uint32_t>(m->key_len), m->payload,
                                             static_cast<uint32_t>(m->len), rd_kafka_message_timestamp(m, nullptr));
      if (now == c.last_fingerprint) continue;
      const std::string where = Where(spec, m->partition);
      return Status::FailedPrecondition(
          where + ": the job's checkpoint follows offset " + std::to_string(c.last_offset) + ", but the record " +
          spec.source_topic + " holds at offset " + std::to_string(c.last_offset) +
          " now is not the one the job consumed there (its key, value or timestamp differ): the topic was "
          "recreated or truncated since the checkpoint, and resuming at offset " + std::to_string(c.next_offset) +
          " would skip the new log's records below it. Not resuming: " + Advice(spec));
    }
  }
  if (open > 0 && note) {
    std::string which;
    for (size_t p = 0; p < pending.size(); ++p) {
      if (pending[p]) which += " " + std::to_string(p);
    }
    note(NoteLevel::kWarning, spec.source_topic + ": the records the checkpoint follows in partition(s)" + which +
                                  " could not be read back within " + std::to_string(wait_ms) +
                                  " ms; resuming without checking that their log is the same");
  }
  return Status::OK();
}

Status CheckStoredPartitions(const JobSpec& spec, const std::vector<int32_t>& stored, int32_t partitions) {
  std::string gone;
  for (int32_t p : stored) {
    if (p >= partitions) gone += (gone.empty() ? "" : ", ") + Where(spec, p);
  }
  if (gone.empty()) return Status::OK();
  return Status::FailedPrecondition(
      spec.state_dir + " holds checkpoints of " + gone + " but " + spec.source_topic + " has only " +
      std::to_string(partitions) + " partition(s): the topic was recreated with fewer partitions (or this state "
      "belongs to another topic), and those partitions' state would be dropped. Not resuming: " + Advice(spec));
}

}  // namespace kappa
