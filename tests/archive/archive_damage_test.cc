// Damage versus a torn tail, on real files. A torn tail is only an
// incomplete write at the very end of the newest segment (a header or a
// payload shorter than declared): the writer cuts it, a reader stops there.
// A complete block that fails its header or payload checksum, anywhere
// (the last block too), is Corruption naming the file and the byte: never
// cut by the writer, never skipped by a reader or the range listing. An
// archive of the old block format is refused with how to rebuild it.
// Topic names are checked before any path is built; a missing archive root
// is NotFound, not an empty archive.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/archive.h"
#include "archive/archive_repair.h"
#include "archive/record_import.h"
#include "archive/segment_format.h"
#include "tests/archive/owned_record.h"
#include "tests/support/archive_bytes.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using testing::Blocks;
using testing::BlockPos;
using testing::FlipBit;
using testing::ScratchDir;
using namespace segment_format;

std::string Value(int64_t offset) { return "value-" + std::to_string(offset) + std::string(static_cast<size_t>(offset % 200), 'v'); }

// Offsets [0, n) into <root>/t/0, in blocks of ~4 KiB, one segment.
void WriteAll(const std::string& root, int64_t n, ArchiveCompression compression = ArchiveCompression::kLz4) {
  auto w = ArchiveWriter::Open(root, "t", 0, 4096, 64 << 20, {}, compression);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (int64_t o = 0; o < n; ++o) {
    const std::string key = "k" + std::to_string(o % 17);
    const std::string value = Value(o);
    ArchiveRecord r;
    r.offset = o;
    r.timestamp_ms = 1767225600000 + o;
    r.key = key;
    r.value = value;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  ASSERT_TRUE((*w)->Flush().ok());
}

std::string OnlySegment(const std::string& root) {
  std::string segment;
  for (auto& e : std::filesystem::directory_iterator(root + "/t/0")) {
    if (e.path().extension() == ".kseg") segment = e.path().string();
  }
  return segment;
}

struct Damage {
  const char* name;
  bool last_block;
  size_t byte_in_block;  // relative to the block start; >= kHeaderBytes: payload
  ArchiveCompression compression = ArchiveCompression::kLz4;
};

class DamagedBlockTest : public ::testing::TestWithParam<Damage> {};

TEST_P(DamagedBlockTest, IsCorruptionNamingFileAndByteNeverCutNorSkipped) {
  const Damage d = GetParam();
  ScratchDir dir(std::string("archive_damage_") + d.name);
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteAll(root, 3000, d.compression));
  const std::string segment = OnlySegment(root);
  const auto blocks = Blocks(segment);
  ASSERT_GT(blocks.size(), 4u);
  const BlockPos& b = d.last_block ? blocks.back() : blocks[blocks.size() / 2];
  const size_t byte = d.byte_in_block >= kHeaderBytes ? kHeaderBytes + 17 : d.byte_in_block;
  ASSERT_NO_FATAL_FAILURE(FlipBit(segment, b.at + static_cast<int64_t>(byte), 3));
  const auto size = std::filesystem::file_size(segment);
  const std::string where = "byte " + std::to_string(b.at);

  // The reader fails at the block instead of ending there.
  int64_t count = 0;
  Status read = ReadAll(root, &count);
  EXPECT_EQ(read.code(), Status::Code::kCorruption) << read.ToString() << " after " << count << " records";
  EXPECT_NE(read.message().find(segment), std::string::npos) << read.message();
  EXPECT_NE(read.message().find(where), std::string::npos) << read.message();

  // The writer (the archiver's open) refuses, and cuts nothing.
  auto w = ArchiveWriter::Open(root, "t", 0);
  ASSERT_FALSE(w.ok()) << "a damaged block was taken for a torn tail";
  EXPECT_EQ(w.status().code(), Status::Code::kCorruption) << w.status().ToString();
  EXPECT_NE(w.status().message().find(segment), std::string::npos) << w.status().message();
  EXPECT_NE(w.status().message().find(where), std::string::npos) << w.status().message();
  EXPECT_NE(w.status().message().find("--repair"), std::string::npos) << w.status().message();
  EXPECT_EQ(std::filesystem::file_size(segment), size) << "nothing is cut";

  // A damaged header is found by the range listing too (it reads only headers).
  if (d.byte_in_block < kHeaderBytes) {
    auto ranges = ArchiveRanges(root, "t");
    EXPECT_EQ(ranges.status().code(), Status::Code::kCorruption) << ranges.status().ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Blocks, DamagedBlockTest,
    ::testing::Values(Damage{"middle_payload", false, kHeaderBytes}, Damage{"last_payload", true, kHeaderBytes},
                      Damage{"middle_stored_size", false, offsetof(BlockHeader, stored_size) + 1},
                      Damage{"last_stored_size", true, offsetof(BlockHeader, stored_size) + 1},
                      Damage{"middle_record_count", false, offsetof(BlockHeader, record_count)},
                      Damage{"last_last_offset", true, offsetof(BlockHeader, last_offset)},
                      Damage{"last_magic", true, 0},
                      // Uncompressed blocks are read straight into the buffer
                      // records are handed out from: checked all the same.
                      Damage{"middle_payload_uncompressed", false, kHeaderBytes, ArchiveCompression::kNone},
                      Damage{"last_payload_uncompressed", true, kHeaderBytes, ArchiveCompression::kNone},
                      Damage{"middle_stored_size_uncompressed", false, offsetof(BlockHeader, stored_size) + 1,
                             ArchiveCompression::kNone}),
    [](const ::testing::TestParamInfo<Damage>& info) { return std::string(info.param.name); });

TEST(ArchiveDamageTest, ATruncatedLastBlockIsTornAndCut) {
  // Cut inside the header and inside the payload of the last block.
  for (int64_t keep_in_block : {int64_t{10}, static_cast<int64_t>(kHeaderBytes) + 5}) {
    ScratchDir dir("archive_truncated_" + std::to_string(keep_in_block));
    const std::string root = dir.path().string();
    ASSERT_NO_FATAL_FAILURE(WriteAll(root, 3000));
    const std::string segment = OnlySegment(root);
    const auto blocks = Blocks(segment);
    const BlockPos last = blocks.back();
    std::filesystem::resize_file(segment, static_cast<uintmax_t>(last.at + keep_in_block));
    int64_t count = 0;
    Status read = ReadAll(root, &count);
    ASSERT_TRUE(read.ok()) << read.ToString();
    EXPECT_EQ(count, last.header.first_offset) << "the reader ends before the torn block";
    auto w = ArchiveWriter::Open(root, "t", 0);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ((*w)->end_offset(), last.header.first_offset);
    EXPECT_EQ(std::filesystem::file_size(segment), static_cast<uintmax_t>(last.at)) << "the torn block was cut";
  }
}

TEST(ArchiveDamageTest, AnIncompleteBlockInASealedSegmentIsCorruption) {
  ScratchDir dir("archive_sealed_short");
  const std::string root = dir.path().string();
  {
    auto w = ArchiveWriter::Open(root, "t", 0, 4096, 1 << 16);
    ASSERT_TRUE(w.ok());
    for (int64_t o = 0; o < 12000; ++o) {
      const std::string value = Value(o);
      ArchiveRecord r;
      r.offset = o;
      r.value = value;
      ASSERT_TRUE((*w)->Append(r).ok());
    }
    ASSERT_TRUE((*w)->Flush().ok());
  }
  std::vector<std::string> segments;
  for (auto& e : std::filesystem::directory_iterator(root + "/t/0")) {
    if (e.path().extension() == ".kseg") segments.push_back(e.path().string());
  }
  std::sort(segments.begin(), segments.end());
  ASSERT_GE(segments.size(), 2u);
  const auto blocks = Blocks(segments[0]);
  std::filesystem::resize_file(segments[0], static_cast<uintmax_t>(blocks.back().at + 70));
  int64_t count = 0;
  EXPECT_EQ(ReadAll(root, &count).code(), Status::Code::kCorruption);
  EXPECT_EQ(ArchiveRanges(root, "t").status().code(), Status::Code::kCorruption);
  EXPECT_EQ(ArchiveWriter::Open(root, "t", 0).status().code(), Status::Code::kCorruption);
}

TEST(ArchiveDamageTest, AnArchiveOfTheOldFormatIsRefusedSayingHowToUpgradeIt) {
  ScratchDir dir("archive_old_format");
  const std::string root = dir.path().string();
  std::filesystem::create_directories(root + "/t/0");
  const std::string segment = root + "/t/0/00000000000000000000.kseg";
  {
    // A format-1 block header ("KAB1", 48 bytes) and some payload.
    std::string bytes(48 + 64, '\0');
    std::memcpy(bytes.data(), "KAB1", 4);
    const uint32_t codec = 1, raw = 64, stored = 64, count = 1;
    std::memcpy(bytes.data() + 4, &codec, 4);
    std::memcpy(bytes.data() + 8, &raw, 4);
    std::memcpy(bytes.data() + 12, &stored, 4);
    std::memcpy(bytes.data() + 16, &count, 4);
    std::ofstream(segment, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  const auto size = std::filesystem::file_size(segment);
  int64_t count = 0;
  Status read = ReadAll(root, &count);
  EXPECT_EQ(read.code(), Status::Code::kFailedPrecondition) << read.ToString();
  EXPECT_NE(read.message().find("kappa archive -a DIR --upgrade"), std::string::npos) << read.message();
  auto w = ArchiveWriter::Open(root, "t", 0);
  EXPECT_EQ(w.status().code(), Status::Code::kFailedPrecondition) << w.status().ToString();
  EXPECT_NE(w.status().message().find("kappa archive -a DIR --upgrade"), std::string::npos) << w.status().message();
  EXPECT_EQ(std::filesystem::file_size(segment), size);
  auto ranges = ArchiveRanges(root, "t");
  EXPECT_EQ(ranges.status().code(), Status::Code::kFailedPrecondition) << ranges.status().ToString();
}

TEST(ArchiveDamageTest, RepairFindsTheFirstDamagedBlockAndMovesTheTailAside) {
  ScratchDir dir("archive_repair_aside");
  const std::string root = dir.path().string();
  ASSERT_NO_FATAL_FAILURE(WriteAll(root, 3000));
  const std::string segment = OnlySegment(root);
  const auto blocks = Blocks(segment);
  ASSERT_GT(blocks.size(), 4u);
  auto none = FindDamage(root, "t", 0);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());

  const BlockPos& b = blocks[blocks.size() / 2];
  const BlockPos& prev = blocks[blocks.size() / 2 - 1];
  ASSERT_NO_FATAL_FAILURE(FlipBit(segment, b.at + static_cast<int64_t>(kHeaderBytes) + 9, 0));
  const std::string before = testing::ReadFile(segment);
  auto found = FindDamage(root, "t", 0);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->has_value());
  const PartitionDamage& d = **found;
  EXPECT_EQ(d.segment, segment);
  EXPECT_EQ(d.byte, b.at);
  EXPECT_EQ(d.from, prev.header.last_offset + 1);
  EXPECT_EQ(d.damaged_end, b.header.last_offset + 1);
  EXPECT_NE(d.what.find("byte " + std::to_string(b.at)), std::string::npos) << d.what;

  std::vector<std::string> moved;
  ASSERT_TRUE(MoveDamagedTailAside(d, &moved).ok());
  ASSERT_EQ(moved, std::vector<std::string>{segment + ".damaged"});
  EXPECT_EQ(testing::ReadFile(segment + ".damaged"), before.substr(static_cast<size_t>(b.at)));
  EXPECT_EQ(std::filesystem::file_size(segment), static_cast<uintmax_t>(b.at));
  // What remains is whole: the writer resumes at the damaged block's first offset.
  int64_t count = 0;
  ASSERT_TRUE(ReadAll(root, &count).ok());
  EXPECT_EQ(count, b.header.first_offset);
  auto w = ArchiveWriter::Open(root, "t", 0);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->end_offset(), b.header.first_offset);
}

