// Retention on a real Apache Kafka (the suite's broker, CTest fixture
// `realkafka`): history deleted under a job or an archiver.
//   - a job stopped part-way whose checkpoint retention then passes refuses
//     to restart, naming the partition and the missing range, unless its spec
//     accepts truncated history (then the gap is counted and carried as a
//     lineage header);
//   - with the archive following the topic, a replay after the log start
//     moved reads the deleted range from the archive and ends with the same
//     outputs as a run over the whole history made before the deletion;
//   - an archiver that retention beat (resumed after the log start passed its
//     end, or started after history was deleted) refuses, naming the partition
//     and the missing range, and writes nothing: the archive never has a
//     silent hole, and a replay over it names the same range;
//   - when retention beat it on one partition only (at start, or while it
//     runs), the archiver holds that one back and archives the others to
//     their end, then exits with the held partition and range.
//
// How the log start is moved: the admin API's DeleteRecords, which advances
// the partition's log start offset exactly as retention does (the same
// OffsetOutOfRange / low watermark to every client), to an offset the test
// chooses, at once. Time-based retention cannot be made both fast and exact
// here: retention.ms deletes whole closed segments only, on the broker-wide
// log.retention.check.interval.ms, and the workload's records carry event
// timestamps from 2026-01-01, so a small retention.ms would delete everything.
// Each test uses its own topics, job names and state, so they may share the
// broker and run in parallel.
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "archive/segment_format.h"
#include "kafka/kafka_client.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/archive_bytes.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class RetentionTest : public SharedRealKafkaTest<> {
 protected:
  void Produce(const std::string& topic, uint64_t count, uint64_t seed) {
    GeneratorOptions gen = SmallWorkload(seed, count, 300, 2);
    gen.duplicate_fraction = 0.02;
    gen.start_time_ms = 1767225600000 + static_cast<int64_t>(seed - 1) * 86400000;  // later seeds, later days
    ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));
  }

  // A spec of job `name` reading topic from `start` (a time in ms or
  // latest); returns its path and its state directory.
  std::pair<std::string, std::string> StartSpec(const ScratchDir& dir, const std::string& topic,
                                                const std::string& name, const std::string& start) {
    SpecOptions o = JobOptions(Unique(name), topic, dir / name);
    std::string text = ReadFile(WriteSpec(dir, name + "-earliest.yaml", o));
    const std::string anchor = "start: earliest";
    text.replace(text.find(anchor), anchor.size(), "start: " + start);
    const std::string path = dir / (name + ".yaml");
    std::ofstream(path) << text;
    return {path, o.state_dir};
  }

  // A job from start_ms with --archive, then one with --archive-only: both
  // read the 4000 records from `first` on (the hybrid one saying it found
  // the time in the archive, Kafka's log starting at `low`).
  void ExpectBothStartAt(const ScratchDir& dir, const std::string& topic, int64_t start_ms, int64_t first,
                         int64_t low, const std::string& tag) {
    std::string err;
    const auto [hybrid, hybrid_state] = StartSpec(dir, topic, "hybrid", std::to_string(start_ms));
    ASSERT_EQ(RunKappa(Run(hybrid, {"--archive", dir / "arch"}), nullptr, &err, tag + "-hybrid"), 0) << err;
    EXPECT_NE(err.find("start time " + std::to_string(start_ms) + " is in the archive's history: offset " +
                       std::to_string(first) + " (Kafka's log starts at " + std::to_string(low) + ")"),
              std::string::npos)
        << err;
    std::string metrics = ReadFile(hybrid_state + "/metrics.json");
    EXPECT_EQ(MetricsField(metrics, "records_in"), 4000 - first) << metrics;
    EXPECT_EQ(MetricsField(metrics, "history_gap_records"), 0);

    const auto [archived, archived_state] = StartSpec(dir, topic, "archived", std::to_string(start_ms));
    ASSERT_EQ(RunKappa({"run", archived, "-b", bootstrap_, "--archive", dir / "arch", "--archive-only",
                        "--status-interval-ms", "0"},
                       nullptr, &err, tag + "-archive-only"),
              0)
        << err;
    metrics = ReadFile(archived_state + "/metrics.json");
    EXPECT_EQ(MetricsField(metrics, "records_in"), 4000 - first) << metrics;
  }

  std::vector<Watermarks> Marks(const std::string& topic) {
    auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", Unique("probe")}});
    EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
    if (!consumer.ok()) return {};
    auto n = TopicPartitionCount(consumer->get(), topic, 10000);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok()) return {};
    auto marks = QueryAllWatermarks(consumer->get(), topic, *n, 10000);
    EXPECT_TRUE(marks.ok()) << marks.status().ToString();
    return marks.ok() ? *marks : std::vector<Watermarks>{};
  }

  // Moves the log start of topic[partition] to `before` with DeleteRecords
  // and checks the broker reports it as the partition's low watermark.
  void DeleteRecordsBefore(const std::string& topic, int32_t partition, int64_t before) {
    const Status st = kappa::testing::DeleteRecordsBefore(Config(), topic, partition, before);
    ASSERT_TRUE(st.ok()) << st.ToString();
    const auto marks = Marks(topic);
    ASSERT_GT(marks.size(), static_cast<size_t>(partition));
    ASSERT_EQ(marks[partition].low, before) << "the broker does not report the new log start";
  }

  std::vector<std::string> Run(const std::string& spec, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // `kappa archive` following `topic` into `root` (no --stop-at-end), frozen
  // with SIGSTOP once it has archived `records` (the caller checks the
  // count) and after its pending fetch, a long poll, was answered empty:
  // records produced next wait for SIGCONT instead of waiting in its socket.
  std::unique_ptr<ChildProcess> FrozenArchiver(const std::filesystem::path& root, const std::string& topic,
                                               const std::string& name, int64_t records,
                                               const std::string& status_interval_ms = "0") {
    std::vector<std::string> follow = Archive(root, topic);
    follow.erase(std::find(follow.begin(), follow.end(), "--stop-at-end"));
    *(std::find(follow.begin(), follow.end(), "--status-interval-ms") + 1) = status_interval_ms;
    auto archiver = std::make_unique<ChildProcess>(follow, name);
    for (int i = 0; i < 300 && (!std::filesystem::exists(root) || ArchivedRecords(root, topic) < records); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    archiver->Kill(SIGSTOP);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return archiver;
  }

  std::vector<std::string> Archive(const std::string& root, const std::string& topic) const {
    return {"archive", "-a", root, "-t", topic, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
  }
  std::vector<std::string> Repair(const std::string& root, const std::string& topic) const {
    return {"archive", "-a", root, "-t", topic, "-b", bootstrap_, "--repair", "--status-interval-ms", "0"};
  }
  int64_t ArchivedRecords(const std::string& root, const std::string& topic, int32_t partition = -1) {
    std::string out, err;
    std::vector<std::string> args = {"archive", "-a", root, "-t", topic, "--dump"};
    if (partition >= 0) args.insert(args.end(), {"-p", std::to_string(partition)});
    EXPECT_EQ(RunKappa(args, &out, &err), 0) << err;
    return std::count(out.begin(), out.end(), '\n');
  }

  // offset -> "key/value" (hex, "null" for a null), as `--dump` prints them.
  using Records = std::map<int64_t, std::string>;
  Records ArchivedPartition(const std::string& root, const std::string& topic, int32_t partition) {
    std::string out, err;
    EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", topic, "--dump", "-p", std::to_string(partition)}, &out, &err), 0)
        << err;
    static const std::regex line(R"re("offset":(\d+),.*"key":(null|"[0-9a-f]*"),"value":(null|"[0-9a-f]*"))re");
    Records records;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (!std::regex_search(l, m, line)) {
        ADD_FAILURE() << "unexpected dump line: " << l;
        continue;
      }
      records[std::stoll(m[1])] = Unquote(m[2]) + "/" + Unquote(m[3]);
    }
    return records;
  }
  // What Kafka holds of topic[partition] from `from` up to `end`, read by a
  // plain librdkafka consumer (not the archiver's).
  Records KafkaPartition(const std::string& topic, int32_t partition, int64_t from, int64_t end) {
    Records records;
    auto consumer = CreateClient(ClientKind::kConsumer, Config(),
                                 {{"group.id", Unique("read")}, {"enable.auto.commit", "false"}});
    EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
    if (!consumer.ok()) return records;
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = from;
    EXPECT_EQ(rd_kafka_assign(consumer->get(), list), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    int64_t next = from;
    while (next < end && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer->get(), 200);
      if (!m) continue;
      if (!m->err && m->offset < end) {
        records[m->offset] = Hex(m->key, m->key_len) + "/" + Hex(m->payload, m->len);
        next = m->offset + 1;
      }
      rd_kafka_message_destroy(m);
    }
    EXPECT_GE(next, end) << "could not read " << topic << "[" << partition << "] up to " << end;
    rd_kafka_assign(consumer->get(), nullptr);
    return records;
  }
  static std::string Unquote(const std::string& s) { return s == "null" ? s : s.substr(1, s.size() - 2); }
  static std::string Hex(const void* data, size_t size) {
    if (!data) return "null";
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < size; ++i) {
      const unsigned char c = static_cast<const unsigned char*>(data)[i];
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
    return out;
  }

  // An archive of a 2-partition topic (3000 records) that then falls
  // behind: 3000 more arrive and retention deletes partition 0 up to 500
  // past the archive's end, so partition 0 is held back with a hole.
  struct HeldBack {
    std::vector<Watermarks> archived;  // the topic's marks when archived
    int64_t log_start = 0;             // partition 0's log start after retention
    std::vector<Watermarks> now;       // the marks after retention
  };
  void ArchiveThenPassPartition0(const std::string& root, const std::string& topic, const std::string& name,
                                 const std::vector<std::string>& extra, HeldBack* held) {
    ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
    ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 1));
    std::vector<std::string> archive = Archive(root, topic);
    archive.insert(archive.end(), extra.begin(), extra.end());
    std::string err;
    ASSERT_EQ(RunKappa(archive, nullptr, &err, name), 0) << err;
    held->archived = Marks(topic);
    ASSERT_EQ(held->archived.size(), 2u);
    ASSERT_GT(held->archived[0].high, 0);
    ASSERT_GT(held->archived[1].high, 0);
    ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 2));
    held->log_start = held->archived[0].high + 500;
    ASSERT_LT(held->log_start, Marks(topic)[0].high);
    ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, held->log_start));
    held->now = Marks(topic);
    ASSERT_GT(held->now[1].high, held->archived[1].high);
  }
};

