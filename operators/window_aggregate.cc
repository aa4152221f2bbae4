#include "operators/window_aggregate.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <limits>

#include "operators/field_access.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {
namespace {

constexpr size_t kStartBytes = 8;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// State key: <group key> '|' <window start, 8 bytes big-endian>.
void MakeStateKey(std::string* out, std::string_view key, int64_t start) {
  out->assign(key);
  out->push_back('|');
  const uint64_t u = static_cast<uint64_t>(start);
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(u >> (8 * i)));
}

}  // namespace

WindowAggregate::WindowAggregate(const WindowSpec& spec, const std::string& state_name, StateRegistry& registry)
    : spec_(spec),
      windows_(registry.Register<Accumulator>(state_name)),
      fbb_(std::make_unique<flatbuffers::FlatBufferBuilder>(256)) {}

WindowAggregate::~WindowAggregate() = default;

bool WindowAggregate::Wants(Aggregate a) const {
  return std::find(spec_.aggregates.begin(), spec_.aggregates.end(), a) != spec_.aggregates.end();
}

void WindowAggregate::Process(RecordBatch& batch, TaskContext& ctx) {
  if (!index_known_) {
    // Rebuild the firing index from state (fresh operator or after restore).
    min_open_end_ = kNoTime;
    windows_->ForEach([&](std::string_view, const Accumulator& a) {
      const int64_t end = a.window_start + spec_.size_ms;
      if (min_open_end_ == kNoTime || end < min_open_end_) min_open_end_ = end;
    });
    index_known_ = true;
  }
  char scratch[24];
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = batch.records[idx];
    const std::string_view key = FieldText(rec.txn, spec_.key_field, scratch);
    const int64_t t = rec.event_time_ms;
    bool accepted = false;
    // Windows containing t: starts s = k*slide with s <= t < s + size.
    for (int64_t s = FloorDiv(t, spec_.slide_ms) * spec_.slide_ms; s > t - spec_.size_ms; s -= spec_.slide_ms) {
      const int64_t end = s + spec_.size_ms;
      if (end <= rec.watermark_ms) continue;  // already emitted: too late for this window
      MakeStateKey(&key_scratch_, key, s);
      bool inserted = false;
      Accumulator& a = windows_->Upsert(
          key_scratch_,
          Accumulator{s, 0, 0, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(), rec.offset,
                      rec.offset},
          &inserted);
      ++a.count;
      a.sum += rec.value;
      a.min = std::min(a.min, rec.value);
      a.max = std::max(a.max, rec.value);
      a.first_offset = std::min(a.first_offset, rec.offset);
      a.last_offset = std::max(a.last_offset, rec.offset);
      if (inserted && (min_open_end_ == kNoTime || end < min_open_end_)) min_open_end_ = end;
      accepted = true;
    }
    if (accepted) {
      ++ctx.counters->out;
      batch.selection[kept++] = idx;
    } else {
      ctx.out->EmitLate(batch.partition, rec);
      ++ctx.counters->late;
    }
  }
  batch.selection.resize(kept);
}

void WindowAggregate::OnBatchEnd(TaskContext& ctx) {
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime || !index_known_ || min_open_end_ == kNoTime || wm < min_open_end_) return;
  Fire(ctx, wm);
}

void WindowAggregate::Fire(TaskContext& ctx, int64_t watermark) {
  ready_.clear();
  int64_t next_min = kNoTime;
  windows_->ForEach([&](std::string_view k, const Accumulator& a) {
    const int64_t end = a.window_start + spec_.size_ms;
    if (end <= watermark) {
      ready_.push_back(Ready{end, std::string(k.substr(0, k.size() - kStartBytes - 1)), a});
    } else if (next_min == kNoTime || end < next_min) {
      next_min = end;
    }
  });
  std::sort(ready_.begin(), ready_.end(),
            [](const Ready& x, const Ready& y) { return x.end != y.end ? x.end < y.end : x.key < y.key; });
  const bool want_sum = Wants(Aggregate::kSum), want_min = Wants(Aggregate::kMin);
  const bool want_max = Wants(Aggregate::kMax), want_avg = Wants(Aggregate::kAvg);
  for (const Ready& r : ready_) {
    auto& fbb = *fbb_;
    fbb.Clear();
    auto key = fbb.CreateString(r.key);
    const Accumulator& a = r.acc;
    auto root = schema::CreateWindowAggregate(
        fbb, key, a.window_start, r.end, a.count, want_sum ? a.sum : 0, want_min ? a.min : 0, want_max ? a.max : 0,
        want_avg ? static_cast<double>(a.sum) / static_cast<double>(a.count) : 0.0, a.first_offset, a.last_offset);
    schema::FinishWindowAggregateBuffer(fbb, root);
    out_key_.assign(r.key).append("|").append(std::to_string(r.end));
    ctx.out->Emit(out_key_, fbb.GetBufferPointer(), fbb.GetSize(),
                  OutputLineage{ctx.partition, a.first_offset, a.last_offset});
    ++ctx.counters->outputs;
    MakeStateKey(&key_scratch_, r.key, a.window_start);
    windows_->Erase(key_scratch_);
  }
  min_open_end_ = next_min;
}

}  // namespace kappa
