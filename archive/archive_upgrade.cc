#include "archive/archive_upgrade.h"

#include <fcntl.h>
#include <lz4.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstddef>
#include <algorithm>
#include <cstring>
#include <utility>

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

// What the first 4 bytes of a segment say: 1, 2, 0 for an empty file, -1
// for neither format (damage).
Result<int> SegmentFormat(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return Status::IOError(Errno("open " + path));
  uint32_t magic = 0;
  const ssize_t n = ::pread(in.get(), &magic, 4, 0);
  if (n < 0) return Status::IOError(Errno("read " + path));
  if (n == 0) return 0;
  if (n == 4 && magic == fmt::kMagicV1) return 1;
  if (n == 4 && magic == fmt::kMagic) return 2;
  return -1;
}

// Rewrites one format-1 segment in format 2 (see the header). `newest`: the
// partition's last segment, whose incomplete last block is a torn tail.
// Corruption when the segment is left as it is.
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
  Fd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
  if (out.get() < 0) return Status::IOError(Errno("create " + temp));
  // The archiver's user must still be able to write it, and no one else
  // read it where they could not before.
  if (::fchown(out.get(), st.st_uid, st.st_gid) != 0 && (st.st_uid != ::geteuid())) {
    const Status failed = Status::IOError(Errno("chown " + temp + " to the segment's owner"));
    ::unlink(temp.c_str());
    return failed;
  }
  auto fail = [&](Status status) {
    ::unlink(temp.c_str());
    return status;
  };
  auto left_as_is = [&](int64_t at, const std::string& what) {
    return fail(Status::Corruption(
        "archive " + path + ": the block at byte " + std::to_string(at) + " " + what +
        ": damage that hides where the records after it are; this segment is left as it is (in format 1, which "
        "this kappa does not read). To go on without the bytes from there: copy the archive aside, cut the "
        "segment there (truncate -s " + std::to_string(at) + " " + path +
        "), and run --upgrade again; `kappa archive` then fetches those offsets from Kafka while it holds them"));
  };
  std::string block;
  int64_t at = 0, records = 0, last = -1;
  int damaged = 0;
  int64_t torn_at = -1;
  while (at < size) {
    HeaderV1 h{};
    const int64_t left = size - at;
    const bool header_whole = left >= static_cast<int64_t>(sizeof h);
    if (header_whole && !PreadAll(in.get(), &h, sizeof h, at)) return fail(Status::IOError(Errno("read " + path)));
    if (header_whole && h.magic != fmt::kMagicV1) return left_as_is(at, "is not a block of format 1 (its magic)");
    if (header_whole && !SaneV1(h)) return left_as_is(at, "has an invalid header");
    if (!header_whole || left < static_cast<int64_t>(sizeof h + h.stored_size)) {
      if (!newest) return left_as_is(at, "is cut short in a sealed segment");
      torn_at = at;
      break;
    }
    if (h.first_offset <= last) {
      return left_as_is(at, "starts at offset " + std::to_string(h.first_offset) + ", not after the block before it");
    }
    block.resize(fmt::kHeaderBytes + h.stored_size);
    char* payload = block.data() + fmt::kHeaderBytes;
    if (!PreadAll(in.get(), payload, h.stored_size, at + static_cast<int64_t>(sizeof h))) {
      return fail(Status::IOError(Errno("read " + path)));
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
    const uint64_t seed = XXH3_64bits(&h, offsetof(HeaderV1, checksum));
    if (XXH3_64bits_withSeed(payload, h.stored_size, seed) != h.checksum) {
      // Carried over as damage: today's readers stop at it, and --repair
      // refetches it (and what follows) or says what is lost.
      n.payload_checksum = ~n.payload_checksum;
      ++damaged;
      if (on_note) {
        on_note(NoteLevel::kWarning,
                "archive " + path + ": the block at byte " + std::to_string(at) + " (offsets " +
                    std::to_string(h.first_offset) + ".." + std::to_string(h.last_offset) +
                    ") fails its checksum: carried over as a damaged block; `kappa archive -a DIR -t TOPIC -b "
                    "BROKERS --repair` refetches it and what follows from Kafka while it holds them, or says "
                    "which offsets are lost");
      }
    }
    n.header_checksum = fmt::HeaderChecksum(n);
    std::memcpy(block.data(), &n, fmt::kHeaderBytes);
    if (Status w = WriteAll(out.get(), block.data(), block.size(), temp); !w.ok()) return fail(w);
    records += h.record_count;
    last = h.last_offset;
    at += static_cast<int64_t>(sizeof h) + h.stored_size;
  }
  if (::fsync(out.get()) != 0) return fail(Status::IOError(Errno("fsync " + temp)));
  // What today's reader will make of it, before it replaces the original:
  // every header (and, with no damage carried over, every payload).
  auto scan = ScanSegment(temp, /*verify_payloads=*/damaged == 0);
  if (!scan.ok()) return fail(scan.status());
  if (scan->damaged || scan->torn_tail || scan->records != records) {
    return fail(Status::IOError("archive " + path + ": its upgraded copy does not read back whole (" +
                                DamageMessage(temp, *scan) + "); the segment is left as it is"));
  }
  if (torn_at >= 0) {
    // Format 1 cannot tell a write cut short by a crash from a damaged size
    // field with whole blocks after it: the bytes are kept, not dropped.
    const std::string aside = AsideName(path, ".torn");
    if (Status kept = CopyTail(path, torn_at, aside, "torn tail", "--upgrade"); !kept.ok()) return fail(kept);
    (void)::chown(aside.c_str(), st.st_uid, st.st_gid);  // the segment's owner and mode, as the upgraded one
    (void)::chmod(aside.c_str(), st.st_mode & 07777);
    KAPPA_RETURN_IF_ERROR(SyncDir(dir));
    ++summary->torn;
    if (on_note) {
      on_note(NoteLevel::kWarning,
              "archive " + path + ": " + std::to_string(size - torn_at) + " bytes at byte " +
                  std::to_string(torn_at) + " are an incomplete block (the older archiver killed mid-write, or a "
                  "damaged block size): cut from the segment and kept in " + aside +
                  "; `kappa archive` fetches the offsets after " + std::to_string(last) +
                  " again from Kafka while it holds them");
    }
  }
  KAPPA_KILL_POINT(kill_switch, "upgrade-written");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail(Status::IOError(Errno("rename " + temp)));
  KAPPA_RETURN_IF_ERROR(SyncDir(dir));
  KAPPA_KILL_POINT(kill_switch, "upgrade-renamed");
  ++summary->upgraded;
  summary->records += records;
  summary->damaged_blocks += damaged;
  return Status::OK();
}

}  // namespace

