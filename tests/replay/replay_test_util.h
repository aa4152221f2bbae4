// Helpers for the replay/ suites: raw records into a topic, and registry
// records built by hand.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "kafka/kafka_client.h"
#include "replay/registry.h"

namespace kappa::testing {

// Writes (key, value) records to partition 0 of `topic`, in order, and waits for every ack.
inline void ProduceRaw(const KafkaConfig& config, const std::string& topic,
                       const std::vector<std::pair<std::string, std::string>>& records) {
  auto producer = CreateClient(ClientKind::kProducer, config, {{"acks", "all"}, {"linger.ms", "0"}});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  for (const auto& [key, value] : records) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  }
  ASSERT_EQ(rd_kafka_flush(producer->get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

inline VersionInfo Version(int32_t version, VersionState state, const std::string& source = "transactions") {
  VersionInfo v;
  v.version = version;
  v.spec_hash = "hash" + std::to_string(version);
  v.state = state;
  v.source_topic = source;
  v.output_topic = "out.v" + std::to_string(version);
  v.group = "job.v" + std::to_string(version);
  v.state_dir = "/nonexistent/state.v" + std::to_string(version);
  v.registered_at_ms = 1000 * version;
  return v;
}

// Job `job` with one version (1, `state`), which serves.
inline JobRecord OneVersionJob(const std::string& job, VersionState state = VersionState::kLive) {
  JobRecord record;
  record.job = job;
  record.versions = {Version(1, state)};
  record.serving = 1;
  return record;
}

inline ProgressRecord Progress(const std::string& job, int32_t version,
                               const std::vector<std::pair<int32_t, int64_t>>& positions, int64_t epoch = 1) {
  ProgressRecord r;
  r.job = job;
  r.version = version;
  r.snapshot.epoch = epoch;
  // Reported just now: an older kappa's record (no report interval) silent
  // for long reads as not reporting (ProgressRecord::Liveness).
  r.snapshot.checkpoint_ms = WallClockMs() + epoch;
  for (const auto& [partition, position] : positions) {
    PartitionProgress p;
    p.partition = partition;
    p.position = position;
    p.log_end = position;
    r.snapshot.partitions.push_back(p);
  }
  return r;
}

}  // namespace kappa::testing
