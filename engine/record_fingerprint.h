// RecordFingerprint: what identifies one record of a log beyond its offset
// (its key, value and Kafka timestamp), 64 bits of XXH3. A task keeps the
// fingerprint of the last record of each batch in its checkpoint, and a
// restore holds it against the record Kafka has at that offset now
// (engine/log_identity.h): a topic deleted and recreated under the same name
// has other records there. Computed once per batch, never per record.
#pragma once

#include <cstdint>
#include <string_view>

namespace kappa {

// A null key or value hashes as an empty one.
uint64_t RecordFingerprint(const void* key, uint32_t key_size, const void* value, uint32_t value_size,
                           int64_t timestamp_ms);
// The same of a record read back whole (RecordAtOffset, ConsumedRecord).
inline uint64_t RecordFingerprint(std::string_view key, std::string_view value, int64_t timestamp_ms) {
  return RecordFingerprint(key.data(), static_cast<uint32_t>(key.size()), value.data(),
                           static_cast<uint32_t>(value.size()), timestamp_ms);
}

}  // namespace kappa
