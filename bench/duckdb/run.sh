#!/usr/bin/env bash
# run.sh: installs the DuckDB baseline's dependencies if needed (npm ci, once)
# and runs query.mjs with the given arguments, e.g.
#   bench/duckdb/run.sh --csv /tmp/kappa-20m.csv --threads 1,2 --json /tmp/duckdb.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v node >/dev/null 2>&1; then
  echo "bench/duckdb/run.sh: node not found: install Node.js 20 or newer (with npm)" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "bench/duckdb/run.sh: npm not found: install npm (it comes with Node.js)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "bench/duckdb/run.sh: node $(node --version) is too old: need Node.js 20 or newer" >&2
  exit 1
fi

if [ ! -d "$here/node_modules/@duckdb/node-api" ]; then
  echo "bench/duckdb/run.sh: installing @duckdb/node-api (npm ci) ..." >&2
  if ! (cd "$here" && npm ci --silent --no-audit --no-fund >&2); then
    echo "bench/duckdb/run.sh: npm ci failed in $here" >&2
    exit 1
  fi
fi

exec node "$here/query.mjs" "$@"
