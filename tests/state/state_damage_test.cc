// Damaged state is an error, never a silent restart from epoch 0: real
// RocksDB directories, checkpointed, closed, then damaged from outside the
// way a disk, an operator or a bad copy would (MANIFEST truncated, CURRENT
// missing, the WAL deleted, an older copy restored under a newer epoch
// marker). Open must refuse, naming the directory, the problem and how to
// start over; StateBackend::Reset starts over deleting only kappa's files.
// Also the free-space headroom check, with an injected free-space function.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>

#include "state/state_backend.h"
#include "state/state_headroom.h"

namespace kappa {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTables = {"op1_window"};

class DamagedStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("kappa-damaged-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
             std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Checkpoints epochs 1..epochs (one state entry each) and closes.
  void Checkpoint(int64_t epochs) {
    auto backend = StateBackend::Open(dir_, kTables);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    ASSERT_TRUE((*backend)->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* table = r.Register<int64_t>("op1_window");
    TaskCheckpointData t;
    for (int64_t e = (*backend)->last_epoch() + 1; e <= epochs; ++e) {
      table->Upsert("k" + std::to_string(e), e);
      t.next_offset = e * 10;
      auto c = (*backend)->Commit(e, {{&t, &r}});
      ASSERT_TRUE(c.ok()) << c.status().ToString();
    }
  }
  std::vector<fs::path> Files(const std::string& prefix_or_suffix, bool suffix) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      const bool match = suffix ? name.ends_with(prefix_or_suffix) : name.starts_with(prefix_or_suffix);
      if (match) out.push_back(e.path());
    }
    return out;
  }
  // Open must fail with Corruption naming the directory, `problem` and the way out.
  void ExpectRefused(const std::string& problem) {
    auto backend = StateBackend::Open(dir_, kTables);
    ASSERT_FALSE(backend.ok()) << "a damaged state directory was opened (epoch " << (*backend)->last_epoch()
                               << ")";
    const std::string& m = backend.status().message();
    EXPECT_EQ(backend.status().code(), Status::Code::kCorruption) << backend.status().ToString();
    EXPECT_NE(m.find(dir_), std::string::npos) << m;
    EXPECT_NE(m.find(problem), std::string::npos) << m;
    EXPECT_NE(m.find("--reset-state"), std::string::npos) << m;
  }

  std::string dir_;
  const JobIdentity id_{"job", 1, "0123456789abcdef"};
};

TEST_F(DamagedStateTest, EachDurableCheckpointLeavesTheEpochMarker) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  auto marker = ReadEpochMarker(dir_);
  ASSERT_TRUE(marker.ok()) << marker.status().ToString();
  ASSERT_TRUE(marker->has_value());
  EXPECT_EQ(**marker, 3);
  // And a healthy directory reopens at that epoch.
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->last_epoch(), 3);
}

TEST_F(DamagedStateTest, MissingCurrentIsCorruptionNotAFreshStart) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  fs::remove(fs::path(dir_) / "CURRENT");
  ExpectRefused("CURRENT");
}

TEST_F(DamagedStateTest, TruncatedManifestIsCorruptionNotAFreshStart) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  auto manifests = Files("MANIFEST-", false);
  ASSERT_FALSE(manifests.empty());
  for (const auto& m : manifests) fs::resize_file(m, fs::file_size(m) / 2);
  ExpectRefused("MANIFEST");
}

