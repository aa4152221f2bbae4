// Replays that protect the live job (issue 15, point 5). `kappa throttle`
// changes a running version's rate cap, pauses and resumes it through the
// registry, and the change takes effect within one status interval (1 s);
// `kappa replay --protect-live-lag L` slows a full-speed replay whenever the
// serving version's reported lag exceeds L, so the live version keeps up
// while the replay shares the machine and the broker with it.
//
// Set KAPPA_PROTECT_BENCH_OUT=FILE to append the protect-live-lag numbers
// (lag max/p99, latency p99, with and without) to FILE
// (scripts/bench_protect_live.sh), KAPPA_PROTECT_BENCH_SECONDS to measure
// longer than the test's 12 s.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "replay/registry.h"
#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class ThrottleTest : public BrokerTest {
 protected:
  std::string Spec(const ScratchDir& dir, const std::string& job, const std::string& topic, int version) {
    SpecOptions o;
    o.job = job;
    o.version = version;
    o.source = topic;
    o.sink = job + "-hourly";
    o.checkpoint_interval = "200ms";
    o.state_dir = dir / (job + "-v" + std::to_string(version));
    return WriteSpec(dir, job + "-v" + std::to_string(version) + ".yaml", o);
  }
  std::vector<std::string> Cmd(std::vector<std::string> args) {
    args.insert(args.end(), {"-b", bootstrap()});
    return args;
  }
  // records_in of a version's durable metrics (-1 before its first checkpoint).
  static int64_t RecordsIn(const std::string& metrics_path) {
    const std::string m = ReadFile(metrics_path);
    std::smatch match;
    static const std::regex re("\"records_in\": (-?[0-9]+)");
    if (!std::regex_search(m, match, re)) return -1;
    return std::stoll(match[1]);
  }
  void WaitForRecordsIn(const std::string& metrics_path, int64_t want, int timeout_s = 60) {
    const auto start = Clock::now();
    while (SecondsSince(start) < timeout_s) {
      if (RecordsIn(metrics_path) >= want) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << metrics_path << " never reached records_in " << want << ": " << ReadFile(metrics_path);
  }
  struct Sample {
    double t;  // seconds since the samples' start
    int64_t in;
  };
  // records_in every 50 ms for `seconds`.
  static std::vector<Sample> SampleFor(const std::string& metrics_path, double seconds) {
    std::vector<Sample> samples;
    const auto start = Clock::now();
    while (SecondsSince(start) < seconds) {
      samples.push_back({SecondsSince(start), RecordsIn(metrics_path)});
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return samples;
  }
  // records_in at time t (the last sample at or before it).
  static int64_t At(const std::vector<Sample>& s, double t) {
    int64_t v = s.front().in;
    for (const auto& x : s) {
      if (x.t > t) break;
      v = x.in;
    }
    return v;
  }
  // records_in per second from the first sample to the last.
  static double RateOf(const std::vector<Sample>& s) {
    return (s.back().in - s.front().in) / (s.back().t - s.front().t);
  }
  static std::string Show(const std::vector<Sample>& s) {
    std::string out;
    for (const auto& x : s) out += std::to_string(x.t).substr(0, 4) + ":" + std::to_string(x.in) + " ";
    return out;
  }
  // Records read per second by two instances together over `seconds`
  // (from their metrics files); *shown: the samples, for a failure.
  static double TwoInstancesRate(const std::string& a, const std::string& b, double seconds, std::string* shown) {
    auto sa = SampleFor(a, 0.05);
    auto sb = SampleFor(b, 0.05);
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    auto ea = SampleFor(a, 0.05);
    auto eb = SampleFor(b, 0.05);
    *shown = "a " + Show(sa) + Show(ea) + " b " + Show(sb) + Show(eb);
    return static_cast<double>(ea.back().in - sa.front().in + eb.back().in - sb.front().in) / SecondsSince(start);
  }
  void Throttle(const std::string& job, int version, std::vector<std::string> what, std::string* out) {
    std::vector<std::string> args = {"throttle", job, "--version", std::to_string(version)};
    args.insert(args.end(), what.begin(), what.end());
    std::string err;
    ASSERT_EQ(RunKappa(Cmd(args), out, &err), 0) << *out << err;
  }
};

// The status interval of the story below (2 s), and how long after `kappa
// throttle` returns its effect must show in the metrics: one status interval.
// It covers the registry poll (every 1 s) and the checkpoint interval (200 ms)
// through which metrics.json reports, with a margin for a loaded 2-core box.
constexpr double kEffectS = 2.0;

TEST_F(ThrottleTest, MaxRatePauseAndResumeTakeEffectWithinOneStatusInterval) {
  CreateTopic("throttled", 8);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "throttled", SmallWorkload(1, 100000, 20000)));
  ScratchDir dir("throttle");
  const std::string metrics = dir / "thr-v1/metrics.json";
  ChildProcess v1(Cmd({"deploy", Spec(dir, "thr", "throttled", 1), "--max-rate", "2000", "--status-interval-ms",
                       "2000"}),
                  "thr-v1");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(metrics, 1));

  // At its start cap: about 2000 rec/s.
  auto before = SampleFor(metrics, 2.0);
  const double r0 = (At(before, 2.0) - At(before, 0.0)) / 2.0;
  EXPECT_GT(r0, 1000) << Show(before);
  EXPECT_LT(r0, 3000) << Show(before);

  // Raised to 8000 rec/s: that rate from one status interval on.
  std::string out;
  ASSERT_NO_FATAL_FAILURE(Throttle("thr", 1, {"--max-rate", "8000"}, &out));
  EXPECT_NE(out.find("thr v1: max-rate 8000 rec/s"), std::string::npos) << out;
  auto raised = SampleFor(metrics, kEffectS + 2.0);
  const double r1 = (At(raised, kEffectS + 2.0) - At(raised, kEffectS)) / 2.0;
  // Above what the old cap allows over 2 s with its 1 s of burst (3000/s),
  // not the new cap itself: a job starved of CPU (a loaded machine ran it
  // at 3800/s) cannot show 8000/s, and that is no fault of the throttle.
  EXPECT_GT(r1, 3500) << "the new cap did not apply within " << kEffectS << " s: " << Show(raised);
  EXPECT_LT(r1, 10000) << Show(raised);
  std::string status, err;
  ASSERT_EQ(RunKappa(Cmd({"status", "thr"}), &status, &err), 0) << err;
  EXPECT_NE(status.find("throttle: max-rate 8000 rec/s"), std::string::npos) << status;
  // A second start of the running version is refused (its state is in use)
  // and leaves the registry as it was: it wrote "stopped" over the running
  // process's record, and a retire then deleted that process's state (a
  // bug bash).
  ASSERT_EQ(RunKappa(Cmd({"deploy", Spec(dir, "thr", "throttled", 1), "--status-interval-ms", "0"}), &out, &err), 1)
      << err;
  EXPECT_NE(err.find("in use by another kappa process"), std::string::npos) << err;
  ASSERT_EQ(RunKappa(Cmd({"status", "thr"}), &status, &err), 0) << err;
  EXPECT_NE(status.find("      running, "), std::string::npos) << status;
  EXPECT_EQ(status.find("stopped"), std::string::npos) << status;

  // Paused: nothing read from one status interval on, the process alive.
  // v1 serves: the command says what a pause of it means.
  ASSERT_EQ(RunKappa(Cmd({"throttle", "thr", "--version", "1", "--pause"}), &out, &err), 0) << err;
  EXPECT_NE(err.find("warning: thr v1 is the serving version: while it is paused its outputs stop"),
            std::string::npos)
      << err;
  auto paused = SampleFor(metrics, kEffectS + 2.5);
  EXPECT_EQ(At(paused, kEffectS), paused.back().in) << "still reading after --pause: " << Show(paused);
  EXPECT_LT(paused.back().in, 100000) << "the workload ran out before the pause could show";
  EXPECT_EQ(v1.WaitFor(0), -1) << v1.Stderr();
  ASSERT_EQ(RunKappa(Cmd({"status", "thr"}), &status, &err), 0) << err;
  EXPECT_NE(status.find("throttle: paused (max-rate 8000 rec/s on resume)"), std::string::npos) << status;

  // Resumed at the cap in force.
  ASSERT_NO_FATAL_FAILURE(Throttle("thr", 1, {"--resume"}, &out));
  auto resumed = SampleFor(metrics, kEffectS + 1.0);
  const double r2 = (At(resumed, kEffectS + 1.0) - At(resumed, kEffectS)) / 1.0;
  EXPECT_GT(r2, 4000) << "not reading again within " << kEffectS << " s of --resume: " << Show(resumed);

  v1.Kill(SIGTERM);
  EXPECT_EQ(v1.Wait(), 0) << v1.Stderr();
  EXPECT_NE(v1.Stderr().find("throttle: v1 paused"), std::string::npos) << v1.Stderr();
}

