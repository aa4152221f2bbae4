// A bounded backfill finishes like a batch job (issue 10 item 10): with
// --final-watermark, a run that reaches the end of its input (--stop-at-end
// on Kafka, --archive-only on the log archive) emits every window still
// open, and the outputs equal an independent computation that closes every
// window at the end; without it the still-open windows stay in state, as a
// live run's must. The flag is refused for an unbounded run.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/reference_model.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class BoundedBackfillTest : public BrokerTest {
 protected:
  void ExpectOutputsEqual(const TopicContents& outputs, const ModelResult& expected) {
    EXPECT_EQ(outputs.total, static_cast<int64_t>(expected.windows.size())) << "each window once";
    ASSERT_EQ(outputs.rows.size(), expected.windows.size());
    for (const auto& [key, w] : expected.windows) {
      auto it = outputs.rows.find(key);
      ASSERT_NE(it, outputs.rows.end()) << key;
      const auto* agg = AsWindow(it->second.value);
      ASSERT_NE(agg, nullptr) << key;
      EXPECT_EQ(agg->count(), w.count) << key;
      EXPECT_EQ(agg->sum(), w.sum) << key;
    }
  }
};

TEST_F(BoundedBackfillTest, FinalWatermarkEmitsEveryOpenWindowAtTheEndOfABoundedRun) {
  constexpr int kPartitions = 4;
  CreateTopic("transactions", kPartitions);
  GeneratorOptions gen = SmallWorkload(7, 30000, 400, 2);
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.005;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", gen));
  ScratchDir dir("bounded");
  ModelSpec model;
  model.lateness_ms = 10 * 60 * 1000;
  const ModelResult open_windows_kept = RunModel(gen, kPartitions, model);
  model.end_of_input = true;
  const ModelResult all_windows = RunModel(gen, kPartitions, model);
  ASSERT_GT(all_windows.windows.size(), open_windows_kept.windows.size())
      << "the workload must end with windows still open";

  std::string out, err;
  // Kafka, --stop-at-end, no final watermark: the open windows stay open.
  SpecOptions live;
  live.sink = "kept-open";
  live.state_dir = dir / "kept-open";
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "kept.yaml", live), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  ExpectOutputsEqual(ReadOutputs(Config(), "kept-open.v1"), open_windows_kept);

  // Kafka, --stop-at-end --final-watermark: every window, as a batch job.
  SpecOptions bounded;
  bounded.sink = "bounded";
  bounded.state_dir = dir / "bounded";
  const std::string bounded_spec = WriteSpec(dir, "bounded.yaml", bounded);
  ASSERT_EQ(RunKappa({"run", bounded_spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  EXPECT_NE(err.find("end of input: the final watermark emitted"), std::string::npos) << err;
  ExpectOutputsEqual(ReadOutputs(Config(), "bounded.v1"), all_windows);
  // Run again: the input stays over; nothing is emitted twice.
  ASSERT_EQ(RunKappa({"run", bounded_spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  ExpectOutputsEqual(ReadOutputs(Config(), "bounded.v1"), all_windows);

  // The archive, --archive-only --final-watermark: the same answer.
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"}, &out, &err), 0) << err;
  SpecOptions archived;
  archived.sink = "from-archive";
  archived.state_dir = dir / "from-archive";
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "archived.yaml", archived), "-b", bootstrap(), "--archive", dir / "arch",
                      "--archive-only", "--parallelism", "2", "--final-watermark", "--status-interval-ms", "0"},
                     &out, &err), 0) << err;
  ExpectOutputsEqual(ReadOutputs(Config(), "from-archive.v1"), all_windows);
}

TEST_F(BoundedBackfillTest, FinalWatermarkIsRefusedForAnUnboundedRun) {
  ScratchDir dir("unbounded");
  SpecOptions o;
  o.state_dir = dir / "state";
  std::string out, err;
  EXPECT_EQ(RunKappa({"run", WriteSpec(dir, "job.yaml", o), "-b", bootstrap(), "--final-watermark"}, &out, &err), 2);
  EXPECT_NE(err.find("--stop-at-end or --archive-only"), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
