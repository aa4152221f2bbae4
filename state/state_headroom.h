// Free space in a state directory, checked before each checkpoint so a full
// disk stops the job cleanly with a clear error instead of failing (or, in
// Debian's RocksDB with its debug assertions, aborting) inside a RocksDB
// write. The headroom needed is the larger of a fixed minimum and a multiple
// of the last checkpoint's size (its WAL write, then the flush to an SST).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"

namespace kappa {

struct HeadroomPolicy {
  int64_t min_bytes = int64_t{64} << 20;  // 0 with checkpoint_factor 0: no check
  double checkpoint_factor = 2;
};

// Bytes an unprivileged writer may still use in the file system holding `dir`.
using FreeSpaceFn = std::function<Result<int64_t>(const std::string& dir)>;

// statvfs: f_bavail * f_frsize. IOError naming the directory on failure.
Result<int64_t> StatvfsFreeBytes(const std::string& dir);

// OK when `dir` has at least max(policy.min_bytes, factor x
// last_checkpoint_bytes) free; else FailedPrecondition: "state dir X has N
// MiB free, needs M MiB: free space or move --state-dir". The free-space
// function's error otherwise.
Status CheckHeadroom(const std::string& dir, int64_t last_checkpoint_bytes, const HeadroomPolicy& policy,
                     const FreeSpaceFn& free_space = StatvfsFreeBytes);

}  // namespace kappa
