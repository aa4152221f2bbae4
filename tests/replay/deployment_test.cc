// A deployment's job thread never waits for the control topic: with every
// registry write acknowledged only after 3 s, the job still checkpoints at
// its own pace, the last "stopped" record is still written (and awaited);
// and a version retired from elsewhere stops at its next check.
#include "replay/deployment.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <future>
#include <mutex>

#include <gtest/gtest.h>

#include "replay/promotion.h"
#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

using SteadyTime = std::chrono::steady_clock;

double SecondsSince(SteadyTime::time_point t) {
  return std::chrono::duration<double>(SteadyTime::now() - t).count();
}

class DeploymentTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    auto control = EmbeddedBroker::Start({});
    ASSERT_TRUE(control.ok()) << control.status().ToString();
    control_ = std::move(*control);
    ASSERT_TRUE(control_->CreateTopic({"kappa.control", 1}).ok());
    CreateTopic("transactions", 2);
    ProduceWorkload(Config(), "transactions", SmallWorkload(1, 20000));
  }
  void TearDown() override {
    control_.reset();
    BrokerTest::TearDown();
  }
  KafkaConfig ControlConfig() const {
    KafkaConfig c;
    c.brokers = control_->bootstrap();
    return c;
  }
  JobSpec Spec(const ScratchDir& dir) {
    SpecOptions o;
    o.checkpoint_interval = "100ms";
    o.state_dir = dir / "state";
    auto spec = LoadJobSpec(WriteSpec(dir, "job.yaml", o));
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return spec.ok() ? *spec : JobSpec{};
  }
  // A deployment that runs to the end of its input, holds no catch-up, prints
  // no status and collects its notes.
  DeploymentOptions BoundedOptions() {
    DeploymentOptions options;
    options.run.stop_at_end = true;
    options.run.status_interval_ms = 0;
    options.catch_up_hold_ms = 0;
    options.on_note = Collect();
    return options;
  }
  // Runs `spec` as a bounded replay with catch-up hold `hold_ms` (no
  // registry poll while it runs: the end decides); *job: its record as
  // `reader` then reads it.
  void BoundedReplay(const JobSpec& spec, int64_t hold_ms, Registry& reader, std::optional<JobRecord>* job) {
    Registry registry(ControlConfig());
    DeploymentOptions options = BoundedOptions();
    options.replay = true;
    options.catch_up_hold_ms = hold_ms;
    options.registry_poll_ms = 60000;
    ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource()).ok());
    ASSERT_TRUE(reader.Refresh().ok());
    *job = reader.Job(spec.job);
    ASSERT_TRUE(job->has_value());
    ASSERT_NE((*job)->Find(1), nullptr);
  }
  // The user-spend spec of `job` (version `version`) reading `source` into
  // <sink>.v<version>, its state in dir/<state> (dir/<job> if empty).
  // `edit` (if given): text of the written spec replaced before it is
  // loaded (from, to).
  JobSpec SpecOf(const ScratchDir& dir, const std::string& job, const std::string& sink, const std::string& state = "",
                 const std::string& source = "transactions", int version = 1,
                 const std::pair<std::string, std::string>& edit = {}) {
    SpecOptions o;
    o.job = job;
    o.version = version;
    o.sink = sink;
    o.source = source;
    const std::string name = state.empty() ? job : state;
    o.state_dir = dir / name;
    const std::string path = WriteSpec(dir, name + ".yaml", o);
    if (!edit.first.empty()) {
      std::string text = ReadFile(path);
      const size_t at = text.find(edit.first);
      EXPECT_NE(at, std::string::npos) << text;
      if (at != std::string::npos) text.replace(at, edit.first.size(), edit.second);
      std::ofstream(path) << text;
    }
    auto spec = LoadJobSpec(path);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return spec.ok() ? *spec : JobSpec{};
  }
  // Notes, collected from whatever thread calls.
  NoteCallback Collect() {
    return [this](NoteLevel, const std::string& text) {
      std::lock_guard<std::mutex> lock(mu_);
      notes_ += text + "\n";
    };
  }
  std::string Notes() {
    std::lock_guard<std::mutex> lock(mu_);
    return notes_;
  }

  std::unique_ptr<EmbeddedBroker> control_;
  std::mutex mu_;
  std::string notes_;
};

