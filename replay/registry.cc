#include "replay/registry.h"

#include "base/clock.h"
#include "base/hash.h"
#include "base/host.h"
#include "base/stop_token.h"

#include <flatbuffers/flatbuffers.h>
#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <thread>

#include "kafka/kafka_producer.h"
#include "kafka/kafka_status.h"
#include "kafka/topic_reader.h"
#include "schemas/control_generated.h"

namespace kappa {

std::string ProgressRecord::Liveness(int64_t now_ms) const {
  if (stopped && !exit_error.empty()) {
    return "stopped on an error (" + exit_error +
           "; start it again with the same spec once that is mended: it resumes from its last checkpoint)";
  }
  if (stopped) return "stopped";
  const int64_t last_report_ms = snapshot.checkpoint_ms;
  const int64_t silent_ms = now_ms - last_report_ms;
  if (report_interval_ms > 0 && last_report_ms > 0 && silent_ms > std::max<int64_t>(30000, 3 * report_interval_ms)) {
    return "not reporting for " + std::to_string(silent_ms / 1000) + " s (it reports every " +
           std::to_string((report_interval_ms + 999) / 1000) +
           " s: its process may be gone; start it again with the same spec to resume)";
  }
  // A kappa from before report intervals (2026-12-05) does not say how
  // often it reports: its process killed with -9 read as running for ever
  // (a bug bash). Ten minutes of silence is past any checkpoint interval
  // but a rare one.
  constexpr int64_t kUnknownIntervalSilenceMs = 600'000;
  if (report_interval_ms <= 0 && last_report_ms > 0 && silent_ms > kUnknownIntervalSilenceMs) {
    return "not reporting for " + std::to_string(silent_ms / 1000) +
           " s (its record, from an older kappa, does not say how often it reports: its process may be gone; "
           "start it again with the same spec to resume)";
  }
  return "running";
}
namespace {

std::string JobKey(const std::string& job) { return "job/" + job; }
std::string ProgressKey(const std::string& job, int32_t version) {
  return "progress/" + job + "/v" + std::to_string(version);
}

std::string ProgressKey(const ProgressRecord& r) {
  return r.instance.empty() ? ProgressKey(r.job, r.version) : ProgressKey(r.job, r.version) + "/" + r.instance;
}
std::string ThrottleKey(const std::string& job, int32_t version) {
  return "throttle/" + job + "/v" + std::to_string(version);
}
constexpr char kThrottlePrefix[] = "kappa-throttle-1 ";

std::string EncodeThrottle(const ThrottleRecord& r) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%smax_rate=%.17g paused=%d updated_at_ms=%lld version=%d", kThrottlePrefix,
                r.max_rate, r.paused ? 1 : 0, static_cast<long long>(r.updated_at_ms), r.version);
  return buf;
}

std::optional<ThrottleRecord> DecodeThrottle(const std::string& job, const std::string& bytes) {
  if (bytes.rfind(kThrottlePrefix, 0) != 0) return std::nullopt;
  ThrottleRecord r;
  r.job = job;
  int paused = 0;
  long long at = 0;
  int version = 0;
  if (std::sscanf(bytes.c_str() + sizeof(kThrottlePrefix) - 1, "max_rate=%lf paused=%d updated_at_ms=%lld version=%d",
                  &r.max_rate, &paused, &at, &version) != 4) {
    return std::nullopt;
  }
  r.paused = paused != 0;
  r.updated_at_ms = at;
  r.version = version;
  return r;
}

std::string Str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// A random tag that makes each job write's key unique.
std::string Nonce() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(::getpid()) << 32));
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng() ^ counter.fetch_add(1)));
  return buf;
}

// `base`: the sequence the record was computed from; it sets base + 1.
std::string EncodeJob(const JobRecord& r, int64_t base) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<schema::VersionEntry>> versions;
  for (const auto& v : r.versions) {
    versions.push_back(schema::CreateVersionEntryDirect(
        fbb, v.version, v.spec_hash.c_str(), static_cast<schema::VersionState>(v.state), v.source_topic.c_str(),
        v.output_topic.c_str(), v.group.c_str(), v.state_dir.c_str(), v.registered_at_ms, v.retired_at_ms,
        v.max_changed_share, v.postgres_table.c_str(), v.postgres_dsn.c_str(), v.dlq_topic.c_str(),
        v.late_topic.c_str()));
  }
  auto root = schema::CreateJobRegistryDirect(fbb, r.job.c_str(), &versions, r.serving, &r.previous_serving,
                                              r.updated_at_ms, base + 1, base);
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::optional<JobRecord> DecodeJob(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<schema::JobRegistry>(nullptr)) return std::nullopt;
  const auto* j = flatbuffers::GetRoot<schema::JobRegistry>(bytes.data());
  JobRecord r;
  r.job = Str(j->job());
  r.serving = j->serving_version();
  r.updated_at_ms = j->updated_at_ms();
  if (j->previous_serving()) r.previous_serving.assign(j->previous_serving()->begin(), j->previous_serving()->end());
  if (j->versions()) {
    for (const auto* e : *j->versions()) {
      VersionInfo info;
      info.version = e->version();
      info.spec_hash = Str(e->spec_hash());
      info.state = static_cast<VersionState>(e->state());
      info.source_topic = Str(e->source_topic());
      info.output_topic = Str(e->output_topic());
      info.group = Str(e->group());
      info.state_dir = Str(e->state_dir());
      info.registered_at_ms = e->registered_at_ms();
      info.retired_at_ms = e->retired_at_ms();
      info.max_changed_share = e->max_changed_share();
      info.postgres_table = Str(e->postgres_table());
      info.postgres_dsn = Str(e->postgres_dsn());
      info.dlq_topic = Str(e->dlq_topic());
      info.late_topic = Str(e->late_topic());
      r.versions.push_back(info);
    }
  }
  return r;
}

