#include "engine/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>

#include "engine/kafka_sink.h"
#include "engine/log_identity.h"
#include "engine/reinjected.h"
#include "engine/task.h"

namespace kappa {
namespace {
constexpr int kConsumeBatch = 8192;
constexpr int kPollWaitMs = 10;
}  // namespace

KafkaSource::KafkaSource(const JobSpec& spec, PartitionConsumer& consumer, CommittedGaps& gaps,
                         HistoryGapRule& gap_rule, NoteCallback note, int parallelism, KafkaSink* sink,
                         const KafkaConfig* config)
    : spec_(spec),
      config_(config),
      consumer_(consumer),
      gaps_(gaps),
      gap_rule_(gap_rule),
      note_(std::move(note)),
      parallelism_(sink != nullptr ? std::max(1, parallelism) : 1),
      sink_(sink) {}

KafkaSource::~KafkaSource() = default;

Result<int32_t> KafkaSource::Partitions() { return consumer_.PartitionCount(spec_.source_topic); }

Result<std::vector<Watermarks>> KafkaSource::ReadWatermarks(size_t partitions) {
  auto marks = consumer_.AllWatermarks(spec_.source_topic, static_cast<int32_t>(partitions));
  if (!marks.ok()) return marks.status();
  end_at_open_.resize(partitions, 0);
  for (size_t i = 0; i < partitions; ++i) end_at_open_[i] = std::max(end_at_open_[i], (*marks)[i].high);
  return marks;
}

Result<int64_t> KafkaSource::Wanted(const Task& task, bool restored, const Watermarks& marks) {
  const int32_t p = task.partition();
  auto by_time = [&](int64_t ms) -> Result<int64_t> {
    auto offset = consumer_.OffsetForTime(spec_.source_topic, p, ms);
    if (offset.ok() && note_) {
      note_(NoteLevel::kInfo, spec_.source_topic + "[" + std::to_string(p) + "]: start time " + std::to_string(ms) +
                                  " resolves to offset " + std::to_string(*offset < 0 ? marks.high : *offset) +
                                  " (log " + std::to_string(marks.low) + ".." + std::to_string(marks.high) + ")");
    }
    return offset;
  };
  return WantedOffset(spec_, p, restored, ran_before_, task.next_offset(), marks.high, by_time, note_);
}

Status KafkaSource::Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) {
  SetRanBefore(restored);
  auto marks = ReadWatermarks(tasks.size());
  if (!marks.ok()) return marks.status();
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto wanted = Wanted(*tasks[i], restored[i], (*marks)[i]);
    if (!wanted.ok()) return wanted.status();
    if (!restored[i]) tasks[i]->StartAt(*wanted);
  }
  KAPPA_RETURN_IF_ERROR(VerifyRestored(tasks, *marks, restored));
  std::vector<bool> fresh(restored.size());
  for (size_t i = 0; i < restored.size(); ++i) fresh[i] = !restored[i];
  return Assign(tasks, *marks, std::vector<bool>(tasks.size(), false), fresh);
}

Status KafkaSource::VerifyRestored(const std::vector<Task*>& tasks, const std::vector<Watermarks>& marks,
                                   const std::vector<bool>& check) {
  if (!config_) return Status::OK();
  return VerifyResumedLog(*config_, spec_, tasks, marks, check, note_);
}

Status KafkaSource::Continue(const std::vector<Task*>& tasks, const std::vector<bool>& after_archive) {
  auto marks = ReadWatermarks(tasks.size());
  if (!marks.ok()) return marks.status();
  return Assign(tasks, *marks, after_archive, std::vector<bool>(tasks.size(), false));
}

// Every task reads on from its next offset: the one place where Kafka's log
// start and end are held against where a task is.
Status KafkaSource::Assign(const std::vector<Task*>& tasks, const std::vector<Watermarks>& marks,
                           const std::vector<bool>& after_archive, const std::vector<bool>& fresh) {
  tasks_ = tasks;
  PartitionList assignment(static_cast<int>(tasks.size()));
  for (size_t i = 0; i < tasks.size(); ++i) {
    KAPPA_RETURN_IF_ERROR(PositionOne(*tasks[i], marks[i], after_archive[i], fresh[i]));
    assignment.Add(spec_.source_topic, tasks[i]->partition(), tasks[i]->next_offset());
  }
  return consumer_.Assign(assignment);
}

