// Repartition: re-keys a job's stream through an internal Kafka topic, so
// that the operators after it group by a field that is not the input's
// Kafka key (or, with `partitions: 1`, see every record: a global window).
//
//   operators:
//     - dedup: {field: txn_id, ttl: 1h}
//     - repartition: {key: merchant}          # or {partitions: 1}
//     - window: {type: tumbling, size: 1h, key: merchant, aggregates: [count, sum]}
//
// The chain is cut there into two stages (engine/stage_plan.h). The upstream
// stage's tasks (one per input partition) end with this operator: each
// record goes, as its original bytes in an envelope, to partition
// XXH3(key text) % N of <job>.v<N>.repartition.1, and after every batch that
// moved the task's watermark, a watermark marker goes to every partition.
// The downstream stage's tasks (one per repartition partition) begin with
// RepartitionReceive, which unpacks the envelope before decode.
//
// What keeps the outputs deterministic (equal to a single-process run,
// whatever the interleaving of the upstream tasks in a repartition
// partition):
//   - A record carries the watermark its upstream task had right after it
//     (the watermark a window would judge it by without the repartition).
//     Downstream, a window accepts it into the windows that end after that
//     watermark and no others: lateness is decided upstream.
//   - A downstream task's watermark (when windows fire) is the minimum over
//     the upstream tasks of the latest watermark each has sent. A marker
//     follows, in every partition, the records sent before it, so a window
//     fires only once every record that can belong to it has arrived.
//   - A record carries its upstream partition and offset. Downstream keeps
//     the highest offset seen per upstream partition (state, checkpointed
//     with the task) and drops anything at or below it: an upstream task
//     that replays from its checkpoint after a crash re-sends the same
//     records, in the same order, and they count once.
// So the operators after a repartition must not depend on the order of
// records from different upstream tasks: filters, maps, emit, and windows
// with aggregates, top and argmax (ties go to the smallest argmax values);
// not dedup, rolling windows or named features (the job spec says so).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

struct RepartitionSpec {
  bool has_key = false;
  Field key = Field::kUserId;  // with has_key
  // Partitions of the repartition topic; 0: as many as the input topic
  // (filled in by the runtime before tasks are made).
  int32_t partitions = 0;
};

// The envelope in front of every record of a repartition topic (48 bytes, a
// multiple of 8, so the payload after it stays 8-byte aligned in the task's
// arena). Little-endian, as the machines it runs on.
struct RepartitionEnvelope {
  static constexpr uint32_t kMagic = 0x3150524b;  // "KRP1"
  enum Kind : uint32_t { kRecord = 0, kWatermark = 1 };
  uint32_t magic = kMagic;
  uint32_t kind = kRecord;
  int32_t origin_partition = 0;
  int32_t retry_count = 0;
  int64_t origin_offset = 0;
  int64_t watermark_ms = 0;  // a record's: its upstream watermark; a marker's: the task's
  int64_t timestamp_ms = 0;
  int64_t first_failure_at_ms = 0;
};
static_assert(sizeof(RepartitionEnvelope) == 48);

class Repartition final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = RepartitionSpec;
  static constexpr std::string_view kKind = "repartition";
  static constexpr bool kTerminal = false;
  static Result<RepartitionSpec> Parse(const ConfigNode& body);
  static Status Validate(const RepartitionSpec& spec);
  static void AppendCanonical(const RepartitionSpec& spec, std::string& out);
  static void AppendFields(const RepartitionSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const RepartitionSpec&, const std::string&, std::vector<std::string>&) {}
  static std::unique_ptr<Operator> Create(const RepartitionSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);

  explicit Repartition(const RepartitionSpec& spec) : spec_(spec) {}
  std::string_view name() const override { return kKind; }
  // Sends every selected record on (OutputCollector::EmitRepartitioned) and
  // selects none: this ends the upstream stage's chain.
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // A watermark marker to every partition when the watermark moved.
  void OnBatchEnd(TaskContext& ctx) override;

  // The partition of a record whose key field reads `key`.
  static int32_t PartitionOf(std::string_view key, int32_t partitions);

 private:
  RepartitionSpec spec_;
  int64_t sent_watermark_ = kNoTime;  // not state: markers are idempotent
  std::vector<uint8_t> buffer_;
};

// The first operator of a downstream stage's chain, before decode: unpacks
// the envelope (the record's payload becomes the original bytes), applies
// markers, drops re-sent records, and gives each record the watermark of
// its upstream task. Keeps one entry per upstream partition in the state
// table kStateTable; the task's watermark is the minimum over them, or none
// until every upstream task has sent one.
class RepartitionReceive final : public Operator {
 public:
  static constexpr const char* kStateTable = "repartition_in";
  struct Upstream {
    int64_t last_offset;  // highest origin offset taken
    int64_t watermark_ms;
  };
  RepartitionReceive(int32_t upstreams, StateRegistry& registry);
  std::string_view name() const override { return "repartition-in"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  void Recompute(TaskContext& ctx);
  int32_t upstreams_;
  KeyedState<Upstream>* table_;
  std::vector<Upstream> cache_;  // by upstream partition; loaded from table_ once
  std::vector<uint8_t> touched_;
  bool loaded_ = false;
};

}  // namespace kappa
