// Named window features: every aggregate compared with an independent
// computation over a shuffled stream (late records included), restored state
// giving the rows of an uninterrupted run (count_distinct's table too), the
// same rows in JSON, Avro (decoded by Avro C) and FlatBuffers (read through
// the reflection of the schema kappa prints), and the spec's errors.
#include "operators/features.h"

#include <avro.h>
#include <cmath>

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "engine/job_spec.h"
#include "operators/window_aggregate.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

// A row as column name -> value (numbers as double, the key as text).
struct Row {
  std::string key;
  std::map<std::string, double> values;
  bool operator==(const Row& o) const { return key == o.key && values == o.values; }
};
void PrintTo(const Row& r, std::ostream* os) {
  *os << r.key << " {";
  for (const auto& [k, v] : r.values) *os << k << "=" << v << " ";
  *os << "}";
}

Row ParseJsonRow(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj = parser.parse(text).get_object();
  Row row;
  for (auto field : obj) {
    const std::string name(field.key);
    if (name == "key") {
      row.key = std::string(std::string_view(field.value.get_string()));
    } else if (field.value.is_int64()) {
      row.values[name] = static_cast<double>(int64_t(field.value));
    } else {
      row.values[name] = double(field.value);
    }
  }
  return row;
}

WindowSpec FeatureWindow(RowFormat format = RowFormat::kJson) {
  WindowSpec w;
  w.kind = WindowSpec::Kind::kTumbling;
  w.size_ms = kHour;
  w.slide_ms = kHour;
  w.key_field = Field::kUserId;
  w.features = {{"n", FeatureKind::kCount, Field::kValue},
                {"spend", FeatureKind::kSum, Field::kAmountCents},
                {"lo", FeatureKind::kMin, Field::kAmountCents},
                {"hi", FeatureKind::kMax, Field::kAmountCents},
                {"mean", FeatureKind::kAvg, Field::kAmountCents},
                {"first_amount", FeatureKind::kFirst, Field::kAmountCents},
                {"last_amount", FeatureKind::kLast, Field::kAmountCents},
                {"currencies", FeatureKind::kCountDistinct, Field::kCurrency},
                {"amounts", FeatureKind::kCountDistinct, Field::kAmountCents}};
  w.row_format = format;
  return w;
}

struct Event {
  std::string id, user, currency;
  int64_t time = 0, amount = 0;
};

// A shuffled stream: 12 users over 8 hours, times jittered by up to 25
// minutes against a 10-minute lateness (so some records are late), repeated
// amounts and currencies, many equal event times.
std::vector<Event> Stream(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const char* currencies[] = {"EUR", "USD", "GBP", "CHF"};
  std::vector<Event> events;
  for (size_t i = 0; i < n; ++i) {
    Event e;
    e.id = "t" + std::to_string(i);
    e.user = "u" + std::to_string(rng() % 12);
    e.currency = currencies[rng() % 4];
    const int64_t base = kT0 + static_cast<int64_t>(i) * (8 * kHour) / static_cast<int64_t>(n);
    e.time = base - static_cast<int64_t>(rng() % (25 * kMinute));
    e.time -= e.time % (2 * kMinute);  // many equal event times: first/last break ties by offset
    e.amount = 1 + static_cast<int64_t>(rng() % 40);
    events.push_back(e);
  }
  return events;
}

std::vector<std::string> Payloads(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(Txn(e.id, e.user, e.time, e.amount, schema::TxnStatus::Approved, e.currency));
  return out;
}

// The rows the definition gives, computed from scratch: a record joins its
// hour unless that hour's end is at or below the watermark before... after
// it (max event time so far minus lateness); a window is emitted once the
// final watermark reaches its end; first/last by (event time, offset).
std::vector<Row> Expected(const std::vector<Event>& events, int64_t lateness, std::vector<int64_t>* late) {
  struct Acc {
    std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> members;  // ((time, offset), amount)
    std::set<std::string> currencies;
    std::set<int64_t> amounts;
  };
  std::map<std::pair<int64_t, std::string>, Acc> windows;  // (end, user)
  int64_t max_time = kNoTime;
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    max_time = std::max(max_time, e.time);
    const int64_t watermark = max_time - lateness;
    const int64_t start = e.time - ((e.time % kHour) + kHour) % kHour;
    const int64_t end = start + kHour;
    if (end <= watermark) {
      late->push_back(static_cast<int64_t>(i));
      continue;
    }
    Acc& a = windows[{end, e.user}];
    a.members.push_back({{e.time, static_cast<int64_t>(i)}, e.amount});
    a.currencies.insert(e.currency);
    a.amounts.insert(e.amount);
  }
  const int64_t final_watermark = max_time - lateness;
  std::vector<Row> rows;
  for (auto& [k, a] : windows) {
    if (k.first > final_watermark) continue;
    Row r;
    r.key = k.second;
    int64_t sum = 0, lo = INT64_MAX, hi = INT64_MIN;
    for (const auto& m : a.members) {
      sum += m.second;
      lo = std::min(lo, m.second);
      hi = std::max(hi, m.second);
    }
    auto sorted = a.members;
    std::sort(sorted.begin(), sorted.end());
    r.values = {{"window_start", static_cast<double>(k.first - kHour)},
                {"window_end", static_cast<double>(k.first)},
                {"n", static_cast<double>(a.members.size())},
                {"spend", static_cast<double>(sum)},
                {"lo", static_cast<double>(lo)},
                {"hi", static_cast<double>(hi)},
                {"mean", static_cast<double>(sum) / static_cast<double>(a.members.size())},
                {"first_amount", static_cast<double>(sorted.front().second)},
                {"last_amount", static_cast<double>(sorted.back().second)},
                {"currencies", static_cast<double>(a.currencies.size())},
                {"amounts", static_cast<double>(a.amounts.size())}};
    rows.push_back(r);
  }
  return rows;
}

