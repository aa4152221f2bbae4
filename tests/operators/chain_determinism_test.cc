// The determinism story (DESIGN.md invariant 3): a task's outputs, late and
// dead-letter records and counters are a function of its records in offset
// order only. The same stream is fed in one batch, in small and in random
// batches, and with checkpoints and restarts into fresh operators (state
// restored through the backend's dirty/erased/Load path) at several points;
// every run must produce byte-identical results, and the record-path
// counters must balance.
#include <gtest/gtest.h>

#include <set>

#include "base/random.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

constexpr int64_t kLateness = 5 * kMinute;

// 5,000 records a few seconds apart with up to 20 minutes of disorder (so
// some are late), repeated txn_ids (dedup), cancelled ones (filter), and
// garbage, truncated and missing-field payloads (DLQ).
std::vector<std::string> Stream() {
  Random random(2024);
  std::vector<std::string> payloads;
  for (int i = 0; i < 5000; ++i) {
    const int64_t t = kT0 + i * 3000 - static_cast<int64_t>(random.Uniform(20 * kMinute));
    const auto status = random.Bernoulli(0.1) ? schema::TxnStatus::Cancelled : schema::TxnStatus::Approved;
    const int id =
        random.Bernoulli(0.15) && i > 0 ? i - 1 - static_cast<int>(random.Uniform(std::min(i, 50))) : i;
    std::string p = Txn(Name('t', id), Name('u', random.Uniform(7)), t,
                        static_cast<int64_t>(random.Uniform(1000)), status);
    const uint64_t damage = random.Uniform(100);
    if (damage == 0) p = "garbage " + std::to_string(i);
    if (damage == 1) p.resize(p.size() / 2);
    if (damage == 2) p = RawTxn(Name('t', i).c_str(), nullptr, "EUR", 5, t);
    payloads.push_back(std::move(p));
  }
  return payloads;
}

struct Results {
  std::vector<Emitted> emitted;
  std::vector<int64_t> late;
  std::vector<CollectingOutput::Dead> dlq;
  RecordCounters counters;

  void Append(const Chain& chain) {
    emitted.insert(emitted.end(), chain.out.emitted.begin(), chain.out.emitted.end());
    late.insert(late.end(), chain.out.late.begin(), chain.out.late.end());
    dlq.insert(dlq.end(), chain.out.dlq.begin(), chain.out.dlq.end());
    counters = chain.counters;
  }
};

Results FeedInBatches(const std::vector<OperatorSpec>& specs, const std::vector<std::string>& payloads,
                      const std::vector<size_t>& sizes) {
  Chain chain(specs, kLateness);
  chain.FeedBatches(payloads, sizes);
  Results r;
  r.Append(chain);
  return r;
}

std::vector<size_t> Uniform(size_t total, size_t size) {
  return std::vector<size_t>((total + size - 1) / size, size);
}

std::vector<size_t> RandomSizes(size_t total, uint64_t seed) {
  Random random(seed);
  std::vector<size_t> sizes;
  for (size_t fed = 0; fed < total;) {
    sizes.push_back(1 + random.Uniform(random.Bernoulli(0.2) ? 500 : 20));
    fed += sizes.back();
  }
  return sizes;
}

// Checkpoints after every batch; after the batches listed in `restart_after`
// the chain is thrown away and rebuilt from the last checkpoint.
Results FeedWithRestarts(const std::vector<OperatorSpec>& specs, const std::vector<std::string>& payloads,
                         const std::vector<size_t>& sizes, const std::set<size_t>& restart_after) {
  Results results;
  Checkpoint cp;
  auto chain = std::make_unique<Chain>(specs, kLateness);
  size_t fed = 0;
  for (size_t b = 0; b < sizes.size(); ++b) {
    const size_t n = std::min(sizes[b], payloads.size() - fed);
    chain->FeedBatches(std::vector<std::string>(payloads.begin() + fed, payloads.begin() + fed + n), {n});
    fed += n;
    chain->CommitTo(&cp);
    if (restart_after.count(b)) {
      results.Append(*chain);
      chain = Chain::Restore(specs, kLateness, cp);
    }
  }
  results.Append(*chain);
  return results;
}

