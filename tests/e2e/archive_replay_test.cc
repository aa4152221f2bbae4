// The log archive and the hybrid source, end to end with the real kappa
// binary and an embedded broker per test:
//  - `kappa archive` keeps every record, offset, timestamp and header exactly
//    as kcat (a client we did not write) reads them from the broker;
//  - an archiver killed with SIGKILL in the middle of writing a block resumes
//    without gaps or duplicates;
//  - a job reading the archive, then Kafka, processes every record exactly
//    once across the switch, and a run killed and resumed on both sides of
//    the switch ends with the same outputs as an uninterrupted run;
//  - replay on 2 worker threads equals replay on 1;
//  - history that neither the archive nor Kafka holds is refused, naming the
//    partition and the missing range, or skipped and recorded when allowed.
#include <librdkafka/rdkafka.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "archive/archive.h"
#include "kafka/kafka_client.h"
#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.push_back("");
  return parts;
}

class ArchiveReplayTest : public BrokerTest {
 protected:
  void Produce(const std::string& topic, uint64_t count, uint64_t seed, double rate = 2) {
    GeneratorOptions gen = SmallWorkload(seed, count, 300, rate);  // hours of event time: hourly windows close
    gen.duplicate_fraction = 0.02;
    gen.malformed_fraction = 0.005;
    gen.start_time_ms = 1767225600000 + static_cast<int64_t>(seed - 1) * 86400000;  // later seeds, later days
    ProduceWorkload(Config(), topic, gen);
  }

  int Archive(const std::string& root, const std::string& topic, std::string* err = nullptr,
              std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"archive", "-a", root, "-t", topic, "-b", bootstrap(), "--stop-at-end",
                                     "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string out;
    return RunKappa(args, &out, err);
  }

  // The archive as `kappa archive --dump` prints it, one JSON line per record.
  std::vector<std::string> Dump(const std::string& root, const std::string& topic) {
    std::string out, err;
    EXPECT_EQ(RunKappa({"archive", "-a", root, "-t", topic, "--dump"}, &out, &err), 0) << err;
    auto lines = Split(out, '\n');
    lines.erase(std::remove(lines.begin(), lines.end(), std::string()), lines.end());
    std::sort(lines.begin(), lines.end());
    return lines;
  }

  // What kcat reads from the broker, in the dump's format. Keys, values and
  // header values must not contain tabs, newlines, ',' or '='.
  std::vector<std::string> KcatAsDump(const std::string& topic) {
    const std::string text = RunShell("timeout 60 kcat -C -b " + bootstrap() + " -t " + topic +
                                      " -e -q -f '%p\\t%o\\t%T\\t%K\\t%k\\t%S\\t%s\\t%h\\n'");
    std::vector<std::string> lines;
    for (const auto& line : Split(text, '\n')) {
      if (line.empty()) continue;
      auto f = Split(line, '\t');
      EXPECT_EQ(f.size(), 8u) << line;
      if (f.size() != 8) continue;
      std::string json = "{\"partition\":" + f[0] + ",\"offset\":" + f[1] + ",\"timestamp_ms\":" + f[2] +
                         ",\"key\":" + (f[3] == "-1" ? "null" : "\"" + Hex(f[4]) + "\"") + ",\"value\":" +
                         (f[5] == "-1" ? "null" : "\"" + Hex(f[6]) + "\"") + ",\"headers\":[";
      if (!f[7].empty()) {
        auto headers = Split(f[7], ',');
        for (size_t i = 0; i < headers.size(); ++i) {
          const auto eq = headers[i].find('=');
          json += (i ? ",[\"" : "[\"") + headers[i].substr(0, eq) + "\",\"" + Hex(headers[i].substr(eq + 1)) + "\"]";
        }
      }
      json += "]}";
      lines.push_back(json);
    }
    std::sort(lines.begin(), lines.end());
    return lines;
  }

