#include "engine/standby.h"

#include <librdkafka/rdkafka.h>

#include <chrono>

#include "base/clock.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"

namespace kappa {
namespace {

constexpr std::string_view kMarkerKey("\0marker", 7);
// Changes held in memory before they are written even without a marker
// covering more (a long catch-up applies marker by marker beyond this).
constexpr size_t kMaxCommitted = 100000;

}  // namespace

Result<std::unique_ptr<StandbyFollower>> StandbyFollower::Create(const KafkaConfig& config,
                                                                 std::string changelog_topic,
                                                                 std::string source_topic, std::string spec_hash,
                                                                 StateBackend& backend, NoteCallback note) {
  auto client = CreateClient(ClientKind::kConsumer, config,
                             {{"group.id", "kappa-standby"},
                              {"enable.auto.commit", "false"},
                              {"enable.auto.offset.store", "false"},
                              {"auto.offset.reset", "earliest"},
                              {"enable.partition.eof", "true"},
                              {"max.partition.fetch.bytes", kChangelogPartitionFetchBytes},
                              {"fetch.max.bytes", kChangelogFetchBytes}});
  if (!client.ok()) return client.status();
  std::unique_ptr<StandbyFollower> f(new StandbyFollower());
  f->consumer_ = std::unique_ptr<rd_kafka_s, void (*)(rd_kafka_s*)>(client->release(), [](rd_kafka_s* rk) {
    KafkaHandle handle(rk);
    CloseConsumer(handle, 2000);
  });
  f->topic_ = std::move(changelog_topic);
  f->source_topic_ = std::move(source_topic);
  f->spec_hash_ = std::move(spec_hash);
  f->backend_ = &backend;
  f->note_ = std::move(note);
  return f;
}

StandbyFollower::~StandbyFollower() = default;

Status StandbyFollower::Assign() {
  PartitionList list(static_cast<int>(followed_.size()));
  for (int32_t p : followed_) {
    const int64_t at = state_[p].position;
    list.Add(topic_, p, at == -2 ? RD_KAFKA_OFFSET_BEGINNING : at);
  }
  return StatusFromKafka(rd_kafka_assign(consumer_.get(), followed_.empty() ? nullptr : list.get()),
                         "cannot follow the changelog " + topic_);
}

Status StandbyFollower::Follow(const std::set<int32_t>& partitions) {
  if (partitions == followed_) return Status::OK();
  std::string taken, dropped;
  for (int32_t p : partitions) {
    if (!followed_.count(p)) taken += (taken.empty() ? "" : ",") + std::to_string(p);
  }
  for (int32_t p : followed_) {
    if (!partitions.count(p)) {
      dropped += (dropped.empty() ? "" : ",") + std::to_string(p);
      state_.erase(p);
    }
  }
  followed_ = partitions;
  KAPPA_RETURN_IF_ERROR(Assign());
  if (!dropped.empty()) {
    Note(NoteLevel::kInfo, "standby: dropped the copy of " + source_topic_ + " partition(s) " + dropped +
                               " (their owner changed)");
  }
  if (!taken.empty()) {
    Note(NoteLevel::kInfo, "standby: keeping a copy of " + source_topic_ + " partition(s) " + taken +
                               ", following " + topic_ + " from its beginning");
  }
  return Status::OK();
}

Status StandbyFollower::Handle(void* message) {
  auto* m = static_cast<rd_kafka_message_t*>(message);
  auto it = state_.find(m->partition);
  if (it == state_.end() || !followed_.count(m->partition)) return Status::OK();
  Partition& s = it->second;
  if (m->err) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      s.at_end = true;
      s.position = std::max(s.position, m->offset);
      return Status::OK();
    }
    const std::string text = MessageErrorText(m);
    if (text != last_error_) Note(NoteLevel::kWarning, "standby: following " + topic_ + ": " + text);
    last_error_ = text;
    return Status::OK();
  }
  if (s.position >= 0 && m->offset < s.position) return Status::OK();
  s.position = m->offset + 1;
  s.at_end = false;
  const std::string_view key(static_cast<const char*>(m->key), m->key_len);
  if (key == kMarkerKey) {
    if (m->payload == nullptr) return Status::OK();
    auto marker = DecodeChangelogMarker(std::string_view(static_cast<const char*>(m->payload), m->len));
    if (!marker.ok()) {
      return Status::Corruption(topic_ + "[" + std::to_string(m->partition) + "] at offset " +
                                std::to_string(m->offset) + ": " + marker.status().message() +
                                "; the changelog is damaged: rebuild this version's state from its input "
                                "(--reset-state on every instance)");
    }
    for (auto& [k, v] : s.pending) s.committed[k] = std::move(v);
    s.pending.clear();
    s.marker = std::move(*marker);
    return Status::OK();
  }
  Partition::Key k;
  if (!SplitChangelogStateKey(key, &k)) {
    return Status::Corruption(topic_ + "[" + std::to_string(m->partition) + "] at offset " +
                              std::to_string(m->offset) + ": a key that is neither a state entry nor the marker");
  }
  if (m->payload == nullptr) s.pending[std::move(k)].reset();
  else s.pending[std::move(k)] = std::string(static_cast<const char*>(m->payload), m->len);
  return Status::OK();
}

