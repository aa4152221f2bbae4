#include "state/state_backend.h"

#include <flatbuffers/flatbuffers.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
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

std::string TaskKey(int32_t partition) {
  return std::string(kTaskPrefix) + PartitionPrefix(partition);
}

// The smallest key above every key with this prefix; empty if there is none
// (an all-0xff prefix), in which case the caller scans without upper bound.
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
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  return Status::IOError(what + ": " + s.ToString());
}

// RocksDB's POSIX environment reports a held DIR/LOCK as an IOError:
// "While lock file: DIR/LOCK: Resource temporarily unavailable" when another
// process holds it, "lock hold by current process ..." when this one does.
Status FromOpenError(const rocksdb::Status& s, const std::string& dir) {
  const std::string text = s.ToString();
  if (s.IsIOError() && text.find("/LOCK") != std::string::npos) {
    if (text.find("current process") != std::string::npos) {
      return Status::Unavailable(
          "state directory " + dir +
          " is already open in this process (RocksDB LOCK held): open it once and share it");
    }
    return Status::Unavailable("state directory " + dir +
                               " is in use by another kappa process (RocksDB LOCK held): stop it first");
  }
  return FromRocks(s, "cannot open state directory " + dir);
}

rocksdb::CompressionType PickCompression() {
  const auto supported = rocksdb::GetSupportedCompressions();
  const bool lz4 = std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end();
  return lz4 ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
}

std::string EncodeJob(const JobIdentity& id, int64_t epoch) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto job = fbb.CreateString(id.job);
  auto hash = fbb.CreateString(id.spec_hash);
  fbb.Finish(schema::CreateJobCheckpoint(fbb, job, id.version, hash, epoch, NowMs()));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::string Describe(const JobIdentity& id) {
  return "job " + id.job + " version " + std::to_string(id.version);
}

}  // namespace

struct StateBackend::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;                        // every open family, for cleanup
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> tables;  // state tables only
  rocksdb::ColumnFamilyHandle* meta = nullptr;

  ~Impl() {
    if (db) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
      db->Close();
    }
  }
};

StateBackend::StateBackend(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
StateBackend::~StateBackend() = default;

Result<std::unique_ptr<StateBackend>> StateBackend::Open(const std::string& dir,
                                                         const std::vector<std::string>& table_names) {
  for (const auto& n : table_names) {
    if (n.empty() || n == rocksdb::kDefaultColumnFamilyName || n == kMetaFamily) {
      return Status::InvalidArgument("state table name '" + n + "' is empty or reserved (default, meta)");
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create state directory " + dir + ": " + ec.message());

  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  options.db_write_buffer_size = size_t{256} << 20;  // across all families
  options.keep_log_file_num = 4;                     // RocksDB's info LOGs, not the WAL
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.compression = PickCompression();
  cf_options.write_buffer_size = size_t{64} << 20;

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, kMetaFamily};
  auto add = [&names](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  std::vector<std::string> existing;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &existing);
  if (s.ok()) {
    for (const auto& n : existing) add(n);
  } else if (std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
    // A store is there but unreadable: report that, not RocksDB's later
    // complaint about unopened column families.
    return FromRocks(s, "cannot list the column families of state directory " + dir);
  }
  for (const auto& n : table_names) add(n);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, cf_options);

  auto impl = std::make_unique<Impl>();
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(options, dir, descriptors, &impl->handles, &raw);
  if (!s.ok()) return FromOpenError(s, dir);
  impl->db.reset(raw);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == kMetaFamily) {
      impl->meta = impl->handles[i];
    } else if (names[i] != rocksdb::kDefaultColumnFamilyName) {
      impl->tables[names[i]] = impl->handles[i];
    }
  }

  std::unique_ptr<StateBackend> backend(new StateBackend(dir, std::move(impl)));
  KAPPA_RETURN_IF_ERROR(backend->LoadIdentity());
  return backend;
}

Status StateBackend::LoadIdentity() {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->meta, kJobKey, &value);
  if (s.IsNotFound()) return Status::OK();
  if (!s.ok()) return FromRocks(s, "cannot read the job record of state directory " + dir_);
  // std::string storage is heap- or object-aligned, enough for the verifier.
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  if (!verifier.VerifyBuffer<schema::JobCheckpoint>(nullptr)) {
    return Status::Corruption("state directory " + dir_ + ": the job record fails verification");
  }
  const auto* job = flatbuffers::GetRoot<schema::JobCheckpoint>(value.data());
  JobIdentity id;
  id.job = job->job() ? job->job()->str() : "";
  id.version = job->version();
  id.spec_hash = job->spec_hash() ? job->spec_hash()->str() : "";
  identity_ = std::move(id);
  last_epoch_ = job->epoch();
  return Status::OK();
}

Status StateBackend::CheckIdentity(const JobIdentity& id) {
  if (!identity_) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    KAPPA_RETURN_IF_ERROR(FromRocks(impl_->db->Put(wo, impl_->meta, kJobKey, EncodeJob(id, last_epoch_)),
                                    "cannot record the job identity in " + dir_));
    identity_ = id;
    return Status::OK();
  }
  const JobIdentity& stored = *identity_;
  if (stored.job != id.job || stored.version != id.version) {
    return Status::FailedPrecondition("state in " + dir_ + " belongs to " + Describe(stored) + ", not " +
                                      Describe(id) + ": give each version its own state directory");
  }
  if (stored.spec_hash != id.spec_hash) {
    return Status::FailedPrecondition(
        "state in " + dir_ + " belongs to " + Describe(stored) + " with spec hash " + stored.spec_hash +
        ", but this spec hashes to " + id.spec_hash +
        ": a logic change is a new version (bump `version:`), never an in-place edit");
  }
  return Status::OK();
}

