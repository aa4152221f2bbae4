// Progress of a long-running reader (a job version, the archiver): per
// partition where it is and where the log ends, and what follows from that:
// lag, percent done, rate, ETA. Lag is computed here and nowhere else; the
// status line, metrics, the registry's catch-up rule and `kappa promote` all
// read it from a ProgressSnapshot. Plain values; not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <optional>
#include <vector>

#include "base/clock.h"
#include "base/record_counters.h"

namespace kappa {

struct PartitionProgress {
  int32_t partition = 0;
  int64_t start_offset = 0;  // where this reader started (for percent done)
  int64_t position = 0;      // next offset to process (checkpointed, for a job)
  int64_t log_end = 0;       // latest known log end offset
  int64_t watermark_ms = 0;  // 0: none yet
  // Set by a process that reads several topics (the archiver), so that its
  // per-partition metrics can tell them apart; "" for a job (one source).
  std::string topic;
  int64_t lag() const { return log_end > position ? log_end - position : 0; }
};

// A standby copy a scaled-out instance keeps of a partition another one
// runs (engine/standby.h).
struct StandbyProgress {
  int32_t partition = 0;
  int64_t lag_records = -1;  // changelog records behind its end (-1: unknown yet)
  int64_t next_offset = -1;  // the input offset the copy is at (-1: nothing applied yet)
};

// A partition a scaled-out instance is restoring from the changelog, while
// it lasts (the restore runs inside the group's rebalance).
struct RestoreProgress {
  int32_t partition = -1;
  int64_t records = 0;        // changelog records read so far
  int64_t total_records = 0;  // in the changelog partition
  int64_t bytes = 0;
  double eta_seconds = -1;    // < 0: unknown yet
};

// Seconds from `since_ms` (wall clock ms; 0: not happening) to `now_ms`,
// never negative; 0 when not happening.
inline double SecondsSince(int64_t since_ms, int64_t now_ms) {
  return since_ms == 0 ? 0.0 : static_cast<double>(std::max<int64_t>(0, now_ms - since_ms)) / 1000.0;
}

struct ProgressSnapshot {
  int64_t epoch = 0;
  int64_t checkpoint_ms = 0;  // wall clock of the snapshot
  double records_per_second = 0;
  RecordCounters counters;
  // Output rows the sink refused (PostgreSQL: into the DLQ as SinkRejected),
  // since the version began, out of these partitions' inputs.
  int64_t sink_rejected = 0;
  std::vector<PartitionProgress> partitions;
  // scale_out: how many partitions the version reads (each instance holds
  // some of them); 0: not scaled out, or unknown.
  int32_t source_partitions = 0;
  // Of those, how many no running instance reports (scaled out: none
  // while instances start or rebalance); 0 when the count is not known.
  int32_t unreported_partitions() const {
    const auto reported = static_cast<int32_t>(partitions.size());
    return source_partitions > reported ? source_partitions - reported : 0;
  }
  std::vector<StandbyProgress> standbys;  // scale_out.standbys: the copies this process keeps
  std::optional<RestoreProgress> restoring;  // a restore from the changelog under way
  // Since when (wall clock ms) no Kafka broker has answered the reader; 0:
  // reachable, or not reading from Kafka. While set, every log_end is the
  // last one seen, so the lag is a lower bound: status lines say "lag
  // unknown", and a version is never counted as caught up.
  int64_t source_unreachable_since_ms = 0;
  bool source_unreachable() const { return source_unreachable_since_ms != 0; }
  // Why, when the client's log named it ("authentication with Kafka fails:
  // ..."): status lines say that rather than "no broker has answered".
  std::string source_unreachable_reason;
  // Since when (wall clock ms) the sink has been retrying an epoch the
  // database would not take (PostgreSQL away, a lock on the table); 0: not
  // waiting. Nothing is read meanwhile. `sink_waiting_reason` says what it
  // met ("unreachable", "waiting for a lock on ... held by ...").
  int64_t sink_waiting_since_ms = 0;
  bool sink_waiting() const { return sink_waiting_since_ms != 0; }
  std::string sink_waiting_reason;
  // Partitions the reader holds back instead of reading, each named with the
  // range it cannot get (the archiver: records retention deleted before they
  // were archived, "topic[p] offsets a..b"). They are not in `partitions`:
  // their lag is not work this reader will ever do.
  std::vector<std::string> held_back;

