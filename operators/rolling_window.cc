#include "operators/rolling_window.h"

#include <absl/container/flat_hash_map.h>
#include <absl/container/node_hash_map.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <deque>
#include <limits>
#include <vector>

#include "operators/field_access.h"

namespace kappa {
namespace {

constexpr size_t kSeqBytes = 8;  // a block's sequence number in its key
constexpr uint32_t kBlockEvents = kRollingBlockEvents;
static_assert(kBlockEvents <= 32, "Block::live is a 32-bit mask");

void PutBE(char* p, int64_t v) {
  const uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(u >> (8 * (7 - i)));
}
int64_t GetBE(const char* p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = u << 8 | static_cast<uint8_t>(p[i]);
  return static_cast<int64_t>(u);
}

// A double's bits mapped so that int64 order is the double order (-0.0 and
// 0.0 compare equal, as `<` does, because both map to 0.0's bits first;
// every NaN, whatever its sign bit, is one value above +infinity, as
// DoubleBefore orders it).
int64_t OrderKey(int64_t bits) {
  const double d = BitsDouble(bits);
  if (d == 0.0) bits = 0;
  if (d != d) bits = DoubleBits(std::numeric_limits<double>::quiet_NaN());
  const uint64_t u = static_cast<uint64_t>(bits);
  const uint64_t k = (u >> 63) ? ~u : (u | (uint64_t{1} << 63));
  return static_cast<int64_t>(k ^ (uint64_t{1} << 63));
}
int64_t FromOrderKey(int64_t key) {
  const uint64_t k = static_cast<uint64_t>(key) ^ (uint64_t{1} << 63);
  const uint64_t u = (k >> 63) ? (k & ~(uint64_t{1} << 63)) : ~k;
  return static_cast<int64_t>(u);
}

// time <= t - size, without overflow (false when t - size is below int64).
bool AtOrBefore(int64_t time, int64_t t, int64_t size) {
  int64_t bound;
  if (__builtin_sub_overflow(t, size, &bound)) return false;
  return time <= bound;
}

// Transparent string_view lookups (this absl's own string hash takes only
// absl::string_view, which is not std::string_view here).
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringHash, StringEq>;
template <typename V>
using StringNodeMap = absl::node_hash_map<std::string, V, StringHash, StringEq>;

// An event's state value: its numeric inputs, and its count_distinct values
// of at most 8 bytes (numbers, short text) inline; a longer value is in the
// distinct table (dlen kInTable).
constexpr uint8_t kInTable = 0xFF;
constexpr size_t kInlineValueBytes = 8;
template <size_t N>
struct Cells {
  int64_t c[N];
  char dv[N][kInlineValueBytes];
  uint8_t dlen[(N + 7) / 8 * 8];  // rounded up: no padding bytes in the stored value
};
// An event as persisted: its time, offset and cells.
template <size_t N>
struct StoredEvent {
  int64_t time;
  int64_t offset;
  Cells<N> cells;
};
// A state entry: up to kBlockEvents events of one key, in arrival order.
template <size_t N>
struct Block {
  uint32_t used;  // slots [0, used) were filled
  uint32_t live;  // bit k: slot k's event is live (not evicted)
  StoredEvent<N> ev[kBlockEvents];
};

// Value -> count (> 0; erased at 0) of a group's count_distinct feature: the
// first few values inline (in the group's own cache lines, fetched with it),
// the rest in a flat map. A value is in one of the two.
template <typename P>
class SmallCounts {
 public:
  size_t size() const { return inline_size_ + more_.size(); }
  void Add(P p) {
    for (uint32_t k = 0; k < inline_size_; ++k) {
      if (inline_[k].first == p) {
        ++inline_[k].second;
        return;
      }
    }
    if (!more_.empty()) {
      const auto it = more_.find(p);
      if (it != more_.end()) {
        ++it->second;
        return;
      }
    }
    if (inline_size_ < kInline) {
      inline_[inline_size_++] = {p, 1};
    } else {
      more_.emplace(p, 1);
    }
  }
  void Remove(P p) {
    for (uint32_t k = 0; k < inline_size_; ++k) {
      if (inline_[k].first == p) {
        if (--inline_[k].second == 0) inline_[k] = inline_[--inline_size_];
        return;
      }
    }
    const auto it = more_.find(p);
    if (--it->second == 0) more_.erase(it);
  }
  int64_t Count(P p) const {
    for (uint32_t k = 0; k < inline_size_; ++k) {
      if (inline_[k].first == p) return inline_[k].second;
    }
    const auto it = more_.find(p);
    return it == more_.end() ? 0 : it->second;
  }
  void Prefetch(P p) const {
    __builtin_prefetch(inline_);
    if (!more_.empty()) more_.prefetch(p);
  }

