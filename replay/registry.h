// Registry: the deployment registry, kept in a Kafka control topic (default
// "kappa.control", compacted: created so by the first write if missing) as
// FlatBuffers records: job
// records (versions, states, serving alias, rollback stack) and progress
// records keyed "progress/<job>/v<N>" (what a running version last reported;
// the latest per key wins), and text records under their own keys (the last
// promotion's report, "promotion/<job>", for status pages), and throttle
// records keyed "throttle/<job>/v<N>" (a running version's rate wish, latest
// wins; plain text). The control topic is the single source of truth
// and job changes are linearizable:
//  - every job record carries the job's registry sequence it was computed
//    from (base) and the one it sets (base + 1); all job records go to
//    partition 0, each under its own key "job/<job>/<seq>-<nonce>" (so
//    compaction never replaces the write that won by one that lost);
//  - readers apply job records in log order and accept one only if its base
//    is the job's current sequence: of two writes based on the same state,
//    the first in the log wins and the other is ignored by every reader;
//  - a writer reads the topic back past its own write to learn whether it
//    won (TryPutJob); a loser re-reads and redoes its read-modify-write, or
//    refuses.
// A promotion is one record. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "engine/job_runner.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_config.h"

namespace kappa {

enum class VersionState { kLive, kReplaying, kCaughtUp, kRetired };
const char* VersionStateName(VersionState state);

struct VersionInfo {
  int32_t version = 0;
  std::string spec_hash;
  VersionState state = VersionState::kLive;
  std::string source_topic;
  std::string output_topic;
  std::string group;
  std::string state_dir;
  int64_t registered_at_ms = 0;
  int64_t retired_at_ms = 0;
  double max_changed_share = -1;  // promotion gate from the spec; < 0: none
  // sink.postgres: the base table ([schema.]name; the version's rows are in
  // <postgres_table>_v<version>, readers use the view <postgres_table>), ""
  // for a Kafka sink; and the spec's DSN with its password removed (never
  // stored in the control topic).
  std::string postgres_table;
  std::string postgres_dsn;
  // The topics its dead letters (and their .parked) and late records go to;
  // "" when registered by a kappa before they were kept.
  std::string dlq_topic;
  std::string late_topic;
  std::string PostgresVersionTable() const { return postgres_table + "_v" + std::to_string(version); }
};

struct JobRecord {
  std::string job;
  std::vector<VersionInfo> versions;
  int32_t serving = 0;  // 0: nothing serves yet
  // The versions that served before, the latest last, each once (at its
  // latest time): bounded by the versions, not by the promotions.
  std::vector<int32_t> previous_serving;
  int64_t updated_at_ms = 0;
  // The job's registry sequence this state was read at (how many writes were
  // accepted); a write of this record is based on it. Set by the Registry.
  int64_t seq = 0;
  VersionInfo* Find(int32_t version);
  const VersionInfo* Find(int32_t version) const;
  // Adds `version` as the latest earlier serving one (a promotion from it).
  // Its earlier places are dropped, and any repeats an older kappa's record
  // held: the whole history went into every job record, so a job promoted
  // back and forth a thousand times wrote records of 6 KB, every one kept,
  // until the control topic's partition 0 overflowed (a bug bash). Rollback
  // chooses as before (the latest place of each version is the one it
  // reaches first).
  void PushPreviousServing(int32_t version) {
    previous_serving.push_back(version);
    std::vector<int32_t> kept;
    for (auto it = previous_serving.rbegin(); it != previous_serving.rend(); ++it) {
      if (std::find(kept.begin(), kept.end(), *it) == kept.end()) kept.push_back(*it);
    }
    previous_serving.assign(kept.rbegin(), kept.rend());
  }
  // The version `kappa rollback` would make serve (the latest earlier
  // serving one that is neither retired nor serving now); 0 if none.
  int32_t RollbackTarget() const {
    for (auto it = previous_serving.rbegin(); it != previous_serving.rend(); ++it) {
      const VersionInfo* v = Find(*it);
      if (v && v->state != VersionState::kRetired && *it != serving) return *it;
    }
    return 0;
  }
};

struct ProgressRecord {
  std::string job;
  int32_t version = 0;
  ProgressSnapshot snapshot;
  int64_t caught_up_since_ms = 0;
  bool stopped = false;
  // A process of a scaled-out version: the record covers the partitions it
  // runs; each instance has its own (empty: the version's one process).
  std::string instance;
  int64_t report_interval_ms = 0;  // how often the process reports (0: unknown)
  // With stopped: why the process exited, when it was an error (the first
  // line of it); empty for a clean stop (SIGTERM, retire, a bounded run's end).
  std::string exit_error;
  // A scaled-out instance: the last positions it reported of partitions it
  // no longer holds (rebalanced away, or not assigned yet since a restart),
  // with when (the checkpoint_ms of the record each was last in). When no
  // instance runs, the version's positions are the latest known of each
  // partition, these included.
  struct Released {
    PartitionProgress progress;
    int64_t reported_ms = 0;
  };
  std::vector<Released> released;

