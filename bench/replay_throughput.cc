// replay_throughput: the end-to-end replay benchmark of issue 5, in ONE run.
//
// Builds (or reuses) an archive of N generated transactions over P
// partitions, then measures on this machine, in this run:
//   (a)  the archive read alone (the storage limit), 1 and 2 threads
//   (b)  a stateless job from the archive (decode, validate, selective filter, emit)
//   (c)  the stateful user-spend job from the archive (decode, dedup, filter,
//        hourly windows per user), 1 and 2 worker threads
//   (c0) the same aggregation written naively: one RocksDB get and put per
//        record (on a prefix of the records: it is slow)
//   (c1) the same query in DuckDB over the same rows in an in-memory table,
//        1 and 2 threads (bench/duckdb, from the npm registry)
//   (d)  a bare librdkafka consume loop over a topic of the embedded broker
//        that fits its retention (the transport limit)
//   (e)  the stateful job over that same topic
// and writes bench/results/replay_throughput.{md,json} with the machine.
// (c) at 1 and 2 threads, and (d) with (e), run --repeat times interleaved
// (default 3) and report the best run of each with the spread: on a shared
// 2-core machine a single pair once gave 2 threads / 1 thread = 1.17 where
// interleaved pairs of the same binary gave 1.33-1.46.
// Every job runs the real JobRunner (real RocksDB checkpoints, real Kafka
// sink on an in-process embedded broker). This is a benchmark, never a test.
#include <librdkafka/rdkafka.h>
#include <rocksdb/db.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_kafka.h"
#include "bench/bench_report.h"
#include "base/hash.h"
#include "kafka/embedded_broker.h"
#include "workload/event_producer.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"
#include "workload/transaction_generator.h"
#include "archive/archive.h"
#include "schemas/transaction_generated.h"

namespace fs = std::filesystem;
using namespace kappa;

using kappa::bench::Machine;
using kappa::bench::Shell;
using kappa::bench::Fmt;
using kappa::bench::PeakRssMb;
using kappa::bench::Rate;
using kappa::bench::ResetPeakRss;
using kappa::bench::Since;

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  int64_t records = 20000000;
  int partitions = 16;
  int64_t users = 10000;
  double zipf = 1.0;
  int64_t naive_records = 1000000;
  int64_t kafka_records = 400000;
  std::string data_dir = "/tmp/kappa-bench";
  std::string results_dir = KAPPA_SOURCE_DIR "/bench/results";
  bool duckdb = true;
  int repeat = 3;  // interleaved runs of (c) 1/2 threads and of (d)/(e); the best of each is reported
  std::string only;  // run only rows whose id starts with this (debugging)
  ArchiveCompression compression = ArchiveCompression::kLz4;  // of the archive's blocks
  size_t block_bytes = ArchiveWriter::kDefaultBlockBytes;      // the archive's block size (raw records)
};

struct Row {
  std::string id, what;
  int threads = 1;
  int64_t records = 0;
  int64_t bytes = 0;
  double seconds = 0;
  double peak_rss_mb = 0;
  double checkpoint_max_ms = -1;
  double checkpoint_total_ms = -1;
  std::string note;
  double rate() const { return seconds > 0 ? records / seconds : 0; }
  double mbps() const { return seconds > 0 ? bytes / seconds / 1e6 : 0; }
};


GeneratorOptions Workload(const Config& c, int64_t count) {
  GeneratorOptions g;
  g.count = static_cast<uint64_t>(count);
  g.users = static_cast<uint64_t>(c.users);
  g.zipf_exponent = c.zipf;
  g.seed = 42;
  g.events_per_second = 100;  // 20 M records = 55 hours of event time
  g.duplicate_fraction = 0.02;
  g.malformed_fraction = 0.001;
  g.out_of_order_fraction = 0.05;
  g.max_delay_ms = 300000;  // within the job's 10 minutes of allowed lateness
  return g;
}

// How the archive's blocks are stored, for the tables.
const char* BlocksLabel(ArchiveCompression compression) {
  switch (compression) {
    case ArchiveCompression::kNone: return "uncompressed";
    case ArchiveCompression::kLz4Fast: return "LZ4 fast";
    case ArchiveCompression::kLz4: return "LZ4HC level 3";
  }
  return "LZ4HC level 3";
}

