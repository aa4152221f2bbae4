// The record view's shared parts: the schema's slots and ISO-8601 timestamps.
#include "formats/record_view.h"

#include <gtest/gtest.h>

namespace kappa {
namespace {

TEST(RecordSchemaTest, SlotsAreDeclarationOrderAndNamesAreUnique) {
  RecordSchema schema;
  ASSERT_TRUE(schema.Add({"user_id", ValueType::kString, "user.id"}).ok());
  ASSERT_TRUE(schema.Add({"amount", ValueType::kDouble, ""}).ok());
  EXPECT_EQ(schema.Find("user_id"), 0);
  EXPECT_EQ(schema.Find("amount"), 1);
  EXPECT_EQ(schema.field(1).path, "amount") << "an empty path is the name";
  EXPECT_FALSE(schema.Find("nope").has_value());
  Status twice = schema.Add({"amount", ValueType::kInt64, "x"});
  EXPECT_FALSE(twice.ok());
  EXPECT_NE(twice.message().find("declared twice"), std::string::npos) << twice.ToString();
  EXPECT_FALSE(schema.Add({"", ValueType::kInt64, "x"}).ok());
  EXPECT_EQ(schema.size(), 2);
}

TEST(Iso8601Test, ParsesZonesFractionsAndRefusesWhatIsNotATime) {
  EXPECT_EQ(ParseIso8601Millis("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseIso8601Millis("2026-01-01T00:00:00Z"), 1767225600000);
  EXPECT_EQ(ParseIso8601Millis("2026-01-01T00:00:00.123Z"), 1767225600123);
  EXPECT_EQ(ParseIso8601Millis("2026-01-01T00:00:00.123456Z"), 1767225600123) << "truncated to ms";
  EXPECT_EQ(ParseIso8601Millis("2026-01-01T00:00:00.5Z"), 1767225600500);
  EXPECT_EQ(ParseIso8601Millis("2026-01-01 01:00:00+01:00"), 1767225600000);
  EXPECT_EQ(ParseIso8601Millis("2025-12-31T19:30:00-0430"), 1767225600000);
  EXPECT_EQ(ParseIso8601Millis("2024-02-29T12:00:00Z"), 1709208000000);
  EXPECT_EQ(ParseIso8601Millis("1969-12-31T23:59:59.999Z"), -1);
  for (const char* bad : {"", "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
                          "2026-01-01T24:00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00Zjunk",
                          "x026-01-01T00:00:00Z", "2026-01-01T00:00:00+1"}) {
    EXPECT_FALSE(ParseIso8601Millis(bad).has_value()) << bad;
  }
}

// Second 60 is a leap second, which only 23:59 UTC has; read as 23:59:59
// as Java's Instant.parse reads it. In any other minute it was the next
// minute's :00, and 00:59:60 moved its record into the next hour's window
// (a bug bash).
TEST(Iso8601Test, SecondSixtyIsALeapSecondAt235960UtcAndRefusedElsewhere) {
  EXPECT_EQ(ParseIso8601Millis("2016-12-31T23:59:60Z"), ParseIso8601Millis("2016-12-31T23:59:59Z"));
  EXPECT_EQ(ParseIso8601Millis("2016-12-31T23:59:60.250Z"), ParseIso8601Millis("2016-12-31T23:59:59.250Z"));
  EXPECT_EQ(ParseIso8601Millis("2017-01-01T05:29:60+05:30"), ParseIso8601Millis("2016-12-31T23:59:59Z"))
      << "23:59:60 UTC in another zone";
  for (const char* bad : {"2026-01-01T00:59:60Z", "2016-12-31T23:58:60Z", "2016-12-31T23:59:60+01:00"}) {
    EXPECT_FALSE(ParseIso8601Millis(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace kappa
