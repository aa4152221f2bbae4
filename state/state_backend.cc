#include "state/state_backend.h"

#include <flatbuffers/flatbuffers.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/atomic_file.h"
#include "schemas/checkpoint_generated.h"
#include "state/memtable_rep.h"
#include "state/table_file_check.h"
#include "state/task_checkpoint_codec.h"

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
    // A LOCK that is not a file cannot be locked by anyone: saying another
    // process holds it sent the user looking for one.
    std::error_code ec;
    const auto lock = std::filesystem::symlink_status(dir + "/LOCK", ec);
    if (!ec && std::filesystem::exists(lock) && !std::filesystem::is_regular_file(lock)) {
      return Status::FailedPrecondition("state directory " + dir + ": its LOCK is not a file (" +
                                        (std::filesystem::is_directory(lock) ? "a directory" : "a special file") +
                                        "), so RocksDB cannot lock it: remove " + dir + "/LOCK and run again");
    }
    if (text.find("current process") != std::string::npos) {
      return Status::Unavailable(
          "state directory " + dir +
          " is already open in this process (RocksDB LOCK held): open it once and share it");
    }
    // Only a lock another process holds is "in use": a directory this one
    // may not write (read-only file system, no permission) was reported so
    // too, and the user went looking for a process that did not exist (a
    // bug bash).
    if (text.find("Resource temporarily unavailable") != std::string::npos ||
        text.find("already held") != std::string::npos) {
      return Status::Unavailable("state directory " + dir +
                                 " is in use by another kappa process (RocksDB LOCK held): stop it first");
    }
    return Status::IOError("cannot lock state directory " + dir + " (" + text +
                           "): this process must be able to write there; check its permissions and that its file "
                           "system is not read-only");
  }
  if (text.find("Too many open files") != std::string::npos) {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return Status::IOError("cannot open state directory " + dir + ": " + text +
                           ": this process has used its open-files limit (ulimit -n " +
                           std::to_string(limit.rlim_cur) + "): raise it and run again");
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

constexpr char kMarkerPrefix[] = "kappa state epoch ";

Status WriteEpochMarker(const std::string& dir, int64_t epoch) {
  return WriteFileAtomically(dir, kEpochMarkerFile, kMarkerPrefix + std::to_string(epoch) + "\n");
}

// The files RocksDB creates in a DB directory (with the default options
// kappa uses: WAL and info log in the directory itself).
bool IsRocksDbFile(const std::string& name) {
  auto number_then = [&](size_t from, const std::string& suffix) {
    if (name.size() <= from + suffix.size() || !name.ends_with(suffix)) return false;
    for (size_t i = from; i < name.size() - suffix.size(); ++i) {
      if (name[i] < '0' || name[i] > '9') return false;
    }
    return true;
  };
  if (name == "CURRENT" || name == "IDENTITY" || name == "LOCK" || name == "LOG") return true;
  if (name.starts_with("LOG.old.") || name.starts_with("MANIFEST-") || name.starts_with("OPTIONS-")) return true;
  return number_then(0, ".log") || number_then(0, ".sst") || number_then(0, ".blob") || number_then(0, ".dbtmp");
}

}  // namespace

// Written when an open found the store without table files its MANIFEST
// had lost (TableFileCheck): that open already rewrote the MANIFEST, so the
// next one would find nothing amiss. It keeps the refusal until a reset.
constexpr char kDamagedMarkerFile[] = "KAPPA_DAMAGED";

bool IsStateFile(const std::string& name) {
  return name == kEpochMarkerFile || name == std::string(kEpochMarkerFile) + ".tmp" || name == "metrics.json" ||
         name == "metrics.json.tmp" || name == kDamagedMarkerFile || IsRocksDbFile(name);
}

namespace {

// RocksDB's write-ahead log files (<number>.log).
bool IsWriteAheadLog(const std::string& name) {
  return name.size() > 4 && name.ends_with(".log") &&
         name.find_first_not_of("0123456789") == name.size() - 4;
}

// RocksDB files that hold data (not the lock or the info log): their
// presence means a store was created here.
bool IsRocksDbDataFile(const std::string& name) {
  return IsRocksDbFile(name) && name != "LOCK" && name != "LOG" && !name.starts_with("LOG.old.");
}

// RocksDB's info log (DIR/LOG), written without RocksDB's file writer:
// when the disk is full that writer's failed append leaves it in an error
// state, and logging the resulting background error through it trips a
// debug assertion (abort) in Debian's RocksDB. Here a failed write is
// simply dropped: the error reaches kappa as a Status of the write itself.
class StateInfoLogger final : public rocksdb::Logger {
 public:
  explicit StateInfoLogger(const std::string& path) : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {
    std::error_code ec;
    const bool too_big = std::filesystem::file_size(path, ec) > (uintmax_t{8} << 20);
    file_ = std::fopen(path.c_str(), too_big || ec ? "w" : "a");
  }
  ~StateInfoLogger() override {
    if (file_) std::fclose(file_);
  }
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    if (!file_) return;
    std::lock_guard<std::mutex> lock(mu_);
    std::vfprintf(file_, format, ap);
    std::fputc('\n', file_);
    std::fflush(file_);
    std::clearerr(file_);
  }

 private:
  std::mutex mu_;
  std::FILE* file_ = nullptr;
};

std::string HowToStartOver(const std::string& dir) {
  return ". To start over from scratch (reprocessing from the spec's start position), rerun with --reset-state, "
         "which deletes kappa's files in " + dir;
}

// Whether another open store (this process or another) holds `dir`'s
// RocksDB LOCK: tried, and let go at once.
bool LockHeld(const std::string& dir) {
  std::error_code ec;
  const std::string lock_path = dir + "/LOCK";
  if (!std::filesystem::exists(lock_path, ec)) return false;
  rocksdb::Env* env = rocksdb::Env::Default();
  rocksdb::FileLock* lock = nullptr;
  if (!env->LockFile(lock_path, &lock).ok()) return true;
  (void)env->UnlockFile(lock);
  return false;
}

Status Damaged(const std::string& dir, const std::string& problem) {
  return Status::Corruption("state directory " + dir + " is damaged: " + problem + HowToStartOver(dir));
}

