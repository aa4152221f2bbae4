// The RocksDB state backend on a real directory: checkpoint/restore round
// trips per partition, erasures, identity checks, refused commits leaving no
// trace, exclusive use (in this process and from another), corruption.
#include "state/state_backend.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <rocksdb/db.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <filesystem>

#include "schemas/checkpoint_generated.h"
#include "tests/state/state_test_access.h"

namespace kappa {
namespace {

struct Value {
  int64_t a;
  int64_t b;
};

const std::vector<std::string> kTables = {"op1_window", "op2_dedup"};

std::string Partition4(uint32_t p) {
  return std::string{static_cast<char>(p >> 24), static_cast<char>(p >> 16), static_cast<char>(p >> 8),
                     static_cast<char>(p)};
}

// Writes one raw value into a closed state directory, as damage from outside would.
void RawPut(const std::string& dir, const std::string& family, const std::string& key,
            const std::string& value) {
  rocksdb::Options options;
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(options, dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir, cfs, &handles, &db).ok());
  bool written = false;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == family) written = db->Put(rocksdb::WriteOptions(), handles[i], key, value).ok();
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  ASSERT_TRUE(written) << "no column family " << family;
}

class StateBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("kappa-state-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
             "-" + std::to_string(::getpid())))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<StateBackend> OpenOrDie(const std::vector<std::string>& tables = kTables) {
    auto b = StateBackend::Open(dir_, tables);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  }
  std::string dir_;
  const JobIdentity id_{"job", 1, "0123456789abcdef"};
};

TEST_F(StateBackendTest, CommitThenReopenRestoresStateAndCheckpointsPerPartition) {
  TaskCheckpointData t0, t1;
  t0.partition = 0;
  t0.next_offset = 42;
  t0.max_event_time_ms = 1000;
  t0.counters = {.in = 42, .out = 30, .deduped = 3, .filtered = 4, .late = 3, .dlq = 2, .outputs = 17};
  t0.start_offset = 0;
  t1.partition = 1;
  t1.next_offset = 7;
  t1.start_offset = 5;  // history below 5 was missing; max_event_time stays "none seen"
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    EXPECT_EQ(backend->last_epoch(), 0);
    StateRegistry r0, r1;
    auto* w0 = r0.Register<Value>("op1_window");
    auto* d0 = r0.Register<int64_t>("op2_dedup");
    auto* w1 = r1.Register<Value>("op1_window");
    w0->Upsert("alice", Value{1, 2});
    w0->Upsert("bob", Value{3, 4});
    d0->Upsert("txn-1", 111);
    w1->Upsert("alice", Value{9, 9});
    auto stats = backend->Commit(1, {{&t0, &r0}, {&t1, &r1}});
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->epoch, 1);
    EXPECT_EQ(stats->dirty_entries, 4u);
    EXPECT_EQ(stats->erased_entries, 0u);
    EXPECT_GT(stats->bytes, 0u);
    EXPECT_EQ(backend->last_epoch(), 1);
    EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*w0), 0u);
    EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*d0), 0u);
    EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*w1), 0u);
    // A second commit without changes writes no state entries, only the records.
    t0.next_offset = 50;
    auto again = backend->Commit(2, {{&t0, &r0}, {&t1, &r1}});
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->dirty_entries, 0u);
    EXPECT_EQ(again->erased_entries, 0u);
    EXPECT_LT(again->bytes, stats->bytes);
  }
  auto backend = OpenOrDie();
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  EXPECT_EQ(backend->last_epoch(), 2);
  EXPECT_EQ(backend->StoredPartitions(), (std::vector<int32_t>{0, 1}));

  auto stored0 = backend->ReadTask(0);
  ASSERT_TRUE(stored0.ok()) << stored0.status().ToString();
  ASSERT_TRUE(stored0->has_value());
  const TaskCheckpointData& c0 = **stored0;
  EXPECT_EQ(c0.partition, 0);
  EXPECT_EQ(c0.next_offset, 50);
  EXPECT_EQ(c0.max_event_time_ms, 1000);
  EXPECT_EQ(c0.start_offset, 0);
  EXPECT_EQ(c0.counters.in, 42);
  EXPECT_EQ(c0.counters.out, 30);
  EXPECT_EQ(c0.counters.deduped, 3);
  EXPECT_EQ(c0.counters.filtered, 4);
  EXPECT_EQ(c0.counters.late, 3);
  EXPECT_EQ(c0.counters.dlq, 2);
  EXPECT_EQ(c0.counters.outputs, 17);
  EXPECT_TRUE(c0.counters.Balanced());
  auto stored1 = backend->ReadTask(1);
  ASSERT_TRUE(stored1.ok() && stored1->has_value());
  EXPECT_EQ((*stored1)->next_offset, 7);
  EXPECT_EQ((*stored1)->start_offset, 5);
  EXPECT_EQ((*stored1)->max_event_time_ms, std::numeric_limits<int64_t>::min());
  EXPECT_EQ((*stored1)->counters.in, 0);
  auto none = backend->ReadTask(5);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  StateRegistry r0;
  auto* w0 = r0.Register<Value>("op1_window");
  auto* d0 = r0.Register<int64_t>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r0).ok());
  EXPECT_EQ(w0->size(), 2u) << "only partition 0's entries";
  ASSERT_NE(w0->Find("alice"), nullptr);
  EXPECT_EQ(w0->Find("alice")->a, 1);
  EXPECT_EQ(w0->Find("alice")->b, 2);
  ASSERT_NE(w0->Find("bob"), nullptr);
  EXPECT_EQ(w0->Find("bob")->a, 3);
  EXPECT_EQ(w0->Find("bob")->b, 4);
  ASSERT_EQ(d0->size(), 1u);
  EXPECT_EQ(*d0->Find("txn-1"), 111);
  EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*w0) + StateRegistryTestAccess::DirtyCount(*d0), 0u) << "restored entries are clean";
  StateRegistry r1;
  auto* w1 = r1.Register<Value>("op1_window");
  auto* d1 = r1.Register<int64_t>("op2_dedup");
  ASSERT_TRUE(backend->Restore(1, r1).ok());
  ASSERT_EQ(w1->size(), 1u);
  EXPECT_EQ(w1->Find("alice")->a, 9);
  EXPECT_EQ(d1->size(), 0u);
}

