#include "formats/flatbuffers_decoder.h"

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include "base/hash.h"
#include "base/utf8.h"

namespace kappa {

// One declared field, resolved at load. Decode() follows `tables` from the
// root (one vtable read and one offset each), then reads the leaf at `slot`.
struct FlatBuffersDecoder::Plan {
  enum class Source : uint8_t { kRecord, kKafkaKey, kKafkaTimestamp };
  enum class Leaf : uint8_t { kBool, kI8, kU8, kI16, kU16, kI32, kU32, kI64, kU64, kF32, kF64, kString };
  enum class Out : uint8_t { kInt64, kDouble, kBool, kString, kMillis, kMicros, kIso, kEnumName };
  // The common shapes, a field of the root table read as is, take a short
  // path in Decode(); everything else takes the general one.
  enum class Fast : uint8_t { kNone, kString, kI64, kI64Micros, kI32, kF64, kEnumName8 };
  Fast fast = Fast::kNone;

  Source source = Source::kRecord;
  Leaf leaf = Leaf::kI64;
  Out out = Out::kInt64;
  bool optional = false;         // declared optional: absent -> present=false
  bool schema_optional = false;  // an optional scalar (`= null`): absent is absent, no default
  bool in_struct = false;        // `slot` is a struct in the last table; the leaf is at struct_offset in it
  std::vector<flatbuffers::voffset_t> tables;  // table hops from the root
  flatbuffers::voffset_t slot = 0;
  uint32_t struct_offset = 0;
  int64_t default_i = 0;
  double default_d = 0;
  // Enum names (Out::kEnumName): dense table from enum_min, else sorted pairs.
  int64_t enum_min = 0;
  std::vector<std::string_view> enum_dense;
  std::vector<std::pair<int64_t, std::string_view>> enum_sparse;
  std::string enum_name;
  std::string path;
};

// One field of one table, for the compiled verifier.
struct FlatBuffersDecoder::VCheck {
  enum class Kind : uint8_t { kScalar, kString, kTable, kVectorScalar, kVectorString, kVectorTable, kUnion };
  Kind kind = Kind::kScalar;
  bool required = false;
  flatbuffers::voffset_t slot = 0;
  flatbuffers::voffset_t type_slot = 0;  // kUnion: the slot of its _type field
  uint32_t size = 0;                     // kScalar: bytes (structs too); vectors: element bytes
  uint32_t align = 1;
  int obj = -1;                   // kTable, kVectorTable
  std::vector<int> union_objs;    // kUnion: the table for each type value (-1: none/unknown)
  std::string name;               // for the path of a missing required field
};

// One field of the root table, as Decode() runs it per record: the
// verifier's check of it and, when a declared field reads it as is (a string,
// a long/int/double, a byte enum's name), that read too, in one pass over the
// root's vtable. 40 bytes, so the root's steps sit in a few cache lines.
struct FlatBuffersDecoder::Step {
  // What the step does with a present field: one dispatch per field.
  enum class Op : uint8_t {
    kScalar,      // check bounds and alignment
    kI64,         // ... and read a long (int64, epoch ms)
    kI64Micros,   // ... and read a long of epoch µs as epoch ms
    kI32,         // ... and read an int
    kF64,         // ... and read a double
    kEnum8,       // ... and read a byte/ubyte enum's name
    kString,      // check the string
    kReadString,  // ... and read it
    kOther,       // a table, vector or union: VerifyReferenced
    kTable,       // a table of scalars and strings: verified, and its declared
                  // fields read, by its own steps (steps_[out, out + size))
  };
  // What the step does with an absent field.
  enum class IfAbsent : uint8_t {
    kNothing,  // an unread, optional field: nothing to check or write
    kValue,    // write absent_ (the schema's default, or present=false)
    kCheck,    // Absent(): a required field, a union, or a field ReadField must fail
    kLater,    // a kTable whose steps read: ReadField reads its fields
  };
  Op op = Op::kScalar;
  IfAbsent if_absent = IfAbsent::kNothing;
  uint8_t align_mask = 0;  // scalars: align - 1
  flatbuffers::voffset_t slot = 0;
  uint16_t out = 0;   // a reading op: the declared field's index
  uint16_t size = 0;  // scalars: bytes; kTable: its number of steps
  uint16_t obj = 0;    // the object index of the table the field is in
  uint32_t check = 0;  // index in that table's VCheck list
  FieldValue absent{};  // kValue: what an absent field reads as
  bool reads() const { return op != Op::kScalar && op != Op::kString && op != Op::kOther && op != Op::kTable; }
};

FlatBuffersDecoder::FlatBuffersDecoder() = default;
FlatBuffersDecoder::~FlatBuffersDecoder() = default;

namespace {

using reflection::BaseType;
using Plan = FlatBuffersDecoder::Plan;

bool IsInteger(BaseType t) { return t >= reflection::Byte && t <= reflection::ULong; }
bool IsFloat(BaseType t) { return t == reflection::Float || t == reflection::Double; }

std::string BaseTypeName(BaseType t) {
  switch (t) {
    case reflection::Bool: return "bool";
    case reflection::Byte: return "byte";
    case reflection::UByte: return "ubyte";
    case reflection::Short: return "short";
    case reflection::UShort: return "ushort";
    case reflection::Int: return "int";
    case reflection::UInt: return "uint";
    case reflection::Long: return "long";
    case reflection::ULong: return "ulong";
    case reflection::Float: return "float";
    case reflection::Double: return "double";
    case reflection::String: return "string";
    case reflection::Vector: return "vector";
    case reflection::Obj: return "table";
    case reflection::Union: return "union";
    case reflection::UType: return "union type";
    case reflection::Array: return "array";
    default: return "?";
  }
}

// "long", "enum acme.Status (byte)", "table acme.Money", "vector of string"...
std::string DescribeType(const reflection::Schema& schema, const reflection::Field& f) {
  const auto* type = f.type();
  const BaseType bt = type->base_type();
  if (bt == reflection::Obj) {
    const auto* obj = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(type->index()));
    return std::string(obj->is_struct() ? "struct " : "table ") + obj->name()->str();
  }
  if (bt == reflection::Vector || bt == reflection::Array) {
    return BaseTypeName(bt) + " of " + BaseTypeName(type->element());
  }
  if (IsInteger(bt) && type->index() >= 0) {
    const auto* e = schema.enums()->Get(static_cast<flatbuffers::uoffset_t>(type->index()));
    return "enum " + e->name()->str() + " (" + BaseTypeName(bt) + ")";
  }
  return BaseTypeName(bt);
}

// "a long", "an int", "an enum ...".
std::string WithArticle(const std::string& noun) {
  return (noun.empty() || std::string_view("aeiou").find(noun[0]) == std::string_view::npos ? "a " : "an ") + noun;
}

// The object's usable fields, in declaration order: "id, user, amount".
std::string FieldList(const reflection::Object& obj) {
  std::vector<const reflection::Field*> fields;
  for (const auto* f : *obj.fields()) {
    if (!f->deprecated() && f->type()->base_type() != reflection::UType) fields.push_back(f);
  }
  std::sort(fields.begin(), fields.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
  std::string out;
  for (const auto* f : fields) {
    if (!out.empty()) out += ", ";
    out += f->name()->str();
  }
  return out.empty() ? "(none)" : out;
}

std::string ObjectList(const reflection::Schema& schema) {
  std::string out;
  for (const auto* o : *schema.objects()) {
    if (o->is_struct()) continue;
    if (!out.empty()) out += ", ";
    out += o->name()->str();
  }
  return out.empty() ? "(none)" : out;
}

Plan::Leaf LeafOf(BaseType t) {
  switch (t) {
    case reflection::Bool: return Plan::Leaf::kBool;
    case reflection::Byte: return Plan::Leaf::kI8;
    case reflection::UByte: return Plan::Leaf::kU8;
    case reflection::Short: return Plan::Leaf::kI16;
    case reflection::UShort: return Plan::Leaf::kU16;
    case reflection::Int: return Plan::Leaf::kI32;
    case reflection::UInt: return Plan::Leaf::kU32;
    case reflection::Long: return Plan::Leaf::kI64;
    case reflection::ULong: return Plan::Leaf::kU64;
    case reflection::Float: return Plan::Leaf::kF32;
    case reflection::Double: return Plan::Leaf::kF64;
    default: return Plan::Leaf::kString;
  }
}

// A schema is kilobytes; /dev/zero as `schema:` was read until memory ran
// out, and the message blamed the job's state (a bug bash).
constexpr size_t kMaxSchemaBytes = 16 << 20;

Result<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  const auto type = std::filesystem::status(path, ec).type();
  if (!ec && type != std::filesystem::file_type::regular) {
    return Status::InvalidArgument("the FlatBuffers schema " + path + " is not a regular file (" +
                                   (type == std::filesystem::file_type::directory ? "a directory" : "a device or pipe") +
                                   "): give the .fbs or .bfbs file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read the FlatBuffers schema " + path + ": " + std::strerror(errno));
  std::string bytes(kMaxSchemaBytes + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) return Status::IOError("cannot read the FlatBuffers schema " + path + ": " + std::strerror(errno));
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (bytes.size() > kMaxSchemaBytes) {
    return Status::InvalidArgument("the FlatBuffers schema " + path + " is over " +
                                   std::to_string(kMaxSchemaBytes >> 20) + " MiB (is this the right file?)");
  }
  return bytes;
}

bool LooksBinarySchema(const std::string& bytes) {
  return bytes.size() >= 8 && flatbuffers::BufferHasIdentifier(bytes.data(), reflection::SchemaIdentifier());
}

// Resolves one declared field against the root table.
Status Resolve(const reflection::Schema& schema, const reflection::Object& root, const FieldDecl& decl, Plan* plan) {
  plan->optional = decl.optional;
  plan->path = decl.path;
  const std::string what = "field `" + decl.name + "` (path `" + decl.path + "`)";

  if (decl.path == "kafka.key") {
    if (decl.type != ValueType::kString) {
      return Status::InvalidArgument(what + " is the Kafka key, a string, but is declared " +
                                     std::string(ValueTypeName(decl.type)) + "; declare it string");
    }
    plan->source = Plan::Source::kKafkaKey;
    plan->out = Plan::Out::kString;
    return Status::OK();
  }
  if (decl.path == "kafka.timestamp") {
    if (decl.type != ValueType::kTimestamp && decl.type != ValueType::kInt64) {
      return Status::InvalidArgument(what + " is the Kafka timestamp (epoch ms) but is declared " +
                                     std::string(ValueTypeName(decl.type)) + "; declare it timestamp or int64");
    }
    plan->source = Plan::Source::kKafkaTimestamp;
    plan->out = Plan::Out::kInt64;
    return Status::OK();
  }

  // Walk the path: tables, then at most a run of structs, then the leaf.
  const reflection::Object* obj = &root;
  std::string at = root.name()->str();  // where we are, for messages
  size_t start = 0;
  const reflection::Field* leaf = nullptr;
  bool in_struct = false;
  uint32_t struct_offset = 0;
  for (;;) {
    const size_t dot = decl.path.find('.', start);
    const std::string element = decl.path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (element.empty()) return Status::InvalidArgument(what + ": the path has an empty element");
    const reflection::Field* f = obj->fields()->LookupByKey(element.c_str());
    if (f == nullptr || f->type()->base_type() == reflection::UType) {
      return Status::InvalidArgument(what + ": " + std::string(obj->is_struct() ? "struct " : "table ") +
                                     obj->name()->str() +
                                     " has no field `" + element + "`; its fields: " + FieldList(*obj));
    }
    if (f->deprecated()) {
      return Status::InvalidArgument(what + ": `" + at + "." + element +
                                     "` is deprecated in the schema, so records no longer carry it");
    }
    const BaseType bt = f->type()->base_type();
    const std::string here = at + "." + element;
    if (dot == std::string::npos) {
      leaf = f;
      if (in_struct) struct_offset += f->offset();
      break;
    }
    // Not the last element: it must be a table or a struct to go into.
    if (bt != reflection::Obj) {
      return Status::InvalidArgument(what + ": `" + here + "` is " + WithArticle(DescribeType(schema, *f)) +
                                     ", not a table, so the path cannot go on to `" + decl.path.substr(dot + 1) + "`");
    }
    const auto* next = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(f->type()->index()));
    if (next->is_struct()) {
      if (!in_struct) {
        in_struct = true;
        plan->slot = f->offset();
        struct_offset = 0;
      } else {
        struct_offset += f->offset();  // a struct nested in a struct: inline at this offset
      }
    } else {
      plan->tables.push_back(f->offset());
    }
    obj = next;
    at = here;
    start = dot + 1;
  }

  const BaseType bt = leaf->type()->base_type();
  const std::string here = at + "." + leaf->name()->str();
  const std::string declared = std::string(ValueTypeName(decl.type));
  auto mismatch = [&](const std::string& hint) {
    return Status::InvalidArgument(what + " is declared " + declared + ", but `" + here + "` is " +
                                   WithArticle(DescribeType(schema, *leaf)) + hint);
  };
  if (bt == reflection::Obj) {
    const auto* o = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(leaf->type()->index()));
    return mismatch("; declare a path to a field inside it (its fields: " + FieldList(*o) + ")");
  }
  if (bt == reflection::Vector || bt == reflection::Array || bt == reflection::Union) {
    return mismatch("; vectors and unions cannot be declared as fields");
  }
  const bool is_enum = IsInteger(bt) && leaf->type()->index() >= 0;
  plan->in_struct = in_struct;
  if (!in_struct) plan->slot = leaf->offset();
  plan->struct_offset = struct_offset;
  plan->leaf = LeafOf(bt);
  plan->default_i = leaf->default_integer();
  // A float field's default as the float generated code returns (0.1 read
  // 0.1 absent and 0.10000000149011612 stored: two values for one).
  plan->default_d = bt == reflection::Float ? static_cast<double>(static_cast<float>(leaf->default_real()))
                                            : leaf->default_real();
  plan->schema_optional = leaf->optional() && bt != reflection::String;