TEST_F(DeploymentTest, ASlowControlTopicDoesNotBlockTheJobThread) {
  ScratchDir dir("slow-control");
  const JobSpec spec = Spec(dir);
  Registry registry(ControlConfig());
  ASSERT_TRUE(RegisterVersion(registry, spec, false).ok());
  // From now on every produce to the control topic (a progress write) is
  // answered only after 3 s.
  constexpr int kDelayMs = 3000;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(control_->mock_cluster(), 1, 0 /* Produce */, 1,
                                                           RD_KAFKA_RESP_ERR_NO_ERROR, kDelayMs),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  DeploymentOptions options;
  options.run.stop_at_end = true;
  options.run.max_rate = 8000;  // ~2.5 s for 20,000 records: many 100 ms checkpoints
  options.run.status_interval_ms = 0;
  options.registry_poll_ms = 500;
  options.on_note = Collect();
  RunSummary summary;
  const auto began = SteadyTime::now();
  Status st = RunDeployment(Config(), spec, options, registry, StopSource(), &summary);
  const double elapsed = SecondsSince(began);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(summary.counters.in, 20000);
  // A hook that waited for each write would take >= 3 s per checkpoint.
  EXPECT_GE(summary.epochs, 5);
  EXPECT_LT(summary.seconds, 6.0) << summary.epochs << " checkpoints";
  EXPECT_LT(summary.seconds * 1000, kDelayMs * static_cast<double>(summary.epochs) / 2);
  // The final record is written and awaited (its ack alone takes 3 s).
  EXPECT_GE(elapsed, kDelayMs / 1000.0);
  EXPECT_NE(Notes().find("version 1 registered already (serving)"), std::string::npos)
      << "registered above, before the run: " << Notes();

  Registry reader(ControlConfig());
  ASSERT_TRUE(reader.Refresh().ok());
  auto progress = reader.Progress(spec.job, spec.version);
  ASSERT_TRUE(progress.has_value());
  EXPECT_TRUE(progress->stopped);
  EXPECT_EQ(progress->snapshot.counters.in, 20000);
  EXPECT_EQ(progress->snapshot.total_lag(), 0);
}

TEST_F(DeploymentTest, AReplayIsMarkedCaughtUpAndStopsWhenRetired) {
  ScratchDir dir("retire");
  const JobSpec spec = Spec(dir);
  Registry registry(ControlConfig());
  DeploymentOptions options;
  options.replay = true;
  options.run.status_interval_ms = 0;
  options.registry_poll_ms = 200;
  options.catch_up_hold_ms = 300;
  options.on_note = Collect();
  StopSource stop;
  RunSummary summary;
  auto running = std::async(std::launch::async, [&] {
    return RunDeployment(Config(), spec, options, registry, stop, &summary);
  });

  // The publisher marks it caught up once it has kept up for the hold.
  Registry other(ControlConfig());
  const auto began = SteadyTime::now();
  bool caught_up = false;
  while (!caught_up && SecondsSince(began) < 30) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(other.Refresh().ok());
    auto job = other.Job(spec.job);
    caught_up = job && job->Find(1) && job->Find(1)->state == VersionState::kCaughtUp;
  }
  EXPECT_TRUE(caught_up) << Notes();
  auto progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value());
  EXPECT_FALSE(progress->stopped);

  std::string report;
  ASSERT_TRUE(Retire(other, spec.job, 1, 24 * 3600 * 1000, &report).ok()) << report;
  const auto retired_at = SteadyTime::now();
  if (running.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    stop.RequestStop();
    ADD_FAILURE() << "the retired version did not stop: " << Notes();
  }
  Status st = running.get();
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_LT(SecondsSince(retired_at), 10.0);
  EXPECT_NE(Notes().find("caught up"), std::string::npos) << Notes();
  EXPECT_NE(Notes().find("version 1 was retired; stopping"), std::string::npos) << Notes();
  ASSERT_TRUE(other.Refresh().ok());
  progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value());
  EXPECT_TRUE(progress->stopped);
  EXPECT_EQ(progress->snapshot.counters.in, 20000);
}

// A bounded replay (--stop-at-end) that ended before the catch-up hold
// (3 s by default) stayed "replaying" for good: a plain promote refused it
// and, once forced, status showed it "replaying SERVING" (a bug bash). Its
// input's end is within the catch-up lag: caught up, without the hold.
TEST_F(DeploymentTest, ABoundedReplayEndingBeforeTheHoldIsCaughtUp) {
  ScratchDir dir("to-the-end-early");
  const JobSpec spec = Spec(dir);
  Registry other(ControlConfig());
  std::optional<JobRecord> job;
  ASSERT_NO_FATAL_FAILURE(BoundedReplay(spec, /*hold_ms=*/600000, other, &job));  // the hold never over
  EXPECT_EQ(job->Find(1)->state, VersionState::kCaughtUp) << Notes();
  EXPECT_NE(Notes().find("records of the end when its bounded run ended); ready to promote"), std::string::npos)
      << Notes();
}

