// kappa run: runs one version of a job (a job spec file) over its source.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "base/test_hooks.h"
#include "cli/command.h"
#include "cli/metrics_endpoint.h"
#include "cli/job_options.h"
#include "cli/progress_printer.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"

namespace po = boost::program_options;

namespace kappa::cli {

int RunCommand(int argc, char** argv) {
  po::options_description desc("options");
  po::positional_options_description positional;
  JobOptions job;
  desc.add_options()("help,h", "show this help");
  AddJobOptions(desc, positional, &job, 5000);
  RunOptions& options = job.run;
  desc.add_options()
      ("archive-only", "read only the archive, up to its end, then stop (no Kafka source read; --brokers still names where the outputs, DLQ and late records go)")
      ("final-watermark", "with --stop-at-end or --archive-only: at the end of the input, advance event time to its end so every open window is emitted, as a batch job would (the version's input is then over: later records are late)")
      ("metrics-file", po::value<std::string>(&options.metrics_file), "where to write metrics JSON (default <state dir>/metrics.json)")
      ("print-spec-hash", "print the spec hash and exit");
  const std::string usage =
      "usage: kappa run JOB_SPEC --brokers HOST:PORT [options]\n\n"
      "Runs one version of a job: restores its state and input offsets from RocksDB (or starts\n"
      "where the spec says), processes the source topic, writes results to <sink>.v<version>,\n"
      "bad records to the DLQ topic and late ones to the late topic, and checkpoints state and\n"
      "offsets atomically. SIGINT/SIGTERM/SIGHUP take a final checkpoint and exit 0. A restart with a\n"
      "different spec under the same version is refused: a logic change is a new version.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "run", usage, desc, &positional, vm); rc >= 0) return rc;
  JobSpec spec_value;
  KafkaConfig config;
  if (Status st = LoadJob(vm, &job, &spec_value, &config); !st.ok()) return Fail("run", st);
  const JobSpec* spec = &spec_value;
  if (vm.count("print-spec-hash")) {
    std::printf("%s\n", spec->spec_hash.c_str());
    return 0;
  }
  options.archive_only = vm.count("archive-only") > 0;
  options.final_watermark = vm.count("final-watermark") > 0;
  if (options.final_watermark && !options.stop_at_end && !options.archive_only) {
    return Fail("run", Status::InvalidArgument("--final-watermark ends the input, so it needs a bounded run: "
                                               "add --stop-at-end or --archive-only"));
  }
  JobEndpoint endpoint;
  if (Status st = StartJobEndpoint(vm, *spec, "run", &endpoint); !st.ok()) return Fail("run", st);
  options.metrics = endpoint.metrics.get();
  options.on_status = StatusPrinter("kappa run " + spec->job + " v" + std::to_string(spec->version), true);
  options.on_note = NotePrinter("kappa run");
  // The error is printed when the run knows it, before its teardown (which
  // librdkafka can make wait): not after Run returns.
  int failed_rc = -1;
  options.on_error = [&failed_rc](const Status& st) { failed_rc = Fail("run", st); };
  StopToken stop = InstallStopSignals();
#if KAPPA_TEST_HOOKS_ENABLED
  // KAPPA_TEST_ALLOCATE_GIB=N (test builds): one allocation of N GiB before
  // the job starts, as a job whose state outgrows a memory limit would make
  // one that fails (cli/main.cc's out-of-memory handler).
  if (const char* gib = std::getenv("KAPPA_TEST_ALLOCATE_GIB")) {
    auto* block = new char[static_cast<size_t>(std::atoll(gib)) << 30];
    block[0] = 1;
    delete[] block;
  }
#endif
  JobRunner runner(*spec, config, options);
  Status st = runner.Run(stop);
  if (!st.ok()) return failed_rc >= 0 ? failed_rc : Fail("run", st);
  const auto& s = runner.summary();
  if (s.stopped_restoring) {
    std::printf("kappa run: %s v%d stopped while restoring its state, before processing any record: the last "
                "checkpoint is as it was, and the next start restores it again\n",
                spec->job.c_str(), spec->version);
    return 0;
  }
  if (!s.stopped_waiting.empty()) {
    std::printf("kappa run: %s v%d %s: no final checkpoint (the records waiting for it were not processed); the "
                "last checkpoint is intact, and the next start reads on from it\n",
                spec->job.c_str(), spec->version, s.stopped_waiting.c_str());
    return 0;
  }
  if (s.stage2) {
    // A scaled-out repartitioned job: each stage's own account.
    const RecordCounters& c = s.counters;
    const RecordCounters& d = *s.stage2;
    std::printf("kappa run: %s v%d stopped cleanly after %lld checkpoints: this process's partitions of %s: in "
                "%lld = repartitioned %lld + deduped %lld + filtered %lld + late %lld + dlq %lld\n",
                spec->job.c_str(), spec->version, static_cast<long long>(s.epochs), spec->source_topic.c_str(),
                static_cast<long long>(c.in), static_cast<long long>(c.out), static_cast<long long>(c.deduped),
                static_cast<long long>(c.filtered), static_cast<long long>(c.late), static_cast<long long>(c.dlq));
    std::printf("kappa run: its partitions of %s (from every process): in %lld = out %lld + deduped %lld + "
                "filtered %lld + late %lld + dlq %lld; %lld outputs to %s\n",
                spec->RepartitionTopic(1).c_str(), static_cast<long long>(d.in), static_cast<long long>(d.out),
                static_cast<long long>(d.deduped), static_cast<long long>(d.filtered),
                static_cast<long long>(d.late), static_cast<long long>(d.dlq), static_cast<long long>(d.outputs),
                spec->OutputName().c_str());
  } else {
    std::printf("kappa run: %s v%d stopped cleanly after %lld checkpoints: in %lld = out %lld + deduped %lld + "
                "filtered %lld + late %lld + dlq %lld; %lld outputs to %s\n",
                spec->job.c_str(), spec->version, static_cast<long long>(s.epochs),
                static_cast<long long>(s.counters.in), static_cast<long long>(s.counters.out),
                static_cast<long long>(s.counters.deduped), static_cast<long long>(s.counters.filtered),
                static_cast<long long>(s.counters.late), static_cast<long long>(s.counters.dlq),
                static_cast<long long>(s.counters.outputs), spec->OutputName().c_str());
  }
  PrintSinkRejected("run", s, *spec);
  if (s.epochs > 0) {
    std::printf("kappa run: checkpoints stalled processing %.0f ms in total (mean %.0f ms, max %.0f ms), of which "
                "%.0f ms waiting for the sink (%s) and %.0f ms (max %.0f ms) for room behind the state writer; the "
                "longest state capture %.0f ms; %.1f s in all\n",
                s.checkpoint_total_ms, s.checkpoint_total_ms / static_cast<double>(s.epochs), s.checkpoint_max_ms,
                s.flush_total_ms,
                spec->postgres()                                ? "the database transaction"
                : spec->delivery == DeliveryMode::kExactlyOnce ? "Kafka transaction commits"
                                                                : "Kafka acks",
                s.writer_wait_total_ms, s.writer_wait_max_ms, s.capture_max_ms, s.seconds);
  }
  if (s.archive_records > 0) {
    // Of this run's records: counters.in also counts those of the runs
    // before it (restored with the checkpoint), none of which came from
    // Kafka in this one.
    std::printf("kappa run: %lld records came from the archive, %lld from Kafka\n",
                static_cast<long long>(s.archive_records),
                static_cast<long long>(std::max<int64_t>(0, s.records_this_run - s.archive_records)));
  }
  return 0;
}

}  // namespace kappa::cli