// Damaged, for what is seen before this process opens the store: it may be
// a store another process is creating or opening right now (two starts at
// once: CURRENT not written yet), which is a store in use, not one to reset
// (a bug bash followed the advice). (Once this process has it open, its own
// LOCK would read as "in use".)
Status DamagedUnlessInUse(const std::string& dir, const std::string& problem) {
  if (LockHeld(dir)) {
    return Status::Unavailable("state directory " + dir +
                               " is in use by another kappa process (RocksDB LOCK held): stop it first");
  }
  return Damaged(dir, problem);
}

}  // namespace

// What the state tables' compaction filter may drop: entries of expiring
// tables (StateTable::expiry_ttl_ms) that forget expired entries without
// deleting them, once expired at the watermark of their partition's last
// DURABLE checkpoint. A restore goes back to that checkpoint or a later
// one, and restores a watermark at least as high, so a dropped entry
// would read as expired there anyway. Set by the writer thread, read when
// RocksDB starts a flush or compaction (each takes a copy).
class ExpiryRules {
 public:
  struct Rules {
    std::unordered_map<uint32_t, int64_t> ttl_ms;       // by column family id
    std::unordered_map<int32_t, int64_t> watermark_ms;  // by partition
  };
  std::shared_ptr<const Rules> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rules_;
  }
  void SetTtl(uint32_t cf, int64_t ttl_ms) {
    Update([&](Rules& r) { r.ttl_ms[cf] = ttl_ms; });
  }
  void SetWatermarks(const std::vector<std::pair<int32_t, int64_t>>& marks) {
    if (marks.empty()) return;
    Update([&](Rules& r) {
      for (const auto& [p, wm] : marks) r.watermark_ms[p] = wm;
    });
  }
  // The partition's entries are replaced from elsewhere (a changelog):
  // nothing of it is dropped until this process checkpoints it again.
  void Forget(int32_t partition) {
    Update([&](Rules& r) { r.watermark_ms.erase(partition); });
  }

 private:
  template <typename F>
  void Update(F&& change) {
    std::lock_guard<std::mutex> lock(mu_);
    auto next = std::make_shared<Rules>(*rules_);
    change(*next);
    rules_ = std::move(next);
  }
  mutable std::mutex mu_;
  std::shared_ptr<const Rules> rules_ = std::make_shared<Rules>();
};

namespace {

// An expiring table's value starts with the int64_t event time its TTL
// counts from; the entry is expired once the watermark passes that time +
// TTL (Dedup::Expired). The one rule of the compaction filter and Restore.
bool ExpiredAt(std::string_view value, int64_t ttl_ms, int64_t watermark_ms) {
  if (value.size() < sizeof(int64_t)) return false;
  int64_t since;
  std::memcpy(&since, value.data(), sizeof(since));
  int64_t limit;
  if (__builtin_add_overflow(since, ttl_ms, &limit)) return false;
  return watermark_ms > limit;
}

// Keys are the 4-byte big-endian partition, then the operator's key. Drops
// an entry expired at its partition's durable watermark (ExpiredAt).
class ExpiredEntryFilter final : public rocksdb::CompactionFilter {
 public:
  ExpiredEntryFilter(std::shared_ptr<const ExpiryRules::Rules> rules, int64_t ttl_ms)
      : rules_(std::move(rules)), ttl_ms_(ttl_ms) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*, bool*) const override {
    if (key.size() < 4) return false;
    auto it = rules_->watermark_ms.find(DecodePartition(key));
    if (it == rules_->watermark_ms.end()) return false;
    return ExpiredAt(std::string_view(value.data(), value.size()), ttl_ms_, it->second);
  }
  const char* Name() const override { return "kappa.ExpiredEntryFilter"; }

 private:
  std::shared_ptr<const ExpiryRules::Rules> rules_;
  int64_t ttl_ms_;
};

class ExpiredEntryFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  explicit ExpiredEntryFilterFactory(std::shared_ptr<ExpiryRules> rules) : rules_(std::move(rules)) {}
  // Flushes too: an entry that expired before its memtable was flushed
  // never reaches an SST file.
  bool ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason) const override { return true; }
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override {
    auto rules = rules_->Get();
    auto ttl = rules->ttl_ms.find(context.column_family_id);
    if (ttl == rules->ttl_ms.end() || rules->watermark_ms.empty()) return nullptr;  // nothing to drop
    return std::make_unique<ExpiredEntryFilter>(std::move(rules), ttl->second);
  }
  const char* Name() const override { return "kappa.ExpiredEntryFilterFactory"; }

 private:
  std::shared_ptr<ExpiryRules> rules_;
};

}  // namespace

// One begun checkpoint: everything its WriteBatch will hold, copied out of
// the tables, so the writer thread touches no table. Recycled (buffers and
// all) for later checkpoints.
struct PendingCommit {
  struct Part {
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    char prefix[4];
    TableChanges changes;
  };
  int64_t epoch = 0;
  std::vector<Part> parts;  // parts[0, used_parts) belong to this checkpoint
  size_t used_parts = 0;
  std::vector<std::pair<std::string, std::string>> meta;  // task records, then the job record
  // (partition, TaskSnapshot::expiry_watermark_ms) of the tasks that gave one.
  std::vector<std::pair<int32_t, int64_t>> expiry_watermarks;
  SnapshotStats snapshot;
  std::chrono::steady_clock::time_point begun;
  std::function<Status()> ready;  // BeginCommit's: called before the write
};

