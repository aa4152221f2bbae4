// The table behind `kappa get` (replay/materialized_table.h), on real
// RocksDB: two lookups at once. Each opens the table's RocksDB; the second
// failed at once with the first's LOCK ("Resource temporarily
// unavailable"), so 7 of 8 parallel `kappa get`s exited 1 in a bug bash.
// It now waits for the holder, within a bound that says what to suspect.
#include "replay/materialized_table.h"

#include <rocksdb/db.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "kafka/embedded_broker.h"
#include "tests/replay/replay_test_util.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

TEST(MaterializedTableTest, ASecondOpenWaitsForTheFirstAndABoundSaysWhy) {
  testing::ScratchDir dir("materialized_table_lock");
  const std::string table = dir / "table";
  auto first = MaterializedTable::Open(table, "out.v1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();

  auto refused = MaterializedTable::Open(table, "out.v1", /*wait_ms=*/200);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("another `kappa get` has held it"), std::string::npos)
      << refused.status().ToString();

  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first->reset();
  });
  const auto began = std::chrono::steady_clock::now();
  auto second = MaterializedTable::Open(table, "out.v1", /*wait_ms=*/20000);
  release.join();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(250)) << "it did wait";
}

// The table is a cache of one log. Asked against another cluster whose
// topic has the same name, `kappa get` answered from the first cluster's
// table (a bug bash: 55 where the topic said 67, exit 0). It is rebuilt.
TEST(MaterializedTableTest, ATableOfAnotherLogIsRebuiltAndSaysSo) {
  testing::ScratchDir dir("materialized_table_other_log");
  auto first = EmbeddedBroker::Start({});
  auto second = EmbeddedBroker::Start({});
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE((*first)->CreateTopic({"out.v1", 1}).ok());
  ASSERT_TRUE((*second)->CreateTopic({"out.v1", 1}).ok());
  KafkaConfig a, b;
  a.brokers = (*first)->bootstrap();
  b.brokers = (*second)->bootstrap();
  testing::ProduceRaw(a, "out.v1", {{"k1", "55"}, {"k2", "1"}});
  testing::ProduceRaw(b, "out.v1", {{"k1", "67"}, {"k2", "2"}, {"k3", "3"}});

  auto table = MaterializedTable::Open(dir / "table", "out.v1");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  std::string note;
  ASSERT_TRUE((*table)->CatchUp(a, &note).ok());
  EXPECT_EQ(note, "");
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "55");

  auto applied = (*table)->CatchUp(b, &note);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 3) << "read again from the start";
  EXPECT_NE(note.find("the local table of out.v1 was built from another cluster"), std::string::npos) << note;
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "67");
  EXPECT_EQ((*table)->Get("k3")->value_or(""), "3");

  // The same log again: incremental, nothing said.
  testing::ProduceRaw(b, "out.v1", {{"k1", "68"}});
  note.clear();
  applied = (*table)->CatchUp(b, &note);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 1);
  EXPECT_EQ(note, "");
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "68");
  EXPECT_EQ((*table)->Get("k2")->value_or(""), "2");

  // An offset in the table that is no number (a damaged file): rebuilt, not
  // an uncaught exception.
  table->reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir / "table", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "o/0", "garbage").ok());
  }
  table = MaterializedTable::Open(dir / "table", "out.v1");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  note.clear();
  applied = (*table)->CatchUp(b, &note);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 4);
  EXPECT_NE(note.find("was damaged"), std::string::npos) << note;
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "68");
}

