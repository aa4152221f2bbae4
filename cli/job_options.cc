#include "cli/job_options.h"

#include <cmath>
#include <cstdio>

#include "cli/command.h"
#include "cli/metrics_endpoint.h"

namespace po = boost::program_options;

namespace kappa::cli {

void AddJobOptions(po::options_description& desc, po::positional_options_description& positional, JobOptions* out,
                   int default_status_interval_ms) {
  desc.add_options()
      ("spec", po::value<std::string>(&out->spec_path)->required(), "job spec file (YAML); also the first positional argument")
      ("state-dir", po::value<std::string>(), "RocksDB state directory (overrides checkpoint.dir of the spec)")
      ("stop-at-end", "stop (after a final checkpoint) once every partition reaches the log end offset it had at start")
      ("max-rate", po::value<double>(&out->run.max_rate)->default_value(0), "cap on records per second of this process, e.g. so a replay never starves the live version (0: no cap; `kappa throttle --max-rate` caps a whole scaled-out version)")
      ("archive", po::value<std::string>(&out->run.archive_dir), "log archive (kappa archive) to read each partition from up to its archived end, then Kafka (overrides source.archive)")
      ("parallelism", po::value<int>(), "worker threads running partitions in parallel, from the archive and from Kafka, 1..256 (default: the spec's parallelism, else 1)")
      ("scale-out", "join the version's consumer group and share its partitions with the other processes of the version (as the spec's scale_out: true); state moves through the changelog topic <job>.v<N>.changelog")
      ("instance", po::value<std::string>(), "this process's name in a scaled-out version (default: host name and a hash of the state directory; stable across restarts)")
      ("reset-state", "start over: delete the files kappa created in the state directory (RocksDB's files, its epoch marker, metrics.json; nothing else) and process from the spec's start position. Without it a damaged state directory is an error")
      ("state-headroom-mib", po::value<int64_t>(&out->run.state_headroom_mib)->default_value(64), "free space each checkpoint needs in the state directory, in MiB (also at least twice the last checkpoint); below it the job stops with an error before RocksDB runs out (0: only the 2x rule)")
      ("status-interval-ms", po::value<int>(&out->run.status_interval_ms)->default_value(default_status_interval_ms), "print a status line this often (0: never)");
  AddMetricsOptions(desc);
  AddKafkaOptions(desc);
  positional.add("spec", 1);
}

Status CheckMaxRate(double max_rate) {
  if (max_rate == 0 || (max_rate >= 1 && max_rate <= 1e9)) return Status::OK();
  return Status::InvalidArgument("--max-rate must be 0 (no cap) or from 1 to 1000000000 records per second");
}

Status LoadJob(const po::variables_map& vm, JobOptions* options, JobSpec* spec, KafkaConfig* config) {
  RunOptions& run = options->run;
  KAPPA_RETURN_IF_ERROR(CheckMaxRate(run.max_rate));
  if (run.status_interval_ms < 0) return Status::InvalidArgument("--status-interval-ms must not be negative");
  if (!run.metrics_file.empty()) KAPPA_RETURN_IF_ERROR(CheckWritableFile(run.metrics_file, "--metrics-file"));
  run.parallelism = 0;  // the spec's
  if (vm.count("parallelism")) {
    const int n = vm["parallelism"].as<int>();
    if (n < 1 || n > 256) {
      return Status::InvalidArgument("--parallelism must be between 1 and 256, not " + std::to_string(n));
    }
    run.parallelism = n;
  }
  run.stop_at_end = vm.count("stop-at-end") > 0;
  run.reset_state = vm.count("reset-state") > 0;
  if (run.state_headroom_mib < 0 || run.state_headroom_mib > (int64_t{1} << 30)) {
    return Status::InvalidArgument("--state-headroom-mib must be between 0 and 1073741824, not " +
                                   std::to_string(run.state_headroom_mib));
  }
  KAPPA_RETURN_IF_ERROR(KafkaConfigFromOptions(vm, config));
  auto loaded = LoadJobSpec(options->spec_path);
  if (!loaded.ok()) return loaded.status();
  *spec = std::move(*loaded);
  if (vm.count("state-dir")) spec->state_dir = vm["state-dir"].as<std::string>();
  if (vm.count("scale-out")) spec->scale_out.enabled = true;
  if (vm.count("instance")) {
    const std::string name = vm["instance"].as<std::string>();
    if (name.empty() || name.size() > 100 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos) {
      return Status::InvalidArgument("--instance must be 1..100 letters, digits, '.', '_' or '-', not '" + name + "'");
    }
    if (IsReservedInstanceName(name)) {
      return Status::InvalidArgument("--instance " + name + ": a name beginning with stage<digits> is kappa's (the "
                                     "second stage of a repartitioned version adds .stage1 before the instance in "
                                     "its transactional id); choose another");
    }
    if (!spec->scale_out.enabled) {
      return Status::InvalidArgument("--instance names a process of a scaled-out version: add --scale-out (or "
                                     "scale_out: true in the spec)");
    }
    spec->scale_out.instance = name;
  }
  // Before anything is registered or created: deploy and replay made the
  // version's table and view and registered the version (shown by status
  // as never running), then the runtime refused (a bug bash).
  if (spec->scale_out.enabled && spec->postgres()) {
    return Status::InvalidArgument("scale_out with a PostgreSQL sink is not supported yet: run one process");
  }
  if (spec->scale_out.enabled && spec->scale_out.instance.empty()) {
    spec->scale_out.instance = DefaultInstanceName(spec->state_dir);
  }
  return Status::OK();
}

void PrintSinkRejected(const std::string& command, const RunSummary& summary, const JobSpec& spec) {
  if (summary.sink_rejected <= 0) return;
  std::printf("kappa %s: of those outputs, PostgreSQL refused %lld rows this run: they are in %s as SinkRejected "
              "(kappa dlq show %s), not in the table\n",
              command.c_str(), static_cast<long long>(summary.sink_rejected), spec.dlq_topic.c_str(),
              spec.dlq_topic.c_str());
}

}  // namespace kappa::cli
