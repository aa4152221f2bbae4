// Nexmark q0, q1, q2, q5 and q7 as operator chains over generated events,
// each against a straightforward reference computed here from the
// generator's plain fields; results independent of batch boundaries; bad
// Nexmark payloads in the DLQ with the same reasons as bad transactions.
#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <tuple>
#include <set>

#include "base/hash.h"
#include "workload/nexmark_generator.h"
#include "operators/field_access.h"
#include "operators/filter.h"
#include "schemas/nexmark_generated.h"
#include "schemas/row_generated.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

constexpr int64_t kSecond = 1000;

DecodeSpec NexmarkDecode() {
  DecodeSpec d;
  d.format = RecordFormat::kNexmark;
  return d;
}

struct Events {
  std::vector<NexmarkRecord> records;
  std::vector<std::string> payloads;
};

// 100 events/s of event time, so windows of seconds hold a few hundred.
Events Generate(uint64_t count, uint64_t seed = 7) {
  NexmarkOptions o;
  o.count = count;
  o.seed = seed;
  o.events_per_second = 100;
  NexmarkGenerator gen(o);
  Events e;
  NexmarkRecord r;
  while (gen.Next(&r)) {
    e.payloads.push_back(r.value);
    e.records.push_back(r);
  }
  return e;
}

Predicate P(const char* text) {
  auto p = ParsePredicate(text);
  if (!p.ok()) throw std::runtime_error(p.status().ToString());
  return *p;
}

std::vector<int64_t> RowValues(const Emitted& e) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(e.value.data()), e.value.size());
  EXPECT_TRUE(schema::VerifyRowBuffer(v));
  const auto* values = schema::GetRow(e.value.data())->values();
  return std::vector<int64_t>(values->begin(), values->end());
}

std::vector<OperatorSpec> Q1() {
  MapSpec euros;
  euros.value_field = Field::kPrice;
  euros.multiply = 908;
  euros.divide = 1000;
  EmitSpec emit;
  emit.key_field = Field::kOffset;
  emit.row = {Field::kAuction, Field::kBidder, Field::kValue, Field::kDateTime};
  return {FilterSpec{{P("type == bid")}}, euros, emit};
}

std::vector<OperatorSpec> Q5() {
  WindowSpec w = Sliding(10 * kSecond, 2 * kSecond, Field::kAuction);
  w.aggregates = {Aggregate::kCount};
  w.top = 1;
  return {FilterSpec{{P("type == bid")}}, w};
}

std::vector<OperatorSpec> Q7() {
  WindowSpec w = Tumbling(10 * kSecond, Field::kPartition);
  w.aggregates = {Aggregate::kMax};
  w.argmax = {Field::kAuction, Field::kBidder};
  return {FilterSpec{{P("type == bid")}}, w};
}

// A Nexmark field as the event's own accessors read it, as text (numbers in
// decimal; a field the event type lacks: "0" or "").
std::string ExpectedText(const schema::NexmarkEvent* ev, Field f) {
  auto s = [](const flatbuffers::String* x) { return x ? x->str() : std::string(); };
  auto n = [](int64_t v) { return std::to_string(v); };
  switch (ev->body_type()) {
    case schema::NexmarkBody::Bid: {
      const auto* b = ev->body_as_Bid();
      switch (f) {
        case Field::kType: return "bid";
        case Field::kAuction: return n(b->auction());
        case Field::kBidder: return n(b->bidder());
        case Field::kPrice: return n(b->price());
        case Field::kChannel: return s(b->channel());
        case Field::kUrl: return s(b->url());
        case Field::kDateTime: return n(b->date_time());
        case Field::kExtra: return s(b->extra());
        default: break;
      }
      break;
    }
    case schema::NexmarkBody::Auction: {
      const auto* a = ev->body_as_Auction();
      switch (f) {
        case Field::kType: return "auction";
        case Field::kAuction:
        case Field::kId: return n(a->id());
        case Field::kItemName: return s(a->item_name());
        case Field::kDescription: return s(a->description());
        case Field::kInitialBid: return n(a->initial_bid());
        case Field::kReserve: return n(a->reserve());
        case Field::kDateTime: return n(a->date_time());
        case Field::kExpires: return n(a->expires());
        case Field::kSeller: return n(a->seller());
        case Field::kCategory: return n(a->category());
        case Field::kExtra: return s(a->extra());
        default: break;
      }
      break;
    }
    case schema::NexmarkBody::Person: {
      const auto* p = ev->body_as_Person();
      switch (f) {
        case Field::kType: return "person";
        case Field::kId: return n(p->id());
        case Field::kName: return s(p->name());
        case Field::kEmail: return s(p->email_address());
        case Field::kCreditCard: return s(p->credit_card());
        case Field::kCity: return s(p->city());
        case Field::kState: return s(p->state());
        case Field::kDateTime: return n(p->date_time());
        case Field::kExtra: return s(p->extra());
        default: break;
      }
      break;
    }
    default:
      break;
  }
  return IsNumericField(f) ? "0" : "";
}

