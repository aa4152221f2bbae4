// WindowAggregate: half-open epoch-aligned windows, emitted once when the
// watermark reaches their end, in (end, key) order; lateness exactly at the
// limit; late records to the late output; sliding membership; firing from
// restored state.
#include "operators/window_aggregate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "tests/operators/operator_test_util.h"
#include "tests/state/state_test_access.h"

namespace kappa::testing {
namespace {

using Keys = std::vector<std::string>;

std::string OutKey(const std::string& key, int64_t end) {
  return key + "|" + std::to_string(end);
}

// Window starts of `key` among the emitted rows.
std::set<int64_t> StartsOf(const CollectingOutput& out, const std::string& key) {
  std::set<int64_t> starts;
  for (const auto& e : out.emitted) {
    if (AsWindow(e)->key()->str() == key) starts.insert(AsWindow(e)->window_start_ms());
  }
  return starts;
}

TEST(WindowAggregateTest, WindowsAreHalfOpenEndMinusOneInEndInTheNext) {
  Chain chain({Tumbling()}, 0, DecodeSpec{}, /*partition=*/4);
  chain.Feed({Txn("a", "u1", kT0, 10), Txn("b", "u1", kT0 + kHour - 1, 20), Txn("c", "u1", kT0 + kHour, 40)});
  // The watermark is kT0+kHour: [kT0, kT0+kHour) is complete, c is in the next window.
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  const Emitted& row = chain.out.emitted[0];
  EXPECT_EQ(row.key, OutKey("u1", kT0 + kHour));
  const auto* w = AsWindow(row);
  EXPECT_EQ(w->key()->str(), "u1");
  EXPECT_EQ(w->window_start_ms(), kT0);
  EXPECT_EQ(w->window_end_ms(), kT0 + kHour);
  EXPECT_EQ(w->count(), 2);
  EXPECT_EQ(w->sum(), 30);
  EXPECT_EQ(w->min(), 10);
  EXPECT_EQ(w->max(), 20);
  EXPECT_DOUBLE_EQ(w->avg(), 15.0);
  EXPECT_EQ(w->first_offset(), 0);
  EXPECT_EQ(w->last_offset(), 1);
  EXPECT_EQ(row.lineage.partition, 4);
  EXPECT_EQ(row.lineage.first_offset, 0);
  EXPECT_EQ(row.lineage.last_offset, 1);
  EXPECT_TRUE(flatbuffers::BufferHasIdentifier(row.value.data(), schema::WindowAggregateIdentifier()));
  // More records in the open window never re-emit the closed one.
  chain.Feed({Txn("d", "u1", kT0 + kHour + 5, 2)});
  EXPECT_EQ(chain.out.emitted.size(), 1u);
  chain.Feed({Txn("e", "u2", kT0 + 2 * kHour, 1)});
  ASSERT_EQ(chain.out.emitted.size(), 2u);
  const auto* next = AsWindow(chain.out.emitted[1]);
  EXPECT_EQ(next->window_start_ms(), kT0 + kHour);
  EXPECT_EQ(next->count(), 2);
  EXPECT_EQ(next->sum(), 42);
  EXPECT_EQ(next->first_offset(), 2);
  EXPECT_EQ(next->last_offset(), 3);
  EXPECT_EQ(chain.counters.outputs, 2);
  EXPECT_EQ(chain.counters.out, 5);
}

TEST(WindowAggregateTest, FiresInEndThenKeyOrderWhateverTheArrivalOrder) {
  Chain chain({Tumbling()});
  std::vector<std::string> payloads;
  for (int i = 49; i >= 0; --i) payloads.push_back(Txn(Name('a', i), Name('u', (i * 17) % 50), kT0 + i));
  payloads.push_back(Txn("x", "u0", kT0 + kHour + 3));
  payloads.push_back(Txn("y", "u9", kT0 + 2 * kHour + 1));  // watermark past both windows
  chain.Feed(payloads);
  ASSERT_EQ(chain.out.emitted.size(), 51u);
  Keys users;
  for (int i = 0; i < 50; ++i) users.push_back(Name('u', i));
  std::sort(users.begin(), users.end());  // by group key: "u1" < "u10" < "u2"
  Keys expected;
  for (const auto& u : users) expected.push_back(OutKey(u, kT0 + kHour));
  expected.push_back(OutKey("u0", kT0 + 2 * kHour));
  EXPECT_EQ(chain.out.EmittedKeys(), expected);
}

TEST(WindowAggregateTest, LatenessExactlyAtTheLimitIsOnTimeOneMillisecondMoreIsLate) {
  const int64_t lateness = 10 * kMinute;
  Chain chain({Tumbling()}, lateness);
  chain.Feed({Txn("a", "u1", kT0 + 5, 1), Txn("b", "u2", kT0 + kHour + lateness - 1, 1)});
  EXPECT_TRUE(chain.out.emitted.empty()) << "watermark kT0+kHour-1 has not reached the end";
  // A record exactly `lateness` behind the newest one is on time.
  chain.Feed({Txn("c", "u1", kT0 + kHour - 1, 7)});
  EXPECT_TRUE(chain.out.late.empty());
  chain.Feed({Txn("d", "u2", kT0 + kHour + lateness, 1)});  // watermark reaches kT0+kHour
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->count(), 2);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->sum(), 8);
  // That window is emitted: a record for it is late, sent aside and counted.
  chain.Feed({Txn("e", "u1", kT0 + kHour - 1, 1000)});
  EXPECT_EQ(chain.out.late, (std::vector<int64_t>{4}));
  EXPECT_EQ(chain.counters.late, 1);
  EXPECT_TRUE(chain.last_batch().selection.empty()) << "a late record leaves the chain";
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(WindowAggregateTest, EventTimeEqualToTheWatermarkIsNotLate) {
  Chain chain({Tumbling()});
  chain.Feed({Txn("a", "u1", kT0 + kHour / 2), Txn("b", "u1", kT0 + kHour / 2)});
  EXPECT_TRUE(chain.out.late.empty());
  chain.Feed({Txn("c", "u1", kT0 + kHour)});  // watermark kT0+kHour: first window fires
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->count(), 2);
  chain.Feed({Txn("d", "u2", kT0 + kHour), Txn("e", "u2", kT0 + kHour - 1)});
  EXPECT_EQ(chain.out.late, (std::vector<int64_t>{4}))
      << "t == watermark is on time, t == end - 1 of a fired window is late";
  chain.Feed({Txn("f", "u2", kT0 + 2 * kHour)});
  ASSERT_EQ(chain.out.emitted.size(), 3u);
  EXPECT_EQ(chain.out.emitted[1].key, OutKey("u1", kT0 + 2 * kHour));
  EXPECT_EQ(chain.out.emitted[2].key, OutKey("u2", kT0 + 2 * kHour));
  EXPECT_EQ(AsWindow(chain.out.emitted[2])->count(), 1);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(WindowAggregateTest, SlidingWindowsHoldEachRecordSizeOverSlideTimes) {
  const int64_t q = kHour / 4;
  Chain chain({Sliding(kHour, q)});
  chain.Feed({Txn("b", "before", kT0 - 1, 6), Txn("a", "on", kT0, 5), Txn("c", "inside", kT0 + 10, 7),
              Txn("z", "zz", kT0 + 3 * kHour, 0)});
  EXPECT_EQ(StartsOf(chain.out, "on"), (std::set<int64_t>{kT0 - 3 * q, kT0 - 2 * q, kT0 - q, kT0}));
  EXPECT_EQ(StartsOf(chain.out, "before"),
            (std::set<int64_t>{kT0 - 4 * q, kT0 - 3 * q, kT0 - 2 * q, kT0 - q}));
  EXPECT_EQ(StartsOf(chain.out, "inside"), (std::set<int64_t>{kT0 - 3 * q, kT0 - 2 * q, kT0 - q, kT0}));
  for (const auto& e : chain.out.emitted) {
    const auto* w = AsWindow(e);
    EXPECT_EQ(w->window_end_ms() - w->window_start_ms(), kHour);
    EXPECT_EQ(w->count(), 1);
  }
  for (size_t i = 1; i < chain.out.emitted.size(); ++i) {
    EXPECT_LE(AsWindow(chain.out.emitted[i - 1])->window_end_ms(),
              AsWindow(chain.out.emitted[i])->window_end_ms());
  }
  EXPECT_EQ(chain.counters.outputs, 12);
}

TEST(WindowAggregateTest, SlidingWindowsWhenTheSlideDoesNotDivideTheSize) {
  Chain chain({Sliding(50, 20)});
  chain.Feed({Txn("a", "u45", kT0 + 45), Txn("b", "u55", kT0 + 55), Txn("z", "zz", kT0 + 1000)});
  EXPECT_EQ(StartsOf(chain.out, "u45"), (std::set<int64_t>{kT0, kT0 + 20, kT0 + 40}));
  EXPECT_EQ(StartsOf(chain.out, "u55"), (std::set<int64_t>{kT0 + 20, kT0 + 40}));
}

TEST(WindowAggregateTest, ASlidingRecordJoinsOnlyItsOpenWindows) {
  const int64_t q = kHour / 4;
  Chain chain({Sliding(kHour, q)});
  chain.Feed({Txn("a", "u1", kT0 + kHour), Txn("b", "u2", kT0 + kHour - 1)});
  EXPECT_TRUE(chain.out.late.empty()) << "three of its four windows are still open";
  chain.Feed({Txn("z", "zz", kT0 + 5 * kHour)});
  EXPECT_EQ(StartsOf(chain.out, "u2"), (std::set<int64_t>{kT0 + q, kT0 + 2 * q, kT0 + 3 * q}));
  EXPECT_EQ(chain.counters.late, 0);
}

TEST(WindowAggregateTest, NumericKeysAreDecimalAndUnrequestedAggregatesAreZero) {
  WindowSpec w = Tumbling(kHour, Field::kAmountCents);
  w.aggregates = {Aggregate::kCount};
  Chain chain({w});
  chain.Feed({Txn("a", "u1", kT0, 1250), Txn("b", "u2", kT0 + 1, 1250), Txn("z", "u", kT0 + kHour, 1)});
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  EXPECT_EQ(chain.out.emitted[0].key, OutKey("1250", kT0 + kHour));
  const auto* agg = AsWindow(chain.out.emitted[0]);
  EXPECT_EQ(agg->key()->str(), "1250");
  EXPECT_EQ(agg->count(), 2);
  EXPECT_EQ(agg->sum(), 0);
  EXPECT_EQ(agg->min(), 0);
  EXPECT_EQ(agg->max(), 0);
  EXPECT_EQ(agg->avg(), 0.0);
}

TEST(WindowAggregateTest, WindowsBeforeTheEpochAlignToo) {
  DecodeSpec decode;
  decode.min_event_time_ms = -100 * kHour;
  Chain chain({Tumbling()}, 0, decode);
  chain.Feed(
      {Txn("c", "u", -kHour - 1, 4), Txn("b", "u", -kHour, 2), Txn("a", "u", -1, 1), Txn("d", "u", 0, 8)});
  ASSERT_EQ(chain.out.emitted.size(), 2u);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->window_start_ms(), -2 * kHour);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->sum(), 4);
  EXPECT_EQ(AsWindow(chain.out.emitted[1])->window_start_ms(), -kHour);
  EXPECT_EQ(AsWindow(chain.out.emitted[1])->window_end_ms(), 0);
  EXPECT_EQ(AsWindow(chain.out.emitted[1])->sum(), 3);
}

