// Reading a named field of a decoded record without allocating: strings as
// views into the FlatBuffer, numbers as int64, the status and the Nexmark
// event type as their lowercase names. Which schema a record holds is a tag
// in the InputRecord (txn set, or nexmark + nexmark_type), so reading a field
// is a switch, never a virtual call. A field the record's schema (or its
// Nexmark event type) lacks reads as 0 or "". Shared by the built-in
// operators; not a public header.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <string_view>
#include <vector>

#include "operators/operator.h"
#include "operators/operator_spec.h"
#include "schemas/nexmark_generated.h"
#include "schemas/transaction_generated.h"

namespace kappa {

// Enough for any int64 in decimal, with sign.
constexpr size_t kFieldTextScratchBytes = 24;

// "approved", "cancelled", "refunded" (or "unknown").
std::string_view StatusName(schema::TxnStatus status);
// "person", "auction", "bid" (or "none").
std::string_view NexmarkTypeName(int type);
// 1, 2, 3 for "person", "auction", "bid"; 0 for anything else.
int NexmarkTypeCode(std::string_view name);

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

namespace field_access_detail {
using NexmarkType = schema::NexmarkBody;

inline std::string_view View(const flatbuffers::String* s) {
  return s ? std::string_view(s->c_str(), s->size()) : std::string_view();
}

// Where each numeric Nexmark field lives: [event type][field - kType] is the
// field's vtable offset in that type's table (0: the type has no such
// field), so reading one is a table lookup and a FlatBuffers field read, not
// a switch on field and type per record (which mispredicts in a loop over
// several fields).
constexpr int kNexmarkFieldCount = static_cast<int>(Field::kExtra) - static_cast<int>(Field::kType) + 1;
using VoffsetTable = std::array<std::array<flatbuffers::voffset_t, kNexmarkFieldCount>, 4>;
constexpr VoffsetTable MakeNexmarkVoffsets() {
  VoffsetTable t{};
  auto at = [&](NexmarkType type, Field f) -> flatbuffers::voffset_t& {
    return t[static_cast<size_t>(type)][static_cast<size_t>(static_cast<int>(f) - static_cast<int>(Field::kType))];
  };
  at(NexmarkType::Bid, Field::kAuction) = schema::Bid::VT_AUCTION;
  at(NexmarkType::Bid, Field::kBidder) = schema::Bid::VT_BIDDER;
  at(NexmarkType::Bid, Field::kPrice) = schema::Bid::VT_PRICE;
  at(NexmarkType::Bid, Field::kDateTime) = schema::Bid::VT_DATE_TIME;
  at(NexmarkType::Auction, Field::kAuction) = schema::Auction::VT_ID;
  at(NexmarkType::Auction, Field::kId) = schema::Auction::VT_ID;
  at(NexmarkType::Auction, Field::kInitialBid) = schema::Auction::VT_INITIAL_BID;
  at(NexmarkType::Auction, Field::kReserve) = schema::Auction::VT_RESERVE;
  at(NexmarkType::Auction, Field::kDateTime) = schema::Auction::VT_DATE_TIME;
  at(NexmarkType::Auction, Field::kExpires) = schema::Auction::VT_EXPIRES;
  at(NexmarkType::Auction, Field::kSeller) = schema::Auction::VT_SELLER;
  at(NexmarkType::Auction, Field::kCategory) = schema::Auction::VT_CATEGORY;
  at(NexmarkType::Person, Field::kId) = schema::Person::VT_ID;
  at(NexmarkType::Person, Field::kDateTime) = schema::Person::VT_DATE_TIME;
  return t;
}
inline constexpr VoffsetTable kNexmarkVoffsets = MakeNexmarkVoffsets();

// r.nexmark must be set (nexmark_type 1..3); f in [kType, kExtra].
inline int64_t NexmarkNumeric(const InputRecord& r, Field f) {
  const flatbuffers::voffset_t vo =
      kNexmarkVoffsets[r.nexmark_type & 3][static_cast<size_t>(static_cast<int>(f) - static_cast<int>(Field::kType))];
  // The generated tables hide their flatbuffers::Table base; this is the
  // read their accessors make.
  return vo ? static_cast<const flatbuffers::Table*>(r.nexmark)->GetField<int64_t>(vo, 0) : 0;
}

inline std::string_view NexmarkText(const InputRecord& r, Field f) {
  switch (static_cast<NexmarkType>(r.nexmark_type)) {
    case NexmarkType::Bid: {
      const auto* b = static_cast<const schema::Bid*>(r.nexmark);
      switch (f) {
        case Field::kChannel: return View(b->channel());
        case Field::kUrl: return View(b->url());
        case Field::kExtra: return View(b->extra());
        default: return {};
      }
    }
    case NexmarkType::Auction: {
      const auto* a = static_cast<const schema::Auction*>(r.nexmark);
      switch (f) {
        case Field::kItemName: return View(a->item_name());
        case Field::kDescription: return View(a->description());
        case Field::kExtra: return View(a->extra());
        default: return {};
      }
    }
    case NexmarkType::Person: {
      const auto* p = static_cast<const schema::Person*>(r.nexmark);
      switch (f) {
        case Field::kName: return View(p->name());
        case Field::kEmail: return View(p->email_address());
        case Field::kCreditCard: return View(p->credit_card());
        case Field::kCity: return View(p->city());
        case Field::kState: return View(p->state());
        case Field::kExtra: return View(p->extra());
        default: return {};
      }
    }
    default:
      return {};
  }
}
}  // namespace field_access_detail

// A declared field's slot (IsDeclaredField(f)); set by the decode step.
inline const FieldValue& DeclaredSlot(const InputRecord& r, Field f) { return r.fields[DeclaredSlotOf(f)]; }

// A numeric field of a decoded record (type: its code; status: its enum
// value; a declared int64, timestamp (epoch ms) or bool (0/1); 0 when a
// declared optional field is absent).
inline int64_t NumericField(const InputRecord& r, Field f) {
  if (IsDeclaredField(f)) [[unlikely]] {
    const FieldValue& v = DeclaredSlot(r, f);
    return v.present ? v.i : 0;
  }
  // The Nexmark numbers first: one range check, then a table lookup.
  if (static_cast<unsigned>(static_cast<int>(f) - static_cast<int>(Field::kType)) <
          static_cast<unsigned>(field_access_detail::kNexmarkFieldCount) &&
      f != Field::kType) {
    return r.nexmark ? field_access_detail::NexmarkNumeric(r, f) : 0;
  }
  switch (f) {
    case Field::kAmountCents:
    case Field::kEventTime:
    case Field::kStatus:
      return r.txn ? NumericField(r.txn, f) : 0;
    case Field::kOffset:
      return r.offset;
    case Field::kValue:
      return r.value;
    case Field::kType:
      return r.nexmark_type;
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
  switch (f) {
    case Field::kTxnId:
    case Field::kUserId:
    case Field::kCurrency:
    case Field::kStatus:
      return r.txn ? FieldText(r.txn, f, scratch) : std::string_view();
    case Field::kType:
      return NexmarkTypeName(r.nexmark_type);
    case Field::kChannel:
    case Field::kUrl:
    case Field::kItemName:
    case Field::kDescription:
    case Field::kName:
    case Field::kEmail:
    case Field::kCreditCard:
    case Field::kCity:
    case Field::kState:
    case Field::kExtra:
      return r.nexmark ? field_access_detail::NexmarkText(r, f) : std::string_view();
    default: {
      auto p = std::to_chars(scratch, scratch + kFieldTextScratchBytes, NumericField(r, f));
      return std::string_view(scratch, static_cast<size_t>(p.ptr - scratch));
    }
  }
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
    return !IsDeclaredField(f) || (r.fields != nullptr && r.fields[DeclaredSlotOf(f)].present);
  }
  int64_t Int(int slot) const { return NumericField(r, fields[static_cast<size_t>(slot)]); }
  double Double(int slot) const {
    const Field f = fields[static_cast<size_t>(slot)];
    if (IsDeclaredField(f) && DeclaredTypeOf(f) == ValueType::kDouble) return r.fields[DeclaredSlotOf(f)].d;
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
