#include "operators/decode_validate.h"
#include "operators/dedup.h"
#include "operators/emit.h"
#include "operators/filter.h"
#include "operators/map.h"
#include "operators/window_aggregate.h"

namespace kappa {

Result<std::unique_ptr<Operator>> MakeOperator(const OperatorSpec& spec, const std::string& state_name,
                                               StateRegistry& registry) {
  if (auto* d = std::get_if<DedupSpec>(&spec)) {
    if (d->ttl_ms <= 0) return Status::InvalidArgument("dedup ttl must be positive");
    return std::unique_ptr<Operator>(new Dedup(*d, state_name, registry));
  }
  if (auto* f = std::get_if<FilterSpec>(&spec)) return std::unique_ptr<Operator>(new Filter(*f));
  if (auto* m = std::get_if<MapSpec>(&spec)) {
    if (!IsNumericField(m->value_field)) return Status::InvalidArgument("map value must be a numeric field");
    if (m->divide == 0) return Status::InvalidArgument("map divide must not be 0");
    return std::unique_ptr<Operator>(new Map(*m));
  }
  if (auto* w = std::get_if<WindowSpec>(&spec)) {
    if (w->size_ms <= 0 || w->slide_ms <= 0 || w->slide_ms > w->size_ms) {
      return Status::InvalidArgument("window size and slide must be positive, slide at most size");
    }
    return std::unique_ptr<Operator>(new WindowAggregate(*w, state_name, registry));
  }
  if (auto* e = std::get_if<EmitSpec>(&spec)) return std::unique_ptr<Operator>(new Emit(*e));
  return Status::InvalidArgument("unknown operator");
}

std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec) {
  return std::make_unique<DecodeValidate>(spec);
}

}  // namespace kappa
