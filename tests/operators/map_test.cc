// Map: value = field * multiply / divide, exact integer arithmetic, and the
// aggregates downstream use it.
#include "operators/map.h"

#include <gtest/gtest.h>

#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

std::vector<int64_t> Values(const MapSpec& spec, const std::vector<std::string>& payloads) {
  EXPECT_TRUE(Map::Validate(spec).ok());
  DecodedBatch decoded(payloads);
  RecordBatch& batch = decoded.batch;
  RecordCounters counters;
  TaskContext ctx;
  ctx.counters = &counters;
  Map(spec).Process(batch, ctx);
  EXPECT_EQ(batch.selection.size(), payloads.size()) << "map keeps every record";
  std::vector<int64_t> values;
  for (uint32_t i : batch.selection) values.push_back(batch.records[i].value);
  return values;
}

TEST(MapTest, ScalesTheFieldWithIntegerArithmetic) {
  MapSpec to_euros{Field::kAmountCents, 1, 100};
  EXPECT_EQ(Values(to_euros, {Txn("a", "u", kT0, 1250), Txn("b", "u", kT0, 99), Txn("c", "u", kT0, -1250)}),
            (std::vector<int64_t>{12, 0, -12}))
      << "quotients truncate toward zero";
  MapSpec triple{Field::kAmountCents, 3, 1};
  EXPECT_EQ(Values(triple, {Txn("a", "u", kT0, 1250)}), (std::vector<int64_t>{3750}));
  MapSpec minutes{Field::kEventTime, 1, kMinute};
  EXPECT_EQ(Values(minutes, {Txn("a", "u", kT0 + 5 * kMinute + 1)}),
            (std::vector<int64_t>{(kT0 / kMinute) + 5}));
}

TEST(MapTest, TheIntermediateProductDoesNotOverflow) {
  MapSpec half_of_four{Field::kAmountCents, 4, 8};
  const int64_t big = 4'000'000'000'000'000'000;
  EXPECT_EQ(Values(half_of_four, {Txn("a", "u", kT0, big)}), (std::vector<int64_t>{big / 2}));
}

TEST(MapTest, OnlyNumericFieldsAndANonZeroDivisor) {
  EXPECT_TRUE(Map::Validate(MapSpec{}).ok());
  EXPECT_FALSE(Map::Validate(MapSpec{Field::kUserId, 1, 1}).ok());
  EXPECT_FALSE(Map::Validate(MapSpec{Field::kStatus, 1, 1}).ok());
  EXPECT_FALSE(Map::Validate(MapSpec{Field::kAmountCents, 1, 0}).ok());
}

TEST(MapTest, AggregatesUseTheMappedValue) {
  Chain chain({MapSpec{Field::kAmountCents, 1, 100}, Tumbling()});
  chain.Feed({Txn("a", "u1", kT0, 1250), Txn("b", "u1", kT0 + 1, 399), Txn("z", "u1", kT0 + 2 * kHour, 1)});
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  const auto* w = AsWindow(chain.out.emitted[0]);
  EXPECT_EQ(w->sum(), 15);
  EXPECT_EQ(w->min(), 3);
  EXPECT_EQ(w->max(), 12);
}

Result<MapSpec> MapOf(const std::string& value, const char* extra_key = nullptr) {
  auto origin = std::make_shared<const std::string>("spec.yaml");
  ConfigNode body(ConfigNode::Kind::kMap, origin, "operators[0].map", 3);
  auto add = [&](const char* k, const std::string& v) {
    ConfigNode key(ConfigNode::Kind::kScalar, origin, "operators[0].map", 3);
    key.set_scalar(k);
    ConfigNode val(ConfigNode::Kind::kScalar, origin, ConfigNode::ChildPath("operators[0].map", k), 3);
    val.set_scalar(v);
    body.AddEntry(std::move(key), std::move(val));
  };
  add("value", value);
  if (extra_key != nullptr) add(extra_key, "2");
  auto spec = Map::Parse(body);
  if (spec.ok()) KAPPA_RETURN_IF_ERROR(Map::Validate(*spec));
  return spec;
}

TEST(MapExpressionTest, ComputesTheValueFromAnExpression) {
  auto spec = MapOf("amount_cents * 2 - 100");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(Values(*spec, {Txn("a", "u", kT0, 1250), Txn("b", "u", kT0, 0), Txn("c", "u", kT0, -7)}),
            (std::vector<int64_t>{2400, -100, -114}));
  // Precedence and parentheses; `/` truncates toward zero.
  auto euros = MapOf("(amount_cents + 50) / 100");
  ASSERT_TRUE(euros.ok()) << euros.status().ToString();
  EXPECT_EQ(Values(*euros, {Txn("a", "u", kT0, 1250), Txn("b", "u", kT0, 149), Txn("c", "u", kT0, -250)}),
            (std::vector<int64_t>{13, 1, -2}));
  // A double result truncates toward zero.
  auto tenth = MapOf("amount_cents * 0.1");
  ASSERT_TRUE(tenth.ok()) << tenth.status().ToString();
  EXPECT_EQ(Values(*tenth, {Txn("a", "u", kT0, 1259), Txn("b", "u", kT0, -1259)}), (std::vector<int64_t>{125, -125}));
}