// `kappa throttle --max-rate` caps the version: with two scaled-out
// instances each read at the whole cap, 6,000 rec/s for a cap of 3,000 (a
// bug bash). Each now takes the share its partitions are of the source's.
// (`--max-rate` on the command line stays a cap of that process.)
TEST_F(ThrottleTest, AThrottleCapsAScaledOutVersionNotEachInstance) {
  CreateTopic("wide", 4);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "wide", SmallWorkload(3, 100000, 20000)));
  CreateTopic("wide.v1.changelog", 4, {{"cleanup.policy", "compact"}});
  ScratchDir dir("wide");
  const std::string spec = Spec(dir, "wide", "wide", 1);
  std::ofstream(spec, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  auto instance = [&](const std::string& name) {
    return Cmd({"deploy", spec, "--instance", name, "--state-dir", dir / name, "--max-rate", "1000",
                "--status-interval-ms", "500"});
  };
  ChildProcess a(instance("a"), "wide-a");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(dir / "a/metrics.json", 1));
  ChildProcess b(instance("b"), "wide-b");
  // Both hold partitions ("it runs K now" with K > 0 from each).
  auto runs = [](const ChildProcess& child) {
    const std::string err = child.Stderr();
    const size_t at = err.rfind("it runs ");
    return at == std::string::npos ? 0 : std::atoi(err.c_str() + at + 8);
  };
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while (runs(a) == 0 || runs(b) == 0) {
    ASSERT_LT(Clock::now(), deadline) << "the group did not give both instances partitions:\n"
                                      << a.Stderr() << "---\n" << b.Stderr();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string out;
  ASSERT_NO_FATAL_FAILURE(Throttle("wide", 1, {"--max-rate", "2000"}, &out));
  std::this_thread::sleep_for(std::chrono::duration<double>(kEffectS));
  std::string shown;
  const double rate = TwoInstancesRate(dir / "a/metrics.json", dir / "b/metrics.json", 4, &shown);
  ASSERT_TRUE(runs(a) > 0 && runs(b) > 0) << "an instance lost its partitions while measured";
  EXPECT_GT(rate, 1000) << shown;
  EXPECT_LT(rate, 2700) << "two instances read past the version's cap of 2000 rec/s together: " << shown;
  EXPECT_LT(RecordsIn(dir / "a/metrics.json") + RecordsIn(dir / "b/metrics.json"), 100000)
      << "the workload ran out while measured";
  for (ChildProcess* child : {&a, &b}) {
    child->Kill(SIGTERM);
    EXPECT_EQ(child->Wait(), 0) << child->Stderr();
  }
}

