// Topics that go wrong under a `kappa run` on a real Apache Kafka (the
// suite's broker, CTest fixture `realkafka`), found by a bug bash:
//   - the input topic is deleted while a bounded run reads it: the run ends
//     within a bound and says how (its summary, or an error), under both
//     deliveries; librdkafka 2.0.2's teardown of a consumer whose topic was
//     deleted never finishes, and the run hung for good after its final
//     checkpoint (exactly_once: without printing its error);
//   - an output the broker refuses (larger than the output topic's
//     max.message.bytes): exactly_once names the topic, the cause and what to
//     raise, as at_least_once does, not the transaction step that failed
//     after it;
//   - output, DLQ and late topics missing on a broker that does not create
//     topics: the job stops at start naming them (on a cluster of its own);
//   - the output topic deleted and made again between runs: the restart is
//     refused, --reset-state writes every row again.
// Each test uses its own topics and job names, so they may share the broker
// and run in parallel.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "replay/materialized_table.h"
#include "tests/replay/replay_test_util.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class TopicFaultsTest : public SharedRealKafkaTest<::testing::TestWithParam<std::string>> {
 protected:
  void SetUp() override {
    SharedRealKafkaTest::SetUp();
    if (this->IsSkipped()) return;
    id_ = GetParam() + "-" + id_;
  }

  // A 4-partition input of `count` records (hourly windows close as it goes)
  // and a spec reading it with the test's delivery.
  SpecOptions MakeInput(const ScratchDir& dir, const std::string& name, uint64_t count) {
    SpecOptions o;
    o.job = Unique(name);
    o.source = Unique(name + "-in");
    o.sink = Unique(name + "-out");
    o.state_dir = dir / "state";
    o.delivery = GetParam();
    Status created = CreateTopicAdmin(Config(), o.source, 4, 1);
    EXPECT_TRUE(created.ok()) << created.ToString();
    GeneratorOptions gen = SmallWorkload(53, count, 300);
    gen.start_time_ms = WallClockMs() - 48LL * 3600 * 1000;
    ProduceWorkload(Config(), o.source, gen);
    return o;
  }
};

// An error as `kappa run` prints it when the run ends with one.
const std::regex kRunError("kappa run: (unavailable|data loss|not found|aborted|failed precondition|I/O error): ");

TEST_P(TopicFaultsTest, ABoundedRunWhoseInputTopicIsDeletedEndsAndSaysHow) {
  ScratchDir dir("input-deleted-" + GetParam());
  SpecOptions o;
  ASSERT_NO_FATAL_FAILURE(o = MakeInput(dir, "gone", 40000));
  const std::string spec = WriteSpec(dir, "spec.yaml", o);
  // Rate-limited, so the deletion comes while it reads (~10 s of input).
  ChildProcess job({"run", spec, "-b", bootstrap_, "--stop-at-end", "--final-watermark", "--max-rate", "4000",
                    "--status-interval-ms", "1000"},
                   "input-deleted-" + GetParam());
  ASSERT_TRUE(WaitUntilReading(job, 60)) << job.Stderr();
  Status deleted = DeleteTopicAdmin(Config(), o.source);
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();

  // No stop request: the run must end by itself (it hung for good).
  const int rc = job.WaitFor(60000);
  ASSERT_NE(rc, -1) << "still running 60 s after its input topic was deleted\n" << job.Stderr();
  const std::string err = job.Stderr();
  EXPECT_EQ(err.find("still stopping"), std::string::npos) << err;
  if (rc == 0) {
    // It had fetched everything before the deletion: a clean end.
    EXPECT_NE(job.Stdout().find("stopped cleanly"), std::string::npos) << job.Stdout() << err;
  } else {
    EXPECT_EQ(rc, 1) << err;
    EXPECT_TRUE(std::regex_search(err, kRunError)) << "no error printed\n" << err;
    if (GetParam() == "exactly_once") {
      // The transaction's offsets of the deleted topic fail the commit: a
      // restart meets the same, so the message names the topic instead.
      EXPECT_EQ(err.find("restart it to resume"), std::string::npos) << err;
      EXPECT_NE(err.find("the input topic " + o.source + " does not exist any more"), std::string::npos) << err;
    }
  }
}

