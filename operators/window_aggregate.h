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
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "operators/operator.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

class WindowAggregate final : public Operator {
 public:
  struct Accumulator {
    int64_t window_start;
    int64_t count;
    int64_t sum;  // wraps on overflow rather than being undefined
    int64_t min;
    int64_t max;
    int64_t first_offset;
    int64_t last_offset;
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
  std::string_view name() const override { return "window"; }
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

  WindowSpec spec_;
  int64_t slide_ms_;  // size for tumbling windows
  // Exactly one is set: Accumulators, or ArgmaxAccumulators with `argmax`.
  KeyedState<Accumulator>* windows_ = nullptr;
  KeyedState<ArgmaxAccumulator>* argmax_windows_ = nullptr;
  // Smallest end of any open window (kNoTime: none); valid once index_known_.
  int64_t min_open_end_ = kNoTime;
  bool index_known_ = false;
  std::string key_scratch_;  // composite state key, reused per record
  std::string out_key_;      // output key, reused per output
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;
  struct Ready {
    int64_t end;
    std::string_view state_key;  // into the table; valid until that entry is erased
    Accumulator acc;
    int64_t arg[kMaxArgmaxFields];  // argmax only
  };
  std::vector<Ready> ready_;
  std::vector<int64_t> top_counts_;  // reused by `top`
};

}  // namespace kappa
