// Deployment: running one version of a job under the registry. `deploy`
// starts a version live (the first version becomes the serving one);
// `replay` starts a new version from offset zero beside the running ones,
// with its own state directory, group <job>.v<N> and output <sink>.v<N>. While
// it runs, the version's progress is published to the registry at every
// checkpoint, it is marked caught-up once every partition has stayed within
// `catch_up_max_lag` records of the log end for `catch_up_hold_ms`, and it
// stops cleanly when the registry says it was retired. Its rate cap can be
// changed, paused and resumed while it runs (`kappa throttle`, a throttle
// record in the registry) and lowered automatically to protect the serving
// version's lag (protect_live_lag).
//
// The job's thread never waits for the control topic: its checkpoint hook
// hands the latest snapshot to a publisher thread owned by the deployment
// (latest snapshot wins), which writes progress, re-reads the registry
// (retirement, catch-up) and is joined before RunDeployment returns; the
// final "stopped" record is then written and awaited on the calling thread.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "engine/job_runner.h"
#include "engine/job_spec.h"
#include "replay/registry.h"

namespace kappa {

struct DeploymentOptions {
  bool replay = false;
  RunOptions run;
  int64_t catch_up_max_lag = 1000;   // records per partition
  int64_t catch_up_hold_ms = 3000;
  // How often a running version re-reads the registry: retirement, `kappa
  // throttle`, the serving version's lag for protect_live_lag.
  int64_t registry_poll_ms = 1000;
  // > 0: at every registry poll, while the serving version (another one) reports
  // a lag over this many records, halve this version's rate (floor: 1% of
  // its cap, at least 100 rec/s); once that lag is under half of it, raise
  // it x1.5 per poll back to the cap (none: the rate it had before).
  int64_t protect_live_lag = 0;
  // The deployment's one-line notes (registered, caught up, retired, a
  // progress write that failed). Called on the thread that runs the
  // deployment (from the checkpoint hook, or after the job); null drops them.
  NoteCallback on_note;
  // Called with the registry just read: once after registering, then after
  // each re-read (every registry_poll_ms) on the publisher's thread, never
  // the job's; the registry is the callback's to read (not to keep) until
  // it returns. The status page takes the job's versions from it. May be null.
  std::function<void(const Registry&)> on_registry_read;
};

// Registers spec's version (or checks it matches the registered one) and
// returns the registry record. FailedPrecondition for a changed spec under a
// registered version number, or a retired version. The state directory is
// registered as an absolute path, resolved here (in the process that owns
// the state). A registration that loses to a concurrent write of the same
// job is redone on the new state, so none is lost.
// *added (if given): whether this call's write added the version (false
// when it was registered already, by this process before or another now).
Result<JobRecord> RegisterVersion(Registry& registry, const JobSpec& spec, bool replay, bool* added = nullptr);
// After a registration: whether a version of another job registered before
// it (lower RegisteredOffset) writes its output topic or table, or crosses
// its DLQ and late topics (the check RegisterVersion makes on its view
// before the write, which a concurrent registration of another job passes).
Status CheckRegisteredFirst(const Registry& registry, const JobSpec& spec);
// Removes spec's version from the registry again, if it is still the one
// registered at control-topic offset `claim` and no process of it has
// reported. If it served, what would serve had it never registered serves:
// the version it was promoted from, else the first live version after it.
Status UnregisterUnstarted(Registry& registry, const JobSpec& spec, int64_t claim);

// The marker kappa writes into a state directory it creates, naming the job
// and version; `kappa retire` deletes only directories that hold it.
inline constexpr const char kStateMarkerFile[] = "KAPPA_STATE";

// Before a version runs: creates its state directory with the marker if it
// does not exist (atomically: the directory appears with its marker), and
// refuses (FailedPrecondition) a directory whose marker names another job or
// version. An existing directory without a marker is used as it is (state
// from before markers) but never deleted by retire.
Status ClaimStateDir(const std::string& dir, const std::string& job, int32_t version);

struct StateMarker {
  std::string job;
  int32_t version = 0;
};
// What `dir`'s marker says; nullopt without a readable marker.
std::optional<StateMarker> ReadStateMarker(const std::string& dir);

// InvalidArgument when `control_topic` (the registry's) is one of the
// topics the job reads or writes.
Status CheckControlTopic(const JobSpec& spec, const std::string& control_topic);

// Registers and runs the version until stopped, retired, or (stop_at_end)
// caught up with the log as it was at start.
Status RunDeployment(const KafkaConfig& config, const JobSpec& spec, const DeploymentOptions& options,
                     Registry& registry, StopToken stop, RunSummary* summary = nullptr);

}  // namespace kappa