std::string Range(int64_t from, int64_t to_exclusive) {
  return std::to_string(from) + ".." + std::to_string(to_exclusive - 1);
}

// Retention deletes dead letters nobody triaged: `kappa dlq stats` read a
// DLQ whose log start had passed 4414 of a job's 39997 dead letters as
// "35583 records" without a word (a bug bash). stats, show and replay name
// the deleted offsets; replay also says how many of them no earlier replay
// had re-injected (its markers cover the others).
TEST_F(RetentionTest, DeadLettersDeletedByRetentionAreNamedByTheDlqCommands) {
  const std::string topic = Unique("ret-dlq-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
  GeneratorOptions gen = SmallWorkload(7, 2000, 300, 2);
  gen.malformed_fraction = 0.05;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));
  ScratchDir dir("ret-dlq");
  SpecOptions o = JobOptions(Unique("ret-dlq"), topic, dir / "state");
  const std::string dlq = o.job + ".dlq";
  ASSERT_TRUE(CreateTopicAdmin(Config(), dlq, 1, 1).ok());
  std::string out, err;
  ASSERT_EQ(RunKappa(Run(WriteSpec(dir, "v1.yaml", o)), &out, &err), 0) << err;
  const int64_t dead = Marks(dlq)[0].high;
  ASSERT_GT(dead, 60);

  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(dlq, 0, 30));
  const std::string deleted = "30 dead letters of " + dlq + " were deleted before this read (partition 0 offsets 0-29";
  ASSERT_EQ(RunKappa({"dlq", "stats", dlq, "-b", bootstrap_}, &out, &err), 0) << err;
  EXPECT_NE(out.find(dlq + ": " + std::to_string(dead - 30) + " records\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  WARNING " + deleted), std::string::npos) << out;
  ASSERT_EQ(RunKappa({"dlq", "show", dlq, "-b", bootstrap_}, &out, &err), 0) << err;
  EXPECT_NE(err.find("kappa dlq show: WARNING " + deleted), std::string::npos) << err;
  const std::vector<std::string> replay = {"dlq", "replay", dlq, "--to", topic, "-b", bootstrap_};
  ASSERT_EQ(RunKappa(replay, &out, &err), 0) << err;
  EXPECT_NE(err.find("kappa dlq replay: WARNING " + deleted), std::string::npos) << err;
  EXPECT_NE(err.find("; 30 of them had not been re-injected by an earlier replay"), std::string::npos) << err;
  EXPECT_NE(out.find(std::to_string(dead - 30) + " records re-injected"), std::string::npos) << out;

  // Offsets 30-49 were re-injected before they were deleted: not lost.
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(dlq, 0, 50));
  ASSERT_EQ(RunKappa(replay, &out, &err), 0) << err;
  EXPECT_NE(err.find("50 dead letters of " + dlq + " were deleted before this read (partition 0 offsets 0-49"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("; 30 of them had not been re-injected by an earlier replay"), std::string::npos) << err;
  EXPECT_NE(out.find("0 records re-injected"), std::string::npos) << out;
}