std::vector<Row> JsonRows(const CollectingOutput& out) {
  std::vector<Row> rows;
  for (const Emitted& e : out.emitted) {
    Row r = ParseJsonRow(e.value);
    EXPECT_EQ(e.key, r.key + "|" + std::to_string(static_cast<int64_t>(r.values["window_end"])));
    rows.push_back(r);
  }
  return rows;
}

TEST(FeaturesTest, EveryAggregateEqualsAnIndependentComputation) {
  const int64_t lateness = 10 * kMinute;
  const auto events = Stream(3000, 7);
  std::vector<int64_t> late;
  const auto expected = Expected(events, lateness, &late);
  ASSERT_GT(late.size(), 50u) << "the stream must exercise late records";
  ASSERT_GT(expected.size(), 60u);

  Chain chain({FeatureWindow()}, lateness);
  chain.Feed(Payloads(events), 97);
  auto rows = JsonRows(chain.out);
  // Emitted in (end, key) order; the expectation is in the same order.
  EXPECT_EQ(rows, expected);
  EXPECT_EQ(chain.out.late, late);
  EXPECT_EQ(chain.counters.outputs, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(chain.counters.late, static_cast<int64_t>(late.size()));
}

TEST(FeaturesTest, RestoredStateGivesTheRowsOfAnUninterruptedRun) {
  const int64_t lateness = 10 * kMinute;
  const auto payloads = Payloads(Stream(2000, 11));
  const std::vector<OperatorSpec> specs = {FeatureWindow()};
  Chain whole(specs, lateness);
  whole.Feed(payloads, 50);

  // Stop at several points; each restart resumes from the checkpoint.
  for (size_t cut : {size_t{1}, size_t{333}, size_t{1000}, size_t{1999}}) {
    Chain first(specs, lateness);
    const std::vector<std::string> head(payloads.begin(), payloads.begin() + static_cast<long>(cut));
    first.Feed(head, 50);
    Checkpoint cp;
    first.CommitTo(&cp);
    EXPECT_FALSE(cp.state.table("op1_distinct").empty() && cut > 1) << "count_distinct keeps its values in state";
    auto second = Chain::Restore(specs, lateness, cp);
    const std::vector<std::string> tail(payloads.begin() + static_cast<long>(cut), payloads.end());
    second->Feed(tail, 50);
    std::vector<Emitted> both = first.out.emitted;
    both.insert(both.end(), second->out.emitted.begin(), second->out.emitted.end());
    EXPECT_EQ(both, whole.out.emitted) << "cut at " << cut;
  }
  // Closed windows leave nothing behind, count_distinct's values included.
  Checkpoint end;
  whole.CommitTo(&end);
  for (const auto& [key, value] : end.state.table("op1_distinct")) {
    uint64_t start = 0;
    for (int i = 0; i < 8; ++i) start = start << 8 | static_cast<uint8_t>(key[static_cast<size_t>(i)]);
    EXPECT_GT(static_cast<int64_t>(start) + kHour, whole.watermark()) << "a closed window's value was kept";
  }
}

// Reads a FlatBuffers row through the reflection of FlatBuffersRowSchema.
class FlatBuffersRows {
 public:
  explicit FlatBuffersRows(const std::vector<RowColumn>& columns) {
    const std::string fbs = FlatBuffersRowSchema("FeatureRow", columns);
    EXPECT_TRUE(parser_.Parse(fbs.c_str())) << parser_.error_ << "\n" << fbs;
    parser_.Serialize();
    bfbs_.assign(reinterpret_cast<const char*>(parser_.builder_.GetBufferPointer()), parser_.builder_.GetSize());
  }
  Row Read(const std::string& bytes) {
    const reflection::Schema* schema = reflection::GetSchema(bfbs_.data());
    const reflection::Object* root = schema->root_table();
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    EXPECT_TRUE(flatbuffers::Verify(*schema, *root, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    const flatbuffers::Table& t = *flatbuffers::GetAnyRoot(reinterpret_cast<const uint8_t*>(bytes.data()));
    Row row;
    for (const reflection::Field* f : *root->fields()) {
      const std::string name = f->name()->str();
      if (name == "key") {
        row.key = flatbuffers::GetAnyFieldS(t, *f, schema);
      } else {
        row.values[name] = flatbuffers::GetAnyFieldF(t, *f);
      }
    }
    return row;
  }

 private:
  flatbuffers::Parser parser_;
  std::string bfbs_;
};

// Reads a Confluent-framed Avro row with Avro C, against AvroRowSchema.
class AvroRows {
 public:
  explicit AvroRows(const std::vector<RowColumn>& columns) : columns_(columns) {
    const std::string json = AvroRowSchema("FeatureRow", columns);
    EXPECT_EQ(avro_schema_from_json_length(json.data(), json.size(), &schema_), 0) << avro_strerror() << json;
    iface_ = avro_generic_class_from_schema(schema_);
  }
  ~AvroRows() {
    avro_value_iface_decref(iface_);
    avro_schema_decref(schema_);
  }
  Row Read(const std::string& bytes, int32_t expected_id) {
    EXPECT_GE(bytes.size(), 5u);
    EXPECT_EQ(bytes[0], 0) << "magic byte";
    const int32_t id = static_cast<int32_t>((static_cast<uint8_t>(bytes[1]) << 24) | (static_cast<uint8_t>(bytes[2]) << 16) |
                                            (static_cast<uint8_t>(bytes[3]) << 8) | static_cast<uint8_t>(bytes[4]));
    EXPECT_EQ(id, expected_id);
    avro_value_t value;
    EXPECT_EQ(avro_generic_value_new(iface_, &value), 0);
    avro_reader_t reader = avro_reader_memory(bytes.data() + 5, static_cast<int64_t>(bytes.size() - 5));
    EXPECT_EQ(avro_value_read(reader, &value), 0) << avro_strerror();
    avro_reader_free(reader);
    size_t size = 0;
    EXPECT_EQ(avro_value_sizeof(&value, &size), 0);
    EXPECT_EQ(size, bytes.size() - 5) << "the row is exactly one record";
    Row row;
    for (const RowColumn& c : columns_) {
      avro_value_t f;
      EXPECT_EQ(avro_value_get_by_name(&value, c.name.c_str(), &f, nullptr), 0) << c.name;
      if (c.type == ValueType::kString) {
        const char* s = nullptr;
        size_t n = 0;
        EXPECT_EQ(avro_value_get_string(&f, &s, &n), 0);
        row.key = std::string(s, n - 1);
      } else if (c.type == ValueType::kDouble) {
        double d = 0;
        EXPECT_EQ(avro_value_get_double(&f, &d), 0);
        row.values[c.name] = d;
      } else {
        int64_t l = 0;
        EXPECT_EQ(avro_value_get_long(&f, &l), 0);
        row.values[c.name] = static_cast<double>(l);
      }
    }
    avro_value_decref(&value);
    return row;
  }

 private:
  std::vector<RowColumn> columns_;
  avro_schema_t schema_ = nullptr;
  avro_value_iface_t* iface_ = nullptr;
};

TEST(FeaturesTest, AvroAndFlatBuffersRowsHoldTheJsonRowsValues) {
  const auto payloads = Payloads(Stream(1500, 3));
  Chain json({FeatureWindow(RowFormat::kJson)}, 10 * kMinute);
  json.Feed(payloads);
  WindowSpec avro_spec = FeatureWindow(RowFormat::kAvro);
  avro_spec.avro_schema_id = 4242;
  Chain avro({avro_spec}, 10 * kMinute);
  avro.Feed(payloads);
  Chain fb({FeatureWindow(RowFormat::kFlatBuffers)}, 10 * kMinute);
  fb.Feed(payloads);

  const auto columns = FeatureWindow().RowColumns();
  ASSERT_EQ(columns.size(), 12u);
  EXPECT_EQ(columns[0].name, "key");
  EXPECT_EQ(columns[1].type, ValueType::kTimestamp);
  EXPECT_EQ(columns[7].name, "mean");
  EXPECT_EQ(columns[7].type, ValueType::kDouble);
  AvroRows avro_rows(columns);
  FlatBuffersRows fb_rows(columns);
  const auto expected = JsonRows(json.out);
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(avro.out.emitted.size(), expected.size());
  ASSERT_EQ(fb.out.emitted.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(avro_rows.Read(avro.out.emitted[i].value, 4242), expected[i]) << i;
    EXPECT_EQ(fb_rows.Read(fb.out.emitted[i].value), expected[i]) << i;
    EXPECT_EQ(avro.out.emitted[i].key, json.out.emitted[i].key);
    EXPECT_EQ(fb.out.emitted[i].key, json.out.emitted[i].key);
  }
}

// An Avro row's strings are UTF-8: a byte that is not (a binary key, Avro
// `bytes` declared string) is written as the character U+00XX, the one the
// JSON rows write as \u00XX. The raw bytes made the row unreadable to every
// Avro reader (a bug bash). UTF-8 text stays as it is.
TEST(FeaturesTest, AvroRowsWriteStringsAsUtf8) {
  RowEncoder rows(RowFormat::kAvro, {{"key", ValueType::kString}});
  auto encoded = [&](const std::string& key) {
    rows.Begin();
    rows.Str(key);
    const auto bytes = rows.Finish();
    // After the wire format's magic byte and schema id.
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()).substr(5);
  };
  EXPECT_EQ(encoded("a\xc3\xab"), std::string("\x06" "a\xc3\xab")) << "zigzag length 3, then the text";
  EXPECT_EQ(encoded("\xff\xfe" "a"), std::string("\x0a" "\xc3\xbf\xc3\xbe" "a")) << "U+00FF U+00FE a";
  EXPECT_EQ(encoded("\xe2\x82"), std::string("\x08" "\xc3\xa2\xc2\x82")) << "a cut sequence, byte by byte";
}

TEST(FeaturesTest, JsonRowsEscapeKeysAndWriteDoublesExactly) {
  RowEncoder rows(RowFormat::kJson, {{"key", ValueType::kString}, {"x", ValueType::kDouble},
                                     {"ok", ValueType::kBool}, {"n", ValueType::kInt64}});
  rows.Begin();
  rows.Str("a\"b\\c\n\x01");
  rows.Double(0.1);
  rows.Int(1);
  rows.Int(-9223372036854775807 - 1);
  const auto bytes = rows.Finish();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
            R"({"key":"a\"b\\c\n\u0001","x":0.1,"ok":true,"n":-9223372036854775808})");
  rows.Begin();
  rows.Str("");
  rows.Double(std::numeric_limits<double>::quiet_NaN());
  rows.Int(0);
  rows.Int(0);
  const auto again = rows.Finish();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(again.data()), again.size()),
            R"({"key":"","x":null,"ok":false,"n":0})")
      << "JSON has no NaN";
  // Text in UTF-8 as it is; bytes that are not UTF-8 (a binary Kafka key:
  // Java's LongSerializer for 200) as \u00XX, so the row is still JSON (a
  // bug bash: the raw bytes made every JSON parser refuse the row).
  rows.Begin();
  rows.Str(std::string("Zo\xc3\xab \xe2\x82\xac|") + std::string("\0\0\0\0\0\0\0\xc8", 8) + "|\xff\xfe");
  rows.Double(1);
  rows.Int(0);
  rows.Int(0);
  const auto binary = rows.Finish();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(binary.data()), binary.size()),
            "{\"key\":\"Zo\xc3\xab \xe2\x82\xac|\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u00c8|"
            "\\u00ff\\u00fe\",\"x\":1.0,\"ok\":false,\"n\":0}");
  // A whole double beyond int64 keeps an exponent: as 27670116110564327424
  // it read as an integer, which no JSON reader holds (a bug bash: `kappa
  // consume --print` showed such rows raw). Below it, the shortest text,
  // with a point when it is whole: a typed reader took "9" for an integer,
  // so the column changed type from row to row (a bug bash).
  for (const auto& [v, text] : std::vector<std::pair<double, std::string>>{
           {27670116110564327424.0, "2.7670116110564327e+19"},
           {-9223372036854775808.0, "-9.223372036854776e+18"},
           {9007199254740992.0, "9007199254740992.0"},
           {9.0, "9.0"},
           {-3.0, "-3.0"},
           {0.0, "0.0"},
           {2.5, "2.5"},
           {1e16, "1e+16"},
           {1e300, "1e+300"}}) {
    rows.Begin();
    rows.Str("k");
    rows.Double(v);
    rows.Int(0);
    rows.Int(0);
    const auto big = rows.Finish();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(big.data()), big.size()),
              "{\"key\":\"k\",\"x\":" + text + ",\"ok\":false,\"n\":0}");
  }
}