// The archive (and the DuckDB CSV of the same records) under data_dir,
// reused when a previous run built it with the same parameters.
Status BuildArchive(const Config& c, Row* row) {
  const std::string stamp = std::to_string(c.records) + " " + std::to_string(c.partitions) + " " +
                            std::to_string(c.users) + " " + std::to_string(c.zipf) + " v1" +
                            (c.compression == ArchiveCompression::kNone      ? " none"
                             : c.compression == ArchiveCompression::kLz4Fast ? ""  // the archives before LZ4HC
                                                                             : " lz4hc3") +
                            (c.block_bytes == ArchiveWriter::kDefaultBlockBytes
                                 ? ""
                                 : " block " + std::to_string(c.block_bytes));
  const std::string stamp_file = c.data_dir + "/archive.stamp";
  std::string existing;
  std::getline(std::ifstream(stamp_file), existing);
  const bool have_csv = !c.duckdb || fs::exists(c.data_dir + "/transactions.csv");
  if (existing == stamp && have_csv) {
    std::fprintf(stderr, "replay_throughput: reusing the archive in %s\n", c.data_dir.c_str());
    row->note = "reused from an earlier run";
    return Status::OK();
  }
  fs::remove_all(c.data_dir);
  fs::create_directories(c.data_dir);
  std::vector<std::unique_ptr<ArchiveWriter>> writers;
  for (int p = 0; p < c.partitions; ++p) {
    auto w = ArchiveWriter::Open(c.data_dir + "/archive", "transactions", p, c.block_bytes,
                                 ArchiveWriter::kDefaultSegmentBytes, {}, c.compression);
    if (!w.ok()) return w.status();
    writers.push_back(std::move(*w));
  }
  std::ofstream csv;
  if (c.duckdb) {
    csv.open(c.data_dir + "/transactions.csv");
    csv << "partition,offset,txn_id,user_id,status,amount_cents,currency,event_time_ms\n";
  }
  TransactionGenerator gen(Workload(c, c.records));
  GeneratedRecord r;
  std::vector<int64_t> next(c.partitions, 0);
  ArchiveRecord ar;
  const auto start = Clock::now();
  double write_seconds = 0;
  int64_t n = 0;
  static const char* kStatus[] = {"approved", "cancelled", "refunded"};
  while (gen.Next(&r)) {
    const int32_t p = PartitionForKey(r.key, c.partitions);
    ar.offset = next[p]++;
    ar.timestamp_ms = r.event_time_ms ? r.event_time_ms : 1767225600000;
    ar.key = r.key;
    ar.value = r.value;
    const auto w0 = Clock::now();
    KAPPA_RETURN_IF_ERROR(writers[p]->Append(ar));
    write_seconds += Since(w0);
    row->bytes += static_cast<int64_t>(r.key.size() + r.value.size());
    if (c.duckdb && (r.kind == RecordKind::kValid || r.kind == RecordKind::kDuplicate)) {
      csv << p << ',' << ar.offset << ',' << r.txn_id << ',' << r.user_id << ',' << kStatus[r.status] << ','
          << r.amount_cents << ',' << r.currency << ',' << r.event_time_ms << '\n';
    }
    if (++n % 2000000 == 0) std::fprintf(stderr, "  generated %lld / %lld\n", (long long)n, (long long)c.records);
  }
  const auto f0 = Clock::now();
  for (auto& w : writers) KAPPA_RETURN_IF_ERROR(w->Flush());
  write_seconds += Since(f0);
  row->records = n;
  row->seconds = write_seconds;
  row->note = "archive write alone (generation excluded); total build " + std::to_string(static_cast<int>(Since(start))) + " s";
  std::ofstream(stamp_file) << stamp << "\n";
  return Status::OK();
}

// (a) every record of every partition, on `threads` threads.
Row ReadArchive(const Config& c, int threads) {
  Row row;
  row.id = "a";
  row.what = "archive read alone (decompress, verify, iterate)";
  row.threads = threads;
  std::atomic<int> next{0};
  std::atomic<int64_t> records{0}, bytes{0};
  ResetPeakRss();
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<ArchiveRecord> block;
      int64_t n = 0, b = 0;
      for (int p = next++; p < c.partitions; p = next++) {
        auto reader = ArchiveReader::Open(c.data_dir + "/archive", "transactions", p);
        if (!reader.ok()) std::abort();
        for (;;) {
          if (!(*reader)->NextBlock(&block).ok()) std::abort();
          if (block.empty()) break;
          for (const auto& r : block) b += static_cast<int64_t>(r.value.size() + r.key.size());
          n += static_cast<int64_t>(block.size());
        }
      }
      records += n;
      bytes += b;
    });
  }
  for (auto& t : pool) t.join();
  row.seconds = Since(start);
  row.records = records;
  row.bytes = bytes;
  row.peak_rss_mb = PeakRssMb();
  return row;
}

