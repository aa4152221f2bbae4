// The archive's block format: how records are laid out in a block, and how a
// block is compressed, checksummed and checked. No files here (segment
// files: archive/segment_file.h). Little-endian; format version 2:
//
//   block  = header (56 bytes) + compressed payload
//   header = magic "KAB2" | format u32 (2) | codec u32 (1 = LZ4, 0 = none) | raw_size u32 | stored_size u32
//            | record_count u32 | first_offset i64 | last_offset i64
//            | payload_checksum u64 (XXH3-64 of the payload)
//            | header_checksum u64 (XXH3-64 of the 48 header bytes before it)
//   record = offset i64 | timestamp_ms i64 | key_size i32 (-1: null) | value_size i32 (-1: null)
//            | header_count u32 | headers_size u32 | value, padded to 8 | key | headers, padded to 8
//   header = name_size u32 | value_size i32 (-1: null) | name | value
//
// The header has its own checksum so that a block cut short by a crash (a
// header or payload shorter than the header says: torn) can be told from a
// complete block that is damaged (a checksum fails): a flipped bit in
// stored_size would otherwise look like a torn tail. A block of codec none
// stores its payload as is (stored_size == raw_size): twice to four times the
// disk of LZ4, read without decompressing (`kappa archive --compression none`). Format 1 ("KAB1", a
// 48-byte header with one checksum over both) is recognised and refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "archive/archive_record.h"

namespace kappa::segment_format {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the archive format is little-endian");

constexpr uint32_t kMagic = 0x3242414b;    // "KAB2"
constexpr uint32_t kMagicV1 = 0x3142414b;  // "KAB1": format 1, refused
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kCodecNone = 0;
constexpr uint32_t kCodecLz4 = 1;
constexpr size_t kHeaderBytes = 56;
constexpr size_t kRecordFixedBytes = 32;
constexpr uint32_t kMaxRawBlock = 64u << 20;
// The largest record a block takes (encoded size).
constexpr size_t kMaxRecordBytes = kMaxRawBlock / 2;

struct BlockHeader {
  uint32_t magic;
  uint32_t format;
  uint32_t codec;
  uint32_t raw_size;
  uint32_t stored_size;
  uint32_t record_count;
  int64_t first_offset;
  int64_t last_offset;
  uint64_t payload_checksum;
  uint64_t header_checksum;
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

inline size_t Pad8(size_t n) { return (n + 7) & ~size_t{7}; }

// XXH3-64 of the payload.
uint64_t PayloadChecksum(const void* payload, size_t size);
// XXH3-64 of the header bytes before header_checksum.
uint64_t HeaderChecksum(const BlockHeader& header);
// Magic, format, codec, sizes within bounds, at least one record, offsets ordered.
bool HeaderSane(const BlockHeader& header);

// Bytes `record` takes in a block's raw payload.
size_t EncodedRecordBytes(const ArchiveRecord& record);
// Appends `record` to a block's raw payload.
void AppendRecord(const ArchiveRecord& record, std::string* raw);

// Compresses a raw payload of `record_count` records with offsets
// first..last into a complete block (header + payload) in *block, with
// `codec` (kCodecLz4 or kCodecNone). For kCodecLz4, lz4_level 0 is LZ4's
// fast compressor and 3-12 LZ4HC's levels: the same block format, read by
// the same decompressor (faster on HC's output, which has longer matches).
constexpr int kLz4Fast = 0;
constexpr int kLz4HcDefault = 3;
Status EncodeBlock(std::string_view raw, uint32_t record_count, int64_t first_offset, int64_t last_offset,
                   std::string* block, uint32_t codec = kCodecLz4, int lz4_level = kLz4HcDefault);

// What the bytes at the start of a buffer are. Only kIncomplete is a torn
// write (at the tail of the newest segment); the rest but kComplete is damage.
enum class BlockState {
  kComplete,                // a whole block whose checksums match
  kIncomplete,              // shorter than a header, or than the size its header gives: torn (or being written)
  kOldFormat,               // a format-1 block ("KAB1")
  kHeaderChecksumMismatch,  // a complete header whose own checksum fails
  kInvalidHeader,           // the header checksum holds but the fields do not (an unknown format)
  kChecksumMismatch,        // the payload checksum fails
};
const char* BlockStateName(BlockState state);
// Classifies a block from its header alone: `have` bytes of it are in
// `bytes` (at most kHeaderBytes are looked at) and `available` bytes lie
// between its start and the end of the file. kComplete here means the
// header is valid and the payload is all there (not yet verified).
BlockState InspectHeader(const char* bytes, size_t have, uint64_t available, BlockHeader* header);
// Classifies the block at the start of `bytes` (header and payload); fills
// *header when one was read.
BlockState InspectBlock(std::string_view bytes, BlockHeader* header);
// What to tell a user whose archive is of format 1.
std::string OldFormatMessage(const std::string& path);

// Decompresses a block's payload (`stored`, header.stored_size bytes) into
// *raw (8-byte aligned, so values can be read in place; codec none: a
// copy). False if it does not decompress to header.raw_size bytes.
bool DecompressPayload(const BlockHeader& header, const char* stored, std::vector<uint64_t>* raw);

// Parses the records of a raw payload with offset in [from, limit) into
// *records (views into `raw`). Headers are decoded only `with_headers`.
// Corruption if a record overruns the payload.
Status ParseRecords(const char* raw, size_t raw_bytes, int64_t from, int64_t limit, bool with_headers,
                    std::vector<ArchiveRecord>* records);

// A whole block in memory (header + payload) to records: InspectBlock,
// DecompressPayload and ParseRecords with headers. `raw` holds the record
// bytes the views point to. Corruption unless the block is complete and valid.
Status DecodeBlock(std::string_view bytes, std::vector<uint64_t>* raw, std::vector<ArchiveRecord>* records,
                   BlockHeader* header = nullptr);

}  // namespace kappa::segment_format