// --repair moves a damaged tail aside in steps (copy it, move the later
// segments aside, cut the damaged segment), and a kill -9 may fall between
// any two. Whatever it leaves, a repair run again must end with the
// partition ending right before the damaged block, so that the refetch
// fills everything after it: never a partition that looks whole but has
// lost the damaged block's records and those after it in its segment.
TEST(ArchiveDamageTest, ARepairKilledAtAnyStepEndsLikeAnUninterruptedOneWhenRunAgain) {
  KAPPA_REQUIRE_TEST_HOOKS();
  ScratchDir dir("archive_repair_killed");
  const std::string pristine = dir / "pristine";
  constexpr int64_t kRecords = 6000;
  {
    auto w = ArchiveWriter::Open(pristine, "t", 0, 4096, 64 << 10, {}, ArchiveCompression::kNone);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (int64_t o = 0; o < kRecords; ++o) {
      const std::string value = Value(o);
      ArchiveRecord r;
      r.offset = o;
      r.timestamp_ms = 1767225600000 + o;
      r.value = value;
      ASSERT_TRUE((*w)->Append(r).ok());
    }
    ASSERT_TRUE((*w)->Flush().ok());
  }
  const auto segments = testing::SegmentFiles(pristine + "/t/0");
  ASSERT_GE(segments.size(), 4u) << "the first segment and at least three after it";
  const auto blocks = Blocks(segments[0]);
  ASSERT_GT(blocks.size(), 4u);
  const BlockPos& b = blocks[blocks.size() / 2];
  ASSERT_NO_FATAL_FAILURE(FlipBit(segments[0], b.at + static_cast<int64_t>(kHeaderBytes) + 9, 0));

  for (const char* kill_at : {"repair-copied-aside:1", "repair-cut:1", "repair-moved-later:1", "repair-moved-later:2"}) {
    SCOPED_TRACE(kill_at);
    const std::string root = dir / (std::string("killed-") + kill_at);
    std::filesystem::copy(pristine, root, std::filesystem::copy_options::recursive);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv("KAPPA_TEST_KILL_AT", kill_at, 1);
      auto found = FindDamage(root, "t", 0);
      std::vector<std::string> moved;
      ::_exit(found.ok() && *found && MoveDamagedTailAside(**found, &moved).ok() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the kill point was never reached";

    // Run again (what `kappa archive --repair` does before it refetches).
    for (int round = 0; round < 3; ++round) {
      auto found = FindDamage(root, "t", 0);
      ASSERT_TRUE(found.ok()) << found.status().ToString();
      if (!*found) break;
      std::vector<std::string> moved;
      ASSERT_TRUE(MoveDamagedTailAside(**found, &moved).ok());
    }
    auto w = ArchiveWriter::Open(root, "t", 0);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ((*w)->end_offset(), b.header.first_offset)
        << "the refetch would start there; anything else leaves a hole or keeps records past the damage";
    w->reset();
    int64_t count = 0;
    ASSERT_TRUE(ReadAll(root, &count).ok());
    EXPECT_EQ(count, b.header.first_offset);
  }
}

TEST(ArchiveDamageTest, TopicNamesFollowKafkasRuleBeforeAnyPathIsBuilt) {
  ScratchDir dir("archive_topic_names");
  const std::string root = dir.path().string();
  for (const std::string& bad : std::vector<std::string>{"../../x", "a/b", "..", ".", "", "bad topic", "x\n", std::string(250, 'a')}) {
    EXPECT_EQ(ArchiveWriter::Open(root, bad, 0).status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_EQ(ArchiveReader::Open(root, bad, 0).status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_EQ(ArchiveRanges(root, bad).status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_EQ(ArchivedPartitions(root, bad).status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_EQ(ImportRecordFile(root + "/none.bin", root, bad).status().code(), Status::Code::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path().parent_path() / "x"));
  EXPECT_TRUE(ArchiveWriter::Open(root, std::string(249, 'a') + "", 0).ok());
  EXPECT_TRUE(ArchiveWriter::Open(root, "Ok.topic_name-1", 0).ok());
}

TEST(ArchiveDamageTest, AMissingArchiveRootIsNotFoundNotEmpty) {
  ScratchDir dir("archive_missing_root");
  const std::string missing = dir / "does-not-exist";
  EXPECT_EQ(ArchiveRanges(missing, "t").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(ArchivedPartitions(missing, "t").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(ArchivedTopics(missing).status().code(), Status::Code::kNotFound);
  const std::string file = dir / "a-file";
  std::ofstream(file) << "x";
  EXPECT_FALSE(ArchiveRanges(file, "t").ok());
  // An existing root without the topic: nothing archived (not an error).
  auto empty = ArchiveRanges(dir.path().string(), "t");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace kappa
