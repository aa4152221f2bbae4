#include "operators/filter.h"

#include "operators/field_access.h"

namespace kappa {
namespace {
template <typename T>
bool Compare(const T& a, Predicate::Op op, const T& b) {
  switch (op) {
    case Predicate::Op::kEq:
      return a == b;
    case Predicate::Op::kNe:
      return a != b;
    case Predicate::Op::kLt:
      return a < b;
    case Predicate::Op::kLe:
      return a <= b;
    case Predicate::Op::kGt:
      return a > b;
    case Predicate::Op::kGe:
      return a >= b;
  }
  return false;
}

// Whether `text` uses expression syntax outside quotes: a keyword word (and,
// or, not, in, any case the grammar accepts), `&&`, `||` or a parenthesis.
// Such entries never take the simple-predicate path, even where
// ParsePredicate would have read the rest as text. Quoted text (`city ==
// "Salt and Pepper"`) means the same on both paths, so it does not count.
bool UsesExpressionSyntax(std::string_view text) {
  auto is_word_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  };
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"' || c == '\'') {
      const size_t close = text.find(c, i + 1);
      if (close == std::string_view::npos) return false;  // an unclosed quote is bare text
      i = close + 1;
      continue;
    }
    if (c == '(' || c == ')') return true;
    if ((c == '&' || c == '|') && i + 1 < text.size() && text[i + 1] == c) return true;
    if (!is_word_char(c)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_word_char(text[j])) ++j;
    const std::string_view w = text.substr(i, j - i);
    for (std::string_view k : {"and", "or", "not", "in", "AND", "OR", "NOT", "IN"}) {
      if (w == k) return true;
    }
    i = j;
  }
  return false;
}

// The expression type of a field: declared fields their declared type,
// built-in numeric fields int64, the others (status and type by name) text.
// Reads expression slots from one record through the spec's slot->Field map.
}  // namespace

Status AddFilterEntry(FilterSpec& spec, std::string_view text) {
  // Text without expression syntax is a simple predicate when ParsePredicate
  // reads it (the path and canonical text it always had). When it does not,
  // it may still be an expression (`amount_cents * 2 > 100`, `is_fraud`,
  // `amount > fee`); otherwise, and wherever the simple form's value checks
  // would apply (status and type names, partition), ParsePredicate's error
  // stands, as it always read.
  const bool expression_syntax = UsesExpressionSyntax(text);
  Result<Predicate> pred = Status::InvalidArgument("");
  if (!expression_syntax) {
    pred = ParsePredicate(text);
    if (pred.ok()) {
      spec.all_of.push_back(*pred);
      return Status::OK();
    }
  }
  // Each distinct field gets the next slot; the resolver remembers why a
  // name was refused (ParseField lists the known fields, or says why a
  // declared field cannot be used).
  std::string refused;
  std::vector<Field> read;
  FieldResolver resolve = [&](std::string_view name) -> std::optional<std::pair<int, ValueType>> {
    auto field = ParseField(name);
    if (!field.ok()) {
      refused = field.status().message();
      return std::nullopt;
    }
    read.push_back(*field);
    size_t slot = 0;
    while (slot < spec.expr_fields.size() && spec.expr_fields[slot] != *field) ++slot;
    if (slot == spec.expr_fields.size()) spec.expr_fields.push_back(*field);
    return std::make_pair(static_cast<int>(slot), ExprTypeOf(*field));
  };
  const size_t fields_before = spec.expr_fields.size();
  auto expr = Compile(text, resolve);
  bool use = expr.ok();
  if (use && !expression_syntax) {
    for (Field f : read) {
      if (f == Field::kStatus || f == Field::kType || IsKeyOnlyField(f)) use = false;
    }
  }
  if (!use) {
    spec.expr_fields.resize(fields_before);
    if (!expression_syntax) return pred.status();
    if (!refused.empty()) return Status::InvalidArgument("filter `" + std::string(text) + "`: " + refused);
    return expr.status();
  }
  spec.exprs.push_back(std::move(*expr));
  return Status::OK();
}

Result<FilterSpec> Filter::Parse(const ConfigNode& body) {
  // filter: ["status != cancelled", ...], filter: {where: [...]} or one
  // predicate as a string.
  const ConfigNode* list = &body;
  if (body.IsMap()) {
    KAPPA_RETURN_IF_ERROR(body.CheckKeys({"where"}, "filter"));
    list = body.Find("where");
  }
  FilterSpec spec;
  auto add = [&](const ConfigNode& item) -> Status {
    auto text = item.String();
    if (!text.ok()) return text.status();
    Status added = AddFilterEntry(spec, *text);
    if (!added.ok()) return item.Error(added.message());
    return Status::OK();
  };
  if (list != nullptr && list->IsScalar()) {
    KAPPA_RETURN_IF_ERROR(add(*list));
    return spec;
  }
  if (list == nullptr || !list->IsList() || list->size() == 0) {
    return body.Error("filter needs a list of predicates like \"status != cancelled\"");
  }
  for (const ConfigNode& item : list->items()) KAPPA_RETURN_IF_ERROR(add(item));
  return spec;
}

