// JobMetrics' history for the status page (issue 15): one point per
// published sample with the rate over the second before it and the lag,
// bounded to the last five minutes, so a page opened during a long run draws
// the last minutes at once and a job running for days keeps 300 points.
// And the metrics file: one that cannot be replaced says why.
#include "engine/job_metrics.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "engine/job_progress.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

JobMetricsSample Sample(int64_t now_ms, int64_t in, int64_t log_end) {
  JobMetricsSample s;
  s.now_ms = now_ms;
  s.progress.counters.in = in;
  PartitionProgress p;
  p.partition = 0;
  p.position = in;
  p.log_end = log_end;
  s.progress.partitions.push_back(p);
  return s;
}

TEST(JobMetricsHistory, KeepsTheLastFiveMinutesOfRatesAndLag) {
  JobSpec spec;
  spec.job = "h";
  spec.version = 3;
  JobMetrics metrics(spec, nullptr);
  EXPECT_FALSE(metrics.Snapshot().has_sample);
  const int64_t t0 = 1'700'000'000'000;
  // An hour at 500 records/s, one sample a second, the log end 10,000 ahead.
  for (int64_t i = 0; i <= 3600; ++i) metrics.Publish(Sample(t0 + i * 1000, i * 500, i * 500 + 10'000));
  const JobMetrics::View v = metrics.Snapshot();
  ASSERT_TRUE(v.has_sample);
  EXPECT_EQ(v.job, "h");
  EXPECT_EQ(v.version, "3");
  EXPECT_EQ(v.in_per_s, 500);
  ASSERT_EQ(v.history.size(), 301u);  // 5 minutes of one-second samples, both ends included
  EXPECT_EQ(v.history.front().ms, t0 + 3300 * 1000);
  EXPECT_EQ(v.history.back().ms, t0 + 3600 * 1000);
  for (const auto& point : v.history) {
    EXPECT_EQ(point.in_per_s, 500);
    EXPECT_EQ(point.lag, 10'000);
  }
}

// A scaled-out process's counters were the sum over the partitions it
// held: they dropped when a rebalance took one away and jumped by a
// taken-over partition's whole history, which also fired the DLQ alert (a
// bug bash). The process's own counters only grow, by what each held
// partition adds between two samples.
// A bug bash: until the first sample (a restore of the state lasts it) the
// endpoint answered 200 with an empty body, a scrape with no series.
TEST(JobMetricsRender, BeforeTheFirstSampleTheJobSaysItIsStarting) {
  JobSpec spec;
  spec.job = "st";
  spec.version = 2;
  JobMetrics metrics(spec, nullptr);
  const std::string before = metrics.Render();
  EXPECT_NE(before.find("# TYPE kappa_info gauge"), std::string::npos) << before;
  EXPECT_NE(before.find("kappa_info{job=\"st\",version=\"2\""), std::string::npos) << before;
  EXPECT_NE(before.find("kappa_starting{job=\"st\",version=\"2\"} 1\n"), std::string::npos) << before;
  EXPECT_EQ(before.find("kappa_records_in_total"), std::string::npos) << before;
  JobMetricsSample s;
  s.now_ms = 1'700'000'000'000;
  metrics.Publish(std::move(s));
  const std::string after = metrics.Render();
  EXPECT_NE(after.find("kappa_starting{job=\"st\",version=\"2\"} 0\n"), std::string::npos) << after;
  EXPECT_NE(after.find("kappa_records_in_total{job=\"st\",version=\"2\"} 0"), std::string::npos) << after;
}

TEST(JobMetricsCounters, AScaledOutProcessesCountersOnlyGrowAcrossRebalances) {
  JobSpec spec;
  spec.job = "so";
  spec.version = 1;
  spec.alerts.dlq_per_hour = 1000;
  JobMetrics metrics(spec, nullptr);  // one process: its counters are the job's
  const int64_t t0 = 1'700'000'000'000;
  auto counters = [](int64_t in, int64_t dlq) {
    RecordCounters c;
    c.in = in;
    c.dlq = dlq;
    c.out = in - dlq;
    return c;
  };
  auto publish = [&](int64_t second, std::vector<std::pair<int32_t, RecordCounters>> parts) {
    JobMetricsSample s;
    s.now_ms = t0 + second * 1000;
    for (const auto& [p, c] : parts) s.progress.counters.Add(c);
    s.partition_counters = std::move(parts);
    metrics.Publish(std::move(s));
    return metrics.Snapshot().latest.progress.counters;
  };
  EXPECT_EQ(publish(0, {{0, counters(10, 0)}, {1, counters(20, 0)}}).in, 30) << "restored counters, as they were";
  EXPECT_EQ(publish(10, {{0, counters(15, 0)}}).in, 35) << "partition 1 went to another process";
  // Partition 2 taken over with 100,000 records and 500 dead letters behind it.
  const RecordCounters taken = publish(20, {{0, counters(15, 0)}, {2, counters(100000, 500)}});
  EXPECT_EQ(taken.in, 35);
  EXPECT_EQ(taken.dlq, 0);
  const RecordCounters later = publish(30, {{0, counters(16, 0)}, {2, counters(100002, 501)}});
  EXPECT_EQ(later.in, 38);
  EXPECT_EQ(later.dlq, 1);
  for (const auto& [name, on] : metrics.Alerts()) {
    if (name == "dlq_per_hour") {
      EXPECT_FALSE(on) << "one dead letter in 30 s is 120 an hour";
    }
  }
  EXPECT_NE(metrics.Render().find("kappa_records_in_total{job=\"so\",version=\"1\"} 38"), std::string::npos)
      << metrics.Render();
}

// A bug bash: an instance starting with partitions another instance had
// run exported their restored counters, which the other's series held too:
// summed over the instances, 101,032 records read of 80,000. Scaled out, an
// instance's counters count what it read since it began.
TEST(JobMetricsCounters, AScaledOutInstanceCountsWhatItReadNotWhatItRestored) {
  JobSpec spec;
  spec.job = "so";
  spec.version = 1;
  spec.scale_out.enabled = true;
  JobMetrics metrics(spec, nullptr);
  const int64_t t0 = 1'700'000'000'000;
  auto publish = [&](int64_t second, std::vector<std::pair<int32_t, int64_t>> parts) {
    JobMetricsSample s;
    s.now_ms = t0 + second * 1000;
    for (const auto& [p, in] : parts) {
      RecordCounters c;
      c.in = c.out = in;
      s.progress.counters.Add(c);
      s.partition_counters.emplace_back(p, c);
    }
    metrics.Publish(std::move(s));
    return metrics.Snapshot().latest.progress.counters.in;
  };
  EXPECT_EQ(publish(0, {{0, 30000}, {1, 5000}}), 0) << "restored: the previous owners' counts";
  EXPECT_EQ(publish(1, {{0, 30100}, {1, 5050}}), 150);
  EXPECT_EQ(publish(2, {{0, 30200}, {1, 5050}, {2, 9000}}), 250) << "partition 2 taken over";
  EXPECT_EQ(publish(3, {{0, 30200}, {1, 5050}, {2, 9010}}), 260);
  EXPECT_NE(metrics.Render().find("kappa_records_in_total{job=\"so\",version=\"1\"} 260"), std::string::npos)
      << metrics.Render();
  EXPECT_NE(metrics.Render().find("this instance read since it started"), std::string::npos);
}

// A bug bash: "WARNING alert late_fraction firing: 0 > 1e-04" for a late
// fraction of 0.000168 (the value rounded to 3 decimals, the threshold
// not). The line is true: as many digits as that takes.
TEST(JobMetricsAlerts, AnAlertLineIsTrueForSmallThresholds) {
  JobSpec spec;
  spec.job = "lf";
  spec.version = 1;
  spec.alerts.late_fraction = 0.0001;
  spec.alerts.dlq_per_hour = 63692.25;
  std::vector<std::string> notes;
  JobMetrics metrics(spec, [&](NoteLevel, const std::string& text) { notes.push_back(text); });
  const int64_t t0 = 1'700'000'000'000;
  auto publish = [&](int64_t second, int64_t in, int64_t late, int64_t dlq) {
    JobMetricsSample s;
    s.now_ms = t0 + second * 1000;
    s.progress.counters.in = in;
    s.progress.counters.late = late;
    s.progress.counters.dlq = dlq;
    metrics.Publish(std::move(s));
  };
  publish(0, 0, 0, 0);
  publish(10, 1'000'000, 168, 1770);  // 0.000168 late; 637,200 dead letters an hour
  std::string all;
  for (const auto& n : notes) all += n + "\n";
  EXPECT_NE(all.find("alert late_fraction firing: 0.000168 > 1e-04 ("), std::string::npos) << all;
  EXPECT_NE(all.find("alert dlq_per_hour firing: 637200 > 63692.25 ("), std::string::npos) << all;
  // Just over the threshold: still true as printed.
  std::vector<std::string> close;
  JobMetrics edge(spec, [&](NoteLevel, const std::string& text) { close.push_back(text); });
  JobMetricsSample s0;
  s0.now_ms = t0;
  edge.Publish(std::move(s0));
  JobMetricsSample s1;
  s1.now_ms = t0 + 10'000;
  s1.progress.counters.in = 1'000'000;
  s1.progress.counters.late = 101;
  edge.Publish(std::move(s1));
  all.clear();
  for (const auto& n : close) all += n + "\n";
  EXPECT_NE(all.find("alert late_fraction firing: 0.000101 > 1e-04 ("), std::string::npos) << all;
}

// metrics.json replaced by a directory: the error was "cannot rename
// .../metrics.json.tmp to .../metrics.json", with neither cause nor remedy,
// and the temporary file stayed.
TEST(MetricsFileTest, AMetricsPathThatIsADirectorySaysSoAndLeavesNoTemporaryFile) {
  testing::ScratchDir dir("metrics_file_dir");
  const std::string path = dir / "metrics.json";
  std::filesystem::create_directories(path + "/inside");
  const Status st = WriteMetricsText(path, "{}\n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("it is a directory"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("the checkpoint itself is durable"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // deploy and replay have no --metrics-file: said as run's (a bug bash).
  EXPECT_NE(st.message().find("kappa run can also write it elsewhere, --metrics-file"), std::string::npos)
      << st.ToString();
  ASSERT_TRUE(WriteMetricsText(dir / "ok.json", "{}\n").ok());
}

// A full disk: the write failed with the cause alone, and an empty .tmp
// stayed behind (a bug bash). /dev/full answers every write with ENOSPC.
TEST(MetricsFileTest, AFullDiskSaysWhatToDoAndLeavesNoTemporaryFile) {
  testing::ScratchDir dir("metrics_file_full");
  const std::string path = dir / "metrics.json";
  std::filesystem::create_symlink("/dev/full", path + ".tmp");
  const Status st = WriteMetricsText(path, std::string(1 << 16, 'x'));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("No space left on device (free space on its file system"), std::string::npos)
      << st.ToString();
  EXPECT_NE(st.message().find("the checkpoint itself is durable"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path + ".tmp")));
}

}  // namespace
}  // namespace kappa
