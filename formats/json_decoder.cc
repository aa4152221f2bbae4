#include "formats/json_decoder.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/field_paths.h"
#include "formats/schema_spec.h"
#include "kafka/schema_registry.h"

namespace kappa {

namespace od = simdjson::ondemand;

namespace {

// Strings unescaped during a batch: fixed chunks reused from batch to
// batch, so a steady stream of escaped strings allocates nothing.
class StringArena {
 public:
  static constexpr size_t kChunk = 64 * 1024;
  static constexpr size_t kLarge = kChunk / 4;

  const char* Copy(std::string_view s) {
    if (s.size() > kLarge) {
      large_.push_back(std::make_unique<char[]>(s.size()));
      std::memcpy(large_.back().get(), s.data(), s.size());
      return large_.back().get();
    }
    if (chunk_ == chunks_.size() || used_ + s.size() > kChunk) {
      if (chunk_ < chunks_.size()) ++chunk_;
      if (chunk_ == chunks_.size()) chunks_.push_back(std::make_unique<char[]>(kChunk));
      used_ = 0;
    }
    char* dst = chunks_[chunk_].get() + used_;
    std::memcpy(dst, s.data(), s.size());
    used_ += s.size();
    return dst;
  }
  void Reset() {
    chunk_ = 0;
    used_ = 0;
    large_.clear();
  }
  size_t Bytes() const { return chunks_.size() * kChunk; }

 private:
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_ = 0;  // the chunk being filled; chunks_.size() before the first
  size_t used_ = 0;
  std::vector<std::unique_ptr<char[]>> large_;
};

// A key on a declared path: a leaf (slot >= 0) or an object holding more.
using Node = FieldPathNode;

std::string_view JsonTypeName(od::json_type t) {
  switch (t) {
    case od::json_type::array: return "array";
    case od::json_type::object: return "object";
    case od::json_type::number: return "number";
    case od::json_type::string: return "string";
    case od::json_type::boolean: return "bool";
    case od::json_type::null: return "null";
  }
  return "?";
}

// Without the JSON whitespace after it (simdjson's raw tokens keep it).
std::string_view TrimTrailingSpace(std::string_view t) {
  while (!t.empty() && (t.back() == ' ' || t.back() == '\n' || t.back() == '\r' || t.back() == '\t')) {
    t.remove_suffix(1);
  }
  return t;
}

// The token as written, for messages: trailing spaces dropped, long ones cut.
std::string Excerpt(std::string_view token) {
  token = TrimTrailingSpace(token);
  if (token.size() > 40) return std::string(token.substr(0, 40)) + "...";
  return std::string(token);
}

// A string value as it is, quoted and escaped, long ones cut: its spaces
// and control characters are part of what is wrong with it (a trailing
// space trimmed by Excerpt quoted a valid-looking timestamp, a bug bash).
std::string QuotedExcerpt(std::string_view text) {
  if (text.size() > 40) return JsonQuote(text.substr(0, 40)) + "...";
  return JsonQuote(text);
}

// Whether a number token (trailing spaces allowed) follows JSON's grammar,
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, whatever its size: 1e999
// and a 30-digit integer are JSON that simdjson cannot hold, not bad JSON.
bool IsJsonNumber(std::string_view t) {
  t = TrimTrailingSpace(t);
  size_t i = 0;
  auto digits = [&] {
    const size_t from = i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    return i - from;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') {
    ++i;
  } else if (digits() == 0) {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == t.size();
}

// Levels of nesting a record may have, the record's object counted: within
// simdjson's own limit (1,024 for a parser, its DOM refuses deeper
// documents), which On-Demand does not check inside values the job skips;
// checking them one call per level overflowed the stack at ~50,000 (a bug
// bash). On-Demand's iterator is at depth n+1 inside a container at depth
// n, and requires it below 1,024 (an assertion of its development checks
// failed at 1,023 levels under the sanitized build): 1,022.
constexpr int kMaxJsonDepth = 1022;

}  // namespace

struct JsonDecoder::Impl {
  RecordSchema schema;
  FieldPaths paths;  // the tree of declared paths (paths.root) and the kafka.* slots
  std::vector<uint8_t> was_null;  // per slot, this record

