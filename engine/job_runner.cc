#include "engine/job_runner.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "base/test_hooks.h"
#include "kafka/kafka_client.h"
#include "engine/kafka_sink.h"
#include "engine/task.h"
#include "base/worker_pool.h"
#include "archive/archive.h"
#include "state/state_backend.h"

namespace kappa {
namespace {

using SteadyTime = std::chrono::steady_clock;
constexpr int kConsumeBatch = 8192;
constexpr int kKafkaTimeoutMs = 10000;

double SecondsSince(SteadyTime::time_point t) { return std::chrono::duration<double>(SteadyTime::now() - t).count(); }

}  // namespace

struct JobRunner::Impl {
  JobSpec spec;
  KafkaConfig config;
  RunOptions options;
  std::unique_ptr<StateBackend> backend;
  std::unique_ptr<KafkaSink> sink;
  KafkaHandle consumer;
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<int64_t> end_offsets;  // log end as of start (stop_at_end)
  // exactly_once recovery: per partition, the offset Kafka's transactions
  // committed beyond RocksDB's checkpoint (-1: none). Records below it are
  // re-read with outputs suppressed; they were already delivered.
  std::vector<int64_t> gap_end;
  // The archive phase: per task, a reader positioned at the task's next
  // offset and the archived end it reads up to (null / -1: Kafka only).
  std::string archive_dir;
  bool archive_only = false;
  int parallelism = 1;
  std::vector<std::unique_ptr<ArchiveReader>> readers;
  std::vector<int64_t> archive_end;
  int64_t epoch = 0;
  KAPPA_KILL_SWITCH(kill_switch);
  RunSummary* summary = nullptr;

  // Progress bookkeeping shared by the archive and Kafka loops.
  SteadyTime::time_point start;
  SteadyTime::time_point last_checkpoint;
  SteadyTime::time_point last_status;
  int64_t in_at_last_status = 0;
  int64_t in_at_last_checkpoint = 0;
  int64_t processed = 0;

  Status Open();
  Status Assign();
  Status FindCommittedGaps();
  Status StartKafka();
  Status Loop(StopToken stop);
  Status ArchivePhase(StopToken stop, bool* asked_to_stop);
  Status ArchiveSlice(size_t task_index, int64_t budget, std::vector<ArchiveRecord>* block, int64_t* done);
  Status KafkaLoop(StopToken stop, bool* asked_to_stop);
  Status Tick(bool* asked_to_stop);
  Status Checkpoint();
  Status CheckpointNow();
  void CommitGroupOffsets(bool wait);
  // The offsets of the last begun checkpoint, committed to the consumer
  // group (informational) once that checkpoint is durable.
  int64_t pending_group_epoch = 0;
  std::vector<std::pair<int32_t, int64_t>> pending_group_offsets;
  void PrintStatus(double rate, bool final_line);
  void Note(NoteLevel level, const std::string& text);
  void WriteMetrics();
  ProgressSnapshot Snapshot(double rate);
  int64_t LogEnd(size_t i) const {
    int64_t low = 0, high = 0;
    if (!archive_only) {
      rd_kafka_get_watermark_offsets(consumer.get(), spec.source_topic.c_str(), tasks[i]->partition(), &low, &high);
    }
    return std::max(high, end_offsets[i]);
  }
  bool AtEnd() const {
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i]->next_offset() < end_offsets[i]) return false;
    }
    return true;
  }
  RecordCounters Totals() const {
    RecordCounters c;
    for (const auto& t : tasks) c.Add(t->counters());
    return c;
  }
};

JobRunner::JobRunner(JobSpec spec, KafkaConfig config, RunOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->spec = std::move(spec);
  impl_->config = std::move(config);
  impl_->options = std::move(options);
  impl_->summary = &summary_;
  if (impl_->options.metrics_file.empty()) impl_->options.metrics_file = impl_->spec.state_dir + "/metrics.json";
  impl_->archive_dir = impl_->options.archive_dir.empty() ? impl_->spec.archive_dir : impl_->options.archive_dir;
  impl_->archive_only = impl_->options.archive_only;
  impl_->parallelism = impl_->options.parallelism > 0 ? impl_->options.parallelism : impl_->spec.parallelism;
}

JobRunner::~JobRunner() = default;

