#include "engine/job_runner.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "engine/base/kill_switch.h"
#include "engine/kafka_client.h"
#include "engine/kafka_sink.h"
#include "engine/task.h"
#include "state/state_backend.h"

namespace kappa {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kConsumeBatch = 8192;
constexpr int kKafkaTimeoutMs = 10000;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string FormatTime(int64_t ms) {
  if (ms == kNoTime) return "none";
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Human(double n) {
  char buf[32];
  if (n >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fk", n / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", n);
  return buf;
}

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
  int64_t epoch = 0;
  KillSwitch kill_switch;
  RunSummary* summary = nullptr;

  Status Open();
  Status Assign();
  Status FindCommittedGaps();
  Status Loop(volatile int* stop);
  Status Checkpoint();
  void PrintStatus(double rate, bool final_line);
  void WriteMetrics();
  ProgressSnapshot Snapshot(double rate);
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
                                   {"queued.min.messages", "50000"},
                                   {"fetch.wait.max.ms", "20"}});
  if (!consumer_or.ok()) return consumer_or.status();
  consumer = std::move(*consumer_or);
  return Status::OK();
}

Status JobRunner::Impl::Assign() {
  rd_kafka_t* rk = consumer.get();
  auto partitions = TopicPartitionCount(rk, spec.source_topic, kKafkaTimeoutMs);
  if (!partitions.ok()) return partitions.status();
  auto marks = QueryAllWatermarks(rk, spec.source_topic, *partitions, kKafkaTimeoutMs);
  if (!marks.ok()) return marks.status();

  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(*partitions);
  for (int32_t p = 0; p < *partitions; ++p) {
    auto task = Task::Create(p, spec, sink.get());
    if (!task.ok()) return task.status();
    const Watermarks& w = (*marks)[p];
    auto stored = backend->ReadTask(p);
    if (!stored.ok()) return stored.status();
    int64_t wanted = 0;
    if (stored->has_value()) {
      KAPPA_RETURN_IF_ERROR(backend->Restore(p, (*task)->registry()));
      (*task)->Restore(**stored);
      wanted = (**stored).next_offset;
    } else if (spec.start == StartPosition::kLatest) {
      wanted = w.high;
    } else if (spec.start == StartPosition::kTimestamp) {
      rd_kafka_topic_partition_list_t* q = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(q, spec.source_topic.c_str(), p)->offset = spec.start_timestamp_ms;
      rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, q, kKafkaTimeoutMs);
      wanted = q->elems[0].offset;
      rd_kafka_topic_partition_list_destroy(q);
      if (err) {
        return Status::Unavailable("cannot look up the offset of time " + std::to_string(spec.start_timestamp_ms) +
                                   " in " + spec.source_topic + "[" + std::to_string(p) + "]: " + rd_kafka_err2str(err));
      }
      if (wanted < 0) wanted = w.high;  // no record at or after that time yet
      std::fprintf(stderr, "kappa run: %s[%d]: start time %lld resolves to offset %lld (log %lld..%lld)\n",
                   spec.source_topic.c_str(), p, static_cast<long long>(spec.start_timestamp_ms),
                   static_cast<long long>(wanted), static_cast<long long>(w.low), static_cast<long long>(w.high));
    } else {
      wanted = 0;  // earliest: all of history, from offset zero
    }
    if (wanted < w.low) {
      // Invariant 7: history is never skipped silently.
      if (!spec.allow_truncated_history) {
        rd_kafka_topic_partition_list_destroy(assignment);
        return Status::DataLoss(
            spec.source_topic + "[" + std::to_string(p) + "]: wanted offset " + std::to_string(wanted) +
            " but the log starts at " + std::to_string(w.low) + ": records " + std::to_string(wanted) + ".." +
            std::to_string(w.low - 1) + " were deleted by retention. Restore them from an archive, or set "
            "`source: {allow_truncated_history: true}` to start at " + std::to_string(w.low) +
            " with the gap recorded");
      }
      summary->history_gap_records += w.low - wanted;
      std::fprintf(stderr, "kappa run: WARNING %s[%d]: records %lld..%lld are gone (retention); starting at %lld "
                   "as allow_truncated_history permits\n", spec.source_topic.c_str(), p,
                   static_cast<long long>(wanted), static_cast<long long>(w.low - 1), static_cast<long long>(w.low));
      wanted = w.low;
    }
    if (!stored->has_value() || (*task)->next_offset() != wanted) (*task)->StartAt(wanted);
    if (wanted > w.high) {
      rd_kafka_topic_partition_list_destroy(assignment);
      return Status::FailedPrecondition(
          spec.source_topic + "[" + std::to_string(p) + "]: the checkpoint is at offset " + std::to_string(wanted) +
          " but the log ends at " + std::to_string(w.high) +
          ": the topic was recreated or truncated; this state belongs to another log");
    }
    rd_kafka_topic_partition_list_add(assignment, spec.source_topic.c_str(), p)->offset = wanted;
    end_offsets.push_back(w.high);
    tasks.push_back(std::move(*task));
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return Status::Unavailable("cannot assign " + spec.source_topic + ": " + rd_kafka_err2str(err));
  gap_end.assign(tasks.size(), -1);
  if (sink->transactional()) return FindCommittedGaps();
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
  kill_switch.At("before-flush");
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
    KAPPA_RETURN_IF_ERROR(sink->Flush(150000));
  }
  kill_switch.At("after-flush");
  std::vector<StateBackend::TaskSnapshot> snapshots;
  snapshots.reserve(tasks.size());
  for (auto& t : tasks) snapshots.push_back({&t->checkpoint(), &t->registry()});
  auto stats = backend->Commit(epoch + 1, snapshots);
  if (!stats.ok()) return stats.status();
  ++epoch;
  ++summary->epochs;
  kill_switch.At("after-commit");
  if (sink->transactional()) return Status::OK();
  // Informational only: the group's committed offsets mirror RocksDB's.
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(tasks.size()));
  for (const auto& t : tasks) {
    rd_kafka_topic_partition_list_add(offsets, spec.source_topic.c_str(), t->partition())->offset = t->next_offset();
  }
  rd_kafka_commit(consumer.get(), offsets, 1);
  rd_kafka_topic_partition_list_destroy(offsets);
  return Status::OK();
}