struct StateBackend::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;                        // every open family, for cleanup
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> tables;  // state tables only
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  std::string dir;
  std::shared_ptr<ExpiryRules> expiry;  // set by Open: shared with the tables' compaction filter factory
  std::unordered_set<uint32_t> expiring_families;  // driving thread: families whose TTL expiry knows

  std::atomic<int64_t> durable_epoch{0};
  std::mutex mu;
  std::condition_variable work_cv;  // writer: a commit was queued, or stop
  std::condition_variable done_cv;  // callers: a commit finished
  // Begun and not yet durable, in epoch order; the writer writes front()
  // and pops it when done.
  std::deque<std::unique_ptr<PendingCommit>> queue;
  std::vector<std::unique_ptr<PendingCommit>> spare;  // finished, for reuse
  std::vector<size_t> prepare;  // PrepareCapture: each part's bytes, for the writer to fault in
  bool preparing = false;       // from PrepareCapture until its capture is in `spare`
  Status error;                                       // first write error; sticky
  CommitStats last_stats;                             // of the last durable commit
  bool stop = false;
  std::optional<std::string> fail_next;  // FailNextWriteForTesting
  std::thread writer;

  ~Impl() {
    if (writer.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        stop = true;  // the writer finishes the queue first: begun checkpoints are valid ones
      }
      work_cv.notify_all();
      writer.join();
    }
    if (db) {
      uint64_t memtables = 0;
      for (auto* h : handles) {
        uint64_t v = 0;
        if (db->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) memtables += v;
      }
      if (memtables > StateBackend::kFlushAtCloseBytes) {
        // Best effort: a failure (a full disk) leaves the log, which the
        // next Open replays as after a crash.
        rocksdb::FlushOptions flush;
        flush.allow_write_stall = true;
        (void)db->Flush(flush, handles);
      }
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
      db->Close();
    }
  }

  void StartWriter() {
    writer = std::thread([this] { WriterLoop(); });
  }

  void WriterLoop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      work_cv.wait(lock, [&] { return stop || !queue.empty() || !prepare.empty(); });
      if (queue.empty() && stop) return;  // nothing left
      if (queue.empty()) {
        // PrepareCapture's: a capture's buffers, faulted in here and not
        // inside the next checkpoint's stall.
        const std::vector<size_t> sizes = std::exchange(prepare, {});
        lock.unlock();
        auto ready = std::make_unique<PendingCommit>();
        ready->parts.resize(sizes.size());
        for (size_t i = 0; i < sizes.size(); ++i) ready->parts[i].changes.puts.Prefault(sizes[i]);
        lock.lock();
        spare.push_back(std::move(ready));
        preparing = false;
        done_cv.notify_all();
        continue;
      }
      PendingCommit* c = queue.front().get();
      const bool failed_before = !error.ok();
      std::optional<std::string> injected = std::exchange(fail_next, std::nullopt);
      lock.unlock();
      CommitStats stats;
      // What the checkpoint waits for first (the sink's acks): not written without it.
      Status s = failed_before || !c->ready ? Status::OK() : std::exchange(c->ready, nullptr)();
      if (s.ok() && !failed_before) {
        s = injected ? Status::IOError("checkpoint " + std::to_string(c->epoch) + " could not be written to " + dir +
                                       ": " + *injected)
                     : Write(*c, &stats);
      }
      c->ready = nullptr;
      // RocksDB writes on through the files it holds open after they are
      // deleted: with the directory's files removed under a running job
      // (rm -rf <dir>/*), every checkpoint "succeeded" into unlinked
      // files, the run said "stopped cleanly", and the next start found
      // the directory damaged (a bug bash). Its CURRENT file names the
      // store: gone, the checkpoint is not durable.
      if (s.ok() && !failed_before && ::access((dir + "/CURRENT").c_str(), F_OK) != 0 && errno == ENOENT) {
        s = Status::IOError("checkpoint " + std::to_string(c->epoch) + " is not durable: the state directory " + dir +
                            " has lost RocksDB's files (CURRENT is gone) while the job ran, deleted from outside; "
                            "the job stops. Restore the directory from a backup, or start over with "
                            "--reset-state (the history is read again)");
      }
      // The marker follows the durable checkpoint (never precedes it): a
      // crash in between leaves it one behind, which Open accepts.
      Status marker = s.ok() && !failed_before ? WriteEpochMarker(dir, c->epoch) : Status::OK();
      if (s.ok() && !failed_before) {
        // Ready the buffers for a next capture of up to 1.25 times this
        // size, here rather than inside that capture's stall: a fresh
        // buffer costs a page fault per 4 KiB (~20 k for 1 M dirty keys).
        for (size_t i = 0; i < c->used_parts; ++i) {
          TableChanges& ch = c->parts[i].changes;
          const size_t used = ch.puts.size();
          ch.clear();  // written: the bytes are not needed any more
          ch.puts.Prefault(used + used / 4);
        }
      }
      lock.lock();
      if (!failed_before) {
        if (s.ok()) {
          expiry->SetWatermarks(c->expiry_watermarks);
          durable_epoch.store(c->epoch, std::memory_order_release);
          last_stats = stats;
          if (!marker.ok()) {
            // The checkpoint is durable, but a store without its marker
            // loses the check against going backwards: stop like for a
            // write error; a restart resumes from this checkpoint.
            error = Status::IOError("checkpoint " + std::to_string(c->epoch) + " of " + dir +
                                    " is durable, but its epoch marker could not be written: " +
                                    marker.message());
          }
        } else {
          error = std::move(s);  // later queued commits are dropped: they build on this one
        }
      }
      spare.push_back(std::move(queue.front()));
      queue.pop_front();
      done_cv.notify_all();
    }
  }

  Status Write(const PendingCommit& c, CommitStats* stats) {
    const auto start = std::chrono::steady_clock::now();
    size_t reserve = 64;
    for (size_t i = 0; i < c.used_parts; ++i) {
      const auto& ch = c.parts[i].changes;
      // Per record: tag, family id, two varint lengths (<= 16 bytes), the prefix.
      reserve += ch.puts.size() + ch.erased.size() + (ch.put_count + ch.erased_count) * 20;
    }
    for (const auto& [k, v] : c.meta) reserve += k.size() + v.size() + 20;
    rocksdb::WriteBatch batch(reserve);
    rocksdb::Status s;
    for (size_t i = 0; i < c.used_parts && s.ok(); ++i) {
      const PendingCommit::Part& part = c.parts[i];
      rocksdb::Slice key[2] = {rocksdb::Slice(part.prefix, 4), rocksdb::Slice()};
      // Deletions first, so a key erased and re-inserted keeps its new value.
      part.changes.ForEachErased([&](std::string_view k) {
        if (!s.ok()) return;
        key[1] = rocksdb::Slice(k.data(), k.size());
        s = batch.Delete(part.cf, rocksdb::SliceParts(key, 2));
      });
      part.changes.ForEachPut([&](std::string_view k, std::string_view v) {
        if (!s.ok()) return;
        key[1] = rocksdb::Slice(k.data(), k.size());
        const rocksdb::Slice value(v.data(), v.size());
        s = batch.Put(part.cf, rocksdb::SliceParts(key, 2), rocksdb::SliceParts(&value, 1));
      });
    }
    for (const auto& [k, v] : c.meta) {
      if (s.ok()) s = batch.Put(meta, k, v);
    }
    if (s.ok()) {
      rocksdb::WriteOptions wo;
      wo.sync = true;  // WAL on (the default) and fsynced before Write returns
      s = db->Write(wo, &batch);
    }
    if (!s.ok()) {
      std::string message =
          "checkpoint " + std::to_string(c.epoch) + " could not be written to " + dir + ": " + s.ToString();
      if (s.IsNoSpace()) {
        message += "; free space there (or move the state with --state-dir) and run the job again: it resumes "
                   "from its last durable checkpoint, nothing is lost (--state-headroom-mib stops it before the "
                   "disk is this full)";
      }
      return Status::IOError(message);
    }
    const auto end = std::chrono::steady_clock::now();
    stats->epoch = c.epoch;
    stats->dirty_entries = c.snapshot.dirty_entries;
    stats->erased_entries = c.snapshot.erased_entries;
    stats->bytes = batch.GetDataSize();
    stats->write_ms = std::chrono::duration<double, std::milli>(end - start).count();
    stats->capture_ms = c.snapshot.capture_ms;
    stats->total_ms = std::chrono::duration<double, std::milli>(end - c.begun).count();
    return Status::OK();
  }
};