Status JobRunner::Impl::Open() {
  auto names = Task::StateTableNames(spec);
  if (!names.ok()) return names.status();
  auto backend_or = StateBackend::Open(spec.state_dir, *names);
  if (!backend_or.ok()) return backend_or.status();
  backend = std::move(*backend_or);
  KAPPA_RETURN_IF_ERROR(backend->CheckIdentity({spec.job, spec.version, spec.spec_hash}));
  epoch = backend->last_epoch();

  auto sink_or = KafkaSink::Create(config, spec);
  if (!sink_or.ok()) return sink_or.status();
  sink = std::move(*sink_or);

  auto consumer_or = CreateClient(ClientKind::kConsumer, config,
                                  {{"group.id", spec.ConsumerGroup()},
                                   {"enable.auto.commit", "false"},
                                   {"enable.auto.offset.store", "false"},
                                   // Never jump silently: a missing offset is an error we report.
                                   {"auto.offset.reset", "error"},
                                   {"enable.partition.eof", "false"},
                                   // Keep fetching during a replay: when the local queue
                                   // reaches these, librdkafka 2.0 stops fetching and
                                   // only looks again up to a second later (measured: 3x
                                   // slower replays on the embedded broker at 50000).
                                   {"queued.min.messages", "1000000"},
                                   {"queued.max.messages.kbytes", "262144"},
                                   {"fetch.wait.max.ms", "20"}});
  if (!consumer_or.ok()) return consumer_or.status();
  consumer = std::move(*consumer_or);
  return Status::OK();
}

