// Background checkpoints on a real RocksDB directory: BeginCommit captures,
// the writer thread writes. Begin+wait stores exactly what Commit stores,
// pending commits land in epoch order, state changed right after
// BeginCommit stays out of that checkpoint, and a failed background write
// surfaces at the next call, sticks, and leaves the previous checkpoint whole.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "state/state_backend.h"
#include "tests/state/state_test_access.h"

namespace kappa {
namespace {

struct Value {
  int64_t a;
  int64_t b;
};

const std::vector<std::string> kTables = {"win", "dedup"};

std::string Key(int i) { return "user-" + std::to_string(i); }

class BackgroundCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = std::filesystem::temp_directory_path() /
            ("kappa-bgcommit-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
             "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(base_);
    dir_ = (base_ / "a").string();
  }
  void TearDown() override { std::filesystem::remove_all(base_); }
  std::unique_ptr<StateBackend> OpenOrDie(const std::string& dir) {
    auto b = StateBackend::Open(dir, kTables);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (!b.ok()) return nullptr;
    EXPECT_TRUE((*b)->CheckIdentity(id_).ok());
    return std::move(*b);
  }
  // Everything stored for `partition`: values by "table/key", plus the
  // task's next offset under "offset".
  std::map<std::string, int64_t> Stored(const std::string& dir, int32_t partition, int64_t* epoch = nullptr) {
    auto backend = OpenOrDie(dir);
    std::map<std::string, int64_t> out;
    if (!backend) return out;
    if (epoch) *epoch = backend->last_epoch();
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    auto* dedup = r.Register<Value>("dedup");
    EXPECT_TRUE(backend->Restore(partition, r).ok());
    win->ForEach([&](std::string_view k, const Value& v) {
      out["win/" + std::string(k)] = v.a;
      EXPECT_EQ(v.b, -v.a) << k;
    });
    dedup->ForEach([&](std::string_view k, const Value& v) { out["dedup/" + std::string(k)] = v.a; });
    auto task = backend->ReadTask(partition);
    EXPECT_TRUE(task.ok());
    if (task.ok() && *task) out["offset"] = (*task)->next_offset;
    return out;
  }
  std::filesystem::path base_;
  std::string dir_;
  const JobIdentity id_{"job", 1, "0123456789abcdef"};
};

// The same sequence of changes and checkpoints, through Commit on one
// directory and through BeginCommit + WaitForCommits on another.
TEST_F(BackgroundCommitTest, BeginThenWaitStoresWhatCommitStores) {
  const std::string other = (base_ / "b").string();
  for (const bool background : {false, true}) {
    auto backend = OpenOrDie(background ? other : dir_);
    ASSERT_TRUE(backend);
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    auto* dedup = r.Register<Value>("dedup");
    TaskCheckpointData t;
    t.partition = 3;
    for (int epoch = 1; epoch <= 3; ++epoch) {
      for (int i = 0; i < 1000; ++i) {
        Value& v = win->Upsert(Key(i * epoch % 1500), Value{0, 0});
        v.a += i;
        v.b = -v.a;
      }
      for (int i = 0; i < 300; i += 7) win->Erase(Key(i * epoch));
      dedup->Upsert("t" + std::to_string(epoch), Value{epoch, 0});
      t.next_offset = epoch * 1000;
      Result<CommitStats> stats = Status::OK();
      if (background) {
        auto begun = backend->BeginCommit(epoch, {{&t, &r}});
        ASSERT_TRUE(begun.ok()) << begun.status().ToString();
        EXPECT_EQ(begun->epoch, epoch);
        EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*win) + StateRegistryTestAccess::DirtyCount(*dedup), 0u) << "the capture clears the dirty sets";
        stats = backend->WaitForCommits();
        ASSERT_TRUE(stats.ok()) << stats.status().ToString();
        EXPECT_EQ(stats->dirty_entries, begun->dirty_entries);
        EXPECT_EQ(stats->erased_entries, begun->erased_entries);
      } else {
        stats = backend->Commit(epoch, {{&t, &r}});
        ASSERT_TRUE(stats.ok()) << stats.status().ToString();
      }
      EXPECT_EQ(stats->epoch, epoch);
      EXPECT_EQ(backend->last_epoch(), epoch);
    }
  }
  int64_t epoch_a = 0, epoch_b = 0;
  const auto a = Stored(dir_, 3, &epoch_a);
  const auto b = Stored(other, 3, &epoch_b);
  EXPECT_EQ(epoch_a, 3);
  EXPECT_EQ(epoch_b, 3);
  EXPECT_GT(a.size(), 1000u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.at("offset"), 3000);
}

