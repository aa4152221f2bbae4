#!/usr/bin/env bash
# Installs the Debian packages kappa builds with (only those missing), then
# configures and builds it. Idempotent: quick when everything is in place.
#   scripts/setup.sh [Release|Test|Debug|Sanitize]   (default Release; build dir build/ or build-<type>/)
# Release is what the quickstart and the benchmark run; Test is Release with
# the crash tests' kill points compiled in (KAPPA_TEST_HOOKS); Debug and
# Sanitize have them too.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config git
  librdkafka-dev librocksdb-dev libflatbuffers-dev flatbuffers-compiler
  libboost-program-options-dev libbenchmark-dev libgtest-dev libgmock-dev libyaml-cpp-dev libabsl-dev
  kcat liblz4-dev libxxhash-dev libavro-dev libcpp-httplib-dev curl libsimdjson-dev
  libjemalloc-dev  # the programs' allocator (CMakeLists.txt says why)
  postgresql-15 libpq-dev
  python3-prometheus-client  # the /metrics test parses the exposition with the reference parser
  chromium)  # the status page test: Debian's chromium, headless, driven by playwright-core from npm
# The real-broker tests (scripts/kafka.sh) run Apache Kafka: a JRE and Maven,
# from Debian only where the commands are missing.
command -v java >/dev/null 2>&1 || PACKAGES+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || PACKAGES+=(maven)
# The status page test's driver runs on Node (Debian's, where there is none).
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
# The peer benchmark's chart (scripts/bench_peers.sh, bench/results/peers.png).
command -v gnuplot >/dev/null 2>&1 || PACKAGES+=(gnuplot-nox)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi

type="${1:-Release}"
case "$type" in
  Release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release -DKAPPA_TEST_HOOKS=OFF) ;;
  Test) dir=build-test; flags=(-DCMAKE_BUILD_TYPE=Release -DKAPPA_TEST_HOOKS=ON -DKAPPA_BUILD_BENCH=OFF) ;;
  Debug) dir=build-debug; flags=(-DCMAKE_BUILD_TYPE=Debug -DKAPPA_TEST_HOOKS=ON) ;;
  Sanitize) dir=build-sanitize; flags=(-DCMAKE_BUILD_TYPE=Debug -DKAPPA_TEST_HOOKS=ON -DKAPPA_SANITIZE=ON -DKAPPA_BUILD_BENCH=OFF -DKAPPA_BUILD_REALKAFKA_TESTS=OFF) ;;
  *) echo "setup: unknown build type '$type' (Release, Test, Debug or Sanitize)" >&2; exit 2 ;;
esac
# Where ccache is installed (developer machines), compiles are cached across
# build dirs and worktrees; CI has none and builds plainly.
if command -v ccache >/dev/null 2>&1; then flags+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
# Configure every time: cheap, and the options follow the build type.
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
echo "$dir"
