// TableFileCheck: the table files (*.sst) RocksDB dropped at open without a
// word. A MANIFEST cut short loses its last edits, so the files they listed:
// RocksDB opens from what is left, deletes those files as obsolete, and the
// store lacks their entries while what the WAL holds (a checkpoint's epoch,
// a table's read offsets) looks whole. Found in a bug bash of `kappa get`'s
// table; the job's state has the same fault. Used by StateBackend::Open
// and MaterializedTable::Open.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace rocksdb {
class DB;
}

namespace kappa {

class TableFileCheck {
 public:
  // Lists `dir`'s table and WAL files: construct before rocksdb::DB::Open.
  // With keep_aside the table files are hard-linked into <dir>.open-check
  // first, so that what RocksDB deletes is kept when Dropped finds a loss
  // (best effort: a link that fails loses the evidence, not the check).
  TableFileCheck(const std::string& dir, bool keep_aside);
  ~TableFileCheck();
  TableFileCheck(const TableFileCheck&) = delete;
  TableFileCheck& operator=(const TableFileCheck&) = delete;

  // After the open: "" or which files are gone and why that is a loss. Not
  // every file the live set lacks after a crash (kill -9) is lost:
  //  - a flush cut short before the MANIFEST listed its file: its WAL is
  //    deleted only after that, so a WAL older than the file remains, and
  //    RocksDB replays it;
  //  - a compaction's inputs, listed as removed but not yet deleted: its
  //    output is live and newer than they are.
  // The links are kept as <dir>.dropped-tables-<ms> and named.
  std::string Dropped(rocksdb::DB* db);

 private:
  std::string dir_;
  std::string aside_;  // "" without keep_aside
  std::map<int64_t, std::string> tables_;
  int64_t min_wal_ = -1;
  bool kept_ = false;
};

}  // namespace kappa
