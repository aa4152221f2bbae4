#include "replay/materialized_table.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "engine/record_fingerprint.h"
#include "kafka/partition_consumer.h"
#include "kafka/topic_reader.h"
#include "state/table_file_check.h"

namespace kappa {

struct MaterializedTable::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::string topic;
  std::string dir;
  FreeSpaceFn free_space;
  // FailedPrecondition when `dir` has less than `needed` bytes free.
  Status CheckFree(int64_t needed) const {
    auto free_bytes = free_space(dir);
    if (!free_bytes.ok()) return free_bytes.status();
    if (*free_bytes >= needed) return Status::OK();
    return Status::FailedPrecondition("the local table " + dir + " has " + std::to_string(*free_bytes >> 20) +
                                      " MiB free, needs " + std::to_string((needed + (1 << 20) - 1) >> 20) +
                                      " MiB to keep kappa get's copy of " + topic +
                                      ": free space, or pass --table-dir on another file system");
  }
};

MaterializedTable::~MaterializedTable() = default;

// A checksum RocksDB finds wrong only when it reads the block: Corruption,
// for the caller to set the table aside (it failed every lookup after, a
// bug bash); anything else an I/O error.
Status MaterializedTable::Failed(const char* what, const rocksdb::Status& s) const {
  if (s.IsCorruption()) return Status::Corruption("table " + std::string(what) + " failed: " + s.ToString());
  return Status::IOError("table " + std::string(what) + " failed: " + s.ToString());
}

Status MaterializedTable::SetAside(const std::string& dir, const std::string& why, std::string* note) {
  const std::string aside = dir + ".damaged-" + std::to_string(WallClockMs());
  std::error_code ec;
  std::filesystem::rename(dir, aside, ec);
  if (ec) {
    return Status::IOError("the local table " + dir + " is damaged (" + why + ") and cannot be moved aside (" +
                           ec.message() + "): remove it, kappa get builds it again from the topic");
  }
  std::filesystem::create_directories(dir, ec);
  if (note) {
    *note = "the local table " + dir + " is damaged (" + why + "): moved to " + aside +
            " (remove it once looked at) and rebuilt from the topic";
  }
  return Status::OK();
}

Result<std::unique_ptr<MaterializedTable>> MaterializedTable::Open(const std::string& dir, const std::string& topic,
                                                                   int wait_ms, std::string* note,
                                                                   FreeSpaceFn free_space) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    // Said as "cannot read the free space of state dir" (a bug bash).
    return Status::IOError("cannot create the local table " + dir + ": " + ec.message() +
                           " (--table-dir names where kappa get keeps its copies of output topics)");
  }
  auto impl = std::make_unique<Impl>();
  impl->topic = topic;
  impl->dir = dir;
  impl->free_space = std::move(free_space);
  // Opening writes too (its LOG, MANIFEST and WAL).
  KAPPA_RETURN_IF_ERROR(impl->CheckFree(kMinFreeBytes));
  rocksdb::Options options;
  options.create_if_missing = true;
  // RocksDB rolls its LOG at every open: a LOG.old.* a lookup, up to its
  // default of 1000 files (a bug bash counted 252 after 250 gets).
  options.keep_log_file_num = 2;
  options.allow_fallocate = false;  // no WAL space reserved ahead (see StateBackend::Open)
  rocksdb::DB* db = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  rocksdb::Status s;
  bool moved_aside = false;
  for (;;) {
    TableFileCheck files(dir, /*keep_aside=*/false);  // the table is set aside whole
    s = rocksdb::DB::Open(options, dir, &db);
    // A MANIFEST deleted (or a CURRENT naming none) reads as a missing file.
    const bool missing_file = s.IsIOError() && s.ToString().find("No such file") != std::string::npos;
    std::string damage = s.IsCorruption() || missing_file ? s.ToString() : "";
    if (s.ok() && !moved_aside) {
      // Its MANIFEST cut short: the rows gone, the offsets read up to them
      // kept in the WAL, every key answered "no output" for good (a bug bash).
      damage = files.Dropped(db);
      if (!damage.empty()) {
        delete db;
        db = nullptr;
      }
    }
    if (!damage.empty() && !moved_aside) {
      // A copy of the topic: the damaged one is kept aside, a new one built.
      KAPPA_RETURN_IF_ERROR(SetAside(dir, damage, note));
      moved_aside = true;
      continue;
    }
    // Held by another lookup (another process, or this one): it is done
    // within a catch-up, so wait for it.
    const bool locked = s.IsIOError() && s.ToString().find("/LOCK") != std::string::npos;
    if (!locked || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!s.ok()) {
    const bool locked = s.IsIOError() && s.ToString().find("/LOCK") != std::string::npos;
    return Status::IOError("cannot open table " + dir + ": " + s.ToString() +
                           (locked ? "; another `kappa get` has held it for " + std::to_string(wait_ms / 1000) +
                                         " s: is one stuck?"
                                   : ""));
  }
  std::unique_ptr<MaterializedTable> table(new MaterializedTable());
  table->impl_ = std::move(impl);
  table->impl_->db.reset(db);
  return table;
}

