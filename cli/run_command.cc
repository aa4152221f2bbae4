// kappa run: runs one version of a job (a job spec file) over its source.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "cli/progress_printer.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"

namespace po = boost::program_options;

namespace kappa::cli {

int RunCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string spec_path;
  RunOptions options;
  desc.add_options()
      ("help,h", "show this help")
      ("spec", po::value<std::string>(&spec_path)->required(), "job spec file (YAML); also the first positional argument")
      ("state-dir", po::value<std::string>(), "RocksDB state directory (overrides checkpoint.dir of the spec)")
      ("stop-at-end", "stop (after a final checkpoint) once every partition reaches the log end offset it had at start")
      ("max-rate", po::value<double>(&options.max_rate)->default_value(0), "cap on records per second (0: no cap)")
      ("archive", po::value<std::string>(&options.archive_dir), "log archive (kappa archive) to read each partition from up to its archived end, then Kafka (overrides source.archive)")
      ("archive-only", "read only the archive, up to its end, then stop (no Kafka source needed)")
      ("parallelism", po::value<int>(&options.parallelism)->default_value(0), "worker threads replaying archived partitions in parallel (0: the spec's parallelism, default 1)")
      ("status-interval-ms", po::value<int>(&options.status_interval_ms)->default_value(5000), "print a status line this often (0: never)")
      ("metrics-file", po::value<std::string>(&options.metrics_file), "where to write metrics JSON (default <state dir>/metrics.json)")
      ("print-spec-hash", "print the spec hash and exit");
  AddKafkaOptions(desc);
  po::positional_options_description positional;
  positional.add("spec", 1);
  const std::string usage =
      "usage: kappa run JOB_SPEC --brokers HOST:PORT [options]\n\n"
      "Runs one version of a job: restores its state and input offsets from RocksDB (or starts\n"
      "where the spec says), processes the source topic, writes results to <sink>.v<version>,\n"
      "bad records to the DLQ topic and late ones to the late topic, and checkpoints state and\n"
      "offsets atomically. SIGINT/SIGTERM take a final checkpoint and exit 0. A restart with a\n"
      "different spec under the same version is refused: a logic change is a new version.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "run", usage, desc, &positional, vm); rc >= 0) return rc;
  auto spec = LoadJobSpec(spec_path);
  if (!spec.ok()) return Fail("run", spec.status());
  if (vm.count("print-spec-hash")) {
    std::printf("%s\n", spec->spec_hash.c_str());
    return 0;
  }
  if (vm.count("state-dir")) spec->state_dir = vm["state-dir"].as<std::string>();
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("run", st);
  if (options.max_rate < 0) return Fail("run", Status::InvalidArgument("--max-rate must not be negative"));
  options.stop_at_end = vm.count("stop-at-end") > 0;
  options.archive_only = vm.count("archive-only") > 0;
  if (options.parallelism < 0 || options.parallelism > 256) {
    return Fail("run", Status::InvalidArgument("--parallelism must be between 1 and 256"));
  }
  options.on_status = StatusPrinter("kappa run " + spec->job + " v" + std::to_string(spec->version), true);
  options.on_note = NotePrinter("kappa run");
  StopToken stop = InstallStopSignals();
  JobRunner runner(*spec, config, options);
  Status st = runner.Run(stop);
  if (!st.ok()) return Fail("run", st);
  const auto& s = runner.summary();
  std::printf("kappa run: %s v%d stopped cleanly after %lld checkpoints: in %lld = out %lld + deduped %lld + "
              "filtered %lld + late %lld + dlq %lld; %lld outputs to %s\n",
              spec->job.c_str(), spec->version, static_cast<long long>(s.epochs),
              static_cast<long long>(s.counters.in), static_cast<long long>(s.counters.out),
              static_cast<long long>(s.counters.deduped), static_cast<long long>(s.counters.filtered),
              static_cast<long long>(s.counters.late), static_cast<long long>(s.counters.dlq),
              static_cast<long long>(s.counters.outputs), spec->OutputTopic().c_str());
  if (s.archive_records > 0) {
    std::printf("kappa run: %lld records came from the archive, %lld from Kafka\n",
                static_cast<long long>(s.archive_records), static_cast<long long>(s.counters.in - s.archive_records));
  }
  return 0;
}

}  // namespace kappa::cli
