// Record files: what the writer appends comes back from the reader field by
// field (explicit offsets and AppendNext's per-partition numbering); a file
// cut anywhere inside a record is Corruption naming that record's byte
// position; a byte flipped inside a record (one that FlatBuffers still
// verifies) fails the record's checksum, and the import stops there with
// what came before archived, then completes from a good copy; records of a
// file without checksums (written before they existed) are read as they
// are; the import loads a file into the archive once, however often it
// runs.
#include "archive/record_file.h"

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/archive.h"
#include "archive/record_import.h"
#include "flatbuffers/flatbuffers.h"
#include "schemas/log_record_generated.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using testing::ScratchDir;

struct Row {
  int32_t partition;
  int64_t offset;
  int64_t timestamp_ms;
  std::string key;
  std::string value;
};

std::vector<Row> Rows() {
  std::vector<Row> rows;
  for (int i = 0; i < 300; ++i) {
    rows.push_back({i % 3, i / 3, 1767225600000 + i, "key-" + std::to_string(i),
                    std::string(static_cast<size_t>(i % 50), static_cast<char>('A' + i % 26))});
  }
  return rows;
}

void Write(const std::string& path, const std::vector<Row>& rows) {
  auto w = RecordFileWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (const auto& r : rows) {
    const Status st = r.offset % 2 == 0 ? (*w)->Append(r.partition, r.offset, r.timestamp_ms, r.key, r.value)
                                        : (*w)->AppendNext(r.partition, r.timestamp_ms, r.key, r.value);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ((*w)->records(), static_cast<int64_t>(rows.size()));
  const Status st = (*w)->Close();
  ASSERT_TRUE(st.ok()) << st.ToString();
}

// Byte positions where each record starts, found by reading the file.
std::vector<int64_t> RecordStarts(const std::string& path) {
  std::vector<int64_t> starts;
  auto r = RecordFileReader::Open(path);
  EXPECT_TRUE(r.ok());
  RecordFileEntry e;
  for (;;) {
    const int64_t at = (*r)->position();
    auto more = (*r)->Next(&e);
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !*more) break;
    starts.push_back(at);
  }
  return starts;
}

// Reads records until the file ends or one fails: how many were read, and
// the failure in *failure (OK if the file ended cleanly).
size_t ReadUntilFailure(const std::string& path, Status* failure) {
  auto r = RecordFileReader::Open(path);
  if (!r.ok()) {
    *failure = r.status();
    return 0;
  }
  RecordFileEntry e;
  size_t read = 0;
  for (;;) {
    auto more = (*r)->Next(&e);
    if (!more.ok()) {
      *failure = more.status();
      return read;
    }
    if (!*more) {
      *failure = Status::OK();
      return read;
    }
    ++read;
  }
}

TEST(RecordFileTest, WhatIsWrittenIsReadBack) {
  ScratchDir dir("record_file_roundtrip");
  const std::string path = dir / "records.krec";
  const auto rows = Rows();
  Write(path, rows);
  auto r = RecordFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  RecordFileEntry e;
  size_t i = 0;
  for (;; ++i) {
    auto more = (*r)->Next(&e);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    ASSERT_LT(i, rows.size());
    EXPECT_EQ(e.partition, rows[i].partition);
    EXPECT_EQ(e.record.offset, rows[i].offset) << "AppendNext numbers 0, 1, ... per partition";
    EXPECT_EQ(e.record.timestamp_ms, rows[i].timestamp_ms);
    EXPECT_EQ(e.record.key, rows[i].key);
    EXPECT_EQ(e.record.value, rows[i].value);
    EXPECT_TRUE(e.record.headers.empty());
  }
  EXPECT_EQ(i, rows.size());
  EXPECT_EQ((*r)->position(), static_cast<int64_t>(std::filesystem::file_size(path)));
}

TEST(RecordFileTest, ATruncatedFileIsCorruptionWithTheBytePosition) {
  ScratchDir dir("record_file_truncated");
  const std::string path = dir / "records.krec";
  Write(path, Rows());
  const auto starts = RecordStarts(path);
  ASSERT_EQ(starts.size(), 300u);
  const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path));
  // Cut inside the length prefix of record 100, and inside the body of record 200.
  for (const auto& [cut, record] : std::vector<std::pair<int64_t, size_t>>{{starts[100] + 2, 100},
                                                                            {starts[200] + 9, 200},
                                                                            {size - 1, 299}}) {
    std::filesystem::copy_file(path, dir / "cut.krec", std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(dir / "cut.krec", static_cast<uintmax_t>(cut));
    Status failure;
    const size_t read = ReadUntilFailure(dir / "cut.krec", &failure);
    ASSERT_FALSE(failure.ok()) << "the cut file must not end cleanly";
    EXPECT_EQ(read, record) << "every record before the cut is read";
    EXPECT_EQ(failure.code(), Status::Code::kCorruption) << failure.ToString();
    EXPECT_NE(failure.message().find("at byte " + std::to_string(starts[record])), std::string::npos)
        << failure.ToString();
  }
}

