// `kappa consume --print` and `kappa dlq show` lines: one valid JSON object
// per record, whatever the strings hold (UTF-8 as it is, other bytes and
// control characters escaped, no length limit).
#include "cli/record_format.h"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "schemas/dlq_record_generated.h"
#include "schemas/transaction_generated.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {
namespace {

std::string Format(const flatbuffers::FlatBufferBuilder& fbb) {
  return FormatRecordJson(fbb.GetBufferPointer(), fbb.GetSize());
}

// The member `name` of the JSON object `line`, as a parser reads it.
std::string Member(const std::string& line, const char* name) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  auto error = parser.parse(line).get(doc);
  EXPECT_FALSE(error) << simdjson::error_message(error) << ": " << line;
  if (error) return "";
  std::string_view value;
  error = doc[name].get_string().get(value);
  EXPECT_FALSE(error) << name << ": " << simdjson::error_message(error) << ": " << line;
  return std::string(value);
}

TEST(RecordFormatTest, Utf8StaysReadableAndOtherBytesAreEscaped) {
  EXPECT_EQ(JsonEscape("Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80"), "Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(JsonEscape("a\"b\\c\n\x01\x7f"), "a\\\"b\\\\c\\u000a\\u0001\\u007f");
  // Not UTF-8: a lone continuation byte, a cut sequence, an overlong form,
  // a surrogate, beyond U+10FFFF: each byte as \u00XX.
  EXPECT_EQ(JsonEscape("\x80"), "\\u0080");
  EXPECT_EQ(JsonEscape("\xc3"), "\\u00c3");
  EXPECT_EQ(JsonEscape("\xe2\x82"), "\\u00e2\\u0082");
  EXPECT_EQ(JsonEscape("\xc0\xaf"), "\\u00c0\\u00af");
  EXPECT_EQ(JsonEscape("\xed\xa0\x80"), "\\u00ed\\u00a0\\u0080");
  EXPECT_EQ(JsonEscape("\xf4\x90\x80\x80"), "\\u00f4\\u0090\\u0080\\u0080");
}

TEST(RecordFormatTest, ATransactionWithLongAndNonAsciiStringsIsOneValidObject) {
  const std::string long_id(3000, 'x');
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(schema::CreateTransactionDirect(fbb, long_id.c_str(), "Zo\xc3\xab\xff", schema::TxnStatus::Refunded,
                                             -5, "EUR", 1767225600000),
             "KTX1");
  const std::string line = Format(fbb);
  EXPECT_EQ(Member(line, "txn_id"), long_id) << "1024 bytes used to cut the line";
  EXPECT_EQ(Member(line, "user_id"), "Zo\xc3\xab\xc3\xbf") << "the stray byte reads as U+00FF";
  EXPECT_EQ(Member(line, "status"), "Refunded");
}

TEST(RecordFormatTest, ADeadLetterWithALongMessageIsOneValidObject) {
  const std::string message = "field `user` at `u`: expected string, found " + std::string(2000, 'n') + " \"q\"";
  flatbuffers::FlatBufferBuilder fbb;
  auto topic = fbb.CreateString("in");
  auto text = fbb.CreateString(message);
  schema::DlqRecordBuilder b(fbb);  // after the strings: a table under construction nests nothing
  b.add_source_topic(topic);
  b.add_source_partition(3);
  b.add_source_offset(77);
  b.add_error_message(text);
  b.add_truncated(true);
  b.add_original_size(9000000);
  fbb.Finish(b.Finish(), "KDLQ");
  const std::string line = Format(fbb);
  EXPECT_EQ(Member(line, "error"), message);
  EXPECT_EQ(Member(line, "source"), "in[3]@77");
  EXPECT_NE(line.find("\"truncated\":true,\"original_size\":9000000"), std::string::npos) << line;
}

// A window row's avg was printed "%.6f": 48116.645193 for the stored
// 48116.64519326065 (sum / count), and an average below 5e-7 as 0.000000
// (a bug bash). It reads back as the double stored.
TEST(RecordFormatTest, AWindowsAverageIsTheStoredDoubleExactly) {
  for (const double avg : {48116.64519326065, 3e-9, 2.0, -0.5}) {
    flatbuffers::FlatBufferBuilder fbb;
    auto key = fbb.CreateString("user-1");
    schema::WindowAggregateBuilder b(fbb);
    b.add_key(key);
    b.add_count(3);
    b.add_avg(avg);
    fbb.Finish(b.Finish(), "KWAG");
    const std::string line = Format(fbb);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    ASSERT_FALSE(parser.parse(line).get(doc)) << line;
    double read = 0;
    ASSERT_FALSE(doc["avg"].get_double().get(read)) << line;
    EXPECT_EQ(read, avg) << line;
  }
}

// A bug bash: a payload that began with '{' and ended with '}' was pasted
// in as it was, valid JSON or not (141 of 40,000 `--print` lines did not
// parse), and any other payload (Avro, malformed text) was shown only as
// {"type":"undecodable","bytes":N}. Valid JSON stays as it is; anything
// else is a "raw" object with its text, one valid line either way.
TEST(RecordFormatTest, OnlyValidJsonIsPastedAndAnythingElseIsShownEscaped) {
  auto format = [](const std::string& payload) {
    return FormatRecordJson(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  };
  EXPECT_EQ(format(R"({"a":1,"b":[true,null]})"), R"({"a":1,"b":[true,null]})");
  EXPECT_EQ(format("[1,2]"), "[1,2]");
  // Text (UTF-8, control characters escaped) reads back as it was.
  for (const std::string& bad : {std::string(R"({"status":approved,"t":1})"), std::string(R"({"a":1)"),
                                 std::string("{\"a\":\n1}"), std::string("plain text \xc3\xab"), std::string()}) {
    const std::string line = format(bad);
    EXPECT_EQ(Member(line, "type"), "raw") << line;
    EXPECT_EQ(Member(line, "text"), bad) << line;
  }
  // Other bytes as \u00XX, each.
  EXPECT_EQ(format(std::string("\x00\x02z\xff", 4)),
            R"({"type":"raw","bytes":4,"text":"\u0000\u0002z\u00ff"})");
}

}  // namespace
}  // namespace kappa
