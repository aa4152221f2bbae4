// Stories on a real Apache Kafka (scripts/kafka.sh, started for the suite by
// the CTest fixture `realkafka`): what librdkafka's mock cluster cannot show.
//   - `start: <timestamp>` resolves through ListOffsets by time
//     (offsetsForTimes), which the mock does not implement;
//   - exactly-once: after kill -9 between the Kafka transaction commit and the
//     RocksDB checkpoint, a read_committed consumer sees every output once,
//     equal to an uninterrupted at-least-once run (the mock shows aborted
//     records and stores no transactional offsets, so it cannot).
// Each test uses its own topics, job names and groups, so they may share the
// broker and run in parallel.
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "kafka/kafka_client.h"
#include "kafka/partition_list.h"
#include "kafka/topic_reader.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/test_support.h"
#include "workload/event_producer.h"

namespace kappa::testing {
namespace {

// Every record of a topic as a read_committed consumer sees it, by key.
struct CommittedContents {
  std::map<std::string, std::string> values;
  std::map<std::string, int> copies;
  int64_t total = 0;
  bool all_copies_identical = true;
};

class RealBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(std::string(KAPPA_REALKAFKA_DIR) + "/bootstrap");
    std::getline(in, bootstrap_);
    if (bootstrap_.empty()) {
      GTEST_SKIP() << "no real broker: ctest starts one (fixture realkafka), or run scripts/kafka.sh start --dir "
                   << KAPPA_REALKAFKA_DIR;
    }
    std::random_device rd;
    id_ = std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
  }

  KafkaConfig Config() const {
    KafkaConfig config;
    config.brokers = bootstrap_;
    return config;
  }
  std::string Unique(const std::string& prefix) const { return prefix + "-" + id_; }

  // Creates the topic with the admin API (CreateTopics), replication 1.
  void CreateTopic(const std::string& name, int partitions) {
    auto client = CreateClient(ClientKind::kProducer, Config(), {});
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    rd_kafka_t* rk = client->get();
    char err[512];
    rd_kafka_NewTopic_t* topic = rd_kafka_NewTopic_new(name.c_str(), partitions, 1, err, sizeof err);
    ASSERT_NE(topic, nullptr) << err;
    rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(options, 20000, err, sizeof err);
    rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &topic, 1, options, queue);
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
    std::string error;
    if (!event) {
      error = "no answer to CreateTopics within 30 s";
    } else if (rd_kafka_event_error(event)) {
      error = rd_kafka_event_error_string(event);
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
      if (n != 1) {
        error = "CreateTopics answered for " + std::to_string(n) + " topics";
      } else if (rd_kafka_topic_result_error(results[0])) {
        error = rd_kafka_topic_result_error_string(results[0]);
      }
    }
    if (event) rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_NewTopic_destroy(topic);
    ASSERT_EQ(error, "") << "creating " << name;
    // The controller has it; wait until the broker's metadata shows every
    // partition with a leader (a producer asking earlier is told it does not exist).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!TopicReady(rk, name, partitions)) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << name << " has no leaders 20 s after its creation";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  static bool TopicReady(rd_kafka_t* rk, const std::string& name, int partitions) {
    rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, name.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    bool ready = false;
    if (rd_kafka_metadata(rk, 0, topic, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          metadata->topics[0].partition_cnt == partitions) {
        ready = true;
        for (int p = 0; p < partitions; ++p) ready = ready && metadata->topics[0].partitions[p].leader >= 0;
      }
      rd_kafka_metadata_destroy(metadata);
    }
    rd_kafka_topic_destroy(topic);
    return ready;
  }

  // Reads the whole topic with isolation.level=read_committed, up to its
  // high watermark as of the call: each partition is done when the consumer
  // reports its end at or past that mark (with an open transaction it stops
  // at the last stable offset and never gets there).
  CommittedContents ReadCommitted(const std::string& topic) {
    CommittedContents out;
    auto consumer = CreateClient(ClientKind::kConsumer, Config(),
                                 {{"group.id", Unique("rk-reader")},
                                  {"enable.auto.commit", "false"},
                                  {"isolation.level", "read_committed"},
                                  {"enable.partition.eof", "true"},
                                  {"auto.offset.reset", "earliest"}});
    EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
    if (!consumer.ok()) return out;
    rd_kafka_t* rk = consumer->get();
    auto n = TopicPartitionCount(rk, topic, 10000);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok()) return out;
    auto marks = QueryAllWatermarks(rk, topic, *n, 10000);
    EXPECT_TRUE(marks.ok()) << marks.status().ToString();
    if (!marks.ok()) return out;
    PartitionList assignment(*n);
    for (int32_t p = 0; p < *n; ++p) assignment.Add(topic, p, RD_KAFKA_OFFSET_BEGINNING);
    EXPECT_EQ(rd_kafka_assign(rk, assignment.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::set<int32_t> done;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (static_cast<int32_t>(done.size()) < *n && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 200);
      if (!msg) continue;
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (msg->offset >= (*marks)[msg->partition].high) done.insert(msg->partition);
      } else if (msg->err) {
        ADD_FAILURE() << "reading " << topic << ": " << rd_kafka_message_errstr(msg);
      } else {
        std::string key(static_cast<const char*>(msg->key), msg->key_len);
        std::string value(static_cast<const char*>(msg->payload), msg->len);
        auto it = out.values.find(key);
        if (it != out.values.end() && it->second != value) out.all_copies_identical = false;
        out.values[key] = std::move(value);
        ++out.copies[key];
        ++out.total;
      }
      rd_kafka_message_destroy(msg);
    }
    EXPECT_EQ(static_cast<int32_t>(done.size()), *n)
        << "read_committed did not reach the end of " << topic << " in 30 s (a transaction left open?)";
    rd_kafka_consumer_close(rk);
    return out;
  }

  std::vector<std::string> Run(const std::string& spec, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::string bootstrap_;
  std::string id_;
};

