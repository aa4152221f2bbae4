#include "operators/window_aggregate.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <type_traits>

#include "operators/field_access.h"
#include "operators/rolling_window.h"
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
  out->resize(key.size() + 1 + kStartBytes);
  if (!key.empty()) std::memcpy(out->data(), key.data(), key.size());  // an absent key's data() is null
  (*out)[key.size()] = '|';
  const uint64_t u = static_cast<uint64_t>(start);
  char* p = out->data() + key.size() + 1;
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(u >> (8 * (7 - i)));
}

// Rewrites the start of a key MakeStateKey built.
void SetStateKeyStart(std::string* key, int64_t start) {
  const uint64_t u = static_cast<uint64_t>(start);
  char* p = key->data() + key->size() - kStartBytes;
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(u >> (8 * (7 - i)));
}

std::string_view GroupKey(std::string_view state_key) {
  return state_key.substr(0, state_key.size() - kStartBytes - 1);
}


WindowAggregate::Accumulator& Base(WindowAggregate::Accumulator& a) { return a; }
WindowAggregate::Accumulator& Base(WindowAggregate::ArgmaxAccumulator& a) { return a.acc; }
const WindowAggregate::Accumulator& Base(const WindowAggregate::Accumulator& a) { return a; }
const WindowAggregate::Accumulator& Base(const WindowAggregate::ArgmaxAccumulator& a) { return a.acc; }
WindowAggregate::Accumulator& Base(WindowAggregate::FeatureAccumulator& a) { return a.acc; }
const WindowAggregate::Accumulator& Base(const WindowAggregate::FeatureAccumulator& a) { return a.acc; }


// count_distinct's state key: <window start, 8 bytes big-endian> <feature
// index, 1 byte> <group length, 4 bytes> <group> <value: text, or 8 bytes>.
// The start leads so the firing can find a closed window's values by key.
void MakeDistinctKey(std::string* out, int64_t start, size_t feature, std::string_view group,
                     std::string_view value) {
  out->resize(8 + 1 + 4 + group.size() + value.size());
  char* p = out->data();
  const uint64_t u = static_cast<uint64_t>(start);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(u >> (8 * (7 - i)));
  p[8] = static_cast<char>(feature);
  const auto n = static_cast<uint32_t>(group.size());
  for (int i = 0; i < 4; ++i) p[9 + i] = static_cast<char>(n >> (8 * (3 - i)));
  if (!group.empty()) std::memcpy(p + 13, group.data(), group.size());  // an absent field's data() is null
  if (!value.empty()) std::memcpy(p + 13 + group.size(), value.data(), value.size());
}
int64_t DistinctKeyStart(std::string_view key) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = u << 8 | static_cast<uint8_t>(key[static_cast<size_t>(i)]);
  return static_cast<int64_t>(u);
}

bool HasDistinct(const WindowSpec& spec) {
  for (const FeatureSpec& f : spec.features) {
    if (f.kind == FeatureKind::kCountDistinct) return true;
  }
  return false;
}

}  // namespace

