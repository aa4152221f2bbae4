// A record that owns its bytes, for the archive tests, and the borrowed
// ArchiveRecord view the writer takes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "archive/archive_record.h"

namespace kappa {

struct Owned {
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string key;
  bool key_null = false;
  std::string value;
  bool value_null = false;
  std::vector<std::pair<std::string, std::string>> headers;
};

inline ArchiveRecord View(const Owned& o) {
  ArchiveRecord r;
  r.offset = o.offset;
  r.timestamp_ms = o.timestamp_ms;
  r.key = o.key;
  r.key_null = o.key_null;
  r.value = o.value;
  r.value_null = o.value_null;
  for (const auto& [name, value] : o.headers) r.headers.push_back({name, value, false});
  return r;
}

}  // namespace kappa
