// Reading a named field of a verified Transaction without allocating:
// strings as views into the FlatBuffer, numbers as int64, the status as its
// lowercase name. Shared by the built-in operators; not a public header.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

#include "operators/operator_spec.h"
#include "schemas/transaction_generated.h"

namespace kappa {

// Enough for any int64 in decimal, with sign.
constexpr size_t kFieldTextScratchBytes = 24;

// "approved", "cancelled", "refunded" (or "unknown").
std::string_view StatusName(schema::TxnStatus status);

inline int64_t NumericField(const schema::Transaction* t, Field f) {
  switch (f) {
    case Field::kAmountCents:
      return t->amount_cents();
    case Field::kEventTime:
      return t->event_time_ms();
    case Field::kStatus:
      return static_cast<int64_t>(t->status());
    default:
      return 0;
  }
}

// The field as text. Numeric fields are formatted in decimal into `scratch`
// (kFieldTextScratchBytes); the view is valid while scratch and t are.
inline std::string_view FieldText(const schema::Transaction* t, Field f, char* scratch) {
  auto view = [](const flatbuffers::String* s) {
    return s ? std::string_view(s->c_str(), s->size()) : std::string_view();
  };
  switch (f) {
    case Field::kTxnId:
      return view(t->txn_id());
    case Field::kUserId:
      return view(t->user_id());
    case Field::kCurrency:
      return view(t->currency());
    case Field::kStatus:
      return StatusName(t->status());
    default: {
      auto r = std::to_chars(scratch, scratch + kFieldTextScratchBytes, NumericField(t, f));
      return std::string_view(scratch, static_cast<size_t>(r.ptr - scratch));
    }
  }
}

}  // namespace kappa