  switch (decl.type) {
    case ValueType::kInt64:
      if (!IsInteger(bt)) return mismatch("; int64 reads integer and enum fields");
      plan->out = Plan::Out::kInt64;
      break;
    case ValueType::kDouble:
      if (!IsInteger(bt) && !IsFloat(bt)) return mismatch("; double reads float, double and integer fields");
      if (is_enum) return mismatch("; declare an enum int64 (its value) or string (its name)");
      plan->out = Plan::Out::kDouble;
      break;
    case ValueType::kBool:
      if (bt != reflection::Bool) return mismatch("; bool reads bool fields");
      plan->out = Plan::Out::kBool;
      break;
    case ValueType::kString:
      if (bt == reflection::String) {
        plan->out = Plan::Out::kString;
      } else if (is_enum) {
        const auto* e = schema.enums()->Get(static_cast<flatbuffers::uoffset_t>(leaf->type()->index()));
        // A bit_flags value is a set of flags (3: Read and Write; 0: none),
        // not one symbol: as a name every combination was dead-lettered as
        // an unnamed value "(a newer schema?)" (a bug bash).
        if (e->attributes() != nullptr && e->attributes()->LookupByKey("bit_flags") != nullptr) {
          return mismatch("; a bit_flags enum's value is a set of flags, not one name: declare it int64 (its bits)");
        }
        plan->out = Plan::Out::kEnumName;
        plan->enum_name = e->name()->str();
        int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
        for (const auto* v : *e->values()) {
          lo = std::min(lo, v->value());
          hi = std::max(hi, v->value());
          plan->enum_sparse.emplace_back(v->value(), v->name()->string_view());
        }
        std::sort(plan->enum_sparse.begin(), plan->enum_sparse.end());
        {
          // The schema is the job's for good: a filter literal that is no
          // symbol never matches, which is refused now rather than filtering
          // nothing in silence.
          std::vector<std::string_view> symbols;
          for (const auto& [value, name] : plan->enum_sparse) symbols.push_back(name);
          if (auto problem = EnumLiteralMismatch(decl, plan->enum_name, symbols, /*every_literal=*/true)) {
            return Status::InvalidArgument(*problem);
          }
        }
        if (!plan->enum_sparse.empty() && static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) < 4096) {
          plan->enum_min = lo;
          plan->enum_dense.assign(static_cast<size_t>(hi - lo + 1), std::string_view());
          for (const auto& [value, name] : plan->enum_sparse) plan->enum_dense[static_cast<size_t>(value - lo)] = name;
        }
      } else {
        return mismatch("; string reads string fields and enums (by name)");
      }
      break;
    case ValueType::kTimestamp:
      if (decl.timestamp == TimestampEncoding::kIso8601) {
        if (bt != reflection::String) return mismatch("; an ISO-8601 timestamp reads a string field");
        plan->out = Plan::Out::kIso;
      } else {
        if (!IsInteger(bt) || is_enum) {
          return mismatch("; an epoch timestamp reads an integer field (or declare timestamp: iso8601 for a string)");
        }
        plan->out = decl.timestamp == TimestampEncoding::kEpochMicros ? Plan::Out::kMicros : Plan::Out::kMillis;
      }
      break;
  }
  return Status::OK();
}

