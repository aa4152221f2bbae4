#!/usr/bin/env bash
# kappa beside Kafka Streams and Apache Flink on the same question, one command
# (issue 16). Builds kappa Release, the Kafka Streams job
# (bench/peers/kafka-streams, Maven) and the Flink job (bench/peers/flink,
# Maven), starts a real Apache Kafka of
# its own in a temporary directory (scripts/kafka.sh), generates N JSON
# transactions (duplicates, out-of-order and late records, malformed ones) into
# one topic of P partitions, appends one end marker per partition, then runs
# over that topic, one after the other:
#   kappa run bench/peers/spend_peer.yaml --stop-at-end --final-watermark
#   (with --eos: the same with delivery: exactly_once)
#   kappa archive --stop-at-end (the topic into a log archive, timed on its
#   own: a one-off cost), then kappa run with --archive, parallelism 1 and 2
#   (the replay path a user would take); its outputs must be identical to the
#   Kafka run's (same rows, same late records)
#   Kafka Streams, 1 and 2 stream threads, at_least_once (and exactly_once_v2
#   with --eos)
#   Flink (DataStream API, a local MiniCluster in one JVM), parallelism 1 and 2,
#   at_least_once (and exactly_once with --eos)
# CHECKS that every other output equals kappa's at_least_once one (scripts/bench_peers_check.py)
# before reporting anything, then writes bench/results/peers.md and the chart
# bench/results/peers.png (gnuplot, scripts/bench_peers_chart.gp: events per
# CPU-second and events/s of the wall time per run).
#   scripts/bench_peers.sh [--records N (1000000)] [--partitions P (4)] [--eos] [--no-results]
#
# End of input: the end marker (user "~end", event time 2 h after the data) moves every
# task's event time past the end + grace of every real window, so Kafka Streams
# emits every window (suppress untilWindowCloses) and kappa does too (it would
# anyway with --final-watermark). All then answer the same question over the
# whole input; the marker's own window is ignored by the checker. Kafka
# Streams exits once the marker of every partition has gone through its
# topology (then close(): producer flushed, offsets or transaction committed).
# Flink's source is bounded by the offsets that were the latest at its start
# (the markers included): the job ends by itself, after its final watermark
# and final checkpoint.
#
# Measured per system: wall seconds from process start to exit (after its last
# output is flushed; JVM start included for Kafka Streams and Flink), events/s = input
# records / wall, CPU = user + system time of the process (GNU time, from
# wait4's rusage), events/s per core = input records / CPU seconds, peak RSS
# (GNU time's maximum resident set size). Never part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000000 partitions=4 eos=0 results=1
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --eos) eos=1; shift ;;
    --no-results) results=0; shift ;;
    *) echo "usage: scripts/bench_peers.sh [--records N] [--partitions P] [--eos] [--no-results]" >&2; exit 2 ;;
  esac
done
for tool in java mvn kcat python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench_peers: $tool is needed (apt-get install openjdk-17-jdk-headless maven kcat python3 time)" >&2; exit 1; }
done
if ((results)) && ! command -v gnuplot >/dev/null; then
  echo "bench_peers: gnuplot is needed to draw bench/results/peers.png (apt-get install gnuplot-nox; scripts/setup.sh installs it too), or pass --no-results" >&2
  exit 1
fi
dir=$(scripts/setup.sh Release | tail -n 1)
echo "== building the Kafka Streams job (mvn package)" >&2
(cd bench/peers/kafka-streams && mvn -q -B package >&2)
jar=bench/peers/kafka-streams/target/spend-streams.jar
echo "== building the Flink job (mvn package)" >&2
(cd bench/peers/flink && mvn -q -B package >&2)
flink_jar=bench/peers/flink/target/spend-flink.jar

source scripts/bench_kafka.sh peers-bench
topic=peers-tx
scripts/kafka.sh create-topic --dir "$tmp/kafka" --topic "$topic" --partitions "$partitions"