constexpr const char* kTxnSource = "source: {topic: in}\n";
constexpr const char* kJsonSource =
    "source: {topic: in, format: json, fields: {user: string, score: double, at: timestamp}, event_time: at}\n";

// A whole job spec around one chain (the loader resolves declared fields).
Result<JobSpec> ParseSpec(const std::string& operators, const char* source = kTxnSource,
                          const std::string& sink = "{topic: out}") {
  return ParseJobSpec("job: t\nversion: 1\n" + std::string(source) + "operators:\n" + operators +
                      "sink: " + sink + "\ndlq: {topic: d}\nlate: {topic: l}\n");
}

Result<WindowSpec> ParseWindow(const std::string& window, const char* source = kTxnSource) {
  auto spec = ParseSpec("  - " + window + "\n", source);
  if (!spec.ok()) return spec.status();
  return std::get<WindowSpec>(spec->operators.back());
}

TEST(FeaturesTest, TheSpecNamesFeaturesInOrder) {
  auto w = ParseWindow(
      "window: {size: 1h, key: user_id, features: {spend_1h: sum(amount_cents), txn_count_1h: count, "
      "distinct_currencies: 'count_distinct( currency )', last: last(amount_cents)}}");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->features.size(), 4u);
  EXPECT_EQ(w->features[0].name, "spend_1h");
  EXPECT_EQ(w->features[0].kind, FeatureKind::kSum);
  EXPECT_EQ(w->features[0].field, Field::kAmountCents);
  EXPECT_EQ(w->features[1].kind, FeatureKind::kCount);
  EXPECT_EQ(w->features[2].kind, FeatureKind::kCountDistinct);
  EXPECT_EQ(w->features[2].field, Field::kCurrency);
  std::vector<std::string> tables;
  WindowAggregate::AppendStateTables(*w, "op2", tables);
  EXPECT_EQ(tables, (std::vector<std::string>{"op2", "op2_distinct"}));
  std::string a, b;
  WindowAggregate::AppendCanonical(*w, a);
  auto reordered = ParseWindow(
      "window: {size: 1h, key: user_id, features: {txn_count_1h: count, spend_1h: sum(amount_cents), "
      "distinct_currencies: count_distinct(currency), last: last(amount_cents)}}");
  ASSERT_TRUE(reordered.ok());
  WindowAggregate::AppendCanonical(*reordered, b);
  EXPECT_NE(a, b) << "the column order is part of the output";
}

