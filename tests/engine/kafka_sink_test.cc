// KafkaSink on the embedded broker: which aborted exactly-once commits a
// scaled-out job may rewind and redo (LastCommitAborted), and that the
// sink's next epoch commits after such an abort; DLQ and late records, which
// the sink hands to the producer in groups, are all in the broker's log by
// the end of the barrier that follows them, in the order they came.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "engine/kafka_sink.h"
#include "kafka/partition_consumer.h"
#include "tests/engine/engine_test_util.h"

namespace kappa::testing {
namespace {

struct AbortCase {
  rd_kafka_resp_err_t error;  // the group coordinator's answer to the epoch's offsets
  KafkaSink::AbortedCommit expected;
};

class SinkTest : public EngineTest {
 protected:
  // An exactly-once sink reading topic "tx" (one task) under `dir`, and a
  // consumer in its group, whose handle CommitEpoch takes.
  void MakeExactlyOnceSink(const ScratchDir& dir) {
    spec_ = Spec("tx", dir / "state");
    spec_.delivery = DeliveryMode::kExactlyOnce;
    ASSERT_NO_FATAL_FAILURE(MakeTasks(spec_, 1));
    ASSERT_TRUE(sink_->transactional());
    PartitionConsumerOptions options;
    options.group = spec_.ConsumerGroup();
    auto consumer = PartitionConsumer::Create(Config(), options);
    ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
    consumer_ = std::move(*consumer);
  }
  ~SinkTest() override {
    // Before spec_, which they point to.
    owned_.clear();
    tasks_.clear();
    sink_.reset();
  }
  JobSpec spec_;
  std::unique_ptr<PartitionConsumer> consumer_;
};

class AbortedCommitTest : public SinkTest, public ::testing::WithParamInterface<AbortCase> {};

// A rebalance's refusal, and the sequence gap the records an earlier abort
// purged leave behind (seen on a real broker as OUT_OF_ORDER_SEQUENCE_NUMBER
// "skipped sequence numbers" after a rebalance's abort: the instance
// stopped where it could have redone the epoch), are aborted whole and can
// be redone; another abortable refusal stops the job.
TEST_P(AbortedCommitTest, SaysWhetherAnAbortedEpochCanBeRedone) {
  CreateTopic("tx", 1);
  CreateTopic("engine-test-out", 1);
  ScratchDir dir("aborted-commit");
  ASSERT_NO_FATAL_FAILURE(MakeExactlyOnceSink(dir));

  ASSERT_TRUE(sink_->ProduceState("engine-test-out", 0, "k", "epoch 1").ok());
  rd_kafka_mock_push_request_errors(broker_->mock_cluster(), 28 /* TxnOffsetCommit */, 1, GetParam().error);
  Status st = sink_->CommitEpoch(consumer_->handle(), "tx", {{0, 10}});
  ASSERT_FALSE(st.ok()) << "the injected refusal did not reach the commit";
  EXPECT_EQ(sink_->LastCommitAborted(), GetParam().expected) << st.ToString();
  // The warning of an epoch the job redoes itself said "the job stopped ...
  // restart it to resume" while it went on (a bug bash): the cause without it.
  const std::string cause(WithoutRestartAdvice(st.message()));
  EXPECT_EQ(cause.find("restart it"), std::string::npos) << cause;
  EXPECT_NE(cause.find(rd_kafka_err2name(GetParam().error)), std::string::npos) << cause;

  // Aborted, the next transaction open: the redone epoch commits.
  ASSERT_TRUE(sink_->ProduceState("engine-test-out", 0, "k", "epoch 1 again").ok());
  st = sink_->CommitEpoch(consumer_->handle(), "tx", {{0, 10}});
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(sink_->LastCommitAborted(), KafkaSink::AbortedCommit::kNone);
}

INSTANTIATE_TEST_SUITE_P(
    Refusals, AbortedCommitTest,
    ::testing::Values(AbortCase{RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, KafkaSink::AbortedCommit::kRebalance},
                      AbortCase{RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaSink::AbortedCommit::kSequenceGap},
                      AbortCase{RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, KafkaSink::AbortedCommit::kNone}),
    [](const ::testing::TestParamInfo<AbortCase>& info) { return std::string(rd_kafka_err2name(info.param.error)); });

// An input topic deleted mid-run fails the epoch's offsets with
// UNKNOWN_TOPIC_OR_PART, and every restart meets the same: neither the
// deferred commit nor what the sink says after it (the next epoch's commit,
// which the job may reach first: a real-Kafka test said "restart it to
// resume" one run in a few) advises a restart.
TEST_F(SinkTest, ACommitRefusedForADeletedInputTopicSaysSoOnEveryPath) {
  CreateTopic("tx", 1);
  CreateTopic("engine-test-out", 1);
  ScratchDir dir("deleted-input");
  ASSERT_NO_FATAL_FAILURE(MakeExactlyOnceSink(dir));

  ASSERT_TRUE(sink_->ProduceState("engine-test-out", 0, "k", "epoch 1").ok());
  // As a real broker answers, for as long as librdkafka asks again.
  const std::vector<rd_kafka_resp_err_t> unknown(50, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  rd_kafka_mock_push_request_errors_array(broker_->mock_cluster(), 28 /* TxnOffsetCommit */, unknown.size(),
                                          unknown.data());
  auto commit = sink_->CommitEpochLater(consumer_->handle(), "tx", {{0, 10}});
  ASSERT_TRUE(commit);
  const Status deferred = commit();
  ASSERT_FALSE(deferred.ok()) << "the injected refusal did not reach the commit";
  const Status next = sink_->CommitEpoch(consumer_->handle(), "tx", {{0, 20}});
  ASSERT_FALSE(next.ok());
  for (const Status& st : {deferred, next}) {
    EXPECT_NE(st.message().find("the input topic tx does not exist any more"), std::string::npos) << st.ToString();
    EXPECT_EQ(st.message().find("restart it to resume"), std::string::npos) << st.ToString();
  }
}

// The producer's setting `name`, as librdkafka holds it.
std::string ProducerSetting(const KafkaSink& sink, const char* name) {
  char value[64];
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(rd_kafka_conf(sink.handle()), name, value, &size) != RD_KAFKA_CONF_OK) return "";
  return value;
}

// A transaction is open from one checkpoint to the next, and the broker
// aborts one open past transaction.timeout.ms and fences its producer: a
// scaled-out job (timeout 15 s) checkpointing every 30 s was fenced 15-25 s
// in, and a job checkpointing every 170 s (timeout 150 s) at every
// checkpoint, each saying that another process had taken over (a bug
// bash). The timeout is at least twice the interval unless set; a timeout
// set no longer than the interval is refused, and one set below kappa's
// message timeout takes that down with it (librdkafka refused the
// producer on message.timeout.ms, a setting the user never made).
TEST_F(SinkTest, TheTransactionTimeoutOutlastsTheCheckpointInterval) {
  CreateTopic("tx", 1);
  ScratchDir dir("txn-timeout");
  JobSpec spec = Spec("tx", dir / "state");
  spec.delivery = DeliveryMode::kExactlyOnce;
  spec.checkpoint_interval_ms = 5000;
  {
    auto sink = KafkaSink::Create(Config(), spec);
    ASSERT_TRUE(sink.ok()) << sink.status().ToString();
    EXPECT_EQ(ProducerSetting(**sink, "transaction.timeout.ms"), "150000");
  }
  spec.scale_out.enabled = true;
  spec.scale_out.instance = "a";
  spec.checkpoint_interval_ms = 30000;
  {
    auto sink = KafkaSink::Create(Config(), spec);
    ASSERT_TRUE(sink.ok()) << sink.status().ToString();
    EXPECT_EQ(ProducerSetting(**sink, "transaction.timeout.ms"), "60000");
  }
  spec.scale_out.enabled = false;
  spec.checkpoint_interval_ms = 5000;
  KafkaConfig set = Config();
  ASSERT_TRUE(set.AddProperty("transaction.timeout.ms=5000").ok());
  auto refused = KafkaSink::Create(set, spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidArgument) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("transaction.timeout.ms 5000 is not longer than the checkpoint interval"),
            std::string::npos)
      << refused.status().ToString();
  KafkaConfig lower = Config();
  ASSERT_TRUE(lower.AddProperty("transaction.timeout.ms=20000").ok());
  auto sink = KafkaSink::Create(lower, spec);
  ASSERT_TRUE(sink.ok()) << sink.status().ToString();
  EXPECT_EQ(ProducerSetting(**sink, "transaction.timeout.ms"), "20000");
  EXPECT_EQ(ProducerSetting(**sink, "message.timeout.ms"), "20000");
}

// One bad record of `partition` at `offset`: its key says which.
struct BadRecord {
  explicit BadRecord(int64_t offset) : key("bad-" + std::to_string(offset)), payload("not a transaction") {
    record.key = reinterpret_cast<const uint8_t*>(key.data());
    record.key_size = static_cast<uint32_t>(key.size());
    record.payload = reinterpret_cast<const uint8_t*>(payload.data());
    record.size = static_cast<uint32_t>(payload.size());
    record.offset = offset;
    record.watermark_ms = 1000;
  }
  std::string key;
  std::string payload;
  InputRecord record;
};

class SideRecordsTest : public SinkTest {
 protected:
  // The keys on `topic` now (every record the broker has, committed or not
  // by the reader's isolation: read_committed).
  std::vector<std::string> Keys(const std::string& topic) {
    std::vector<std::string> keys;
    auto read = ReadTopic(Config(), topic, [&](const ConsumedRecord& r) { keys.emplace_back(r.key); }, 2000);
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    return keys;
  }
  static std::vector<std::string> KeysOf(int64_t first, int64_t count) {
    std::vector<std::string> keys;
    for (int64_t o = first; o < first + count; ++o) keys.push_back("bad-" + std::to_string(o));
    return keys;
  }
  void EmitDlq(int64_t first, int64_t count) {
    for (int64_t o = first; o < first + count; ++o) {
      BadRecord bad(o);
      sink_->EmitDlq(0, bad.record, DlqReason::kUndecodable, "undecodable");
    }
  }
};

// At least once: what CloseOutputs closes is what its wait acknowledges, DLQ
// and late records included, and more of them than one group go in order.
TEST_F(SideRecordsTest, AreInTheBrokersLogOnceTheCheckpointsWaitReturns) {
  CreateTopic("engine-test.dlq", 1);
  CreateTopic("engine-test.late", 1);
  ScratchDir dir("side-records");
  const JobSpec spec = Spec("tx", dir / "state");
  ASSERT_NO_FATAL_FAILURE(MakeTasks(spec, 1));
  EmitDlq(0, 1100);  // two groups of 512 and a part
  BadRecord late(5000);
  sink_->EmitLate(0, late.record);
  auto wait = sink_->CloseOutputs(30000);
  ASSERT_TRUE(wait);
  ASSERT_TRUE(wait().ok());
  EXPECT_EQ(Keys("engine-test.dlq"), KeysOf(0, 1100));
  EXPECT_EQ(Keys("engine-test.late"), KeysOf(5000, 1));

  EmitDlq(1100, 3);
  ASSERT_TRUE(sink_->Flush(30000).ok());
  EXPECT_EQ(Keys("engine-test.dlq"), KeysOf(0, 1103));
}

// Exactly once: a DLQ record goes into the transaction of its epoch, so a
// read_committed reader sees it once that epoch's commit returns.
TEST_F(SideRecordsTest, CommitWithTheEpochTheyBelongTo) {
  CreateTopic("tx", 1);
  CreateTopic("engine-test.dlq", 1);
  ScratchDir dir("side-records-eos");
  ASSERT_NO_FATAL_FAILURE(MakeExactlyOnceSink(dir));

  EmitDlq(0, 2);
  Status st = sink_->CommitEpoch(consumer_->handle(), "tx", {{0, 2}});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Keys("engine-test.dlq"), KeysOf(0, 2));

  EmitDlq(2, 1);
  auto commit = sink_->CommitEpochLater(consumer_->handle(), "tx", {{0, 3}});
  ASSERT_TRUE(commit);
  st = commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Keys("engine-test.dlq"), KeysOf(0, 3));
}

// Between checkpoints a DLQ record still reaches the broker soon: the job's
// loop polls the sink after every read.
TEST_F(SideRecordsTest, ReachTheBrokerAtTheNextPollWithoutABarrier) {
  CreateTopic("engine-test.dlq", 1);
  ScratchDir dir("side-records-poll");
  const JobSpec spec = Spec("tx", dir / "state");
  ASSERT_NO_FATAL_FAILURE(MakeTasks(spec, 1));
  EmitDlq(0, 1);
  sink_->Poll();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<std::string> keys;
  while ((keys = Keys("engine-test.dlq")).empty() && std::chrono::steady_clock::now() < deadline) {
    sink_->Poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(keys, KeysOf(0, 1));
}

}  // namespace
}  // namespace kappa::testing
