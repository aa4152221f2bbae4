// Shared by the PostgreSQL sink's tests: the suite server's DSN, a feature
// job whose rows go to a table (or, for a reference, to a topic as JSON
// rows), and a table's contents as text.
#pragma once

#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "postgres/pg_client.h"
#include "tests/postgres/suite_dsn.h"
#include "tests/e2e/e2e_util.h"

namespace kappa::testing {

inline constexpr const char* kFeatureWindow =
    "{type: tumbling, size: 1h, key: user_id, features: {txns: count, spend: sum(amount_cents), "
    "biggest: max(amount_cents), mean: avg(amount_cents)}}";

// The spec of WriteSpec with named features; `sink` replaces its sink line's
// value ("{postgres: {dsn: ..., table: ...}}", or "{topic: T}" for JSON rows).
inline std::string FeatureSpec(const ScratchDir& dir, const std::string& name, const SpecOptions& o,
                               const std::string& sink) {
  std::string text = ReadFile(WriteSpec(dir, name + "-base.yaml", o));
  const std::string window = "{type: tumbling, size: 1h, key: user_id, aggregates: [count, sum, min, max, avg]}";
  const size_t at = text.find(window);
  EXPECT_NE(at, std::string::npos) << text;
  text.replace(at, window.size(), kFeatureWindow);
  const std::string old_sink = "sink: {topic: " + o.sink + "}";
  const size_t s = text.find(old_sink);
  EXPECT_NE(s, std::string::npos) << text;
  text.replace(s, old_sink.size(), "sink: " + sink);
  const std::string path = dir / (name + ".yaml");
  std::ofstream(path) << text;
  return path;
}

inline std::string PostgresSinkValue(const std::string& dsn, const std::string& table) {
  return "{postgres: {dsn: \"" + dsn + "\", table: " + table + "}}";
}

// Every row of `table` ordered by key, one line per row (tab-separated
// text), so two tables compare as strings.
inline std::string DumpTable(PgClient& pg, const std::string& table) {
  auto rows = pg.Exec("SELECT * FROM " + table + " ORDER BY kappa_key");
  EXPECT_TRUE(rows.ok()) << rows.status().ToString();
  if (!rows.ok()) return "";
  std::string out;
  for (const auto& r : rows->rows) {
    for (size_t i = 0; i < r.size(); ++i) out += (i ? "\t" : "") + r[i];
    out += "\n";
  }
  return out;
}

inline int64_t CountOf(PgClient& pg, const std::string& sql) {
  auto rows = pg.Exec(sql);
  EXPECT_TRUE(rows.ok()) << sql << ": " << rows.status().ToString();
  if (!rows.ok() || rows->rows.empty()) return -1;
  return std::stoll(rows->rows[0][0]);
}

// The number after "name": in a JSON row ("" when absent).
inline std::string JsonNumber(const std::string& json, const std::string& name) {
  const std::string pattern = "\"" + name + "\":";
  const size_t at = json.find(pattern);
  if (at == std::string::npos) return "";
  const size_t start = at + pattern.size();
  return json.substr(start, json.find_first_of(",}", start) - start);
}

}  // namespace kappa::testing
