// Map: sets the number later aggregates use, value = field * multiply /
// divide (integer arithmetic, so results are exact and deterministic).
#pragma once

#include "operators/operator.h"

namespace kappa {

class Map final : public Operator {
 public:
  explicit Map(const MapSpec& spec) : spec_(spec) {}
  std::string_view name() const override { return "map"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  MapSpec spec_;
};

}  // namespace kappa
