#include "engine/job_metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kappa {
namespace {

constexpr int64_t kAlertWindowMs = 3600 * 1000;
// Rates over less than this are noise: no DLQ/late alert before it.
constexpr int64_t kAlertMinWindowMs = 5000;

std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

std::string Number(int64_t v) { return std::to_string(v); }

// An alert's value for its line: 3 decimals (63692.3 per hour, 0.012 late),
// but as many significant digits as it takes for the line to be true.
// "0 > 1e-04" was printed for a late fraction of 0.000168 (a bug bash).
double ShownAlertValue(double value, double threshold, bool firing) {
  double shown = std::round(value * 1000) / 1000;
  for (int digits = 3; digits <= 17 && (shown > threshold) != firing; ++digits) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.*g", digits, value);
    shown = std::strtod(buf, nullptr);
  }
  return (shown > threshold) == firing ? shown : value;
}

// Builds the exposition: each family's HELP and TYPE once, then its samples.
class Exposition {
 public:
  explicit Exposition(std::string base_labels) : base_(std::move(base_labels)) {}
  void Family(const char* name, const char* type, const char* help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  template <typename V>
  void Sample(const char* name, V value, const std::string& extra_labels = "") {
    out_.append(name).append("{").append(base_);
    if (!extra_labels.empty()) out_.append(",").append(extra_labels);
    out_.append("} ").append(Number(value)).append("\n");
  }
  template <typename V>
  void One(const char* name, const char* type, const char* help, V value) {
    Family(name, type, help);
    Sample(name, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string base_;
  std::string out_;
};

// "partition=\"3\"", with the topic first when the snapshot names one (the
// archiver follows several: without it their series were duplicates).
std::string PartitionLabel(const PartitionProgress& p) {
  std::string label = "partition=\"" + std::to_string(p.partition) + "\"";
  return p.topic.empty() ? label : "topic=\"" + LabelValue(p.topic) + "\"," + label;
}

}  // namespace

JobMetrics::JobMetrics(const JobSpec& spec, NoteCallback on_note)
    : JobMetrics(spec.job, std::to_string(spec.version), spec.spec_hash, spec.OutputName(), spec.alerts,
                 std::move(on_note)) {
  per_instance_ = spec.scale_out.enabled;
}

JobMetrics::JobMetrics(std::string job, std::string version, std::string spec_hash, std::string output,
                       AlertSpec alerts, NoteCallback on_note)
    : job_(std::move(job)),
      version_(std::move(version)),
      spec_hash_(std::move(spec_hash)),
      output_(std::move(output)),
      alerts_(alerts),
      on_note_(std::move(on_note)) {
  if (alerts_.dlq_per_hour >= 0) firing_.emplace_back("dlq_per_hour", false);
  if (alerts_.late_fraction >= 0) firing_.emplace_back("late_fraction", false);
  if (alerts_.lag_records >= 0) firing_.emplace_back("lag_records", false);
  for (const auto& [name, on] : firing_) alert_values_.emplace_back(name, 0.0);
}

void JobMetrics::MakeMonotonic(JobMetricsSample& sample) {
  if (sample.partition_counters.empty() && !monotonic_started_) return;
  std::sort(sample.partition_counters.begin(), sample.partition_counters.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  if (!monotonic_started_) {
    // The first sample: the counters as restored (a restart resumes them).
    // Scaled out, from 0: the restored counters of the partitions an
    // instance holds at its start are in another instance's series too
    // (a bug bash: two instances summed to 101,032 for 80,000 records).
    monotonic_started_ = true;
    monotonic_ = per_instance_ ? RecordCounters{} : sample.progress.counters;
    monotonic_rejected_ = per_instance_ ? 0 : sample.progress.sink_rejected;
  } else {
    bool same_partitions = sample.partition_counters.size() == last_partitions_.size();
    for (const auto& [p, c] : sample.partition_counters) {
      auto it = std::lower_bound(last_partitions_.begin(), last_partitions_.end(), p,
                                 [](const auto& e, int32_t key) { return e.first < key; });
      if (it == last_partitions_.end() || it->first != p) {
        same_partitions = false;  // taken over: its history is another process's
        continue;
      }
      const RecordCounters& b = it->second;
      auto grow = [](int64_t now, int64_t before) { return std::max<int64_t>(0, now - before); };
      monotonic_.in += grow(c.in, b.in);
      monotonic_.out += grow(c.out, b.out);
      monotonic_.deduped += grow(c.deduped, b.deduped);
      monotonic_.filtered += grow(c.filtered, b.filtered);
      monotonic_.late += grow(c.late, b.late);
      monotonic_.dlq += grow(c.dlq, b.dlq);
      monotonic_.outputs += grow(c.outputs, b.outputs);
    }
    // Refused rows are summed over the held partitions only: their growth
    // counts while the partitions stay the same.
    if (same_partitions) monotonic_rejected_ += std::max<int64_t>(0, sample.progress.sink_rejected - last_rejected_);
  }
  last_partitions_ = sample.partition_counters;
  last_rejected_ = sample.progress.sink_rejected;
  sample.progress.counters = monotonic_;
  sample.progress.sink_rejected = monotonic_rejected_;
}

void JobMetrics::Publish(JobMetricsSample sample) {
  std::lock_guard<std::mutex> lock(mu_);
  MakeMonotonic(sample);
  if (has_sample_ && sample.now_ms > latest_.now_ms) {
    const double dt = static_cast<double>(sample.now_ms - latest_.now_ms) / 1000.0;
    in_per_s_ = static_cast<double>(sample.progress.counters.in - latest_.progress.counters.in) / dt;
    outputs_per_s_ = static_cast<double>(sample.progress.counters.outputs - latest_.progress.counters.outputs) / dt;
  }
  const RecordCounters& c = sample.progress.counters;
  // The DLQ alert counts every record the DLQ topic gains: refused output
  // rows as well as input records.
  window_.push_back({sample.now_ms, c.in, c.dlq + sample.progress.sink_rejected, c.late});
  while (window_.size() > 2 && window_.front().ms < sample.now_ms - kAlertWindowMs) window_.pop_front();
  history_.push_back({sample.now_ms, in_per_s_, sample.progress.total_lag()});
  while (history_.size() > 2 && history_.front().ms < sample.now_ms - kHistoryMs) history_.pop_front();
  Evaluate(sample);
  latest_ = std::move(sample);
  has_sample_ = true;
}

void JobMetrics::Evaluate(const JobMetricsSample& sample) {
  const Window& first = window_.front();
  const Window& last = window_.back();
  const int64_t span_ms = last.ms - first.ms;
  for (size_t i = 0; i < firing_.size(); ++i) {
    const std::string& name = firing_[i].first;
    double value = 0, threshold = 0;
    bool known = true;
    if (name == "dlq_per_hour") {
      threshold = alerts_.dlq_per_hour;
      known = span_ms >= kAlertMinWindowMs;
      if (known) value = static_cast<double>(last.dlq - first.dlq) * 3600000.0 / static_cast<double>(span_ms);
    } else if (name == "late_fraction") {
      threshold = alerts_.late_fraction;
      known = span_ms >= kAlertMinWindowMs && last.in > first.in;
      if (known) value = static_cast<double>(last.late - first.late) / static_cast<double>(last.in - first.in);
    } else {
      threshold = static_cast<double>(alerts_.lag_records);
      value = static_cast<double>(sample.progress.total_lag());
    }
    if (known) alert_values_[i].second = value;
    const bool fire = known && value > threshold;
    if (fire == firing_[i].second || !known) continue;
    firing_[i].second = fire;
    const double shown = ShownAlertValue(value, threshold, fire);
    const std::string text = "alert " + name + " " + (fire ? "firing" : "cleared") + ": " + Number(shown) +
                             (fire ? " > " : " <= ") + Number(threshold) + " (" + job_ + " v" + version_ + ")";
    Note(fire ? NoteLevel::kWarning : NoteLevel::kInfo, text);
  }
}

std::vector<std::pair<std::string, bool>> JobMetrics::Alerts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return firing_;
}

JobMetrics::View JobMetrics::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  View v;
  v.has_sample = has_sample_;
  v.job = job_;
  v.version = version_;
  v.latest = latest_;
  v.in_per_s = in_per_s_;
  v.outputs_per_s = outputs_per_s_;
  v.firing = firing_;
  v.alert_values = alert_values_;
  v.history.assign(history_.begin(), history_.end());
  return v;
}

std::string JobMetrics::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  Exposition e("job=\"" + LabelValue(job_) + "\",version=\"" + version_ + "\"");
  e.Family("kappa_info", "gauge", "The job version this process runs (always 1).");
  e.Sample("kappa_info", int64_t{1},
           "spec_hash=\"" + LabelValue(spec_hash_) + "\",output=\"" + LabelValue(output_) + "\"");
  // Before the first sample (while the job opens and restores its state,
  // 12 s and more for a large one) an empty 200 was a scrape with no series
  // at all: absent() alerts fired and every series went stale (a bug bash).
  e.One("kappa_starting", "gauge",
        "1 until the job's first sample (while it opens and restores its state); the other series appear then.",
        int64_t{has_sample_ ? 0 : 1});
  if (!has_sample_) return e.Take();
  const JobMetricsSample& s = latest_;
  const RecordCounters& c = s.progress.counters;
  e.One("kappa_records_in_total", "counter",
        per_instance_ ? "Input records this instance read since it started (scaled out: sum them over the instances)."
                      : "Input records read (restored with the checkpoint on a restart).",
        c.in);
  e.One("kappa_records_out_total", "counter", "Input records that reached the end of the chain.", c.out);
  e.One("kappa_records_deduped_total", "counter", "Input records dropped as repeats.", c.deduped);
  e.One("kappa_records_filtered_total", "counter", "Input records dropped by a filter.", c.filtered);
  e.One("kappa_records_late_total", "counter", "Input records sent to the late topic.", c.late);
  e.One("kappa_records_dlq_total", "counter", "Input records sent to the DLQ topic.", c.dlq);
  e.One("kappa_outputs_total", "counter", "Rows written to the sink.", c.outputs);
  e.One("kappa_sink_rejected_total", "counter",
        "Output rows the sink refused (PostgreSQL), sent to the DLQ topic as SinkRejected.",
        s.progress.sink_rejected);
  e.Family("kappa_dlq_written_total", "counter", "DLQ records written by this process, by error type.");
  for (const auto& [type, n] : s.dlq_by_type) e.Sample("kappa_dlq_written_total", n, "error_type=\"" + type + "\"");
  e.One("kappa_input_records_per_second", "gauge", "Input records read per second, over the last second or so.",
        in_per_s_);
  e.One("kappa_outputs_per_second", "gauge", "Rows written per second, over the last second or so.",
        outputs_per_s_);
  e.Family("kappa_partition_position", "gauge", "Next input offset to process, per partition.");
  for (const auto& p : s.progress.partitions) e.Sample("kappa_partition_position", p.position, PartitionLabel(p));
  e.Family("kappa_partition_log_end_offset", "gauge", "The input partition's log end offset as last seen.");
  for (const auto& p : s.progress.partitions) {
    e.Sample("kappa_partition_log_end_offset", p.log_end, PartitionLabel(p));
  }
  e.Family("kappa_partition_lag_records", "gauge", "Records between the position and the log end, per partition.");
  for (const auto& p : s.progress.partitions) e.Sample("kappa_partition_lag_records", p.lag(), PartitionLabel(p));
  e.One("kappa_lag_records", "gauge", "Records between the positions and the log ends, all partitions.",
        s.progress.total_lag());
  e.Family("kappa_partition_watermark_seconds", "gauge", "Event-time watermark per partition (Unix seconds).");
  for (const auto& p : s.progress.partitions) {
    if (p.watermark_ms != 0) {
      e.Sample("kappa_partition_watermark_seconds", static_cast<double>(p.watermark_ms) / 1000.0,
               PartitionLabel(p));
    }
  }
  const int64_t watermark = s.progress.min_watermark_ms();
  if (watermark != 0) {
    e.One("kappa_watermark_seconds", "gauge", "The smallest partition watermark (Unix seconds).",
          static_cast<double>(watermark) / 1000.0);
    e.One("kappa_watermark_delay_seconds", "gauge", "Wall clock minus the smallest watermark.",
          static_cast<double>(s.now_ms - watermark) / 1000.0);
  }
  e.One("kappa_checkpoints_total", "counter", "Checkpoints taken by this process.", s.checkpoints);
  e.One("kappa_checkpoint_epoch", "gauge", "The epoch of the last checkpoint begun.", s.progress.epoch);
  e.One("kappa_checkpoint_last_duration_seconds", "gauge", "How long the last checkpoint stalled processing.",
        s.last_checkpoint_ms / 1000.0);
  e.One("kappa_checkpoint_stall_max_seconds", "gauge", "The longest checkpoint stall of this process.",
        s.checkpoint_max_ms / 1000.0);
  e.One("kappa_checkpoint_stall_seconds_total", "counter", "Time processing stood still for checkpoints.",
        s.checkpoint_total_ms / 1000.0);
  e.One("kappa_sink_flush_seconds_total", "counter",
        "Of the checkpoint stalls: the sink barrier (acks, or the sink's transaction).", s.sink_flush_total_ms / 1000.0);
  e.One("kappa_checkpoint_writer_wait_seconds_total", "counter",
        "Of the checkpoint stalls: waiting for room behind the state's writer (behind: slow acks, commits or disk).",
        s.writer_wait_total_ms / 1000.0);
  e.One("kappa_checkpoint_capture_max_seconds", "gauge",
        "The longest copy of a checkpoint's changed state out of the tables (part of its stall).",
        s.capture_max_ms / 1000.0);
  e.One("kappa_state_size_bytes", "gauge", "RocksDB's estimate of the state (live SST files and memtables).",
        s.state_bytes);
  e.One("kappa_restore_records_remaining", "gauge",
        "Records still to re-read with outputs suppressed to restore state after a crash.",
        s.restore_records_remaining);
  e.One("kappa_source_unreachable_seconds", "gauge",
        "How long no Kafka broker has answered the source (0: reachable); while > 0 the log ends and lag are the "
        "last ones seen.",
        SecondsSince(s.progress.source_unreachable_since_ms, s.now_ms));
  e.One("kappa_sink_waiting_seconds", "gauge",
        "How long the sink has been retrying a checkpoint the database would not take (PostgreSQL away, a lock "
        "on the table; 0: not waiting); nothing is read meanwhile.",
        SecondsSince(s.progress.sink_waiting_since_ms, s.now_ms));
  e.One("kappa_progress_ratio", "gauge", "Share of the input from the start to the log end processed (0 to 1).",
        s.progress.percent_done() / 100.0);
  // At the rate measured here (the snapshot's own rate is set only where a
  // status line is printed: it read NaN while there was lag).
  ProgressSnapshot at_rate = s.progress;
  at_rate.records_per_second = in_per_s_;
  const double eta = at_rate.eta_seconds();
  e.One("kappa_eta_seconds", "gauge", "Seconds until the lag is worked off at the current rate (NaN: unknown).",
        eta < 0 ? std::nan("") : eta);
  if (!firing_.empty()) {
    e.Family("kappa_alert", "gauge", "1 while the alert set in the spec's alerts is crossed.");
    for (const auto& [name, on] : firing_) e.Sample("kappa_alert", int64_t{on ? 1 : 0}, "name=\"" + name + "\"");
    e.Family("kappa_alert_value", "gauge", "What each alert compares with its threshold.");
    for (const auto& [name, value] : alert_values_) e.Sample("kappa_alert_value", value, "name=\"" + name + "\"");
  }
  return e.Take();
}

}  // namespace kappa