std::string EncodeProgress(const ProgressRecord& r) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<schema::PartitionPosition>> parts;
  for (const auto& p : r.snapshot.partitions) {
    parts.push_back(schema::CreatePartitionPosition(fbb, p.partition, p.position, p.log_end, p.watermark_ms, p.start_offset));
  }
  std::vector<flatbuffers::Offset<schema::PartitionPosition>> released;
  for (const auto& [p, reported_ms] : r.released) {
    released.push_back(schema::CreatePartitionPosition(fbb, p.partition, p.position, p.log_end, p.watermark_ms,
                                                       p.start_offset, reported_ms));
  }
  std::vector<flatbuffers::Offset<schema::StandbyCopy>> copies;
  for (const auto& sb : r.snapshot.standbys) {
    copies.push_back(schema::CreateStandbyCopy(fbb, sb.partition, sb.lag_records, sb.next_offset));
  }
  flatbuffers::Offset<schema::RestoreState> restoring;
  if (const auto& rs = r.snapshot.restoring) {
    restoring = schema::CreateRestoreState(fbb, rs->partition, rs->records, rs->total_records, rs->bytes, rs->eta_seconds);
  }
  const auto& c = r.snapshot.counters;
  auto root = schema::CreateVersionProgressDirect(fbb, r.job.c_str(), r.version, r.snapshot.epoch,
                                                  r.snapshot.checkpoint_ms, r.snapshot.records_per_second, c.in,
                                                  c.outputs, c.dlq, c.late, &parts, r.caught_up_since_ms, r.stopped,
                                                  r.instance.empty() ? nullptr : r.instance.c_str(),
                                                  copies.empty() ? nullptr : &copies, restoring, r.report_interval_ms,
                                                  r.snapshot.sink_rejected,
                                                  r.exit_error.empty() ? nullptr : r.exit_error.c_str(),
                                                  r.snapshot.source_partitions, released.empty() ? nullptr : &released);
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::optional<ProgressRecord> DecodeProgress(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<schema::VersionProgress>(nullptr)) return std::nullopt;
  const auto* p = flatbuffers::GetRoot<schema::VersionProgress>(bytes.data());
  ProgressRecord r;
  r.job = Str(p->job());
  r.version = p->version();
  r.snapshot.epoch = p->epoch();
  r.snapshot.checkpoint_ms = p->checkpoint_ms();
  r.snapshot.records_per_second = p->records_per_second();
  r.snapshot.counters.in = p->records_in();
  r.snapshot.counters.outputs = p->outputs();
  r.snapshot.counters.dlq = p->dlq();
  r.snapshot.counters.late = p->late();
  r.snapshot.sink_rejected = p->sink_rejected();
  // Field by field: a positional initializer silently shifted fields when
  // PartitionProgress gained one.
  auto position = [](const schema::PartitionPosition* pp) {
    PartitionProgress part;
    part.partition = pp->partition();
    part.position = pp->position();
    part.log_end = pp->log_end();
    part.watermark_ms = pp->watermark_ms();
    part.start_offset = pp->start_offset();
    return part;
  };
  if (p->partitions()) {
    for (const auto* pp : *p->partitions()) r.snapshot.partitions.push_back(position(pp));
  }
  if (p->released()) {
    for (const auto* pp : *p->released()) r.released.push_back({position(pp), pp->reported_ms()});
  }
  r.caught_up_since_ms = p->caught_up_since_ms();
  r.snapshot.source_partitions = p->source_partitions();
  r.stopped = p->stopped();
  r.exit_error = Str(p->exit_error());
  r.report_interval_ms = p->report_interval_ms();
  r.instance = Str(p->instance());
  if (const auto* rs = p->restoring()) {
    r.snapshot.restoring =
        RestoreProgress{rs->partition(), rs->records(), rs->total_records(), rs->bytes(), rs->eta_seconds()};
  }
  if (p->standbys()) {
    for (const auto* sb : *p->standbys()) {
      StandbyProgress copy;
      copy.partition = sb->partition();
      copy.lag_records = sb->lag_records();
      copy.next_offset = sb->next_offset();
      r.snapshot.standbys.push_back(copy);
    }
  }
  return r;
}

// Per partition, the position reported last (by when it was reported).
using LatestPositions = std::map<int32_t, std::pair<int64_t, PartitionProgress>>;
void KeepLatest(LatestPositions& latest, const PartitionProgress& p, int64_t reported_ms) {
  auto found = latest.find(p.partition);
  if (found == latest.end() || found->second.first < reported_ms) latest[p.partition] = {reported_ms, p};
}

}  // namespace

