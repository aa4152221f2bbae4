// The registry in its control topic: what one Registry writes, a fresh one
// reads back (the latest record per key); a missing control topic is an
// empty registry; two registries see each other's writes.
#include "replay/registry.h"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <thread>

#include "kafka/kafka_producer.h"
#include "schemas/control_generated.h"
#include "kafka/topic_reader.h"
#include "tests/replay/replay_test_util.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

// Job "spend" with version 1 live and serving.
JobRecord SpendV1Serving() {
  JobRecord job;
  job.job = "spend";
  job.versions = {Version(1, VersionState::kLive)};
  job.serving = 1;
  return job;
}

// A job record as a kappa from before sequenced job records wrote it
// (seq 0, under the key job/<job>): versions 1 (live) and 2 (caught up).
std::string OlderKappasJobRecord(const std::string& job, int32_t serving) {
  flatbuffers::FlatBufferBuilder fbb(512);
  std::vector<flatbuffers::Offset<schema::VersionEntry>> versions = {
      schema::CreateVersionEntryDirect(fbb, 1, "h1", schema::VersionState::Live),
      schema::CreateVersionEntryDirect(fbb, 2, "h2", schema::VersionState::CaughtUp)};
  std::vector<int32_t> previous;
  fbb.Finish(schema::CreateJobRegistryDirect(fbb, job.c_str(), &versions, serving, &previous, 1, /*seq=*/0,
                                             /*base_seq=*/0));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

class RegistryTest : public BrokerTest {
 protected:
  // Writes the progress records of instances "a" and "b" (same job and
  // version) and reads them back through a fresh registry, in that order.
  // An instance's record of version 5 of "spend": its partitions' positions,
  // when it reported (every second), its rate and records read.
  static ProgressRecord Instance(const std::vector<std::pair<int32_t, int64_t>>& positions, int64_t checkpoint_ms,
                                 double rate, int64_t in) {
    ProgressRecord r = Progress("spend", 5, positions);
    r.snapshot.checkpoint_ms = checkpoint_ms;
    r.report_interval_ms = 1000;
    r.snapshot.records_per_second = rate;
    r.snapshot.counters.in = in;
    return r;
  }
  void RoundTripInstances(ProgressRecord a, ProgressRecord b, ProgressRecord* got_a, ProgressRecord* got_b) {
    CreateTopic("kappa.control", 1);
    a.instance = "a";
    b.instance = "b";
    {
      Registry writer(Config());
      ASSERT_TRUE(writer.PutProgress(a).ok());
      ASSERT_TRUE(writer.PutProgress(b).ok());
    }
    Registry reader(Config());
    ASSERT_TRUE(reader.Refresh().ok());
    auto instances = reader.InstanceProgress(a.job, a.version);
    ASSERT_EQ(instances.size(), 2u);
    const bool a_first = instances[0].instance == "a";
    *got_a = instances[a_first ? 0 : 1];
    *got_b = instances[a_first ? 1 : 0];
  }
};

TEST_F(RegistryTest, MissingControlTopicIsAnEmptyRegistry) {
  Registry registry(Config(), "no.such.control");
  ASSERT_TRUE(registry.Refresh().ok());
  EXPECT_TRUE(registry.Jobs().empty());
  EXPECT_FALSE(registry.Job("spend").has_value());
  EXPECT_FALSE(registry.Progress("spend", 1).has_value());
}

TEST_F(RegistryTest, AFreshRegistrySeesTheLatestRecordPerKey) {
  CreateTopic("kappa.control", 1);
  {
    Registry writer(Config());
    JobRecord job = SpendV1Serving();
    ASSERT_TRUE(writer.PutJob(job).ok());
    job.versions.push_back(Version(2, VersionState::kReplaying));
    ASSERT_TRUE(writer.PutJob(job).ok());  // supersedes the first
    JobRecord other;
    other.job = "fraud";
    other.versions = {Version(7, VersionState::kLive)};
    other.serving = 7;
    ASSERT_TRUE(writer.PutJob(other).ok());
    ASSERT_TRUE(writer.PutProgress(Progress("spend", 2, {{0, 10}, {1, 20}}, 1)).ok());
    ProgressRecord later = Progress("spend", 2, {{0, 15}, {1, 25}}, 2);
    later.caught_up_since_ms = 1234;
    later.snapshot.counters.in = 40;
    later.snapshot.partitions[1].log_end = 90;
    later.snapshot.partitions[1].watermark_ms = 1767225600123;
    later.snapshot.partitions[1].start_offset = 5;
    ASSERT_TRUE(writer.PutProgress(later).ok());
    ASSERT_TRUE(writer.PutProgress(Progress("spend", 1, {{0, 99}})).ok());
  }
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto jobs = reader.Jobs();
  EXPECT_EQ(jobs, (std::vector<std::string>{"fraud", "spend"}));
  auto spend = reader.Job("spend");
  ASSERT_TRUE(spend.has_value());
  ASSERT_EQ(spend->versions.size(), 2u);
  EXPECT_EQ(spend->serving, 1);
  EXPECT_EQ(spend->versions[1].state, VersionState::kReplaying);
  EXPECT_EQ(spend->versions[1].output_topic, "out.v2");
  EXPECT_GT(spend->updated_at_ms, 0);
  auto fraud = reader.Job("fraud");
  ASSERT_TRUE(fraud.has_value());
  EXPECT_EQ(fraud->serving, 7);

  auto v2 = reader.Progress("spend", 2);
  ASSERT_TRUE(v2.has_value());
  EXPECT_EQ(v2->snapshot.epoch, 2);
  EXPECT_EQ(v2->caught_up_since_ms, 1234);
  EXPECT_EQ(v2->snapshot.counters.in, 40);
  ASSERT_EQ(v2->snapshot.partitions.size(), 2u);
  EXPECT_EQ(v2->snapshot.partitions[0].position, 15);
  EXPECT_EQ(v2->snapshot.partitions[1].partition, 1);
  EXPECT_EQ(v2->snapshot.partitions[1].position, 25);
  EXPECT_EQ(v2->snapshot.partitions[1].log_end, 90);
  EXPECT_EQ(v2->snapshot.partitions[1].watermark_ms, 1767225600123);
  EXPECT_EQ(v2->snapshot.partitions[1].lag(), 65);
  EXPECT_EQ(v2->snapshot.partitions[1].start_offset, 5) << "percent done counts from where the version started";
  EXPECT_EQ(v2->snapshot.max_lag_partition(), 1);
  EXPECT_FALSE(v2->stopped);
  auto v1 = reader.Progress("spend", 1);
  ASSERT_TRUE(v1.has_value());
  EXPECT_EQ(v1->snapshot.partitions.at(0).position, 99);
  EXPECT_FALSE(reader.Progress("spend", 3).has_value());
}

// A bug bash: progress records (a version's heartbeat, 36 KB a second
// over 1000 partitions) went to partition 0 with the job records, and the
// embedded broker's 5 MiB per partition dropped the first job records; each
// job record builds on the one before it, so every later one was ignored in
// silence: a promotion vanished, a new deploy read as the serving version,
// then "no jobs registered". Job records keep partition 0 to themselves
// (when the topic has another), and a partition 0 that lost its first
// records is an error, never a smaller registry.
TEST_F(RegistryTest, HeartbeatsStayOffTheJobRecordsPartitionAndALostHistoryIsAnError) {
  CreateTopic("kappa.control", 3);
  Registry writer(Config());
  JobRecord job = SpendV1Serving();
  ASSERT_TRUE(writer.PutJob(job).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(writer.PutProgress(Progress("spend", 1, {{0, i}}, i)).ok());
  ASSERT_TRUE(writer.PutValue("dlq-replayed/x/0", "0-5").ok());
  job.versions.push_back(Version(2, VersionState::kReplaying));
  ASSERT_TRUE(writer.PutJob(job).ok());
  auto read = ReadTopic(Config(), "kappa.control", [](const ConsumedRecord& r) {
    EXPECT_EQ(r.partition == 0, std::string(r.key).rfind("job/", 0) == 0) << r.key << " in partition " << r.partition;
  });
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  ASSERT_TRUE(reader.Job("spend").has_value());
  EXPECT_EQ(reader.Job("spend")->versions.size(), 2u);
  EXPECT_EQ(reader.Progress("spend", 1)->snapshot.epoch, 19);

  // Partition 0 loses its oldest records: retention on a real broker, the
  // 5 MiB bound on the embedded one (filled here with other keys).
  if (real_broker()) {
    ExpireOldestRecords("kappa.control", 0);
  } else {
    auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    const std::string filler(256 * 1024, 'x');
    for (int i = 0; i < 24; ++i) ASSERT_TRUE((*producer)->Produce("kappa.control", 0, "filler", filler).ok());
    ASSERT_TRUE((*producer)->Flush(30000).ok());
  }
  Registry after(Config());
  const Status st = after.Refresh();
  ASSERT_FALSE(st.ok()) << "a registry missing its first job records read as a smaller one";
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("the control topic kappa.control has lost its first"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("cleanup.policy=compact"), std::string::npos) << st.ToString();
}

// An older kappa wrote heartbeats, throttles and DLQ replay markers to the
// partition librdkafka's partitioner chose; this one writes a key to a
// partition of its own choosing, so after an upgrade a key has records in
// two partitions. The latest written wins, whichever partition is read
// last (a bug bash: the old binary's marker was read after the new one's,
// and `dlq replay` re-injected what the new one had just re-injected).
TEST_F(RegistryTest, AKeyWrittenToAnotherPartitionBeforeAnUpgradeReadsAsItsLatestValue) {
  CreateTopic("kappa.control", 4);
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  const std::string key = "dlq-replayed/x/0";
  // The old layout's copies, in every partition: whichever one this kappa
  // writes to, an older value is in a partition read after it.
  for (int32_t p = 0; p < 4; ++p) ASSERT_TRUE((*producer)->Produce("kappa.control", p, key, "old").ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later timestamp, as an upgrade's
  Registry writer(Config());
  ASSERT_TRUE(writer.PutValue(key, "new").ok());
  for (int i = 0; i < 3; ++i) {
    Registry reader(Config());
    ASSERT_TRUE(reader.Refresh().ok());
    EXPECT_EQ(reader.Value(key).value_or("(none)"), "new");
  }
}

// An older kappa (before sequenced job records) still running beside this
// one: its job records carry no sequence, so they are applied before every
// sequenced one, and a write of it that came after this kappa's is ignored:
// its promote said "version 2 now serves" while this kappa went on serving
// v1, without a word (a bug bash). The registry now says so; an older
// record from before the upgrade is history, not a warning.
TEST_F(RegistryTest, AnOlderKappasJobRecordWrittenAfterThisKappasIsNamed) {
  CreateTopic("kappa.control", 2);
  auto old_record = [](int32_t serving) { return OlderKappasJobRecord("spend", serving); };
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  // Before the upgrade: the older kappa registered spend, v1 serving.
  ASSERT_TRUE((*producer)->Produce("kappa.control", 0, "job/spend", old_record(1)).ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Registry writer(Config());
  ASSERT_TRUE(writer.Refresh().ok());
  JobRecord job = *writer.Job("spend");
  job.versions.push_back(Version(3, VersionState::kReplaying));
  ASSERT_TRUE(writer.PutJob(job).ok());
  {
    Registry reader(Config());
    ASSERT_TRUE(reader.Refresh().ok());
    EXPECT_TRUE(reader.warnings().empty()) << reader.warnings().front();
    EXPECT_EQ(reader.Job("spend")->versions.size(), 3u);
  }
  // After it: the older kappa promotes v2.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE((*producer)->Produce("kappa.control", 0, "job/spend", old_record(2)).ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_EQ(reader.Job("spend")->serving, 1) << "the sequenced history holds";
  ASSERT_EQ(reader.warnings().size(), 1u);
  EXPECT_NE(reader.warnings()[0].find("job spend: an older kappa"), std::string::npos) << reader.warnings()[0];
  EXPECT_NE(reader.warnings()[0].find("that write is ignored"), std::string::npos) << reader.warnings()[0];
  EXPECT_NE(reader.warnings()[0].find("upgrade every kappa that uses kappa.control"), std::string::npos)
      << reader.warnings()[0];
}

// An older kappa's control topic: its job records went to whichever
// partition librdkafka chose, not to partition 0. One of those partitions
// losing its first records (the embedded broker's 5 MiB here, retention on
// a real one) read as "no jobs registered", and a new deploy of v1 became
// the serving version over a promoted v2 (a bug bash). It is an error, as
// partition 0's loss is: whether a job record survives there, or only the
// job's progress.
TEST_F(RegistryTest, AnOlderKappasJobRecordsLostFromAnotherPartitionAreAnError) {
  for (const bool keep_one : {true, false}) {
    SCOPED_TRACE(keep_one ? "a job record left" : "only progress left");
    const std::string control = keep_one ? "old.control.a" : "old.control.b";
    CreateTopic(control, 3);
    auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    ASSERT_TRUE((*producer)->Produce(control, 2, "job/spend", OlderKappasJobRecord("spend", 2)).ok());
    ASSERT_TRUE((*producer)->Flush(30000).ok());
    {
      Registry writer(Config(), control);
      ASSERT_TRUE(writer.PutProgress(Progress("spend", 2, {{0, 5}})).ok());
      Registry reader(Config(), control);
      ASSERT_TRUE(reader.Refresh().ok());
      ASSERT_TRUE(reader.Job("spend").has_value());
      EXPECT_EQ(reader.Job("spend")->serving, 2);
    }
    const std::string filler(256 * 1024, 'x');
    for (int i = 0; i < 24; ++i) ASSERT_TRUE((*producer)->Produce(control, 2, "filler", filler).ok());
    if (keep_one) ASSERT_TRUE((*producer)->Produce(control, 2, "job/spend", OlderKappasJobRecord("spend", 2)).ok());
    ASSERT_TRUE((*producer)->Flush(30000).ok());
    Registry after(Config(), control);
    const Status st = after.Refresh();
    ASSERT_FALSE(st.ok()) << "a registry missing its first job records read as a smaller one";
    EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
    EXPECT_NE(st.message().find("records in partition 2, where an older kappa kept job records (job spend's"),
              std::string::npos)
        << st.ToString();
  }
}

// A scaled-out instance's record carries its standby copies and their lag
// (what `kappa status` shows per instance); one without copies has none.
TEST_F(RegistryTest, AnInstancesStandbyCopiesAndTheirLagRoundTrip) {
  ProgressRecord with = Progress("spend", 3, {{0, 10}, {2, 20}});
  with.snapshot.standbys = {{1, 0, 77}, {3, 12, 40}, {5, -1, -1}};
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(with, Progress("spend", 3, {{1, 77}}), &a, &b));
  ASSERT_EQ(a.snapshot.standbys.size(), 3u);
  EXPECT_EQ(a.snapshot.standbys[1].partition, 3);
  EXPECT_EQ(a.snapshot.standbys[1].lag_records, 12);
  EXPECT_EQ(a.snapshot.standbys[1].next_offset, 40);
  EXPECT_EQ(a.snapshot.standbys[2].lag_records, -1);
  EXPECT_TRUE(b.snapshot.standbys.empty());
}

// A restore from the changelog under way travels with the instance's
// progress record (kappa status shows it while it lasts); none when the
// record says nothing about one.
TEST_F(RegistryTest, AnInstancesRestoreInProgressRoundTrips) {
  ProgressRecord with = Progress("spend", 4, {{0, 10}});
  with.snapshot.restoring = RestoreProgress{2, 45000, 120000, 3500000, 4.5};
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(with, Progress("spend", 4, {{1, 7}}), &a, &b));
  ASSERT_TRUE(a.snapshot.restoring.has_value());
  EXPECT_EQ(a.snapshot.restoring->partition, 2);
  EXPECT_EQ(a.snapshot.restoring->records, 45000);
  EXPECT_EQ(a.snapshot.restoring->total_records, 120000);
  EXPECT_EQ(a.snapshot.restoring->bytes, 3500000);
  EXPECT_DOUBLE_EQ(a.snapshot.restoring->eta_seconds, 4.5);
  EXPECT_FALSE(b.snapshot.restoring.has_value());
}

// A process killed with -9 never writes "stopped": its record says how often
// it reports, and `kappa status` calls it silent after three of those (at
// least 30 s) rather than "running" at its last rate for ever.
TEST_F(RegistryTest, AProcessSilentForThreeReportIntervalsIsNotReporting) {
  ProgressRecord p = Progress("spend", 1, {{0, 10}});
  p.snapshot.checkpoint_ms = 1'000'000;
  p.report_interval_ms = 20'000;
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(p, Progress("spend", 1, {{1, 7}}), &a, &b));
  EXPECT_EQ(a.report_interval_ms, 20'000);
  EXPECT_EQ(b.report_interval_ms, 0) << "a record that does not say reads 0";
  EXPECT_EQ(a.Liveness(1'000'000 + 60'000), "running");
  EXPECT_EQ(a.Liveness(1'000'000 + 61'000).rfind("not reporting for 61 s (it reports every 20 s", 0), 0u)
      << a.Liveness(1'000'000 + 61'000);
  a.report_interval_ms = 1'000;
  EXPECT_EQ(a.Liveness(1'000'000 + 30'000), "running") << "never sooner than 30 s";
  EXPECT_NE(a.Liveness(1'000'000 + 30'001), "running");
  a.stopped = true;
  EXPECT_EQ(a.Liveness(1'000'000 + 90'000), "stopped");
  b.snapshot.checkpoint_ms = 1'000'000;
  // Without an interval (an older kappa's record) only a silence past any
  // but a rare checkpoint interval: it read as running for ever (a bug bash).
  EXPECT_EQ(b.Liveness(1'000'000 + 600'000), "running") << "an interval of minutes is possible";
  EXPECT_EQ(b.Liveness(1'000'000 + 3'600'000).rfind("not reporting for 3600 s (its record, from an older kappa", 0),
            0u)
      << b.Liveness(1'000'000 + 3'600'000);
}

// A bug bash: after one instance of a scaled-out version was killed, status
// added its last counters and rate to the new owner's (which took its
// partitions over): 1000 rec/s from one live process capped at 500. A silent
// instance no longer counts while another runs.
TEST_F(RegistryTest, AVersionsProgressLeavesOutASilentInstanceWhileAnotherRuns) {
  const int64_t now = WallClockMs();
  ProgressRecord live = Instance({{0, 100}, {1, 200}}, now, 500, 300);
  ProgressRecord dead = Instance({{1, 150}}, now - 120000, 500, 150);
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(live, dead, &a, &b));
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->snapshot.records_per_second, 500);
  EXPECT_EQ(merged->snapshot.counters.in, 300);
  ASSERT_EQ(merged->snapshot.partitions.size(), 2u);
  EXPECT_EQ(merged->snapshot.partitions[1].position, 200) << "the live owner's position";
  EXPECT_EQ(merged->Liveness(now), "running");
}

// A bug bash: within the 30 s a killed instance still reads as running, its
// last counters were added to those of the one that took its partitions over
// (1.5 M "in" for a 1 M-record input); once the taker stopped cleanly, the
// version showed the dead one's record alone, its partitions only. An
// instance all of whose partitions another has checkpointed since speaks for
// none of them.
TEST_F(RegistryTest, AnInstanceWhosePartitionsAllMovedOnIsLeftOut) {
  const int64_t now = WallClockMs();
  ProgressRecord taker = Instance({{0, 100}, {1, 200}, {2, 300}, {3, 400}}, now, 500, 1000);
  // Silent for less than "not reporting" takes.
  ProgressRecord killed = Instance({{2, 250}, {3, 350}}, now - 5000, 400, 500);
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(taker, killed, &a, &b));
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->snapshot.counters.in, 1000);
  EXPECT_EQ(merged->snapshot.records_per_second, 500);
  ASSERT_EQ(merged->snapshot.partitions.size(), 4u);
  EXPECT_EQ(merged->snapshot.partitions[3].position, 400);

  // The taker stops cleanly: the version is stopped, with the taker's record.
  taker.stopped = true;
  taker.instance = "a";
  taker.snapshot.checkpoint_ms = now + 1;
  ASSERT_TRUE(Registry(Config()).PutProgress(taker).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_TRUE(merged->stopped);
  EXPECT_EQ(merged->snapshot.counters.in, 1000);
  EXPECT_EQ(merged->snapshot.partitions.size(), 4u);
}

// A bug bash: each instance of a scaled-out replay judged "caught up" by
// its own partitions, so one holding none (just joined, restarted) marked
// the version caught up at 15% done. The version is caught up when every
// one of its partitions is reported by a running instance within the lag.
TEST_F(RegistryTest, AScaledOutVersionIsCaughtUpOnlyWhenEveryPartitionIs) {
  const int64_t now = WallClockMs();
  ProgressRecord holder = Instance({{0, 100}, {1, 200}}, now, 500, 300);
  ProgressRecord empty = Instance({}, now, 0, 0);
  for (ProgressRecord* r : {&holder, &empty}) {
    r->snapshot.source_partitions = 4;
    r->caught_up_since_ms = now - 5000;
    for (auto& p : r->snapshot.partitions) p.log_end = p.position;
  }
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(holder, empty, &a, &b));
  EXPECT_EQ(a.snapshot.source_partitions, 4) << "round trip";
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->snapshot.partitions.size(), 2u);
  EXPECT_EQ(merged->caught_up_since_ms, 0) << "partitions 2 and 3 are reported by no running instance";

  // The other instance takes 2 and 3, caught up too: the version is.
  empty.instance = "b";
  empty.snapshot.partitions = {PartitionProgress{}, PartitionProgress{}};
  empty.snapshot.partitions[0].partition = 2;
  empty.snapshot.partitions[1].partition = 3;
  empty.snapshot.checkpoint_ms = now + 1;
  ASSERT_TRUE(Registry(Config()).PutProgress(empty).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->snapshot.partitions.size(), 4u);
  EXPECT_EQ(merged->caught_up_since_ms, now - 5000);
}

// An instance's record keeps the last positions of partitions it no longer
// reports: given up in a rebalance, or not assigned yet after a restart.
TEST(CarryReleasedPositionsTest, KeepsTheLatestPositionOfEachPartitionNotReported) {
  ProgressRecord first = Progress("spend", 5, {{0, 100}, {1, 200}});
  first.snapshot.checkpoint_ms = 1000;
  ProgressRecord second = Progress("spend", 5, {{1, 250}});
  second.snapshot.checkpoint_ms = 2000;
  CarryReleasedPositions(first, &second);
  ASSERT_EQ(second.released.size(), 1u);
  EXPECT_EQ(second.released[0].progress.partition, 0);
  EXPECT_EQ(second.released[0].progress.position, 100);
  EXPECT_EQ(second.released[0].reported_ms, 1000);
  // A restart's first record, assigned nothing yet: both carried.
  ProgressRecord third = Progress("spend", 5, {});
  third.snapshot.checkpoint_ms = 3000;
  CarryReleasedPositions(second, &third);
  ASSERT_EQ(third.released.size(), 2u);
  EXPECT_EQ(third.released[1].progress.position, 250);
  EXPECT_EQ(third.released[1].reported_ms, 2000);
  // Partition 0 held again: no longer carried.
  ProgressRecord fourth = Progress("spend", 5, {{0, 120}});
  fourth.snapshot.checkpoint_ms = 4000;
  CarryReleasedPositions(third, &fourth);
  ASSERT_EQ(fourth.released.size(), 1u);
  EXPECT_EQ(fourth.released[0].progress.partition, 1);
}

// A bug bash: an instance that had run the version to its end was killed,
// restarted, and killed again before it was assigned a partition; its record
// then held none, and status showed the other instance's positions from long
// before: 3.9% done where it had finished. When no instance runs, each
// partition's latest known position counts, those an instance carried
// included; while one runs, partitions no running instance reports stay
// unreported.
TEST_F(RegistryTest, AVersionWithNoInstanceRunningShowsEachPartitionsLatestKnownPosition) {
  const int64_t now = WallClockMs();
  ProgressRecord old_owner = Instance({{0, 10}, {1, 20}, {2, 30}, {3, 40}}, now - 600000, 0, 100);
  ProgressRecord finished = Instance({{0, 1000}, {1, 2000}, {2, 3000}, {3, 4000}}, now - 300000, 0, 10000);
  ProgressRecord restarted = Instance({}, now - 200000, 0, 0);
  CarryReleasedPositions(finished, &restarted);
  for (ProgressRecord* r : {&old_owner, &restarted}) r->snapshot.source_partitions = 4;
  ProgressRecord a, b;
  ASSERT_NO_FATAL_FAILURE(RoundTripInstances(restarted, old_owner, &a, &b));
  ASSERT_EQ(a.released.size(), 4u) << "round trip";
  EXPECT_EQ(a.released[3].progress.position, 4000);
  EXPECT_EQ(a.released[3].reported_ms, now - 300000);
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  ASSERT_EQ(merged->snapshot.partitions.size(), 4u);
  EXPECT_EQ(merged->snapshot.partitions[0].position, 1000);
  EXPECT_EQ(merged->snapshot.partitions[3].position, 4000);
  EXPECT_EQ(merged->snapshot.unreported_partitions(), 0);

  // Instance a runs again, still assigned nothing: its carried positions
  // are not reports, and the old owner is silent.
  restarted.instance = "a";
  restarted.snapshot.checkpoint_ms = now;
  restarted.report_interval_ms = 1000;
  ASSERT_TRUE(Registry(Config()).PutProgress(restarted).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  merged = reader.Progress("spend", 5);
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->snapshot.partitions.size(), 0u);
  EXPECT_EQ(merged->snapshot.unreported_partitions(), 4);
}

// Of processes claiming a lease at once, one holds it; the others are
// refused naming it; released, it can be taken again.
TEST_F(RegistryTest, OfLeasesClaimedAtOnceOneIsHeld) {
  CreateTopic("kappa.control", 2);
  for (int round = 0; round < 3; ++round) {
    const std::string name = "race" + std::to_string(round);
    std::vector<std::unique_ptr<Registry>> registries;
    for (int i = 0; i < 4; ++i) registries.push_back(std::make_unique<Registry>(Config()));
    std::vector<Result<std::unique_ptr<RegistryLease>>> got;
    for (int i = 0; i < 4; ++i) got.emplace_back(Status::Unavailable("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] { got[i] = RegistryLease::Acquire(*registries[i], name, "claimant " + std::to_string(i)); });
    }
    for (auto& t : threads) t.join();
    int held = 0, holder = -1;
    for (int i = 0; i < 4; ++i) {
      if (got[i].ok()) {
        ++held;
        holder = i;
      } else {
        EXPECT_EQ(got[i].status().code(), Status::Code::kFailedPrecondition) << got[i].status().ToString();
      }
    }
    ASSERT_EQ(held, 1) << "round " << round;
    for (int i = 0; i < 4; ++i) {
      if (i == holder) continue;
      EXPECT_NE(got[i].status().message().find("held by another process (claimant " + std::to_string(holder)),
                std::string::npos)
          << got[i].status().message();
    }
    // Still held for a newcomer; released, taken.
    Registry late(Config());
    EXPECT_FALSE(RegistryLease::Acquire(late, name, "late").ok());
    ASSERT_TRUE((*got[holder])->Renew().ok());
    ASSERT_TRUE((*got[holder])->Release().ok());
    EXPECT_TRUE(RegistryLease::Acquire(late, name, "late").ok());
  }
}

TEST_F(RegistryTest, TwoRegistriesSeeEachOthersWrites) {
  CreateTopic("kappa.control", 1);
  Registry a(Config()), b(Config());
  ASSERT_TRUE(a.Refresh().ok());
  ASSERT_TRUE(b.Refresh().ok());

  JobRecord job;
  job.job = "spend";
  job.versions = {Version(1, VersionState::kLive)};
  job.serving = 1;
  ASSERT_TRUE(a.PutJob(job).ok());
  EXPECT_TRUE(a.Job("spend").has_value()) << "the writer's own view is updated on success";
  EXPECT_FALSE(b.Job("spend").has_value()) << "b has not refreshed yet";
  ASSERT_TRUE(b.Refresh().ok());
  auto seen = b.Job("spend");
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->serving, 1);

  // b modifies what a wrote; a sees b's version after a refresh.
  seen->versions.push_back(Version(2, VersionState::kCaughtUp));
  seen->previous_serving.push_back(1);
  seen->serving = 2;
  ASSERT_TRUE(b.PutJob(*seen).ok());
  ASSERT_TRUE(b.PutProgress(Progress("spend", 2, {{0, 5}})).ok());
  ASSERT_TRUE(a.Refresh().ok());
  auto back = a.Job("spend");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->serving, 2);
  EXPECT_EQ(back->previous_serving, (std::vector<int32_t>{1}));
  ASSERT_NE(back->Find(2), nullptr);
  EXPECT_EQ(back->Find(2)->state, VersionState::kCaughtUp);
  ASSERT_TRUE(a.Progress("spend", 2).has_value());
}

// A registry write the broker took but never acknowledged (its answer
// delayed past the 30 s message timeout) failed with only "timed out": a
// promote or retire that failed so may have changed the job all the same,
// and nothing said so (a bug bash). The error says it may have taken effect
// and where to look; and it did.
TEST_F(RegistryTest, AWriteWhoseAcknowledgementTimedOutSaysItMayHaveTakenEffect) {
  CreateTopic("kappa.control", 1);
  Registry writer(Config());
  JobRecord job;
  job.job = "spend";
  job.versions = {Version(1, VersionState::kLive)};
  job.serving = 1;
  ASSERT_TRUE(writer.PutJob(job).ok());  // the topic and its partitions known
  rd_kafka_mock_broker_set_rtt(broker_->mock_cluster(), -1, 45000);
  job.versions.push_back(Version(2, VersionState::kCaughtUp));
  job.serving = 2;
  const Status st = writer.PutJob(job);
  rd_kafka_mock_broker_set_rtt(broker_->mock_cluster(), -1, 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("may have stored it all the same: see `kappa status`"), std::string::npos)
      << st.ToString();
  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  ASSERT_TRUE(reader.Job("spend").has_value());
  EXPECT_EQ(reader.Job("spend")->serving, 2) << "the write the error said may have taken effect did";
}

// A re-read reads what was written since the last one, not the whole topic:
// every running version re-reads the registry each second, and read from
// the start each time it read every progress record written since the
// topic's last compaction (days of them), growing without bound.
TEST_F(RegistryTest, ARefreshReadsOnlyWhatWasWrittenSinceTheLastOne) {
  CreateTopic("kappa.control", 2);
  Registry writer(Config()), reader(Config());
  JobRecord job = OneVersionJob("spend");
  ASSERT_TRUE(writer.PutJob(job).ok());
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(writer.PutProgress(Progress("spend", 1 + i % 3, {{0, i}})).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_EQ(reader.last_read_records(), 301);
  ASSERT_TRUE(reader.Progress("spend", 1).has_value());
  EXPECT_EQ(reader.Progress("spend", 1)->snapshot.partitions.at(0).position, 297);

  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_EQ(reader.last_read_records(), 0) << "nothing new";
  EXPECT_EQ(reader.Job("spend")->serving, 1) << "what was read before is kept";
  EXPECT_EQ(reader.Progress("spend", 3)->snapshot.partitions.at(0).position, 299);

  // A change and a progress record: two records read, both seen.
  auto changed = writer.Job("spend");
  ASSERT_TRUE(changed.has_value());
  changed->versions.push_back(Version(2, VersionState::kCaughtUp));
  changed->previous_serving.push_back(1);
  changed->serving = 2;
  ASSERT_TRUE(writer.PutJob(*changed).ok());
  ASSERT_TRUE(writer.PutProgress(Progress("spend", 2, {{0, 1000}})).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_EQ(reader.last_read_records(), 2);
  EXPECT_EQ(reader.Job("spend")->serving, 2);
  EXPECT_EQ(reader.Job("spend")->previous_serving, (std::vector<int32_t>{1}));
  EXPECT_EQ(reader.Progress("spend", 2)->snapshot.partitions.at(0).position, 1000);

  // The reader's own write is judged against the whole history (its
  // sequence follows the writer's), and the next refresh reads just it.
  auto mine = reader.Job("spend");
  mine->serving = 1;
  mine->previous_serving.push_back(2);
  auto won = reader.TryPutJob(*mine);
  ASSERT_TRUE(won.ok()) << won.status().ToString();
  EXPECT_TRUE(*won);
  // A stale write based on the sequence before is refused.
  auto stale = changed;
  stale->serving = 1;
  auto lost = writer.TryPutJob(*stale);
  ASSERT_TRUE(lost.ok()) << lost.status().ToString();
  EXPECT_FALSE(*lost);
  ASSERT_TRUE(writer.Refresh().ok());
  EXPECT_EQ(writer.Job("spend")->previous_serving, (std::vector<int32_t>{1, 2}));
}

// What `kappa throttle` and `kappa status` say of a throttle record: the
// cap a paused version resumes at was "started cap", which nothing
// explained (a bug bash).
TEST(ThrottleTextTest, EveryCapIsNamedInWords) {
  ThrottleRecord r;
  r.max_rate = -1;
  EXPECT_EQ(DescribeThrottle(r), "the rate cap the version was started with");
  r.paused = true;
  EXPECT_EQ(DescribeThrottle(r), "paused (the rate cap the version was started with on resume)");
  r.max_rate = 0;
  EXPECT_EQ(DescribeThrottle(r), "paused (no cap on resume)");
  r.paused = false;
  r.max_rate = 5000;
  EXPECT_EQ(DescribeThrottle(r), "max-rate 5000 rec/s");
  // A cap of 1.5 rec/s is kept as given; it was printed "2 rec/s" (a bug bash).
  r.max_rate = 1.5;
  EXPECT_EQ(DescribeThrottle(r), "max-rate 1.5 rec/s");
  r.max_rate = 1e9;
  EXPECT_EQ(DescribeThrottle(r), "max-rate 1000000000 rec/s");
  // And as the version applies it (its note said "at 2 rec/s": a bug bash).
  EXPECT_EQ(RateText(1.5), "1.5 rec/s");
  EXPECT_EQ(RateText(2499.6), "2500 rec/s");
  EXPECT_EQ(RateText(0), "no cap");
}

}  // namespace
}  // namespace kappa::testing
