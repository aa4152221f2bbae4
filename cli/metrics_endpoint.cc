#include "cli/metrics_endpoint.h"

#include <httplib.h>

#include <cstdio>

#include "cli/progress_printer.h"
#include "engine/job_metrics.h"

namespace po = boost::program_options;

namespace kappa::cli {

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
  e->server_->new_task_queue = [] { return new httplib::ThreadPool(32); };
  e->server_->set_keep_alive_timeout(1);
  e->server_->set_read_timeout(1, 0);
  e->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
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
    return Status::FailedPrecondition("cannot listen for /metrics on " + bind + ":" + std::to_string(port) +
                                      " (in use, or not an address of this machine); choose another --metrics-port "
                                      "(0: any free port)");
  }
  e->port_ = bound;
  httplib::Server* server = e->server_.get();
  e->thread_ = std::thread([server] { server->listen_after_bind(); });
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
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
  JobMetrics* metrics = out->metrics.get();
  out->board = std::make_unique<StatusBoard>(command, metrics);
  StatusBoard* board = out->board.get();
  auto endpoint = MetricsEndpoint::Start(bind, port, [metrics] { return metrics->Render(); },
                                         [board] { return board->Json(); });
  if (!endpoint.ok()) return endpoint.status();
  out->endpoint = std::move(*endpoint);
  std::fprintf(stderr, "kappa %s: metrics at http://%s:%d/metrics, status page at http://%s:%d/\n",
               command.c_str(), bind.c_str(), out->endpoint->port(), bind.c_str(), out->endpoint->port());
  return Status::OK();
}

}  // namespace

Status StartJobEndpoint(const po::variables_map& vm, const JobSpec& spec, const std::string& command,
                        JobEndpoint* out) {
  int port = spec.metrics_port;
  if (vm.count("metrics-port")) port = vm["metrics-port"].as<int>();
  if (port < 0) return Status::OK();
  const std::string bind = vm.count("metrics-bind") ? vm["metrics-bind"].as<std::string>() : spec.metrics_bind;
  out->metrics = std::make_unique<JobMetrics>(spec, NotePrinter("kappa " + command));
  return Listen(bind, port, command, out);
}

Status StartArchiveEndpoint(const po::variables_map& vm, const std::string& root, JobEndpoint* out) {
  if (!vm.count("metrics-port") || vm["metrics-port"].as<int>() < 0) return Status::OK();
  const std::string bind = vm.count("metrics-bind") ? vm["metrics-bind"].as<std::string>() : "127.0.0.1";
  out->metrics = std::make_unique<JobMetrics>("archive", "0", "", root, AlertSpec{}, NotePrinter("kappa archive"));
  return Listen(bind, vm["metrics-port"].as<int>(), "archive", out);
}

}  // namespace kappa::cli
