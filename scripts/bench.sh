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
#   scripts/bench.sh --peers [--records N] [--partitions P] [--eos]
#                     [--events N] [--kafka-records N] [--no-results]
# runs instead the benchmarks on a real Apache Kafka (each script starts a
# broker of its own and stops it; Java 17, Maven, kcat, gnuplot needed):
#   1. scripts/bench_peers.sh: kappa from Kafka and from its archive, Kafka
#      Streams and Flink over the same topic, outputs checked equal, then
#      bench/results/peers.md and peers.png (--records N, default 1 M;
#      --partitions P; --eos adds the exactly-once runs; ~3 minutes)
#   2. scripts/bench_nexmark_peers.sh: Nexmark q5 and q7 (global) in kappa
#      and in Flink SQL on the same events, outputs checked, then
#      bench/results/nexmark-peers.md (--events N, default 1 M; ~2 minutes)
#   3. scripts/bench_realkafka.sh: the bare consume loop (d) against the
#      stateful job (e) and its exactly-once run over one topic, then
#      bench/results/realkafka.md (--kafka-records N, default 10 M; ~3
#      minutes)
# --no-results prints the tables instead of writing bench/results.
#   scripts/bench.sh --all [--no-duckdb] [--eos]
# runs both: the benchmarks above without --peers, then those with it, each
# with its defaults (~25 minutes on 2 quiet cores): every table issue 16
# asks for, from one command.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  echo "usage: scripts/bench.sh [replay_throughput options]" >&2
  echo "       scripts/bench.sh --peers [--records N] [--partitions P] [--eos] [--events N] [--kafka-records N] [--no-results]" >&2
  echo "       scripts/bench.sh --all [--no-duckdb] [--eos]" >&2
}
mode=local
case "${1:-}" in
  --peers) mode=peers; shift ;;
  --all) mode=all; shift ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
esac
if [[ $mode != local ]]; then
  peers=() nexmark=() realkafka=() local_args=()
  while (($#)); do
    case "$1" in
      --records) [[ $mode == peers ]] || { usage; exit 2; }; peers+=(--records "$2"); shift 2 ;;
      --partitions) [[ $mode == peers ]] || { usage; exit 2; }
        peers+=(--partitions "$2"); nexmark+=(--partitions "$2"); realkafka+=(--partitions "$2"); shift 2 ;;
      --events) [[ $mode == peers ]] || { usage; exit 2; }; nexmark+=(--events "$2"); shift 2 ;;
      --kafka-records) [[ $mode == peers ]] || { usage; exit 2; }; realkafka+=(--records "$2"); shift 2 ;;
      --eos) peers+=(--eos); shift ;;
      --no-results) [[ $mode == peers ]] || { usage; exit 2; }
        peers+=(--no-results); nexmark+=(--no-results); realkafka+=(--no-results); shift ;;
      --no-duckdb) [[ $mode == all ]] || { usage; exit 2; }; local_args+=(--no-duckdb); shift ;;
      *) usage; exit 2 ;;
    esac
  done
  if [[ $mode == all ]]; then
    "$0" "${local_args[@]}"
  fi
  echo "== on a real Kafka, 1 of 3: beside Kafka Streams and Flink (scripts/bench_peers.sh)" >&2
  scripts/bench_peers.sh "${peers[@]}"
  echo "== on a real Kafka, 2 of 3: Nexmark q5 and q7 beside Flink SQL (scripts/bench_nexmark_peers.sh)" >&2
  scripts/bench_nexmark_peers.sh "${nexmark[@]}"
  echo "== on a real Kafka, 3 of 3: the Kafka path, (e)/(d) (scripts/bench_realkafka.sh)" >&2
  scripts/bench_realkafka.sh "${realkafka[@]}"
  echo "bench: results in bench/results/" >&2
  exit 0
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
