#include "engine/job_runner.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <iterator>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "engine/archive_source.h"
#include "engine/changelog.h"
#include "engine/checkpoint_coordinator.h"
#include "engine/committed_gaps.h"
#include "engine/hybrid_source.h"
#include "engine/job_metrics.h"
#include "engine/job_progress.h"
#include "engine/kafka_sink.h"
#include "engine/kafka_source.h"
#include "engine/log_identity.h"
#include "engine/postgres_sink.h"
#include "engine/postgres_table.h"
#include "engine/stage_plan.h"
#include "engine/standby.h"
#include "engine/start_position.h"
#include "engine/task.h"
#include "kafka/group_members.h"
#include "kafka/kafka_client.h"
#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"
#include "kafka/schema_registry.h"
#include "postgres/pg_client.h"
#include "state/state_backend.h"

namespace kappa {
namespace {

// A write-ahead log worth a word before the state is opened (its replay
// takes about a second per 30 MB on a busy 2-core machine).
constexpr uint64_t kSayLogReplayBytes = uint64_t{32} << 20;

// The coordinator's view of the Kafka sink. `acks_in_writer`: an
// at-least-once checkpoint does not stall on the broker's acks, nor an
// exactly-once one on its transaction's commit; the state backend's writer
// waits for them (or commits) before writing it (not under scale_out, whose
// changelog must be acknowledged when the barrier returns, and whose
// commit must fail at once when the group moves on).
class SinkBarrier final : public OutputBarrier {
 public:
  SinkBarrier(KafkaSink& sink, PartitionConsumer& consumer, const std::string& topic, bool acks_in_writer)
      : sink_(sink), consumer_(consumer), topic_(topic), acks_in_writer_(acks_in_writer) {}
  bool transactional() const override { return sink_.transactional(); }
  Status Flush(int timeout_ms) override { return sink_.Flush(timeout_ms); }
  std::function<Status()> CloseOutputs(int timeout_ms) override {
    return acks_in_writer_ ? sink_.CloseOutputs(timeout_ms) : nullptr;
  }
  Status CommitEpoch(int64_t /*epoch*/, const std::vector<std::pair<int32_t, int64_t>>& offsets) override {
    return sink_.CommitEpoch(consumer_.handle(), topic_, offsets);
  }
  std::function<Status()> CommitEpochLater(int64_t /*epoch*/,
                                           const std::vector<std::pair<int32_t, int64_t>>& offsets) override {
    return acks_in_writer_ ? sink_.CommitEpochLater(consumer_.handle(), topic_, offsets) : nullptr;
  }
  bool AwaitCommitRoom(int timeout_ms) override {
    return !acks_in_writer_ || !sink_.transactional() || sink_.AwaitCommitRoom(timeout_ms);
  }

 private:
  KafkaSink& sink_;
  PartitionConsumer& consumer_;
  const std::string& topic_;
  bool acks_in_writer_;
};

// The coordinator's view of a PostgreSQL sink: every checkpoint is one
// database transaction of rows and offsets.
class PostgresBarrier final : public OutputBarrier {
 public:
  explicit PostgresBarrier(PostgresSink& sink) : sink_(sink) {}
  bool transactional() const override { return true; }
  Status Flush(int /*timeout_ms*/) override { return Status::OK(); }
  Status CommitEpoch(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets) override {
    return sink_.CommitEpoch(epoch, offsets);
  }

 private:
  PostgresSink& sink_;
};

}  // namespace

struct JobRunner::Impl {
  JobSpec spec;
  KafkaConfig config;
  RunOptions options;
  RunSummary* summary = nullptr;
  std::string archive_dir;
  bool archive_only = false;
  int parallelism = 1;

  std::unique_ptr<StateBackend> backend;
  std::unique_ptr<KafkaSink> sink;
  std::unique_ptr<PostgresSink> pg;  // sink.postgres: the rows (DLQ and late still go through `sink`)
  std::unique_ptr<PartitionConsumer> consumer;
  std::vector<std::unique_ptr<Task>> owned_tasks;
  std::vector<Task*> tasks;
  // Scale-out (spec.scale_out): which partitions the group gave this
  // process (owned[p]), their tasks (active), the changelog writer, and
  // whether the consumer is closing (a revoke then only lets go).
  bool group = false;
  std::vector<uint8_t> owned;
  std::vector<Task*> active;
  std::unique_ptr<ChangelogWriter> changelog;
  std::unique_ptr<ChangelogReader> changelog_reader;
  // scale_out.standbys: the copies this process keeps of its predecessors'
  // partitions (engine/standby.h), placed from the group's assignments.
  std::unique_ptr<StandbyFollower> standby;
  std::unique_ptr<GroupAssignmentQuery> placement;
  Stopwatch since_placement;
  bool placement_due = true;
  std::vector<std::string> table_names;
  bool closing = false;
  StopToken run_stop;              // Run's, for what comes before the loop
  bool stopped_restoring = false;  // WhileRestoring met a stop request
  std::unique_ptr<CommittedGaps> gaps;
  std::unique_ptr<HistoryGapRule> gap_rule;
  std::unique_ptr<ArchiveSource> archive;
  std::unique_ptr<KafkaSource> kafka;
  std::unique_ptr<HybridSource> hybrid;
  Source* source = nullptr;
  // What the source said of the tasks' positions when Run closed it: a
  // report after the run (ReportWithFinalSecondStage) read the positions
  // of a destroyed source, and deploy/replay of a repartitioned job crashed
  // at every stop (a bug bash).
  std::optional<ProgressSnapshot> closed_source_snapshot;
  std::unique_ptr<OutputBarrier> barrier;
  std::unique_ptr<CheckpointCoordinator> coordinator;
  std::unique_ptr<ProgressReporter> reporter;
  Stopwatch run_time;
  int64_t processed = 0;  // records read by this run (rate cap, rates)
  // Rate cap: seconds of run_time that do not count (stalls beyond the burst).
  // The burst absorbs the jitter of sleeps and reads, no more: a capped
  // replay that made up a whole second after a stall ran at 1.67x its cap
  // for the next 1.5 s, taking the CPU from the live version it protects.
  static constexpr double kRateBurstS = 0.2;
  double rate_paused_s = 0;
  // The cap in force and where its accounting starts (reset by a change).
  double rate_cap = 0;
  int64_t rate_base_processed = 0;
  double rate_base_s = 0;
  bool paused = false;
  int64_t processed_at_checkpoint = 0;
  Stopwatch since_checkpoint;
  bool checkpoint_at_start = false;  // a first run's `start: latest` positions, made durable before reading
  Stopwatch since_metrics;
  Stopwatch since_stage_counters;
  // Second stage of a repartitioned job: its counters for the first stage.
  void PublishStageCounters() {
    since_stage_counters.Reset();
    std::vector<std::pair<int32_t, RecordCounters>> parts;
    for (const Task* t : Running()) parts.emplace_back(t->partition(), t->counters());
    options.publish_counters->Set(std::move(parts), pg ? pg->RejectedSinceStart(RunningPartitions()) : 0);
  }
  // The first stage's: the second stage's counters to add (null: none).
  std::optional<RecordCounters> SecondStage() const {
    if (!options.second_stage) return std::nullopt;
    return options.second_stage->Total();
  }
  int64_t SinkRejectedNow() const {
    if (options.second_stage) return options.second_stage->SinkRejected();
    return pg ? pg->RejectedSinceStart(RunningPartitions()) : 0;
  }
  // Partitions added to the source while the job runs are not read until it
  // restarts (its tasks are made at the start): checked every 30 s, and said.
  Stopwatch since_growth_check;
  int32_t growth_warned_at = 0;
  std::vector<int32_t> idle_seen;  // CheckIdleUpstreams: idle input partitions at the last check
  bool idle_warned = false;
  // CheckQuietUpstreams: each input partition's watermark at the last check,
  // and whether it was at its end then.
  std::map<int32_t, std::pair<int64_t, bool>> quiet_seen;
  bool quiet_warned = false;
  void CheckSourceGrowth();
  void CheckIdleUpstreams();
  // Scaled out: whether another instance of this version runs other logic
  // (the latest marker of a changelog partition it does not hold).
  Status CheckPeersSpec();
  Stopwatch since_peer_check;
  bool peers_checked = false;
  void CheckQuietUpstreams();
  double last_checkpoint_ms = 0;
  // Metrics rendered when a checkpoint was begun, written once it is durable.
  std::deque<std::pair<int64_t, std::string>> pending_metrics;

  Status Open();
  Status MakeSource();
  Status MakeTasks();
  // Avro feature rows: registers the row schema under "<output topic>-value"
  // and gives the window its id.
  Status RegisterRowSchema();
  Status PostgresGaps(const std::vector<bool>& restored);
  Status MakeGroupTasks(int32_t partitions);
  Status OnRebalance(RebalanceEvent event, const std::vector<int32_t>& partitions, std::vector<int64_t>* offsets);
  // The warning for a source topic grown to `now` partitions, of which this
  // run (or scaled-out version) reads `reads`.
  std::string GrowthText(int32_t now, int32_t reads) const;
  // Takes partition p from the group: restores its state and positions it.
  // *resumed: its restored task reads on in Kafka (for VerifyResumedLog).
  Status TakePartition(int32_t p, int64_t* offset, bool* resumed = nullptr);
  Status RewriteOrphans(int32_t p, const std::vector<std::pair<std::string, std::string>>& orphans);
  Status StandbyTurn();
  // A checkpoint of a scaled-out exactly_once version; a transaction the
  // group fenced, or that a sequence gap aborted, is rewound
  // (RewindAbortedEpoch) instead of stopping the job.
  Status GroupCheckpoint();
  Status FollowPause();
  Status RewindAbortedEpoch(const Status& why, KafkaSink::AbortedCommit cause);
  Status SwitchFromArchive();
  Status FreshTask(int32_t p);
  void UpdateActive();
  // The tasks this process runs now: every task, or the owned ones.
  const std::vector<Task*>& Running() const { return group ? active : tasks; }
  std::vector<int32_t> RunningPartitions() const {
    std::vector<int32_t> out;
    for (const Task* t : Running()) out.push_back(t->partition());
    return out;
  }
  Status Loop(StopToken stop);
  Status AfterRead(bool* asked_to_stop);
  // Seconds the records processed are ahead of the rate cap (rate_cap > 0).
  double RateAhead() const;
  void UpdateRate();
  Status Finish(bool input_ended);
  void WarnIfTheEmbeddedBrokerDroppedOutputs();
  Status ResetState();
  void PublishMetrics();
  Status CheckExistingOutputs();
  // Records CheckExistingOutputs found in the output topic of a version
  // starting without a checkpoint (said by NoteExistingOutputs).
  int64_t existing_output_records = 0;
  void NoteExistingOutputs();
  Status CheckWrittenTopicsHoldNoRows();
  // The first record of `topic` (of its first partition holding any), read
  // back; empty if none or unreadable. *records: how many the topic holds.
  std::vector<RecordAtOffset> FirstRecordOf(const std::string& topic, int64_t* records);
  Status WhileRestoring(int32_t partition, int32_t partitions, int64_t loaded,
                         std::chrono::steady_clock::time_point began, std::chrono::steady_clock::time_point* said);
  bool OutputTopicNeverWritten() const;
  Status CheckRestoredOutputsKept(const std::vector<bool>& restored);
  Status WriteGapsIntoEmptyOutput();
  Status WriteDurableMetrics();
  void Note(NoteLevel level, const std::string& text) const {
    if (options.on_note) options.on_note(level, text);
  }
  bool upstream_ends_read = false;  // options.upstream_ended: the final ends are read
  Status ReadSettledEnds(const StopToken& stop);
  void NoteOpenTransactions();
  mutable Stopwatch since_read_past;  // AtEnd asks the consumer's positions at most every 100 ms
  bool AtEnd() const {
    // A member of a group is at the end once it has partitions, all there.
    if (group && (!consumer->joined() || active.empty())) return false;
    bool ask = false;  // whether a task short of its end may have read past it
    for (const Task* t : Running()) {
      if (t->next_offset() < source->EndAtOpen(static_cast<size_t>(t->partition()))) {
        ask = true;
        break;
      }
    }
    if (!ask) return true;
    // A topic written transactionally (an exactly_once job's output or
    // repartition topic, any transactional producer's) ends in a marker
    // no record stands for, and an aborted transaction's records are never
    // read: the consumer's position passes them, the task's next offset
    // does not (a bounded run on such a topic never ended).
    if (since_read_past.Seconds() < 0.1) return false;
    since_read_past.Reset();
    for (const Task* t : Running()) {
      const size_t p = static_cast<size_t>(t->partition());
      const int64_t next = std::max(t->next_offset(), source->ReadPast(p));
      if (next < source->EndAtOpen(p)) return false;
    }
    return true;
  }
  // While a checkpoint waits for the state's writer, which waits for the
  // sink's acks or commit: status line and metrics as usual. The consumer
  // is not polled meanwhile, so the sink's producer says whether a broker
  // answers.
  bool waiting_for_writer = false;
  int64_t source_lost_since_ms = 0;  // the source's outage being waited out (wall clock ms), 0: none
  void ReportWhileWaiting() {
    waiting_for_writer = true;
    if (reporter->Due()) reporter->Report(Snapshot(), processed);
    if (options.metrics != nullptr && since_metrics.Millis() >= 1000) PublishMetrics();
    waiting_for_writer = false;
  }
  ProgressSnapshot Snapshot() const {
    ProgressSnapshot s = source != nullptr ? SnapshotOf(Running(), *source, coordinator->epoch())
                                           : closed_source_snapshot.value_or(ProgressSnapshot{});
    if (waiting_for_writer && !s.source_unreachable() && sink) s.source_unreachable_since_ms = sink->UnreachableSinceMs();
    if (group) s.source_partitions = static_cast<int32_t>(tasks.size());
    if (pg) {
      s.sink_rejected = pg->RejectedSinceStart(RunningPartitions());
      s.sink_waiting_since_ms = pg->WaitingSinceMs();
      s.sink_waiting_reason = pg->WaitingReason();
    }
    if (options.second_stage) {
      s.counters = s.counters.WithSecondStage(options.second_stage->Total());
      s.sink_rejected = options.second_stage->SinkRejected();  // the second stage writes the sink
    }
    if (standby) {
      for (const auto& c : standby->Copies()) s.standbys.push_back({c.partition, c.lag_records, c.applied_next_offset});
    }
    return s;
  }
};

Result<int32_t> SourcePartitionCount(const KafkaConfig& config, const std::string& topic) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  auto count = TopicPartitionCount(client->get(), topic, 10000);
  if (!count.ok()) return count.status().WithContext("the source topic " + topic + ": ");
  return *count;
}