  // Text records with keys (some null) and headers, produced directly.
  void ProduceWithHeaders(const std::string& topic, int count) {
    auto producer = CreateClient(ClientKind::kProducer, Config(), {{"enable.idempotence", "true"}});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    for (int i = 0; i < count; ++i) {
      const std::string key = "key-" + std::to_string(i % 37);
      const std::string value = "value-" + std::to_string(i) + std::string(static_cast<size_t>(i % 50), 'x');
      const std::string h1 = "trace-" + std::to_string(i);
      rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
      rd_kafka_header_add(headers, "trace", -1, h1.data(), h1.size());
      if (i % 3 == 0) rd_kafka_header_add(headers, "source", -1, "gen", 3);
      const bool null_key = i % 10 == 0;
      const void* key_ptr = null_key ? nullptr : key.data();
      const size_t key_size = null_key ? 0 : key.size();
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(i % 3),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key_ptr, key_size),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_TIMESTAMP(1767225600000 + i), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
      ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
      rd_kafka_poll(producer->get(), 0);
    }
    ASSERT_EQ(rd_kafka_flush(producer->get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  // A stateless job: every valid record out, keyed by txn_id, with lineage.
  std::string EmitSpec(const ScratchDir& dir, const std::string& name, const std::string& sink,
                       const std::string& state, const std::string& extra = "") {
    const std::string path = dir / name;
    std::ofstream out(path);
    out << "job: passthrough\nversion: 1\nsource: {topic: transactions, start: earliest}\n"
        << "operators:\n  - emit: {key: txn_id}\nsink: {topic: " << sink << "}\ndlq: {topic: pass.dlq}\n"
        << "late: {topic: pass.late}\ncheckpoint: {interval: 1s, dir: " << state << "}\n" << extra;
    return path;
  }

  std::vector<std::string> Run(const std::string& spec, std::vector<std::string> extra, std::string* err,
                               int expect_rc = 0) {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string out;
    EXPECT_EQ(RunKappa(args, &out, err), expect_rc) << *err;
    return {out};
  }
};

TEST_F(ArchiveReplayTest, ArchiveHoldsExactlyWhatKcatReadsIncludingHeaders) {
  CreateTopic("events", 3);
  ProduceWithHeaders("events", 3000);
  ScratchDir dir("archive_kcat");
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "events", &err), 0) << err;
  const auto kcat = KcatAsDump("events");
  ASSERT_EQ(kcat.size(), 3000u);
  const auto dump = Dump(dir / "arch", "events");
  ASSERT_EQ(dump.size(), kcat.size());
  for (size_t i = 0; i < dump.size(); ++i) ASSERT_EQ(dump[i], kcat[i]) << "record " << i;

  // Following again appends only what is new; a topic named twice is one
  // (its two writers refused each other: "being written by another process").
  ProduceWithHeaders("events", 300);
  ASSERT_EQ(Archive(dir / "arch", "events", &err, {"-t", "events"}), 0) << err;
  EXPECT_EQ(Dump(dir / "arch", "events"), KcatAsDump("events"));
}

TEST_F(ArchiveReplayTest, ArchiverKilledMidBlockResumesWithoutGapsOrDuplicates) {
  KAPPA_REQUIRE_TEST_HOOKS();
  CreateTopic("events", 3);
  ProduceWithHeaders("events", 6000);
  ScratchDir dir("archive_kill");
  // Small blocks: many writes. The 7th block is written only half, then SIGKILL.
  {
    setenv("KAPPA_TEST_KILL_AT", "archive-torn-block:7", 1);
    ChildProcess child({"archive", "-a", dir / "arch", "-t", "events", "-b", bootstrap(), "--stop-at-end",
                        "--block-kb", "4", "--flush-interval-ms", "1"},
                       "archive_killed");
    unsetenv("KAPPA_TEST_KILL_AT");
    EXPECT_EQ(child.Wait(), 128 + 9) << child.Stderr();
    EXPECT_NE(child.Stderr().find("archive-torn-block"), std::string::npos) << child.Stderr();
  }
  const size_t partial = Dump(dir / "arch", "events").size();
  EXPECT_GT(partial, 0u);
  EXPECT_LT(partial, 6000u);
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "events", &err, {"--block-kb", "4"}), 0) << err;
  EXPECT_NE(err.find("incomplete block"), std::string::npos) << "the torn block was cut: " << err;
  const auto dump = Dump(dir / "arch", "events");
  const auto kcat = KcatAsDump("events");
  ASSERT_EQ(dump.size(), kcat.size()) << "no gaps, no duplicates";
  EXPECT_EQ(dump, kcat);
}

