// Where a task starts reading, and the history-gap rule (DESIGN invariant 7),
// written once for every source: a restored task continues at its
// checkpoint; a fresh one at the spec's start (earliest: offset 0, all of
// history; latest: the log end; timestamp: the first offset at or after it).
// If the offset a task wants is held by no store (retention deleted it
// before it was archived), the job stops with DataLoss naming the partition
// and the range, unless the spec allows truncated history: then the gap is
// counted, carried as a lineage header on the partition's outputs, and
// announced as a warning. One thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/progress.h"
#include "base/status.h"
#include "engine/job_spec.h"

namespace kappa {

class KafkaSink;

// The offset a task wants next. `restored` / `checkpoint_offset`: the task's
// checkpoint, if it has one. `ran_before`: another task of the job has a
// checkpoint, so one without is a partition added to the topic since the
// first run: read from its beginning, said through `note` (the spec's
// `start` applies to the job's first run only). `latest`: the log end the
// spec's `latest` means. `offset_for_time`: resolves a timestamp start
// (null: unsupported by this source, which is then an InvalidArgument).
Result<int64_t> WantedOffset(const JobSpec& spec, int32_t partition, bool restored, bool ran_before,
                             int64_t checkpoint_offset, int64_t latest,
                             const std::function<Result<int64_t>(int64_t)>& offset_for_time,
                             const NoteCallback& note);

// A task positioned past the end of every store that could serve it: its
// state belongs to another log (the topic was recreated or truncated, or
// the archive is another cluster's). `ends` says where the stores end.
Status PastTheEnd(const JobSpec& spec, int32_t partition, int64_t offset, const std::string& ends);

class HistoryGapRule {
 public:
  HistoryGapRule(const JobSpec& spec, KafkaSink* sink, NoteCallback note)
      : spec_(spec), sink_(sink), note_(std::move(note)) {}

  // Records [wanted, next) of `partition` are held by no store; `holdings`
  // says what the stores hold (for the message) and `advice` how to get the
  // records back. Returns `next` (the gap recorded) or DataLoss.
  Result<int64_t> Apply(int32_t partition, int64_t wanted, int64_t next, const std::string& holdings,
                        const std::string& advice);
  // Records skipped under allow_truncated_history so far.
  int64_t gap_records() const { return gap_records_; }

 private:
  const JobSpec& spec_;
  KafkaSink* sink_;
  NoteCallback note_;
  int64_t gap_records_ = 0;
};

}  // namespace kappa
