#include "state/table_file_check.h"

#include <rocksdb/db.h>
#include <rocksdb/metadata.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <vector>

#include "base/clock.h"

namespace kappa {
namespace {

// The number of a RocksDB file named <digits><suffix> ("000015.sst"), or -1.
int64_t FileNumber(const std::string& name, const std::string& suffix) {
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return -1;
  const std::string digits = name.substr(0, name.size() - suffix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

TableFileCheck::TableFileCheck(const std::string& dir, bool keep_aside) : dir_(dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (const int64_t n = FileNumber(name, ".sst"); n >= 0) tables_[n] = name;
    const int64_t w = FileNumber(name, ".log");
    if (w >= 0 && (min_wal_ < 0 || w < min_wal_)) min_wal_ = w;
  }
  if (!keep_aside) return;
  aside_ = dir + ".open-check";
  std::filesystem::remove_all(aside_, ec);  // a crash's leftover
  if (tables_.empty()) return;
  std::filesystem::create_directories(aside_, ec);
  for (const auto& [n, name] : tables_) std::filesystem::create_hard_link(dir + "/" + name, aside_ + "/" + name, ec);
}

TableFileCheck::~TableFileCheck() {
  std::error_code ec;
  if (!kept_ && !aside_.empty()) std::filesystem::remove_all(aside_, ec);
}

std::string TableFileCheck::Dropped(rocksdb::DB* db) {
  if (tables_.empty()) return "";
  std::vector<rocksdb::LiveFileMetaData> live;
  db->GetLiveFilesMetaData(&live);
  std::set<int64_t> listed;
  for (const auto& f : live) listed.insert(FileNumber(std::filesystem::path(f.name).filename().string(), ".sst"));
  int64_t newest_live = -1;  // of the files that were there before the open
  for (const auto& [n, name] : tables_) {
    if (listed.count(n)) newest_live = std::max(newest_live, n);
  }
  std::string lost;
  int count = 0;
  for (const auto& [n, name] : tables_) {
    if (listed.count(n) || n < newest_live || (min_wal_ >= 0 && min_wal_ < n)) continue;
    if (++count <= 3) lost += (lost.empty() ? "" : ", ") + name;
  }
  if (count == 0) return "";
  std::error_code ec;
  std::string kept;
  if (!aside_.empty() && std::filesystem::exists(aside_, ec)) {
    kept_ = true;
    kept = dir_ + ".dropped-tables-" + std::to_string(WallClockMs());
    std::filesystem::rename(aside_, kept, ec);
    if (ec) kept = aside_;
  }
  return "RocksDB opened it without " + std::to_string(count) + " table file(s) (" + lost +
         (count > 3 ? ", ..." : "") +
         ") whose entries no write-ahead log holds: the MANIFEST no longer lists them (cut short, or an older "
         "copy), so it would miss their entries" +
         (kept.empty() ? std::string() : "; RocksDB deleted them from the directory, copies are kept in " + kept);
}

}  // namespace kappa