int64_t FloorDiv1000(int64_t v) {
  int64_t q = v / 1000;
  if ((v % 1000) < 0) --q;
  return q;
}

}  // namespace

bool FlatBuffersDecoder::CompileVerifier() {
  const auto& objects = *schema_->objects();
  vchecks_.assign(objects.size(), {});
  std::vector<bool> seen(objects.size(), false);
  std::vector<int> work;
  auto visit = [&](int obj) {
    if (!seen[static_cast<size_t>(obj)]) {
      seen[static_cast<size_t>(obj)] = true;
      work.push_back(obj);
    }
  };
  int root_index = -1;
  for (flatbuffers::uoffset_t i = 0; i < objects.size(); ++i) {
    if (objects.Get(i) == root_) root_index = static_cast<int>(i);
  }
  if (root_index < 0) return false;
  visit(root_index);
  while (!work.empty()) {
    const int obj = work.back();
    work.pop_back();
    std::vector<const reflection::Field*> fields(objects.Get(static_cast<flatbuffers::uoffset_t>(obj))->fields()->begin(),
                                                 objects.Get(static_cast<flatbuffers::uoffset_t>(obj))->fields()->end());
    std::sort(fields.begin(), fields.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
    std::vector<VCheck>& checks = vchecks_[static_cast<size_t>(obj)];
    for (const auto* f : fields) {
      VCheck c;
      c.slot = f->offset();
      c.required = f->required();
      c.name = f->name()->str();
      const auto* type = f->type();
      const auto bt = type->base_type();
      if (bt == reflection::Obj) {
        const auto* o = objects.Get(static_cast<flatbuffers::uoffset_t>(type->index()));
        if (o->is_struct()) {
          c.kind = VCheck::Kind::kScalar;
          c.size = static_cast<uint32_t>(o->bytesize());
          c.align = static_cast<uint32_t>(o->minalign());
        } else {
          c.kind = VCheck::Kind::kTable;
          c.obj = type->index();
          visit(c.obj);
        }
      } else if (bt == reflection::String) {
        c.kind = VCheck::Kind::kString;
      } else if (bt == reflection::Vector) {
        const auto el = type->element();
        if (el == reflection::String) {
          c.kind = VCheck::Kind::kVectorString;
        } else if (el == reflection::Obj) {
          const auto* o = objects.Get(static_cast<flatbuffers::uoffset_t>(type->index()));
          if (o->is_struct()) {
            c.kind = VCheck::Kind::kVectorScalar;
            c.size = static_cast<uint32_t>(o->bytesize());
          } else {
            c.kind = VCheck::Kind::kVectorTable;
            c.obj = type->index();
            visit(c.obj);
          }
        } else if (el == reflection::Union || el == reflection::Vector || el == reflection::Array) {
          return false;
        } else {
          c.kind = VCheck::Kind::kVectorScalar;
          c.size = static_cast<uint32_t>(flatbuffers::GetTypeSize(el));
        }
      } else if (bt == reflection::Union) {
        c.kind = VCheck::Kind::kUnion;
        const auto* e = schema_->enums()->Get(static_cast<flatbuffers::uoffset_t>(type->index()));
        const flatbuffers::voffset_t type_slot = static_cast<flatbuffers::voffset_t>(c.slot - sizeof(flatbuffers::voffset_t));
        c.type_slot = type_slot;
        for (const auto* v : *e->values()) {
          if (v->value() == 0) continue;  // NONE
          if (v->value() < 0 || v->value() > 255) return false;
          const auto* ut = v->union_type();
          if (ut == nullptr || ut->base_type() != reflection::Obj) return false;
          const auto* o = objects.Get(static_cast<flatbuffers::uoffset_t>(ut->index()));
          if (o->is_struct()) return false;
          if (c.union_objs.size() <= static_cast<size_t>(v->value())) c.union_objs.resize(static_cast<size_t>(v->value()) + 1, -1);
          c.union_objs[static_cast<size_t>(v->value())] = ut->index();
          visit(ut->index());
        }
      } else if (bt == reflection::Array || bt == reflection::None) {
        return false;
      } else {  // scalars, union types
        c.kind = VCheck::Kind::kScalar;
        c.size = c.align = static_cast<uint32_t>(flatbuffers::GetTypeSize(bt));
      }
      checks.push_back(std::move(c));
    }
  }
  root_index_ = root_index;
  return true;
}

// The bounds checks of flatbuffers::Verifier (same rules: alignment relative
// to the buffer's start, offsets non-zero and forward, strings
// NUL-terminated, depth <= 64 and <= 1M tables), on positions, so that they
// inline into the compiled checks.
struct FlatBuffersDecoder::Bounds {
  const uint8_t* buf;
  size_t size;
  uint32_t depth = 0;
  uint32_t tables = 0;

  // Every pos and len given is below 2^34 (a 32-bit size, plus at most a
  // 32-bit offset or length), so the sum cannot overflow.
  [[gnu::always_inline]] bool In(size_t pos, size_t len) const { return pos + len <= size; }
  static bool Aligned(size_t pos, size_t align) { return (pos & (align - 1)) == 0; }
  uint32_t U32(size_t pos) const { return flatbuffers::ReadScalar<uint32_t>(buf + pos); }
  // The target of the offset at pos, or 0.
  [[gnu::always_inline]] size_t Offset(size_t pos) const {
    if (!Aligned(pos, 4) || !In(pos, 4)) return 0;
    const uint32_t o = U32(pos);
    if (o == 0 || static_cast<int32_t>(o) < 0 || !In(pos + o, 1)) return 0;
    return pos + o;
  }
  [[gnu::always_inline]] bool TableStart(size_t pos) {
    if (!Aligned(pos, 4) || !In(pos, 4)) return false;
    const int64_t vt = static_cast<int64_t>(pos) - flatbuffers::ReadScalar<int32_t>(buf + pos);
    if (++depth > 64 || ++tables > 1000000) return false;
    if (vt < 0 || !Aligned(static_cast<size_t>(vt), 2) || !In(static_cast<size_t>(vt), 2)) return false;
    const uint16_t vsize = flatbuffers::ReadScalar<uint16_t>(buf + vt);
    return (vsize & 1) == 0 && In(static_cast<size_t>(vt), vsize);
  }
  bool Vector(size_t pos, size_t elem) const {
    if (!Aligned(pos, 4) || !In(pos, 4)) return false;
    const uint32_t n = U32(pos);
    return n < FLATBUFFERS_MAX_BUFFER_SIZE / elem && In(pos + 4, size_t{n} * elem);
  }
  [[gnu::always_inline]] bool String(size_t pos) const {
    if (!Aligned(pos, 4) || !In(pos, 4)) return false;
    const uint32_t n = U32(pos);
    return In(pos + 4, size_t{n} + 1) && buf[pos + 4 + n] == 0;
  }
};

// What generated Verify() code does for one table, from the compiled checks.
bool FlatBuffersDecoder::VerifyTable(Bounds& b, int obj, size_t pos, std::string* missing) const {
  if (!b.TableStart(pos)) return false;
  const auto* t = reinterpret_cast<const flatbuffers::Table*>(b.buf + pos);
  for (const VCheck& c : vchecks_[static_cast<size_t>(obj)]) {
    const flatbuffers::voffset_t off = t->GetOptionalFieldOffset(c.slot);
    if (off == 0) {
      if (c.required) {
        *missing = c.name;
        return false;
      }
      // A union's type without its value (as the reflection verifier rejects).
      if (c.kind == VCheck::Kind::kUnion && t->GetField<uint8_t>(c.type_slot, 0) != 0) return false;
      continue;
    }
    const size_t at = pos + off;
    if (c.kind == VCheck::Kind::kScalar) {
      if (!Bounds::Aligned(at, c.align) || !b.In(at, c.size)) return false;
      continue;
    }
    if (!VerifyReferenced(b, c, pos, at, missing)) return false;
  }
  --b.depth;
  return true;
}

bool FlatBuffersDecoder::VerifyReferenced(Bounds& b, const VCheck& c, size_t table_pos, size_t at,
                                          std::string* missing) const {
  const size_t p = b.Offset(at);
  if (p == 0) return false;
  switch (c.kind) {
    case VCheck::Kind::kScalar: break;
    case VCheck::Kind::kString:
      if (!b.String(p)) return false;
      break;
    case VCheck::Kind::kTable:
      if (!VerifyTable(b, c.obj, p, missing)) {
        if (!missing->empty()) *missing = c.name + "." + *missing;
        return false;
      }
      break;
    case VCheck::Kind::kVectorScalar:
      if (!b.Vector(p, c.size)) return false;
      break;
    case VCheck::Kind::kVectorString:
    case VCheck::Kind::kVectorTable: {
      if (!b.Vector(p, 4)) return false;
      const uint32_t n = b.U32(p);
      for (uint32_t i = 0; i < n; ++i) {
        const size_t e = b.Offset(p + 4 + size_t{i} * 4);
        if (e == 0) return false;
        if (c.kind == VCheck::Kind::kVectorString) {
          if (!b.String(e)) return false;
        } else if (!VerifyTable(b, c.obj, e, missing)) {
          if (!missing->empty()) *missing = c.name + "." + *missing;
          return false;
        }
      }
      break;
    }
    case VCheck::Kind::kUnion: {
      const auto* t = reinterpret_cast<const flatbuffers::Table*>(b.buf + table_pos);
      const uint8_t type = t->GetField<uint8_t>(c.type_slot, 0);
      // A type the schema does not know (a member a newer schema appended,
      // an allowed change) is skipped, as generated code's verifier does:
      // rejecting it dead-lettered records whose declared fields never go
      // near the union (a bug bash). Paths through unions are refused at
      // load, so nothing reads it.
      if (type >= c.union_objs.size() || c.union_objs[type] < 0) break;
      if (!VerifyTable(b, c.union_objs[type], p, missing)) {
        if (!missing->empty()) *missing = c.name + "." + *missing;
        return false;
      }
      break;
    }
  }
  return true;
}

Result<uint64_t> FlatBuffersSchemaDigest(const std::string& schema_path) {
  auto bytes = ReadWholeFile(schema_path);
  if (!bytes.ok()) return bytes.status();
  if (LooksBinarySchema(*bytes)) return Fnv1a64(*bytes);  // compiled: includes are in it
  flatbuffers::IDLOptions opts;
  flatbuffers::Parser parser(opts);
  const std::string dir = std::filesystem::path(schema_path).parent_path().string();
  const std::string include_dir = dir.empty() ? "." : dir;
  const char* include_paths[] = {include_dir.c_str(), nullptr};
  if (!parser.Parse(bytes->c_str(), include_paths, schema_path.c_str())) return Fnv1a64(*bytes);  // refused later
  // The included files' contents, in an order that does not depend on paths.
  std::vector<std::pair<uint64_t, std::string>> included;
  for (const std::string& file : parser.GetIncludedFilesRecursive(schema_path)) {
    if (file == schema_path) continue;
    auto text = ReadWholeFile(file);
    if (!text.ok()) return text.status();
    included.emplace_back(Fnv1a64(*text), std::move(*text));
  }
  if (included.empty()) return Fnv1a64(*bytes);
  std::sort(included.begin(), included.end());
  std::string all = *bytes;
  for (const auto& [hash, text] : included) all += '\0' + text;
  return Fnv1a64(all);
}

Result<std::unique_ptr<FlatBuffersDecoder>> FlatBuffersDecoder::Create(const RecordSchema& schema,
                                                                       const std::string& schema_path,
                                                                       std::string root_type) {
  auto bytes = ReadWholeFile(schema_path);
  if (!bytes.ok()) return bytes.status();
  if (LooksBinarySchema(*bytes)) {
    return CreateFromBinarySchema(schema, std::move(*bytes), std::move(root_type), schema_path);
  }
  // A .fbs: compile it with FlatBuffers' own parser (what `flatc -b --schema`
  // runs); `include "x.fbs"` is looked up next to the file. With the
  // built-in attributes (bit_flags) kept in the reflection.
  flatbuffers::IDLOptions opts;
  opts.binary_schema_builtins = true;
  flatbuffers::Parser parser(opts);
  const std::string dir = std::filesystem::path(schema_path).parent_path().string();
  const std::string include_dir = dir.empty() ? "." : dir;
  const char* include_paths[] = {include_dir.c_str(), nullptr};
  if (!parser.Parse(bytes->c_str(), include_paths, schema_path.c_str())) {
    std::string err = parser.error_;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return Status::InvalidArgument("the FlatBuffers schema " + schema_path + " does not compile: " + err);
  }
  // Reflection keeps a default as an int64: a ulong default above
  // INT64_MAX (18446744073709551615) was stored as 0, and an absent field
  // read 0 (a bug bash). Its two's-complement int64 keeps the bits, which
  // the reader takes back as uint64.
  for (flatbuffers::StructDef* def : parser.structs_.vec) {
    for (flatbuffers::FieldDef* field : def->fields.vec) {
      if (field->value.type.base_type != flatbuffers::BASE_TYPE_ULONG) continue;
      const std::string& text = field->value.constant;
      char* end = nullptr;
      errno = 0;
      const unsigned long long u = std::strtoull(text.c_str(), &end, 0);
      if (errno == 0 && end != text.c_str() && *end == '\0' &&
          u > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
        field->value.constant = std::to_string(static_cast<int64_t>(u));
      }
    }
  }
  parser.Serialize();
  std::string bfbs(reinterpret_cast<const char*>(parser.builder_.GetBufferPointer()), parser.builder_.GetSize());
  return CreateFromBinarySchema(schema, std::move(bfbs), std::move(root_type), schema_path);
}

Result<std::unique_ptr<FlatBuffersDecoder>> FlatBuffersDecoder::CreateFromBinarySchema(const RecordSchema& schema,
                                                                                       std::string bfbs,
                                                                                       std::string root_type,
                                                                                       const std::string& origin) {
  std::unique_ptr<FlatBuffersDecoder> d(new FlatBuffersDecoder());
  // Copy into 8-byte aligned storage the verifier accepts (std::string's
  // buffer is at least 16-byte aligned from the heap; a short string is SSO).
  d->bfbs_ = std::move(bfbs);
  d->bfbs_.reserve(32);
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(d->bfbs_.data()), d->bfbs_.size());
  if (!reflection::VerifySchemaBuffer(verifier)) {
    return Status::InvalidArgument(origin +
                                   " is not a valid binary FlatBuffers schema (.bfbs); give a .fbs or the output of "
                                   "`flatc -b --schema`");
  }
  d->schema_ = reflection::GetSchema(d->bfbs_.data());
  const reflection::Schema& s = *d->schema_;
  if (s.objects() == nullptr || s.objects()->size() == 0) {
    return Status::InvalidArgument(origin + " declares no tables");
  }
  if (root_type.empty()) {
    if (s.root_table() == nullptr) {
      return Status::InvalidArgument(origin + " declares no root_type; name the table records are (root_type), one of: " +
                                     ObjectList(s));
    }
    d->root_ = s.root_table();
    if (s.file_ident() != nullptr) d->file_ident_ = s.file_ident()->str();
  } else {
    const reflection::Object* found = s.objects()->LookupByKey(root_type.c_str());
    if (found == nullptr) {
      int matches = 0;
      for (const auto* o : *s.objects()) {
        const std::string name = o->name()->str();
        if (name.size() > root_type.size() && name.compare(name.size() - root_type.size(), root_type.size(), root_type) == 0 &&
            name[name.size() - root_type.size() - 1] == '.') {
          found = o;
          ++matches;
        }
      }
      if (matches > 1) {
        return Status::InvalidArgument("root type `" + root_type + "` is ambiguous in " + origin +
                                       "; qualify it with its namespace, one of: " + ObjectList(s));
      }
    }
    if (found == nullptr) {
      return Status::InvalidArgument(origin + " has no table `" + root_type + "`; its tables: " + ObjectList(s));
    }
    if (found->is_struct()) {
      return Status::InvalidArgument("root type `" + root_type + "` in " + origin +
                                     " is a struct; a record is a table, one of: " + ObjectList(s));
    }
    d->root_ = found;
    if (s.root_table() == found && s.file_ident() != nullptr) d->file_ident_ = s.file_ident()->str();
  }
  d->root_name_ = d->root_->name()->str();
  if (!d->CompileVerifier()) {
    // The only other verifier is FlatBuffers 2.0.8's reflection verifier,
    // which reads out of bounds on some corrupt records (AddressSanitizer
    // showed it): a bad record must be a dead letter, never a crash.
    return Status::InvalidArgument("table " + d->root_name_ +
                                   " (or a table it reaches) has a vector of unions, which kappa cannot verify "
                                   "safely yet; give the record a schema without one");
  }
  if (d->file_ident_.size() == flatbuffers::kFileIdentifierLength) {
    d->check_ident_ = true;
    d->ident_ = flatbuffers::ReadScalar<uint32_t>(d->file_ident_.data());
  } else {
    d->file_ident_.clear();
  }
  d->plans_.resize(static_cast<size_t>(schema.size()));
  for (int i = 0; i < schema.size(); ++i) {
    Plan& p = d->plans_[static_cast<size_t>(i)];
    KAPPA_RETURN_IF_ERROR(Resolve(s, *d->root_, schema.field(i), &p));
    // The root's fields and those of a table the root holds (one hop), read as is.
    if (p.source == Plan::Source::kRecord && p.tables.size() <= 1 && !p.in_struct && !p.schema_optional) {
      const bool integer = p.out == Plan::Out::kInt64 || p.out == Plan::Out::kMillis;
      if (p.leaf == Plan::Leaf::kString && p.out == Plan::Out::kString) p.fast = Plan::Fast::kString;
      if (p.leaf == Plan::Leaf::kI64 && integer) p.fast = Plan::Fast::kI64;
      if (p.leaf == Plan::Leaf::kI64 && p.out == Plan::Out::kMicros) p.fast = Plan::Fast::kI64Micros;
      if (p.leaf == Plan::Leaf::kI32 && integer) p.fast = Plan::Fast::kI32;
      if (p.leaf == Plan::Leaf::kF64 && p.out == Plan::Out::kDouble) p.fast = Plan::Fast::kF64;
      if ((p.leaf == Plan::Leaf::kI8 || p.leaf == Plan::Leaf::kU8) && p.out == Plan::Out::kEnumName &&
          !p.enum_dense.empty()) {
        p.fast = Plan::Fast::kEnumName8;
      }
    }
  }
  // The steps of the fields of one table, in the verifier's order.
  auto table_steps = [&](int obj) {
    const std::vector<VCheck>& checks = d->vchecks_[static_cast<size_t>(obj)];
    std::vector<Step> steps;
    for (size_t c = 0; c < checks.size(); ++c) {
      const VCheck& vc = checks[c];
      Step st;
      st.slot = vc.slot;
      st.op = vc.kind == VCheck::Kind::kScalar   ? Step::Op::kScalar
              : vc.kind == VCheck::Kind::kString ? Step::Op::kString
                                                 : Step::Op::kOther;
      // A struct is at most a few KB; larger ones take the general check.
      if (vc.kind == VCheck::Kind::kScalar && vc.size > std::numeric_limits<uint16_t>::max()) st.op = Step::Op::kOther;
      st.size = static_cast<uint16_t>(vc.size);
      st.align_mask = static_cast<uint8_t>(vc.align - 1);
      st.obj = static_cast<uint16_t>(obj);
      st.check = static_cast<uint32_t>(c);
      steps.push_back(st);
    }
    return steps;
  };
  // The root's steps: every field the verifier checks, in the same order.
  // A field that is a table of only scalars and strings (`amount: Money`) is
  // verified by steps of its own, appended after the root's, in the same
  // order VerifyTable checks them.
  const std::vector<VCheck>& root_checks = d->vchecks_[static_cast<size_t>(d->root_index_)];
  const size_t objects = d->vchecks_.size();
  d->steps_ = table_steps(d->root_index_);
  d->root_steps_ = d->steps_.size();
  if (objects > std::numeric_limits<uint16_t>::max()) {
    d->steps_.clear();
    d->root_steps_ = 0;
    return Status::InvalidArgument(origin + " has more than 65535 tables");
  }
  for (size_t r = 0; r < d->root_steps_; ++r) {
    const VCheck& vc = root_checks[d->steps_[r].check];
    if (vc.kind != VCheck::Kind::kTable) continue;
    bool flat = true;
    for (const VCheck& sub : d->vchecks_[static_cast<size_t>(vc.obj)]) {
      flat &= sub.kind == VCheck::Kind::kString ||
              (sub.kind == VCheck::Kind::kScalar && sub.size <= std::numeric_limits<uint16_t>::max());
    }
    const std::vector<Step> sub = table_steps(vc.obj);
    if (!flat || d->steps_.size() + sub.size() > std::numeric_limits<uint16_t>::max()) continue;
    d->steps_[r].op = Step::Op::kTable;
    d->steps_[r].out = static_cast<uint16_t>(d->steps_.size());
    d->steps_[r].size = static_cast<uint16_t>(sub.size());
    d->steps_.insert(d->steps_.end(), sub.begin(), sub.end());
  }
  // A declared field of the common shapes is read by the step of its slot
  // (one declared field per step; a second one reading the same slot, and
  // every other declared field, is read after verification by ReadField).
  for (size_t i = 0; i < d->plans_.size(); ++i) {
    const Plan& p = d->plans_[i];
    bool fused = false;
    if (p.fast != Plan::Fast::kNone && i <= std::numeric_limits<uint16_t>::max()) {
      size_t first = 0, last = d->root_steps_;
      if (!p.tables.empty()) {  // in a table of the root: that table's steps, if it has them
        last = 0;
        for (size_t r = 0; r < d->root_steps_; ++r) {
          const Step& t = d->steps_[r];
          if (t.op == Step::Op::kTable && t.slot == p.tables[0]) {
            first = t.out;
            last = first + t.size;
          }
        }
      }
      for (size_t k = first; k < last; ++k) {
        Step& st = d->steps_[k];
        if (st.slot != p.slot || st.reads() || st.op == Step::Op::kOther || st.op == Step::Op::kTable) continue;
        switch (p.fast) {
          case Plan::Fast::kString: st.op = Step::Op::kReadString; break;
          case Plan::Fast::kI64: st.op = Step::Op::kI64; break;
          case Plan::Fast::kI64Micros: st.op = Step::Op::kI64Micros; break;
          case Plan::Fast::kI32: st.op = Step::Op::kI32; break;
          case Plan::Fast::kF64: st.op = Step::Op::kF64; break;
          case Plan::Fast::kEnumName8: st.op = Step::Op::kEnum8; break;
          case Plan::Fast::kNone: break;
        }
        st.out = static_cast<uint16_t>(i);
        fused = true;
        break;
      }
    }
    if (!fused) d->rest_.push_back(static_cast<uint32_t>(i));
  }
  // What an absent field means, worked out once: Absent() with a throwaway
  // FieldValue gives the value a reading step writes, and whether the case
  // needs Absent() per record at all.
  for (Step& st : d->steps_) {
    const VCheck& c = d->vchecks_[st.obj][st.check];
    if (c.required || c.kind == VCheck::Kind::kUnion) {
      st.if_absent = Step::IfAbsent::kCheck;
    } else if (st.op == Step::Op::kTable) {
      // An absent table: its declared fields are absent, which ReadField says.
      bool reads = false;
      for (size_t k = st.out; k < size_t{st.out} + st.size; ++k) reads |= d->steps_[k].reads();
      st.if_absent = reads ? Step::IfAbsent::kLater : Step::IfAbsent::kNothing;
    } else if (!st.reads()) {
      st.if_absent = Step::IfAbsent::kNothing;
    } else {
      std::vector<FieldValue> one(d->plans_.size());
      bool later = false;
      (void)d->Absent(st, nullptr, one.data(), &later);
      st.if_absent = later ? Step::IfAbsent::kCheck : Step::IfAbsent::kValue;
      st.absent = one[st.out];
    }
  }
  return d;
}