TEST(WindowAggregateTest, FiresEachWindowWhenItsEndIsReachedAndErasesIt) {
  Chain chain({Tumbling()});
  chain.Feed({Txn("a", "u1", kT0), Txn("b", "u2", kT0 + kHour + 1)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{OutKey("u1", kT0 + kHour)}));
  EXPECT_EQ(chain.table(0).size(), 1u);
  Checkpoint cp;
  chain.CommitTo(&cp);
  EXPECT_EQ(cp.state.table("op1").size(), 1u) << "the fired window never reaches the checkpoint";
  chain.Feed({Txn("c", "u3", kT0 + 2 * kHour)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{OutKey("u1", kT0 + kHour), OutKey("u2", kT0 + 2 * kHour)}));
  chain.CommitTo(&cp);
  ASSERT_EQ(cp.state.table("op1").size(), 1u);
  EXPECT_EQ(cp.state.table("op1").begin()->first.substr(0, 3), "u3|");
}

TEST(WindowAggregateTest, RestoredWindowsFireFromAFreshOperator) {
  const std::vector<OperatorSpec> specs = {Tumbling()};
  const std::vector<std::string> before = {Txn("a", "u1", kT0, 3), Txn("b", "u2", kT0 + 10, 4),
                                           Txn("c", "u1", kT0 + 20, 5)};
  const std::vector<std::string> after = {Txn("d", "u1", kT0 + 30, 6), Txn("e", "u3", kT0 + kHour, 1)};
  Chain straight(specs);
  straight.Feed(before);
  straight.Feed(after);
  ASSERT_EQ(straight.out.emitted.size(), 2u);

  Chain first(specs);
  first.Feed(before);
  Checkpoint cp;
  first.CommitTo(&cp);
  auto second = Chain::Restore(specs, 0, cp);
  second->Feed(after);
  EXPECT_EQ(second->out.emitted, straight.out.emitted);
  EXPECT_EQ(AsWindow(second->out.emitted[0])->sum(), 14);
  EXPECT_EQ(AsWindow(second->out.emitted[0])->first_offset(), 0);
  EXPECT_EQ(AsWindow(second->out.emitted[0])->last_offset(), 3);
  EXPECT_EQ(second->counters.outputs, straight.counters.outputs);
}

