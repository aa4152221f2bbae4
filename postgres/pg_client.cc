#include "postgres/pg_client.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cctype>

#include "postgres/copy_text.h"

namespace kappa {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// key=value form: each `password = value` (value bare or single-quoted with
// backslash escapes) becomes password=***.
// With drop, the password's key=value goes altogether (and the space before it).
std::string RedactKeyValue(std::string_view dsn, bool drop = false) {
  std::string out;
  size_t i = 0;
  bool after_password = false;
  while (i < dsn.size()) {
    if (IsSpace(dsn[i])) {
      out.push_back(dsn[i++]);
      continue;
    }
    size_t key_end = i;
    while (key_end < dsn.size() && dsn[key_end] != '=' && !IsSpace(dsn[key_end])) ++key_end;
    const std::string_view key = dsn.substr(i, key_end - i);
    size_t j = key_end;
    while (j < dsn.size() && IsSpace(dsn[j])) ++j;
    if (j >= dsn.size() || dsn[j] != '=') {
      // Not key=value: kept as it is, unless it follows a password, where it
      // is likely the rest of one with an unquoted space ("password=ab cd"),
      // which libpq refuses and the message showed (a bug bash).
      if (after_password) {
        if (!drop) out.append("***");
      } else {
        out.append(dsn.substr(i, key_end - i));
      }
      i = key_end;
      continue;
    }
    after_password = key == "password";
    ++j;
    while (j < dsn.size() && IsSpace(dsn[j])) ++j;
    size_t v = j;
    if (v < dsn.size() && dsn[v] == '\'') {
      ++v;
      while (v < dsn.size() && dsn[v] != '\'') v += (dsn[v] == '\\' && v + 1 < dsn.size()) ? 2 : 1;
      if (v < dsn.size()) ++v;
    } else {
      while (v < dsn.size() && !IsSpace(dsn[v])) v += (dsn[v] == '\\' && v + 1 < dsn.size()) ? 2 : 1;
    }
    if (key == "password" && drop) {
      while (!out.empty() && IsSpace(out.back())) out.pop_back();
      i = v;
      continue;
    }
    out.append(key).append("=");
    out.append(key == "password" ? std::string_view("***") : dsn.substr(j, v - j));
    i = v;
  }
  return out;
}

// URI form: postgresql://user:secret@host/db?password=secret&...
// With drop, ":secret" and the password parameter go altogether.
std::string RedactUri(std::string_view dsn, bool drop = false) {
  std::string out(dsn);
  const size_t scheme = out.find("://");
  const size_t authority = scheme + 3;
  const size_t end = out.find_first_of("/?", authority);
  const size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
  if (at != std::string::npos && at > authority) {
    const size_t colon = out.find(':', authority);
    if (colon != std::string::npos && colon < at) {
      if (drop) {
        out.erase(colon, at - colon);
      } else {
        out.replace(colon + 1, at - colon - 1, "***");
      }
    }
  }
  for (size_t q = out.find("password=", 0); q != std::string::npos; q = out.find("password=", q + 1)) {
    if (q > 0 && out[q - 1] != '?' && out[q - 1] != '&') continue;
    const size_t v = q + 9;
    const size_t amp = out.find('&', v);
    if (!drop) {
      out.replace(v, (amp == std::string::npos ? out.size() : amp) - v, "***");
      continue;
    }
    if (amp != std::string::npos) {
      out.erase(q, amp + 1 - q);  // "password=x&" (the next parameter takes its separator)
    } else {
      out.erase(q - 1);  // "?password=x" or "&password=x" at the end
    }
    q = q > 0 ? q - 1 : 0;
  }
  return out;
}

std::string OneLine(std::string msg);

// The server's message with its SQLSTATE, which also goes to *sqlstate.
std::string ServerMessage(const PGresult* r, pg_conn* conn, std::string* sqlstate) {
  std::string msg = OneLine(r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  if (state != nullptr) msg += " (SQLSTATE " + std::string(state) + ")";
  *sqlstate = state != nullptr ? state : "";
  return msg;
}

// libpq's text on one line: "...failed: Connection refused\n\tIs the server
// running...?" becomes "...; Is the server running...?".
std::string OneLine(std::string msg) {
  while (!msg.empty() && IsSpace(msg.back())) msg.pop_back();
  std::string out;
  for (size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] != '\n' && msg[i] != '\r') {
      out.push_back(msg[i]);
      continue;
    }
    while (i + 1 < msg.size() && IsSpace(msg[i + 1])) ++i;
    out += "; ";
  }
  return out;
}

