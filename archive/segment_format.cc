#include "archive/segment_format.h"

#include <lz4.h>
#include <lz4hc.h>
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace kappa::segment_format {

uint64_t PayloadChecksum(const void* payload, size_t size) { return XXH3_64bits(payload, size); }

uint64_t HeaderChecksum(const BlockHeader& h) { return XXH3_64bits(&h, offsetof(BlockHeader, header_checksum)); }

bool HeaderSane(const BlockHeader& h) {
  const bool codec = h.codec == kCodecLz4 || (h.codec == kCodecNone && h.stored_size == h.raw_size);
  return h.magic == kMagic && h.format == kFormatVersion && codec && h.raw_size <= kMaxRawBlock &&
         h.stored_size <= static_cast<uint32_t>(LZ4_compressBound(static_cast<int>(kMaxRawBlock))) &&
         h.record_count > 0 && h.first_offset >= 0 && h.last_offset >= h.first_offset;
}

namespace {
size_t HeadersBytes(const ArchiveRecord& r) {
  size_t n = 0;
  for (const auto& h : r.headers) n += 8 + h.name.size() + h.value.size();
  return n;
}
}  // namespace

size_t EncodedRecordBytes(const ArchiveRecord& r) {
  return kRecordFixedBytes + Pad8(r.value.size()) + Pad8(r.key.size() + HeadersBytes(r));
}

void AppendRecord(const ArchiveRecord& r, std::string* raw) {
  const size_t headers_size = HeadersBytes(r);
  RecordFixed f;
  f.offset = r.offset;
  f.timestamp_ms = r.timestamp_ms;
  f.key_size = r.key_null ? -1 : static_cast<int32_t>(r.key.size());
  f.value_size = r.value_null ? -1 : static_cast<int32_t>(r.value.size());
  f.header_count = static_cast<uint32_t>(r.headers.size());
  f.headers_size = static_cast<uint32_t>(headers_size);
  const size_t value_padded = Pad8(r.value.size());
  const size_t need = kRecordFixedBytes + value_padded + Pad8(r.key.size() + headers_size);
  const size_t at = raw->size();
  raw->resize(at + need, '\0');
  char* p = raw->data() + at;
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
    if (!h.name.empty()) std::memcpy(p, h.name.data(), h.name.size());
    p += h.name.size();
    if (!h.value.empty()) std::memcpy(p, h.value.data(), h.value.size());
    p += h.value.size();
  }
}

