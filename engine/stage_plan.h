// Stages of a repartitioned job (a `repartition` in its chain,
// operators/repartition.h), run the way Kafka Streams runs sub-topologies:
// each stage is an ordinary job run (engine/job_runner.h) with its own
// source, state directory, checkpoints, consumer group and transactional
// id; Kafka between them. Stage 0 reads the job's source (archive and
// Kafka alike) and ends in the repartition, writing <job>.v<N>.repartition.1;
// stage 1 reads that topic (Kafka only) and runs the rest of the chain into
// the job's sink. Each stage checkpoints on its own, and that is consistent:
//   at_least_once: stage 0 checkpoints only after the repartition topic has
//     acknowledged everything before it; stage 1 drops what an upstream task
//     re-sends after a crash (per upstream partition, by offset), so
//     duplicates in the repartition topic never count twice;
//   exactly_once: each stage's epoch is a Kafka transaction (stage 0's
//     holds its repartition records; stage 1 reads read_committed and, once
//     stage 0 has ended, waits for the topic's last stable offset to reach
//     its log end before it takes the ends as final).
// In one process the two stages run on two threads; with scale_out each
// stage is a consumer group of its own (<job>.v<N> and <job>.v<N>.stage1),
// and every instance runs both.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/stop_token.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"

namespace kappa {

// Whether `spec`'s chain holds a repartition.
bool IsRepartitioned(const JobSpec& spec);
// The repartition topic's partition count: the spec's, or the input's.
int32_t RepartitionPartitions(const JobSpec& spec, int32_t source_partitions);
// The two stage specs of a repartitioned `spec` whose source topic has
// `source_partitions` partitions (see above). Stage 1's state lives in
// <state_dir>.stage1.
std::vector<JobSpec> PlanStages(const JobSpec& spec, int32_t source_partitions);

// Runs a repartitioned job: creates the repartition topic when missing
// (refuses one with another partition count), then runs stage 1 on a thread
// of its own and stage 0 on this one. A stop request stops both; a stage
// that fails stops the other. With stop_at_end, stage 1 stops once stage 0
// has ended and stage 1 has read everything stage 0 wrote. The summary is
// the job's: stage 0's input and drops, stage 1's outputs.
Status RunRepartitioned(const JobSpec& spec, const KafkaConfig& config, const RunOptions& options, StopToken stop,
                        RunSummary* summary);

}  // namespace kappa
