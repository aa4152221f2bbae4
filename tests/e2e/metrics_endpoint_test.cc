// Issue 15: /metrics. A job run with --metrics-port 0 serves Prometheus text
// exposition that the reference parser (python3-prometheus-client) reads;
// its numbers are the job's own counters (equal to the metrics file written
// at exit), its positions the log ends once caught up, its DLQ series by
// error type add up to the DLQ counter; the spec's alerts turn into
// kappa_alert series and warning lines when crossed, and clear again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class MetricsEndpointTest : public BrokerTest {};

// name{labels} -> value, through the reference parser. Empty when the text
// does not parse (a failure is recorded).
std::map<std::string, double> Scrape(const std::string& url) {
  const std::string text = RunShell("timeout 10 curl -sf " + url);
  const std::string file = "/tmp/kappa-metrics-" + std::to_string(getpid()) + ".txt";
  std::ofstream(file) << text;
  const std::string parsed = RunShell("timeout 20 /usr/bin/python3 " + std::string(KAPPA_SOURCE_DIR) +
                                      "/tests/support/parse_metrics.py < " + file + " 2>&1; echo \"rc=$?\"");
  std::remove(file.c_str());
  std::map<std::string, double> out;
  if (parsed.find("rc=0") == std::string::npos) {
    ADD_FAILURE() << "the reference parser refused /metrics: " << parsed << "\n" << text;
    return out;
  }
  std::istringstream lines(parsed);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t space = line.rfind(' ');
    if (space == std::string::npos || line.rfind("rc=", 0) == 0) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// The URL a command started with --metrics-port 0 prints ("" after 10 s without).
std::string MetricsUrl(const ChildProcess& process) {
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::smatch m;
    const std::string err = process.Stderr();
    if (std::regex_search(err, m, std::regex("metrics at (http://127\\.0\\.0\\.1:[0-9]+/metrics)"))) return m[1];
  }
  return "";
}

