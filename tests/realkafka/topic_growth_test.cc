// Partitions added to the input of a scaled-out version, on a real Apache
// Kafka (the suite's broker, CTest fixture `realkafka`).
//
// A scaled-out version keeps each task's state in the changelog partition
// of its input partition, so it cannot take partitions added later. At the
// group's next metadata refresh the new partitions were assigned, and every
// instance stopped with "not found: cannot read offsets of
// <job>.v1.changelog[2]: _UNKNOWN_PARTITION"; a restart was refused (the
// changelog has fewer partitions than the input), so the live version could
// not run at all (a bug bash). It warns (a new version reads them), leaves
// the new partitions unread and goes on with the ones it began with, and a
// restart runs the same way.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kafka/kafka_client.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class TopicGrowthTest : public SharedRealKafkaTest<> {
 protected:
  int64_t RecordsIn(const std::string& topic, int32_t partitions, int32_t first_n) {
    auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", Unique("marks")}});
    EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
    if (!consumer.ok()) return -1;
    auto marks = QueryAllWatermarks(consumer->get(), topic, partitions, 10000);
    EXPECT_TRUE(marks.ok()) << marks.status().ToString();
    if (!marks.ok()) return -1;
    int64_t n = 0;
    for (int32_t p = 0; p < first_n; ++p) n += (*marks)[static_cast<size_t>(p)].high;
    return n;
  }
};

TEST_F(TopicGrowthTest, AScaledOutVersionGoesOnWithItsPartitionsAndSaysANewVersionReadsTheAddedOnes) {
  const std::string input = Unique("grow-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(21, 2000, 40)));
  ScratchDir dir("grow");
  SpecOptions o = JobOptions(Unique("grow-job"), input, dir / "unused");
  o.checkpoint_interval = "500ms";
  const std::string spec = WriteSpec(dir, "grow.yaml", o);
  std::ofstream(spec, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  ::setenv("KAPPA_TOPIC_CHECK_MS", "500", 1);
  auto instance = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap_, "--instance", "a", "--state-dir",
                                     dir / "a", "--status-interval-ms", "0",
                                     // The group learns of new partitions within a second.
                                     "-X", "topic.metadata.refresh.interval.ms=1000"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(args, name);
  };

  auto running = instance("grow-running", {});
  auto stderr_has = [&](const std::string& what, int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (running->Stderr().find(what) != std::string::npos) return true;
      if (running->WaitFor(0) != -1) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  ASSERT_TRUE(stderr_has("took partition(s) 0,1", 60)) << running->Stderr();
  ASSERT_TRUE(AddPartitionsAdmin(Config(), input, 4).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(22, 2000, 40)));
  EXPECT_TRUE(stderr_has("a scaled-out version cannot take new partitions", 60)) << running->Stderr();
  // The group hands it the new partitions at its next refresh: taken, not read, and it goes on.
  EXPECT_TRUE(stderr_has("added since this version began: not read", 60)) << running->Stderr();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(running->WaitFor(0), -1) << "it stopped: " << running->Stderr();
  running->Kill(SIGTERM);
  EXPECT_EQ(running->WaitFor(60000), 0) << running->Stderr();
  const std::string said = running->Stderr();
  EXPECT_EQ(said.find("_UNKNOWN_PARTITION"), std::string::npos) << said;
  EXPECT_NE(said.find("deploy a new version (bump `version:`) to read all 4"), std::string::npos) << said;

  // Restarted, it runs (it was refused: the changelog has 2 partitions) and
  // reads everything of its partitions, nothing of the others.
  const int64_t first_two = RecordsIn(input, 4, 2);
  ASSERT_GT(first_two, 2000);
  running = instance("grow-again", {});
  ASSERT_TRUE(stderr_has("took partition(s) 0,1", 60)) << running->Stderr();
  EXPECT_TRUE(stderr_has("cannot take new partitions", 30)) << running->Stderr();
  int64_t in = -1;
  for (int i = 0; i < 600 && in != first_two && running->WaitFor(0) == -1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string metrics = ReadFile(dir / "a/metrics.json");
    if (!metrics.empty()) in = MetricsField(metrics, "records_in");
  }
  EXPECT_EQ(in, first_two) << "expected every record of partitions 0 and 1: " << running->Stderr();
  running->Kill(SIGTERM);
  EXPECT_EQ(running->WaitFor(60000), 0) << running->Stderr();
  EXPECT_EQ(running->Stderr().find("_UNKNOWN_PARTITION"), std::string::npos) << running->Stderr();
}

}  // namespace
}  // namespace kappa::testing
