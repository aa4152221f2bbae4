// What the log archive (archive/archive.h) holds: the archived partitions of
// a topic and each one's offset range, from the block headers alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace kappa {

// The archived range of one partition.
struct ArchiveRange {
  int32_t partition = 0;
  int64_t first_offset = -1;  // -1: empty
  int64_t end_offset = 0;     // last archived offset + 1 (0 when empty)
  int64_t records = 0;
  int64_t stored_bytes = 0;
  // The newest segment ends in an incomplete block and no writer holds the
  // partition (a writer died mid-block, or the file was cut): what to tell
  // the user (segment_file::TornTailMessage); "" otherwise.
  std::string torn_tail;
};

// The range of one partition directory (<root>/<topic>/<partition>):
// NotFound if it does not exist; Corruption, naming the file and byte, if a
// block header fails its checksum or a sealed segment (not the newest) ends
// in an incomplete block (payloads are verified by the reader), or a
// chained partition lacks its first segment (ChainStartProblem).
Result<ArchiveRange> PartitionRange(const std::string& dir, int32_t partition);

// Topics archived under `root` (their directory exists), by name. NotFound
// if `root` does not exist.
Result<std::vector<std::string>> ArchivedTopics(const std::string& root);
// Partitions archived for `topic` (their directory exists), ascending.
// InvalidArgument for a topic name Kafka would refuse; NotFound if `root`
// does not exist (a missing archive is not an empty one).
Result<std::vector<int32_t>> ArchivedPartitions(const std::string& root, const std::string& topic);
// How many partitions Kafka's topic had when it was last archived
// (<root>/<topic>/PARTITIONS, written by the archiver), so that a replay
// from the archive alone can tell a partition directory deleted from the
// end; -1 if unknown (an archive made before it, or by --import).
Result<int32_t> ArchivedPartitionCount(const std::string& root, const std::string& topic);
// Records `count` there (atomically, durably) if it is more than what the
// file says.
Status RecordPartitionCount(const std::string& root, const std::string& topic, int32_t count);
// Partitions 0..n-1 of `topic` as a replay from the archive alone would
// read them: Corruption naming what is wrong if a directory in that range
// is missing, one lies beyond it, or fewer exist than PARTITIONS says.
Result<int32_t> CheckArchivedPartitions(const std::string& root, const std::string& topic);
// A partition directory of `topic` at or beyond `expected` partitions
// (`present`: ArchivedPartitions, ascending), as FailedPrecondition naming
// it and "move it out of the archive"; OK if none. `kafka_had`: how Kafka's
// count is known ("had N partitions when it was archived"); `or_else`:
// advice after the move (may be empty). CheckArchivedPartitions and the
// archiver's start.
Status CheckNoStrayPartition(const std::string& root, const std::string& topic, const std::vector<int32_t>& present,
                             int32_t expected, const std::string& kafka_had, const std::string& or_else);
// The range of each archived partition of `topic` (empty vector: the root
// exists but holds nothing of `topic`).
Result<std::vector<ArchiveRange>> ArchiveRanges(const std::string& root, const std::string& topic);

}  // namespace kappa
