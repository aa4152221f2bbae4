// Story: a job groups by a field that is not its input's Kafka key
// (`repartition: {key: ...}`, operators/repartition.h, engine/stage_plan.h):
// records go through <job>.v1.repartition.1 to the task that owns their
// key, and the windows there fire on the minimum of the upstream tasks'
// watermarks.
//  - transactions keyed by user, hourly windows per currency: the rows equal
//    an independent computation over the generated records (dedup, cancelled
//    dropped, minus exactly the records the late topic holds);
//  - the same job killed with SIGKILL mid-run and restarted: the outputs
//    equal an uninterrupted run (the records stage 0 sends again after the
//    crash are dropped downstream by their origin offset);
//  - Nexmark q7 (highest bid per 10 s) and q5 (hot items per sliding window)
//    with their global semantics (`repartition: {partitions: 1}`), checked
//    against an independent computation over the generated events.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include <regex>

#include "kafka/kafka_client.h"
#include "kafka/kafka_producer.h"
#include "schemas/dlq_record_generated.h"
#include "schemas/transaction_generated.h"
#include "tests/e2e/e2e_util.h"
#include "workload/nexmark_generator.h"
#include "workload/transaction_generator.h"

namespace kappa::testing {
namespace {

constexpr int kPartitions = 4;

struct Agg {
  int64_t count = 0, sum = 0, min = 0, max = 0;
  bool operator==(const Agg&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Agg& a) {
  return os << "{count " << a.count << ", sum " << a.sum << ", min " << a.min << ", max " << a.max << "}";
}

GeneratorOptions Workload() { return DisorderlyWorkload(31, 40000, 800, 2); }

class RepartitionTest : public BrokerTest {
 protected:
  // The repartition topic of job `job`: made here on the embedded broker
  // (it cannot create topics on request); a real broker gets it from kappa.
  void RepartitionTopic(const std::string& job, int partitions) {
    if (!real_broker()) CreateTopic(job + ".v1.repartition.1", partitions);
  }

  // Hourly windows per currency over the transactions (keyed by user).
  std::string CurrencySpec(const ScratchDir& dir, const std::string& job) {
    RepartitionTopic(job, 3);
    const std::string path = dir / (job + ".yaml");
    std::ofstream(path) << "job: " << job << "\nversion: 1\nsource: {topic: transactions, start: earliest}\n"
                        << "operators:\n"
                        << "  - dedup: {field: txn_id, ttl: 1h}\n"
                        << "  - filter: [\"status != cancelled\"]\n"
                        << "  - repartition: {key: currency, partitions: 3}\n"
                        << "  - window: {type: tumbling, size: 1h, key: currency, aggregates: [count, sum, min, max]}\n"
                        << "allowed_lateness: 10m\nsink: {topic: " << job << "-out}\ndlq: {topic: " << job
                        << ".dlq}\nlate: {topic: " << job << ".late}\ncheckpoint: {interval: 300ms, dir: "
                        << (dir / (job + "-state")) << "}\n";
    return path;
  }

  int Run(const std::vector<std::string>& args, std::string* err) { return RunKappa(args, nullptr, err); }

  // Every record of `topic` by "<partition>|<offset>": its value.
  std::map<std::string, std::string> InputByCoordinates(const std::string& topic) {
    std::map<std::string, std::string> in;
    EXPECT_TRUE(ReadTopic(Config(), topic, [&](const ConsumedRecord& r) {
                  in[std::to_string(r.partition) + "|" + std::to_string(r.offset)] = std::string(r.value);
                }).ok());
    return in;
  }

  static std::map<std::string, Agg> Rows(const TopicContents& t) {
    std::map<std::string, Agg> rows;
    for (const auto& [key, row] : t.rows) {
      const auto* w = AsWindow(row.value);
      EXPECT_NE(w, nullptr) << key;
      if (w) rows[key] = Agg{w->count(), w->sum(), w->min(), w->max()};
    }
    return rows;
  }