TEST_F(BackgroundCommitTest, PendingCommitsLandInEpochOrder) {
  std::map<std::string, int64_t> expect;
  {
    auto backend = OpenOrDie(dir_);
    ASSERT_TRUE(backend);
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    r.Register<Value>("dedup");
    TaskCheckpointData t;
    for (int epoch = 1; epoch <= 8; ++epoch) {
      // Each epoch rewrites the same keys; an older epoch landing last would show.
      for (int i = 0; i < 20000; ++i) win->Upsert(Key(i), Value{0, 0}) = Value{epoch * 100000 + i, -(epoch * 100000 + i)};
      win->Erase(Key(epoch));  // erased for good: never re-inserted after this epoch
      for (int i = 1; i < epoch; ++i) win->Erase(Key(i));
      t.next_offset = epoch;
      auto begun = backend->BeginCommit(epoch, {{&t, &r}});
      ASSERT_TRUE(begun.ok()) << begun.status().ToString();
      EXPECT_LE(backend->last_epoch(), epoch);
      // An epoch must be above the last BEGUN one, durable or not.
      EXPECT_EQ(backend->BeginCommit(epoch, {{&t, &r}}).status().code(), Status::Code::kInvalidArgument);
    }
    auto done = backend->WaitForCommits();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(done->epoch, 8);
    EXPECT_EQ(backend->last_epoch(), 8);
    win->ForEach([&](std::string_view k, const Value& v) { expect["win/" + std::string(k)] = v.a; });
    expect["offset"] = 8;
  }
  int64_t epoch = 0;
  EXPECT_EQ(Stored(dir_, 0, &epoch), expect);
  EXPECT_EQ(epoch, 8);
  EXPECT_EQ(expect.count("win/" + Key(8)), 0u);
  EXPECT_EQ(expect.size(), 20000u - 8u + 1u);
}