// A capped job that could not read for a while (stopped here with SIGSTOP,
// in life a slow checkpoint or a starved CPU) does not make the time up with
// a burst past its cap: the capped replay would take the CPU and the broker
// from the live version just when that one has a backlog too. It gets at
// most a fifth of a second of credit. (With a whole second, the first 1.5 s
// after the stall ran at 1.67x the cap: a ProtectLiveLagTest failure in CI.)
TEST_F(ThrottleTest, AStalledCappedJobDoesNotBurstPastItsCapAfterwards) {
  CreateTopic("stalled", 8);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "stalled", SmallWorkload(2, 60000, 20000)));
  ScratchDir dir("stalled");
  const std::string metrics = dir / "st-v1/metrics.json";
  ChildProcess v1(Cmd({"deploy", Spec(dir, "st", "stalled", 1), "--max-rate", "2000"}), "st-v1");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(metrics, 2000));
  v1.Kill(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  v1.Kill(SIGCONT);
  auto after = SampleFor(metrics, 2.0);
  const double rate = RateOf(after);
  EXPECT_GT(rate, 1000) << "not reading again after SIGCONT: " << Show(after);
  EXPECT_LT(rate, 2600) << "a burst past the 2000 rec/s cap after the stall: " << Show(after);
  v1.Kill(SIGTERM);
  EXPECT_EQ(v1.Wait(), 0) << v1.Stderr();
}

