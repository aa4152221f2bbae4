// Loading a record file (archive/record_file.h) into the log archive: what
// `kappa archive --import` does.
#pragma once

#include <cstdint>
#include <string>

#include "base/progress.h"
#include "base/status.h"
#include "archive/archive_writer.h"

namespace kappa {

struct ImportSummary {
  int64_t records = 0;   // appended
  int64_t skipped = 0;   // already in the archive (below its end)
  int32_t partitions = 0;
};

// Loads a record file into <root>/<topic>. Idempotent: records below a
// partition's archived end are skipped, so an interrupted import can simply
// run again; they must equal the archived records at their offsets
// (FailedPrecondition naming the first that differs, before anything is
// appended: the file holds another history). Corruption (with the byte position) on a damaged file; what was
// appended before it stays, durable. `on_note` hears about torn tail blocks
// cut from an earlier crash. New blocks are written with `compression`.
Result<ImportSummary> ImportRecordFile(const std::string& file, const std::string& root, const std::string& topic,
                                       const NoteCallback& on_note = {},
                                       ArchiveCompression compression = ArchiveCompression::kLz4);

}  // namespace kappa
