// The block format alone, in memory: a block round-trips every field; any
// flipped byte fails the checksum (or the header check); a block cut short
// is recognised as torn, not as damage.
#include "archive/segment_format.h"
#include "tests/archive/owned_record.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kappa {
namespace {

using namespace segment_format;

std::vector<Owned> Sample() {
  std::vector<Owned> all;
  for (int64_t i = 0; i < 200; ++i) {
    Owned o;
    o.offset = 1000 + i * 3;  // offsets may skip
    o.timestamp_ms = 1767225600000 + i;
    o.key_null = i % 7 == 0;
    o.key = o.key_null ? "" : "k" + std::to_string(i);
    o.value_null = i % 13 == 5;
    o.value = o.value_null ? "" : std::string(static_cast<size_t>(i % 17), static_cast<char>('a' + i % 26));
    if (i % 5 == 0) o.headers = {{"trace", "t" + std::to_string(i)}, {"empty", ""}};
    all.push_back(o);
  }
  return all;
}

std::string Encode(const std::vector<Owned>& all, uint32_t codec = kCodecLz4) {
  std::string raw;
  for (const auto& o : all) {
    const size_t before = raw.size();
    AppendRecord(View(o), &raw);
    EXPECT_EQ(raw.size() - before, EncodedRecordBytes(View(o)));
    EXPECT_EQ(raw.size() % 8, 0u) << "records stay 8-byte aligned";
  }
  std::string block;
  const Status st =
      EncodeBlock(raw, static_cast<uint32_t>(all.size()), all.front().offset, all.back().offset, &block, codec);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return block;
}

// LZ4 (the default) and uncompressed blocks.
class BlockCodecTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(BlockCodecTest, ABlockRoundTripsEveryField) {
  const auto all = Sample();
  const std::string block = Encode(all, GetParam());
  BlockHeader h{};
  EXPECT_EQ(InspectBlock(block, &h), BlockState::kComplete);
  EXPECT_EQ(h.magic, kMagic);
  EXPECT_EQ(h.record_count, all.size());
  EXPECT_EQ(h.first_offset, all.front().offset);
  EXPECT_EQ(h.last_offset, all.back().offset);
  EXPECT_EQ(block.size(), kHeaderBytes + h.stored_size);

  std::vector<uint64_t> raw;
  std::vector<ArchiveRecord> records;
  const Status st = DecodeBlock(block, &raw, &records);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(records.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const ArchiveRecord& r = records[i];
    EXPECT_EQ(r.offset, all[i].offset);
    EXPECT_EQ(r.timestamp_ms, all[i].timestamp_ms);
    EXPECT_EQ(r.key_null, all[i].key_null);
    EXPECT_EQ(r.key, all[i].key);
    EXPECT_EQ(r.value_null, all[i].value_null);
    EXPECT_EQ(r.value, all[i].value);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.value.data()) % 8, 0u) << "values are 8-byte aligned";
    ASSERT_EQ(r.headers.size(), all[i].headers.size());
    for (size_t j = 0; j < r.headers.size(); ++j) {
      EXPECT_EQ(r.headers[j].name, all[i].headers[j].first);
      EXPECT_EQ(r.headers[j].value, all[i].headers[j].second);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, BlockCodecTest, ::testing::Values(kCodecLz4, kCodecNone),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return std::string(info.param == kCodecNone ? "none" : "lz4");
                         });

TEST(SegmentFormatTest, ParseRecordsKeepsOnlyTheAskedOffsetRange) {
  const auto all = Sample();
  const std::string block = Encode(all);
  BlockHeader h{};
  ASSERT_EQ(InspectBlock(block, &h), BlockState::kComplete);
  std::vector<uint64_t> raw;
  ASSERT_TRUE(DecompressPayload(h, block.data() + kHeaderBytes, &raw));
  std::vector<ArchiveRecord> records;
  ASSERT_TRUE(ParseRecords(reinterpret_cast<const char*>(raw.data()), h.raw_size, 1010, 1100, false, &records).ok());
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().offset, 1012);  // offsets go 1000, 1003, ...: 1010 is not there
  EXPECT_EQ(records.back().offset, 1099);
  EXPECT_EQ(records.size(), 30u);
  for (const auto& r : records) EXPECT_TRUE(r.headers.empty()) << "headers not decoded";
}