Status JobRunner::Impl::Assign() {
  rd_kafka_t* rk = consumer.get();
  const bool use_archive = !archive_dir.empty();
  // What the archive holds, per partition.
  std::vector<ArchiveRange> ranges;
  if (use_archive) {
    auto r = ArchiveRanges(archive_dir, spec.source_topic);
    if (!r.ok()) return r.status();
    ranges = std::move(*r);
    if (archive_only && ranges.empty()) {
      return Status::NotFound("nothing archived for topic " + spec.source_topic + " in " + archive_dir +
                              " (build it with `kappa archive`)");
    }
  }
  int32_t partitions = 0;
  std::vector<Watermarks> marks;
  if (archive_only) {
    partitions = static_cast<int32_t>(ranges.size());
    for (int32_t p = 0; p < partitions; ++p) {
      if (ranges[p].partition != p) {
        return Status::Corruption("the archive of " + spec.source_topic + " in " + archive_dir + " lacks partition " +
                                  std::to_string(p));
      }
    }
  } else {
    auto count = TopicPartitionCount(rk, spec.source_topic, kKafkaTimeoutMs);
    if (!count.ok()) return count.status();
    partitions = *count;
    auto m = QueryAllWatermarks(rk, spec.source_topic, partitions, kKafkaTimeoutMs);
    if (!m.ok()) return m.status();
    marks = std::move(*m);
  }

  readers.resize(partitions);
  archive_end.assign(partitions, -1);
  for (int32_t p = 0; p < partitions; ++p) {
    auto task = Task::Create(p, spec, sink.get());
    if (!task.ok()) return task.status();
    // Archive [a0, e) and Kafka [low, high) of this partition.
    int64_t a0 = -1, e = 0;
    for (const auto& r : ranges) {
      if (r.partition == p && r.records > 0) a0 = r.first_offset, e = r.end_offset;
    }
    const int64_t low = archive_only ? (a0 < 0 ? e : a0) : marks[p].low;
    const int64_t high = archive_only ? e : marks[p].high;
    auto stored = backend->ReadTask(p);
    if (!stored.ok()) return stored.status();
    int64_t wanted = 0;
    if (stored->has_value()) {
      KAPPA_RETURN_IF_ERROR(backend->Restore(p, (*task)->registry()));
      (*task)->Restore(**stored);
      wanted = (**stored).next_offset;
    } else if (spec.start == StartPosition::kLatest) {
      wanted = high;
    } else if (spec.start == StartPosition::kTimestamp) {
      if (archive_only) return Status::InvalidArgument("a timestamp start is not supported with --archive-only");
      rd_kafka_topic_partition_list_t* q = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(q, spec.source_topic.c_str(), p)->offset = spec.start_timestamp_ms;
      rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, q, kKafkaTimeoutMs);
      wanted = q->elems[0].offset;
      rd_kafka_topic_partition_list_destroy(q);
      if (err) {
        return Status::Unavailable("cannot look up the offset of time " + std::to_string(spec.start_timestamp_ms) +
                                   " in " + spec.source_topic + "[" + std::to_string(p) + "]: " + rd_kafka_err2str(err));
      }
      if (wanted < 0) wanted = high;  // no record at or after that time yet
      std::fprintf(stderr, "kappa run: %s[%d]: start time %lld resolves to offset %lld (log %lld..%lld)\n",
                   spec.source_topic.c_str(), p, static_cast<long long>(spec.start_timestamp_ms),
                   static_cast<long long>(wanted), static_cast<long long>(low), static_cast<long long>(high));
    } else {
      wanted = 0;  // earliest: all of history, from offset zero
    }
    const bool in_archive = a0 >= 0 && wanted >= a0 && wanted < e;
    if (!in_archive && wanted < low) {
      // Invariant 7: history is never skipped silently. Neither the archive
      // nor Kafka holds `wanted`: the next record either has is `next`.
      int64_t next = low;
      if (a0 > wanted) next = std::min(next, a0);
      const std::string where =
          spec.source_topic + "[" + std::to_string(p) + "]: wanted offset " + std::to_string(wanted) + " but " +
          (archive_only ? std::string() : "the Kafka log starts at " + std::to_string(low)) +
          (use_archive ? (archive_only ? "" : " and ") +
                             (a0 < 0 ? std::string("the archive holds nothing")
                                     : "the archive holds " + std::to_string(a0) + ".." + std::to_string(e - 1))
                       : std::string()) +
          ": records " + std::to_string(wanted) + ".." + std::to_string(next - 1) + " are gone";
      if (!spec.allow_truncated_history) {
        return Status::DataLoss(where + " (deleted by retention before they were archived). Restore them into an "
                                "archive (`kappa archive --import`), or set `source: {allow_truncated_history: true}` "
                                "to start at " + std::to_string(next) + " with the gap recorded");
      }
      summary->history_gap_records += next - wanted;
      sink->SetHistoryGap(p, std::to_string(wanted) + "-" + std::to_string(next - 1));
      std::fprintf(stderr, "kappa run: WARNING %s; starting at %lld as allow_truncated_history permits\n",
                   where.c_str(), static_cast<long long>(next));
      wanted = next;
    }
    if (!stored->has_value() || (*task)->next_offset() != wanted) (*task)->StartAt(wanted);
    const bool from_archive = a0 >= 0 && wanted >= a0 && wanted < e;
    if (!from_archive && wanted > high) {
      return Status::FailedPrecondition(
          spec.source_topic + "[" + std::to_string(p) + "]: the checkpoint is at offset " + std::to_string(wanted) +
          " but the log ends at " + std::to_string(high) +
          ": the topic was recreated or truncated; this state belongs to another log");
    }
    if (from_archive) {
      auto reader = ArchiveReader::Open(archive_dir, spec.source_topic, p);
      if (!reader.ok()) return reader.status();
      KAPPA_RETURN_IF_ERROR((*reader)->Seek(wanted));
      readers[p] = std::move(*reader);
      archive_end[p] = e;
    }
    end_offsets.push_back(std::max(high, from_archive ? e : 0));
    tasks.push_back(std::move(*task));
  }
  gap_end.assign(tasks.size(), -1);
  sink->SetPartitions(partitions);
  if (sink->transactional()) return FindCommittedGaps();
  return Status::OK();
}

