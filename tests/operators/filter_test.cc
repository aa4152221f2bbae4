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
  return Filter(spec).Matches(schema::GetTransaction(payload.data()));
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

}  // namespace
}  // namespace kappa::testing