// The state directory takes about what its state needs: RocksDB reserved
// ~72 MiB for the WAL at once (fallocate), so a 1 MiB state on a 100 MiB
// volume was refused by the free-space check with df showing 99 MiB free (a
// bug bash).
TEST_F(StateBackendTest, TheWriteAheadLogReservesNoSpaceAhead) {
  auto backend = OpenOrDie();
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  TaskCheckpointData t0;
  t0.partition = 0;
  t0.next_offset = 1;
  StateRegistry r0;
  r0.Register<int64_t>("op2_dedup")->Upsert("txn-1", 111);
  ASSERT_TRUE(backend->Commit(1, {{&t0, &r0}}).ok());
  int64_t allocated = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    struct stat st {};
    if (entry.path().extension() == ".log" && ::stat(entry.path().c_str(), &st) == 0) {
      allocated += static_cast<int64_t>(st.st_blocks) * 512;
    }
  }
  EXPECT_LT(allocated, int64_t{4} << 20) << "bytes the WAL files hold on disk";
}

TEST_F(StateBackendTest, ErasuresPersistAndEraseThenReinsertKeepsTheNewValue) {
  TaskCheckpointData t;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* s = r.Register<Value>("op2_dedup");
    s->Upsert("gone", Value{1, 1});
    s->Upsert("back", Value{2, 2});
    s->Upsert("kept", Value{4, 4});
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
    s->Erase("gone");
    s->Erase("back");
    s->Upsert("back", Value{3, 3});
    auto stats = backend->Commit(2, {{&t, &r}});
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->erased_entries, 2u);
    EXPECT_EQ(stats->dirty_entries, 1u);
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  EXPECT_EQ(s->size(), 2u);
  EXPECT_EQ(s->Find("gone"), nullptr);
  ASSERT_NE(s->Find("back"), nullptr);
  EXPECT_EQ(s->Find("back")->a, 3);
  ASSERT_NE(s->Find("kept"), nullptr);
  EXPECT_EQ(s->Find("kept")->a, 4);
}

TEST_F(StateBackendTest, UncommittedChangesAreNotVisibleAfterReopen) {
  TaskCheckpointData t;
  t.next_offset = 10;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* s = r.Register<Value>("op1_window");
    s->Upsert("kept", Value{1, 1});
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
    s->Upsert("lost", Value{2, 2});  // the process dies before the next checkpoint
    s->Erase("kept");
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  EXPECT_NE(s->Find("kept"), nullptr);
  EXPECT_EQ(s->Find("lost"), nullptr);
  EXPECT_EQ((*backend->ReadTask(0))->next_offset, 10);
}

