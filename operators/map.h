// Map: sets the number later aggregates use, value = field * multiply /
// divide, in integer arithmetic (128-bit intermediate, quotient truncated
// toward zero) so results are exact and deterministic. Or value = an
// expression over any fields (operators/expression.h): `value: "amount_cents
// * 2 - 100"`; int64 arithmetic wraps, a double result truncates toward zero,
// and a record whose value is absent (an absent field, a division by zero)
// goes to the DLQ as an invalid value. Any other key names a value the map
// computes from an expression (`spend_eur: "amount_cents * 92 / 100"`):
// int64 or double by the expression's type, readable by the operators after
// the map under that name (a window feature `sum(spend_eur)`), kept per
// record in the batch's computed values (InputRecord::computed); an absent
// result dead-letters the record as for `value`. Stateless.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "operators/expression.h"
#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

// Sets the numeric value later aggregates use: value = field * multiply / divide.
// Without a map the value is amount_cents.
struct MapSpec {
  Field value_field = Field::kAmountCents;
  int64_t multiply = 1;
  int64_t divide = 1;
  // Set when `value` is an expression rather than one field (value_field is
  // then unused): compiled with slots 0..n-1 standing for expr_fields.
  std::vector<CompiledExpr> value_expr = {};  // empty or one
  std::vector<Field> expr_fields = {};
  // Named values, in the order written (each a computed field,
  // operators/operator_spec.h), their expressions over expr_fields' slots.
  struct Computed {
    Field field;
    CompiledExpr expr;
  };
  std::vector<Computed> computed = {};
};

class Map final : public Operator {
 public:
  // The registry entry (operators/operator_registry.h).
  using Spec = MapSpec;
  static constexpr std::string_view kKind = "map";
  static constexpr bool kTerminal = false;
  // The spec from its section of the job spec (`map: ...`); Validate is
  // applied after.
  static Result<MapSpec> Parse(const ConfigNode& body);
  static void AppendCanonical(const MapSpec& spec, std::string& out);
  static void AppendFields(const MapSpec& spec, std::vector<Field>& out);
  static void AppendStateTables(const MapSpec& spec, const std::string& state_name, std::vector<std::string>& out);
  // `spec` must have passed Validate.
  static std::unique_ptr<Operator> Create(const MapSpec& spec, const std::string& state_name,
                                          StateRegistry& registry);
  // InvalidArgument unless the field is numeric and divide != 0.
  static Status Validate(const MapSpec& spec);
  // `spec` must have passed Validate.
  explicit Map(const MapSpec& spec);
  // The message of the DLQ records whose value is absent.
  // The DLQ message for a record whose value `name` came out absent.
  static std::string AbsentMessage(std::string_view name) {
    return "map value `" + std::string(name) + "` is absent (an absent field or a division by zero)";
  }
  // The DLQ message for a record whose `value` came out a double that no
  // int64 holds (NaN, an infinity, or beyond +-9.2e18).
  static std::string UnrepresentableMessage(double d);
  std::string_view name() const override { return kKind; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  MapSpec spec_;
  int first_computed_ = 0;        // the computed slot of spec_.computed[0]
  int computed_width_ = 0;        // computed slots per record once this map ran
  std::vector<FieldValue> arena_;  // the batch's computed values, records x width
};

}  // namespace kappa
