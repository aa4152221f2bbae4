// The spec parsers (fields, predicates, aggregates) and operator construction:
// what is accepted, and that every rejection says what is wrong and what is
// accepted instead.
#include <gtest/gtest.h>

#include "tests/operators/operator_test_util.h"
#include "tests/state/state_test_access.h"

namespace kappa::testing {
namespace {

using ::testing::HasSubstr;

TEST(ParseFieldTest, EveryFieldRoundTripsThroughItsName) {
  for (std::string_view name : {"txn_id", "user_id", "status", "amount_cents", "currency", "event_time_ms"}) {
    auto f = ParseField(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_EQ(FieldName(*f), name);
  }
  EXPECT_EQ(*ParseField("txn_id"), Field::kTxnId);
  EXPECT_EQ(*ParseField("event_time_ms"), Field::kEventTime);
}

TEST(ParseFieldTest, UnknownFieldNamesItAndListsTheFields) {
  auto f = ParseField("colour");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("`colour`"));
  EXPECT_THAT(f.status().message(),
              HasSubstr("txn_id, user_id, status, amount_cents, currency, event_time_ms"));
  EXPECT_FALSE(ParseField("TXN_ID").ok()) << "names are case-sensitive";
}

TEST(ParseFieldTest, OnlyAmountAndEventTimeAreNumeric) {
  EXPECT_TRUE(IsNumericField(Field::kAmountCents));
  EXPECT_TRUE(IsNumericField(Field::kEventTime));
  EXPECT_FALSE(IsNumericField(Field::kTxnId));
  EXPECT_FALSE(IsNumericField(Field::kUserId));
  EXPECT_FALSE(IsNumericField(Field::kStatus));
  EXPECT_FALSE(IsNumericField(Field::kCurrency));
}

TEST(ParsePredicateTest, EveryOperator) {
  const std::pair<const char*, Predicate::Op> cases[] = {
      {"amount_cents == 5", Predicate::Op::kEq}, {"amount_cents != 5", Predicate::Op::kNe},
      {"amount_cents < 5", Predicate::Op::kLt},  {"amount_cents <= 5", Predicate::Op::kLe},
      {"amount_cents > 5", Predicate::Op::kGt},  {"amount_cents >= 5", Predicate::Op::kGe}};
  for (const auto& [text, op] : cases) {
    auto p = ParsePredicate(text);
    ASSERT_TRUE(p.ok()) << text << ": " << p.status().ToString();
    EXPECT_EQ(p->field, Field::kAmountCents);
    EXPECT_EQ(p->op, op) << text;
    EXPECT_EQ(p->number, 5);
  }
}

TEST(ParsePredicateTest, ValuesOfEachKindOfField) {
  auto ne = ParsePredicate("status != cancelled");
  ASSERT_TRUE(ne.ok());
  EXPECT_EQ(ne->field, Field::kStatus);
  EXPECT_EQ(ne->op, Predicate::Op::kNe);
  EXPECT_EQ(ne->text, "cancelled");
  for (const char* s : {"status == approved", "status == refunded"}) EXPECT_TRUE(ParsePredicate(s).ok()) << s;

  auto ge = ParsePredicate("amount_cents >= 100");
  ASSERT_TRUE(ge.ok());
  EXPECT_EQ(ge->op, Predicate::Op::kGe);
  EXPECT_EQ(ge->number, 100);

  auto cur = ParsePredicate("currency == EUR");
  ASSERT_TRUE(cur.ok());
  EXPECT_EQ(cur->field, Field::kCurrency);
  EXPECT_EQ(cur->text, "EUR");
  EXPECT_EQ(ParsePredicate("currency == 'EUR'")->text, "EUR") << "quotes are stripped";
  EXPECT_EQ(ParsePredicate("currency == \"EUR\"")->text, "EUR");

  auto spaced = ParsePredicate("   event_time_ms<-5   ");
  ASSERT_TRUE(spaced.ok()) << spaced.status().ToString();
  EXPECT_EQ(spaced->field, Field::kEventTime);
  EXPECT_EQ(spaced->op, Predicate::Op::kLt);
  EXPECT_EQ(spaced->number, -5);
}

TEST(ParsePredicateTest, ErrorsSayWhatIsWrongAndWhatIsAccepted) {
  const std::pair<const char*, const char*> cases[] = {
      {"status != canceled", "status is approved, cancelled or refunded, not `canceled`"},
      {"amount_cents > ten", "`amount_cents` is numeric but `ten` is not an integer"},
      {"amount_cents >= 100 EUR", "is not an integer"},
      // An integer beyond int64 is one (a bug bash read "is not an integer").
      {"amount_cents < 9223372036854775808",
       "`9223372036854775808` does not fit in an int64: write the filter as an expression, `amount_cents < "
       "9223372036854775808.0`, which compares the field with it exactly"},
      {"colour == red", "unknown field `colour`"},
      {"status ~ approved", "unknown operator `~`"},
      {"amount_cents === 1", "unknown operator `===`"},
      {"amount_cents 5", "missing operator after `amount_cents`"},
      {"status ==", "missing value"},
      {"currency == ''", "missing value"},
      {"", "missing field name"},
      {">= 5", "missing field name"},
  };
  for (const auto& [text, why] : cases) {
    auto p = ParsePredicate(text);
    ASSERT_FALSE(p.ok()) << '"' << text << "\" was accepted";
    EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
    const std::string& m = p.status().message();
    EXPECT_THAT(m, HasSubstr(why)) << text;
    EXPECT_THAT(m, HasSubstr(std::string("\"") + text + "\"")) << "names the predicate";
    EXPECT_THAT(m, HasSubstr("== != < <= > >=")) << "lists the operators";
  }
}

TEST(ParseAggregateTest, TheFiveAggregates) {
  EXPECT_EQ(*ParseAggregate("count"), Aggregate::kCount);
  EXPECT_EQ(*ParseAggregate("sum"), Aggregate::kSum);
  EXPECT_EQ(*ParseAggregate("min"), Aggregate::kMin);
  EXPECT_EQ(*ParseAggregate("max"), Aggregate::kMax);
  EXPECT_EQ(*ParseAggregate("avg"), Aggregate::kAvg);
  auto bad = ParseAggregate("median");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("`median`"));
  EXPECT_THAT(bad.status().message(), HasSubstr("count, sum, min, max, avg"));
}

std::string MakeError(const OperatorSpec& spec) {
  StateRegistry registry;
  auto op = MakeOperator(spec, "op1", registry);
  EXPECT_FALSE(op.ok());
  EXPECT_EQ(op.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(StateRegistryTestAccess::Tables(registry).empty()) << "a rejected spec registers no state";
  return op.status().message();
}

TEST(MakeOperatorTest, RejectsInvalidSpecsWithAClearMessage) {
  EXPECT_THAT(MakeError(DedupBy(0)), HasSubstr("dedup ttl must be positive"));
  MapSpec map;
  map.value_field = Field::kCurrency;
  EXPECT_THAT(MakeError(map), HasSubstr("numeric field (amount_cents or event_time_ms), not `currency`"));
  map.value_field = Field::kAmountCents;
  map.divide = 0;
  EXPECT_THAT(MakeError(map), HasSubstr("divide must not be 0"));
  EXPECT_THAT(MakeError(Tumbling(0)), HasSubstr("window size must be positive"));
  EXPECT_THAT(MakeError(Sliding(kHour, 0)), HasSubstr("slide must be positive and at most the size"));
  EXPECT_THAT(MakeError(Sliding(kHour, 2 * kHour)), HasSubstr("slide must be positive and at most the size"));
  EXPECT_THAT(MakeError(Sliding(kHour, 1)), HasSubstr("at most 1000 windows per record"));
  Predicate pending;
  pending.field = Field::kStatus;
  pending.text = "pending";
  EXPECT_THAT(MakeError(FilterSpec{{pending}}), HasSubstr("not `pending`"));
}

TEST(MakeOperatorTest, BuildsEachOperatorAndRegistersStateOnlyForStatefulOnes) {
  StateRegistry registry;
  WindowSpec tumbling_without_slide = Tumbling();
  tumbling_without_slide.slide_ms = 0;  // tumbling ignores the slide
  const std::pair<OperatorSpec, std::string_view> cases[] = {
      {DedupBy(kHour), "dedup"},
      {FilterSpec{{*ParsePredicate("status != cancelled")}}, "filter"},
      {MapSpec{}, "map"},
      {tumbling_without_slide, "window"},
      {Sliding(kHour, kHour / 4), "window"},
      {EmitSpec{}, "emit"}};
  int n = 0;
  for (const auto& [spec, name] : cases) {
    auto op = MakeOperator(spec, "op" + std::to_string(++n), registry);
    ASSERT_TRUE(op.ok()) << name << ": " << op.status().ToString();
    EXPECT_EQ((*op)->name(), name);
  }
  ASSERT_EQ(StateRegistryTestAccess::Tables(registry).size(), 3u);
  EXPECT_EQ(StateRegistryTestAccess::Tables(registry)[0]->name(), "op1");
  EXPECT_EQ(StateRegistryTestAccess::Tables(registry)[1]->name(), "op4");
  EXPECT_EQ(StateRegistryTestAccess::Tables(registry)[2]->name(), "op5");
  EXPECT_EQ(MakeDecodeValidate(DecodeSpec{})->name(), "decode");
}

}  // namespace
}  // namespace kappa::testing
