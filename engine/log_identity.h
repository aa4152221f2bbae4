// The identity check of a restore: a restored task resumes the log it
// checkpointed, not another log under the same topic name. Its checkpoint
// names the last record it consumed (offset and RecordFingerprint); before
// the task reads on, that record is read back from Kafka (one short-lived
// read_committed consumer for all partitions, a bounded wait) and compared.
// A different record means the topic was deleted and recreated (or truncated
// and refilled): FailedPrecondition naming the partition. A record that can
// no longer be read (below the log start, compacted away, the wait over) is
// not a verdict: the check is skipped for that partition (retention is the
// history-gap rule's case). Librdkafka 2.0 exposes no topic ids, hence the
// records. One thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"
#include "kafka/partition_consumer.h"

namespace kappa {

class Task;

// Checks task i where check[i] (a restored task about to read Kafka) and its
// checkpoint names a last record that `marks[i]` says Kafka still holds.
// Notes a warning for a partition it could not check in `wait_ms`.
Status VerifyResumedLog(const KafkaConfig& config, const JobSpec& spec, const std::vector<Task*>& tasks,
                        const std::vector<Watermarks>& marks, const std::vector<bool>& check,
                        const NoteCallback& note, int wait_ms = 10000);

// Checkpoints of partitions the topic no longer has (it was recreated with
// fewer): FailedPrecondition naming them, OK if `stored` has none >= `partitions`.
Status CheckStoredPartitions(const JobSpec& spec, const std::vector<int32_t>& stored, int32_t partitions);

}  // namespace kappa
