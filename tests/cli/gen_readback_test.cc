// Story: `kappa gen` (the real binary) writes 50,000 records of the workload
// into an 8-partition topic of the embedded broker. Nothing was dropped by the
// broker's retention; kcat (a client we did not write), our own consumer and
// `kappa consume` all read back every record, with per-partition counts equal
// to each other and to the partitioning of the same records regenerated in
// this process; the keys, sizes and bytes come back in produce order.
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "base/hash.h"
#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "workload/transaction_generator.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

constexpr int kPartitions = 8;
constexpr uint64_t kCount = 50000;

struct Record {
  std::string key;
  std::string value;
};

class GenReadbackTest : public BrokerTest {};

TEST_F(GenReadbackTest, KcatOurConsumerAndKappaConsumeReadBackEveryRecord) {
  const std::string topic = "transactions";
  CreateTopic(topic, kPartitions);
  // --users/--zipf keep the busiest partition well under the broker's 5 MiB.
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", topic, "-n", std::to_string(kCount), "--users", "2000",
                      "--zipf", "0.8", "--seed", "3", "--late-fraction", "0.05", "--duplicate-fraction", "0.02",
                      "--malformed-fraction", "0.01"},
                     &out, &err),
            0)
      << err;

  // What should be there: the same records regenerated in-process, each in
  // the partition its key hashes to, in generation order.
  GeneratorOptions o;
  o.count = kCount;
  o.users = 2000;
  o.zipf_exponent = 0.8;
  o.seed = 3;
  o.out_of_order_fraction = 0.05;
  o.duplicate_fraction = 0.02;
  o.malformed_fraction = 0.01;
  std::vector<std::vector<Record>> expected(kPartitions);
  TransactionGenerator gen(o);
  GeneratedRecord r;
  while (gen.Next(&r)) expected[PartitionForKey(r.key, kPartitions)].push_back({r.key, r.value});
  const auto& s = gen.stats();
  ASSERT_GT(s.duplicates, 0u);
  ASSERT_GT(s.malformed(), 0u);

  // The summary reports what was generated.
  EXPECT_NE(out.find("50000 records to transactions (8 partitions)"), std::string::npos) << out;
  EXPECT_NE(out.find("duplicates " + std::to_string(s.duplicates) + ", malformed " + std::to_string(s.malformed())),
            std::string::npos)
      << out;

  // First: nothing fell off the start of a partition, every record landed.
  {
    auto consumer = CreateClient(ClientKind::kConsumer, Config(), {});
    ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
    auto marks = QueryAllWatermarks(consumer->get(), topic, kPartitions, 10000);
    ASSERT_TRUE(marks.ok()) << marks.status().ToString();
    for (int p = 0; p < kPartitions; ++p) {
      EXPECT_EQ((*marks)[p].low, 0) << "partition " << p << " lost history to the broker's retention";
      EXPECT_EQ((*marks)[p].high, static_cast<int64_t>(expected[p].size())) << "partition " << p;
    }
  }

  // Our consumer: the same bytes, in the same order, at offsets 0, 1, 2...
  std::vector<std::vector<Record>> got(kPartitions);
  int64_t offset_gaps = 0;
  auto summary = ReadTopic(Config(), topic, [&](const ConsumedRecord& c) {
    offset_gaps += c.offset != static_cast<int64_t>(got[c.partition].size());
    got[c.partition].push_back({std::string(c.key), std::string(c.value)});
  });
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->total, static_cast<int64_t>(kCount));
  EXPECT_EQ(offset_gaps, 0);
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_EQ(got[p].size(), expected[p].size()) << "partition " << p;
    EXPECT_EQ(summary->records_per_partition[p], static_cast<int64_t>(expected[p].size())) << "partition " << p;
    for (size_t i = 0; i < got[p].size(); ++i) {
      ASSERT_EQ(got[p][i].key, expected[p][i].key) << "partition " << p << " offset " << i;
      ASSERT_EQ(got[p][i].value, expected[p][i].value) << "partition " << p << " offset " << i;
    }
  }

  // kcat: one line per record, partition, offset, key and value size.
  const std::string kcat =
      RunShell("timeout 60 kcat -C -b " + bootstrap() + " -t " + topic + " -e -q -f '%p %o %k %S\\n'");
  std::vector<std::vector<std::pair<std::string, size_t>>> kcat_records(kPartitions);
  std::istringstream lines(kcat);
  std::string line;
  uint64_t kcat_total = 0;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    int partition = -1;
    int64_t offset = -1;
    std::string key;
    size_t size = 0;
    ASSERT_TRUE(fields >> partition >> offset >> key >> size) << "kcat line: " << line;
    ASSERT_TRUE(partition >= 0 && partition < kPartitions) << line;
    ASSERT_EQ(offset, static_cast<int64_t>(kcat_records[partition].size())) << line;
    kcat_records[partition].emplace_back(key, size);
    ++kcat_total;
  }
  EXPECT_EQ(kcat_total, kCount);
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_EQ(kcat_records[p].size(), got[p].size()) << "kcat and our consumer disagree on partition " << p;
    for (size_t i = 0; i < kcat_records[p].size(); ++i) {
      ASSERT_EQ(kcat_records[p][i].first, expected[p][i].key) << "partition " << p << " offset " << i;
      ASSERT_EQ(kcat_records[p][i].second, expected[p][i].value.size()) << "partition " << p << " offset " << i;
    }
  }

  // `kappa consume` reports the same counts.
  ASSERT_EQ(RunKappa({"consume", "-b", bootstrap(), "-t", topic}, &out, &err), 0) << err;
  EXPECT_NE(out.find("transactions: 50000 records"), std::string::npos) << out;
  for (int p = 0; p < kPartitions; ++p) {
    const std::string expected_line = "partition " + std::to_string(p) + ": " + std::to_string(expected[p].size()) +
                                      " records (log start offset 0)";
    EXPECT_NE(out.find(expected_line), std::string::npos) << expected_line << "\n" << out;
  }
}

}  // namespace
}  // namespace kappa::testing