// A MANIFEST cut short loses its last edits: RocksDB opened from what was
// left, deleted the newest table files as obsolete, and the state missed
// their entries while the checkpoint's epoch, in the WAL, looked whole (cut
// at 280 to 630 of 636 bytes in a bash of kappa get's table, which shares
// the fault; a job's state the same). Each cut is refused, also at the next
// start, or loses nothing.
TEST_F(DamagedStateTest, AManifestCutAnywhereIsRefusedOrLosesNothing) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  ASSERT_NO_FATAL_FAILURE(Checkpoint(6));  // this open writes the first's WAL into a table file
  ASSERT_FALSE(Files(".sst", true).empty()) << "no table file to lose";
  const auto manifests = Files("MANIFEST-", false);
  ASSERT_EQ(manifests.size(), 1u);
  const fs::path manifest_name = manifests[0].filename();
  const uintmax_t size = fs::file_size(manifests[0]);
  const std::string built = dir_ + ".built";
  fs::remove_all(built);
  fs::copy(dir_, built, fs::copy_options::recursive);
  int refused = 0, whole = 0;
  for (uintmax_t cut = 1; cut < size; cut += std::max<uintmax_t>(1, size / 24)) {
    SCOPED_TRACE("MANIFEST cut to " + std::to_string(cut) + " of " + std::to_string(size) + " bytes");
    fs::remove_all(dir_);
    fs::copy(built, dir_, fs::copy_options::recursive);
    fs::resize_file(fs::path(dir_) / manifest_name, cut);
    {
      auto backend = StateBackend::Open(dir_, kTables);
      if (!backend.ok()) {
        EXPECT_EQ(backend.status().code(), Status::Code::kCorruption) << backend.status().ToString();
        ++refused;
        auto again = StateBackend::Open(dir_, kTables);
        EXPECT_FALSE(again.ok()) << "refused once, then opened without the lost entries";
        continue;
      }
      ASSERT_TRUE((*backend)->CheckIdentity(id_).ok());
      StateRegistry r;
      auto* table = r.Register<int64_t>("op1_window");
      ASSERT_TRUE((*backend)->Restore(0, r).ok());
      EXPECT_EQ(table->size(), 6u) << "opened without some of its entries (epoch " << (*backend)->last_epoch() << ")";
      ++whole;
    }
  }
  EXPECT_GT(refused, 0);
  fs::remove_all(built);
  for (const auto& e : fs::directory_iterator(fs::path(dir_).parent_path())) {
    if (e.path().string().starts_with(dir_ + ".dropped-tables-")) fs::remove_all(e.path());
  }
}

TEST_F(DamagedStateTest, EmptiedManifestIsCorruptionNotAFreshStart) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  for (const auto& m : Files("MANIFEST-", false)) fs::resize_file(m, 0);
  ExpectRefused("MANIFEST");
}

TEST_F(DamagedStateTest, DeletedWalIsCorruptionNotAFreshStart) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  auto logs = Files(".log", true);
  ASSERT_FALSE(logs.empty()) << "the checkpoints should still be in the WAL";
  for (const auto& l : logs) fs::remove(l);
  ExpectRefused("epoch");
}

TEST_F(DamagedStateTest, AnOlderCopyUnderANewerMarkerIsRefusedAsEpochGoingBackwards) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(2));
  const std::string old_copy = dir_ + ".old";
  fs::remove_all(old_copy);
  fs::copy(dir_, old_copy, fs::copy_options::recursive);
  ASSERT_NO_FATAL_FAILURE(Checkpoint(5));
  // Restore RocksDB's files of epoch 2, keep the marker of epoch 5.
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().filename() != kEpochMarkerFile) fs::remove_all(e.path());
  }
  for (const auto& e : fs::directory_iterator(old_copy)) {
    if (e.path().filename() != kEpochMarkerFile) fs::copy(e.path(), fs::path(dir_) / e.path().filename());
  }
  fs::remove_all(old_copy);
  ExpectRefused("epoch 2");
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("5"), std::string::npos) << backend.status().message();
}

TEST_F(DamagedStateTest, RocksDbFilesGoneButTheMarkerLeftIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().filename() != kEpochMarkerFile) fs::remove_all(e.path());
  }
  ExpectRefused("epoch 3");
}

TEST_F(DamagedStateTest, AGarbledMarkerIsCorruption) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(1));
  std::ofstream(fs::path(dir_) / kEpochMarkerFile, std::ios::trunc) << "not an epoch";
  ExpectRefused(kEpochMarkerFile);
}

// A marker replaced by a directory: reading it threw from the ifstream's
// buffer, and kappa run aborted ("terminate called ... Is a directory").
TEST_F(DamagedStateTest, AMarkerThatIsADirectoryIsCorruptionNotAnAbort) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(2));
  fs::remove(fs::path(dir_) / kEpochMarkerFile);
  fs::create_directory(fs::path(dir_) / kEpochMarkerFile);
  ExpectRefused("is not a regular file");
  // And the advice works: a reset clears it, and the state opens fresh.
  auto reset = StateBackend::Reset(dir_);
  ASSERT_TRUE(reset.ok()) << reset.status().ToString();
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->last_epoch(), 0);
}

