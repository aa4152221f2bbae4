#include "formats/avro_decoder.h"

#include <avro.h>
#include <simdjson.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "formats/field_paths.h"
#include "formats/schema_spec.h"
#include "kafka/schema_registry.h"

namespace kappa {

static_assert(std::endian::native == std::endian::little, "the Avro reader copies little-endian floats as they are");

namespace {

// ---- The writer schema, flattened from Avro C's tree ----

enum class WKind : uint8_t { kNull, kBool, kInt, kLong, kFloat, kDouble, kBytes, kString, kFixed, kEnum, kRecord, kArray, kMap, kUnion };
// The int/long logical types that say what a number means in time. kTime:
// time-millis / time-micros, a time of day, which is no timestamp. kDecimal
// (bytes or fixed): a big-endian two's-complement unscaled integer.
enum class Logical : uint8_t { kNone, kMillis, kMicros, kNanos, kDate, kTime, kDecimal };

struct WNode {
  WKind kind = WKind::kNull;
  Logical logical = Logical::kNone;  // int/long; kDecimal for bytes/fixed
  int decimal_precision = 0, decimal_scale = 0;
  bool zero_width = false;           // encodes as no bytes at all (null, fixed(0), records of those)
  int64_t fixed_size = 0;
  std::string name;                      // records, enums, fixed
  std::vector<std::string> field_names;  // records
  std::vector<int> children;             // record fields, union branches, array items / map values
  std::vector<std::string> symbols;      // enums
};

std::string DecimalName(const WNode& n) {
  if (n.logical != Logical::kDecimal) return "";
  return " (decimal(" + std::to_string(n.decimal_precision) + "," + std::to_string(n.decimal_scale) + "))";
}

std::string TypeName(const std::vector<WNode>& nodes, int index) {
  const WNode& n = nodes[static_cast<size_t>(index)];
  switch (n.kind) {
    case WKind::kNull: return "null";
    case WKind::kBool: return "boolean";
    case WKind::kInt:
      return n.logical == Logical::kDate ? "int (date)" : n.logical == Logical::kTime ? "int (time-millis: a time of day)" : "int";
    case WKind::kLong:
      return n.logical == Logical::kMillis ? "long (timestamp-millis)"
             : n.logical == Logical::kMicros ? "long (timestamp-micros)"
             : n.logical == Logical::kNanos  ? "long (timestamp-nanos)"
             : n.logical == Logical::kTime   ? "long (time-micros: a time of day)"
                                             : "long";
    case WKind::kFloat: return "float";
    case WKind::kDouble: return "double";
    case WKind::kBytes: return "bytes" + DecimalName(n);
    case WKind::kString: return "string";
    case WKind::kFixed: return "fixed " + n.name + DecimalName(n);
    case WKind::kEnum: return "enum " + n.name;
    case WKind::kRecord: return "record " + n.name;
    case WKind::kArray: return "array";
    case WKind::kMap: return "map";
    case WKind::kUnion: {
      std::string s = "union [";
      for (size_t i = 0; i < n.children.size(); ++i) s += (i ? ", " : "") + TypeName(nodes, n.children[i]);
      return s + "]";
    }
  }
  return "?";
}

// Walks Avro C's parsed schema and, alongside, the schema's JSON (simdjson
// DOM) for what Avro C 1.11 does not keep: the logicalType annotations.
class SchemaWalker {
 public:
  explicit SchemaWalker(std::vector<WNode>* nodes) : nodes_(nodes) {}

