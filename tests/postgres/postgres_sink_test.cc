// Issue 13: the PostgreSQL sink, end to end: the real kappa binary over the
// embedded broker writes a feature job's rows into a real PostgreSQL 15
// (the suite's server, or one of the test's own where the server is
// stopped mid-run). The rows equal the same job's JSON rows in a topic;
// a re-run leaves the table byte-identical; the database away at start is
// a clear error, away mid-run is waited out with nothing lost or doubled;
// a row the database refuses goes to the DLQ with its message; a table of
// another shape, and a state ahead of the database, are refused.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <functional>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "kafka/kafka_producer.h"
#include "schemas/dlq_record_generated.h"
#include "tests/postgres/pg_sink_util.h"

namespace kappa::testing {
namespace {

class PostgresSinkTest : public BrokerTest {
 protected:
  void SetUp() override {
    dsn_ = SuiteDsn();
    if (dsn_.empty()) GTEST_SKIP() << "no PostgreSQL: CTest starts one (fixture postgres)";
    BrokerTest::SetUp();
    auto pg = PgClient::Connect(dsn_);
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    pg_ = std::move(*pg);
  }

  // What an earlier run of the same test left in the suite's server (ctest
  // --repeat, --rerun-failed): the job's table and its committed offsets.
  void Forget(const std::string& job, const std::string& table) {
    ASSERT_TRUE(pg_->Exec("SET client_min_messages = warning; DROP TABLE IF EXISTS " + table +
                          "; DO $$ BEGIN IF to_regclass('kappa_offsets') IS NOT NULL THEN "
                          "DELETE FROM kappa_offsets WHERE job = '" + job + "'; END IF; END $$")
                    .ok());
  }

  // The workload in `topic` (4 partitions): 6,000 transactions over a few
  // hours of event time, with duplicates, late and malformed records.
  void Produce(const std::string& topic, uint64_t seed = 7, uint64_t count = 6000) {
    CreateTopic(topic, 4);
    GeneratorOptions gen = SmallWorkload(seed, count, 200);
    gen.duplicate_fraction = 0.02;
    gen.out_of_order_fraction = 0.05;
    ProduceWorkload(Config(), topic, gen);
  }

  SpecOptions Options(const std::string& job, const std::string& source, const ScratchDir& dir,
                      const std::string& state) {
    SpecOptions o;
    o.job = job;
    o.source = source;
    o.sink = job + "-out";
    o.state_dir = dir / state;
    o.checkpoint_interval = "200ms";
    return o;
  }

  int Run(const std::string& spec, std::string* err, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark",
                                     "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunKappa(args, nullptr, err);
  }

  // The same job's rows as JSON in a topic, by output key.
  TopicContents Reference(const std::string& job, const std::string& source, const ScratchDir& dir) {
    SpecOptions o = Options(job + "-ref", source, dir, "ref-state");
    CreateTopic(o.sink + ".v1", 4);
    std::string err;
    EXPECT_EQ(Run(FeatureSpec(dir, "ref", o, "{topic: " + o.sink + "}"), &err), 0) << err;
    return ReadOutputs(Config(), o.sink + ".v1");
  }

  // A story's start: job `job` over its own 8,000 records (`seed`), the
  // same job's rows in a topic (*reference), and the spec (returned) that
  // writes them into `table`_v1, which an earlier run may have left.
  std::string Story(const std::string& job, const std::string& table, uint64_t seed, const ScratchDir& dir,
                    TopicContents* reference) {
    Forget(job, table + "_v1");
    Produce(job + "-in", seed, 8000);
    *reference = Reference(job, job + "-in", dir);
    return FeatureSpec(dir, "pg", Options(job, job + "-in", dir, "state"), PostgresSinkValue(dsn_, table));
  }

  // Story, with the version's table made beforehand (`kappa schema`), so a
  // test can lock or watch it before the job starts.
  std::string StoryWithTable(const std::string& job, const std::string& table, uint64_t seed, const ScratchDir& dir,
                             TopicContents* reference) {
    const std::string spec = Story(job, table, seed, dir, reference);
    std::string ddl;
    EXPECT_EQ(RunKappa({"schema", spec}, &ddl), 0);
    EXPECT_TRUE(pg_->Exec(ddl).ok()) << ddl;
    return spec;
  }

  // Every reference row is in `table` with the same features, and nothing else.
  void ExpectTableEquals(const std::string& table, const TopicContents& reference) {
    auto rows = pg_->Exec("SELECT kappa_key, txns, spend, biggest, mean, kappa_version FROM " + table);
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(rows->rows.size(), reference.rows.size());
    for (const auto& r : rows->rows) {
      auto it = reference.rows.find(r[0]);
      ASSERT_NE(it, reference.rows.end()) << "row " << r[0] << " is not in the reference";
      const std::string& json = it->second.value;
      EXPECT_EQ(r[1], JsonNumber(json, "txns")) << r[0];
      EXPECT_EQ(r[2], JsonNumber(json, "spend")) << r[0];
      EXPECT_EQ(r[3], JsonNumber(json, "biggest")) << r[0];
      EXPECT_EQ(std::stod(r[4]), std::stod(JsonNumber(json, "mean"))) << r[0];
      EXPECT_EQ(r[5], "1");
    }
  }

