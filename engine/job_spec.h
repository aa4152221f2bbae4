// JobSpec: one version of a job, parsed once from a YAML file into plain
// structs (nothing deeper reads YAML). The spec hash covers everything that
// decides output (source, operators, lateness, sink topics, delivery), not
// operational knobs (checkpoint interval, state directory), so changing logic
// under the same version is detected and refused, while tuning is not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/config_node.h"  // ParseDurationMs
#include "base/status.h"
#include "operators/operator_registry.h"

namespace kappa {

enum class StartPosition { kEarliest, kLatest, kTimestamp };

// `alerts:` in the spec: thresholds that become kappa_alert{name=...} 1 on
// /metrics and a warning line when crossed (< 0: not set).
struct AlertSpec {
  double dlq_per_hour = -1;   // DLQ records per hour, over the last hour (or since start)
  double late_fraction = -1;  // late records / records read, over the same window
  int64_t lag_records = -1;   // total lag of the input partitions, now
};
enum class DeliveryMode { kAtLeastOnce, kExactlyOnce };

// `scale_out:` in the spec: the version's processes join the consumer group
// <job>.v<N> and share its partitions; each task's state also goes to the
// changelog topic <job>.v<N>.changelog (engine/changelog.h). Operational
// (not hashed): a version can go from one process to several.
struct ScaleOutSpec {
  bool enabled = false;
  int session_timeout_ms = 10000;  // how soon a silent instance's partitions move
  // `standbys: N`: each instance also keeps a warm copy of the state of the
  // partitions its N predecessors in the group run (members ordered by
  // member id, a ring), following the changelog, so a failover restores
  // locally (engine/standby.h). With N at least the instances less one,
  // every instance copies every partition it does not run. 0 to kMaxStandbys.
  int standbys = 0;
  static constexpr int kMaxStandbys = 8;
  // This process's name in the group (--instance; default host:state dir):
  // its transactional.id under exactly_once and its line in `kappa status`.
  std::string instance;
};

struct JobSpec {
  std::string job;
  int32_t version = 0;

  std::string source_topic;
  StartPosition start = StartPosition::kEarliest;
  int64_t start_timestamp_ms = 0;
  // Start at the log start offset when history below it is gone (the gap is
  // recorded in metrics and lineage) instead of refusing.
  bool allow_truncated_history = false;

  DecodeSpec decode;
  std::vector<OperatorSpec> operators;
  int64_t allowed_lateness_ms = 0;

  std::string sink_topic;  // the base name; outputs go to <sink_topic>.v<version>
  // Feature rows (a window with `features`): `sink.format` (json by
  // default), and for avro the Schema Registry the row schema is registered
  // with (`sink.schema_registry`, else the source's). Copied into the
  // window's spec, whose canonical text covers the format.
  std::string sink_schema_registry_url;
  // `sink.postgres`: the feature rows go to PostgreSQL instead of a topic,
  // table <postgres_table>_v<version> (the table is logic, hashed; the dsn is
  // where, not what: not hashed). Empty: a Kafka sink.
  std::string postgres_dsn;
  std::string postgres_table;  // [schema.]name
  std::string dlq_topic;
  // `dlq.max_retries`: a record that failed more often than this (counting
  // re-injections by `kappa dlq replay`) goes to <dlq_topic>.parked instead
  // of the DLQ. Operational: not hashed.
  int dlq_max_retries = 3;
  std::string ParkedTopic() const { return dlq_topic + ".parked"; }
  std::string late_topic;
  DeliveryMode delivery = DeliveryMode::kAtLeastOnce;

  // Operational (not hashed).
  // The log archive (archive/archive.h) holding this topic's history: each
  // partition is read from it up to its archived end, then from Kafka at
  // exactly that offset. Empty: Kafka only.
  std::string archive_dir;
  // Worker threads running the partitions' tasks in parallel (archive and Kafka phases).
  int parallelism = 1;
  int64_t checkpoint_interval_ms = 5000;
  std::string state_dir;  // default .kappa/state/<job>.v<version>
  // `metrics: {port, bind}`: serve /metrics there (-1: not unless
  // --metrics-port says so; 0: a free port, printed).
  ScaleOutSpec scale_out;
  int metrics_port = -1;
  std::string metrics_bind = "127.0.0.1";
  AlertSpec alerts;
  // Promotion gate: refuse to promote this version when more than this share
  // of the rows both versions produced changed (< 0: no gate).
  double max_changed_share = -1;

