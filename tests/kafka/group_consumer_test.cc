// A consumer-group member (kafka/partition_consumer.h, Subscribe) on the
// embedded broker: members closed at every moment of their first join,
// before and after their first assignment, close cleanly and promptly. librdkafka before 2.3.0
// (Debian's is 2.0.2) asserts in rd_kafka_destroy for such a
// cooperative-sticky member (its assignor state is still null: librdkafka
// issue #4312); a scaled-out kappa instance stopped while its group was
// still rebalancing died with SIGABRT (once, in the repartition story's
// scale-out on a real Kafka). This story did not hit that window in 60
// rounds on either broker before the fix, so it guards the close, not the
// race; the fix is in ~PartitionConsumer.
#include "kafka/partition_consumer.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "kafka/kafka_client.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using kappa::testing::BrokerTest;

class GroupConsumerTest : public BrokerTest {
 protected:
  std::unique_ptr<PartitionConsumer> Member() {
    PartitionConsumerOptions o;
    o.group = "g";
    o.group_member = true;
    o.session_timeout_ms = 6000;
    o.close_timeout_ms = 5000;
    auto c = PartitionConsumer::Create(Config(), std::move(o));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }
  // Reads what it is given from offset 0 (the topic is empty).
  static Status FromStart(RebalanceEvent event, const std::vector<int32_t>&, std::vector<int64_t>* offsets) {
    if (event != RebalanceEvent::kAssign) return Status::OK();  // offsets: only given on kAssign
    for (int64_t& o : *offsets) o = 0;
    return Status::OK();
  }
};

TEST_F(GroupConsumerTest, AMemberClosedBeforeItsFirstAssignmentClosesCleanly) {
  CreateTopic("t", 2);
  auto first = Member();
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->Subscribe("t", FromStart).ok());
  MessageBatch batch;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (first->assigned().empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the first member got no partitions";
    Status polled = first->Poll(10, 100, &batch);
    ASSERT_TRUE(polled.ok()) << polled.ToString();
    batch.Clear();
  }
  // The first member keeps polling (the group's rebalances complete); a
  // second one joins and is closed after 0, 5, 10, ... ms: some of those
  // closes fall between its JoinGroup and its first assignment.
  std::atomic<bool> done{false};
  std::thread poller([&] {
    MessageBatch b;
    while (!done.load()) {
      (void)first->Poll(10, 20, &b);
      b.Clear();
    }
  });
  for (int round = 0; round < 20; ++round) {
    auto second = Member();
    ASSERT_NE(second, nullptr);
    ASSERT_TRUE(second->Subscribe("t", FromStart).ok());
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5 * round);
    do {
      Status polled = second->Poll(10, 1, &batch);
      ASSERT_TRUE(polled.ok()) << polled.ToString();
      batch.Clear();
    } while (std::chrono::steady_clock::now() < until);
    second.reset();  // librdkafka 2.0.2 without the fix: SIGABRT in some rounds
  }
  done.store(true);
  poller.join();
}

}  // namespace
}  // namespace kappa
