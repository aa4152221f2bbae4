#include "replay/promotion.h"

#include <flatbuffers/flatbuffers.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {
namespace {

Result<std::map<std::string, std::string>> LatestByKey(const KafkaConfig& config, const std::string& topic) {
  std::map<std::string, std::string> rows;
  auto st = ReadTopic(config, topic, [&](const ConsumedRecord& r) { rows[std::string(r.key)] = std::string(r.value); });
  if (!st.ok()) {
    if (st.status().code() == Status::Code::kNotFound) return rows;  // nothing produced yet
    return st.status();
  }
  return rows;
}

const schema::WindowAggregate* AsWindow(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return schema::VerifyWindowAggregateBuffer(v) ? schema::GetWindowAggregate(bytes.data()) : nullptr;
}

}  // namespace

std::string OutputDiff::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "compared %lld rows: %lld equal, %lld changed (%.1f%%); only in serving %lld, only in candidate %lld",
                static_cast<long long>(compared), static_cast<long long>(equal), static_cast<long long>(changed),
                100 * changed_share(), static_cast<long long>(only_serving), static_cast<long long>(only_candidate));
  std::string out = buf;
  for (const auto& f : fields) {
    if (f.changed == 0) continue;
    std::snprintf(buf, sizeof(buf), "\n  %-6s changed in %lld rows, largest change %.2f, mean change %.2f", f.field.c_str(),
                  static_cast<long long>(f.changed), f.largest, f.mean);
    out += buf;
  }
  return out;
}

Result<OutputDiff> CompareOutputs(const KafkaConfig& config, const std::string& serving_topic,
                                  const std::string& candidate_topic) {
  auto a = LatestByKey(config, serving_topic);
  if (!a.ok()) return a.status();
  auto b = LatestByKey(config, candidate_topic);
  if (!b.ok()) return b.status();
  OutputDiff diff;
  const char* names[] = {"count", "sum", "min", "max", "avg"};
  std::vector<double> total(5, 0);
  diff.fields.resize(5);
  for (int i = 0; i < 5; ++i) diff.fields[i].field = names[i];
  for (const auto& [key, value] : *a) {
    auto it = b->find(key);
    if (it == b->end()) {
      ++diff.only_serving;
      continue;
    }
    ++diff.compared;
    if (it->second == value) {
      ++diff.equal;
      continue;
    }
    ++diff.changed;
    const auto* x = AsWindow(value);
    const auto* y = AsWindow(it->second);
    if (!x || !y) continue;
    const double dx[] = {static_cast<double>(x->count()), static_cast<double>(x->sum()), static_cast<double>(x->min()),
                         static_cast<double>(x->max()), x->avg()};
    const double dy[] = {static_cast<double>(y->count()), static_cast<double>(y->sum()), static_cast<double>(y->min()),
                         static_cast<double>(y->max()), y->avg()};
    for (int i = 0; i < 5; ++i) {
      const double d = std::fabs(dx[i] - dy[i]);
      if (d == 0) continue;
      ++diff.fields[i].changed;
      diff.fields[i].largest = std::max(diff.fields[i].largest, d);
      total[i] += d;
    }
  }
  for (const auto& [key, value] : *b) {
    if (!a->count(key)) ++diff.only_candidate;
  }
  for (int i = 0; i < 5; ++i) {
    if (diff.fields[i].changed) diff.fields[i].mean = total[i] / diff.fields[i].changed;
  }
  return diff;
}

Status RefreshLogEnds(const KafkaConfig& config, const std::string& topic, ProgressSnapshot* snapshot) {
  auto consumer = CreateClient(ClientKind::kConsumer, config, {{"group.id", "kappa-progress"}});
  if (!consumer.ok()) return consumer.status();
  Status first;
  for (auto& p : snapshot->partitions) {
    auto w = QueryWatermarks(consumer->get(), topic, p.partition, 10000);
    if (w.ok()) {
      p.log_end = w->high;
    } else if (first.ok()) {
      first = w.status();
    }
  }
  return first;
}

