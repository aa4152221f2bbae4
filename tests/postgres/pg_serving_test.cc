// Serving and promotion through PostgreSQL (issue 13, points 3 and 4), on the
// suite's real PostgreSQL (fixture `postgres`) with the registry on an
// embedded broker: the versions' tables are made with the sink's DDL
// (PostgresCreateTable from parsed specs) and filled with INSERTs. Each test
// works in a schema of its own (the server is shared by parallel tests).
//  - a reader of the view during 20 promote/rollback cycles sees one version
//    at a time, never an error;
//  - kill -9 of `kappa promote` between the registry record and the swap: the
//    view still serves the old version, and `kappa status` makes it the
//    registry's (the registry wins);
//  - the promotion diff computed in SQL, and the gate on it;
//  - retire drops a version's table and kappa_offsets rows after the
//    retention, not before, and never the serving one's;
//  - `kappa get` and `kappa status` read PostgreSQL, with the password from
//    --postgres or PGPASSWORD (the registry holds none).
#include "replay/pg_serving.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "engine/job_spec.h"
#include "engine/postgres_table.h"
#include "kafka/kafka_client.h"
#include "postgres/pg_client.h"
#include "replay/deployment.h"
#include "replay/promotion.h"
#include "replay/registry.h"
#include "tests/postgres/suite_dsn.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

std::string PasswordOf(const std::string& dsn) {
  const size_t p = dsn.find("password=");
  if (p == std::string::npos) return "";
  return dsn.substr(p + 9, dsn.find(' ', p + 9) - (p + 9));
}

struct Row {
  std::string key;  // the entity; kappa_key is "<key>|1767229200000"
  int64_t n;
  int64_t spend;
};

