// MakeOperator / MakeDecodeValidate: spec -> operator, validating the spec
// first so a bad one is a Status, never a half-built chain.
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
    KAPPA_RETURN_IF_ERROR(Dedup::Validate(*d));
    return std::unique_ptr<Operator>(new Dedup(*d, state_name, registry));
  }
  if (auto* f = std::get_if<FilterSpec>(&spec)) {
    KAPPA_RETURN_IF_ERROR(Filter::Validate(*f));
    return std::unique_ptr<Operator>(new Filter(*f));
  }
  if (auto* m = std::get_if<MapSpec>(&spec)) {
    KAPPA_RETURN_IF_ERROR(Map::Validate(*m));
    return std::unique_ptr<Operator>(new Map(*m));
  }
  if (auto* w = std::get_if<WindowSpec>(&spec)) {
    KAPPA_RETURN_IF_ERROR(WindowAggregate::Validate(*w));
    return std::unique_ptr<Operator>(new WindowAggregate(*w, state_name, registry));
  }
  if (auto* e = std::get_if<EmitSpec>(&spec)) {
    KAPPA_RETURN_IF_ERROR(Emit::Validate(*e));
    return std::unique_ptr<Operator>(new Emit(*e));
  }
  return Status::InvalidArgument("unknown operator kind");
}

std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec) {
  return std::make_unique<DecodeValidate>(spec);
}

}  // namespace kappa