JobRunner::JobRunner(JobSpec spec, KafkaConfig config, RunOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.spec = std::move(spec);
  d.config = std::move(config);
  d.options = std::move(options);
  d.summary = &summary_;
  if (d.options.metrics_file.empty()) d.options.metrics_file = d.spec.state_dir + "/metrics.json";
  d.archive_dir = d.options.archive_dir.empty() ? d.spec.archive_dir : d.options.archive_dir;
  d.archive_only = d.options.archive_only;
  d.parallelism = d.options.parallelism > 0 ? d.options.parallelism : d.spec.parallelism;
  if (d.options.on_note) {
    d.spec.decode.on_registry_wait = [note = d.options.on_note](const std::string& text) {
      note(text.find("answers again") != std::string::npos ? NoteLevel::kInfo : NoteLevel::kWarning, text);
    };
  }
}

JobRunner::~JobRunner() = default;

// The state (checked to belong to this spec), the sink and the consumer.
Status JobRunner::Impl::Open() {
  if (archive_only && archive_dir.empty()) {
    return Status::InvalidArgument("--archive-only needs an archive (--archive DIR or source.archive in the spec)");
  }
  if (spec.scale_out.enabled && (options.stop_at_end || archive_only)) {
    // A member knows only the partitions it holds now: it was "at the end"
    // with those, exited 0, and the partitions of a member that died (or
    // had not joined yet) were never read (a bug bash). A bounded run is
    // one process's.
    return Status::InvalidArgument(
        std::string(archive_only ? "--archive-only" : "--stop-at-end") +
        " is not supported for a scaled-out job: one process cannot tell when the others' partitions are done, "
        "and those of a process that died would be left unread; run the bounded replay in one process "
        "(without --scale-out / scale_out: false), or run the instances without it and stop them once `kappa "
        "status` (or kappa_lag_records) shows no lag");
  }
  // Before Kafka is asked and before --reset-state deletes anything: a
  // missing archive was named after the state had been deleted, and 15 s
  // after an --archive-only start against a Kafka away (a bug bash).
  if (!archive_dir.empty()) {
    std::error_code ec;
    const auto type = std::filesystem::status(archive_dir, ec).type();
    if (type == std::filesystem::file_type::not_found) {
      return Status::NotFound("archive directory " + archive_dir + " does not exist");
    }
    if (!ec && type != std::filesystem::file_type::directory) {
      return Status::InvalidArgument("archive " + archive_dir + " is not a directory");
    }
  }
  auto names = Task::StateTableNames(spec);
  if (!names.ok()) return names.status();
  if (!archive_only && !options.source_checked) {
    // Kafka reachable and the source there before anything is made: a run
    // that fails on them left its state directory behind, and the sink, DLQ
    // and late topics auto-created by the sink's first metadata request.
    auto count = SourcePartitionCount(config, spec.source_topic);
    if (!count.ok()) return count.status();
  }
  if (options.reset_state) KAPPA_RETURN_IF_ERROR(ResetState());
  if (const uint64_t log = StateBackend::WriteAheadLogBytes(spec.state_dir); log >= kSayLogReplayBytes) {
    // RocksDB replays it inside Open, before the restore can say how far it
    // is: a restart after a crash of a job with a large state was silent
    // for 4-7 s (a bug bash).
    Note(NoteLevel::kInfo, "opening the state in " + AbsoluteStateDir(spec.state_dir) + ": RocksDB first replays " +
                               std::to_string(log >> 20) +
                               " MB of write-ahead log the last run left (a crash leaves it, and a clean stop of "
                               "a kappa before 2026-12-07); some seconds per 100 MB");
  }
  auto backend_or = StateBackend::Open(spec.state_dir, *names);
  if (!backend_or.ok()) return backend_or.status();
  backend = std::move(*backend_or);
  KAPPA_RETURN_IF_ERROR(backend->CheckIdentity({spec.job, spec.version, spec.spec_hash}));
  if (spec.scale_out.enabled) {
    group = true;
    if (archive_only) {
      return Status::InvalidArgument(
          "--archive-only runs in one process: scale_out shares partitions through Kafka's consumer group (use "
          "--archive: each instance reads its partitions from the archive, then from Kafka)");
    }
    if (spec.postgres()) {
      return Status::InvalidArgument("scale_out with a PostgreSQL sink is not supported yet: run one process");
    }
    // Stable across restarts of the same process (host and state dir): under
    // exactly_once a restarted instance aborts its own open transaction at
    // once instead of waiting for it to time out.
    if (spec.scale_out.instance.empty()) spec.scale_out.instance = DefaultInstanceName(spec.state_dir);
  }
  auto sink_or = KafkaSink::Create(config, spec, options.on_note);
  if (!sink_or.ok()) return sink_or.status();
  sink = std::move(*sink_or);
  if (spec.postgres()) {
    auto pg_or = PostgresSink::Create(spec, sink.get(), options.on_note);
    if (!pg_or.ok()) return pg_or.status();
    pg = std::move(*pg_or);
    if (spec.delivery == DeliveryMode::kExactlyOnce) {
      // Accepted without a word, while its dead letters were repeated
      // after a crash (a bug bash: 3,137 for 3,051 bad records).
      Note(NoteLevel::kWarning,
           "delivery: exactly_once with a PostgreSQL sink: rows and input offsets commit in one database "
           "transaction (exactly once), but DLQ and late records go to Kafka topics before it, at least once: a "
           "crash between the two can repeat some (`kappa dlq stats` counts repeats apart), never lose one");
    }
  }
  PartitionConsumerOptions consumer_options;
  consumer_options.group = spec.ConsumerGroup();
  consumer_options.group_member = group;
  consumer_options.session_timeout_ms = spec.scale_out.session_timeout_ms;
  consumer_options.on_transient = [this](const std::string& text) { Note(NoteLevel::kWarning, text); };
  auto consumer_or = PartitionConsumer::Create(config, std::move(consumer_options));
  if (!consumer_or.ok()) return consumer_or.status();
  consumer = std::move(*consumer_or);
  return MakeSource();
}

// --reset-state: only what kappa created goes, and the note says what.
Status JobRunner::Impl::ResetState() {
  // Nothing to delete: no "deleted 0 files" warning (for a directory that
  // could not even be made, a bug bash).
  std::error_code ec;
  if (!std::filesystem::exists(spec.state_dir, ec)) return Status::OK();
  // Another job's or version's checkpoints are not this one's to delete:
  // pointed at them by mistake, --reset-state deleted them without naming
  // whose they were (a bug bash), where a start without it is refused. A
  // store that cannot be read (damaged) is reset as before.
  if (auto stored = StateBackend::StoredIdentity(spec.state_dir);
      stored && (stored->job != spec.job || stored->version != spec.version)) {
    return Status::FailedPrecondition(
        "--reset-state deletes only this version's own state, but " + AbsoluteStateDir(spec.state_dir) +
        " holds the checkpoints of job " + stored->job + " version " + std::to_string(stored->version) +
        ", not of job " + spec.job + " version " + std::to_string(spec.version) +
        ": nothing deleted. Give this version its own state directory (checkpoint.dir or --state-dir)");
  }
  auto reset = StateBackend::Reset(spec.state_dir);
  if (!reset.ok()) return reset.status();
  std::string text = "--reset-state: deleted " + std::to_string(reset->removed.size()) +
                     " files kappa created in " + spec.state_dir +
                     " (RocksDB's files, its epoch marker, metrics.json); starting from scratch";
  if (!reset->kept.empty()) {
    text += "; left " + std::to_string(reset->kept.size()) + " other entries alone:";
    for (size_t i = 0; i < reset->kept.size() && i < 5; ++i) text += " " + reset->kept[i];
    if (reset->kept.size() > 5) text += " ...";
  }
  Note(NoteLevel::kWarning, text);
  return Status::OK();
}

// Writes the newest metrics whose checkpoint is durable by now; never one
// that is only begun.
Status JobRunner::Impl::WriteDurableMetrics() {
  const int64_t durable = backend->last_epoch();
  std::string text;
  while (!pending_metrics.empty() && pending_metrics.front().first <= durable) {
    text = std::move(pending_metrics.front().second);
    pending_metrics.pop_front();
  }
  if (text.empty()) return Status::OK();
  return WriteMetricsText(options.metrics_file, text);
}

// Archive only, Kafka only, or the archive then Kafka.
Status JobRunner::Impl::MakeSource() {
  gaps = std::make_unique<CommittedGaps>(sink.get());
  gap_rule = std::make_unique<HistoryGapRule>(spec, sink.get(), options.on_note);
  if (!archive_dir.empty()) {
    archive = std::make_unique<ArchiveSource>(spec, archive_dir, parallelism, sink.get(), *gaps, *gap_rule);
    archive->SetOnNote(options.on_note);
  }
  if (!archive_only) {
    kafka = std::make_unique<KafkaSource>(spec, *consumer, *gaps, *gap_rule, options.on_note, parallelism, sink.get(),
                                          &config);
  }
  if (archive && kafka) hybrid = std::make_unique<HybridSource>(*archive, *kafka, *gap_rule, spec);
  // A group member reads Kafka through its KafkaSource and the archive
  // partition by partition (SwitchFromArchive); the hybrid source only
  // positions its partitions.
  if (group) {
    source = kafka.get();
    return Status::OK();
  }
  source = hybrid ? static_cast<Source*>(hybrid.get())
                  : archive ? static_cast<Source*>(archive.get()) : static_cast<Source*>(kafka.get());
  return Status::OK();
}

