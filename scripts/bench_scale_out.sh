#!/usr/bin/env bash
# Scale-out on this machine (issue 14), one command, on a real Apache Kafka
# of its own (scripts/kafka.sh, in a temporary directory, stopped at exit):
#  1. a replay from offset 0 of N JSON transactions (P partitions) by the
#     spend job with `scale_out:`, split over 1, 2 and 3 instances started
#     together, each with --stop-at-end: the wall time until the last one
#     exits, and its ratio to one instance;
#  2. the restore rate from the changelog: the state the one-instance run
#     left (about N dedup keys: the records are 1 ms of event time apart, so
#     the 1 h dedup TTL keeps every txn id) is restored by a fresh instance
#     with an empty state directory, which reads every changelog partition;
#     its log gives entries, records, bytes and milliseconds per partition.
# Writes bench/results/scale_out.md (or only prints with --no-results).
#   scripts/bench_scale_out.sh [--records N (1000000)] [--partitions P (6)] [--no-results]
# Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000000 partitions=6 results=1
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --no-results) results=0; shift ;;
    *) echo "usage: scripts/bench_scale_out.sh [--records N] [--partitions P] [--no-results]" >&2; exit 2 ;;
  esac
done
dir=$(scripts/setup.sh Release | tail -n 1)
kappa="$dir/kappa"
source scripts/bench_kafka.sh scaleout-bench
scripts/kafka.sh create-topic --dir "$tmp/kafka" --topic transactions --partitions "$partitions"
echo "== kappa gen --format json: $records records into $partitions partitions" >&2
"$kappa" gen --format json -b "$bootstrap" -t transactions -n "$records" --users 20000 --zipf 0.8 --rate 1000 \
  --seed 1 >&2

spec() {  # job -> a spend spec with scale_out, job name $1
  sed -e "s/^job: spend/job: $1/" -e "s/spend-hourly/$1-hourly/" -e "s/spend\.dlq/$1.dlq/" \
    -e "s/spend\.late/$1.late/" scripts/jobs/spend_v1.yaml >"$tmp/$1.yaml"
  echo "scale_out: {session_timeout: 6s}" >>"$tmp/$1.yaml"
  echo "$tmp/$1.yaml"
}
now() { date +%s.%N; }
rows=()
base=""
for k in 1 2 3; do
  job=so$k
  s=$(spec $job)
  echo "== $k instance(s), replay from offset 0" >&2
  start=$(now)
  pids=()
  for ((i = 1; i <= k; ++i)); do
    "$kappa" run "$s" -b "$bootstrap" --scale-out --instance "i$i" --state-dir "$tmp/$job-i$i" --stop-at-end \
      --status-interval-ms 0 >"$tmp/$job-i$i.out" 2>"$tmp/$job-i$i.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { echo "an instance failed:" >&2; tail -n 20 "$tmp"/$job-i*.log >&2; exit 1; }; done
  wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  [[ -z $base ]] && base=$wall
  moved=$(cat "$tmp"/$job-i*.log | grep -c "restored from the changelog" || true)
  rows+=("| $k | $wall | $(awk -v n="$records" -v w="$wall" 'BEGIN { printf "%.0f", n / w }') | $(awk -v b="$base" -v w="$wall" 'BEGIN { printf "%.2f", b / w }') | $moved |")
  echo "   $wall s" >&2
done

echo "== restore: a fresh instance takes every partition of so1 from its changelog" >&2
s=$(spec so1)
start=$(now)
"$kappa" run "$s" -b "$bootstrap" --scale-out --instance fresh --state-dir "$tmp/so1-fresh" --stop-at-end \
  --status-interval-ms 0 >/dev/null 2>"$tmp/restore.log"
restore_wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
# "restored from the changelog (E entries from R records, B bytes in T ms, ...)"
restore=$(sed -n 's/.*restored from the changelog (\([0-9]*\) entries from \([0-9]*\) records, \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 \2 \3 \4/p' \
  "$tmp/restore.log" | awk '{ e += $1; r += $2; b += $3; t += $4 } END {
    printf "%d entries from %d records, %.1f MB, read in %.2f s (partitions one after the other): %.0f records/s, %.1f MB/s", e, r, b / 1e6, t / 1000, r / (t / 1000), b / 1e6 / (t / 1000) }')
echo "   $restore; the instance took $restore_wall s from start to exit" >&2

table=$(printf '%s\n' "${rows[@]}")
echo "$table"
((results)) || exit 0
cat >bench/results/scale_out.md <<MD
# Scale-out on one 2-core machine (issue 14)

\`scripts/bench_scale_out.sh --records $records --partitions $partitions\`, $(date -u +%Y-%m-%d), Apache Kafka 4.1.1
(one broker, KRaft) on the same machine. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).

## A replay from offset 0 split over instances

$records JSON transactions in $partitions partitions, the spend job (scripts/jobs/spend_v1.yaml) with
\`scale_out:\`; k instances started together, each with \`--stop-at-end\` (an instance stops once the
partitions it holds are at the end; its partitions then move to the others, which restore them from
the changelog and stop too). Wall: from the start of the first instance to the exit of the last,
group joins, rebalances and the changelog writes included.

| instances | wall s | events/s | speed-up over 1 | partitions restored from the changelog |
|---|---|---|---|---|
$table

All instances share the same 2 cores with the broker: more instances cannot be faster here than the
cores allow, so this measures the cost of coordination, not the scaling a cluster would see.

## Restore from the changelog

A fresh instance (empty state directory) restores the state the one-instance run left: $restore.
From its start to its exit (group join, every restore, nothing left to read): $restore_wall s.
MD
echo "wrote bench/results/scale_out.md" >&2