TEST_P(TopicFaultsTest, AnOutputTheBrokerRefusesAsTooLargeIsNamedWithWhatToRaise) {
  ScratchDir dir("output-too-large-" + GetParam());
  SpecOptions o;
  // 50 min of event time: every output comes from the final watermark, into
  // the last transaction, whose commit met the refused delivery first (in
  // the middle of a run the job's loop sees the failed delivery first).
  ASSERT_NO_FATAL_FAILURE(o = MakeInput(dir, "big", 3000));
  // The output topic made beforehand with a limit below any batch of rows:
  // the broker refuses them (MESSAGE_TOO_LARGE), the producer does not.
  const std::string out_topic = o.sink + ".v1";
  Status created = CreateTopicAdmin(Config(), out_topic, 1, 1, {{"max.message.bytes", "100"}});
  ASSERT_TRUE(created.ok()) << created.ToString();
  const std::string spec = WriteSpec(dir, "spec.yaml", o);
  std::string out, err;
  const int rc = RunKappa({"run", spec, "-b", bootstrap_, "--stop-at-end", "--final-watermark",
                           "--status-interval-ms", "0"},
                          &out, &err, "output-too-large-" + GetParam());
  EXPECT_EQ(rc, 1) << err;
  EXPECT_NE(err.find("delivery to " + out_topic), std::string::npos) << "names the topic\n" << err;
  EXPECT_NE(err.find("MSG_SIZE_TOO_LARGE"), std::string::npos) << "names the cause\n" << err;
  EXPECT_NE(err.find("max.message.bytes"), std::string::npos) << "says what to raise\n" << err;
  EXPECT_EQ(err.find("Kafka transaction failed"), std::string::npos) << err;
  EXPECT_EQ(err.find("restart it to resume"), std::string::npos) << "a restart makes the same output\n" << err;
}

