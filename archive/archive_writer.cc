#include "archive/archive_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/test_hooks.h"
#include "archive/segment_file.h"
#include "archive/segment_format.h"

namespace kappa {

using namespace segment_format;
using namespace segment_file;

struct ArchiveWriter::Impl {
  std::string dir;
  int32_t partition = 0;
  size_t block_bytes = 0;
  int64_t segment_bytes = 0;
  uint32_t codec = kCodecLz4;
  int lz4_level = kLz4HcDefault;
  segment_file::PartitionLock lock;
  int fd = -1;
  int64_t segment_size = 0;
  int64_t first_offset = -1;
  int64_t end_offset = 0;
  int64_t durable_end = 0;
  // The end of the blocks on disk (last offset + 1), which names the next
  // segment (segment_file.h, CHAIN); -1 while the partition has no segment.
  int64_t written_end = -1;
  int64_t begin_at = -1;  // BeginAt: the first segment's name, if set while fresh
  int64_t chain_from = -1;  // CHAIN's "from", -1 until written
  // The block being filled.
  std::string raw;
  uint32_t pending_records = 0;
  int64_t pending_first = -1;
  int64_t pending_last = -1;
  std::string block;
  Status broken;  // Break: every later call fails with it
  KAPPA_KILL_SWITCH(kill_switch);

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  // An I/O error of this partition's files (errno as the failed call left
  // it); a full disk also says what to do.
  static Status FileError(const std::string& what) {
    const int err = errno;
    std::string message = Errno(what);
    if (err == ENOSPC || err == EDQUOT) {
      message += ": free space on the archive's disk, then run the same `kappa archive` command again; the archive "
                 "keeps every complete block and resumes after the last one";
    }
    return Status::IOError(message);
  }

  Status OpenSegment(int64_t base) {
    if (fd >= 0) {
      if (::fdatasync(fd) != 0) return Break(FileError("fdatasync " + dir));
      ::close(fd);
    }
    const std::string path = dir + "/" + SegmentName(base);
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return FileError("create " + path);
    segment_size = 0;
    return SyncDir(dir);
  }

  // After an fdatasync error (the kernel may have dropped the pages it
  // could not write, so nothing this writer wrote is known durable), or a
  // fragment of a block it could not cut, the writer refuses every later
  // call with the same error. Reopening the partition scans what is
  // actually on disk.
  Status Break(const Status& st) {
    broken = Status::IOError(st.message() + "; this writer stops (open the archive again to go on)");
    return broken;
  }

  Status WriteBlock() {
    if (pending_records == 0) return Status::OK();
    if (Status st = EncodeBlock(raw, pending_records, pending_first, pending_last, &block, codec, lz4_level);
        !st.ok()) {
      return Status::IOError(st.message() + " in " + dir);
    }
    const size_t total = block.size();
    if (fd < 0 || (segment_size > 0 && segment_size + static_cast<int64_t>(total) > segment_bytes)) {
      // Named after the end of the one before it, not after its first
      // record (a transaction marker may sit between): a hole between two
      // names is then always a segment lost.
      const int64_t base = written_end >= 0 ? written_end : begin_at >= 0 ? begin_at : pending_first;
      if (chain_from < 0) {
        KAPPA_RETURN_IF_ERROR(WriteChainStart(dir, base));
        chain_from = base;
      }
      KAPPA_RETURN_IF_ERROR(OpenSegment(base));
    }
    if (KAPPA_KILL_REACHED(kill_switch, "archive-torn-block")) {
      // Half a block reaches the disk, then the process dies.
      (void)!::write(fd, block.data(), total / 2);
      ::fdatasync(fd);
      KAPPA_KILL_NOW("archive-torn-block");
    }
    size_t written = 0;
    while (written < total) {
      ssize_t n = ::write(fd, block.data() + written, total - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = ENOSPC;
        // The bytes of the block that did reach the segment are cut: the
        // block stays pending, and a later Flush (once there is room)
        // writes it whole where it belongs instead of after a fragment of
        // itself, which would read as damage in the middle of the archive.
        const Status st = FileError("write " + dir);
        if (written > 0 && ::ftruncate(fd, segment_size) != 0) {
          return Break(Status::IOError(st.message() + "; cutting the " + std::to_string(written) +
                                       " bytes written of the block failed as well (" + std::strerror(errno) +
                                       "): they are cut when the partition is next opened"));
        }
        return st;
      }
      written += static_cast<size_t>(n);
    }
    segment_size += static_cast<int64_t>(total);
    written_end = pending_last + 1;
    raw.clear();
    pending_records = 0;
    pending_first = pending_last = -1;
    return Status::OK();
  }

