// Stories of a user with limited rights on a secured Kafka (scripts/kafka.sh
// start --secure: authorization on, alice allowed only what a test grants).
// Kafka leaves a topic the principal may not describe out of an all-topics
// metadata answer, and kappa took that for a topic that does not exist: a
// bug bash met "does not exist: create it first" for topics that existed,
// `kappa status` answering "no jobs registered" (exit 0) beside a serving
// job, `dlq replay` re-injecting records it had re-injected before (its
// markers in the unreadable control topic read as none), and promote's
// changed-share gate passing on an unreadable serving output (read as no
// rows). Each says now that the principal is not authorized, and nothing
// is written or promoted.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>
#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class SecureAccessTest : public SecureRealKafkaTest<> {
 protected:
  // `args` then alice's login options.
  std::vector<std::string> AsAlice(std::vector<std::string> args) const {
    for (const std::string& a : As("alice")) args.push_back(a);
    return args;
  }
  static void ExpectNotAuthorized(const std::string& err, const std::string& topic) {
    EXPECT_NE(err.find("'" + topic + "': not authorized (TOPIC_AUTHORIZATION_FAILED)"), std::string::npos) << err;
    EXPECT_EQ(err.find("does not exist"), std::string::npos) << err;
    EXPECT_EQ(err.find("alice-secret"), std::string::npos) << "the password: " << err;
  }
  // Waits (at most 90 s) until the job's metrics file says it read `n`
  // records; the process must run meanwhile.
  static void WaitForRecordsIn(ChildProcess& job, const std::string& metrics, int64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (ReadFile(metrics).find("\"records_in\": " + std::to_string(n)) == std::string::npos) {
      ASSERT_EQ(job.WaitFor(0), -1) << job.Stderr();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << job.Stderr();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  // A job name of its own (`prefix` made unique), its source `<job>-in`
  // (2 partitions) holding `records` generated ones (`seed`), and its own
  // compacted control topic `<job>-control`.
  struct JobTopics {
    std::string job, input, control;
  };
  JobTopics MakeJobTopics(const std::string& prefix, uint64_t seed, uint64_t records) {
    JobTopics t;
    t.job = Unique(prefix);
    t.input = t.job + "-in";
    t.control = t.job + "-control";
    EXPECT_TRUE(CreateTopicAdmin(Config(), t.input, 2, 1).ok());
    EXPECT_TRUE(CreateTopicAdmin(Config(), t.control, 2, 1, {{"cleanup.policy", "compact"}}).ok());
    ProduceWorkload(Config(), t.input, SmallWorkload(seed, records, 50));
    return t;
  }
  // As the super user: `kappa deploy v1`, then `kappa replay v2`, each to its input's end.
  void DeployAndReplay(const std::string& v1, const std::string& v2, const std::string& control) {
    std::string out, err;
    for (const auto& [command, spec] : {std::pair<std::string, std::string>{"deploy", v1}, {"replay", v2}}) {
      ASSERT_EQ(RunKappa({command, spec, "-b", bootstrap_, "--control-topic", control, "--stop-at-end",
                          "--status-interval-ms", "0"},
                         &out, &err),
                0)
          << command << ": " << err;
    }
  }
  int64_t Records(const std::string& topic) {
    int64_t n = 0;
    auto read = ReadTopic(Config(), topic, [&](const ConsumedRecord&) { ++n; });
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    return n;
  }
};

TEST_F(SecureAccessTest, ATopicAliceMayNotDescribeIsNotAuthorizedNotMissing) {
  const std::string topic = Unique("hidden");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
  std::string out, err;
  EXPECT_EQ(RunKappa(AsAlice({"consume", "-t", topic}), &out, &err), 1) << out << err;
  ExpectNotAuthorized(err, topic);
  EXPECT_EQ(RunKappa(AsAlice({"gen", "-t", topic, "-n", "10"}), &out, &err), 1) << out << err;
  ExpectNotAuthorized(err, topic);
  EXPECT_EQ(Records(topic), 0);

  // Granted, the same command works.
  AllowAlice("topic", topic, "all");
  EXPECT_EQ(RunKappa(AsAlice({"gen", "-t", topic, "-n", "10"}), &out, &err), 0) << out << err;
  EXPECT_EQ(Records(topic), 10);
}

TEST_F(SecureAccessTest, StatusWithoutAccessToTheControlTopicFailsNotAnEmptyRegistry) {
  const std::string control = Unique("control");
  ASSERT_TRUE(CreateTopicAdmin(Config(), control, 1, 1, {{"cleanup.policy", "compact"}}).ok());
  std::string out, err;
  EXPECT_EQ(RunKappa(AsAlice({"status", "--control-topic", control}), &out, &err), 1) << out << err;
  EXPECT_EQ(out.find("no jobs registered"), std::string::npos) << out;
  ExpectNotAuthorized(err, control);
}

// A DLQ replay reads its markers (what an earlier replay re-injected) from
// the control topic before it injects anything: unreadable, it injects
// nothing (it re-injected every record again, then failed to mark them).
TEST_F(SecureAccessTest, DlqReplayWithoutAccessToTheControlTopicInjectsNothing) {
  const std::string input = Unique("dlq-in");
  const std::string control = Unique("dlq-control");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  ASSERT_TRUE(CreateTopicAdmin(Config(), control, 1, 1, {{"cleanup.policy", "compact"}}).ok());
  GeneratorOptions gen = SmallWorkload(5, 2000, 50);
  gen.malformed_fraction = 0.05;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, gen));
  ScratchDir dir("secure-dlq");
  SpecOptions o = JobOptions(Unique("dlqjob"), input, dir / "state");
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "job.yaml", o), "-b", bootstrap_, "--stop-at-end",
                      "--status-interval-ms", "0"},
                     &out, &err),
            0)
      << err;
  const std::string dlq = o.job + ".dlq";
  ASSERT_GT(Records(dlq), 0);
  const int64_t before = Records(input);
  // Everything but the control topic.
  AllowAlice("topic", input, "all");
  AllowAlice("topic", dlq, "all");
  AllowAlice("group", "*", "all");
  EXPECT_EQ(RunKappa(AsAlice({"dlq", "replay", dlq, "--to", input, "--control-topic", control}), &out, &err), 1)
      << out << err;
  ExpectNotAuthorized(err, control);
  EXPECT_EQ(Records(input), before) << "records were re-injected without their markers";
}

