// The checkpoint coordinator with real RocksDB state and the real sink on
// the test's embedded broker: the sink barrier comes before the state
// commit, a failed barrier commits nothing, the stored offsets are the
// tasks', and under exactly-once a committed gap keeps its offset.
#include <librdkafka/rdkafka.h>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "engine/checkpoint_coordinator.h"
#include "engine/committed_gaps.h"
#include "engine/kafka_source.h"
#include "kafka/kafka_client.h"
#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"
#include "state/state_backend.h"
#include "tests/engine/engine_test_util.h"

namespace kappa::testing {
namespace {

// A clock the test moves.
class StepClock final : public Clock {
 public:
  int64_t NowMs() const override { return now; }
  int64_t now = 1000;
};

// A barrier in front of the real sink that records what the state store
// held when the barrier ran, and can be told to fail.
class ObservingBarrier final : public OutputBarrier {
 public:
  ObservingBarrier(KafkaSink& sink, StateBackend& backend, bool transactional)
      : sink_(sink), backend_(backend), transactional_(transactional) {}
  bool transactional() const override { return transactional_; }
  Status Flush(int timeout_ms) override {
    durable_epoch_at_barrier.push_back(Durable());
    if (fail) return Status::Unavailable("sink delivery failed (injected)");
    return sink_.Flush(timeout_ms);
  }
  Status CommitEpoch(int64_t /*epoch*/, const std::vector<std::pair<int32_t, int64_t>>& offsets) override {
    durable_epoch_at_barrier.push_back(Durable());
    if (clock) clock->now += commit_ms;
    committed_offsets.push_back(offsets);
    return fail ? Status::Unavailable("transaction failed (injected)") : Status::OK();
  }
  // Set: at-least-once hands this wait to the backend's writer instead of
  // flushing (as the Kafka sink's CloseOutputs does).
  std::function<Status()> CloseOutputs(int /*timeout_ms*/) override {
    if (!handover) return nullptr;
    ++handovers;
    return handover;
  }
  // Set: exactly-once hands this commit to the backend's writer too (as
  // the Kafka sink's CommitEpochLater does).
  std::function<Status()> CommitEpochLater(int64_t /*epoch*/,
                                           const std::vector<std::pair<int32_t, int64_t>>& offsets) override {
    if (!handover) return nullptr;
    ++handovers;
    committed_offsets.push_back(offsets);
    return handover;
  }
  int64_t Durable() {
    auto w = backend_.WaitForCommits();
    EXPECT_TRUE(w.ok());
    return backend_.last_epoch();
  }
  bool fail = false;
  std::function<Status()> handover;
  int handovers = 0;
  StepClock* clock = nullptr;  // moved by commit_ms per transaction commit
  int64_t commit_ms = 0;
  std::vector<int64_t> durable_epoch_at_barrier;
  std::vector<std::vector<std::pair<int32_t, int64_t>>> committed_offsets;