Status JobRunner::Impl::RegisterRowSchema() {
  WindowSpec* window = spec.FeatureWindow();
  if (window == nullptr || window->row_format != RowFormat::kAvro) return Status::OK();
  auto options = SchemaRegistryOptions::FromProperties({{"schema.registry.url", spec.sink_schema_registry_url}});
  if (options.ok()) options->setting = "sink.schema_registry";
  if (!options.ok()) return options.status();
  auto client = SchemaRegistryClient::Create(*options);
  if (!client.ok()) return client.status();
  const std::string subject = spec.OutputTopic() + "-value";
  auto id = (*client)->Register(subject, AvroRowSchema("FeatureRow", window->RowColumns()));
  if (!id.ok()) {
    std::string msg = "registering the Avro schema of the output rows under `" + subject + "` at " +
                      spec.sink_schema_registry_url + ": " + id.status().message();
    return id.status().code() == Status::Code::kUnavailable ? Status::Unavailable(std::move(msg))
                                                            : Status::FailedPrecondition(std::move(msg));
  }
  window->avro_schema_id = *id;
  Note(NoteLevel::kInfo, "output rows are Avro, schema id " + std::to_string(*id) + " (subject " + subject + ")");
  return Status::OK();
}

// "resuming from checkpoint epoch 7: partitions 0-3 at offsets 0:1200 1:..."
// for a restart (so that nobody reads "from offset 0" into it); empty when
// no partition had a checkpoint.
static std::string DescribeResume(const std::vector<Task*>& tasks, const std::vector<bool>& restored, int64_t epoch) {
  std::string offsets;
  size_t count = 0;
  for (size_t p = 0; p < tasks.size(); ++p) {
    if (!restored[p]) continue;
    if (++count <= 8) offsets += " " + std::to_string(p) + ":" + std::to_string(tasks[p]->next_offset());
  }
  if (count == 0) return "";
  if (count > 8) offsets += " ...";
  return "resuming from checkpoint epoch " + std::to_string(epoch) + ": " + std::to_string(count) + " of " +
         std::to_string(tasks.size()) + " partition(s) restored, next offsets" + offsets +
         (count < tasks.size() ? "; the others start fresh" : "");
}

// A version starting without any checkpoint whose output topic already
// holds rows writes them again: its state directory is another one than its
// last run's (a relative checkpoint.dir, or the default .kappa/state, from
// another working directory: a bug bash duplicated every output that way),
// or was deleted. Said, with the directory in full. Rows of another job
// there (the lineage header kappa.job of a partition's first record) are
// refused: `kappa run` of two jobs with one sink mixed their rows, which
// `kappa get` and promote cannot tell apart (deploy's registry refuses it).
std::vector<RecordAtOffset> JobRunner::Impl::FirstRecordOf(const std::string& topic, int64_t* records) {
  *records = 0;
  auto marks = consumer->TopicWatermarks(topic);
  if (!marks.ok()) return {};  // none yet (or unreadable: the sink will say)
  std::vector<RecordAtOffset> first;
  for (int32_t p = 0; p < static_cast<int32_t>(marks->size()); ++p) {
    const Watermarks& w = (*marks)[static_cast<size_t>(p)];
    *records += w.high - w.low;
    if (w.high > w.low && first.empty()) {
      RecordAtOffset ask;
      ask.topic = topic;
      ask.partition = p;
      ask.offset = w.low;
      first.push_back(std::move(ask));
    }
  }
  if (first.empty()) return {};
  // Its headers are all that is asked, which a record of an aborted or
  // open transaction has too: read_committed, an exactly-once restart after
  // a kill before its first checkpoint waited 10 s, silent, behind the
  // killed run's open transaction (a bug bash).
  std::string poll_error;
  if (!ReadRecordsAt(config, spec.ConsumerGroup(), &first, 10000, &poll_error, /*read_uncommitted=*/true).ok() ||
      first[0].found != RecordAtOffset::Found::kRecord) {
    return {};
  }
  return first;
}

namespace {

// The lineage headers kappa's sink writes on every record (kafka_sink.cc):
// rows carry kappa.spec_hash, dead letters and late records do not.
struct Lineage {
  std::string job, version, spec_hash;
};

Lineage LineageOf(const RecordAtOffset& record) {
  Lineage lineage;
  for (const auto& [name, value] : record.headers) {
    if (name == "kappa.job") lineage.job = value;
    if (name == "kappa.version") lineage.version = value;
    if (name == "kappa.spec_hash") lineage.spec_hash = value;
  }
  return lineage;
}

}  // namespace

// Dead letters and late records of an unregistered `kappa run` went into a
// registered job's output topic (deploy refuses it from the registry, run
// reads no registry): `kappa get` answered a dead letter as that job's row,
// and promote's diff counted them (a bug bash). A DLQ or late topic whose
// first record is a row (kappa.spec_hash) is refused at a first start.
Status JobRunner::Impl::CheckWrittenTopicsHoldNoRows() {
  if (!consumer || spec.stage > 0) return Status::OK();
  for (const auto& [key, topic] : {std::pair<std::string, std::string>{"dlq", spec.dlq_topic},
                                   {"late", spec.late_topic}}) {
    if (topic.empty()) continue;
    int64_t records = 0;
    const std::vector<RecordAtOffset> first = FirstRecordOf(topic, &records);
    if (first.empty()) continue;
    const Lineage lineage = LineageOf(first[0]);
    if (lineage.spec_hash.empty()) continue;  // dead letters or late records, anyone's
    return Status::FailedPrecondition(
        "`" + key + ".topic` " + topic + " holds output rows of job " + lineage.job + " v" + lineage.version +
        " (the kappa.spec_hash header of partition " + std::to_string(first[0].partition) + "'s record at offset " +
        std::to_string(first[0].offset) + "): rows and this job's " +
        (key == "dlq" ? "dead letters" : "late records") + " in one topic cannot be told apart. Give job " +
        spec.job + " its own " + key + ".topic");
  }
  return Status::OK();
}

Status JobRunner::Impl::CheckExistingOutputs() {
  if (pg || !consumer || spec.stage > 0 || !spec.stage_output_topic.empty()) return Status::OK();
  const std::string topic = spec.OutputTopic();
  int64_t rows = 0;
  const std::vector<RecordAtOffset> first = FirstRecordOf(topic, &rows);
  if (rows <= 0) return Status::OK();
  if (!first.empty()) {
    const std::string where = "partition " + std::to_string(first[0].partition) + "'s record at offset " +
                              std::to_string(first[0].offset);
    const Lineage lineage = LineageOf(first[0]);
    const std::string& job = lineage.job;
    const std::string& hash = lineage.spec_hash;
    if (!job.empty() && job != spec.job) {
      return Status::FailedPrecondition(
          topic + " holds rows of another job, " + job + " (the kappa.job header of " + where +
          "): the rows of two jobs in one topic cannot be told apart by `kappa get` and promote's diff. Give job " +
          spec.job + " its own sink.topic");
    }
    // The same version with other logic: with its state directory the
    // restart is refused (the checkpoint's identity), without it the new
    // logic wrote its rows beside the old ones in one version's topic (a
    // bug bash: 92,913 rows of two spec hashes).
    if (job == spec.job && !hash.empty() && hash != spec.spec_hash) {
      return Status::FailedPrecondition(
          topic + " holds rows of " + spec.job + " v" + std::to_string(spec.version) + " written by other logic (spec " +
          hash + ", the kappa.spec_hash header of " + where + "; this spec is " + spec.spec_hash +
          "): a version's logic never changes. Give the new logic a new version (kappa replay, or `version:` in the "
          "spec), or, to start this version over, delete " + topic + " first");
    }
  }
  existing_output_records = rows;
  return Status::OK();
}

// Under exactly_once, said once the committed gaps are known: what a
// killed run's transactions committed is re-read with its outputs
// suppressed (CommittedGaps), so nothing is written twice; and records of
// its aborted or open transaction count in the topic's offsets. The
// warning said "writes its outputs again" in both cases (a bug bash).
void JobRunner::Impl::NoteExistingOutputs() {
  if (existing_output_records <= 0) return;
  const std::string dir = AbsoluteStateDir(spec.state_dir);
  const std::string topic = spec.OutputTopic();
  const std::string elsewhere =
      "If it ran before with another state directory (a relative checkpoint.dir is relative to the working "
      "directory), stop it and run it with that one";
  if (!sink->transactional()) {
    Note(NoteLevel::kWarning, topic + " already holds " + std::to_string(existing_output_records) +
                                  " records, but this version has no checkpoint in " + dir +
                                  ": it starts over and writes its outputs again. " + elsewhere);
    return;
  }
  if (gaps->remaining(tasks) > 0) return;  // Find said which offsets it re-reads, outputs suppressed
  Note(NoteLevel::kWarning,
       topic + " already holds " + std::to_string(existing_output_records) +
           " records by its offsets (aborted transactions' count too, though no read_committed consumer sees "
           "them), but this version has no checkpoint in " + dir +
           " and no offsets committed in Kafka: it starts over, and rows committed there, if any, are written "
           "again. " + elsewhere);
}

// Whether the job's output topic has never held a record in its present
// life: missing, or every partition's high watermark 0 (retention leaves
// the high watermark where it was). Unknown (an error) reads as false.
// Only for a single-stage job's Kafka outputs, where CheckExistingOutputs
// looks too.
bool JobRunner::Impl::OutputTopicNeverWritten() const {
  if (pg || !consumer || spec.stage > 0 || !spec.stage_output_topic.empty()) return false;
  const std::string topic = spec.OutputTopic();
  auto marks = consumer->TopicWatermarks(topic);
  if (!marks.ok()) return marks.status().code() == Status::Code::kNotFound;
  for (const Watermarks& w : *marks) {
    if (w.high > 0) return false;
  }
  return true;
}

// A restart whose checkpoint says the job wrote rows, beside an output topic
// that never held one (deleted, or deleted and made again, between runs):
// it went on writing only what came next, and the rows before were gone
// without a word (a bug bash). Refused, saying how to write them again.
Status JobRunner::Impl::CheckRestoredOutputsKept(const std::vector<bool>& restored) {
  int64_t written = 0;
  for (size_t i = 0; i < tasks.size() && i < restored.size(); ++i) {
    if (restored[i]) written += tasks[i]->counters().outputs;
  }
  if (written == 0 || !OutputTopicNeverWritten()) return Status::OK();
  return Status::FailedPrecondition(
      spec.OutputTopic() + " holds no record, but the checkpoint in " + AbsoluteStateDir(spec.state_dir) +
      " says " + spec.job + " v" + std::to_string(spec.version) + " wrote " + std::to_string(written) +
      " rows to it: the topic was deleted (or deleted and made again) since, and the job would not write them "
      "again. To write them again, start the version over with --reset-state: it re-reads the history and "
      "writes every output again");
}

// Exactly-once without the state the transactions committed (--reset-state,
// a lost directory): a gap's outputs are suppressed because the output
// topic holds them. An output topic that never held a record does not: the
// gap's rows went with the topic's old life (a bug bash: --reset-state after
// the topic was made again re-read 46,922 outputs into nothing). Its rows
// are written again; were there none, the re-read makes none either. First
// an empty transaction commits the offsets the tasks start from, so that a
// crash in the re-read (whose aborted records leave the topic's high
// watermark above 0) does not find the old gaps again and suppress the rest
// into a topic that no longer looks new.
Status JobRunner::Impl::WriteGapsIntoEmptyOutput() {
  const int64_t gap = gaps->remaining(tasks);
  if (gap == 0 || !OutputTopicNeverWritten()) return Status::OK();
  std::vector<std::pair<int32_t, int64_t>> starts;
  for (const Task* t : tasks) starts.emplace_back(t->partition(), t->next_offset());
  KAPPA_RETURN_IF_ERROR(sink->CommitEpoch(consumer->handle(), spec.source_topic, starts));
  gaps->WriteOutputs();
  Note(NoteLevel::kWarning,
       spec.OutputTopic() + " holds no record, though this version's Kafka transactions committed input it had "
       "not checkpointed (" + std::to_string(gap) + " records): the topic was deleted or made again since. The "
       "re-read writes those outputs again (its dead letters and late records, in their own topics, stay "
       "suppressed)");
  return Status::OK();
}

