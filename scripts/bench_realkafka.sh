#!/usr/bin/env bash
# kappa on a real Apache Kafka, one command: builds Release, starts a broker
# of its own (scripts/kafka.sh) in a temporary directory, and in ONE run
# measures the produce rate of `kappa gen` to it, then over that topic the
# bare librdkafka consume loop (d), the stateful job at_least_once (e) and
# exactly_once (eos) (bench/realkafka_bench.cc); writes
# bench/results/realkafka.{md,json}. Stops the broker on exit.
#   scripts/bench_realkafka.sh [--records N (10000000)] [--partitions P (4)] [--no-results]
# --no-results prints the table instead of writing bench/results.
# About 2.5 minutes on 2 cores (10 M records, ~1.2 GB under /tmp while it runs). Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=10000000 partitions=4 results=1
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --no-results) results=0; shift ;;
    *) echo "usage: scripts/bench_realkafka.sh [--records N] [--partitions P] [--no-results]" >&2; exit 2 ;;
  esac
done
dir=$(scripts/setup.sh Release | tail -n 1)
source scripts/bench_kafka.sh realkafka-bench
kafka_version=$(sed -n 's/^KAFKA_VERSION="${KAPPA_KAFKA_VERSION:-\(.*\)}"$/\1/p' scripts/kafka.sh)
kafka_version=${KAPPA_KAFKA_VERSION:-$kafka_version}
scripts/kafka.sh create-topic --dir "$tmp/kafka" --topic bench-tx --partitions "$partitions"

echo "== kappa gen: $records records" >&2
start=$(date +%s.%N)
# The replay_throughput workload: 10000 users, 2% duplicates, 5% out of order.
"$dir/kappa" gen -b "$bootstrap" -t bench-tx -n "$records" --users 10000 --zipf 1.0 --rate 100 --seed 42 \
  --duplicate-fraction 0.02 --malformed-fraction 0.001 --late-fraction 0.05 --max-delay-ms 300000 >&2
gen_seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
# The broker's 1+ GB of fresh log pages would reach the disk in the
# background during the first rows, beside the jobs' synced checkpoints
# (a `dd` beside a job stalls its checkpoints up to 1.6 s). Written out
# first, so that every row starts on the same quiet disk.
echo "== sync (the generated topic's pages to disk)" >&2
sync

echo "== realkafka_bench" >&2
results_dir=bench/results
((results)) || { results_dir=$tmp/results; mkdir -p "$results_dir"; }
"$dir/bench/realkafka_bench" --bootstrap "$bootstrap" --topic bench-tx --partitions "$partitions" \
  --gen-records "$records" --gen-seconds "$gen_seconds" --kafka-version "$kafka_version" --results-dir "$results_dir"
((results)) || cat "$results_dir/realkafka.md"
