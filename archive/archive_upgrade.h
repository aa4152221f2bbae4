// `kappa archive --upgrade`: rewrites the segments of an archive made by an
// older kappa (block format 1, "KAB1") in today's block format 2, so that
// history kept only in the archive (the records Kafka's retention has
// deleted since) survives an upgrade of kappa. The two formats differ only
// in the block header (format 2 gives the header its own checksum); the
// records and their compression are the same, so each block's payload is
// kept byte for byte, after its format-1 checksum has been verified.
//
// Each segment is rewritten beside itself (<segment>.upgrading), verified,
// made durable and renamed over the original: a crash at any moment leaves
// every segment either as it was or upgraded, and a second run finishes the
// job. An incomplete block at the very end of a partition's newest segment
// (a crash of the old archiver mid-write) is left out, as the old archiver
// would have cut it; a block failing its checksum, or cut short in a sealed
// segment, is damage: that segment is left as it is and named.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"

namespace kappa {

struct UpgradeSummary {
  int upgraded = 0;         // segments rewritten in format 2
  int current = 0;          // segments already in format 2 (or empty)
  int64_t records = 0;      // records in the rewritten segments
  int64_t torn_bytes = 0;   // bytes of torn tails left out
};

// Upgrades every segment of `topics` (every archived topic if empty) under
// `root`. Takes each partition's writer lock (Unavailable if an archiver
// holds it). Corruption naming the file and the byte of the first damaged
// block, after the other partitions are upgraded. `on_note` receives a line
// per torn tail left out.
Result<UpgradeSummary> UpgradeArchive(const std::string& root, const std::vector<std::string>& topics,
                                      const NoteCallback& on_note);

}  // namespace kappa