void ExpectSame(const Results& a, const Results& b, const std::string& how) {
  EXPECT_EQ(a.emitted, b.emitted) << how;
  EXPECT_EQ(a.late, b.late) << how;
  EXPECT_EQ(a.dlq, b.dlq) << how;
  EXPECT_EQ(a.counters.in, b.counters.in) << how;
  EXPECT_EQ(a.counters.out, b.counters.out) << how;
  EXPECT_EQ(a.counters.deduped, b.counters.deduped) << how;
  EXPECT_EQ(a.counters.filtered, b.counters.filtered) << how;
  EXPECT_EQ(a.counters.late, b.counters.late) << how;
  EXPECT_EQ(a.counters.dlq, b.counters.dlq) << how;
  EXPECT_EQ(a.counters.outputs, b.counters.outputs) << how;
  EXPECT_TRUE(b.counters.Balanced()) << how;
}

void CheckDeterminism(const std::vector<OperatorSpec>& specs, bool windowed) {
  const auto payloads = Stream();
  const Results whole = FeedInBatches(specs, payloads, {payloads.size()});
  // The stream exercises every path, or the comparison proves little.
  EXPECT_EQ(whole.counters.in, 5000);
  EXPECT_TRUE(whole.counters.Balanced());
  EXPECT_GT(whole.counters.deduped, 100);
  EXPECT_GT(whole.counters.filtered, 100);
  EXPECT_GT(whole.counters.dlq, 50);
  EXPECT_GT(whole.emitted.size(), 20u);
  if (windowed) {
    EXPECT_GT(whole.counters.late, 10);
  }
  bool has_missing_field = false;
  for (const auto& d : whole.dlq) has_missing_field |= d.reason == DlqReason::kMissingField;
  EXPECT_TRUE(has_missing_field);

  ExpectSame(whole, FeedInBatches(specs, payloads, Uniform(payloads.size(), 1)), "one record per batch");
  ExpectSame(whole, FeedInBatches(specs, payloads, Uniform(payloads.size(), 7)), "batches of 7");
  ExpectSame(whole, FeedInBatches(specs, payloads, RandomSizes(payloads.size(), 1)), "random batches");
  const auto sizes = RandomSizes(payloads.size(), 2);
  ExpectSame(whole, FeedWithRestarts(specs, payloads, sizes, {0, 3, sizes.size() / 2, sizes.size() - 2}),
             "restarts at four checkpoints");
  std::set<size_t> every_batch;
  for (size_t b = 0; b < 60; ++b) every_batch.insert(b);
  ExpectSame(whole, FeedWithRestarts(specs, payloads, Uniform(payloads.size(), 83), every_batch),
             "a restart after every batch");
}

DedupSpec Dedup() {
  return DedupBy(kHour);
}
FilterSpec NotCancelled() {
  return FilterSpec{{*ParsePredicate("status != cancelled")}};
}

TEST(ChainDeterminismTest, TumblingWindowChain) {
  CheckDeterminism({Dedup(), NotCancelled(), MapSpec{Field::kAmountCents, 3, 2}, Tumbling(kHour)}, true);
}

TEST(ChainDeterminismTest, SlidingWindowChain) {
  // Short windows, so that the stream's disorder makes some records late for all of them.
  CheckDeterminism({Dedup(), NotCancelled(), Sliding(10 * kMinute, 5 * kMinute)}, true);
}

TEST(ChainDeterminismTest, StatelessEmitChainAfterDedup) {
  CheckDeterminism({Dedup(), NotCancelled(), EmitSpec{Field::kUserId}}, false);
}

}  // namespace
}  // namespace kappa::testing
