#include "archive/segment_file.h"

#include <dirent.h>
#include <fcntl.h>
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

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

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

Result<SegmentScan> ScanSegment(const std::string& path, bool verify_last) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("open " + path));
  struct stat st{};
  ::fstat(fd, &st);
  SegmentScan scan;
  scan.file_bytes = st.st_size;
  std::vector<std::pair<int64_t, BlockHeader>> blocks;
  int64_t pos = 0;
  while (pos + static_cast<int64_t>(kHeaderBytes) <= scan.file_bytes) {
    BlockHeader h;
    if (!PreadAll(fd, &h, kHeaderBytes, pos)) break;
    if (!HeaderSane(h) || pos + static_cast<int64_t>(kHeaderBytes + h.stored_size) > scan.file_bytes) break;
    if (!blocks.empty() && h.first_offset <= blocks.back().second.last_offset) break;
    blocks.emplace_back(pos, h);
    pos += static_cast<int64_t>(kHeaderBytes + h.stored_size);
  }
  if (verify_last && !blocks.empty()) {
    const auto& [last_pos, last] = blocks.back();
    std::string payload(last.stored_size, '\0');
    if (!PreadAll(fd, payload.data(), payload.size(), last_pos + static_cast<int64_t>(kHeaderBytes)) ||
        Checksum(last, payload.data(), payload.size()) != last.checksum) {
      blocks.pop_back();  // torn: its bytes count as tail
    }
  }
  ::close(fd);
  for (const auto& [at, h] : blocks) {
    if (scan.first_offset < 0) scan.first_offset = h.first_offset;
    scan.last_offset = h.last_offset;
    scan.records += h.record_count;
    scan.valid_bytes = at + static_cast<int64_t>(kHeaderBytes + h.stored_size);
  }
  scan.torn_tail = scan.valid_bytes < scan.file_bytes;
  return scan;
}

}  // namespace kappa::segment_file
