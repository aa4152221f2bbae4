// The archive on disk: <root>/<topic>/<partition>/<base offset, 20 digits>.kseg,
// a partition being a sequence of segment files and a segment a sequence of
// blocks (archive/segment_format.h). Directory and file helpers shared by the
// writer, the reader and the range listing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "archive/segment_format.h"

namespace kappa::segment_file {

// "<what>: <strerror(errno)>".
std::string Errno(const std::string& what);
std::string PartitionDir(const std::string& root, const std::string& topic, int32_t partition);
std::string SegmentName(int64_t base);
// mkdir -p.
Status MakeDirs(const std::string& path);
// fsync of a directory (after creating a file in it).
Status SyncDir(const std::string& dir);
// Segment base offsets in a partition directory, ascending; NotFound if the
// directory does not exist.
Result<std::vector<int64_t>> ListSegments(const std::string& dir);
// pread until `size` bytes are read; false on an error or the end of the file.
bool PreadAll(int fd, void* buf, size_t size, int64_t at);

// What a scan of one segment file found.
struct SegmentScan {
  int64_t valid_bytes = 0;  // end of the last complete, valid block
  int64_t file_bytes = 0;
  int64_t first_offset = -1;
  int64_t last_offset = -1;
  int64_t records = 0;
  bool torn_tail = false;  // bytes after valid_bytes that are not a valid block
};

// Walks the block headers of a segment (the offset index). Every block's
// header must be sane and continue the offsets; the payload checksum is
// verified for the last block only when `verify_last` (a torn write can only
// be at the tail, and the reader verifies every block it reads). Whatever
// follows the last good block is reported as a torn tail.
Result<SegmentScan> ScanSegment(const std::string& path, bool verify_last);

}  // namespace kappa::segment_file
