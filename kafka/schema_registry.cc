#include "kafka/schema_registry.h"

#include "base/stop_token.h"

#include <httplib.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

namespace kappa {

namespace {
constexpr char kStoppedWaiting[] = "stopped while waiting for the schema registry";
}  // namespace

namespace {

constexpr const char* kContentType = "application/vnd.schemaregistry.v1+json";

// ---- a minimal JSON reader for the registry's documents -------------------

void SkipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool ParseHex4(std::string_view s, size_t i, uint32_t& out) {
  if (i + 4 > s.size()) return false;
  out = 0;
  for (size_t k = i; k < i + 4; ++k) {
    char c = s[k];
    out <<= 4;
    if (c >= '0' && c <= '9') out |= static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') out |= static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') out |= static_cast<uint32_t>(c - 'A' + 10);
    else return false;
  }
  return true;
}

// A JSON string starting at s[i] == '"'; i ends past the closing quote.
bool ParseString(std::string_view s, size_t& i, std::string* out) {
  if (i >= s.size() || s[i] != '"') return false;
  ++i;
  while (i < s.size()) {
    char c = s[i++];
    if (c == '"') return true;
    if (c != '\\') {
      if (out) *out += c;
      continue;
    }
    if (i >= s.size()) return false;
    char e = s[i++];
    char plain = 0;
    switch (e) {
      case '"': plain = '"'; break;
      case '\\': plain = '\\'; break;
      case '/': plain = '/'; break;
      case 'b': plain = '\b'; break;
      case 'f': plain = '\f'; break;
      case 'n': plain = '\n'; break;
      case 'r': plain = '\r'; break;
      case 't': plain = '\t'; break;
      case 'u': {
        uint32_t cp = 0;
        if (!ParseHex4(s, i, cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
          uint32_t low = 0;
          if (i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u' && ParseHex4(s, i + 2, low) &&
              low >= 0xDC00 && low < 0xE000) {
            i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else {
            return false;
          }
        }
        if (out) AppendUtf8(cp, *out);
        continue;
      }
      default: return false;
    }
    if (out) *out += plain;
  }
  return false;
}

// Skips any JSON value at s[i].
bool SkipValue(std::string_view s, size_t& i) {
  SkipSpace(s, i);
  if (i >= s.size()) return false;
  if (s[i] == '"') return ParseString(s, i, nullptr);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        if (!ParseString(s, i, nullptr)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') --depth;
      ++i;
      if (depth == 0) return true;
    }
    return false;
  }
  size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' &&
         s[i] != '\r' && s[i] != '\t') {
    ++i;
  }
  return i > start;
}

// The raw text of a top-level member's value (a string's including quotes).
Result<std::string_view> MemberRaw(std::string_view json, std::string_view name) {
  size_t i = 0;
  SkipSpace(json, i);
  if (i >= json.size() || json[i] != '{') return Status::InvalidArgument("not a JSON object");
  ++i;
  while (true) {
    SkipSpace(json, i);
    if (i < json.size() && json[i] == '}') break;
    std::string key;
    if (!ParseString(json, i, &key)) return Status::InvalidArgument("malformed JSON object");
    SkipSpace(json, i);
    if (i >= json.size() || json[i] != ':') return Status::InvalidArgument("malformed JSON object");
    ++i;
    SkipSpace(json, i);
    size_t value_start = i;
    if (!SkipValue(json, i)) return Status::InvalidArgument("malformed JSON value");
    if (key == name) return json.substr(value_start, i - value_start);
    SkipSpace(json, i);
    if (i < json.size() && json[i] == ',') {
      ++i;
      continue;
    }
    if (i < json.size() && json[i] == '}') break;
    return Status::InvalidArgument("malformed JSON object");
  }
  return Status::NotFound("no member \"" + std::string(name) + "\"");
}

// Percent-encodes a path segment (a subject may hold any character).
std::string EncodePathSegment(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// Splits http(s)://host[:port][/path] into origin and base path.
Status SplitUrl(const std::string& url, std::string& origin, std::string& base_path) {
  std::string_view u = url;
  size_t scheme_end = u.find("://");
  std::string_view scheme = scheme_end == std::string_view::npos ? "" : u.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return Status::InvalidArgument("schema.registry.url '" + url +
                                   "' must start with http:// or https:// (e.g. http://127.0.0.1:8081)");
  }
  size_t host_start = scheme_end + 3;
  size_t path_start = u.find('/', host_start);
  std::string_view host_port = u.substr(host_start, path_start == std::string_view::npos
                                                        ? std::string_view::npos
                                                        : path_start - host_start);
  if (host_port.empty() || host_port.front() == ':') {
    return Status::InvalidArgument("schema.registry.url '" + url + "' names no host");
  }
  if (host_port.find_first_of("?#@") != std::string_view::npos) {
    return Status::InvalidArgument("schema.registry.url '" + url +
                                   "' must be scheme://host[:port][/base/path], without credentials, "
                                   "query or fragment");
  }
  origin = std::string(u.substr(0, path_start));
  base_path = path_start == std::string_view::npos ? "" : std::string(u.substr(path_start));
  if (base_path.find_first_of("?#") != std::string::npos) {
    return Status::InvalidArgument("schema.registry.url '" + url + "' must not have a query or fragment");
  }
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  return Status::OK();
}

// ---- schema references ----------------------------------------------------

// A registry's answer for one schema (GET /schemas/ids/N or
// /subjects/S/versions/V): its text, type and references. False if the
// answer has no "schema" string (not this API); `error` says what is wrong.
bool ParseSchemaAnswer(const std::string& body, RegisteredSchema& out, std::string& schema_type,
                       std::string& error) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto e = parser.parse(body).get(doc); e) {
    error = std::string("not JSON: ") + simdjson::error_message(e);
    return false;
  }
  std::string_view schema;
  if (doc["schema"].get_string().get(schema)) {
    error = "the answer has no \"schema\"";
    return false;
  }
  out.schema = std::string(schema);
  std::string_view type;
  schema_type = doc["schemaType"].get_string().get(type) ? "AVRO" : std::string(type);
  simdjson::dom::array refs;
  if (doc["references"].get_array().get(refs)) return true;  // none (or null)
  for (simdjson::dom::element r : refs) {
    SchemaReference ref;
    std::string_view name, subject;
    int64_t version = 0;
    if (r["name"].get_string().get(name) || r["subject"].get_string().get(subject) ||
        r["version"].get_int64().get(version)) {
      error = "a reference is not {name, subject, version}: " + simdjson::minify(r);
      return false;
    }
    ref.name = std::string(name);
    ref.subject = std::string(subject);
    ref.version = version;
    out.references.push_back(std::move(ref));
  }
  return true;
}