TEST_F(ArchiveReplayTest, HybridSourceReadsEveryRecordOnceAcrossTheSwitch) {
  CreateTopic("transactions", 4);
  Produce("transactions", 12000, 1);
  ScratchDir dir("hybrid_once");
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "transactions", &err, {"--block-kb", "8"}), 0) << err;
  Produce("transactions", 4000, 2);  // only in Kafka
  ExpectLogStartsAtZero(Config(), "transactions");

  Run(EmitSpec(dir, "hybrid.yaml", "hybrid", dir / "st-hybrid"), {"--archive", dir / "arch"}, &err);
  EXPECT_NE(err.find("switching to Kafka"), std::string::npos) << err;
  Run(EmitSpec(dir, "kafka.yaml", "kafka", dir / "st-kafka"), {}, &err);

  // Every valid input record became exactly one output, whichever source
  // served it: the lineage (partition, offset) of the outputs covers each
  // input once, with the same bytes as a Kafka-only run.
  auto by_input = [&](const std::string& topic) {
    std::map<std::pair<std::string, std::string>, std::vector<std::string>> rows;
    auto st = ReadTopic(Config(), topic, [&](const ConsumedRecord& r) {
      rows[{r.Header("kappa.partition"), r.Header("kappa.offsets")}].push_back(std::string(r.value));
    });
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return rows;
  };
  const auto hybrid = by_input("hybrid.v1");
  const auto kafka = by_input("kafka.v1");
  ASSERT_GT(kafka.size(), 15000u);
  EXPECT_EQ(hybrid.size(), kafka.size());
  for (const auto& [input, values] : hybrid) {
    ASSERT_EQ(values.size(), 1u) << "input " << input.first << "@" << input.second << " emitted twice";
    auto it = kafka.find(input);
    ASSERT_NE(it, kafka.end()) << input.first << "@" << input.second;
    EXPECT_EQ(it->second, values);
  }
  const std::string metrics = ReadFile(dir / "st-hybrid/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "records_in"), 16000);
}