TEST_F(StateBackendTest, PartitionsDoNotSeeEachOthersState) {
  // 255/256 straddle a byte of the big-endian prefix; -1 is the all-0xff prefix.
  const std::vector<int32_t> partitions = {0, 1, 255, 256, -1};
  std::vector<TaskCheckpointData> tasks(partitions.size());
  std::vector<StateRegistry> registries(partitions.size());
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    std::vector<StateBackend::TaskSnapshot> snapshots;
    for (size_t i = 0; i < partitions.size(); ++i) {
      tasks[i].partition = partitions[i];
      tasks[i].next_offset = 100 + i;
      auto* s = registries[i].Register<Value>("op1_window");
      s->Upsert("shared", Value{partitions[i], 0});
      s->Upsert("only-" + std::to_string(partitions[i]), Value{1, 1});
      snapshots.push_back({&tasks[i], &registries[i]});
    }
    ASSERT_TRUE(backend->Commit(1, snapshots).ok());
    // Erasing the shared key in partition 255 must not touch partition 256's.
    static_cast<KeyedTable<Value>*>(StateRegistryTestAccess::Tables(registries[2])[0].get())->state().Erase("shared");
    ASSERT_TRUE(backend->Commit(2, snapshots).ok());
  }
  auto backend = OpenOrDie();
  EXPECT_EQ(backend->StoredPartitions(), (std::vector<int32_t>{0, 1, 255, 256, -1}));
  for (size_t i = 0; i < partitions.size(); ++i) {
    SCOPED_TRACE("partition " + std::to_string(partitions[i]));
    StateRegistry r;
    auto* s = r.Register<Value>("op1_window");
    ASSERT_TRUE(backend->Restore(partitions[i], r).ok());
    ASSERT_NE(s->Find("only-" + std::to_string(partitions[i])), nullptr);
    if (partitions[i] == 255) {
      EXPECT_EQ(s->size(), 1u);
      EXPECT_EQ(s->Find("shared"), nullptr);
    } else {
      EXPECT_EQ(s->size(), 2u);
      ASSERT_NE(s->Find("shared"), nullptr);
      EXPECT_EQ(s->Find("shared")->a, partitions[i]);
    }
    auto stored = backend->ReadTask(partitions[i]);
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ((*stored)->next_offset, static_cast<int64_t>(100 + i));
  }
  StateRegistry empty;
  auto* s = empty.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(7, empty).ok());
  EXPECT_EQ(s->size(), 0u);
}

TEST_F(StateBackendTest, IdentityMismatchIsRefusedNamingBothSides) {
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    // No Commit: the identity alone must already be durable.
  }
  {
    auto backend = OpenOrDie();
    EXPECT_EQ(backend->last_epoch(), 0);
    // Never checkpointed, another job or version is still refused.
    JobIdentity other = id_;
    other.version = 2;
    EXPECT_EQ(backend->CheckIdentity(other).code(), Status::Code::kFailedPrecondition);
    TaskCheckpointData t;
    StateRegistry r;
    r.Register<Value>("op1_window")->Upsert("k", Value{1, 1});
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
  }
  auto backend = OpenOrDie();
  EXPECT_EQ(backend->last_epoch(), 1);
  JobIdentity changed = id_;
  changed.spec_hash = "fedcba9876543210";
  Status st = backend->CheckIdentity(changed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("0123456789abcdef"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("fedcba9876543210"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("new version"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(dir_), std::string::npos) << st.message();
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line";

  JobIdentity other_version = id_;
  other_version.version = 2;
  st = backend->CheckIdentity(other_version);
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("version 1"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("version 2"), std::string::npos) << st.message();

  JobIdentity other_job = id_;
  other_job.job = "payments";
  st = backend->CheckIdentity(other_job);
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("job job"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("job payments"), std::string::npos) << st.message();

  EXPECT_TRUE(backend->CheckIdentity(id_).ok());
}

// A first run refused at its start (its DLQ topic holding another job's
// rows, say) recorded its identity before any checkpoint; the spec
// corrected for it, hashing otherwise, was then refused as "a logic change"
// (a bug bash). A store never checkpointed holds nothing of the other
// logic: the corrected spec takes it.
TEST_F(StateBackendTest, ANeverCheckpointedStoreTakesTheCorrectedSpec) {
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  }
  JobIdentity corrected = id_;
  corrected.spec_hash = "fedcba9876543210";
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(corrected).ok());
  }
  auto stored = StateBackend::StoredIdentity(dir_);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->spec_hash, "fedcba9876543210") << "the corrected spec is recorded";
}

TEST_F(StateBackendTest, CommitBeforeCheckIdentityOrWithAnOldEpochIsRefused) {
  auto backend = OpenOrDie();
  TaskCheckpointData t;
  StateRegistry r;
  r.Register<Value>("op1_window")->Upsert("k", Value{1, 1});
  auto early = backend->Commit(1, {{&t, &r}});
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(StateRegistryTestAccess::Tables(r)[0]->DirtyCount(), 1u);

  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  ASSERT_TRUE(backend->Commit(3, {{&t, &r}}).ok());
  static_cast<KeyedTable<Value>*>(StateRegistryTestAccess::Tables(r)[0].get())->state().Upsert("k2", Value{2, 2});
  for (int64_t stale : {3, 2, 0}) {
    auto old = backend->Commit(stale, {{&t, &r}});
    ASSERT_FALSE(old.ok()) << "epoch " << stale;
    EXPECT_EQ(old.status().code(), Status::Code::kInvalidArgument);
  }
  EXPECT_EQ(backend->last_epoch(), 3);
  EXPECT_EQ(StateRegistryTestAccess::Tables(r)[0]->DirtyCount(), 1u);
}

