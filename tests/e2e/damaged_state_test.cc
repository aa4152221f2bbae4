// Story: a job runs to a checkpoint with the real kappa binary; then its
// state directory is damaged the ways a disk, an operator or a bad copy
// would (the WAL deleted, the MANIFEST truncated, CURRENT missing, the WAL
// and the epoch marker both deleted). Each
// rerun exits non-zero naming the directory and the problem, never
// restarting silently from epoch 0 (which, with `start: earliest`, would
// re-emit every output). With --reset-state the run starts over from
// scratch, deletes only kappa's files, and says so.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace kappa::testing {
namespace {

namespace fs = std::filesystem;

class DamagedStateTest : public BrokerTest {};

TEST_F(DamagedStateTest, DamagedStateIsAnErrorAndResetStateStartsOver) {
  constexpr uint64_t kRecords = 8000;
  CreateTopic("transactions", 4);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(11, kRecords, 300, 0.5)));
  ScratchDir dir("damaged-state");
  SpecOptions o;
  o.state_dir = dir / "good";
  o.filter = "";
  const std::string spec = WriteSpec(dir, "job.yaml", o);
  std::string err;
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err),
            0)
      << err;
  const int64_t epoch = MetricsField(ReadFile(dir / "good/metrics.json"), "epoch");
  ASSERT_GE(epoch, 1);
  EXPECT_EQ(ReadFile(dir / "good/KAPPA_EPOCH"), "kappa state epoch " + std::to_string(epoch) + "\n");
  const int64_t outputs = ReadOutputs(Config(), "user-spend-hourly.v1").total;
  ASSERT_GT(outputs, 0);

  struct Damage {
    const char* name;
    const char* expect;  // in the error
    std::function<void(const fs::path&)> apply;
  };
  auto each = [](const fs::path& d, const std::string& prefix, const std::string& suffix,
                 const std::function<void(const fs::path&)>& fn) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with(prefix) && name.ends_with(suffix)) {
        fn(e.path());
        ++n;
      }
    }
    ASSERT_GT(n, 0) << "no " << prefix << "*" << suffix << " in " << d;
  };
  const std::vector<Damage> damages = {
      {"wal-deleted", "epoch went backwards",
       [&](const fs::path& d) { each(d, "", ".log", [](const fs::path& p) { fs::remove(p); }); }},
      {"manifest-truncated", "MANIFEST",
       [&](const fs::path& d) {
         each(d, "MANIFEST-", "", [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) / 3); });
       }},
      {"current-missing", "CURRENT", [](const fs::path& d) { fs::remove(d / "CURRENT"); }},
      // Both deleted: the run started over from epoch 0 with exit 0 (found
      // by a bug bash); metrics.json still says how far the job had got.
      {"wal-and-marker-deleted", "metrics.json says epoch",
       [&](const fs::path& d) {
         each(d, "", ".log", [](const fs::path& p) { fs::remove(p); });
         fs::remove(d / "KAPPA_EPOCH");
       }},
  };
  for (const Damage& damage : damages) {
    SCOPED_TRACE(damage.name);
    const fs::path copy = dir / damage.name;
    fs::copy(dir / "good", copy, fs::copy_options::recursive);
    ASSERT_NO_FATAL_FAILURE(damage.apply(copy));
    const int rc = RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0",
                             "--state-dir", copy.string()},
                            nullptr, &err);
    EXPECT_NE(rc, 0) << "a damaged state directory was accepted: " << err;
    EXPECT_NE(err.find("state directory " + copy.string() + " is damaged"), std::string::npos) << err;
    EXPECT_NE(err.find(damage.expect), std::string::npos) << err;
    EXPECT_NE(err.find("--reset-state"), std::string::npos) << err;
  }
  EXPECT_EQ(ReadOutputs(Config(), "user-spend-hourly.v1").total, outputs) << "a refused run emitted outputs";

  // Starting over is explicit: --reset-state deletes kappa's files only and
  // reprocesses from the spec's start (earliest), counting every record.
  const fs::path damaged = dir / "wal-deleted";
  std::ofstream(damaged / "operator-notes.txt") << "not kappa's";
  std::string out;
  // An argument that fails is found before the reset deletes anything: a
  // missing --archive was named after the state had gone (a bug bash).
  const auto files_before = std::distance(fs::directory_iterator(damaged), fs::directory_iterator());
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0", "--state-dir",
                      damaged.string(), "--reset-state", "--archive", (dir / "no-archive")},
                     &out, &err),
            1)
      << err;
  EXPECT_NE(err.find("archive directory " + (dir / "no-archive") + " does not exist"), std::string::npos)
      << err;
  EXPECT_EQ(err.find("--reset-state: deleted"), std::string::npos) << err;
  EXPECT_EQ(std::distance(fs::directory_iterator(damaged), fs::directory_iterator()), files_before)
      << "the state was reset by a run that then refused to start";
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0", "--state-dir",
                      damaged.string(), "--reset-state"},
                     &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("--reset-state: deleted"), std::string::npos) << err;
  EXPECT_NE(err.find("operator-notes.txt"), std::string::npos) << "the note names what was left alone: " << err;
  EXPECT_TRUE(fs::exists(damaged / "operator-notes.txt"));
  const std::string metrics = ReadFile((damaged / "metrics.json").string());
  EXPECT_EQ(MetricsField(metrics, "records_in"), static_cast<int64_t>(kRecords)) << "not from scratch";
  EXPECT_GE(MetricsField(metrics, "epoch"), 1);
  // And the reset directory is healthy again: a plain rerun accepts it.
  ASSERT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0", "--state-dir",
                      damaged.string()},
                     nullptr, &err),
            0)
      << err;
}