// Assigns the consumer at every task's next offset: the switch from the
// archive (or the start) to Kafka, exactly at the offset the task needs.
Status JobRunner::Impl::StartKafka() {
  rd_kafka_t* rk = consumer.get();
  auto marks = QueryAllWatermarks(rk, spec.source_topic, static_cast<int32_t>(tasks.size()), kKafkaTimeoutMs);
  if (!marks.ok()) return marks.status();
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(static_cast<int>(tasks.size()));
  for (size_t i = 0; i < tasks.size(); ++i) {
    Task& t = *tasks[i];
    const Watermarks& w = (*marks)[i];
    int64_t next = t.next_offset();
    if (next < w.low) {
      const std::string where = spec.source_topic + "[" + std::to_string(t.partition()) + "]: " +
                                (archive_end[i] >= 0 ? "the archive ends at " : "the job is at ") +
                                std::to_string(next) + " but the Kafka log now starts at " + std::to_string(w.low) +
                                ": records " + std::to_string(next) + ".." + std::to_string(w.low - 1) + " are gone";
      if (!spec.allow_truncated_history) {
        rd_kafka_topic_partition_list_destroy(assignment);
        return Status::DataLoss(where + " (retention deleted them; keep `kappa archive` running so the archive "
                                "covers them), or set `source: {allow_truncated_history: true}` to skip them with "
                                "the gap recorded");
      }
      summary->history_gap_records += w.low - next;
      sink->SetHistoryGap(t.partition(), std::to_string(next) + "-" + std::to_string(w.low - 1));
      std::fprintf(stderr, "kappa run: WARNING %s; skipping to %lld as allow_truncated_history permits\n",
                   where.c_str(), static_cast<long long>(w.low));
      t.SkipTo(w.low);
      next = w.low;
    }
    if (next > w.high) {
      rd_kafka_topic_partition_list_destroy(assignment);
      return Status::FailedPrecondition(
          spec.source_topic + "[" + std::to_string(t.partition()) + "]: the job is at offset " + std::to_string(next) +
          " but the Kafka log ends at " + std::to_string(w.high) +
          ": the topic was recreated, or the archive belongs to another log");
    }
    if (archive_end[i] >= 0) {
      std::fprintf(stderr, "kappa run: %s[%d]: archive done at offset %lld, switching to Kafka (log %lld..%lld)\n",
                   spec.source_topic.c_str(), t.partition(), static_cast<long long>(next),
                   static_cast<long long>(w.low), static_cast<long long>(w.high));
    }
    end_offsets[i] = std::max(end_offsets[i], w.high);
    rd_kafka_topic_partition_list_add(assignment, spec.source_topic.c_str(), t.partition())->offset = next;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return Status::Unavailable("cannot assign " + spec.source_topic + ": " + rd_kafka_err2str(err));
  return Status::OK();
}

// A crash between a Kafka transaction commit and the RocksDB checkpoint
// leaves Kafka's committed offset ahead of RocksDB's. Those outputs are
// delivered; the state is not. Re-reading the gap with outputs suppressed
// rebuilds exactly that state (invariant 3) without emitting twice.
Status JobRunner::Impl::FindCommittedGaps() {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(tasks.size()));
  for (const auto& t : tasks) rd_kafka_topic_partition_list_add(list, spec.source_topic.c_str(), t->partition());
  rd_kafka_resp_err_t err = rd_kafka_committed(consumer.get(), list, kKafkaTimeoutMs);
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return Status::Unavailable("cannot read the committed offsets of group " + spec.ConsumerGroup() + ": " +
                               rd_kafka_err2str(err));
  }
  const std::string tag = EosOffsetTag(spec);
  for (int i = 0; i < list->cnt; ++i) {
    const int32_t p = list->elems[i].partition;
    const int64_t committed = list->elems[i].offset;
    if (p < 0 || p >= static_cast<int32_t>(tasks.size()) || committed < 0) continue;
    const std::string metadata(static_cast<const char*>(list->elems[i].metadata), list->elems[i].metadata_size);
    if (metadata != tag) continue;  // not committed by this spec's transactions
    if (committed > tasks[p]->next_offset()) {
      gap_end[p] = committed;
      sink->SetSuppressed(p, true);
      std::fprintf(stderr, "kappa run: %s[%d]: offsets %lld..%lld were committed by a Kafka transaction after the "
                   "last checkpoint; re-reading them with outputs suppressed\n", spec.source_topic.c_str(), p,
                   static_cast<long long>(tasks[p]->next_offset()), static_cast<long long>(committed - 1));
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  return Status::OK();
}

Status JobRunner::Impl::Checkpoint() {
  const auto began = SteadyTime::now();
  Status st = CheckpointNow();
  const double ms = SecondsSince(began) * 1000;
  summary->checkpoint_max_ms = std::max(summary->checkpoint_max_ms, ms);
  summary->checkpoint_total_ms += ms;
  return st;
}

Status JobRunner::Impl::CheckpointNow() {
  KAPPA_KILL_POINT(kill_switch, "before-flush");
  if (sink->transactional()) {
    // exactly_once: the epoch's outputs and its input offsets commit together
    // in one Kafka transaction; a partition still re-reading a committed gap
    // keeps the committed offset where it was.
    std::vector<std::pair<int32_t, int64_t>> offsets;
    for (size_t i = 0; i < tasks.size(); ++i) {
      offsets.emplace_back(tasks[i]->partition(), std::max(tasks[i]->next_offset(), gap_end[i]));
    }
    KAPPA_RETURN_IF_ERROR(sink->CommitEpoch(consumer.get(), spec.source_topic, offsets));
  } else {
    // At-least-once barrier: every output of the inputs this checkpoint covers
    // is acknowledged before the offsets move past those inputs.
    const auto flush_began = SteadyTime::now();
    KAPPA_RETURN_IF_ERROR(sink->Flush(150000));
    summary->flush_total_ms += SecondsSince(flush_began) * 1000;
  }
  KAPPA_KILL_POINT(kill_switch, "after-flush");
  std::vector<StateBackend::TaskSnapshot> snapshots;
  snapshots.reserve(tasks.size());
  for (auto& t : tasks) snapshots.push_back({&t->checkpoint(), &t->registry()});
  // The stall is only the capture: the writer thread makes it durable in
  // the background, in epoch order (StateBackend::BeginCommit).
  auto stats = backend->BeginCommit(epoch + 1, snapshots);
  if (!stats.ok()) return stats.status();
  ++epoch;
  ++summary->epochs;
  if (KAPPA_KILL_ARMED(kill_switch, "after-commit")) {
    // The crash tests mean "after the checkpoint is durable".
    auto durable = backend->WaitForCommits();
    if (!durable.ok()) return durable.status();
  }
  KAPPA_KILL_POINT(kill_switch, "after-commit");
  if (sink->transactional() || archive_only) return Status::OK();
  // Informational only: the group's committed offsets mirror RocksDB's
  // durable ones, so a checkpoint's offsets are committed once it is durable
  // (at the next checkpoint, or at the end).
  CommitGroupOffsets(false);
  pending_group_epoch = epoch;
  pending_group_offsets.clear();
  for (const auto& t : tasks) pending_group_offsets.emplace_back(t->partition(), t->next_offset());
  return Status::OK();
}

void JobRunner::Impl::CommitGroupOffsets(bool wait) {
  if (pending_group_offsets.empty() || backend->last_epoch() < pending_group_epoch) return;
  rd_kafka_topic_partition_list_t* offsets =
      rd_kafka_topic_partition_list_new(static_cast<int>(pending_group_offsets.size()));
  for (const auto& [p, o] : pending_group_offsets) {
    rd_kafka_topic_partition_list_add(offsets, spec.source_topic.c_str(), p)->offset = o;
  }
  // Asynchronous: a synchronous commit to a coordinator that is gone left
  // a request that rd_kafka_consumer_close() then waited for forever.
  (void)wait;
  rd_kafka_commit(consumer.get(), offsets, 1);
  rd_kafka_topic_partition_list_destroy(offsets);
  pending_group_offsets.clear();
}

void JobRunner::Impl::PrintStatus(double rate, bool final_line) {
  if (!options.on_status) return;
  ProgressSnapshot snapshot = Snapshot(rate);
  options.on_status(snapshot, final_line);
}

void JobRunner::Impl::Note(NoteLevel level, const std::string& text) {
  if (options.on_note) options.on_note(level, text);
}

ProgressSnapshot JobRunner::Impl::Snapshot(double rate) {
  ProgressSnapshot s;
  s.epoch = epoch;
  s.checkpoint_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  s.records_per_second = rate;
  s.counters = Totals();
  for (size_t i = 0; i < tasks.size(); ++i) {
    PartitionProgress p;
    p.partition = tasks[i]->partition();
    p.start_offset = tasks[i]->checkpoint().start_offset;
    p.position = tasks[i]->next_offset();
    p.log_end = LogEnd(i);
    p.watermark_ms = tasks[i]->watermark_ms() == kNoTime ? 0 : tasks[i]->watermark_ms();
    s.partitions.push_back(p);
  }
  return s;
}

void JobRunner::Impl::WriteMetrics() {
  const RecordCounters c = Totals();
  const std::string tmp = options.metrics_file + ".tmp";
  std::ofstream out(tmp);
  out << "{\n  \"job\": \"" << spec.job << "\",\n  \"version\": " << spec.version << ",\n  \"spec_hash\": \""
      << spec.spec_hash << "\",\n  \"epoch\": " << epoch << ",\n  \"records_in\": " << c.in
      << ",\n  \"records_out\": " << c.out << ",\n  \"deduped\": " << c.deduped << ",\n  \"filtered\": " << c.filtered
      << ",\n  \"late\": " << c.late << ",\n  \"dlq\": " << c.dlq << ",\n  \"outputs\": " << c.outputs
      << ",\n  \"history_gap_records\": " << summary->history_gap_records << ",\n  \"partitions\": [";
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = *tasks[i];
    out << (i ? "," : "") << "\n    {\"partition\": " << t.partition() << ", \"next_offset\": " << t.next_offset()
        << ", \"start_offset\": " << t.checkpoint().start_offset
        << ", \"watermark_ms\": " << (t.watermark_ms() == kNoTime ? 0 : t.watermark_ms())
        << ", \"records_in\": " << t.counters().in << ", \"outputs\": " << t.counters().outputs << "}";
  }
  out << "\n  ]\n}\n";
  out.close();
  std::rename(tmp.c_str(), options.metrics_file.c_str());
}

