// PartitionConsumer::Seek (kafka/partition_consumer.h) on the embedded
// broker. librdkafka before 2.1.0 (Debian's is 2.0.2) waited a thousandth
// of rd_kafka_seek_partitions' timeout (librdkafka #4230): a 10 s seek gave
// up after 10 ms, and a scaled-out job switching from the archive to Kafka
// on a loaded machine stopped with "Timed out waiting for 1 remaining
// partition seek(s) to finish". Seeking many partitions at once on one
// broker thread takes longer than 10 ms, so this story sees the short wait.
#include "kafka/partition_consumer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kafka/kafka_client.h"
#include "kafka/partition_list.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using kappa::testing::BrokerTest;

class PartitionConsumerTest : public BrokerTest {};

TEST_F(PartitionConsumerTest, SeekingManyPartitionsAtOnceWaitsForEveryOne) {
  constexpr int kPartitions = 500;
  CreateTopic("many", kPartitions);
  PartitionConsumerOptions o;
  o.group = "seek";
  auto consumer = PartitionConsumer::Create(Config(), std::move(o));
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  PartitionList assignment(kPartitions);
  for (int p = 0; p < kPartitions; ++p) assignment.Add("many", p, 0);
  ASSERT_TRUE((*consumer)->Assign(assignment).ok());
  MessageBatch batch;
  ASSERT_TRUE((*consumer)->Poll(10, 100, &batch).ok());
  batch.Clear();
  // The machine is busy (as CI is, running tests side by side): threads that
  // spin keep librdkafka's broker thread waiting for a core.
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  for (unsigned i = 0; i < 4 * std::max(1u, std::thread::hardware_concurrency()); ++i) {
    hogs.emplace_back([&stop] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  }
  for (int round = 0; round < 5; ++round) {
    PartitionList seek(kPartitions);
    for (int p = 0; p < kPartitions; ++p) seek.Add("many", p, 0);
    const auto start = std::chrono::steady_clock::now();
    Status st = (*consumer)->Seek(seek);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    EXPECT_TRUE(st.ok()) << "round " << round << ", after " << ms.count() << " ms: " << st.ToString();
  }
  stop = true;
  for (auto& t : hogs) t.join();
}

}  // namespace
}  // namespace kappa