const char* kStatefulOps =
    "operators:\n"
    "  - dedup: {field: txn_id, ttl: 1h}\n"
    "  - filter: [\"status != cancelled\"]\n"
    "  - window: {type: tumbling, size: 1h, key: user_id, aggregates: [count, sum]}\n";
const char* kStatelessOps =
    "operators:\n"
    "  - filter: [\"amount_cents >= 190000\"]\n"
    "  - emit: {key: txn_id}\n";

Result<Row> RunJob(const Config& c, EmbeddedBroker& broker, const std::string& name, const char* ops,
                   const std::string& topic, int threads, bool archive) {
  const std::string bootstrap = broker.bootstrap();
  // Output topics exist in production; the embedded broker's auto-creation
  // (about a second) would otherwise land in the first checkpoint.
  for (const std::string& t : {"bench-" + name + ".v1", std::string("bench.dlq"), std::string("bench.late")}) {
    (void)broker.CreateTopic({t, 4});
  }
  const std::string state = c.data_dir + "/state-" + name;
  fs::remove_all(state);
  const std::string yaml = "job: bench-" + name + "\nversion: 1\nsource: {topic: " + topic + ", start: earliest}\n" +
                           ops + "allowed_lateness: 10m\nsink: {topic: bench-" + name + "}\ndlq: {topic: bench.dlq}\n" +
                           "late: {topic: bench.late}\ncheckpoint: {interval: 2s, dir: " + state + "}\n";
  auto spec = ParseJobSpec(yaml, name);
  if (!spec.ok()) return spec.status();
  KafkaConfig kc;
  kc.brokers = bootstrap;
  RunOptions options;
  options.status_interval_ms = 0;
  options.stop_at_end = true;
  if (archive) {
    options.archive_dir = c.data_dir + "/archive";
    options.archive_only = true;
  }
  options.parallelism = threads;
  ResetPeakRss();
  JobRunner runner(*spec, kc, options);
  Status st = runner.Run(StopToken());
  if (!st.ok()) return st;
  Row row;
  row.threads = threads;
  row.records = runner.summary().counters.in;
  row.seconds = runner.summary().seconds;
  row.peak_rss_mb = PeakRssMb();
  row.checkpoint_max_ms = runner.summary().checkpoint_max_ms;
  row.checkpoint_total_ms = runner.summary().checkpoint_total_ms;
  const auto& k = runner.summary().counters;
  row.note = "in " + std::to_string(k.in) + " = out " + std::to_string(k.out) + " + deduped " + std::to_string(k.deduped) +
             " + filtered " + std::to_string(k.filtered) + " + late " + std::to_string(k.late) + " + dlq " +
             std::to_string(k.dlq) + "; " + std::to_string(k.outputs) + " outputs, " +
             std::to_string(runner.summary().epochs) + " checkpoints (sink flushes " +
             std::to_string(static_cast<int>(runner.summary().flush_total_ms)) + " ms, waits for the state writer " +
             std::to_string(static_cast<int>(runner.summary().writer_wait_total_ms)) + " ms, longest capture " +
             std::to_string(static_cast<int>(runner.summary().capture_max_ms)) + " ms, final durable wait " +
             std::to_string(static_cast<int>(runner.summary().final_durable_ms)) + " ms)";
  fs::remove_all(state);
  return row;
}

