#include "archive/record_import.h"

#include <map>
#include <memory>
#include <utility>

#include "archive/archive_reader.h"
#include "archive/archive_writer.h"
#include "archive/record_file.h"
#include "archive/segment_file.h"

namespace kappa {

namespace {

// What differs between two records at one offset ("" if nothing does).
std::string Difference(const ArchiveRecord& a, const ArchiveRecord& b) {
  if (a.key_null != b.key_null || a.key != b.key) return "the key";
  if (a.value_null != b.value_null || a.value != b.value) return "the value";
  if (a.timestamp_ms != b.timestamp_ms) return "the timestamp";
  if (a.headers.size() != b.headers.size()) return "the headers";
  for (size_t i = 0; i < a.headers.size(); ++i) {
    const ArchiveHeader& x = a.headers[i];
    const ArchiveHeader& y = b.headers[i];
    if (x.name != y.name || x.value_null != y.value_null || x.value != y.value) return "the headers";
  }
  return "";
}

// The file's records below each partition's archived end must be the
// archived ones: skipping them as "already archived" on the offset alone
// merged another history (another topic, another generator seed) into the
// archive in silence (a bug bash). Checked over the whole file before
// anything is appended, so a refused import changes nothing.
Status CheckOverlap(const std::string& file, const std::string& root, const std::string& topic) {
  auto reader = RecordFileReader::Open(file);
  if (!reader.ok()) return reader.status();
  struct Partition {
    std::unique_ptr<ArchiveReader> archived;  // null: nothing archived
    int64_t end = 0;
    ArchiveRecord next;  // the archive's next record
    bool has_next = false;
  };
  std::map<int32_t, Partition> partitions;
  RecordFileEntry entry;
  for (;;) {
    auto more = (*reader)->Next(&entry);
    // A damaged file: the import appends what comes before the damage, then
    // reports it (checked that far).
    if (!more.ok() || !*more) return Status::OK();
    auto [it, fresh] = partitions.try_emplace(entry.partition);
    Partition& p = it->second;
    if (fresh) {
      auto archived = ArchiveReader::Open(root, topic, entry.partition);
      if (!archived.ok()) {
        if (archived.status().code() == Status::Code::kNotFound) continue;
        return archived.status();
      }
      auto range = (*archived)->Range();
      if (!range.ok()) return range.status();
      p.end = range->end_offset;
      if (p.end == 0) continue;
      KAPPA_RETURN_IF_ERROR((*archived)->Seek(entry.record.offset));
      p.archived = std::move(*archived);
      auto first = p.archived->Next(&p.next);
      if (!first.ok()) return first.status();
      p.has_next = *first;
    }
    if (!p.archived || entry.record.offset >= p.end) continue;
    // Both in offset order: the archive's records up to this one.
    while (p.has_next && p.next.offset < entry.record.offset) {
      auto next = p.archived->Next(&p.next);
      if (!next.ok()) return next.status();
      p.has_next = *next;
    }
    const std::string where = "partition " + std::to_string(entry.partition) + " offset " +
                              std::to_string(entry.record.offset) + " of " + file;
    std::string what;
    if (!p.has_next || p.next.offset != entry.record.offset) {
      what = "the archive of " + topic + " has no record at that offset (it holds offsets up to " +
             std::to_string(p.end - 1) + ")";
    } else if (const std::string diff = Difference(entry.record, p.next); !diff.empty()) {
      what = diff + " differs from the archived record at that offset in " + root + "/" + topic;
    }
    if (!what.empty()) {
      return Status::FailedPrecondition(
          where + ": " + what + ". The file holds another history than the archive (another topic, or "
          "records written again), so nothing was imported: import it under another --topic, or into another "
          "archive directory");
    }
  }
}

}  // namespace

Result<ImportSummary> ImportRecordFile(const std::string& file, const std::string& root, const std::string& topic,
                                       const NoteCallback& on_note, ArchiveCompression compression) {
  KAPPA_RETURN_IF_ERROR(segment_file::ValidateTopic(topic));
  KAPPA_RETURN_IF_ERROR(CheckOverlap(file, root, topic));
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
