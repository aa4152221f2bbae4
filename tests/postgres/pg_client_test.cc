// PgClient against a real PostgreSQL 15 (scripts/postgres.sh, CTest fixture
// `postgres`): statements, COPY with values that need escaping, the server's
// refusal of a row (its message and SQLSTATE), and connection errors that
// never carry the password.
#include "postgres/pg_client.h"

#include "base/iso_time.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/postgres/suite_dsn.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

TEST(RedactDsnTest, ThePasswordNeverSurvives) {
  EXPECT_EQ(RedactDsn("host=h port=5432 user=u password=s3cret dbname=d"),
            "host=h port=5432 user=u password=*** dbname=d");
  EXPECT_EQ(RedactDsn("password = 's3 cr\\'et' host=h"), "password=*** host=h");
  EXPECT_EQ(RedactDsn("user=u password=s3 cret more dbname=d"), "user=u password=*** *** *** dbname=d");
  EXPECT_EQ(RedactDsn("host=h"), "host=h");
  EXPECT_EQ(RedactDsn("postgresql://u:s3cret@h:5432/d?sslmode=disable"), "postgresql://u:***@h:5432/d?sslmode=disable");
  EXPECT_EQ(RedactDsn("postgres://h/d?user=u&password=s3cret&x=1"), "postgres://h/d?user=u&password=***&x=1");
  EXPECT_EQ(QuoteIdentifier("user_spend\"v2"), "\"user_spend\"\"v2\"");
}

// What the registry stores: the DSN without any trace of the password
// (libpq then takes it from PGPASSWORD or ~/.pgpass).
// The PostgreSQL sink's warning while it retries says what the server's
// trouble is: a full disk had read "PostgreSQL unreachable".
// A DSN libpq cannot parse: its message quoted the whole URI, password and
// all ("... in URI: \"postgresql://u:Hunter2Secret@[::1:1/x\""), and the
// error said to check whether the server runs. It is the user's typo: an
// InvalidArgument on one line, the password nowhere. No server is needed.
TEST(PgDsnTest, AnUnparsableDsnIsInvalidOnOneLineWithoutThePassword) {
  for (const char* dsn : {"postgresql://u:Hunter2Secret@[::1:1/x", "host=127.0.0.1 bogus_opt=1 password=Hunter2Secret",
                          "host=127.0.0.1 sslmode=bogus password='Hunter2Secret'",
                          "host=127.0.0.1 port=notaport password=Hunter2Secret",
                          "postgresql://u@127.0.0.1/x?password=Hunter2Secret&nosuch=1",
                          // An unquoted space: libpq quotes the word after it
                          // (a bug bash saw "password=*** Hunter2Secret").
                          "host=127.0.0.1 password=hunter1 Hunter2Secret dbname=x"}) {
    auto c = PgClient::Connect(dsn, std::chrono::seconds(2));
    ASSERT_FALSE(c.ok()) << dsn;
    const std::string m = c.status().message();
    EXPECT_EQ(c.status().code(), Status::Code::kInvalidArgument) << m;
    EXPECT_NE(m.find("is not valid"), std::string::npos) << m;
    EXPECT_EQ(m.find("Hunter2Secret"), std::string::npos) << "the password was printed: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.find("is the server running"), std::string::npos) << m;
  }
}

TEST(RetryableReasonTest, NamesTheTroubleForWhatRetryingCanMendAndNothingElse) {
  EXPECT_EQ(RetryableReason("08006"), "unreachable");
  EXPECT_EQ(RetryableReason("53100"), "out of disk space (53100)");
  EXPECT_EQ(RetryableReason("53200"), "out of memory (53200)");
  EXPECT_EQ(RetryableReason("53300"), "refusing connections: too many clients (53300)");
  EXPECT_EQ(RetryableReason("53400"), "out of resources (53400)");
  EXPECT_EQ(RetryableReason("57P01"), "shutting down or restarting (57P01)");
  EXPECT_EQ(RetryableReason("57P03"), "shutting down or restarting (57P03)");
  EXPECT_EQ(RetryableReason("40001"), "in a serialization conflict (40001)");
  EXPECT_EQ(RetryableReason("40P01"), "in a deadlock (40P01)");
  EXPECT_EQ(RetryableReason("55P03"), "waiting for a lock (55P03)");
  // What no retry mends: a refused row, a syntax error, a missing table, a
  // privilege; and no SQLSTATE at all.
  for (const char* code : {"23505", "22003", "42601", "42P01", "42501", "57014", ""}) {
    EXPECT_EQ(RetryableReason(code), "") << code;
  }
}

