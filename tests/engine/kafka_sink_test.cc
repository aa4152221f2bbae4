// KafkaSink's exactly-once commit on the embedded broker: which aborted
// commits a scaled-out job may rewind and redo (LastCommitAborted), and
// that the sink's next epoch commits after such an abort.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <gtest/gtest.h>

#include "engine/kafka_sink.h"
#include "kafka/partition_consumer.h"
#include "tests/engine/engine_test_util.h"

namespace kappa::testing {
namespace {

struct AbortCase {
  rd_kafka_resp_err_t error;  // the group coordinator's answer to the epoch's offsets
  KafkaSink::AbortedCommit expected;
};

class AbortedCommitTest : public EngineTest, public ::testing::WithParamInterface<AbortCase> {};

// A rebalance's refusal, and the sequence gap the records an earlier abort
// purged leave behind (seen on a real broker as OUT_OF_ORDER_SEQUENCE_NUMBER
// "skipped sequence numbers" after a rebalance's abort: the instance
// stopped where it could have redone the epoch), are aborted whole and can
// be redone; another abortable refusal stops the job.
TEST_P(AbortedCommitTest, SaysWhetherAnAbortedEpochCanBeRedone) {
  CreateTopic("tx", 1);
  CreateTopic("engine-test-out", 1);
  ScratchDir dir("aborted-commit");
  JobSpec spec = Spec("tx", dir / "state");
  spec.delivery = DeliveryMode::kExactlyOnce;
  ASSERT_NO_FATAL_FAILURE(MakeTasks(spec, 1));
  ASSERT_TRUE(sink_->transactional());
  PartitionConsumerOptions options;
  options.group = spec.ConsumerGroup();
  auto consumer = PartitionConsumer::Create(Config(), options);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();

  ASSERT_TRUE(sink_->ProduceState("engine-test-out", 0, "k", "epoch 1").ok());
  rd_kafka_mock_push_request_errors(broker_->mock_cluster(), 28 /* TxnOffsetCommit */, 1, GetParam().error);
  Status st = sink_->CommitEpoch((*consumer)->handle(), "tx", {{0, 10}});
  ASSERT_FALSE(st.ok()) << "the injected refusal did not reach the commit";
  EXPECT_EQ(sink_->LastCommitAborted(), GetParam().expected) << st.ToString();

  // Aborted, the next transaction open: the redone epoch commits.
  ASSERT_TRUE(sink_->ProduceState("engine-test-out", 0, "k", "epoch 1 again").ok());
  st = sink_->CommitEpoch((*consumer)->handle(), "tx", {{0, 10}});
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(sink_->LastCommitAborted(), KafkaSink::AbortedCommit::kNone);
}

INSTANTIATE_TEST_SUITE_P(
    Refusals, AbortedCommitTest,
    ::testing::Values(AbortCase{RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, KafkaSink::AbortedCommit::kRebalance},
                      AbortCase{RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaSink::AbortedCommit::kSequenceGap},
                      AbortCase{RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, KafkaSink::AbortedCommit::kNone}),
    [](const ::testing::TestParamInfo<AbortCase>& info) { return std::string(rd_kafka_err2name(info.param.error)); });

}  // namespace
}  // namespace kappa::testing