  // The rows an exact run gives, computed from the generated records
  // without kappa: dedup by txn_id, cancelled dropped, minus exactly the
  // records `late_topic` holds (byte for byte: it keeps the originals).
  std::map<std::string, Agg> Independent(const std::string& late_topic, size_t* late_found) {
    std::multiset<std::string> late;
    EXPECT_TRUE(
        ReadTopic(Config(), late_topic, [&](const ConsumedRecord& r) { late.insert(std::string(r.value)); }).ok());
    std::map<std::string, Agg> want;
    std::set<std::string> seen;
    TransactionGenerator gen(Workload());
    GeneratedRecord r;
    *late_found = 0;
    while (gen.Next(&r)) {
      if (r.kind != RecordKind::kValid && r.kind != RecordKind::kDuplicate) continue;
      if (!seen.insert(r.txn_id).second) continue;  // dedup (a resend follows its original closely)
      if (r.status == static_cast<int8_t>(schema::TxnStatus::Cancelled)) continue;
      if (auto it = late.find(r.value); it != late.end()) {
        late.erase(it);
        ++*late_found;
        continue;
      }
      const int64_t hour = 3600 * 1000;
      const int64_t end = (r.event_time_ms / hour + 1) * hour;
      Agg& a = want[r.currency + "|" + std::to_string(end)];
      a.min = a.count == 0 ? r.amount_cents : std::min(a.min, r.amount_cents);
      a.max = a.count == 0 ? r.amount_cents : std::max(a.max, r.amount_cents);
      ++a.count;
      a.sum += r.amount_cents;
    }
    EXPECT_TRUE(late.empty()) << late.size() << " late record(s) of " << late_topic
                              << " are not among the generated ones";
    return want;
  }
};

TEST_F(RepartitionTest, GroupingByANonKeyFieldEqualsAnIndependentComputation) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-currency");
  std::string err;
  ASSERT_EQ(Run({"run", CurrencySpec(dir, "cur"), "-b", bootstrap(), "--stop-at-end", "--final-watermark",
                 "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  // Stage 1 holds no window and stage 2's close as the final watermark
  // reaches them: each said "emitted 0 open window(s)" (a bug bash).
  EXPECT_EQ(err.find("emitted 0 open window(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("end of input: the final watermark goes on to the stage after the repartition"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("stage 2 (after the repartition): end of input: the final watermark of every input partition "
                     "closed each open window"),
            std::string::npos)
      << err;
  const TopicContents out = ReadOutputs(Config(), "cur-out.v1");
  EXPECT_EQ(out.total, static_cast<int64_t>(out.rows.size())) << "a clean run wrote a row twice";
  const std::map<std::string, Agg> got = Rows(out);

  size_t late_found = 0;
  const std::map<std::string, Agg> want = Independent("cur.late", &late_found);
  EXPECT_GT(late_found, 0u) << "the workload has records beyond the lateness: some must be late";
  ASSERT_GT(want.size(), 20u);
  EXPECT_EQ(got, want);

  // A late record's headers name where it is in the input (stage 2 once
  // named the repartition topic, its partition and its offset there).
  const std::map<std::string, std::string> input = InputByCoordinates("transactions");
  size_t late_checked = 0;
  ASSERT_TRUE(ReadTopic(Config(), "cur.late", [&](const ConsumedRecord& r) {
                EXPECT_EQ(r.Header("kappa.input"), "transactions");
                const std::string at = r.Header("kappa.partition") + "|" + r.Header("kappa.offset");
                auto it = input.find(at);
                ASSERT_NE(it, input.end()) << "late record names " << at << ", not an input record";
                EXPECT_TRUE(it->second == r.value) << "late record names " << at << ", which holds other bytes";
                ++late_checked;
              }).ok());
  EXPECT_EQ(late_checked, late_found);
}

// Stage 2's dead letters name the input topic, partition and offset of the
// record (not the repartition topic's), so `kappa dlq replay --to <input>`
// puts each back into the partition it came from.
TEST_F(RepartitionTest, StageTwoDeadLettersNameTheInputPartitionAndOffset) {
  CreateTopic("src", 3);
  RepartitionTopic("dl", 2);
  {
    auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    for (int p = 0; p < 3; ++p) {
      for (int i = 0; i < 3; ++i) {
        // No `currency` (optional): the window keyed by it dead-letters the record in stage 2.
        const std::string value = "{\"txn_id\":\"t" + std::to_string(p) + "-" + std::to_string(i) +
                                  "\",\"amount_cents\":5,\"event_time\":1767225600000}";
        ASSERT_TRUE((*producer)->Produce("src", p, "u" + std::to_string(p), value).ok());
      }
    }
    ASSERT_TRUE((*producer)->Flush(30000).ok());
  }
  ScratchDir dir("repartition-dlq");
  const std::string spec = dir / "dl.yaml";
  std::ofstream(spec) << "job: dl\nversion: 1\nsource:\n  topic: src\n  start: earliest\n  format: json\n"
                      << "  fields: {txn_id: string, amount_cents: int64, currency: {type: string, optional: true}, "
                         "event_time: {type: timestamp, encoding: epoch_ms}}\n"
                      << "  event_time: event_time\n  value: amount_cents\noperators:\n"
                      << "  - repartition: {key: currency, partitions: 2}\n"
                      << "  - window: {type: tumbling, size: 10m, key: currency, aggregates: [count]}\n"
                      << "sink: {topic: dl-out}\ndlq: {topic: dl.dlq}\nlate: {topic: dl.late}\n"
                      << "checkpoint: {interval: 1s, dir: " << (dir / "dl-state") << "}\n";
  std::string err;
  ASSERT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &err), 0) << err;
  std::set<std::string> seen;
  ASSERT_TRUE(ReadTopic(Config(), "dl.dlq", [&](const ConsumedRecord& c) {
                const std::string bytes(c.value);
                flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
                ASSERT_TRUE(schema::VerifyDlqRecordBuffer(v));
                const auto* d = schema::GetDlqRecord(bytes.data());
                EXPECT_EQ(d->source_topic()->str(), "src");
                const std::string key(c.key);  // u<the partition it was produced to>
                EXPECT_EQ("u" + std::to_string(d->source_partition()), key);
                EXPECT_GE(d->source_offset(), 0);
                EXPECT_LT(d->source_offset(), 3);
                seen.insert(std::to_string(d->source_partition()) + "@" + std::to_string(d->source_offset()));
              }).ok());
  EXPECT_EQ(seen.size(), 9u) << "each input record dead-lettered once, under its own coordinates";

  std::string out;
  ASSERT_EQ(RunKappa({"dlq", "replay", "--topic", "dl.dlq", "--to", "src", "-b", bootstrap(), "--dry-run"}, &out,
                     &err),
            0)
      << err << out;
  // Three records came from each partition of src: three go back to each.
  const std::regex would("would re-inject [^ ]+ -> src\\[([0-9]+)\\]");
  std::map<std::string, int> targets;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), would); it != std::sregex_iterator(); ++it) {
    ++targets[(*it)[1].str()];
  }
  EXPECT_EQ(targets, (std::map<std::string, int>{{"0", 3}, {"1", 3}, {"2", 3}})) << out;
}

