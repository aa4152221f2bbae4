#include "engine/job_spec.h"

#include <filesystem>

#include "formats/flatbuffers_decoder.h"
#include "formats/schema_spec.h"
#include "operators/decode_validate.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "base/hash.h"
#include "base/host.h"
#include "kafka/kafka_config.h"

namespace kappa {
namespace {

// The YAML document as a ConfigNode tree: the only place that reads YAML.
// yaml-cpp keeps both entries of a repeated key (and Find would take the
// first); a repeated key is refused here, naming both lines. Aliases are
// expanded, so a few hundred bytes of nested aliases could stand for 10^10
// values: past kMaxSpecValues the tree stops growing and *error says so.
constexpr size_t kMaxSpecValues = 100000;

ConfigNode FromYaml(const YAML::Node& node, const std::shared_ptr<const std::string>& origin, std::string path,
                    Status* error, size_t* values, int depth = 0) {
  const int line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
  // The text's nesting is checked before parsing (CheckNesting), but an
  // alias can hold itself (`x: &x [*x]`): expanded, it recursed until the
  // stack overflowed (SIGSEGV, no message; a bug bash).
  if (depth > kMaxSpecNesting) {
    if (error->ok()) {
      *error = Status::InvalidArgument(*origin + ":" + std::to_string(line) + ": nested more than " +
                                       std::to_string(kMaxSpecNesting) +
                                       " levels deep once its aliases are expanded (an alias inside the value it "
                                       "names, such as `x: &x [*x]`?)");
    }
    return ConfigNode(ConfigNode::Kind::kNull, origin, std::move(path), line);
  }
  if (++*values > kMaxSpecValues) {
    if (error->ok()) {
      *error = Status::InvalidArgument(*origin + ":" + std::to_string(line) + ": the spec holds more than " +
                                       std::to_string(kMaxSpecValues) +
                                       " values (counting each use of an alias); a job spec needs a few dozen");
    }
    return ConfigNode(ConfigNode::Kind::kNull, origin, std::move(path), line);
  }
  if (node.IsMap()) {
    ConfigNode map(ConfigNode::Kind::kMap, origin, path, line);
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      ConfigNode key_node(ConfigNode::Kind::kScalar, origin, path, kv.first.Mark().line + 1);
      key_node.set_scalar(key);
      if (error->ok()) {
        for (const auto& [earlier, value] : map.entries()) {
          if (earlier.scalar() != key) continue;
          *error = key_node.Error("`" + ConfigNode::ChildPath(path, key) + "` is given twice (also on line " +
                                  std::to_string(earlier.line()) + "); keep one");
          break;
        }
      }
      ConfigNode value = FromYaml(kv.second, origin, ConfigNode::ChildPath(path, key), error, values, depth + 1);
      map.AddEntry(std::move(key_node), std::move(value));
    }
    return map;
  }
  if (node.IsSequence()) {
    ConfigNode list(ConfigNode::Kind::kList, origin, path, line);
    size_t i = 0;
    for (const auto& item : node) {
      list.AddItem(FromYaml(item, origin, ConfigNode::ItemPath(path, i++), error, values, depth + 1));
    }
    return list;
  }
  if (node.IsScalar()) {
    ConfigNode scalar(ConfigNode::Kind::kScalar, origin, std::move(path), line);
    scalar.set_scalar(node.Scalar());
    return scalar;
  }
  return ConfigNode(ConfigNode::Kind::kNull, origin, std::move(path), line);
}

// Refuses input nested deeper than kMaxSpecNesting before yaml-cpp sees it:
// its scanner holds every open flow collection (10 MB of `[` took 12 s and
// 2.4 GB). Counts open `[`/`{` outside quotes and comments, plus the block
// levels: a stack of the columns where lines (and compact `- `/`? ` items)
// start. At worst an over-estimate, far above what any job spec needs.
Status CheckNesting(const std::string& text, const std::string& origin) {
  int flow = 0;
  int line = 1;
  size_t line_begin = 0;
  char quote = 0;
  bool comment = false;
  bool line_start = true;  // only indentation and item indicators so far
  std::vector<size_t> block;  // columns of the open block levels
  auto too_deep = [&] {
    return Status::InvalidArgument(origin + ":" + std::to_string(line) + ": nested more than " +
                                   std::to_string(kMaxSpecNesting) +
                                   " levels deep; a job spec needs a few (is this the right file?)");
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char prev = i > 0 ? text[i - 1] : '\n';
    const char next = i + 1 < text.size() ? text[i + 1] : '\n';
    if (c == '\n') {
      ++line;
      line_begin = i + 1;
      comment = false;
      line_start = quote == 0 && flow == 0;
      continue;
    }
    if (comment) continue;
    if (quote != 0) {
      if (quote == '"' && c == '\\') ++i;
      else if (c == quote) quote = 0;
      continue;
    }
    if (line_start) {
      if (c == ' ' || c == '\t' || c == '\r') continue;
      if (c == '#') {
        comment = true;
        line_start = false;
        continue;
      }
      const size_t col = i - line_begin;
      while (!block.empty() && block.back() >= col) block.pop_back();
      block.push_back(col);
      if (block.size() > static_cast<size_t>(kMaxSpecNesting)) return too_deep();
      if ((c == '-' || c == '?') && (next == ' ' || next == '\n')) continue;
      line_start = false;
    }
    const bool token_start = prev == ' ' || prev == '\t' || prev == '\n' || prev == '[' || prev == '{' ||
                             prev == ',' || prev == ':';
    if (c == '#' && (prev == ' ' || prev == '\t')) {
      comment = true;
    } else if ((c == '"' || c == '\'') && token_start) {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++flow + static_cast<int>(block.size()) > kMaxSpecNesting) return too_deep();
    } else if ((c == ']' || c == '}') && flow > 0) {
      --flow;
    }
  }
  return Status::OK();
}

// Every field the operators read must exist in the job's record format.
Status CheckFieldsInFormat(const ConfigNode& ops, const JobSpec& spec) {
  std::vector<Field> fields;
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    fields.clear();
    KindOf(spec.operators[i]).append_fields(spec.operators[i], fields);
    for (Field f : fields) {
      if (FieldInFormat(f, spec.decode.format)) continue;
      return ops.items()[i].Error("field `" + std::string(FieldName(f)) + "` is not in format " +
                                  std::string(RecordFormatName(spec.decode.format)) +
                                  (spec.decode.format == RecordFormat::kTransaction
                                       ? " (Nexmark fields need top-level `format: nexmark`)"
                                       : ""));
    }
  }
  return Status::OK();
}