  // The job paced at 2,000 records/s to its end (so a test can act while
  // it writes), once its first rows are in `table`.
  std::unique_ptr<ChildProcess> StartPaced(const std::string& spec, const std::string& name, const std::string& table) {
    auto job = std::make_unique<ChildProcess>(
        std::vector<std::string>{"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--max-rate",
                                 "2000", "--status-interval-ms", "0"},
        name);
    for (int i = 0; i < 300 && CountOf(*pg_, "SELECT count(*) FROM " + table) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return job;
  }

  std::string dsn_;
  std::unique_ptr<PgClient> pg_;
};

TEST_F(PostgresSinkTest, RowsEqualTheSameJobsRowsInATopicAndTheOffsetsAreCommittedBesideThem) {
  Forget("pgs-rows", "pgs_rows_v1");
  Produce("pgs-rows-in");
  ScratchDir dir("pg-rows");
  const TopicContents reference = Reference("pgs-rows", "pgs-rows-in", dir);
  ASSERT_GT(reference.rows.size(), 100u);
  std::string err;
  const SpecOptions o = Options("pgs-rows", "pgs-rows-in", dir, "state");
  ASSERT_EQ(Run(FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_rows")), &err), 0) << err;
  ExpectTableEquals("pgs_rows_v1", reference);
  // The input offsets in the same database: the log end of every partition.
  auto offsets = pg_->Exec("SELECT partition, next_offset FROM kappa_offsets WHERE job = 'pgs-rows' ORDER BY 1");
  ASSERT_TRUE(offsets.ok());
  ASSERT_EQ(offsets->rows.size(), 4u);
  int64_t total = 0;
  for (const auto& r : offsets->rows) total += std::stoll(r[1]);
  EXPECT_GE(total, 6000);
  // Lineage: every row names the partition and the offsets it came from.
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_rows_v1 WHERE kappa_first_offset > kappa_last_offset OR "
                          "kappa_partition NOT BETWEEN 0 AND 3"),
            0);
  // The password never reaches the output.
  const std::string password = dsn_.substr(dsn_.find("password=") + 9);
  EXPECT_EQ(err.find(password), std::string::npos) << err;
}

// A bug bash: `delivery: exactly_once` was accepted without a word, and
// the DLQ (written to Kafka before the database commits) repeated records
// after a crash. The job says what the mode gives with this sink.
TEST_F(PostgresSinkTest, ExactlyOnceSaysItsDeadLettersStayAtLeastOnce) {
  Forget("pgs-eos", "pgs_eos_v1");
  Produce("pgs-eos-in");
  ScratchDir dir("pg-eos");
  const TopicContents reference = Reference("pgs-eos", "pgs-eos-in", dir);
  SpecOptions o = Options("pgs-eos", "pgs-eos-in", dir, "state");
  o.delivery = "exactly_once";
  std::string err;
  ASSERT_EQ(Run(FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_eos")), &err), 0) << err;
  EXPECT_NE(err.find("WARNING delivery: exactly_once with a PostgreSQL sink: rows and input offsets commit in one "
                     "database transaction (exactly once), but DLQ and late records go to Kafka topics before it, at "
                     "least once"),
            std::string::npos)
      << err;
  ExpectTableEquals("pgs_eos_v1", reference);
  // At least once (the default) says nothing of it.
  o.delivery = "at_least_once";
  o.state_dir = dir / "state-alo";
  Forget("pgs-eos", "pgs_eos_v1");
  ASSERT_EQ(Run(FeatureSpec(dir, "pg-alo", o, PostgresSinkValue(dsn_, "pgs_eos")), &err), 0) << err;
  EXPECT_EQ(err.find("delivery: exactly_once"), std::string::npos) << err;
}

TEST_F(PostgresSinkTest, ARerunOfTheSameHistoryLeavesTheTableByteIdentical) {
  Forget("pgs-rerun", "pgs_rerun_v1");
  Produce("pgs-rerun-in");
  ScratchDir dir("pg-rerun");
  const SpecOptions o = Options("pgs-rerun", "pgs-rerun-in", dir, "state");
  const std::string spec = FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_rerun"));
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  const std::string first = DumpTable(*pg_, "pgs_rerun_v1");
  ASSERT_GT(first.size(), 1000u);
  // From scratch: the database's offsets say everything is there, so the
  // history is re-read with outputs suppressed.
  ASSERT_EQ(Run(spec, &err, {"--reset-state"}), 0) << err;
  EXPECT_NE(err.find("re-reading them with outputs suppressed"), std::string::npos) << err;
  EXPECT_EQ(DumpTable(*pg_, "pgs_rerun_v1"), first);
  // And with the offsets gone too: every row is written again, to the same bytes.
  ASSERT_TRUE(pg_->Exec("DELETE FROM kappa_offsets WHERE job = 'pgs-rerun'").ok());
  ASSERT_EQ(Run(spec, &err, {"--reset-state"}), 0) << err;
  EXPECT_EQ(DumpTable(*pg_, "pgs_rerun_v1"), first);
}

TEST_F(PostgresSinkTest, ADatabaseThatIsDownAtStartIsAClearErrorWithoutThePassword) {
  Produce("pgs-down-in", 7, 500);
  ScratchDir dir("pg-down");
  // A port nothing listens on.
  const std::string dsn = "host=127.0.0.1 port=1 dbname=postgres user=kappa password=hunter2secret";
  const SpecOptions o = Options("pgs-down", "pgs-down-in", dir, "state");
  std::string err;
  EXPECT_EQ(Run(FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn, "pgs_down")), &err), 1) << err;
  EXPECT_NE(err.find("Is the server running"), std::string::npos) << err;
  // Asked once: libpq's text asks it already (a bug bash saw it twice).
  EXPECT_EQ(err.find("is the server running"), std::string::npos) << err;
  EXPECT_NE(err.find("password=***"), std::string::npos) << err;
  EXPECT_EQ(err.find("hunter2secret"), std::string::npos) << err;
}

TEST_F(PostgresSinkTest, ADatabaseLostMidRunIsWaitedOutWithNothingLostOrDoubled) {
  Produce("pgs-lost-in", 8, 8000);
  ScratchDir dir("pg-lost");
  const TopicContents reference = Reference("pgs-lost", "pgs-lost-in", dir);
  // A server of this test's own, stopped and started again mid-run.
  const std::string script = std::string(KAPPA_SOURCE_DIR) + "/scripts/postgres.sh";
  const std::string own = dir / "server";
  const std::string start = RunShell("timeout 120 " + script + " start --dir " + own + " --owner " +
                                     std::to_string(getpid()) + " | tail -n 1");
  ASSERT_NE(start.find("host=127.0.0.1"), std::string::npos) << start;
  const std::string dsn = start.substr(0, start.find('\n'));
  const SpecOptions o = Options("pgs-lost", "pgs-lost-in", dir, "state");
  ChildProcess job({"run", FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn, "pgs_lost")), "-b", bootstrap(),
                    "--stop-at-end", "--final-watermark", "--max-rate", "1500", "--status-interval-ms", "500",
                    "--metrics-port", "0"},
                   "pg-lost");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  RunShell("timeout 60 " + script + " down --dir " + own);
  // The job waits and says so.
  bool warned = false;
  for (int i = 0; i < 100 && !warned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    warned = job.Stderr().find("PostgreSQL unreachable") != std::string::npos;
  }
  EXPECT_TRUE(warned) << job.Stderr();
  // While it waits it goes on saying so, once a status interval, and the
  // metrics say it too: the retries held the main thread, the status line
  // and /metrics stood still for the whole outage (a bug bash).
  const std::regex waiting("waiting ([0-9]+) s for PostgreSQL \\(unreachable\\)");
  auto longest_wait_said = [&] {
    const std::string err = job.Stderr();
    int64_t most = -1;
    for (std::sregex_iterator it(err.begin(), err.end(), waiting), end; it != end; ++it) {
      most = std::max<int64_t>(most, std::stoll((*it)[1].str()));
    }
    return most;
  };
  for (int i = 0; i < 100 && longest_wait_said() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GE(longest_wait_said(), 3) << "no status line saying how long the database has been away:\n" << job.Stderr();
  std::smatch url;
  const std::string err_now = job.Stderr();
  ASSERT_TRUE(std::regex_search(err_now, url, std::regex("metrics at (http://127\\.0\\.0\\.1:[0-9]+/metrics)")))
      << err_now;
  const std::string scraped = RunShell("timeout 10 curl -sf " + url[1].str());
  std::smatch gauge;
  ASSERT_TRUE(std::regex_search(scraped, gauge, std::regex("kappa_sink_waiting_seconds\\{[^}]*\\} ([0-9.]+)")))
      << scraped;
  EXPECT_GE(std::stod(gauge[1].str()), 2.0) << "what an alert on the outage reads:\n" << scraped;
  RunShell("timeout 60 " + script + " up --dir " + own);
  ASSERT_EQ(job.WaitFor(120000), 0) << job.Stderr();
  EXPECT_NE(job.Stderr().find("s after the server was unreachable"), std::string::npos) << job.Stderr();
  // Once it is back, the status lines no longer say it waits.
  const std::string all = job.Stderr();
  const size_t back = all.rfind("committed after");
  if (back != std::string::npos) {
    EXPECT_EQ(all.find("for PostgreSQL (", back), std::string::npos) << all.substr(back);
  }
  auto pg = PgClient::Connect(dsn);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  std::swap(pg_, *pg);
  ExpectTableEquals("pgs_lost_v1", reference);
  RunShell("timeout 60 " + script + " stop --dir " + own);
}

// A bug bash: a session holding a lock on the version's table (LOCK TABLE
// here; an ALTER, a VACUUM FULL, a transaction left open) hung the job with
// no word, and a SIGTERM waited for the lock too. The sink now waits 5 s per
// attempt, warns naming the holder, honours a stop between attempts, and a
// restart after the lock is gone completes the table.
TEST_F(PostgresSinkTest, ALockOnTheTableIsWaitedOutNamingItsHolderAndAStopIsHonoured) {
  ScratchDir dir("pg-lock");
  TopicContents reference;
  const std::string spec = StoryWithTable("pgs-lock", "pgs_lock", 9, dir, &reference);
  ASSERT_FALSE(HasFailure());
  auto locker = PgClient::Connect(dsn_);
  ASSERT_TRUE(locker.ok()) << locker.status().ToString();
  auto pid = (*locker)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok());
  // Locked before the start: a clear refusal naming the holder, at once.
  ASSERT_TRUE((*locker)->Exec("BEGIN; LOCK TABLE pgs_lock_v1 IN ACCESS EXCLUSIVE MODE").ok());
  std::string refused;
  EXPECT_EQ(Run(spec, &refused), 1);
  EXPECT_NE(refused.find("pgs_lock_v1 is locked by pid " + pid->rows[0][0] + " (user kappa, idle in transaction: "),
            std::string::npos)
      << refused;
  EXPECT_NE(refused.find("start the job again once that lock is released"), std::string::npos) << refused;
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  // Locked while it runs: waited out.
  auto started = StartPaced(spec, "pg-lock", "pgs_lock_v1");
  ChildProcess& job = *started;
  ASSERT_TRUE((*locker)->Exec("BEGIN; LOCK TABLE pgs_lock_v1 IN ACCESS EXCLUSIVE MODE").ok());
  const int64_t committed = CountOf(*pg_, "SELECT count(*) FROM kappa_offsets WHERE job = 'pgs-lock'");
  bool warned = false;
  for (int i = 0; i < 300 && !warned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    warned = job.Stderr().find("waiting for a lock on pgs_lock_v1 or kappa_offsets held by pid " + pid->rows[0][0] +
                               " (user kappa, idle in transaction: ") != std::string::npos;
  }
  EXPECT_TRUE(warned) << job.Stderr();
  const auto asked = std::chrono::steady_clock::now();
  job.Kill(SIGTERM);
  EXPECT_NE(job.WaitFor(20000), -1) << "still waiting for the lock 20 s after SIGTERM:\n" << job.Stderr();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(20));
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM kappa_offsets WHERE job = 'pgs-lock'"), committed);
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_lock_v1", reference);
}

