// ArchiveWriter: appends records to one partition of the log archive
// (archive/archive.h), in blocks made durable with fdatasync.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/progress.h"
#include "base/status.h"
#include "archive/archive_record.h"

namespace kappa {

// How a writer stores its blocks: LZ4 (the default: 4-6x less disk for
// these records), or as they are (none: a replay reads them without
// decompressing, at the cost of the disk and of reading more bytes). "lz4"
// compresses with LZ4HC at level 3 (on generated transactions, 1 MiB
// blocks: 5.8x smaller at ~250 MB/s a core, and decompressed at ~4.8 GB/s),
// "lz4-fast" with LZ4's fast compressor (4.6x at ~1 GB/s, decompressed at
// ~3.7 GB/s): the archive is written once and replayed many times, so the
// default spends on the write. Both are the same block format. A partition
// may hold any mix; readers take each block as its header says.
enum class ArchiveCompression { kLz4, kLz4Fast, kNone };
// "lz4", "lz4-fast" or "none"; InvalidArgument naming them otherwise.
Result<ArchiveCompression> ParseArchiveCompression(std::string_view name);
const char* ArchiveCompressionName(ArchiveCompression compression);

// One writer per partition at a time (an flock on the partition directory
// enforces it, across processes).
class ArchiveWriter {
 public:
  static constexpr size_t kDefaultBlockBytes = 1 << 20;
  static constexpr int64_t kDefaultSegmentBytes = 256ll << 20;

  // Opens (creating) <root>/<topic>/<partition>, truncates a torn tail block
  // left by a crash (an incomplete block at the very end of the newest
  // segment; says so through `on_note`), and positions after the last
  // complete block. InvalidArgument for a topic name Kafka would refuse;
  // Corruption, naming the file and byte and cutting nothing, if a complete
  // block fails its checksum (every header; the newest segment's payloads);
  // FailedPrecondition for an archive of the old block format.
  static Result<std::unique_ptr<ArchiveWriter>> Open(const std::string& root, const std::string& topic,
                                                     int32_t partition, size_t block_bytes = kDefaultBlockBytes,
                                                     int64_t segment_bytes = kDefaultSegmentBytes,
                                                     const NoteCallback& on_note = {},
                                                     ArchiveCompression compression = ArchiveCompression::kLz4);
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
  // True while the partition has nothing at all: no segment was found on
  // open, no CHAIN file, and nothing has been appended. Its first record
  // may be at any offset (an archive begun after retention deleted the
  // start of Kafka's log): the first segment is named after it.
  bool fresh() const;
  // A fresh writer that starts reading the log at `offset` (the archiver:
  // Kafka's log start) names its first segment and CHAIN after it, not
  // after its first record: offsets before that record held none (an
  // aborted transaction and its marker, records compaction removed), and a
  // replay from the archive alone took them for a hole ("records 0..50 are
  // gone"). Records below `offset` are refused like any below end_offset().
  // Nothing to do unless fresh().
  void BeginAt(int64_t offset);
  // Test-only crash injection (base/test_hooks.h): with
  // KAPPA_TEST_KILL_AT=archive-torn-block:<n> the n-th block is written only
  // half, then the process SIGKILLs itself.
  struct Impl;

 private:
  explicit ArchiveWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kappa
