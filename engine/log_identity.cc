#include "engine/log_identity.h"

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
  std::vector<RecordAtOffset> asks;
  std::vector<const Task*> asked;  // by ask
  for (size_t i = 0; i < tasks.size() && i < marks.size() && i < check.size(); ++i) {
    const TaskCheckpointData& c = tasks[i]->checkpoint();
    // Below the log start: retention's case (the gap rule). At or past the
    // end: the past-the-end check's.
    if (!check[i] || c.last_offset < 0 || c.last_offset < marks[i].low || c.last_offset >= marks[i].high) continue;
    RecordAtOffset a;
    a.topic = spec.source_topic;
    a.partition = tasks[i]->partition();
    a.offset = c.last_offset;
    asks.push_back(std::move(a));
    asked.push_back(tasks[i]);
  }
  if (asks.empty()) return Status::OK();
  std::string poll_error;
  KAPPA_RETURN_IF_ERROR(ReadRecordsAt(config, spec.ConsumerGroup(), &asks, wait_ms, &poll_error));
  std::string unread;
  for (size_t k = 0; k < asks.size(); ++k) {
    const RecordAtOffset& a = asks[k];
    // kNone: compaction (or an aborted transaction) removed the record, or
    // retention did: there is nothing to compare.
    if (a.found == RecordAtOffset::Found::kNone) continue;
    if (a.found == RecordAtOffset::Found::kUnread) {
      unread += " " + std::to_string(a.partition);
      continue;
    }
    const TaskCheckpointData& c = asked[k]->checkpoint();
    const uint64_t now = RecordFingerprint(a.key, a.value, a.timestamp_ms);
    if (now == c.last_fingerprint) continue;
    return Status::FailedPrecondition(
        Where(spec, a.partition) + ": the job's checkpoint follows offset " + std::to_string(c.last_offset) +
        ", but the record " + spec.source_topic + " holds at offset " + std::to_string(c.last_offset) +
        " now is not the one the job consumed there (its key, value or timestamp differ): the topic was "
        "recreated or truncated since the checkpoint, and resuming at offset " + std::to_string(c.next_offset) +
        " would skip the new log's records below it. Not resuming: " + Advice(spec));
  }
  if (!poll_error.empty()) {
    if (note) {
      note(NoteLevel::kWarning, spec.source_topic + ": cannot read back the records the checkpoint follows (" +
                                    poll_error + "); resuming without checking that the log is the same");
    }
    return Status::OK();
  }
  if (!unread.empty() && note) {
    note(NoteLevel::kWarning, spec.source_topic + ": the records the checkpoint follows in partition(s)" + unread +
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