// A bug bash: the job's database session stopped answering (its backend
// stopped; a hung server or a network path lost without a reset is the
// same to the client): the job waited in poll() for good, said nothing,
// its waiting gauge stayed 0, and a SIGTERM could not end it. It says so
// every 10 s, a stop gives the statement up with the last checkpoint
// intact, and a restart once the server answers again ends equal to the
// reference.
TEST_F(PostgresSinkTest, AServerThatStopsAnsweringIsSaidAndAStopGivesItUp) {
  if (::geteuid() != 0) GTEST_SKIP() << "stopping the job's PostgreSQL backend needs root";
  ScratchDir dir("pg-hang");
  TopicContents reference;
  const std::string spec = StoryWithTable("pgs-hang", "pgs_hang", 13, dir, &reference);
  ASSERT_FALSE(HasFailure());
  auto started = StartPaced(spec, "pg-hang", "pgs_hang_v1");
  ChildProcess& job = *started;
  std::string backend;
  for (int i = 0; i < 300 && backend.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto pid = pg_->Exec("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'kappa pgs-hang%'");
    if (pid.ok() && pid->rows.size() == 1) backend = pid->rows[0][0];
  }
  ASSERT_FALSE(backend.empty()) << job.Stderr();
  // Whatever happens below, the backend runs again before the test ends.
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{static_cast<pid_t>(std::stoi(backend))};
  ASSERT_EQ(::kill(resume.pid, SIGSTOP), 0);
  bool said = false;
  for (int i = 0; i < 400 && !said; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    said = job.Stderr().find("has not answered a statement for 10 s") != std::string::npos;
  }
  EXPECT_TRUE(said) << job.Stderr();
  const auto asked = std::chrono::steady_clock::now();
  job.Kill(SIGTERM);
  const int rc = job.WaitFor(20000);
  EXPECT_NE(rc, -1) << "still waiting 20 s after SIGTERM:\n" << job.Stderr();
  EXPECT_NE(rc, 0) << job.Stderr();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(20));
  ::kill(resume.pid, SIGCONT);
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_hang_v1", reference);
}

// A bug bash: a statement_timeout on the job's role (here in the DSN's
// options, which sets it for the session the same way) shorter than an
// epoch's COPY failed the job at every restart, for good, blamed on "a
// row". The job's own session does not take it.
TEST_F(PostgresSinkTest, AStatementTimeoutOfTheRoleDoesNotBoundTheJobsOwnStatements) {
  ScratchDir dir("pg-stimeout");
  TopicContents reference;
  Forget("pgs-stimeout", "pgs_stimeout_v1");
  Produce("pgs-stimeout-in", 17, 8000);
  reference = Reference("pgs-stimeout", "pgs-stimeout-in", dir);
  const std::string spec =
      FeatureSpec(dir, "pg", Options("pgs-stimeout", "pgs-stimeout-in", dir, "state"),
                  PostgresSinkValue(dsn_ + " options='-c statement_timeout=1'", "pgs_stimeout"));
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_stimeout_v1", reference);
}

