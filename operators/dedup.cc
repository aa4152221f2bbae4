#include "operators/dedup.h"

#include <algorithm>

#include "operators/field_access.h"

namespace kappa {

Result<DedupSpec> Dedup::Parse(const ConfigNode& body) {
  KAPPA_RETURN_IF_ERROR(body.CheckKeys({"field", "ttl"}, "dedup"));
  DedupSpec spec;
  auto field = FieldAt(body, "field", Field::kTxnId);
  if (!field.ok()) return field.status();
  spec.field = *field;
  auto ttl = body.DurationAt("ttl", 0, /*required=*/true);
  if (!ttl.ok()) return ttl.status();
  spec.ttl_ms = *ttl;
  return spec;
}

void Dedup::AppendCanonical(const DedupSpec& spec, std::string& out) {
  out.append("dedup(").append(FieldName(spec.field)).append(",").append(std::to_string(spec.ttl_ms)).append(")");
}

void Dedup::AppendFields(const DedupSpec& spec, std::vector<Field>& out) { out.push_back(spec.field); }

void Dedup::AppendStateTables(const DedupSpec&, const std::string& state_name, std::vector<std::string>& out) {
  out.push_back(state_name);
}

std::unique_ptr<Operator> Dedup::Create(const DedupSpec& spec, const std::string& state_name,
                                        StateRegistry& registry) {
  return std::make_unique<Dedup>(spec, state_name, registry);
}

Status Dedup::Validate(const DedupSpec& spec) {
  if (IsKeyOnlyField(spec.field)) return Status::InvalidArgument("dedup cannot be by `partition`");
  if (spec.ttl_ms <= 0) {
    return Status::InvalidArgument("dedup ttl must be positive, got " + std::to_string(spec.ttl_ms) + " ms");
  }
  return Status::OK();
}

Dedup::Dedup(const DedupSpec& spec, const std::string& state_name, StateRegistry& registry)
    : spec_(spec), seen_(registry.RegisterExpiring<Entry>(state_name, spec.ttl_ms)) {}

bool Dedup::Expired(int64_t first_seen_ms, int64_t ttl_ms, int64_t watermark_ms) {
  int64_t limit;
  if (__builtin_add_overflow(first_seen_ms, ttl_ms, &limit)) return false;  // never, in practice
  return watermark_ms > limit;
}

void Dedup::Process(RecordBatch& batch, TaskContext& ctx) {
  char scratch[kFieldTextScratchBytes];
  char ahead_scratch[kFieldTextScratchBytes];
  size_t kept = 0;
  // A replay's dedup table outgrows the caches: look kAhead records ahead so
  // the lookups' cache misses overlap.
  constexpr size_t kAhead = 8;
  size_t hashes[kAhead];  // of records j .. j + kAhead - 1, by j % kAhead
  const size_t n = batch.selection.size();
  // A declared optional field may be absent: such records cannot be told
  // apart, and taken as one key every one after the first was dropped as a
  // repeat. They are dead letters instead.
  const bool declared = IsDeclaredField(spec_.field);
  auto ahead = [&](size_t j) {
    const std::string_view k = FieldText(batch.records[batch.selection[j]], spec_.field, ahead_scratch);
    hashes[j % kAhead] = KeyedState<Entry>::HashOf(k);
    seen_->Prefetch(k, hashes[j % kAhead]);
  };
  for (size_t j = 0; j < std::min(kAhead, n); ++j) ahead(j);
  for (size_t j = 0; j < n; ++j) {
    const uint32_t idx = batch.selection[j];
    const size_t hash = hashes[j % kAhead];
    if (j + kAhead < n) ahead(j + kAhead);
    const InputRecord& rec = batch.records[idx];
    if (declared && !DeclaredSlot(rec, spec_.field).present) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField,
                       "dedup by `" + std::string(FieldName(spec_.field)) +
                           "`, absent in this record (declared optional): it cannot be told from a repeat");
      ++ctx.counters->dlq;
      continue;
    }
    const std::string_view key = FieldText(rec, spec_.field, scratch);
    // One hash lookup per record; only a new key allocates. A repeat marks
    // its unchanged entry dirty, which costs one rewrite at the checkpoint.
    bool inserted = false;
    Entry& entry = seen_->Upsert(key, hash, Entry{rec.event_time_ms}, &inserted);
    if (!inserted) {
      if (!Expired(entry.first_seen_ms, spec_.ttl_ms, rec.watermark_ms)) {
        ++ctx.counters->deduped;
        continue;
      }
      entry.first_seen_ms = rec.event_time_ms;  // the old entry had expired: seen anew
    }
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

void Dedup::OnBatchEnd(TaskContext& ctx) {
  // Purge once per TTL of event time: state stays within about two TTLs'
  // worth of keys and the scan costs O(1) amortised per record.
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime) return;
  if (last_purge_watermark_ != kNoTime && !Expired(last_purge_watermark_, spec_.ttl_ms - 1, wm)) return;
  last_purge_watermark_ = wm;
  // Expired by the table's own rule (Entry starts with first_seen_ms):
  // where the store may forget them, they cost no delete.
  seen_->ExpireIf(
      [&](std::string_view, const Entry& e) { return Expired(e.first_seen_ms, spec_.ttl_ms, wm); });
}

}  // namespace kappa