// Operators read a Nexmark event through the record view the decode step
// fills (formats/builtin_decoders.h), never the FlatBuffer: every field a
// chain reads holds what the event's own accessors return, whether the
// decode fills only the chain's fields or all of them.
TEST(NexmarkQueriesTest, TheRecordViewHoldsEveryFieldTheChainReads) {
  const Events e = Generate(3000);
  const std::vector<Field> all = {Field::kType,       Field::kAuction,  Field::kBidder,     Field::kPrice,
                                  Field::kChannel,    Field::kUrl,      Field::kDateTime,   Field::kId,
                                  Field::kItemName,   Field::kDescription, Field::kInitialBid, Field::kReserve,
                                  Field::kExpires,    Field::kSeller,   Field::kCategory,   Field::kName,
                                  Field::kEmail,      Field::kCreditCard, Field::kCity,     Field::kState,
                                  Field::kExtra};
  const std::vector<std::vector<Field>> reads = {{}, {Field::kAuction, Field::kName}, {Field::kValue}, all};
  for (const std::vector<Field>& read : reads) {
    DecodeSpec d = NexmarkDecode();
    d.read_fields = read;
    auto decode = MakeDecodeValidate(d);
    RecordBatch batch;
    for (size_t i = 0; i < e.payloads.size(); ++i) {
      InputRecord r;
      r.payload = reinterpret_cast<const uint8_t*>(e.payloads[i].data());
      r.size = static_cast<uint32_t>(e.payloads[i].size());
      r.offset = static_cast<int64_t>(i);
      batch.records.push_back(r);
    }
    batch.SelectAll();
    RecordCounters counters;
    CollectingOutput out;
    TaskContext ctx;
    ctx.counters = &counters;
    ctx.out = &out;
    decode->Process(batch, ctx);
    ASSERT_EQ(batch.selection.size(), e.payloads.size());
    char scratch[kFieldTextScratchBytes];
    std::set<int> types;
    for (size_t i = 0; i < e.payloads.size(); ++i) {
      const InputRecord& r = batch.records[i];
      const auto* ev = schema::GetNexmarkEvent(e.payloads[i].data());
      types.insert(static_cast<int>(ev->body_type()));
      EXPECT_EQ(r.event_time_ms, e.records[i].event_time_ms);
      EXPECT_EQ(r.value, e.records[i].price);
      for (Field f : read.empty() ? all : read) {
        if (f == Field::kValue) continue;
        ASSERT_EQ(FieldText(r, f, scratch), ExpectedText(ev, f)) << "event " << i << " field " << FieldName(f);
      }
      if (read.empty() || read == all) {
        EXPECT_EQ(NumericField(r, Field::kType), static_cast<int64_t>(ev->body_type()));
      }
    }
    EXPECT_EQ(types, (std::set<int>{1, 2, 3})) << "persons, auctions and bids";
  }
}

