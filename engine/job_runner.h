// JobRunner: runs one version of a job over its source topic, live or
// replaying: the same code path either way. With an archive (source.archive
// or RunOptions::archive_dir) each partition is first read from the log
// archive up to its archived end, by `parallelism` worker threads, then from
// Kafka at exactly that offset; checkpoints store the offset whatever served
// it, so a run stops and resumes anywhere across the switch. It restores every task from
// RocksDB (the only source of truth for input offsets), consumes batches,
// runs each partition's task, and every checkpoint interval flushes the sink
// (all acks) and then commits dirty state + offsets + watermarks + epoch +
// spec hash in one synced RocksDB write (at-least-once). Run() blocks on the
// calling thread until the stop flag is set, the end of the log is reached
// (stop_at_end), or a fatal error; it checkpoints before returning OK.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/record_counters.h"
#include "base/status.h"
#include "base/stop_token.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"

namespace kappa {

// What a running version reports at every checkpoint (and at exit), for
// progress displays and the deployment registry.
struct PartitionProgress {
  int32_t partition = 0;
  int64_t position = 0;  // next offset to process (checkpointed)
  int64_t log_end = 0;   // latest known log end offset
  int64_t watermark_ms = 0;
};
struct ProgressSnapshot {
  int64_t epoch = 0;
  int64_t checkpoint_ms = 0;  // wall clock of the checkpoint
  double records_per_second = 0;
  RecordCounters counters;
  std::vector<PartitionProgress> partitions;
  int64_t total_lag() const {
    int64_t lag = 0;
    for (const auto& p : partitions) lag += p.log_end > p.position ? p.log_end - p.position : 0;
    return lag;
  }
  int64_t max_lag() const {
    int64_t lag = 0;
    for (const auto& p : partitions) lag = std::max(lag, p.log_end - p.position);
    return lag;
  }
};
// Called on the job's thread after each checkpoint; returning false stops the
// job cleanly (final checkpoint, exit 0), e.g. when its version is retired.
using CheckpointHook = std::function<bool(const ProgressSnapshot&)>;

struct RunOptions {
  bool stop_at_end = false;     // stop once every partition reaches its end offset as of start
  double max_rate = 0;          // records/s cap (0: none), so a replay never starves the live job
  int status_interval_ms = 5000;
  std::string metrics_file;     // default <state_dir>/metrics.json
  bool progress_on_terminal = false;
  CheckpointHook on_checkpoint;
  // Override the spec's source.archive and parallelism (empty / 0: the spec's).
  std::string archive_dir;
  int parallelism = 0;
  // Read only the archive, up to its end, then stop (a batch backfill; no
  // Kafka source needed). Requires an archive.
  bool archive_only = false;
};

struct RunSummary {
  RecordCounters counters;
  int64_t epochs = 0;
  int64_t history_gap_records = 0;  // records skipped below log start (allow_truncated_history)
  int64_t archive_records = 0;      // records served by the archive (the rest came from Kafka)
  // Checkpoints: how long processing stood still for them (sink flush +
  // state commit), the longest and in total.
  double checkpoint_max_ms = 0;
  double checkpoint_total_ms = 0;
  double flush_total_ms = 0;       // of which: waiting for the sink's acks
  double final_durable_ms = 0;     // waiting at the end for the last checkpoint to be durable
  double seconds = 0;
};

class JobRunner {
 public:
  JobRunner(JobSpec spec, KafkaConfig config, RunOptions options);
  ~JobRunner();
  Status Run(StopToken stop);
  const RunSummary& summary() const { return summary_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RunSummary summary_;
};

}  // namespace kappa