 private:
  static constexpr uint32_t kInline = 3;
  uint32_t inline_size_ = 0;
  std::pair<P, int64_t> inline_[kInline];
  absl::flat_hash_map<P, int64_t> more_;
};

template <size_t N>
class RollingWindow final : public Operator {
 public:
  RollingWindow(const WindowSpec& spec, const std::string& state_name, StateRegistry& registry)
      : spec_(spec), rows_(spec.row_format, spec.RowColumns(), spec.avro_schema_id) {
    events_ = registry.Register<Block<N>>(state_name);
    int next_cell = 0;
    std::vector<Field> cell_fields;
    for (size_t i = 0; i < spec_.features.size(); ++i) {
      const FeatureSpec& f = spec_.features[i];
      cell_[i] = -1;
      distinct_slot_[i] = -1;
      dbl_[i] = FeatureInputIsDouble(f);
      if (f.kind == FeatureKind::kCount) continue;
      if (f.kind == FeatureKind::kCountDistinct) {
        distinct_slot_[i] = static_cast<int>(distinct_features_.size());
        distinct_features_.push_back(i);
        continue;
      }
      const auto it = std::find(cell_fields.begin(), cell_fields.end(), f.field);
      if (it != cell_fields.end()) {
        cell_[i] = static_cast<int>(it - cell_fields.begin());
      } else {
        cell_[i] = next_cell++;
        cell_fields.push_back(f.field);
      }
      if (f.kind == FeatureKind::kMin || f.kind == FeatureKind::kMax) {
        ordered_features_.push_back(i);
        largest_[i] = f.kind == FeatureKind::kMax;
      }
      if ((f.kind == FeatureKind::kSum || f.kind == FeatureKind::kAvg) && !dbl_[i]) int_sum_features_.push_back(i);
    }
    cell_field_ = cell_fields;
    if (!distinct_features_.empty()) distinct_ = registry.Register<uint8_t>(state_name + "_distinct");
  }

  std::string_view name() const override { return WindowAggregate::kKind; }

