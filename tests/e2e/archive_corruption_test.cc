// Damage in the log archive, end to end with the real kappa binary and an
// embedded broker per test:
//  - one flipped bit in a complete block (in the middle, or the last block)
//    stops `kappa archive` (naming the file and the byte) and makes
//    `kappa run --archive-only` fail, instead of being cut as a torn tail
//    and the records reported as lost to retention, or a replay ending early
//    with exit 0;
//  - a genuinely torn tail (the file cut mid-block) is still cut and the
//    records fetched again;
//  - `kappa archive --repair` refetches the damaged range while Kafka holds
//    it, and otherwise says exactly which offsets are lost and changes nothing;
//  - bad topic names and a missing archive directory are one clear line;
//  - a partition directory deleted from the end, or a stray one beyond the
//    topic's partitions, stops a replay from the archive alone (it read
//    three partitions of four with exit 0), and `--dump`/`--list` say what
//    is not there instead of printing nothing.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "archive/segment_format.h"
#include "kafka/kafka_client.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/archive_bytes.h"

namespace kappa::testing {
namespace {

namespace fs = std::filesystem;
using segment_format::BlockHeader;
using segment_format::kHeaderBytes;

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

class ArchiveCorruptionTest : public BrokerTest {
 protected:
  void Produce(const std::string& topic, uint64_t count, uint64_t seed) {
    ProduceWorkload(Config(), topic, SmallWorkload(seed, count, 300, 2));
  }

  int Archive(const std::string& root, const std::string& topic, std::string* err,
              std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"archive", "-a", root, "-t", topic, "-b", bootstrap(), "--stop-at-end",
                                     "--status-interval-ms", "0", "--block-kb", "8"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string out;
    return RunKappa(args, &out, err);
  }

  std::string Dump(const std::string& root, const std::string& topic) {
    std::string out, err;
    EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", topic, "--dump"}, &out, &err), 0) << err;
    return out;
  }

