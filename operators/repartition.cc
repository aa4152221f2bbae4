#include "operators/repartition.h"

#include <algorithm>
#include <charconv>

#include "operators/field_access.h"
#include "state/keyed_state.h"  // XXH3, inlined

namespace kappa {

Result<RepartitionSpec> Repartition::Parse(const ConfigNode& body) {
  KAPPA_RETURN_IF_ERROR(body.CheckKeys({"key", "partitions"}, "repartition"));
  RepartitionSpec spec;
  if (body.Find("key") != nullptr) {
    auto key = FieldAt(body, "key", Field::kUserId);
    if (!key.ok()) return key.status();
    spec.has_key = true;
    spec.key = *key;
  }
  auto count = body.IntAt("partitions", 0);
  if (!count.ok()) return count.status();
  if (*count < 0 || *count > 10000) return body.Error("repartition `partitions` must be 1..10000");
  spec.partitions = static_cast<int32_t>(*count);
  return spec;
}

Status Repartition::Validate(const RepartitionSpec& spec) {
  if (!spec.has_key && spec.partitions != 1) {
    return Status::InvalidArgument(
        "repartition needs a `key` (the field the records are re-keyed by), or `partitions: 1` to bring every "
        "record to one task (a global window)");
  }
  if (spec.has_key && IsKeyOnlyField(spec.key)) {
    return Status::InvalidArgument("repartition cannot be by `" + std::string(FieldName(spec.key)) +
                                   "`: that is where records are, not a field of theirs");
  }
  return Status::OK();
}

void Repartition::AppendCanonical(const RepartitionSpec& spec, std::string& out) {
  out.append("repartition(")
      .append(spec.has_key ? FieldName(spec.key) : "-")
      .append(",")
      .append(std::to_string(spec.partitions))
      .append(")");
}

void Repartition::AppendFields(const RepartitionSpec& spec, std::vector<Field>& out) {
  if (spec.has_key) out.push_back(spec.key);
}

std::unique_ptr<Operator> Repartition::Create(const RepartitionSpec& spec, const std::string&, StateRegistry&) {
  return std::make_unique<Repartition>(spec);
}

int32_t Repartition::PartitionOf(std::string_view key, int32_t partitions) {
  return static_cast<int32_t>(XXH3_64bits(key.data(), key.size()) % static_cast<uint64_t>(partitions));
}

void Repartition::Process(RecordBatch& batch, TaskContext& ctx) {
  char scratch[kFieldTextScratchBytes];
  const int32_t partitions = std::max<int32_t>(1, spec_.partitions);
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = batch.records[idx];
    const int32_t to = partitions == 1 || !spec_.has_key ? 0 : PartitionOf(FieldText(rec, spec_.key, scratch), partitions);
    RepartitionEnvelope env;
    env.origin_partition = batch.partition;
    env.retry_count = rec.retry_count;
    env.origin_offset = rec.offset;
    env.watermark_ms = rec.watermark_ms;
    env.timestamp_ms = rec.timestamp_ms;
    env.first_failure_at_ms = rec.first_failure_at_ms;
    buffer_.resize(sizeof(env) + rec.size);
    std::memcpy(buffer_.data(), &env, sizeof(env));
    if (rec.size) std::memcpy(buffer_.data() + sizeof(env), rec.payload, rec.size);
    ctx.out->EmitRepartitioned(to, std::string_view(reinterpret_cast<const char*>(rec.key), rec.key_size),
                               buffer_.data(), buffer_.size(), batch.partition);
    ++ctx.counters->out;
  }
  batch.selection.clear();
}

void Repartition::OnBatchEnd(TaskContext& ctx) {
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime || (sent_watermark_ != kNoTime && wm <= sent_watermark_)) return;
  RepartitionEnvelope env;
  env.kind = RepartitionEnvelope::kWatermark;
  env.origin_partition = ctx.partition;
  env.origin_offset = -1;
  env.watermark_ms = wm;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&env);
  for (int32_t p = 0; p < std::max<int32_t>(1, spec_.partitions); ++p) {
    ctx.out->EmitRepartitioned(p, {}, bytes, sizeof(env), ctx.partition);
  }
  sent_watermark_ = wm;
}

