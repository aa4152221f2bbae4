#!/usr/bin/env bash
# Installs the Debian packages kappa builds with (only those missing), then
# configures and builds it. Idempotent: quick when everything is in place.
#   scripts/setup.sh [Release|Debug|Sanitize]   (default Release; build dir build/ or build-<type>/)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config git
  librdkafka-dev librocksdb-dev libflatbuffers-dev flatbuffers-compiler
  libboost-program-options-dev libbenchmark-dev libgtest-dev libgmock-dev libyaml-cpp-dev libabsl-dev
  kcat liblz4-dev libxxhash-dev)

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
  Release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  Debug) dir=build-debug; flags=(-DCMAKE_BUILD_TYPE=Debug) ;;
  Sanitize) dir=build-sanitize; flags=(-DCMAKE_BUILD_TYPE=Debug -DKAPPA_SANITIZE=ON -DKAPPA_BUILD_BENCH=OFF) ;;
  *) echo "setup: unknown build type '$type' (Release, Debug or Sanitize)" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
fi
cmake --build "$dir" -j"$(nproc)"
echo "$dir"