// `emit: {key: offset}` after a repartition keys each row by the input
// partition and offset of its record: every key names that record, and a
// rerun over the same input gives the same keys.
TEST_F(RepartitionTest, EmitKeyOffsetNamesTheInputRecordAndRerunsAgree) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(5, 4000, 200, 5)));
  ScratchDir dir("repartition-emit");
  std::map<std::string, std::string> runs[2];
  for (int i = 0; i < 2; ++i) {
    const std::string job = i == 0 ? "ea" : "eb";
    RepartitionTopic(job, 3);
    const std::string spec = dir / (job + ".yaml");
    std::ofstream(spec) << "job: " << job << "\nversion: 1\nsource: {topic: transactions, start: earliest}\n"
                        << "operators:\n  - repartition: {key: currency, partitions: 3}\n  - emit: {key: offset}\n"
                        << "sink: {topic: " << job << "-out}\ndlq: {topic: " << job << ".dlq}\nlate: {topic: " << job
                        << ".late}\ncheckpoint: {interval: 300ms, dir: " << (dir / (job + "-state")) << "}\n";
    std::string err;
    ASSERT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &err), 0) << err;
    const TopicContents out = ReadOutputs(Config(), job + "-out.v1");
    for (const auto& [key, row] : out.rows) runs[i][key] = row.value;
  }
  const std::map<std::string, std::string> input = InputByCoordinates("transactions");
  ASSERT_EQ(input.size(), 4000u);
  EXPECT_EQ(runs[0].size(), input.size());
  size_t wrong = 0;
  std::string example;
  for (const auto& [key, value] : runs[0]) {
    auto it = input.find(key);
    if (it == input.end() || it->second != value) {
      if (wrong++ == 0) example = key;
    }
  }
  EXPECT_EQ(wrong, 0u) << "rows whose key is not the input partition|offset of their record, e.g. " << example;
  EXPECT_TRUE(runs[0] == runs[1]) << "two runs over the same input keyed rows differently";
}

