// Registry: the deployment registry, kept in a Kafka control topic (default
// "kappa.control", compacted on a real cluster) as FlatBuffers records keyed
// "job/<job>" (versions, states, serving alias, rollback stack) and
// "progress/<job>/v<N>" (what a running version last reported). Refresh()
// reads the topic to its end and keeps the latest record per key, so every
// process on every machine sees the same truth; a promotion is one record.
// Writers are expected to be one operator at a time (read, modify, write);
// concurrent writers to the same job race, last write wins. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "engine/job_runner.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_config.h"

namespace kappa {

enum class VersionState { kLive, kReplaying, kCaughtUp, kRetired };
const char* VersionStateName(VersionState state);

struct VersionInfo {
  int32_t version = 0;
  std::string spec_hash;
  VersionState state = VersionState::kLive;
  std::string source_topic;
  std::string output_topic;
  std::string group;
  std::string state_dir;
  int64_t registered_at_ms = 0;
  int64_t retired_at_ms = 0;
  double max_changed_share = -1;  // promotion gate from the spec; < 0: none
};

struct JobRecord {
  std::string job;
  std::vector<VersionInfo> versions;
  int32_t serving = 0;  // 0: nothing serves yet
  std::vector<int32_t> previous_serving;
  int64_t updated_at_ms = 0;
  VersionInfo* Find(int32_t version);
  const VersionInfo* Find(int32_t version) const;
};

struct ProgressRecord {
  std::string job;
  int32_t version = 0;
  ProgressSnapshot snapshot;
  int64_t caught_up_since_ms = 0;
  bool stopped = false;
};

class Registry {
 public:
  explicit Registry(KafkaConfig config, std::string control_topic = "kappa.control");
  ~Registry();
  // Reads the control topic to its end. A missing topic is an empty registry.
  Status Refresh();
  std::vector<std::string> Jobs() const;
  std::optional<JobRecord> Job(const std::string& job) const;
  std::optional<ProgressRecord> Progress(const std::string& job, int32_t version) const;
  // Writes one record and waits for its acknowledgement; the local view is
  // updated on success.
  Status PutJob(JobRecord record);
  Status PutProgress(const ProgressRecord& record);
  const std::string& control_topic() const { return topic_; }

 private:
  Status Put(const std::string& key, const std::string& value);
  KafkaConfig config_;
  std::string topic_;
  KafkaHandle producer_;
  std::map<std::string, std::string> latest_;  // key -> latest value bytes
};


}  // namespace kappa
