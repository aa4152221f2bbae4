// JSON input: a user's JSON records read into the declared fields' slots,
// whatever the key order, with every malformed record named by its path,
// strings valid for the batch, and no allocation per record.
#include "formats/json_decoder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "formats/schema_spec.h"

// Counts heap allocations, to show a steady stream of records costs none.
// (malloc/free underneath: GCC cannot see that new and delete are replaced.)
// Not under AddressSanitizer, whose own operator new the shared libraries
// (simdjson's) bind to.
static std::atomic<long> g_allocations{0};
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCountsAllocations = false;
#else
constexpr bool kCountsAllocations = true;
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#endif

namespace kappa {
namespace {

RawRecord Raw(const std::string& json) {
  RawRecord r;
  r.payload = reinterpret_cast<const uint8_t*>(json.data());
  r.size = static_cast<uint32_t>(json.size());
  return r;
}

std::unique_ptr<JsonDecoder> MakeDecoder(const RecordSchema& schema) {
  auto d = JsonDecoder::Create(schema);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(*d) : nullptr;
}

RecordSchema Schema(std::initializer_list<FieldDecl> fields) {
  RecordSchema s;
  for (const FieldDecl& f : fields) EXPECT_TRUE(s.Add(f).ok()) << f.name;
  return s;
}

FieldDecl Ts(std::string name, std::string path, TimestampEncoding enc, bool optional = false) {
  FieldDecl f{std::move(name), ValueType::kTimestamp, std::move(path)};
  f.timestamp = enc;
  f.optional = optional;
  return f;
}

FieldDecl Opt(std::string name, ValueType type, std::string path = "") {
  FieldDecl f{std::move(name), type, std::move(path)};
  f.optional = true;
  return f;
}

// Decodes one record that must fail; returns its error.
DecodeError ErrorFor(JsonDecoder& d, int slots, const std::string& json) {
  std::vector<FieldValue> out(static_cast<size_t>(slots));
  DecodeError e;
  EXPECT_FALSE(d.Decode(Raw(json), out.data(), &e)) << json;
  return e;
}

TEST(JsonDecoderTest, ReadsEveryTypeAndTimestampEncoding) {
  RecordSchema s = Schema({{"txn_id", ValueType::kString, ""},
                           {"cents", ValueType::kInt64, ""},
                           {"amount", ValueType::kDouble, ""},
                           {"whole", ValueType::kDouble, ""},
                           {"flagged", ValueType::kBool, ""},
                           Ts("ms", "", TimestampEncoding::kEpochMillis),
                           Ts("us", "", TimestampEncoding::kEpochMicros),
                           Ts("neg_us", "", TimestampEncoding::kEpochMicros),
                           Ts("iso", "", TimestampEncoding::kIso8601),
                           {"big", ValueType::kInt64, ""},
                           {"two", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  const std::string json =
      R"({"txn_id":"t-1","cents":-1234,"amount":12.5,"whole":7,"flagged":true,"ms":1767225600123,)"
      R"("us":1767225600123999,"neg_us":-1,"iso":"2026-01-01T01:00:00.250+01:00",)"
      R"("big":9223372036854775807,"two":2.0})";
  std::vector<FieldValue> out(11);
  DecodeError e;
  ASSERT_TRUE(d->Decode(Raw(json), out.data(), &e)) << e.message;
  for (const FieldValue& v : out) EXPECT_TRUE(v.present);
  EXPECT_EQ(out[0].text(), "t-1");
  EXPECT_EQ(out[1].i, -1234);
  EXPECT_EQ(out[2].d, 12.5);
  EXPECT_EQ(out[3].d, 7.0) << "an integer is a fine double";
  EXPECT_EQ(out[4].i, 1);
  EXPECT_EQ(out[5].i, 1767225600123);
  EXPECT_EQ(out[6].i, 1767225600123) << "micros truncated to ms";
  EXPECT_EQ(out[7].i, -1) << "micros before 1970 round toward negative infinity";
  EXPECT_EQ(out[8].i, 1767225600250);
  EXPECT_EQ(out[9].i, INT64_MAX);
  EXPECT_EQ(out[10].i, 2) << "a number without a fraction is an integer";
}

TEST(JsonDecoderTest, NestedPathsThreeDeepInAnyKeyOrderSkippingTheRest) {
  RecordSchema s = Schema({{"country", ValueType::kString, "user.profile.country"},
                           {"uid", ValueType::kString, "user.id"},
                           {"cents", ValueType::kInt64, "amount.cents"},
                           {"value", ValueType::kDouble, "amount.value"},
                           {"top", ValueType::kBool, ""}});
  auto d = MakeDecoder(s);
  const std::vector<std::string> docs = {
      R"({"user":{"id":"u1","profile":{"country":"NL","age":40}},"amount":{"cents":250,"value":2.5},"top":false})",
      R"({"top":false,"amount":{"value":2.5,"cents":250},"user":{"profile":{"age":40,"country":"NL"},"id":"u1"}})",
      // Undeclared values of every kind, including objects and arrays that
      // look like the declared ones, are skipped.
      R"({"noise":[{"user":{"id":"x"}},[1,2,{"a":null}]],"profile":{"country":"XX"},)"
      R"("amount":{"currency":"EUR","cents":250,"nested":{"cents":1},"value":2.5},)"
      R"("user":{"name":"n","id":"u1","profile":{"country":"NL","tags":["a","b"]}},"id":"top-level id",)"
      R"("top":false,"tail":{"deep":{"deeper":{"deepest":[]}}}})",
  };
  for (const std::string& json : docs) {
    std::vector<FieldValue> out(5);
    DecodeError e;
    ASSERT_TRUE(d->Decode(Raw(json), out.data(), &e)) << e.message << "\n" << json;
    EXPECT_EQ(out[0].text(), "NL") << json;
    EXPECT_EQ(out[1].text(), "u1") << json;
    EXPECT_EQ(out[2].i, 250) << json;
    EXPECT_EQ(out[3].d, 2.5) << json;
    EXPECT_TRUE(out[4].present);
    EXPECT_EQ(out[4].i, 0) << json;
  }
}

// A member name may spell its letters as escapes ("i\u0064" is `id`): JSON
// says it is the same name, and Python's json.dumps(ensure_ascii=True) writes
// every non-ASCII name that way.
TEST(JsonDecoderTest, MemberNamesWithEscapesMatchTheirDeclaredPath) {
  RecordSchema s = Schema({{"id", ValueType::kString, ""},
                           {"city", ValueType::kString, "adr.stra\xc3\x9f" "e"},
                           {"n", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  const std::vector<std::string> docs = {
      R"({"i\u0064":"u1","adr":{"stra\u00dfe":"Delft"},"\u006e":3})",
      R"({"\"id\"":"not this","id":"u1","a\u0064r":{"stra)" "\xc3\x9f" R"(e":"Delft"},"n":3})",
      R"({"id":"u1","\u0061dr":{"stra\u00DFe":"Delft","x\\":1},"n\u0000":9,"n":3})",
  };
  for (const std::string& json : docs) {
    std::vector<FieldValue> out(3);
    DecodeError e;
    ASSERT_TRUE(d->Decode(Raw(json), out.data(), &e)) << e.message << "\n" << json;
    EXPECT_EQ(out[0].text(), "u1") << json;
    EXPECT_EQ(out[1].text(), "Delft") << json;
    EXPECT_EQ(out[2].i, 3) << json;
  }
  // An escaped name that is not a declared one is still skipped, and a
  // declared field absent under any spelling is still missing.
  DecodeError e = ErrorFor(*d, 3, R"({"i\u0065":"u1","adr":{"stra\u00dfe":"Delft"},"n":3})");
  EXPECT_NE(e.message.find("`id`"), std::string::npos) << e.message;
}

TEST(JsonDecoderTest, StringsStayValidUntilBeginBatch) {
  RecordSchema s = Schema({{"s", ValueType::kString, "a.s"}});
  auto d = MakeDecoder(s);
  // Payloads stay alive for the batch (the RecordDecoder contract).
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) {
    payloads.push_back(R"({"a":{"s":"rec )" + std::to_string(i) + R"( \"q\" \\ \n \u00e9 \ud83d\ude00 \/"}})");
  }
  payloads.push_back(R"({"a":{"s":"plain"}})");
  payloads.push_back(R"({"a":{"s":"x\ty"}, "b": 1})");
  d->BeginBatch();
  std::vector<FieldValue> out(payloads.size());
  DecodeError e;
  for (size_t i = 0; i < payloads.size(); ++i) {
    ASSERT_TRUE(d->Decode(Raw(payloads[i]), &out[i], &e)) << e.message;
  }
  for (int i = 0; i < 3000; ++i) {
    ASSERT_EQ(out[i].text(), "rec " + std::to_string(i) + " \"q\" \\ \n \xC3\xA9 \xF0\x9F\x98\x80 /") << i;
  }
  EXPECT_EQ(out[3000].text(), "plain");
  const std::string& plain = payloads[3000];
  EXPECT_TRUE(out[3000].str > plain.data() && out[3000].str < plain.data() + plain.size())
      << "a string without escapes is the payload's own bytes, not a copy";
  EXPECT_EQ(out[3001].text(), "x\ty");

  // A new batch reuses the arena: the first escaped string of this batch
  // lands where the previous batch's first one was.
  const char* first = out[0].str;
  d->BeginBatch();
  FieldValue again;
  ASSERT_TRUE(d->Decode(Raw(payloads[5]), &again, &e)) << e.message;
  EXPECT_EQ(again.str, first);
  EXPECT_EQ(again.text(), "rec 5 \"q\" \\ \n \xC3\xA9 \xF0\x9F\x98\x80 /");

  // A long escaped string.
  std::string big(100000, 'z');
  const std::string json = R"({"a":{"s":"\")" + big + R"("}})";
  ASSERT_TRUE(d->Decode(Raw(json), &again, &e)) << e.message;
  EXPECT_EQ(again.text(), "\"" + big);
}