// A window row's lineage after a repartition (first_offset/last_offset,
// kappa.input, kappa.partition, kappa.offsets) is a function of the input:
// the input topic and the smallest and largest input offset of its records,
// equal in two runs.
TEST_F(RepartitionTest, WindowLineageNamesTheInputAndRerunsAgree) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(9, 4000, 200, 1)));
  // The expected lineage: min and max input offset per currency and 10-minute window.
  std::map<std::string, std::pair<int64_t, int64_t>> want;
  ASSERT_TRUE(ReadTopic(Config(), "transactions", [&](const ConsumedRecord& r) {
                const std::string bytes(r.value);  // aligned, as FlatBuffers wants (the consumer's buffer need not be)
                const auto* t = flatbuffers::GetRoot<schema::Transaction>(bytes.data());
                const int64_t size = 10 * 60 * 1000;
                const int64_t end = (t->event_time_ms() / size + 1) * size;
                const std::string key = t->currency()->str() + "|" + std::to_string(end);
                auto [it, inserted] = want.try_emplace(key, r.offset, r.offset);
                it->second.first = std::min(it->second.first, r.offset);
                it->second.second = std::max(it->second.second, r.offset);
              }).ok());
  ScratchDir dir("repartition-lineage");
  TopicContents runs[2];
  for (int i = 0; i < 2; ++i) {
    const std::string job = i == 0 ? "wa" : "wb";
    RepartitionTopic(job, 3);
    const std::string spec = dir / (job + ".yaml");
    std::ofstream(spec) << "job: " << job << "\nversion: 1\nsource: {topic: transactions, start: earliest}\n"
                        << "operators:\n  - repartition: {key: currency, partitions: 3}\n"
                        << "  - window: {type: tumbling, size: 10m, key: currency, aggregates: [count, sum]}\n"
                        << "allowed_lateness: 10m\nsink: {topic: " << job << "-out}\ndlq: {topic: " << job
                        << ".dlq}\nlate: {topic: " << job << ".late}\ncheckpoint: {interval: 300ms, dir: "
                        << (dir / (job + "-state")) << "}\n";
    std::string err;
    ASSERT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                  &err),
              0)
        << err;
    runs[i] = ReadOutputs(Config(), job + "-out.v1");
  }
  ASSERT_EQ(runs[0].rows.size(), want.size());
  for (const auto& [key, row] : runs[0].rows) {
    const auto* w = AsWindow(row.value);
    ASSERT_NE(w, nullptr) << key;
    auto it = want.find(key);
    ASSERT_NE(it, want.end()) << key;
    EXPECT_EQ(w->first_offset(), it->second.first) << key;
    EXPECT_EQ(w->last_offset(), it->second.second) << key;
    EXPECT_EQ(row.headers.at("kappa.input"), "transactions") << key;
    EXPECT_EQ(row.headers.at("kappa.offsets"),
              std::to_string(it->second.first) + "-" + std::to_string(it->second.second))
        << key;
    auto other = runs[1].rows.find(key);
    ASSERT_NE(other, runs[1].rows.end()) << key;
    EXPECT_EQ(other->second.value, row.value) << key << ": the rows differ between two runs";
    for (const char* h : {"kappa.input", "kappa.partition", "kappa.offsets"}) {
      EXPECT_EQ(other->second.headers.at(h), row.headers.at(h)) << key << " " << h;
    }
  }
}

// An input partition without records gives stage 2 no watermark, so its
// windows never close; status showed stage 1's watermark moving and the job
// wrote nothing, without a word (a bug bash). The empty partitions are
// named once.
TEST_F(RepartitionTest, EmptyInputPartitionsHoldingStageTwoBackAreNamed) {
  CreateTopic("transactions", 4);
  // One user: every record in one partition, the other three empty.
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(5, 500, 1)));
  auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", "marks"}});
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  auto marks = QueryAllWatermarks(consumer->get(), "transactions", 4, 10000);
  ASSERT_TRUE(marks.ok()) << marks.status().ToString();
  std::string empty;
  for (int32_t p = 0; p < 4; ++p) {
    if ((*marks)[static_cast<size_t>(p)].high == 0) empty += (empty.empty() ? "" : ",") + std::to_string(p);
  }
  ASSERT_EQ(empty.size(), 5u) << "three empty partitions: " << empty;
  ScratchDir dir("idle");
  const std::string spec = CurrencySpec(dir, "idle");
  ::setenv("KAPPA_TOPIC_CHECK_MS", "300", 1);
  ChildProcess run({"run", spec, "-b", bootstrap(), "--status-interval-ms", "0"}, "repartition-idle");
  const std::string said = "input partition(s) " + empty + " of transactions have had no record";
  bool warned = false;
  for (int i = 0; i < 300 && !warned && run.WaitFor(0) == -1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    warned = run.Stderr().find(said) != std::string::npos;
  }
  ::unsetenv("KAPPA_TOPIC_CHECK_MS");
  run.Kill(SIGTERM);
  EXPECT_EQ(run.WaitFor(60000), 0) << run.Stderr();
  EXPECT_TRUE(warned) << run.Stderr();
  const std::string err = run.Stderr();
  EXPECT_EQ(err.find(said, err.find(said) + 1), std::string::npos) << "said more than once: " << err;
}

