// Source: where a job's records come from. A source owns its position, as
// Arroyo's Kafka source keeps its offsets: it decides where each task
// starts (its checkpoint or the spec's start), applies the history-gap rule,
// reads records into the tasks in offset order per partition and runs them
// through their chains, and knows each partition's log end. The runner only
// asks it for more. Three kinds (make_source.h picks one):
//   ArchiveSource  the log archive, partitions replayed in parallel
//   KafkaSource    a topic, from exact offsets
//   HybridSource   the archive up to its end, then Kafka at exactly that offset
// A checkpoint stores each task's next offset, whichever source served it.
// Driven by the job's thread (the archive source fans out to workers inside
// Read and returns when they are done).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"

namespace kappa {

class Task;

class Source {
 public:
  virtual ~Source() = default;

  // How many partitions the source topic has (tasks 0..n-1 are made for them).
  virtual Result<int32_t> Partitions() = 0;
  // Positions every task: restored[i] says whether task i was restored from
  // a checkpoint (then it continues there), otherwise it starts where the
  // spec says. Applies the history-gap rule. Tasks outlive the source.
  virtual Status Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) = 0;
  // Reads and processes up to about `budget` records (0: the source's own
  // batch size); *records is how many. OK with *records == 0 means nothing
  // was there yet (or, when exhausted(), nothing ever will be).
  virtual Status Read(int64_t budget, int64_t* records) = 0;
  // No record will ever come again (an archive-only source at its end).
  virtual bool exhausted() const = 0;

  // Latest known log end of task i's partition (for lag), and the end it
  // had when the source opened (the target of stop_at_end).
  virtual int64_t LogEnd(size_t i) const = 0;
  virtual int64_t EndAtOpen(size_t i) const = 0;
  // Since when (wall clock ms) no Kafka broker answers; 0: reachable, or a
  // source that needs none (PartitionConsumer::UnreachableSinceMs).
  virtual int64_t UnreachableSinceMs() const { return 0; }
  // Why, when known (PartitionConsumer::UnreachableReason); empty otherwise.
  virtual std::string UnreachableReason() const { return {}; }
  // The offset task i's reading has passed, when the source skips offsets
  // no record stands for (a transactional topic's commit and abort markers,
  // an aborted transaction's records under read_committed): at or past the
  // task's next offset; -1 when unknown or the same. A topic written
  // transactionally ends in a marker, so a task's next offset never
  // reaches its log end.
  virtual int64_t ReadPast(size_t /*i*/) const { return -1; }
  // Records served from the archive so far (the rest came from Kafka).
  virtual int64_t archive_records() const { return 0; }
  // A one-line description for the start note ("transactions[0..7] from Kafka").
  virtual std::string Describe() const = 0;
};

}  // namespace kappa