// A bug bash: a column NOT NULL without a default, added to the version's
// table while the job ran (refused at a start), sent every row of each epoch
// to the DLQ as SinkRejected, and a restart did not write them again. The
// job stops, the epoch uncommitted, naming the column; once the column is
// mended a restart ends equal to the reference.
TEST_F(PostgresSinkTest, ANotNullColumnAddedWhileTheJobRunsStopsItRatherThanDeadLetteringEveryRow) {
  ScratchDir dir("pg-notnull");
  TopicContents reference;
  const std::string spec = StoryWithTable("pgs-notnull", "pgs_notnull", 19, dir, &reference);
  ASSERT_FALSE(HasFailure());
  auto started = StartPaced(spec, "pg-notnull", "pgs_notnull_v1");
  ChildProcess& job = *started;
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_notnull_v1 ADD COLUMN owner_note text NOT NULL DEFAULT 'x'; "
                        "ALTER TABLE pgs_notnull_v1 ALTER COLUMN owner_note DROP DEFAULT")
                  .ok());
  const int rc = job.WaitFor(60000);
  ASSERT_NE(rc, -1) << job.Stderr();
  EXPECT_EQ(rc, 1) << job.Stderr();
  EXPECT_NE(job.Stderr().find("has a column `owner_note` NOT NULL without a default now"), std::string::npos)
      << job.Stderr();
  EXPECT_EQ(job.Stderr().find("they went to"), std::string::npos) << "rows dead-lettered:\n" << job.Stderr();
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_notnull_v1 DROP COLUMN owner_note").ok());
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_notnull_v1", reference);
}

// A bug bash: a lock on kappa_offsets mid-run was reported as "waiting for
// a lock on <the version's table> held by another session (see pg_locks)".
// Its holder is named. (kappa_offsets of a schema of its own: the suite's
// is shared.)
TEST_F(PostgresSinkTest, ALockOnKappaOffsetsIsNamedAndWaitedOutWithoutARestart) {
  ASSERT_TRUE(pg_->Exec("SET client_min_messages = warning; DROP SCHEMA IF EXISTS pgsoff CASCADE; CREATE SCHEMA pgsoff")
                  .ok());
  ScratchDir dir("pg-offlock");
  TopicContents reference;
  const std::string spec = StoryWithTable("pgs-offlock", "pgsoff.pgs_offlock", 23, dir, &reference);
  ASSERT_FALSE(HasFailure());
  auto started = StartPaced(spec, "pg-offlock", "pgsoff.pgs_offlock_v1");
  ChildProcess& job = *started;
  auto locker = PgClient::Connect(dsn_);
  ASSERT_TRUE(locker.ok());
  auto pid = (*locker)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE((*locker)->Exec("BEGIN; LOCK TABLE pgsoff.kappa_offsets IN ACCESS EXCLUSIVE MODE").ok());
  bool named = false;
  for (int i = 0; i < 300 && !named; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    named = job.Stderr().find("or kappa_offsets held by pid " + pid->rows[0][0]) != std::string::npos;
  }
  EXPECT_TRUE(named) << job.Stderr();
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  ASSERT_EQ(job.WaitFor(120000), 0) << job.Stderr();
  ExpectTableEquals("pgsoff.pgs_offlock_v1", reference);
  (void)pg_->Exec("SET client_min_messages = warning; DROP SCHEMA IF EXISTS pgsoff CASCADE");
}

// A bug bash: a lock held past two attempts (an ALTER TABLE in a migration
// left open 12 s) stopped the job: the retry reconnects, and making its
// temporary table from the version's table waits for the lock too; that
// wait's timeout was read as final. It is retried like the upsert's, and
// the job finishes once the lock is gone.
TEST_F(PostgresSinkTest, ALockHeldAcrossAttemptsIsWaitedOutToTheEnd) {
  ScratchDir dir("pg-long-lock");
  TopicContents reference;
  const std::string spec = StoryWithTable("pgs-long-lock", "pgs_long_lock", 18, dir, &reference);
  ASSERT_FALSE(HasFailure());
  auto started = StartPaced(spec, "pg-long-lock", "pgs_long_lock_v1");
  ChildProcess& job = *started;
  auto locker = PgClient::Connect(dsn_);
  ASSERT_TRUE(locker.ok()) << locker.status().ToString();
  ASSERT_TRUE((*locker)->Exec("BEGIN; LOCK TABLE pgs_long_lock_v1 IN ACCESS EXCLUSIVE MODE").ok());
  // Three lock timeouts (5 s each) and their reconnections.
  std::this_thread::sleep_for(std::chrono::seconds(16));
  EXPECT_EQ(job.WaitFor(0), -1) << "the job gave up on the lock:\n" << job.Stderr();
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  ASSERT_EQ(job.WaitFor(120000), 0) << job.Stderr();
  // What was waited for: "is back" read as if the server had been away (a bug bash).
  EXPECT_NE(job.Stderr().find(" s of waiting for the lock"), std::string::npos) << job.Stderr();
  EXPECT_EQ(job.Stderr().find("is back"), std::string::npos) << job.Stderr();
  // The reconnections' lock waits are retried, not "start the job again"
  // (a bug bash: a user restarted a job that then committed alone).
  EXPECT_EQ(job.Stderr().find("start the job again"), std::string::npos) << job.Stderr();
  ExpectTableEquals("pgs_long_lock_v1", reference);
}

// A bug bash: deploy and replay with --scale-out and a PostgreSQL sink
// registered the version and made its table and the serving view before
// the runtime refused the combination; the refusal comes first now.
TEST_F(PostgresSinkTest, ScaleOutWithAPostgresSinkIsRefusedBeforeAnythingIsMade) {
  Forget("pgs-so", "pgs_so_v1");
  Produce("pgs-so-in", 19, 200);
  ScratchDir dir("pg-so");
  const std::string spec =
      FeatureSpec(dir, "pg", Options("pgs-so", "pgs-so-in", dir, "state"), PostgresSinkValue(dsn_, "pgs_so"));
  for (const char* command : {"deploy", "replay", "run"}) {
    std::string err;
    EXPECT_NE(RunKappa({command, spec, "-b", bootstrap(), "--scale-out", "--status-interval-ms", "0"}, nullptr, &err),
              0)
        << command;
    EXPECT_NE(err.find("scale_out with a PostgreSQL sink is not supported yet"), std::string::npos) << err;
    EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pg_class WHERE relname IN ('pgs_so', 'pgs_so_v1')"), 0) << command;
  }
  std::string status;
  RunKappa({"status", "-b", bootstrap()}, &status, nullptr);
  EXPECT_EQ(status.find("pgs-so"), std::string::npos) << status;
}

// A bug bash: two jobs given one table made beforehand (no comment of
// kappa's naming its job) overwrote each other's rows in silence. The
// second is refused, naming the first; the first's rows stay its own.
TEST_F(PostgresSinkTest, TwoJobsOnOneTableMadeBeforehandAreRefused) {
  Forget("pgs-share-a", "pgs_shared_v1");
  Forget("pgs-share-b", "pgs_shared_v1");
  Produce("pgs-share-in", 20, 600);
  ScratchDir dir("pg-share");
  const std::string a = FeatureSpec(dir, "a", Options("pgs-share-a", "pgs-share-in", dir, "state-a"),
                                    PostgresSinkValue(dsn_, "pgs_shared"));
  const std::string b = FeatureSpec(dir, "b", Options("pgs-share-b", "pgs-share-in", dir, "state-b"),
                                    PostgresSinkValue(dsn_, "public.pgs_shared"));
  std::string ddl, err;
  ASSERT_EQ(RunKappa({"schema", a}, &ddl), 0);
  ASSERT_TRUE(pg_->Exec(ddl).ok());
  ASSERT_EQ(Run(a, &err), 0) << err;
  const std::string before = DumpTable(*pg_, "pgs_shared_v1");
  EXPECT_EQ(Run(b, &err), 1) << err;
  EXPECT_NE(err.find("holds rows of job pgs-share-a"), std::string::npos) << err;
  EXPECT_EQ(DumpTable(*pg_, "pgs_shared_v1"), before);
  ASSERT_EQ(Run(a, &err), 0) << "its own job goes on: " << err;
}

