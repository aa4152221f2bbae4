// JSON input (issue 12): one JSON object per Kafka record, read with
// simdjson On-Demand into the declared fields' slots.
//
// Only the declared fields are parsed; the declared paths are compiled once
// into a tree of object keys, and each record's objects are walked once,
// matching keys against that tree, so the order of keys in a document does
// not matter and every undeclared value is skipped without being parsed.
//
// Strings: a string without escapes points into the record's payload (which
// the contract keeps alive for the batch); one with escapes is unescaped
// into the decoder's per-batch arena. Both stay valid until BeginBatch().
// In steady state a record costs no heap allocation: the padded copy of the
// input, simdjson's buffers and the arena's chunks are reused (an escaped
// string over 16 KiB gets an allocation of its own, freed at BeginBatch).
//
// Values: int64 from JSON integers (or a number with no fraction such as
// 2.0 or 1e3); double from any number; bool from true/false; timestamps
// from integers (epoch_ms, epoch_us) or ISO-8601 strings. A declared value
// that is null counts as absent. Arrays are not addressable by paths. Keys
// are matched as written: a key spelled with escapes ("user\u005fid") does
// not match `user_id`; a key given twice in one object: the last counts.
//
// On-Demand parsing validates what it reads: a syntax error inside a value
// the schema does not declare may go unnoticed (the record still decodes
// the declared fields correctly).
#pragma once

#include <cstddef>
#include <memory>

#include "base/status.h"
#include "formats/record_view.h"

namespace kappa {

class JsonDecoder final : public RecordDecoder {
 public:
  // InvalidArgument if the schema breaks ValidateRecordSchema's rules.
  static Result<std::unique_ptr<JsonDecoder>> Create(const RecordSchema& schema);
  ~JsonDecoder() override;
  JsonDecoder(const JsonDecoder&) = delete;
  JsonDecoder& operator=(const JsonDecoder&) = delete;

  void BeginBatch() override;
  // kUndecodable: not JSON, not an object, or content after the object
  // (path ""); or a declared value simdjson cannot read, such as 1e999 or 01
  // (path = its path).
  // kMissingField: a required field absent or null (path = its path).
  // kWrongType: "expected int64, found string" and the like (path = its path;
  // for an object on the way that is not one, the first field under it).
  bool Decode(const RawRecord& record, FieldValue* out, DecodeError* error) override;

  // Bytes the decoder holds for reuse (input copy, parser, string arena):
  // bounded by the largest record and the largest batch's escaped strings.
  size_t ScratchBytes() const;

 private:
  struct Impl;
  explicit JsonDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kappa
