// Dedup: drops a record whose field (txn_id normally) this task has already
// seen, so a producer retry never counts twice. An entry first seen at event
// time t expires once the record watermark passes t + ttl; lookups treat
// expired entries as absent, so when they are purged never changes results.
#pragma once

#include "operators/operator.h"

namespace kappa {

class Dedup final : public Operator {
 public:
  struct Entry {
    int64_t first_seen_ms;
  };
  Dedup(const DedupSpec& spec, const std::string& state_name, StateRegistry& registry);
  std::string_view name() const override { return "dedup"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  void OnBatchEnd(TaskContext& ctx) override;

 private:
  DedupSpec spec_;
  KeyedState<Entry>* seen_;
  int64_t last_purge_watermark_ = kNoTime;
};

}  // namespace kappa
