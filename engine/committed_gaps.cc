#include "engine/committed_gaps.h"

#include "engine/kafka_sink.h"
#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"

namespace kappa {

Status CommittedGaps::Find(const JobSpec& spec, PartitionConsumer& consumer, const std::vector<Task*>& tasks,
                           const NoteCallback& note) {
  Reset(tasks.size());
  PartitionList list(static_cast<int>(tasks.size()));
  for (const Task* t : tasks) list.Add(spec.source_topic, t->partition());
  KAPPA_RETURN_IF_ERROR(consumer.Committed(&list, 10000));
  const std::string tag = EosOffsetTag(spec);
  const std::string final_tag = EosFinalOffsetTag(spec);
  for (int i = 0; i < list.size(); ++i) {
    const int32_t p = list.partition(i);
    const int64_t committed = list.offset(i);
    if (p < 0 || p >= static_cast<int32_t>(tasks.size()) || committed < 0) continue;
    const std::string metadata = list.Metadata(i);
    if (metadata != tag && metadata != final_tag) continue;  // not committed by this spec's transactions
    if (committed <= tasks[p]->next_offset()) continue;
    Suppress(spec, *tasks[p], p, committed, "a Kafka transaction", note);
    final_[static_cast<size_t>(p)] = metadata == final_tag;
  }
  return Status::OK();
}

void CommittedGaps::FromCommitted(const JobSpec& spec, const std::vector<Task*>& tasks,
                                  const std::vector<int64_t>& committed, const std::string& by,
                                  const NoteCallback& note) {
  Reset(tasks.size());
  for (size_t i = 0; i < tasks.size() && i < committed.size(); ++i) {
    if (committed[i] > tasks[i]->next_offset()) Suppress(spec, *tasks[i], i, committed[i], by, note);
  }
}

void CommittedGaps::Suppress(const JobSpec& spec, Task& task, size_t i, int64_t committed, const std::string& by,
                             const NoteCallback& note) {
  end_[i] = committed;
  sink_->SetSuppressed(task.partition(), true);
  if (note) {
    note(NoteLevel::kInfo, spec.source_topic + "[" + std::to_string(task.partition()) + "]: offsets " +
                               std::to_string(task.next_offset()) + ".." + std::to_string(committed - 1) +
                               " were committed by " + by + " after the last checkpoint; re-reading them "
                               "with outputs suppressed");
  }
}

void CommittedGaps::WriteOutputs() {
  write_outputs_ = true;
  sink_->WriteSuppressedOutputs();
}

void CommittedGaps::EndGap(size_t i, Task& task) {
  task.Process();
  sink_->SetSuppressed(task.partition(), false);
  end_[i] = -1;
}

}  // namespace kappa
