// Issue 15: the live status page, in a real browser. v1 of a job is
// deployed (serving, live) and catches up; beside it v2 is replayed at 800
// records/s with --metrics-port 0, so it works off ~15 s of lag (room for a
// slow browser start on a loaded machine). While it does,
// tests/e2e/status_page_check.mjs (headless Debian chromium through
// playwright-core) loads http://127.0.0.1:P/, checks the numbers the page
// shows against /metrics fetched in the same moment, and the DLQ by error
// type; then waits until the page shows v2 caught up, runs `kappa promote`,
// waits until the page shows the promotion and v2 serving, and saves
// screenshots into status_page_output/ of the test's working directory (and,
// with KAPPA_STATUS_PAGE_DOCS=1, a copy to docs/status_page.png).
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

class StatusPageTest : public BrokerTest {};

std::string Quote(const std::string& s) { return "'" + s + "'"; }

TEST_F(StatusPageTest, TheBrowserShowsTheNumbersOfMetricsAndThePromotion) {
  CreateTopic("sp-in", 3);
  GeneratorOptions gen = SmallWorkload(7, 12000, 200);
  gen.malformed_fraction = 0.02;
  ProduceWorkload(Config(), "sp-in", gen);
  ScratchDir dir("status-page");
  auto spec = [&](int version) {
    SpecOptions o;
    o.job = "sp";
    o.version = version;
    o.source = "sp-in";
    o.sink = "sp-out";
    o.filter = version == 1 ? "" : "status != cancelled";
    o.checkpoint_interval = "300ms";
    o.state_dir = dir / ("state-v" + std::to_string(version));
    const std::string path = WriteSpec(dir, "v" + std::to_string(version) + ".yaml", o);
    std::ofstream(path, std::ios::app) << "alerts: {lag_records: 5000, dlq_per_hour: 100000}\n";
    return path;
  };
  // v1 live and serving, caught up before v2 starts.
  ChildProcess v1({"deploy", spec(1), "-b", bootstrap(), "--status-interval-ms", "0"}, "sp-v1");
  const std::string v1_metrics = dir / "state-v1/metrics.json";
  for (int i = 0; i < 300; ++i) {
    const std::string m = ReadFile(v1_metrics);
    if (!m.empty() && MetricsField(m, "records_in") == 12000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(MetricsField(ReadFile(v1_metrics), "records_in"), 12000) << v1.Stderr();
  ChildProcess v2({"replay", spec(2), "-b", bootstrap(), "--metrics-port", "0", "--max-rate", "800",
                   "--status-interval-ms", "0", "--catch-up-hold-ms", "1000"},
                  "sp-v2");
  std::string url;
  for (int i = 0; i < 100 && url.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::smatch m;
    const std::string e = v2.Stderr();
    if (std::regex_search(e, m, std::regex("status page at (http://127\\.0\\.0\\.1:[0-9]+/)"))) url = m[1];
  }
  ASSERT_FALSE(url.empty()) << v2.Stderr();

  const std::string output = (std::filesystem::current_path() / "status_page_output").string();
  std::filesystem::remove_all(output);
  const char* docs = std::getenv("KAPPA_STATUS_PAGE_DOCS");
  const std::string copy =
      docs && std::string(docs) == "1" ? " --copy " + Quote(std::string(KAPPA_SOURCE_DIR) + "/docs/status_page.png") : "";
  const std::string promote = std::string(KAPPA_BINARY) + " promote sp --version 2 -b " + bootstrap();
  const std::string script = RunShell("timeout 120 " + std::string(KAPPA_SOURCE_DIR) +
                                      "/tests/e2e/status_page_browser.sh --url " + url + " --out " + Quote(output) +
                                      " --max-rate 800 --promote " + Quote(promote) + copy + " 2>&1; echo \"rc=$?\"");
  std::cout << script;  // the browser's view, also when it passes
  EXPECT_NE(script.find("\nrc=0"), std::string::npos) << script << "\n" << v2.Stderr();
  EXPECT_NE(script.find("OK page numbers match /metrics during the run"), std::string::npos) << script;
  EXPECT_NE(script.find("OK DLQ by error type adds up"), std::string::npos) << script;
  EXPECT_NE(script.find("OK v2 shown caught up"), std::string::npos) << script;
  EXPECT_NE(script.find("OK the page shows the promotion: v2 at"), std::string::npos) << script;
  EXPECT_EQ(script.find("FAIL"), std::string::npos) << script;
  // The versions table as the browser saw it during the replay: v1 serving
  // and live, v2 replaying in this process.
  EXPECT_NE(script.find("v1 servinglive"), std::string::npos) << script;
  EXPECT_NE(script.find("v2 (here)replaying"), std::string::npos) << script;
  EXPECT_TRUE(std::filesystem::file_size(output + "/status_page_running.png") > 10000) << output;
  EXPECT_TRUE(std::filesystem::file_size(output + "/status_page.png") > 10000) << output;
  v2.Kill(SIGTERM);
  v1.Kill(SIGTERM);
  EXPECT_EQ(v2.WaitFor(60000), 0) << v2.Stderr();
  EXPECT_EQ(v1.WaitFor(60000), 0) << v1.Stderr();
}

}  // namespace
}  // namespace kappa::testing