echo "== kappa gen --format json: $records records into $partitions partitions" >&2
# The quickstart's mix: 10% cancelled, 2% duplicate sends, 5% out of order by
# up to 15 min (some beyond the 10 min lateness: late), 0.5% malformed.
"$dir/kappa" gen --format json -b "$bootstrap" -t "$topic" -n "$records" --users 10000 --zipf 0.8 --rate 100 \
  --seed 1 --duplicate-fraction 0.02 --late-fraction 0.05 --max-delay-ms 900000 --malformed-fraction 0.005 >&2
# The end marker's event time: 2 h after the last generated event (start
# 2026-01-01T00:00Z, 100 events/s), so past every real window's end + grace.
# Not far in the future: Kafka 4 brokers refuse records more than 1 h ahead
# of their clock (log.message.timestamp.after.max.ms), and Kafka Streams'
# changelogs carry the event time.
end_ms=$((1767225600000 + records * 10 + 7200000))
end_iso=$(date -u -d "@$((end_ms / 1000))" +%Y-%m-%dT%H:%M:%S.000Z)
for ((p = 0; p < partitions; ++p)); do
  printf '~end\t{"txn_id":"~end-%d","user":{"id":"~end","country":"ZZ"},"status":"approved","amount":{"cents":1,"currency":"USD"},"event_time":"%s","event_time_ms":%d,"merchant":"m-00000"}\n' "$p" "$end_iso" "$end_ms" |
    kcat -P -b "$bootstrap" -t "$topic" -p "$p" -K $'\t'
done
input=$((records + partitions))

echo "== kappa archive: the topic into $tmp/archive (a one-off cost, timed on its own)" >&2
/usr/bin/time -f '%e %U %S %M' -o "$tmp/archive.time" "$dir/kappa" archive --archive "$tmp/archive" --topic "$topic" \
  -b "$bootstrap" --stop-at-end --status-interval-ms 0 >"$tmp/archive.out" 2>"$tmp/archive.log" || {
  echo "bench_peers: kappa archive failed; its log:" >&2; tail -n 30 "$tmp/archive.log" >&2; exit 1; }
read -r archive_wall archive_user archive_sys archive_rss <"$tmp/archive.time"
archive_cpu=$(awk -v u="$archive_user" -v s="$archive_sys" 'BEGIN { printf "%.2f", u + s }')
archive_mib=$(du -sm "$tmp/archive" | cut -f1)
"$dir/kappa" archive --archive "$tmp/archive" --list --topic "$topic" >&2

read_topic() {  # topic -> its committed records' values, one a line
  kcat -C -b "$bootstrap" -t "$1" -o beginning -e -q -f '%s\n' -X isolation.level=read_committed 2>/dev/null || true
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()  # system|threads|guarantee|wall|cpu|rss_kib|outputs|late|check
measure() {  # name threads guarantee -- command...: runs it under GNU time, sets wall cpu rss
  local name=$1; shift 4
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/$name.time" "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" || {
    echo "bench_peers: $name failed; its log:" >&2; tail -n 30 "$tmp/$name.log" >&2; exit 1; }
  read -r wall user sys rss <"$tmp/$name.time"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}