// The state directory's files deleted under a running job (rm -rf
// <dir>/*): RocksDB wrote on into the unlinked files, every checkpoint
// succeeded, and the next start found the directory damaged (a bug bash).
// The next checkpoint fails, saying what happened.
TEST_F(StateBackendTest, ACheckpointAfterTheFilesWereDeletedFailsSayingSo) {
  auto backend = OpenOrDie();
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  TaskCheckpointData t;
  StateRegistry r;
  auto* w = r.Register<Value>("op1_window");
  w->Upsert("k", Value{1, 1});
  ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
  for (const auto& e : std::filesystem::directory_iterator(dir_)) std::filesystem::remove_all(e.path());
  w->Upsert("k2", Value{2, 2});
  auto lost = backend->Commit(2, {{&t, &r}});
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), Status::Code::kIOError) << lost.status().ToString();
  EXPECT_NE(lost.status().message().find("has lost RocksDB's files (CURRENT is gone) while the job ran"),
            std::string::npos)
      << lost.status().ToString();
  EXPECT_NE(backend->last_epoch(), 2);
}

TEST_F(StateBackendTest, ARefusedCommitWritesNothingAndClearsNothing) {
  TaskCheckpointData t0, t1;
  t0.partition = 0;
  t0.next_offset = 9;
  t1.partition = 1;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r0, r1;
    auto* w0 = r0.Register<Value>("op1_window");
    w0->Upsert("a", Value{1, 1});
    r1.Register<Value>("op9_unknown")->Upsert("b", Value{2, 2});
    auto bad = backend->Commit(1, {{&t0, &r0}, {&t1, &r1}});
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("op9_unknown"), std::string::npos) << bad.status().message();

    t1.partition = 0;  // the same partition twice
    StateRegistry r2;
    auto twice = backend->Commit(1, {{&t0, &r0}, {&t1, &r2}});
    ASSERT_FALSE(twice.ok());
    EXPECT_EQ(twice.status().code(), Status::Code::kInvalidArgument);

    auto null = backend->Commit(1, {{&t0, nullptr}});
    EXPECT_EQ(null.status().code(), Status::Code::kInvalidArgument);

    EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*w0), 1u) << "nothing cleared";
    EXPECT_EQ(backend->last_epoch(), 0);
  }
  auto backend = OpenOrDie();
  EXPECT_EQ(backend->last_epoch(), 0);
  EXPECT_TRUE(backend->StoredPartitions().empty());
  auto stored = backend->ReadTask(0);
  ASSERT_TRUE(stored.ok());
  EXPECT_FALSE(stored->has_value());
  StateRegistry r;
  auto* w = r.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  EXPECT_EQ(w->size(), 0u);
}

TEST_F(StateBackendTest, FamiliesNotNamedAtOpenAreKeptNotDropped) {
  TaskCheckpointData t;
  {
    auto backend = OpenOrDie({"op1_window", "op2_dedup"});
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    r.Register<Value>("op2_dedup")->Upsert("k", Value{5, 6});
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
  }
  {
    auto backend = OpenOrDie({"op1_window"});  // op2_dedup not named this time
    StateRegistry r;
    auto* d = r.Register<Value>("op2_dedup");
    ASSERT_TRUE(backend->Restore(0, r).ok()) << "a family on disk is still open";
    ASSERT_EQ(d->size(), 1u);
  }
  auto backend = OpenOrDie({"op1_window", "op2_dedup"});
  StateRegistry r;
  auto* d = r.Register<Value>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  ASSERT_NE(d->Find("k"), nullptr);
  EXPECT_EQ(d->Find("k")->b, 6);

  StateRegistry unknown;
  unknown.Register<Value>("op3_never_opened");
  EXPECT_EQ(backend->Restore(0, unknown).code(), Status::Code::kInvalidArgument);
}

TEST_F(StateBackendTest, ReservedOrEmptyTableNamesAreRefused) {
  for (const std::string name : {"meta", "default", ""}) {
    auto b = StateBackend::Open(dir_, {"op1_window", name});
    ASSERT_FALSE(b.ok()) << "'" << name << "'";
    EXPECT_EQ(b.status().code(), Status::Code::kInvalidArgument);
  }
}

TEST_F(StateBackendTest, ASecondOpenInThisProcessFailsClearly) {
  auto first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  auto second = StateBackend::Open(dir_, {"op1_window"});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(second.status().message().find("RocksDB LOCK held"), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find(dir_), std::string::npos) << second.status().message();
  first.reset();
  EXPECT_TRUE(StateBackend::Open(dir_, {"op1_window"}).ok()) << "free again once the first is closed";
}

// A bug bash: two starts at once on a fresh directory; the second saw the
// first's store half-created (CURRENT not written yet, or a MANIFEST
// without the meta family) and called it damaged, advising --reset-state,
// a full reprocess. A store whose LOCK is held is in use, whatever its
// files look like at that moment. (Here CURRENT goes missing under an open
// store, the state the second start saw.)
TEST_F(StateBackendTest, AStoreThatLooksDamagedWhileOpenElsewhereIsInUseNotDamaged) {
  auto first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  std::filesystem::rename(dir_ + "/CURRENT", dir_ + "/CURRENT.aside");
  auto second = StateBackend::Open(dir_, {"op1_window"});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable) << second.status().ToString();
  EXPECT_NE(second.status().message().find("in use by another kappa process"), std::string::npos)
      << second.status().message();
  first.reset();
  auto third = StateBackend::Open(dir_, {"op1_window"});
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), Status::Code::kCorruption) << "damaged, once nobody holds it";
  std::filesystem::rename(dir_ + "/CURRENT.aside", dir_ + "/CURRENT");
  EXPECT_TRUE(StateBackend::Open(dir_, {"op1_window"}).ok());
}

