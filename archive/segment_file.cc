#include "archive/segment_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace kappa::segment_file {

using namespace segment_format;

// Out of file descriptors, the archive says which limit: it holds about two
// files per partition it writes, and a topic of 500 partitions ran into the
// usual 1024 with a bare "Too many open files" (a bug bash).
std::string Errno(const std::string& what) {
  const int err = errno;
  return what + ": " + std::strerror(err) + FileLimitHint(err);
}

Status ValidateTopic(const std::string& topic) {
  const bool valid = !topic.empty() && topic.size() <= 249 && topic != "." && topic != ".." &&
                     topic.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                         std::string::npos;
  if (valid) return Status::OK();
  std::string shown;
  for (char c : topic.substr(0, 60)) shown.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (topic.size() > 60) shown += "... (" + std::to_string(topic.size()) + " characters)";
  return Status::InvalidArgument("invalid topic name '" + shown +
                                 "': a Kafka topic name is 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-', "
                                 "and not '.' or '..'");
}

std::string PartitionDir(const std::string& root, const std::string& topic, int32_t partition) {
  return root + "/" + topic + "/" + std::to_string(partition);
}

std::string SegmentName(int64_t base) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%020" PRId64 ".kseg", base);
  return buf;
}

Status MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string prefix = path.substr(0, i);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return Status::IOError(Errno("mkdir " + prefix));
    }
  }
  return Status::OK();
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Status::IOError(Errno("open " + dir));
  int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status::OK() : Status::IOError(Errno("fsync " + dir));
}

Result<std::vector<int64_t>> ListSegments(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return Status::NotFound("no archive at " + dir);
    return Status::IOError(Errno("opendir " + dir));
  }
  std::vector<int64_t> bases;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() == 25 && name.compare(20, 5, ".kseg") == 0) bases.push_back(std::strtoll(name.c_str(), nullptr, 10));
  }
  ::closedir(d);
  std::sort(bases.begin(), bases.end());
  return bases;
}

bool PreadAll(int fd, void* buf, size_t size, int64_t at) {
  auto* p = static_cast<char*>(buf);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, at);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
    at += n;
  }
  return true;
}

Result<SegmentScan> ScanSegment(const std::string& path, bool verify_payloads) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("open " + path));
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    Status failed = Status::IOError(Errno("stat " + path));
    ::close(fd);
    return failed;
  }
  SegmentScan scan;
  scan.file_bytes = st.st_size;
  Status status;
  std::string payload;
  int64_t pos = 0;
  while (pos < scan.file_bytes) {
    char bytes[kHeaderBytes];
    const size_t have = static_cast<size_t>(std::min<int64_t>(kHeaderBytes, scan.file_bytes - pos));
    if (!PreadAll(fd, bytes, have, pos)) {
      status = Status::IOError(Errno("read " + path));
      break;
    }
    BlockHeader h{};
    BlockState state = InspectHeader(bytes, have, static_cast<uint64_t>(scan.file_bytes - pos), &h);
    if (state == BlockState::kOldFormat && pos == 0) {
      status = Status::FailedPrecondition(OldFormatMessage(path));
      break;
    }
    if (state == BlockState::kIncomplete) {
      scan.torn_tail = true;
      break;
    }
    if (state == BlockState::kComplete && verify_payloads) {
      payload.resize(h.stored_size);
      if (!PreadAll(fd, payload.data(), payload.size(), pos + static_cast<int64_t>(kHeaderBytes))) {
        status = Status::IOError(Errno("read " + path));
        break;
      }
      if (PayloadChecksum(payload.data(), payload.size()) != h.payload_checksum) state = BlockState::kChecksumMismatch;
    }
    if (state != BlockState::kComplete) {
      scan.damaged = true;
      scan.damage = std::string("fails: ") + BlockStateName(state);
      if (state == BlockState::kChecksumMismatch) {
        scan.damaged_first = h.first_offset;
        scan.damaged_last = h.last_offset;
      }
      break;
    }
    if (scan.records > 0 && h.first_offset <= scan.last_offset) {
      scan.damaged = true;
      scan.damage = "does not continue the offsets of the block before it (offsets " + std::to_string(h.first_offset) +
                    ".." + std::to_string(h.last_offset) + " after " + std::to_string(scan.last_offset) + ")";
      break;
    }
    if (scan.first_offset < 0) scan.first_offset = h.first_offset;
    scan.last_offset = h.last_offset;
    scan.records += h.record_count;
    pos += static_cast<int64_t>(kHeaderBytes + h.stored_size);
    scan.valid_bytes = pos;
  }
  ::close(fd);
  if (!status.ok()) return status;
  return scan;
}