void JobRunner::Impl::PrintStatus(double rate, bool final_line) {
  const RecordCounters c = Totals();
  int64_t lag = 0, max_lag = -1, done = 0, total = 0;
  int32_t max_lag_partition = 0;
  int64_t watermark = kNoTime;
  for (size_t i = 0; i < tasks.size(); ++i) {
    int64_t low = 0, high = 0;
    rd_kafka_get_watermark_offsets(consumer.get(), spec.source_topic.c_str(), tasks[i]->partition(), &low, &high);
    high = std::max(high, end_offsets[i]);
    const int64_t l = std::max<int64_t>(0, high - tasks[i]->next_offset());
    lag += l;
    done += tasks[i]->next_offset() - tasks[i]->checkpoint().start_offset;
    total += high - tasks[i]->checkpoint().start_offset;
    if (l > max_lag) {
      max_lag = l;
      max_lag_partition = tasks[i]->partition();
    }
    if (tasks[i]->watermark_ms() != kNoTime) {
      watermark = watermark == kNoTime ? tasks[i]->watermark_ms() : std::min(watermark, tasks[i]->watermark_ms());
    }
  }
  std::string eta;
  if (rate > 0 && lag > 0) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), ", ETA %.1f s", lag / rate);
    eta = buf;
  }
  std::fprintf(stderr,
               "%skappa run %s v%d: %.1f%% done, %s rec/s, in %s, lag %s (max p%d %s%s), watermark %s, out %s, outputs %s, "
               "deduped %s, filtered %s, late %lld, dlq %lld, epoch %lld%s",
               options.progress_on_terminal && !final_line ? "\r" : "", spec.job.c_str(), spec.version,
               total > 0 ? 100.0 * done / total : 100.0, Human(rate).c_str(), Human(c.in).c_str(), Human(lag).c_str(), max_lag_partition,
               Human(std::max<int64_t>(0, max_lag)).c_str(), eta.c_str(), FormatTime(watermark).c_str(),
               Human(c.out).c_str(), Human(c.outputs).c_str(), Human(c.deduped).c_str(), Human(c.filtered).c_str(),
               static_cast<long long>(c.late), static_cast<long long>(c.dlq), static_cast<long long>(epoch),
               options.progress_on_terminal && !final_line ? "   " : "\n");
  std::fflush(stderr);
}