  int Walk(avro_schema_t s, simdjson::dom::element j, bool has_j) {
    if (is_avro_link(s)) {
      avro_schema_t target = avro_schema_link_target(s);
      auto it = named_.find(target);
      if (it != named_.end()) return it->second;
      return Walk(target, j, false);
    }
    simdjson::dom::object obj;
    const bool is_obj = has_j && !j.get_object().get(obj);
    if (is_obj) {  // {"type": {...}} or {"type": [...]}: the type is inside
      simdjson::dom::element t;
      if (!obj["type"].get(t) && (t.is_object() || t.is_array())) return Walk(s, t, true);
    }
    const int index = static_cast<int>(nodes_->size());
    nodes_->emplace_back();
    auto node = [&]() -> WNode& { return (*nodes_)[static_cast<size_t>(index)]; };
    auto child_json = [&](const char* key, simdjson::dom::element* out) {
      return is_obj && !obj[key].get(*out);
    };
    switch (avro_typeof(s)) {
      case AVRO_NULL: node().kind = WKind::kNull; node().zero_width = true; break;
      case AVRO_BOOLEAN: node().kind = WKind::kBool; break;
      case AVRO_INT32:
      case AVRO_INT64: {
        node().kind = avro_typeof(s) == AVRO_INT32 ? WKind::kInt : WKind::kLong;
        // A logical type on another base type than the spec's is ignored,
        // as the spec asks (Java and fastavro alike): a `date` long is a
        // plain long, not days to multiply, a `timestamp-micros` int a plain int.
        const bool is_int = node().kind == WKind::kInt;
        std::string_view logical;
        if (is_obj && !obj["logicalType"].get_string().get(logical)) {
          if (!is_int && (logical == "timestamp-millis" || logical == "local-timestamp-millis")) {
            node().logical = Logical::kMillis;
          }
          if (!is_int && (logical == "timestamp-micros" || logical == "local-timestamp-micros")) {
            node().logical = Logical::kMicros;
          }
          if (!is_int && (logical == "timestamp-nanos" || logical == "local-timestamp-nanos")) {
            node().logical = Logical::kNanos;
          }
          if (is_int && logical == "date") node().logical = Logical::kDate;
          if ((is_int && logical == "time-millis") || (!is_int && logical == "time-micros")) {
            node().logical = Logical::kTime;
          }
        }
        break;
      }
      case AVRO_FLOAT: node().kind = WKind::kFloat; break;
      case AVRO_DOUBLE: node().kind = WKind::kDouble; break;
      case AVRO_BYTES:
        node().kind = WKind::kBytes;
        Decimal(obj, is_obj, node());
        break;
      case AVRO_STRING: node().kind = WKind::kString; break;
      case AVRO_FIXED:
        named_[s] = index;
        node().kind = WKind::kFixed;
        node().name = avro_schema_name(s);
        node().fixed_size = avro_schema_fixed_size(s);
        node().zero_width = node().fixed_size == 0;
        Decimal(obj, is_obj, node());
        break;
      case AVRO_ENUM: {
        named_[s] = index;
        node().kind = WKind::kEnum;
        node().name = avro_schema_name(s);
        const int n = avro_schema_enum_number_of_symbols(s);
        for (int i = 0; i < n; ++i) node().symbols.emplace_back(avro_schema_enum_get(s, i));
        break;
      }
      case AVRO_RECORD: {
        named_[s] = index;  // before the fields: a field may refer back to it
        node().kind = WKind::kRecord;
        node().name = avro_schema_name(s);
        simdjson::dom::array fields;
        const bool has_fields = is_obj && !obj["fields"].get_array().get(fields);
        const size_t n = avro_schema_record_size(s);
        bool zero = true;
        for (size_t i = 0; i < n; ++i) {
          simdjson::dom::element jt;
          const bool has_jt = has_fields && !fields.at(i)["type"].get(jt);
          const int child = Walk(avro_schema_record_field_get_by_index(s, static_cast<int>(i)), jt, has_jt);
          node().field_names.emplace_back(avro_schema_record_field_name(s, static_cast<int>(i)));
          node().children.push_back(child);
          zero = zero && (*nodes_)[static_cast<size_t>(child)].zero_width;
        }
        node().zero_width = zero;
        break;
      }
      case AVRO_ARRAY:
      case AVRO_MAP: {
        const bool array = avro_typeof(s) == AVRO_ARRAY;
        node().kind = array ? WKind::kArray : WKind::kMap;
        simdjson::dom::element jc;
        const bool has_jc = child_json(array ? "items" : "values", &jc);
        const int child = Walk(array ? avro_schema_array_items(s) : avro_schema_map_values(s), jc, has_jc);
        node().children.push_back(child);
        break;
      }
      case AVRO_UNION: {
        node().kind = WKind::kUnion;
        simdjson::dom::array branches;
        const bool has_branches = has_j && !j.get_array().get(branches);
        const size_t n = avro_schema_union_size(s);
        for (size_t i = 0; i < n; ++i) {
          simdjson::dom::element jb;
          const bool has_jb = has_branches && !branches.at(i).get(jb);
          const int child = Walk(avro_schema_union_branch(s, static_cast<int>(i)), jb, has_jb);
          node().children.push_back(child);
        }
        break;
      }
      default: node().kind = WKind::kNull; break;  // AVRO_LINK handled above; nothing else exists
    }
    return index;
  }

 private:
  // `decimal` on bytes or fixed: a precision of 1 or more, a scale between 0
  // and the precision (else the annotation is invalid and ignored).
  static void Decimal(simdjson::dom::object& obj, bool is_obj, WNode& n) {
    std::string_view logical;
    if (!is_obj || obj["logicalType"].get_string().get(logical) || logical != "decimal") return;
    int64_t precision = 0, scale = 0;
    if (obj["precision"].get_int64().get(precision) || precision < 1 || precision > 1000) return;
    if (obj["scale"].get_int64().get(scale) != simdjson::SUCCESS) scale = 0;
    if (scale < 0 || scale > precision) return;
    n.logical = Logical::kDecimal;
    n.decimal_precision = static_cast<int>(precision);
    n.decimal_scale = static_cast<int>(scale);
  }

  std::vector<WNode>* nodes_;
  std::unordered_map<avro_schema_t, int> named_;
};

// ---- The read plan ----

enum class Op : uint8_t {
  kSkip,         // a writer value no declared field needs
  kLeaf,         // a declared field's value, converted into its slot
  kRecord,       // subs: one reader per writer field, in order
  kUnion,        // subs: one reader per branch
  kNull,         // a null branch: nothing to read, the fields under it stay absent
  kWrongBranch,  // a union branch the declaration cannot use: kWrongType (slot, message)
};

enum class Conv : uint8_t {
  kVarintToInt64,
  kVarintToDouble,
  kVarintToMillis,
  kVarintMicrosToMillis,
  kVarintNanosToMillis,
  kVarintDaysToMillis,  // Avro `date`: days since 1970-01-01, as midnight UTC
  kFloatToDouble,
  kDoubleToDouble,
  kBool,
  kString,  // string or bytes: points into the payload
  kStringIso8601,
  kEnumToString,
  kEnumToInt64,
  kDecimalToDouble,  // bytes or fixed `decimal`: its value, correctly rounded
  kDecimalToInt64,   // a `decimal` of scale 0 that fits
};

struct Reader {
  Op op = Op::kSkip;
  Conv conv = Conv::kVarintToInt64;
  int node = 0;
  int slot = -1;
  std::vector<Reader> subs;
  std::string message;  // kWrongBranch
  DecodeError::Kind error_kind = DecodeError::Kind::kWrongType;  // kWrongBranch
};

struct Plan {
  int32_t id = 0;
  std::vector<WNode> nodes;
  Reader root;
  bool failed = false;
  DecodeError error;  // every record of this writer schema, when failed
  // The registry answered that it has no such id, at this steady-clock
  // time (ms): asked again kUnknownIdRecheckMs later. 0: not that.
  int64_t unknown_at_ms = 0;
  // Not the records' fault, the spec's: a filter literal this writer
  // schema's enum has in another case only (EnumLiteralMismatch). The job
  // stops with it (last_fatal) instead of filtering nothing in silence.
  std::string fatal;
};

// The declared paths as a tree of record field names.
using Trie = FieldPathNode;

void SlotsUnder(const Trie& t, std::vector<int>* slots) {
  if (t.slot >= 0) slots->push_back(t.slot);
  for (const Trie& c : t.children) SlotsUnder(c, slots);
}

class PlanBuilder {
 public:
  PlanBuilder(const RecordSchema& schema, Plan* plan) : schema_(schema), plan_(plan) {}