TEST_F(StateBackendTest, AnotherProcessHoldingTheDirectoryIsNamedInOneLine) {
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The other kappa process: hold the directory until the parent lets go
    // (EOF on `release`, also when the parent dies); never outlive 60 s.
    ::close(ready[0]);
    ::close(release[1]);
    ::alarm(60);
    auto held = StateBackend::Open(dir_, kTables);
    const char c = held.ok() ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    char ignored;
    while (::read(release[0], &ignored, 1) > 0) {
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  struct Reaper {  // lets the child go and reaps it whatever the test outcome
    int fd;
    pid_t pid;
    ~Reaper() {
      ::close(fd);
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
  } reaper{release[1], child};

  pollfd p{ready[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "the holding process did not open the directory in 30 s";
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(c, 'y') << "the holding process could not open " << dir_;

  auto second = StateBackend::Open(dir_, kTables);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(
      second.status().message(),
      "state directory " + dir_ + " is in use by another kappa process (RocksDB LOCK held): stop it first");
}

// A state directory this process may not write (its file system mounted
// read-only here) is said to be that, not "in use by another kappa
// process": a bug bash was sent looking for a process that did not exist.
TEST_F(StateBackendTest, AStateDirectoryOnAReadOnlyFileSystemIsNotCalledInUse) {
  OpenOrDie().reset();  // a store, closed
  const std::string mount = "mount --bind '" + dir_ + "' '" + dir_ + "' 2>/dev/null && mount -o remount,bind,ro '" +
                            dir_ + "' 2>/dev/null";
  if (std::system(mount.c_str()) != 0) {
    (void)std::system(("umount '" + dir_ + "' 2>/dev/null").c_str());
    GTEST_SKIP() << "cannot mount " << dir_ << " read-only here (not root, or no mount namespace rights)";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { (void)std::system(("umount '" + dir + "'").c_str()); }
  } unmount{dir_};
  auto opened = StateBackend::Open(dir_, kTables);
  ASSERT_FALSE(opened.ok());
  const std::string message = opened.status().ToString();
  EXPECT_EQ(message.find("in use by another kappa process"), std::string::npos) << message;
  EXPECT_NE(message.find("Read-only file system"), std::string::npos) << message;
  EXPECT_NE(message.find("check its permissions and that its file system is not read-only"), std::string::npos)
      << message;
}

TEST_F(StateBackendTest, CorruptCheckpointRecordIsReportedNotTrusted) {
  TaskCheckpointData t;
  t.partition = 3;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
  }
  RawPut(dir_, "meta", "task/" + Partition4(3), "garbage!");
  // A well-formed record of partition 7 stored under partition 4's key.
  flatbuffers::FlatBufferBuilder fbb;
  schema::FinishTaskCheckpointBuffer(fbb,
                                     schema::CreateTaskCheckpoint(fbb, /*partition=*/7, /*next_offset=*/1));
  RawPut(dir_, "meta", "task/" + Partition4(4),
         std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));

  auto backend = OpenOrDie();
  auto stored = backend->ReadTask(3);
  ASSERT_FALSE(stored.ok());
  EXPECT_EQ(stored.status().code(), Status::Code::kCorruption);
  EXPECT_NE(stored.status().message().find("partition 3"), std::string::npos) << stored.status().message();
  auto misfiled = backend->ReadTask(4);
  ASSERT_FALSE(misfiled.ok());
  EXPECT_EQ(misfiled.status().code(), Status::Code::kCorruption);
}

TEST_F(StateBackendTest, CorruptJobRecordRefusesToOpen) {
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  }
  RawPut(dir_, "meta", "job", std::string("\x04\0\0\0xx", 6));
  auto backend = StateBackend::Open(dir_, kTables);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), Status::Code::kCorruption);
  EXPECT_NE(backend.status().message().find(dir_), std::string::npos) << backend.status().message();
}

TEST_F(StateBackendTest, StoredValuesOfTheWrongSizeAreCorruptionOnRestore) {
  TaskCheckpointData t;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    r.Register<Value>("op1_window")->Upsert("k", Value{1, 2});
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  r.Register<int32_t>("op1_window");  // a different value type than was stored
  EXPECT_EQ(backend->Restore(0, r).code(), Status::Code::kCorruption);
}