 private:
  KafkaSink& sink_;
  StateBackend& backend_;
  bool transactional_;
};


class CheckpointCoordinatorTest : public EngineTest {
 protected:
  void SetUpJob(const std::string& name, int partitions, uint64_t records) {
    Produce("tx", partitions, records);
    dir_ = std::make_unique<ScratchDir>(name);
    spec_ = Spec("tx", *dir_ / "state");
    MakeTasks(spec_, partitions);
    auto names = Task::StateTableNames(spec_);
    ASSERT_TRUE(names.ok());
    auto backend = StateBackend::Open(spec_.state_dir, *names);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(*backend);
    ASSERT_TRUE(backend_->CheckIdentity({spec_.job, spec_.version, spec_.spec_hash}).ok());
    PartitionConsumerOptions options;
    options.group = spec_.ConsumerGroup();
    auto consumer = PartitionConsumer::Create(Config(), options);
    ASSERT_TRUE(consumer.ok());
    consumer_ = std::move(*consumer);
    gaps_ = std::make_unique<CommittedGaps>(sink_.get());
    gaps_->Reset(partitions);
  }
  // Reads everything through a Kafka source.
  void ProcessAll() {
    HistoryGapRule rule(spec_, sink_.get(), nullptr);
    KafkaSource source(spec_, *consumer_, *gaps_, rule, nullptr);
    ASSERT_TRUE(source.Open(tasks_, std::vector<bool>(tasks_.size(), false)).ok());
    for (int idle = 0; idle < 300;) {
      bool done = true;
      for (size_t i = 0; i < tasks_.size(); ++i) done &= tasks_[i]->next_offset() >= source.EndAtOpen(i);
      if (done) return;
      int64_t n = 0;
      ASSERT_TRUE(source.Read(0, &n).ok());
      idle = n == 0 ? idle + 1 : 0;
    }
    FAIL() << "the topic was not read to its end";
  }
  int64_t StoredOffset(int32_t partition) {
    auto stored = backend_->ReadTask(partition);
    EXPECT_TRUE(stored.ok());
    return stored.ok() && stored->has_value() ? (**stored).next_offset : -1;
  }
  // `barrier` hands the writer a wait that returns only once the returned
  // function is called (the acks come in, the transaction commits).
  static std::function<void()> HoldHandover(ObservingBarrier& barrier) {
    auto done = std::make_shared<std::promise<Status>>();
    barrier.handover = [ready = done->get_future().share()] { return ready.get(); };
    return [done] { done->set_value(Status::OK()); };
  }
  // A coordinator whose barrier hands the writer a wait that returns only
  // once `release` is called (HoldHandover).
  struct HandedOver {
    HandedOver(CheckpointCoordinatorTest& t, bool transactional)
        : barrier(*t.sink_, *t.backend_, transactional), release(HoldHandover(barrier)),
          coordinator(t.tasks_, *t.backend_, barrier, t.consumer_.get(), "tx", *t.gaps_, 5000) {}
    ObservingBarrier barrier;
    std::function<void()> release;
    CheckpointCoordinator coordinator;
  };
  // Checkpoint 1, begun: unwritten until `release`, then durable with every
  // task's offset. `early`: what writing it before would mean.
  void ExpectWrittenOnlyAfter(const std::function<void()>& release, const char* early) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(backend_->last_epoch(), 0) << early;
    release();
    ASSERT_TRUE(backend_->WaitForCommits().ok());
    EXPECT_EQ(backend_->last_epoch(), 1);
    for (const Task* t : tasks_) EXPECT_EQ(StoredOffset(t->partition()), t->next_offset());
  }

  JobSpec spec_;
  std::unique_ptr<ScratchDir> dir_;
  std::unique_ptr<StateBackend> backend_;
  std::unique_ptr<PartitionConsumer> consumer_;
  std::unique_ptr<CommittedGaps> gaps_;
};

TEST_F(CheckpointCoordinatorTest, TheSinkBarrierRunsBeforeTheStateCommitAndTheOffsetsAreTheTasks) {
  SetUpJob("order", 2, 2000);
  ObservingBarrier barrier(*sink_, *backend_, false);
  StepClock clock;
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000, clock);
  EXPECT_FALSE(coordinator.Due());
  clock.now += 5000;
  EXPECT_TRUE(coordinator.Due()) << "due after the interval on the given clock";

  ProcessAll();
  Status st = coordinator.Checkpoint();
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = coordinator.Finish();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(barrier.durable_epoch_at_barrier.size(), 2u);
  EXPECT_EQ(barrier.durable_epoch_at_barrier[0], 0) << "outputs are flushed before their state is committed";
  EXPECT_EQ(barrier.durable_epoch_at_barrier[1], 1);
  EXPECT_EQ(backend_->last_epoch(), 2);
  EXPECT_EQ(coordinator.stats().epochs, 2);
  EXPECT_FALSE(coordinator.Due()) << "a checkpoint restarts the interval";
  for (int32_t p = 0; p < 2; ++p) EXPECT_EQ(StoredOffset(p), tasks_[p]->next_offset()) << p;
  EXPECT_EQ(tasks_[0]->counters().in + tasks_[1]->counters().in, 2000);
}