TEST_F(RetentionTest, RestartPastRetentionRefusesNamingTheRangeUnlessTruncatedHistoryIsAllowed) {
  const std::string topic = Unique("ret-restart-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 4000, 1));
  ScratchDir dir("ret-restart");

  // Two jobs read the first 4000 records and stop: one strict, one whose
  // spec accepts truncated history from the start.
  SpecOptions strict;
  strict.job = Unique("ret-strict");
  strict.source = topic;
  strict.sink = Unique("ret-strict-out");
  strict.state_dir = dir / "strict";
  SpecOptions lenient = strict;
  lenient.job = Unique("ret-lenient");
  lenient.sink = Unique("ret-lenient-out");
  lenient.state_dir = dir / "lenient";
  lenient.allow_truncated = true;
  const std::string strict_spec = WriteSpec(dir, "strict.yaml", strict);
  const std::string lenient_spec = WriteSpec(dir, "lenient.yaml", lenient);
  std::string err;
  ASSERT_EQ(RunKappa(Run(strict_spec), nullptr, &err, "ret-strict"), 0) << err;
  ASSERT_EQ(RunKappa(Run(lenient_spec), nullptr, &err, "ret-lenient"), 0) << err;
  const auto stopped = Marks(topic);
  ASSERT_EQ(stopped.size(), 2u);

  // While they are stopped, new records arrive and retention passes their
  // checkpoint on partition 0 (by 700 records); partition 1 keeps everything.
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 4000, 2));
  const int64_t checkpoint = stopped[0].high;
  const int64_t log_start = checkpoint + 700;
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, log_start));
  const auto now = Marks(topic);

  // The strict job refuses, naming the partition and the missing range.
  EXPECT_NE(RunKappa(Run(strict_spec), nullptr, &err, "ret-strict-again"), 0) << err;
  EXPECT_NE(err.find(topic + "[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("records " + Range(checkpoint, log_start) + " are gone"), std::string::npos) << err;
  EXPECT_NE(err.find("allow_truncated_history"), std::string::npos) << err;
  EXPECT_EQ(err.find(topic + "[1]"), std::string::npos) << "partition 1 lost nothing: " << err;
  // Its advice works: the setting is part of the spec hash (an in-place edit
  // is refused), so it names a new version, which starts with the gap recorded.
  EXPECT_NE(err.find("in a new version"), std::string::npos) << err;
  SpecOptions edited = strict;
  edited.allow_truncated = true;
  EXPECT_NE(RunKappa(Run(WriteSpec(dir, "edited.yaml", edited)), nullptr, &err, "ret-strict-edited"), 0);
  EXPECT_NE(err.find("never an in-place edit"), std::string::npos) << err;
  SpecOptions next = edited;
  next.version = 2;
  next.state_dir = dir / "strict-v2";
  ASSERT_EQ(RunKappa(Run(WriteSpec(dir, "strict-v2.yaml", next)), nullptr, &err, "ret-strict-v2"), 0) << err;
  EXPECT_EQ(MetricsField(ReadFile(dir / "strict-v2/metrics.json"), "history_gap_records"), log_start);

  // The lenient one continues past the gap, says so, counts it and marks
  // partition 0's outputs with it.
  ASSERT_EQ(RunKappa(Run(lenient_spec), nullptr, &err, "ret-lenient-again"), 0) << err;
  EXPECT_NE(err.find("WARNING"), std::string::npos) << err;
  EXPECT_NE(err.find(Range(checkpoint, log_start)), std::string::npos) << err;
  const std::string metrics = ReadFile(dir / "lenient/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "history_gap_records"), 700);
  EXPECT_EQ(MetricsField(metrics, "records_in"), now[0].high + now[1].high - 700);
  const TopicContents outputs = ReadOutputs(Config(), lenient.sink + ".v1");
  int marked = 0;
  for (const auto& [key, row] : outputs.rows) {
    auto gap = row.headers.find("kappa.history_gap");
    if (gap == row.headers.end()) continue;
    ++marked;
    EXPECT_EQ(row.headers.at("kappa.partition"), "0") << key;
    EXPECT_EQ(gap->second, std::to_string(checkpoint) + "-" + std::to_string(log_start - 1)) << key;
  }
  EXPECT_GT(marked, 0) << "no output carries the gap";
}

TEST_F(RetentionTest, ReplayReadsTheDeletedRangeFromTheArchiveAndEqualsTheWholeHistory) {
  const std::string topic = Unique("ret-archive-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 6000, 1));
  ScratchDir dir("ret-archive");
  std::string err;
  // The archive follows the topic; more records arrive after it stopped
  // (only in Kafka).
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-archiver"), 0) << err;
  const auto archived = Marks(topic);
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 2));

  // The reference: the whole history read from Kafka before any deletion.
  SpecOptions reference;
  reference.job = Unique("ret-ref");
  reference.source = topic;
  reference.sink = Unique("ret-ref-out");
  reference.state_dir = dir / "ref";
  ASSERT_EQ(RunKappa(Run(WriteSpec(dir, "ref.yaml", reference)), nullptr, &err, "ret-ref"), 0) << err;

  // Retention deletes most of what the archive holds, on both partitions.
  std::vector<int64_t> log_start;
  for (int32_t p = 0; p < 2; ++p) {
    log_start.push_back(archived[p].high - 500);
    ASSERT_GT(log_start[p], 1000);
    ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, p, log_start[p]));
  }
  const auto now = Marks(topic);

  // From Kafka alone that history is gone...
  SpecOptions kafka_only = reference;
  kafka_only.job = Unique("ret-kafka");
  kafka_only.sink = Unique("ret-kafka-out");
  kafka_only.state_dir = dir / "kafka";
  EXPECT_NE(RunKappa(Run(WriteSpec(dir, "kafka.yaml", kafka_only)), nullptr, &err, "ret-kafka"), 0) << err;
  EXPECT_NE(err.find("records " + Range(0, log_start[0]) + " are gone"), std::string::npos) << err;

  // ...but the archive holds it: the replay reads it there, switches to Kafka
  // at the archive's end and equals the reference.
  SpecOptions replay = reference;
  replay.job = Unique("ret-replay");
  replay.sink = Unique("ret-replay-out");
  replay.state_dir = dir / "replay";
  ASSERT_EQ(RunKappa(Run(WriteSpec(dir, "replay.yaml", replay), {"--archive", dir / "arch"}), nullptr, &err,
                     "ret-replay"), 0) << err;
  EXPECT_NE(err.find("switching to Kafka"), std::string::npos) << err;
  const std::string metrics = ReadFile(dir / "replay/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "records_in"), now[0].high + now[1].high);
  EXPECT_EQ(MetricsField(metrics, "history_gap_records"), 0);

  const TopicContents want = ReadOutputs(Config(), reference.sink + ".v1");
  const TopicContents got = ReadOutputs(Config(), replay.sink + ".v1");
  ASSERT_GT(want.rows.size(), 50u) << "windows closed";
  EXPECT_EQ(got.total, want.total);
  ASSERT_EQ(got.rows.size(), want.rows.size());
  for (const auto& [key, row] : want.rows) {
    auto it = got.rows.find(key);
    ASSERT_NE(it, got.rows.end()) << key;
    EXPECT_EQ(it->second.value, row.value) << key;
    EXPECT_EQ(it->second.headers.at("kappa.offsets"), row.headers.at("kappa.offsets")) << key;
  }
}

