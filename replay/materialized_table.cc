#include "replay/materialized_table.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "kafka/topic_reader.h"

namespace kappa {

struct MaterializedTable::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::string topic;
};

MaterializedTable::~MaterializedTable() = default;

Result<std::unique_ptr<MaterializedTable>> MaterializedTable::Open(const std::string& dir, const std::string& topic,
                                                                   int wait_ms) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  rocksdb::Status s;
  for (;;) {
    s = rocksdb::DB::Open(options, dir, &db);
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
  table->impl_ = std::make_unique<Impl>();
  table->impl_->db.reset(db);
  table->impl_->topic = topic;
  return table;
}

Result<int64_t> MaterializedTable::CatchUp(const KafkaConfig& config) {
  std::vector<int64_t> from;
  for (int32_t p = 0;; ++p) {
    std::string v;
    if (!impl_->db->Get(rocksdb::ReadOptions(), "o/" + std::to_string(p), &v).ok()) break;
    from.push_back(std::stoll(v));
  }
  rocksdb::WriteBatch batch;
  std::vector<int64_t> next = from;
  int64_t applied = 0;
  auto summary = ReadTopic(
      config, impl_->topic,
      [&](const ConsumedRecord& r) {
        batch.Put("k/" + std::string(r.key), rocksdb::Slice(r.value.data(), r.value.size()));
        if (static_cast<size_t>(r.partition) >= next.size()) next.resize(r.partition + 1, 0);
        next[r.partition] = r.offset + 1;
        ++applied;
      },
      15000, &from, /*only_partition=*/-1, /*settle_ms=*/0);  // the next refresh reads on
  if (!summary.ok()) {
    if (summary.status().code() == Status::Code::kNotFound) return int64_t{0};  // no output yet
    return summary.status();
  }
  for (size_t p = 0; p < next.size(); ++p) batch.Put("o/" + std::to_string(p), std::to_string(next[p]));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = impl_->db->Write(wo, &batch);
  if (!s.ok()) return Status::IOError("table write failed: " + s.ToString());
  return applied;
}

Result<std::optional<std::string>> MaterializedTable::Get(const std::string& key) {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), "k/" + key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError("table read failed: " + s.ToString());
  return std::optional<std::string>(value);
}

}  // namespace kappa