TEST(FeaturesTest, BadFeaturesAreRefusedWithWhatIsAllowed) {
  const std::pair<std::string, std::string> cases[] = {
      {"{n: median(amount_cents)}", "unknown aggregate `median`"},
      {"{n: sum(currency)}", "takes a numeric field, not `currency`"},
      {"{n: sum}", "needs a field"},
      {"{n: count(amount_cents)}", "count takes no field"},
      {"{n: sum(amount_cents}", "closing parenthesis"},
      {"{n: sum(nope)}", "unknown field `nope`"},
      {"{window_end: count}", "taken by a row column"},
      {"{'1st': count}", "letters, digits and _"},
      {"[count]", "must map output names"},
      // One reason for both (a bug bash: "takes a numeric field" for one,
      // "not a field of the record" for the other).
      {"{n: max(partition)}", "`partition` can only key a window or an emit"},
      {"{n: count_distinct(partition)}", "`partition` can only key a window or an emit"},
  };
  for (const auto& [features, message] : cases) {
    auto w = ParseWindow("window: {size: 1h, features: " + features + "}");
    ASSERT_FALSE(w.ok()) << features;
    EXPECT_NE(w.status().message().find(message), std::string::npos) << w.status().message();
  }
  auto with_top = ParseWindow("window: {size: 1h, top: 1, features: {n: count}}");
  ASSERT_FALSE(with_top.ok());
  EXPECT_NE(with_top.status().message().find("does not combine"), std::string::npos) << with_top.status().message();
  std::string many = "{";
  for (int i = 0; i <= static_cast<int>(kMaxFeatures); ++i) many += (i ? ", f" : "f") + std::to_string(i) + ": count";
  auto too_many = ParseWindow("window: {size: 1h, features: " + many + "}}");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("at most 16 features"), std::string::npos) << too_many.status().message();
}