  // "running"; "stopped"; "stopped on an error (...)"; or, for a process silent for three of its report
  // intervals (at least 30 s), "not reporting for N s (...)": a process
  // killed with -9 or on a lost host never says "stopped".
  std::string Liveness(int64_t now_ms) const;
};

// `next`, the record an instance is about to publish, keeps what `previous`
// (its last one, or the one it found in the registry at its start) knew of
// partitions `next` does not report: the latest position of each.
void CarryReleasedPositions(const ProgressRecord& previous, ProgressRecord* next);

// What `kappa throttle` asked of a running version; the version's
// deployment applies it at its next registry poll. The rate and the pause
// are kept under keys of their own, "throttle/<job>/v<N>/rate" and
// ".../paused" (the latest per key wins), so that a --pause and a
// --max-rate at the same time both hold: one record for both lost either
// (a bug bash). A record under "throttle/<job>/v<N>" (an older kappa's)
// is what the two keys start from.
struct ThrottleRecord {
  std::string job;
  int32_t version = 0;
  double max_rate = -1;  // records/s (0: no cap); < 0: the cap the version was started with
  bool paused = false;
  int64_t updated_at_ms = 0;
};
// "max-rate 5000 rec/s", "no cap", "the rate cap the version was started with";
// paused: "paused (... on resume)".
std::string DescribeThrottle(const ThrottleRecord& record);
// A rate a running version applies, for its notes: "2500 rec/s", a small
// one as given ("1.5 rec/s"), "no cap" for 0.
std::string RateText(double records_per_second);

class Registry {
 public:
  explicit Registry(KafkaConfig config, std::string control_topic = "kappa.control");
  ~Registry();
  // Reads the control topic to its end. A missing topic is an empty registry.
  Status Refresh();
  // The jobs with at least one version registered.
  std::vector<std::string> Jobs() const;
  // A job's record, also one whose versions were all unregistered again
  // (empty versions: the base of its next registration).
  std::optional<JobRecord> Job(const std::string& job) const;
  // The version's progress: its one process's, or for a scaled-out version
  // the instances' records merged (each partition from the instance that
  // checkpointed it last; counters and rates summed; caught up when every
  // running instance is; stopped when all are).
  std::optional<ProgressRecord> Progress(const std::string& job, int32_t version) const;
  // The records of a scaled-out version's instances, by instance name.
  std::vector<ProgressRecord> InstanceProgress(const std::string& job, int32_t version) const;
  // Writes `record` based on record.seq, waits for its acknowledgement and
  // reads the control topic back past it: true if the write won (record.seq
  // is then the new sequence), false if another write based on the same
  // state came first in the log (it is ignored by every reader). Either way
  // the local view is then the log's, as of the read-back.
  Result<bool> TryPutJob(JobRecord& record);
  // The offset in the control topic of the accepted job record in which
  // `version` of `job` was registered (its latest registration, if it was
  // unregistered since); -1 if not registered. Job records share one
  // partition, so of two jobs' versions the lower offset registered first.
  int64_t RegisteredOffset(const std::string& job, int32_t version) const;
  // TryPutJob; a lost write is FailedPrecondition ("changed concurrently").
  Status PutJob(JobRecord& record);
  Status PutProgress(const ProgressRecord& record);
  // Other tools' latest-per-key records in the control topic (e.g. `kappa
  // dlq replay`'s "dlq-replayed/<topic>/<partition>" markers): the value last
  // written under `key` as of the last Refresh, and a write that waits for
  // its acknowledgement. Keys must not start with "job/" or "progress/".
  std::optional<std::string> Value(const std::string& key) const;
  Status PutValue(const std::string& key, const std::string& value);
  // The key of the last promotion's report (Value/PutValue), which the
  // status page shows.
  static std::string PromotionKey(const std::string& job) { return "promotion/" + job; }
  std::optional<ThrottleRecord> Throttle(const std::string& job, int32_t version) const;
  // Writes the rate (if `rate`) and the pause (if `pause`) of `record`.
  Status PutThrottle(const ThrottleRecord& record, bool rate, bool pause);
  const std::string& control_topic() const { return topic_; }
  // The topic configs kappa creates a missing control topic with (before its
  // first write, through the admin API, two partitions, the broker's default
  // replication): compacted, never deleted by time or size, since job
  // records are the registry's history (each under a key of its own, so
  // compaction keeps every one) and progress records are latest-per-key.
  // Job records go to partition 0, everything else (progress, throttles,
  // markers) to the others when there are others: a version's heartbeats
  // cannot push job records out of a size-bounded partition (the embedded
  // broker keeps 5 MiB of each). A partition 0 that lost its first records
  // anyway (retention, the embedded broker) is an error on every read: the
  // registry's history is gone, and what is left would read as a registry
  // without those jobs or versions.
  static const std::map<std::string, std::string>& TopicConfigs();
  // Empty when the control topic keeps its records (cleanup.policy=compact)
  // or the broker cannot say (the embedded broker has no DescribeConfigs;
  // an ACL may deny it); else what is wrong and what to do. A topic an
  // older kappa (or a broker's auto-create) made has cleanup.policy=delete,
  // and retention then deleted the registry a week later (a bug bash).
  // Job records are refused on such a topic (PutJob, TryPutJob).
  std::string RetentionRisk();
  // How many records the last Refresh read: what was written since the one
  // before (all of the topic the first time).
  int64_t last_read_records() const { return last_read_records_; }
  // What the last read found that a user must hear of: a job record an
  // older kappa (before sequenced job records) wrote after this kappa had
  // written that job's, which is ignored (the older kappa's promote said
  // "now serves" while every newer kappa went on with the old serving
  // version, a bug bash).
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The values written under a "lock/..." key that the last Refresh read,
  // in the log's order (RegistryLease: of two claims written at once, the
  // first in the log holds the lease).
  std::vector<std::string> LockWrites(const std::string& key) const;

