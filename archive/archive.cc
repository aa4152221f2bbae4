#include "archive/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <lz4.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/test_hooks.h"

namespace kappa {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the archive format is little-endian");

constexpr uint32_t kMagic = 0x3142414b;  // "KAB1"
constexpr uint32_t kCodecLz4 = 1;
constexpr size_t kHeaderBytes = 48;
constexpr size_t kRecordFixedBytes = 32;
constexpr uint32_t kMaxRawBlock = 64u << 20;

struct BlockHeader {
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
static_assert(sizeof(BlockHeader) == kHeaderBytes);

struct RecordFixed {
  int64_t offset;
  int64_t timestamp_ms;
  int32_t key_size;
  int32_t value_size;
  uint32_t header_count;
  uint32_t headers_size;
};
static_assert(sizeof(RecordFixed) == kRecordFixedBytes);

size_t Pad8(size_t n) { return (n + 7) & ~size_t{7}; }

uint64_t Checksum(const BlockHeader& h, const void* payload, size_t size) {
  // The header's hash seeds the payload's: both are covered.
  return XXH3_64bits_withSeed(payload, size, XXH3_64bits(&h, offsetof(BlockHeader, checksum)));
}

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

// Segment base offsets in a partition directory, ascending.
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

bool HeaderSane(const BlockHeader& h) {
  return h.magic == kMagic && h.codec == kCodecLz4 && h.raw_size <= kMaxRawBlock &&
         h.stored_size <= static_cast<uint32_t>(LZ4_compressBound(static_cast<int>(kMaxRawBlock))) &&
         h.record_count > 0 && h.first_offset >= 0 && h.last_offset >= h.first_offset;
}

// What a scan of one segment file found.
struct SegmentScan {
  int64_t valid_bytes = 0;  // end of the last complete, valid block
  int64_t file_bytes = 0;
  int64_t first_offset = -1;
  int64_t last_offset = -1;
  int64_t records = 0;
  bool torn_tail = false;  // bytes after valid_bytes that are not a valid block
};

// Walks the block headers of a segment (the offset index). Every block's
// header must be sane and continue the offsets; the payload checksum is
// verified for the last block only when `verify_last` (a torn write can only
// be at the tail, and the reader verifies every block it reads). Whatever
// follows the last good block is reported as a torn tail.
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

}  // namespace

// ---------------------------------------------------------------- writer

struct ArchiveWriter::Impl {
  std::string dir;
  int32_t partition = 0;
  size_t block_bytes = 0;
  int64_t segment_bytes = 0;
  int lock_fd = -1;
  int fd = -1;
  int64_t segment_size = 0;
  int64_t first_offset = -1;
  int64_t end_offset = 0;
  int64_t durable_end = 0;
  // The block being filled.
  std::string raw;
  uint32_t pending_records = 0;
  int64_t pending_first = -1;
  int64_t pending_last = -1;
  std::string compressed;
  KAPPA_KILL_SWITCH(kill_switch);

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  Status OpenSegment(int64_t base) {
    if (fd >= 0) {
      if (::fdatasync(fd) != 0) return Status::IOError(Errno("fdatasync " + dir));
      ::close(fd);
    }
    const std::string path = dir + "/" + SegmentName(base);
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError(Errno("create " + path));
    segment_size = 0;
    return SyncDir(dir);
  }