  void Build(int root, const Trie& trie) {
    if (trie.children.empty()) {
      plan_->root = Reader{Op::kSkip, Conv::kVarintToInt64, root, -1, {}, {}};
    } else {
      plan_->root = Descend(root, trie);
    }
    if (!errors_.empty()) {
      size_t best = 0;
      for (size_t i = 1; i < errors_.size(); ++i) {
        if (errors_[i].first < errors_[best].first) best = i;
      }
      plan_->failed = true;
      plan_->error = std::move(errors_[best].second);
    }
  }

 private:
  const WNode& N(int i) const { return plan_->nodes[static_cast<size_t>(i)]; }
  std::string Id() const { return "writer schema " + std::to_string(plan_->id); }
  std::string Field(int slot) const {
    const FieldDecl& f = schema_.field(slot);
    return "field `" + f.name + "` at `" + f.path + "`";
  }
  void Error(int slot, DecodeError::Kind kind, std::string message) {
    errors_.push_back({slot, DecodeError{kind, schema_.field(slot).path, std::move(message)}});
  }
  std::string Expected(int slot) const {
    const FieldDecl& f = schema_.field(slot);
    if (f.type == ValueType::kTimestamp) {
      return f.timestamp == TimestampEncoding::kIso8601 ? "an ISO-8601 timestamp string"
                                                        : "a timestamp (int or long)";
    }
    return std::string(ValueTypeName(f.type));
  }

  // What to declare instead, for a decimal (or a union holding one).
  std::string DecimalHint(int node) const {
    bool decimal = N(node).logical == Logical::kDecimal;
    for (int b : N(node).children) decimal = decimal || (N(node).kind == WKind::kUnion && N(b).logical == Logical::kDecimal);
    return decimal ? ": declare a decimal `double` (its value, rounded to the nearest double) or, at scale 0, `int64`"
                   : "";
  }

  // How the writer type at `node` becomes the declared field's value, if it can.
  bool ConvFor(int node, int slot, Conv* conv) const {
    const FieldDecl& f = schema_.field(slot);
    const WNode& w = N(node);
    const bool integer = w.kind == WKind::kInt || w.kind == WKind::kLong;
    switch (f.type) {
      case ValueType::kString:
        // A decimal's bytes are a binary integer, no text (refused, its
        // message says to declare it double).
        if (w.logical == Logical::kDecimal) return false;
        if (w.kind == WKind::kString || w.kind == WKind::kBytes) return *conv = Conv::kString, true;
        if (w.kind == WKind::kEnum) return *conv = Conv::kEnumToString, true;
        return false;
      case ValueType::kInt64:
        if (integer) return *conv = Conv::kVarintToInt64, true;
        if (w.kind == WKind::kEnum) return *conv = Conv::kEnumToInt64, true;
        if (w.logical == Logical::kDecimal && w.decimal_scale == 0) return *conv = Conv::kDecimalToInt64, true;
        return false;
      case ValueType::kDouble:
        if (integer) return *conv = Conv::kVarintToDouble, true;
        if (w.kind == WKind::kFloat) return *conv = Conv::kFloatToDouble, true;
        if (w.kind == WKind::kDouble) return *conv = Conv::kDoubleToDouble, true;
        if (w.logical == Logical::kDecimal) return *conv = Conv::kDecimalToDouble, true;
        return false;
      case ValueType::kBool:
        if (w.kind == WKind::kBool) return *conv = Conv::kBool, true;
        return false;
      case ValueType::kTimestamp:
        if (integer) {
          // The writer's logical type says what the number is; else the declaration.
          if (w.logical == Logical::kMillis) return *conv = Conv::kVarintToMillis, true;
          if (w.logical == Logical::kMicros) return *conv = Conv::kVarintMicrosToMillis, true;
          if (w.logical == Logical::kNanos) return *conv = Conv::kVarintNanosToMillis, true;
          if (w.logical == Logical::kDate) return *conv = Conv::kVarintDaysToMillis, true;
          if (w.logical == Logical::kTime) return false;  // a time of day: no instant
          if (f.timestamp == TimestampEncoding::kEpochMillis) return *conv = Conv::kVarintToMillis, true;
          if (f.timestamp == TimestampEncoding::kEpochMicros) return *conv = Conv::kVarintMicrosToMillis, true;
          return false;
        }
        if (w.kind == WKind::kString && f.timestamp == TimestampEncoding::kIso8601) {
          return *conv = Conv::kStringIso8601, true;
        }
        return false;
    }
    return false;
  }