TEST_F(DeploymentTest, AReplayRunToTheEndIsMarkedCaughtUpBeforeItReturns) {
  ScratchDir dir("to-the-end");
  const JobSpec spec = Spec(dir);
  Registry other(ControlConfig());
  std::optional<JobRecord> job;
  ASSERT_NO_FATAL_FAILURE(BoundedReplay(spec, /*hold_ms=*/0, other, &job));
  EXPECT_EQ(job->Find(1)->state, VersionState::kCaughtUp) << Notes();
  EXPECT_EQ(job->serving, 0) << "a replay does not serve by itself";
  EXPECT_NE(Notes().find("ready to promote"), std::string::npos) << Notes();

  // The deployment created its state dir with kappa's marker, registered its
  // absolute path; a retire past the retention deletes everything the run
  // wrote there, and the directory.
  EXPECT_EQ(job->Find(1)->state_dir, AbsoluteStateDir(spec.state_dir));
  auto marker = ReadStateMarker(spec.state_dir);
  ASSERT_TRUE(marker.has_value());
  EXPECT_EQ(marker->job, spec.job);
  EXPECT_EQ(marker->version, 1);
  std::string report;
  ASSERT_TRUE(Retire(other, spec.job, 1, 0, &report).ok()) << report;
  EXPECT_NE(report.find("deleted the state of version 1"), std::string::npos) << report;
  EXPECT_FALSE(std::filesystem::exists(spec.state_dir)) << report;
}

// A restarted replay says it resumes from its checkpoint, and where; it used
// to say only "replaying from offset 0", which read like a replay that had
// lost its state.
TEST_F(DeploymentTest, ARestartedReplaySaysWhereItResumes) {
  ScratchDir dir("resume");
  JobSpec spec = Spec(dir);
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  options.replay = true;
  options.run.on_note = Collect();  // the job's own notes, as kappa replay prints them
  ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource()).ok());
  EXPECT_EQ(Notes().find("resuming from checkpoint"), std::string::npos) << "a first start resumes nothing\n"
                                                                           << Notes();
  notes_.clear();
  ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource()).ok());
  const std::string notes = Notes();
  EXPECT_EQ(notes.find("from offset 0 beside"), std::string::npos) << notes;
  const size_t at = notes.find("resuming from checkpoint epoch ");
  ASSERT_NE(at, std::string::npos) << notes;
  int64_t epoch = 0, offset0 = 0, offset1 = 0;
  ASSERT_EQ(std::sscanf(notes.c_str() + at,
                        "resuming from checkpoint epoch %" SCNd64 ": 2 of 2 partition(s) restored, next offsets 0:%" SCNd64
                        " 1:%" SCNd64,
                        &epoch, &offset0, &offset1),
            3)
      << notes;
  EXPECT_GT(epoch, 0);
  EXPECT_EQ(offset0 + offset1, 20000) << "both partitions read to their end before the restart";
}

// A stop the control topic did not take was reported as any clean stop:
// `kappa deploy` said "stopped cleanly" while status showed the version
// running (a bug bash). The summary says so.
TEST_F(DeploymentTest, AStopTheControlTopicDidNotTakeIsReported) {
  ScratchDir dir("stop-unrecorded");
  JobSpec spec = Spec(dir);
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  RunSummary summary;
  ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource(), &summary).ok()) << Notes();
  EXPECT_FALSE(summary.stop_unrecorded);
  // Registered already: the restart writes to the control topic only its
  // progress, every write of which is refused now.
  ProduceWorkload(Config(), "transactions", SmallWorkload(2, 2000));
  constexpr int16_t kProduceApi = 0;
  std::vector<rd_kafka_resp_err_t> errors(5000, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  rd_kafka_mock_push_request_errors_array(control_->mock_cluster(), kProduceApi, errors.size(), errors.data());
  const Status st = RunDeployment(Config(), spec, options, registry, StopSource(), &summary);
  rd_kafka_mock_clear_request_errors(control_->mock_cluster(), kProduceApi);
  ASSERT_TRUE(st.ok()) << st.ToString() << Notes();
  EXPECT_EQ(summary.counters.in, 22000);
  EXPECT_TRUE(summary.stop_unrecorded) << Notes();
  EXPECT_NE(Notes().find("could not record that the version stopped"), std::string::npos) << Notes();
}

