// The transport baseline the Kafka rows are measured against: a bare
// librdkafka consume loop over every partition of a topic, no decoding, no
// job. Shared by replay_throughput (embedded broker) and realkafka_bench
// (real broker).
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"

namespace kappa::bench {

struct BareConsumeRun {
  int64_t records = 0;
  int64_t bytes = 0;  // keys and values
  double seconds = 0;
};

// Reads `topic`'s partitions from offset 0 to the high watermarks they have
// at the start, or for at most `max_seconds`.
inline Result<BareConsumeRun> BareConsume(const std::string& bootstrap, const std::string& topic, int partitions,
                                          double max_seconds) {
  KafkaConfig kc;
  kc.brokers = bootstrap;
  auto consumer = CreateClient(ClientKind::kConsumer, kc,
                               {{"group.id", "bench-bare"}, {"enable.auto.commit", "false"},
                                {"queued.min.messages", "50000"}, {"fetch.wait.max.ms", "20"}});
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  auto marks = QueryAllWatermarks(rk, topic, partitions, 10000);
  if (!marks.ok()) return marks.status();
  PartitionList list(partitions);
  int64_t total = 0;
  for (int p = 0; p < partitions; ++p) {
    list.Add(topic, p, 0);
    total += (*marks)[p].high;
  }
  if (Status st = StatusFromKafka(rd_kafka_assign(rk, list.get()), "cannot assign " + topic); !st.ok()) return st;
  rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(rk);
  std::vector<rd_kafka_message_t*> batch(8192);
  BareConsumeRun run;
  const auto start = std::chrono::steady_clock::now();
  while (run.records < total && Since(start) < max_seconds) {
    ssize_t got = rd_kafka_consume_batch_queue(q, 100, batch.data(), batch.size());
    for (ssize_t i = 0; i < got; ++i) {
      if (!batch[i]->err) {
        ++run.records;
        run.bytes += static_cast<int64_t>(batch[i]->len + batch[i]->key_len);
      }
      rd_kafka_message_destroy(batch[i]);
    }
  }
  run.seconds = Since(start);
  rd_kafka_queue_destroy(q);
  rd_kafka_consumer_close(rk);
  return run;
}

}  // namespace kappa::bench
