// Dedup: drops a record whose field (txn_id normally) this task has already
// seen, so a producer retry never counts twice. An entry first seen at event
// time t expires once the record's own watermark passes t + ttl_ms (event
// time, never wall-clock); lookups treat expired entries as absent, so when
// they are purged (OnBatchEnd) never changes results. Counts `deduped`.
// State: KeyedState<Entry> named by the chain. One task, one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

// Drops a record whose `field` value was already seen by this task within
// `ttl_ms` of event time. An entry first seen at time t expires once the
// task's watermark passes t + ttl_ms.
struct DedupSpec {
  Field field = Field::kTxnId;
  int64_t ttl_ms = 0;
};

class Dedup final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = DedupSpec;
  static constexpr std::string_view kKind = "dedup";
  static constexpr bool kTerminal = false;
  // The spec from its section of the job spec (`dedup: ...`); Validate is
  // applied after.
  static Result<DedupSpec> Parse(const ConfigNode& body);
  static void AppendCanonical(const DedupSpec& spec, std::string& out);
  static void AppendFields(const DedupSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const DedupSpec& spec, const std::string& state_name, std::vector<std::string>& out);
  // `spec` must have passed Validate.
  static std::unique_ptr<Operator> Create(const DedupSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);
  // An expiring table's value (StateRegistry::RegisterExpiring): the event time
  // first, the TTL counting from it.
  struct Entry {
    int64_t first_seen_ms;  // event time of the record that (re)inserted the key
  };
  // InvalidArgument unless ttl_ms > 0.
  static Status Validate(const DedupSpec& spec);
  // `spec` must have passed Validate. Registers the table `state_name`.
  Dedup(const DedupSpec& spec, const std::string& state_name, StateRegistry& registry);
  std::string_view name() const override { return kKind; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // Purges expired entries, at most once per ttl_ms of watermark progress.
  void OnBatchEnd(TaskContext& ctx) override;

  // Whether an entry first seen at first_seen_ms has expired at watermark_ms:
  // watermark_ms > first_seen_ms + ttl_ms (no overflow).
  static bool Expired(int64_t first_seen_ms, int64_t ttl_ms, int64_t watermark_ms);

 private:
  DedupSpec spec_;
  KeyedState<Entry>* seen_;
  int64_t last_purge_watermark_ = kNoTime;  // only paces purging; not state
};

}  // namespace kappa
