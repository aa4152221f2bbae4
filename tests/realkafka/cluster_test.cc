// The real-Kafka support itself: a cluster a test starts does not outlive
// the test, even when the test process dies without cleaning up (a crash,
// kill -9): scripts/kafka.sh --owner stops it once the owner is gone.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

TEST(RealKafkaClusterTest, ABrokerOutlivesNoTestThatDiesWithoutStoppingIt) {
  ScratchDir dir("orphan");
  const std::string pid_file = dir / "broker.pid";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto kafka = RealKafka::Start(dir / "kafka");
    if (!kafka.ok()) ::_exit(3);
    std::ofstream(pid_file) << (*kafka)->NodePid(1);
    // The process ends without running RealKafka's destructor, as a
    // crashed test would.
    (void)kafka->release();
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child could not start a broker";
  pid_t broker = -1;
  std::ifstream(pid_file) >> broker;
  ASSERT_GT(broker, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::kill(broker, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const bool alive = ::kill(broker, 0) == 0;
  if (alive) ::kill(broker, SIGKILL);
  EXPECT_FALSE(alive) << "the broker of a test that died was still running 60 s later";

  // `start` in a directory whose cluster has a node down starts an empty
  // one in its place: it did so without a word (a bug bash, which meant to
  // bring the node back and lost every topic).
  const std::string script = std::string(KAPPA_SOURCE_DIR) + "/scripts/kafka.sh";
  const std::string first = RunShell("timeout 120 " + script + " start --test --dir " + (dir / "kafka") + " 2>&1");
  ASSERT_NE(first.find("127.0.0.1:"), std::string::npos) << first;
  pid_t node = -1;
  std::ifstream(dir / "kafka/node1/pid") >> node;
  ASSERT_GT(node, 0);
  ::kill(node, SIGKILL);
  for (int i = 0; i < 100 && ::kill(node, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string said = RunShell("timeout 120 " + script + " start --test --dir " + (dir / "kafka") + " 2>&1");
  EXPECT_NE(said.find("held a cluster at 127.0.0.1:"), std::string::npos) << said;
  EXPECT_NE(said.find("with 0 of 1 nodes running: starting a new, empty cluster in its place (its data is wiped); "
                      "to bring a stopped node of a cluster back, use `kafka.sh start-node --node N --dir "),
            std::string::npos)
      << said;
  RunShell("timeout 60 " + script + " stop --signal KILL --dir " + (dir / "kafka"));
}

}  // namespace
}  // namespace kappa::testing
