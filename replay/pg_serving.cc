#include "replay/pg_serving.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "engine/postgres_table.h"
#include "operators/features.h"

namespace kappa {
namespace {

using Columns = std::vector<std::pair<std::string, std::string>>;  // name, type

// The columns of a table or view, in order (empty when it does not exist).
Result<Columns> RelationColumns(PgClient& pg, const std::string& table) {
  auto rows = pg.Exec("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(" +
                      QuoteLiteral(QuoteQualified(table)) +
                      ") AND attnum > 0 AND NOT attisdropped ORDER BY attnum");
  if (!rows.ok()) return rows.status();
  Columns out;
  for (const auto& r : rows->rows) out.emplace_back(r[0], r[1]);
  return out;
}

// The columns of `table` with a default: the team's own (README: "defaulted
// columns of your own"), which kappa never writes; kappa's have none.
Result<std::set<std::string>> DefaultedColumns(PgClient& pg, const std::string& table) {
  auto rows = pg.Exec("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(" +
                      QuoteLiteral(QuoteQualified(table)) + ") AND attnum > 0 AND NOT attisdropped AND atthasdef");
  if (!rows.ok()) return rows.status();
  std::set<std::string> out;
  for (const auto& r : rows->rows) out.insert(r[0]);
  return out;
}

// pg_class.relkind of `table` ("" when it does not exist).
Result<std::string> RelKind(PgClient& pg, const std::string& table) {
  auto rows = pg.Exec("SELECT relkind FROM pg_class WHERE oid = to_regclass(" + QuoteLiteral(QuoteQualified(table)) + ")");
  if (!rows.ok()) return rows.status();
  return rows->rows.empty() ? std::string() : rows->rows[0][0];
}

// Runs `body` between BEGIN and COMMIT; ROLLBACK when it fails.
template <typename Body>
Status InTransaction(PgClient& pg, Body body) {
  auto begin = pg.Exec("BEGIN");
  if (!begin.ok()) return begin.status();
  Status st = body();
  if (st.ok()) {
    auto commit = pg.Exec("COMMIT");
    return commit.ok() ? Status::OK() : commit.status();
  }
  (void)pg.Exec("ROLLBACK");
  return st;
}

// Serializes the changes of one job's view and kappa_serving row (swaps,
// withdrawals) until the transaction ends.
Status LockServingOf(PgClient& pg, const std::string& job) {
  return pg.Exec("SELECT pg_advisory_xact_lock(hashtext(" + QuoteLiteral("kappa_serving " + job) + "))").status();
}

Status EnsureServingTable(PgClient& pg, const std::string& base_table) {
  auto exists = PgRelationExists(pg, PgSchemaPrefix(base_table) + "kappa_serving");
  if (!exists.ok()) return exists.status();
  if (*exists) return Status::OK();
  // Two processes creating it at once: CREATE TABLE IF NOT EXISTS alone can
  // still fail on the catalog's unique index; the lock serializes them.
  return InTransaction(pg, [&]() -> Status {
    auto st = pg.Exec("SELECT pg_advisory_xact_lock(hashtext('kappa_serving ddl')); " +
                      PgCreateServingTable(base_table));
    return st.ok() ? Status::OK() : st.status();
  });
}

bool IsNumericType(const std::string& type) {
  return type == "bigint" || type == "integer" || type == "smallint" || type == "double precision" ||
         type == "real" || type == "boolean" || type.rfind("numeric", 0) == 0;
}

// A column as a number for the change magnitude.
// As numeric: exact for bigint (float8 hid changes past 2^53), and no
// "value out of range: overflow" for a difference of doubles near 1.8e308;
// read back as text (strtod: a number past the double's range is infinity).
std::string AsNumeric(const std::string& expr, const std::string& type) {
  return type == "boolean" ? "(" + expr + ")::int::numeric" : "(" + expr + ")::numeric";
}

double ToDouble(const std::string& text) { return text.empty() ? 0 : std::strtod(text.c_str(), nullptr); }
int64_t ToInt(const std::string& text) { return text.empty() ? 0 : std::strtoll(text.c_str(), nullptr, 10); }

}  // namespace

std::string PgServingTable(std::string_view base_table) {
  return QuoteQualified(PgSchemaPrefix(base_table) + "kappa_serving");
}

std::string PgCreateServingTable(std::string_view base_table) {
  return "CREATE TABLE IF NOT EXISTS " + PgServingTable(base_table) +
         " (job text PRIMARY KEY, version integer NOT NULL, table_name text NOT NULL, "
         "promoted_at timestamptz NOT NULL DEFAULT now(), registry_seq bigint NOT NULL DEFAULT 0)";
}

Result<bool> PgRelationExists(PgClient& pg, const std::string& table) {
  auto kind = RelKind(pg, table);
  if (!kind.ok()) return kind.status();
  return !kind->empty();
}

namespace {

// The view `base_table` is to be dropped and made again over `target` (the
// columns differ): PostgreSQL refuses while views or rules of someone else's
// are built on it, so that is a FailedPrecondition naming them.
Status RefuseIfViewsDependOn(PgClient& pg, const std::string& base_table, int32_t version, const std::string& target) {
  auto dependents = pg.Exec(
      "SELECT DISTINCT n.nspname || '.' || c.relname FROM pg_depend d JOIN pg_rewrite r ON d.objid = r.oid "
      "JOIN pg_class c ON r.ev_class = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid "
      "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass(" +
      QuoteLiteral(QuoteQualified(base_table)) + ") AND c.oid <> to_regclass(" +
      QuoteLiteral(QuoteQualified(base_table)) + ") ORDER BY 1");
  if (!dependents.ok()) return dependents.status();
  if (dependents->rows.empty()) return Status::OK();
  std::string list;
  for (const auto& r : dependents->rows) list += (list.empty() ? "" : ", ") + r[0];
  return Status::FailedPrecondition(
      "version " + std::to_string(version) + "'s columns differ from those of the view " + base_table +
      ", so the view must be dropped and made again, but " + list + " depend" +
      (dependents->rows.size() == 1 ? "s" : "") + " on it: drop " + (dependents->rows.size() == 1 ? "it" : "them") +
      " first (and create again after the switch), or define " + (dependents->rows.size() == 1 ? "it" : "them") +
      " over " + target + " instead; nothing was changed");
}

}  // namespace

Status CheckServingSwap(PgClient& pg, const std::string& base_table, int32_t version) {
  const std::string target = base_table + "_v" + std::to_string(version);
  auto columns = RelationColumns(pg, target);
  if (!columns.ok()) return columns.status();
  // A rollback to a version whose table was dropped or renamed recorded it
  // as serving and exited 0, while the view went on serving the other (a
  // bug bash).
  if (columns->empty()) {
    return Status::FailedPrecondition("PostgreSQL table " + target + " (version " + std::to_string(version) +
                                      "'s rows) does not exist: dropped or renamed, or the version never started; "
                                      "the view cannot serve it. Nothing was changed");
  }
  auto kind = RelKind(pg, base_table);
  if (!kind.ok()) return kind.status();
  if (*kind != "v") return Status::OK();  // no view yet (or not kappa's: the swap says so)
  auto view_columns = RelationColumns(pg, base_table);
  if (!view_columns.ok()) return view_columns.status();
  if (*view_columns == *columns) return Status::OK();
  return RefuseIfViewsDependOn(pg, base_table, version, target);
}

Status SwapServingView(PgClient& pg, const std::string& job, const std::string& base_table, int32_t version,
                       int64_t registry_seq, bool* applied, const SwapWait& wait) {
  if (applied) *applied = false;
  const std::string target = base_table + "_v" + std::to_string(version);
  KAPPA_RETURN_IF_ERROR(EnsureServingTable(pg, base_table));
  // Readers of the view hold a lock the swap must wait for, and every new
  // reader queues behind the swap's request: so each attempt waits at most
  // kSwapLockWait, and readers get through between attempts.
  constexpr const char* kSwapLockWait = "500ms";
  const int attempts = std::max(1, wait.attempts);  // with the pauses between them, about a second each
  bool done = false;
  bool lock_wait = false;
  auto attempt = [&]() -> Status {
    lock_wait = false;
    if (auto t = pg.Exec(std::string("SET LOCAL lock_timeout = '") + kSwapLockWait + "'"); !t.ok()) return t.status();
    // One swap of this job at a time; the second sees the first's row.
    KAPPA_RETURN_IF_ERROR(LockServingOf(pg, job));
    auto row = pg.Exec("SELECT version, registry_seq FROM " + PgServingTable(base_table) + " WHERE job = " +
                       QuoteLiteral(job) + " FOR UPDATE");
    if (!row.ok()) return row.status();
    if (registry_seq > 0 && !row->rows.empty() && ToInt(row->rows[0][1]) > registry_seq) {
      return Status::OK();  // a swap from a later registry state came first: it stands
    }
    auto columns = RelationColumns(pg, target);
    if (!columns.ok()) return columns.status();
    if (columns->empty()) {
      return Status::FailedPrecondition("PostgreSQL table " + target + " (job " + job + " version " +
                                        std::to_string(version) +
                                        ") does not exist: the version creates it when it starts; deploy or replay it first");
    }
    auto kind = RelKind(pg, base_table);
    if (!kind.ok()) return kind.status();
    if (!kind->empty() && *kind != "v") {
      return Status::FailedPrecondition("PostgreSQL " + base_table + " exists and is not a view: kappa serves job " + job +
                                        " through a view of that name over " + target +
                                        "; rename or drop what is there");
    }
    std::string sql;
    if (!kind->empty()) {
      auto view_columns = RelationColumns(pg, base_table);
      if (!view_columns.ok()) return view_columns.status();
      // CREATE OR REPLACE VIEW only appends columns; other changes need the
      // view dropped and created again (in this same transaction).
      if (*view_columns != *columns) {
        KAPPA_RETURN_IF_ERROR(RefuseIfViewsDependOn(pg, base_table, version, target));
        sql = "DROP VIEW " + QuoteQualified(base_table) + "; ";
      }
    }
    sql += "CREATE OR REPLACE VIEW " + QuoteQualified(base_table) + " AS SELECT * FROM " + QuoteQualified(target) + "; ";
    sql += "INSERT INTO " + PgServingTable(base_table) + " (job, version, table_name, promoted_at, registry_seq) VALUES (" +
           QuoteLiteral(job) + ", " + std::to_string(version) + ", " + QuoteLiteral(target) + ", now(), " +
           std::to_string(registry_seq) +
           ") ON CONFLICT (job) DO UPDATE SET version = EXCLUDED.version, table_name = EXCLUDED.table_name, "
           "promoted_at = EXCLUDED.promoted_at, registry_seq = GREATEST(" +
           PgServingTable(base_table) + ".registry_seq, EXCLUDED.registry_seq)";
    auto swap = pg.Exec(sql);
    if (!swap.ok()) {
      lock_wait = pg.last_sqlstate() == "55P03";
      return swap.status();
    }
    done = true;
    return Status::OK();
  };
  Status st;
  for (int i = 1; i <= attempts; ++i) {
    st = InTransaction(pg, attempt);
    if (st.ok() || !lock_wait) break;
    if (i == 3 && wait.on_wait && attempts > 3) {
      wait.on_wait("switching the view " + base_table + " to " + target + " waits for sessions reading or locking it (" +
                   DescribeLockHolders(pg, {base_table, target}) + "), up to " + std::to_string(attempts - 3) +
                   " s more; readers are not held up meanwhile");
    }
    if (i == attempts) {
      return Status::Unavailable("switching the view " + base_table + " to " + target + " waited " +
                                 std::to_string(attempts) + " times for sessions reading or locking it (" +
                                 DescribeLockHolders(pg, {base_table, target}) + "); the swap waits at most 500 ms at a time so that readers are not held up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (st.ok() && applied) *applied = done;
  return st;
}

Result<std::optional<int32_t>> ServingVersion(PgClient& pg, const std::string& job, const std::string& base_table) {
  auto exists = PgRelationExists(pg, PgSchemaPrefix(base_table) + "kappa_serving");
  if (!exists.ok()) return exists.status();
  if (!*exists) return std::optional<int32_t>();
  auto rows = pg.Exec("SELECT version FROM " + PgServingTable(base_table) + " WHERE job = " + QuoteLiteral(job));
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<int32_t>();
  return std::optional<int32_t>(static_cast<int32_t>(ToInt(rows->rows[0][0])));
}

std::string ServingDsn(const VersionInfo& v, const std::string& override_dsn) {
  return override_dsn.empty() ? v.postgres_dsn : override_dsn;
}

Result<std::string> ReconcileServing(const JobRecord& record, const std::string& override_dsn,
                                     const SwapWait& wait) {
  if (record.serving == 0) return std::string();
  const VersionInfo* v = record.Find(record.serving);
  if (v == nullptr || v->postgres_table.empty()) return std::string();
  auto pg = PgClient::Connect(ServingDsn(*v, override_dsn));
  if (!pg.ok()) return pg.status();
  auto exists = PgRelationExists(**pg, v->PostgresVersionTable());
  if (!exists.ok()) return exists.status();
  if (!*exists) return std::string();  // the version has not created its table yet
  auto current = ServingVersion(**pg, record.job, v->postgres_table);
  if (!current.ok()) return current.status();
  auto view = RelKind(**pg, v->postgres_table);
  if (!view.ok()) return view.status();
  if (*current == record.serving && *view == "v") return std::string();
  bool applied = false;
  KAPPA_RETURN_IF_ERROR(
      SwapServingView(**pg, record.job, v->postgres_table, record.serving, record.seq, &applied, wait));
  if (!applied) return std::string();
  return "PostgreSQL view " + v->postgres_table + " now serves v" + std::to_string(record.serving) +
         ", the registry's serving version (kappa_serving said " +
         (*current ? "v" + std::to_string(**current) : std::string("nothing")) + ")";
}

Result<std::string> WithdrawServing(const std::optional<JobRecord>& record, const std::string& dsn,
                                    const std::string& job, const std::string& base_table, int32_t version,
                                    bool drop_table) {
  const std::string table = base_table + "_v" + std::to_string(version);
  std::string said;
  if (record && record->serving != 0 && record->serving != version) {
    // Another version serves now: the view goes to it (if it has a table).
    auto line = ReconcileServing(*record, dsn);
    if (!line.ok()) return line.status();
    said = *line;
  }
  auto pg = PgClient::Connect(dsn);
  if (!pg.ok()) return pg.status();
  PgClient& c = **pg;
  auto current = ServingVersion(c, job, base_table);
  if (!current.ok()) return current.status();
  if (*current == version) {
    // Still this version's (nothing else serves): no view, no row.
    KAPPA_RETURN_IF_ERROR(InTransaction(c, [&]() -> Status {
      KAPPA_RETURN_IF_ERROR(LockServingOf(c, job));
      auto kind = RelKind(c, base_table);
      if (!kind.ok()) return kind.status();
      std::string sql = "DELETE FROM " + PgServingTable(base_table) + " WHERE job = " + QuoteLiteral(job) +
                        " AND version = " + std::to_string(version);
      if (*kind == "v") sql = "DROP VIEW " + QuoteQualified(base_table) + "; " + sql;
      auto done = c.Exec(sql);
      return done.ok() ? Status::OK() : done.status();
    }));
    said += std::string(said.empty() ? "" : "; ") + "PostgreSQL view " + base_table + " and its kappa_serving row removed";
  }
  if (drop_table) {
    auto rows = c.Exec("SELECT count(*) FROM (SELECT 1 FROM " + QuoteQualified(table) + " LIMIT 1) t");
    if (!rows.ok()) return rows.status();
    if (!rows->rows.empty() && rows->rows[0][0] == "0") {
      auto dropped = c.Exec("DROP TABLE " + QuoteQualified(table));
      if (!dropped.ok()) return dropped.status();
      said += std::string(said.empty() ? "" : "; ") + "its empty table " + table + " dropped";
    }
  }
  return said;
}

Status BoundLockWait(PgClient& pg, int seconds) {
  return pg.Exec("SET lock_timeout = '" + std::to_string(seconds) + "s'").status();
}

Status NameLockWait(PgClient& pg, const Status& st, const std::vector<std::string>& tables, const std::string& what,
                    int seconds) {
  if (st.ok() || pg.last_sqlstate() != "55P03") return st;
  std::string names;
  for (const std::string& t : tables) names += (names.empty() ? "" : " or ") + t;
  return Status::FailedPrecondition(what + " waited " + std::to_string(seconds) + " s for a lock on PostgreSQL " +
                                    names + " held by " + DescribeLockHolders(pg, tables) +
                                    " (LOCK TABLE, ALTER TABLE, VACUUM FULL ...): try again once it is released");
}

Result<OutputDiff> ComparePgTables(PgClient& pg, const std::string& serving_table, const std::string& candidate_table) {
  auto sc = RelationColumns(pg, serving_table);
  if (!sc.ok()) return sc.status();
  auto cc = RelationColumns(pg, candidate_table);
  if (!cc.ok()) return cc.status();
  for (const auto& [table, cols] : {std::pair{serving_table, &*sc}, std::pair{candidate_table, &*cc}}) {
    if (cols->empty()) {
      return Status::FailedPrecondition("PostgreSQL table " + table +
                                        " does not exist, so the versions cannot be compared: has its version run, or was the table "
                                        "renamed or dropped (a version that wrote rows has them in kappa_offsets)?");
    }
  }
  std::map<std::string, std::string> candidate_types(cc->begin(), cc->end());
  // Columns of the team's own differ by design too (a load time, say): a
  // diff of them would call identical versions 100% changed.
  std::set<std::string> own;
  for (const std::string* table : {&serving_table, &candidate_table}) {
    auto defaulted = DefaultedColumns(pg, *table);
    if (!defaulted.ok()) return defaulted.status();
    own.insert(defaulted->begin(), defaulted->end());
  }
  const std::string both = "s.kappa_key IS NOT NULL AND c.kappa_key IS NOT NULL";
  std::string row_s, row_c;
  struct Feature {
    std::string name;
    bool numeric;
  };
  std::vector<Feature> features;
  std::string per_feature;
  for (const auto& [name, type] : *sc) {
    auto it = candidate_types.find(name);
    if (it == candidate_types.end() || name.rfind("kappa_", 0) == 0) continue;  // lineage differs by design
    if (own.count(name)) continue;
    const bool same_type = it->second == type;
    const std::string s = "s." + QuoteIdentifier(name) + (same_type ? "" : "::text");
    const std::string c = "c." + QuoteIdentifier(name) + (same_type ? "" : "::text");
    row_s += (row_s.empty() ? "" : ", ") + s;
    row_c += (row_c.empty() ? "" : ", ") + c;
    if (IsLeadingColumnName(name)) continue;
    const bool numeric = IsNumericType(type) && IsNumericType(it->second);
    features.push_back({name, numeric});
    const std::string changed = both + " AND " + s + " IS DISTINCT FROM " + c;
    per_feature += ", count(*) FILTER (WHERE " + changed + ")";
    if (numeric) {
      const std::string delta = "abs(" + AsNumeric("c." + QuoteIdentifier(name), it->second) + " - " +
                                AsNumeric("s." + QuoteIdentifier(name), type) + ")";
      per_feature += ", max(" + delta + ") FILTER (WHERE " + changed + "), avg(" + delta + ") FILTER (WHERE " +
                     changed + ")";
    } else {
      per_feature += ", NULL, NULL";
    }
    // Changes between a value and NULL (a NaN or a sum past the double's range, in JSON's terms).
    per_feature += ", count(*) FILTER (WHERE " + both + " AND (" + s + " IS NULL) <> (" + c + " IS NULL))";
  }
  const std::string row_changed =
      row_s.empty() ? "false" : "ROW(" + row_s + ") IS DISTINCT FROM ROW(" + row_c + ")";
  const std::string sql = "SELECT count(*) FILTER (WHERE " + both + "), count(*) FILTER (WHERE " + both + " AND NOT (" +
                          row_changed + ")), count(*) FILTER (WHERE " + both + " AND " + row_changed +
                          "), count(*) FILTER (WHERE c.kappa_key IS NULL), count(*) FILTER (WHERE s.kappa_key IS NULL)" +
                          per_feature + " FROM " + QuoteQualified(serving_table) + " s FULL OUTER JOIN " +
                          QuoteQualified(candidate_table) + " c ON s.kappa_key = c.kappa_key";
  auto result = pg.Exec(sql);
  if (!result.ok()) return result.status();
  if (result->rows.size() != 1) return Status::IOError("the promotion diff query returned no row");
  const auto& r = result->rows[0];
  OutputDiff diff;
  diff.compared = ToInt(r[0]);
  diff.equal = ToInt(r[1]);
  diff.changed = ToInt(r[2]);
  diff.only_serving = ToInt(r[3]);
  diff.only_candidate = ToInt(r[4]);
  for (size_t i = 0; i < features.size(); ++i) {
    FieldChange f;
    f.field = features[i].name;
    f.changed = ToInt(r[5 + 4 * i]);
    f.largest = ToDouble(r[6 + 4 * i]);
    f.mean = ToDouble(r[7 + 4 * i]);
    f.number_null = features[i].numeric ? ToInt(r[8 + 4 * i]) : 0;
    if (!features[i].numeric) f.text = f.changed;
    diff.fields.push_back(f);
  }
  return diff;
}

// Whether `table` is the one version v of `job` wrote: the OID kappa_offsets
// recorded for its rows, else the comment kappa gave a table it made. A
// table renamed away and another made under the name was dropped, the
// user's rows with it, and kappa's left (a bug bash). "" when it is (or
// nothing says otherwise: a table of an older kappa), else why not.
static Result<std::string> NotTheVersionsTable(PgClient& pg, const std::string& job, const VersionInfo& v,
                                        const std::string& table, bool offsets_table) {
  const std::string reg = QuoteLiteral(QuoteQualified(table)) + "::regclass";
  auto here = pg.Exec("SELECT " + reg + "::oid::text, coalesce(obj_description(" + reg + ", 'pg_class'), '')");
  if (!here.ok()) return here.status();
  if (here->rows.empty()) return std::string();
  const std::string oid = here->rows[0][0];
  if (offsets_table) {
    auto recorded = pg.Exec("SELECT DISTINCT table_oid::text, coalesce(table_oid::regclass::text, '') FROM " +
                            PgOffsetsTable(v.postgres_table) + " WHERE job = " + QuoteLiteral(job) +
                            " AND version = " + std::to_string(v.version) + " AND table_oid IS NOT NULL");
    if (!recorded.ok()) return recorded.status();
    bool same = recorded->rows.empty();
    std::string where;
    for (const auto& r : recorded->rows) {
      same = same || r[0] == oid;
      if (r[0] != oid) where = r[1].empty() || r[1] == r[0] ? "which no longer exists" : "now named " + r[1];
    }
    if (!same) {
      return "it is not the table version " + std::to_string(v.version) + " wrote (kappa_offsets records the table " +
             where + "; this one was made since, under its name)";
    }
    if (!recorded->rows.empty()) return std::string();
  }
  const std::string owner = PgOwnerOf(here->rows[0][1]);
  if (!owner.empty() && owner != job) return "its comment says job " + owner + " writes it";
  return std::string();
}

Result<std::string> DropVersionTable(PgClient& pg, const std::string& job, const VersionInfo& v) {
  const std::string table = v.PostgresVersionTable();
  std::string line;
  bool lock_waited = false;
  Status st = InTransaction(pg, [&]() -> Status {
    // A reader's open transaction on the table made retire wait without
    // limit or a word, holding the serving lock, so that a promote of
    // another version failed on it (a bug bash): the table is locked
    // first, for at most 10 s, and only then the serving lock taken.
    if (auto t = pg.Exec("SET LOCAL lock_timeout = '10s'"); !t.ok()) return t.status();
    auto exists = PgRelationExists(pg, table);
    if (!exists.ok()) return exists.status();
    auto offsets_table = PgRelationExists(pg, PgSchemaPrefix(v.postgres_table) + "kappa_offsets");
    if (!offsets_table.ok()) return offsets_table.status();
    if (*exists) {
      auto locked = pg.Exec("LOCK TABLE " + QuoteQualified(table) + " IN ACCESS EXCLUSIVE MODE");
      if (!locked.ok()) {
        lock_waited = pg.last_sqlstate() == "55P03";
        return locked.status();
      }
      auto other = NotTheVersionsTable(pg, job, v, table, *offsets_table);
      if (!other.ok()) return other.status();
      if (!other->empty()) {
        line = "not dropping PostgreSQL table " + table + ": " + *other + "; drop what should go yourself";
        return Status::OK();
      }
    }
    KAPPA_RETURN_IF_ERROR(LockServingOf(pg, job));
    auto serving = ServingVersion(pg, job, v.postgres_table);
    if (!serving.ok()) return serving.status();
    if (*serving == v.version) {
      line = "not dropping PostgreSQL table " + table + ": kappa_serving says it serves job " + job +
             " (run `kappa status` to make PostgreSQL agree with the registry, then retire again)";
      return Status::OK();
    }
    int64_t offsets = 0;
    if (*offsets_table) {
      auto deleted = pg.Exec("DELETE FROM " + PgOffsetsTable(v.postgres_table) + " WHERE job = " + QuoteLiteral(job) +
                             " AND version = " + std::to_string(v.version));
      if (!deleted.ok()) return deleted.status();
      offsets = deleted->affected;
    }
    if (*exists) {
      // No CASCADE: a view someone built on it makes PostgreSQL refuse, and says so.
      auto dropped = pg.Exec("DROP TABLE " + QuoteQualified(table));
      if (!dropped.ok()) return dropped.status();
    }
    if (*exists || offsets > 0) {
      line = "dropped PostgreSQL table " + table + (*exists ? "" : " (already gone)") + " and its " +
             std::to_string(offsets) + " kappa_offsets rows";
    }
    return Status::OK();
  });
  if (!st.ok() && lock_waited) {
    return Status::Unavailable("sessions have held PostgreSQL table " + table + " for 10 s: " +
                               DescribeLockHolders(pg, {table}) + "; end them, or retire again later");
  }
  if (!st.ok()) return st;
  return line;
}

Result<std::optional<std::string>> PgRowJson(PgClient& pg, const std::string& table, const std::string& key,
                                             int32_t* row_version) {
  // The row as the JSON rows of a Kafka sink are written: the doubles (
  // row_to_json wrote NaN and the infinities as strings, 2.0 as 2 and -0.0
  // as -0), the times as epoch milliseconds, and the lineage, which a Kafka
  // row carries in its headers, left out (the row read the times as ISO
  // strings and added five kappa_ columns, so a client of `kappa get` broke
  // when a job moved to PostgreSQL: two bug bashes). Other columns as
  // PostgreSQL writes them in JSON.
  auto all = RelationColumns(pg, table);
  if (!all.ok()) return all.status();
  if (all->empty()) return Status::NotFound("PostgreSQL has no table or view " + table);
  Columns columns;
  bool has_version = false;
  for (const auto& c : *all) {
    if (c.first.rfind("kappa_", 0) != 0) columns.push_back(c);
    has_version = has_version || c.first == "kappa_version";
  }
  std::string select;
  for (const auto& [name, type] : columns) {
    const std::string column = "t." + QuoteIdentifier(name);
    select += select.empty() ? "" : ", ";
    if (type == "double precision") {
      select += "(" + column + ")::text, (" + column + " IS NULL)::text";
    } else if (type == "timestamp with time zone" || type == "timestamp without time zone") {
      select += "to_json(floor(extract(epoch FROM " + column + ") * 1000)::bigint)::text, 'false'";
    } else {
      select += "to_json(" + column + ")::text, 'false'";
    }
  }
  if (select.empty()) select = "1";
  // The version the row is of: read through the view during a rollback, a
  // row of v1 was labelled with the v2 the registry had named (a bug bash).
  if (has_version) select += ", t.kappa_version::text";
  auto rows = pg.Exec("SELECT " + select + " FROM " + QuoteQualified(table) + " t WHERE kappa_key = " +
                      QuoteLiteral(key));
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<std::string>();
  const auto& row = rows->rows[0];
  if (row_version != nullptr && has_version && !row.back().empty()) *row_version = std::atoi(row.back().c_str());
  std::string json = "{";
  for (size_t i = 0; i < columns.size(); ++i) {
    const std::string& text = row[2 * i];
    const bool null = row[2 * i + 1] == "true";
    if (i > 0) json += ",";
    AppendJsonString(json, columns[i].first);
    json += ":";
    if (null) {
      json += "null";
    } else if (columns[i].second == "double precision") {
      AppendJsonDouble(&json, std::strtod(text.c_str(), nullptr));
    } else {
      json += text;
    }
  }
  json += "}";
  return std::optional<std::string>(json);
}

}  // namespace kappa
