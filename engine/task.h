// Task: the processing of ONE input partition by one job version: its
// operator chain (decode first), its state tables, its counters, its next
// offset and watermark. Its output is a function of its partition's records
// in offset order and the spec, nothing else (DESIGN invariant 3). Driven by
// one thread; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/job_spec.h"
#include "operators/operator.h"
#include "state/keyed_state.h"
#include "state/state_backend.h"

namespace kappa {

class Task {
 public:
  static Result<std::unique_ptr<Task>> Create(int32_t partition, const JobSpec& spec, OutputCollector* out);

  // Column family names the chain of `spec` registers, in chain order.
  static Result<std::vector<std::string>> StateTableNames(const JobSpec& spec);

  int32_t partition() const { return partition_; }
  // Appends a record to the next batch. The payload is copied into an
  // 8-byte-aligned arena: Kafka hands payloads out at arbitrary addresses and
  // FlatBuffers reads scalars in place, which needs alignment to be defined
  // behaviour. The arena is reused, so this allocates nothing once warm.
  // `key` must stay valid until Process().
  void Append(const void* payload, uint32_t size, const void* key, uint32_t key_size, int64_t offset,
              int64_t timestamp_ms);
  // Appends a record whose payload is already 8-byte aligned and stays valid
  // until Process() (the archive's block buffer): no copy. A batch holds
  // either borrowed or copied records, never both.
  void AppendBorrowed(const void* payload, uint32_t size, const void* key, uint32_t key_size, int64_t offset,
                      int64_t timestamp_ms);
  // Marks the record appended last as re-injected by `kappa dlq replay`
  // (InputRecord::retry_count, first_failure_at_ms).
  void SetLastRetry(int32_t retry_count, int64_t first_failure_at_ms) {
    batch_.records.back().retry_count = retry_count;
    batch_.records.back().first_failure_at_ms = first_failure_at_ms;
  }
  // Marks the record appended last as a repeat this version has processed
  // already (a re-injected copy: engine/reinjected.h): counted in and
  // deduped, nothing else sees it, and the position passes it.
  void MarkLastRepeat() { repeats_.push_back(static_cast<uint32_t>(batch_.records.size() - 1)); }
  bool has_pending() const { return !batch_.records.empty(); }
  // Runs batch() through the chain, then advances next_offset past it.
  void Process();
  // The end of a bounded input (a backfill's last record): event time jumps
  // to the end of time, so every open window fires now, as a batch job's
  // would, and any record after this is late. Persisted with the next
  // checkpoint. Never for a live run: its input has no end.
  void EndOfInput();
  bool ended() const { return checkpoint_.max_event_time_ms == kEndOfInputTime; }

  StateRegistry& registry() { return registry_; }
  const StateRegistry& registry() const { return registry_; }
  // Checkpoint view of this task (offset, watermark, counters).
  const TaskCheckpointData& checkpoint() const { return checkpoint_; }
  void Restore(const TaskCheckpointData& data);
  void StartAt(int64_t offset);
  // Moves the next offset forward over records that are gone (an allowed
  // history gap), keeping start_offset.
  void SkipTo(int64_t offset) { checkpoint_.next_offset = offset; }

  int64_t next_offset() const { return checkpoint_.next_offset; }
  // Not OK once an operator stopped the task (TaskContext::fatal): the
  // batch it was in is not committed; the sources return this error and
  // the job stops without a checkpoint.
  const Status& fatal() const { return context_.fatal; }
  const RecordCounters& counters() const { return checkpoint_.counters; }
  int64_t watermark_ms() const { return context_.watermark_ms(); }
  // The watermark a restore of checkpoint() gives this task, for the store
  // to drop the expiring tables' entries that are expired at it once the
  // checkpoint is durable (StateBackend::TaskSnapshot); kNoTime unless the
  // task's tables forget expired entries.
  int64_t expiry_watermark_ms() const;

 private:
  Task() = default;
  void Push(const uint8_t* payload, uint32_t size, const void* key, uint32_t key_size, int64_t offset,
            int64_t timestamp_ms) {
    // Built whole: emplace_back() then assignments zeroed each record first
    // (a rep stos of its 104 bytes, most of this call in a profile).
    batch_.records.push_back(InputRecord{.payload = payload,
                                         .size = size,
                                         .key = static_cast<const uint8_t*>(key),
                                         .key_size = key_size,
                                         .offset = offset,
                                         .timestamp_ms = timestamp_ms});
  }
  int32_t partition_ = 0;
  StateRegistry registry_;
  std::vector<std::unique_ptr<Operator>> chain_;
  TaskContext context_;
  TaskCheckpointData checkpoint_;
  RecordBatch batch_;
  std::vector<uint64_t> arena_;
  size_t arena_words_ = 0;
  static constexpr size_t kNullPayload = SIZE_MAX;  // Append's word index of a null payload
  bool borrowed_ = false;
  std::vector<uint32_t> repeats_;  // MarkLastRepeat: indices into batch_.records, ascending
};

}  // namespace kappa
