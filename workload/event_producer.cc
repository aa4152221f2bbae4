#include "workload/event_producer.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "base/hash.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_producer.h"

namespace kappa {
namespace {

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
  ProducerOptions options = BulkProducerOptions();
  options.linger_ms = 20;
  options.message_timeout_ms = 60000;
  auto producer_or = KafkaProducer::Create(config, std::move(options));
  if (!producer_or.ok()) return producer_or.status();
  KafkaProducer& producer = **producer_or;
  auto partitions = TopicPartitionCount(producer.handle(), topic, 10000);
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
    if (Status st = producer.Produce(topic, partition, key, value, {}, record.timestamp_ms); !st.ok()) return st;
    ++sent;
    summary.bytes += value.size() + key.size();
    if ((sent & 1023) == 0) {
      producer.Poll(0);
      if (producer.failed()) break;
      if (progress && std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(250)) {
        last_progress = std::chrono::steady_clock::now();
        progress(sent, total, elapsed());
      }
    }
  }
  // Wait for every acknowledgement; give up only after message.timeout.ms
  // (librdkafka then fails the record, and Flush reports it).
  for (;;) {
    Status st = producer.Flush(500);
    if (st.ok()) break;
    if (producer.failed()) {
      return Status::Unavailable(std::to_string(producer.failed_count()) + " records to " + topic +
                                 " were not acknowledged: " + st.message());
    }
    if (progress) progress(sent, total, elapsed());
  }
  summary.seconds = elapsed();
  if (progress) progress(sent, total, summary.seconds);
  return summary;
}

}  // namespace

Result<ProduceSummary> ProduceEvents(const KafkaConfig& config, const std::string& topic,
                                     const GeneratorOptions& options, const ProgressFn& progress,
                                     const EncodingOptions& encoding) {
  TransactionGenerator generator(options);
  auto encoder = EventEncoder::Create(encoding, options);
  if (!encoder.ok()) return encoder.status();
  GeneratedRecord record;
  Status encode_status;
  auto summary = ProduceAll(config, topic, options.count, [&](OutRecord* out) {
    if (!generator.Next(&record)) return false;
    encode_status = (*encoder)->Encode(record, &out->value);
    if (!encode_status.ok()) return false;
    out->key = &record.key;
    out->timestamp_ms = GeneratedTimestampMs(record, options.start_time_ms);
    return true;
  }, progress);
  if (!encode_status.ok()) return encode_status;
  if (summary.ok()) {
    summary->stats = generator.stats();
    summary->encoding = (*encoder)->stats();
  }
  return summary;
}

Result<ProduceSummary> ProduceNexmark(const KafkaConfig& config, const std::string& topic,
                                      const NexmarkOptions& options, const ProgressFn& progress,
                                      EventFormat format) {
  if (format != EventFormat::kTransaction && format != EventFormat::kJson) {
    return Status::InvalidArgument(std::string("nexmark events are written as kappa's FlatBuffers or as json, not ") +
                                   EventFormatName(format));
  }
  NexmarkGenerator generator(options);
  NexmarkRecord record;
  std::string json;
  Status encode_status;
  auto summary = ProduceAll(config, topic, options.count, [&](OutRecord* out) {
    if (!generator.Next(&record)) return false;
    out->key = &record.key;
    out->value = &record.value;
    if (format == EventFormat::kJson) {
      encode_status = EncodeNexmarkJson(record.value, &json);
      if (!encode_status.ok()) return false;
      out->value = &json;
    }
    out->timestamp_ms = record.event_time_ms;
    return true;
  }, progress);
  if (!encode_status.ok()) return encode_status;
  if (summary.ok()) {
    summary->nexmark = generator.stats();
    summary->stats.total = summary->stats.valid = generator.stats().total;
  }
  return summary;
}

}  // namespace kappa