namespace {

// The failure paths, out of the hot loop.
[[gnu::cold, gnu::noinline]] bool Fail(DecodeError* error, DecodeError::Kind kind, const std::string& path,
                                       std::string message) {
  error->kind = kind;
  error->path = path;
  error->message = std::move(message);
  return false;
}
[[gnu::cold, gnu::noinline]] bool FailMissing(DecodeError* error, const std::string& path) {
  return Fail(error, DecodeError::Kind::kMissingField, path, "the record has no `" + path + "`");
}
[[gnu::cold, gnu::noinline]] bool FailIso(DecodeError* error, const std::string& path, const char* chars, uint32_t len) {
  return Fail(error, DecodeError::Kind::kWrongType, path,
              "`" + path + "`: expected " + std::string(Iso8601Expectation(std::string_view(chars, len))) +
                  ", found \"" + std::string(chars, std::min<uint32_t>(len, 64)) + "\"");
}
[[gnu::cold, gnu::noinline]] bool FailEnum(DecodeError* error, const Plan& p, int64_t value) {
  return Fail(error, DecodeError::Kind::kWrongType, p.path,
              "`" + p.path + "` is " + std::to_string(value) + ", which enum " + p.enum_name +
                  " does not name (a newer schema?)");
}
// A small enum's name from its dense table; false if the schema names no such value.
inline bool EnumName8(const Plan& p, int64_t value, FieldValue& v) {
  const uint64_t idx = static_cast<uint64_t>(value) - static_cast<uint64_t>(p.enum_min);
  if (idx >= p.enum_dense.size() || p.enum_dense[idx].empty()) [[unlikely]] return false;
  v.i = 0;
  v.str = p.enum_dense[idx].data();
  v.len = static_cast<uint32_t>(p.enum_dense[idx].size());
  return true;
}
[[gnu::cold, gnu::noinline]] bool FailUtf8(DecodeError* error, const std::string& path, const char* chars,
                                           uint32_t len) {
  const std::string_view s(chars, len);
  size_t at = 0;  // where the first character that is not UTF-8 starts
  while (at < len) {
    const size_t n = Utf8SequenceAt(s, at);
    if (n == 0) break;
    at += n;
  }
  return Fail(error, DecodeError::Kind::kWrongType, path,
              "`" + path + "` is not valid UTF-8 (a FlatBuffers string is UTF-8): byte " + std::to_string(at) + " of " +
                  std::to_string(len) + " is not");
}
[[gnu::cold, gnu::noinline]] bool FailU64(DecodeError* error, const std::string& path, uint64_t value) {
  return Fail(error, DecodeError::Kind::kWrongType, path, "`" + path + "` is " + std::to_string(value) + ", beyond int64");
}

}  // namespace

