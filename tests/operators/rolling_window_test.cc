// Rolling per-event windows: every accepted record gets one row of features
// over its key's records with event time in (t - size, t] accepted so far;
// late records go to the late output; restores reproduce an uninterrupted
// run byte for byte; state stays bounded by size + allowed lateness.
#include "operators/rolling_window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/job_spec.h"
#include "operator_test_util.h"
#include "operators/features.h"

namespace kappa::testing {
namespace {

const char kFeatures[] =
    "{n: count, spend: sum(amount_cents), lo: min(amount_cents), hi: max(amount_cents), "
    "mean: avg(amount_cents), first_amt: first(amount_cents), last_amt: last(amount_cents), "
    "currencies: count_distinct(currency), amounts: count_distinct(amount_cents), "
    "t_min: min(event_time_ms)}";

std::string JobYaml(const std::string& window_body, const std::string& lateness = "30m") {
  return "job: rolling\nversion: 1\nsource: {topic: txns, start: earliest}\noperators:\n  - window: " +
         window_body + "\nallowed_lateness: " + lateness +
         "\nsink: {topic: out}\ndlq: {topic: out.dlq}\nlate: {topic: out.late}\n";
}

WindowSpec ParseWindow(const std::string& window_body) {
  auto spec = ParseJobSpec(JobYaml(window_body));
  if (!spec.ok()) throw std::runtime_error(spec.status().ToString());
  return std::get<WindowSpec>(spec->operators.at(0));
}

WindowSpec Rolling(int64_t size_ms) {
  return ParseWindow("{type: rolling, size: " + std::to_string(size_ms) + "ms, key: user_id, features: " +
                     std::string(kFeatures) + "}");
}

struct Txn_ {
  std::string id, user, currency;
  int64_t time, amount;
};

// A stream over ~20 users: mostly in order, with jitter within the allowed
// lateness, some records beyond it (late), repeated event times, and a few
// amounts near the int64 limits (sums wrap).
std::vector<Txn_> Generate(size_t n, int64_t lateness, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Txn_> out;
  int64_t clock = kT0;
  // Values over 8 bytes are kept in the distinct table, shorter ones inline.
  const char* currencies[] = {"EUR", "USD", "GBP", "CHF", "JPY", "a-long-currency-name"};
  for (size_t i = 0; i < n; ++i) {
    clock += static_cast<int64_t>(rng() % (2 * kMinute));
    int64_t t = clock;
    const uint64_t r = rng() % 100;
    if (r < 25) {
      t -= static_cast<int64_t>(rng() % static_cast<uint64_t>(lateness));  // out of order, on time
    } else if (r < 30) {
      t -= lateness + 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * lateness));  // likely late
    } else if (r < 40 && !out.empty()) {
      t = out[rng() % out.size()].time;  // an event time seen before (maybe late)
    }
    if (rng() % 200 == 0) t = clock - lateness;  // exactly at the watermark: on time
    int64_t amount = static_cast<int64_t>(rng() % 50) * 10;
    if (rng() % 300 == 0) amount = std::numeric_limits<int64_t>::max() - static_cast<int64_t>(rng() % 5);
    out.push_back({"t" + std::to_string(i), Name('u', rng() % 20), currencies[rng() % 6], t, amount});
  }
  return out;
}

std::vector<std::string> Payloads(const std::vector<Txn_>& txns) {
  std::vector<std::string> p;
  for (const Txn_& t : txns) p.push_back(Txn(t.id, t.user, t.time, t.amount, schema::TxnStatus::Approved, t.currency));
  return p;
}

int64_t Wrap(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }

struct Expected {
  std::vector<Emitted> rows;
  std::vector<int64_t> late;
};