bool IsAvroPrimitive(std::string_view s) {
  return s == "null" || s == "boolean" || s == "int" || s == "long" || s == "float" || s == "double" ||
         s == "bytes" || s == "string";
}

std::string ReferenceLabel(const std::string& subject, int64_t version) {
  return "subject '" + subject + "' version " + std::to_string(version);
}

// InlineSchemaReferences' work: every referenced schema fetched and parsed
// first (the reference graph, checked for cycles and depth), then one walk
// of the writer schema that writes each referenced definition at the first
// use of its name.
class ReferenceInliner {
 public:
  explicit ReferenceInliner(const std::function<Result<RegisteredSchema>(const SchemaReference&)>& lookup)
      : lookup_(lookup) {}

  Result<std::string> Run(const std::string& schema, const std::vector<SchemaReference>& references) {
    Node root;
    root.registered.schema = schema;
    root.registered.references = references;
    root.label = "the writer schema";
    if (auto e = root.parser.parse(root.registered.schema).get(root.json); e) {
      return Status::InvalidArgument(std::string("the writer schema is not JSON: ") + simdjson::error_message(e));
    }
    std::vector<std::pair<std::string, int64_t>> chain;
    KAPPA_RETURN_IF_ERROR(Load(root, chain));
    std::string out;
    out.reserve(schema.size() * 2);
    KAPPA_RETURN_IF_ERROR(Type(root.json, "", "", root, out));
    return out;
  }

 private:
  struct Node {
    RegisteredSchema registered;
    std::string label;
    simdjson::dom::parser parser;
    simdjson::dom::element json;
    std::string full_name;  // the full name of its top-level named type ("" if none)
    std::vector<std::pair<std::string, Node*>> refs;  // (reference name, node), in order
  };

  // The full name of the named type `json` is (Avro's rules: a dotted name,
  // else "namespace", else the null namespace); "" if it is not one.
  static std::string TopLevelFullName(simdjson::dom::element json) {
    simdjson::dom::object obj;
    std::string_view type, name, ns;
    if (json.get_object().get(obj) || obj["type"].get_string().get(type) ||
        !(type == "record" || type == "error" || type == "enum" || type == "fixed") ||
        obj["name"].get_string().get(name)) {
      return "";
    }
    if (name.find('.') != std::string_view::npos || obj["namespace"].get_string().get(ns) || ns.empty()) {
      return std::string(name);
    }
    return std::string(ns) + "." + std::string(name);
  }