  od::parser parser;
  std::vector<char> input;  // the record copied with SIMDJSON_PADDING after it
  StringArena arena;

  // This record.
  const RawRecord* record = nullptr;
  FieldValue* out = nullptr;
  DecodeError* error = nullptr;
  // Declared fields (or objects holding them) of the wrong type, kept until
  // the record's end: a key given again later replaces its value, so its
  // error goes with it. `"user":"x","user":{"id":"a1"}` went to the DLQ for
  // a value the README says the second one overrides (a bug bash).
  std::vector<std::pair<const Node*, DecodeError>> wrong_types;

  bool Fail(DecodeError::Kind kind, int slot, std::string message) {
    error->kind = kind;
    error->path = slot >= 0 ? schema.field(slot).path : std::string();
    error->message = std::move(message);
    return false;
  }
  bool Undecodable(std::string what) { return Fail(DecodeError::Kind::kUndecodable, -1, std::move(what)); }
  bool Undecodable(simdjson::error_code e) {
    if (std::string why = Diagnose(); !why.empty()) return Undecodable(std::move(why));
    return Undecodable(std::string("not valid JSON: ") + simdjson::error_message(e));
  }
  // What is wrong with a record simdjson refused, when its first or last
  // bytes say it better than the parser (which reports content after the
  // object as "ended early"); "" otherwise. Only on the failure path.
  std::string Diagnose() const {
    std::string_view s(reinterpret_cast<const char*>(record->payload), record->size);
    if (s.substr(0, 3) == "\xEF\xBB\xBF") {
      return "the record starts with a UTF-8 byte-order mark (EF BB BF), which JSON does not allow: the producer "
             "should write UTF-8 without one";
    }
    s = TrimTrailingSpace(s);
    const size_t start = s.find_first_not_of(" \n\r\t");
    if (!s.empty() && s.back() == '\0' && start != std::string_view::npos && s[start] == '{') {
      std::string_view body = s;
      while (!body.empty() && body.back() == '\0') body.remove_suffix(1);
      if (!body.empty() && body.back() == '}') {
        return "the record ends with a NUL byte after the JSON (a C string's terminator sent with it?)";
      }
    }
    // Binary bytes where JSON text starts: a record of another format (a
    // FlatBuffers payload read as JSON was called "a C string's terminator
    // sent with it", by its trailing NUL: a bug bash).
    if (start == std::string_view::npos || (s[start] != '{' && s[start] != '[' && s[start] != '"')) {
      const std::string_view head = s.substr(0, 16);
      const bool binary = std::any_of(head.begin(), head.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 && c != '\t' && c != '\n' && c != '\r';
      });
      if (binary) {
        std::string hex;
        for (size_t i = 0; i < std::min<size_t>(s.size(), 8); ++i) {
          char b[4];
          std::snprintf(b, sizeof(b), "%s%02x", i ? " " : "", static_cast<unsigned char>(s[i]));
          hex += b;
        }
        return "not JSON: the record is binary (it starts with bytes " + hex +
               "): a record of another format, such as FlatBuffers or Avro, in a topic the spec reads as JSON?";
      }
    }
    if (start != std::string_view::npos && s[start] == '{' && s.back() != '}') {
      return "not valid JSON: the record does not end with the object's `}` (content after the JSON object, or "
             "the record was cut): it ends `" + Excerpt(s.substr(s.size() > 20 ? s.size() - 20 : 0)) + "`";
    }
    return "";
  }
  // A declared value that simdjson cannot read (1e999, 01, a broken string).
  bool BadValue(int slot, simdjson::error_code e, od::value& v) {
    if (e == simdjson::NUMBER_ERROR && IsJsonNumber(v.raw_json_token())) {
      return Fail(DecodeError::Kind::kUndecodable, slot,
                  "field `" + schema.field(slot).name + "` at `" + schema.field(slot).path +
                      "`: a number beyond a double's range (about 1.8e308): " + Excerpt(v.raw_json_token()));
    }
    const char* what = e == simdjson::NUMBER_ERROR   ? "a number, or one beyond a double's range (about 1.8e308)"
                       : e == simdjson::STRING_ERROR ? "a string"
                                                     : "a value";
    return Fail(DecodeError::Kind::kUndecodable, slot,
                "field `" + schema.field(slot).name + "` at `" + schema.field(slot).path + "`: not valid JSON (" +
                    what + "): " + Excerpt(v.raw_json_token()));
  }
  bool WrongType(int slot, std::string_view expected, std::string_view found) {
    return Fail(DecodeError::Kind::kWrongType, slot,
                "field `" + schema.field(slot).name + "` at `" + schema.field(slot).path + "`: expected " +
                    std::string(expected) + ", found " + std::string(found));
  }

