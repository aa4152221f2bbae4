#include "engine/start_position.h"

#include "engine/kafka_sink.h"

namespace kappa {

Result<int64_t> WantedOffset(const JobSpec& spec, int32_t partition, bool restored, bool ran_before,
                             int64_t checkpoint_offset, int64_t latest,
                             const std::function<Result<int64_t>(int64_t)>& offset_for_time,
                             const NoteCallback& note) {
  if (restored) return checkpoint_offset;
  if (ran_before && spec.start != StartPosition::kEarliest) {
    if (note) {
      note(NoteLevel::kInfo, spec.source_topic + "[" + std::to_string(partition) +
                                 "] has no checkpoint though the job ran before: a partition added to the topic "
                                 "since, read from its beginning (start: latest or a time applies to the job's "
                                 "first run only)");
    }
    return int64_t{0};
  }
  switch (spec.start) {
    case StartPosition::kEarliest:
      return int64_t{0};  // all of history, from offset zero
    case StartPosition::kLatest:
      return latest;
    case StartPosition::kTimestamp: {
      if (!offset_for_time) {
        return Status::InvalidArgument("a timestamp start is not supported with --archive-only");
      }
      auto offset = offset_for_time(spec.start_timestamp_ms);
      if (!offset.ok()) return offset.status();
      return *offset < 0 ? latest : *offset;  // no record at or after that time yet: the end
    }
  }
  return int64_t{0};
}

Status PastTheEnd(const JobSpec& spec, int32_t partition, int64_t offset, const std::string& ends) {
  return Status::FailedPrecondition(spec.source_topic + "[" + std::to_string(partition) + "]: the job is at offset " +
                                    std::to_string(offset) + " but " + ends +
                                    ": the topic was recreated or truncated, or this state or archive belongs to "
                                    "another log");
}

Result<int64_t> HistoryGapRule::Apply(int32_t partition, int64_t wanted, int64_t next, const std::string& holdings,
                                      const std::string& advice) {
  const std::string where = spec_.source_topic + "[" + std::to_string(partition) + "]: wanted offset " +
                            std::to_string(wanted) + " but " + holdings + ": records " + std::to_string(wanted) +
                            ".." + std::to_string(next - 1) + " are gone";
  if (!spec_.allow_truncated_history) {
    // The setting is part of the spec hash, which the state directory is
    // bound to from the first run on: editing it in place is refused, so the
    // way on without the records is a new version.
    return Status::DataLoss(where + " (" + advice + "). To go on without them, set `source: {allow_truncated_history: " +
                            "true}` in a new version (bump `version:`, with its own state directory): the setting " +
                            "is part of the spec hash, so " + spec_.state_dir + " cannot take it; the new version " +
                            "starts at the log start with the gap recorded");
  }
  gap_records_ += next - wanted;
  if (sink_) sink_->SetHistoryGap(partition, std::to_string(wanted) + "-" + std::to_string(next - 1));
  if (note_) {
    note_(NoteLevel::kWarning, where + "; starting at " + std::to_string(next) + " as allow_truncated_history permits");
  }
  return next;
}

}  // namespace kappa