// (c0) what a user writes by hand: per record, a RocksDB get and put for the
// dedup set and a get and put for the (user, hour) aggregate.
Result<Row> Naive(const Config& c) {
  const std::string path = c.data_dir + "/naive-rocksdb";
  fs::remove_all(path);
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, path, &raw);
  if (!s.ok()) return Status::IOError(s.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);
  Row row;
  row.id = "c0";
  row.what = "naive hand-written job: RocksDB get+put per record (dedup set, hourly aggregate)";
  ResetPeakRss();
  const auto start = Clock::now();
  std::vector<ArchiveRecord> block;
  std::vector<uint64_t> aligned;
  std::string value, key;
  int64_t n = 0;
  for (int p = 0; p < c.partitions && n < c.naive_records; ++p) {
    auto reader = ArchiveReader::Open(c.data_dir + "/archive", "transactions", p);
    if (!reader.ok()) return reader.status();
    while (n < c.naive_records) {
      KAPPA_RETURN_IF_ERROR((*reader)->NextBlock(&block));
      if (block.empty()) break;
      for (const auto& r : block) {
        if (n++ >= c.naive_records) break;
        flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(r.value.data()), r.value.size());
        if (!schema::VerifyTransactionBuffer(v)) continue;
        const auto* t = schema::GetTransaction(r.value.data());
        key = "d|" + t->txn_id()->str();
        if (db->Get(rocksdb::ReadOptions(), key, &value).ok()) continue;  // duplicate
        db->Put(rocksdb::WriteOptions(), key, "");
        if (t->status() == schema::TxnStatus::Cancelled) continue;
        key = "w|" + t->user_id()->str() + "|" + std::to_string(t->event_time_ms() / 3600000);
        int64_t acc[2] = {0, 0};
        if (db->Get(rocksdb::ReadOptions(), key, &value).ok() && value.size() == sizeof(acc)) {
          std::memcpy(acc, value.data(), sizeof(acc));
        }
        acc[0] += 1;
        acc[1] += t->amount_cents();
        db->Put(rocksdb::WriteOptions(), key, rocksdb::Slice(reinterpret_cast<const char*>(acc), sizeof(acc)));
      }
    }
  }
  row.seconds = Since(start);
  row.records = std::min(n, c.naive_records);
  row.peak_rss_mb = PeakRssMb();
  row.note = "first " + std::to_string(row.records) + " records (at this speed the full archive would take " +
             std::to_string(static_cast<int>(c.records / std::max(1.0, row.rate()))) + " s)";
  db.reset();
  fs::remove_all(path);
  return row;
}

// (c1) bench/duckdb/run.sh over the CSV; rows parsed from its JSON.
std::vector<Row> DuckDb(const Config& c) {
  std::vector<Row> rows;
  const std::string json = c.data_dir + "/duckdb.json";
  fs::remove(json);
  const std::string cmd = "bash " KAPPA_SOURCE_DIR "/bench/duckdb/run.sh --csv " + c.data_dir +
                          "/transactions.csv --threads 1,2 --json " + json + " 1>&2";
  std::fprintf(stderr, "replay_throughput: %s\n", cmd.c_str());
  if (std::system(cmd.c_str()) != 0 || !fs::exists(json)) {
    Row r;
    r.id = "c1";
    r.what = "DuckDB";
    r.note = "FAILED to run bench/duckdb/run.sh (needs node and npm; see its output above)";
    rows.push_back(r);
    return rows;
  }
  std::stringstream text;
  text << std::ifstream(json).rdbuf();
  const std::string s = text.str();
  std::smatch m;
  std::regex rows_re("\"rows\"\\s*:\\s*([0-9]+)");
  int64_t input_rows = std::regex_search(s, m, rows_re) ? std::stoll(m[1]) : 0;
  std::regex run_re("\\{[^{}]*\"query\"\\s*:\\s*\"([a-z]+)\"[^{}]*\\}");
  for (auto it = std::sregex_iterator(s.begin(), s.end(), run_re); it != std::sregex_iterator(); ++it) {
    const std::string obj = (*it)[0];
    auto num = [&](const char* field) {
      std::smatch f;
      std::regex re(std::string("\"") + field + "\"\\s*:\\s*([0-9.eE+-]+)");
      return std::regex_search(obj, f, re) ? std::stod(f[1]) : 0.0;
    };
    Row r;
    r.id = (*it)[1] == "dedup" ? "c1" : "c1n";
    r.what = (*it)[1] == "dedup" ? "DuckDB, same query (dedup by txn_id, drop cancelled, hourly count+sum per user)"
                                 : "DuckDB, without the dedup";
    r.threads = static_cast<int>(num("threads"));
    r.seconds = num("seconds");
    r.records = input_rows;
    r.note = std::to_string(static_cast<int64_t>(num("groups"))) + " groups; in-memory table, load excluded";
    rows.push_back(r);
  }
  return rows;
}