// The definition, computed directly: for each record (offset order), late
// iff its time is below the watermark after it; otherwise its row is over
// the accepted records of its user so far with time in (t - size, t].
Expected BruteForce(const std::vector<Txn_>& txns, int64_t size, int64_t lateness, const WindowSpec& spec) {
  Expected e;
  RowEncoder row(RowFormat::kJson, spec.RowColumns());
  std::vector<size_t> accepted;
  int64_t max_time = kNoTime;
  for (size_t i = 0; i < txns.size(); ++i) {
    const Txn_& r = txns[i];
    max_time = std::max(max_time, r.time);
    if (r.time < max_time - lateness) {
      e.late.push_back(static_cast<int64_t>(i));
      continue;
    }
    accepted.push_back(i);
    std::vector<size_t> in;  // (time, offset) order
    for (size_t j : accepted) {
      if (txns[j].user == r.user && txns[j].time > r.time - size && txns[j].time <= r.time) in.push_back(j);
    }
    std::stable_sort(in.begin(), in.end(), [&](size_t a, size_t b) { return txns[a].time < txns[b].time; });
    int64_t sum = 0, lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    int64_t tmin = std::numeric_limits<int64_t>::max();
    std::vector<std::string> cur;
    std::vector<int64_t> amounts;
    for (size_t j : in) {
      sum = Wrap(sum, txns[j].amount);
      lo = std::min(lo, txns[j].amount);
      hi = std::max(hi, txns[j].amount);
      tmin = std::min(tmin, txns[j].time);
      cur.push_back(txns[j].currency);
      amounts.push_back(txns[j].amount);
    }
    std::sort(cur.begin(), cur.end());
    std::sort(amounts.begin(), amounts.end());
    const auto n = static_cast<int64_t>(in.size());
    row.Begin();
    row.Str(r.user);
    row.Int(r.time);
    row.Int(n);
    row.Int(sum);
    row.Int(lo);
    row.Int(hi);
    row.Double(static_cast<double>(sum) / static_cast<double>(n));
    row.Int(txns[in.front()].amount);
    row.Int(txns[in.back()].amount);
    row.Int(std::unique(cur.begin(), cur.end()) - cur.begin());
    row.Int(std::unique(amounts.begin(), amounts.end()) - amounts.begin());
    row.Int(tmin);
    const auto bytes = row.Finish();
    e.rows.push_back({r.user + "|0|" + std::to_string(i),
                      std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                      OutputLineage{0, static_cast<int64_t>(i), static_cast<int64_t>(i)}});
  }
  return e;
}

void ExpectSameRows(const std::vector<Emitted>& got, const std::vector<Emitted>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], want[i]) << "row " << i << "\n got  " << got[i].value << "\n want " << want[i].value;
  }
}

TEST(RollingWindowTest, EveryAcceptedRecordGetsTheFeaturesOfItsRangeAsOfItsArrival) {
  const int64_t size = 2 * kHour, lateness = 30 * kMinute;
  const WindowSpec spec = Rolling(size);
  const auto txns = Generate(4000, lateness, 7);
  const Expected want = BruteForce(txns, size, lateness, spec);
  ASSERT_GT(want.late.size(), 50u) << "the stream must have late records";
  ASSERT_GT(want.rows.size(), 3000u);
  Chain chain({spec}, lateness);
  chain.FeedBatches(Payloads(txns), {1, 2, 500, 37, 1000, 3000});
  ExpectSameRows(chain.out.emitted, want.rows);
  EXPECT_EQ(chain.out.late, want.late);
  EXPECT_EQ(chain.counters.late, static_cast<int64_t>(want.late.size()));
  EXPECT_EQ(chain.counters.out, static_cast<int64_t>(want.rows.size()));
  EXPECT_EQ(chain.counters.outputs, static_cast<int64_t>(want.rows.size()));
}

