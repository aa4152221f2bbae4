#include "cli/command.h"

#include <unistd.h>

#include <csignal>
#include <iostream>

namespace po = boost::program_options;

namespace kappa::cli {

void AddKafkaOptions(po::options_description& desc) {
  desc.add_options()
      ("brokers,b", po::value<std::string>(), "Kafka bootstrap servers HOST:PORT[,HOST:PORT...] (a real cluster, or the address `kappa broker` prints)")
      ("property,X", po::value<std::vector<std::string>>()->composing(),
       "librdkafka property key=value, passed through as kcat does (repeatable), e.g. -X security.protocol=SASL_SSL");
}

Status KafkaConfigFromOptions(const po::variables_map& vm, KafkaConfig* out) {
  if (vm.count("brokers")) out->brokers = vm["brokers"].as<std::string>();
  if (vm.count("property")) {
    for (const auto& kv : vm["property"].as<std::vector<std::string>>()) {
      KAPPA_RETURN_IF_ERROR(out->AddProperty(kv));
    }
  }
  return Status::OK();
}

int ParseOrExit(int argc, char** argv, const std::string& command, const std::string& usage,
                const po::options_description& desc, const po::positional_options_description* positional,
                po::variables_map& vm) {
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << std::endl;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "kappa " << command << ": " << e.what() << " (see `kappa " << command << " --help`)"
              << std::endl;
    return 2;
  }
  return -1;
}

int Fail(const std::string& command, const Status& status) {
  std::cerr << "kappa " << command << ": " << status.ToString() << std::endl;
  return status.code() == Status::Code::kInvalidArgument ? 2 : 1;
}

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

namespace {
StopSource g_stop;
void OnSignal(int) { g_stop.RequestStop(); }
}  // namespace

StopToken InstallStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return StopToken(g_stop);
}

}  // namespace kappa::cli
