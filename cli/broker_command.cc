// kappa broker: runs the embedded broker until SIGINT/SIGTERM.
#include <unistd.h>

#include <iostream>

#include "cli/command.h"
#include "kafka/embedded_broker.h"

namespace po = boost::program_options;

namespace kappa::cli {

int BrokerCommand(int argc, char** argv) {
  po::options_description desc("options");
  desc.add_options()
      ("help,h", "show this help")
      ("broker-count", po::value<int>()->default_value(1), "number of mock brokers in the cluster")
      ("port,p", po::value<int>()->default_value(0), "fixed bootstrap port on 127.0.0.1 (0: ephemeral ports only)")
      ("topic,t", po::value<std::vector<std::string>>()->composing(), "topic to create, NAME:PARTITIONS (repeatable)")
      ("address-file", po::value<std::string>(), "also write the bootstrap address to this file once listening");
  const std::string usage = std::string("usage: kappa broker [options]\n\nRuns the ") +
                            EmbeddedBroker::Description() +
                            "\nPrints the bootstrap address, then runs until SIGINT, SIGTERM or SIGHUP (exit 0).";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "broker", usage, desc, nullptr, vm); rc >= 0) return rc;

  EmbeddedBroker::Options options;
  options.brokers = vm["broker-count"].as<int>();
  options.port = vm["port"].as<int>();
  if (vm.count("topic")) {
    for (const auto& t : vm["topic"].as<std::vector<std::string>>()) {
      auto spec = ParseTopicSpec(t);
      if (!spec.ok()) return Fail("broker", spec.status());
      for (const auto& earlier : options.topics) {
        if (earlier.name == spec->name) {
          return Fail("broker", Status::InvalidArgument("topic " + spec->name + " is given twice (--topic " + t + ")"));
        }
      }
      options.topics.push_back(*spec);
    }
  }
  StopToken stop = InstallStopSignals();
  auto broker = EmbeddedBroker::Start(options);
  if (!broker.ok()) return Fail("broker", broker.status());
  std::cerr << "kappa broker: " << EmbeddedBroker::Description() << "\n";
  for (const auto& t : options.topics) {
    std::cerr << "kappa broker: topic " << t.name << " with " << t.partitions << " partitions\n";
  }
  std::cerr << "kappa broker: listening; bootstrap address on stdout; stop with Ctrl-C" << std::endl;
  std::cout << (*broker)->bootstrap() << std::endl;
  if (vm.count("address-file")) {
    const std::string path = vm["address-file"].as<std::string>();
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f || std::fprintf(f, "%s\n", (*broker)->bootstrap().c_str()) < 0 || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), path.c_str()) != 0) {
      return Fail("broker", Status::IOError("cannot write address file " + path));
    }
  }
  while (!stop.stop_requested()) ::usleep(100000);
  std::cerr << "kappa broker: stopping" << std::endl;
  return 0;
}

}  // namespace kappa::cli
