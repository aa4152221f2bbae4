// Filter: keeps the records for which every predicate holds; the others are
// counted as filtered. Stateless.
#pragma once

#include "operators/operator.h"

namespace kappa {

class Filter final : public Operator {
 public:
  explicit Filter(FilterSpec spec);
  std::string_view name() const override { return "filter"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // Whether one transaction passes (exposed for tests).
  bool Matches(const schema::Transaction* t) const;

 private:
  FilterSpec spec_;
};

}  // namespace kappa