  Reader Leaf(int node, int slot) {
    const WNode& w = N(node);
    if (w.kind == WKind::kUnion) {
      Reader u{Op::kUnion, Conv::kVarintToInt64, node, slot, {}, {}};
      bool usable = false;
      for (int b : w.children) {
        Conv conv;
        if (N(b).kind == WKind::kNull) {
          u.subs.push_back(Reader{Op::kNull, Conv::kVarintToInt64, b, slot, {}, {}});
        } else if (ConvFor(b, slot, &conv)) {
          CheckEnum(conv, b, slot);
          u.subs.push_back(Reader{Op::kLeaf, conv, b, slot, {}, {}});
          usable = true;
        } else {
          u.subs.push_back(Reader{Op::kWrongBranch, Conv::kVarintToInt64, b, slot, {},
                                  Field(slot) + ": expected " + Expected(slot) + ", found " + TypeName(plan_->nodes, b) +
                                      " (" + Id() + ")" + DecimalHint(b)});
        }
      }
      if (!usable) {
        Error(slot, DecodeError::Kind::kWrongType,
              Field(slot) + ": expected " + Expected(slot) + ", " + Id() + " has " + TypeName(plan_->nodes, node) +
                  DecimalHint(node));
      }
      return u;
    }
    Conv conv;
    if (!ConvFor(node, slot, &conv)) {
      Error(slot, DecodeError::Kind::kWrongType,
            Field(slot) + ": expected " + Expected(slot) + ", " + Id() + " has " + TypeName(plan_->nodes, node) +
                DecimalHint(node));
      return Reader{Op::kSkip, Conv::kVarintToInt64, node, -1, {}, {}};
    }
    CheckEnum(conv, node, slot);
    return Reader{Op::kLeaf, conv, node, slot, {}, {}};
  }

  // An enum read into a declared field: as its symbol, checked against the
  // filters' literals; as an int64 it stops the job. The index is the
  // writer schema's: a symbol added before others (a compatible change,
  // Avro matches enums by name) gives the same symbol another number, and a
  // replay from the start read two numbers for one value without a sign (a
  // bug bash).
  void CheckEnum(Conv conv, int node, int slot) {
    if (conv == Conv::kEnumToString) CheckEnumLiterals(node, slot);
    if (conv == Conv::kEnumToInt64 && plan_->fatal.empty()) {
      plan_->fatal = Field(slot) + " is declared int64 but " + Id() + " has " + TypeName(plan_->nodes, node) +
                     ": an enum's number is its index in each writer schema, which changes as symbols are added; "
                     "declare the field `string` (the symbol), which reads the same in every writer schema";
    }
  }

  void CheckEnumLiterals(int node, int slot) {
    if (!plan_->fatal.empty()) return;
    const WNode& w = N(node);
    const std::vector<std::string_view> symbols(w.symbols.begin(), w.symbols.end());
    if (auto problem = EnumLiteralMismatch(schema_.field(slot), w.name, symbols, /*every_literal=*/false)) {
      plan_->fatal = *problem + " (" + Id() + ")";
    }
  }

  std::string NotARecord(const Trie& t, int node) const {
    const std::string holding = "(holding `" + schema_.field(t.first_slot).path + "`)";
    if (t.prefix.empty()) return Id() + " is " + TypeName(plan_->nodes, node) + ", not a record " + holding;
    return "expected a record at `" + t.prefix + "` " + holding + ", " + Id() + " has " + TypeName(plan_->nodes, node);
  }

  // The writer value at `node` holds the declared fields under `t`.
  Reader Descend(int node, const Trie& t) {
    const WNode& w = N(node);
    if (w.kind == WKind::kRecord) return Record(node, t);
    if (w.kind == WKind::kUnion) {
      Reader u{Op::kUnion, Conv::kVarintToInt64, node, -1, {}, {}};
      bool usable = false;
      std::optional<std::pair<int, DecodeError>> branch_error;  // of a record branch that cannot serve
      for (int b : w.children) {
        if (N(b).kind == WKind::kNull) {
          u.subs.push_back(Reader{Op::kNull, Conv::kVarintToInt64, b, -1, {}, {}});
        } else if (N(b).kind == WKind::kRecord) {
          // A branch that cannot give a declared field fails the records
          // that take it, not the plan: records of the other branches are
          // fine (a leaf union's wrong branch works the same way).
          const size_t before = errors_.size();
          Reader branch = Record(b, t);
          if (errors_.size() == before) {
            u.subs.push_back(std::move(branch));
            usable = true;
          } else {
            size_t first = before;
            for (size_t i = before + 1; i < errors_.size(); ++i) {
              if (errors_[i].first < errors_[first].first) first = i;
            }
            Reader wrong{Op::kWrongBranch, Conv::kVarintToInt64, b, errors_[first].first, {},
                         errors_[first].second.message + " (a branch of the union at `" +
                             (t.prefix.empty() ? std::string("the record") : t.prefix) + "`)"};
            wrong.error_kind = errors_[first].second.kind;
            if (!branch_error) branch_error = errors_[first];
            errors_.resize(before);
            u.subs.push_back(std::move(wrong));
          }
        } else {
          u.subs.push_back(Reader{Op::kWrongBranch, Conv::kVarintToInt64, b, t.first_slot, {}, NotARecord(t, b)});
        }
      }
      if (!usable && branch_error) {
        errors_.push_back(std::move(*branch_error));  // no branch serves: what the first lacks
      } else if (!usable) {
        Error(t.first_slot, DecodeError::Kind::kWrongType, NotARecord(t, node));
      }
      return u;
    }
    Error(t.first_slot, DecodeError::Kind::kWrongType, NotARecord(t, node));
    return Reader{Op::kSkip, Conv::kVarintToInt64, node, -1, {}, {}};
  }

