// A record that owns its bytes, for the archive tests, the borrowed
// ArchiveRecord view the writer takes, and the read-back checks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "archive/archive.h"
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

inline void ExpectSame(const Owned& want, const ArchiveRecord& got) {
  ASSERT_EQ(want.offset, got.offset);
  EXPECT_EQ(want.timestamp_ms, got.timestamp_ms);
  EXPECT_EQ(want.key_null, got.key_null) << want.offset;
  EXPECT_EQ(want.key, got.key);
  EXPECT_EQ(want.value, got.value);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(got.value.data()) % 8, 0u) << "values are 8-byte aligned";
  ASSERT_EQ(want.headers.size(), got.headers.size()) << want.offset;
  for (size_t i = 0; i < want.headers.size(); ++i) {
    EXPECT_EQ(want.headers[i].first, got.headers[i].name);
    EXPECT_EQ(want.headers[i].second, got.headers[i].value);
  }
}

// Reads t/0 of `root` record by record and expects exactly `all`.
inline void ExpectReadsBack(const std::string& root, const std::vector<Owned>& all) {
  auto r = ArchiveReader::Open(root, "t", 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ArchiveRecord got;
  size_t i = 0;
  for (;;) {
    auto more = (*r)->Next(&got);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    ASSERT_LT(i, all.size());
    ExpectSame(all[i++], got);
  }
  EXPECT_EQ(i, all.size());
}

// Reads every record of <root>/<topic>/<partition>: the first failure, or
// OK with *count the records read.
inline Status ReadAll(const std::string& root, int64_t* count, const std::string& topic = "t", int32_t partition = 0) {
  auto r = ArchiveReader::Open(root, topic, partition);
  if (!r.ok()) return r.status();
  ArchiveRecord got;
  *count = 0;
  for (;;) {
    auto more = (*r)->Next(&got);
    if (!more.ok()) return more.status();
    if (!*more) return Status::OK();
    ++*count;
  }
}

}  // namespace kappa
