#include "engine/hybrid_source.h"

#include <algorithm>

#include "engine/task.h"

namespace kappa {

// Where task i starts, with the archive [first, end) and Kafka [low, high)
// both in view.
Status HybridSource::Position(Task& t, size_t i, bool restored, const Watermarks& w) {
  auto wanted = kafka_.Wanted(t, restored, w);
  if (!wanted.ok()) return wanted.status();
  const ArchiveRange& r = archive_.Range(i);
  // A start time may be in the history before Kafka's log start, which
  // only the archive holds: Kafka answers with the first record it still
  // has at or after the time. Looked up there (a bug bash: the archived
  // records between the start time and Kafka's log start were skipped,
  // without a gap counted). Whatever Kafka answers: with timestamps out of
  // order an archived record may be stamped after the time though Kafka's
  // first such record is past its log start (a bug bash: it started there,
  // later than --archive-only did).
  if (!restored && !kafka_.ran_before() && spec_.start == StartPosition::kTimestamp && r.records > 0 &&
      r.first_offset < w.low) {
    auto in_archive = archive_.OffsetForTime(t.partition(), spec_.start_timestamp_ms, r.first_offset,
                                             std::min(w.low, r.end_offset));
    if (!in_archive.ok()) return in_archive.status();
    if (*in_archive >= 0) {
      kafka_.Note(NoteLevel::kInfo, spec_.source_topic + "[" + std::to_string(t.partition()) + "]: start time " +
                                        std::to_string(spec_.start_timestamp_ms) +
                                        " is in the archive's history: offset " + std::to_string(*in_archive) +
                                        " (Kafka's log starts at " + std::to_string(w.low) + ")");
      *wanted = *in_archive;
    }
  }
  if (!restored) t.StartAt(*wanted);
  if (!archive_.Holds(i, t.next_offset()) && t.next_offset() < w.low) {
    // Neither store holds it: the next record either has is `next`.
    int64_t next = w.low;
    if (r.records > 0 && r.first_offset > t.next_offset()) next = std::min(next, r.first_offset);
    const std::string holdings =
        "the Kafka log starts at " + std::to_string(w.low) + " and " +
        (r.records > 0 ? "the archive holds " + std::to_string(r.first_offset) + ".." + std::to_string(r.end_offset - 1)
                       : std::string("the archive holds nothing"));
    auto moved = gap_rule_.Apply(t.partition(), t.next_offset(), next, holdings,
                                 "deleted by retention before they were archived; restore them into an archive "
                                 "with `kappa archive --import`");
    if (!moved.ok()) return moved.status();
    if (restored) t.SkipTo(*moved);
    else t.StartAt(*moved);
  }
  if (archive_.Holds(i, t.next_offset())) {
    after_archive_[i] = true;
    return archive_.Serve(i);
  }
  if (t.next_offset() > w.high) {
    return PastTheEnd(spec_, t.partition(), t.next_offset(),
                      "neither the archive nor the Kafka log (ending at " + std::to_string(w.high) + ") reaches it");
  }
  return Status::OK();
}

Status HybridSource::Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) {
  tasks_ = tasks;
  after_archive_.assign(tasks.size(), false);
  KAPPA_RETURN_IF_ERROR(archive_.ReadRanges());
  archive_.Attach(tasks);
  kafka_.SetRanBefore(restored);
  auto marks = kafka_.ReadWatermarks(tasks.size());
  if (!marks.ok()) return marks.status();
  for (size_t i = 0; i < tasks.size(); ++i) KAPPA_RETURN_IF_ERROR(Position(*tasks[i], i, restored[i], (*marks)[i]));
  // Where Kafka serves the resumed records, the log must be the one
  // checkpointed; a position the archive serves is not checked (the archive
  // holds the log the state came from, and its end is held against Kafka's
  // at the switch).
  std::vector<bool> check(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) check[i] = restored[i] && !after_archive_[i];
  return kafka_.VerifyRestored(tasks, *marks, check);
}

Status HybridSource::Read(int64_t budget, int64_t* records) {
  if (!switched_) {
    if (!archive_.exhausted()) {
      KAPPA_RETURN_IF_ERROR(archive_.Read(budget, records));
      if (*records > 0 || !archive_.exhausted()) return Status::OK();
    }
    // The switch: every task reads on from Kafka at exactly its next offset.
    KAPPA_RETURN_IF_ERROR(kafka_.Continue(tasks_, after_archive_));
    switched_ = true;
  }
  return kafka_.Read(budget, records);
}

Status HybridSource::AttachGroup(const std::vector<Task*>& tasks) {
  tasks_ = tasks;
  after_archive_.assign(tasks.size(), false);
  KAPPA_RETURN_IF_ERROR(archive_.ReadRanges());
  archive_.Attach(tasks);
  return Status::OK();
}

Status HybridSource::PositionAssigned(Task& t, bool restored) {
  const size_t i = static_cast<size_t>(t.partition());
  archive_.Unserve(i);
  auto marks = kafka_.WatermarksOf(t.partition());
  if (!marks.ok()) return marks.status();
  KAPPA_RETURN_IF_ERROR(Position(t, i, restored, *marks));
  if (archive_.serving(i)) return Status::OK();
  return kafka_.PositionOne(t, *marks, false, !restored);
}

Status HybridSource::SwitchToKafka(size_t i) {
  archive_.Unserve(i);
  auto marks = kafka_.WatermarksOf(static_cast<int32_t>(i));
  if (!marks.ok()) return marks.status();
  return kafka_.PositionOne(*tasks_[i], *marks, true, false);
}

int64_t HybridSource::LogEnd(size_t i) const { return std::max(kafka_.LogEnd(i), archive_.LogEnd(i)); }

int64_t HybridSource::EndAtOpen(size_t i) const { return std::max(kafka_.EndAtOpen(i), archive_.EndAtOpen(i)); }

std::string HybridSource::Describe() const {
  return spec_.source_topic + "[0.." + std::to_string(tasks_.empty() ? 0 : tasks_.size() - 1) + "] (" +
         archive_.Describe() + ", then Kafka)";
}

}  // namespace kappa
