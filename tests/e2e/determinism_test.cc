// Story: the same version of a job run twice over the same topic, from fresh
// state, produces byte-identical output values for every key: the Kappa
// promise that one code path gives one answer, live or replayed.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class DeterminismTest : public BrokerTest {
 protected:
  // `count` transactions into `transactions` (8 partitions) with every kind
  // of disorder: out of order, duplicate sends, malformed records.
  void ProduceDisorderly(uint64_t seed, uint64_t count) {
    CreateTopic("transactions", 8);
    GeneratorOptions gen = SmallWorkload(seed, count, 1000, 2);
    gen.out_of_order_fraction = 0.1;
    gen.max_delay_ms = 30 * 60 * 1000;
    gen.duplicate_fraction = 0.05;
    gen.malformed_fraction = 0.01;
    ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", gen));
  }
};

TEST_F(DeterminismTest, TwoRunsOfOneVersionGiveByteIdenticalOutputs) {
  ASSERT_NO_FATAL_FAILURE(ProduceDisorderly(99, 50000));
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

TEST_F(DeterminismTest, WorkerThreadsInTheKafkaPhaseGiveTheOutputsOfOneThread) {
  ASSERT_NO_FATAL_FAILURE(ProduceDisorderly(98, 40000));
  ScratchDir dir("determinism-threads");
  std::map<int, TopicContents> outputs;
  std::map<int, std::string> metrics;
  for (int threads : {1, 2}) {
    SpecOptions spec;
    spec.sink = "threads-" + std::to_string(threads);
    spec.state_dir = dir / spec.sink;
    spec.checkpoint_interval = "200ms";
    std::string err;
    ASSERT_EQ(RunKappa({"run", WriteSpec(dir, spec.sink + ".yaml", spec), "-b", bootstrap(), "--stop-at-end",
                        "--parallelism", std::to_string(threads), "--status-interval-ms", "0"},
                       nullptr, &err),
              0)
        << err;
    outputs[threads] = ReadOutputs(Config(), spec.sink + ".v1");
    metrics[threads] = ReadFile(spec.state_dir + "/metrics.json");
  }
  ASSERT_GT(outputs[1].rows.size(), 100u);
  ASSERT_EQ(outputs[2].rows.size(), outputs[1].rows.size());
  for (const auto& [key, row] : outputs[1].rows) {
    ASSERT_TRUE(outputs[2].rows.count(key)) << key;
    EXPECT_EQ(outputs[2].rows.at(key).value, row.value) << key;
    // Lineage the same (the spec hash differs: the two runs write different topics).
    auto a = outputs[2].rows.at(key).headers, b = row.headers;
    a.erase("kappa.spec_hash");
    b.erase("kappa.spec_hash");
    EXPECT_EQ(a, b) << key;
  }
  for (const char* field : {"records_in", "records_out", "deduped", "late", "dlq", "outputs"}) {
    EXPECT_EQ(MetricsField(metrics[2], field), MetricsField(metrics[1], field)) << field;
  }
}

}  // namespace
}  // namespace kappa::testing