Status UpgradeArchive(const std::string& root, const std::vector<std::string>& topics, const NoteCallback& on_note,
                      UpgradeSummary* summary) {
  std::vector<std::string> names = topics;
  if (names.empty()) {
    auto all = ArchivedTopics(root);
    if (!all.ok()) return all.status();
    names = std::move(*all);
    if (names.empty()) return Status::NotFound("nothing archived in " + root + " (no <topic>/<partition>/ in it)");
  }
  // Every topic checked before anything is changed.
  std::vector<std::pair<std::string, std::vector<int32_t>>> partitions;
  for (const auto& topic : names) {
    KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
    auto found = ArchivedPartitions(root, topic);
    if (!found.ok()) return found.status();
    if (found->empty()) return Status::NotFound("nothing archived for topic " + topic + " in " + root);
    partitions.emplace_back(topic, std::move(*found));
  }
  for (const auto& [topic, list] : partitions) {
    for (int32_t p : list) {
      const std::string dir = PartitionDir(root, topic, p);
      // Locked only where there is something to rewrite: a running
      // archiver of an upgraded partition is no reason to refuse.
      auto formats = [&](std::vector<int64_t>* segments, std::vector<int>* format) -> Status {
        auto listed = ListSegments(dir);
        if (!listed.ok()) return listed.status();
        *segments = std::move(*listed);
        format->clear();
        for (int64_t base : *segments) {
          auto f = SegmentFormat(dir + "/" + SegmentName(base));
          if (!f.ok()) return f.status();
          format->push_back(*f);
        }
        return Status::OK();
      };
      std::vector<int64_t> segments;
      std::vector<int> format;
      KAPPA_RETURN_IF_ERROR(formats(&segments, &format));
      if (std::find(format.begin(), format.end(), 1) == format.end()) {
        for (size_t i = 0; i < segments.size(); ++i) {
          if (format[i] >= 0) {
            ++summary->current;
          } else {
            summary->left.push_back("archive " + dir + "/" + SegmentName(segments[i]) +
                                    ": its first block is of neither format (damage at byte 0); left as it is");
          }
        }
        continue;
      }
      PartitionLock lock;
      KAPPA_RETURN_IF_ERROR(lock.Lock(dir, "--upgrade"));
      KAPPA_RETURN_IF_ERROR(formats(&segments, &format));  // again, under the lock
      for (size_t i = 0; i < segments.size(); ++i) {
        const std::string name = SegmentName(segments[i]);
        if (format[i] == 0 || format[i] == 2) {
          ++summary->current;
          continue;
        }
        if (format[i] < 0) {
          // The rest of the partition stays as it is: its records follow.
          summary->left.push_back("archive " + dir + "/" + name +
                                  ": its first block is of neither format (damage at byte 0); it and the segments "
                                  "after it are left as they are");
          break;
        }
        Status st = UpgradeSegment(dir, name, i + 1 == segments.size(), summary, on_note);
        if (st.code() == Status::Code::kCorruption) {
          summary->left.push_back(st.message());
          break;
        }
        KAPPA_RETURN_IF_ERROR(st);
      }
    }
  }
  if (summary->left.empty()) return Status::OK();
  std::string text = std::to_string(summary->left.size()) + " segment(s) left as they are:";
  for (const auto& l : summary->left) text += "\n  " + l;
  return Status::Corruption(text);
}

}  // namespace kappa
