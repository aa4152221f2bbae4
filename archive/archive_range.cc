#include "archive/archive_range.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "archive/segment_file.h"

namespace kappa {

using namespace segment_file;

Result<ArchiveRange> PartitionRange(const std::string& dir, int32_t partition) {
  ArchiveRange range;
  range.partition = partition;
  auto chain = ReadChainStart(dir);
  if (!chain.ok()) return chain.status();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  // Deleted first segments read as an empty partition (a bug bash).
  if (const std::string problem = ChainStartProblem(dir, *segments, *chain); !problem.empty()) {
    return Status::Corruption(problem);
  }
  int64_t prev_end = -1;
  for (size_t i = 0; i < segments->size(); ++i) {
    const bool last = i + 1 == segments->size();
    const std::string path = dir + "/" + SegmentName((*segments)[i]);
    auto scan = ScanSegment(path, /*verify_payloads=*/false);
    if (!scan.ok()) return scan.status();
    if (scan->damaged || (scan->torn_tail && !last)) return Status::Corruption(DamageMessage(path, *scan));
    if (const std::string problem = SegmentOrderProblem(dir, (*segments)[i], scan->first_offset, prev_end, *chain);
        !problem.empty()) {
      return Status::Corruption(problem);
    }
    prev_end = ChainedEnd((*segments)[i], scan->first_offset, scan->last_offset);
    // A cut segment read as a shorter whole one (a bug bash): said, unless
    // a writer is there (its block being written).
    if (last && scan->torn_tail && !PartitionBeingWritten(dir)) {
      range.torn_tail = TornTailMessage(path, *scan, scan->records > 0 ? scan->last_offset + 1 : prev_end);
    }
    if (scan->records == 0) continue;
    // A chained partition's first segment is named after where its writer
    // began reading (ArchiveWriter::BeginAt): the offsets up to its first
    // record held none, and the archive covers them.
    if (range.first_offset < 0) {
      range.first_offset = *chain >= 0 && i == 0 && (*segments)[0] >= *chain ? (*segments)[0] : scan->first_offset;
    }
    range.end_offset = scan->last_offset + 1;
    range.records += scan->records;
    range.stored_bytes += scan->valid_bytes;
  }
  return range;
}

namespace {
// NotFound if the archive root does not exist; it must be a directory.
Status CheckRoot(const std::string& root) {
  if (root.empty()) return Status::InvalidArgument("no archive directory given");
  struct stat st{};
  if (::stat(root.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound("archive directory " + root + " does not exist");
    return Status::IOError(Errno("stat " + root));
  }
  if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition("archive directory " + root + " is not a directory");
  return Status::OK();
}
}  // namespace

Result<std::vector<std::string>> ArchivedTopics(const std::string& root) {
  KAPPA_RETURN_IF_ERROR(CheckRoot(root));
  DIR* d = ::opendir(root.c_str());
  if (!d) return Status::IOError(Errno("opendir " + root));
  std::vector<std::string> topics;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (!ValidateTopic(name).ok()) continue;
    struct stat st{};
    const std::string path = root + "/" + name;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) topics.push_back(name);
  }
  ::closedir(d);
  std::sort(topics.begin(), topics.end());
  return topics;
}

Result<std::vector<int32_t>> ArchivedPartitions(const std::string& root, const std::string& topic) {
  KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
  KAPPA_RETURN_IF_ERROR(CheckRoot(root));
  const std::string dir = root + "/" + topic;
  DIR* d = ::opendir(dir.c_str());
  std::vector<int32_t> partitions;
  if (!d) {
    if (errno == ENOENT) return partitions;
    return Status::IOError(Errno("opendir " + dir));
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name.size() > 9 || name.find_first_not_of("0123456789") != std::string::npos) continue;
    partitions.push_back(std::atoi(name.c_str()));
  }
  ::closedir(d);
  std::sort(partitions.begin(), partitions.end());
  return partitions;
}

Result<int32_t> ArchivedPartitionCount(const std::string& root, const std::string& topic) {
  KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
  const std::string dir = root + "/" + topic;
  auto text = ReadSmallFile(dir, "PARTITIONS");
  if (!text.ok()) return text.status();
  if (!text->has_value()) return -1;
  const char* buf = (*text)->c_str();
  char* end = nullptr;
  const long count = std::strtol(buf, &end, 10);
  if (end == buf || *end != '\n' || count < 1 || count > 1000000) {
    return Status::Corruption("archive " + dir + "/PARTITIONS is not a partition count: the archive is damaged; delete it "
                              "(the next `kappa archive` writes it again)");
  }
  return static_cast<int32_t>(count);
}

Status RecordPartitionCount(const std::string& root, const std::string& topic, int32_t count) {
  auto known = ArchivedPartitionCount(root, topic);
  if (known.ok() && *known >= count) return Status::OK();
  const std::string dir = root + "/" + topic;
  KAPPA_RETURN_IF_ERROR(MakeDirs(dir));
  return WriteFileAtomically(dir, "PARTITIONS", std::to_string(count) + "\n");
}

Result<int32_t> CheckArchivedPartitions(const std::string& root, const std::string& topic) {
  auto partitions = ArchivedPartitions(root, topic);
  if (!partitions.ok()) return partitions.status();
  auto count = ArchivedPartitionCount(root, topic);
  if (!count.ok()) return count.status();
  const std::string where = "the archive of " + topic + " in " + root;
  std::string present;
  for (size_t i = 0; i < partitions->size() && i < 12; ++i) present += (i ? "," : "") + std::to_string((*partitions)[i]);
  if (partitions->size() > 12) present += ",...";
  const int32_t expected = *count > 0 ? *count : (partitions->empty() ? 0 : partitions->back() + 1);
  if (Status stray = CheckNoStrayPartition(root, topic, *partitions, expected,
                                           "had " + std::to_string(expected) + " partitions when it was archived", "");
      !stray.ok()) {
    return Status::Corruption(stray.message());
  }
  for (int32_t p = 0; p < expected; ++p) {
    if (!std::binary_search(partitions->begin(), partitions->end(), p)) {
      return Status::Corruption(where + " lacks partition " + std::to_string(p) + " of " + std::to_string(expected) +
                                " (it holds " + present + "): its directory was deleted or never copied; archive it "
                                "again from Kafka (`kappa archive ... --repair` refetches what Kafka still holds)");
    }
  }
  return expected;
}

Status CheckNoStrayPartition(const std::string& root, const std::string& topic, const std::vector<int32_t>& present,
                             int32_t expected, const std::string& kafka_had, const std::string& or_else) {
  const auto stray = std::lower_bound(present.begin(), present.end(), expected);
  if (stray == present.end()) return Status::OK();
  return Status::FailedPrecondition("the archive of " + topic + " in " + root + " holds partition directory " +
                                    std::to_string(*stray) + ", but Kafka's topic " + kafka_had + ": move " +
                                    PartitionDir(root, topic, *stray) + " out of the archive (a stray directory?)" +
                                    or_else);
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
