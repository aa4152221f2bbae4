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
# KAPPA_TEST_JOBS sets another count (.ci/run's sanitized stage: one per core,
# its tests are CPU-bound).
jobs="${KAPPA_TEST_JOBS:-$(($(nproc) * 2))}"
ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600 "$@"