// A partition that had a record and went quiet holds stage 2's windows
// back as an empty one does, but nothing was said (a bug bash: one record
// in partition 1, then 100 minutes of event time in partition 0, and no
// window closed). Named once, with the watermark it holds stage 2 at.
TEST_F(RepartitionTest, AQuietInputPartitionHoldingStageTwoBackIsNamed) {
  CreateTopic("transactions", 2);
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  const int64_t t0 = 1767225600000;  // 2026-01-01T00:00:00Z
  auto send = [&](int32_t partition, int i, int64_t event_time) {
    flatbuffers::FlatBufferBuilder fbb;
    const std::string id = "q" + std::to_string(partition) + "-" + std::to_string(i);
    fbb.Finish(schema::CreateTransactionDirect(fbb, id.c_str(), "u1", schema::TxnStatus::Approved, 100, "EUR",
                                               event_time),
               "KTX1");
    ASSERT_TRUE((*producer)
                    ->Produce("transactions", partition, id,
                              std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()))
                    .ok());
    ASSERT_TRUE((*producer)->Flush(10000).ok());
  };
  ASSERT_NO_FATAL_FAILURE(send(1, 0, t0));
  ScratchDir dir("quiet");
  ::setenv("KAPPA_TOPIC_CHECK_MS", "300", 1);
  ChildProcess run({"run", CurrencySpec(dir, "quiet"), "-b", bootstrap(), "--status-interval-ms", "0"},
                   "repartition-quiet");
  ::unsetenv("KAPPA_TOPIC_CHECK_MS");
  const std::string said = "input partition(s) 1 of transactions have had no new record since the last look while "
                           "others advance";
  bool warned = false;
  for (int i = 1; i < 600 && !warned && run.WaitFor(0) == -1; ++i) {
    ASSERT_NO_FATAL_FAILURE(send(0, i, t0 + int64_t{i} * 60000));  // a minute of event time each
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    warned = run.Stderr().find(said) != std::string::npos;
  }
  run.Kill(SIGTERM);
  EXPECT_EQ(run.WaitFor(60000), 0) << run.Stderr();
  const std::string err = run.Stderr();
  EXPECT_TRUE(warned) << err;
  EXPECT_NE(err.find("its windows do not close past 2025-12-31T23:50:00Z"), std::string::npos)
      << "the watermark partition 1 holds (its record minus the 10 minutes of lateness): " << err;
  EXPECT_EQ(err.find(said, err.find(said) + 1), std::string::npos) << "said more than once: " << err;
  EXPECT_EQ(err.find("input partition(s) 0 "), std::string::npos) << "partition 0 advances: " << err;
}

// The late records stage 2 finds, and its outputs, count in what the job
// reports while it runs (status line, metrics file): they showed only in
// the exit summary, and the spec's late_fraction alert never fired for a
// repartitioned job (a bug bash).
TEST_F(RepartitionTest, ARunningJobReportsWhatItsSecondStageCounted) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-live");
  ChildProcess run({"run", CurrencySpec(dir, "live"), "-b", bootstrap(), "--status-interval-ms", "200"},
                   "repartition-live");
  int64_t late_topic = -1, late_said = -2, outputs_said = 0;
  const std::regex counters(R"(outputs (\d+), deduped [^,]+, filtered [^,]+, late (\d+),)");
  for (int i = 0; i < 300 && run.WaitFor(0) == -1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto summary = ReadTopic(Config(), "live.late", nullptr);
    if (summary.ok()) late_topic = summary->total;
    const std::string err = run.Stderr();
    for (std::sregex_iterator it(err.begin(), err.end(), counters), end; it != end; ++it) {
      outputs_said = std::stoll((*it)[1]);
      late_said = std::stoll((*it)[2]);
    }
    if (late_topic > 0 && late_said == late_topic && outputs_said > 0) break;
  }
  run.Kill(SIGTERM);
  ASSERT_EQ(run.WaitFor(60000), 0) << run.Stderr();
  ASSERT_GT(late_topic, 0) << "the workload has records beyond the lateness";
  EXPECT_EQ(late_said, late_topic) << "the status line while it ran: " << run.Stderr();
  EXPECT_GT(outputs_said, 0) << run.Stderr();
  // The metrics are those of the stop, which may come after more records
  // (a loaded CI read 33 late records, then the job took 30 more before it
  // stopped): compared with the late topic as the stop left it.
  auto at_stop = ReadTopic(Config(), "live.late", nullptr);
  ASSERT_TRUE(at_stop.ok()) << at_stop.status().ToString();
  const std::string metrics = ReadFile(dir / "live-state/metrics.json");
  EXPECT_EQ(MetricsField(metrics, "late"), at_stop->total) << metrics;
  EXPECT_EQ(MetricsField(metrics, "outputs"), ReadOutputs(Config(), "live-out.v1").total) << metrics;
}