Result<std::optional<TaskCheckpointData>> StateBackend::ReadTask(int32_t partition) {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->meta, TaskKey(partition), &value);
  if (s.IsNotFound()) return std::optional<TaskCheckpointData>();
  if (!s.ok()) return FromRocks(s, "cannot read the checkpoint of partition " + std::to_string(partition));
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  if (!schema::VerifyTaskCheckpointBuffer(verifier)) {
    return Status::Corruption("state directory " + dir_ + ": the checkpoint of partition " +
                              std::to_string(partition) + " fails verification");
  }
  const auto* t = schema::GetTaskCheckpoint(value.data());
  if (t->partition() != partition) {
    return Status::Corruption("state directory " + dir_ + ": the checkpoint stored for partition " +
                              std::to_string(partition) + " says partition " +
                              std::to_string(t->partition()));
  }
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
  const rocksdb::Slice upper(end);
  for (const auto& table : registry.tables()) {
    auto found = impl_->tables.find(table->name());
    if (found == impl_->tables.end()) {
      return Status::InvalidArgument("state table " + table->name() + " has no column family in " + dir_ +
                                     ": pass its name to StateBackend::Open");
    }
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;  // read once, kept in the table from now on
    if (!end.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, found->second));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      rocksdb::Slice k = it->key();
      k.remove_prefix(prefix.size());
      const rocksdb::Slice v = it->value();
      KAPPA_RETURN_IF_ERROR(
          table->Load(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size())));
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(it->status(), "cannot restore table " + table->name() + " of partition " +
                                                      std::to_string(partition) + " from " + dir_));
  }
  return Status::OK();
}

Result<CommitStats> StateBackend::Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks) {
  const auto start = std::chrono::steady_clock::now();
  if (!identity_) {
    return Status::FailedPrecondition("checkpoint " + std::to_string(epoch) + " of " + dir_ +
                                      " before CheckIdentity: a checkpoint must carry the job's spec hash");
  }
  if (epoch <= last_epoch_) {
    return Status::InvalidArgument("checkpoint epoch " + std::to_string(epoch) +
                                   " is not above the last one (" + std::to_string(last_epoch_) + ") in " +
                                   dir_);
  }
  // Check everything before writing anything, so that a refusal leaves no trace.
  std::vector<int32_t> partitions;
  partitions.reserve(tasks.size());
  for (const auto& snapshot : tasks) {
    if (snapshot.task == nullptr || snapshot.registry == nullptr) {
      return Status::InvalidArgument("checkpoint " + std::to_string(epoch) +
                                     ": a task snapshot has a null pointer");
    }
    partitions.push_back(snapshot.task->partition);
    for (const auto& table : snapshot.registry->tables()) {
      if (!impl_->tables.contains(table->name())) {
        return Status::InvalidArgument("state table " + table->name() + " has no column family in " + dir_ +
                                       ": pass its name to StateBackend::Open");
      }
    }
  }
  std::sort(partitions.begin(), partitions.end());
  if (auto dup = std::adjacent_find(partitions.begin(), partitions.end()); dup != partitions.end()) {
    return Status::InvalidArgument("checkpoint " + std::to_string(epoch) + " has partition " +
                                   std::to_string(*dup) + " twice");
  }

  CommitStats stats;
  stats.epoch = epoch;
  rocksdb::WriteBatch batch;
  std::string key;
  flatbuffers::FlatBufferBuilder fbb(256);
  for (const auto& snapshot : tasks) {
    const std::string prefix = PartitionPrefix(snapshot.task->partition);
    for (const auto& table : snapshot.registry->tables()) {
      rocksdb::ColumnFamilyHandle* cf = impl_->tables.find(table->name())->second;
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
    auto root =
        schema::CreateTaskCheckpoint(fbb, t.partition, t.next_offset, t.max_event_time_ms, epoch,
                                     t.counters.in, t.counters.out, t.counters.deduped, t.counters.filtered,
                                     t.counters.late, t.counters.dlq, t.counters.outputs, t.start_offset);
    schema::FinishTaskCheckpointBuffer(fbb, root);
    batch.Put(impl_->meta, TaskKey(t.partition),
              rocksdb::Slice(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
  }
  batch.Put(impl_->meta, kJobKey, EncodeJob(*identity_, epoch));
  stats.bytes = batch.GetDataSize();

  rocksdb::WriteOptions wo;
  wo.sync = true;  // WAL on (the default) and fsynced before Write returns
  if (rocksdb::Status s = impl_->db->Write(wo, &batch); !s.ok()) {
    return Status::IOError("checkpoint " + std::to_string(epoch) + " could not be written to " + dir_ + ": " +
                           s.ToString());
  }
  for (const auto& snapshot : tasks) {
    for (const auto& table : snapshot.registry->tables()) table->ClearDirty();
  }
  last_epoch_ = epoch;
  stats.write_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace kappa
