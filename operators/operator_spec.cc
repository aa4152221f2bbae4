#include "operators/operator_spec.h"

#include <cctype>
#include <charconv>
#include <deque>
#include <mutex>
#include <string>

#include "operators/field_access.h"

namespace kappa {

namespace {
constexpr std::pair<std::string_view, Field> kFields[] = {
    {"txn_id", Field::kTxnId},      {"user_id", Field::kUserId},
    {"status", Field::kStatus},     {"amount_cents", Field::kAmountCents},
    {"currency", Field::kCurrency}, {"event_time_ms", Field::kEventTime},
    {"type", Field::kType},         {"auction", Field::kAuction},
    {"bidder", Field::kBidder},     {"price", Field::kPrice},
    {"channel", Field::kChannel},   {"url", Field::kUrl},
    {"date_time", Field::kDateTime}, {"id", Field::kId},
    {"item_name", Field::kItemName}, {"description", Field::kDescription},
    {"initial_bid", Field::kInitialBid}, {"reserve", Field::kReserve},
    {"expires", Field::kExpires},   {"seller", Field::kSeller},
    {"category", Field::kCategory}, {"name", Field::kName},
    {"email_address", Field::kEmail}, {"credit_card", Field::kCreditCard},
    {"city", Field::kCity},         {"state", Field::kState},
    {"extra", Field::kExtra},       {"offset", Field::kOffset},
    {"value", Field::kValue},       {"partition", Field::kPartition}};
}  // namespace

Result<RecordFormat> ParseRecordFormat(std::string_view name) {
  if (name == "transaction") return RecordFormat::kTransaction;
  if (name == "nexmark") return RecordFormat::kNexmark;
  if (name == "json") return RecordFormat::kJson;
  if (name == "avro") return RecordFormat::kAvro;
  if (name == "flatbuffers") return RecordFormat::kFlatBuffers;
  return Status::InvalidArgument("unknown format `" + std::string(name) +
                                 "` (transaction, nexmark, json, avro or flatbuffers)");
}

std::string_view RecordFormatName(RecordFormat format) {
  switch (format) {
    case RecordFormat::kNexmark: return "nexmark";
    case RecordFormat::kJson: return "json";
    case RecordFormat::kAvro: return "avro";
    case RecordFormat::kFlatBuffers: return "flatbuffers";
    case RecordFormat::kTransaction: break;
  }
  return "transaction";
}

bool FieldInFormat(Field field, RecordFormat format) {
  if (field == Field::kOffset || field == Field::kValue || field == Field::kPartition) return true;
  if (IsComputedField(field)) return true;  // a map of the chain computes it, whatever the format
  if (IsDeclaredField(field)) return IsDeclaredFormat(format);
  if (IsDeclaredFormat(format)) return false;
  const bool txn = static_cast<int>(field) <= static_cast<int>(Field::kEventTime);
  return txn == (format == RecordFormat::kTransaction);
}

namespace {

// The declared fields ever interned, append-only: a Field stays valid for
// the process's life. Entries are never moved (deque), so readers need the
// lock only to find the entry, which they do at parse and build time, never
// per record.
struct DeclaredTable {
  std::mutex mu;
  std::deque<DeclaredFieldInfo> entries;
};
DeclaredTable& Declared() {
  static DeclaredTable* table = new DeclaredTable();  // never destroyed: Fields outlive statics
  return *table;
}
thread_local const RecordSchema* t_declared_scope = nullptr;

constexpr size_t kMaxDeclaredEntries = 1 << 12;

Field DeclaredFieldValue(size_t index, int slot, ValueType type) {
  return static_cast<Field>(static_cast<int>(Field::kDeclaredBase) +
                            (static_cast<int>(index) << 16 | slot << 3 | static_cast<int>(type)));
}

}  // namespace

const DeclaredFieldInfo& DeclaredFieldOf(Field field) {
  DeclaredTable& t = Declared();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.entries.at(static_cast<size_t>((static_cast<int>(field) - static_cast<int>(Field::kDeclaredBase)) >> 16));
}

Result<Field> InternDeclaredField(const std::string& name, ValueType type, int slot) {
  if (slot < 0 || slot >= kMaxDeclaredSlots) {
    return Status::InvalidArgument("at most " + std::to_string(kMaxDeclaredSlots) + " declared fields");
  }
  DeclaredTable& t = Declared();
  std::lock_guard<std::mutex> lock(t.mu);
  for (size_t i = 0; i < t.entries.size(); ++i) {
    const DeclaredFieldInfo& e = t.entries[i];
    if (e.name == name && e.type == type && e.slot == slot) return DeclaredFieldValue(i, slot, type);
  }
  if (t.entries.size() >= kMaxDeclaredEntries) {
    return Status::InvalidArgument("more than " + std::to_string(kMaxDeclaredEntries) +
                                   " distinct declared fields in one process");
  }
  t.entries.push_back({name, type, slot});
  return DeclaredFieldValue(t.entries.size() - 1, slot, type);
}

namespace {
struct ComputedNames {
  std::vector<std::pair<std::string, Field>> fields;
};
thread_local ComputedNames* t_computed_scope = nullptr;
}  // namespace

ComputedFieldsScope::ComputedFieldsScope() : previous_(t_computed_scope) { t_computed_scope = new ComputedNames(); }
ComputedFieldsScope::~ComputedFieldsScope() {
  delete t_computed_scope;
  t_computed_scope = static_cast<ComputedNames*>(previous_);
}

Result<Field> DeclareComputedField(const std::string& name, ValueType type) {
  if (ParseField(name, /*allow_double=*/true).ok()) {
    return Status::InvalidArgument("map: `" + name + "` is already a field; name the computed value otherwise");
  }
  const int index = t_computed_scope ? static_cast<int>(t_computed_scope->fields.size()) : 0;
  if (kComputedSlotBase + index >= kMaxDeclaredSlots) {
    return Status::InvalidArgument("a chain computes at most " + std::to_string(kMaxDeclaredSlots - kComputedSlotBase) +
                                   " named values");
  }
  auto field = InternDeclaredField(name, type, kComputedSlotBase + index);
  if (!field.ok()) return field.status();
  if (t_computed_scope) t_computed_scope->fields.emplace_back(name, *field);
  return *field;
}

DeclaredFieldsScope::DeclaredFieldsScope(const RecordSchema* schema) : previous_(t_declared_scope) {
  t_declared_scope = schema;
}
DeclaredFieldsScope::~DeclaredFieldsScope() { t_declared_scope = previous_; }

Result<Field> ParseField(std::string_view name, bool allow_double) {
  if (t_computed_scope != nullptr) {
    for (const auto& [n, f] : t_computed_scope->fields) {
      if (n != name) continue;
      if (DeclaredTypeOf(f) == ValueType::kDouble && !allow_double) {
        return Status::InvalidArgument("`" + n + "` is a double a map computes; only window features read doubles");
      }
      return f;
    }
  }
  if (const RecordSchema* schema = t_declared_scope) {
    if (auto slot = schema->Find(name)) {
      const FieldDecl& decl = schema->field(*slot);
      if (decl.type == ValueType::kDouble && !allow_double) {
        // Only named features aggregate doubles; the other operators compute
        // in int64, where a double would be truncated silently.
        return Status::InvalidArgument("field `" + decl.name +
                                       "` is a double; only window features (sum, min, max, avg, first, last, "
                                       "count_distinct) read doubles; other operators read int64, timestamp, bool "
                                       "and string fields (declare cents as int64)");
      }
      return InternDeclaredField(decl.name, decl.type, *slot);
    }
    if (name == "offset") return Field::kOffset;
    if (name == "value") return Field::kValue;
    if (name == "partition") return Field::kPartition;
    std::string known;
    for (const FieldDecl& decl : schema->fields()) known.append(known.empty() ? "" : ", ").append(decl.name);
    return Status::InvalidArgument("unknown field `" + std::string(name) + "` (declared in source.fields: " +
                                   known + "; any format: offset, value, and partition as a window's or emit's key)");
  }
  for (const auto& [n, f] : kFields) {
    if (n == name) return f;
  }
  return Status::InvalidArgument(
      "unknown field `" + std::string(name) +
      "` (fields: txn_id, user_id, status, amount_cents, currency, event_time_ms; nexmark: type, "
      "auction, bidder, price, channel, url, date_time, id, item_name, description, initial_bid, reserve, "
      "expires, seller, category, name, email_address, credit_card, city, state, extra; any: offset, value, "
      "partition)");
}

std::string_view FieldName(Field field) {
  if (IsDeclaredField(field)) return DeclaredFieldOf(field).name;
  for (const auto& [n, f] : kFields) {
    if (f == field) return n;
  }
  return "?";
}

bool IsNumericField(Field field) {
  if (IsDeclaredField(field)) {
    const ValueType type = DeclaredTypeOf(field);
    return type == ValueType::kInt64 || type == ValueType::kTimestamp || type == ValueType::kBool;
  }
  switch (field) {
    case Field::kAmountCents:
    case Field::kEventTime:
    case Field::kAuction:
    case Field::kBidder:
    case Field::kPrice:
    case Field::kDateTime:
    case Field::kId:
    case Field::kInitialBid:
    case Field::kReserve:
    case Field::kExpires:
    case Field::kSeller:
    case Field::kCategory:
    case Field::kOffset:
    case Field::kValue:
      return true;
    default:
      return false;
  }
}

Result<Predicate> ParsePredicate(std::string_view text) {
  const std::string original(text);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(
        "predicate \"" + original + "\": " + why +
        " (write FIELD OP VALUE, OP one of == != < <= > >=, e.g. \"status != cancelled\")");
  };
  size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  skip();
  size_t start = i;
  while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_')) ++i;
  if (i == start) return bad("missing field name");
  auto field = ParseField(text.substr(start, i - start));
  if (!field.ok()) return bad(field.status().message());
  if (IsKeyOnlyField(*field)) return bad("`partition` can only key a window or an emit");
  skip();
  int64_t modulus = 0;
  if (i < text.size() && text[i] == '%') {
    ++i;
    skip();
    start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    auto r = std::from_chars(text.data() + start, text.data() + i, modulus);
    if (i == start || r.ec != std::errc() || modulus <= 0) return bad("`%` needs a positive integer modulus");
    if (!IsNumericField(*field)) {
      std::string why = "`%` applies to numeric fields, not `";
      why.append(FieldName(*field)).append("`");
      return bad(why);
    }
    skip();
  }
  start = i;
  while (i < text.size() && std::string_view("=!<>").find(text[i]) != std::string_view::npos) ++i;
  const std::string_view op = text.substr(start, i - start);
  Predicate p;
  p.field = *field;
  p.modulus = modulus;
  if (op == "==")
    p.op = Predicate::Op::kEq;
  else if (op == "!=")
    p.op = Predicate::Op::kNe;
  else if (op == "<")
    p.op = Predicate::Op::kLt;
  else if (op == "<=")
    p.op = Predicate::Op::kLe;
  else if (op == ">")
    p.op = Predicate::Op::kGt;
  else if (op == ">=")
    p.op = Predicate::Op::kGe;
  else if (op.empty()) {
    // Name a stray operator ("~", "=~") rather than call it missing.
    size_t end = i;
    while (end < text.size() && std::ispunct(static_cast<unsigned char>(text[end])) && text[end] != '"' &&
           text[end] != '\'' && text[end] != '-') {
      ++end;
    }
    if (end == i) return bad("missing operator after `" + std::string(FieldName(p.field)) + "`");
    std::string why = "unknown operator `";
    why.append(text.substr(i, end - i)).append("`");
    return bad(why);
  } else {
    std::string why = "unknown operator `";
    why.append(op).append("`");
    return bad(why);
  }
  skip();
  std::string value(text.substr(i));
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
    value = value.substr(1, value.size() - 2);
  }
  if (value.empty()) return bad("missing value");
  if (IsDeclaredField(p.field) && DeclaredTypeOf(p.field) == ValueType::kBool) {
    // Not a number either (a bool is held as 0/1, but `f == 1` is refused
    // inside an expression too): an entry comparing it with true or false
    // is read as an expression (AddFilterEntry), this error stands otherwise.
    const std::string name(FieldName(p.field));
    return bad("`" + name + "` is a bool, so `" + value + "` is no value of it: compare it with true or false (`" +
               name + " == true`), or write `" + name + "` or `not " + name + "`");
  }
  if (IsNumericField(p.field)) {
    auto r = std::from_chars(value.data(), value.data() + value.size(), p.number);
    if (r.ec == std::errc::result_out_of_range && r.ptr == value.data() + value.size()) {
      // An integer all the same (a bug bash read "is not an integer" of 2^63).
      return bad("`" + value + "` does not fit in an int64: write the filter as an expression, `" +
                 std::string(FieldName(p.field)) + (modulus ? " % " + std::to_string(modulus) : "") + " " +
                 std::string(op) + " " + value +
                 ".0`, which compares the field with it exactly");
    }
    if (r.ec != std::errc() || r.ptr != value.data() + value.size()) {
      std::string why = "`";
      why.append(FieldName(p.field)).append("` is numeric but `").append(value).append("` is not an integer");
      return bad(why);
    }
  } else if (p.field == Field::kStatus) {
    if (value != "approved" && value != "cancelled" && value != "refunded") {
      return bad("status is approved, cancelled or refunded, not `" + value + "`");
    }
    p.text = value;
  } else if (p.field == Field::kType) {
    p.number = NexmarkTypeCode(value);
    if (p.number == 0) return bad("type is person, auction or bid, not `" + value + "`");
    p.text = value;
  } else {
    p.text = value;
  }
  return p;
}

