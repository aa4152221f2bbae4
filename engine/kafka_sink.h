// KafkaSink: where a job's records leave it. Implements the operators'
// OutputCollector over one idempotent KafkaProducer (kafka/kafka_producer.h,
// acks=all), which does the transport (delivery reports, flush, fatal
// errors, transactions); this class adds what a job means by an output:
// results to the version's output topic with lineage headers, failures to the
// DLQ topic as FlatBuffers DlqRecords (those that failed more than
// dlq.max_retries times, re-injections counted, to <dlq>.parked), late records (original bytes) to the
// late topic. A DLQ or late record never exceeds the producer's
// message.max.bytes: one that would keeps its metadata and as much of the
// payload (and key) as fits, marked truncated with the original size and an
// XXH3-64 checksum, so one huge input can never stop the job. An output
// (a result) over the limit is a job error naming its size. Transient
// errors are retried by the producer with backoff (and reported through the
// note callback); a record that still fails, or a fatal producer error,
// makes Flush() return an error so the job stops before checkpointing past
// it. Once a stop is requested, Flush gives up within a few seconds. With exactly_once
// delivery every epoch is a Kafka transaction that also carries the input
// offsets (CommitEpoch). A process fenced by another one with the same
// transactional.id (the same job version started elsewhere) stops with an
// error saying so. Outputs of a partition can be suppressed while its
// already-committed records are re-read to rebuild state. One thread.
//
// DLQ and late records (sparse side outputs) go through the producer's
// ProduceLater: handed to librdkafka together at each Poll (once per read of
// the job's loop, and after each archive block when several workers replay
// from the archive), before every barrier (Flush, CloseOutputs, CommitEpoch,
// CommitEpochLater) and whenever KafkaProducer::kLaterBatch of them wait.
// One at a time, each found its partition queue empty and woke the
// producer's thread: a syscall and a cross-core wake-up per record, often
// enough (7.7 k such writes in two archive replays of 20 k DLQ records each)
// to take 1.6% of the worker's time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "base/test_hooks.h"
#include "base/stop_token.h"
#include "engine/job_spec.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_producer.h"
#include "operators/operator.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

// Metadata attached to input offsets committed inside an exactly_once
// transaction. Recovery trusts a committed offset only with this tag: other
// commits to the same group (informational ones of an at-least-once run, a
// different spec) say nothing about what this spec delivered.
std::string EosOffsetTag(const JobSpec& spec);
// The tag of the offsets a bounded run's last transaction commits once its
// final watermark emitted every open window into it (--final-watermark).
std::string EosFinalOffsetTag(const JobSpec& spec);

// A commit or delivery error's message without the "; the job stopped with
// its last checkpoint intact, restart it to resume" it ends with: for a
// warning about an epoch the job redoes itself, where that advice is wrong.
std::string_view WithoutRestartAdvice(std::string_view message);

class KafkaSink final : public OutputCollector {
 public:
  ~KafkaSink() override;
  // `on_note` receives warnings about the broker (unreachable, all brokers
  // down) while the job runs; null: dropped.
  static Result<std::unique_ptr<KafkaSink>> Create(const KafkaConfig& config, const JobSpec& spec,
                                                   NoteCallback on_note = nullptr);
  // After `stop` is requested, Flush and CommitEpoch give up on a broker
  // that does not answer within a few seconds (an error: no checkpoint past
  // unacknowledged outputs), so that a stopping job exits promptly.
  void SetStopToken(StopToken stop) { producer_->SetStopToken(stop); }