TEST_F(StateBackendTest, LargeCommitRoundTrips) {
  constexpr int kKeys = 200000;
  TaskCheckpointData t;
  t.next_offset = kKeys;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r;
    auto* s = r.Register<Value>("op2_dedup");
    std::string key;
    for (int i = 0; i < kKeys; ++i) {
      key.assign("txn-").append(std::to_string(i));
      s->Upsert(key, Value{i, -i});
    }
    auto stats = backend->Commit(1, {{&t, &r}});
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->dirty_entries, static_cast<size_t>(kKeys));
    EXPECT_GT(stats->bytes, static_cast<size_t>(kKeys) * sizeof(Value));
    EXPECT_EQ(StateRegistryTestAccess::DirtyCount(*s), 0u);
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  ASSERT_EQ(s->size(), static_cast<size_t>(kKeys));
  std::string key;
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    key.assign("txn-").append(std::to_string(i));
    const Value* v = s->Find(key);
    if (v == nullptr || v->a != i || v->b != -i) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ((*backend->ReadTask(0))->next_offset, kKeys);
}

// A clean close flushes memtables past kFlushAtCloseBytes, so the next
// open does not replay their write-ahead log: after a clean stop of a job
// with a large state the log was 90-95% of the state directory, and the
// next start replayed it for 4-7 s before it could say anything (a bug
// bash). A process that dies without closing leaves the log (what a crash
// leaves), and the next open still restores everything from it.
TEST_F(StateBackendTest, ACleanCloseOfALargeStateLeavesNoLogToReplayACrashLeavesOneThatRestores) {
  constexpr int kKeys = 250000;  // ~30 MB of memtables (values of 104 bytes)
  struct Padded {
    int64_t n;
    char pad[96];
  };
  auto fill = [&](StateBackend& backend) {
    StateRegistry r;
    auto* s = r.Register<Padded>("op2_dedup");
    Padded v{};
    for (int i = 0; i < kKeys; ++i) {
      v.n = i;
      s->Upsert("txn-" + std::to_string(i), v);
    }
    TaskCheckpointData t;
    t.next_offset = kKeys;
    auto stats = backend.Commit(1, {{&t, &r}});
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return stats.ok();
  };
  auto restores_all = [&] {
    auto backend = OpenOrDie();
    StateRegistry r;
    auto* s = r.Register<Padded>("op2_dedup");
    ASSERT_TRUE(backend->Restore(0, r).ok());
    EXPECT_EQ(s->size(), static_cast<size_t>(kKeys));
    const Padded* last = s->Find("txn-" + std::to_string(kKeys - 1));
    ASSERT_NE(last, nullptr);
    EXPECT_EQ(last->n, kKeys - 1);
    EXPECT_EQ((*backend->ReadTask(0))->next_offset, kKeys);
  };
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    ASSERT_TRUE(fill(*backend));
    EXPECT_GT(StateBackend::WriteAheadLogBytes(dir_), StateBackend::kFlushAtCloseBytes);
  }
  EXPECT_LT(StateBackend::WriteAheadLogBytes(dir_), uint64_t{1} << 20) << "the clean close left its log";
  ASSERT_NO_FATAL_FAILURE(restores_all());

  std::filesystem::remove_all(dir_);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto opened = StateBackend::Open(dir_, kTables);
    if (!opened.ok() || !(*opened)->CheckIdentity(id_).ok()) ::_exit(2);
    ::_exit(fill(**opened) ? 0 : 1);  // no close: as a crash
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_GT(StateBackend::WriteAheadLogBytes(dir_), StateBackend::kFlushAtCloseBytes);
  ASSERT_NO_FATAL_FAILURE(restores_all());
}

// Standbys apply a changelog marker's changes on top of what the copy has
// (ApplyToPartition without clear_first): puts overwrite, erasures delete,
// other entries stay, and the checkpoint reads back as the marker's; other
// partitions are untouched. With clear_first the partition starts over.
// The write-ahead logs stay bounded: a family that takes small writes (the
// meta family, a checkpoint's marker) kept every log since its last flush
// alive, 148 MB of logs beside under 1 MB of state after 15 minutes of a
// soak test. Past max_total_wal_bytes RocksDB flushes what holds the oldest.
TEST_F(StateBackendTest, TheWriteAheadLogsStayBoundedWhileStateIsWritten) {
  constexpr uint64_t kCap = uint64_t{2} << 20;
  auto opened = StateBackend::Open(dir_, kTables, kCap);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto& backend = *opened;
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  const std::string table = kTables[0];
  auto wal_bytes = [&] { return StateBackend::WriteAheadLogBytes(dir_); };
  TaskCheckpointData task;
  uint64_t most = 0;
  // 16 MB of state writes, a marker with each. The flush past the bound
  // runs in the background while writes go on, so the logs can pass it for
  // a while (under a sanitizer, or on a machine busy compiling, by more:
  // 9.6 MB once): without it they hold all 16 MB.
  constexpr int kRounds = 160;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<StateBackend::Entry> puts;
    for (int i = 0; i < 100; ++i) {
      puts.push_back({table, "k" + std::to_string(round) + "-" + std::to_string(i), std::string(1000, 'v')});
    }
    task.next_offset = round + 1;
    ASSERT_TRUE(backend->ApplyToPartition(0, puts, {}, task, false).ok());
    most = std::max(most, wal_bytes());
  }
  EXPECT_LT(most, 6 * kCap) << "the logs grew with the writes";
  auto stored = backend->ReadTask(0);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->next_offset, kRounds);
}

