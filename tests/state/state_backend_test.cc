// The RocksDB state backend on a real directory: checkpoint/restore round
// trips per partition, erasures, identity checks, exclusive use, corruption.
#include "state/state_backend.h"

#include <rocksdb/db.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace kappa {
namespace {

struct Value {
  int64_t a;
  int64_t b;
};

class StateBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("kappa-state-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
             std::to_string(::getpid())))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<StateBackend> OpenOrDie() {
    auto b = StateBackend::Open(dir_, {"op1_window", "op2_dedup"});
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
  t0.counters.in = 42;
  t0.counters.out = 40;
  t0.counters.dlq = 2;
  t0.start_offset = 0;
  t1.partition = 1;
  t1.next_offset = 7;
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
    StateRegistry r0, r1;
    auto* w0 = r0.Register<Value>("op1_window");
    auto* w1 = r1.Register<Value>("op1_window");
    w0->Upsert("alice", Value{1, 2});
    w0->Upsert("bob", Value{3, 4});
    w1->Upsert("alice", Value{9, 9});
    auto stats = backend->Commit(1, {{&t0, &r0}, {&t1, &r1}});
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->dirty_entries, 3u);
    EXPECT_EQ(w0->DirtyCount(), 0u);
    // A second commit without changes writes no state entries.
    auto again = backend->Commit(2, {{&t0, &r0}, {&t1, &r1}});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->dirty_entries, 0u);
  }
  auto backend = OpenOrDie();
  ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  EXPECT_EQ(backend->last_epoch(), 2);
  auto stored = backend->ReadTask(0);
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->next_offset, 42);
  EXPECT_EQ((*stored)->max_event_time_ms, 1000);
  EXPECT_EQ((*stored)->counters.in, 42);
  EXPECT_EQ((*stored)->counters.out, 40);
  EXPECT_EQ((*stored)->counters.dlq, 2);
  auto none = backend->ReadTask(5);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(backend->StoredPartitions(), (std::vector<int32_t>{0, 1}));

  StateRegistry r0;
  auto* w0 = r0.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(0, r0).ok());
  EXPECT_EQ(w0->size(), 2u) << "only partition 0's entries";
  ASSERT_NE(w0->Find("alice"), nullptr);
  EXPECT_EQ(w0->Find("alice")->a, 1);
  EXPECT_EQ(w0->Find("bob")->b, 4);
  EXPECT_EQ(w0->DirtyCount(), 0u) << "restored entries are clean";
  StateRegistry r1;
  auto* w1 = r1.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(1, r1).ok());
  ASSERT_EQ(w1->size(), 1u);
  EXPECT_EQ(w1->Find("alice")->a, 9);
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
    ASSERT_TRUE(backend->Commit(1, {{&t, &r}}).ok());
    s->Erase("gone");
    s->Erase("back");
    s->Upsert("back", Value{3, 3});
    ASSERT_TRUE(backend->Commit(2, {{&t, &r}}).ok());
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  EXPECT_EQ(s->Find("gone"), nullptr);
  ASSERT_NE(s->Find("back"), nullptr);
  EXPECT_EQ(s->Find("back")->a, 3);
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
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op1_window");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  EXPECT_NE(s->Find("kept"), nullptr);
  EXPECT_EQ(s->Find("lost"), nullptr);
  EXPECT_EQ((*backend->ReadTask(0))->next_offset, 10);
}

TEST_F(StateBackendTest, IdentityMismatchIsRefusedWithBothHashes) {
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  }
  auto backend = OpenOrDie();
  JobIdentity changed = id_;
  changed.spec_hash = "fedcba9876543210";
  Status st = backend->CheckIdentity(changed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("0123456789abcdef"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("fedcba9876543210"), std::string::npos) << st.message();
  JobIdentity other_version = id_;
  other_version.version = 2;
  EXPECT_FALSE(backend->CheckIdentity(other_version).ok());
  EXPECT_TRUE(backend->CheckIdentity(id_).ok());
}

TEST_F(StateBackendTest, ASecondOpenOfTheSameDirectoryFailsClearly) {
  auto first = OpenOrDie();
  auto second = StateBackend::Open(dir_, {"op1_window"});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use by another kappa process"), std::string::npos)
      << second.status().message();
}

TEST_F(StateBackendTest, CorruptCheckpointRecordIsReportedNotTrusted) {
  {
    auto backend = OpenOrDie();
    ASSERT_TRUE(backend->CheckIdentity(id_).ok());
  }
  {
    // Overwrite partition 3's checkpoint record with garbage through RocksDB itself.
    rocksdb::Options options;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(options, dir_, &names).ok());
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, cfs, &handles, &db).ok());
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "meta") {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i], std::string("task/\0\0\0\3", 9), "garbage!").ok());
      }
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto backend = OpenOrDie();
  auto stored = backend->ReadTask(3);
  ASSERT_FALSE(stored.ok());
  EXPECT_EQ(stored.status().code(), Status::Code::kCorruption);
}

TEST_F(StateBackendTest, LargeCommitRoundTrips) {
  constexpr int kKeys = 200000;
  TaskCheckpointData t;
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
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->dirty_entries, static_cast<size_t>(kKeys));
  }
  auto backend = OpenOrDie();
  StateRegistry r;
  auto* s = r.Register<Value>("op2_dedup");
  ASSERT_TRUE(backend->Restore(0, r).ok());
  ASSERT_EQ(s->size(), static_cast<size_t>(kKeys));
  EXPECT_EQ(s->Find("txn-199999")->b, -199999);
}

}  // namespace
}  // namespace kappa