// Between each 65,536 entries a restore loads: a large state took 20-35 s
// to load without a word (a bug bash), and a stop request then waited out
// the 20 s stop grace and exited 1 blaming "a broker or database that does
// not answer". The restore says how far it is at the status interval, and
// ends on a stop request (the run then stops before processing anything).
Status JobRunner::Impl::WhileRestoring(int32_t partition, int32_t partitions, int64_t loaded,
                                       std::chrono::steady_clock::time_point began,
                                       std::chrono::steady_clock::time_point* said) {
#if KAPPA_TEST_HOOKS_ENABLED
  // KAPPA_TEST_RESTORE_PAUSE_MS=N (test builds): N ms here, so that a test's
  // stop request finds a restore under way.
  if (const char* pause = std::getenv("KAPPA_TEST_RESTORE_PAUSE_MS")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(pause)));
  }
#endif
  if (run_stop.stop_requested()) {
    stopped_restoring = true;
    return Status::Aborted("stopped while restoring the state");
  }
  const auto now = std::chrono::steady_clock::now();
  if (options.status_interval_ms <= 0 || now - *said < std::chrono::milliseconds(options.status_interval_ms)) {
    return Status::OK();
  }
  *said = now;
  char line[160];
  std::snprintf(line, sizeof(line), "restoring the state: partition %d of %d, %lld entries loaded in %.0f s",
                partition + 1, partitions, static_cast<long long>(loaded),
                std::chrono::duration<double>(now - began).count());
  Note(NoteLevel::kInfo, line + (" from " + AbsoluteStateDir(spec.state_dir)));
  return Status::OK();
}

// One task per partition, restored from RocksDB (the only source of truth
// for offsets) where it has a checkpoint, then positioned by the source.
Status JobRunner::Impl::MakeTasks() {
  auto partitions = source->Partitions();
  if (!partitions.ok()) return partitions.status();
  // Kafka never takes partitions away: checkpoints past the topic's count
  // mean a recreated topic, and their state is not dropped silently.
  KAPPA_RETURN_IF_ERROR(CheckStoredPartitions(spec, backend->StoredPartitions(), *partitions));
  if (group) return MakeGroupTasks(*partitions);
  std::vector<bool> restored(*partitions, false);
  const auto restore_began = std::chrono::steady_clock::now();
  auto restore_said = restore_began;
  int64_t loaded = 0;  // entries, over the partitions restored so far
  for (int32_t p = 0; p < *partitions; ++p) {
    auto task = Task::Create(p, spec, pg ? static_cast<OutputCollector*>(pg.get()) : sink.get());
    if (!task.ok()) return task.status();
    auto stored = backend->ReadTask(p);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) {
      // The task first: its watermark says which dedup entries have expired
      // (those are not loaded).
      (*task)->Restore(**stored);
      int64_t here = 0;
      const auto every = [&](int64_t n) {
        here = n;
        return WhileRestoring(p, *partitions, loaded + n, restore_began, &restore_said);
      };
      KAPPA_RETURN_IF_ERROR(
          backend->Restore(p, (*task)->registry(), (*task)->expiry_watermark_ms(), nullptr, every));
      loaded += here;
      restored[p] = true;
    }
    tasks.push_back(task->get());
    owned_tasks.push_back(std::move(*task));
  }
  sink->SetPartitions(*partitions);
  if (const std::string resumed = DescribeResume(tasks, restored, backend->last_epoch()); !resumed.empty()) {
    Note(NoteLevel::kInfo, resumed);
  } else {
    KAPPA_RETURN_IF_ERROR(CheckExistingOutputs());
    KAPPA_RETURN_IF_ERROR(CheckWrittenTopicsHoldNoRows());
  }
  KAPPA_RETURN_IF_ERROR(source->Open(tasks, restored));
  KAPPA_RETURN_IF_ERROR(CheckRestoredOutputsKept(restored));
  // `start: latest` is resolved now: a kill -9 before the first checkpoint
  // resolved it again at the restart, later, and what came between was
  // never read, without a word (a bug bash). The positions are made
  // durable before anything is read.
  checkpoint_at_start =
      spec.start == StartPosition::kLatest && std::find(restored.begin(), restored.end(), true) == restored.end();
  NoteOpenTransactions();
  if (pg) {
    KAPPA_RETURN_IF_ERROR(PostgresGaps(restored));
    barrier = std::make_unique<PostgresBarrier>(*pg);
  } else {
    if (sink->transactional()) {
      KAPPA_RETURN_IF_ERROR(gaps->Find(spec, *consumer, tasks, options.on_note));
      KAPPA_RETURN_IF_ERROR(WriteGapsIntoEmptyOutput());
    } else {
      gaps->Reset(tasks.size());
    }
    NoteExistingOutputs();
    barrier = std::make_unique<SinkBarrier>(*sink, *consumer, spec.source_topic, /*acks_in_writer=*/true);
  }
  coordinator = std::make_unique<CheckpointCoordinator>(tasks, *backend, *barrier,
                                                        archive_only ? nullptr : consumer.get(), spec.source_topic,
                                                        *gaps, spec.checkpoint_interval_ms);
  HeadroomPolicy headroom;
  headroom.min_bytes = options.state_headroom_mib << 20;
  coordinator->SetHeadroom(headroom);
  reporter = std::make_unique<ProgressReporter>(options.status_interval_ms, options.on_status);
  coordinator->SetWhileWaiting([this] { ReportWhileWaiting(); });
  return Status::OK();
}

// Scale-out: a task per partition, none owned until the group assigns it
// (OnRebalance, inside the consumer's poll on this thread).
Status JobRunner::Impl::MakeGroupTasks(int32_t partitions) {
  auto names = Task::StateTableNames(spec);
  if (!names.ok()) return names.status();
  table_names = *names;
  auto changelog_partitions = EnsureChangelogTopic(config, spec, partitions);
  if (!changelog_partitions.ok()) return changelog_partitions.status();
  if (*changelog_partitions < partitions) {
    // Partitions were added to the input since this version began: its
    // state lives in one changelog partition per input partition, so it
    // reads the ones it began with; the group's assignments of the others
    // are taken and left unread.
    Note(NoteLevel::kWarning, GrowthText(partitions, *changelog_partitions));
    growth_warned_at = partitions;
    partitions = *changelog_partitions;
  }
  owned.assign(static_cast<size_t>(partitions), 0);
  owned_tasks.resize(static_cast<size_t>(partitions));
  tasks.assign(static_cast<size_t>(partitions), nullptr);
  for (int32_t p = 0; p < partitions; ++p) KAPPA_RETURN_IF_ERROR(FreshTask(p));
  sink->SetPartitions(partitions);
  gaps->Reset(static_cast<size_t>(partitions));
  KAPPA_RETURN_IF_ERROR(kafka->OpenForGroup(tasks, &owned));
  // With an archive, each partition this process is given is read from the
  // archive first, then from Kafka (the hybrid source's rule, per partition).
  if (hybrid) KAPPA_RETURN_IF_ERROR(hybrid->AttachGroup(tasks));
  changelog = std::make_unique<ChangelogWriter>(spec, *sink);
  auto reader = ChangelogReader::Create(config, spec.ChangelogTopic());
  if (!reader.ok()) return reader.status();
  changelog_reader = std::move(*reader);
  if (spec.scale_out.standbys > 0) {
    auto follower = StandbyFollower::Create(config, spec.ChangelogTopic(), spec.source_topic, spec.spec_hash,
                                            *backend, options.on_note);
    if (!follower.ok()) return follower.status();
    standby = std::move(*follower);
    placement = std::make_unique<GroupAssignmentQuery>(consumer->handle(), spec.ConsumerGroup(), spec.source_topic);
  }
  barrier = std::make_unique<SinkBarrier>(*sink, *consumer, spec.source_topic, /*acks_in_writer=*/false);
  // No informational group commits: the changelog's markers hold the
  // positions, and a commit refused mid-rebalance makes librdkafka start
  // another rebalance. (exactly_once still sends its offsets inside the
  // transaction, where the group generation fences a zombie.)
  coordinator = std::make_unique<CheckpointCoordinator>(tasks, *backend, *barrier, nullptr, spec.source_topic, *gaps,
                                                        spec.checkpoint_interval_ms);
  coordinator->SetOwned(&owned);
  coordinator->SetBeforeBarrier([this](const std::vector<Task*>& running, int64_t epoch) {
    for (const Task* t : running) KAPPA_RETURN_IF_ERROR(changelog->WriteEpoch(*t, epoch));
    return Status::OK();
  });
  HeadroomPolicy headroom;
  headroom.min_bytes = options.state_headroom_mib << 20;
  coordinator->SetHeadroom(headroom);
  reporter = std::make_unique<ProgressReporter>(options.status_interval_ms, options.on_status);
  coordinator->SetWhileWaiting([this] { ReportWhileWaiting(); });
  Note(NoteLevel::kInfo, "instance " + spec.scale_out.instance + " joining consumer group " + spec.ConsumerGroup() +
                             " (cooperative-sticky, session timeout " +
                             std::to_string(spec.scale_out.session_timeout_ms) + " ms); state also to " +
                             spec.ChangelogTopic());
  return consumer->Subscribe(spec.source_topic,
                             [this](RebalanceEvent event, const std::vector<int32_t>& ps, std::vector<int64_t>* offsets) {
                               return OnRebalance(event, ps, offsets);
                             });
}

// A partition handed back (or never had) gets a fresh task: its state
// leaves memory, and the next owner restores it.
Status JobRunner::Impl::FreshTask(int32_t p) {
  auto task = Task::Create(p, spec, sink.get());
  if (!task.ok()) return task.status();
  tasks[static_cast<size_t>(p)] = task->get();
  owned_tasks[static_cast<size_t>(p)] = std::move(*task);
  // (Before the source and coordinator are made, MakeGroupTasks hands them
  // the whole vector; while closing, the source is gone.)
  if (coordinator) {
    if (kafka) kafka->SetTask(static_cast<size_t>(p), tasks[static_cast<size_t>(p)]);
    if (hybrid) {
      archive->Unserve(static_cast<size_t>(p));
      archive->SetTask(static_cast<size_t>(p), tasks[static_cast<size_t>(p)]);
      hybrid->SetTask(static_cast<size_t>(p), tasks[static_cast<size_t>(p)]);
    }
    coordinator->SetTask(static_cast<size_t>(p), tasks[static_cast<size_t>(p)]);
  }
  return Status::OK();
}

void JobRunner::Impl::UpdateActive() {
  active.clear();
  for (size_t p = 0; p < owned.size(); ++p) {
    if (owned[p]) active.push_back(tasks[p]);
  }
}

