// `kappa archive --repair`: finds the first damaged block of each archived
// partition (a complete block whose header or payload checksum fails, or an
// incomplete block in a sealed segment) and, while Kafka still holds the
// offsets from there on, moves the damaged tail aside (<segment>.damaged)
// and refetches it; when Kafka no longer holds them, says exactly which
// offsets are lost and changes nothing. A torn tail (an incomplete block at
// the very end) is not damage: the archiver cuts it on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "base/stop_token.h"
#include "kafka/kafka_config.h"
#include "archive/archiver.h"

namespace kappa {

// The first damaged block of one partition.
struct PartitionDamage {
  std::string topic;
  int32_t partition = 0;
  std::string segment;  // path of the segment holding it
  int64_t byte = 0;     // where the block starts in it
  std::string what;     // "archive <segment>: the block at byte N fails: ..."
  // The archive is good below `from` (the end of the last good block); the
  // damaged block's offsets are below `damaged_end` (INT64_MAX when its
  // header is damaged and nothing after it tells).
  int64_t from = 0;
  int64_t damaged_end = INT64_MAX;
  std::vector<std::string> later_segments;  // paths of the segments after it
};

// Verifies every block (headers and payloads) of <root>/<topic>/<partition>;
// nullopt if none is damaged. FailedPrecondition for the old block format.
Result<std::optional<PartitionDamage>> FindDamage(const std::string& root, const std::string& topic,
                                                  int32_t partition);

// Moves the damaged tail aside: the damaged segment's bytes from the bad
// block on into <segment>.damaged (the segment is cut there), and each later
// segment renamed to <name>.damaged (".damaged.2"... if taken). The paths
// written go to *moved. Crash-safe: the segment is cut last, so an
// interrupted move leaves it damaged, and FindDamage then a second move
// finish the job (kill points repair-copied-aside, repair-moved-later,
// repair-cut).
Status MoveDamagedTailAside(const PartitionDamage& damage, std::vector<std::string>* moved);

struct RepairSummary {
  // One per topic (how many partitions are damaged, or have a hole), then
  // one per repaired partition: the damaged block (file and byte), where
  // its tail was moved aside, and the offsets refetched.
  std::vector<std::string> lines;
  int damaged = 0;                 // partitions repaired
  int64_t refetched = 0;           // records archived while refetching
  // DataLoss naming each partition with a hole (Kafka's log now starts
  // past the archive's end: those offsets are in neither, and the archiver
  // holds the partition back), with what to do; OK if there is none.
  Status whole;
};

// Repairs `options.topics` in `options.root`: finds the damage in every
// partition first, and asks Kafka where each partition's log starts; if
// Kafka no longer holds a damaged range, DataLoss naming each lost range
// (topic[p] offsets a..b, the file and byte; and apart from it the hole up
// to Kafka's log start, when the archive ends before it; and the other
// partitions' holes) and nothing is changed. Otherwise moves each damaged
// tail aside and runs the archiver (with stop_at_end, on those partitions
// only) to refetch it. Partitions with a hole but no damage are left as
// they are and named in `whole`.
Result<RepairSummary> RepairArchive(const KafkaConfig& config, const ArchiverOptions& options, StopToken stop);

// A reader's Corruption (a damaged block, a hole) with what brings the
// records back: the archiver said it; --dump and replays named the damage
// alone (a bug bash). Other statuses, and messages that already say what
// to run, as they are.
Status WithRepairAdvice(const Status& st, const std::string& root, const std::string& topic);

}  // namespace kappa
