#include "engine/archive_source.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "archive/archive_repair.h"
#include "engine/kafka_sink.h"
#include "engine/reinjected.h"
#include "engine/task.h"

namespace kappa {
namespace {
constexpr int kPasses = 4;                  // times the ends are re-read after reaching them
}  // namespace

ArchiveSource::ArchiveSource(const JobSpec& spec, std::string dir, int parallelism, KafkaSink* sink,
                             CommittedGaps& gaps, HistoryGapRule& gap_rule)
    : spec_(spec), dir_(std::move(dir)), parallelism_(std::max(1, parallelism)), sink_(sink), gaps_(gaps),
      gap_rule_(gap_rule) {}

ArchiveSource::~ArchiveSource() = default;

Status ArchiveSource::ReadRanges() {
  auto ranges = ArchiveRanges(dir_, spec_.source_topic);
  if (!ranges.ok()) return WithRepairAdvice(ranges.status(), dir_, spec_.source_topic);
  TakeRanges(*ranges);
  return Status::OK();
}

void ArchiveSource::TakeRanges(const std::vector<ArchiveRange>& ranges) {
  ranges_.clear();
  for (const ArchiveRange& r : ranges) {
    if (r.partition < 0) continue;
    if (static_cast<size_t>(r.partition) >= ranges_.size()) ranges_.resize(r.partition + 1);
    ranges_[r.partition] = r;
  }
  for (size_t p = 0; p < ranges_.size(); ++p) ranges_[p].partition = static_cast<int32_t>(p);
}

Result<int32_t> ArchiveSource::Partitions() {
  auto ranges = ArchiveRanges(dir_, spec_.source_topic);
  if (!ranges.ok()) return WithRepairAdvice(ranges.status(), dir_, spec_.source_topic);
  if (ranges->empty()) {
    return Status::NotFound("nothing archived for topic " + spec_.source_topic + " in " + dir_ +
                            " (build it with `kappa archive`)");
  }
  // Every partition 0..n-1 there, none beyond (n: what Kafka's topic had
  // when it was archived): a directory deleted from the end would
  // otherwise shrink the topic without a word.
  if (auto checked = CheckArchivedPartitions(dir_, spec_.source_topic); !checked.ok()) return checked.status();
  TakeRanges(*ranges);  // read once: every segment's headers are scanned for it
  // From the archive alone nothing reads past a cut segment: said (a
  // replay ended there with exit 0 and no word: a bug bash).
  if (on_note_) {
    for (const ArchiveRange& r : *ranges) {
      if (!r.torn_tail.empty()) {
        on_note_(NoteLevel::kWarning, r.torn_tail + "; this replay from the archive alone reads " +
                                          spec_.source_topic + "[" + std::to_string(r.partition) + "] up to there");
      }
    }
  }
  return static_cast<int32_t>(ranges_.size());
}

void ArchiveSource::Attach(const std::vector<Task*>& tasks) {
  tasks_ = tasks;
  readers_.resize(tasks.size());
  end_.assign(tasks.size(), -1);
  ranges_.resize(std::max(ranges_.size(), tasks.size()));
}

Result<int64_t> ArchiveSource::OffsetForTime(int32_t partition, int64_t ms, int64_t from, int64_t until) {
  if (from >= until) return int64_t{-1};
  auto reader = ArchiveReader::Open(dir_, spec_.source_topic, partition);
  if (!reader.ok()) return reader.status();
  KAPPA_RETURN_IF_ERROR((*reader)->Seek(from));
  std::vector<ArchiveRecord> block;
  while (true) {
    KAPPA_RETURN_IF_ERROR((*reader)->NextBlock(&block, until));
    if (block.empty()) return int64_t{-1};
    for (const ArchiveRecord& r : block) {
      if (r.timestamp_ms >= ms) return r.offset;
    }
  }
}

Status ArchiveSource::Serve(size_t i) {
  auto reader = ArchiveReader::Open(dir_, spec_.source_topic, tasks_[i]->partition());
  if (!reader.ok()) return reader.status();
  KAPPA_RETURN_IF_ERROR((*reader)->Seek(tasks_[i]->next_offset()));
  readers_[i] = std::move(*reader);
  end_[i] = ranges_[i].end_offset;
  if (tasks_[i]->next_offset() < end_[i]) pending_.push_back(i);
  return Status::OK();
}

Status ArchiveSource::Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) {
  Attach(tasks);
  const bool ran_before = std::find(restored.begin(), restored.end(), true) != restored.end();
  for (size_t i = 0; i < tasks.size(); ++i) {
    Task& t = *tasks[i];
    const ArchiveRange& r = ranges_[i];
    auto by_time = [&](int64_t ms) {
      return OffsetForTime(t.partition(), ms, r.records > 0 ? r.first_offset : r.end_offset, r.end_offset);
    };
    auto wanted = WantedOffset(spec_, t.partition(), restored[i], ran_before, t.next_offset(), r.end_offset, by_time,
                               on_note_);
    if (!wanted.ok()) return wanted.status();
    if (!restored[i]) t.StartAt(*wanted);
    const int64_t first = r.records > 0 ? r.first_offset : r.end_offset;
    if (t.next_offset() < first) {
      auto next = gap_rule_.Apply(
          t.partition(), t.next_offset(), first,
          r.records > 0 ? "the archive holds " + std::to_string(first) + ".." + std::to_string(r.end_offset - 1)
                        : std::string("the archive holds nothing"),
          "they were never archived; restore them into the archive with `kappa archive --import`");
      if (!next.ok()) return next.status();
      if (restored[i]) t.SkipTo(*next);
      else t.StartAt(*next);
    }
    if (t.next_offset() > r.end_offset) {
      return PastTheEnd(spec_, t.partition(), t.next_offset(), "the archive ends at " + std::to_string(r.end_offset));
    }
    if (Holds(i, t.next_offset())) KAPPA_RETURN_IF_ERROR(Serve(i));
  }
  return Status::OK();
}