// deploy and replay of a repartitioned job crashed (SIGSEGV) at every stop:
// the report after stage 2 ended read the positions of stage 1's source,
// already destroyed (a bug bash). A bounded replay and a deploy stopped
// with SIGTERM end cleanly, saying so, and status shows them stopped.
TEST_F(RepartitionTest, DeployAndReplayOfARepartitionedJobStopCleanly) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-deploy");
  const std::string spec = CurrencySpec(dir, "rd");
  std::string out, err;
  ASSERT_EQ(RunKappa({"replay", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &out, &err), 0)
      << err;
  EXPECT_NE(out.find("kappa replay: rd v1 stopped cleanly: in "), std::string::npos) << out << err;
  ChildProcess live({"deploy", spec, "-b", bootstrap(), "--status-interval-ms", "200"}, "rd-deploy");
  ASSERT_TRUE(WaitUntilReading(live, 60)) << live.Stderr();
  live.Kill(SIGTERM);
  ASSERT_EQ(live.WaitFor(60000), 0) << live.Stderr();
  EXPECT_NE(live.Stdout().find("kappa deploy: rd v1 stopped cleanly"), std::string::npos) << live.Stdout();
  ASSERT_EQ(RunKappa({"status", "rd", "-b", bootstrap()}, &out, &err), 0) << err;
  EXPECT_NE(out.find("stopped"), std::string::npos) << out;
  EXPECT_EQ(out.find("not reporting"), std::string::npos) << out;
}