TEST(JsonDecoderTest, RecordsThatAreNotJsonObjectsAreUndecodable) {
  RecordSchema s = Schema({{"a", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  for (const char* bad : {"", "hello", "{\"a\":", "{\"a\":1", "{\"a\" 1}", "{\"a\":1,}", "[1,2]", "\"x\"", "5",
                          "null", "{\"a\":1} {\"a\":2}", "{\"a\":1}]", "\xff\xfe{}"}) {
    DecodeError e = ErrorFor(*d, 1, bad);
    EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << bad << ": " << e.message;
    EXPECT_EQ(e.path, "") << bad;
    EXPECT_FALSE(e.message.empty()) << bad;
  }
  EXPECT_NE(ErrorFor(*d, 1, "[1,2]").message.find("not a JSON object: the record is a JSON array"),
            std::string::npos);
  EXPECT_NE(ErrorFor(*d, 1, "null").message.find("the record is a JSON null"), std::string::npos);
  // Text that only starts like a scalar is not called one (a bug bash:
  // "not json" read as "a JSON null", "trash" as "a JSON bool").
  for (const char* text : {"not json", "trash", "123abc", "nulls"}) {
    EXPECT_NE(ErrorFor(*d, 1, text).message.find("not valid JSON"), std::string::npos)
        << text << ": " << ErrorFor(*d, 1, text).message;
  }
  EXPECT_NE(ErrorFor(*d, 1, "{\"a\":1} {\"a\":2}").message.find("content after the JSON object"),
            std::string::npos);
  EXPECT_NE(ErrorFor(*d, 1, "{\"a\":1} {\"a\":2}").message.find("`{\"a\":2}`"), std::string::npos)
      << ErrorFor(*d, 1, "{\"a\":1} {\"a\":2}").message;
  // What a bug bash's producers sent, named as such: content after the
  // object, a C string's NUL, a byte-order mark. simdjson says "ended early"
  // for the first two and "not the requested type" for the third.
  const std::pair<std::string, std::string> named[] = {
      {"{\"a\":1} x", "does not end with the object's `}` (content after the JSON object, or the record was cut)"},
      {"{\"a\":1}]", "it ends `{\"a\":1}]`"},
      {std::string("{\"a\":1}\0", 8), "ends with a NUL byte after the JSON"},
      {"\xEF\xBB\xBF{\"a\":1}", "starts with a UTF-8 byte-order mark"},
      {"{\"a\":1e400}", "beyond a double's range"},
      // A FlatBuffers Transaction (size, "KTX1", a NUL at its end) in a
      // topic read as JSON was called a C string's terminator (a bug bash).
      {std::string("\x1c\0\0\0KTX1\x0c\0\x10\0\0\0", 14), "not JSON: the record is binary (it starts with bytes "
                                                           "1c 00 00 00 4b 54 58 31): a record of another format"},
  };
  for (const auto& [bad, message] : named) {
    DecodeError named_error = ErrorFor(*d, 1, bad);
    EXPECT_EQ(named_error.kind, DecodeError::Kind::kUndecodable) << bad;
    EXPECT_NE(named_error.message.find(message), std::string::npos) << bad << ": " << named_error.message;
  }
  // Whitespace around the object is fine (JSON-lines producers end with \n).
  FieldValue v;
  DecodeError e;
  EXPECT_TRUE(d->Decode(Raw(" \t{\"a\": 7 }\r\n\n"), &v, &e)) << e.message;
  EXPECT_EQ(v.i, 7);
}

// A field the job does not read is still part of the record: a value that
// is no JSON there makes the record undecodable (simdjson's On-Demand
// skipped it unparsed, and `"status":approved` passed to the sink: a bug
// bash). Valid values of every kind, nested, pass; an integer beyond 64
// bits is valid JSON.
TEST(JsonDecoderTest, InvalidJsonInAFieldTheJobDoesNotReadIsUndecodable) {
  RecordSchema s = Schema({{"a", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  for (const char* bad : {R"({"a":1,"status":approved})", R"({"a":1,"x":tru})", R"({"a":1,"x":{"b" 1}})",
                          R"({"a":1,"x":01})", R"({"a":1,"x":NaN})", R"({"a":1,"x":"\x"})", R"({"a":1,"x":1e99x})",
                          R"({"a":1,"x":[1,2,{"b":}]})", R"({"x":nul,"a":1})", R"({"x":[1,-],"a":1})"}) {
    DecodeError e = ErrorFor(*d, 1, bad);
    EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << bad << ": " << e.message;
    EXPECT_NE(e.message.find("not valid JSON"), std::string::npos) << bad << ": " << e.message;
  }
  for (const char* good :
       {R"({"a":1,"x":"approved","y":[1,2.5,-3e2,true,false,null,{"z":"q\u00e9\n"}],"w":{}})",
        R"({"x":123456789012345678901234567890,"a":1})", R"({"x":-0,"a":1,"y":[]})", R"({"x\u0041":1,"a":1})",
        // JSON beyond a double's range: valid, and not read (it was a dead
        // letter "not valid JSON", a bug bash).
        R"({"a":1,"x":1e999,"y":[-1.5E-999,123456789012345678901234567890.5]})"}) {
    std::vector<FieldValue> out(1);
    DecodeError e;
    EXPECT_TRUE(d->Decode(Raw(good), out.data(), &e)) << good << ": " << e.message;
    EXPECT_EQ(out[0].i, 1) << good;
  }
}

TEST(JsonDecoderTest, MissingFieldsNameTheirPath) {
  RecordSchema s = Schema({{"uid", ValueType::kString, "user.id"},
                           {"cents", ValueType::kInt64, "amount.cents"},
                           {"deep", ValueType::kString, "a.b.c"}});
  auto d = MakeDecoder(s);
  const std::string rest = R"("amount":{"cents":1},"a":{"b":{"c":"x"}})";
  struct Case {
    std::string json, path, word;
  };
  for (const Case& c : std::vector<Case>{
           {"{" + rest + "}", "user.id", "absent"},
           {R"({"user":{},)" + rest + "}", "user.id", "absent"},
           {R"({"user":{"id":null},)" + rest + "}", "user.id", "null"},
           {R"({"user":null,)" + rest + "}", "user.id", "absent"},
           {R"({"user":{"id":"u"},"amount":{"cents":1},"a":{"b":{}}})", "a.b.c", "absent"},
           {R"({"user":{"id":"u"},"amount":{"cents":1},"a":{"c":"misplaced"}})", "a.b.c", "absent"},
           {R"({"user":{"id":"u"},"amount":{"CENTS":1},"a":{"b":{"c":"x"}}})", "amount.cents", "absent"},
       }) {
    DecodeError e = ErrorFor(*d, 3, c.json);
    EXPECT_EQ(e.kind, DecodeError::Kind::kMissingField) << c.json << ": " << e.message;
    EXPECT_EQ(e.path, c.path) << c.json;
    EXPECT_NE(e.message.find(c.word), std::string::npos) << e.message;
  }
}

// A scalar of the wrong type is shown with its value: the DLQ message of
// "12.5" (a string) in a double field said only "found string" (a bug bash).
TEST(JsonDecoderTest, WrongTypesNameTheirPathAndWhatWasFound) {
  RecordSchema s = Schema({{"n", ValueType::kInt64, "v.n"},
                           {"d", ValueType::kDouble, "v.d"},
                           {"b", ValueType::kBool, "v.b"},
                           {"s", ValueType::kString, "v.s"},
                           Ts("ms", "v.ms", TimestampEncoding::kEpochMillis),
                           Ts("iso", "v.iso", TimestampEncoding::kIso8601),
                           {"deep", ValueType::kString, "x.y.z"}});
  auto d = MakeDecoder(s);
  auto doc = [](const std::string& field, const std::string& value) {
    std::string v = R"("n":1,"d":1.5,"b":true,"s":"s","ms":1,"iso":"2026-01-01T00:00:00Z")";
    const std::string key = "\"" + field + "\":";
    const size_t at = v.find(key);
    if (at != std::string::npos) {
      const size_t end = v.find(',', at) == std::string::npos ? v.size() : v.find(',', at);
      v.replace(at, end - at, key + value);
    }
    return R"({"x":{"y":{"z":"z"}},"v":{)" + v + "}}";
  };
  {
    std::vector<FieldValue> out(7);
    DecodeError e;
    ASSERT_TRUE(d->Decode(Raw(doc("", "")), out.data(), &e)) << e.message << " in " << doc("", "");
  }
  struct Case {
    std::string json, path, message;
  };
  for (const Case& c : std::vector<Case>{
           {doc("n", R"("12")"), "v.n", R"(expected int64, found string ("12"))"},
           {doc("n", "1.5"), "v.n", "expected int64, found double (1.5)"},
           {doc("n", "1e300"), "v.n", "expected int64, found double (1e300)"},
           {doc("n", "18446744073709551615"), "v.n", "expected int64, found an integer beyond int64"},
           {doc("n", "true"), "v.n", "expected int64, found bool (true)"},
           {doc("n", "-9223372036854775809"), "v.n", "expected int64, found an integer beyond int64"},
           {doc("n", "[1]"), "v.n", "expected int64, found array"},
           {doc("d", R"("1.5")"), "v.d", R"(expected double, found string ("1.5"))"},
           {doc("d", "{}"), "v.d", "expected double, found object"},
           {doc("b", "1"), "v.b", "expected bool, found number (1)"},
           {doc("s", "12"), "v.s", "expected string, found number (12)"},
           {doc("ms", R"("2026-01-01T00:00:00Z")"), "v.ms", R"(expected an epoch_ms integer, found string ("2026-01-01T00:00:00Z"))"},
           {doc("ms", "1.25"), "v.ms", "expected an epoch_ms integer, found double (1.25)"},
           {doc("iso", "1767225600000"), "v.iso", "expected an ISO-8601 timestamp string, found number (1767225600000)"},
           {doc("iso", R"("yesterday")"), "v.iso", R"(expected an ISO-8601 timestamp, found "yesterday")"},
           // Quoted as it is: a trailing space or tab, trimmed, left a
           // valid-looking timestamp in the message (a bug bash).
           {doc("iso", R"("2026-01-01T00:00:00Z ")"), "v.iso",
            R"(expected an ISO-8601 timestamp, found "2026-01-01T00:00:00Z ")"},
           {doc("iso", R"("2026-01-01T00:00:00Z\t")"), "v.iso",
            R"(expected an ISO-8601 timestamp, found "2026-01-01T00:00:00Z\t")"},
           // A local time says what it lacks (a bug bash: the message did
           // not say the zone was missing).
           {doc("iso", R"("2026-01-01T00:17:09.202")"), "v.iso",
            R"(expected an ISO-8601 timestamp with its zone (Z or an offset such as +01:00; a local time is ambiguous), found "2026-01-01T00:17:09.202")"},
           {R"({"x":{"y":5},"v":{}})", "x.y.z", "expected an object at `x.y` (holding `x.y.z`), found number"},
           {R"({"x":"str","v":{}})", "x.y.z", "expected an object at `x` (holding `x.y.z`), found string"},
       }) {
    DecodeError e = ErrorFor(*d, 7, c.json);
    EXPECT_EQ(e.kind, DecodeError::Kind::kWrongType) << c.json << ": " << e.message;
    EXPECT_EQ(e.path, c.path) << c.json;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << e.message;
  }
  // A declared value that is not valid JSON: undecodable, at its path.
  for (const Case& c : std::vector<Case>{{doc("n", "01"), "v.n", "(a number, or one beyond a double's range (about 1.8e308)): 01"},
                                         {doc("b", "tru"), "v.b", "(a value): tru"},
                                         // No JSON value starts so: these said "improper structure" and
                                         // named no field (a bug bash).
                                         {doc("d", "NaN"), "v.d", "(a value): NaN"},
                                         {doc("d", "Infinity"), "v.d", "(a value): Infinity"},
                                         {doc("n", "+1"), "v.n", "(a value): +1"},
                                         {doc("d", ".5"), "v.d", "(a value): .5"},
                                         {doc("b", "True"), "v.b", "(a value): True"}}) {
    DecodeError e = ErrorFor(*d, 7, c.json);
    EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << c.json << ": " << e.message;
    EXPECT_EQ(e.path, c.path) << c.json;
    EXPECT_NE(e.message.find("not valid JSON"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << e.message;
  }
}

// A number JSON allows but a double cannot hold is said to be that, at its
// field, not "not valid JSON".
TEST(JsonDecoderTest, ADeclaredNumberBeyondADoubleSaysSo) {
  RecordSchema s = Schema({{"d", ValueType::kDouble, "v.d"}, {"n", ValueType::kInt64, "v.n"}});
  auto d = MakeDecoder(s);
  for (const auto& [json, path] : std::vector<std::pair<std::string, std::string>>{
           {R"({"v":{"d":1e999,"n":1}})", "v.d"}, {R"({"v":{"d":1,"n":-2E+400}})", "v.n"}}) {
    DecodeError e = ErrorFor(*d, 2, json);
    EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << json << ": " << e.message;
    EXPECT_EQ(e.path, path) << json;
    EXPECT_NE(e.message.find("a number beyond a double's range (about 1.8e308): "), std::string::npos) << e.message;
    EXPECT_EQ(e.message.find("not valid JSON"), std::string::npos) << e.message;
  }
}

// Nesting the job skips is checked to simdjson's depth of 1024: 50,000
// nested arrays in an unread field crashed the job (SIGSEGV, the stack) on
// every restart (a bug bash).
TEST(JsonDecoderTest, DeepNestingInAFieldTheJobDoesNotReadIsADeadLetterNotACrash) {
  RecordSchema s = Schema({{"a", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  for (const auto& [open, close] : std::vector<std::pair<std::string, std::string>>{{"[", "]"}, {R"({"k":)", "}"}}) {
    for (int levels : {50000, 1000000}) {
      std::string json = R"({"a":1,"deep":)";
      for (int i = 0; i < levels; ++i) json += open;
      json += "1";
      for (int i = 0; i < levels; ++i) json += close;
      json += "}";
      DecodeError e = ErrorFor(*d, 1, json);
      EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << open << " x " << levels;
      EXPECT_NE(e.message.find("nested deeper than 1022 levels"), std::string::npos) << e.message;
    }
    // At the limit: the record's object and 1,021 levels below it are read
    // (1,023 failed simdjson's depth assertion in the sanitized build); one
    // more is a dead letter.
    for (int levels : {1021, 1022}) {
      std::string json = R"({"a":7,"deep":)";
      for (int i = 0; i < levels; ++i) json += open;
      json += "1";
      for (int i = 0; i < levels; ++i) json += close;
      json += "}";
      std::vector<FieldValue> out(1);
      DecodeError e;
      const bool read = d->Decode(Raw(json), out.data(), &e);
      EXPECT_EQ(read, levels == 1021) << open << " x " << levels << ": " << e.message;
      if (read) {
        EXPECT_EQ(out[0].i, 7);
      }
    }
  }
}

// A key given twice: the last one wins, an object's as a value's. A second
// `"amount":null` or `"amount":{"x":1}` kept the first one's amount.cents
// (a bug bash), where Python and Jackson see it absent.
TEST(JsonDecoderTest, ARepeatedKeyTakesItsLastValueObjectsToo) {
  RecordSchema s = Schema({{"cents", ValueType::kInt64, "amount.cents"}, Opt("cur", ValueType::kString, "amount.cur")});
  auto d = MakeDecoder(s);
  struct Case {
    std::string json;
    int64_t cents;  // -1: a dead letter, amount.cents absent
  };
  for (const Case& c : std::vector<Case>{
           {R"({"amount":{"cents":1,"cents":2}})", 2},
           {R"({"amount":{"cents":1},"x":0,"amount":{"cents":3}})", 3},
           {R"({"amount":{"cents":1,"cur":"EUR"},"amount":null})", -1},
           {R"({"amount":{"cents":1,"cur":"EUR"},"amount":{"x":1}})", -1},
           {R"({"amount":null,"amount":{"cents":4}})", 4}}) {
    std::vector<FieldValue> out(2);
    DecodeError e;
    const bool ok = d->Decode(Raw(c.json), out.data(), &e);
    if (c.cents < 0) {
      EXPECT_FALSE(ok) << c.json;
      EXPECT_EQ(e.kind, DecodeError::Kind::kMissingField) << c.json << ": " << e.message;
      EXPECT_EQ(e.path, "amount.cents") << c.json;
    } else {
      ASSERT_TRUE(ok) << c.json << ": " << e.message;
      EXPECT_EQ(out[0].i, c.cents) << c.json;
      EXPECT_FALSE(out[1].present) << c.json << ": the first object's cur survived";
    }
  }
  {
    std::vector<FieldValue> out(2);
    DecodeError e;
    ASSERT_TRUE(d->Decode(Raw(R"({"amount":{"cents":5,"cur":"EUR"},"amount":{"cents":6}})"), out.data(), &e));
    EXPECT_EQ(out[0].i, 6);
    EXPECT_FALSE(out[1].present) << "the first amount's cur outlived it";
  }
}

// A whole number written with a fraction or an exponent is read from its
// digits: 9007199254740993.0 became ...992 through the double (a bug bash;
// no DLQ entry), while the same digits without ".0" were exact.
TEST(JsonDecoderTest, AWholeNumberWithAFractionOrExponentIsExactInAnInt64Field) {
  RecordSchema s = Schema({{"n", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  for (const auto& [token, want] : std::vector<std::pair<std::string, int64_t>>{
           {"9007199254740993.0", 9007199254740993},
           {"-9007199254740993.000", -9007199254740993},
           {"9223372036854775807.0", INT64_MAX},
           {"-9223372036854775808.0", INT64_MIN},
           {"1e3", 1000},
           {"1.5e1", 15},
           {"0.0001e4", 1},
           {"90071992547409930e-1", 9007199254740993},
           {"-0.0", 0},
           {"0e999", 0},  // refused as a double (a bug bash)
           {"-0.000E-99999999999999999999", 0},
           {"5.0 ", 5}}) {
    std::vector<FieldValue> out(1);
    DecodeError e;
    const std::string json = R"({"n":)" + token + "}";
    ASSERT_TRUE(d->Decode(Raw(json), out.data(), &e)) << json << ": " << e.message;
    EXPECT_EQ(out[0].i, want) << json;
  }
  for (const std::string token : {"9223372036854775808.0", "123e-1", "0.5", "5e-3", "1e19", "1.0000000000000000001"}) {
    DecodeError e = ErrorFor(*d, 1, R"({"n":)" + token + "}");
    EXPECT_EQ(e.kind, DecodeError::Kind::kWrongType) << token << ": " << e.message;
    EXPECT_NE(e.message.find("expected int64, found double (" + token + ")"), std::string::npos) << e.message;
  }
}

// A bug bash: a number with a stray point, which is not JSON, was read in
// an int64 field with its points dropped: `1.5.` as 15, `12.34.` as 1234,
// an epoch_ms `1767225601.000.` as 1767225601000; nothing in the DLQ.
TEST(JsonDecoderTest, ANumberWithAStrayPointIsNotJsonInAnIntegerField) {
  RecordSchema s = Schema({{"n", ValueType::kInt64, ""}, Ts("t", "", TimestampEncoding::kEpochMillis)});
  auto d = MakeDecoder(s);
  for (const std::string token :
       {"1.5.", "12.34.", "0.5.", "1.0.", "-2.5.", "1.5.5.", "1.0.0.0", "1.5.E1", "1.", "-1.", "0.", "1.e2"}) {
    for (const bool in_time : {false, true}) {
      const std::string json = in_time ? R"({"n":1,"t":)" + token + "}" : R"({"n":)" + token + R"(,"t":1})";
      DecodeError e = ErrorFor(*d, 2, json);
      EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << json << ": " << e.message;
      EXPECT_NE(e.message.find("not valid JSON"), std::string::npos) << json << ": " << e.message;
      EXPECT_EQ(e.path, in_time ? "t" : "n") << json;
    }
  }
  std::vector<FieldValue> out(2);
  DecodeError e;
  ASSERT_TRUE(d->Decode(Raw(R"({"n":12.0,"t":1767225601.000})"), out.data(), &e)) << e.message;
  EXPECT_EQ(out[0].i, 12);
  EXPECT_EQ(out[1].i, 1767225601);
}

// A bug bash: a key given twice took its last value only when the first
// had a type the field accepts; `"user":"x","user":{"id":"a1"}` went to the
// DLQ for the value the second one replaces. A wrong type counts only if no
// later value of the key (or of an object holding it) replaces it; the
// replaced value must still be JSON.
TEST(JsonDecoderTest, AWrongTypeALaterValueOfTheKeyReplacesDoesNotCount) {
  RecordSchema s = Schema({{"user", ValueType::kString, "user.id"}, {"cents", ValueType::kInt64, "amount.cents"}});
  auto d = MakeDecoder(s);
  struct Case {
    std::string json;
    std::string user;
    int64_t cents;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"user":"x","user":{"id":"a1"},"amount":{"cents":1}})", "a1", 1},
           {R"({"user":null,"user":{"id":"a2"},"amount":{"cents":2}})", "a2", 2},
           {R"({"user":{"id":"a3"},"amount":7,"amount":{"cents":3}})", "a3", 3},
           {R"({"user":{"id":"a4"},"amount":{"cents":"x"},"amount":{"cents":4}})", "a4", 4},
           {R"({"user":{"id":"a5"},"amount":{"cents":"x","cents":5}})", "a5", 5},
           {R"({"user":{"id":[1,{"a":2}]},"user":{"id":"a6"},"amount":{"cents":1.5,"cents":6}})", "a6", 6}}) {
    std::vector<FieldValue> out(2);
    DecodeError e;
    ASSERT_TRUE(d->Decode(Raw(c.json), out.data(), &e)) << c.json << ": " << e.message;
    EXPECT_EQ(std::string(out[0].str, out[0].len), c.user) << c.json;
    EXPECT_EQ(out[1].i, c.cents) << c.json;
  }
  // The last value of the wrong type, or a replaced one that is not JSON.
  DecodeError e = ErrorFor(*d, 2, R"({"user":{"id":"a"},"user":{"id":7},"amount":{"cents":1}})");
  EXPECT_EQ(e.kind, DecodeError::Kind::kWrongType) << e.message;
  EXPECT_NE(e.message.find("expected string, found number (7)"), std::string::npos) << e.message;
  e = ErrorFor(*d, 2, R"({"user":{"id":"a"},"amount":{"cents":1},"amount":"x"})");
  EXPECT_EQ(e.kind, DecodeError::Kind::kWrongType) << e.message;
  EXPECT_NE(e.message.find("expected an object at `amount`"), std::string::npos) << e.message;
  e = ErrorFor(*d, 2, R"({"user":"bad \q escape","user":{"id":"a"},"amount":{"cents":1}})");
  EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << e.message;
  e = ErrorFor(*d, 2, R"({"user":{"id":"a"},"amount":{"cents":tru},"amount":{"cents":1}})");
  EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << e.message;
}

TEST(JsonDecoderTest, OptionalFieldsAbsentOrNullHaveNoValue) {
  RecordSchema s = Schema({{"id", ValueType::kString, ""},
                           Opt("flagged", ValueType::kBool),
                           Opt("note", ValueType::kString, "meta.note"),
                           Ts("seen", "meta.seen", TimestampEncoding::kIso8601, true)});
  auto d = MakeDecoder(s);
  std::vector<FieldValue> out(4);
  DecodeError e;
  ASSERT_TRUE(d->Decode(Raw(R"({"id":"a"})"), out.data(), &e)) << e.message;
  EXPECT_TRUE(out[0].present);
  EXPECT_FALSE(out[1].present);
  EXPECT_FALSE(out[2].present);
  EXPECT_FALSE(out[3].present);
  ASSERT_TRUE(d->Decode(Raw(R"({"flagged":null,"meta":null,"id":"a"})"), out.data(), &e)) << e.message;
  EXPECT_FALSE(out[1].present);
  EXPECT_FALSE(out[2].present);
  // The payload outlives the batch's strings (the RecordDecoder contract).
  const std::string full = R"({"meta":{"seen":"2026-01-01T00:00:00Z","note":"hi"},"flagged":false,"id":"a"})";
  ASSERT_TRUE(d->Decode(Raw(full), out.data(), &e)) << e.message;
  EXPECT_TRUE(out[1].present);
  EXPECT_EQ(out[1].i, 0);
  EXPECT_EQ(out[2].text(), "hi");
  EXPECT_EQ(out[3].i, 1767225600000);
  // Optional means may be absent, not may be anything.
  DecodeError wrong = ErrorFor(*d, 4, R"({"id":"a","flagged":"yes"})");
  EXPECT_EQ(wrong.kind, DecodeError::Kind::kWrongType);
  EXPECT_EQ(wrong.path, "flagged");
}

TEST(JsonDecoderTest, KafkaKeyAndTimestampComeFromTheRecord) {
  RecordSchema s = Schema({{"key", ValueType::kString, "kafka.key"},
                           Ts("kts", "kafka.timestamp", TimestampEncoding::kEpochMillis),
                           {"kts_n", ValueType::kInt64, "kafka.timestamp"},
                           {"v", ValueType::kInt64, ""}});
  auto d = MakeDecoder(s);
  const std::string json = R"({"v":3,"kafka":{"key":"not this one"}})";
  const std::string key = "user-42";
  RawRecord r = Raw(json);
  r.key = reinterpret_cast<const uint8_t*>(key.data());
  r.key_size = static_cast<uint32_t>(key.size());
  r.timestamp_ms = 1767225600123;
  std::vector<FieldValue> out(4);
  DecodeError e;
  ASSERT_TRUE(d->Decode(r, out.data(), &e)) << e.message;
  EXPECT_EQ(out[0].text(), "user-42");
  EXPECT_EQ(out[1].i, 1767225600123);
  EXPECT_EQ(out[2].i, 1767225600123);
  EXPECT_EQ(out[3].i, 3);

  // A record without a key lacks the field, unless it is optional.
  r.key = nullptr;
  r.key_size = 0;
  ASSERT_FALSE(d->Decode(r, out.data(), &e));
  EXPECT_EQ(e.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(e.path, "kafka.key");
  RecordSchema opt = Schema({Opt("key", ValueType::kString, "kafka.key")});
  auto d2 = MakeDecoder(opt);
  ASSERT_TRUE(d2->Decode(r, out.data(), &e)) << e.message;
  EXPECT_FALSE(out[0].present);

  RecordSchema bad = Schema({{"key", ValueType::kInt64, "kafka.key"}});
  EXPECT_FALSE(JsonDecoder::Create(bad).ok()) << "the key is a string";
}

// The generated workload: documents with nested fields in shuffled order,
// escaped strings, optional fields and undeclared noise, each with the
// values the decoder must find.
struct Generated {
  std::vector<std::string> json;
  std::vector<int64_t> id, cents, ts;
  std::vector<std::string> user, country;
  std::vector<double> amount;
  std::vector<int> flagged;  // -1 absent
};

RecordSchema GeneratedSchema() {
  return Schema({{"id", ValueType::kInt64, ""},
                 {"user_id", ValueType::kString, "user.id"},
                 {"country", ValueType::kString, "user.profile.country"},
                 {"amount", ValueType::kDouble, "payment.amount.value"},
                 {"cents", ValueType::kInt64, "payment.amount.cents"},
                 Opt("flagged", ValueType::kBool),
                 Ts("event_time", "ts", TimestampEncoding::kEpochMillis)});
}

Generated Generate(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  // (as written in JSON, as decoded)
  const std::vector<std::pair<std::string, std::string>> pieces = {
      {"a", "a"},   {"Zq", "Zq"}, {"\\\"", "\""}, {"\\\\", "\\"},     {"\\n", "\n"}, {"\\u00e9", "\xC3\xA9"},
      {"\xC3\xA9", "\xC3\xA9"}, {"\\/", "/"}, {"\\ud83d\\ude00", "\xF0\x9F\x98\x80"}, {"7", "7"}};
  auto text = [&](int len, std::string* expect) {
    std::string json;
    for (int i = 0; i < len; ++i) {
      const auto& p = pieces[rng() % pieces.size()];
      json += p.first;
      *expect += p.second;
    }
    return json;
  };
  Generated g;
  for (int i = 0; i < n; ++i) {
    std::string user, country;
    const std::string user_json = text(4 + static_cast<int>(rng() % 12), &user);
    const std::string country_json = text(2, &country);
    const int64_t cents = static_cast<int64_t>(rng() % 10000000) - 5000000;
    const double amount = static_cast<double>(cents) / 100.0;
    const int64_t ts = 1767225600000 + static_cast<int64_t>(rng() % 86400000);
    const int flagged = static_cast<int>(rng() % 3) - 1;
    char amount_text[40];
    std::snprintf(amount_text, sizeof amount_text, "%.17g", amount);

    std::vector<std::string> profile = {R"("country":")" + country_json + "\"", R"("age":)" + std::to_string(i % 90)};
    std::vector<std::string> user_parts = {R"("id":")" + user_json + "\"", R"("profile":{)" + profile[i % 2] + "," +
                                                                           profile[1 - i % 2] + "}",
                                           R"("tags":["x","y"])"};
    std::vector<std::string> amount_parts = {std::string(R"("value":)") + amount_text,
                                             R"("cents":)" + std::to_string(cents), R"("currency":"EUR")"};
    std::vector<std::string> top = {
        R"("id":)" + std::to_string(i),
        R"("user":{)" + user_parts[0] + "," + user_parts[1] + "," + user_parts[2] + "}",
        R"("payment":{"method":"card","amount":{)" + amount_parts[0] + "," + amount_parts[1] + "," +
            amount_parts[2] + "}}",
        R"("ts":)" + std::to_string(ts),
        R"("noise":{"id":"nope","user":{"id":"nope"}})"};
    if (flagged >= 0) top.push_back(std::string(R"("flagged":)") + (flagged ? "true" : "false"));
    std::shuffle(top.begin(), top.end(), rng);
    std::shuffle(user_parts.begin(), user_parts.end(), rng);
    std::string json = "{";
    for (size_t k = 0; k < top.size(); ++k) json += (k ? ", " : "") + top[k];
    json += "}";
    g.json.push_back(std::move(json));
    g.id.push_back(i);
    g.user.push_back(user);
    g.country.push_back(country);
    g.amount.push_back(amount);
    g.cents.push_back(cents);
    g.flagged.push_back(flagged);
    g.ts.push_back(ts);
  }
  return g;
}

TEST(JsonDecoderTest, TenThousandGeneratedDocumentsDecodeToWhatWasWritten) {
  const Generated g = Generate(10000, 12);
  auto d = MakeDecoder(GeneratedSchema());
  d->BeginBatch();
  std::vector<FieldValue> out(g.json.size() * 7);
  DecodeError e;
  for (size_t i = 0; i < g.json.size(); ++i) {
    ASSERT_TRUE(d->Decode(Raw(g.json[i]), &out[i * 7], &e)) << e.message << "\n" << g.json[i];
  }
  // Checked after the whole batch: every string is still valid.
  for (size_t i = 0; i < g.json.size(); ++i) {
    const FieldValue* v = &out[i * 7];
    ASSERT_EQ(v[0].i, g.id[i]) << g.json[i];
    ASSERT_EQ(v[1].text(), g.user[i]) << g.json[i];
    ASSERT_EQ(v[2].text(), g.country[i]) << g.json[i];
    ASSERT_EQ(v[3].d, g.amount[i]) << g.json[i];
    ASSERT_EQ(v[4].i, g.cents[i]) << g.json[i];
    ASSERT_EQ(v[5].present, g.flagged[i] >= 0) << g.json[i];
    if (g.flagged[i] >= 0) {
      ASSERT_EQ(v[5].i, g.flagged[i]) << g.json[i];
    }
    ASSERT_EQ(v[6].i, g.ts[i]) << g.json[i];
  }
}

TEST(JsonDecoderTest, HundredThousandRecordsAllocateNothingAfterTheFirstBatch) {
  // The largest record first: the input copy is sized by the largest record.
  Generated g = Generate(1000, 34);
  std::sort(g.json.begin(), g.json.end(), [](const std::string& a, const std::string& b) {
    return a.size() > b.size();
  });
  auto d = MakeDecoder(GeneratedSchema());
  std::vector<FieldValue> out(7);
  DecodeError e;
  size_t scratch_after_first = 0;
  long allocations = 0;
  for (int batch = 0; batch < 100; ++batch) {
    const long before = g_allocations.load();
    d->BeginBatch();
    for (const std::string& json : g.json) {
      if (!d->Decode(Raw(json), out.data(), &e)) {
        FAIL() << e.message;
      }
    }
    if (batch == 0) {
      scratch_after_first = d->ScratchBytes();
    } else {
      allocations += g_allocations.load() - before;
    }
  }
  if (kCountsAllocations) {
    EXPECT_EQ(allocations, 0) << "heap allocations in 99k records after the first batch";
  }
  EXPECT_EQ(d->ScratchBytes(), scratch_after_first);
  EXPECT_GT(scratch_after_first, 0u);
  EXPECT_LT(scratch_after_first, 1u << 20) << "scratch for 1000 records of ~300 bytes";
}

TEST(JsonDecoderTest, RefusesSchemasNoDocumentCanSatisfy) {
  EXPECT_FALSE(JsonDecoder::Create(Schema({{"a", ValueType::kString, "p"}, {"b", ValueType::kString, "p.q"}})).ok());
  EXPECT_FALSE(JsonDecoder::Create(Schema({{"a", ValueType::kString, "p..q"}})).ok());
  EXPECT_FALSE(JsonDecoder::Create(Schema({{"a", ValueType::kString, "p.\"q"}})).ok());
}

}  // namespace
}  // namespace kappa
