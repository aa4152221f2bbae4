#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite through CTest.
#   scripts/test.sh            Release build with the crash tests' kill points (build-test/), every test
#   scripts/test.sh Sanitize   the same under AddressSanitizer + UBSan
#   scripts/test.sh TYPE ARGS  passes ARGS to ctest (e.g. -LE realkafka: without the real-Kafka tests)
# The real-Kafka tests (label realkafka) start Apache Kafka with Java; the
# first run fetches its jars from Maven Central (scripts/kafka.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
type="${1:-Test}"
shift || true
dir=$(scripts/setup.sh "$type" | tail -n 1)
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# Two tests per core: most end-to-end stories spend their time waiting (for a
# consumer group's session timeout, a broker's restart, a rate cap, a JVM),
# so on 2 cores -j4 took the Release suite from ~640 s to ~380 s.
# KAPPA_TEST_JOBS sets another count (.ci/run's sanitized stage: three per
# two cores).
jobs="${KAPPA_TEST_JOBS:-$(($(nproc) * 2))}"
# On a fresh build dir ctest knows no test's duration and starts them in
# declaration order, so the longest stories (the real-Kafka failovers, one
# at a time under their resource lock) began last and ran alone at the end.
# tests/ctest_costs.txt holds the durations of one whole run; seeded as
# ctest's cost data, the longest start first. Stale or missing names only
# lose their place in the order. Refresh it from a full run's
# Testing/Temporary/CTestCostData.txt when the suite changes much.
costs="$dir/Testing/Temporary/CTestCostData.txt"
if [ ! -s "$costs" ]; then
  mkdir -p "$(dirname "$costs")"
  cp tests/ctest_costs.txt "$costs"
fi
ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600 "$@"
