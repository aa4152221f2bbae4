#include "engine/record_fingerprint.h"

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace kappa {

uint64_t RecordFingerprint(const void* key, uint32_t key_size, const void* value, uint32_t value_size,
                           int64_t timestamp_ms) {
  // The key's hash seeds the value's, so moving bytes between key and value
  // changes the fingerprint; the timestamp seeds the key's.
  const uint64_t k = XXH3_64bits_withSeed(key_size ? key : "", key_size, static_cast<uint64_t>(timestamp_ms));
  return XXH3_64bits_withSeed(value_size ? value : "", value_size, k);
}

}  // namespace kappa