Status JobRunner::Impl::OnRebalance(RebalanceEvent event, const std::vector<int32_t>& partitions,
                                    std::vector<int64_t>* offsets) {
  std::string list;
  for (int32_t p : partitions) list += (list.empty() ? "" : ",") + std::to_string(p);
  placement_due = true;
  // Partitions added to the input since this version began: taken from the
  // group (at the log end, so nothing is fetched for them but new records,
  // which the source drops) and never read (GrowthText says why).
  auto beyond = [&](int32_t p) { return p < 0 || static_cast<size_t>(p) >= tasks.size(); };
  if (std::any_of(partitions.begin(), partitions.end(), beyond)) {
    std::vector<int32_t> known;
    std::string extra;
    for (size_t i = 0; i < partitions.size(); ++i) {
      if (!beyond(partitions[i])) {
        known.push_back(partitions[i]);
        continue;
      }
      extra += (extra.empty() ? "" : ",") + std::to_string(partitions[i]);
      if (offsets) (*offsets)[i] = RD_KAFKA_OFFSET_END;
    }
    if (event == RebalanceEvent::kAssign) {
      Note(NoteLevel::kInfo, "instance " + spec.scale_out.instance + " was given partition(s) " + extra + " of " +
                                 spec.source_topic + ", added since this version began: not read");
      auto count = static_cast<int32_t>(tasks.size());
      for (int32_t p : partitions) count = std::max(count, p + 1);
      if (count > growth_warned_at) {
        growth_warned_at = count;
        Note(NoteLevel::kWarning, GrowthText(count, static_cast<int32_t>(tasks.size())));
      }
    }
    if (known.empty()) return Status::OK();
    std::vector<int64_t> known_offsets(known.size(), RD_KAFKA_OFFSET_INVALID);
    KAPPA_RETURN_IF_ERROR(OnRebalance(event, known, offsets ? &known_offsets : nullptr));
    if (offsets) {
      for (size_t i = 0, k = 0; i < partitions.size(); ++i) {
        if (!beyond(partitions[i])) (*offsets)[i] = known_offsets[k++];
      }
    }
    return Status::OK();
  }
  if (event == RebalanceEvent::kAssign) {
    // A partition this process kept a copy of: the copy reads up to the
    // changelog's end first, so that TakePartition finds it at the latest
    // marker and restores locally.
    // At most 5 s for all of them (under exactly_once a dead owner's open
    // transaction holds the readable end back: the copy cannot get there).
    if (standby) {
      Stopwatch catching_up;
      for (int32_t p : partitions) {
        const int left = std::max(0, 5000 - static_cast<int>(catching_up.Millis()));
        auto reached = standby->CatchUpAndDrop(p, left);
        if (!reached.ok()) return reached.status();
      }
    }
    std::vector<Task*> resumed;
    for (size_t i = 0; i < partitions.size(); ++i) {
      bool in_kafka = false;
      KAPPA_RETURN_IF_ERROR(TakePartition(partitions[i], &(*offsets)[i], &in_kafka));
      if (in_kafka) resumed.push_back(tasks[static_cast<size_t>(partitions[i])]);
    }
    // The log under a restored partition must be the one checkpointed (an
    // input deleted and recreated since would be read on at the old offsets,
    // skipping the new log's records below them): one read-back for all.
    KAPPA_RETURN_IF_ERROR(kafka->VerifyAssigned(resumed));
    UpdateActive();
    Note(NoteLevel::kInfo, "instance " + spec.scale_out.instance + " took partition(s) " + list + " of " +
                               spec.source_topic + "; it runs " + std::to_string(active.size()) + " now");
    return Status::OK();
  }
  if (closing) return Status::OK();  // the final checkpoint is taken
  if (event == RebalanceEvent::kLost) {
    if (sink->transactional()) {
      return Status::Aborted("instance " + spec.scale_out.instance + " lost partition(s) " + list + " of " +
                             spec.source_topic + " (it missed its group session, " +
                             std::to_string(spec.scale_out.session_timeout_ms) +
                             " ms): its open transaction cannot commit; restart it");
    }
    Note(NoteLevel::kWarning, "instance " + spec.scale_out.instance + " lost partition(s) " + list +
                                  " (it missed its group session): their outputs since the last checkpoint may "
                                  "be written again, identically, by the new owner");
  } else {
    // Cooperative revoke: the partitions' last checkpoint first, so the next
    // owner restores exactly where this one stopped.
    KAPPA_RETURN_IF_ERROR(GroupCheckpoint());
  }
  for (int32_t p : partitions) {
    owned[static_cast<size_t>(p)] = 0;
    KAPPA_RETURN_IF_ERROR(FreshTask(p));
  }
  UpdateActive();
  Note(NoteLevel::kInfo, "instance " + spec.scale_out.instance + " handed over partition(s) " + list + "; it runs " +
                             std::to_string(active.size()) + " now");
  return Status::OK();
}

// Scale-out with an archive: each owned partition whose archive part is
// done goes on in Kafka at exactly its next offset (the consumer, assigned
// at the archive's end and dropping what it fetched meanwhile, is moved
// there).
Status JobRunner::Impl::SwitchFromArchive() {
  PartitionList seek;
  for (size_t p = 0; p < owned.size(); ++p) {
    if (owned[p] != 2 || !archive->Done(p)) continue;
    KAPPA_RETURN_IF_ERROR(hybrid->SwitchToKafka(p));
    owned[p] = 1;
    seek.Add(spec.source_topic, static_cast<int32_t>(p), tasks[p]->next_offset());
  }
  return consumer->Seek(seek);
}

// A group member's fetching follows the pause. Resumed, each partition read
// from Kafka goes back to its task's position: librdkafka drops what it had
// fetched at the pause, and a partition not read since its assignment would
// resume past it.
Status JobRunner::Impl::FollowPause() {
  if (paused == consumer->fetching_paused()) return Status::OK();
  KAPPA_RETURN_IF_ERROR(consumer->PauseFetching(paused));
  if (paused) return Status::OK();
  PartitionList seek;
  for (size_t p = 0; p < owned.size(); ++p) {
    if (owned[p] == 1) seek.Add(spec.source_topic, static_cast<int32_t>(p), tasks[p]->next_offset());
  }
  return consumer->Seek(seek);
}

Status JobRunner::Impl::GroupCheckpoint() {
  Status st = coordinator->Checkpoint();
  if (st.ok() || !group) return st;
  const KafkaSink::AbortedCommit cause = sink->LastCommitAborted();
  if (cause == KafkaSink::AbortedCommit::kNone) return st;
  return RewindAbortedEpoch(st, cause);
}

// The group moved on while an epoch was committing (another instance joined
// or died), or the broker refused the epoch's outputs for a sequence gap an
// earlier such abort left: the epoch's transaction is aborted, so its outputs and
// changelog records are never visible, but the tasks ran past their last
// checkpoint. Every owned task goes back to it (from local state, which
// matches the changelog's latest committed marker) and reads again from
// there, as Kafka Streams does when a task migrates mid-commit.
Status JobRunner::Impl::RewindAbortedEpoch(const Status& why, KafkaSink::AbortedCommit cause) {
  Note(NoteLevel::kWarning,
       std::string(cause == KafkaSink::AbortedCommit::kRebalance
                       ? "the consumer group moved on while a checkpoint committed ("
                       : "the broker refused a checkpoint's outputs for a gap in the producer's sequence "
                         "numbers, left by an earlier aborted epoch (") +
           std::string(WithoutRestartAdvice(why.message())) +
           "): the epoch's transaction is aborted and its outputs are never visible; the "
           "partitions go back to their last checkpoint");
  std::vector<int32_t> ps;
  for (size_t p = 0; p < owned.size(); ++p) {
    if (owned[p]) ps.push_back(static_cast<int32_t>(p));
  }
  PartitionList seek(static_cast<int>(ps.size()));
  for (int32_t p : ps) {
    owned[static_cast<size_t>(p)] = 0;
    KAPPA_RETURN_IF_ERROR(FreshTask(p));
    int64_t offset = 0;
    KAPPA_RETURN_IF_ERROR(TakePartition(p, &offset));
    seek.Add(spec.source_topic, p, offset);
  }
  UpdateActive();
  return consumer->Seek(seek);
}

// Restores partition p's task: from local RocksDB when its checkpoint is
// the changelog's latest marker, otherwise from the changelog (see
// engine/changelog.h); a partition nobody checkpointed starts where the spec
// says. *offset: where to read from.
Status JobRunner::Impl::TakePartition(int32_t p, int64_t* offset, bool* resumed) {
  Task& task = *tasks[static_cast<size_t>(p)];
  const std::string topic = spec.ChangelogTopic();
  const std::string where = spec.source_topic + "[" + std::to_string(p) + "]";
  auto tail = changelog_reader->Tail(p);
  if (!tail.ok()) return tail.status();
  auto local = backend->ReadTask(p);
  if (!local.ok()) return local.status();
  auto check_hash = [&](const ChangelogMarker& m) -> Status {
    if (m.spec_hash == spec.spec_hash) return Status::OK();
    return Status::FailedPrecondition(topic + "[" + std::to_string(p) + "] holds state of spec " + m.spec_hash +
                                      ", this is spec " + spec.spec_hash +
                                      " of the same version: a logic change is a new version");
  };
  auto from_local = [&]() -> Status {
    KAPPA_RETURN_IF_ERROR(backend->Restore(p, task.registry()));
    task.Restore(**local);
    return Status::OK();
  };
  bool restored = false;
  std::string how;
  if (local->has_value() && tail->marker && (*local)->next_offset == tail->marker->task.next_offset) {
    KAPPA_RETURN_IF_ERROR(check_hash(*tail->marker));
    KAPPA_RETURN_IF_ERROR(from_local());
    restored = true;
    how = "restored from local state (it matches the changelog)";
  } else if (tail->empty) {
    if (local->has_value()) {
      KAPPA_RETURN_IF_ERROR(from_local());
      KAPPA_RETURN_IF_ERROR(changelog->WriteAll(p, *backend, table_names));
      restored = true;
      how = "restored from local state, which seeds the empty changelog";
    }
  } else {
    if (local->has_value() && !tail->marker) {
      // The partition does not end with a marker: a writer died between
      // its entries and its marker (or, under exactly_once, its last
      // transaction was aborted). Local state at the marker before them (a
      // standby's copy, or this process's own last checkpoint) is the
      // state: only the entries after that marker are rewritten, and the
      // changelog is not read whole.
      auto last = changelog_reader->LastMarker(p);
      if (!last.ok()) return last.status();
      if (last->marker && (*local)->next_offset == last->marker->task.next_offset) {
        KAPPA_RETURN_IF_ERROR(check_hash(*last->marker));
        KAPPA_RETURN_IF_ERROR(from_local());
        KAPPA_RETURN_IF_ERROR(RewriteOrphans(p, last->orphans));
        restored = true;
        how = last->orphans.empty()
                  ? "restored from local state (it matches the changelog's latest committed marker)"
                  : "restored from local state (it matches the changelog) and rewrote the " +
                        std::to_string(last->orphans.size()) + " entries a writer left after its last marker";
      }
    }
    if (!restored) {
      const auto began = std::chrono::steady_clock::now();
      Note(NoteLevel::kInfo, where + ": restoring its state from the changelog " + topic + "[" +
                                 std::to_string(p) + "] (its local state is not at the latest marker)");
      // `kappa status` shows the restore while it lasts: a progress record
      // as it starts and every 2 s (the loop publishes none meanwhile).
      auto contents = changelog_reader->ReadAll(p, options.on_note, [this](const RestoreProgress& rp) {
        if (!options.on_checkpoint) return;
        ProgressSnapshot snapshot = Snapshot();
        snapshot.restoring = rp;
        (void)options.on_checkpoint(snapshot);
      });
      if (!contents.ok()) return contents.status();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
      if (contents->marker &&
          (!local->has_value() || (*local)->next_offset <= contents->marker->task.next_offset)) {
        KAPPA_RETURN_IF_ERROR(check_hash(*contents->marker));
        TaskCheckpointData data = contents->marker->task;
        data.partition = p;
        KAPPA_RETURN_IF_ERROR(backend->ReplacePartition(p, contents->entries, data));
        KAPPA_RETURN_IF_ERROR(backend->Restore(p, task.registry()));
        task.Restore(data);
        KAPPA_RETURN_IF_ERROR(changelog->Rewrite(p, contents->orphans, contents->entries));
        restored = true;
        char rate[64];
        std::snprintf(rate, sizeof(rate), "%.1f MB/s",
                      static_cast<double>(contents->bytes) / 1e6 / std::max(1e-3, s));
        how = "restored from the changelog (" + std::to_string(contents->entries.size()) + " entries from " +
              std::to_string(contents->records) + " records, " + std::to_string(contents->bytes) +
              " bytes in " + std::to_string(static_cast<int64_t>(s * 1000)) + " ms, " + rate + "; written by " +
              contents->marker->writer + ")";
        if (!contents->orphans.empty()) {
          how += "; " + std::to_string(contents->orphans.size()) +
                 " entries a writer left after its last marker are rewritten";
        }
      } else {
        // No marker at all, or local state ahead of it (the changelog lost
        // records): local state if any, written to the changelog whole; the
        // entries without a marker are not state.
        KAPPA_RETURN_IF_ERROR(changelog->Rewrite(p, contents->orphans, {}));
        if (local->has_value()) {
          KAPPA_RETURN_IF_ERROR(from_local());
          KAPPA_RETURN_IF_ERROR(changelog->WriteAll(p, *backend, table_names));
          restored = true;
          how = "restored from local state, ahead of the changelog, which it reseeds";
        }
      }
    }
  }
  bool in_archive = false;
  if (hybrid) {
    KAPPA_RETURN_IF_ERROR(hybrid->PositionAssigned(task, restored));
    in_archive = archive->serving(static_cast<size_t>(p));
  } else {
    KAPPA_RETURN_IF_ERROR(kafka->PositionAssigned(task, restored));
  }
  // 2: read from the archive for now; Kafka is assigned at the archive's end
  // and its records are dropped until the switch seeks it (SwitchFromArchive).
  owned[static_cast<size_t>(p)] = in_archive ? 2 : 1;
  if (resumed) *resumed = restored && !in_archive;
  *offset = in_archive ? archive->Range(static_cast<size_t>(p)).end_offset : task.next_offset();
  Note(NoteLevel::kInfo, where + ": " + (restored ? how : std::string("no checkpoint anywhere, starts fresh")) +
                             "; reading from offset " + std::to_string(task.next_offset()) +
                             (in_archive ? " in the archive (up to " + std::to_string(*offset) + "), then Kafka"
                                         : std::string()));
  return Status::OK();
}