TEST(FeaturesTest, TheSinkChoosesTheRowFormat) {
  const std::string window = "  - window: {size: 1h, features: {n: count}}\n";
  auto json = ParseSpec(window);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(json->FeatureWindow()->row_format, RowFormat::kJson) << "JSON by default";
  auto fb = ParseSpec(window, kTxnSource, "{topic: out, format: flatbuffers}");
  ASSERT_TRUE(fb.ok()) << fb.status().ToString();
  EXPECT_EQ(fb->FeatureWindow()->row_format, RowFormat::kFlatBuffers);
  EXPECT_NE(fb->spec_hash, json->spec_hash) << "the row format decides the output bytes";
  auto avro = ParseSpec(window, kTxnSource, "{topic: out, format: avro, schema_registry: 'http://127.0.0.1:1'}");
  ASSERT_TRUE(avro.ok()) << avro.status().ToString();
  EXPECT_EQ(avro->sink_schema_registry_url, "http://127.0.0.1:1");

  const std::pair<std::string, std::string> bad[] = {
      {"{topic: out, format: avro}", "needs `sink.schema_registry`"},
      {"{topic: out, format: csv}", "unknown row format `csv`"},
  };
  for (const auto& [sink, message] : bad) {
    auto s = ParseSpec(window, kTxnSource, sink);
    ASSERT_FALSE(s.ok()) << sink;
    EXPECT_NE(s.status().message().find(message), std::string::npos) << s.status().message();
  }
  // Names flatc's readers cannot tell apart (Python's N() defined twice:
  // a bug bash read one column only); other formats keep them.
  for (const char* names : {"{n: count, N: count}", "{a_b: count, aB: count}"}) {
    const std::string w = std::string("  - window: {size: 1h, features: ") + names + "}\n";
    auto s = ParseSpec(w, kTxnSource, "{topic: out, format: flatbuffers}");
    ASSERT_FALSE(s.ok()) << names;
    EXPECT_NE(s.status().message().find("differ only in case or `_`"), std::string::npos) << s.status().message();
    EXPECT_TRUE(ParseSpec(w, kTxnSource, "{topic: out, format: json}").ok()) << names;
  }
  auto not_features = ParseSpec("  - window: {size: 1h}\n", kTxnSource, "{topic: out, format: json}");
  ASSERT_FALSE(not_features.ok());
  EXPECT_NE(not_features.status().message().find("applies to the rows of a window with `features`"),
            std::string::npos)
      << not_features.status().message();
}

