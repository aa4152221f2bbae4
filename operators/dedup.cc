#include "operators/dedup.h"

#include "operators/field_access.h"

namespace kappa {

Dedup::Dedup(const DedupSpec& spec, const std::string& state_name, StateRegistry& registry)
    : spec_(spec), seen_(registry.Register<Entry>(state_name)) {}

void Dedup::Process(RecordBatch& batch, TaskContext& ctx) {
  char scratch[24];
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = batch.records[idx];
    const std::string_view key = FieldText(rec.txn, spec_.field, scratch);
    const Entry* e = seen_->Find(key);
    if (e && rec.watermark_ms <= e->first_seen_ms + spec_.ttl_ms) {
      ++ctx.counters->deduped;
      continue;
    }
    bool inserted = false;
    Entry& entry = seen_->Upsert(key, Entry{rec.event_time_ms}, &inserted);
    if (!inserted) entry.first_seen_ms = rec.event_time_ms;  // the old one had expired
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

void Dedup::OnBatchEnd(TaskContext& ctx) {
  // Purge expired entries once per TTL of event time: state stays within
  // about two TTLs' worth of keys and the scan costs O(1) per record.
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime) return;
  if (last_purge_watermark_ != kNoTime && wm - last_purge_watermark_ < spec_.ttl_ms) return;
  last_purge_watermark_ = wm;
  seen_->EraseIf([&](std::string_view, const Entry& e) { return wm > e.first_seen_ms + spec_.ttl_ms; });
}

}  // namespace kappa
