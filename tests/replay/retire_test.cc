// `kappa retire` deletes only what kappa created (issue 10 item 2): the
// registry holds the absolute state dir resolved where the version ran, so a
// retire from another working directory deletes the right one; a directory
// without kappa's marker (or with another version's) is refused and left; in
// a marked directory only RocksDB's and kappa's files go, anything else is
// kept and named.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "replay/deployment.h"
#include "replay/promotion.h"
#include "state/state_backend.h"
#include "tests/replay/replay_test_util.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

namespace fs = std::filesystem;

// Changes the working directory for a scope.
class InDirectory {
 public:
  explicit InDirectory(const fs::path& dir) : previous_(fs::current_path()) { fs::current_path(dir); }
  ~InDirectory() { fs::current_path(previous_); }

 private:
  fs::path previous_;
};

void Touch(const fs::path& file, const std::string& text = "x") {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

// What a run leaves behind: RocksDB's files and kappa's metrics.
void FillLikeAState(const fs::path& dir) {
  for (const char* name : {"CURRENT", "IDENTITY", "LOCK", "LOG", "LOG.old.1767225600000", "MANIFEST-000005",
                           "OPTIONS-000007", "000008.log", "000009.sst", "metrics.json"}) {
    Touch(dir / name);
  }
}

class RetireTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    CreateTopic("kappa.control", 1);
  }
  JobSpec Spec(int32_t version, const std::string& state_dir) {
    JobSpec spec;
    spec.job = "spend";
    spec.version = version;
    spec.source_topic = "transactions";
    spec.sink_topic = "out";
    spec.state_dir = state_dir;
    spec.spec_hash = "hash" + std::to_string(version);
    return spec;
  }
  // v1 live and serving (state elsewhere), v2 replaying with `state_dir`.
  void RegisterTwo(Registry& registry, const ScratchDir& dir, const std::string& state_dir) {
    ASSERT_TRUE(RegisterVersion(registry, Spec(1, dir / "v1"), false).ok());
    auto v2 = RegisterVersion(registry, Spec(2, state_dir), true);
    ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  }
  std::string RetireNow(int32_t version) {
    Registry registry(Config());
    std::string report;
    Status st = Retire(registry, "spend", version, 0, &report);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return report;
  }
};

TEST_F(RetireTest, ARelativeStateDirIsRetiredWhereTheVersionRanNotWhereRetireRuns) {
  ScratchDir dir("relative");
  fs::create_directories(dir / "ran-here");
  fs::create_directories(dir / "retired-from-here");
  {
    InDirectory cwd(dir / "ran-here");
    Registry registry(Config());
    RegisterTwo(registry, dir, "state/v2");
    ASSERT_TRUE(ClaimStateDir("state/v2", "spend", 2).ok());
    FillLikeAState("state/v2");
    auto job = registry.Job("spend");
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(job->Find(2)->state_dir, fs::path(dir / "ran-here/state/v2").string()) << "absolute in the registry";
  }
  // Another directory that happens to have the same relative path.
  Touch(dir / "retired-from-here/state/v2/precious.txt", "the user's");
  std::string report;
  {
    InDirectory cwd(dir / "retired-from-here");
    report = RetireNow(2);
  }
  EXPECT_FALSE(fs::exists(dir / "ran-here/state/v2")) << report;
  EXPECT_TRUE(fs::exists(dir / "retired-from-here/state/v2/precious.txt")) << report;
  EXPECT_NE(report.find("deleted the state of version 2 (" + dir / "ran-here/state/v2" + ")"), std::string::npos)
      << report;
}

// A bug bash: `retire --retention 0s` of a version whose process still ran
// deleted its state under it, and the process died on its own files. The
// state stays while the version reports running; it goes once the version
// reports stopped, or has been silent for long (kill -9).
TEST_F(RetireTest, AVersionStillRunningKeepsItsStateUntilItStops) {
  ScratchDir dir("running");
  Registry registry(Config());
  RegisterTwo(registry, dir, dir / "v2");
  ASSERT_TRUE(ClaimStateDir(dir / "v2", "spend", 2).ok());
  FillLikeAState(dir / "v2");
  ProgressRecord progress;
  progress.job = "spend";
  progress.version = 2;
  progress.snapshot.checkpoint_ms = WallClockMs();
  progress.report_interval_ms = 1000;
  ASSERT_TRUE(registry.PutProgress(progress).ok());
  std::string report = RetireNow(2);
  EXPECT_TRUE(fs::exists(dir / "v2/CURRENT")) << report;
  EXPECT_NE(report.find("kept the state of version 2: its process still runs"), std::string::npos) << report;
  // What stays on Kafka is said (a repartitioned version's copy of its
  // input was left without a word, a bug bash).
  EXPECT_NE(report.find("its Kafka topics stay (kappa deletes no topic): out.v2, and spend.v2.repartition.1 and "
                        "spend.v2.changelog if it has them"),
            std::string::npos)
      << report;
  // It saw the retirement and stopped: the next retire deletes.
  progress.stopped = true;
  ASSERT_TRUE(registry.PutProgress(progress).ok());
  report = RetireNow(2);
  EXPECT_FALSE(fs::exists(dir / "v2")) << report;
  EXPECT_NE(report.find("deleted the state of version 2"), std::string::npos) << report;
  // A retire of a retired version says so, not "retired" again (a bug bash).
  EXPECT_NE(report.find("job spend: version 2 was retired already, "), std::string::npos) << report;
  EXPECT_EQ(report.find("its Kafka topics stay"), std::string::npos) << "said once, at the retirement";
}