  void Process(RecordBatch& batch, TaskContext& ctx) override {
    EnsureIndex();
    char scratch[kFieldTextScratchBytes];
    char partition_text[kFieldTextScratchBytes];
    const std::string_view partition_key(
        partition_text, static_cast<size_t>(
                            std::to_chars(partition_text, partition_text + sizeof(partition_text), batch.partition)
                                .ptr -
                            partition_text));
    const bool by_partition = spec_.key_field == Field::kPartition;
    size_t kept = 0;
    const size_t count = batch.selection.size();
    // Groups found ahead are valid within this batch only (a sweep may erase
    // them): look up the first ones afresh.
    for (size_t pos = 0; pos < std::min(count, kFarAhead); ++pos) {
      const InputRecord& ahead = batch.records[batch.selection[pos]];
      PrefetchInserted(ahead, by_partition ? partition_key : FieldText(ahead, spec_.key_field, scratch),
                       &ahead_groups_[pos % kRing]);
    }
    for (size_t pos = 0; pos < count; ++pos) {
      // The state of the records a few places ahead is fetched into the cache
      // while this one is processed (the tables are far larger than the cache).
      if (pos + kFarAhead < count) {
        const InputRecord& ahead = batch.records[batch.selection[pos + kFarAhead]];
        PrefetchInserted(ahead, by_partition ? partition_key : FieldText(ahead, spec_.key_field, scratch),
                         &ahead_groups_[(pos + kFarAhead) % kRing]);
      }
      if (pos + kMidAhead < count) {
        const InputRecord& mid = batch.records[batch.selection[pos + kMidAhead]];
        PrefetchMid(by_partition ? partition_key : FieldText(mid, spec_.key_field, scratch),
                    ahead_groups_[(pos + kMidAhead) % kRing]);
      }
      if (pos + kNearAhead < count) {
        const InputRecord& near = batch.records[batch.selection[pos + kNearAhead]];
        PrefetchEvicted(near, by_partition ? partition_key : FieldText(near, spec_.key_field, scratch),
                        ahead_groups_[(pos + kNearAhead) % kRing]);
      }
      const uint32_t idx = batch.selection[pos];
      const InputRecord& rec = batch.records[idx];
      const int64_t t = rec.event_time_ms;
      if (rec.watermark_ms != kNoTime && t < rec.watermark_ms) {
        ctx.out->EmitLate(batch.partition, rec);
        ++ctx.counters->late;
        continue;
      }
      // A feature over an optional field the record lacks would count it
      // as 0: a dead letter instead (as in the tumbling and sliding windows).
      if (const FeatureSpec* missing = MissingFeatureInput(rec)) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField, MissingFeatureMessage(*missing));
        ++ctx.counters->dlq;
        continue;
      }
      if (!by_partition && DeclaredAbsent(rec, spec_.key_field)) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kMissingField,
                         AbsentKeyMessage("rolling window", spec_.key_field));
        ++ctx.counters->dlq;
        continue;
      }
      const std::string_view key = by_partition ? partition_key : FieldText(rec, spec_.key_field, scratch);
      // Found ahead in this batch: still there (only OnBatchEnd erases groups).
      Group* found = ahead_groups_[pos % kRing];
      Group& g = found != nullptr ? *found : FindOrAddGroup(key);
      if (rec.watermark_ms != kNoTime) Evict(g, key, rec.watermark_ms);
      Insert(g, key, rec);
      EmitRow(g, key, rec, batch.partition, ctx);
      batch.selection[kept++] = idx;
    }
    batch.selection.resize(kept);
  }

  void OnBatchEnd(TaskContext& ctx) override {
    EnsureIndex();
    const int64_t wm = ctx.watermark_ms();
    if (wm == kNoTime) return;
    // Sweep when the watermark moved by size / 16 (wm may be kEndOfInputTime).
    const auto step = static_cast<uint64_t>(std::max<int64_t>(1, spec_.size_ms / 16));
    if (last_sweep_ != kNoTime && static_cast<uint64_t>(wm) - static_cast<uint64_t>(last_sweep_) < step) return;
    last_sweep_ = wm;
    for (auto it = groups_.begin(); it != groups_.end();) {
      Group& g = *it->second;
      Evict(g, it->first, wm);
      if (g.events.empty()) {
        groups_.erase(it++);
        continue;
      }
      ++it;
    }
  }

 private:
  // A count_distinct value of the task and the number of live events holding it.
  using ValueEntry = std::pair<const std::string, int64_t>;
  struct Event {
    int64_t time;
    int64_t offset;
    int64_t c[N];  // the cells, as in the state entry (a copy: one cache miss less per eviction)
    // count_distinct values, per distinct feature: its entry of values_ (node
    // map: stable; the pointer names the value in Group::distinct).
    ValueEntry* d[N];
    uint32_t in_table;  // bit s: distinct feature s's value is in the distinct table
    uint32_t slot;      // its slot in its block
    uint64_t seq;       // its block's sequence number
    Block<N>* block;    // its block's value (stable until erased): for prefetching
  };
  // The events of a group that are a min / max feature's extreme of some
  // suffix of the group's events: each one's value is strictly better than
  // every later event's, so the first candidate at or after an event is the
  // extreme of the events from it on. In (time, offset) order, [head, end).
  struct Candidate {
    int64_t time;
    int64_t offset;
    int64_t value;  // ordered value
  };
  struct Candidates {
    std::vector<Candidate> v;
    size_t head = 0;
  };
  struct Group {
    // Blocks: the next sequence number; block next_seq - 1 takes the next
    // event iff last_used < kBlockEvents (else a new block is started).
    uint64_t next_seq = 0;
    uint32_t last_used = kBlockEvents;
    Block<N>* last = nullptr;  // block next_seq - 1's value while it takes events (stable until erased)
    std::deque<Event> events;  // (time, offset) order
    int64_t sums[kMaxFeatures] = {};
    // Per min / max feature: its candidates (doubles by OrderKey).
    Candidates extreme[kMaxFeatures];
    // Per distinct feature: value -> events of the group holding it (> 0;
    // erased at 0: keeping them for a sweep measured slower). Keyed by the
    // task's entry of the value: the first few inline, then a flat map of
    // pointers, no node per value.
    SmallCounts<const ValueEntry*> distinct[N];
  };

  static constexpr size_t kFarAhead = 8, kMidAhead = 6, kNearAhead = 4, kRing = 16;
  // Prefetches a block's state entry: its value and the table slot's header
  // before it (hash, key: what an Upsert compares).
  static void PrefetchBlock(const Block<N>* b, size_t at = 0) {
    __builtin_prefetch(reinterpret_cast<const char*>(b) - 40);
    __builtin_prefetch(reinterpret_cast<const char*>(b) + at);
  }

  void PrefetchInserted(const InputRecord& rec, std::string_view key, Group** group) {
    auto it = groups_.find(key);
    *group = it == groups_.end() ? nullptr : it->second.get();
    if (*group) {
      Group* g = *group;
      __builtin_prefetch(g);  // the block fields and events
      __builtin_prefetch(g->sums);
      for (size_t i : ordered_features_) __builtin_prefetch(&g->extreme[i]);
      for (size_t s = 0; s < distinct_features_.size(); ++s) {
        __builtin_prefetch(&g->distinct[s]);
        __builtin_prefetch(reinterpret_cast<const char*>(&g->distinct[s]) + 64);
      }
    }
    if (*group == nullptr) {
      BlockKey(&key_scratch_, key, 0);  // a new key's first block
      events_->Prefetch(key_scratch_);
    }
    char scratch[kFieldTextScratchBytes];
    for (size_t s = 0; s < distinct_features_.size(); ++s) {
      int64_t number;
      const size_t i = distinct_features_[s];
      const std::string_view value = DistinctValue(rec, spec_.features[i], scratch, &number);
      if (value.size() <= kInlineValueBytes) continue;
      DistinctKey(&distinct_key_, rec.offset, i, value);
      distinct_->Prefetch(distinct_key_);
    }
  }
  // With the group arrived: its oldest events (the usual ones to evict) and
  // the block the record will append to.
  void PrefetchMid(std::string_view key, const Group* g) {
    if (g == nullptr) return;
    if (!g->events.empty()) {
      const char* front = reinterpret_cast<const char*>(&g->events.front());
      __builtin_prefetch(front);
      __builtin_prefetch(front + sizeof(Event));  // the loop's next check (maybe past the deque's chunk: harmless)
    }
    const bool new_block = g->last_used >= kBlockEvents;
    BlockKey(&key_scratch_, key, new_block ? g->next_seq : g->next_seq - 1);
    events_->Prefetch(key_scratch_);
    if (!new_block) PrefetchBlock(g->last, offsetof(Block<N>, ev) + g->last_used * sizeof(StoredEvent<N>));
  }
  // The entries the record's eviction will erase (the usual one: its group's oldest).
  void PrefetchEvicted(const InputRecord& rec, std::string_view key, Group* g) {
    if (g == nullptr || g->events.empty()) return;
    __builtin_prefetch(&g->events.back());
    for (size_t i : ordered_features_) {
      const Candidates& c = g->extreme[i];
      if (!c.v.empty()) __builtin_prefetch(&c.v.back());
    }
    char scratch[kFieldTextScratchBytes];
    for (size_t s = 0; s < distinct_features_.size(); ++s) {
      int64_t number;
      const auto v = values_[s].find(DistinctValue(rec, spec_.features[distinct_features_[s]], scratch, &number));
      if (v != values_[s].end()) g->distinct[s].Prefetch(&*v);
    }
    if (rec.watermark_ms == kNoTime) return;
    const Event& e = g->events.front();
    if (!AtOrBefore(e.time, rec.watermark_ms, spec_.size_ms)) return;
    BlockKey(&evict_key_, key, e.seq);
    events_->Prefetch(evict_key_);
    PrefetchBlock(e.block);
    for (size_t i : ordered_features_) {
      const Candidates& c = g->extreme[i];
      if (c.head < c.v.size()) __builtin_prefetch(&c.v[c.head]);
    }
    for (size_t s = 0; s < distinct_features_.size(); ++s) g->distinct[s].Prefetch(e.d[s]);
    for (size_t s = 0; s < distinct_features_.size(); ++s) {
      if (!(e.in_table >> s & 1)) continue;
      DistinctKey(&distinct_key_, e.offset, distinct_features_[s], e.d[s]->first);
      distinct_->Prefetch(distinct_key_);
    }
  }

  Group& FindOrAddGroup(std::string_view key) {
    auto it = groups_.find(key);
    if (it != groups_.end()) return *it->second;
    return *groups_.emplace(std::string(key), std::make_unique<Group>()).first->second;
  }

  void BlockKey(std::string* out, std::string_view group, uint64_t seq) const {
    out->resize(group.size() + kSeqBytes);
    // (An absent field's view has a null data(): prefetches look ahead of
    // the records the dead-letter checks drop, and memcpy wants non-null.)
    if (!group.empty()) std::memcpy(out->data(), group.data(), group.size());
    PutBE(out->data() + group.size(), static_cast<int64_t>(seq));
  }
  // Offsets are unique within a task, so the offset names the event; short
  // keys stay inline in the table's slots.
  void DistinctKey(std::string* out, int64_t offset, size_t feature, std::string_view value) const {
    out->resize(8 + 1 + value.size());
    char* p = out->data();
    PutBE(p, offset);
    p[8] = static_cast<char>(feature);
    if (!value.empty()) std::memcpy(p + 9, value.data(), value.size());
  }

  // The first feature whose declared input field the record lacks, if any.
  const FeatureSpec* MissingFeatureInput(const InputRecord& rec) const {
    for (const FeatureSpec& f : spec_.features) {
      if (f.kind != FeatureKind::kCount && IsDeclaredField(f.field) && !DeclaredSlot(rec, f.field).present) return &f;
    }
    return nullptr;
  }

  // The record's count_distinct value of feature f, as the window keys it.
  std::string_view DistinctValue(const InputRecord& rec, const FeatureSpec& f, char* scratch, int64_t* number) {
    if (IsDeclaredField(f.field) && DeclaredTypeOf(f.field) == ValueType::kString) {
      return FieldText(rec, f.field, scratch);
    }
    if (IsNumericField(f.field) || FeatureInputIsDouble(f)) {
      if (FeatureInputIsDouble(f)) {
        const double d = DeclaredSlot(rec, f.field).d;
        *number = CanonicalDoubleBits(d);
      } else {
        *number = NumericField(rec, f.field);
      }
      return std::string_view(reinterpret_cast<const char*>(number), 8);
    }
    return FieldText(rec, f.field, scratch);
  }

  // Counts one more event of g holding value as distinct feature s's.
  ValueEntry* AddDistinct(Group& g, size_t s, std::string_view value) {
    ValueEntry* v = &*values_[s].try_emplace(value, 0).first;
    ++v->second;
    g.distinct[s].Add(v);
    return v;
  }

  int64_t OrderedValue(size_t i, int64_t cell) const { return dbl_[i] ? OrderKey(cell) : cell; }

  // Adds an event (already in g.events) to the totals.
  void AddTotals(Group& g, const Event& e) {
    for (size_t i : int_sum_features_) g.sums[i] = WrappingAdd(g.sums[i], e.c[cell_[i]]);
    for (size_t i : ordered_features_) AddCandidate(g.extreme[i], e, OrderedValue(i, e.c[cell_[i]]), largest_[i]);
  }
  static bool Better(int64_t a, int64_t b, bool largest) { return largest ? a > b : a < b; }
  // Keeps the candidates canonical when e joins the group (after every event
  // with time <= e.time): usually at the end, O(1) amortised.
  static void AddCandidate(Candidates& c, const Event& e, int64_t value, bool largest) {
    auto& v = c.v;
    size_t pos = v.size();
    while (pos > c.head && v[pos - 1].time > e.time) --pos;
    if (pos < v.size() && !Better(value, v[pos].value, largest)) return;  // a later event is as good
    size_t from = pos;
    while (from > c.head && !Better(v[from - 1].value, value, largest)) --from;
    const Candidate cand{e.time, e.offset, value};
    if (from == pos) {
      if (pos == v.size()) {
        v.push_back(cand);
      } else {
        v.insert(v.begin() + static_cast<ptrdiff_t>(pos), cand);
      }
      return;
    }
    v[from] = cand;  // replaces the candidates [from, pos) it beats
    v.erase(v.begin() + static_cast<ptrdiff_t>(from) + 1, v.begin() + static_cast<ptrdiff_t>(pos));
  }
  // e, the group's oldest event, leaves.
  static void DropCandidate(Candidates& c, const Event& e) {
    if (c.head < c.v.size() && c.v[c.head].offset == e.offset) {
      if (++c.head == c.v.size()) {
        c.v.clear();
        c.head = 0;
      } else if (c.head >= 32 && c.head * 2 >= c.v.size()) {
        c.v.erase(c.v.begin(), c.v.begin() + static_cast<ptrdiff_t>(c.head));
        c.head = 0;
      }
    }
  }

  void Insert(Group& g, std::string_view key, const InputRecord& rec) {
    const int64_t t = rec.event_time_ms;
    Cells<N> cells{};
    for (size_t j = 0; j < cell_field_.size(); ++j) {
      const Field f = cell_field_[j];
      cells.c[j] = IsDeclaredField(f) && DeclaredTypeOf(f) == ValueType::kDouble ? DoubleBits(DeclaredSlot(rec, f).d)
                                                                                 : NumericField(rec, f);
    }
    Event e;
    e.time = t;
    e.offset = rec.offset;
    e.in_table = 0;
    std::memcpy(e.c, cells.c, sizeof(e.c));
    char scratch[kFieldTextScratchBytes];
    for (size_t s = 0; s < distinct_features_.size(); ++s) {
      const size_t i = distinct_features_[s];
      int64_t number;
      const std::string_view value = DistinctValue(rec, spec_.features[i], scratch, &number);
      e.d[s] = AddDistinct(g, s, value);
      if (value.size() <= kInlineValueBytes) {
        if (!value.empty()) std::memcpy(cells.dv[s], value.data(), value.size());
        cells.dlen[s] = static_cast<uint8_t>(value.size());
      } else {
        cells.dlen[s] = kInTable;
        e.in_table |= uint32_t{1} << s;
        DistinctKey(&distinct_key_, rec.offset, i, value);
        distinct_->Upsert(distinct_key_, uint8_t{1});
      }
    }
    // Appended to the key's last block, or to a new one when that is full.
    if (g.last_used >= kBlockEvents) {
      g.last_used = 0;
      ++g.next_seq;
    }
    BlockKey(&key_scratch_, key, g.next_seq - 1);
    Block<N>& b = events_->Upsert(key_scratch_, empty_block_);
    e.seq = g.next_seq - 1;
    e.slot = b.used;
    e.block = &b;
    StoredEvent<N>& stored = b.ev[b.used];
    stored.time = t;
    stored.offset = rec.offset;
    stored.cells = cells;
    b.live |= uint32_t{1} << b.used;
    g.last_used = ++b.used;
    g.last = &b;
    AddTotals(g, e);
    // Offsets only grow: the record goes after every event with time <= t.
    auto pos = g.events.end();
    while (pos != g.events.begin() && std::prev(pos)->time > t) --pos;
    g.events.insert(pos, e);
  }

  // Drops the events of g with time <= watermark - size, from memory and state.
  void Evict(Group& g, std::string_view key, int64_t watermark) {
    while (!g.events.empty() && AtOrBefore(g.events.front().time, watermark, spec_.size_ms)) {
      const Event& e = g.events.front();
      for (size_t i : int_sum_features_) g.sums[i] = WrappingSub(g.sums[i], e.c[cell_[i]]);
      for (size_t i : ordered_features_) DropCandidate(g.extreme[i], e);
      for (size_t s = 0; s < distinct_features_.size(); ++s) {
        if (e.in_table >> s & 1) {
          DistinctKey(&distinct_key_, e.offset, distinct_features_[s], e.d[s]->first);
          distinct_->Erase(distinct_key_);
        }
        g.distinct[s].Remove(e.d[s]);
        if (--e.d[s]->second == 0) values_[s].erase(e.d[s]->first);
      }
      // Its slot is marked evicted; a block goes when none of its events is live.
      BlockKey(&key_scratch_, key, e.seq);
      Block<N>& b = events_->Upsert(key_scratch_, empty_block_);
      b.live &= ~(uint32_t{1} << e.slot);
      if (b.live == 0) {
        if (e.seq == g.next_seq - 1) {
          g.last_used = kBlockEvents;
          g.last = nullptr;
        }
        events_->Erase(key_scratch_);
      }
      g.events.pop_front();
    }
  }

  void EmitRow(Group& g, std::string_view key, const InputRecord& rec, int32_t partition, TaskContext& ctx) {
    const int64_t t = rec.event_time_ms;
    const size_t n = g.events.size();
    size_t i1 = n;  // range [i0, i1)
    while (i1 > 0 && g.events[i1 - 1].time > t) --i1;
    size_t i0 = 0;
    while (i0 < i1 && AtOrBefore(g.events[i0].time, t, spec_.size_ms)) ++i0;
    const int64_t count = static_cast<int64_t>(i1 - i0);
    const bool slivers = i0 > 0 || i1 < n;
    RowEncoder& row = rows_;
    row.Begin();
    row.Str(key);
    row.Int(t);
    for (size_t i = 0; i < spec_.features.size(); ++i) {
      const FeatureSpec& f = spec_.features[i];
      const bool dbl = dbl_[i];
      switch (f.kind) {
        case FeatureKind::kCount:
          row.Int(count);
          break;
        case FeatureKind::kSum:
        case FeatureKind::kAvg: {
          if (dbl) {
            double sum = 0;
            for (size_t k = i0; k < i1; ++k) sum += BitsDouble(g.events[k].c[cell_[i]]);
            row.Double(f.kind == FeatureKind::kSum ? sum : sum / static_cast<double>(count));
          } else {
            int64_t sum = g.sums[i];
            if (slivers) {
              for (size_t k = 0; k < i0; ++k) sum = WrappingSub(sum, g.events[k].c[cell_[i]]);
              for (size_t k = i1; k < n; ++k) sum = WrappingSub(sum, g.events[k].c[cell_[i]]);
            }
            if (f.kind == FeatureKind::kSum) {
              row.Int(sum);
            } else {
              row.Double(static_cast<double>(sum) / static_cast<double>(count));
            }
          }
          break;
        }
        case FeatureKind::kMin:
        case FeatureKind::kMax: {
          const int64_t v = Extreme(g, i, i0, i1, t, f.kind == FeatureKind::kMax);
          if (dbl) {
            row.Double(BitsDouble(FromOrderKey(v)));
          } else {
            row.Int(v);
          }
          break;
        }
        case FeatureKind::kFirst:
        case FeatureKind::kLast: {
          const int64_t c = g.events[f.kind == FeatureKind::kFirst ? i0 : i1 - 1].c[cell_[i]];
          if (dbl) {
            row.Double(BitsDouble(c));
          } else {
            row.Int(c);
          }
          break;
        }
        case FeatureKind::kCountDistinct: {
          const size_t s = static_cast<size_t>(distinct_slot_[i]);
          auto distinct = static_cast<int64_t>(g.distinct[s].size());
          if (slivers) {
            sliver_values_.clear();
            for (size_t k = 0; k < i0; ++k) sliver_values_.push_back(g.events[k].d[s]);
            for (size_t k = i1; k < n; ++k) sliver_values_.push_back(g.events[k].d[s]);
            std::sort(sliver_values_.begin(), sliver_values_.end());
            for (size_t a = 0; a < sliver_values_.size();) {
              size_t b = a + 1;
              while (b < sliver_values_.size() && sliver_values_[b] == sliver_values_[a]) ++b;
              if (g.distinct[s].Count(sliver_values_[a]) == static_cast<int64_t>(b - a)) --distinct;
              a = b;
            }
          }
          row.Int(distinct);
          break;
        }
      }
    }
    const auto bytes = row.Finish();
    char offset_text[kFieldTextScratchBytes];
    char partition_text[kFieldTextScratchBytes];
    const auto po = std::to_chars(offset_text, offset_text + sizeof(offset_text), rec.offset);
    const auto pp = std::to_chars(partition_text, partition_text + sizeof(partition_text), partition);
    out_key_.assign(key).append(1, '|').append(partition_text, pp.ptr).append(1, '|').append(offset_text, po.ptr);
    ctx.out->Emit(out_key_, bytes.data(), bytes.size(), OutputLineage{partition, rec.offset, rec.offset, rec.origin_partition});
    ++ctx.counters->out;
    ++ctx.counters->outputs;
  }

  // The smallest (largest) ordered value of feature i over events [i0, i1)
  // of g, t being the record's time: with no event after the range (the
  // record arrived in order) the first candidate in the range, else a scan.
  int64_t Extreme(const Group& g, size_t i, size_t i0, size_t i1, int64_t t, bool largest) {
    if (i1 == g.events.size()) {
      const Candidates& c = g.extreme[i];
      size_t k = c.head;
      while (AtOrBefore(c.v[k].time, t, spec_.size_ms)) ++k;  // the range's last event is a candidate
      return c.v[k].value;
    }
    int64_t best = OrderedValue(i, g.events[i0].c[cell_[i]]);
    for (size_t k = i0 + 1; k < i1; ++k) {
      const int64_t v = OrderedValue(i, g.events[k].c[cell_[i]]);
      if (Better(v, best, largest)) best = v;
    }
    return best;
  }

  // A fresh operator, possibly over restored state: rebuild the groups.
  void EnsureIndex() {
    if (index_known_) return;
    index_known_ = true;
    groups_.clear();
    for (auto& values : values_) values.clear();
    // Blocks hold each key's live events unordered (arrival order, out-of-order
    // records included): sorted below.
    events_->ForEach([&](std::string_view k, const Block<N>& b) {
      const std::string_view group = k.substr(0, k.size() - kSeqBytes);
      Group& g = FindOrAddGroup(group);
      const auto seq = static_cast<uint64_t>(GetBE(k.data() + group.size()));
      if (seq + 1 > g.next_seq) {
        g.next_seq = seq + 1;
        g.last_used = b.used;
        g.last = const_cast<Block<N>*>(&b);
      }
      for (uint32_t slot = 0; slot < b.used; ++slot) {
        if (!(b.live >> slot & 1)) continue;
        const StoredEvent<N>& v = b.ev[slot];
        Event e{};
        e.time = v.time;
        e.offset = v.offset;
        e.seq = seq;
        e.slot = slot;
        e.block = const_cast<Block<N>*>(&b);
        std::memcpy(e.c, v.cells.c, sizeof(e.c));
        for (size_t s = 0; s < distinct_features_.size(); ++s) {
          if (v.cells.dlen[s] == kInTable) {
            e.in_table |= uint32_t{1} << s;  // e.d[s] is set from the distinct table below
            continue;
          }
          e.d[s] = AddDistinct(g, s, std::string_view(v.cells.dv[s], v.cells.dlen[s]));
        }
        g.events.push_back(e);
      }
    });
    auto before = [](const Event& a, const Event& b) {
      return a.time != b.time ? a.time < b.time : a.offset < b.offset;
    };
    for (auto& [key, g] : groups_) std::sort(g->events.begin(), g->events.end(), before);
    if (distinct_) {
      absl::flat_hash_map<int64_t, std::pair<Group*, Event*>> by_offset;
      for (auto& [key, g] : groups_) {
        for (Event& e : g->events) by_offset[e.offset] = {g.get(), &e};
      }
      distinct_->ForEach([&](std::string_view k, const uint8_t&) {
        const auto it = by_offset.find(GetBE(k.data()));
        if (it == by_offset.end()) return;  // never written without its event
        const auto [g, e] = it->second;
        const size_t s = static_cast<size_t>(distinct_slot_[static_cast<uint8_t>(k[8])]);
        e->d[s] = AddDistinct(*g, s, k.substr(9));
      });
    }
    for (auto& [key, g] : groups_) {
      for (const Event& e : g->events) AddTotals(*g, e);
    }
  }

  WindowSpec spec_;
  RowEncoder rows_;
  KeyedState<Block<N>>* events_ = nullptr;
  const Block<N> empty_block_{};
  KeyedState<uint8_t>* distinct_ = nullptr;
  int cell_[kMaxFeatures] = {};           // feature -> its input's cell (-1: none)
  int distinct_slot_[kMaxFeatures] = {};  // feature -> its count_distinct slot (-1: none)
  bool dbl_[kMaxFeatures] = {};
  bool largest_[kMaxFeatures] = {};  // max (not min) feature
  std::vector<Field> cell_field_;  // cell -> field
  std::vector<size_t> distinct_features_, ordered_features_, int_sum_features_;
  StringMap<std::unique_ptr<Group>> groups_;
  bool index_known_ = false;
  int64_t last_sweep_ = kNoTime;
  std::string key_scratch_, distinct_key_, out_key_, evict_key_;
  Group* ahead_groups_[kRing] = {};  // the group of the record at position p % kRing in this batch (or nullptr)
  std::vector<const ValueEntry*> sliver_values_;
  StringNodeMap<int64_t> values_[N];  // per distinct feature: the live events' values
};

}  // namespace

std::unique_ptr<Operator> MakeRollingWindow(const WindowSpec& spec, const std::string& state_name,
                                            StateRegistry& registry) {
  size_t cells = 0, distinct = 0;
  std::vector<Field> fields;
  for (const FeatureSpec& f : spec.features) {
    if (f.kind == FeatureKind::kCountDistinct) {
      ++distinct;
    } else if (f.kind != FeatureKind::kCount && std::find(fields.begin(), fields.end(), f.field) == fields.end()) {
      fields.push_back(f.field);
      ++cells;
    }
  }
  if (std::max(cells, distinct) <= 4) return std::make_unique<RollingWindow<4>>(spec, state_name, registry);
  return std::make_unique<RollingWindow<kMaxFeatures>>(spec, state_name, registry);
}

}  // namespace kappa