// A user's own format, declared in the source: `format: json`, the fields
// the job reads (formats/schema_spec.h), which is the event time and which
// the value aggregates use by default.
Status ParseDeclaredFormat(const ConfigNode& source, JobSpec& spec) {
  const ConfigNode* format_node = source.Find("format");
  if (format_node == nullptr) {
    for (const char* key : {"fields", "event_time", "value", "schema", "root_type", "schema_registry"}) {
      if (const ConfigNode* n = source.Find(key)) {
        return n->Error(std::string("`source.") + key + "` belongs to a declared format: add `format: json`");
      }
    }
    return Status::OK();
  }
  auto format = ParseRecordFormat(format_node->IsScalar() ? format_node->scalar() : std::string());
  if (!format.ok()) return format_node->Error(format.status().message());
  spec.decode.format = *format;
  if (!IsDeclaredFormat(*format)) {
    if (source.Find("fields")) return source.Find("fields")->Error("the built-in formats have their fields already");
    return Status::OK();
  }
  const ConfigNode* fields = source.Find("fields");
  if (fields == nullptr) {
    return format_node->Error("format " + std::string(RecordFormatName(*format)) +
                              " needs `source.fields`: the fields the job reads, with their types and paths");
  }
  auto schema = ParseRecordSchema(*fields);
  if (!schema.ok()) return schema.status();
  auto slot_of = [&](const char* key, bool required, ValueType want, int* slot) -> Status {
    const ConfigNode* n = source.Find(key);
    if (n == nullptr) {
      if (!required) return Status::OK();
      return source.Error(std::string("needs `") + key + ":` naming the declared timestamp field that is the event time");
    }
    auto name = n->String();
    if (!name.ok()) return name.status();
    auto found = schema->Find(*name);
    if (!found) return n->Error("`" + *name + "` is not a declared field (source.fields)");
    if (schema->field(*found).type != want) {
      return n->Error("`" + std::string(key) + ": " + *name + "` must be a " + std::string(ValueTypeName(want)) +
                      " field, not " + std::string(ValueTypeName(schema->field(*found).type)));
    }
    *slot = *found;
    return Status::OK();
  };
  KAPPA_RETURN_IF_ERROR(slot_of("event_time", true, ValueType::kTimestamp, &spec.decode.event_time_slot));
  KAPPA_RETURN_IF_ERROR(slot_of("value", false, ValueType::kInt64, &spec.decode.value_slot));
  if (schema->field(spec.decode.event_time_slot).optional) {
    return source.Find("event_time")->Error("the event time field must not be optional");
  }
  spec.decode.schema = std::make_shared<const RecordSchema>(std::move(*schema));
  auto string_at = [&](const char* key, RecordFormat only, std::string* out) -> Status {
    const ConfigNode* n = source.Find(key);
    if (n == nullptr) return Status::OK();
    if (*format != only) {
      return n->Error(std::string("`source.") + key + "` applies to format " + std::string(RecordFormatName(only)));
    }
    auto text = n->String();
    if (!text.ok()) return text.status();
    *out = *text;
    return Status::OK();
  };
  KAPPA_RETURN_IF_ERROR(string_at("schema", RecordFormat::kFlatBuffers, &spec.decode.schema_file));
  KAPPA_RETURN_IF_ERROR(string_at("root_type", RecordFormat::kFlatBuffers, &spec.decode.root_type));
  KAPPA_RETURN_IF_ERROR(string_at("schema_registry", RecordFormat::kAvro, &spec.decode.schema_registry_url));
  if (*format == RecordFormat::kFlatBuffers && !spec.decode.schema_file.empty()) {
    // A relative schema path is relative to the spec file.
    std::filesystem::path file(spec.decode.schema_file);
    if (file.is_relative() && !source.origin().empty()) {
      file = std::filesystem::path(source.origin()).parent_path() / file;
    }
    spec.decode.schema_file = file.string();
  }
  // The decoder is built per task; building one here makes a schema it
  // cannot read a spec error, at the fields' line.
  auto decoder = MakeRecordDecoder(spec.decode);
  if (!decoder.ok()) return fields->Error(decoder.status().message());
  return Status::OK();
}

Status ParseSource(const ConfigNode& root, JobSpec& spec) {
  const ConfigNode* source = root.Find("source");
  if (source == nullptr) return root.Error("needs `source:` with `topic:`");
  KAPPA_RETURN_IF_ERROR(source->CheckKeys(
      {"topic", "start", "allow_truncated_history", "archive", "format", "fields", "event_time", "value", "schema",
       "root_type", "schema_registry"},
      "source"));
  auto topic = source->RequiredStringAt("topic", "source ");
  if (!topic.ok()) return topic.status();
  if (Status st = CheckTopicName(*topic); !st.ok()) {
    return source->Find("topic")->Error("`source.topic`: " + st.message());
  }
  spec.source_topic = *topic;
  if (const ConfigNode* start_node = source->Find("start")) {
    auto start = start_node->String();
    if (!start.ok()) return start.status();
    if (*start == "earliest") {
      spec.start = StartPosition::kEarliest;
    } else if (*start == "latest") {
      spec.start = StartPosition::kLatest;
    } else {
      int64_t ts = -1;
      auto r = std::from_chars(start->data(), start->data() + start->size(), ts);
      if (start->empty() || r.ec != std::errc() || r.ptr != start->data() + start->size() || ts < 0) {
        return start_node->Error("`start` must be earliest, latest or a timestamp in ms since the epoch");
      }
      spec.start = StartPosition::kTimestamp;
      spec.start_timestamp_ms = ts;
    }
  }
  if (const ConfigNode* n = source->Find("allow_truncated_history")) {
    auto allow = n->Bool();
    if (!allow.ok()) return allow.status();
    spec.allow_truncated_history = *allow;
  }
  if (const ConfigNode* n = source->Find("archive")) {
    auto dir = n->String();
    if (!dir.ok()) return dir.status();
    spec.archive_dir = *dir;
  }
  return ParseDeclaredFormat(*source, spec);
}