StateBackend::StateBackend(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
StateBackend::~StateBackend() = default;

namespace {
// The "epoch" of <dir>/metrics.json (kappa run writes it there for each
// durable checkpoint unless --metrics-file says elsewhere); 0 if there is
// none or it cannot be read.
int64_t MetricsFileEpoch(const std::string& dir) {
  std::ifstream in(dir + "/metrics.json");
  std::error_code ec;
  if (!in || !std::filesystem::is_regular_file(dir + "/metrics.json", ec)) return 0;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find("\"epoch\":");
  if (at == std::string::npos) return 0;
  return std::max<int64_t>(0, std::strtoll(text.c_str() + at + 8, nullptr, 10));
}
}  // namespace

Result<std::optional<int64_t>> ReadEpochMarker(const std::string& dir) {
  const std::string path = dir + "/" + kEpochMarkerFile;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (ec) return Status::IOError("cannot look for " + path + ": " + ec.message());
    return std::optional<int64_t>();
  }
  // POSIX reads: an ifstream over a directory throws from its buffer (an
  // abort here), and the marker is a few bytes anyway.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot read " + path + ": " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::IOError("cannot read " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Damaged(dir, std::string("its epoch marker ") + kEpochMarkerFile + " is not a regular file");
  }
  char buf[64];
  const ssize_t got = ::read(fd, buf, sizeof(buf));
  const int err = errno;
  ::close(fd);
  if (got < 0) return Status::IOError("cannot read " + path + ": " + std::strerror(err));
  const std::string text(buf, static_cast<size_t>(got));
  const std::string prefix = kMarkerPrefix;
  bool ok = text.starts_with(prefix) && text.size() > prefix.size() + 1 && text.back() == '\n' &&
            text.size() < prefix.size() + 21;
  int64_t epoch = 0;
  for (size_t i = prefix.size(); ok && i + 1 < text.size(); ++i) {
    ok = text[i] >= '0' && text[i] <= '9';
    if (ok) epoch = epoch * 10 + (text[i] - '0');
  }
  if (!ok) {
    return Damaged(dir, std::string("its epoch marker ") + kEpochMarkerFile + " is not \"" + prefix +
                            "<N>\" (" + std::to_string(st.st_size) + " bytes)");
  }
  return std::optional<int64_t>(epoch);
}

bool StateBackend::InUse(const std::string& dir) { return LockHeld(dir); }

uint64_t StateBackend::WriteAheadLogBytes(const std::string& dir) {
  std::error_code ec;
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!IsWriteAheadLog(e.path().filename().string())) continue;
    const uint64_t size = e.file_size(ec);
    if (!ec) total += size;
  }
  return total;
}

Result<StateResetReport> StateBackend::Reset(const std::string& dir) {
  StateResetReport report;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return report;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::FailedPrecondition("cannot reset state directory " + dir + ": it is not a directory");
  }
  // Take RocksDB's own lock (its Env also knows the locks of this process),
  // so a running job's store is never deleted under it.
  rocksdb::Env* env = rocksdb::Env::Default();
  rocksdb::FileLock* lock = nullptr;
  const std::string lock_path = dir + "/LOCK";
  if (std::filesystem::exists(lock_path, ec)) {
    rocksdb::Status s = env->LockFile(lock_path, &lock);
    if (!s.ok()) {
      return Status::Unavailable("cannot reset state directory " + dir +
                                 ": it is in use (RocksDB LOCK held): stop the job first");
    }
  }
  std::vector<std::filesystem::path> entries;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) entries.push_back(e.path());
  if (ec) {
    if (lock) (void)env->UnlockFile(lock);
    return Status::IOError("cannot list state directory " + dir + ": " + ec.message());
  }
  std::sort(entries.begin(), entries.end());
  Status st;
  for (const auto& path : entries) {
    const std::string name = path.filename().string();
    const bool ours = IsStateFile(name);
    // A marker that became an (empty) directory is refused by Open: the
    // reset clears it too, or its advice would go round in a circle.
    if (name == kEpochMarkerFile && std::filesystem::is_directory(std::filesystem::symlink_status(path, ec)) &&
        std::filesystem::is_empty(path, ec) && std::filesystem::remove(path, ec)) {
      report.removed.push_back(name);
      continue;
    }
    if (!ours || name == "LOCK" || !std::filesystem::is_regular_file(std::filesystem::symlink_status(path, ec))) {
      if (name != "LOCK") report.kept.push_back(name);
      continue;
    }
    if (!std::filesystem::remove(path, ec) && ec && st.ok()) {
      st = Status::IOError("cannot delete " + path.string() + ": " + ec.message());
    }
    if (!ec) report.removed.push_back(name);
  }
  if (lock) (void)env->UnlockFile(lock);
  if (std::filesystem::exists(lock_path, ec)) {
    if (std::filesystem::remove(lock_path, ec)) report.removed.push_back("LOCK");
  }
  std::sort(report.removed.begin(), report.removed.end());
  if (!st.ok()) return st;
  return report;
}