// Up to `budget` records of task i, block by block, until `until` has passed;
// a block's records go through the chain kBatchRecords at a time.
Status ArchiveSource::Slice(size_t i, int64_t budget, std::chrono::steady_clock::time_point until,
                            std::vector<ArchiveRecord>* block, int64_t* done) {
  Task* task = tasks_[i];
  ArchiveReader* reader = readers_[i].get();
  const int64_t limit = end_[i];
  while (*done < budget && task->next_offset() < limit &&
         (*done == 0 || std::chrono::steady_clock::now() < until)) {
    KAPPA_RETURN_IF_ERROR(reader->NextBlock(block, limit));
    if (block->empty()) {
      return Status::Corruption("the archive of " + spec_.source_topic + "[" + std::to_string(task->partition()) +
                                "] ended at offset " + std::to_string(task->next_offset()) + ", before its end " +
                                std::to_string(limit) + " listed when the job started");
    }
    for (size_t from = 0; from < block->size(); from += kBatchRecords) {
      const size_t to = std::min(block->size(), from + kBatchRecords);
      for (size_t j = from; j < to; ++j) {
        const ArchiveRecord& r = (*block)[j];
        gaps_.BeforeAppend(i, *task, r.offset);
        // Null stays null (a tombstone, a record without a key), apart
        // from empty, as from Kafka.
        task->AppendBorrowed(r.value_null ? nullptr : r.value.data(), static_cast<uint32_t>(r.value.size()),
                             r.key_null ? nullptr : r.key.data(), static_cast<uint32_t>(r.key.size()), r.offset,
                             r.timestamp_ms);
        if (r.header_count > 0) {
          // A record `kappa dlq replay` re-injected, archived with its
          // headers: read as the Kafka source reads them.
          ApplyReinjectionHeaders(spec_, task, r.offset, [&r](const char* name) {
            std::string_view value;
            FindArchivedHeader(r.raw_headers, r.header_count, name, &value);
            return value;
          });
        }
      }
      task->Process();
      if (!task->fatal().ok()) return task->fatal();
    }
    *done += static_cast<int64_t>(block->size());
    // With more than one worker, whoever finishes a block serves the sink's
    // delivery reports (one poller at a time; the others skip it): left to
    // the job's thread between rounds, that serial part kept the other
    // workers waiting.
    if (pool_->size() > 1) sink_->Poll();
  }
  return Status::OK();
}

