// Filter: keeps the records for which every predicate holds, in order; the
// others are counted as `filtered`. Numeric fields compare as integers,
// string fields and status (by name: approved, cancelled, refunded) compare
// as text, bytewise; the Nexmark type (person, auction, bid) compares by name
// too (== and != by its code). "field % m op n" compares the remainder.
// Stateless; one task, one thread.
#pragma once

#include <vector>

#include "operators/operator.h"

namespace kappa {

class Filter final : public Operator {
 public:
  // InvalidArgument for a predicate ParsePredicate would not have produced
  // (a status that is not approved, cancelled or refunded).
  static Status Validate(const FilterSpec& spec);
  explicit Filter(FilterSpec spec);
  std::string_view name() const override { return "filter"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // Whether one verified transaction passes every predicate.
  bool Matches(const schema::Transaction* t) const;
  // Whether one decoded record (any format) passes every predicate.
  bool Matches(const InputRecord& r) const;

 private:
  FilterSpec spec_;
  // Per predicate, decided once: how it compares (not per record).
  enum class How : uint8_t { kNumber, kTypeCode, kText };
  std::vector<How> how_;
};

}  // namespace kappa
