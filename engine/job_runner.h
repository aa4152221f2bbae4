// JobRunner: runs one version of a job over its source topic, live or
// replaying: the same code path either way. It restores every task from
// RocksDB (the only source of truth for input offsets), consumes batches,
// runs each partition's task, and every checkpoint interval flushes the sink
// (all acks) and then commits dirty state + offsets + watermarks + epoch +
// spec hash in one synced RocksDB write (at-least-once). Run() blocks on the
// calling thread until the stop flag is set, the end of the log is reached
// (stop_at_end), or a fatal error; it checkpoints before returning OK.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/base/record_counters.h"
#include "engine/base/status.h"
#include "engine/job_spec.h"
#include "engine/kafka_config.h"

namespace kappa {

struct RunOptions {
  bool stop_at_end = false;     // stop once every partition reaches its end offset as of start
  double max_rate = 0;          // records/s cap (0: none), so a replay never starves the live job
  int status_interval_ms = 5000;
  std::string metrics_file;     // default <state_dir>/metrics.json
  bool progress_on_terminal = false;
};

struct RunSummary {
  RecordCounters counters;
  int64_t epochs = 0;
  int64_t history_gap_records = 0;  // records skipped below log start (allow_truncated_history)
  double seconds = 0;
};

class JobRunner {
 public:
  JobRunner(JobSpec spec, KafkaConfig config, RunOptions options);
  ~JobRunner();
  Status Run(volatile int* stop_flag);
  const RunSummary& summary() const { return summary_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RunSummary summary_;
};

}  // namespace kappa
