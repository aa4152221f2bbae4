// FlatBuffers input with the user's own schema (issue 12): `format:
// flatbuffers, schema: events.fbs` (or a .bfbs). The schema is compiled at
// load by FlatBuffers' own schema compiler (the parser flatc runs, linked in,
// so no flatc is needed where kappa runs) into a binary schema, and every
// declared field's path is resolved ONCE, through the reflection tables, to a
// fixed chain of vtable slots and the leaf's type. Per record the buffer is
// verified against the schema (the checks generated Verify() code does,
// compiled from the reflection tables at load) and each field is then
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
// the record fails with kMissingField and the field's path. An absent
// `(required)` field, declared or not, is kMissingField with its path too
// ("merchant.name"), found by the verifier as generated code would.
//
// A buffer that fails verification (truncated, garbage, offsets out of
// bounds, the wrong file_identifier when the schema declares one, a union
// type the schema does not know, as FlatBuffers' reflection verifier
// rejects it) is kUndecodable. Payloads must be 8-byte aligned (the task copies them into an
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

// What a FlatBuffers schema file means, for the spec hash: its bytes and
// those of every file it includes (recursively), independent of where they
// are; a schema without includes hashes to Fnv1a64 of its bytes alone. A
// change in an included .fbs is a logic change like one in the file itself.
Result<uint64_t> FlatBuffersSchemaDigest(const std::string& schema_path);

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

  struct Plan;    // one resolved field (defined in the .cc)
  struct VCheck;  // one field of one table for the verifier (defined in the .cc)
  struct Step;    // one field of the root table: verified, and read if declared (defined in the .cc)
  ~FlatBuffersDecoder() override;

 private:
  FlatBuffersDecoder();
  // The schema's verification compiled to per-table check lists (what
  // generated Verify() code does), instead of FlatBuffers' reflection
  // verifier, which walks the schema per record. False if the schema has
  // something it does not cover (vectors of unions, unions of structs or
  // strings): Create refuses the schema then.
  bool CompileVerifier();
  struct Bounds;
  bool VerifyTable(Bounds& b, int obj, size_t pos, std::string* missing) const;
  // Verifies what the field of check `c` at buf+at points to (a string, a
  // table, a vector, a union's table): everything but an inline scalar.
  bool VerifyReferenced(Bounds& b, const VCheck& c, size_t table_pos, size_t at, std::string* missing) const;
  bool Absent(const Step& st, const uint8_t* root, FieldValue* out, bool* later);
  // Runs steps [first, last) over the table at table_pos of a buffer of
  // `size` bytes: false if the record fails verification.
  template <bool kRoot>
  bool RunSteps(const Step* first, const Step* last, Bounds& b, size_t table_pos, FieldValue* out, bool* later);
  // Reads declared field `p` of a verified record (the general path).
  bool ReadField(const Plan& p, const RawRecord& record, const uint8_t* root, FieldValue& v, DecodeError* error) const;
  bool FailRecord(const RawRecord& record, DecodeError* error);

  std::string bfbs_;  // owns the binary schema; schema_/root_/enum names point into it
  const reflection::Schema* schema_ = nullptr;
  const reflection::Object* root_ = nullptr;
  std::string root_name_;
  std::string file_ident_;  // checked when the root is the schema's root_type and it has one
  bool check_ident_ = false;
  uint32_t ident_ = 0;  // file_ident_ as read from a buffer's bytes 4..8
  std::vector<Plan> plans_;  // one per declared field, in slot order
  int root_index_ = -1;
  // Scratch: the path of a missing required field; empty except between the
  // verifier finding one and FailRecord reporting it.
  std::string missing_;
  std::vector<std::vector<VCheck>> vchecks_;  // by object index of the schema
  // The root table's fields in id order (vchecks_[root_index_]), each
  // verified per record and, for a declared field of the root read as is,
  // read in the same pass; plans_ indexes of the declared fields read after.
  std::vector<Step> steps_;
  // steps_[0, root_steps_) are the root's; after them, those of the root's
  // tables verified and read by steps (Step::Op::kTable).
  size_t root_steps_ = 0;
  std::vector<uint32_t> rest_;
};

}  // namespace kappa
