// DecodeValidate: every bad payload goes to the DLQ with the right reason and
// a message naming what is wrong, leaves the chain and never moves the
// watermark; every good one is stamped with its event time, value and the
// watermark right after it.
#include "operators/decode_validate.h"

#include <gtest/gtest.h>

#include <cstring>

#include "base/random.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

using ::testing::HasSubstr;

// Runs one DecodeValidate over payloads as one batch; nullptr entries are
// tombstones (no payload).
class DecodeRun {
 public:
  explicit DecodeRun(DecodeSpec spec = DecodeSpec{}, int64_t lateness_ms = 0) : op_(std::move(spec)) {
    ctx_.partition = 2;
    ctx_.allowed_lateness_ms = lateness_ms;
    ctx_.counters = &counters;
    ctx_.out = &out;
  }
  void Run(const std::vector<const std::string*>& payloads) {
    batch.Reset(2);
    for (const std::string* p : payloads) {
      InputRecord r;
      if (p) {
        r.payload = reinterpret_cast<const uint8_t*>(p->data());
        r.size = static_cast<uint32_t>(p->size());
      }
      r.offset = next_offset_++;
      batch.records.push_back(r);
    }
    counters.in += static_cast<int64_t>(payloads.size());
    batch.SelectAll();
    op_.Process(batch, ctx_);
    op_.OnBatchEnd(ctx_);
  }
  void Run(const std::vector<std::string>& payloads) {
    std::vector<const std::string*> ptrs;
    for (const auto& p : payloads) ptrs.push_back(&p);
    Run(ptrs);
  }
  // The single DLQ entry of a run over one payload.
  CollectingOutput::Dead Reject(const std::string& payload) {
    out.dlq.clear();
    Run(std::vector<std::string>{payload});
    EXPECT_EQ(out.dlq.size(), 1u);
    return out.dlq.empty() ? CollectingOutput::Dead{} : out.dlq.back();
  }
  const TaskContext& ctx() const { return ctx_; }

  RecordCounters counters;
  CollectingOutput out;
  RecordBatch batch;

 private:
  DecodeValidate op_;
  TaskContext ctx_;
  int64_t next_offset_ = 0;
};

TEST(DecodeValidateTest, StampsValidRecordsWithTheWatermarkRightAfterEach) {
  DecodeRun run(DecodeSpec{}, /*lateness_ms=*/10);
  const std::vector<std::string> payloads = {Txn("a", "u1", kT0 + 100, 7), Txn("b", "u2", kT0 + 50, 8),
                                             Txn("c", "u1", kT0 + 300, 9)};
  run.Run(payloads);
  ASSERT_EQ(run.batch.selection, (std::vector<uint32_t>{0, 1, 2}));
  const auto& r = run.batch.records;
  EXPECT_EQ(r[0].fields[kSlotTxnId].text(), "a");
  EXPECT_EQ(r[0].fields[kSlotStatus].text(), "approved");
  EXPECT_EQ(r[0].event_time_ms, kT0 + 100);
  EXPECT_EQ(r[0].value, 7);
  EXPECT_EQ(r[0].watermark_ms, kT0 + 90);
  EXPECT_EQ(r[1].event_time_ms, kT0 + 50);
  EXPECT_EQ(r[1].watermark_ms, kT0 + 90) << "an out-of-order record does not lower the watermark";
  EXPECT_EQ(r[2].watermark_ms, kT0 + 290);
  EXPECT_EQ(run.ctx().max_event_time_ms, kT0 + 300);
  EXPECT_EQ(run.ctx().watermark_ms(), kT0 + 290);
  EXPECT_EQ(run.counters.dlq, 0);
  EXPECT_EQ(run.counters.in, 3) << "`in` is the runtime's, DecodeValidate leaves it alone";
}

TEST(DecodeValidateTest, GarbageEmptyAndTombstonesAreUndecodable) {
  DecodeRun run;
  const std::string garbage = "this is not a flatbuffer at all";
  const std::string empty;
  const std::string zeros(64, '\0');
  const std::string id_only = std::string(4, '\0') + "KTX1";
  run.Run(std::vector<const std::string*>{&garbage, &empty, nullptr, &zeros, &id_only});
  ASSERT_EQ(run.out.dlq.size(), 5u);
  for (const auto& d : run.out.dlq) {
    EXPECT_EQ(d.reason, DlqReason::kUndecodable) << d.offset << ": " << d.message;
    EXPECT_EQ(d.partition, 2);
    EXPECT_FALSE(d.message.empty());
  }
  EXPECT_THAT(run.out.dlq[0].message, HasSubstr("not a valid Transaction FlatBuffer (31 bytes"));
  EXPECT_THAT(run.out.dlq[2].message, HasSubstr("empty payload"));
  EXPECT_TRUE(run.batch.selection.empty());
  EXPECT_EQ(run.counters.dlq, 5);
  EXPECT_EQ(run.ctx().max_event_time_ms, kNoTime);
}