Status ParseFormatAndValidate(const ConfigNode& root, JobSpec& spec) {
  if (const ConfigNode* f = root.Find("format")) {
    if (root.Find("source") && root.Find("source")->Find("format")) {
      return f->Error("the format is given twice: keep `source.format` and remove the top-level `format:`");
    }
    auto format = ParseRecordFormat(f->IsScalar() ? f->scalar() : std::string());
    if (!format.ok()) return f->Error(format.status().message());
    spec.decode.format = *format;
  }
  const ConfigNode* v = root.Find("validate");
  if (v == nullptr) return Status::OK();
  if (spec.decode.format != RecordFormat::kTransaction) {
    return v->Error("`validate` (amounts, currencies) applies to format transaction only");
  }
  KAPPA_RETURN_IF_ERROR(v->CheckKeys({"min_amount_cents", "max_amount_cents", "currencies"}, "validate"));
  auto mn = v->IntAt("min_amount_cents", spec.decode.min_amount_cents);
  if (!mn.ok()) return mn.status();
  auto mx = v->IntAt("max_amount_cents", spec.decode.max_amount_cents);
  if (!mx.ok()) return mx.status();
  // An empty range dead-lettered every record, "outside [10, 5]" (a bug bash).
  if (*mn > *mx) {
    return v->Error("`validate`: min_amount_cents " + std::to_string(*mn) + " is above max_amount_cents " +
                    std::to_string(*mx) + ", so every record would be a dead letter");
  }
  spec.decode.min_amount_cents = *mn;
  spec.decode.max_amount_cents = *mx;
  if (const ConfigNode* currencies = v->Find("currencies")) {
    if (!currencies->IsList() && !currencies->IsNull()) {
      return currencies->Error("`currencies` must be a list of currency codes like [EUR, USD]");
    }
    for (const ConfigNode& c : currencies->items()) {
      auto code = c.String();
      if (!code.ok()) return code.status();
      spec.decode.allowed_currencies.push_back(*code);
    }
  }
  return Status::OK();
}

// A repartition (operators/repartition.h) cuts the chain into two stages.
// Before it, only what keeps the record as it came (dedup, filter): a map's
// values would not travel with the record. After it, nothing whose result
// depends on the order in which records of different upstream tasks arrive.
Status CheckRepartition(const ConfigNode& ops, const JobSpec& spec) {
  size_t at = spec.operators.size();
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    if (!std::holds_alternative<RepartitionSpec>(spec.operators[i])) continue;
    if (at != spec.operators.size()) {
      return ops.items()[i].Error("one `repartition` per job for now (this is the second)");
    }
    at = i;
  }
  if (at == spec.operators.size()) return Status::OK();
  for (size_t i = 0; i < at; ++i) {
    if (!std::holds_alternative<DedupSpec>(spec.operators[i]) &&
        !std::holds_alternative<FilterSpec>(spec.operators[i])) {
      return ops.items()[i].Error("before a `repartition` only dedup and filter can run (a " +
                                  std::string(KindOf(spec.operators[i]).name) +
                                  "'s results do not travel with the record): move it after the repartition");
    }
  }
  for (size_t i = at + 1; i < spec.operators.size(); ++i) {
    const OperatorSpec& op = spec.operators[i];
    std::string why;
    if (std::holds_alternative<DedupSpec>(op)) {
      why = "dedup keeps the first of equal records to arrive; put it before the repartition";
    } else if (const auto* w = std::get_if<WindowSpec>(&op)) {
      if (w->kind == WindowSpec::Kind::kRolling) {
        why = "a rolling window's rows depend on the order records arrive in";
      } else if (const auto& r = std::get<RepartitionSpec>(spec.operators[at]);
                 r.has_key && r.partitions != 1 && w->key_field != r.key && w->key_field != Field::kPartition) {
        // Each task would count its part of a group, and write it under
        // the group's output key: the latest row is one part, not the whole.
        const std::string key(FieldName(w->key_field));
        const std::string by(FieldName(r.key));
        const std::string spread = r.partitions > 1 ? "its " + std::to_string(r.partitions) + " partitions"
                                                    : "its partitions";
        return ops.items()[i].Error(
            "this window groups by `" + key + "`, but the repartition spread each `" + key + "` over " + spread +
            " by `" + by + "`: every task would write its own part of a group's aggregates under the same output "
            "key. Repartition by the window's key (`repartition: {key: " + key + "}`), group the window by `" + by +
            "`, or use `partitions: 1` for one task");
      } else if (!w->features.empty()) {
        // Every feature window, even count and sum only (a bug bash read the
        // old wording as blaming only first, last and double sums).
        why = "a window with named `features` is not supported after it (some features, such as first, last "
              "and double sums, depend on the order records arrive in); use `aggregates: [count, sum, min, max, "
              "avg]` instead";
      }
    }
    if (!why.empty()) {
      return ops.items()[i].Error("after a `repartition` records of different input partitions arrive in any "
                                  "order, and the result must not depend on it: " + why);
    }
  }
  return Status::OK();
}

// A declared format has no `value` unless `source.value` names one or a
// map computes it: an operator that reads it before then (a window's sum,
// min, max, avg or argmax, a filter on `value`) would read 0 for every
// record, in silence.
Status CheckValueIsSet(const ConfigNode& ops, const JobSpec& spec) {
  if (!IsDeclaredFormat(spec.decode.format) || spec.decode.value_slot >= 0) return Status::OK();
  std::vector<Field> fields;
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    const OperatorSpec& op = spec.operators[i];
    std::string what;
    if (const auto* map = std::get_if<MapSpec>(&op)) {
      // A map that sets the value must not read it first (it would read 0);
      // a map of named values only leaves the value as it was.
      fields.clear();
      KindOf(op).append_fields(op, fields);
      if (std::find(fields.begin(), fields.end(), Field::kValue) != fields.end()) {
        return ops.items()[i].Error("this map reads `value`, which this source does not set: name a declared int64 "
                                    "field with `source.value:`, or compute the value from declared fields");
      }
      if (!map->value_expr.empty() || map->computed.empty()) return Status::OK();
      continue;
    }
    if (const auto* w = std::get_if<WindowSpec>(&op); w != nullptr && w->features.empty()) {
      // Aggregates the spec lists (by default a window fills all five, and
      // a row's sum, min, max and avg stay 0 without a value, as the README
      // says: refusing those specs now would break running jobs).
      const ConfigNode* body = ops.items()[i].Find("window");
      if (body != nullptr && body->IsMap() && body->Find("aggregates") != nullptr) {
        for (Aggregate a : w->aggregates) {
          if (a != Aggregate::kCount) what = "its aggregates (sum, min, max, avg)";
        }
      }
      if (!w->argmax.empty()) what = "its argmax (the record holding the max value)";
    }
    fields.clear();
    KindOf(op).append_fields(op, fields);
    if (std::find(fields.begin(), fields.end(), Field::kValue) != fields.end()) what = "`value`";
    if (!what.empty()) {
      return ops.items()[i].Error("this operator reads " + what +
                                  " from the record's value, which this source does not set: name a declared "
                                  "int64 field with `source.value:`, or compute it with `map: {value: ...}` "
                                  "before this operator (or keep `aggregates: [count]`)");
    }
  }
  return Status::OK();
}