TEST_F(RepartitionTest, AKilledProcessRestartedGivesTheUninterruptedOutputs) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-kill");
  std::string err;
  ASSERT_EQ(Run({"run", CurrencySpec(dir, "ref"), "-b", bootstrap(), "--stop-at-end", "--final-watermark",
                 "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  const TopicContents want = ReadOutputs(Config(), "ref-out.v1");

  const std::string spec = CurrencySpec(dir, "crash");
  {
    ChildProcess slow({"run", spec, "-b", bootstrap(), "--max-rate", "8000", "--status-interval-ms", "200"}, "crash");
    // A few checkpoints of both stages, with records in flight between them.
    ASSERT_TRUE(WaitUntilReading(slow, 60)) << slow.Stderr();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    slow.Kill(SIGKILL);
    ASSERT_EQ(slow.Wait(), 128 + SIGKILL) << slow.Stderr();
  }
  const TopicContents before = ReadOutputs(Config(), "crash.v1.repartition.1");
  ASSERT_GT(before.total, 0) << "nothing was repartitioned before the kill";
  ASSERT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  const TopicContents got = ReadOutputs(Config(), "crash-out.v1");
  ASSERT_GT(want.rows.size(), 20u);
  EXPECT_TRUE(got.all_copies_identical) << "a row written again after the crash differs";
  EXPECT_EQ(Rows(got), Rows(want));
}

// exactly_once (real broker only: the embedded broker shows aborted
// transactions to read_committed readers): killed mid-run and restarted, a
// read_committed reader of the output sees every row once, equal to an
// uninterrupted run.
TEST_F(RepartitionTest, ExactlyOnceAKilledProcessLeavesNoDuplicateForAReadCommittedReader) {
  if (!real_broker()) GTEST_SKIP() << "the embedded broker shows aborted transactions to read_committed readers";
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-eos");
  std::string err;
  const std::string ref = CurrencySpec(dir, "eref");
  std::ofstream(ref, std::ios::app) << "delivery: exactly_once\n";
  ASSERT_EQ(Run({"run", ref, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  const TopicContents want = ReadOutputs(Config(), "eref-out.v1");
  // The uninterrupted run is itself exact. CI once caught it without the
  // final transaction's records: stage 2 read the repartition topic's ends
  // as the last stable offset before the broker had written that commit's
  // markers, and stopped early (JobRunner::Impl::ReadSettledEnds).
  size_t late_found = 0;
  EXPECT_EQ(Rows(want), Independent("eref.late", &late_found));
  const std::string spec = CurrencySpec(dir, "eos");
  std::ofstream(spec, std::ios::app) << "delivery: exactly_once\n";
  {
    ChildProcess slow({"run", spec, "-b", bootstrap(), "--max-rate", "8000", "--status-interval-ms", "0"}, "eos");
    std::this_thread::sleep_for(std::chrono::milliseconds(4000));
    slow.Kill(SIGKILL);
    ASSERT_EQ(slow.Wait(), 128 + SIGKILL) << slow.Stderr();
  }
  ASSERT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  const TopicContents got = ReadOutputs(Config(), "eos-out.v1");
  ASSERT_GT(want.rows.size(), 20u);
  EXPECT_EQ(got.total, static_cast<int64_t>(got.rows.size())) << "a read_committed reader saw a row twice";
  EXPECT_EQ(Rows(got), Rows(want));
  EXPECT_EQ(Rows(got), Independent("eos.late", &late_found));
}

// Scale-out: three instances of a repartitioned version (each runs both
// stages, in two consumer groups); one is killed with SIGKILL. The outputs
// equal a single process's.
TEST_F(RepartitionTest, ThreeInstancesOneKilledGiveTheSingleProcessOutputs) {
  CreateTopic("transactions", kPartitions);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", Workload()));
  ScratchDir dir("repartition-scale");
  std::string err;
  // Live runs emit the windows their watermark closed: so does the reference.
  ASSERT_EQ(Run({"run", CurrencySpec(dir, "sref"), "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"},
                &err),
            0)
      << err;
  const std::map<std::string, Agg> want = Rows(ReadOutputs(Config(), "sref-out.v1"));
  ASSERT_GT(want.size(), 20u);

  const std::string spec = CurrencySpec(dir, "rso");
  std::ofstream(spec, std::ios::app) << "scale_out: {session_timeout: 6s}\n";
  if (!real_broker()) {
    CreateTopic("rso.v1.changelog", kPartitions, {{"cleanup.policy", "compact"}});
    CreateTopic("rso.v1.stage1.changelog", 3, {{"cleanup.policy", "compact"}});
  }
  // A bug bash: with --stop-at-end each process's stage 2 stopped at the
  // repartition topic's end of the moment while the others still wrote into
  // it, and both "stopped cleanly" with outputs missing. Refused.
  {
    std::string err;
    EXPECT_EQ(Run({"run", spec, "-b", bootstrap(), "--instance", "r0", "--state-dir", dir / "r0", "--stop-at-end"},
                  &err),
              2)
        << err;
    EXPECT_NE(err.find("--stop-at-end is not supported for a scaled-out job with repartition"), std::string::npos)
        << err;
  }
  std::vector<std::unique_ptr<ChildProcess>> instances;
  for (const char* name : {"r1", "r2", "r3"}) {
    instances.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{"run", spec, "-b", bootstrap(), "--instance", name, "--state-dir", dir / name,
                                 "--max-rate", "5000", "--status-interval-ms", "0"},
        name));
  }
  // Until the first instance has taken partitions of both stages and read a while.
  const auto joined = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (instances[0]->Stderr().find("(after the repartition): instance r1 took partition") == std::string::npos ||
         instances[0]->Stderr().find("kappa run: instance r1 took partition") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), joined) << instances[0]->Stderr();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  instances[0]->Kill(SIGKILL);
  ASSERT_EQ(instances[0]->Wait(), 128 + SIGKILL);

  std::map<std::string, Agg> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(150);
  TopicContents out;
  while (std::chrono::steady_clock::now() < deadline) {
    out = ReadOutputs(Config(), "rso-out.v1");
    got = Rows(out);
    if (got == want) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  for (size_t i = 1; i < instances.size(); ++i) {
    instances[i]->Kill(SIGTERM);
    EXPECT_EQ(instances[i]->WaitFor(60000), 0) << instances[i]->Stderr();
    // Each stage's account balances on its own. The exit summary added
    // stage 2's records (fed by every process) to this process's stage 1
    // equation, which then did not add up (a bug bash).
    const std::string summary = instances[i]->Stdout();
    std::smatch m;
    const std::regex up(R"(partitions of transactions: in (\d+) = repartitioned (\d+) \+ deduped (\d+) \+ )"
                        R"(filtered (\d+) \+ late (\d+) \+ dlq (\d+))");
    const std::regex down(R"(its partitions of rso\.v1\.repartition\.1 \(from every process\): in (\d+) = out (\d+) )"
                          R"(\+ deduped (\d+) \+ filtered (\d+) \+ late (\d+) \+ dlq (\d+); (\d+) outputs)");
    for (const std::regex* r : {&up, &down}) {
      ASSERT_TRUE(std::regex_search(summary, m, *r)) << summary;
      int64_t rest = 0;
      for (int k = 2; k <= 6; ++k) rest += std::stoll(m[k]);
      EXPECT_EQ(std::stoll(m[1]), rest) << summary;
    }
  }
  EXPECT_TRUE(out.all_copies_identical) << "a row written again differs";
  EXPECT_EQ(got, want) << instances[1]->Stderr() << instances[2]->Stderr();
}

// Nexmark, globally: every bid to one task (`partitions: 1`).
class NexmarkGlobalTest : public RepartitionTest {
 protected:
  static NexmarkOptions Events() {
    NexmarkOptions o;
    // 50 s of event time. Small: the one repartition partition holds every
    // bid, and the embedded broker keeps at most 5 MiB per partition (it
    // dropped the oldest of 20,000 events' bids once: ~250 bytes each).
    o.count = 10000;
    o.seed = 7;
    o.events_per_second = 200;
    return o;
  }
  void Produce() {
    CreateTopic("nexmark", kPartitions);
    auto produced = ProduceNexmark(Config(), "nexmark", Events());
    ASSERT_TRUE(produced.ok()) << produced.status().ToString();
  }
  std::string Spec(const ScratchDir& dir, const std::string& job, const std::string& window) {
    RepartitionTopic(job, 1);
    const std::string path = dir / (job + ".yaml");
    std::ofstream(path) << "job: " << job << "\nversion: 1\nformat: nexmark\n"
                        << "source: {topic: nexmark, start: earliest}\noperators:\n"
                        << "  - filter: [\"type == bid\"]\n  - repartition: {partitions: 1}\n  - window: " << window
                        << "\nsink: {topic: " << job << "-out}\ndlq: {topic: " << job << ".dlq}\nlate: {topic: " << job
                        << ".late}\ncheckpoint: {interval: 1s, dir: " << (dir / (job + "-state")) << "}\n";
    return path;
  }
  TopicContents RunToEnd(const std::string& spec, const std::string& job) {
    std::string err;
    EXPECT_EQ(Run({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                  &err),
              0)
        << err;
    return ReadOutputs(Config(), job + "-out.v1");
  }
};

TEST_F(NexmarkGlobalTest, Q7TheHighestBidOfEveryWindowOverAllPartitions) {
  ASSERT_NO_FATAL_FAILURE(Produce());
  ScratchDir dir("nexmark-q7g");
  const TopicContents out = RunToEnd(
      Spec(dir, "q7g", "{type: tumbling, size: 10s, key: partition, aggregates: [max], argmax: [auction, bidder]}"),
      "q7g");
  std::map<std::string, std::tuple<int64_t, int64_t, int64_t>> got, want;
  for (const auto& [key, row] : out.rows) {
    const auto* w = AsWindow(row.value);
    ASSERT_NE(w, nullptr);
    ASSERT_NE(w->argmax(), nullptr);
    got[key] = {w->max(), w->argmax()->Get(0), w->argmax()->Get(1)};
  }
  NexmarkGenerator gen(Events());
  NexmarkRecord r;
  while (gen.Next(&r)) {
    if (r.type != NexmarkEventType::kBid) continue;
    const std::string key = "0|" + std::to_string((r.event_time_ms / 10000 + 1) * 10000);
    auto [it, fresh] = want.try_emplace(key, r.price, r.auction, r.bidder);
    // The highest price; among equal prices the smallest (auction, bidder).
    auto& [price, auction, bidder] = it->second;
    if (!fresh && (r.price > price || (r.price == price && std::tie(r.auction, r.bidder) < std::tie(auction, bidder)))) {
      it->second = {r.price, r.auction, r.bidder};
    }
  }
  ASSERT_GE(want.size(), 5u);
  EXPECT_EQ(got, want);
}

TEST_F(NexmarkGlobalTest, Q5TheAuctionsWithTheMostBidsOfEverySlidingWindowOverAllPartitions) {
  ASSERT_NO_FATAL_FAILURE(Produce());
  ScratchDir dir("nexmark-q5g");
  const TopicContents out =
      RunToEnd(Spec(dir, "q5g", "{type: sliding, size: 10s, slide: 2s, key: auction, aggregates: [count], top: 1}"),
               "q5g");
  std::map<std::string, int64_t> got;
  for (const auto& [key, row] : out.rows) {
    const auto* w = AsWindow(row.value);
    ASSERT_NE(w, nullptr);
    got[key] = w->count();
  }
  // Bids per (window end, auction), then the auctions with the top count.
  std::map<int64_t, std::map<int64_t, int64_t>> counts;
  NexmarkGenerator gen(Events());
  NexmarkRecord r;
  while (gen.Next(&r)) {
    if (r.type != NexmarkEventType::kBid) continue;
    for (int64_t s = r.event_time_ms / 2000 * 2000; s > r.event_time_ms - 10000; s -= 2000) ++counts[s + 10000][r.auction];
  }
  std::map<std::string, int64_t> want;
  for (const auto& [end, by_auction] : counts) {
    int64_t top = 0;
    for (const auto& [auction, n] : by_auction) top = std::max(top, n);
    for (const auto& [auction, n] : by_auction) {
      if (n == top) want[std::to_string(auction) + "|" + std::to_string(end)] = n;
    }
  }
  ASSERT_GE(want.size(), 20u);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace kappa::testing
