// The record view: how every input format reaches the operators (issue 12).
// A job's source declares the fields it uses (RecordSchema: a name, a type
// and a path into the record for each); a format's RecordDecoder turns one
// raw record into one FieldValue per declared field, in schema order (the
// field's slot). Operators read slots only, so no operator names a format
// and adding a format touches no operator.
//
// Lifetimes: string values point into the record's payload or into the
// decoder's own scratch, valid until the decoder's next BeginBatch() (a task
// decodes a whole batch, then runs the operators over it).
// Not thread-safe: one decoder per task.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kappa {

enum class ValueType : uint8_t {
  kString,
  kInt64,
  kDouble,
  kBool,
  kTimestamp,  // epoch milliseconds in FieldValue::i, whatever the encoding
};
std::string_view ValueTypeName(ValueType type);  // "string", "int64", "double", "bool", "timestamp"

// How a timestamp field is encoded in the record (read into epoch ms).
enum class TimestampEncoding : uint8_t {
  kEpochMillis,   // an integer
  kEpochMicros,   // an integer, divided by 1000 (toward negative infinity)
  kIso8601,       // a string: 2026-01-01T00:00:00Z, with optional fraction and offset (+01:00)
};

struct FieldDecl {
  std::string name;  // what operators call it: "amount", "user_id"
  ValueType type = ValueType::kString;
  // Where it is in the record, dot-separated through nested objects/tables:
  // "payload.amount". Two paths are not in the record: "kafka.key" (the
  // record's key, a string) and "kafka.timestamp" (its Kafka timestamp).
  std::string path;
  TimestampEncoding timestamp = TimestampEncoding::kEpochMillis;  // kTimestamp only
  // Absent in a record: not present (operators see no value) instead of a
  // MissingField dead letter.
  bool optional = false;
  // The text the spec's filters compare this (string) field with: checked
  // against an enum's symbols where the field reads one by name
  // (EnumLiteralMismatch). Not part of the schema's identity.
  std::vector<std::string> literals = {};
  // A filter orders this (string) field against text (`<`, `>=`): an enum
  // read by name would compare its symbols alphabetically, not by value.
  bool ordered_by_text = false;
};

// A problem with `field.literals` for a field that reads enum `enum_name`
// by its symbols, or nullopt. A literal that is a symbol in another case
// only (`cancelled` for CANCELLED) always is: symbols compare as written,
// so that filter never held and nothing said so (a bug bash). With
// `every_literal` (a schema fixed for the job: FlatBuffers) so is one that
// is no symbol at all; an Avro writer schema is one of many, and a later
// one may add the symbol.
std::optional<std::string> EnumLiteralMismatch(const FieldDecl& field, std::string_view enum_name,
                                               const std::vector<std::string_view>& symbols, bool every_literal);

class RecordSchema {
 public:
  // Appends a field; its slot is the number of fields before it. Names are
  // unique; an empty path means the name.
  Status Add(FieldDecl field) {
    if (field.name.empty()) return Status::InvalidArgument("a declared field needs a name");
    if (Find(field.name)) return Status::InvalidArgument("field `" + field.name + "` is declared twice");
    if (field.path.empty()) field.path = field.name;
    fields_.push_back(std::move(field));
    return Status::OK();
  }
  std::optional<int> Find(std::string_view name) const {
    for (size_t i = 0; i < fields_.size(); ++i) {
      if (fields_[i].name == name) return static_cast<int>(i);
    }
    return std::nullopt;
  }
  const FieldDecl& field(int slot) const { return fields_[static_cast<size_t>(slot)]; }
  FieldDecl& mutable_field(int slot) { return fields_[static_cast<size_t>(slot)]; }
  const std::vector<FieldDecl>& fields() const { return fields_; }
  int size() const { return static_cast<int>(fields_.size()); }

 private:
  std::vector<FieldDecl> fields_;
};

// One declared field's value in one record. 24 bytes, trivially copyable.
struct FieldValue {
  union {
    int64_t i;  // kInt64, kTimestamp (epoch ms), kBool (0/1)
    double d;   // kDouble
  };
  const char* str;  // kString
  uint32_t len;
  bool present;

  std::string_view text() const { return std::string_view(str, len); }
};

// Why a record could not be decoded; it goes to the DLQ with this.
struct DecodeError {
  enum class Kind { kUndecodable, kMissingField, kWrongType };
  Kind kind = Kind::kUndecodable;
  std::string path;     // the field's path ("" when the record as a whole is bad)
  std::string message;  // what was wrong, for the DLQ record and logs
};

// What a decoder reads: the record's bytes plus its Kafka key and timestamp.
struct RawRecord {
  const uint8_t* payload = nullptr;
  uint32_t size = 0;
  const uint8_t* key = nullptr;
  uint32_t key_size = 0;
  int64_t timestamp_ms = 0;
};

class RecordDecoder {
 public:
  virtual ~RecordDecoder() = default;
  // Starts a batch: strings handed out before may be reused.
  virtual void BeginBatch() {}
  // Fills out[0 .. schema.size()) for one record; false (and *error) when
  // the record does not parse, lacks a required field or has a field of the
  // wrong type. Fields at kafka.key / kafka.timestamp are filled here too.
  virtual bool Decode(const RawRecord& record, FieldValue* out, DecodeError* error) = 0;
  // After Decode returned false: not OK when the record is not at fault but
  // the decoder cannot work (a Schema Registry it cannot reach). The job
  // then stops without a checkpoint instead of dead-lettering the record.
  virtual const Status& last_fatal() const {
    static const Status ok;
    return ok;
  }
};

// Parses an ISO-8601 timestamp ("2026-01-01T00:00:00Z",
// "2026-01-01T00:00:00.123+01:00", "2026-01-01 00:00:00.123456Z") into epoch
// milliseconds (fraction truncated to ms); nullopt if it is not one.
std::optional<int64_t> ParseIso8601Millis(std::string_view text);
// What a decoder's "expected ..." says of `text`, which ParseIso8601Millis
// refused: "an ISO-8601 timestamp", or, for a valid time without a zone,
// one that asks for the zone (a bug bash: "expected an ISO-8601 timestamp,
// found \"2026-01-01T00:17:09.202\"" did not say what was wrong).
std::string_view Iso8601Expectation(std::string_view text);

}  // namespace kappa
