// Dedup: drops a record whose field (txn_id normally) this task has already
// seen, so a producer retry never counts twice. An entry first seen at event
// time t expires once the record's own watermark passes t + ttl_ms (event
// time, never wall-clock); lookups treat expired entries as absent, so when
// they are purged (OnBatchEnd) never changes results. Counts `deduped`.
// State: KeyedState<Entry> named by the chain. One task, one thread.
#pragma once

#include "operators/operator.h"

namespace kappa {

class Dedup final : public Operator {
 public:
  struct Entry {
    int64_t first_seen_ms;  // event time of the record that (re)inserted the key
  };
  // InvalidArgument unless ttl_ms > 0.
  static Status Validate(const DedupSpec& spec);
  // `spec` must have passed Validate. Registers the table `state_name`.
  Dedup(const DedupSpec& spec, const std::string& state_name, StateRegistry& registry);
  std::string_view name() const override { return "dedup"; }
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