Status EncodeBlock(std::string_view raw, uint32_t record_count, int64_t first_offset, int64_t last_offset,
                   std::string* block, uint32_t codec, int lz4_level) {
  if (raw.size() > kMaxRawBlock) return Status::InvalidArgument("block payload over 64 MiB");
  if (codec != kCodecLz4 && codec != kCodecNone) return Status::InvalidArgument("unknown block codec");
  // One contiguous buffer, header first, so the block goes out in one write().
  char* payload;
  int stored;
  if (codec == kCodecNone) {
    block->resize(kHeaderBytes + raw.size());
    payload = block->data() + kHeaderBytes;
    if (!raw.empty()) std::memcpy(payload, raw.data(), raw.size());
    stored = static_cast<int>(raw.size());
  } else {
    block->resize(kHeaderBytes + static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
    payload = block->data() + kHeaderBytes;
    const int capacity = static_cast<int>(block->size() - kHeaderBytes);
    stored = lz4_level == kLz4Fast
                 ? LZ4_compress_default(raw.data(), payload, static_cast<int>(raw.size()), capacity)
                 : LZ4_compress_HC(raw.data(), payload, static_cast<int>(raw.size()), capacity, lz4_level);
    if (stored <= 0) return Status::IOError("LZ4 compression failed");
  }
  BlockHeader h{};
  h.magic = kMagic;
  h.format = kFormatVersion;
  h.codec = codec;
  h.raw_size = static_cast<uint32_t>(raw.size());
  h.stored_size = static_cast<uint32_t>(stored);
  h.record_count = record_count;
  h.first_offset = first_offset;
  h.last_offset = last_offset;
  h.payload_checksum = PayloadChecksum(payload, static_cast<size_t>(stored));
  h.header_checksum = HeaderChecksum(h);
  std::memcpy(block->data(), &h, kHeaderBytes);
  block->resize(kHeaderBytes + static_cast<size_t>(stored));
  return Status::OK();
}

const char* BlockStateName(BlockState state) {
  switch (state) {
    case BlockState::kComplete: return "complete";
    case BlockState::kIncomplete: return "incomplete";
    case BlockState::kOldFormat: return "a block of archive format 1";
    case BlockState::kHeaderChecksumMismatch: return "header checksum mismatch";
    case BlockState::kInvalidHeader: return "invalid header";
    case BlockState::kChecksumMismatch: return "payload checksum mismatch";
  }
  return "?";
}

BlockState InspectHeader(const char* bytes, size_t have, uint64_t available, BlockHeader* header) {
  if (have >= 4) {
    uint32_t magic;
    std::memcpy(&magic, bytes, 4);
    if (magic == kMagicV1) return BlockState::kOldFormat;
  }
  if (have < kHeaderBytes || available < kHeaderBytes) return BlockState::kIncomplete;
  BlockHeader h;
  std::memcpy(&h, bytes, kHeaderBytes);
  if (header) *header = h;
  if (HeaderChecksum(h) != h.header_checksum) return BlockState::kHeaderChecksumMismatch;
  if (!HeaderSane(h)) return BlockState::kInvalidHeader;
  if (available < kHeaderBytes + h.stored_size) return BlockState::kIncomplete;
  return BlockState::kComplete;
}

BlockState InspectBlock(std::string_view bytes, BlockHeader* header) {
  BlockHeader h{};
  const BlockState state = InspectHeader(bytes.data(), std::min(bytes.size(), kHeaderBytes), bytes.size(), &h);
  if (header) *header = h;
  if (state != BlockState::kComplete) return state;
  if (PayloadChecksum(bytes.data() + kHeaderBytes, h.stored_size) != h.payload_checksum) {
    return BlockState::kChecksumMismatch;
  }
  return BlockState::kComplete;
}

std::string OldFormatMessage(const std::string& path) {
  return "archive " + path +
         " is of block format 1 (written by an older kappa, before block headers had their own checksum); this "
         "kappa reads format 2 only; stop the archivers writing it, then upgrade it in place with `kappa archive -a "
         "DIR --upgrade` (every record is kept; blocks are verified and rewritten segment by segment)";
}

bool DecompressPayload(const BlockHeader& h, const char* stored, std::vector<uint64_t>* raw) {
  if (raw->size() * 8 < h.raw_size) raw->resize(h.raw_size / 8 + 1);
  if (h.codec == kCodecNone) {
    if (h.stored_size != h.raw_size) return false;
    if (h.raw_size > 0) std::memcpy(raw->data(), stored, h.raw_size);
    return true;
  }
  const int n = LZ4_decompress_safe(stored, reinterpret_cast<char*>(raw->data()), static_cast<int>(h.stored_size),
                                    static_cast<int>(h.raw_size));
  return n == static_cast<int>(h.raw_size);
}

Status ParseRecords(const char* base, size_t raw_bytes, int64_t from, int64_t limit, bool with_headers,
                    std::vector<ArchiveRecord>* records) {
  records->clear();
  size_t at = 0;
  while (at + kRecordFixedBytes <= raw_bytes) {
    RecordFixed f;
    std::memcpy(&f, base + at, kRecordFixedBytes);
    const size_t value_size = f.value_size < 0 ? 0 : static_cast<size_t>(f.value_size);
    const size_t key_size = f.key_size < 0 ? 0 : static_cast<size_t>(f.key_size);
    const size_t total = kRecordFixedBytes + Pad8(value_size) + Pad8(key_size + f.headers_size);
    if (at + total > raw_bytes) return Status::Corruption("record overruns its block");
    if (f.offset >= from && f.offset < limit) {
      // Built whole, field by field: emplace_back() and assignments zeroed
      // each record first (a `rep stos` per record, a third of this loop).
      const char* p = base + at + kRecordFixedBytes;
      const std::string_view value(p, value_size);
      p += Pad8(value_size);
      ArchiveRecord& r = records->emplace_back(ArchiveRecord{.offset = f.offset,
                                                             .timestamp_ms = f.timestamp_ms,
                                                             .key = std::string_view(p, key_size),
                                                             .key_null = f.key_size < 0,
                                                             .value = value,
                                                             .value_null = f.value_size < 0,
                                                             .headers = {},
                                                             .header_count = f.header_count,
                                                             .raw_headers = std::string_view(p + key_size,
                                                                                             f.headers_size)});
      if (with_headers) {
        ForEachArchivedHeader(r.raw_headers, r.header_count, [&r](const ArchiveHeader& h) { r.headers.push_back(h); });
      }
    }
    at += total;
  }
  return Status::OK();
}

Status DecodeBlock(std::string_view bytes, std::vector<uint64_t>* raw, std::vector<ArchiveRecord>* records,
                   BlockHeader* header) {
  BlockHeader h{};
  const BlockState state = InspectBlock(bytes, &h);
  if (state != BlockState::kComplete) return Status::Corruption(std::string("block: ") + BlockStateName(state));
  if (!DecompressPayload(h, bytes.data() + kHeaderBytes, raw)) return Status::Corruption("block does not decompress");
  if (header) *header = h;
  return ParseRecords(reinterpret_cast<const char*>(raw->data()), h.raw_size, INT64_MIN, INT64_MAX, true, records);
}

}  // namespace kappa::segment_format
