#include "tests/support/test_support.h"

#include "tests/support/real_kafka.h"
#include "kafka/kafka_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace kappa::testing {

namespace {
std::atomic<int> g_counter{0};
}

ScratchDir::ScratchDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
  for (auto& c : test) {
    if (c == '/') c = '_';
  }
  path_ = std::filesystem::path(KAPPA_TEST_TMP) /
          (test + "." + name + "." + std::to_string(::getpid()) + "." + std::to_string(g_counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  if (!std::getenv("KAPPA_KEEP_TMP")) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

bool WantRealBroker() {
  const char* broker = std::getenv("KAPPA_TEST_BROKER");
  return broker && std::string(broker) == "real";
}

BrokerTest::BrokerTest() = default;
BrokerTest::~BrokerTest() = default;

void BrokerTest::SetUp() {
  if (WantRealBroker()) {
    real_dir_ = std::make_unique<ScratchDir>("kafka");
    auto kafka = RealKafka::Start(real_dir_->path().string());
    ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
    real_ = std::move(*kafka);
    bootstrap_ = real_->bootstrap();
    return;
  }
  EmbeddedBroker::Options options;
  auto broker = EmbeddedBroker::Start(options);
  ASSERT_TRUE(broker.ok()) << broker.status().ToString();
  broker_ = std::move(*broker);
  bootstrap_ = broker_->bootstrap();
}

void BrokerTest::TearDown() {
  broker_.reset();
  real_.reset();
  real_dir_.reset();
}

void BrokerTest::CreateTopic(const std::string& name, int partitions,
                             const std::map<std::string, std::string>& topic_configs) {
  if (real_) {
    Status st = CreateTopicAdmin(Config(), name, partitions, 0, topic_configs);
    ASSERT_TRUE(st.ok()) << st.ToString();
    return;
  }
  Status st = broker_->CreateTopic({name, partitions});
  ASSERT_TRUE(st.ok()) << st.ToString();
}

void BrokerTest::ExpireOldestRecords(const std::string& topic, int32_t partition) {
  if (!real_) return;
  auto consumer = CreateClient(ClientKind::kConsumer, Config(), {{"group.id", "expire-probe"}});
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  auto marks = QueryWatermarks(consumer->get(), topic, partition, 10000);
  ASSERT_TRUE(marks.ok()) << marks.status().ToString();
  Status st = DeleteRecordsBefore(Config(), topic, partition, marks->low + (marks->high - marks->low) / 2);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

KafkaConfig BrokerTest::Config() const {
  KafkaConfig config;
  config.brokers = bootstrap_;
  return config;
}

ChildProcess::ChildProcess(std::vector<std::string> args, const std::string& log_prefix) {
  static std::atomic<int> n{0};
  const std::string base = std::string(KAPPA_TEST_TMP) + "/child." + std::to_string(::getpid()) + "." +
                           std::to_string(n++) + (log_prefix.empty() ? "" : "." + log_prefix);
  std::filesystem::create_directories(KAPPA_TEST_TMP);
  out_path_ = base + ".out";
  err_path_ = base + ".err";
  args.insert(args.begin(), KAPPA_BINARY);
  pid_ = ::fork();
  if (pid_ == 0) {
    FILE* out = std::freopen(out_path_.c_str(), "w", stdout);
    FILE* err = std::freopen(err_path_.c_str(), "w", stderr);
    (void)out;
    (void)err;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    ::_exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && status_ < 0) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
}

static int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int ChildProcess::Wait() {
  if (status_ >= 0) return DecodeStatus(status_);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = status;
  return DecodeStatus(status_);
}

int ChildProcess::WaitFor(int timeout_ms) {
  if (status_ >= 0) return DecodeStatus(status_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = status;
      return DecodeStatus(status_);
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ChildProcess::Kill(int signal) {
  if (status_ < 0) ::kill(pid_, signal);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string RunShell(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string ChildProcess::Stdout() const { return ReadFile(out_path_); }
std::string ChildProcess::Stderr() const { return ReadFile(err_path_); }

int RunKappa(const std::vector<std::string>& args, std::string* out, std::string* err,
             const std::string& log_prefix) {
  ChildProcess child(args, log_prefix);
  int rc = child.WaitFor(300000);
  if (rc < 0) {
    child.Kill(SIGKILL);
    rc = child.Wait();
  }
  if (out) *out = child.Stdout();
  if (err) *err = child.Stderr();
  return rc;
}

SmallFileSystem::SmallFileSystem(const std::string& dir, const std::string& options) : dir_(dir) {
  std::filesystem::create_directories(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0) {
    mounted_ = true;
  } else {
    why_ = "cannot mount a small tmpfs at " + dir + " (" + std::strerror(errno) + "): needs root or CAP_SYS_ADMIN";
  }
}

SmallFileSystem::~SmallFileSystem() {
  if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
}

std::string SmallFileSystem::Remount(const std::string& options, bool read_only) {
  if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), options.c_str()) == 0) {
    return "";
  }
  return "cannot remount " + dir_ + " with " + options + ": " + std::strerror(errno);
}

int64_t SmallFileSystem::FreeBytes() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

}  // namespace kappa::testing