// A version whose process exits on an error says so in its progress record:
// `kappa status` showed it "stopped", as after an operator's clean stop, and
// promote took it for a bounded run that had ended (a bug bash).
TEST_F(DeploymentTest, AVersionThatExitsOnAnErrorSaysWhyInItsProgress) {
  ScratchDir dir("exit-error");
  JobSpec spec = Spec(dir);
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource()).ok()) << Notes();
  Registry other(ControlConfig());
  ASSERT_TRUE(other.Refresh().ok());
  auto progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->Liveness(WallClockMs()), "stopped");
  EXPECT_EQ(progress->exit_error, "");

  // More history; the sink (the data broker, not the control topic's)
  // refuses every write for a while: the run fails.
  ProduceWorkload(Config(), "transactions", SmallWorkload(2, 20000));
  constexpr int16_t kProduceApi = 0;
  std::vector<rd_kafka_resp_err_t> errors(50, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  rd_kafka_mock_push_request_errors_array(broker_->mock_cluster(), kProduceApi, errors.size(), errors.data());
  const Status failed = RunDeployment(Config(), spec, options, registry, StopSource());
  ASSERT_FALSE(failed.ok());
  ASSERT_TRUE(other.Refresh().ok());
  progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value());
  EXPECT_TRUE(progress->stopped);
  EXPECT_NE(progress->exit_error.find("sink delivery failed"), std::string::npos) << progress->exit_error;
  const std::string liveness = progress->Liveness(WallClockMs());
  EXPECT_EQ(liveness.rfind("stopped on an error (", 0), 0u) << liveness;
  EXPECT_NE(liveness.find("start it again with the same spec"), std::string::npos) << liveness;

  // Mended, a restart ends cleanly and the error is gone from the record.
  rd_kafka_mock_clear_request_errors(broker_->mock_cluster(), kProduceApi);
  ASSERT_TRUE(RunDeployment(Config(), spec, options, registry, StopSource()).ok()) << Notes();
  ASSERT_TRUE(other.Refresh().ok());
  progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->Liveness(WallClockMs()), "stopped");
  EXPECT_EQ(progress->exit_error, "");
  EXPECT_EQ(progress->snapshot.counters.in, 40000);
}

// A first run that read records and failed before its first checkpoint (a
// replay stopped by a history gap at once, in a bug bash) left no progress
// record: status said "no progress reported yet", then "may have failed
// at its start", never the error, and promote said to wait.
TEST_F(DeploymentTest, AFirstRunThatFailsBeforeItsFirstReportStillSaysWhy) {
  ScratchDir dir("first-run-error");
  JobSpec spec = Spec(dir);
  spec.job = "early-failure";
  constexpr int16_t kProduceApi = 0;
  std::vector<rd_kafka_resp_err_t> errors(50, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  rd_kafka_mock_push_request_errors_array(broker_->mock_cluster(), kProduceApi, errors.size(), errors.data());
  Registry registry(ControlConfig());
  const Status failed = RunDeployment(Config(), spec, BoundedOptions(), registry, StopSource());
  rd_kafka_mock_clear_request_errors(broker_->mock_cluster(), kProduceApi);
  ASSERT_FALSE(failed.ok());
  Registry other(ControlConfig());
  ASSERT_TRUE(other.Refresh().ok());
  auto progress = other.Progress(spec.job, 1);
  ASSERT_TRUE(progress.has_value()) << "no progress record: status would say only 'no progress reported yet'";
  EXPECT_TRUE(progress->stopped);
  EXPECT_NE(progress->exit_error.find("sink delivery failed"), std::string::npos) << progress->exit_error;
  EXPECT_EQ(progress->Liveness(WallClockMs()).rfind("stopped on an error (", 0), 0u);
}

// Two jobs writing one output topic: `kappa get` answered with the other
// job's row and promote compared the other job's rows (a bug bash). The
// second job is refused at registration, naming the first; a deploy refused
// for its state directory (another job's) registers nothing, where it left
// a version serving that no process could run.
TEST_F(DeploymentTest, ASecondJobIsRefusedTheOutputTopicOrStateDirOfAnotherAndRegistersNothing) {
  ScratchDir dir("shared-output");
  auto spec_of = [&](const std::string& job, const std::string& state, const std::string& sink = "shared-out") {
    JobSpec spec = SpecOf(dir, job, sink, job);
    spec.state_dir = dir / state;
    return spec;
  };
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  ASSERT_TRUE(RunDeployment(Config(), spec_of("alpha", "alpha"), options, registry, StopSource()).ok()) << Notes();

  Status beta = RunDeployment(Config(), spec_of("beta", "beta"), options, registry, StopSource());
  ASSERT_FALSE(beta.ok());
  EXPECT_NE(beta.message().find("output topic shared-out.v1 is written by job alpha version 1"), std::string::npos)
      << beta.ToString();
  EXPECT_NE(beta.message().find("its own sink.topic"), std::string::npos) << beta.ToString();

  Status gamma = RunDeployment(Config(), spec_of("gamma", "alpha", "gamma-out"), options, registry, StopSource());
  ASSERT_FALSE(gamma.ok());
  EXPECT_NE(gamma.message().find("alpha"), std::string::npos) << gamma.ToString();

  Registry other(ControlConfig());
  ASSERT_TRUE(other.Refresh().ok());
  EXPECT_TRUE(other.Job("alpha").has_value());
  EXPECT_FALSE(other.Job("beta").has_value()) << "a refused job was registered";
  EXPECT_FALSE(other.Job("gamma").has_value()) << "a refused job was registered";
}

// `--control-topic transactions` (the job's source) was taken: registry
// records went into the input and every job reading it dead-lettered them
// (a bug bash). Refused before anything is written, as each topic the job
// reads or writes.
TEST_F(DeploymentTest, TheControlTopicIsNeverATopicOfTheJob) {
  ScratchDir dir("control-is-source");
  const JobSpec spec = Spec(dir);
  Registry registry(Config(), "transactions");
  Status st = RunDeployment(Config(), spec, BoundedOptions(), registry, StopSource());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("--control-topic transactions is the job's source topic"), std::string::npos)
      << st.ToString();
  Registry reader(Config(), "transactions");
  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_FALSE(reader.Job(spec.job).has_value()) << "registry records were written into the source topic";
  for (const std::string& topic : {spec.OutputTopic(), spec.dlq_topic, spec.ParkedTopic(), spec.late_topic,
                                   spec.RepartitionTopic(1), spec.ChangelogTopic()}) {
    EXPECT_FALSE(CheckControlTopic(spec, topic).ok()) << topic;
  }
  EXPECT_TRUE(CheckControlTopic(spec, "kappa.control").ok());
}

