// The story kappa exists for. A per-user hourly count counts cancelled
// transactions (v1, live). The fix (v2, drops cancelled) replays all history
// from offset zero in its own process while v1 keeps serving and new events
// keep arriving; v2 catches up, is promoted, `kappa get` serves its values,
// which equal the test's own computation; v1 and v2 differ exactly on the
// windows that hold cancellations; rollback serves v1 again. Also: promote
// refuses a version that is behind or over the diff gate; a replay of the
// same logic under a new version number reproduces the live outputs byte for
// byte; versions never share state, groups or output topics.
#include <signal.h>

#include <thread>

#include <gtest/gtest.h>

#include "replay/registry.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/reference_model.h"

namespace kappa::testing {
namespace {

constexpr int kPartitions = 4;
constexpr int64_t kHour = 3600 * 1000;

class ReplayPromoteRollbackTest : public BrokerTest {
 protected:
  GeneratorOptions Batch(uint64_t seed, uint64_t count, int64_t start_time_ms) {
    GeneratorOptions gen = SmallWorkload(seed, count, 300, 1);
    gen.start_time_ms = start_time_ms;
    return gen;
  }
  std::string Spec(const ScratchDir& dir, int version, bool drop_cancelled) {
    SpecOptions o;
    o.job = "spend";
    o.version = version;
    o.sink = "spend-hourly";
    o.filter = drop_cancelled ? "status != cancelled" : "";
    o.lateness = "0";
    o.checkpoint_interval = "300ms";
    o.state_dir = dir / ("state-v" + std::to_string(version));
    return WriteSpec(dir, "v" + std::to_string(version) + ".yaml", o);
  }
  std::vector<std::string> Cmd(std::vector<std::string> args) {
    args.insert(args.end(), {"-b", bootstrap()});
    return args;
  }
  // Waits until `dir`'s metrics say every record of the topic was read.
  void WaitForRecordsIn(const std::string& metrics_path, int64_t want) {
    for (int i = 0; i < 600; ++i) {
      const std::string m = ReadFile(metrics_path);
      if (!m.empty() && MetricsField(m, "records_in") == want) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << metrics_path << " never reached records_in " << want << ": " << ReadFile(metrics_path);
  }
  std::string Get(const std::string& key, const ScratchDir& dir) {
    std::string out, err;
    EXPECT_EQ(RunKappa(Cmd({"get", "spend", key, "--table-dir", dir / "tables"}), &out, &err), 0) << err;
    return out;
  }
};

TEST_F(ReplayPromoteRollbackTest, FixedVersionReplaysBesideLiveOnePromotesAndRollsBack) {
  CreateTopic("transactions", kPartitions);
  const int64_t t0 = 1767225600000;
  const GeneratorOptions history = Batch(1, 12000, t0);
  const GeneratorOptions fresh = Batch(2, 4000, t0 + 12000 * 1000 + 2 * kHour);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", history));
  ScratchDir dir("story");

  // v1 serves live.
  ChildProcess v1(Cmd({"deploy", Spec(dir, 1, false), "--status-interval-ms", "0"}), "v1");
  WaitForRecordsIn(dir / "state-v1/metrics.json", 12000);

  // v2 replays from zero beside it while new events keep arriving.
  ChildProcess v2(Cmd({"replay", Spec(dir, 2, true), "--status-interval-ms", "0", "--catch-up-hold-ms", "500",
                       "--max-rate", "20000"}),
                  "v2");
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", fresh));
  WaitForRecordsIn(dir / "state-v1/metrics.json", 16000);
  WaitForRecordsIn(dir / "state-v2/metrics.json", 16000);

  // v2 is marked caught up in the registry (the control topic).
  Registry registry(Config());
  bool caught_up = false;
  for (int i = 0; i < 100 && !caught_up; ++i) {
    ASSERT_TRUE(registry.Refresh().ok());
    auto job = registry.Job("spend");
    caught_up = job && job->Find(2) && job->Find(2)->state == VersionState::kCaughtUp;
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(caught_up) << v2.Stderr();
  std::string out, err;
  ASSERT_EQ(RunKappa(Cmd({"status", "spend"}), &out, &err), 0) << err;
  EXPECT_NE(out.find("v1 live      SERVING"), std::string::npos) << out;
  EXPECT_NE(out.find("v2 caught-up"), std::string::npos) << out;

  ASSERT_EQ(RunKappa(Cmd({"promote", "spend", "--version", "2"}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("changed"), std::string::npos) << out;
  EXPECT_NE(out.find("version 2 now serves"), std::string::npos) << out;

  // What v2 serves equals the test's own computation, for every window.
  ModelSpec fixed;
  fixed.lateness_ms = 0;
  const ModelResult want_v2 = RunModel({history, fresh}, kPartitions, fixed);
  ModelSpec buggy = fixed;
  buggy.drop_cancelled = false;
  const ModelResult want_v1 = RunModel({history, fresh}, kPartitions, buggy);
  const TopicContents out_v1 = ReadOutputs(Config(), "spend-hourly.v1");
  const TopicContents out_v2 = ReadOutputs(Config(), "spend-hourly.v2");
  ASSERT_EQ(out_v2.rows.size(), want_v2.windows.size());
  for (const auto& [key, w] : want_v2.windows) {
    ASSERT_TRUE(out_v2.rows.count(key)) << key;
    const auto* got = AsWindow(out_v2.rows.at(key).value);
    EXPECT_EQ(got->count(), w.count) << key;
    EXPECT_EQ(got->sum(), w.sum) << key;
    EXPECT_EQ(out_v2.rows.at(key).headers.at("kappa.version"), "2");
  }
  // v1 and v2 differ exactly on the windows holding cancelled transactions.
  size_t differing = 0;
  for (const auto& [key, w1] : want_v1.windows) {
    ASSERT_TRUE(out_v1.rows.count(key)) << key;
    const bool has_cancellations = !want_v2.windows.count(key) || want_v2.windows.at(key).count != w1.count;
    const bool differs = !out_v2.rows.count(key) || out_v2.rows.at(key).value != out_v1.rows.at(key).value;
    EXPECT_EQ(differs, has_cancellations) << key;
    differing += differs;
  }
  EXPECT_GT(differing, 10u);

  // kappa get serves v2 now, v1 after a rollback.
  const std::string key = want_v2.windows.begin()->first;
  const std::string served = Get(key, dir);
  EXPECT_NE(served.find("\"version\":2"), std::string::npos) << served;
  EXPECT_NE(served.find("\"count\":" + std::to_string(want_v2.windows.at(key).count) + ","), std::string::npos)
      << served;
  ASSERT_EQ(RunKappa(Cmd({"rollback", "spend"}), &out, &err), 0) << err;
  const std::string rolled_back = Get(key, dir);
  EXPECT_NE(rolled_back.find("\"version\":1"), std::string::npos) << rolled_back;
  EXPECT_NE(rolled_back.find("\"count\":" + std::to_string(want_v1.windows.at(key).count) + ","), std::string::npos)
      << rolled_back;
  // A version the job does not have is named with the ones it has, not
  // "nothing serves yet?" while v1 serves; a negative one is a usage error
  // (a bug bash).
  EXPECT_EQ(RunKappa(Cmd({"get", "spend", key, "--version", "3", "--table-dir", dir / "tables"}), &out, &err), 1);
  EXPECT_NE(err.find("job spend has no version 3 (its versions: 1, 2)"), std::string::npos) << err;
  EXPECT_EQ(RunKappa(Cmd({"get", "spend", key, "--version", "-1", "--table-dir", dir / "tables"}), &out, &err), 2);
  EXPECT_NE(err.find("--version must be a version number"), std::string::npos) << err;

  // Retiring v2 (no longer serving) stops its process cleanly.
  ASSERT_EQ(RunKappa(Cmd({"retire", "spend", "--version", "2"}), &out, &err), 0) << err;
  EXPECT_EQ(v2.WaitFor(30000), 0) << v2.Stderr();
  EXPECT_NE(v2.Stderr().find("was retired"), std::string::npos) << v2.Stderr();
  // Status tells a retired version as it is: stopped, its state deleted
  // once a retire's retention passed, no advice to start it again and no
  // catch-up or throttle (a bug bash).
  ASSERT_EQ(RunKappa(Cmd({"retire", "spend", "--version", "2", "--retention", "0s"}), &out, &err), 0) << err;
  EXPECT_NE(out.find("deleted the state of version 2"), std::string::npos) << out;
  ASSERT_EQ(RunKappa(Cmd({"status", "spend"}), &out, &err), 0) << err;
  const size_t v2_line = out.find("  v2 retired");
  ASSERT_NE(v2_line, std::string::npos) << out;
  const std::string v2_status = out.substr(v2_line, out.find("\n  v", v2_line + 1) - v2_line);
  EXPECT_NE(v2_status.find(" (deleted)\n"), std::string::npos) << v2_status;
  EXPECT_NE(v2_status.find("      stopped (retired), lag "), std::string::npos) << v2_status;
  EXPECT_EQ(v2_status.find("start it again"), std::string::npos) << v2_status;
  // Its rows are still answered with --version 2, saying it is retired
  // (they were, without a word: a bug bash).
  ASSERT_EQ(RunKappa(Cmd({"get", "spend", key, "--version", "2", "--table-dir", dir / "tables"}), &out, &err), 0)
      << err;
  EXPECT_NE(out.find("\"version\":2"), std::string::npos) << out;
  EXPECT_NE(err.find("note: version 2 is retired: its outputs are as it left them"), std::string::npos) << err;
  EXPECT_EQ(v2_status.find("within catch-up lag"), std::string::npos) << v2_status;
  v1.Kill(SIGTERM);
  EXPECT_EQ(v1.WaitFor(30000), 0) << v1.Stderr();
}

TEST_F(ReplayPromoteRollbackTest, PromoteRefusesWhileBehindAndOverTheDiffGate) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Batch(3, 20000, 1767225600000)));
  ScratchDir dir("refusals");
  std::string out, err;
  ASSERT_EQ(RunKappa(Cmd({"deploy", Spec(dir, 1, false), "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 0)
      << err;
  {
    // A slow replay: still far behind when promotion is asked for.
    ChildProcess slow(Cmd({"replay", Spec(dir, 2, true), "--max-rate", "1000", "--status-interval-ms", "0"}), "slow");
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_NE(RunKappa(Cmd({"promote", "spend", "--version", "2"}), &out, &err), 0);
    EXPECT_NE(err.find("has not caught up"), std::string::npos) << err;
    slow.Kill(SIGTERM);
    EXPECT_EQ(slow.WaitFor(30000), 0) << slow.Stderr();
    // Both stopped: no rate and no "within catch-up lag" from before the
    // stop (v2's last rate was ~1000 rec/s, and it was far behind).
    ASSERT_EQ(RunKappa(Cmd({"status", "spend"}), &out, &err), 0) << err;
    EXPECT_EQ(out.find("rec/s"), std::string::npos) << out;
    EXPECT_EQ(out.find("within catch-up lag"), std::string::npos) << out;
    EXPECT_NE(out.find("stopped, lag "), std::string::npos) << out;
  }
  // Let it finish; now it is caught up but differs from v1 on many rows.
  ASSERT_EQ(RunKappa(Cmd({"replay", Spec(dir, 2, true), "--stop-at-end", "--catch-up-hold-ms", "0",
                          "--status-interval-ms", "0"}), &out, &err), 0) << err;
  EXPECT_NE(RunKappa(Cmd({"promote", "spend", "--version", "2", "--max-changed-share", "0.05"}), &out, &err), 0);
  EXPECT_NE(err.find("over the 5.0% gate"), std::string::npos) << err;
  EXPECT_NE(out.find("compared"), std::string::npos) << "the diff summary is printed: " << out;
  ASSERT_EQ(RunKappa(Cmd({"promote", "spend", "--version", "2", "--max-changed-share", "0.05", "--accept"}), &out, &err),
            0) << err;
  // The serving version cannot be retired.
  EXPECT_NE(RunKappa(Cmd({"retire", "spend", "--version", "2"}), &out, &err), 0);
  EXPECT_NE(err.find("serves"), std::string::npos) << err;
}

TEST_F(ReplayPromoteRollbackTest, SameLogicUnderANewVersionReproducesTheLiveOutputsAndSharesNothing) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Batch(4, 15000, 1767225600000)));
  ScratchDir dir("identical");
  std::string out, err;
  ASSERT_EQ(RunKappa(Cmd({"deploy", Spec(dir, 1, true), "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 0)
      << err;
  ASSERT_EQ(RunKappa(Cmd({"replay", Spec(dir, 3, true), "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 0)
      << err;
  const TopicContents live = ReadOutputs(Config(), "spend-hourly.v1");
  const TopicContents replayed = ReadOutputs(Config(), "spend-hourly.v3");
  ASSERT_GT(live.rows.size(), 50u);
  ASSERT_EQ(replayed.rows.size(), live.rows.size());
  for (const auto& [key, row] : live.rows) {
    ASSERT_TRUE(replayed.rows.count(key)) << key;
    EXPECT_EQ(replayed.rows.at(key).value, row.value) << "one code path, one answer: " << key;
  }

  // Versions never share state, groups or output topics.
  Registry registry(Config());
  ASSERT_TRUE(registry.Refresh().ok());
  auto job = registry.Job("spend");
  ASSERT_TRUE(job.has_value());
  const VersionInfo* a = job->Find(1);
  const VersionInfo* b = job->Find(3);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->state_dir, b->state_dir);
  EXPECT_EQ(a->group, "spend.v1");
  EXPECT_EQ(b->group, "spend.v3");
  EXPECT_EQ(a->output_topic, "spend-hourly.v1");
  EXPECT_EQ(b->output_topic, "spend-hourly.v3");
  // A version pointed at another version's state directory is refused.
  const std::string clash = dir / "clash.yaml";
  {
    std::string text = ReadFile(dir / "v3.yaml");
    text.replace(text.find("version: 3"), 10, "version: 4");
    text.replace(text.find(dir / "state-v3"), (dir / "state-v3").size(), dir / "state-v1");
    std::ofstream(clash) << text;
  }
  EXPECT_NE(RunKappa(Cmd({"replay", clash, "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 0);
  // Refused by the directory's own marker, before anything is registered.
  EXPECT_NE(err.find("belongs to job spend version 1"), std::string::npos) << err;
  // A changed spec under a registered version number is refused.
  const std::string changed = dir / "changed.yaml";
  {
    std::string text = ReadFile(dir / "v3.yaml");
    text.replace(text.find("status != cancelled"), 19, "status == approved");
    std::ofstream(changed) << text;
  }
  EXPECT_NE(RunKappa(Cmd({"replay", changed, "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 0);
  EXPECT_NE(err.find("bump `version:`"), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