TEST_F(CheckpointCoordinatorTest, TooLittleFreeSpaceStopsBeforeTheSinkAndTheStateAreTouched) {
  SetUpJob("headroom", 1, 1000);
  ObservingBarrier barrier(*sink_, *backend_, false);
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000);
  const int64_t mib = int64_t{1} << 20;
  int64_t free_bytes = 100 * mib;
  std::vector<std::string> asked;
  coordinator.SetHeadroom(HeadroomPolicy{}, [&](const std::string& dir) -> Result<int64_t> {
    asked.push_back(dir);
    return free_bytes;
  });
  ProcessAll();
  Status st = coordinator.Checkpoint();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(backend_->WaitForCommits().ok());
  EXPECT_EQ(backend_->last_epoch(), 1);
  EXPECT_EQ(asked, std::vector<std::string>{spec_.state_dir});

  free_bytes = 10 * mib;  // below the 64 MiB minimum
  st = coordinator.Checkpoint();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(st.message(), "state dir " + spec_.state_dir +
                              " has 10 MiB free, needs 64 MiB: free space or move --state-dir");
  EXPECT_EQ(barrier.durable_epoch_at_barrier.size(), 1u) << "the sink barrier must not run without room";
  EXPECT_EQ(coordinator.epoch(), 1);
  st = coordinator.Finish();
  EXPECT_FALSE(st.ok()) << "no final checkpoint without room either";
  ASSERT_TRUE(backend_->WaitForCommits().ok());
  EXPECT_EQ(backend_->last_epoch(), 1) << "the last durable checkpoint stays the last one";
}

TEST_F(CheckpointCoordinatorTest, AFailedBarrierCommitsNoState) {
  SetUpJob("failed-barrier", 1, 1000);
  ObservingBarrier barrier(*sink_, *backend_, false);
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000);
  ProcessAll();
  barrier.fail = true;
  Status st = coordinator.Checkpoint();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("injected"), std::string::npos) << st.ToString();
  ASSERT_TRUE(backend_->WaitForCommits().ok());
  EXPECT_EQ(backend_->last_epoch(), 0) << "nothing moved past outputs that were not delivered";
  EXPECT_EQ(StoredOffset(0), -1);
}

// At-least-once without the stall: the checkpoint returns at once, and the
// backend writes it only once the outputs before it are acknowledged.
TEST_F(CheckpointCoordinatorTest, HandedToTheWriterTheAcksHoldTheCheckpointBackNotTheProcessing) {
  SetUpJob("acks-in-writer", 2, 2000);
  HandedOver job(*this, false);
  auto& [barrier, acks, coordinator] = job;
  ProcessAll();
  Status st = coordinator.Checkpoint();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(barrier.handovers, 1);
  EXPECT_TRUE(barrier.durable_epoch_at_barrier.empty()) << "Flush ran: the checkpoint stalled on the sink";
  EXPECT_EQ(coordinator.epoch(), 1);
  ExpectWrittenOnlyAfter(acks, "the checkpoint was written before its outputs were acknowledged");
}

// A stall is accounted for: with the writer behind (its first checkpoint
// still waiting for the acks, a second queued), the third checkpoint waits
// for room, and that wait is the stall's writer share, not the sink's.
TEST_F(CheckpointCoordinatorTest, AWriterThatIsBehindIsTheStallsNamedShare) {
  SetUpJob("writer-behind", 1, 1000);
  HandedOver job(*this, false);
  auto& [barrier, acks, coordinator] = job;
  ProcessAll();
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  EXPECT_LT(coordinator.stats().writer_wait_total_ms, 50) << "two pending checkpoints fit the writer's queue";
  const double before = coordinator.stats().writer_wait_total_ms;
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    acks();
  });
  const auto began = std::chrono::steady_clock::now();
  Status st = coordinator.Checkpoint();
  const double stalled = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  release.join();
  ASSERT_TRUE(st.ok()) << st.ToString();
  const CheckpointStats& s = coordinator.stats();
  EXPECT_GE(s.writer_wait_total_ms, 150) << "the third checkpoint waited for the acks of the first";
  EXPECT_LE(s.writer_wait_total_ms, stalled);
  EXPECT_DOUBLE_EQ(s.writer_wait_max_ms, s.writer_wait_total_ms - before) << "the third's wait is the longest";
  EXPECT_LT(s.flush_total_ms, 100) << "the acks were the writer's to wait for, not the checkpoint's";
  EXPECT_LT(s.capture_max_ms, s.writer_wait_max_ms);
  ASSERT_TRUE(backend_->WaitForCommits().ok());
  EXPECT_EQ(backend_->last_epoch(), 3);
}