// The same address serving a topic made again under the name (here a
// fresh broker on the same port): the record the table applied last is not
// the one there now, so the table is another log's and is rebuilt.
TEST(MaterializedTableTest, ATopicMadeAgainBehindTheSameAddressIsReadAgain) {
  testing::ScratchDir dir("materialized_table_made_again");
  const int port = testing::FreePort();
  ASSERT_GT(port, 0);
  EmbeddedBroker::Options options;
  options.port = port;
  options.topics = {{"out.v1", 1}};
  KafkaConfig config;
  config.brokers = "127.0.0.1:" + std::to_string(port);
  auto table = MaterializedTable::Open(dir / "table", "out.v1");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  std::string note;
  {
    auto old_log = EmbeddedBroker::Start(options);
    ASSERT_TRUE(old_log.ok()) << old_log.status().ToString();
    testing::ProduceRaw(config, "out.v1", {{"k1", "55"}, {"k2", "1"}});
    ASSERT_TRUE((*table)->CatchUp(config, &note).ok());
    EXPECT_EQ((*table)->Get("k1")->value_or(""), "55");
  }
  auto new_log = EmbeddedBroker::Start(options);
  ASSERT_TRUE(new_log.ok()) << new_log.status().ToString();
  testing::ProduceRaw(config, "out.v1", {{"k1", "67"}, {"k2", "2"}, {"k3", "3"}});
  auto applied = (*table)->CatchUp(config, &note);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 3) << "read again from the start";
  EXPECT_NE(note.find("an earlier topic of this name: rebuilt"), std::string::npos) << note;
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "67");

  // Made again with fewer records than the table had read: also another log.
  new_log->reset();
  auto shorter = EmbeddedBroker::Start(options);
  ASSERT_TRUE(shorter.ok()) << shorter.status().ToString();
  testing::ProduceRaw(config, "out.v1", {{"k1", "70"}});
  note.clear();
  applied = (*table)->CatchUp(config, &note);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_NE(note.find("rebuilt"), std::string::npos) << note;
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "70");
  EXPECT_FALSE((*table)->Get("k3")->has_value()) << "a key of the old log";
}

// A full disk under --table-dir: Debian's RocksDB aborted `kappa get` on an
// assertion (SIGABRT, a bug bash), whether the table was new or built before
// the disk filled. Refused before RocksDB writes, saying what to do; a disk
// that fills between lookups stops the catch-up before its write, the table
// as it was.
TEST(MaterializedTableTest, AFullDiskIsRefusedBeforeRocksDBWritesThere) {
  testing::ScratchDir dir("materialized_table_full_disk");
  int64_t free_bytes = int64_t{1} << 20;
  auto free_space = [&free_bytes](const std::string&) -> Result<int64_t> { return free_bytes; };
  auto refused = MaterializedTable::Open(dir / "table", "out.v1", 30000, nullptr, free_space);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("has 1 MiB free, needs 16 MiB to keep kappa get's copy of out.v1"),
            std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("--table-dir"), std::string::npos) << refused.status().message();
  EXPECT_FALSE(std::filesystem::exists(dir / "table/LOG")) << "RocksDB opened it";

  const int port = testing::FreePort();
  ASSERT_GT(port, 0);
  EmbeddedBroker::Options options;
  options.port = port;
  options.topics = {{"out.v1", 1}};
  auto broker = EmbeddedBroker::Start(options);
  ASSERT_TRUE(broker.ok()) << broker.status().ToString();
  KafkaConfig config;
  config.brokers = "127.0.0.1:" + std::to_string(port);
  free_bytes = int64_t{1} << 30;
  auto table = MaterializedTable::Open(dir / "table", "out.v1", 30000, nullptr, free_space);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  testing::ProduceRaw(config, "out.v1", {{"k1", "55"}});
  ASSERT_TRUE((*table)->CatchUp(config).ok());
  testing::ProduceRaw(config, "out.v1", {{"k1", "56"}});
  free_bytes = int64_t{10} << 20;
  auto full = (*table)->CatchUp(config);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("has 10 MiB free"), std::string::npos) << full.status().message();
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "55") << "the table as it was";
  free_bytes = int64_t{1} << 30;
  ASSERT_TRUE((*table)->CatchUp(config).ok());
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "56");
}