TEST_F(ThrottleTest, ThrottleRefusesWhatItCannotApply) {
  std::string out, err;
  EXPECT_EQ(RunKappa(Cmd({"throttle", "nosuchjob", "--version", "1", "--pause"}), &out, &err), 1);
  EXPECT_NE(err.find("no job nosuchjob"), std::string::npos) << err;
  EXPECT_EQ(RunKappa(Cmd({"throttle", "x", "--version", "1"}), &out, &err), 2);
  EXPECT_NE(err.find("--max-rate R, --pause or --resume"), std::string::npos) << err;
  EXPECT_EQ(RunKappa(Cmd({"throttle", "x", "--version", "1", "--pause", "--resume"}), &out, &err), 2);
  EXPECT_NE(err.find("exclude each other"), std::string::npos) << err;
}

// A bug bash: `throttle --pause` and `throttle --max-rate` at the same time
// both said done, and one of the two was lost (the pause, say: a replay
// reported paused went on reading). The two are kept apart; both hold.
TEST_F(ThrottleTest, APauseAndARateAtTheSameTimeBothHold) {
  {
    Registry registry(Config());
    ASSERT_TRUE(registry.Refresh().ok());
    JobRecord job;
    job.job = "race";
    VersionInfo v;
    v.version = 1;
    v.spec_hash = "0123456789abcdef";
    v.source_topic = "transactions";
    v.output_topic = "out.v1";
    job.versions.push_back(v);
    ASSERT_TRUE(registry.PutJob(job).ok());
  }
  const std::string kappa = std::string(KAPPA_BINARY) + " throttle race --version 1 -b " + bootstrap();
  for (int round = 0; round < 4; ++round) {
    std::string out, err;
    ASSERT_EQ(RunKappa(Cmd({"throttle", "race", "--version", "1", "--resume", "--max-rate", "1000"}), &out, &err), 0)
        << err;
    RunShell("timeout 60 bash -c '" + kappa + " --pause >/dev/null 2>&1 & " + kappa +
             " --max-rate 4000 >/dev/null 2>&1 & wait'");
    Registry registry(Config());
    ASSERT_TRUE(registry.Refresh().ok());
    auto throttle = registry.Throttle("race", 1);
    ASSERT_TRUE(throttle.has_value());
    EXPECT_EQ(DescribeThrottle(*throttle), "paused (max-rate 4000 rec/s on resume)") << "round " << round;
  }
}

// The live version's lag while a full-speed replay of the same job runs
// beside it and producers keep adding records.
struct LiveLag {
  int64_t max_lag = 0;
  int64_t p99_lag = 0;
  int64_t end_lag = 0;
  double p99_latency_ms = 0;
  double max_latency_ms = 0;
  int64_t replay_in = 0;  // what the replay read in the window
  double replay_history_s = -1;  // when the replay had read the whole history (-1: not in the window)
  std::string replay_notes;
};

class ProtectLiveLagTest : public ThrottleTest {
 protected:
  static int64_t EnvOr(const char* name, int64_t fallback) {
    const char* s = std::getenv(name);
    return s ? std::atoll(s) : fallback;
  }
  static constexpr int kProduceRate = 2000;  // rec/s added while the replay runs
  static constexpr int kLiveCap = 2300;       // the live version's --max-rate: a little headroom

  static double MeasureSeconds() {
    const char* s = std::getenv("KAPPA_PROTECT_BENCH_SECONDS");
    return s ? std::atof(s) : 12.0;
  }