  // Fetches `node`'s references and theirs, depth-first; `chain` holds the
  // (subject, version) path from the writer schema to `node`.
  Status Load(Node& node, std::vector<std::pair<std::string, int64_t>>& chain) {
    for (const SchemaReference& ref : node.registered.references) {
      const std::pair<std::string, int64_t> key{ref.subject, ref.version};
      const std::string label = ReferenceLabel(ref.subject, ref.version);
      if (std::find(chain.begin(), chain.end(), key) != chain.end()) {
        std::string path;
        for (const auto& [subject, version] : chain) path += ReferenceLabel(subject, version) + " -> ";
        return Status::InvalidArgument("its schema references form a cycle (" + path + label + ")");
      }
      if (auto it = nodes_.find(key); it != nodes_.end()) {  // referenced twice: fetched once
        node.refs.emplace_back(ref.name, it->second.get());
        continue;
      }
      if (static_cast<int>(chain.size()) + 1 > kMaxSchemaReferenceDepth) {
        return Status::InvalidArgument("its schema references nest deeper than " +
                                       std::to_string(kMaxSchemaReferenceDepth) + " (at " + label + ")");
      }
      Result<RegisteredSchema> fetched = lookup_(ref);
      if (!fetched.ok()) return fetched.status();
      auto child = std::make_unique<Node>();
      child->registered = std::move(*fetched);
      child->label = label;
      if (auto e = child->parser.parse(child->registered.schema).get(child->json); e) {
        return Status::InvalidArgument("the schema it references as " + label + " is not JSON: " +
                                       simdjson::error_message(e));
      }
      child->full_name = TopLevelFullName(child->json);
      if (!child->full_name.empty()) referenced_names_.insert(child->full_name);
      Node* raw = child.get();
      nodes_.emplace(key, std::move(child));
      node.refs.emplace_back(ref.name, raw);
      chain.push_back(key);
      KAPPA_RETURN_IF_ERROR(Load(*raw, chain));
      chain.pop_back();
    }
    return Status::OK();
  }

  static std::string FullName(std::string_view name, const std::string& ns) {
    if (name.find('.') != std::string_view::npos || ns.empty()) return std::string(name);
    return ns + "." + std::string(name);
  }

  // A type known by this full name: defined so far, or the top-level type
  // of a referenced schema (all of which a Confluent deserializer parses
  // before the writer schema).
  bool Known(const std::string& full) const { return defined_.count(full) || referenced_names_.count(full); }

  // The referenced schema a use of `name` (full name `full`) in `node` means:
  // the one of `node`'s references whose type has that full name, else any
  // referenced schema's (a Confluent deserializer knows them all), else, as
  // before, the reference of `node` named so.
  Node* Match(const Node& node, const std::string& full, std::string_view name, const std::string& in_ns) const {
    for (const auto& [ref_name, child] : node.refs) {
      if (child->full_name == full) return child;
    }
    for (const auto& [key, child] : nodes_) {
      if (child->full_name == full) return child.get();
    }
    for (const auto& [ref_name, child] : node.refs) {
      if (ref_name == in_ns) return child;
    }
    for (const auto& [ref_name, child] : node.refs) {
      if (ref_name == name) return child;
    }
    return nullptr;
  }