Result<std::optional<std::string>> ReadSmallFile(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Status::IOError(Errno("open " + path));
  }
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  const int err = errno;
  ::close(fd);
  if (n < 0) {
    errno = err;
    return Status::IOError(Errno("read " + path));
  }
  return std::optional<std::string>(std::string(buf, static_cast<size_t>(n)));
}

Result<int64_t> ReadChainStart(const std::string& dir) {
  auto text = ReadSmallFile(dir, kChainFile);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return int64_t{-1};
  const std::string path = dir + "/" + kChainFile;
  long long from = -1;
  char end = 0;
  if (std::sscanf((*text)->c_str(), "from %lld%c", &from, &end) != 2 || end != '\n' || from < 0) {
    return Status::Corruption("archive " + path + " is not \"from <offset>\" (" + std::to_string((*text)->size()) +
                              " bytes): the archive is damaged; `--repair` cannot tell holes between segments without it. Write "
                              "it as \"from <the first segment's offset>\" if kappa wrote every segment of the partition "
                              "with it, or delete it to read without that check");
  }
  return static_cast<int64_t>(from);
}

Status WriteChainStart(const std::string& dir, int64_t from) {
  return WriteFileAtomically(dir, kChainFile, "from " + std::to_string(from) + "\n");
}

int64_t ChainedEnd(int64_t name, int64_t first_offset, int64_t last_offset) {
  return first_offset >= 0 ? last_offset + 1 : name;
}

std::string SegmentOrderProblem(const std::string& dir, int64_t name, int64_t first_offset, int64_t prev_end,
                                int64_t chain_from) {
  const std::string path = dir + "/" + SegmentName(name);
  if (first_offset >= 0 && first_offset < name) {
    return "archive " + path + " holds offsets from " + std::to_string(first_offset) +
           ", below its name: it is not this partition's segment (a copy, or another partition's or archive's, "
           "put here by hand); move it out of " + dir;
  }
  if (prev_end < 0) return "";
  if (name < prev_end) {
    return "archive " + path + " overlaps the segment before it, which ends at offset " + std::to_string(prev_end) +
           " (a copy put here by hand?); move it out of " + dir;
  }
  if (chain_from >= 0 && name >= chain_from && name != prev_end) {
    return "archive " + dir + ": offsets " + std::to_string(prev_end) + ".." + std::to_string(name - 1) +
           " are missing: the segment before " + SegmentName(name) + " ends at " + std::to_string(prev_end) +
           " (a segment deleted, or one cut short): the archive has a hole";
  }
  return "";
}

std::string ChainStartProblem(const std::string& dir, const std::vector<int64_t>& segments, int64_t chain_from) {
  // Segments named below it are from before CHAIN (written by an older
  // kappa), continued by the writer that began the chain: not checked.
  if (chain_from < 0 || (!segments.empty() && segments.front() <= chain_from)) return "";
  const auto first = segments.begin();
  if (first != segments.end()) {
    return "archive " + dir + ": offsets " + std::to_string(chain_from) + ".." + std::to_string(*first - 1) +
           " are missing: its CHAIN file says its segments begin with " + SegmentName(chain_from) +
           ", which is not there (deleted or moved; put it back), and the first segment left is " +
           SegmentName(*first) + ": the archive has a hole";
  }
  if (PartitionBeingWritten(dir)) return "";  // a writer is making that segment
  return "archive " + dir + ": its CHAIN file says its segments begin with " + SegmentName(chain_from) +
         ", but no segment from there on is there: they were deleted or moved (put them back), or the archiver died "
         "as it began the partition (then run `kappa archive` for this topic again: it archives the partition from "
         "offset " + std::to_string(chain_from) + ")";
}

