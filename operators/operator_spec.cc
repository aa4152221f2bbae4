#include "operators/operator_spec.h"

#include <cctype>
#include <charconv>
#include <string>

#include "operators/field_access.h"

namespace kappa {

namespace {
constexpr std::pair<std::string_view, Field> kFields[] = {
    {"txn_id", Field::kTxnId},      {"user_id", Field::kUserId},
    {"status", Field::kStatus},     {"amount_cents", Field::kAmountCents},
    {"currency", Field::kCurrency}, {"event_time_ms", Field::kEventTime}};
}  // namespace

std::string_view StatusName(schema::TxnStatus status) {
  switch (status) {
    case schema::TxnStatus::Approved:
      return "approved";
    case schema::TxnStatus::Cancelled:
      return "cancelled";
    case schema::TxnStatus::Refunded:
      return "refunded";
  }
  return "unknown";
}

Result<Field> ParseField(std::string_view name) {
  for (const auto& [n, f] : kFields) {
    if (n == name) return f;
  }
  return Status::InvalidArgument(
      "unknown field `" + std::string(name) +
      "` (fields: txn_id, user_id, status, amount_cents, currency, event_time_ms)");
}

std::string_view FieldName(Field field) {
  for (const auto& [n, f] : kFields) {
    if (f == field) return n;
  }
  return "?";
}

bool IsNumericField(Field field) {
  return field == Field::kAmountCents || field == Field::kEventTime;
}

Result<Predicate> ParsePredicate(std::string_view text) {
  const std::string original(text);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(
        "predicate \"" + original + "\": " + why +
        " (write FIELD OP VALUE, OP one of == != < <= > >=, e.g. \"status != cancelled\")");
  };
  size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  skip();
  size_t start = i;
  while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_')) ++i;
  if (i == start) return bad("missing field name");
  auto field = ParseField(text.substr(start, i - start));
  if (!field.ok()) return bad(field.status().message());
  skip();
  start = i;
  while (i < text.size() && std::string_view("=!<>").find(text[i]) != std::string_view::npos) ++i;
  const std::string_view op = text.substr(start, i - start);
  Predicate p;
  p.field = *field;
  if (op == "==")
    p.op = Predicate::Op::kEq;
  else if (op == "!=")
    p.op = Predicate::Op::kNe;
  else if (op == "<")
    p.op = Predicate::Op::kLt;
  else if (op == "<=")
    p.op = Predicate::Op::kLe;
  else if (op == ">")
    p.op = Predicate::Op::kGt;
  else if (op == ">=")
    p.op = Predicate::Op::kGe;
  else if (op.empty()) {
    // Name a stray operator ("~", "=~") rather than call it missing.
    size_t end = i;
    while (end < text.size() && std::ispunct(static_cast<unsigned char>(text[end])) && text[end] != '"' &&
           text[end] != '\'' && text[end] != '-') {
      ++end;
    }
    if (end == i) return bad("missing operator after `" + std::string(FieldName(p.field)) + "`");
    std::string why = "unknown operator `";
    why.append(text.substr(i, end - i)).append("`");
    return bad(why);
  } else {
    std::string why = "unknown operator `";
    why.append(op).append("`");
    return bad(why);
  }
  skip();
  std::string value(text.substr(i));
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
    value = value.substr(1, value.size() - 2);
  }
  if (value.empty()) return bad("missing value");
  if (IsNumericField(p.field)) {
    auto r = std::from_chars(value.data(), value.data() + value.size(), p.number);
    if (r.ec != std::errc() || r.ptr != value.data() + value.size()) {
      std::string why = "`";
      why.append(FieldName(p.field)).append("` is numeric but `").append(value).append("` is not an integer");
      return bad(why);
    }
  } else if (p.field == Field::kStatus) {
    if (value != "approved" && value != "cancelled" && value != "refunded") {
      return bad("status is approved, cancelled or refunded, not `" + value + "`");
    }
    p.text = value;
  } else {
    p.text = value;
  }
  return p;
}

Result<Aggregate> ParseAggregate(std::string_view name) {
  if (name == "count") return Aggregate::kCount;
  if (name == "sum") return Aggregate::kSum;
  if (name == "min") return Aggregate::kMin;
  if (name == "max") return Aggregate::kMax;
  if (name == "avg") return Aggregate::kAvg;
  return Status::InvalidArgument("unknown aggregate `" + std::string(name) + "` (count, sum, min, max, avg)");
}

}  // namespace kappa
