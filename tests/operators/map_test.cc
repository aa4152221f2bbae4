// Map: value = field * multiply / divide, exact integer arithmetic, and the
// aggregates downstream use it.
#include "operators/map.h"

#include <gtest/gtest.h>

#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

std::vector<int64_t> Values(const MapSpec& spec, const std::vector<std::string>& payloads) {
  EXPECT_TRUE(Map::Validate(spec).ok());
  RecordBatch batch = DecodedBatch(payloads);
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

}  // namespace
}  // namespace kappa::testing
