// A job's progress as data: the ProgressSnapshot of its tasks against the
// source's log ends (lag and everything derived from it come from
// base/progress.h), and the metrics file (<state_dir>/metrics.json) written
// once each checkpoint is durable and at a clean exit, atomically (write,
// then rename), describing only what is durably committed: the text is
// rendered when a checkpoint is begun and written once it is durable. Called by the job's thread.
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
// The metrics file's JSON for the tasks as they are now, labelled `epoch`;
// `sink_rejected`: the rows the sink refused (ProgressSnapshot).
// `second_stage`: a repartitioned job's second stage's counters, combined
// into the totals (RecordCounters::WithSecondStage).
std::string RenderMetrics(const JobSpec& spec, const std::vector<Task*>& tasks, int64_t epoch,
                          int64_t history_gap_records, int64_t sink_rejected,
                          const RecordCounters* second_stage = nullptr);
// Writes `text` to path.tmp, then renames it to path.
Status WriteMetricsText(const std::string& path, const std::string& text);
// RenderMetrics + WriteMetricsText.
Status WriteMetricsFile(const std::string& path, const JobSpec& spec, const std::vector<Task*>& tasks, int64_t epoch,
                        int64_t history_gap_records, int64_t sink_rejected,
                        const RecordCounters* second_stage = nullptr);

}  // namespace kappa
