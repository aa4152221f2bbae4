#!/usr/bin/env bash
# The quickstart, end to end on the embedded broker: installs what is
# missing, builds kappa (Release), starts `kappa broker`, generates a day of
# transactions with duplicates, late and malformed records, runs the
# user-spend job to the end of the log, reads its outputs back and prints a
# summary. Everything it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(scripts/setup.sh Release | tail -n 1)
kappa="$dir/engine/kappa"
work=$(mktemp -d /tmp/kappa-quickstart.XXXXXX)
cleanup() {
  [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the embedded broker"
"$kappa" broker --topic transactions:8 --address-file "$work/address" >/dev/null 2>"$work/broker.log" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/address" ] && break; sleep 0.1; done
brokers=$(cat "$work/address")
echo "   bootstrap $brokers"

echo "== generating 200,000 transactions (2% duplicate sends, 5% out of order, 0.5% malformed)"
"$kappa" gen -b "$brokers" -t transactions -n 200000 --users 2000 --zipf 0.8 --rate 3 \
  --duplicate-fraction 0.02 --late-fraction 0.05 --max-delay-ms 900000 --malformed-fraction 0.005

echo "== running job user-spend v1 to the end of the log"
spec="$work/user_spend.yaml"
sed "s#checkpoint: {interval: 2s}.*#checkpoint: {interval: 2s, dir: $work/state}#" scripts/jobs/user_spend.yaml > "$spec"
"$kappa" run "$spec" -b "$brokers" --stop-at-end --status-interval-ms 1000

echo "== reading the outputs back"
"$kappa" consume -b "$brokers" -t user-spend-hourly.v1 --print > "$work/out.jsonl" 2>/dev/null
"$kappa" consume -b "$brokers" -t user-spend.dlq --print > "$work/dlq.jsonl" 2>/dev/null
echo "   $(wc -l < "$work/out.jsonl") hourly rows in user-spend-hourly.v1, e.g.:"
head -n 2 "$work/out.jsonl" | sed 's/^/     /'
echo "   $(wc -l < "$work/dlq.jsonl") malformed records in user-spend.dlq, e.g.:"
head -n 1 "$work/dlq.jsonl" | sed 's/^/     /'
echo "== quickstart done"
