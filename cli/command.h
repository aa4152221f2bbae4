// The kappa CLI's subcommands. Each takes its own argv (argv[0] is the
// command name), parses it with Boost.Program_options, and returns the
// process exit code: 0 success, 1 failure at run time, 2 bad usage. Every
// failure is one line on stderr saying what went wrong and what to do.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/stop_token.h"
#include "kafka/kafka_config.h"

namespace kappa::cli {

int BrokerCommand(int argc, char** argv);
int GenCommand(int argc, char** argv);
int ConsumeCommand(int argc, char** argv);
int RunCommand(int argc, char** argv);
int DeployCommand(int argc, char** argv);
int ReplayCommand(int argc, char** argv);
int StatusCommand(int argc, char** argv);
int PromoteCommand(int argc, char** argv);
int RollbackCommand(int argc, char** argv);
int RetireCommand(int argc, char** argv);
int ThrottleCommand(int argc, char** argv);
int GetCommand(int argc, char** argv);
int ArchiveCommand(int argc, char** argv);
int SchemaCommand(int argc, char** argv);
int DlqCommand(int argc, char** argv);

// --brokers and -X key=value, shared by every command that talks to Kafka.
void AddKafkaOptions(boost::program_options::options_description& desc);
Status KafkaConfigFromOptions(const boost::program_options::variables_map& vm, KafkaConfig* out);

// InvalidArgument "<flag> <path>: ..." unless `path` can be opened for
// writing (its directory exists and is writable, it is not a directory).
// Creates nothing and truncates nothing. For output files given on the
// command line (--metrics-file), checked at start rather than failing in
// silence at the first write.
Status CheckWritableFile(const std::string& path, const std::string& flag);

// Parses argv into vm. Returns -1 to go on, or the exit code to return now
// (0 after printing --help, 2 after a usage error).
int ParseOrExit(int argc, char** argv, const std::string& command, const std::string& usage,
                const boost::program_options::options_description& desc,
                const boost::program_options::positional_options_description* positional,
                boost::program_options::variables_map& vm);

// Prints "kappa <command>: <status>" and returns 1.
int Fail(const std::string& command, const Status& status);

// True when stderr is a terminal (progress lines are redrawn in place).
bool StderrIsTerminal();

// Installs SIGINT/SIGTERM (and SIGHUP, unless ignored) handlers that set the
// returned flag. A process
// still running 20 s after the first (KAPPA_STOP_GRACE_MS), or at a second
// signal, exits at once, as a crash would (exit 1, or 130 for the second).
StopToken InstallStopSignals();

}  // namespace kappa::cli
