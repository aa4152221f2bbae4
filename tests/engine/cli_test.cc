// The command line: --help everywhere, one clear line and a non-zero exit
// for bad flags, unreachable brokers and missing topics, and -X pass-through.
#include <gtest/gtest.h>

#include <chrono>

#include "engine/embedded_broker.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(CliTest, EveryCommandHasHelp) {
  std::string out;
  ASSERT_EQ(RunKappa({"--help"}, &out), 0);
  for (const char* cmd : {"broker", "gen", "consume", "run"}) EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
  const std::map<std::string, std::vector<std::string>> options = {
      {"broker", {"--port", "--topic", "5 MiB"}},
      {"gen", {"--count", "--seed", "--duplicate-fraction", "--malformed-fraction", "--brokers", "--property"}},
      {"consume", {"--topic", "--print", "--brokers"}},
      {"run", {"--stop-at-end", "--max-rate", "--brokers", "--property"}}};
  for (const auto& [cmd, opts] : options) {
    ASSERT_EQ(RunKappa({cmd, "--help"}, &out), 0) << cmd;
    for (const auto& o : opts) EXPECT_NE(out.find(o), std::string::npos) << cmd << " --help lacks " << o;
  }
}

TEST(CliTest, BadUsageIsOneLineAndExitTwo) {
  std::string err;
  EXPECT_EQ(RunKappa({"gen", "--nonsense"}, nullptr, &err), 2);
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("nonsense"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"frobnicate"}, nullptr, &err), 2);
  EXPECT_NE(err.find("unknown command"), std::string::npos);
  EXPECT_EQ(RunKappa({"gen", "-b", "127.0.0.1:1", "-t", "x", "--malformed-fraction", "1.5"}, nullptr, &err), 2);
  EXPECT_NE(err.find("--malformed-fraction"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"gen", "-t", "x"}, nullptr, &err), 2);
  EXPECT_NE(err.find("--brokers"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"run", "/nonexistent/spec.yaml", "-b", "127.0.0.1:1"}, nullptr, &err), 1);
  EXPECT_NE(err.find("/nonexistent/spec.yaml"), std::string::npos) << err;
}

TEST(CliTest, UnreachableBrokerFailsFastWithAClearMessage) {
  // A port nothing listens on: start a broker, note its port, stop it.
  std::string dead;
  {
    auto b = EmbeddedBroker::Start({});
    ASSERT_TRUE(b.ok());
    dead = (*b)->bootstrap();
  }
  std::string err;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RunKappa({"gen", "-b", dead, "-t", "x", "-n", "10"}, nullptr, &err), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_NE(err.find("cannot reach Kafka"), std::string::npos) << err;
  EXPECT_EQ(Lines(err), 1) << err;
}

class CliBrokerTest : public BrokerTest {};

TEST_F(CliBrokerTest, MissingTopicIsNamedAndPropertiesPassThrough) {
  std::string out, err;
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "no-such-topic", "-n", "10"}, nullptr, &err), 1);
  EXPECT_NE(err.find("no-such-topic"), std::string::npos) << err;
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"consume", "-b", bootstrap(), "-t", "no-such-topic"}, nullptr, &err), 1);
  EXPECT_NE(err.find("no-such-topic"), std::string::npos) << err;

  CreateTopic("t", 2);
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "bogus.property=1"}, nullptr, &err), 2);
  EXPECT_NE(err.find("bogus.property"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "noequals"}, nullptr, &err), 2);
  EXPECT_NE(err.find("key=value"), std::string::npos) << err;
  ASSERT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "client.id=from-test", "-X",
                      "compression.codec=lz4"},
                     &out, &err),
            0)
      << err;
  ASSERT_EQ(RunKappa({"consume", "-b", bootstrap(), "-t", "t"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("t: 10 records"), std::string::npos) << out;
}

}  // namespace
}  // namespace kappa::testing
