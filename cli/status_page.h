// The live status page of a long-running command (issue 15), served beside
// /metrics on the same port: GET / is one HTML page (plain HTML, JavaScript
// and inline SVG charts, embedded here: no build step, nothing fetched from
// elsewhere) that polls GET /api/status every second. The JSON holds this
// process's numbers from its JobMetrics (rates, lag, percent done, ETA,
// counters, DLQ by error type, alerts, and the last five minutes of
// one-second samples so the charts start full), and for deploy and replay
// the job's versions as the deployment last read them from the registry
// (state, serving, each version's last reported rate, lag, percent and ETA,
// a history of those per version) and the last promotion's report.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "engine/job_metrics.h"
#include "replay/registry.h"

namespace kappa::cli {

extern const char kStatusPageHtml[];

class StatusBoard {
 public:
  // `metrics` outlives the board; `command` is run, deploy or replay.
  StatusBoard(std::string command, const JobMetrics* metrics) : command_(std::move(command)), metrics_(metrics) {}
  // The deployment's registry hook (its publisher thread): copies what the
  // page shows of `job`.
  void OnRegistry(const Registry& registry, const std::string& job);
  // GET /api/status (the server's thread).
  std::string Json() const;

 private:
  struct Point {
    int64_t ms;
    double rate;
    int64_t lag;
  };
  const std::string command_;
  const JobMetrics* metrics_;
  mutable std::mutex mu_;
  int64_t registry_read_ms_ = 0;  // 0: no registry (kappa run), or not read yet
  std::optional<JobRecord> record_;
  std::map<int32_t, ProgressRecord> progress_;
  std::map<int32_t, std::deque<Point>> history_;  // per version, from its progress records
  std::optional<std::string> promotion_;
  std::set<int32_t> paused_;  // versions kappa throttle --pause paused
};

}  // namespace kappa::cli
