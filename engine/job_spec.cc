#include "engine/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include "base/hash.h"

namespace kappa {
namespace {

// Errors name the file and the YAML line, so the user can go straight there.
Status SpecError(const std::string& origin, const YAML::Node& node, const std::string& what) {
  std::string where = origin;
  if (node.IsDefined() && node.Mark().line >= 0) {
    where.push_back(':');
    where.append(std::to_string(node.Mark().line + 1));
  }
  return Status::InvalidArgument(where + ": " + what);
}

Result<std::string> RequireString(const std::string& origin, const YAML::Node& parent, const char* key,
                                  const std::string& context) {
  YAML::Node n = parent[key];
  if (!n.IsDefined() || !n.IsScalar() || n.Scalar().empty()) {
    return SpecError(origin, parent, context + "needs `" + key + ":` (a non-empty string)");
  }
  return n.Scalar();
}

Result<int64_t> DurationField(const std::string& origin, const YAML::Node& parent, const char* key,
                              int64_t fallback, bool required) {
  YAML::Node n = parent[key];
  if (!n.IsDefined()) {
    if (required) return SpecError(origin, parent, std::string("needs `") + key + ":` (a duration like 1h)");
    return fallback;
  }
  if (!n.IsScalar()) return SpecError(origin, n, std::string("`") + key + "` must be a duration like 5s");
  auto d = ParseDurationMs(n.Scalar());
  if (!d.ok()) return SpecError(origin, n, std::string("`") + key + "`: " + d.status().message());
  return *d;
}

Result<int64_t> IntField(const std::string& origin, const YAML::Node& n, const char* key, int64_t fallback) {
  YAML::Node v = n[key];
  if (!v.IsDefined()) return fallback;
  try {
    return v.as<int64_t>();
  } catch (const YAML::Exception&) {
    return SpecError(origin, v, std::string("`") + key + "` must be an integer");
  }
}

Status CheckKeys(const std::string& origin, const YAML::Node& node, std::initializer_list<const char*> allowed,
                 const std::string& context) {
  if (!node.IsMap()) return SpecError(origin, node, context + " must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      return SpecError(origin, kv.first, "unknown key `" + key + "` in " + context + " (expected one of: " + list + ")");
    }
  }
  return Status::OK();
}

Result<Field> FieldOf(const std::string& origin, const YAML::Node& n, const char* key, Field fallback) {
  YAML::Node v = n[key];
  if (!v.IsDefined()) return fallback;
  auto f = ParseField(v.as<std::string>());
  if (!f.ok()) return SpecError(origin, v, f.status().message());
  return *f;
}

// An optional list of numeric fields (emit row, window argmax).
Result<std::vector<Field>> FieldList(const std::string& origin, const YAML::Node& n, const char* key) {
  std::vector<Field> fields;
  YAML::Node v = n[key];
  if (!v.IsDefined()) return fields;
  if (!v.IsSequence() || v.size() == 0) {
    return SpecError(origin, v, std::string("`") + key + "` must be a non-empty list of numeric fields");
  }
  for (const auto& item : v) {
    auto f = ParseField(item.as<std::string>());
    if (!f.ok()) return SpecError(origin, item, f.status().message());
    if (!IsNumericField(*f)) {
      return SpecError(origin, item, std::string("`") + key + "` takes numeric fields, not `" + item.as<std::string>() + "`");
    }
    fields.push_back(*f);
  }
  return fields;
}

// Every field the operators name must exist in the job's record format.
Status CheckFieldsInFormat(const std::string& origin, const YAML::Node& ops, const JobSpec& spec) {
  auto check = [&](Field f, size_t i) -> Status {
    if (FieldInFormat(f, spec.decode.format)) return Status::OK();
    return SpecError(origin, ops[i], "field `" + std::string(FieldName(f)) + "` is not in format " +
                                         std::string(RecordFormatName(spec.decode.format)) +
                                         (spec.decode.format == RecordFormat::kTransaction
                                              ? " (Nexmark fields need top-level `format: nexmark`)"
                                              : ""));
  };
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    const OperatorSpec& op = spec.operators[i];
    if (auto* d = std::get_if<DedupSpec>(&op)) {
      KAPPA_RETURN_IF_ERROR(check(d->field, i));
    } else if (auto* f = std::get_if<FilterSpec>(&op)) {
      for (const auto& p : f->all_of) KAPPA_RETURN_IF_ERROR(check(p.field, i));
    } else if (auto* m = std::get_if<MapSpec>(&op)) {
      KAPPA_RETURN_IF_ERROR(check(m->value_field, i));
    } else if (auto* w = std::get_if<WindowSpec>(&op)) {
      KAPPA_RETURN_IF_ERROR(check(w->key_field, i));
      for (Field a : w->argmax) KAPPA_RETURN_IF_ERROR(check(a, i));
    } else if (auto* e = std::get_if<EmitSpec>(&op)) {
      KAPPA_RETURN_IF_ERROR(check(e->key_field, i));
      for (Field r : e->row) KAPPA_RETURN_IF_ERROR(check(r, i));
    }
  }
  return Status::OK();
}