TEST_F(ArchiveReplayTest, KilledAndResumedAcrossTheSwitchEqualsAnUninterruptedRun) {
  KAPPA_REQUIRE_TEST_HOOKS();
  CreateTopic("transactions", 4);
  Produce("transactions", 12000, 1);
  ScratchDir dir("hybrid_resume");
  std::string err;
  ASSERT_EQ(Archive(dir / "arch", "transactions", &err, {"--block-kb", "4"}), 0) << err;
  Produce("transactions", 6000, 2);
  ExpectLogStartsAtZero(Config(), "transactions");

  SpecOptions straight;
  straight.sink = "straight";
  straight.state_dir = dir / "st-straight";
  std::string spec = WriteSpec(dir, "straight.yaml", straight);
  Run(spec, {}, &err);

  // The same job from the archive, checkpointing every round of a rate-capped
  // replay, killed twice while replaying the archive and once after the
  // switch, then run to the end.
  SpecOptions resumed = straight;
  resumed.sink = "resumed";
  resumed.state_dir = dir / "st-resumed";
  resumed.checkpoint_interval = "1ms";
  spec = WriteSpec(dir, "resumed.yaml", resumed);
  const std::vector<std::string> args = {"run", spec, "-b", bootstrap(), "--stop-at-end",
                                         "--status-interval-ms", "0", "--archive", dir / "arch",
                                         "--max-rate", "40000"};
  int killed = 0;
  for (const char* point : {"after-commit:3", "before-flush:4", "after-flush:30"}) {
    setenv("KAPPA_TEST_KILL_AT", point, 1);
    ChildProcess child(args, "hybrid_kill");
    unsetenv("KAPPA_TEST_KILL_AT");
    const int rc = child.Wait();
    if (rc == 128 + 9) ++killed;
    else EXPECT_EQ(rc, 0) << child.Stderr();
  }
  EXPECT_GE(killed, 2) << "the run should have been killed at least twice";
  Run(spec, {"--archive", dir / "arch"}, &err);
  // The last run resumed after the switch or switched itself.
  const std::string metrics = ReadFile(dir / "st-resumed/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "records_in"), 18000);

  const TopicContents a = ReadOutputs(Config(), "straight.v1");
  const TopicContents b = ReadOutputs(Config(), "resumed.v1");
  ASSERT_GT(a.rows.size(), 50u) << "windows closed";
  EXPECT_TRUE(b.all_copies_identical) << "a duplicate after a crash is byte-identical";
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (const auto& [key, row] : a.rows) {
    auto it = b.rows.find(key);
    ASSERT_NE(it, b.rows.end()) << key;
    EXPECT_EQ(it->second.value, row.value) << key;
  }
}

// A restart loading a large state: it said nothing for 20-35 s, and a stop
// request then waited out the 20 s stop grace and exited 1, blaming "a
// broker or database that does not answer" (a bug bash). The restore says
// how far it is, a stop ends it at once with exit 0, and the next start
// restores the same checkpoint.
TEST_F(ArchiveReplayTest, AStopWhileRestoringTheStateEndsAtOnceAndTheNextStartResumes) {
  KAPPA_REQUIRE_TEST_HOOKS();
  CreateTopic("transactions", 1);
  ScratchDir dir("restore_stop");
  std::string out, err;
  // ~150,000 dedup entries (an hour's TTL over 25 min of event time): three
  // rounds of the restore's 65,536.
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "records.bin", "--partitions", "2", "-n", "150000", "--users",
                      "5000", "--rate", "100"},
                     &out, &err), 0) << err;
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--import", dir / "records.bin"}, &out, &err),
            0) << err;
  SpecOptions o;
  o.sink = "restored";
  o.state_dir = dir / "state";
  const std::string spec = WriteSpec(dir, "restored.yaml", o);
  const std::vector<std::string> run = {"run", spec, "-b", bootstrap(), "--archive", dir / "arch", "--archive-only"};
  ASSERT_EQ(RunKappa(run, &out, &err), 0) << err;
  const std::string metrics = ReadFile(dir / "state/metrics.json");

  std::vector<std::string> slow = run;
  slow.insert(slow.end(), {"--status-interval-ms", "100"});
  setenv("KAPPA_TEST_RESTORE_PAUSE_MS", "1000", 1);
  ChildProcess job(slow, "restore-stop");
  unsetenv("KAPPA_TEST_RESTORE_PAUSE_MS");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (job.Stderr().find("restoring the state: partition") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no restore progress\n" << job.Stderr();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(job.Stderr().find("entries loaded in"), std::string::npos) << job.Stderr();
  const auto stopped = std::chrono::steady_clock::now();
  job.Kill(SIGTERM);
  const int rc = job.WaitFor(15000);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  ASSERT_NE(rc, -1) << "still running 15 s after SIGTERM\n" << job.Stderr();
  EXPECT_EQ(rc, 0) << job.Stderr();
  EXPECT_LT(took, 10.0) << job.Stderr();
  EXPECT_NE(job.Stdout().find("stopped while restoring its state, before processing any record"), std::string::npos)
      << job.Stdout() << job.Stderr();
  EXPECT_EQ(job.Stderr().find("still stopping"), std::string::npos) << job.Stderr();
  EXPECT_EQ(ReadFile(dir / "state/metrics.json"), metrics) << "the metrics still describe the checkpoint";

  ASSERT_EQ(RunKappa(run, &out, &err), 0) << err;
  EXPECT_NE(err.find("resuming from checkpoint"), std::string::npos) << err;
  EXPECT_EQ(MetricsField(ReadFile(dir / "state/metrics.json"), "records_in"), 150000);
}

