#include "kafka/topic_reader.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"

namespace kappa {

namespace {
// The consumer group of these reads (they commit nothing; a secured Kafka wants Read on it).
constexpr char kReaderGroup[] = "kappa-reader";
}  // namespace

std::string ConsumedRecord::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

Result<TopicReadSummary> ReadTopic(const KafkaConfig& config, const std::string& topic,
                                   const std::function<void(const ConsumedRecord&)>& on_record,
                                   int idle_timeout_ms, const std::vector<int64_t>* from, int32_t only_partition,
                                   int settle_ms) {
  auto consumer = CreateClient(ClientKind::kConsumer, config,
                               {{"group.id", kReaderGroup},
                                {"enable.auto.commit", "false"},
                                {"enable.auto.offset.store", "false"},
                                {"auto.offset.reset", "error"},
                                // The end of a partition is where the consumer says it is: on a
                                // transactional topic the last offsets are commit markers (no
                                // record is ever delivered there) or not yet stable.
                                {"enable.partition.eof", "true"}});
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  auto marks = QueryTopicWatermarks(rk, topic, 10000);
  if (!marks.ok()) return marks.status();
  const auto partitions = static_cast<int32_t>(marks->size());
  // Read to the log end as of the call. A read_committed client is told the
  // last stable offset, which Kafka moves past a committed transaction only
  // once it has written the commit's markers, after it answered the
  // producer's commit: read right after an exactly-once job ended, a topic
  // came back without its last transaction (CI, now and then). So the ends
  // are those of a settled log (the last stable offset at the log end on
  // every partition), waited for up to settle_ms.
  if (settle_ms > 0) {
    if (auto uncommitted = CreateReadUncommittedClient(config); uncommitted.ok()) {
      const auto settle_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(settle_ms);
      while (true) {
        auto open = FirstOpenPartition(uncommitted->get(), topic, *marks, 10000);
        if (!open.ok() || open->partition < 0 || std::chrono::steady_clock::now() > settle_deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        marks = QueryAllWatermarks(rk, topic, partitions, 10000);
        if (!marks.ok()) return marks.status();
      }
    }
  }

  TopicReadSummary summary;
  summary.records_per_partition.assign(partitions, 0);
  std::vector<int64_t> position(partitions);
  std::vector<bool> done(partitions, true);
  PartitionList assignment(partitions);
  int remaining = 0;
  for (int32_t p = 0; p < partitions; ++p) {
    summary.log_start_offsets.push_back((*marks)[p].low);
    summary.log_end_offsets.push_back((*marks)[p].high);
    position[p] = (*marks)[p].low;
    if (from && p < static_cast<int32_t>(from->size())) position[p] = std::max(position[p], (*from)[p]);
    if ((*marks)[p].high > position[p] && (only_partition < 0 || p == only_partition)) {
      assignment.Add(topic, p, position[p]);
      done[p] = false;
      ++remaining;
    }
  }
  KAPPA_RETURN_IF_ERROR(StatusFromKafka(rd_kafka_assign(rk, assignment.get()), "cannot assign " + topic));
  // Bounded: librdkafka 2.0.2's teardown of a consumer whose topic was
  // deleted while it was assigned never returns, and a deployed version's
  // registry poll that read its control topic as it was deleted hung there
  // for good: it never said its registration was gone, never published
  // again, and its stop waited out its grace (CI). Past the bound the
  // teardown is left to the process's exit (see CloseConsumer).
  auto close = [&] { CloseConsumer(*consumer, 2000); };

  auto last_progress = std::chrono::steady_clock::now();
  ConsumedRecord record;
  while (remaining > 0) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 200);
    if (!msg) {
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(idle_timeout_ms)) {
        close();
        return Status::Unavailable("reading " + topic + ": no progress for " +
                                   std::to_string(idle_timeout_ms / 1000) + " s with " +
                                   std::to_string(remaining) + " partitions unfinished");
      }
      continue;
    }
    if (msg->err) {
      const bool eof = msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
      const rd_kafka_resp_err_t code = msg->err;
      std::string what = rd_kafka_message_errstr(msg);
      const int32_t p = msg->partition;
      rd_kafka_message_destroy(msg);
      if (eof) {
        // Everything readable is read: up to the high watermark asked for
        // above, or, with isolation.level=read_committed (librdkafka's
        // default), up to the last stable offset when a transaction is open.
        if (p >= 0 && p < partitions && !done[p]) {
          done[p] = true;
          --remaining;
        }
        last_progress = std::chrono::steady_clock::now();
        continue;
      }
      close();
      // Not authorized is no outage: it was "unavailable" with the broker's
      // words alone, where writes named the ACL to grant (a bug bash).
      if (Status refused = ReadRefused(code, "reading " + topic, what, topic, kReaderGroup); !refused.ok()) {
        return refused;
      }
      return Status::Unavailable("reading " + topic + ": " + what);
    }
    last_progress = std::chrono::steady_clock::now();
    const int32_t p = msg->partition;
    const int64_t high = (*marks)[p].high;
    if (msg->offset < high) {
      record.partition = p;
      record.offset = msg->offset;
      record.timestamp_ms = rd_kafka_message_timestamp(msg, nullptr);
      record.key = std::string_view(static_cast<const char*>(msg->key), msg->key_len);
      record.key_null = msg->key == nullptr;
      record.value = std::string_view(static_cast<const char*>(msg->payload), msg->len);
      record.value_null = msg->payload == nullptr;
      record.headers.clear();
      record.header_null.clear();
      AppendMessageHeaders(msg, &record.headers, &record.header_null);
      if (on_record) on_record(record);
      ++summary.records_per_partition[p];
      ++summary.total;
    }
    position[p] = msg->offset + 1;
    if (!done[p] && position[p] >= high) {
      done[p] = true;
      --remaining;
    }
    rd_kafka_message_destroy(msg);
  }
  close();
  return summary;
}

}  // namespace kappa
