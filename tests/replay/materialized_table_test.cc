// The table behind `kappa get` (replay/materialized_table.h), on real
// RocksDB: two lookups at once. Each opens the table's RocksDB; the second
// failed at once with the first's LOCK ("Resource temporarily
// unavailable"), so 7 of 8 parallel `kappa get`s exited 1 in a bug bash.
// It now waits for the holder, within a bound that says what to suspect.
#include "replay/materialized_table.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/test_support.h"

namespace kappa {
namespace {

TEST(MaterializedTableTest, ASecondOpenWaitsForTheFirstAndABoundSaysWhy) {
  testing::ScratchDir dir("materialized_table_lock");
  const std::string table = dir / "table";
  auto first = MaterializedTable::Open(table, "out.v1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();

  auto refused = MaterializedTable::Open(table, "out.v1", /*wait_ms=*/200);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("another `kappa get` has held it"), std::string::npos)
      << refused.status().ToString();

  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first->reset();
  });
  const auto began = std::chrono::steady_clock::now();
  auto second = MaterializedTable::Open(table, "out.v1", /*wait_ms=*/20000);
  release.join();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(250)) << "it did wait";
}

}  // namespace
}  // namespace kappa