  Reader Record(int node, const Trie& t) {
    const WNode& w = N(node);
    Reader r{Op::kRecord, Conv::kVarintToInt64, node, -1, {}, {}};
    std::vector<bool> matched(t.children.size(), false);
    for (size_t i = 0; i < w.field_names.size(); ++i) {
      const int child = w.children[i];
      size_t c = 0;
      while (c < t.children.size() && t.children[c].key != w.field_names[i]) ++c;
      if (c == t.children.size()) {
        r.subs.push_back(Reader{Op::kSkip, Conv::kVarintToInt64, child, -1, {}, {}});
        continue;
      }
      matched[c] = true;
      const Trie& sub = t.children[c];
      r.subs.push_back(sub.slot >= 0 ? Leaf(child, sub.slot) : Descend(child, sub));
    }
    for (size_t c = 0; c < t.children.size(); ++c) {
      if (matched[c]) continue;
      std::vector<int> slots;
      SlotsUnder(t.children[c], &slots);
      for (int slot : slots) {
        if (schema_.field(slot).optional) continue;  // absent in every record of this writer
        Error(slot, DecodeError::Kind::kMissingField,
              "required " + Field(slot) + " is absent: " + Id() + " has no field `" + t.children[c].key +
                  "` in record " + w.name);
      }
    }
    return r;
  }

  const RecordSchema& schema_;
  Plan* plan_;
  std::vector<std::pair<int, DecodeError>> errors_;
};

constexpr int kMaxDepth = 256;

}  // namespace

struct AvroDecoder::Impl {
  RecordSchema schema;
  FieldPaths paths;  // the tree of declared paths (paths.root) and the kafka.* slots
  SchemaRegistryClient* registry = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<Plan>> plans;
  const Plan* last_plan = nullptr;
  Status last_fatal;

  // This record.
  FieldValue* out = nullptr;
  DecodeError* error = nullptr;
  const Plan* plan = nullptr;
  const uint8_t* p = nullptr;
  const uint8_t* end = nullptr;

  bool Fail(DecodeError::Kind kind, int slot, std::string message) {
    error->kind = kind;
    error->path = slot >= 0 ? schema.field(slot).path : std::string();
    error->message = std::move(message);
    return false;
  }
  bool Undecodable(const std::string& what) {
    return Fail(DecodeError::Kind::kUndecodable, -1,
                "not a valid Avro record of writer schema " + std::to_string(plan->id) + ": " + what);
  }
  bool Truncated() { return Undecodable("the body is cut short"); }

  // ---- The Avro binary encoding ----

