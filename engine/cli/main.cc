// kappa: the command-line entry point. Dispatches to one subcommand.
#include <cstring>
#include <iostream>
#include <string>

#include "engine/cli/command.h"

namespace {

const char kUsage[] =
    "kappa: a Kappa-style replayable log processor\n"
    "\n"
    "usage: kappa COMMAND [options]    (kappa COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  broker    run the embedded Kafka-protocol broker (in memory, for development and tests)\n"
    "  gen       generate the deterministic fintech transaction workload into a topic\n"
    "  consume   read a topic back: per-partition counts, optionally each record as JSON\n"
    "  run       run one version of a job (a YAML job spec) over its source topic\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "broker") return kappa::cli::BrokerCommand(argc - 1, argv + 1);
  if (command == "gen") return kappa::cli::GenCommand(argc - 1, argv + 1);
  if (command == "consume") return kappa::cli::ConsumeCommand(argc - 1, argv + 1);
  if (command == "run") return kappa::cli::RunCommand(argc - 1, argv + 1);
  std::cerr << "kappa: unknown command '" << command << "' (see `kappa --help`)" << std::endl;
  return 2;
}