// A data block of an SST damaged: found only when the table is read back
// (a restore). The error named the table but not the way out.
TEST_F(DamagedStateTest, ADamagedSstFoundWhileRestoringSaysHowToStartOver) {
  {
    auto backend = StateBackend::Open(dir_, kTables);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    ASSERT_TRUE((*backend)->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* table = r.Register<int64_t>("op1_window");
    for (int64_t k = 0; k < 20000; ++k) table->Upsert("key-" + std::to_string(k), k);
    TaskCheckpointData t;
    t.next_offset = 20000;
    ASSERT_TRUE((*backend)->Commit(1, {{&t, &r}}).ok());
    ASSERT_TRUE((*backend)->CompactForTesting().ok());
  }
  const auto ssts = Files(".sst", true);
  ASSERT_FALSE(ssts.empty());
  for (const auto& p : ssts) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(p));
    for (std::streamoff at = 64; at < size / 2; at += 211) {
      f.seekp(at);
      f.put('\x5a');
    }
  }
  auto backend = StateBackend::Open(dir_, kTables);
  Status st = backend.ok() ? Status::OK() : backend.status();
  if (backend.ok()) {
    StateRegistry r;
    r.Register<int64_t>("op1_window");
    st = (*backend)->Restore(0, r);
  }
  ASSERT_FALSE(st.ok()) << "a damaged SST was read back as good";
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(dir_), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("--reset-state"), std::string::npos) << st.message();
}

TEST_F(DamagedStateTest, ADirectoryOfOtherFilesIsNotKappaStateAndOpensFresh) {
  fs::create_directories(dir_);
  std::ofstream(fs::path(dir_) / "README") << "mine";
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->last_epoch(), 0);
}

TEST_F(DamagedStateTest, ResetDeletesOnlyKappasFilesThenStartsFromScratch) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(3));
  for (const auto& m : Files("MANIFEST-", false)) fs::resize_file(m, 0);
  std::ofstream(fs::path(dir_) / "notes.txt") << "not kappa's";
  fs::create_directories(fs::path(dir_) / "subdir");
  std::ofstream(fs::path(dir_) / "metrics.json") << "{}";

  auto reset = StateBackend::Reset(dir_);
  ASSERT_TRUE(reset.ok()) << reset.status().ToString();
  EXPECT_FALSE(reset->removed.empty());
  EXPECT_NE(std::find(reset->removed.begin(), reset->removed.end(), kEpochMarkerFile), reset->removed.end());
  EXPECT_NE(std::find(reset->removed.begin(), reset->removed.end(), "CURRENT"), reset->removed.end());
  EXPECT_EQ(reset->kept, (std::vector<std::string>{"notes.txt", "subdir"}));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "notes.txt"));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "subdir"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "metrics.json"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / kEpochMarkerFile));
  EXPECT_TRUE(Files("MANIFEST-", false).empty());

  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->last_epoch(), 0);
}

TEST_F(DamagedStateTest, ResetOfAMissingDirectoryIsANoOp) {
  auto reset = StateBackend::Reset(dir_);
  ASSERT_TRUE(reset.ok()) << reset.status().ToString();
  EXPECT_TRUE(reset->removed.empty());
}

// A LOCK that became a directory: RocksDB cannot lock it, and the error
// said another kappa process held the state, sending the user after one.
TEST_F(DamagedStateTest, ALockThatIsADirectoryIsNamedNotBlamedOnAnotherProcess) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(1));
  fs::remove(fs::path(dir_) / "LOCK");
  fs::create_directory(fs::path(dir_) / "LOCK");
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_FALSE(backend.ok());
  const std::string& m = backend.status().message();
  EXPECT_NE(m.find("its LOCK is not a file (a directory)"), std::string::npos) << m;
  EXPECT_EQ(m.find("another kappa process"), std::string::npos) << m;
  fs::remove(fs::path(dir_) / "LOCK");
  auto reopened = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->last_epoch(), 1);
}

TEST_F(DamagedStateTest, ResetRefusesADirectoryInUse) {
  ASSERT_NO_FATAL_FAILURE(Checkpoint(1));
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_TRUE(backend.ok());
  auto reset = StateBackend::Reset(dir_);
  ASSERT_FALSE(reset.ok());
  EXPECT_EQ(reset.status().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "CURRENT"));
}

