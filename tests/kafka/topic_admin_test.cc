// Creating a topic from several clients at once (kafka/kafka_client.h,
// CreateTopicIfMissing), as the instances of a scaled-out version do with
// their changelog and repartition topics: each caller comes back with the
// topic there and its partition count readable at once. Before the fix, a
// caller whose CreateTopics met TOPIC_ALREADY_EXISTS asked for the count
// before its broker's metadata had the topic, and the instance stopped
// with "does not exist and cannot be created here". Real broker only (the
// embedded one has no CreateTopics).
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kafka/kafka_client.h"
#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using kappa::testing::BrokerTest;

class TopicAdminTest : public BrokerTest {};

TEST_F(TopicAdminTest, ClientsCreatingOneTopicAtOnceAllSeeItAtOnce) {
  if (!real_broker()) GTEST_SKIP() << "the embedded broker has no CreateTopics";
  for (int round = 0; round < 8; ++round) {
    const std::string topic = "created-at-once-" + std::to_string(round);
    std::vector<std::thread> callers;
    std::atomic<int> seen{0};
    std::vector<std::string> errors(4);
    for (int i = 0; i < 4; ++i) {
      callers.emplace_back([&, i] {
        auto client = CreateClient(ClientKind::kProducer, Config(), {});
        if (!client.ok()) {
          errors[i] = client.status().ToString();
          return;
        }
        std::string reason;
        auto created = CreateTopicIfMissing(client->get(), topic, 3, {}, 20000, &reason);
        if (!created.ok()) {
          errors[i] = created.status().ToString();
          return;
        }
        auto count = TopicPartitionCount(client->get(), topic, 10000);
        if (!count.ok()) {
          errors[i] = count.status().ToString();
        } else if (*count == 3) {
          ++seen;
        }
      });
    }
    for (auto& t : callers) t.join();
    for (const std::string& e : errors) EXPECT_EQ(e, "") << topic;
    EXPECT_EQ(seen.load(), 4) << topic;
  }
}

// The first group request on a fresh broker meets a coordinator that is
// not there yet (NOT_COORDINATOR while __consumer_offsets is made and
// loaded); reading a group's committed offsets then (what an exactly_once
// job does as it starts) waits for it within its timeout instead of
// stopping the job. An exactly_once repartitioned job, whose two stages ask
// for two groups at once, stopped with "Broker: Not coordinator".
TEST_F(TopicAdminTest, CommittedOffsetsOnAFreshBrokerWaitForTheCoordinator) {
  if (!real_broker()) GTEST_SKIP() << "the embedded broker's coordinator is there from the start";
  // Eight groups at once, before any other group request reached the broker.
  std::vector<std::string> errors(8);
  std::vector<std::thread> askers;
  for (int g = 0; g < 8; ++g) {
    askers.emplace_back([&, g] {
      PartitionConsumerOptions o;
      o.group = "fresh-group-" + std::to_string(g);
      auto consumer = PartitionConsumer::Create(Config(), std::move(o));
      if (!consumer.ok()) {
        errors[g] = consumer.status().ToString();
        return;
      }
      PartitionList list;
      list.Add("fresh", 0);
      Status st = (*consumer)->Committed(&list, 20000);
      if (!st.ok()) errors[g] = st.ToString();
    });
  }
  for (auto& t : askers) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
}

}  // namespace
}  // namespace kappa