Result<WindowSpec> WindowAggregate::Parse(const ConfigNode& body) {
  KAPPA_RETURN_IF_ERROR(
      body.CheckKeys({"type", "size", "slide", "key", "aggregates", "top", "argmax", "features"}, "window"));
  WindowSpec spec;
  if (const ConfigNode* type = body.Find("type")) {
    auto name = type->String();
    if (!name.ok()) return name.status();
    if (*name == "sliding" || *name == "hopping") {
      spec.kind = WindowSpec::Kind::kSliding;
    } else if (*name == "rolling") {
      spec.kind = WindowSpec::Kind::kRolling;
    } else if (*name != "tumbling") {
      return type->Error("window `type` must be tumbling, sliding or rolling, not `" + *name + "`");
    }
  }
  if (spec.kind == WindowSpec::Kind::kRolling) {
    for (const char* option : {"slide", "top", "argmax", "aggregates"}) {
      if (const ConfigNode* n = body.Find(option)) {
        return n->Error(std::string("a rolling window takes no `") + option +
                        "`: it emits one row of `features` per record, over (event time - size, event time]");
      }
    }
    if (body.Find("features") == nullptr) {
      return body.Error(
          "a rolling window needs `features`, e.g. features: {txn_count_7d: count, spend_7d: sum(amount_cents)}");
    }
  }
  const bool sliding = spec.kind == WindowSpec::Kind::kSliding;
  auto size = body.DurationAt("size", 0, /*required=*/true);
  if (!size.ok()) return size.status();
  spec.size_ms = *size;
  auto slide = body.DurationAt("slide", *size, /*required=*/sliding);
  if (!slide.ok()) return slide.status();
  // A tumbling window's slide is its size; one written otherwise was meant
  // for a sliding window and would be ignored (Validate checks a sliding
  // window's).
  if (!sliding && body.Find("slide") != nullptr && *slide != *size) {
    return body.Find("slide")->Error(
        "a tumbling window's `slide` is its `size`: for windows of `size` that start every `slide`, write "
        "type: sliding");
  }
  spec.slide_ms = sliding ? *slide : *size;
  auto key = FieldAt(body, "key", Field::kUserId);
  if (!key.ok()) return key.status();
  spec.key_field = *key;
  if (const ConfigNode* features = body.Find("features")) {
    if (body.Find("aggregates") || body.Find("top") || body.Find("argmax")) {
      return features->Error("window `features` replaces `aggregates`, and does not combine with top or argmax");
    }
    auto parsed = ParseFeatures(*features);
    if (!parsed.ok()) return parsed.status();
    spec.features = std::move(*parsed);
  } else if (const ConfigNode* aggs = body.Find("aggregates")) {
    if (!aggs->IsList()) return aggs->Error("window `aggregates` must be a list (count, sum, min, max, avg)");
    // An empty list wrote rows of zeros beside the count; a repeated name, a
    // column twice.
    if (aggs->items().empty()) {
      return aggs->Error("window `aggregates` is empty: name at least one of count, sum, min, max, avg (or leave "
                         "it out for all five)");
    }
    for (const ConfigNode& a : aggs->items()) {
      auto name = a.String();
      if (!name.ok()) return name.status();
      auto agg = ParseAggregate(*name);
      if (!agg.ok()) return a.Error(agg.status().message());
      if (std::find(spec.aggregates.begin(), spec.aggregates.end(), *agg) != spec.aggregates.end()) {
        return a.Error("window `aggregates` lists `" + *name + "` twice");
      }
      spec.aggregates.push_back(*agg);
    }
  } else {
    spec.aggregates = {Aggregate::kCount, Aggregate::kSum, Aggregate::kMin, Aggregate::kMax, Aggregate::kAvg};
  }
  auto top = body.IntAt("top", 0);
  if (!top.ok()) return top.status();
  // `top: 0` was taken as no top at all and emitted every key's row (a bug
  // bash).
  if (const ConfigNode* given = body.Find("top"); given != nullptr && *top == 0) {
    return given->Error("window `top` must be at least 1 (leave it out for a row per key)");
  }
  spec.top = *top;
  auto argmax = FieldsAt(body, "argmax", "numeric fields");
  if (!argmax.ok()) return argmax.status();
  // The record holding the max: without `max` among the aggregates the rows
  // showed `max: 0` beside the argmax of a 99,986,186 bid (a bug bash).
  if (!argmax->empty() &&
      std::find(spec.aggregates.begin(), spec.aggregates.end(), Aggregate::kMax) == spec.aggregates.end()) {
    return body.Find("argmax")->Error("window `argmax` names the record holding the max: add `max` to `aggregates`");
  }
  spec.argmax = *argmax;
  return spec;
}

void WindowAggregate::AppendCanonical(const WindowSpec& spec, std::string& out) {
  out.append("window(").append(std::to_string(static_cast<int>(spec.kind))).append(",");
  out.append(std::to_string(spec.size_ms)).append(",").append(std::to_string(spec.slide_ms)).append(",");
  out.append(FieldName(spec.key_field));
  for (Aggregate a : spec.aggregates) out.append(",").append(std::to_string(static_cast<int>(a)));
  // Options are appended only when set, so older specs keep their hash.
  if (spec.top != 0) out.append(",top=").append(std::to_string(spec.top));
  AppendCanonicalFields(out, "argmax", spec.argmax);
  if (!spec.features.empty()) {
    AppendCanonicalFeatures(out, spec.features);
    out.append(",rows=").append(RowFormatName(spec.row_format));
  }
  out.append(")");
}

