#include "operators/map.h"

#include "operators/field_access.h"

namespace kappa {

Status Map::Validate(const MapSpec& spec) {
  if (!IsNumericField(spec.value_field)) {
    return Status::InvalidArgument(
        "map value must be a numeric field (amount_cents or event_time_ms), not `" +
        std::string(FieldName(spec.value_field)) + "`");
  }
  if (spec.divide == 0) return Status::InvalidArgument("map divide must not be 0");
  return Status::OK();
}

void Map::Process(RecordBatch& batch, TaskContext& /*ctx*/) {
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    const __int128 scaled = static_cast<__int128>(NumericField(rec.txn, spec_.value_field)) * spec_.multiply;
    rec.value = static_cast<int64_t>(scaled / spec_.divide);  // wraps (C++20) if out of range
  }
}

}  // namespace kappa