  bool ReadLong(int64_t* v) {
    uint64_t acc = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p == end) return Truncated();
      const uint8_t b = *p++;
      if (shift == 63 && b > 1) {
        return Undecodable((b & 0x80) != 0 ? "a varint longer than 10 bytes" : "a varint beyond 64 bits");
      }
      acc |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        *v = static_cast<int64_t>((acc >> 1) ^ (~(acc & 1) + 1));
        return true;
      }
    }
    return Undecodable("a varint longer than 10 bytes");
  }
  bool Advance(int64_t n) {
    if (n < 0) return Undecodable("a negative length (" + std::to_string(n) + ")");
    if (n > end - p) return Truncated();
    p += n;
    return true;
  }
  bool ReadLength(int64_t* n) {
    if (!ReadLong(n)) return false;
    if (*n < 0) return Undecodable("a negative length (" + std::to_string(*n) + ")");
    if (*n > end - p) return Truncated();
    return true;
  }
  bool Branch(size_t branches, int64_t* b) {
    if (!ReadLong(b)) return false;
    if (*b < 0 || static_cast<uint64_t>(*b) >= branches) {
      return Undecodable("union branch " + std::to_string(*b) + " of " + std::to_string(branches));
    }
    return true;
  }

  bool Skip(int node, int depth) {
    const WNode& w = plan->nodes[static_cast<size_t>(node)];
    int64_t v;
    switch (w.kind) {
      case WKind::kNull: return true;
      case WKind::kBool: return Advance(1);
      case WKind::kInt:
      case WKind::kLong:
      case WKind::kEnum: return ReadLong(&v);
      case WKind::kFloat: return Advance(4);
      case WKind::kDouble: return Advance(8);
      case WKind::kBytes:
      case WKind::kString: return ReadLength(&v) && Advance(v);
      case WKind::kFixed: return Advance(w.fixed_size);
      case WKind::kRecord:
        if (depth > kMaxDepth) return Undecodable("nested deeper than " + std::to_string(kMaxDepth));
        for (int c : w.children) {
          if (!Skip(c, depth + 1)) return false;
        }
        return true;
      case WKind::kUnion:
        if (depth > kMaxDepth) return Undecodable("nested deeper than " + std::to_string(kMaxDepth));
        if (!Branch(w.children.size(), &v)) return false;
        return Skip(w.children[static_cast<size_t>(v)], depth + 1);
      case WKind::kArray:
      case WKind::kMap: {
        if (depth > kMaxDepth) return Undecodable("nested deeper than " + std::to_string(kMaxDepth));
        const int item = w.children[0];
        const bool zero = w.kind == WKind::kArray && plan->nodes[static_cast<size_t>(item)].zero_width;
        while (true) {
          int64_t count;
          if (!ReadLong(&count)) return false;
          if (count == 0) return true;
          if (count < 0) {  // a block with its size in bytes: skipped whole
            int64_t bytes;
            if (!ReadLength(&bytes)) return false;
            p += bytes;
            continue;
          }
          if (zero) continue;
          if (count > end - p) return Truncated();  // every item takes a byte at least
          for (int64_t i = 0; i < count; ++i) {
            if (w.kind == WKind::kMap && !(ReadLength(&v) && Advance(v))) return false;
            if (!Skip(item, depth + 1)) return false;
          }
        }
      }
    }
    return true;
  }

  // An Avro int is 32 bits: a longer varint is a damaged record (Java's
  // readInt throws), not a long read from an int column.
  bool FitsWriterInt(const Reader& r, int64_t v) {
    if (plan->nodes[static_cast<size_t>(r.node)].kind != WKind::kInt || (v >= INT32_MIN && v <= INT32_MAX)) return true;
    return Undecodable("an int of " + std::to_string(v) + ", beyond 32 bits");
  }

  // A bytes or fixed `decimal`: a big-endian two's-complement integer of
  // the unscaled value. Up to 38 digits (16 bytes, sign bytes aside); as a
  // double, rounded once (its decimal text through strtod), as an int64
  // (scale 0) exact or refused.
  bool ReadDecimal(const Reader& r, FieldValue* fv) {
    const WNode& w = plan->nodes[static_cast<size_t>(r.node)];
    int64_t n = w.fixed_size;
    if (w.kind == WKind::kBytes && !ReadLength(&n)) return false;
    if (n > end - p) return Truncated();
    const uint8_t* b = p;
    p += n;
    const bool negative = n > 0 && (b[0] & 0x80) != 0;
    const uint8_t sign = negative ? 0xff : 0x00;
    while (n > 1 && b[0] == sign && ((b[1] & 0x80) != 0) == negative) ++b, --n;  // redundant sign bytes
    const FieldDecl& f = schema.field(r.slot);
    if (n > 16) {
      return Fail(DecodeError::Kind::kWrongType, r.slot,
                  "field `" + f.name + "` at `" + f.path + "`: a decimal of " + std::to_string(n) +
                      " bytes, beyond the 38 digits kappa reads");
    }
    unsigned __int128 u = negative ? ~static_cast<unsigned __int128>(0) : 0;
    for (int64_t i = 0; i < n; ++i) u = (u << 8) | b[i];
    const __int128 value = static_cast<__int128>(u);
    if (r.conv == Conv::kDecimalToInt64) {
      if (value < INT64_MIN || value > INT64_MAX) {
        return Fail(DecodeError::Kind::kWrongType, r.slot,
                    "field `" + f.name + "` at `" + f.path + "`: a decimal beyond int64; declare it `double`");
      }
      fv->i = static_cast<int64_t>(value);
      return true;
    }
    unsigned __int128 mag = negative ? -u : u;
    char text[64];
    char* t = text + sizeof(text);
    *--t = '\0';
    const std::string exponent = "e-" + std::to_string(w.decimal_scale);
    t -= exponent.size();
    std::memcpy(t, exponent.data(), exponent.size());
    do {
      *--t = static_cast<char>('0' + static_cast<int>(mag % 10));
      mag /= 10;
    } while (mag != 0);
    if (negative) *--t = '-';
    fv->d = std::strtod(t, nullptr);
    return true;
  }

  bool ReadLeaf(const Reader& r) {
    FieldValue& fv = out[r.slot];
    int64_t v;
    switch (r.conv) {
      case Conv::kVarintToInt64:
      case Conv::kVarintToMillis:
        if (!ReadLong(&fv.i) || !FitsWriterInt(r, fv.i)) return false;
        break;
      case Conv::kVarintToDouble:
        if (!ReadLong(&v) || !FitsWriterInt(r, v)) return false;
        fv.d = static_cast<double>(v);
        break;
      case Conv::kDecimalToDouble:
      case Conv::kDecimalToInt64:
        if (!ReadDecimal(r, &fv)) return false;
        break;
      case Conv::kVarintMicrosToMillis:
        if (!ReadLong(&v)) return false;
        fv.i = v >= 0 ? v / 1000 : -((-(v + 1)) / 1000) - 1;
        break;
      case Conv::kVarintNanosToMillis:
        if (!ReadLong(&v)) return false;
        fv.i = v >= 0 ? v / 1000000 : -((-(v + 1)) / 1000000) - 1;
        break;
      case Conv::kVarintDaysToMillis:
        if (!ReadLong(&v)) return false;
        // An Avro int holds any date; a damaged record's longer varint must
        // not overflow.
        if (__builtin_mul_overflow(v, int64_t{86400000}, &fv.i)) {
          return Undecodable("a date of " + std::to_string(v) + " days, beyond any timestamp");
        }
        break;
      case Conv::kFloatToDouble: {
        if (end - p < 4) return Truncated();
        float f;
        std::memcpy(&f, p, 4);
        p += 4;
        fv.d = f;
        break;
      }
      case Conv::kDoubleToDouble:
        if (end - p < 8) return Truncated();
        std::memcpy(&fv.d, p, 8);
        p += 8;
        break;
      case Conv::kBool:
        if (p == end) return Truncated();
        fv.i = *p++ != 0 ? 1 : 0;
        break;
      case Conv::kString:
        if (!ReadLength(&v)) return false;
        fv.str = reinterpret_cast<const char*>(p);
        fv.len = static_cast<uint32_t>(v);
        p += v;
        // An Avro string is UTF-8 (bytes are any): a stray byte read as
        // U+00XX in a JSON row, one key with a string that has it.
        if (plan->nodes[static_cast<size_t>(r.node)].kind == WKind::kString &&
            !simdjson::validate_utf8(fv.str, fv.len)) [[unlikely]] {
          const FieldDecl& f = schema.field(r.slot);
          return Fail(DecodeError::Kind::kWrongType, r.slot,
                      "field `" + f.name + "` at `" + f.path + "`: an Avro string that is not valid UTF-8");
        }
        break;
      case Conv::kStringIso8601: {
        if (!ReadLength(&v)) return false;
        const std::string_view s(reinterpret_cast<const char*>(p), static_cast<size_t>(v));
        p += v;
        auto ms = ParseIso8601Millis(s);
        if (!ms) {
          const FieldDecl& f = schema.field(r.slot);
          return Fail(DecodeError::Kind::kWrongType, r.slot,
                      "field `" + f.name + "` at `" + f.path + "`: expected " + std::string(Iso8601Expectation(s)) +
                          ", found \"" +
                          std::string(s.substr(0, 40)) + (s.size() > 40 ? "...\"" : "\""));
        }
        fv.i = *ms;
        break;
      }
      case Conv::kEnumToString:
      case Conv::kEnumToInt64: {
        if (!ReadLong(&v)) return false;
        const auto& symbols = plan->nodes[static_cast<size_t>(r.node)].symbols;
        if (v < 0 || static_cast<uint64_t>(v) >= symbols.size()) {
          return Undecodable("enum index " + std::to_string(v) + " of " + std::to_string(symbols.size()));
        }
        if (r.conv == Conv::kEnumToInt64) {
          fv.i = v;
        } else {
          const std::string& s = symbols[static_cast<size_t>(v)];
          fv.str = s.data();
          fv.len = static_cast<uint32_t>(s.size());
        }
        break;
      }
    }
    fv.present = true;
    return true;
  }

  bool Run(const Reader& r) {
    switch (r.op) {
      case Op::kSkip: return Skip(r.node, 0);
      case Op::kLeaf: return ReadLeaf(r);
      case Op::kNull: return true;
      case Op::kRecord:
        for (const Reader& sub : r.subs) {
          if (!Run(sub)) return false;
        }
        return true;
      case Op::kUnion: {
        int64_t b;
        if (!Branch(r.subs.size(), &b)) return false;
        return Run(r.subs[static_cast<size_t>(b)]);
      }
      case Op::kWrongBranch: return Fail(r.error_kind, r.slot, r.message);
    }
    return true;
  }

  // The declaration: kafka.* slots and the tree of declared paths.
  Status Init(const RecordSchema& declared) {
    KAPPA_RETURN_IF_ERROR(ValidateRecordSchema(declared));
    schema = declared;
    paths = BuildFieldPaths(schema);
    return Status::OK();
  }

  // ---- Plans ----

  // The plan for `text` as writer schema `id` (a failed plan if the text is
  // not an Avro schema).
  std::unique_ptr<Plan> BuildPlan(int32_t id, const std::string& text) {
    auto plan = std::make_unique<Plan>();
    plan->id = id;
    avro_schema_t parsed = nullptr;
    if (avro_schema_from_json_length(text.data(), text.size(), &parsed) != 0) {
      plan->failed = true;
      plan->error = DecodeError{DecodeError::Kind::kUndecodable, "",
                                "writer schema " + std::to_string(id) + " is not a valid Avro schema: " + avro_strerror()};
      return plan;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element json;
    const bool has_json = !parser.parse(text).get(json);
    SchemaWalker walker(&plan->nodes);
    const int root = walker.Walk(parsed, json, has_json);
    avro_schema_decref(parsed);
    PlanBuilder(schema, plan.get()).Build(root, paths.root);
    return plan;
  }

  static std::unique_ptr<Plan> UnknownPlan(int32_t id, const std::string& why) {
    auto plan = std::make_unique<Plan>();
    plan->id = id;
    plan->failed = true;
    plan->error = DecodeError{DecodeError::Kind::kUndecodable, "", "unknown schema id " + std::to_string(id) + why};
    return plan;
  }

  // The plan for writer schema `id`; null (and last_fatal set) when the
  // registry could not be asked.
  const Plan* PlanFor(int32_t id) {
    if (last_plan != nullptr && last_plan->id == id && last_plan->unknown_at_ms == 0) return last_plan;
    auto it = plans.find(id);
    // An id the registry did not have is asked again a while later: a
    // schema registered after its first record was read (a producer ahead
    // of a registry replica) stayed unknown for the process's life, its
    // records dead-lettered as "no such schema" (a bug bash).
    if (it != plans.end() && it->second->unknown_at_ms != 0 &&
        SteadyClock::Instance().NowMs() - it->second->unknown_at_ms >= kUnknownIdRecheckMs) {
      if (last_plan == it->second.get()) last_plan = nullptr;
      plans.erase(it);
      it = plans.end();
    }
    if (it == plans.end()) {
      std::unique_ptr<Plan> plan;
      if (registry == nullptr || id < 0) {  // ids are 0 .. 2^31-1: a negative one is no registry's
        // The 4 id bytes with the top bit set read as a negative id, as
        // Java's deserializer reads them; said so, beside the bare number.
        plan = UnknownPlan(id, id < 0 ? " (the record's 4 id bytes have the top bit set: schema ids are 0 to "
                                        "2147483647, no registry holds this one)"
                                      : std::string());
      } else {
        Result<std::string> text = registry->SchemaById(id);
        if (text.ok()) {
          plan = BuildPlan(id, *text);
        } else if (text.status().code() == Status::Code::kNotFound) {
          plan = UnknownPlan(id, " (the schema registry at " + registry->url() + " has no such schema)");
          plan->unknown_at_ms = SteadyClock::Instance().NowMs();
        } else if (text.status().code() == Status::Code::kInvalidArgument) {
          // A schema there that is no Avro kappa reads (another schema
          // type, references the registry cannot resolve): each record of
          // it is a dead letter saying so.
          plan = std::make_unique<Plan>();
          plan->id = id;
          plan->failed = true;
          plan->error = DecodeError{DecodeError::Kind::kUndecodable, "", text.status().message()};
        } else {
          last_fatal = text.status();
          return nullptr;
        }
      }
      it = plans.emplace(id, std::move(plan)).first;
    }
    // The spec does not fit this writer schema (also one given at the start).
    if (!it->second->fatal.empty()) {
      last_fatal = Status::FailedPrecondition(it->second->fatal);
      return nullptr;
    }
    last_plan = it->second.get();
    return last_plan;
  }

  bool Decode(const RawRecord& r, FieldValue* o, DecodeError* err) {
    out = o;
    error = err;
    if (!last_fatal.ok()) last_fatal = Status::OK();
    const int n = schema.size();
    for (int i = 0; i < n; ++i) out[i] = FieldValue{{0}, nullptr, 0, false};

    if (r.size == 0 || r.payload == nullptr) {
      return Fail(DecodeError::Kind::kUndecodable, -1, "an empty record: not the Confluent wire format");
    }
    if (r.payload[0] != 0) {
      return Fail(DecodeError::Kind::kUndecodable, -1,
                  "not the Confluent wire format (magic byte " + std::to_string(r.payload[0]) + ", expected 0)");
    }
    if (r.size < 5) {
      return Fail(DecodeError::Kind::kUndecodable, -1,
                  "not the Confluent wire format: " + std::to_string(r.size) +
                      " bytes, shorter than the 5-byte header (magic byte, schema id)");
    }
    const int32_t id = static_cast<int32_t>((uint32_t{r.payload[1]} << 24) | (uint32_t{r.payload[2]} << 16) |
                                            (uint32_t{r.payload[3]} << 8) | uint32_t{r.payload[4]});
    plan = PlanFor(id);
    if (plan == nullptr) {
      // The registry failed, or the spec does not fit this writer schema.
      return Fail(DecodeError::Kind::kUndecodable, -1,
                  "the writer schema " + std::to_string(id) +
                      (last_fatal.code() == Status::Code::kFailedPrecondition ? ": " : " could not be fetched: ") +
                      last_fatal.ToString());
    }
    if (plan->failed) {
      *error = plan->error;
      return false;
    }
    p = r.payload + 5;
    end = r.payload + r.size;
    if (!Run(plan->root)) return false;
    if (p != end) return Undecodable(std::to_string(end - p) + " bytes after the record");

    paths.FillKafkaFields(r, out);
    for (int i = 0; i < n; ++i) {
      const FieldDecl& f = schema.field(i);
      if (out[i].present || f.optional) continue;
      // The plan resolved the field, so only a null on its way leaves it unset.
      return Fail(DecodeError::Kind::kMissingField, i,
                  "required field `" + f.name + "` at `" + f.path + "` is null (writer schema " + std::to_string(id) +
                      ")");
    }
    return true;
  }
};

