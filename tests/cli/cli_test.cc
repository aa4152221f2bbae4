// The command line as a user meets it: --help everywhere, naming the options;
// bad usage is one line on stderr and exit 2; an unreachable or silent broker
// and a missing topic are one line and a non-zero exit within bounded time;
// -X passes librdkafka properties through; `kappa broker` serves on its port
// until SIGINT.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

using Clock = std::chrono::steady_clock;

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A loopback socket bound to a free port, held for the test's lifetime so no
// one else takes the port. Not listening: connections are refused. Listening:
// connections are accepted by the kernel but never answered.
class LoopbackPort {
 public:
  explicit LoopbackPort(bool listen) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && (!listen || ::listen(fd_, 64) == 0)) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~LoopbackPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Gives the port up (for a process that wants to bind it).
  void Release() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  int port_ = -1;
};

TEST(CliTest, EveryCommandHasHelpNamingItsOptions) {
  std::string out;
  ASSERT_EQ(RunKappa({"--help"}, &out), 0);
  for (const char* cmd : {"broker", "gen", "consume", "run"}) EXPECT_TRUE(Contains(out, cmd)) << cmd;
  const std::map<std::string, std::vector<std::string>> options = {
      // The broker says plainly what it is and is not.
      {"broker", {"--port", "--topic", "--broker-count", "--address-file", "5 MiB", "100,000 batches", "in memory",
                  "read_committed", "fence", "--brokers"}},
      {"gen", {"--topic", "--count", "--users", "--zipf", "--seed", "--rate", "--late-fraction", "--max-delay-ms",
               "--duplicate-fraction", "--malformed-fraction", "--brokers", "--property"}},
      {"consume", {"--topic", "--print", "--idle-timeout-ms", "--brokers", "--property"}},
      {"run", {"--stop-at-end", "--max-rate", "--brokers", "--property"}}};
  for (const auto& [cmd, opts] : options) {
    std::string err;
    ASSERT_EQ(RunKappa({cmd, "--help"}, &out, &err), 0) << cmd << ": " << err;
    EXPECT_TRUE(Contains(out, "usage: kappa " + cmd)) << out;
    for (const auto& o : opts) EXPECT_TRUE(Contains(out, o)) << cmd << " --help lacks " << o << "\n" << out;
  }
}

// Exit 2 with exactly one line on stderr that contains every one of `words`.
void ExpectUsageError(const std::vector<std::string>& args, const std::vector<std::string>& words) {
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  std::string err;
  EXPECT_EQ(RunKappa(args, nullptr, &err), 2) << "kappa " << joined << "\n" << err;
  EXPECT_EQ(Lines(err), 1) << "kappa " << joined << "\n" << err;
  for (const auto& w : words) EXPECT_TRUE(Contains(err, w)) << "kappa " << joined << ": no '" << w << "' in " << err;
}

