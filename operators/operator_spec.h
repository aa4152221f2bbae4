// Plain configuration structs for the built-in operators. The job spec loader
// (engine/job_spec.h) parses YAML into these once, at the edge; operators
// never see YAML or raw strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace kappa {

// Which record schema a job's source topic holds (top-level `format:` of the
// spec): FlatBuffers kappa.schema.Transaction (the default) or
// kappa.schema.NexmarkEvent (schemas/nexmark.fbs).
enum class RecordFormat { kTransaction, kNexmark };
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
};
Result<Field> ParseField(std::string_view name);
std::string_view FieldName(Field field);
bool IsNumericField(Field field);  // amount_cents, event_time_ms, the Nexmark numbers, offset, value
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
};

// Drops a record whose `field` value was already seen by this task within
// `ttl_ms` of event time. An entry first seen at time t expires once the
// task's watermark passes t + ttl_ms.
struct DedupSpec {
  Field field = Field::kTxnId;
  int64_t ttl_ms = 0;
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

// Keeps records for which every predicate holds.
struct FilterSpec {
  std::vector<Predicate> all_of;
};

// Sets the numeric value later aggregates use: value = field * multiply / divide.
// Without a map the value is amount_cents.
struct MapSpec {
  Field value_field = Field::kAmountCents;
  int64_t multiply = 1;
  int64_t divide = 1;
};

enum class Aggregate { kCount, kSum, kMin, kMax, kAvg };
Result<Aggregate> ParseAggregate(std::string_view name);

// Keyed event-time window. Tumbling: slide_ms == size_ms. Windows are aligned
// to the epoch: [k*slide, k*slide + size).
struct WindowSpec {
  enum class Kind { kTumbling, kSliding };
  Kind kind = Kind::kTumbling;
  int64_t size_ms = 0;
  int64_t slide_ms = 0;
  Field key_field = Field::kUserId;  // `partition`: one group per task (e.g. the max bid of each window)
  std::vector<Aggregate> aggregates;  // which fields of the output are filled
  // > 0: of the windows ending at the same time, emit only those whose count
  // ranks in the top `top` (ties at the boundary all included, so `top: 1`
  // is every key with the highest count), in key order. Per task: kappa has
  // no shuffle, so this is the top of one input partition; a consumer takes
  // the best of the partitions' rows (exact when the window key is the
  // partitioning key, as for Nexmark bids by auction).
  int64_t top = 0;
  // Numeric fields of the first record (in offset order) holding the
  // window's max value, written to the output's `argmax` (e.g. [auction,
  // bidder] for the highest bid). At most kMaxArgmaxFields.
  std::vector<Field> argmax;
};
constexpr size_t kMaxArgmaxFields = 4;

// Emits each surviving record to the sink unchanged, keyed by `key_field`
// (a stateless job); the end of a chain that has no window. With `row`
// (numeric fields, `value` being the mapped number) it writes a FlatBuffers
// kappa.schema.Row (schemas/row.fbs) of those fields instead of the record.
struct EmitSpec {
  Field key_field = Field::kTxnId;
  std::vector<Field> row{};
};

using OperatorSpec = std::variant<DedupSpec, FilterSpec, MapSpec, WindowSpec, EmitSpec>;

}  // namespace kappa