  const Node* Match(const Node& node, od::raw_json_string key) const {
    for (const Node& c : node.children) {
      if (key.unsafe_is_equal(c.key)) return &c;
    }
    return nullptr;
  }

  // Whether a key, as it stands in the payload, has an escape: its first `\`
  // comes before its closing quote (an escaped quote starts with `\` too).
  static bool HasEscapes(od::raw_json_string key) {
    for (const char* p = key.raw();; ++p) {
      if (*p == '"') return false;
      if (*p == '\\') return true;
    }
  }
  const Node* MatchUnescaped(const Node& node, std::string_view key) const {
    for (const Node& c : node.children) {
      if (key == c.key) return &c;
    }
    return nullptr;
  }

  // A value no declared field reads. On-Demand would skip it unparsed, so a
  // record like `{"id":"a","status":approved}` passed as valid and was copied
  // to the sink (a bug bash; the README says a record that does not parse
  // goes to the DLQ). Each scalar is parsed as its type says; a string is
  // unescaped only when it has an escape to check.
  bool CheckUnread(od::value v, int depth) {
    od::json_type t;
    if (auto e = v.type().get(t)) return Undecodable(e);
    if (depth > kMaxJsonDepth && (t == od::json_type::object || t == od::json_type::array)) {
      return Undecodable("the record is nested deeper than " + std::to_string(kMaxJsonDepth) +
                         " levels (the most kappa reads), in a field the job does not read");
    }
    auto bad = [&](simdjson::error_code e) {
      const std::string_view token = v.raw_json_token();
      return Undecodable("not valid JSON in a field the job does not read (`" + Excerpt(token) +
                         "`): " + simdjson::error_message(e));
    };
    switch (t) {
      case od::json_type::object: {
        od::object o;
        if (auto e = v.get_object().get(o)) return Undecodable(e);
        for (auto item : o) {
          od::field f;
          if (auto e = std::move(item).get(f)) return Undecodable(e);
          if (HasEscapes(f.key())) {
            std::string_view key;
            if (auto e = f.unescaped_key().get(key)) return Undecodable(e);
          }
          if (!CheckUnread(f.value(), depth + 1)) return false;
        }
        return true;
      }
      case od::json_type::array: {
        od::array a;
        if (auto e = v.get_array().get(a)) return Undecodable(e);
        for (auto item : a) {
          od::value element;
          if (auto e = std::move(item).get(element)) return Undecodable(e);
          if (!CheckUnread(element, depth + 1)) return false;
        }
        return true;
      }
      case od::json_type::string: {
        const std::string_view raw = v.raw_json_token();
        if (raw.find('\\') == std::string_view::npos) return true;
        std::string_view text;
        if (auto e = v.get_string().get(text)) return bad(e);
        return true;
      }
      case od::json_type::number: {
        od::number n;
        if (auto e = v.get_number().get(n)) {
          // An integer beyond 64 bits is JSON all the same.
          if (!IsJsonNumber(v.raw_json_token())) return bad(e);
        }
        return true;
      }
      case od::json_type::boolean: {
        bool b;
        if (auto e = v.get_bool().get(b)) return bad(e);
        return true;
      }
      case od::json_type::null: {
        bool null = false;
        if (auto e = v.is_null().get(null); e || !null) return bad(e ? e : simdjson::N_ATOM_ERROR);
        return true;
      }
    }
    return true;
  }

