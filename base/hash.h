// Stable hashes: the same bytes give the same value on every machine and
// build, so they can name partitions, spec versions and stored keys.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kappa {

// 64-bit FNV-1a. Used for partitioning and spec hashes, never for security.
constexpr uint64_t Fnv1a64(std::string_view data, uint64_t seed = 0xcbf29ce484222325ULL) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Partition of a record key among `partitions`: what kappa gen uses.
inline int32_t PartitionForKey(std::string_view key, int32_t partitions) {
  return static_cast<int32_t>(Fnv1a64(key) % static_cast<uint64_t>(partitions));
}

// 16 lowercase hex digits.
std::string HashToHex(uint64_t hash);

}  // namespace kappa
