// Standbys (spec `scale_out: {standbys: 1}`): a warm copy of the state of
// partitions another instance runs, kept in this instance's RocksDB by
// following their changelog partitions (engine/changelog.h), so that when
// one of them moves here TakePartition finds the local checkpoint at the
// changelog's latest marker and restores locally instead of reading the
// whole changelog partition.
//
// A followed partition is read from the beginning of its changelog the
// first time; state entries are buffered until a marker, and the changes of
// every marker read in one Step go to RocksDB in one write together with
// the latest marker's task checkpoint (StateBackend::ApplyToPartition),
// exactly as a local checkpoint at that marker. Entries after the latest
// marker (not state yet) stay buffered. The first write of a copy clears
// what the store held for the partition.
//
// One thread (the job's). Step reads for a bounded time, so processing is
// never held up for long.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "engine/changelog.h"
#include "kafka/kafka_config.h"
#include "state/state_backend.h"

struct rd_kafka_s;

namespace kappa {

class StandbyFollower {
 public:
  // `source_topic`: how notes name a partition.
  static Result<std::unique_ptr<StandbyFollower>> Create(const KafkaConfig& config, std::string changelog_topic,
                                                         std::string source_topic, std::string spec_hash,
                                                         StateBackend& backend, NoteCallback note);
  ~StandbyFollower();

  // Follows exactly `partitions` from now on (noted: taken, dropped).
  Status Follow(const std::set<int32_t>& partitions);
  // This process takes `p`: reads its changelog up to the current end (at
  // most timeout_ms), applies it and stops following it. Whether the copy
  // reached the end.
  Result<bool> CatchUpAndDrop(int32_t p, int timeout_ms);
  // Reads for about budget_ms, then applies what the markers read cover.
  Status Step(int budget_ms);

  struct Copy {
    int32_t partition = 0;
    int64_t lag_records = -1;  // changelog records behind its end (-1: unknown yet)
    int64_t applied_next_offset = -1;  // the input offset the copy is at (-1: none yet)
  };
  std::vector<Copy> Copies() const;
  const std::set<int32_t>& partitions() const { return followed_; }

 private:
  StandbyFollower() = default;
  struct Partition {
    int64_t position = -2;  // next changelog offset to read (-2: the beginning)
    using Key = std::pair<std::string, std::string>;
    std::map<Key, std::optional<std::string>> pending;    // after the latest marker read
    std::map<Key, std::optional<std::string>> committed;  // up to it, not yet applied
    std::optional<ChangelogMarker> marker;                // read, not yet applied
    bool written = false;      // a first write (clearing the store's copy) was made
    bool caught_up = false;    // noted once
    bool at_end = false;       // the last event was its end
    bool refused = false;      // another spec's state: no copy is kept
    int64_t applied_next_offset = -1;
  };
  Status Assign();
  Status Handle(void* message);  // an rd_kafka_message_t
  Status Apply(int32_t p, Partition& s);
  std::string Where(int32_t p) const { return source_topic_ + "[" + std::to_string(p) + "]"; }
  void Note(NoteLevel level, const std::string& text) const {
    if (note_) note_(level, text);
  }

  std::unique_ptr<rd_kafka_s, void (*)(rd_kafka_s*)> consumer_{nullptr, nullptr};
  std::string topic_;
  std::string source_topic_;
  std::string spec_hash_;
  StateBackend* backend_ = nullptr;
  NoteCallback note_;
  std::set<int32_t> followed_;
  std::map<int32_t, Partition> state_;
  std::string last_error_;
};

}  // namespace kappa
