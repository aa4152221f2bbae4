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
}  // namespace

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
    auto pred = ParsePredicate(*text);
    if (!pred.ok()) return item.Error(pred.status().message());
    spec.all_of.push_back(*pred);
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
  out.append(")");
}

void Filter::AppendFields(const FilterSpec& spec, std::vector<Field>& out) {
  for (const Predicate& p : spec.all_of) out.push_back(p.field);
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

bool Filter::Matches(const schema::Transaction* t) const {
  InputRecord r;
  r.txn = t;
  return Matches(r);
}

bool Filter::Matches(const InputRecord& r) const {
  char scratch[kFieldTextScratchBytes];
  for (size_t i = 0; i < spec_.all_of.size(); ++i) {
    const Predicate& p = spec_.all_of[i];
    bool ok;
    switch (how_[i]) {
      case How::kNumber: {
        const int64_t v = NumericField(r, p.field);
        ok = Compare(p.modulus > 0 ? v % p.modulus : v, p.op, p.number);
        break;
      }
      case How::kTypeCode:
        ok = Compare(static_cast<int64_t>(r.nexmark_type), p.op, p.number);
        break;
      default:
        ok = Compare(FieldText(r, p.field, scratch), p.op, std::string_view(p.text));
        break;
    }
    if (!ok) return false;
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