RepartitionReceive::RepartitionReceive(int32_t upstreams, StateRegistry& registry)
    : upstreams_(upstreams), table_(registry.Register<Upstream>(kStateTable)) {}

void RepartitionReceive::Recompute(TaskContext& ctx) {
  int64_t low = kNoTime;
  for (const Upstream& u : cache_) {
    if (u.watermark_ms == kNoTime) {
      low = kNoTime;
      break;
    }
    low = low == kNoTime ? u.watermark_ms : std::min(low, u.watermark_ms);
  }
  ctx.upstream_watermark_ms = low;
}

void RepartitionReceive::Process(RecordBatch& batch, TaskContext& ctx) {
  if (!loaded_) {
    // The restored state (a checkpoint or a changelog): the upstream
    // positions and watermarks this task had.
    cache_.assign(static_cast<size_t>(upstreams_), Upstream{-1, kNoTime});
    table_->ForEach([&](std::string_view key, const Upstream& v) {
      int32_t u = -1;
      auto r = std::from_chars(key.data(), key.data() + key.size(), u);
      if (r.ec == std::errc() && u >= 0 && u < upstreams_) cache_[static_cast<size_t>(u)] = v;
    });
    loaded_ = true;
    Recompute(ctx);
  }
  bool moved = false;
  size_t kept = 0;
  touched_.assign(cache_.size(), 0);
  auto store = [&](int32_t u) { touched_[static_cast<size_t>(u)] = 1; };
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    RepartitionEnvelope env;
    if (rec.size < sizeof(env)) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable,
                       "not a kappa repartition record (" + std::to_string(rec.size) + " bytes, shorter than its envelope)");
      ++ctx.counters->dlq;
      continue;
    }
    std::memcpy(&env, rec.payload, sizeof(env));
    if (env.magic != RepartitionEnvelope::kMagic || env.kind > RepartitionEnvelope::kWatermark ||
        env.origin_partition < 0 || env.origin_partition >= upstreams_) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable,
                       "not a kappa repartition record of this job (bad envelope, or from upstream partition " +
                           std::to_string(env.origin_partition) + " of " + std::to_string(upstreams_) + ")");
      ++ctx.counters->dlq;
      continue;
    }
    Upstream& u = cache_[static_cast<size_t>(env.origin_partition)];
    if (env.kind == RepartitionEnvelope::kWatermark) {
      // Not an input record: markers do not count.
      --ctx.counters->in;
      if (u.watermark_ms == kNoTime || env.watermark_ms > u.watermark_ms) {
        u.watermark_ms = env.watermark_ms;
        store(env.origin_partition);
        moved = true;
      }
      continue;
    }
    if (env.origin_offset <= u.last_offset) {
      // Re-sent by an upstream task that replayed from its checkpoint: it
      // was taken the first time.
      --ctx.counters->in;
      continue;
    }
    u.last_offset = env.origin_offset;
    store(env.origin_partition);
    rec.payload += sizeof(env);
    rec.size -= static_cast<uint32_t>(sizeof(env));
    rec.timestamp_ms = env.timestamp_ms;
    rec.retry_count = env.retry_count;
    rec.first_failure_at_ms = env.first_failure_at_ms;
    rec.watermark_ms = env.watermark_ms;  // decode keeps it (ctx.watermark_from_upstreams)
    // Where the record is in the job's input: deterministic, unlike its
    // place in the repartition topic (Task keeps the batch's own offsets
    // for its position).
    rec.origin_partition = env.origin_partition;
    rec.offset = env.origin_offset;
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
  // Into the state once per batch: what the next checkpoint stores.
  char name[16];
  for (size_t u = 0; u < touched_.size(); ++u) {
    if (!touched_[u]) continue;
    auto r = std::to_chars(name, name + sizeof(name), static_cast<int32_t>(u));
    table_->Upsert(std::string_view(name, static_cast<size_t>(r.ptr - name)), cache_[u]) = cache_[u];
  }
  if (moved) Recompute(ctx);
}

}  // namespace kappa