TEST(CliTest, BadUsageIsOneLineNamingTheProblemAndExitTwo) {
  // An address nothing listens on: none of these may get as far as connecting.
  LoopbackPort closed(/*listen=*/false);
  const std::string b = closed.address();
  std::string out;
  EXPECT_EQ(RunKappa({}, &out), 2) << "no command is a usage error";
  EXPECT_TRUE(Contains(out, "usage: kappa COMMAND"));
  ExpectUsageError({"frobnicate"}, {"unknown command", "frobnicate"});
  for (const char* cmd : {"broker", "gen", "consume", "run"}) ExpectUsageError({cmd, "--nonsense"}, {"nonsense", "--help"});
  ExpectUsageError({"gen", "-b", b}, {"--topic"});
  ExpectUsageError({"consume", "-b", b}, {"--topic"});
  ExpectUsageError({"gen", "-t", "x"}, {"--brokers"});
  ExpectUsageError({"consume", "-t", "x"}, {"--brokers"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--count", "5x"}, {"--count", "5x"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--malformed-fraction", "1.5"}, {"--malformed-fraction"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--late-fraction", "-0.1"}, {"--late-fraction"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--late-fraction", "nan"}, {"--late-fraction"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--duplicate-fraction", "0.6", "--malformed-fraction", "0.6"},
                   {"--duplicate-fraction", "--malformed-fraction"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--users", "0"}, {"--users"});
  // Negative numbers must not wrap around to huge unsigned values.
  ExpectUsageError({"gen", "-b", b, "-t", "x", "-n", "-5"}, {"--count"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--users", "-1"}, {"--users"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--seed", "-1"}, {"--seed"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--zipf", "-1"}, {"--zipf"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--late-fraction", "0.1", "--max-delay-ms", "0"}, {"--max-delay-ms"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "--rate", "0"}, {"--rate"});
  ExpectUsageError({"gen", "-b", b, "-t", "x", "-X", "noequals"}, {"key=value", "noequals"});
  ExpectUsageError({"broker", "--topic", "t:0"}, {"t:0"});
  ExpectUsageError({"broker", "--topic", ":3"}, {":3"});
  ExpectUsageError({"broker", "--port", "70000"}, {"--port"});
  ExpectUsageError({"broker", "--broker-count", "0"}, {"--broker-count"});
  std::string err;
  EXPECT_EQ(RunKappa({"run", "/nonexistent/spec.yaml", "-b", b}, nullptr, &err), 1);
  EXPECT_TRUE(Contains(err, "/nonexistent/spec.yaml")) << err;
}

// run, deploy and replay share their job options and their checks: an
// out-of-range --parallelism (0 included: it is not "the spec's") or a
// negative --max-rate is refused before the spec is read or a broker asked.
TEST(CliTest, JobCommandsRejectOutOfRangeParallelismAndRate) {
  LoopbackPort closed(/*listen=*/false);
  const std::string b = closed.address();
  for (const char* cmd : {"run", "deploy", "replay"}) {
    for (const char* n : {"0", "257", "100000"}) {
      ExpectUsageError({cmd, "/nonexistent/spec.yaml", "-b", b, "--parallelism", n},
                       {"--parallelism", "between 1 and 256", n});
    }
    ExpectUsageError({cmd, "/nonexistent/spec.yaml", "-b", b, "--max-rate=-5"}, {"--max-rate"});
    ExpectUsageError({cmd, "-b", b}, {"spec"});
    ExpectUsageError({cmd, "--nonsense"}, {"nonsense", "--help"});
    std::string out, err;
    ASSERT_EQ(RunKappa({cmd, "--help"}, &out, &err), 0) << cmd << ": " << err;
    for (const char* o : {"--state-dir", "--archive", "--parallelism", "--max-rate", "--stop-at-end",
                          "--status-interval-ms", "--brokers", "--property"}) {
      EXPECT_TRUE(Contains(out, o)) << cmd << " --help lacks " << o << "\n" << out;
    }
    // In range, the spec is read next: a missing spec is named, exit 1.
    EXPECT_EQ(RunKappa({cmd, "/nonexistent/spec.yaml", "-b", b, "--parallelism", "256"}, nullptr, &err), 1) << err;
    EXPECT_TRUE(Contains(err, "/nonexistent/spec.yaml")) << err;
  }
}

TEST(CliTest, UnreachableOrSilentBrokerIsOneLineWithinThirtySeconds) {
  LoopbackPort refusing(/*listen=*/false);  // connection refused
  LoopbackPort silent(/*listen=*/true);     // accepted, never answered
  ASSERT_GT(refusing.port(), 0);
  ASSERT_GT(silent.port(), 0);
  const auto start = Clock::now();
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (const LoopbackPort* port : {&refusing, &silent}) {
    children.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{"gen", "-b", port->address(), "-t", "x", "-n", "10"}, "gen"));
    children.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{"consume", "-b", port->address(), "-t", "x"}, "consume"));
  }
  for (auto& child : children) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(start + std::chrono::seconds(30) -
                                                                            Clock::now());
    const int rc = child->WaitFor(std::max<int>(0, left.count()));
    ASSERT_NE(rc, -1) << "still running after 30 s; stderr so far: " << child->Stderr();
    const std::string err = child->Stderr();
    EXPECT_EQ(rc, 1) << err;
    EXPECT_TRUE(Contains(err, "cannot reach Kafka")) << err;
    EXPECT_TRUE(Contains(err, "127.0.0.1:")) << "the message names the address the user gave: " << err;
    EXPECT_EQ(Lines(err), 1) << err;
  }
}

class CliBrokerTest : public BrokerTest {};

TEST_F(CliBrokerTest, MissingTopicIsNamedAndNotCreated) {
  std::string err;
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "no-such-topic", "-n", "10"}, nullptr, &err), 1);
  EXPECT_TRUE(Contains(err, "'no-such-topic' does not exist")) << err;
  EXPECT_EQ(Lines(err), 1) << err;
  // Had gen auto-created it, consume would now read an empty topic.
  EXPECT_EQ(RunKappa({"consume", "-b", bootstrap(), "-t", "no-such-topic"}, nullptr, &err), 1);
  EXPECT_TRUE(Contains(err, "'no-such-topic' does not exist")) << err;
  EXPECT_EQ(Lines(err), 1) << err;
}

