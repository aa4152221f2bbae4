// Issue 12: a point-in-time feature job. A rolling 7-day window over the JSON
// workload writes one row per accepted record (its key's count, spend, max
// and distinct currencies over the 7 days up to that record's event time).
// Killed with SIGKILL at exact checkpoint points and at random moments, then
// run to the end, it converges to the rows of one uninterrupted run: every
// row present, every duplicate byte-identical, counters equal. (Each row is
// compared with a brute-force computation of the definition in
// tests/operators/rolling_window_test.cc.)
#include <signal.h>

#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"
#include "workload/event_encoding.h"

namespace kappa::testing {
namespace {

class RollingFeaturesTest : public BrokerTest {};

std::string RollingSpec(const ScratchDir& dir, const std::string& name, const std::string& sink,
                        const std::string& checkpoint) {
  SpecOptions o;
  o.job = "rolling-" + name;
  o.source = "payments-json";
  o.sink = sink;
  o.state_dir = dir / name;
  o.checkpoint_interval = checkpoint;
  std::string text = ReadFile(WriteDeclaredSpec(dir, o, kJsonSource, name + "-base.yaml"));
  const std::string window = "{type: tumbling, size: 1h, key: user_id, aggregates: [count, sum, min, max, avg]}";
  const size_t at = text.find(window);
  EXPECT_NE(at, std::string::npos) << text;
  text.replace(at, window.size(),
               "{type: rolling, size: 7d, key: user_id, features: {txn_count_7d: count, spend_7d: "
               "sum(amount_cents), max_amount_7d: max(amount_cents), currencies_7d: count_distinct(currency)}}");
  const std::string path = dir / (name + ".yaml");
  std::ofstream(path) << text;
  return path;
}

TEST_F(RollingFeaturesTest, KilledRunsConvergeToTheRowsOfAnUninterruptedRun) {
  KAPPA_REQUIRE_TEST_HOOKS();
  CreateTopic("payments-json", 4);
  CreateTopic("rolling-clean-out.v1", 4);
  CreateTopic("rolling-crashy-out.v1", 4);
  // 12 days of events, so 7-day ranges fill and old events are evicted.
  GeneratorOptions gen = SmallWorkload(46, 16000, 300, 16000.0 / (12 * 86400));
  gen.out_of_order_fraction = 0.05;
  gen.max_delay_ms = 20 * 60 * 1000;
  gen.duplicate_fraction = 0.02;
  EncodingOptions json;
  json.format = EventFormat::kJson;
  ASSERT_TRUE(ProduceEvents(Config(), "payments-json", gen, {}, json).ok());
  ScratchDir dir("rolling");
  std::string err;
  ASSERT_EQ(RunKappa({"run", RollingSpec(dir, "clean", "rolling-clean-out", "1s"), "-b", bootstrap(),
                      "--stop-at-end", "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;

  const std::vector<std::string> args = {"run", RollingSpec(dir, "crashy", "rolling-crashy-out", "150ms"),
                                         "-b", bootstrap(), "--stop-at-end", "--max-rate", "8000",
                                         "--status-interval-ms", "0"};
  for (const char* point : {"after-flush:2", "before-flush:3"}) {
    setenv("KAPPA_TEST_KILL_AT", point, 1);
    ChildProcess child(args, "killat");
    const int rc = child.WaitFor(120000);
    unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << point << ": " << child.Stderr();
  }
  std::mt19937 rng(99);
  int killed = 0;
  for (int i = 0; i < 4; ++i) {
    ChildProcess child(args, "random");
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 400));
    child.Kill(SIGKILL);
    const int rc = child.Wait();
    if (rc == 0) break;
    ASSERT_EQ(rc, 128 + SIGKILL) << child.Stderr();
    ++killed;
  }
  EXPECT_GE(killed, 1) << "the job finished too fast for the kills to land mid-run";
  ASSERT_EQ(RunKappa(args, nullptr, &err), 0) << err;

  const TopicContents want = ReadOutputs(Config(), "rolling-clean-out.v1");
  const TopicContents got = ReadOutputs(Config(), "rolling-crashy-out.v1");
  const std::string clean_metrics = ReadFile(dir / "clean/metrics.json");
  // One row per accepted record.
  ASSERT_EQ(static_cast<int64_t>(want.rows.size()), MetricsField(clean_metrics, "records_out"));
  ASSERT_GT(want.rows.size(), 10000u);
  EXPECT_TRUE(got.all_copies_identical) << "a re-emitted row differs from its first emission";
  ASSERT_EQ(got.rows.size(), want.rows.size());
  size_t different = 0;
  int64_t max_count = 0;
  for (const auto& [key, row] : want.rows) {
    auto it = got.rows.find(key);
    ASSERT_NE(it, got.rows.end()) << key;
    if (it->second.value != row.value) ++different;
    const size_t at = row.value.find("\"txn_count_7d\":");
    ASSERT_NE(at, std::string::npos) << row.value;
    max_count = std::max<int64_t>(max_count, std::stoll(row.value.substr(at + 15)));
  }
  EXPECT_EQ(different, 0u);
  EXPECT_GT(max_count, 20) << "7-day ranges hold many records of a key";
  const std::string metrics = ReadFile(dir / "crashy/metrics.json");
  for (const char* field : {"records_in", "records_out", "deduped", "filtered", "late", "dlq", "outputs"}) {
    EXPECT_EQ(MetricsField(metrics, field), MetricsField(clean_metrics, field)) << field;
  }
}

}  // namespace
}  // namespace kappa::testing
