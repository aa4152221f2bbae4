// WindowAggregate: keyed event-time windows, tumbling or sliding, aligned to
// the epoch ([s, s + size) with s a multiple of the slide), with count, sum,
// min, max and avg of the record value. A window is emitted exactly once, at
// the first OnBatchEnd whose watermark reaches its end, as a FlatBuffers
// kappa.schema.WindowAggregate keyed "<key>|<window_end_ms>", in (end, key)
// order, then erased from state. A record only joins its windows whose end is
// still above the record's own watermark; a record whose windows are all
// closed goes to EmitLate. Counts `out` (aggregated), `late`, `outputs`.
//
// State: one trivially copyable Accumulator per open (key, window) in a
// KeyedState keyed "<key>|<window start, 8 bytes big-endian>", so windows
// survive restores. The firing index (smallest open window end) lives only
// in memory and is rebuilt from the table on the first Process/OnBatchEnd,
// so state must be loaded before then. One task, one thread.
//
// Options: `top: N` emits, of the windows ending at the same time, only those
// whose count ranks in the top N (ties included), in key order; the others
// are erased unemitted. `argmax: [fields]` keeps those numeric fields of the
// first record holding the window's max value (an ArgmaxAccumulator per
// window instead of an Accumulator) and writes them to the output's argmax.
//
// Named features (`features: {n: count, spend: sum(amount)}`,
// operators/features.h) replace `aggregates`: a FeatureAccumulator per
// window holds one cell per feature, count_distinct keeps its values in a
// second table "<state_name>_distinct" keyed by (window start, feature,
// group, value), and each window becomes one row of columns key,
// window_start, window_end and the features, written as JSON, Avro or
// FlatBuffers (WindowSpec::row_format, from the sink) under the same key.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "operators/features.h"
#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

// Keyed event-time window. Tumbling: slide_ms == size_ms. Windows are aligned
// to the epoch: [k*slide, k*slide + size).
struct WindowSpec {
  // kRolling: one row per record over (t - size, t] (operators/rolling_window.h).
  enum class Kind { kTumbling, kSliding, kRolling };
  Kind kind = Kind::kTumbling;
  int64_t size_ms = 0;
  int64_t slide_ms = 0;
  Field key_field = Field::kUserId;  // `partition`: one group per task (e.g. the max bid of each window)
  std::vector<Aggregate> aggregates;  // which fields of the output are filled
  // > 0: of the windows ending at the same time, emit only those whose count
  // ranks in the top `top` (ties at the boundary all included, so `top: 1`
  // is every key with the highest count), in key order. Per task: kappa has
  // no shuffle, so this is the top of one input partition; a consumer takes
  // the best of the partitions' rows (exact when the window key is the
  // partitioning key, as for Nexmark bids by auction).
  int64_t top = 0;
  // Numeric fields of the record holding the window's max value, written
  // to the output's `argmax` (e.g. [auction, bidder] for the highest bid);
  // among records with that value, the smallest such fields in order (not
  // the first to arrive: order-free, so a repartitioned window gives the
  // same answer). At most kMaxArgmaxFields.
  std::vector<Field> argmax;
  // Named features instead of `aggregates` (not with top or argmax).
  std::vector<FeatureSpec> features;
  // How feature rows are written: set from the job's sink (`sink.format`).
  RowFormat row_format = RowFormat::kJson;
  // Avro rows: the id the Schema Registry gave AvroRowSchema(RowColumns()).
  // Set by the runtime when the job starts; not part of the spec's logic.
  int32_t avro_schema_id = 0;

  // The columns of a feature row (features only).
  std::vector<RowColumn> RowColumns() const;
};

