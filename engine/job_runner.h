// JobRunner: runs one version of a job over its source topic, live or
// replaying: the same code path either way. With an archive (source.archive
// or RunOptions::archive_dir) each partition is first read from the log
// archive up to its archived end, then from Kafka at exactly that offset,
// both phases on `parallelism` worker threads (a partition's task on one
// thread at a time); checkpoints store the offset whatever served
// it, so a run stops and resumes anywhere across the switch. It restores every task from
// RocksDB (the only source of truth for input offsets), consumes batches,
// runs each partition's task, and every checkpoint interval flushes the sink
// (all acks) and then commits dirty state + offsets + watermarks + epoch +
// spec hash in one synced RocksDB write (at-least-once). Run() blocks on the
// calling thread until the stop flag is set, the end of the log is reached
// (stop_at_end), or a fatal error; it checkpoints before returning OK.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/record_counters.h"
#include "base/status.h"
#include "base/stop_token.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"

namespace kappa {

class JobMetrics;

// Called on the job's thread after each checkpoint; returning false stops the
// job cleanly (final checkpoint, exit 0), e.g. when its version is retired.
using CheckpointHook = std::function<bool(const ProgressSnapshot&)>;

// A rate cap another thread changes while the job runs (`kappa throttle`,
// --protect-live-lag): the job reads it before every read. paused: the job
// reads nothing but keeps its loop (checkpoints, status, metrics, signals,
// the checkpoint hook) alive.
struct RateControl {
  explicit RateControl(double rate = 0) : max_rate(rate) {}
  std::atomic<double> max_rate{0};  // records/s (0: none)
  std::atomic<bool> paused{false};
  // max_rate is the version's (`kappa throttle`), not this process's
  // (`--max-rate`): a scaled-out process takes the share of it that its
  // partitions are of the source's.
  std::atomic<bool> version_wide{false};
};

// What the second stage of a repartitioned job counted so far, per
// repartition partition it runs. Any thread.
struct StageCounters {
  void Set(std::vector<std::pair<int32_t, RecordCounters>> partitions, int64_t sink_rejected) {
    std::lock_guard<std::mutex> lock(mu);
    partitions_ = std::move(partitions);
    sink_rejected_ = sink_rejected;
  }
  std::vector<std::pair<int32_t, RecordCounters>> Partitions() const {
    std::lock_guard<std::mutex> lock(mu);
    return partitions_;
  }
  RecordCounters Total() const {
    std::lock_guard<std::mutex> lock(mu);
    RecordCounters c;
    for (const auto& [p, pc] : partitions_) c.Add(pc);
    return c;
  }
  int64_t SinkRejected() const {
    std::lock_guard<std::mutex> lock(mu);
    return sink_rejected_;
  }