Result<std::unique_ptr<StateBackend>> StateBackend::Open(const std::string& dir,
                                                         const std::vector<std::string>& table_names,
                                                         uint64_t max_total_wal_bytes) {
  for (const auto& n : table_names) {
    if (n.empty() || n == rocksdb::kDefaultColumnFamilyName || n == kMetaFamily) {
      return Status::InvalidArgument("state table name '" + n + "' is empty or reserved (default, meta)");
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create state directory " + dir + ": " + ec.message());

  // What is there before RocksDB touches it: a directory with kappa's files
  // is an existing store, to be opened as it was or refused, never created
  // afresh over what is left of it.
  bool has_store_files = false;
  bool has_current = false;
  std::set<std::string> before;  // the directory's entries before RocksDB
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    before.insert(name);
    has_store_files = has_store_files || IsRocksDbDataFile(name);
    has_current = has_current || name == "CURRENT";
  }
  if (ec) return Status::IOError("cannot list state directory " + dir + ": " + ec.message());
  if (before.count(kDamagedMarkerFile)) {
    std::ifstream in(dir + "/" + kDamagedMarkerFile);
    std::string why;
    std::getline(in, why);
    return Damaged(dir, why.empty() ? "an earlier start found it damaged (" + std::string(kDamagedMarkerFile) + ")"
                                    : why);
  }
  auto marker = ReadEpochMarker(dir);
  if (!marker.ok()) return marker.status();
  if (has_store_files && !has_current) {
    return DamagedUnlessInUse(
        dir, "RocksDB's CURRENT file is missing, so the MANIFEST naming the live files cannot be found");
  }
  if (!has_store_files && marker->has_value()) {
    return DamagedUnlessInUse(dir, "RocksDB's files are gone, but " + std::string(kEpochMarkerFile) +
                                       " says checkpoint epoch " + std::to_string(**marker) + " was durable here");
  }
  const bool store_exists = has_store_files;

  rocksdb::Options options;
  options.create_if_missing = !store_exists;
  // A synced WAL that goes missing is an error, not an empty memtable.
  options.track_and_verify_wals_in_manifest = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  options.db_write_buffer_size = size_t{256} << 20;  // across all families
  options.max_total_wal_size = max_total_wal_bytes;  // see Open
  options.info_log = std::make_shared<StateInfoLogger>(dir + "/LOG");
  // No space reserved ahead for the WAL: RocksDB's fallocate took ~72 MiB
  // (1.1 write buffers) at once, so a state of 1 MiB on a 100 MiB volume
  // was refused by the free-space check, "has 25 MiB free", with df having
  // shown 99 MiB (a bug bash). The WAL is synced once a checkpoint.
  options.allow_fallocate = false;
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
  } else if (store_exists) {
    // A store is there but unreadable: report that, not RocksDB's later
    // complaint about unopened column families.
    if (s.IsIOError() && !s.IsPathNotFound()) {
      return FromRocks(s, "cannot list the column families of state directory " + dir);
    }
    return DamagedUnlessInUse(dir, "RocksDB cannot read its MANIFEST (" + s.ToString() + ")");
  }
  if (store_exists && std::find(existing.begin(), existing.end(), kMetaFamily) == existing.end()) {
    return DamagedUnlessInUse(dir, "the MANIFEST lists no \"meta\" column family, so the checkpoints are lost (a "
                                   "truncated or replaced MANIFEST)");
  }
  for (const auto& n : table_names) add(n);
  // State tables take a checkpoint's puts and deletes in bulk and are read
  // only on restore (one iterator per partition): a vector memtable appends
  // each write (sorting once, when flushed or iterated) where the default
  // skiplist pays a search per insert; profiled, that search was most of the
  // background writer's time. Ours sorts on the keys' first 16 bytes
  // (state/memtable_rep.h says why). The meta family keeps the skiplist for
  // its point reads.
  rocksdb::ColumnFamilyOptions table_options = cf_options;
  table_options.memtable_factory = std::make_shared<PrefixSortedVectorRepFactory>();
  // Up to four memtables: sorting and writing a full one takes seconds when
  // the machine is busy (the vector is sorted at flush), and with two, the
  // next checkpoint's write waited for that flush; measured on a 10 M-record
  // Kafka replay beside its broker on 2 cores, checkpoints then stalled the
  // job for up to 1.9 s. db_write_buffer_size still bounds their memory.
  table_options.max_write_buffer_number = 4;
  auto expiry = std::make_shared<ExpiryRules>();
  table_options.compaction_filter_factory = std::make_shared<ExpiredEntryFilterFactory>(expiry);
  options.allow_concurrent_memtable_write = false;  // required by the vector memtable
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) {
    const bool table = n != kMetaFamily && n != rocksdb::kDefaultColumnFamilyName;
    descriptors.emplace_back(n, table ? table_options : cf_options);
  }

  auto impl = std::make_unique<Impl>();
  impl->expiry = expiry;
  rocksdb::DB* raw = nullptr;
  TableFileCheck table_check(dir, /*keep_aside=*/true);
  s = rocksdb::DB::Open(options, dir, descriptors, &impl->handles, &raw);
  if (!s.ok()) {
    if (store_exists && (s.IsCorruption() || s.IsPathNotFound() || s.IsInvalidArgument())) {
      return DamagedUnlessInUse(dir, "RocksDB cannot open it consistently (" + s.ToString() + ")");
    }
    // Not when another process holds the store: it is creating it at the
    // same moment (two deploys of one new version), and this attempt,
    // refused its LOCK, removed that one's files half-way (a bug bash: both
    // failed, "While renaming a file to .../IDENTITY").
    if (!store_exists && !LockHeld(dir)) {
      // A store being created that failed half-way (out of file descriptors
      // or disk) left a MANIFEST without kappa's families, which the next
      // start took for a damaged store whose "checkpoints are lost" (a bug
      // bash). Nothing was in it: what this attempt made goes.
      for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        if (!before.count(e.path().filename().string())) std::filesystem::remove_all(e.path(), ec);
      }
    }
    return FromOpenError(s, dir);
  }
  impl->db.reset(raw);
  impl->dir = dir;
  if (std::string dropped = table_check.Dropped(raw); !dropped.empty()) {
    for (auto* h : impl->handles) raw->DestroyColumnFamilyHandle(h);
    impl->handles.clear();
    impl->db.reset();
    std::ofstream(dir + "/" + kDamagedMarkerFile) << dropped << "\n";
    return Damaged(dir, dropped);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == kMetaFamily) {
      impl->meta = impl->handles[i];
    } else if (names[i] != rocksdb::kDefaultColumnFamilyName) {
      impl->tables[names[i]] = impl->handles[i];
    }
  }

  std::unique_ptr<StateBackend> backend(new StateBackend(dir, std::move(impl)));
  KAPPA_RETURN_IF_ERROR(backend->LoadIdentity());
  if (marker->has_value() && backend->last_epoch() < **marker) {
    return Damaged(dir, "its last checkpoint is epoch " + std::to_string(backend->last_epoch()) + ", but " +
                            kEpochMarkerFile + " says epoch " + std::to_string(**marker) +
                            " was durable: the epoch went backwards, so RocksDB lost data (a truncated MANIFEST, "
                            "a deleted WAL *.log, or an older copy of the directory)");
  }
  // The marker gone as well: the job's metrics.json in the directory (it is
  // written only for a durable checkpoint) still says how far it got.
  if (!marker->has_value()) {
    if (const int64_t reported = MetricsFileEpoch(dir); reported > backend->last_epoch()) {
      return Damaged(dir, "its last checkpoint is epoch " + std::to_string(backend->last_epoch()) + " and " +
                              kEpochMarkerFile + " is missing, but metrics.json says epoch " +
                              std::to_string(reported) + " was durable: RocksDB lost data (a deleted WAL *.log, "
                              "or an older copy of the directory) and the marker is gone too");
    }
  }
  backend->impl_->StartWriter();
  return backend;
}