TEST(RecordFileTest, NotARecordFileIsCorruptionAndAMissingOneNotFound) {
  ScratchDir dir("record_file_garbage");
  {
    std::FILE* f = std::fopen((dir / "garbage").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const char junk[] = "\x10\x00\x00\x00this is not a flatbuffer";
    std::fwrite(junk, 1, sizeof(junk) - 1, f);
    std::fclose(f);
  }
  auto r = RecordFileReader::Open(dir / "garbage");
  ASSERT_TRUE(r.ok());
  RecordFileEntry e;
  auto more = (*r)->Next(&e);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), Status::Code::kCorruption);
  EXPECT_NE(more.status().message().find("at byte 0"), std::string::npos) << more.status().ToString();
  EXPECT_EQ(RecordFileReader::Open(dir / "missing").status().code(), Status::Code::kNotFound);
}

TEST(RecordFileTest, ImportLoadsEachRecordOnceAcrossRuns) {
  ScratchDir dir("record_file_import");
  const std::string path = dir / "records.krec";
  Write(path, Rows());
  auto first = ImportRecordFile(path, dir / "archive", "t");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->records, 300);
  EXPECT_EQ(first->skipped, 0);
  EXPECT_EQ(first->partitions, 3);
  auto again = ImportRecordFile(path, dir / "archive", "t");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->records, 0);
  EXPECT_EQ(again->skipped, 300);
  auto ranges = ArchiveRanges(dir / "archive", "t");
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 3u);
  for (const auto& range : *ranges) {
    EXPECT_EQ(range.first_offset, 0);
    EXPECT_EQ(range.end_offset, 100);
    EXPECT_EQ(range.records, 100);
  }
}

// A bug bash: a file of another history (another generator seed) imported
// into an archived topic was reported "10000 already archived were
// skipped" on the offsets alone, and its newer records were appended after
// the archived ones: an archive that matched neither source. Records below
// the archived end must be the archived ones; otherwise nothing is imported,
// naming the first that differs. A longer file of the same history still
// adds only its newer records.
TEST(RecordFileTest, AFileOfAnotherHistoryIsRefusedAndNothingIsImported) {
  ScratchDir dir("record_file_other_history");
  std::vector<Row> rows = Rows();
  const std::vector<Row> archived(rows.begin(), rows.begin() + 150);  // offsets 0..49 of each partition
  Write(dir / "first.krec", archived);
  ASSERT_TRUE(ImportRecordFile(dir / "first.krec", dir / "archive", "t").ok());

  std::vector<Row> other = rows;
  other[100].value += "!";  // partition 1, offset 33
  Write(dir / "other.krec", other);
  auto refused = ImportRecordFile(dir / "other.krec", dir / "archive", "t");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("partition 1 offset 33 of " + dir / "other.krec" +
                                            ": the value differs from the archived record"),
            std::string::npos)
      << refused.status().ToString();
  other = rows;
  other[4].timestamp_ms += 1;  // partition 1, offset 1
  Write(dir / "other.krec", other);
  refused = ImportRecordFile(dir / "other.krec", dir / "archive", "t");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("the timestamp differs"), std::string::npos) << refused.status().ToString();
  auto ranges = ArchiveRanges(dir / "archive", "t");
  ASSERT_TRUE(ranges.ok());
  for (const auto& range : *ranges) EXPECT_EQ(range.end_offset, 50) << "nothing of the refused file was appended";

  Write(dir / "longer.krec", rows);
  auto longer = ImportRecordFile(dir / "longer.krec", dir / "archive", "t");
  ASSERT_TRUE(longer.ok()) << longer.status().ToString();
  EXPECT_EQ(longer->skipped, 150);
  EXPECT_EQ(longer->records, 150);
}

