// A job's input topic deleted and recreated under the same name (a bug
// bash on Kafka 4.1): once the new topic holds as many records as the
// checkpoint's offsets, a restart must not resume at the old offsets and
// skip the new log's first records, nor drop the state of partitions the new
// topic lacks. It refuses, naming the partition. An unchanged topic resumes
// as before, also after more records were appended. On the embedded broker
// (librdkafka's mock cluster cannot delete a topic) the recreated topic is
// the same name on a fresh embedded broker; on a real one it is deleted and
// created again.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <thread>

#include "kafka/embedded_broker.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"

namespace kappa::testing {
namespace {

class RecreatedTopicRestartTest : public BrokerTest {
 protected:
  void Produce(const KafkaConfig& config, uint64_t count, uint64_t seed) {
    ProduceWorkload(config, "transactions", SmallWorkload(seed, count, 500, 0.5));
  }
  int Run(const std::string& spec, const std::string& bootstrap, std::string* err) {
    std::string out;
    return RunKappa({"run", spec, "-b", bootstrap, "--stop-at-end", "--status-interval-ms", "0"}, &out, err);
  }
  // "transactions" again with `partitions` partitions and nothing in it;
  // returns the bootstrap that serves it.
  std::string Recreate(int partitions) {
    if (real_broker()) {
      Status st = DeleteTopicAdmin(Config(), "transactions");
      EXPECT_TRUE(st.ok()) << st.ToString();
      // The controller finishes the deletion in the background.
      for (int i = 0; i < 100; ++i) {
        st = CreateTopicAdmin(Config(), "transactions", partitions);
        if (st.ok()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      EXPECT_TRUE(st.ok()) << st.ToString();
      return bootstrap();
    }
    auto fresh = EmbeddedBroker::Start({});
    EXPECT_TRUE(fresh.ok()) << fresh.status().ToString();
    if (!fresh.ok()) return bootstrap();
    Status st = (*fresh)->CreateTopic({"transactions", partitions});
    EXPECT_TRUE(st.ok()) << st.ToString();
    recreated_ = std::move(*fresh);
    return recreated_->bootstrap();
  }
  static KafkaConfig ConfigOf(const std::string& bootstrap) {
    KafkaConfig config;
    config.brokers = bootstrap;
    return config;
  }
  // "transactions" with `partitions` partitions and `count` records, and a
  // first run of the job over it to its end: the spec's path.
  std::string FirstRun(const ScratchDir& dir, int partitions, uint64_t count, uint64_t seed) {
    CreateTopic("transactions", partitions);
    Produce(Config(), count, seed);
    SpecOptions spec;
    spec.state_dir = dir / "state";
    const std::string path = WriteSpec(dir, "v1.yaml", spec);
    std::string err;
    EXPECT_EQ(Run(path, bootstrap(), &err), 0) << err;
    return path;
  }
  std::unique_ptr<EmbeddedBroker> recreated_;
};

TEST_F(RecreatedTopicRestartTest, RecreatedTopicFilledPastTheCheckpointIsRefused) {
  ScratchDir dir("recreated");
  const std::string path = FirstRun(dir, 2, 20000, 1);
  std::string err;
  ASSERT_EQ(MetricsField(ReadFile(dir / "state/metrics.json"), "records_in"), 20000);

  // Twice as many records: every partition is past its checkpoint.
  const std::string again = Recreate(2);
  Produce(ConfigOf(again), 40000, 2);
  EXPECT_NE(Run(path, again, &err), 0) << "resumed another log at the old offsets";
  EXPECT_NE(err.find("transactions["), std::string::npos) << err;
  EXPECT_NE(err.find("recreated"), std::string::npos) << err;
  EXPECT_NE(err.find("version"), std::string::npos) << err;
  EXPECT_NE(err.find("would skip the new log's records"), std::string::npos) << err;
  EXPECT_EQ(MetricsField(ReadFile(dir / "state/metrics.json"), "records_in"), 20000) << "nothing read on";
}

TEST_F(RecreatedTopicRestartTest, RecreatedTopicWithFewerPartitionsIsRefusedNamingThem) {
  ScratchDir dir("fewer");
  const std::string path = FirstRun(dir, 3, 15000, 3);
  std::string err;

  const std::string again = Recreate(1);
  Produce(ConfigOf(again), 40000, 4);
  EXPECT_NE(Run(path, again, &err), 0) << "dropped the state of partitions 1 and 2";
  EXPECT_NE(err.find("transactions[1], transactions[2]"), std::string::npos) << err;
  EXPECT_NE(err.find("fewer partitions"), std::string::npos) << err;
  EXPECT_NE(err.find("state would be dropped"), std::string::npos) << err;
}

TEST_F(RecreatedTopicRestartTest, UnchangedTopicResumesAfterMoreRecords) {
  ScratchDir dir("unchanged");
  const std::string path = FirstRun(dir, 2, 10000, 5);
  std::string err;
  // Nothing new: resumes at the end.
  ASSERT_EQ(Run(path, bootstrap(), &err), 0) << err;
  EXPECT_EQ(err.find("recreated"), std::string::npos) << err;
  // More records appended: resumes and reads exactly those.
  Produce(Config(), 10000, 6);
  ASSERT_EQ(Run(path, bootstrap(), &err), 0) << err;
  EXPECT_EQ(err.find("recreated"), std::string::npos) << err;
  EXPECT_EQ(err.find("could not be read back"), std::string::npos) << err;
  EXPECT_EQ(MetricsField(ReadFile(dir / "state/metrics.json"), "records_in"), 20000);
}

// A scaled-out instance takes its partitions from the consumer group: the
// same check on each restored partition it is given. It read on at the old
// offsets before (a bug bash's "left alone"), skipping the new log's first
// records without a word.
TEST_F(RecreatedTopicRestartTest, AScaledOutInstanceGivenARecreatedTopicsPartitionsRefusesThem) {
  ScratchDir dir("recreated-scaled");
  CreateTopic("transactions", 2);
  CreateTopic("rso.v1.changelog", 2, {{"cleanup.policy", "compact"}});
  Produce(Config(), 20000, 7);
  SpecOptions o;
  o.job = "rso";
  o.state_dir = dir / "unused";
  o.checkpoint_interval = "200ms";
  const std::string path = WriteSpec(dir, "rso.yaml", o);
  std::ofstream(path, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  auto instance = [&](const std::string& at) {
    return std::vector<std::string>{"run", path, "-b", at, "--instance", "a", "--state-dir", dir / "a",
                                    "--status-interval-ms", "0"};
  };
  {
    ChildProcess first(instance(bootstrap()), "rso-first");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    // metrics.json: what the instance's partitions hold at its last checkpoint.
    auto read = [&] {
      const std::string metrics = ReadFile(dir / "a/metrics.json");
      return metrics.find("\"records_in\"") == std::string::npos ? 0 : MetricsField(metrics, "records_in");
    };
    while (read() < 20000) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << first.Stderr();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    first.Kill(SIGTERM);
    ASSERT_EQ(first.WaitFor(30000), 0) << first.Stderr();
  }

  const std::string again = Recreate(2);
  if (!real_broker()) {
    Status st = recreated_->CreateTopic({"rso.v1.changelog", 2});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  Produce(ConfigOf(again), 40000, 8);
  ChildProcess second(instance(again), "rso-second");
  const int code = second.WaitFor(60000);
  EXPECT_NE(code, -1) << "still running: resumed another log at the old offsets\n" << second.Stderr();
  EXPECT_NE(code, 0) << second.Stderr();
  EXPECT_NE(second.Stderr().find("recreated"), std::string::npos) << second.Stderr();
  EXPECT_NE(second.Stderr().find("would skip the new log's records"), std::string::npos) << second.Stderr();
  // Refused as it took the partitions, before it read a record.
  EXPECT_EQ(second.Stderr().find("took partition(s)"), std::string::npos) << second.Stderr();
}

}  // namespace
}  // namespace kappa::testing
