// The operator interface (operators/operator.h is the module's public
// header: this plus the registry of kinds). Operators process a batch of records of ONE task
// (input partition) in offset order and see only two things: keyed state
// handles (state/keyed_state.h, registered at construction) and an output
// collector. They never include librdkafka or RocksDB. One virtual call per
// batch, not per record. Operators are not thread-safe: one task, one thread.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "base/record_counters.h"
#include "base/status.h"
#include "formats/record_view.h"
#include "state/keyed_state.h"

namespace kappa {

constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();

// One input record. payload/key point into the source's buffers and are
// valid only while the batch is being processed. The payload is 8-byte
// aligned (the task copies it into an arena) so FlatBuffers can read it in place.
struct InputRecord {
  const uint8_t* payload = nullptr;
  uint32_t size = 0;
  const uint8_t* key = nullptr;
  uint32_t key_size = 0;
  // After a repartition (set by RepartitionReceive): the partition of the
  // job's input topic the record came from, and `offset` is its offset
  // there, so dead letters, late records, `emit {key: offset}` and window
  // lineage name the input record whatever the interleaving in the
  // repartition topic. -1 otherwise: the record is at `offset` of the
  // batch's partition (OriginPartition).
  int32_t origin_partition = -1;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // Kafka record timestamp
  // A record re-injected by `kappa dlq replay` (headers kappa.retry_count and
  // kappa.first_failure_at_ms, read by the Kafka and archive sources): how
  // often it failed before and when it first did; 0 for any other record.
  int32_t retry_count = 0;
  // `value` is 0 because its declared field is optional and absent here
  // (set by DecodeValidate, cleared by a map that computes the value): a
  // window's sum/min/max/avg would count it as 0, so the window dead-letters it.
  bool value_absent = false;
  int64_t first_failure_at_ms = 0;
  // Filled by DecodeValidate for valid records:
  // The record view (formats/record_view.h), whatever the format: one value
  // per slot, valid while the batch is processed. A declared format's fields
  // in slot order; a built-in format's (Transaction, Nexmark) at fixed slots
  // (formats/builtin_decoders.h). Operators read it through
  // operators/field_access.h, never a schema.
  const FieldValue* fields = nullptr;
  // The values the chain's maps computed so far (computed slot i at [i]),
  // valid while the batch is processed; null before the first such map.
  const FieldValue* computed = nullptr;
  int64_t event_time_ms = kNoTime;
  // The task watermark right after this record was seen: max event time of
  // the task's valid records up to and including this one, minus the allowed
  // lateness. Per record, so results never depend on batch boundaries.
  int64_t watermark_ms = kNoTime;
  int64_t value = 0;  // the number aggregates use (MapSpec; default amount_cents, a bid's price)
};

// The input partition `r` (of a batch of partition `batch_partition`) came from.
inline int32_t OriginPartition(const InputRecord& r, int32_t batch_partition) {
  return r.origin_partition < 0 ? batch_partition : r.origin_partition;
}

struct RecordBatch {
  int32_t partition = 0;
  std::vector<InputRecord> records;
  // Indices into records still in the chain, ascending (offset order).
  std::vector<uint32_t> selection;

  void Reset(int32_t p) {
    partition = p;
    records.clear();
    selection.clear();
  }
  void SelectAll() {
    selection.resize(records.size());
    for (uint32_t i = 0; i < records.size(); ++i) selection[i] = i;
  }
};

// kSinkRejected: an output row the sink refused (a database constraint);
// the "record" is the row, at the coordinates of the input that closed it.
enum class DlqReason { kUndecodable, kMissingField, kInvalidValue, kSinkRejected };

// Which input records an output row came from (output lineage headers).
struct OutputLineage {
  int32_t partition = 0;  // the task's
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  // After a repartition, where the offsets are the input topic's: the input
  // partition of the row's record(s) when it is one (an emitted record), -1
  // when records of several input partitions may have made the row (a
  // window: its offsets are then the smallest and largest input offset of
  // its records, whichever partitions they were in). Unused without a
  // repartition (the offsets are in `partition`).
  int32_t origin_partition = -1;
};

// Where records leave the chain. Implemented by the runtime (Kafka sink,
// DLQ and late topics) and by tests. Called per output, never per input
// record on the common path.
class OutputCollector {
 public:
  virtual ~OutputCollector() = default;
  virtual void Emit(std::string_view key, const uint8_t* value, size_t size,
                    const OutputLineage& lineage) = 0;
  virtual void EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason,
                       std::string_view message) = 0;
  virtual void EmitLate(int32_t partition, const InputRecord& record) = 0;
  // A record (or watermark marker) of a repartitioned job on its way to
  // partition `to_partition` of the repartition topic (operators/repartition.h),
  // caused by input partition `from_partition`. The runtime's sink writes it
  // there; this default, for collectors that are not a job's (tests,
  // benchmarks), treats it as an output row.
  virtual void EmitRepartitioned(int32_t to_partition, std::string_view key, const uint8_t* value, size_t size,
                                 int32_t from_partition) {
    (void)to_partition;
    Emit(key, value, size, OutputLineage{from_partition, 0, 0});
  }
};

// Event time at the end of a bounded input: the watermark it implies closes
// every window (Task::EndOfInput).
constexpr int64_t kEndOfInputTime = std::numeric_limits<int64_t>::max();

// What a task gives its operators.
struct TaskContext {
  int32_t partition = 0;
  int64_t allowed_lateness_ms = 0;
  int64_t max_event_time_ms = kNoTime;  // maintained by DecodeValidate
  RecordCounters* counters = nullptr;
  OutputCollector* out = nullptr;
  // Set by an operator that cannot go on for a reason outside the records
  // (a decoder's Schema Registry unreachable): the task commits nothing of
  // the batch and the job stops with this error, its last checkpoint intact.
  Status fatal;
  // A downstream task of a repartitioned job (operators/repartition.h): its
  // watermark is the minimum of its upstream tasks' (kept here by
  // RepartitionReceive), not its own records' event time, and each record
  // arrives with the watermark it is judged by (decode leaves it).
  bool watermark_from_upstreams = false;
  int64_t upstream_watermark_ms = kNoTime;

  int64_t watermark_ms() const {
    if (watermark_from_upstreams && max_event_time_ms != kEndOfInputTime) return upstream_watermark_ms;
    return max_event_time_ms == kNoTime ? kNoTime : max_event_time_ms - allowed_lateness_ms;
  }
};

class Operator {
 public:
  virtual ~Operator() = default;
  virtual std::string_view name() const = 0;
  // Processes batch.records[batch.selection] in order and narrows the
  // selection to the records that continue down the chain.
  virtual void Process(RecordBatch& batch, TaskContext& ctx) = 0;
  // After each batch: the watermark may have advanced (fire windows, expire
  // state). Called before any checkpoint that covers the batch.
  virtual void OnBatchEnd(TaskContext& /*ctx*/) {}
};

}  // namespace kappa
