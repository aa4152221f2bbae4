// Holes and strays between segments. A partition is a sequence of segment
// files; a segment deleted from the middle, or a sealed one cut short at a
// block boundary, used to leave a partition that read as whole: readers,
// `--list`, the archiver and `--repair` went from one segment to the next
// and the records in between were skipped without a word. Segments are now
// named after the end of the one before them (CHAIN), so a hole shows
// between two names even where the offsets legitimately skip (transaction
// markers: here every odd offset); each reader reports it, the archiver
// refuses to append, and the repair moves the segments after the hole
// aside to fetch everything from its start again. A segment copied in under
// another name (offsets below its name, or overlapping the one before) is
// refused too. Archives written before CHAIN read as before.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/archive.h"
#include "archive/archive_repair.h"
#include "archive/segment_file.h"
#include "tests/archive/owned_record.h"
#include "tests/support/archive_bytes.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using testing::Blocks;
using testing::ScratchDir;
namespace fs = std::filesystem;

constexpr int64_t kRecords = 12000;

// Records at even offsets 0, 2, ... (a transaction marker after each), in
// ~4 KiB blocks and 64 KiB segments.
void WriteSkipping(const std::string& root) {
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (int64_t i = 0; i < kRecords; ++i) {
    const std::string value = "value-" + std::to_string(i) + std::string(static_cast<size_t>(i % 100), 'v');
    ArchiveRecord r;
    r.offset = 2 * i;
    r.value = value;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  ASSERT_TRUE((*w)->Flush().ok());
}

std::vector<std::string> Segments(const std::string& root) {
  std::vector<std::string> segments;
  for (auto& e : fs::directory_iterator(root + "/t/0")) {
    if (e.path().extension() == ".kseg") segments.push_back(e.path().string());
  }
  std::sort(segments.begin(), segments.end());
  return segments;
}

// Every way of reading the partition reports `problem` as corruption.
void ExpectEveryReaderRefuses(const std::string& root, const std::string& problem) {
  int64_t count = 0;
  const Status read = ReadAll(root, &count);
  EXPECT_EQ(read.code(), Status::Code::kCorruption) << read.ToString() << " after " << count << " records";
  EXPECT_NE(read.message().find(problem), std::string::npos) << read.ToString();
  auto ranges = ArchiveRanges(root, "t");
  EXPECT_EQ(ranges.status().code(), Status::Code::kCorruption) << ranges.status().ToString();
  EXPECT_NE(ranges.status().message().find(problem), std::string::npos) << ranges.status().ToString();
  auto writer = ArchiveWriter::Open(root, "t", 0);
  EXPECT_EQ(writer.status().code(), Status::Code::kCorruption) << writer.status().ToString();
  EXPECT_NE(writer.status().message().find("--repair"), std::string::npos) << writer.status().ToString();
}

TEST(ArchiveHolesTest, AWholeArchiveReadsAcrossSegmentsWhoseRecordsSkipOffsets) {
  ScratchDir dir("archive_holes_whole");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  ASSERT_GE(Segments(root).size(), 4u);
  int64_t count = 0;
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, kRecords);
  auto found = FindDamage(root, "t", 0);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_FALSE(found->has_value());
  // Reopened, the writer goes on at the end, naming its next segment after it.
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->end_offset(), 2 * kRecords - 1);
}

TEST(ArchiveHolesTest, ASegmentDeletedFromTheMiddleIsAHoleThatRepairRefetches) {
  ScratchDir dir("archive_holes_deleted");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  const auto segments = Segments(root);
  ASSERT_GE(segments.size(), 4u);
  const auto before = Blocks(segments[1]);
  const int64_t end = before.back().header.last_offset + 1;  // where segment 2 begins
  fs::remove(segments[2]);
  const int64_t next = std::stoll(fs::path(segments[3]).stem().string());
  ASSERT_GT(next, end);
  ExpectEveryReaderRefuses(root, "offsets " + std::to_string(end) + ".." + std::to_string(next - 1) + " are missing");

  // The repair keeps everything before the hole and moves the rest aside.
  auto found = FindDamage(root, "t", 0);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->has_value());
  const PartitionDamage& d = **found;
  EXPECT_EQ(d.segment, segments[1]);
  EXPECT_EQ(d.from, end);
  EXPECT_EQ(d.damaged_end, next);
  EXPECT_EQ(d.later_segments.front(), segments[3]);
  std::vector<std::string> moved;
  ASSERT_TRUE(MoveDamagedTailAside(d, &moved).ok());
  EXPECT_EQ(moved.front(), segments[3] + ".damaged") << "nothing of the segment before the hole is copied or cut";
  EXPECT_EQ(Blocks(segments[1]).size(), before.size());
  int64_t count = 0;
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, (end + 1) / 2);  // offsets 0, 2, ..., end - 1
  // The refetch starts at the hole: the writer's end is the hole's start.
  auto w = ArchiveWriter::Open(root, "t", 0);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->end_offset(), end);
  auto again = FindDamage(root, "t", 0);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

TEST(ArchiveHolesTest, ASealedSegmentCutAtABlockBoundaryIsAHole) {
  ScratchDir dir("archive_holes_cut");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  const auto segments = Segments(root);
  ASSERT_GE(segments.size(), 3u);
  const auto blocks = Blocks(segments[0]);
  ASSERT_GE(blocks.size(), 3u);
  // Cut before its last block: every block left is whole.
  fs::resize_file(segments[0], static_cast<uintmax_t>(blocks.back().at));
  const int64_t cut_end = blocks[blocks.size() - 2].header.last_offset + 1;
  ExpectEveryReaderRefuses(root, "offsets " + std::to_string(cut_end) + "..");
}

TEST(ArchiveHolesTest, ASegmentCopiedInUnderAnotherNameIsRefused) {
  ScratchDir dir("archive_holes_stray");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  const auto segments = Segments(root);
  // The first segment again, named where the partition ends: its offsets
  // are below its name.
  const std::string stray = root + "/t/0/" + segment_file::SegmentName(2 * kRecords - 1);
  fs::copy_file(segments[0], stray);
  ExpectEveryReaderRefuses(root, "holds offsets from 0, below its name");
}

TEST(ArchiveHolesTest, AnArchiveWithoutAChainReadsAsBefore) {
  ScratchDir dir("archive_holes_unchained");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  // Written before CHAIN existed: segments were named after their first
  // record, one past the end of the segment before (the marker between).
  fs::remove(root + "/t/0/" + std::string(segment_file::kChainFile));
  const auto segments = Segments(root);
  for (size_t i = 1; i < segments.size(); ++i) {
    const int64_t first = Blocks(segments[i]).front().header.first_offset;
    ASSERT_EQ(first, std::stoll(fs::path(segments[i]).stem().string()) + 1);
    fs::rename(segments[i], root + "/t/0/" + segment_file::SegmentName(first));
  }
  int64_t count = 0;
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, kRecords);
  auto ranges = ArchiveRanges(root, "t");
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ((*ranges)[0].records, kRecords);
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  // Its next segment starts the chain.
  for (int64_t i = kRecords; i < kRecords + 3000; ++i) {
    const std::string value = "value-" + std::to_string(i) + std::string(100, 'w');
    ArchiveRecord r;
    r.offset = 2 * i;
    r.value = value;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  ASSERT_TRUE((*w)->Flush().ok());
  w->reset();
  auto chain = segment_file::ReadChainStart(root + "/t/0");
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  EXPECT_GT(*chain, 2 * kRecords - 2);
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, kRecords + 3000);
}

}  // namespace
}  // namespace kappa
