// FlatBuffers input with the user's own schema (issue 12): `format:
// flatbuffers, schema: events.fbs` (or a .bfbs). The schema is compiled at
// load by FlatBuffers' own schema compiler (the parser flatc runs, linked in,
// so no flatc is needed where kappa runs) into a binary schema, and every
// declared field's path is resolved ONCE, through the reflection tables, to a
// fixed chain of vtable slots and the leaf's type. Per record the buffer is
// verified against the schema (reflection verifier) and each field is then
// the same vtable reads a generated accessor does: no names, no lookups.
//
// Types (declared ValueType <- FlatBuffers type of the leaf):
//   int64     <- byte..long, ubyte..ulong (a ulong above INT64_MAX is kWrongType
//                at decode), or an enum (its integer value)
//   double    <- float, double, or any integer type (widened)
//   bool      <- bool
//   string    <- string, or an enum: the value's NAME in the schema
//                ("approved"); a value the schema does not name is kWrongType
//   timestamp <- an integer (epoch ms or µs per FieldDecl::timestamp) or a
//                string (ISO-8601)
// Paths go through nested tables and structs ("amount.cents", "geo.lat");
// vectors and unions cannot be declared (load error).
//
// Absence, as FlatBuffers means it:
//   - a scalar field absent from its table reads as the schema's default
//     (FlatBuffers omits defaults when writing; present=true), unless the
//     schema makes it an optional scalar (`refund: long = null;`): then absent
//     is absent.
//   - an absent string, or an absent table on the way to the leaf, is absent.
// An absent value is present=false if the field is declared optional, else
// the record fails with kMissingField and the field's path. A `(required)`
// field of the root table that is absent is kMissingField with its name too,
// declared or not (FlatBuffers' reflection verifier does not check
// `(required)`, unlike the generated one; required fields of nested tables
// are checked only as far as declared paths reach them).
//
// A buffer that fails verification (truncated, garbage, offsets out of
// bounds, the wrong file_identifier when the schema declares one) is
// kUndecodable. Payloads must be 8-byte aligned (the task copies them into an
// arena); a misaligned one fails verification.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/record_view.h"

namespace reflection {
struct Schema;
struct Object;
}  // namespace reflection

namespace kappa {

class FlatBuffersDecoder : public RecordDecoder {
 public:
  // schema_path: a .fbs (compiled here; `include`s are found next to it) or
  // a binary schema (.bfbs, recognised by its BFBS identifier, e.g. from
  // `flatc -b --schema`). root_type: the table a record is; empty means the
  // schema's root_type. It may be fully qualified ("acme.Payment") or, if
  // unambiguous, the bare name ("Payment").
  // Fails (InvalidArgument/IOError) naming the field, the path element and
  // what exists there when a declared field cannot be read as declared.
  static Result<std::unique_ptr<FlatBuffersDecoder>> Create(const RecordSchema& schema,
                                                            const std::string& schema_path,
                                                            std::string root_type = "");
  // The same from the bytes of a binary schema (.bfbs) already in memory.
  static Result<std::unique_ptr<FlatBuffersDecoder>> CreateFromBinarySchema(
      const RecordSchema& schema, std::string bfbs, std::string root_type = "",
      const std::string& origin = "binary schema");

  bool Decode(const RawRecord& record, FieldValue* out, DecodeError* error) override;

  // The fully qualified name of the root table records are read as.
  const std::string& root_type() const { return root_name_; }

  struct Plan;  // one resolved field (defined in the .cc)
  ~FlatBuffersDecoder() override;

 private:
  FlatBuffersDecoder();

  std::string bfbs_;  // owns the binary schema; schema_/root_/enum names point into it
  const reflection::Schema* schema_ = nullptr;
  const reflection::Object* root_ = nullptr;
  std::string root_name_;
  std::string file_ident_;  // checked when the root is the schema's root_type and it has one
  std::vector<Plan> plans_;  // one per declared field, in slot order
  std::vector<std::pair<uint16_t, std::string>> required_;  // the root's (required) fields: vtable slot, name
};

}  // namespace kappa