// Every loop iteration of either phase ends here: rate cap, checkpoint on
// schedule, status line.
Status JobRunner::Impl::Tick(bool* asked_to_stop) {
  if (options.max_rate > 0) {
    const double ahead = processed / options.max_rate - SecondsSince(start);
    if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(ahead, 0.5)));
  }
  if (SteadyTime::now() - last_checkpoint >= std::chrono::milliseconds(spec.checkpoint_interval_ms)) {
    KAPPA_RETURN_IF_ERROR(Checkpoint());
    WriteMetrics();
    const int64_t in = Totals().in;
    const double rate = (in - in_at_last_checkpoint) / std::max(1e-3, SecondsSince(last_checkpoint));
    in_at_last_checkpoint = in;
    last_checkpoint = SteadyTime::now();
    if (options.on_checkpoint && !options.on_checkpoint(Snapshot(rate))) *asked_to_stop = true;
  }
  if (options.status_interval_ms > 0 &&
      SteadyTime::now() - last_status >= std::chrono::milliseconds(options.status_interval_ms)) {
    const int64_t in = Totals().in;
    PrintStatus((in - in_at_last_status) / SecondsSince(last_status), false);
    in_at_last_status = in;
    last_status = SteadyTime::now();
  }
  return Status::OK();
}

// Up to `budget` records of one task from its archive reader, block by
// block: the payloads stay in the reader's aligned block buffer (no copy).
Status JobRunner::Impl::ArchiveSlice(size_t i, int64_t budget, std::vector<ArchiveRecord>* block, int64_t* done) {
  Task* task = tasks[i].get();
  ArchiveReader* reader = readers[i].get();
  const int64_t limit = archive_end[i];
  while (*done < budget && task->next_offset() < limit) {
    KAPPA_RETURN_IF_ERROR(reader->NextBlock(block, limit));
    if (block->empty()) {
      return Status::Corruption("the archive of " + spec.source_topic + "[" + std::to_string(task->partition()) +
                                "] ended at offset " + std::to_string(task->next_offset()) + ", before its end " +
                                std::to_string(limit) + " listed when the job started");
    }
    for (const ArchiveRecord& r : *block) {
      if (gap_end[i] >= 0 && r.offset >= gap_end[i]) {
        // The end of an already-delivered gap (exactly_once): emit again.
        task->Process();
        sink->SetSuppressed(task->partition(), false);
        gap_end[i] = -1;
      }
      task->AppendBorrowed(r.value.data(), static_cast<uint32_t>(r.value.size()), r.key.data(),
                           static_cast<uint32_t>(r.key.size()), r.offset, r.timestamp_ms);
    }
    task->Process();
    *done += static_cast<int64_t>(block->size());
  }
  return Status::OK();
}

