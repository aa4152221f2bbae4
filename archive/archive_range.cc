#include "archive/archive_range.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "archive/segment_file.h"

namespace kappa {

using namespace segment_file;

Result<ArchiveRange> PartitionRange(const std::string& dir, int32_t partition) {
  ArchiveRange range;
  range.partition = partition;
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  for (size_t i = 0; i < segments->size(); ++i) {
    const bool last = i + 1 == segments->size();
    auto scan = ScanSegment(dir + "/" + SegmentName((*segments)[i]), last);
    if (!scan.ok()) return scan.status();
    if (scan->torn_tail && !last) {
      return Status::Corruption("archive " + dir + "/" + SegmentName((*segments)[i]) + ": invalid block at byte " +
                                std::to_string(scan->valid_bytes) + " in a sealed segment");
    }
    if (scan->records == 0) continue;
    if (range.first_offset < 0) range.first_offset = scan->first_offset;
    range.end_offset = scan->last_offset + 1;
    range.records += scan->records;
    range.stored_bytes += scan->valid_bytes;
  }
  return range;
}

Result<std::vector<int32_t>> ArchivedPartitions(const std::string& root, const std::string& topic) {
  const std::string dir = root + "/" + topic;
  DIR* d = ::opendir(dir.c_str());
  std::vector<int32_t> partitions;
  if (!d) {
    if (errno == ENOENT) return partitions;
    return Status::IOError(Errno("opendir " + dir));
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    partitions.push_back(std::atoi(name.c_str()));
  }
  ::closedir(d);
  std::sort(partitions.begin(), partitions.end());
  return partitions;
}

Result<std::vector<ArchiveRange>> ArchiveRanges(const std::string& root, const std::string& topic) {
  auto partitions = ArchivedPartitions(root, topic);
  if (!partitions.ok()) return partitions.status();
  std::vector<ArchiveRange> ranges;
  for (int32_t p : *partitions) {
    auto range = PartitionRange(PartitionDir(root, topic, p), p);
    if (!range.ok()) return range.status();
    ranges.push_back(*range);
  }
  return ranges;
}

}  // namespace kappa
