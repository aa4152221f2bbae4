// The built-in record formats, FlatBuffers Transaction ("KTX1") and
// NexmarkEvent ("KNX1"), decoded into the same record view as a declared
// format (formats/record_view.h): one FieldValue per field, so operators read
// slots and never name a schema. Every built-in field has a fixed slot (its
// BuiltinSlot), which is also its operators::Field value: a Transaction's
// status is at fields[kSlotStatus] whatever the job. Strings point into the
// payload (zero copy) or at static names; a field the record's schema (or
// its Nexmark event type) lacks reads as 0 / "" (absent strings have a null
// pointer and length 0). Numbers are in FieldValue::i; status is its enum
// value (0 approved, 1 cancelled, 2 refunded) with its name as text, a
// Nexmark event's type its code (1 person, 2 auction, 3 bid) with its name.
// Every filled slot is `present`.
//
// The decoders also verify the FlatBuffer and check values, with the
// verdicts and messages the DLQ carries. Not thread-safe: one per task.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/record_view.h"

namespace kappa {

enum BuiltinSlot : int {
  // Transaction
  kSlotTxnId, kSlotUserId, kSlotStatus, kSlotAmountCents, kSlotCurrency, kSlotEventTime,
  // NexmarkEvent (its body: Person, Auction or Bid)
  kSlotType, kSlotAuction, kSlotBidder, kSlotPrice, kSlotChannel, kSlotUrl, kSlotDateTime, kSlotId,
  kSlotItemName, kSlotDescription, kSlotInitialBid, kSlotReserve, kSlotExpires, kSlotSeller, kSlotCategory,
  kSlotName, kSlotEmail, kSlotCreditCard, kSlotCity, kSlotState, kSlotExtra,
  kBuiltinSlotCount,
};
// A Transaction record's view has slots [0, kTransactionSlotCount); a
// Nexmark record's [0, kBuiltinSlotCount) (its first ones unused).
constexpr int kTransactionSlotCount = kSlotEventTime + 1;

// Whether the slot holds text (strings, status and type), else a number.
constexpr bool IsBuiltinTextSlot(int slot) {
  constexpr uint32_t kText = 1u << kSlotTxnId | 1u << kSlotUserId | 1u << kSlotStatus | 1u << kSlotCurrency |
                             1u << kSlotType | 1u << kSlotChannel | 1u << kSlotUrl | 1u << kSlotItemName |
                             1u << kSlotDescription | 1u << kSlotName | 1u << kSlotEmail |
                             1u << kSlotCreditCard | 1u << kSlotCity | 1u << kSlotState | 1u << kSlotExtra;
  return slot >= 0 && slot < kBuiltinSlotCount && ((kText >> slot) & 1u) != 0;
}

// "approved", "cancelled", "refunded" (or "unknown").
std::string_view TxnStatusName(int status);
// "person", "auction", "bid" (or "none").
std::string_view NexmarkTypeName(int type);
// 1, 2, 3 for "person", "auction", "bid"; 0 for anything else.
int NexmarkTypeCode(std::string_view name);

// Why a built-in record was refused (the DLQ reason), or kOk.
enum class BuiltinVerdict : uint8_t { kOk, kUndecodable, kMissingField, kInvalidValue };

// What the task needs of a decoded record besides its fields.
struct BuiltinRecordTimes {
  int64_t event_time_ms = 0;  // event_time_ms, a Nexmark event's date_time
  int64_t value = 0;          // amount_cents, a bid's price (0 for persons and auctions)
};

// The latest event time a record may carry: 9999-12-31T23:59:59.999Z.
// Beyond it a window's end (start + size) overflowed int64, and an on-time
// record near INT64_MAX was sent to the late topic; such a time is a bad
// value (a dead letter), as one below the minimum is.
constexpr int64_t kMaxEventTimeMs = 253402300799999;

struct TransactionChecks {
  int64_t min_amount_cents = 0;
  int64_t max_amount_cents = INT64_MAX;
  int64_t min_event_time_ms = 1;
  std::vector<std::string> allowed_currencies;  // empty: any non-empty code
};

class TransactionDecoder {
 public:
  explicit TransactionDecoder(TransactionChecks checks) : checks_(std::move(checks)) {}
  // Verifies one payload as a Transaction, checks its values and fills
  // out[0, kTransactionSlotCount). Not kOk: *message says why (a record
  // that is not a Transaction, a required field missing, a value out of range).
  BuiltinVerdict Decode(const uint8_t* payload, uint32_t size, FieldValue* out, BuiltinRecordTimes* times,
                        std::string* message) const;
  // Why a payload that failed verification is bad: kMissingField only when
  // everything present in the buffer is well-formed and a required field
  // is absent, else kUndecodable.
  static BuiltinVerdict Classify(const uint8_t* data, size_t size, std::string* message);

 private:
  TransactionChecks checks_;
};

class NexmarkDecoder {
 public:
  // Fills only `slots` (kSlotType..kSlotExtra; others are ignored) of each
  // record: the fields the job reads. Empty: every Nexmark slot.
  NexmarkDecoder(int64_t min_event_time_ms, const std::vector<int>& slots);
  // Verifies one NexmarkEvent, checks it (a body, a known type, date_time
  // >= the minimum, non-negative prices) and fills the chosen slots of out
  // (kBuiltinSlotCount wide).
  BuiltinVerdict Decode(const uint8_t* payload, uint32_t size, FieldValue* out, BuiltinRecordTimes* times,
                        std::string* message) const;
  // The lowest and highest slot Decode writes: records' views may overlap
  // outside [first, last] (a view `last - first + 1` apart from the next
  // keeps a batch's views dense, so reading them stays in cache).
  int first_slot() const { return first_slot_; }
  int last_slot() const { return last_slot_; }

 private:
  struct Fill {
    int16_t slot;
    uint16_t voffset;  // in the event type's table; 0: the type lacks the field
    bool text;
  };
  int64_t min_event_time_ms_;
  bool type_slot_ = false;
  int first_slot_ = kSlotType;
  int last_slot_ = kSlotType;
  std::vector<Fill> plan_[4];  // per event type (1 person, 2 auction, 3 bid)
};

}  // namespace kappa
