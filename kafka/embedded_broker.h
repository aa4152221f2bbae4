// EmbeddedBroker: a Kafka-protocol broker for local work and tests, built on
// librdkafka's mock cluster. It listens on 127.0.0.1 only and keeps records
// in memory: at most 5 MiB and 100,000 batches per partition (older records
// are dropped silently), no read_committed filtering, no fencing of
// transactional producers. Never a production broker.
//
// The mock binds ephemeral ports; with a fixed `port` the broker also accepts
// bootstrap connections there and forwards them to the first mock broker
// (clients then follow the advertised addresses, all on loopback).
// Thread-safe: the mock runs on its own threads; this object only starts and
// stops it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace kappa {

struct TopicSpec {
  std::string name;
  int32_t partitions = 1;
};
// Parses "name:partitions" (or "name", one partition).
Result<TopicSpec> ParseTopicSpec(const std::string& text);

class EmbeddedBroker {
 public:
  struct Options {
    int brokers = 1;
    int port = 0;  // 0: only the mock's ephemeral ports
    std::vector<TopicSpec> topics;
  };

  static Result<std::unique_ptr<EmbeddedBroker>> Start(const Options& options);
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // The bootstrap address for clients: 127.0.0.1:<port> when a fixed port was
  // asked for, else the mock's own list.
  const std::string& bootstrap() const { return bootstrap_; }
  // The mock's own listener list (ephemeral ports).
  const std::string& mock_bootstraps() const { return mock_bootstraps_; }
  Status CreateTopic(const TopicSpec& topic);
  // The underlying mock cluster, for tests that inject broker errors
  // (rdkafka_mock.h: rd_kafka_mock_push_request_errors...).
  rd_kafka_mock_cluster_s* mock_cluster() const { return cluster_; }

  // What this broker is, for --help and start-up banners.
  static const char* Description();

 private:
  EmbeddedBroker() = default;
  void ForwardLoop();

  rd_kafka_s* handle_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  int brokers_ = 1;
  std::string bootstrap_;
  std::string mock_bootstraps_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int target_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread forwarder_;
};

}  // namespace kappa