  // A key given twice: the last one wins, as in most JSON readers (Python,
  // Jackson's default). A leaf's slot is overwritten anyway; an object's
  // fields are cleared first, or `"a":{"x":1},"a":null` kept a.x (a bug bash).
  void ClearUnder(const Node& node) {
    if (node.slot >= 0) {
      out[node.slot].present = false;
      was_null[static_cast<size_t>(node.slot)] = 0;
    }
    for (const Node& c : node.children) ClearUnder(c);
  }

  static bool Holds(const Node& node, const Node* x) {
    if (&node == x) return true;
    for (const Node& c : node.children) {
      if (Holds(c, x)) return true;
    }
    return false;
  }
  // `node` is given again: what its earlier value was wrong about no longer counts.
  void Replaced(const Node& node) {
    if (wrong_types.empty()) return;
    std::erase_if(wrong_types, [&](const auto& w) { return Holds(node, w.first); });
  }
  // The failure *error holds: a wrong type waits for the record's end (a
  // later value of the key replaces it); anything else ends the record now.
  bool Defer(const Node& node) {
    if (error->kind != DecodeError::Kind::kWrongType) return false;
    wrong_types.emplace_back(&node, *error);
    return true;
  }

  bool VisitObject(od::object& obj, const Node& node, int depth) {
    for (auto item : obj) {
      od::field field;
      if (auto e = std::move(item).get(field)) return Undecodable(e);
      const Node* child = Match(node, field.key());
      if (child == nullptr && HasEscapes(field.key())) {
        // "i\u0064" names `id` too: compare such a key unescaped (rare, so
        // only after the raw comparison found nothing).
        std::string_view unescaped;
        if (auto e = field.unescaped_key().get(unescaped)) return Undecodable(e);
        child = MatchUnescaped(node, unescaped);
      }
      if (child == nullptr) {
        // Not read, but part of the record: it must be JSON too.
        if (!CheckUnread(field.value(), depth + 1)) return false;
        continue;
      }
      od::value& v = field.value();
      Replaced(*child);
      if (child->slot >= 0) {
        if (!ReadValue(v, child->slot, depth + 1)) {
          if (!Defer(*child)) return false;
          out[child->slot].present = false;
        }
        continue;
      }
      od::json_type t;
      if (v.type().get(t)) {
        return Fail(DecodeError::Kind::kUndecodable, child->first_slot,
                    "not valid JSON at `" + child->prefix + "`: " + Excerpt(v.raw_json_token()));
      }
      ClearUnder(*child);
      if (t == od::json_type::null) continue;  // its fields are absent
      if (t != od::json_type::object) {
        if (!CheckUnread(v, depth + 1)) return false;  // JSON all the same, or the record is not
        Fail(DecodeError::Kind::kWrongType, child->first_slot,
             "expected an object at `" + child->prefix + "` (holding `" + schema.field(child->first_slot).path +
                 "`), found " + std::string(JsonTypeName(t)));
        Defer(*child);
        continue;
      }
      od::object sub;
      if (auto e = v.get_object().get(sub)) return Undecodable(e);
      if (!VisitObject(sub, *child, depth + 1)) return false;
    }
    return true;
  }