// The first checkpoint's capture copies into buffers the writer faulted in
// ahead (PrepareCapture), not into fresh memory page by page inside the
// stall. 40 MB of changes: above glibc's largest mmap threshold, so a fresh
// buffer is always fresh memory.
TEST_F(BackgroundCommitTest, APreparedCaptureTakesNoPageFaultsInsideTheStall) {
  struct Wide {
    char bytes[256];
  };
  auto capture_faults = [&](const std::string& dir, bool prepare) -> long {
    auto b = StateBackend::Open(dir, kTables);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (!b.ok()) return -1;
    auto backend = std::move(*b);
    EXPECT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* win = r.Register<Wide>("win");
    r.Register<Value>("dedup");
    Wide w{};
    for (int i = 0; i < 150000; ++i) {
      std::memcpy(w.bytes, &i, sizeof(i));
      win->Upsert(Key(i), w) = w;
    }
    TaskCheckpointData t;
    t.next_offset = 150000;
    if (prepare) {
      backend->PrepareCapture({{&t, &r}}, 1.0);
      EXPECT_TRUE(backend->WaitForCommits().ok()) << "waits for the preparation too";
    }
    rusage before{}, after{};
    getrusage(RUSAGE_THREAD, &before);
    auto begun = backend->BeginCommit(1, {{&t, &r}});
    getrusage(RUSAGE_THREAD, &after);
    EXPECT_TRUE(begun.ok()) << begun.status().ToString();
    EXPECT_EQ(begun->dirty_entries, 150000u);
    EXPECT_TRUE(backend->WaitForCommits().ok());
    return after.ru_minflt - before.ru_minflt;
  };
  const long fresh = capture_faults((base_ / "fresh").string(), false);
  const long prepared = capture_faults((base_ / "prepared").string(), true);
  EXPECT_GT(fresh, 5000) << "the unprepared capture faulted its ~10 k pages in itself";
  EXPECT_LT(prepared, fresh / 10) << "the prepared capture took " << prepared << " page faults (unprepared: " << fresh
                                  << ")";
  // The prepared capture stored every entry, as the fresh one did.
  auto backend = OpenOrDie((base_ / "prepared").string());
  ASSERT_TRUE(backend);
  StateRegistry r;
  auto* win = r.Register<Wide>("win");
  r.Register<Value>("dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  size_t entries = 0;
  bool intact = true;
  win->ForEach([&](std::string_view k, const Wide& v) {
    int i;
    std::memcpy(&i, v.bytes, sizeof(i));
    intact &= k == Key(i);
    ++entries;
  });
  EXPECT_EQ(entries, 150000u);
  EXPECT_TRUE(intact);
}

// The key property: processing goes on, on the very same keys, right after
// BeginCommit; the stored checkpoint is exactly the state at BeginCommit.
TEST_F(BackgroundCommitTest, ChangesAfterBeginCommitStayOutOfThatCheckpoint) {
  constexpr int kKeys = 200000;
  std::map<std::string, int64_t> at_epoch1, at_epoch2;
  {
    auto backend = OpenOrDie(dir_);
    ASSERT_TRUE(backend);
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    auto* dedup = r.Register<Value>("dedup");
    TaskCheckpointData t;
    for (int i = 0; i < kKeys; ++i) win->Upsert(Key(i), Value{i, -i});
    for (int i = 0; i < 100; ++i) dedup->Upsert("old" + std::to_string(i), Value{i, 0});
    t.next_offset = 100;
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
    // Epoch 2's state: change half the keys, erase some.
    for (int i = 0; i < kKeys; i += 2) win->Upsert(Key(i), Value{0, 0}) = Value{i + 1, -(i + 1)};
    for (int i = 0; i < 50; ++i) dedup->Erase("old" + std::to_string(i));
    t.next_offset = 200;
    win->ForEach([&](std::string_view k, const Value& v) { at_epoch2["win/" + std::string(k)] = v.a; });
    dedup->ForEach([&](std::string_view k, const Value& v) { at_epoch2["dedup/" + std::string(k)] = v.a; });
    at_epoch2["offset"] = 200;
    auto begun = backend->BeginCommit(2, {{&t, &r}});
    ASSERT_TRUE(begun.ok()) << begun.status().ToString();
    EXPECT_EQ(begun->dirty_entries, static_cast<size_t>(kKeys / 2));
    EXPECT_EQ(begun->erased_entries, 50u);
    // ...and straight on, while epoch 2 is being written: every key
    // changes, some vanish, new ones come, erased ones come back.
    for (int i = 0; i < kKeys; ++i) win->Upsert(Key(i), Value{0, 0}) = Value{-7, 7};
    for (int i = 0; i < kKeys; i += 3) win->Erase(Key(i));
    for (int i = kKeys; i < kKeys + 1000; ++i) win->Upsert(Key(i), Value{5, -5});
    for (int i = 0; i < 50; ++i) dedup->Upsert("old" + std::to_string(i), Value{99, 0});
    for (int i = 50; i < 100; ++i) dedup->Erase("old" + std::to_string(i));
    t.next_offset = 300;  // the task moves on too; the capture holds 200
    auto done = backend->WaitForCommits();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(done->epoch, 2);
    // Closed without committing the later changes: as if it crashed here.
  }
  int64_t epoch = 0;
  const auto stored = Stored(dir_, 0, &epoch);
  EXPECT_EQ(epoch, 2);
  EXPECT_EQ(stored.size(), at_epoch2.size());
  EXPECT_TRUE(stored == at_epoch2) << "the stored checkpoint differs from the state at BeginCommit";
}

TEST_F(BackgroundCommitTest, AFailedWriteSurfacesAtTheNextCallAndSticks) {
  {
    auto backend = OpenOrDie(dir_);
    ASSERT_TRUE(backend);
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    r.Register<Value>("dedup");
    TaskCheckpointData t;
    for (int i = 0; i < 100; ++i) win->Upsert(Key(i), Value{i, -i});
    t.next_offset = 100;
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
    backend->FailNextWriteForTesting("disk on fire");
    for (int i = 0; i < 100; ++i) win->Upsert(Key(i), Value{0, 0}) = Value{-1, 1};
    t.next_offset = 200;
    ASSERT_TRUE(backend->BeginCommit(2, {{&t, &r}}).ok()) << "the capture itself cannot fail";
    // Processing goes on; epoch 3 begins while epoch 2 may still be in
    // flight (then it is queued, and dropped when 2 fails: it builds on 2)
    // or after 2 failed (then it is refused with 2's error).
    win->Upsert("x", Value{1, -1});
    auto third = backend->BeginCommit(3, {{&t, &r}});
    if (!third.ok()) {
      EXPECT_EQ(third.status().code(), Status::Code::kIOError);
      EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*win), 1u) << "a refused BeginCommit captures nothing";
    }
    auto waited = backend->WaitForCommits();
    ASSERT_FALSE(waited.ok());
    EXPECT_EQ(waited.status().code(), Status::Code::kIOError);
    EXPECT_NE(waited.status().message().find("checkpoint 2"), std::string::npos) << waited.status().ToString();
    EXPECT_NE(waited.status().message().find("disk on fire"), std::string::npos) << waited.status().ToString();
    // Sticky: no later checkpoint may claim epoch 2's changes.
    EXPECT_EQ(backend->BeginCommit(4, {{&t, &r}}).status().code(), Status::Code::kIOError);
    EXPECT_EQ(backend->WaitForCommits().status().code(), Status::Code::kIOError);
    EXPECT_EQ(backend->Commit(5, {{&t, &r}}).status().code(), Status::Code::kIOError);
    EXPECT_EQ(backend->last_epoch(), 1);
  }
  int64_t epoch = 0;
  const auto stored = Stored(dir_, 0, &epoch);
  EXPECT_EQ(epoch, 1);
  EXPECT_EQ(stored.at("offset"), 100);
  EXPECT_EQ(stored.size(), 101u);
  EXPECT_EQ(stored.at("win/" + Key(7)), 7);
}