// A job whose output topic was another job's DLQ (or late topic), or whose
// DLQ was another job's output, was registered: `kappa dlq` read the rows as
// dead letters and `kappa get` the dead letters as rows (left alone by the
// last bug bash). Each is refused at registration, naming the other job.
TEST_F(DeploymentTest, AnOutputTopicIsNeverAnotherJobsDeadLetterOrLateTopic) {
  ScratchDir dir("shared-dlq");
  auto spec_of = [&](const std::string& job, const std::string& sink, const std::string& from = "",
                     const std::string& to = "") {
    return SpecOf(dir, job, sink, "", "transactions", 1, {from, to});
  };
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  // alpha's dead letters go to beta-out.v1, its late records to gamma-out.v1.
  ASSERT_TRUE(RunDeployment(Config(),
                            spec_of("alpha", "alpha-out", "dlq: {topic: alpha.dlq}\nlate: {topic: alpha.late}",
                                    "dlq: {topic: beta-out.v1}\nlate: {topic: gamma-out.v1}"),
                            options, registry, StopSource())
                  .ok())
      << Notes();

  Status beta = RunDeployment(Config(), spec_of("beta", "beta-out"), options, registry, StopSource());
  ASSERT_FALSE(beta.ok());
  EXPECT_NE(beta.message().find("output topic beta-out.v1 is the dead-letter topic of job alpha version 1"),
            std::string::npos)
      << beta.ToString();
  Status gamma = RunDeployment(Config(), spec_of("gamma", "gamma-out"), options, registry, StopSource());
  ASSERT_FALSE(gamma.ok());
  EXPECT_NE(gamma.message().find("output topic gamma-out.v1 is the late topic of job alpha version 1"),
            std::string::npos)
      << gamma.ToString();
  // delta's dead letters would land among alpha's rows.
  Status delta = RunDeployment(Config(), spec_of("delta", "delta-out", "dlq: {topic: delta.dlq}", "dlq: {topic: alpha-out.v1}"),
                               options, registry, StopSource());
  ASSERT_FALSE(delta.ok());
  EXPECT_NE(delta.message().find("`dlq.topic` makes job delta write alpha-out.v1, the output topic of job alpha version 1"),
            std::string::npos)
      << delta.ToString();

  Registry other(ControlConfig());
  ASSERT_TRUE(other.Refresh().ok());
  for (const char* job : {"beta", "gamma", "delta"}) EXPECT_FALSE(other.Job(job).has_value()) << job << " registered";
  const auto alpha = other.Job("alpha");
  ASSERT_TRUE(alpha.has_value());
  EXPECT_EQ(alpha->versions.at(0).dlq_topic, "beta-out.v1") << "kept in the control topic";
  EXPECT_EQ(alpha->versions.at(0).late_topic, "gamma-out.v1");
}