namespace {

// A number the table stored; nullopt if it is not one (a damaged table is
// rebuilt, never a crash).
template <typename T>
std::optional<T> Stored(const std::string& text) {
  T v{};
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return std::nullopt;
  return v;
}


}  // namespace

// Whether the table was built from the log `config` reaches now: the same
// bootstrap servers, and in each partition the record it applied last is
// the one Kafka holds at that offset (not a topic deleted and made again
// under the name, nor one of another cluster). A table of an older kappa,
// which kept neither, is taken as it is.
Result<bool> MaterializedTable::SameLog(const KafkaConfig& config, const std::vector<int64_t>& from) {
  std::string brokers;
  if (impl_->db->Get(rocksdb::ReadOptions(), "c", &brokers).ok() && brokers != config.brokers) return false;
  std::vector<RecordAtOffset> asks;
  std::vector<uint64_t> want;
  for (size_t p = 0; p < from.size(); ++p) {
    std::string f;
    if (from[p] <= 0 || !impl_->db->Get(rocksdb::ReadOptions(), "f/" + std::to_string(p), &f).ok()) continue;
    const auto fingerprint = Stored<uint64_t>(f);
    if (!fingerprint) return false;
    RecordAtOffset a;
    a.topic = impl_->topic;
    a.partition = static_cast<int32_t>(p);
    a.offset = from[p] - 1;
    asks.push_back(std::move(a));
    want.push_back(*fingerprint);
  }
  if (asks.empty()) return true;
  std::string poll_error;
  Status st = ReadRecordsAt(config, "kappa-get", &asks, 10000, &poll_error);
  if (!st.ok()) return st;
  for (size_t i = 0; i < asks.size(); ++i) {
    const RecordAtOffset& a = asks[i];
    if (a.found != RecordAtOffset::Found::kRecord) continue;  // compacted or deleted: nothing to compare
    if (RecordFingerprint(a.key, a.value, a.timestamp_ms) != want[i]) return false;
  }
  return true;
}

Status MaterializedTable::Clear() {
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) batch.Delete(it->key());
  if (!it->status().ok()) return Failed("read", it->status());
  KAPPA_RETURN_IF_ERROR(impl_->CheckFree(kMinFreeBytes + 2 * static_cast<int64_t>(batch.GetDataSize())));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = impl_->db->Write(wo, &batch);
  if (!s.ok()) return Failed("write", s);
  return Status::OK();
}

