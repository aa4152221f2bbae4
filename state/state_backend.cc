#include "state/state_backend.h"

#include <flatbuffers/flatbuffers.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "schemas/checkpoint_generated.h"

namespace kappa {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kJobKey[] = "job";
constexpr char kTaskPrefix[] = "task/";

std::string PartitionPrefix(int32_t partition) {
  const uint32_t p = static_cast<uint32_t>(partition);
  std::string out(4, '\0');
  out[0] = static_cast<char>(p >> 24);
  out[1] = static_cast<char>(p >> 16);
  out[2] = static_cast<char>(p >> 8);
  out[3] = static_cast<char>(p);
  return out;
}

int32_t DecodePartition(const rocksdb::Slice& s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  return static_cast<int32_t>((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3]);
}

// The key just past every key with this prefix (prefix is never all 0xff here).
std::string PrefixEnd(std::string prefix) {
  for (int i = static_cast<int>(prefix.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(prefix[i]) != 0xff) {
      prefix[i] = static_cast<char>(static_cast<unsigned char>(prefix[i]) + 1);
      prefix.resize(i + 1);
      return prefix;
    }
  }
  return std::string();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  return Status::IOError(what + ": " + s.ToString());
}

}  // namespace

struct StateBackend::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name;
  rocksdb::ColumnFamilyHandle* meta = nullptr;

  ~Impl() {
    if (db) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
      db->Close();
    }
  }
};

StateBackend::StateBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateBackend::~StateBackend() = default;

Result<std::unique_ptr<StateBackend>> StateBackend::Open(const std::string& dir,
                                                         const std::vector<std::string>& table_names) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create state directory " + dir + ": " + ec.message());

  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.compression = rocksdb::kLZ4Compression;
  cf_options.write_buffer_size = 64 << 20;

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, kMetaFamily};
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(options, dir, &existing).ok()) {
    for (const auto& n : existing) {
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  }
  for (const auto& n : table_names) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, cf_options);

  auto impl = std::make_unique<Impl>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, descriptors, &impl->handles, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::Unavailable("state directory " + dir +
                                 " is in use by another kappa process (RocksDB LOCK held): stop it first");
    }
    return FromRocks(s, "cannot open state directory " + dir);
  }
  impl->db.reset(raw);
  for (size_t i = 0; i < names.size(); ++i) impl->by_name[names[i]] = impl->handles[i];
  impl->meta = impl->by_name[kMetaFamily];

  std::unique_ptr<StateBackend> backend(new StateBackend(std::move(impl)));
  backend->dir_ = dir;
  std::string value;
  s = backend->impl_->db->Get(rocksdb::ReadOptions(), backend->impl_->meta, kJobKey, &value);
  if (s.ok()) {
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(value.data()), value.size());
    if (!v.VerifyBuffer<schema::JobCheckpoint>(nullptr)) {
      return Status::Corruption("state directory " + dir + ": the job record fails verification");
    }
    auto* job = flatbuffers::GetRoot<schema::JobCheckpoint>(value.data());
    backend->identity_.job = job->job() ? job->job()->str() : "";
    backend->identity_.version = job->version();
    backend->identity_.spec_hash = job->spec_hash() ? job->spec_hash()->str() : "";
    backend->last_epoch_ = job->epoch();
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "cannot read " + dir);
  }
  return backend;
}

namespace {
std::string EncodeJob(const JobIdentity& id, int64_t epoch) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto root = schema::CreateJobCheckpointDirect(fbb, id.job.c_str(), id.version, id.spec_hash.c_str(), epoch, NowMs());
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}
}  // namespace

Status StateBackend::CheckIdentity(const JobIdentity& id) {
  if (identity_.job.empty()) {
    identity_ = id;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(impl_->db->Put(wo, impl_->meta, kJobKey, EncodeJob(id, last_epoch_)),
                     "cannot record the job identity in " + dir_);
  }
  if (identity_.job != id.job || identity_.version != id.version) {
    return Status::FailedPrecondition("state in " + dir_ + " belongs to job " + identity_.job + " version " +
                                      std::to_string(identity_.version) + ", not job " + id.job + " version " +
                                      std::to_string(id.version) + ": give each version its own state directory");
  }
  if (identity_.spec_hash != id.spec_hash) {
    return Status::FailedPrecondition("state in " + dir_ + " belongs to job " + id.job + " version " +
                                      std::to_string(id.version) + " with spec hash " + identity_.spec_hash +
                                      ", but this spec hashes to " + id.spec_hash +
                                      ": a logic change is a new version (bump `version:`), never an in-place edit");
  }
  return Status::OK();
}

