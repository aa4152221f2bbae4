// JobMetrics: what a running job shows a scraper (issue 15). The job's
// thread publishes a JobMetricsSample about once a second (and at the end);
// whichever thread serves /metrics renders the latest one as Prometheus
// text exposition (format 0.0.4): counters end in _total, times are
// seconds, sizes bytes, every series carries job and version labels and the
// per-partition ones a partition label. Publish also evaluates the spec's
// alerts (kappa_alert{name=...} 1 while crossed) and reports each change
// through the note callback (a warning when one fires, an info when it
// clears). Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/progress.h"
#include "engine/job_spec.h"

namespace kappa {

struct JobMetricsSample {
  int64_t now_ms = 0;  // wall clock
  ProgressSnapshot progress;  // positions, log ends, watermarks, counters (those of the tasks now)
  int64_t checkpoints = 0;    // taken by this run
  double last_checkpoint_ms = 0;
  double checkpoint_max_ms = 0;
  double checkpoint_total_ms = 0;
  double sink_flush_total_ms = 0;  // of which the sink barrier (acks, or the transaction)
  double writer_wait_total_ms = 0; // of which waiting for room behind the state's writer
  double capture_max_ms = 0;       // the longest copy of the dirty state
  int64_t state_bytes = 0;
  // DLQ records written by this process, per error type (Undecodable, ...).
  std::vector<std::pair<std::string, int64_t>> dlq_by_type;
  // Records still to re-read with outputs suppressed (restoring state after
  // a crash between a sink commit and a checkpoint).
  int64_t restore_records_remaining = 0;
  // Each held partition's counters (restored with its state). With them,
  // Publish turns progress.counters into this process's own, which only
  // grow: a scaled-out process's sum over the partitions it holds dropped
  // at a rebalance and jumped by a taken-over partition's history (and
  // fired the DLQ alert); only what a held partition adds between two
  // samples counts. Empty: progress.counters as given.
  std::vector<std::pair<int32_t, RecordCounters>> partition_counters;
};

class JobMetrics {
 public:
  JobMetrics(const JobSpec& spec, NoteCallback on_note);
  // For what is not a job version (the archiver): labels and alerts given.
  JobMetrics(std::string job, std::string version, std::string spec_hash, std::string output, AlertSpec alerts,
             NoteCallback on_note);

  // Rates over the time since the previous sample; alert evaluation.
  void Publish(JobMetricsSample sample);
  // The Prometheus text of the latest sample ("" before the first).
  std::string Render() const;
  // name -> firing, in the spec's order (only the alerts the spec sets).
  std::vector<std::pair<std::string, bool>> Alerts() const;

  // What the status page shows (cli/status_page.h): the latest sample, its
  // rates and alerts, and one point per published sample over the last
  // kHistoryMs, oldest first, so charts start full when a page opens.
  static constexpr int64_t kHistoryMs = 5 * 60 * 1000;
  struct HistoryPoint {
    int64_t ms;
    double in_per_s;
    int64_t lag;
  };
  struct View {
    bool has_sample = false;
    std::string job, version;
    JobMetricsSample latest;
    double in_per_s = 0, outputs_per_s = 0;
    std::vector<std::pair<std::string, bool>> firing;
    std::vector<std::pair<std::string, double>> alert_values;
    std::vector<HistoryPoint> history;
  };
  View Snapshot() const;

 private:
  struct Window {  // one sample's counters, for rates over the alert window
    int64_t ms, in, dlq, late;
  };
  void Evaluate(const JobMetricsSample& sample);
  // sample.progress.counters (and sink_rejected) made this process's
  // monotonic ones from sample.partition_counters (above).
  void MakeMonotonic(JobMetricsSample& sample);
  // Scaled out: the counters count what this instance did since it began
  // (summed over instances: the version's), not the restored ones.
  bool per_instance_ = false;
  bool monotonic_started_ = false;
  RecordCounters monotonic_;
  int64_t monotonic_rejected_ = 0;
  int64_t last_rejected_ = 0;
  std::vector<std::pair<int32_t, RecordCounters>> last_partitions_;
  void Note(NoteLevel level, const std::string& text) const {
    if (on_note_) on_note_(level, text);
  }

  std::string job_, version_, spec_hash_, output_;
  AlertSpec alerts_;
  NoteCallback on_note_;
  mutable std::mutex mu_;
  bool has_sample_ = false;
  JobMetricsSample latest_;
  double in_per_s_ = 0, outputs_per_s_ = 0;
  std::deque<Window> window_;  // the last hour of samples
  std::deque<HistoryPoint> history_;  // the last kHistoryMs of samples
  std::vector<std::pair<std::string, bool>> firing_;
  std::vector<std::pair<std::string, double>> alert_values_;
};

}  // namespace kappa
