// Dedup: a repeat within the TTL of event time is dropped and counted; once
// the record's own watermark passes first_seen + ttl the key counts again and
// is remembered anew. Purging expired entries bounds state without changing
// results.
#include "operators/dedup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

using Keys = std::vector<std::string>;

TEST(DedupTest, ExpiryIsStrictlyAfterFirstSeenPlusTtl) {
  EXPECT_FALSE(Dedup::Expired(kT0, kHour, kT0 + kHour));
  EXPECT_TRUE(Dedup::Expired(kT0, kHour, kT0 + kHour + 1));
  EXPECT_FALSE(Dedup::Expired(kT0, kHour, kNoTime));
  EXPECT_FALSE(Dedup::Expired(INT64_MAX - 5, kHour, INT64_MAX)) << "no overflow";
}

TEST(DedupTest, RepeatWithinTheTtlIsDroppedAfterItCountsAgain) {
  Chain chain({DedupBy(kHour), EmitSpec{}});
  chain.Feed({Txn("t1", "u1", kT0), Txn("t1", "u1", kT0 + 5), Txn("t2", "u1", kT0 + kHour)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{"t1", "t2"}));
  EXPECT_EQ(chain.counters.deduped, 1);
  // Watermark kT0+kHour == first_seen + ttl: still remembered (exactly at the limit).
  chain.Feed({Txn("t1", "u1", kT0 + 10)});
  EXPECT_EQ(chain.counters.deduped, 2);
  // This record moves the watermark to kT0+kHour+1 itself: t1 has expired for it.
  chain.Feed({Txn("t1", "u1", kT0 + kHour + 1)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{"t1", "t2", "t1"}));
  // ...and is remembered from its own event time: a repeat now is dropped again.
  chain.Feed({Txn("t1", "u1", kT0 + 2 * kHour)});
  EXPECT_EQ(chain.counters.deduped, 3);
  chain.Feed({Txn("t1", "u1", kT0 + 2 * kHour + 2)});
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{"t1", "t2", "t1", "t1"}));
  EXPECT_EQ(chain.counters.deduped, 3);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(DedupTest, UsesEachRecordsOwnWatermarkNotTheBatchEnd) {
  // In one batch: the repeat at offset 1 is judged at watermark kT0+1, even
  // though the batch ends with the watermark far past the TTL.
  const std::vector<std::string> payloads = {Txn("t1", "u", kT0), Txn("t1", "u", kT0 + 1),
                                             Txn("x", "u", kT0 + kHour + 5), Txn("t1", "u", kT0 + 2)};
  Chain one_batch({DedupBy(kHour), EmitSpec{}});
  one_batch.Feed(payloads, payloads.size());
  Chain per_record({DedupBy(kHour), EmitSpec{}});
  per_record.Feed(payloads, 1);
  EXPECT_EQ(one_batch.out.EmittedKeys(), (Keys{"t1", "x", "t1"}));
  EXPECT_EQ(per_record.out.emitted, one_batch.out.emitted);
  EXPECT_EQ(one_batch.counters.deduped, 1);
}

TEST(DedupTest, AllowedLatenessDelaysExpiry) {
  const int64_t lateness = 10 * kMinute;
  Chain chain({DedupBy(kHour), EmitSpec{}}, lateness);
  chain.Feed({Txn("t1", "u", kT0), Txn("x", "u", kT0 + kHour + lateness), Txn("t1", "u", kT0 + 1)});
  EXPECT_EQ(chain.counters.deduped, 1) << "watermark kT0+kHour: not expired";
  chain.Feed({Txn("y", "u", kT0 + kHour + lateness + 1), Txn("t1", "u", kT0 + 2)});
  EXPECT_EQ(chain.counters.deduped, 1) << "watermark kT0+kHour+1: expired";
  EXPECT_EQ(chain.out.EmittedKeys(), (Keys{"t1", "x", "y", "t1"}));
}

TEST(DedupTest, DedupsByAnyFieldNumbersAsDecimalText) {
  Chain by_user({DedupBy(kHour, Field::kUserId), EmitSpec{}});
  by_user.Feed({Txn("a", "u1", kT0), Txn("b", "u2", kT0), Txn("c", "u1", kT0 + 1)});
  EXPECT_EQ(by_user.out.EmittedKeys(), (Keys{"a", "b"}));

  Chain by_amount({DedupBy(kHour, Field::kAmountCents), EmitSpec{}});
  by_amount.Feed(
      {Txn("a", "u", kT0, 1250), Txn("b", "u", kT0, -3), Txn("c", "u", kT0, 1250), Txn("d", "u", kT0, 7)});
  EXPECT_EQ(by_amount.out.EmittedKeys(), (Keys{"a", "d"}));  // b is invalid (negative): DLQ
  std::vector<std::string> keys;
  by_amount.table(0).ForEachDirty([&](std::string_view k, std::string_view) { keys.emplace_back(k); });
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (Keys{"1250", "7"}));
}

TEST(DedupTest, StateEntryHoldsTheFirstSeenEventTime) {
  Chain chain({DedupBy(kHour), EmitSpec{}});
  chain.Feed({Txn("t1", "u", kT0 + 42), Txn("t1", "u", kT0 + 50)});
  int entries = 0;
  chain.table(0).ForEachDirty([&](std::string_view k, std::string_view v) {
    ++entries;
    EXPECT_EQ(k, "t1");
    ASSERT_EQ(v.size(), sizeof(Dedup::Entry));
    Dedup::Entry e;
    std::memcpy(&e, v.data(), sizeof(e));
    EXPECT_EQ(e.first_seen_ms, kT0 + 42) << "a repeat does not refresh the entry";
  });
  EXPECT_EQ(entries, 1);
}

TEST(DedupTest, PurgingExpiredEntriesBoundsStateAndReachesTheCheckpoint) {
  Chain chain({DedupBy(kHour), EmitSpec{}});
  std::vector<std::string> batch;
  for (int i = 0; i < 1000; ++i) batch.push_back(Txn(Name('t', i), "u1", kT0 + i));
  chain.Feed(batch);
  EXPECT_EQ(chain.table(0).size(), 1000u);
  Checkpoint cp;
  chain.CommitTo(&cp);
  EXPECT_EQ(cp.state.table("op1").size(), 1000u);
  chain.Feed({Txn("later", "u1", kT0 + 3 * kHour)});
  EXPECT_EQ(chain.table(0).size(), 1u) << "entries older than the TTL are purged";
  chain.CommitTo(&cp);
  EXPECT_EQ(cp.state.table("op1").size(), 1u) << "purges are erasures in the next checkpoint";
}

TEST(DedupTest, PurgeTimingNeverChangesResults) {
  // Keys repeat at gaps around the TTL; batch sizes move the purges around.
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) {
    const int64_t t = kT0 + i * (kMinute / 2);
    payloads.push_back(Txn(Name('t', (i * 7) % 110), "u", t));  // a key recurs every 55 min
  }
  Chain whole({DedupBy(kHour), EmitSpec{}});
  whole.Feed(payloads, payloads.size());
  EXPECT_GT(whole.counters.deduped, 0);
  EXPECT_LT(whole.counters.deduped, 3000);
  for (size_t batch_size : {1u, 7u, 120u, 121u}) {
    Chain split({DedupBy(kHour), EmitSpec{}});
    split.Feed(payloads, batch_size);
    EXPECT_EQ(split.out.emitted, whole.out.emitted) << "batch size " << batch_size;
    EXPECT_EQ(split.counters.deduped, whole.counters.deduped);
  }
}

}  // namespace
}  // namespace kappa::testing