class WindowAggregate final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = WindowSpec;
  static constexpr std::string_view kKind = "window";
  static constexpr bool kTerminal = true;
  // The spec from its section of the job spec (`window: ...`); Validate is
  // applied after.
  static Result<WindowSpec> Parse(const ConfigNode& body);
  static void AppendCanonical(const WindowSpec& spec, std::string& out);
  static void AppendFields(const WindowSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const WindowSpec& spec, const std::string& state_name, std::vector<std::string>& out);
  // `spec` must have passed Validate.
  static std::unique_ptr<Operator> Create(const WindowSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);
  struct Accumulator {
    int64_t window_start;
    int64_t count;
    int64_t sum;  // wraps on overflow rather than being undefined
    int64_t min;
    int64_t max;
    int64_t first_offset;
    int64_t last_offset;
  };
  // Only with `features`: the record with the smallest / largest (event
  // time, offset) sets the `first` / `last` features; one cell per feature
  // (int64, or a double's bits).
  struct FeatureAccumulator {
    Accumulator acc;
    int64_t first_time;
    int64_t last_time;
    int64_t cells[kMaxFeatures];
  };
  // Only with `argmax`: the fields of the record that set `acc.max`.
  struct ArgmaxAccumulator {
    Accumulator acc;
    int64_t arg[kMaxArgmaxFields];
  };
  // At most this many windows per record (size / slide), so one record never
  // costs unbounded work.
  static constexpr int64_t kMaxWindowsPerRecord = 1000;
  // InvalidArgument unless size > 0 and, for sliding windows, 0 < slide <=
  // size with size / slide <= kMaxWindowsPerRecord (tumbling ignores
  // slide_ms), top >= 0, and argmax holds at most kMaxArgmaxFields numeric fields.
  static Status Validate(const WindowSpec& spec);
  // `spec` must have passed Validate. Registers the table `state_name`.
  WindowAggregate(const WindowSpec& spec, const std::string& state_name, StateRegistry& registry);
  ~WindowAggregate() override;
  std::string_view name() const override { return kKind; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // Emits and erases every window with end <= ctx.watermark_ms(). Scans the
  // table only when the watermark has passed the smallest open window end.
  void OnBatchEnd(TaskContext& ctx) override;

  // The output fields the spec asked for; count is always filled, unrequested
  // sum/min/max/avg are 0.
  bool Wants(Aggregate a) const;

 private:
  template <typename A>
  void EnsureIndex(KeyedState<A>* table);
  template <typename A>
  void ProcessWith(KeyedState<A>* table, RecordBatch& batch, TaskContext& ctx);
  template <typename A>
  void Fire(KeyedState<A>* table, TaskContext& ctx, int64_t watermark);
  // Emits the ready rows [begin, end) of one window end (all, or the top).
  template <typename A>
  void EmitRows(KeyedState<A>* table, TaskContext& ctx, size_t begin, size_t end);
  // Features: one record's contribution to one window.
  void UpdateFeatures(FeatureAccumulator& v, const InputRecord& rec, bool inserted, std::string_view group,
                      const int64_t* in);
  void InitFeatures(FeatureAccumulator& v) const;
  void EmitFeatureRow(const FeatureAccumulator& v, std::string_view group, int64_t end, TaskContext& ctx);
  // out_key_ = "<group>|<window end>", the key of every window's output.
  void SetOutputKey(std::string_view group, int64_t end);

  WindowSpec spec_;
  int64_t slide_ms_;  // size for tumbling windows
  // sum, min, max, avg or argmax asked for: a record whose value is absent
  // (InputRecord::value_absent) is a dead letter, not a 0.
  bool needs_value_ = false;
  bool argmax_declared_ = false;  // some argmax field is declared (and may be absent)
  // Exactly one is set: Accumulators, or ArgmaxAccumulators with `argmax`.
  KeyedState<Accumulator>* windows_ = nullptr;
  KeyedState<ArgmaxAccumulator>* argmax_windows_ = nullptr;
  KeyedState<FeatureAccumulator>* feature_windows_ = nullptr;
  KeyedState<uint8_t>* distinct_ = nullptr;  // count_distinct values (features)
  std::string distinct_key_;                 // reused per record and feature
  std::unique_ptr<RowEncoder> rows_;         // features only
  // Smallest end of any open window (kNoTime: none); valid once index_known_.
  int64_t min_open_end_ = kNoTime;
  bool index_known_ = false;
  std::string key_scratch_;  // composite state key, reused per record
  std::string ahead_scratch_;  // the same for the record whose lookup is prefetched
  std::string out_key_;      // output key, reused per output
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;
  struct Ready {
    int64_t end;
    std::string_view state_key;  // into the table; valid until that entry is erased
    Accumulator acc;
    int64_t arg[kMaxArgmaxFields];  // argmax only
    const void* value = nullptr;    // the state value (features); valid until erased
  };
  std::vector<Ready> ready_;
  std::vector<int64_t> top_counts_;  // reused by `top`
};

}  // namespace kappa
