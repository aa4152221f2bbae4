#include "cli/metrics_endpoint.h"

#include <dirent.h>
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "cli/progress_printer.h"
#include "engine/job_metrics.h"

namespace po = boost::program_options;

namespace kappa::cli {

namespace {

// Workers for the endpoint's connections, with at most `max_queued`
// accepted connections waiting for one: past that the accept loop waits,
// and further connections wait in the kernel's backlog, holding no file
// descriptor of ours. httplib's own pool queued every accepted connection:
// a thousand idle ones took the job's file descriptors, and its next
// checkpoint failed with "Too many open files" (a bug bash).
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(size_t workers, size_t max_queued) : max_queued_(max_queued) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_.wait(lock, [&] { return shutdown_ || jobs_.size() < max_queued_; });
      if (!shutdown_) {
        jobs_.push_back(std::move(fn));
        ready_.notify_one();
        return;
      }
    }
    fn();  // stopping: served here (the server closes it at once)
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    ready_.notify_all();
    space_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void Work() {
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [&] { return shutdown_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      fn();
    }
  }
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<std::function<void()>> jobs_;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

// The endpoint's client connections: this process's sockets whose local
// port is the endpoint's, the listening one excepted (SO_ACCEPTCONN), by
// file descriptor with their peer. No other socket of the process has that
// local port (the listener holds it), so a descriptor closed and reused
// between the look and a cut is another of the endpoint's connections, or
// not a socket (the cut then fails harmlessly).
std::vector<std::pair<int, std::string>> ClientSockets(int port) {
  std::vector<std::pair<int, std::string>> out;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return out;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t len = sizeof(local);
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    int local_port = -1;
    if (local.ss_family == AF_INET) local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    if (local.ss_family == AF_INET6) local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    if (local_port != port) continue;
    int listening = 0;
    socklen_t optlen = sizeof(listening);
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening) continue;
    len = sizeof(peer);
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0) len = 0;
    out.emplace_back(static_cast<int>(fd), std::string(reinterpret_cast<const char*>(&peer), len));
  }
  closedir(dir);
  return out;
}

}  // namespace

// Cuts the endpoint's connections open for kConnectionDeadline or longer
// (shut down: the worker's read ends and httplib closes it), and all of
// them once it stops: httplib's read timeout is per read, so a client that
// sent its request a byte at a time held a worker for as long as it liked
// (40 of them blinded every scrape), and one such client kept the process
// from exiting after a stop or an error (a bug bash).
class MetricsEndpoint::Watchdog {
 public:
  static constexpr auto kConnectionDeadline = std::chrono::seconds(5);
  explicit Watchdog(int port) : port_(port), thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void CutAll() {
    for (const auto& [fd, peer] : ClientSockets(port_)) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  void Run() {
    std::map<std::pair<int, std::string>, std::chrono::steady_clock::time_point> seen;
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      wake_.wait_for(lock, std::chrono::milliseconds(500));
      const auto now = std::chrono::steady_clock::now();
      std::map<std::pair<int, std::string>, std::chrono::steady_clock::time_point> still;
      for (auto& socket : ClientSockets(port_)) {
        auto it = seen.find(socket);
        const auto since = it == seen.end() ? now : it->second;
        if (now - since >= kConnectionDeadline) ::shutdown(socket.first, SHUT_RDWR);
        still.emplace(std::move(socket), since);
      }
      seen = std::move(still);
    }
  }
  const int port_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread thread_;
};