TEST_F(StateBackendTest, ApplyToPartitionAddsAMarkersChangesWithoutWipingAndClearFirstStartsOver) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  const std::string table = kTables[0];
  auto entries = [&](int32_t p) {
    std::map<std::string, std::string> out;
    EXPECT_TRUE(backend->ForEachEntry(p, {table}, [&](const std::string&, std::string_view k, std::string_view v) {
      out[std::string(k)] = std::string(v);
      return Status::OK();
    }).ok());
    return out;
  };
  TaskCheckpointData task;
  task.next_offset = 10;
  ASSERT_TRUE(backend->ApplyToPartition(1, {{table, "a", "1"}, {table, "b", "2"}}, {}, task, true).ok());
  ASSERT_TRUE(backend->ApplyToPartition(2, {{table, "z", "9"}}, {}, task, true).ok());
  task.next_offset = 20;
  ASSERT_TRUE(backend->ApplyToPartition(1, {{table, "b", "3"}, {table, "c", "4"}}, {{table, "a"}}, task, false).ok());
  EXPECT_EQ(entries(1), (std::map<std::string, std::string>{{"b", "3"}, {"c", "4"}}));
  EXPECT_EQ(entries(2), (std::map<std::string, std::string>{{"z", "9"}}));
  auto stored = backend->ReadTask(1);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->next_offset, 20);
  EXPECT_EQ((*stored)->partition, 1);

  task.next_offset = 5;
  ASSERT_TRUE(backend->ApplyToPartition(1, {{table, "d", "5"}}, {}, task, true).ok());
  EXPECT_EQ(entries(1), (std::map<std::string, std::string>{{"d", "5"}}));
  EXPECT_EQ((*backend->ReadTask(1))->next_offset, 5);
  EXPECT_EQ(backend->ApplyToPartition(1, {}, {{"no-such-table", "k"}}, task, false).code(),
            Status::Code::kInvalidArgument);
}

// A dedup's expired keys, forgotten without deletes (StateRegistry::
// ForgetExpiredEntries), leave the store at its next flush or compaction
// once the checkpoint whose watermark expires them is durable; nothing
// else leaves: unexpired keys, a partition without a watermark, a table
// without expiry, an expiring table that keeps its erasures.
TEST_F(StateBackendTest, ForgottenExpiredEntriesLeaveTheStoreOnceTheirWatermarkIsDurable) {
  struct Seen {
    int64_t since_ms;
  };
  const std::vector<std::string> tables = {"op1_dedup", "op2_window", "op3_dedup"};
  TaskCheckpointData t0, t1;
  t0.partition = 0;
  t1.partition = 1;
  {
    auto backend = OpenOrDie(tables);
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r0, r1;
    r0.ForgetExpiredEntries();
    r1.ForgetExpiredEntries();
    auto* seen0 = r0.RegisterExpiring<Seen>("op1_dedup", 1000);
    auto* plain0 = r0.Register<Seen>("op2_window");
    auto* seen1 = r1.RegisterExpiring<Seen>("op1_dedup", 1000);
    StateRegistry kept;  // another job's kind of task: erasures kept (as under a changelog)
    auto* seen_kept = kept.RegisterExpiring<Seen>("op3_dedup", 1000);
    TaskCheckpointData t2;
    t2.partition = 2;
    for (int i = 0; i < 100; ++i) {
      const std::string k = "txn-" + std::to_string(i);
      seen0->Upsert(k, Seen{i * 100});  // expires once the watermark passes i * 100 + 1000
      plain0->Upsert(k, Seen{i * 100});
      seen1->Upsert(k, Seen{i * 100});
      seen_kept->Upsert(k, Seen{i * 100});
    }
    auto first = backend->Commit(1, {{&t0, &r0, 500}, {&t1, &r1, 500}, {&t2, &kept, 500}});
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    // The watermark reaches 6000: keys 0..49 (since <= 4999) are expired.
    auto expired = [](std::string_view, const Seen& s) { return 6000 > s.since_ms + 1000; };
    EXPECT_EQ(seen0->ExpireIf(expired), 50u);
    EXPECT_EQ(seen1->ExpireIf(expired), 50u);
    EXPECT_EQ(seen_kept->ExpireIf(expired), 50u);
    // Partition 1 gives no watermark this time: nothing of it may go.
    auto second = backend->Commit(2, {{&t0, &r0, 6000}, {&t1, &r1, kNoWatermark}, {&t2, &kept, 6000}});
    ASSERT_TRUE(second.ok()) << second.status().ToString();
    EXPECT_EQ(second->erased_entries, 50u) << "only the table that keeps its erasures writes deletes";
    ASSERT_TRUE(backend->CompactForTesting().ok());
  }
  auto backend = OpenOrDie(tables);
  auto count = [&](int32_t p, const std::string& table, int64_t* min_since) {
    StateRegistry r;
    auto* s = r.Register<Seen>(table);
    EXPECT_TRUE(backend->Restore(p, r).ok());
    *min_since = std::numeric_limits<int64_t>::max();
    s->ForEach([&](std::string_view, const Seen& v) { *min_since = std::min(*min_since, v.since_ms); });
    return s->size();
  };
  int64_t min_since = 0;
  EXPECT_EQ(count(0, "op1_dedup", &min_since), 50u);
  EXPECT_EQ(min_since, 5000) << "the unexpired half stays";
  EXPECT_EQ(count(0, "op2_window", &min_since), 100u) << "a table without expiry keeps everything";
  EXPECT_EQ(count(1, "op1_dedup", &min_since), 100u) << "a partition without a durable watermark keeps everything";
  EXPECT_EQ(count(2, "op3_dedup", &min_since), 50u) << "deleted by its erasures";
  EXPECT_EQ(min_since, 5000);
}