  // A schema in a type position of the schema `node`: `ns` is its enclosing
  // namespace as Avro (Java) reads `node`, `out_ns` the one Avro C will see
  // at this place of the output (they differ inside an inlined definition
  // until its first named type, which then says its namespace).
  Status Type(simdjson::dom::element e, const std::string& ns, const std::string& out_ns, const Node& node,
              std::string& out) {
    switch (e.type()) {
      case simdjson::dom::element_type::STRING: {
        std::string_view name;
        if (e.get_string().get(name)) return Status::InvalidArgument("malformed JSON string");
        if (!IsAvroPrimitive(name)) {
          // Java's resolution: the current namespace, else the null one.
          const std::string in_ns = FullName(name, ns);
          std::string full = in_ns;
          if (name.find('.') == std::string_view::npos && !ns.empty() && !Known(in_ns) &&
              Known(std::string(name))) {
            full = std::string(name);
          }
          Node* target = Match(node, full, name, in_ns);
          if (target != nullptr && !inlined_.count(target) && !defined_.count(full) &&
              (target->full_name.empty() || !defined_.count(target->full_name))) {
            // The first use: the definition itself (its names defined as it
            // is written, so a recursive use inside stays a name). A
            // referenced schema is read at the top level: the null namespace.
            inlined_.insert(target);
            return Type(target->json, "", out_ns, *target, out);
          }
          if (FullName(name, out_ns) != full && Known(full)) {
            // Avro C would read the bare name in another namespace: say the
            // full name, which a type of the null namespace has none of.
            if (full.find('.') == std::string::npos) {
              return Status::InvalidArgument("its type '" + full + "' (of the null namespace) is used again inside "
                                             "namespace '" + out_ns + "', where Avro C cannot name it");
            }
            out += JsonQuote(full);
            return Status::OK();
          }
        }
        out += JsonQuote(name);
        return Status::OK();
      }
      case simdjson::dom::element_type::ARRAY: {  // a union
        simdjson::dom::array branches;
        if (e.get_array().get(branches)) return Status::InvalidArgument("malformed JSON array");
        out += '[';
        bool first = true;
        for (simdjson::dom::element branch : branches) {
          if (!first) out += ',';
          first = false;
          KAPPA_RETURN_IF_ERROR(Type(branch, ns, out_ns, node, out));
        }
        out += ']';
        return Status::OK();
      }
      case simdjson::dom::element_type::OBJECT: {
        simdjson::dom::object obj;
        if (e.get_object().get(obj)) return Status::InvalidArgument("malformed JSON object");
        return Object(obj, ns, out_ns, node, out);
      }
      default: out += simdjson::minify(e); return Status::OK();
    }
  }

  Status Object(simdjson::dom::object obj, const std::string& ns, const std::string& out_ns, const Node& node,
                std::string& out) {
    std::string_view type;
    const bool type_is_string = !obj["type"].get_string().get(type);
    const bool named = type_is_string && (type == "record" || type == "error" || type == "enum" || type == "fixed");
    const bool record = type_is_string && (type == "record" || type == "error");
    std::string own_ns = ns;  // the namespace of the names inside (a named type's own)
    std::string inner_out_ns = out_ns;  // the same as Avro C will see it
    bool say_namespace = false;  // the namespace Avro C would take is not its own: write it
    if (named) {
      std::string_view name;
      if (!obj["name"].get_string().get(name)) {
        std::string_view declared;
        if (size_t dot = name.rfind('.'); dot != std::string_view::npos) {
          own_ns = std::string(name.substr(0, dot));
        } else if (!obj["namespace"].get_string().get(declared)) {
          own_ns = std::string(declared);
        } else {
          say_namespace = ns != out_ns;  // "" is the null namespace to Avro C too
        }
        inner_out_ns = own_ns;
        defined_.insert(FullName(name, own_ns));
      }
    }
    out += '{';
    bool first = true;
    for (simdjson::dom::key_value_pair member : obj) {
      if (!first) out += ',';
      first = false;
      out += JsonQuote(member.key);
      out += ':';
      simdjson::dom::array fields;
      if (record && member.key == "fields" && !member.value.get_array().get(fields)) {
        out += '[';
        bool first_field = true;
        for (simdjson::dom::element field : fields) {
          if (!first_field) out += ',';
          first_field = false;
          simdjson::dom::object f;
          if (field.get_object().get(f)) {
            out += simdjson::minify(field);
            continue;
          }
          out += '{';
          bool first_key = true;
          for (simdjson::dom::key_value_pair fm : f) {
            if (!first_key) out += ',';
            first_key = false;
            out += JsonQuote(fm.key);
            out += ':';
            if (fm.key == "type") {
              KAPPA_RETURN_IF_ERROR(Type(fm.value, own_ns, inner_out_ns, node, out));
            } else {
              out += simdjson::minify(fm.value);
            }
          }
          out += '}';
        }
        out += ']';
      } else if ((member.key == "items" && type_is_string && type == "array") ||
                 (member.key == "values" && type_is_string && type == "map") ||
                 (member.key == "type" && !named && !(type_is_string && (type == "array" || type == "map")))) {
        KAPPA_RETURN_IF_ERROR(Type(member.value, own_ns, inner_out_ns, node, out));
      } else {
        out += simdjson::minify(member.value);
        if (say_namespace && member.key == "name") {
          out += ",\"namespace\":";
          out += JsonQuote(own_ns);
        }
      }
    }
    out += '}';
    return Status::OK();
  }

  const std::function<Result<RegisteredSchema>(const SchemaReference&)>& lookup_;
  std::map<std::pair<std::string, int64_t>, std::unique_ptr<Node>> nodes_;
  std::set<std::string> defined_;             // full names of the named types written so far
  std::set<std::string> referenced_names_;    // full names of the referenced schemas' top-level types
  std::set<const Node*> inlined_;             // referenced schemas (subject, version) written so far
};

}  // namespace

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

