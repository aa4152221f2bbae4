// The vocabulary of operator specs: record formats, fields, predicates,
// aggregates, the decode step's spec, and the helpers every kind's parser
// uses to read its section of the job spec (a base/config_node.h tree, never
// YAML). Each kind's own plain spec struct lives in its file (DedupSpec in
// operators/dedup.h ...); operators/operator_registry.h lists the kinds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/config_node.h"
#include "base/status.h"
#include "formats/record_view.h"

namespace kappa {

// Which record schema a job's source topic holds: FlatBuffers
// kappa.schema.Transaction (the default) or kappa.schema.NexmarkEvent
// (schemas/nexmark.fbs), both built in; or a user's own format whose fields
// the spec declares (`source: {format: json, fields: ...}`, formats/).
enum class RecordFormat { kTransaction, kNexmark, kJson, kAvro, kFlatBuffers };
// A user format: its fields are declared, not built in.
inline bool IsDeclaredFormat(RecordFormat format) {
  return format == RecordFormat::kJson || format == RecordFormat::kAvro || format == RecordFormat::kFlatBuffers;
}
Result<RecordFormat> ParseRecordFormat(std::string_view name);
std::string_view RecordFormatName(RecordFormat format);

// The fields of a record an operator can refer to. The first six are the
// Transaction's; then the Nexmark event's (an event type lacking a field
// reads it as 0 or ""); `offset` and `value` exist in every format.
enum class Field {
  // Transaction
  kTxnId, kUserId, kStatus, kAmountCents, kCurrency, kEventTime,
  // Nexmark
  kType,        // "person", "auction" or "bid" (compares as text, like status)
  kAuction,     // bid.auction, auction.id: the auction an event is about
  kBidder,      // bid.bidder
  kPrice,       // bid.price (cents)
  kChannel,     // bid.channel
  kUrl,         // bid.url
  kDateTime,    // every event's date_time (its event time)
  kId,          // auction.id, person.id
  kItemName,    // auction.item_name
  kDescription, // auction.description
  kInitialBid,  // auction.initial_bid
  kReserve,     // auction.reserve
  kExpires,     // auction.expires
  kSeller,      // auction.seller
  kCategory,    // auction.category
  kName,        // person.name
  kEmail,       // person.email_address
  kCreditCard,  // person.credit_card
  kCity,        // person.city
  kState,       // person.state
  kExtra,       // every event's extra
  // Any format
  kOffset,      // the record's input offset; as an emit key "<partition>|<offset>"
  kValue,       // the number aggregates use: set by decode (amount_cents, bid price) and by map
  kPartition,   // the task's input partition: only a window or emit key (one group per task)
  // Fields a user format declares (source.fields) are kDeclaredBase plus
  // (n << 16 | slot << 3 | type), n indexing a process-wide table of
  // (name, type, slot) (DeclaredFieldOf): a Field names its declared field
  // completely, so operators need no schema, and the slot and type are read
  // from the Field itself on the per-record path, without the table.
  kDeclaredBase = 1 << 30,
};
struct DeclaredFieldInfo {
  std::string name;
  ValueType type = ValueType::kString;
  int slot = 0;  // in InputRecord::fields
};
inline bool IsDeclaredField(Field field) { return static_cast<int>(field) >= static_cast<int>(Field::kDeclaredBase); }
constexpr int kMaxDeclaredSlots = 1 << 13;
inline int DeclaredSlotOf(Field field) {
  return ((static_cast<int>(field) - static_cast<int>(Field::kDeclaredBase)) >> 3) & (kMaxDeclaredSlots - 1);
}
inline ValueType DeclaredTypeOf(Field field) {
  return static_cast<ValueType>((static_cast<int>(field) - static_cast<int>(Field::kDeclaredBase)) & 7);
}
// Named values a `map` computes (`map: {amount_eur: "amount_cents * 92 /
// 100"}`) are declared fields too, with slots from kComputedSlotBase up: the
// record view keeps them beside the decoded fields (InputRecord::computed),
// so operators after the map read them like any field.
constexpr int kComputedSlotBase = kMaxDeclaredSlots / 2;
inline bool IsComputedField(Field field) { return IsDeclaredField(field) && DeclaredSlotOf(field) >= kComputedSlotBase; }
// While one lives (on this thread: the job spec loader holds one while it
// parses a chain), the names of values computed by earlier maps of the chain
// resolve in ParseField, and each new one gets the next computed slot.
class ComputedFieldsScope {
 public:
  ComputedFieldsScope();
  ~ComputedFieldsScope();
  ComputedFieldsScope(const ComputedFieldsScope&) = delete;
  ComputedFieldsScope& operator=(const ComputedFieldsScope&) = delete;

