#include "cli/command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "base/config_node.h"
#include "cli/progress_printer.h"
#include "kafka/kafka_client.h"

namespace po = boost::program_options;

namespace kappa::cli {

void AddKafkaOptions(po::options_description& desc) {
  desc.add_options()
      ("brokers,b", po::value<std::string>(), "Kafka bootstrap servers HOST:PORT[,HOST:PORT...] (a real cluster, or the address `kappa broker` prints)")
      ("property,X", po::value<std::vector<std::string>>()->composing(),
       "librdkafka property key=value, passed through as kcat does (repeatable), e.g. -X security.protocol=SASL_SSL; "
       "a value @env:VAR or @file:PATH is read from there, e.g. -X sasl.password=@env:KAFKA_PASSWORD")
      ("config-file,F", po::value<std::vector<std::string>>()->composing(),
       "file of librdkafka properties, one key=value per line, # comments (as kcat -F); -X wins over it");
}

Status KafkaConfigFromOptions(const po::variables_map& vm, KafkaConfig* out) {
  if (vm.count("brokers")) out->brokers = vm["brokers"].as<std::string>();
  if (vm.count("config-file")) {
    for (const auto& path : vm["config-file"].as<std::vector<std::string>>()) {
      KAPPA_RETURN_IF_ERROR(out->AddPropertiesFromFile(path));
    }
  }
  if (vm.count("property")) {
    for (const auto& kv : vm["property"].as<std::vector<std::string>>()) {
      KAPPA_RETURN_IF_ERROR(out->AddProperty(kv));
    }
  }
  return Status::OK();
}

Status CheckWritableFile(const std::string& path, const std::string& flag) {
  auto refuse = [&](const std::string& why) { return Status::InvalidArgument(flag + " " + path + ": " + why); };
  if (path.empty()) return Status::InvalidArgument(flag + " is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return refuse("is a directory, not a file");
    // Opened for appending: nothing is truncated.
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return refuse(std::string("cannot be written: ") + std::strerror(errno));
    ::close(fd);
    return Status::OK();
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return refuse("directory " + dir.string() + " does not exist");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return refuse("directory " + dir.string() + " is not writable: " + std::strerror(errno));
  }
  // access() says yes to root anywhere: `--metrics-file /proc/x` passed
  // here, and the job failed at its first checkpoint, after reading (a bug
  // bash). Created and removed again: the file did not exist.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return Status::OK();  // made meanwhile: checked at its first write
    return refuse(std::string("cannot be created: ") + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(path.c_str());
  return Status::OK();
}

int ParseOrExit(int argc, char** argv, const std::string& command, const std::string& usage,
                const po::options_description& desc, const po::positional_options_description* positional,
                po::variables_map& vm) {
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    // A command without positional arguments refuses stray words: `archive
    // -t A B` archived A alone and dropped B without a word (a bug bash).
    const po::positional_options_description none;
    parser.positional(positional ? *positional : none);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << std::endl;
      return 0;
    }
    po::notify(vm);
  } catch (const po::required_option& e) {
    // A missing positional argument was named as an option (`kappa run`:
    // "the option '--spec' is required", where the usage writes JOB_SPEC
    // without a flag: a bug bash).
    std::string name = e.get_option_name();
    while (!name.empty() && name.front() == '-') name.erase(0, 1);
    bool is_positional = false;
    for (unsigned i = 0; positional && i < std::min(positional->max_total_count(), 4u); ++i) {
      is_positional = is_positional || positional->name_for_position(i) == name;
    }
    const std::string first_line = usage.substr(0, usage.find('\n'));
    if (is_positional) {
      std::cerr << "kappa " << command << ": the " << name << " argument is missing (" << first_line << ")"
                << std::endl;
    } else {
      std::cerr << "kappa " << command << ": " << e.what() << " (see `kappa " << command << " --help`)" << std::endl;
    }
    return 2;
  } catch (const po::error& e) {
    std::cerr << "kappa " << command << ": " << e.what() << " (see `kappa " << command << " --help`)"
              << std::endl;
    return 2;
  }
  return -1;
}

