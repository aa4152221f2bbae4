// PgClient: one libpq connection to PostgreSQL, for the PostgreSQL sink and
// the serving views (issue 13). Statements run one at a time; errors carry
// the server's message and SQLSTATE, never the password of the DSN (every
// message names the server through RedactDsn). Not thread-safe: one per
// thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

struct pg_conn;
struct pg_result;

namespace kappa {

// The DSN with its password replaced by "***", in both libpq forms:
// key=value ("host=h password=secret", quoted values included) and URI
// ("postgresql://user:secret@host/db", "?password=secret").
std::string RedactDsn(std::string_view dsn);
// The DSN with its password removed altogether (both forms), for what kappa
// stores (the registry in the control topic): libpq then takes the password
// from PGPASSWORD or ~/.pgpass.
std::string DsnWithoutPassword(std::string_view dsn);
// Which database a DSN names: "host=H port=P dbname=D" from the values it
// sets (either form; an unset one stays empty, libpq's default), so that
// two spellings of one database compare equal. "" if it does not parse.
std::string DsnDatabase(std::string_view dsn);

// One result: rows of text values (NULL reads as "").
struct PgRows {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  int64_t affected = 0;  // INSERT/UPDATE/DELETE/COPY: rows the statement touched
};

class PgClient {
 public:
  // Connects within `timeout`. Unavailable when the server cannot be reached
  // (down, wrong port), FailedPrecondition when it refuses (authentication,
  // unknown database); the message names the redacted DSN and what to do.
  static Result<std::unique_ptr<PgClient>> Connect(const std::string& dsn,
                                                   std::chrono::seconds timeout = std::chrono::seconds(10));
  ~PgClient();
  PgClient(const PgClient&) = delete;
  PgClient& operator=(const PgClient&) = delete;

  // Runs one or more statements (no parameters). Errors: FailedPrecondition
  // for what the server refuses (syntax, constraint: the message has the
  // server's text and SQLSTATE), Unavailable when the connection is lost.
  Result<PgRows> Exec(const std::string& sql);
  // COPY `table` (`columns`) FROM STDIN in text format, one row per entry
  // (values escaped here: backslash, tab, newline, carriage return). Returns
  // the rows copied. A row the table refuses fails the whole COPY.
  Result<int64_t> CopyIn(const std::string& table, const std::vector<std::string>& columns,
                         const std::vector<std::vector<std::string>>& rows);
  // The same with the rows already in COPY text format (each line escaped
  // with AppendCopyText, tab-separated, ending in a newline).
  Result<int64_t> CopyInText(const std::string& table, const std::vector<std::string>& columns,
                             std::string_view data);
  // Called about every 200 ms while a statement waits for the server (its
  // answer, or room to send), with the seconds waited so far; returning
  // false abandons the statement: the connection is closed (the server rolls
  // back what it had of the transaction) and the call fails Unavailable. A
  // server that stopped answering on an open connection (a hung backend, a
  // network path dropped without a reset) held the job in poll() for good,
  // silent, and a SIGTERM could not end it (a bug bash). None: wait.
  void SetWaitHook(std::function<bool(double waited_s)> hook) { wait_hook_ = std::move(hook); }

  // The SQLSTATE of the last statement the server refused ("" after a
  // success or a lost connection), e.g. "23505" for a unique violation.
  const std::string& last_sqlstate() const { return last_sqlstate_; }

  // "host=127.0.0.1 port=5432 ... password=***".
  const std::string& redacted_dsn() const { return redacted_; }

 private:
  PgClient(pg_conn* conn, std::string redacted) : conn_(conn), redacted_(std::move(redacted)) {}
  Status ConnectionError(const std::string& what) const;
  // Sends `sql` and waits for its results (the last one, or the error that
  // ended it; null and *error set when the connection failed or the wait
  // was abandoned).
  struct pg_result* Run(const std::string& sql, Status* error);
  // Wait until libpq has sent what it holds / can hand out a result,
  // asking the wait hook; not OK when the connection failed or the wait
  // was abandoned.
  Status FlushOut(const std::string& what);
  Status AwaitResult(const std::string& what);
  Status WaitSocket(bool for_write, const std::string& what, double* waited_s);

  pg_conn* conn_;
  std::function<bool(double)> wait_hook_;
  bool abandoned_ = false;  // a wait was given up: the connection is closed
  std::string redacted_;
  std::string last_sqlstate_;
};

// The other sessions holding locks on `relations` (names as written, e.g.
// "analytics.spend_v2"), for a message about a lock wait: "pid 4242 (user
// kappa, idle in transaction: LOCK TABLE spend_v2 IN ACCESS EXCLUSIVE MODE)";
// at most five; "another session (see pg_locks)" when none can be read (the
// holder just let go, or no rights to see it). Outside a failed transaction
// only.
std::string DescribeLockHolders(PgClient& pg, const std::vector<std::string>& relations);

// What keeps PostgreSQL from taking a statement, when retrying can mend it,
// in a few words for a warning ("PostgreSQL <reason> (server's message)"),
// from the statement's SQLSTATE: "unreachable" (class 08), "out of disk
// space (53100)", "shutting down or restarting (57P01)"... Empty for any
// other SQLSTATE (a syntax error, a refused row, a missing table) and for
// none at all (a lost connection has none: the caller knows it from its
// Unavailable status).
std::string RetryableReason(std::string_view sqlstate);

// A SQL identifier, double-quoted ("user_spend_v2", quotes doubled).
std::string QuoteIdentifier(std::string_view name);
// A string literal ('it''s'); standard_conforming_strings is on in every
// supported PostgreSQL, so backslashes are plain characters.
std::string QuoteLiteral(std::string_view value);

}  // namespace kappa