// A start time before Kafka's log start is looked up in the archive:
// Kafka answers with the first record it still has, and the archived
// records between the start time and it were skipped without a word or a
// counted gap (a bug bash). With --archive-only, a start time is looked up
// in the archive too (it was refused).
TEST_F(RetentionTest, AStartTimeBeforeKafkasLogStartIsFoundInTheArchive) {
  const std::string topic = Unique("ret-time-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 4000, 1));
  // The start time: that of the record at offset 1000; the job must start
  // at the first record stamped at or after it (`kappa gen` stamps records
  // with their event time).
  std::vector<int64_t> stamps;
  ASSERT_TRUE(ReadTopic(Config(), topic, [&](const ConsumedRecord& r) { stamps.push_back(r.timestamp_ms); }).ok());
  ASSERT_EQ(stamps.size(), 4000u);
  const int64_t start_ms = stamps[1000];
  const int64_t first = std::find_if(stamps.begin(), stamps.end(), [&](int64_t ts) { return ts >= start_ms; }) -
                        stamps.begin();
  ASSERT_LE(first, 1000);
  ScratchDir dir("ret-time");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-time-archiver"), 0) << err;
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, 3000));

  ExpectBothStartAt(dir, topic, start_ms, first, 3000, "ret-time");
}

// With timestamps out of order, an archived record before Kafka's log
// start may be stamped at or after the start time though Kafka's first such
// record is past its log start. The archive was asked only when Kafka
// answered with its log start, so --archive started at Kafka's answer, later
// than --archive-only did (a bug bash: offset 12 where 5 was the first
// record at or after the time).
TEST_F(RetentionTest, AStartTimeIsLookedUpInTheArchiveWhateverKafkaAnswers) {
  const std::string topic = Unique("ret-disorder-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  GeneratorOptions gen = SmallWorkload(7, 4000, 300, 2);
  gen.out_of_order_fraction = 0.3;
  gen.max_delay_ms = 120000;
  gen.start_time_ms = 1767225600000;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));
  std::vector<int64_t> stamps;
  ASSERT_TRUE(ReadTopic(Config(), topic, [&](const ConsumedRecord& r) { stamps.push_back(r.timestamp_ms); }).ok());
  ASSERT_EQ(stamps.size(), 4000u);
  // Kafka's log start to come: a record stamped before the one ahead of
  // it. From that one's time on, the first record is archived only, and
  // Kafka's first at or after it is past its log start.
  int64_t low = 2500;
  while (low < 3500 && stamps[low] >= stamps[low - 1]) ++low;
  ASSERT_LT(low, 3500) << "no record out of order; another seed is needed";
  const int64_t start_ms = stamps[low - 1];
  auto first_from = [&](int64_t from) {
    return std::find_if(stamps.begin() + from, stamps.end(), [&](int64_t ts) { return ts >= start_ms; }) -
           stamps.begin();
  };
  const int64_t first = first_from(0), kafkas = first_from(low);
  ASSERT_LT(first, low);
  ASSERT_GT(kafkas, low);
  ScratchDir dir("ret-disorder");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-disorder-archiver"), 0) << err;
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, low));

  ExpectBothStartAt(dir, topic, start_ms, first, low, "ret-disorder");
}