// Two spellings of one database are one database; another port, host or
// database name is another (what keeps a job's versions in one database).
TEST(PgDsnTest, DsnDatabaseNamesTheDatabaseWhateverTheSpelling) {
  const std::string a = DsnDatabase("host=127.0.0.1 port=5433 dbname=kappa user=kappa password=secret");
  EXPECT_EQ(a, "host=127.0.0.1 port=5433 dbname=kappa");
  EXPECT_EQ(DsnDatabase("postgresql://kappa:other@127.0.0.1:5433/kappa?connect_timeout=3"), a);
  EXPECT_EQ(DsnDatabase("dbname=kappa port=5433 host=127.0.0.1 sslmode=disable"), a);
  EXPECT_NE(DsnDatabase("host=127.0.0.1 port=5434 dbname=kappa"), a);
  EXPECT_NE(DsnDatabase("host=127.0.0.1 port=5433 dbname=analytics"), a);
  EXPECT_EQ(DsnDatabase("host=h user=ann"), "host=h port= dbname=ann") << "no dbname: the user's";
  EXPECT_EQ(DsnDatabase("host='unclosed"), "");
}

TEST(RedactDsnTest, DsnWithoutPasswordRemovesItInBothForms) {
  EXPECT_EQ(DsnWithoutPassword("host=h port=5432 user=u password=s3cret dbname=d"), "host=h port=5432 user=u dbname=d");
  EXPECT_EQ(DsnWithoutPassword("password = 's3 cr\\'et' host=h"), "host=h");
  EXPECT_EQ(DsnWithoutPassword("host=h password=s3cret"), "host=h");
  EXPECT_EQ(DsnWithoutPassword("host=h"), "host=h");
  EXPECT_EQ(DsnWithoutPassword("postgresql://u:s3cret@h:5432/d?sslmode=disable"), "postgresql://u@h:5432/d?sslmode=disable");
  EXPECT_EQ(DsnWithoutPassword("postgres://h/d?user=u&password=s3cret&x=1"), "postgres://h/d?user=u&x=1");
  EXPECT_EQ(DsnWithoutPassword("postgres://h/d?password=s3cret&x=1"), "postgres://h/d?x=1");
  EXPECT_EQ(DsnWithoutPassword("postgres://h/d?user=u&password=s3cret"), "postgres://h/d?user=u");
  EXPECT_EQ(DsnWithoutPassword("postgresql://u@h/d"), "postgresql://u@h/d");
  for (const char* dsn : {"host=h password=s3cret", "postgresql://u:s3cret@h/d?password=s3cret"}) {
    EXPECT_EQ(DsnWithoutPassword(dsn).find("s3cret"), std::string::npos) << dsn;
  }
}

class PgClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = SuiteDsn();
    if (dsn_.empty()) GTEST_SKIP() << "no PostgreSQL: CTest starts one (fixture postgres)";
  }
  std::string dsn_;
};

TEST_F(PgClientTest, StatementsCopyAndRefusedRows) {
  auto pg = PgClient::Connect(dsn_);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  PgClient& c = **pg;
  EXPECT_EQ(c.redacted_dsn().find(dsn_.substr(dsn_.find("password=") + 9)), std::string::npos);
  ASSERT_TRUE(c.Exec("DROP TABLE IF EXISTS pg_client_t; CREATE TABLE pg_client_t (k text PRIMARY KEY, n bigint NOT NULL CHECK (n >= 0))").ok());
  const std::vector<std::vector<std::string>> rows = {{"a", "1"}, {"tab\there", "2"}, {"new\nline\\back", "3"}};
  auto copied = c.CopyIn("pg_client_t", {"k", "n"}, rows);
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(*copied, 3);
  auto read = c.Exec("SELECT k, n FROM pg_client_t ORDER BY n");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->rows.size(), 3u);
  EXPECT_EQ(read->columns, (std::vector<std::string>{"k", "n"}));
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(read->rows[i], rows[i]);
  auto upsert = c.Exec("INSERT INTO pg_client_t VALUES ('a', 10) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n");
  ASSERT_TRUE(upsert.ok());
  EXPECT_EQ(upsert->affected, 1);

  // A row the table refuses fails the COPY with the server's words and
  // leaves the connection usable.
  auto bad = c.CopyIn("pg_client_t", {"k", "n"}, {{"b", "5"}, {"c", "-1"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kFailedPrecondition) << "not a usage error: exit 1, not 2";
  EXPECT_NE(bad.status().message().find("violates check constraint"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("SQLSTATE 23514"), std::string::npos) << bad.status().message();
  auto count = c.Exec("SELECT count(*) FROM pg_client_t");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(count->rows[0][0], "3") << "the refused COPY added nothing";
  auto syntax = c.Exec("SELEC 1");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.status().message().find("syntax error"), std::string::npos);
  ASSERT_TRUE(c.Exec("DROP TABLE pg_client_t").ok());
}

// A timestamp feature's text (base/iso_time.h's PostgresTime) reads back
// as the same millisecond across the whole range timestamptz holds, 4713
// BC to 294276 AD; before, years past 9999 and before 1 were written as
// epoch ms, which the database refused (each such row a dead letter).
TEST_F(PgClientTest, TimestampTextReadsBackAsTheSameMillisecondInEveryYearPostgresHolds) {
  auto pg = PgClient::Connect(dsn_);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  PgClient& c = **pg;
  ASSERT_TRUE(c.Exec("SET client_min_messages = warning; DROP TABLE IF EXISTS pg_client_ts; "
                     "CREATE TABLE pg_client_ts (i bigint PRIMARY KEY, t timestamptz NOT NULL)")
                  .ok());
  const int64_t kDay = 86400000;
  const std::vector<int64_t> times = {
      0,
      1767229200123,
      -62135596800000,            // 0001-01-01T00:00:00.000Z
      -62135596800000 - 1,        // the millisecond before: 1 BC
      -62135596800000 - 366 * kDay,  // 1 BC's first day (a leap year)
      -62167219200000 - 1,        // 2 BC's last millisecond
      -210866803200000,           // 4713-11-24 BC, PostgreSQL's first day
      253402300799999,            // 9999-12-31T23:59:59.999Z
      253402300800000,            // 10000-01-01
      253402300800000 + 59 * kDay + 7,  // 10000-02-29, a leap day
      9224318015999999,           // 294276-12-31T23:59:59.999Z, the last
  };
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < times.size(); ++i) {
    char buf[32];
    rows.push_back({std::to_string(i), std::string(buf, PostgresTime(times[i], buf))});
  }
  auto copied = c.CopyIn("pg_client_ts", {"i", "t"}, rows);
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  auto read = c.Exec("SELECT i, (extract(epoch FROM t) * 1000)::bigint FROM pg_client_ts ORDER BY i");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->rows.size(), times.size());
  for (size_t i = 0; i < times.size(); ++i) {
    EXPECT_EQ(read->rows[i][1], std::to_string(times[i])) << rows[i][1];
  }
  // Beyond what timestamptz holds the database still refuses the row.
  char buf[32];
  auto beyond = c.CopyIn("pg_client_ts", {"i", "t"},
                         {{"100", std::string(buf, PostgresTime(9224318016000000 + kDay * 400, buf))}});
  EXPECT_FALSE(beyond.ok()) << buf;
  ASSERT_TRUE(c.Exec("DROP TABLE pg_client_ts").ok());
}