kappa_run() {  # name delivery what [kappa run options...]: runs spend_peer.yaml as job <name>, output <name>.v1
  local name=$1 delivery=$2 what=$3; shift 3
  echo "== kappa run ($delivery; $what)" >&2
  sed -e "s|^job: spendpeer|job: $name|; s|TOPIC|$topic|; s|SINK|$name|; s|LATE|$name.late|; s|DLQ|$name.dlq|" \
    -e "s|STATE_DIR|$tmp/$name-state|" bench/peers/spend_peer.yaml >"$tmp/$name.yaml"
  echo "delivery: $delivery" >>"$tmp/$name.yaml"
  measure "$name" 1 "$delivery" -- "$dir/kappa" run "$tmp/$name.yaml" -b "$bootstrap" --stop-at-end \
    --final-watermark --status-interval-ms 0 "$@"
  read_topic "$name.v1" >"$tmp/$name.rows"
  read_topic "$name.late" | sort >"$tmp/$name.late"
}
check() {  # name [identical]: its rows and late records against kappa's (at_least_once) or exit 1
  local name=$1 out
  echo "== checking $name against kappa" >&2
  # Another kappa run of the same spec must write the very same rows (the
  # marker's window included), whatever order its partitions interleave in.
  if [[ ${2:-} == identical ]] && ! cmp -s <(sort "$tmp/kappa.rows") <(sort "$tmp/$name.rows"); then
    echo "bench_peers: $name's rows are not identical to kappa's Kafka run: $(wc -l <"$tmp/kappa.rows") vs $(wc -l <"$tmp/$name.rows") rows; first differences:" >&2
    diff <(sort "$tmp/kappa.rows") <(sort "$tmp/$name.rows") | head -n 6 >&2
    python3 scripts/bench_peers_check.py "$tmp/kappa.rows" "$tmp/$name.rows" >&2 || true
    exit 1
  fi
  out=$(python3 scripts/bench_peers_check.py "$tmp/kappa.rows" "$tmp/$name.rows" --ignore-key '~end') || {
    echo "bench_peers: $name does not answer kappa's question:" >&2; echo "$out" >&2; exit 1; }
  cmp -s "$tmp/kappa.late" "$tmp/$name.late" || {
    echo "bench_peers: the late records differ ($name): kappa $(wc -l <"$tmp/kappa.late"), $name $(wc -l <"$tmp/$name.late"); first differences:" >&2
    diff "$tmp/kappa.late" "$tmp/$name.late" | head -n 6 >&2; exit 1; }
  echo "   $out; the same $(wc -l <"$tmp/$name.late") late records" >&2
}

kappa_run kappa at_least_once "Kafka source, one task per partition, 1 thread"
kappa_late=$(wc -l <"$tmp/kappa.late")
rows+=("kappa|1|at_least_once|$wall|$cpu|$rss|-|$(grep -vc '"~end"' "$tmp/kappa.rows")|$kappa_late|reference")
if ((eos)); then
  kappa_run kappaeos exactly_once "Kafka source, one task per partition, 1 thread"
  check kappaeos
  rows+=("kappa|1|exactly_once|$wall|$cpu|$rss|-|$(grep -vc '"~end"' "$tmp/kappaeos.rows")|$kappa_late|equal")
fi
for par in 1 2; do
  name=kappaarchive$par
  kappa_run "$name" at_least_once "from the archive, parallelism $par" --archive "$tmp/archive" --parallelism "$par"
  check "$name" identical
  rows+=("kappa from the archive|$par|at_least_once|$wall|$cpu|$rss|-|$(grep -vc '"~end"' "$tmp/$name.rows")|$(wc -l <"$tmp/$name.late")|identical")
done

runs=("1 at_least_once" "2 at_least_once")
((eos)) && runs+=("1 exactly_once_v2" "2 exactly_once_v2")
for run in "${runs[@]}"; do
  read -r threads guarantee <<<"$run"
  name=ks-$threads-$guarantee
  echo "== Kafka Streams: $threads thread(s), $guarantee" >&2
  measure "$name" "$threads" "$guarantee" -- java -jar "$jar" --bootstrap "$bootstrap" --input "$topic" \
    --output "peers-$name" --late "peers-$name.late" --state-dir "$tmp/$name-state" --app-id "peers-$name" \
    --threads "$threads" --guarantee "$guarantee"
  read_topic "peers-$name" >"$tmp/$name.rows"
  read_topic "peers-$name.late" | sort >"$tmp/$name.late"
  late=$(wc -l <"$tmp/$name.late")
  check "$name"
  # The app's own time from streams.start() to the end marker of every
  # partition, plus close(): the wall time without JVM start and group join.
  inapp=$(sed -n 's/^streams_seconds_to_end=\([0-9.]*\) close_seconds=\([0-9.]*\).*/\1 \2/p' "$tmp/$name.out" |
    awk '{ printf "%.2f", $1 + $2 }')
  rows+=("Kafka Streams|$threads|$guarantee|$wall|$cpu|$rss|$inapp|$(wc -l <"$tmp/$name.rows")|$late|equal")
