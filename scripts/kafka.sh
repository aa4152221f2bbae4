#!/usr/bin/env bash
# A real Apache Kafka (KRaft, no ZooKeeper) on loopback, for the real-broker
# tests and for trying kappa against the real thing.
#   scripts/kafka.sh start [--brokers 1|3] [--dir DIR] [--owner PID] [--test] [--secure]   prints the bootstrap address (last line)
#   scripts/kafka.sh stop [--dir DIR] [--signal TERM|KILL]
#   scripts/kafka.sh stop-node --node N [--signal TERM|KILL] [--dir DIR]
#   scripts/kafka.sh start-node --node N [--dir DIR]
#   scripts/kafka.sh create-topic --topic T --partitions P [--dir DIR]
# stop-node ends one node of a running cluster (TERM: a clean shutdown, KILL:
# a crash) and waits for it to exit; start-node starts it again with the same
# server.properties, ports and data, and returns once the cluster's metadata,
# asked through that node, lists every node of DIR again. create-topic makes
# a topic on the running cluster in DIR with Kafka's own TopicCommand and
# returns once every partition has a leader (the benchmarks' setup).
# DIR (default build/realkafka) holds the configs, data, logs (nodeN/server.log,
# nodeN/stdout.log), the pid files and DIR/bootstrap. Every node is a combined
# broker+controller with a 256 MiB heap on free 127.0.0.1 ports. The broker's
# jars are resolved once with Maven (scripts/kafka/pom.xml) into
# ${KAPPA_CACHE:-~/.cache/kappa}/kafka-<version>/lib and reused.
# `start` is idempotent (a running cluster in DIR is reused; otherwise DIR's
# data is wiped and formatted afresh); `stop` ends exactly the processes the
# script started there (DIR/nodeN/pid) and waits for them. With --owner PID
# (a test process), a watcher stops the cluster once PID has exited, so a
# test that crashes leaves no broker behind.
# --test: a throwaway broker for one test. Its JVM compiles with C1 only
# (TieredStopAtLevel=1): it answers about a third sooner (3 s rather than
# 4.5 s here) and is slower under sustained load, which a test does not
# put on it; benchmarks start without it. `stop --signal KILL` ends a
# cluster without its clean shutdown (1.5-2 s), for data nobody reads again.
# --secure (one broker): as a secured cluster runs, with authorization
# (StandardAuthorizer, allow.everyone.if.no.acl.found=false) and a second
# listener, SASL_PLAINTEXT with PLAIN and SCRAM-SHA-256/512 logins
# admin/admin-secret (a super user) and alice, bob and carol (NAME-secret:
# what ACLs allow them, nothing else; a test that must see no grant of
# another uses a user of its own); its
# address goes to DIR/sasl_bootstrap. The PLAINTEXT listener (DIR/bootstrap)
# stays, as the super user ANONYMOUS, for the tests' own setup and ACLs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_VERSION="${KAPPA_KAFKA_VERSION:-4.1.1}"
CACHE="${KAPPA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kappa}/kafka-$KAFKA_VERSION"

die() { echo "kafka.sh: $*" >&2; exit 1; }
# The broker's class path, listed jar by jar rather than "lib/*": a
# class-data archive (cds_flags) holds the class path it was made with, and
# a wildcard does not match it.
class_path() {
  local cp
  cp="$(printf '%s:' "$CACHE"/lib/*.jar)"
  echo "${cp%:}"
}
usage() {
  echo "usage: scripts/kafka.sh start [--brokers 1|3] [--dir DIR] [--owner PID] [--test] [--secure] | stop [--dir DIR] [--signal TERM|KILL]" \
    "| create-topic --topic T --partitions P [--dir DIR]" \
    "| stop-node --node N [--signal TERM|KILL] [--dir DIR] | start-node --node N [--dir DIR]" >&2
  exit 2
}

cmd="${1:-}"; shift || true
brokers=1; dir="$ROOT/build/realkafka"; node=""; signal=TERM; owner=""; test_jvm=0; topic=""; partitions=""; secure=0
while (($#)); do
  case "$1" in
    --node) [ $# -ge 2 ] || usage; node="$2"; shift 2 ;;
    --signal) [ $# -ge 2 ] || usage; signal="$2"; shift 2 ;;
    --brokers) [ $# -ge 2 ] || usage; brokers="$2"; shift 2 ;;
    --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
    --owner) [ $# -ge 2 ] || usage; owner="$2"; shift 2 ;;
    --test) test_jvm=1; shift ;;
    --secure) secure=1; shift ;;
    --topic) [ $# -ge 2 ] || usage; topic="$2"; shift 2 ;;
    --partitions) [ $# -ge 2 ] || usage; partitions="$2"; shift 2 ;;
    *) usage ;;
  esac