TEST_F(PgClientTest, ConnectionErrorsSayWhatToDoAndHideThePassword) {
  const std::string password = dsn_.substr(dsn_.find("password=") + 9);
  // A wrong password: refused, FailedPrecondition.
  std::string wrong = dsn_.substr(0, dsn_.find("password=")) + "password=not-" + password;
  auto refused = PgClient::Connect(wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("password authentication failed"), std::string::npos);
  EXPECT_NE(refused.status().message().find("password=***"), std::string::npos);
  EXPECT_EQ(refused.status().message().find(password), std::string::npos) << "the password was printed";
  // No password at all (the registry's DSN, in a shell without PGPASSWORD):
  // says where the password goes, not "is the server running".
  ::unsetenv("PGPASSWORD");
  ::setenv("PGPASSFILE", "/nonexistent/pgpass", 1);
  auto none = PgClient::Connect(DsnWithoutPassword(dsn_));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kFailedPrecondition) << none.status().ToString();
  EXPECT_NE(none.status().message().find("set PGPASSWORD or add the password to ~/.pgpass"), std::string::npos)
      << none.status().message();
  EXPECT_EQ(none.status().message().find("is the server running"), std::string::npos) << none.status().message();
  // Nothing listening: Unavailable, within the timeout.
  auto down = PgClient::Connect("host=127.0.0.1 port=9 dbname=postgres user=kappa password=" + password,
                                std::chrono::seconds(2));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Status::Code::kUnavailable) << down.status().ToString();
  EXPECT_NE(down.status().message().find("Is the server running"), std::string::npos);
  EXPECT_EQ(down.status().message().find(password), std::string::npos) << "the password was printed";
  // A server that takes no more sessions for the role (SQLSTATE 53300) is up:
  // it was asked whether it ran (a bug bash).
  auto admin = PgClient::Connect(dsn_);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  const std::string role = "kappa_one_session_" + std::to_string(::getpid());
  ASSERT_TRUE((*admin)->Exec("CREATE ROLE " + role + " LOGIN PASSWORD 'one' CONNECTION LIMIT 1").ok());
  {
    const std::string limited = dsn_ + " user=" + role + " password=one";
    auto first = PgClient::Connect(limited);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    auto second = PgClient::Connect(limited);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Status::Code::kUnavailable) << second.status().ToString();
    EXPECT_NE(second.status().message().find("too many connections for role"), std::string::npos)
        << second.status().message();
    EXPECT_NE(second.status().message().find("the server is up but takes no more sessions"), std::string::npos)
        << second.status().message();
    EXPECT_EQ(second.status().message().find("is the server running"), std::string::npos)
        << second.status().message();
  }
  EXPECT_TRUE((*admin)->Exec("DROP ROLE " + role).ok());
}

}  // namespace
}  // namespace kappa::testing