TEST(RecordFileTest, AByteFlippedInsideARecordFailsItsChecksumAndTheImportResumesFromAGoodCopy) {
  ScratchDir dir("record_file_flipped");
  const std::string good = dir / "records.krec";
  Write(good, Rows());
  const auto starts = RecordStarts(good);
  ASSERT_EQ(starts.size(), 300u);
  // "key-151" becomes "key-757": still a well-formed LogRecord.
  std::string bytes;
  {
    std::FILE* f = std::fopen(good.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    bytes.resize(std::filesystem::file_size(good));
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }
  const size_t at = bytes.find("key-151");
  ASSERT_NE(at, std::string::npos);
  ASSERT_GT(static_cast<int64_t>(at), starts[151]);
  ASSERT_LT(static_cast<int64_t>(at), starts[152]);
  bytes[at + 4] = '7';
  const std::string damaged = dir / "damaged.krec";
  {
    std::FILE* f = std::fopen(damaged.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }

  Status failure;
  const size_t read = ReadUntilFailure(damaged, &failure);
  ASSERT_FALSE(failure.ok()) << "the damaged record was read as good";
  EXPECT_EQ(read, 151u);
  EXPECT_EQ(failure.code(), Status::Code::kCorruption) << failure.ToString();
  EXPECT_NE(failure.message().find("at byte " + std::to_string(starts[151])), std::string::npos) << failure.ToString();
  EXPECT_NE(failure.message().find("(partition 1, offset 50) fails its checksum"), std::string::npos)
      << failure.ToString();

  // The import stops at it: the 151 records before it are archived, the
  // damaged one and those after it are not.
  auto first = ImportRecordFile(damaged, dir / "archive", "t");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), Status::Code::kCorruption) << first.status().ToString();
  auto ranges = ArchiveRanges(dir / "archive", "t");
  ASSERT_TRUE(ranges.ok());
  int64_t archived = 0;
  for (const auto& range : *ranges) archived += range.records;
  EXPECT_EQ(archived, 151);
  // The same import from a good copy completes it, each record once.
  auto second = ImportRecordFile(good, dir / "archive", "t");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->records, 149);
  EXPECT_EQ(second->skipped, 151);
  auto archive = ArchiveReader::Open(dir / "archive", "t", 1);
  ASSERT_TRUE(archive.ok()) << archive.status().ToString();
  ArchiveRecord record;
  auto found = (*archive)->Seek(50);
  ASSERT_TRUE(found.ok()) << found.ToString();
  auto got = (*archive)->Next(&record);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ(record.key, "key-151");
}

TEST(RecordFileTest, RecordsWithoutAChecksumAreReadAsTheyAre) {
  ScratchDir dir("record_file_no_checksum");
  const std::string path = dir / "old.krec";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    for (int i = 0; i < 3; ++i) {
      flatbuffers::FlatBufferBuilder fbb;
      const std::string value = "value-" + std::to_string(i);
      auto v = fbb.CreateVector(reinterpret_cast<const uint8_t*>(value.data()), value.size());
      schema::LogRecordBuilder b(fbb);
      b.add_partition(0);
      b.add_offset(i);
      b.add_value(v);
      fbb.FinishSizePrefixed(b.Finish(), schema::LogRecordIdentifier());
      ASSERT_EQ(std::fwrite(fbb.GetBufferPointer(), 1, fbb.GetSize(), f), fbb.GetSize());
    }
    std::fclose(f);
  }
  auto r = RecordFileReader::Open(path);
  ASSERT_TRUE(r.ok());
  RecordFileEntry e;
  for (int i = 0; i < 3; ++i) {
    auto more = (*r)->Next(&e);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    ASSERT_TRUE(*more);
    EXPECT_EQ(e.record.offset, i);
    EXPECT_EQ(e.record.value, "value-" + std::to_string(i));
  }
  auto end = (*r)->Next(&e);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

// fopen opens a directory, and its first read fails with EISDIR: the
// import took that for an empty file and said "imported 0 records".
TEST(RecordFileTest, ADirectoryIsRefusedNotAnEmptyFile) {
  ScratchDir dir("record_file_directory");
  std::filesystem::create_directories(dir / "not-a-file");
  auto r = RecordFileReader::Open(dir / "not-a-file");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("is not a regular file (a directory)"), std::string::npos)
      << r.status().ToString();
  auto imported = ImportRecordFile(dir / "not-a-file", dir / "archive", "t");
  EXPECT_FALSE(imported.ok());
}

}  // namespace
}  // namespace kappa
