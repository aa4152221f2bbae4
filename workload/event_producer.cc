#include "workload/event_producer.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/hash.h"
#include "kafka/kafka_client.h"

namespace kappa {
namespace {

struct DeliveryState {
  std::atomic<uint64_t> failed{0};
  std::string first_error;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  if (msg->err) {
    auto* state = static_cast<DeliveryState*>(opaque);
    if (state->failed++ == 0) state->first_error = rd_kafka_err2str(msg->err);
  }
}

// What the produce loop needs of one generated record.
struct OutRecord {
  const std::string* key = nullptr;
  const std::string* value = nullptr;
  int64_t timestamp_ms = 0;  // 0: the producer stamps the current time
};

// The idempotent producer, the produce loop with back-pressure and progress,
// and the wait for every acknowledgement, for any generator: next(&out)
// fills the next record and returns false after the last.
template <typename Next>
Result<ProduceSummary> ProduceAll(const KafkaConfig& config, const std::string& topic, uint64_t total,
                                  Next&& next, const ProgressFn& progress) {
  DeliveryState delivery;
  auto conf = config.Build({{"enable.idempotence", "true"},
                            {"acks", "all"},
                            {"linger.ms", "20"},
                            {"batch.num.messages", "10000"},
                            {"queue.buffering.max.messages", "1000000"},
                            {"message.timeout.ms", "60000"}});
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_dr_msg_cb(*conf, OnDelivery);
  rd_kafka_conf_set_opaque(*conf, &delivery);
  if (Status st = RequireBootstrap(config); !st.ok()) {
    rd_kafka_conf_destroy(*conf);
    return st;
  }
  char errstr[512];
  KafkaHandle producer(rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr)));
  if (!producer) {
    rd_kafka_conf_destroy(*conf);
    return Status::InvalidArgument(std::string("cannot create Kafka producer: ") + errstr);
  }
  auto partitions = TopicPartitionCount(producer.get(), topic, 10000);
  if (!partitions.ok()) return partitions.status();

  ProduceSummary summary;
  summary.partitions = *partitions;
  OutRecord record;
  const auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  uint64_t sent = 0;
  while (next(&record)) {
    const std::string& key = *record.key;
    const std::string& value = *record.value;
    const int32_t partition = PartitionForKey(key, *partitions);
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_TIMESTAMP(record.timestamp_ms), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer.get(), 50);  // back-pressure: wait for deliveries
        continue;
      }
      if (err) return Status::Unavailable("produce to " + topic + " failed: " + rd_kafka_err2str(err));
      break;
    }
    ++sent;
    summary.bytes += value.size() + key.size();
    if ((sent & 1023) == 0) {
      rd_kafka_poll(producer.get(), 0);
      if (delivery.failed > 0) break;
      if (progress && std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(250)) {
        last_progress = std::chrono::steady_clock::now();
        progress(sent, total, elapsed());
      }
    }
  }
  // Wait for every acknowledgement; give up only after message.timeout.ms.
  while (rd_kafka_outq_len(producer.get()) > 0 && delivery.failed == 0) {
    rd_kafka_flush(producer.get(), 500);
    if (progress) progress(sent, total, elapsed());
  }
  if (delivery.failed > 0) {
    return Status::Unavailable(std::to_string(delivery.failed.load()) + " records to " + topic +
                               " were not acknowledged: " + delivery.first_error);
  }
  summary.seconds = elapsed();
  if (progress) progress(sent, total, summary.seconds);
  return summary;
}

}  // namespace

Result<ProduceSummary> ProduceEvents(const KafkaConfig& config, const std::string& topic,
                                     const GeneratorOptions& options, const ProgressFn& progress) {
  TransactionGenerator generator(options);
  GeneratedRecord record;
  auto summary = ProduceAll(config, topic, options.count, [&](OutRecord* out) {
    if (!generator.Next(&record)) return false;
    out->key = &record.key;
    out->value = &record.value;
    // Valid records carry their event time as the Kafka timestamp; 0 lets
    // the producer stamp malformed ones with the current time.
    out->timestamp_ms =
        record.kind == RecordKind::kValid || record.kind == RecordKind::kDuplicate ? record.event_time_ms : 0;
    return true;
  }, progress);
  if (summary.ok()) summary->stats = generator.stats();
  return summary;
}

Result<ProduceSummary> ProduceNexmark(const KafkaConfig& config, const std::string& topic,
                                      const NexmarkOptions& options, const ProgressFn& progress) {
  NexmarkGenerator generator(options);
  NexmarkRecord record;
  auto summary = ProduceAll(config, topic, options.count, [&](OutRecord* out) {
    if (!generator.Next(&record)) return false;
    out->key = &record.key;
    out->value = &record.value;
    out->timestamp_ms = record.event_time_ms;
    return true;
  }, progress);
  if (summary.ok()) {
    summary->nexmark = generator.stats();
    summary->stats.total = summary->stats.valid = generator.stats().total;
  }
  return summary;
}

}  // namespace kappa
