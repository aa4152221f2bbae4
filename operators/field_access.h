// Reading a named field of a decoded record without allocating: strings as
// views into the record, numbers as int64, the status and the Nexmark event
// type as their lowercase names. Every format reaches the operators as the
// record view (formats/record_view.h): InputRecord::fields, one FieldValue
// per slot, filled by the decode step. A built-in field (Transaction,
// Nexmark) is at the fixed slot equal to its Field value
// (formats/builtin_decoders.h), a declared field at the slot its Field
// encodes; so reading a field is an index, never a switch on the schema or
// a virtual call. A field the record's Nexmark event type lacks reads as 0
// or "". Shared by the built-in operators; not a public header.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/builtin_decoders.h"
#include "operators/operator.h"
#include "operators/operator_spec.h"

namespace kappa {

// Enough for any int64 in decimal, with sign.
constexpr size_t kFieldTextScratchBytes = 24;

// The built-in Fields are their slots.
static_assert(static_cast<int>(Field::kTxnId) == kSlotTxnId && static_cast<int>(Field::kUserId) == kSlotUserId &&
              static_cast<int>(Field::kStatus) == kSlotStatus &&
              static_cast<int>(Field::kAmountCents) == kSlotAmountCents &&
              static_cast<int>(Field::kCurrency) == kSlotCurrency &&
              static_cast<int>(Field::kEventTime) == kSlotEventTime && static_cast<int>(Field::kType) == kSlotType &&
              static_cast<int>(Field::kAuction) == kSlotAuction && static_cast<int>(Field::kBidder) == kSlotBidder &&
              static_cast<int>(Field::kPrice) == kSlotPrice && static_cast<int>(Field::kChannel) == kSlotChannel &&
              static_cast<int>(Field::kUrl) == kSlotUrl && static_cast<int>(Field::kDateTime) == kSlotDateTime &&
              static_cast<int>(Field::kId) == kSlotId && static_cast<int>(Field::kItemName) == kSlotItemName &&
              static_cast<int>(Field::kDescription) == kSlotDescription &&
              static_cast<int>(Field::kInitialBid) == kSlotInitialBid &&
              static_cast<int>(Field::kReserve) == kSlotReserve && static_cast<int>(Field::kExpires) == kSlotExpires &&
              static_cast<int>(Field::kSeller) == kSlotSeller && static_cast<int>(Field::kCategory) == kSlotCategory &&
              static_cast<int>(Field::kName) == kSlotName && static_cast<int>(Field::kEmail) == kSlotEmail &&
              static_cast<int>(Field::kCreditCard) == kSlotCreditCard && static_cast<int>(Field::kCity) == kSlotCity &&
              static_cast<int>(Field::kState) == kSlotState && static_cast<int>(Field::kExtra) == kSlotExtra &&
              static_cast<int>(Field::kOffset) == kBuiltinSlotCount);

inline bool IsBuiltinSlotField(Field f) { return static_cast<unsigned>(f) < static_cast<unsigned>(kBuiltinSlotCount); }

// A declared field's slot (IsDeclaredField(f)); set by the decode step.
inline const FieldValue& DeclaredSlot(const InputRecord& r, Field f) {
  const int slot = DeclaredSlotOf(f);
  return slot < kComputedSlotBase ? r.fields[slot] : r.computed[slot - kComputedSlotBase];
}

// Whether `f` is a declared field without a value in `r` (optional and
// absent or null, or `kafka.key` of a record without a key).
inline bool DeclaredAbsent(const InputRecord& r, Field f) {
  return IsDeclaredField(f) && !DeclaredSlot(r, f).present;
}

// The dead letter's message for a record whose grouping key `f` is absent:
// grouped under "" it would be merged with every other such record (and an
// empty value) in silence.
inline std::string AbsentKeyMessage(std::string_view what, Field f) {
  return std::string(what) + " key `" + std::string(FieldName(f)) +
         "` is absent in this record (declared optional): grouped under \"\" it would merge with every other "
         "record lacking it";
}

// A numeric field of a decoded record (type: its code; status: its enum
// value; a declared int64, timestamp (epoch ms) or bool (0/1); 0 when a
// declared optional field is absent).
inline int64_t NumericField(const InputRecord& r, Field f) {
  if (IsDeclaredField(f)) [[unlikely]] {
    const FieldValue& v = DeclaredSlot(r, f);
    return v.present ? v.i : 0;
  }
  if (IsBuiltinSlotField(f)) [[likely]] return r.fields[static_cast<int>(f)].i;
  switch (f) {
    case Field::kOffset:
      return r.offset;
    case Field::kValue:
      return r.value;
    default:
      return 0;
  }
}

// Any field of a decoded record as text (numbers in decimal into `scratch`).
inline std::string_view FieldText(const InputRecord& r, Field f, char* scratch) {
  if (IsDeclaredField(f)) [[unlikely]] {
    const FieldValue& v = DeclaredSlot(r, f);
    if (!v.present) return {};
    if (DeclaredTypeOf(f) == ValueType::kString) return v.text();
    auto p = std::to_chars(scratch, scratch + kFieldTextScratchBytes, v.i);
    return std::string_view(scratch, static_cast<size_t>(p.ptr - scratch));
  }
  if (IsBuiltinTextSlot(static_cast<int>(f))) return r.fields[static_cast<int>(f)].text();
  auto p = std::to_chars(scratch, scratch + kFieldTextScratchBytes, NumericField(r, f));
  return std::string_view(scratch, static_cast<size_t>(p.ptr - scratch));
}

// The expression accessor (operators/expression.h) over one record: the
// expression's slot i reads fields[i] through NumericField / FieldText.
// `scratch` (kFieldTextScratchBytes) holds numbers formatted as text; numeric
// fields are read as Int, never Str, so a Str view never points there.
struct RecordAccessor {
  const InputRecord& r;
  const std::vector<Field>& fields;
  char* scratch;

  bool Present(int slot) const {
    const Field f = fields[static_cast<size_t>(slot)];
    return !IsDeclaredField(f) || DeclaredSlot(r, f).present;
  }
  int64_t Int(int slot) const { return NumericField(r, fields[static_cast<size_t>(slot)]); }
  double Double(int slot) const {
    const Field f = fields[static_cast<size_t>(slot)];
    if (IsDeclaredField(f) && DeclaredTypeOf(f) == ValueType::kDouble) return DeclaredSlot(r, f).d;
    return static_cast<double>(NumericField(r, f));
  }
  std::string_view Str(int slot) const { return FieldText(r, fields[static_cast<size_t>(slot)], scratch); }
  bool Bool(int slot) const { return NumericField(r, fields[static_cast<size_t>(slot)]) != 0; }
};

// The expression type a Field reads as.
inline ValueType ExprTypeOf(Field f) {
  if (IsDeclaredField(f)) return DeclaredTypeOf(f);
  return IsNumericField(f) ? ValueType::kInt64 : ValueType::kString;
}

}  // namespace kappa
