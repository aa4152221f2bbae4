// Filter: keeps exactly the records for which every predicate holds, in
// offset order; the rest are counted as filtered.
#include "operators/filter.h"

#include <gtest/gtest.h>

#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

using Keys = std::vector<std::string>;

bool Passes(const std::vector<std::string>& predicates, const std::string& payload) {
  FilterSpec spec;
  for (const auto& text : predicates) {
    auto p = ParsePredicate(text);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    spec.all_of.push_back(*p);
  }
  EXPECT_TRUE(Filter::Validate(spec).ok());
  return Filter(spec).Matches(DecodedTxn(payload).record);
}

TEST(FilterTest, NumericComparisonsAtTheBoundary) {
  const struct {
    const char* op;
    bool at_99, at_100, at_101;
  } cases[] = {{"==", false, true, false}, {"!=", true, false, true}, {"<", true, false, false},
               {"<=", true, true, false},  {">", false, false, true}, {">=", false, true, true}};
  for (const auto& c : cases) {
    const std::vector<std::string> pred = {std::string("amount_cents ") + c.op + " 100"};
    EXPECT_EQ(Passes(pred, Txn("a", "u", kT0, 99)), c.at_99) << c.op;
    EXPECT_EQ(Passes(pred, Txn("a", "u", kT0, 100)), c.at_100) << c.op;
    EXPECT_EQ(Passes(pred, Txn("a", "u", kT0, 101)), c.at_101) << c.op;
  }
  EXPECT_TRUE(Passes({"event_time_ms >= " + std::to_string(kT0)}, Txn("a", "u", kT0)));
  EXPECT_FALSE(Passes({"event_time_ms >= " + std::to_string(kT0)}, Txn("a", "u", kT0 - 1)));
}

TEST(FilterTest, StatusComparesByName) {
  const auto approved = Txn("a", "u", kT0, 1, schema::TxnStatus::Approved);
  const auto cancelled = Txn("a", "u", kT0, 1, schema::TxnStatus::Cancelled);
  const auto refunded = Txn("a", "u", kT0, 1, schema::TxnStatus::Refunded);
  EXPECT_TRUE(Passes({"status != cancelled"}, approved));
  EXPECT_FALSE(Passes({"status != cancelled"}, cancelled));
  EXPECT_TRUE(Passes({"status != cancelled"}, refunded));
  EXPECT_TRUE(Passes({"status == refunded"}, refunded));
  EXPECT_FALSE(Passes({"status == refunded"}, approved));
}

TEST(FilterTest, StringFieldsCompareAsText) {
  const auto eur = Txn("a", "user-7", kT0, 1, schema::TxnStatus::Approved, "EUR");
  const auto usd = Txn("a", "user-7", kT0, 1, schema::TxnStatus::Approved, "USD");
  EXPECT_TRUE(Passes({"currency == EUR"}, eur));
  EXPECT_FALSE(Passes({"currency == EUR"}, usd));
  EXPECT_FALSE(Passes({"currency == eur"}, eur)) << "case-sensitive";
  EXPECT_TRUE(Passes({"currency < USD"}, eur));
  EXPECT_FALSE(Passes({"currency < USD"}, usd));
  EXPECT_TRUE(Passes({"user_id == user-7"}, eur));
  EXPECT_TRUE(Passes({"txn_id != b"}, eur));
}

TEST(FilterTest, AllPredicatesMustHold) {
  const std::vector<std::string> all = {"status != cancelled", "amount_cents >= 100", "currency == 'EUR'"};
  EXPECT_TRUE(Passes(all, Txn("a", "u", kT0, 100)));
  EXPECT_FALSE(Passes(all, Txn("a", "u", kT0, 99)));
  EXPECT_FALSE(Passes(all, Txn("a", "u", kT0, 500, schema::TxnStatus::Cancelled)));
  EXPECT_FALSE(Passes(all, Txn("a", "u", kT0, 500, schema::TxnStatus::Approved, "USD")));
  EXPECT_TRUE(Passes({}, Txn("a", "u", kT0, 0))) << "no predicates keep everything";
}

