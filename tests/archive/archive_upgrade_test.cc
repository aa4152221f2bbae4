// `kappa archive --upgrade` on an archive the older kappa really wrote
// (testdata/format1: block format 1, made by kappa at dd52cab, with that
// kappa's own --dump of it). This kappa refused such an archive with no way
// on but Kafka still holding the history, which is what an archive is kept
// for when it no longer does (a bug bash): the upgrade rewrites it in place,
// every record kept, and each story below checks the records against the
// older kappa's dump:
//   - upgraded, the archive reads back exactly as the older kappa read it,
//     and a second upgrade changes nothing;
//   - killed (kill -9) between a segment's copy and its rename, or after
//     the rename, a second run finishes it, the records the same;
//   - a torn last block (the older archiver killed mid-write) is left out,
//     said, and the complete blocks kept; a block failing its checksum is
//     named with its file and byte, its segment left untouched, and the
//     other partition upgraded;
//   - a partition an archiver is writing is not touched.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

const std::string kFixture = std::string(KAPPA_SOURCE_DIR) + "/tests/archive/testdata/format1";

class ArchiveUpgradeTest : public ::testing::Test {
 protected:
  // A copy of the older kappa's archive under the test's scratch dir.
  std::string CopyFixture(const ScratchDir& dir, const std::string& name) {
    const std::string root = dir / name;
    std::filesystem::create_directories(root);
    std::filesystem::copy(kFixture + "/transactions", root + "/transactions", std::filesystem::copy_options::recursive);
    return root;
  }
  static std::string Segment(const std::string& root, int partition) {
    return root + "/transactions/" + std::to_string(partition) + "/00000000000000000000.kseg";
  }
  // This kappa's --dump of one partition (or all with -1).
  static std::string Dump(const std::string& root, int partition = -1) {
    std::string out, err;
    std::vector<std::string> args = {"archive", "-a", root, "-t", "transactions", "--dump"};
    if (partition >= 0) args.insert(args.end(), {"--partition", std::to_string(partition)});
    EXPECT_EQ(RunKappa(args, &out, &err), 0) << err;
    return out;
  }
  // The older kappa's dump, or its lines of one partition.
  static std::string OldDump(int partition = -1) {
    std::ifstream in(kFixture + "/dump.jsonl");
    std::string line, out;
    const std::string mine = "{\"partition\":" + std::to_string(partition) + ",";
    while (std::getline(in, line)) {
      if (partition < 0 || line.rfind(mine, 0) == 0) out += line + "\n";
    }
    return out;
  }
  static int Upgrade(const std::string& root, std::string* out, std::string* err) {
    return RunKappa({"archive", "-a", root, "--upgrade"}, out, err);
  }
};

