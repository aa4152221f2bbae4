// The fintech workload in users' own formats: `kappa gen --format
// transaction|json|avro|flatbuffers`. TransactionGenerator decides every
// event (the same seed gives the same txn ids, users, amounts and times);
// the encoders here only turn one generated transaction into bytes, so the
// four formats carry the same events. Each encoder writes into a buffer it
// reuses: no heap allocation per record once the buffer has grown.
//
// What every format carries (derived from the generated transaction, no
// randomness of its own, so identical in every format):
//   txn_id      "t00000000042"     user id  "u0000123" (also the Kafka key)
//   status      approved | cancelled | refunded
//   amount      cents (int64) and currency (USD, EUR, GBP, JPY)
//   event time  ms since the epoch (JSON also as ISO-8601 UTC with ms,
//               FlatBuffers in µs)
//   country     two letters, a function of the user id (CountryOf)
//   merchant    "m-00042", a function of the txn id (MerchantOf)
//
// The layouts:
//  json (schemas/examples/transactions.json-fields.md), one object, ~215 bytes:
//    {"txn_id":"t00000000042","user":{"id":"u0000123","country":"DE"},
//     "status":"approved","amount":{"cents":1234,"currency":"EUR"},
//     "event_time":"2026-01-01T00:00:00.840Z","event_time_ms":1767225600840,
//     "merchant":"m-00042"}
//    (all strings are ASCII letters, digits and '-': nothing needs escaping)
//  avro: schemas/examples/payment.avsc in the Confluent wire format: byte 0,
//    the schema id (4 bytes, big-endian), the Avro binary body.
//  flatbuffers: schemas/examples/payment.fbs (acme.payments.Payment, file
//    identifier ACP1): the user's schema, with its own field names.
//  transaction: kappa's own schemas/transaction.fbs, the generator's bytes
//    unchanged (what `kappa gen` wrote before formats existed).
//
// Malformed records (the generator's malformed_fraction) become the broken
// inputs of each format. The generator picks garbage / truncated / missing
// field; for formats other than transaction the encoder maps that choice to
// the format's classes with a random stream of its own (seeded from the
// generator's seed), so the generator's stream, and with it every event, is
// the same in every format:
//   json:        garbage -> kInvalidJson (a record with a syntax error),
//                truncated -> kTruncated (a valid record cut short),
//                missing field -> kMissingField (no user.id or no
//                amount.cents) or kWrongType (amount.cents a string), half each
//   avro:        garbage -> kBadMagic (first byte not 0), truncated ->
//                kTruncated (body cut short), missing field ->
//                kTruncatedHeader (fewer than the 5 header bytes)
//   flatbuffers: garbage -> kGarbage, truncated -> kTruncated, missing
//                field -> kMissingField (no payer or no amount table)
//   transaction: kGarbage, kTruncated, kMissingField as generated.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/iso_time.h"  // IsoTime
#include "base/random.h"
#include "base/status.h"
#include "workload/transaction_generator.h"

namespace kappa {

enum class EventFormat { kTransaction, kJson, kAvro, kFlatBuffers };
const char* EventFormatName(EventFormat format);
// "transaction", "json", "avro" or "flatbuffers"; an error naming them otherwise.
Result<EventFormat> ParseEventFormat(std::string_view name);

struct EncodingOptions {
  EventFormat format = EventFormat::kTransaction;
  // avro: the id written into every record's header, the id under which the
  // Schema Registry knows schemas/examples/payment.avsc. Between 0 and 2^31-1.
  int32_t schema_id = 1;
};

// The broken-input classes (see the table above).
enum class MalformedClass {
  kNone,  // a valid record
  kGarbage,
  kInvalidJson,
  kTruncated,
  kMissingField,
  kWrongType,
  kBadMagic,
  kTruncatedHeader,
};
constexpr int kMalformedClasses = 8;
const char* MalformedClassName(MalformedClass c);

struct EncodingStats {
  std::array<uint64_t, kMalformedClasses> count{};  // by MalformedClass
  uint64_t of(MalformedClass c) const { return count[static_cast<int>(c)]; }
};

// The fields every format adds to kappa's Transaction, as functions of it.
const char* CountryOf(std::string_view user_id);
// "m-NNNNN" into buf (at least 8 bytes); returns its length.
size_t MerchantOf(std::string_view txn_id, char* buf);
const char* StatusName(int8_t status);  // approved, cancelled, refunded

// One function per format: a valid (or duplicate) generated transaction
// into bytes, replacing *out (whose capacity is reused).
void EncodeJson(const GeneratedRecord& txn, std::string* out);
void EncodePayment(const GeneratedRecord& txn, flatbuffers::FlatBufferBuilder* fbb, std::string* out);

// Avro C writer of schemas/examples/payment.avsc (embedded at build time).
class AvroPaymentEncoder {
 public:
  static Result<std::unique_ptr<AvroPaymentEncoder>> Create(int32_t schema_id);
  ~AvroPaymentEncoder();
  // Confluent framing + Avro binary body of txn into *out.
  Status Encode(const GeneratedRecord& txn, std::string* out);
  static const char* SchemaJson();