// A real write error, from the kernel: the child process may not grow any
// file (RLIMIT_FSIZE) past what epoch 1 left, so epoch 2's WAL write fails.
// The child either gets the IOError (and checks it sticks) or is aborted by
// an assertion inside Debian's RocksDB (built with assertions on); either
// way epoch 1 must be whole afterwards.
TEST_F(BackgroundCommitTest, ARealWriteErrorLeavesThePreviousCheckpointWhole) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(60);
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead of killing us
    auto opened = StateBackend::Open(dir_, kTables);
    if (!opened.ok() || !(*opened)->CheckIdentity(id_).ok()) ::_exit(10);
    auto& backend = *opened;
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    r.Register<Value>("dedup");
    TaskCheckpointData t;
    for (int i = 0; i < 100; ++i) win->Upsert(Key(i), Value{i, -i});
    t.next_offset = 100;
    if (!backend->Commit(1, {{&t, &r}}).ok()) ::_exit(11);
    uint64_t biggest = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
      if (e.is_regular_file()) biggest = std::max<uint64_t>(biggest, e.file_size());
    }
    rlimit limit{biggest + 4096, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(12);
    for (int i = 0; i < 100000; ++i) win->Upsert(Key(i), Value{0, 0}) = Value{-1, 1};
    t.next_offset = 200;
    if (!backend->BeginCommit(2, {{&t, &r}}).ok()) ::_exit(13);
    auto waited = backend->WaitForCommits();
    if (waited.ok()) ::_exit(14);
    if (waited.status().code() != Status::Code::kIOError) ::_exit(15);
    if (backend->last_epoch() != 1) ::_exit(16);
    if (backend->BeginCommit(3, {{&t, &r}}).ok()) ::_exit(17);
    // The job stops here. Leave without closing the store, as a crash would.
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  const bool rocksdb_aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  if (!rocksdb_aborted) {
    ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
    ASSERT_EQ(WEXITSTATUS(status), 0) << "child failed at step " << WEXITSTATUS(status);
  }
  int64_t epoch = 0;
  const auto stored = Stored(dir_, 0, &epoch);
  EXPECT_EQ(epoch, 1);
  EXPECT_EQ(stored.at("offset"), 100);
  EXPECT_EQ(stored.size(), 101u);
  EXPECT_EQ(stored.at("win/" + Key(7)), 7);
}

TEST_F(BackgroundCommitTest, ReadsRightAfterBeginCommitSeeThatCheckpoint) {
  auto backend = OpenOrDie(dir_);
  ASSERT_TRUE(backend);
  StateRegistry r;
  auto* win = r.Register<Value>("win");
  r.Register<Value>("dedup");
  TaskCheckpointData t;
  t.partition = 5;
  for (int i = 0; i < 100000; ++i) win->Upsert(Key(i), Value{i, -i});
  t.next_offset = 42;
  ASSERT_TRUE(backend->BeginCommit(1, {{&t, &r}}).ok());
  // No WaitForCommits: the reads wait for the pending write themselves.
  auto task = backend->ReadTask(5);
  ASSERT_TRUE(task.ok() && *task);
  EXPECT_EQ((*task)->next_offset, 42);
  EXPECT_EQ(backend->last_epoch(), 1);
  EXPECT_EQ(backend->StoredPartitions(), std::vector<int32_t>{5});
  StateRegistry restored;
  auto* w = restored.Register<Value>("win");
  ASSERT_TRUE(backend->Restore(5, restored).ok());
  EXPECT_EQ(w->size(), 100000u);
}

TEST_F(BackgroundCommitTest, ClosingWithCommitsPendingFinishesThem) {
  {
    auto backend = OpenOrDie(dir_);
    ASSERT_TRUE(backend);
    StateRegistry r;
    auto* win = r.Register<Value>("win");
    r.Register<Value>("dedup");
    TaskCheckpointData t;
    for (int i = 0; i < 50000; ++i) win->Upsert(Key(i), Value{i, -i});
    t.next_offset = 7;
    ASSERT_TRUE(backend->BeginCommit(1, {{&t, &r}}).ok());
  }
  int64_t epoch = 0;
  const auto stored = Stored(dir_, 0, &epoch);
  EXPECT_EQ(epoch, 1);
  EXPECT_EQ(stored.size(), 50001u);
}

}  // namespace
}  // namespace kappa
