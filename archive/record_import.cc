#include "archive/record_import.h"

#include <map>
#include <memory>
#include <utility>

#include "archive/archive_writer.h"
#include "archive/record_file.h"
#include "archive/segment_file.h"

namespace kappa {

Result<ImportSummary> ImportRecordFile(const std::string& file, const std::string& root, const std::string& topic,
                                       const NoteCallback& on_note, ArchiveCompression compression) {
  KAPPA_RETURN_IF_ERROR(segment_file::ValidateTopic(topic));
  auto reader = RecordFileReader::Open(file);
  if (!reader.ok()) return reader.status();
  std::map<int32_t, std::unique_ptr<ArchiveWriter>> writers;
  ImportSummary summary;
  Status result;
  RecordFileEntry entry;
  auto flush_all = [&]() -> Status {  // every writer, even after one fails; the first error
    Status first;
    for (auto& [p, w] : writers) {
      Status st = w->Flush();
      if (first.ok() && !st.ok()) first = std::move(st);
    }
    return first;
  };
  for (;;) {
    auto more = (*reader)->Next(&entry);
    if (!more.ok()) {
      result = more.status();
      break;
    }
    if (!*more) break;
    auto& writer = writers[entry.partition];
    if (!writer) {
      auto w = ArchiveWriter::Open(root, topic, entry.partition, ArchiveWriter::kDefaultBlockBytes,
                                   ArchiveWriter::kDefaultSegmentBytes, on_note, compression);
      if (!w.ok()) {
        writers.erase(entry.partition);
        result = w.status();
        break;
      }
      writer = std::move(*w);
    }
    if (entry.record.offset < writer->end_offset()) {
      ++summary.skipped;
      continue;
    }
    result = writer->Append(entry.record);
    if (!result.ok()) break;
    if (++summary.records % 4000000 == 0) {
      result = flush_all();
      if (!result.ok()) break;
    }
  }
  Status flushed = flush_all();
  summary.partitions = static_cast<int32_t>(writers.size());
  if (!result.ok()) return result;
  if (!flushed.ok()) return flushed;
  return summary;
}

}  // namespace kappa