Status KafkaSource::PositionOne(Task& t, const Watermarks& w, bool after_archive, bool fresh) {
  const std::string where = spec_.source_topic + "[" + std::to_string(t.partition()) + "]";
  const int64_t archive_end = t.next_offset();  // after_archive: where the archive ended
  if (t.next_offset() < w.low) {
    const std::string holdings =
        std::string(after_archive ? "the archive ends there and " : "") + "the Kafka log starts at " +
        std::to_string(w.low);
    // The embedded broker drops a partition's oldest records past 5 MiB:
    // "deleted by retention" and an --import sent its users looking for a
    // retention setting and a file they never had (a bug bash).
    const bool embedded = IsEmbeddedBroker(consumer_.handle()).value_or(false);
    auto next = gap_rule_.Apply(
        t.partition(), t.next_offset(), w.low, holdings,
        embedded ? "dropped by the embedded broker, which keeps the last 5 MiB of each partition: write the topic "
                   "over more partitions (kappa broker --topic NAME:PARTITIONS), or keep its history in an "
                   "archive (`kappa archive` following it as it is written)"
        : after_archive ? "retention deleted them; keep `kappa archive` running so the archive covers them"
                        : "deleted by retention before they were archived; restore them into an archive with "
                          "`kappa archive --import`");
    if (!next.ok()) return next.status();
    if (fresh) t.StartAt(*next);
    else t.SkipTo(*next);
  }
  if (t.next_offset() > w.high) {
    return PastTheEnd(spec_, t.partition(), t.next_offset(), "the Kafka log ends at " + std::to_string(w.high));
  }
  if (after_archive && note_) {
    // Where the archive ended, and the gap skipped (allow_truncated_history)
    // if any: the gap's end read as the archive's (a bug bash).
    const std::string gap = t.next_offset() > archive_end ? ", skipping the gap " + std::to_string(archive_end) +
                                                                ".." + std::to_string(t.next_offset() - 1)
                                                          : "";
    note_(NoteLevel::kInfo, where + ": archive done at offset " + std::to_string(archive_end) + gap +
                                ", switching to Kafka at " + std::to_string(t.next_offset()) + " (log " +
                                std::to_string(w.low) + ".." + std::to_string(w.high) + ")");
  }
  return Status::OK();
}

Status KafkaSource::OpenForGroup(const std::vector<Task*>& tasks, const std::vector<uint8_t>* owned) {
  auto marks = ReadWatermarks(tasks.size());
  if (!marks.ok()) return marks.status();
  tasks_ = tasks;
  owned_ = owned;
  return Status::OK();
}

Result<Watermarks> KafkaSource::WatermarksOf(int32_t p) {
  auto marks = consumer_.PartitionWatermarks(spec_.source_topic, p);
  if (!marks.ok()) return marks.status();
  if (static_cast<size_t>(p) < end_at_open_.size()) end_at_open_[p] = std::max(end_at_open_[p], marks->high);
  return marks;
}

Status KafkaSource::PositionAssigned(Task& t, bool restored) {
  auto marks = WatermarksOf(t.partition());
  if (!marks.ok()) return marks.status();
  auto wanted = Wanted(t, restored, *marks);
  if (!wanted.ok()) return wanted.status();
  if (!restored) t.StartAt(*wanted);
  return PositionOne(t, *marks, false, !restored);
}

Status KafkaSource::VerifyAssigned(const std::vector<Task*>& tasks) {
  if (tasks.empty()) return Status::OK();
  std::vector<Watermarks> marks;
  for (const Task* t : tasks) {
    auto w = WatermarksOf(t->partition());
    if (!w.ok()) return w.status();
    marks.push_back(*w);
  }
  return VerifyRestored(tasks, marks, std::vector<bool>(tasks.size(), true));
}

