// ReadTopic: reads every partition of a topic from its log start offset to
// the log end offset as of the call (a snapshot), in offset order per
// partition, with a plain librdkafka consumer (no group commits). It reads
// committed records only (isolation.level=read_committed, librdkafka's
// default): a partition with an open transaction is read up to its last
// stable offset, and commit markers at the end do not keep it waiting. Used by
// `kappa consume` and by tests to read outputs back. Fails with Unavailable if
// no progress is made for `idle_timeout_ms`, never hangs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "kafka/kafka_config.h"

namespace kappa {

struct ConsumedRecord {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string_view key;
  bool key_null = false;  // no key at all (key is then ""), as opposed to an empty one
  std::string_view value;
  bool value_null = false;  // a tombstone (no value at all)
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<bool> header_null;  // per header: its value is null (headers holds "")
  std::string Header(std::string_view name) const;
};

struct TopicReadSummary {
  std::vector<int64_t> records_per_partition;
  std::vector<int64_t> log_start_offsets;
  std::vector<int64_t> log_end_offsets;  // what was read up to (the high watermarks, as of the call)
  int64_t total = 0;
};

// Reads every committed record of `topic` up to its end as of the call.
// `from` (optional) gives the first offset to read per partition instead of
// the log start (e.g. to resume an incremental reader). `only_partition` >=
// 0: that partition alone. `settle_ms`: how long to wait for the end a
// read_committed client is told (the last stable offset) to reach the log
// end, so that a transaction just committed, whose markers Kafka writes
// after answering the commit, is read whole; 0 for a topic written without
// transactions or a reader that reads on next time (no second client is
// made to look). A transaction still open after it is read up to its start.
Result<TopicReadSummary> ReadTopic(const KafkaConfig& config, const std::string& topic,
                                   const std::function<void(const ConsumedRecord&)>& on_record,
                                   int idle_timeout_ms = 15000, const std::vector<int64_t>* from = nullptr,
                                   int32_t only_partition = -1, int settle_ms = 2000);

}  // namespace kappa
