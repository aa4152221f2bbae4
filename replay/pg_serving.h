// Serving through PostgreSQL (issue 13): for a job whose versions write
// PostgreSQL tables (sink.postgres), readers use the view <table> over the
// serving version's table <table>_v<N>, and kappa_serving (in the schema of
// <table>) records which version that is:
//   kappa_serving(job text PRIMARY KEY, version integer NOT NULL,
//                 table_name text NOT NULL, promoted_at timestamptz NOT NULL
//                 DEFAULT now(), registry_seq bigint NOT NULL DEFAULT 0)
// The view and the kappa_serving row change together in one transaction, so
// a reader sees all of one version or all of the other, never a mix.
//
// Which one wins: the registry (the control topic) is the single source of
// truth. Promote and rollback write the registry record first and swap the
// view second; a crash between the two leaves the view on the old version
// until the next ReconcileServing (kappa promote, rollback, status, get, or
// the start of a deployment) makes it the registry's. registry_seq (the
// registry sequence the swap was computed from) keeps a reconciler that read
// an older registry state from undoing a newer swap.
#pragma once

#include <cstdint>
#include <optional>
#include <functional>
#include <string>

#include "base/status.h"
#include "postgres/pg_client.h"
#include "replay/promotion.h"
#include "replay/registry.h"

namespace kappa {

// kappa_serving beside `base_table`, quoted, and its DDL (IF NOT EXISTS).
std::string PgServingTable(std::string_view base_table);
std::string PgCreateServingTable(std::string_view base_table);

// Whether the table or view `table` ([schema.]name) exists.
Result<bool> PgRelationExists(PgClient& pg, const std::string& table);

// FailedPrecondition, naming them, when the swap to `version` would have to
// drop the view (the columns differ) and views of someone else's depend on
// it, or when the version's table does not exist; OK otherwise. Promote and rollback check this before they write the
// registry, so a swap that cannot be done is refused, not left half done.
Status CheckServingSwap(PgClient& pg, const std::string& base_table, int32_t version);

// In ONE transaction: points the view `base_table` at
// `base_table`_v<version> (CREATE OR REPLACE VIEW, or DROP VIEW + CREATE
// VIEW when the columns differ from the view's) and upserts the job's
// kappa_serving row. With registry_seq > 0 the swap is skipped (*applied =
// false) when kappa_serving already records a later registry sequence.
// FailedPrecondition when the version's table does not exist, or when
// `base_table` is a table rather than kappa's view, or as CheckServingSwap;
// Unavailable, naming the sessions, when readers keep the view locked for
// about a minute (each attempt waits at most 500 ms for the lock, so that
// new readers never queue behind the swap for long).
// How long a swap waits for the view's readers: `attempts` of about a
// second each; on_wait (if set) is told once, some seconds in, who holds
// the view (promote and rollback waited up to a minute without a word, and
// status and get as long: a bug bash).
struct SwapWait {
  int attempts = 60;
  std::function<void(const std::string&)> on_wait;
};
Status SwapServingView(PgClient& pg, const std::string& job, const std::string& base_table, int32_t version,
                       int64_t registry_seq = 0, bool* applied = nullptr, const SwapWait& wait = {});

// The version kappa_serving records for `job` (nullopt: none, or no table).
Result<std::optional<int32_t>> ServingVersion(PgClient& pg, const std::string& job, const std::string& base_table);

// The DSN to reach `v`'s tables: `override` (--postgres, or the environment's
// KAPPA_POSTGRES_DSN) when given, else the one registered (no password).
std::string ServingDsn(const VersionInfo& v, const std::string& override_dsn);

// Makes kappa_serving and the view agree with the registry's serving
// version (the registry wins; see above). Nothing to do for a job whose
// serving version has no PostgreSQL table, or nothing serving. A serving
// version whose table does not exist yet is skipped quietly. Returns a line
// for the user when it changed something ("" otherwise).
Result<std::string> ReconcileServing(const JobRecord& record, const std::string& override_dsn,
                                     const SwapWait& wait = {});

// A version that never ran, unregistered again (RunDeployment): what the
// deployment made in PostgreSQL for it is undone. `record` is the job after
// the unregistration (nullopt: no version left). If kappa_serving says the
// version serves, the view and the row go to the record's serving version,
// or, with none, are dropped; the version's table `base_table`_v<version>
// is dropped if `drop_table` (the deployment created it) and it is empty.
// Returns a line for the user ("" when nothing changed).
Result<std::string> WithdrawServing(const std::optional<JobRecord>& record, const std::string& dsn,
                                    const std::string& job, const std::string& base_table, int32_t version,
                                    bool drop_table);

// A command reading versions' tables (kappa get, promote's diff) waits at
// most `seconds` for a lock on one (LOCK TABLE, ALTER TABLE, VACUUM FULL):
// it waited silently for as long as the lock stood (a bug bash: get 89 s,
// promote 44 s). BoundLockWait sets the session's lock_timeout;
// NameLockWait turns a statement's lock timeout (55P03) into an error
// naming the sessions that hold `tables` and what to do, and passes any
// other status through.
Status BoundLockWait(PgClient& pg, int seconds);
Status NameLockWait(PgClient& pg, const Status& st, const std::vector<std::string>& tables,
                    const std::string& what, int seconds);

// The promotion diff of two versions' tables, computed in the database (a
// FULL OUTER JOIN on kappa_key; nothing is loaded into memory): rows are
// equal when every common non-lineage column is; per feature column (the
// common columns after the key and window ones) the rows where it changed,
// and for numeric ones the largest and mean absolute change.
Result<OutputDiff> ComparePgTables(PgClient& pg, const std::string& serving_table,
                                   const std::string& candidate_table);

// Retirement: drops `v`'s table (never the table kappa_serving or the
// registry says serves: the caller checks the registry, this checks
// kappa_serving) and deletes its kappa_offsets rows. Returns the report line.
Result<std::string> DropVersionTable(PgClient& pg, const std::string& job, const VersionInfo& v);

// One row of a version's table (or of the view) as a JSON object of its
// columns (row_to_json); nullopt when there is no row for `key`.
// *row_version (if given): the row's kappa_version, when the table has it.
Result<std::optional<std::string>> PgRowJson(PgClient& pg, const std::string& table, const std::string& key,
                                             int32_t* row_version = nullptr);

}  // namespace kappa
