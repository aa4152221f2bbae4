// The HTTP endpoint of a long-running command (issue 15): Prometheus text
// exposition at /metrics, served by cpp-httplib (Debian's libcpp-httplib:
// a maintained server, not one of ours) on its own thread from a JobMetrics
// (engine/job_metrics.h), and the live status page at / with its JSON at
// /api/status (cli/status_page.h). Binds loopback unless told otherwise; port 0 picks
// a free one. Stopped and joined by the destructor. No client can take the
// job down or hold it: at most 32 connections served and 32 waiting (the
// rest wait in the kernel's backlog), each cut after 5 s, every one cut
// when it stops; request bodies are refused unread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/program_options.hpp>

#include "base/status.h"
#include "engine/job_metrics.h"
#include "cli/status_page.h"
#include "engine/job_spec.h"

namespace httplib {
class Server;
}

namespace kappa::cli {

class MetricsEndpoint {
 public:
  // `render` is called on the server's thread for each scrape, `status`
  // (if set) for each GET /api/status, which the page at / polls.
  static Result<std::unique_ptr<MetricsEndpoint>> Start(const std::string& bind, int port,
                                                        std::function<std::string()> render,
                                                        std::function<std::string()> status = nullptr);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  class Watchdog;  // cuts connections open too long, and all at the end
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<Watchdog> watchdog_;
  std::shared_ptr<std::atomic<bool>> listening_ = std::make_shared<std::atomic<bool>>(true);
  std::thread thread_;
  int port_ = 0;
};

// --metrics-port and --metrics-bind, for run, deploy and replay.
void AddMetricsOptions(boost::program_options::options_description& desc);

// The job's metrics and their endpoint when --metrics-port or the spec's
// metrics.port asks for one (both null otherwise); prints where it listens.
struct JobEndpoint {
  std::unique_ptr<JobMetrics> metrics;
  std::unique_ptr<StatusBoard> board;  // the status page's data
  std::unique_ptr<MetricsEndpoint> endpoint;
  ~JobEndpoint();
};
Status StartJobEndpoint(const boost::program_options::variables_map& vm, const JobSpec& spec,
                        const std::string& command, JobEndpoint* out);
// The same for the archiver (--metrics-port only): series labelled
// job="archive", version="0", output=<the archive directory>; records_in
// counts the records archived.
Status StartArchiveEndpoint(const boost::program_options::variables_map& vm, const std::string& root,
                            JobEndpoint* out);

}  // namespace kappa::cli