int Fail(const std::string& command, const Status& status) {
  FlushStderrLines();  // the notes before it come first
  std::cerr << "kappa " << command << ": " << status.ToString() << std::endl;
  return status.code() == Status::Code::kInvalidArgument ? 2 : 1;
}

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

namespace {
StopSource g_stop;
std::atomic<int> g_signals{0};

void WriteStderr(const char* text) {
  ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void OnSignal(int) {
  if (g_signals.fetch_add(1, std::memory_order_relaxed) > 0) {
    // A second request: the user will not wait (async-signal-safe).
    WriteStderr("kappa: a second stop signal: exiting at once, as a crash would (the last durable checkpoint is "
                "intact; the next start resumes from it)\n");
    ::_exit(130);
  }
  g_stop.RequestStop();
}

// A stop must end in a bounded time whatever the brokers or the database do:
// some waits are inside librdkafka with no timeout (a transaction's commit
// while the cluster has lost its quorum). After the grace, the process exits
// as a crash would, which every checkpoint is made to survive.
void StopWatchdog(int64_t grace_ms) {
  while (!g_stop.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(grace_ms));
  // What it waits for: with every broker answering, a bug bash read "a
  // broker that does not answer" while librdkafka's own teardown was stuck.
  const char* cause = KafkaTeardownInProgress()
                          ? "the teardown of a Kafka client (librdkafka's rd_kafka_destroy) has not finished"
                          : "a broker or database that does not answer";
  char text[512];
  const int n = std::snprintf(text, sizeof(text),
                              "kappa: still stopping %lld s after the stop request (%s); exiting now, as a crash "
                              "would: the last durable checkpoint is intact and the next start resumes from it "
                              "(KAPPA_STOP_GRACE_MS sets this wait)\n",
                              static_cast<long long>(grace_ms / 1000), cause);
  // Without waiting on stderr: a pipe nobody reads held the watchdog in
  // fprintf, and the process never exited (a bug bash).
  const int flags = ::fcntl(STDERR_FILENO, F_GETFL);
  if (flags >= 0) ::fcntl(STDERR_FILENO, F_SETFL, flags | O_NONBLOCK);
  if (n > 0) (void)!::write(STDERR_FILENO, text, std::min<size_t>(static_cast<size_t>(n), sizeof(text) - 1));
  ::_exit(1);
}
}  // namespace

StopToken InstallStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A hang-up (a closed terminal, a dropped ssh session) stops as SIGTERM
  // does: it killed the job as kill -9 would, and the restart wrote the
  // outputs since the last checkpoint again (a bug bash). Under nohup it
  // stays ignored.
  struct sigaction hup {};
  if (sigaction(SIGHUP, nullptr, &hup) == 0 && hup.sa_handler != SIG_IGN) sigaction(SIGHUP, &sa, nullptr);
  static std::once_flag watchdog;
  std::call_once(watchdog, [] {
    int64_t grace_ms = 20000;
    if (const char* env = std::getenv("KAPPA_STOP_GRACE_MS")) {
      // Milliseconds, or a duration ("30s"): atoll read "30s" as 30 ms, and
      // every stop that took longer became a crash-exit (a bug bash).
      char* end = nullptr;
      const long long ms = std::strtoll(env, &end, 10);
      auto duration = ParseDurationMs(env);
      if (end != env && *end == '\0' && ms >= 0) {
        grace_ms = std::max<int64_t>(100, ms);
      } else if (duration.ok()) {
        grace_ms = std::max<int64_t>(100, *duration);
      } else {
        std::fprintf(stderr, "kappa: KAPPA_STOP_GRACE_MS=%s is neither milliseconds nor a duration (30s, 2m): "
                             "using 20 s\n", env);
      }
    }
    std::thread(StopWatchdog, grace_ms).detach();
  });
  ProcessStopToken() = StopToken(g_stop);
  return StopToken(g_stop);
}

}  // namespace kappa::cli
