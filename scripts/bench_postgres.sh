#!/usr/bin/env bash
# The PostgreSQL sink benchmark (issue 13), one command: builds Release,
# starts the embedded broker (`kappa broker`) and a PostgreSQL 15 of its own
# (scripts/postgres.sh) in a temporary directory, fills a topic with
# `kappa gen`, and in ONE run measures (bench/postgres_bench.cc) the
# user-spend job and a rolling feature job into PostgreSQL and into Kafka,
# and the rolling job's rows inserted by a single-row INSERT loop
# (autocommit, and in one transaction); writes bench/results/postgres.{md,json}.
# Stops both servers on exit.
#   scripts/bench_postgres.sh [--records N (2000000)] [--partitions P (96)]
#                             [--insert-rows N (5000)] [--tx-rows N (200000)]
# About 3 minutes on 2 cores (~1 GB under /tmp while it runs). Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=2000000 partitions=96 insert_rows=5000 tx_rows=200000
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --insert-rows) insert_rows="$2"; shift 2 ;;
    --tx-rows) tx_rows="$2"; shift 2 ;;
    *) echo "usage: scripts/bench_postgres.sh [--records N] [--partitions P] [--insert-rows N] [--tx-rows N]" >&2
       exit 2 ;;
  esac
done
dir=$(scripts/setup.sh Release | tail -n 1)
tmp=$(mktemp -d /tmp/kappa-postgres-bench.XXXXXX)
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  scripts/postgres.sh stop --dir "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== starting PostgreSQL in $tmp/pg" >&2
dsn=$(scripts/postgres.sh start --dir "$tmp/pg" --owner $$ | tail -n 1)

echo "== starting the embedded broker" >&2
# The embedded broker keeps at most 5 MiB per partition in memory: the input
# and the rolling job's JSON rows (case c) are spread over enough partitions
# to keep every record. Output topics exist beforehand, so auto-creation does
# not land in a first checkpoint.
"$dir/kappa" broker --topic "bench-tx:$partitions" --topic "pgbench-rolling.v1:$((partitions * 4))" \
  --topic pgbench-spend.v1:8 --topic bench.dlq:4 --topic bench.late:4 \
  --address-file "$tmp/address" >/dev/null 2>"$tmp/broker.log" &
broker_pid=$!
for _ in $(seq 600); do [ -s "$tmp/address" ] && break; sleep 0.1; done
[ -s "$tmp/address" ] || { echo "bench_postgres: the broker did not start (see $tmp/broker.log)" >&2; exit 1; }
bootstrap=$(cat "$tmp/address")

echo "== kappa gen: $records records" >&2
start=$(date +%s.%N)
# 10000 users, ~5.5 h of event time (100/s), 2% duplicates, 5% out of order. Zipf 0.5, not
# realkafka's 1.0: records are keyed by user, and a user with 10% of the records would
# overflow the embedded broker's 5 MiB partition (its oldest records silently dropped).
"$dir/kappa" gen -b "$bootstrap" -t bench-tx -n "$records" --users 10000 --zipf 0.5 --rate 100 --seed 42 \
  --duplicate-fraction 0.02 --malformed-fraction 0.001 --late-fraction 0.05 --max-delay-ms 300000 >&2
gen_seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')

echo "== postgres_bench" >&2
"$dir/bench/postgres_bench" --bootstrap "$bootstrap" --topic bench-tx --partitions "$partitions" --dsn "$dsn" \
  --gen-records "$records" --gen-seconds "$gen_seconds" --insert-rows "$insert_rows" --tx-rows "$tx_rows" \
  --results-dir bench/results