  LiveLag Scenario(const std::string& name, int64_t protect_lag) {
    LiveLag result;
    // The history the replay reads at full speed (the embedded broker keeps
    // 5 MiB a partition: about 40,000 records).
    const int64_t kHistory = EnvOr("KAPPA_PROTECT_BENCH_HISTORY", 100000);
    const std::string topic = "src-" + name;
    CreateTopic(topic, static_cast<int>(EnvOr("KAPPA_PROTECT_BENCH_PARTITIONS", 8)));
    const int64_t t0 = 1767225600000;
    GeneratorOptions history = SmallWorkload(11, kHistory, 200000, 50);
    history.start_time_ms = t0;
    ProduceWorkload(Config(), topic, history);
    if (::testing::Test::HasFatalFailure()) return result;
    ScratchDir dir("protect-" + name);
    const std::string job = "pl-" + name;
    const std::string live_metrics = dir / (job + "-v1/metrics.json");
    const std::string replay_metrics = dir / (job + "-v2/metrics.json");
    // v1 serves: it reads the history at full speed, then keeps up live
    // under a modest cap.
    ChildProcess v1(Cmd({"deploy", Spec(dir, job, topic, 1), "--status-interval-ms", "0"}), job + "-v1");
    for (auto start = Clock::now(); RecordsIn(live_metrics) < kHistory;) {
      if (v1.WaitFor(0) != -1 || SecondsSince(start) > 600) {
        ADD_FAILURE() << "v1 did not read the history: " << v1.Stderr();
        return result;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::string out;
    Throttle(job, 1, {"--max-rate", std::to_string(kLiveCap)}, &out);

    // New records at kProduceRate, in batches every 100 ms; each batch's
    // append time is remembered to measure the live version's latency.
    std::atomic<int64_t> produced{kHistory};
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::vector<std::pair<double, int64_t>> appended;  // (time, records produced up to then)
    const auto start = Clock::now();
    std::thread producer([&] {
      const int batch = kProduceRate / 10;
      for (int64_t i = 0; !stop.load(); ++i) {
        GeneratorOptions gen = SmallWorkload(100 + i, batch, 2000, 50);
        gen.start_time_ms = t0 + (kHistory + i * batch) * 20;
        auto done = ProduceEvents(Config(), topic, gen);
        if (!done.ok()) {
          ADD_FAILURE() << done.status().ToString();
          return;
        }
        produced.fetch_add(batch);
        {
          std::lock_guard<std::mutex> lock(mu);
          appended.emplace_back(SecondsSince(start), produced.load());
        }
        const auto next = start + std::chrono::milliseconds(100 * (i + 1));
        std::this_thread::sleep_until(next);
      }
    });
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the live version at its steady state first

    std::vector<std::string> replay = {"replay", Spec(dir, job, topic, 2), "--status-interval-ms", "1000"};
    if (protect_lag > 0) replay.insert(replay.end(), {"--protect-live-lag", std::to_string(protect_lag)});
    ChildProcess v2(Cmd(replay), job + "-v2");
    const double replay_start = SecondsSince(start);
    // (time, live records_in, produced) every 50 ms.
    std::vector<std::tuple<double, int64_t, int64_t>> samples;
    while (SecondsSince(start) - replay_start < MeasureSeconds()) {
      const int64_t p = produced.load();
      samples.emplace_back(SecondsSince(start), RecordsIn(live_metrics), p);
      if (result.replay_history_s < 0 && RecordsIn(replay_metrics) >= kHistory) {
        result.replay_history_s = SecondsSince(start) - replay_start;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stop = true;
    producer.join();
    result.replay_in = std::max<int64_t>(0, RecordsIn(replay_metrics));
    v2.Kill(SIGTERM);
    EXPECT_EQ(v2.Wait(), 0) << v2.Stderr();
    v1.Kill(SIGTERM);
    EXPECT_EQ(v1.Wait(), 0) << v1.Stderr();
    for (const auto& line : {v2.Stdout(), v2.Stderr()}) {
      std::istringstream in(line);
      std::string l;
      while (std::getline(in, l)) {
        if (l.find("protect-live-lag") != std::string::npos) result.replay_notes += l + "\n";
      }
    }

    // Lag: produced (acknowledged) minus what the live version has
    // durably read, over the replay's run.
    std::vector<int64_t> lags;
    for (const auto& [t, in, p] : samples) {
      if (t < replay_start || in < 0) continue;
      lags.push_back(std::max<int64_t>(0, p - in));
    }
    if (lags.empty()) {
      ADD_FAILURE() << "no samples";
      return result;
    }
    result.end_lag = lags.back();
    std::vector<int64_t> sorted = lags;
    std::sort(sorted.begin(), sorted.end());
    result.max_lag = sorted.back();
    result.p99_lag = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)];
    // Latency: from a batch's acknowledgement to the first sample where the
    // live version has read (and checkpointed) past it.
    std::vector<double> latencies;
    for (const auto& [t_append, count] : appended) {
      if (t_append < replay_start) continue;
      for (const auto& [t, in, p] : samples) {
        if (t >= t_append && in >= count) {
          latencies.push_back((t - t_append) * 1000);
          break;
        }
      }
    }
    std::sort(latencies.begin(), latencies.end());
    if (!latencies.empty()) {
      result.p99_latency_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
      result.max_latency_ms = latencies.back();
    }
    return result;
  }
};

// The control loop against a live version that really falls behind: v1 is
// throttled below the producers' rate, so its reported lag passes the
// limit; the replay beside it halves its rate at each registry poll while
// that lasts, and once v1 may run freely again (its lag back under half the
// limit) the replay raises its rate x1.5 per poll back to its cap. Without
// --protect-live-lag the same replay keeps its cap throughout.
TEST_F(ProtectLiveLagTest, ReplayYieldsWhileTheServingVersionLagsAndRecovers) {
#if defined(__SANITIZE_ADDRESS__)
  // The story sets rates against the wall clock (a live version falling
  // behind its producer, a replay at 20,000 rec/s); the Debug + ASan build
  // runs the jobs several times slower, so its timings say nothing. The
  // memory checks of this path run in ThrottleTest under the sanitizers.
  GTEST_SKIP() << "timing story: not under the sanitizers";
#endif
  constexpr int64_t kHistoryRecords = 300000;
  constexpr int64_t kLimit = 3000;
  const std::string topic = "guarded";
  CreateTopic(topic, 24);
  const int64_t t0 = 1767225600000;
  GeneratorOptions history = SmallWorkload(21, kHistoryRecords, 20000, 50);
  history.start_time_ms = t0;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, history));
  ScratchDir dir("guarded");
  const std::string job = "guarded";
  const std::string live_metrics = dir / (job + "-v1/metrics.json");
  const std::string replay_metrics = dir / (job + "-v2/metrics.json");
  const std::string plain_metrics = dir / (job + "-v3/metrics.json");
  ChildProcess v1(Cmd({"deploy", Spec(dir, job, topic, 1), "--status-interval-ms", "0"}), job + "-v1");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(live_metrics, kHistoryRecords, 60));
  std::string out;
  // v1 falls behind: capped at half the producers' rate.
  ASSERT_NO_FATAL_FAILURE(Throttle(job, 1, {"--max-rate", "1000"}, &out));
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    const auto start = Clock::now();
    for (int64_t i = 0; !stop.load(); ++i) {
      GeneratorOptions gen = SmallWorkload(1000 + i, 200, 20000, 50);
      gen.start_time_ms = t0 + (kHistoryRecords + i * 200) * 20;
      if (auto done = ProduceEvents(Config(), topic, gen); !done.ok()) {
        ADD_FAILURE() << done.status().ToString();
        return;
      }
      std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * (i + 1)));
    }
  });
  struct StopProducer {
    std::atomic<bool>& stop;
    std::thread& t;
    ~StopProducer() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } stop_producer{stop, producer};

  // v2 protects v1; v3, the same replay without protection, for contrast.
  ChildProcess v2(Cmd({"replay", Spec(dir, job, topic, 2), "--max-rate", "20000", "--protect-live-lag",
                       std::to_string(kLimit), "--status-interval-ms", "1000"}),
                  job + "-v2");
  ChildProcess v3(Cmd({"replay", Spec(dir, job, topic, 3), "--max-rate", "20000", "--status-interval-ms", "1000"}),
                  job + "-v3");
  auto wait_for_note = [&](const std::string& text, double timeout_s) {
    const auto start = Clock::now();
    while (SecondsSince(start) < timeout_s) {
      if (v2.Stderr().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  // v1's lag grows 1000 rec/s: past the limit within about 3 s, then the
  // replay halves its rate at each poll: from its measured rate, which is
  // the 20000 cap or just under it on a quiet machine (19998, so 9999 then
  // 5000), and less on a loaded one (CI once measured 14044, so 7022).
  auto lowered_rates = [&] {
    std::vector<int64_t> rates;
    const std::string err = v2.Stderr(), text = "replay rate lowered to ";
    for (size_t at = err.find(text); at != std::string::npos; at = err.find(text, at + 1)) {
      rates.push_back(std::atoll(err.c_str() + at + text.size()));
    }
    return rates;
  };
  ASSERT_TRUE(wait_for_note("replay rate lowered to ", 15)) << v2.Stderr();
  const int64_t first = lowered_rates().front();
  EXPECT_GE(first, 2000) << v2.Stderr();
  EXPECT_LE(first, 10000) << v2.Stderr();
  const auto halved_again = Clock::now();
  while (lowered_rates().size() < 2 && SecondsSince(halved_again) < 3) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(lowered_rates().size(), 2u) << "the replay did not lower its rate again within 3 s:\n" << v2.Stderr();
  EXPECT_LE(lowered_rates()[1], (first + 1) / 2) << v2.Stderr();
  EXPECT_NE(v2.Stderr().find("protect-live-lag: live v1 lag "), std::string::npos) << v2.Stderr();
  // 2.5 s: long enough that the metrics' 200 ms checkpoint steps and the
  // rate cap's burst (0.2 s) stay well inside the bound.
  auto lowered = SampleFor(replay_metrics, 2.5);
  auto plain = SampleFor(plain_metrics, 2.5);
  const double lowered_rate = RateOf(lowered);
  const double plain_rate = RateOf(plain);
  EXPECT_LT(lowered_rate, 6000) << Show(lowered) << "\n" << v2.Stderr();
  EXPECT_GT(plain_rate, 12000) << "the unprotected replay should keep its cap: " << Show(plain);

  // v1 runs freely again and catches up; the replay climbs back to its cap.
  ASSERT_NO_FATAL_FAILURE(Throttle(job, 1, {"--max-rate", "0"}, &out));
  ASSERT_TRUE(wait_for_note("replay rate raised to", 5)) << v2.Stderr();
  ASSERT_TRUE(wait_for_note("replay rate back to 20000 rec/s", 20)) << v2.Stderr();
  // Well above the protected rate (below 6000), with room for a loaded
  // machine: 10,900 of the 20,000 cap was measured while the suite's
  // longest stories ran beside it.
  auto recovered = SampleFor(replay_metrics, 2.5);
  const double recovered_rate = RateOf(recovered);
  EXPECT_GT(recovered_rate, 9000) << Show(recovered) << "\n" << v2.Stderr();

  for (ChildProcess* c : {&v3, &v2, &v1}) {
    c->Kill(SIGTERM);
    EXPECT_EQ(c->Wait(), 0) << c->Stderr();
  }
}

// Two bug bashes' findings, in one story of a scaled-out replay protecting a
// stalled live version:
// - a live process stalled (SIGSTOP here; in life starved of CPU or hung)
//   publishes nothing, and the lag it last reported (0) held while its log
//   grew by 20,000 records: the replay never slowed. The replay reads the
//   same topic and counts the log ends it sees;
// - protection made each instance's rate its own, so under a version-wide
//   throttle the instances together read up to 1.7x the cap on the way
//   back up, and twice the floor (100 rec/s each) at the bottom: lowered
//   from the version's rate, the rate stays the version's, shared.
TEST_F(ProtectLiveLagTest, AStalledLiveVersionSlowsAScaledOutReplayWithinItsVersionCap) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "timing story: not under the sanitizers";
#endif
  const std::string topic = "stall";
  CreateTopic(topic, 4);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, SmallWorkload(31, 20000, 20000)));
  CreateTopic("stall.v2.changelog", 4, {{"cleanup.policy", "compact"}});
  ScratchDir dir("stall");
  ChildProcess v1(Cmd({"deploy", Spec(dir, "stall", topic, 1), "--status-interval-ms", "0"}), "stall-v1");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(dir / "stall-v1/metrics.json", 20000));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // its report of lag 0 published
  v1.Kill(SIGSTOP);
  struct Resume {
    ChildProcess& c;
    ~Resume() { c.Kill(SIGCONT); }
  } resume{v1};
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, SmallWorkload(32, 40000, 20000)));

  const std::string spec = Spec(dir, "stall", topic, 2);
  std::ofstream(spec, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  std::string out;
  {
    Registry registry(Config());
    ASSERT_TRUE(registry.Refresh().ok());
    ThrottleRecord cap;
    cap.job = "stall";
    cap.version = 2;
    cap.max_rate = 4000;
    ASSERT_TRUE(registry.PutThrottle(cap, /*rate=*/true, /*pause=*/false).ok());
  }
  auto instance = [&](const std::string& name) {
    return Cmd({"replay", spec, "--instance", name, "--state-dir", dir / name, "--protect-live-lag", "3000",
                "--status-interval-ms", "0"});
  };
  ChildProcess a(instance("a"), "stall-a");
  ChildProcess b(instance("b"), "stall-b");
  auto said = [](const ChildProcess& c, const std::string& text) { return c.Stderr().find(text) != std::string::npos; };
  auto wait_for = [&](const std::string& text, double timeout_s) {
    const auto start = Clock::now();
    while (SecondsSince(start) < timeout_s) {
      if (said(a, text) && said(b, text)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  ASSERT_TRUE(wait_for("protect-live-lag: live v1 lag ", 30))
      << "the stalled live version's lag went unseen:\n" << a.Stderr() << "---\n" << b.Stderr();
  // Halved from the version's 4,000 rec/s each second to the floor, 100
  // rec/s for the version (1% of its cap, at least 100): ~50 each.
  ASSERT_TRUE(wait_for("replay rate lowered to 100 rec/s", 30)) << a.Stderr() << "---\n" << b.Stderr();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::string shown;
  const double rate = TwoInstancesRate(dir / "a/metrics.json", dir / "b/metrics.json", 5, &shown);
  EXPECT_LT(rate, 160) << "the version's floor is 100 rec/s, not 100 per instance: " << shown;
  for (ChildProcess* c : {&a, &b}) {
    c->Kill(SIGTERM);
    EXPECT_EQ(c->Wait(), 0) << c->Stderr();
  }
  v1.Kill(SIGCONT);
  v1.Kill(SIGTERM);
  EXPECT_EQ(v1.Wait(), 0) << v1.Stderr();
}

// scripts/bench_protect_live.sh: the live version's lag and latency while a
// full-speed replay runs beside it, with and without --protect-live-lag.
// Skipped unless KAPPA_PROTECT_BENCH_OUT is set (a measurement, not a test).
TEST_F(ProtectLiveLagTest, BenchFullSpeedReplayBesideLive) {
  const char* bench = std::getenv("KAPPA_PROTECT_BENCH_OUT");
  if (bench == nullptr) GTEST_SKIP() << "a measurement: scripts/bench_protect_live.sh";
  const int64_t limit = 4000;
  const LiveLag off = Scenario("off", 0);
  ASSERT_FALSE(HasFatalFailure());
  const LiveLag on = Scenario("on", limit);
  ASSERT_FALSE(HasFatalFailure());
  char line[768];
  std::snprintf(line, sizeof(line),
                "| without protection | %lld | %lld | %lld | %.0f | %.0f | %lld | %.1f |\n"
                "| --protect-live-lag %lld | %lld | %lld | %lld | %.0f | %.0f | %lld | %.1f |\n",
                (long long)off.max_lag, (long long)off.p99_lag, (long long)off.end_lag, off.p99_latency_ms,
                off.max_latency_ms, (long long)off.replay_in, off.replay_history_s, (long long)limit,
                (long long)on.max_lag, (long long)on.p99_lag, (long long)on.end_lag, on.p99_latency_ms,
                on.max_latency_ms, (long long)on.replay_in, on.replay_history_s);
  std::printf("%s%s", line, on.replay_notes.c_str());
  std::ofstream(bench, std::ios::app) << line << "\nprotect-live-lag notes of the protected replay:\n\n```\n"
                                      << on.replay_notes << "```\n";
}

}  // namespace
}  // namespace kappa::testing