  void Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) override;
  void EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) override;
  void EmitLate(int32_t partition, const InputRecord& record) override;
  // Stage 0 of a repartitioned job: to the repartition topic (the output
  // topic of that stage's spec), partition `to_partition`, without headers
  // (the envelope says where the record came from).
  void EmitRepartitioned(int32_t to_partition, std::string_view key, const uint8_t* value, size_t size,
                         int32_t from_partition) override;

  // Waits until every record produced so far is acknowledged (the
  // at-least-once barrier before a checkpoint). Error if any delivery failed.
  Status Flush(int timeout_ms);
  // At-least-once without stalling on the broker: closes the outputs so far
  // (DLQ and late records too) into the checkpoint about to be taken and
  // returns what waits until they are all acknowledged (OK), or the error
  // Flush would give. The wait may run on another thread (the state
  // backend's writer, before it writes that checkpoint), also after the
  // sink is gone (an error then).
  std::function<Status()> CloseOutputs(int timeout_ms);
  // exactly_once: sends `offsets` (next offset per input partition) to the
  // group of `consumer` inside the open transaction, commits it, and opens
  // the next one. An error leaves nothing committed for this epoch.
  Status CommitEpoch(rd_kafka_s* consumer, const std::string& topic,
                     const std::vector<std::pair<int32_t, int64_t>>& offsets);
  // exactly_once without stalling the job: the same commit, run by the
  // returned function (the state backend's writer runs it before it writes
  // the checkpoint), while the job goes on and its records wait in memory
  // for the next transaction (KafkaProducer::CommitTransactionLater). The
  // function may run after the sink is gone (an error then). Not for a
  // consumer group's member: a rebalance must see its commit fail at once.
  // Null once the producer has failed (CommitEpoch gives the error now).
  std::function<Status()> CommitEpochLater(rd_kafka_s* consumer, const std::string& topic,
                                           const std::vector<std::pair<int32_t, int64_t>>& offsets);
  bool transactional() const { return producer_->transactional(); }
  // Why the last CommitEpoch failed when its transaction was aborted and the
  // next one begun, so that nothing of the epoch is visible and a member of
  // a consumer group can rewind its tasks and go on: the group moved on (a
  // rebalance: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS,
  // FENCED_INSTANCE_ID), or the broker found a gap in the producer's
  // sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER: the records an earlier
  // aborted epoch purged; librdkafka bumps the producer epoch and the
  // transaction must be aborted). kNone: any other outcome.
  enum class AbortedCommit { kNone, kRebalance, kSequenceGap };
  AbortedCommit LastCommitAborted() const;
  // KafkaProducer::UnreachableSinceMs of the sink's producer.
  int64_t UnreachableSinceMs() const;
  // Exactly-once: whether, within timeout_ms, no commit begun by
  // CommitEpochLater is still running (the next one would wait for it).
  bool AwaitCommitRoom(int timeout_ms) const { return producer_->WaitUntilNotHoldingFor(timeout_ms); }
  // A state record for the changelog (engine/changelog.h), through the
  // same producer: flushed by Flush, inside the epoch's transaction under
  // exactly_once. A value with a null data() is a tombstone. Job thread
  // only, while no worker runs.
  Status ProduceState(const std::string& topic, int32_t partition, std::string_view key, std::string_view value);
  // Outputs caused by records of `partition` are dropped while suppressed.
  // Call with every partition (SetPartitions) before workers run, so that
  // workers only touch their own partition's entry.
  void SetSuppressed(int32_t partition, bool suppressed);
  // The final watermark has emitted every open window: the transactions
  // from now on commit their offsets with EosFinalOffsetTag, so that a
  // restart re-reading them knows those windows are in the log already.
  void MarkFinalWatermark() { final_watermark_ = true; }
  void SetPartitions(int32_t partitions);
  // Several worker threads emit at once (partitions processed in parallel):
  // the dead-letter path (one shared builder) then takes a mutex; outputs and
  // late records go to the thread-safe producer without one. Set before the
  // workers start.
  void SetConcurrent(bool concurrent) { concurrent_ = concurrent; }
  bool concurrent() const { return concurrent_; }
  // Whether outputs caused by records of `partition` are dropped now (a
  // PostgreSQL sink beside this one follows the same suppression).
  bool Suppressed(int32_t partition) const {
    return partition >= 0 && static_cast<size_t>(partition) < suppressed_.size() && suppressed_[partition];
  }
  // The output topic was found empty in every partition beside a gap that
  // committed transactions wrote (the topic deleted or recreated since):
  // the gap's output rows are written again, its dead letters and late
  // records (in their own topics) stay suppressed. Before workers run.
  void WriteSuppressedOutputs() { write_suppressed_outputs_ = true; }
  bool OutputsSuppressed(int32_t partition) const { return !write_suppressed_outputs_ && Suppressed(partition); }
  // Records history_gap ("<from>-<to>", offsets skipped because retention
  // deleted them and the spec allowed it) for `partition`: every output of
  // that partition from now on carries it as the kappa.history_gap lineage
  // header.
  void SetHistoryGap(int32_t partition, std::string gap);
  // First delivery or fatal error seen, if any (checked on the hot path).
  bool failed() const { return producer_->failed(); }
  Status failure() const;
  // Hands the waiting DLQ and late records to librdkafka, then serves
  // delivery reports.
  void Poll() { producer_->Poll(0); }
  int64_t produced() const { return producer_->produced(); }
  // DLQ records written by this process, per error type name
  // (Undecodable, MissingField, InvalidValue, SinkRejected).
  std::vector<std::pair<std::string, int64_t>> DlqByType() const;
  rd_kafka_s* handle() const { return producer_->handle(); }

 private:
  KafkaSink() = default;
  // Whether another producer with this transactional.id fenced this one
  // (librdkafka's fatal error is _FENCED, PRODUCER_FENCED or
  // INVALID_PRODUCER_EPOCH), and the error that says so.
  bool Fenced() const;
  Status FencedError() const;
  // Set when the open transaction has outlived transaction.timeout.ms: why
  // the job stops, whatever failed first (the fencing, a record's timeout).
  std::optional<Status> TransactionTimedOut() const;
  // `offsets` of `topic` with this spec's EosOffsetTag, as a transaction sends them.
  PartitionList TaggedOffsets(const std::string& topic, const std::vector<std::pair<int32_t, int64_t>>& offsets) const;

  std::unique_ptr<KafkaProducer> producer_;
  const JobSpec* spec_ = nullptr;
  std::string output_topic_;
  std::string transactional_id_;
  std::string version_text_;
  std::string parked_topic_;  // <dlq topic>.parked (dlq.max_retries)
  // Builds the DLQ record of `record` into dlq_builder_, keeping at most
  // key_keep/payload_keep bytes of its key/payload.
  void BuildDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message,
                size_t key_keep, size_t payload_keep, uint64_t payload_xxh3);

  std::unique_ptr<flatbuffers::FlatBufferBuilder> dlq_builder_;
  std::vector<uint8_t> suppressed_;
  bool write_suppressed_outputs_ = false;  // WriteSuppressedOutputs
  bool final_watermark_ = false;  // MarkFinalWatermark
  std::vector<std::string> history_gap_;
  bool concurrent_ = false;
  std::mutex emit_mutex_;
  std::array<std::atomic<int64_t>, 5> dlq_by_type_{};  // by schema::DlqErrorType
  // "mid-transaction": the n-th output of this process, inside an open
  // exactly_once transaction (test builds only).
  KAPPA_KILL_SWITCH(kill_switch_);
};

}  // namespace kappa
