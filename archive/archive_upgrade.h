// `kappa archive --upgrade`: rewrites the segments of an archive made by an
// older kappa (block format 1, "KAB1") in today's block format 2, so that
// history kept only in the archive (the records Kafka's retention has
// deleted since) survives an upgrade of kappa. The two formats differ only
// in the block header (format 2 gives the header its own checksum); the
// records and their compression are the same, so each block's payload is
// kept byte for byte, after its format-1 checksum has been verified.
//
// Each segment is rewritten beside itself (<segment>.upgrading), verified,
// made durable and renamed over the original (its owner and mode kept): a
// crash at any moment leaves every segment either as it was or upgraded,
// and a second run finishes the job. Nothing is dropped:
//   - a block whose payload fails its format-1 checksum is carried over as
//     a damaged block (its format-2 payload checksum fails too), so that
//     `kappa archive --repair` refetches it from Kafka or says what is lost;
//   - an incomplete block at the very end of a partition's newest segment
//     (the old archiver killed mid-write, or a damaged size field: format 1
//     cannot tell them apart) is cut from the segment and kept beside it as
//     <segment>.torn;
//   - a block whose header is damaged (nothing says where the next one
//     starts), or cut short in a sealed segment, leaves its segment as it
//     is, named with the file and the byte.
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
  int torn = 0;             // torn tails kept aside as <segment>.torn
  int damaged_blocks = 0;   // damaged blocks carried over (see --repair)
  std::vector<std::string> left;  // segments left as they are, and why
};

// Upgrades every segment of `topics` (every archived topic if empty) under
// `root`, into *summary (what was done, also when it fails). Checks every
// topic before changing anything (NotFound for one with nothing
// archived); takes the writer lock of each partition it rewrites
// (Unavailable if an archiver holds it). Corruption, naming each segment
// left as it is, once the others are upgraded. `on_note` receives a
// warning per torn tail and per damaged block.
Status UpgradeArchive(const std::string& root, const std::vector<std::string>& topics, const NoteCallback& on_note,
                      UpgradeSummary* summary);

}  // namespace kappa