void WindowAggregate::AppendFields(const WindowSpec& spec, std::vector<Field>& out) {
  out.push_back(spec.key_field);
  out.insert(out.end(), spec.argmax.begin(), spec.argmax.end());
  for (const FeatureSpec& f : spec.features) {
    if (f.kind != FeatureKind::kCount) out.push_back(f.field);
  }
}

std::vector<RowColumn> WindowSpec::RowColumns() const {
  if (kind == Kind::kRolling) {
    return FeatureRowColumns({{"key", ValueType::kString}, {"event_time", ValueType::kTimestamp}}, features);
  }
  return FeatureRowColumns({{"key", ValueType::kString},
                            {"window_start", ValueType::kTimestamp},
                            {"window_end", ValueType::kTimestamp}},
                           features);
}

void WindowAggregate::AppendStateTables(const WindowSpec& spec, const std::string& state_name,
                                        std::vector<std::string>& out) {
  out.push_back(state_name);
  if (HasDistinct(spec)) out.push_back(state_name + "_distinct");
}

std::unique_ptr<Operator> WindowAggregate::Create(const WindowSpec& spec, const std::string& state_name,
                                                  StateRegistry& registry) {
  if (spec.kind == WindowSpec::Kind::kRolling) return MakeRollingWindow(spec, state_name, registry);
  return std::make_unique<WindowAggregate>(spec, state_name, registry);
}

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
  if (spec.kind == WindowSpec::Kind::kRolling &&
      (spec.features.empty() || spec.top != 0 || !spec.argmax.empty() || !spec.aggregates.empty())) {
    return Status::InvalidArgument(
        "a rolling window needs `features` and takes no aggregates, top or argmax, e.g. features: "
        "{txn_count_7d: count, spend_7d: sum(amount_cents)}");
  }
  if (spec.top < 0) return Status::InvalidArgument("window `top` must not be negative");
  if (spec.argmax.size() > kMaxArgmaxFields) {
    return Status::InvalidArgument("window `argmax` takes at most " + std::to_string(kMaxArgmaxFields) +
                                   " fields, got " + std::to_string(spec.argmax.size()));
  }
  if (!spec.features.empty() && (spec.top != 0 || !spec.argmax.empty())) {
    return Status::InvalidArgument("window `features` does not combine with top or argmax");
  }
  KAPPA_RETURN_IF_ERROR(ValidateFeatures(spec.features));
  for (Field f : spec.argmax) {
    if (!IsNumericField(f)) {
      return Status::InvalidArgument("window `argmax` takes numeric fields, not `" +
                                     std::string(FieldName(f)) + "`");
    }
  }
  return Status::OK();
}

WindowAggregate::WindowAggregate(const WindowSpec& spec, const std::string& state_name,
                                 StateRegistry& registry)
    : spec_(spec),
      slide_ms_(spec.kind == WindowSpec::Kind::kTumbling ? spec.size_ms : spec.slide_ms),
      fbb_(std::make_unique<flatbuffers::FlatBufferBuilder>(256)) {
  for (Field f : spec_.argmax) argmax_declared_ |= IsDeclaredField(f);
  needs_value_ = !spec_.argmax.empty() || std::any_of(spec_.aggregates.begin(), spec_.aggregates.end(),
                                                      [](Aggregate a) { return a != Aggregate::kCount; });
  if (!spec_.features.empty()) {
    feature_windows_ = registry.Register<FeatureAccumulator>(state_name);
    if (HasDistinct(spec_)) distinct_ = registry.Register<uint8_t>(state_name + "_distinct");
    rows_ = std::make_unique<RowEncoder>(spec_.row_format, spec_.RowColumns(), spec_.avro_schema_id);
  } else if (spec_.argmax.empty()) {
    windows_ = registry.Register<Accumulator>(state_name);
  } else {
    argmax_windows_ = registry.Register<ArgmaxAccumulator>(state_name);
  }
}

WindowAggregate::~WindowAggregate() = default;

bool WindowAggregate::Wants(Aggregate a) const {
  return std::find(spec_.aggregates.begin(), spec_.aggregates.end(), a) != spec_.aggregates.end();
}

