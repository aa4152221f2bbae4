// The state tables' memtable (state/memtable_rep.h) in a real RocksDB, against
// a std::map model: whatever the keys (shorter than, equal to or longer than
// the 16 bytes it sorts on, sharing those 16 bytes, holding zero bytes,
// prefixes of each other), a read through RocksDB gives exactly the model's
// entries in bytewise order, forwards, backwards and after a Seek or a
// SeekForPrev anywhere: while the memtable is written to, once it is
// flushed, and after a reopen that replays the WAL into a new one.
#include "state/memtable_rep.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace kappa {
namespace {

class MemtableRepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("kappa-memtable-rep-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
             "-" + std::to_string(::getpid())))
               .string();
    std::filesystem::remove_all(dir_);
    Open();
  }
  void TearDown() override {
    Close();
    std::filesystem::remove_all(dir_);
  }

  void Open() {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    options.allow_concurrent_memtable_write = false;
    rocksdb::ColumnFamilyOptions table;
    table.memtable_factory = std::make_shared<PrefixSortedVectorRepFactory>();
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}}, {"table", table}};
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, cfs, &handles_, &db).ok());
    db_.reset(db);
  }
  void Close() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    db_.reset();
  }
  rocksdb::ColumnFamilyHandle* table() const { return handles_[1]; }

  // A key drawn so that many share their first 16 bytes, some end inside
  // them, some are prefixes of others and some hold zero bytes.
  std::string RandomKey() {
    static const std::vector<std::string> stems = {
        "", "a", std::string("a\0", 2), "ab", "u0000042|", "partition-0007/t0000000",
        std::string("0123456789abcdef"), std::string("0123456789abcdef\0", 17), std::string(15, '\xff')};
    std::string k = stems[rng_() % stems.size()];
    const int tail = static_cast<int>(rng_() % 24);
    for (int i = 0; i < tail; ++i) k.push_back(static_cast<char>("\0\1az\xfe\xff"[rng_() % 6]));
    return k;
  }

  void ApplyRandomWrites(int n) {
    for (int i = 0; i < n; ++i) {
      const std::string k = RandomKey();
      if (rng_() % 3 == 0) {
        ASSERT_TRUE(db_->Delete(rocksdb::WriteOptions(), table(), k).ok());
        model_.erase(k);
      } else {
        const std::string v = "v" + std::to_string(i);
        ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), table(), k, v).ok());
        model_[k] = v;
      }
    }
  }

  // Every way of reading agrees with the model.
  void ExpectEqualsModel(const std::string& when) {
    SCOPED_TRACE(when);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), table()));
    std::vector<std::pair<std::string, std::string>> forward, backward;
    for (it->SeekToFirst(); it->Valid(); it->Next()) forward.emplace_back(it->key().ToString(), it->value().ToString());
    ASSERT_TRUE(it->status().ok());
    using Entries = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(forward, Entries(model_.begin(), model_.end()));
    for (it->SeekToLast(); it->Valid(); it->Prev()) backward.emplace_back(it->key().ToString(), it->value().ToString());
    EXPECT_EQ(backward, Entries(model_.rbegin(), model_.rend()));
    for (int i = 0; i < 300; ++i) {
      const std::string target = RandomKey();
      it->Seek(target);
      auto want = model_.lower_bound(target);
      ASSERT_EQ(it->Valid(), want != model_.end()) << "Seek";
      if (it->Valid()) {
        EXPECT_EQ(it->key().ToString(), want->first) << "Seek";
      }
      it->SeekForPrev(target);
      auto after = model_.upper_bound(target);
      ASSERT_EQ(it->Valid(), after != model_.begin()) << "SeekForPrev";
      if (it->Valid()) {
        EXPECT_EQ(it->key().ToString(), std::prev(after)->first) << "SeekForPrev";
      }
    }
    for (int i = 0; i < 100; ++i) {
      const std::string k = RandomKey();
      std::string v;
      const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), table(), k, &v);
      auto want = model_.find(k);
      ASSERT_EQ(s.ok(), want != model_.end()) << s.ToString();
      if (s.ok()) {
        EXPECT_EQ(v, want->second);
      }
    }
  }

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, std::string> model_;
  std::mt19937_64 rng_{20261203};
};

TEST_F(MemtableRepTest, ReadsEqualAModelInTheMemtableAfterAFlushAndAfterAReopen) {
  ApplyRandomWrites(3000);
  ExpectEqualsModel("in the memtable");
  ASSERT_TRUE(db_->Flush(rocksdb::FlushOptions(), table()).ok());
  ExpectEqualsModel("flushed");
  ApplyRandomWrites(3000);  // over the flushed file: deletes and overwrites of its keys
  ExpectEqualsModel("a memtable over a flushed file");
  Close();
  Open();  // the second memtable comes back from the WAL
  ExpectEqualsModel("reopened");
  ASSERT_TRUE(db_->Flush(rocksdb::FlushOptions(), table()).ok());
  ASSERT_TRUE(db_->CompactRange(rocksdb::CompactRangeOptions(), table(), nullptr, nullptr).ok());
  ExpectEqualsModel("compacted");
}