TEST(RollingWindowTest, ARecordAtTheWatermarkIsOnTimeOneMillisecondBelowIsLate) {
  const WindowSpec spec = Rolling(kHour);
  Chain chain({spec}, 10 * kMinute);
  chain.Feed({Txn("a", "u", kT0 + kHour, 5), Txn("b", "u", kT0 + 50 * kMinute, 7),
              Txn("c", "u", kT0 + 50 * kMinute - 1, 9), Txn("d", "u", kT0, 11)});
  EXPECT_EQ(chain.out.late, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(chain.out.emitted.size(), 2u);
  EXPECT_EQ(chain.out.emitted[1].key, "u|0|1");
  // b (50 min) sees a (60 min)? No: a is after b's time, so only b itself.
  EXPECT_NE(chain.out.emitted[1].value.find("\"n\":1,"), std::string::npos) << chain.out.emitted[1].value;
  EXPECT_NE(chain.out.emitted[1].value.find("\"event_time\":" + std::to_string(kT0 + 50 * kMinute)),
            std::string::npos)
      << chain.out.emitted[1].value;
}

TEST(RollingWindowTest, ARestoreMidStreamGivesExactlyTheRowsOfAnUninterruptedRun) {
  const int64_t size = 2 * kHour, lateness = 30 * kMinute;
  const WindowSpec spec = Rolling(size);
  const auto txns = Generate(3000, lateness, 11);
  const auto payloads = Payloads(txns);
  Chain straight({spec}, lateness);
  straight.Feed(payloads, 100);
  for (size_t split : {1u, 777u, 1500u, 2999u}) {
    SCOPED_TRACE(split);
    Chain first({spec}, lateness);
    const std::vector<std::string> head(payloads.begin(), payloads.begin() + static_cast<ptrdiff_t>(split));
    const std::vector<std::string> tail(payloads.begin() + static_cast<ptrdiff_t>(split), payloads.end());
    first.Feed(head, 64);
    Checkpoint cp;
    first.CommitTo(&cp);
    // What the first chain did after the checkpoint is lost with it.
    first.Feed(std::vector<std::string>(tail.begin(), tail.begin() + std::min<size_t>(tail.size(), 50)));
    auto second = Chain::Restore({spec}, lateness, cp);
    second->Feed(tail, 333);
    std::vector<Emitted> rows(first.out.emitted.begin(),
                              first.out.emitted.begin() + static_cast<ptrdiff_t>(std::count_if(
                                                              first.out.emitted.begin(), first.out.emitted.end(),
                                                              [&](const Emitted& e) {
                                                                return e.lineage.first_offset <
                                                                       static_cast<int64_t>(split);
                                                              })));
    rows.insert(rows.end(), second->out.emitted.begin(), second->out.emitted.end());
    ExpectSameRows(rows, straight.out.emitted);
    // Restoring twice in a row (a restore of a restore) changes nothing either.
    Checkpoint cp2 = cp;  // the same store: the restored entries are in it already
    second->CommitTo(&cp2);
    auto third = Chain::Restore({spec}, lateness, cp2);
    int64_t max_time = kNoTime;
    for (const Txn_& t : txns) max_time = std::max(max_time, t.time);
    third->Feed({Txn("x", "u3", max_time, 1)});
    Chain straight_plus({spec}, lateness);
    auto more = payloads;
    more.push_back(Txn("x", "u3", max_time, 1));
    straight_plus.Feed(more, 1000);
    ASSERT_EQ(third->out.emitted.size(), 1u);
    EXPECT_EQ(third->out.emitted[0], straight_plus.out.emitted.back());
  }
}

TEST(RollingWindowTest, StateHoldsAboutTheEventsOfTheLastSizePlusLateness) {
  const int64_t size = kHour, lateness = 10 * kMinute;
  const WindowSpec spec = Rolling(size);
  Chain chain({spec}, lateness);
  std::vector<std::string> payloads;
  const int64_t step = 6 * 1000;  // 10 events a minute, over 20 users
  const int64_t n = 20000;        // ~33 hours
  for (int64_t i = 0; i < n; ++i) {
    payloads.push_back(Txn(Name('t', static_cast<uint64_t>(i)), Name('u', static_cast<uint64_t>(i % 20)),
                           kT0 + i * step, i % 7, schema::TxnStatus::Approved, i % 3 ? "EUR" : "LONG-CURRENCY-NAME"));
  }
  chain.Feed(payloads, 500);
  ASSERT_EQ(chain.out.emitted.size(), static_cast<size_t>(n));
  // Live: events newer than watermark - size = max - lateness - size; the
  // sweep lags by at most size / 16 plus a batch.
  const auto live = static_cast<size_t>((size + lateness) / step);
  // Events are stored in blocks of up to kRollingBlockEvents, each with a
  // mask of its live slots (bytes 4-7); no checkpoint was taken, so every
  // entry is dirty. Blocks go when none of their events is live.
  size_t events = 0, blocks = 0;
  chain.table(0).ForEachDirty([&](std::string_view, std::string_view value) {
    uint32_t mask;
    std::memcpy(&mask, value.data() + 4, sizeof(mask));
    events += static_cast<size_t>(std::popcount(mask));
    ++blocks;
  });
  ASSERT_EQ(blocks, chain.table(0).size());
  EXPECT_GE(events, live - 1);
  EXPECT_LE(events, live + static_cast<size_t>(size / 16 / step) + 500);
  // At most a partly evicted first and a partly filled last block per user (20).
  EXPECT_LE(blocks, events / kRollingBlockEvents + 2 * 20);
  // The currencies over 8 bytes (every third event) are in the distinct
  // table; amounts and short currencies are inline in the event.
  EXPECT_NEAR(static_cast<double>(chain.table(1).size()), static_cast<double>(events) / 3, 1.5);
  // The last row counts exactly the last hour of its user (one event a 2 minutes).
  EXPECT_NE(chain.out.emitted.back().value.find("\"n\":30,"), std::string::npos) << chain.out.emitted.back().value;
}

TEST(RollingWindowTest, DeclaredDoubleFieldsSumInEventTimeOrderAndSurviveARestore) {
  // A declared format's record view, built directly: key, score (double).
  auto user = InternDeclaredField("user", ValueType::kString, 0);
  auto score = InternDeclaredField("score", ValueType::kDouble, 1);
  ASSERT_TRUE(user.ok() && score.ok());
  WindowSpec spec;
  spec.kind = WindowSpec::Kind::kRolling;
  spec.size_ms = kHour;
  spec.slide_ms = kHour;
  spec.key_field = *user;
  spec.features = {{"n", FeatureKind::kCount, Field::kValue},
                   {"total", FeatureKind::kSum, *score},
                   {"mean", FeatureKind::kAvg, *score},
                   {"lo", FeatureKind::kMin, *score},
                   {"hi", FeatureKind::kMax, *score},
                   {"first_s", FeatureKind::kFirst, *score},
                   {"last_s", FeatureKind::kLast, *score},
                   {"scores", FeatureKind::kCountDistinct, *score}};
  ASSERT_TRUE(WindowAggregate::Validate(spec).ok());
  std::mt19937_64 rng(3);
  struct Rec {
    std::string user;
    double score;
    int64_t time;
  };
  std::vector<Rec> recs;
  for (int i = 0; i < 1500; ++i) {
    const double s = static_cast<double>(static_cast<int64_t>(rng() % 41) - 20) / 8.0 + (rng() % 9 == 0 ? 1e16 : 0);
    recs.push_back({Name('k', rng() % 5), s, kT0 + i * 20 * 1000 - static_cast<int64_t>(rng() % (15 * kMinute))});
  }
  // Drives the operator as the chain would after decoding (lateness 10 min).
  auto run = [&](size_t restore_at, std::vector<Emitted>* rows) {
    CollectingOutput out;
    RecordCounters counters;
    TaskContext ctx;
    ctx.allowed_lateness_ms = 10 * kMinute;
    ctx.counters = &counters;
    ctx.out = &out;
    auto registry = std::make_unique<StateRegistry>();
    auto op = WindowAggregate::Create(spec, "op1", *registry);
    FakeStateStore store;
    std::vector<std::array<FieldValue, 2>> values(recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      if (i == restore_at) {
        store.Commit(*registry);
        registry = std::make_unique<StateRegistry>();
        op = WindowAggregate::Create(spec, "op1", *registry);
        store.Restore(*registry);
      }
      values[i][0] = FieldValue{};
      values[i][0].str = recs[i].user.data();
      values[i][0].len = static_cast<uint32_t>(recs[i].user.size());
      values[i][0].present = true;
      values[i][1] = FieldValue{};
      values[i][1].d = recs[i].score;
      values[i][1].present = true;
      RecordBatch batch;
      InputRecord r;
      r.offset = static_cast<int64_t>(i);
      r.fields = values[i].data();
      r.event_time_ms = recs[i].time;
      ctx.max_event_time_ms = std::max(ctx.max_event_time_ms, r.event_time_ms);
      r.watermark_ms = ctx.watermark_ms();
      batch.records.push_back(r);
      batch.SelectAll();
      op->Process(batch, ctx);
      op->OnBatchEnd(ctx);
    }
    *rows = out.emitted;
    return out.late.size();
  };
  std::vector<Emitted> straight, restored;
  const size_t late = run(recs.size(), &straight);
  EXPECT_GT(late, 0u);
  EXPECT_EQ(run(700, &restored), late);
  ExpectSameRows(restored, straight);
  // Brute force over the accepted records.
  RowEncoder row(RowFormat::kJson, spec.RowColumns());
  int64_t max_time = kNoTime;
  std::vector<size_t> accepted;
  size_t k = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    max_time = std::max(max_time, recs[i].time);
    if (recs[i].time < max_time - 10 * kMinute) continue;
    accepted.push_back(i);
    std::vector<size_t> in;
    for (size_t j : accepted) {
      if (recs[j].user == recs[i].user && recs[j].time > recs[i].time - kHour && recs[j].time <= recs[i].time) {
        in.push_back(j);
      }
    }
    std::stable_sort(in.begin(), in.end(), [&](size_t a, size_t b) { return recs[a].time < recs[b].time; });
    double sum = 0, lo = 1e300, hi = -1e300;
    std::vector<double> distinct;
    for (size_t j : in) {
      sum += recs[j].score;
      lo = std::min(lo, recs[j].score);
      hi = std::max(hi, recs[j].score);
      distinct.push_back(recs[j].score);
    }
    std::sort(distinct.begin(), distinct.end());
    row.Begin();
    row.Str(recs[i].user);
    row.Int(recs[i].time);
    row.Int(static_cast<int64_t>(in.size()));
    row.Double(sum);
    row.Double(sum / static_cast<double>(in.size()));
    row.Double(lo);
    row.Double(hi);
    row.Double(recs[in.front()].score);
    row.Double(recs[in.back()].score);
    row.Int(std::unique(distinct.begin(), distinct.end()) - distinct.begin());
    const auto bytes = row.Finish();
    ASSERT_LT(k, straight.size());
    ASSERT_EQ(straight[k].value, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()))
        << "record " << i;
    ++k;
  }
  EXPECT_EQ(k, straight.size());
}

