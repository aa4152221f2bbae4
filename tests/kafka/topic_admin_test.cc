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

}  // namespace
}  // namespace kappa