Status ParseOperators(const ConfigNode& root, JobSpec& spec) {
  const ConfigNode* ops = root.Find("operators");
  if (ops == nullptr || !ops->IsList() || ops->size() == 0) {
    return root.Error("needs `operators:`, a list ending in a " + OperatorKindNames(/*terminal_only=*/true));
  }
  // A declared format's operators name its declared fields.
  DeclaredFieldsScope scope(IsDeclaredFormat(spec.decode.format) ? spec.decode.schema.get() : nullptr);
  ComputedFieldsScope computed;  // values a map names, for the operators after it
  for (const ConfigNode& item : ops->items()) {
    auto op = ParseOperatorSpec(item);
    if (!op.ok()) return op.status();
    spec.operators.push_back(std::move(*op));
  }
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    if (KindOf(spec.operators[i]).terminal != (i + 1 == spec.operators.size())) {
      return ops->items()[i].Error("the operator chain must end with exactly one " +
                                   OperatorKindNames(/*terminal_only=*/true) + ", as its last operator");
    }
  }
  KAPPA_RETURN_IF_ERROR(CheckRepartition(*ops, spec));
  // The text filters compare declared string fields with: a decoder that
  // reads such a field from an enum checks it against the symbols.
  if (IsDeclaredFormat(spec.decode.format) && spec.decode.schema) {
    RecordSchema schema = *spec.decode.schema;
    const ConfigNode* first_filter = nullptr;  // with such a literal
    for (size_t i = 0; i < spec.operators.size(); ++i) {
      const auto* filter = std::get_if<FilterSpec>(&spec.operators[i]);
      if (filter == nullptr) continue;
      auto compared = [&](Field field, const std::string& text, bool ordered) {
        if (!IsDeclaredField(field) || DeclaredSlotOf(field) >= kComputedSlotBase) return;
        FieldDecl& decl = schema.mutable_field(DeclaredSlotOf(field));
        if (decl.type != ValueType::kString) return;
        decl.literals.push_back(text);
        decl.ordered_by_text = decl.ordered_by_text || ordered;
        if (first_filter == nullptr) first_filter = &ops->items()[i];
      };
      for (const Predicate& p : filter->all_of) {
        compared(p.field, p.text, p.op != Predicate::Op::kEq && p.op != Predicate::Op::kNe);
      }
      // And inside expressions: `(color != Purpel)`, `color in (Blue, Purpel)`
      // and `... or color == Purpel` went unchecked (a bug bash).
      for (const CompiledExpr& e : filter->exprs) {
        for (const auto& c : e.text_comparisons()) {
          if (c.slot >= 0 && static_cast<size_t>(c.slot) < filter->expr_fields.size()) {
            compared(filter->expr_fields[static_cast<size_t>(c.slot)], c.text, c.ordered);
          }
        }
      }
    }
    spec.decode.schema = std::make_shared<const RecordSchema>(std::move(schema));
    // A schema fixed in the spec (FlatBuffers) checks them now: a literal
    // no enum symbol matches is a spec error, at the filter's line.
    if (first_filter != nullptr && spec.decode.format == RecordFormat::kFlatBuffers) {
      auto decoder = MakeRecordDecoder(spec.decode);
      if (!decoder.ok()) return first_filter->Error(decoder.status().message());
    }
  }
  KAPPA_RETURN_IF_ERROR(CheckValueIsSet(*ops, spec));
  // A value a map names must be read after it: a name nothing reads is a
  // typo (`vaule:`) that would otherwise change nothing in silence.
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    const auto* map = std::get_if<MapSpec>(&spec.operators[i]);
    if (map == nullptr) continue;
    for (const auto& c : map->computed) {
      bool read = false;
      for (size_t j = i + 1; j < spec.operators.size() && !read; ++j) {
        std::vector<Field> fields;
        KindOf(spec.operators[j]).append_fields(spec.operators[j], fields);
        read = std::find(fields.begin(), fields.end(), c.field) != fields.end();
      }
      if (!read) {
        return ops->items()[i].Error("map computes `" + std::string(FieldName(c.field)) +
                                     "` but no operator after it reads it (a misspelt `value`?)");
      }
    }
  }
  return CheckFieldsInFormat(*ops, spec);
}

// `sink.format` and `sink.schema_registry`: how a feature window's rows are
// written. Only a window with `features` writes rows of its own; any other
// chain writes the records or kappa's fixed tables.
Status ParseSinkFormat(const ConfigNode& sink, JobSpec& spec) {
  WindowSpec* window = spec.FeatureWindow();
  const ConfigNode* format = sink.Find("format");
  if (format != nullptr && window == nullptr) {
    return format->Error("`sink.format` applies to the rows of a window with `features`; this chain ends in " +
                         std::string(KindOf(spec.operators.back()).name) + " without features");
  }
  if (window == nullptr) return Status::OK();
  if (format != nullptr) {
    auto name = format->String();
    if (!name.ok()) return name.status();
    auto parsed = ParseRowFormat(*name);
    if (!parsed.ok()) return format->Error("`sink.format`: " + parsed.status().message());
    window->row_format = *parsed;
  }
  if (const ConfigNode* url = sink.Find("schema_registry")) {
    auto u = url->String();
    if (!u.ok()) return u.status();
    spec.sink_schema_registry_url = *u;
  } else {
    spec.sink_schema_registry_url = spec.decode.schema_registry_url;
  }
  if (window->row_format == RowFormat::kFlatBuffers) {
    // `n` and `N` (or `a_b` and `aB`) are two fields of the printed .fbs,
    // but flatc's generated readers name both accessors alike (Python's
    // N(), defined twice: one column could not be read, a bug bash).
    auto folded = [](const std::string& name) {
      std::string out;
      for (char c : name) {
        if (c != '_') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      }
      return out;
    };
    const auto& features = window->features;
    for (size_t i = 0; i < features.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (folded(features[i].name) != folded(features[j].name)) continue;
        return sink.Error("`sink.format: flatbuffers`: features `" + features[j].name + "` and `" + features[i].name +
                          "` differ only in case or `_`, and the readers flatc generates from the row schema name "
                          "their accessors alike; rename one");
      }
    }
  }
  if (window->row_format == RowFormat::kAvro && spec.sink_schema_registry_url.empty()) {
    return sink.Error("`sink.format: avro` needs `sink.schema_registry` (the URL of the Schema Registry the row "
                      "schema is registered with)");
  }
  return Status::OK();
}