 private:
  void* previous_;
};
// Declares a value a map computes (int64 or double): its Field, at the next
// computed slot of the chain being parsed (the first one outside a scope).
// InvalidArgument if the name is already a field of the chain.
Result<Field> DeclareComputedField(const std::string& name, ValueType type);
// The entry of a declared field (IsDeclaredField(field) must hold). Takes a
// lock: for parsing, building and messages, not per record.
const DeclaredFieldInfo& DeclaredFieldOf(Field field);
// The Field of a declared field (the same Field for the same triple).
Result<Field> InternDeclaredField(const std::string& name, ValueType type, int slot);

// While one lives (on this thread), ParseField resolves names against the
// declared schema of a user format (and the pseudo fields offset, value,
// partition), not the built-in formats' names. The job spec loader holds
// one while it parses the operators of a job whose format is declared.
class DeclaredFieldsScope {
 public:
  explicit DeclaredFieldsScope(const RecordSchema* schema);
  ~DeclaredFieldsScope();
  DeclaredFieldsScope(const DeclaredFieldsScope&) = delete;
  DeclaredFieldsScope& operator=(const DeclaredFieldsScope&) = delete;

 private:
  const RecordSchema* previous_;
};
// A declared double is refused unless `allow_double` (named features
// aggregate doubles; the other operators compute in int64).
Result<Field> ParseField(std::string_view name, bool allow_double = false);
std::string_view FieldName(Field field);
// amount_cents, event_time_ms, the Nexmark numbers, offset, value; declared
// int64, timestamp and bool fields.
bool IsNumericField(Field field);
// Whether records of `format` have the field (offset, value, partition: every format).
bool FieldInFormat(Field field, RecordFormat format);
// `partition` is not a field of the record: it can only key a window or an emit.
inline bool IsKeyOnlyField(Field field) { return field == Field::kPartition; }

// Always first in the chain: FlatBuffers verification (garbage, truncated
// buffers, missing required fields -> DLQ) and value checks.
struct DecodeSpec {
  int64_t min_amount_cents = 0;                  // amounts below are InvalidValue
  int64_t max_amount_cents = INT64_MAX;
  int64_t min_event_time_ms = 1;                 // event_time_ms must be positive
  std::vector<std::string> allowed_currencies;   // empty: any non-empty code
  // The schema to verify against. Nexmark events are checked for a body
  // (MissingField), a known event type, date_time >= min_event_time_ms and
  // non-negative prices (InvalidValue); the amount and currency checks above
  // are the Transaction's only.
  RecordFormat format = RecordFormat::kTransaction;
  // A declared format's fields (source.fields), in slot order, and which of
  // them is the event time (a timestamp; required) and the value aggregates
  // use by default (an int64; optional, else 0 unless a map sets it).
  std::shared_ptr<const RecordSchema> schema;
  int event_time_slot = -1;
  int value_slot = -1;
  // flatbuffers: the user's schema (.fbs or .bfbs) and its root table ("":
  // the schema's root_type); avro: the Schema Registry holding the writer
  // schemas (a URL; its path is the API's base path).
  std::string schema_file;
  std::string root_type;
  std::string schema_registry_url;
  // Told when the registry stops answering and answers again (the job's
  // notes); not part of the spec's hash.
  std::function<void(const std::string&)> on_registry_wait;
  // The fields the job's operators read (AppendFields; Task::Create fills
  // it): a Nexmark record's view holds only these. Empty: every field.
  // Not part of the spec's hash (it follows from the operators).
  std::vector<Field> read_fields;
};

struct Predicate {
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
  Field field = Field::kStatus;
  Op op = Op::kEq;
  std::string text;    // for string fields; status compares by name (approved...)
  int64_t number = 0;  // for numeric fields (and type: its code, 1 person, 2 auction, 3 bid)
  // > 0: compares field % modulus (remainder with the dividend's sign, as in
  // C) instead of the field: "auction % 123 == 0". Numeric fields only.
  int64_t modulus = 0;
};
// Parses "status != cancelled", "amount_cents >= 100", "auction % 123 == 0",
// "type == bid".
Result<Predicate> ParsePredicate(std::string_view text);

enum class Aggregate { kCount, kSum, kMin, kMax, kAvg };
Result<Aggregate> ParseAggregate(std::string_view name);

// At most this many `argmax` fields per window (WindowSpec::argmax).
constexpr size_t kMaxArgmaxFields = 4;

// Helpers for the kinds' parsers, over the body of one operator entry.
// The field named at `key`, or `fallback` when absent.
Result<Field> FieldAt(const ConfigNode& body, std::string_view key, Field fallback);
// The list of fields at `key`: empty when absent, else a non-empty list
// (`what` says what it should hold, for the message).
Result<std::vector<Field>> FieldsAt(const ConfigNode& body, std::string_view key, std::string_view what);
// Appends ",<name>=f1/f2/" to the canonical text, nothing for no fields (so
// a spec written before the option existed keeps its hash).
void AppendCanonicalFields(std::string& out, std::string_view name, const std::vector<Field>& fields);

}  // namespace kappa
