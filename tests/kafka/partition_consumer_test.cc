// PartitionConsumer (kafka/partition_consumer.h) on the embedded broker.
//
// Seek: librdkafka before 2.1.0 (Debian's is 2.0.2) waited a thousandth
// of rd_kafka_seek_partitions' timeout (librdkafka #4230): a 10 s seek gave
// up after 10 ms, and a scaled-out job switching from the archive to Kafka
// on a loaded machine stopped with "Timed out waiting for 1 remaining
// partition seek(s) to finish". Seeking many partitions at once on one
// broker thread takes longer than 10 ms, so this story sees the short wait.
//
// UnreachableSinceMs: with every broker gone, the log ends a reader knows
// are the last ones it saw; a status line that went on saying "lag 0" told
// an operator the archiver was caught up while nothing could be read. The
// consumer says since when no broker answers, and stops saying it once one
// does. When librdkafka's log named why (a login refused: credentials
// revoked under a running job), it says that too: the status line said "no
// Kafka broker has answered" beside the SASL warning, as if waiting would
// mend it.
#include "kafka/partition_consumer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "base/clock.h"
#include "base/stop_token.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_producer.h"
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

// ReadRecordsAt (a restart's check that the log under its checkpoint is
// the same one) over 32 full partitions: the answered partitions' later
// records filled the consumer's queue and starved the others, so a
// restart after a stop mid-run waited the whole 10 s and resumed the last
// partitions unchecked (a bug bash). Every partition is answered, each
// with the record at its offset.
TEST_F(PartitionConsumerTest, ReadingOneRecordInEachOfManyFullPartitionsAnswersEveryOne) {
  constexpr int kPartitions = 32;
  constexpr int kPerPartition = 3000;
  CreateTopic("full", kPartitions);
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  const std::string pad(400, 'x');
  for (int i = 0; i < kPerPartition; ++i) {
    for (int p = 0; p < kPartitions; ++p) {
      const std::string value = std::to_string(p) + "@" + std::to_string(i) + pad;
      ASSERT_TRUE((*producer)->Produce("full", p, "k", value).ok());
    }
  }
  ASSERT_TRUE((*producer)->Flush(60000).ok());
  std::vector<RecordAtOffset> asks;
  for (int p = 0; p < kPartitions; ++p) {
    RecordAtOffset a;
    a.topic = "full";
    a.partition = p;
    a.offset = 100 + p;
    asks.push_back(a);
  }
  std::string poll_error;
  ASSERT_TRUE(ReadRecordsAt(Config(), "check", &asks, 10000, &poll_error).ok());
  EXPECT_EQ(poll_error, "");
  for (const RecordAtOffset& a : asks) {
    ASSERT_EQ(a.found, RecordAtOffset::Found::kRecord) << "partition " << a.partition << " unread";
    EXPECT_EQ(a.value.substr(0, a.value.find('x')), std::to_string(a.partition) + "@" + std::to_string(a.offset));
  }
}

// A stop asked of the process while the check waits (a record not there
// yet) ends the wait: a SIGTERM during a restart's check went unheeded
// until the check gave up (a bug bash). The record stays unread.
TEST_F(PartitionConsumerTest, ReadingRecordsAtEndsItsWaitWhenTheProcessIsAskedToStop) {
  CreateTopic("empty", 1);
  StopSource stop;
  ProcessStopToken() = StopToken(stop);
  std::thread stopper([&stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stop.RequestStop();
  });
  std::vector<RecordAtOffset> asks(1);
  asks[0].topic = "empty";
  asks[0].partition = 0;
  asks[0].offset = 0;
  const auto start = std::chrono::steady_clock::now();
  std::string poll_error;
  const Status st = ReadRecordsAt(Config(), "check", &asks, 60000, &poll_error);
  const auto waited = std::chrono::steady_clock::now() - start;
  stopper.join();
  ProcessStopToken() = StopToken();
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(asks[0].found, RecordAtOffset::Found::kUnread);
  EXPECT_LT(waited, std::chrono::seconds(30)) << "the stop was not heeded: the whole 60 s wait";
}

