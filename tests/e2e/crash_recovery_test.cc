// Story: the job process is killed with SIGKILL at random moments and at
// exact awkward points of the checkpoint protocol (before the sink flush,
// after the flush but before the RocksDB commit, right after the commit),
// restarted each time, and finally run to the end of the log. The distinct
// outputs by key, with their values, equal those of an uninterrupted run;
// nothing is missing, and every duplicate is byte-identical.
#include <signal.h>

#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"

#include <fstream>

namespace kappa::testing {
namespace {

class CrashRecoveryTest : public BrokerTest {
 protected:
  GeneratorOptions Workload() { return DisorderlyWorkload(7, 60000, 1500, 2); }
  // A spec of job `job` reading `source` from `start: latest`, writing
  // <job>-out, its state in dir/state.
  static std::string LatestSpec(const ScratchDir& dir, const std::string& job, const std::string& source,
                                const std::string& checkpoint_interval = "") {
    SpecOptions o;
    o.job = job;
    o.source = source;
    o.sink = job + "-out";
    o.state_dir = dir / "state";
    if (!checkpoint_interval.empty()) o.checkpoint_interval = checkpoint_interval;
    std::string text = ReadFile(WriteSpec(dir, job + ".yaml", o));
    text.replace(text.find("start: earliest"), 15, "start: latest");
    const std::string spec = dir / (job + "-latest.yaml");
    std::ofstream(spec) << text;
    return spec;
  }
};

TEST_F(CrashRecoveryTest, KilledRunsConvergeToTheUninterruptedOutput) {
  KAPPA_REQUIRE_TEST_HOOKS();
  CreateTopic("transactions", 8);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ExpectLogStartsAtZero(Config(), "transactions");
  ScratchDir dir("crash");

  // The uninterrupted reference run.
  SpecOptions clean;
  clean.sink = "clean-out";
  clean.state_dir = dir / "clean-state";
  std::string err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "clean.yaml", clean), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;

  // The crashing run: short checkpoint interval and a rate cap so kills land
  // mid-stream, often while a checkpoint is being flushed or written.
  SpecOptions crashy = clean;
  crashy.sink = "crashy-out";
  crashy.state_dir = dir / "crashy-state";
  crashy.checkpoint_interval = "150ms";
  const std::string spec = WriteSpec(dir, "crashy.yaml", crashy);
  const std::vector<std::string> args = {"run", spec, "-b", bootstrap(), "--stop-at-end", "--max-rate", "20000",
                                         "--status-interval-ms", "0"};

  // Exact points of the checkpoint protocol, via the test-only kill switch.
  for (const char* point : {"before-flush:2", "after-flush:2", "after-commit:2", "after-flush:3"}) {
    setenv("KAPPA_TEST_KILL_AT", point, 1);
    ChildProcess child(args, "killat");
    const int rc = child.WaitFor(120000);
    unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << point << ": " << child.Stderr();
  }
  // Random moments.
  std::mt19937 rng(12345);
  int killed = 0;
  for (int i = 0; i < 6; ++i) {
    ChildProcess child(args, "random");
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 400));
    child.Kill(SIGKILL);
    const int rc = child.Wait();
    if (rc == 0) break;  // reached the end before the kill
    ASSERT_EQ(rc, 128 + SIGKILL) << child.Stderr();
    ++killed;
  }
  EXPECT_GE(killed, 2) << "the job finished too fast for the kills to land mid-run";
  ASSERT_EQ(RunKappa(args, nullptr, &err), 0) << err;

  const TopicContents want = ReadOutputs(Config(), "clean-out.v1");
  const TopicContents got = ReadOutputs(Config(), "crashy-out.v1");
  ASSERT_GT(want.rows.size(), 100u);
  EXPECT_TRUE(got.all_copies_identical) << "a re-emitted row differs from its first emission";
  EXPECT_EQ(got.rows.size(), want.rows.size());
  size_t missing = 0, different = 0;
  for (const auto& [key, row] : want.rows) {
    auto it = got.rows.find(key);
    if (it == got.rows.end()) {
      ++missing;
    } else if (it->second.value != row.value) {
      ++different;
    }
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(different, 0u);
  for (const auto& [key, row] : got.rows) EXPECT_TRUE(want.rows.count(key)) << "unexpected output " << key;

  // The checkpointed counters account for every record exactly once.
  const std::string metrics = ReadFile(dir / "crashy-state/metrics.json");
  const std::string clean_metrics = ReadFile(dir / "clean-state/metrics.json");
  for (const char* field : {"records_in", "records_out", "deduped", "filtered", "late", "dlq", "outputs"}) {
    EXPECT_EQ(MetricsField(metrics, field), MetricsField(clean_metrics, field)) << field;
  }
}

