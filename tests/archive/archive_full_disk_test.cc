// The archive on a file system that fills up (a small tmpfs of the test's
// own). The writer: the write that runs out of space is an IOError that
// says what to do, the segment is left ending on a complete block (no
// fragment of the failed block), and once space is freed the same writer
// writes that block whole and goes on, so the partition reads back every
// record once, in order; the same when a new segment cannot be created (no
// inode left). --repair: without room to copy a damaged tail aside it
// changes nothing and leaves no partial copy. Needs root (mount); skipped
// with the reason otherwise.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/archive.h"
#include "archive/archive_repair.h"
#include "archive/segment_format.h"
#include "archive/segment_file.h"
#include "tests/archive/owned_record.h"
#include "tests/support/archive_bytes.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using testing::ScratchDir;
using testing::SmallFileSystem;

Owned Make(int64_t offset) {
  Owned o;
  o.offset = offset;
  o.timestamp_ms = 1767225600000 + offset;
  o.key = "user-" + std::to_string(offset % 97);
  o.value = std::string(100 + static_cast<size_t>(offset % 157), static_cast<char>('a' + offset % 26));
  if (offset % 3 == 0) o.headers = {{"h", std::to_string(offset)}};
  return o;
}

// Appends Make(from), Make(from + 1), ... below `end` until one fails, and
// that error; `all` gets every record the writer took (a failed Append may
// have taken its record: end_offset says so).
Status AppendUntilAnError(ArchiveWriter& w, int64_t from, int64_t end, std::vector<Owned>* all) {
  for (int64_t o = from; o < end; ++o) {
    Owned r = Make(o);
    Status st = w.Append(View(r));
    if (w.end_offset() > o) all->push_back(std::move(r));
    if (!st.ok()) return st;
  }
  return Status::OK();
}

// A file of `bytes` allocated bytes at `path`: the disk fills up.
void Fill(const std::string& path, int64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::posix_fallocate(fd, 0, bytes), 0);
  ::close(fd);
}

// Every segment of t/0 under `root` ends on a complete block.
void ExpectNoFragment(const std::string& root) {
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(root) / "t" / "0")) {
    if (e.path().extension() != ".kseg") continue;
    auto scan = segment_file::ScanSegment(e.path().string(), /*verify_payloads=*/true);
    ASSERT_TRUE(scan.ok()) << scan.status().ToString();
    EXPECT_FALSE(scan->damaged) << e.path();
    EXPECT_FALSE(scan->torn_tail) << e.path() << ": " << scan->file_bytes - scan->valid_bytes
                                  << " bytes of a block that failed to write are left at the tail";
  }
}

TEST(ArchiveFullDiskTest, AWriteThatRunsOutOfSpaceLeavesNoFragmentAndTheBlockIsWrittenWholeOnceSpaceIsFreed) {
  ScratchDir dir("archive_full_disk");
  const std::string mnt = dir / "small-fs";
  SmallFileSystem small(mnt, "size=2m");
  if (!small.mounted()) GTEST_SKIP() << small.why();
  const std::string root = mnt + "/archive";
  auto w = ArchiveWriter::Open(root, "t", 0, 16 << 10, 1 << 20, {}, ArchiveCompression::kNone);
  ASSERT_TRUE(w.ok()) << w.status().ToString();

  // Leave ~150 KiB free, not a whole number of blocks.
  const std::string filler = mnt + "/filler";
  ASSERT_NO_FATAL_FAILURE(Fill(filler, small.FreeBytes() - 150 * 1024 - 1000));

  std::vector<Owned> all;
  const Status failed = AppendUntilAnError(**w, 0, 100000, &all);
  ASSERT_FALSE(failed.ok()) << "the 2 MiB file system never filled up";
  EXPECT_EQ(failed.code(), Status::Code::kIOError);
  EXPECT_NE(failed.message().find("No space left on device"), std::string::npos) << failed.message();
  EXPECT_NE(failed.message().find("free space"), std::string::npos)
      << "a full disk says what to do: " << failed.message();
  ExpectNoFragment(root);

  // Still full: a flush fails the same way and leaves no fragment either.
  const Status again = (*w)->Flush();
  EXPECT_EQ(again.code(), Status::Code::kIOError) << again.ToString();
  ExpectNoFragment(root);

  // Space freed: the same writer writes the pending block whole and goes on.
  std::filesystem::remove(filler);
  ASSERT_TRUE((*w)->Flush().ok());
  for (int64_t o = (*w)->end_offset(), end = o + 300; o < end; ++o) {
    all.push_back(Make(o));
    ASSERT_TRUE((*w)->Append(View(all.back())).ok());
  }
  ASSERT_TRUE((*w)->Flush().ok());
  w->reset();
  ExpectNoFragment(root);

  // Reopened (the recovery scan), then read back: every record once, in order.
  auto reopened = ArchiveWriter::Open(root, "t", 0, 16 << 10, 1 << 20, {}, ArchiveCompression::kNone);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->end_offset(), all.back().offset + 1);
  reopened->reset();
  ExpectReadsBack(root, all);
}

