// Story: the same version of a job run twice over the same topic, from fresh
// state, produces byte-identical output values for every key: the Kappa
// promise that one code path gives one answer, live or replayed.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class DeterminismTest : public BrokerTest {};

TEST_F(DeterminismTest, TwoRunsOfOneVersionGiveByteIdenticalOutputs) {
  CreateTopic("transactions", 8);
  GeneratorOptions gen = SmallWorkload(99, 50000, 1000, 2);
  gen.out_of_order_fraction = 0.1;
  gen.max_delay_ms = 30 * 60 * 1000;
  gen.duplicate_fraction = 0.05;
  gen.malformed_fraction = 0.01;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", gen));
  ExpectLogStartsAtZero(Config(), "transactions");
  ScratchDir dir("determinism");

  SpecOptions spec;
  spec.state_dir = dir / "first";
  std::string err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "first.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;
  const TopicContents first = ReadOutputs(Config(), "user-spend-hourly.v1");
  ASSERT_GT(first.rows.size(), 100u);
  ASSERT_EQ(first.total, static_cast<int64_t>(first.rows.size()));

  // Same spec, same version, fresh state, different checkpoint cadence (an
  // operational knob, so the same spec hash): outputs land in the same topic.
  spec.state_dir = dir / "second";
  spec.checkpoint_interval = "100ms";
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "second.yaml", spec), "-b", bootstrap(), "--stop-at-end",
                      "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;
  const TopicContents both = ReadOutputs(Config(), "user-spend-hourly.v1");
  EXPECT_EQ(both.total, 2 * first.total) << "the second run emits every row once more";
  EXPECT_TRUE(both.all_copies_identical) << "the second run produced a different value for some key";
  EXPECT_EQ(both.rows.size(), first.rows.size());
  for (const auto& [key, n] : both.copies) EXPECT_EQ(n, 2) << key;
  for (const auto& [key, row] : first.rows) {
    ASSERT_TRUE(both.rows.count(key)) << key;
    EXPECT_EQ(both.rows.at(key).headers, row.headers) << "lineage differs for " << key;
  }
}

}  // namespace
}  // namespace kappa::testing
