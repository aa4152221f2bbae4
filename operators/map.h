// Map: sets the number later aggregates use, value = field * multiply /
// divide, in integer arithmetic (128-bit intermediate, quotient truncated
// toward zero) so results are exact and deterministic. Stateless.
#pragma once

#include "operators/operator.h"

namespace kappa {

class Map final : public Operator {
 public:
  // InvalidArgument unless the field is numeric and divide != 0.
  static Status Validate(const MapSpec& spec);
  // `spec` must have passed Validate.
  explicit Map(const MapSpec& spec) : spec_(spec) {}
  std::string_view name() const override { return "map"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  MapSpec spec_;
};

}  // namespace kappa
