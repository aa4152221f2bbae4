// Emit: each surviving record leaves unchanged (no copy), keyed by a field,
// with its own offset as lineage, in offset order.
#include "operators/emit.h"

#include <gtest/gtest.h>

#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

TEST(EmitTest, WritesTheOriginalBytesKeyedByTxnIdWithOffsetLineage) {
  const std::vector<std::string> payloads = {Txn("t1", "u1", kT0), "garbage", Txn("t2", "u2", kT0 + 1)};
  Chain chain({EmitSpec{}}, 0, DecodeSpec{}, /*partition=*/3);
  chain.Feed(payloads);
  ASSERT_EQ(chain.out.emitted.size(), 2u);
  const auto& first = chain.out.emitted[0];
  EXPECT_EQ(first.key, "t1");
  EXPECT_EQ(first.value, payloads[0]);
  EXPECT_EQ(first.value_pointer, reinterpret_cast<const uint8_t*>(payloads[0].data())) << "zero copy";
  EXPECT_EQ(first.lineage.partition, 3);
  EXPECT_EQ(first.lineage.first_offset, 0);
  EXPECT_EQ(first.lineage.last_offset, 0);
  EXPECT_EQ(chain.out.emitted[1].key, "t2");
  EXPECT_EQ(chain.out.emitted[1].lineage.first_offset, 2);
  EXPECT_EQ(chain.out.emitted[1].lineage.last_offset, 2);
  EXPECT_EQ(chain.counters.out, 2);
  EXPECT_EQ(chain.counters.outputs, 2);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(EmitTest, KeysByAnyFieldNumbersInDecimal) {
  const std::string payload = Txn("t1", "u1", kT0, 1250, schema::TxnStatus::Refunded, "USD");
  const std::pair<Field, std::string> cases[] = {
      {Field::kTxnId, "t1"},         {Field::kUserId, "u1"},    {Field::kStatus, "refunded"},
      {Field::kAmountCents, "1250"}, {Field::kCurrency, "USD"}, {Field::kEventTime, std::to_string(kT0)}};
  for (const auto& [field, key] : cases) {
    Chain chain({EmitSpec{field}});
    chain.Feed({payload});
    ASSERT_EQ(chain.out.emitted.size(), 1u);
    EXPECT_EQ(chain.out.emitted[0].key, key) << FieldName(field);
  }
}

TEST(EmitTest, EmitsOnlyWhatSurvivesInOffsetOrder) {
  Chain chain({DedupBy(kHour), FilterSpec{{*ParsePredicate("amount_cents > 0")}}, EmitSpec{}});
  chain.Feed({Txn("a", "u", kT0, 5), Txn("b", "u", kT0, 0), Txn("a", "u", kT0, 5), Txn("c", "u", kT0, 1)}, 2);
  EXPECT_EQ(chain.out.EmittedKeys(), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(chain.counters.outputs, 2);
  EXPECT_EQ(chain.counters.deduped, 1);
  EXPECT_EQ(chain.counters.filtered, 1);
  EXPECT_TRUE(chain.counters.Balanced());
}

}  // namespace
}  // namespace kappa::testing