TEST(SegmentFormatTest, AFlippedByteFailsTheChecksum) {
  const std::string block = Encode(Sample());
  // Every payload byte, and the header fields the checksum covers that the
  // sanity check would not catch.
  for (size_t at = kHeaderBytes; at < block.size(); ++at) {
    std::string damaged = block;
    damaged[at] ^= 0x01;
    ASSERT_EQ(InspectBlock(damaged, nullptr), BlockState::kChecksumMismatch) << "byte " << at;
    std::vector<uint64_t> raw;
    std::vector<ArchiveRecord> records;
    const Status st = DecodeBlock(damaged, &raw, &records);
    ASSERT_EQ(st.code(), Status::Code::kCorruption) << "byte " << at;
  }
  // Every header byte fails the header's own checksum: never taken for a
  // block cut short, whatever the flipped field (stored_size included).
  for (size_t at = 0; at < kHeaderBytes; ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = block;
      damaged[at] ^= static_cast<char>(1 << bit);
      const BlockState state = InspectBlock(damaged, nullptr);
      EXPECT_TRUE(state == BlockState::kHeaderChecksumMismatch || state == BlockState::kOldFormat)
          << "header byte " << at << " bit " << bit << ": " << BlockStateName(state);
      EXPECT_NE(state, BlockState::kIncomplete);
    }
  }
}

TEST(SegmentFormatTest, AFormatOneBlockIsRecognised) {
  std::string old(48 + 16, '\0');
  std::memcpy(old.data(), "KAB1", 4);
  EXPECT_EQ(InspectBlock(old, nullptr), BlockState::kOldFormat);
  EXPECT_EQ(InspectBlock(std::string_view(old).substr(0, 10), nullptr), BlockState::kOldFormat);
  std::string block = Encode(Sample());
  BlockHeader h{};
  ASSERT_EQ(InspectBlock(block, &h), BlockState::kComplete);
  EXPECT_EQ(h.format, kFormatVersion);
  EXPECT_EQ(std::string(block.data(), 4), "KAB2");
}

TEST(SegmentFormatTest, AShortTailIsTorn) {
  const std::string block = Encode(Sample());
  for (size_t keep : {size_t{0}, size_t{1}, kHeaderBytes - 1, kHeaderBytes, kHeaderBytes + 1, block.size() / 2,
                      block.size() - 1}) {
    EXPECT_EQ(InspectBlock(std::string_view(block).substr(0, keep), nullptr), BlockState::kIncomplete)
        << keep << " of " << block.size() << " bytes";
  }
  // Bytes after a complete block do not change what it is.
  EXPECT_EQ(InspectBlock(block + "trailing", nullptr), BlockState::kComplete);
}

TEST(SegmentFormatTest, AnUncompressedBlockStoresItsPayloadAsIs) {
  const auto all = Sample();
  const std::string block = Encode(all, kCodecNone);
  BlockHeader h{};
  ASSERT_EQ(InspectBlock(block, &h), BlockState::kComplete);
  EXPECT_EQ(h.codec, kCodecNone);
  EXPECT_EQ(h.stored_size, h.raw_size);
  EXPECT_GT(block.size(), Encode(all).size()) << "the LZ4 block of the same records is smaller";
  // Every flipped payload byte fails the checksum, as with LZ4.
  for (size_t at = kHeaderBytes; at < block.size(); at += 7) {
    std::string damaged = block;
    damaged[at] ^= 0x10;
    ASSERT_EQ(InspectBlock(damaged, nullptr), BlockState::kChecksumMismatch) << "byte " << at;
  }
}

TEST(SegmentFormatTest, AHeaderOfAnUnknownCodecOrMismatchedSizesIsInvalid) {
  const std::string block = Encode(Sample(), kCodecNone);
  BlockHeader h{};
  ASSERT_EQ(InspectBlock(block, &h), BlockState::kComplete);
  // Headers whose own checksum holds but whose fields cannot be: an
  // uncompressed block whose stored size is not its raw size, a codec this
  // kappa does not know (a newer writer's).
  for (const auto& [codec, raw_delta] : {std::pair<uint32_t, int>{kCodecNone, -8}, std::pair<uint32_t, int>{7, 0}}) {
    BlockHeader bad = h;
    bad.codec = codec;
    bad.raw_size = static_cast<uint32_t>(static_cast<int>(bad.raw_size) + raw_delta);
    bad.header_checksum = HeaderChecksum(bad);
    std::string damaged = block;
    std::memcpy(damaged.data(), &bad, kHeaderBytes);
    EXPECT_EQ(InspectBlock(damaged, nullptr), BlockState::kInvalidHeader) << "codec " << codec;
  }
  std::string out;
  EXPECT_EQ(EncodeBlock("x", 1, 0, 0, &out, 7).code(), Status::Code::kInvalidArgument);
}

TEST(SegmentFormatTest, EmptyRawIsNotABlockAndOversizeIsRefused) {
  std::string block;
  ASSERT_TRUE(EncodeBlock("", 0, 0, 0, &block).ok());
  EXPECT_EQ(InspectBlock(block, nullptr), BlockState::kInvalidHeader) << "a block holds at least one record";
  EXPECT_FALSE(EncodeBlock(std::string(kMaxRawBlock + 8, 'x'), 1, 0, 0, &block).ok());
}

}  // namespace
}  // namespace kappa