  Status WriteBlock() {
    if (pending_records == 0) return Status::OK();
    // One contiguous buffer, header first, so the block goes out in one write().
    compressed.resize(kHeaderBytes + static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
    char* payload = compressed.data() + kHeaderBytes;
    const int stored = LZ4_compress_default(raw.data(), payload, static_cast<int>(raw.size()),
                                            static_cast<int>(compressed.size() - kHeaderBytes));
    if (stored <= 0) return Status::IOError("LZ4 compression failed in " + dir);
    BlockHeader h{};
    h.magic = kMagic;
    h.codec = kCodecLz4;
    h.raw_size = static_cast<uint32_t>(raw.size());
    h.stored_size = static_cast<uint32_t>(stored);
    h.record_count = pending_records;
    h.first_offset = pending_first;
    h.last_offset = pending_last;
    h.checksum = Checksum(h, payload, static_cast<size_t>(stored));
    std::memcpy(compressed.data(), &h, kHeaderBytes);
    const size_t total = kHeaderBytes + static_cast<size_t>(stored);
    if (fd < 0 || (segment_size > 0 && segment_size + static_cast<int64_t>(total) > segment_bytes)) {
      KAPPA_RETURN_IF_ERROR(OpenSegment(pending_first));
    }
    if (KAPPA_KILL_REACHED(kill_switch, "archive-torn-block")) {
      // Half a block reaches the disk, then the process dies.
      (void)!::write(fd, compressed.data(), total / 2);
      ::fdatasync(fd);
      KAPPA_KILL_NOW("archive-torn-block");
    }
    size_t written = 0;
    while (written < total) {
      ssize_t n = ::write(fd, compressed.data() + written, total - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::IOError(Errno("write " + dir));
      written += static_cast<size_t>(n);
    }
    segment_size += static_cast<int64_t>(total);
    raw.clear();
    pending_records = 0;
    pending_first = pending_last = -1;
    return Status::OK();
  }
};

ArchiveWriter::ArchiveWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveWriter::~ArchiveWriter() = default;

Result<std::unique_ptr<ArchiveWriter>> ArchiveWriter::Open(const std::string& root, const std::string& topic,
                                                           int32_t partition, size_t block_bytes,
                                                           int64_t segment_bytes) {
  if (topic.empty() || topic.find('/') != std::string::npos || topic == "." || topic == "..") {
    return Status::InvalidArgument("invalid topic name for an archive: '" + topic + "'");
  }
  if (partition < 0) return Status::InvalidArgument("negative partition " + std::to_string(partition));
  auto impl = std::make_unique<Impl>();
  impl->dir = PartitionDir(root, topic, partition);
  impl->partition = partition;
  impl->block_bytes = std::clamp<size_t>(block_bytes, 1024, kMaxRawBlock / 2);
  impl->segment_bytes = std::max<int64_t>(segment_bytes, 1 << 16);
  KAPPA_RETURN_IF_ERROR(MakeDirs(impl->dir));
  const std::string lock_path = impl->dir + "/LOCK";
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl->lock_fd < 0) return Status::IOError(Errno("open " + lock_path));
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::Unavailable("archive partition " + impl->dir +
                               " is being written by another process (a second `kappa archive` on the same "
                               "directory and topic?); stop it first");
  }
  auto segments = ListSegments(impl->dir);
  if (!segments.ok()) return segments.status();
  if (!segments->empty()) {
    // The first offset comes from the first segment with records; the end,
    // and a torn tail to cut, from the last one.
    for (size_t i = 0; i < segments->size(); ++i) {
      const bool last = i + 1 == segments->size();
      const std::string path = impl->dir + "/" + SegmentName((*segments)[i]);
      if (!last && impl->first_offset >= 0) continue;
      auto scan = ScanSegment(path, last);
      if (!scan.ok()) return scan.status();
      if (impl->first_offset < 0) impl->first_offset = scan->first_offset;
      if (!last) {
        impl->end_offset = scan->last_offset + 1;
        continue;
      }
      if (scan->torn_tail) {
        std::fprintf(stderr, "kappa archive: %s: dropping %lld bytes of an incomplete block at the tail (a crash "
                     "mid-write); those records are fetched again\n", path.c_str(),
                     static_cast<long long>(scan->file_bytes - scan->valid_bytes));
        if (::truncate(path.c_str(), scan->valid_bytes) != 0) return Status::IOError(Errno("truncate " + path));
      }
      if (scan->records > 0) {
        impl->end_offset = scan->last_offset + 1;
      } else if (segments->size() > 1) {
        // An empty newest segment: the end is the previous segment's.
        auto prev = ScanSegment(impl->dir + "/" + SegmentName((*segments)[i - 1]), false);
        if (!prev.ok()) return prev.status();
        impl->end_offset = prev->last_offset + 1;
      }
      impl->fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (impl->fd < 0) return Status::IOError(Errno("open " + path));
      impl->segment_size = scan->valid_bytes;
    }
    impl->durable_end = impl->end_offset;
  }
  impl->raw.reserve(impl->block_bytes + 4096);
  return std::unique_ptr<ArchiveWriter>(new ArchiveWriter(std::move(impl)));
}

Status ArchiveWriter::Append(const ArchiveRecord& r) {
  Impl& s = *impl_;
  if (r.offset < s.end_offset) {
    return Status::InvalidArgument("archive " + s.dir + ": offset " + std::to_string(r.offset) +
                                   " is below the archived end " + std::to_string(s.end_offset) +
                                   " (a duplicate or out-of-order record)");
  }
  size_t headers_size = 0;
  for (const auto& h : r.headers) headers_size += 8 + h.name.size() + h.value.size();
  RecordFixed f;
  f.offset = r.offset;
  f.timestamp_ms = r.timestamp_ms;
  f.key_size = r.key_null ? -1 : static_cast<int32_t>(r.key.size());
  f.value_size = r.value_null ? -1 : static_cast<int32_t>(r.value.size());
  f.header_count = static_cast<uint32_t>(r.headers.size());
  f.headers_size = static_cast<uint32_t>(headers_size);
  const size_t value_padded = Pad8(r.value.size());
  const size_t tail = Pad8(r.key.size() + headers_size);
  const size_t need = kRecordFixedBytes + value_padded + tail;
  if (need > kMaxRawBlock / 2) {
    return Status::InvalidArgument("archive " + s.dir + ": record at offset " + std::to_string(r.offset) +
                                   " is " + std::to_string(need) + " bytes; the archive takes records up to 32 MiB");
  }
  if (s.pending_records > 0 && s.raw.size() + need > s.block_bytes) KAPPA_RETURN_IF_ERROR(s.WriteBlock());
  const size_t at = s.raw.size();
  s.raw.resize(at + need, '\0');
  char* p = s.raw.data() + at;
  std::memcpy(p, &f, kRecordFixedBytes);
  p += kRecordFixedBytes;
  if (!r.value.empty()) std::memcpy(p, r.value.data(), r.value.size());
  p += value_padded;
  if (!r.key.empty()) std::memcpy(p, r.key.data(), r.key.size());
  p += r.key.size();
  for (const auto& h : r.headers) {
    const uint32_t name_size = static_cast<uint32_t>(h.name.size());
    const int32_t value_size = h.value_null ? -1 : static_cast<int32_t>(h.value.size());
    std::memcpy(p, &name_size, 4);
    std::memcpy(p + 4, &value_size, 4);
    p += 8;
    std::memcpy(p, h.name.data(), h.name.size());
    p += h.name.size();
    if (!h.value.empty()) std::memcpy(p, h.value.data(), h.value.size());
    p += h.value.size();
  }
  if (s.pending_records == 0) s.pending_first = r.offset;
  s.pending_last = r.offset;
  ++s.pending_records;
  if (s.first_offset < 0) s.first_offset = r.offset;
  s.end_offset = r.offset + 1;
  if (s.raw.size() >= s.block_bytes) return s.WriteBlock();
  return Status::OK();
}

Status ArchiveWriter::Flush() {
  Impl& s = *impl_;
  KAPPA_RETURN_IF_ERROR(s.WriteBlock());
  if (s.fd >= 0 && ::fdatasync(s.fd) != 0) return Status::IOError(Errno("fdatasync " + s.dir));
  s.durable_end = s.end_offset;
  return Status::OK();
}

int32_t ArchiveWriter::partition() const { return impl_->partition; }
int64_t ArchiveWriter::end_offset() const { return impl_->end_offset; }
int64_t ArchiveWriter::durable_end_offset() const { return impl_->durable_end; }
int64_t ArchiveWriter::first_offset() const { return impl_->first_offset; }

// ---------------------------------------------------------------- reader

struct ArchiveReader::Impl {
  std::string dir;
  int32_t partition = 0;
  std::vector<int64_t> segments;
  size_t segment_index = 0;
  int fd = -1;
  int64_t file_pos = 0;   // start of the next block to read in the segment
  int64_t position = 0;   // next offset wanted
  std::string stored;
  std::vector<uint64_t> block;  // decompressed, 8-byte aligned
  size_t block_bytes = 0;
  // Records of the decoded block not yet returned by Next().
  std::vector<ArchiveRecord> pending;
  size_t pending_index = 0;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  Status OpenSegmentAt(size_t index) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    segment_index = index;
    file_pos = 0;
    if (index >= segments.size()) return Status::OK();
    const std::string path = dir + "/" + SegmentName(segments[index]);
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open " + path));
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return Status::OK();
  }

