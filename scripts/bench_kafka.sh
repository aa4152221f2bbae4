# Sourced (not run) by the real-Kafka benchmarks, after scripts/setup.sh:
#   source scripts/bench_kafka.sh NAME
# makes a temporary directory $tmp (/tmp/kappa-NAME.XXXXXX), starts an
# Apache Kafka of its own in $tmp/kafka (scripts/kafka.sh) and sets
# $bootstrap. On exit, whatever the reason: the processes the benchmark
# listed in $pids are killed, the broker is stopped and $tmp is removed.
# Topics: scripts/kafka.sh create-topic --dir "$tmp/kafka" ...
tmp=$(mktemp -d "/tmp/kappa-$1.XXXXXX")
pids=()
bench_kafka_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/kafka.sh stop --dir "$tmp/kafka" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap bench_kafka_cleanup EXIT
echo "== starting Apache Kafka in $tmp/kafka" >&2
bootstrap=$(scripts/kafka.sh start --dir "$tmp/kafka" | tail -n 1)
