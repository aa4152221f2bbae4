// What the log archive stores per record (archive/archive.h describes the
// archive): exactly what Kafka holds for it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace kappa {

struct ArchiveHeader {
  std::string_view name;
  std::string_view value;
  bool value_null = false;
};

// One record as stored. Views point into the writer's caller or the
// reader's block buffer: valid until the next call on the reader.
struct ArchiveRecord {
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string_view key;
  bool key_null = false;
  std::string_view value;  // 8-byte aligned when it comes from a reader
  bool value_null = false;
  std::vector<ArchiveHeader> headers;
  // The headers as stored (segment_format.h), set by a reader whether or
  // not it decoded them into `headers`: FindArchivedHeader looks one up.
  uint32_t header_count = 0;
  std::string_view raw_headers;
};

// Calls `f(header)` for each of a record's stored headers (`raw`, `count`
// of them: name_size u32 | value_size i32, -1: null | name | value), in
// order; stops at one that would run past `raw`. The one walker of the
// encoding (segment_format.h).
template <typename F>
void ForEachArchivedHeader(std::string_view raw, uint32_t count, F&& f) {
  size_t at = 0;
  for (uint32_t i = 0; i < count && at + 8 <= raw.size(); ++i) {
    uint32_t name_size;
    int32_t value_size;
    std::memcpy(&name_size, raw.data() + at, 4);
    std::memcpy(&value_size, raw.data() + at + 4, 4);
    at += 8;
    const size_t v = value_size < 0 ? 0 : static_cast<size_t>(value_size);
    if (at + name_size + v > raw.size()) return;
    f(ArchiveHeader{raw.substr(at, name_size), raw.substr(at + name_size, v), value_size < 0});
    at += name_size + v;
  }
}

// The value of the last header named `name` in a record's stored headers
// (`raw`, `count` of them); false if there is none or it is null.
inline bool FindArchivedHeader(std::string_view raw, uint32_t count, std::string_view name, std::string_view* value) {
  bool found = false;
  ForEachArchivedHeader(raw, count, [&](const ArchiveHeader& h) {
    if (h.name != name) return;
    found = !h.value_null;
    if (found) *value = h.value;
  });
  return found;
}

}  // namespace kappa
