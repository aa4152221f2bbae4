// The PostgreSQL side of a job with `sink.postgres` (issue 13): the names
// and the DDL every part of kappa agrees on.
//  - <table>_v<N>: one table per version, the feature rows. Columns:
//    kappa_key (the deterministic output key, primary key), the row's
//    columns (WindowSpec::RowColumns: key, window_start/window_end or
//    event_time, then the features; timestamps are timestamptz), then the
//    lineage: kappa_version, kappa_partition, kappa_first_offset,
//    kappa_last_offset (the input records the row came from).
//  - kappa_offsets(job, version, partition, next_offset, epoch, spec_hash):
//    the input offsets committed in the same transaction as the rows.
//  - kappa_serving and the view <table> (replay/pg_serving.h): which
//    version readers see.
// kappa_offsets and kappa_serving live in the schema of <table> (public
// when the table names none).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/job_spec.h"

namespace kappa {

struct PgColumn {
  std::string name;
  std::string type;  // as information_schema.columns.data_type spells it
};

// The columns of the version's table, in order.
std::vector<PgColumn> PostgresColumns(const JobSpec& spec);
// CREATE TABLE IF NOT EXISTS for the version's table.
std::string PostgresCreateTable(const JobSpec& spec);
// "schema." of a [schema.]name ("" without one), and the name alone.
std::string PgSchemaPrefix(std::string_view table);
std::string PgBareName(std::string_view table);
// Whether two [schema.]names may be one table: equal once an unqualified
// name is read as schema public's (PostgreSQL's default search_path), so
// `t` and `public.t` are one (a bug bash: they passed deploy's check that
// two jobs do not write one table).
bool SamePgTable(std::string_view a, std::string_view b);
// The comment kappa gives a version's table it creates, naming the job
// that writes it; and the job a comment names ("" for another comment).
std::string PgOwnerComment(const std::string& job);
std::string PgOwnerOf(std::string_view comment);
// A [schema.]name quoted for SQL ("analytics"."user_spend_v2").
std::string QuoteQualified(std::string_view table);
// The kappa_offsets table beside `table`, quoted, and its DDL.
std::string PgOffsetsTable(std::string_view table);
std::string PgCreateOffsetsTable(std::string_view table);

}  // namespace kappa
