#include "engine/postgres_sink.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "base/clock.h"
#include "engine/kafka_sink.h"
#include "engine/postgres_table.h"
#include "postgres/copy_text.h"
#include "postgres/pg_client.h"

namespace kappa {
namespace {

constexpr const char* kTempTable = "kappa_epoch_rows";
constexpr int kFlushTimeoutMs = 150000;
constexpr auto kConnectTimeout = std::chrono::seconds(10);
// How long one statement waits for a lock on the table (an ALTER, a VACUUM
// FULL, a LOCK TABLE, a session left idle in a transaction holding one):
// then the attempt fails with 55P03 and is retried, with a warning naming
// the holders every 10 s, and a stop is honoured between attempts.
constexpr const char* kLockTimeout = "5s";

// A refusal of one row's values: integrity constraints (23: NOT NULL,
// CHECK, UNIQUE other than the key, foreign keys) and data exceptions (22:
// out of range, invalid text, a timestamp outside the type's range).
bool RowRefusal(const std::string& sqlstate) {
  // 54000 (program_limit_exceeded) is a row too large for the table or
  // for the key's index (a window key over ~2.7 KB): that row would be
  // refused on every restart.
  return sqlstate.size() == 5 &&
         (sqlstate.rfind("22", 0) == 0 || sqlstate.rfind("23", 0) == 0 || sqlstate == "54000");
}

// Why a failed attempt is worth waiting for, in a few words: the server
// gone, restarting, out of connections or of disk (class 53), a transaction
// that lost a conflict (RetryableReason); "" if it is not.
std::string Transient(const Status& st, const std::string& sqlstate) {
  std::string reason = RetryableReason(sqlstate);
  if (reason.empty() && st.code() == Status::Code::kUnavailable) reason = "unreachable";
  return reason;
}

// A key for a log line: control bytes (a NUL ended the line there) as \xNN.
std::string PrintableKey(std::string_view key) {
  std::string out;
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

}  // namespace

PostgresSink::PostgresSink(const JobSpec& spec, KafkaSink* kafka, NoteCallback on_note)
    : spec_(spec), kafka_(kafka), on_note_(std::move(on_note)) {}

PostgresSink::~PostgresSink() = default;

Result<std::unique_ptr<PostgresSink>> PostgresSink::Create(const JobSpec& spec, KafkaSink* kafka,
                                                           NoteCallback on_note) {
  std::unique_ptr<PostgresSink> sink(new PostgresSink(spec, kafka, std::move(on_note)));
  sink->table_ = QuoteQualified(spec.PostgresTable());
  sink->offsets_ = PgOffsetsTable(spec.postgres_table);
  sink->version_text_ = std::to_string(spec.version);
  std::string names, updates, changed_old, changed_new;
  for (const PgColumn& c : PostgresColumns(spec)) {
    const std::string q = QuoteIdentifier(c.name);
    sink->columns_.push_back(c.name);
    names += (names.empty() ? "" : ", ") + q;
    if (c.name == "kappa_key") continue;
    updates += (updates.empty() ? "" : ", ") + q + " = EXCLUDED." + q;
    changed_old += (changed_old.empty() ? "" : ", ") + sink->table_ + "." + q;
    changed_new += (changed_new.empty() ? "" : ", ") + std::string("EXCLUDED.") + q;
  }
  // A row that is already there unchanged is not rewritten (a re-run of
  // the same history leaves the table as it was, without dead tuples).
  sink->upsert_sql_ = "INSERT INTO " + sink->table_ + " (" + names + ") SELECT " + names + " FROM " + kTempTable +
                      " ON CONFLICT (kappa_key) DO UPDATE SET " + updates + " WHERE (" + changed_old +
                      ") IS DISTINCT FROM (" + changed_new + ")";
  KAPPA_RETURN_IF_ERROR(sink->Connect(/*with_temp_table=*/false));
  KAPPA_RETURN_IF_ERROR(sink->PrepareTables());
  return sink;
}

Status PostgresSink::Connect(bool with_temp_table, bool retried) {
  // The session before is closed first: a job holds one session, and a
  // role limited to one (CONNECTION LIMIT 1) was refused its second at the
  // start, when the setup's session still stood (a bug bash).
  client_.reset();
  connect_sqlstate_.clear();
  auto client = PgClient::Connect(spec_.postgres_dsn, kConnectTimeout);
  if (!client.ok()) return client.status();
  client_ = std::move(*client);
  // A server that stops answering (a hung backend, a network path lost
  // without a reset) held the job in poll() for good, silent, its status
  // line and waiting gauge frozen, and a SIGTERM could not end it (a bug
  // bash). Said every 10 s; a stop gives the statement up (its transaction
  // is not committed: the last checkpoint stands).
  client_->SetWaitHook([this, next_note_s = 10.0](double waited_s) mutable {
    if (waited_s < 0.5) next_note_s = 10;  // a new wait
    if (waited_s >= 10) {
      if (waiting_since_ms_ == 0) waiting_since_ms_ = WallClockMs() - static_cast<int64_t>(waited_s * 1000);
      waiting_reason_ = "not answering";
      if (waited_s >= next_note_s) {
        Note(NoteLevel::kWarning, "PostgreSQL " + client_->redacted_dsn() + " has not answered a statement for " +
                                      std::to_string(static_cast<int>(waited_s)) +
                                      " s (a statement that long, a hung server, or the network path to it lost): "
                                      "still waiting, nothing is read meanwhile; stopping the job (SIGTERM) gives the "
                                      "statement up, its epoch uncommitted and the last checkpoint intact");
        next_note_s = waited_s + 10;
      }
      if (while_waiting_) while_waiting_();
    }
    return !stop_.stop_requested();
  });
  // kappa's own statements are not bounded by a role's or database's
  // statement_timeout: an epoch's COPY longer than one failed at every
  // restart, for good, blamed on "a row" (a bug bash, 150 ms on the role).
  if (Status st = client_->Exec(std::string("SET lock_timeout = '") + kLockTimeout + "'; SET statement_timeout = 0")
                      .status();
      !st.ok()) {
    client_.reset();
    return st;
  }
  if (!with_temp_table) return Status::OK();
  if (Status st = TakeWriterLock(); !st.ok()) {
    client_.reset();
    return st;
  }
  // Rows of an epoch wait here; ON COMMIT DELETE ROWS empties it for the
  // next. Only the columns kappa writes, with their types: a column of the
  // team's own (NOT NULL with a default, an identity) is the table's to
  // fill at the upsert (LIKE copied an identity column as NOT NULL without
  // its values, and every row was refused).
  std::string names;
  for (const std::string& c : columns_) names += (names.empty() ? "" : ", ") + QuoteIdentifier(c);
  Status st = client_->Exec("CREATE TEMP TABLE IF NOT EXISTS " + std::string(kTempTable) +
                            " ON COMMIT DELETE ROWS AS SELECT " + names + " FROM " + table_ + " WITH NO DATA")
                  .status();
  if (!st.ok()) {
    connect_sqlstate_ = client_->last_sqlstate();
    st = NameLockHolders(st, connect_sqlstate_, retried);
    client_.reset();
  }
  return st;
}

// How the refusal of a second writer of one version begins (KeepSession
// tells it from the other refusals of a reconnection by it).
constexpr const char* kAnotherWriter = "another process writes ";

// One writer per version: a second process of the same job and version
// (started twice by mistake, or a zombie) would write its rows and move
// kappa_offsets back under the first, which a restart then refuses as a
// database behind the state. Kafka's exactly-once fences such a process;
// here a session advisory lock on the writing connection does, held as long
// as it lives (and the server drops a dead client's within ~11 s: keepalives).
Status PostgresSink::TakeWriterLock() {
  // What pg_stat_activity shows of this session (PostgreSQL keeps 63 bytes).
  const std::string name = ("kappa " + spec_.job + " v" + version_text_).substr(0, 63);
  const std::string setup = "SET application_name = " + QuoteLiteral(name) +
                            "; SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                            "SET tcp_keepalives_count = 3";
  KAPPA_RETURN_IF_ERROR(client_->Exec(setup).status());
  const std::string lock = "SELECT pg_try_advisory_lock(hashtextextended(" +
                           QuoteLiteral("kappa writer " + spec_.job + " " + version_text_) + ", 0))";
  // A writer that just died may still hold it until the server notices.
  constexpr int kWaitS = 15;
  for (int waited = 0;; ++waited) {
    auto got = client_->Exec(lock);
    if (!got.ok()) return got.status();
    if (!got->rows.empty() && got->rows[0][0] == "t") return Status::OK();
    auto others = client_->Exec(
        "SELECT pid, coalesce(host(client_addr), 'a local socket'), backend_start::text FROM pg_stat_activity "
        "WHERE application_name = " + QuoteLiteral(name) + " AND pid <> pg_backend_pid() ORDER BY 1");
    std::string who;
    if (others.ok()) {
      for (const auto& r : others->rows) {
        who += (who.empty() ? "" : ", ") + std::string("pid ") + r[0] + " from " + r[1] + " since " + r[2];
      }
    }
    if (who.empty()) who = "another session";
    if (waited >= kWaitS || stop_.stop_requested()) {
      return Status::FailedPrecondition(
          std::string(kAnotherWriter) + spec_.job + " v" + version_text_ + " to " + spec_.PostgresTable() +
          " (PostgreSQL session " + who + "): two processes of one version would undo each other's offsets; stop "
          "the other one (or, if it is gone, wait until PostgreSQL drops its session), then start this again");
    }
    if (waited == 0) {
      Note(NoteLevel::kWarning, std::string(kAnotherWriter) + spec_.job + " v" + version_text_ + " to " +
                                    spec_.PostgresTable() + " (PostgreSQL session " + who + "); waiting up to " +
                                    std::to_string(kWaitS) + " s for it to end");
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

std::string PostgresSink::LockHolders() {
  // kappa_offsets too: a lock on it was reported as one on the version's
  // table, held by "another session" (a bug bash).
  return DescribeLockHolders(*client_,
                             {spec_.PostgresTable(), spec_.postgres_table, PgOffsetsTable(spec_.postgres_table)});
}

Status PostgresSink::NameLockHolders(const Status& st, const std::string& sqlstate, bool retried) {
  if (client_ == nullptr || sqlstate != "55P03") return st;
  // Within the checkpoint's retries the wait goes on by itself: "start the
  // job again" sent a user to restart a job that then committed alone (a
  // bug bash).
  return Status::FailedPrecondition(st.message() + "; " + spec_.PostgresTable() + " is locked by " + LockHolders() +
                                    (retried ? ": retried until that lock is released"
                                             : ": start the job again once that lock is released"));
}

Result<PgRows> PostgresSink::TableColumns() {
  const std::string schema = PgSchemaPrefix(spec_.postgres_table);
  const std::string schema_name = schema.empty() ? "current_schema()" : QuoteLiteral(schema.substr(0, schema.size() - 1));
  return client_->Exec(
      "SELECT column_name, data_type, is_nullable, column_default IS NOT NULL OR is_identity = 'YES' OR "
      "is_generated = 'ALWAYS' FROM information_schema.columns "
      "WHERE table_schema = " + schema_name + " AND table_name = " + QuoteLiteral(PgBareName(spec_.PostgresTable())));
}

std::string PostgresSink::UnwritableColumn(const std::vector<std::vector<std::string>>& columns) const {
  std::unordered_map<std::string, bool> spec_columns;
  for (const PgColumn& c : PostgresColumns(spec_)) spec_columns[c.name] = true;
  for (const auto& row : columns) {
    if (spec_columns.count(row[0]) || row[2] != "NO" || row[3] == "t") continue;
    return row[0];
  }
  return "";
}

Status PostgresSink::PrepareTables() {
  const std::string schema = PgSchemaPrefix(spec_.postgres_table);
  const std::string offsets = PgOffsetsTable(spec_.postgres_table);
  // What is there already. Tables made beforehand are used as they are: a
  // writer role without CREATE on the schema (least privilege) is refused
  // even a CREATE ... IF NOT EXISTS of a table that exists.
  auto there = client_->Exec("SELECT to_regclass(" + QuoteLiteral(spec_.PostgresTable()) + ") IS NOT NULL, to_regclass(" +
                             QuoteLiteral(offsets) + ") IS NOT NULL");
  if (!there.ok()) return there.status();
  const bool table_exists = !there->rows.empty() && there->rows[0][0] == "t";
  const bool offsets_exist = !there->rows.empty() && there->rows[0][1] == "t";
  // The version's table gone while kappa_offsets says rows were committed
  // to it (dropped by hand, or a restore of another table): creating it
  // empty would leave those rows missing for good, since the offsets say
  // they are written and the job would not write them again.
  if (!table_exists && offsets_exist) {
    auto committed = client_->Exec("SELECT count(*), coalesce(sum(next_offset), 0), coalesce(min(spec_hash), '') "
                                   "FROM " + offsets +
                                   " WHERE job = " + QuoteLiteral(spec_.job) + " AND version = " + version_text_ +
                                   " AND next_offset > 0");
    if (!committed.ok()) return committed.status();
    if (!committed->rows.empty() && committed->rows[0][0] != "0" && !committed->rows[0][2].empty() &&
        committed->rows[0][2] != spec_.spec_hash) {
      // Another spec under the same version (a new table name, say) was
      // told its table had been dropped, and to delete the other table's
      // offsets (a bug bash).
      return Status::FailedPrecondition(
          "PostgreSQL " + client_->redacted_dsn() + ": " + offsets + " holds offsets of " + spec_.job + " v" +
          version_text_ + " committed by spec " + committed->rows[0][2] + ", but this spec is " + spec_.spec_hash +
          " (writing another table, " + spec_.PostgresTable() + ", which does not exist): a changed spec needs a "
          "new version (`kappa replay` with the next version number)");
    }
    if (!committed->rows.empty() && committed->rows[0][0] != "0") {
      return Status::FailedPrecondition(
          "PostgreSQL table " + spec_.PostgresTable() + " does not exist, but " + offsets + " says " + spec_.job +
          " v" + version_text_ + " committed rows to it (" + committed->rows[0][1] +
          " input records over " + committed->rows[0][0] +
          " partitions): the table was dropped or the database restored without it, and a new empty table "
          "would stay without those rows. Restore the table; or, to write it again from the start, run `DELETE "
          "FROM " + offsets + " WHERE job = " + QuoteLiteral(spec_.job) + " AND version = " + version_text_ +
          "` and start the job with --reset-state");
    }
  }
  std::string ddl = "BEGIN; SELECT pg_advisory_xact_lock(hashtext('kappa ddl')); ";
  if (!table_exists || !offsets_exist) {
    if (!schema.empty()) {
      ddl += "CREATE SCHEMA IF NOT EXISTS " + QuoteIdentifier(schema.substr(0, schema.size() - 1)) + "; ";
    }
    ddl += PgCreateOffsetsTable(spec_.postgres_table) + "; " + PostgresCreateTable(spec_) + "; ";
  }
  // The job that writes the table, in its comment: the first to create it
  // names itself (a table made beforehand is the team's, left as it is).
  if (!table_exists) {
    ddl += "DO $$ BEGIN IF obj_description(" + QuoteLiteral(table_) +
           "::regclass, 'pg_class') IS NULL THEN COMMENT ON TABLE " + table_ +
           " IS " + QuoteLiteral(PgOwnerComment(spec_.job)) + "; END IF; END $$; ";
  }
  // kappa_offsets of a kappa before the refused rows, or the rows written,
  // were counted there: the column once, not an ALTER (and its exclusive
  // lock) at every start. The rows an older kappa wrote are unknown (NULL),
  // and stay so: a count from here on would read as all of them.
  for (const char* column : {"rejected bigint NOT NULL DEFAULT 0", "written bigint", "table_oid bigint"}) {
    const std::string name(column, std::strchr(column, ' '));
    ddl += "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = " + QuoteLiteral(offsets) +
           "::regclass AND attname = '" + name + "' AND NOT attisdropped) THEN ALTER TABLE " + offsets +
           " ADD COLUMN " + column + "; END IF; END $$; ";
  }
  ddl += "COMMIT";
  if (auto st = client_->Exec(ddl); !st.ok()) {
    const std::string sqlstate = client_->last_sqlstate();
    (void)client_->Exec("ROLLBACK");
    return NameLockHolders(Status::FailedPrecondition("creating " + spec_.PostgresTable() + " and kappa_offsets: " +
                                                      st.status().message()),
                           sqlstate);
  }
  // Another job's table: `kappa run` (which has no registry to ask) of a
  // job given another job's table upserted its rows into that one's, and a
  // name spelled another way (`public.t` for `t`) got past deploy's check
  // (a bug bash). The comment kappa gave the table says whose it is.
  auto comment = client_->Exec("SELECT coalesce(obj_description(" +
                               QuoteLiteral(table_) + "::regclass, 'pg_class'), '')");
  if (!comment.ok()) return comment.status();
  if (!comment->rows.empty()) {
    const std::string owner = PgOwnerOf(comment->rows[0][0]);
    if (!owner.empty() && owner != spec_.job) {
      return Status::FailedPrecondition(
          "PostgreSQL table " + spec_.PostgresTable() + " is written by job " + owner +
          " (its comment, which kappa set when it created the table): the rows of two jobs in one table cannot be "
          "told apart by `kappa get` and promote's diff, and would overwrite each other. Give job " + spec_.job +
          " its own sink.postgres.table");
    }
  }
  // A table made beforehand has no such comment (kappa leaves the team's
  // table as it is), and two jobs given one such table overwrote each
  // other's rows in silence (a bug bash). kappa_offsets says which table
  // each job's rows went to (its OID: whatever the spelling of its name).
  auto others = client_->Exec("SELECT string_agg(DISTINCT job, ', ') FROM " + offsets + " WHERE table_oid = " +
                              QuoteLiteral(table_) + "::regclass::oid AND job <> " +
                              QuoteLiteral(spec_.job));
  if (!others.ok()) return others.status();
  if (!others->rows.empty() && !others->rows[0][0].empty()) {
    return Status::FailedPrecondition(
        "PostgreSQL table " + spec_.PostgresTable() + " holds rows of job " + others->rows[0][0] + " (" + offsets +
        "): the rows of two jobs in one table cannot be told apart by `kappa get` and promote's diff, and would "
        "overwrite each other. Give job " + spec_.job + " its own sink.postgres.table");
  }
  // The rights the job needs on a table made beforehand, asked before its
  // columns: information_schema.columns lists only the columns a role may
  // use, so a writer without rights was told `kappa_key` was missing and to
  // drop or fix a good table (a bug bash).
  auto rights = client_->Exec(
      "SELECT current_user, quote_ident(current_user), concat_ws(', ', CASE WHEN NOT has_table_privilege(" + QuoteLiteral(table_) +
      "::regclass, 'SELECT') THEN 'SELECT' END, CASE WHEN NOT has_table_privilege(" + QuoteLiteral(table_) +
      "::regclass, 'INSERT') THEN 'INSERT' END, CASE WHEN NOT has_table_privilege(" + QuoteLiteral(table_) +
      "::regclass, 'UPDATE') THEN 'UPDATE' END, CASE WHEN NOT has_table_privilege(" + QuoteLiteral(table_) +
      "::regclass, 'DELETE') THEN 'DELETE' END)");
  if (!rights.ok()) return rights.status();
  if (!rights->rows.empty() && !rights->rows[0][2].empty()) {
    return Status::FailedPrecondition("PostgreSQL role " + rights->rows[0][0] + " lacks " + rights->rows[0][2] +
                                      " on table " + spec_.PostgresTable() + ", which the job needs: `GRANT SELECT, "
                                      "INSERT, UPDATE, DELETE ON " + spec_.PostgresTable() + " TO " +
                                      rights->rows[0][1] + "` as the table's owner");
  }
  // A table made beforehand (by a user, or an earlier run): its columns must
  // be this spec's.
  auto existing = TableColumns();
  if (!existing.ok()) return existing.status();
  std::unordered_map<std::string, std::string> types;
  for (const auto& row : existing->rows) types[row[0]] = row[1];
  // A column of the team's own that kappa does not write must be able to
  // stay empty or have a default, or the database refuses every row.
  if (const std::string column = UnwritableColumn(existing->rows); !column.empty()) {
    return Status::FailedPrecondition("PostgreSQL table " + spec_.PostgresTable() + " has a column `" + column +
                                      "` NOT NULL without a default, which kappa does not write: every row would "
                                      "be refused; give it a DEFAULT, drop its NOT NULL, or drop the column");
  }
  for (const PgColumn& c : PostgresColumns(spec_)) {
    auto it = types.find(c.name);
    if (it == types.end() || it->second != c.type) {
      return Status::FailedPrecondition(
          "PostgreSQL table " + spec_.PostgresTable() + " exists but does not fit this spec: column `" + c.name +
          "` " + (it == types.end() ? "is missing" : "is " + it->second) + ", the spec's rows need " + c.type +
          " (`kappa schema SPEC` prints the table it expects); drop or fix the table, or name another "
          "sink.postgres.table");
    }
  }
  // The upsert needs a unique index on kappa_key alone (a table made
  // beforehand without one failed at the first commit, after the whole
  // first interval had been read), checked at once (ON CONFLICT takes no
  // DEFERRABLE one: a bug bash saw it refused at the first commit).
  auto unique = client_->Exec(
      "SELECT count(*) FILTER (WHERE i.indimmediate), count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
      "i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = " + QuoteLiteral(spec_.PostgresTable()) +
      "::regclass AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL AND "
      "a.attname = 'kappa_key'");
  if (!unique.ok()) return unique.status();
  if (unique->rows.empty() || unique->rows[0][0] == "0") {
    const bool deferrable = !unique->rows.empty() && unique->rows[0][1] != "0";
    return Status::FailedPrecondition("PostgreSQL table " + spec_.PostgresTable() + " has no unique index on " +
                                      "kappa_key alone" + (deferrable ? " checked at once (its one is DEFERRABLE)" : "") +
                                      ", which kappa's upsert (INSERT ... ON CONFLICT (kappa_key)) needs: `ALTER TABLE " +
                                      spec_.PostgresTable() + " ADD PRIMARY KEY (kappa_key)`" +
                                      (deferrable ? " in place of the deferrable one" : "") +
                                      ", or drop the table and let kappa create it");
  }
  // Now that the table exists, a connection with the temporary table.
  return Connect(/*with_temp_table=*/true);
}

Result<bool> PostgresSink::TableEmpty() {
  auto rows = client_->Exec("SELECT NOT EXISTS (SELECT 1 FROM " + table_ + ")");
  if (!rows.ok()) return rows.status();
  return !rows->rows.empty() && rows->rows[0][0] == "t";
}

Result<std::vector<int64_t>> PostgresSink::CommittedOffsets(int32_t partitions) {
  std::vector<int64_t> out(std::max(0, partitions), -1);
  auto rows = client_->Exec("SELECT partition, next_offset, spec_hash, epoch, rejected, written FROM " + offsets_ +
                            " WHERE job = " + QuoteLiteral(spec_.job) + " AND version = " + version_text_);
  if (!rows.ok()) return rows.status();
  std::lock_guard<std::mutex> lock(rejected_mutex_);
  rejected_by_partition_.clear();
  committed_no_row_ = true;
  for (const auto& r : rows->rows) {
    if (r[2] != spec_.spec_hash) {
      return Status::FailedPrecondition(
          "PostgreSQL " + client_->redacted_dsn() + ": kappa_offsets holds offsets of " + spec_.job + " v" +
          version_text_ + " committed by spec " + r[2] + ", but this spec is " + spec_.spec_hash + " (table " +
          spec_.PostgresTable() + " has that spec's rows); a changed spec needs a new version");
    }
    const int64_t p = std::stoll(r[0]);
    if (p >= 0 && p < partitions) out[p] = std::stoll(r[1]);
    rejected_by_partition_[static_cast<int32_t>(p)] = std::stoll(r[4]);
    // NULL (an older kappa's row) reads as "" here: unknown, not none.
    if (r[5] != "0") committed_no_row_ = false;
  }
  return out;
}

int64_t PostgresSink::RejectedSinceStart(const std::vector<int32_t>& partitions) const {
  std::lock_guard<std::mutex> lock(rejected_mutex_);
  int64_t n = 0;
  for (int32_t p : partitions) {
    auto it = rejected_by_partition_.find(p);
    if (it != rejected_by_partition_.end()) n += it->second;
  }
  return n;
}

void PostgresSink::Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) {
  if (kafka_->Suppressed(lineage.partition)) return;
  std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
  if (kafka_->concurrent()) lock.lock();
  auto [it, inserted] = index_.try_emplace(std::string(key), rows_.size());
  Row& row = inserted ? rows_.emplace_back() : rows_[it->second];
  row.line.clear();
  AppendCopyText(row.line, key);
  row.line.push_back('\t');
  row.line.append(reinterpret_cast<const char*>(value), size);
  row.line.push_back('\t');
  row.line.append(version_text_);
  row.line.push_back('\t');
  // After a repartition the offsets are the job's input's, in its partition
  // origin_partition (-1: possibly several).
  AppendInt(row.line, spec_.origin_topic.empty() ? lineage.partition : lineage.origin_partition);
  row.line.push_back('\t');
  AppendInt(row.line, lineage.first_offset);
  row.line.push_back('\t');
  AppendInt(row.line, lineage.last_offset);
  row.line.push_back('\n');
  if (inserted) row.key = key;
  row.partition = lineage.partition;
  row.offset = lineage.last_offset;
}

void PostgresSink::EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) {
  kafka_->EmitDlq(partition, record, reason, message);
}

void PostgresSink::EmitLate(int32_t partition, const InputRecord& record) { kafka_->EmitLate(partition, record); }

Status PostgresSink::UpsertOffsets(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  if (offsets.empty()) return Status::OK();
  // The epoch's refused rows are added to their partitions' counts in the
  // same transaction as the offsets past them: counted exactly once. So are
  // the rows written: a version with offsets but no row yet (the first hour
  // of an hourly window, or every record filtered) is told apart from a
  // table emptied by hand (PostgresGaps).
  std::map<int32_t, int64_t> upserted;
  for (const Row& r : rows_) ++upserted[r.partition];
  std::string sql = "INSERT INTO " + offsets_ +
                    " (job, version, partition, next_offset, epoch, spec_hash, rejected, written, table_oid) VALUES ";
  const std::string job = QuoteLiteral(spec_.job), hash = QuoteLiteral(spec_.spec_hash);
  const std::string oid = QuoteLiteral(table_) + "::regclass::oid";
  for (size_t i = 0; i < offsets.size(); ++i) {
    auto refused = attempt_rejected_.find(offsets[i].first);
    const int64_t rejected = refused == attempt_rejected_.end() ? 0 : refused->second;
    auto rows = upserted.find(offsets[i].first);
    const int64_t written = (rows == upserted.end() ? 0 : rows->second) - rejected;
    sql += (i ? ", (" : "(") + job + ", " + version_text_ + ", " + std::to_string(offsets[i].first) + ", " +
           std::to_string(offsets[i].second) + ", " + std::to_string(epoch) + ", " + hash + ", " +
           std::to_string(rejected) + ", " + std::to_string(written) + ", " + oid + ")";
  }
  sql += " ON CONFLICT (job, version, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
         "epoch = EXCLUDED.epoch, spec_hash = EXCLUDED.spec_hash, rejected = " +
         offsets_ + ".rejected + EXCLUDED.rejected, written = " + offsets_ + ".written + EXCLUDED.written, "
         "table_oid = EXCLUDED.table_oid";
  auto st = client_->Exec(sql);
  return st.ok() ? Status::OK() : st.status();
}

Status PostgresSink::InsertRowByRow() {
  // By halves: a range of rows goes in under a savepoint with one COPY and
  // one upsert, and only a range the database refuses is split, down to the
  // refused rows themselves. The temporary table is truncated after each
  // range, so an upsert reads its own range only. (One row at a time with a
  // DELETE after each left every earlier row dead in the table to be read
  // again: 16,000 rows with one refused took a minute, and a stop waited.)
  std::vector<std::pair<size_t, std::string>> refused;
  // Ranges [begin, end) still to try, the next on top.
  std::vector<std::pair<size_t, size_t>> pending;
  auto split = [&pending](size_t begin, size_t end) {
    const size_t mid = begin + (end - begin) / 2;
    pending.emplace_back(mid, end);  // the first half is tried first: refusals in row order
    pending.emplace_back(begin, mid);
  };
  // The whole epoch was just refused: its halves come first.
  if (rows_.size() > 1) {
    split(0, rows_.size());
  } else {
    pending.emplace_back(0, rows_.size());
  }
  std::string data;
  while (!pending.empty()) {
    if (stop_.stop_requested()) {
      return Status::Aborted("stopping while PostgreSQL refused a row of the epoch; the epoch was not committed "
                             "and the last checkpoint is intact");
    }
    const auto [begin, end] = pending.back();
    pending.pop_back();
    data.clear();
    for (size_t i = begin; i < end; ++i) data += rows_[i].line;
    KAPPA_RETURN_IF_ERROR(client_->Exec("SAVEPOINT kappa_rows").status());
    auto copied = client_->CopyInText(kTempTable, columns_, data);
    Status st = copied.ok() ? client_->Exec(upsert_sql_).status() : copied.status();
    if (st.ok()) {
      st = client_->Exec("TRUNCATE " + std::string(kTempTable) + "; RELEASE SAVEPOINT kappa_rows").status();
    }
    if (st.ok()) continue;
    if (!RowRefusal(client_->last_sqlstate())) return st;
    KAPPA_RETURN_IF_ERROR(client_->Exec("ROLLBACK TO SAVEPOINT kappa_rows").status());
    if (end - begin == 1) {
      refused.emplace_back(begin, st.message());
      continue;
    }
    split(begin, end);
  }
  if (refused.empty()) return Status::OK();
  for (const auto& [i, message] : refused) {
    const Row& row = rows_[i];
    InputRecord record;
    record.payload = reinterpret_cast<const uint8_t*>(row.line.data());
    record.size = static_cast<uint32_t>(row.line.size() - 1);  // without the newline
    record.key = reinterpret_cast<const uint8_t*>(row.key.data());
    record.key_size = static_cast<uint32_t>(row.key.size());
    record.offset = row.offset;
    kafka_->EmitDlq(row.partition, record, DlqReason::kSinkRejected, message);
    ++attempt_rejected_[row.partition];
  }
  // The refused rows are safely in the DLQ before the others commit.
  KAPPA_RETURN_IF_ERROR(kafka_->Flush(kFlushTimeoutMs));
  Note(NoteLevel::kWarning, "PostgreSQL refused " + std::to_string(refused.size()) + " of " +
                                std::to_string(rows_.size()) + " rows for " + spec_.PostgresTable() + "; they went to " +
                                spec_.dlq_topic + " (error type SinkRejected); the first: key " +
                                PrintableKey(rows_[refused[0].first].key) + ": " + refused[0].second);
  return Status::OK();
}

Status PostgresSink::Attempt(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  failed_sqlstate_.clear();
  attempt_rejected_.clear();
  if (client_ == nullptr) {
    // Reconnecting makes the temporary table from the version's table, which
    // waits for a lock on it like the upsert: a lock held past lock_timeout
    // is retried as there, not final (a bug bash: an ALTER TABLE held open
    // 12 s stopped the job at its second attempt).
    if (Status st = Connect(/*with_temp_table=*/true, /*retried=*/true); !st.ok()) {
      failed_sqlstate_ = connect_sqlstate_;
      return st;
    }
  }
  KAPPA_RETURN_IF_ERROR(client_->Exec("BEGIN").status());
  auto fail = [&](Status st) {
    // The failure's SQLSTATE decides whether it is retried: kept before the
    // ROLLBACK clears it (a lock timeout or a serialization conflict read
    // as final otherwise).
    failed_sqlstate_ = client_->last_sqlstate();
    (void)client_->Exec("ROLLBACK");
    return st;
  };
  if (!rows_.empty()) {
    std::string data;
    size_t bytes = 0;
    for (const Row& r : rows_) bytes += r.line.size();
    data.reserve(bytes);
    for (const Row& r : rows_) data += r.line;
    auto copied = client_->CopyInText(kTempTable, columns_, data);
    Status st = copied.ok() ? client_->Exec(upsert_sql_).status() : copied.status();
    if (!st.ok()) {
      if (!RowRefusal(client_->last_sqlstate())) return fail(st);
      const std::string refusal = client_->last_sqlstate();
      // Some row is refused: find which, send those to the DLQ, keep the rest.
      KAPPA_RETURN_IF_ERROR(client_->Exec("ROLLBACK; BEGIN").status());
      if (refusal == "23502") {
        // A column NOT NULL without a default that kappa does not write,
        // added while the job ran, refuses every row: whole epochs went to
        // the DLQ for good (a bug bash: 1,526 of 6,194 rows in the 6 s the
        // column stood). The table's shape, not a row: refused as at a start.
        auto columns = TableColumns();
        if (!columns.ok()) return fail(columns.status());
        if (const std::string column = UnwritableColumn(columns->rows); !column.empty()) {
          return fail(Status::FailedPrecondition(
              "the table has a column `" + column + "` NOT NULL without a default now, which kappa does not "
              "write: every row would be refused (SQLSTATE 23502); give it a DEFAULT, drop its NOT NULL, or drop "
              "the column"));
        }
      }
      if (Status rows = InsertRowByRow(); !rows.ok()) return fail(rows);
    }
  }
  if (Status st = UpsertOffsets(epoch, offsets); !st.ok()) return fail(st);
  KAPPA_KILL_POINT(kill_switch_, "pg-before-commit");
  return client_->Exec("COMMIT").status();
}

// An idle job sends nothing: after the server restarted (or dropped the
// session: pg_terminate_backend, idle_session_timeout) the session and its
// writer lock were gone, a second process of the version was accepted, and
// the registered one then stopped as "another process writes" (a bug bash).
// While idle the session is checked every 5 s, and made again, with the
// lock, once lost. A database still away is left to the next epoch with
// rows, which waits and says so.
Status PostgresSink::KeepSession() {
  if (idle_check_.Seconds() < 5) return Status::OK();
  idle_check_.Reset();
  WaitingScope waiting_state{*this};  // a wait the check met (the hook's) is over once it returns
  if (client_ != nullptr && client_->Exec("SELECT 1").ok()) return Status::OK();
  Status st = Connect(/*with_temp_table=*/true, /*retried=*/true);
  if (st.ok()) {
    Note(NoteLevel::kInfo, "PostgreSQL " + client_->redacted_dsn() + ": the session was lost while idle; made again, "
                           "with the writer lock of " + spec_.job + " v" + version_text_);
    return st;
  }
  // Another process took the lock meanwhile: as at a reconnection.
  if (st.code() == Status::Code::kFailedPrecondition && st.message().rfind(kAnotherWriter, 0) == 0) {
    return st;
  }
  client_.reset();
  return Status::OK();
}

Status PostgresSink::CommitEpoch(int64_t epoch, const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  // DLQ and late records of this epoch are acknowledged before the database
  // moves the offsets past their inputs.
  KAPPA_RETURN_IF_ERROR(kafka_->Flush(kFlushTimeoutMs));
  if (rows_.empty() && offsets == committed_) return KeepSession();  // nothing new
  Stopwatch waiting;
  double next_note_s = 0;
  int attempts = 0;
  std::string last_reason;  // what the last failed attempt met
  auto backoff = std::chrono::milliseconds(250);
  WaitingScope waiting_state{*this};  // whatever way the loop ends, the sink no longer waits
  while (true) {
    ++attempts;
    Status st = Attempt(epoch, offsets);
    if (st.ok()) {
      if (attempts > 1) {
        // "is back" read oddly after a lock wait on a server that was never
        // away (a bug bash): what was waited for.
        Note(NoteLevel::kInfo, "PostgreSQL " + client_->redacted_dsn() + ": epoch " + std::to_string(epoch) +
                                   " committed after " + std::to_string(attempts) + " attempts, " +
                                   std::to_string(static_cast<int>(waiting.Seconds())) + " s " +
                                   (last_reason.rfind("waiting for a lock", 0) == 0 ? "of waiting for the lock"
                                                                                      : "after the server was " + last_reason));
      }
      int64_t refused = 0;
      {
        std::lock_guard<std::mutex> lock(rejected_mutex_);
        for (const auto& [partition, n] : attempt_rejected_) {
          rejected_by_partition_[partition] += n;
          refused += n;
        }
      }
      rows_rejected_ += refused;
      rows_written_ += static_cast<int64_t>(rows_.size()) - refused;
      rows_.clear();
      index_.clear();
      committed_ = offsets;
      return Status::OK();
    }
    const std::string sqlstate = !failed_sqlstate_.empty() ? failed_sqlstate_ : client_ ? client_->last_sqlstate() : "";
    std::string reason = Transient(st, sqlstate);
    if (sqlstate == "55P03" && client_ != nullptr) {
      reason = "waiting for a lock on " + spec_.PostgresTable() + " or kappa_offsets held by " + LockHolders();
    }
    if (!reason.empty()) {
      last_reason = reason;
      if (waiting_since_ms_ == 0) waiting_since_ms_ = WallClockMs() - static_cast<int64_t>(waiting.Millis());
      waiting_reason_ = reason;
    }
    if (st.code() == Status::Code::kAborted && stop_.stop_requested()) return st;
    if (reason.empty()) {
      const std::string text = "writing epoch " + std::to_string(epoch) + " to PostgreSQL table " +
                                   spec_.PostgresTable() + ": " + st.message() +
                                   "; nothing of this epoch was committed and the job stopped with its last "
                                   "checkpoint intact: fix the cause, then restart it to resume";
      return st.code() == Status::Code::kFailedPrecondition ? Status::FailedPrecondition(text)
                                                            : Status::InvalidArgument(text);
    }
    client_.reset();  // reconnect for the next attempt
    if (stop_.stop_requested()) {
      return Status::Unavailable("PostgreSQL for " + spec_.PostgresTable() + " still " + reason + " while stopping (" +
                                 st.message() + "); epoch " + std::to_string(epoch) +
                                 " was not committed, the last checkpoint is intact: restart the job to resume");
    }
    if (waiting.Seconds() >= next_note_s) {
      Note(NoteLevel::kWarning,
           "PostgreSQL " + reason + " (" + st.message() + "): epoch " + std::to_string(epoch) + " (" +
               std::to_string(rows_.size()) + " rows) waits, nothing is read meanwhile; retrying (attempt " +
               std::to_string(attempts) + ", " + std::to_string(static_cast<int>(waiting.Seconds())) + " s so far)");
      next_note_s = waiting.Seconds() + 10;
    }
    const auto until = std::chrono::steady_clock::now() + backoff;
    while (std::chrono::steady_clock::now() < until && !stop_.stop_requested()) {
      // A long outage froze the status line and /metrics (a bug bash of
      // the same wait for Kafka): the job reports between attempts.
      if (while_waiting_) while_waiting_();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

}  // namespace kappa
