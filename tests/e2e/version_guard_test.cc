// Stories at the edges of a version's life: a logic change under the same
// version is refused (it must be a new version); restarting the same spec
// resumes from its checkpoint without reprocessing; history the broker no
// longer has is never skipped silently.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class VersionGuardTest : public BrokerTest {
 protected:
  void Produce(const std::string& topic, uint64_t count, uint64_t seed) {
    // 0.5 events/s: hours of event time, so hourly windows close.
    ProduceWorkload(Config(), topic, SmallWorkload(seed, count, 500, 0.5));
  }
};

TEST_F(VersionGuardTest, SpecChangeUnderTheSameVersionIsRefused) {
  CreateTopic("transactions", 4);
  Produce("transactions", 5000, 1);
  ScratchDir dir("guard");
  SpecOptions spec;
  spec.state_dir = dir / "state";
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "v1.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;

  // Same job and version, different logic: the fixed filter.
  SpecOptions changed = spec;
  changed.filter = "status == approved";
  ASSERT_NE(RunKappa({"run", WriteSpec(dir, "v1-changed.yaml", changed), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0);
  EXPECT_NE(err.find("spec hash"), std::string::npos) << err;
  EXPECT_NE(err.find("version"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one clear line: " << err;

  // An operational change (checkpoint interval) is not a logic change.
  SpecOptions tuned = spec;
  tuned.checkpoint_interval = "250ms";
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "v1-tuned.yaml", tuned), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  // It resumed at the end: nothing new to read, nothing re-emitted.
  const TopicContents outputs = ReadOutputs(Config(), "user-spend-hourly.v1");
  ASSERT_GT(outputs.total, 0);
  EXPECT_EQ(outputs.total, static_cast<int64_t>(outputs.rows.size()));
  EXPECT_EQ(MetricsField(ReadFile(dir / "state/metrics.json"), "records_in"), 5000);
}

TEST_F(VersionGuardTest, TruncatedHistoryIsAnErrorUnlessAccepted) {
  // One partition and more than 5 MiB: the embedded broker drops the oldest
  // (a real one is told to, as retention would).
  CreateTopic("transactions", 1);
  Produce("transactions", 80000, 2);
  ASSERT_NO_FATAL_FAILURE(ExpireOldestRecords("transactions", 0));
  auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", "probe"}});
  ASSERT_TRUE(consumer.ok());
  auto marks = QueryWatermarks(consumer->get(), "transactions", 0, 10000);
  ASSERT_TRUE(marks.ok());
  ASSERT_GT(marks->low, 0) << "the broker kept everything; produce more to truncate";

  ScratchDir dir("truncated");
  SpecOptions spec;
  spec.state_dir = dir / "state";
  std::string out, err;
  EXPECT_NE(RunKappa({"run", WriteSpec(dir, "strict.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0);
  EXPECT_NE(err.find("transactions[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("0.." + std::to_string(marks->low - 1)), std::string::npos) << err;
  EXPECT_NE(err.find("allow_truncated_history"), std::string::npos) << err;

  spec.allow_truncated = true;
  spec.state_dir = dir / "lenient";
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "lenient.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  const std::string metrics = ReadFile(dir / "lenient/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "history_gap_records"), marks->low);
  EXPECT_EQ(MetricsField(metrics, "start_offset"), marks->low);
  EXPECT_EQ(MetricsField(metrics, "records_in"), marks->high - marks->low);
}

}  // namespace
}  // namespace kappa::testing
