// The embedded broker as other processes see it: it listens on free loopback
// ports and closes them when destroyed; with a fixed port, kcat (a client we
// did not write) finds it there and lists the topics with the asked partition
// counts; a second broker on a taken port fails with a message saying so.
#include "kafka/embedded_broker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "kafka/topic_reader.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using kappa::testing::CanConnect;
using kappa::testing::FreePort;
using kappa::testing::RunShell;

// "127.0.0.1:1234,127.0.0.1:1235" -> {1234, 1235}
std::vector<int> PortsOf(const std::string& bootstraps) {
  std::vector<int> ports;
  std::stringstream ss(bootstraps);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    EXPECT_EQ(entry.rfind("127.0.0.1:", 0), 0u) << "not on loopback: " << entry;
    ports.push_back(std::stoi(entry.substr(entry.rfind(':') + 1)));
  }
  return ports;
}

TEST(EmbeddedBrokerTest, ListensOnFreeLoopbackPortsAndClosesThemWhenDestroyed) {
  EmbeddedBroker::Options options;
  options.brokers = 3;
  auto a = EmbeddedBroker::Start(options);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = EmbeddedBroker::Start(options);  // two at once: no fixed ports involved
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*a)->bootstrap(), (*a)->mock_bootstraps()) << "no fixed port asked, the mock's own list";
  const std::vector<int> ports = PortsOf((*a)->bootstrap());
  ASSERT_EQ(ports.size(), 3u) << (*a)->bootstrap();
  for (int port : PortsOf((*b)->bootstrap())) {
    EXPECT_EQ(std::count(ports.begin(), ports.end(), port), 0) << "two brokers share port " << port;
  }
  for (int port : ports) EXPECT_TRUE(CanConnect(port)) << port;
  a->reset();
  for (int port : ports) EXPECT_FALSE(CanConnect(port)) << "port " << port << " still open after the broker stopped";
}

// The local port of a connected socket, or its peer's.
int PortOf(int fd, bool peer) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return rc == 0 && addr.sin_family == AF_INET ? ntohs(addr.sin_port) : -1;
}

// The socket of this process that the broker accepted for a client whose
// local port is client_port (-1 until the broker's thread has accepted it).
int AcceptedFor(int client_port) {
  int found = -1;
  DIR* dir = ::opendir("/proc/self/fd");
  while (const dirent* e = dir ? ::readdir(dir) : nullptr) {
    const int fd = std::atoi(e->d_name);
    if (fd > 2 && fd != ::dirfd(dir) && PortOf(fd, /*peer=*/true) == client_port) found = fd;
  }
  if (dir) ::closedir(dir);
  return found;
}

// Each flush of a producer (every checkpoint of a job) waited ~43 ms on the
// embedded broker whatever it had to send: the mock answered with Nagle's
// algorithm on, so a response written while the previous one was unacked
// waited for the client's delayed ACK. The connections it accepts must have
// TCP_NODELAY.
TEST(EmbeddedBrokerTest, AcceptedConnectionsSendWithoutNagleDelay) {
  EmbeddedBroker::Options options;
  options.brokers = 2;
  auto broker = EmbeddedBroker::Start(options);
  ASSERT_TRUE(broker.ok()) << broker.status().ToString();
  for (int port : PortsOf((*broker)->mock_bootstraps())) {
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << port;
    int accepted = -1;
    for (int i = 0; i < 200 && accepted < 0; ++i) {
      accepted = AcceptedFor(PortOf(client, /*peer=*/false));
      if (accepted < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_GE(accepted, 0) << "the broker on port " << port << " did not accept within 2 s";
    EXPECT_EQ(PortOf(accepted, /*peer=*/false), port);
    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    ASSERT_EQ(::getsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_NE(nodelay, 0) << "the broker on port " << port << " answers with Nagle's algorithm on";
    ::close(client);
  }
}

TEST(EmbeddedBrokerTest, TopicSpecsAreNameColonPartitions) {
  auto eight = ParseTopicSpec("t:8");
  ASSERT_TRUE(eight.ok()) << eight.status().ToString();
  EXPECT_EQ(eight->name, "t");
  EXPECT_EQ(eight->partitions, 8);
  auto bare = ParseTopicSpec("orders");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->name, "orders");
  EXPECT_EQ(bare->partitions, 1);
  for (const char* bad : {"t:0", "t:x", ":3", "t:", "t:-1", "t:3x", ""}) {
    auto spec = ParseTopicSpec(bad);
    ASSERT_FALSE(spec.ok()) << "'" << bad << "' accepted";
    EXPECT_EQ(spec.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(spec.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << "the message quotes the spec: " << spec.status().ToString();
  }
}

TEST(EmbeddedBrokerTest, FixedPortIsFoundByKcatAndATakenPortIsRefused) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  EmbeddedBroker::Options options;
  options.brokers = 3;
  options.port = port;
  options.topics = {{"orders", 6}, {"payments", 2}};
  auto broker = EmbeddedBroker::Start(options);
  ASSERT_TRUE(broker.ok()) << broker.status().ToString();
  EXPECT_EQ((*broker)->bootstrap(), address);

  const std::string listing = RunShell("timeout 20 kcat -L -b " + address + " 2>&1");
  EXPECT_NE(listing.find("3 brokers"), std::string::npos) << listing;
  EXPECT_NE(listing.find("topic \"orders\" with 6 partitions"), std::string::npos) << listing;
  EXPECT_NE(listing.find("topic \"payments\" with 2 partitions"), std::string::npos) << listing;

  // Records written by kcat through the fixed address are read by our consumer.
  ASSERT_EQ(std::system(("printf 'k1:a\\nk2:b\\nk3:c\\n' | timeout 20 kcat -P -q -b " + address +
                         " -t payments -K: 2>&1").c_str()),
            0);
  KafkaConfig config;
  config.brokers = address;
  std::vector<std::string> keys;
  auto read = ReadTopic(config, "payments", [&](const ConsumedRecord& r) { keys.emplace_back(r.key); });
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->total, 3);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"k1", "k2", "k3"}));

  EmbeddedBroker::Options same_port;
  same_port.port = port;
  auto second = EmbeddedBroker::Start(same_port);
  ASSERT_FALSE(second.ok()) << "two brokers on port " << port;
  EXPECT_NE(second.status().message().find("cannot listen on " + address), std::string::npos)
      << second.status().ToString();
  EXPECT_NE(second.status().message().find("another broker"), std::string::npos) << second.status().ToString();
  EXPECT_TRUE(CanConnect(port)) << "the failed start must not disturb the running broker";

  broker->reset();
  EXPECT_FALSE(CanConnect(port)) << "fixed port still open after the broker stopped";
}

}  // namespace
}  // namespace kappa