template <typename A>
void WindowAggregate::EnsureIndex(KeyedState<A>* table) {
  if (index_known_) return;
  // A fresh operator, possibly over restored state: derive the index from it.
  min_open_end_ = kNoTime;
  table->ForEach([&](std::string_view, const A& v) {
    const int64_t end = Base(v).window_start + spec_.size_ms;
    if (min_open_end_ == kNoTime || end < min_open_end_) min_open_end_ = end;
  });
  index_known_ = true;
}

void WindowAggregate::Process(RecordBatch& batch, TaskContext& ctx) {
  if (windows_) {
    ProcessWith(windows_, batch, ctx);
  } else if (feature_windows_) {
    ProcessWith(feature_windows_, batch, ctx);
  } else {
    ProcessWith(argmax_windows_, batch, ctx);
  }
}

template <typename A>
void WindowAggregate::ProcessWith(KeyedState<A>* table, RecordBatch& batch, TaskContext& ctx) {
  constexpr bool kArgmax = std::is_same_v<A, ArgmaxAccumulator>;
  constexpr bool kFeatures = std::is_same_v<A, FeatureAccumulator>;
  int64_t in[kMaxFeatures];  // each feature's input of this record (int64 or double bits)
  const size_t feature_count = spec_.features.size();
  EnsureIndex(table);
  char scratch[kFieldTextScratchBytes];
  const size_t arg_count = spec_.argmax.size();
  // `key: partition`: one group per task.
  char partition_text[kFieldTextScratchBytes];
  const std::string_view partition_key(
      partition_text,
      static_cast<size_t>(std::to_chars(partition_text, partition_text + sizeof(partition_text), batch.partition).ptr -
                          partition_text));
  const bool by_partition = spec_.key_field == Field::kPartition;
  // Tumbling windows (one per record): the state of a task's groups
  // outgrows the core's L1/L2 beside the dedup set, so the lookup of the
  // record kAhead places on is prefetched (its key and hash built once,
  // the hash kept for the Upsert), and the cache misses overlap.
  const bool tumbling = slide_ms_ == spec_.size_ms;
  constexpr size_t kAhead = 8;
  size_t hashes[kAhead];  // of the window keys of records j .. j + kAhead - 1, by j % kAhead
  char ahead_text[kFieldTextScratchBytes];
  const size_t n = batch.selection.size();
  auto ahead = [&](size_t j) {
    const InputRecord& r = batch.records[batch.selection[j]];
    const std::string_view k = by_partition ? partition_key : FieldText(r, spec_.key_field, ahead_text);
    MakeStateKey(&ahead_scratch_, k, FloorDiv(r.event_time_ms, slide_ms_) * slide_ms_);
    hashes[j % kAhead] = KeyedState<A>::HashOf(ahead_scratch_);
    table->Prefetch(ahead_scratch_, hashes[j % kAhead]);
  };
  if (tumbling) {
    for (size_t j = 0; j < std::min(kAhead, n); ++j) ahead(j);
  }
  size_t kept = 0;
  for (size_t j = 0; j < n; ++j) {
    const uint32_t idx = batch.selection[j];
    const size_t hash = tumbling ? hashes[j % kAhead] : 0;
    if (tumbling && j + kAhead < n) ahead(j + kAhead);
    const InputRecord& rec = batch.records[idx];
    if (!by_partition && DeclaredAbsent(rec, spec_.key_field)) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField, AbsentKeyMessage("window", spec_.key_field));
      ++ctx.counters->dlq;
      continue;
    }
    const std::string_view key = by_partition ? partition_key : FieldText(rec, spec_.key_field, scratch);
    const int64_t t = rec.event_time_ms;
    bool accepted = false;
    // The state key's group part once per record; each window patches only
    // its 8 start bytes.
    MakeStateKey(&key_scratch_, key, 0);
    if constexpr (kFeatures) {
      // A feature over an optional field the record lacks: counted as 0 (or,
      // for count_distinct, as a value of its own) it would change the
      // aggregate in silence, so the record is a dead letter instead.
      const FeatureSpec* missing = nullptr;
      for (size_t i = 0; i < feature_count; ++i) {
        const FeatureSpec& f = spec_.features[i];
        if (f.kind == FeatureKind::kCount) continue;
        if (IsDeclaredField(f.field) && !DeclaredSlot(rec, f.field).present) {
          missing = &f;
          break;
        }
        if (f.kind == FeatureKind::kCountDistinct) continue;
        in[i] = FeatureInputIsDouble(f) ? DoubleBits(DeclaredSlot(rec, f.field).d) : NumericField(rec, f.field);
      }
      if (missing != nullptr) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField, MissingFeatureMessage(*missing));
        ++ctx.counters->dlq;
        continue;
      }
    } else {
      if (argmax_declared_) [[unlikely]] {
        const Field* absent = nullptr;
        for (const Field& f : spec_.argmax) {
          if (DeclaredAbsent(rec, f)) {
            absent = &f;
            break;
          }
        }
        if (absent != nullptr) {
          // Read as 0 it would win the smallest-values tie-break in silence.
          ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField,
                           "the window's argmax field `" + std::string(FieldName(*absent)) +
                               "` is absent in this record (declared optional): a 0 in its place would be taken "
                               "for a value");
          ++ctx.counters->dlq;
          continue;
        }
      }
      if (rec.value_absent && needs_value_) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField,
                         "the window's " + std::string(spec_.argmax.empty() ? "sum/min/max/avg" : "argmax") +
                             " need the value, whose field (source `value:`) is absent in this record (declared "
                             "optional; a filter before the window can drop such records)");
        ++ctx.counters->dlq;
        continue;
      }
    }
    // Windows containing t: starts s = k*slide with s <= t < s + size.
    for (int64_t s = FloorDiv(t, slide_ms_) * slide_ms_; s > t - spec_.size_ms; s -= slide_ms_) {
      const int64_t end = s + spec_.size_ms;
      if (end <= rec.watermark_ms) continue;  // closed (emitted or due): too late for this one
      SetStateKeyStart(&key_scratch_, s);
      bool inserted = false;
      A initial{};
      Base(initial) = Accumulator{s, 0, 0, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min(), rec.offset, rec.offset};
      if constexpr (kFeatures) InitFeatures(initial);
      A& v = tumbling ? table->Upsert(key_scratch_, hash, initial, &inserted)
                      : table->Upsert(key_scratch_, initial, &inserted);
      if constexpr (kFeatures) UpdateFeatures(v, rec, inserted, key, in);
      Accumulator& a = Base(v);
      if constexpr (kArgmax) {
        // The record with the largest value wins; among equals, the one with
        // the smallest argmax values (in field order): a pure function of
        // the window's records, whatever order they came in (a repartitioned
        // stream interleaves its upstream tasks).
        if (inserted || rec.value > a.max) {
          for (size_t i = 0; i < arg_count; ++i) v.arg[i] = NumericField(rec, spec_.argmax[i]);
        } else if (rec.value == a.max) {
          int64_t cand[kMaxArgmaxFields];
          for (size_t i = 0; i < arg_count; ++i) cand[i] = NumericField(rec, spec_.argmax[i]);
          if (std::lexicographical_compare(cand, cand + arg_count, v.arg, v.arg + arg_count)) {
            std::copy(cand, cand + arg_count, v.arg);
          }
        }
      }
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
  if (windows_) {
    EnsureIndex(windows_);
  } else if (feature_windows_) {
    EnsureIndex(feature_windows_);
  } else {
    EnsureIndex(argmax_windows_);
  }
  const int64_t wm = ctx.watermark_ms();
  if (wm == kNoTime || min_open_end_ == kNoTime || wm < min_open_end_) return;
  if (windows_) {
    Fire(windows_, ctx, wm);
  } else if (feature_windows_) {
    Fire(feature_windows_, ctx, wm);
    if (distinct_) {
      // The values of the windows just emitted.
      const int64_t size = spec_.size_ms;
      distinct_->EraseIf([&](std::string_view k, const uint8_t&) { return DistinctKeyStart(k) + size <= wm; });
    }
  } else {
    Fire(argmax_windows_, ctx, wm);
  }
}