// Promote's diff reads the serving version's outputs: unreadable, they are
// no "nothing produced yet" (0 rows compared, 0% changed, promoted), and the
// gate refuses nothing it has not compared.
TEST_F(SecureAccessTest, PromoteRefusesWhenTheServingOutputCannotBeRead) {
  const std::string input = Unique("pr-in");
  const std::string control = Unique("pr-control");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  ASSERT_TRUE(CreateTopicAdmin(Config(), control, 2, 1, {{"cleanup.policy", "compact"}}).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(9, 3000, 50)));
  ScratchDir dir("secure-promote");
  SpecOptions o = JobOptions(Unique("prjob"), input, dir / "v1");
  const std::string v1 = WriteSpec(dir, "v1.yaml", o);
  o.version = 2;
  o.filter = "amount_cents > 100";  // other rows: the gate has something to refuse
  o.state_dir = dir / "v2";
  const std::string v2 = WriteSpec(dir, "v2.yaml", o);
  ASSERT_NO_FATAL_FAILURE(DeployAndReplay(v1, v2, control));
  std::string out, err;
  // alice may run the registry and read v2's outputs, not v1's.
  AllowAlice("topic", control, "all");
  AllowAlice("topic", o.sink + ".v2", "read");
  AllowAlice("group", "*", "all");
  EXPECT_EQ(RunKappa(AsAlice({"promote", o.job, "--version", "2", "--force", "--max-changed-share", "0.05",
                              "--control-topic", control}),
                     &out, &err),
            1)
      << out << err;
  ExpectNotAuthorized(err, o.sink + ".v1");
  EXPECT_EQ(out.find("now serves"), std::string::npos) << out;
}