// A partition added to the topic after a job's first run has no
// checkpoint though the job ran before: the Kafka path reads it from its
// beginning (`start: latest` or a time applies to the first run only), but
// --archive-only started it at the archive's end, and never read what was
// archived of it (a bug bash).
TEST_F(RetentionTest, APartitionAddedAfterTheFirstRunIsReadFromItsBeginningFromTheArchive) {
  const std::string topic = Unique("ret-added-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 500, 1));
  ScratchDir dir("ret-added");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-added-archiver"), 0) << err;
  const auto [spec, state] = StartSpec(dir, topic, "added", "latest");
  const std::vector<std::string> run = {"run", spec, "-b", bootstrap_, "--archive", dir / "arch", "--archive-only",
                                        "--status-interval-ms", "0"};
  ASSERT_EQ(RunKappa(run, nullptr, &err, "ret-added-first"), 0) << err;
  EXPECT_EQ(MetricsField(ReadFile(state + "/metrics.json"), "records_in"), 0) << "latest: none of the first 500";

  ASSERT_TRUE(AddPartitionsAdmin(Config(), topic, 2).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 2));
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-added-archiver-again"), 0) << err;
  const auto marks = Marks(topic);
  ASSERT_EQ(marks.size(), 2u);
  ASSERT_GT(marks[1].high, 0);
  ASSERT_EQ(RunKappa(run, nullptr, &err, "ret-added-again"), 0) << err;
  EXPECT_NE(err.find(topic + "[1] has no checkpoint though the job ran before"), std::string::npos) << err;
  EXPECT_EQ(MetricsField(ReadFile(state + "/metrics.json"), "records_in"), 2000)
      << "every record since the first run, " << marks[1].high << " of them in the added partition: " << err;
}

TEST_F(RetentionTest, ArchiverBeatenByRetentionNamesTheMissingRangeAndWritesNoHole) {
  const std::string topic = Unique("ret-gap-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 1));
  ScratchDir dir("ret-gap");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-gap-archiver"), 0) << err;
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), 3000);

  // The archiver is stopped; records arrive and retention deletes past what
  // it holds.
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 2));
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, 4000));

  // Resuming, it refuses with the partition and the range, and writes nothing.
  EXPECT_NE(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-gap-resume"), 0) << err;
  EXPECT_NE(err.find(topic + "[0] offsets 3000..3999"), std::string::npos) << err;
  EXPECT_NE(err.find("now starts at 4000"), std::string::npos) << err;
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic), 3000) << "the archive must not continue past a hole";

  // A new archive started after the deletion starts at Kafka's log start
  // (it was refused for 0..3999, for good).
  EXPECT_EQ(RunKappa(Archive(dir / "late", topic), nullptr, &err, "ret-gap-late"), 0) << err;
  EXPECT_NE(err.find(topic + "[0]: Kafka's log starts at offset 4000"), std::string::npos) << err;
  EXPECT_EQ(ArchivedPartition(dir / "late", topic, 0), KafkaPartition(topic, 0, 4000, 6000));

  // A replay over the old archive finds the same range in neither store.
  SpecOptions job;
  job.job = Unique("ret-gap-job");
  job.source = topic;
  job.sink = Unique("ret-gap-out");
  job.state_dir = dir / "state";
  EXPECT_NE(RunKappa(Run(WriteSpec(dir, "job.yaml", job), {"--archive", dir / "arch"}), nullptr, &err,
                     "ret-gap-job"), 0) << err;
  EXPECT_NE(err.find(topic + "[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("records 3000..3999 are gone"), std::string::npos) << err;
}

// The same while the archiver runs (a bug bash: frozen with SIGSTOP while
// retention passed it, it stopped blaming retention without a range, and
// said the same of a topic recreated under a job). The running reader now
// asks where the log starts and names the deleted range.
TEST_F(RetentionTest, ARunningArchiverPassedByRetentionNamesTheDeletedRange) {
  const std::string topic = Unique("ret-live-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 1));
  ScratchDir dir("ret-live");
  auto frozen = FrozenArchiver(dir / "arch", topic, "ret-live-archiver", 2000);
  ChildProcess& archiver = *frozen;
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), 2000) << archiver.Stderr();
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 2));
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, 4000));
  archiver.Kill(SIGCONT);
  const int rc = archiver.WaitFor(60000);
  EXPECT_NE(rc, 0) << archiver.Stderr();
  EXPECT_NE(rc, -1) << "still running: " << archiver.Stderr();
  EXPECT_NE(archiver.Stderr().find(topic + "[0]: records 2000..3999 were deleted (retention) while the reader was "
                                           "behind: the log now starts at 4000"),
            std::string::npos)
      << archiver.Stderr();
}


// Retention got ahead of the archive on one partition of two while the
// archiver was stopped (a bug bash: the archiver then refused to start at
// all, and retention went on deleting the healthy partition's unarchived
// records too). The healthy partition is archived to its end, the holed one
// is left as it was (no hole), and the run exits naming what is missing.
TEST_F(RetentionTest, ArchiverHoldsBackTheOnePartitionRetentionGotAheadOfAndArchivesTheOthers) {
  const std::string topic = Unique("ret-hold-in");
  ScratchDir dir("ret-hold");
  // Stopped, it falls behind; retention passes its end on partition 0 only.
  HeldBack held;
  ASSERT_NO_FATAL_FAILURE(ArchiveThenPassPartition0(dir / "arch", topic, "ret-hold-archiver", {}, &held));
  const auto& archived = held.archived;
  const auto& now = held.now;
  const int64_t log_start = held.log_start;
  std::string err;

  // Resumed to the end: it archives partition 1 and exits non-zero naming
  // partition 0 and the range retention took, with the advice.
  const std::string hole = topic + "[0] offsets " + Range(archived[0].high, log_start);
  EXPECT_NE(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-hold-resume"), 0) << err;
  EXPECT_NE(err.find("ERROR not archiving " + hole), std::string::npos) << err;
  EXPECT_NE(err.find("now starts at " + std::to_string(log_start)), std::string::npos) << err;
  EXPECT_NE(err.find("archive into a new directory"), std::string::npos) << err;
  EXPECT_NE(err.find("archived the other partitions, but not " + hole), std::string::npos) << err;
  EXPECT_EQ(err.find(topic + "[1] offsets"), std::string::npos) << "partition 1 lost nothing: " << err;

  // Partition 1 holds exactly what Kafka holds, to its log end; partition 0
  // is unchanged (never continued past the hole).
  const Records got = ArchivedPartition(dir / "arch", topic, 1);
  ASSERT_EQ(static_cast<int64_t>(got.size()), now[1].high);
  EXPECT_EQ(got, KafkaPartition(topic, 1, 0, now[1].high));
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic, 0), archived[0].high) << "the archive must not continue past a hole";

  // Run again, it says the same (the hole does not heal) and archives
  // nothing more anywhere.
  EXPECT_NE(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-hold-again"), 0) << err;
  EXPECT_NE(err.find("archived the other partitions, but not " + hole), std::string::npos) << err;
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic, 0), archived[0].high);
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic, 1), now[1].high);

  // The advice works: a new directory archives partition 0 from Kafka's log
  // start on (it held a partition with nothing archived back as a hole
  // too, so following the advice archived nothing of it, ever).
  ASSERT_EQ(RunKappa(Archive(dir / "new", topic), nullptr, &err, "ret-hold-new"), 0) << err;
  EXPECT_NE(err.find(topic + "[0]: Kafka's log starts at offset " + std::to_string(log_start)), std::string::npos)
      << err;
  EXPECT_EQ(err.find("ERROR"), std::string::npos) << err;
  EXPECT_EQ(ArchivedPartition(dir / "new", topic, 0), KafkaPartition(topic, 0, log_start, now[0].high));
  EXPECT_EQ(ArchivedPartition(dir / "new", topic, 1), KafkaPartition(topic, 1, 0, now[1].high));
}