TEST(NexmarkQueriesTest, Q0PassesEveryEventThroughUnchanged) {
  const Events e = Generate(3000);
  EmitSpec emit;
  emit.key_field = Field::kOffset;
  Chain chain({emit}, 0, NexmarkDecode(), /*partition=*/2);
  chain.Feed(e.payloads, 256);
  ASSERT_EQ(chain.out.emitted.size(), e.payloads.size());
  for (size_t i = 0; i < e.payloads.size(); ++i) {
    EXPECT_EQ(chain.out.emitted[i].key, "2|" + std::to_string(i));
    EXPECT_EQ(chain.out.emitted[i].value, e.payloads[i]);
  }
  EXPECT_TRUE(chain.out.dlq.empty());
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(NexmarkQueriesTest, Q1ConvertsEveryBidsPriceToEuros) {
  const Events e = Generate(3000);
  Chain chain(Q1(), 0, NexmarkDecode());
  chain.Feed(e.payloads, 300);
  std::vector<std::pair<std::string, std::vector<int64_t>>> want, got;
  for (size_t i = 0; i < e.records.size(); ++i) {
    const NexmarkRecord& r = e.records[i];
    if (r.type != NexmarkEventType::kBid) continue;
    want.push_back({"0|" + std::to_string(i), {r.auction, r.bidder, r.price * 908 / 1000, r.event_time_ms}});
  }
  for (const auto& out : chain.out.emitted) got.push_back({out.key, RowValues(out)});
  EXPECT_GT(want.size(), 2500u);
  EXPECT_EQ(got, want);
  EXPECT_EQ(chain.counters.filtered, static_cast<int64_t>(e.records.size() - want.size()));
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(NexmarkQueriesTest, Q2SelectsBidsOnEveryHundredAndTwentyThirdAuction) {
  const Events e = Generate(20000);
  EmitSpec emit;
  emit.key_field = Field::kOffset;
  emit.row = {Field::kAuction, Field::kPrice};
  Chain chain({FilterSpec{{P("type == bid"), P("auction % 123 == 0")}}, emit}, 0, NexmarkDecode());
  chain.Feed(e.payloads, 1000);
  std::vector<std::vector<int64_t>> want, got;
  for (const NexmarkRecord& r : e.records) {
    if (r.type == NexmarkEventType::kBid && r.auction % 123 == 0) want.push_back({r.auction, r.price});
  }
  for (const auto& out : chain.out.emitted) got.push_back(RowValues(out));
  EXPECT_GT(want.size(), 0u);
  EXPECT_EQ(got, want);
}

// (window end, auction) -> count of bids, over windows closed by `watermark`.
std::vector<std::pair<std::string, int64_t>> ReferenceQ5(const Events& e) {
  std::map<int64_t, std::map<std::string, int64_t>> counts;
  int64_t watermark = kNoTime;
  for (const NexmarkRecord& r : e.records) {
    watermark = std::max(watermark, r.event_time_ms);
    if (r.type != NexmarkEventType::kBid) continue;
    for (int64_t end = (r.event_time_ms / (2 * kSecond) + 1) * 2 * kSecond; end <= r.event_time_ms + 10 * kSecond;
         end += 2 * kSecond) {
      ++counts[end][std::to_string(r.auction)];
    }
  }
  std::vector<std::pair<std::string, int64_t>> rows;
  for (const auto& [end, by_auction] : counts) {
    if (end > watermark) break;  // not yet closed
    int64_t best = 0;
    for (const auto& [auction, n] : by_auction) best = std::max(best, n);
    for (const auto& [auction, n] : by_auction) {
      if (n == best) rows.push_back({auction + "|" + std::to_string(end), n});
    }
  }
  return rows;
}

TEST(NexmarkQueriesTest, Q5EmitsTheAuctionsWithTheMostBidsPerSlidingWindow) {
  const Events e = Generate(20000);
  Chain chain(Q5(), 0, NexmarkDecode());
  chain.Feed(e.payloads, 500);
  std::vector<std::pair<std::string, int64_t>> got;
  for (const auto& out : chain.out.emitted) {
    got.push_back({out.key, AsWindow(out)->count()});
    EXPECT_EQ(AsWindow(out)->window_end_ms() - AsWindow(out)->window_start_ms(), 10 * kSecond);
  }
  const auto want = ReferenceQ5(e);
  EXPECT_GT(want.size(), 50u);
  EXPECT_EQ(got, want);
  EXPECT_TRUE(chain.out.late.empty());
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(NexmarkQueriesTest, Q5PerPartitionTopsMergeIntoTheGlobalTop) {
  // kappa has no shuffle: each partition's task ranks its own auctions. Bids
  // are keyed by auction, so an auction's count is complete in its
  // partition, and the best of the partitions' rows is the global answer.
  const Events e = Generate(20000);
  constexpr int32_t kPartitions = 4;
  std::vector<std::vector<std::string>> parts(kPartitions);
  for (size_t i = 0; i < e.records.size(); ++i) {
    parts[PartitionForKey(e.records[i].key, kPartitions)].push_back(e.payloads[i]);
  }
  std::map<int64_t, std::vector<std::pair<std::string, int64_t>>> by_end;  // end -> (auction, count)
  int64_t closed_through = INT64_MAX;
  for (int32_t p = 0; p < kPartitions; ++p) {
    Chain chain(Q5(), 0, NexmarkDecode(), p);
    chain.Feed(parts[p], 333);
    closed_through = std::min(closed_through, chain.watermark());
    for (const auto& out : chain.out.emitted) {
      by_end[AsWindow(out)->window_end_ms()].push_back({AsWindow(out)->key()->str(), AsWindow(out)->count()});
    }
  }
  std::vector<std::pair<std::string, int64_t>> merged;
  for (auto& [end, rows] : by_end) {
    if (end > closed_through) break;  // not closed in every partition yet
    int64_t best = 0;
    for (const auto& r : rows) best = std::max(best, r.second);
    std::sort(rows.begin(), rows.end());
    for (const auto& [auction, n] : rows) {
      if (n == best) merged.push_back({auction + "|" + std::to_string(end), n});
    }
  }
  auto want = ReferenceQ5(e);
  std::erase_if(want, [&](const auto& row) {
    return std::stoll(row.first.substr(row.first.find('|') + 1)) > closed_through;
  });
  EXPECT_EQ(merged, want);
}

TEST(NexmarkQueriesTest, Q7EmitsTheHighestBidPerTumblingWindow) {
  const Events e = Generate(20000);
  Chain chain(Q7(), 0, NexmarkDecode());
  chain.Feed(e.payloads, 700);
  struct Best {
    int64_t price = -1, auction = 0, bidder = 0;
  };
  // window end -> the highest bid; among bids at that price the smallest (auction, bidder)
  std::map<int64_t, Best> best;
  int64_t watermark = kNoTime;
  for (const NexmarkRecord& r : e.records) {
    watermark = std::max(watermark, r.event_time_ms);
    if (r.type != NexmarkEventType::kBid) continue;
    Best& b = best[(r.event_time_ms / (10 * kSecond) + 1) * 10 * kSecond];
    if (r.price > b.price ||
        (r.price == b.price && std::tie(r.auction, r.bidder) < std::tie(b.auction, b.bidder))) {
      b = Best{r.price, r.auction, r.bidder};
    }
  }
  std::vector<std::string> want, got;
  for (const auto& [end, b] : best) {
    if (end > watermark) break;
    want.push_back("0|" + std::to_string(end) + " " + std::to_string(b.price) + " " +
                   std::to_string(b.auction) + " " + std::to_string(b.bidder));
  }
  for (const auto& out : chain.out.emitted) {
    const auto* w = AsWindow(out);
    ASSERT_NE(w->argmax(), nullptr);
    ASSERT_EQ(w->argmax()->size(), 2u);
    got.push_back(out.key + " " + std::to_string(w->max()) + " " + std::to_string(w->argmax()->Get(0)) + " " +
                  std::to_string(w->argmax()->Get(1)));
  }
  EXPECT_GT(want.size(), 10u);
  EXPECT_EQ(got, want);
}

TEST(NexmarkQueriesTest, WindowedResultsDoNotDependOnBatchBoundaries) {
  const Events e = Generate(8000);
  for (const auto& specs : {Q5(), Q7()}) {
    Chain whole(specs, 0, NexmarkDecode());
    whole.Feed(e.payloads, e.payloads.size());
    for (size_t batch : {1, 7, 999}) {
      Chain split(specs, 0, NexmarkDecode());
      split.Feed(e.payloads, batch);
      EXPECT_EQ(split.out.emitted, whole.out.emitted) << "batch size " << batch;
    }
    EXPECT_FALSE(whole.out.emitted.empty());
  }
}

// A NexmarkEvent built by hand: a bid (or no body, or another type code).
std::string RawEvent(int type, int64_t price, int64_t date_time, bool truncate = false) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<void> body;
  if (type != 0) body = schema::CreateBidDirect(fbb, 1000, 1001, price, "Google", "u", date_time, "x").Union();
  const auto start = fbb.StartTable();
  if (type != 0) fbb.AddOffset(schema::NexmarkEvent::VT_BODY, body);
  fbb.AddElement<uint8_t>(schema::NexmarkEvent::VT_BODY_TYPE, static_cast<uint8_t>(type), 0);
  schema::FinishNexmarkEventBuffer(fbb, flatbuffers::Offset<schema::NexmarkEvent>(fbb.EndTable(start)));
  std::string bytes = Bytes(fbb);
  if (truncate) bytes.resize(bytes.size() / 2);
  return bytes;
}

TEST(NexmarkQueriesTest, BadNexmarkPayloadsGoToTheDlqWithTheirReason) {
  const std::vector<std::string> payloads = {
      RawEvent(3, 500, kT0),                    // 0: a good bid
      "not a flatbuffer at all",                // 1
      RawEvent(3, 500, kT0, /*truncate=*/true), // 2
      Txn("t1", "u1", kT0),                     // 3: another schema
      RawEvent(0, 0, 0),                        // 4: no body
      RawEvent(3, -5, kT0),                     // 5: negative price
      RawEvent(3, 500, 0),                      // 6: no event time
      RawEvent(9, 500, kT0),                    // 7: unknown event type
      RawEvent(3, 700, kT0 + 1),                // 8: good
  };
  EmitSpec emit;
  emit.key_field = Field::kAuction;
  Chain chain({emit}, 0, NexmarkDecode(), 1);
  chain.Feed(payloads, 4);
  ASSERT_EQ(chain.out.emitted.size(), 2u);
  EXPECT_EQ(chain.out.emitted[0].key, "1000");
  EXPECT_EQ(chain.out.emitted[1].lineage.first_offset, 8);
  ASSERT_EQ(chain.out.dlq.size(), 7u);
  const std::pair<int64_t, DlqReason> want[] = {
      {1, DlqReason::kUndecodable},  {2, DlqReason::kUndecodable},  {3, DlqReason::kUndecodable},
      {4, DlqReason::kMissingField}, {5, DlqReason::kInvalidValue}, {6, DlqReason::kInvalidValue},
      {7, DlqReason::kInvalidValue}};
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(chain.out.dlq[i].partition, 1);
    EXPECT_EQ(chain.out.dlq[i].offset, want[i].first);
    EXPECT_EQ(chain.out.dlq[i].reason, want[i].second) << chain.out.dlq[i].message;
    EXPECT_FALSE(chain.out.dlq[i].message.empty());
  }
  EXPECT_EQ(chain.counters.dlq, 7);
  EXPECT_TRUE(chain.counters.Balanced());
}

TEST(NexmarkQueriesTest, FieldsOfEachEventType) {
  const Events e = Generate(100);
  std::set<std::string> seen;
  for (Field f : {Field::kType, Field::kAuction, Field::kBidder, Field::kPrice, Field::kId, Field::kSeller,
                  Field::kCategory, Field::kChannel, Field::kCity, Field::kDateTime}) {
    EmitSpec emit;
    emit.key_field = f;
    Chain chain({emit}, 0, NexmarkDecode());
    chain.Feed(e.payloads);
    ASSERT_EQ(chain.out.emitted.size(), e.records.size());
    for (size_t i = 0; i < e.records.size(); ++i) {
      const NexmarkRecord& r = e.records[i];
      const std::string& key = chain.out.emitted[i].key;
      switch (f) {
        case Field::kType: EXPECT_EQ(key, NexmarkEventTypeName(r.type)); break;
        case Field::kAuction: EXPECT_EQ(key, std::to_string(r.auction)); break;
        case Field::kBidder: EXPECT_EQ(key, std::to_string(r.bidder)); break;
        case Field::kPrice: EXPECT_EQ(key, std::to_string(r.price)); break;
        case Field::kId: EXPECT_EQ(key, std::to_string(r.id)); break;
        case Field::kSeller: EXPECT_EQ(key, std::to_string(r.seller)); break;
        case Field::kCategory: EXPECT_EQ(key, std::to_string(r.category)); break;
        case Field::kDateTime: EXPECT_EQ(key, std::to_string(r.event_time_ms)); break;
        case Field::kChannel: EXPECT_EQ(key.empty(), r.type != NexmarkEventType::kBid); break;
        case Field::kCity: EXPECT_EQ(key.empty(), r.type != NexmarkEventType::kPerson); break;
        default: break;
      }
      seen.insert(std::string(FieldName(f)) + "=" + (key.empty() ? "" : "x"));
    }
  }
  EXPECT_TRUE(seen.count("city=x"));
}

TEST(NexmarkQueriesTest, TypeAndModuloPredicates) {
  EXPECT_EQ(P("type == bid").number, 3);
  EXPECT_EQ(P("auction % 123 == 0").modulus, 123);
  EXPECT_EQ(P("auction%7!=1").modulus, 7);
  EXPECT_FALSE(ParsePredicate("type == lot").ok());
  EXPECT_FALSE(ParsePredicate("url % 3 == 0").ok());
  EXPECT_FALSE(ParsePredicate("auction % 0 == 0").ok());
  EXPECT_FALSE(ParsePredicate("auction % x == 0").ok());
  EXPECT_FALSE(ParsePredicate("partition == 1").ok());
  Predicate by_partition;
  by_partition.field = Field::kPartition;
  EXPECT_FALSE(Filter::Validate(FilterSpec{{by_partition}}).ok());
  Predicate modulo_text = P("url == x");
  modulo_text.modulus = 3;
  EXPECT_FALSE(Filter::Validate(FilterSpec{{modulo_text}}).ok());
}

}  // namespace
}  // namespace kappa::testing