// Rewrites the entries a dead writer left after partition p's last marker
// with p's restored state (a tombstone where it holds none), so that no
// later marker covers them.
Status JobRunner::Impl::RewriteOrphans(int32_t p,
                                       const std::vector<std::pair<std::string, std::string>>& orphans) {
  if (orphans.empty()) return Status::OK();
  std::set<std::pair<std::string_view, std::string_view>> wanted;
  std::set<std::string> tables;  // of this spec (another table holds nothing here: its orphans become tombstones)
  for (const auto& [table, key] : orphans) {
    wanted.emplace(table, key);
    if (std::find(table_names.begin(), table_names.end(), table) != table_names.end()) tables.insert(table);
  }
  std::vector<StateBackend::Entry> entries;
  KAPPA_RETURN_IF_ERROR(backend->ForEachEntry(
      p, std::vector<std::string>(tables.begin(), tables.end()),
      [&](const std::string& table, std::string_view key, std::string_view value) {
        if (wanted.count({table, key}) > 0) entries.push_back({table, std::string(key), std::string(value)});
        return Status::OK();
      }));
  return changelog->Rewrite(p, orphans, entries);
}

// Standbys, once per loop turn: about every 5 s and after each rebalance
// the group's assignments are asked for (without waiting for the answer);
// the members ordered by member id form a ring, and this process keeps
// copies of the partitions of the `standbys` members before it (none that
// it runs itself). Then the copies follow the changelog for at most ~20 ms.
Status JobRunner::Impl::StandbyTurn() {
  if (!standby) return Status::OK();
  if ((placement_due || since_placement.Millis() > 5000) && !placement->pending() && consumer->joined()) {
    placement->Send(5000);
    placement_due = false;
    since_placement.Reset();
  }
  if (auto got = placement->TryGet()) {
    if (!got->ok()) {
      if (got->status().code() == Status::Code::kFailedPrecondition) {
        Note(NoteLevel::kWarning, "standbys are off: " + got->status().message());
        standby.reset();
        return Status::OK();
      }
      Note(NoteLevel::kWarning, "standby placement: " + got->status().message() + " (asking again in 5 s)");
    } else {
      char* me_raw = rd_kafka_memberid(consumer->handle());
      const std::string me = me_raw ? me_raw : "";
      if (me_raw) rd_kafka_mem_free(consumer->handle(), me_raw);
      const GroupAssignments& members = **got;
      auto mine = members.find(me);
      if (mine != members.end()) {  // else: not in the group's answer yet (joining)
        std::set<int32_t> want;
        // The partitions of the `standbys` members before this one (fewer
        // when the group has fewer others).
        const size_t copies = std::min<size_t>(static_cast<size_t>(spec.scale_out.standbys), members.size() - 1);
        auto before = mine;
        for (size_t k = 0; k < copies; ++k) {
          before = before == members.begin() ? std::prev(members.end()) : std::prev(before);
          for (int32_t p : before->second) {
            if (p >= 0 && static_cast<size_t>(p) < owned.size() && !owned[static_cast<size_t>(p)]) want.insert(p);
          }
        }
        KAPPA_RETURN_IF_ERROR(standby->Follow(want));
      }
    }
  }
  return standby->Step(20);
}

// The database's offsets against RocksDB's: ahead, the gap is re-read with
// outputs suppressed; behind (only when the database lost what it had
// committed: restored from a backup, rows deleted), the state cannot be
// wound back, so the job stops and says how to rebuild.
Status JobRunner::Impl::PostgresGaps(const std::vector<bool>& restored) {
  auto committed = pg->CommittedOffsets(static_cast<int32_t>(tasks.size()));
  if (!committed.ok()) return committed.status();
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (!restored[i] || std::max<int64_t>((*committed)[i], 0) >= tasks[i]->next_offset()) continue;
    return Status::FailedPrecondition(
        "the state in " + spec.state_dir + " is at offset " + std::to_string(tasks[i]->next_offset()) + " of " +
        spec.source_topic + "[" + std::to_string(tasks[i]->partition()) + "], but PostgreSQL's kappa_offsets " +
        ((*committed)[i] < 0 ? std::string("has no offset for it")
                             : "is at " + std::to_string((*committed)[i])) +
        ": rows the job committed are missing from " + spec.PostgresTable() +
        " (the database restored from a backup, or rows deleted). Rebuild from history with --reset-state: the "
        "job re-reads the input, emitting only past what the database holds");
  }
  // The table emptied (TRUNCATE, or DELETE) while kappa_offsets kept its
  // offsets: the restart resumed writing into an empty table, and a start
  // without state re-read the history with its rows suppressed, all
  // without a word (a bug bash). Unless the checkpoint, or kappa_offsets'
  // count of rows written, says the job has written no row yet (a job
  // restarted without its state in its first hour was refused as emptied:
  // a bug bash), an empty table beside committed offsets is refused. (Rows
  // deleted from a table that keeps others are not seen.)
  int64_t committed_to = -1, restored_outputs = 0;
  bool all_restored = true;
  for (size_t i = 0; i < tasks.size(); ++i) {
    committed_to = std::max(committed_to, (*committed)[i]);
    all_restored = all_restored && restored[i];
    if (restored[i]) restored_outputs += tasks[i]->counters().outputs;
  }
  if (committed_to > 0 && !(all_restored && restored_outputs == 0) && !pg->CommittedNoRow()) {
    auto empty = pg->TableEmpty();
    if (!empty.ok()) return empty.status();
    if (*empty) {
      const std::string offsets = PgOffsetsTable(spec.postgres_table);
      return Status::FailedPrecondition(
          "PostgreSQL table " + spec.PostgresTable() + " is empty, but " + offsets + " says " + spec.job + " v" +
          std::to_string(spec.version) + " committed rows to it (input up to offset " + std::to_string(committed_to) +
          "): they were deleted (TRUNCATE?), and the job would not write them again. To write them again, run "
          "`DELETE FROM " + offsets + " WHERE job = " + QuoteLiteral(spec.job) + " AND version = " +
          std::to_string(spec.version) + "` and start the job with --reset-state");
    }
  }
  gaps->FromCommitted(spec, tasks, *committed, "PostgreSQL (kappa_offsets)", options.on_note);
  return Status::OK();
}

// After each read: the rate cap, a checkpoint when one is due (then the
// metrics file and the checkpoint hook), a status when one is due.
// The cap in force now: options.max_rate, or the rate control's. A change
// (or a pause) starts the accounting afresh: no burst for the time at the
// old rate, no debt from it either.
void JobRunner::Impl::UpdateRate() {
  double cap = options.max_rate;
  bool now_paused = false;
  if (options.rate_control) {
    cap = options.rate_control->max_rate.load(std::memory_order_relaxed);
    now_paused = options.rate_control->paused.load(std::memory_order_relaxed);
    // Two instances under `kappa throttle --max-rate 3000` read 6,000
    // rec/s together (a bug bash): each takes its partitions' share.
    if (cap > 0 && group && !owned.empty() && options.rate_control->version_wide.load(std::memory_order_relaxed)) {
      const auto mine = std::count_if(owned.begin(), owned.end(), [](uint8_t o) { return o != 0; });
      if (mine > 0) cap = cap * static_cast<double>(mine) / static_cast<double>(owned.size());
    }
  }
  if (cap != rate_cap || now_paused || now_paused != paused) {
    rate_cap = cap;
    rate_base_processed = processed;
    rate_base_s = run_time.Seconds();
    rate_paused_s = 0;
  }
  paused = now_paused;
}

std::string JobRunner::Impl::GrowthText(int32_t now, int32_t reads) const {
  const std::string head = "the source topic " + spec.source_topic + " now has " + std::to_string(now) +
                           " partitions; this " + (group ? "version" : "run") + " reads the " + std::to_string(reads) +
                           (group ? " it began with" : " it had at the start") +
                           " (its lag and progress count those only): ";
  if (group) {
    // Its state lives in one changelog partition per input partition.
    return head + "a scaled-out version cannot take new partitions (its changelog has " + std::to_string(reads) +
           "); deploy a new version (bump `version:`) to read all " + std::to_string(now) + ", and promote it";
  }
  return head + "restart the job to read the new ones, from their beginning";
}

void JobRunner::Impl::CheckSourceGrowth() {
  since_growth_check.Reset();
  if (consumer == nullptr || archive_only) return;
  // A short wait: this runs on the job's thread (a broker away is said elsewhere).
  auto count = TopicPartitionCount(consumer->handle(), spec.source_topic, 200);
  if (!count.ok() || *count <= static_cast<int32_t>(tasks.size()) || *count == growth_warned_at) return;
  growth_warned_at = *count;
  Note(NoteLevel::kWarning, GrowthText(*count, static_cast<int32_t>(tasks.size())));
}

double JobRunner::Impl::RateAhead() const {
  return static_cast<double>(processed - rate_base_processed) / rate_cap -
         (run_time.Seconds() - rate_base_s - rate_paused_s);
}

