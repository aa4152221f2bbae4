// The spec's declaration of a source's fields (issue 12) read into a
// RecordSchema, and the canonical text of a schema for the spec hash.
//
//   source:
//     fields:
//       txn_id: string                          # short form: the type; the path is the name
//       user_id: {type: string, path: user.id}  # dot-separated through nested objects
//       flagged: {type: bool, optional: true}   # absent or null: no value instead of a dead letter
//       event_time: {type: timestamp, path: ts, encoding: iso8601}  # epoch_ms (default), epoch_us
//       key: {type: string, path: kafka.key}    # the Kafka key; kafka.timestamp is the Kafka timestamp
#pragma once

#include <string>

#include "base/config_node.h"
#include "base/status.h"
#include "formats/record_view.h"

namespace kappa {

// The schema declared by `fields` (the map at source.fields), slots in
// declaration order. Errors name the spec's file and line: an unknown type,
// encoding or key (listing the valid ones), a name that is not an identifier,
// an empty path segment, two fields on one path, a path that is both a value
// and an object (`a` and `a.b`), kafka.key not a string, kafka.timestamp not
// a timestamp or int64, `encoding` on a field that is not a timestamp.
Result<RecordSchema> ParseRecordSchema(const ConfigNode& fields);

// Checks a schema built in code the way ParseRecordSchema checks a spec's
// (the rules after the names): OK or InvalidArgument naming the field.
Status ValidateRecordSchema(const RecordSchema& schema);

// One line per field, in slot order: `name:type:path:encoding:optional`
// (encoding `-` unless a timestamp; optional 0/1; `%`, `:` and newlines in
// paths written as %25, %3A, %0A). Stable across releases: it feeds the
// spec hash, so a changed declaration is a changed job.
std::string CanonicalSchemaText(const RecordSchema& schema);

// "epoch_ms", "epoch_us", "iso8601".
std::string_view TimestampEncodingName(TimestampEncoding encoding);

}  // namespace kappa
