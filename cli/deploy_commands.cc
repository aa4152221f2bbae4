// Versioned deployments: deploy, replay, status, promote, rollback, retire,
// get. The logic lives in replay/; these parse flags and print.
#include <cmath>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "base/iso_time.h"
#include "cli/command.h"
#include "cli/job_options.h"
#include "cli/metrics_endpoint.h"
#include "cli/progress_printer.h"
#include "engine/job_spec.h"
#include "cli/record_format.h"
#include "replay/deployment.h"
#include "replay/materialized_table.h"
#include "replay/pg_serving.h"
#include "replay/promotion.h"
#include "replay/registry.h"

namespace po = boost::program_options;

namespace kappa::cli {
namespace {

void AddControlOption(po::options_description& desc) {
  desc.add_options()("control-topic",
                     po::value<std::string>()->default_value("kappa.control")->notifier([](const std::string& topic) {
                       // An empty or invalid name read "no jobs registered in " with exit 0.
                       if (!CheckTopicName(topic).ok()) {
                         throw po::validation_error(po::validation_error::invalid_option_value, "control-topic", topic);
                       }
                     }),
                     "the registry's control topic (compacted on a real cluster)");
}

// The options of the commands that act on a job in the registry: the control
// topic, the Kafka options, --postgres, and the job name as the first
// positional argument.
void AddJobCommandOptions(po::options_description& desc, po::positional_options_description& positional) {
  AddControlOption(desc);
  AddKafkaOptions(desc);
  // No default_value: help would print a DSN from the environment, password and all.
  desc.add_options()("postgres", po::value<std::string>(),
                     "PostgreSQL DSN for jobs with sink.postgres (default: $KAPPA_POSTGRES_DSN, else the DSN "
                     "registered, which has no password: libpq takes it from PGPASSWORD or ~/.pgpass)");
  positional.add("job", 1);
}

// --postgres, else $KAPPA_POSTGRES_DSN, else "" (the registered DSN).
std::string PostgresDsn(const po::variables_map& vm) {
  if (vm.count("postgres")) return vm["postgres"].as<std::string>();
  const char* env = std::getenv("KAPPA_POSTGRES_DSN");
  return env ? env : "";
}

int DeployOrReplay(int argc, char** argv, bool replay) {
  const std::string command = replay ? "replay" : "deploy";
  po::options_description desc("options");
  po::positional_options_description positional;
  JobOptions job;
  DeploymentOptions options;
  options.replay = replay;
  desc.add_options()("help,h", "show this help");
  AddJobOptions(desc, positional, &job, replay ? 1000 : 5000);
  desc.add_options()
      ("catch-up-lag", po::value<int64_t>(&options.catch_up_max_lag)->default_value(1000), "caught up: every partition within this many records of the log end...")
      ("catch-up-hold-ms", po::value<int64_t>(&options.catch_up_hold_ms)->default_value(3000), "...held for this long");
  if (replay) {
    desc.add_options()("protect-live-lag", po::value<int64_t>(&options.protect_live_lag)->default_value(0),
                       "while the serving version reports a lag over this many records, halve this replay's rate "
                       "at every registry poll (1 s; floor 1% of the cap, at least 100 rec/s); raise it x1.5 per "
                       "poll once that lag is under half of it (0: off)");
  }
  AddControlOption(desc);
  const std::string usage = replay
      ? "usage: kappa replay SPEC --brokers HOST:PORT [options]\n\n"
        "Starts a NEW version of a job from offset zero (or the spec's start) in this process,\n"
        "beside the running versions, with its own state directory, consumer group <job>.v<N>\n"
        "and output topic <sink>.v<N>. Shows per-partition lag, rate, percent done and ETA;\n"
        "marks the version caught-up in the registry once it has kept up; then keeps running\n"
        "live until stopped or retired. Promote it with `kappa promote`. Change its rate while\n"
        "it runs with `kappa throttle`; --protect-live-lag slows it whenever the serving version\n"
        "falls behind."
      : "usage: kappa deploy SPEC --brokers HOST:PORT [options]\n\n"
        "Registers a version of a job in the registry (the control topic) and runs it live.\n"
        "The first version of a job becomes the serving one. Restarting a registered version\n"
        "resumes from its checkpoint; a different spec under the same version is refused.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, command, usage, desc, &positional, vm); rc >= 0) return rc;
  JobSpec spec_value;
  KafkaConfig config;
  if (Status st = LoadJob(vm, &job, &spec_value, &config); !st.ok()) return Fail(command, st);
  if (options.protect_live_lag < 0) {
    return Fail(command, Status::InvalidArgument("--protect-live-lag must not be negative (0: off)"));
  }
  if (options.catch_up_max_lag < 0 || options.catch_up_hold_ms < 0) {
    return Fail(command, Status::InvalidArgument("--catch-up-lag and --catch-up-hold-ms must not be negative"));
  }
  const JobSpec* spec = &spec_value;
  options.run = job.run;
  JobEndpoint endpoint;
  if (Status st = StartJobEndpoint(vm, *spec, command, &endpoint); !st.ok()) return Fail(command, st);
  options.run.metrics = endpoint.metrics.get();
  if (StatusBoard* board = endpoint.board.get()) {
    options.on_registry_read = [board, job = spec->job](const Registry& registry) { board->OnRegistry(registry, job); };
  }
  options.run.on_status = StatusPrinter("kappa " + spec->job + " v" + std::to_string(spec->version), true);
  options.run.on_note = NotePrinter("kappa " + command);
  options.on_note = NotePrinter("kappa " + command);
  Registry registry(config, vm["control-topic"].as<std::string>());
  StopToken stop = InstallStopSignals();
  RunSummary summary;
  Status st = RunDeployment(config, *spec, options, registry, stop, &summary);
  if (!st.ok()) return Fail(command, st);
  if (!summary.stopped_waiting.empty()) {
    std::printf("kappa %s: %s v%d %s: no final checkpoint (the records waiting for it were not processed); the "
                "last checkpoint is intact, and the next start reads on from it\n",
                command.c_str(), spec->job.c_str(), spec->version, summary.stopped_waiting.c_str());
    return 0;
  }
  // Its checkpoint is durable either way; a stop the registry did not take
  // was reported "stopped cleanly" while status showed it running (a bug bash).
  // The account `kappa run` prints (a bug bash: every record of a topic in
  // another format went to the DLQ, and deploy said only "in 200000, 0
  // outputs").
  const RecordCounters& c = summary.counters;
  char account[256];
  if (summary.stage2) {
    std::snprintf(account, sizeof(account), "in %lld, dlq %lld (both stages)", static_cast<long long>(c.in),
                  static_cast<long long>(c.dlq + summary.stage2->dlq));
  } else {
    std::snprintf(account, sizeof(account), "in %lld = out %lld + deduped %lld + filtered %lld + late %lld + dlq %lld",
                  static_cast<long long>(c.in), static_cast<long long>(c.out), static_cast<long long>(c.deduped),
                  static_cast<long long>(c.filtered), static_cast<long long>(c.late), static_cast<long long>(c.dlq));
  }
  std::printf("kappa %s: %s v%d stopped cleanly: %s; %lld outputs to %s%s\n", command.c_str(), spec->job.c_str(),
              spec->version, account,
              static_cast<long long>(summary.stage2 ? summary.stage2->outputs : summary.counters.outputs),
              spec->OutputName().c_str(),
              summary.stop_unrecorded ? "; but the control topic did not take its stop (the warning above): `kappa "
                                        "status` shows it running until its reports are overdue"
                                      : "");
  PrintSinkRejected(command, summary, *spec);
  return 0;
}

}  // namespace

int DeployCommand(int argc, char** argv) { return DeployOrReplay(argc, argv, false); }
int ReplayCommand(int argc, char** argv) { return DeployOrReplay(argc, argv, true); }

namespace {

// Status of a job served through PostgreSQL: makes the view agree with the
// registry (the registry wins) and says which version the view serves.
void PrintPostgresServing(const JobRecord& job, const VersionInfo& serving, const std::string& dsn) {
  // A status answers in seconds: a view its readers hold is said, not
  // waited out for a minute (a bug bash); promote and rollback wait longer.
  auto line = ReconcileServing(job, dsn, SwapWait{.attempts = 5});
  if (!line.ok()) {
    std::printf("  postgres view %s: not checked: %s\n", serving.postgres_table.c_str(), line.status().message().c_str());
    return;
  }
  if (!line->empty()) std::printf("  %s\n", line->c_str());
  auto pg = PgClient::Connect(ServingDsn(serving, dsn));
  Result<std::optional<int32_t>> version = pg.ok() ? ServingVersion(**pg, job.job, serving.postgres_table)
                                                   : Result<std::optional<int32_t>>(pg.status());
  if (!version.ok()) {
    std::printf("  postgres view %s: not read: %s\n", serving.postgres_table.c_str(), version.status().message().c_str());
  } else if (!version->has_value()) {
    std::printf("  postgres view %s: not created yet (v%d has not created %s)\n", serving.postgres_table.c_str(),
                job.serving, serving.PostgresVersionTable().c_str());
  } else {
    const std::string table = serving.postgres_table + "_v" + std::to_string(**version);
    // Renamed behind kappa's back, the view still reads it (by OID) while
    // the name was shown as if there (a bug bash).
    auto exists = PgRelationExists(**pg, table);
    std::printf("  postgres view %s serves v%d (%s%s)\n", serving.postgres_table.c_str(), **version, table.c_str(),
                exists.ok() && !*exists ? ": no table has that name now, renamed or dropped? the version's process "
                                          "stops at its next checkpoint"
                                        : "");
  }
}

std::string Rate(double records_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f rec/s", records_per_second);
  return buf;
}

}  // namespace

int StatusCommand(int argc, char** argv) {
  po::options_description desc("options");
  desc.add_options()("help,h", "show this help")("job", po::value<std::string>(), "only this job (positional)");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  const std::string usage =
      "usage: kappa status [JOB] --brokers HOST:PORT\n\n"
      "Shows every version of every job in the registry: state (live, replaying, caught-up,\n"
      "retired), which version serves, per-partition position and lag, rate, last checkpoint,\n"
      "DLQ and late counts, and whether its process still reports.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "status", usage, desc, &positional, vm); rc >= 0) return rc;
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("status", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  if (Status st = registry.Refresh(); !st.ok()) return Fail("status", st);
  if (std::string risk = registry.RetentionRisk(); !risk.empty()) {
    std::fprintf(stderr, "kappa status: WARNING %s\n", risk.c_str());
  }
  for (const auto& warning : registry.warnings()) std::fprintf(stderr, "kappa status: WARNING %s\n", warning.c_str());
  if (vm.count("job")) {
    // A job that is not registered is an error naming those that are, not
    // "no jobs registered" and success.
    const std::string& wanted = vm["job"].as<std::string>();
    if (auto record = registry.Job(wanted); !record || record->versions.empty()) {
      const std::vector<std::string> names = registry.Jobs();  // sorted (the registry's map order)
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      return Fail("status", Status::NotFound("no job named " + wanted + " (" +
                                             (names.empty() ? "no jobs registered in " + registry.control_topic()
                                                            : "registered: " + list) +
                                             ")"));
    }
  }
  const int64_t now = WallClockMs();
  int shown = 0;
  for (const auto& name : registry.Jobs()) {
    if (vm.count("job") && vm["job"].as<std::string>() != name) continue;
    auto job = registry.Job(name);
    if (!job) continue;
    ++shown;
    std::printf("job %s: serving v%d%s\n", name.c_str(), job->serving,
                job->RollbackTarget() == 0 ? "" : (" (rollback to v" + std::to_string(job->RollbackTarget()) + ")").c_str());
    if (const VersionInfo* serving = job->Find(job->serving); serving && !serving->postgres_table.empty()) {
      PrintPostgresServing(*job, *serving, PostgresDsn(vm));
    }
    for (const auto& v : job->versions) {
      auto progress = registry.Progress(name, v.version);
      const std::string output = v.postgres_table.empty() ? v.output_topic : "postgres table " + v.PostgresVersionTable();
      // A retired version's state deleted after its retention was still
      // listed as if there (a bug bash).
      const bool retired = v.state == VersionState::kRetired;
      std::error_code gone;
      const bool deleted = retired && !std::filesystem::exists(v.state_dir, gone) && !gone;
      std::printf("  v%d %-9s%s spec %s  output %s  state %s%s\n", v.version, VersionStateName(v.state),
                  job->serving == v.version ? " SERVING" : "        ", v.spec_hash.c_str(), output.c_str(),
                  v.state_dir.c_str(), deleted ? " (deleted)" : "");
      if (!progress) {
        // A process reports at its first checkpoint; one that failed at its
        // start never does, and read as "live" for ever (a bug bash).
        const int64_t silent_s = v.registered_at_ms > 0 ? (now - v.registered_at_ms) / 1000 : 0;
        if (v.state != VersionState::kRetired && silent_s >= 30) {
          std::printf("      no progress reported in the %llds since it was registered: its process may have "
                      "failed at its start (see that command's output) or not be running; `kappa %s` with the "
                      "same spec starts it again\n",
                      static_cast<long long>(silent_s), v.state == VersionState::kReplaying ? "replay" : "deploy");
        } else {
          std::printf("      no progress reported yet\n");
        }
        continue;
      }
      // Lag as of now: the reported positions against the source's current ends.
      ProgressSnapshot s = progress->snapshot;
      // Unreadable ends: the reported ones, and the line says so.
      const Status ends = RefreshLogEnds(config, v.source_topic, &s);
      std::string parts;
      for (const auto& p : s.partitions) {
        parts += " p" + std::to_string(p.partition) + ":" + std::to_string(p.position) + "/" + std::to_string(p.log_end);
      }
      // The rate and "within catch-up lag" are what a running process
      // measured: a stopped or silent one shows neither (they were stale).
      std::string liveness = progress->Liveness(now);
      if (retired) {
        // Its process was told to stop: "not reporting ... start it again
        // with the same spec to resume" was advice the deploy refuses (a
        // bug bash).
        liveness = liveness == "running" ? "running (retired: it stops at its next registry check)"
                                         : "stopped (retired)";
      }
      // Rows the database refused are in the DLQ too, but they are outputs,
      // not input records: said apart, never added to `dlq`.
      std::string refused =
          s.sink_rejected > 0 ? ", refused by the sink " + std::to_string(s.sink_rejected) + " (in the DLQ)" : "";
      // A scaled-out version's partitions no running instance reports: the
      // line read "lag 0 (100.0% done)" for a version whose one running
      // instance held none yet (a bug bash).
      // Its lag and share done are unknown then, not 0 and 100% (a bug bash:
      // "lag 0 (100.0% done)" for a version 6,295 records behind).
      char lag_text[200];
      std::snprintf(lag_text, sizeof(lag_text), "lag %lld (%.1f%% done)", static_cast<long long>(s.total_lag()),
                    s.percent_done());
      if (s.unreported_partitions() > 0) {
        std::snprintf(lag_text, sizeof(lag_text),
                      "lag unknown: %d of %d partitions reported by no running instance (%lld on the others)",
                      s.unreported_partitions(), s.source_partitions,
                      static_cast<long long>(s.total_lag()));
      } else if (!ends.ok()) {
        // Against the ends it last reported: a lower bound. It read "lag 0
        // (100.0% done)" for a version 3000 records behind, its cause on a
        // later line (a bug bash without Describe on the source).
        std::snprintf(lag_text, sizeof(lag_text), "lag at least %lld (the log ends cannot be read now)",
                      static_cast<long long>(s.total_lag()));
      }
      // "Within catch-up lag" is what the process last reported; the lag
      // above is against the log ends now. A stalled process read "lag 60000
      // ..., within catch-up lag" (a bug bash): said as of its report when
      // the log has since moved on by more than the default catch-up lag.
      std::string within;
      if (liveness == "running" && !retired && progress->caught_up_since_ms) {
        within = s.max_lag() > progress->snapshot.max_lag() + 1000
                     ? ", within catch-up lag at its last report " +
                           std::to_string((now - progress->snapshot.checkpoint_ms) / 1000) + " s ago"
                     : ", within catch-up lag";
      } else if (liveness == "running" && v.state == VersionState::kCaughtUp && s.unreported_partitions() == 0) {
        // Its state says it caught up once; a version that has fallen
        // behind since still read "caught-up" alone (a bug bash).
        within = ", behind the catch-up lag again since it caught up (promote checks the lag at its time)";
      }
      std::printf("      %s, %s%s, checkpoint epoch %lld %llds ago, in %lld, outputs %lld, dlq %lld, late %lld%s%s\n",
                  liveness.c_str(), liveness == "running" ? (Rate(s.records_per_second) + ", ").c_str() : "",
                  lag_text, static_cast<long long>(s.epoch),
                  static_cast<long long>((now - s.checkpoint_ms) / 1000), static_cast<long long>(s.counters.in),
                  static_cast<long long>(s.counters.outputs), static_cast<long long>(s.counters.dlq),
                  static_cast<long long>(s.counters.late), refused.c_str(), within.c_str());
      std::printf("      positions/ends:%s\n", parts.c_str());
      if (!ends.ok()) {
        std::printf("      log ends as the version last reported them: cannot read them now (%s)\n",
                    ends.message().c_str());
      }
      // A scaled-out version: which instance runs which partitions. After
      // a kill -9 the dead instance's last report still claimed its
      // partitions (listed under two "running" instances once the group
      // moved them, and for good once "not reporting", a bug bash): a
      // partition is shown where it was reported last by a running one.
      const auto instances = registry.InstanceProgress(name, v.version);
      std::map<int32_t, std::pair<int64_t, std::string>> reported_by;  // partition: (report time, instance)
      for (const auto& inst : instances) {
        if (inst.Liveness(now) != "running") continue;
        for (const auto& p : inst.snapshot.partitions) {
          auto& newest = reported_by[p.partition];
          if (newest.second.empty() || inst.snapshot.checkpoint_ms > newest.first) {
            newest = {inst.snapshot.checkpoint_ms, inst.instance};
          }
        }
      }
      for (const auto& inst : instances) {
        const bool running = inst.Liveness(now) == "running";
        std::string owned, moved;
        int64_t lag = 0;
        for (const auto& p : inst.snapshot.partitions) {
          auto it = reported_by.find(p.partition);
          if (running && (it == reported_by.end() || it->second.second == inst.instance)) {
            owned += (owned.empty() ? "" : ",") + std::to_string(p.partition);
            lag += std::max<int64_t>(0, p.log_end - p.position);
          } else {
            moved += (moved.empty() ? "" : ",") + std::to_string(p.partition);
          }
        }
        if (!moved.empty()) {
          owned = (owned.empty() ? std::string("none") : owned) + " (held " + moved + " when it last reported" +
                  (running ? "; now reported by another instance" : "") + ")";
        }
        // Its standby copies: partition (changelog records behind).
        std::string copies;
        for (const auto& sb : running ? inst.snapshot.standbys : decltype(inst.snapshot.standbys){}) {
          copies += (copies.empty() ? ", standby copies " : ",") + std::to_string(sb.partition) + " (lag " +
                    (sb.lag_records < 0 ? std::string("?") : std::to_string(sb.lag_records)) + ")";
        }
        // A restore from the changelog under way (the instance runs nothing else meanwhile).
        if (const auto& rs = inst.snapshot.restoring) {
          char line[192];
          std::snprintf(line, sizeof(line), ", restoring partition %d from the changelog: %lld/%lld records (%.0f%%), %.1f MB%s",
                        rs->partition, static_cast<long long>(rs->records), static_cast<long long>(rs->total_records),
                        rs->total_records > 0 ? 100.0 * static_cast<double>(rs->records) / static_cast<double>(rs->total_records) : 0.0,
                        static_cast<double>(rs->bytes) / 1e6,
                        rs->eta_seconds < 0 ? "" : (", ETA " + std::to_string(static_cast<int64_t>(rs->eta_seconds)) + " s").c_str());
          copies += line;
        }
        std::string alive = inst.Liveness(now);
        // Retired: "start it again with the same spec to resume" was advice
        // the deploy refuses (a bug bash).
        if (retired && alive != "running") {
          alive = alive.rfind("not reporting", 0) == 0
                      ? "not reporting for " + std::to_string((now - inst.snapshot.checkpoint_ms) / 1000) + " s (retired)"
                      : "stopped (retired)";
        }
        // Every partition it last held reported by another since: its rate
        // is history (a killed instance's stood beside the survivor's 0 while
        // it restored, a bug bash).
        const bool displaced = running && !moved.empty() && owned.rfind("none", 0) == 0;
        std::printf("      instance %s: %s, partitions %s, %slag %lld, checkpoint epoch %lld %llds ago%s\n",
                    inst.instance.c_str(), alive.c_str(), owned.empty() ? "none" : owned.c_str(),
                    alive == "running" && !displaced ? (Rate(inst.snapshot.records_per_second) + ", ").c_str() : "",
                    static_cast<long long>(lag),
                    static_cast<long long>(inst.snapshot.epoch),
                    static_cast<long long>((now - inst.snapshot.checkpoint_ms) / 1000), copies.c_str());
      }
      if (auto throttle = registry.Throttle(name, v.version); throttle && !retired) {
        std::printf("      throttle: %s (set %llds ago)\n", DescribeThrottle(*throttle).c_str(),
                    static_cast<long long>((now - throttle->updated_at_ms) / 1000));
      }
    }
  }
  if (shown == 0) std::printf("no jobs registered in %s\n", registry.control_topic().c_str());
  return 0;
}

int PromoteCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string job;
  int version = 0;
  PromoteOptions options;
  desc.add_options()
      ("help,h", "show this help")
      ("job", po::value<std::string>(&job)->required(), "job name (positional)")
      ("version", po::value<int>(&version)->required(), "version to promote")
      ("force", "promote even if the version has not caught up")
      ("accept", "promote even if more rows changed than the gate allows")
      ("max-changed-share", po::value<double>(&options.max_changed_share)->default_value(-1), "gate: refuse when more than this share of rows differ: changed, or written by one version only, over every key either wrote (overrides the spec's promote.max_changed_share)")
      ("max-lag", po::value<int64_t>(&options.max_lag)->default_value(1000), "caught up: every partition within this many records of the log end");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  const std::string usage =
      "usage: kappa promote JOB --version N --brokers HOST:PORT [--force] [--accept]\n\n"
      "Switches the job's serving alias to version N with one registry record. Refuses if N\n"
      "has not caught up (unless --force). Compares N's outputs with the serving version's on\n"
      "the keys both produced and prints the diff; refuses over the changed-share gate unless\n"
      "--accept. For a job with sink.postgres the diff runs in the database, and the view\n"
      "<table> is then pointed at <table>_vN in one transaction with kappa_serving (after the\n"
      "registry record: the registry wins; status, get, promote and rollback repair a view\n"
      "left behind by a crash).";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "promote", usage, desc, &positional, vm); rc >= 0) return rc;
  // NaN passed every comparison of the gate, so it was off; -1 is "the spec's".
  if (options.max_changed_share != -1 && !(options.max_changed_share >= 0 && options.max_changed_share <= 1)) {
    return Fail("promote", Status::InvalidArgument("--max-changed-share must be from 0 to 1 (a share of the compared "
                                                   "rows; leave it out for the spec's promote.max_changed_share)"));
  }
  if (options.max_lag < 0) return Fail("promote", Status::InvalidArgument("--max-lag must not be negative"));
  options.force = vm.count("force") > 0;
  options.accept = vm.count("accept") > 0;
  options.postgres_dsn = PostgresDsn(vm);
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("promote", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  std::string report;
  Status st = Promote(registry, config, job, version, options, &report);
  if (!report.empty()) std::printf("%s\n", report.c_str());
  if (!st.ok()) return Fail("promote", st);
  // The status pages of the job's running versions show the last promotion
  // and its diff. The promotion itself is done: a failure here only warns.
  char when[40];
  const std::string text = "v" + std::to_string(version) + " at " + std::string(when, IsoTime(WallClockMs(), when)) +
                           "\n" + report;
  if (Status put = registry.PutValue(Registry::PromotionKey(job), text); !put.ok()) {
    std::fprintf(stderr, "kappa promote: warning: the promotion report was not recorded for status pages: %s\n",
                 put.ToString().c_str());
  }
  return 0;
}

int RollbackCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string job;
  desc.add_options()("help,h", "show this help")("job", po::value<std::string>(&job)->required(), "job name (positional)")(
      "force", "roll back even to a version whose process is gone, stopped on an error or paused");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "rollback", "usage: kappa rollback JOB --brokers HOST:PORT [--force]\n\nMakes the previously serving version serve again. Refuses one whose outputs no longer move\n(its process gone, stopped on an error, or paused) unless --force.", desc, &positional, vm); rc >= 0) return rc;
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("rollback", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  std::string report;
  Status st = Rollback(registry, job, &report, PostgresDsn(vm), vm.count("force") > 0);
  if (!st.ok()) return Fail("rollback", st);
  std::printf("%s\n", report.c_str());
  return 0;
}

int RetireCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string job, retention;
  int version = 0;
  desc.add_options()
      ("help,h", "show this help")
      ("job", po::value<std::string>(&job)->required(), "job name (positional)")
      ("version", po::value<int>(&version)->required(), "version to retire")
      ("retention", po::value<std::string>(&retention)->default_value("24h"), "delete the local state of versions retired longer ago than this");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "retire", "usage: kappa retire JOB --version N --brokers HOST:PORT\n\nStops a (non-serving) version: its process exits at its next registry check. Its state\nis kept for --retention, then deleted by a later retire: only a state directory kappa\ncreated for that version (it holds a KAPPA_STATE marker naming it), and in it only the\nRocksDB files and kappa's own; anything else is left in place and named. With\nsink.postgres its table <table>_vN and kappa_offsets rows are dropped then too.", desc, &positional, vm); rc >= 0) return rc;
  auto retention_ms = ParseDurationMs(retention);
  if (!retention_ms.ok()) return Fail("retire", Status::InvalidArgument("--retention: " + retention_ms.status().message()));
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("retire", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  std::string report;
  Status st = Retire(registry, job, version, *retention_ms, &report, PostgresDsn(vm));
  if (!st.ok()) return Fail("retire", st);
  std::printf("%s\n", report.c_str());
  return 0;
}

int ThrottleCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string job;
  int version = 0;
  double max_rate = -1;
  desc.add_options()
      ("help,h", "show this help")
      ("job", po::value<std::string>(&job)->required(), "job name (positional)")
      ("version", po::value<int>(&version)->required(), "the running version to throttle")
      ("max-rate", po::value<double>(&max_rate), "new cap in records per second for the version (0: no cap); the instances of a scaled-out version share it by the partitions each holds")
      ("pause", "read nothing until --resume (checkpoints, status and retirement still work)")
      ("resume", "read again, at the cap in force");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "throttle",
                           "usage: kappa throttle JOB --version N (--max-rate R | --pause | --resume) --brokers HOST:PORT\n\n"
                           "Changes the rate of a running version (e.g. a replay that competes with the live one)\n"
                           "through the registry: the version's process applies it at its next registry poll\n"
                           "(about 1 s) and keeps it across restarts. --max-rate and --resume may be combined.\n"
                           "`kappa status` shows it.",
                           desc, &positional, vm);
      rc >= 0) {
    return rc;
  }
  const bool pause = vm.count("pause") > 0, resume = vm.count("resume") > 0, rate = vm.count("max-rate") > 0;
  if (pause && resume) return Fail("throttle", Status::InvalidArgument("--pause and --resume exclude each other"));
  if (!pause && !resume && !rate) {
    return Fail("throttle", Status::InvalidArgument("say what to change: --max-rate R, --pause or --resume"));
  }
  if (Status st = rate ? CheckMaxRate(max_rate) : Status::OK(); !st.ok()) {
    return Fail("throttle", st);
  }
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("throttle", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  if (Status st = registry.Refresh(); !st.ok()) return Fail("throttle", st);
  auto record = registry.Job(job);
  if (!record) return Fail("throttle", Status::NotFound("no job " + job + " in the registry " + registry.control_topic()));
  const VersionInfo* info = record->Find(version);
  if (!info) {
    std::string list;
    for (const auto& v : record->versions) list += (list.empty() ? "v" : ", v") + std::to_string(v.version);
    return Fail("throttle", Status::NotFound("job " + job + " has no version " + std::to_string(version) +
                                             " (registered: " + list + ")"));
  }
  if (info->state == VersionState::kRetired) {
    return Fail("throttle", Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                                       " is retired: nothing runs to throttle"));
  }
  ThrottleRecord wish;
  if (auto old = registry.Throttle(job, version)) wish = *old;  // --pause keeps the rate, --max-rate the pause
  wish.job = job;
  wish.version = version;
  if (rate) wish.max_rate = max_rate;
  if (pause) wish.paused = true;
  if (resume) wish.paused = false;
  wish.updated_at_ms = WallClockMs();
  if (Status st = registry.PutThrottle(wish, rate, pause || resume); !st.ok()) return Fail("throttle", st);
  auto progress = registry.Progress(job, version);
  std::printf("kappa throttle: %s v%d: %s (applied by its process within about 1 s%s)\n", job.c_str(), version,
              DescribeThrottle(wish).c_str(),
              progress && !progress->stopped ? "" : "; it reports no running process now: applied when it starts");
  if (wish.paused && record->serving == version) {
    std::fprintf(stderr,
                 "kappa throttle: warning: %s v%d is the serving version: while it is paused its outputs stop and "
                 "what `kappa get` answers grows stale (kappa throttle %s --version %d --resume reads again)\n",
                 job.c_str(), version, job.c_str(), version);
  }
  return 0;
}

int GetCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string job, key, table_dir;
  int version = 0;
  desc.add_options()
      ("help,h", "show this help")
      ("job", po::value<std::string>(&job)->required(), "job name (positional)")
      ("key", po::value<std::string>(&key)->required(), "output key, e.g. u0000042|1767229200000 (positional)")
      ("version", po::value<int>(&version)->default_value(0), "read this version instead of the serving one")
      ("table-dir", po::value<std::string>(&table_dir)->default_value(".kappa/tables"), "where the local materialized tables live");
  po::positional_options_description positional;
  AddJobCommandOptions(desc, positional);
  positional.add("key", 1);
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "get", "usage: kappa get JOB KEY --brokers HOST:PORT\n\nPrints the latest output for KEY from the version that serves JOB, read from a local\ntable materialized from its output topic (upsert by key, caught up on every call).\nA job with sink.postgres is read from PostgreSQL: the view <table> (the serving\nversion), or with --version N its table <table>_vN.", desc, &positional, vm); rc >= 0) return rc;
  if (key.empty()) return Fail("get", Status::InvalidArgument("the KEY is empty: give the output key to look up"));
  if (version < 0) return Fail("get", Status::InvalidArgument("--version must be a version number (1 or more)"));
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("get", st);
  Registry registry(config, vm["control-topic"].as<std::string>());
  if (Status st = registry.Refresh(); !st.ok()) return Fail("get", st);
  auto record = registry.Job(job);
  if (!record) return Fail("get", Status::NotFound("no job " + job + " in the registry"));
  const int32_t v = version ? version : record->serving;
  const VersionInfo* info = record->Find(v);
  if (!info) {
    // "nothing serves yet?" was said of an explicit --version too, while
    // another version served (a bug bash).
    if (version == 0) return Fail("get", Status::NotFound("job " + job + " has no serving version yet: promote one"));
    std::string versions;
    for (const VersionInfo& known : record->versions) {
      versions += (versions.empty() ? "" : ", ") + std::to_string(known.version);
    }
    return Fail("get", Status::NotFound("job " + job + " has no version " + std::to_string(v) + " (its versions: " +
                                        (versions.empty() ? "none" : versions) + ")"));
  }
  if (info->state == VersionState::kRetired) {
    // Answered without a word (a bug bash): its rows stopped where it did.
    std::fprintf(stderr, "kappa get: note: version %d is retired: its outputs are as it left them\n", v);
  }
  if (!info->postgres_table.empty()) {
    // Served from PostgreSQL: the view (made to agree with the registry
    // first), or with --version that version's table.
    const std::string dsn = PostgresDsn(vm);
    // A view that cannot be made to agree (a lock, views built on it) does
    // not stop the answer: the registry's serving version is read from its
    // own table then, and the view's trouble is a warning.
    bool view_agrees = version == 0;
    // Connected first: with the database away, get warned that it read the
    // version's table instead, then failed connecting for that too (twice
    // the connect timeout against a hung server, a bug bash).
    auto pg = PgClient::Connect(ServingDsn(*info, dsn));
    if (!pg.ok()) return Fail("get", pg.status());
    if (version == 0) {
      if (auto line = ReconcileServing(*record, dsn, SwapWait{.attempts = 5}); !line.ok()) {
        std::fprintf(stderr, "kappa get: warning: %s; reading v%d's table %s instead\n",
                     line.status().message().c_str(), v, info->PostgresVersionTable().c_str());
        view_agrees = false;
      }
    }
    const std::string table = view_agrees ? info->postgres_table : info->PostgresVersionTable();
    int32_t row_version = v;
    constexpr int kLockWaitS = 5;
    if (Status bound = BoundLockWait(**pg, kLockWaitS); !bound.ok()) return Fail("get", bound);
    auto row = PgRowJson(**pg, table, key, &row_version);
    if (!row.ok()) {
      row = NameLockWait(**pg, row.status(), {info->PostgresVersionTable()}, "kappa get", kLockWaitS);
    }
    const std::string retired_hint = info->state == VersionState::kRetired
                                         ? " (version " + std::to_string(v) +
                                               " is retired: retire drops its table once the retention passed)"
                                         : std::string();
    if (!row.ok() && row.status().code() == Status::Code::kNotFound) {
      return Fail("get", Status::NotFound(row.status().message() + retired_hint));
    }
    if (!row.ok()) return Fail("get", row.status());
    if (!row->has_value()) {
      return Fail("get", Status::NotFound("no row for key " + key + " in PostgreSQL " + table + retired_hint));
    }
    if (row_version != v) {
      std::fprintf(stderr, "kappa get: note: the view %s served v%d's row while the registry names v%d (a promote or "
                   "rollback is switching it)\n", table.c_str(), row_version, v);
    }
    std::printf("{\"job\":\"%s\",\"version\":%d,\"key\":\"%s\",\"value\":%s}\n", JsonEscape(job).c_str(),
                row_version, JsonEscape(key).c_str(), (*row)->c_str());
    return 0;
  }
  const std::string dir = table_dir + "/" + info->output_topic;
  // A block found damaged only when read (a checksum) failed every lookup
  // after, with no word of what to do (a bug bash): set aside, built again.
  Result<std::optional<std::string>> value = std::optional<std::string>();
  for (int attempt = 0;; ++attempt) {
    std::string aside;
    auto table = MaterializedTable::Open(dir, info->output_topic, 30000, &aside);
    if (!table.ok()) return Fail("get", table.status());
    if (!aside.empty()) std::fprintf(stderr, "kappa get: %s\n", aside.c_str());
    std::string rebuilt;
    Status st;
    if (auto applied = (*table)->CatchUp(config, &rebuilt); !applied.ok()) st = applied.status();
    if (!rebuilt.empty()) std::fprintf(stderr, "kappa get: %s\n", rebuilt.c_str());
    if (st.ok()) {
      value = (*table)->Get(key);
      if (!value.ok()) st = value.status();
    }
    if (st.ok()) break;
    if (st.code() != Status::Code::kCorruption || attempt > 0) return Fail("get", st);
    table->reset();
    std::string note;
    if (Status set = MaterializedTable::SetAside(dir, st.message(), &note); !set.ok()) return Fail("get", set);
    std::fprintf(stderr, "kappa get: %s\n", note.c_str());
  }
  if (!value->has_value()) return Fail("get", Status::NotFound("no output for key " + key + " in " + info->output_topic));
  const std::string& bytes = **value;
  std::printf("{\"job\":\"%s\",\"version\":%d,\"key\":\"%s\",\"value\":%s}\n", job.c_str(), v, JsonEscape(key).c_str(),
              FormatRecordJson(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()).c_str());
  return 0;
}

}  // namespace kappa::cli