TEST(FilterTest, NarrowsTheSelectionInOrderAndCountsTheRest) {
  Chain chain({FilterSpec{{*ParsePredicate("status != cancelled"), *ParsePredicate("amount_cents >= 100")}},
               EmitSpec{}});
  chain.Feed({Txn("a", "u", kT0, 100), Txn("b", "u", kT0, 99),
              Txn("c", "u", kT0, 500, schema::TxnStatus::Cancelled), Txn("d", "u", kT0, 1000), "garbage",
              Txn("e", "u", kT0, 100, schema::TxnStatus::Refunded)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{"a", "d", "e"}));
  EXPECT_EQ(chain.last_batch().selection, (std::vector<uint32_t>{0, 3, 5}));
  EXPECT_EQ(chain.counters.filtered, 2);
  EXPECT_EQ(chain.counters.dlq, 1);
  EXPECT_EQ(chain.counters.out, 3);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(FilterTest, ValidateRejectsUnknownStatusNames) {
  Predicate p;
  p.field = Field::kStatus;
  p.text = "approved";
  EXPECT_TRUE(Filter::Validate(FilterSpec{{p}}).ok());
  p.text = "Approved";
  EXPECT_FALSE(Filter::Validate(FilterSpec{{p}}).ok());
}

// A filter spec from entries as they would appear in the job spec.
Result<FilterSpec> Entries(const std::vector<std::string>& texts) {
  auto origin = std::make_shared<const std::string>("spec.yaml");
  ConfigNode list(ConfigNode::Kind::kList, origin, "operators[0].filter", 3);
  for (size_t i = 0; i < texts.size(); ++i) {
    ConfigNode item(ConfigNode::Kind::kScalar, origin, ConfigNode::ItemPath("operators[0].filter", i), 4);
    item.set_scalar(texts[i]);
    list.AddItem(std::move(item));
  }
  auto spec = Filter::Parse(list);
  if (spec.ok()) KAPPA_RETURN_IF_ERROR(Filter::Validate(*spec));
  return spec;
}

bool Keeps(const std::vector<std::string>& texts, const std::string& payload) {
  auto spec = Entries(texts);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  if (!spec.ok()) return false;
  return Filter(*spec).Matches(DecodedTxn(payload).record);
}

std::string CanonicalOf(const std::vector<std::string>& texts) {
  auto spec = Entries(texts);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  std::string out;
  if (spec.ok()) Filter::AppendCanonical(*spec, out);
  return out;
}

TEST(FilterExpressionTest, AndOrNotInAndParenthesesOverTransactionFields) {
  const std::string expr = "amount_cents > 100 and (currency in (EUR, USD) or not status == approved)";
  EXPECT_TRUE(Keeps({expr}, Txn("a", "u", kT0, 101, schema::TxnStatus::Approved, "EUR")));
  EXPECT_TRUE(Keeps({expr}, Txn("a", "u", kT0, 101, schema::TxnStatus::Approved, "USD")));
  EXPECT_FALSE(Keeps({expr}, Txn("a", "u", kT0, 100, schema::TxnStatus::Approved, "EUR"))) << "and: left false";
  EXPECT_FALSE(Keeps({expr}, Txn("a", "u", kT0, 101, schema::TxnStatus::Approved, "GBP")))
      << "neither side of the or";
  EXPECT_TRUE(Keeps({expr}, Txn("a", "u", kT0, 101, schema::TxnStatus::Refunded, "GBP"))) << "not status";
  // Without the parentheses `and` binds tighter: a refunded GBP record of 5
  // cents passes through the `or`.
  const std::string loose = "amount_cents > 100 and currency in (EUR, USD) or not status == approved";
  EXPECT_TRUE(Keeps({loose}, Txn("a", "u", kT0, 5, schema::TxnStatus::Refunded, "GBP")));
  EXPECT_FALSE(Keeps({expr}, Txn("a", "u", kT0, 5, schema::TxnStatus::Refunded, "GBP")));
  // not in, status by name in a list, arithmetic, && / ||.
  EXPECT_TRUE(Keeps({"currency not in (EUR, 'USD')"}, Txn("a", "u", kT0, 1, schema::TxnStatus::Approved, "GBP")));
  EXPECT_FALSE(Keeps({"currency not in (EUR, 'USD')"}, Txn("a", "u", kT0, 1, schema::TxnStatus::Approved, "USD")));
  EXPECT_TRUE(Keeps({"status in (cancelled, refunded)"}, Txn("a", "u", kT0, 1, schema::TxnStatus::Refunded)));
  EXPECT_FALSE(Keeps({"status in (cancelled, refunded)"}, Txn("a", "u", kT0, 1, schema::TxnStatus::Approved)));
  EXPECT_TRUE(Keeps({"amount_cents * 2 - 100 >= 100"}, Txn("a", "u", kT0, 100)));
  EXPECT_FALSE(Keeps({"amount_cents * 2 - 100 >= 100"}, Txn("a", "u", kT0, 99)));
  EXPECT_TRUE(Keeps({"user_id == u1 || txn_id == b"}, Txn("b", "u2", kT0)));
  EXPECT_FALSE(Keeps({"user_id == u1 && txn_id == b"}, Txn("b", "u2", kT0)));
}

TEST(FilterExpressionTest, ExpressionsAndSimplePredicatesAreAllAnded) {
  const std::vector<std::string> entries = {"status != cancelled", "currency == EUR or amount_cents >= 1000"};
  auto spec = Entries(entries);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->all_of.size(), 1u);
  EXPECT_EQ(spec->exprs.size(), 1u);
  EXPECT_TRUE(Keeps(entries, Txn("a", "u", kT0, 1, schema::TxnStatus::Approved, "EUR")));
  EXPECT_TRUE(Keeps(entries, Txn("a", "u", kT0, 1000, schema::TxnStatus::Approved, "USD")));
  EXPECT_FALSE(Keeps(entries, Txn("a", "u", kT0, 999, schema::TxnStatus::Approved, "USD")));
  EXPECT_FALSE(Keeps(entries, Txn("a", "u", kT0, 1000, schema::TxnStatus::Cancelled, "EUR")));
}