// A damaged table (a truncated file RocksDB reads at open) stopped every
// later `kappa get` with RocksDB's Corruption until removed by hand (a bug
// bash). It is a copy of the topic: moved aside, said so, built again. And
// RocksDB's LOG.old files, one a lookup, are kept to a few.
TEST(MaterializedTableTest, ADamagedTableIsMovedAsideAndBuiltAgain) {
  testing::ScratchDir dir("materialized_table_damaged");
  auto broker = EmbeddedBroker::Start({});
  ASSERT_TRUE(broker.ok());
  ASSERT_TRUE((*broker)->CreateTopic({"out.v1", 1}).ok());
  KafkaConfig config;
  config.brokers = (*broker)->bootstrap();
  testing::ProduceRaw(config, "out.v1", {{"k1", "55"}, {"k2", "1"}});
  const std::string path = dir / "table";
  for (int i = 0; i < 12; ++i) {
    auto table = MaterializedTable::Open(path, "out.v1");
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    ASSERT_TRUE((*table)->CatchUp(config).ok());
  }
  int logs = 0;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    logs += e.path().filename().string().rfind("LOG.old", 0) == 0;
  }
  EXPECT_LE(logs, 2) << "a LOG.old a lookup";
  // The MANIFEST cut short: RocksDB's Corruption at open.
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) std::filesystem::resize_file(e.path(), 10);
  }
  std::string note;
  auto table = MaterializedTable::Open(path, "out.v1", 30000, &note);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_NE(note.find("the local table " + path + " is damaged ("), std::string::npos) << note;
  EXPECT_NE(note.find("rebuilt from the topic"), std::string::npos) << note;
  auto applied = (*table)->CatchUp(config);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, 2);
  EXPECT_EQ((*table)->Get("k1")->value_or(""), "55");
  int aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    aside += e.path().filename().string().rfind("table.damaged-", 0) == 0;
  }
  EXPECT_EQ(aside, 1) << "the damaged table is kept aside";
}

// Damage RocksDB opens without complaint, or finds only on a read (a bug
// bash): a MANIFEST cut short lost the edit of the table file holding the
// rows while the WAL kept the offsets read up to them, and every key
// answered "no output" for good; a deleted MANIFEST was a raw I/O error at
// every call; a table file with a bad block checksum failed every lookup.
// Each is rebuilt from the topic (the last after the caller sets it aside).
class DamagedTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = EmbeddedBroker::Start({});
    ASSERT_TRUE(broker.ok());
    broker_ = std::move(*broker);
    ASSERT_TRUE(broker_->CreateTopic({"out.v1", 1}).ok());
    config_.brokers = broker_->bootstrap();
    std::vector<std::pair<std::string, std::string>> rows;
    for (int i = 0; i < 200; ++i) rows.push_back({"k" + std::to_string(i), std::string(40, 'a' + i % 26)});
    rows.push_back({"k1", "55"});
    testing::ProduceRaw(config_, "out.v1", rows);
  }
  // A table read twice: the second open writes the first's WAL into a table
  // file, as a `kappa get` after another does.
  void Build(const std::string& path) {
    for (int i = 0; i < 2; ++i) {
      auto table = MaterializedTable::Open(path, "out.v1");
      ASSERT_TRUE(table.ok()) << table.status().ToString();
      ASSERT_TRUE((*table)->CatchUp(config_).ok());
    }
  }
  static std::vector<std::filesystem::path> Files(const std::string& dir, const std::string& prefix,
                                                  const std::string& suffix = "") {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        out.push_back(e.path());
      }
    }
    return out;
  }
  // Opens (with a note of damage expected when `damaged`), catches up and
  // answers k1: 55, the topic's.
  void ExpectAnswers(const std::string& path, bool damaged, const std::string& what) {
    std::string note;
    auto table = MaterializedTable::Open(path, "out.v1", 30000, &note);
    ASSERT_TRUE(table.ok()) << what << ": " << table.status().ToString();
    if (damaged) EXPECT_NE(note.find("is damaged ("), std::string::npos) << what << ": " << note;
    auto applied = (*table)->CatchUp(config_);
    ASSERT_TRUE(applied.ok()) << what << ": " << applied.status().ToString();
    auto got = (*table)->Get("k1");
    ASSERT_TRUE(got.ok()) << what << ": " << got.status().ToString();
    EXPECT_EQ(got->value_or("(no output)"), "55") << what << " (" << note << ")";
    auto k150 = (*table)->Get("k150");
    ASSERT_TRUE(k150.ok());
    EXPECT_TRUE(k150->has_value()) << what;
  }
  std::unique_ptr<EmbeddedBroker> broker_;
  KafkaConfig config_;
};