[[gnu::cold, gnu::noinline]] bool FlatBuffersDecoder::FailRecord(const RawRecord& record, DecodeError* error) {
  if (!missing_.empty()) {
    const std::string missing = std::move(missing_);
    missing_.clear();
    return Fail(error, DecodeError::Kind::kMissingField, missing,
                "the record lacks `" + missing + "`, which the schema requires");
  }
  // FinishSizePrefixed's buffer: was blamed on its file identifier, which
  // stands 4 bytes further on (a bug bash).
  if (record.payload != nullptr && record.size >= 12 &&
      flatbuffers::ReadScalar<uint32_t>(record.payload) == record.size - sizeof(flatbuffers::uoffset_t)) {
    return Fail(error, DecodeError::Kind::kUndecodable, "",
                "a size-prefixed buffer (its first 4 bytes are the length of the rest, as FinishSizePrefixed "
                "writes): kappa reads " + root_name_ + " buffers as Finish writes them; produce them without the "
                "size prefix");
  }
  if (record.payload != nullptr && record.size >= 8 && !file_ident_.empty() &&
      std::memcmp(record.payload + sizeof(flatbuffers::uoffset_t), file_ident_.data(), file_ident_.size()) != 0) {
    return Fail(error, DecodeError::Kind::kUndecodable, "",
                "the buffer's file identifier is not `" + file_ident_ + "` (" + root_name_ +
                    "): a record of another schema, or not a FlatBuffer");
  }
  return Fail(error, DecodeError::Kind::kUndecodable, "",
              "not a valid FlatBuffer of " + root_name_ + " (" + std::to_string(record.size) +
                  " bytes; truncated, corrupt, or of another schema)");
}