// The output topic deleted and made again between two runs (a bug bash).
// The restart, its checkpoint saying rows were written, went on writing
// only what came next into the empty topic, without a word: refused now,
// saying how to write them again. --reset-state then writes every row
// again; under exactly_once its re-read of what the transactions had
// committed suppressed them (the topic that held them gone), and the
// topic stayed empty: those rows are written again too, and a kill in the
// middle of that loses none of them.
TEST_P(TopicFaultsTest, AnOutputTopicMadeAgainIsRefusedThenResetStateWritesEveryRowAgain) {
  ScratchDir dir("output-recreated-" + GetParam());
  SpecOptions o;
  ASSERT_NO_FATAL_FAILURE(o = MakeInput(dir, "remade", 6000));
  const std::string spec = WriteSpec(dir, "spec.yaml", o);
  const std::string out_topic = o.sink + ".v1";
  const std::vector<std::string> run = {"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
  std::string out, err;
  ASSERT_EQ(RunKappa(run, &out, &err, "output-recreated-first-" + GetParam()), 0) << err;
  const TopicContents first = ReadOutputs(Config(), out_topic);
  ASSERT_GT(first.rows.size(), 100u);

  Status remade = RecreateTopicAdmin(Config(), out_topic, 2);
  ASSERT_TRUE(remade.ok()) << remade.ToString();
  EXPECT_EQ(RunKappa(run, &out, &err, "output-recreated-restart-" + GetParam()), 1) << out << err;
  EXPECT_NE(err.find(out_topic + " holds no record, but the checkpoint"), std::string::npos) << err;
  EXPECT_NE(err.find("--reset-state"), std::string::npos) << "says how to write them again\n" << err;

  std::vector<std::string> reset = run;
  reset.push_back("--reset-state");
  if (GetParam() == "exactly_once") {
    // Killed inside that re-read, after its second transaction's commit
    // (before its checkpoint): its transactions had committed the gap's
    // end as their offset, so the restart suppressed the rest of the gap
    // into the topic that now held rows, and lost them. They commit what
    // was re-read instead.
    KAPPA_REQUIRE_TEST_HOOKS();
    reset.insert(reset.end(), {"--max-rate", "1500"});
    setenv("KAPPA_TEST_KILL_AT", "after-commit:2", 1);
    ChildProcess killed(reset, "output-recreated-reset-killed");
    const int rc = killed.WaitFor(60000);
    unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << killed.Stderr();
    EXPECT_NE(killed.Stderr().find("writes those outputs again"), std::string::npos) << killed.Stderr();
    ASSERT_EQ(RunKappa(run, &out, &err, "output-recreated-resumed"), 0) << err;
  } else {
    ASSERT_EQ(RunKappa(reset, &out, &err, "output-recreated-reset-" + GetParam()), 0) << err;
  }
  const TopicContents again = ReadOutputs(Config(), out_topic);
  EXPECT_EQ(again.total, first.total) << "every row once\n" << err;
  ASSERT_EQ(again.rows.size(), first.rows.size());
  for (const auto& [key, row] : first.rows) {
    auto it = again.rows.find(key);
    ASSERT_NE(it, again.rows.end()) << key;
    EXPECT_EQ(it->second.value, row.value) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(Delivery, TopicFaultsTest, ::testing::Values("at_least_once", "exactly_once"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "exactly_once" ? std::string("ExactlyOnce")
                                                               : std::string("AtLeastOnce");
                         });

// An output topic whose name differs from an existing one only in '.'
// against '_': Kafka refuses to create it, and the job said the broker
// creates no topics (auto.create.topics.enable=false), which was false (a
// bug bash). It names the collision.
TEST_P(TopicFaultsTest, AnOutputCollidingWithAnExistingTopicIsNamed) {
  ScratchDir dir("output-collides-" + GetParam());
  SpecOptions o;
  ASSERT_NO_FATAL_FAILURE(o = MakeInput(dir, "clash", 500));
  o.sink = "clash_out_" + Unique("x");
  std::string existing = o.sink + ".v1";
  std::replace(existing.begin(), existing.end(), '_', '.');
  Status created = CreateTopicAdmin(Config(), existing, 1, 1);
  ASSERT_TRUE(created.ok()) << created.ToString();
  const std::string spec = WriteSpec(dir, "spec.yaml", o);
  std::string out, err;
  const int rc = RunKappa({"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"}, &out, &err,
                          "output-collides-" + GetParam());
  EXPECT_EQ(rc, 1) << err;
  EXPECT_NE(err.find("topic " + o.sink + ".v1 cannot be created: it collides with the existing topic " + existing),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("auto.create.topics.enable"), std::string::npos) << err;
}

// A broker that does not create topics (auto.create.topics.enable=false)
// and a job whose output, DLQ and late topics do not exist: it stops at
// start naming them and what to do, not after reading its whole input and
// the message timeout with "restart it to resume", which met the same
// again. On a cluster of its own: the setting is read at the broker's start.
// The table behind `kappa get` of an output topic deleted and not made
// again: it waited 10 s and answered from its rows as if caught up, exit 0
// (a bug bash). A table that has read from the topic refuses, naming it;
// one that never did has no output yet.
class TableOfADeletedTopicTest : public SharedRealKafkaTest<> {};

TEST_F(TableOfADeletedTopicTest, IsNotAnsweredFrom) {
  const std::string topic = Unique("gone-out");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ProduceRaw(Config(), topic, {{"k1", "55"}});
  ScratchDir dir("table-gone");
  auto table = MaterializedTable::Open(dir / "table", topic);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_TRUE((*table)->CatchUp(Config()).ok());
  ASSERT_EQ((*table)->Get("k1")->value_or(""), "55");
  ASSERT_TRUE(DeleteTopicAdmin(Config(), topic).ok());
  Result<int64_t> applied = int64_t{0};
  for (int i = 0; i < 60 && applied.ok(); ++i) {  // the controller deletes it in the background
    applied = (*table)->CatchUp(Config());
    if (applied.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_FALSE(applied.ok()) << "answered from a table whose topic is gone";
  EXPECT_EQ(applied.status().code(), Status::Code::kFailedPrecondition) << applied.status().ToString();
  EXPECT_NE(applied.status().message().find("the output topic " + topic + " is not there (deleted?)"),
            std::string::npos)
      << applied.status().ToString();
  auto fresh = MaterializedTable::Open(dir / "fresh", topic);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  auto none = (*fresh)->CatchUp(Config());
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(*none, 0) << "no output yet";
}

TEST(MissingOutputTopicTest, AJobWhoseTopicsTheBrokerWillNotCreateStopsAtStartNamingThem) {
  ScratchDir dir("missing-output");
  auto started = RealKafka::Start(dir / "kafka", 1);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  RealKafka& kafka = **started;
  ASSERT_TRUE(kafka.StopNode(1).ok());
  const std::string properties = dir / "kafka/node1/server.properties";
  std::string text = ReadFile(properties);
  const std::string on = "auto.create.topics.enable=true";
  ASSERT_NE(text.find(on), std::string::npos) << text;
  text.replace(text.find(on), on.size(), "auto.create.topics.enable=false");
  std::ofstream(properties) << text;
  ASSERT_TRUE(kafka.StartNode(1).ok());
  KafkaConfig config;
  config.brokers = kafka.bootstrap();
  Status created = CreateTopicAdmin(config, "transactions", 2, 1);
  ASSERT_TRUE(created.ok()) << created.ToString();
  GeneratorOptions gen = SmallWorkload(57, 2000, 100);
  gen.start_time_ms = WallClockMs() - 8LL * 3600 * 1000;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(config, "transactions", gen));

  for (const std::string delivery : {"at_least_once", "exactly_once"}) {
    SpecOptions o;  // source transactions, sink user-spend-hourly, DLQ user-spend.dlq, late user-spend.late
    o.state_dir = dir / ("state-" + delivery);
    o.delivery = delivery;
    const std::string spec = WriteSpec(dir, delivery + ".yaml", o);
    std::string out, err;
    const auto began = std::chrono::steady_clock::now();
    const int rc = RunKappa({"run", spec, "-b", kafka.bootstrap(), "--stop-at-end", "--final-watermark",
                             "--status-interval-ms", "0"},
                            &out, &err, "missing-output-" + delivery);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    EXPECT_EQ(rc, 1) << delivery << "\n" << err;
    EXPECT_NE(err.find("topics user-spend-hourly.v1, user-spend.dlq and user-spend.late do not exist and the broker "
                       "does not create topics"),
              std::string::npos)
        << delivery << "\n" << err;
    EXPECT_NE(err.find("--create"), std::string::npos) << "says how to create them\n" << err;
    EXPECT_EQ(err.find("restart it to resume"), std::string::npos) << "a restart meets the same\n" << err;
    EXPECT_LT(seconds, 20) << delivery << ": not at start\n" << err;
  }

  // Created as advised, the job runs.
  for (const std::string topic : {"user-spend-hourly.v1", "user-spend.dlq", "user-spend.late"}) {
    Status made = CreateTopicAdmin(config, topic, 1, 1);
    ASSERT_TRUE(made.ok()) << made.ToString();
  }
  SpecOptions o;
  o.state_dir = dir / "state-created";
  std::string err;
  EXPECT_EQ(RunKappa({"run", WriteSpec(dir, "created.yaml", o), "-b", kafka.bootstrap(), "--stop-at-end",
                      "--final-watermark", "--status-interval-ms", "0"},
                     nullptr, &err, "missing-output-created"),
            0)
      << err;
}

}  // namespace
}  // namespace kappa::testing
