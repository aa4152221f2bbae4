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
//   - a torn last block (the older archiver killed mid-write, or a damaged
//     size field: format 1 cannot tell) is cut and kept beside the segment
//     as .torn, the complete blocks kept; a block whose payload fails its
//     checksum is carried over as a damaged block, which --repair handles;
//     a damaged header leaves its segment as it is, named with the byte,
//     and every such segment is named, the other partitions upgraded;
//   - an upgraded segment keeps its owner and mode;
//   - a partition an archiver is writing is not touched, nor anything when
//     a topic given has nothing archived; an archiver of a partition with
//     nothing to upgrade is no reason to refuse.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

TEST_F(ArchiveUpgradeTest, ATornTailIsKeptAsideAndDamageIsCarriedOverOrNamed) {
  ScratchDir dir("archive_upgrade_damage");
  // Partition 0's last block cut short: the older archiver killed mid-write.
  {
    const std::string root = CopyFixture(dir, "torn");
    const std::string whole = ReadFile(Segment(root, 0));
    std::filesystem::resize_file(Segment(root, 0), whole.size() - 20);
    std::string out, err;
    ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
    EXPECT_NE(err.find("are an incomplete block"), std::string::npos) << err;
    EXPECT_NE(out.find("1 torn tails kept aside as .torn"), std::string::npos) << out;
    const std::string torn = ReadFile(Segment(root, 0) + ".torn");
    ASSERT_FALSE(torn.empty()) << "the cut bytes are kept";
    EXPECT_EQ(whole.compare(whole.size() - 20 - torn.size(), torn.size(), torn), 0) << "byte for byte";
    const std::string got = Dump(root, 0), want = OldDump(0);
    // The complete blocks, in order: the older kappa's lines up to the torn block's first record.
    ASSERT_FALSE(got.empty());
    EXPECT_LT(got.size(), want.size());
    EXPECT_EQ(want.compare(0, got.size(), got), 0) << "a prefix of the older kappa's records";
    EXPECT_EQ(Dump(root, 1), OldDump(1));
  }
  // A bit flipped inside one of partition 0's payloads: carried over as a
  // damaged block, which today's reader names (and --repair refetches).
  {
    const std::string root = CopyFixture(dir, "damaged-payload");
    std::string bytes = ReadFile(Segment(root, 0));
    bytes[bytes.size() / 2] ^= 0x10;
    { std::ofstream(Segment(root, 0), std::ios::binary | std::ios::trunc) << bytes; }
    std::string out, err;
    ASSERT_EQ(Upgrade(root, &out, &err), 0) << out << err;
    EXPECT_NE(err.find("fails its checksum: carried over as a damaged block"), std::string::npos) << err;
    EXPECT_NE(out.find("1 damaged blocks carried over: run --repair"), std::string::npos) << out;
    EXPECT_EQ(Dump(root, 1), OldDump(1));
    std::string dump;
    EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", "transactions", "--dump", "--partition", "0"}, &dump, &err), 1);
    EXPECT_NE(err.find("payload checksum"), std::string::npos) << err;
    EXPECT_EQ(OldDump(0).compare(0, dump.size(), dump), 0) << "the blocks before it read as they were";
  }
  // A damaged header in each partition: nothing says where the next block
  // starts; each segment is left as it is and named.
  {
    const std::string root = CopyFixture(dir, "damaged-header");
    std::vector<std::string> before;
    for (int p = 0; p < 2; ++p) {
      std::string bytes = ReadFile(Segment(root, p));
      bytes[4] ^= 0x06;  // the first block's codec: 7, no codec there is
      { std::ofstream(Segment(root, p), std::ios::binary | std::ios::trunc) << bytes; }
      before.push_back(bytes);
    }
    std::string out, err;
    ASSERT_EQ(Upgrade(root, &out, &err), 1) << out;
    EXPECT_NE(err.find("2 segment(s) left as they are"), std::string::npos) << err;
    for (int p = 0; p < 2; ++p) {
      EXPECT_NE(err.find(Segment(root, p) + ": the block at byte 0 has an invalid header"), std::string::npos) << err;
      EXPECT_EQ(ReadFile(Segment(root, p)), before[p]) << "a segment left as it is is not rewritten";
      EXPECT_FALSE(std::filesystem::exists(Segment(root, p) + ".upgrading"));
    }
    EXPECT_NE(err.find("truncate -s 0 " + Segment(root, 0)), std::string::npos) << "the way on: " << err;
  }
}

TEST_F(ArchiveUpgradeTest, AnUpgradedSegmentKeepsItsOwnerAndMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "giving a file to another user needs root";
  ScratchDir dir("archive_upgrade_owner");
  const std::string root = CopyFixture(dir, "archive");
  ASSERT_EQ(::chown(Segment(root, 0).c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(Segment(root, 0).c_str(), 0640), 0);
  std::string out, err;
  ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
  struct stat st{};
  ASSERT_EQ(::stat(Segment(root, 0).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
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
  // A topic given that has nothing archived: refused before anything changes.
  const std::string before0 = ReadFile(Segment(root, 0));
  EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", "transactions", "-t", "nosuch", "--upgrade"}, &out, &err), 1);
  EXPECT_NE(err.find("nothing archived for topic nosuch"), std::string::npos) << err;
  EXPECT_EQ(ReadFile(Segment(root, 0)), before0);
  ASSERT_EQ(Upgrade(root, &out, &err), 0) << err;
  EXPECT_EQ(Dump(root), OldDump());
  // Upgraded, an archiver holding a partition is no reason to refuse.
  const int again = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(again, 0);
  ASSERT_EQ(::flock(again, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(Upgrade(root, &out, &err), 0) << err;
  EXPECT_NE(out.find("already in today's format"), std::string::npos) << out;
  ::close(again);
  // Nothing archived there at all: said, not "already in today's format".
  std::filesystem::create_directories(dir / "empty");
  EXPECT_EQ(Upgrade(dir / "empty", &out, &err), 1);
  EXPECT_NE(err.find("nothing archived in"), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