  // An integer, or a number with no fraction within int64 range.
  bool ReadInt(od::value& v, int slot, std::string_view expected, int64_t* result) {
    od::number_type nt;
    if (auto e = v.get_number_type().get(nt)) return BadValue(slot, e, v);
    if (nt == od::number_type::signed_integer) {
      auto e = v.get_int64().get(*result);
      if (!e) return true;
      if (e == simdjson::NUMBER_ERROR) return BadValue(slot, e, v);
      return WrongType(slot, expected, "an integer beyond int64 (" + Excerpt(v.raw_json_token()) + ")");
    }
    if (nt == od::number_type::unsigned_integer) {
      return WrongType(slot, expected, "an integer beyond int64 (" + Excerpt(v.raw_json_token()) + ")");
    }
    double d;
    if (auto e = v.get_double().get(d)) {
      if (ExactInteger(v.raw_json_token(), result)) return true;  // 0e-999999: 0 all the same
      return BadValue(slot, e, v);
    }
    // From the token's digits, not the double: 9007199254740993.0 is a
    // whole number the double rounds to ...992 (taken as it, silently).
    if (ExactInteger(v.raw_json_token(), result)) return true;
    return WrongType(slot, expected, "double (" + Excerpt(v.raw_json_token()) + ")");
  }

  // A JSON number token ("-12.50e1", trailing spaces allowed) that is a
  // whole number within int64, exactly; false otherwise.
  static bool ExactInteger(std::string_view token, int64_t* result) {
    // Not JSON, not a number: `1.5.` read as 15, its points dropped (a bug
    // bash: an int64 sum 10x too large, nothing in the DLQ).
    if (!IsJsonNumber(token)) return false;
    token = TrimTrailingSpace(token);
    const bool negative = !token.empty() && token.front() == '-';
    if (negative) token.remove_prefix(1);
    std::string digits;  // the significand's digits, the point removed
    int64_t point = -1;  // digits before the point
    size_t i = 0;
    for (; i < token.size() && (std::isdigit(static_cast<unsigned char>(token[i])) || token[i] == '.'); ++i) {
      if (token[i] == '.') {
        point = static_cast<int64_t>(digits.size());
      } else {
        digits.push_back(token[i]);
      }
    }
    if (digits.empty()) return false;
    if (point < 0) point = static_cast<int64_t>(digits.size());
    int64_t exponent = 0;
    if (i < token.size()) {
      if (token[i] != 'e' && token[i] != 'E') return false;
      ++i;
      if (i < token.size() && token[i] == '+') ++i;
      auto [end, ec] = std::from_chars(token.data() + i, token.data() + token.size(), exponent);
      if (end != token.data() + token.size() || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        return false;
      }
      // 0e999 is 0 whatever the exponent (it was refused as a double).
      if (digits.find_first_not_of('0') == std::string::npos) {
        *result = 0;
        return true;
      }
      if (ec != std::errc() || exponent > 400 || exponent < -400) return false;
    }
    // The value is 0.<digits> x 10^(point + exponent): the digits after the
    // integer part must be zeros.
    const int64_t whole = point + exponent;  // digits of the integer part
    size_t first = digits.find_first_not_of('0');
    if (first == std::string::npos) {
      *result = 0;
      return true;
    }
    if (whole <= static_cast<int64_t>(first)) return false;  // |value| < 1 and not 0
    for (size_t k = static_cast<size_t>(std::max<int64_t>(whole, 0)); k < digits.size(); ++k) {
      if (digits[k] != '0') return false;  // a fraction
    }
    std::string integer = digits.substr(first, static_cast<size_t>(std::min<int64_t>(whole, digits.size())) - first);
    if (whole > static_cast<int64_t>(digits.size())) {
      if (whole - static_cast<int64_t>(digits.size()) > 19) return false;
      integer.append(static_cast<size_t>(whole - static_cast<int64_t>(digits.size())), '0');
    }
    if (integer.size() > 19) return false;
    if (negative) integer.insert(integer.begin(), '-');
    auto [end, ec] = std::from_chars(integer.data(), integer.data() + integer.size(), *result);
    return ec == std::errc() && end == integer.data() + integer.size();
  }