TEST_F(ArchiveUpgradeTest, AnOlderKappasArchiveIsUpgradedInPlaceWithEveryRecord) {
  ScratchDir dir("archive_upgrade");
  const std::string root = CopyFixture(dir, "archive");
  const std::string old_dump = OldDump();
  ASSERT_EQ(std::count(old_dump.begin(), old_dump.end(), '\n'), 200) << "the fixture's dump";

  // Refused as it is, naming the way on.
  std::string out, err;
  ASSERT_EQ(RunKappa({"archive", "-a", root, "--list"}, &out, &err), 1);
  EXPECT_NE(err.find("is of block format 1"), std::string::npos) << err;
  EXPECT_NE(err.find("kappa archive -a DIR --upgrade"), std::string::npos) << err;

  ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
  EXPECT_NE(out.find("upgraded 2 segments"), std::string::npos) << out;
  EXPECT_NE(out.find("(200 records)"), std::string::npos) << out;
  EXPECT_EQ(Dump(root), OldDump()) << "the records, as the older kappa read them";
  ASSERT_EQ(RunKappa({"archive", "-a", root, "--list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("transactions: 2 partitions, 200 records"), std::string::npos) << out;

  // Again: nothing to do, nothing changed.
  const std::string before = ReadFile(Segment(root, 0));
  ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
  EXPECT_NE(out.find("already in today's format (2 segments)"), std::string::npos) << out;
  EXPECT_EQ(ReadFile(Segment(root, 0)), before);
  EXPECT_FALSE(std::filesystem::exists(Segment(root, 0) + ".upgrading"));
}

TEST_F(ArchiveUpgradeTest, AKilledUpgradeRunAgainFinishesWithTheSameRecords) {
  ScratchDir dir("archive_upgrade_killed");
  for (const char* kill_at : {"upgrade-written:1", "upgrade-renamed:1", "upgrade-written:2"}) {
    SCOPED_TRACE(kill_at);
    const std::string root = CopyFixture(dir, std::string("killed-") + kill_at);
    ::setenv("KAPPA_TEST_KILL_AT", kill_at, 1);
    std::string out, err;
    const int rc = Upgrade(root, &out, &err);
    ::unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << "the kill point was never reached: " << out << err;
    ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
    EXPECT_NE(out.find("upgraded"), std::string::npos) << out;
    EXPECT_EQ(Dump(root), OldDump());
    EXPECT_FALSE(std::filesystem::exists(Segment(root, 0) + ".upgrading"));
  }
}

TEST_F(ArchiveUpgradeTest, ATornTailIsLeftOutAndADamagedBlockIsNamedWithItsSegmentUntouched) {
  ScratchDir dir("archive_upgrade_damage");
  // Partition 0's last block cut short: the older archiver killed mid-write.
  {
    const std::string root = CopyFixture(dir, "torn");
    const auto size = std::filesystem::file_size(Segment(root, 0));
    std::filesystem::resize_file(Segment(root, 0), size - 20);
    std::string out, err;
    ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
    EXPECT_NE(err.find("leaving out"), std::string::npos) << err;
    EXPECT_NE(err.find("incomplete block at the tail"), std::string::npos) << err;
    const std::string got = Dump(root, 0), want = OldDump(0);
    // The complete blocks, in order: the older kappa's lines up to the torn block's first record.
    ASSERT_FALSE(got.empty());
    EXPECT_LT(got.size(), want.size());
    EXPECT_EQ(want.compare(0, got.size(), got), 0) << "a prefix of the older kappa's records";
    EXPECT_EQ(Dump(root, 1), OldDump(1));
  }
  // A bit flipped inside partition 0's payloads: damage, named; the segment
  // stays as it was; partition 1 is upgraded.
  {
    const std::string root = CopyFixture(dir, "damaged");
    std::string bytes = ReadFile(Segment(root, 0));
    bytes[bytes.size() / 2] ^= 0x10;
    { std::ofstream(Segment(root, 0), std::ios::binary | std::ios::trunc) << bytes; }
    std::string out, err;
    ASSERT_EQ(Upgrade(root, &out, &err), 1) << out;
    EXPECT_NE(err.find(Segment(root, 0)), std::string::npos) << err;
    EXPECT_NE(err.find("the block at byte"), std::string::npos) << err;
    EXPECT_NE(err.find("damage"), std::string::npos) << err;
    EXPECT_EQ(ReadFile(Segment(root, 0)), bytes) << "a damaged segment is never rewritten";
    EXPECT_FALSE(std::filesystem::exists(Segment(root, 0) + ".upgrading"));
    EXPECT_EQ(Dump(root, 1), OldDump(1));
  }
}

TEST_F(ArchiveUpgradeTest, APartitionAnArchiverHoldsIsNotTouched) {
  ScratchDir dir("archive_upgrade_locked");
  const std::string root = CopyFixture(dir, "archive");
  const std::string lock_path = root + "/transactions/1/LOCK";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string before = ReadFile(Segment(root, 1));
  std::string out, err;
  EXPECT_EQ(Upgrade(root, &out, &err), 1);
  EXPECT_NE(err.find("is being written by another process"), std::string::npos) << err;
  EXPECT_EQ(ReadFile(Segment(root, 1)), before);
  ::close(fd);
  ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
  EXPECT_EQ(Dump(root), OldDump());
}

}  // namespace
}  // namespace kappa::testing