Status Promote(Registry& registry, const KafkaConfig& config, const std::string& job, int32_t version,
               const PromoteOptions& options, std::string* report) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  auto record = registry.Job(job);
  if (!record) return Status::NotFound("no job " + job + " in the registry (" + registry.control_topic() + ")");
  VersionInfo* candidate = record->Find(version);
  if (!candidate) return Status::NotFound("job " + job + " has no version " + std::to_string(version));
  if (candidate->state == VersionState::kRetired) {
    return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) + " is retired");
  }
  if (record->serving == version) {
    *report = "job " + job + " version " + std::to_string(version) + " already serves";
    return Status::OK();
  }
  std::string text;
  if (!options.force) {
    if (candidate->state == VersionState::kReplaying) {
      return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                        " has not caught up yet (still replaying); wait, or --force");
    }
    auto progress = registry.Progress(job, version);
    if (!progress) {
      return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                        " has reported no progress yet; wait, or --force");
    }
    ProgressSnapshot now = progress->snapshot;
    KAPPA_RETURN_IF_ERROR(RefreshLogEnds(config, candidate->source_topic, &now));
    if (now.max_lag() > options.max_lag) {
      return Status::FailedPrecondition(
          "job " + job + " version " + std::to_string(version) + " is " + std::to_string(now.max_lag()) +
          " records behind on " + candidate->source_topic + "[" + std::to_string(now.max_lag_partition()) +
          "] (more than " + std::to_string(options.max_lag) + "); wait until it catches up, or --force");
    }
  }
  if (record->serving != 0) {
    const VersionInfo* serving = record->Find(record->serving);
    auto diff = CompareOutputs(config, serving->output_topic, candidate->output_topic);
    if (!diff.ok()) return diff.status();
    text = "v" + std::to_string(record->serving) + " -> v" + std::to_string(version) + ": " + diff->ToString();
    const double gate = options.max_changed_share >= 0 ? options.max_changed_share : candidate->max_changed_share;
    if (gate >= 0 && diff->changed_share() > gate && !options.accept) {
      *report = text;
      char buf[160];
      std::snprintf(buf, sizeof(buf), "%.1f%% of compared rows changed, over the %.1f%% gate", 100 * diff->changed_share(),
                    100 * gate);
      return Status::FailedPrecondition(std::string(buf) + "; review the diff and promote with --accept to proceed");
    }
    record->previous_serving.push_back(record->serving);
  }
  record->serving = version;
  KAPPA_RETURN_IF_ERROR(registry.PutJob(*record));
  *report = text + (text.empty() ? "" : "\n") + "job " + job + ": version " + std::to_string(version) + " now serves";
  return Status::OK();
}

Status Rollback(Registry& registry, const std::string& job, std::string* report) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  auto record = registry.Job(job);
  if (!record) return Status::NotFound("no job " + job + " in the registry");
  while (!record->previous_serving.empty()) {
    const int32_t previous = record->previous_serving.back();
    record->previous_serving.pop_back();
    const VersionInfo* v = record->Find(previous);
    if (v && v->state != VersionState::kRetired) {
      const int32_t from = record->serving;
      record->serving = previous;
      KAPPA_RETURN_IF_ERROR(registry.PutJob(*record));
      *report = "job " + job + ": version " + std::to_string(previous) + " serves again (was " +
                std::to_string(from) + ")";
      return Status::OK();
    }
  }
  return Status::FailedPrecondition("job " + job + " has no earlier serving version to roll back to");
}

Status Retire(Registry& registry, const std::string& job, int32_t version, int64_t retention_ms, std::string* report) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  auto record = registry.Job(job);
  if (!record) return Status::NotFound("no job " + job + " in the registry");
  VersionInfo* v = record->Find(version);
  if (!v) return Status::NotFound("job " + job + " has no version " + std::to_string(version));
  if (record->serving == version) {
    return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                      " serves; promote another version (or roll back) before retiring it");
  }
  const int64_t now = WallClockMs();
  if (v->state != VersionState::kRetired) {
    v->state = VersionState::kRetired;
    v->retired_at_ms = now;
  }
  *report = "job " + job + ": version " + std::to_string(version) + " retired; its process stops at its next check";
  // Local state of versions retired longer ago than the retention is deleted.
  for (auto& other : record->versions) {
    if (other.state == VersionState::kRetired && now - other.retired_at_ms >= retention_ms &&
        !other.state_dir.empty() && std::filesystem::exists(other.state_dir)) {
      std::error_code ec;
      std::filesystem::remove_all(other.state_dir, ec);
      if (!ec) *report += "\n  deleted the state of version " + std::to_string(other.version) + " (" + other.state_dir + ")";
    }
  }
  return registry.PutJob(*record);
}

}  // namespace kappa
