// The workload generator: deterministic bytes, the asked-for fractions of
// out-of-order, duplicate and malformed records, verifiable FlatBuffers for
// every good record and failing verification for every malformed one.
#include "engine/transaction_generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "schemas/transaction_generated.h"

namespace kappa {
namespace {

GeneratorOptions Options(uint64_t seed = 11) {
  GeneratorOptions o;
  o.count = 200000;
  o.users = 5000;
  o.seed = seed;
  o.events_per_second = 50;
  o.out_of_order_fraction = 0.1;
  o.max_delay_ms = 30000;
  o.duplicate_fraction = 0.03;
  o.malformed_fraction = 0.02;
  return o;
}

// |observed - expected| within 5 binomial standard deviations.
void ExpectFraction(uint64_t hits, uint64_t n, double p, const char* what) {
  const double sigma = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(static_cast<double>(hits), n * p, 5 * sigma + 1) << what;
}

TEST(TransactionGeneratorTest, SameSeedSameBytesOtherSeedOtherBytes) {
  auto opts = Options();
  opts.count = 20000;
  TransactionGenerator a(opts), b(opts), c(Options(12));
  GeneratedRecord ra, rb, rc;
  int differing = 0;
  while (a.Next(&ra)) {
    ASSERT_TRUE(b.Next(&rb));
    ASSERT_TRUE(c.Next(&rc));
    ASSERT_EQ(ra.key, rb.key);
    ASSERT_EQ(ra.value, rb.value);
    differing += ra.value != rc.value;
  }
  EXPECT_FALSE(b.Next(&rb));
  EXPECT_GT(differing, 19000);
}

TEST(TransactionGeneratorTest, FractionsAreAsAskedAndEveryRecordVerifiesAsItShould) {
  const auto opts = Options();
  TransactionGenerator gen(opts);
  GeneratedRecord r;
  std::map<std::string, std::string> first_bytes;  // txn_id -> bytes
  std::map<std::string, uint64_t> per_user;
  int64_t max_time_so_far = INT64_MIN;
  uint64_t ooo = 0, dup = 0, bad = 0, valid = 0, n = 0;
  while (gen.Next(&r)) {
    ++n;
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(r.value.data()), r.value.size());
    const bool verifies = schema::VerifyTransactionBuffer(v);
    if (r.kind == RecordKind::kValid || r.kind == RecordKind::kDuplicate) {
      ASSERT_TRUE(verifies) << RecordKindName(r.kind);
      const auto* t = schema::GetTransaction(r.value.data());
      EXPECT_EQ(t->txn_id()->str(), r.txn_id);
      EXPECT_EQ(t->user_id()->str(), r.user_id);
      EXPECT_EQ(r.key, r.user_id);
      EXPECT_EQ(static_cast<int8_t>(t->status()), r.status);
      EXPECT_EQ(t->amount_cents(), r.amount_cents);
      EXPECT_EQ(t->currency()->str(), r.currency);
      EXPECT_EQ(t->event_time_ms(), r.event_time_ms);
      if (r.kind == RecordKind::kDuplicate) {
        ++dup;
        ASSERT_TRUE(first_bytes.count(r.txn_id)) << "a duplicate repeats an earlier txn";
        EXPECT_EQ(first_bytes[r.txn_id], r.value) << "a retry sends identical bytes";
      } else {
        ++valid;
        EXPECT_FALSE(first_bytes.count(r.txn_id)) << "txn ids are unique";
        first_bytes[r.txn_id] = r.value;
        ++per_user[r.user_id];
        if (r.out_of_order) {
          ++ooo;
          EXPECT_LT(r.event_time_ms, max_time_so_far + 1000);
          EXPECT_GE(r.event_time_ms, max_time_so_far - opts.max_delay_ms - 1000);
        }
        max_time_so_far = std::max(max_time_so_far, r.event_time_ms);
      }
    } else {
      ++bad;
      EXPECT_FALSE(verifies) << RecordKindName(r.kind) << " record verified";
    }
  }
  EXPECT_EQ(n, opts.count);
  ExpectFraction(bad, n, opts.malformed_fraction, "malformed");
  ExpectFraction(dup, n, opts.duplicate_fraction, "duplicates");
  ExpectFraction(ooo, valid, opts.out_of_order_fraction, "out of order");
  EXPECT_EQ(gen.stats().malformed(), bad);
  EXPECT_EQ(gen.stats().duplicates, dup);
  EXPECT_GT(gen.stats().garbage, 0u);
  EXPECT_GT(gen.stats().truncated, 0u);
  EXPECT_GT(gen.stats().missing_field, 0u);
  // Zipf skew: the busiest user has far more transactions than the median.
  std::vector<uint64_t> counts;
  for (const auto& [u, c] : per_user) counts.push_back(c);
  std::sort(counts.begin(), counts.end());
  EXPECT_GT(counts.back(), 20 * counts[counts.size() / 2]);
}

}  // namespace
}  // namespace kappa