done

runs=("1 at_least_once" "2 at_least_once")
((eos)) && runs+=("1 exactly_once" "2 exactly_once")
for run in "${runs[@]}"; do
  read -r par guarantee <<<"$run"
  name=flink-$par-$guarantee
  echo "== Flink: parallelism $par, $guarantee" >&2
  measure "$name" "$par" "$guarantee" -- java -jar "$flink_jar" --bootstrap "$bootstrap" --input "$topic" \
    --output "peers-$name" --late "peers-$name.late" --state-dir "$tmp/$name-state" --name "peers-$name" \
    --parallelism "$par" $([[ $guarantee == exactly_once ]] && echo --eos)
  # The marker's own window is emitted by Flink (its final watermark closes it): not counted.
  read_topic "peers-$name" | grep -v '"~end"' >"$tmp/$name.rows" || true
  read_topic "peers-$name.late" | sort >"$tmp/$name.late"
  late=$(wc -l <"$tmp/$name.late")
  check "$name"
  # The job's own run time in the MiniCluster (JobExecutionResult.getNetRuntime): without JVM and
  # MiniCluster start.
  inapp=$(sed -n 's/.*job_net_runtime_seconds=\([0-9.]*\).*/\1/p' "$tmp/$name.out")
  rows+=("Flink|$par|$guarantee|$wall|$cpu|$rss|${inapp:--}|$(wc -l <"$tmp/$name.rows")|$late|equal")
done

table=$(for r in "${rows[@]}"; do
  IFS='|' read -r sys threads guarantee wall cpu rss inapp outs late check <<<"$r"
  awk -v s="$sys" -v t="$threads" -v g="$guarantee" -v w="$wall" -v c="$cpu" -v m="$rss" -v o="$outs" \
    -v l="$late" -v k="$check" -v n="$input" -v a="$inapp" 'BEGIN {
      printf "| %s | %s | %s | %.2f | %.0f | %s | %.2f | %.0f | %.0f | %d | %d | %s |\n",
        s, t, g, w, n / w, (a == "-" ? "-" : sprintf("%.0f", n / a)), c, (c > 0 ? n / c : 0), m / 1024, o, l, k }'
