// Emit: the end of a stateless chain. Writes each surviving record's original
// bytes (no copy) to the sink in offset order, keyed by a field (txn_id by
// default, numbers in decimal), with its own offset as lineage. Counts `out`
// and `outputs` once per record. Stateless; one task, one thread.
#pragma once

#include "operators/operator.h"

namespace kappa {

class Emit final : public Operator {
 public:
  explicit Emit(const EmitSpec& spec) : spec_(spec) {}
  std::string_view name() const override { return "emit"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  EmitSpec spec_;
};

}  // namespace kappa