template <typename A>
void WindowAggregate::Fire(KeyedState<A>* table, TaskContext& ctx, int64_t watermark) {
  ready_.clear();
  int64_t next_min = kNoTime;
  table->ForEach([&](std::string_view k, const A& v) {
    const Accumulator& a = Base(v);
    const int64_t end = a.window_start + spec_.size_ms;
    if (end <= watermark) {
      Ready& r = ready_.emplace_back(Ready{end, k, a, {}, &v});
      if constexpr (std::is_same_v<A, ArgmaxAccumulator>) {
        std::copy(std::begin(v.arg), std::end(v.arg), r.arg);
      }
    } else if (next_min == kNoTime || end < next_min) {
      next_min = end;
    }
  });
  // (end, key): a pure function of the state, whatever the hash map order.
  std::sort(ready_.begin(), ready_.end(), [](const Ready& x, const Ready& y) {
    return x.end != y.end ? x.end < y.end : GroupKey(x.state_key) < GroupKey(y.state_key);
  });
  for (size_t begin = 0; begin < ready_.size();) {
    size_t end = begin + 1;
    while (end < ready_.size() && ready_[end].end == ready_[begin].end) ++end;
    EmitRows(table, ctx, begin, end);
    begin = end;
  }
  ready_.clear();
  min_open_end_ = next_min;
}

