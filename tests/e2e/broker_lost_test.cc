// Stories about losing the broker while `kappa run` runs (issue 10, item 6):
// a warning appears within one status interval; SIGTERM ends the process
// within 10 s whatever the broker does, without a checkpoint past outputs
// the broker never acknowledged, and a rerun against a fresh broker resumes
// from the last durable checkpoint; when the sink gives up on its outputs
// the error names the topic and the cause in readable text. While no broker
// answers, status lines say the lag is unknown instead of the last one seen
// ("lag 0" read as caught up while nothing could be read).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The broker on a fixed bootstrap port, so that a fresh one can take the
// place of one that was lost.
class BrokerLostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    ASSERT_NO_FATAL_FAILURE(StartBroker());
  }
  void StartBroker() {
    EmbeddedBroker::Options options;
    options.port = port_;
    options.topics = {{"transactions", 2}};
    auto broker = EmbeddedBroker::Start(options);
    ASSERT_TRUE(broker.ok()) << broker.status().ToString();
    broker_ = std::move(*broker);
  }
  KafkaConfig Config() const {
    KafkaConfig config;
    config.brokers = "127.0.0.1:" + std::to_string(port_);
    return config;
  }
  GeneratorOptions Workload() const { return SmallWorkload(21, 20000, 300, 0.5); }
  // Waits up to timeout_ms for pred; false on timeout.
  template <typename Pred>
  static bool WaitUntil(int timeout_ms, Pred pred) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred();
  }
  static int64_t Epoch(const std::string& metrics_path) {
    const std::string metrics = ReadFile(metrics_path);
    return metrics.empty() ? -1 : MetricsField(metrics, "epoch");
  }
  // The user-spend job checkpointing every second, state in dir/state
  // (its metrics in dir/state/metrics.json): the spec's path.
  static std::string LostSpec(const ScratchDir& dir) {
    SpecOptions spec;
    spec.state_dir = dir / "state";
    spec.checkpoint_interval = "1s";
    return WriteSpec(dir, "job.yaml", spec);
  }
  // Runs the job live (no end), rate-capped so that it is mid-stream with
  // outputs in flight when the broker goes, until it has checkpointed.
  std::unique_ptr<ChildProcess> StartLive(const std::string& spec, const std::string& metrics,
                                          std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", spec, "-b", Config().brokers, "--max-rate", "2000",
                                     "--status-interval-ms", "1000"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = std::make_unique<ChildProcess>(args, "live");
    EXPECT_TRUE(WaitUntil(30000, [&] { return Epoch(metrics) >= 2; })) << child->Stderr();
    return child;
  }

  int port_ = 0;
  std::unique_ptr<EmbeddedBroker> broker_;
};

TEST_F(BrokerLostTest, WarnsWithinAStatusIntervalAndSigtermExitsWithinTenSeconds) {
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("broker-lost");
  const std::string path = LostSpec(dir);
  const std::string metrics = dir / "state/metrics.json";
  auto live = StartLive(path, metrics);
  ASSERT_EQ(live->WaitFor(0), -1) << live->Stderr();
  ASSERT_EQ(live->Stderr().find("unreachable"), std::string::npos) << live->Stderr();

  broker_.reset();  // the broker is lost
  const auto lost = Clock::now();
  // One status interval (1 s), plus slack for a loaded machine.
  EXPECT_TRUE(WaitUntil(3000, [&] { return live->Stderr().find("Kafka broker unreachable") != std::string::npos; }))
      << "no warning within a status interval of losing the broker:\n" << live->Stderr();
  EXPECT_TRUE(WaitUntil(3000, [&] { return live->Stderr().find("lag unknown: no Kafka broker has answered") !=
                                           std::string::npos; }))
      << "the status line does not say the lag is unknown:\n" << live->Stderr();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000) - (Clock::now() - lost));

  live->Kill(SIGTERM);
  const auto asked = Clock::now();
  const int rc = live->WaitFor(10000);
  const double took = std::chrono::duration<double>(Clock::now() - asked).count();
  ASSERT_NE(rc, -1) << "SIGTERM did not end the job within 10 s with the broker gone:\n" << live->Stderr();
  EXPECT_LT(took, 10.0);
  if (rc != 0) {
    EXPECT_EQ(rc, 1) << live->Stderr();
    EXPECT_NE(live->Stderr().find("last checkpoint intact"), std::string::npos) << live->Stderr();
  }
  const int64_t durable = Epoch(metrics);
  ASSERT_GE(durable, 2);
  const int64_t records_at_stop = MetricsField(ReadFile(metrics), "records_in");
  ASSERT_LT(records_at_stop, 20000) << "the rate cap should have kept it mid-stream";

  // A fresh embedded broker with the same input: the state reopens at its
  // last durable epoch, but the outputs written before it went with the old
  // broker, so the restart is refused rather than write only the rest;
  // --reset-state writes them all again.
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  std::string out, err;
  const std::vector<std::string> rerun = {"run", path, "-b", Config().brokers, "--stop-at-end", "--status-interval-ms",
                                          "0"};
  ASSERT_EQ(RunKappa(rerun, &out, &err), 1) << err;
  EXPECT_NE(err.find("resuming from checkpoint epoch " + std::to_string(durable)), std::string::npos)
      << "the rerun restores the last durable epoch " << durable << ":\n" << err;
  EXPECT_NE(err.find("user-spend-hourly.v1 holds no record, but the checkpoint"), std::string::npos) << err;
  std::vector<std::string> reset = rerun;
  reset.push_back("--reset-state");
  ASSERT_EQ(RunKappa(reset, &out, &err), 0) << err;
  EXPECT_EQ(MetricsField(ReadFile(metrics), "records_in"), 20000);
  EXPECT_GT(ReadOutputs(Config(), "user-spend-hourly.v1").rows.size(), 100u);
}

