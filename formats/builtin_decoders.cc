#include "formats/builtin_decoders.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "schemas/nexmark_generated.h"
#include "schemas/transaction_generated.h"

namespace kappa {
namespace {

// Each member stored directly into the slot: building a FieldValue and
// copying it makes the copy's 16-byte loads wait on the member stores
// (store forwarding fails), which cost more than the decode itself.
inline void SetText(FieldValue& v, const char* str, uint32_t len, int64_t i = 0) {
  v.i = i;
  v.str = str;
  v.len = len;
  v.present = true;
}
inline void SetText(FieldValue& v, const flatbuffers::String* s) {
  if (s != nullptr) {
    SetText(v, s->c_str(), s->size());
  } else {
    SetText(v, nullptr, 0);
  }
}
inline void SetNumber(FieldValue& v, int64_t i) { SetText(v, nullptr, 0, i); }

}  // namespace

std::string_view TxnStatusName(int status) {
  switch (static_cast<schema::TxnStatus>(status)) {
    case schema::TxnStatus::Approved:
      return "approved";
    case schema::TxnStatus::Cancelled:
      return "cancelled";
    case schema::TxnStatus::Refunded:
      return "refunded";
  }
  return "unknown";
}

std::string_view NexmarkTypeName(int type) {
  switch (type) {
    case 1: return "person";
    case 2: return "auction";
    case 3: return "bid";
  }
  return "none";
}

int NexmarkTypeCode(std::string_view name) {
  if (name == "person") return 1;
  if (name == "auction") return 2;
  if (name == "bid") return 3;
  return 0;
}

BuiltinVerdict TransactionDecoder::Classify(const uint8_t* data, size_t size, std::string* message) {
  // Re-verify the buffer with the library's checks, but leniently: the root
  // table and every field that is present must be well-formed; only then is
  // an absent required field the reason. Anything else is undecodable.
  auto undecodable = [&] {
    *message = "not a valid Transaction FlatBuffer (" + std::to_string(size) +
               " bytes: garbage, truncated or another schema)";
    return BuiltinVerdict::kUndecodable;
  };
  if (data == nullptr || size < 2 * sizeof(flatbuffers::uoffset_t) ||
      !flatbuffers::BufferHasIdentifier(data, schema::TransactionIdentifier())) {
    return undecodable();
  }
  flatbuffers::Verifier verifier(data, size);
  const flatbuffers::uoffset_t root = verifier.VerifyOffset(0);
  if (root == 0) return undecodable();
  // schema::Transaction hides its Table base; the verifying calls are on Table.
  const auto* t = reinterpret_cast<const flatbuffers::Table*>(data + root);
  using T = schema::Transaction;
  auto string_ok = [&](flatbuffers::voffset_t field) {
    return t->VerifyOffset(verifier, field) &&
           verifier.VerifyString(t->GetPointer<const flatbuffers::String*>(field));
  };
  const bool present_fields_ok =
      t->VerifyTableStart(verifier) && string_ok(T::VT_TXN_ID) && string_ok(T::VT_USER_ID) &&
      t->VerifyField<int8_t>(verifier, T::VT_STATUS, 1) &&
      t->VerifyField<int64_t>(verifier, T::VT_AMOUNT_CENTS, 8) && string_ok(T::VT_CURRENCY) &&
      t->VerifyField<int64_t>(verifier, T::VT_EVENT_TIME_MS, 8) && verifier.EndTable();
  if (!present_fields_ok) return undecodable();
  const std::pair<flatbuffers::voffset_t, const char*> required[] = {
      {T::VT_TXN_ID, "txn_id"}, {T::VT_USER_ID, "user_id"}, {T::VT_CURRENCY, "currency"}};
  for (const auto& [field, name] : required) {
    if (t->GetOptionalFieldOffset(field) == 0) {
      *message = std::string("required field ") + name + " is missing";
      return BuiltinVerdict::kMissingField;
    }
  }
  return undecodable();
}

BuiltinVerdict TransactionDecoder::Decode(const uint8_t* payload, uint32_t size, FieldValue* out,
                                          BuiltinRecordTimes* times, std::string* message) const {
  // The identifier by a 4-byte compare (VerifyTransactionBuffer's check is
  // a strncmp call per record), then the full verification.
  flatbuffers::Verifier verifier(payload, size);
  if (size < 2 * sizeof(flatbuffers::uoffset_t) ||
      std::memcmp(payload + sizeof(flatbuffers::uoffset_t), schema::TransactionIdentifier(),
                  flatbuffers::kFileIdentifierLength) != 0 ||
      !verifier.VerifyBuffer<schema::Transaction>(nullptr)) {
    return Classify(payload, size, message);
  }
  const schema::Transaction* t = schema::GetTransaction(payload);
  const int64_t amount = t->amount_cents();
  if (amount < checks_.min_amount_cents || amount > checks_.max_amount_cents) {
    *message = "amount_cents " + std::to_string(amount) + " is outside [" +
               std::to_string(checks_.min_amount_cents) + ", " + std::to_string(checks_.max_amount_cents) + "]";
    return BuiltinVerdict::kInvalidValue;
  }
  const int64_t event_time = t->event_time_ms();
  if (event_time < checks_.min_event_time_ms) {
    *message = "event_time_ms " + std::to_string(event_time) + " is below the minimum " +
               std::to_string(checks_.min_event_time_ms);
    return BuiltinVerdict::kInvalidValue;
  }
  if (event_time > kMaxEventTimeMs) {
    *message = "event_time_ms " + std::to_string(event_time) + " is after the year 9999";
    return BuiltinVerdict::kInvalidValue;
  }
  const std::string_view currency(t->currency()->c_str(), t->currency()->size());
  if (currency.empty()) {
    *message = "currency is empty";
    return BuiltinVerdict::kInvalidValue;
  }
  if (!checks_.allowed_currencies.empty() &&
      std::find(checks_.allowed_currencies.begin(), checks_.allowed_currencies.end(), currency) ==
          checks_.allowed_currencies.end()) {
    *message = "currency `" + std::string(currency) + "` is not in the allowed list";
    return BuiltinVerdict::kInvalidValue;
  }
  // The verifier does not check enum ranges.
  const auto status = static_cast<int>(t->status());
  if (status < static_cast<int>(schema::TxnStatus::MIN) || status > static_cast<int>(schema::TxnStatus::MAX)) {
    *message = "status " + std::to_string(status) + " is not approved (0), cancelled (1) or refunded (2)";
    return BuiltinVerdict::kInvalidValue;
  }
  SetText(out[kSlotTxnId], t->txn_id());
  SetText(out[kSlotUserId], t->user_id());
  const std::string_view status_name = TxnStatusName(status);
  SetText(out[kSlotStatus], status_name.data(), static_cast<uint32_t>(status_name.size()), status);
  SetNumber(out[kSlotAmountCents], amount);
  SetText(out[kSlotCurrency], currency.data(), static_cast<uint32_t>(currency.size()));
  SetNumber(out[kSlotEventTime], event_time);
  times->event_time_ms = event_time;
  times->value = amount;
  return BuiltinVerdict::kOk;
}

namespace {

using NexmarkType = schema::NexmarkBody;

// Where each Nexmark field lives in each event type's table: its vtable
// offset, 0 when the type has no such field.
constexpr flatbuffers::voffset_t NexmarkVoffset(NexmarkType type, int slot) {
  switch (type) {
    case NexmarkType::Bid:
      switch (slot) {
        case kSlotAuction: return schema::Bid::VT_AUCTION;
        case kSlotBidder: return schema::Bid::VT_BIDDER;
        case kSlotPrice: return schema::Bid::VT_PRICE;
        case kSlotChannel: return schema::Bid::VT_CHANNEL;
        case kSlotUrl: return schema::Bid::VT_URL;
        case kSlotDateTime: return schema::Bid::VT_DATE_TIME;
        case kSlotExtra: return schema::Bid::VT_EXTRA;
      }
      return 0;
    case NexmarkType::Auction:
      switch (slot) {
        case kSlotAuction:
        case kSlotId: return schema::Auction::VT_ID;
        case kSlotItemName: return schema::Auction::VT_ITEM_NAME;
        case kSlotDescription: return schema::Auction::VT_DESCRIPTION;
        case kSlotInitialBid: return schema::Auction::VT_INITIAL_BID;
        case kSlotReserve: return schema::Auction::VT_RESERVE;
        case kSlotDateTime: return schema::Auction::VT_DATE_TIME;
        case kSlotExpires: return schema::Auction::VT_EXPIRES;
        case kSlotSeller: return schema::Auction::VT_SELLER;
        case kSlotCategory: return schema::Auction::VT_CATEGORY;
        case kSlotExtra: return schema::Auction::VT_EXTRA;
      }
      return 0;
    case NexmarkType::Person:
      switch (slot) {
        case kSlotId: return schema::Person::VT_ID;
        case kSlotName: return schema::Person::VT_NAME;
        case kSlotEmail: return schema::Person::VT_EMAIL_ADDRESS;
        case kSlotCreditCard: return schema::Person::VT_CREDIT_CARD;
        case kSlotCity: return schema::Person::VT_CITY;
        case kSlotState: return schema::Person::VT_STATE;
        case kSlotDateTime: return schema::Person::VT_DATE_TIME;
        case kSlotExtra: return schema::Person::VT_EXTRA;
      }
      return 0;
    default:
      return 0;
  }
}

}  // namespace

NexmarkDecoder::NexmarkDecoder(int64_t min_event_time_ms, const std::vector<int>& slots)
    : min_event_time_ms_(min_event_time_ms) {
  std::array<bool, kBuiltinSlotCount> used{};
  for (int s : slots) {
    if (s >= kSlotType && s < kBuiltinSlotCount) used[static_cast<size_t>(s)] = true;
  }
  if (slots.empty()) used.fill(true);
  type_slot_ = used[kSlotType];
  first_slot_ = kBuiltinSlotCount;
  last_slot_ = kSlotType;
  for (int s = kSlotType; s < kBuiltinSlotCount; ++s) {
    if (!used[static_cast<size_t>(s)]) continue;
    first_slot_ = std::min(first_slot_, s);
    last_slot_ = std::max(last_slot_, s);
  }
  if (first_slot_ > last_slot_) first_slot_ = last_slot_;
  for (int type = 1; type <= 3; ++type) {
    for (int s = kSlotType + 1; s < kBuiltinSlotCount; ++s) {
      if (!used[static_cast<size_t>(s)]) continue;
      plan_[type].push_back(Fill{static_cast<int16_t>(s), NexmarkVoffset(static_cast<NexmarkType>(type), s),
                                 IsBuiltinTextSlot(s)});
    }
  }
}

BuiltinVerdict NexmarkDecoder::Decode(const uint8_t* payload, uint32_t size, FieldValue* out,
                                      BuiltinRecordTimes* times, std::string* message) const {
  // The identifier by a 4-byte compare (the library's check is a strncmp
  // call per record), then the full verification.
  flatbuffers::Verifier verifier(payload, size);
  if (size < 2 * sizeof(flatbuffers::uoffset_t) ||
      std::memcmp(payload + sizeof(flatbuffers::uoffset_t), schema::NexmarkEventIdentifier(),
                  flatbuffers::kFileIdentifierLength) != 0 ||
      !verifier.VerifyBuffer<schema::NexmarkEvent>(nullptr)) {
    *message = "not a valid NexmarkEvent FlatBuffer (" + std::to_string(size) +
               " bytes: garbage, truncated or another schema)";
    return BuiltinVerdict::kUndecodable;
  }
  const schema::NexmarkEvent* e = schema::GetNexmarkEvent(payload);
  const auto type = e->body_type();
  int64_t date_time = 0;
  int64_t value = 0;
  switch (type) {
    case NexmarkType::NONE:
      *message = "required field body is missing (no person, auction or bid)";
      return BuiltinVerdict::kMissingField;
    case NexmarkType::Bid: {
      const schema::Bid* b = e->body_as_Bid();
      if (b->price() < 0) {
        *message = "bid price " + std::to_string(b->price()) + " is negative";
        return BuiltinVerdict::kInvalidValue;
      }
      date_time = b->date_time();
      value = b->price();
      break;
    }
    case NexmarkType::Auction: {
      const schema::Auction* a = e->body_as_Auction();
      if (a->initial_bid() < 0 || a->reserve() < 0) {
        *message = "auction initial_bid " + std::to_string(a->initial_bid()) + " or reserve " +
                   std::to_string(a->reserve()) + " is negative";
        return BuiltinVerdict::kInvalidValue;
      }
      date_time = a->date_time();
      break;
    }
    case NexmarkType::Person:
      date_time = e->body_as_Person()->date_time();
      break;
    default:  // the verifier accepts unknown union types (forward compatibility)
      *message = "event type " + std::to_string(static_cast<int>(type)) +
                 " is not person (1), auction (2) or bid (3)";
      return BuiltinVerdict::kInvalidValue;
  }
  if (date_time < min_event_time_ms_) {
    *message = "date_time " + std::to_string(date_time) + " is below the minimum " +
               std::to_string(min_event_time_ms_);
    return BuiltinVerdict::kInvalidValue;
  }
  if (date_time > kMaxEventTimeMs) {
    *message = "date_time " + std::to_string(date_time) + " is after the year 9999";
    return BuiltinVerdict::kInvalidValue;
  }
  const int code = static_cast<int>(type);
  if (type_slot_) {
    const std::string_view name = NexmarkTypeName(code);
    SetText(out[kSlotType], name.data(), static_cast<uint32_t>(name.size()), code);
  }
  // The generated tables hide their flatbuffers::Table base; these are the
  // reads their accessors make.
  const auto* body = static_cast<const flatbuffers::Table*>(e->body());
  for (const Fill& f : plan_[code]) {
    FieldValue& v = out[f.slot];
    if (f.text) {
      SetText(v, f.voffset ? body->GetPointer<const flatbuffers::String*>(f.voffset) : nullptr);
    } else {
      SetNumber(v, f.voffset ? body->GetField<int64_t>(f.voffset, 0) : 0);
    }
  }
  times->event_time_ms = date_time;
  times->value = value;
  return BuiltinVerdict::kOk;
}

}  // namespace kappa
