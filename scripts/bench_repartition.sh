#!/usr/bin/env bash
# The cost of a repartition hop (issue 14), one command, on a real Apache
# Kafka of its own (scripts/kafka.sh, in a temporary directory, stopped at
# exit). Over the same N JSON transactions (P partitions, keyed by user), one
# process each, from offset 0 to the end (--stop-at-end --final-watermark):
#   direct   dedup, drop cancelled, hourly windows per user (the Kafka key:
#            no shuffle needed)
#   hop      the same with `repartition: {key: user_id}` before the window:
#            every record crosses <job>.v1.repartition.1 and back, and the
#            window fires on the minimum of the upstream watermarks. Same
#            grouping, so the rows must equal `direct`'s (checked).
#   currency hourly windows per currency (not the key: needs the hop), for
#            the record.
# Reported: wall, CPU (GNU time: user + system), peak RSS, events per
# CPU-second, and the hop's cost per record (CPU and wall, hop - direct).
# Writes bench/results/repartition.md (or only prints with --no-results).
#   scripts/bench_repartition.sh [--records N (1000000)] [--partitions P (4)] [--no-results]
# Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000000 partitions=4 results=1
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --no-results) results=0; shift ;;
    *) echo "usage: scripts/bench_repartition.sh [--records N] [--partitions P] [--no-results]" >&2; exit 2 ;;
  esac
done
for tool in java python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench_repartition: $tool is needed (apt-get install openjdk-17-jdk-headless python3 time)" >&2; exit 1; }
done
dir=$(scripts/setup.sh Release | tail -n 1)
kappa="$dir/kappa"
source scripts/bench_kafka.sh repartition-bench
scripts/kafka.sh create-topic --dir "$tmp/kafka" --topic transactions --partitions "$partitions"
echo "== kappa gen --format json: $records records into $partitions partitions" >&2
# The quickstart's mix: duplicates, out-of-order and late records.
"$kappa" gen --format json -b "$bootstrap" -t transactions -n "$records" --users 20000 --zipf 0.8 --rate 100 \
  --seed 1 --duplicate-fraction 0.02 --late-fraction 0.05 --max-delay-ms 900000 >&2

spec() {  # job, operators between the filter and the window, window key
  cat >"$tmp/$1.yaml" <<YAML
job: $1
version: 1
source:
  topic: transactions
  start: earliest
  format: json
  fields:
    txn_id: string
    user_id: {type: string, path: user.id}
    status: string
    amount_cents: {type: int64, path: amount.cents}
    currency: {type: string, path: amount.currency}
    event_time: {type: timestamp, path: event_time, encoding: iso8601}
  event_time: event_time
  value: amount_cents
operators:
  - dedup: {field: txn_id, ttl: 1h}
  - filter: ["status != cancelled"]
$2
  - window: {type: tumbling, size: 1h, key: $3, aggregates: [count, sum, min, max]}
allowed_lateness: 10m
sink: {topic: $1-out}
dlq: {topic: $1.dlq}
late: {topic: $1.late}
checkpoint: {interval: 1s, dir: $tmp/$1-state}
YAML
  echo "$tmp/$1.yaml"
}
rows=()
declare -A cpu wall
run() {  # name spec
  echo "== $1" >&2
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/$1.time" "$kappa" run "$2" -b "$bootstrap" --stop-at-end \
    --final-watermark --status-interval-ms 0 >"$tmp/$1.out" 2>"$tmp/$1.log" || {
    echo "bench_repartition: $1 failed:" >&2; tail -n 20 "$tmp/$1.log" >&2; exit 1; }
  read -r w u s m <"$tmp/$1.time"
  wall[$1]=$w
  cpu[$1]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  "$kappa" consume -b "$bootstrap" -t "$1-out.v1" --print >"$tmp/$1.rows" 2>"$tmp/$1.consume.log" || {
    echo "bench_repartition: reading $1-out.v1 failed:" >&2; cat "$tmp/$1.consume.log" >&2; exit 1; }
  rows+=("| $1 | $w | ${cpu[$1]} | $(awk -v n="$records" -v c="${cpu[$1]}" 'BEGIN { printf "%.0f", n / c }') | $((m / 1024)) | $(wc -l <"$tmp/$1.rows") |")
  echo "   ${wall[$1]} s wall, ${cpu[$1]} CPU s" >&2
}
run direct "$(spec direct "" user_id)"
run hop "$(spec hop "  - repartition: {key: user_id}" user_id)"
run currency "$(spec currency "  - repartition: {key: currency}" currency)"

echo "== checking hop's rows against direct's" >&2
python3 - "$tmp/direct.rows" "$tmp/hop.rows" <<'PY'
import json, sys
def rows(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        v = r["value"]
        out[r["key"]] = (v["count"], v["sum"], v["min"], v["max"])
    return out
a, b = rows(sys.argv[1]), rows(sys.argv[2])
if a != b:
    missing = len(set(a) - set(b)); extra = len(set(b) - set(a))
    diff = sum(1 for k in set(a) & set(b) if a[k] != b[k])
    sys.exit(f"bench_repartition: the repartitioned rows differ from the direct ones: {missing} missing, {extra} extra, {diff} different")
print(f"   {len(a)} rows, equal", file=sys.stderr)
PY
cp=$(tr '\0' '\n' <"/proc/$(cat "$tmp/kafka/node1/pid")/cmdline" | grep -A1 -x -- -cp | tail -n 1)
repart_bytes=$(java -cp "$cp" org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$bootstrap" \
  --topic hop.v1.repartition.1 2>/dev/null | awk -F: '{ n += $3 } END { print n + 0 }')
cost=$(awk -v n="$records" -v a="${cpu[direct]}" -v b="${cpu[hop]}" -v wa="${wall[direct]}" -v wb="${wall[hop]}" 'BEGIN {
  printf "%.2f us CPU and %.2f us wall per record (%.0f%% more CPU)", (b - a) / n * 1e6, (wb - wa) / n * 1e6, (b / a - 1) * 100 }')
table=$(printf '%s\n' "${rows[@]}")
echo "$table"
echo "hop cost: $cost; $repart_bytes records (data and watermark markers) in the repartition topic"
((results)) || exit 0
cat >bench/results/repartition.md <<MD
# The cost of a repartition hop (issue 14)

\`scripts/bench_repartition.sh --records $records --partitions $partitions\`, $(date -u +%Y-%m-%d), Apache Kafka 4.1.1
(one broker, KRaft) on the same machine ($(nproc) cores). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).

$records JSON transactions (2% duplicate sends, 5% out of order by up to 15 min), $partitions partitions keyed by
user; one process per run, from offset 0 to the end (\`--stop-at-end --final-watermark\`), checkpoint every 1 s.

| run | wall s | CPU s | events per CPU-second | peak RSS MiB | output rows |
|---|---|---|---|---|---|
$table

- direct: dedup, drop cancelled, hourly windows per user (the Kafka key, no shuffle).
- hop: the same with \`repartition: {key: user_id}\` before the window: every record goes through
  hop.v1.repartition.1 ($repart_bytes records there, data and watermark markers) and is read back by
  stage 2. Its rows were checked equal to direct's before this was written.
- currency: hourly windows per currency, which needs the hop (4 groups instead of 20,000).

**The hop costs $cost.** It is a Kafka produce and consume of every record (its bytes plus a 48-byte
envelope) on the same machine as the broker, plus stage 2's decode. The broker's own CPU is not in the
CPU column (another process), so the hop's true cost on this machine is higher than shown; on a cluster
it is network and broker disk.
MD
echo "wrote bench/results/repartition.md" >&2
