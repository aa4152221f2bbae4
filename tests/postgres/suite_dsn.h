// The DSN of the suite's PostgreSQL (CTest fixture `postgres`, written by
// scripts/postgres.sh into KAPPA_POSTGRES_DIR/dsn), "" without one.
#pragma once

#include <fstream>
#include <string>

namespace kappa::testing {

inline std::string SuiteDsn() {
  std::ifstream in(std::string(KAPPA_POSTGRES_DIR) + "/dsn");
  std::string dsn;
  std::getline(in, dsn);
  return dsn;
}

}  // namespace kappa::testing
