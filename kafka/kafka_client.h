// Thin RAII and lookup helpers over librdkafka's C API, shared by the
// commands: create a producer/consumer from a KafkaConfig, read a topic's
// partition count and watermarks with a deadline, and turn every failure into
// one Status line that names the broker and the topic. Handles are
// thread-safe as librdkafka's are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "kafka/kafka_config.h"

struct rd_kafka_s;

namespace kappa {

struct KafkaHandleDeleter {
  void operator()(rd_kafka_s* rk) const;
};
using KafkaHandle = std::unique_ptr<rd_kafka_s, KafkaHandleDeleter>;

enum class ClientKind { kProducer, kConsumer };

// InvalidArgument unless --brokers or -X bootstrap.servers gives an address.
Status RequireBootstrap(const KafkaConfig& config);

// Creates a client. `defaults` are applied before the user's -X properties.
Result<KafkaHandle> CreateClient(ClientKind kind, const KafkaConfig& config,
                                 const std::vector<std::pair<std::string, std::string>>& defaults);

// Partition count of `topic`. NotFound if the topic does not exist (without
// creating it), Unavailable if no broker answers within timeout_ms.
Result<int32_t> TopicPartitionCount(rd_kafka_s* rk, const std::string& topic, int timeout_ms);

struct Watermarks {
  int64_t low = 0;   // log start offset
  int64_t high = 0;  // log end offset (next offset to be written)
};
Result<Watermarks> QueryWatermarks(rd_kafka_s* rk, const std::string& topic, int32_t partition,
                                   int timeout_ms);
Result<std::vector<Watermarks>> QueryAllWatermarks(rd_kafka_s* rk, const std::string& topic,
                                                   int32_t partitions, int timeout_ms);

std::string BrokersOf(const KafkaConfig& config);

// Closes a consumer, waiting at most timeout_ms for librdkafka's close (which
// can wait forever for a broker that is gone, e.g. for an in-flight offset
// commit); after that the handle is destroyed without a consumer close.
// Leaves `consumer` empty.
void CloseConsumer(KafkaHandle& consumer, int timeout_ms);

}  // namespace kappa
