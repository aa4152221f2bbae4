// WindowAggregate: keyed event-time windows (tumbling or sliding, aligned to
// the epoch) with count, sum, min, max and avg of the record value. A window
// [start, end) is emitted once, when the task watermark reaches end, as a
// FlatBuffers WindowAggregate keyed "<key>|<end>", in (end, key) order. A
// record whose windows have all been emitted goes to the late output. State:
// one accumulator per open (key, window) in a KeyedState, so windows survive
// restarts; the firing index is rebuilt from it lazily.
#pragma once

#include <memory>
#include <string>
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
    int64_t sum;
    int64_t min;
    int64_t max;
    int64_t first_offset;
    int64_t last_offset;
  };
  WindowAggregate(const WindowSpec& spec, const std::string& state_name, StateRegistry& registry);
  ~WindowAggregate() override;
  std::string_view name() const override { return "window"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  void OnBatchEnd(TaskContext& ctx) override;

 private:
  bool Wants(Aggregate a) const;
  void Fire(TaskContext& ctx, int64_t watermark);

  WindowSpec spec_;
  KeyedState<Accumulator>* windows_;
  // Smallest end of any open window; kNoTime when unknown (after a restore).
  int64_t min_open_end_ = kNoTime;
  bool index_known_ = false;
  std::string key_scratch_;
  std::string out_key_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;
  struct Ready {
    int64_t end;
    std::string key;
    Accumulator acc;
  };
  std::vector<Ready> ready_;
};

}  // namespace kappa
