#include "kafka/embedded_broker.h"
#include "kafka/kafka_config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "kafka/kafka_status.h"

namespace kappa {
namespace {

// The mock cluster answers on sockets with Nagle's algorithm on: a response
// written while the previous one is still unacknowledged waits for the
// client's delayed ACK, up to 40 ms on Linux. Every flush of a producer
// (each checkpoint of a job) then took ~43 ms whatever it had to send.
// librdkafka offers no setting for its mock's sockets, so TCP_NODELAY is set
// on its listening sockets, which the connections it accepts inherit on Linux.
// The ports of a mock cluster's "host:port,host:port" bootstrap list, in order.
std::vector<int> PortsOf(const std::string& bootstraps) {
  std::vector<int> ports;
  for (size_t at = 0; at < bootstraps.size();) {
    const size_t comma = std::min(bootstraps.find(',', at), bootstraps.size());
    const size_t colon = bootstraps.rfind(':', comma - 1);
    if (colon != std::string::npos && colon >= at) ports.push_back(std::atoi(bootstraps.c_str() + colon + 1));
    at = comma + 1;
  }
  return ports;
}

void DisableNagleOnListeners(const std::vector<int>& ports) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (const dirent* e = ::readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == ::dirfd(dir)) continue;
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_in addr{};
    len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sin_family != AF_INET) continue;
    if (std::find(ports.begin(), ports.end(), ntohs(addr.sin_port)) == ports.end()) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ::closedir(dir);
}

}  // namespace

Result<TopicSpec> ParseTopicSpec(const std::string& text) {
  TopicSpec spec;
  auto colon = text.rfind(':');
  spec.name = text.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string count = text.substr(colon + 1);
    char* end = nullptr;
    long n = std::strtol(count.c_str(), &end, 10);
    if (count.empty() || *end != '\0' || n < 1 || n > 10000) {
      return Status::InvalidArgument("topic '" + text +
                                     "': expected NAME:PARTITIONS with 1..10000 partitions");
    }
    spec.partitions = static_cast<int32_t>(n);
  }
  if (spec.name.empty()) return Status::InvalidArgument("topic '" + text + "': empty name");
  // The mock cluster takes any name; a real broker, and `kappa run`, would not.
  if (Status st = CheckTopicName(spec.name); !st.ok()) return Status::InvalidArgument("topic '" + text + "': " + st.message());
  return spec;
}

const char* EmbeddedBroker::Description() {
  return "embedded Kafka-protocol broker (librdkafka mock cluster) on 127.0.0.1: in memory, "
         "for development and tests only. Keeps at most 5 MiB and 100,000 batches per "
         "partition (older records are dropped silently: give topics enough partitions), "
         "does not filter aborted records for read_committed consumers and does not fence "
         "transactional producers. Use --brokers to reach a real Kafka cluster.";
}

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(const Options& options) {
  if (options.brokers < 1 || options.brokers > 16) {
    return Status::InvalidArgument("--broker-count must be between 1 and 16");
  }
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("--port must be between 0 and 65535");
  }
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  broker->brokers_ = options.brokers;

  // A fixed port is bound first, so that "port in use" fails before anything starts.
  if (options.port != 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      return Status::Unavailable("cannot listen on 127.0.0.1:" + std::to_string(options.port) +
                                 ": " + err + " (is another broker running? pick another --port)");
    }
    broker->listen_fd_ = fd;
  }

  // Not a producer that produces: librdkafka hosts a mock cluster on a
  // client handle of either kind, and nothing is ever sent through this one
  // (so it does not go through CreateProducer, which needs a bootstrap).
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
  broker->handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!broker->handle_) {
    return Status::Unavailable(std::string("cannot create the mock cluster's client handle: ") + errstr);
  }
  broker->cluster_ = rd_kafka_mock_cluster_new(broker->handle_, options.brokers);
  if (!broker->cluster_) return Status::Unavailable("librdkafka could not start its mock cluster");
  broker->mock_bootstraps_ = rd_kafka_mock_cluster_bootstraps(broker->cluster_);
  broker->bootstrap_ = broker->mock_bootstraps_;
  const std::vector<int> mock_ports = PortsOf(broker->mock_bootstraps_);
  DisableNagleOnListeners(mock_ports);

  for (const auto& topic : options.topics) {
    KAPPA_RETURN_IF_ERROR(broker->CreateTopic(topic));
  }

  if (broker->listen_fd_ >= 0) {
    // Forward to the first mock listener.
    if (mock_ports.empty()) return Status::Unavailable("the mock cluster listed no address: " + broker->mock_bootstraps_);
    broker->target_port_ = mock_ports.front();
    if (::pipe2(broker->wake_pipe_, O_CLOEXEC) != 0) return Status::IOError("pipe: " + std::string(std::strerror(errno)));
    broker->bootstrap_ = "127.0.0.1:" + std::to_string(options.port);
    broker->forwarder_ = std::thread([b = broker.get()] { b->ForwardLoop(); });
  }
  return broker;
}

Status EmbeddedBroker::CreateTopic(const TopicSpec& topic) {
  int replication = brokers_ < 3 ? brokers_ : 3;
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(cluster_, topic.name.c_str(), topic.partitions, replication);
  if (err) {
    return StatusFromKafka(err, "cannot create topic " + topic.name);
  }
  return Status::OK();
}

EmbeddedBroker::~EmbeddedBroker() {
  stop_ = true;
  if (wake_pipe_[1] >= 0) {
    char c = 0;
    [[maybe_unused]] auto n = ::write(wake_pipe_[1], &c, 1);
  }
  if (forwarder_.joinable()) forwarder_.join();
  for (int fd : {listen_fd_, wake_pipe_[0], wake_pipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
  if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_) rd_kafka_destroy(handle_);
}

// A plain poll() loop that splices bytes between each accepted bootstrap
// connection and a new connection to the first mock broker. Bootstrap traffic
// is small (metadata), so simplicity beats speed here.
void EmbeddedBroker::ForwardLoop() {
  std::map<int, int> peer;  // fd -> its partner
  auto close_pair = [&](int fd) {
    int other = peer[fd];
    peer.erase(fd);
    peer.erase(other);
    ::close(fd);
    ::close(other);
  };
  std::vector<pollfd> fds;
  char buf[65536];
  while (!stop_) {
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    for (const auto& [fd, other] : peer) fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 500) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(target_port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
          peer[client] = upstream;
          peer[upstream] = client;
        } else {
          ::close(upstream);
          ::close(client);
        }
      }
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int fd = fds[i].fd;
      if (!peer.count(fd)) continue;  // closed earlier in this round
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) {
        close_pair(fd);
        continue;
      }
      int other = peer[fd];
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = ::write(other, buf + off, n - off);
        if (w <= 0) break;
        off += w;
      }
      if (off < n) close_pair(fd);
    }
  }
  for (const auto& [fd, other] : peer) ::close(fd);
}

}  // namespace kappa