Result<std::optional<TaskCheckpointData>> StateBackend::ReadTask(int32_t partition) {
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->meta, std::string(kTaskPrefix) + PartitionPrefix(partition), &value);
  if (s.IsNotFound()) return std::optional<TaskCheckpointData>();
  if (!s.ok()) return FromRocks(s, "cannot read the checkpoint of partition " + std::to_string(partition));
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  if (!schema::VerifyTaskCheckpointBuffer(v)) {
    return Status::Corruption("state directory " + dir_ + ": the checkpoint of partition " +
                              std::to_string(partition) + " fails verification");
  }
  const auto* t = schema::GetTaskCheckpoint(value.data());
  TaskCheckpointData d;
  d.partition = t->partition();
  d.next_offset = t->next_offset();
  d.max_event_time_ms = t->max_event_time_ms();
  d.counters.in = t->records_in();
  d.counters.out = t->records_out();
  d.counters.deduped = t->deduped();
  d.counters.filtered = t->filtered();
  d.counters.late = t->late();
  d.counters.dlq = t->dlq();
  d.counters.outputs = t->outputs();
  d.start_offset = t->start_offset();
  return std::optional<TaskCheckpointData>(d);
}

std::vector<int32_t> StateBackend::StoredPartitions() {
  std::vector<int32_t> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  for (it->Seek(kTaskPrefix); it->Valid() && it->key().starts_with(kTaskPrefix); it->Next()) {
    rocksdb::Slice k = it->key();
    k.remove_prefix(sizeof(kTaskPrefix) - 1);
    if (k.size() == 4) out.push_back(DecodePartition(k));
  }
  return out;
}

Status StateBackend::Restore(int32_t partition, StateRegistry& registry) {
  const std::string prefix = PartitionPrefix(partition);
  const std::string end = PrefixEnd(prefix);
  for (const auto& table : registry.tables()) {
    auto found = impl_->by_name.find(table->name());
    if (found == impl_->by_name.end()) {
      return Status::InvalidArgument("state table " + table->name() + " has no column family in " + dir_);
    }
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    if (!end.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, found->second));
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      if (!k.starts_with(prefix)) break;
      k.remove_prefix(4);
      KAPPA_RETURN_IF_ERROR(table->Load(std::string_view(k.data(), k.size()),
                                        std::string_view(it->value().data(), it->value().size())));
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(it->status(), "cannot restore " + table->name() + " from " + dir_));
  }
  return Status::OK();
}

Result<CommitStats> StateBackend::Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks) {
  const auto start = std::chrono::steady_clock::now();
  CommitStats stats;
  stats.epoch = epoch;
  rocksdb::WriteBatch batch;
  std::string key;
  flatbuffers::FlatBufferBuilder fbb(256);
  for (const auto& snapshot : tasks) {
    const std::string prefix = PartitionPrefix(snapshot.task->partition);
    for (const auto& table : snapshot.registry->tables()) {
      auto found = impl_->by_name.find(table->name());
      if (found == impl_->by_name.end()) {
        return Status::InvalidArgument("state table " + table->name() + " has no column family in " + dir_);
      }
      rocksdb::ColumnFamilyHandle* cf = found->second;
      // Deletions first, so a key erased and re-inserted keeps its new value.
      table->ForEachErased([&](std::string_view k) {
        key.assign(prefix).append(k);
        batch.Delete(cf, key);
        ++stats.erased_entries;
      });
      table->ForEachDirty([&](std::string_view k, std::string_view v) {
        key.assign(prefix).append(k);
        batch.Put(cf, key, rocksdb::Slice(v.data(), v.size()));
        ++stats.dirty_entries;
      });
    }
    const TaskCheckpointData& t = *snapshot.task;
    fbb.Clear();
    auto root = schema::CreateTaskCheckpoint(fbb, t.partition, t.next_offset, t.max_event_time_ms, epoch,
                                             t.counters.in, t.counters.out, t.counters.deduped,
                                             t.counters.filtered, t.counters.late, t.counters.dlq,
                                             t.counters.outputs, t.start_offset);
    schema::FinishTaskCheckpointBuffer(fbb, root);
    batch.Put(impl_->meta, std::string(kTaskPrefix) + prefix,
              rocksdb::Slice(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
  }
  batch.Put(impl_->meta, kJobKey, EncodeJob(identity_, epoch));
  stats.bytes = batch.GetDataSize();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  KAPPA_RETURN_IF_ERROR(FromRocks(impl_->db->Write(wo, &batch), "checkpoint " + std::to_string(epoch) +
                                                                    " could not be written to " + dir_));
  for (const auto& snapshot : tasks) {
    for (const auto& table : snapshot.registry->tables()) table->ClearDirty();
  }
  last_epoch_ = epoch;
  stats.write_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace kappa
