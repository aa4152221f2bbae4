// scripts/postgres.sh, the PostgreSQL server the database tests run against
// (issue 13): a server of its own on a free loopback port with password
// authentication, reachable through libpq with the DSN it prints, refusing a
// wrong password, and stopped (its data removed) once the process that owns
// it is gone, so a crashed test leaves no server behind.
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

std::string LastLine(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const size_t at = text.rfind('\n');
  return at == std::string::npos ? text : text.substr(at + 1);
}

// What `select current_user` answers over `dsn`, or the connection error.
std::string CurrentUser(const std::string& dsn) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  std::string out;
  if (PQstatus(conn) != CONNECTION_OK) {
    out = std::string("error: ") + PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, "select current_user");
    out = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : std::string("error: ") + PQerrorMessage(conn);
    PQclear(r);
  }
  PQfinish(conn);
  return out;
}

TEST(PostgresScriptTest, AServerOfItsOwnRefusesWrongPasswordsAndEndsWithItsOwner) {
  ScratchDir dir("postgres-script");
  const pid_t owner = fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Whatever fails below, the owner (and so the server) does not outlive the test.
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    }
  } reap{owner};
  const std::string pg = dir / "pg";
  const std::string dsn = LastLine(RunShell("timeout 120 " + std::string(KAPPA_SOURCE_DIR) + "/scripts/postgres.sh start --dir " +
                                            pg + " --owner " + std::to_string(owner)));
  ASSERT_TRUE(std::regex_match(dsn, std::regex("host=127\\.0\\.0\\.1 port=[0-9]+ dbname=postgres user=kappa password=\\S+")))
      << dsn;
  EXPECT_EQ(ReadFile(pg + "/dsn"), dsn + "\n");
  EXPECT_EQ(CurrentUser(dsn), "kappa");
  const std::string wrong = std::regex_replace(dsn, std::regex("password=\\S+"), "password=wrong");
  EXPECT_NE(CurrentUser(wrong).find("password authentication failed"), std::string::npos);

  // The owner exits: the watcher stops the server and removes its data.
  kill(owner, SIGKILL);
  waitpid(owner, nullptr, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::filesystem::exists(pg + "/data") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_FALSE(std::filesystem::exists(pg + "/data")) << "the server outlived its owner";
  EXPECT_EQ(CurrentUser(dsn).rfind("error: ", 0), 0u) << "still accepting connections";
}

}  // namespace
}  // namespace kappa::testing