void Filter::AppendCanonical(const FilterSpec& spec, std::string& out) {
  out.append("filter(");
  for (const Predicate& p : spec.all_of) {
    out.append(FieldName(p.field)).append(" ").append(std::to_string(static_cast<int>(p.op))).append(" ");
    out.append(p.text).append(" ").append(std::to_string(p.number));
    // Appended only when set, so specs written before `%` keep their hash.
    if (p.modulus != 0) out.append(" %").append(std::to_string(p.modulus));
    out.append(";");
  }
  // Only expressions add text, so filters of simple predicates keep their
  // hash. Canonical names fields, not slots.
  for (const CompiledExpr& e : spec.exprs) out.append("expr ").append(Canonical(e)).append(";");
  out.append(")");
}

void Filter::AppendFields(const FilterSpec& spec, std::vector<Field>& out) {
  for (const Predicate& p : spec.all_of) out.push_back(p.field);
  for (Field f : spec.expr_fields) out.push_back(f);
}

void Filter::AppendStateTables(const FilterSpec&, const std::string&, std::vector<std::string>&) {}

std::unique_ptr<Operator> Filter::Create(const FilterSpec& spec, const std::string&, StateRegistry&) {
  return std::make_unique<Filter>(spec);
}

Status Filter::Validate(const FilterSpec& spec) {
  for (const Predicate& p : spec.all_of) {
    if (p.field == Field::kStatus && p.text != "approved" && p.text != "cancelled" && p.text != "refunded") {
      return Status::InvalidArgument("filter: status is approved, cancelled or refunded, not `" + p.text +
                                     "`");
    }
    if (p.field == Field::kType && NexmarkTypeCode(p.text) == 0) {
      return Status::InvalidArgument("filter: type is person, auction or bid, not `" + p.text + "`");
    }
    if (IsKeyOnlyField(p.field)) return Status::InvalidArgument("filter: `partition` can only key a window or an emit");
    if (p.modulus < 0 || (p.modulus > 0 && !IsNumericField(p.field))) {
      return Status::InvalidArgument("filter: `%` needs a positive modulus and a numeric field (`" +
                                     std::string(FieldName(p.field)) + "`)");
    }
  }
  for (Field f : spec.expr_fields) {
    if (IsKeyOnlyField(f)) return Status::InvalidArgument("filter: `partition` can only key a window or an emit");
  }
  return Status::OK();
}

Filter::Filter(FilterSpec spec) : spec_(std::move(spec)) {
  for (Predicate& p : spec_.all_of) {
    if (p.field == Field::kType) p.number = NexmarkTypeCode(p.text);
    if (IsNumericField(p.field)) {
      how_.push_back(How::kNumber);
    } else if (p.field == Field::kType && (p.op == Predicate::Op::kEq || p.op == Predicate::Op::kNe)) {
      how_.push_back(How::kTypeCode);  // the type's code stands for its name: no text compare
    } else {
      how_.push_back(How::kText);
    }
  }
}

bool Filter::Matches(const InputRecord& r) const {
  char scratch[kFieldTextScratchBytes];
  for (size_t i = 0; i < spec_.all_of.size(); ++i) {
    const Predicate& p = spec_.all_of[i];
    // As in an expression: a comparison with an absent (or null) optional
    // field is false, never one with 0 or "".
    if (DeclaredAbsent(r, p.field)) return false;
    bool ok;
    switch (how_[i]) {
      case How::kNumber: {
        const int64_t v = NumericField(r, p.field);
        ok = Compare(p.modulus > 0 ? v % p.modulus : v, p.op, p.number);
        break;
      }
      case How::kTypeCode:
        ok = Compare(NumericField(r, Field::kType), p.op, p.number);
        break;
      default:
        ok = Compare(FieldText(r, p.field, scratch), p.op, std::string_view(p.text));
        break;
    }
    if (!ok) return false;
  }
  if (!spec_.exprs.empty()) {
    RecordAccessor acc{r, spec_.expr_fields, scratch};
    for (const CompiledExpr& e : spec_.exprs) {
      if (!e.Matches(acc)) return false;
    }
  }
  return true;
}

void Filter::Process(RecordBatch& batch, TaskContext& ctx) {
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    if (Matches(batch.records[idx])) batch.selection[kept++] = idx;
  }
  ctx.counters->filtered += static_cast<int64_t>(batch.selection.size() - kept);
  batch.selection.resize(kept);
}

}  // namespace kappa