TEST_F(ArchiveReplayTest, ParallelReplayEqualsSingleThreadedReplay) {
  CreateTopic("transactions", 1);  // the sink's broker; the source is the archive only
  ScratchDir dir("hybrid_parallel");
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "records.bin", "--partitions", "6", "-n", "60000", "--users",
                      "400", "--zipf", "0.8", "--rate", "2", "--duplicate-fraction", "0.02", "--late-fraction", "0.05",
                      "--max-delay-ms", "900000", "--malformed-fraction", "0.005"},
                     &out, &err), 0) << err;
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--import", dir / "records.bin"}, &out, &err),
            0) << err;
  EXPECT_NE(out.find("imported 60000 records"), std::string::npos) << out;

  std::map<int, TopicContents> results;
  for (int threads : {1, 2, 3}) {
    SpecOptions o;
    o.sink = "par" + std::to_string(threads);
    o.state_dir = dir / ("st" + std::to_string(threads));
    const std::string spec = WriteSpec(dir, o.sink + ".yaml", o);
    ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--archive", dir / "arch", "--archive-only",
                        "--parallelism", std::to_string(threads), "--status-interval-ms", "0"},
                       &out, &err), 0) << err;
    EXPECT_NE(out.find("60000 records came from the archive"), std::string::npos) << out;
    results[threads] = ReadOutputs(Config(), o.sink + ".v1");
  }
  ASSERT_GT(results[1].rows.size(), 100u);
  for (int threads : {2, 3}) {
    EXPECT_EQ(results[threads].total, results[1].total) << threads << " threads";
    ASSERT_EQ(results[threads].rows.size(), results[1].rows.size()) << threads << " threads";
    for (const auto& [key, row] : results[1].rows) {
      auto it = results[threads].rows.find(key);
      ASSERT_NE(it, results[threads].rows.end()) << key;
      EXPECT_EQ(it->second.value, row.value) << key << " with " << threads << " threads";
      EXPECT_EQ(it->second.headers.at("kappa.offsets"), row.headers.at("kappa.offsets"));
    }
  }
  // More history archived, and the first job resumed from its checkpoint:
  // its account is of this run's records, all from the archive. It said
  // "... from Kafka" for the 60000 of the run before.
  // The same history, longer (the same generator options and seed): its
  // first 60000 records are those archived, which the import checks.
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "more.bin", "--partitions", "6", "-n", "66000", "--users", "400",
                      "--zipf", "0.8", "--rate", "2", "--duplicate-fraction", "0.02", "--late-fraction", "0.05",
                      "--max-delay-ms", "900000", "--malformed-fraction", "0.005"},
                     &out, &err), 0) << err;
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--import", dir / "more.bin"}, &out, &err),
            0) << err;
  EXPECT_NE(out.find("imported 6000 records"), std::string::npos) << out;
  ASSERT_EQ(RunKappa({"run", dir / "par1.yaml", "-b", bootstrap(), "--archive", dir / "arch", "--archive-only",
                      "--status-interval-ms", "0"},
                     &out, &err), 0) << err;
  EXPECT_NE(out.find("6000 records came from the archive, 0 from Kafka"), std::string::npos) << out;
}

// --max-rate held for records from Kafka but not from the archive: an
// archive hands out whole blocks (thousands of records) whatever a read's
// budget, and the run slept at most half a second per read, so a capped
// replay ran at several times its cap (a bug bash: 20,000 records at
// --max-rate 2000 in 2 s), starving the live version it is meant to spare.
// The cap holds, in steps of a block: 40,000 records in 4 partitions (a
// block each) at 4,000/s take at least the time of the 30,000 after the
// first block (7.5 s; it took ~3 s).
TEST_F(ArchiveReplayTest, TheRateCapHoldsForRecordsFromTheArchive) {
  CreateTopic("transactions", 1);
  ScratchDir dir("archive-rate");
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "records.bin", "--partitions", "4", "-n", "40000"}, &out, &err), 0)
      << err;
  // Blocks of 8 MiB: each partition's 10,000 records in one.
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--import", dir / "records.bin",
                      "--block-kb", "8192"},
                     &out, &err),
            0)
      << err;
  SpecOptions o;
  o.sink = "capped";
  o.state_dir = dir / "state";
  const std::string spec = WriteSpec(dir, "capped.yaml", o);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--archive", dir / "arch", "--archive-only", "--max-rate",
                      "4000", "--status-interval-ms", "0"},
                     &out, &err),
            0)
      << err;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(out.find("40000 records came from the archive"), std::string::npos) << out;
  EXPECT_GE(seconds, 7.0) << "40000 records at --max-rate 4000";
}

