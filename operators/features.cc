#include "operators/features.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <set>

#include "base/iso_time.h"
#include "base/utf8.h"
#include "postgres/copy_text.h"

namespace kappa {
namespace {

constexpr std::string_view kLeadingColumns[] = {"key", "window_start", "window_end", "event_time"};

struct KindName {
  std::string_view name;
  FeatureKind kind;
};
constexpr KindName kKinds[] = {
    {"count", FeatureKind::kCount}, {"sum", FeatureKind::kSum},   {"min", FeatureKind::kMin},
    {"max", FeatureKind::kMax},     {"avg", FeatureKind::kAvg},   {"first", FeatureKind::kFirst},
    {"last", FeatureKind::kLast},   {"count_distinct", FeatureKind::kCountDistinct},
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool IsNumericOrDouble(Field f) {
  return IsNumericField(f) || (IsDeclaredField(f) && DeclaredTypeOf(f) == ValueType::kDouble);
}


void AppendAvroLong(std::string& out, int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (z >= 0x80) {
    out.push_back(static_cast<char>((z & 0x7f) | 0x80));
    z >>= 7;
  }
  out.push_back(static_cast<char>(z));
}

// An Avro string is UTF-8. Text as it is; a byte that is not UTF-8 (a
// binary Kafka key, Avro `bytes` declared string) as the character U+00XX
// in UTF-8, the one the JSON rows write as \u00XX: the raw byte made the
// row unreadable to every Avro reader (a bug bash).
void AppendAvroString(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
    } else if (const size_t n = Utf8SequenceAt(s, i); n > 0) {
      i += n;
    } else {
      break;
    }
  }
  if (i == s.size()) {
    AppendAvroLong(out, static_cast<int64_t>(s.size()));
    out.append(s);
    return;
  }
  std::string text(s.substr(0, i));
  for (; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (const size_t n = Utf8SequenceAt(s, i); n > 0) {
        text.append(s.data() + i, n);
        i += n - 1;
      } else {
        text.push_back(static_cast<char>(0xc0 | (c >> 6)));
        text.push_back(static_cast<char>(0x80 | (c & 0x3f)));
      }
      continue;
    }
    text.push_back(static_cast<char>(c));
  }
  AppendAvroLong(out, static_cast<int64_t>(text.size()));
  out.append(text);
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      // A UTF-8 character as it is; a byte that is not UTF-8 (a binary
      // Kafka key, an Avro or FlatBuffers string that is not text) as
      // \u00XX, so that the row stays valid JSON.
      if (const size_t n = Utf8SequenceAt(s, i); n > 0) {
        out.append(s.data() + i, n);
        i += n - 1;
      } else {
        static constexpr char kHex[] = "0123456789abcdef";
        out.append("\\u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
      }
      continue;
    }
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string_view FeatureKindName(FeatureKind kind) {
  for (const KindName& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "?";
}

bool IsLeadingColumnName(std::string_view name) {
  for (std::string_view c : kLeadingColumns) {
    if (c == name) return true;
  }
  return false;
}

Result<std::vector<FeatureSpec>> ParseFeatures(const ConfigNode& node) {
  if (!node.IsMap() || node.size() == 0) {
    return node.Error("window `features` must map output names to aggregates, e.g. "
                      "{txn_count_1h: count, spend_1h: sum(amount_cents)}");
  }
  std::vector<FeatureSpec> out;
  for (const auto& [key, value] : node.entries()) {
    FeatureSpec f;
    f.name = key.scalar();
    auto text = value.String();
    if (!text.ok()) return text.status();
    std::string_view t = Trim(*text);
    std::string_view kind_name = t, arg;
    if (const size_t open = t.find('('); open != std::string_view::npos) {
      if (t.back() != ')') {
        return value.Error("feature `" + f.name + "`: `" + std::string(t) + "` lacks its closing parenthesis");
      }
      kind_name = Trim(t.substr(0, open));
      arg = Trim(t.substr(open + 1, t.size() - open - 2));
    }
    bool known = false;
    for (const KindName& k : kKinds) {
      if (k.name == kind_name) {
        f.kind = k.kind;
        known = true;
      }
    }
    if (!known) {
      return value.Error("feature `" + f.name + "`: unknown aggregate `" + std::string(kind_name) +
                         "` (count, sum(f), min(f), max(f), avg(f), first(f), last(f), count_distinct(f))");
    }
    if (f.kind == FeatureKind::kCount) {
      if (!arg.empty()) return value.Error("feature `" + f.name + "`: count takes no field (write `count`)");
    } else {
      if (arg.empty()) {
        return value.Error("feature `" + f.name + "`: " + std::string(kind_name) + " needs a field, e.g. " +
                           std::string(kind_name) + "(amount_cents)");
      }
      auto field = ParseField(arg, /*allow_double=*/true);
      if (!field.ok()) return value.Error("feature `" + f.name + "`: " + field.status().message());
      f.field = *field;
    }
    out.push_back(std::move(f));
  }
  if (Status s = ValidateFeatures(out); !s.ok()) return node.Error(s.message());
  return out;
}

Status ValidateFeatures(const std::vector<FeatureSpec>& features) {
  if (features.size() > kMaxFeatures) {
    return Status::InvalidArgument("a window computes at most " + std::to_string(kMaxFeatures) + " features, got " +
                                   std::to_string(features.size()));
  }
  std::set<std::string> seen;
  for (const FeatureSpec& f : features) {
    if (!IsIdentifier(f.name)) {
      return Status::InvalidArgument("feature name `" + f.name +
                                     "` must be letters, digits and _, not starting with a digit");
    }
    if (IsLeadingColumnName(f.name)) {
      return Status::InvalidArgument("feature name `" + f.name +
                                     "` is taken by a row column (key, window_start, window_end, event_time)");
    }
    if (!seen.insert(f.name).second) return Status::InvalidArgument("feature `" + f.name + "` is named twice");
    // Before the numeric check: `max(partition)` was told partition is not
    // numeric, `count_distinct(partition)` that it is not a field, while
    // the unknown-field message lists it (a bug bash).
    if (f.kind != FeatureKind::kCount && IsKeyOnlyField(f.field)) {
      return Status::InvalidArgument("feature `" + f.name + "`: `partition` can only key a window or an emit");
    }
    const bool needs_number = f.kind != FeatureKind::kCount && f.kind != FeatureKind::kCountDistinct;
    if (needs_number && !IsNumericOrDouble(f.field)) {
      return Status::InvalidArgument("feature `" + f.name + "`: " + std::string(FeatureKindName(f.kind)) +
                                     " takes a numeric field, not `" + std::string(FieldName(f.field)) + "`");
    }
  }
  return Status::OK();
}

void AppendCanonicalFeatures(std::string& out, const std::vector<FeatureSpec>& features) {
  if (features.empty()) return;
  out.append(",features=");
  for (const FeatureSpec& f : features) {
    out.append(f.name).append(":").append(FeatureKindName(f.kind));
    if (f.kind != FeatureKind::kCount) out.append(":").append(FieldName(f.field));
    out.append("/");
  }
}

std::string MissingFeatureMessage(const FeatureSpec& f) {
  return "feature `" + f.name + "` needs `" + std::string(FieldName(f.field)) +
         "`, absent in this record (declared optional)";
}

bool FeatureInputIsDouble(const FeatureSpec& f) {
  return f.kind != FeatureKind::kCount && IsDeclaredField(f.field) && DeclaredTypeOf(f.field) == ValueType::kDouble;
}

ValueType FeatureOutputType(const FeatureSpec& f) {
  switch (f.kind) {
    case FeatureKind::kCount:
    case FeatureKind::kCountDistinct:
      return ValueType::kInt64;
    case FeatureKind::kAvg:
      return ValueType::kDouble;
    case FeatureKind::kSum:
      return FeatureInputIsDouble(f) ? ValueType::kDouble : ValueType::kInt64;
    default:
      if (FeatureInputIsDouble(f)) return ValueType::kDouble;
      if (IsDeclaredField(f.field) && DeclaredTypeOf(f.field) == ValueType::kTimestamp) return ValueType::kTimestamp;
      return ValueType::kInt64;
  }
}

Result<RowFormat> ParseRowFormat(std::string_view name) {
  if (name == "json") return RowFormat::kJson;
  if (name == "avro") return RowFormat::kAvro;
  if (name == "flatbuffers") return RowFormat::kFlatBuffers;
  return Status::InvalidArgument("unknown row format `" + std::string(name) + "` (json, avro or flatbuffers)");
}

std::string_view RowFormatName(RowFormat format) {
  switch (format) {
    case RowFormat::kJson: return "json";
    case RowFormat::kAvro: return "avro";
    case RowFormat::kFlatBuffers: return "flatbuffers";
    case RowFormat::kPostgres: return "postgres";
  }
  return "?";
}

std::vector<RowColumn> FeatureRowColumns(std::vector<RowColumn> leading, const std::vector<FeatureSpec>& features) {
  for (const FeatureSpec& f : features) leading.push_back(RowColumn{f.name, FeatureOutputType(f)});
  return leading;
}

std::string AvroRowSchema(std::string_view record_name, const std::vector<RowColumn>& columns) {
  std::string s = "{\"type\":\"record\",\"name\":\"";
  s.append(record_name).append("\",\"namespace\":\"kappa.features\",\"fields\":[");
  for (size_t i = 0; i < columns.size(); ++i) {
    const RowColumn& c = columns[i];
    s.append(i ? "," : "").append("{\"name\":\"").append(c.name).append("\",\"type\":");
    switch (c.type) {
      case ValueType::kString: s.append("\"string\""); break;
      case ValueType::kDouble: s.append("\"double\""); break;
      case ValueType::kBool: s.append("\"boolean\""); break;
      case ValueType::kTimestamp: s.append("{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}"); break;
      default: s.append("\"long\""); break;
    }
    s.append("}");
  }
  s.append("]}");
  return s;
}

std::string FlatBuffersRowSchema(std::string_view table_name, const std::vector<RowColumn>& columns) {
  std::string s = "// Rows kappa writes with sink format flatbuffers; field i has id i.\n";
  s.append("namespace kappa.features;\n\ntable ").append(table_name).append(" {\n");
  for (const RowColumn& c : columns) {
    s.append("  ").append(c.name).append(": ");
    switch (c.type) {
      case ValueType::kString: s.append("string"); break;
      case ValueType::kDouble: s.append("double"); break;
      case ValueType::kBool: s.append("bool"); break;
      case ValueType::kTimestamp: s.append("long;  // epoch milliseconds\n"); continue;
      default: s.append("long"); break;
    }
    s.append(";\n");
  }
  s.append("}\n\nroot_type ").append(table_name).append(";\n");
  return s;
}

RowEncoder::RowEncoder(RowFormat format, std::vector<RowColumn> columns, int32_t avro_schema_id)
    : format_(format), columns_(std::move(columns)), avro_schema_id_(avro_schema_id) {
  if (format_ == RowFormat::kFlatBuffers) {
    pending_.resize(columns_.size());
    fbb_ = std::make_unique<flatbuffers::FlatBufferBuilder>(256);
  }
}

RowEncoder::~RowEncoder() = default;

void RowEncoder::Begin() {
  next_ = 0;
  out_.clear();
  switch (format_) {
    case RowFormat::kJson:
      out_.push_back('{');
      break;
    case RowFormat::kAvro: {
      // Confluent wire format: magic 0, the schema id big-endian, the body.
      out_.push_back('\0');
      const uint32_t id = static_cast<uint32_t>(avro_schema_id_);
      for (int i = 3; i >= 0; --i) out_.push_back(static_cast<char>(id >> (8 * i)));
      break;
    }
    case RowFormat::kFlatBuffers:
    case RowFormat::kPostgres:
      break;
  }
}

void RowEncoder::JsonName() {
  if (next_ > 0) out_.push_back(',');
  AppendJsonString(out_, columns_[next_].name);
  out_.push_back(':');
}

void RowEncoder::Str(std::string_view v) {
  switch (format_) {
    case RowFormat::kJson:
      JsonName();
      AppendJsonString(out_, v);
      break;
    case RowFormat::kAvro:
      AppendAvroString(out_, v);
      break;
    case RowFormat::kFlatBuffers:
      pending_[next_].s = v;
      break;
    case RowFormat::kPostgres:
      if (next_ > 0) out_.push_back('\t');
      AppendCopyText(out_, v);
      break;
  }
  ++next_;
}

void RowEncoder::Int(int64_t v) {
  switch (format_) {
    case RowFormat::kJson: {
      JsonName();
      if (columns_[next_].type == ValueType::kBool) {
        out_.append(v ? "true" : "false");
      } else {
        char buf[24];
        out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
      }
      break;
    }
    case RowFormat::kAvro:
      if (columns_[next_].type == ValueType::kBool) {
        out_.push_back(v ? 1 : 0);
      } else {
        AppendAvroLong(out_, v);
      }
      break;
    case RowFormat::kFlatBuffers:
      pending_[next_].i = v;
      break;
    case RowFormat::kPostgres: {
      if (next_ > 0) out_.push_back('\t');
      char buf[32];
      if (columns_[next_].type == ValueType::kBool) {
        out_.push_back(v ? 't' : 'f');
      } else if (columns_[next_].type == ValueType::kTimestamp) {
        out_.append(buf, PostgresTime(v, buf));  // timestamptz; out of its range: the database refuses the row
      } else {
        out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
      }
      break;
    }
  }
  ++next_;
}

void AppendJsonDouble(std::string* out, double v) {
  if (!std::isfinite(v)) {
    out->append("null");  // JSON has no NaN or infinity
  } else if (v == 0 && std::signbit(v)) {
    out->append("-0.0");  // "-0" reads back as the integer 0 (simdjson, Python): the sign was lost
  } else {
    char buf[32];
    // The shortest text, except that a whole number beyond int64
    // (27670116110564327424) would read back as an integer no reader
    // holds: those are written with an exponent (2.7670116110564327e+19).
    const bool beyond_int64 = std::fabs(v) >= 9223372036854775808.0;
    char* end = (beyond_int64 ? std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific)
                              : std::to_chars(buf, buf + sizeof(buf), v))
                    .ptr;
    out->append(buf, end);
    // A whole double keeps its point ("9.0", not "9"): typed readers
    // (Spark, pandas, simdjson) took "9" for an integer, so one column
    // changed type from row to row (a bug bash).
    if (std::find_if(buf, end, [](char c) { return c == '.' || c == 'e'; }) == end) out->append(".0");
  }
}

void RowEncoder::Double(double v) {
  switch (format_) {
    case RowFormat::kJson: {
      JsonName();
      AppendJsonDouble(&out_, v);
      break;
    }
    case RowFormat::kAvro: {
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(bits >> (8 * i)));  // little-endian
      break;
    }
    case RowFormat::kFlatBuffers:
      pending_[next_].d = v;
      break;
    case RowFormat::kPostgres:
      if (next_ > 0) out_.push_back('\t');
      if (std::isnan(v)) {
        out_.append("NaN");
      } else if (std::isinf(v)) {
        out_.append(v > 0 ? "Infinity" : "-Infinity");
      } else {
        char buf[32];  // shortest text that reads back as the same double
        out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
      }
      break;
  }
  ++next_;
}