// A bug bash: `--reset-state` pointed at another job's state directory
// (a copied command line) deleted that job's checkpoint, saying only how
// many files; its own restart was then refused as another job's. A start
// without the flag is refused there; with it, nothing is deleted either.
TEST_F(DamagedStateTest, ResetStateRefusesAnotherJobsOrVersionsState) {
  CreateTopic("transactions", 2);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(12, 3000, 300, 0.5)));
  ScratchDir dir("reset-other");
  SpecOptions o;
  o.job = "owner";
  o.sink = "owner-out";
  o.state_dir = dir / "owner";
  const std::string owner = WriteSpec(dir, "owner.yaml", o);
  std::string err;
  ASSERT_EQ(RunKappa({"run", owner, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err),
            0)
      << err;
  const auto files = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir / "owner")) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  const auto before = files();
  o.job = "other";
  o.sink = "other-out";
  const std::string other = WriteSpec(dir, "other.yaml", o);
  o.job = "owner";
  o.sink = "owner-out";
  o.version = 2;
  const std::string owner_v2 = WriteSpec(dir, "owner-v2.yaml", o);
  for (const auto& [spec, who] : {std::pair<std::string, std::string>{other, "job other version 1"},
                                  {owner_v2, "job owner version 2"}}) {
    EXPECT_EQ(RunKappa({"run", spec, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0",
                        "--reset-state"},
                       nullptr, &err),
              1)
        << err;
    EXPECT_NE(err.find("--reset-state deletes only this version's own state, but " + (dir / "owner") +
                       " holds the checkpoints of job owner version 1, not of " + who + ": nothing deleted"),
              std::string::npos)
        << err;
    EXPECT_EQ(err.find("--reset-state: deleted"), std::string::npos) << err;
    EXPECT_EQ(files(), before);
  }
  // Its own version still resumes there, and may start over there.
  ASSERT_EQ(RunKappa({"run", owner, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err),
            0)
      << err;
  EXPECT_NE(err.find("resuming from checkpoint"), std::string::npos) << err;
  ASSERT_EQ(RunKappa({"run", owner, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0", "--reset-state"},
                     nullptr, &err),
            0)
      << err;
  EXPECT_NE(err.find("--reset-state: deleted"), std::string::npos) << err;
}

}  // namespace
}  // namespace kappa::testing