Result<OperatorSpec> ParseOperator(const std::string& origin, const YAML::Node& item) {
  if (!item.IsMap() || item.size() != 1) {
    return SpecError(origin, item, "each operator is a one-key mapping: dedup, filter, map, window or emit");
  }
  const std::string kind = item.begin()->first.as<std::string>();
  const YAML::Node body = item.begin()->second;
  if (kind == "dedup") {
    KAPPA_RETURN_IF_ERROR(CheckKeys(origin, body, {"field", "ttl"}, "dedup"));
    DedupSpec spec;
    auto field = FieldOf(origin, body, "field", Field::kTxnId);
    if (!field.ok()) return field.status();
    spec.field = *field;
    auto ttl = DurationField(origin, body, "ttl", 0, true);
    if (!ttl.ok()) return ttl.status();
    if (*ttl <= 0) return SpecError(origin, body, "dedup `ttl` must be positive");
    spec.ttl_ms = *ttl;
    return OperatorSpec(spec);
  }
  if (kind == "filter") {
    // filter: ["status != cancelled", ...]  or  filter: {where: [...]}
    YAML::Node list = body.IsMap() ? body["where"] : body;
    if (body.IsMap()) KAPPA_RETURN_IF_ERROR(CheckKeys(origin, body, {"where"}, "filter"));
    if (list.IsScalar()) {
      YAML::Node seq(YAML::NodeType::Sequence);
      seq.push_back(list);
      list = seq;
    }
    if (!list.IsSequence() || list.size() == 0) {
      return SpecError(origin, body, "filter needs a list of predicates like \"status != cancelled\"");
    }
    FilterSpec spec;
    for (const auto& p : list) {
      auto pred = ParsePredicate(p.as<std::string>());
      if (!pred.ok()) return SpecError(origin, p, pred.status().message());
      spec.all_of.push_back(*pred);
    }
    return OperatorSpec(spec);
  }
  if (kind == "map") {
    KAPPA_RETURN_IF_ERROR(CheckKeys(origin, body, {"value", "multiply", "divide"}, "map"));
    MapSpec spec;
    auto field = FieldOf(origin, body, "value", Field::kAmountCents);
    if (!field.ok()) return field.status();
    if (!IsNumericField(*field)) return SpecError(origin, body["value"], "map `value` must be a numeric field (amount_cents, event_time_ms; nexmark: price, auction, ...)");
    spec.value_field = *field;
    auto mul = IntField(origin, body, "multiply", 1);
    if (!mul.ok()) return mul.status();
    auto div = IntField(origin, body, "divide", 1);
    if (!div.ok()) return div.status();
    if (*div == 0) return SpecError(origin, body["divide"], "map `divide` must not be 0");
    spec.multiply = *mul;
    spec.divide = *div;
    return OperatorSpec(spec);
  }
  if (kind == "window") {
    KAPPA_RETURN_IF_ERROR(
        CheckKeys(origin, body, {"type", "size", "slide", "key", "aggregates", "top", "argmax"}, "window"));
    WindowSpec spec;
    const std::string type = body["type"].IsDefined() ? body["type"].as<std::string>() : "tumbling";
    if (type == "tumbling") {
      spec.kind = WindowSpec::Kind::kTumbling;
    } else if (type == "sliding" || type == "hopping") {
      spec.kind = WindowSpec::Kind::kSliding;
    } else {
      return SpecError(origin, body["type"], "window `type` must be tumbling or sliding, not `" + type + "`");
    }
    auto size = DurationField(origin, body, "size", 0, true);
    if (!size.ok()) return size.status();
    if (*size <= 0) return SpecError(origin, body, "window `size` must be positive");
    spec.size_ms = *size;
    auto slide = DurationField(origin, body, "slide", *size, spec.kind == WindowSpec::Kind::kSliding);
    if (!slide.ok()) return slide.status();
    if (*slide <= 0 || *slide > *size) return SpecError(origin, body, "window `slide` must be positive and at most `size`");
    spec.slide_ms = spec.kind == WindowSpec::Kind::kTumbling ? *size : *slide;
    auto key = FieldOf(origin, body, "key", Field::kUserId);
    if (!key.ok()) return key.status();
    spec.key_field = *key;
    YAML::Node aggs = body["aggregates"];
    if (!aggs.IsDefined()) {
      spec.aggregates = {Aggregate::kCount, Aggregate::kSum, Aggregate::kMin, Aggregate::kMax, Aggregate::kAvg};
    } else {
      if (!aggs.IsSequence()) return SpecError(origin, aggs, "window `aggregates` must be a list (count, sum, min, max, avg)");
      for (const auto& a : aggs) {
        auto agg = ParseAggregate(a.as<std::string>());
        if (!agg.ok()) return SpecError(origin, a, agg.status().message());
        spec.aggregates.push_back(*agg);
      }
    }
    auto top = IntField(origin, body, "top", 0);
    if (!top.ok()) return top.status();
    if (*top < 0) return SpecError(origin, body["top"], "window `top` must not be negative");
    spec.top = *top;
    auto argmax = FieldList(origin, body, "argmax");
    if (!argmax.ok()) return argmax.status();
    spec.argmax = *argmax;
    if (spec.argmax.size() > kMaxArgmaxFields) {
      return SpecError(origin, body["argmax"], "window `argmax` takes at most " + std::to_string(kMaxArgmaxFields) + " fields");
    }
    return OperatorSpec(spec);
  }
  if (kind == "emit") {
    EmitSpec spec;
    if (body.IsMap()) {
      KAPPA_RETURN_IF_ERROR(CheckKeys(origin, body, {"key", "row"}, "emit"));
      auto key = FieldOf(origin, body, "key", Field::kTxnId);
      if (!key.ok()) return key.status();
      spec.key_field = *key;
      auto row = FieldList(origin, body, "row");
      if (!row.ok()) return row.status();
      spec.row = *row;
    }
    return OperatorSpec(spec);
  }
  return SpecError(origin, item, "unknown operator `" + kind + "` (expected dedup, filter, map, window or emit)");
}