// A bug bash: one job's dead-letter or late topic could be another's
// changelog (a restore then read the dead letters as state: "the changelog
// is damaged", for good) or repartition topic (its stage 2 took them as
// input), and a version's dead-letter topic its own next version's output
// (`kappa get` served dead letters as v2's rows). Each is refused at
// registration, in either order.
TEST_F(DeploymentTest, DeadLettersNeverGoWhereAnotherVersionKeepsStateOrRows) {
  ScratchDir dir("internal-topics");
  auto spec_of = [&](const std::string& job, int version, const std::string& sink, const std::string& dlq) {
    return SpecOf(dir, job, sink, job + std::to_string(version), "transactions", version,
                  dlq.empty() ? std::pair<std::string, std::string>{}
                              : std::pair<std::string, std::string>{"dlq: {topic: " + job + ".dlq}",
                                                                    "dlq: {topic: " + dlq + "}"});
  };
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  ASSERT_TRUE(RunDeployment(Config(), spec_of("epsilon", 1, "epsilon-out", "zeta.v1.changelog"), options, registry,
                            StopSource())
                  .ok())
      << Notes();
  const Status zeta = RunDeployment(Config(), spec_of("zeta", 1, "zeta-out", ""), options, registry, StopSource());
  EXPECT_NE(zeta.message().find("zeta.v1.changelog, a topic kappa keeps for job zeta version 1"), std::string::npos)
      << zeta.ToString();
  const Status iota = RunDeployment(Config(), spec_of("iota", 1, "iota-out", "epsilon.v1.repartition.1"), options,
                                    registry, StopSource());
  EXPECT_NE(iota.message().find("`dlq.topic` makes job iota write epsilon.v1.repartition.1, a topic kappa keeps for "
                                "job epsilon version 1"),
            std::string::npos)
      << iota.ToString();
  ASSERT_TRUE(
      RunDeployment(Config(), spec_of("eta", 1, "eta-out", "eta-out.v2"), options, registry, StopSource()).ok())
      << Notes();
  const Status eta2 = RunDeployment(Config(), spec_of("eta", 2, "eta-out", ""), options, registry, StopSource());
  EXPECT_NE(eta2.message().find("output topic eta-out.v2 is the dead-letter topic of version 1"), std::string::npos)
      << eta2.ToString();
  Registry other(ControlConfig());
  ASSERT_TRUE(other.Refresh().ok());
  EXPECT_FALSE(other.Job("zeta") && other.Job("zeta")->Find(1)) << "zeta registered";
  EXPECT_FALSE(other.Job("iota") && other.Job("iota")->Find(1)) << "iota registered";
  EXPECT_EQ(other.Job("eta")->Find(2), nullptr) << "eta v2 registered";
}

// A bug bash: job cya read job cyb's output and cyb read cya's; both were
// registered, and 10 records seeded went round until 34,000 in 24 s. A
// registration that would close a loop through registered versions is
// refused, naming them; one that reads a loop's topic without closing it
// is not.
TEST_F(DeploymentTest, ARegistrationClosingALoopThroughAnotherJobIsRefused) {
  ScratchDir dir("loop");
  CreateTopic("loop-a.v1", 2);
  CreateTopic("loop-b.v1", 2);
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  ASSERT_TRUE(RunDeployment(Config(), SpecOf(dir, "ping", "loop-a", "", "loop-b.v1"), options, registry, StopSource())
                  .ok())
      << Notes();
  const Status pong =
      RunDeployment(Config(), SpecOf(dir, "pong", "loop-b", "", "loop-a.v1"), options, registry, StopSource());
  ASSERT_FALSE(pong.ok());
  EXPECT_NE(pong.message().find("job pong version 1 would close a loop: its output comes back to its source "
                                "through job ping version 1 (loop-b.v1 -> loop-a.v1)"),
            std::string::npos)
      << pong.ToString();
  EXPECT_TRUE(
      RunDeployment(Config(), SpecOf(dir, "tap", "loop-c", "", "loop-a.v1"), options, registry, StopSource()).ok())
      << Notes();
}