// `sink.postgres: {dsn, table}`: the rows of a feature window go to
// PostgreSQL, table <table>_v<version>, whose columns are the row's.
Status ParsePostgresSink(const ConfigNode& sink, JobSpec& spec) {
  const ConfigNode* pg = sink.Find("postgres");
  if (pg == nullptr) return Status::OK();
  KAPPA_RETURN_IF_ERROR(pg->CheckKeys({"dsn", "table"}, "sink.postgres"));
  WindowSpec* window = spec.FeatureWindow();
  if (window == nullptr) {
    return pg->Error("`sink.postgres` writes the rows of a window with `features` (their columns make the table); "
                     "this chain ends in " + std::string(KindOf(spec.operators.back()).name) + " without features");
  }
  if (sink.Find("format") != nullptr) {
    return sink.Find("format")->Error("`sink.format` chooses the rows' encoding in a topic; with `sink.postgres` "
                                      "the rows are table rows: remove `format`");
  }
  auto dsn = pg->RequiredStringAt("dsn", "sink.postgres ");
  if (!dsn.ok()) return dsn.status();
  auto table = pg->RequiredStringAt("table", "sink.postgres ");
  if (!table.ok()) return table.status();
  // [schema.]name, each an unquoted identifier: the names people type in SQL.
  const std::string versioned = *table + "_v" + std::to_string(spec.version);
  size_t parts = 1;
  bool ok = !table->empty();
  size_t start = 0;
  for (size_t i = 0; i <= table->size() && ok; ++i) {
    if (i == table->size() || (*table)[i] == '.') {
      if (i == start || (i < table->size() && ++parts > 2)) ok = false;
      start = i + 1;
      continue;
    }
    const char c = (*table)[i];
    const bool letter = (c >= 'a' && c <= 'z') || c == '_';
    if (!letter && !(i > start && c >= '0' && c <= '9')) ok = false;
  }
  if (!ok) {
    return pg->Find("table")->Error("`sink.postgres.table` must be a lower-case SQL name ([schema.]name: letters "
                                    "a-z, digits, '_'; not starting with a digit), got `" + *table + "`");
  }
  const size_t dot = versioned.find('.');
  // kappa's own tables (kappa_offsets, kappa_serving, in the table's
  // schema): a job named one became a view over kappa's bookkeeping, with a
  // warning only (a bug bash).
  const std::string base = dot == std::string::npos ? *table : table->substr(table->find('.') + 1);
  if (base.rfind("kappa_", 0) == 0) {
    return pg->Find("table")->Error("`sink.postgres.table`: names starting with kappa_ are kappa's own tables "
                                    "(kappa_offsets, kappa_serving); choose another, got `" + *table + "`");
  }
  const size_t name_len = dot == std::string::npos ? versioned.size() : versioned.size() - dot - 1;
  if (name_len > 63) {
    return pg->Find("table")->Error("`sink.postgres.table`: the version's table " + versioned + " would be " +
                                    std::to_string(name_len) + " characters, more than PostgreSQL's 63");
  }
  for (const FeatureSpec& f : window->features) {
    if (f.name.rfind("kappa_", 0) == 0) {
      return pg->Error("feature `" + f.name + "`: names starting with kappa_ are kappa's own columns in a "
                       "PostgreSQL table; rename it");
    }
    // PostgreSQL cuts a longer name in silence: the table it made would then
    // lack the column kappa looks for.
    if (f.name.size() > 63) {
      return pg->Error("feature `" + f.name + "`: " + std::to_string(f.name.size()) +
                       " characters, more than PostgreSQL's 63 for a column name; shorten it");
    }
  }
  spec.postgres_dsn = *dsn;
  spec.postgres_table = *table;
  window->row_format = RowFormat::kPostgres;
  return Status::OK();
}