TEST(RollingWindowTest, TheEndOfABoundedInputEvictsEveryEvent) {
  // `--final-watermark`: event time jumps to the end of time; nothing later
  // can be on time, so no event can be in a future range.
  const WindowSpec spec = Rolling(kHour);
  StateRegistry registry;
  auto op = WindowAggregate::Create(spec, "op1", registry);
  const auto payloads = std::vector<std::string>{Txn("a", "u1", kT0, 5), Txn("b", "u2", kT0 + 1, 6)};
  DecodedBatch decoded(payloads);
  RecordBatch& batch = decoded.batch;
  CollectingOutput out;
  RecordCounters counters;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  ctx.max_event_time_ms = kT0 + 1;
  op->Process(batch, ctx);
  op->OnBatchEnd(ctx);
  EXPECT_EQ(out.emitted.size(), 2u);
  const auto& tables = StateRegistryTestAccess::Tables(registry);
  EXPECT_EQ(tables.at(0)->size(), 2u);
  ctx.max_event_time_ms = kEndOfInputTime;
  op->OnBatchEnd(ctx);
  EXPECT_EQ(tables.at(0)->size(), 0u);
  EXPECT_EQ(tables.at(1)->size(), 0u);
}

TEST(RollingWindowTest, SpecErrorsSayWhatARollingWindowNeeds) {
  auto no_features = ParseJobSpec(JobYaml("{type: rolling, size: 7d, key: user_id}"));
  ASSERT_FALSE(no_features.ok());
  EXPECT_NE(no_features.status().message().find("needs `features`"), std::string::npos)
      << no_features.status().ToString();
  auto slide = ParseJobSpec(JobYaml("{type: rolling, size: 7d, slide: 1d, features: {n: count}}"));
  ASSERT_FALSE(slide.ok());
  EXPECT_NE(slide.status().message().find("takes no `slide`"), std::string::npos) << slide.status().ToString();
  auto aggregates = ParseJobSpec(JobYaml("{type: rolling, size: 7d, aggregates: [count]}"));
  ASSERT_FALSE(aggregates.ok());
  EXPECT_NE(aggregates.status().message().find("takes no `aggregates`"), std::string::npos);
  auto unknown = ParseJobSpec(JobYaml("{type: rollin, size: 7d, features: {n: count}}"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("tumbling, sliding or rolling"), std::string::npos);
  WindowSpec bare;
  bare.kind = WindowSpec::Kind::kRolling;
  bare.size_ms = kHour;
  EXPECT_FALSE(WindowAggregate::Validate(bare).ok()) << "no features";

  // A good one: columns key, event_time, then the features; its logic differs
  // from a tumbling window's of the same size and features (another hash).
  auto rolling = ParseJobSpec(JobYaml("{type: rolling, size: 7d, key: user_id, features: {n: count}}"));
  auto tumbling = ParseJobSpec(JobYaml("{type: tumbling, size: 7d, key: user_id, features: {n: count}}"));
  ASSERT_TRUE(rolling.ok()) << rolling.status().ToString();
  ASSERT_TRUE(tumbling.ok()) << tumbling.status().ToString();
  EXPECT_NE(rolling->spec_hash, tumbling->spec_hash);
  const auto columns = std::get<WindowSpec>(rolling->operators[0]).RowColumns();
  ASSERT_EQ(columns.size(), 3u);
  EXPECT_EQ(columns[0].name, "key");
  EXPECT_EQ(columns[1].name, "event_time");
  EXPECT_EQ(columns[1].type, ValueType::kTimestamp);
  EXPECT_EQ(columns[2].name, "n");
}

}  // namespace
}  // namespace kappa::testing