// Every place the DSN's password could show in a libpq message replaced by
// "***": the whole DSN as given (libpq quotes a URI it cannot parse), the
// password libpq parsed out of it (both forms), and, for a DSN libpq cannot
// parse, what the key=value and URI forms would hold there.
std::string Scrub(std::string msg, const std::string& dsn, const std::string& redacted) {
  auto replace_all = [&msg](const std::string& secret, const std::string& with) {
    if (secret.empty()) return;
    for (size_t at = msg.find(secret); at != std::string::npos; at = msg.find(secret, at + with.size())) {
      msg.replace(at, secret.size(), with);
    }
  };
  replace_all(dsn, redacted);
  std::vector<std::string> secrets;
  char* error = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::string_view(o->keyword) == "password" && o->val != nullptr) secrets.emplace_back(o->val);
    }
    PQconninfoFree(options);
  }
  if (error) PQfreemem(error);
  if (const size_t p = dsn.find("password="); p != std::string::npos) {
    size_t at = dsn.find_first_of(" &'", p + 9);
    secrets.push_back(dsn.substr(p + 9, at - (p + 9)));
    // And the words after it up to the next key=value: the rest of a
    // password with an unquoted space, which libpq's message quotes.
    while (at != std::string::npos && dsn[at] == ' ') {
      const size_t begin = dsn.find_first_not_of(' ', at);
      if (begin == std::string::npos) break;
      at = dsn.find(' ', begin);
      const std::string word = dsn.substr(begin, at == std::string::npos ? std::string::npos : at - begin);
      if (word.find('=') != std::string::npos) break;
      secrets.push_back(word);
    }
  }
  if (const size_t scheme = dsn.find("://"); scheme != std::string::npos) {
    const size_t at = dsn.find('@', scheme + 3);
    const size_t colon = dsn.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      secrets.push_back(dsn.substr(colon + 1, at - colon - 1));
    }
  }
  for (const auto& secret : secrets) {
    if (secret.size() >= 3) replace_all(secret, "***");  // shorter ones would mangle the text, and guess little
  }
  return msg;
}

}  // namespace

std::string RedactDsn(std::string_view dsn) {
  if (dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0) return RedactUri(dsn);
  return RedactKeyValue(dsn);
}

std::string DsnWithoutPassword(std::string_view dsn) {
  if (dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0) return RedactUri(dsn, true);
  std::string out = RedactKeyValue(dsn, true);
  while (!out.empty() && IsSpace(out.front())) out.erase(out.begin());
  return out;
}

std::string DsnDatabase(std::string_view dsn) {
  const std::string text(dsn);
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (error) PQfreemem(error);
  if (options == nullptr) return "";
  std::string host, port, dbname, user;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view k(o->keyword);
    if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") dbname = o->val;
    if (k == "user") user = o->val;
  }
  PQconninfoFree(options);
  // Without a dbname, PostgreSQL takes the user's name.
  return "host=" + host + " port=" + port + " dbname=" + (dbname.empty() ? user : dbname);
}

std::string DescribeLockHolders(PgClient& pg, const std::vector<std::string>& relations) {
  std::string list;
  for (const auto& r : relations) {
    list += (list.empty() ? "" : ", ") + std::string("to_regclass(") + QuoteLiteral(r) + ")";
  }
  const std::string unknown = "another session (see pg_locks)";
  if (list.empty()) return unknown;
  auto rows = pg.Exec(
      "SELECT a.pid, coalesce(a.usename, ''), coalesce(a.state, ''), "
      "left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80) FROM pg_stat_activity a "
      "WHERE a.pid <> pg_backend_pid() AND a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.granted AND "
      "l.relation IN (" + list + ")) ORDER BY a.pid LIMIT 5");
  if (!rows.ok()) return unknown;
  std::string out;
  for (const auto& r : rows->rows) {
    out += (out.empty() ? "" : ", ") + std::string("pid ") + r[0] + " (user " + r[1] + ", " + r[2] + ": " + r[3] + ")";
  }
  return out.empty() ? unknown : out;
}

