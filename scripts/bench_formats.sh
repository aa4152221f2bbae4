#!/usr/bin/env bash
# The format benchmark of issue 12, one command: builds Release, starts a real
# Schema Registry of its own (scripts/schema_registry.sh: Apicurio, in-memory,
# built once into ~/.cache/kappa, ~3 minutes the first time) for the Avro
# case, runs bench/formats_bench.cc (the user-spend query over the same events
# as JSON, Avro and user FlatBuffers against the built-in Transaction path,
# from the archive, 1 worker thread, outputs checked equal before anything is
# reported) and writes bench/results/formats.{md,json}. Stops the registry on
# exit.
#   scripts/bench_formats.sh [--records N (20000000)] [--repeat R (3)] [--no-registry]
#                            [--load-note TEXT] [other formats_bench options]
# --no-registry skips the Avro case (no Java needed). The archives (20 M
# events in 4 formats: 11 GB encoded, 3.4 GB stored with LZ4) are kept under
# /tmp/kappa-bench-formats and reused by the next run with the same
# --records (delete that directory to free the space). At 20 M on 2 cores:
# about 1 minute to build the archives, 2-3 minutes a round of the 5 cases.
# Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
registry=1
args=()
while (($#)); do
  case "$1" in
    --no-registry) registry=0; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
dir=$(scripts/setup.sh Release | tail -n 1)
ninja -C "$dir" formats_bench >&2

tmp=$(mktemp -d /tmp/kappa-formats-bench.XXXXXX)
cleanup() {
  if ((registry)); then scripts/schema_registry.sh stop --dir "$tmp/registry" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
if ((registry)); then
  echo "== starting a Schema Registry in $tmp/registry" >&2
  url=$(scripts/schema_registry.sh start --dir "$tmp/registry" | tail -n 1)
  args+=(--schema-registry "$url")
fi

echo "== formats_bench ${args[*]}" >&2
"$dir/bench/formats_bench" --results-dir bench/results "${args[@]}"