struct PartitionMetrics {
  int64_t next_offset = -1;
  int64_t start_offset = -1;
  int64_t records_in = -1;
};

std::map<int32_t, PartitionMetrics> PartitionsOf(const std::string& metrics_json) {
  std::map<int32_t, PartitionMetrics> out;
  static const std::regex re(
      R"(\{"partition": ([0-9]+), "next_offset": (-?[0-9]+), "start_offset": (-?[0-9]+), [^}]*"records_in": ([0-9]+))");
  for (auto it = std::sregex_iterator(metrics_json.begin(), metrics_json.end(), re); it != std::sregex_iterator();
       ++it) {
    out[std::stoi((*it)[1])] = {std::stoll((*it)[2]), std::stoll((*it)[3]), std::stoll((*it)[4])};
  }
  return out;
}

TEST_F(RealBrokerTest, StartAtATimestampResolvesThroughOffsetsForTimes) {
  constexpr int kPartitions = 3;
  const std::string topic = Unique("rk-start-in");
  ASSERT_NO_FATAL_FAILURE(CreateTopic(topic, kPartitions));
  GeneratorOptions gen = SmallWorkload(7, 6000);  // 1 event/s, in order: timestamps rise in every partition
  gen.start_time_ms = WallClockMs() - 3 * 3600 * 1000;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));

  // What the broker stores: each partition's (offset, timestamp).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> stored(kPartitions);
  auto read = ReadTopic(Config(), topic, [&](const ConsumedRecord& r) {
    stored[r.partition].push_back({r.offset, r.timestamp_ms});
  });
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  // Mid-stream, and between two seconds, so no record has exactly this time.
  const int64_t start = gen.start_time_ms + 3000 * 1000 + 500;
  std::vector<int64_t> want(kPartitions), end(kPartitions);
  int64_t want_records = 0;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_FALSE(stored[p].empty()) << "partition " << p << " got no records";
    end[p] = stored[p].back().first + 1;
    want[p] = end[p];
    for (const auto& [offset, ts] : stored[p]) {
      if (ts >= start) {
        want[p] = offset;
        break;
      }
    }
    ASSERT_GT(want[p], 0) << "partition " << p << ": the start must fall inside the data";
    ASSERT_LT(want[p], end[p]) << "partition " << p << ": the start must fall inside the data";
    want_records += end[p] - want[p];
  }

  ScratchDir dir("rk-start");
  SpecOptions spec;
  spec.job = Unique("rk-start");
  spec.source = topic;
  spec.sink = Unique("rk-start-out");
  spec.state_dir = dir / "state";
  const std::string path = WriteSpec(dir, "job.yaml", spec);
  std::string text = ReadFile(path);
  const size_t at = text.find("start: earliest");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, std::string("start: earliest").size(), "start: " + std::to_string(start));
  std::ofstream(path) << text;

  std::string err;
  ASSERT_EQ(RunKappa(Run(path), nullptr, &err, "rk-start"), 0) << err;
  const std::string metrics = ReadFile(dir / "state/metrics.json");
  const auto partitions = PartitionsOf(metrics);
  ASSERT_EQ(partitions.size(), static_cast<size_t>(kPartitions)) << metrics;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(partitions.count(p)) << metrics;
    EXPECT_EQ(partitions.at(p).start_offset, want[p]) << "partition " << p << ": not the first offset at or after "
                                                      << start << "\n" << metrics;
    EXPECT_EQ(partitions.at(p).next_offset, end[p]) << "partition " << p << "\n" << metrics;
    EXPECT_EQ(partitions.at(p).records_in, end[p] - want[p]) << "partition " << p << "\n" << metrics;
  }
  EXPECT_EQ(MetricsField(metrics, "records_in"), want_records);
}