namespace {
// A record re-injected by `kappa dlq replay` carries how often it failed
// (kappa.retry_count) and when it first did (kappa.first_failure_at_ms), in
// decimal: its next DLQ record counts on from there; and which record it
// is a copy of, which this version skips if it processed that one
// (engine/reinjected.h). Records without headers (all others) cost one
// pointer check in librdkafka.
void ReadRetryHeaders(rd_kafka_message_t* m, Task* task, const JobSpec& spec) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR || headers == nullptr) return;
  ApplyReinjectionHeaders(spec, task, m->offset, [headers](const char* name) {
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !value) {
      return std::string_view();
    }
    return std::string_view(static_cast<const char*>(value), size);
  });
}
}  // namespace

Status KafkaSource::Read(int64_t budget, int64_t* records) {
  const int want = budget > 0 ? static_cast<int>(std::min<int64_t>(kConsumeBatch, budget)) : kConsumeBatch;
  *records = 0;
  KAPPA_RETURN_IF_ERROR(consumer_.Poll(want, kPollWaitMs, &batch_));
  for (size_t k = 0; k < batch_.size(); ++k) {
    const rd_kafka_message_t* m = batch_[k];
    if (m->partition < 0 || static_cast<size_t>(m->partition) >= tasks_.size()) continue;
    // Fetched before its partition was revoked, or while the partition is
    // still read from the archive (the runner seeks it when it switches).
    if (owned_ && (*owned_)[m->partition] != 1) continue;
    Task* task = tasks_[m->partition];
    if (m->offset < task->next_offset()) continue;  // already covered by the checkpoint
    // At the end of a committed gap BeforeAppend processes the task's batch
    // so far: the task is in touched_ already and must not go in twice, or
    // two workers ran it at once (a bug bash: SIGSEGV in the fingerprint of
    // a batch the other worker had cleared, in an exactly-once restart with
    // --parallelism 2).
    gaps_.BeforeAppend(m->partition, *task, m->offset);
    if (listed_.size() < tasks_.size()) listed_.resize(tasks_.size(), 0);
    if (!listed_[m->partition]) {
      listed_[m->partition] = 1;
      touched_.push_back(task);
    }
    task->Append(m->payload, static_cast<uint32_t>(m->len), m->key, static_cast<uint32_t>(m->key_len), m->offset,
                 rd_kafka_message_timestamp(m, nullptr));
    ReadRetryHeaders(const_cast<rd_kafka_message_t*>(m), task, spec_);
  }
  if (parallelism_ > 1 && touched_.size() > 1) {
    if (!pool_) pool_ = std::make_unique<WorkerPool>(parallelism_);
    // The archive phase before this may have ended the sink's concurrency.
    sink_->SetConcurrent(true);
    std::atomic<size_t> next{0};
    pool_->Run([&](int) {
      for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < touched_.size();) touched_[i]->Process();
    });
  } else {
    for (Task* t : touched_) t->Process();
  }
  std::fill(listed_.begin(), listed_.end(), 0);
  for (Task* t : touched_) {
    if (!t->fatal().ok()) {
      touched_.clear();
      batch_.Clear();
      return t->fatal();
    }
  }
  touched_.clear();
  *records = static_cast<int64_t>(batch_.size());
  batch_.Clear();
  return Status::OK();
}

int64_t KafkaSource::LogEnd(size_t i) const {
  return std::max(consumer_.CachedLogEnd(spec_.source_topic, static_cast<int32_t>(i)), end_at_open_[i]);
}

int64_t KafkaSource::ReadPast(size_t i) const {
  // The consumer's position passes markers and aborted records; a partition
  // it does not read for this task (still served by the archive, or not
  // owned) has none that counts.
  if (i >= tasks_.size() || (owned_ && (*owned_)[i] != 1)) return -1;
  PartitionList one(1);
  one.Add(spec_.source_topic, static_cast<int32_t>(i));
  if (!consumer_.Positions(&one).ok() || one.offset(0) < 0) return -1;
  return one.offset(0);
}

std::string KafkaSource::Describe() const {
  return spec_.source_topic + "[0.." + std::to_string(tasks_.empty() ? 0 : tasks_.size() - 1) + "] from Kafka";
}

}  // namespace kappa
