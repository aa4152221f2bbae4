// `kappa gen --to-archive` for both workloads goes through one writer: each
// generated record lands in PartitionForKey(key) at the next offset of that
// partition, byte for byte, with its event time as the timestamp.
#include "workload/record_file_export.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/record_file.h"
#include "base/hash.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using testing::ScratchDir;

struct Expected {
  int32_t partition;
  int64_t offset;
  int64_t timestamp_ms;
  std::string key;
  std::string value;
};

void ExpectFileHolds(const std::string& path, const std::vector<Expected>& want) {
  auto reader = RecordFileReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  RecordFileEntry e;
  size_t i = 0;
  for (;; ++i) {
    auto more = (*reader)->Next(&e);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    ASSERT_LT(i, want.size());
    EXPECT_EQ(e.partition, want[i].partition) << i;
    EXPECT_EQ(e.record.offset, want[i].offset) << i;
    EXPECT_EQ(e.record.timestamp_ms, want[i].timestamp_ms) << i;
    EXPECT_EQ(e.record.key, want[i].key) << i;
    EXPECT_EQ(e.record.value, want[i].value) << i;
  }
  EXPECT_EQ(i, want.size());
}

TEST(RecordFileExportTest, TransactionsGoToTheirKeysPartitionInOrder) {
  ScratchDir dir("export_transactions");
  GeneratorOptions g;
  g.count = 3000;
  g.seed = 9;
  g.malformed_fraction = 0.05;
  g.duplicate_fraction = 0.05;
  auto summary = WriteEventsToFile(dir / "t.krec", g, 4);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->stats.total, 3000u);
  EXPECT_EQ(summary->partitions, 4);

  TransactionGenerator generator(g);
  GeneratedRecord r;
  std::vector<int64_t> next(4, 0);
  std::vector<Expected> want;
  uint64_t bytes = 0;
  while (generator.Next(&r)) {
    const int32_t p = PartitionForKey(r.key, 4);
    const bool has_time = r.kind == RecordKind::kValid || r.kind == RecordKind::kDuplicate;
    want.push_back({p, next[p]++, has_time ? r.event_time_ms : g.start_time_ms, r.key, r.value});
    bytes += r.key.size() + r.value.size();
  }
  EXPECT_EQ(summary->bytes, bytes);
  ExpectFileHolds(dir / "t.krec", want);
}

TEST(RecordFileExportTest, NexmarkEventsGoToTheirKeysPartitionInOrder) {
  ScratchDir dir("export_nexmark");
  NexmarkOptions n;
  n.count = 2000;
  n.seed = 4;
  auto summary = WriteNexmarkToFile(dir / "n.krec", n, 3);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->nexmark.total, 2000u);

  NexmarkGenerator generator(n);
  NexmarkRecord r;
  std::vector<int64_t> next(3, 0);
  std::vector<Expected> want;
  while (generator.Next(&r)) {
    const int32_t p = PartitionForKey(r.key, 3);
    want.push_back({p, next[p]++, r.event_time_ms, r.key, r.value});
  }
  ExpectFileHolds(dir / "n.krec", want);
}

TEST(RecordFileExportTest, NoPartitionsOrAnUnwritablePathIsAnError) {
  ScratchDir dir("export_errors");
  GeneratorOptions g;
  g.count = 10;
  EXPECT_EQ(WriteEventsToFile(dir / "x.krec", g, 0).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(WriteEventsToFile(dir / "no/such/dir/x.krec", g, 2).status().code(), Status::Code::kIOError);
}

}  // namespace
}  // namespace kappa
