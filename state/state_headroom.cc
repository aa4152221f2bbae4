#include "state/state_headroom.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace kappa {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

std::string FloorMiB(int64_t bytes) { return std::to_string(bytes / kMiB); }
std::string CeilMiB(int64_t bytes) { return std::to_string((bytes + kMiB - 1) / kMiB); }

}  // namespace

Result<int64_t> StatvfsFreeBytes(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) {
    return Status::IOError("cannot read the free space of state dir " + dir + ": " + std::strerror(errno));
  }
  const unsigned long long bytes =
      static_cast<unsigned long long>(st.f_bavail) * static_cast<unsigned long long>(st.f_frsize);
  return static_cast<int64_t>(std::min<unsigned long long>(bytes, static_cast<unsigned long long>(INT64_MAX)));
}

Status CheckHeadroom(const std::string& dir, int64_t last_checkpoint_bytes, const HeadroomPolicy& policy,
                     const FreeSpaceFn& free_space) {
  const double scaled = policy.checkpoint_factor * static_cast<double>(std::max<int64_t>(0, last_checkpoint_bytes));
  const int64_t from_checkpoint = scaled >= 9.2e18 ? INT64_MAX : static_cast<int64_t>(std::ceil(scaled));
  const int64_t needed = std::max(policy.min_bytes, from_checkpoint);
  if (needed <= 0) return Status::OK();
  auto free_bytes = free_space(dir);
  if (!free_bytes.ok()) return free_bytes.status();
  if (*free_bytes >= needed) return Status::OK();
  std::string why;
  if (from_checkpoint > policy.min_bytes) {
    std::string factor = std::to_string(policy.checkpoint_factor);
    factor.erase(factor.find_last_not_of('0') + 1);
    if (!factor.empty() && factor.back() == '.') factor.pop_back();
    why = " (" + (factor == "2" ? std::string("twice") : factor + " times") + " the last checkpoint's " +
          CeilMiB(last_checkpoint_bytes) + " MiB)";
  }
  return Status::FailedPrecondition("state dir " + dir + " has " + FloorMiB(*free_bytes) + " MiB free, needs " +
                                    CeilMiB(needed) + " MiB" + why + ": free space or move --state-dir");
}

}  // namespace kappa