class PgServingTest : public BrokerTest {
 protected:
  void SetUp() override {
    dsn_ = SuiteDsn();
    if (dsn_.empty()) GTEST_SKIP() << "no PostgreSQL: CTest starts one (fixture postgres)";
    BrokerTest::SetUp();
    CreateTopic("kappa.control", 1);
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    schema_ = "pgs_" + std::to_string(::getpid());
    for (char c : test) schema_.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    schema_ = schema_.substr(0, 60);
    base_ = schema_ + ".spend";
    job_ = schema_;
    auto pg = PgClient::Connect(dsn_);
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    pg_ = std::move(*pg);
    ASSERT_TRUE(pg_->Exec("SET client_min_messages = warning; DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_).ok());
  }
  void TearDown() override {
    if (pg_) (void)pg_->Exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
    BrokerTest::TearDown();
  }

  // A parsed spec of version `version` writing <base>_v<version>; `mean`
  // adds a third feature (so the table's columns differ).
  JobSpec Spec(int version, bool mean = false) {
    const std::string yaml =
        "job: " + job_ + "\nversion: " + std::to_string(version) +
        "\nsource: {topic: transactions}\noperators:\n"
        "  - window: {size: 1h, key: user_id, features: {n: count, spend: sum(amount_cents)" +
        std::string(mean ? ", mean: avg(amount_cents)" : "") + "}}\n" +
        "sink: {postgres: {dsn: \"" + dsn_ + "\", table: " + base_ + "}}\ndlq: {topic: " + job_ +
        ".dlq}\nlate: {topic: " + job_ + ".late}\ncheckpoint: {dir: " + dir_ / ("state.v" + std::to_string(version)) +
        "}\n";
    auto spec = ParseJobSpec(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString() << "\n" << yaml;
    return spec.ok() ? *spec : JobSpec{};
  }
  // Registers the spec (the first live one serves) and creates its table with `rows`.
  void AddVersion(Registry& registry, const JobSpec& spec, const std::vector<Row>& rows, bool replay) {
    auto registered = RegisterVersion(registry, spec, replay);
    ASSERT_TRUE(registered.ok()) << registered.status().ToString();
    ASSERT_TRUE(pg_->Exec(PostgresCreateTable(spec)).ok());
    const bool mean = PostgresColumns(spec).size() > 10;
    int64_t offset = 0;
    for (const Row& r : rows) {
      std::string sql = "INSERT INTO " + QuoteQualified(spec.PostgresTable()) + " VALUES (" +
                        QuoteLiteral(r.key + "|1767229200000") + ", " + QuoteLiteral(r.key) +
                        ", '2026-01-01T00:00:00Z', '2026-01-01T01:00:00Z', " + std::to_string(r.n) + ", " +
                        std::to_string(r.spend) + (mean ? ", " + std::to_string(r.n ? double(r.spend) / r.n : 0) : "") +
                        ", " + std::to_string(spec.version) + ", 0, " + std::to_string(offset) + ", " +
                        std::to_string(offset + r.n) + ")";
      offset += r.n + 1;
      auto done = pg_->Exec(sql);
      ASSERT_TRUE(done.ok()) << done.status().ToString();
    }
  }
  static std::vector<Row> Rows(int count, int64_t spend_scale) {
    std::vector<Row> rows;
    for (int i = 0; i < count; ++i) rows.push_back({"u" + std::to_string(i), 1 + i % 3, spend_scale * (i + 1)});
    return rows;
  }
  // The kappa_version of the view's rows (0: none or mixed).
  int ViewVersion() {
    auto rows = pg_->Exec("SELECT min(kappa_version), max(kappa_version) FROM " + QuoteQualified(base_));
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    if (!rows.ok() || rows->rows.empty() || rows->rows[0][0] != rows->rows[0][1] || rows->rows[0][0].empty()) return 0;
    return std::stoi(rows->rows[0][0]);
  }
  int KappaServing() {
    auto v = ServingVersion(*pg_, job_, base_);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() && v->has_value() ? **v : 0;
  }
  bool TableExists(const std::string& table) {
    auto exists = PgRelationExists(*pg_, table);
    EXPECT_TRUE(exists.ok());
    return exists.ok() && *exists;
  }
  // Registers v1 (serving, 200 rows) and v2 (150 rows, one more column), and
  // makes PostgreSQL agree with the registry (v1 serves through the view).
  void TwoVersions(Registry& registry) {
    AddVersion(registry, Spec(1), Rows(200, 100), false);
    AddVersion(registry, Spec(2, /*mean=*/true), Rows(150, 90), true);
    ASSERT_TRUE(registry.Refresh().ok());
    auto line = ReconcileServing(*registry.Job(job_), dsn_);
    ASSERT_TRUE(line.ok()) << line.status().ToString();
    ASSERT_EQ(ViewVersion(), 1);
  }
  std::vector<std::string> Kappa(const std::string& command, const std::vector<std::string>& args) {
    std::vector<std::string> out{command, job_};
    out.insert(out.end(), args.begin(), args.end());
    out.insert(out.end(), {"--brokers", bootstrap(), "--control-topic", "kappa.control"});
    return out;
  }

  ScratchDir dir_{"pg_serving"};
  std::string dsn_, schema_, base_, job_;
  std::unique_ptr<PgClient> pg_;
};

TEST_F(PgServingTest, TheRegistryRecordsTheTableAndADsnWithoutPassword) {
  Registry registry(Config());
  AddVersion(registry, Spec(1), Rows(3, 1), false);
  ASSERT_TRUE(registry.Refresh().ok());
  auto job = registry.Job(job_);
  ASSERT_TRUE(job);
  const VersionInfo* v = job->Find(1);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->postgres_table, base_);
  EXPECT_EQ(v->PostgresVersionTable(), base_ + "_v1");
  EXPECT_EQ(v->postgres_dsn, DsnWithoutPassword(dsn_));
  ASSERT_FALSE(PasswordOf(dsn_).empty());
  EXPECT_EQ(v->postgres_dsn.find(PasswordOf(dsn_)), std::string::npos) << v->postgres_dsn;
}

TEST_F(PgServingTest, AReaderOfTheViewNeverSeesTwoVersionsDuringPromotions) {
  Registry registry(Config());
  TwoVersions(registry);
  // v3: the same columns as v2 (CREATE OR REPLACE VIEW), v1/v2 differ (DROP + CREATE).
  AddVersion(registry, Spec(3, /*mean=*/true), Rows(120, 80), true);
  const std::map<std::string, std::string> count_of = {{"1", "200"}, {"2", "150"}, {"3", "120"}};
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, bad{0};
  std::string first_bad;
  std::thread reader([&] {
    auto pg = PgClient::Connect(dsn_);
    if (!pg.ok()) {
      first_bad = pg.status().ToString();
      ++bad;
      return;
    }
    const std::string sql =
        "SELECT count(DISTINCT kappa_version), count(*), min(kappa_version) FROM " + QuoteQualified(base_);
    while (!stop) {
      auto rows = (*pg)->Exec(sql);
      ++reads;
      std::string problem;
      if (!rows.ok()) {
        problem = rows.status().ToString();
      } else if (rows->rows.size() != 1 || rows->rows[0][0] != "1" || count_of.count(rows->rows[0][2]) == 0 ||
                 count_of.at(rows->rows[0][2]) != rows->rows[0][1]) {
        problem = "versions " + rows->rows[0][0] + ", rows " + rows->rows[0][1] + ", version " + rows->rows[0][2];
      }
      if (!problem.empty() && bad++ == 0) first_bad = problem;
    }
  });
  PromoteOptions options;
  options.force = true;  // nothing reports progress here
  options.postgres_dsn = dsn_;
  for (int cycle = 0; cycle < 20; ++cycle) {
    std::string report;
    ASSERT_TRUE(Promote(registry, Config(), job_, 2, options, &report).ok()) << report;
    ASSERT_TRUE(Promote(registry, Config(), job_, 3, options, &report).ok()) << report;
    ASSERT_EQ(KappaServing(), 3);
    ASSERT_TRUE(Rollback(registry, job_, &report, dsn_).ok()) << report;
    ASSERT_TRUE(Rollback(registry, job_, &report, dsn_).ok()) << report;
    ASSERT_EQ(KappaServing(), 1);
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0) << first_bad;
  EXPECT_GT(reads.load(), 80) << "the reader barely ran";
  EXPECT_EQ(ViewVersion(), 1);
}

TEST_F(PgServingTest, ACrashBetweenRegistryAndSwapIsRepairedByTheRegistry) {
  KAPPA_REQUIRE_TEST_HOOKS();
  Registry registry(Config());
  TwoVersions(registry);
  ::setenv("KAPPA_TEST_KILL_AT", "promote-registry-written", 1);
  ChildProcess promote(Kappa("promote", {"--version", "2", "--force", "--postgres", dsn_}), "pg_promote");
  ::unsetenv("KAPPA_TEST_KILL_AT");
  ASSERT_EQ(promote.Wait(), 128 + 9) << promote.Stdout() << promote.Stderr();
  ASSERT_NE(promote.Stderr().find("promote-registry-written"), std::string::npos) << promote.Stderr();
  // The registry says v2; PostgreSQL still serves all of v1.
  ASSERT_TRUE(registry.Refresh().ok());
  EXPECT_EQ(registry.Job(job_)->serving, 2);
  EXPECT_EQ(KappaServing(), 1);
  EXPECT_EQ(ViewVersion(), 1);
  // The next command that looks makes PostgreSQL agree with the registry.
  std::string out, err;
  ASSERT_EQ(RunKappa(Kappa("status", {"--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("now serves v2, the registry's serving version (kappa_serving said v1)"), std::string::npos) << out;
  EXPECT_NE(out.find("postgres view " + base_ + " serves v2"), std::string::npos) << out;
  EXPECT_EQ(KappaServing(), 2);
  EXPECT_EQ(ViewVersion(), 2);

  // The same for rollback, repaired this time by the next rollback-free command, get.
  ::setenv("KAPPA_TEST_KILL_AT", "rollback-registry-written", 1);
  ChildProcess rollback(Kappa("rollback", {"--postgres", dsn_}), "pg_rollback");
  ::unsetenv("KAPPA_TEST_KILL_AT");
  ASSERT_EQ(rollback.Wait(), 128 + 9) << rollback.Stdout() << rollback.Stderr();
  EXPECT_EQ(ViewVersion(), 2);
  ASSERT_EQ(RunKappa(Kappa("get", {"u7|1767229200000", "--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("\"version\":1"), std::string::npos) << out;
  EXPECT_EQ(KappaServing(), 1);
  EXPECT_EQ(ViewVersion(), 1);
}

// A bug bash: v2 writing analytics.spend_hourly beside v1's spend_hourly was
// registered; promote then left readers of v1's view on v1, and rollback
// left v2's view serving v2. The versions of a job share the table name and
// the database (one view, which promotion switches): another is refused at
// registration. A restart, or a version after the other was retired, is not.
TEST_F(PgServingTest, AVersionWritingAnotherTableOrDatabaseIsRefused) {
  Registry registry(Config());
  AddVersion(registry, Spec(1), Rows(3, 1), false);
  JobSpec other_table = Spec(2);
  other_table.postgres_table = base_ + "_moved";
  auto refused = RegisterVersion(registry, other_table, true);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("writes PostgreSQL table " + base_ + "_moved in "), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("but version 1 writes " + base_ + " in "), std::string::npos)
      << refused.status().message();
  JobSpec other_database = Spec(2);
  other_database.postgres_dsn += " dbname=elsewhere";
  refused = RegisterVersion(registry, other_database, true);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("dbname=elsewhere"), std::string::npos) << refused.status().message();
  // The same table and database, spelled with the password left out: fine.
  EXPECT_TRUE(RegisterVersion(registry, Spec(1), false).ok()) << "a restart of v1";
  ASSERT_TRUE(RegisterVersion(registry, Spec(2), true).ok());
}

// A second job given the first one's table spelled `public.<table>` (one
// table to PostgreSQL) passed the check that two jobs never write one table:
// its deploy moved the first job's view to its own version, and its retire
// dropped the first job's table (a bug bash). Refused at registration.
TEST_F(PgServingTest, AnotherJobIsRefusedTheSameTableSpelledWithItsSchema) {
  Registry registry(Config());
  JobSpec first = Spec(1);
  first.postgres_table = schema_ + "_t";  // in public, unqualified
  ASSERT_TRUE(RegisterVersion(registry, first, false).ok());
  JobSpec second = Spec(1);
  second.job = job_ + "-other";
  second.state_dir = dir_ / "other";
  second.postgres_table = "public." + schema_ + "_t";
  auto refused = RegisterVersion(registry, second, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("PostgreSQL table public." + schema_ + "_t in "), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("is written by job " + job_ + " version 1 (as " + schema_ + "_t)"),
            std::string::npos)
      << refused.status().message();
  // Another schema's table of that name is another table.
  second.postgres_table = schema_ + "." + schema_ + "_t";
  EXPECT_TRUE(RegisterVersion(registry, second, false).ok());
}

// A bug bash: job pgg given table t3_v1, the version table of job pgf's
// table t3, was registered with a warning only; readers of pgg's view
// t3_v1 read pgf's rows. A name that is another job's view or version
// table is refused at registration, in either order.
TEST_F(PgServingTest, AnotherJobsViewOrVersionTableIsRefusedAsATable) {
  Registry registry(Config());
  JobSpec first = Spec(1);
  first.postgres_table = schema_ + "_t3";
  ASSERT_TRUE(RegisterVersion(registry, first, false).ok());
  JobSpec second = Spec(1);
  second.job = job_ + "-other";
  second.state_dir = dir_ / "other";
  second.postgres_table = schema_ + "_t3_v1";
  auto refused = RegisterVersion(registry, second, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is the version table of job " + job_ + " version 1"), std::string::npos)
      << refused.status().message();
  // The other order: a job whose version table would be the first's view.
  JobSpec third = Spec(1);
  third.job = job_ + "-third";
  third.state_dir = dir_ / "third";
  third.postgres_table = schema_ + "_t";
  JobSpec view_owner = Spec(1);
  view_owner.job = job_ + "-view";
  view_owner.state_dir = dir_ / "view";
  view_owner.postgres_table = schema_ + "_t_v1";
  ASSERT_TRUE(RegisterVersion(registry, view_owner, false).ok());
  refused = RegisterVersion(registry, third, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is the serving view of job " + job_ + "-view version 1"),
            std::string::npos)
      << refused.status().message();
}

TEST_F(PgServingTest, ThePromotionDiffRunsInSqlAndFeedsTheGate) {
  Registry registry(Config());
  // v1: u1..u5. v2: u1 same, u2 n 3->5 and spend 300->250, u3 spend
  // 100->130, u4 same, no u5, a new u6.
  AddVersion(registry, Spec(1), {{"u1", 1, 10}, {"u2", 3, 300}, {"u3", 2, 100}, {"u4", 1, 7}, {"u5", 1, 1}}, false);
  AddVersion(registry, Spec(2, /*mean=*/true), {{"u1", 1, 10}, {"u2", 5, 250}, {"u3", 2, 130}, {"u4", 1, 7}, {"u6", 1, 1}},
             true);
  // A defaulted column of the team's own in both tables, different in every
  // row (a bug bash: identical versions compared as 100% changed): not a
  // feature, not compared.
  for (const char* v : {"_v1", "_v2"}) {
    ASSERT_TRUE(pg_->Exec("ALTER TABLE " + QuoteQualified(base_ + v) +
                          " ADD COLUMN loaded_at timestamptz NOT NULL DEFAULT clock_timestamp()")
                    .ok());
  }
  auto diff = ComparePgTables(*pg_, base_ + "_v1", base_ + "_v2");
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_EQ(diff->compared, 4);
  EXPECT_EQ(diff->equal, 2);
  EXPECT_EQ(diff->changed, 2);
  EXPECT_EQ(diff->only_serving, 1);
  EXPECT_EQ(diff->only_candidate, 1);
  ASSERT_EQ(diff->fields.size(), 2u);  // the common features; `mean` is only in v2
  EXPECT_EQ(diff->fields[0].field, "n");
  EXPECT_EQ(diff->fields[0].changed, 1);
  EXPECT_DOUBLE_EQ(diff->fields[0].largest, 2);
  EXPECT_DOUBLE_EQ(diff->fields[0].mean, 2);
  EXPECT_EQ(diff->fields[1].field, "spend");
  EXPECT_EQ(diff->fields[1].changed, 2);
  EXPECT_DOUBLE_EQ(diff->fields[1].largest, 50);
  EXPECT_DOUBLE_EQ(diff->fields[1].mean, 40);
  EXPECT_TRUE(ReconcileServing(*registry.Job(job_), dsn_).ok());

  // The gate: half of the compared rows changed, over 25%.
  PromoteOptions options;
  options.force = true;
  options.postgres_dsn = dsn_;
  options.max_changed_share = 0.25;
  std::string report;
  Status refused = Promote(registry, Config(), job_, 2, options, &report);
  EXPECT_EQ(refused.code(), Status::Code::kFailedPrecondition) << refused.ToString();
  EXPECT_NE(refused.message().find("66.7% of rows differ (2 changed, 1 only in the serving version, 1 only in the "
                                   "candidate, of 6 keys), over the 25.0% gate"),
            std::string::npos)
      << refused.message();
  EXPECT_NE(report.find("compared 4 rows: 2 equal, 2 changed (50.0%); only in serving 1, only in candidate 1"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("spend  changed in 2 rows, largest change 50.00, mean change 40.00"), std::string::npos) << report;
  ASSERT_TRUE(registry.Refresh().ok());
  EXPECT_EQ(registry.Job(job_)->serving, 1);
  EXPECT_EQ(ViewVersion(), 1);
  options.accept = true;
  ASSERT_TRUE(Promote(registry, Config(), job_, 2, options, &report).ok()) << report;
  EXPECT_EQ(ViewVersion(), 2);
  EXPECT_EQ(KappaServing(), 2);
}

// The start of a deployment creates the version's table (the sink's DDL)
// and makes the view agree with the registry: the first version serves.
// The SQL diff compared bigint features as float8 (a change past 2^53 had
// size 0) and subtracted doubles in float8, which fails with "value out of
// range: overflow" near 1.8e308: promote stopped with an SQL error. Changes
// between a number and NULL are counted apart.
TEST_F(PgServingTest, ThePromotionDiffIsExactForBigintsAndSurvivesHugeDoubles) {
  Registry registry(Config());
  AddVersion(registry, Spec(1, /*mean=*/true), {{"u1", 1, 9000000000000000001}, {"u2", 1, 5}, {"u3", 1, 5}}, false);
  AddVersion(registry, Spec(2, /*mean=*/true), {{"u1", 1, 9000000000000000003}, {"u2", 1, 5}, {"u3", 1, 5}}, true);
  for (const auto& [version, key, mean] : {std::tuple<const char*, const char*, const char*>{"_v1", "u2", "1.7e308"},
                                          {"_v2", "u2", "-1.7e308"},
                                          {"_v2", "u3", "NULL"}}) {
    auto done = pg_->Exec("UPDATE " + QuoteQualified(base_ + version) + " SET mean = " + mean +
                          " WHERE kappa_key = " + QuoteLiteral(std::string(key) + "|1767229200000"));
    ASSERT_TRUE(done.ok()) << done.status().ToString();
  }
  auto diff = ComparePgTables(*pg_, base_ + "_v1", base_ + "_v2");
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_EQ(diff->changed, 3);
  std::map<std::string, FieldChange> by_name;
  for (const FieldChange& f : diff->fields) by_name[f.field] = f;
  EXPECT_EQ(by_name["spend"].changed, 1);
  EXPECT_DOUBLE_EQ(by_name["spend"].largest, 2);
  EXPECT_EQ(by_name["mean"].changed, 2);  // u1's means are one double
  EXPECT_EQ(by_name["mean"].number_null, 1);
  EXPECT_TRUE(std::isinf(by_name["mean"].largest)) << by_name["mean"].largest;
  EXPECT_NE(diff->ToString().find("mean   changed in 2 rows, largest change beyond the double range"),
            std::string::npos)
      << diff->ToString();
}

TEST_F(PgServingTest, ADeploymentStartCreatesTheTableAndTheView) {
  CreateTopic("transactions", 1);
  Registry registry(Config());
  StopSource stop;
  stop.RequestStop();
  DeploymentOptions options;
  std::vector<std::string> notes;
  options.on_note = [&](NoteLevel, const std::string& text) { notes.push_back(text); };
  Status st = RunDeployment(Config(), Spec(1), options, registry, stop);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::string all;
  for (const auto& n : notes) all += n + "\n";
  EXPECT_NE(all.find("PostgreSQL view " + base_ + " now serves v1"), std::string::npos) << all;
  EXPECT_TRUE(TableExists(base_ + "_v1"));
  EXPECT_EQ(KappaServing(), 1);
  auto kind = pg_->Exec("SELECT relkind FROM pg_class WHERE oid = to_regclass(" + QuoteLiteral(base_) + ")");
  ASSERT_TRUE(kind.ok());
  ASSERT_EQ(kind->rows.size(), 1u);
  EXPECT_EQ(kind->rows[0][0], "v");
}

// A bug bash: a deploy refused at its start (after it had registered and
// set up PostgreSQL) was unregistered again, but left the view, the
// kappa_serving row naming the version that never ran, and the empty table
// it had made; when the refusal was another job's table, the view served
// that job's rows. They go with the registration; a table not made by the
// deployment stays.
TEST_F(PgServingTest, ARefusedStartTakesBackTheViewTheRowAndTheTableItMade) {
  CreateTopic("transactions", 1);
  CreateTopic(job_ + ".dlq", 1);
  Registry registry(Config());
  auto deploy = [&](const JobSpec& spec, std::string* notes) {
    DeploymentOptions options;
    options.on_note = [notes](NoteLevel, const std::string& text) { *notes += text + "\n"; };
    StopSource stop;
    std::atomic<bool> done{false};
    std::thread guard([&] {  // a start that is not refused must not hang the test
      for (int i = 0; i < 600 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      stop.RequestStop();
    });
    Status st = RunDeployment(Config(), spec, options, registry, stop);
    done.store(true);
    guard.join();
    return st;
  };
  auto view_kind = [&] {
    auto kind = pg_->Exec("SELECT relkind FROM pg_class WHERE oid = to_regclass(" + QuoteLiteral(base_) + ")");
    EXPECT_TRUE(kind.ok());
    return kind.ok() && !kind->rows.empty() ? kind->rows[0][0] : std::string();
  };
  const JobSpec v1 = Spec(1);
  // Another job's table, made by its unregistered `kappa run`.
  ASSERT_TRUE(pg_->Exec(PostgresCreateTable(v1)).ok());
  ASSERT_TRUE(pg_->Exec("COMMENT ON TABLE " + QuoteQualified(v1.PostgresTable()) + " IS " +
                        QuoteLiteral(PgOwnerComment("someone-else")))
                  .ok());
  std::string notes;
  Status st = deploy(v1, &notes);
  ASSERT_FALSE(st.ok()) << notes;
  EXPECT_NE(st.message().find("is written by job someone-else"), std::string::npos) << st.ToString();
  EXPECT_NE(notes.find("unregistered again"), std::string::npos) << notes;
  EXPECT_EQ(view_kind(), "") << "the view over another job's table stayed\n" << notes;
  EXPECT_EQ(KappaServing(), 0) << notes;
  EXPECT_TRUE(TableExists(v1.PostgresTable())) << "not the deployment's to drop";

  // Refused after it made its table: a dead-letter topic holding rows.
  ASSERT_TRUE(pg_->Exec("DROP TABLE " + QuoteQualified(v1.PostgresTable())).ok());
  {
    auto client = CreateClient(ClientKind::kProducer, Config(), {});
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    const std::string topic = job_ + ".dlq";
    const std::string value = "{}";
    ASSERT_EQ(rd_kafka_producev(client->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_HEADER("kappa.job", "rows", 4),
                                RD_KAFKA_V_HEADER("kappa.spec_hash", "0123", 4), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(client->get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  notes.clear();
  st = deploy(v1, &notes);
  ASSERT_FALSE(st.ok()) << notes;
  EXPECT_NE(st.message().find("holds output rows of job rows"), std::string::npos) << st.ToString();
  EXPECT_NE(notes.find("its empty table " + v1.PostgresTable() + " dropped"), std::string::npos) << notes;
  EXPECT_EQ(view_kind(), "") << notes;
  EXPECT_EQ(KappaServing(), 0) << notes;
  EXPECT_FALSE(TableExists(v1.PostgresTable())) << notes;
  ASSERT_TRUE(registry.Refresh().ok());
  auto record = registry.Job(job_);
  EXPECT_TRUE(!record || record->Find(1) == nullptr) << "still registered";
}

// A reconciler that read the registry before a promotion (a `kappa status`
// started just before it) must not swap the view back afterwards.
TEST_F(PgServingTest, AStaleReconcilerDoesNotUndoANewerSwap) {
  Registry registry(Config());
  TwoVersions(registry);
  const JobRecord before = *registry.Job(job_);
  PromoteOptions options;
  options.force = true;
  options.postgres_dsn = dsn_;
  std::string report;
  ASSERT_TRUE(Promote(registry, Config(), job_, 2, options, &report).ok()) << report;
  ASSERT_EQ(ViewVersion(), 2);
  auto line = ReconcileServing(before, dsn_);
  ASSERT_TRUE(line.ok()) << line.status().ToString();
  EXPECT_EQ(*line, "");
  EXPECT_EQ(ViewVersion(), 2);
  EXPECT_EQ(KappaServing(), 2);
  // The current record still repairs a view changed behind kappa's back.
  ASSERT_TRUE(SwapServingView(*pg_, job_, base_, 1).ok());
  line = ReconcileServing(*registry.Job(job_), dsn_);
  ASSERT_TRUE(line.ok()) << line.status().ToString();
  EXPECT_NE(line->find("now serves v2"), std::string::npos) << *line;
  EXPECT_EQ(ViewVersion(), 2);
}

TEST_F(PgServingTest, RetireDropsATableAfterItsRetentionNeverTheServingOne) {
  Registry registry(Config());
  TwoVersions(registry);
  AddVersion(registry, Spec(3), Rows(5, 1), true);
  ASSERT_TRUE(pg_->Exec(PgCreateOffsetsTable(base_)).ok());
  for (int v = 1; v <= 3; ++v) {
    ASSERT_TRUE(pg_->Exec("INSERT INTO " + PgOffsetsTable(base_) + " VALUES (" + QuoteLiteral(job_) + ", " +
                          std::to_string(v) + ", 0, 10, 1, 'h'), (" + QuoteLiteral(job_) + ", " + std::to_string(v) +
                          ", 1, 20, 1, 'h')")
                    .ok());
  }
  auto offsets_of = [&](int v) {
    auto rows = pg_->Exec("SELECT count(*) FROM " + PgOffsetsTable(base_) + " WHERE job = " + QuoteLiteral(job_) +
                          " AND version = " + std::to_string(v));
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? std::stoi(rows->rows[0][0]) : -1;
  };
  std::string report;
  // Within the retention: kept.
  ASSERT_TRUE(Retire(registry, job_, 2, 3600 * 1000, &report, dsn_).ok()) << report;
  EXPECT_TRUE(TableExists(base_ + "_v2")) << report;
  EXPECT_EQ(offsets_of(2), 2);
  // The serving one cannot be retired.
  EXPECT_FALSE(Retire(registry, job_, 1, 0, &report, dsn_).ok());
  // PostgreSQL serving v3 against the registry (a crash left it so): v3's
  // table is not dropped, whatever its retention.
  ASSERT_TRUE(SwapServingView(*pg_, job_, base_, 3).ok());
  ASSERT_TRUE(Retire(registry, job_, 3, 0, &report, dsn_).ok()) << report;
  EXPECT_NE(report.find("not dropping PostgreSQL table " + base_ + "_v3"), std::string::npos) << report;
  EXPECT_TRUE(TableExists(base_ + "_v3"));
  EXPECT_EQ(offsets_of(3), 2);
  // v2 is past a retention of zero now: dropped with its offsets.
  EXPECT_NE(report.find("dropped PostgreSQL table " + base_ + "_v2 and its 2 kappa_offsets rows"), std::string::npos)
      << report;
  EXPECT_FALSE(TableExists(base_ + "_v2"));
  EXPECT_EQ(offsets_of(2), 0);
  // Once PostgreSQL agrees with the registry again, v3 goes too; v1 stays.
  ASSERT_TRUE(registry.Refresh().ok());
  ASSERT_TRUE(ReconcileServing(*registry.Job(job_), dsn_).ok());
  ASSERT_TRUE(Retire(registry, job_, 3, 0, &report, dsn_).ok()) << report;
  EXPECT_FALSE(TableExists(base_ + "_v3")) << report;
  EXPECT_EQ(offsets_of(3), 0);
  EXPECT_TRUE(TableExists(base_ + "_v1"));
  EXPECT_EQ(offsets_of(1), 2);
  EXPECT_EQ(ViewVersion(), 1);
}

// A bug bash renamed a version's table away and made another under its
// name: retire dropped that one, the user's rows with it, said "dropped",
// and left kappa's. kappa_offsets records the table a version's rows went
// to; a table that is not it is left, named. And a reader holding the
// table made retire wait without limit or a word, holding the serving lock
// that promote needs: it waits at most 10 s, naming the session.
TEST_F(PgServingTest, RetireDropsOnlyTheVersionsOwnTableAndWaitsForALockWithinABound) {
  Registry registry(Config());
  TwoVersions(registry);
  const std::string v2 = base_ + "_v2";
  ASSERT_TRUE(pg_->Exec(PgCreateOffsetsTable(base_)).ok());
  ASSERT_TRUE(pg_->Exec("INSERT INTO " + PgOffsetsTable(base_) +
                        " (job, version, partition, next_offset, epoch, spec_hash, table_oid) VALUES (" +
                        QuoteLiteral(job_) + ", 2, 0, 10, 1, 'h', " + QuoteLiteral(v2) + "::regclass::oid)")
                  .ok());
  ASSERT_TRUE(pg_->Exec("ALTER TABLE " + v2 + " RENAME TO spend_v2_keep").ok());
  ASSERT_TRUE(pg_->Exec("CREATE TABLE " + v2 + " (id int PRIMARY KEY, precious text); INSERT INTO " + v2 +
                        " VALUES (1, 'not kappa''s')")
                  .ok());
  std::string report;
  ASSERT_TRUE(Retire(registry, job_, 2, 0, &report, dsn_).ok()) << report;
  EXPECT_NE(report.find("not dropping PostgreSQL table " + v2 + ": it is not the table version 2 wrote "
                        "(kappa_offsets records the table now named " + schema_ + ".spend_v2_keep"),
            std::string::npos)
      << report;
  EXPECT_TRUE(TableExists(v2)) << "the user's table was dropped";
  EXPECT_TRUE(TableExists(schema_ + ".spend_v2_keep"));
  // Named back: it is the version's table again, and a reader holds it.
  ASSERT_TRUE(pg_->Exec("DROP TABLE " + v2 + "; ALTER TABLE " + schema_ + ".spend_v2_keep RENAME TO spend_v2").ok());
  auto reader = PgClient::Connect(dsn_);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ASSERT_TRUE((*reader)->Exec("BEGIN; SELECT count(*) FROM " + v2).ok());
  const auto began = std::chrono::steady_clock::now();
  ASSERT_TRUE(Retire(registry, job_, 2, 0, &report, dsn_).ok()) << report;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(40)) << report;
  EXPECT_NE(report.find("could not drop PostgreSQL table " + v2 + ": sessions have held PostgreSQL table " + v2 +
                        " for 10 s: pid "),
            std::string::npos)
      << report;
  EXPECT_TRUE(TableExists(v2));
  ASSERT_TRUE((*reader)->Exec("COMMIT").ok());
  ASSERT_TRUE(Retire(registry, job_, 2, 0, &report, dsn_).ok()) << report;
  EXPECT_NE(report.find("dropped PostgreSQL table " + v2 + " and its 1 kappa_offsets rows"), std::string::npos)
      << report;
  EXPECT_FALSE(TableExists(v2));
}

// A row read through the view says which version it is of: during a
// rollback `kappa get` labelled v1's row with the registry's v2 (a bug
// bash).
TEST_F(PgServingTest, ARowReadThroughTheViewSaysItsVersion) {
  Registry registry(Config());
  TwoVersions(registry);
  int32_t version = 0;
  auto row = PgRowJson(*pg_, base_, "u1|1767229200000", &version);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ(version, 1);
  ASSERT_TRUE(SwapServingView(*pg_, job_, base_, 2).ok());
  row = PgRowJson(*pg_, base_, "u1|1767229200000", &version);
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_EQ(version, 2);
}

// A bug bash: a view of the team's own on the serving view made promote
// write the registry and then fail to remake the view (v2 has another
// column), and every `kappa get` failed from then on. The promotion is now
// refused before the registry changes, naming the view; and `get` answers
// from the serving version's own table when the view cannot agree.
TEST_F(PgServingTest, AViewOnTheServingViewRefusesAPromotionThatMustRemakeIt) {
  Registry registry(Config());
  TwoVersions(registry);
  ASSERT_TRUE(pg_->Exec("CREATE VIEW " + schema_ + ".big_spenders AS SELECT key, spend FROM " + QuoteQualified(base_) +
                        " WHERE spend > 1000")
                  .ok());
  PromoteOptions options;
  options.force = true;
  options.accept = true;
  options.postgres_dsn = dsn_;
  std::string report;
  Status refused = Promote(registry, Config(), job_, 2, options, &report);
  EXPECT_EQ(refused.code(), Status::Code::kFailedPrecondition) << refused.ToString();
  EXPECT_NE(refused.message().find(schema_ + ".big_spenders depends on it"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("nothing was changed"), std::string::npos) << refused.message();
  ASSERT_TRUE(registry.Refresh().ok());
  EXPECT_EQ(registry.Job(job_)->serving, 1) << "the registry was written";
  EXPECT_EQ(ViewVersion(), 1);

  // A registry that says v2 all the same (written before this check, or by
  // hand): `get` warns and reads v2's table.
  JobRecord record = *registry.Job(job_);
  record.previous_serving.push_back(1);
  record.serving = 2;
  auto put = registry.TryPutJob(record);
  ASSERT_TRUE(put.ok() && *put);
  std::string out, err;
  ASSERT_EQ(RunKappa(Kappa("get", {"u3|1767229200000", "--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("\"version\":2"), std::string::npos) << out;
  EXPECT_NE(out.find("\"spend\":360,\"mean\":360"), std::string::npos) << out;
  EXPECT_NE(err.find("warning:"), std::string::npos) << err;
  EXPECT_NE(err.find("reading v2's table " + base_ + "_v2 instead"), std::string::npos) << err;

  // Without the team's view, the switch goes through.
  ASSERT_TRUE(pg_->Exec("DROP VIEW " + schema_ + ".big_spenders").ok());
  ASSERT_TRUE(registry.Refresh().ok());
  ASSERT_TRUE(ReconcileServing(*registry.Job(job_), dsn_).ok());
  EXPECT_EQ(ViewVersion(), 2);
}

// A bug bash: promote's swap queued behind a long reader of the view, and
// every new reader queued behind the swap for as long. Each attempt now
// waits at most 500 ms for the lock, so readers get through in between, and
// the swap happens once the long reader is done.
TEST_F(PgServingTest, APromotionWaitingForALongReaderDoesNotHoldUpOtherReaders) {
  Registry registry(Config());
  TwoVersions(registry);
  AddVersion(registry, Spec(3), Rows(120, 80), true);  // v1's columns: CREATE OR REPLACE
  auto long_reader = PgClient::Connect(dsn_);
  ASSERT_TRUE(long_reader.ok());
  ASSERT_TRUE((*long_reader)->Exec("BEGIN; SELECT count(*) FROM " + QuoteQualified(base_)).ok());
  PromoteOptions options;
  options.force = true;
  options.accept = true;
  options.postgres_dsn = dsn_;
  std::string report;
  ::testing::internal::CaptureStderr();
  auto promoting = std::async(std::launch::async, [&] { return Promote(registry, Config(), job_, 3, options, &report); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // Another reader meanwhile: answered, not held up for the long one's 8 s.
  auto reader = PgClient::Connect(dsn_);
  ASSERT_TRUE(reader.ok());
  const auto began = std::chrono::steady_clock::now();
  auto read = (*reader)->Exec("SELECT count(*) FROM " + QuoteQualified(base_));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_LT(waited, 5.0) << "a reader queued behind the swap";
  std::this_thread::sleep_for(std::chrono::milliseconds(5000));
  EXPECT_EQ(promoting.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "swapped under a reader";
  ASSERT_TRUE((*long_reader)->Exec("COMMIT").ok());
  const Status promoted = promoting.get();
  const std::string said = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(promoted.ok()) << report;
  EXPECT_EQ(ViewVersion(), 3);
  // The wait is said as it happens, naming the reader (it was silent for
  // up to a minute: a bug bash).
  EXPECT_NE(said.find("switching the view " + base_ + " to " + base_ + "_v3 waits for sessions reading or locking it (pid "),
            std::string::npos)
      << said;
}

// status and get make the view agree with the registry, and met a reader
// holding it: each waited a minute before answering (a bug bash). A few
// seconds now, then the answer with the view's trouble.
TEST_F(PgServingTest, StatusAndGetDoNotWaitAMinuteForAReaderOfTheView) {
  Registry registry(Config());
  TwoVersions(registry);
  auto record = registry.Job(job_);
  ASSERT_TRUE(record.has_value());
  record->serving = 2;  // the registry moved on; the view did not yet (a promote's crash, say)
  auto put = registry.TryPutJob(*record);
  ASSERT_TRUE(put.ok() && *put) << put.status().ToString();
  auto long_reader = PgClient::Connect(dsn_);
  ASSERT_TRUE(long_reader.ok());
  ASSERT_TRUE((*long_reader)->Exec("BEGIN; SELECT count(*) FROM " + QuoteQualified(base_)).ok());
  std::string out, err;
  for (const auto& command : {Kappa("status", {"--postgres", dsn_}), Kappa("get", {"u3|1767229200000", "--postgres", dsn_})}) {
    const auto began = std::chrono::steady_clock::now();
    EXPECT_EQ(RunKappa(command, &out, &err), 0) << out << err;
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    EXPECT_LT(took, 20.0) << command[0] << " waited for the reader:\n" << out << err;
    EXPECT_NE((out + err).find("waited 5 times for sessions reading or locking it (pid"), std::string::npos)
        << out << err;
  }
  EXPECT_NE(out.find("\"version\":2"), std::string::npos) << "get reads the registry's serving version: " << out;
  EXPECT_EQ(ViewVersion(), 1);
  ASSERT_TRUE((*long_reader)->Exec("COMMIT").ok());
  ASSERT_EQ(RunKappa(Kappa("status", {"--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_EQ(ViewVersion(), 2) << out;
}

// A bug bash: with the serving version's table locked (ALTER TABLE,
// VACUUM FULL, LOCK TABLE held 90 s), `kappa get` said nothing for 89 s and
// promote's diff 44 s. Each waits a bounded time, then fails naming the
// session that holds the lock; with the lock gone both answer.
TEST_F(PgServingTest, GetAndPromoteDoNotWaitSilentlyForALockOnAVersionsTable) {
  Registry registry(Config());
  TwoVersions(registry);
  auto locker = PgClient::Connect(dsn_);
  ASSERT_TRUE(locker.ok());
  auto pid = (*locker)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE((*locker)->Exec("BEGIN; LOCK TABLE " + QuoteQualified(base_ + "_v1") + " IN ACCESS EXCLUSIVE MODE").ok());
  std::string out, err;
  auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(RunKappa(Kappa("get", {"u3|1767229200000", "--postgres", dsn_}), &out, &err), 1) << out << err;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(20)) << err;
  EXPECT_NE(err.find("kappa get waited 5 s for a lock on PostgreSQL " + base_ + "_v1 held by pid " + pid->rows[0][0]),
            std::string::npos)
      << err;
  began = std::chrono::steady_clock::now();
  EXPECT_EQ(RunKappa(Kappa("promote", {"--version", "2", "--postgres", dsn_, "--accept", "--force"}), &out, &err), 1)
      << out << err;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(30)) << err;
  EXPECT_NE(err.find("the promotion diff waited 10 s for a lock on PostgreSQL"), std::string::npos) << err;
  EXPECT_NE(err.find("held by pid " + pid->rows[0][0]), std::string::npos) << err;
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  EXPECT_EQ(RunKappa(Kappa("get", {"u3|1767229200000", "--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("\"version\":1"), std::string::npos) << out;
}

// A bug bash: a rollback to a version whose table someone had renamed
// away recorded it as serving and exited 0 ("version 1 serves again"),
// while the view went on serving v2. Refused, nothing changed.
TEST_F(PgServingTest, ARollbackToAVersionWhoseTableIsGoneIsRefused) {
  Registry registry(Config());
  TwoVersions(registry);
  auto record = registry.Job(job_);
  ASSERT_TRUE(record.has_value());
  record->serving = 2;
  record->previous_serving = {1};
  auto put = registry.TryPutJob(*record);
  ASSERT_TRUE(put.ok() && *put) << put.status().ToString();
  ASSERT_TRUE(registry.Refresh().ok());
  ASSERT_TRUE(ReconcileServing(*registry.Job(job_), dsn_).ok());
  ASSERT_EQ(ViewVersion(), 2);
  ASSERT_TRUE(pg_->Exec("ALTER TABLE " + QuoteQualified(base_ + "_v1") + " RENAME TO spend_v1_old").ok());
  std::string out, err;
  EXPECT_EQ(RunKappa(Kappa("rollback", {"--postgres", dsn_, "--force"}), &out, &err), 1) << out << err;
  EXPECT_NE(err.find("PostgreSQL table " + base_ + "_v1 (version 1's rows) does not exist"), std::string::npos)
      << err;
  ASSERT_TRUE(registry.Refresh().ok());
  EXPECT_EQ(registry.Job(job_)->serving, 2) << "the registry changed";
  EXPECT_EQ(ViewVersion(), 2);
  EXPECT_EQ(KappaServing(), 2);
}

// A bug bash: a deploy with its database down registered the version
// (serving), said "running live", failed, and left it registered with "no
// progress reported yet" for good. The database is asked before anything
// is registered.
TEST_F(PgServingTest, ADeployWithTheDatabaseDownRegistersNothing) {
  CreateTopic("transactions", 1);
  Registry registry(Config());
  JobSpec spec = Spec(1);
  spec.postgres_dsn = "host=127.0.0.1 port=1 dbname=postgres user=kappa";
  StopSource stop;
  DeploymentOptions options;
  Status st = RunDeployment(Config(), spec, options, registry, stop);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("sink.postgres: "), std::string::npos) << st.ToString();
  ASSERT_TRUE(registry.Refresh().ok());
  auto record = registry.Job(job_);
  EXPECT_TRUE(!record || record->Find(1) == nullptr) << "registered";
}

// A bug bash: with the database down, kappa get warned that it would read
// the version's table instead, then failed connecting for that too (twice
// the connect timeout against a hung server). One clear error.
TEST_F(PgServingTest, GetWithTheDatabaseDownSaysSoOnce) {
  Registry registry(Config());
  TwoVersions(registry);
  std::string out, err;
  EXPECT_EQ(RunKappa(Kappa("get", {"u3|1767229200000", "--postgres", "host=127.0.0.1 port=1 dbname=postgres"}), &out,
                     &err),
            1)
      << out << err;
  EXPECT_EQ(err.find("instead"), std::string::npos) << err;
  EXPECT_NE(err.find("port=1"), std::string::npos) << err;
  EXPECT_EQ(err.find("warning"), std::string::npos) << err;
}

TEST_F(PgServingTest, GetAndStatusReadPostgres) {
  Registry registry(Config());
  TwoVersions(registry);
  std::string out, err;
  // The registry's DSN has no password: PGPASSWORD supplies it.
  ::setenv("PGPASSWORD", PasswordOf(dsn_).c_str(), 1);
  ::unsetenv("KAPPA_POSTGRES_DSN");
  int rc = RunKappa(Kappa("get", {"u3|1767229200000"}), &out, &err);
  ::unsetenv("PGPASSWORD");
  ASSERT_EQ(rc, 0) << out << err;
  EXPECT_EQ(out.rfind("{\"job\":\"" + job_ + "\",\"version\":1,\"key\":\"u3|1767229200000\",\"value\":{", 0), 0u) << out;
  // As a Kafka sink's JSON row: the times in epoch milliseconds, the
  // lineage (kappa_ columns) left out (two bug bashes).
  EXPECT_NE(out.find("\"window_start\":1767225600000,\"window_end\":1767229200000,\"n\":1,\"spend\":400}"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("kappa_"), std::string::npos) << out;
  // --version N reads that version's table.
  ASSERT_EQ(RunKappa(Kappa("get", {"u3|1767229200000", "--version", "2", "--postgres", dsn_}), &out, &err), 0) << out << err;
  EXPECT_NE(out.find("\"version\":2"), std::string::npos) << out;
  EXPECT_NE(out.find("\"spend\":360,\"mean\":360"), std::string::npos) << out;
  // A key with no row is an error that says where it looked.
  EXPECT_NE(RunKappa(Kappa("get", {"nobody|1", "--postgres", dsn_}), &out, &err), 0);
  EXPECT_NE(err.find("no row for key nobody|1 in PostgreSQL " + base_), std::string::npos) << err;
  // status: the tables and the view's version, through KAPPA_POSTGRES_DSN; never the password.
  ::setenv("KAPPA_POSTGRES_DSN", dsn_.c_str(), 1);
  rc = RunKappa(Kappa("status", {}), &out, &err);
  ::unsetenv("KAPPA_POSTGRES_DSN");
  ASSERT_EQ(rc, 0) << out << err;
  EXPECT_NE(out.find("postgres view " + base_ + " serves v1 (" + base_ + "_v1)"), std::string::npos) << out;
  EXPECT_NE(out.find("output postgres table " + base_ + "_v2"), std::string::npos) << out;
  EXPECT_EQ((out + err).find(PasswordOf(dsn_)), std::string::npos);
  // The serving table renamed behind kappa's back: named as gone, not
  // shown as if there (a bug bash).
  ASSERT_TRUE(pg_->Exec("ALTER TABLE " + base_ + "_v1 RENAME TO spend_v1_old").ok());
  ::setenv("KAPPA_POSTGRES_DSN", dsn_.c_str(), 1);
  rc = RunKappa(Kappa("status", {}), &out, &err);
  ::unsetenv("KAPPA_POSTGRES_DSN");
  ASSERT_EQ(rc, 0) << out << err;
  EXPECT_NE(out.find("postgres view " + base_ + " serves v1 (" + base_ +
                     "_v1: no table has that name now, renamed or dropped?"),
            std::string::npos)
      << out;
}

// `kappa get` of a PostgreSQL sink writes a row as the JSON rows of a Kafka
// sink do: row_to_json wrote NaN and the infinities as strings ("NaN",
// "Infinity": a typed client breaks on them), 2.0 as 2 and -0.0 as -0,
// which reads back as the integer 0 (a bug bash).
TEST_F(PgServingTest, ARowReadsBackWithDoublesAsTheJsonRowsWriteThem) {
  const std::string table = schema_ + ".doubles";
  ASSERT_TRUE(pg_->Exec("CREATE TABLE " + table +
                        " (kappa_key text, \"Name\" text, n bigint, ok boolean, whole double precision, "
                        "neg_zero double precision, nan double precision, inf double precision, "
                        "ninf double precision, gone double precision, frac double precision)")
                  .ok());
  ASSERT_TRUE(pg_->Exec("INSERT INTO " + table +
                        " VALUES ('k', 'a \"quoted\" name', 42, true, 2, '-0', 'NaN', 'Infinity', '-Infinity', "
                        "NULL, 0.1)")
                  .ok());
  auto row = PgRowJson(*pg_, table, "k");
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ(**row,
            R"({"Name":"a \"quoted\" name","n":42,"ok":true,"whole":2.0,"neg_zero":-0.0,)"
            R"("nan":null,"inf":null,"ninf":null,"gone":null,"frac":0.1})");
  auto none = PgRowJson(*pg_, table, "other");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
}

}  // namespace
}  // namespace kappa::testing
