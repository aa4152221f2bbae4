#include "operators/map.h"

#include "operators/field_access.h"

namespace kappa {

Status Map::Validate(const MapSpec& spec) {
  if (!IsNumericField(spec.value_field)) {
    if (FieldInFormat(spec.value_field, RecordFormat::kTransaction)) {
      return Status::InvalidArgument(
          "map value must be a numeric field (amount_cents or event_time_ms), not `" +
          std::string(FieldName(spec.value_field)) + "`");
    }
    return Status::InvalidArgument(
        "map value must be a numeric field (nexmark: auction, bidder, price, date_time, id, initial_bid, "
        "reserve, expires, seller, category), not `" + std::string(FieldName(spec.value_field)) + "`");
  }
  if (spec.divide == 0) return Status::InvalidArgument("map divide must not be 0");
  return Status::OK();
}

void Map::Process(RecordBatch& batch, TaskContext& /*ctx*/) {
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    const int64_t v = NumericField(rec, spec_.value_field);
    int64_t product;
    // The 64-bit path gives the same quotient as the 128-bit one whenever
    // the product fits, and avoids a 128-bit division per record.
    if (!__builtin_mul_overflow(v, spec_.multiply, &product) &&
        !(product == INT64_MIN && spec_.divide == -1)) {
      rec.value = product / spec_.divide;
    } else {
      const __int128 scaled = static_cast<__int128>(v) * spec_.multiply;
      rec.value = static_cast<int64_t>(scaled / spec_.divide);  // wraps (C++20) if out of range
    }
  }
}

}  // namespace kappa