// Out of inodes: the next segment cannot be created. The writer says so,
// keeps the block pending and creates the segment on a later flush.
TEST(ArchiveFullDiskTest, ASegmentThatCannotBeCreatedIsCreatedByALaterFlush) {
  ScratchDir dir("archive_no_inodes");
  const std::string mnt = dir / "small-fs";
  SmallFileSystem small(mnt, "size=16m,nr_inodes=64");
  if (!small.mounted()) GTEST_SKIP() << small.why();
  const std::string root = mnt + "/archive";
  constexpr int64_t kSegment = 64 << 10;
  auto w = ArchiveWriter::Open(root, "t", 0, 8 << 10, kSegment, {}, ArchiveCompression::kNone);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::vector<Owned> all;
  for (int64_t o = 0; o < 100; ++o) {  // the first segment exists
    all.push_back(Make(o));
    ASSERT_TRUE((*w)->Append(View(all.back())).ok());
  }
  ASSERT_TRUE((*w)->Flush().ok());
  // Use up the inodes.
  std::vector<std::string> fillers;
  for (int i = 0; i < 1000; ++i) {
    const std::string f = mnt + "/filler-" + std::to_string(i);
    const int fd = ::open(f.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd < 0) break;
    ::close(fd);
    fillers.push_back(f);
  }
  ASSERT_FALSE(fillers.empty());
  ASSERT_LT(fillers.size(), 1000u) << "the inodes never ran out";

  const Status failed = AppendUntilAnError(**w, 100, 10000, &all);
  ASSERT_FALSE(failed.ok()) << "no second segment was needed";
  EXPECT_NE(failed.message().find("create "), std::string::npos) << failed.message();
  EXPECT_NE(failed.message().find("free space"), std::string::npos) << failed.message();
  EXPECT_FALSE((*w)->Flush().ok()) << "still no inode";

  std::filesystem::remove(fillers.back());
  const Status flushed = (*w)->Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  w->reset();
  ExpectNoFragment(root);
  ExpectReadsBack(root, all);
}

// A read-only archive directory: "open .../LOCK: Read-only file system" and
// nothing more (a bug bash). The message says what to check.
TEST(ArchiveFullDiskTest, AReadOnlyArchiveSaysWhatToCheck) {
  ScratchDir dir("archive_read_only");
  const std::string mnt = dir / "small-fs";
  SmallFileSystem small(mnt, "size=4m");
  if (!small.mounted()) GTEST_SKIP() << small.why();
  std::filesystem::create_directories(mnt + "/archive/t/0");
  ASSERT_EQ(small.Remount("size=4m", /*read_only=*/true), "");
  auto w = ArchiveWriter::Open(mnt + "/archive", "t", 0, 8 << 10, 64 << 10, {}, ArchiveCompression::kNone);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("Read-only file system"), std::string::npos) << w.status().ToString();
  EXPECT_NE(w.status().message().find("that its file system is not read-only, or give --archive another directory"),
            std::string::npos)
      << w.status().ToString();
  ASSERT_EQ(small.Remount("size=4m"), "") << "left read-only";
}

// `kappa archive --repair` moves a damaged tail aside before it refetches:
// when the disk is too full for the copy, the repair fails saying so, the
// partition is left as it was and no partial copy stays behind to pass for
// the damaged tail; with room again it copies the tail whole.
TEST(ArchiveFullDiskTest, ARepairWithoutRoomForTheDamagedTailLeavesThePartitionAsItWasAndNoPartialCopy) {
  ScratchDir dir("archive_repair_full_disk");
  const std::string mnt = dir / "small-fs";
  SmallFileSystem small(mnt, "size=2m");
  if (!small.mounted()) GTEST_SKIP() << small.why();
  const std::string root = mnt + "/archive";
  std::vector<Owned> all;
  {
    auto w = ArchiveWriter::Open(root, "t", 0, 16 << 10, 4 << 20, {}, ArchiveCompression::kNone);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(AppendUntilAnError(**w, 0, 3000, &all).ok());
    ASSERT_TRUE((*w)->Flush().ok());
  }
  const auto segments = testing::SegmentFiles(root + "/t/0");
  ASSERT_EQ(segments.size(), 1u);
  const std::string segment = segments[0];
  const auto blocks = testing::Blocks(segment);
  ASSERT_GT(blocks.size(), 8u);
  const testing::BlockPos& b = blocks[2];
  ASSERT_NO_FATAL_FAILURE(testing::FlipBit(segment, b.at + static_cast<int64_t>(segment_format::kHeaderBytes) + 9, 0));
  const std::string before = testing::ReadFile(segment);
  ASSERT_GT(static_cast<int64_t>(before.size()) - b.at, 200 << 10) << "a damaged tail larger than the room left";

  const std::string filler = mnt + "/filler";
  ASSERT_NO_FATAL_FAILURE(Fill(filler, small.FreeBytes() - 100 * 1024));
  auto found = FindDamage(root, "t", 0);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->has_value());
  std::vector<std::string> moved;
  const Status full = MoveDamagedTailAside(**found, &moved);
  EXPECT_EQ(full.code(), Status::Code::kIOError) << full.ToString();
  EXPECT_NE(full.message().find("No space left on device"), std::string::npos) << full.message();
  EXPECT_TRUE(moved.empty());
  EXPECT_FALSE(std::filesystem::exists(segment + ".damaged")) << "a partial copy of the damaged tail was left";
  EXPECT_EQ(testing::ReadFile(segment), before);

  std::filesystem::remove(filler);
  ASSERT_TRUE(MoveDamagedTailAside(**found, &moved).ok());
  ASSERT_EQ(moved, std::vector<std::string>{segment + ".damaged"});
  EXPECT_EQ(testing::ReadFile(segment + ".damaged"), before.substr(static_cast<size_t>(b.at)));
  EXPECT_EQ(std::filesystem::file_size(segment), static_cast<uintmax_t>(b.at));
}

}  // namespace
}  // namespace kappa