// A root field absent from the record's vtable: fails (false) on an absent
// `(required)` field (missing_ says which) or a union type without its
// value; a reading step writes the schema's default, or leaves the field to
// ReadField (*later) when that is an error or an unnamed enum value.
bool FlatBuffersDecoder::Absent(const Step& st, const uint8_t* root, FieldValue* out, bool* later) {
  const VCheck& c = vchecks_[st.obj][st.check];
  if (c.required) [[unlikely]] {
    missing_ = c.name;
    return false;
  }
  if (c.kind == VCheck::Kind::kUnion &&
      reinterpret_cast<const flatbuffers::Table*>(root)->GetField<uint8_t>(c.type_slot, 0) != 0) {
    return false;
  }
  if (!st.reads()) return true;
  FieldValue& v = out[st.out];
  const Plan& p = plans_[st.out];
  v = FieldValue{{p.default_i}, nullptr, 0, true};
  switch (st.op) {
    case Step::Op::kReadString:
      v.i = 0;
      v.present = false;
      *later |= !p.optional;  // ReadField fails the record, after verification
      break;
    case Step::Op::kF64: v.d = p.default_d; break;
    case Step::Op::kEnum8: *later |= !EnumName8(p, p.default_i, v); break;
    default: break;
  }
  return true;
}