  int ReplayArchiveOnly(const ScratchDir& dir, const std::string& root, const std::string& name, std::string* err) {
    SpecOptions o;
    o.sink = name;
    o.state_dir = dir / ("state-" + name);
    std::string out;
    return RunKappa({"run", WriteSpec(dir, name + ".yaml", o), "-b", bootstrap(), "--archive", root, "--archive-only",
                     "--status-interval-ms", "0"},
                    &out, err);
  }
};

TEST_F(ArchiveCorruptionTest, AFlippedBitInAMiddleOrTheLastBlockStopsTheArchiverAndTheReplay) {
  CreateTopic("transactions", 1);
  Produce("transactions", 4000, 1);
  ScratchDir dir("archive_flip");
  std::string err;
  ASSERT_EQ(Archive(dir / "good", "transactions", &err), 0) << err;
  const std::string good_dump = Dump(dir / "good", "transactions");
  ASSERT_EQ(Lines(good_dump), 4000);

  struct Case {
    std::string name;
    bool last;
    size_t byte;  // in the block
  };
  for (const Case& c : {Case{"middle", false, kHeaderBytes + 40},
                        Case{"last", true, offsetof(BlockHeader, stored_size) + 1}}) {
    SCOPED_TRACE(c.name);
    const std::string root = dir / c.name;
    fs::copy(dir / "good", root, fs::copy_options::recursive);
    const auto segments = SegmentFiles(root + "/transactions/0");
    ASSERT_EQ(segments.size(), 1u);
    const auto blocks = Blocks(segments[0]);
    ASSERT_GT(blocks.size(), 4u);
    const BlockPos& b = c.last ? blocks.back() : blocks[blocks.size() / 2];
    ASSERT_NO_FATAL_FAILURE(FlipBit(segments[0], b.at + static_cast<int64_t>(c.byte), 3));
    const auto size = fs::file_size(segments[0]);

    // The archiver refuses to continue, naming the file and the byte, and cuts nothing.
    EXPECT_NE(Archive(root, "transactions", &err), 0) << err;
    EXPECT_NE(err.find(segments[0]), std::string::npos) << err;
    EXPECT_NE(err.find("byte " + std::to_string(b.at)), std::string::npos) << err;
    EXPECT_EQ(err.find("incomplete block"), std::string::npos) << "taken for a torn tail: " << err;
    EXPECT_EQ(err.find("retention"), std::string::npos) << err;
    EXPECT_EQ(fs::file_size(segments[0]), size) << "nothing was cut";

    // A replay of the archive fails instead of ending early with exit 0,
    // and, like --dump, says what brings the records back (the archiver
    // alone did: a bug bash).
    const std::string repair = "`kappa archive -a " + root + " -t transactions -b BROKERS --repair`";
    EXPECT_NE(ReplayArchiveOnly(dir, root, "replay-" + c.name, &err), 0) << err;
    EXPECT_NE(err.find(segments[0]), std::string::npos) << err;
    EXPECT_NE(err.find(repair), std::string::npos) << err;
    std::string out;
    EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", "transactions", "--dump"}, &out, &err), 1) << err;
    EXPECT_NE(err.find(repair), std::string::npos) << err;

    // Kafka still holds every offset: --repair refetches them.
    ASSERT_EQ(RunKappa({"archive", "-a", root, "-t", "transactions", "-b", bootstrap(), "--repair",
                        "--status-interval-ms", "0"},
                       &out, &err), 0) << out << err;
    EXPECT_TRUE(fs::exists(segments[0] + ".damaged")) << out << err;
    EXPECT_EQ(Dump(root, "transactions"), good_dump) << "every record is back, once";
    EXPECT_EQ(ReplayArchiveOnly(dir, root, "repaired-" + c.name, &err), 0) << err;
    // A second repair finds nothing to do.
    ASSERT_EQ(RunKappa({"archive", "-a", root, "-t", "transactions", "-b", bootstrap(), "--repair"}, &out, &err), 0)
        << err;
    EXPECT_NE(out.find("no damage"), std::string::npos) << out;
  }
}

TEST_F(ArchiveCorruptionTest, ATornTailIsStillCutAndRefetched) {
  CreateTopic("transactions", 1);
  Produce("transactions", 4000, 2);
  ScratchDir dir("archive_torn_tail");
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "transactions", &err), 0) << err;
  const std::string good_dump = Dump(dir / "arch", "transactions");
  const auto segments = SegmentFiles(dir / "arch/transactions/0");
  ASSERT_EQ(segments.size(), 1u);
  const auto blocks = Blocks(segments[0]);
  // Mid-payload of the last block, then mid-header.
  int run = 0;
  for (int64_t keep : {static_cast<int64_t>(kHeaderBytes) + 100, int64_t{20}}) {
    fs::resize_file(segments[0], static_cast<uintmax_t>(blocks.back().at + keep));
    // Until the archiver runs again, every reader says the segment is cut
    // (they listed, dumped and replayed it as a shorter whole one, exit 0,
    // no word: a bug bash).
    const std::string torn = segments[0] + " ends in an incomplete block at byte " + std::to_string(blocks.back().at);
    std::string out;
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--list"}, &out, &err), 0) << err;
    EXPECT_NE(err.find("WARNING archive " + torn), std::string::npos) << err;
    EXPECT_NE(err.find("Run `kappa archive` for this topic again"), std::string::npos) << err;
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--dump"}, &out, &err), 0) << err;
    EXPECT_NE(err.find("WARNING archive " + torn), std::string::npos) << err;
    EXPECT_EQ(ReplayArchiveOnly(dir, dir / "arch", "torn-" + std::to_string(run++), &err), 0) << err;
    EXPECT_NE(err.find(torn), std::string::npos) << err;
    EXPECT_NE(err.find("this replay from the archive alone reads transactions[0] up to there"), std::string::npos)
        << err;
    ASSERT_EQ(Archive(dir / "arch", "transactions", &err), 0) << err;
    EXPECT_NE(err.find("incomplete block"), std::string::npos) << err;
    EXPECT_EQ(Dump(dir / "arch", "transactions"), good_dump);
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--list"}, &out, &err), 0) << err;
    EXPECT_EQ(err.find("incomplete block"), std::string::npos) << err;
  }
}

TEST_F(ArchiveCorruptionTest, RepairSaysExactlyWhatIsLostWhenKafkaNoLongerHoldsIt) {
  CreateTopic("transactions", 1);
  Produce("transactions", 4000, 3);
  ScratchDir dir("archive_lost");
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "transactions", &err), 0) << err;
  const auto segments = SegmentFiles(dir / "arch/transactions/0");
  ASSERT_EQ(segments.size(), 1u);
  const auto blocks = Blocks(segments[0]);
  ASSERT_GT(blocks.size(), 4u);
  const BlockPos b = blocks[blocks.size() / 2];
  ASSERT_NO_FATAL_FAILURE(FlipBit(segments[0], b.at + static_cast<int64_t>(kHeaderBytes) + 40, 3));
  const std::string damaged_bytes = ReadFile(segments[0]);

  // More than the embedded broker's 5 MiB: the log start moves past the damaged block.
  Produce("transactions", 80000, 4);
  ASSERT_NO_FATAL_FAILURE(ExpireOldestRecords("transactions", 0));
  auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", "probe"}});
  ASSERT_TRUE(consumer.ok());
  auto marks = QueryWatermarks(consumer->get(), "transactions", 0, 10000);
  ASSERT_TRUE(marks.ok());
  ASSERT_GT(marks->low, b.header.last_offset) << "the broker kept everything; produce more to truncate";

  std::string out;
  EXPECT_NE(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "-b", bootstrap(), "--repair"}, &out, &err),
            0) << out << err;
  const std::string lost = "transactions[0] offsets " + std::to_string(b.header.first_offset) + ".." +
                           std::to_string(b.header.last_offset);
  EXPECT_NE(err.find(lost), std::string::npos) << "wanted '" << lost << "' in: " << err;
  EXPECT_NE(err.find("lost"), std::string::npos) << err;
  EXPECT_NE(err.find(segments[0]), std::string::npos) << err;
  EXPECT_EQ(ReadFile(segments[0]), damaged_bytes) << "the archive is left untouched";
  EXPECT_FALSE(fs::exists(segments[0] + ".damaged"));
}