// A restart does not load the dedup entries that have expired at the
// restored task's watermark (what the first purge would drop unrecorded,
// and a compaction by the same rule): a state of two TTLs' worth of keys
// no longer comes back whole. Only tables that forget expired entries; a
// restore without a watermark loads everything.
TEST_F(StateBackendTest, ARestoreLeavesOutTheEntriesExpiredAtTheTasksWatermark) {
  struct Seen {
    int64_t since_ms;
  };
  const std::vector<std::string> tables = {"op1_dedup", "op2_window", "op3_dedup"};
  {
    auto backend = OpenOrDie(tables);
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r0;
    r0.ForgetExpiredEntries();
    auto* seen = r0.RegisterExpiring<Seen>("op1_dedup", 1000);
    auto* plain = r0.Register<Seen>("op2_window");
    StateRegistry kept;  // erasures kept (as under a changelog): never forgets
    auto* seen_kept = kept.RegisterExpiring<Seen>("op3_dedup", 1000);
    for (int i = 0; i < 100; ++i) {
      const std::string k = "txn-" + std::to_string(i);
      seen->Upsert(k, Seen{i * 100});  // expired once the watermark passes i * 100 + 1000
      plain->Upsert(k, Seen{i * 100});
      seen_kept->Upsert(k, Seen{i * 100});
    }
    TaskCheckpointData t0, t1;
    t0.partition = 0;
    t1.partition = 1;
    auto done = backend->Commit(1, {{&t0, &r0, 500}, {&t1, &kept, 500}});
    ASSERT_TRUE(done.ok()) << done.status().ToString();
  }
  auto backend = OpenOrDie(tables);
  struct Restored {
    size_t dedup = 0, plain = 0, skipped = 0;
    int64_t min_since = std::numeric_limits<int64_t>::max();
  };
  auto restore = [&](int32_t p, bool forget, int64_t watermark, const std::string& dedup_table) {
    StateRegistry r;
    if (forget) r.ForgetExpiredEntries();
    auto* d = r.RegisterExpiring<Seen>(dedup_table, 1000);
    auto* w = p == 0 ? r.Register<Seen>("op2_window") : nullptr;
    Restored out;
    EXPECT_TRUE(backend->Restore(p, r, watermark, &out.skipped).ok());
    d->ForEach([&](std::string_view, const Seen& v) { out.min_since = std::min(out.min_since, v.since_ms); });
    out.dedup = d->size();
    out.plain = w ? w->size() : 0;
    // A key left out is new again: its next record inserts it.
    bool inserted = false;
    d->Upsert("txn-0", Seen{7000}, &inserted);
    EXPECT_EQ(inserted, out.skipped > 0);
    return out;
  };
  // The watermark at 6000: keys 0..49 (since <= 4900) are expired.
  Restored r = restore(0, true, 6000, "op1_dedup");
  EXPECT_EQ(r.dedup, 50u);
  EXPECT_EQ(r.skipped, 50u);
  EXPECT_EQ(r.min_since, 5000) << "the unexpired half is loaded";
  EXPECT_EQ(r.plain, 100u) << "a table without expiry is loaded whole";
  // At exactly since + TTL an entry has not expired (Dedup::Expired is strict).
  r = restore(0, true, 5900, "op1_dedup");
  EXPECT_EQ(r.dedup, 51u);
  EXPECT_EQ(r.min_since, 4900);
  r = restore(0, true, kNoWatermark, "op1_dedup");
  EXPECT_EQ(r.dedup, 100u) << "no watermark: everything";
  EXPECT_EQ(r.skipped, 0u);
  r = restore(1, false, 6000, "op3_dedup");
  EXPECT_EQ(r.dedup, 100u) << "a registry that keeps its erasures needs every entry to erase it";
  EXPECT_EQ(r.skipped, 0u);
}

}  // namespace
}  // namespace kappa
