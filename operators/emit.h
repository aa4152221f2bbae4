// Emit: the end of a stateless chain. Writes each surviving record's original
// bytes (no copy) to the sink in offset order, keyed by a field (txn_id by
// default, numbers in decimal; `offset` keys "<partition>|<offset>", unique
// per input record; `partition` keys the partition number), with its own offset as lineage. With a `row` it writes a
// FlatBuffers kappa.schema.Row of those numeric fields instead (`value` is the
// number the last map set): the row's layout is fixed per spec, so it is a
// template whose values are patched in place, no builder per record. Counts
// `out` and `outputs` once per record. Stateless; one task, one thread.
#pragma once

#include <vector>

#include "operators/operator.h"

namespace kappa {

class Emit final : public Operator {
 public:
  // InvalidArgument if a row field is not numeric.
  static Status Validate(const EmitSpec& spec);
  explicit Emit(const EmitSpec& spec);
  std::string_view name() const override { return "emit"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  EmitSpec spec_;
  std::vector<uint8_t> row_;  // a finished Row buffer with every value 0
  size_t values_at_ = 0;      // where its values start in row_
};

}  // namespace kappa