// A partition whose archive began at Kafka's log start and holds nothing
// yet, passed by retention again while the archiver was frozen. It was held
// back as a hole (1000..1499), for good, though nothing was archived that
// the new start would have to continue: it starts again at the new log
// start, saying so once, and archives from there.
TEST_F(RetentionTest, AnArchiveBegunAtTheLogStartThatHoldsNothingYetStartsAgainWhenPassedAgain) {
  const std::string topic = Unique("ret-fresh-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 1000, 1));
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, 1000));
  ScratchDir dir("ret-fresh");
  auto frozen = FrozenArchiver(dir / "arch", topic, "ret-fresh-archiver", 0);
  ChildProcess& archiver = *frozen;
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 1000, 2));
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, 1500));
  archiver.Kill(SIGCONT);
  // It archives 1500..1999 and goes on following (it has a partition to follow).
  for (int i = 0; i < 300 && ArchivedRecords(dir / "arch", topic) < 500 && archiver.WaitFor(0) == -1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(archiver.WaitFor(0), -1) << "it stopped: " << archiver.Stderr();
  archiver.Kill(SIGTERM);
  const int rc = archiver.WaitFor(60000);
  const std::string e = archiver.Stderr();
  EXPECT_NE(rc, -1) << "still running: " << e;
  EXPECT_EQ(rc, 0) << e;
  EXPECT_NE(e.find(topic + "[0]: Kafka's log starts at offset 1000"), std::string::npos) << e;
  const std::string again = topic + "[0]: Kafka's log now starts at offset 1500";
  EXPECT_NE(e.find(again), std::string::npos) << e;
  EXPECT_EQ(e.find(again, e.find(again) + 1), std::string::npos) << "said more than once: " << e;
  EXPECT_EQ(e.find("ERROR"), std::string::npos) << e;
  EXPECT_NE(e.find("retention deleted records 1000..1499 before this archive got any of them"), std::string::npos)
      << e;
  EXPECT_EQ(e.find("offsets 1000..1499"), std::string::npos) << "nothing archived was left behind a hole: " << e;
  EXPECT_EQ(ArchivedPartition(dir / "arch", topic, 0), KafkaPartition(topic, 0, 1500, 2000));
}

