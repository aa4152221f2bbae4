// ProduceEvents: writes a TransactionGenerator's records to a Kafka topic
// through an idempotent producer (acks=all), each to partition
// PartitionForKey(user_id, partitions), and waits until every record is
// acknowledged. Used by `kappa gen` and by tests. Blocking; one call per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "kafka/kafka_config.h"
#include "workload/event_encoding.h"
#include "workload/nexmark_generator.h"
#include "workload/transaction_generator.h"

namespace kappa {

struct ProduceSummary {
  GeneratorStats stats;
  NexmarkStats nexmark;  // ProduceNexmark only
  EncodingStats encoding;  // ProduceEvents: the records by malformed class of their format
  int32_t partitions = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Called about four times a second while producing: records sent so far.
using ProgressFn = std::function<void(uint64_t sent, uint64_t total, double seconds)>;

// `encoding` picks the format of the values (workload/event_encoding.h);
// the keys, partitions and timestamps are the same in every format.
Result<ProduceSummary> ProduceEvents(const KafkaConfig& config, const std::string& topic,
                                     const GeneratorOptions& options, const ProgressFn& progress = {},
                                     const EncodingOptions& encoding = {});

// The same for the Nexmark workload (engine/nexmark_generator.h): each event
// to PartitionForKey(its key) with its date_time as the Kafka timestamp.
// `format`: kTransaction (the default) writes the generator's FlatBuffers
// NexmarkEvent, kJson the same event as JSON (EncodeNexmarkJson); keys,
// partitions and timestamps are the same in both. Other formats are refused.
Result<ProduceSummary> ProduceNexmark(const KafkaConfig& config, const std::string& topic,
                                      const NexmarkOptions& options, const ProgressFn& progress = {},
                                      EventFormat format = EventFormat::kTransaction);

}  // namespace kappa