namespace {
// Why `bind`:`port` cannot be listened on, found by binding a socket of our
// own: every cause read "in use, or not an address of this machine" (a bug
// bash: port 80 as a user, a host name that does not resolve).
std::string WhyNoListen(const std::string& bind, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(bind.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return bind + " is not an address or a host name that resolves (" + gai_strerror(rc) + ")";
  std::string why = "in use, or not an address of this machine";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    const int bound = ::bind(fd, a->ai_addr, a->ai_addrlen);
    const int err = errno;
    ::close(fd);
    if (bound == 0) continue;
    if (err == EADDRINUSE) why = "the port is in use by another process";
    else if (err == EACCES || err == EPERM) {
      why = port < 1024 ? "ports below 1024 need root (or CAP_NET_BIND_SERVICE)" : "permission denied";
    } else if (err == EADDRNOTAVAIL) {
      why = bind + " is not an address of this machine";
    } else {
      why = std::strerror(err);
    }
    break;
  }
  freeaddrinfo(found);
  return why;
}
}  // namespace

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& bind, int port,
                                                                std::function<std::string()> render,
                                                                std::function<std::string()> status) {
  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  e->server_ = std::make_unique<httplib::Server>();
  // cpp-httplib sets SO_REUSEPORT, with which a second kappa bound the same
  // port and scrapes alternated between two jobs' metrics: SO_REUSEADDR only
  // (a restart still rebinds over TIME_WAIT), so the second one is refused.
  e->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
  });
  // Each open connection holds a worker while it idles: with httplib's 8
  // workers and 5 s, a dozen open status pages held up every scrape. More
  // workers, and an idle connection let go after a second.
  e->server_->new_task_queue = [] { return new BoundedPool(32, 32); };
  e->server_->set_keep_alive_timeout(1);
  e->server_->set_read_timeout(1, 0);
  // GET only: a request body is refused (413) before it is read (a 1 GB
  // POST was read into memory whole before its 404).
  e->server_->set_payload_max_length(8192);
  e->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  // Other methods: 405 with what is allowed (a POST was "404 Not Found").
  auto not_allowed = [](const httplib::Request&, httplib::Response& res) {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("only GET\n", "text/plain");
  };
  e->server_->Post(".*", not_allowed);
  e->server_->Put(".*", not_allowed);
  e->server_->Patch(".*", not_allowed);
  e->server_->Delete(".*", not_allowed);
  if (status) {
    e->server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kStatusPageHtml, "text/html; charset=utf-8");
    });
    e->server_->Get("/api/status", [status](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(status(), "application/json");
    });
  }
  const int bound = port == 0 ? e->server_->bind_to_any_port(bind) : (e->server_->bind_to_port(bind, port) ? port : -1);
  if (bound < 0) {
    return Status::FailedPrecondition("cannot listen for /metrics on " + bind + ":" + std::to_string(port) + " (" +
                                      WhyNoListen(bind, port) +
                                      "); choose another --metrics-port (0: any free port) or --metrics-bind");
  }
  e->port_ = bound;
  e->watchdog_ = std::make_unique<Watchdog>(bound);
  httplib::Server* server = e->server_.get();
  auto listening = e->listening_;
  e->thread_ = std::thread([server, listening] {
    server->listen_after_bind();
    listening->store(false);
  });
  // httplib's stop() does nothing until the server runs: an endpoint
  // destroyed at once (an early error of the run) was stopped before its
  // thread had begun to listen, which then listened for ever and the
  // process never exited (a bug bash: 4 runs in 30). Returned once it runs.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server->is_running() && listening->load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  // Nothing a client does holds the process: its connections are cut until
  // the server's workers have ended.
  server_->stop();
  while (thread_.joinable() && watchdog_ && listening_->load()) {
    watchdog_->CutAll();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (thread_.joinable()) thread_.join();
  watchdog_.reset();
}

void AddMetricsOptions(po::options_description& desc) {
  desc.add_options()
      ("metrics-port", po::value<int>(), "serve Prometheus metrics at http://BIND:PORT/metrics and a live status page at http://BIND:PORT/ (0: a free port, printed; overrides the spec's metrics.port)")
      ("metrics-bind", po::value<std::string>(), "address the metrics endpoint listens on (default: the spec's metrics.bind, else 127.0.0.1)");
}

JobEndpoint::~JobEndpoint() {
  endpoint.reset();  // the server thread reads metrics: it stops first
  board.reset();
  metrics.reset();
}

namespace {

Status Listen(const std::string& bind, int port, const std::string& command, JobEndpoint* out) {
  if (port > 65535) return Status::InvalidArgument("--metrics-port must be between 0 and 65535");
  // An empty address listened on [::1] alone and printed http://:PORT/ (a
  // bug bash).
  if (bind.empty()) {
    return Status::InvalidArgument("the metrics endpoint's address (--metrics-bind, or the spec's metrics.bind) is "
                                   "empty: give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0");
  }
  JobMetrics* metrics = out->metrics.get();
  out->board = std::make_unique<StatusBoard>(command, metrics);
  StatusBoard* board = out->board.get();
  auto endpoint = MetricsEndpoint::Start(bind, port, [metrics] { return metrics->Render(); },
                                         [board] { return board->Json(); });
  if (!endpoint.ok()) return endpoint.status();
  out->endpoint = std::move(*endpoint);
  // An IPv6 address in brackets: http://::1:P/ is no URL.
  const std::string host = bind.find(':') != std::string::npos ? "[" + bind + "]" : bind;
  std::fprintf(stderr, "kappa %s: metrics at http://%s:%d/metrics, status page at http://%s:%d/\n",
               command.c_str(), host.c_str(), out->endpoint->port(), host.c_str(), out->endpoint->port());
  return Status::OK();
}

}  // namespace

Status StartJobEndpoint(const po::variables_map& vm, const JobSpec& spec, const std::string& command,
                        JobEndpoint* out) {
  int port = spec.metrics_port;
  if (vm.count("metrics-port")) {
    port = vm["metrics-port"].as<int>();
    // A negative port served nothing without a word.
    if (port < 0) return Status::InvalidArgument("--metrics-port must be between 0 and 65535");
  }
  if (port < 0) return Status::OK();
  const std::string bind = vm.count("metrics-bind") ? vm["metrics-bind"].as<std::string>() : spec.metrics_bind;
  out->metrics = std::make_unique<JobMetrics>(spec, NotePrinter("kappa " + command));
  return Listen(bind, port, command, out);
}

Status StartArchiveEndpoint(const po::variables_map& vm, const std::string& root, JobEndpoint* out) {
  if (!vm.count("metrics-port")) return Status::OK();
  if (vm["metrics-port"].as<int>() < 0) return Status::InvalidArgument("--metrics-port must be between 0 and 65535");
  const std::string bind = vm.count("metrics-bind") ? vm["metrics-bind"].as<std::string>() : "127.0.0.1";
  out->metrics = std::make_unique<JobMetrics>("archive", "0", "", root, AlertSpec{}, NotePrinter("kappa archive"));
  return Listen(bind, vm["metrics-port"].as<int>(), "archive", out);
}

}  // namespace kappa::cli