 private:
  mutable std::mutex mu;
  std::vector<std::pair<int32_t, RecordCounters>> partitions_;
  int64_t sink_rejected_ = 0;
};

struct RunOptions {
  bool stop_at_end = false;     // stop once every partition reaches its end offset as of start
  double max_rate = 0;          // records/s cap (0: none), so a replay never starves the live job;
                                // a stall (broker away) earns at most 1 s of burst, not a catch-up
  // When set, the cap (and pause) are read from here instead of max_rate,
  // at every read; a change starts the rate accounting afresh.
  std::shared_ptr<RateControl> rate_control;
  int status_interval_ms = 5000;
  std::string metrics_file;     // default <state_dir>/metrics.json
  // Where /metrics gets its numbers (engine/job_metrics.h): published about
  // once a second and at the end (null: nowhere).
  JobMetrics* metrics = nullptr;
  CheckpointHook on_checkpoint;
  // Where progress goes: a status every status_interval_ms (and a final one),
  // and one-line notes (start, archive-to-Kafka switches, warnings). The
  // runner never prints; null callbacks drop them.
  ProgressReporter::StatusCallback on_status;
  NoteCallback on_note;
  // Called with the error that ends the run, before the run tears down its
  // Kafka clients, which can block (a librdkafka teardown that never
  // finishes, see CloseConsumer): why the run stopped is said first. Run
  // returns the same error afterwards. Null: only returned.
  std::function<void(const Status&)> on_error;
  // Override the spec's source.archive and parallelism (empty / 0: the spec's).
  std::string archive_dir;
  int parallelism = 0;
  // Read only the archive, up to its end, then stop (a batch backfill; no
  // Kafka source needed). Requires an archive.
  bool archive_only = false;
  // The caller has just asked Kafka for the source topic
  // (SourcePartitionCount): the run does not ask again.
  bool source_checked = false;
  // At the end of a bounded run (stop_at_end reached, or the archive of an
  // archive_only run exhausted; not on a stop request): advance every task's
  // event time to its end so every open window is emitted before the final
  // checkpoint (Task::EndOfInput). A live run never does this: windows still
  // open may get records tomorrow.
  bool final_watermark = false;
  // Start over: delete the files kappa created in the state directory
  // (StateBackend::Reset) before opening it. Without it a damaged state
  // directory is an error, never a silent restart from epoch 0.
  bool reset_state = false;
  // Free space each checkpoint needs in the state directory: at least this
  // many MiB, and twice the last checkpoint (0: no minimum).
  int64_t state_headroom_mib = 64;
  // A downstream stage of a repartitioned job (engine/stage_plan.h): set
  // once the upstream stage has ended. With stop_at_end the run then reads
  // its topic to the end as of that moment and stops; before, it never
  // counts itself at the end.
  std::shared_ptr<std::atomic<bool>> upstream_ended;
  // The two stages of a repartitioned job: the second publishes its
  // counters into `publish_counters` (about once a second, and at its end);
  // the first adds those in `second_stage` to what it reports (status line,
  // /metrics and alerts, registry progress, metrics.json), so late and
  // dead-lettered records found after the repartition, and its outputs,
  // show while the job runs (they showed only in the exit summary).
  std::shared_ptr<StageCounters> publish_counters;
  std::shared_ptr<StageCounters> second_stage;
};

struct RunSummary {
  RecordCounters counters;
  // A scaled-out repartitioned job: this process's second stage, on its own
  // (it aggregates the repartition partitions it holds, fed by every
  // process's first stage, so its counts do not continue this process's
  // `counters`, whose `out` are then the records it repartitioned). Unset
  // otherwise: one process's two stages add up into `counters`.
  std::optional<RecordCounters> stage2;
  int64_t epochs = 0;
  int64_t history_gap_records = 0;  // records skipped below log start (allow_truncated_history)
  int64_t archive_records = 0;      // records this run read from the archive
  int64_t records_this_run = 0;     // records this run read (counters.in also holds those of earlier runs)
  // Output rows the sink's database refused this run (sink.postgres): in
  // counters.outputs, and in the DLQ as SinkRejected, not in the table.
  int64_t sink_rejected = 0;
  // Set by RunDeployment (replay/): the control topic did not take the
  // record that this version stopped, so `kappa status` still shows it
  // running.
  bool stop_unrecorded = false;
  // Checkpoints: how long processing stood still for them (sink flush +
  // state commit), the longest and in total.
  double checkpoint_max_ms = 0;
  double checkpoint_total_ms = 0;
  double flush_total_ms = 0;       // of which: waiting for the sink's acks
  double writer_wait_total_ms = 0; // of which: waiting for room behind the state writer
  double writer_wait_max_ms = 0;
  double capture_max_ms = 0;       // the longest copy of the dirty state
  double final_durable_ms = 0;     // waiting at the end for the last checkpoint to be durable
  double seconds = 0;
  // The run stopped because its input ended (stop_at_end reached, or an
  // archive-only run exhausted), not because it was asked to.
  bool input_ended = false;
  // Asked to stop while it restored its state from RocksDB, before it
  // processed anything: nothing changed, the checkpoint is as it was (the
  // other fields describe nothing).
  bool stopped_restoring = false;
  // Asked to stop while the records waited for a schema registry that did
  // not answer (IsStoppedWaitingForRegistry): what it waited for. No final
  // checkpoint was taken (those records were not processed): the last one
  // is intact, and the next start reads on from it.
  std::string stopped_waiting;
};

// The source topic's partition count, asked of the Kafka in `config`; a
// refusal (the topic missing, Kafka away) names the topic. A run asks it
// before it makes anything (state directory, sink topics), and so do its
// callers before they register or plan (RunOptions::source_checked).
Result<int32_t> SourcePartitionCount(const KafkaConfig& config, const std::string& topic);

class JobRunner {
 public:
  JobRunner(JobSpec spec, KafkaConfig config, RunOptions options);
  ~JobRunner();
  Status Run(StopToken stop);
  const RunSummary& summary() const { return summary_; }
  // The first stage of a repartitioned job, once both stages have ended
  // cleanly: it ended first, with what the second had counted by then; its
  // last progress (on_checkpoint), /metrics sample and metrics file are
  // given again with the second stage's final counters.
  Status ReportWithFinalSecondStage();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RunSummary summary_;
};

}  // namespace kappa
