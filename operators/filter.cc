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
