// Creating a topic from several clients at once (kafka/kafka_client.h,
// CreateTopicIfMissing), as the instances of a scaled-out version do with
// their changelog and repartition topics: each caller comes back with the
// topic there and its partition count readable at once. Before the fix, a
// caller whose CreateTopics met TOPIC_ALREADY_EXISTS asked for the count
// before its broker's metadata had the topic, and the instance stopped
// with "does not exist and cannot be created here". Real broker only (the
// embedded one has no CreateTopics).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

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

// The ends of a topic with a transaction open (real broker only: the
// embedded broker keeps no last stable offset). A read_committed client is
// told the last stable offset, which stops before the open transaction;
// a client from CreateReadUncommittedClient sees the log end, even when the user's
// properties ask for read_committed. A repartitioned exactly_once job's
// stage 2 waits for the two to meet before it takes the ends as final
// (without that, CI saw it stop before the last transaction's records).
// A leader that moves (or a topic just created whose leaders the client has
// not learnt) answers NOT_LEADER_FOR_PARTITION or LEADER_NOT_AVAILABLE for a
// moment, which librdkafka hands back as is: a scaled-out job's first start
// stopped on its new changelog topic that way, 4 times in 16 (a bug bash on
// a real Kafka). The offsets are asked again.
TEST_F(TopicAdminTest, ReadingOffsetsWaitsOutALeaderThatMoves) {
  if (real_broker()) GTEST_SKIP() << "needs the embedded broker's injected errors";
  CreateTopic("leader-moving", 1);
  auto client = CreateClient(ClientKind::kProducer, Config(), {});
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(QueryWatermarks(client->get(), "leader-moving", 0, 10000).ok());
  rd_kafka_mock_push_request_errors(broker_->mock_cluster(), 2 /* ListOffsets */, 3,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  auto marks = QueryWatermarks(client->get(), "leader-moving", 0, 10000);
  EXPECT_TRUE(marks.ok()) << marks.status().ToString();
}

TEST_F(TopicAdminTest, AnOpenTransactionHidesTheLogEndFromReadCommittedOnly) {
  if (!real_broker()) GTEST_SKIP() << "the embedded broker has no last stable offset";
  CreateTopic("half-written", 1);
  auto producer = CreateClient(ClientKind::kProducer, Config(), {{"transactional.id", "half-written-tx"}});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  rd_kafka_t* rk = producer->get();
  auto ok = [](rd_kafka_error_t* e) {
    const std::string what = e ? rd_kafka_error_string(e) : "";
    if (e) rd_kafka_error_destroy(e);
    return what;
  };
  ASSERT_EQ(ok(rd_kafka_init_transactions(rk, 30000)), "");
  ASSERT_EQ(ok(rd_kafka_begin_transaction(rk)), "");
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("half-written"), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_VALUE(const_cast<char*>("v"), 1), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  KafkaConfig committed_only = Config();
  committed_only.properties.emplace_back("isolation.level", "read_committed");
  auto reader = CreateClient(ClientKind::kConsumer, committed_only, {});
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto stable = QueryAllWatermarks(reader->get(), "half-written", 1, 10000);
  ASSERT_TRUE(stable.ok()) << stable.status().ToString();
  EXPECT_EQ((*stable)[0].high, 0) << "the last stable offset stops before the open transaction";
  auto uncommitted = CreateReadUncommittedClient(committed_only);
  ASSERT_TRUE(uncommitted.ok()) << uncommitted.status().ToString();
  auto all = QueryAllWatermarks(uncommitted->get(), "half-written", 1, 10000);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ((*all)[0].high, 5) << "the log end includes the open transaction's records";

  ASSERT_EQ(ok(rd_kafka_commit_transaction(rk, 30000)), "");
  // The commit's marker is one more offset; the last stable offset reaches
  // the log end once the broker has written it.
  int64_t lso = 0;
  for (int i = 0; i < 200 && lso != 6; ++i) {
    auto again = QueryAllWatermarks(reader->get(), "half-written", 1, 10000);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    lso = (*again)[0].high;
    if (lso != 6) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(lso, 6);
  auto after = QueryAllWatermarks(uncommitted->get(), "half-written", 1, 10000);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ((*after)[0].high, 6);
}

}  // namespace
}  // namespace kappa