// Replays every partition that has archived records ahead of it, in rounds:
// in each round the workers take partitions off a shared index and process
// up to kRoundRecords of each; between rounds (all workers idle) the
// coordinator checkpoints and reports. A partition is processed by one
// thread at a time, in offset order, so the output equals a single-threaded
// run. When a pass ends, ends are re-read: an archiver may have added more.
Status JobRunner::Impl::ArchivePhase(StopToken stop, bool* asked_to_stop) {
  constexpr int64_t kRoundRecords = 1 << 16;
  WorkerPool pool(parallelism);
  sink->SetConcurrent(pool.size() > 1);
  std::vector<std::vector<ArchiveRecord>> blocks(pool.size());
  std::vector<Status> errors(pool.size());
  std::vector<int64_t> counts(pool.size());
  for (int pass = 0; pass < 4 && !stop.stop_requested() && !*asked_to_stop; ++pass) {
    std::vector<size_t> pending;
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (readers[i] && tasks[i]->next_offset() < archive_end[i]) pending.push_back(i);
    }
    if (pending.empty()) break;
    while (!pending.empty() && !stop.stop_requested() && !*asked_to_stop) {
      if (options.stop_at_end && AtEnd()) break;
      // A rate cap makes rounds small (about 50 ms of records), so the
      // cap holds and checkpoints stay on time.
      const int64_t budget =
          options.max_rate > 0
              ? std::max<int64_t>(1, static_cast<int64_t>(options.max_rate / 20) / static_cast<int64_t>(pending.size()))
              : kRoundRecords;
      if (sink->failed()) return sink->failure();
      std::atomic<size_t> next{0};
      pool.Run([&](int w) {
        for (size_t k = next++; k < pending.size(); k = next++) {
          int64_t done = 0;
          Status st = ArchiveSlice(pending[k], budget, &blocks[w], &done);
          counts[w] += done;
          if (!st.ok() && errors[w].ok()) errors[w] = st;
        }
      });
      for (size_t w = 0; w < errors.size(); ++w) {
        if (!errors[w].ok()) return errors[w];
        processed += counts[w];
        summary->archive_records += counts[w];
        counts[w] = 0;
      }
      std::erase_if(pending, [&](size_t i) { return tasks[i]->next_offset() >= archive_end[i]; });
      sink->Poll();
      KAPPA_RETURN_IF_ERROR(Tick(asked_to_stop));
    }
    // More may have been archived meanwhile: read it at archive speed too.
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (!readers[i] || tasks[i]->next_offset() < archive_end[i]) continue;
      auto range = readers[i]->Range();
      if (!range.ok()) return range.status();
      if (range->end_offset > archive_end[i]) {
        archive_end[i] = range->end_offset;
        end_offsets[i] = std::max(end_offsets[i], archive_end[i]);
      }
    }
  }
  sink->SetConcurrent(false);
  return Status::OK();
}