Result<std::string> JsonMemberString(std::string_view json, std::string_view name) {
  Result<std::string_view> raw = MemberRaw(json, name);
  if (!raw.ok()) return raw.status();
  std::string out;
  size_t i = 0;
  if (raw->empty() || (*raw)[0] != '"' || !ParseString(*raw, i, &out)) {
    return Status::InvalidArgument("member \"" + std::string(name) + "\" is not a string");
  }
  return out;
}

Result<int64_t> JsonMemberInt(std::string_view json, std::string_view name) {
  Result<std::string_view> raw = MemberRaw(json, name);
  if (!raw.ok()) return raw.status();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(raw->data(), raw->data() + raw->size(), value);
  if (ec != std::errc() || end != raw->data() + raw->size()) {
    return Status::InvalidArgument("member \"" + std::string(name) + "\" is not an integer");
  }
  return value;
}

Result<SchemaRegistryOptions> SchemaRegistryOptions::FromProperties(
    const std::vector<std::pair<std::string, std::string>>& properties) {
  SchemaRegistryOptions options;
  for (const auto& [key, value] : properties) {
    if (key == "schema.registry.url") {
      options.url = value;
    } else if (key == "schema.registry.timeout.ms") {
      int64_t ms = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec != std::errc() || end != value.data() + value.size() || ms <= 0) {
        return Status::InvalidArgument("schema.registry.timeout.ms must be a positive number of "
                                       "milliseconds, not '" + value + "'");
      }
      options.timeout = std::chrono::milliseconds(ms);
    } else if (key == "schema.registry.retry.ms") {
      int64_t ms = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec != std::errc() || end != value.data() + value.size() || ms < 0) {
        return Status::InvalidArgument("schema.registry.retry.ms must be a number of milliseconds (0: no "
                                       "retry), not '" + value + "'");
      }
      options.retry_for = std::chrono::milliseconds(ms);
    }
  }
  if (options.url.empty()) {
    return Status::InvalidArgument(
        "schema.registry.url is not set: Avro in the Confluent wire format needs the Schema Registry "
        "that the producers use (e.g. schema.registry.url=http://127.0.0.1:8081)");
  }
  return options;
}

Result<std::unique_ptr<SchemaRegistryClient>> SchemaRegistryClient::Create(SchemaRegistryOptions options) {
  std::string origin, base_path;
  KAPPA_RETURN_IF_ERROR(SplitUrl(options.url, origin, base_path));
  if (options.timeout.count() <= 0) {
    return Status::InvalidArgument("schema.registry.timeout.ms must be positive");
  }
  return std::unique_ptr<SchemaRegistryClient>(
      new SchemaRegistryClient(std::move(options), std::move(origin), std::move(base_path)));
}

SchemaRegistryClient::SchemaRegistryClient(SchemaRegistryOptions options, std::string origin,
                                           std::string base_path)
    : options_(std::move(options)), origin_(std::move(origin)), base_path_(std::move(base_path)) {
  client_ = std::make_unique<httplib::Client>(origin_);
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(options_.timeout);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout - seconds);
  client_->set_connection_timeout(seconds.count(), micros.count());
  client_->set_read_timeout(seconds.count(), micros.count());
  client_->set_write_timeout(seconds.count(), micros.count());
  client_->set_keep_alive(true);
}

SchemaRegistryClient::~SchemaRegistryClient() = default;

uint64_t SchemaRegistryClient::requests() const {
  std::lock_guard<std::mutex> lock(http_mu_);
  return requests_;
}

Result<SchemaRegistryClient::Response> SchemaRegistryClient::Send(const char* method, const std::string& path,
                                                                  const std::string& body) {
  std::lock_guard<std::mutex> lock(http_mu_);
  ++requests_;
  httplib::Headers headers = {{"Accept", kContentType}};
  httplib::Result result = std::string_view(method) == "POST"
                               ? client_->Post(path, headers, body, kContentType)
                               : client_->Get(path, headers);
  if (!result) {
    httplib::Error error = result.error();
    std::string cause;
    switch (error) {
      case httplib::Error::Connection: cause = "could not connect"; break;
      case httplib::Error::ConnectionTimeout:
        cause = "no connection within " + std::to_string(options_.timeout.count()) + " ms";
        break;
      case httplib::Error::Read:
        cause = "no answer within " + std::to_string(options_.timeout.count()) +
                " ms (or the connection was closed)";
        break;
      default: cause = httplib::to_string(error); break;
    }
    return Status::Unavailable("schema registry at " + options_.url + " is unreachable (" + method + " " +
                               path + ": " + cause + "): check that it is running and that " + options_.setting +
                               " is right" +
                               (options_.setting == "schema.registry.url" ? "; schema.registry.timeout.ms bounds the wait"
                                                                          : std::string()));
  }
  return Response{result->status, result->body};
}

