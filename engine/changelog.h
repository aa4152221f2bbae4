// Changelog: how a task's state moves with its partition between the
// processes of a scaled-out version (spec `scale_out:`, DESIGN "Scale-out
// rides on Kafka"). Every checkpoint, before the sink barrier, each task the
// process owns writes its changed state entries (erasures as tombstones)
// and then a marker (next offset, watermark, counters, epoch, spec hash,
// writer) to its partition of the compacted topic <job>.v<N>.changelog,
// partitioned like the source, through the sink's producer: flushed by the
// at-least-once barrier, inside the epoch's transaction under exactly_once.
// The local RocksDB checkpoint follows, so the changelog is never behind it.
//
// Record keys: "<table>\0<key>" for a state entry (value: the raw bytes, a
// tombstone for an erasure), "\0marker" for the marker (a FlatBuffers
// ChangelogMarker). Compaction keeps the latest of each.
//
// A process given a partition reads the latest marker (the tail of the
// partition, normally its last record): if its local RocksDB checkpoint is
// at the same offset it restores locally, otherwise it reads the whole
// partition and keeps the entries written before the latest marker. Entries
// after the latest marker (a writer that died between its entries and its
// marker, at-least-once) are "orphans": they are not state, and the new
// owner rewrites their keys with the restored values at once, so a later
// marker never covers them. A partition that ends with orphans is read back
// from its end to its latest marker first (LastMarker): a local checkpoint
// at that marker is restored, and only the orphans rewritten from it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"
#include "state/state_backend.h"

struct rd_kafka_s;

namespace kappa {

class KafkaSink;
class Task;

struct ChangelogMarker {
  TaskCheckpointData task;
  std::string spec_hash;
  std::string writer;
  int64_t epoch = 0;
};

std::string ChangelogStateKey(std::string_view table, std::string_view key);
// The reverse: (table, key) of a state entry's record key; false for
// anything else (the marker, or a damaged key).
bool SplitChangelogStateKey(std::string_view key, std::pair<std::string, std::string>* out);
std::string EncodeChangelogMarker(const ChangelogMarker& marker);
// Corruption if the bytes are not a marker.
Result<ChangelogMarker> DecodeChangelogMarker(std::string_view bytes);

// What a full read of one changelog partition found.
struct ChangelogContents {
  std::optional<ChangelogMarker> marker;       // the latest one
  std::vector<StateBackend::Entry> entries;    // the state as of that marker
  std::vector<std::pair<std::string, std::string>> orphans;  // (table, key) written after it
  int64_t records = 0;
  int64_t bytes = 0;
};

// The fetch sizes of the consumers that read a changelog (restores and
// standbys): 16 MiB per partition, 64 MiB per fetch. With librdkafka's
// default 1 MiB a restore of 600 k records waited on the broker most of
// its 4.3 s (1.4 s with these and a hash map).
inline constexpr char kChangelogPartitionFetchBytes[] = "16777216";
inline constexpr char kChangelogFetchBytes[] = "67108864";

// Creates the changelog topic (compacted, `partitions` partitions) unless it
// exists; FailedPrecondition if it exists with another partition count, or
// cannot be created (the embedded broker: then it must be made beforehand,
// `kappa broker --topic <job>.v<N>.changelog:P`).
// Returns the changelog's partition count: `partitions`, or fewer when
// partitions were added to the input since the version began (its tasks
// are the changelog's; the caller reads only those). More is refused.
Result<int32_t> EnsureChangelogTopic(const KafkaConfig& config, const JobSpec& spec, int32_t partitions);

// The latest marker of `partition` from the partition's last records, and
// whether the partition ends with it (no orphans after it). nullopt: the
// partition is empty, or does not end with a marker (then read it whole).
struct ChangelogTail {
  std::optional<ChangelogMarker> marker;
  bool empty = true;
};
Result<ChangelogTail> ReadChangelogTail(const KafkaConfig& config, const std::string& topic, int32_t partition);

// The latest marker of a partition that does not end with one, and the
// entries written after it (a writer that died between its entries and its
// marker), found by reading back from the end in growing windows: a local
// state at that marker is the state without a read of the whole partition.
// marker nullopt: the partition holds no marker (or is empty).
struct ChangelogLastMarker {
  std::optional<ChangelogMarker> marker;
  std::vector<std::pair<std::string, std::string>> orphans;  // (table, key) after it, each once
  int64_t records = 0;                                       // read to find it
};

// Reads `partition` from its log start to its end (the last stable offset
// under transactions), reporting progress through `note` about every 2 s.
Result<ChangelogContents> ReadChangelog(const KafkaConfig& config, const std::string& topic, int32_t partition,
                                        const NoteCallback& note);

// The same two reads through one consumer that lives as long as the job
// (a consumer made and closed per partition cost seconds per partition on
// a real broker: its group coordinator lookup and close). One thread.
class ChangelogReader {
 public:
  static Result<std::unique_ptr<ChangelogReader>> Create(const KafkaConfig& config, std::string topic);
  ~ChangelogReader();
  Result<ChangelogTail> Tail(int32_t partition);
  Result<ChangelogLastMarker> LastMarker(int32_t partition);
  // `progress` (if set) is called as the read starts and about every 2 s,
  // with the note.
  Result<ChangelogContents> ReadAll(int32_t partition, const NoteCallback& note,
                                    const std::function<void(const RestoreProgress&)>& progress = {});

 private:
  ChangelogReader() = default;
  struct Record {
    int64_t offset;
    std::string_view key;
    std::string_view value;
    bool value_null;
  };
  // Calls `fn` for every record of `partition` from `from` to its end.
  Status Read(int32_t partition, int64_t from, int64_t high, const std::function<void(const Record&)>& fn);

  std::unique_ptr<rd_kafka_s, void (*)(rd_kafka_s*)> consumer_{nullptr, nullptr};
  std::string topic_;
};

// Writes one process's share of the changelog.
class ChangelogWriter {
 public:
  ChangelogWriter(const JobSpec& spec, KafkaSink& sink) : spec_(spec), sink_(sink), topic_(spec.ChangelogTopic()) {}
  // The task's changes since its last checkpoint, then its marker (before
  // the checkpoint's sink barrier; the tables' dirty sets are not cleared).
  Status WriteEpoch(const Task& task, int64_t epoch);
  // Every stored entry of `partition` in `backend` (a changelog that never
  // had this task's state: a version that ran without scale_out before).
  Status WriteAll(int32_t partition, StateBackend& backend, const std::vector<std::string>& tables);
  // Rewrites `orphans` with the restored state (`entries`; absent: a
  // tombstone), so that no later marker covers a dead writer's entries.
  Status Rewrite(int32_t partition, const std::vector<std::pair<std::string, std::string>>& orphans,
                 const std::vector<StateBackend::Entry>& entries);
  int64_t records() const { return records_; }

 private:
  Status Put(int32_t partition, std::string_view table, std::string_view key, std::string_view value);

  const JobSpec& spec_;
  KafkaSink& sink_;
  std::string topic_;
  std::string key_;
  int64_t records_ = 0;
};

}  // namespace kappa