  int64_t total_lag() const {
    int64_t lag = 0;
    for (const auto& p : partitions) lag += p.lag();
    return lag;
  }
  int64_t max_lag() const {
    int64_t lag = 0;
    for (const auto& p : partitions) lag = std::max(lag, p.lag());
    return lag;
  }
  // The partition with the largest lag (-1 if there are none).
  int32_t max_lag_partition() const {
    int32_t which = -1;
    int64_t lag = -1;
    for (const auto& p : partitions) {
      if (p.lag() > lag) lag = p.lag(), which = p.partition;
    }
    return which;
  }
  // Share of [start_offset, log_end) behind every partition's position.
  double percent_done() const {
    int64_t done = 0, total = 0;
    for (const auto& p : partitions) {
      done += std::max<int64_t>(0, p.position - p.start_offset);
      total += std::max<int64_t>(0, p.log_end - p.start_offset);
    }
    return total > 0 ? 100.0 * static_cast<double>(std::min(done, total)) / static_cast<double>(total) : 100.0;
  }
  // Seconds until the lag is worked off at the current rate (< 0: unknown,
  // as it is while the source's broker is unreachable).
  double eta_seconds() const {
    if (source_unreachable()) return -1;
    const int64_t lag = total_lag();
    if (lag == 0) return 0;
    return records_per_second > 0 ? static_cast<double>(lag) / records_per_second : -1;
  }
  // The smallest watermark over partitions that have one (0: none).
  int64_t min_watermark_ms() const {
    int64_t w = 0;
    for (const auto& p : partitions) {
      if (p.watermark_ms != 0) w = w == 0 ? p.watermark_ms : std::min(w, p.watermark_ms);
    }
    return w;
  }
};

// Decides when a status is due and measures the rate between statuses;
// the caller fills the snapshot, the reporter hands it to `on_status`.
// Driven by one thread; the clock is passed in so tests can step it.
class ProgressReporter {
 public:
  using StatusCallback = std::function<void(const ProgressSnapshot&, bool final)>;
  ProgressReporter(int status_interval_ms, StatusCallback on_status, const Clock& clock = SteadyClock::Instance())
      : interval_ms_(status_interval_ms), on_status_(std::move(on_status)), clock_(&clock) {
    start_ms_ = last_ms_ = clock_->NowMs();
  }
  // Restarts the clocks; `records` is the count already processed (a restored job).
  void Start(int64_t records) {
    start_ms_ = last_ms_ = clock_->NowMs();
    start_records_ = last_records_ = records;
  }
  bool enabled() const { return interval_ms_ > 0 && on_status_ != nullptr; }
  bool Due() const { return enabled() && clock_->NowMs() - last_ms_ >= interval_ms_; }
  // Rate since the last status, then reports. `snapshot.records_per_second` is set here.
  void Report(ProgressSnapshot snapshot, int64_t records) {
    const int64_t now = clock_->NowMs();
    snapshot.records_per_second = Rate(records - last_records_, now - last_ms_);
    last_ms_ = now;
    last_records_ = records;
    if (on_status_) on_status_(snapshot, false);
  }
  // The final status: the rate over the whole run.
  void ReportFinal(ProgressSnapshot snapshot, int64_t records) {
    snapshot.records_per_second = OverallRate(records);
    if (on_status_ && interval_ms_ > 0) on_status_(snapshot, true);
  }
  double OverallRate(int64_t records) const { return Rate(records - start_records_, clock_->NowMs() - start_ms_); }
  double SecondsSinceStart() const { return static_cast<double>(clock_->NowMs() - start_ms_) / 1000.0; }

  static double Rate(int64_t records, int64_t ms) {
    return ms > 0 ? static_cast<double>(records) * 1000.0 / static_cast<double>(ms) : 0;
  }

 private:
  int interval_ms_;
  StatusCallback on_status_;
  const Clock* clock_;
  int64_t start_ms_ = 0, last_ms_ = 0;
  int64_t start_records_ = 0, last_records_ = 0;
};

}  // namespace kappa

namespace kappa {

// A library's one-line messages for a human (a partition switching from the
// archive to Kafka, a warning about skipped history): the library never
// prints; whoever runs it (the CLI) decides where they go.
// kError: something the reader will not do until someone acts (it goes on
// with the rest), said again for as long as it lasts.
enum class NoteLevel { kInfo, kWarning, kError };
using NoteCallback = std::function<void(NoteLevel, const std::string&)>;

}  // namespace kappa