namespace {
// The job record's identity; nullptr if it fails verification.
const schema::JobCheckpoint* VerifiedJob(const std::string& value) {
  // std::string storage is heap- or object-aligned, enough for the verifier.
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  if (!verifier.VerifyBuffer<schema::JobCheckpoint>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<schema::JobCheckpoint>(value.data());
}
JobIdentity IdentityOf(const schema::JobCheckpoint& job) {
  JobIdentity id;
  id.job = job.job() ? job.job()->str() : "";
  id.version = job.version();
  id.spec_hash = job.spec_hash() ? job.spec_hash()->str() : "";
  return id;
}
}  // namespace

std::optional<JobIdentity> StateBackend::StoredIdentity(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) return std::nullopt;
  std::vector<std::string> existing;
  if (!rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &existing).ok() ||
      std::find(existing.begin(), existing.end(), kMetaFamily) == existing.end()) {
    return std::nullopt;
  }
  // Read-only, the two families that need no table options: a subset is
  // allowed there, and nothing is written (no WAL replayed into the files).
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kMetaFamily, rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, families, &handles, &raw).ok()) return std::nullopt;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), handles[1], kJobKey, &value);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  if (!s.ok()) return std::nullopt;
  const schema::JobCheckpoint* job = VerifiedJob(value);
  if (job == nullptr) return std::nullopt;
  return IdentityOf(*job);
}

Status StateBackend::LoadIdentity() {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->meta, kJobKey, &value);
  if (s.IsNotFound()) return Status::OK();
  if (!s.ok()) return FromRocks(s, "cannot read the job record of state directory " + dir_);
  const schema::JobCheckpoint* job = VerifiedJob(value);
  if (job == nullptr) {
    return Status::Corruption("state directory " + dir_ + ": the job record fails verification");
  }
  identity_ = IdentityOf(*job);
  last_begun_epoch_ = job->epoch();
  impl_->durable_epoch.store(job->epoch(), std::memory_order_release);
  impl_->last_stats.epoch = job->epoch();
  return Status::OK();
}

int64_t StateBackend::last_epoch() const { return impl_->durable_epoch.load(std::memory_order_acquire); }

void StateBackend::WaitIdle() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->done_cv.wait(lock, [&] { return impl_->queue.empty(); });
}

