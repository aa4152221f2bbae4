#include "replay/deployment.h"

#include <cstdio>

namespace kappa {

Result<JobRecord> RegisterVersion(Registry& registry, const JobSpec& spec, bool replay) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  JobRecord record;
  if (auto existing = registry.Job(spec.job)) record = *existing;
  record.job = spec.job;
  if (VersionInfo* v = record.Find(spec.version)) {
    if (v->spec_hash != spec.spec_hash) {
      return Status::FailedPrecondition(
          "job " + spec.job + " version " + std::to_string(spec.version) + " is registered with spec hash " +
          v->spec_hash + ", but this spec hashes to " + spec.spec_hash +
          ": a logic change is a new version (bump `version:`)");
    }
    if (v->state == VersionState::kRetired) {
      return Status::FailedPrecondition("job " + spec.job + " version " + std::to_string(spec.version) +
                                        " is retired; deploy a new version number instead");
    }
    if (v->state_dir != spec.state_dir) {
      return Status::FailedPrecondition("job " + spec.job + " version " + std::to_string(spec.version) +
                                        " keeps its state in " + v->state_dir + ", not " + spec.state_dir);
    }
    return record;  // a restart of a registered version
  }
  for (const auto& v : record.versions) {
    if (v.state_dir == spec.state_dir) {
      return Status::FailedPrecondition("state directory " + spec.state_dir + " belongs to version " +
                                        std::to_string(v.version) + "; each version needs its own");
    }
    if (v.output_topic == spec.OutputTopic() || v.group == spec.ConsumerGroup()) {
      return Status::FailedPrecondition("version " + std::to_string(v.version) + " already uses output topic " +
                                        v.output_topic + " / group " + v.group);
    }
  }
  VersionInfo info;
  info.version = spec.version;
  info.spec_hash = spec.spec_hash;
  info.state = replay ? VersionState::kReplaying : VersionState::kLive;
  info.source_topic = spec.source_topic;
  info.output_topic = spec.OutputTopic();
  info.group = spec.ConsumerGroup();
  info.state_dir = spec.state_dir;
  info.registered_at_ms = WallClockMs();
  info.max_changed_share = spec.max_changed_share;
  record.versions.push_back(info);
  if (record.serving == 0 && !replay) record.serving = spec.version;  // the first live version serves
  KAPPA_RETURN_IF_ERROR(registry.PutJob(record));
  return record;
}

Status RunDeployment(const KafkaConfig& config, const JobSpec& spec, const DeploymentOptions& options,
                     Registry& registry, StopToken stop, RunSummary* summary) {
  auto registered = RegisterVersion(registry, spec, options.replay);
  if (!registered.ok()) return registered.status();
  std::fprintf(stderr, "kappa %s: job %s version %d registered (%s); %s\n", options.replay ? "replay" : "deploy",
               spec.job.c_str(), spec.version, registered->serving == spec.version ? "serving" : "not serving",
               options.replay ? "replaying from offset 0 beside the running versions" : "running live");

  int64_t caught_up_since = 0;
  int64_t last_poll = 0;
  bool marked_caught_up = false;
  Status hook_error;
  RunOptions run = options.run;
  run.on_checkpoint = [&](const ProgressSnapshot& snapshot) -> bool {
    const int64_t now = WallClockMs();
    if (snapshot.max_lag() <= options.catch_up_max_lag) {
      if (caught_up_since == 0) caught_up_since = now;
    } else {
      caught_up_since = 0;
    }
    ProgressRecord progress{spec.job, spec.version, snapshot, caught_up_since, false};
    Status st = registry.PutProgress(progress);
    if (!st.ok()) std::fprintf(stderr, "kappa: could not publish progress (will retry): %s\n", st.ToString().c_str());
    if (now - last_poll < options.registry_poll_ms && !(caught_up_since && !marked_caught_up)) return true;
    last_poll = now;
    if (!registry.Refresh().ok()) return true;  // transient: try again next checkpoint
    auto job = registry.Job(spec.job);
    if (!job) return true;
    VersionInfo* self = job->Find(spec.version);
    if (!self) return true;
    if (self->state == VersionState::kRetired) {
      std::fprintf(stderr, "kappa: job %s version %d was retired; stopping\n", spec.job.c_str(), spec.version);
      return false;
    }
    if (self->state == VersionState::kReplaying && caught_up_since != 0 &&
        now - caught_up_since >= options.catch_up_hold_ms) {
      self->state = VersionState::kCaughtUp;
      if (registry.PutJob(*job).ok()) {
        marked_caught_up = true;
        std::fprintf(stderr, "kappa: job %s version %d caught up (every partition within %lld records of the end "
                     "for %lld ms); ready to promote\n", spec.job.c_str(), spec.version,
                     static_cast<long long>(options.catch_up_max_lag), static_cast<long long>(options.catch_up_hold_ms));
      }
    }
    return true;
  };
  JobRunner runner(spec, config, run);
  Status st = runner.Run(stop);
  if (summary) *summary = runner.summary();
  // Say the process has stopped, so status never shows a dead version as running.
  if (auto last = registry.Progress(spec.job, spec.version)) {
    last->stopped = true;
    (void)registry.PutProgress(*last);
  }
  return st;
}

}  // namespace kappa