TEST(MapExpressionTest, OneFieldKeepsItsCanonicalTextAndExpressionsHashByMeaning) {
  auto field = MapOf("amount_cents");
  ASSERT_TRUE(field.ok()) << field.status().ToString();
  EXPECT_TRUE(field->value_expr.empty());
  std::string out;
  Map::AppendCanonical(*field, out);
  EXPECT_EQ(out, "map(amount_cents,1,1)") << "the text pinned spec hashes were computed from";
  auto canonical = [](const std::string& text) {
    auto spec = MapOf(text);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    std::string s;
    if (spec.ok()) Map::AppendCanonical(*spec, s);
    return s;
  };
  EXPECT_EQ(canonical("amount_cents*2-100"), canonical("(amount_cents * 2) - 100"));
  EXPECT_NE(canonical("amount_cents * 2 - 100"), canonical("amount_cents * (2 - 100)"));
  std::vector<Field> fields;
  Map::AppendFields(*MapOf("amount_cents * 2 + event_time_ms"), fields);
  EXPECT_EQ(fields, (std::vector<Field>{Field::kAmountCents, Field::kEventTime}));
}

TEST(MapExpressionTest, ErrorsSayWhatToWrite) {
  auto text = MapOf("amount_cents + currency");
  ASSERT_FALSE(text.ok());
  auto unknown = MapOf("amount_cents * rate");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown field `rate`"), std::string::npos) << unknown.status().ToString();
  auto boolean = MapOf("amount_cents > 1");
  EXPECT_FALSE(boolean.ok()) << "a map value is a number";
  auto scaled = MapOf("amount_cents * 2", "multiply");
  ASSERT_FALSE(scaled.ok());
  EXPECT_NE(scaled.status().message().find("instead of multiply/divide"), std::string::npos)
      << scaled.status().ToString();
  EXPECT_FALSE(MapOf("partition * 2").ok());
}

TEST(MapExpressionTest, AnAbsentValueGoesToTheDlqAndAggregatesUseTheRest) {
  auto spec = MapOf("amount_cents / (amount_cents - 5)");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  Chain chain({*spec, Tumbling()});
  chain.Feed({Txn("a", "u1", kT0, 10), Txn("b", "u1", kT0 + 1, 5), Txn("c", "u1", kT0 + 2, 7),
              Txn("z", "u1", kT0 + 2 * kHour, 6)});
  ASSERT_EQ(chain.out.dlq.size(), 1u) << "division by zero";
  EXPECT_EQ(chain.out.dlq[0].offset, 1);
  EXPECT_EQ(chain.out.dlq[0].reason, DlqReason::kInvalidValue);
  EXPECT_EQ(chain.out.dlq[0].message, "map value `value` is absent (an absent field or a division by zero)");
  EXPECT_EQ(chain.counters.dlq, 1);
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  const auto* w = AsWindow(chain.out.emitted[0]);
  EXPECT_EQ(w->sum(), 2 + 3);
  EXPECT_TRUE(chain.counters.Balanced());
}

// A double value is truncated toward zero; one that no int64 holds (beyond
// +-9.2e18, an infinity, NaN) goes to the DLQ. It used to become int64's
// limits or 0 and enter the sums in silence (a bug bash).
TEST(MapExpressionTest, ADoubleValueNoInt64HoldsGoesToTheDlq) {
  auto spec = MapOf("amount_cents * 1e17");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  Chain chain({*spec, Tumbling()});
  chain.Feed({Txn("a", "u1", kT0, 5), Txn("b", "u1", kT0 + 1, 100), Txn("c", "u1", kT0 + 2, 200),
              Txn("d", "u1", kT0 + 3, 0), Txn("z", "u1", kT0 + 2 * kHour, 6)});
  ASSERT_EQ(chain.out.dlq.size(), 2u);
  EXPECT_EQ(chain.out.dlq[0].offset, 1);
  EXPECT_EQ(chain.out.dlq[0].reason, DlqReason::kInvalidValue);
  EXPECT_EQ(chain.out.dlq[0].message,
            "map value `value` is 1e+19: the value aggregates use is an int64 (a double is truncated toward zero), "
            "and no int64 holds it");
  EXPECT_EQ(chain.out.dlq[1].offset, 2);
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  const auto* w = AsWindow(chain.out.emitted[0]);
  EXPECT_EQ(w->count(), 2);
  EXPECT_EQ(w->sum(), 500'000'000'000'000'000);
  EXPECT_TRUE(chain.counters.Balanced());

  // inf - inf is NaN.
  auto nan = MapOf("amount_cents * 1e300 * 1e300 - amount_cents * 1e300 * 1e300");
  ASSERT_TRUE(nan.ok()) << nan.status().ToString();
  Chain nan_chain({*nan, Tumbling()});
  nan_chain.Feed({Txn("a", "u1", kT0, 0), Txn("b", "u1", kT0 + 1, 3), Txn("z", "u1", kT0 + 2 * kHour, 0)});
  ASSERT_EQ(nan_chain.out.dlq.size(), 1u);
  EXPECT_EQ(nan_chain.out.dlq[0].offset, 1);
  EXPECT_NE(nan_chain.out.dlq[0].message.find("nan"), std::string::npos) << nan_chain.out.dlq[0].message;
  ASSERT_EQ(nan_chain.out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(nan_chain.out.emitted[0])->count(), 1);
}

}  // namespace
}  // namespace kappa::testing