Status JobRunner::Impl::AfterRead(bool* asked_to_stop) {
  if (rate_cap > 0 && !paused) {
    const double ahead = RateAhead();
    if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(ahead, 0.5)));
    // Time the job could not read (a broker away, a slow checkpoint) is not
    // made up by a burst past the cap: a capped replay would starve the live
    // job just when that one has a backlog too. At most kRateBurstS of credit.
    if (ahead < -kRateBurstS) rate_paused_s += -ahead - kRateBurstS;
  }
  KAPPA_RETURN_IF_ERROR(WriteDurableMetrics());
  // A checkpoint the writer failed to make durable stops the job now, with
  // its own error, not at the next checkpoint.
  KAPPA_RETURN_IF_ERROR(backend->WriteError());
  coordinator->CommitDurableOffsets();
  coordinator->PrepareCapture();
  if (coordinator->Due()) {
    KAPPA_RETURN_IF_ERROR(GroupCheckpoint());
    // Begun, not yet durable: its metrics wait for the backend's writer.
    const std::optional<RecordCounters> second = SecondStage();
    pending_metrics.emplace_back(coordinator->epoch(),
                                 RenderMetrics(spec, Running(), coordinator->epoch(), gap_rule->gap_records(),
                                               SinkRejectedNow(), second ? &*second : nullptr));
    if (options.on_checkpoint) {
      // The rate since the previous checkpoint.
      ProgressSnapshot snapshot = Snapshot();
      snapshot.records_per_second =
          static_cast<double>(processed - processed_at_checkpoint) / std::max(1e-3, since_checkpoint.Seconds());
      if (!options.on_checkpoint(snapshot)) *asked_to_stop = true;
    }
    processed_at_checkpoint = processed;
    since_checkpoint.Reset();
  }
  if (reporter->Due()) reporter->Report(Snapshot(), processed);
  if (source != nullptr) {
    // The outage was warned of, its end never said (a bug bash): once the
    // reader's broker answers again, a line says so and how long it was.
    const int64_t unreachable_since = source->UnreachableSinceMs();
    if (unreachable_since != 0) {
      source_lost_since_ms = unreachable_since;
    } else if (source_lost_since_ms != 0) {
      Note(NoteLevel::kInfo, "Kafka answers again after " +
                                 std::to_string(std::max<int64_t>(0, WallClockMs() - source_lost_since_ms) / 1000) +
                                 " s unreachable; reading on");
      source_lost_since_ms = 0;
    }
  }
  if (options.metrics != nullptr && since_metrics.Millis() >= 1000) PublishMetrics();
  if (options.publish_counters && since_stage_counters.Millis() >= 1000) PublishStageCounters();
  if (since_growth_check.Millis() >= TopicCheckIntervalMs()) {
    CheckSourceGrowth();
    CheckIdleUpstreams();
  }
  if (group && since_peer_check.Millis() >= (peers_checked ? TopicCheckIntervalMs()
                                                           : std::min<int64_t>(5000, TopicCheckIntervalMs()))) {
    KAPPA_RETURN_IF_ERROR(CheckPeersSpec());
  }
  return Status::OK();
}

// Two specs started as one job version join one consumer group and split
// its partitions: each ran to its end with half the input, without a word
// (a bug bash); the spec hash was compared only when a partition was
// restored from a changelog the other had written. Each instance's markers
// end its partitions' changelogs, so the other partitions' latest markers
// say what runs them. Checked a few seconds after the start, then with the
// topic checks.
Status JobRunner::Impl::CheckPeersSpec() {
  since_peer_check.Reset();
  peers_checked = true;
  if (!changelog_reader) return Status::OK();
  for (size_t p = 0; p < tasks.size() && p < owned.size(); ++p) {
    if (owned[p]) continue;
    auto tail = changelog_reader->Tail(static_cast<int32_t>(p));
    if (!tail.ok() || !tail->marker || tail->marker->spec_hash == spec.spec_hash) continue;
    return Status::FailedPrecondition(
        spec.ChangelogTopic() + "[" + std::to_string(p) + "] was last checkpointed by " +
        (tail->marker->writer.empty() ? std::string("another instance") : "instance " + tail->marker->writer) +
        " running spec " + tail->marker->spec_hash + ", and this instance runs spec " + spec.spec_hash + " of " +
        spec.job + " v" + std::to_string(spec.version) +
        ": two specs run as one version and split its partitions, each writing only its share. Stopping; stop "
        "the instances of one of them and give its logic a version of its own (bump `version:`)");
  }
  return Status::OK();
}

// Stage 1 of a repartitioned job: stage 2's watermark is the minimum over
// every input partition's, and one that has had no record has none, so
// stage 2's windows never close while it stays empty (no idle timeout yet).
// Status and metrics show stage 1's watermark moving while nothing is
// written (a bug bash): an input partition at its end without a record,
// while others have some, at two checks running is named once.
void JobRunner::Impl::CheckIdleUpstreams() {
  if (spec.stage != 0 || spec.stage_output_topic.empty()) return;
  CheckQuietUpstreams();
  if (idle_warned) return;
  std::vector<int32_t> idle;
  bool others_moved = false;
  for (const Task* t : Running()) {
    const bool none = t->watermark_ms() == kNoTime;
    if (!none) others_moved = true;
    if (none && t->next_offset() >= source->LogEnd(static_cast<size_t>(t->partition()))) idle.push_back(t->partition());
  }
  std::vector<int32_t> still;
  for (int32_t p : idle) {
    if (std::find(idle_seen.begin(), idle_seen.end(), p) != idle_seen.end()) still.push_back(p);
  }
  idle_seen = std::move(idle);
  if (!others_moved || still.empty()) return;
  idle_warned = true;
  std::string list;
  for (int32_t p : still) list += (list.empty() ? "" : ",") + std::to_string(p);
  Note(NoteLevel::kWarning,
       "input partition(s) " + list + " of " + spec.source_topic +
           " have had no record: the stage after the repartition waits for a watermark from every input partition, "
           "so its windows do not close and it writes nothing until they have records (there is no idle timeout "
           "yet); write to them, or use a topic without empty partitions");
}

// The same for a partition that had records and went quiet (a bug bash:
// one record in partition 1, then 100 minutes of event time in partition
// 0, and no window closed nor anything said): at its end with the same
// watermark at two checks running while another partition's advanced past
// it, named once with the watermark it holds stage 2 at.
void JobRunner::Impl::CheckQuietUpstreams() {
  if (quiet_warned) return;
  std::map<int32_t, std::pair<int64_t, bool>> now;
  for (const Task* t : Running()) {
    now[t->partition()] = {t->watermark_ms(),
                           t->next_offset() >= source->LogEnd(static_cast<size_t>(t->partition()))};
  }
  std::map<int32_t, std::pair<int64_t, bool>> before = std::move(quiet_seen);
  quiet_seen = now;
  bool others_advanced = false;
  int64_t held_at = kNoTime;
  std::string list;
  for (const auto& [p, mark] : now) {
    auto was = before.find(p);
    if (was == before.end()) continue;
    const auto [wm, at_end] = mark;
    if (wm != kNoTime && was->second.first != kNoTime && wm > was->second.first) others_advanced = true;
    if (wm == kNoTime || !at_end || !was->second.second || was->second.first != wm) continue;
    bool behind = false;  // another partition's watermark is ahead of this one's
    for (const auto& [q, other] : now) behind = behind || (q != p && other.first != kNoTime && other.first > wm);
    if (!behind) continue;
    list += (list.empty() ? "" : ",") + std::to_string(p);
    held_at = held_at == kNoTime ? wm : std::min(held_at, wm);
  }
  if (!others_advanced || list.empty()) return;
  quiet_warned = true;
  char when[32] = "?";
  const std::time_t secs = static_cast<std::time_t>(held_at / 1000);
  std::tm tm{};
  if (gmtime_r(&secs, &tm) != nullptr) std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  Note(NoteLevel::kWarning,
       "input partition(s) " + list + " of " + spec.source_topic +
           " have had no new record since the last look while others advance: the stage after the repartition "
           "waits for a watermark from every input partition, so its windows do not close past " + when +
           " until they have records again (there is no idle timeout yet); write to them, or use a topic "
           "without quiet partitions");
}

void JobRunner::Impl::PublishMetrics() {
  since_metrics.Reset();
  JobMetricsSample sample;
  sample.now_ms = WallClockMs();
  sample.progress = Snapshot();
  const CheckpointStats& c = coordinator->stats();
  sample.checkpoints = c.epochs;
  sample.checkpoint_max_ms = c.max_ms;
  sample.checkpoint_total_ms = c.total_ms;
  sample.sink_flush_total_ms = c.flush_total_ms;
  sample.writer_wait_total_ms = c.writer_wait_total_ms;
  sample.capture_max_ms = c.capture_max_ms;
  sample.last_checkpoint_ms = c.last_ms;
  sample.state_bytes = static_cast<int64_t>(backend->ApproximateBytes());
  sample.dlq_by_type = sink->DlqByType();
  sample.restore_records_remaining = gaps->remaining(tasks);
  for (const Task* t : Running()) {
    RecordCounters c = t->counters();
    if (options.second_stage) c.out = c.outputs = 0;  // the second stage's (WithSecondStage)
    sample.partition_counters.emplace_back(t->partition(), c);
  }
  if (options.second_stage) {
    // Its partitions (of the repartition topic) apart from the first
    // stage's, numbered below them; their input is the first stage's `out`.
    for (auto [p, c] : options.second_stage->Partitions()) {
      c.in = 0;
      sample.partition_counters.emplace_back(-1 - p, c);
    }
  }
  options.metrics->Publish(std::move(sample));
}