  Status Refresh() {
    auto list = ListSegments(dir);
    if (!list.ok()) return list.status();
    segments = std::move(*list);
    return Status::OK();
  }

  // Reads the next block at or after `position` into `block`; false at the
  // current end of the archive.
  Result<bool> LoadBlock(BlockHeader* out) {
    for (;;) {
      if (fd < 0) {
        if (segment_index >= segments.size()) {
          // Maybe a writer rolled to a new segment since.
          const size_t known = segments.size();
          KAPPA_RETURN_IF_ERROR(Refresh());
          if (segments.size() == known || segment_index >= segments.size()) return false;
        }
        KAPPA_RETURN_IF_ERROR(OpenSegmentAt(segment_index));
      }
      struct stat st{};
      ::fstat(fd, &st);
      const int64_t size = st.st_size;
      const bool last_segment = segment_index + 1 >= segments.size();
      BlockHeader h;
      bool complete = file_pos + static_cast<int64_t>(kHeaderBytes) <= size && PreadAll(fd, &h, kHeaderBytes, file_pos) &&
                      HeaderSane(h) && file_pos + static_cast<int64_t>(kHeaderBytes + h.stored_size) <= size;
      if (!complete) {
        if (file_pos >= size && !last_segment) {
          KAPPA_RETURN_IF_ERROR(OpenSegmentAt(segment_index + 1));
          continue;
        }
        if (file_pos >= size || last_segment) {
          if (last_segment) {
            // The tail of the newest segment: a block still being written.
            // Look again whether a new segment appeared meanwhile.
            const size_t known = segments.size();
            KAPPA_RETURN_IF_ERROR(Refresh());
            if (segments.size() > known && file_pos >= size) {
              KAPPA_RETURN_IF_ERROR(OpenSegmentAt(segment_index + 1));
              continue;
            }
          }
          return false;
        }
        return Status::Corruption("archive " + dir + "/" + SegmentName(segments[segment_index]) +
                                  ": invalid block header at byte " + std::to_string(file_pos));
      }
      if (h.last_offset < position) {  // the offset index: skip without reading the payload
        file_pos += static_cast<int64_t>(kHeaderBytes + h.stored_size);
        continue;
      }
      stored.resize(h.stored_size);
      if (!PreadAll(fd, stored.data(), h.stored_size, file_pos + static_cast<int64_t>(kHeaderBytes))) {
        return Status::IOError(Errno("read " + dir));
      }
      if (Checksum(h, stored.data(), stored.size()) != h.checksum) {
        const bool tail = last_segment && file_pos + static_cast<int64_t>(kHeaderBytes + h.stored_size) == size;
        if (tail) return false;  // being written right now
        return Status::Corruption("archive " + dir + "/" + SegmentName(segments[segment_index]) +
                                  ": checksum mismatch in the block at byte " + std::to_string(file_pos) +
                                  " (offsets " + std::to_string(h.first_offset) + ".." +
                                  std::to_string(h.last_offset) + ")");
      }
      if (block.size() * 8 < h.raw_size) block.resize(h.raw_size / 8 + 1);
      const int n = LZ4_decompress_safe(stored.data(), reinterpret_cast<char*>(block.data()),
                                        static_cast<int>(h.stored_size), static_cast<int>(h.raw_size));
      if (n != static_cast<int>(h.raw_size)) {
        return Status::Corruption("archive " + dir + ": block at byte " + std::to_string(file_pos) +
                                  " does not decompress");
      }
      block_bytes = h.raw_size;
      file_pos += static_cast<int64_t>(kHeaderBytes + h.stored_size);
      *out = h;
      return true;
    }
  }