TEST_F(MetricsEndpointTest, PrometheusSeesTheJobsOwnCountersAndItsAlerts) {
  CreateTopic("mx-in", 4);
  GeneratorOptions gen = SmallWorkload(3, 6000, 200);
  gen.malformed_fraction = 0.02;
  gen.duplicate_fraction = 0.02;
  ProduceWorkload(Config(), "mx-in", gen);
  ScratchDir dir("metrics-endpoint");
  SpecOptions o;
  o.job = "mx";
  o.source = "mx-in";
  o.sink = "mx-out";
  o.state_dir = dir / "state";
  o.checkpoint_interval = "300ms";
  const std::string spec = WriteSpec(dir, "mx.yaml", o);
  std::ofstream(spec, std::ios::app) << "alerts: {lag_records: 1000, dlq_per_hour: 1}\n";
  ChildProcess job({"run", spec, "-b", bootstrap(), "--metrics-port", "0", "--max-rate", "2000",
                    "--status-interval-ms", "0"},
                   "mx");
  const std::string url = MetricsUrl(job);
  ASSERT_FALSE(url.empty()) << job.Stderr();
  const std::string labels = "job=mx,version=1";
  // While it works off its backlog at 2,000 records/s, the lag alert fires.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto early = Scrape(url);
  EXPECT_EQ(early["kappa_alert{job=mx,name=lag_records,version=1}"], 1) << job.Stderr();
  EXPECT_GT(early["kappa_lag_records{" + labels + "}"], 1000);
  // The ETA at the rate measured (it read NaN whenever there was lag): the
  // lag over roughly 2,000 records/s.
  const double eta = early["kappa_eta_seconds{" + labels + "}"];
  EXPECT_FALSE(std::isnan(eta)) << "kappa_eta_seconds is NaN with a lag and a rate";
  EXPECT_GT(eta, early["kappa_lag_records{" + labels + "}"] / 4000);
  // Caught up: everything read, every position at its log end; and once
  // the DLQ rate has 5 s of samples behind it, its alert fires.
  std::map<std::string, double> m;
  for (int i = 0; i < 200; ++i) {
    m = Scrape(url);
    if (m["kappa_records_in_total{" + labels + "}"] == 6000 + 0.0 && m["kappa_lag_records{" + labels + "}"] == 0 &&
        m["kappa_alert{job=mx,name=lag_records,version=1}"] == 0 &&
        m["kappa_alert{job=mx,name=dlq_per_hour,version=1}"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const double in = m["kappa_records_in_total{" + labels + "}"];
  EXPECT_GE(in, 6000);
  EXPECT_EQ(m["kappa_lag_records{" + labels + "}"], 0);
  for (int p = 0; p < 4; ++p) {
    const std::string pl = "{job=mx,partition=" + std::to_string(p) + ",version=1}";
    EXPECT_EQ(m["kappa_partition_position" + pl], m["kappa_partition_log_end_offset" + pl]) << p;
    EXPECT_GT(m["kappa_partition_position" + pl], 0) << p;
  }
  double by_type = 0;
  for (const char* type : {"Undecodable", "MissingField", "InvalidValue", "SinkRejected"}) {
    by_type += m[std::string("kappa_dlq_written_total{error_type=") + type + ",job=mx,version=1}"];
  }
  const double dlq = m["kappa_records_dlq_total{" + labels + "}"];
  EXPECT_GT(dlq, 0);
  EXPECT_EQ(by_type, dlq);
  EXPECT_EQ(m["kappa_alert{job=mx,name=dlq_per_hour,version=1}"], 1);
  EXPECT_EQ(m["kappa_alert{job=mx,name=lag_records,version=1}"], 0);
  EXPECT_GT(m["kappa_checkpoints_total{" + labels + "}"], 0);
  // A stall's parts: none is more than the whole (timed in whole ms per
  // checkpoint, the parts finer).
  const double stalled = m["kappa_checkpoint_stall_seconds_total{" + labels + "}"] +
                         0.001 * m["kappa_checkpoints_total{" + labels + "}"];
  for (const char* part : {"kappa_sink_flush_seconds_total", "kappa_checkpoint_writer_wait_seconds_total",
                           "kappa_checkpoint_capture_max_seconds"}) {
    ASSERT_TRUE(m.contains(std::string(part) + "{" + labels + "}")) << part;
    EXPECT_LE(m[std::string(part) + "{" + labels + "}"], stalled) << part;
  }
  EXPECT_GT(m["kappa_state_size_bytes{" + labels + "}"], 0);
  EXPECT_EQ(m["kappa_progress_ratio{" + labels + "}"], 1);
  EXPECT_GT(m["kappa_watermark_seconds{" + labels + "}"], 1.7e9);
  // The status page beside it (kappa run: no registry, so no versions but
  // this process's): the page itself, and its JSON with the same counters.
  const std::string root = url.substr(0, url.size() - std::string("metrics").size());
  EXPECT_NE(RunShell("timeout 10 curl -sf " + root).find("<title>kappa status</title>"), std::string::npos);
  const std::string status = RunShell("timeout 10 curl -sf " + root + "api/status");
  EXPECT_NE(status.find("\"records_in\":" + std::to_string(static_cast<int64_t>(in)) + ","), std::string::npos)
      << status;
  EXPECT_NE(status.find("\"lag\":0,"), std::string::npos) << status;
  EXPECT_NE(status.find("\"registry\":null"), std::string::npos) << status;
  // The warning lines said so.
  EXPECT_NE(job.Stderr().find("alert lag_records firing"), std::string::npos) << job.Stderr();
  EXPECT_NE(job.Stderr().find("alert lag_records cleared"), std::string::npos) << job.Stderr();
  EXPECT_NE(job.Stderr().find("alert dlq_per_hour firing"), std::string::npos) << job.Stderr();
  // The job's own counters: the metrics file written at its clean exit.
  job.Kill(SIGTERM);
  ASSERT_EQ(job.WaitFor(60000), 0) << job.Stderr();
  const std::string file = ReadFile(o.state_dir + "/metrics.json");
  EXPECT_EQ(in, MetricsField(file, "records_in"));
  EXPECT_EQ(m["kappa_records_out_total{" + labels + "}"], MetricsField(file, "records_out"));
  EXPECT_EQ(m["kappa_records_deduped_total{" + labels + "}"], MetricsField(file, "deduped"));
  EXPECT_EQ(m["kappa_records_late_total{" + labels + "}"], MetricsField(file, "late"));
  EXPECT_EQ(dlq, MetricsField(file, "dlq"));
  EXPECT_EQ(m["kappa_outputs_total{" + labels + "}"], MetricsField(file, "outputs"));
}

TEST_F(MetricsEndpointTest, TheArchiverServesItsProgressToo) {
  CreateTopic("mxa-in", 2);
  CreateTopic("mxb-in", 2);
  ProduceWorkload(Config(), "mxa-in", SmallWorkload(4, 3000, 100));
  ProduceWorkload(Config(), "mxb-in", SmallWorkload(5, 1000, 100));
  ScratchDir dir("metrics-archive");
  ChildProcess archiver({"archive", "-a", dir / "archive", "-t", "mxa-in", "-t", "mxb-in", "-b", bootstrap(),
                         "--metrics-port", "0", "--status-interval-ms", "0"},
                        "mxa");
  const std::string url = MetricsUrl(archiver);
  ASSERT_FALSE(url.empty()) << archiver.Stderr();
  std::map<std::string, double> m;
  for (int i = 0; i < 100; ++i) {
    m = Scrape(url);
    if (m["kappa_records_in_total{job=archive,version=0}"] == 4000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(m["kappa_records_in_total{job=archive,version=0}"], 4000);
  EXPECT_EQ(m["kappa_lag_records{job=archive,version=0}"], 0);
  // Each topic's partitions are series of their own (they were duplicates,
  // which the parser above refuses).
  double a = 0, b = 0;
  for (int p = 0; p < 2; ++p) {
    a += m["kappa_partition_position{job=archive,partition=" + std::to_string(p) + ",topic=mxa-in,version=0}"];
    b += m["kappa_partition_position{job=archive,partition=" + std::to_string(p) + ",topic=mxb-in,version=0}"];
  }
  EXPECT_EQ(a, 3000);
  EXPECT_EQ(b, 1000);
  // A second process on the same port is refused (cpp-httplib's SO_REUSEPORT
  // let it bind, and scrapes alternated between the two).
  const std::string port = url.substr(url.rfind(':') + 1, url.find("/metrics") - url.rfind(':') - 1);
  std::string err;
  EXPECT_EQ(RunKappa({"archive", "-a", dir / "archive2", "-t", "mxa-in", "-b", bootstrap(), "--metrics-port", port,
                      "--stop-at-end"},
                     nullptr, &err),
            1)
      << err;
  EXPECT_NE(err.find("cannot listen for /metrics on 127.0.0.1:" + port), std::string::npos) << err;
  archiver.Kill(SIGTERM);
  EXPECT_EQ(archiver.WaitFor(60000), 0) << archiver.Stderr();
}

// A connection to 127.0.0.1:port (-1 if none).
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

// No client of the endpoint can take the job down or hold it (a bug bash):
// 600 idle connections took the job's file descriptors (its checkpoint
// failed "Too many open files" under ulimit -n 1024); clients sending
// their request a byte at a time held every worker (no scrape answered)
// and kept the process from exiting on SIGTERM; a POST body was read into
// memory whole.
TEST_F(MetricsEndpointTest, NoClientCanExhaustHoldOrStopTheJob) {
  CreateTopic("mxc-in", 2);
  ProduceWorkload(Config(), "mxc-in", SmallWorkload(4, 2000, 50));
  ScratchDir dir("metrics-clients");
  SpecOptions o = JobOptions("mxc", "mxc-in", dir / "state");
  o.checkpoint_interval = "200ms";
  ChildProcess job({"run", WriteSpec(dir, "mxc.yaml", o), "-b", bootstrap(), "--metrics-port", "0",
                    "--status-interval-ms", "0"},
                   "mxc");
  const std::string url = MetricsUrl(job);
  ASSERT_FALSE(url.empty()) << job.Stderr();
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  const size_t fds_before = OpenFds(job.pid());

  // 600 idle connections: the job holds at most 32 served and 32 waiting.
  std::vector<int> idle;
  for (int i = 0; i < 600; ++i) {
    const int fd = Connect(port);
    if (fd >= 0) idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_LT(OpenFds(job.pid()), fds_before + 100) << "connections held open by the job";
  for (int fd : idle) close(fd);

  // 40 clients sending a request a byte at a time: cut after 5 s, so a
  // scrape is answered within Prometheus' 10 s timeout.
  std::vector<int> slow;
  for (int i = 0; i < 40; ++i) {
    const int fd = Connect(port);
    if (fd >= 0) slow.push_back(fd);
  }
  std::atomic<bool> dripping{true};
  std::mutex slow_mu;
  std::thread drip([&] {
    while (dripping.load()) {
      {
        std::lock_guard<std::mutex> lock(slow_mu);
        for (int fd : slow) (void)!send(fd, "G", 1, MSG_NOSIGNAL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  // Stopped and joined however the test ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~Joiner() {
      flag.store(false);
      if (thread.joinable()) thread.join();
    }
  } joiner{dripping, drip};
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string scraped = RunShell("timeout 12 curl -s -m 10 -o /dev/null -w '%{http_code}' " + url);
  EXPECT_EQ(scraped, "200") << "a scrape beside 40 slow clients";

  // A POST body is refused, not read.
  const int post = Connect(port);
  ASSERT_GE(post, 0);
  const std::string head = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n";
  ASSERT_EQ(send(post, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  char answer[64] = {};
  timeval tv{5, 0};
  setsockopt(post, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ASSERT_GT(recv(post, answer, sizeof(answer) - 1, 0), 0);
  EXPECT_EQ(std::string(answer).rfind("HTTP/1.1 413", 0), 0u) << answer;
  close(post);
  // Another method without a body: 405 naming what is allowed (it was 404).
  const std::string posted =
      RunShell("timeout 12 curl -s -m 10 -X POST -d '' -D - -o /dev/null http://127.0.0.1:" + std::to_string(port) + "/metrics");
  EXPECT_EQ(posted.rfind("HTTP/1.1 405", 0), 0u) << posted;
  EXPECT_NE(posted.find("Allow: GET, HEAD"), std::string::npos) << posted;

  // A slow client still connected does not hold the stop.
  const int holder = Connect(port);
  ASSERT_GE(holder, 0);
  {
    std::lock_guard<std::mutex> lock(slow_mu);
    slow.push_back(holder);
  }
  const auto stopped = std::chrono::steady_clock::now();
  job.Kill(SIGTERM);
  EXPECT_EQ(job.WaitFor(30000), 0) << job.Stderr();
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, std::chrono::seconds(10)) << job.Stderr();
  EXPECT_NE(job.Stdout().find("stopped cleanly"), std::string::npos) << job.Stdout();
  dripping.store(false);
  drip.join();
  for (int fd : slow) close(fd);
}

// Settings that served nothing, or a URL that was none, without a word.
TEST_F(MetricsEndpointTest, ANegativePortIsRefusedAndAnIpv6UrlHasBrackets) {
  CreateTopic("mx6-in", 1);
  ProduceWorkload(Config(), "mx6-in", SmallWorkload(6, 100, 10));
  ScratchDir dir("metrics-ipv6");
  const std::string spec = WriteSpec(dir, "mx6.yaml", JobOptions("mx6", "mx6-in", dir / "state"));
  std::string err;
  EXPECT_NE(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", "-9100", "--stop-at-end"}, nullptr, &err), 0)
      << err;
  EXPECT_NE(err.find("--metrics-port must be between 0 and 65535"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", "0", "--metrics-bind", "::1",
                      "--stop-at-end", "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;
  EXPECT_TRUE(std::regex_search(err, std::regex(R"(metrics at http://\[::1\]:[0-9]+/metrics)"))) << err;

  // KAPPA_STOP_GRACE_MS: "30s" is 30 s (it was read as 30 ms); what is
  // neither milliseconds nor a duration is said, and 20 s used.
  ::setenv("KAPPA_STOP_GRACE_MS", "30s", 1);
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err), 0)
      << err;
  EXPECT_EQ(err.find("KAPPA_STOP_GRACE_MS"), std::string::npos) << err;
  ::setenv("KAPPA_STOP_GRACE_MS", "soon", 1);
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err), 0)
      << err;
  ::unsetenv("KAPPA_STOP_GRACE_MS");
  EXPECT_NE(err.find("KAPPA_STOP_GRACE_MS=soon is neither milliseconds nor a duration (30s, 2m): using 20 s"),
            std::string::npos)
      << err;
}

// A run that fails at once (here: no Kafka address) with the endpoint on
// stopped the endpoint before it had begun to listen, which then listened
// for ever: the process did not exit, 4 runs in 30 (a bug bash). And an
// empty --metrics-bind listened on [::1] alone, printing http://:PORT/.
TEST_F(MetricsEndpointTest, AnEarlyErrorEndsTheRunAndAnEmptyAddressIsRefused) {
  ScratchDir dir("metrics-early");
  const std::string spec = WriteSpec(dir, "early.yaml", JobOptions("early", "early-in", dir / "state"));
  for (int i = 0; i < 30; ++i) {
    ChildProcess run({"run", spec, "--metrics-port", "0", "--stop-at-end"}, "metrics-early");
    const int rc = run.WaitFor(10000);
    if (rc == -1) run.Kill(SIGKILL);
    ASSERT_NE(rc, -1) << "run " << i << " still ran 10 s after its error\n" << run.Stderr();
    EXPECT_NE(rc, 0) << run.Stderr();
  }
  std::string err;
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", "0", "--metrics-bind", "", "--stop-at-end"},
                     nullptr, &err),
            2)
      << err;
  EXPECT_NE(err.find("the metrics endpoint's address (--metrics-bind, or the spec's metrics.bind) is empty"),
            std::string::npos)
      << err;
}

TEST_F(MetricsEndpointTest, APortInUseIsAClearError) {
  CreateTopic("mx2-in", 1);
  ScratchDir dir("metrics-port");
  SpecOptions o;
  o.job = "mx2";
  o.source = "mx2-in";
  o.state_dir = dir / "state";
  const std::string spec = WriteSpec(dir, "mx2.yaml", o);
  // A port this test holds.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  std::string err;
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", port, "--stop-at-end"}, nullptr, &err), 1)
      << err;
  EXPECT_NE(err.find("cannot listen for /metrics on 127.0.0.1:" + port + " (the port is in use by another process)"),
            std::string::npos)
      << err;
  close(fd);
  // Every cause read "in use, or not an address of this machine" (a bug bash).
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", "0", "--metrics-bind", "no-such-host.invalid",
                      "--stop-at-end"},
                     nullptr, &err),
            1)
      << err;
  EXPECT_NE(err.find("no-such-host.invalid is not an address or a host name that resolves"), std::string::npos) << err;
  EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--metrics-port", "0", "--metrics-bind", "192.0.2.1",
                      "--stop-at-end"},
                     nullptr, &err),
            1)
      << err;
  EXPECT_NE(err.find("192.0.2.1 is not an address of this machine"), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
