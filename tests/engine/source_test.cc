// The sources in-process, against the test's embedded broker and a real log
// archive on disk: where tasks start (fresh, restored, latest), the
// history-gap rule, the archive's parallel rounds, and the hybrid switch
// reading every record exactly once.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/archive_source.h"
#include "engine/committed_gaps.h"
#include "engine/hybrid_source.h"
#include "engine/kafka_source.h"
#include "engine/start_position.h"
#include "kafka/partition_consumer.h"
#include "tests/engine/engine_test_util.h"

namespace kappa::testing {
namespace {

class SourceTest : public EngineTest {
 protected:
  std::unique_ptr<PartitionConsumer> Consumer() {
    PartitionConsumerOptions options;
    options.group = "source-test";
    auto c = PartitionConsumer::Create(Config(), options);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }
  std::vector<Watermarks> Marks(const std::string& topic, int partitions) {
    auto c = Consumer();
    auto marks = c->AllWatermarks(topic, partitions);
    EXPECT_TRUE(marks.ok());
    return marks.ok() ? *marks : std::vector<Watermarks>{};
  }
  // Reads until every task is at `end` or nothing comes for a while.
  static Status Drain(Source& source, const std::vector<Task*>& tasks, const std::vector<int64_t>& end,
                      int64_t* records) {
    for (int idle = 0; idle < 300;) {
      bool done = true;
      for (size_t i = 0; i < tasks.size(); ++i) done &= tasks[i]->next_offset() >= end[i];
      if (done) return Status::OK();
      int64_t n = 0;
      KAPPA_RETURN_IF_ERROR(source.Read(0, &n));
      *records += n;
      idle = n == 0 ? idle + 1 : 0;
      if (n == 0 && source.exhausted()) return Status::OK();
    }
    return Status::Unavailable("no progress");
  }
  std::vector<std::string> notes_;
  NoteCallback Notes() {
    return [this](NoteLevel level, const std::string& text) {
      notes_.push_back((level == NoteLevel::kWarning ? "WARNING " : "") + text);
    };
  }
  bool NoteContains(const std::string& text) const {
    for (const auto& n : notes_) {
      if (n.find(text) != std::string::npos) return true;
    }
    return false;
  }
  // Produces `records` over `partitions` partitions of tx, archives all of
  // them under scratch dir `name`, makes their tasks and opens archive_ over
  // them on `workers` threads (in blocks of `block_bytes`). highs_ holds
  // each partition's end.
  void OpenArchive(const std::string& name, int partitions, int records, int workers,
                   size_t block_bytes = ArchiveWriter::kDefaultBlockBytes) {
    Produce("tx", partitions, records);
    for (const auto& m : Marks("tx", partitions)) highs_.push_back(m.high);
    OpenArchiveBelow(name, highs_, workers, block_bytes);
  }
  // An archive source over the first below[p] records of each partition of
  // "tx" (already produced), its tasks fresh.
  void OpenArchiveBelow(const std::string& name, const std::vector<int64_t>& below, int workers,
                        size_t block_bytes) {
    const int partitions = static_cast<int>(below.size());
    dir_ = std::make_unique<ScratchDir>(name);
    ArchiveHead(*dir_ / "archive", "tx", below, block_bytes);
    spec_ = std::make_unique<JobSpec>(Spec("tx", *dir_ / "state"));
    MakeTasks(*spec_, partitions);
    gaps_ = std::make_unique<CommittedGaps>(sink_.get());
    gaps_->Reset(partitions);
    rule_ = std::make_unique<HistoryGapRule>(*spec_, sink_.get(), Notes());
    archive_ = std::make_unique<ArchiveSource>(*spec_, *dir_ / "archive", workers, sink_.get(), *gaps_, *rule_);
    ASSERT_EQ(*archive_->Partitions(), partitions);
    ASSERT_TRUE(archive_->Open(tasks_, std::vector<bool>(partitions, false)).ok());
  }
  std::vector<int64_t> highs_;
  std::unique_ptr<ScratchDir> dir_;
  std::unique_ptr<JobSpec> spec_;
  std::unique_ptr<CommittedGaps> gaps_;
  std::unique_ptr<HistoryGapRule> rule_;
  std::unique_ptr<ArchiveSource> archive_;  // declared last: destroyed first
};

TEST_F(SourceTest, KafkaSourceStartsFreshTasksAtZeroRestoredOnesAtTheirCheckpointAndReadsEachRecordOnce) {
  Produce("tx", 2, 3000);
  const auto marks = Marks("tx", 2);
  ScratchDir dir("kafka-source");
  const JobSpec spec = Spec("tx", dir / "state");
  MakeTasks(spec, 2);
  // Partition 1 restored at offset 100: it must not see 0..99 again.
  TaskCheckpointData restored_at;
  restored_at.partition = 1;
  restored_at.next_offset = 100;
  tasks_[1]->Restore(restored_at);

  auto consumer = Consumer();
  CommittedGaps gaps(sink_.get());
  gaps.Reset(2);
  HistoryGapRule rule(spec, sink_.get(), Notes());
  KafkaSource source(spec, *consumer, gaps, rule, Notes());
  ASSERT_EQ(*source.Partitions(), 2);
  ASSERT_TRUE(source.Open(tasks_, {false, true}).ok());
  EXPECT_EQ(tasks_[0]->next_offset(), 0);
  EXPECT_EQ(tasks_[1]->next_offset(), 100);
  EXPECT_EQ(source.EndAtOpen(0), marks[0].high);

  int64_t records = 0;
  ASSERT_TRUE(Drain(source, tasks_, {marks[0].high, marks[1].high}, &records).ok());
  EXPECT_EQ(tasks_[0]->next_offset(), marks[0].high);
  EXPECT_EQ(tasks_[1]->next_offset(), marks[1].high);
  EXPECT_EQ(tasks_[0]->counters().in, marks[0].high);
  EXPECT_EQ(tasks_[1]->counters().in, marks[1].high - 100) << "records below the checkpoint are not processed again";
  EXPECT_EQ(source.LogEnd(1), marks[1].high);
  EXPECT_EQ(source.archive_records(), 0);
}

TEST_F(SourceTest, LatestStartsAtTheLogEnd) {
  Produce("tx", 1, 500);
  ScratchDir dir("latest");
  const JobSpec spec = Spec("tx", dir / "state", "", "latest");
  MakeTasks(spec, 1);
  auto consumer = Consumer();
  CommittedGaps gaps(sink_.get());
  gaps.Reset(1);
  HistoryGapRule rule(spec, sink_.get(), Notes());
  KafkaSource source(spec, *consumer, gaps, rule, Notes());
  ASSERT_TRUE(source.Open(tasks_, {false}).ok());
  EXPECT_EQ(tasks_[0]->next_offset(), 500);
  EXPECT_EQ(tasks_[0]->checkpoint().start_offset, 500);
}

TEST_F(SourceTest, HistoryBelowTheLogStartIsRefusedOrRecordedOnce) {
  // The embedded broker keeps ~5 MiB per partition: enough records push the
  // log start past zero.
  Produce("tx", 1, 80000);
  const auto marks = Marks("tx", 1);
  ASSERT_GT(marks[0].low, 0) << "the broker kept everything; produce more";
  ScratchDir dir("gap");
  {
    const JobSpec strict = Spec("tx", dir / "strict");
    MakeTasks(strict, 1);
    auto consumer = Consumer();
    CommittedGaps gaps(sink_.get());
    HistoryGapRule rule(strict, sink_.get(), Notes());
    KafkaSource source(strict, *consumer, gaps, rule, Notes());
    Status st = source.Open(tasks_, {false});
    EXPECT_EQ(st.code(), Status::Code::kDataLoss) << st.ToString();
    EXPECT_NE(st.message().find("tx[0]"), std::string::npos) << st.ToString();
    // Not "retention": the embedded broker's own cap, and what to do (a
    // bug bash looked for a retention setting and an --import file).
    EXPECT_NE(st.message().find("dropped by the embedded broker, which keeps the last 5 MiB of each partition"),
              std::string::npos)
        << st.ToString();
    EXPECT_NE(st.message().find("0.." + std::to_string(marks[0].low - 1)), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("allow_truncated_history"), std::string::npos) << st.ToString();
  }
  tasks_.clear();
  owned_.clear();
  const JobSpec lenient = Spec("tx", dir / "lenient", "  allow_truncated_history: true\n");
  MakeTasks(lenient, 1);
  auto consumer = Consumer();
  CommittedGaps gaps(sink_.get());
  gaps.Reset(1);
  HistoryGapRule rule(lenient, sink_.get(), Notes());
  KafkaSource source(lenient, *consumer, gaps, rule, Notes());
  ASSERT_TRUE(source.Open(tasks_, {false}).ok());
  EXPECT_EQ(tasks_[0]->next_offset(), marks[0].low);
  EXPECT_EQ(tasks_[0]->checkpoint().start_offset, marks[0].low);
  EXPECT_EQ(rule.gap_records(), marks[0].low);
  EXPECT_TRUE(NoteContains("WARNING tx[0]")) << "the gap is announced";
}

TEST_F(SourceTest, ArchiveSourceReplaysEveryPartitionInParallelRoundsThenIsExhausted) {
  ASSERT_NO_FATAL_FAILURE(OpenArchive("archive-source", 3, 6000, 2));
  int64_t records = 0;
  ASSERT_TRUE(Drain(*archive_, tasks_, {INT64_MAX, INT64_MAX, INT64_MAX}, &records).ok());
  EXPECT_TRUE(archive_->exhausted());
  for (int p = 0; p < 3; ++p) {
    EXPECT_EQ(tasks_[p]->next_offset(), highs_[p]) << p;
    EXPECT_EQ(tasks_[p]->counters().in, highs_[p]) << p;
  }
  EXPECT_EQ(records, 6000);
  EXPECT_EQ(archive_->archive_records(), 6000);
}

TEST_F(SourceTest, ArchiveSourceRoundTakesASliceOfEveryPendingPartition) {
  // A capped round (budget 400 over 4 partitions: 100 each, rounded up to
  // whole archive blocks of 4 KiB) on one worker must move every partition
  // forward, not spend the whole round on the first one, and read about its
  // budget, not the partitions' whole archive.
  ASSERT_NO_FATAL_FAILURE(OpenArchive("archive-round", 4, 8000, 1, 4096));
  int64_t records = 0;
  ASSERT_TRUE(archive_->Read(400, &records).ok());
  int64_t moved = 0;
  for (int p = 0; p < 4; ++p) {
    EXPECT_GE(tasks_[p]->next_offset(), 100) << "partition " << p << " got no slice of the round";
    moved += tasks_[p]->next_offset();
  }
  EXPECT_EQ(records, moved);
  EXPECT_LT(records, 2000) << "a capped round read far past its budget";
  // The rest (if any), in further rounds, exactly once.
  ASSERT_TRUE(Drain(*archive_, tasks_, highs_, &records).ok());
  for (int p = 0; p < 4; ++p) EXPECT_EQ(tasks_[p]->counters().in, highs_[p]) << p;
  EXPECT_EQ(records, 8000);
}

TEST_F(SourceTest, ArchiveSourceCappedRoundsStopAtTheirBudgetAndTakeTurns) {
  // Each partition's archive is one block here (2000 records): a capped
  // round (budget 400) reads one partition's block and stops, where giving
  // every partition a slice would read all 8000 records at once; the next
  // round goes on with a partition this one did not reach.
  ASSERT_NO_FATAL_FAILURE(OpenArchive("archive-capped", 4, 8000, 1));
  int64_t total = 0;
  for (int round = 0; round < 4; ++round) {
    int64_t records = 0;
    ASSERT_TRUE(archive_->Read(400, &records).ok());
    EXPECT_LT(records, 8000) << "capped round " << round << " read every partition's block";
    total += records;
  }
  for (int p = 0; p < 4; ++p) EXPECT_EQ(tasks_[p]->next_offset(), highs_[p]) << "partition " << p;
  EXPECT_EQ(total, 8000);
}

TEST_F(SourceTest, ArchiveSourceRoundsShareOutRecordsByWhatEachPartitionHasLeft) {
  // A skewed archive: partition 0 holds four times partition 1's records.
  // Equal slices would finish partition 1 early and leave partition 0's
  // tail to one worker; in proportion, both reach their ends together.
  Produce("tx", 2, 8000);
  for (const auto& m : Marks("tx", 2)) highs_.push_back(m.high);
  const std::vector<int64_t> below = {highs_[0], highs_[1] / 4};
  ASSERT_NO_FATAL_FAILURE(OpenArchiveBelow("archive-skewed", below, 2, 4096));
  archive_->SetRoundRecordsForTesting(250);
  ASSERT_GT(below[0], 3 * below[1]);
  std::vector<int> ended_in(2, -1);
  int64_t total = 0;
  for (int round = 0; round < 100 && (ended_in[0] < 0 || ended_in[1] < 0); ++round) {
    int64_t records = 0;
    ASSERT_TRUE(archive_->Read(0, &records).ok());
    total += records;
    for (int p = 0; p < 2; ++p) {
      if (ended_in[p] < 0 && tasks_[p]->next_offset() >= below[p]) ended_in[p] = round;
    }
    if (ended_in[0] < 0 && ended_in[1] < 0) {
      // Blocks of 4 KiB hold a few dozen records: a slice overshoots its
      // share by at most one block.
      const double done0 = static_cast<double>(tasks_[0]->next_offset()) / below[0];
      const double done1 = static_cast<double>(tasks_[1]->next_offset()) / below[1];
      EXPECT_NEAR(done0, done1, 0.15) << "round " << round;
    }
  }
  ASSERT_GE(ended_in[0], 0);
  ASSERT_GE(ended_in[1], 0);
  EXPECT_LE(std::abs(ended_in[0] - ended_in[1]), 1)
      << "partition 0 ended in round " << ended_in[0] << ", partition 1 in round " << ended_in[1];
  EXPECT_EQ(total, below[0] + below[1]);
  for (int p = 0; p < 2; ++p) EXPECT_EQ(tasks_[p]->counters().in, below[p]) << p;
}

TEST_F(SourceTest, ArchiveSourceRoundEndsOnItsTimeAndTheNextStartsWithThePartitionsItDidNotReach) {
  // An uncapped round plans large slices of every partition (a task's state
  // stays warm in the cache for a whole slice) and ends on its time: with no
  // time at all, a round runs one archive block of its first slice and stops
  // there, and the partitions it did not reach, now with the most left, go
  // first in the next rounds: four rounds over four equal partitions move
  // each one block, not one partition four blocks.
  Produce("tx", 4, 8000);
  for (const auto& m : Marks("tx", 4)) highs_.push_back(m.high);
  const int64_t equal = *std::min_element(highs_.begin(), highs_.end());
  ASSERT_GT(equal, 1000);
  const std::vector<int64_t> below(4, equal);
  ASSERT_NO_FATAL_FAILURE(OpenArchiveBelow("archive-round-time", below, 1, 4096));
  archive_->SetRoundMsForTesting(0);
  int64_t total = 0;
  for (int round = 0; round < 4; ++round) {
    int64_t records = 0;
    ASSERT_TRUE(archive_->Read(0, &records).ok());
    EXPECT_GT(records, 0) << "round " << round << " moved nothing";
    EXPECT_LT(records, equal / 4) << "round " << round << " ran past its time (one 4 KiB block holds a few dozen)";
    total += records;
  }
  int64_t moved = 0;
  for (int p = 0; p < 4; ++p) {
    EXPECT_GT(tasks_[p]->next_offset(), 0) << "partition " << p << " was left out of four rounds";
    moved += tasks_[p]->next_offset();
  }
  EXPECT_EQ(moved, total);
  // With time, the rest in further rounds, exactly once.
  archive_->SetRoundMsForTesting(ArchiveSource::kRoundMs);
  ASSERT_TRUE(Drain(*archive_, tasks_, below, &total).ok());
  for (int p = 0; p < 4; ++p) EXPECT_EQ(tasks_[p]->counters().in, equal) << p;
  EXPECT_EQ(total, 4 * equal);
}

TEST_F(SourceTest, ArchiveSourceRefusesACheckpointOutsideTheArchive) {
  Produce("tx", 1, 1000);
  ScratchDir dir("archive-outside");
  ArchiveHead(dir / "archive", "tx", {600});
  const JobSpec spec = Spec("tx", dir / "state");
  MakeTasks(spec, 1);
  TaskCheckpointData beyond;
  beyond.next_offset = 700;
  tasks_[0]->Restore(beyond);
  CommittedGaps gaps(sink_.get());
  HistoryGapRule rule(spec, sink_.get(), Notes());
  ArchiveSource source(spec, dir / "archive", 1, sink_.get(), gaps, rule);
  ASSERT_TRUE(source.Partitions().ok());
  Status st = source.Open(tasks_, {true});
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("archive ends at 600"), std::string::npos) << st.ToString();
}

TEST_F(SourceTest, HybridReadsTheArchiveThenSwitchesToKafkaAtExactlyItsEnd) {
  Produce("tx", 2, 4000);
  const auto marks = Marks("tx", 2);
  ScratchDir dir("hybrid");
  // Partition 0's archive stops at 700, partition 1 has none.
  ArchiveHead(dir / "archive", "tx", {700, 0});
  const JobSpec spec = Spec("tx", dir / "state");
  MakeTasks(spec, 2);
  auto consumer = Consumer();
  CommittedGaps gaps(sink_.get());
  gaps.Reset(2);
  HistoryGapRule rule(spec, sink_.get(), Notes());
  ArchiveSource archive(spec, dir / "archive", 2, sink_.get(), gaps, rule);
  KafkaSource kafka(spec, *consumer, gaps, rule, Notes());
  HybridSource source(archive, kafka, rule, spec);
  ASSERT_EQ(*source.Partitions(), 2);
  ASSERT_TRUE(source.Open(tasks_, {false, false}).ok());
  int64_t records = 0;
  ASSERT_TRUE(Drain(source, tasks_, {marks[0].high, marks[1].high}, &records).ok());
  EXPECT_EQ(tasks_[0]->next_offset(), marks[0].high);
  EXPECT_EQ(tasks_[1]->next_offset(), marks[1].high);
  EXPECT_EQ(tasks_[0]->counters().in, marks[0].high) << "every record once across the switch";
  EXPECT_EQ(tasks_[1]->counters().in, marks[1].high);
  EXPECT_EQ(source.archive_records(), 700);
  EXPECT_TRUE(NoteContains("tx[0]: archive done at offset 700, switching to Kafka at 700"))
      << "the switch is announced";
  EXPECT_FALSE(NoteContains("tx[1]: archive done")) << "partition 1 never read the archive";
}

}  // namespace
}  // namespace kappa::testing