void CarryReleasedPositions(const ProgressRecord& previous, ProgressRecord* next) {
  LatestPositions known;
  for (const auto& r : previous.released) KeepLatest(known, r.progress, r.reported_ms);
  for (const auto& p : previous.snapshot.partitions) KeepLatest(known, p, previous.snapshot.checkpoint_ms);
  for (const auto& r : next->released) KeepLatest(known, r.progress, r.reported_ms);
  for (const auto& p : next->snapshot.partitions) known.erase(p.partition);
  next->released.clear();
  for (auto& [partition, r] : known) next->released.push_back({std::move(r.second), r.first});
}

std::string RateText(double r) {
  // Whole records a second, but a small cap as it was given: `kappa
  // throttle --max-rate 1.5` was applied as "at 2 rec/s" (a bug bash).
  if (r <= 0) return "no cap";
  if (r >= 100) return std::to_string(static_cast<int64_t>(r + 0.5)) + " rec/s";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g rec/s", r);
  return buf;
}

std::string DescribeThrottle(const ThrottleRecord& r) {
  std::string rate;
  if (r.max_rate < 0) {
    // "started cap" said nothing a user could look up (a bug bash).
    rate = "the rate cap the version was started with";
  } else if (r.max_rate == 0) {
    rate = "no cap";
  } else {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "max-rate %.10g rec/s", r.max_rate);  // 1.5 is 1.5, not 2
    rate = buf;
  }
  return r.paused ? "paused (" + rate + " on resume)" : rate;
}

const char* VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLive: return "live";
    case VersionState::kReplaying: return "replaying";
    case VersionState::kCaughtUp: return "caught-up";
    case VersionState::kRetired: return "retired";
  }
  return "?";
}

