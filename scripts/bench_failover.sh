#!/usr/bin/env bash
# Failover with and without a standby (issue 14), one command, on a real
# Apache Kafka of its own (scripts/kafka.sh, in a temporary directory,
# stopped at exit). N JSON transactions (P partitions) whose txn ids all stay
# in the dedup state (event time spans less than its 1 h TTL: N keys of
# state). For standbys 0 and 1: two instances (`scale_out:`) run the spend
# job live until they have read everything; then one is killed with SIGKILL
# and the survivor takes its partitions. Measured from the survivor's
# timestamped log: from the kill to its "took partition(s)" (the group
# noticing: the session timeout), and from then to its first "reading from
# offset" of a moved partition (the restore: a full changelog read, or the
# local copy), per moved partition with how it was restored.
# Writes bench/results/failover.md (or only prints with --no-results).
#   scripts/bench_failover.sh [--records N (1000000)] [--partitions P (4)] [--no-results]
# Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000000 partitions=4 results=1
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --no-results) results=0; shift ;;
    *) echo "usage: scripts/bench_failover.sh [--records N] [--partitions P] [--no-results]" >&2; exit 2 ;;
  esac
done
dir=$(scripts/setup.sh Release | tail -n 1)
kappa="$dir/kappa"
source scripts/bench_kafka.sh failover-bench
scripts/kafka.sh create-topic --dir "$tmp/kafka" --topic transactions --partitions "$partitions"
# 1,000 events/s of event time: 1 M records span 17 minutes, inside the
# dedup TTL, so every txn id is a key of state.
echo "== kappa gen --format json: $records records into $partitions partitions" >&2
"$kappa" gen --format json -b "$bootstrap" -t transactions -n "$records" --users 20000 --zipf 0.8 --rate 1000 \
  --seed 1 >&2

now() { date +%s.%N; }
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done; }
in_total() {  # records_in of both instances' metrics files
  local n=0 v
  for f in "$@"; do
    v=$(sed -n 's/^  "records_in": \([0-9]*\).*/\1/p' "$f" 2>/dev/null | head -n 1)
    n=$((n + ${v:-0}))
  done
  echo "$n"
}
rows=()
for standbys in 0 1; do
  job=fo$standbys
  sed -e "s/^job: spend/job: $job/" -e "s/spend-hourly/$job-hourly/" -e "s/spend\.dlq/$job.dlq/" \
    -e "s/spend\.late/$job.late/" scripts/jobs/spend_v1.yaml >"$tmp/$job.yaml"
  echo "scale_out: {session_timeout: 6s, standbys: $standbys}" >>"$tmp/$job.yaml"
  echo "== standbys: $standbys; two instances read everything" >&2
  pids=()
  for i in a b; do
    "$kappa" run "$tmp/$job.yaml" -b "$bootstrap" --scale-out --instance "$i" --state-dir "$tmp/$job-$i" \
      --status-interval-ms 0 > /dev/null 2> >(stamp >"$tmp/$job-$i.log") &
    pids+=($!)
  done
  deadline=$((SECONDS + 300))
  until (($(in_total "$tmp/$job-a/metrics.json" "$tmp/$job-b/metrics.json") >= records)); do
    ((SECONDS < deadline)) || { echo "bench_failover: the instances did not read everything:" >&2; tail "$tmp/$job"-*.log >&2; exit 1; }
    sleep 1
  done
  # Standby copies catch up with the last checkpoints.
  sleep 8
  kill_at=$(now)
  kill -9 "${pids[1]}"
  wait "${pids[1]}" 2>/dev/null || true
  echo "   killed b; waiting for a to take its partitions" >&2
  deadline=$((SECONDS + 120))
  until grep -q "reading from offset" <(awk -v t="$kill_at" '$1 > t' "$tmp/$job-a.log"); do
    ((SECONDS < deadline)) || { echo "bench_failover: a never took b's partitions:" >&2; tail -n 20 "$tmp/$job-a.log" >&2; exit 1; }
    sleep 0.5
  done
  sleep 2
  kill "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  after=$(awk -v t="$kill_at" '$1 > t' "$tmp/$job-a.log")
  # The rebalance's first sign in the log: a copy moving here (standby) or
  # the changelog read starting; "took partition(s)" comes after the restores.
  first=$(echo "$after" | grep -m1 -E "moves here|restoring its state|reading from offset" | cut -d' ' -f1)
  last=$(echo "$after" | grep "reading from offset" | tail -n 1 | cut -d' ' -f1)
  how=$(echo "$after" | grep "reading from offset" | sed -n 's/.*\]: \(restored from [a-z ]*\).*/\1/p' | sort | uniq -c |
    awk '{ c = $1; $1 = ""; printf "%s%d%s", (n++ ? ", " : ""), c, $0 }')
  ms=$(echo "$after" | sed -n 's/.*restored from the changelog ([0-9]* entries from \([0-9]*\) records, \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 \2 \3/p' |
    awk '{ r += $1; b += $2; t += $3 } END { if (NR) printf "%d records, %.1f MB in %.2f s", r, b / 1e6, t / 1000; else printf "-" }')
  row=$(awk -v s="$standbys" -v k="$kill_at" -v f="$first" -v l="$last" -v h="$how" -v m="$ms" 'BEGIN {
    printf "| %s | %.2f | %.2f | %.2f | %s | %s |", s, l - k, f - k, l - f, h, m }')
  rows+=("$row")
  echo "   $row" >&2
done
table=$(printf '%s\n' "${rows[@]}")
echo "$table"
((results)) || exit 0
cat >bench/results/failover.md <<MD
# Failover with and without a standby (issue 14)

\`scripts/bench_failover.sh --records $records --partitions $partitions\`, $(date -u +%Y-%m-%d), Apache Kafka 4.1.1
(one broker, KRaft) on the same machine ($(nproc) cores). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).

$records JSON transactions in $partitions partitions, 1,000 events/s of event time, so every txn id stays in
the dedup state ($records keys over the partitions). The spend job (scripts/jobs/spend_v1.yaml) with
\`scale_out: {session_timeout: 6s, standbys: S}\`; two instances read everything live, then one is killed
with SIGKILL. Times from the survivor's log, stamped as each line arrived:

| standbys | kill to the moved partitions reading again, s | of which: kill to the restore's start | the restore | how the moved partitions were restored | changelog read |
|---|---|---|---|---|---|
$table

- kill to reading again: until the survivor logs "reading from offset" for the last moved partition,
  i.e. the time to the first record after the failover.
- kill to the restore's start: the group noticing the dead member (the 6 s session timeout, plus the
  rebalance), up to the first log line of the restore (a copy moving here, or the changelog read).
- the restore: inside the rebalance, one partition after another: with no standby a read of each
  moved partition's whole changelog; with a standby, the copy's catch-up (at most 5 s) and a local
  restore.
MD
echo "wrote bench/results/failover.md" >&2
