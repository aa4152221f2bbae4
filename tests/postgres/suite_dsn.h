// The DSN of the suite's PostgreSQL (CTest fixture `postgres`, written by
// scripts/postgres.sh into KAPPA_POSTGRES_DIR/dsn), "" without one.
#pragma once

#include <fstream>
#include <string>

namespace kappa::testing {

inline std::string SuiteDsn() {
  // Appended, not concatenated from a temporary: GCC 12 warned of an
  // array bound (-Warray-bounds) in the inlined operator+.
  std::string path = KAPPA_POSTGRES_DIR;
  path += "/dsn";
  std::ifstream in(path);
  std::string dsn;
  std::getline(in, dsn);
  return dsn;
}

}  // namespace kappa::testing