done
case "$brokers" in 1|3) ;; *) die "--brokers must be 1 or 3, not '$brokers'" ;; esac
case "$signal" in TERM|KILL) ;; *) die "--signal must be TERM or KILL, not '$signal'" ;; esac
((secure == 0 || brokers == 1)) || die "--secure starts one broker (not --brokers $brokers)"
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"

# The pid in nodeN/pid if it is still the broker this script started there.
node_pid() {
  local f="$1/pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$1/server.properties" || return 1
  echo "$pid"
}

# A process that has exited is gone, even while it waits as a zombie for
# its reaper (the brokers' parent is init, which here reaps them only every
# second or two): kill -0 alone would wait for that too.
alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Class-data sharing: most of a JVM's start is loading and verifying the
# broker's ~3,000 classes. The first run of each JVM here (the format tool,
# the broker) writes its classes to an archive as it exits
# (-XX:ArchiveClassesAtExit, into the node's directory), which then goes to
# the cache; every later run maps it (-XX:SharedArchiveFile). Measured here:
# a test broker answers in 2.2 s rather than 4.3 s and its start takes 2.8
# rather than 4.5 CPU-seconds, the format tool 1.0 rather than 1.7; a suite
# starts ~130 brokers. An archive made by another JVM build is refused by
# the JVM, which then just starts without it; the key below names the JVM
# and the options, so that an update makes a new one.
cds_key() {
  local java_bin
  java_bin="$(readlink -f "$(command -v java)")"
  printf '%s %s %s' "$java_bin" "$(stat -c %Y "$java_bin" 2>/dev/null)" "$*" | cksum | cut -d' ' -f1
}
# The flags for JVM `name` (format or broker): the cached archive if there
# is one, otherwise make one at `dump` when the JVM exits.
cds_flags() {
  local name="$1" dump="$2" archive
  archive="$CACHE/cds/$name-$(cds_key "${jvm_extra[@]}").jsa"
  if [ -s "$archive" ]; then echo "-XX:SharedArchiveFile=$archive"; else echo "-XX:ArchiveClassesAtExit=$dump"; fi
}
# After a JVM made `dump` and exited cleanly: keep it as the cached archive
# (copied then renamed, so a parallel start never maps half a file).
cds_keep() {
  local name="$1" dump="$2" archive tmp
  [ -s "$dump" ] || return 0
  archive="$CACHE/cds/$name-$(cds_key "${jvm_extra[@]}").jsa"
  if [ ! -s "$archive" ] && mkdir -p "$CACHE/cds"; then
    tmp="$(mktemp "$CACHE/cds/.$name.XXXXXX")" && cp "$dump" "$tmp" && mv -f "$tmp" "$archive" || rm -f "$tmp"
  fi
  rm -f "$dump"
}