TEST(FilterExpressionTest, OnePlainStringIsOneExpression) {
  auto origin = std::make_shared<const std::string>("spec.yaml");
  ConfigNode body(ConfigNode::Kind::kScalar, origin, "operators[0].filter", 3);
  body.set_scalar("amount_cents > 1 and (amount_cents in (2, 3) or not currency == EUR)");
  auto spec = Filter::Parse(body);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->exprs.size(), 1u);
  // One slot per distinct field, however often it is read.
  EXPECT_EQ(spec->expr_fields, (std::vector<Field>{Field::kAmountCents, Field::kCurrency}));
  const Filter f(*spec);
  EXPECT_TRUE(f.Matches(DecodedTxn(Txn("a", "u", kT0, 3, schema::TxnStatus::Approved, "EUR")).record));
  EXPECT_TRUE(f.Matches(DecodedTxn(Txn("a", "u", kT0, 9, schema::TxnStatus::Approved, "USD")).record));
  EXPECT_FALSE(f.Matches(DecodedTxn(Txn("a", "u", kT0, 9, schema::TxnStatus::Approved, "EUR")).record));
  EXPECT_FALSE(f.Matches(DecodedTxn(Txn("a", "u", kT0, 1, schema::TxnStatus::Approved, "USD")).record));
}

TEST(FilterExpressionTest, SimplePredicatesKeepTheirCanonicalTextSoSpecHashesHold) {
  // The text the filter had before expressions existed (spec hashes of
  // existing jobs are pinned on it).
  EXPECT_EQ(CanonicalOf({"status != cancelled", "amount_cents >= 100", "auction % 123 == 0"}),
            "filter(status 1 cancelled 0;amount_cents 5  100;auction 0  0 %123;)");
  // Quoted text holding keywords or parentheses is one value on both paths:
  // still a simple predicate.
  auto quoted = Entries({"user_id == 'salt and (pepper)'"});
  ASSERT_TRUE(quoted.ok()) << quoted.status().ToString();
  EXPECT_EQ(quoted->all_of.size(), 1u);
  EXPECT_TRUE(Keeps({"user_id == 'salt and (pepper)'"}, Txn("a", "salt and (pepper)", kT0)));
  EXPECT_TRUE(Keeps({"user_id == 'u' or txn_id == \"a\""}, Txn("a", "v", kT0))) << "`or` outside the quotes";
  // An expression is hashed by its normal form: spacing, quoting, `&&` and
  // redundant parentheses do not change it, the meaning does.
  EXPECT_EQ(CanonicalOf({"amount_cents>1 && (currency in ('EUR', USD))"}),
            CanonicalOf({"amount_cents > 1 and currency in (EUR, \"USD\")"}));
  EXPECT_NE(CanonicalOf({"amount_cents > 1 and currency in (EUR, USD)"}),
            CanonicalOf({"amount_cents > 1 or currency in (EUR, USD)"}));
  EXPECT_NE(CanonicalOf({"amount_cents > 1 and currency in (EUR, USD)"}),
            CanonicalOf({"amount_cents > 1 and currency in (EUR, GBP)"}));
}

