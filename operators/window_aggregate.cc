#include "operators/window_aggregate.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "operators/field_access.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {
namespace {

constexpr size_t kStartBytes = 8;

int64_t FloorDiv(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

// State key: <group key> '|' <window start, 8 bytes big-endian>. The group
// key is everything before the last 9 bytes, so any key text is unambiguous.
void MakeStateKey(std::string* out, std::string_view key, int64_t start) {
  out->assign(key);
  out->push_back('|');
  const uint64_t u = static_cast<uint64_t>(start);
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(u >> (8 * i)));
}

std::string_view GroupKey(std::string_view state_key) {
  return state_key.substr(0, state_key.size() - kStartBytes - 1);
}

int64_t WrappingAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

}  // namespace

Status WindowAggregate::Validate(const WindowSpec& spec) {
  if (spec.size_ms <= 0) {
    return Status::InvalidArgument("window size must be positive, got " + std::to_string(spec.size_ms) +
                                   " ms");
  }
  if (spec.kind == WindowSpec::Kind::kSliding) {
    if (spec.slide_ms <= 0 || spec.slide_ms > spec.size_ms) {
      return Status::InvalidArgument("sliding window slide must be positive and at most the size (" +
                                     std::to_string(spec.size_ms) + " ms), got " +
                                     std::to_string(spec.slide_ms) + " ms");
    }
    if (spec.size_ms / spec.slide_ms > kMaxWindowsPerRecord) {
      return Status::InvalidArgument(
          "sliding window size / slide is " + std::to_string(spec.size_ms / spec.slide_ms) + ", at most " +
          std::to_string(kMaxWindowsPerRecord) + " windows per record are allowed");
    }
  }
  return Status::OK();
}

WindowAggregate::WindowAggregate(const WindowSpec& spec, const std::string& state_name,
                                 StateRegistry& registry)
    : spec_(spec),
      slide_ms_(spec.kind == WindowSpec::Kind::kTumbling ? spec.size_ms : spec.slide_ms),
      windows_(registry.Register<Accumulator>(state_name)),
      fbb_(std::make_unique<flatbuffers::FlatBufferBuilder>(256)) {}

WindowAggregate::~WindowAggregate() = default;

bool WindowAggregate::Wants(Aggregate a) const {
  return std::find(spec_.aggregates.begin(), spec_.aggregates.end(), a) != spec_.aggregates.end();
}

void WindowAggregate::EnsureIndex() {
  if (index_known_) return;
  // A fresh operator, possibly over restored state: derive the index from it.
  min_open_end_ = kNoTime;
  windows_->ForEach([&](std::string_view, const Accumulator& a) {
    const int64_t end = a.window_start + spec_.size_ms;
    if (min_open_end_ == kNoTime || end < min_open_end_) min_open_end_ = end;
  });
  index_known_ = true;
}

void WindowAggregate::Process(RecordBatch& batch, TaskContext& ctx) {
  EnsureIndex();
  char scratch[kFieldTextScratchBytes];
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = batch.records[idx];
    const std::string_view key = FieldText(rec.txn, spec_.key_field, scratch);
    const int64_t t = rec.event_time_ms;
    bool accepted = false;
    // Windows containing t: starts s = k*slide with s <= t < s + size.
    for (int64_t s = FloorDiv(t, slide_ms_) * slide_ms_; s > t - spec_.size_ms; s -= slide_ms_) {
      const int64_t end = s + spec_.size_ms;
      if (end <= rec.watermark_ms) continue;  // closed (emitted or due): too late for this one
      MakeStateKey(&key_scratch_, key, s);
      bool inserted = false;
      Accumulator& a =
          windows_->Upsert(key_scratch_,
                           Accumulator{s, 0, 0, std::numeric_limits<int64_t>::max(),
                                       std::numeric_limits<int64_t>::min(), rec.offset, rec.offset},
                           &inserted);
      ++a.count;
      a.sum = WrappingAdd(a.sum, rec.value);
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
  EnsureIndex();
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime || min_open_end_ == kNoTime || wm < min_open_end_) return;
  Fire(ctx, wm);
}

void WindowAggregate::Fire(TaskContext& ctx, int64_t watermark) {
  ready_.clear();
  int64_t next_min = kNoTime;
  windows_->ForEach([&](std::string_view k, const Accumulator& a) {
    const int64_t end = a.window_start + spec_.size_ms;
    if (end <= watermark) {
      ready_.push_back(Ready{end, k, a});
    } else if (next_min == kNoTime || end < next_min) {
      next_min = end;
    }
  });
  // (end, key): a pure function of the state, whatever the hash map order.
  std::sort(ready_.begin(), ready_.end(), [](const Ready& x, const Ready& y) {
    return x.end != y.end ? x.end < y.end : GroupKey(x.state_key) < GroupKey(y.state_key);
  });
  const bool want_sum = Wants(Aggregate::kSum), want_min = Wants(Aggregate::kMin);
  const bool want_max = Wants(Aggregate::kMax), want_avg = Wants(Aggregate::kAvg);
  auto& fbb = *fbb_;
  for (const Ready& r : ready_) {
    const std::string_view group = GroupKey(r.state_key);
    const Accumulator& a = r.acc;
    fbb.Clear();
    auto key = fbb.CreateString(group.data(), group.size());
    auto root = schema::CreateWindowAggregate(
        fbb, key, a.window_start, r.end, a.count, want_sum ? a.sum : 0, want_min ? a.min : 0,
        want_max ? a.max : 0, want_avg ? static_cast<double>(a.sum) / static_cast<double>(a.count) : 0.0,
        a.first_offset, a.last_offset);
    schema::FinishWindowAggregateBuffer(fbb, root);
    char end_text[kFieldTextScratchBytes];
    const auto printed = std::to_chars(end_text, end_text + sizeof(end_text), r.end);
    out_key_.assign(group).append(1, '|').append(end_text, printed.ptr);
    ctx.out->Emit(out_key_, fbb.GetBufferPointer(), fbb.GetSize(),
                  OutputLineage{ctx.partition, a.first_offset, a.last_offset});
    ++ctx.counters->outputs;
    windows_->Erase(r.state_key);  // invalidates r.state_key only
  }
  ready_.clear();
  min_open_end_ = next_min;
}

}  // namespace kappa