// A RocksDB write that fails for want of space (no headroom check here) is
// an IOError from the background writer, never an abort inside RocksDB, and
// the store reopens at its last durable checkpoint. Needs root (mount).
TEST_F(DamagedStateTest, AWriteOnAFullDiskIsAStatusNotAnAbort) {
  const std::string mnt = dir_ + "-fs";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") != 0) {
    const int e = errno;
    fs::remove_all(mnt);
    GTEST_SKIP() << "cannot mount a small tmpfs (" << std::strerror(e) << "): needs root or CAP_SYS_ADMIN";
  }
  struct Unmount {
    std::string path;
    ~Unmount() {
      ::umount2(path.c_str(), MNT_DETACH);
      fs::remove_all(path);
    }
  } unmount{mnt};
  const std::string state = mnt + "/state";
  {
    auto backend = StateBackend::Open(state, kTables);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    ASSERT_TRUE((*backend)->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* table = r.Register<int64_t>("op1_window");
    TaskCheckpointData t;
    table->Upsert("a", 1);
    ASSERT_TRUE((*backend)->Commit(1, {{&t, &r}}).ok());
    // Fill the disk, then write checkpoints bigger than what is left.
    {
      std::ofstream filler(mnt + "/filler", std::ios::binary);
      const std::string block(4096, 'x');
      while (filler.write(block.data(), block.size())) {
      }
    }
    Status failed;
    for (int64_t e = 2; e < 6 && failed.ok(); ++e) {
      for (int i = 0; i < 20000; ++i) table->Upsert("key-" + std::to_string(e) + "-" + std::to_string(i), i);
      auto c = (*backend)->Commit(e, {{&t, &r}});
      if (!c.ok()) failed = c.status();
    }
    ASSERT_FALSE(failed.ok()) << "the disk never filled up";
    EXPECT_EQ(failed.code(), Status::Code::kIOError) << failed.ToString();
    EXPECT_NE(failed.message().find(state), std::string::npos) << failed.message();
  }  // closing a store whose write failed must not abort either
  fs::remove(mnt + "/filler");
  auto marker = ReadEpochMarker(state);
  ASSERT_TRUE(marker.ok()) << marker.status().ToString();
  auto backend = StateBackend::Open(state, kTables);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_GE((*backend)->last_epoch(), 1);
  ASSERT_TRUE(marker->has_value());
  EXPECT_LE(**marker, (*backend)->last_epoch());
}

// The headroom check alone, with the free space injected.
TEST(StateHeadroomTest, NeedsTheLargerOfTheMinimumAndTwiceTheLastCheckpoint) {
  HeadroomPolicy policy;  // 64 MiB, 2x
  int64_t free_bytes = 0;
  std::string asked;
  FreeSpaceFn free_fn = [&](const std::string& dir) -> Result<int64_t> {
    asked = dir;
    return free_bytes;
  };
  const int64_t mib = int64_t{1} << 20;
  free_bytes = 100 * mib;
  EXPECT_TRUE(CheckHeadroom("/state", 10 * mib, policy, free_fn).ok());
  EXPECT_EQ(asked, "/state");
  // 2 x 60 MiB = 120 MiB > 100 MiB free.
  Status st = CheckHeadroom("/state", 60 * mib, policy, free_fn);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "state dir /state has 100 MiB free, needs 120 MiB (twice the last checkpoint's 60 MiB): free space "
            "or move --state-dir");
  free_bytes = 10 * mib;
  st = CheckHeadroom("/state", 0, policy, free_fn);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "state dir /state has 10 MiB free, needs 64 MiB: free space or move --state-dir");
  // A smaller configured minimum.
  policy.min_bytes = 8 * mib;
  EXPECT_TRUE(CheckHeadroom("/state", 0, policy, free_fn).ok());
  // Disabled.
  policy.min_bytes = 0;
  policy.checkpoint_factor = 0;
  free_bytes = 0;
  EXPECT_TRUE(CheckHeadroom("/state", 60 * mib, policy, free_fn).ok());
}

TEST(StateHeadroomTest, AFailingStatvfsIsAnErrorAndTheRealOneWorks) {
  FreeSpaceFn broken = [](const std::string&) -> Result<int64_t> { return Status::IOError("statvfs: boom"); };
  Status st = CheckHeadroom("/state", 0, HeadroomPolicy{}, broken);
  EXPECT_EQ(st.code(), Status::Code::kIOError);
  auto real = StatvfsFreeBytes(fs::temp_directory_path().string());
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  EXPECT_GT(*real, 0);
  EXPECT_FALSE(StatvfsFreeBytes("/nonexistent/kappa/state").ok());
}

}  // namespace
}  // namespace kappa
