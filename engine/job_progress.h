// A job's progress as data: the ProgressSnapshot of its tasks against the
// source's log ends (lag and everything derived from it come from
// base/progress.h), and the metrics file (<state_dir>/metrics.json) written
// at each checkpoint and at a clean exit, atomically (write, then rename),
// describing what is durably committed. Called by the job's thread.
#pragma once

#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "engine/job_spec.h"

namespace kappa {

class Source;
class Task;

RecordCounters TotalCounters(const std::vector<Task*>& tasks);
ProgressSnapshot SnapshotOf(const std::vector<Task*>& tasks, const Source& source, int64_t epoch);
Status WriteMetricsFile(const std::string& path, const JobSpec& spec, const std::vector<Task*>& tasks, int64_t epoch,
                        int64_t history_gap_records);

}  // namespace kappa