// A deploy refused at its start (its source missing, its sink holding
// another job's rows) left its version registered: serving, no process to
// run it, refused by retire ("it serves"), blocking the corrected spec under
// the same number, and `kappa get` answered with the other job's rows (a bug
// bash). A version that never ran is unregistered again.
TEST_F(DeploymentTest, ADeployRefusedAtItsStartLeavesTheRegistryAsItWas) {
  ScratchDir dir("refused-at-start");
  auto spec_of = [&](const std::string& job, const std::string& sink, const std::string& source = "transactions") {
    return SpecOf(dir, job, sink, job + "-" + source, source);
  };
  Registry registry(ControlConfig());
  DeploymentOptions options = BoundedOptions();
  Registry other(ControlConfig());
  auto registered = [&](const std::string& job) {
    EXPECT_TRUE(other.Refresh().ok());
    auto record = other.Job(job);
    return record && record->Find(1) != nullptr;
  };

  const Status missing = RunDeployment(Config(), spec_of("lost", "lost-out", "no-such-topic"), options, registry,
                                       StopSource());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("no-such-topic"), std::string::npos) << missing.ToString();
  EXPECT_FALSE(registered("lost")) << "a version that never ran stayed registered";
  EXPECT_TRUE(other.Jobs().empty()) << "listed with no version";
  // Checked before registering: registered meanwhile, it made another job's
  // valid deploy of the same sink withdraw (a bug bash).
  EXPECT_EQ(Notes().find("registered"), std::string::npos) << Notes();
  // The corrected spec (another spec hash) takes version 1.
  ASSERT_TRUE(RunDeployment(Config(), spec_of("lost", "lost-out"), options, registry, StopSource()).ok()) << Notes();
  EXPECT_TRUE(registered("lost"));

  // Rows of an unregistered run of job owner in taken.v1.
  RunOptions run;
  run.stop_at_end = true;
  run.status_interval_ms = 0;
  JobRunner owner(spec_of("owner", "taken"), Config(), run);
  ASSERT_TRUE(owner.Run(StopSource()).ok());
  const Status intruder = RunDeployment(Config(), spec_of("intruder", "taken"), options, registry, StopSource());
  ASSERT_FALSE(intruder.ok());
  EXPECT_NE(intruder.message().find("taken.v1 holds rows of another job, owner"), std::string::npos)
      << intruder.ToString();
  EXPECT_FALSE(registered("intruder")) << "a version that never ran stayed registered";
  EXPECT_NE(Notes().find("job intruder version 1 unregistered again: it did not start"), std::string::npos)
      << Notes();

  // Registered by a process killed before its start was refused (a bug
  // bash): the rerun found it "registered already" and left it serving for
  // good. No process of it has reported for 30 s: withdrawn too.
  const JobSpec late = spec_of("late-intruder", "taken");
  {
    JobRecord record;
    record.job = late.job;
    VersionInfo v;
    v.version = 1;
    v.spec_hash = late.spec_hash;
    v.source_topic = late.source_topic;
    v.output_topic = late.OutputTopic();
    v.group = late.ConsumerGroup();
    v.state_dir = AbsoluteStateDir(late.state_dir);
    v.registered_at_ms = WallClockMs() - 60000;
    record.versions.push_back(v);
    record.serving = 1;
    ASSERT_TRUE(registry.Refresh().ok());
    ASSERT_TRUE(registry.PutJob(record).ok());
  }
  const Status again = RunDeployment(Config(), late, options, registry, StopSource());
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.message().find("holds rows of another job, owner"), std::string::npos) << again.ToString();
  EXPECT_FALSE(registered("late-intruder")) << "a version no process ever ran stayed registered";

  // A scaled-out replay whose changelog topic the embedded broker cannot
  // make stayed "replaying" (a bug bash).
  JobSpec scaled = spec_of("scaled", "scaled-out");
  scaled.scale_out.enabled = true;
  scaled.scale_out.instance = "a";
  DeploymentOptions replay = options;
  replay.replay = true;
  replay.run.stop_at_end = false;
  const Status no_changelog = RunDeployment(Config(), scaled, replay, registry, StopSource());
  ASSERT_FALSE(no_changelog.ok());
  EXPECT_NE(no_changelog.message().find("scaled.v1.changelog"), std::string::npos) << no_changelog.ToString();
  EXPECT_FALSE(registered("scaled")) << "a version that never ran stayed registered";
}