// The source is the repartition topic and its upstream stage has ended.
// Under exactly_once the stage 2 consumer reads committed records only, and
// the end a read_committed client is told is the last stable offset. Kafka
// answers a producer's commit before it has written the commit's markers
// into the partitions, so for a moment the last stable offset stops before
// the final transaction's records: ends read then made stage 2 stop early
// and emit windows without them (an uninterrupted run in CI). The ends are
// settled once the last stable offset has reached the log end on every
// partition: nothing is open any more.
Status JobRunner::Impl::ReadSettledEnds(const StopToken& stop) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto uncommitted = CreateReadUncommittedClient(config);  // one client for every look
  if (!uncommitted.ok()) return uncommitted.status();
  while (true) {
    auto stable = kafka->ReadWatermarks(tasks.size());
    if (!stable.ok()) return stable.status();
    auto open = FirstOpenPartition(uncommitted->get(), spec.source_topic, *stable, 10000);
    if (!open.ok()) return open.status();
    if (open->partition < 0) {
      upstream_ends_read = true;
      return Status::OK();
    }
    if (stop.stop_requested()) return Status::OK();  // not settled: the run ends on the stop, not at the end
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable(
          "the upstream stage has ended, but " + spec.source_topic + "[" + std::to_string(open->partition) +
          "] still has records of an open transaction 60 s later (last stable offset " +
          std::to_string(open->last_stable) + ", log end " + std::to_string(open->log_end) +
          "); another producer is writing to the repartition topic, or the broker cannot complete the "
          "transaction: check that no other process runs this version outside its group");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A bounded run stops at the ends it reads as it opens, and under
// read_committed (the consumer's default) the end of a partition holding a
// transaction still open is that transaction's first record: the run ended
// there saying only "end of input", the open transaction's records unread
// (a bug bash). It says so, partition by partition, as it opens. A look
// that fails says nothing: the run itself is unaffected.
void JobRunner::Impl::NoteOpenTransactions() {
  if (!options.stop_at_end || options.upstream_ended || !kafka) return;
  auto stable = kafka->ReadWatermarks(tasks.size());
  if (!stable.ok()) return;
  auto uncommitted = CreateReadUncommittedClient(config);
  if (!uncommitted.ok()) return;
  auto partitions = OpenPartitions(uncommitted->get(), spec.source_topic, *stable, 10000);
  if (!partitions.ok()) return;
  std::string open;
  for (const OpenPartition& o : *partitions) {
    open += std::string(open.empty() ? "" : ", ") + spec.source_topic + "[" + std::to_string(o.partition) +
            "] at offset " + std::to_string(o.last_stable) + " (log end " + std::to_string(o.log_end) + ")";
  }
  if (open.empty()) return;
  Note(NoteLevel::kWarning, "--stop-at-end stops at the last committed record: a transaction still open holds " +
                                open +
                                "; its records are not read by this run (a later run reads them once the producer "
                                "commits, none if it aborts)");
}

Status JobRunner::Impl::Loop(StopToken stop) {
  sink->SetStopToken(stop);  // a stopping job does not wait long for a broker that is gone
  if (pg) {
    pg->SetStopToken(stop);
    pg->SetWhileWaiting([this] { ReportWhileWaiting(); });
  }
  reporter->Start(0);
  if (options.metrics != nullptr) PublishMetrics();
  run_time.Reset();
  since_checkpoint.Reset();
  bool asked_to_stop = false;
  bool input_ended = false;
  UpdateRate();
  if (checkpoint_at_start) {
    checkpoint_at_start = false;
    KAPPA_RETURN_IF_ERROR(GroupCheckpoint());
    since_checkpoint.Reset();
  }
  while (!stop.stop_requested() && !asked_to_stop) {
    if (options.stop_at_end && options.upstream_ended && !upstream_ends_read &&
        options.upstream_ended->load(std::memory_order_acquire)) {
      // The upstream stage has ended and flushed: the ends, once settled,
      // are the ends for good.
      KAPPA_RETURN_IF_ERROR(ReadSettledEnds(stop));  // sets upstream_ends_read, unless stopped
    }
    if (options.stop_at_end && (!options.upstream_ended || upstream_ends_read) && AtEnd()) {
      input_ended = true;
      break;
    }
    if (sink->failed()) return sink->failure();
    UpdateRate();
    // Still ahead of the rate cap: an archive hands out whole blocks
    // (thousands of records) whatever the read's budget, and AfterRead
    // sleeps at most 0.5 s at a time, so a capped replay from the archive
    // read on at 5x its cap (a bug bash: 20,000 records at --max-rate 2000
    // in 2 s). Nothing is read until the cap has caught up.
    const double ahead = rate_cap > 0 && !paused ? RateAhead() : 0;
    if (group) KAPPA_RETURN_IF_ERROR(FollowPause());
    if (paused && group) {
      // A member reads on with its partitions' fetching paused: that serves
      // the group's rebalances. Not polled, it held on to a dead member's
      // partitions until the resume, and after max.poll.interval.ms (5
      // minutes) paused it left the group (a bug bash).
      int64_t records = 0;
      KAPPA_RETURN_IF_ERROR(source->Read(0, &records));
      processed += records;
      sink->Poll();
      KAPPA_RETURN_IF_ERROR(StandbyTurn());
      KAPPA_RETURN_IF_ERROR(AfterRead(&asked_to_stop));
      continue;
    }
    if (paused || ahead > 0) {
      // Reads nothing; checkpoints, status and the hook go on.
      const int64_t wait_ms = paused ? 50 : std::clamp<int64_t>(static_cast<int64_t>(ahead * 1000), 1, 50);
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      sink->Poll();
      KAPPA_RETURN_IF_ERROR(StandbyTurn());
      KAPPA_RETURN_IF_ERROR(AfterRead(&asked_to_stop));
      continue;
    }
    // The budget of one read: about 50 ms of records under a rate cap.
    const int64_t budget = rate_cap > 0 ? std::max<int64_t>(1, static_cast<int64_t>(rate_cap / 20)) : 0;
    int64_t records = 0;
    if (group && hybrid) {
      // The partitions still read from the archive: a round of them first.
      int64_t from_archive = 0;
      KAPPA_RETURN_IF_ERROR(archive->ReadServed(budget, &from_archive));
      processed += from_archive;
      KAPPA_RETURN_IF_ERROR(SwitchFromArchive());
    }
    KAPPA_RETURN_IF_ERROR(source->Read(budget, &records));  // no checkpoint past a failure
    if (records == 0 && source->exhausted()) {
      input_ended = true;
      break;
    }
    processed += records;
    sink->Poll();
    KAPPA_RETURN_IF_ERROR(StandbyTurn());
    KAPPA_RETURN_IF_ERROR(AfterRead(&asked_to_stop));
  }
  return Finish(input_ended);
}

// The final checkpoint of a clean stop (signal, end of log, asked to stop),
// durable before the run returns.
// The embedded broker keeps the last 5 MiB of each partition and drops the
// oldest records past it without a word: an output topic it made on first
// use (four partitions) lost 56% of a run's rows that the run reported
// written (a bug bash of the Nexmark queries). Said at the end of a run.
void JobRunner::Impl::WarnIfTheEmbeddedBrokerDroppedOutputs() {
  if (pg || !consumer || !spec.stage_output_topic.empty()) return;
  rd_kafka_s* rk = consumer->handle();
  if (!IsEmbeddedBroker(rk).value_or(false)) return;
  const std::string topic = spec.OutputTopic();
  auto marks = QueryTopicWatermarks(rk, topic, 5000);
  if (!marks.ok()) return;
  int64_t dropped = 0;
  int32_t first = -1;
  for (size_t p = 0; p < marks->size(); ++p) {
    if ((*marks)[p].low <= 0) continue;
    dropped += (*marks)[p].low;
    if (first < 0) first = static_cast<int32_t>(p);
  }
  if (dropped == 0) return;
  Note(NoteLevel::kWarning,
       "the embedded broker no longer holds the first " + std::to_string(dropped) + " records of " + topic +
           " (partition " + std::to_string(first) + " starts at " + std::to_string((*marks)[first].low) +
           "): it keeps the last 5 MiB of each partition; start it with more partitions for the topic (kappa "
           "broker --topic " + topic + ":" +
           std::to_string(std::max<size_t>(marks->size() * 4, 16)) +
           ") and run the version again with its state removed");
}

Status JobRunner::Impl::Finish(bool input_ended) {
  if (options.final_watermark && input_ended) {
    // Per task: a partition still re-reading what a sink transaction
    // committed after the last checkpoint (a crash, or --reset-state) has
    // its outputs suppressed, these included; "emitted" said otherwise (a
    // bug bash).
    int64_t emitted = 0, suppressed = 0;
    for (Task* t : Running()) {
      gaps->AtInputEnd(static_cast<size_t>(t->partition()), *t);
      const int64_t before = t->counters().outputs;
      t->EndOfInput();
      (sink->OutputsSuppressed(t->partition()) ? suppressed : emitted) += t->counters().outputs - before;
    }
    sink->MarkFinalWatermark();
    // A repartitioned job's stage 1 holds no window: its final watermark
    // goes on to stage 2, whose windows it closes as it arrives there, in
    // stage 2's reading, before its own end of input. Each said "emitted 0
    // open window(s)" while the flag had emitted every one (a bug bash).
    if (spec.stage == 0 && !spec.stage_output_topic.empty()) {
      Note(NoteLevel::kInfo, "end of input: the final watermark goes on to the stage after the repartition");
    } else if (spec.stage > 0) {
      Note(NoteLevel::kInfo, "end of input: the final watermark of every input partition closed each open window "
                             "as it arrived" +
                                 (emitted > 0 ? " (" + std::to_string(emitted) + " more at the end)" : std::string()));
    } else {
      Note(NoteLevel::kInfo, "end of input: the final watermark emitted " + std::to_string(emitted) +
                                 " open window(s)" +
                                 (suppressed > 0 ? " and closed " + std::to_string(suppressed) +
                                                       " more whose rows a committed transaction already holds "
                                                       "(outputs suppressed)"
                                                 : std::string()));
    }
  }
  if (Status fin = coordinator->Finish(); !fin.ok()) {
    // A stop that meets a rebalance (or a sequence gap): the last epoch is
    // aborted, the state stays at the last checkpoint; nothing is lost or
    // duplicated.
    const KafkaSink::AbortedCommit cause = group ? sink->LastCommitAborted() : KafkaSink::AbortedCommit::kNone;
    if (cause == KafkaSink::AbortedCommit::kNone) return fin;
    Note(NoteLevel::kWarning, std::string(cause == KafkaSink::AbortedCommit::kRebalance
                                              ? "the final checkpoint met a rebalance ("
                                              : "the final checkpoint met a sequence gap (") +
                                  fin.message() +
                                  "): its transaction is aborted; the partitions resume from the last checkpoint");
  }
  WarnIfTheEmbeddedBrokerDroppedOutputs();
  const CheckpointStats& c = coordinator->stats();
  summary->input_ended = input_ended;
  summary->epochs = c.epochs;
  summary->checkpoint_max_ms = c.max_ms;
  summary->checkpoint_total_ms = c.total_ms;
  summary->flush_total_ms = c.flush_total_ms;
  summary->writer_wait_total_ms = c.writer_wait_total_ms;
  summary->writer_wait_max_ms = c.writer_wait_max_ms;
  summary->capture_max_ms = c.capture_max_ms;
  summary->final_durable_ms = c.final_durable_ms;
  summary->seconds = run_time.Seconds();
  if (options.publish_counters) PublishStageCounters();
  ProgressSnapshot final_snapshot = Snapshot();
  final_snapshot.records_per_second = summary->seconds > 0 ? static_cast<double>(processed) / summary->seconds : 0;
  if (options.on_checkpoint) options.on_checkpoint(final_snapshot);
  reporter->ReportFinal(final_snapshot, processed);
  if (options.metrics != nullptr) PublishMetrics();
  return Status::OK();
}

Status JobRunner::ReportWithFinalSecondStage() {
  Impl& d = *impl_;
  if (d.tasks.empty() || !d.coordinator || !d.options.second_stage) return Status::OK();
  if (d.options.on_checkpoint) {
    ProgressSnapshot snapshot = d.Snapshot();
    snapshot.records_per_second =
        summary_.seconds > 0 ? static_cast<double>(d.processed) / summary_.seconds : 0;
    d.options.on_checkpoint(snapshot);
  }
  if (d.options.metrics != nullptr) d.PublishMetrics();
  const std::optional<RecordCounters> second = d.SecondStage();
  return WriteMetricsFile(d.options.metrics_file, d.spec, d.Running(), d.coordinator->epoch(),
                          summary_.history_gap_records, d.SinkRejectedNow(), second ? &*second : nullptr);
}

Status JobRunner::Run(StopToken stop) {
  Impl& d = *impl_;
  if (d.spec.stage == 0 && d.spec.stage_output_topic.empty() && IsRepartitioned(d.spec)) {
    return RunRepartitioned(d.spec, d.config, d.options, stop, &summary_);
  }
  d.run_stop = stop;
  Status st = d.Open();
  if (st.ok()) st = d.RegisterRowSchema();
  if (st.ok()) st = d.MakeTasks();
  if (d.stopped_restoring) {
    summary_.stopped_restoring = true;
    st = Status::OK();
  } else if (st.ok()) {
    d.Note(NoteLevel::kInfo, d.spec.job + " v" + std::to_string(d.spec.version) + " (spec " + d.spec.spec_hash +
                                 ") from " + d.source->Describe() + " to " + d.spec.OutputName() + ", state " +
                                 AbsoluteStateDir(d.spec.state_dir) + ", epoch " + std::to_string(d.coordinator->epoch()));
    st = d.Loop(stop);
  }
  // Stopped while restoring, nothing was processed and the tasks hold part
  // of the state: no summary or metrics file is made from them.
  if (!d.tasks.empty() && !d.stopped_restoring) {
    summary_.counters = TotalCounters(d.Running());
    summary_.history_gap_records = d.gap_rule ? d.gap_rule->gap_records() : 0;
    summary_.archive_records = d.archive ? d.archive->archive_records() : 0;
    summary_.records_this_run = d.processed;
    summary_.sink_rejected = d.pg ? d.pg->rows_rejected() : 0;
    // After a failure the in-memory counters are ahead of the last checkpoint;
    // the metrics file keeps describing what is durably committed.
    if (st.ok() && d.coordinator) {
      // Finish made the final checkpoint durable.
      const std::optional<RecordCounters> second = d.SecondStage();
      st = WriteMetricsFile(d.options.metrics_file, d.spec, d.Running(), d.coordinator->epoch(),
                            summary_.history_gap_records, d.SinkRejectedNow(), second ? &*second : nullptr);
    } else if (d.backend) {
      // The begun checkpoints that did become durable before the failure.
      (void)d.backend->WaitForCommits();
      (void)d.WriteDurableMetrics();
    }
  }
  if (!st.ok() && stop.stop_requested() && IsStoppedWaitingForRegistry(st)) {
    // The stop the operator asked for, without a final checkpoint (the
    // durable metrics above describe the last one).
    summary_.stopped_waiting = st.message();
    st = Status::OK();
  }
  if (!st.ok() && d.options.on_error) d.options.on_error(st);
  // The sources hold the consumer by reference: they go first. A group
  // member's close hands its partitions back; the final checkpoint is taken.
  d.closing = true;
  if (d.source != nullptr && d.coordinator && !d.tasks.empty()) {
    d.closed_source_snapshot = SnapshotOf(d.Running(), *d.source, d.coordinator->epoch());
  }
  d.source = nullptr;
  d.hybrid.reset();
  d.kafka.reset();
  d.archive.reset();
  d.consumer.reset();
  d.pg.reset();
  return st;
}

}  // namespace kappa