TEST_F(ArchiveReplayTest, AnUncompressedArchiveReplaysToTheSameOutputs) {
  // `kappa archive --compression none` trades disk for replay speed; the
  // records, and so every output row, are the same as from LZ4 blocks.
  CreateTopic("transactions", 1);
  ScratchDir dir("hybrid_uncompressed");
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "records.bin", "--partitions", "4", "-n", "30000", "--users", "300",
                      "--rate", "2", "--duplicate-fraction", "0.02", "--late-fraction", "0.05", "--max-delay-ms",
                      "900000", "--malformed-fraction", "0.005"},
                     &out, &err), 0) << err;
  EXPECT_EQ(RunKappa({"archive", "-a", dir / "bad", "-t", "transactions", "--import", dir / "records.bin",
                      "--compression", "zstd"},
                     &out, &err), 2);
  EXPECT_NE(err.find("zstd"), std::string::npos) << err;
  EXPECT_NE(err.find("lz4, lz4-fast or none"), std::string::npos) << err;
  std::map<std::string, TopicContents> results;
  std::map<std::string, int64_t> stored;
  for (const std::string compression : {"lz4", "lz4-fast", "none"}) {
    const std::string arch = dir / ("arch-" + compression);
    ASSERT_EQ(RunKappa({"archive", "-a", arch, "-t", "transactions", "--import", dir / "records.bin", "--compression",
                        compression},
                       &out, &err), 0) << err;
    auto ranges = ArchiveRanges(arch, "transactions");
    ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
    for (const auto& r : *ranges) stored[compression] += r.stored_bytes;
    SpecOptions o;
    o.sink = "codec-" + compression;
    o.state_dir = dir / ("st-" + compression);
    const std::string spec = WriteSpec(dir, o.sink + ".yaml", o);
    ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--archive", arch, "--archive-only", "--parallelism", "2",
                        "--status-interval-ms", "0"},
                       &out, &err), 0) << err;
    EXPECT_NE(out.find("30000 records came from the archive"), std::string::npos) << out;
    results[compression] = ReadOutputs(Config(), o.sink + ".v1");
  }
  EXPECT_GT(stored["none"], 2 * stored["lz4-fast"]) << "the uncompressed archive holds the records as they are";
  EXPECT_LT(stored["lz4"], stored["lz4-fast"]) << "the default (LZ4HC) compresses more";
  ASSERT_GT(results["lz4"].rows.size(), 50u);
  for (const std::string other : {"lz4-fast", "none"}) {
    EXPECT_EQ(results[other].total, results["lz4"].total) << other;
    ASSERT_EQ(results[other].rows.size(), results["lz4"].rows.size()) << other;
    for (const auto& [key, row] : results["lz4"].rows) {
      auto it = results[other].rows.find(key);
      ASSERT_NE(it, results[other].rows.end()) << other << " " << key;
      EXPECT_EQ(it->second.value, row.value) << other << " " << key;
    }
  }
}