  std::string spec_hash;  // 16 hex digits

  // Set by the runtime on the specs of the stages of a repartitioned job
  // (engine/stage_plan.h), never by YAML. Stage k > 0 reads
  // <job>.v<N>.repartition.<k> and has `stage_upstreams` upstream tasks;
  // a stage that ends in a repartition writes `stage_output_topic`.
  int32_t stage = 0;
  int32_t stage_upstreams = 0;
  std::string stage_output_topic;
  // Stage k > 0: the job's input topic (source_topic is the repartition
  // topic), where its records' origin coordinates are
  // (InputRecord::origin_partition): dead letters, late records and output
  // lineage name it.
  std::string origin_topic;
  // The topic a record's (or a row's) coordinates are in.
  const std::string& InputTopic(bool origin) const { return origin ? origin_topic : source_topic; }

  // The feature window ending the chain (a window with `features`), or null.
  WindowSpec* FeatureWindow();
  const WindowSpec* FeatureWindow() const;

  std::string OutputTopic() const {
    return stage_output_topic.empty() ? sink_topic + ".v" + std::to_string(version) : stage_output_topic;
  }
  bool postgres() const { return !postgres_table.empty(); }
  // The PostgreSQL table this version writes: <table>_v<version>.
  std::string PostgresTable() const { return postgres_table + "_v" + std::to_string(version); }
  // Where the outputs go, for people: the topic or "postgres table T".
  std::string OutputName() const { return postgres() ? "postgres table " + PostgresTable() : OutputTopic(); }
  // A stage k > 0 of a repartitioned job: <job>.v<N>.stage<k> (its own
  // group, changelog and transactional ids).
  std::string ConsumerGroup() const { return ConsumerGroupOf(job, version, stage); }
  static std::string ConsumerGroupOf(const std::string& job, int32_t version, int32_t stage) {
    return job + ".v" + std::to_string(version) + (stage > 0 ? ".stage" + std::to_string(stage) : "");
  }
  // The topic between stage k-1 and stage k of a repartitioned job.
  std::string RepartitionTopic(int32_t k) const { return RepartitionTopicOf(job, version, k); }
  static std::string RepartitionTopicOf(const std::string& job, int32_t version, int32_t k) {
    return job + ".v" + std::to_string(version) + ".repartition." + std::to_string(k);
  }
  std::string ChangelogTopic() const { return ChangelogTopicOf(job, version, stage); }
  static std::string ChangelogTopicOf(const std::string& job, int32_t version, int32_t stage) {
    return ConsumerGroupOf(job, version, stage) + ".changelog";
  }
  // The topics kappa keeps for a version's own use, whether or not it is
  // scaled out or repartitioned: its two stages' changelogs and the topic
  // between the stages (InternalTopicsOf: of a registered version).
  std::vector<std::string> InternalTopics() const { return InternalTopicsOf(job, version); }
  static std::vector<std::string> InternalTopicsOf(const std::string& job, int32_t version) {
    return {ChangelogTopicOf(job, version, 0), ChangelogTopicOf(job, version, 1), RepartitionTopicOf(job, version, 1)};
  }
  // The canonical text the hash is computed over (stable across whitespace,
  // comments and key order in the YAML).
  std::string CanonicalLogic() const;
};

// A job spec is a few hundred bytes; anything over 1 MiB is refused before
// it is read, and nesting deeper than kMaxSpecNesting before it is parsed.
inline constexpr size_t kMaxSpecBytes = 1 << 20;
inline constexpr int kMaxSpecNesting = 64;

Result<JobSpec> LoadJobSpec(const std::string& path);
// Whether a dot-separated part of `name` is v<digits> (what kappa appends
// for a version: refused in job names, or two jobs' derived names meet).
bool HasVersionSegment(std::string_view name);
// An instance name whose first dot-separated part is stage<digits>: the
// stages of a repartitioned version end their transactional ids so
// (kappa.<job>.v<N>.stage1.<instance>), and instance stage1.x of stage 0
// met instance x of stage 1 (a bug bash).
bool IsReservedInstanceName(std::string_view name);
// The default name of a scaled-out process: the host name and a hash of the
// absolute state directory (stable across restarts of that process).
std::string DefaultInstanceName(const std::string& state_dir);
Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& origin = "spec");

// `dir` as an absolute, normalized path (against the current directory):
// where a state directory is, said and registered in full.
std::string AbsoluteStateDir(const std::string& dir);

}  // namespace kappa