// A bug bash on a real Kafka: partitions added to the source topic between
// two runs of a `start: latest` job were started at their end too, so what
// had been written to them meanwhile was never read. `latest` is where the
// job started: a partition without a checkpoint in a job that has run
// before is new, and is read from its beginning.
TEST_F(CrashRecoveryTest, PartitionsAddedBetweenRunsAreReadFromTheirBeginning) {
  if (!real_broker()) GTEST_SKIP() << "the embedded broker cannot add partitions to a topic";
  CreateTopic("grow-in", 2);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "grow-in", SmallWorkload(11, 2000, 100)));
  ScratchDir dir("grow");
  const std::string spec = LatestSpec(dir, "grow", "grow-in");
  std::string out, err;
  const std::vector<std::string> run = {"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"};
  ASSERT_EQ(RunKappa(run, &out, &err), 0) << err;
  EXPECT_NE(out.find("in 0 = "), std::string::npos) << "latest: the records before the first run are not read\n"
                                                    << out;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "grow-in", SmallWorkload(12, 1000, 100)));
  ASSERT_TRUE(AddPartitionsAdmin(Config(), "grow-in", 4).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "grow-in", SmallWorkload(13, 2000, 100)));
  ASSERT_EQ(RunKappa(run, &out, &err), 0) << err;
  EXPECT_NE(out.find("in 3000 = "), std::string::npos) << "every record since the first run\n" << out << err;
  EXPECT_NE(err.find("grow-in[2] has no checkpoint though the job ran before"), std::string::npos) << err;

  // While it runs: the new partitions are not read until a restart (its
  // tasks are made at the start), and it says so instead of "lag 0".
  ::setenv("KAPPA_TOPIC_CHECK_MS", "500", 1);
  ChildProcess running({"run", spec, "-b", bootstrap(), "--status-interval-ms", "0"}, "grow-running");
  ::unsetenv("KAPPA_TOPIC_CHECK_MS");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(AddPartitionsAdmin(Config(), "grow-in", 6).ok());
  bool warned = false;
  for (int i = 0; i < 200 && !warned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    warned = running.Stderr().find("the source topic grow-in now has 6 partitions; this run reads the 4") !=
             std::string::npos;
  }
  EXPECT_TRUE(warned) << running.Stderr();
  running.Kill(SIGTERM);
  EXPECT_EQ(running.WaitFor(30000), 0) << running.Stderr();
}

// A bug bash on a real Kafka: a `start: latest` job killed with -9 before
// its first checkpoint resolved `latest` again at the restart, later, and
// the records written between the two starts were never read, without a
// word. The positions it started at are checkpointed before it reads.
TEST_F(CrashRecoveryTest, ALatestStartKilledBeforeItsFirstCheckpointResumesWhereItStarted) {
  CreateTopic("late-start", 2);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "late-start", SmallWorkload(21, 1000, 100)));
  ScratchDir dir("late-start");
  const std::string spec = LatestSpec(dir, "ls", "late-start", "1h");
  ChildProcess first({"run", spec, "-b", bootstrap(), "--status-interval-ms", "0"}, "ls-first");
  bool started = false;
  for (int i = 0; i < 300 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    started = std::filesystem::exists(dir / "state/KAPPA_EPOCH");
  }
  ASSERT_TRUE(started) << "no checkpoint of where it started:\n" << first.Stderr();
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "late-start", SmallWorkload(22, 500, 100)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  first.Kill(SIGKILL);
  ASSERT_EQ(first.Wait(), 128 + SIGKILL) << first.Stderr();
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &out, &err), 0)
      << err;
  EXPECT_NE(out.find("in 500 = "), std::string::npos) << "the records written after the first start\n" << out << err;
}

}  // namespace
}  // namespace kappa::testing