Status StandbyFollower::Apply(int32_t p, Partition& s) {
  if (!s.marker) return Status::OK();
  if (s.refused || s.marker->spec_hash != spec_hash_) {
    if (!s.refused) Note(NoteLevel::kWarning, "standby: " + topic_ + "[" + std::to_string(p) + "] holds state of spec " +
                                  s.marker->spec_hash + ", this is spec " + spec_hash_ +
                                  ": no copy of it is kept (a logic change is a new version)");
    s.refused = true;
    s.marker.reset();
    s.committed.clear();
    return Status::OK();
  }
  std::vector<StateBackend::Entry> puts;
  std::vector<std::pair<std::string, std::string>> erased;
  for (auto& [k, v] : s.committed) {
    if (v) puts.push_back({k.first, k.second, std::move(*v)});
    else erased.push_back(k);
  }
  TaskCheckpointData task = s.marker->task;
  task.partition = p;
  KAPPA_RETURN_IF_ERROR(backend_->ApplyToPartition(p, puts, erased, task, /*clear_first=*/!s.written));
  s.written = true;
  s.applied_next_offset = task.next_offset;
  s.committed.clear();
  s.marker.reset();
  return Status::OK();
}

Status StandbyFollower::Step(int budget_ms) {
  if (followed_.empty()) return Status::OK();
  Stopwatch clock;
  while (clock.Millis() < budget_ms) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_.get(), 0);
    if (m == nullptr) break;
    Status st = Handle(m);
    const int32_t p = m->partition;
    rd_kafka_message_destroy(m);
    KAPPA_RETURN_IF_ERROR(st);
    auto it = state_.find(p);
    if (it != state_.end() && it->second.committed.size() > kMaxCommitted) KAPPA_RETURN_IF_ERROR(Apply(p, it->second));
  }
  for (auto& [p, s] : state_) {
    KAPPA_RETURN_IF_ERROR(Apply(p, s));
    if (s.at_end && !s.caught_up && s.written) {
      s.caught_up = true;
      Note(NoteLevel::kInfo, "standby: the copy of " + Where(p) + " caught up with " + topic_ + " (at input offset " +
                                 std::to_string(s.applied_next_offset) + ")");
    }
  }
  return Status::OK();
}

Result<bool> StandbyFollower::CatchUpAndDrop(int32_t p, int timeout_ms) {
  if (!followed_.count(p)) return false;
  auto marks = QueryWatermarks(consumer_.get(), topic_, p, timeout_ms);
  bool reached = false;
  if (marks.ok()) {
    Stopwatch clock;
    state_[p].at_end = false;
    for (;;) {
      const Partition& s = state_[p];
      if (s.position >= marks->high || s.at_end) {
        reached = true;
        break;
      }
      if (clock.Millis() > timeout_ms) break;
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_.get(), 50);
      if (m == nullptr) continue;
      Status st = Handle(m);
      rd_kafka_message_destroy(m);
      KAPPA_RETURN_IF_ERROR(st);
    }
  }
  // Everything read so far is written, for every copy (one write each).
  for (auto& [q, s] : state_) KAPPA_RETURN_IF_ERROR(Apply(q, s));
  const int64_t at = state_[p].applied_next_offset;
  followed_.erase(p);
  state_.erase(p);
  KAPPA_RETURN_IF_ERROR(Assign());
  Note(NoteLevel::kInfo, "standby: " + Where(p) + " moves here; its copy is at input offset " + std::to_string(at) +
                             (reached ? "" : " (it did not reach the end of the changelog in time)"));
  return reached;
}

std::vector<StandbyFollower::Copy> StandbyFollower::Copies() const {
  std::vector<Copy> out;
  for (int32_t p : followed_) {
    Copy c;
    c.partition = p;
    auto it = state_.find(p);
    if (it != state_.end()) {
      c.applied_next_offset = it->second.applied_next_offset;
      int64_t low = 0, high = 0;
      if (it->second.position >= 0 &&
          rd_kafka_get_watermark_offsets(consumer_.get(), topic_.c_str(), p, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          high >= 0) {
        c.lag_records = std::max<int64_t>(0, high - it->second.position);
      }
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace kappa
