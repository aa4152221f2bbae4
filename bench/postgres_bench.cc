// postgres_bench: the PostgreSQL sink (issue 13) in ONE run, over one topic
// that scripts/bench_postgres.sh filled with `kappa gen` on the embedded
// broker, into a PostgreSQL 15 of the script's own:
//   (a)  the user-spend job (dedup, hourly tumbling features per user: few
//        rows per input) into PostgreSQL: events/s, rows/s, the checkpoint
//        stall per checkpoint and the database transaction's share of it
//   (ak) the same job into a Kafka topic: the stall without a database
//   (al), (akl) (a) and (ak) paced at the topic in ~20 s (max_rate), like a
//        live job: the stall over ~20 checkpoints
//   (b)  a rolling 1 h feature job (one row per accepted input: the sink's
//        row path is the bottleneck) into PostgreSQL: rows/s
//   (c)  the same rolling job into a Kafka topic (JSON rows): rows/s
//   (d)  baseline: case (b)'s rows inserted by a plain loop of single-row
//        INSERT statements through libpq, autocommit (each its own transaction)
//   (e)  the same loop inside one transaction
// Every job runs the real JobRunner (real RocksDB checkpoints, the real
// PostgresSink / KafkaSink). Before it reports, it checks that the row counts
// agree (case b's table == the rolling job's outputs == case c's outputs) and
// that the tables of (d) and (e) equal the rows of (b) they were taken from
// (EXCEPT both ways). Writes bench/results/postgres.{md,json}. A benchmark,
// never a test.
//   postgres_bench --bootstrap HOST:PORT --topic T --partitions P --dsn DSN
//                  --gen-records N --gen-seconds S [--insert-rows N (20000)]
//                  [--tx-rows N (200000)] [--live-seconds S (20)] [--results-dir DIR]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"
#include "postgres/pg_client.h"

namespace fs = std::filesystem;
using namespace kappa;

using kappa::bench::Machine;
using kappa::bench::Shell;
using kappa::bench::Fmt;
using kappa::bench::Rate;
using kappa::bench::Since;

