// kappa: the command-line entry point. Dispatches to one subcommand.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <string>

#include "cli/command.h"
#include "cli/progress_printer.h"

namespace {

const char kUsage[] =
    "kappa: a Kappa-style replayable log processor\n"
    "\n"
    "usage: kappa COMMAND [options]    (kappa COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  broker    run the embedded Kafka-protocol broker (in memory, for development and tests)\n"
    "  gen       generate the deterministic fintech transaction workload into a topic or a record file\n"
    "  archive   keep a topic's history in a durable log archive; import, list and dump archives\n"
    "  consume   read a topic back: per-partition counts, optionally each record as JSON\n"
    "  dlq       triage a dead-letter topic (stats, show) and re-inject its records after a fix (replay)\n"
    "  run       run one version of a job (a YAML job spec) over its source topic\n"
    "  deploy    register a version of a job and run it live\n"
    "  replay    start a new version from offset zero beside the running one\n"
    "  status    show every version of every job: state, lag, rate, serving alias\n"
    "  promote   switch a job's serving alias to a caught-up version (with an output diff)\n"
    "  rollback  make the previously serving version serve again\n"
    "  throttle  change a running version's rate cap, pause or resume it\n"
    "  retire    stop a version; its state is deleted after a retention time\n"
    "  get       read the latest output for a key from the serving version\n"
    "  schema    print the schema (Avro, .fbs or JSON columns) of a job's feature rows\n";

// An allocation that fails (a memory limit: ulimit -v, a container's)
// would throw std::bad_alloc from whichever thread asked, which nothing
// catches: an abort and a core dump (a bug bash). Said plainly instead, and
// the process exits as a crash would, which every checkpoint survives.
// Only async-signal-safe calls: nothing here may allocate.
void OutOfMemory() {
  static const char kMessage[] =
      "kappa: out of memory: an allocation failed. A job holds its state (dedup keys, open windows) in memory, "
      "about 250 bytes a key: give the process more memory, shorten the dedup TTL or the windows, or split the "
      "job across processes (scale_out). Nothing is lost: the next start resumes from the last durable "
      "checkpoint.\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  ::_exit(1);
}

// The open-files limit's soft value up to its hard one (as servers do): a
// job holds RocksDB's files and a socket per broker and client, and the
// usual soft 1024 is far below what the hard limit allows.
void RaiseFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 1 << 20);
  (void)::setrlimit(RLIMIT_NOFILE, &limit);
}

int Dispatch(const std::string& command, int argc, char** argv) {
  if (command == "broker") return kappa::cli::BrokerCommand(argc - 1, argv + 1);
  if (command == "gen") return kappa::cli::GenCommand(argc - 1, argv + 1);
  if (command == "consume") return kappa::cli::ConsumeCommand(argc - 1, argv + 1);
  if (command == "run") return kappa::cli::RunCommand(argc - 1, argv + 1);
  if (command == "deploy") return kappa::cli::DeployCommand(argc - 1, argv + 1);
  if (command == "replay") return kappa::cli::ReplayCommand(argc - 1, argv + 1);
  if (command == "status") return kappa::cli::StatusCommand(argc - 1, argv + 1);
  if (command == "promote") return kappa::cli::PromoteCommand(argc - 1, argv + 1);
  if (command == "rollback") return kappa::cli::RollbackCommand(argc - 1, argv + 1);
  if (command == "throttle") return kappa::cli::ThrottleCommand(argc - 1, argv + 1);
  if (command == "retire") return kappa::cli::RetireCommand(argc - 1, argv + 1);
  if (command == "get") return kappa::cli::GetCommand(argc - 1, argv + 1);
  if (command == "archive") return kappa::cli::ArchiveCommand(argc - 1, argv + 1);
  if (command == "schema") return kappa::cli::SchemaCommand(argc - 1, argv + 1);
  if (command == "dlq") return kappa::cli::DlqCommand(argc - 1, argv + 1);
  std::cerr << "kappa: unknown command '" << command << "' (see `kappa --help`)" << std::endl;
  return 2;
}

// What a command printed must have reached stdout: a full disk or a closed
// stdout left `consume --print`, `dlq show` and `archive --dump` with a
// truncated copy and exit 0 (a bug bash).
int CheckStdout(const std::string& command, int rc) {
  std::cout.flush();
  errno = 0;
  const bool failed = std::fflush(stdout) != 0 || std::ferror(stdout) || std::cout.fail();
  if (!failed) return rc;
  const int err = errno;
  std::fprintf(stderr, "kappa %s: cannot write its output: %s; what it printed is incomplete\n", command.c_str(),
               err ? std::strerror(err) : "write error");
  return rc == 0 ? 1 : rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::set_new_handler(OutOfMemory);
  RaiseFileLimit();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const int rc = Dispatch(command, argc, argv);
  kappa::cli::FlushStderrLines();
  return CheckStdout(command, rc);
}