Status JobRunner::Impl::KafkaLoop(StopToken stop, bool* asked_to_stop) {
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(consumer.get());
  std::vector<rd_kafka_message_t*> messages(kConsumeBatch);
  std::vector<Task*> touched;
  touched.reserve(tasks.size());
  Status result;
  while (!stop.stop_requested() && !*asked_to_stop) {
    if (options.stop_at_end && AtEnd()) break;
    if (sink->failed()) {
      result = sink->failure();
      break;
    }
    int want = kConsumeBatch;
    if (options.max_rate > 0) want = std::max(1, std::min(want, static_cast<int>(options.max_rate / 20)));
    // Take what is already fetched without waiting (consume_batch_queue with
    // a timeout waits for a FULL batch, which costs up to the timeout per
    // batch); block up to 10 ms only when nothing is there.
    ssize_t n = rd_kafka_consume_batch_queue(queue, 0, messages.data(), want);
    if (n == 0) {
      if (rd_kafka_message_t* first = rd_kafka_consume_queue(queue, 10)) {
        messages[0] = first;
        const ssize_t more = rd_kafka_consume_batch_queue(queue, 0, messages.data() + 1, want - 1);
        n = 1 + std::max<ssize_t>(0, more);
      }
    }
    if (n < 0) {
      result = Status::Unavailable(std::string("consume failed: ") + rd_kafka_err2str(rd_kafka_last_error()));
      break;
    }
    for (ssize_t i = 0; i < n; ++i) {
      rd_kafka_message_t* m = messages[i];
      if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
        if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
          result = Status::DataLoss(spec.source_topic + "[" + std::to_string(m->partition) +
                                    "]: the offset to read is out of range (retention deleted it while the job "
                                    "was behind): " + rd_kafka_message_errstr(m) + "; records would be skipped, so the job stops");
          break;
        }
        if (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
          result = Status::Unavailable(std::string("source ") + spec.source_topic + ": " + rd_kafka_message_errstr(m));
          break;
        }
        std::fprintf(stderr, "kappa run: transient consumer error (retrying): %s\n", rd_kafka_message_errstr(m));
        continue;
      }
      if (m->partition < 0 || m->partition >= static_cast<int32_t>(tasks.size())) continue;
      Task* task = tasks[m->partition].get();
      if (m->offset < task->next_offset()) continue;  // already covered by the checkpoint
      if (gap_end[m->partition] >= 0 && m->offset >= gap_end[m->partition]) {
        // The end of a suppressed gap: finish its batch, then emit again.
        task->Process();
        sink->SetSuppressed(m->partition, false);
        gap_end[m->partition] = -1;
      }
      if (!task->has_pending()) touched.push_back(task);
      task->Append(m->payload, static_cast<uint32_t>(m->len), m->key, static_cast<uint32_t>(m->key_len), m->offset,
                   rd_kafka_message_timestamp(m, nullptr));
    }
    for (Task* t : touched) t->Process();
    touched.clear();
    for (ssize_t i = 0; i < n; ++i) rd_kafka_message_destroy(messages[i]);
    processed += n;
    if (!result.ok()) break;
    sink->Poll();
    result = Tick(asked_to_stop);
    if (!result.ok()) break;
  }
  rd_kafka_queue_destroy(queue);
  return result;
}