  // Finds the archived end in the existing segments and opens the newest
  // for appending. Every header is checked, and the newest segment's
  // payloads too (the only one written since it was last sealed). An
  // incomplete block at its very end (a crash mid-write) is cut; a complete
  // block that fails a checksum, anywhere, is Corruption and nothing is cut.
  Status Recover(const std::vector<int64_t>& segments, const std::string& repair_hint, const NoteCallback& on_note) {
    int64_t prev_end = -1;
    for (size_t i = 0; i < segments.size(); ++i) {
      const bool last = i + 1 == segments.size();
      const std::string path = dir + "/" + SegmentName(segments[i]);
      auto scan = ScanSegment(path, /*verify_payloads=*/last);
      if (!scan.ok()) return scan.status();
      if (scan->damaged || (scan->torn_tail && !last)) {
        return Status::Corruption(DamageMessage(path, *scan) + "; nothing was cut or skipped. " + repair_hint);
      }
      if (const std::string problem = SegmentOrderProblem(dir, segments[i], scan->first_offset, prev_end, chain_from);
          !problem.empty()) {
        return Status::Corruption(problem + "; nothing was written. " + repair_hint);
      }
      prev_end = ChainedEnd(segments[i], scan->first_offset, scan->last_offset);
      if (first_offset < 0) first_offset = scan->first_offset;
      if (scan->records > 0) {
        end_offset = scan->last_offset + 1;
      } else if (i == 0) {
        end_offset = segments[0];  // named after the first offset it was to hold
      }
      if (!last) continue;
      if (scan->torn_tail) {
        if (on_note) {
          on_note(NoteLevel::kInfo, path + ": dropping " + std::to_string(scan->file_bytes - scan->valid_bytes) +
                                        " bytes of an incomplete block at the tail (a crash mid-write); those "
                                        "records are fetched again");
        }
        if (::truncate(path.c_str(), scan->valid_bytes) != 0) return Status::IOError(Errno("truncate " + path));
      }
      fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd < 0) return Status::IOError(Errno("open " + path));
      segment_size = scan->valid_bytes;
    }
    durable_end = end_offset;
    written_end = end_offset;
    return Status::OK();
  }
};

Result<ArchiveCompression> ParseArchiveCompression(std::string_view name) {
  if (name == "lz4") return ArchiveCompression::kLz4;
  if (name == "lz4-fast") return ArchiveCompression::kLz4Fast;
  if (name == "none") return ArchiveCompression::kNone;
  return Status::InvalidArgument("unknown archive compression '" + std::string(name) +
                                 "': use lz4, lz4-fast or none");
}

const char* ArchiveCompressionName(ArchiveCompression compression) {
  switch (compression) {
    case ArchiveCompression::kLz4: return "lz4";
    case ArchiveCompression::kLz4Fast: return "lz4-fast";
    case ArchiveCompression::kNone: return "none";
  }
  return "lz4";
}

ArchiveWriter::ArchiveWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveWriter::~ArchiveWriter() = default;