  // Parses the loaded block's records with offset in [position, limit).
  Status Parse(std::vector<ArchiveRecord>* records, int64_t limit, bool with_headers) {
    records->clear();
    const char* base = reinterpret_cast<const char*>(block.data());
    size_t at = 0;
    while (at + kRecordFixedBytes <= block_bytes) {
      RecordFixed f;
      std::memcpy(&f, base + at, kRecordFixedBytes);
      const size_t value_size = f.value_size < 0 ? 0 : static_cast<size_t>(f.value_size);
      const size_t key_size = f.key_size < 0 ? 0 : static_cast<size_t>(f.key_size);
      const size_t total = kRecordFixedBytes + Pad8(value_size) + Pad8(key_size + f.headers_size);
      if (at + total > block_bytes) return Status::Corruption("archive " + dir + ": record overruns its block");
      if (f.offset >= position && f.offset < limit) {
        ArchiveRecord& r = records->emplace_back();
        const char* p = base + at + kRecordFixedBytes;
        r.offset = f.offset;
        r.timestamp_ms = f.timestamp_ms;
        r.value = std::string_view(p, value_size);
        r.value_null = f.value_size < 0;
        p += Pad8(value_size);
        r.key = std::string_view(p, key_size);
        r.key_null = f.key_size < 0;
        p += key_size;
        if (with_headers) {
          for (uint32_t i = 0; i < f.header_count; ++i) {
            uint32_t name_size;
            int32_t hv;
            std::memcpy(&name_size, p, 4);
            std::memcpy(&hv, p + 4, 4);
            p += 8;
            ArchiveHeader h;
            h.name = std::string_view(p, name_size);
            p += name_size;
            h.value_null = hv < 0;
            h.value = std::string_view(p, hv < 0 ? 0 : static_cast<size_t>(hv));
            p += h.value.size();
            r.headers.push_back(h);
          }
        }
      }
      at += total;
    }
    return Status::OK();
  }
};

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveReader::~ArchiveReader() = default;

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::Open(const std::string& root, const std::string& topic,
                                                           int32_t partition) {
  auto impl = std::make_unique<Impl>();
  impl->dir = PartitionDir(root, topic, partition);
  impl->partition = partition;
  KAPPA_RETURN_IF_ERROR(impl->Refresh());
  KAPPA_RETURN_IF_ERROR(impl->OpenSegmentAt(0));
  return std::unique_ptr<ArchiveReader>(new ArchiveReader(std::move(impl)));
}