TEST_F(ArchiveCorruptionTest, BadTopicNamesAndAMissingArchiveAreOneClearLine) {
  ScratchDir dir("archive_bad_input");
  std::ofstream(dir / "records.bin") << "not a record file";
  std::string out, err;
  for (const std::string& topic : {std::string("../../x"), std::string("a/b"), std::string(".."), std::string(250, 't')}) {
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", topic, "--import", dir / "records.bin"}, &out, &err), 2)
        << topic << ": " << err;
    EXPECT_EQ(Lines(err), 1) << err;
    EXPECT_NE(err.find("topic"), std::string::npos) << err;
  }
  EXPECT_FALSE(fs::exists(dir.path().parent_path().parent_path() / "x"));

  EXPECT_EQ(RunKappa({"archive", "-a", dir / "nonexistent", "--list"}, &out, &err), 2) << err;
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find(dir / "nonexistent"), std::string::npos) << err;

  // --archive DIR that does not exist is an error, not an empty archive.
  CreateTopic("transactions", 1);
  EXPECT_NE(ReplayArchiveOnly(dir, dir / "nonexistent", "missing", &err), 0) << err;
  EXPECT_NE(err.find(dir / "nonexistent"), std::string::npos) << err;
}

TEST_F(ArchiveCorruptionTest, APartitionDirectoryDeletedOrStrayStopsAReplayFromTheArchiveAlone) {
  CreateTopic("transactions", 4);
  Produce("transactions", 4000, 3);
  ScratchDir dir("archive_partitions");
  std::string err;
  ASSERT_EQ(Archive(dir / "good", "transactions", &err), 0) << err;
  ASSERT_EQ(ReplayArchiveOnly(dir, dir / "good", "whole", &err), 0) << err;

  fs::copy(dir / "good", dir / "last-gone", fs::copy_options::recursive);
  fs::remove_all(dir / "last-gone/transactions/3");
  EXPECT_EQ(ReplayArchiveOnly(dir, dir / "last-gone", "last-gone", &err), 1) << err;
  EXPECT_NE(err.find("lacks partition 3 of 4 (it holds 0,1,2)"), std::string::npos) << err;

  fs::copy(dir / "good", dir / "stray", fs::copy_options::recursive);
  fs::create_directories(dir / "stray/transactions/7");
  EXPECT_EQ(ReplayArchiveOnly(dir, dir / "stray", "stray", &err), 1) << err;
  EXPECT_NE(err.find("holds partition directory 7, but Kafka's topic had 4 partitions"), std::string::npos) << err;
  // --list counted it as a partition and the archiver went on (a bug bash):
  // the listing says what is wrong, the archiver refuses like the replay.
  {
    std::string out;
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "stray", "-t", "transactions", "--list"}, &out, &err), 1) << err;
    EXPECT_NE(err.find("holds partition directory 7"), std::string::npos) << err;
    EXPECT_NE(out.find("transactions[3]: offsets"), std::string::npos) << out;
    EXPECT_EQ(RunKappa({"archive", "-a", dir / "last-gone", "-t", "transactions", "--list"}, &out, &err), 1) << err;
    EXPECT_NE(err.find("lacks partition 3 of 4"), std::string::npos) << err;
    EXPECT_EQ(Archive(dir / "stray", "transactions", &err), 1) << err;
    EXPECT_NE(err.find("holds partition directory 7, but Kafka's topic has 4 partitions: move "), std::string::npos)
        << err;
  }

  // --dump of a partition that is not there, and its bad numbers, are errors.
  std::string out;
  EXPECT_EQ(RunKappa({"archive", "-a", dir / "good", "-t", "transactions", "--dump", "-p", "9"}, &out, &err), 1);
  EXPECT_NE(err.find("no partition 9 of transactions is archived"), std::string::npos) << err;
  EXPECT_EQ(out, "");
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{{"-p", "-7"}, {"--from", "-5"}}) {
    std::vector<std::string> args = {"archive", "-a", dir / "good", "-t", "transactions", "--dump"};
    args.insert(args.end(), bad.begin(), bad.end());
    EXPECT_EQ(RunKappa(args, &out, &err), 2) << bad[0] << " " << bad[1] << ": " << err;
    EXPECT_NE(err.find("must not be negative"), std::string::npos) << err;
  }
  // --list of an archive directory that holds nothing says so.
  fs::create_directories(dir / "empty");
  EXPECT_EQ(RunKappa({"archive", "-a", dir / "empty", "--list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("nothing archived in"), std::string::npos) << out;
}

}  // namespace
}  // namespace kappa::testing