Status ParseSinksAndOptions(const ConfigNode& root, JobSpec& spec) {
  auto lateness = root.DurationAt("allowed_lateness", 0, /*required=*/false);
  if (!lateness.ok()) return lateness.status();
  spec.allowed_lateness_ms = *lateness;

  auto topic_of = [&](const char* key, std::string* out) -> Status {
    const ConfigNode* n = root.Find(key);
    if (n == nullptr) return root.Error(std::string("needs `") + key + ":` with `topic:`");
    if (std::string_view(key) == "sink") {
      KAPPA_RETURN_IF_ERROR(n->CheckKeys({"topic", "format", "schema_registry", "postgres"}, key));
      // A PostgreSQL sink needs no topic: the name only labels the outputs.
      if (n->Find("postgres") != nullptr && n->Find("topic") == nullptr) {
        *out = "";
        return Status::OK();
      }
    } else if (std::string_view(key) == "dlq") {
      KAPPA_RETURN_IF_ERROR(n->CheckKeys({"topic", "max_retries"}, key));
      if (n->Find("max_retries") != nullptr) {
        auto retries = n->IntAt("max_retries", spec.dlq_max_retries);
        if (!retries.ok()) return retries.status();
        if (*retries < 0 || *retries > 1000000) {
          return n->Find("max_retries")->Error("`dlq.max_retries` must be between 0 and 1000000, got " +
                                               std::to_string(*retries));
        }
        spec.dlq_max_retries = static_cast<int>(*retries);
      }
    } else {
      KAPPA_RETURN_IF_ERROR(n->CheckKeys({"topic"}, key));
    }
    auto t = n->RequiredStringAt("topic", std::string(key) + " ");
    if (!t.ok()) return t.status();
    const ConfigNode* topic = n->Find("topic");
    const std::string field = "`" + std::string(key) + ".topic`: ";
    if (Status st = CheckTopicName(*t); !st.ok()) return topic->Error(field + st.message());
    // Records failing past dlq.max_retries go to <dlq>.parked.
    if (std::string_view(key) == "dlq" && t->size() + 7 > kMaxTopicNameLength) {
      return topic->Error(field + "the parked topic <dlq>.parked would be " + std::to_string(t->size() + 7) +
                          " characters, more than Kafka's 249; shorten it to " +
                          std::to_string(kMaxTopicNameLength - 7) + " at most");
    }
    // Outputs go to <sink>.v<version>, which must be a valid name as well.
    if (std::string_view(key) == "sink") {
      const std::string output = *t + ".v" + std::to_string(spec.version);
      if (output.size() > kMaxTopicNameLength) {
        return topic->Error(field + "the output topic <sink>.v" + std::to_string(spec.version) + " would be " +
                            std::to_string(output.size()) + " characters, more than Kafka's 249; shorten it to " +
                            std::to_string(kMaxTopicNameLength - (output.size() - t->size())) + " at most");
      }
    }
    *out = *t;
    return Status::OK();
  };
  KAPPA_RETURN_IF_ERROR(topic_of("sink", &spec.sink_topic));
  KAPPA_RETURN_IF_ERROR(topic_of("dlq", &spec.dlq_topic));
  KAPPA_RETURN_IF_ERROR(topic_of("late", &spec.late_topic));
  // A topic the job writes that is also its input feeds the job its own
  // records: a DLQ or late topic equal to the source sent each bad record
  // back in to fail again, for ever, and the source's history out of the
  // broker's retention.
  const std::string output =
      spec.sink_topic.empty() ? std::string() : spec.sink_topic + ".v" + std::to_string(spec.version);
  const std::vector<std::pair<std::string, std::string>> written = {
      {"dlq", spec.dlq_topic}, {"dlq", spec.dlq_topic + ".parked"}, {"late", spec.late_topic}, {"sink", output}};
  for (const auto& [key, topic] : written) {
    if (topic.empty() || topic != spec.source_topic) continue;
    return root.Find(key.c_str())->Find("topic")->Error(
        "`" + key + ".topic` makes the job write " + topic + ", its own source topic: every record it wrote there "
        "would come back in as input (a DLQ or late record failing again, for ever); give it a topic of its own");
  }
  // The job's own rows and its dead letters or late records in one topic:
  // `kappa dlq` and `kappa get` would each read the other's records.
  if (!output.empty()) {
    for (const auto& [key, topic] : written) {
      if (key == "sink" || topic != output) continue;
      return root.Find(key.c_str())->Find("topic")->Error(
          "`" + key + ".topic` makes the job write " + topic + ", its own output topic (<sink>.v<version>): rows and " +
          (key == "dlq" ? "dead letters" : "late records") + " need topics of their own");
    }
  }
  // The parked topic holds DlqRecord envelopes too (a late topic equal to it
  // was accepted, a bug bash).
  if (spec.dlq_topic == spec.late_topic || spec.dlq_topic + ".parked" == spec.late_topic) {
    return root.Find("late")->Find("topic")->Error(
        "`late.topic` is the DLQ" + std::string(spec.dlq_topic == spec.late_topic ? "" : "'s parked") + " topic " +
        spec.late_topic + ": late records (the input as it came) and dead letters "
        "(DlqRecord envelopes, read by `kappa dlq`) need topics of their own");
  }
  KAPPA_RETURN_IF_ERROR(ParseSinkFormat(*root.Find("sink"), spec));
  KAPPA_RETURN_IF_ERROR(ParsePostgresSink(*root.Find("sink"), spec));
  // Without a topic, the table names the outputs where a topic name is shown.
  if (spec.sink_topic.empty()) spec.sink_topic = spec.postgres_table;

  if (const ConfigNode* d = root.Find("delivery")) {
    auto mode = d->String();
    if (!mode.ok()) return mode.status();
    if (*mode == "at_least_once") spec.delivery = DeliveryMode::kAtLeastOnce;
    else if (*mode == "exactly_once") spec.delivery = DeliveryMode::kExactlyOnce;
    else return d->Error("`delivery` must be at_least_once or exactly_once");
  }
  if (const ConfigNode* c = root.Find("checkpoint")) {
    KAPPA_RETURN_IF_ERROR(c->CheckKeys({"interval", "dir"}, "checkpoint"));
    auto interval = c->DurationAt("interval", spec.checkpoint_interval_ms, /*required=*/false);
    if (!interval.ok()) return interval.status();
    if (*interval <= 0) return c->Error("checkpoint `interval` must be positive");
    spec.checkpoint_interval_ms = *interval;
    if (const ConfigNode* dir = c->Find("dir")) {
      auto d = dir->String();
      if (!d.ok()) return d.status();
      spec.state_dir = *d;
    }
  }
  if (const ConfigNode* pr = root.Find("promote")) {
    KAPPA_RETURN_IF_ERROR(pr->CheckKeys({"max_changed_share"}, "promote"));
    if (const ConfigNode* share = pr->Find("max_changed_share")) {
      auto v = share->Double();
      if (!v.ok()) return v.status();
      spec.max_changed_share = *v;
      if (spec.max_changed_share < 0 || spec.max_changed_share > 1) {
        return pr->Error("`max_changed_share` must be between 0 and 1");
      }
    }
  }
  return Status::OK();
}

// Topics kappa names after the job: a repartitioned job's
// <job>.v<N>.repartition.1 and a scaled-out one's changelogs. Checked here,
// as the sink's output topic is, before anything is registered or written:
// a long job name passed the load, a deploy registered the version as
// serving and then failed creating them (a bug bash). And none of them may
// be a topic the job writes otherwise, or reads: with its own repartition
// topic as its DLQ, stage 1's dead letters became stage 2's input, which
// dead-lettered them again, into the same topic (the same bug bash).
Status CheckDerivedTopics(const ConfigNode& root, const JobSpec& spec) {
  const bool repartitioned = std::any_of(spec.operators.begin(), spec.operators.end(), [](const OperatorSpec& op) {
    return std::holds_alternative<RepartitionSpec>(op);
  });
  std::vector<std::pair<std::string, std::string>> derived;  // what it is, its name
  if (repartitioned) derived.emplace_back("repartition topic", spec.RepartitionTopic(1));
  if (spec.scale_out.enabled) {
    derived.emplace_back("changelog topic", spec.ChangelogTopic());
    if (repartitioned) {
      JobSpec stage2 = spec;
      stage2.stage = 1;
      derived.emplace_back("stage-2 changelog topic", stage2.ChangelogTopic());
    }
  }
  for (const auto& [what, name] : derived) {
    if (name.size() <= kMaxTopicNameLength) continue;
    return root.Find("job")->Error(
        "`job`: the job's " + what + " <job>" + name.substr(spec.job.size()) + " would be " +
        std::to_string(name.size()) + " characters, more than Kafka's 249; shorten the job name to " +
        std::to_string(kMaxTopicNameLength - (name.size() - spec.job.size())) + " at most");
  }
  const std::vector<std::pair<std::string, std::string>> used = {
      {"source", spec.source_topic}, {"dlq", spec.dlq_topic}, {"late", spec.late_topic}};
  for (const auto& [what, name] : derived) {
    for (const auto& [key, topic] : used) {
      if (topic != name) continue;
      const bool between_stages = what == "repartition topic";
      return root.Find(key.c_str())->Find("topic")->Error(
          "`" + key + ".topic` is the job's own " + what + " " + name + ", which kappa writes " +
          (between_stages ? "between the job's two stages" : "with the state's changes") +
          (key == "source" ? ": the job would read what it writes there"
           : between_stages ? ": stage 2 reads it as input, and would take these records back in"
                            : ": a restore would read these records as state") +
          "; give it a topic of its own");
    }
  }
  return Status::OK();
}