Status StateBackend::CheckIdentity(const JobIdentity& id) {
  WaitIdle();
  auto record = [&] {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    KAPPA_RETURN_IF_ERROR(FromRocks(impl_->db->Put(wo, impl_->meta, kJobKey, EncodeJob(id, last_epoch())),
                                    "cannot record the job identity in " + dir_));
    identity_ = id;
    return Status::OK();
  };
  if (!identity_) return record();
  const JobIdentity& stored = *identity_;
  if (stored.job != id.job || stored.version != id.version) {
    return Status::FailedPrecondition("state in " + dir_ + " belongs to " + Describe(stored) + ", not " +
                                      Describe(id) + ": give each version its own state directory");
  }
  if (stored.spec_hash != id.spec_hash && last_epoch() == 0) {
    // Never checkpointed: nothing in it is the other logic's. A first run
    // refused at its start (its DLQ topic holding another job's rows, say)
    // recorded its identity, and the spec corrected for it was then refused
    // as "a logic change".
    return record();
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
  WaitIdle();
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
  TaskCheckpointData d = TaskCheckpointFrom(*t);
  return std::optional<TaskCheckpointData>(d);
}

std::vector<int32_t> StateBackend::StoredPartitions() {
  WaitIdle();
  std::vector<int32_t> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  for (it->Seek(kTaskPrefix); it->Valid() && it->key().starts_with(kTaskPrefix); it->Next()) {
    rocksdb::Slice k = it->key();
    k.remove_prefix(sizeof(kTaskPrefix) - 1);
    if (k.size() == 4) out.push_back(DecodePartition(k));
  }
  return out;
}

Status StateBackend::Restore(int32_t partition, StateRegistry& registry, int64_t expiry_watermark_ms,
                             size_t* expired_skipped, const std::function<Status(int64_t loaded)>& every) {
  std::vector<std::string> names;
  std::map<std::string, StateTable*, std::less<>> by_name;
  for (const auto& table : registry.tables()) {
    names.push_back(table->name());
    by_name[table->name()] = table.get();
  }
  size_t skipped = 0;
  int64_t seen = 0;
  Status st = ForEachEntry(partition, names, [&](const std::string& name, std::string_view key, std::string_view value) {
    if (every && (++seen & 0xffff) == 0) KAPPA_RETURN_IF_ERROR(every(seen));
    StateTable* table = by_name.find(name)->second;
    // The compaction filter's rule, at the watermark the task resumes from.
    if (expiry_watermark_ms != kNoWatermark && table->forgets_expired() && table->expiry_ttl_ms() > 0 &&
        ExpiredAt(value, table->expiry_ttl_ms(), expiry_watermark_ms)) {
      ++skipped;
      return Status::OK();
    }
    return table->Load(key, value);
  });
  if (expired_skipped) *expired_skipped = skipped;
  return st;
}

Status StateBackend::ForEachEntry(int32_t partition, const std::vector<std::string>& tables,
                                  const std::function<Status(const std::string& table, std::string_view key,
                                                             std::string_view value)>& fn) {
  WaitIdle();
  const std::string prefix = PartitionPrefix(partition);
  const std::string end = PrefixEnd(prefix);
  const rocksdb::Slice upper(end);
  for (const std::string& name : tables) {
    auto found = impl_->tables.find(name);
    if (found == impl_->tables.end()) {
      return Status::InvalidArgument("state table " + name + " has no column family in " + dir_ +
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
      KAPPA_RETURN_IF_ERROR(fn(name, std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size())));
    }
    if (it->status().IsCorruption()) {
      // A damaged SST found while restoring: the same advice as the
      // damage Open finds.
      return Damaged(dir_, "restoring table " + name + " of partition " + std::to_string(partition) + ": " +
                               it->status().ToString());
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(it->status(), "cannot restore table " + name + " of partition " +
                                                      std::to_string(partition) + " from " + dir_));
  }
  return Status::OK();
}

Status StateBackend::ReplacePartition(int32_t partition, const std::vector<Entry>& entries,
                                      const TaskCheckpointData& task) {
  return ApplyToPartition(partition, entries, {}, task, /*clear_first=*/true);
}

Status StateBackend::ApplyToPartition(int32_t partition, const std::vector<Entry>& entries,
                                      const std::vector<std::pair<std::string, std::string>>& erased,
                                      const TaskCheckpointData& task, bool clear_first) {
  if (clear_first) WaitIdle();
  impl_->expiry->Forget(partition);  // its entries come from elsewhere now
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->error.ok()) return impl_->error;
  }
  const std::string prefix = PartitionPrefix(partition);
  std::string end = PrefixEnd(prefix);
  if (end.empty()) end = std::string(5, '\xff');
  rocksdb::WriteBatch batch;
  // Key by key: the vector memtable this store uses has no range deletes.
  const rocksdb::Slice upper(end);
  for (const auto& [name, cf] : impl_->tables) {
    if (!clear_first) break;
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, cf));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      KAPPA_RETURN_IF_ERROR(FromRocks(batch.Delete(cf, it->key()), "cannot stage a deletion"));
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(it->status(), "cannot clear partition " + std::to_string(partition) + " in " + dir_));
  }
  for (const Entry& e : entries) {
    auto found = impl_->tables.find(e.table);
    if (found == impl_->tables.end()) {
      return Status::InvalidArgument("state table " + e.table + " has no column family in " + dir_);
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(batch.Put(found->second, prefix + e.key, e.value), "cannot stage state"));
  }
  for (const auto& [table, key] : erased) {
    auto found = impl_->tables.find(table);
    if (found == impl_->tables.end()) {
      return Status::InvalidArgument("state table " + table + " has no column family in " + dir_);
    }
    KAPPA_RETURN_IF_ERROR(FromRocks(batch.Delete(found->second, prefix + key), "cannot stage a deletion"));
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  TaskCheckpointData stored = task;
  stored.partition = partition;
  auto root = BuildTaskCheckpoint(fbb, stored, last_begun_epoch_);
  schema::FinishTaskCheckpointBuffer(fbb, root);
  KAPPA_RETURN_IF_ERROR(FromRocks(
      batch.Put(impl_->meta, TaskKey(partition),
                rocksdb::Slice(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize())),
      "cannot stage the task checkpoint"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(impl_->db->Write(wo, &batch), "cannot write the restored state of partition " +
                                                     std::to_string(partition) + " to " + dir_);
}

Result<SnapshotStats> StateBackend::BeginCommit(int64_t epoch, const std::vector<TaskSnapshot>& tasks,
                                                std::function<Status()> ready) {
  const auto start = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->error.ok()) return impl_->error;
  }
  if (!identity_) {
    return Status::FailedPrecondition("checkpoint " + std::to_string(epoch) + " of " + dir_ +
                                      " before CheckIdentity: a checkpoint must carry the job's spec hash");
  }
  if (epoch <= last_begun_epoch_) {
    return Status::InvalidArgument("checkpoint epoch " + std::to_string(epoch) +
                                   " is not above the last one (" + std::to_string(last_begun_epoch_) +
                                   ") in " + dir_);
  }
  // Check everything before capturing anything, so that a refusal leaves no trace.
  std::vector<int32_t> partitions;
  partitions.reserve(tasks.size());
  size_t table_count = 0;
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
      ++table_count;
    }
  }
  std::sort(partitions.begin(), partitions.end());
  if (auto dup = std::adjacent_find(partitions.begin(), partitions.end()); dup != partitions.end()) {
    return Status::InvalidArgument("checkpoint " + std::to_string(epoch) + " has partition " +
                                   std::to_string(*dup) + " twice");
  }

  // Room in the queue (the previous write may still be running), and a
  // recycled capture whose buffers are already the right size.
  std::unique_ptr<PendingCommit> c;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->done_cv.wait(lock,
                        [&] { return impl_->queue.size() < kMaxPendingCommits || !impl_->error.ok(); });
    if (!impl_->error.ok()) return impl_->error;
    if (!impl_->prepare.empty()) {
      impl_->prepare.clear();  // too late to be of use: the capture is now
      impl_->preparing = false;
    }
    if (!impl_->spare.empty()) {
      c = std::move(impl_->spare.back());
      impl_->spare.pop_back();
    }
  }
  if (!c) c = std::make_unique<PendingCommit>();
  const auto captured = std::chrono::steady_clock::now();

  c->epoch = epoch;
  c->begun = start;
  c->ready = std::move(ready);
  c->snapshot = SnapshotStats{};
  c->snapshot.epoch = epoch;
  if (c->parts.size() < table_count) c->parts.resize(table_count);
  c->used_parts = 0;
  c->meta.resize(tasks.size() + 1);
  c->expiry_watermarks.clear();
  flatbuffers::FlatBufferBuilder fbb(256);
  for (size_t ti = 0; ti < tasks.size(); ++ti) {
    const auto& snapshot = tasks[ti];
    const std::string prefix = PartitionPrefix(snapshot.task->partition);
    for (const auto& table : snapshot.registry->tables()) {
      PendingCommit::Part& part = c->parts[c->used_parts++];
      part.cf = impl_->tables.find(table->name())->second;
      std::memcpy(part.prefix, prefix.data(), 4);
      if (table->forgets_expired() && impl_->expiring_families.insert(part.cf->GetID()).second) {
        impl_->expiry->SetTtl(part.cf->GetID(), table->expiry_ttl_ms());
      }
      table->TakeChanges(&part.changes);
      c->snapshot.dirty_entries += part.changes.put_count;
      c->snapshot.erased_entries += part.changes.erased_count;
      c->snapshot.bytes += part.changes.puts.size() + part.changes.erased.size();
    }
    const TaskCheckpointData& t = *snapshot.task;
    if (snapshot.expiry_watermark_ms != kNoWatermark && snapshot.registry->forgets_expired_entries()) {
      c->expiry_watermarks.emplace_back(t.partition, snapshot.expiry_watermark_ms);
    }
    fbb.Clear();
    auto root = BuildTaskCheckpoint(fbb, t, epoch);
    schema::FinishTaskCheckpointBuffer(fbb, root);
    c->meta[ti].first = TaskKey(t.partition);
    c->meta[ti].second.assign(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  }
  c->meta[tasks.size()].first = kJobKey;
  c->meta[tasks.size()].second = EncodeJob(*identity_, epoch);

  const auto end = std::chrono::steady_clock::now();
  c->snapshot.wait_ms = std::chrono::duration<double, std::milli>(captured - start).count();
  c->snapshot.capture_ms = std::chrono::duration<double, std::milli>(end - captured).count();
  SnapshotStats stats = c->snapshot;
  last_checkpoint_bytes_ = stats.bytes;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->queue.push_back(std::move(c));
  }
  impl_->work_cv.notify_one();
  last_begun_epoch_ = epoch;
  return stats;
}