bool PartitionBeingWritten(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no writer ever locked it (or it cannot be read: then no lock can be seen either)
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the probe's lock
  return held;
}

std::string TornTailMessage(const std::string& path, const SegmentScan& scan, int64_t archived_end) {
  return "archive " + path + " ends in an incomplete block at byte " + std::to_string(scan.valid_bytes) + " (" +
         std::to_string(scan.file_bytes - scan.valid_bytes) +
         " bytes) and no archiver is writing it: one died mid-write, or the file was cut. The archive holds this "
         "partition up to offset " + std::to_string(archived_end - 1) +
         "; records after it may be missing. Run `kappa archive` for this topic again: it drops the incomplete "
         "bytes and fetches what follows from Kafka while Kafka still holds it";
}

std::string DamageMessage(const std::string& path, const SegmentScan& scan) {
  std::string what = "archive " + path + ": the block at byte " + std::to_string(scan.valid_bytes);
  if (scan.damaged) {
    what += " " + scan.damage;
    if (scan.damaged_first >= 0) {
      what += " (offsets " + std::to_string(scan.damaged_first) + ".." + std::to_string(scan.damaged_last) + ")";
    }
  } else {
    what += " is incomplete, in a sealed segment (not the newest)";
  }
  return what + ": the archive is damaged, not torn by a crash";
}

std::string AsideName(const std::string& path, const std::string& suffix) {
  auto exists = [](const std::string& name) {
    struct stat st{};
    return ::lstat(name.c_str(), &st) == 0;
  };
  std::string name = path + suffix;
  for (int i = 2; exists(name); ++i) name = path + suffix + "." + std::to_string(i);
  return name;
}

Status CopyTail(const std::string& path, int64_t from, const std::string& to, const std::string& what,
                const std::string& command) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::IOError(Errno("open " + path));
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    Status failed = Status::IOError(Errno("create " + to));
    ::close(in);
    return failed;
  }
  Status result;
  std::string buf(1 << 20, '\0');
  for (int64_t at = from;;) {
    ssize_t n = ::pread(in, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result = Status::IOError(Errno("read " + path));
      break;
    }
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        if (w == 0) errno = ENOSPC;
        const bool full = errno == ENOSPC || errno == EDQUOT;
        result = Status::IOError(Errno("write " + to));
        if (full) {
          struct stat st{};
          const int64_t tail = ::fstat(in, &st) == 0 ? static_cast<int64_t>(st.st_size) - from : -1;
          result = Status::IOError(result.message() + ": the copy of the " + what + " needs " +
                                   std::to_string(tail) + " bytes on the archive's disk; free space, then run " +
                                   command + " again (nothing was changed)");
        }
        break;
      }
      done += w;
    }
    if (!result.ok()) break;
    at += n;
  }
  if (result.ok() && ::fsync(out) != 0) result = Status::IOError(Errno("fsync " + to));
  ::close(out);
  ::close(in);
  if (!result.ok()) ::unlink(to.c_str());
  return result;
}

Status PartitionLock::Lock(const std::string& dir, const std::string& command) {
  const std::string path = dir + "/LOCK";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    std::string status = Errno("open " + path);
    // What to do about it (a bug bash: "Read-only file system" alone).
    if (err == EROFS || err == EACCES || err == EPERM) {
      status += " (kappa writes this archive directory: check its permissions and that its file system is not "
                "read-only, or give --archive another directory)";
    } else if (err == ENOSPC || err == EDQUOT) {
      status += " (free space on the archive's file system, or give --archive another directory)";
    }
    return Status::IOError(status);
  }
  // A reader's probe (PartitionBeingWritten) holds a shared lock for a
  // moment: that is no writer, so a refusal waits past it.
  bool locked = false;
  for (int i = 0; i < 50 && !(locked = ::flock(fd_, LOCK_EX | LOCK_NB) == 0); ++i) {
    if (errno != EWOULDBLOCK) break;
    ::usleep(20000);
  }
  if (!locked) {
    return Status::Unavailable("archive partition " + dir + " is being written by another process (a running "
                               "`kappa archive`?); stop it before " + command);
  }
  return Status::OK();
}

PartitionLock::~PartitionLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kappa::segment_file