// A bug bash: a second process of the same version (another state dir) ran
// beside the first in silence, moved kappa_offsets back to its own position,
// and the first's restart was then refused as "rows missing". The second is
// now refused, naming the first's session; the first finishes unharmed.
TEST_F(PostgresSinkTest, ASecondProcessOfTheSameVersionIsRefused) {
  ScratchDir dir("pg-twin");
  TopicContents reference;
  const std::string spec = Story("pgs-twin", "pgs_twin", 10, dir, &reference);
  ChildProcess first({"run", spec, "-b", bootstrap(), "--max-rate", "2000", "--status-interval-ms", "0"}, "pg-twin");
  // Until the first one writes (its session names itself).
  for (int i = 0; i < 300 && CountOf(*pg_, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                           "'kappa pgs-twin v1'") == 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string err;
  EXPECT_EQ(Run(spec, &err, {"--state-dir", dir / "state-twin"}), 1) << err;
  EXPECT_NE(err.find("another process writes pgs-twin v1 to pgs_twin_v1 (PostgreSQL session pid "), std::string::npos)
      << err;
  EXPECT_EQ(first.WaitFor(0), -1) << "the first one stopped: " << first.Stderr();
  first.Kill(SIGTERM);
  ASSERT_EQ(first.WaitFor(30000), 0) << first.Stderr();
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_twin_v1", reference);
}

// A bug bash: an idle job (all input read) whose session the server
// dropped (a restart; here pg_terminate_backend) no longer held its writer
// lock, so a second process of the version was accepted, and the first
// then stopped as "another process writes". The idle job makes its
// session again, with the lock: the second is refused, the first runs on.
TEST_F(PostgresSinkTest, AnIdleJobTakesItsWriterLockAgainAfterItsSessionWasDropped) {
  ScratchDir dir("pg-idle");
  TopicContents reference;
  const std::string spec = Story("pgs-idle", "pgs_idle", 29, dir, &reference);
  ChildProcess first({"run", spec, "-b", bootstrap(), "--status-interval-ms", "0"}, "pg-idle");
  const std::string session = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kappa pgs-idle v1'";
  for (int i = 0; i < 300 && CountOf(*pg_, session) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // All 8,000 records read, the job idle.
  for (int i = 0; i < 600 && CountOf(*pg_, "SELECT coalesce(sum(next_offset), 0) FROM kappa_offsets WHERE job = "
                                           "'pgs-idle'") < 8000;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(CountOf(*pg_, session), 1) << first.Stderr();
  ASSERT_TRUE(pg_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                        "'kappa pgs-idle v1'")
                  .ok());
  // Within a few of its idle checks (every 5 s) the session is back.
  bool back = false;
  for (int i = 0; i < 200 && !back; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    back = CountOf(*pg_, session) == 1;
  }
  ASSERT_TRUE(back) << first.Stderr();
  std::string err;
  EXPECT_EQ(Run(spec, &err, {"--state-dir", dir / "state-twin"}), 1) << err;
  EXPECT_NE(err.find("another process writes pgs-idle v1"), std::string::npos) << err;
  EXPECT_EQ(first.WaitFor(0), -1) << "the first one stopped: " << first.Stderr();
  first.Kill(SIGTERM);
  ASSERT_EQ(first.WaitFor(30000), 0) << first.Stderr();
  ASSERT_EQ(Run(spec, &err), 0) << err;  // its last windows closed
  ExpectTableEquals("pgs_idle_v1", reference);
}

// `kappa run` of a second job given the first one's table (here spelled
// `public.<table>`, one table to PostgreSQL) upserted its rows into it:
// 1669 of the first job's rows changed (a bug bash). The table kappa
// creates names its job in its comment; another job is refused before it
// writes anything, and the first job's rows stay as they were.
TEST_F(PostgresSinkTest, AnotherJobIsRefusedTheTableAJobCreated) {
  ScratchDir dir("pg-other-job");
  TopicContents reference;
  const std::string spec = Story("pgs-owner", "pgs_owner", 12, dir, &reference);
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_owner_v1", reference);
  Forget("pgs-intruder", "pgs_intruder_unused");
  Produce("pgs-intruder-in", 13, 2000);
  for (const std::string& table : {std::string("pgs_owner"), std::string("public.pgs_owner")}) {
    const std::string other = FeatureSpec(dir, "intruder", Options("pgs-intruder", "pgs-intruder-in", dir, "intruder"),
                                          PostgresSinkValue(dsn_, table));
    EXPECT_EQ(Run(other, &err), 1) << err;
    EXPECT_NE(err.find("PostgreSQL table " + table + "_v1 is written by job pgs-owner (its comment"),
              std::string::npos)
        << err;
    std::filesystem::remove_all(dir / "intruder");
  }
  ExpectTableEquals("pgs_owner_v1", reference);
  // The job itself goes on writing it.
  ASSERT_EQ(Run(spec, &err), 0) << err;

  // A table `kappa deploy` made (before its sink, with the serving view) had
  // no comment, so this check had nothing to read (a bug bash).
  Forget("pgs-deployed", "pgs_deployed_v1");
  Produce("pgs-deployed-in", 14, 300);
  const std::string deployed = FeatureSpec(dir, "deployed", Options("pgs-deployed", "pgs-deployed-in", dir, "dep"),
                                           PostgresSinkValue(dsn_, "pgs_deployed"));
  ASSERT_EQ(RunKappa({"deploy", deployed, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr,
                     &err),
            0)
      << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pg_class WHERE oid = 'pgs_deployed_v1'::regclass AND "
                          "obj_description(oid, 'pg_class') = 'kappa: written by job pgs-deployed'"),
            1);
}

TEST_F(PostgresSinkTest, ARowTheDatabaseRefusesGoesToTheDlqWithItsMessage) {
  Forget("pgs-check", "pgs_check_v1");
  Produce("pgs-check-in");
  ScratchDir dir("pg-check");
  const TopicContents reference = Reference("pgs-check", "pgs-check-in", dir);
  int64_t big = 0;
  for (const auto& [key, row] : reference.rows) big += std::stoll(JsonNumber(row.value, "spend")) >= 300000;
  ASSERT_GT(big, 0);
  ASSERT_LT(big, static_cast<int64_t>(reference.rows.size()));
  // The table made beforehand, with a constraint of the team's own.
  const SpecOptions o = Options("pgs-check", "pgs-check-in", dir, "state");
  const std::string spec = FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_check"));
  std::string ddl;
  ASSERT_EQ(RunKappa({"schema", spec}, &ddl), 0);
  ASSERT_TRUE(pg_->Exec(ddl).ok());
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_check_v1 ADD CONSTRAINT spend_below_3000 CHECK (spend < 300000)").ok());
  CreateTopic("pgs-check.dlq", 1);
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                     &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("PostgreSQL refused"), std::string::npos) << err;
  // The summary counts them (it said "dlq 0" and all the outputs).
  EXPECT_NE(out.find("PostgreSQL refused " + std::to_string(big) + " rows this run: they are in pgs-check.dlq as "
                     "SinkRejected"),
            std::string::npos)
      << out;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_check_v1"), static_cast<int64_t>(reference.rows.size()) - big);
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_check_v1 WHERE spend >= 300000"), 0);
  // Each refused row is in the DLQ, with the database's message.
  std::set<std::string> refused;
  auto st = ReadTopic(Config(), "pgs-check.dlq", [&](const ConsumedRecord& r) {
    const std::string bytes(r.value);  // aligned, as FlatBuffers wants (the consumer's buffer need not be)
    auto* d = schema::GetDlqRecord(bytes.data());
    if (d->error_type() != schema::DlqErrorType::SinkRejected) return;
    refused.insert(std::string(r.key));
    EXPECT_NE(d->error_message()->str().find("spend_below_3000"), std::string::npos) << d->error_message()->str();
    EXPECT_NE(d->error_message()->str().find("23514"), std::string::npos) << d->error_message()->str();
  });
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(static_cast<int64_t>(refused.size()), big);
  for (const auto& key : refused) {
    EXPECT_GE(std::stoll(JsonNumber(reference.rows.at(key).value, "spend")), 300000) << key;
  }
  // The metrics file counts them too (only the summary did), and keeps
  // counting them after a restart: kappa_offsets holds the count, committed
  // with the offsets past them (a retried epoch is not counted twice).
  EXPECT_EQ(MetricsField(ReadFile(o.state_dir + "/metrics.json"), "sink_rejected"), big);
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, &out, &err), 0)
      << err;
  EXPECT_EQ(out.find("PostgreSQL refused"), std::string::npos) << "none this run: " << out;
  EXPECT_EQ(MetricsField(ReadFile(o.state_dir + "/metrics.json"), "sink_rejected"), big);
  EXPECT_EQ(CountOf(*pg_, "SELECT sum(rejected) FROM kappa_offsets WHERE job = 'pgs-check'"), big);
  // `kappa dlq replay` leaves them: they are output rows, not source
  // records (re-injected, each came back as an Undecodable source record).
  ASSERT_EQ(RunKappa({"dlq", "replay", "pgs-check.dlq", "--to", "pgs-check-in", "-b", bootstrap(), "--error-type",
                      "SinkRejected"},
                     &out, &err),
            0)
      << err;
  EXPECT_NE(out.find(": 0 records re-injected"), std::string::npos) << out;
  EXPECT_NE(err.find("left " + std::to_string(big) + " SinkRejected records"), std::string::npos) << err;
}

