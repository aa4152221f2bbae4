// Test support shared by the integration suites: an embedded broker per test
// (librdkafka mock cluster on free loopback ports, stopped when the fixture
// ends), unique scratch directories, and a child-process helper for running
// the real `kappa` binary (so crash tests can kill -9 it).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/test_hooks.h"
#include "kafka/embedded_broker.h"
#include "kafka/kafka_config.h"

// The crash tests steer kill -9 through test hooks (base/test_hooks.h),
// which exist only in builds with KAPPA_TEST_HOOKS (scripts/test.sh builds
// one); elsewhere they skip, saying why.
#define KAPPA_REQUIRE_TEST_HOOKS()                                                                   \
  do {                                                                                               \
    if (!KAPPA_TEST_HOOKS_ENABLED) GTEST_SKIP() << "needs a build with -DKAPPA_TEST_HOOKS=ON (scripts/test.sh)"; \
  } while (0)

namespace kappa::testing {

// A fresh directory under the build tree, unique per test and process,
// removed by the destructor unless KAPPA_KEEP_TMP is set.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& child) const { return (path_ / child).string(); }

 private:
  std::filesystem::path path_;
};

class RealKafka;

// Fixture: a one-broker cluster for the test's lifetime, started on free
// loopback ports and stopped at the end. Which broker is the parameter of the
// end-to-end stories: the embedded broker (librdkafka's mock cluster) by
// default, a real Apache Kafka (scripts/kafka.sh, a node of its own per test)
// when the environment says KAPPA_TEST_BROKER=real (tests/e2e registers every
// story both ways).
class BrokerTest : public ::testing::Test {
 public:
  BrokerTest();
  ~BrokerTest() override;

 protected:
  void SetUp() override;
  void TearDown() override;
  // topic_configs apply on a real broker only (the embedded one has none).
  void CreateTopic(const std::string& name, int partitions,
                   const std::map<std::string, std::string>& topic_configs = {});
  KafkaConfig Config() const;
  const std::string& bootstrap() const { return bootstrap_; }
  bool real_broker() const { return real_ != nullptr; }
  // Retention took the older records of topic[partition]: on the embedded
  // broker a story produces more than its 5 MiB, which drops the oldest by
  // itself (nothing to do here); on a real broker this moves the log start
  // to the middle of what is there (DeleteRecords), as retention would.
  void ExpireOldestRecords(const std::string& topic, int32_t partition);
  // Only on the embedded broker (null on a real one): its mock cluster, for
  // stories that inject broker errors.
  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<RealKafka> real_;

 private:
  std::unique_ptr<ScratchDir> real_dir_;
  std::string bootstrap_;
};

// Whether this test process runs its stories on a real Kafka (KAPPA_TEST_BROKER=real).
bool WantRealBroker();

// The real kappa binary, run as a child process with stdout/stderr sent to
// files. Killed with SIGKILL by the destructor if still running.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> args, const std::string& log_prefix);
  ~ChildProcess();
  pid_t pid() const { return pid_; }
  // Waits for exit; returns the exit code, or 128+signal.
  int Wait();
  // Waits up to timeout_ms; returns -1 if still running.
  int WaitFor(int timeout_ms);
  void Kill(int signal);
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string out_path_, err_path_;
};

// Runs kappa to completion and returns its exit code; output in *out/*err.
int RunKappa(const std::vector<std::string>& args, std::string* out = nullptr, std::string* err = nullptr,
             const std::string& log_prefix = "");

std::string ReadFile(const std::string& path);

// Runs a shell command (callers wrap it in `timeout`) and returns its stdout.
std::string RunShell(const std::string& command);

// Whether something accepts TCP connections on 127.0.0.1:port.
bool CanConnect(int port);
// A TCP port on 127.0.0.1 that nothing listens on just now (-1 if none
// could be had), for a server a test starts on a fixed port.
int FreePort();

// A small file system of the test's own for the full-disk stories: a tmpfs
// mounted at `dir` (created) with `options` ("size=2m", "nr_inodes=64"),
// detached by the destructor (declare it after the ScratchDir holding
// `dir`). Where the process may not mount (needs root or CAP_SYS_ADMIN),
// mounted() is false and why() says so: the test skips with it.
class SmallFileSystem {
 public:
  SmallFileSystem(const std::string& dir, const std::string& options);
  ~SmallFileSystem();
  SmallFileSystem(const SmallFileSystem&) = delete;
  SmallFileSystem& operator=(const SmallFileSystem&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  // New options for the mounted file system (e.g. a larger size), read-only
  // or not; "" or why not.
  std::string Remount(const std::string& options, bool read_only = false);
  // Bytes an unprivileged writer may still use, -1 if unknown.
  int64_t FreeBytes() const;

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace kappa::testing