std::span<const uint8_t> RowEncoder::Finish() {
  if (format_ == RowFormat::kJson) out_.push_back('}');
  if (format_ != RowFormat::kFlatBuffers) {
    return {reinterpret_cast<const uint8_t*>(out_.data()), out_.size()};
  }
  auto& fbb = *fbb_;
  fbb.Clear();
  std::vector<flatbuffers::uoffset_t> strings(columns_.size(), 0);
  for (size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i].type == ValueType::kString) {
      strings[i] = fbb.CreateString(pending_[i].s.data(), pending_[i].s.size()).o;
    }
  }
  const auto start = fbb.StartTable();
  for (size_t i = 0; i < columns_.size(); ++i) {
    const auto vo = static_cast<flatbuffers::voffset_t>(flatbuffers::FieldIndexToOffset(static_cast<flatbuffers::voffset_t>(i)));
    switch (columns_[i].type) {
      case ValueType::kString:
        fbb.AddOffset(vo, flatbuffers::Offset<flatbuffers::String>(strings[i]));
        break;
      case ValueType::kDouble:
        // -0.0 equals the default 0.0, which AddElement leaves out: readers got +0.0.
        if (pending_[i].d == 0 && std::signbit(pending_[i].d)) {
          fbb.ForceDefaults(true);
          fbb.AddElement<double>(vo, pending_[i].d, 0.0);
          fbb.ForceDefaults(false);
        } else {
          fbb.AddElement<double>(vo, pending_[i].d, 0.0);
        }
        break;
      case ValueType::kBool:
        fbb.AddElement<uint8_t>(vo, pending_[i].i != 0, 0);
        break;
      default:
        fbb.AddElement<int64_t>(vo, pending_[i].i, 0);
        break;
    }
  }
  fbb.Finish(flatbuffers::Offset<flatbuffers::Table>(fbb.EndTable(start)));
  return {fbb.GetBufferPointer(), fbb.GetSize()};
}

}  // namespace kappa