Result<SchemaRegistryClient::Response> SchemaRegistryClient::SendAgainIfTransient(const char* method,
                                                                                  const std::string& path,
                                                                                  const std::string& body,
                                                                                  bool registering) {
  // Seen in CI from Apicurio: 500 "Timeout trying to lock table" (its
  // in-memory store, under concurrent registrations) and 409 "An artifact
  // version ... already exists" (a version registered while the subject's
  // previous one was being stored). Neither is the schema's fault; an
  // incompatibility (409 without that text) is answered at once.
  auto transient = [&](const Response& r) {
    return r.status == 429 || r.status / 100 == 5 ||
           (registering && r.status == 409 && r.body.find("already exists") != std::string::npos);
  };
  // A registry that cannot be reached (refused, or no answer within the
  // timeout) is asked again too: it may be restarting.
  auto again = [&](Result<Response>& r) {
    return r.ok() ? transient(*r) : r.status().code() == Status::Code::kUnavailable;
  };
  const auto began = std::chrono::steady_clock::now();
  const auto deadline = began + options_.retry_for;
  {
    // Another request just waited out the retry time: no second wait.
    std::lock_guard<std::mutex> lock(note_mu_);
    constexpr auto kFailFastFor = std::chrono::seconds(10);
    if (!gave_up_.ok() && began - gave_up_at_ < kFailFastFor) {
      return Status::Unavailable(gave_up_.message() + " (a moment ago, for another request)");
    }
  }
  Result<Response> response = Send(method, path, body);
  auto pause = std::chrono::milliseconds(100);
  int attempts = 1;
  auto say = [&](const std::string& text) {
    std::lock_guard<std::mutex> lock(note_mu_);
    if (wait_note_) wait_note_(text);
  };
  while (again(response) && std::chrono::steady_clock::now() + pause <= deadline) {
    if (attempts == 1) {
      say("the schema registry at " + options_.url + " does not answer (" +
          (response.ok() ? "HTTP " + std::to_string(response->status) : response.status().message()) +
          "): asking again for up to " + std::to_string(options_.retry_for.count() / 1000) +
          " s; the records that need its schemas wait meanwhile");
    }
    // In slices, so that a stop request ends the wait.
    for (auto slept = std::chrono::milliseconds(0); slept < pause; slept += std::chrono::milliseconds(50)) {
      if (ProcessStopToken().stop_requested()) {
        return Status::Aborted(std::string(kStoppedWaiting) + " at " + options_.url + ", which did not answer (" +
                               (response.ok() ? "HTTP " + std::to_string(response->status)
                                              : response.status().message()) +
                               ")");
      }
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(50), pause - slept));
    }
    pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(2));
    response = Send(method, path, body);
    ++attempts;
  }
  if (attempts > 1 && !again(response)) {
    char after[32];
    std::snprintf(after, sizeof(after), "%.1f s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    say("the schema registry at " + options_.url + " answers again after " + after);
  }
  if (!response.ok() && attempts > 1) {
    const auto tried = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
    char over[32];
    std::snprintf(over, sizeof(over), "%.1f s", static_cast<double>(tried.count()) / 1000);
    Status failed = Status::Unavailable(response.status().message() + " (asked " + std::to_string(attempts) +
                                        " times over " + over + "; " +
                                        (options_.setting == "schema.registry.url"
                                             ? "schema.registry.retry.ms"
                                             : "the registry's retry time, " +
                                                   std::to_string(options_.retry_for.count() / 1000) + " s,") +
                                        " bounds it)");
    std::lock_guard<std::mutex> lock(note_mu_);
    gave_up_ = failed;
    gave_up_at_ = std::chrono::steady_clock::now();
    return failed;
  }
  if (attempts > 1 && again(response)) {
    // Answered, with a server error to the end: that is the registry's
    // state for now too.
    std::lock_guard<std::mutex> lock(note_mu_);
    gave_up_ = Status::Unavailable("the schema registry at " + options_.url + " answered HTTP " +
                                   std::to_string(response->status) + " for " +
                                   std::to_string(options_.retry_for.count() / 1000) + " s");
    gave_up_at_ = std::chrono::steady_clock::now();
  }
  return response;
}

bool IsStoppedWaitingForRegistry(const Status& st) {
  return st.code() == Status::Code::kAborted && st.message().rfind(kStoppedWaiting, 0) == 0;
}

