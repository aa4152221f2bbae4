// Avro input (issue 12): records in the Confluent wire format (byte 0 = 0,
// a 4-byte big-endian writer schema id, the Avro binary body), read into the
// declared fields' slots.
//
// Writer schemas come from a Schema Registry by id (SchemaRegistryClient,
// which caches them). For each writer schema id the decoder builds ONE read
// plan and keeps it for its life: Avro C parses the writer schema's JSON
// (avro_schema_from_json_length) and the plan builder walks that tree,
// resolving every declared path ("amount.cents", through nested records and
// ["null", record] unions) to the writer field it names. The record bytes are
// then read by the plan with a small hand-written reader (zigzag varints,
// length-prefixed strings, union branch indexes, block-encoded arrays and
// maps): declared fields are converted into their slots, everything else is
// skipped without being decoded. No avro_value is built per record and a
// record costs no heap allocation.
//
// Schema resolution (the declaration is the reader's side):
//  - A declared field the writer schema lacks (an older writer without a field
//    added later, or a newer one that removed it): optional -> not present in
//    every record of that writer; required -> kMissingField naming the path
//    and the writer schema id, for every record of that writer. The
//    declaration carries no default, so a default written in a newer schema
//    is not used for records of an older writer: declare such a field
//    optional.
//  - Writer fields the declaration does not name are skipped (so fields added
//    to newer writers, with or without defaults, change nothing).
//  - Types: int/long -> int64 (also double: Avro's promotion); float/double ->
//    double; boolean -> bool; string/bytes -> string (pointing into the
//    payload); enum -> string (the symbol; declared int64 it stops the job:
//    an index is its writer schema's, and changes as symbols are added);
//    timestamp: long with logicalType timestamp-millis / timestamp-micros
//    (or local-timestamp-*) in ms whatever the declared encoding (the
//    writer's annotation wins); a plain int/long read by the declared
//    encoding (epoch_ms / epoch_us); a string by iso8601.
//  - A union ["null", T] is optional: null -> not present (a required field
//    that is null -> kMissingField). Other branches that cannot convert are
//    kWrongType in the records that use them.
//  - A declared type the writer's type cannot give (int64 from a string) is
//    kWrongType with the path, decided once at plan build and returned for
//    every record of that writer id.
//  Arrays and maps are skipped; paths cannot address into them.
//
// Errors (DecodeError):
//  kUndecodable, path "": not the Confluent wire format (magic byte N), a
//    header shorter than 5 bytes, an unknown schema id, a writer schema that
//    does not parse, a body cut short, a varint over 10 bytes, a union
//    branch / enum index out of range, bytes after the record.
//  kMissingField / kWrongType: with the field's path (see above).
//
// Registry failures are not bad records: when the writer schema cannot be
// fetched because the registry is unreachable (anything but NotFound),
// Decode returns false AND last_fatal() is that Status. The caller must then
// stop or retry the record instead of dead-lettering it; nothing is cached,
// so a later Decode of the same id asks the registry again. An id the
// registry does not know (NotFound) is a bad record (kUndecodable "unknown
// schema id N") and is remembered for kUnknownIdRecheckMs, so a stream of
// such records costs one registry request a second, and a schema
// registered after the first of its records was read is found.
//
// Not thread-safe: one decoder per task (the registry client is shared).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "formats/record_view.h"

namespace kappa {

class SchemaRegistryClient;

class AvroDecoder final : public RecordDecoder {
 public:
  // How long an id the registry did not have is taken as unknown before
  // the registry is asked again.
  static constexpr int64_t kUnknownIdRecheckMs = 1000;

  // Writer schemas fetched from `registry` (not owned, must outlive the
  // decoder). InvalidArgument if the schema breaks ValidateRecordSchema's
  // rules or registry is null.
  static Result<std::unique_ptr<AvroDecoder>> Create(const RecordSchema& schema, SchemaRegistryClient* registry);
  // No registry: the writer schemas are given as (id, Avro schema JSON); any
  // other id is unknown. Plans are built here: InvalidArgument if a writer
  // schema does not parse (a writer that does not match the declaration is
  // not an error here: its records fail as described above). For
  // benchmarks, tests and tools that read a topic with known schemas.
  static Result<std::unique_ptr<AvroDecoder>> CreateWithWriterSchemas(
      const RecordSchema& schema, const std::vector<std::pair<int32_t, std::string>>& writer_schemas);
  ~AvroDecoder() override;
  AvroDecoder(const AvroDecoder&) = delete;
  AvroDecoder& operator=(const AvroDecoder&) = delete;

  bool Decode(const RawRecord& record, FieldValue* out, DecodeError* error) override;

  // OK unless the last Decode failed because its writer schema could not be
  // fetched (registry unreachable or failing): then that Status
  // (Unavailable, ...), and the record is not a bad record.
  const Status& last_fatal() const override;
  // Writer schema ids with a plan (or a cached error) so far.
  size_t cached_plans() const;

 private:
  struct Impl;
  explicit AvroDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kappa
