// Byte-level access to archive segment files for the tests that damage
// them: where each block starts (walked from the headers on disk, without
// the archive's own reader, so a test does not trust the code it checks),
// and flipping one bit in place.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/segment_format.h"

namespace kappa::testing {

struct BlockPos {
  int64_t at;
  segment_format::BlockHeader header;
};

// Every block of a segment file, in order.
inline std::vector<BlockPos> Blocks(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<BlockPos> blocks;
  size_t at = 0;
  while (at + segment_format::kHeaderBytes <= bytes.size()) {
    BlockPos b;
    b.at = static_cast<int64_t>(at);
    std::memcpy(&b.header, bytes.data() + at, segment_format::kHeaderBytes);
    blocks.push_back(b);
    at += segment_format::kHeaderBytes + b.header.stored_size;
  }
  return blocks;
}

// The segment files (*.kseg) of a partition directory, in order.
inline std::vector<std::string> SegmentFiles(const std::string& partition_dir) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(partition_dir)) {
    if (e.path().extension() == ".kseg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Flips bit `bit` of the byte at `at`, in place.
inline void FlipBit(const std::string& path, int64_t at, int bit) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  char c;
  ASSERT_EQ(::pread(fd, &c, 1, at), 1);
  c = static_cast<char>(c ^ (1 << bit));
  ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
  ::close(fd);
}

}  // namespace kappa::testing
