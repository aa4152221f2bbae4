#include "operators/map.h"

#include "operators/field_access.h"

namespace kappa {

Result<MapSpec> Map::Parse(const ConfigNode& body) {
  KAPPA_RETURN_IF_ERROR(body.CheckKeys({"value", "multiply", "divide"}, "map"));
  MapSpec spec;
  auto field = FieldAt(body, "value", Field::kAmountCents);
  if (!field.ok()) return field.status();
  spec.value_field = *field;
  auto mul = body.IntAt("multiply", 1);
  if (!mul.ok()) return mul.status();
  auto div = body.IntAt("divide", 1);
  if (!div.ok()) return div.status();
  spec.multiply = *mul;
  spec.divide = *div;
  return spec;
}

void Map::AppendCanonical(const MapSpec& spec, std::string& out) {
  out.append("map(").append(FieldName(spec.value_field)).append(",").append(std::to_string(spec.multiply));
  out.append(",").append(std::to_string(spec.divide)).append(")");
}

void Map::AppendFields(const MapSpec& spec, std::vector<Field>& out) { out.push_back(spec.value_field); }

void Map::AppendStateTables(const MapSpec&, const std::string&, std::vector<std::string>&) {}

std::unique_ptr<Operator> Map::Create(const MapSpec& spec, const std::string&, StateRegistry&) {
  return std::make_unique<Map>(spec);
}

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