TEST_F(RealBrokerTest, ExactlyOnceSurvivesAKillBetweenTheKafkaCommitAndTheCheckpoint) {
  KAPPA_REQUIRE_TEST_HOOKS();
  const std::string topic = Unique("rk-eos-in");
  ASSERT_NO_FATAL_FAILURE(CreateTopic(topic, 4));
  GeneratorOptions gen = SmallWorkload(21, 20000, 600);
  gen.start_time_ms = WallClockMs() - 8 * 3600 * 1000;
  gen.out_of_order_fraction = 0.05;
  gen.max_delay_ms = 20 * 60 * 1000;
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.01;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));
  ScratchDir dir("rk-eos");
  std::string err;

  // The reference: one uninterrupted at-least-once run.
  SpecOptions alo;
  alo.job = Unique("rk-alo");
  alo.source = topic;
  alo.sink = Unique("rk-alo-out");
  alo.state_dir = dir / "alo";
  ASSERT_EQ(RunKappa(Run(WriteSpec(dir, "alo.yaml", alo)), nullptr, &err, "rk-alo"), 0) << err;

  SpecOptions eos = alo;
  eos.job = Unique("rk-eos");
  eos.sink = Unique("rk-eos-out");
  eos.state_dir = dir / "eos";
  eos.delivery = "exactly_once";
  eos.checkpoint_interval = "200ms";
  const std::string eos_spec = WriteSpec(dir, "eos.yaml", eos);
  {
    // kill -9 after the 2nd epoch's transaction is committed in Kafka and
    // before its RocksDB checkpoint.
    setenv("KAPPA_TEST_KILL_AT", "after-flush:2", 1);
    ChildProcess child(Run(eos_spec, {"--max-rate", "15000"}), "rk-eos-killed");
    const int rc = child.WaitFor(60000);
    unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << child.Stderr();
  }
  // The killed run's committed transactions are visible already: the rerun
  // must not repeat them although RocksDB does not know about the last one.
  const CommittedContents before = ReadCommitted(eos.sink + ".v1");
  ASSERT_GT(before.total, 0) << "the kill came before any output was committed: it proves nothing";
  ASSERT_EQ(RunKappa(Run(eos_spec), nullptr, &err, "rk-eos"), 0) << err;
  EXPECT_NE(err.find("re-reading them with outputs suppressed"), std::string::npos) << err;

  const CommittedContents want = ReadCommitted(alo.sink + ".v1");
  const CommittedContents got = ReadCommitted(eos.sink + ".v1");
  ASSERT_GT(want.values.size(), 50u);
  EXPECT_EQ(want.total, static_cast<int64_t>(want.values.size())) << "the uninterrupted run repeated outputs";
  EXPECT_TRUE(got.all_copies_identical);
  for (const auto& [key, copies] : got.copies) EXPECT_EQ(copies, 1) << key << " seen " << copies << " times";
  EXPECT_EQ(got.total, want.total);
  EXPECT_EQ(got.values.size(), want.values.size());
  for (const auto& [key, value] : want.values) {
    ASSERT_TRUE(got.values.count(key)) << key << " is missing";
    EXPECT_EQ(got.values.at(key), value) << key;
  }
  EXPECT_EQ(MetricsField(ReadFile(dir / "eos/metrics.json"), "records_in"), 20000);
}

}  // namespace
}  // namespace kappa::testing
