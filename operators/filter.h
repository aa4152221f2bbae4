// Filter: keeps the records for which every predicate holds, in order; the
// others are counted as `filtered`. Numeric fields compare as integers,
// string fields and status (by name: approved, cancelled, refunded) compare
// as text, bytewise; the Nexmark type (person, auction, bid) compares by name
// too (== and != by its code). "field % m op n" compares the remainder.
// An entry may also be an expression (operators/expression.h) with and/or/
// not, parentheses, `in (...)` and arithmetic over any field, built-in or
// declared: "amount_cents > 100 and (currency in (EUR, USD) or not status ==
// cancelled)". Entries that are simple predicates keep the path (and the
// canonical text, so the spec hash) they had before expressions existed.
// Stateless; one task, one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "operators/expression.h"
#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

// Keeps records for which every predicate and every expression holds.
struct FilterSpec {
  std::vector<Predicate> all_of;
  // The entries that are expressions (not simple predicates), compiled with
  // expression slots 0..n-1 standing for expr_fields[0..n-1]: each distinct
  // field the expressions read, shared by all of them.
  std::vector<CompiledExpr> exprs = {};
  std::vector<Field> expr_fields = {};
};
// Adds one `filter` entry: a simple predicate ("status != cancelled") to
// all_of as before, anything else compiled as an expression (names resolve
// through ParseField, so declared fields work under a DeclaredFieldsScope).
Status AddFilterEntry(FilterSpec& spec, std::string_view text);

class Filter final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = FilterSpec;
  static constexpr std::string_view kKind = "filter";
  static constexpr bool kTerminal = false;
  // The spec from its section of the job spec (`filter: ...`); Validate is
  // applied after.
  static Result<FilterSpec> Parse(const ConfigNode& body);
  static void AppendCanonical(const FilterSpec& spec, std::string& out);
  static void AppendFields(const FilterSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const FilterSpec& spec, const std::string& state_name, std::vector<std::string>& out);
  // `spec` must have passed Validate.
  static std::unique_ptr<Operator> Create(const FilterSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);
  // InvalidArgument for a predicate ParsePredicate would not have produced
  // (a status that is not approved, cancelled or refunded).
  static Status Validate(const FilterSpec& spec);
  explicit Filter(FilterSpec spec);
  std::string_view name() const override { return kKind; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;
  // Whether one decoded record (any format) passes every predicate.
  bool Matches(const InputRecord& r) const;

 private:
  FilterSpec spec_;
  // Per predicate, decided once: how it compares (not per record).
  enum class How : uint8_t { kNumber, kTypeCode, kText };
  std::vector<How> how_;
};

}  // namespace kappa