template <bool kRoot>
[[gnu::always_inline]] inline bool FlatBuffersDecoder::RunSteps(const Step* first, const Step* last, Bounds& b,
                                                                size_t table_pos, FieldValue* out, bool* later) {
  // The buffer in locals kept in registers (b escapes into VerifyReferenced,
  // so its members live in memory).
  const uint8_t* const buf = b.buf;
  const size_t size = b.size;
  const uint8_t* table = buf + table_pos;
  const uint8_t* vt = table - flatbuffers::ReadScalar<flatbuffers::soffset_t>(table);
  const flatbuffers::voffset_t vsize = flatbuffers::ReadScalar<flatbuffers::voffset_t>(vt);
  for (const Step* sp = first; sp != last; ++sp) {
    const Step& st = *sp;
    const flatbuffers::voffset_t off =
        st.slot < vsize ? flatbuffers::ReadScalar<flatbuffers::voffset_t>(vt + st.slot) : 0;
    if (off == 0) {
      if (st.if_absent == Step::IfAbsent::kValue) {
        out[st.out] = st.absent;
      } else if (st.if_absent == Step::IfAbsent::kCheck) {
        if (!Absent(st, table, out, later)) [[unlikely]] return false;
      } else if (st.if_absent == Step::IfAbsent::kLater) {
        *later = true;
      }
      continue;
    }
    const size_t at = table_pos + off;
    const uint8_t* field = buf + at;
    // Only reading ops write it (out may be null: no fields), and only the
    // member of the declared type and `present`, as the other decoders do.
    FieldValue* v = out + st.out;
    switch (st.op) {
      case Step::Op::kScalar:
        if ((at & st.align_mask) != 0 || at + st.size > size) [[unlikely]] return false;
        continue;
      case Step::Op::kI64:
        if ((at & 7) != 0 || at + 8 > size) [[unlikely]] return false;
        v->i = flatbuffers::ReadScalar<int64_t>(field);
        v->present = true;
        continue;
      case Step::Op::kI64Micros:
        if ((at & 7) != 0 || at + 8 > size) [[unlikely]] return false;
        v->i = FloorDiv1000(flatbuffers::ReadScalar<int64_t>(field));
        v->present = true;
        continue;
      case Step::Op::kI32:
        if ((at & 3) != 0 || at + 4 > size) [[unlikely]] return false;
        v->i = flatbuffers::ReadScalar<int32_t>(field);
        v->present = true;
        continue;
      case Step::Op::kF64: {
        if ((at & 7) != 0 || at + 8 > size) [[unlikely]] return false;
        v->d = flatbuffers::ReadScalar<double>(field);
        v->present = true;
        continue;
      }
      case Step::Op::kEnum8: {
        if (at >= size) [[unlikely]] return false;
        const Plan& p = plans_[st.out];
        const int64_t value = p.leaf == Plan::Leaf::kI8 ? flatbuffers::ReadScalar<int8_t>(field)
                                                        : flatbuffers::ReadScalar<uint8_t>(field);
        v->present = true;
        *later |= !EnumName8(p, value, *v);
        continue;
      }
      case Step::Op::kString:
      case Step::Op::kReadString: {
        // Bounds::Offset and Bounds::String.
        if ((at & 3) != 0 || at + 4 > size) [[unlikely]] return false;
        const uint32_t o = flatbuffers::ReadScalar<uint32_t>(field);
        const size_t s = at + o;
        if (o == 0 || static_cast<int32_t>(o) < 0 || (s & 3) != 0 || s + 4 > size) [[unlikely]] return false;
        const uint32_t n = flatbuffers::ReadScalar<uint32_t>(buf + s);
        if (s + 4 + size_t{n} + 1 > size || buf[s + 4 + n] != 0) [[unlikely]] return false;
        if (st.op == Step::Op::kReadString) {
          v->str = reinterpret_cast<const char*>(buf + s + sizeof(flatbuffers::uoffset_t));
          v->len = n;
          v->present = true;
          *later |= !simdjson::validate_utf8(v->str, n);  // ReadField says which field
        }
        continue;
      }
      case Step::Op::kTable:
        if constexpr (kRoot) {
          // VerifyReferenced and VerifyTable of a table of scalars and
          // strings, its declared fields read on the way.
          const size_t t = b.Offset(at);
          if (t == 0 || !b.TableStart(t)) [[unlikely]] return false;
          const Step* sub = steps_.data() + st.out;
          if (!RunSteps<false>(sub, sub + st.size, b, t, out, later)) [[unlikely]] {
            if (!missing_.empty()) missing_ = vchecks_[st.obj][st.check].name + "." + missing_;
            return false;
          }
          --b.depth;
          continue;
        } else {
          return false;  // not built: a table's steps hold no tables
        }
      case Step::Op::kOther:
        if (!VerifyReferenced(b, vchecks_[st.obj][st.check], table_pos, at, &missing_)) [[unlikely]] return false;
        continue;
    }
  }
  return true;
}

