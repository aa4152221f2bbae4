// Promotion, rollback and retirement of a job's versions. Promote switches
// the serving alias with ONE registry record, after checking that the
// candidate has caught up (every partition within a lag of the log end, now)
// and after comparing its outputs with the serving version's on the keys
// both have produced; it refuses over the changed-share gate unless accepted.
#pragma once

#include <string>
#include <vector>

#include "replay/registry.h"

namespace kappa {

struct FieldChange {
  std::string field;
  int64_t changed = 0;
  double largest = 0;  // largest absolute change (infinity past the double range)
  double mean = 0;     // mean absolute change over the rows where both values are numbers
  // Of `changed`: rows where one version has a number and the other null
  // (a NaN or a double sum past the range; no magnitude), and rows where a
  // text column differs.
  int64_t number_null = 0;
  int64_t text = 0;
};

struct OutputDiff {
  int64_t compared = 0;  // keys both versions produced
  int64_t equal = 0;
  int64_t changed = 0;
  int64_t only_serving = 0;
  int64_t only_candidate = 0;
  std::vector<FieldChange> fields;
  // JSON feature rows: columns one version writes and the other does not
  // (a feature added or renamed), by name.
  std::vector<std::string> columns_only_in_one;
  double changed_share() const { return compared ? static_cast<double>(changed) / compared : 0; }
  // The gate's measure: rows that differ (changed, or written by one
  // version only) over every key either version wrote. A candidate that
  // lost rows (a mistyped field sending every record to the DLQ) compared
  // few or none and passed a gate on changed_share alone.
  int64_t differing() const { return changed + only_serving + only_candidate; }
  double differing_share() const {
    const int64_t all = compared + only_serving + only_candidate;
    return all ? static_cast<double>(differing()) / static_cast<double>(all) : 0;
  }
  std::string ToString() const;
};

// Latest value per key of each topic (upsert semantics), compared on the
// keys present in both. WindowAggregates are compared per aggregate, JSON
// feature rows per named numeric column; other payloads compare as bytes.
Result<OutputDiff> CompareOutputs(const KafkaConfig& config, const std::string& serving_topic,
                                  const std::string& candidate_topic);

// Sets each partition's log_end in *snapshot (a version's reported progress)
// to `topic`'s end now, so its lag() and percent_done() say how far behind
// the version is now. A partition whose end cannot be read keeps the log_end
// it reported; the first such error is returned (after the first timeout
// the rest are not asked: they keep theirs).
Status RefreshLogEnds(const KafkaConfig& config, const std::string& topic, ProgressSnapshot* snapshot);

struct PromoteOptions {
  bool force = false;              // skip the caught-up check
  bool accept = false;             // skip the changed-share gate
  double max_changed_share = -1;   // overrides the spec's gate when >= 0
  int64_t max_lag = 1000;          // caught up: every partition within this many records
  // PostgreSQL versions (sink.postgres): the DSN to use instead of the
  // registered one (which has no password); "" uses the registered one.
  std::string postgres_dsn;
};

// On success *report holds the diff summary and what changed.
// For versions that write PostgreSQL tables, the diff runs in the database
// (ComparePgTables) and, after the registry record, the view <table> is
// swapped to the version's table (ReconcileServing, replay/pg_serving.h):
// the registry is written first and wins; a crash between the two is
// repaired by the next promote, rollback, status, get or deployment start.
Status Promote(Registry& registry, const KafkaConfig& config, const std::string& job, int32_t version,
               const PromoteOptions& options, std::string* report);
// The same order as Promote: the registry record, then the view. Refuses
// a version whose process exited on an error, is silent or is paused (its
// outputs no longer move) unless `force`.
Status Rollback(Registry& registry, const std::string& job, std::string* report,
                const std::string& postgres_dsn = "", bool force = false);
// Marks the version retired (its process stops at its next registry check)
// and deletes the local state of versions retired more than retention_ms ago,
// and their PostgreSQL tables and kappa_offsets rows (never the serving one's).
Status Retire(Registry& registry, const std::string& job, int32_t version, int64_t retention_ms,
              std::string* report, const std::string& postgres_dsn = "");

}  // namespace kappa