TEST_F(ArchiveReplayTest, HistoryInNeitherArchiveNorKafkaIsRefusedOrRecorded) {
  CreateTopic("transactions", 1);
  Produce("transactions", 80000, 1);  // overflows the embedded broker's 5 MiB: the log start moves
  ASSERT_NO_FATAL_FAILURE(ExpireOldestRecords("transactions", 0));
  auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", "probe"}});
  ASSERT_TRUE(consumer.ok());
  auto marks = QueryWatermarks(consumer->get(), "transactions", 0, 10000);
  ASSERT_TRUE(marks.ok());
  ASSERT_GT(marks->low, 1000) << "the broker kept everything; produce more to truncate";
  const std::string low = std::to_string(marks->low);
  ScratchDir dir("hybrid_truncated");
  std::string out, err;

  // An archive begun after retention deleted the start of Kafka's log
  // starts where the log does (it was refused, as a hole, for good: no
  // topic older than its retention could be archived, and the advice to
  // archive into a new directory met the same): a replay from it finds the
  // deleted range in neither store, below.
  EXPECT_EQ(Archive(dir / "late-arch", "transactions", &err), 0) << err;
  EXPECT_NE(err.find("transactions[0]: Kafka's log starts at offset " + low + " (records before it were deleted "
                     "before this archive began); its archive starts there"),
            std::string::npos)
      << err;
  std::vector<int64_t> offsets;
  for (const std::string& line : Dump(dir / "late-arch", "transactions")) {
    const size_t at = line.find("\"offset\":");
    ASSERT_NE(at, std::string::npos) << line;
    offsets.push_back(std::stoll(line.substr(at + 9)));
  }
  std::sort(offsets.begin(), offsets.end());
  ASSERT_EQ(static_cast<int64_t>(offsets.size()), marks->high - marks->low) << "all Kafka holds, nothing else";
  EXPECT_EQ(offsets.front(), marks->low);
  EXPECT_EQ(offsets.back(), marks->high - 1);
  CreateTopic("transactions2", 2);
  Produce("transactions2", 160000, 2);
  for (int32_t p : {0, 1}) ASSERT_NO_FATAL_FAILURE(ExpireOldestRecords("transactions2", p));
  EXPECT_EQ(Archive(dir / "late-arch2", "transactions2", &err), 0) << err;
  for (const char* partition : {"transactions2[0]: Kafka's log starts at", "transactions2[1]: Kafka's log starts at"}) {
    EXPECT_NE(err.find(partition), std::string::npos) << err;
  }
  EXPECT_EQ(err.find("ERROR"), std::string::npos) << err;

  // An archive holding offsets 0..999 only: the job replays them, then finds
  // 1000..low-1 gone from Kafka at the switch.
  ASSERT_EQ(RunKappa({"gen", "--to-archive", dir / "head.bin", "--partitions", "1", "-n", "1000", "--rate", "2"}, &out,
                     &err), 0) << err;
  ASSERT_EQ(RunKappa({"archive", "-a", dir / "arch", "-t", "transactions", "--import", dir / "head.bin"}, &out, &err),
            0) << err;
  SpecOptions strict;
  strict.state_dir = dir / "strict";
  Run(WriteSpec(dir, "strict.yaml", strict), {"--archive", dir / "arch"}, &err, 1);
  EXPECT_NE(err.find("transactions[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("1000.." + std::to_string(marks->low - 1)), std::string::npos) << err;
  EXPECT_NE(err.find("allow_truncated_history"), std::string::npos) << err;

  SpecOptions lenient = strict;
  lenient.state_dir = dir / "lenient";
  lenient.allow_truncated = true;
  Run(WriteSpec(dir, "lenient.yaml", lenient), {"--archive", dir / "arch"}, &err);
  EXPECT_NE(err.find("WARNING"), std::string::npos) << err;
  // The switch says where the archive ended, and the gap (it named the
  // gap's end as the archive's, a bug bash).
  EXPECT_NE(err.find("transactions[0]: archive done at offset 1000, skipping the gap 1000.." +
                     std::to_string(marks->low - 1) + ", switching to Kafka at " + low),
            std::string::npos)
      << err;
  const std::string metrics = ReadFile(dir / "lenient/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "history_gap_records"), marks->low - 1000);
  EXPECT_EQ(MetricsField(metrics, "records_in"), 1000 + marks->high - marks->low);
}

}  // namespace
}  // namespace kappa::testing