std::string QuoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

std::string RetryableReason(std::string_view sqlstate) {
  const std::string code(sqlstate);
  auto starts = [&](std::string_view prefix) { return sqlstate.substr(0, prefix.size()) == prefix; };
  if (sqlstate.empty()) return "";
  if (starts("08")) return "unreachable";
  if (sqlstate == "53100") return "out of disk space (53100)";
  if (sqlstate == "53200") return "out of memory (53200)";
  if (sqlstate == "53300") return "refusing connections: too many clients (53300)";
  if (starts("53")) return "out of resources (" + code + ")";
  if (starts("57P")) return "shutting down or restarting (" + code + ")";
  if (sqlstate == "40001") return "in a serialization conflict (40001)";
  if (sqlstate == "40P01") return "in a deadlock (40P01)";
  if (sqlstate == "55P03") return "waiting for a lock (55P03)";
  return "";
}

std::string QuoteLiteral(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

Result<std::unique_ptr<PgClient>> PgClient::Connect(const std::string& dsn, std::chrono::seconds timeout) {
  const std::string redacted = RedactDsn(dsn);
  // A DSN libpq cannot parse is the user's typo, not a server to wait for;
  // and libpq's message about it quotes the DSN, password and all.
  {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
    if (options == nullptr) {
      const std::string why = error ? OneLine(error) : std::string("out of memory");
      if (error) PQfreemem(error);
      return Status::InvalidArgument("PostgreSQL dsn " + redacted + " is not valid: " + Scrub(why, dsn, redacted) +
                                     "; see libpq's connection strings (key=value pairs, or postgresql://user@host:"
                                     "port/db?param=value)");
    }
    PQconninfoFree(options);
  }
  const std::string timeout_text = std::to_string(std::max<int64_t>(1, timeout.count()));
  // The DSN as given, its connect_timeout (if any) replaced by `timeout`:
  // libpq lets parameters after the expanded dbname override it.
  const char* keys[] = {"dbname", "connect_timeout", nullptr};
  const char* values[] = {dsn.c_str(), timeout_text.c_str(), nullptr};
  pg_conn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Status::Unavailable("PostgreSQL " + redacted + ": out of memory connecting");
  if (PQstatus(conn) != CONNECTION_OK) {
    // libpq's messages name host and port, not the password; scrubbed
    // anyway should one echo the connection string.
    const std::string msg = Scrub(OneLine(PQerrorMessage(conn)), dsn, redacted);
    PQfinish(conn);
    // A value libpq checks only as it connects ("invalid sslmode value",
    // "invalid integer value ... for connection option \"port\""): a typo too.
    if (msg.rfind("invalid ", 0) == 0) {
      return Status::InvalidArgument("PostgreSQL dsn " + redacted + " is not valid: " + msg);
    }
    if (msg.find("no password supplied") != std::string::npos) {
      // What `kappa get`, `status` and `promote` meet in a shell without
      // the password: the registry keeps every DSN without it.
      return Status::FailedPrecondition("PostgreSQL " + redacted + ": " + msg +
                                        ": set PGPASSWORD or add the password to ~/.pgpass (kappa's registry "
                                        "keeps the dsn without it), or pass --postgres with a dsn that has it");
    }
    const bool refused = msg.find("authentication") != std::string::npos ||
                         msg.find("does not exist") != std::string::npos ||
                         msg.find("no pg_hba.conf entry") != std::string::npos;
    const std::string text = "PostgreSQL " + redacted + ": " + msg;
    if (refused) return Status::FailedPrecondition(text + "; check the user, password and database in the dsn");
    // SQLSTATE 53300: the server is up and refuses another session. It was
    // asked whether it ran at all (a bug bash, a role's CONNECTION LIMIT 1).
    if (msg.find("too many connections") != std::string::npos || msg.find("too many clients") != std::string::npos ||
        msg.find("connection slots are reserved") != std::string::npos) {
      return Status::Unavailable(text + "; the server is up but takes no more sessions for this role or database "
                                        "(each kappa process writing to it holds one, and `kappa get`, `status` "
                                        "and `promote` one each while they run): raise the role's CONNECTION "
                                        "LIMIT or the server's max_connections, or stop other clients");
    }
    // libpq's own text asks it already when it could not connect.
    if (msg.find("Is the server running") != std::string::npos) return Status::Unavailable(text);
    return Status::Unavailable(text + "; is the server running and reachable at that host and port?");
  }
  // The server's notices ("relation ... already exists, skipping" after
  // IF NOT EXISTS) are not errors; libpq would print them to stderr.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  // Statements are sent and waited for with poll (PgClient::Run), so that a
  // server that stops answering can be given up.
  if (PQsetnonblocking(conn, 1) != 0) {
    const std::string msg = OneLine(PQerrorMessage(conn));
    PQfinish(conn);
    return Status::Unavailable("PostgreSQL " + redacted + ": " + msg);
  }
  return std::unique_ptr<PgClient>(new PgClient(conn, redacted));
}

PgClient::~PgClient() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Status PgClient::ConnectionError(const std::string& what) const {
  const std::string msg = OneLine(PQerrorMessage(conn_));
  return Status::Unavailable("PostgreSQL " + redacted_ + ": " + what + ": " + msg);
}

Status PgClient::WaitSocket(bool for_write, const std::string& what, double* waited_s) {
  const int fd = PQsocket(conn_);
  if (fd < 0) return ConnectionError(what);
  pollfd p{fd, static_cast<short>(POLLIN | (for_write ? POLLOUT : 0)), 0};
  const int n = ::poll(&p, 1, 200);
  if (n > 0) return Status::OK();
  *waited_s += 0.2;
  if (wait_hook_ && !wait_hook_(*waited_s)) {
    // The session's backend rolls back once it notices the socket closed.
    abandoned_ = true;
    PQfinish(conn_);
    conn_ = nullptr;
    return Status::Unavailable("PostgreSQL " + redacted_ + " had not answered " + what + " after " +
                               std::to_string(static_cast<int>(*waited_s)) +
                               " s; the statement was abandoned and the connection closed");
  }
  return Status::OK();
}

Status PgClient::FlushOut(const std::string& what) {
  double waited = 0;
  while (true) {
    const int left = PQflush(conn_);
    if (left == 0) return Status::OK();
    if (left < 0) return ConnectionError(what);
    KAPPA_RETURN_IF_ERROR(WaitSocket(/*for_write=*/true, what, &waited));
    // Reading what the server sends meanwhile keeps it from blocking on us.
    if (PQconsumeInput(conn_) == 0) return ConnectionError(what);
  }
}

Status PgClient::AwaitResult(const std::string& what) {
  double waited = 0;
  while (true) {
    if (PQconsumeInput(conn_) == 0) return ConnectionError(what);
    if (PQisBusy(conn_) == 0) return Status::OK();
    KAPPA_RETURN_IF_ERROR(WaitSocket(/*for_write=*/false, what, &waited));
  }
}

PGresult* PgClient::Run(const std::string& sql, Status* error) {
  if (abandoned_ || conn_ == nullptr) {
    *error = Status::Unavailable("PostgreSQL " + redacted_ + ": the connection was closed after a wait was abandoned");
    return nullptr;
  }
  if (PQsendQuery(conn_, sql.c_str()) == 0) {
    *error = ConnectionError("connection lost");
    return nullptr;
  }
  if (Status st = FlushOut("a statement"); !st.ok()) {
    *error = st;
    return nullptr;
  }
  // As PQexec: the last result, or the error that ended the statements.
  PGresult* last = nullptr;
  while (true) {
    if (Status st = AwaitResult("a statement"); !st.ok()) {
      if (last) PQclear(last);
      *error = st;
      return nullptr;
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    const ExecStatusType type = PQresultStatus(r);
    const bool failed = type == PGRES_FATAL_ERROR;
    // As PQexec: an error result is kept over what came before it.
    if (last && (failed || PQresultStatus(last) != PGRES_FATAL_ERROR)) {
      PQclear(last);
      last = r;
    } else if (last) {
      PQclear(r);
    } else {
      last = r;
    }
    // COPY ... FROM STDIN hands over to the caller with this result.
    if (type == PGRES_COPY_IN || type == PGRES_COPY_OUT || type == PGRES_COPY_BOTH) break;
  }
  if (last == nullptr) *error = ConnectionError("connection lost");
  return last;
}

Result<PgRows> PgClient::Exec(const std::string& sql) {
  last_sqlstate_.clear();
  Status lost;
  PGresult* r = Run(sql, &lost);
  if (r == nullptr) return lost;
  if (PQstatus(conn_) != CONNECTION_OK) {
    PQclear(r);
    return ConnectionError("connection lost");
  }
  PgRows out;
  const ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK) {
    const int cols = PQnfields(r);
    for (int c = 0; c < cols; ++c) out.columns.emplace_back(PQfname(r, c));
    for (int row = 0; row < PQntuples(r); ++row) {
      auto& values = out.rows.emplace_back();
      for (int c = 0; c < cols; ++c) values.emplace_back(PQgetvalue(r, row, c), PQgetlength(r, row, c));
    }
  } else if (st == PGRES_COMMAND_OK) {
    const char* n = PQcmdTuples(r);
    out.affected = (n && *n) ? std::stoll(n) : 0;
  } else {
    const std::string msg = ServerMessage(r, conn_, &last_sqlstate_);
    PQclear(r);
    // Not a usage error of kappa's (exit 2): what the database refuses
    // (rights, a constraint, a lock timeout) is a failed precondition.
    return Status::FailedPrecondition("PostgreSQL " + redacted_ + " refused the statement: " + msg);
  }
  PQclear(r);
  return out;
}

Result<int64_t> PgClient::CopyIn(const std::string& table, const std::vector<std::string>& columns,
                                 const std::vector<std::vector<std::string>>& rows) {
  std::string data;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) data.push_back('\t');
      AppendCopyText(data, row[i]);
    }
    data.push_back('\n');
  }
  return CopyInText(table, columns, data);
}

