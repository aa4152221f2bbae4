// The archiver behind `kappa archive`: follows Kafka topics into the log
// archive (archive/archive.h). Its progress is the archive itself (the end
// offset of each partition's last durable block), so a kill -9 at any moment
// resumes without gaps or duplicates. It reads through kafka's
// PartitionConsumer (the one consume loop and its error classification) and
// reports through callbacks; it never prints.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "base/stop_token.h"
#include "kafka/kafka_config.h"
#include "archive/archive.h"
#include "archive/record_file.h"    // record files, for callers of this header
#include "archive/record_import.h"  // ImportRecordFile

namespace kappa {

struct ArchiverOptions {
  std::string root;
  std::vector<std::string> topics;
  bool stop_at_end = false;       // stop once every partition reaches its end offset as of start
  int flush_interval_ms = 1000;   // fdatasync at least this often (the archive's durability lag)
  size_t block_bytes = ArchiveWriter::kDefaultBlockBytes;
  // How new blocks are stored (blocks already archived keep theirs).
  ArchiveCompression compression = ArchiveCompression::kLz4;
  int status_interval_ms = 5000;  // 0: no status
  // Progress (position and log end of every followed partition, records
  // archived as counters.in) every status_interval_ms, and a final one.
  ProgressReporter::StatusCallback on_status;
  // One-line messages: what is followed, a torn block cut at start, transient
  // consumer errors (warnings), partitions held back for a hole (errors, at
  // start or when found and again with every status).
  NoteCallback on_note;
  // When not empty, only these partitions (topic, partition) of `topics`
  // are followed: --repair refetches the damaged ones and no other.
  std::vector<std::pair<std::string, int32_t>> only_partitions;
};

// A partition whose records Kafka deleted (retention) past the archive's
// end before they were archived: offsets from..log_start-1 are in neither.
struct ArchiveHole {
  std::string topic;
  int32_t partition = 0;
  int64_t from = 0;       // the archive's end
  int64_t log_start = 0;  // Kafka's log start when it was found
};

// "<topic>[p] offsets a..b: Kafka's log of that partition now starts after
// them (...). The archive would have a hole, ...: <what to do>", the text
// the archiver holds partitions back with (holes not empty).
std::string ArchiveHoleText(const std::vector<ArchiveHole>& holes);

struct ArchiverSummary {
  int64_t records = 0;
  int64_t bytes = 0;  // key + value bytes archived
  double seconds = 0;
};

// Follows `options.topics` until *stop is set (or the end, with
// stop_at_end). A partition whose log start offset is past what the archive
// holds (history deleted before it could be archived), or moves past it
// while following, is held back: nothing more is written to it (the archive
// never gets a hole), an error note names it and the range, and the others
// go on. The run then ends, after flushing what they archived, with
// DataLoss naming the held partitions and ranges; at once if none is left
// to archive. A partition with nothing archived yet is no hole: it starts
// at Kafka's log start, and starts again there (an info note) if retention
// passes it before its first record. FailedPrecondition if an archive ends
// after Kafka's log, or if Kafka's record at a partition's last archived
// offset is not the archived one (key, value, timestamp: a topic recreated
// under the archive; not checked where retention or compaction removed that
// offset). Partitions added to a topic while it runs are followed from
// their beginning (checked every KAPPA_TOPIC_CHECK_MS, 30 s by default).
Result<ArchiverSummary> RunArchiver(const KafkaConfig& config, const ArchiverOptions& options,
                                    StopToken stop);

}  // namespace kappa
