#include "formats/schema_spec.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace kappa {
namespace {

constexpr std::string_view kTypes = "string, int64, double, bool, timestamp";
constexpr std::string_view kEncodings = "epoch_ms, epoch_us, iso8601";

std::optional<ValueType> TypeFromName(std::string_view name) {
  for (ValueType t : {ValueType::kString, ValueType::kInt64, ValueType::kDouble, ValueType::kBool,
                      ValueType::kTimestamp}) {
    if (ValueTypeName(t) == name) return t;
  }
  return std::nullopt;
}

std::optional<TimestampEncoding> EncodingFromName(std::string_view name) {
  for (TimestampEncoding e :
       {TimestampEncoding::kEpochMillis, TimestampEncoding::kEpochMicros, TimestampEncoding::kIso8601}) {
    if (TimestampEncodingName(e) == name) return e;
  }
  return std::nullopt;
}

bool IsIdentifier(std::string_view name) {
  if (name.empty()) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

// The checks shared by the spec parser and schemas built in code; "" when
// the field is fine with the ones before it.
std::string CheckField(const FieldDecl& f, const std::vector<FieldDecl>& before) {
  const std::string& p = f.path;
  if (p.empty() || p.front() == '.' || p.back() == '.' || p.find("..") != std::string::npos) {
    return "field `" + f.name + "`: path `" + p + "` has an empty segment (write it as `a.b.c`)";
  }
  if (p == "kafka.key" && f.type != ValueType::kString) {
    return "field `" + f.name + "`: kafka.key is the record's key, a string; declare it as `type: string`";
  }
  if (p == "kafka.timestamp" && f.type != ValueType::kTimestamp && f.type != ValueType::kInt64) {
    return "field `" + f.name +
           "`: kafka.timestamp is the record's Kafka timestamp; declare it as `type: timestamp` (or int64)";
  }
  if (p == "kafka.key" || p == "kafka.timestamp") return "";  // not in the record: any number may read them
  for (const FieldDecl& o : before) {
    if (o.path == p) return "fields `" + o.name + "` and `" + f.name + "` both read path `" + p + "`";
    const std::string& shorter = o.path.size() < p.size() ? o.path : p;
    const std::string& longer = o.path.size() < p.size() ? p : o.path;
    if (longer.compare(0, shorter.size(), shorter) == 0 && longer[shorter.size()] == '.') {
      return "fields `" + o.name + "` (" + o.path + ") and `" + f.name + "` (" + p + "): `" + shorter +
             "` cannot be both a value and an object holding `" + longer + "`";
    }
  }
  return "";
}

void AppendEscaped(std::string& out, std::string_view text) {
  for (char c : text) {
    if (c == '%') {
      out += "%25";
    } else if (c == ':') {
      out += "%3A";
    } else if (c == '\n') {
      out += "%0A";
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string_view TimestampEncodingName(TimestampEncoding encoding) {
  switch (encoding) {
    case TimestampEncoding::kEpochMillis: return "epoch_ms";
    case TimestampEncoding::kEpochMicros: return "epoch_us";
    case TimestampEncoding::kIso8601: return "iso8601";
  }
  return "?";
}

Result<RecordSchema> ParseRecordSchema(const ConfigNode& fields) {
  if (!fields.IsMap() || fields.size() == 0) {
    return fields.Error("`fields` must map each field the job uses to its type, e.g. `fields: {user_id: string, "
                        "amount: {type: double, path: payload.amount}}`");
  }
  RecordSchema schema;
  for (const auto& [key, value] : fields.entries()) {
    FieldDecl f;
    f.name = key.scalar();
    if (!IsIdentifier(f.name)) {
      return key.Error("field name `" + f.name +
                       "` must be an identifier (letters, digits, _; not starting with a digit): operators name it; "
                       "give the record's own spelling as `path`");
    }
    const ConfigNode* type_node = &value;
    if (value.IsMap()) {
      KAPPA_RETURN_IF_ERROR(value.CheckKeys({"type", "path", "encoding", "optional"}, "field `" + f.name + "`"));
      type_node = value.Find("type");
      if (type_node == nullptr) {
        return value.Error("field `" + f.name + "` needs a `type` (one of: " + std::string(kTypes) + ")");
      }
      if (const ConfigNode* p = value.Find("path")) {
        if (!p->IsScalar() || p->scalar().empty()) return p->Error("`path` of field `" + f.name + "` must be text");
        f.path = p->scalar();
      }
      if (const ConfigNode* o = value.Find("optional")) {
        auto b = o->Bool();
        if (!b.ok()) return o->Error("`optional` of field `" + f.name + "` must be true or false");
        f.optional = *b;
      }
    } else if (!value.IsScalar()) {
      return value.Error("field `" + f.name + "` must be a type (" + std::string(kTypes) +
                         ") or a mapping {type, path, encoding, optional}");
    }
    auto type = type_node->IsScalar() ? TypeFromName(type_node->scalar()) : std::nullopt;
    if (!type) {
      return type_node->Error("unknown type `" + type_node->scalar() + "` for field `" + f.name +
                              "` (expected one of: " + std::string(kTypes) + ")");
    }
    f.type = *type;
    if (const ConfigNode* e = value.IsMap() ? value.Find("encoding") : nullptr) {
      if (f.type != ValueType::kTimestamp) {
        return e->Error("`encoding` applies to timestamps only; field `" + f.name + "` is " +
                        std::string(ValueTypeName(f.type)));
      }
      auto enc = e->IsScalar() ? EncodingFromName(e->scalar()) : std::nullopt;
      if (!enc) {
        return e->Error("unknown timestamp encoding `" + e->scalar() + "` for field `" + f.name +
                        "` (expected one of: " + std::string(kEncodings) + ")");
      }
      f.timestamp = *enc;
    }
    if (f.path.empty()) f.path = f.name;
    std::string problem = CheckField(f, schema.fields());
    if (!problem.empty()) return key.Error(problem);
    Status added = schema.Add(std::move(f));
    if (!added.ok()) return key.Error(added.message());
  }
  return schema;
}

Status ValidateRecordSchema(const RecordSchema& schema) {
  std::vector<FieldDecl> before;
  for (const FieldDecl& f : schema.fields()) {
    std::string problem = CheckField(f, before);
    if (!problem.empty()) return Status::InvalidArgument(problem);
    before.push_back(f);
  }
  return Status::OK();
}

std::string CanonicalSchemaText(const RecordSchema& schema) {
  std::string out;
  for (const FieldDecl& f : schema.fields()) {
    out += f.name;
    out += ':';
    out += ValueTypeName(f.type);
    out += ':';
    AppendEscaped(out, f.path);
    out += ':';
    out += f.type == ValueType::kTimestamp ? TimestampEncodingName(f.timestamp) : "-";
    out += ':';
    out += f.optional ? '1' : '0';
    out += '\n';
  }
  return out;
}

}  // namespace kappa