// Polls until pred holds or timeout_ms pass; every message is counted.
template <typename Pred>
bool PollUntil(PartitionConsumer& consumer, int timeout_ms, int64_t* received, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  MessageBatch batch;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!consumer.Poll(100, 50, &batch).ok()) return false;
    *received += static_cast<int64_t>(batch.size());
    if (pred()) return true;
  }
  return pred();
}

TEST_F(PartitionConsumerTest, SaysSinceWhenNoBrokerAnswersAndStopsOnceOneDoes) {
  if (real_broker()) GTEST_SKIP() << "takes the embedded broker's brokers down";
  CreateTopic("followed", 2);
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  auto produce = [&](int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE((*producer)->Produce("followed", i % 2, "k", "v").ok());
    ASSERT_TRUE((*producer)->CloseEpoch(30000)(nullptr).ok());
  };
  ASSERT_NO_FATAL_FAILURE(produce(100));
  std::vector<std::string> warnings;
  PartitionConsumerOptions o;
  o.group = "followers";
  o.on_transient = [&](const std::string& w) { warnings.push_back(w); };
  auto consumer = PartitionConsumer::Create(Config(), std::move(o));
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  PartitionList assignment(2);
  assignment.Add("followed", 0, 0);
  assignment.Add("followed", 1, 0);
  ASSERT_TRUE((*consumer)->Assign(assignment).ok());
  int64_t received = 0;
  ASSERT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return received == 100; })) << received;
  EXPECT_EQ((*consumer)->UnreachableSinceMs(), 0);
  // Caught up, as far as the consumer knows.
  EXPECT_EQ((*consumer)->CachedLogEnd("followed", 0) + (*consumer)->CachedLogEnd("followed", 1), 100);

  const int64_t before = WallClockMs();
  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker_->mock_cluster(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return (*consumer)->UnreachableSinceMs() != 0; }))
      << "no broker answers, yet the consumer does not say so";
  EXPECT_GE((*consumer)->UnreachableSinceMs(), before);
  EXPECT_LE((*consumer)->UnreachableSinceMs(), WallClockMs());
  EXPECT_EQ((*consumer)->UnreachableReason(), "") << "a broker that is just away names no cause";
  // The line librdkafka logs when a broker refuses the login (the mock
  // cluster has no SASL: written as the real broker's failure is).
  NoteKafkaLog((*consumer)->handle(), 3, "FAIL",
               "[thrd:sasl_plaintext://127.0.0.1:9094/1]: sasl_plaintext://127.0.0.1:9094/1: SASL authentication "
               "error: Authentication failed: Invalid username or password (after 3ms in state AUTH_REQ)");
  EXPECT_EQ((*consumer)->UnreachableReason(),
            "authentication with Kafka fails: SASL authentication error: Authentication failed: Invalid username or "
            "password");
  // It stays set while the brokers stay down (the probe fails).
  ASSERT_TRUE(PollUntil(**consumer, 2500, &received, [] { return false; }) == false);
  EXPECT_NE((*consumer)->UnreachableSinceMs(), 0);

  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker_->mock_cluster(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return (*consumer)->UnreachableSinceMs() == 0; }))
      << "a broker answers again, yet the consumer still says none does";
  EXPECT_EQ((*consumer)->UnreachableReason(), "");
  // Reachable again, an old failure is no reason for a later outage.
  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker_->mock_cluster(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return (*consumer)->UnreachableSinceMs() != 0; }));
  EXPECT_EQ((*consumer)->UnreachableReason(), "") << "the login failure before the last recovery";
  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker_->mock_cluster(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return (*consumer)->UnreachableSinceMs() == 0; }));
  // And it reads on from where it was.
  ASSERT_NO_FATAL_FAILURE(produce(50));
  EXPECT_TRUE(PollUntil(**consumer, 30000, &received, [&] { return received == 150; })) << received;
  EXPECT_EQ((*consumer)->UnreachableSinceMs(), 0);
}

}  // namespace
}  // namespace kappa