TEST(FeaturesTest, APostgresSinkWritesTheRowsToTheVersionsTable) {
  const std::string window = "  - window: {size: 1h, key: user_id, features: {n: count, total: sum(amount_cents)}}\n";
  auto pg = ParseSpec(window, kTxnSource, "{postgres: {dsn: 'host=a password=x', table: analytics.spend}}");
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  EXPECT_TRUE(pg->postgres());
  EXPECT_EQ(pg->PostgresTable(), "analytics.spend_v1");
  EXPECT_EQ(pg->FeatureWindow()->row_format, RowFormat::kPostgres);
  EXPECT_EQ(pg->OutputName(), "postgres table analytics.spend_v1");
  // The table is what the rows are; the dsn only where they go.
  auto other_dsn = ParseSpec(window, kTxnSource, "{postgres: {dsn: 'host=b', table: analytics.spend}}");
  auto other_table = ParseSpec(window, kTxnSource, "{postgres: {dsn: 'host=a password=x', table: spend}}");
  ASSERT_TRUE(other_dsn.ok() && other_table.ok());
  EXPECT_EQ(other_dsn->spec_hash, pg->spec_hash);
  EXPECT_NE(other_table->spec_hash, pg->spec_hash);

  const std::pair<std::string, std::string> bad[] = {
      {"{postgres: {dsn: x, table: Spend}}", "must be a lower-case SQL name"},
      {"{postgres: {dsn: x, table: 1spend}}", "must be a lower-case SQL name"},
      {"{postgres: {dsn: x, table: a.b.c}}", "must be a lower-case SQL name"},
      {"{postgres: {dsn: x, table: \"sp;end\"}}", "must be a lower-case SQL name"},
      {"{postgres: {dsn: x, table: " + std::string(61, 'a') + "}}", "more than PostgreSQL's 63"},
      {"{postgres: {table: spend}}", "dsn"},
      {"{postgres: {dsn: x, table: spend}, format: json}", "remove `format`"},
      {"{postgres: {dsn: x, table: spend, user: me}}", "unknown key `user`"},
      // A view over kappa's own bookkeeping, with a warning only (a bug bash).
      {"{postgres: {dsn: x, table: kappa_offsets}}", "names starting with kappa_ are kappa's own tables"},
      {"{postgres: {dsn: x, table: analytics.kappa_serving}}", "names starting with kappa_ are kappa's own tables"},
  };
  for (const auto& [sink, message] : bad) {
    auto s = ParseSpec(window, kTxnSource, sink);
    ASSERT_FALSE(s.ok()) << sink;
    EXPECT_NE(s.status().message().find(message), std::string::npos) << sink << ": " << s.status().message();
  }
  auto aggregates = ParseSpec("  - window: {size: 1h}\n", kTxnSource, "{postgres: {dsn: x, table: spend}}");
  ASSERT_FALSE(aggregates.ok());
  EXPECT_NE(aggregates.status().message().find("writes the rows of a window with `features`"), std::string::npos)
      << aggregates.status().message();
  auto reserved = ParseSpec("  - window: {size: 1h, features: {kappa_n: count}}\n", kTxnSource,
                            "{postgres: {dsn: x, table: spend}}");
  ASSERT_FALSE(reserved.ok());
  EXPECT_NE(reserved.status().message().find("kappa's own columns"), std::string::npos);
  // A feature name PostgreSQL would cut (a bug bash: the table was made with
  // the cut name, then refused for lacking the column).
  const std::string long_name(64, 'n');
  auto cut = ParseSpec("  - window: {size: 1h, features: {" + long_name + ": count}}\n", kTxnSource,
                       "{postgres: {dsn: x, table: spend}}");
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("64 characters, more than PostgreSQL's 63 for a column name"),
            std::string::npos)
      << cut.status().message();
  EXPECT_TRUE(ParseSpec("  - window: {size: 1h, features: {" + long_name.substr(1) + ": count}}\n", kTxnSource,
                        "{postgres: {dsn: x, table: spend}}")
                  .ok());
}

TEST(FeaturesTest, PostgresRowsAreCopyTextThatReadsBackExactly) {
  RowEncoder rows(RowFormat::kPostgres, {{"key", ValueType::kString},
                                         {"at", ValueType::kTimestamp},
                                         {"n", ValueType::kInt64},
                                         {"ok", ValueType::kBool},
                                         {"x", ValueType::kDouble},
                                         {"y", ValueType::kDouble},
                                         {"z", ValueType::kDouble}});
  rows.Begin();
  rows.Str("a\tb\nc\\d\re");
  rows.Int(1767229200123);
  rows.Int(-42);
  rows.Int(1);
  rows.Double(0.1);
  rows.Double(std::nan(""));
  rows.Double(-std::numeric_limits<double>::infinity());
  const auto bytes = rows.Finish();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
            "a\\tb\\nc\\\\d\\re\t2026-01-01T01:00:00.123Z\t-42\tt\t0.1\tNaN\t-Infinity");
  // Years PostgreSQL holds beyond four digits, and before year 1 (BC).
  for (const auto& [ms, text] : {std::pair<int64_t, std::string>{253402300800000, "10000-01-01T00:00:00.000Z"},
                                 {-62135596800001, "0001-12-31T23:59:59.999Z BC"}}) {
    RowEncoder one(RowFormat::kPostgres, {{"at", ValueType::kTimestamp}});
    one.Begin();
    one.Int(ms);
    const auto b = one.Finish();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()), text);
  }
}