template <typename A>
void WindowAggregate::EmitRows(KeyedState<A>* table, TaskContext& ctx, size_t begin, size_t end) {
  // `top`: the count a row needs, the top-th largest of this window end.
  int64_t min_count = std::numeric_limits<int64_t>::min();
  if (spec_.top > 0 && static_cast<size_t>(spec_.top) < end - begin) {
    top_counts_.clear();
    for (size_t i = begin; i < end; ++i) top_counts_.push_back(ready_[i].acc.count);
    const auto nth = top_counts_.begin() + (spec_.top - 1);
    std::nth_element(top_counts_.begin(), nth, top_counts_.end(), std::greater<int64_t>());
    min_count = *nth;
  }
  const bool want_sum = Wants(Aggregate::kSum), want_min = Wants(Aggregate::kMin);
  const bool want_max = Wants(Aggregate::kMax), want_avg = Wants(Aggregate::kAvg);
  auto& fbb = *fbb_;
  for (size_t i = begin; i < end; ++i) {
    const Ready& r = ready_[i];
    const std::string_view group = GroupKey(r.state_key);
    const Accumulator& a = r.acc;
    if constexpr (std::is_same_v<A, FeatureAccumulator>) {
      EmitFeatureRow(*static_cast<const FeatureAccumulator*>(r.value), group, r.end, ctx);
    } else if (a.count >= min_count) {
      fbb.Clear();
      auto key = fbb.CreateString(group.data(), group.size());
      flatbuffers::Offset<flatbuffers::Vector<int64_t>> argmax;
      if (!spec_.argmax.empty()) argmax = fbb.CreateVector(r.arg, spec_.argmax.size());
      auto root = schema::CreateWindowAggregate(
          fbb, key, a.window_start, r.end, a.count, want_sum ? a.sum : 0, want_min ? a.min : 0,
          want_max ? a.max : 0, want_avg ? static_cast<double>(a.sum) / static_cast<double>(a.count) : 0.0,
          a.first_offset, a.last_offset, argmax);
      schema::FinishWindowAggregateBuffer(fbb, root);
      SetOutputKey(group, r.end);
      ctx.out->Emit(out_key_, fbb.GetBufferPointer(), fbb.GetSize(),
                    OutputLineage{ctx.partition, a.first_offset, a.last_offset});
      ++ctx.counters->outputs;
    }
    table->Erase(r.state_key);  // invalidates r.state_key only
  }
}

}  // namespace kappa

