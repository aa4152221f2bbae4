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

// A bug bash: the first segment deleted (CHAIN still "from 0") read as an
// empty partition, or one beginning later, everywhere, with exit 0.
TEST(ArchiveHolesTest, ADeletedFirstSegmentIsAHoleThatRepairRefetchesFromTheChainsStart) {
  ScratchDir dir("archive_holes_first");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  const auto segments = Segments(root);
  ASSERT_GE(segments.size(), 3u);
  fs::remove(segments[0]);
  const int64_t next = std::stoll(fs::path(segments[1]).stem().string());
  ExpectEveryReaderRefuses(root, "offsets 0.." + std::to_string(next - 1) + " are missing");

  // Every segment goes aside (the writer appends only at the end), and the
  // refetch begins where CHAIN says the partition does.
  auto found = FindDamage(root, "t", 0);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((**found).from, 0);
  EXPECT_EQ((**found).damaged_end, next);
  std::vector<std::string> moved;
  ASSERT_TRUE(MoveDamagedTailAside(**found, &moved).ok());
  EXPECT_EQ(moved.size(), segments.size() - 1);
  EXPECT_TRUE(Segments(root).empty()) << "no empty segment left claiming where the partition begins";
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->end_offset(), 0);
  ArchiveRecord r;
  r.offset = 0;
  r.value = "again";
  ASSERT_TRUE((*w)->Append(r).ok());
  ASSERT_TRUE((*w)->Flush().ok());
  w->reset();
  int64_t count = 0;
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, 1);
}

// A bug bash: with every segment gone the partition listed as empty, and
// the archiver began it anew without a word. A reader says what is gone;
// the writer begins again where CHAIN says (so a retention gap before it is
// one the archiver reports) and says so.
TEST(ArchiveHolesTest, EverySegmentDeletedIsReportedAndTheWriterBeginsAgainAtTheChain) {
  ScratchDir dir("archive_holes_all");
  const std::string root = dir.path().string();
  // Begun at offset 500 (Kafka's log start then).
  {
    auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    (*w)->BeginAt(500);
    for (int64_t i = 500; i < 2000; ++i) {
      // The record views its value: kept alive until it is appended (a
      // temporary's was read after its end, AddressSanitizer said).
      const std::string value = "v" + std::to_string(i);
      ArchiveRecord r;
      r.offset = i;
      r.value = value;
      ASSERT_TRUE((*w)->Append(r).ok());
    }
    ASSERT_TRUE((*w)->Flush().ok());
  }
  for (const auto& s : Segments(root)) fs::remove(s);
  const std::string problem = "no segment from there on is there";
  int64_t count = 0;
  const Status read = ReadAll(root, &count);
  EXPECT_EQ(read.code(), Status::Code::kCorruption) << read.ToString();
  EXPECT_NE(read.message().find(problem), std::string::npos) << read.ToString();
  auto ranges = ArchiveRanges(root, "t");
  EXPECT_EQ(ranges.status().code(), Status::Code::kCorruption) << ranges.status().ToString();
  {
    // While a writer holds the partition, that is a partition being begun.
    segment_file::PartitionLock lock;
    ASSERT_TRUE(lock.Lock(root + "/t/0", "testing").ok());
    auto held = ArchiveRanges(root, "t");
    ASSERT_TRUE(held.ok()) << held.status().ToString();
    EXPECT_EQ((*held)[0].records, 0);
  }
  std::vector<std::string> notes;
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16,
                               [&](NoteLevel, const std::string& text) { notes.push_back(text); });
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->end_offset(), 500);
  EXPECT_FALSE((*w)->fresh());
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("archiving it from offset 500 again"), std::string::npos) << notes[0];
  ArchiveRecord r;
  r.offset = 500;
  r.value = "again";
  ASSERT_TRUE((*w)->Append(r).ok());
  ASSERT_TRUE((*w)->Flush().ok());
  w->reset();
  EXPECT_EQ(Segments(root).size(), 1u);
  EXPECT_EQ(fs::path(Segments(root)[0]).stem().string(), segment_file::SegmentName(500).substr(0, 20));
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, 1);
}

// A bug bash: a segment cut mid-block with no archiver running listed,
// dumped and replayed as a shorter whole one. The range says so, unless a
// writer holds the partition (its block being written).
TEST(ArchiveHolesTest, ATornTailIsToldUnlessAWriterIsThere) {
  ScratchDir dir("archive_holes_torn");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteSkipping(root));
  const auto segments = Segments(root);
  const auto blocks = Blocks(segments.back());
  ASSERT_GE(blocks.size(), 2u);
  fs::resize_file(segments.back(), static_cast<uintmax_t>(blocks.back().at + 70));
  const int64_t end = blocks[blocks.size() - 2].header.last_offset + 1;
  auto ranges = ArchiveRanges(root, "t");
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ((*ranges)[0].end_offset, end);
  EXPECT_NE((*ranges)[0].torn_tail.find(segments.back() + " ends in an incomplete block at byte " +
                                        std::to_string(blocks.back().at) + " (70 bytes)"),
            std::string::npos)
      << (*ranges)[0].torn_tail;
  EXPECT_NE((*ranges)[0].torn_tail.find("up to offset " + std::to_string(end - 1) + "; records after it may be missing"),
            std::string::npos)
      << (*ranges)[0].torn_tail;
  segment_file::PartitionLock lock;
  ASSERT_TRUE(lock.Lock(root + "/t/0", "testing").ok());
  auto held = ArchiveRanges(root, "t");
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ((*held)[0].torn_tail, "");
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