// A kappa_offsets made by a kappa before it counted refused rows there
// gains the column at the next start, and the job writes as before.
TEST_F(PostgresSinkTest, AnOlderKappaOffsetsTableGainsTheRefusedCount) {
  ScratchDir dir("pg-old-offsets");
  TopicContents reference;
  std::string spec = Story("pgs-old", "pgs_old.t", 12, dir, &reference);
  ASSERT_TRUE(pg_->Exec("DROP SCHEMA IF EXISTS pgs_old CASCADE; CREATE SCHEMA pgs_old; "
                        "CREATE TABLE pgs_old.kappa_offsets (job text NOT NULL, version integer NOT NULL, "
                        "partition integer NOT NULL, next_offset bigint NOT NULL, epoch bigint NOT NULL, "
                        "spec_hash text NOT NULL, PRIMARY KEY (job, version, partition)); "
                        "INSERT INTO pgs_old.kappa_offsets VALUES ('other', 1, 0, 5, 1, 'x')")
                  .ok());
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_old.t_v1", reference);
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_old.kappa_offsets WHERE rejected = 0"), 5)
      << "the other job's row and this job's four partitions";
}

TEST_F(PostgresSinkTest, ATableOfAnotherShapeIsRefusedNamingTheColumn) {
  Forget("pgs-shape", "pgs_shape_v1");
  Produce("pgs-shape-in", 7, 300);
  ScratchDir dir("pg-shape");
  ASSERT_TRUE(pg_->Exec("CREATE TABLE pgs_shape_v1 (kappa_key text PRIMARY KEY, key text, spend text)").ok());
  const SpecOptions o = Options("pgs-shape", "pgs-shape-in", dir, "state");
  std::string err;
  EXPECT_EQ(Run(FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_shape")), &err), 1) << err;
  EXPECT_NE(err.find("does not fit this spec"), std::string::npos) << err;
  EXPECT_NE(err.find("`window_start` is missing"), std::string::npos) << err;
  // The spec's columns and one of the team's own, NOT NULL without a
  // default: every row would be refused (a bug bash: 427 of 427 went to the
  // DLQ, and the run exited 0). Refused at the start, naming the column.
  const std::string spec = FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_shape"));
  std::string ddl;
  ASSERT_EQ(RunKappa({"schema", spec}, &ddl), 0);
  ASSERT_TRUE(pg_->Exec("DROP TABLE pgs_shape_v1; " + ddl + "; ALTER TABLE pgs_shape_v1 ADD COLUMN region text NOT NULL").ok());
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("column `region` NOT NULL without a default"), std::string::npos) << err;
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_shape_v1 ALTER COLUMN region SET DEFAULT 'eu'").ok());
  EXPECT_EQ(Run(spec, &err), 0) << err;
}

TEST_F(PostgresSinkTest, AStateAheadOfTheDatabaseIsRefusedAndResetStateRebuildsIt) {
  Forget("pgs-ahead", "pgs_ahead_v1");
  Produce("pgs-ahead-in");
  ScratchDir dir("pg-ahead");
  const TopicContents reference = Reference("pgs-ahead", "pgs-ahead-in", dir);
  const SpecOptions o = Options("pgs-ahead", "pgs-ahead-in", dir, "state");
  const std::string spec = FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_ahead"));
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  // The database "restored from a backup" of before the run.
  ASSERT_TRUE(pg_->Exec("DELETE FROM kappa_offsets WHERE job = 'pgs-ahead'; DELETE FROM pgs_ahead_v1").ok());
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("--reset-state"), std::string::npos) << err;
  EXPECT_NE(err.find("missing from pgs_ahead_v1"), std::string::npos) << err;
  ASSERT_EQ(Run(spec, &err, {"--reset-state"}), 0) << err;
  ExpectTableEquals("pgs_ahead_v1", reference);
}