Result<int64_t> MaterializedTable::CatchUp(const KafkaConfig& config, std::string* note) {
  std::vector<int64_t> from;
  bool damaged = false;
  for (int32_t p = 0;; ++p) {
    std::string v;
    const rocksdb::Status got = impl_->db->Get(rocksdb::ReadOptions(), "o/" + std::to_string(p), &v);
    if (got.IsNotFound()) break;
    if (!got.ok()) return Failed("read", got);
    const auto offset = Stored<int64_t>(v);
    damaged = damaged || !offset;
    from.push_back(offset.value_or(0));
  }
  Result<bool> same = !damaged;
  if (!damaged) same = SameLog(config, from);
  if (!same.ok()) return same.status();
  auto rebuild = [&](const std::string& why) -> Status {
    if (note) *note = "the local table of " + impl_->topic + " " + why + ": rebuilt from the topic";
    from.clear();
    return Clear();
  };
  if (!*same) {
    KAPPA_RETURN_IF_ERROR(rebuild(damaged ? "was damaged (an offset it kept is not a number)"
                                          : "was built from another cluster or an earlier topic of this name"));
  }
  for (int attempt = 0;; ++attempt) {
    rocksdb::WriteBatch batch;
    std::vector<int64_t> next = from;
    std::vector<uint64_t> last(from.size(), 0);
    std::vector<bool> seen(from.size(), false);
    int64_t applied = 0;
    auto summary = ReadTopic(
        config, impl_->topic,
        [&](const ConsumedRecord& r) {
          batch.Put("k/" + std::string(r.key), rocksdb::Slice(r.value.data(), r.value.size()));
          const auto p = static_cast<size_t>(r.partition);
          if (p >= next.size()) {
            next.resize(p + 1, 0);
            last.resize(p + 1, 0);
            seen.resize(p + 1, false);
          }
          next[p] = r.offset + 1;
          last[p] = RecordFingerprint(r.key, r.value, r.timestamp_ms);
          seen[p] = true;
          ++applied;
        },
        15000, &from, /*only_partition=*/-1, /*settle_ms=*/0);  // the next refresh reads on
    if (!summary.ok()) {
      if (summary.status().code() != Status::Code::kNotFound) return summary.status();
      if (from.empty()) return int64_t{0};  // no output yet
      // Read from before, gone now (deleted): its rows were answered, 10 s
      // later, as if caught up (a bug bash).
      return Status::FailedPrecondition(
          "the output topic " + impl_->topic + " is not there (deleted?), and the local table holds only what was "
          "read from it before: not answered from it. Run the version again to make its outputs (its state "
          "removed, or --reset-state), or promote a version whose output topic is there");
    }
    // A log that now ends before where the table read to is another one.
    bool shorter = false;
    for (size_t p = 0; p < from.size(); ++p) {
      shorter = shorter || (p < summary->log_end_offsets.size() && summary->log_end_offsets[p] < from[p]);
    }
    if (shorter && attempt == 0) {
      KAPPA_RETURN_IF_ERROR(rebuild("reads past the topic's end (the topic was made again)"));
      continue;
    }
    for (size_t p = 0; p < next.size(); ++p) {
      batch.Put("o/" + std::to_string(p), std::to_string(next[p]));
      if (seen[p]) batch.Put("f/" + std::to_string(p), std::to_string(last[p]));
    }
    batch.Put("c", config.brokers);
    // Its WAL write, then its flush to a table file.
    KAPPA_RETURN_IF_ERROR(impl_->CheckFree(kMinFreeBytes + 2 * static_cast<int64_t>(batch.GetDataSize())));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = impl_->db->Write(wo, &batch);
    if (!s.ok()) return Failed("write", s);
    // A large catch-up left its rows in the write-ahead log only, which the
    // next lookup replayed: as slow as the build (a bug bash: 2.2 s and
    // 265 MB for the second get of 377k keys, 0.15 s for the third).
    uint64_t memtables = 0;
    if (impl_->db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &memtables) && memtables > (16u << 20)) {
      (void)impl_->db->Flush(rocksdb::FlushOptions());
    }
    return applied;
  }
}

Result<std::optional<std::string>> MaterializedTable::Get(const std::string& key) {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), "k/" + key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Failed("read", s);
  return std::optional<std::string>(value);
}

}  // namespace kappa