TEST_F(DamagedTableTest, AManifestCutShortAnywhereNeverLeavesATableWithoutItsRows) {
  testing::ScratchDir dir("materialized_table_manifest");
  const std::string built = dir / "built";
  ASSERT_NO_FATAL_FAILURE(Build(built));
  ASSERT_FALSE(Files(built, "", ".sst").empty()) << "no table file to lose";
  const auto manifest = Files(built, "MANIFEST-");
  ASSERT_EQ(manifest.size(), 1u);
  const auto size = std::filesystem::file_size(manifest[0]);
  for (uintmax_t cut = 1; cut < size; cut += std::max<uintmax_t>(1, size / 16)) {
    const std::string path = dir / ("cut" + std::to_string(cut));
    std::filesystem::copy(built, path);
    std::filesystem::resize_file(std::filesystem::path(path) / manifest[0].filename(), cut);
    ASSERT_NO_FATAL_FAILURE(ExpectAnswers(path, false, "MANIFEST cut to " + std::to_string(cut) + " of " +
                                                           std::to_string(size) + " bytes"));
  }
  // Deleted: a missing file at open, rebuilt.
  const std::string gone = dir / "gone";
  std::filesystem::copy(built, gone);
  std::filesystem::remove(std::filesystem::path(gone) / manifest[0].filename());
  ASSERT_NO_FATAL_FAILURE(ExpectAnswers(gone, true, "MANIFEST deleted"));
}

TEST_F(DamagedTableTest, ABadChecksumFoundOnReadIsCorruptionAndTheTableIsBuiltAgain) {
  testing::ScratchDir dir("materialized_table_checksum");
  const std::string path = dir / "table";
  ASSERT_NO_FATAL_FAILURE(Build(path));
  const auto sst = Files(path, "", ".sst");
  ASSERT_FALSE(sst.empty());
  {
    std::fstream f(sst[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.write("\xff\xff\xff\xff", 4);
  }
  Status failed;
  {
    auto table = MaterializedTable::Open(path, "out.v1");
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    auto applied = (*table)->CatchUp(config_);
    if (!applied.ok()) {
      failed = applied.status();
    } else {
      auto got = (*table)->Get("k1");
      if (!got.ok()) failed = got.status();
      for (int i = 0; i < 200 && failed.ok(); ++i) {
        auto other = (*table)->Get("k" + std::to_string(i));
        if (!other.ok()) failed = other.status();
      }
    }
  }
  ASSERT_FALSE(failed.ok()) << "the damaged block was never read";
  EXPECT_EQ(failed.code(), Status::Code::kCorruption) << failed.ToString();
  std::string note;
  ASSERT_TRUE(MaterializedTable::SetAside(path, failed.message(), &note).ok());
  EXPECT_NE(note.find("moved to " + path + ".damaged-"), std::string::npos) << note;
  ASSERT_NO_FATAL_FAILURE(ExpectAnswers(path, false, "after a bad checksum"));
}

TEST(MaterializedTableTest, ATableDirectoryThatCannotBeMadeSaysWhy) {
  testing::ScratchDir dir("materialized_table_nodir");
  { std::ofstream(dir / "file") << "x"; }
  auto table = MaterializedTable::Open(dir / "file/out.v1", "out.v1");
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.status().message().find("cannot create the local table " + (dir / "file/out.v1")),
            std::string::npos)
      << table.status().ToString();
}

}  // namespace
}  // namespace kappa