// A job over JSON records of `keys` users, one hour of event time, whose
// window rows go to `table` (kappa creates it): `extra` more records first.
std::string JsonStory(const ScratchDir& dir, const std::string& name, const std::string& dsn, const std::string& table,
                      int keys, const std::vector<std::string>& extra, const std::function<void(const std::string&, const std::string&)>& produce) {
  for (const std::string& json : extra) produce(name + "-in", json);
  for (int i = 0; i < keys; ++i) {
    produce(name + "-in", R"({"user_id":"u)" + std::to_string(i) + R"(","t":)" +
                              std::to_string(1767225600000 + i) + R"(,"price":)" + std::to_string(i) + "}");
  }
  std::string path = WriteJsonJobSpec(dir, name, "{user_id: string, price: int64, t: timestamp}",
                                      "  - window: {type: tumbling, size: 1h, key: user_id, features: {n: count, "
                                      "s: sum(price)}}\n");
  std::string text = ReadFile(path);
  const std::string old_sink = "sink: {topic: " + name + "-out}";
  text.replace(text.find(old_sink), old_sink.size(), "sink: " + PostgresSinkValue(dsn, table));
  std::ofstream(path) << text;
  return path;
}

// A row the database refuses for its size (a window key past what the
// primary key's index holds, SQLSTATE 54000) goes to the DLQ like any other
// refused row; the job used to stop at it on every start. The refused row
// is found among 3,000 by halves (one at a time, with a DELETE after each,
// took minutes for such an epoch).
TEST_F(PostgresSinkTest, ARowTooLargeForTheKeysIndexGoesToTheDlqAndTheRestIsWritten) {
  Forget("pgs-long", "pgs_long_v1");
  for (const char* t : {"pgs-long-in", "pgs-long.dlq", "pgs-long.late"}) CreateTopic(t, 1);
  auto producer = KafkaProducer::Create(Config(), ProducerOptions{});
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  // Letters that do not compress (PostgreSQL compresses an index entry
  // before it measures it).
  std::string long_user;
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 4000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    long_user += static_cast<char>('a' + x % 26);
  }
  ScratchDir dir("pg-long");
  const std::string spec = JsonStory(
      dir, "pgs-long", dsn_, "pgs_long", 3000,
      {R"({"user_id":")" + long_user + R"(","t":1767225600500,"price":1})"},
      [&](const std::string& topic, const std::string& json) { ASSERT_TRUE((*producer)->Produce(topic, 0, "k", json).ok()); });
  ASSERT_TRUE((*producer)->CloseEpoch(30000)(nullptr).ok());
  std::string out, err;
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--final-watermark", "--status-interval-ms", "0"},
                     &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("PostgreSQL refused 1 of 3001 rows"), std::string::npos) << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_long_v1"), 3000);
  int refused = 0;
  auto st = ReadTopic(Config(), "pgs-long.dlq", [&](const ConsumedRecord& r) {
    const std::string bytes(r.value);
    auto* d = schema::GetDlqRecord(bytes.data());
    EXPECT_EQ(d->error_type(), schema::DlqErrorType::SinkRejected);
    EXPECT_NE(d->error_message()->str().find("54000"), std::string::npos) << d->error_message()->str();
    EXPECT_EQ(std::string(r.key).substr(0, long_user.size()), long_user);
    ++refused;
  });
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(refused, 1);
}

// The version's table dropped while kappa_offsets says rows were committed
// to it: a restart refuses, naming the way to write it again (it created an
// empty table and said "stopped cleanly", and --reset-state wrote nothing,
// since the offsets said every row was there).
TEST_F(PostgresSinkTest, ADroppedTableIsRefusedNotMadeAgainEmpty) {
  ScratchDir dir("pg-dropped");
  TopicContents reference;
  const std::string spec = Story("pgs-dropped", "pgs_dropped", 15, dir, &reference);
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ASSERT_TRUE(pg_->Exec("DROP TABLE pgs_dropped_v1").ok());
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("pgs_dropped_v1 does not exist, but \"kappa_offsets\" says pgs-dropped v1 committed rows to it"),
            std::string::npos)
      << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pg_class WHERE relname = 'pgs_dropped_v1'"), 0) << "not made again";
  // What the message says to do writes it again.
  const std::string advice = "DELETE FROM \"kappa_offsets\" WHERE job = 'pgs-dropped' AND version = 1";
  ASSERT_NE(err.find(advice), std::string::npos) << err;
  ASSERT_TRUE(pg_->Exec(advice).ok());
  ASSERT_EQ(Run(spec, &err, {"--reset-state"}), 0) << err;
  ExpectTableEquals("pgs_dropped_v1", reference);
}

// A bug bash: the spec changed to another table under the same job and
// version was told the table had been dropped, and to delete the offsets
// (the other table's record) and --reset-state. It is a changed spec.
TEST_F(PostgresSinkTest, AnotherTableUnderTheSameVersionIsAChangedSpecNotADroppedTable) {
  ScratchDir dir("pg-retabled");
  TopicContents reference;
  const std::string spec = Story("pgs-retabled", "pgs_retabled", 16, dir, &reference);
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  std::string text = ReadFile(spec);
  const size_t at = text.find("table: pgs_retabled");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, std::string("table: pgs_retabled").size(), "table: pgs_retabled_new");
  const std::string changed = dir / "changed.yaml";
  std::ofstream(changed) << text;
  // The state belongs to the first spec: a new state (--reset-state, or
  // another state directory) meets the database's record of it.
  EXPECT_EQ(Run(changed, &err, {"--reset-state"}), 1) << err;
  EXPECT_NE(err.find("\"kappa_offsets\" holds offsets of pgs-retabled v1 committed by spec "), std::string::npos) << err;
  EXPECT_NE(err.find("(writing another table, pgs_retabled_new_v1, which does not exist): a changed spec needs a new "
                     "version"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("was dropped"), std::string::npos) << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM pg_class WHERE relname = 'pgs_retabled_new_v1'"), 0);
  ExpectTableEquals("pgs_retabled_v1", reference);
}

// The version's table emptied (TRUNCATE) with its kappa_offsets kept: the
// restart resumed into the empty table and said nothing, and --reset-state
// re-read the history with its rows suppressed (a bug bash). Both are
// refused; what the message says to do writes the table again.
TEST_F(PostgresSinkTest, AnEmptiedTableIsRefusedNotResumedInto) {
  ScratchDir dir("pg-emptied");
  TopicContents reference;
  const std::string spec = Story("pgs-emptied", "pgs_emptied", 16, dir, &reference);
  std::string err;
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ASSERT_TRUE(pg_->Exec("TRUNCATE pgs_emptied_v1").ok());
  for (const std::vector<std::string>& extra : {std::vector<std::string>{}, std::vector<std::string>{"--reset-state"}}) {
    EXPECT_EQ(Run(spec, &err, extra), 1) << err;
    EXPECT_NE(err.find("PostgreSQL table pgs_emptied_v1 is empty, but \"kappa_offsets\" says pgs-emptied v1 committed "
                       "rows to it"),
              std::string::npos)
        << err;
  }
  const std::string advice = "DELETE FROM \"kappa_offsets\" WHERE job = 'pgs-emptied' AND version = 1";
  ASSERT_NE(err.find(advice), std::string::npos) << err;
  ASSERT_TRUE(pg_->Exec(advice).ok());
  ASSERT_EQ(Run(spec, &err, {"--reset-state"}), 0) << err;
  ExpectTableEquals("pgs_emptied_v1", reference);
}