Result<int64_t> PgClient::CopyInText(const std::string& table, const std::vector<std::string>& columns,
                                     std::string_view data) {
  last_sqlstate_.clear();
  std::string sql = "COPY " + table + " (";
  for (size_t i = 0; i < columns.size(); ++i) sql += (i ? ", " : "") + QuoteIdentifier(columns[i]);
  sql += ") FROM STDIN";
  Status lost;
  PGresult* r = Run(sql, &lost);
  if (r == nullptr) return lost;
  if (PQstatus(conn_) != CONNECTION_OK) {
    PQclear(r);
    return ConnectionError("COPY");
  }
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    const std::string msg = ServerMessage(r, conn_, &last_sqlstate_);
    PQclear(r);
    return Status::FailedPrecondition("PostgreSQL " + redacted_ + " refused the COPY: " + msg);
  }
  PQclear(r);
  // Nonblocking while the rows go out: a server that stops reading fills
  // the socket, and a blocking write would wait in the kernel for good.
  constexpr size_t kChunk = 1 << 16;
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min(kChunk, data.size() - at);
    const int put = PQputCopyData(conn_, data.data() + at, static_cast<int>(n));
    if (put < 0) return ConnectionError("COPY data");
    if (put == 0) {  // libpq's buffer is full: send it first
      KAPPA_RETURN_IF_ERROR(FlushOut("the COPY's rows"));
      continue;
    }
    at += n;
  }
  while (true) {
    const int end = PQputCopyEnd(conn_, nullptr);
    if (end < 0) return ConnectionError("COPY end");
    if (end == 1) break;
    KAPPA_RETURN_IF_ERROR(FlushOut("the COPY's rows"));
  }
  KAPPA_RETURN_IF_ERROR(FlushOut("the COPY's rows"));
  KAPPA_RETURN_IF_ERROR(AwaitResult("the COPY"));
  r = PQgetResult(conn_);
  int64_t copied = 0;
  Status st;
  if (r == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    st = ConnectionError("COPY result");
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    st = Status::FailedPrecondition("PostgreSQL " + redacted_ + " refused a row of the COPY into " + table + ": " +
                                 ServerMessage(r, conn_, &last_sqlstate_));
  } else {
    const char* n = PQcmdTuples(r);
    copied = (n && *n) ? std::stoll(n) : 0;
  }
  if (r) PQclear(r);
  while (AwaitResult("the COPY").ok() && (r = PQgetResult(conn_)) != nullptr) PQclear(r);
  if (!st.ok()) return st;
  return copied;
}

}  // namespace kappa