// A bug bash: the same new version deployed twice at the same moment (one
// state directory): the process refused the RocksDB lock took itself for
// the registrant and unregistered the version the other one ran (8 of 8);
// and creating the store, it removed the other's files half-way, so both
// failed (1 of 8). One runs, the version stays registered.
TEST_F(DeploymentTest, TheSameVersionDeployedTwiceAtOnceStaysRegisteredAndOneRuns) {
  ScratchDir dir("same-twice");
  for (int round = 0; round < 3; ++round) {
    const std::string job = "twice" + std::to_string(round);
    const JobSpec spec = SpecOf(dir, job, job + "-out");
    auto deploy = [&] {
      Registry registry(ControlConfig());
      return RunDeployment(Config(), spec, BoundedOptions(), registry, StopSource());
    };
    auto first = std::async(std::launch::async, deploy);
    auto second = std::async(std::launch::async, deploy);
    const Status a = first.get(), b = second.get();
    EXPECT_TRUE(a.ok() || b.ok()) << "round " << round << ": neither ran: " << a.ToString() << " / " << b.ToString();
    Registry reader(ControlConfig());
    ASSERT_TRUE(reader.Refresh().ok());
    auto record = reader.Job(job);
    EXPECT_TRUE(record && record->Find(1) != nullptr)
        << "round " << round << ": the version one process ran was unregistered: " << a.ToString() << " / "
        << b.ToString() << "\n" << Notes();
  }
}

// Unregistered, a version that served (as the job's first) leaves serving
// what would serve had it never registered: a bug bash left the version
// that never ran serving ("it was made to serve meanwhile", which nobody
// had) beside the one that ran.
TEST_F(DeploymentTest, AnUnregisteredFirstVersionHandsServingToTheNextLiveOne) {
  ScratchDir dir("unregister-serving");
  const JobSpec v1 = SpecOf(dir, "handover", "handover-out", "v1");
  const JobSpec v2 = SpecOf(dir, "handover", "handover-out", "v2", "transactions", 2);
  Registry registry(ControlConfig());
  bool added = false;
  ASSERT_TRUE(RegisterVersion(registry, v1, false, &added).ok());
  ASSERT_TRUE(added);
  const int64_t claim = registry.RegisteredOffset("handover", 1);
  ASSERT_TRUE(RegisterVersion(registry, v2, false, &added).ok());
  ASSERT_TRUE(added);
  ASSERT_EQ(registry.Job("handover")->serving, 1);
  ASSERT_TRUE(UnregisterUnstarted(registry, v1, claim).ok());
  Registry reader(ControlConfig());
  ASSERT_TRUE(reader.Refresh().ok());
  auto job = reader.Job("handover");
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->Find(1), nullptr);
  EXPECT_EQ(job->serving, 2);
}

// Two jobs registering one output topic at the same moment each passed the
// check before the other's write; both served, and `kappa get` answered
// with the other job's rows (a bug bash, 2 of 3 tries). The registration
// later in the control topic withdraws.
TEST_F(DeploymentTest, OfTwoJobsRegisteringOneOutputAtOnceTheLaterWithdraws) {
  ScratchDir dir("output-race");
  auto spec_of = [&](const std::string& job, const std::string& sink) { return SpecOf(dir, job, sink); };
  // The registrations as two racing deploys write them, each unaware of the
  // other: the first in the log keeps the topic.
  {
    Registry registry(ControlConfig());
    ASSERT_TRUE(registry.Refresh().ok());
    for (const std::string job : {"early", "late"}) {
      JobRecord record;
      record.job = job;
      VersionInfo v;
      v.version = 1;
      v.output_topic = "contested.v1";
      v.group = job + ".v1";
      record.versions.push_back(v);
      record.serving = 1;
      ASSERT_TRUE(registry.PutJob(record).ok());
    }
    EXPECT_TRUE(CheckRegisteredFirst(registry, spec_of("early", "contested")).ok());
    const Status late = CheckRegisteredFirst(registry, spec_of("late", "contested"));
    EXPECT_NE(late.message().find("output topic contested.v1 is written by job early version 1"), std::string::npos)
        << late.ToString();
  }
  // Deploys racing for real: never both registered.
  for (int round = 0; round < 4; ++round) {
    const std::string a = "ra" + std::to_string(round), b = "rb" + std::to_string(round);
    const std::string sink = "race" + std::to_string(round);
    auto deploy = [&](const std::string& job) {
      Registry registry(ControlConfig());
      return RunDeployment(Config(), spec_of(job, sink), BoundedOptions(), registry, StopSource());
    };
    auto first = std::async(std::launch::async, deploy, a);
    auto second = std::async(std::launch::async, deploy, b);
    const Status sa = first.get(), sb = second.get();
    EXPECT_NE(sa.ok(), sb.ok()) << "round " << round << ": " << sa.ToString() << " / " << sb.ToString();
    Registry reader(ControlConfig());
    ASSERT_TRUE(reader.Refresh().ok());
    int registered = 0;
    for (const std::string& job : {a, b}) {
      auto record = reader.Job(job);
      registered += record && record->Find(1) != nullptr;
    }
    EXPECT_EQ(registered, 1) << "round " << round;
  }
}

}  // namespace
}  // namespace kappa::testing
