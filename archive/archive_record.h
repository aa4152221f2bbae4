// What the log archive stores per record (archive/archive.h describes the
// archive): exactly what Kafka holds for it.
#pragma once

#include <cstdint>
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
};

}  // namespace kappa