// One round over the pending partitions on the worker pool.
//
// Uncapped, a round's records are shared out in proportion to what each
// partition has left, and the workers take the largest slices first: the
// partitions reach their ends together. Equal slices let the light
// partitions finish early and left a skewed topic's heaviest partition
// (a Zipf-distributed key, say) to one thread for the replay's tail, while
// the other workers idled. The round's time (kRoundMs) usually ends it
// before every slice has run: a slice not taken, or cut short, leaves its
// partition with more left than the others, so it is planned larger and
// taken first in the next round.
Status ArchiveSource::Round(int64_t budget, int64_t* records) {
  if (!pool_) {
    pool_ = std::make_unique<WorkerPool>(parallelism_);
    blocks_.resize(pool_->size());
  }
  const size_t n = pending_.size();
  const size_t first = first_ % n;
  // The round's slices, in the order the workers take them: (pending_ index, budget).
  std::vector<std::pair<size_t, int64_t>> slices;
  slices.reserve(n);
  if (budget > 0) {
    // A rate cap makes rounds small, so the cap holds and checkpoints stay on time.
    const int64_t share = std::max<int64_t>(1, budget / static_cast<int64_t>(n));
    for (size_t k = 0; k < n; ++k) slices.emplace_back(pending_[(first + k) % n], share);
  } else {
    double left_total = 0;
    for (size_t i : pending_) left_total += static_cast<double>(end_[i] - tasks_[i]->next_offset());
    const double round_total = static_cast<double>(round_records_) * static_cast<double>(n);
    const int64_t least = std::max<int64_t>(1, round_records_ / 16);
    for (size_t i : pending_) {
      const double left = static_cast<double>(end_[i] - tasks_[i]->next_offset());
      slices.emplace_back(i, std::max(least, static_cast<int64_t>(round_total * left / left_total) + 1));
    }
    std::stable_sort(slices.begin(), slices.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  }
  std::vector<Status> errors(pool_->size());
  std::vector<int64_t> counts(pool_->size(), 0);
  std::atomic<size_t> next{0};
  std::atomic<size_t> taken{0};
  std::atomic<int64_t> round_total{0};
  const auto until = budget > 0 ? std::chrono::steady_clock::time_point::max()
                                : std::chrono::steady_clock::now() + std::chrono::milliseconds(round_ms_);
  sink_->SetConcurrent(pool_->size() > 1);
  pool_->Run([&](int w) {
    for (size_t k = next++; k < n; k = next++) {
      // A slice reads whole archive blocks (up to 1 MiB each), so a capped
      // round that gave every partition one would read many times its
      // budget at once: it stops at the budget, and the next capped round
      // starts with the partitions this one did not reach.
      if (budget > 0 && round_total.load() >= budget) break;
      // The first slice always runs: every round moves a partition forward.
      if (budget == 0 && k > 0 && std::chrono::steady_clock::now() >= until) break;
      ++taken;
      // Each partition's own count against its share: a worker's running
      // total made every slice after its first in a round read nothing, so
      // a round served one partition per worker and the partitions were
      // replayed one after the other.
      int64_t done = 0;
      Status st = Slice(slices[k].first, slices[k].second, until, &blocks_[w], &done);
      counts[w] += done;
      round_total += done;
      if (!st.ok() && errors[w].ok()) errors[w] = st;
    }
  });
  sink_->SetConcurrent(false);
  first_ = first + taken.load();
  for (size_t w = 0; w < errors.size(); ++w) {
    KAPPA_RETURN_IF_ERROR(errors[w]);
    *records += counts[w];
  }
  records_ += *records;
  std::erase_if(pending_, [&](size_t i) { return tasks_[i]->next_offset() >= end_[i]; });
  return Status::OK();
}

// Every served partition reached its end: more may have been archived
// meanwhile; read it at archive speed too, a few passes at most.
Status ArchiveSource::NextPass() {
  while (pending_.empty() && passes_ < kPasses) {
    ++passes_;
    bool grew = false;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      if (!readers_[i]) continue;
      auto range = readers_[i]->Range();
      if (!range.ok()) return range.status();
      if (range->end_offset > end_[i]) {
        end_[i] = ranges_[i].end_offset = range->end_offset;
        if (tasks_[i]->next_offset() < end_[i]) pending_.push_back(i), grew = true;
      }
    }
    if (!grew) break;
  }
  if (pending_.empty()) {
    exhausted_ = true;
    pool_.reset();  // the workers are not needed past the archive
  }
  return Status::OK();
}

void ArchiveSource::Unserve(size_t i) {
  readers_[i].reset();
  end_[i] = -1;
  std::erase(pending_, i);
}

bool ArchiveSource::Done(size_t i) const { return readers_[i] && tasks_[i]->next_offset() >= end_[i]; }

Status ArchiveSource::ReadServed(int64_t budget, int64_t* records) {
  *records = 0;
  if (pending_.empty()) return Status::OK();
  if (sink_->failed()) return sink_->failure();
  return WithRepairAdvice(Round(budget, records), dir_, spec_.source_topic);
}

Status ArchiveSource::Read(int64_t budget, int64_t* records) {
  *records = 0;
  if (exhausted_) return Status::OK();
  if (pending_.empty()) {
    KAPPA_RETURN_IF_ERROR(WithRepairAdvice(NextPass(), dir_, spec_.source_topic));
    if (exhausted_) return Status::OK();
  }
  if (sink_->failed()) return sink_->failure();
  return WithRepairAdvice(Round(budget, records), dir_, spec_.source_topic);
}

std::string ArchiveSource::Describe() const {
  int64_t ahead = 0;
  for (size_t i = 0; i < tasks_.size(); ++i) {
    if (readers_[i]) ahead += std::max<int64_t>(0, end_[i] - tasks_[i]->next_offset());
  }
  return std::to_string(ahead) + " records from the archive " + dir_ + " on " + std::to_string(parallelism_) +
         " worker(s)";
}

}  // namespace kappa