TEST(DecodeValidateTest, EveryTruncationIsUndecodableNeverMissingField) {
  const std::string good = Txn("txn-0001", "user-42", kT0, 1250);
  DecodeRun run;
  std::vector<std::string> cut;
  for (size_t n = 0; n < good.size(); ++n) cut.push_back(good.substr(0, n));
  run.Run(cut);
  // A cut that only drops trailing padding still verifies; everything else is
  // undecodable, and at least every cut through the table or a string is.
  ASSERT_GE(run.out.dlq.size(), good.size() - 4);
  for (const auto& d : run.out.dlq) EXPECT_EQ(d.reason, DlqReason::kUndecodable) << "cut at " << d.offset;
  EXPECT_EQ(run.counters.dlq + static_cast<int64_t>(run.batch.selection.size()), run.counters.in);
}

TEST(DecodeValidateTest, OtherSchemasAndMissingIdentifierAreUndecodable) {
  flatbuffers::FlatBufferBuilder fbb;
  schema::FinishWindowAggregateBuffer(fbb,
                                      schema::CreateWindowAggregateDirect(fbb, "u1", kT0, kT0 + kHour, 1));
  DecodeRun run;
  EXPECT_EQ(run.Reject(Bytes(fbb)).reason, DlqReason::kUndecodable);
  EXPECT_EQ(run.Reject(RawTxn("t", "u", "EUR", 1, kT0, 0, /*with_identifier=*/false)).reason,
            DlqReason::kUndecodable);
}

TEST(DecodeValidateTest, EachMissingRequiredFieldIsNamed) {
  DecodeRun run;
  const std::pair<std::string, const char*> cases[] = {
      {RawTxn(nullptr, "u1", "EUR", 1, kT0), "required field txn_id is missing"},
      {RawTxn("t1", nullptr, "EUR", 1, kT0), "required field user_id is missing"},
      {RawTxn("t1", "u1", nullptr, 1, kT0), "required field currency is missing"},
      {RawTxn(nullptr, nullptr, nullptr, 1, kT0), "required field txn_id is missing"},
  };
  for (const auto& [payload, message] : cases) {
    const auto d = run.Reject(payload);
    EXPECT_EQ(d.reason, DlqReason::kMissingField) << message;
    EXPECT_EQ(d.message, message);
  }
  // The raw builder itself makes valid records when nothing is left out.
  run.out.dlq.clear();
  run.Run(std::vector<std::string>{RawTxn("t1", "u1", "EUR", 1, kT0)});
  EXPECT_TRUE(run.out.dlq.empty());
}

TEST(DecodeValidateTest, AMissingFieldBesideACorruptOneIsUndecodable) {
  std::string payload = RawTxn("t-corrupt", nullptr, "EUR", 1, kT0);
  const size_t at = payload.find("t-corrupt");
  ASSERT_NE(at, std::string::npos);
  const uint32_t huge = 0x7fffff00;
  std::memcpy(&payload[at - 4], &huge, 4);  // the string's length now runs past the end
  DecodeRun run;
  EXPECT_EQ(run.Reject(payload).reason, DlqReason::kUndecodable);
}

TEST(DecodeValidateTest, RandomBytesAndBitFlipsNeverCrashAndNeverPassUnverified) {
  Random random(7);
  const std::string good = Txn("txn-0001", "user-42", kT0, 1250);
  std::vector<std::string> payloads;
  for (int i = 0; i < 2000; ++i) {
    std::string p;
    if (i % 2 == 0) {
      p.resize(random.Uniform(80));
      for (char& c : p) c = static_cast<char>(random.Next());
      if (p.size() >= 8 && i % 4 == 0) std::memcpy(&p[4], "KTX1", 4);
    } else {
      p = good;
      for (int flips = 1 + static_cast<int>(random.Uniform(3)); flips > 0; --flips) {
        p[random.Uniform(p.size())] ^= static_cast<char>(1u << random.Uniform(8));
      }
    }
    payloads.push_back(std::move(p));
  }
  DecodeRun run;
  run.Run(payloads);
  for (uint32_t idx : run.batch.selection) {
    flatbuffers::Verifier verifier(run.batch.records[idx].payload, run.batch.records[idx].size);
    EXPECT_TRUE(schema::VerifyTransactionBuffer(verifier)) << "record " << idx << " passed unverified";
  }
  EXPECT_GT(run.counters.dlq, 1000);
  EXPECT_EQ(run.counters.dlq + static_cast<int64_t>(run.batch.selection.size()), run.counters.in);
}

