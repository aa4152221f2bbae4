// Record files: a flat file of size-prefixed FlatBuffers LogRecords
// (schemas/log_record.fbs), each with its partition and offset. `kappa gen
// --to-archive` writes them (for either workload) and `kappa archive
// --import` loads them into the archive: the way to build a large history
// without a broker. The one writer and the one reader of the format.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "archive/archive_record.h"

namespace kappa {

// The checksum a record file stores with each record: XXH3-64 over its
// partition, offset, timestamp, key, value (with their null flags) and
// headers, each length-prefixed. Never 0 (0 means "none").
uint64_t RecordFileChecksum(int32_t partition, const ArchiveRecord& record);

class RecordFileWriter {
 public:
  static Result<std::unique_ptr<RecordFileWriter>> Create(const std::string& path);
  ~RecordFileWriter();
  RecordFileWriter(const RecordFileWriter&) = delete;
  RecordFileWriter& operator=(const RecordFileWriter&) = delete;

  // Appends a record at an explicit offset.
  Status Append(int32_t partition, int64_t offset, int64_t timestamp_ms, std::string_view key,
                std::string_view value);
  // Appends a record at the partition's next offset (0, 1, ... per
  // partition, as Kafka would assign them).
  Status AppendNext(int32_t partition, int64_t timestamp_ms, std::string_view key, std::string_view value);
  // Flushes and fsyncs; the file is complete after OK.
  Status Close();

  int64_t records() const { return records_; }
  // Key + value bytes appended.
  int64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  RecordFileWriter() = default;
  std::FILE* file_ = nullptr;
  std::string path_;
  struct Builder;
  std::unique_ptr<Builder> builder_;
  std::vector<int64_t> next_offset_;  // per partition, for AppendNext
  int64_t records_ = 0;
  int64_t bytes_ = 0;
};

// One record read from a record file.
struct RecordFileEntry {
  int32_t partition = 0;
  ArchiveRecord record;  // views into the reader's buffer, valid until the next call
};

class RecordFileReader {
 public:
  // NotFound if the file cannot be opened.
  static Result<std::unique_ptr<RecordFileReader>> Open(const std::string& path);
  ~RecordFileReader();
  RecordFileReader(const RecordFileReader&) = delete;
  RecordFileReader& operator=(const RecordFileReader&) = delete;

  // The next record into *out; false at the end of the file. Corruption,
  // naming the byte position, for a bad length, a record the file ends
  // inside of, one that fails FlatBuffers verification, or one whose
  // checksum does not match its contents (records without one are taken
  // as they are).
  Result<bool> Next(RecordFileEntry* out);
  // Byte position of the next record.
  int64_t position() const { return position_; }

 private:
  RecordFileReader() = default;
  std::FILE* file_ = nullptr;
  std::string path_;
  std::vector<uint64_t> buffer_;  // aligned for FlatBuffers
  int64_t position_ = 0;
};

}  // namespace kappa