  // The string's bytes in the payload when it has no escapes, else unescaped
  // into the arena.
  bool ReadString(od::value& v, int slot, std::string_view* result) {
    std::string_view raw = v.raw_json_token();  // "..." plus any spaces after it
    std::string_view s;
    if (auto e = v.get_string().get(s)) return BadValue(slot, e, v);
    size_t end = raw.size();
    while (end > 0 && raw[end - 1] != '"') --end;
    if (end >= 2 && end - 2 == s.size()) {  // escapes always shorten a string: none here
      const size_t offset = static_cast<size_t>(raw.data() + 1 - input.data());
      *result = std::string_view(reinterpret_cast<const char*>(record->payload) + offset, s.size());
    } else {
      *result = std::string_view(arena.Copy(s), s.size());
    }
    return true;
  }

  bool ReadValue(od::value& v, int slot, int depth) {
    const FieldDecl& f = schema.field(slot);
    FieldValue& fv = out[slot];
    od::json_type t;
    // NaN, Infinity, +1, .5, True: no JSON value starts so; named at their
    // field like -Infinity or 01 (they read "improper structure", no path).
    if (auto e = v.type().get(t)) return BadValue(slot, e, v);
    if (t == od::json_type::null) {
      fv.present = false;
      was_null[static_cast<size_t>(slot)] = 1;
      return true;
    }
    // What was there, for a wrong type: a scalar with its token (a string
    // "12.5" for a double said only "found string"). The value is checked to
    // be JSON first: a later value of the key may replace it, and the record
    // must parse all the same.
    auto found = [&] {
      std::string what(JsonTypeName(t));
      if (t == od::json_type::string || t == od::json_type::number || t == od::json_type::boolean) {
        what += " (" + Excerpt(v.raw_json_token()) + ")";
      }
      return what;
    };
    auto WrongType = [&](int slot, std::string_view expected, std::string_view what) {
      if (!CheckUnread(v, depth)) return false;
      return this->WrongType(slot, expected, what);
    };
    switch (f.type) {
      case ValueType::kString: {
        if (t != od::json_type::string) return WrongType(slot, "string", found());
        std::string_view s;
        if (!ReadString(v, slot, &s)) return false;
        fv.str = s.data();
        fv.len = static_cast<uint32_t>(s.size());
        break;
      }
      case ValueType::kInt64:
        if (t != od::json_type::number) return WrongType(slot, "int64", found());
        if (!ReadInt(v, slot, "int64", &fv.i)) return false;
        break;
      case ValueType::kDouble:
        if (t != od::json_type::number) return WrongType(slot, "double", found());
        if (auto e = v.get_double().get(fv.d)) return BadValue(slot, e, v);
        break;
      case ValueType::kBool: {
        if (t != od::json_type::boolean) return WrongType(slot, "bool", found());
        bool b;
        if (auto e = v.get_bool().get(b)) return BadValue(slot, e, v);
        fv.i = b ? 1 : 0;
        break;
      }
      case ValueType::kTimestamp:
        if (f.timestamp == TimestampEncoding::kIso8601) {
          if (t != od::json_type::string) return WrongType(slot, "an ISO-8601 timestamp string", found());
          std::string_view s;
          if (auto e = v.get_string().get(s)) return BadValue(slot, e, v);
          auto ms = ParseIso8601Millis(s);
          if (!ms) return this->WrongType(slot, Iso8601Expectation(s), QuotedExcerpt(s));  // read: JSON
          fv.i = *ms;
        } else {
          const bool micros = f.timestamp == TimestampEncoding::kEpochMicros;
          const std::string_view expected = micros ? "an epoch_us integer" : "an epoch_ms integer";
          if (t != od::json_type::number) return WrongType(slot, expected, found());
          int64_t n;
          if (!ReadInt(v, slot, expected, &n)) return false;
          fv.i = micros ? (n >= 0 ? n / 1000 : -((-(n + 1)) / 1000) - 1) : n;
        }
        break;
    }
    fv.present = true;
    was_null[static_cast<size_t>(slot)] = 0;
    return true;
  }