Result<JobSpec> ParseTree(const ConfigNode& root) {
  KAPPA_RETURN_IF_ERROR(root.CheckKeys({"job", "version", "format", "source", "validate", "operators",
                                        "allowed_lateness", "sink", "dlq", "late", "checkpoint", "delivery",
                                        "promote", "parallelism", "metrics", "alerts", "scale_out"},
                                       "the job spec"));
  JobSpec spec;
  auto job = root.RequiredStringAt("job", "the job spec ");
  if (!job.ok()) return job.status();
  spec.job = *job;
  for (char c : spec.job) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return root.Find("job")->Error("`job` may hold only letters, digits, '-', '_' and '.'");
    }
  }
  if (HasVersionSegment(spec.job)) {
    // kappa.<job>.v<N>[.<instance>] is each version's transactional id (and
    // <job>.v<N> its group and topics): job tb.v1 version 2 and job tb
    // version 1's instance v2 both made kappa.tb.v1.v2, and one fenced the
    // other on a real Kafka (a bug bash).
    return root.Find("job")->Error("`job` may not hold a part `v<digits>` between dots (`" + spec.job +
                                   "`): kappa appends .v<version> to the job name for each version's consumer "
                                   "group, topics and transactional id, which must name one job and version");
  }
  const ConfigNode* version_node = root.Find("version");
  if (version_node == nullptr) return root.Error("needs `version:` (an integer from 1 to 2147483647)");
  auto version = version_node->Int();
  if (!version.ok() || *version < 1 || *version > INT32_MAX) {
    return version_node->Error("`version` must be an integer from 1 to 2147483647, not " +
                               (version_node->IsScalar() ? "'" + version_node->scalar() + "'" : std::string("that")));
  }
  spec.version = static_cast<int32_t>(*version);

  KAPPA_RETURN_IF_ERROR(ParseSource(root, spec));
  if (const ConfigNode* m = root.Find("metrics")) {
    KAPPA_RETURN_IF_ERROR(m->CheckKeys({"port", "bind"}, "metrics"));
    auto port = m->IntAt("port", -1);
    if (!port.ok()) return port.status();
    if (*port < 0 || *port > 65535) return m->Error("`metrics.port` must be between 0 (a free port) and 65535");
    spec.metrics_port = static_cast<int>(*port);
    if (const ConfigNode* bind = m->Find("bind")) {
      auto b = bind->String();
      if (!b.ok()) return b.status();
      spec.metrics_bind = *b;
    }
  }
  if (const ConfigNode* a = root.Find("alerts")) {
    KAPPA_RETURN_IF_ERROR(a->CheckKeys({"dlq_per_hour", "late_fraction", "lag_records"}, "alerts"));
    if (const ConfigNode* v = a->Find("dlq_per_hour")) {
      auto d = v->Double();
      if (!d.ok()) return d.status();
      // 1e400 read as infinity: an alert that can never fire (a bug bash).
      if (*d < 0 || !std::isfinite(*d)) return v->Error("`alerts.dlq_per_hour` must be a finite number, not negative");
      spec.alerts.dlq_per_hour = *d;
    }
    if (const ConfigNode* v = a->Find("late_fraction")) {
      auto d = v->Double();
      if (!d.ok()) return d.status();
      if (*d < 0 || *d > 1) return v->Error("`alerts.late_fraction` must be between 0 and 1");
      spec.alerts.late_fraction = *d;
    }
    if (a->Find("lag_records") != nullptr) {
      auto n = a->IntAt("lag_records", -1);
      if (!n.ok()) return n.status();
      if (*n < 0) return a->Find("lag_records")->Error("`alerts.lag_records` must not be negative");
      spec.alerts.lag_records = *n;
    }
  }
  if (const ConfigNode* so = root.Find("scale_out")) {
    spec.scale_out.enabled = true;
    if (!so->IsScalar()) {
      KAPPA_RETURN_IF_ERROR(so->CheckKeys({"session_timeout", "standbys"}, "scale_out"));
      auto timeout = so->DurationAt("session_timeout", spec.scale_out.session_timeout_ms, /*required=*/false);
      if (!timeout.ok()) return timeout.status();
      // Kafka brokers refuse sessions outside group.min/max.session.timeout.ms
      // (6 s and 30 min by default).
      if (*timeout < 6000 || *timeout > 300000) {
        return so->Error("`scale_out.session_timeout` must be between 6s (Kafka's group.min.session.timeout.ms) and 5m");
      }
      spec.scale_out.session_timeout_ms = static_cast<int>(*timeout);
      auto standbys = so->IntAt("standbys", 0);
      if (!standbys.ok()) return standbys.status();
      if (*standbys < 0 || *standbys > ScaleOutSpec::kMaxStandbys) {
        return so->Find("standbys")->Error("`scale_out.standbys` is how many other instances keep a warm copy of "
                                           "each partition's state, 0 to " + std::to_string(ScaleOutSpec::kMaxStandbys) +
                                           "; got " + std::to_string(*standbys));
      }
      spec.scale_out.standbys = static_cast<int>(*standbys);
    } else {
      // The booleans every other key of a spec takes (ConfigNode::Bool:
      // true/false, yes/no, on/off, y/n, any case); True and yes were
      // refused here while on was taken (a bug bash).
      auto on = so->Bool();
      if (!on.ok()) return so->Error("`scale_out` is true, false or a map {session_timeout, standbys}");
      spec.scale_out.enabled = *on;
    }
  }
  if (const ConfigNode* p = root.Find("parallelism")) {
    auto workers = root.IntAt("parallelism", 1);
    if (!workers.ok()) return workers.status();
    if (*workers < 1 || *workers > 256) return p->Error("`parallelism` must be between 1 and 256");
    spec.parallelism = static_cast<int>(*workers);
  }
  KAPPA_RETURN_IF_ERROR(ParseFormatAndValidate(root, spec));
  KAPPA_RETURN_IF_ERROR(ParseOperators(root, spec));
  KAPPA_RETURN_IF_ERROR(ParseSinksAndOptions(root, spec));
  KAPPA_RETURN_IF_ERROR(CheckDerivedTopics(root, spec));
  if (spec.state_dir.empty()) spec.state_dir = ".kappa/state/" + spec.job + ".v" + std::to_string(spec.version);
  spec.spec_hash = HashToHex(Fnv1a64(spec.CanonicalLogic()));
  return spec;
}

}  // namespace