TEST(FeaturesTest, NamedValuesAMapComputesAreFeaturesInputs) {
  // Two maps: the second reads the first's value; features aggregate both.
  auto spec = ParseSpec(
      "  - map: {amount_eur: \"amount_cents * 92 / 100\", third: \"amount_cents / 3.0\"}\n"
      "  - map: {eur_plus_one: \"amount_eur + 1\"}\n"
      "  - window: {size: 1h, key: user_id, features: {n: count, eur: sum(amount_eur), hi_third: max(third), "
      "plus: sum(eur_plus_one)}}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const int64_t lateness = 10 * kMinute;
  const auto events = Stream(2000, 5);
  Chain chain(spec->operators, lateness);
  chain.Feed(Payloads(events), 64);
  // The same windows computed here from the definition.
  struct Acc {
    int64_t n = 0, eur = 0, plus = 0;
    double hi = -1e300;
  };
  std::map<std::pair<int64_t, std::string>, Acc> windows;
  int64_t max_time = kNoTime;
  for (const Event& e : events) {
    max_time = std::max(max_time, e.time);
    const int64_t end = e.time - ((e.time % kHour) + kHour) % kHour + kHour;
    if (end <= max_time - lateness) continue;
    Acc& a = windows[{end, e.user}];
    ++a.n;
    a.eur += e.amount * 92 / 100;
    a.plus += e.amount * 92 / 100 + 1;
    a.hi = std::max(a.hi, static_cast<double>(e.amount) / 3.0);
  }
  size_t compared = 0;
  for (const Emitted& e : chain.out.emitted) {
    const Row r = ParseJsonRow(e.value);
    const Acc& a = windows.at({static_cast<int64_t>(r.values.at("window_end")), r.key});
    EXPECT_EQ(r.values.at("n"), a.n) << e.key;
    EXPECT_EQ(r.values.at("eur"), a.eur) << e.key;
    EXPECT_EQ(r.values.at("plus"), a.plus) << e.key;
    EXPECT_EQ(r.values.at("hi_third"), a.hi) << e.key;
    ++compared;
  }
  EXPECT_GT(compared, 50u);

  const std::pair<std::string, std::string> bad[] = {
      {"  - map: {amount_eur: \"amount_cents * 92 / 100\"}\n  - window: {size: 1h, features: {n: count}}\n",
       "map computes `amount_eur` but no operator after it reads it"},
      {"  - map: {currency: \"amount_cents * 2\"}\n  - window: {size: 1h, features: {n: sum(currency)}}\n",
       "`currency` is already a field"},
      {"  - map: {third: \"amount_cents / 3.0\"}\n  - dedup: {field: third, ttl: 1h}\n"
       "  - window: {size: 1h, features: {n: count}}\n",
       "is a double a map computes; only window features read doubles"},
      {"  - map: {x: \"currency + 1\"}\n  - window: {size: 1h, features: {n: sum(x)}}\n", "map `x`"},
      {"  - map: {x: \"amount_cents\", multiply: 2}\n  - window: {size: 1h, features: {n: sum(x)}}\n",
       "instead of multiply/divide"},
  };
  for (const auto& [ops, message] : bad) {
    auto s = ParseSpec(ops);
    ASSERT_FALSE(s.ok()) << ops;
    EXPECT_NE(s.status().message().find(message), std::string::npos) << s.status().message();
  }
}

// Records of user "u" with the declared double `score` (kJsonSource's
// fields), one a millisecond from kT0, fed to the window directly, then
// the watermark an hour on: the rows it writes, as JSON text.
std::vector<std::string> FeedScores(const WindowSpec& w, const std::vector<double>& scores) {
  StateRegistry registry;
  auto op = MakeOperator(w, "op1", registry);
  EXPECT_TRUE(op.ok()) << op.status().ToString();
  if (!op.ok()) return {};
  std::vector<std::array<FieldValue, 3>> slots(scores.size());
  RecordBatch batch;
  for (size_t i = 0; i < scores.size(); ++i) {
    slots[i][0] = FieldValue{};
    slots[i][0].str = "u";
    slots[i][0].len = 1;
    slots[i][0].present = true;
    slots[i][1] = FieldValue{};
    slots[i][1].d = scores[i];
    slots[i][1].present = true;
    slots[i][2] = FieldValue{};
    slots[i][2].i = kT0 + static_cast<int64_t>(i);
    slots[i][2].present = true;
    InputRecord r;
    r.offset = static_cast<int64_t>(i);
    r.fields = slots[i].data();
    r.event_time_ms = kT0 + static_cast<int64_t>(i);
    r.watermark_ms = r.event_time_ms;
    batch.records.push_back(r);
  }
  batch.SelectAll();
  CollectingOutput out;
  RecordCounters counters;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  (*op)->Process(batch, ctx);
  ctx.max_event_time_ms = kT0 + kHour;
  (*op)->OnBatchEnd(ctx);
  std::vector<std::string> rows;
  for (const Emitted& e : out.emitted) rows.push_back(e.value);
  return rows;
}

TEST(FeaturesTest, DoubleFieldsAggregateInDoubleOnlyInFeatures) {
  auto w = ParseWindow(
      "window: {size: 1h, key: user, features: {total: sum(score), best: max(score), mean: avg(score), "
      "scores: count_distinct(score), latest: max(at)}}",
      kJsonSource);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto dedup = ParseSpec("  - dedup: {field: score, ttl: 1h}\n  - window: {size: 1h, features: {n: count}}\n",
                         kJsonSource);
  ASSERT_FALSE(dedup.ok());
  EXPECT_NE(dedup.status().message().find("is a double; only window features"), std::string::npos)
      << dedup.status().message();
  EXPECT_EQ(FeatureOutputType(w->features[0]), ValueType::kDouble);
  EXPECT_EQ(FeatureOutputType(w->features[2]), ValueType::kDouble);
  EXPECT_EQ(FeatureOutputType(w->features[3]), ValueType::kInt64);
  EXPECT_EQ(FeatureOutputType(w->features[4]), ValueType::kTimestamp) << "max of a timestamp stays one";

  const auto rows = FeedScores(*w, {0.1, 0.2, -0.0, 0.0, 2.5});
  ASSERT_EQ(rows.size(), 1u);
  const Row row = ParseJsonRow(rows[0]);
  EXPECT_DOUBLE_EQ(row.values.at("total"), ((0.1 + 0.2) + -0.0 + 0.0) + 2.5);
  EXPECT_EQ(row.values.at("best"), 2.5);
  EXPECT_DOUBLE_EQ(row.values.at("mean"), (0.1 + 0.2 + 2.5) / 5);
  EXPECT_EQ(row.values.at("scores"), 4) << "-0.0 and 0.0 are one value";
  EXPECT_EQ(row.values.at("latest"), static_cast<double>(kT0 + 4));
}

// A feature of -0.0 keeps its sign in every row format. FlatBuffers leaves
// out a field equal to its default, and -0.0 == 0.0: its readers got +0.0
// where the JSON and Avro rows say -0.0 (a bug bash).
TEST(FeaturesTest, NegativeZeroKeepsItsSignInEveryRowFormat) {
  auto w = ParseWindow("window: {size: 1h, key: user, features: {head: first(score), low: min(score), n: count}}",
                       kJsonSource);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (RowFormat format : {RowFormat::kJson, RowFormat::kAvro, RowFormat::kFlatBuffers}) {
    WindowSpec spec = *w;
    spec.row_format = format;
    spec.avro_schema_id = 7;
    const auto rows = FeedScores(spec, {-0.0, 0.0, 1.5});
    ASSERT_EQ(rows.size(), 1u);
    const auto columns = spec.RowColumns();
    Row row;
    if (format == RowFormat::kJson) {
      row = ParseJsonRow(rows[0]);
    } else if (format == RowFormat::kAvro) {
      row = AvroRows(columns).Read(rows[0], 7);
    } else {
      row = FlatBuffersRows(columns).Read(rows[0]);
    }
    const int f = static_cast<int>(format);
    EXPECT_EQ(row.values.at("head"), 0.0) << f;
    EXPECT_TRUE(std::signbit(row.values.at("head"))) << "first(score) is -0.0, format " << f;
    EXPECT_EQ(row.values.at("n"), 3) << f;
  }
}

// Each case's scores fed to a tumbling and to a rolling window of
// `features`: the tumbling window's row and the rolling window's last row
// hold `expected`.
void ExpectInBothWindows(const std::string& features,
                         const std::vector<std::pair<std::vector<double>, std::string>>& cases) {
  auto tumbling = ParseWindow("window: {size: 1h, key: user, " + features, kJsonSource);
  auto rolling = ParseWindow("window: {type: rolling, size: 1h, key: user, " + features, kJsonSource);
  ASSERT_TRUE(tumbling.ok()) << tumbling.status().ToString();
  ASSERT_TRUE(rolling.ok()) << rolling.status().ToString();
  for (const auto& [scores, expected] : cases) {
    const auto t = FeedScores(*tumbling, scores);
    const auto r = FeedScores(*rolling, scores);
    ASSERT_EQ(t.size(), 1u);
    ASSERT_EQ(r.size(), scores.size()) << "a rolling row per record";
    EXPECT_NE(t[0].find(expected), std::string::npos) << "tumbling: " << t[0];
    EXPECT_NE(r.back().find(expected), std::string::npos) << "rolling: " << r.back();
  }
}

// NaN (from map arithmetic such as inf - inf, or a declared double) orders
// above every number, as in PostgreSQL and Java's Double.compare: a window
// holding one has max NaN (written null) and min its smallest number. The
// tumbling windows ignored NaN and the rolling ones ordered it by its sign
// bit (x86's inf - inf is a negative NaN: min NaN, max a number).
TEST(FeaturesTest, NaNOrdersAboveEveryNumberInTumblingAndRollingWindows) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string features = "features: {lo: min(score), hi: max(score)}}";
  ExpectInBothWindows(features, {
      {{1.5, nan, -2.0}, "\"lo\":-2.0,\"hi\":null"},
      {{1.5, -nan, -2.0}, "\"lo\":-2.0,\"hi\":null"},
      {{nan, 3.0}, "\"lo\":3.0,\"hi\":null"},
      {{-nan, -nan}, "\"lo\":null,\"hi\":null"},
      {{1.5, -2.0}, "\"lo\":-2.0,\"hi\":1.5"},
  });
}