Result<std::unique_ptr<ArchiveWriter>> ArchiveWriter::Open(const std::string& root, const std::string& topic,
                                                           int32_t partition, size_t block_bytes,
                                                           int64_t segment_bytes, const NoteCallback& on_note,
                                                           ArchiveCompression compression) {
  KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
  if (partition < 0) return Status::InvalidArgument("negative partition " + std::to_string(partition));
  auto impl = std::make_unique<Impl>();
  impl->dir = PartitionDir(root, topic, partition);
  impl->partition = partition;
  impl->block_bytes = std::clamp<size_t>(block_bytes, 1024, kMaxRawBlock / 2);
  impl->segment_bytes = std::max<int64_t>(segment_bytes, 1 << 16);
  impl->codec = compression == ArchiveCompression::kNone ? kCodecNone : kCodecLz4;
  impl->lz4_level = compression == ArchiveCompression::kLz4Fast ? kLz4Fast : kLz4HcDefault;
  KAPPA_RETURN_IF_ERROR(MakeDirs(impl->dir));
  KAPPA_RETURN_IF_ERROR(impl->lock.Lock(impl->dir, "archiving to it"));
  auto chain = ReadChainStart(impl->dir);
  if (!chain.ok()) return chain.status();
  impl->chain_from = *chain;
  auto segments = ListSegments(impl->dir);
  if (!segments.ok()) return segments.status();
  const std::string hint = "`kappa archive -a " + root + " -t " + topic +
                           " -b BROKERS --repair` refetches the damaged range from Kafka while it still holds it";
  // This process holds the lock: a chained partition without its first
  // segment is a hole at its start, or (no segment from CHAIN's offset on)
  // one whose segments were deleted or whose writer died as it began.
  if (const std::string problem = ChainStartProblem(impl->dir, *segments, impl->chain_from); !problem.empty()) {
    return Status::Corruption(problem + "; nothing was written. " + hint);
  }
  if (!segments->empty()) KAPPA_RETURN_IF_ERROR(impl->Recover(*segments, hint, on_note));
  if (impl->chain_from >= 0 && segments->empty()) {
    // Began from CHAIN's offset, not from whatever record comes first (it
    // took the partition for a fresh one: BeginAt and end 0).
    if (on_note) {
      on_note(NoteLevel::kWarning, "archive " + impl->dir + ": its CHAIN file says its segments begin with " +
                                       SegmentName(impl->chain_from) +
                                       ", but none is there (deleted, or an archiver died as it began the "
                                       "partition): archiving it from offset " +
                                       std::to_string(impl->chain_from) + " again");
    }
    impl->end_offset = impl->durable_end = impl->written_end = impl->chain_from;
  }
  impl->raw.reserve(impl->block_bytes + 4096);
  return std::unique_ptr<ArchiveWriter>(new ArchiveWriter(std::move(impl)));
}

Status ArchiveWriter::Append(const ArchiveRecord& r) {
  Impl& s = *impl_;
  if (!s.broken.ok()) return s.broken;
  if (r.offset < s.end_offset) {
    return Status::InvalidArgument("archive " + s.dir + ": offset " + std::to_string(r.offset) +
                                   " is below the archived end " + std::to_string(s.end_offset) +
                                   " (a duplicate or out-of-order record)");
  }
  const size_t need = EncodedRecordBytes(r);
  if (need > kMaxRecordBytes) {
    return Status::InvalidArgument("archive " + s.dir + ": record at offset " + std::to_string(r.offset) +
                                   " is " + std::to_string(need) + " bytes; the archive takes records up to 32 MiB");
  }
  if (s.pending_records > 0 && s.raw.size() + need > s.block_bytes) KAPPA_RETURN_IF_ERROR(s.WriteBlock());
  AppendRecord(r, &s.raw);
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
  if (!s.broken.ok()) return s.broken;
  const Status written = s.WriteBlock();
  if (!s.broken.ok()) return s.broken;
  // The blocks before one that failed to write are good data: durable too.
  if (s.fd >= 0 && ::fdatasync(s.fd) != 0) return s.Break(s.FileError("fdatasync " + s.dir));
  s.durable_end = written.ok() ? s.end_offset : s.pending_first;  // a failed write left its block pending
  return written;
}

int32_t ArchiveWriter::partition() const { return impl_->partition; }
int64_t ArchiveWriter::end_offset() const { return impl_->end_offset; }
int64_t ArchiveWriter::durable_end_offset() const { return impl_->durable_end; }
int64_t ArchiveWriter::first_offset() const { return impl_->first_offset; }
void ArchiveWriter::BeginAt(int64_t offset) {
  if (!fresh() || offset < 0) return;
  impl_->begin_at = offset;
  impl_->end_offset = offset;
}

bool ArchiveWriter::fresh() const {
  return impl_->written_end < 0 && impl_->chain_from < 0 && impl_->pending_records == 0 && impl_->first_offset < 0;
}

}  // namespace kappa