// A bug bash: an at-least-once job whose principal lost Read on its source
// went on "running" at 0 rec/s, with one "transient consumer error ...
// (retrying)" per partition, status "within catch-up lag", and promote let
// it serve. It stops, naming what to grant.
TEST_F(SecureAccessTest, AJobThatLosesReadOnItsSourceStopsNamingTheAcl) {
  const std::string job = Unique("rvjob");
  const std::string input = job + "-in";
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(4, 500, 50)));
  ScratchDir dir("secure-revoked");
  SpecOptions o = JobOptions(job, input, dir / "v1");
  o.checkpoint_interval = "500ms";
  const std::string spec = WriteSpec(dir, "v1.yaml", o);
  // carol: bob must hold no Write anywhere (SecureErrorsTest), and grants
  // stay for the broker's life.
  Allow("carol", "topic", job, "all", /*prefixed=*/true);
  Allow("carol", "group", job, "all", /*prefixed=*/true);
  std::vector<std::string> args = {"run", spec, "--status-interval-ms", "0"};
  for (const std::string& a : As("carol")) args.push_back(a);
  ChildProcess run(args, "secure-revoked");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(run, dir / "v1/metrics.json", 500));
  Deny("carol", "topic", input, "read");
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(5, 100, 50)));
  const int rc = run.WaitFor(60000);
  if (rc == -1) run.Kill(SIGKILL);
  ASSERT_EQ(rc, 1) << "still running 60 s after its Read was taken away:\n" << run.Stderr();
  EXPECT_NE(run.Stderr().find("not authorized to read it"), std::string::npos) << run.Stderr();
  EXPECT_NE(run.Stderr().find("the principal needs Read and Describe on topic " + input), std::string::npos)
      << run.Stderr();
}

// A bug bash: with Write on its output topic, which did not exist yet, a job
// stopped on "cannot produce to pay-out.v1: TOPIC_AUTHORIZATION_FAILED", a
// topic the principal may write: the broker's auto-create needs Create.
// The error says so.
TEST_F(SecureAccessTest, AnOutputTopicThatDoesNotExistNeedsCreateAndTheErrorSaysSo) {
  const std::string job = Unique("crjob");
  const std::string input = job + "-in";
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  GeneratorOptions gen = SmallWorkload(8, 200, 50);
  gen.malformed_fraction = 0.1;  // dead letters: the first write, to the DLQ topic
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, gen));
  ScratchDir dir("secure-create");
  SpecOptions o = JobOptions(job, input, dir / "v1");
  const std::string spec = WriteSpec(dir, "v1.yaml", o);
  AllowAlice("topic", input, "read");
  AllowAlice("topic", input, "describe");
  for (const std::string& topic : {o.sink + ".v1", job + ".dlq", job + ".late"}) {
    AllowAlice("topic", topic, "write");
    AllowAlice("topic", topic, "describe");
  }
  AllowAlice("group", job + ".v1", "read");
  std::string out, err;
  EXPECT_EQ(RunKappa(AsAlice({"run", spec, "--stop-at-end", "--status-interval-ms", "0"}), &out, &err), 1)
      << out << err;
  EXPECT_NE(err.find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos) << err;
  EXPECT_NE(err.find("and Create while it does not exist (or make it beforehand)"), std::string::npos) << err;
}

// A bug bash without Describe on the source: promote said "not found: ...
// Unknown partition", and status "lag 0 (100.0% done)" for a version 3000
// records behind (the cause on a later line). Both say what they cannot read.
TEST_F(SecureAccessTest, WithoutDescribeOnTheSourceStatusAndPromoteSayTheyCannotReadItsEnds) {
  const JobTopics topics = MakeJobTopics("dsjob", 10, 600);
  ASSERT_FALSE(HasFailure());
  const std::string &job = topics.job, &input = topics.input, &control = topics.control;
  ScratchDir dir("secure-describe");
  SpecOptions o = JobOptions(job, input, dir / "v1");
  const std::string v1 = WriteSpec(dir, "v1.yaml", o);
  o.version = 2;
  o.state_dir = dir / "v2";
  const std::string v2 = WriteSpec(dir, "v2.yaml", o);
  ASSERT_NO_FATAL_FAILURE(DeployAndReplay(v1, v2, control));
  std::string out, err;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(11, 300, 50)));
  AllowAlice("topic", control, "all");
  AllowAlice("topic", o.sink, "read", /*prefixed=*/true);
  AllowAlice("group", "*", "all");
  ASSERT_EQ(RunKappa(AsAlice({"status", job, "--control-topic", control}), &out, &err), 0) << err;
  EXPECT_NE(out.find("lag at least 0 (the log ends cannot be read now)"), std::string::npos) << out;
  EXPECT_EQ(out.find("100.0% done"), std::string::npos) << out;
  EXPECT_EQ(RunKappa(AsAlice({"promote", job, "--version", "2", "--control-topic", control}), &out, &err), 1)
      << out << err;
  EXPECT_NE(err.find("not authorized"), std::string::npos) << err;
  EXPECT_NE(err.find("Describe on topic " + input), std::string::npos) << err;
  EXPECT_EQ(err.find("not found"), std::string::npos) << err;
}

