#include "archive/archive_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "archive/segment_file.h"
#include "archive/segment_format.h"

namespace kappa {

using namespace segment_format;
using namespace segment_file;

struct ArchiveReader::Impl {
  std::string dir;
  int32_t partition = 0;
  std::vector<int64_t> segments;
  size_t segment_index = 0;
  int fd = -1;
  int64_t file_pos = 0;   // start of the next block to read in the segment
  int64_t position = 0;   // next offset wanted
  int64_t chain_from = -1;  // CHAIN (segment_file.h)
  // Offsets of the blocks seen in the current segment (all of them: it is
  // always read from its first byte), for the check that the next follows.
  int64_t seg_first = -1;
  int64_t seg_last = -1;
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
    seg_first = seg_last = -1;
    if (index >= segments.size()) return Status::OK();
    const std::string path = dir + "/" + SegmentName(segments[index]);
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open " + path));
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return Status::OK();
  }

  std::string SegmentPath() const {
    return dir + "/" + (segment_index < segments.size() ? SegmentName(segments[segment_index]) : std::string("?"));
  }

  Status Refresh() {
    auto chain = ReadChainStart(dir);
    if (!chain.ok()) return chain.status();
    chain_from = *chain;
    auto list = ListSegments(dir);
    if (!list.ok()) return list.status();
    segments = std::move(*list);
    if (const std::string problem = ChainStartProblem(dir, segments, chain_from); !problem.empty()) {
      return Status::Corruption(problem);
    }
    return Status::OK();
  }

  // On to the next segment, which must follow this one: no overlap and, in
  // a chained partition, no hole (a segment deleted or cut short).
  Status Advance() {
    const int64_t end = ChainedEnd(segments[segment_index], seg_first, seg_last);
    const size_t next = segment_index + 1;
    KAPPA_RETURN_IF_ERROR(OpenSegmentAt(next));
    if (next < segments.size()) {
      const std::string problem = SegmentOrderProblem(dir, segments[next], -1, end, chain_from);
      if (!problem.empty()) return Status::Corruption(problem);
    }
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
      if (::fstat(fd, &st) != 0) return Status::IOError(Errno("stat " + SegmentPath()));
      const int64_t size = st.st_size;
      const bool last_segment = segment_index + 1 >= segments.size();
      BlockHeader h{};
      BlockState state = BlockState::kIncomplete;
      if (file_pos < size) {
        char bytes[kHeaderBytes];
        const size_t have = static_cast<size_t>(std::min<int64_t>(kHeaderBytes, size - file_pos));
        if (!PreadAll(fd, bytes, have, file_pos)) return Status::IOError(Errno("read " + SegmentPath()));
        state = InspectHeader(bytes, have, static_cast<uint64_t>(size - file_pos), &h);
      }
      if (state == BlockState::kOldFormat && file_pos == 0) {
        return Status::FailedPrecondition(OldFormatMessage(SegmentPath()));
      }
      if (state == BlockState::kIncomplete) {
        if (file_pos >= size && !last_segment) {
          KAPPA_RETURN_IF_ERROR(Advance());
          continue;
        }
        if (!last_segment) {
          return Status::Corruption("archive " + SegmentPath() + ": the block at byte " + std::to_string(file_pos) +
                                    " is incomplete, in a sealed segment (not the newest)");
        }
        // The tail of the newest segment: the end, or a block still being
        // written. Look again whether a new segment appeared meanwhile.
        const size_t known = segments.size();
        KAPPA_RETURN_IF_ERROR(Refresh());
        if (segments.size() > known && file_pos >= size) {
          KAPPA_RETURN_IF_ERROR(Advance());
          continue;
        }
        return false;
      }
      if (state != BlockState::kComplete) {
        return Status::Corruption("archive " + SegmentPath() + ": the block at byte " + std::to_string(file_pos) +
                                  " fails: " + BlockStateName(state) + ": the archive is damaged");
      }
      if (file_pos == 0) {
        const std::string problem = SegmentOrderProblem(dir, segments[segment_index], h.first_offset, -1, -1);
        if (!problem.empty()) return Status::Corruption(problem);
      }
      if (seg_first < 0) seg_first = h.first_offset;
      seg_last = std::max(seg_last, h.last_offset);
      if (h.last_offset < position) {  // the offset index: skip without reading the payload
        file_pos += static_cast<int64_t>(kHeaderBytes + h.stored_size);
        continue;
      }
      // An uncompressed payload is read straight into the aligned block
      // buffer the records are parsed from: one copy, no decompression.
      const bool as_is = h.codec == kCodecNone;
      char* into;
      if (as_is) {
        if (block.size() * 8 < h.raw_size) block.resize(h.raw_size / 8 + 1);
        into = reinterpret_cast<char*>(block.data());
      } else {
        stored.resize(h.stored_size);
        into = stored.data();
      }
      if (!PreadAll(fd, into, h.stored_size, file_pos + static_cast<int64_t>(kHeaderBytes))) {
        return Status::IOError(Errno("read " + dir));
      }
      if (PayloadChecksum(into, h.stored_size) != h.payload_checksum) {
        // A complete block is never being written (one write() puts it
        // there, and the size grows only after its bytes are in): damage.
        return Status::Corruption("archive " + SegmentPath() + ": the block at byte " + std::to_string(file_pos) +
                                  " fails: payload checksum mismatch" +
                                  " (offsets " + std::to_string(h.first_offset) + ".." +
                                  std::to_string(h.last_offset) + ")");
      }
      if (!as_is && !DecompressPayload(h, stored.data(), &block)) {
        return Status::Corruption("archive " + SegmentPath() + ": the block at byte " + std::to_string(file_pos) +
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
    Status st = ParseRecords(reinterpret_cast<const char*>(block.data()), block_bytes, position, limit, with_headers,
                             records);
    if (!st.ok()) return Status::Corruption("archive " + dir + ": " + st.message());
    return st;
  }
};

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveReader::~ArchiveReader() = default;

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::Open(const std::string& root, const std::string& topic,
                                                           int32_t partition) {
  KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
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

Result<ArchiveRange> ArchiveReader::Range() { return PartitionRange(impl_->dir, impl_->partition); }

}  // namespace kappa