// A bug bash: a refused second start of a running version (its state
// directory in use) wrote a "stopped" progress record over the running
// process's, and `retire --retention 0s` then deleted the state under it.
// Whatever the progress records say, a store that is open stays.
TEST_F(RetireTest, AStoreStillOpenIsNotDeletedWhateverTheProgressRecordsSay) {
  ScratchDir dir("open-store");
  Registry registry(Config());
  RegisterTwo(registry, dir, dir / "v2");
  ASSERT_TRUE(ClaimStateDir(dir / "v2", "spend", 2).ok());
  auto open = StateBackend::Open(dir / "v2", {"t"});  // the running process's store
  ASSERT_TRUE(open.ok()) << open.status().ToString();
  ProgressRecord progress;
  progress.job = "spend";
  progress.version = 2;
  progress.snapshot.checkpoint_ms = WallClockMs();
  progress.stopped = true;
  ASSERT_TRUE(registry.PutProgress(progress).ok());
  std::string report = RetireNow(2);
  EXPECT_TRUE(fs::exists(dir / "v2/CURRENT")) << report;
  EXPECT_NE(report.find("not deleting the state of version 2 (" + dir / "v2" +
                        "): a process still has it open (RocksDB LOCK held)"),
            std::string::npos)
      << report;
  open->reset();  // the process stops
  report = RetireNow(2);
  EXPECT_FALSE(fs::exists(dir / "v2")) << report;
}

// A repartitioned version's stage 2 keeps its state in <state_dir>.stage1
// (engine/stage_plan.h): retiring the version deletes it too. Before, it
// was left behind for good.
TEST_F(RetireTest, ARepartitionedVersionsSecondStageStateGoesWithIt) {
  ScratchDir dir("stage1");
  const std::string state = dir / "v2";
  Registry registry(Config());
  RegisterTwo(registry, dir, state);
  ASSERT_TRUE(ClaimStateDir(state, "spend", 2).ok());
  FillLikeAState(state);
  FillLikeAState(state + ".stage1");
  const std::string report = RetireNow(2);
  EXPECT_FALSE(fs::exists(state)) << report;
  EXPECT_FALSE(fs::exists(state + ".stage1")) << report;
  EXPECT_NE(report.find("deleted the state of its stage 2 (" + state + ".stage1)"), std::string::npos) << report;
}

TEST_F(RetireTest, FilesKappaDidNotWriteAreKeptAndNamed) {
  ScratchDir dir("foreign");
  const std::string state = dir / "v2";
  Registry registry(Config());
  RegisterTwo(registry, dir, state);
  ASSERT_TRUE(ClaimStateDir(state, "spend", 2).ok());
  FillLikeAState(state);
  Touch(fs::path(state) / "notes.txt", "keep me");
  Touch(fs::path(state) / "backup/000009.sst", "a copy the user made");
  const std::string report = RetireNow(2);
  EXPECT_TRUE(fs::exists(fs::path(state) / "notes.txt")) << report;
  EXPECT_TRUE(fs::exists(fs::path(state) / "backup/000009.sst")) << report;
  EXPECT_FALSE(fs::exists(fs::path(state) / "CURRENT")) << report;
  EXPECT_FALSE(fs::exists(fs::path(state) / "000009.sst")) << report;
  EXPECT_FALSE(fs::exists(fs::path(state) / "metrics.json")) << report;
  EXPECT_NE(report.find("kept the directory"), std::string::npos) << report;
  EXPECT_NE(report.find("backup/, notes.txt"), std::string::npos) << report;
}

TEST_F(RetireTest, ADirectoryWithoutKappasMarkerIsRefused) {
  ScratchDir dir("no-marker");
  const std::string state = dir / "v2";
  Registry registry(Config());
  RegisterTwo(registry, dir, state);
  FillLikeAState(state);  // looks like a state, but kappa did not create it
  std::string report = RetireNow(2);
  EXPECT_TRUE(fs::exists(fs::path(state) / "CURRENT")) << report;
  EXPECT_NE(report.find("not deleting the state of version 2"), std::string::npos) << report;
  EXPECT_NE(report.find("no KAPPA_STATE marker"), std::string::npos) << report;

  // A marker naming another version is not this version's.
  Touch(fs::path(state) / kStateMarkerFile, "job: spend\nversion: 1\n");
  report = RetireNow(2);
  EXPECT_TRUE(fs::exists(fs::path(state) / "CURRENT")) << report;
  EXPECT_NE(report.find("names job spend version 1"), std::string::npos) << report;
}

TEST_F(RetireTest, AStateDirIsClaimedWithItsMarkerAndAnotherVersionsIsRefused) {
  ScratchDir dir("claim");
  const std::string state = dir / "nested/v2";
  ASSERT_TRUE(ClaimStateDir(state, "spend", 2).ok());
  auto marker = ReadStateMarker(state);
  ASSERT_TRUE(marker.has_value());
  EXPECT_EQ(marker->job, "spend");
  EXPECT_EQ(marker->version, 2);
  EXPECT_TRUE(ClaimStateDir(state, "spend", 2).ok()) << "a restart finds its own marker";
  Status st = ClaimStateDir(state, "spend", 3);
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("belongs to job spend version 2"), std::string::npos) << st.ToString();
  // A directory from before markers is used as it is, and not marked.
  fs::create_directories(dir / "old");
  EXPECT_TRUE(ClaimStateDir(dir / "old", "spend", 4).ok());
  EXPECT_FALSE(ReadStateMarker(dir / "old").has_value());
}

}  // namespace
}  // namespace kappa::testing
