#!/usr/bin/env bash
# The benchmark, one command: builds Release, then runs
#   1. kappa_micro_bench    (decode, each operator, state get/put, checkpoint
#                            10k/100k/1M dirty keys, archive write/read)
#   2. replay_throughput    (20 M transactions archived over 16 partitions:
#                            archive read, stateless and stateful replay at 1
#                            and 2 threads, naive RocksDB job, DuckDB via npm,
#                            bare consume vs the job on the embedded broker)
#   3. kappa_nexmark_bench  (q0 q1 q2 q5 q7 per core from LZ4 and uncompressed
#                            archives and from memory, when built)
# and writes bench/results/*.md and *.json with this machine's description.
#   scripts/bench.sh [replay_throughput options, e.g. --records 2000000]
# Needs ~4 GB free under /tmp (archive + CSV, reused across runs) and Node.js
# 20+ with npm for the DuckDB baseline (--no-duckdb skips it). Takes about
# 15 minutes on 2 cores. Never part of the tests.
#
#   scripts/bench.sh --peers [--records N] [--partitions P] [--eos] [--no-results]
# runs instead the benchmark beside Kafka Streams and Apache Flink,
# scripts/bench_peers.sh, with every other argument passed to it: on a real
# Kafka of its own, kappa from Kafka and from its archive, Kafka Streams and
# Flink over the same topic, outputs checked equal, then
# bench/results/peers.md and peers.png (needs Java 17, Maven, kcat, gnuplot;
# ~3 minutes for 1 M records on 2 quiet cores).
set -euo pipefail
cd "$(dirname "$0")/.."
args=() peers=0
for a in "$@"; do
  if [[ $a == --peers ]]; then peers=1; else args+=("$a"); fi
done
if ((peers)); then
  exec scripts/bench_peers.sh "${args[@]}"
fi
dir=$(scripts/setup.sh Release | tail -n 1)
mkdir -p bench/results

echo "== micro benchmarks" >&2
"$dir/bench/kappa_micro_bench" --benchmark_min_time=0.3 \
  --benchmark_out=bench/results/micro.json --benchmark_out_format=json | tee bench/results/micro.txt

echo "== replay_throughput" >&2
"$dir/bench/replay_throughput" "$@"

if [ -x "$dir/bench/kappa_nexmark_bench" ]; then
  echo "== nexmark" >&2
  "$dir/bench/kappa_nexmark_bench"
fi
echo "bench: results in bench/results/" >&2