namespace {

using Clock = std::chrono::steady_clock;

struct Row {
  std::string id, what, note;
  int64_t events = 0;  // records read
  int64_t rows = 0;    // rows written
  double seconds = 0;
  int64_t checkpoints = -1;
  double ckpt_mean_ms = -1, ckpt_max_ms = -1, ckpt_total_ms = -1, flush_total_ms = -1;
  std::string load;  // /proc/loadavg (1, 5, 15 min) before the case
  double event_rate() const { return seconds > 0 ? events / seconds : 0; }
  double row_rate() const { return seconds > 0 ? rows / seconds : 0; }
};

std::string Load() { return Shell("cut -d' ' -f1-3 /proc/loadavg"); }


const char* kSpendFeatures =
    "{txn_count_1h: count, spend_1h: sum(amount_cents), max_amount_1h: max(amount_cents), "
    "avg_amount_1h: avg(amount_cents), currencies_1h: count_distinct(currency)}";

// `sink` is the spec's sink line: "{topic: X}" or "{postgres: {dsn: ..., table: T}}".
Result<Row> RunJob(const std::string& bootstrap, const std::string& topic, const std::string& name,
                   const std::string& window, const std::string& sink, const std::string& state_root,
                   double max_rate) {
  const std::string state = state_root + "/state-" + name;
  fs::remove_all(state);
  const std::string yaml = "job: pgbench-" + name + "\nversion: 1\nsource: {topic: " + topic +
                           ", start: earliest}\noperators:\n  - dedup: {field: txn_id, ttl: 1h}\n  - window: " +
                           window + "\nallowed_lateness: 10m\nsink: " + sink +
                           "\ndlq: {topic: bench.dlq}\nlate: {topic: bench.late}\ncheckpoint: {interval: 1s, dir: " +
                           state + "}\n";
  auto spec = ParseJobSpec(yaml, name);
  if (!spec.ok()) return spec.status();
  KafkaConfig kc;
  kc.brokers = bootstrap;
  RunOptions options;
  options.status_interval_ms = 0;
  options.stop_at_end = true;
  options.final_watermark = true;
  options.parallelism = 1;
  options.max_rate = max_rate;
  Row row;
  row.load = Load();
  {
    // Closed (RocksDB included) before its directory is removed.
    JobRunner runner(*spec, kc, options);
    Status st = runner.Run(StopToken());
    if (!st.ok()) return st;
    const RunSummary& s = runner.summary();
    const auto& k = s.counters;
    row.events = k.in;
    row.rows = k.outputs;
    row.seconds = s.seconds;
    row.checkpoints = s.epochs;
    row.ckpt_max_ms = s.checkpoint_max_ms;
    row.ckpt_total_ms = s.checkpoint_total_ms;
    row.ckpt_mean_ms = s.epochs > 0 ? s.checkpoint_total_ms / s.epochs : 0;
    row.flush_total_ms = s.flush_total_ms;
    row.note = "in " + std::to_string(k.in) + " = out " + std::to_string(k.out) + " + deduped " +
               std::to_string(k.deduped) + " + filtered " + std::to_string(k.filtered) + " + late " +
               std::to_string(k.late) + " + dlq " + std::to_string(k.dlq) + "; " + std::to_string(k.outputs) +
               " outputs; sink flushes " + Fmt(s.flush_total_ms, "%.0f") + " ms = " +
               Fmt(s.checkpoint_total_ms > 0 ? 100 * s.flush_total_ms / s.checkpoint_total_ms : 0, "%.0f") +
               "% of the checkpoint stall; stall " +
               Fmt(s.seconds > 0 ? s.checkpoint_total_ms / (10 * s.seconds) : 0, "%.1f") + "% of the run; final " +
               Fmt(s.final_durable_ms, "%.0f") + " ms";
  }
  std::error_code ignored;
  fs::remove_all(state, ignored);
  return row;
}

Result<int64_t> Count(PgClient& pg, const std::string& from) {
  auto r = pg.Exec("SELECT count(*) FROM " + from);
  if (!r.ok()) return r.status();
  return std::stoll(r->rows.at(0).at(0));
}

// (d)/(e): `values` ("(...)" tuples of literals) inserted into a fresh copy
// of `source`'s table, one INSERT statement each; `one_tx`: inside BEGIN/COMMIT.
Result<Row> InsertLoop(PgClient& pg, const std::string& source, const std::string& target, const std::string& cols,
                       const std::vector<std::string>& values, bool one_tx) {
  Row row;
  row.load = Load();
  auto made = pg.Exec("DROP TABLE IF EXISTS " + target + "; CREATE TABLE " + target + " (LIKE " + source +
                      " INCLUDING ALL)");
  if (!made.ok()) return made.status();
  const std::string prefix = "INSERT INTO " + target + " (" + cols + ") VALUES ";
  const auto start = Clock::now();
  if (one_tx) {
    if (auto r = pg.Exec("BEGIN"); !r.ok()) return r.status();
  }
  for (const auto& v : values) {
    if (auto r = pg.Exec(prefix + v); !r.ok()) return r.status();
  }
  if (one_tx) {
    if (auto r = pg.Exec("COMMIT"); !r.ok()) return r.status();
  }
  row.seconds = Since(start);
  row.rows = static_cast<int64_t>(values.size());
  return row;
}

// Rows in `a` not in `b` plus rows in `b` not in `a` (0: equal as sets).
Result<int64_t> SymmetricDifference(PgClient& pg, const std::string& a, const std::string& b) {
  return Count(pg, "((SELECT * FROM " + a + " EXCEPT ALL SELECT * FROM " + b + ") UNION ALL (SELECT * FROM " + b +
                       " EXCEPT ALL SELECT * FROM " + a + ")) diff");
}

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap, topic, dsn, results_dir = "bench/results";
  int partitions = 0;
  int64_t gen_records = 0, insert_rows = 20000, tx_rows = 200000;
  double gen_seconds = 0, live_seconds = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "postgres_bench: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--bootstrap") bootstrap = v;
    else if (a == "--topic") topic = v;
    else if (a == "--partitions") partitions = std::stoi(v);
    else if (a == "--dsn") dsn = v;
    else if (a == "--gen-records") gen_records = std::stoll(v);
    else if (a == "--gen-seconds") gen_seconds = std::stod(v);
    else if (a == "--insert-rows") insert_rows = std::stoll(v);
    else if (a == "--tx-rows") tx_rows = std::stoll(v);
    else if (a == "--results-dir") results_dir = v;
    else if (a == "--live-seconds") live_seconds = std::stod(v);
    else {
      std::fprintf(stderr, "postgres_bench: unknown option %s (run by scripts/bench_postgres.sh)\n", a.c_str());
      return 2;
    }
  }
  if (bootstrap.empty() || topic.empty() || partitions <= 0 || dsn.empty()) {
    std::fprintf(stderr, "usage: postgres_bench --bootstrap HOST:PORT --topic T --partitions P --dsn DSN "
                         "[--gen-records N --gen-seconds S --insert-rows N --tx-rows N --results-dir DIR]\n");
    return 2;
  }
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "postgres_bench: %s\n", st.ToString().c_str());
    return 1;
  };
  auto pg = PgClient::Connect(dsn);
  if (!pg.ok()) return fail(pg.status());
  PgClient& db = **pg;
  const std::string state_root = fs::temp_directory_path() / ("kappa-postgres-bench-" + std::to_string(::getpid()));
  // The DSN goes into the spec as a double-quoted YAML scalar.
  auto pg_sink_for = [&](const std::string& table) {
    std::string quoted;
    for (char c : dsn) {
      if (c == '"' || c == '\\') quoted.push_back('\\');
      quoted.push_back(c);
    }
    return "{postgres: {dsn: \"" + quoted + "\", table: " + table + "}}";
  };
  const std::string pg_sink = pg_sink_for("pgbench_spend");
  const std::string pg_rolling_sink = pg_sink_for("pgbench_rolling");
  const std::string tumbling = std::string("{type: tumbling, size: 1h, key: user_id, features: ") + kSpendFeatures + "}";
  const std::string rolling =
      "{type: rolling, size: 1h, key: user_id, features: {txn_count_1h: count, spend_1h: sum(amount_cents), "
      "max_amount_1h: max(amount_cents), currencies_1h: count_distinct(currency)}}";

  std::vector<Row> rows;
  Row gen;
  gen.id = "p";
  gen.what = "`kappa gen` producing to the embedded broker";
  gen.events = gen_records;
  gen.seconds = gen_seconds;
  gen.note = "timed by the script around the whole command (process start included)";
  rows.push_back(gen);

  // (al)/(akl): the user-spend job paced like a live job (--max-rate: the
  // topic in ~live_seconds), so the stall per checkpoint is measured over
  // many checkpoints, not the one or two of a run at full speed.
  const double live_rate = gen_records / live_seconds;
  const std::string paced = " paced at " + Rate(live_rate) + " events/s (max_rate, like a live job)";
  struct Case {
    const char* id;
    std::string what, window, sink;
    double max_rate;
  };
  const std::vector<Case> cases = {
      {"a", "user-spend job (dedup, hourly tumbling features) into PostgreSQL", tumbling, pg_sink, 0},
      {"ak", "the same user-spend job into a Kafka topic (JSON rows)", tumbling, "{topic: pgbench-spend}", 0},
      {"al", "user-spend job into PostgreSQL," + paced, tumbling, pg_sink_for("pgbench_spend_live"), live_rate},
      {"akl", "user-spend job into Kafka," + paced, tumbling, "{topic: pgbench-spend}", live_rate},
      {"b", "rolling 1 h feature job (a row per accepted input) into PostgreSQL", rolling, pg_rolling_sink, 0},
      {"c", "the same rolling job into a Kafka topic (JSON rows)", rolling, "{topic: pgbench-rolling}", 0},
  };
  for (const auto& c : cases) {
    std::fprintf(stderr, "== (%s) %s\n", c.id, c.what.c_str());
    auto r = RunJob(bootstrap, topic, c.id, c.window, c.sink, state_root, c.max_rate);
    if (!r.ok()) return fail(r.status());
    r->id = c.id;
    r->what = c.what;
    std::fprintf(stderr, "  (%s) %s events/s, %s rows/s, %lld checkpoints, stall mean %.0f / max %.0f ms (load %s)\n",
                 c.id, Rate(r->event_rate()).c_str(), Rate(r->row_rate()).c_str(),
                 static_cast<long long>(r->checkpoints), r->ckpt_mean_ms, r->ckpt_max_ms, r->load.c_str());
    rows.push_back(*r);
  }
  std::error_code ignored;
  fs::remove_all(state_root, ignored);
  auto find = [&](const std::string& id) -> Row& {
    for (auto& r : rows) {
      if (r.id == id) return r;
    }
    return rows.front();
  };
  Row& a = find("a");
  Row& ak = find("ak");
  Row& b = find("b");
  Row& c = find("c");
  Row& al = find("al");
  Row& akl = find("akl");

  // The counts agree: what each PostgreSQL job's table holds == its outputs;
  // the rolling job wrote as many rows to Kafka as to PostgreSQL.
  std::vector<std::string> checks;
  bool ok = true;
  auto check = [&](bool pass, const std::string& what) {
    checks.push_back(std::string(pass ? "ok" : "FAILED") + ": " + what);
    std::fprintf(stderr, "  check %s: %s\n", pass ? "ok" : "FAILED", what.c_str());
    ok = ok && pass;
  };
  const std::string spend_table = "pgbench_spend_v1", rolling_table = "pgbench_rolling_v1";
  auto spend_rows = Count(db, spend_table);
  auto rolling_rows = Count(db, rolling_table);
  if (!spend_rows.ok()) return fail(spend_rows.status());
  if (!rolling_rows.ok()) return fail(rolling_rows.status());
  // A tumbling window's row is revised by late records: outputs >= distinct keys.
  check(*spend_rows <= a.rows && a.rows == ak.rows,
        "(a) table " + spend_table + " holds " + std::to_string(*spend_rows) + " rows (distinct windows) for " +
            std::to_string(a.rows) + " outputs; (ak) wrote " + std::to_string(ak.rows) + " outputs");
  check(*rolling_rows == b.rows && b.rows == c.rows,
        "(b) table " + rolling_table + " holds " + std::to_string(*rolling_rows) + " rows == the rolling job's " +
            std::to_string(b.rows) + " outputs == (c)'s " + std::to_string(c.rows) + " outputs to Kafka");
  bool same_events = true;
  for (const auto& r : rows) same_events = same_events && r.events == gen_records;
  check(same_events, "every job read the " + std::to_string(gen_records) +
                         " events `kappa gen` wrote (the embedded broker dropped none)");
  auto live_rows = Count(db, "pgbench_spend_live_v1");
  if (!live_rows.ok()) return fail(live_rows.status());
  check(*live_rows == *spend_rows && al.rows == a.rows && akl.rows == a.rows,
        "the paced runs wrote the same rows (table pgbench_spend_live_v1: " + std::to_string(*live_rows) + ")");

  // (d), (e): case (b)'s rows, the first N by key, as INSERT value tuples.
  auto cols_r = db.Exec("SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position), "
                        "string_agg('quote_nullable(' || quote_ident(column_name) || ')', ' || '','' || ' "
                        "ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '" +
                        rolling_table + "'");
  if (!cols_r.ok()) return fail(cols_r.status());
  const std::string cols = cols_r->rows.at(0).at(0), literals = cols_r->rows.at(0).at(1);
  const int64_t n_values = std::min<int64_t>(std::max(insert_rows, tx_rows), *rolling_rows);
  auto values_r = db.Exec("SELECT '(' || " + literals + " || ')' FROM " + rolling_table +
                          " ORDER BY kappa_key LIMIT " + std::to_string(n_values));
  if (!values_r.ok()) return fail(values_r.status());
  std::vector<std::string> values;
  values.reserve(values_r->rows.size());
  for (auto& r : values_r->rows) values.push_back(std::move(r.at(0)));
  values_r->rows.clear();
  struct Loop {
    const char* id;
    const char* table;
    bool one_tx;
    int64_t n;
    const char* what;
  };
  const std::vector<Loop> loops = {
      {"d", "pgbench_insert_autocommit", false, std::min<int64_t>(insert_rows, n_values),
       "baseline: (b)'s rows by a loop of single-row INSERTs through libpq, autocommit (a transaction each)"},
      {"e", "pgbench_insert_one_tx", true, std::min<int64_t>(tx_rows, n_values),
       "baseline: the same single-row INSERT loop inside one transaction"},
  };
  for (const auto& l : loops) {
    std::fprintf(stderr, "== (%s) %s: %lld rows\n", l.id, l.what, static_cast<long long>(l.n));
    std::vector<std::string> part(values.begin(), values.begin() + l.n);
    auto r = InsertLoop(db, rolling_table, l.table, cols, part, l.one_tx);
    if (!r.ok()) return fail(r.status());
    r->id = l.id;
    r->what = l.what;
    r->note = "the first " + std::to_string(l.n) + " of (b)'s rows by kappa_key; literals built by the server beforehand";
    std::fprintf(stderr, "  (%s) %s rows/s (load %s)\n", l.id, Rate(r->row_rate()).c_str(), r->load.c_str());
    const std::string subset =
        "(SELECT * FROM " + rolling_table + " ORDER BY kappa_key LIMIT " + std::to_string(l.n) + ") src";
    auto in_table = Count(db, l.table);
    auto diff = SymmetricDifference(db, l.table, subset);
    if (!in_table.ok()) return fail(in_table.status());
    if (!diff.ok()) return fail(diff.status());
    check(*in_table == l.n && *diff == 0, std::string("(") + l.id + ") table " + l.table + " holds " +
                                              std::to_string(*in_table) + " rows, equal to (b)'s first " +
                                              std::to_string(l.n) + " (EXCEPT both ways: " + std::to_string(*diff) +
                                              " rows differ)");
    rows.push_back(*r);
  }
  const Row& d = find("d");
  const Row& e = find("e");
  if (!ok) {
    std::fprintf(stderr, "postgres_bench: a check failed, no report written\n");
    return 1;
  }

  const std::string machine = Machine();
  const std::string pg_version = [&] {
    auto v = db.Exec("SHOW server_version");
    return v.ok() ? v->rows.at(0).at(0) : std::string("?");
  }();
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  const double b_db_rate = b.flush_total_ms > 0 ? b.rows / (b.flush_total_ms / 1000) : 0;
  std::ostringstream md;
  md << "# postgres\n\n"
     << "Measured " << date << " on " << machine << ", PostgreSQL " << pg_version
     << " (scripts/postgres.sh: default settings, fsync on, synchronous_commit on, loopback TCP) and the embedded "
        "broker (`kappa broker`), all on the same machine: they compete for the cores.\n"
     << "Topic: " << gen_records << " generated transactions (builtin format, 10000 users, Zipf 0.5) over " << partitions
     << " partitions, written by `kappa gen`; every job runs 1 worker thread, checkpoint every 1 s, "
        "`--stop-at-end --final-watermark`. Command: `scripts/bench_postgres.sh`. Load = /proc/loadavg (1, 5, 15 "
        "min) before the case. Shared and noisy machine: compare ratios within one run.\n\n"
     << "| id | what | events | rows | seconds | events/s | rows/s | checkpoints | stall mean / max ms | load | note |\n"
     << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    md << "| " << r.id << " | " << r.what << " | " << (r.events ? std::to_string(r.events) : "") << " | "
       << (r.rows ? std::to_string(r.rows) : "") << " | " << Fmt(r.seconds) << " | "
       << (r.events ? Rate(r.event_rate()) : "") << " | " << (r.rows ? Rate(r.row_rate()) : "") << " | "
       << (r.checkpoints >= 0 ? std::to_string(r.checkpoints) : "") << " | "
       << (r.checkpoints >= 0 ? Fmt(r.ckpt_mean_ms, "%.0f") + " / " + Fmt(r.ckpt_max_ms, "%.0f") : "") << " | "
       << r.load << " | " << r.note << " |\n";
  }
  md << "\nRatios and shares (same run):\n\n"
     << "- (a) checkpoint stall: mean " << Fmt(a.ckpt_mean_ms, "%.0f") << " ms, max " << Fmt(a.ckpt_max_ms, "%.0f")
     << " ms per checkpoint; the database transaction (sink flush) is "
     << Fmt(a.ckpt_total_ms > 0 ? 100 * a.flush_total_ms / a.ckpt_total_ms : 0, "%.0f")
     << "% of it; into Kafka (ak) the stall is mean " << Fmt(ak.ckpt_mean_ms, "%.0f") << " / max "
     << Fmt(ak.ckpt_max_ms, "%.0f") << " ms\n"
     << "- (al) paced like a live job, " << al.checkpoints << " checkpoints: stall mean "
     << Fmt(al.ckpt_mean_ms, "%.0f") << " ms, max " << Fmt(al.ckpt_max_ms, "%.0f") << " ms, database transaction "
     << Fmt(al.ckpt_total_ms > 0 ? 100 * al.flush_total_ms / al.ckpt_total_ms : 0, "%.0f") << "% of it; (akl) into Kafka, "
     << akl.checkpoints << " checkpoints: mean " << Fmt(akl.ckpt_mean_ms, "%.0f") << " ms, max "
     << Fmt(akl.ckpt_max_ms, "%.0f") << " ms: the database commit adds "
     << Fmt(al.ckpt_mean_ms - akl.ckpt_mean_ms, "%.0f") << " ms per checkpoint on average\n"
     << "- (a)/(ak), user-spend events/s into PostgreSQL vs into Kafka: " << Fmt(a.event_rate() / ak.event_rate())
     << "\n"
     << "- (b)/(c), rolling rows/s into PostgreSQL vs into Kafka (what the database costs): "
     << Fmt(b.row_rate() / c.row_rate()) << "\n"
     << "- (b)/(d), the sink's rows/s end to end vs single-row autocommit INSERTs: " << Fmt(b.row_rate() / d.row_rate())
     << "\n"
     << "- (b)/(e), the sink's rows/s end to end vs single-row INSERTs in one transaction: "
     << Fmt(b.row_rate() / e.row_rate()) << "\n"
     << "- (b)'s database time alone (sink flushes " << Fmt(b.flush_total_ms, "%.0f") << " ms): " << Rate(b_db_rate)
     << " rows/s, " << Fmt(b_db_rate / e.row_rate()) << "x the one-transaction INSERT loop\n"
     << "\nWhat limits the sink (from this run): the epoch's database transaction (COPY into a temporary table, "
        "upsert by kappa_key, kappa_offsets) runs inside the checkpoint barrier, so processing stands still while "
        "it runs: (b) stood still "
     << Fmt(b.seconds > 0 ? b.ckpt_total_ms / (10 * b.seconds) : 0, "%.0f") << "% of its run (" << b.checkpoints
     << " checkpoints, mean " << Fmt(b.ckpt_mean_ms, "%.0f") << " ms, the database " << Fmt(b.flush_total_ms, "%.0f")
     << " ms of it), where (c)'s Kafka sink sends while the job processes and stood still "
     << Fmt(c.seconds > 0 ? c.ckpt_total_ms / (10 * c.seconds) : 0, "%.0f")
     << "%. The transaction moves " << Rate(b_db_rate) << " rows/s, " << Fmt(b_db_rate / e.row_rate())
     << "x the one-transaction INSERT loop and " << Fmt(b_db_rate / d.row_rate(), "%.0f")
     << "x the autocommit loop (one WAL flush per row). (c) writes to the embedded broker (librdkafka's mock "
        "cluster, another process on the same cores), itself a slow sink for ~2 M JSON rows: (b)/(c) compares with "
        "that broker, not with a real Kafka (bench/results/realkafka.md).\n"
     << "\nChecks (the report is written only when all pass):\n\n";
  for (const auto& ch : checks) md << "- " << ch << "\n";
  std::ostringstream js;
  js << "{\n  \"date\": \"" << date << "\",\n  \"machine\": \"" << machine << "\",\n  \"postgres_version\": \""
     << pg_version << "\",\n  \"records\": " << gen_records << ",\n  \"partitions\": " << partitions
     << ",\n  \"rows\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    js << (i ? "," : "") << "\n    {\"id\": \"" << r.id << "\", \"events\": " << r.events << ", \"rows\": " << r.rows
       << ", \"seconds\": " << r.seconds << ", \"events_per_second\": " << r.event_rate()
       << ", \"rows_per_second\": " << r.row_rate() << ", \"checkpoints\": " << r.checkpoints
       << ", \"checkpoint_mean_ms\": " << r.ckpt_mean_ms << ", \"checkpoint_max_ms\": " << r.ckpt_max_ms
       << ", \"flush_total_ms\": " << r.flush_total_ms << ", \"load\": \"" << r.load << "\"}";
  }
  js << "\n  ],\n  \"ratios\": {\"b_over_c\": " << b.row_rate() / c.row_rate()
     << ", \"b_over_d\": " << b.row_rate() / d.row_rate() << ", \"b_over_e\": " << b.row_rate() / e.row_rate()
     << ", \"a_over_ak\": " << a.event_rate() / ak.event_rate() << "}\n}\n";
  std::fputs(md.str().c_str(), stdout);
  fs::create_directories(results_dir);
  std::ofstream(results_dir + "/postgres.md") << md.str();
  std::ofstream(results_dir + "/postgres.json") << js.str();
  std::fprintf(stderr, "postgres_bench: wrote %s/postgres.{md,json}\n", results_dir.c_str());
  return 0;
}