// -0.0 and 0.0 are one value for min, max and count_distinct, and so is
// every NaN, in tumbling and rolling windows alike and in any order (a bug
// bash: a tumbling min of -0.0 was -0.0 and a rolling one 0.0; of {0.0,
// -0.0} the tumbling window kept whichever came first; x86's 0.0/0.0, a NaN
// with its sign bit, was a second distinct value beside another NaN).
TEST(FeaturesTest, SignedZerosAndNaNsAreOneValueForMinMaxAndCountDistinct) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string features = "features: {lo: min(score), hi: max(score), kinds: count_distinct(score)}}";
  ExpectInBothWindows(features, {
      {{-0.0}, "\"lo\":0.0,\"hi\":0.0,\"kinds\":1"},
      {{-0.0, 0.0}, "\"lo\":0.0,\"hi\":0.0,\"kinds\":1"},
      {{0.0, -0.0}, "\"lo\":0.0,\"hi\":0.0,\"kinds\":1"},
      {{nan, -nan, nan}, "\"lo\":null,\"hi\":null,\"kinds\":1"},
      {{-nan, 1.0, nan, -0.0, 0.0}, "\"lo\":0.0,\"hi\":null,\"kinds\":3"},
  });
}

}  // namespace
}  // namespace kappa::testing
