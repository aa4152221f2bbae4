// The archiver behind `kappa archive`: follows Kafka topics into the log
// archive (archive/archive.h), and loads record files into it. Its progress
// is the archive itself (the end offset of each partition's last durable
// block), so a kill -9 at any moment resumes without gaps or duplicates.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/stop_token.h"
#include "kafka/kafka_config.h"
#include "archive/archive.h"

namespace kappa {

struct ArchiverOptions {
  std::string root;
  std::vector<std::string> topics;
  bool stop_at_end = false;       // stop once every partition reaches its end offset as of start
  int flush_interval_ms = 1000;   // fdatasync at least this often (the archive's durability lag)
  size_t block_bytes = ArchiveWriter::kDefaultBlockBytes;
  int status_interval_ms = 5000;  // 0: no status line
  bool progress_on_terminal = false;
};

struct ArchiverSummary {
  int64_t records = 0;
  int64_t bytes = 0;  // key + value bytes archived
  double seconds = 0;
};

// Follows `options.topics` until *stop is set (or the end, with
// stop_at_end). DataLoss, naming the partition and the range, if a
// partition's log start offset is past what the archive holds (history
// deleted before it could be archived) or moves past it while following.
Result<ArchiverSummary> RunArchiver(const KafkaConfig& config, const ArchiverOptions& options,
                                    StopToken stop);

// A file of size-prefixed FlatBuffers LogRecords (schemas/log_record.fbs).
class RecordFileWriter {
 public:
  static Result<std::unique_ptr<RecordFileWriter>> Create(const std::string& path);
  ~RecordFileWriter();
  Status Append(int32_t partition, int64_t offset, int64_t timestamp_ms, std::string_view key,
                std::string_view value);
  Status Close();

 private:
  RecordFileWriter() = default;
  std::FILE* file_ = nullptr;
  std::string path_;
  struct Builder;
  std::unique_ptr<Builder> builder_;
};

struct ImportSummary {
  int64_t records = 0;   // appended
  int64_t skipped = 0;   // already in the archive (below its end)
  int32_t partitions = 0;
};
// Loads a record file into <root>/<topic>. Idempotent: records below a
// partition's archived end are skipped, so an interrupted import can simply
// run again. Corruption (with the byte position) on a damaged file; what was
// appended before it stays, durable.
Result<ImportSummary> ImportRecordFile(const std::string& file, const std::string& root, const std::string& topic);

}  // namespace kappa
