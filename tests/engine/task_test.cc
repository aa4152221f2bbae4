// Task in-process, as the runtime drives it but without Kafka or RocksDB:
// decode of good and bad records (bad ones reach the DLQ), next_offset,
// Restore/StartAt, the watermark, and that the same records give the same
// outputs through two tasks however they are batched.
#include "engine/task.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/job_spec.h"
#include "tests/operators/operator_test_util.h"

namespace kappa::testing {
namespace {

using ::testing::ElementsAre;

JobSpec Spec(const std::string& operators, const std::string& lateness = "0") {
  auto spec = ParseJobSpec("job: t\nversion: 1\nsource: {topic: in}\noperators:\n" + operators +
                               "allowed_lateness: " + lateness +
                               "\nsink: {topic: out}\ndlq: {topic: dlq}\nlate: {topic: late}\n",
                           "task_test.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return *spec;
}

const char kDedupEmit[] = "  - dedup: {ttl: 1h}\n  - emit: {key: txn_id}\n";
const char kWindow[] = "  - window: {size: 1h, key: user_id}\n";

void Append(Task& task, const std::string& payload, int64_t offset) {
  task.Append(payload.data(), static_cast<uint32_t>(payload.size()), nullptr, 0, offset, 0);
}

TEST(TaskTest, DecodesGoodRecordsAndSendsBadOnesToTheDlq) {
  CollectingOutput out;
  auto task = Task::Create(2, Spec(kDedupEmit), &out);
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  Append(**task, Txn("a", "u1", kT0), 10);
  Append(**task, "not a flatbuffer", 11);
  Append(**task, RawTxn(nullptr, "u1", "EUR", 5, kT0), 12);  // no txn_id
  Append(**task, RawTxn("c", "u1", "EUR", 5, -1), 13);       // bad event time
  Append(**task, Txn("d", "u2", kT0 + 1), 14);
  (*task)->Process();
  EXPECT_THAT(out.EmittedKeys(), ElementsAre("a", "d"));
  ASSERT_EQ(out.dlq.size(), 3u);
  EXPECT_EQ(out.dlq[0].offset, 11);
  EXPECT_EQ(out.dlq[0].reason, DlqReason::kUndecodable);
  EXPECT_EQ(out.dlq[1].reason, DlqReason::kMissingField);
  EXPECT_EQ(out.dlq[2].reason, DlqReason::kInvalidValue);
  for (const auto& d : out.dlq) EXPECT_EQ(d.partition, 2);
  EXPECT_EQ((*task)->counters().in, 5);
  EXPECT_EQ((*task)->counters().dlq, 3);
  EXPECT_EQ((*task)->next_offset(), 15);
}

TEST(TaskTest, NextOffsetFollowsTheLastProcessedRecordAndStartAtSetsBothOffsets) {
  CollectingOutput out;
  auto task = Task::Create(0, Spec(kDedupEmit), &out);
  ASSERT_TRUE(task.ok());
  (*task)->StartAt(100);
  EXPECT_EQ((*task)->next_offset(), 100);
  EXPECT_EQ((*task)->checkpoint().start_offset, 100);
  EXPECT_FALSE((*task)->has_pending());
  (*task)->Process();  // an empty batch changes nothing
  EXPECT_EQ((*task)->next_offset(), 100);
  Append(**task, Txn("a", "u", kT0), 100);
  Append(**task, Txn("b", "u", kT0), 105);  // offsets may have holes (compaction, transactions)
  EXPECT_TRUE((*task)->has_pending());
  (*task)->Process();
  EXPECT_EQ((*task)->next_offset(), 106);
  (*task)->SkipTo(200);
  EXPECT_EQ((*task)->next_offset(), 200);
  EXPECT_EQ((*task)->checkpoint().start_offset, 100) << "a skipped gap keeps the start";
}

TEST(TaskTest, WatermarkIsMaxEventTimeMinusLatenessAndSurvivesRestore) {
  CollectingOutput out;
  const JobSpec spec = Spec(kWindow, "5m");
  auto task = Task::Create(0, spec, &out);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ((*task)->watermark_ms(), kNoTime);
  Append(**task, Txn("a", "u", kT0 + 10 * kMinute), 0);
  Append(**task, Txn("b", "u", kT0 + 2 * kMinute), 1);  // out of order: no step back
  (*task)->Process();
  EXPECT_EQ((*task)->watermark_ms(), kT0 + 5 * kMinute);

  FakeStateStore store;
  store.Commit((*task)->registry());
  const TaskCheckpointData saved = (*task)->checkpoint();
  EXPECT_EQ(saved.next_offset, 2);
  EXPECT_EQ(saved.max_event_time_ms, kT0 + 10 * kMinute);

  auto restored = Task::Create(0, spec, &out);
  ASSERT_TRUE(restored.ok());
  store.Restore((*restored)->registry());
  (*restored)->Restore(saved);
  EXPECT_EQ((*restored)->next_offset(), 2);
  EXPECT_EQ((*restored)->watermark_ms(), kT0 + 5 * kMinute);
  EXPECT_EQ((*restored)->counters().in, 2);
  // The restored window fires once the watermark passes its end, with both
  // records counted.
  Append(**restored, Txn("c", "v", kT0 + 2 * kHour), 2);
  (*restored)->Process();
  ASSERT_EQ(out.emitted.size(), 1u);
  EXPECT_EQ(AsWindow(out.emitted[0])->count(), 2);
}

// A job whose store is its state's only copy forgets a dedup's expired
// keys without deleting them: the checkpoint writes no delete, the store
// drops them against the checkpoint's watermark (expiry_watermark_ms, the
// watermark its restore gives back), and a restore that still finds one
// (not yet compacted away) reads it as expired. Under scale_out (a
// compacted changelog) the deletes stay.
TEST(TaskTest, ExpiredDedupKeysCostNoDeleteAndAStaleCopyReadsAsUnseen) {
  CollectingOutput out;
  const JobSpec spec = Spec(kDedupEmit, "5m");
  auto task = Task::Create(0, spec, &out);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ((*task)->expiry_watermark_ms(), kNoTime);
  Append(**task, Txn("old", "u", kT0), 0);
  (*task)->Process();
  FakeStateStore store;
  store.Commit((*task)->registry());
  Append(**task, Txn("live", "u", kT0 + 2 * kHour), 1);
  (*task)->Process();  // the watermark (2h - 5m) expires "old"
  EXPECT_EQ((*task)->expiry_watermark_ms(), kT0 + 2 * kHour - 5 * kMinute);
  store.Commit((*task)->registry());
  EXPECT_EQ(store.table("op1_dedup").count("old"), 1u) << "no delete was recorded for the expired key";
  const TaskCheckpointData saved = (*task)->checkpoint();

  auto restored = Task::Create(0, spec, &out);
  ASSERT_TRUE(restored.ok());
  store.Restore((*restored)->registry());  // with the stale "old"
  (*restored)->Restore(saved);
  EXPECT_EQ((*restored)->expiry_watermark_ms(), (*task)->expiry_watermark_ms());
  out.emitted.clear();
  Append(**restored, Txn("old", "u", kT0 + 2 * kHour), 2);   // expired: seen anew
  Append(**restored, Txn("live", "u", kT0 + 2 * kHour), 3);  // within its TTL: a duplicate
  (*restored)->Process();
  EXPECT_EQ(out.emitted.size(), 1u);
  EXPECT_EQ((*restored)->counters().deduped, 1);

  JobSpec scaled = spec;
  scaled.scale_out.enabled = true;
  auto member = Task::Create(0, scaled, &out);
  ASSERT_TRUE(member.ok());
  Append(**member, Txn("old", "u", kT0), 0);
  (*member)->Process();
  FakeStateStore changelog_backed;
  changelog_backed.Commit((*member)->registry());
  Append(**member, Txn("live", "u", kT0 + 2 * kHour), 1);
  (*member)->Process();
  EXPECT_EQ((*member)->expiry_watermark_ms(), kNoTime);
  changelog_backed.Commit((*member)->registry());
  EXPECT_EQ(changelog_backed.table("op1_dedup").count("old"), 0u) << "under scale_out the expiry is a delete";
}

TEST(TaskTest, TheSameRecordsGiveTheSameOutputsThroughTwoTasksHoweverBatched) {
  const JobSpec spec = Spec("  - dedup: {ttl: 1h}\n  - filter: [\"status != cancelled\"]\n" + std::string(kWindow));
  std::vector<std::string> payloads;
  for (int i = 0; i < 400; ++i) {
    const auto status = i % 5 == 0 ? schema::TxnStatus::Cancelled : schema::TxnStatus::Approved;
    payloads.push_back(i % 37 == 0 ? std::string("garbage")
                                   : Txn(Name('t', i % 300), Name('u', i % 7), kT0 + i * kMinute / 3, i, status));
  }
  auto run = [&](size_t batch) {
    CollectingOutput out;
    auto task = Task::Create(1, spec, &out);
    EXPECT_TRUE(task.ok());
    for (size_t i = 0; i < payloads.size(); ++i) {
      Append(**task, payloads[i], static_cast<int64_t>(i));
      if ((i + 1) % batch == 0) (*task)->Process();
    }
    (*task)->Process();
    return out;
  };
  const CollectingOutput one = run(1000), two = run(7);
  ASSERT_FALSE(one.emitted.empty());
  EXPECT_EQ(one.emitted, two.emitted);
  EXPECT_EQ(one.dlq, two.dlq);
  EXPECT_EQ(one.late, two.late);
}

TEST(TaskTest, StateTableNamesAreWhatTheChainRegisters) {
  const JobSpec spec = Spec("  - dedup: {ttl: 1h}\n  - filter: [\"status != cancelled\"]\n" + std::string(kWindow));
  auto names = Task::StateTableNames(spec);
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ElementsAre("op1_dedup", "op3_window"));
  auto task = Task::Create(0, spec, nullptr);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ((*task)->registry().table_names(), *names);
}

}  // namespace
}  // namespace kappa::testing