TEST(WindowAggregateTest, OnBatchEndAloneFiresRestoredWindows) {
  Chain first({Tumbling()});
  first.Feed({Txn("a", "u1", kT0), Txn("b", "u2", kT0 + 1)});
  Checkpoint cp;
  first.CommitTo(&cp);

  StateRegistry registry;
  auto op = MakeOperator(Tumbling(), "op1", registry);
  ASSERT_TRUE(op.ok());
  cp.state.Restore(registry);
  RecordCounters counters;
  CollectingOutput out;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  ctx.max_event_time_ms = kT0 + kHour;  // e.g. the watermark restored from the checkpoint
  (*op)->OnBatchEnd(ctx);
  EXPECT_EQ(out.EmittedKeys(), (Keys{OutKey("u1", kT0 + kHour), OutKey("u2", kT0 + kHour)}));
  EXPECT_EQ(StateRegistryTestAccess::Tables(registry)[0]->size(), 0u);
}

TEST(WindowAggregateTest, ValidateBoundsTheWindowsPerRecord) {
  EXPECT_TRUE(WindowAggregate::Validate(Sliding(1000, 1)).ok());
  EXPECT_FALSE(WindowAggregate::Validate(Sliding(1001, 1)).ok());
  EXPECT_FALSE(WindowAggregate::Validate(Tumbling(-5)).ok());
}

}  // namespace
}  // namespace kappa::testing