// kappa deploy with the broker gone: its last progress write ("stopped")
// waited its 35 s while the stop's grace is 20 s, and the process exited
// as a crash would, exit 1 (a bug bash). The write gives up in time: a
// clean stop, which says the control topic did not take it.
TEST_F(BrokerLostTest, DeploySigtermWithTheBrokerGoneStopsCleanlyWithinTheGrace) {
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("broker-lost-deploy");
  const std::string path = LostSpec(dir);
  const std::string metrics = dir / "state/metrics.json";
  ChildProcess deploy({"deploy", path, "-b", Config().brokers, "--max-rate", "2000", "--status-interval-ms", "1000"},
                      "deploy-lost");
  ASSERT_TRUE(WaitUntil(30000, [&] { return Epoch(metrics) >= 2; })) << deploy.Stderr();
  broker_.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  deploy.Kill(SIGTERM);
  const int rc = deploy.WaitFor(19000);
  ASSERT_NE(rc, -1) << "SIGTERM did not end deploy before its grace with the broker gone:\n" << deploy.Stderr();
  EXPECT_EQ(deploy.Stderr().find("exiting now, as a crash would"), std::string::npos) << deploy.Stderr();
  // Stopped on its own: cleanly, or (outputs in flight unacknowledged) with
  // its last checkpoint intact, as `kappa run` does.
  if (rc == 0) {
    EXPECT_NE(deploy.Stdout().find("the control topic did not take its stop"), std::string::npos)
        << deploy.Stdout() << deploy.Stderr();
  } else {
    EXPECT_EQ(rc, 1) << deploy.Stderr();
    EXPECT_NE(deploy.Stderr().find("stopped with its last checkpoint intact"), std::string::npos) << deploy.Stderr();
  }
  EXPECT_NE(deploy.Stderr().find("could not record that the version stopped"), std::string::npos) << deploy.Stderr();
}

TEST_F(BrokerLostTest, OutputsThatTimeOutStopTheJobWithAReadableError) {
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("broker-lost-timeout");
  const std::string path = LostSpec(dir);
  const std::string metrics = dir / "state/metrics.json";
  auto live = StartLive(path, metrics, {"-X", "message.timeout.ms=3000"});
  ASSERT_EQ(live->WaitFor(0), -1) << live->Stderr();

  broker_.reset();
  const int rc = live->WaitFor(60000);
  ASSERT_NE(rc, -1) << "the job kept running with its outputs timed out:\n" << live->Stderr();
  EXPECT_EQ(rc, 1);
  const std::string err = live->Stderr();
  const size_t at = err.find("sink delivery failed");
  ASSERT_NE(at, std::string::npos) << err;
  const std::string line = err.substr(at, err.find('\n', at) - at);
  EXPECT_NE(line.find("delivery to user-spend-hourly.v1["), std::string::npos) << line;
  EXPECT_NE(line.find("_MSG_TIMED_OUT"), std::string::npos) << line;
  // What timing out means: a partition named alone read as the fault (a bug bash).
  EXPECT_NE(line.find("no broker acknowledged it within message.timeout.ms"), std::string::npos) << line;
  EXPECT_NE(line.find("last checkpoint intact"), std::string::npos) << line;
  for (char c : line) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unreadable byte " << int(c) << " in: " << line;
  EXPECT_GE(Epoch(metrics), 2);
}

// The archiver caught up, then the broker is lost: its status line had gone
// on printing "100.0% done, lag 0" from the last log ends it saw.
TEST_F(BrokerLostTest, TheArchiversStatusSaysTheLagIsUnknownWhileNoBrokerAnswers) {
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(22, 2000, 100, 0.5)));
  ScratchDir dir("broker-lost-archive");
  ChildProcess archiver({"archive", "-b", Config().brokers, "-t", "transactions", "-a", dir / "archive",
                         "--status-interval-ms", "300"},
                        "archiver");
  ASSERT_TRUE(WaitUntil(30000, [&] { return archiver.Stderr().find("100.0% done") != std::string::npos; }))
      << archiver.Stderr();
  ASSERT_EQ(archiver.Stderr().find("lag unknown"), std::string::npos) << archiver.Stderr();

  broker_.reset();
  ASSERT_TRUE(WaitUntil(15000, [&] {
    return archiver.Stderr().find("lag unknown: no Kafka broker has answered for") != std::string::npos;
  })) << "the status line still reads as caught up with the broker gone:\n" << archiver.Stderr();
  // From then on, no line claims a lag while no broker answers.
  const std::string err = archiver.Stderr();
  const std::string after = err.substr(err.find("lag unknown"));
  EXPECT_EQ(after.find(", lag 0"), std::string::npos) << after;

  archiver.Kill(SIGTERM);
  EXPECT_EQ(archiver.WaitFor(10000), 0) << archiver.Stderr();
}

}  // namespace
}  // namespace kappa::testing