// The same while the archiver runs: frozen with SIGSTOP while records
// arrive on both partitions and retention passes it on partition 0, it holds
// partition 0 back when it wakes, archives partition 1's new records, keeps
// naming the hole with every status, and exits with it when stopped.
TEST_F(RetentionTest, ARunningArchiverPassedByRetentionOnOnePartitionGoesOnWithTheOthers) {
  const std::string topic = Unique("ret-livehold-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 1));
  const auto before = Marks(topic);
  ASSERT_EQ(before.size(), 2u);
  ScratchDir dir("ret-livehold");
  auto frozen = FrozenArchiver(dir / "arch", topic, "ret-livehold-archiver", 2000, "300");
  ChildProcess& archiver = *frozen;
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), 2000) << archiver.Stderr();
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 2));
  const int64_t log_start = before[0].high + 500;
  ASSERT_LT(log_start, Marks(topic)[0].high);
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, log_start));
  const auto now = Marks(topic);
  archiver.Kill(SIGCONT);

  // It goes on with partition 1 up to its new end...
  for (int i = 0; i < 300 && ArchivedRecords(dir / "arch", topic, 1) < now[1].high; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic, 1), now[1].high) << archiver.Stderr();
  // ...and keeps saying partition 0 is held back (two statuses at least).
  const std::string hole = topic + "[0] offsets " + Range(before[0].high, log_start);
  for (int i = 0; i < 100; ++i) {
    const std::string e = archiver.Stderr();
    size_t count = 0;
    for (size_t at = e.find("ERROR not archiving " + hole); at != std::string::npos;
         at = e.find("ERROR not archiving " + hole, at + 1)) {
      ++count;
    }
    if (count >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(archiver.WaitFor(0), -1) << "it stopped for one partition: " << archiver.Stderr();
  archiver.Kill(SIGTERM);
  const int rc = archiver.WaitFor(60000);
  const std::string e = archiver.Stderr();
  EXPECT_NE(rc, 0) << e;
  EXPECT_NE(rc, -1) << "still running: " << e;
  EXPECT_NE(e.find("ERROR " + topic + "[0]: records " + Range(before[0].high, log_start) +
                   " were deleted (retention) while the reader was behind"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("ERROR not archiving " + hole), std::string::npos) << e;
  EXPECT_NE(e.find("ERROR not archiving " + hole, e.find("ERROR not archiving " + hole) + 1), std::string::npos)
      << "said once only: " << e;
  EXPECT_NE(e.find("NOT READ (held back): " + hole), std::string::npos) << e;
  EXPECT_NE(e.find("archived the other partitions, but not " + hole), std::string::npos) << e;
  EXPECT_EQ(e.find(topic + "[1] offsets"), std::string::npos) << e;

  EXPECT_EQ(ArchivedPartition(dir / "arch", topic, 1), KafkaPartition(topic, 1, 0, now[1].high));
  EXPECT_EQ(ArchivedRecords(dir / "arch", topic, 0), before[0].high) << "the archive must not continue past a hole";
}

// `kappa archive --repair` on an archive with a held-back partition (a
// hole: retention passed its end before it was archived). It said "no
// damage" and exited 0, as if the archive were whole; and when it repaired
// another partition's damage, the refetch ended with the archiver's error
// about the hole and nothing said what was repaired. It names the hole and
// its range and exits non-zero, and says which partition, block and
// offsets it refetched.
TEST_F(RetentionTest, RepairNamesAHeldBackPartitionsHoleAndWhatItRefetched) {
  const std::string topic = Unique("ret-repair-in");
  ScratchDir dir("ret-repair");
  const std::string root = dir / "arch";
  HeldBack held;
  ASSERT_NO_FATAL_FAILURE(ArchiveThenPassPartition0(root, topic, "ret-repair-archiver", {"--block-kb", "8"}, &held));
  const auto& archived = held.archived;
  const auto& now = held.now;
  const int64_t log_start = held.log_start;
  std::string out, err;
  const std::string hole = topic + "[0] offsets " + Range(archived[0].high, log_start);

  // No damaged block, but a hole: named, with the advice, and not whole.
  EXPECT_NE(RunKappa(Repair(root, topic), &out, &err, "ret-repair-hole"), 0) << out << err;
  EXPECT_NE(err.find(hole), std::string::npos) << out << err;
  EXPECT_NE(err.find("now starts at " + std::to_string(log_start)), std::string::npos) << err;
  EXPECT_NE(err.find("archive into a new directory"), std::string::npos) << err;
  EXPECT_EQ((out + err).find(topic + "[1] offsets"), std::string::npos) << "partition 1 lost nothing: " << out << err;
  EXPECT_EQ(ArchivedRecords(root, topic, 0), archived[0].high) << "nothing changes";
  EXPECT_EQ(ArchivedRecords(root, topic, 1), archived[1].high) << "nothing changes";

  // Partition 1 gets a damaged block (Kafka still holds it): repaired, and
  // said so, while the hole is still named.
  const auto segments = SegmentFiles(root + "/" + topic + "/1");
  ASSERT_EQ(segments.size(), 1u);
  const auto blocks = Blocks(segments[0]);
  ASSERT_GT(blocks.size(), 4u);
  const BlockPos b = blocks[blocks.size() / 2];
  ASSERT_NO_FATAL_FAILURE(FlipBit(segments[0], b.at + static_cast<int64_t>(segment_format::kHeaderBytes) + 40, 3));
  EXPECT_NE(RunKappa(Repair(root, topic), &out, &err, "ret-repair-damaged"), 0) << out << err;
  EXPECT_NE(out.find(topic + "[1]: archive " + segments[0] + ": the block at byte " + std::to_string(b.at)),
            std::string::npos)
      << out << err;
  EXPECT_NE(out.find("refetched " + topic + "[1] offsets " + Range(b.header.first_offset, now[1].high)),
            std::string::npos)
      << out << err;
  EXPECT_NE(err.find(hole), std::string::npos) << out << err;
  EXPECT_EQ(ArchivedPartition(root, topic, 1), KafkaPartition(topic, 1, 0, now[1].high));
  EXPECT_EQ(ArchivedRecords(root, topic, 0), archived[0].high) << "the archive must not continue past a hole";
}

// --repair of a held-back partition whose last block is damaged (here its
// only one): the damaged block's offsets are lost (Kafka deleted them), and
// so are those past the archive's end up to Kafka's log start. It named the
// first range only, as if the archive went on after it.
TEST_F(RetentionTest, RepairOfAHeldBackPartitionWithADamagedLastBlockNamesTheBlockAndTheHole) {
  const std::string topic = Unique("ret-repair-lost-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 744, 1));
  ScratchDir dir("ret-repair-lost");
  const std::string root = dir / "arch";
  std::string out, err;
  ASSERT_EQ(RunKappa(Archive(root, topic), nullptr, &err, "ret-repair-lost-archiver"), 0) << err;
  const int64_t end = Marks(topic)[0].high;
  const auto segments = SegmentFiles(root + "/" + topic + "/0");
  ASSERT_EQ(segments.size(), 1u);
  const auto blocks = Blocks(segments[0]);
  ASSERT_FALSE(blocks.empty());
  const BlockPos b = blocks.back();
  ASSERT_EQ(b.header.last_offset + 1, end);
  ASSERT_NO_FATAL_FAILURE(FlipBit(segments[0], b.at + static_cast<int64_t>(segment_format::kHeaderBytes) + 40, 3));
  const std::string damaged_bytes = ReadFile(segments[0]);

  ASSERT_NO_FATAL_FAILURE(Produce(topic, 1000, 2));
  const int64_t log_start = end + 500;
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, log_start));

  EXPECT_NE(RunKappa(Repair(root, topic), &out, &err, "ret-repair-lost"), 0) << out << err;
  EXPECT_NE(err.find(topic + "[0] offsets " + Range(b.header.first_offset, end) + " are lost"), std::string::npos)
      << err;
  EXPECT_NE(err.find("byte " + std::to_string(b.at)), std::string::npos) << err;
  EXPECT_NE(err.find(topic + "[0] offsets " + Range(end, log_start)), std::string::npos) << err;
  EXPECT_EQ(err.find(Range(b.header.first_offset, log_start)), std::string::npos) << "one range for two: " << err;
  EXPECT_EQ(ReadFile(segments[0]), damaged_bytes) << "nothing is changed";
  EXPECT_FALSE(std::filesystem::exists(segments[0] + ".damaged"));
}

// A topic deleted and recreated under its archive (a bug bash): once the new
// topic grew past the archived end, the archiver went on from that end,
// appending the new topic's records after the old one's (exit 0, no word).
// On start it now reads Kafka's record at the archive's last offset and
// compares it with the archived one: an unchanged topic (also one whose log
// start retention moved up to the archive's end, where no check can be
// made) resumes, a recreated one is refused and the archive left as it was.
TEST_F(RetentionTest, AnArchiverRefusesATopicRecreatedPastTheArchivedEnd) {
  const std::string topic = Unique("ret-recreate-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 1));
  ScratchDir dir("ret-recreate");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-recreate-first"), 0) << err;
  const int64_t first_end = Marks(topic)[0].high;
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), first_end);

  // The same topic, grown: resumed, checked, continued.
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 500, 2));
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-recreate-same"), 0) << err;
  EXPECT_EQ(err.find("recreated"), std::string::npos) << err;
  const int64_t second_end = Marks(topic)[0].high;
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), second_end);
  // Retention up to the archived end: the last archived record is gone from
  // Kafka, no check can be made, and it goes on as before.
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 300, 3));
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 0, second_end));
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-recreate-retained"), 0) << err;
  EXPECT_EQ(err.find("recreated"), std::string::npos) << err;
  const int64_t archived_end = Marks(topic)[0].high;
  const Records archived = ArchivedPartition(dir / "arch", topic, 0);
  ASSERT_EQ(static_cast<int64_t>(archived.size()), archived_end);

  // Deleted and recreated, then filled past the archived end.
  const Status recreated = RecreateTopicAdmin(Config(), topic, 1);
  ASSERT_TRUE(recreated.ok()) << recreated.ToString();
  ASSERT_NO_FATAL_FAILURE(Produce(topic, archived_end + 1000, 7));
  ASSERT_GT(Marks(topic)[0].high, archived_end);

  // Refused, naming the partition, and nothing is appended.
  EXPECT_NE(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-recreate-new"), 0) << err;
  EXPECT_NE(err.find("the archive of " + topic + "[0] ends with offset " + std::to_string(archived_end - 1) +
                     ", but Kafka's record at that offset has another"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("the topic was recreated, this archive belongs to another cluster, or a segment file in "),
            std::string::npos)
      << err;
  EXPECT_EQ(ArchivedPartition(dir / "arch", topic, 0), archived) << "the archive must not continue another topic";
}

// Partitions added to a topic under a running archiver (a bug bash: it went
// on with the partitions it had at the start, its status said 100% done and
// lag 0 while the new ones filled, and a restart after retention removed
// their head blamed records "deleted before this archive began"). It now
// asks for the partition count periodically (KAPPA_TOPIC_CHECK_MS, 30 s by
// default) and archives new partitions from their beginning, saying so once.
TEST_F(RetentionTest, ARunningArchiverFollowsPartitionsAddedToItsTopicFromTheirBeginning) {
  const std::string topic = Unique("ret-grow-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 1000, 1));
  ScratchDir dir("ret-grow");
  ::setenv("KAPPA_TOPIC_CHECK_MS", "500", 1);
  std::vector<std::string> follow = Archive(dir / "arch", topic);
  follow.erase(std::find(follow.begin(), follow.end(), "--stop-at-end"));
  ChildProcess archiver(follow, "ret-grow-archiver");
  ::unsetenv("KAPPA_TOPIC_CHECK_MS");
  for (int i = 0; i < 300 && (!std::filesystem::exists(dir / "arch") || ArchivedRecords(dir / "arch", topic) < 1000);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(ArchivedRecords(dir / "arch", topic), 1000) << archiver.Stderr();

  ASSERT_TRUE(AddPartitionsAdmin(Config(), topic, 3).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 3000, 2));
  const auto now = Marks(topic);
  ASSERT_EQ(now.size(), 3u);
  ASSERT_GT(now[1].high, 0);
  ASSERT_GT(now[2].high, 0);
  // The new partitions' directories appear once it follows them (--dump of
  // one that does not exist is an error).
  auto caught_up = [&] {
    for (int32_t p = 1; p < 3; ++p) {
      if (!std::filesystem::exists(std::filesystem::path(dir / "arch") / topic / std::to_string(p))) return false;
      if (ArchivedRecords(dir / "arch", topic, p) < now[p].high) return false;
    }
    return true;
  };
  for (int i = 0; i < 300 && !caught_up(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(archiver.WaitFor(0), -1) << "it stopped: " << archiver.Stderr();
  archiver.Kill(SIGTERM);
  const int rc = archiver.WaitFor(60000);
  const std::string e = archiver.Stderr();
  EXPECT_EQ(rc, 0) << e;
  const std::string said = "the topic " + topic + " now has 3 partitions (it had 1): archiving its new partitions 1..2 "
                           "too, from their beginning";
  EXPECT_NE(e.find(said), std::string::npos) << e;
  EXPECT_EQ(e.find(said, e.find(said) + 1), std::string::npos) << "said more than once: " << e;
  for (int32_t p = 0; p < 3; ++p) {
    EXPECT_EQ(ArchivedPartition(dir / "arch", topic, p), KafkaPartition(topic, p, 0, now[p].high)) << p;
  }
}

// A partition added while no archiver ran, whose head retention deleted
// before it was archived: the restart said its records were "deleted before
// this archive began", when they were written after. It says they were
// never archived (the partition was added after the archive last ran).
TEST_F(RetentionTest, APartitionAddedWhileTheArchiverWasStoppedIsNotCalledOlderThanTheArchive) {
  const std::string topic = Unique("ret-grown-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 500, 1));
  ScratchDir dir("ret-grown");
  std::string err;
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-grown-first"), 0) << err;
  ASSERT_TRUE(AddPartitionsAdmin(Config(), topic, 2).ok());
  ASSERT_NO_FATAL_FAILURE(Produce(topic, 2000, 2));
  const auto marks = Marks(topic);
  ASSERT_EQ(marks.size(), 2u);
  ASSERT_GT(marks[1].high, 100);
  ASSERT_NO_FATAL_FAILURE(DeleteRecordsBefore(topic, 1, 100));
  ASSERT_EQ(RunKappa(Archive(dir / "arch", topic), nullptr, &err, "ret-grown-again"), 0) << err;
  EXPECT_EQ(err.find("deleted before this archive began"), std::string::npos) << err;
  EXPECT_NE(err.find(topic + "[1]: Kafka's log starts at offset 100; the partition was added to the topic after this "
                             "archive last ran (it knew 1 partitions), and retention deleted its records 0..99 before "
                             "they were archived"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace kappa::testing