 private:
  AvroPaymentEncoder() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int32_t schema_id_ = 0;
};

// Encodes the generator's records in one format, valid and malformed.
// Not thread-safe.
// The Nexmark events as JSON (`kappa gen --workload nexmark --format json`),
// for systems that read JSON (Flink SQL's json format in bench/peers/flink-nexmark):
// the FlatBuffers NexmarkEvent `flatbuffer` (schemas/nexmark.fbs, what
// NexmarkGenerator makes) turned into one flat object, replacing *out. Field
// names are those of Flink's own Nexmark tables (camelCase), with "type"
// naming the event; every time is there twice, ISO-8601 UTC with ms and ms
// since the epoch:
//   {"type":"bid","auction":1000,"bidder":1001,"price":12345,"channel":"Google",
//    "url":"https://...","dateTime":"2026-01-01T00:00:00.004Z",
//    "date_time_ms":1767225600004,"extra":"..."}
//   {"type":"person","id":..,"name":..,"emailAddress":..,"creditCard":..,"city":..,
//    "state":..,"dateTime":..,"date_time_ms":..,"extra":..}
//   {"type":"auction","id":..,"itemName":..,"description":..,"initialBid":..,
//    "reserve":..,"dateTime":..,"date_time_ms":..,"expires":"<ISO>","expires_ms":..,
//    "seller":..,"category":..,"extra":..}
// Strings are escaped as JSON needs (the generator's are letters, digits,
// spaces and URL punctuation, so in practice nothing is). An error if the
// bytes are not a verifiable NexmarkEvent with a body.
Status EncodeNexmarkJson(std::string_view flatbuffer, std::string* out);

class EventEncoder {
 public:
  // `generator` are the options of the TransactionGenerator whose records
  // this encoder will see (its seed seeds the malformed-class choices).
  static Result<std::unique_ptr<EventEncoder>> Create(const EncodingOptions& options,
                                                      const GeneratorOptions& generator);
  ~EventEncoder();
  // The value bytes of `record` in this format: for transaction, record.value
  // itself; otherwise a buffer of this encoder, valid until the next call.
  Status Encode(const GeneratedRecord& record, const std::string** value);
  // The class of the record last encoded.
  MalformedClass last_class() const { return last_; }
  const EncodingStats& stats() const { return stats_; }
  EventFormat format() const { return options_.format; }

 private:
  EventEncoder(const EncodingOptions& options, const GeneratorOptions& generator);
  void EncodeMalformed(const GeneratedRecord& record);
  void CutShort(size_t min_keep);

  EncodingOptions options_;
  GeneratorOptions generator_;
  Random random_;
  std::unique_ptr<AvroPaymentEncoder> avro_;
  flatbuffers::FlatBufferBuilder fbb_{256};
  GeneratedRecord scratch_;  // a made-up transaction behind a malformed record
  std::string buffer_;
  uint64_t malformed_seq_ = 0;
  MalformedClass last_ = MalformedClass::kNone;
  EncodingStats stats_;
};

}  // namespace kappa
