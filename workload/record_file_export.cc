#include "workload/record_file_export.h"

#include "archive/record_file.h"
#include "base/clock.h"
#include "base/hash.h"

namespace kappa {
namespace {

constexpr uint64_t kProgressEvery = 1000000;

// The one loop for every generator: `next(&key, &value, &timestamp_ms)`
// yields records until it returns false.
template <typename NextFn>
Status WriteAll(const std::string& path, int32_t partitions, uint64_t total, const ProgressFn& progress,
                NextFn&& next, ProduceSummary* summary) {
  if (partitions < 1) return Status::InvalidArgument("a record file needs at least one partition");
  auto writer = RecordFileWriter::Create(path);
  if (!writer.ok()) return writer.status();
  Stopwatch clock;
  const std::string* key = nullptr;
  const std::string* value = nullptr;
  int64_t timestamp_ms = 0;
  uint64_t written = 0;
  while (next(&key, &value, &timestamp_ms)) {
    KAPPA_RETURN_IF_ERROR((*writer)->AppendNext(PartitionForKey(*key, partitions), timestamp_ms, *key, *value));
    if (progress && ++written % kProgressEvery == 0) progress(written, total, clock.Seconds());
  }
  KAPPA_RETURN_IF_ERROR((*writer)->Close());
  summary->partitions = partitions;
  summary->bytes = static_cast<uint64_t>((*writer)->bytes());
  summary->seconds = clock.Seconds();
  return Status::OK();
}

}  // namespace

Result<ProduceSummary> WriteEventsToFile(const std::string& path, const GeneratorOptions& options,
                                         int32_t partitions, const ProgressFn& progress,
                                         const EncodingOptions& encoding) {
  TransactionGenerator generator(options);
  auto encoder = EventEncoder::Create(encoding, options);
  if (!encoder.ok()) return encoder.status();
  GeneratedRecord record;
  Status encode_status;
  auto next = [&](const std::string** key, const std::string** value, int64_t* timestamp_ms) {
    if (!generator.Next(&record)) return false;
    encode_status = (*encoder)->Encode(record, value);
    if (!encode_status.ok()) return false;
    *key = &record.key;
    *timestamp_ms = GeneratedTimestampMs(record, options.start_time_ms);
    return true;
  };
  ProduceSummary summary;
  KAPPA_RETURN_IF_ERROR(WriteAll(path, partitions, options.count, progress, next, &summary));
  KAPPA_RETURN_IF_ERROR(encode_status);
  summary.stats = generator.stats();
  summary.encoding = (*encoder)->stats();
  return summary;
}

Result<ProduceSummary> WriteNexmarkToFile(const std::string& path, const NexmarkOptions& options,
                                          int32_t partitions, const ProgressFn& progress) {
  NexmarkGenerator generator(options);
  NexmarkRecord record;
  auto next = [&](const std::string** key, const std::string** value, int64_t* timestamp_ms) {
    if (!generator.Next(&record)) return false;
    *key = &record.key;
    *value = &record.value;
    *timestamp_ms = record.event_time_ms;
    return true;
  };
  ProduceSummary summary;
  KAPPA_RETURN_IF_ERROR(WriteAll(path, partitions, options.count, progress, next, &summary));
  summary.nexmark = generator.stats();
  return summary;
}

}  // namespace kappa
