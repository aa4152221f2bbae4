// The log archive: kappa's durable copy of Kafka history (tiered storage),
// so a version can replay from offset zero long after Kafka's retention
// deleted the records, at the speed of a sequential file read.
//
// Layout: <root>/<topic>/<partition>/<base offset, 20 digits>.kseg. A
// partition is a sequence of segment files; a segment is a sequence of
// blocks; a block holds up to ~1 MiB of records in offset order, compressed
// with LZ4 and checksummed with XXH3-64 over its header and payload:
//
//   block  = header (48 bytes, little-endian) + compressed payload
//   header = magic "KAB1" | codec u32 (1 = LZ4) | raw_size u32 | stored_size u32
//            | record_count u32 | reserved u32 | first_offset i64 | last_offset i64
//            | checksum u64 (XXH3-64 of the payload, seeded with the XXH3-64 of the
//            first 40 header bytes)
//   record = offset i64 | timestamp_ms i64 | key_size i32 (-1: null) | value_size i32 (-1: null)
//            | header_count u32 | headers_size u32 | value, padded to 8 | key | headers, padded to 8
//   header = name_size u32 | value_size i32 (-1: null) | name | value
//
// The data is its own progress record: a block is appended with one write()
// and made durable with fdatasync(), and the archive's end offset is the
// last offset of the last complete, checksum-valid block. A crash (kill -9)
// can leave only a torn block at the very tail of the last segment, which
// the next writer truncates; the records in it are fetched again from
// Kafka. So the progress is committed atomically with the data it covers.
// Readers may run while a writer appends: a reader stops at the first tail
// block that is not complete yet. A bad block anywhere else is Corruption.
// Offsets inside a partition increase strictly but may skip (transaction
// markers, compaction), exactly as in Kafka.
//
// Why segment files and not RocksDB: a replay reads a partition once, front
// to back. Blocks of ~1 MiB read with pread and decompressed with LZ4 run at
// GB/s with no per-record lookups; the block headers are the offset index (a
// seek reads only headers, 48 bytes per block). RocksDB would add a key per
// record, the memtable and compaction rewrites for an append-only log.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kappa {

struct ArchiveHeader {
  std::string_view name;
  std::string_view value;
  bool value_null = false;
};

// One record as stored. Views point into the writer's caller or the
// reader's block buffer: valid until the next call on the reader.
struct ArchiveRecord {
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string_view key;
  bool key_null = false;
  std::string_view value;  // 8-byte aligned when it comes from a reader
  bool value_null = false;
  std::vector<ArchiveHeader> headers;
};

// The archived range of one partition.
struct ArchiveRange {
  int32_t partition = 0;
  int64_t first_offset = -1;  // -1: empty
  int64_t end_offset = 0;     // last archived offset + 1 (0 when empty)
  int64_t records = 0;
  int64_t stored_bytes = 0;
};

// Appends to one partition of a topic. One writer per partition at a time
// (an flock on the partition directory enforces it, across processes).
class ArchiveWriter {
 public:
  static constexpr size_t kDefaultBlockBytes = 1 << 20;
  static constexpr int64_t kDefaultSegmentBytes = 256ll << 20;

  // Opens (creating) <root>/<topic>/<partition>, truncates a torn tail block
  // left by a crash (and says so on stderr), and positions after the last
  // complete block.
  static Result<std::unique_ptr<ArchiveWriter>> Open(const std::string& root, const std::string& topic,
                                                     int32_t partition, size_t block_bytes = kDefaultBlockBytes,
                                                     int64_t segment_bytes = kDefaultSegmentBytes);
  ~ArchiveWriter();

  // Buffers a record; writes a block when the buffer is full. The offset
  // must be >= end_offset() (InvalidArgument otherwise: a duplicate or a
  // reordering would corrupt the archive).
  Status Append(const ArchiveRecord& record);
  // Writes the buffered records as a block (if any) and fdatasync()s: after
  // OK every record appended so far survives a crash.
  Status Flush();

  int32_t partition() const;
  // Offset after the last appended record (buffered ones included).
  int64_t end_offset() const;
  // Offset after the last record made durable by Flush (or found on open).
  int64_t durable_end_offset() const;
  int64_t first_offset() const;  // -1 if empty
  // Test-only crash injection: with KAPPA_TEST_KILL_AT=archive-torn-block:<n>
  // the n-th block is written only half, then the process SIGKILLs itself.
  struct Impl;

 private:
  explicit ArchiveWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads one partition from a start offset up to the end present when each
// block is reached (so it sees what a concurrent writer adds).
class ArchiveReader {
 public:
  // NotFound if the partition has no archive directory.
  static Result<std::unique_ptr<ArchiveReader>> Open(const std::string& root, const std::string& topic,
                                                     int32_t partition);
  ~ArchiveReader();

  // Positions at the first record with offset >= `offset`.
  Status Seek(int64_t offset);
  // The next record into *out (views valid until the next call); false at
  // the current end. Corruption if a block in the middle fails its checksum.
  Result<bool> Next(ArchiveRecord* out);
  // Records of the next block at or after the position, without decoding
  // headers: fills `records` (views into an internal 8-byte aligned buffer,
  // valid until the next call) with those whose offset >= the position and
  // < `limit`. Empty at the end. The fast path for replays.
  Status NextBlock(std::vector<ArchiveRecord>* records, int64_t limit = INT64_MAX);

  // Re-scans the directory for the current archived range.
  Result<ArchiveRange> Range();

  struct Impl;

 private:
  explicit ArchiveReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Topic-level helpers.
// Partitions archived for `topic` (their directory exists), ascending.
Result<std::vector<int32_t>> ArchivedPartitions(const std::string& root, const std::string& topic);
// The range of each archived partition of `topic` (empty vector: no archive).
Result<std::vector<ArchiveRange>> ArchiveRanges(const std::string& root, const std::string& topic);

}  // namespace kappa
