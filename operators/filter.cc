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
  }
  return Status::OK();
}

Filter::Filter(FilterSpec spec) : spec_(std::move(spec)) {}

bool Filter::Matches(const schema::Transaction* t) const {
  char scratch[kFieldTextScratchBytes];
  for (const Predicate& p : spec_.all_of) {
    const bool ok = IsNumericField(p.field)
                        ? Compare(NumericField(t, p.field), p.op, p.number)
                        : Compare(FieldText(t, p.field, scratch), p.op, std::string_view(p.text));
    if (!ok) return false;
  }
  return true;
}

void Filter::Process(RecordBatch& batch, TaskContext& ctx) {
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    if (Matches(batch.records[idx].txn)) {
      batch.selection[kept++] = idx;
    } else {
      ++ctx.counters->filtered;
    }
  }
  batch.selection.resize(kept);
}

}  // namespace kappa