TEST_F(MemtableRepTest, AnIteratorKeepsItsViewWhileTheMemtableIsWrittenTo) {
  ApplyRandomWrites(500);
  const std::map<std::string, std::string> before = model_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), table()));
  ApplyRandomWrites(500);
  std::map<std::string, std::string> seen;
  for (it->SeekToFirst(); it->Valid(); it->Next()) seen[it->key().ToString()] = it->value().ToString();
  EXPECT_EQ(seen, before);
  it.reset();
  ExpectEqualsModel("after");
}

// The rep alone, under a comparator written here with RocksDB's internal-key
// order (user key bytewise, then the newer sequence first): its own
// iterator's Seek and SeekForPrev (RocksDB's memtable iterator builds its
// SeekForPrev from Seek and Prev, so the test above does not reach it).
class InternalKeyOrder final : public rocksdb::MemTableRep::KeyComparator {
 public:
  static std::string Encode(const std::string& user_key, uint64_t seq) {
    std::string internal = user_key;
    const uint64_t trailer = seq << 8 | 1;  // type 1: a value
    for (int i = 0; i < 8; ++i) internal.push_back(static_cast<char>(trailer >> (8 * i)));
    std::string out;
    for (uint32_t n = static_cast<uint32_t>(internal.size()); ; n >>= 7) {  // varint32 length
      if (n < 128) {
        out.push_back(static_cast<char>(n));
        break;
      }
      out.push_back(static_cast<char>(n | 128));
    }
    return out + internal;
  }
  int operator()(const char* a, const char* b) const override { return Compare(decode_key(a), decode_key(b)); }
  int operator()(const char* a, const rocksdb::Slice& key) const override { return Compare(decode_key(a), key); }

 private:
  static int Compare(const rocksdb::Slice& a, const rocksdb::Slice& b) {
    const rocksdb::Slice ua(a.data(), a.size() - 8), ub(b.data(), b.size() - 8);
    if (const int c = ua.compare(ub); c != 0) return c;
    const uint64_t sa = Trailer(a), sb = Trailer(b);
    return sa > sb ? -1 : sa < sb ? 1 : 0;
  }
  static uint64_t Trailer(const rocksdb::Slice& k) {
    uint64_t t = 0;
    for (int i = 7; i >= 0; --i) t = t << 8 | static_cast<unsigned char>(k[k.size() - 8 + i]);
    return t;
  }
};

TEST_F(MemtableRepTest, TheRepsOwnSeeksFindTheFirstEntryAtOrAfterAndTheLastAtOrBefore) {
  InternalKeyOrder order;
  PrefixSortedVectorRepFactory factory;
  std::unique_ptr<rocksdb::MemTableRep> rep(factory.CreateMemTableRep(order, nullptr, nullptr, nullptr));
  std::vector<std::string> entries;  // the encoded entries; the rep points into them
  entries.reserve(2000);
  for (uint64_t seq = 1; seq <= 2000; ++seq) entries.push_back(InternalKeyOrder::Encode(RandomKey(), seq));
  for (const std::string& e : entries) rep->Insert(const_cast<char*>(e.data()));
  std::vector<std::string> sorted = entries;
  std::sort(sorted.begin(), sorted.end(),
            [&](const std::string& a, const std::string& b) { return order(a.data(), b.data()) < 0; });
  for (bool read_only : {false, true}) {
    SCOPED_TRACE(read_only ? "read-only (sorted in place)" : "written to (a sorted copy)");
    if (read_only) rep->MarkReadOnly();
    std::unique_ptr<rocksdb::MemTableRep::Iterator> it(rep->GetIterator(nullptr));
    std::vector<std::string> seen;
    for (it->SeekToFirst(); it->Valid(); it->Next()) seen.emplace_back(it->key(), sorted[seen.size()].size());
    ASSERT_EQ(seen, sorted);
    for (int i = 0; i < 500; ++i) {
      const std::string target = InternalKeyOrder::Encode(RandomKey(), rng_() % 2100);
      const rocksdb::Slice internal = order.decode_key(target.data());
      auto first_at_or_after = std::lower_bound(sorted.begin(), sorted.end(), target, [&](const std::string& e, const std::string& t) {
        return order(e.data(), t.data()) < 0;
      });
      it->Seek(internal, i % 2 == 0 ? target.data() : nullptr);
      ASSERT_EQ(it->Valid(), first_at_or_after != sorted.end());
      if (it->Valid()) {
        EXPECT_EQ(std::string(it->key(), first_at_or_after->size()), *first_at_or_after);
      }
      auto first_after = std::upper_bound(sorted.begin(), sorted.end(), target, [&](const std::string& t, const std::string& e) {
        return order(e.data(), t.data()) > 0;
      });
      it->SeekForPrev(internal, i % 2 == 0 ? target.data() : nullptr);
      ASSERT_EQ(it->Valid(), first_after != sorted.begin());
      if (it->Valid()) {
        EXPECT_EQ(std::string(it->key(), std::prev(first_after)->size()), *std::prev(first_after));
      }
    }
  }
}

}  // namespace
}  // namespace kappa