Status ArchiveReader::Seek(int64_t offset) {
  Impl& s = *impl_;
  KAPPA_RETURN_IF_ERROR(s.Refresh());
  size_t index = 0;
  for (size_t i = 0; i < s.segments.size(); ++i) {
    if (s.segments[i] <= offset) index = i;
  }
  s.position = offset;
  s.pending.clear();
  s.pending_index = 0;
  return s.OpenSegmentAt(index);
}

Result<bool> ArchiveReader::Next(ArchiveRecord* out) {
  Impl& s = *impl_;
  while (s.pending_index >= s.pending.size()) {
    BlockHeader h;
    auto loaded = s.LoadBlock(&h);
    if (!loaded.ok()) return loaded.status();
    if (!*loaded) return false;
    KAPPA_RETURN_IF_ERROR(s.Parse(&s.pending, INT64_MAX, true));
    s.pending_index = 0;
  }
  *out = s.pending[s.pending_index++];
  s.position = out->offset + 1;
  return true;
}

Status ArchiveReader::NextBlock(std::vector<ArchiveRecord>* records, int64_t limit) {
  Impl& s = *impl_;
  records->clear();
  if (s.position >= limit) return Status::OK();
  s.pending.clear();
  s.pending_index = 0;
  for (;;) {
    BlockHeader h;
    const int64_t block_start = s.file_pos;
    const size_t segment = s.segment_index;
    auto loaded = s.LoadBlock(&h);
    if (!loaded.ok()) return loaded.status();
    if (!*loaded) return Status::OK();
    KAPPA_RETURN_IF_ERROR(s.Parse(records, limit, false));
    if (h.last_offset >= limit) {
      // The limit falls inside this block: read it again next time, and
      // everything below the limit has been returned.
      if (s.segment_index == segment) s.file_pos = block_start;
      if (records->empty()) s.position = limit;
    }
    if (!records->empty()) {
      s.position = records->back().offset + 1;
      if (h.last_offset >= limit) s.position = limit;
      return Status::OK();
    }
    if (h.last_offset >= limit) return Status::OK();
  }
}

