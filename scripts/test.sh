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
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" --timeout 600 "$@"