namespace kappa {

void WindowAggregate::SetOutputKey(std::string_view group, int64_t end) {
  char end_text[kFieldTextScratchBytes];
  const auto printed = std::to_chars(end_text, end_text + sizeof(end_text), end);
  out_key_.assign(group).append(1, '|').append(end_text, printed.ptr);
}

void WindowAggregate::InitFeatures(FeatureAccumulator& v) const {
  v.first_time = 0;
  v.last_time = 0;
  for (size_t i = 0; i < spec_.features.size(); ++i) {
    const FeatureSpec& f = spec_.features[i];
    const bool dbl = FeatureInputIsDouble(f);
    int64_t c = 0;
    if (f.kind == FeatureKind::kMin) {
      c = dbl ? DoubleBits(std::numeric_limits<double>::infinity()) : std::numeric_limits<int64_t>::max();
    } else if (f.kind == FeatureKind::kMax) {
      c = dbl ? DoubleBits(-std::numeric_limits<double>::infinity()) : std::numeric_limits<int64_t>::min();
    } else if (dbl) {
      c = DoubleBits(0.0);
    }
    v.cells[i] = c;
  }
}

void WindowAggregate::UpdateFeatures(FeatureAccumulator& v, const InputRecord& rec, bool inserted,
                                     std::string_view group, const int64_t* in) {
  const int64_t t = rec.event_time_ms;
  // Records of a task come in offset order: a later one is `first` only with
  // a strictly smaller event time, `last` with an equal or larger one.
  const bool becomes_first = inserted || t < v.first_time;
  const bool becomes_last = inserted || t >= v.last_time;
  char scratch[kFieldTextScratchBytes];
  for (size_t i = 0; i < spec_.features.size(); ++i) {
    const FeatureSpec& f = spec_.features[i];
    int64_t& c = v.cells[i];
    const bool dbl = FeatureInputIsDouble(f);
    switch (f.kind) {
      case FeatureKind::kCount:
        break;
      case FeatureKind::kSum:
      case FeatureKind::kAvg:
        c = dbl ? DoubleBits(BitsDouble(c) + BitsDouble(in[i])) : WrappingAdd(c, in[i]);
        break;
      case FeatureKind::kMin:
        if (dbl ? inserted || DoubleBefore(BitsDouble(in[i]), BitsDouble(c)) : in[i] < c) {
          c = dbl ? CanonicalDoubleBits(BitsDouble(in[i])) : in[i];
        }
        break;
      case FeatureKind::kMax:
        if (dbl ? inserted || DoubleBefore(BitsDouble(c), BitsDouble(in[i])) : in[i] > c) {
          c = dbl ? CanonicalDoubleBits(BitsDouble(in[i])) : in[i];
        }
        break;
      case FeatureKind::kFirst:
        if (becomes_first) c = in[i];
        break;
      case FeatureKind::kLast:
        if (becomes_last) c = in[i];
        break;
      case FeatureKind::kCountDistinct: {
        // Numbers by their 8 bytes (a double by its value: -0.0 is 0.0),
        // text as it is; an absent optional field is a value of its own ("").
        std::string_view value;
        int64_t number;
        if (IsDeclaredField(f.field) && DeclaredTypeOf(f.field) == ValueType::kString) {
          value = FieldText(rec, f.field, scratch);
        } else if (IsNumericField(f.field) || FeatureInputIsDouble(f)) {
          if (FeatureInputIsDouble(f)) {
            const double d = DeclaredSlot(rec, f.field).d;
            number = CanonicalDoubleBits(d);
          } else {
            number = NumericField(rec, f.field);
          }
          value = std::string_view(reinterpret_cast<const char*>(&number), 8);
        } else {
          value = FieldText(rec, f.field, scratch);
        }
        MakeDistinctKey(&distinct_key_, Base(v).window_start, i, group, value);
        bool fresh = false;
        distinct_->Upsert(distinct_key_, uint8_t{1}, &fresh);
        if (fresh) ++c;
        break;
      }
    }
  }
  if (becomes_first) v.first_time = t;
  if (becomes_last) v.last_time = t;
}

void WindowAggregate::EmitFeatureRow(const FeatureAccumulator& v, std::string_view group, int64_t end,
                                     TaskContext& ctx) {
  const Accumulator& a = v.acc;
  RowEncoder& row = *rows_;
  row.Begin();
  row.Str(group);
  row.Int(a.window_start);
  row.Int(end);
  for (size_t i = 0; i < spec_.features.size(); ++i) {
    const FeatureSpec& f = spec_.features[i];
    const int64_t c = v.cells[i];
    const bool dbl = FeatureInputIsDouble(f);
    switch (f.kind) {
      case FeatureKind::kCount:
        row.Int(a.count);
        break;
      case FeatureKind::kAvg:
        row.Double((dbl ? BitsDouble(c) : static_cast<double>(c)) / static_cast<double>(a.count));
        break;
      case FeatureKind::kCountDistinct:
        row.Int(c);
        break;
      default:
        if (dbl) {
          row.Double(BitsDouble(c));
        } else {
          row.Int(c);
        }
    }
  }
  const auto bytes = row.Finish();
  SetOutputKey(group, end);
  ctx.out->Emit(out_key_, bytes.data(), bytes.size(), OutputLineage{ctx.partition, a.first_offset, a.last_offset});
  ++ctx.counters->outputs;
}

}  // namespace kappa
