// Plain configuration structs for the built-in operators. The job spec loader
// (engine/job_spec.h) parses YAML into these once, at the edge; operators
// never see YAML or raw strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/base/status.h"

namespace kappa {

// The fields of a Transaction record an operator can refer to.
enum class Field { kTxnId, kUserId, kStatus, kAmountCents, kCurrency, kEventTime };
Result<Field> ParseField(std::string_view name);
std::string_view FieldName(Field field);
bool IsNumericField(Field field);  // amount_cents, event_time_ms

// Always first in the chain: FlatBuffers verification (garbage, truncated
// buffers, missing required fields -> DLQ) and value checks.
struct DecodeSpec {
  int64_t min_amount_cents = 0;                  // amounts below are InvalidValue
  int64_t max_amount_cents = INT64_MAX;
  int64_t min_event_time_ms = 1;                 // event_time_ms must be positive
  std::vector<std::string> allowed_currencies;   // empty: any non-empty code
};

// Drops a record whose `field` value was already seen by this task within
// `ttl_ms` of event time. An entry first seen at time t expires once the
// task's watermark passes t + ttl_ms.
struct DedupSpec {
  Field field = Field::kTxnId;
  int64_t ttl_ms = 0;
};

struct Predicate {
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
  Field field = Field::kStatus;
  Op op = Op::kEq;
  std::string text;    // for string fields; status compares by name (approved...)
  int64_t number = 0;  // for numeric fields
};
// Parses "status != cancelled", "amount_cents >= 100".
Result<Predicate> ParsePredicate(std::string_view text);

// Keeps records for which every predicate holds.
struct FilterSpec {
  std::vector<Predicate> all_of;
};

// Sets the numeric value later aggregates use: value = field * multiply / divide.
// Without a map the value is amount_cents.
struct MapSpec {
  Field value_field = Field::kAmountCents;
  int64_t multiply = 1;
  int64_t divide = 1;
};

enum class Aggregate { kCount, kSum, kMin, kMax, kAvg };
Result<Aggregate> ParseAggregate(std::string_view name);

// Keyed event-time window. Tumbling: slide_ms == size_ms. Windows are aligned
// to the epoch: [k*slide, k*slide + size).
struct WindowSpec {
  enum class Kind { kTumbling, kSliding };
  Kind kind = Kind::kTumbling;
  int64_t size_ms = 0;
  int64_t slide_ms = 0;
  Field key_field = Field::kUserId;
  std::vector<Aggregate> aggregates;  // which fields of the output are filled
};

// Emits each surviving record to the sink unchanged, keyed by `key_field`
// (a stateless job); the end of a chain that has no window.
struct EmitSpec {
  Field key_field = Field::kTxnId;
};

using OperatorSpec = std::variant<DedupSpec, FilterSpec, MapSpec, WindowSpec, EmitSpec>;

}  // namespace kappa