void SchemaRegistryClient::SetWaitNote(std::function<void(const std::string&)> note) {
  std::lock_guard<std::mutex> lock(note_mu_);
  wait_note_ = std::move(note);
}

Status SchemaRegistryClient::ErrorFrom(const Response& response, const std::string& what) const {
  Result<std::string> message = JsonMemberString(response.body, "message");
  Result<int64_t> code = JsonMemberInt(response.body, "error_code");
  std::string detail = "HTTP " + std::to_string(response.status);
  if (code.ok()) detail += ", error_code " + std::to_string(*code);
  if (message.ok()) detail += ": " + *message;
  std::string text = what + " failed at " + options_.url + " (" + detail + ")";
  if (response.status == 409) {
    return Status::FailedPrecondition(text + ": the schema is incompatible with the subject's earlier "
                                      "versions under its compatibility rule");
  }
  if (response.status == 422 || response.status == 400) return Status::InvalidArgument(text);
  if (response.status == 404) {
    // Not "not found": the registry's own 404s carry its error codes (40403
    // is handled by the caller), this is a URL with no API behind it. A
    // decoder that took it for an unknown schema dead-lettered every record.
    return Status::FailedPrecondition(text + ": is " + options_.setting +
                                      " the API's base (for Apicurio http://host:port/apis/ccompat/v7)?");
  }
  if (response.status == 401 || response.status == 403) {
    return Status::FailedPrecondition(text + ": the registry refuses this client");
  }
  return Status::Unavailable(text);
}

Result<int32_t> SchemaRegistryClient::Register(const std::string& subject, const std::string& avro_schema_json) {
  {
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    auto it = ids_by_subject_schema_.find({subject, avro_schema_json});
    if (it != ids_by_subject_schema_.end()) return it->second;
  }
  std::string path = base_path_ + "/subjects/" + EncodePathSegment(subject) + "/versions";
  std::string body = "{\"schemaType\":\"AVRO\",\"schema\":" + JsonQuote(avro_schema_json) + "}";
  Result<Response> response = SendAgainIfTransient("POST", path, body, /*registering=*/true);
  if (!response.ok()) return response.status();
  std::string what = "registering a schema under subject '" + subject + "'";
  if (response->status / 100 != 2) return ErrorFrom(*response, what);
  Result<int64_t> id = JsonMemberInt(response->body, "id");
  if (!id.ok() || *id < 0 || *id > INT32_MAX) {
    return Status::Unavailable(what + " at " + options_.url + ": the answer has no schema id (HTTP " +
                               std::to_string(response->status) + "): is this a Confluent-compatible "
                               "Schema Registry API?");
  }
  std::unique_lock<std::shared_mutex> lock(cache_mu_);
  ids_by_subject_schema_[{subject, avro_schema_json}] = static_cast<int32_t>(*id);
  return static_cast<int32_t>(*id);
}