stop_cluster() {
  local pids=() sigs=() n pid sig clean=1
  for n in "$dir"/node*; do
    [ -d "$n" ] || continue
    if pid="$(node_pid "$n")"; then
      # A node making its class-data archive writes it as it exits: a clean
      # shutdown even when KILL was asked (once per machine, see cds_flags).
      sig="$signal"; [ -f "$n/cds.dump" ] && sig=TERM
      pids+=("$pid"); sigs+=("$sig")
    fi
  done
  if ((${#pids[@]})); then
    for i in "${!pids[@]}"; do kill -"${sigs[$i]}" "${pids[$i]}" 2>/dev/null || true; done
    for _ in $(seq 1 150); do  # 15 s for a clean shutdown, then SIGKILL
      local still=()
      for pid in "${pids[@]}"; do alive "$pid" && still+=("$pid"); done
      ((${#still[@]})) || break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do alive "$pid" && clean=0; kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do while alive "$pid"; do sleep 0.05; done; done
  fi
  for n in "$dir"/node*; do
    [ -f "$n/cds.dump" ] || continue
    if ((clean)); then
      jvm_extra=()
      [ -f "$dir/jvm.opts" ] && read -r -a jvm_extra <"$dir/jvm.opts"
      cds_keep broker "$n/broker.jsa"
    fi
    rm -f "$n/cds.dump" "$n/broker.jsa"
  done
  rm -f "$dir"/node*/pid "$dir/bootstrap" "$dir/sasl_bootstrap"
}

if [ "$cmd" = stop ]; then
  stop_cluster
  exit 0
fi

# One node of a running cluster: its directory, checked.
one_node() {
  [[ "$node" =~ ^[1-9][0-9]*$ ]] || die "$cmd needs --node N (1-based), not '$node'"
  [ -f "$dir/node$node/server.properties" ] || die "no node $node in $dir (start the cluster first)"
  echo "$dir/node$node"
}

if [ "$cmd" = stop-node ]; then
  n="$(one_node)"
  if pid="$(node_pid "$n")"; then
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do  # 30 s for a clean shutdown, then SIGKILL
      alive "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.05; done
  fi
  # A class-data archive it wrote as it stopped is not kept (a timed-out
  # stop may have cut it short); the cluster's own stop keeps one.
  rm -f "$n/pid" "$n/cds.dump" "$n/broker.jsa"
  exit 0
fi

if [ "$cmd" = create-topic ]; then
  [ -n "$topic" ] || die "create-topic needs --topic NAME"
  [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "create-topic needs --partitions N (N >= 1), not '$partitions'"
  [ -f "$dir/bootstrap" ] || die "no cluster running in $dir (scripts/kafka.sh start --dir $dir first)"
  [ -f "$CACHE/lib/.complete" ] || die "no Kafka jars in $CACHE/lib (run scripts/kafka.sh start first)"
  address="$(cat "$dir/bootstrap")"
  java -Xmx256m -cp "$(class_path)" -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$address" --create --topic "$topic" \
    --partitions "$partitions" >&2 || die "creating topic $topic on $address failed"
  for _ in $(seq 1 300); do  # 30 s
    led="$(kcat -L -b "$address" -t "$topic" -m 2 2>/dev/null | grep -c 'partition .*leader [0-9]' || true)"
    [ "${led:-0}" -ge "$partitions" ] && exit 0
    sleep 0.1
  done
  die "topic $topic on $address: not every partition had a leader within 30 s"
fi

if [ "$cmd" = start-node ]; then
  n="$(one_node)"
  [ -f "$CACHE/lib/.complete" ] || die "no Kafka jars in $CACHE/lib (run scripts/kafka.sh start first)"
  if ! node_pid "$n" >/dev/null; then
    CP="$(class_path)"
    jvm_extra=()
    [ -f "$dir/jvm.opts" ] && read -r -a jvm_extra <"$dir/jvm.opts"
    cds=()
    archive="$CACHE/cds/broker-$(cds_key "${jvm_extra[@]}").jsa"
    [ -s "$archive" ] && cds=("-XX:SharedArchiveFile=$archive")
    setsid java -Xmx256m -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true "${jvm_extra[@]}" "${cds[@]}" \
      -Dkafka.logs.dir="$n" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
      -cp "$CP" kafka.Kafka "$n/server.properties" </dev/null >>"$n/stdout.log" 2>&1 &
    echo $! >"$n/pid"
  fi
  address="$(sed -n 's|^listeners=PLAINTEXT://\([^,]*\),.*|\1|p' "$n/server.properties")"
  total=0
  for m in "$dir"/node*; do [ -d "$m" ] && total=$((total + 1)); done
  for _ in $(seq 1 600); do  # 60 s
    kill -0 "$(cat "$n/pid")" 2>/dev/null || { tail -n 5 "$n/stdout.log" >&2 || true; \
      die "node $node exited while starting (see $n/server.log)"; }
    up="$(kcat -L -b "$address" -m 2 2>/dev/null | sed -n 's/^ *\([0-9]*\) brokers:$/\1/p' | head -n 1 || true)"
    [ "${up:-0}" = "$total" ] && exit 0
    sleep 0.1
  done
  die "node $node in $dir did not rejoin within 60 s (see $n/server.log)"
fi
[ "$cmd" = start ] || usage

# Already running here: same answer again.
if [ -f "$dir/bootstrap" ]; then
  running=0; total=0
  for n in "$dir"/node*; do
    [ -d "$n" ] || continue
    total=$((total + 1))
    node_pid "$n" >/dev/null && running=$((running + 1))
  done
  was_secure=0; [ -f "$dir/sasl_bootstrap" ] && was_secure=1
  if ((total == brokers && running == total && was_secure == secure)) && kcat -L -b "$(cat "$dir/bootstrap")" -m 5 >/dev/null 2>&1; then
    cat "$dir/bootstrap"
    exit 0
  fi
  # A cluster with a node stopped was wiped without a word, topics and all
  # (a bug bash: `start` used to bring a killed node back).
  if ((total > 0)); then
    echo "kafka.sh: $dir held a cluster at $(cat "$dir/bootstrap") with $running of $total nodes running: starting" \
      "a new, empty cluster in its place (its data is wiped); to bring a stopped node of a cluster back, use" \
      "\`kafka.sh start-node --node N --dir $dir\`" >&2
  fi
fi
stop_cluster

command -v java >/dev/null 2>&1 || die "no java on PATH (scripts/setup.sh installs default-jre-headless)"
command -v python3 >/dev/null 2>&1 || die "no python3 on PATH (needed to pick free ports)"
command -v kcat >/dev/null 2>&1 || die "no kcat on PATH (scripts/setup.sh installs it)"

# The broker's jars, resolved once per version; the lock keeps parallel starts
# from downloading into each other.
if [ ! -f "$CACHE/lib/.complete" ]; then
  command -v mvn >/dev/null 2>&1 || die "no mvn on PATH (scripts/setup.sh installs maven)"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  if [ ! -f "$CACHE/lib/.complete" ]; then
    echo "kafka.sh: resolving Apache Kafka $KAFKA_VERSION with Maven into $CACHE/lib" >&2
    rm -rf "$CACHE/lib.tmp" "$CACHE/lib"
    if ! mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CACHE/lib.tmp" \
        >"$CACHE/mvn.log" 2>&1; then
      die "downloading Apache Kafka $KAFKA_VERSION with Maven failed (see $CACHE/mvn.log)"
    fi
    touch "$CACHE/lib.tmp/.complete"
    mv "$CACHE/lib.tmp" "$CACHE/lib"
  fi
  exec 9>&-
fi
CP="$(class_path)"

# 2 free loopback ports per node (client, controller), one more for
# --secure's SASL listener (scripts/free_ports.py says why not bind(0)'s),
# and Kafka-style ids (16 random bytes, URL-safe base64, not starting with
# '-').
read -r -a ports <<<"$(python3 "$ROOT/scripts/free_ports.py" "$((2 * brokers + secure))")"
kafka_uuid() {
  python3 -c 'import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"): print(u); break'
}
cluster_id="$(kafka_uuid)"
bootstrap=""; quorum=""; initial=""
for ((i = 1; i <= brokers; i++)); do
  bport="${ports[$((2 * i - 2))]}"; cport="${ports[$((2 * i - 1))]}"
  bootstrap+="${bootstrap:+,}127.0.0.1:$bport"
  quorum+="${quorum:+,}127.0.0.1:$cport"
  initial+="${initial:+,}$i@127.0.0.1:$cport:$(kafka_uuid)"
done
rf=$(( brokers < 3 ? brokers : 3 ))
minisr=$(( brokers < 3 ? 1 : 2 ))

for ((i = 1; i <= brokers; i++)); do
  n="$dir/node$i"
  rm -rf "$n"; mkdir -p "$n/data"
  cat >"$n/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.bootstrap.servers=$quorum
listeners=PLAINTEXT://127.0.0.1:${ports[$((2 * i - 2))]},CONTROLLER://127.0.0.1:${ports[$((2 * i - 1))]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[$((2 * i - 2))]},CONTROLLER://127.0.0.1:${ports[$((2 * i - 1))]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$n/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$minisr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$minisr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$minisr
group.initial.rebalance.delay.ms=0
# Records keep their event time as timestamp (kappa gen starts at 2026-01-01):
# no time-based retention unless a topic asks for it.
log.retention.ms=-1
auto.create.topics.enable=true
# The log cleaner and the retention check are broker-wide (15 s and 300 s by
# default): every second, so compaction and retention stories end in seconds.
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=1000
# Likewise the abort of transactions open past their timeout (10 s by default).
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
PROPS
done
if ((secure)); then
  sport="${ports[2]}"
  jaas='org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret" user_bob="bob-secret" user_carol="carol-secret";'
  sed -i -e "s|^listeners=PLAINTEXT://\([^,]*\),|listeners=PLAINTEXT://\1,SASL_PLAINTEXT://127.0.0.1:$sport,|" \
    -e "s|^advertised.listeners=PLAINTEXT://\([^,]*\),|advertised.listeners=PLAINTEXT://\1,SASL_PLAINTEXT://127.0.0.1:$sport,|" \
    -e "s|^listener.security.protocol.map=.*|listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT|" \
    "$dir/node1/server.properties"
  cat >>"$dir/node1/server.properties" <<PROPS
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:admin
allow.everyone.if.no.acl.found=false
PROPS
fi

format() {
  local n="$dir/node$1" quorum_flag scram=() user mech
  if ((brokers == 1)); then quorum_flag=(--standalone); else quorum_flag=(--initial-controllers "$initial"); fi
  # --secure: the same users log in with SCRAM too (credentials kept in the
  # cluster's metadata, written at format time).
  if ((secure)); then
    for user in admin alice bob carol; do
      for mech in SCRAM-SHA-256 SCRAM-SHA-512; do scram+=(--add-scram "$mech=[name=\"$user\",password=\"$user-secret\"]"); done
    done
  fi
  local cds
  cds="$(cds_flags format "$n/format.jsa")"
  java -Xmx256m "${jvm_extra[@]}" "$cds" -cp "$CP" -Dkafka.logs.dir="$n" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$n/server.properties" "${quorum_flag[@]}" "${scram[@]}" \
    >"$n/format.log" 2>&1 || return 1
  cds_keep format "$n/format.jsa"
}
jvm_extra=()
((test_jvm)) && jvm_extra=(-XX:TieredStopAtLevel=1)
echo "${jvm_extra[*]}" >"$dir/jvm.opts"  # start-node starts a node the same way
fpids=()
for ((i = 1; i <= brokers; i++)); do format "$i" & fpids+=($!); done
for ((i = 1; i <= brokers; i++)); do
  wait "${fpids[$((i - 1))]}" || die "formatting $dir/node$i failed: $(tail -n 1 "$dir/node$i/format.log")"
done

for ((i = 1; i <= brokers; i++)); do
  n="$dir/node$i"
  # Detached: its own session, no terminal, every stream to a file, so a
  # caller waiting on our stdout (CTest) is not held open by the broker.
  cds="$(cds_flags broker "$n/broker.jsa")"
  [[ "$cds" == -XX:ArchiveClassesAtExit=* ]] && touch "$n/cds.dump"
  setsid java -Xmx256m -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true "${jvm_extra[@]}" "$cds" \
    -Dkafka.logs.dir="$n" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$CP" kafka.Kafka "$n/server.properties" </dev/null >"$n/stdout.log" 2>&1 &
  echo $! >"$n/pid"
done

# Ready when every broker is in the metadata.
for _ in $(seq 1 600); do  # 60 s
  for ((i = 1; i <= brokers; i++)); do
    # kill -0, not node_pid: until the child has exec'd java its command line
    # is still this script's.
    kill -0 "$(cat "$dir/node$i/pid")" 2>/dev/null || { tail -n 5 "$dir/node$i/stdout.log" >&2 || true; stop_cluster; \
      die "broker $i exited while starting (see $dir/node$i/server.log)"; }
  done
  up="$(kcat -L -b "$bootstrap" -m 2 2>/dev/null | sed -n 's/^ *\([0-9]*\) brokers:$/\1/p' | head -n 1 || true)"
  if [ "${up:-0}" = "$brokers" ]; then
    ((secure)) && echo "127.0.0.1:$sport" >"$dir/sasl_bootstrap"
    echo "$bootstrap" >"$dir/bootstrap"
    if [ -n "$owner" ]; then
      # Detached like the brokers; ends on its own once the cluster is gone.
      setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$3/bootstrap" ]; do sleep 1; done
        [ -f "$3/bootstrap" ] && exec "$2" stop --dir "$3"' watcher "$owner" "$ROOT/scripts/kafka.sh" "$dir" \
        </dev/null >/dev/null 2>&1 &
    fi
    echo "$bootstrap"
    exit 0
  fi
  sleep 0.1
done
stop_cluster
die "the cluster in $dir did not answer within 60 s (see $dir/node*/server.log)"