VersionInfo* JobRecord::Find(int32_t version) {
  for (auto& v : versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}
const VersionInfo* JobRecord::Find(int32_t version) const { return const_cast<JobRecord*>(this)->Find(version); }

Registry::Registry(KafkaConfig config, std::string control_topic)
    : config_(std::move(config)), topic_(std::move(control_topic)) {}
Registry::~Registry() = default;

Status Registry::Refresh() { return Load(nullptr, nullptr); }

Status Registry::Load(const std::string* watch_key, int* watched) {
  if (watched) *watched = 0;
  last_read_records_ = 0;
  lock_writes_.clear();
  // Reads on from where the last read ended; from the start the first time,
  // or when the topic is no longer the one read (fewer partitions, or an end
  // before where the last read ended: deleted and created again).
  auto read = [&](bool from_start) {
    if (from_start) {
      read_to_.clear();
      job_writes_.clear();
      read_values_.clear();
      written_at_.clear();
    }
    return ReadTopic(config_, topic_, [&](const ConsumedRecord& r) {
      if (r.key.rfind("job/", 0) == 0) {
        const std::string bytes(r.value);
        auto record = DecodeJob(bytes);
        if (!record) return;  // not a job record this kappa can read
        const auto* j = flatbuffers::GetRoot<schema::JobRegistry>(bytes.data());
        job_writes_.push_back(JobWrite{std::string(r.key), std::move(*record), j->base_seq(), j->seq(), r.partition,
                                       r.offset, r.timestamp_ms});
      } else {
        if (r.key.rfind("lock/", 0) == 0) lock_writes_[std::string(r.key)].emplace_back(r.value);
        // Within a partition the one read last (its log's order, whatever the
        // writers' clocks say); across partitions the later written. (An
        // older kappa wrote these keys to the partition librdkafka chose,
        // this one to its own, so after an upgrade a key may be in two
        // partitions, read in any order.)
        auto [at, fresh] = written_at_.try_emplace(std::string(r.key), r.partition, r.timestamp_ms);
        if (!fresh && at->second.first != r.partition && r.timestamp_ms < at->second.second) return;
        at->second = {r.partition, r.timestamp_ms};
        read_values_[std::string(r.key)] = std::string(r.value);
      }
    }, 15000, read_to_.empty() ? nullptr : &read_to_, -1, /*settle_ms=*/0);  // written without transactions
  };
  auto summary = read(read_to_.empty());
  if (summary.ok() && !read_to_.empty()) {
    bool same_topic = summary->log_end_offsets.size() >= read_to_.size();
    for (size_t p = 0; same_topic && p < read_to_.size(); ++p) same_topic = summary->log_end_offsets[p] >= read_to_[p];
    if (!same_topic) summary = read(true);
  }
  if (!summary.ok()) {
    if (summary.status().code() == Status::Code::kNotFound) {
      jobs_.clear();
      progress_.clear();
      read_to_.clear();
      job_writes_.clear();
      read_values_.clear();
      written_at_.clear();
      return Status::OK();  // no deployment has been registered yet
    }
    return summary.status();
  }
  read_to_ = summary->log_end_offsets;
  last_read_records_ = summary->total;
  if (!summary->log_start_offsets.empty() && summary->log_start_offsets[0] > 0) {
    // Each job record builds on the one before it: without the first ones,
    // every later record of those jobs was ignored, and the registry read as
    // if they (or their promotions) had never been (a bug bash: a promotion
    // vanished and a new deploy became the serving version).
    return Status::FailedPrecondition(
        "the control topic " + topic_ + " has lost its first " + std::to_string(summary->log_start_offsets[0]) +
        " records in partition 0 (its log start offset), where the job records are: the registry's history is "
        "incomplete and cannot be read safely. A retention policy deleted them (the control topic must be "
        "cleanup.policy=compact, with no retention.ms / retention.bytes), or the embedded broker's 5 MiB per "
        "partition did; restore the topic, or start over with another --control-topic and deploy the versions "
        "again");
  }
  // Records from before sequences (one key per job, latest wins) come first,
  // then the sequenced ones, all in partition 0, in log order. Applied from
  // the first each time: a job's state is the chain of its accepted writes.
  std::stable_sort(job_writes_.begin(), job_writes_.end(), [](const JobWrite& a, const JobWrite& b) {
    const bool a_new = a.seq != 0, b_new = b.seq != 0;
    if (a_new != b_new) return !a_new;
    if (a.partition != b.partition) return a.partition < b.partition;
    return a.offset < b.offset;
  });
  // An unsequenced write (an older kappa's) after a sequenced one of the
  // same job: applied before it, whatever came later, so it is ignored.
  warnings_.clear();
  std::map<std::string, int64_t> first_sequenced_ms;
  for (const auto& w : job_writes_) {
    if (w.seq == 0) continue;
    auto [at, fresh] = first_sequenced_ms.try_emplace(w.record.job, w.timestamp_ms);
    if (!fresh) at->second = std::min(at->second, w.timestamp_ms);
  }
  std::set<std::string> warned;
  for (const auto& w : job_writes_) {
    if (w.seq != 0) continue;
    auto first = first_sequenced_ms.find(w.record.job);
    if (first == first_sequenced_ms.end() || w.timestamp_ms <= first->second) continue;
    if (!warned.insert(w.record.job).second) continue;
    warnings_.push_back("job " + w.record.job +
                        ": an older kappa (one from before sequenced job records, 2026-12-02) wrote to it in " +
                        topic_ + " (partition " + std::to_string(w.partition) + ", offset " +
                        std::to_string(w.offset) +
                        ") after this kappa had: that write is ignored, so what that kappa did there (a deploy, "
                        "a promotion, a retirement) has not happened for this one; upgrade every kappa that uses " +
                        topic_ + ", then do it again");
  }
  std::map<std::string, JobRecord> jobs;
  std::map<std::pair<std::string, int32_t>, int64_t> claims;
  for (const auto& w : job_writes_) {
    auto it = jobs.find(w.record.job);
    const int64_t current = it == jobs.end() ? 0 : it->second.seq;
    bool accepted = false;
    int64_t seq = 0;
    if (w.seq == 0) {
      seq = current;  // unsequenced: applied as it always was
      accepted = true;
    } else if (w.base_seq == current && w.seq == current + 1) {
      seq = w.seq;
      accepted = true;
    }
    if (watch_key && watched && w.key == *watch_key) *watched = accepted ? 1 : -1;
    if (accepted) {
      JobRecord& record = jobs[w.record.job];
      // Where each version appeared (again, if it was unregistered): the
      // order of two jobs' claims on one output.
      for (const VersionInfo& v : record.versions) {
        if (!w.record.Find(v.version)) claims.erase({w.record.job, v.version});
      }
      for (const VersionInfo& v : w.record.versions) claims.try_emplace({w.record.job, v.version}, w.offset);
      record = w.record;
      record.seq = seq;
    }
  }
  // An older kappa's control topic (made before job records kept to
  // partition 0) holds job records in any partition: one of those that lost
  // its first records lost job history as partition 0 would, and read as a
  // registry without those jobs (a bug bash: "no jobs registered", then a
  // new deploy of v1 became serving over a promoted v2). Lost there: a job
  // record still read from it, or progress of a job no job record names.
  for (size_t p = 1; p < summary->log_start_offsets.size(); ++p) {
    if (summary->log_start_offsets[p] <= 0) continue;
    std::string lost;
    for (const auto& w : job_writes_) {
      if (w.partition == static_cast<int32_t>(p)) {
        lost = w.record.job;
        break;
      }
    }
    for (auto it = read_values_.lower_bound("progress/"); lost.empty() && it != read_values_.end() &&
                                                          it->first.rfind("progress/", 0) == 0;
         ++it) {
      auto progress = DecodeProgress(it->second);
      if (progress && !jobs.count(progress->job)) lost = progress->job;
    }
    if (lost.empty()) continue;
    return Status::FailedPrecondition(
        "the control topic " + topic_ + " has lost its first " + std::to_string(summary->log_start_offsets[p]) +
        " records in partition " + std::to_string(p) + ", where an older kappa kept job records (job " + lost +
        "'s among them): the registry's history is incomplete and cannot be read safely. A retention policy "
        "deleted them (the control topic must be cleanup.policy=compact, with no retention.ms / "
        "retention.bytes), or the embedded broker's 5 MiB per partition did; restore the topic, or start over "
        "with another --control-topic and deploy the versions again");
  }
  jobs_ = std::move(jobs);
  claims_ = std::move(claims);
  progress_ = read_values_;
  return Status::OK();
}

int64_t Registry::RegisteredOffset(const std::string& job, int32_t version) const {
  auto it = claims_.find({job, version});
  return it == claims_.end() ? -1 : it->second;
}

std::vector<std::string> Registry::Jobs() const {
  std::vector<std::string> jobs;
  // A job whose only versions were unregistered again (they never ran) is
  // not listed; its record stays, the base of its next registration.
  for (const auto& [name, record] : jobs_) {
    if (!record.versions.empty()) jobs.push_back(name);
  }
  return jobs;
}

std::optional<JobRecord> Registry::Job(const std::string& job) const {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

std::vector<ProgressRecord> Registry::InstanceProgress(const std::string& job, int32_t version) const {
  std::vector<ProgressRecord> out;
  const std::string prefix = ProgressKey(job, version) + "/";
  for (auto it = progress_.lower_bound(prefix); it != progress_.end() && it->first.rfind(prefix, 0) == 0; ++it) {
    if (auto r = DecodeProgress(it->second)) out.push_back(std::move(*r));
  }
  return out;
}

std::optional<ProgressRecord> Registry::Progress(const std::string& job, int32_t version) const {
  std::vector<ProgressRecord> instances = InstanceProgress(job, version);
  auto it = progress_.find(ProgressKey(job, version));
  if (instances.empty()) {
    if (it == progress_.end()) return std::nullopt;
    return DecodeProgress(it->second);
  }
  // Running instances speak for the version; once all stopped, all do. An
  // instance silent for long (kill -9, a lost host) speaks no more while
  // another runs: its partitions went to the others, whose counters and rate
  // are counted (adding its last ones counted them twice, a bug bash).
  // An instance every one of whose partitions another has checkpointed
  // since speaks for none: killed, its last record stays, and within the
  // 30 s it still reads as running its counters were added to those of the
  // instance that took its partitions over (with their counters), 1.5 M
  // for a 1 M-record input; once the taker stopped, the version showed the
  // dead one's record alone (a bug bash).
  std::map<int32_t, std::pair<int64_t, size_t>> latest;  // partition -> (checkpoint_ms, instance)
  for (size_t i = 0; i < instances.size(); ++i) {
    for (const auto& p : instances[i].snapshot.partitions) {
      auto found = latest.find(p.partition);
      if (found == latest.end() || found->second.first < instances[i].snapshot.checkpoint_ms) {
        latest[p.partition] = {instances[i].snapshot.checkpoint_ms, i};
      }
    }
  }
  // The others' records stay in `instances`: with no instance running,
  // each partition's latest position may be in any of them.
  std::vector<const ProgressRecord*> speaking;
  for (size_t i = 0; i < instances.size(); ++i) {
    const auto& ps = instances[i].snapshot.partitions;
    const bool superseded = !ps.empty() && std::all_of(ps.begin(), ps.end(), [&](const PartitionProgress& p) {
      return latest[p.partition].second != i;
    });
    if (!superseded) speaking.push_back(&instances[i]);
  }
  bool all_stopped = true;
  const int64_t now = WallClockMs();
  size_t running = 0;
  for (const ProgressRecord* r : speaking) {
    all_stopped = all_stopped && r->stopped;
    running += r->Liveness(now) == "running";
  }
  ProgressRecord merged;
  merged.job = job;
  merged.version = version;
  merged.stopped = all_stopped;
  // All stopped: the version stopped on an error if any instance did.
  if (all_stopped) {
    for (const ProgressRecord* r : speaking) {
      if (r->exit_error.empty()) continue;
      merged.exit_error = "instance " + r->instance + ": " + r->exit_error;
      break;
    }
  }
  bool all_caught_up = true;
  LatestPositions parts;
  for (const ProgressRecord* speaker : speaking) {
    const ProgressRecord& r = *speaker;
    if (r.stopped && !all_stopped) continue;
    if (running > 0 && r.Liveness(now) != "running") continue;
    const ProgressSnapshot& s = r.snapshot;
    merged.snapshot.epoch = std::max(merged.snapshot.epoch, s.epoch);
    merged.snapshot.checkpoint_ms = std::max(merged.snapshot.checkpoint_ms, s.checkpoint_ms);
    merged.report_interval_ms = std::max(merged.report_interval_ms, r.report_interval_ms);
    merged.snapshot.records_per_second += s.records_per_second;
    merged.snapshot.counters.Add(s.counters);
    merged.snapshot.sink_rejected += s.sink_rejected;
    merged.snapshot.source_partitions = std::max(merged.snapshot.source_partitions, s.source_partitions);
    if (r.caught_up_since_ms == 0) all_caught_up = false;
    else merged.caught_up_since_ms = std::max(merged.caught_up_since_ms, r.caught_up_since_ms);
    for (const auto& p : s.partitions) KeepLatest(parts, p, s.checkpoint_ms);
  }
  // No instance runs: each partition's latest known position, whichever
  // record has it (a restart that died before its first assignment left a
  // record without its partitions, and the version showed another
  // instance's positions from long before: 3.9% done where it had
  // finished, a bug bash). Positions only move forward, so the latest is
  // the furthest.
  if (running == 0) {
    for (const auto& r : instances) {
      for (const auto& p : r.snapshot.partitions) KeepLatest(parts, p, r.snapshot.checkpoint_ms);
      for (const auto& released : r.released) KeepLatest(parts, released.progress, released.reported_ms);
    }
  }
  for (auto& [p, entry] : parts) merged.snapshot.partitions.push_back(entry.second);
  // Caught up is every partition of the version: an instance judges by its
  // own, so one holding none (joining, restarted) or lighter ones said
  // "caught up" for a version 85% behind (a bug bash). Partitions no
  // running instance reports are not caught up.
  if (merged.snapshot.unreported_partitions() > 0) all_caught_up = false;
  if (!all_caught_up) merged.caught_up_since_ms = 0;
  return merged;
}

std::optional<ThrottleRecord> Registry::Throttle(const std::string& job, int32_t version) const {
  std::optional<ThrottleRecord> merged;
  if (auto value = Value(ThrottleKey(job, version))) merged = DecodeThrottle(job, *value);
  auto part = [&](const char* name) -> std::optional<ThrottleRecord> {
    auto value = Value(ThrottleKey(job, version) + "/" + name);
    return value ? DecodeThrottle(job, *value) : std::nullopt;
  };
  const auto rate = part("rate");
  const auto paused = part("paused");
  if (!rate && !paused) return merged;
  if (!merged) {
    merged = ThrottleRecord{};
    merged->job = job;
    merged->version = version;
  }
  if (rate) merged->max_rate = rate->max_rate;
  if (paused) merged->paused = paused->paused;
  for (const auto& p : {rate, paused}) {
    if (p) merged->updated_at_ms = std::max(merged->updated_at_ms, p->updated_at_ms);
  }
  return merged;
}

Status Registry::PutThrottle(const ThrottleRecord& record, bool rate, bool pause) {
  const std::string key = ThrottleKey(record.job, record.version);
  if (rate) KAPPA_RETURN_IF_ERROR(PutValue(key + "/rate", EncodeThrottle(record)));
  if (pause) KAPPA_RETURN_IF_ERROR(PutValue(key + "/paused", EncodeThrottle(record)));
  return Status::OK();
}

std::string Registry::RetentionRisk() {
  if (retention_checked_) return "";
  // A client of its own: producer_ is made by Put, with its delivery reports.
  auto client = CreateClient(ClientKind::kProducer, config_, {});
  if (!client.ok()) return "";  // the write that follows says why
  auto policy = TopicConfigValue(client->get(), topic_, "cleanup.policy", 10000);
  if (!policy.ok()) {
    // No such topic yet (made compacted by the write), or a broker that
    // cannot say (the embedded one; an ACL): asked no more.
    retention_checked_ = policy.status().code() != Status::Code::kNotFound;
    return "";
  }
  // "compact", "delete" or "compact,delete" (as the archiver reads it).
  if (policy->find("compact") != std::string::npos && policy->find("delete") == std::string::npos) {
    retention_checked_ = true;
    return "";
  }
  return "the control topic " + topic_ + " has cleanup.policy=" + *policy +
         ": Kafka deletes its records once retention.ms passes (7 days by default), and with them the registry's "
         "jobs, versions and promotions (an older kappa, or the broker's auto-create, made it so). Make it "
         "compacted: kafka-configs.sh --bootstrap-server <brokers> --alter --entity-type topics --entity-name " +
         topic_ + " --add-config cleanup.policy=compact" +
         "; nothing is lost while its retention has not passed";
}

Result<bool> Registry::TryPutJob(JobRecord& record) {
  if (std::string risk = RetentionRisk(); !risk.empty()) return Status::FailedPrecondition(risk);
  const int64_t base = record.seq;
  record.updated_at_ms = WallClockMs();
  const std::string key = JobKey(record.job) + "/" + std::to_string(base + 1) + "-" + Nonce();
  int64_t offset = -1;
  // Every job record in partition 0: one log order for all of them.
  KAPPA_RETURN_IF_ERROR(Put(key, EncodeJob(record, base), 0, &offset));
  // Read back until the write is seen (a leader may acknowledge before the
  // high watermark covers it); the log order decides who won.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    int watched = 0;
    KAPPA_RETURN_IF_ERROR(Load(&key, &watched));
    if (watched != 0) {
      if (watched < 0) return false;
      record.seq = base + 1;
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable("wrote job " + record.job + " to " + topic_ + " (offset " + std::to_string(offset) +
                                 ") but could not read it back within 30 s; whether it took effect is unknown: "
                                 "check `kappa status`");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Status Registry::PutJob(JobRecord& record) {
  const int64_t base = record.seq;
  auto won = TryPutJob(record);
  if (!won.ok()) return won.status();
  if (!*won) {
    return Status::FailedPrecondition("job " + record.job + " changed concurrently: the write based on registry sequence " +
                                      std::to_string(base) + " lost to another one; re-read and retry");
  }
  return Status::OK();
}

Status Registry::PutProgress(const ProgressRecord& record) {
  const std::string key = ProgressKey(record);
  const std::string value = EncodeProgress(record);
  int64_t offset = -1;
  KAPPA_RETURN_IF_ERROR(Put(key, value, kNotJobRecord, &offset));
  progress_[key] = value;
  return Status::OK();
}

std::optional<std::string> Registry::Value(const std::string& key) const {
  auto it = progress_.find(key);
  if (it == progress_.end()) return std::nullopt;
  return it->second;
}

Status Registry::PutValue(const std::string& key, const std::string& value) {
  int64_t offset = -1;
  KAPPA_RETURN_IF_ERROR(Put(key, value, kNotJobRecord, &offset));
  progress_[key] = value;
  return Status::OK();
}

std::vector<std::string> Registry::LockWrites(const std::string& key) const {
  auto it = lock_writes_.find(key);
  return it == lock_writes_.end() ? std::vector<std::string>() : it->second;
}

namespace {

// A claim's value: "claim|<nonce>|<renewed at, ms>|<host>|<pid>|<who>";
// "released|<nonce>|..." once given up.
struct LeaseClaim {
  std::string nonce;
  int64_t renewed_ms = 0;
  std::string host;
  int64_t pid = 0;
  std::string who;
};
std::optional<LeaseClaim> ParseClaim(const std::string& value) {
  if (value.rfind("claim|", 0) != 0) return std::nullopt;
  std::vector<std::string> parts;
  for (size_t at = 6;;) {
    const size_t bar = value.find('|', at);
    if (bar == std::string::npos || parts.size() == 4) {
      parts.push_back(value.substr(at));
      break;
    }
    parts.push_back(value.substr(at, bar - at));
    at = bar + 1;
  }
  if (parts.size() != 5) return std::nullopt;
  LeaseClaim c;
  c.nonce = parts[0];
  c.renewed_ms = std::strtoll(parts[1].c_str(), nullptr, 10);
  c.host = parts[2];
  c.pid = std::strtoll(parts[3].c_str(), nullptr, 10);
  c.who = parts[4];
  return c;
}

// Whether the claim's process is gone: a claim of this host whose process
// no longer exists (killed: a rerun right after a kill -9 was refused for
// the minute the claim took to go stale).
bool HolderGone(const LeaseClaim& c) {
  if (c.host != HostName() || c.pid <= 0) return false;
  return ::kill(static_cast<pid_t>(c.pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string RegistryLease::Claim(int64_t now_ms) const {
  return "claim|" + nonce_ + "|" + std::to_string(now_ms) + "|" + HostName() + "|" + std::to_string(::getpid()) +
         "|" + who_;
}

Result<std::unique_ptr<RegistryLease>> RegistryLease::Acquire(Registry& registry, const std::string& name,
                                                              const std::string& who) {
  const std::string key = "lock/" + name;
  auto held = [&](const LeaseClaim& c) {
    const int64_t ago_s = std::max<int64_t>(0, WallClockMs() - c.renewed_ms) / 1000;
    return Status::FailedPrecondition(name + " is held by another process (" + c.who + ", last heard of " +
                                      std::to_string(ago_s) + " s ago); it holds it until it ends, or " +
                                      std::to_string(kStaleMs / 1000) + " s after it was last heard of");
  };
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  if (auto latest = registry.Value(key)) {
    if (auto c = ParseClaim(*latest); c && WallClockMs() - c->renewed_ms < kStaleMs && !HolderGone(*c)) {
      return held(*c);
    }
  }
  std::unique_ptr<RegistryLease> lease(new RegistryLease(registry, key, Nonce(), who));
  const int64_t now = WallClockMs();
  KAPPA_RETURN_IF_ERROR(registry.PutValue(key, lease->Claim(now)));
  // Read back past the claim: of the claims written since the read above
  // and not released, the first in the log wins.
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  std::optional<std::pair<LeaseClaim, std::string>> first;  // the claim and its value
  for (const std::string& value : registry.LockWrites(key)) {
    if (value.rfind("released|", 0) == 0) {
      if (first && value.compare(9, first->first.nonce.size(), first->first.nonce) == 0) first.reset();
      continue;
    }
    auto c = ParseClaim(value);
    if (!c) continue;
    if (c->nonce == lease->nonce_) break;
    if (!first) first.emplace(*c, value);
  }
  if (first) {
    // Lost: the key names the holder again (this claim, written after
    // its, would read as the holder for a minute).
    (void)registry.PutValue(key, first->second);
    return held(first->first);
  }
  lease->renewed_ms_ = now;
  return lease;
}

Status RegistryLease::Renew() {
  const int64_t now = WallClockMs();
  if (now - renewed_ms_ >= kStaleMs) {
    return Status::FailedPrecondition(key_.substr(5) + " was not renewed for " +
                                      std::to_string((now - renewed_ms_) / 1000) + " s: another process may hold it "
                                      "since, so this one stops");
  }
  KAPPA_RETURN_IF_ERROR(registry_.PutValue(key_, Claim(now)));
  renewed_ms_ = now;
  return Status::OK();
}

Status RegistryLease::Release() {
  KAPPA_RETURN_IF_ERROR(registry_.Refresh());
  if (auto latest = registry_.Value(key_)) {
    auto c = ParseClaim(*latest);
    if (c && c->nonce != nonce_) return Status::OK();  // not this one's to give up
  }
  return registry_.PutValue(key_, "released|" + nonce_ + "|" + std::to_string(WallClockMs()));
}

namespace {
struct Delivery {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int64_t offset = -1;
  // Whether the broker may hold it although no acknowledgement came (sent,
  // and the answer timed out or was given up).
  bool possibly_persisted = false;
};
// The delivery result of one registry write, through its per-message opaque.
void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  auto* d = static_cast<Delivery*>(msg->_private);
  d->err = msg->err;
  d->offset = msg->offset;
  d->possibly_persisted = rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
}

// A write sent whose acknowledgement never came may have taken effect: a
// promote that timed out said only that it failed, and whether the job had
// changed was anyone's guess (a bug bash).
constexpr const char* kMayHaveTakenEffect =
    "the broker may have stored it all the same: see `kappa status` for whether it took effect before repeating "
    "the command";
}  // namespace

const std::map<std::string, std::string>& Registry::TopicConfigs() {
  // Segments rolled hourly: the cleaner compacts only closed segments, and
  // with the broker's default (7 days) the progress records every running
  // version writes at each checkpoint piled up for a week before any was
  // dropped, and every process starting read them all.
  static const std::map<std::string, std::string> configs = {{"cleanup.policy", "compact"},
                                                             {"segment.ms", "3600000"}};
  return configs;
}

Status Registry::EnsureTopic() {
  if (topic_ensured_) return Status::OK();
  // Before the producer's first write: an auto-created topic would get the
  // broker's default cleanup.policy=delete, and retention would delete the
  // registry's job records after retention.ms (7 days by default).
  std::string refused;
  auto created = CreateTopicIfMissing(producer_.get(), topic_, 2, TopicConfigs(), 20000, &refused);
  if (!created.ok()) {
    return Status::Unavailable(created.status().message() + "; create the control topic " + topic_ +
                               " yourself with cleanup.policy=compact (see the README), then retry");
  }
  // kRefused: no right to create topics here (then an administrator created
  // it, compacted as the README says) or a broker without CreateTopics (the
  // embedded one, whose topics are created on first use).
  topic_ensured_ = true;
  return Status::OK();
}

Status Registry::Put(const std::string& key, const std::string& value, int32_t partition, int64_t* offset) {
  if (!producer_) {
    ProducerOptions options;
    options.linger_ms = 0;  // one write at a time, each waited for
    options.message_timeout_ms = 30000;
    options.on_delivery = OnDelivery;
    auto producer = CreateProducer(config_, options);
    if (!producer.ok()) return producer.status();
    producer_ = std::move(*producer);
  }
  KAPPA_RETURN_IF_ERROR(EnsureTopic());
  if (partition == kNotJobRecord) {
    for (int attempt = 0; partitions_ == 0; ++attempt) {
      auto count = TopicPartitionCount(producer_.get(), topic_, 20000);
      if (count.ok()) {
        partitions_ = *count;
      } else if (count.status().code() != Status::Code::kNotFound || attempt == 50) {
        return count.status().WithContext("the control topic " + topic_ + ": ");
      } else if (attempt == 0) {
        // A broker that creates topics on first use (the embedded one): a
        // first write makes it, so that this key's partition is known before
        // it is written (the latest value of a key is the last one read only
        // within one partition).
        int64_t ignored = -1;
        KAPPA_RETURN_IF_ERROR(Put("kappa/created", "", 0, &ignored));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    // Off partition 0 (the job records') when there is another; the same
    // partition for a key every time.
    partition = partitions_ == 1 ? 0 : 1 + PartitionForKey(key, partitions_ - 1);
  }
  Delivery delivery;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_OPAQUE(&delivery), RD_KAFKA_V_END);
  // A refused producer id (no IdempotentWrite/Write ACL) is a fatal error
  // whose cause only rd_kafka_fatal_error gives.
  if (err) return StatusFromKafkaFatal(producer_.get(), err, "cannot write to the control topic " + topic_, topic_);
  // Up to 35 s; a process asked to stop waits 8 s more at most, so that a
  // stop with the broker gone ends before its grace (a bug bash: deploy's
  // last progress write held a SIGTERM 20 s, until it exited as a crash).
  // The 8 s are the process's, shared by every write after the stop (the
  // progress publisher's, then the last one).
  static std::atomic<int64_t> stop_deadline_ns{0};
  const auto began = std::chrono::steady_clock::now();
  auto deadline = began + std::chrono::seconds(35);
  while (rd_kafka_outq_len(producer_.get()) > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (ProcessStopToken().stop_requested()) {
      int64_t at = stop_deadline_ns.load();
      if (at == 0) {
        const int64_t mine = (now + std::chrono::seconds(8)).time_since_epoch().count();
        at = stop_deadline_ns.compare_exchange_strong(at, mine) ? mine : at;
      }
      deadline = std::min(deadline, std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(at)));
    }
    if (now >= deadline) break;
    rd_kafka_flush(producer_.get(), 100);
  }
  if (rd_kafka_outq_len(producer_.get()) > 0) {
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began);
    // The delivery report still points at `delivery`: wait it out rather than
    // return with the opaque dangling.
    rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(producer_.get(), 5000);
    Status fatal = StatusFromKafkaFatal(producer_.get(), RD_KAFKA_RESP_ERR_NO_ERROR,
                                        "cannot write to the control topic " + topic_, topic_);
    if (!fatal.ok()) return fatal;
    return Status::Unavailable("the control topic " + topic_ + " did not acknowledge a registry write within " +
                               std::to_string(waited.count()) + " s" +
                               (delivery.possibly_persisted ? std::string("; ") + kMayHaveTakenEffect : ""));
  }
  if (delivery.err) {
    // Fatal (the producer id refused): the same words whether the refusal
    // came before rd_kafka_producev returned or with the delivery report.
    Status fatal = StatusFromKafkaFatal(producer_.get(), RD_KAFKA_RESP_ERR_NO_ERROR,
                                        "cannot write to the control topic " + topic_, topic_);
    if (!fatal.ok()) return fatal;
    if (delivery.err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || delivery.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
        delivery.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      // The topic was deleted (and perhaps made again with fewer
      // partitions): learnt again at the next write, which retried into
      // the old count for ever (a bug bash).
      partitions_ = 0;
      topic_ensured_ = false;
    }
    return StatusFromKafka(delivery.err, "registry write to " + topic_ + " failed",
                           delivery.possibly_persisted ? std::string(kMayHaveTakenEffect)
                                                       : AuthorizationHint(delivery.err, topic_));
  }
  *offset = delivery.offset;
  return Status::OK();
}

}  // namespace kappa