 private:
  // Reads the topic to its end; *watched (if given) is set to whether the
  // job record keyed watch_key was accepted (1), rejected (-1) or not seen (0).
  Status Load(const std::string* watch_key, int* watched);
  // Produces and waits for the ack; *offset: where it was written.
  // kNotJobRecord: a partition other than 0 when the topic has one.
  static constexpr int32_t kNotJobRecord = -2;
  Status Put(const std::string& key, const std::string& value, int32_t partition, int64_t* offset);
  // Creates the control topic compacted if it does not exist (once).
  Status EnsureTopic();
  KafkaConfig config_;
  std::string topic_;
  bool topic_ensured_ = false;
  bool retention_checked_ = false;  // RetentionRisk found the topic compacted
  int32_t partitions_ = 0;  // of the control topic, once known (Put)
  KafkaHandle producer_;
  std::map<std::string, JobRecord> jobs_;       // job -> its accepted state
  std::map<std::pair<std::string, int32_t>, int64_t> claims_;  // (job, version) -> RegisteredOffset
  std::map<std::string, std::string> progress_;  // progress key -> latest value bytes
  // What the reads so far found, so that a re-read reads only what came
  // since (a running version re-reads the registry every second; reading
  // the whole topic each time grew with every progress record written
  // until compaction, days later). Per partition, where the last read
  // ended; the job records in it; and per other key its latest value and
  // where that came from.
  struct JobWrite {
    std::string key;
    JobRecord record;
    int64_t base_seq = 0;
    int64_t seq = 0;  // 0: written before sequences existed
    int32_t partition = 0;
    int64_t offset = 0;
    int64_t timestamp_ms = 0;
  };
  std::vector<std::string> warnings_;  // of the last read (warnings())
  std::vector<int64_t> read_to_;
  int64_t last_read_records_ = 0;
  std::vector<JobWrite> job_writes_;
  std::map<std::string, std::string> read_values_;
  std::map<std::string, std::pair<int32_t, int64_t>, std::less<>> written_at_;
  std::map<std::string, std::vector<std::string>> lock_writes_;  // of the last read (LockWrites)
};

// A lease in the control topic: one process at a time holds `name` (the
// key "lock/<name>"). Two `kappa dlq replay` runs of one DLQ at once each
// re-injected every record, both exiting 0 (a bug bash). A holder renews
// it (Renew) at least every kStaleMs; one silent for longer (killed, a
// lost host), or on this host with its process gone, holds it no more. Of two processes claiming it at once, the
// claim first in the control topic's log wins (all such keys are in one
// partition).
class RegistryLease {
 public:
  // A holder not heard of for this long holds it no more; nor does one on
  // this host whose process is gone.
  static constexpr int64_t kStaleMs = 30000;
  // Claims the lease for `who` (a line naming the process, for the other
  // claimants' message). FailedPrecondition naming the holder (and since
  // when it was last heard of) when another process holds it.
  static Result<std::unique_ptr<RegistryLease>> Acquire(Registry& registry, const std::string& name,
                                                        const std::string& who);
  // Writes the claim again. FailedPrecondition when the last renewal is
  // more than kStaleMs ago: another process may hold the lease since.
  Status Renew();
  // Gives the lease up (once the latest claim is this one's).
  Status Release();
  ~RegistryLease() = default;

 private:
  RegistryLease(Registry& registry, std::string key, std::string nonce, std::string who)
      : registry_(registry), key_(std::move(key)), nonce_(std::move(nonce)), who_(std::move(who)) {}
  std::string Claim(int64_t now_ms) const;
  Registry& registry_;
  const std::string key_;
  const std::string nonce_;
  const std::string who_;
  int64_t renewed_ms_ = 0;
};


}  // namespace kappa