TEST(FilterExpressionTest, ErrorsNameTheEntryAndTheField) {
  auto unknown = Entries({"amount_cents > 1 and colour == red"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown field `colour`"), std::string::npos)
      << unknown.status().ToString();
  EXPECT_NE(unknown.status().message().find("spec.yaml:4"), std::string::npos)
      << unknown.status().ToString();
  auto syntax = Entries({"amount_cents > 1 and (currency == EUR"});
  EXPECT_FALSE(syntax.ok());
  auto types = Entries({"amount_cents + currency > 1"});
  EXPECT_FALSE(types.ok()) << "arithmetic on a string";
  // Without and/or/not/in/parentheses, text the simple syntax refuses is an
  // expression only when it compiles and reads no status, type or
  // partition: their messages stay those of the simple syntax.
  auto status = Entries({"status != pending"});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.status().message().find("status is approved, cancelled or refunded, not `pending`"),
            std::string::npos)
      << status.status().ToString();
  auto ten = Entries({"amount_cents >= ten"});
  ASSERT_FALSE(ten.ok());
  EXPECT_NE(ten.status().message().find("is not an integer"), std::string::npos) << ten.status().ToString();
  auto arithmetic = Entries({"amount_cents * 2 > 100"});
  ASSERT_TRUE(arithmetic.ok()) << arithmetic.status().ToString();
  EXPECT_TRUE(arithmetic->all_of.empty());
  EXPECT_EQ(arithmetic->exprs.size(), 1u);
  auto partition = Entries({"partition == 1 or amount_cents > 1"});
  EXPECT_FALSE(partition.ok()) << "partition only keys windows and emits";
}

TEST(FilterExpressionTest, DeclaredFieldsOfAUserFormat) {
  RecordSchema schema;
  ASSERT_TRUE(schema.Add({"merchant", ValueType::kString, "", TimestampEncoding::kEpochMillis, false}).ok());
  ASSERT_TRUE(schema.Add({"amount", ValueType::kInt64, "payload.amount", TimestampEncoding::kEpochMillis, false}).ok());
  ASSERT_TRUE(schema.Add({"is_fraud", ValueType::kBool, "", TimestampEncoding::kEpochMillis, true}).ok());
  FilterSpec spec;
  {
    DeclaredFieldsScope scope(&schema);
    auto parsed = Entries({"amount >= 100 and (merchant in (acme, 'big shop') or not is_fraud)"});
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    spec = *parsed;
  }
  ASSERT_EQ(spec.expr_fields.size(), 3u);
  for (Field f : spec.expr_fields) EXPECT_TRUE(IsDeclaredField(f));
  std::vector<Field> fields;
  Filter::AppendFields(spec, fields);
  EXPECT_EQ(fields, spec.expr_fields);
  const Filter filter(spec);

  auto text = [](const char* s) {
    FieldValue v{};
    v.str = s;
    v.len = static_cast<uint32_t>(std::string_view(s).size());
    v.present = true;
    return v;
  };
  auto number = [](int64_t i) {
    FieldValue v{};
    v.i = i;
    v.present = true;
    return v;
  };
  FieldValue absent{};
  auto keeps = [&](FieldValue merchant, FieldValue amount, FieldValue is_fraud) {
    const FieldValue values[3] = {merchant, amount, is_fraud};
    InputRecord r;
    r.fields = values;
    return filter.Matches(r);
  };
  EXPECT_TRUE(keeps(text("acme"), number(100), number(1)));
  EXPECT_TRUE(keeps(text("big shop"), number(100), number(1)));
  EXPECT_FALSE(keeps(text("acme"), number(99), number(0)));
  EXPECT_FALSE(keeps(text("other"), number(100), number(1))) << "fraud at another merchant";
  EXPECT_TRUE(keeps(text("other"), number(100), number(0)));
  // An absent optional bool is false where a condition is expected; `not`
  // of it is true.
  EXPECT_TRUE(keeps(text("other"), number(100), absent));
  EXPECT_FALSE(keeps(text("acme"), absent, number(0))) << "a comparison with an absent field is false";

  // A bool field alone is a condition, and fields compare with fields.
  {
    DeclaredFieldsScope scope(&schema);
    auto bare = Entries({"!is_fraud", "amount > 0"});
    ASSERT_TRUE(bare.ok()) << bare.status().ToString();
    EXPECT_EQ(bare->all_of.size(), 1u) << "`amount > 0` is a simple predicate";
    EXPECT_EQ(bare->exprs.size(), 1u);
    const Filter f(*bare);
    const FieldValue fraud[3] = {text("x"), number(5), number(1)};
    const FieldValue clean[3] = {text("x"), number(5), number(0)};
    InputRecord r;
    r.fields = fraud;
    EXPECT_FALSE(f.Matches(r));
    r.fields = clean;
    EXPECT_TRUE(f.Matches(r));
    // A word that is no bool value is named as such (it read "`is_fraud`
    // is numeric but `yes` is not an integer").
    for (const char* entry : {"is_fraud == yes", "is_fraud != \"no\""}) {
      auto word = Entries({entry});
      ASSERT_FALSE(word.ok()) << entry;
      EXPECT_NE(word.status().message().find("`is_fraud` is a bool, so `"), std::string::npos)
          << word.status().ToString();
      EXPECT_NE(word.status().message().find("compare it with true or false (`is_fraud == true`)"),
                std::string::npos)
          << word.status().ToString();
    }
    EXPECT_TRUE(Entries({"is_fraud == true"}).ok());
    // A number is no bool value either, in a plain entry as inside an
    // expression (the plain entry compared the bool as 0/1 and accepted
    // `is_fraud == 1` and `is_fraud > 0`, which the expression refuses).
    for (const char* entry : {"is_fraud == 1", "is_fraud > 0", "is_fraud != 0"}) {
      auto number = Entries({entry});
      ASSERT_FALSE(number.ok()) << entry;
      EXPECT_NE(number.status().message().find("`is_fraud` is a bool, so `"), std::string::npos)
          << number.status().ToString();
    }
    EXPECT_FALSE(Entries({"is_fraud == 1 and amount > 0"}).ok());
  }

  // Outside the scope the declared names are not fields.
  EXPECT_FALSE(Entries({"amount >= 100 and merchant == acme"}).ok());
}

// A plain `field op value` entry (the simple-predicate path, no expression
// syntax) reads an absent optional field as the expression path does: the
// comparison is false. It used to read 0 or "", so `amount <= 1` and
// `merchant != acme` kept records that had neither field (a bug bash).
TEST(FilterExpressionTest, APlainPredicateOnAnAbsentOptionalFieldIsFalse) {
  RecordSchema schema;
  ASSERT_TRUE(schema.Add({"merchant", ValueType::kString, "", TimestampEncoding::kEpochMillis, true}).ok());
  ASSERT_TRUE(schema.Add({"amount", ValueType::kInt64, "", TimestampEncoding::kEpochMillis, true}).ok());
  FieldValue absent{};
  FieldValue zero{};
  zero.present = true;
  FieldValue acme{};
  acme.str = "acme";
  acme.len = 4;
  acme.present = true;
  for (const char* entry : {"amount <= 1", "amount % 2 == 0", "merchant != acme", "merchant < b"}) {
    FilterSpec spec;
    {
      DeclaredFieldsScope scope(&schema);
      auto parsed = Entries({entry});
      ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
      spec = *parsed;
    }
    ASSERT_EQ(spec.all_of.size(), 1u) << entry << " takes the simple-predicate path";
    const Filter filter(spec);
    const FieldValue none[2] = {absent, absent};
    InputRecord r;
    r.fields = none;
    EXPECT_FALSE(filter.Matches(r)) << entry << " kept a record without the field";
    // A present empty string or 0 still compares.
    const FieldValue empty[2] = {zero, zero};
    r.fields = empty;
    EXPECT_TRUE(filter.Matches(r)) << entry << " with the field present as 0 / \"\"";
  }
  // The same entry in parentheses (the expression path) agrees.
  FilterSpec spec;
  {
    DeclaredFieldsScope scope(&schema);
    auto parsed = Entries({"(merchant != acme)"});
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    spec = *parsed;
  }
  const Filter filter(spec);
  const FieldValue none[2] = {absent, absent};
  InputRecord r;
  r.fields = none;
  EXPECT_FALSE(filter.Matches(r));
  const FieldValue other[2] = {acme, absent};
  r.fields = other;
  EXPECT_FALSE(filter.Matches(r));
}

}  // namespace
}  // namespace kappa::testing