TEST_F(CheckpointCoordinatorTest, HandedToTheWriterAFailedDeliveryLeavesTheCheckpointUnwrittenAndStopsTheJob) {
  SetUpJob("acks-failed", 1, 1000);
  ObservingBarrier barrier(*sink_, *backend_, false);
  barrier.handover = [] { return Status::Unavailable("delivery to out[0] failed (injected)"); };
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000);
  ProcessAll();
  ASSERT_TRUE(coordinator.Checkpoint().ok()) << "the capture itself succeeds";
  auto durable = backend_->WaitForCommits();
  ASSERT_FALSE(durable.ok());
  EXPECT_NE(durable.status().message().find("injected"), std::string::npos) << durable.status().ToString();
  EXPECT_EQ(backend_->last_epoch(), 0) << "nothing moved past outputs that were not delivered";
  EXPECT_EQ(StoredOffset(0), -1);
  Status st = coordinator.Checkpoint();
  EXPECT_FALSE(st.ok()) << "the next checkpoint must stop the job";
  EXPECT_NE(st.message().find("injected"), std::string::npos) << st.ToString();
}

// Exactly-once without the stall: the transaction's commit, offsets
// included, runs on the backend's writer, and the state follows it.
TEST_F(CheckpointCoordinatorTest, UnderExactlyOnceTheWriterCommitsTheTransactionBeforeTheState) {
  SetUpJob("eos-in-writer", 2, 2000);
  HandedOver job(*this, true);
  auto& [barrier, commit, coordinator] = job;
  ProcessAll();
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  EXPECT_EQ(barrier.handovers, 1);
  EXPECT_TRUE(barrier.durable_epoch_at_barrier.empty()) << "CommitEpoch ran: the checkpoint stalled on the commit";
  ASSERT_EQ(barrier.committed_offsets.size(), 1u);
  for (size_t i = 0; i < tasks_.size(); ++i) {
    EXPECT_EQ(barrier.committed_offsets[0][i].second, tasks_[i]->next_offset()) << "the commit carries the offsets";
  }
  ExpectWrittenOnlyAfter(commit, "the state was written before its transaction committed");
}

TEST_F(CheckpointCoordinatorTest, UnderExactlyOnceACommittedGapKeepsItsOffsetUntilItIsReRead) {
  SetUpJob("eos-gap", 1, 1000);
  // Kafka's group holds offset 600, tagged by this spec's transactions;
  // RocksDB holds nothing: offsets 0..599 were delivered but their state lost.
  {
    auto committer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", spec_.ConsumerGroup()}});
    ASSERT_TRUE(committer.ok());
    PartitionList offsets(1);
    offsets.Add("tx", 0, 600);
    const std::string tag = EosOffsetTag(spec_);
    offsets[0].metadata = ::strdup(tag.c_str());
    offsets[0].metadata_size = tag.size();
    ASSERT_EQ(rd_kafka_commit(committer->get(), offsets.get(), 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  Status found = gaps_->Find(spec_, *consumer_, tasks_, nullptr);
  ASSERT_TRUE(found.ok()) << found.ToString();
  ASSERT_TRUE(gaps_->suppressing(0)) << "the tagged offset ahead of the state opens a suppressed gap";
  ObservingBarrier barrier(*sink_, *backend_, true);
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000);
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  ASSERT_EQ(barrier.committed_offsets.size(), 1u);
  EXPECT_EQ(barrier.committed_offsets[0][0].second, 600) << "the transaction keeps the offset Kafka already has";

  ProcessAll();
  EXPECT_FALSE(gaps_->suppressing(0)) << "the gap ended when its last record was re-read";
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  EXPECT_EQ(barrier.committed_offsets[1][0].second, tasks_[0]->next_offset());
  EXPECT_EQ(tasks_[0]->counters().in, 1000) << "the gap was re-read to rebuild the state";
}

TEST_F(CheckpointCoordinatorTest, UnderExactlyOnceTheTransactionCommitIsTheTimedSinkBarrier) {
  SetUpJob("eos-timed", 1, 100);
  ObservingBarrier barrier(*sink_, *backend_, true);
  StepClock clock;
  barrier.clock = &clock;
  barrier.commit_ms = 40;
  CheckpointCoordinator coordinator(tasks_, *backend_, barrier, consumer_.get(), "tx", *gaps_, 5000, clock);
  ProcessAll();
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  ASSERT_TRUE(coordinator.Checkpoint().ok());
  EXPECT_EQ(coordinator.stats().flush_total_ms, 80) << "the time in the two transaction commits is the sink's share";
}

}  // namespace
}  // namespace kappa::testing
