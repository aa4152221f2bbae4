// The options `kappa run`, `deploy` and `replay` share: the job spec (also
// the first positional argument), --state-dir, --archive, --parallelism,
// --max-rate, --stop-at-end, --reset-state, --state-headroom-mib,
// --status-interval-ms and the Kafka options;
// and loading and validating them in one place.
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "base/status.h"
#include "engine/job_runner.h"
#include "engine/job_spec.h"
#include "kafka/kafka_config.h"

namespace kappa::cli {

struct JobOptions {
  std::string spec_path;
  RunOptions run;  // max_rate, archive_dir, parallelism, stop_at_end, reset_state, state_headroom_mib, status_interval_ms
};

// Declares the shared options in desc (bound to *out, which must outlive the
// parse) and the spec as the first positional argument.
void AddJobOptions(boost::program_options::options_description& desc,
                   boost::program_options::positional_options_description& positional, JobOptions* out,
                   int default_status_interval_ms);

// Checks the shared flags (InvalidArgument, exit 2, before anything is read),
// then loads the spec (applying --state-dir) and the Kafka configuration.
// --max-rate's rule, for run/deploy/replay and throttle: 0 (no cap), or
// from 1 to a billion records per second. A fraction showed as "0" (no cap)
// while the process capped at 1; 1e19 overflowed the process's int64 cap.
Status CheckMaxRate(double max_rate);

// After a run's summary line: the output rows the PostgreSQL sink's database
// refused this run (in the DLQ as SinkRejected), if any.
void PrintSinkRejected(const std::string& command, const RunSummary& summary, const JobSpec& spec);

Status LoadJob(const boost::program_options::variables_map& vm, JobOptions* options, JobSpec* spec,
               KafkaConfig* config);

}  // namespace kappa::cli
