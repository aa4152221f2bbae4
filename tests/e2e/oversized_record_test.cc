// A story about a record too large to dead-letter whole (issue 10, item 4):
// a 1 MiB garbage record among normal ones must not become a poison pill.
// Its DLQ record would exceed the producer's message.max.bytes (1,000,000 by
// default); the sink keeps the metadata and as much of the payload as fits,
// says it was truncated, with the original size and an XXH3-64 checksum, and
// the job finishes every other record. An output row too large for the
// producer stops the job, saying that a restart alone would stop there again
// and what to change (it said "restart it to resume", which looped).
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <fstream>

#include <gtest/gtest.h>

#include "kafka/kafka_producer.h"
#include "schemas/dlq_record_generated.h"
#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class OversizedRecordTest : public BrokerTest {};

TEST_F(OversizedRecordTest, AOneMebibyteRecordIsDeadLetteredTruncatedAndTheJobFinishes) {
  // A real broker takes records up to 1 MiB by default: this topic is allowed more.
  CreateTopic("transactions", 2, {{"max.message.bytes", "4000000"}});
  GeneratorOptions before = SmallWorkload(11, 3000, 200, 0.5);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", before));

  // 1 MiB of garbage, written by a producer allowed to send it.
  std::string garbage(1 << 20, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (char& c : garbage) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  const uint64_t checksum = XXH3_64bits(garbage.data(), garbage.size());
  {
    KafkaConfig big = Config();
    ASSERT_TRUE(big.AddProperty("message.max.bytes=4000000").ok());
    auto producer = KafkaProducer::Create(big, ProducerOptions{});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    ASSERT_TRUE((*producer)->Produce("transactions", 1, "giant-key", garbage).ok());
    Status st = (*producer)->Flush(30000);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  GeneratorOptions after = SmallWorkload(12, 3000, 200, 0.5);
  after.start_time_ms = 1767225600000 + 3000 * 2000;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", after));

  ScratchDir dir("oversized");
  SpecOptions spec;
  spec.state_dir = dir / "state";
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "job.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"},
                     &out, &err),
            0)
      << "the job must not stop at an oversized record: " << err;
  const std::string metrics = ReadFile(dir / "state/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "records_in"), 6001) << "every record is processed";
  EXPECT_EQ(MetricsField(metrics, "dlq"), 1);

  int found = 0;
  auto st = ReadTopic(Config(), "user-spend.dlq", [&](const ConsumedRecord& c) {
    ++found;
    EXPECT_LE(c.key.size() + c.value.size(), 1000000u);
    const std::string bytes(c.value);
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ASSERT_TRUE(schema::VerifyDlqRecordBuffer(v));
    const auto* d = schema::GetDlqRecord(bytes.data());
    EXPECT_EQ(d->source_topic()->str(), "transactions");
    EXPECT_EQ(d->source_partition(), 1);
    EXPECT_EQ(d->error_type(), schema::DlqErrorType::Undecodable);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->key()->data()), d->key()->size()), "giant-key");
    EXPECT_EQ(d->job()->str(), "user-spend");
    EXPECT_TRUE(d->truncated());
    EXPECT_EQ(d->original_size(), 1 << 20);
    EXPECT_EQ(d->payload_xxh3(), checksum);
    ASSERT_NE(d->payload(), nullptr);
    EXPECT_GT(d->payload()->size(), 900000u) << "as much of the payload as fits";
    EXPECT_LT(d->payload()->size(), garbage.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->payload()->data()), d->payload()->size()),
              garbage.substr(0, d->payload()->size()))
        << "the kept payload is the original's prefix";
  });
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(found, 1);

  // `kappa consume` shows the truncation in the DLQ record's JSON.
  std::string printed;
  ASSERT_EQ(RunKappa({"consume", "--topic", "user-spend.dlq", "-b", bootstrap(), "--print"}, &printed, &err), 0) << err;
  EXPECT_NE(printed.find("\"truncated\":true"), std::string::npos) << printed.substr(0, 2000);
  EXPECT_NE(printed.find("\"original_size\":1048576"), std::string::npos) << printed.substr(0, 2000);
}

TEST_F(OversizedRecordTest, AnOutputTooLargeToProduceSaysARestartAloneWouldStopAgain) {
  for (const char* t : {"big-in", "big-out.v1", "big.dlq", "big.late"}) CreateTopic(t, 1);
  {
    auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    // A window key of 600 kB: the row carries it twice (Kafka key and "key").
    const std::string key(600000, 'K');
    ASSERT_TRUE((*producer)->Produce("big-in", 0, "k", R"({"user_id":")" + key + R"(","t":1767225600000})").ok());
    ASSERT_TRUE((*producer)->Flush(30000).ok());
  }
  ScratchDir dir("oversized-output");
  const std::string spec = WriteJsonJobSpec(dir, "big", "{user_id: string, t: timestamp}",
                                            "  - window: {type: tumbling, size: 1h, key: user_id, features: {n: count}}\n");
  for (int run = 0; run < 2; ++run) {
    std::string out, err;
    EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms",
                        "0"},
                       &out, &err),
              1)
        << err;
    EXPECT_NE(err.find("MSG_SIZE_TOO_LARGE"), std::string::npos) << err;
    EXPECT_NE(err.find("a restart makes the same output again"), std::string::npos) << err;
    EXPECT_NE(err.find("-X message.max.bytes"), std::string::npos) << err;
    EXPECT_EQ(err.find("restart it to resume"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace kappa::testing