Result<std::string> SchemaRegistryClient::SchemaById(int32_t id) {
  {
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    auto it = schemas_by_id_.find(id);
    if (it != schemas_by_id_.end()) return it->second;
  }
  Result<Response> response =
      SendAgainIfTransient("GET", base_path_ + "/schemas/ids/" + std::to_string(id), "", /*registering=*/false);
  if (!response.ok()) return response.status();
  const std::string writer = "writer schema " + std::to_string(id);
  // 40403 is the API's "schema not found"; another 404 is a wrong URL.
  Result<int64_t> error_code = JsonMemberInt(response->body, "error_code");
  if (response->status == 404 && error_code.ok() && *error_code == 40403) {
    return Status::NotFound("unknown schema id " + std::to_string(id) + " at schema registry " +
                            options_.url + ": the record names a writer schema this registry does not "
                            "have (is " + options_.setting + " the registry its producer used?)");
  }
  // Subject or version not found (40401, 40402) for a schema id: Apicurio
  // resolves the references of a schema it serves by id, and answers so
  // when one names a subject or version it no longer has (its message names
  // them). The schema is there but cannot be read: a dead letter, as below.
  if (response->status == 404 && error_code.ok() && (*error_code == 40401 || *error_code == 40402)) {
    Result<std::string> message = JsonMemberString(response->body, "message");
    return Status::InvalidArgument(writer + " uses a schema reference that the schema registry at " + options_.url +
                                   " cannot resolve (HTTP 404, error_code " + std::to_string(*error_code) +
                                   (message.ok() ? ": " + *message : std::string()) +
                                   "): its records stay in the DLQ for `kappa dlq replay` once the referenced "
                                   "subject and version are registered again");
  }
  std::string type;
  Result<RegisteredSchema> answer = SchemaFrom(*response, "fetching schema id " + std::to_string(id), &type);
  if (!answer.ok()) return answer.status();
  RegisteredSchema& registered = *answer;
  // A schema of another kind: its records were dead-lettered as "not a
  // valid Avro schema: Unknown Avro type" (a bug bash). Said as it is.
  if (type != "AVRO") {
    return Status::InvalidArgument(writer + " is a " + type + " schema, not Avro: the record was written by a " +
                                   type + " serializer, and this job reads format avro");
  }
  std::string text = std::move(registered.schema);
  if (!registered.references.empty()) {
    // Types defined under other subjects (Confluent's schema references):
    // inlined, so that the text alone is the whole writer schema.
    auto lookup = [&](const SchemaReference& ref) -> Result<RegisteredSchema> {
      Result<RegisteredSchema> referenced = SchemaBySubjectVersion(ref.subject, ref.version);
      if (!referenced.ok() && referenced.status().code() == Status::Code::kNotFound) {
        return Status::InvalidArgument("it references type `" + ref.name + "`, but " +
                                       referenced.status().message() +
                                       ": its records stay in the DLQ for `kappa dlq replay` once that is registered");
      }
      return referenced;
    };
    Result<std::string> inlined = InlineSchemaReferences(text, registered.references, lookup);
    if (!inlined.ok()) {
      if (inlined.status().code() != Status::Code::kInvalidArgument) return inlined.status();
      return Status::InvalidArgument(writer + " uses schema references kappa cannot resolve: " +
                                     inlined.status().message());
    }
    text = std::move(*inlined);
  }
  std::unique_lock<std::shared_mutex> lock(cache_mu_);
  return schemas_by_id_.emplace(id, std::move(text)).first->second;
}

Result<RegisteredSchema> SchemaRegistryClient::SchemaBySubjectVersion(const std::string& subject, int64_t version) {
  {
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    auto it = schemas_by_subject_version_.find({subject, version});
    if (it != schemas_by_subject_version_.end()) return it->second;
  }
  const std::string label = ReferenceLabel(subject, version);
  Result<Response> response = SendAgainIfTransient(
      "GET", base_path_ + "/subjects/" + EncodePathSegment(subject) + "/versions/" + std::to_string(version), "",
      /*registering=*/false);
  if (!response.ok()) return response.status();
  // 40401 subject not found, 40402 version not found; another 404 is a
  // wrong URL.
  Result<int64_t> error_code = JsonMemberInt(response->body, "error_code");
  if (response->status == 404 && error_code.ok() && (*error_code == 40401 || *error_code == 40402)) {
    Result<std::string> message = JsonMemberString(response->body, "message");
    return Status::NotFound(label + " is not in the schema registry at " + options_.url + " (HTTP 404, error_code " +
                            std::to_string(*error_code) + (message.ok() ? ": " + *message : std::string()) + ")");
  }
  std::string type;
  Result<RegisteredSchema> answer = SchemaFrom(*response, "fetching the schema of " + label, &type);
  if (!answer.ok()) return answer.status();
  if (type != "AVRO") {
    return Status::InvalidArgument("the schema of " + label + " is a " + type + " schema, not Avro");
  }
  std::unique_lock<std::shared_mutex> lock(cache_mu_);
  return schemas_by_subject_version_.emplace(std::make_pair(subject, version), std::move(*answer)).first->second;
}

Result<RegisteredSchema> SchemaRegistryClient::SchemaFrom(const Response& response, const std::string& what,
                                                          std::string* type) const {
  if (response.status / 100 != 2) {
    // InvalidArgument is kept for a schema this client cannot read; a
    // registry that refuses the request itself stops the job.
    Status st = ErrorFrom(response, what);
    return st.code() == Status::Code::kInvalidArgument ? Status::Unavailable(st.message()) : st;
  }
  RegisteredSchema registered;
  std::string error;
  if (!ParseSchemaAnswer(response.body, registered, *type, error)) {
    return Status::Unavailable(what + " at " + options_.url + ": " + error + " (HTTP " +
                               std::to_string(response.status) + "): is this a Confluent-compatible "
                               "Schema Registry API?");
  }
  return registered;
}

Result<std::string> InlineSchemaReferences(
    const std::string& schema, const std::vector<SchemaReference>& references,
    const std::function<Result<RegisteredSchema>(const SchemaReference&)>& lookup) {
  return ReferenceInliner(lookup).Run(schema, references);
}

}  // namespace kappa
