// The archive on disk: <root>/<topic>/<partition>/<base offset, 20 digits>.kseg,
// a partition being a sequence of segment files and a segment a sequence of
// blocks (archive/segment_format.h). Directory and file helpers shared by the
// writer, the reader and the range listing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/atomic_file.h"
#include "base/status.h"
#include "archive/segment_format.h"

namespace kappa::segment_file {

// "<what>: <strerror(errno)>".
std::string Errno(const std::string& what);
// Kafka's rule for topic names ([a-zA-Z0-9._-], 1 to 249 characters, not
// "." or ".."): InvalidArgument otherwise. Checked before a topic becomes
// part of a path.
Status ValidateTopic(const std::string& topic);
std::string PartitionDir(const std::string& root, const std::string& topic, int32_t partition);
std::string SegmentName(int64_t base);
// mkdir -p.
Status MakeDirs(const std::string& path);
// fsync of a directory (after creating a file in it).
Status SyncDir(const std::string& dir);
// Segment base offsets in a partition directory, ascending; NotFound if the
// directory does not exist.
Result<std::vector<int64_t>> ListSegments(const std::string& dir);
// The first bytes (at most 63) of <dir>/<name>, one of the archive's small
// metadata files (CHAIN, PARTITIONS; written by base/atomic_file.h), or
// nullopt if it does not exist.
Result<std::optional<std::string>> ReadSmallFile(const std::string& dir, const std::string& name);
// pread until `size` bytes are read; false on an error or the end of the file.
bool PreadAll(int fd, void* buf, size_t size, int64_t at);

// The partition's chain file (CHAIN, "from <N>"): every segment named N or
// above is named after the end of the segment before it (its last offset
// + 1, or its own name if it holds nothing), so a segment deleted, or a
// sealed one cut short at a block boundary, shows as a hole between two
// names, even where Kafka's offsets legitimately skip (transaction markers,
// compaction): the writer, not the records, names the segment. Archives
// written before it have no CHAIN (-1): their segments are named after
// their first record, and a hole between them cannot be told from a skip.
inline constexpr char kChainFile[] = "CHAIN";
Result<int64_t> ReadChainStart(const std::string& dir);
// Writes CHAIN atomically and durably (the writer, before it creates the
// first segment the rule applies to).
Status WriteChainStart(const std::string& dir, int64_t from);

// What a scan of one segment file found.
struct SegmentScan {
  int64_t valid_bytes = 0;  // end of the last good block before a torn tail or damage
  int64_t file_bytes = 0;
  int64_t first_offset = -1;  // of the good blocks
  int64_t last_offset = -1;
  int64_t records = 0;
  // An incomplete block at valid_bytes running to the end of the file (a
  // torn write if this is the newest segment; damage in a sealed one).
  bool torn_tail = false;
  // A complete block at valid_bytes that is damaged: what is wrong with it,
  // and its header's offsets when the header itself is intact (-1 if not).
  bool damaged = false;
  std::string damage;
  int64_t damaged_first = -1;
  int64_t damaged_last = -1;
};

// Walks the blocks of a segment: every header's own checksum (the headers
// are the offset index) and that the offsets increase; every payload's
// checksum too when `verify_payloads`. Stops at the first torn or damaged
// block. FailedPrecondition for a segment of the old block format.
Result<SegmentScan> ScanSegment(const std::string& path, bool verify_payloads);
// In a chained partition, the segment named CHAIN's "from" is the first
// the writer made: "" if it is there (or the partition is not chained),
// else what is missing. Segments above it without it: a hole at the
// start, always (the first of them deleted). No segment from it on at
// all: its segments were deleted, or a writer died between writing CHAIN
// and making that segment; while a writer holds the partition
// (PartitionBeingWritten) that is a partition being begun, and "" too.
// Not checked where segments from before CHAIN (named below it) are there.
std::string ChainStartProblem(const std::string& dir, const std::vector<int64_t>& segments, int64_t chain_from);

// Whether a process holds the partition's writer lock (an archiver, a
// repair or an upgrade): a torn block at the newest segment's end is then
// one being written. Probed with a shared lock released at once
// (PartitionLock waits a moment for such a probe to end).
bool PartitionBeingWritten(const std::string& dir);

// What a reader tells about the incomplete block at the end of the newest
// segment `path` (its scan), with no writer there: from where records may
// be missing and what brings them back.
std::string TornTailMessage(const std::string& path, const SegmentScan& scan, int64_t archived_end);

// "archive <path>: the block at byte N <damage> ..." for a scan that found
// damage or (in a sealed segment) an incomplete block.
std::string DamageMessage(const std::string& path, const SegmentScan& scan);

// Where the next segment of a chained partition must be named, after this
// one: its last offset + 1, or its own name if it holds no record.
int64_t ChainedEnd(int64_t name, int64_t first_offset, int64_t last_offset);
// What is wrong with segment `name`, whose first record is `first_offset`
// (-1: none), in its place after a segment ending at `prev_end` (-1: it is
// the first), in a partition chained from `chain_from` (-1: not chained):
// "" if nothing. A segment holding offsets below its name (a copy, another
// partition's segment), one overlapping the one before it, and, where
// chained, a hole between the two.
std::string SegmentOrderProblem(const std::string& dir, int64_t name, int64_t first_offset, int64_t prev_end,
                                int64_t chain_from);

// <path><suffix>, or <path><suffix>.2, .3... if taken: where a command
// keeps bytes it moves out of a segment (".damaged", ".torn").
std::string AsideName(const std::string& path, const std::string& suffix);
// Copies bytes [from, end) of `path` into a new file `to`, made durable;
// on failure `to` is removed (a partial copy would pass for the whole).
// Out of space, the error says how much the copy of the `what` ("damaged
// tail") needs, and to run `command` ("--repair") again.
Status CopyTail(const std::string& path, int64_t from, const std::string& to, const std::string& what,
                const std::string& command);

// Holds a partition directory's writer lock (the flock on <dir>/LOCK that
// ArchiveWriter takes) while a command rewrites its files; `command` names
// it in the refusal when an archiver holds it ("--repair").
class PartitionLock {
 public:
  PartitionLock() = default;
  PartitionLock(const PartitionLock&) = delete;
  PartitionLock& operator=(const PartitionLock&) = delete;
  Status Lock(const std::string& dir, const std::string& command);
  ~PartitionLock();

 private:
  int fd_ = -1;
};

}  // namespace kappa::segment_file