ProgressSnapshot JobRunner::Impl::Snapshot(double rate) {
  ProgressSnapshot s;
  s.epoch = epoch;
  s.checkpoint_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  s.records_per_second = rate;
  s.counters = Totals();
  for (size_t i = 0; i < tasks.size(); ++i) {
    int64_t low = 0, high = 0;
    rd_kafka_get_watermark_offsets(consumer.get(), spec.source_topic.c_str(), tasks[i]->partition(), &low, &high);
    PartitionProgress p;
    p.partition = tasks[i]->partition();
    p.position = tasks[i]->next_offset();
    p.log_end = std::max(high, end_offsets[i]);
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

Status JobRunner::Impl::Loop(volatile int* stop) {
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(consumer.get());
  std::vector<rd_kafka_message_t*> messages(kConsumeBatch);
  std::vector<Task*> touched;
  touched.reserve(tasks.size());
  const auto start = Clock::now();
  auto last_checkpoint = Clock::now();
  auto last_status = Clock::now();
  int64_t in_at_last_status = Totals().in;
  int64_t in_at_last_checkpoint = in_at_last_status;
  int64_t processed = 0;
  Status result;

  auto at_end = [&] {
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i]->next_offset() < end_offsets[i]) return false;
    }
    return true;
  };

  while (!*stop) {
    if (options.stop_at_end && at_end()) break;
    if (sink->failed()) {
      result = sink->failure();
      break;
    }
    int want = kConsumeBatch;
    if (options.max_rate > 0) want = std::max(1, std::min(want, static_cast<int>(options.max_rate / 20)));
    // The call waits until the batch is full or the timeout passes: a short
    // timeout bounds live latency; during a replay batches fill at once.
    ssize_t n = rd_kafka_consume_batch_queue(queue, 10, messages.data(), want);
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

    if (options.max_rate > 0) {
      const double ahead = processed / options.max_rate - SecondsSince(start);
      if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(ahead, 0.5)));
    }
    if (Clock::now() - last_checkpoint >= std::chrono::milliseconds(spec.checkpoint_interval_ms)) {
      result = Checkpoint();
      if (!result.ok()) break;
      WriteMetrics();
      const double rate = (Totals().in - in_at_last_checkpoint) / std::max(1e-3, SecondsSince(last_checkpoint));
      in_at_last_checkpoint = Totals().in;
      last_checkpoint = Clock::now();
      if (options.on_checkpoint && !options.on_checkpoint(Snapshot(rate))) break;  // asked to stop
    }
    if (options.status_interval_ms > 0 &&
        Clock::now() - last_status >= std::chrono::milliseconds(options.status_interval_ms)) {
      const int64_t in = Totals().in;
      PrintStatus((in - in_at_last_status) / SecondsSince(last_status), false);
      in_at_last_status = in;
      last_status = Clock::now();
    }
  }
  rd_kafka_queue_destroy(queue);
  if (!result.ok()) return result;  // no checkpoint past a failure
  // Final checkpoint on a clean stop (signal or end of log).
  KAPPA_RETURN_IF_ERROR(Checkpoint());
  summary->seconds = SecondsSince(start);
  if (options.on_checkpoint) options.on_checkpoint(Snapshot(summary->seconds > 0 ? processed / summary->seconds : 0));
  if (options.status_interval_ms > 0) {
    PrintStatus(summary->seconds > 0 ? processed / summary->seconds : 0, true);
  }
  return Status::OK();
}

Status JobRunner::Run(volatile int* stop) {
  Status st = impl_->Open();
  if (st.ok()) st = impl_->Assign();
  if (st.ok()) {
    std::fprintf(stderr, "kappa run: %s v%d (spec %s) from %s[0..%zu] to %s, state %s, epoch %lld\n",
                 impl_->spec.job.c_str(), impl_->spec.version, impl_->spec.spec_hash.c_str(),
                 impl_->spec.source_topic.c_str(), impl_->tasks.size() - 1, impl_->spec.OutputTopic().c_str(),
                 impl_->spec.state_dir.c_str(), static_cast<long long>(impl_->epoch));
    st = impl_->Loop(stop);
  }
  if (!impl_->tasks.empty()) {
    summary_.counters = impl_->Totals();
    // After a failure the in-memory counters are ahead of the last checkpoint;
    // the metrics file keeps describing what is durably committed.
    if (impl_->backend && st.ok()) impl_->WriteMetrics();
  }
  if (impl_->consumer) rd_kafka_consumer_close(impl_->consumer.get());
  return st;
}

}  // namespace kappa
