// ArchiveReader: reads one partition of the log archive (archive/archive.h)
// front to back, verifying every block it reads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "archive/archive_range.h"
#include "archive/archive_record.h"

namespace kappa {

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

}  // namespace kappa
