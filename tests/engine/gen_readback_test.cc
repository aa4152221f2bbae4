// Story: `kappa gen` writes the workload to the embedded broker; kcat (a
// client we did not write) and our own consumer both read it back completely,
// with per-partition counts equal to each other and to the partitioning of
// the regenerated records, and the same bytes in the same order.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "engine/base/hash.h"
#include "engine/topic_reader.h"
#include "engine/transaction_generator.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class GenReadbackTest : public BrokerTest {};

std::string RunShell(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

TEST_F(GenReadbackTest, KcatAndOurConsumerReadBackEveryRecord) {
  constexpr int kPartitions = 8;
  CreateTopic("txns", kPartitions);
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "txns", "-n", "50000", "--users", "2000", "--zipf", "0.8",
                      "--seed", "3", "--late-fraction", "0.05", "--duplicate-fraction", "0.02",
                      "--malformed-fraction", "0.01"},
                     &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("50000 records to txns (8 partitions)"), std::string::npos) << out;

  // What should be there: the same records, regenerated in-process.
  GeneratorOptions o;
  o.count = 50000;
  o.users = 2000;
  o.zipf_exponent = 0.8;
  o.seed = 3;
  o.out_of_order_fraction = 0.05;
  o.duplicate_fraction = 0.02;
  o.malformed_fraction = 0.01;
  std::vector<std::vector<std::string>> expected(kPartitions);
  TransactionGenerator gen(o);
  GeneratedRecord r;
  while (gen.Next(&r)) expected[PartitionForKey(r.key, kPartitions)].push_back(r.value);

  // Our consumer.
  std::vector<std::vector<std::string>> got(kPartitions);
  auto summary = ReadTopic(Config(), "txns", [&](const ConsumedRecord& c) {
    got[c.partition].push_back(std::string(c.value));
  });
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->total, 50000);
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(summary->log_start_offsets[p], 0) << "partition " << p << " lost history to retention";
    EXPECT_EQ(got[p].size(), expected[p].size()) << "partition " << p;
    EXPECT_TRUE(got[p] == expected[p]) << "partition " << p << ": bytes or order differ";
  }

  // kcat, Debian's client.
  const std::string kcat = RunShell("timeout 60 kcat -C -b " + bootstrap() + " -t txns -e -q -f '%p\\n'");
  std::map<int, int64_t> kcat_counts;
  int64_t kcat_total = 0;
  for (size_t pos = 0; pos < kcat.size();) {
    size_t nl = kcat.find('\n', pos);
    if (nl == std::string::npos) break;
    ++kcat_counts[std::stoi(kcat.substr(pos, nl - pos))];
    ++kcat_total;
    pos = nl + 1;
  }
  EXPECT_EQ(kcat_total, 50000);
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(kcat_counts[p], static_cast<int64_t>(expected[p].size())) << "partition " << p;
  }
}

TEST_F(GenReadbackTest, FixedPortBrokerIsListedByKcatWithItsTopics) {
  // A free port: bind port 0, note it, release it.
  int port = 0;
  {
    auto probe = EmbeddedBroker::Start({});
    ASSERT_TRUE(probe.ok());
    const std::string& b = (*probe)->bootstrap();
    port = std::stoi(b.substr(b.rfind(':') + 1)) + 1000;
  }
  std::string addr_file = std::string(KAPPA_TEST_TMP) + "/addr." + std::to_string(::getpid());
  std::filesystem::remove(addr_file);
  ChildProcess broker({"broker", "--port", std::to_string(port), "--topic", "orders:6", "--address-file", addr_file},
                      "broker");
  for (int i = 0; i < 100 && !std::filesystem::exists(addr_file); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(std::filesystem::exists(addr_file)) << broker.Stderr();
  const std::string listing = RunShell("timeout 30 kcat -L -b 127.0.0.1:" + std::to_string(port));
  EXPECT_NE(listing.find("topic \"orders\" with 6 partitions"), std::string::npos) << listing;
  EXPECT_NE(listing.find("1 brokers"), std::string::npos) << listing;
  EXPECT_NE(broker.Stderr().find("5 MiB"), std::string::npos) << "the banner says what the broker is";

  // A second broker on the same port fails with a clear message.
  std::string err;
  EXPECT_NE(RunKappa({"broker", "--port", std::to_string(port)}, nullptr, &err), 0);
  EXPECT_NE(err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << err;
  broker.Kill(SIGTERM);
  EXPECT_EQ(broker.WaitFor(10000), 0);
  std::filesystem::remove(addr_file);
}

}  // namespace
}  // namespace kappa::testing
