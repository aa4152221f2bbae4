#include "engine/job_progress.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/source.h"
#include "engine/task.h"

namespace kappa {
namespace {
int64_t WatermarkOrZero(const Task& t) { return t.watermark_ms() == kNoTime ? 0 : t.watermark_ms(); }
}  // namespace

RecordCounters TotalCounters(const std::vector<Task*>& tasks) {
  RecordCounters c;
  for (const Task* t : tasks) c.Add(t->counters());
  return c;
}

ProgressSnapshot SnapshotOf(const std::vector<Task*>& tasks, const Source& source, int64_t epoch) {
  ProgressSnapshot s;
  s.epoch = epoch;
  s.checkpoint_ms = WallClockMs();
  s.counters = TotalCounters(tasks);
  s.source_unreachable_since_ms = source.UnreachableSinceMs();
  s.source_unreachable_reason = source.UnreachableReason();
  s.partitions.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    PartitionProgress p;
    p.partition = tasks[i]->partition();
    p.start_offset = tasks[i]->checkpoint().start_offset;
    // Past a transactional topic's markers (and aborted records): what is
    // left to read, not offsets no record stands for.
    p.position = std::max(tasks[i]->next_offset(), source.ReadPast(static_cast<size_t>(tasks[i]->partition())));
    p.log_end = source.LogEnd(static_cast<size_t>(tasks[i]->partition()));
    p.watermark_ms = WatermarkOrZero(*tasks[i]);
    s.partitions.push_back(p);
  }
  return s;
}

std::string RenderMetrics(const JobSpec& spec, const std::vector<Task*>& tasks, int64_t epoch,
                          int64_t history_gap_records, int64_t sink_rejected, const RecordCounters* second_stage) {
  const RecordCounters c =
      second_stage ? TotalCounters(tasks).WithSecondStage(*second_stage) : TotalCounters(tasks);
  std::ostringstream out;
  out << "{\n  \"job\": \"" << spec.job << "\",\n  \"version\": " << spec.version << ",\n  \"spec_hash\": \""
      << spec.spec_hash << "\",\n  \"epoch\": " << epoch << ",\n  \"records_in\": " << c.in
      << ",\n  \"records_out\": " << c.out << ",\n  \"deduped\": " << c.deduped << ",\n  \"filtered\": " << c.filtered
      << ",\n  \"late\": " << c.late << ",\n  \"dlq\": " << c.dlq << ",\n  \"outputs\": " << c.outputs
      << ",\n  \"history_gap_records\": " << history_gap_records << ",\n  \"sink_rejected\": " << sink_rejected
      << ",\n  \"partitions\": [";
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Task& t = *tasks[i];
    out << (i ? "," : "") << "\n    {\"partition\": " << t.partition() << ", \"next_offset\": " << t.next_offset()
        << ", \"start_offset\": " << t.checkpoint().start_offset << ", \"watermark_ms\": " << WatermarkOrZero(t)
        << ", \"records_in\": " << t.counters().in << ", \"outputs\": " << t.counters().outputs << "}";
  }
  out << "\n  ]\n}\n";
  return out.str();
}

Status WriteMetricsText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp);
  out << text;
  out.close();
  if (!out) {
    const int err = errno;
    std::remove(tmp.c_str());  // an empty .tmp was left behind (a bug bash)
    return Status::IOError("cannot write the metrics file " + tmp + ": " + std::strerror(err) +
                           (err == ENOSPC ? " (free space on its file system, or move it: --state-dir, or --metrics-file "
                                            "with kappa run)"
                                          : "") +
                           "; the checkpoint itself is durable");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    // The checkpoint it describes is durable all the same: say so, and why.
    return Status::IOError("cannot replace the metrics file " + path + ": " + std::strerror(err) +
                           (err == EISDIR ? " (it is a directory: remove it; kappa run can also write it elsewhere, --metrics-file)" : "") +
                           "; the checkpoint itself is durable");
  }
  return Status::OK();
}

Status WriteMetricsFile(const std::string& path, const JobSpec& spec, const std::vector<Task*>& tasks, int64_t epoch,
                        int64_t history_gap_records, int64_t sink_rejected, const RecordCounters* second_stage) {
  return WriteMetricsText(path, RenderMetrics(spec, tasks, epoch, history_gap_records, sink_rejected, second_stage));
}

}  // namespace kappa
