#include "engine/postgres_table.h"

#include "postgres/pg_client.h"

namespace kappa {
namespace {

const char* PgType(ValueType type) {
  switch (type) {
    case ValueType::kString: return "text";
    case ValueType::kDouble: return "double precision";
    case ValueType::kTimestamp: return "timestamp with time zone";
    case ValueType::kBool: return "boolean";
    default: return "bigint";
  }
}

}  // namespace

std::vector<PgColumn> PostgresColumns(const JobSpec& spec) {
  std::vector<PgColumn> out{{"kappa_key", "text"}};
  if (const WindowSpec* window = spec.FeatureWindow()) {
    for (const RowColumn& c : window->RowColumns()) out.push_back({c.name, PgType(c.type)});
  }
  out.push_back({"kappa_version", "integer"});
  out.push_back({"kappa_partition", "integer"});
  out.push_back({"kappa_first_offset", "bigint"});
  out.push_back({"kappa_last_offset", "bigint"});
  return out;
}

std::string PostgresCreateTable(const JobSpec& spec) {
  const auto columns = PostgresColumns(spec);
  std::string sql = "CREATE TABLE IF NOT EXISTS " + QuoteQualified(spec.PostgresTable()) + " (\n";
  for (size_t i = 0; i < columns.size(); ++i) {
    const PgColumn& c = columns[i];
    // The key, the window and the lineage are always there; a feature may be
    // NULL-free too, but a user who wants that says so with a constraint.
    const bool kappa_column = c.name.rfind("kappa_", 0) == 0 || IsLeadingColumnName(c.name);
    sql += "  " + QuoteIdentifier(c.name) + " " + c.type + (i == 0 ? " PRIMARY KEY" : kappa_column ? " NOT NULL" : "") +
           (i + 1 < columns.size() ? ",\n" : "\n");
  }
  return sql + ")";
}

std::string PgSchemaPrefix(std::string_view table) {
  const size_t dot = table.find('.');
  return dot == std::string_view::npos ? "" : std::string(table.substr(0, dot + 1));
}

std::string PgBareName(std::string_view table) {
  const size_t dot = table.find('.');
  return std::string(dot == std::string_view::npos ? table : table.substr(dot + 1));
}

bool SamePgTable(std::string_view a, std::string_view b) {
  auto qualified = [](std::string_view t) {
    return t.find('.') == std::string_view::npos ? "public." + std::string(t) : std::string(t);
  };
  return qualified(a) == qualified(b);
}

namespace {
constexpr std::string_view kOwnerPrefix = "kappa: written by job ";
}  // namespace

std::string PgOwnerComment(const std::string& job) { return std::string(kOwnerPrefix) + job; }

std::string PgOwnerOf(std::string_view comment) {
  if (comment.substr(0, kOwnerPrefix.size()) != kOwnerPrefix) return "";
  return std::string(comment.substr(kOwnerPrefix.size()));
}

std::string QuoteQualified(std::string_view table) {
  const std::string schema = PgSchemaPrefix(table);
  if (schema.empty()) return QuoteIdentifier(table);
  return QuoteIdentifier(std::string_view(schema).substr(0, schema.size() - 1)) + "." +
         QuoteIdentifier(PgBareName(table));
}

std::string PgOffsetsTable(std::string_view table) { return QuoteQualified(PgSchemaPrefix(table) + "kappa_offsets"); }

std::string PgCreateOffsetsTable(std::string_view table) {
  return "CREATE TABLE IF NOT EXISTS " + PgOffsetsTable(table) +
         " (job text NOT NULL, version integer NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL, "
         "epoch bigint NOT NULL, spec_hash text NOT NULL, rejected bigint NOT NULL DEFAULT 0, written bigint, table_oid bigint, "
         "PRIMARY KEY (job, version, partition))";
}

}  // namespace kappa
