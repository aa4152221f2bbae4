#!/usr/bin/env bash
# The quickstart, end to end on the embedded broker: the story kappa exists
# for. Installs what is missing, builds kappa (Release), starts `kappa
# broker`, generates a day of transactions (duplicate sends, out-of-order,
# malformed records), deploys version 1 of the per-user hourly spend job live
# (it wrongly counts cancelled transactions), replays the fixed version 2
# from offset zero beside it (history from `kappa archive`, on 2 threads,
# then Kafka) while new events arrive, promotes v2 once it has
# caught up, and shows the corrected values served by `kappa get`, then a
# rollback. Everything it starts is stopped when it ends.
#   scripts/quickstart.sh              the versions write Kafka topics
#   scripts/quickstart.sh --postgres   the versions write PostgreSQL tables (a server of its own,
#                                      scripts/postgres.sh), readers use the view spend_hourly,
#                                      promote and rollback swap it
set -euo pipefail
cd "$(dirname "$0")/.."
postgres=0
case "${1:-}" in
  "") ;;
  --postgres) postgres=1 ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/quickstart.sh [--postgres]" >&2; exit 2 ;;
esac
dir=$(scripts/setup.sh Release | tail -n 1)
kappa="$PWD/$dir/kappa"
work=$(mktemp -d /tmp/kappa-quickstart.XXXXXX)
pids=()
cleanup() {  # the jobs and the archiver first (they take a final checkpoint), the broker last
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if ((postgres)); then scripts/postgres.sh stop --dir "$work/pg" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
spec() {
  sed "s#checkpoint: {interval: 1s}#checkpoint: {interval: 1s, dir: $work/state-$1}#" "scripts/jobs/spend_$1.yaml" > "$work/spend_$1.yaml"
  if ((postgres)); then  # the rows go to table spend_hourly_v<N>; the password comes from PGPASSWORD
    sed -i "s#^sink: .*#sink: {postgres: {dsn: \"$PG_DSN\", table: spend_hourly}}#" "$work/spend_$1.yaml"
  fi
  echo "$work/spend_$1.yaml"
}
wait_for() {  # wait_for DESCRIPTION COMMAND...: polls up to 60 s
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "quickstart: timed out waiting for $what" >&2; exit 1
}
in_count() { grep -o '"records_in": [0-9]*' "$work/state-$1/metrics.json" 2>/dev/null | head -n 1 | grep -o '[0-9]*$'; }

if ((postgres)); then
  echo "== starting PostgreSQL 15 (a server of its own on a free port, scripts/postgres.sh)"
  full=$(scripts/postgres.sh start --dir "$work/pg" --owner $$ | tail -n 1)
  export PGPASSWORD="${full##*password=}"   # libpq reads it: no password in the specs or the registry
  PG_DSN="${full% password=*}"
  echo "   $PG_DSN"
  sql() { psql "$PG_DSN" -X -q -v ON_ERROR_STOP=1 "$@"; }
fi

echo "== starting the embedded broker (in memory, for development and tests)"
# 24 partitions: JSON records are ~215 bytes, and the embedded broker keeps at most 5 MiB per partition.
"$kappa" broker --topic transactions:24 --address-file "$work/address" >/dev/null 2>"$work/broker.log" &
pids+=($!)
wait_for "the broker" test -s "$work/address"
B=$(cat "$work/address")
echo "   bootstrap $B"

echo "== generating history: 150,000 transactions as JSON (10% cancelled, 2% duplicate sends, 5% late, 0.5% malformed)"
"$kappa" gen --format json -b "$B" -t transactions -n 150000 --users 2000 --zipf 0.8 --rate 2 --seed 1 \
  --duplicate-fraction 0.02 --late-fraction 0.05 --max-delay-ms 900000 --malformed-fraction 0.005

echo "== archiving the topic (kappa archive: durable history beyond Kafka's retention, kept following)"
"$kappa" archive -a "$work/archive" -t transactions -b "$B" --status-interval-ms 0 >/dev/null 2>"$work/archive.log" &
pids+=($!)
archived() { "$kappa" archive -a "$work/archive" --list -t transactions | grep -q "^transactions: .* 150000 records"; }
wait_for "the archive to hold the history" archived
"$kappa" archive -a "$work/archive" --list -t transactions | tail -n 1 | sed 's/^/   /'

echo "== deploying spend v1 live (it counts cancelled transactions: the bug)"
"$kappa" deploy "$(spec v1)" -b "$B" --status-interval-ms 0 >"$work/v1.out" 2>"$work/v1.log" &
pids+=($!)
v1_has_history() { [ "$(in_count v1)" = 150000 ]; }
wait_for "v1 to process the history" v1_has_history

echo "== replaying the fix, spend v2, from offset zero beside v1 while new events arrive"
echo "   (history from the archive on 2 threads, then Kafka from exactly where the archive ends)"
"$kappa" replay "$(spec v2)" -b "$B" --archive "$work/archive" --parallelism 2 --max-rate 100000 \
  --catch-up-hold-ms 1000 --status-interval-ms 500 \
  >"$work/v2.out" 2>"$work/v2.log" &
pids+=($!)
"$kappa" gen --format json -b "$B" -t transactions -n 30000 --users 2000 --zipf 0.8 --rate 2 --seed 2 \
  --start-time-ms 1767307000000 --duplicate-fraction 0.02 >/dev/null
last=""
for _ in $(seq 1200); do
  line=$(tr '\r' '\n' < "$work/v2.log" | grep "rec/s" | tail -n 1 || true)
  if [ -n "$line" ] && [ "$line" != "$last" ]; then echo "   $line"; last=$line; fi
  grep -q "caught up" "$work/v2.log" && break
  sleep 0.5
done
grep "caught up" "$work/v2.log" | sed 's/^/   /' || { echo "quickstart: v2 did not catch up" >&2; exit 1; }
grep -m 2 "switching to Kafka" "$work/v2.log" | sed 's/^/   /' || true

echo "== status"
"$kappa" status spend -b "$B" | sed 's/^/   /'

echo "== promoting v2 (after comparing its outputs with v1's)"
"$kappa" promote spend --version 2 -b "$B" | sed 's/^/   /'

if ((postgres)); then
  echo "== readers query the view spend_hourly: v2's rows now (the swap was one transaction)"
  sql -c "SELECT kappa_version AS version, count(*) AS rows, sum(txn_count_1h) AS txns FROM spend_hourly GROUP BY 1" | sed 's/^/   /'
  # A window where the fix changed the count (a cancelled transaction).
  key=$(sql -At -c "SELECT a.kappa_key FROM spend_hourly_v1 a JOIN spend_hourly_v2 b USING (kappa_key)
                    WHERE a.txn_count_1h <> b.txn_count_1h ORDER BY a.kappa_key LIMIT 1")
  echo "== kappa get spend '$key' (from PostgreSQL through the view: v2, cancellations no longer counted)"
  "$kappa" get spend "$key" -b "$B" | sed 's/^/   /'
  echo "== rollback: the view serves v1 again"
  "$kappa" rollback spend -b "$B" | sed 's/^/   /'
  "$kappa" get spend "$key" -b "$B" | sed 's/^/   /'
  sql -c "SELECT * FROM kappa_serving" | sed 's/^/   /'
  echo "== quickstart done"
  exit 0
fi
"$kappa" consume -b "$B" -t spend-hourly.v2 --print >"$work/v2-rows.jsonl" 2>/dev/null
# A window of the busiest user that held a cancellation (where v1 and v2 differ).
key=$(grep -m 1 '"key":"u0000000|' "$work/v2-rows.jsonl" | sed 's/^{"partition":[0-9]*,"offset":[0-9]*,"key":"\([^"]*\)".*/\1/')
echo "== kappa get spend '$key' (served by v2, cancellations no longer counted)"
"$kappa" get spend "$key" -b "$B" --table-dir "$work/tables" | sed 's/^/   /'
echo "== rollback: v1 serves again"
"$kappa" rollback spend -b "$B" | sed 's/^/   /'
"$kappa" get spend "$key" -b "$B" --table-dir "$work/tables" | sed 's/^/   /'
echo "== quickstart done"