TEST(DecodeValidateTest, InvalidValuesNameTheFieldAndTheValue) {
  DecodeSpec spec;
  spec.min_amount_cents = 1;
  spec.max_amount_cents = 1000;
  spec.min_event_time_ms = kT0;
  spec.allowed_currencies = {"EUR", "USD"};
  DecodeRun run(spec);
  const std::pair<std::string, std::vector<const char*>> cases[] = {
      {Txn("t", "u", kT0, 0), {"amount_cents 0", "[1, 1000]"}},
      {Txn("t", "u", kT0, 1001), {"amount_cents 1001"}},
      {Txn("t", "u", kT0 - 1, 5), {"event_time_ms", "below the minimum"}},
      // Near INT64_MAX a window's end overflowed and the record went to the
      // late topic though it was the newest (a bug bash).
      {Txn("t", "u", INT64_MAX, 5), {"event_time_ms 9223372036854775807", "after the year 9999"}},
      {Txn("t", "u", kMaxEventTimeMs + 1, 5), {"after the year 9999"}},
      {Txn("t", "u", kT0, 5, schema::TxnStatus::Approved, ""), {"currency is empty"}},
      {Txn("t", "u", kT0, 5, schema::TxnStatus::Approved, "GBP"), {"currency `GBP`", "allowed"}},
      {RawTxn("t", "u", "EUR", 5, kT0, /*status=*/7), {"status 7", "approved", "cancelled", "refunded"}},
  };
  for (const auto& [payload, words] : cases) {
    const auto d = run.Reject(payload);
    EXPECT_EQ(d.reason, DlqReason::kInvalidValue) << d.message;
    for (const char* w : words) EXPECT_THAT(d.message, HasSubstr(w));
  }
  EXPECT_THAT(run.Reject(Txn("t", "u", kT0 - 1, 5)).message,
              HasSubstr("event_time_ms " + std::to_string(kT0 - 1)));
  // The limits themselves are valid, as are the allowed currencies.
  run.out.dlq.clear();
  run.Run(std::vector<std::string>{Txn("t", "u", kT0, 1),
                                   Txn("t", "u", kT0, 1000, schema::TxnStatus::Refunded, "USD"),
                                   Txn("t", "u", kMaxEventTimeMs, 1)});
  EXPECT_TRUE(run.out.dlq.empty());
  EXPECT_EQ(run.batch.selection.size(), 3u);
}

TEST(DecodeValidateTest, RejectedRecordsLeaveTheChainAndNeverMoveTheWatermark) {
  DecodeSpec spec;
  spec.max_amount_cents = 1000;
  DecodeRun run(spec);
  run.Run(std::vector<std::string>{Txn("a", "u", kT0, 1), Txn("far", "u", kT0 + 100 * kHour, 5000),
                                   RawTxn("m", nullptr, "EUR", 1, kT0 + 200 * kHour),
                                   Txn("b", "u", kT0 + 5, 2)});
  EXPECT_EQ(run.batch.selection, (std::vector<uint32_t>{0, 3}));
  EXPECT_EQ(run.ctx().max_event_time_ms, kT0 + 5);
  EXPECT_EQ(run.batch.records[3].watermark_ms, kT0 + 5);
  ASSERT_EQ(run.out.dlq.size(), 2u);
  EXPECT_EQ(run.out.dlq[0].offset, 1);
  EXPECT_EQ(run.out.dlq[0].reason, DlqReason::kInvalidValue);
  EXPECT_EQ(run.out.dlq[1].offset, 2);
  EXPECT_EQ(run.out.dlq[1].reason, DlqReason::kMissingField);
}

TEST(DecodeValidateTest, CountersBalanceThroughAChain) {
  Chain chain({EmitSpec{}});
  chain.Feed({Txn("a", "u", kT0), "garbage", RawTxn("t", nullptr, "EUR", 1, kT0), Txn("b", "u", kT0, -5),
              Txn("c", "u", kT0 + 1)});
  EXPECT_EQ(chain.counters.in, 5);
  EXPECT_EQ(chain.counters.dlq, 3);
  EXPECT_EQ(chain.counters.out, 2);
  EXPECT_TRUE(chain.counters.Balanced());
}

}  // namespace
}  // namespace kappa::testing