TEST_F(CliBrokerTest, PropertiesPassThroughToLibrdkafka) {
  CreateTopic("t", 2);
  // TLS against the plaintext embedded broker cannot connect: proof that the
  // property reaches the client. It takes the 10 s metadata timeout, so it
  // runs alongside the rest.
  ChildProcess tls({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "security.protocol=ssl"}, "tls");

  std::string out, err;
  // librdkafka judges each property, and the message names it.
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "bogus.property=1"}, nullptr, &err), 2);
  EXPECT_TRUE(Contains(err, "bogus.property")) << err;
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_EQ(RunKappa({"consume", "-b", bootstrap(), "-t", "t", "-X", "bogus.property=1"}, nullptr, &err), 2);
  EXPECT_TRUE(Contains(err, "bogus.property")) << err;
  EXPECT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "compression.codec=nonsense"}, nullptr,
                     &err),
            2);
  EXPECT_TRUE(Contains(err, "compression.codec")) << err;

  ASSERT_EQ(RunKappa({"gen", "-b", bootstrap(), "-t", "t", "-n", "10", "-X", "client.id=x", "-X",
                      "compression.codec=lz4"},
                     &out, &err),
            0)
      << err;
  // -X wins over --brokers (kafka_config.h): a dead --brokers is overridden.
  LoopbackPort refusing(/*listen=*/false);
  ASSERT_EQ(RunKappa({"gen", "-b", refusing.address(), "-t", "t", "-n", "5", "-X", "bootstrap.servers=" + bootstrap()},
                     &out, &err),
            0)
      << err;
  ASSERT_EQ(RunKappa({"consume", "-b", refusing.address(), "-t", "t", "-X", "bootstrap.servers=" + bootstrap(), "-X",
                      "client.id=x"},
                     &out, &err),
            0)
      << err;
  EXPECT_TRUE(Contains(out, "t: 15 records")) << out;

  ASSERT_NE(tls.WaitFor(30000), -1) << "gen with TLS against a plaintext broker hangs";
  EXPECT_EQ(tls.Wait(), 1) << tls.Stderr();
  EXPECT_TRUE(Contains(tls.Stderr(), "cannot reach Kafka")) << tls.Stderr();
}

TEST(CliTest, BrokerServesOnItsFixedPortUntilInterrupted) {
  LoopbackPort free_port(/*listen=*/false);
  const int port = free_port.port();
  ASSERT_GT(port, 0);
  free_port.Release();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  ScratchDir dir("broker");
  const std::string address_file = dir / "address";
  ChildProcess broker({"broker", "--port", std::to_string(port), "--topic", "orders:3", "--address-file", address_file},
                      "broker");
  for (int i = 0; i < 200 && !std::filesystem::exists(address_file); ++i) {
    ASSERT_EQ(broker.WaitFor(50), -1) << "broker exited: " << broker.Stderr();
  }
  ASSERT_TRUE(std::filesystem::exists(address_file)) << broker.Stderr();
  EXPECT_EQ(ReadFile(address_file), address + "\n");
  EXPECT_EQ(broker.Stdout(), address + "\n") << "the bootstrap address is printed on stdout";
  const std::string banner = broker.Stderr();
  EXPECT_TRUE(Contains(banner, "5 MiB")) << banner;
  EXPECT_TRUE(Contains(banner, "topic orders with 3 partitions")) << banner;

  const std::string listing = RunShell("timeout 20 kcat -L -b " + address + " 2>&1");
  EXPECT_TRUE(Contains(listing, "topic \"orders\" with 3 partitions")) << listing;
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "-b", address, "-t", "orders", "-n", "100"}, &out, &err), 0) << err;
  ASSERT_EQ(RunKappa({"consume", "-b", address, "-t", "orders"}, &out, &err), 0) << err;
  EXPECT_TRUE(Contains(out, "orders: 100 records")) << out;

  // A second broker on the same port says why it cannot start.
  EXPECT_EQ(RunKappa({"broker", "--port", std::to_string(port)}, nullptr, &err), 1);
  EXPECT_TRUE(Contains(err, "cannot listen on " + address)) << err;
  EXPECT_EQ(Lines(err), 1) << err;

  broker.Kill(SIGINT);
  EXPECT_EQ(broker.WaitFor(10000), 0) << "Ctrl-C stops the broker cleanly: " << broker.Stderr();
  EXPECT_FALSE(CanConnect(port)) << "still listening on " << address << " after it stopped";
}

}  // namespace
}  // namespace kappa::testing