// Per record: the root table's fields are verified in one pass over its
// vtable (what generated Verify() code does: every field of the record, down
// through nested tables, vectors and unions, not only the declared ones, so a
// record the generated verifier rejects is a dead letter here too, and an
// absent `(required)` field anywhere is named), and a declared field of the
// root, or of a table of scalars and strings in it, is read by the same step
// that verified it; the other declared fields (deeper paths, structs, other
// types, the Kafka key and timestamp) are read by ReadField after the whole
// record is verified. A declared field that is absent, or an enum value the
// schema does not name, is left to ReadField too, after verification, so
// that a corrupt record is kUndecodable whatever its fields hold.
bool FlatBuffersDecoder::Decode(const RawRecord& record, FieldValue* out, DecodeError* error) {
  const uint8_t* buf = record.payload;
  if (buf == nullptr || record.size < 8) [[unlikely]] return FailRecord(record, error);
  if (check_ident_ && flatbuffers::ReadScalar<uint32_t>(buf + sizeof(flatbuffers::uoffset_t)) != ident_) [[unlikely]] {
    return FailRecord(record, error);
  }
  Bounds b{buf, record.size};
  const size_t root_pos = b.Offset(0);
  if (root_pos == 0 || !b.TableStart(root_pos)) [[unlikely]] return FailRecord(record, error);
  const uint8_t* root = buf + root_pos;
  bool later = false;  // a read step left its field to ReadField
  if (!RunSteps<true>(steps_.data(), steps_.data() + root_steps_, b, root_pos, out, &later)) [[unlikely]] {
    return FailRecord(record, error);
  }

  // Verified. The declared fields not read above.
  if (later) [[unlikely]] {
    for (size_t i = 0; i < plans_.size(); ++i) {
      if (!ReadField(plans_[i], record, root, out[i], error)) return false;
    }
    return true;
  }
  for (const uint32_t i : rest_) {
    if (!ReadField(plans_[i], record, root, out[i], error)) return false;
  }
  return true;
}

bool FlatBuffersDecoder::ReadField(const Plan& p, const RawRecord& record, const uint8_t* root, FieldValue& v,
                                   DecodeError* error) const {
  v.present = true;
  {
    if (p.source != Plan::Source::kRecord) [[unlikely]] {
      v.str = nullptr;
      v.len = 0;
      if (p.source == Plan::Source::kKafkaTimestamp) {
        v.i = record.timestamp_ms;
        return true;
      }
      if (record.key == nullptr) goto absent;
      v.i = 0;
      v.str = reinterpret_cast<const char*>(record.key);
      v.len = record.key_size;
      return true;
    }
    {
      const uint8_t* t = root;
      for (const flatbuffers::voffset_t hop : p.tables) {
        const flatbuffers::voffset_t off = reinterpret_cast<const flatbuffers::Table*>(t)->GetOptionalFieldOffset(hop);
        if (off == 0) goto absent;
        t += off;
        t += flatbuffers::ReadScalar<flatbuffers::uoffset_t>(t);
      }
      const flatbuffers::voffset_t off = reinterpret_cast<const flatbuffers::Table*>(t)->GetOptionalFieldOffset(p.slot);
      const uint8_t* at;
      if (off == 0) {
        if (p.in_struct || p.leaf == Plan::Leaf::kString || p.schema_optional) goto absent;
        at = nullptr;  // the schema's default
      } else {
        at = t + off + p.struct_offset;
      }

      if (p.leaf == Plan::Leaf::kString) {
        const uint8_t* s = at + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(at);
        const uint32_t len = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(s);
        const char* chars = reinterpret_cast<const char*>(s + sizeof(flatbuffers::uoffset_t));
        if (p.out == Plan::Out::kString) [[likely]] {
          // A FlatBuffers string is UTF-8: a stray byte read as U+00XX in
          // a JSON row, and "x\xff" became one key with "x\u00ff" (a bug bash).
          if (!simdjson::validate_utf8(chars, len)) [[unlikely]] return FailUtf8(error, p.path, chars, len);
          v.i = 0;
          v.str = chars;
          v.len = len;
        } else {  // kIso
          const auto ms = ParseIso8601Millis(std::string_view(chars, len));
          if (!ms) return FailIso(error, p.path, chars, len);
          v.i = *ms;
          v.str = nullptr;
          v.len = 0;
        }
        return true;
      }

      // A scalar: read it as int64, uint64 or double.
      v.str = nullptr;
      v.len = 0;
      int64_t iv = 0;
      double dv = 0;
      bool is_float = false, is_u64 = false;
      uint64_t uv = 0;
      if (at == nullptr) {
        if (p.leaf == Plan::Leaf::kF32 || p.leaf == Plan::Leaf::kF64) {
          dv = p.default_d;
          is_float = true;
        } else {
          iv = p.default_i;
          if (p.leaf == Plan::Leaf::kU64) {
            is_u64 = true;
            uv = static_cast<uint64_t>(iv);
          }
        }
      } else {
        switch (p.leaf) {
          case Plan::Leaf::kBool: iv = flatbuffers::ReadScalar<uint8_t>(at) != 0; break;
          case Plan::Leaf::kI8: iv = flatbuffers::ReadScalar<int8_t>(at); break;
          case Plan::Leaf::kU8: iv = flatbuffers::ReadScalar<uint8_t>(at); break;
          case Plan::Leaf::kI16: iv = flatbuffers::ReadScalar<int16_t>(at); break;
          case Plan::Leaf::kU16: iv = flatbuffers::ReadScalar<uint16_t>(at); break;
          case Plan::Leaf::kI32: iv = flatbuffers::ReadScalar<int32_t>(at); break;
          case Plan::Leaf::kU32: iv = flatbuffers::ReadScalar<uint32_t>(at); break;
          case Plan::Leaf::kI64: iv = flatbuffers::ReadScalar<int64_t>(at); break;
          case Plan::Leaf::kU64:
            uv = flatbuffers::ReadScalar<uint64_t>(at);
            iv = static_cast<int64_t>(uv);
            is_u64 = true;
            break;
          case Plan::Leaf::kF32: dv = flatbuffers::ReadScalar<float>(at); is_float = true; break;
          case Plan::Leaf::kF64: dv = flatbuffers::ReadScalar<double>(at); is_float = true; break;
          case Plan::Leaf::kString: break;  // handled above
        }
      }
      switch (p.out) {
        case Plan::Out::kDouble:
          v.d = is_float ? dv : (is_u64 ? static_cast<double>(uv) : static_cast<double>(iv));
          return true;
        case Plan::Out::kBool:
          v.i = iv != 0;
          return true;
        case Plan::Out::kEnumName: {
          std::string_view name;
          if (!p.enum_dense.empty()) {
            const uint64_t idx = static_cast<uint64_t>(iv) - static_cast<uint64_t>(p.enum_min);
            if (idx < p.enum_dense.size()) name = p.enum_dense[idx];
          } else {
            auto it = std::lower_bound(p.enum_sparse.begin(), p.enum_sparse.end(), std::make_pair(iv, std::string_view()));
            if (it != p.enum_sparse.end() && it->first == iv) name = it->second;
          }
          if (name.empty()) return FailEnum(error, p, iv);
          v.i = 0;
          v.str = name.data();
          v.len = static_cast<uint32_t>(name.size());
          return true;
        }
        default: break;  // integers
      }
      if (is_u64 && uv > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return FailU64(error, p.path, uv);
      v.i = p.out == Plan::Out::kMicros ? FloorDiv1000(iv) : iv;
      return true;
    }
  }
absent:
  v.i = 0;
  v.str = nullptr;
  v.len = 0;
  v.present = false;
  if (!p.optional) return FailMissing(error, p.path);
  return true;
}

}  // namespace kappa
