#include "archive/archive_upgrade.h"

#include <fcntl.h>
#include <lz4.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstddef>
#include <cstring>

#include "base/test_hooks.h"
#include "archive/archive_range.h"
#include "archive/segment_file.h"
#include "archive/segment_format.h"

namespace kappa {

using namespace segment_file;
namespace fmt = segment_format;

namespace {

// Block format 1 (archives of kappa before 2026-12-02): magic "KAB1" | codec
// u32 | raw_size u32 | stored_size u32 | record_count u32 | reserved u32 |
// first_offset i64 | last_offset i64 | checksum u64 (XXH3-64 of the payload
// seeded with the XXH3-64 of the 40 header bytes before it).
struct HeaderV1 {
  uint32_t magic;
  uint32_t codec;
  uint32_t raw_size;
  uint32_t stored_size;
  uint32_t record_count;
  uint32_t reserved;
  int64_t first_offset;
  int64_t last_offset;
  uint64_t checksum;
};
static_assert(sizeof(HeaderV1) == 48);

bool SaneV1(const HeaderV1& h) {
  return h.magic == fmt::kMagicV1 && h.codec == fmt::kCodecLz4 && h.raw_size <= fmt::kMaxRawBlock &&
         h.stored_size <= static_cast<uint32_t>(LZ4_compressBound(static_cast<int>(fmt::kMaxRawBlock))) &&
         h.record_count > 0 && h.first_offset >= 0 && h.last_offset >= h.first_offset;
}

class PartitionLock {
 public:
  Status Lock(const std::string& dir) {
    const std::string path = dir + "/LOCK";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return Status::IOError(Errno("open " + path));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status::Unavailable("archive partition " + dir + " is being written by another process (a running "
                                 "`kappa archive`?); stop it before --upgrade");
    }
    return Status::OK();
  }
  ~PartitionLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

// The kill points count across segments (upgrade-written:2 is the second
// segment's): one switch for the process.
KAPPA_KILL_SWITCH(kill_switch);

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Status WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(Errno("write " + path));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

// What the first 4 bytes of a segment say: 1, 2, or 0 for an empty file.
Result<int> SegmentFormat(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return Status::IOError(Errno("open " + path));
  uint32_t magic = 0;
  const ssize_t n = ::pread(in.get(), &magic, 4, 0);
  if (n < 0) return Status::IOError(Errno("read " + path));
  if (n == 0) return 0;
  if (n == 4 && magic == fmt::kMagicV1) return 1;
  return 2;  // format 2, or not a block at all: today's reader says which
}

// Rewrites one format-1 segment in format 2 (see the header). `newest`: the
// partition's last segment, whose incomplete last block is a torn tail.
Status UpgradeSegment(const std::string& dir, const std::string& name, bool newest, UpgradeSummary* summary,
                      const NoteCallback& on_note) {
  const std::string path = dir + "/" + name;
  const std::string temp = path + ".upgrading";
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return Status::IOError(Errno("open " + path));
  struct stat st{};
  if (::fstat(in.get(), &st) != 0) return Status::IOError(Errno("stat " + path));
  const int64_t size = st.st_size;
  ::unlink(temp.c_str());  // a crash's leftover
  Fd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (out.get() < 0) return Status::IOError(Errno("create " + temp));
  auto fail = [&](Status status) {
    ::unlink(temp.c_str());
    return status;
  };
  std::string block;
  int64_t at = 0, records = 0, last = -1;
  while (at < size) {
    HeaderV1 h{};
    const int64_t left = size - at;
    const bool header_whole = left >= static_cast<int64_t>(sizeof h);
    if (header_whole && !PreadAll(in.get(), &h, sizeof h, at)) return fail(Status::IOError(Errno("read " + path)));
    if (header_whole && h.magic != fmt::kMagicV1) {
      return fail(Status::Corruption("archive " + path + ": the block at byte " + std::to_string(at) +
                                     " is not a block of format 1 (its magic is wrong): damage; this segment is "
                                     "left as it is"));
    }
    if (header_whole && !SaneV1(h)) {
      return fail(Status::Corruption("archive " + path + ": the block at byte " + std::to_string(at) +
                                     " has an invalid header: damage; this segment is left as it is"));
    }
    if (!header_whole || left < static_cast<int64_t>(sizeof h + h.stored_size)) {
      if (!newest) {
        return fail(Status::Corruption("archive " + path + ": the block at byte " + std::to_string(at) +
                                       " is cut short in a sealed segment: damage; this segment is left as it is"));
      }
      summary->torn_bytes += left;
      if (on_note) {
        on_note(NoteLevel::kWarning, "archive " + path + ": leaving out " + std::to_string(left) + " bytes of an incomplete block at "
                "the tail (a crash mid-write); kappa archive fetches those offsets again from Kafka if it still "
                "holds them");
      }
      break;
    }
    if (h.first_offset <= last) {
      return fail(Status::Corruption("archive " + path + ": the block at byte " + std::to_string(at) +
                                     " starts at offset " + std::to_string(h.first_offset) +
                                     ", not after the block before it: damage; this segment is left as it is"));
    }
    block.resize(fmt::kHeaderBytes + h.stored_size);
    char* payload = block.data() + fmt::kHeaderBytes;
    if (!PreadAll(in.get(), payload, h.stored_size, at + static_cast<int64_t>(sizeof h))) {
      return fail(Status::IOError(Errno("read " + path)));
    }
    const uint64_t seed = XXH3_64bits(&h, offsetof(HeaderV1, checksum));
    if (XXH3_64bits_withSeed(payload, h.stored_size, seed) != h.checksum) {
      return fail(Status::Corruption("archive " + path + ": the block at byte " + std::to_string(at) +
                                     " (offsets " + std::to_string(h.first_offset) + ".." +
                                     std::to_string(h.last_offset) +
                                     ") fails its checksum: damage; this segment is left as it is"));
    }
    fmt::BlockHeader n{};
    n.magic = fmt::kMagic;
    n.format = fmt::kFormatVersion;
    n.codec = h.codec;
    n.raw_size = h.raw_size;
    n.stored_size = h.stored_size;
    n.record_count = h.record_count;
    n.first_offset = h.first_offset;
    n.last_offset = h.last_offset;
    n.payload_checksum = fmt::PayloadChecksum(payload, h.stored_size);
    n.header_checksum = fmt::HeaderChecksum(n);
    std::memcpy(block.data(), &n, fmt::kHeaderBytes);
    if (Status w = WriteAll(out.get(), block.data(), block.size(), temp); !w.ok()) return fail(w);
    records += h.record_count;
    last = h.last_offset;
    at += static_cast<int64_t>(sizeof h) + h.stored_size;
  }
  if (::fsync(out.get()) != 0) return fail(Status::IOError(Errno("fsync " + temp)));
  // What today's reader will make of it, before it replaces the original.
  auto scan = ScanSegment(temp, /*verify_payloads=*/true);
  if (!scan.ok()) return fail(scan.status());
  if (scan->damaged || scan->torn_tail || scan->records != records) {
    return fail(Status::IOError("archive " + path + ": its upgraded copy does not read back whole (" +
                                 DamageMessage(temp, *scan) + "); the segment is left as it is"));
  }
  KAPPA_KILL_POINT(kill_switch, "upgrade-written");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail(Status::IOError(Errno("rename " + temp)));
  KAPPA_RETURN_IF_ERROR(SyncDir(dir));
  KAPPA_KILL_POINT(kill_switch, "upgrade-renamed");
  ++summary->upgraded;
  summary->records += records;
  return Status::OK();
}

}  // namespace

Result<UpgradeSummary> UpgradeArchive(const std::string& root, const std::vector<std::string>& topics,
                                      const NoteCallback& on_note) {
  std::vector<std::string> names = topics;
  if (names.empty()) {
    auto all = ArchivedTopics(root);
    if (!all.ok()) return all.status();
    names = std::move(*all);
  }
  UpgradeSummary summary;
  Status first_damage;
  for (const auto& topic : names) {
    KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
    auto partitions = ArchivedPartitions(root, topic);
    if (!partitions.ok()) return partitions.status();
    if (partitions->empty()) return Status::NotFound("nothing archived for topic " + topic + " in " + root);
    for (int32_t p : *partitions) {
      const std::string dir = PartitionDir(root, topic, p);
      PartitionLock lock;
      KAPPA_RETURN_IF_ERROR(lock.Lock(dir));
      auto segments = ListSegments(dir);
      if (!segments.ok()) return segments.status();
      for (size_t i = 0; i < segments->size(); ++i) {
        const std::string name = SegmentName((*segments)[i]);
        auto format = SegmentFormat(dir + "/" + name);
        if (!format.ok()) return format.status();
        if (*format != 1) {
          ++summary.current;
          continue;
        }
        Status st = UpgradeSegment(dir, name, i + 1 == segments->size(), &summary, on_note);
        if (st.code() == Status::Code::kCorruption) {
          // The rest of this partition stays as it is (its records follow
          // the damage); the other partitions are upgraded.
          if (first_damage.ok()) first_damage = st;
          break;
        }
        KAPPA_RETURN_IF_ERROR(st);
      }
    }
  }
  if (!first_damage.ok()) return first_damage;
  return summary;
}

}  // namespace kappa