// A version that has committed offsets but no row yet (its first hour of
// hourly windows) is not a table emptied by hand: killed between its first
// database commit and its first checkpoint, it starts again without state
// (as --reset-state does) and resumes; it was refused as "emptied
// (TRUNCATE?)" (a bug bash). The table ends equal to an uninterrupted run's.
TEST_F(PostgresSinkTest, OffsetsCommittedBeforeAnyRowAreNotReadAsAnEmptiedTable) {
  ScratchDir dir("pg-no-row-yet");
  TopicContents reference;
  const std::string spec = Story("pgs-no-row", "pgs_no_row", 17, dir, &reference);
  std::string err;
  // ~40 records (40 s of event time) in the first 200 ms epoch: no window
  // closes in it, and the kill ends it after its database commit.
  setenv("KAPPA_TEST_KILL_AT", "after-flush:1", 1);
  const int killed = RunKappa({"run", spec, "-b", bootstrap(), "--status-interval-ms", "0", "--max-rate", "200"},
                              nullptr, &err);
  unsetenv("KAPPA_TEST_KILL_AT");
  ASSERT_EQ(killed, 128 + SIGKILL) << err;
  ASSERT_GT(CountOf(*pg_, "SELECT count(*) FROM kappa_offsets WHERE job = 'pgs-no-row' AND next_offset > 0"), 0);
  ASSERT_EQ(CountOf(*pg_, "SELECT count(*) FROM pgs_no_row_v1"), 0);
  // No checkpoint was written: the restart starts without state, as
  // --reset-state does, and re-reads what the database committed.
  ASSERT_EQ(Run(spec, &err), 0) << err;
  ExpectTableEquals("pgs_no_row_v1", reference);
  // A table emptied by hand is still refused.
  ASSERT_TRUE(pg_->Exec("TRUNCATE pgs_no_row_v1").ok());
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("PostgreSQL table pgs_no_row_v1 is empty"), std::string::npos) << err;
}

// Tables made beforehand: without a unique index on kappa_key the upsert
// cannot run (refused at the start now, not at the first commit); an
// identity column of the team's own is fine (it was refused as NOT NULL
// without a default); and a writer role without CREATE on the schema, and
// one session, uses them (it was refused by the CREATE ... IF NOT EXISTS
// kappa always ran).
TEST_F(PostgresSinkTest, TablesMadeBeforehandNeedAUniqueKeyAndNoCreatePrivilege) {
  Forget("pgs-made", "pgs_made_v1");
  Produce("pgs-made-in", 7, 300);
  ScratchDir dir("pg-made");
  const SpecOptions o = Options("pgs-made", "pgs-made-in", dir, "state");
  const std::string spec = FeatureSpec(dir, "pg", o, PostgresSinkValue(dsn_, "pgs_made"));
  std::string ddl, err;
  ASSERT_EQ(RunKappa({"schema", spec}, &ddl), 0);
  ASSERT_TRUE(pg_->Exec(ddl + "; ALTER TABLE pgs_made_v1 DROP CONSTRAINT pgs_made_v1_pkey").ok()) << ddl;
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("has no unique index on kappa_key alone"), std::string::npos) << err;
  // A DEFERRABLE unique key cannot serve ON CONFLICT: refused at the start
  // too (it passed, and the first commit failed).
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_made_v1 ADD CONSTRAINT pgs_made_deferred UNIQUE (kappa_key) DEFERRABLE "
                        "INITIALLY DEFERRED").ok());
  EXPECT_EQ(Run(spec, &err), 1) << err;
  EXPECT_NE(err.find("has no unique index on kappa_key alone checked at once (its one is DEFERRABLE)"),
            std::string::npos)
      << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM kappa_offsets WHERE job = 'pgs-made'"), 0) << "nothing committed";
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_made_v1 DROP CONSTRAINT pgs_made_deferred").ok());
  ASSERT_TRUE(pg_->Exec("ALTER TABLE pgs_made_v1 ADD PRIMARY KEY (kappa_key); "
                        "ALTER TABLE pgs_made_v1 ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY")
                  .ok());
  // A role that may only read and write these two tables, in one session
  // (the job held two at its start, and a role limited to one was refused:
  // a bug bash).
  ASSERT_TRUE(pg_->Exec("DROP ROLE IF EXISTS pgs_writer; CREATE ROLE pgs_writer LOGIN PASSWORD 'w' CONNECTION LIMIT 1; "
                        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                        "GRANT SELECT, INSERT, UPDATE, DELETE ON kappa_offsets TO pgs_writer")
                  .ok());
  std::string writer_dsn = dsn_;
  writer_dsn.replace(writer_dsn.find("user=kappa"), std::string("user=kappa").size(), "user=pgs_writer");
  writer_dsn.replace(writer_dsn.find("password="), std::string::npos, "password=w");
  const std::string writer_spec = FeatureSpec(dir, "pg-writer", o, PostgresSinkValue(writer_dsn, "pgs_made"));
  // Without rights on the table the writer was told `kappa_key` was missing
  // and to drop or fix the table (a bug bash); with SELECT alone it got as
  // far as the first commit. The rights it lacks, and the GRANT.
  EXPECT_EQ(Run(writer_spec, &err), 1) << err;
  EXPECT_NE(err.find("role pgs_writer lacks SELECT, INSERT, UPDATE, DELETE on table pgs_made_v1"), std::string::npos)
      << err;
  EXPECT_NE(err.find("GRANT SELECT, INSERT, UPDATE, DELETE ON pgs_made_v1 TO pgs_writer"), std::string::npos) << err;
  ASSERT_TRUE(pg_->Exec("GRANT SELECT ON pgs_made_v1 TO pgs_writer").ok());
  EXPECT_EQ(Run(writer_spec, &err), 1) << err;
  EXPECT_NE(err.find("role pgs_writer lacks INSERT, UPDATE, DELETE on table pgs_made_v1"), std::string::npos) << err;
  EXPECT_EQ(CountOf(*pg_, "SELECT count(*) FROM kappa_offsets WHERE job = 'pg-writer'"), 0) << "nothing committed";
  ASSERT_TRUE(pg_->Exec("GRANT INSERT, UPDATE, DELETE ON pgs_made_v1 TO pgs_writer").ok());
  EXPECT_EQ(Run(writer_spec, &err), 0) << err;
  EXPECT_GT(CountOf(*pg_, "SELECT count(*) FROM pgs_made_v1 WHERE id IS NOT NULL"), 0) << err;
  ASSERT_TRUE(pg_->Exec("REASSIGN OWNED BY pgs_writer TO kappa; DROP OWNED BY pgs_writer; DROP ROLE pgs_writer").ok());
}

}  // namespace
}  // namespace kappa::testing