Result<ArchiveRange> ArchiveReader::Range() {
  Impl& s = *impl_;
  ArchiveRange range;
  range.partition = s.partition;
  auto segments = ListSegments(s.dir);
  if (!segments.ok()) return segments.status();
  for (size_t i = 0; i < segments->size(); ++i) {
    const bool last = i + 1 == segments->size();
    auto scan = ScanSegment(s.dir + "/" + SegmentName((*segments)[i]), last);
    if (!scan.ok()) return scan.status();
    if (scan->torn_tail && !last) {
      return Status::Corruption("archive " + s.dir + "/" + SegmentName((*segments)[i]) + ": invalid block at byte " +
                                std::to_string(scan->valid_bytes) + " in a sealed segment");
    }
    if (scan->records == 0) continue;
    if (range.first_offset < 0) range.first_offset = scan->first_offset;
    range.end_offset = scan->last_offset + 1;
    range.records += scan->records;
    range.stored_bytes += scan->valid_bytes;
  }
  return range;
}

Result<std::vector<int32_t>> ArchivedPartitions(const std::string& root, const std::string& topic) {
  const std::string dir = root + "/" + topic;
  DIR* d = ::opendir(dir.c_str());
  std::vector<int32_t> partitions;
  if (!d) {
    if (errno == ENOENT) return partitions;
    return Status::IOError(Errno("opendir " + dir));
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    partitions.push_back(std::atoi(name.c_str()));
  }
  ::closedir(d);
  std::sort(partitions.begin(), partitions.end());
  return partitions;
}

Result<std::vector<ArchiveRange>> ArchiveRanges(const std::string& root, const std::string& topic) {
  auto partitions = ArchivedPartitions(root, topic);
  if (!partitions.ok()) return partitions.status();
  std::vector<ArchiveRange> ranges;
  for (int32_t p : *partitions) {
    auto reader = ArchiveReader::Open(root, topic, p);
    if (!reader.ok()) return reader.status();
    auto range = (*reader)->Range();
    if (!range.ok()) return range.status();
    ranges.push_back(*range);
  }
  return ranges;
}

}  // namespace kappa
