// Emit: the end of a stateless chain. Writes each surviving record's original
// bytes (no copy) to the sink in offset order, keyed by a field (txn_id by
// default, numbers in decimal; `offset` keys "<partition>|<offset>", unique
// per input record; `partition` keys the partition number), with its own offset as lineage. With a `row` it writes a
// FlatBuffers kappa.schema.Row of those numeric fields instead (`value` is the
// number the last map set): the row's layout is fixed per spec, so it is a
// template whose values are patched in place, no builder per record. Counts
// `out` and `outputs` once per record. Stateless; one task, one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

// Emits each surviving record to the sink unchanged, keyed by `key_field`
// (a stateless job); the end of a chain that has no window. With `row`
// (numeric fields, `value` being the mapped number) it writes a FlatBuffers
// kappa.schema.Row (schemas/row.fbs) of those fields instead of the record.
struct EmitSpec {
  Field key_field = Field::kTxnId;
  std::vector<Field> row{};
};

class Emit final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = EmitSpec;
  static constexpr std::string_view kKind = "emit";
  static constexpr bool kTerminal = true;
  // The spec from its section of the job spec (`emit: ...`); Validate is
  // applied after.
  static Result<EmitSpec> Parse(const ConfigNode& body);
  static void AppendCanonical(const EmitSpec& spec, std::string& out);
  static void AppendFields(const EmitSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const EmitSpec& spec, const std::string& state_name, std::vector<std::string>& out);
  // `spec` must have passed Validate.
  static std::unique_ptr<Operator> Create(const EmitSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);
  // InvalidArgument if a row field is not numeric.
  static Status Validate(const EmitSpec& spec);
  explicit Emit(const EmitSpec& spec);
  std::string_view name() const override { return kKind; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  EmitSpec spec_;
  std::vector<uint8_t> row_;  // a finished Row buffer with every value 0
  size_t values_at_ = 0;      // where its values start in row_
};

}  // namespace kappa
