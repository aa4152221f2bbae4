// Behaviour of the built-in operators, driven through a chain exactly as a
// task drives it: decode and DLQ reasons, dedup TTL in event time, filter
// predicates, window boundaries, lateness at the limit, sliding membership,
// and independence from batch boundaries and restores.
#include <gtest/gtest.h>

#include "operators/filter.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kT0 = 1767225600000;  // an hour boundary

std::string Name(char prefix, uint64_t n) {
  std::string s(1, prefix);
  s.append(std::to_string(n));
  return s;
}

WindowSpec Tumbling(int64_t size = kHour) {
  WindowSpec w;
  w.kind = WindowSpec::Kind::kTumbling;
  w.size_ms = size;
  w.slide_ms = size;
  w.aggregates = {Aggregate::kCount, Aggregate::kSum, Aggregate::kMin, Aggregate::kMax, Aggregate::kAvg};
  return w;
}

TEST(DecodeValidateTest, SendsEachKindOfBadRecordToTheDlqWithItsReason) {
  Chain chain({Tumbling()}, 0);
  std::string good = Txn("t1", "u1", kT0, 500);
  std::string truncated = good.substr(0, good.size() / 2);
  std::string garbage = "this is not a flatbuffer at all";
  // Missing user_id: built with the raw table API.
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("t2");
  auto cur = fbb.CreateString("EUR");
  auto start = fbb.StartTable();
  fbb.AddOffset(schema::Transaction::VT_CURRENCY, cur);
  fbb.AddOffset(schema::Transaction::VT_TXN_ID, id);
  fbb.AddElement<int64_t>(schema::Transaction::VT_EVENT_TIME_MS, kT0, 0);
  fbb.Finish(flatbuffers::Offset<schema::Transaction>(fbb.EndTable(start)), schema::TransactionIdentifier());
  std::string missing(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  std::string negative = Txn("t3", "u1", kT0, -5);
  chain.Feed({good, truncated, garbage, missing, negative});
  ASSERT_EQ(chain.out.dlq.size(), 4u);
  EXPECT_EQ(chain.out.dlq[0].offset, 1);
  EXPECT_EQ(chain.out.dlq[0].reason, DlqReason::kUndecodable);
  EXPECT_EQ(chain.out.dlq[1].reason, DlqReason::kUndecodable);
  EXPECT_EQ(chain.out.dlq[2].reason, DlqReason::kMissingField);
  EXPECT_NE(chain.out.dlq[2].message.find("user_id"), std::string::npos) << chain.out.dlq[2].message;
  EXPECT_EQ(chain.out.dlq[3].reason, DlqReason::kInvalidValue);
  EXPECT_NE(chain.out.dlq[3].message.find("amount_cents"), std::string::npos);
  EXPECT_EQ(chain.counters.dlq, 4);
  EXPECT_EQ(chain.counters.out, 1);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(WindowTest, BoundariesAreHalfOpenAndEmitOnceWhenTheWatermarkPasses) {
  Chain chain({Tumbling()}, 0);
  chain.Feed({Txn("a", "u1", kT0, 10), Txn("b", "u1", kT0 + kHour - 1, 20), Txn("c", "u1", kT0 + kHour, 40)});
  // The watermark is kT0+kHour: the first window [kT0, kT0+kHour) is complete.
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  const auto* w = AsWindow(chain.out.emitted[0]);
  EXPECT_EQ(chain.out.emitted[0].key, "u1|" + std::to_string(kT0 + kHour));
  EXPECT_EQ(w->window_start_ms(), kT0);
  EXPECT_EQ(w->window_end_ms(), kT0 + kHour);
  EXPECT_EQ(w->count(), 2);
  EXPECT_EQ(w->sum(), 30);
  EXPECT_EQ(w->min(), 10);
  EXPECT_EQ(w->max(), 20);
  EXPECT_DOUBLE_EQ(w->avg(), 15.0);
  EXPECT_EQ(w->first_offset(), 0);
  EXPECT_EQ(w->last_offset(), 1);
  EXPECT_EQ(chain.out.emitted[0].lineage.last_offset, 1);
  // More records in the open window never re-emit the closed one.
  chain.Feed({Txn("d", "u1", kT0 + kHour + 5, 1)});
  EXPECT_EQ(chain.out.emitted.size(), 1u);
}

TEST(WindowTest, LatenessExactlyAtTheLimitIsOnTimeOneMillisecondMoreIsLate) {
  const int64_t lateness = 10 * 60 * 1000;
  Chain chain({Tumbling()}, lateness);
  // Max event time kT0+kHour+lateness: watermark = kT0+kHour, so window 1 closes.
  chain.Feed({Txn("a", "u1", kT0 + 5, 1), Txn("b", "u2", kT0 + kHour + lateness - 1, 1)});
  EXPECT_TRUE(chain.out.emitted.empty()) << "watermark kT0+kHour-1 has not reached the end";
  // A record exactly `lateness` behind the newest one is on time.
  chain.Feed({Txn("c", "u1", kT0 + kHour - 1, 7)});
  EXPECT_TRUE(chain.out.late.empty());
  chain.Feed({Txn("d", "u2", kT0 + kHour + lateness, 1)});  // watermark reaches kT0+kHour
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->count(), 2);
  // Now that window is emitted: a record for it is late, sent aside and counted.
  chain.Feed({Txn("e", "u1", kT0 + kHour - 1, 1000)});
  ASSERT_EQ(chain.out.late.size(), 1u);
  EXPECT_EQ(chain.out.late[0], 4);
  EXPECT_EQ(chain.counters.late, 1);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(WindowTest, SlidingWindowsHoldEachRecordSizeOverSlideTimes) {
  WindowSpec w = Tumbling();
  w.kind = WindowSpec::Kind::kSliding;
  w.slide_ms = kHour / 4;
  Chain chain({w}, 0);
  chain.Feed({Txn("a", "u1", kT0 + 10, 5), Txn("z", "u9", kT0 + 3 * kHour, 0)});
  // Windows containing kT0+10 start at kT0, kT0-15m, kT0-30m, kT0-45m: all emitted now.
  int with_a = 0;
  for (const auto& e : chain.out.emitted) {
    const auto* agg = AsWindow(e);
    if (agg->key()->str() == "u1") {
      ++with_a;
      EXPECT_LE(agg->window_start_ms(), kT0 + 10);
      EXPECT_GT(agg->window_end_ms(), kT0 + 10);
      EXPECT_EQ(agg->sum(), 5);
    }
  }
  EXPECT_EQ(with_a, 4);
  // Emitted in (window_end, key) order.
  for (size_t i = 1; i < chain.out.emitted.size(); ++i) {
    EXPECT_LE(AsWindow(chain.out.emitted[i - 1])->window_end_ms(), AsWindow(chain.out.emitted[i])->window_end_ms());
  }
}

TEST(DedupTest, RepeatsWithinTheTtlAreDroppedAfterItTheyCountAgain) {
  DedupSpec d;
  d.field = Field::kTxnId;
  d.ttl_ms = kHour;
  Chain chain({d, Tumbling(24 * kHour)}, 0);
  chain.Feed({Txn("t1", "u1", kT0), Txn("t1", "u1", kT0), Txn("t2", "u1", kT0 + kHour)});
  EXPECT_EQ(chain.counters.deduped, 1);
  // Watermark kT0+kHour: t1 (seen at kT0) is still remembered: kT0+kHour <= kT0+ttl.
  chain.Feed({Txn("t1", "u1", kT0 + 10)});
  EXPECT_EQ(chain.counters.deduped, 2);
  // Once the watermark passes kT0+ttl the entry has expired: t1 counts again.
  chain.Feed({Txn("t3", "u1", kT0 + kHour + 1), Txn("t1", "u1", kT0 + kHour + 2)});
  EXPECT_EQ(chain.counters.deduped, 2);
  EXPECT_EQ(chain.counters.out, 4);  // t1, t2, t3, and t1 again once expired
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(DedupTest, PurgingExpiredEntriesBoundsState) {
  DedupSpec d;
  d.ttl_ms = kHour;
  Chain chain({d, Tumbling()}, 0);
  std::vector<std::string> batch;
  for (int i = 0; i < 1000; ++i) batch.push_back(Txn(Name('t', i), "u1", kT0 + i));
  chain.Feed(batch);
  EXPECT_EQ(chain.registry().tables()[0]->size(), 1000u);
  chain.Feed({Txn("late-t", "u1", kT0 + 3 * kHour)});
  EXPECT_EQ(chain.registry().tables()[0]->size(), 1u) << "entries older than the TTL are purged";
}

TEST(FilterTest, PredicatesAndTheirErrors) {
  auto ne = ParsePredicate("status != cancelled");
  ASSERT_TRUE(ne.ok());
  auto ge = ParsePredicate("amount_cents >= 100");
  ASSERT_TRUE(ge.ok());
  auto cur = ParsePredicate("currency == 'EUR'");
  ASSERT_TRUE(cur.ok());
  Filter f(FilterSpec{{*ne, *ge, *cur}});
  auto check = [&](const std::string& payload) { return f.Matches(schema::GetTransaction(payload.data())); };
  EXPECT_TRUE(check(Txn("a", "u", kT0, 100)));
  EXPECT_FALSE(check(Txn("a", "u", kT0, 99)));
  EXPECT_FALSE(check(Txn("a", "u", kT0, 500, schema::TxnStatus::Cancelled)));
  EXPECT_FALSE(check(Txn("a", "u", kT0, 500, schema::TxnStatus::Approved, "USD")));
  EXPECT_FALSE(ParsePredicate("status != canceled").ok());
  EXPECT_FALSE(ParsePredicate("amount_cents > ten").ok());
  EXPECT_FALSE(ParsePredicate("colour == red").ok());
  EXPECT_FALSE(ParsePredicate("status ~ approved").ok());
  EXPECT_NE(ParsePredicate("status ~ approved").status().message().find("status ~ approved"), std::string::npos);
}

TEST(MapTest, SetsTheValueAggregatesUse) {
  MapSpec m;
  m.value_field = Field::kAmountCents;
  m.divide = 100;
  Chain chain({m, Tumbling()}, 0);
  chain.Feed({Txn("a", "u1", kT0, 1250), Txn("b", "u1", kT0 + 2 * kHour, 1)});
  ASSERT_EQ(chain.out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(chain.out.emitted[0])->sum(), 12);
}

// The same records split into batches differently, and with a snapshot and
// restore into fresh operators midway, give byte-identical outputs.
TEST(DeterminismTest, OutputsDoNotDependOnBatchingOrRestores) {
  DedupSpec d;
  d.ttl_ms = kHour;
  FilterSpec f{{*ParsePredicate("status != cancelled")}};
  const std::vector<OperatorSpec> specs = {d, f, Tumbling()};
  std::vector<std::string> payloads;
  uint64_t x = 12345;
  for (int i = 0; i < 5000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t jitter = static_cast<int64_t>((x >> 33) % (20 * 60 * 1000));
    const int64_t t = kT0 + i * 3000 - jitter;
    const auto status = (x >> 20) % 10 == 0 ? schema::TxnStatus::Cancelled : schema::TxnStatus::Approved;
    const std::string id = Name('t', (x >> 40) % 6 == 0 && i > 0 ? i - 1 : i);
    payloads.push_back(Txn(id, Name('u', (x >> 13) % 7), t, static_cast<int64_t>((x >> 8) % 1000), status));
  }
  Chain whole(specs, 5 * 60 * 1000);
  whole.Feed(payloads, 5000);

  Chain small(specs, 5 * 60 * 1000);
  small.Feed(payloads, 7);

  // Snapshot after 2,345 records (as a checkpoint would), restore into fresh operators.
  Chain first(specs, 5 * 60 * 1000);
  first.Feed(std::vector<std::string>(payloads.begin(), payloads.begin() + 2345), 100);
  StateRegistry restored_registry;
  Chain second(specs, 5 * 60 * 1000, &restored_registry);
  for (size_t i = 0; i < first.registry().tables().size(); ++i) {
    first.registry().tables()[i]->ForEachDirty([&](std::string_view k, std::string_view v) {
      ASSERT_TRUE(restored_registry.tables()[i]->Load(k, v).ok());
    });
  }
  second.set_max_event_time(first.max_event_time());
  second.set_next_offset(2345);
  second.Feed(std::vector<std::string>(payloads.begin() + 2345, payloads.end()), 333);

  auto keys_values = [](const std::vector<Emitted>& e) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& x : e) out.emplace_back(x.key, x.value);
    return out;
  };
  auto combined = keys_values(first.out.emitted);
  for (const auto& kv : keys_values(second.out.emitted)) combined.push_back(kv);
  ASSERT_GT(whole.out.emitted.size(), 20u);
  EXPECT_EQ(keys_values(small.out.emitted), keys_values(whole.out.emitted));
  EXPECT_EQ(combined, keys_values(whole.out.emitted));
  EXPECT_EQ(small.out.late, whole.out.late);
  EXPECT_GT(whole.counters.late, 0);
  EXPECT_GT(whole.counters.deduped, 0);
  EXPECT_EQ(small.counters.deduped, whole.counters.deduped);
  EXPECT_EQ(first.counters.deduped + second.counters.deduped, whole.counters.deduped);
}

}  // namespace
}  // namespace kappa::testing