void StateBackend::PrepareCapture(const std::vector<TaskSnapshot>& tasks, double scale) {
  constexpr size_t kWorthIt = size_t{1} << 20;  // below: a few hundred page faults
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->spare.empty() || !impl_->queue.empty() || impl_->preparing || !impl_->error.ok()) return;
  std::vector<size_t> sizes;
  size_t total = 0;
  for (const auto& snapshot : tasks) {
    if (snapshot.registry == nullptr) return;
    for (const auto& table : snapshot.registry->tables()) {
      sizes.push_back(static_cast<size_t>(static_cast<double>(table->DirtyBytes()) * scale));
      total += sizes.back();
    }
  }
  if (total < kWorthIt) return;
  impl_->prepare = std::move(sizes);
  impl_->preparing = true;
  impl_->work_cv.notify_one();
}

Result<CommitStats> StateBackend::WaitForCommits() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->done_cv.wait(lock, [&] { return impl_->queue.empty() && !impl_->preparing; });
  if (!impl_->error.ok()) return impl_->error;
  return impl_->last_stats;
}

bool StateBackend::WaitForRoom(int timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->done_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return impl_->queue.size() < kMaxPendingCommits || !impl_->error.ok();
  });
}

bool StateBackend::WaitIdleFor(int timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->done_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return (impl_->queue.empty() && !impl_->preparing) || !impl_->error.ok();
  });
}

Status StateBackend::WriteError() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->error;
}

void StateBackend::FailNextWriteForTesting(std::string message) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->fail_next = std::move(message);
}

Result<CommitStats> StateBackend::Commit(int64_t epoch, const std::vector<TaskSnapshot>& tasks) {
  auto begun = BeginCommit(epoch, tasks);
  if (!begun.ok()) return begun.status();
  return WaitForCommits();
}

Status StateBackend::CompactForTesting() {
  WaitIdle();
  for (const auto& [name, cf] : impl_->tables) {
    rocksdb::CompactRangeOptions o;
    o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    rocksdb::Status s = impl_->db->Flush(rocksdb::FlushOptions(), cf);
    if (s.ok()) s = impl_->db->CompactRange(o, cf, nullptr, nullptr);
    if (!s.ok()) return FromRocks(s, "cannot compact state table " + name + " in " + dir_);
  }
  return Status::OK();
}

uint64_t StateBackend::ApproximateBytes() const {
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* h : impl_->handles) {
    uint64_t v = 0;
    if (impl_->db->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) total += v;
    if (impl_->db->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) total += v;
  }
  return total;
}

}  // namespace kappa