Status JobRunner::Impl::Loop(StopToken stop) {
  start = last_checkpoint = last_status = SteadyTime::now();
  in_at_last_status = in_at_last_checkpoint = Totals().in;
  bool asked_to_stop = false;
  bool archive_work = false;
  for (size_t i = 0; i < tasks.size(); ++i) archive_work |= readers[i] && tasks[i]->next_offset() < archive_end[i];
  if (archive_work) KAPPA_RETURN_IF_ERROR(ArchivePhase(stop, &asked_to_stop));  // no checkpoint past a failure
  if (!archive_only && !stop.stop_requested() && !asked_to_stop && !(options.stop_at_end && AtEnd())) {
    KAPPA_RETURN_IF_ERROR(StartKafka());
    KAPPA_RETURN_IF_ERROR(KafkaLoop(stop, &asked_to_stop));
  }
  // Final checkpoint on a clean stop (signal, end of log, asked to stop),
  // durable before we return.
  KAPPA_RETURN_IF_ERROR(Checkpoint());
  const auto wait_began = SteadyTime::now();
  auto durable = backend->WaitForCommits();
  summary->final_durable_ms = SecondsSince(wait_began) * 1000;
  if (!durable.ok()) return durable.status();
  if (!sink->transactional() && !archive_only) CommitGroupOffsets(false);
  summary->seconds = SecondsSince(start);
  if (options.on_checkpoint) options.on_checkpoint(Snapshot(summary->seconds > 0 ? processed / summary->seconds : 0));
  if (options.status_interval_ms > 0) {
    PrintStatus(summary->seconds > 0 ? processed / summary->seconds : 0, true);
  }
  return Status::OK();
}

Status JobRunner::Run(StopToken stop) {
  Status st;
  if (impl_->archive_only && impl_->archive_dir.empty()) {
    st = Status::InvalidArgument("--archive-only needs an archive (--archive DIR or source.archive in the spec)");
  }
  if (st.ok()) st = impl_->Open();
  if (st.ok()) st = impl_->Assign();
  if (st.ok()) {
    int64_t from_archive = 0;
    for (size_t i = 0; i < impl_->tasks.size(); ++i) {
      if (impl_->archive_end[i] >= 0) from_archive += impl_->archive_end[i] - impl_->tasks[i]->next_offset();
    }
    std::fprintf(stderr, "kappa run: %s v%d (spec %s) from %s[0..%zu]%s to %s, state %s, epoch %lld\n",
                 impl_->spec.job.c_str(), impl_->spec.version, impl_->spec.spec_hash.c_str(),
                 impl_->spec.source_topic.c_str(), impl_->tasks.size() - 1,
                 impl_->archive_dir.empty()
                     ? ""
                     : (" (" + std::to_string(from_archive) + " records from the archive " + impl_->archive_dir +
                        " on " + std::to_string(impl_->parallelism) + " worker(s)" +
                        (impl_->archive_only ? ", archive only" : ", then Kafka") + ")").c_str(),
                 impl_->spec.OutputTopic().c_str(), impl_->spec.state_dir.c_str(), static_cast<long long>(impl_->epoch));
    st = impl_->Loop(stop);
  }
  if (!impl_->tasks.empty()) {
    summary_.counters = impl_->Totals();
    // After a failure the in-memory counters are ahead of the last checkpoint;
    // the metrics file keeps describing what is durably committed.
    if (impl_->backend && st.ok()) impl_->WriteMetrics();
  }
  CloseConsumer(impl_->consumer, 10000);
  return st;
}

}  // namespace kappa
