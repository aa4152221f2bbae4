// Story: 200,000 generated transactions with duplicate sends, out-of-order
// and malformed records over 12 partitions go through the user-spend job
// (dedup, drop cancelled, hourly tumbling window) to the end of the log.
// Every output row equals what the test computes itself from the generated
// events, lineage headers name the job and input, and the counters account
// for every input record.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/reference_model.h"

namespace kappa::testing {
namespace {

class PipelineAggregatesTest : public BrokerTest {};

TEST_F(PipelineAggregatesTest, EveryOutputMatchesIndependentComputationAndCountersBalance) {
  constexpr int kPartitions = 12;
  CreateTopic("transactions", kPartitions);
  GeneratorOptions gen = SmallWorkload(42, 200000, 3000, 5);  // ~11 hours of event time
  gen.out_of_order_fraction = 0.05;
  gen.max_delay_ms = 20 * 60 * 1000;  // some beyond the 10 min lateness: late records
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.01;
  ProduceSummary produced;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", gen, &produced));
  ExpectLogStartsAtZero(Config(), "transactions");

  ScratchDir dir("pipeline");
  SpecOptions spec;
  spec.state_dir = dir / "state";
  const std::string spec_path = WriteSpec(dir, "job.yaml", spec);
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", spec_path, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &out, &err), 0)
      << err;

  ModelSpec model_spec;
  model_spec.lateness_ms = 10 * 60 * 1000;
  const ModelResult expected = RunModel(gen, kPartitions, model_spec);
  ASSERT_GT(expected.late, 0) << "the workload must exercise late records";
  ASSERT_GT(expected.deduped, 0);
  ASSERT_GT(expected.filtered, 0);
  ASSERT_GT(expected.dlq, 0);

  const TopicContents outputs = ReadOutputs(Config(), "user-spend-hourly.v1");
  EXPECT_EQ(outputs.rows.size(), expected.windows.size());
  EXPECT_EQ(outputs.total, static_cast<int64_t>(expected.windows.size())) << "a clean run emits each window once";
  int64_t compared = 0;
  for (const auto& [key, want] : expected.windows) {
    auto it = outputs.rows.find(key);
    if (it == outputs.rows.end()) {
      ADD_FAILURE() << "missing output " << key;
      continue;
    }
    const auto* w = AsWindow(it->second.value);
    ASSERT_NE(w, nullptr) << key;
    EXPECT_EQ(w->count(), want.count) << key;
    EXPECT_EQ(w->sum(), want.sum) << key;
    EXPECT_EQ(w->min(), want.min) << key;
    EXPECT_EQ(w->max(), want.max) << key;
    EXPECT_DOUBLE_EQ(w->avg(), static_cast<double>(want.sum) / want.count) << key;
    EXPECT_EQ(w->first_offset(), want.first_offset) << key;
    EXPECT_EQ(w->last_offset(), want.last_offset) << key;
    EXPECT_EQ(key, w->key()->str() + "|" + std::to_string(w->window_end_ms()));
    // Lineage headers.
    const auto& h = it->second.headers;
    EXPECT_EQ(h.at("kappa.job"), "user-spend");
    EXPECT_EQ(h.at("kappa.version"), "1");
    EXPECT_EQ(h.at("kappa.spec_hash").size(), 16u);
    EXPECT_EQ(h.at("kappa.input"), "transactions");
    EXPECT_EQ(h.at("kappa.partition"), std::to_string(PartitionForKey(w->key()->str(), kPartitions)));
    EXPECT_EQ(h.at("kappa.offsets"), std::to_string(want.first_offset) + "-" + std::to_string(want.last_offset));
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int64_t>(expected.windows.size()));

  // Every input record is accounted for, on the path the model says.
  const std::string metrics = ReadFile(dir / "state/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "records_in"), static_cast<int64_t>(gen.count));
  EXPECT_EQ(MetricsField(metrics, "records_in"), expected.in);
  EXPECT_EQ(MetricsField(metrics, "records_out"), expected.out);
  EXPECT_EQ(MetricsField(metrics, "deduped"), expected.deduped);
  EXPECT_EQ(MetricsField(metrics, "filtered"), expected.filtered);
  EXPECT_EQ(MetricsField(metrics, "late"), expected.late);
  EXPECT_EQ(MetricsField(metrics, "dlq"), expected.dlq);
  EXPECT_EQ(MetricsField(metrics, "records_in"),
            MetricsField(metrics, "records_out") + MetricsField(metrics, "deduped") +
                MetricsField(metrics, "filtered") + MetricsField(metrics, "late") + MetricsField(metrics, "dlq"));
  EXPECT_NE(out.find("in 200000 = out"), std::string::npos) << out;

  // The side outputs hold exactly the DLQ'd and late records.
  const TopicContents dlq = ReadOutputs(Config(), "user-spend.dlq");
  EXPECT_EQ(dlq.total, expected.dlq);
  EXPECT_EQ(static_cast<uint64_t>(dlq.total), produced.stats.malformed());
  const TopicContents late = ReadOutputs(Config(), "user-spend.late");
  EXPECT_EQ(late.total, expected.late);
  // Each late record names where it came from, with its own Kafka timestamp
  // (a bug bash: the late topic's wall-clock stamp was all it had, so a job
  // whose event time is kafka.timestamp lost it).
  std::map<std::pair<int32_t, int64_t>, int64_t> source_timestamps;
  auto source = ReadTopic(Config(), "transactions", [&](const ConsumedRecord& r) {
    source_timestamps[{r.partition, r.offset}] = r.timestamp_ms;
  });
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  int64_t checked = 0;
  auto late_read = ReadTopic(Config(), "user-spend.late", [&](const ConsumedRecord& r) {
    EXPECT_EQ(r.Header("kappa.input"), "transactions");
    const std::pair<int32_t, int64_t> at{std::stoi(r.Header("kappa.partition")), std::stoll(r.Header("kappa.offset"))};
    ASSERT_TRUE(source_timestamps.count(at)) << at.first << "@" << at.second;
    EXPECT_EQ(r.Header("kappa.timestamp_ms"), std::to_string(source_timestamps.at(at)));
    ++checked;
  });
  ASSERT_TRUE(late_read.ok()) << late_read.status().ToString();
  EXPECT_EQ(checked, expected.late);
}

}  // namespace
}  // namespace kappa::testing