// A bug bash: the README's ACLs named only Write on a scaled-out version's
// changelog; its instances stopped on "unavailable: reading
// <job>.v1.changelog[0]: ... Topic authorization failed". Restoring a
// partition reads it: the error names the ACL.
TEST_F(SecureAccessTest, AScaledOutInstanceWithoutReadOnTheChangelogNamesTheAcl) {
  const std::string job = Unique("cljob");
  const std::string input = job + "-in";
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  ASSERT_TRUE(CreateTopicAdmin(Config(), job + ".v1.changelog", 2, 1, {{"cleanup.policy", "compact"}}).ok());
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), input, SmallWorkload(12, 400, 50)));
  ScratchDir dir("secure-changelog");
  SpecOptions o = JobOptions(job, input, dir / "unused");
  o.checkpoint_interval = "300ms";
  const std::string spec = WriteSpec(dir, "v1.yaml", o);
  std::ofstream(spec, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  // The super user's instance writes the changelog, then stops.
  ChildProcess first({"run", spec, "-b", bootstrap_, "--instance", "a", "--state-dir", dir / "a",
                      "--status-interval-ms", "0"},
                     "secure-changelog-a");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(first, dir / "a/metrics.json", 400));
  first.Kill(SIGTERM);
  ASSERT_EQ(first.WaitFor(60000), 0) << first.Stderr();
  // carol, Read on the changelog taken away, restores from it elsewhere.
  Allow("carol", "topic", job, "all", /*prefixed=*/true);
  Allow("carol", "group", "*", "all");
  Deny("carol", "topic", job + ".v1.changelog", "read");
  std::vector<std::string> args = {"run", spec, "--instance", "b", "--state-dir", dir / "b", "--status-interval-ms",
                                    "0"};
  for (const std::string& a : As("carol")) args.push_back(a);
  ChildProcess second(args, "secure-changelog-b");
  const int rc = second.WaitFor(90000);
  if (rc == -1) second.Kill(SIGKILL);
  ASSERT_EQ(rc, 1) << second.Stderr();
  EXPECT_NE(second.Stderr().find("the principal needs Read and Describe on topic " + job + ".v1.changelog"),
            std::string::npos)
      << second.Stderr();
}

// A bug bash: a deployed version whose principal lost Read on the control
// topic went on reading while paused and retired, without a word, while
// status showed both as applied. It says it cannot read the registry, and
// that its throttle, pause and retire go unseen.
TEST_F(SecureAccessTest, AVersionThatCannotReadTheControlTopicSaysItsThrottleAndRetireGoUnseen) {
  const JobTopics topics = MakeJobTopics("ctljob", 6, 300);
  ASSERT_FALSE(HasFailure());
  const std::string &job = topics.job, &input = topics.input, &control = topics.control;
  ScratchDir dir("secure-control");
  SpecOptions o = JobOptions(job, input, dir / "v1");
  o.checkpoint_interval = "500ms";
  const std::string spec = WriteSpec(dir, "v1.yaml", o);
  Allow("carol", "topic", job, "all", /*prefixed=*/true);
  Allow("carol", "group", "*", "all");
  std::vector<std::string> args = {"deploy", spec, "--control-topic", control, "--status-interval-ms", "0"};
  for (const std::string& a : As("carol")) args.push_back(a);
  ChildProcess deploy(args, "secure-control");
  ASSERT_NO_FATAL_FAILURE(WaitForRecordsIn(deploy, dir / "v1/metrics.json", 300));
  Deny("carol", "topic", control, "read");
  const std::string said = "cannot read the control topic " + control;
  const auto warned_by = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (deploy.Stderr().find(said) == std::string::npos && std::chrono::steady_clock::now() < warned_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const std::string err = deploy.Stderr();
  deploy.Kill(SIGTERM);
  deploy.WaitFor(60000);
  ASSERT_NE(err.find(said), std::string::npos) << "no word of the unreadable registry:\n" << err;
  EXPECT_NE(err.find("kappa throttle, pause and retire of " + job + " v1 are not seen until it can"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("the principal needs Read and Describe on topic " + control), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