// New options are appended only when set, so the hash of every spec written
// before they existed is unchanged.
void AppendPredicate(std::ostringstream& os, const Predicate& p) {
  os << FieldName(p.field) << ' ' << static_cast<int>(p.op) << ' ' << p.text << ' ' << p.number;
  if (p.modulus != 0) os << " %" << p.modulus;
  os << ';';
}

void AppendFields(std::ostringstream& os, const char* name, const std::vector<Field>& fields) {
  if (fields.empty()) return;
  os << ',' << name << '=';
  for (Field f : fields) os << FieldName(f) << '/';
}

}  // namespace

Result<int64_t> ParseDurationMs(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return Status::InvalidArgument("'" + text + "' is not a duration (use e.g. 500ms, 5s, 10m, 1h, 1d)");
  int64_t n = std::stoll(text.substr(0, i));
  const std::string unit = text.substr(i);
  int64_t scale = 0;
  if (unit.empty() || unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m" || unit == "min") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else if (unit == "d") scale = 24 * 3600 * 1000LL;
  else return Status::InvalidArgument("'" + text + "': unknown unit '" + unit + "' (use ms, s, m, h or d)");
  return n * scale;
}

std::string JobSpec::CanonicalLogic() const {
  std::ostringstream os;
  os << "kappa-spec-v1;job=" << job << ";version=" << version << ";source=" << source_topic
     << ";start=" << static_cast<int>(start) << ':' << start_timestamp_ms
     << ";truncated=" << allow_truncated_history << ";decode=" << decode.min_amount_cents << ','
     << decode.max_amount_cents << ',' << decode.min_event_time_ms << ',';
  for (const auto& c : decode.allowed_currencies) os << c << '/';
  os << ";lateness=" << allowed_lateness_ms << ";ops=";
  for (const auto& op : operators) {
    if (auto* d = std::get_if<DedupSpec>(&op)) {
      os << "dedup(" << FieldName(d->field) << ',' << d->ttl_ms << ')';
    } else if (auto* f = std::get_if<FilterSpec>(&op)) {
      os << "filter(";
      for (const auto& p : f->all_of) AppendPredicate(os, p);
      os << ')';
    } else if (auto* m = std::get_if<MapSpec>(&op)) {
      os << "map(" << FieldName(m->value_field) << ',' << m->multiply << ',' << m->divide << ')';
    } else if (auto* w = std::get_if<WindowSpec>(&op)) {
      os << "window(" << static_cast<int>(w->kind) << ',' << w->size_ms << ',' << w->slide_ms << ','
         << FieldName(w->key_field);
      for (auto a : w->aggregates) os << ',' << static_cast<int>(a);
      if (w->top != 0) os << ",top=" << w->top;
      AppendFields(os, "argmax", w->argmax);
      os << ')';
    } else if (auto* e = std::get_if<EmitSpec>(&op)) {
      os << "emit(" << FieldName(e->key_field);
      AppendFields(os, "row", e->row);
      os << ')';
    }
  }
  os << ";sink=" << sink_topic << ";dlq=" << dlq_topic << ";late=" << late_topic
     << ";delivery=" << static_cast<int>(delivery);
  if (decode.format != RecordFormat::kTransaction) os << ";format=" << RecordFormatName(decode.format);
  return os.str();
}

Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  try {
    KAPPA_RETURN_IF_ERROR(CheckKeys(origin, root,
                                    {"job", "version", "format", "source", "validate", "operators",
                                     "allowed_lateness", "sink", "dlq", "late", "checkpoint", "delivery",
                                     "promote", "parallelism"},
                                    "the job spec"));
    JobSpec spec;
    auto job = RequireString(origin, root, "job", "the job spec ");
    if (!job.ok()) return job.status();
    spec.job = *job;
    for (char c : spec.job) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
        return SpecError(origin, root["job"], "`job` may hold only letters, digits, '-', '_' and '.'");
      }
    }
    auto version = IntField(origin, root, "version", 0);
    if (!version.ok()) return version.status();
    if (*version < 1) return SpecError(origin, root, "needs `version:` (a positive integer)");
    spec.version = static_cast<int32_t>(*version);

    YAML::Node source = root["source"];
    if (!source.IsDefined()) return SpecError(origin, root, "needs `source:` with `topic:`");
    KAPPA_RETURN_IF_ERROR(CheckKeys(origin, source, {"topic", "start", "allow_truncated_history", "archive"}, "source"));
    auto topic = RequireString(origin, source, "topic", "source ");
    if (!topic.ok()) return topic.status();
    spec.source_topic = *topic;
    if (source["start"].IsDefined()) {
      const std::string start = source["start"].as<std::string>();
      if (start == "earliest") {
        spec.start = StartPosition::kEarliest;
      } else if (start == "latest") {
        spec.start = StartPosition::kLatest;
      } else {
        char* end = nullptr;
        long long ts = std::strtoll(start.c_str(), &end, 10);
        if (*end != '\0' || ts < 0) {
          return SpecError(origin, source["start"], "`start` must be earliest, latest or a timestamp in ms since the epoch");
        }
        spec.start = StartPosition::kTimestamp;
        spec.start_timestamp_ms = ts;
      }
    }
    if (source["allow_truncated_history"].IsDefined()) spec.allow_truncated_history = source["allow_truncated_history"].as<bool>();
    if (source["archive"].IsDefined()) spec.archive_dir = source["archive"].as<std::string>();
    if (root["parallelism"].IsDefined()) {
      auto workers = IntField(origin, root, "parallelism", 1);
      if (!workers.ok()) return workers.status();
      if (*workers < 1 || *workers > 256) return SpecError(origin, root["parallelism"], "`parallelism` must be between 1 and 256");
      spec.parallelism = static_cast<int>(*workers);
    }

    if (YAML::Node f = root["format"]; f.IsDefined()) {
      auto format = ParseRecordFormat(f.IsScalar() ? f.Scalar() : std::string());
      if (!format.ok()) return SpecError(origin, f, format.status().message());
      spec.decode.format = *format;
    }
    if (YAML::Node v = root["validate"]; v.IsDefined() && spec.decode.format != RecordFormat::kTransaction) {
      return SpecError(origin, v, "`validate` (amounts, currencies) applies to format transaction only");
    }
    if (YAML::Node v = root["validate"]; v.IsDefined()) {
      KAPPA_RETURN_IF_ERROR(CheckKeys(origin, v, {"min_amount_cents", "max_amount_cents", "currencies"}, "validate"));
      auto mn = IntField(origin, v, "min_amount_cents", spec.decode.min_amount_cents);
      if (!mn.ok()) return mn.status();
      auto mx = IntField(origin, v, "max_amount_cents", spec.decode.max_amount_cents);
      if (!mx.ok()) return mx.status();
      spec.decode.min_amount_cents = *mn;
      spec.decode.max_amount_cents = *mx;
      if (v["currencies"].IsDefined()) {
        for (const auto& c : v["currencies"]) spec.decode.allowed_currencies.push_back(c.as<std::string>());
      }
    }

    YAML::Node ops = root["operators"];
    if (!ops.IsDefined() || !ops.IsSequence() || ops.size() == 0) {
      return SpecError(origin, root, "needs `operators:`, a list ending in a `window` or an `emit`");
    }
    for (const auto& item : ops) {
      auto op = ParseOperator(origin, item);
      if (!op.ok()) return op.status();
      spec.operators.push_back(*op);
    }
    for (size_t i = 0; i < spec.operators.size(); ++i) {
      const bool terminal = std::holds_alternative<WindowSpec>(spec.operators[i]) ||
                            std::holds_alternative<EmitSpec>(spec.operators[i]);
      if (terminal != (i + 1 == spec.operators.size())) {
        return SpecError(origin, ops[i], "the operator chain must end with exactly one `window` or `emit`, as its last operator");
      }
    }
    KAPPA_RETURN_IF_ERROR(CheckFieldsInFormat(origin, ops, spec));

    auto lateness = DurationField(origin, root, "allowed_lateness", 0, false);
    if (!lateness.ok()) return lateness.status();
    if (*lateness < 0) return SpecError(origin, root["allowed_lateness"], "`allowed_lateness` must not be negative");
    spec.allowed_lateness_ms = *lateness;

    auto topic_of = [&](const char* key, std::string* out) -> Status {
      YAML::Node n = root[key];
      if (!n.IsDefined()) return SpecError(origin, root, std::string("needs `") + key + ":` with `topic:`");
      KAPPA_RETURN_IF_ERROR(CheckKeys(origin, n, {"topic"}, key));
      auto t = RequireString(origin, n, "topic", std::string(key) + " ");
      if (!t.ok()) return t.status();
      *out = *t;
      return Status::OK();
    };
    KAPPA_RETURN_IF_ERROR(topic_of("sink", &spec.sink_topic));
    KAPPA_RETURN_IF_ERROR(topic_of("dlq", &spec.dlq_topic));
    KAPPA_RETURN_IF_ERROR(topic_of("late", &spec.late_topic));

    if (YAML::Node d = root["delivery"]; d.IsDefined()) {
      const std::string mode = d.as<std::string>();
      if (mode == "at_least_once") spec.delivery = DeliveryMode::kAtLeastOnce;
      else if (mode == "exactly_once") spec.delivery = DeliveryMode::kExactlyOnce;
      else return SpecError(origin, d, "`delivery` must be at_least_once or exactly_once");
    }
    if (YAML::Node c = root["checkpoint"]; c.IsDefined()) {
      KAPPA_RETURN_IF_ERROR(CheckKeys(origin, c, {"interval", "dir"}, "checkpoint"));
      auto interval = DurationField(origin, c, "interval", spec.checkpoint_interval_ms, false);
      if (!interval.ok()) return interval.status();
      if (*interval <= 0) return SpecError(origin, c, "checkpoint `interval` must be positive");
      spec.checkpoint_interval_ms = *interval;
      if (c["dir"].IsDefined()) spec.state_dir = c["dir"].as<std::string>();
    }
    if (YAML::Node pr = root["promote"]; pr.IsDefined()) {
      KAPPA_RETURN_IF_ERROR(CheckKeys(origin, pr, {"max_changed_share"}, "promote"));
      if (pr["max_changed_share"].IsDefined()) {
        spec.max_changed_share = pr["max_changed_share"].as<double>();
        if (spec.max_changed_share < 0 || spec.max_changed_share > 1) {
          return SpecError(origin, pr, "`max_changed_share` must be between 0 and 1");
        }
      }
    }
    if (spec.state_dir.empty()) spec.state_dir = ".kappa/state/" + spec.job + ".v" + std::to_string(spec.version);
    spec.spec_hash = HashToHex(Fnv1a64(spec.CanonicalLogic()));
    return spec;
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Result<JobSpec> LoadJobSpec(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read job spec " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJobSpec(ss.str(), path);
}

}  // namespace kappa
