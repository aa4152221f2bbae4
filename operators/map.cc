#include "operators/map.h"

#include "operators/field_access.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

namespace kappa {
namespace {
// Whether `text` is one field name as FieldAt reads it (letters, digits,
// `_` and `.`): such values keep the field path and its canonical text.
bool IsOneName(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// The int64 value aggregates use, from an expression's result: a double
// is truncated toward zero. False for a double that has no such value (NaN,
// an infinity, or beyond int64's range): the record is dead-lettered, never
// counted as 0 or as int64's limits.
bool ToValue(const ExprValue& v, int64_t* out) {
  if (!v.is_double) {
    *out = v.i;
    return true;
  }
  // -2^63 is exact as a double; 2^63 is the first double above the range.
  if (!(v.d >= -9223372036854775808.0 && v.d < 9223372036854775808.0)) return false;
  *out = static_cast<int64_t>(v.d);
  return true;
}
// Resolves an expression's field names into the slots of spec.expr_fields
// (shared by every expression of one map); why a name was refused goes to
// *refused.
FieldResolver ResolverFor(MapSpec& spec, std::string* refused) {
  return [&spec, refused](std::string_view name) -> std::optional<std::pair<int, ValueType>> {
    auto field = ParseField(name);
    if (!field.ok()) {
      *refused = field.status().message();
      return std::nullopt;
    }
    size_t slot = 0;
    while (slot < spec.expr_fields.size() && spec.expr_fields[slot] != *field) ++slot;
    if (slot == spec.expr_fields.size()) spec.expr_fields.push_back(*field);
    return std::make_pair(static_cast<int>(slot), ExprTypeOf(*field));
  };
}
}  // namespace

Result<MapSpec> Map::Parse(const ConfigNode& body) {
  if (!body.IsMap()) return body.Error("map must be a mapping: {value: ...} or {name: \"expression\", ...}");
  MapSpec spec;
  // Named values first (in the order written), so that `value` may use them.
  for (const auto& [key, node] : body.entries()) {
    const std::string& name = key.scalar();
    if (name == "value" || name == "multiply" || name == "divide") continue;
    bool identifier = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name) {
      identifier &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    }
    if (!identifier) {
      return key.Error("map: `" + name + "` is not a name for a computed value (letters, digits and _; or value, "
                       "multiply, divide)");
    }
    auto text = node.String();
    if (!text.ok()) return text.status();
    std::string refused;
    const FieldResolver resolve = ResolverFor(spec, &refused);
    auto expr = CompileNumeric(*text, resolve);
    if (!expr.ok()) {
      if (!refused.empty()) return node.Error("map `" + name + "`: " + refused);
      return node.Error("map `" + name + "`: " + expr.status().message());
    }
    auto field = DeclareComputedField(name, expr->type() == ValueType::kDouble ? ValueType::kDouble : ValueType::kInt64);
    if (!field.ok()) return key.Error(field.status().message());
    spec.computed.push_back({*field, std::move(*expr)});
  }
  if (!spec.computed.empty()) {
    if (body.Find("multiply") != nullptr || body.Find("divide") != nullptr) {
      return body.Error("map: with named values, write any scaling into the expressions instead of multiply/divide");
    }
    if (body.Find("value") == nullptr) return spec;  // only named values: the record's value stays as it was
  }
  if (const ConfigNode* value = body.Find("value"); value != nullptr && value->IsScalar()) {
    auto text = value->String();
    if (!text.ok()) return text.status();
    if (!IsOneName(*text) || !spec.computed.empty()) {
      if (body.Find("multiply") != nullptr || body.Find("divide") != nullptr) {
        return value->Error("map: with an expression as value, write the scaling in it (`" + *text +
                            " * 3 / 100`) instead of multiply/divide");
      }
      std::string refused;
      const FieldResolver resolve = ResolverFor(spec, &refused);
      auto expr = CompileNumeric(*text, resolve);
      if (!expr.ok()) {
        if (!refused.empty()) return value->Error("map `" + *text + "`: " + refused);
        return value->Error(expr.status().message());
      }
      spec.value_expr.push_back(std::move(*expr));
      return spec;
    }
  }
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

std::string Map::UnrepresentableMessage(double d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", d);
  return std::string("map value `value` is ") + text +
         ": the value aggregates use is an int64 (a double is truncated toward zero), and no int64 holds it";
}

void Map::AppendCanonical(const MapSpec& spec, std::string& out) {
  if (!spec.computed.empty()) {
    out.append("map(");
    for (const auto& c : spec.computed) {
      out.append(FieldName(c.field)).append("=").append(Canonical(c.expr)).append(";");
    }
    if (!spec.value_expr.empty()) out.append("value=").append(Canonical(spec.value_expr[0]));
    out.append(")");
    return;
  }
  if (!spec.value_expr.empty()) {
    // A new form: maps of one field keep the text (and spec hash) they had.
    out.append("map(expr ").append(Canonical(spec.value_expr[0])).append(")");
    return;
  }
  out.append("map(").append(FieldName(spec.value_field)).append(",").append(std::to_string(spec.multiply));
  out.append(",").append(std::to_string(spec.divide)).append(")");
}

void Map::AppendFields(const MapSpec& spec, std::vector<Field>& out) {
  if (!spec.computed.empty()) {
    for (Field f : spec.expr_fields) out.push_back(f);
    return;
  }
  if (spec.value_expr.empty()) {
    out.push_back(spec.value_field);
  } else {
    for (Field f : spec.expr_fields) out.push_back(f);
  }
}

void Map::AppendStateTables(const MapSpec&, const std::string&, std::vector<std::string>&) {}

std::unique_ptr<Operator> Map::Create(const MapSpec& spec, const std::string&, StateRegistry&) {
  return std::make_unique<Map>(spec);
}

Map::Map(const MapSpec& spec) : spec_(spec) {
  if (spec_.computed.empty()) return;
  first_computed_ = DeclaredSlotOf(spec_.computed.front().field) - kComputedSlotBase;
  computed_width_ = DeclaredSlotOf(spec_.computed.back().field) - kComputedSlotBase + 1;
}

Status Map::Validate(const MapSpec& spec) {
  if (!spec.value_expr.empty() || !spec.computed.empty()) {
    for (Field f : spec.expr_fields) {
      if (IsKeyOnlyField(f)) return Status::InvalidArgument("map: `partition` can only key a window or an emit");
    }
    return Status::OK();
  }
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

void Map::Process(RecordBatch& batch, TaskContext& ctx) {
  if (!spec_.computed.empty()) {
    // Each record's computed values: those of earlier maps copied, then
    // this map's, in order (a later one may read an earlier one).
    const size_t width = static_cast<size_t>(computed_width_);
    arena_.resize(batch.selection.size() * width);
    char scratch[kFieldTextScratchBytes];
    size_t kept = 0, row = 0;
    for (uint32_t idx : batch.selection) {
      InputRecord& rec = batch.records[idx];
      FieldValue* values = arena_.data() + row++ * width;
      if (rec.computed != nullptr && first_computed_ > 0) {
        std::copy(rec.computed, rec.computed + first_computed_, values);
      }
      rec.computed = values;
      bool ok = true;
      size_t failed = spec_.computed.size();  // which computed value came out absent (size: the value)
      for (size_t i = 0; i < spec_.computed.size() && ok; ++i) {
        const ExprValue v = spec_.computed[i].expr.Evaluate(RecordAccessor{rec, spec_.expr_fields, scratch});
        FieldValue& out = values[first_computed_ + static_cast<int>(i)];
        out = FieldValue{};
        out.present = v.present;
        if (v.is_double) {
          out.d = v.d;
        } else {
          out.i = v.i;
        }
        ok = v.present;
        if (!ok) failed = i;
      }
      std::optional<double> unrepresentable;  // a double `value` no int64 holds
      if (ok && !spec_.value_expr.empty()) {
        const ExprValue v = spec_.value_expr[0].Evaluate(RecordAccessor{rec, spec_.expr_fields, scratch});
        ok = v.present && ToValue(v, &rec.value);
        if (v.present && !ok) unrepresentable = v.d;
        rec.value_absent = false;
      }
      if (!ok) {
        // Which one, when a map computes several.
        const std::string_view name =
            failed < spec_.computed.size() ? FieldName(spec_.computed[failed].field) : std::string_view("value");
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue,
                         unrepresentable ? UnrepresentableMessage(*unrepresentable) : AbsentMessage(name));
        ++ctx.counters->dlq;
        continue;
      }
      batch.selection[kept++] = idx;
    }
    batch.selection.resize(kept);
    return;
  }
  if (!spec_.value_expr.empty()) {
    const CompiledExpr& expr = spec_.value_expr[0];
    char scratch[kFieldTextScratchBytes];
    size_t kept = 0;
    for (uint32_t idx : batch.selection) {
      InputRecord& rec = batch.records[idx];
      const ExprValue v = expr.Evaluate(RecordAccessor{rec, spec_.expr_fields, scratch});
      if (!v.present || !ToValue(v, &rec.value)) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue,
                         v.present ? UnrepresentableMessage(v.d) : AbsentMessage("value"));
        ++ctx.counters->dlq;
        continue;
      }
      rec.value_absent = false;
      batch.selection[kept++] = idx;
    }
    batch.selection.resize(kept);
    return;
  }
  // `value: price` over an optional declared field the record lacks: a
  // dead letter, as an expression over it is (not a 0).
  if (IsDeclaredField(spec_.value_field)) {
    size_t kept = 0;
    for (uint32_t idx : batch.selection) {
      InputRecord& rec = batch.records[idx];
      if (!DeclaredSlot(rec, spec_.value_field).present) {
        ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue, AbsentMessage("value"));
        ++ctx.counters->dlq;
        continue;
      }
      batch.selection[kept++] = idx;
    }
    batch.selection.resize(kept);
  }
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    rec.value_absent = false;
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