  bool Decode(const RawRecord& r, FieldValue* o, DecodeError* err) {
    record = &r;
    out = o;
    error = err;
    const int n = schema.size();
    for (int i = 0; i < n; ++i) out[i] = FieldValue{{0}, nullptr, 0, false};
    std::memset(was_null.data(), 0, was_null.size());

    const size_t need = size_t{r.size} + simdjson::SIMDJSON_PADDING;
    if (input.size() < need) input.resize(std::max(need, input.size() * 2));
    if (r.size > 0) std::memcpy(input.data(), r.payload, r.size);
    od::document doc;
    if (auto e = parser.iterate(input.data(), r.size, input.size()).get(doc)) return Undecodable(e);
    od::object obj;
    if (auto e = doc.get_object().get(obj)) {
      od::json_type t;
      if (e == simdjson::INCORRECT_TYPE && !doc.type().get(t)) {
        // The type is only a look at the first byte ("trash" starts like
        // `true`): a record that is no JSON at all read as "a JSON bool" (a
        // bug bash). Said only of a whole, valid scalar.
        simdjson::dom::parser whole;
        simdjson::dom::element ignored;
        if (whole.parse(input.data(), r.size, /*realloc_if_needed=*/false).get(ignored)) {
          return Undecodable("not valid JSON (not an object, nor any JSON value)");
        }
        return Undecodable("not a JSON object: the record is a JSON " + std::string(JsonTypeName(t)));
      }
      return Undecodable(e);
    }
    wrong_types.clear();
    if (!VisitObject(obj, paths.root, 1)) return false;
    const char* rest;
    if (!doc.current_location().get(rest)) {
      const size_t left = static_cast<size_t>(input.data() + r.size - rest);
      return Undecodable("content after the JSON object: `" + Excerpt(std::string_view(rest, std::min<size_t>(left, 20))) +
                         "`");
    }

    if (!wrong_types.empty()) {
      *error = std::move(wrong_types.front().second);
      return false;
    }
    paths.FillKafkaFields(r, out);
    for (int i = 0; i < n; ++i) {
      const FieldDecl& f = schema.field(i);
      if (out[i].present || f.optional) continue;
      return Fail(DecodeError::Kind::kMissingField, i,
                  "required field `" + f.name + "` at `" + f.path + "` is " +
                      (was_null[static_cast<size_t>(i)] ? "null" : "absent"));
    }
    return true;
  }
};

Result<std::unique_ptr<JsonDecoder>> JsonDecoder::Create(const RecordSchema& schema) {
  KAPPA_RETURN_IF_ERROR(ValidateRecordSchema(schema));
  for (const FieldDecl& f : schema.fields()) {
    if (f.path.find_first_of("\"\\") != std::string::npos) {
      return Status::InvalidArgument("field `" + f.name + "`: JSON paths with `\"` or `\\` in a key are not supported (`" +
                                     f.path + "`)");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->schema = schema;
  impl->was_null.assign(static_cast<size_t>(schema.size()), 0);
  impl->paths = BuildFieldPaths(schema);
  return std::unique_ptr<JsonDecoder>(new JsonDecoder(std::move(impl)));
}

JsonDecoder::JsonDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JsonDecoder::~JsonDecoder() = default;

void JsonDecoder::BeginBatch() { impl_->arena.Reset(); }

bool JsonDecoder::Decode(const RawRecord& record, FieldValue* out, DecodeError* error) {
  return impl_->Decode(record, out, error);
}

size_t JsonDecoder::ScratchBytes() const {
  return impl_->input.capacity() + impl_->arena.Bytes() + impl_->parser.capacity() * 2;
}

}  // namespace kappa