done)
echo "$table"
# kappa / Kafka Streams and kappa / Flink, events/s per core, same guarantee
# (exactly_once against exactly_once_v2), per thread count / parallelism.
ratios=$(for r in "${rows[@]}"; do echo "$r"; done | awk -F'|' -v n="$input" '
  $1 == "kappa" { k[$3] = n / $5; k[$3 == "exactly_once" ? "exactly_once_v2" : $3] = n / $5 }
  $1 == "Kafka Streams" && ($3 in k) {
    printf "- kappa / Kafka Streams (%s thread(s), %s), events/s per core: %.1fx\n", $2, $3, k[$3] / (n / $5) }
  $1 == "Flink" && ($3 in k) {
    printf "- kappa / Flink (parallelism %s, %s), events/s per core: %.1fx\n", $2, $3, k[$3] / (n / $5) }
  $1 == "kappa from the archive" { a[$2] = n / $5 }
  $1 == "Kafka Streams" && $3 == "at_least_once" { ks[$2] = n / $5 }
  $1 == "Flink" && $3 == "at_least_once" { fl[$2] = n / $5 }
  END {
    for (p = 1; p <= 2; ++p) if ((p in a) && (p in ks) && (p in fl))
      printf "- kappa from the archive / Kafka Streams / Flink (%d thread(s), at_least_once), events/s per core: %.1fx / %.1fx\n",
        p, a[p] / ks[p], a[p] / fl[p]
  }')
archive_line="kappa archive (the whole topic into the archive, once, before the archive runs; not part of any replay): $archive_wall s wall, $archive_cpu CPU s, $((archive_rss / 1024)) MiB peak RSS, $archive_mib MiB on disk"
echo "$ratios"
echo "$archive_line"
((results)) || exit 0
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat >bench/results/peers.md <<MD
# kappa beside Kafka Streams and Apache Flink: the user-spend job on a real Kafka (issue 16)

\`scripts/bench_peers.sh --records $records --partitions $partitions$( ((eos)) && echo " --eos")\`, $(date -u +%Y-%m-%d).

Machine: $cpu_model, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM,
$(uname -sr); Java $(java -version 2>&1 | head -n 1 | cut -d'"' -f2), Apache Kafka 4.1.1 (one broker, KRaft, on the
same machine), Kafka Streams 4.1.1, Apache Flink 2.2.1 with flink-connector-kafka 5.0.0-2.2 (a local
MiniCluster in one JVM). Load average when the runs started: $load, when they ended: $load_end (1, 5, 15 min)$(
  awk -v a="${load%% *}" -v n="$(nproc)" 'BEGIN {
    if (a > n) printf ": **above the %d cores at the start, so other work shared them: the wall times are noisy, read the CPU times and the ratios**", n
    else printf ": at most the %d cores at the start (the broker and the generator included), a quiet machine", n }').
The load at the end counts the benchmark's own threads too (the JVMs', the broker's).

Input: $input records in one topic of $partitions partitions ($records generated by \`kappa gen --format json\`:
10% cancelled, 2% duplicate sends, 5% out of order by up to 15 min, 0.5% malformed; plus one end
marker per partition). The job (scripts/jobs/spend_v2.yaml's logic; bench/peers/spend_peer.yaml and
bench/peers/kafka-streams, bench/peers/flink): dedup by txn_id (1 h event time), drop cancelled, hourly tumbling windows
per user with count/sum/min/max/avg of amount cents, 10 min allowed lateness / grace, late records to a
side topic, one final row per window. Every Kafka Streams and Flink output was checked equal to kappa's (same
(user, window) rows, same count/sum/min/max, avg within 1e-9 relative, the same late records byte for byte),
and kappa's runs from the archive identical to it, before these numbers were written.

| system | threads / parallelism | guarantee | replay from offset zero, s | events/s | events/s after start | CPU s | events/s per core | peak RSS MiB | rows | late | output |
|---|---|---|---|---|---|---|---|---|---|---|---|
$table

$ratios

$archive_line.

- replay from offset zero: every run is one, what a user waits for after a bug fix: a fresh
  consumer group (its own job name / application id) and empty state, from offset 0 of every
  partition to the end of the history, all outputs written. It is the wall time from process
  start to exit, the exit coming after the last output is flushed (kappa: \`--stop-at-end
  --final-watermark\`, final checkpoint included; Kafka Streams: JVM start, then exit once the end
  marker of every partition has gone through the topology, then \`close()\`, which flushes the
  producer and commits; Flink: JVM and MiniCluster start, then the bounded job to its end: source
  at the offsets that were the latest at its start, final watermark, final checkpoint).
  events/s = input records / that wall time. events/s after start (the JVM systems only): input records /
  for Kafka Streams the app's own time from \`streams.start()\` to the end marker of every
  partition plus \`close()\`, i.e. without JVM start and the consumer group's join; for Flink the
  job's net run time in the MiniCluster (\`JobExecutionResult.getNetRuntime()\`: without JVM and
  MiniCluster start, with job deployment). kappa's wall includes its own start too: consumer,
  RocksDB open.
- The JVM runs with its default heap (at most 1/4 of RAM) and collector: Kafka Streams' peak RSS
  shows how far the JVM lets the heap grow as much as what the job needs.
- kappa from the archive: \`kappa archive --stop-at-end\` first copied the topic (end markers
  included) into a log archive on local disk (the line above: a one-off cost, paid once for every
  later replay; in production the archiver follows the topic all along). Then \`kappa run --archive
  DIR --parallelism 1|2 --stop-at-end --final-watermark\` read every partition from the archive to
  its end (then Kafka, which had nothing more), the worker threads taking partitions in rounds.
  Its rows (the marker's window included) and late records were checked identical, sorted and
  byte for byte, to kappa's run from Kafka.
- CPU: user + system seconds of the process and its threads (GNU time, from wait4's rusage);
  events/s per core = input records / CPU seconds. Peak RSS: GNU time's maximum resident set size.
- kappa reads from Kafka with one thread (its Kafka source has one task per partition on one
  thread); Kafka Streams runs 1 or 2 stream threads; Flink runs every operator with parallelism 1
  or 2 (each a thread of its own: source, dedup keyed by txn_id, the window keyed by user, the two
  sinks, with the records crossing two keyed shuffles). The broker runs on the same cores.
- Kafka Streams runs with its defaults (commit.interval.ms 30 s at_least_once / 100 ms
  exactly_once_v2, 10 MiB record cache, RocksDB stores); the input is keyed by user id, so
  groupByKey needs no repartition topic. kappa runs bench/peers/spend_peer.yaml: checkpoint every
  1 s (under exactly_once one Kafka transaction per checkpoint; Kafka Streams commits its
  transaction every 100 ms by default). Flink runs with the RocksDB state backend (full
  checkpoints to files every 10 s: at_least_once checkpoints without barrier alignment,
  exactly_once aligned, and its KafkaSink commits one Kafka transaction per checkpoint) and its
  defaults otherwise.
- Late records: Kafka Streams drops records behind the grace period without a side output, so the
  job routes them itself, judging against the task's stream time (largest event time read,
  cancelled and duplicates included), which is kappa's rule; the window's own drop would judge
  against the time of the records that reached it (after dedup and the cancelled filter) and could
  then differ from kappa on records right at the boundary. Flink's window operator judges lateness
  against its watermark, the minimum over all the partitions its inputs read, which trails a
  partition's own time as far as the partitions drift apart, so it would keep records kappa calls
  late; the Flink job judges each record against its own partition's time as its source reads it
  (kappa's rule), routes the late ones (after dedup and the cancelled filter) to the late topic,
  and gives the windows the same 10 min of allowed lateness over a per-partition watermark (largest
  event time - 1 ms), which never drops a record the source let through. Each window fires once,
  at its end + allowed lateness (a trigger of the job's own; Flink's EventTimeTrigger would fire
  again for every record within the allowed lateness).
MD
for r in "${rows[@]}"; do
  IFS='|' read -r sys threads guarantee wall cpu rss inapp outs late check <<<"$r"
  t="$threads thread"; ((threads == 1)) || t+=s
  case $sys in
    kappa) label="kappa, from Kafka\n$t" ;;
    "kappa from the archive") label="kappa, from the archive\n$t" ;;
    Flink) label="Flink\nparallelism $threads" ;;
    *) label="$sys\n$t" ;;
  esac
  [[ $guarantee == at_least_once ]] || label+=", EOS"
  # ENVIRON, not -v: awk would turn the label's \n into a newline; gnuplot reads it in the quotes.
  label=$label awk -v w="$wall" -v c="$cpu" -v n="$input" \
    'BEGIN { printf "\"%s\"\t%.0f\t%.0f\n", ENVIRON["label"], n / c, n / w }'
done >"$tmp/chart.dat"
gnuplot -c scripts/bench_peers_chart.gp "$tmp/chart.dat" bench/results/peers.png \
  "$input records, $partitions partitions, $(nproc) cores ($cpu_model), $(date -u +%Y-%m-%d); load average $load at the start, $load_end at the end"
echo "wrote bench/results/peers.md and bench/results/peers.png" >&2
