// The workload generator, in process (no broker): the same seed gives the same
// bytes; the out-of-order, duplicate and malformed fractions are as asked;
// every good record is a verifiable FlatBuffers Transaction carrying exactly
// the generated fields, every malformed one fails verification; duplicates
// are byte-identical resends; late events go back at most --max-delay-ms;
// user activity is Zipf-skewed.
#include "workload/transaction_generator.h"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "schemas/transaction_generated.h"

namespace kappa {
namespace {

GeneratorOptions Options(uint64_t seed = 11) {
  GeneratorOptions o;
  o.count = 200000;
  o.users = 5000;
  o.seed = seed;
  o.events_per_second = 50;  // one event every 20 ms of event time
  o.out_of_order_fraction = 0.1;
  o.max_delay_ms = 30000;
  o.duplicate_fraction = 0.03;
  o.malformed_fraction = 0.02;
  return o;
}

void ForEachRecord(const GeneratorOptions& options, const std::function<void(const GeneratedRecord&)>& fn) {
  TransactionGenerator gen(options);
  GeneratedRecord r;
  uint64_t n = 0;
  while (gen.Next(&r)) {
    fn(r);
    ++n;
  }
  ASSERT_EQ(n, options.count) << "the generator stops after exactly `count` records";
}

bool Verifies(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return schema::VerifyTransactionBuffer(v);
}

bool IsMalformed(RecordKind kind) { return kind != RecordKind::kValid && kind != RecordKind::kDuplicate; }

// |observed - n*p| within 5 binomial standard deviations.
void ExpectFraction(uint64_t hits, uint64_t n, double p, const char* what) {
  const double sigma = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(static_cast<double>(hits), n * p, 5 * sigma + 1) << what << ": " << hits << " of " << n;
}

TEST(TransactionGeneratorTest, SameSeedGivesTheSameBytesAnotherSeedOtherBytes) {
  auto opts = Options();
  opts.count = 20000;
  TransactionGenerator a(opts), b(opts), c(Options(12));
  GeneratedRecord ra, rb, rc;
  int differing_values = 0, differing_keys = 0;
  while (a.Next(&ra)) {
    ASSERT_TRUE(b.Next(&rb));
    ASSERT_TRUE(c.Next(&rc));
    ASSERT_EQ(ra.kind, rb.kind);
    ASSERT_EQ(ra.key, rb.key);
    ASSERT_EQ(ra.value, rb.value);
    differing_values += ra.value != rc.value;
    differing_keys += ra.key != rc.key;
  }
  EXPECT_FALSE(b.Next(&rb));
  EXPECT_GT(differing_values, 19000) << "another seed is another workload";
  EXPECT_GT(differing_keys, 10000) << "another seed draws other users";
}

TEST(TransactionGeneratorTest, FractionsAreAsAskedAndTheStatsCountThem) {
  const auto opts = Options();
  std::map<RecordKind, uint64_t> kinds;
  uint64_t out_of_order = 0;
  ForEachRecord(opts, [&](const GeneratedRecord& r) {
    ++kinds[r.kind];
    out_of_order += r.out_of_order;
  });
  const uint64_t n = opts.count;
  const uint64_t malformed = kinds[RecordKind::kGarbage] + kinds[RecordKind::kTruncated] +
                             kinds[RecordKind::kMissingField];
  ExpectFraction(malformed, n, opts.malformed_fraction, "malformed");
  ExpectFraction(kinds[RecordKind::kDuplicate], n, opts.duplicate_fraction, "duplicates");
  ExpectFraction(out_of_order, kinds[RecordKind::kValid], opts.out_of_order_fraction,
                 "out of order (of new transactions)");
  // The three kinds of malformed payload come in about equal shares.
  for (RecordKind k : {RecordKind::kGarbage, RecordKind::kTruncated, RecordKind::kMissingField}) {
    ExpectFraction(kinds[k], malformed, 1.0 / 3, RecordKindName(k));
  }

  // The summary `kappa gen` prints comes from these counters.
  TransactionGenerator gen(opts);
  GeneratedRecord r;
  while (gen.Next(&r)) {
  }
  const auto& s = gen.stats();
  EXPECT_EQ(s.total, n);
  EXPECT_EQ(s.valid, kinds[RecordKind::kValid]);
  EXPECT_EQ(s.duplicates, kinds[RecordKind::kDuplicate]);
  EXPECT_EQ(s.garbage, kinds[RecordKind::kGarbage]);
  EXPECT_EQ(s.truncated, kinds[RecordKind::kTruncated]);
  EXPECT_EQ(s.missing_field, kinds[RecordKind::kMissingField]);
  EXPECT_EQ(s.out_of_order, out_of_order);
  EXPECT_EQ(s.valid + s.duplicates + s.malformed(), s.total);
}

TEST(TransactionGeneratorTest, GoodRecordsRoundTripAndMalformedOnesFailVerification) {
  uint64_t good = 0, bad = 0;
  ForEachRecord(Options(), [&](const GeneratedRecord& r) {
    EXPECT_FALSE(r.key.empty()) << "every record is keyed, malformed ones too";
    if (IsMalformed(r.kind)) {
      ++bad;
      EXPECT_FALSE(Verifies(r.value)) << RecordKindName(r.kind) << " record verified";
      if (r.kind == RecordKind::kMissingField) {
        // A real Transaction buffer, only lacking a required string.
        EXPECT_TRUE(flatbuffers::BufferHasIdentifier(r.value.data(), schema::TransactionIdentifier()));
      }
      return;
    }
    ++good;
    ASSERT_TRUE(Verifies(r.value)) << RecordKindName(r.kind) << " " << r.txn_id;
    const auto* t = schema::GetTransaction(r.value.data());
    EXPECT_EQ(t->txn_id()->str(), r.txn_id);
    EXPECT_EQ(t->user_id()->str(), r.user_id);
    EXPECT_EQ(r.key, r.user_id) << "records are keyed by user_id";
    EXPECT_EQ(static_cast<int8_t>(t->status()), r.status);
    EXPECT_GE(r.status, static_cast<int8_t>(schema::TxnStatus::Approved));
    EXPECT_LE(r.status, static_cast<int8_t>(schema::TxnStatus::Refunded));
    EXPECT_EQ(t->amount_cents(), r.amount_cents);
    EXPECT_GT(r.amount_cents, 0);
    EXPECT_EQ(t->currency()->str(), r.currency);
    EXPECT_EQ(r.currency.size(), 3u);
    EXPECT_EQ(t->event_time_ms(), r.event_time_ms);
  });
  EXPECT_GT(good, 0u);
  EXPECT_GT(bad, 0u);
}

TEST(TransactionGeneratorTest, DuplicatesResendAnEarlierTransactionByteForByte) {
  std::map<std::string, std::string> first_bytes;  // txn_id -> bytes of its first send
  uint64_t duplicates = 0;
  ForEachRecord(Options(), [&](const GeneratedRecord& r) {
    if (r.kind == RecordKind::kValid) {
      EXPECT_TRUE(first_bytes.emplace(r.txn_id, r.value).second) << "txn_id " << r.txn_id << " reused by a new transaction";
    } else if (r.kind == RecordKind::kDuplicate) {
      ++duplicates;
      auto it = first_bytes.find(r.txn_id);
      ASSERT_NE(it, first_bytes.end()) << "duplicate of a txn_id never sent: " << r.txn_id;
      EXPECT_EQ(it->second, r.value) << "a retry sends identical bytes";
    }
  });
  EXPECT_GT(duplicates, 0u);
}

TEST(TransactionGeneratorTest, OutOfOrderEventsGoBackAtMostMaxDelay) {
  const auto opts = Options();
  const double step_ms = 1000.0 / opts.events_per_second;
  int64_t latest = INT64_MIN;              // the latest event time sent so far
  int64_t last_in_order = INT64_MIN;
  int64_t first_in_order = INT64_MIN;
  uint64_t index = 0, first_index = 0, last_index = 0;
  uint64_t out_of_order = 0, behind_latest = 0, too_late = 0, went_back = 0;
  int64_t max_lateness = 0;
  std::string first_too_late, first_went_back;
  ForEachRecord(opts, [&](const GeneratedRecord& r) {
    const uint64_t i = index++;
    if (r.kind != RecordKind::kValid) return;
    if (r.out_of_order) {
      ++out_of_order;
      const int64_t lateness = latest - r.event_time_ms;
      if (lateness > opts.max_delay_ms && too_late++ == 0) first_too_late = r.txn_id;
      behind_latest += lateness > 0;
      max_lateness = std::max(max_lateness, lateness);
    } else {
      if (r.event_time_ms < last_in_order && went_back++ == 0) first_went_back = r.txn_id;
      last_in_order = r.event_time_ms;
      last_index = i;
      if (first_in_order == INT64_MIN) {
        first_in_order = r.event_time_ms;
        first_index = i;
      }
    }
    latest = std::max(latest, r.event_time_ms);
  });
  EXPECT_EQ(too_late, 0u) << "first: " << first_too_late << "; lateness beyond --max-delay-ms";
  EXPECT_EQ(went_back, 0u) << "first: " << first_went_back << "; an in-order event time went back";
  ASSERT_GT(out_of_order, 1000u);
  // A delay of less than one event step does not overtake anything; all
  // others (the vast majority) arrive after an event with a later time.
  EXPECT_GT(behind_latest, out_of_order * 99 / 100);
  EXPECT_GT(max_lateness, opts.max_delay_ms * 9 / 10) << "delays span up to --max-delay-ms";
  // In-order event time advances at --rate events per second.
  const double observed_step = static_cast<double>(last_in_order - first_in_order) / (last_index - first_index);
  EXPECT_NEAR(observed_step, step_ms, step_ms / 100);
  EXPECT_GE(first_in_order, opts.start_time_ms);
  EXPECT_LT(first_in_order, opts.start_time_ms + 10 * step_ms);
}

TEST(TransactionGeneratorTest, WithoutFractionsEveryRecordIsANewInOrderTransaction) {
  auto opts = Options();
  opts.out_of_order_fraction = opts.duplicate_fraction = opts.malformed_fraction = 0;
  opts.count = 50000;
  std::set<std::string> txn_ids;
  int64_t previous = INT64_MIN;
  ForEachRecord(opts, [&](const GeneratedRecord& r) {
    ASSERT_EQ(r.kind, RecordKind::kValid);
    ASSERT_FALSE(r.out_of_order);
    ASSERT_GE(r.event_time_ms, previous);
    previous = r.event_time_ms;
    txn_ids.insert(r.txn_id);
  });
  EXPECT_EQ(txn_ids.size(), opts.count);
}

// Records per user, busiest first.
std::vector<uint64_t> ActivityPerUser(const GeneratorOptions& options) {
  std::map<std::string, uint64_t> per_user;
  ForEachRecord(options, [&](const GeneratedRecord& r) {
    if (r.kind == RecordKind::kValid) ++per_user[r.user_id];
  });
  std::vector<uint64_t> counts;
  for (const auto& [user, count] : per_user) counts.push_back(count);
  std::sort(counts.rbegin(), counts.rend());
  return counts;
}

TEST(TransactionGeneratorTest, UserActivityIsZipfSkewed) {
  auto opts = Options();
  const auto skewed = ActivityPerUser(opts);
  ASSERT_LE(skewed.size(), opts.users) << "no more distinct users than --users";
  EXPECT_GT(skewed.front(), 20 * skewed[skewed.size() / 2]) << "the busiest user dwarfs the median one";

  // The exponent is what skews it: at 0 every user is about as busy.
  opts.zipf_exponent = 0;
  const auto flat = ActivityPerUser(opts);
  EXPECT_EQ(flat.size(), opts.users);
  EXPECT_LT(flat.front(), 2 * flat[flat.size() / 2]);
}

}  // namespace
}  // namespace kappa
