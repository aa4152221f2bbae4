// Reading a named field of a decoded record without allocating: strings as
// views into the FlatBuffer, numbers as int64, the status and the Nexmark
// event type as their lowercase names. Which schema a record holds is a tag
// in the InputRecord (txn set, or nexmark + nexmark_type), so reading a field
// is a switch, never a virtual call. A field the record's schema (or its
// Nexmark event type) lacks reads as 0 or "". Shared by the built-in
// operators; not a public header.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

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

inline int64_t NexmarkNumeric(const InputRecord& r, Field f) {
  switch (static_cast<NexmarkType>(r.nexmark_type)) {
    case NexmarkType::Bid: {
      const auto* b = static_cast<const schema::Bid*>(r.nexmark);
      switch (f) {
        case Field::kAuction: return b->auction();
        case Field::kBidder: return b->bidder();
        case Field::kPrice: return b->price();
        case Field::kDateTime: return b->date_time();
        default: return 0;
      }
    }
    case NexmarkType::Auction: {
      const auto* a = static_cast<const schema::Auction*>(r.nexmark);
      switch (f) {
        case Field::kAuction:
        case Field::kId: return a->id();
        case Field::kInitialBid: return a->initial_bid();
        case Field::kReserve: return a->reserve();
        case Field::kDateTime: return a->date_time();
        case Field::kExpires: return a->expires();
        case Field::kSeller: return a->seller();
        case Field::kCategory: return a->category();
        default: return 0;
      }
    }
    case NexmarkType::Person: {
      const auto* p = static_cast<const schema::Person*>(r.nexmark);
      switch (f) {
        case Field::kId: return p->id();
        case Field::kDateTime: return p->date_time();
        default: return 0;
      }
    }
    default:
      return 0;
  }
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

// A numeric field of a decoded record (type: its code; status: its enum value).
inline int64_t NumericField(const InputRecord& r, Field f) {
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
      return r.nexmark ? field_access_detail::NexmarkNumeric(r, f) : 0;
  }
}

// Any field of a decoded record as text (numbers in decimal into `scratch`).
inline std::string_view FieldText(const InputRecord& r, Field f, char* scratch) {
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

}  // namespace kappa
