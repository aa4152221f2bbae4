#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite through CTest.
#   scripts/test.sh            Release build with the crash tests' kill points (build-test/), every test
#   scripts/test.sh Sanitize   the same under AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(scripts/setup.sh "${1:-Test}" | tail -n 1)
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" --timeout 600