Result<std::unique_ptr<AvroDecoder>> AvroDecoder::Create(const RecordSchema& schema, SchemaRegistryClient* registry) {
  if (registry == nullptr) return Status::InvalidArgument("the Avro input needs a schema registry client");
  auto impl = std::make_unique<Impl>();
  KAPPA_RETURN_IF_ERROR(impl->Init(schema));
  impl->registry = registry;
  return std::unique_ptr<AvroDecoder>(new AvroDecoder(std::move(impl)));
}

Result<std::unique_ptr<AvroDecoder>> AvroDecoder::CreateWithWriterSchemas(
    const RecordSchema& schema, const std::vector<std::pair<int32_t, std::string>>& writer_schemas) {
  auto impl = std::make_unique<Impl>();
  KAPPA_RETURN_IF_ERROR(impl->Init(schema));
  for (const auto& [id, text] : writer_schemas) {
    auto plan = impl->BuildPlan(id, text);
    if (plan->failed && plan->error.kind == DecodeError::Kind::kUndecodable) {
      return Status::InvalidArgument(plan->error.message);
    }
    impl->plans[id] = std::move(plan);
  }
  return std::unique_ptr<AvroDecoder>(new AvroDecoder(std::move(impl)));
}

AvroDecoder::AvroDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AvroDecoder::~AvroDecoder() = default;

bool AvroDecoder::Decode(const RawRecord& record, FieldValue* out, DecodeError* error) {
  return impl_->Decode(record, out, error);
}

const Status& AvroDecoder::last_fatal() const { return impl_->last_fatal; }

size_t AvroDecoder::cached_plans() const { return impl_->plans.size(); }

}  // namespace kappa