// (d) the transport limit: a bare consume loop over every partition.
Result<Row> BareConsume(const std::string& bootstrap, const std::string& topic, int partitions) {
  ResetPeakRss();
  auto run = kappa::bench::BareConsume(bootstrap, topic, partitions, 300);
  if (!run.ok()) return run.status();
  Row row;
  row.id = "d";
  row.what = "bare librdkafka consume loop, embedded broker (transport limit)";
  row.records = run->records;
  row.bytes = run->bytes;
  row.seconds = run->seconds;
  row.peak_rss_mb = PeakRssMb();
  return row;
}


const Row* Find(const std::vector<Row>& rows, const std::string& id, int threads) {
  for (const auto& r : rows) {
    if (r.id == id && r.threads == threads && r.seconds > 0) return &r;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "replay_throughput: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--records") c.records = std::stoll(next());
    else if (a == "--partitions") c.partitions = std::stoi(next());
    else if (a == "--users") c.users = std::stoll(next());
    else if (a == "--zipf") c.zipf = std::stod(next());
    else if (a == "--naive-records") c.naive_records = std::stoll(next());
    else if (a == "--kafka-records") c.kafka_records = std::stoll(next());
    else if (a == "--data-dir") c.data_dir = next();
    else if (a == "--results-dir") c.results_dir = next();
    else if (a == "--no-duckdb") c.duckdb = false;
    else if (a == "--only") c.only = next();
    else if (a == "--repeat") c.repeat = std::max(1, std::stoi(next()));
    else if (a == "--compression") {
      auto parsed = ParseArchiveCompression(next());
      if (!parsed.ok()) {
        std::fprintf(stderr, "replay_throughput: %s\n", parsed.status().message().c_str());
        return 2;
      }
      c.compression = *parsed;
    } else if (a == "--block-kb") {
      c.block_bytes = static_cast<size_t>(std::max(1, std::stoi(next()))) * 1024;
    } else {
      std::printf(
          "usage: replay_throughput [--records N (20000000)] [--partitions P (16)] [--users U (10000)] [--zipf S (1.0)]\n"
          "       [--naive-records N (1000000)] [--kafka-records N (400000)] [--data-dir DIR (/tmp/kappa-bench)]\n"
          "       [--results-dir DIR (bench/results)] [--no-duckdb] [--repeat N (3)] [--compression lz4|lz4-fast|none (lz4)]\n"
          "       [--block-kb K (1024): the archive's block size]\n\n"
          "The end-to-end replay benchmark (see the comment at the top of bench/replay_throughput.cc).\n"
          "Run it through scripts/bench.sh, which also installs DuckDB from npm.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  auto want = [&](const char* id) { return c.only.empty() || c.only.find(id) != std::string::npos; };
  std::vector<Row> rows;
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "replay_throughput: %s\n", s.ToString().c_str());
    return 1;
  };

  Row build;
  build.id = "w";
  build.what = std::string("archive write (") + BlocksLabel(c.compression) + " blocks with XXH3, fdatasync at the end)";
  if (Status st = BuildArchive(c, &build); !st.ok()) return fail(st);
  auto ranges = ArchiveRanges(c.data_dir + "/archive", "transactions");
  if (!ranges.ok()) return fail(ranges.status());
  int64_t archived = 0, stored = 0;
  for (const auto& r : *ranges) archived += r.records, stored += r.stored_bytes;
  if (build.seconds > 0) rows.push_back(build);
  std::fprintf(stderr, "replay_throughput: archive of %lld records, %.1f MB stored, %zu partitions\n",
               (long long)archived, stored / 1e6, ranges->size());

  EmbeddedBroker::Options bo;
  bo.topics.push_back({"kafka_tx", c.partitions});
  auto broker = EmbeddedBroker::Start(bo);
  if (!broker.ok()) return fail(broker.status());
  const std::string bootstrap = (*broker)->bootstrap();

  int64_t archive_bytes = 0;
  for (int threads : {1, 2}) {
    if (!want("a")) break;
    Row r = ReadArchive(c, threads);
    archive_bytes = r.bytes;
    std::fprintf(stderr, "  (a) %d thread(s): %s rec/s\n", threads, Rate(r.rate()).c_str());
    rows.push_back(r);
  }
  for (int threads : {1, 2}) {
    if (!want("b")) break;
    auto r = RunJob(c, **broker, "stateless" + std::to_string(threads), kStatelessOps, "transactions", threads, true);
    if (!r.ok()) return fail(r.status());
    r->id = "b";
    r->what = "stateless job from the archive (decode, validate, filter 1.7%, emit)";
    r->bytes = archive_bytes;
    std::fprintf(stderr, "  (b) %d thread(s): %s rec/s\n", threads, Rate(r->rate()).c_str());
    rows.push_back(*r);
  }
  // The best of c.repeat runs, with the spread in its note.
  struct Best {
    Row row;
    double low = 0, high = 0;
    int runs = 0;
    void Add(const Row& r) {
      if (runs++ == 0 || r.rate() > row.rate()) row = r;
      low = runs == 1 ? r.rate() : std::min(low, r.rate());
      high = std::max(high, r.rate());
    }
    Row Report() const {
      Row r = row;
      if (runs > 1) {
        r.note += (r.note.empty() ? "" : "; ") + std::string("best of ") + std::to_string(runs) +
                  " interleaved runs (" + Rate(low) + " to " + Rate(high) + " rec/s)";
      }
      return r;
    }
  };
  if (want("c")) {
    Best best[2];
    for (int rep = 0; rep < c.repeat; ++rep) {
      for (int threads : {1, 2}) {
        auto r = RunJob(c, **broker, "stateful" + std::to_string(threads), kStatefulOps, "transactions", threads, true);
        if (!r.ok()) return fail(r.status());
        r->id = "c";
        r->what = "stateful job from the archive (decode, dedup, filter, hourly windows per user)";
        r->bytes = archive_bytes;
        std::fprintf(stderr, "  (c) %d thread(s), run %d: %s rec/s\n", threads, rep + 1, Rate(r->rate()).c_str());
        best[threads - 1].Add(*r);
      }
    }
    rows.push_back(best[0].Report());
    rows.push_back(best[1].Report());
  }
  if (want("c0")) {
    auto r = Naive(c);
    if (!r.ok()) return fail(r.status());
    std::fprintf(stderr, "  (c0): %s rec/s\n", Rate(r->rate()).c_str());
    rows.push_back(*r);
  }
  if (c.duckdb && want("c1")) {
    for (auto& r : DuckDb(c)) rows.push_back(r);
  }
  if (want("d") || want("e")) {
    auto gen = Workload(c, c.kafka_records);
    gen.zipf_exponent = 0.8;  // keep every partition within the broker's 5 MiB
    KafkaConfig kc;
    kc.brokers = bootstrap;
    auto produced = ProduceEvents(kc, "kafka_tx", gen);
    if (!produced.ok()) return fail(produced.status());
    auto probe = CreateClient(ClientKind::kConsumer, kc, {{"group.id", "probe"}});
    auto marks = QueryAllWatermarks(probe->get(), "kafka_tx", c.partitions, 10000);
    if (!marks.ok()) return fail(marks.status());
    for (const auto& m : *marks) {
      if (m.low != 0) return fail(Status::FailedPrecondition("the embedded broker dropped history: use fewer --kafka-records"));
    }
    Best best_d, best_e;
    for (int rep = 0; rep < c.repeat; ++rep) {
      auto d = BareConsume(bootstrap, "kafka_tx", c.partitions);
      if (!d.ok()) return fail(d.status());
      std::fprintf(stderr, "  (d) run %d: %s rec/s\n", rep + 1, Rate(d->rate()).c_str());
      best_d.Add(*d);
      auto e = RunJob(c, **broker, "kafka", kStatefulOps, "kafka_tx", 1, false);
      if (!e.ok()) return fail(e.status());
      e->id = "e";
      e->what = "stateful job over the same embedded-broker topic";
      e->bytes = d->bytes;
      std::fprintf(stderr, "  (e) run %d: %s rec/s\n", rep + 1, Rate(e->rate()).c_str());
      best_e.Add(*e);
    }
    rows.push_back(best_d.Report());
    rows.push_back(best_e.Report());
  }

  // ---- report
  auto ratio = [&](const char* x, int tx, const char* y, int ty) -> std::string {
    const Row* a = Find(rows, x, tx);
    const Row* b = Find(rows, y, ty);
    return a && b && b->rate() > 0 ? Fmt(a->rate() / b->rate()) : "n/a";
  };
  const std::string machine = Machine();
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream md;
  md << "# replay_throughput\n\n"
     << "Measured " << date << " on " << machine << " (shared and noisy: compare ratios within one run).\n"
     << "Archive: " << archived << " generated transactions (" << c.users << " users, Zipf " << c.zipf
     << ", 2% duplicate sends, 5% out of order, 0.1% malformed), " << c.partitions << " partitions, "
     << Fmt(stored / 1e6, "%.0f") << " MB stored (" << BlocksLabel(c.compression)
     << "). Command: `scripts/bench.sh`.\n\n"
     << "| id | what | threads | records | seconds | records/s | MB/s | peak RSS MB | checkpoint max / total ms | note |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    md << "| " << r.id << " | " << r.what << " | " << r.threads << " | " << r.records << " | " << Fmt(r.seconds, "%.2f")
       << " | " << Rate(r.rate()) << " | " << (r.bytes ? Fmt(r.mbps(), "%.0f") : "") << " | "
       << (r.peak_rss_mb > 0 ? Fmt(r.peak_rss_mb, "%.0f") : "") << " | "
       << (r.checkpoint_max_ms >= 0 ? Fmt(r.checkpoint_max_ms, "%.0f") + " / " + Fmt(r.checkpoint_total_ms, "%.0f") : "")
       << " | " << r.note << " |\n";
  }
  md << "\nRatios (same run):\n\n"
     << "- (c)/(a), stateful replay vs the archive read alone: " << ratio("c", 1, "a", 1) << " at 1 thread, "
     << ratio("c", 2, "a", 2) << " at 2\n"
     << "- (c)/(c1), kappa vs DuckDB on the same query: " << ratio("c", 1, "c1", 1) << " at 1 thread, "
     << ratio("c", 2, "c1", 2) << " at 2 (>= 1.0 is replay at batch speed)\n"
     << "- (c)/(c0), kappa vs the naive RocksDB job: " << ratio("c", 1, "c0", 1) << "\n"
     << "- (e)/(d), stateful job vs bare consume on the embedded broker: " << ratio("e", 1, "d", 1) << "\n"
     << "- (c) 2 threads / 1 thread: " << ratio("c", 2, "c", 1) << "\n";
  std::ostringstream js;
  js << "{\n  \"date\": \"" << date << "\",\n  \"machine\": \"" << machine << "\",\n  \"archive_records\": " << archived
     << ",\n  \"partitions\": " << c.partitions << ",\n  \"users\": " << c.users << ",\n  \"zipf\": " << c.zipf
     << ",\n  \"stored_bytes\": " << stored << ",\n  \"rows\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    js << (i ? "," : "") << "\n    {\"id\": \"" << r.id << "\", \"what\": \"" << r.what << "\", \"threads\": " << r.threads
       << ", \"records\": " << r.records << ", \"seconds\": " << r.seconds << ", \"records_per_second\": " << r.rate()
       << ", \"mb_per_second\": " << r.mbps() << ", \"peak_rss_mb\": " << r.peak_rss_mb
       << ", \"checkpoint_max_ms\": " << r.checkpoint_max_ms << ", \"checkpoint_total_ms\": " << r.checkpoint_total_ms
       << ", \"note\": \"" << r.note << "\"}";
  }
  js << "\n  ],\n  \"ratios\": {\"c_over_a_1\": \"" << ratio("c", 1, "a", 1) << "\", \"c_over_c1_1\": \""
     << ratio("c", 1, "c1", 1) << "\", \"c_over_c1_2\": \"" << ratio("c", 2, "c1", 2) << "\", \"c_over_c0\": \""
     << ratio("c", 1, "c0", 1) << "\", \"e_over_d\": \"" << ratio("e", 1, "d", 1) << "\"}\n}\n";
  std::fputs(md.str().c_str(), stdout);
  if (c.only.empty()) {
    fs::create_directories(c.results_dir);
    std::ofstream(c.results_dir + "/replay_throughput.md") << md.str();
    std::ofstream(c.results_dir + "/replay_throughput.json") << js.str();
    std::fprintf(stderr, "replay_throughput: wrote %s/replay_throughput.{md,json}\n", c.results_dir.c_str());
  }
  return 0;
}
