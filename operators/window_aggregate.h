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
  // At most this many windows per record (size / slide), so one record never
  // costs unbounded work.
  static constexpr int64_t kMaxWindowsPerRecord = 1000;
  // InvalidArgument unless size > 0 and, for sliding windows, 0 < slide <=
  // size with size / slide <= kMaxWindowsPerRecord. Tumbling ignores slide_ms.
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
  void EnsureIndex();
  void Fire(TaskContext& ctx, int64_t watermark);

  WindowSpec spec_;
  int64_t slide_ms_;  // size for tumbling windows
  KeyedState<Accumulator>* windows_;
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
  };
  std::vector<Ready> ready_;
};

}  // namespace kappa