Result<Aggregate> ParseAggregate(std::string_view name) {
  if (name == "count") return Aggregate::kCount;
  if (name == "sum") return Aggregate::kSum;
  if (name == "min") return Aggregate::kMin;
  if (name == "max") return Aggregate::kMax;
  if (name == "avg") return Aggregate::kAvg;
  return Status::InvalidArgument("unknown aggregate `" + std::string(name) + "` (count, sum, min, max, avg)");
}

Result<Field> FieldAt(const ConfigNode& body, std::string_view key, Field fallback) {
  const ConfigNode* v = body.Find(key);
  if (v == nullptr) return fallback;
  auto name = v->String();
  if (!name.ok()) return name.status();
  auto f = ParseField(*name);
  if (!f.ok()) return v->Error(f.status().message());
  return *f;
}

Result<std::vector<Field>> FieldsAt(const ConfigNode& body, std::string_view key, std::string_view what) {
  std::vector<Field> fields;
  const ConfigNode* v = body.Find(key);
  if (v == nullptr) return fields;
  if (!v->IsList() || v->size() == 0) {
    return v->Error("`" + std::string(key) + "` must be a non-empty list of " + std::string(what));
  }
  for (const ConfigNode& item : v->items()) {
    auto name = item.String();
    if (!name.ok()) return name.status();
    auto f = ParseField(*name);
    if (!f.ok()) return item.Error(f.status().message());
    fields.push_back(*f);
  }
  return fields;
}

void AppendCanonicalFields(std::string& out, std::string_view name, const std::vector<Field>& fields) {
  if (fields.empty()) return;
  out.append(",").append(name).append("=");
  for (Field f : fields) out.append(FieldName(f)).append("/");
}

}  // namespace kappa