bool HasVersionSegment(std::string_view name) {
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view part = name.substr(start, end - start);
    if (part.size() >= 2 && part[0] == 'v' &&
        std::all_of(part.begin() + 1, part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

bool IsReservedInstanceName(std::string_view name) {
  const std::string_view first = name.substr(0, name.find('.'));
  return first.size() > 5 && first.substr(0, 5) == "stage" &&
         std::all_of(first.begin() + 5, first.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string DefaultInstanceName(const std::string& state_dir) {
  std::string name = HostName();
  if (name.empty()) name = "host";
  std::error_code ec;
  const std::string dir = std::filesystem::absolute(state_dir, ec).string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') c = '-';
  }
  name += "-" + HashToHex(Fnv1a64(dir)).substr(0, 8);
  return IsReservedInstanceName(name) ? "host-" + name : name;
}

WindowSpec* JobSpec::FeatureWindow() {
  if (operators.empty()) return nullptr;
  auto* w = std::get_if<WindowSpec>(&operators.back());
  return w != nullptr && !w->features.empty() ? w : nullptr;
}

const WindowSpec* JobSpec::FeatureWindow() const { return const_cast<JobSpec*>(this)->FeatureWindow(); }

std::string JobSpec::CanonicalLogic() const {
  std::ostringstream os;
  os << "kappa-spec-v1;job=" << job << ";version=" << version << ";source=" << source_topic
     << ";start=" << static_cast<int>(start) << ':' << start_timestamp_ms
     << ";truncated=" << allow_truncated_history << ";decode=" << decode.min_amount_cents << ','
     << decode.max_amount_cents << ',' << decode.min_event_time_ms << ',';
  for (const auto& c : decode.allowed_currencies) os << c << '/';
  os << ";lateness=" << allowed_lateness_ms << ";ops=";
  std::string ops;
  for (const auto& op : operators) KindOf(op).append_canonical(op, ops);
  os << ops;
  os << ";sink=" << sink_topic << ";dlq=" << dlq_topic << ";late=" << late_topic
     << ";delivery=" << static_cast<int>(delivery);
  if (postgres()) os << ";postgres=" << postgres_table;
  if (decode.format != RecordFormat::kTransaction) os << ";format=" << RecordFormatName(decode.format);
  if (decode.schema) {
    os << ";fields=" << CanonicalSchemaText(*decode.schema) << ";event_time=" << decode.event_time_slot
       << ";value=" << decode.value_slot;
    // The user's FlatBuffers schema is logic: its bytes, not its path. (An
    // Avro writer schema is data: each record names its own.)
    // With the files it includes (a change there is logic too).
    if (!decode.schema_file.empty()) {
      auto digest = FlatBuffersSchemaDigest(decode.schema_file);
      os << ";schema=" << (digest.ok() ? HashToHex(*digest) : "unreadable") << ";root=" << decode.root_type;
    }
  }
  return os.str();
}

namespace {

Status SizeLimitError(const std::string& origin, uintmax_t bytes) {
  return Status::InvalidArgument(origin + ": spec is " + std::to_string(bytes) + " bytes, more than the 1 MiB limit" +
                                 " (is this the right file?)");
}

}  // namespace

Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& origin) {
  if (yaml_text.size() > kMaxSpecBytes) return SizeLimitError(origin, yaml_text.size());
  KAPPA_RETURN_IF_ERROR(CheckNesting(yaml_text, origin));
  YAML::Node root;
  try {
    // Every document, not only the first: a second one (after `---`, or
    // text after `...`) was dropped without a word, so two versions pasted
    // into one file ran the first (a bug bash).
    std::vector<YAML::Node> documents = YAML::LoadAll(yaml_text);
    for (size_t i = 1; i < documents.size(); ++i) {
      if (documents[i].IsNull()) continue;  // a trailing `---` alone
      return Status::InvalidArgument(origin + ":" + std::to_string(documents[i].Mark().line + 1) +
                                     ": a second YAML document (after `---` or `...`); a job spec is one document, "
                                     "one version per file");
    }
    if (!documents.empty()) root = documents.front();
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  Status error;
  size_t values = 0;
  ConfigNode tree = FromYaml(root, std::make_shared<const std::string>(origin), "", &error, &values);
  if (!error.ok()) return error;
  return ParseTree(tree);
}

Result<JobSpec> LoadJobSpec(const std::string& path) {
  std::error_code ec;
  // Checked before reading: a huge file is refused without loading it.
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxSpecBytes) return SizeLimitError(path, size);
  // A directory read as "not found" (a bug bash): say what is there.
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("job spec " + path + " is a directory, not a YAML file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound("cannot read job spec " + path + ": no such file");
    return Status::InvalidArgument("cannot read job spec " + path + ": " + std::strerror(err));
  }
  // At most one byte over the limit, also for a pipe or a file that grew.
  std::string text(kMaxSpecBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return Status::InvalidArgument("cannot read job spec " + path + ": " + std::strerror(errno));
  if (text.size() > kMaxSpecBytes) {
    return SizeLimitError(path, ec ? text.size() : std::max<uintmax_t>(size, text.size()));
  }
  return ParseJobSpec(text, path);
}

std::string AbsoluteStateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec);
  if (ec) p = std::filesystem::path(dir);
  p = p.lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace kappa
